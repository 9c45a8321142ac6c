"""fitting.classify on real synthetic scans (simkit.synth: multislice Li/Cu/Li₂O/LiF library entries, kinematic
amorphous entries, 2 mrad discs of radius 0.10 Å⁻¹) with known truth — issue 8, item 7: class accuracy > 95 % on
pixels whose majority region fills ≥ 80 % of the probe volume.

The library is the demo's reduced one (``tiny`` preset, one zone axis per metal, default 256² detector of
``simkit.geometry.DEFAULT_PIXEL_SIZE``) plus the kinematic electrolyte entry, cached in the project cache that
``tests/test_demo.py`` uses, so a full run builds it once (≈ 1 min cold, < 1 s warm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fitting.calibrate import calibrate
from fitting.classify import CLASSES, classify, features
from fitting.io import load_scan
from fitting.peaks import sro_peak_map
from fitting.profiles import scan_profiles, sector_profiles

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".sei-send-cache" / "library"
KINDS = ("vacuum", "li_metal", "cu", "li2o", "sei_type1", "type2_matrix", "lif", "electrolyte")
# scene region kind → class name
KIND_CLASS = {"li_metal": "li_metal", "cu": "cu", "li2o": "li2o", "sei_type1": "sei_type1",
              "sei_type2": "sei_type2", "electrolyte": "electrolyte", "vacuum": "vacuum"}  # fmt: skip
PURE = 0.8  # majority region's probe-volume fraction (issue 8, item 7)
# electrons per pattern: the synthesiser's default (10⁶); the classes also hold at a tenth of it (below) — at 10⁴ e
# the 5 % LiF spots of Type 2 are below noise
DOSE = 1.0e6


@pytest.fixture(scope="module")
def library():
    from simkit.library import build_library, preset_specs

    seen, specs = set(), []
    for s in preset_specs("tiny"):
        if s.kind not in KINDS or (s.kind in ("li_metal", "cu") and s.kind in seen):
            continue
        seen.add(s.kind)
        specs.append(s)
    return build_library(specs, cache_dir=CACHE, progress=False)


def _classified(library, tmp_path_factory, name, seed, dose=DOSE, field=(6, 90)):
    from simkit.synth import default_scan, synthesize_scan

    scene, _ = default_scan(name, field_shape=field)
    path = tmp_path_factory.mktemp("synth") / f"{name}.h5"
    res = synthesize_scan(scene, path, library=library, electrons_per_pattern=dose, progress=False, seed=seed)
    scan = load_scan(path)
    cal = calibrate(scan)
    prof = scan_profiles(scan.data, cal.plan, shifts=cal.shifts, exclude_direct=0.15)
    pm = sro_peak_map(prof, semiangle=scan.semiangle, energy=scan.energy)
    q, m, s = sector_profiles(scan.data, cal.plan, shifts=cal.shifts, n_phi=32)
    f = features(q, m, s, profiles=prof, peak_map=pm)
    truth_cls = np.array([CLASSES.index(KIND_CLASS[r.kind]) for r in scene.regions])[res.truth["region"]]
    pure = res.truth["fractions"].max(axis=-1) >= PURE
    return classify(f), truth_cls, pure, f, res.truth


@pytest.fixture(scope="module")
def bottom(library, tmp_path_factory):
    return _classified(library, tmp_path_factory, "bottom", 1)


@pytest.fixture(scope="module")
def top(library, tmp_path_factory):
    return _classified(library, tmp_path_factory, "top", 2)


def _confusion(pred, truth, pure):
    return {
        CLASSES[k]: {CLASSES[j]: int(np.count_nonzero(pred[pure & (truth == k)] == j)) for j in range(len(CLASSES))}
        for k in np.unique(truth[pure])
    }


@pytest.mark.parametrize("scene", ["bottom", "top"])
def test_accuracy_on_pure_pixels_above_95_percent(scene, request):
    pred, truth, pure, *_ = request.getfixturevalue(scene)
    assert pure.sum() > 0.8 * pure.size
    acc = np.mean(pred[pure] == truth[pure])
    assert acc > 0.95, (acc, _confusion(pred, truth, pure))


def test_every_region_is_mostly_its_class(bottom, top):
    for pred, truth, pure, *_ in (bottom, top):
        for k in np.unique(truth[pure]):
            sel = pure & (truth == k)
            assert np.mean(pred[sel] == k) > 0.85, (CLASSES[k], _confusion(pred, truth, pure))


def test_bragg_disc_centroids_sit_at_the_metal_reflections(bottom):
    # Li 110 at 0.406 Å⁻¹ (a = 3.483 Å at 100 K: √2/a); Cu discs between 111 (0.480) and 200 (0.555); the disc
    # midpoint reads |g| whatever the intensity inside the disc: Cu 200 is not read as Li 200 (0.574)
    pred, truth, pure, f, _ = bottom
    li = pure & (truth == CLASSES.index("li_metal"))
    cu = pure & (truth == CLASSES.index("cu"))
    assert abs(np.median(f.bragg_q[li]) - np.sqrt(2) / 3.483) < 0.01
    assert 0.47 < np.median(f.bragg_q[cu]) < 0.56
    from fitting.classify import REFLECTIONS

    qc = np.median(f.bragg_q[cu])
    assert min(abs(qc - r) for r in REFLECTIONS["cu"]) < min(abs(qc - r) for r in REFLECTIONS["li"])
    # a 5 %-volume oxide does not outweigh the Li grain's discs, and a metal grain carries far more Bragg
    # intensity than the 5 % LiF crystallites of Type 2
    t2 = pure & (truth == CLASSES.index("sei_type2"))
    assert np.median(f.bragg[li]) > 5 * np.median(f.bragg[t2])


@pytest.mark.parametrize("factor", [0.1, 4.0])
def test_classes_hold_from_a_tenth_to_four_times_the_default_dose(factor, library, tmp_path_factory):
    """Dose changes the noise, not the physics: the classes hold from 10⁵ to 4 × 10⁶ e/pattern. The Bragg-disc
    fraction counts the disc excess above the noise, so it grows with dose (the LiF spots of Type 2 from ≈ 0.01
    at 10⁵ e to ≈ 0.045 at 10⁶); a fixed crystal threshold of 0.06 had turned half the Type 2 pixels into Cu at
    4 × 10⁵ e."""
    pred, truth, pure, f, _ = _classified(library, tmp_path_factory, "bottom", 1, dose=factor * DOSE)
    acc = np.mean(pred[pure] == truth[pure])
    assert acc > 0.95, (acc, _confusion(pred, truth, pure))
    t2 = pure & (truth == CLASSES.index("sei_type2"))
    assert t2.sum() >= 20 and np.mean(pred[t2] == CLASSES.index("sei_type2")) > 0.85, _confusion(pred, truth, pure)


def test_type1_pixels_grazing_the_li_grain_stay_type1(library, tmp_path_factory):
    """A Type 1 pixel whose probe footprint takes in a few % of the neighbouring Li grain shows its 110 disc, but
    both its Bragg fraction and its scattered fraction are far below the grain's (0.07–0.25 vs 0.73 and 0.12–0.15
    vs 0.39 on the demo scan): it is an amorphous column grazing a grain, not Li metal (13–16 of 49 pure Type 1
    pixels of this scan were called Li metal before the scan-relative minority rule)."""
    pred, truth, pure, f, t = _classified(library, tmp_path_factory, "bottom", 5, field=(24, 90))
    li_share = t["fractions"][..., list(t["region_names"]).index("li")]
    grazing = pure & (truth == CLASSES.index("sei_type1")) & (li_share > 0.02)
    assert grazing.sum() >= 8, grazing.sum()
    assert np.mean(pred[grazing] == CLASSES.index("sei_type1")) > 0.9, np.bincount(pred[grazing])
    off = classify(f, minority_ratio=0)  # without the rule they read as Li metal
    assert np.mean(off[grazing] == CLASSES.index("li_metal")) > 0.5, np.bincount(off[grazing])
    li = pure & (truth == CLASSES.index("li_metal"))
    assert (pred[li] == CLASSES.index("li_metal")).all()  # no grain pixel is lost


def _random_lif_library(n_lif):
    """The tiny library with ``n_lif`` LiF crystallites of random orientation (seeds 300…): about a quarter of random
    3 nm orientations show discs at 2 mrad, so a Type 2 column has spots of its own only now and then."""
    from simkit.library import EntrySpec, build_library, preset_specs

    seen, specs = set(), []
    for s in preset_specs("tiny"):
        if s.kind not in KINDS or s.kind == "lif" or (s.kind in ("li_metal", "cu") and s.kind in seen):
            continue
        seen.add(s.kind)
        specs.append(s)
    specs += [
        EntrySpec(kind="lif", method="auto", seed=300 + k,
                  params={"diameter": 30.0, "f_vacancy": (0.0, 0.15, 0.3)[k % 3], "orientation": "random"})
        for k in range(n_lif)
    ]  # fmt: skip
    return build_library(specs, cache_dir=CACHE, progress=False)


def _rare_spots_check(n_lif, field, tmp_path_factory):
    lib = _random_lif_library(n_lif)
    pred, truth, pure, f, t = _classified(lib, tmp_path_factory, "bottom", 5, field=field)
    t2 = pure & (truth == CLASSES.index("sei_type2"))
    with np.errstate(invalid="ignore"):
        from fitting.classify import REFLECTIONS

        near = np.min([np.abs(f.bragg_q - r) for r in REFLECTIONS["lif"]], axis=0) <= 0.05
    own = np.mean(((np.nan_to_num(f.bragg) >= 0.004) & near)[t2])
    off = classify(f, lif_sigma=0)
    return pred, off, truth, pure, own


@pytest.mark.slow
def test_type2_with_rare_lif_spots_is_found_by_their_frequency(tmp_path_factory):
    """24 random LiF orientations: fewer than half the Type 2 pixels show spots of their own (43 % on the default
    detector, LiF 220 inside; 18–25 % inside 0.64 Å⁻¹); the frequency rule recovers the layer (measured: all pure
    pixels 96 → 99 %, Type 2 58 → 93 % on the earlier library; 63 → 89 % since the library's amorphous entries
    are seed-averaged own-cell Debye profiles, Type 1 97 %). The Type 2 pixels it misses are one ≈ 7 × 8 patch
    (rows 15–21) through the whole layer depth with no spotted crystal within the rule's 2-pixel Gaussian reach:
    no LiF evidence there, so 0.85, not the 0.9 the earlier scene allowed."""
    pred, off, truth, pure, own = _rare_spots_check(24, (30, 90), tmp_path_factory)
    assert own < 0.5, own  # the premise: spots are rare
    t1, t2 = (pure & (truth == CLASSES.index(c)) for c in ("sei_type1", "sei_type2"))
    assert np.mean(pred[pure] == truth[pure]) > 0.95, _confusion(pred, truth, pure)
    assert np.mean(pred[t2] == CLASSES.index("sei_type2")) > 0.85, _confusion(pred, truth, pure)
    assert np.mean(pred[t1] == CLASSES.index("sei_type1")) > 0.7, _confusion(pred, truth, pure)
    assert np.mean(off[t2] == CLASSES.index("sei_type2")) < 0.7  # without the rule much of the layer is lost


def test_type2_with_rare_lif_spots_small(tmp_path_factory):
    """CI-sized version: 8 random LiF orientations, 12 × 90 positions."""
    pred, off, truth, pure, own = _rare_spots_check(8, (12, 90), tmp_path_factory)
    t2 = pure & (truth == CLASSES.index("sei_type2"))
    assert own < 0.7, own  # 0.53–0.61 on the 0.83 Å⁻¹ detector (LiF 220 inside), 18–25 % inside 0.64
    assert np.mean(pred[pure] == truth[pure]) > 0.95, _confusion(pred, truth, pure)
    assert np.mean(pred[t2] == CLASSES.index("sei_type2")) > 0.85, _confusion(pred, truth, pure)
    assert np.mean(pred[t2] == CLASSES.index("sei_type2")) > np.mean(off[t2] == CLASSES.index("sei_type2"))
