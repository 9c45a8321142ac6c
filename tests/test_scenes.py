"""Oracles for structures.scenes: exact overlap removal (vs brute force), columns of the right thickness and
density, Scene fractions (sum to one, analytic ramps of tilted interfaces, layer widths as integrals), the
study's defaults, and serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from hypothesis import given, settings
from hypothesis import strategies as st

from structures.crystals import bulk, mass_density, nanocrystal
from structures.scenes import DEFAULT_THICKNESS, Interface, Region, Scene, bottom, column, embed, scene_column, top
from tests import reference as ref


def _random_matrix(n=3000, box=30.0, seed=0):
    """A dense stand-in for an amorphous matrix: uniform random Li/O points (the amorphous builder is
    someone else's module; overlap removal does not care how the matrix was made)."""
    rng = np.random.default_rng(seed)
    sym = rng.choice(["Li", "O"], size=n, p=[2 / 3, 1 / 3]).tolist()
    return Atoms(symbols=sym, positions=rng.uniform(0, box, (n, 3)), cell=[box] * 3, pbc=True)


# ================================================================================================================
# embed
# ================================================================================================================
@pytest.mark.parametrize("centre", [(15.0, 15.0, 15.0), (1.0, 29.0, 0.5)])  # the second wraps around the box
def test_embed_removes_exactly_the_overlapping_matrix_atoms(centre):
    matrix = _random_matrix()
    crystal = nanocrystal("LiF", 12.0, f_vacancy=0.1, rng=1)
    out = embed(matrix, crystal, positions=[centre], min_distance=1.8)
    placed = crystal.positions - crystal.positions.mean(axis=0) + np.asarray(centre)
    expected = ref.overlapping_matrix_atoms(matrix.positions, placed, [30.0] * 3, 1.8)
    assert out.info["removed"] == expected.tolist()
    assert len(out) == len(matrix) - len(expected) + len(crystal)
    assert np.count_nonzero(out.arrays["crystal"] == 0) == len(crystal)
    # crystal atoms intact: same symbols, same relative geometry (minimum image)
    cpos = out.positions[out.arrays["crystal"] == 0]
    assert out.get_chemical_symbols()[-len(crystal) :] == crystal.get_chemical_symbols()
    d = cpos - cpos[0] - (crystal.positions - crystal.positions[0])
    d -= 30.0 * np.round(d / 30.0)
    assert np.allclose(d, 0, atol=1e-9)
    # nothing left within min_distance of the crystal, also across the periodic boundary
    mpos = out.positions[out.arrays["crystal"] == -1]
    assert len(ref.overlapping_matrix_atoms(mpos, cpos, [30.0] * 3, 1.8)) == 0
    assert out.info["composition"]["F"] == crystal.get_chemical_symbols().count("F")


def test_embed_removes_whole_units():
    """With a unit label (molecules, polyanions), every unit that has an overlapping atom goes entirely."""
    matrix = _random_matrix(n=3000)
    matrix.set_array("unit_id", np.arange(3000) // 3)  # triplets as stand-in rigid units
    crystal = nanocrystal("LiF", 12.0, rng=1)
    out = embed(matrix, crystal, positions=[(15.0, 15.0, 15.0)], min_distance=1.8)
    placed = crystal.positions - crystal.positions.mean(axis=0) + 15.0
    hit = ref.overlapping_matrix_atoms(matrix.positions, placed, [30.0] * 3, 1.8)
    expected = np.flatnonzero(np.isin(np.arange(3000) // 3, np.unique(hit // 3)))
    assert out.info["removed"] == expected.tolist()
    ids = out.arrays["unit_id"][out.arrays["crystal"] == -1]
    assert np.all(np.bincount(ids)[np.unique(ids)] == 3)  # no fragment left
    assert np.all(out.arrays["unit_id"][out.arrays["crystal"] == 0] == -1)
    single = embed(matrix, crystal, positions=[(15.0, 15.0, 15.0)], min_distance=1.8, whole_units=None)
    assert single.info["removed"] == hit.tolist()


def test_embed_into_the_amorphous_type2_matrix():
    amorphous = pytest.importorskip("structures.amorphous")
    if not hasattr(amorphous, "type2_matrix"):
        pytest.skip("structures.amorphous.type2_matrix not available yet")
    matrix = amorphous.type2_matrix(n_atoms=600, relax=False, rng=1)
    box = np.diag(matrix.cell.array)
    crystal = nanocrystal("LiF", 10.0, f_vacancy=0.2, rng=2)
    out = embed(matrix, crystal, positions=[box / 2], min_distance=2.0)
    placed = crystal.positions - crystal.positions.mean(axis=0) + box / 2
    hit = ref.overlapping_matrix_atoms(matrix.positions, placed, box, 2.0)
    unit = np.asarray(matrix.arrays["unit_id"])
    assert out.info["removed"] == np.flatnonzero(np.isin(unit, unit[hit])).tolist()
    assert len(out) == len(matrix) - len(out.info["removed"]) + len(crystal)


def test_embed_random_positions_are_reproducible_and_separated():
    matrix = _random_matrix(n=2000, box=40.0)
    crystals = [nanocrystal("LiF", 10.0, rng=k) for k in range(3)]
    a = embed(matrix, crystals, min_distance=2.0, rng=5)
    b = embed(matrix, crystals, min_distance=2.0, rng=5)
    c = embed(matrix, crystals, min_distance=2.0, rng=6)
    assert np.array_equal(a.positions, b.positions)
    assert a.info["crystal_positions"] != c.info["crystal_positions"]
    cp = np.array(a.info["crystal_positions"])
    for i in range(3):
        for j in range(i + 1, 3):
            d = cp[i] - cp[j]
            d -= 40.0 * np.round(d / 40.0)
            assert np.linalg.norm(d) >= 2 * 5.0 + 2.0 - 1.5  # bounding radii ≈ 5 Å each


def test_embed_bad_input():
    matrix = _random_matrix(n=500, box=20.0)
    with pytest.raises(ValueError, match="larger than the matrix box"):
        embed(matrix, nanocrystal("LiF", 25.0, rng=0), positions=[(10, 10, 10)])
    with pytest.raises(ValueError, match="closer than min_distance"):
        embed(matrix, [nanocrystal("Cu", 6.0), nanocrystal("Cu", 6.0)], positions=[(5, 5, 5), (6, 5, 5)])
    with pytest.raises(ValueError, match="positions"):
        embed(matrix, nanocrystal("Cu", 6.0), positions=[(5, 5)])
    with pytest.raises(ValueError, match="max_attempts"):
        embed(matrix, [nanocrystal("Cu", 12.0, rng=k) for k in range(6)], rng=0, max_attempts=50)
    with pytest.raises(TypeError, match="matrix"):
        embed("matrix", nanocrystal("Cu", 6.0))


# ================================================================================================================
# column
# ================================================================================================================
def test_column_thickness_layers_and_densities():
    lif = bulk("LiF").repeat((5, 5, 5))
    li = bulk("Li").repeat((6, 6, 6))
    col = column([(lif, 0.3), (li, 0.7)], thickness_nm=6.0, cell_xy=(20.0, 20.0))
    assert np.allclose(col.cell.lengths(), [20.0, 20.0, 60.0])
    layer = col.arrays["layer"]
    z = col.positions[:, 2]
    assert z[layer == 0].max() < 18.0 <= z[layer == 1].min()
    assert z.max() < 60.0
    # each slab carries its bulk density up to the partial lattice planes at the crop edges: Li (a/2 =
    # 1.74 Å) keeps 12 of 11.5 planes across 20 Å and 25 of 24.1 along z → up to +14 %
    for k, (phase, t) in enumerate((("LiF", 18.0), ("Li", 42.0))):
        sym = np.asarray(col.get_chemical_symbols())[layer == k]
        rho = mass_density(sym.tolist(), 20.0 * 20.0 * t)
        assert rho == pytest.approx(bulk(phase).info["density"], rel=0.15)
    # LiF along z: Li planes every a/2 starting at z = 0 → the count is exact
    a = bulk("LiF").info["a"]
    n_planes = int(np.floor((18.0 - 1e-9) / (a / 2))) + 1
    per_plane = len([p for p in lif.positions if abs(p[2]) < 1e-6 and p[0] < 20.0 and p[1] < 20.0])
    assert np.count_nonzero(layer == 0) == n_planes * per_plane
    assert col.info["thickness"] == 60.0


def test_column_bad_input():
    lif = bulk("LiF").repeat(3)
    with pytest.raises(ValueError, match="sum to 1"):
        column([(lif, 0.5), (lif, 0.2)])
    with pytest.raises(ValueError, match="thickness_nm"):
        column([(lif, 1.0)], thickness_nm=-1)
    with pytest.raises(TypeError, match="pair"):
        column([lif])


# ================================================================================================================
# Scene
# ================================================================================================================
def _two_layer(tilt=0.0, roughness=0.0, position=500.0, thickness=600.0):
    return Scene(
        name="t",
        layers=(Region(name="a", kind="li_metal"), Region(name="b", kind="electrolyte")),
        interfaces=(Interface(position=position, tilt=tilt, roughness=roughness, seed=3),),
        thickness=thickness,
        field_shape=(4, 30),
        step=40.0,
    )


def test_straight_interface_is_a_step_and_tilted_one_a_linear_ramp():
    x = np.linspace(0, 1000, 2001)
    y = np.zeros_like(x)
    f = _two_layer().fractions(y, x)
    np.testing.assert_array_equal(f[:, 1], (x >= 500).astype(float))
    # tilt T: the interface runs from 500 − T/2 at the entrance to 500 + T/2 at the exit; the fraction of
    # layer b grows linearly across that band
    tilt = 120.0
    f = _two_layer(tilt=tilt).fractions(y, x)
    expected = np.clip((x - (500 - tilt / 2)) / tilt, 0, 1)
    np.testing.assert_allclose(f[:, 1], expected, atol=1e-12)
    # the sign of the tilt does not change a column's mixture
    np.testing.assert_allclose(_two_layer(tilt=-tilt).fractions(y, x), f, atol=1e-12)


def test_fractions_sum_to_one_and_are_nonnegative():
    for scene in (bottom(), top(), _two_layer(tilt=50, roughness=30)):
        y, x = scene.positions()
        f = scene.fractions(y, x)
        assert f.shape == scene.field_shape + (len(scene.region_names),)
        assert np.all(f >= 0)
        np.testing.assert_allclose(f.sum(axis=-1), 1.0, atol=1e-12)
    # also for arbitrary broadcast shapes
    f = bottom().fractions(np.array([[0.0], [100.0]]), np.linspace(0, 3000, 7))
    assert f.shape == (2, 7, 5)


def test_bottom_layer_widths_integrate_to_15_and_35_nm():
    """∫ f_layer dx across the layer = mean over depth of the layer width; with the same tilt on both sides
    that is the width at mid-thickness, exactly, when roughness is off."""
    scene = bottom(roughness=0.0)
    dx = 0.5
    x = np.arange(900.0, 2100.0, dx)  # the SEI sits at 1200–1700 Å ± tilt/2 ± a few roughness rms
    f = scene.fractions(np.zeros_like(x), x)
    names = scene.region_names
    assert np.sum(f[:, names.index("type1")]) * dx == pytest.approx(150.0, abs=0.5)
    assert np.sum(f[:, names.index("type2")]) * dx == pytest.approx(350.0, abs=0.5)
    # with the default roughness (rms 20 Å per interface) the widths vary along the interface but their
    # mean over the field stays near the nominal values (rms of the width difference ≈ 28 Å; the field
    # spans ≈ 6 correlation lengths)
    rough = bottom()
    ys = np.linspace(0, rough.extent[0], 30)
    yy, xx = np.meshgrid(ys, x, indexing="ij")
    f = rough.fractions(yy, xx)
    widths1 = f[..., names.index("type1")].sum(axis=1) * dx
    widths2 = f[..., names.index("type2")].sum(axis=1) * dx
    assert np.mean(widths1) == pytest.approx(150.0, abs=25.0)
    assert np.mean(widths2) == pytest.approx(350.0, abs=25.0)
    assert np.std(widths1) > 1.0  # the interface is rough
    assert np.mean(widths1 + widths2) == pytest.approx(500.0, abs=40.0)  # SEI ≈ 50 nm (study: 50–60 nm)


def test_tilted_interface_gives_mixed_pixels_and_straight_vertical_none():
    scene = bottom()
    y, x = scene.positions()
    f = scene.fractions(y, x)
    core = f[..., :4]  # layers (the Li2O surface oxide is a constant share of Li, not a mixture)
    mixed = np.sum(np.max(core, axis=-1) < 0.99 * core.sum(axis=-1))
    assert mixed >= scene.field_shape[0]  # at least one mixed pixel per row near each interface band
    flat = _two_layer(position=510.0)  # between pixel centres, no tilt, no roughness
    y, x = flat.positions()
    assert np.all(np.max(flat.fractions(y, x), axis=-1) == 1.0)


def test_li_region_carries_a_surface_oxide_share():
    scene = bottom()
    f = scene.fractions(np.array([100.0]), np.array([0.0]))[0]
    names = scene.region_names
    share = 2 * scene.oxide.params["thickness"] / scene.thickness
    assert f[names.index("li2o")] == pytest.approx(share)
    assert f[names.index("li")] == pytest.approx(1 - share)
    f_cu = scene.fractions(np.array([100.0]), np.array([3500.0]))[0]
    assert f_cu[names.index("cu")] == pytest.approx(1.0)


def test_parameters_top_density_falls_outwards_and_grains_change():
    scene = top(roughness=(0.0, 0.0), tilt=0.0, variation_rms=0.0)
    x = np.linspace(1400, 1800, 41)
    p = scene.parameters(np.zeros_like(x), x)
    rho = p["type1.density"]
    assert np.all(np.diff(rho) <= 0) and rho[0] > rho[-1]
    assert p["type1.sro_peak"][0] == pytest.approx(0.34) and p["type1.sro_peak"][-1] == pytest.approx(0.295)
    # Q1 ∝ ρ^(1/3): the outer density reproduces the outer SRO peak
    assert (rho[-1] / rho[0]) ** (1 / 3) == pytest.approx(0.295 / 0.34)
    b = bottom()
    y, x = b.positions()
    pb = b.parameters(y, x)
    grains = pb["cu.grain"][:, -1]
    assert len(np.unique(grains)) == 4 and np.all(np.diff(grains) >= 0)
    seeds = pb["type2.lif_seed"]
    assert len(np.unique(seeds)) == seeds.size  # a distinct LiF seed at every pixel
    assert np.all(pb["li.grain"] == 0)


def test_local_variation_is_smooth_seeded_and_consistent_with_q_scaling():
    b = bottom()
    y, x = b.positions()
    p = b.parameters(y, x)
    q = p["type1.sro_peak"]
    rel = q / 0.33 - 1
    assert np.std(rel) == pytest.approx(0.03, rel=0.5)  # 3 % rms in expectation; ~20 correlation areas
    assert np.array_equal(q, bottom().parameters(y, x)["type1.sro_peak"])  # deterministic
    # smooth: neighbouring pixels (40 Å ≪ 120 Å correlation length) differ much less than the rms
    assert np.std(np.diff(rel, axis=1)) < 0.5 * np.std(rel)
    # density follows Q1 ∝ ρ^(1/3) to first order
    np.testing.assert_allclose(p["type1.density"] / 2.0 - 1, 3 * rel, atol=1e-12)
    flat = bottom(variation_rms=(0.0, 0.0)).parameters(y, x)
    assert np.all(flat["type1.sro_peak"] == 0.33)


def test_defaults_match_the_study():
    b, t = bottom(), top()
    for s in (b, t):
        assert s.field_shape == (60, 90) and s.step == 40.0
        assert s.thickness == DEFAULT_THICKNESS == 600.0
    assert [r.kind for r in b.regions] == ["li_metal", "sei_type1", "sei_type2", "cu", "li2o"]
    assert [r.kind for r in t.regions] == ["li_metal", "sei_type1", "electrolyte", "li2o"]
    assert t.interfaces[1].position - t.interfaces[0].position == pytest.approx(400.0)
    assert t.interfaces[1].roughness > t.interfaces[0].roughness  # uneven SEI | electrolyte side


def test_roughness_profile_statistics():
    itf = Interface(position=0.0, roughness=20.0, correlation_length=100.0, seed=4, n_modes=400)
    u = np.linspace(0, 200000, 20001)
    r = itf.profile(u)
    assert np.std(r) == pytest.approx(20.0, rel=0.15)
    same = Interface(position=0.0, roughness=20.0, correlation_length=100.0, seed=4, n_modes=400).profile(u)
    assert np.array_equal(r, same)
    # smooth: neighbours 10 Å apart (0.1 ℓ) differ by ≈ rms·0.1 only
    assert np.std(np.diff(r)) < 0.2 * np.std(r)


def test_scene_round_trip_through_json():
    for scene in (bottom(), top()):
        again = Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
        assert again == scene
        y, x = scene.positions()
        np.testing.assert_array_equal(again.fractions(y, x), scene.fractions(y, x))
        assert Scene.from_dict(scene.to_json()) == scene
        assert hash(again) == hash(scene)  # usable as a cache key


def test_scene_bad_input():
    with pytest.raises(ValueError, match="li_metal, cu, li2o"):
        Region(name="x", kind="graphite")
    with pytest.raises(ValueError, match="interfaces"):
        Scene(name="s", layers=(Region(name="a", kind="cu"), Region(name="b", kind="vacuum")), interfaces=())
    with pytest.raises(ValueError, match="unique"):
        Scene(
            name="s",
            layers=(Region(name="a", kind="cu"), Region(name="a", kind="vacuum")),
            interfaces=(Interface(position=0.0),),
        )
    with pytest.raises(ValueError, match="roughness"):
        Interface(position=0.0, roughness=-1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        Scene(
            name="s",
            layers=(Region(name="a", kind="cu"), Region(name="b", kind="vacuum"), Region(name="c", kind="cu")),
            interfaces=(Interface(position=100.0), Interface(position=50.0)),
        )
    with pytest.raises(ValueError, match="host"):
        Scene(
            name="s",
            layers=(Region(name="a", kind="cu"),),
            interfaces=(),
            oxide=Region(name="o", kind="li2o", params={"host": "li", "thickness": 10.0}),
        )
    with pytest.raises(ValueError, match="thickness"):
        Scene(name="s", layers=(Region(name="a", kind="cu"),), interfaces=(), thickness=0.0)


def test_segments_order_along_the_beam_and_agree_with_fractions():
    tilt = 120.0
    scene = _two_layer(tilt=tilt)
    x = 530.0  # the interface runs from 440 Å (entrance) to 560 Å (exit): beyond it for z < z*
    zstar = 600.0 * ((x - 500.0) / tilt + 0.5)
    seg = scene.segments(0.0, x)
    assert [n for n, _, _ in seg] == ["b", "a"]
    assert seg[0][1] == 0.0 and seg[0][2] == pytest.approx(zstar) and seg[1][2] == 600.0
    for sc in (bottom(), top()):
        y, xx = sc.positions()
        f = sc.fractions(y, xx)
        for i in range(0, sc.field_shape[0], 11):
            for j in range(sc.field_shape[1]):
                seg = sc.segments(y[i, j], xx[i, j])
                assert seg[0][1] == 0.0 and seg[-1][2] == pytest.approx(sc.thickness)
                assert all(b0[2] == pytest.approx(b1[1]) for b0, b1 in zip(seg, seg[1:]))  # contiguous
                length = {n: 0.0 for n in sc.region_names}
                for n, z0, z1 in seg:
                    length[n] += z1 - z0
                got = np.array([length[n] for n in sc.region_names]) / sc.thickness
                np.testing.assert_allclose(got, f[i, j], atol=1e-12)
    # the oxide sits on the lamella surfaces of pure Li columns
    seg = bottom().segments(0.0, 0.0)
    assert [n for n, _, _ in seg] == ["li2o", "li", "li2o"] and seg[0][2] == pytest.approx(15.0)


def test_scene_column_builds_the_pieces_in_order():
    scene = bottom(thickness=60.0, oxide_thickness=3.0)  # a thin lamella keeps the test small
    structures = {
        "li": bulk("Li").repeat((3, 3, 3)),
        "li2o": bulk("Li2O").repeat((2, 2, 2)),
        "type1": _random_matrix(n=300, box=10.0),
        "sei_type2": _random_matrix(n=300, box=10.0, seed=1),
        "cu": bulk("Cu").repeat((3, 3, 3)),
    }
    col = scene_column(scene, 0.0, 1200.0, structures, cell_xy=(10.0, 10.0))
    seg = col.info["segments"]
    assert col.cell.lengths()[2] == pytest.approx(60.0)
    z = col.positions[:, 2]
    for k, (name, z0, z1) in enumerate(seg):
        inside = col.arrays["layer"] == k
        if inside.any():
            assert z[inside].min() >= z0 - 1e-9 and z[inside].max() < z1 + 1e-9
        assert name in scene.region_names
    with pytest.raises(ValueError, match="no entry for region 'cu'"):
        scene_column(scene, 0.0, 3500.0, {"li": structures["li"]}, cell_xy=(10.0, 10.0))
    # vacuum layers are empty
    vac = column([(None, 0.5), (bulk("Cu").repeat(3), 0.5)], thickness_nm=2.0)
    assert vac.positions[:, 2].min() >= 10.0


@settings(max_examples=25, deadline=None)
@given(
    positions=st.lists(st.floats(-500, 500), min_size=1, max_size=4),
    tilts=st.lists(st.floats(-300, 300), min_size=4, max_size=4),
    rough=st.floats(0, 80),
    thickness=st.floats(50, 1500),
)
def test_fractions_and_segments_properties(positions, tilts, rough, thickness):
    """Any layer stack (even with crossing interfaces): fractions in [0, 1] summing to 1; segments tile the
    column and reproduce the fractions wherever the interfaces do not cross inside the column."""
    positions = sorted(positions)
    kinds = ["li_metal", "sei_type1", "sei_type2", "electrolyte", "cu"]
    scene = Scene(
        name="h",
        layers=tuple(Region(name=f"r{k}", kind=kinds[k]) for k in range(len(positions) + 1)),
        interfaces=tuple(
            Interface(position=p, tilt=t, roughness=rough, seed=k) for k, (p, t) in enumerate(zip(positions, tilts))
        ),
        thickness=thickness,
    )
    x = np.linspace(-800, 800, 33)
    f = scene.fractions(np.zeros_like(x), x)
    assert np.all(f >= -1e-15) and np.all(f <= 1 + 1e-15)
    np.testing.assert_allclose(f.sum(axis=-1), 1.0, atol=1e-12)
    for j in range(0, 33, 4):
        seg = scene.segments(0.0, x[j])
        assert seg[0][1] == 0.0 and seg[-1][2] == pytest.approx(thickness)
        # interface positions at entrance and exit: non-crossing if their order is the same at both faces
        entrance = [itf.position_at(0.0, 0.0, thickness) for itf in scene.interfaces]
        exit_ = [itf.position_at(0.0, thickness, thickness) for itf in scene.interfaces]
        if np.all(np.diff(entrance) >= 0) and np.all(np.diff(exit_) >= 0):
            length = {n: 0.0 for n in scene.region_names}
            for n, z0, z1 in seg:
                length[n] += z1 - z0
            got = np.array([length[n] for n in scene.region_names]) / thickness
            np.testing.assert_allclose(got, f[j], atol=1e-9)
