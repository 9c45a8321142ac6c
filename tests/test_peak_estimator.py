"""simkit.peak_estimator: the one peak-position estimator (maximum of a local peak + linear background fit to I·Qⁿ)."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.peak_estimator import peak_position
from tests.reference import peak_position_reference

Q = np.arange(0.0025, 1.0, 0.005)  # bin centres [Å⁻¹]
WINDOW = (0.22, 0.42)


def _gauss(q, a, mu, w):
    return a * np.exp(-0.5 * ((q - mu) / w) ** 2)


def test_pure_gaussian_in_iq_gives_its_centre():
    # I·Q = Gaussian exactly (no background): the maximum of the fit is the Gaussian centre, analytically.
    mu = np.array([0.297, 0.3133, 0.3301, 0.35])
    iq = _gauss(Q, 10.0, mu[:, None], 0.035)
    fit = peak_position(Q, iq / Q, WINDOW, n=1)
    assert fit.ok.all()
    np.testing.assert_allclose(fit.position, mu, atol=1e-6)
    np.testing.assert_allclose(fit.width, 0.035, rtol=1e-4)
    np.testing.assert_allclose(fit.amplitude, 10.0, rtol=1e-4)


def test_sloping_background_moves_the_maximum_to_the_analytic_value():
    # I·Q = A g(q) + b0 + b1 (q - qc): the maximum solves -A (q-mu)/w² g + b1 = 0; find it by bisection.
    a, mu, w, b0, b1 = 5.0, 0.33, 0.03, 2.0, -20.0
    qc = 0.5 * sum(WINDOW)
    iq = _gauss(Q, a, mu, w) + b0 + b1 * (Q - qc)
    lo, hi = mu - w, mu  # derivative changes sign between mu - w (positive) and mu (b1 < 0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        d = -a * (mid - mu) / w**2 * np.exp(-0.5 * ((mid - mu) / w) ** 2) + b1
        lo, hi = (mid, hi) if d > 0 else (lo, mid)
    fit = peak_position(Q, iq, WINDOW, n=0)
    assert fit.ok
    assert abs(float(fit.position) - lo) < 1e-6
    assert abs(lo - mu) > 0.003  # the test is meaningful: the maximum is not mu


def test_lorentzian_shape():
    mu = 0.31
    iq = 3.0 / (1 + ((Q - mu) / 0.04) ** 2)
    fit = peak_position(Q, iq, WINDOW, n=0, shape="lorentzian")
    assert fit.ok and abs(float(fit.position) - mu) < 1e-6
    assert abs(float(fit.width) - 0.04) < 1e-5


def test_vectorised_over_leading_dims_equals_one_by_one(rng):
    mu = rng.uniform(0.29, 0.35, (3, 4))
    lam = 40 * (1 + np.exp(-0.5 * ((Q - mu[..., None]) / 0.035) ** 2)) / (Q + 0.05)
    counts = rng.poisson(lam).astype(float)
    fit = peak_position(Q, counts, WINDOW)
    for idx in np.ndindex(mu.shape):
        one = peak_position(Q, counts[idx], WINDOW)
        assert one.ok == fit.ok[idx]
        if one.ok:
            assert abs(float(one.position) - fit.position[idx]) < 1e-9


def test_agrees_with_slow_scipy_reference(rng):
    # oracle: scipy.curve_fit per profile + the maximum on a fine grid + numerical error propagation
    mu = rng.uniform(0.30, 0.35, 12)
    lam = 30 * (1 + 1.2 * np.exp(-0.5 * ((Q - mu[:, None]) / 0.035) ** 2)) / (Q + 0.05) ** 1.5
    counts = rng.poisson(lam).astype(float)
    sem = np.sqrt(np.maximum(counts, 1.0))
    fit = peak_position(Q, counts, WINDOW, sigma=sem)
    for i in range(mu.size):
        p_ref, e_ref = peak_position_reference(Q, counts[i], WINDOW, sigma=sem[i])
        assert fit.ok[i] == np.isfinite(p_ref)
        if fit.ok[i]:
            assert abs(fit.position[i] - p_ref) < max(2e-6, 0.02 * e_ref)
            assert abs(fit.position_err[i] / e_ref - 1) < 0.05


def test_poisson_pulls_have_unit_spread(rng):
    # Calibration of the uncertainty: over many Poisson realisations of ONE expected profile, the scatter of
    # positions matches the reported position_err (pull std ≈ 1) and the mean matches the noise-free answer.
    lam = 200 * (1 + np.exp(-0.5 * ((Q - 0.33) / 0.035) ** 2)) / (Q + 0.05)
    truth = peak_position(Q, lam, WINDOW, n=1)
    counts = rng.poisson(np.broadcast_to(lam, (800, Q.size))).astype(float)
    fit = peak_position(Q, counts, WINDOW, n=1, sigma=np.sqrt(np.maximum(counts, 1)))
    assert fit.ok.mean() > 0.99
    pull = (fit.position[fit.ok] - float(truth.position)) / fit.position_err[fit.ok]
    assert 0.85 < pull.std() < 1.15
    assert abs(pull.mean()) < 0.15


def test_failures_are_flagged_with_nan():
    # monotonic I·Q: its maximum is on the window edge -> ok False, position NaN (documented)
    falling = 100 / (Q + 0.05) ** 3
    allnan = np.full(Q.size, np.nan)
    flat0 = np.zeros(Q.size)
    fit = peak_position(Q, np.stack([falling, allnan, flat0]), WINDOW)
    assert not fit.ok.any()
    assert np.isnan(fit.position).all() and np.isnan(fit.position_err).all()


def test_nan_bins_are_ignored():
    iq = _gauss(Q, 10.0, 0.32, 0.035)
    I = iq / Q
    I[np.argmin(abs(Q - 0.3))] = np.nan
    fit = peak_position(Q, I, WINDOW)
    assert fit.ok and abs(float(fit.position) - 0.32) < 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"q_range": (0.3, 0.31)}, "q_range"),
        ({"q_range": (0.4, 0.3)}, "q_range"),
        ({"q_range": (0.2, 0.4), "shape": "voigt"}, "shape"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        peak_position(Q, np.ones(Q.size), **kwargs)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="intensity"):
        peak_position(Q, np.ones(Q.size + 1), WINDOW)


# ---------------------------------------------------------------------------------------------------------------
# sro_peak_position: peak + constant in a window centred on the peak
# ---------------------------------------------------------------------------------------------------------------
from simkit.peak_estimator import sro_peak_position, sro_width, sro_window  # noqa: E402
from tests.reference import sro_peak_position_reference  # noqa: E402


def _broad_hump(q, mu, amp=0.45, w=0.09, slope=-0.2):
    """A 2 mrad-like SRO hump in I·Q: a broad, slightly asymmetric peak on a falling background."""
    skew = np.where(q > mu, 1.25, 1.0)  # longer high-Q flank, as in the simulated Type 1 profiles
    return (1.0 + amp * np.exp(-0.5 * ((q - mu) / (w * skew)) ** 2) + slope * (q - 0.3)) / q


@pytest.mark.parametrize("width", [None, 0.05, 0.1])
def test_sro_symmetric_peak_on_a_flat_background_gives_its_centre(width):
    # the fixed point of the centred window is the symmetry centre of any symmetric peak on a constant background
    # (odd part of the residual vanishes), whatever the fitted width or shape: exact oracle
    mu = np.array([0.2613, 0.297, 0.3301, 0.3455])
    lor = 2.0 / (1.0 + ((Q - mu[:, None]) / 0.07) ** 2) + 0.7  # Lorentzian data, Gaussian model
    fit = sro_peak_position(Q, lor / Q, WINDOW, half_width=0.12, width=width, n=1)
    assert fit.ok.all()
    np.testing.assert_allclose(fit.position, mu, atol=2e-5)


def test_sro_exact_model_recovers_all_parameters():
    mu, a, w, b0 = 0.3123, 3.0, 0.08, 1.5
    iq = a * np.exp(-0.5 * ((Q - mu) / w) ** 2) + b0
    free = sro_peak_position(Q, iq, WINDOW, n=0, width=None)
    fixed = sro_peak_position(Q, iq, WINDOW, n=0, width=w)
    for fit in (free, fixed):
        assert fit.ok
        assert abs(float(fit.position) - mu) < 1e-6
        assert float(fit.amplitude) == pytest.approx(a, rel=1e-4)
        assert float(fit.background) == pytest.approx(b0, rel=1e-4)
    assert float(free.width) == pytest.approx(w, rel=1e-4)


def test_sro_agrees_with_slow_scipy_reference(rng):
    mus = rng.uniform(0.26, 0.36, 6)
    prof = np.stack([_broad_hump(Q, m) for m in mus]) * 400.0
    counts = rng.poisson(prof)
    sig = np.sqrt(np.maximum(counts, 1.0))
    fit = sro_peak_position(Q, counts, WINDOW, half_width=0.12, width=0.1, sigma=sig)
    for i in range(mus.size):
        ref, ref_err = sro_peak_position_reference(Q, counts[i], WINDOW, 0.12, 0.1, sigma=sig[i])
        assert fit.ok[i] and np.isfinite(ref)
        assert abs(fit.position[i] - ref) < 2e-5
        assert fit.position_err[i] == pytest.approx(ref_err, rel=0.02)


def test_sro_kernel_without_jit_is_identical(rng):
    import simkit.peak_estimator as pp

    y = np.stack([_broad_hump(Q, m) * Q for m in rng.uniform(0.27, 0.34, 3)])
    wt = np.ones_like(y)
    args = (Q, y / y.max(), wt, WINDOW[0], WINDOW[1], np.full(3, 0.12), np.array([0.1, 0.1, 0.0]), False, 6, 200)
    out_j, ok_j = np.full((3, 7), np.nan), np.zeros(3, bool)
    out_p, ok_p = out_j.copy(), ok_j.copy()
    pp._k_sro(*args, out_j, ok_j)
    pp._k_sro.py_func(*args, out_p, ok_p)  # the kernel body as plain Python (helpers still compiled)
    np.testing.assert_array_equal(ok_j, ok_p)
    np.testing.assert_allclose(out_j, out_p, rtol=1e-12, atol=1e-14)


def _crb_position(q, lam_iq, qn, mu, w, c, h):
    """Cramér–Rao bound of μ for Poisson counts whose I·Qⁿ is A g + b₀ (w fixed) in the window |q − c| ≤ h."""
    sel = np.abs(q - c) <= h
    x = q[sel]
    g = np.exp(-0.5 * ((x - mu) / w) ** 2)
    # least-squares projection of the expected I·Qⁿ on the model gives A, b₀ at the expected data
    A, b0 = np.linalg.lstsq(np.stack([g, np.ones_like(x)], 1), lam_iq[sel], rcond=None)[0]
    J = np.stack([g, A * g * (x - mu) / w**2, np.ones_like(x)], 1) / qn[sel, None]  # d(counts)/dθ
    lam = lam_iq[sel] / qn[sel]
    F = (J.T / lam) @ J
    return float(np.sqrt(np.linalg.inv(F)[1, 1]))


def test_sro_poisson_unbiased_honest_and_near_the_cramer_rao_bound(rng):
    """A 2 mrad-like hump at ≈ 100 counts per 0.005 Å⁻¹ bin (10⁵ e/pattern): every realisation is fitted, the
    estimate is unbiased against the noise-free fit, its reported σ matches its scatter, and the scatter is the
    Poisson Cramér–Rao bound of the same model (the estimator wastes no information)."""
    lam = _broad_hump(Q, 0.305) * 30.0  # counts per bin: ≈ 100 near the peak
    truth = sro_peak_position(Q, lam, WINDOW, width=0.1, sigma=np.sqrt(lam))
    counts = rng.poisson(np.broadcast_to(lam, (1500, Q.size))).astype(float)
    fit = sro_peak_position(Q, counts, WINDOW, width=0.1, sigma=np.sqrt(np.maximum(counts, 1.0)))
    assert fit.ok.mean() > 0.995
    err = fit.position[fit.ok] - float(truth.position)
    sd = float(np.std(err))
    # weights from the observed counts (Neyman) leave a small bias, ≈ 0.1 σ here (≈ 0.02 σ on simulated profiles)
    assert abs(float(np.mean(err))) < 0.2 * sd
    assert np.median(fit.position_err[fit.ok]) == pytest.approx(sd, rel=0.15)
    crb = _crb_position(Q, lam * Q, Q, float(truth.position), 0.1, float(truth.position), 0.12)
    assert 0.93 * crb <= sd < 1.2 * crb  # 0.93: the sample standard deviation of 1500 values scatters by ≈ 2 %


def test_sro_succeeds_where_the_linear_background_fit_fails(rng):
    """Why the SRO map has its own entry point: on a hump as broad as the window the five-parameter
    ``peak_position`` fails for a large, noise-selected fraction of pixels; the centred fit for almost none."""
    lam = _broad_hump(Q, 0.25) * 30.0  # the electrolyte case: the hump near the low end of the window
    counts = rng.poisson(np.broadcast_to(lam, (600, Q.size))).astype(float)
    sig = np.sqrt(np.maximum(counts, 1.0))
    old = peak_position(Q, counts, WINDOW, sigma=sig)
    new = sro_peak_position(Q, counts, WINDOW, width=0.1, sigma=sig)  # a map's fixed width (sro_window)
    assert old.ok.mean() < 0.8
    assert new.ok.mean() > 0.99


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"half_width": 0.0}, "half_width"),
        ({"half_width": np.nan}, "half_width"),
        ({"q_range": (0.4, 0.2)}, "q_range"),
        ({"shape": "voigt"}, "shape"),
        ({"max_recentre": -1}, "max_recentre"),
        ({"width": -0.1}, "width"),
    ],
)
def test_sro_bad_arguments_raise(kwargs, match):
    args = {"q_range": WINDOW, **kwargs}
    with pytest.raises(ValueError, match=match):
        sro_peak_position(Q, _broad_hump(Q, 0.3), **args)


def test_sro_too_few_bins_and_all_nan_give_nan():
    y = np.full(Q.size, np.nan)
    fit = sro_peak_position(Q, np.stack([y, _broad_hump(Q, 0.3)]), WINDOW)
    assert not fit.ok[0] and np.isnan(fit.position[0]) and fit.ok[1]


def test_sro_window_follows_the_disc_projection(rng):
    """w = √(w₀² + (Q_α/2)²): the radial projection of a uniform disc of radius Q_α has σ = Q_α/2 (semicircle law,
    checked by sampling), Q_α = α/λ with λ(300 keV) = 0.019687 Å."""
    pts = rng.uniform(-1, 1, (400000, 2))
    pts = pts[np.hypot(*pts.T) <= 1]
    assert np.std(pts[:, 0]) == pytest.approx(0.5, rel=0.01)
    w, h = sro_window(2.0, 300e3, intrinsic_width=0.07)
    q_alpha = 2e-3 / 0.019687
    assert w == pytest.approx(np.hypot(0.07, q_alpha / 2), rel=1e-3)
    assert h == pytest.approx(1.2 * w, rel=1e-9)
    assert sro_window(0.15)[1] == pytest.approx(0.084, abs=1e-3)
    with pytest.raises(ValueError, match="semiangle"):
        sro_window(-1.0)


def test_sro_width_locks_on_a_sharp_peak_and_widens_for_a_broad_hump():
    def steep_iq(q):  # I·Q: a sharp SRO peak on a steep background
        return 3.0 * np.exp(-0.5 * ((q - 0.33) / 0.035) ** 2) + 40 * np.exp(-q / 0.08) + 1.0

    steep = steep_iq(Q)
    broad = _broad_hump(Q, 0.30, w=0.12) * Q
    w, h = sro_width(Q, np.stack([steep, broad]) / Q)
    assert w[0] == pytest.approx(0.035, rel=0.1) and h[0] == pytest.approx(0.05, abs=1e-3)
    assert w[1] > 0.09 and h[1] > 0.11
    # the automatic width keeps the window at ±0.05 Å⁻¹, so the flat-background model errs by no more than the
    # background slope's own shift of the maximum (here the curve's maximum is 0.0033 below the peak centre)
    fit = sro_peak_position(Q, steep / Q)
    fine = np.arange(0.3, 0.36, 1e-6)
    curve_max = fine[np.argmax(steep_iq(fine))]
    assert abs(float(fit.position) - curve_max) < 0.004
    assert abs(float(fit.position) - 0.33) < 0.0075
