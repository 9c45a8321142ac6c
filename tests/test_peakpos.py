"""simkit.peakpos: the one peak-position estimator (maximum of a local peak + linear background fit to I·Qⁿ)."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.peakpos import peak_position
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
