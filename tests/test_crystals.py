"""Oracles for structures.crystals: lattice geometry, literature densities, reflection positions, structure
factors of defective rock salt, exact vacancy counts, orientation and reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structures import crystals
from structures.crystals import LATTICE_CONSTANTS, bulk, nanocrystal, reflections
from tests import reference as ref

# literature (room-temperature) densities [g/cm³]: CRC Handbook of Chemistry and Physics
LITERATURE_DENSITY = {"LiF": 2.64, "Li2O": 2.01, "Li2S": 1.66, "Li": 0.534, "Cu": 8.96, "Au": 19.3}

# shared/README reference table (room temperature, Q = 1/d, 3 decimals)
README_Q = {
    "LiF": {(1, 1, 1): 0.430, (2, 0, 0): 0.497, (2, 2, 0): 0.702},
    "Li2O": {(1, 1, 1): 0.376, (2, 0, 0): 0.434, (2, 2, 0): 0.613, (3, 1, 1): 0.719},
    "Li2S": {(1, 1, 1): 0.303, (2, 0, 0): 0.350, (2, 2, 0): 0.496, (3, 1, 1): 0.581},
    "Li": {(1, 1, 0): 0.403, (2, 0, 0): 0.570, (2, 1, 1): 0.698},
    "Cu": {(1, 1, 1): 0.479, (2, 0, 0): 0.553, (2, 2, 0): 0.782},
}


def _nearest(phase, temperature, a_sym, b_sym):
    """Shortest a–b distance over periodic images, by the brute-force reference."""
    atoms = bulk(phase, temperature)
    s = np.asarray(atoms.get_chemical_symbols())
    d = ref.all_image_distances(
        atoms.positions[s == a_sym], atoms.positions[s == b_sym], atoms.cell.array, 6.0, same=a_sym == b_sym
    )
    return d.min()


# ------------------------------------------------------------------------------------------------------------
def test_lattice_table_complete_and_cryo_contracts():
    for phase in ("LiF", "Li2O", "Li2S", "Li", "Cu", "Au"):
        e = LATTICE_CONSTANTS[phase]
        assert {"room", "cryo", "temperature_cryo", "source"} <= set(e)
        assert e["source"]
        assert 80 <= e["temperature_cryo"] <= 110
        shrink = 1 - e["cryo"] / e["room"]
        # thermal contraction 293 → ~100 K: 0.1–1 % for every phase here (Li the largest, ≈ 0.8 %)
        assert 0.001 < shrink < 0.01, phase
    assert LATTICE_CONSTANTS["Li"]["cryo"] == pytest.approx(3.48, abs=0.005)
    assert crystals.lattice_constant("LiF") == LATTICE_CONSTANTS["LiF"]["cryo"]  # cryo is the default


def test_lattice_constant_interpolates_between_tabulated_temperatures():
    e = LATTICE_CONSTANTS["Cu"]
    mid = 0.5 * (e["temperature_cryo"] + crystals.ROOM_TEMPERATURE)
    assert crystals.lattice_constant("Cu", mid) == pytest.approx(0.5 * (e["room"] + e["cryo"]))
    assert crystals.lattice_constant("Cu", crystals.ROOM_TEMPERATURE) == pytest.approx(e["room"])


@pytest.mark.parametrize("temperature", ["room", "cryo"])
@pytest.mark.parametrize(
    "phase, pair, factor",
    [
        ("LiF", ("Li", "F"), 0.5),
        ("LiF", ("F", "F"), 1 / math.sqrt(2)),
        ("Li2O", ("Li", "O"), math.sqrt(3) / 4),
        ("Li2O", ("Li", "Li"), 0.5),
        ("Li2S", ("Li", "S"), math.sqrt(3) / 4),
        ("Li", ("Li", "Li"), math.sqrt(3) / 2),
        ("Cu", ("Cu", "Cu"), 1 / math.sqrt(2)),
        ("Au", ("Au", "Au"), 1 / math.sqrt(2)),
    ],
)
def test_nearest_neighbour_distances(phase, pair, factor, temperature):
    a = crystals.lattice_constant(phase, temperature)
    assert _nearest(phase, temperature, *pair) == pytest.approx(factor * a, rel=1e-9)


@pytest.mark.parametrize("phase", ["LiF", "Li2O", "Li2S", "Li", "Cu", "Au"])
def test_room_temperature_density_matches_literature(phase):
    atoms = bulk(phase, "room")
    # X-ray densities agree with handbook values within 1 %, except Li2S whose handbook density (1.66) is
    # 1.1 % above the X-ray density of a = 5.708 Å (1.641)
    tol = 0.015 if phase == "Li2S" else 0.01
    assert atoms.info["density"] == pytest.approx(LITERATURE_DENSITY[phase], rel=tol)
    assert atoms.get_volume() == pytest.approx(atoms.info["a"] ** 3)
    assert all(atoms.pbc)


@pytest.mark.parametrize("phase", sorted(README_Q))
def test_reflections_match_reference_table_and_cryo_shift(phase):
    room = {hkl: (q, m) for hkl, q, m in reflections(phase, "room", q_max=0.8)}
    cryo = {hkl: (q, m) for hkl, q, m in reflections(phase, "cryo", q_max=0.8)}
    for hkl, q_table in README_Q[phase].items():
        assert room[hkl][0] == pytest.approx(q_table, abs=6e-4), hkl
        ratio = LATTICE_CONSTANTS[phase]["room"] / LATTICE_CONSTANTS[phase]["cryo"]
        assert cryo[hkl][0] == pytest.approx(room[hkl][0] * ratio, rel=1e-12)
    mult = {(1, 1, 1): 8, (2, 0, 0): 6, (2, 2, 0): 12, (3, 1, 1): 24, (1, 1, 0): 12, (2, 1, 1): 24}
    for hkl, (_, m) in room.items():
        if hkl in mult:
            assert m == mult[hkl]
    qs = [q for _, q, _ in reflections(phase, "room", q_max=1.5)]
    assert qs == sorted(qs)


@pytest.mark.parametrize("phase", ["LiF", "Li2O", "Li", "Cu"])
def test_reflection_list_equals_nonzero_structure_factors(phase):
    """An independent structure-factor sum over the unit cell: every listed family has F ≠ 0, every
    unlisted hkl has F = 0 (lattice extinctions)."""
    atoms = bulk(phase, "room")
    a = atoms.info["a"]
    listed = {hkl for hkl, _, _ in reflections(phase, "room", q_max=1.0)}
    sym = atoms.get_chemical_symbols()
    for h in range(5):
        for k in range(h + 1):
            for l in range(k + 1):
                if (h, k, l) == (0, 0, 0) or math.sqrt(h * h + k * k + l * l) / a > 1.0:
                    continue
                f = abs(ref.structure_factor_sum(sym, atoms.positions, np.array([h, k, l]) / a))
                assert (f > 1e-6) == ((h, k, l) in listed), (h, k, l, f)


def test_lobato_factors_take_k_squared_with_k_equal_one_over_d():
    """Mott–Bethe: at large k the electron scattering factor tends to (m e²/(2 h² ε₀))·Z/(4π² s²) with
    s = sinθ/λ = k/2, i.e. f → 0.023934·Z/s² = 0.095736·Z/k² Å. It holds only if abTEM's function is fed
    k² with k = 1/d (feeding (2π/d)² would give a 4π² smaller value)."""
    for sym, z in (("Li", 3), ("F", 9), ("Cu", 29)):
        k = 50.0
        assert ref.lobato_f(sym, k) * k**2 == pytest.approx(0.023934 * 4 * z, rel=2e-3)


def test_lif_bulk_structure_factors_are_analytic():
    atoms = bulk("LiF", "room")
    a = atoms.info["a"]
    sym = atoms.get_chemical_symbols()
    for hkl, sign in (((1, 1, 1), -1), ((2, 0, 0), 1), ((2, 2, 0), 1)):
        g = np.array(hkl) / a
        q = np.linalg.norm(g)
        f = ref.structure_factor_sum(sym, atoms.positions, g)
        expected = 4 * (ref.lobato_f("Li", q) + sign * ref.lobato_f("F", q))
        assert abs(f) == pytest.approx(abs(expected), rel=1e-10)


def _bragg(atoms, hkl, a):
    """|F| at the Bragg vector of a [001]-oriented nanocrystal (lab frame = crystal frame)."""
    return abs(ref.structure_factor_sum(atoms.get_chemical_symbols(), atoms.positions, np.array(hkl) / a))


def test_f_vacancies_weaken_111_relative_to_200_monotonically():
    """Rock salt with F occupancy x: F(111) = 4(f_Li − x f_F), F(200) = 4(f_Li + x f_F) per cell; in a finite
    crystal at the exact Bragg vector every Li term is +1 and every F term ∓1, so |F| = |N_Li f_Li ∓ N_F f_F|
    for any vacancy arrangement. I111/I200 falls monotonically for x_vac = 0 … 0.3."""
    a = crystals.lattice_constant("LiF", "room")
    q111, q200 = math.sqrt(3) / a, 2 / a
    ratios = []
    for x_vac in (0.0, 0.1, 0.2, 0.3):
        nc = nanocrystal("LiF", 24.0, temperature="room", f_vacancy=x_vac, rng=5)
        n_li = nc.get_chemical_symbols().count("Li")
        n_f = nc.get_chemical_symbols().count("F")
        f111, f200 = _bragg(nc, (1, 1, 1), a), _bragg(nc, (2, 0, 0), a)
        assert f111 == pytest.approx(abs(n_li * ref.lobato_f("Li", q111) - n_f * ref.lobato_f("F", q111)), rel=1e-9)
        assert f200 == pytest.approx(n_li * ref.lobato_f("Li", q200) + n_f * ref.lobato_f("F", q200), rel=1e-9)
        ratios.append((f111 / f200) ** 2)
    assert all(r1 > r2 for r1, r2 in zip(ratios, ratios[1:]))


def test_111_vanishes_where_the_f_sublattice_cancels_the_li_sublattice():
    """F(111) = N_Li f_Li − N_F f_F is zero when N_F = N_Li f_Li/f_F(Q111): about half the F sites empty
    (f_Li/f_F ≈ 0.5 at 0.43 Å⁻¹), the point beyond which I111/I200 rises again."""
    a = crystals.lattice_constant("LiF")
    q111 = math.sqrt(3) / a
    ratio = float(ref.lobato_f("Li", q111) / ref.lobato_f("F", q111))
    assert 0.45 < 1 - ratio < 0.55
    perfect = nanocrystal("LiF", 24.0, rng=9)
    n_li, n_f_sites = perfect.info["n_sites"]["Li"], perfect.info["n_sites"]["F"]
    x_zero = 1 - n_li * ratio / n_f_sites
    nc = nanocrystal("LiF", 24.0, f_vacancy=x_zero, rng=9)
    assert _bragg(nc, (1, 1, 1), a) <= 0.5 * float(ref.lobato_f("F", q111)) + 1e-9  # rounding to whole atoms
    assert _bragg(nc, (2, 0, 0), a) > 100 * _bragg(nc, (1, 1, 1), a)


@pytest.mark.slow
def test_111_over_200_falls_monotonically_with_displacements_large_crystals():
    """Heavy variant: 50 Å crystals with static displacements (0.05 Å rms), vacancy fractions 0–0.3 in steps
    of 0.05, intensities averaged over 3 seeds; the displacement damping is common to both reflections."""
    a = crystals.lattice_constant("LiF")
    ratios = []
    for x_vac in np.arange(0.0, 0.301, 0.05):
        i111 = i200 = 0.0
        for seed in range(3):
            nc = nanocrystal("LiF", 50.0, f_vacancy=float(x_vac), displacement_rms=0.05, rng=seed)
            i111 += _bragg(nc, (1, 1, 1), a) ** 2
            i200 += _bragg(nc, (2, 0, 0), a) ** 2
        ratios.append(i111 / i200)
    assert all(r1 > r2 for r1, r2 in zip(ratios, ratios[1:]))


@pytest.mark.parametrize("x_vac", [0.0, 0.15, 0.3])
def test_rock_salt_analytic_structure_factor_with_f_occupancy(x_vac):
    """F(111) = 4(f_Li − x f_F), F(200) = 4(f_Li + x f_F) per cubic cell, x the F occupancy, for a 4×4×4
    supercell with F sites emptied at random (here in the test, independent of the builder)."""
    cell = bulk("LiF", "room").repeat(4)
    a = LATTICE_CONSTANTS["LiF"]["room"]
    sym = np.asarray(cell.get_chemical_symbols())
    f_idx = np.flatnonzero(sym == "F")
    drop = np.random.default_rng(0).choice(f_idx, size=round(x_vac * len(f_idx)), replace=False)
    keep = np.setdiff1d(np.arange(len(sym)), drop)
    x = 1 - len(drop) / len(f_idx)
    n_cells = 64
    for hkl, sign in (((1, 1, 1), -1), ((2, 0, 0), 1)):
        q = math.sqrt(sum(h * h for h in hkl)) / a
        f = ref.structure_factor_sum(sym[keep], cell.positions[keep], np.array(hkl) / a)
        assert abs(f) == pytest.approx(n_cells * abs(4 * (ref.lobato_f("Li", q) + sign * x * ref.lobato_f("F", q))))


def test_nanocrystal_uses_the_cryo_lattice_by_default():
    """Along [001] every atom sits at a multiple of a/2 from the centre, with a the cryogenic constant."""
    nc = nanocrystal("LiF", 20.0, rng=1)
    a_room, a_cryo = LATTICE_CONSTANTS["LiF"]["room"], LATTICE_CONSTANTS["LiF"]["cryo"]
    assert nc.info["a"] == a_cryo
    rel = nc.positions - np.diag(nc.cell.array) / 2
    assert np.allclose(rel / (a_cryo / 2), np.round(rel / (a_cryo / 2)), atol=1e-9)
    assert not np.allclose(rel / (a_room / 2), np.round(rel / (a_room / 2)), atol=1e-3)


# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "phase, kwargs, element, frac",
    [
        ("LiF", {"f_vacancy": 0.137}, "F", 0.137),
        ("Li2O", {"anion_vacancy": 0.25}, "O", 0.25),
        ("Li2S", {"f_vacancy": 0.05}, "S", 0.05),
        ("LiF", {"li_vacancy": 0.3}, "Li", 0.3),
        ("Li", {"li_vacancy": 0.01}, "Li", 0.01),
    ],
)
def test_vacancy_count_is_exact(phase, kwargs, element, frac):
    perfect = nanocrystal(phase, 21.0, rng=3)
    n_sites = perfect.get_chemical_symbols().count(element)
    nc = nanocrystal(phase, 21.0, rng=3, **kwargs)
    expected = math.floor(frac * n_sites + 0.5)
    assert nc.get_chemical_symbols().count(element) == n_sites - expected
    assert nc.info["n_sites"][element] == n_sites
    assert nc.info["n_vacancies"][element] == expected
    assert len(nc) == len(perfect) - expected


@pytest.mark.parametrize("phase, q", [("LiF", 1), ("Li2O", 2), ("Li2S", 2)])
def test_schottky_defects_keep_charge_neutrality(phase, q):
    perfect = nanocrystal(phase, 20.0, rng=4)
    nc = nanocrystal(phase, 20.0, schottky=0.1, rng=4)
    anion = {"LiF": "F", "Li2O": "O", "Li2S": "S"}[phase]
    n_an = perfect.get_chemical_symbols().count(anion)
    n_s = math.floor(0.1 * n_an + 0.5)
    assert nc.get_chemical_symbols().count(anion) == n_an - n_s
    assert nc.get_chemical_symbols().count("Li") == perfect.get_chemical_symbols().count("Li") - q * n_s
    assert nc.info["charge"] == perfect.info["charge"]  # nominal charge unchanged


def test_zone_axis_011_puts_111_and_200_in_the_image_plane():
    """For LiF along [011], 200 and 1-11 g-vectors lie in the xy plane: scanning |g| = Q in that plane finds
    the full Bragg amplitude. Along [001] no 111 vector lies in the plane (only 200/220 do)."""
    a = crystals.lattice_constant("LiF")
    q111, q200 = math.sqrt(3) / a, 2 / a

    def best_in_plane(atoms, q):
        phi = np.deg2rad(np.arange(0.0, 180.0, 1.0))  # 1° ≪ angular width 1/(qD) ≈ 2°
        g = q * np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], axis=-1)
        return np.max(np.abs(ref.structure_factor_sum(atoms.get_chemical_symbols(), atoms.positions, g)))

    # D = 40 Å: the 200 peak's shape-transform tail at |g| = Q111 (0.067 Å⁻¹ ≈ 2.7/D away) stays small
    nc = nanocrystal("LiF", 40.0, orientation=(0, 1, 1), rng=0)
    n_li, n_f = nc.get_chemical_symbols().count("Li"), nc.get_chemical_symbols().count("F")
    full111 = abs(n_li * ref.lobato_f("Li", q111) - n_f * ref.lobato_f("F", q111))
    full200 = n_li * ref.lobato_f("Li", q200) + n_f * ref.lobato_f("F", q200)
    assert best_in_plane(nc, q111) > 0.95 * full111
    assert best_in_plane(nc, q200) > 0.95 * full200
    nc001 = nanocrystal("LiF", 40.0, orientation=(0, 0, 1), rng=0)
    assert best_in_plane(nc001, q111) < 0.2 * full111
    assert best_in_plane(nc001, q200) > 0.95 * full200
    # and the beam direction itself: along [011] the crystal's 022 vector is parallel to z
    g022 = np.array([0.0, 0.0, math.sqrt(8) / a])
    f022 = abs(ref.structure_factor_sum(nc.get_chemical_symbols(), nc.positions, g022))
    full022 = n_li * ref.lobato_f("Li", math.sqrt(8) / a) + n_f * ref.lobato_f("F", math.sqrt(8) / a)
    assert f022 == pytest.approx(full022, rel=1e-6)


def test_orientation_matrix_and_random_orientation():
    rot = crystals.rotation_to_zone_axis((1, 1, 1))
    assert np.allclose(rot @ rot.T, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1.0)
    assert np.allclose(rot @ (np.ones(3) / math.sqrt(3)), [0, 0, 1])
    # giving the matrix itself is the same as giving the zone axis
    n1 = nanocrystal("Cu", 12.0, orientation=(1, 1, 1), rng=1)
    n2 = nanocrystal("Cu", 12.0, orientation=rot, rng=1)
    assert np.allclose(n1.positions, n2.positions)
    r1 = np.array(nanocrystal("Cu", 10.0, orientation="random", rng=7).info["orientation"])
    r2 = np.array(nanocrystal("Cu", 10.0, orientation="random", rng=7).info["orientation"])
    r3 = np.array(nanocrystal("Cu", 10.0, orientation="random", rng=8).info["orientation"])
    assert np.allclose(r1, r2) and not np.allclose(r1, r3)
    assert np.allclose(r1 @ r1.T, np.eye(3)) and np.linalg.det(r1) == pytest.approx(1.0)


def test_same_seed_same_atoms_different_seed_different_atoms():
    kw = {"f_vacancy": 0.2, "displacement_rms": 0.05}
    a = nanocrystal("LiF", 18.0, rng=11, **kw)
    b = nanocrystal("LiF", 18.0, rng=11, **kw)
    c = nanocrystal("LiF", 18.0, rng=12, **kw)
    assert a.get_chemical_symbols() == b.get_chemical_symbols() and np.array_equal(a.positions, b.positions)
    assert len(a) == len(c)
    assert not np.allclose(a.positions, c.positions)
    assert a.info["seed"] == 11
    # a generator records a seed that reproduces the crystal
    d = nanocrystal("LiF", 18.0, rng=np.random.default_rng(3), **kw)
    e = nanocrystal("LiF", 18.0, rng=d.info["seed"], **kw)
    assert np.array_equal(d.positions, e.positions)


def test_displacement_rms_per_axis():
    plain = nanocrystal("Cu", 30.0, box=45.0, rng=2)
    moved = nanocrystal("Cu", 30.0, box=45.0, displacement_rms=0.1, rng=2)
    delta = moved.positions - plain.positions
    n = delta.size
    # sample variance of n Gaussian values: relative standard error √(2/n) ≈ 1.2 % here
    assert np.sqrt(np.mean(delta**2)) == pytest.approx(0.1, rel=5 * math.sqrt(2 / n) / 2)


def test_nanocrystal_shape_cell_and_info():
    d = 25.0
    nc = nanocrystal("LiF", d, shape="cube", vacuum=4.0, rng=0)
    centre = np.diag(nc.cell.array) / 2
    assert np.all(np.abs(nc.positions - centre) <= d / 2 + 1e-9)
    assert all(nc.pbc)
    assert np.all(nc.positions > 0) and np.all(nc.positions < np.diag(nc.cell.array))
    info = nc.info
    for key in ("phase", "a", "diameter", "orientation", "n_vacancies", "seed", "composition", "density"):
        assert key in info
    # particle density = mass over the cube volume d³ (1 amu/Å³ = 1.66053906660 g/cm³)
    assert info["density"] == pytest.approx(np.sum(nc.get_masses()) / d**3 * 1.66053906660, rel=1e-12)
    sphere = nanocrystal("LiF", d, rng=0)
    assert np.all(np.linalg.norm(sphere.positions - np.diag(sphere.cell.array) / 2, axis=1) <= d / 2 + 1e-9)
    boxed = nanocrystal("LiF", d, box=40.0, rng=0)
    assert np.allclose(np.diag(boxed.cell.array), 40.0)


# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"phase": "NaCl", "diameter": 10}, "LiF"),
        ({"phase": "LiF", "diameter": 0}, "diameter"),
        ({"phase": "LiF", "diameter": -5}, "diameter"),
        ({"phase": "LiF", "diameter": float("nan")}, "diameter"),
        ({"phase": "LiF", "diameter": 10, "f_vacancy": 1.0}, r"\[0, 1\)"),
        ({"phase": "LiF", "diameter": 10, "li_vacancy": -0.1}, "li_vacancy"),
        ({"phase": "Cu", "diameter": 10, "f_vacancy": 0.1}, "anion"),
        ({"phase": "Cu", "diameter": 10, "li_vacancy": 0.1}, "Li sublattice"),
        ({"phase": "LiF", "diameter": 10, "orientation": "sideways"}, "random"),
        ({"phase": "LiF", "diameter": 10, "orientation": (0, 0, 0)}, "zone axis"),
        ({"phase": "LiF", "diameter": 10, "orientation": np.eye(3) * 2}, "rotation"),
        ({"phase": "LiF", "diameter": 10, "orientation": (1, 2)}, "orientation"),
        ({"phase": "LiF", "diameter": 30, "box": 20.0}, "larger box"),
        ({"phase": "LiF", "diameter": 10, "shape": "pyramid"}, "sphere"),
        ({"phase": "LiF", "diameter": 10, "temperature": "warm"}, "cryo"),
        ({"phase": "LiF", "diameter": 10, "temperature": 20.0}, "range"),
        ({"phase": "LiF", "diameter": 10, "f_vacancy": 0.1, "anion_vacancy": 0.2}, "aliases"),
    ],
)
def test_bad_input_is_rejected_with_a_useful_message(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nanocrystal(**kwargs)


def test_bad_phase_and_q_max_for_bulk_and_reflections():
    with pytest.raises(ValueError, match="Li2O"):
        bulk("LiCl")
    with pytest.raises(ValueError, match="q_max"):
        reflections("LiF", q_max=0)
    with pytest.raises(TypeError, match="rng"):
        nanocrystal("LiF", 10, rng="seed")


@settings(max_examples=25, deadline=None)
@given(
    phase=st.sampled_from(["LiF", "Li2O", "Li2S"]),
    x_an=st.floats(0.0, 0.6),
    x_li=st.floats(0.0, 0.3),
    diameter=st.floats(6.0, 16.0),
    seed=st.integers(0, 2**32),
)
def test_vacancy_counts_property(phase, x_an, x_li, diameter, seed):
    """Removed = round-half-up(x · sites) on each sublattice for any fractions, sizes and seeds."""
    anion = {"LiF": "F", "Li2O": "O", "Li2S": "S"}[phase]
    perfect = nanocrystal(phase, diameter, rng=seed)
    nc = nanocrystal(phase, diameter, anion_vacancy=x_an, li_vacancy=x_li, rng=seed)
    sym_p, sym = perfect.get_chemical_symbols(), nc.get_chemical_symbols()
    for el, x in ((anion, x_an), ("Li", x_li)):
        assert sym_p.count(el) - sym.count(el) == math.floor(x * sym_p.count(el) + 0.5)


@pytest.mark.parametrize("diameter", [12.0, 21.0, 30.0, 37.5, 44.0])
@pytest.mark.parametrize("x_vac", [0.0, 0.1, 0.25])
@pytest.mark.parametrize("shape", ["sphere", "cube"])
def test_lif_nanocrystal_is_stoichiometric_before_vacancies(diameter, x_vac, shape):
    """A pristine LiF particle holds whole formula units (charge 0, F/Li = 1); with F vacancies F/Li is
    1 − f_vacancy up to the one-site rounding of round(x·N_F), and the nominal charge is the vacancy count."""
    nc = nanocrystal("LiF", diameter, shape=shape, f_vacancy=x_vac, orientation="random", rng=2)
    sym = nc.get_chemical_symbols()
    n_li, n_f = sym.count("Li"), sym.count("F")
    n_vac = math.floor(x_vac * n_li + 0.5)
    assert n_f == n_li - n_vac
    assert abs(n_f / n_li - (1 - x_vac)) <= 0.5 / n_li + 1e-12
    assert nc.info["charge"] == n_vac
    if x_vac == 0.0:
        assert n_f == n_li and nc.info["charge"] == 0
    if shape == "sphere":
        # independent site count: rock salt around a Li site, (i, j, k)·a/2 with i+j+k even = Li, odd = F
        half = crystals.lattice_constant("LiF") / 2
        m = int(diameter / (2 * half)) + 1
        ijk = np.stack(np.meshgrid(*[np.arange(-m, m + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        inside = np.sum((ijk * half) ** 2, axis=1) <= (diameter / 2) ** 2 + 1e-9
        odd = ijk[inside].sum(axis=1) % 2 == 1
        assert n_li == min(np.count_nonzero(~odd), np.count_nonzero(odd))  # only the surplus was trimmed


@pytest.mark.parametrize("phase, anion", [("Li2O", "O"), ("Li2S", "S")])
@pytest.mark.parametrize("diameter", [15.0, 26.0, 33.0])
def test_antifluorite_nanocrystal_is_charge_neutral(phase, anion, diameter):
    """Li₂O/Li₂S particles hold N_Li = 2 N_anion exactly; the trim only removes surface atoms (radius ≥ the
    radius of every kept atom of that element)."""
    nc = nanocrystal(phase, diameter, rng=1)
    sym = nc.get_chemical_symbols()
    assert sym.count("Li") == 2 * sym.count(anion)
    assert nc.info["charge"] == 0
