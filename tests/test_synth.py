"""simkit.library and simkit.synth: the compositor against its own definitions and physical conservation laws.

A small library (kinematic amorphous entries, thin multislice crystals, 64² detector) keeps these CI-sized.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from simkit.geometry import DetectorGeometry
from simkit.instrument import Instrument
from simkit.library import EntrySpec, PatternLibrary, build_library
from simkit.nbed import Probe
from simkit.radial import make_plan_from_geometry
from simkit.synth import (
    TRUTH_Q_RANGE,
    compose,
    poisson_counts,
    synthesize_scan,
    truth_plan,
    warp_patterns,
)
from structures.scenes import Interface, Region, Scene

GEOM = DetectorGeometry(shape=(64, 64), pixel_size=0.016)
THICK = 40.0


def _specs(multislice: bool = True) -> list[EntrySpec]:
    specs = [
        EntrySpec(kind="vacuum"),
        EntrySpec(kind="sei_type1", params={"density": 1.9, "n_atoms": 400}, seed=11),
        EntrySpec(kind="sei_type1", params={"density": 2.3, "n_atoms": 400}, seed=12),
        EntrySpec(kind="type2_matrix", params={"n_atoms": 400}, seed=13),
        EntrySpec(kind="electrolyte", params={"n_atoms": 900}, seed=14),
        EntrySpec(kind="li2o_damage", params={"size": 30.0}),
    ]
    if multislice:
        specs += [
            EntrySpec(kind="li_metal", method="multislice", params={"zone_axis": (0, 0, 1)}),
            EntrySpec(kind="cu", method="multislice", params={"zone_axis": (0, 0, 1)}),
            EntrySpec(kind="lif", method="multislice", params={"diameter": 20.0, "orientation": "random"}, seed=3),
        ]
    return specs


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("libcache")


@pytest.fixture(scope="module")
def library(cache) -> PatternLibrary:
    return build_library(_specs(), geometry=GEOM, thickness=THICK, cache_dir=cache, progress=False)


def _layered_scene(field=(6, 16), step=40.0, thickness=THICK, tilt=0.0) -> Scene:
    layers = (
        Region(name="li", kind="li_metal"),
        Region(name="t1", kind="sei_type1", params={"density": 2.1}),
        Region(name="t2", kind="sei_type2", params={"lif_volume_fraction": 0.0}),
        Region(name="el", kind="electrolyte"),
    )
    ifs = tuple(
        Interface(position=p, tilt=tilt, roughness=0.0, correlation_length=100.0, seed=k)
        for k, p in enumerate((100.0, 260.0, 420.0))
    )
    return Scene(name="test", layers=layers, interfaces=ifs, thickness=thickness, field_shape=field, step=step)


def _single(kind: str, params=None, thickness=THICK) -> Scene:
    return Scene(
        name="one",
        layers=(Region(name="r", kind=kind, params=params or {}),),
        interfaces=(),
        thickness=thickness,
        field_shape=(2, 3),
        step=40.0,
    )


def test_library_cache_is_reused(library, cache):
    assert library.built == len(_specs())
    again = build_library(_specs(), geometry=GEOM, thickness=THICK, cache_dir=cache, progress=False)
    assert again.built == 0  # nothing simulated the second time
    for a, b in zip(library.entries, again.entries):
        np.testing.assert_array_equal(a.pattern, b.pattern)


def test_entries_are_normalised_and_physical(library):
    for e in library.entries:
        total = float(e.pattern.sum())
        assert np.all(e.pattern >= 0)
        # normalised to an incident intensity of 1: nothing gains intensity
        assert total <= 1.0 + 1e-4, (e.spec.kind, total)
        if e.spec.kind in ("vacuum", "sei_type1", "type2_matrix", "electrolyte", "li2o_damage"):
            # 4 nm of light amorphous material scatters a few % (kinematic), mostly onto this detector
            assert total > 0.95, (e.spec.kind, total)
    # the vacuum entry is the probe disc: radius α/λ = 0.1016 Å⁻¹ at 2 mrad, 300 keV
    plan = make_plan_from_geometry(GEOM, n_bins=24, q_max=0.3)
    p = plan.integrate(library.vacuum.astype(float))
    inside = p.q < 0.1016 - GEOM.pixel_size
    outside = p.q > 0.1016 + GEOM.pixel_size
    assert np.all(p.mean[inside] > 0.5 * p.mean[0]) and np.all(p.mean[outside] < 1e-3 * p.mean[0])


def test_type1_density_moves_sro_peak_outwards(library):
    # Q1 grows with density (Q1 ∝ ρ^(1/3) for a uniform dilation): the denser entry peaks at larger Q
    from simkit.peak_estimator import peak_position

    plan = make_plan_from_geometry(GEOM, n_bins=30, q_max=0.5)
    t1 = sorted(library.by_kind("sei_type1"), key=lambda e: e.spec.params["density"])
    pos = [
        float(
            peak_position(
                plan.integrate(e.pattern.astype(float)).q, plan.integrate(e.pattern.astype(float)).mean, TRUTH_Q_RANGE
            ).position
        )
        for e in t1
    ]
    assert pos[0] < pos[1]


def test_single_region_composition_reproduces_library_pattern(library):
    for kind, entry_kind, params in (
        ("li_metal", "li_metal", {}),
        ("electrolyte", "electrolyte", {}),
        ("sei_type1", "sei_type1", {"density": 1.9}),
    ):
        pats, truth = compose(_single(kind, params), library)
        ref = library.by_kind(entry_kind)[0].pattern
        assert pats.shape == (2, 3, *GEOM.shape)
        np.testing.assert_allclose(pats, np.broadcast_to(ref, pats.shape), rtol=0, atol=2e-7)
        np.testing.assert_allclose(truth["fractions"].sum(-1), 1.0)


def test_thickness_scaling_is_linear_in_scattering(library):
    # twice the scene thickness doubles every region's scattering (first-order superposition)
    p1, _ = compose(_single("electrolyte", thickness=THICK), library)
    p2, _ = compose(_single("electrolyte", thickness=2 * THICK), library)
    vac = library.vacuum
    d1, d2 = p1[0, 0] - vac, p2[0, 0] - vac
    mask = vac < 1e-9  # outside the direct disc (no clipping there)
    np.testing.assert_allclose(d2[mask], 2 * d1[mask], rtol=1e-5, atol=1e-9)


def test_region_mean_profiles_peak_at_truth(library, tmp_path):
    scene = _layered_scene(field=(8, 16))
    res = synthesize_scan(
        scene,
        tmp_path / "s.h5",
        library=library,
        electrons_per_pattern=2e6,
        seed=3,
        instrument=Instrument(),  # no descan, round patterns
        dtype=np.uint32,
        progress=False,
    )
    from simkit.peak_estimator import sro_peak_position, sro_window

    w, h = sro_window(library.probe.semiangle, library.probe.energy)  # the truth's estimator window
    plan = truth_plan(GEOM)  # the same binning as the truth (the estimator is the analysis' own)
    with h5py.File(res.path) as f:
        data = f["root/datacube/data"][()]
    t = res.truth
    names = t["region_names"]
    # (t2: the 4 nm Type 2 matrix on this coarse 64² detector has a plateau-like I·Q maximum of width ≈ 0.19 Å⁻¹,
    # where the estimator's "maximum inside the window" test flips; the full-size check runs in the demo test)
    for name in ("t1", "el"):
        k = names.index(name)
        pure = (t["region"] == k) & (t["fractions"][..., k] > 0.99)
        assert pure.sum() >= 4
        prof = plan.integrate(data[pure].astype(float).sum(0))
        got = float(sro_peak_position(prof.q, prof.mean, TRUTH_Q_RANGE, width=w, half_width=h).position)
        want = float(np.nanmean(t["sro_peak"][pure]))
        assert abs(got - want) < 0.006, (name, got, want)


def test_dose_conserves_expected_counts(library, tmp_path):
    scene = _layered_scene(field=(4, 12))
    n_e = 5e4
    res = synthesize_scan(
        scene, tmp_path / "d.h5", library=library, electrons_per_pattern=n_e, seed=1, dtype=np.uint32, progress=False
    )
    noise_free, _ = compose(scene, library, seed=1)
    with h5py.File(res.path) as f:
        total = float(f["root/datacube/data"][()].sum(dtype=np.float64))
    # descan/ellipse keep the intensity on the detector (small shifts); expected = N_e · Σ pattern
    expected = n_e * float(noise_free.sum(dtype=np.float64))
    assert abs(total - expected) < 5 * np.sqrt(expected) + 2e-3 * expected
    assert res.scan_fluence == pytest.approx(n_e / 40.0**2)


def test_seeded_runs_repeat_and_files_are_emd(library, tmp_path):
    scene = _layered_scene(field=(3, 8))
    a = synthesize_scan(scene, tmp_path / "a.h5", library=library, seed=7, progress=False)
    b = synthesize_scan(scene, tmp_path / "b.h5", library=library, seed=7, progress=False)
    c = synthesize_scan(scene, tmp_path / "c.h5", library=library, seed=8, progress=False)
    with h5py.File(a.path) as fa, h5py.File(b.path) as fb, h5py.File(c.path) as fc:
        da, db, dc = (f["root/datacube/data"][()] for f in (fa, fb, fc))
        assert fa.attrs["emd_group_type"] == "file" and int(fa.attrs["version_major"]) == 1
        assert fa["root/datacube/data"].chunks == (1, 1, *GEOM.shape)
    from simkit.emd import read_truth

    assert read_truth(a.path)["region_names"] == ["li", "t1", "t2", "el"]
    np.testing.assert_array_equal(da, db)
    assert not np.array_equal(da, dc)
    # emdfile (with py4DSTEM's class names registered, as py4DSTEM does) and rosettasciio open it; Rx is slow
    from rsciio.emd import file_reader

    from tests import py4dstem_stub

    arr = py4dstem_stub.read(a.path)  # one node in the tree (the truth is metadata): emdfile returns the datacube
    assert type(arr).__name__ == "DataCube"
    assert arr.data.shape == (3, 8, *GEOM.shape)
    np.testing.assert_array_equal(arr.metadata["truth"]["region"], a.truth["region"])  # truth inside the EMD tree
    assert arr.dim_names[0] == "Rx"
    cal = arr.calibration  # py4DSTEM's Calibration, linked to the datacube on read
    assert cal.get_Q_pixel_size() == pytest.approx(GEOM.pixel_size) and cal.get_Q_pixel_units() == "A^-1"
    assert cal.get_R_pixel_size() == pytest.approx(40.0) and cal.get_R_pixel_units() == "A"
    assert cal.get_origin_mean() == pytest.approx(GEOM.center)
    qx = np.asarray(arr.dims[2])  # re-calibrated by py4DSTEM's DataCube.calibrate from the Calibration
    assert qx[1] - qx[0] == pytest.approx(GEOM.pixel_size)
    with h5py.File(a.path) as fa:  # the file's own dim vector: Q = 0 at the beam centre
        assert fa["root/datacube/dim2"][0] == pytest.approx(-GEOM.center[0] * GEOM.pixel_size)
    rs = file_reader(str(a.path))
    axes = rs[0]["axes"]
    assert rs[0]["data"].shape == (3, 8, *GEOM.shape)
    assert axes[0]["scale"] == pytest.approx(40.0) and axes[2]["scale"] == pytest.approx(GEOM.pixel_size)
    from fitting.io import load_scan

    s = load_scan(a.path)
    assert s.step == pytest.approx(40.0) and s.pixel_size == pytest.approx(GEOM.pixel_size)
    assert s.energy == pytest.approx(300e3) and s.semiangle == pytest.approx(2.0)


def test_warp_integer_shift_is_a_roll_and_ellipse_conserves_intensity(rng):
    img = np.zeros((1, 32, 32), np.float32)
    img[0, 10:20, 12:18] = rng.random((10, 6))
    out = warp_patterns(img, (16.0, 16.0), np.array([[2.0, -3.0]]))
    np.testing.assert_allclose(out[0, 12:22, 9:15], img[0, 10:20, 12:18], atol=1e-6)
    yy, xx = np.indices((64, 64))
    blob = np.exp(-((yy - 32.0) ** 2 + (xx - 32.0) ** 2) / (2 * 6.0**2))[None].astype(np.float32)
    st = warp_patterns(blob, (32.0, 32.0), np.zeros((1, 2)), 1.05, 0.3)
    assert st.sum() == pytest.approx(blob.sum(), rel=2e-3)
    # the stretched blob's second moment along the angle grows by ratio²
    u = (xx - 32.0) * np.cos(0.3) + (yy - 32.0) * np.sin(0.3)
    m0 = (blob[0] * u**2).sum() / blob[0].sum()
    m1 = (st[0] * u**2).sum() / st[0].sum()
    assert m1 / m0 == pytest.approx(1.05**2, rel=0.02)


def test_poisson_counts_statistics_and_reproducibility():
    lam = np.full((200, 500), 3.0)
    c = poisson_counts(lam, np.random.default_rng(5))
    c2 = poisson_counts(lam, np.random.default_rng(5))
    np.testing.assert_array_equal(c, c2)
    n = c.size
    # mean and variance of Poisson(3): standard errors sqrt(3/n) and ≈ sqrt(2·9/n + 3/n)
    assert abs(c.mean() - 3.0) < 5 * np.sqrt(3.0 / n)
    assert abs(c.var() - 3.0) < 5 * np.sqrt(21.0 / n)
    with pytest.raises(ValueError, match="non-negative"):
        poisson_counts(-lam, np.random.default_rng(0))


def test_damage_converts_type1_to_li2o(library, tmp_path):
    from simkit.damage import DamageModel

    scene = _single("sei_type1", {"density": 2.1})
    # one pattern of 3e7 electrons over 40 Å steps is ~19,000 e/Å² of scan fluence: far beyond 3600
    res = synthesize_scan(
        scene,
        tmp_path / "dmg.h5",
        library=library,
        electrons_per_pattern=3e7,
        damage=DamageModel(),
        dtype=np.uint32,
        seed=0,
        progress=False,
    )
    assert np.all(res.truth["li2o_damage_fraction"] > 0.3)
    low = synthesize_scan(
        scene,
        tmp_path / "low.h5",
        library=library,
        electrons_per_pattern=1e3,
        damage=DamageModel(),
        seed=0,
        progress=False,
    )
    assert np.all(low.truth["li2o_damage_fraction"] < 0.01)


def test_blosc_lz4_files_hold_the_same_counts_and_read_back(library, tmp_path):
    # the default, faster codec changes the bytes on disk, never the counts; fitting.io and emdfile read it back
    scene = _layered_scene(field=(2, 6))
    a = synthesize_scan(scene, tmp_path / "a.h5", library=library, seed=7, progress=False, compression="lzf")
    b = synthesize_scan(scene, tmp_path / "b.h5", library=library, seed=7, progress=False, compression="blosc-lz4")
    with h5py.File(a.path) as fa, h5py.File(b.path) as fb:
        assert fa["root/datacube/data"].compression == "lzf"
        assert fb["root/datacube/data"].compression == "unknown"  # a plugin filter (Blosc), not one of h5py's own
        np.testing.assert_array_equal(fa["root/datacube/data"][()], fb["root/datacube/data"][()])
    from fitting.io import load_scan
    from tests import py4dstem_stub

    np.testing.assert_array_equal(np.asarray(load_scan(b.path).data), np.asarray(load_scan(a.path).data))
    arr = py4dstem_stub.read(b.path)
    assert arr.data.shape == (2, 6, *GEOM.shape)
    with pytest.raises(ValueError, match="compression"):
        synthesize_scan(scene, tmp_path / "c.h5", library=library, progress=False, compression="gzip9")
    assert not (tmp_path / "c.h5").exists()


def test_bad_input(library, tmp_path):
    scene = _layered_scene(field=(2, 4))
    p = tmp_path / "x.h5"
    synthesize_scan(scene, p, library=library, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        synthesize_scan(scene, p, library=library, progress=False)
    small = PatternLibrary(
        geometry=GEOM,
        probe=Probe(),
        thickness=THICK,
        entries=tuple(e for e in library.entries if e.spec.kind != "electrolyte"),
    )
    with pytest.raises(KeyError, match="electrolyte"):
        synthesize_scan(scene, tmp_path / "y.h5", library=small, progress=False)
    with pytest.raises(ValueError, match="electrons_per_pattern"):
        synthesize_scan(scene, tmp_path / "z.h5", library=library, electrons_per_pattern=-1, progress=False)
    with pytest.raises(ValueError, match="kind"):
        EntrySpec(kind="unobtainium")
    with pytest.raises(ValueError, match="preset"):
        build_library("huge", cache_dir=tmp_path)


def test_interrupted_write_leaves_no_file(library, tmp_path, monkeypatch):
    import simkit.synth as synth

    calls = {"n": 0}
    real = synth.write_patterns

    def flaky(ds, start, counts):  # interrupted after the first block of patterns reached the file
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(ds, start, counts)

    monkeypatch.setattr(synth, "write_patterns", flaky)
    target = tmp_path / "int.h5"
    with pytest.raises(KeyboardInterrupt):
        synthesize_scan(_layered_scene(field=(8, 4)), target, library=library, rows_per_chunk=2, progress=False)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_local_cluster_build_equals_local_scheduler(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    specs = _specs(multislice=False)[:3]
    local = build_library(specs, geometry=GEOM, thickness=THICK, cache_dir=tmp_path / "a", progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            remote = build_library(
                specs, geometry=GEOM, thickness=THICK, cache_dir=tmp_path / "b", client=client, progress=False
            )
    assert remote.built == len(specs)
    for a, b in zip(local.entries, remote.entries):
        np.testing.assert_array_equal(a.pattern, b.pattern)


def test_truth_window_is_the_analysis_window():
    # one estimator, one default window: synthetic truth and fitting.peaks must agree
    from fitting.peaks import SRO_RANGE

    assert tuple(TRUTH_Q_RANGE) == tuple(SRO_RANGE)


def test_poisson_counts_low_dose_path_matches_pixel_means():
    # low dose (Σλ ≪ pixels) takes the total-then-allocate path: per-pixel means must still equal λ
    rng = np.random.default_rng(11)
    lam_row = rng.gamma(0.5, 0.02, size=400)  # Σλ ≈ 4 per pattern over 400 pixels
    lam = np.tile(lam_row, (4000, 1))
    c = poisson_counts(lam, np.random.default_rng(2)).astype(float)
    mean = c.mean(0)
    # aggregate χ² of the pixel means against λ (each mean has variance λ/n): ≈ 400 ± 5·sqrt(800)
    chi2 = float(np.sum((mean - lam_row) ** 2 / (lam_row / c.shape[0])))
    assert abs(chi2 - 400) < 5 * np.sqrt(800)
    # totals per pattern are Poisson(Σλ): variance equals mean
    tot = c.sum(1)
    assert abs(tot.var() / tot.mean() - 1) < 0.1


def test_electrolyte_variants_pick_their_own_entries(library, cache):
    # a region tagged with an SEI variant takes that variant's entries, and says so when they are missing
    extra = [EntrySpec(kind="sei_type1", params={"density": 1.7, "n_atoms": 400, "variant": "lifsi_1m"}, seed=21)]
    lib = build_library(_specs() + extra, geometry=GEOM, thickness=THICK, cache_dir=cache, progress=False)
    assert lib.built == 1  # only the new entry is simulated
    pats, _ = compose(_single("sei_type1", {"density": 1.7, "sei_variant": "lifsi_1m"}), lib)
    want = lib.entries[-1].pattern
    np.testing.assert_allclose(pats[0, 0], want, atol=2e-7)
    hce, _ = compose(_single("sei_type1", {"density": 1.9}), lib)
    assert not np.allclose(hce[0, 0], want, atol=1e-6)
    with pytest.raises(KeyError, match="lipf6_1m"):
        compose(_single("sei_type1", {"density": 1.7, "sei_variant": "lipf6_1m"}), lib)


# ----------------------------------------------------------------------------------------------------------
# 0.15 mrad: the tiny preset's library (auto methods) and the default scenes end to end
# ----------------------------------------------------------------------------------------------------------
NARROW_GEOM = DetectorGeometry(shape=(64, 64), pixel_size=0.016)


def _tiny_specs(one_zone: bool = True) -> list[EntrySpec]:
    """The ``tiny`` preset (one zone axis per metal unless ``one_zone`` is False)."""
    from simkit.library import preset_specs

    seen, out = set(), []
    for s in preset_specs("tiny"):
        if one_zone and s.kind in ("li_metal", "cu") and s.kind in seen:
            continue
        seen.add(s.kind)
        out.append(s)
    return out


@pytest.fixture(scope="module")
def narrow_library(tmp_path_factory) -> PatternLibrary:
    from simkit.library import PRESETS

    probe = Probe(semiangle=0.15)
    return build_library(
        _tiny_specs(),
        probe=probe,
        geometry=NARROW_GEOM,
        thickness=PRESETS["tiny"]["thickness"],
        cache_dir=tmp_path_factory.mktemp("narrowcache"),
        progress=False,
    )


def _narrow_scan(name: str, library, path, field=(3, 36)):
    from simkit.synth import default_scan

    # Li | SEI starts at 300 Å so that 36 columns of 4 nm reach every layer
    scene, probe = default_scan(name, semiangle=0.15, field_shape=field, li_side=300.0)
    assert probe.semiangle == 0.15
    res = synthesize_scan(
        scene,
        path,
        library=library,
        electrons_per_pattern=2e6,
        seed=3,
        instrument=Instrument(),  # no descan, round patterns
        dtype=np.uint32,
        progress=False,
    )
    return scene, res


def _check_region_peaks(res, geometry, regions, min_pixels=4, pure=0.95):
    # pixels where the region fills ≥ 95 % of the probe-weighted volume: at 0.15 mrad the Li 110 spot
    # (0.406 Å⁻¹) is a sharp 3-pixel disc inside the SRO window, and a few % of Li in the probe's tails puts a
    # spike above the SRO hump that the estimator (truth and analysis alike) takes — honest for that pixel,
    # but not a test of the region's SRO peak
    from simkit.peak_estimator import sro_peak_position, sro_window

    w, h = sro_window(res.settings["probe"]["semiangle"], res.settings["probe"]["energy"])
    plan = truth_plan(geometry)
    with h5py.File(res.path) as f:
        data = f["root/datacube/data"][()]
    t = res.truth
    names = t["region_names"]
    for name in regions:
        k = names.index(name)
        sel = (t["region"] == k) & (t["fractions"][..., k] >= pure) & np.isfinite(t["sro_peak"])
        assert sel.sum() >= min_pixels, (name, int(sel.sum()))
        # per pixel (no descan/ellipse here, 2·10⁶ e): the estimator on the recorded counts against the truth of
        # the same pixel — a region-summed profile is no test where the SRO peak has a gradient (0.29–0.33 in the
        # top Type 1) and a few pixels latch onto a Li spike at 0.15 mrad (truth and data alike)
        prof = plan.integrate(data[sel].astype(float))
        got = sro_peak_position(prof.q, prof.mean, TRUTH_Q_RANGE, width=w, half_width=h).position
        want = t["sro_peak"][sel]
        err = np.abs(got - want)[np.isfinite(got)]
        assert err.size >= 0.9 * sel.sum(), (name, err.size, int(sel.sum()))
        assert np.median(err) < 0.003, (name, float(np.median(err)))


@pytest.mark.parametrize(("name", "regions"), [("bottom", ("type2",)), ("top", ("type1", "electrolyte"))])
def test_015_mrad_default_scans_peak_at_truth(narrow_library, tmp_path, name, regions):
    # every crystal entry took the cheap path the probe calls for, and says so
    methods = {e.spec.kind: e.info["method"] for e in narrow_library.entries}
    assert methods["li_metal"] == methods["cu"] == methods["li2o"] == "disc_multislice"
    assert methods["lif"] == "kinematic"
    scene, res = _narrow_scan(name, narrow_library, tmp_path / f"{name}.h5")
    assert res.settings["probe"]["semiangle"] == 0.15
    # (the 15 nm Type 1 layer of `bottom` has no pixel where the SRO window is free of the neighbouring Li and
    # LiF Bragg spots at 0.15 mrad — its truth is NaN there, honestly; see the footprint test below)
    _check_region_peaks(res, NARROW_GEOM, regions)
    from fitting.io import load_scan

    s = load_scan(res.path)
    assert s.semiangle == pytest.approx(0.15) and s.data.shape == (3, 36, *NARROW_GEOM.shape)


def test_015_mrad_footprint_mixes_across_steps_like_the_probe_edge_response(narrow_library):
    # A straight interface (no tilt, no roughness) seen through the probe: the fraction of the far region at
    # distance u from the interface is the probe's edge response E(u) = ∫_{x<u} P(x, y) dx dy, computed here
    # by brute force from the Airy intensity on a 2 Å grid. The 0.15 mrad probe (Airy radius 84 Å) mixes
    # over several 4 nm steps; a 2 mrad probe (6 Å) over none.
    from simkit.dose import probe_profile

    layers = (Region(name="a", kind="electrolyte"), Region(name="b", kind="sei_type1", params={"density": 2.1}))
    x0 = 20 * 40.0 + 10.0  # interface between columns 20 and 21
    scene = Scene(
        name="edge",
        layers=layers,
        interfaces=(Interface(position=x0, tilt=0.0, roughness=0.0, correlation_length=100.0, seed=0),),
        thickness=60.0,
        field_shape=(1, 41),
        step=40.0,
    )
    _, t = compose(scene, narrow_library)
    frac_b = t["fractions"][0, :, 1]
    u = np.arange(41) * 40.0 - x0
    g = np.arange(-1500.0, 1500.0 + 1e-9, 2.0)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    p = probe_profile(0.15, 300e3, np.hypot(yy, xx)) * 4.0
    lsf = p.sum(0) / p.sum()  # line spread along x
    edge = np.array([lsf[g < ui].sum() for ui in u])  # fraction of the probe beyond the interface
    np.testing.assert_allclose(frac_b, edge, atol=0.03)
    assert np.count_nonzero((frac_b > 0.02) & (frac_b < 0.98)) >= 4  # mixed over several 4 nm steps
    wide = PatternLibrary(
        geometry=narrow_library.geometry, probe=Probe(), thickness=60.0, entries=narrow_library.entries
    )
    _, tw = compose(scene, wide)
    np.testing.assert_array_equal(tw["fractions"][0, :, 1], (u > 0).astype(float))


@pytest.mark.slow
def test_015_mrad_full_tiny_preset_scans(tmp_path):
    # the whole tiny preset (every zone axis) at 0.15 mrad on the default 256² detector, a wider field
    from simkit.library import PRESETS

    geom = DetectorGeometry(shape=(256, 256), pixel_size=0.005)
    lib = build_library(
        "tiny", probe=Probe(semiangle=0.15), geometry=geom, thickness=PRESETS["tiny"]["thickness"],
        cache_dir=tmp_path / "cache", progress=False,
    )  # fmt: skip
    assert {e.info["method"] for e in lib.entries if e.spec.kind in ("li_metal", "cu", "li2o")} == {"disc_multislice"}
    for name, regions in (("bottom", ("type2",)), ("top", ("type1", "electrolyte"))):
        _, res = _narrow_scan(name, lib, tmp_path / f"{name}.h5", field=(12, 36))
        _check_region_peaks(res, geom, regions)


def test_footprint_grid_path_equals_the_offset_loop():
    # the fine-grid correlation in _footprint_fractions is an optimisation of Σ_k w_k · fractions(y + oy_k, x + ox_k)
    from simkit.synth import _footprint, _footprint_fractions
    from simkit.synth import default_scan as ds

    scene, probe = ds("top", semiangle=0.15, field_shape=(5, 12), li_side=200.0)
    offs, wts = _footprint(probe, scene.step)
    assert len(wts) > 100 and wts.sum() == pytest.approx(1.0)
    iy = np.arange(1, 4)
    fast = _footprint_fractions(scene, iy, (offs, wts))
    yy, xx = np.meshgrid(iy * scene.step, np.arange(12) * scene.step, indexing="ij")
    slow = sum(w * scene.fractions(yy + oy, xx + ox) for (oy, ox), w in zip(offs, wts))
    np.testing.assert_allclose(fast, slow, atol=1e-12)
    # offsets off any grid take the loop; a 2 mrad probe is one point
    odd = (offs[:7] * 0.37, wts[:7] / wts[:7].sum())
    want = sum(w * scene.fractions(yy + oy, xx + ox) for (oy, ox), w in zip(*odd))
    np.testing.assert_allclose(_footprint_fractions(scene, iy, odd), want, atol=1e-12)
    assert len(_footprint(Probe(), scene.step)[1]) == 1


def test_no_pattern_holds_more_electrons_than_the_probe(narrow_library, library):
    # a 60 Å (tiny) or 40 Å Cu entry extrapolated to a 600 Å lamella would scatter 2–6× the incident beam;
    # the compositor caps every pattern's total at the probe's (conservation), keeping its shape
    for lib in (narrow_library, library):
        pats, _ = compose(_single("cu", thickness=600.0), lib)
        tot = pats.sum(axis=(-1, -2))
        assert np.all(tot <= lib.vacuum.sum() * (1 + 1e-5))


def test_counts_dtype_follows_the_brightest_expected_pixel(library):
    """uint16 holds a 2 mrad scan at the default dose (the direct beam spreads over a ≈ 20 px-radius disc); a
    dose that would put > 65535 expected counts into the brightest pixel gets uint32 — never a silent wrap."""
    from simkit.synth import DEFAULT_ELECTRONS_PER_PATTERN, counts_dtype

    lib = library
    peak = float(np.max([lib.vacuum.max()] + [e.pattern.max() for e in lib.entries]))
    assert counts_dtype(lib, DEFAULT_ELECTRONS_PER_PATTERN) == np.uint16
    assert peak * DEFAULT_ELECTRONS_PER_PATTERN < 20000  # the margin the choice above rests on
    assert counts_dtype(lib, 1.0 / peak * 70000) == np.uint32  # 70 000 expected counts in the brightest pixel
    assert counts_dtype(lib, 1.0 / peak * 64000) == np.uint32  # 64 000 + 10 σ (2530) no longer fits
    assert counts_dtype(lib, 1.0 / peak * 50000) == np.uint16


def test_instrument_descan_moves_the_direct_beam_and_is_stored(library, tmp_path):
    """The direct beam of a vacuum scan sits where the configured descan plane puts it: centre of mass of each
    pattern = Descan.center + slope·(i/n − ½) + offset, to < 0.05 px at 10⁶ e (Poisson error ≈ 0.003 px)."""
    from simkit.instrument import Descan, Ellipse

    scene = _single("vacuum")
    scene = Scene(name="v", layers=scene.layers, interfaces=(), thickness=THICK, field_shape=(2, 4), step=40.0)
    inst = Instrument(descan=Descan(slope_x=4.0, offset_y=1.5, center=(33.0, 32.0)), ellipse=Ellipse(ratio=1.0))
    res = synthesize_scan(
        scene, tmp_path / "v.h5", library=library, electrons_per_pattern=1e6, seed=2, instrument=inst,
        dtype=np.uint32, progress=False,
    )  # fmt: skip
    from simkit.emd import read_truth

    with h5py.File(res.path) as f:
        data = f["root/datacube/data"][()].astype(np.float64)
    stored = read_truth(res.path)["instrument"]
    yy, xx = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    total = data.sum(axis=(-2, -1))
    com = np.stack([(data * yy).sum(axis=(-2, -1)) / total, (data * xx).sum(axis=(-2, -1)) / total], -1)
    ix = np.arange(4)
    want_x = 32.0 + 4.0 * (ix / 4 - 0.5)
    np.testing.assert_allclose(com[..., 0], 33.0 + 1.5, atol=0.05)
    np.testing.assert_allclose(com[..., 1], np.broadcast_to(want_x, (2, 4)), atol=0.05)
    assert Instrument.from_dict(stored) == inst
    assert res.settings["instrument"] == stored


def test_synth_file_opens_in_hyperspy_and_rosettasciio_as_one_scan(library, tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    scene = _layered_scene(field=(2, 5))
    res = synthesize_scan(scene, tmp_path / "s.hspy", library=library, seed=3, progress=False)
    sig = hs.load(res.path)  # no reader= needed for .hspy
    assert sig.axes_manager.navigation_shape == (5, 2) and sig.axes_manager.signal_shape == GEOM.shape[::-1]
    assert sig.axes_manager.navigation_axes[0].scale == pytest.approx(40.0)
    assert sig.axes_manager.signal_axes[0].scale == pytest.approx(GEOM.pixel_size)
    tem = sig.metadata.Acquisition_instrument.TEM
    assert tem.beam_energy == pytest.approx(300.0) and tem.convergence_angle == pytest.approx(2.0)
    with h5py.File(res.path) as f:
        np.testing.assert_array_equal(np.asarray(sig.data), f["root/datacube/data"][()])
    from rsciio.emd import file_reader

    assert len(file_reader(str(res.path))) == 1  # the ground truth is metadata, not a second signal
    from fitting.io import load_scan

    s = load_scan(res.path)
    assert not any("truth" in k for k in s.metadata)
    assert s.metadata["calibration"]["energy"]["value"] == pytest.approx(300e3)
