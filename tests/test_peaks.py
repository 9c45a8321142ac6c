"""fitting.peaks: SRO peak maps on synthetic scans, Gaussian-mixture histograms, error-function layer fits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from fitting.calibrate import calibrate
from fitting.peaks import erf_layer_fit, fit_histogram, sro_peak_map
from fitting.profiles import scan_profiles
from tests.reference import gaussian_mixture_loglike_reference
from tests.synthetic_scan_helpers import REGIONS, all_regions_scan, make_scan, sro_truth


@pytest.fixture(scope="module")
def analysed():
    data, truth = all_regions_scan()
    cal = calibrate(data, pixel_size=truth["pixel_size"], ellipse_q_range=(0.24, 0.42))
    prof = scan_profiles(data, cal.plan, shifts=cal.shifts, exclude_direct=0.15)
    return data, truth, cal, prof


ANALYTIC_WIDTH = 0.04  # [Å⁻¹] Gaussian σ of the analytic SRO rings (tests/synthetic_scan_helpers.isotropic)


def _noise_free_scan():
    """The expected counts of ``all_regions_scan()`` (same seed, same draws of the SRO positions)."""
    rng = np.random.default_rng(11)
    codes = np.repeat(np.arange(len(REGIONS)), 4)[:, None] * np.ones((1, 10), int)
    sro = np.where(codes == REGIONS.index("type1"), rng.uniform(0.325, 0.345, codes.shape), np.nan)
    expected, _ = make_scan(codes, sro_map=sro, rng=rng, ellipse=(1.015, 0.4), electrons=1e5, noise=False)
    return expected


def test_peak_map_recovers_analytic_sro_positions(analysed):
    # truth: the maximum of Q·I_iso(Q) of the analytic density (not the code's output); realistic dose of
    # 1e5 electrons per pattern (≈ 60 e/Å² scan fluence at a 4 nm step), with descan and a 1.5 % ellipse
    data, truth, cal, prof = analysed
    # the analytic rings are not broadened by the probe (σ = 0.035–0.04 Å⁻¹ by construction, whatever the
    # nominal 2 mrad), so the estimator's width is that of the rings, not simkit.peak_estimator.sro_window(2 mrad)
    pm = sro_peak_map(prof, width=ANALYTIC_WIDTH)
    tr = sro_truth(truth["sro_q0"], truth["regions"])
    amorph = np.isfinite(tr)
    assert pm.ok[amorph].mean() > 0.97
    err = np.abs(pm.position - tr)[amorph & pm.ok]
    assert np.median(err) < 0.003, np.median(err)
    for name in ("type1", "type2", "electrolyte"):
        m = (truth["regions"] == REGIONS.index(name)) & pm.ok
        assert np.median(np.abs(pm.position - tr)[m]) < 0.005, name
    # reported uncertainties describe the scatter about the noise-free value of the same estimator (pull spread
    # within a factor 1.5 of 1); the analytic argmax above differs from it by a definition offset, not noise
    expected = _noise_free_scan()
    nf = sro_peak_map(scan_profiles(expected, cal.plan, shifts=cal.shifts, exclude_direct=0.15), width=ANALYTIC_WIDTH)
    pull = ((pm.position - nf.position) / pm.position_err)[amorph & pm.ok & nf.ok]
    assert 0.6 < np.std(pull) < 1.5
    assert abs(np.median(pull)) < 0.3  # unbiased


def test_peak_map_from_raw_patterns_equals_from_profiles(analysed):
    data, truth, cal, prof = analysed
    a = sro_peak_map(prof)
    b = sro_peak_map(data, plan=cal.plan, shifts=cal.shifts, exclude_direct=0.15)
    np.testing.assert_array_equal(a.ok, b.ok)
    np.testing.assert_allclose(a.position[a.ok], b.position[b.ok])


def test_peak_map_mask_and_bad_input(analysed):
    data, truth, cal, prof = analysed
    mask = truth["regions"] == REGIONS.index("type1")
    pm = sro_peak_map(prof, mask=mask)
    assert not pm.ok[~mask].any() and np.isnan(pm.position[~mask]).all()
    with pytest.raises(ValueError, match="mask.shape"):
        sro_peak_map(prof, mask=mask[:-1])
    with pytest.raises(ValueError, match="plan"):
        sro_peak_map(data)


def test_mixture_recovers_the_studys_two_sei_types(rng):
    # SEI Type 1 mean 0.33 std 0.019 (60 %), Type 2 mean 0.295 std 0.012 (40 %)
    n = 3000
    k = rng.random(n) < 0.6
    x = np.where(k, rng.normal(0.33, 0.019, n), rng.normal(0.295, 0.012, n))
    g = fit_histogram(x, rng=1)
    assert g.n_components == 2
    np.testing.assert_allclose(g.means, [0.295, 0.33], atol=0.003)
    np.testing.assert_allclose(g.stds, [0.012, 0.019], rtol=0.15)
    np.testing.assert_allclose(g.weights, [0.4, 0.6], atol=0.06)
    assert g.bic[2] < g.bic[1] and g.bic[2] < g.bic[3]
    ll = gaussian_mixture_loglike_reference(x, g.means, g.stds, g.weights)
    assert abs(g.log_likelihood - ll) < 1e-6 * abs(ll)
    # the density integrates to one
    grid = np.linspace(0.2, 0.45, 20001)
    assert abs(np.trapezoid(g.pdf(grid), grid) - 1) < 1e-3


def test_single_population_picks_one_component(rng):
    x = rng.normal(0.285, 0.01, 1500)
    g = fit_histogram(x, rng=2)
    assert g.n_components == 1
    assert abs(g.means[0] - 0.285) < 4 * 0.01 / np.sqrt(1500)
    # the ML standard deviation of one Gaussian is the population std (ddof=0); EM runs on a 512-bin histogram
    # for > 1024 values (Sheppard bias h²/12 ≈ 1e-5 relative here)
    assert abs(g.stds[0] / x.std() - 1) < 2e-3


def test_integer_weights_equal_duplicated_values(rng):
    x = rng.normal(0.33, 0.02, 300)
    w = rng.integers(1, 4, 300)
    a = fit_histogram(x, 1, weights=w)
    b = fit_histogram(np.repeat(x, w), 1)
    np.testing.assert_allclose(a.means, b.means, rtol=1e-9)
    np.testing.assert_allclose(a.stds, b.stds, rtol=1e-6)


def test_histogram_bad_input():
    with pytest.raises(ValueError, match="too few"):
        fit_histogram([0.3, 0.31, np.nan])
    with pytest.raises(ValueError, match="n_components"):
        fit_histogram(np.arange(10.0), 0)
    with pytest.raises(ValueError, match="weights"):
        fit_histogram(np.arange(10.0), 1, weights=np.ones(3))
    with pytest.raises(ValueError, match="all equal"):
        fit_histogram(np.ones(10), 1)


def test_erf_layer_fit_recovers_thickness(rng):
    x = np.arange(30.0)
    x1, x2, s = 8.3, 16.9, 0.8
    y = 0.5 * (erf((x - x1) / (np.sqrt(2) * s)) - erf((x - x2) / (np.sqrt(2) * s)))
    y = y + rng.normal(0, 0.03, x.size)
    fit = erf_layer_fit(y, step=40.0)
    assert fit.ok
    assert abs(fit.thickness - (x2 - x1) * 4.0) < 3 * fit.thickness_err + 1e-9
    assert fit.thickness_err < 1.0  # nm
    with pytest.raises(ValueError, match="step"):
        erf_layer_fit(y, step=0.0)


def test_pipeline_from_a_lazy_emd_file(tmp_path):
    # file → Scan (h5py, lazy) → calibrate(scan) → peak map straight from the Scan, chunk by chunk
    from fitting.io import load_scan
    from tests.synthetic_scan_helpers import write_emd

    data, truth = all_regions_scan()
    rows = slice(16, 20)  # the Type 1 band
    write_emd(tmp_path / "s.h5", data[rows], step=40.0, pixel_size=truth["pixel_size"], energy=300e3, semiangle=2.0)
    scan = load_scan(tmp_path / "s.h5")
    cal = calibrate(scan)  # pixel size from the file
    pm = sro_peak_map(scan, plan=cal.plan, shifts=cal.shifts, exclude_direct=0.15, chunk=10, width=ANALYTIC_WIDTH)
    tr = sro_truth(truth["sro_q0"], truth["regions"])[rows]
    assert pm.ok.all()
    assert np.median(np.abs(pm.position - tr)) < 0.003
