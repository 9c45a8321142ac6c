"""Tests of the one result protocol (simkit.results) across simkit and fitting, and of the one profile type.

Oracles: every result class answers ok/message/warnings/values/stderr/summary() with the documented types and its
old attributes; NamedArray indexing by name equals indexing by position; a ScanProfiles summed over a class equals
the hand-summed counts and exposures (Σ mean·count, Σ count over finite bins), and a hypothesis comparison of the
ScanProfiles equals the comparison of those arrays; refine's 1σ of a χ² objective with known curvature is exact
(central differences of a quadratic have no truncation error).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fitting import crystal_fit, hypotheses, peaks
from fitting.model import fit_profile, fit_scan
from fitting.profiles import ScanProfiles, measured_profile
from fitting.refine import Parameter, refine
from simkit.peak_estimator import peak_position
from simkit.radial import RadialProfiles
from simkit.results import NamedArray, Result

Q = np.linspace(0.1, 1.0, 181)
EXPO = 2 * np.pi * Q / 0.005


def _peak(q, c, w):
    return np.exp(-0.5 * ((q - c) / w) ** 2)


SRO = _peak(Q, 0.33, 0.04) + 0.4 * _peak(Q, 0.6, 0.06)
RING = _peak(Q, 0.5, 0.008)


def _counts(seed=0, lif=0.3):
    mu = EXPO * (20 * SRO + lif * 20 * RING + 3.0 * (Q / 0.4) ** -2)
    return np.random.default_rng(seed).poisson(mu).astype(float)


def _check(r):
    assert isinstance(r, Result)
    ok = np.asarray(r.ok)
    assert ok.dtype == bool
    assert isinstance(r.message, str) and r.message
    assert isinstance(r.warnings, tuple) and all(isinstance(w, str) for w in r.warnings)
    assert set(r.values.keys()) == set(r.stderr.keys())  # keys(): a NamedArray iterates its elements
    text = r.summary()
    assert isinstance(text, str) and len(text.splitlines()) >= 2


def test_named_array_is_an_ndarray_and_a_mapping():
    a = NamedArray(np.arange(6.0).reshape(2, 3), ["a", "b", "c"])
    np.testing.assert_array_equal(a["b"], [1.0, 4.0])
    assert a[1, 2] == 5.0 and type(a[0]) is np.ndarray and type(a + 1) is np.ndarray
    assert "c" in a and "d" not in a and list(a.keys()) == ["a", "b", "c"]
    assert dict(a)["a"].tolist() == [0.0, 3.0]
    b = pickle.loads(pickle.dumps(a))
    assert b.names == a.names and np.array_equal(b, a)
    with pytest.raises(KeyError, match="valid"):
        a["z"]
    with pytest.raises(ValueError, match="names"):
        NamedArray(np.zeros(3), ["a"])


def test_every_result_class_follows_the_protocol():
    y = _counts()
    comps = {"sro": (Q, SRO), "lif": (Q, RING)}
    kw = {"q_range": (0.15, 0.95), "blur": False}
    fit = fit_profile(Q, y, comps, exposure=EXPO, **kw)
    _check(fit)
    assert fit.ok == fit.converged and fit.stderr["sro"] == fit.stderr[0] == fit.uncertainties["sro"]
    scan = fit_scan(Q, np.stack([y, _counts(1)]), EXPO, comps, q_range=(0.15, 0.95))
    _check(scan)
    np.testing.assert_array_equal(scan.values["q_scale"], scan.map("q_scale"))

    cmp_ = hypotheses.compare((Q, y, EXPO), {"sro": {"sro": (Q, SRO)}, "sro+LiF": comps}, **kw)
    for r in (cmp_, *cmp_.rows, *cmp_.tests, *cmp_.peaks["sro+LiF"]):
        _check(r)

    pk = peak_position(Q, y / EXPO, (0.25, 0.42))
    _check(pk)
    assert pk.stderr["position"] == pk.position_err
    # a grid of LiF-like components with a known minimum (x, t) = (0.1, 30 Å): ring weight 1 − x, width ∝ t
    xs, ts = np.array([0.0, 0.1, 0.2, 0.3]), np.array([20.0, 30.0, 40.0])
    grid = np.array([[(1 - x) * _peak(Q, 0.5, 0.006 + 0.00006 * t) for t in ts] for x in xs])
    g = crystal_fit.fit_defect_thickness(
        (Q, _counts(2, lif=0.9), EXPO), grid, xs, ts, others={"sro": (Q, SRO)}, n_refine=1, **kw
    )
    _check(g)
    assert g.stderr["vacancy"] == g.vacancy_sigma
    gc = crystal_fit.compare_grids((Q, _counts(2, lif=0.9)), {"a": grid}, xs, ts, n_refine=1, **kw)
    _check(gc)

    rng = np.random.default_rng(0)
    mix = peaks.fit_histogram(np.concatenate([rng.normal(0.3, 0.01, 400), rng.normal(0.34, 0.01, 400)]))
    _check(mix)
    lay = peaks.erf_layer_fit(np.r_[np.zeros(8), np.ones(10), np.zeros(8)] + 0.01 * rng.standard_normal(26), 4.0)
    _check(lay)
    assert lay.stderr["thickness"] == lay.thickness_err


def _scan_profiles():
    rng = np.random.default_rng(4)
    cnt = np.broadcast_to(EXPO, (2, 3, Q.size)).copy()
    inten = rng.poisson(cnt * (20 * SRO + 5)) / cnt
    inten[..., :5] = np.nan  # the direct beam
    return ScanProfiles(
        q=Q,
        intensity=inten,
        iq=inten * Q,
        sem=np.sqrt(inten / cnt),
        background=None,
        count=cnt,
        total=np.nansum(inten * cnt, axis=-1),
        n=1.0,
        bin=1,
        exclude_direct=0.12,
        statistic="mean",
    )


def test_scan_profiles_convert_to_radial_profiles_and_sum_over_a_class():
    sp = _scan_profiles()
    rp = sp.to_radial_profiles()
    assert isinstance(rp, RadialProfiles) and rp.mean.shape == (2, 3, Q.size) and rp.edges.size == Q.size + 1
    np.testing.assert_allclose(rp.edges[1:-1], 0.5 * (Q[1:] + Q[:-1]))
    sel = np.array([[True, False, True], [False, False, True]])
    cs = sp.class_sum(sel)
    fin = np.isfinite(sp.intensity[sel])
    np.testing.assert_allclose(cs.sum, np.nansum(sp.intensity[sel] * sp.count[sel], axis=0))
    np.testing.assert_allclose(cs.count, np.sum(np.where(fin, sp.count[sel], 0), axis=0))
    assert np.all(np.isnan(cs.mean[:5])) and np.all(cs.count[:5] == 0)
    q, y, e = measured_profile(sp)  # all pixels
    np.testing.assert_allclose(y, np.nansum(sp.intensity * sp.count, axis=(0, 1)))
    with pytest.raises(ValueError, match="select"):
        sp.class_sum(np.zeros((2, 3), bool))


def test_hypotheses_take_scan_profiles_like_arrays():
    sp = _scan_profiles()
    cands = {"sro": {"sro": (Q, SRO)}, "flat": {"flat": (Q, np.ones_like(Q))}}
    kw = {"q_range": (0.15, 0.95), "blur": False, "q_scale": False}
    a = hypotheses.compare(sp, cands, **kw)
    q, y, e = measured_profile(sp)
    b = hypotheses.compare((q, y, e), cands, **kw)
    assert a.best == b.best == "sro"
    assert a.row("sro").loglike == b.row("sro").loglike


def test_refine_uncertainty_of_a_quadratic_chi2_is_exact():
    """χ² = ((x − 3)/0.5)² + ((y + 1)/0.2)²: information = ½ H = diag(1/0.5², 1/0.2²) → σ = (0.5, 0.2)."""
    params = [
        Parameter(name="x", start=2.0, lower=0.0, upper=6.0, unit="1"),
        Parameter(name="y", start=0.0, lower=-3.0, upper=1.0, unit="Å"),
    ]

    def obj(p):
        return ((p["x"] - 3.0) / 0.5) ** 2 + ((p["y"] + 1.0) / 0.2) ** 2

    r = refine(params, builder=lambda p, rng: p, objective=obj, progress=False, uncertainty="chi2", max_evaluations=400)
    _check(r)
    assert r.ok and not np.any(r.at_bound)
    assert r.stderr["x"] == pytest.approx(0.5, rel=1e-6) and r.stderr["y"] == pytest.approx(0.2, rel=1e-6)
    r0 = refine(params, builder=lambda p, rng: p, objective=obj, progress=False, max_evaluations=50)
    assert np.isnan(r0.stderr["x"]) and any("uncertainties" in w for w in r0.warnings)
