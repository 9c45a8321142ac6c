"""simkit.library at small convergence semi-angles: the method choice and the physics of the cheap paths.

Oracles: LiF d-spacings (cryogenic lattice constant of structures.crystals), the disc size α/λ that merges the
LiF 111 and 200 reflections at 2 mrad and separates them at 0.15 mrad, the independence of non-overlapping
disc intensities of the convergence (a direct multislice run at 1 mrad), and kinematic theory for a weak
scatterer (Li metal) against multislice.
"""

from __future__ import annotations

import numpy as np
import pytest

from simkit.geometry import DetectorGeometry
from simkit.library import (
    EntrySpec,
    build_entry,
    build_library,
    entry_key,
    preset_specs,
    resolve_method,
)
from simkit.nbed import Probe
from simkit.radial import make_plan_from_geometry
from structures.crystals import LATTICE_CONSTANTS

NARROW = Probe(semiangle=0.15)
WIDE = Probe(semiangle=2.0)
A_LIF = LATTICE_CONSTANTS["LiF"]["cryo"]  # Å, 100 K
A_LI = LATTICE_CONSTANTS["Li"]["cryo"]
Q111, Q200 = np.sqrt(3.0) / A_LIF, 2.0 / A_LIF  # 0.4320, 0.4989 Å⁻¹
LIF_011 = EntrySpec(kind="lif", method="auto", params={"diameter": 30.0, "orientation": (0, 1, 1)}, seed=1)
# 0.008 Å⁻¹ pixels resolve the 0.067 Å⁻¹ gap between 111 and 200 (and sample the 3 nm crystal's shape
# transform without sub-pixels); 0.64 Å⁻¹ reaches past 200
LIF_GEOM = DetectorGeometry(shape=(160, 160), pixel_size=0.008)


def test_auto_method_follows_the_probe():
    specs = {s.kind: s for s in preset_specs("tiny")}
    for kind in ("li_metal", "cu", "li2o", "lif"):
        assert specs[kind].method == "auto"
        # 2 mrad: the probe's 31 Å cell is cheap, multislice everywhere
        assert resolve_method(specs[kind], WIDE, 60.0) == "multislice"
    # 0.15 mrad: a 414 Å cell is not; bulk crystals take the disc path, the 3 nm LiF crystal kinematic
    for kind in ("li_metal", "cu", "li2o"):
        assert resolve_method(specs[kind], NARROW, 60.0) == "disc_multislice"
    assert resolve_method(specs["lif"], NARROW, 60.0) == "kinematic"
    for kind in ("vacuum", "sei_type1", "li2o_damage"):
        assert resolve_method(specs[kind], NARROW, 60.0) == "kinematic"
    # an explicit method is kept
    forced = EntrySpec(kind="cu", method="multislice", params={"zone_axis": (0, 0, 1)})
    assert resolve_method(forced, NARROW, 60.0) == "multislice"
    with pytest.raises(ValueError, match="method='slab'"):
        EntrySpec(kind="lif", method="slab")


def test_cache_key_holds_the_resolved_method():
    geom = DetectorGeometry(shape=(32, 32), pixel_size=0.02)
    auto = EntrySpec(kind="cu", method="auto", params={"zone_axis": (0, 0, 1)})
    ms = EntrySpec(kind="cu", method="multislice", params={"zone_axis": (0, 0, 1)})
    kin = EntrySpec(kind="cu", method="kinematic", params={"zone_axis": (0, 0, 1)})
    # at 2 mrad "auto" is multislice: same key as before "auto" existed (caches stay valid)
    assert entry_key(auto, WIDE, geom, 60.0) == entry_key(ms, WIDE, geom, 60.0)
    keys = {entry_key(s, NARROW, geom, 60.0) for s in (auto, ms, kin)}
    assert len(keys) == 3  # disc_multislice, multislice and kinematic entries never share a cache file


def _lif_profile(method: str, probe: Probe):
    spec = EntrySpec(kind="lif", method=method, params=LIF_011.params, seed=LIF_011.seed)
    pat, info = build_entry(spec, probe, LIF_GEOM, 60.0)
    plan = make_plan_from_geometry(LIF_GEOM, n_bins=80, q_max=0.64)
    prof = plan.integrate(pat.astype(float))
    info["pattern"] = pat
    return prof.q, prof.mean * prof.q, info


def _separation(q, iq):
    """Peak centroids near 111 and 200 [Å⁻¹] and the dip contrast 1 − I(mid)/min(I(111), I(200))."""
    mid = 0.5 * (Q111 + Q200)
    lo = (q > Q111 - 0.04) & (q < mid)
    hi = (q > mid) & (q < Q200 + 0.04)
    c111 = float(np.sum(q[lo] * iq[lo]) / np.sum(iq[lo]))
    c200 = float(np.sum(q[hi] * iq[hi]) / np.sum(iq[hi]))
    at = np.interp([Q111, mid, Q200], q, iq)
    return c111, c200, 1.0 - at[1] / min(at[0], at[2])


def test_lif_111_and_200_resolved_at_015_and_merged_at_2_mrad():
    # LiF [011] zone: 111 (0.432 Å⁻¹) and 200 (0.499 Å⁻¹) spots, 0.067 Å⁻¹ apart in |Q|. A 2 mrad disc has a
    # radius α/λ = 0.102 Å⁻¹ and merges them into one band; a 0.15 mrad disc (0.0076 Å⁻¹) leaves the 3 nm
    # crystal's shape transform (FWHM ≈ 0.034 Å⁻¹): two peaks with a dip between them at the known Q.
    q, iq, info = _lif_profile("auto", NARROW)
    assert info["method"] == "kinematic"
    c111, c200, dip = _separation(q, iq)
    assert abs(c111 - Q111) < 0.006 and abs(c200 - Q200) < 0.006, (c111, c200)
    assert dip > 0.4, dip
    q2, iq2, info2 = _lif_profile("kinematic", WIDE)
    assert _separation(q2, iq2)[2] < 0.0  # no dip: the midpoint is brighter than the weaker peak
    # same crystal, same kinematic scattering: the disc size redistributes it, the total is conserved
    qy, qx = LIF_GEOM.q_grid()
    band = (np.hypot(qy, qx) > 0.3) & (np.hypot(qy, qx) < 0.6)
    assert info["pattern"][band].sum() == pytest.approx(info2["pattern"][band].sum(), rel=0.1)


@pytest.mark.slow
def test_lif_merged_at_2_mrad_in_multislice():
    q, iq, info = _lif_profile("auto", WIDE)
    assert info["method"] == "multislice"
    assert _separation(q, iq)[2] < 0.0
    # Bragg intensity of a thin crystal ∝ ∫ t² over the lit area: the kinematic entry lights the sphere
    # uniformly (mean t² = d²/2), the 2 mrad multislice probe goes through its centre (t² = d²) — ratio 1/2
    _, _, kin = _lif_profile("kinematic", WIDE)
    qy, qx = LIF_GEOM.q_grid()
    band = (np.hypot(qy, qx) > 0.3) & (np.hypot(qy, qx) < 0.6)
    assert kin["pattern"][band].sum() / info["pattern"][band].sum() == pytest.approx(0.5, rel=0.2)


def _disc_sums(pat, geom, q_xy, radius):
    qy, qx = geom.q_grid()
    return np.array([pat[np.hypot(qy - a, qx - b) < radius].sum() for a, b in q_xy])


def test_disc_intensities_do_not_depend_on_the_convergence():
    # Cu [001], 2.4 nm: strongly dynamical (kinematic theory is 40 % off here). The disc path runs 2 mrad and
    # redraws the discs at 1 mrad; a direct 1 mrad multislice run must give the same disc intensities.
    geom = DetectorGeometry(shape=(80, 80), pixel_size=0.016)
    probe = Probe(semiangle=1.0)
    spec = dict(kind="cu", params={"zone_axis": (0, 0, 1)})
    direct, _ = build_entry(EntrySpec(method="multislice", **spec), probe, geom, 24.0)
    redrawn, info = build_entry(EntrySpec(method="disc_multislice", **spec), probe, geom, 24.0)
    assert info["method"] == "disc_multislice" and info["proxy_semiangle"] == 2.0
    a = 3.6050  # Cu, 100 K (structures.crystals)
    g = [(0, 0)] + [(h / a, k / a) for h, k in ((2, 0), (0, 2), (-2, 0), (0, -2), (2, 2), (2, -2), (-2, 2), (-2, -2))]
    r = probe.disc_radius + 0.03
    d1, d2 = _disc_sums(direct, geom, g, r), _disc_sums(redrawn, geom, g, r)
    assert d1[0] < 0.9 and d1[1:5].min() > 0.01  # real dynamical scattering into the 200 discs
    np.testing.assert_allclose(d2, d1, rtol=0.08, atol=2e-3)
    assert redrawn.sum() == pytest.approx(direct.sum(), rel=0.03)


def test_weak_crystal_kinematic_spots_match_multislice_and_known_q():
    # Li [001], 4 nm: a weak scatterer, where the kinematic (two-beam) slab agrees with multislice. The 110
    # reflections sit at √2/a = 0.406 Å⁻¹ (a = 3.483 Å at 100 K).
    geom = DetectorGeometry(shape=(96, 96), pixel_size=0.012)
    spec = dict(kind="li_metal", params={"zone_axis": (0, 0, 1)})
    kin, _ = build_entry(EntrySpec(method="kinematic", **spec), NARROW, geom, 40.0)
    dyn, _ = build_entry(EntrySpec(method="disc_multislice", **spec), NARROW, geom, 40.0)
    g110 = np.sqrt(2.0) / A_LI
    spots = [(g110 * np.sin(t), g110 * np.cos(t)) for t in np.pi / 4 + np.arange(4) * np.pi / 2]
    r = 0.03
    s_kin, s_dyn = _disc_sums(kin, geom, spots, r), _disc_sums(dyn, geom, spots, r)
    assert np.all(s_kin > 1e-3)
    np.testing.assert_allclose(s_kin, s_dyn, rtol=0.2)
    # the kinematic spots are at the 110 positions: all of their intensity within one pixel of them
    qy, qx = geom.q_grid()
    near = np.zeros(geom.shape, bool)
    for a, b in spots:
        near |= np.hypot(qy - a, qx - b) < NARROW.disc_radius + geom.pixel_size
    ring = (np.hypot(qy, qx) > 0.3) & (np.hypot(qy, qx) < 0.5)
    assert kin[ring & near].sum() > 0.999 * kin[ring].sum()


def test_amorphous_entry_at_015_mrad_is_the_debye_profile(tmp_path):
    # the kinematic amorphous path works at any semi-angle. At 0.15 mrad the probe disc (0.0076 Å⁻¹) hardly
    # blurs I(Q): the entry's SRO maximum of I·Q is the bare Debye curve's, while the 2 mrad disc (0.10 Å⁻¹)
    # moves it outwards (the study's "position recorded with the probe"); the scattering outside the direct
    # discs is the same at both semi-angles, and the direct disc is the 0.15 mrad probe (the central pixel)
    from simkit.kinematic import debye_intensity
    from simkit.peak_estimator import peak_position
    from simkit.synth import TRUTH_Q_RANGE
    from structures.relax import relaxed_seeds

    geom = DetectorGeometry(shape=(64, 64), pixel_size=0.016)
    specs = [EntrySpec(kind="vacuum"), EntrySpec(kind="sei_type1", params={"density": 2.1, "n_atoms": 400}, seed=5)]
    narrow = build_library(specs, probe=NARROW, geometry=geom, thickness=40.0, cache_dir=tmp_path, progress=False)
    wide = build_library(specs, probe=WIDE, geometry=geom, thickness=40.0, cache_dir=tmp_path, progress=False)
    e, w = narrow.by_kind("sei_type1")[0], wide.by_kind("sei_type1")[0]
    assert e.info["method"] == "kinematic"
    assert 0.95 < e.pattern.sum() <= 1.0 + 1e-5
    c = tuple(int(v) for v in geom.center)
    assert e.pattern[c] > 0.9 and narrow.vacuum[c] == pytest.approx(1.0, abs=1e-6)
    qy, qx = geom.q_grid()
    out = np.hypot(qy, qx) > 0.2
    assert e.pattern[out].sum() == pytest.approx(w.pattern[out].sum(), rel=0.03)
    plan = make_plan_from_geometry(geom, n_bins=30, q_max=0.5)
    got = [float(peak_position(*_qi(plan, x.pattern), TRUTH_Q_RANGE).position) for x in (e, w)]
    q = np.linspace(0.15, 0.5, 71)
    # the entry's structure: every shipped seed on its own periodic cell (no repeat: see tests/test_tiling.py)
    seeds = relaxed_seeds("type1_default", density=2.1)
    bare = sum(len(a) * debye_intensity(a, q, periodic=True) for a in seeds) / sum(len(a) for a in seeds)
    want = float(peak_position(q, bare, TRUTH_Q_RANGE).position)
    assert abs(got[0] - want) < 0.006, (got, want)
    assert got[1] > got[0] + 0.01  # the wide disc shifts the I·Q maximum outwards


def _qi(plan, pattern):
    p = plan.integrate(pattern.astype(float))
    return p.q, p.mean


_FRESH_ENTRY = """
import sys
import numpy as np
from simkit.library import EntrySpec, build_library
from simkit.nbed import Multislice, Probe

ms = Multislice(sampling=0.15, slice_thickness=2.0, n_phonons=1, max_angle=20.0)
spec = EntrySpec(kind="li_metal", method="multislice", params={"zone_axis": (0, 0, 1)}, seed=3)
lib = build_library([spec], probe=Probe(semiangle=2.0), thickness=40.0, ms=ms, cache_dir=sys.argv[1], progress=False)
np.save(sys.argv[2], lib.entries[0].pattern)
"""


def test_multislice_entry_is_the_same_bit_for_bit_in_a_fresh_process(tmp_path):
    # A cached entry must equal a freshly simulated one: FFTW's measuring planners time candidate algorithms, so
    # the same multislice in a new process differed in the last bits (≈ 4e-6 of the largest pixel), enough to
    # re-randomise every Poisson draw of a synthetic scan made from it. The default planner is FFTW_ESTIMATE.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    out = []
    for k in range(2):
        dest = tmp_path / f"entry{k}.npy"
        subprocess.run(
            [sys.executable, "-c", _FRESH_ENTRY, str(tmp_path / f"cache{k}"), str(dest)], check=True, env=env
        )
        out.append(np.load(dest))
    assert out[0].sum() > 0.5  # the direct disc and Bragg discs, fractions of the incident intensity
    assert np.array_equal(out[0], out[1])


def test_multislice_planner_is_checked():
    from simkit.nbed import Multislice

    with pytest.raises(ValueError, match="fft_planning"):
        Multislice(fft_planning="FFTW_FAST")
    assert Multislice().fft_planning == "FFTW_ESTIMATE"
