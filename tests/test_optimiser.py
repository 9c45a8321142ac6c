"""Tests of fitting.model.optimiser: the one bounded optimiser of fit_profile, fit_scan (and crystal_fit/refine).

Oracles: Poisson fits of linear models whose maximum-likelihood estimates and Fisher errors are analytic.
- one component, μ_i = E_i·s·I_i: ŝ = Σy / Σ E I and σ(ŝ) = √Σy / Σ E I (observed = expected information at the
  MLE);
- two components with disjoint supports A and B: each scale is the one-component MLE on its own bins;
- a flat component plus a step on half the bins, data whose unconstrained MLE of the step is negative: the bounded
  MLE puts the step at its bound 0 (flagged) and the flat scale at the pooled mean, σ = √Σy / Σ E.
"""

from __future__ import annotations

import numpy as np
import pytest

from fitting.model import fit_profile, fit_scan
from fitting.model.optimiser import at_bound, inverse_information, minimize_bounded

Q = np.linspace(0.1, 1.0, 120)
KW = {"background": None, "q_scale": False}


def _shape(q):
    return 1.0 + np.exp(-0.5 * ((q - 0.4) / 0.05) ** 2)


def test_one_component_poisson_mle_and_fisher_error_are_analytic():
    rng = np.random.default_rng(3)
    expo = rng.uniform(50, 150, Q.size)
    inten = _shape(Q)
    y = rng.poisson(2.0 * expo * inten).astype(float)
    s_hat = y.sum() / np.sum(expo * inten)
    sig = np.sqrt(y.sum()) / np.sum(expo * inten)
    r = fit_profile(Q, y, {"c": (Q, inten)}, exposure=expo, blur=False, **KW).require_converged()
    # the decrement < 1e-6 leaves |Δs| ≲ sqrt(2e-6)·σ; 1e-6 relative is far tighter than σ/ŝ ≈ 1e-3
    assert r.values["c"] == pytest.approx(s_hat, rel=1e-6)
    assert r.stderr["c"] == pytest.approx(sig, rel=1e-4)
    assert r.ok and r.warnings == ()
    # the batched path (expected information) on 4 pixels gives the same per pixel
    ys = np.stack([y, y[::-1], y, rng.poisson(2.0 * expo * inten).astype(float)])
    s = fit_scan(Q, ys, expo, {"c": (Q, inten)}, blur=0.0, **KW)
    assert np.all(s.ok)
    ei = np.sum(expo * inten)
    np.testing.assert_allclose(s.values["c"], ys.sum(axis=1) / ei, rtol=1e-6)
    np.testing.assert_allclose(s.stderr["c"], np.sqrt(ys.sum(axis=1)) / ei, rtol=1e-4)


def test_disjoint_components_decouple():
    rng = np.random.default_rng(5)
    expo = np.full(Q.size, 80.0)
    a = np.where(Q < 0.55, 1.0, 0.0)
    b = 1.0 - a
    y = rng.poisson(expo * (3.0 * a + 0.7 * b)).astype(float)
    r = fit_profile(Q, y, {"a": (Q, a), "b": (Q, b)}, exposure=expo, blur=False, **KW).require_converged()
    for name, m in (("a", a > 0), ("b", b > 0)):
        ea = np.sum(expo[m])
        assert r.values[name] == pytest.approx(y[m].sum() / ea, rel=1e-6)
        assert r.stderr[name] == pytest.approx(np.sqrt(y[m].sum()) / ea, rel=1e-4)
    assert abs(r.covariance[0, 1]) < 1e-8 * r.stderr["a"] * r.stderr["b"]


def test_parameter_at_bound_is_flagged_and_the_rest_is_the_bounded_mle():
    expo = np.full(Q.size, 100.0)
    flat = np.ones(Q.size)
    step = np.where(Q >= 0.55, 1.0, 0.0)
    # fewer counts where the step is: the unconstrained MLE of the step's scale is negative
    y = np.where(step > 0, 180.0, 220.0)
    r = fit_profile(Q, y, {"flat": (Q, flat), "step": (Q, step)}, exposure=expo, blur=False, **KW)
    assert r.converged
    assert r.at_bound.tolist() == [False, True]
    assert r.values["step"] == 0.0
    assert r.values["flat"] == pytest.approx(y.sum() / expo.sum(), rel=1e-6)
    assert r.stderr["flat"] == pytest.approx(np.sqrt(y.sum()) / expo.sum(), rel=1e-4)
    assert any("at a bound" in w and "step" in w for w in r.warnings)
    s = fit_scan(Q, y[None], expo, {"flat": (Q, flat), "step": (Q, step)}, blur=0.0, **KW)
    assert s.at_bound[0].tolist() == [False, True]
    assert s.values["flat"][0] == pytest.approx(y.sum() / expo.sum(), rel=1e-6)


def test_minimize_bounded_on_a_quadratic_with_an_active_bound():
    """f = ½|θ − c|² with c = (2, −1) and θ₁ ≥ 0: the minimum is (2, 0); identity information → σ = 1."""
    c = np.array([2.0, -1.0])
    lo, hi = np.array([-np.inf, 0.0]), np.array([np.inf, np.inf])

    def terms(th, rows, want):
        f = 0.5 * np.sum((th - c) ** 2, axis=1)
        if not want:
            return f, None, None
        return f, th - c, np.broadcast_to(np.eye(2), (th.shape[0], 2, 2)).copy()

    opt = minimize_bounded(terms, np.array([[0.0, 3.0], [5.0, 0.0]]), lo, hi, tol=1e-12)
    assert np.all(opt.converged)
    # decrement |g|² < tol ⇒ |θ − θ̂| < sqrt(tol) = 1e-6 for unit curvature
    np.testing.assert_allclose(opt.theta, [[2.0, 0.0], [2.0, 0.0]], atol=1e-6)
    b = at_bound(opt.theta, lo, hi)
    assert b.tolist() == [[False, True], [False, True]]
    err, cov, ok = inverse_information(np.broadcast_to(np.eye(2), (2, 2, 2)).copy(), b)
    np.testing.assert_allclose(err, 1.0)
    assert np.all(ok) and np.all(np.isnan(cov[:, 0, 1]))


def test_singular_information_gives_nan_and_not_ok():
    F = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    err, _, ok = inverse_information(F, np.zeros((1, 2), bool))
    assert not ok[0] and np.all(np.isnan(err))


def test_gaussian_likelihood_is_weighted_least_squares():
    """Gaussian likelihood, μ = E·s·I with given σ: ŝ = Σ yA/σ² / Σ A²/σ² and σ(ŝ) = 1/sqrt(Σ A²/σ²), A = E·I."""
    rng = np.random.default_rng(8)
    expo = rng.uniform(5, 15, Q.size)
    inten = _shape(Q)
    a = expo * inten
    sig = rng.uniform(1.0, 3.0, Q.size)
    y = 1.5 * a + sig * rng.standard_normal(Q.size)
    r = fit_profile(Q, y, {"c": (Q, inten)}, exposure=expo, likelihood="gaussian", sigma=sig, blur=False, **KW)
    assert r.require_converged().values["c"] == pytest.approx(np.sum(y * a / sig**2) / np.sum(a**2 / sig**2), rel=1e-9)
    assert r.stderr["c"] == pytest.approx(1 / np.sqrt(np.sum(a**2 / sig**2)), rel=1e-9)
