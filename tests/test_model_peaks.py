"""The second-feature finder of simkit.models on analytic profiles: a shoulder, a maximum, a rise to the window's
edge. Oracles: the extrema of the analytic profile smoothed exactly as the definition says (a Gaussian of σ = w/2
applied analytically: Gaussians add their variances, an exponential exp(q/τ) gains the factor exp(σ²/2τ²))."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from simkit.models import SECOND_PEAK_RANGE, markdown_table, second_feature, type1_ranking

Q = np.arange(0.02, 1.3, 0.005)
W = 0.08  # feature width [Å⁻¹]; smoothing σ = W/2
S = 0.5 * W


def _gauss(a, mu, sig):
    """(value, first, second derivative) of a·exp(−(q−μ)²/2σ²) after the smoothing, as callables of q."""
    sp = math.hypot(sig, S)
    amp = a * sig / sp  # area preserved

    def f(q, d=0):
        x = (np.asarray(q) - mu) / sp
        g = amp * np.exp(-0.5 * x * x)
        return (g, -x / sp * g, (x * x - 1) / sp**2 * g)[d]

    return f


def _expo(a, q0, tau):
    """a·exp((q − q0)/τ) after the smoothing (τ < 0: falling)."""
    amp = a * math.exp(S**2 / (2 * tau**2))

    def f(q, d=0):
        return amp * np.exp((np.asarray(q) - q0) / tau) / tau**d

    return f


def _profile(*parts):
    """Raw profile on Q (smoothing σ = 0) and the smoothed analytic curve with its derivatives."""

    def raw(q):
        out = 0.0
        for kind, args in parts:
            if kind == "g":
                a, mu, sig = args
                out = out + a * np.exp(-0.5 * ((q - mu) / sig) ** 2)
            else:
                a, q0, tau = args
                out = out + a * np.exp((q - q0) / tau)
        return out

    fs = [(_gauss if k == "g" else _expo)(*args) for k, args in parts]
    return raw(Q), (lambda q, d=0: sum(f(q, d) for f in fs))


BACKGROUND = ("e", (3.0, 0.0, -0.25))  # falling self term
FIRST = ("g", (1.0, 0.32, 0.05))


def test_shoulder_before_a_rise_to_the_window_edge_is_found_not_the_edge():
    y, sm = _profile(BACKGROUND, FIRST, ("g", (0.05, 0.60, 0.05)), ("e", (0.05, 0.85, 0.05)))
    lo, hi = SECOND_PEAK_RANGE
    qq = np.linspace(lo, hi, 4001)
    d1 = sm(qq, 1)
    # premises: no maximum inside the range, the slope is largest at the upper edge (what a plain arg-max of the
    # slope would report), and there is one interior local maximum of the slope, negative: the shoulder
    assert not np.any((d1[:-1] > 0) & (d1[1:] <= 0))
    assert np.argmax(d1) == d1.size - 1
    j = np.flatnonzero((d1[1:-1] > d1[:-2]) & (d1[1:-1] > d1[2:])) + 1
    assert j.size == 1 and d1[j[0]] < 0
    oracle = brentq(lambda q: sm(q, 2), qq[j[0] - 50], qq[j[0] + 50])
    assert abs(oracle - 0.60) < 0.05  # it is the 0.60 Å⁻¹ component's shoulder
    maximum, feature = second_feature(Q, y, width=W)
    assert math.isnan(maximum)
    assert feature == pytest.approx(oracle, abs=1e-3)


def test_maximum_inside_the_window_is_reported_as_both():
    y, sm = _profile(("e", (0.5, 0.0, -0.25)), FIRST, ("g", (0.5, 0.60, 0.05)))
    oracle = brentq(lambda q: sm(q, 1), 0.5, 0.7)
    maximum, feature = second_feature(Q, y, width=W)
    assert maximum == pytest.approx(oracle, abs=1e-3) and feature == maximum


@pytest.mark.parametrize(
    "parts",
    [
        (BACKGROUND, FIRST),  # the first peak's falling tail on a convex background: the slope only rises
        (("e", (0.2, 0.9, 0.1)),),  # a monotone rise through the window: its largest value is the edge
        (BACKGROUND, FIRST, ("g", (2.0, 0.82, 0.05))),  # a maximum just outside the window, rising at its edge
    ],
    ids=["falling-convex", "rising", "maximum-beyond-edge"],
)
def test_no_feature_inside_the_window_is_nan(parts):
    y, sm = _profile(*parts)
    lo, hi = SECOND_PEAK_RANGE
    qq = np.linspace(lo, hi, 4001)
    d1, d2 = sm(qq, 1), sm(qq, 2)
    # premise: inside the range the smoothed curve has no maximum and no negative-slope inflection with d2 + → −
    assert not np.any((d1[:-1] > 0) & (d1[1:] <= 0))
    assert not np.any((d2[:-1] > 0) & (d2[1:] <= 0) & (d1[1:] < 0))
    assert all(math.isnan(v) for v in second_feature(Q, y, width=W))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="width"):
        second_feature(Q, Q, width=0.0)
    with pytest.raises(ValueError, match="shapes"):
        second_feature(Q, Q[:-1], width=W)
    with pytest.raises(ValueError, match="q_range"):
        second_feature(Q, Q, width=W, q_range=(0.8, 0.45))


def test_ranking_puts_a_candidate_without_second_feature_last_and_averages_what_exists():
    nan = float("nan")
    rows = [
        {"model": "a", "kind": "type1", "q1": 0.32, "q2": nan, "q2_shoulder": 0.58},
        {"model": "a", "kind": "type1", "q1": 0.30, "q2": nan, "q2_shoulder": nan},
        {"model": "b", "kind": "type1", "q1": 0.33, "q2": 0.70, "q2_shoulder": 0.70},
        {"model": "c", "kind": "type1", "q1": 0.33, "q2": nan, "q2_shoulder": nan},
        {"model": "t2", "kind": "type2", "q1": 0.33, "q2": 0.60, "q2_shoulder": 0.60},
    ]
    r = type1_ranking(rows)
    assert [n for n, _ in r] == ["a", "b", "c"]
    assert r[0][1] == pytest.approx(math.hypot(0.31 - 0.33, 0.58 - 0.60), abs=1e-12)
    assert r[1][1] == pytest.approx(0.10, abs=1e-12) and math.isnan(r[2][1])
    for row in rows:
        row.update(seed=0, n_atoms=1, density=1.0, study_q1=0.33, study_q2=0.6)
    assert "3. `c` — no second maximum or shoulder" in markdown_table(rows)
