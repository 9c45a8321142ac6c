"""fitting.classify: rule-based classes from spots + whole profile, unsupervised grouping, layer thickness."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.calibrate import calibrate
from fitting.classify import CLASSES, REFLECTIONS, classify, cluster_profiles, features, layer_thickness
from fitting.peaks import sro_peak_map
from fitting.profiles import scan_profiles, sector_profiles
from tests.synthetic_scan_helpers import REGIONS, all_regions_scan, layered_scan

# synthetic region names → class names (same order; the classifier adds "unassigned" last)
assert len(REGIONS) == len(CLASSES) - 1 and CLASSES[-1] == "unassigned"


def _analyse(data, truth):
    cal = calibrate(data, pixel_size=truth["pixel_size"])
    prof = scan_profiles(data, cal.plan, shifts=cal.shifts, exclude_direct=0.15)
    pm = sro_peak_map(prof, width=0.04)  # the analytic rings' σ (not broadened by the nominal 2 mrad probe)
    q, m, s = sector_profiles(data, cal.plan, shifts=cal.shifts, n_phi=32)
    f = features(q, m, s, profiles=prof, peak_map=pm)
    return classify(f), f, prof, pm


@pytest.fixture(scope="module")
def all_regions():
    data, truth = all_regions_scan()
    return (*_analyse(data, truth), truth)


@pytest.fixture(scope="module")
def layered():
    data, truth = layered_scan()
    return (*_analyse(data, truth), truth)


def test_class_accuracy_on_pure_pixels(all_regions):
    classes, f, prof, pm, truth = all_regions
    acc = (classes == truth["regions"]).mean()
    assert acc > 0.95, acc
    for k in range(len(REGIONS)):
        m = truth["regions"] == k
        assert (classes[m] == k).mean() > 0.85, CLASSES[k]


def test_type2_and_electrolyte_are_told_apart_by_spots_not_position(all_regions):
    classes, f, prof, pm, truth = all_regions
    t2 = truth["regions"] == REGIONS.index("type2")
    el = truth["regions"] == REGIONS.index("electrolyte")
    # their SRO positions (0.295 vs 0.285 Å⁻¹) overlap within the noise of single pixels ...
    assert abs(np.nanmedian(pm.position[t2]) - np.nanmedian(pm.position[el])) < 0.02
    # ... but the LiF spot significance separates them
    assert np.median(f.spot_z["lif"][t2]) > 2 * np.median(f.spot_z["lif"][el])


def test_layer_thickness_within_one_scan_step(layered):
    classes, f, prof, pm, truth = layered
    step = 40.0  # Å (the study's 4 nm)
    region_ok = np.isin(truth["regions"], [REGIONS.index(r) for r in ("li", "type1", "type2", "cu")])
    assert region_ok.all()
    for name, cls in (("type1", "sei_type1"), ("type2", "sei_type2")):
        true_nm = truth["layers"][name].mean() * step / 10
        for method in ("count", "erf"):
            lt = layer_thickness(classes, cls, axis=0, step=step, method=method)
            assert abs(lt.thickness - true_nm) < step / 10, (name, method, lt.thickness, true_nm)
            assert 0 < lt.thickness_err < step / 10


def test_layer_thickness_counts_exactly_on_a_known_map():
    c = np.zeros((10, 4), int)
    c[2:5, :] = 4
    c[5, 1] = 4  # one line is one pixel thicker
    lt = layer_thickness(c, "sei_type1", axis=0, step=40.0)
    np.testing.assert_allclose(lt.per_line, [12.0, 16.0, 12.0, 12.0])
    assert lt.thickness == pytest.approx(13.0)
    lt1 = layer_thickness(c.T, 4, axis=1, step=40.0)
    np.testing.assert_allclose(lt1.per_line, lt.per_line)


def test_unsupervised_kmeans_and_nmf_separate_profile_families(all_regions):
    classes, f, prof, pm, truth = all_regions
    sel = np.isin(truth["regions"], [REGIONS.index("type1"), REGIONS.index("cu")])
    iq = prof.iq[sel][:, (prof.q >= 0.2) & (prof.q <= 0.75)]
    t = truth["regions"][sel]
    for method in ("kmeans", "nmf"):
        lab, cent = cluster_profiles(iq, 2, method=method, rng=0)
        # each true class maps onto one cluster (up to a permutation)
        agree = max((lab == (t == t[0])).mean(), (lab != (t == t[0])).mean())
        assert agree > 0.95, method


def test_bad_input(all_regions):
    classes, f, prof, pm, truth = all_regions
    with pytest.raises(ValueError, match="sector_mean"):
        features(np.arange(5.0), np.zeros((2, 2, 4, 6)), np.zeros((2, 2, 4, 6)))
    with pytest.raises(TypeError, match="Features"):
        classify({"scattered": 1})
    with pytest.raises(ValueError, match="step"):
        layer_thickness(classes, "sei_type1", axis=0, step=None)
    with pytest.raises(ValueError, match="label"):
        layer_thickness(classes, "sei_type3", axis=0, step=40.0)
    with pytest.raises(ValueError, match="axis"):
        layer_thickness(classes, 4, axis=2, step=40.0)
    with pytest.raises(ValueError, match="method"):
        cluster_profiles(prof.iq, 2, method="pca")


def test_all_zero_patterns_are_unassigned_with_a_warning():
    """A blank frame (no counts) is not vacuum — vacuum shows the full direct beam — and not Cu: unassigned."""
    q = np.linspace(0, 0.8, 65)
    m = np.zeros((2, 2, 16, q.size))
    f = features(q, m, m.copy())
    with pytest.warns(UserWarning, match="blank"):
        assert (classify(f) == CLASSES.index("unassigned")).all()


@pytest.mark.slow
def test_full_size_study_scan_layers_and_classes():
    """The study's geometry at full size: 90 × 60 positions at a 4 nm step, Li | Type 1 (≈ 15 nm) | Type 2
    (≈ 35 nm) | Cu, rough interfaces; classes, layer thicknesses within one step and the peak map."""
    from tests.synthetic_scan_helpers import layered_weights, make_scan, sro_truth

    rng = np.random.default_rng(90)
    w = layered_weights((90, 60), [30.2, 34.0, 42.8], ["li", "type1", "type2", "cu"], roughness=0.4, rng=rng)
    data, truth = make_scan(w, rng=rng, electrons=1e5, ellipse=(1.01, 0.3))
    classes, f, prof, pm = _analyse(data, truth)
    pure = w.max(-1) >= 0.8
    assert (classes == truth["regions"])[pure].mean() > 0.95
    for name, cls in (("type1", "sei_type1"), ("type2", "sei_type2")):
        true_nm = w[..., REGIONS.index(name)].sum(0).mean() * 4.0
        lt = layer_thickness(classes, cls, axis=0, step=40.0)
        assert abs(lt.thickness - true_nm) < 4.0
    tr = sro_truth(truth["sro_q0"], truth["regions"])
    ok = np.isfinite(tr) & pm.ok & pure
    assert np.median(np.abs(pm.position - tr)[ok]) < 0.003


def test_cu_grain_without_discs_is_cu_by_its_scattering(all_regions):
    """A Cu grain whose discs miss the detector (e.g. [111], first discs at 0.78 Å⁻¹) has no Bragg excess, but a
    Z = 29 metal scatters far more of the beam (0.33 here) than the light-element SEI (≤ 0.19): it stays Cu."""
    import dataclasses

    classes, f, prof, pm, truth = all_regions
    truth_cu = truth["regions"] == REGIONS.index("cu")
    no_discs = dataclasses.replace(f, bragg=np.where(truth_cu, 0.0, f.bragg))
    assert (classify(no_discs)[truth_cu] == CLASSES.index("cu")).all()
    assert not (classify(no_discs, dense_min=1.0)[truth_cu] == CLASSES.index("cu")).any()
    amorphous = np.isin(truth["regions"], [REGIONS.index(r) for r in ("type1", "type2", "electrolyte")])
    assert (classify(no_discs)[amorphous] != CLASSES.index("cu")).all()


def test_type2_pixels_without_lif_discs_borrow_their_neighbours_evidence(all_regions):
    """A quarter of the Type 2 pixels lose their LiF discs (crystallites out of Bragg condition): with the neighbourhood
    rule they stay Type 2, without it they fall to the discless rules (electrolyte here: the analytic Type 2 has a
    low high_q); no Type 1 pixel changes."""
    import dataclasses

    classes, f, prof, pm, truth = all_regions
    t2 = truth["regions"] == REGIONS.index("type2")
    iy, ix = np.indices(t2.shape)
    dark = t2 & (iy % 2 == 0) & (ix % 2 == 0)  # 26 % of the pure Type 2 pixels on the demo scene show no disc
    g = dataclasses.replace(f, bragg=np.where(dark, 0.0, f.bragg))
    code2 = CLASSES.index("sei_type2")
    assert (classify(g, lif_radius=0)[dark] != code2).mean() > 0.9
    assert (classify(g)[dark] == code2).mean() >= 0.85  # a corner pixel has half its neighbours outside
    t1 = truth["regions"] == REGIONS.index("type1")
    assert (classify(g)[t1] == classify(g, lif_radius=0)[t1]).all()


def test_li_or_cu_by_scattering_power_when_the_disc_position_cannot_tell(all_regions):
    """Cu 200 (0.555 Å⁻¹) and Li 200 (0.574) lie 0.019 Å⁻¹ apart, a fifth of a 2 mrad disc radius: a Cu 200 disc
    read at 0.568 (as the excess-weighted centroid of a whole disc did) is nearer Li 200. Its scattered fraction is
    Cu's, not Li's: the scan-relative rule gives it back to Cu; a grain unlike both phases keeps its nearest
    reflection."""
    import dataclasses

    classes, f, prof, pm, truth = all_regions
    cu = truth["regions"] == REGIONS.index("cu")
    li = truth["regions"] == REGIONS.index("li")
    iy, ix = np.indices(cu.shape)
    ring = cu & (ix % 2 == 0)  # half of the Cu grain: its disc read at 0.568
    g = dataclasses.replace(f, bragg_q=np.where(ring, 0.568, f.bragg_q))
    code_cu, code_li = CLASSES.index("cu"), CLASSES.index("li_metal")
    assert (classify(g, metal_tol=0)[ring] == code_li).all()  # the nearest reflection alone says Li
    assert (classify(g)[ring] == code_cu).all()
    assert (classify(g)[li] == code_li).all() and (classify(g)[cu & ~ring] == code_cu).all()
    # a Cu pixel scattering unlike either phase (3 × Li's fraction) is not moved to Li by the rule
    odd = ring & (iy % 2 == 0)
    h = dataclasses.replace(g, scattered=np.where(odd, 3.0 * np.median(f.scattered[li]), f.scattered))
    assert (classify(h)[odd] == classify(h, metal_tol=0)[odd]).all()


def test_sector_statistics_kernel_equals_numpy_twin():
    """The numba kernel behind features() against its NumPy twin (tests/reference.py): NaN bins, sectors without
    pixels, a zero standard error, a Bragg-like excess in one sector; and the same numbers without the JIT."""
    from fitting.classify import _k_sector_stats, _sector_statistics, _sorting_network
    from tests.reference import sector_statistics_reference

    r = np.random.default_rng(0)
    q = np.linspace(0.0025, 0.8, 60)
    m = r.gamma(2.0, 5.0, (4, 5, 9, 60)).astype(np.float32)
    s = np.sqrt(m / r.integers(5, 40, m.shape)).astype(np.float32)
    m[0, 0, :, 3] = s[0, 0, :, 3] = np.nan  # a bin with no pixels in any sector
    m[1, 2, :4, 10] = s[1, 2, :4, 10] = np.nan  # sectors without pixels
    m[2, 2, 1, 20:30] += 200.0  # a disc in one sector
    s[3, 3, 2, 5] = 0.0
    got = _sector_statistics(q, m, s, (0.2, 0.7), 2.0)
    ref = sector_statistics_reference(q, m, s, (0.2, 0.7), 2.0)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=k)
    assert got["bragg"][2, 2] > 0.3 and abs(got["bragg_q"][2, 2] - q[20:30].mean()) < 0.02
    # NUMBA_DISABLE_JIT=1 runs the Python function: same arithmetic, same numbers
    out = [np.empty((20, 60)) for _ in range(7)] + [np.empty(20) for _ in range(4)]
    nojit = [np.empty((20, 60)) for _ in range(7)] + [np.empty(20) for _ in range(4)]
    args = (m.reshape(20, 9, 60), s.reshape(20, 9, 60), q, 16, 52, 2.0, _sorting_network(9))
    _k_sector_stats(*args, *out)
    _k_sector_stats.py_func(*args, *nojit)
    for a, b in zip(out, nojit):
        np.testing.assert_array_equal(a, b)


def test_disc_position_is_the_midpoint_of_its_extent_and_a_cut_disc_is_placed_one_radius_in():
    """bragg_q of a disc is the middle of its radial extent whatever the intensity inside it (a ramp across the disc
    pulls the excess-weighted centroid outward, not the midpoint); a disc cut by the window's end is placed one
    radius (measured on the scan's whole discs) beyond its inner edge: both at the disc centres built in."""
    from fitting.classify import _sector_statistics
    from tests.reference import sector_statistics_reference

    r = np.random.default_rng(1)
    q = np.arange(0.0025, 0.8, 0.005)
    m = r.gamma(50.0, 1.0, (2, 4, 16, q.size))
    whole = (q >= 0.35) & (q <= 0.45)  # bins 70…89
    ramp = np.linspace(150.0, 400.0, whole.sum())  # dynamical intensity varying across the disc
    m[0, :, 3, whole] += ramp[:, None]
    cut0 = np.flatnonzero(q >= 0.62)[0]
    cut = np.arange(cut0, cut0 + whole.sum())  # the same disc width, running past the window end (0.7)
    m[1, 0, 5, cut[cut < q.size]] += 300.0
    s = np.sqrt(m / 40.0)  # Poisson standard error of a 40-pixel sector mean
    st = _sector_statistics(q, m, s, (0.2, 0.7), 2.0)
    qw = q[whole]
    centre = 0.5 * (qw[0] + qw[-1])
    assert np.allclose(st["bragg_q"][0], centre, atol=1e-12)
    centroid = np.sum(ramp * qw) / np.sum(ramp)
    assert centroid - centre > 0.005  # what the weighted centroid would have read
    assert st["bragg_q"][1, 0] == pytest.approx(q[cut0] + 0.5 * (qw[-1] - qw[0]), abs=1e-12)
    ref = sector_statistics_reference(q, m, s, (0.2, 0.7), 2.0)
    np.testing.assert_allclose(st["bragg_q"], ref["bragg_q"], rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 16])
def test_sorting_network_sorts_every_zero_one_input(n):
    """The comparator network of the sector medians sorts all 2^n 0–1 inputs (padded to a power of two with the
    +inf the kernel uses), hence every input (Knuth's 0–1 principle)."""
    from fitting.classify import _sorting_network

    net = _sorting_network(n)
    size = 1 << (n - 1).bit_length()
    x = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    x = np.concatenate([x, np.full((x.shape[0], size - n), 2)], axis=1)  # padding: larger than any value
    for i, j in net:
        lo, hi = np.minimum(x[:, i], x[:, j]), np.maximum(x[:, i], x[:, j])
        x[:, i], x[:, j] = lo, hi
    assert np.all(np.diff(x, axis=1) >= 0)


# ---------------------------------------------------------------------------------------------------------------
# open world: unknown phases, unmeasured reflections, frames the rules cannot read
def _sector_scene(q, extra=None, n_phi=32, npix=40.0, flat=False):
    """Sector profiles (1, 1, n_phi, n_q) of one analytic pattern: a direct beam (Q < 0.08 Å⁻¹) and an SRO hump at
    0.30 Å⁻¹ on a background, plus ``extra(q, sector)``; Poisson errors of ``npix`` pixels per sector bin."""
    base = 2e3 * (q < 0.08) + 30 * np.exp(-0.5 * ((q - 0.30) / 0.04) ** 2) + 10 / (q + 0.1)
    if flat:
        base = np.ones_like(q)
    m = np.stack([base + (0 if extra is None else extra(q, k)) for k in range(n_phi)])[None, None]
    return m, np.sqrt(m / npix)


def test_unknown_sharp_ring_is_unassigned_not_li2o():
    """A Li₂S 111 powder ring (0.305 Å⁻¹ at 100 K: not among the known reflections) is an unknown phase."""
    from fitting.calibrate import reflection_q

    q = np.arange(0.0025, 0.9, 0.005)
    q_li2s = np.sqrt(3) / 5.691  # Li₂S a(100 K) of structures.crystals
    assert min(abs(q_li2s - r) for refl in REFLECTIONS.values() for r in refl) > 0.05
    m, s = _sector_scene(q, lambda q, k: 40 * np.exp(-0.5 * ((q - q_li2s) / 0.003) ** 2))
    f = features(q, m, s)
    assert f.ring_max[0, 0] > 6 and abs(f.ring_q[0, 0] - q_li2s) < 0.005
    assert classify(f)[0, 0] == CLASSES.index("unassigned")
    # the same ring at Li₂O 111 is Li₂O (the rule is not a blanket refusal)
    q_li2o = reflection_q("Li2O", (1, 1, 1))
    m, s = _sector_scene(q, lambda q, k: 40 * np.exp(-0.5 * ((q - q_li2o) / 0.003) ** 2))
    assert classify(features(q, m, s))[0, 0] == CLASSES.index("li2o")


def test_reflections_outside_the_measured_range_are_no_evidence():
    """Profiles measured to 0.45 Å⁻¹ with a steep anisotropic rise at the last bins: LiF (0.499, 0.706) and Cu
    (0.480, 0.555) reflections lie beyond the range, so their evidence is 0, never an extrapolation."""
    q = np.arange(0.0025, 0.45, 0.005)
    m, s = _sector_scene(q, lambda q, k: (k == 3) * 400 * np.clip((q - 0.43) / 0.02, 0, None))
    f = features(q, m, s)
    assert f.spot_z["lif"][0, 0] == 0 and f.spot_z["cu"][0, 0] == 0
    assert f.spot_z["li"][0, 0] > 0 or f.spot_z["li2o"][0, 0] >= 0  # in-range reflections are read as before


def test_discs_far_from_every_known_reflection_are_an_unknown_crystal():
    q = np.arange(0.0025, 0.9, 0.005)
    # 0.86 Å⁻¹: ≥ 0.075 from every known reflection (the nearest, Cu 220, at 0.785)
    disc = lambda q, k: (k in (5, 21)) * 400 * np.exp(-0.5 * ((q - 0.86) / 0.01) ** 2)  # noqa: E731
    f = features(q, *_sector_scene(q, disc))
    assert f.bragg[0, 0] > 0.025 and abs(f.bragg_q[0, 0] - 0.86) < 0.01
    assert classify(f)[0, 0] == CLASSES.index("unassigned")
    assert classify(f, assign_tol=0.5)[0, 0] != CLASSES.index("unassigned")  # with the rule off: a known phase


def test_flat_saturated_frame_is_unassigned_with_a_warning_not_cu():
    q = np.arange(0.0025, 0.9, 0.005)
    f = features(q, *_sector_scene(q, flat=True))  # a 1-bit frame with every pixel at 1
    assert f.beam_contrast[0, 0] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="no direct beam"):
        c = classify(f)
    assert c[0, 0] == CLASSES.index("unassigned")
    assert classify(f, warn=False, min_beam_contrast=0.5)[0, 0] == CLASSES.index("cu")  # the old reading


def test_classify_rules_are_one_versioned_configuration(tmp_path):
    import json

    from fitting.classify import RULES_VERSION, ClassifyRules

    r = ClassifyRules()
    assert r.version == RULES_VERSION and r.to_dict()["crystal_min"] == 0.3
    p = tmp_path / "rules.json"
    p.write_text(json.dumps({"version": RULES_VERSION, "dense_min": 0.3}))
    assert ClassifyRules.from_json(p) == ClassifyRules(dense_min=0.3)
    assert ClassifyRules.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="version"):
        ClassifyRules(version=RULES_VERSION - 1)
    with pytest.raises(ValueError, match="unknown field"):
        ClassifyRules.from_dict({"dense_mim": 0.3})
    with pytest.raises(ValueError, match="lif_radius"):
        ClassifyRules(lif_radius=1.5)
    with pytest.raises(TypeError, match="ClassifyRules"):
        classify(features(np.arange(0.0025, 0.9, 0.005), *_sector_scene(np.arange(0.0025, 0.9, 0.005))), spot_min=6)


def test_rules_object_and_keyword_overrides_give_the_same_classes(all_regions):
    from fitting.classify import ClassifyRules

    classes, f, *_ = all_regions
    assert (classify(f, ClassifyRules(lif_radius=0)) == classify(f, lif_radius=0)).all()
    assert (classify(f, ClassifyRules()) == classes).all()
