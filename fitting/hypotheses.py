"""Which simulated structures explain a measured radial profile: model comparison with numbers.

:func:`compare` fits every candidate (a named set of simulated components) to the same measured profile with
:func:`fitting.model.fit_profile` and returns

- a table ranked by AIC (with BIC, ΔAIC, Akaike weights, log-likelihood, number of parameters, convergence);
- likelihood-ratio tests between nested candidates. Nesting is detected from component names: candidate A is
  nested in B when A's component names are a proper subset of B's and the shared components are identical
  arrays (same Q grid and intensities); all candidates share the fit settings (background, Q scale, blur), so
  B has exactly Δk extra scale parameters. Wilks' statistic D = 2(log L_B − log L_A) is referred to a χ² with
  Δk degrees of freedom, corrected for the boundary: the extra scales are tested at sₖ = 0, the edge of their
  allowed range, so D follows the χ̄² mixture Σⱼ C(Δk, j) 2^(−Δk) χ²ⱼ (50:50 χ²₀ : χ²₁ for one extra
  component; Self & Liang 1987, assuming the extra scales are not strongly correlated with each other);
- per peak window, the fraction of the fitted signal above background contributed by each component
  ("which component explains which peak");
- warnings: misfit of the best candidate (deviance/dof), non-converged fits, candidates within ΔAIC < 2 of
  the best (the data do not tell them apart),
  and strongly correlated parameter pairs (|ρ| > 0.95: degenerate, e.g. thickness vs vacancy fraction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from math import comb

import numpy as np
from scipy.signal import find_peaks
from scipy.stats import chi2

from fitting.model import FitResult, as_components, fit_profile
from fitting.profiles import measured_profile
from simkit.results import StatisticsResult

__all__ = [
    "CandidateRow",
    "Comparison",
    "LikelihoodRatioTest",
    "PeakAttribution",
    "compare",
    "explain_peaks",
    "lrt_pvalue",
]

#: |correlation| above which two fitted parameters are reported as degenerate.
DEGENERACY_CORRELATION = 0.95
#: D = 2Δlog L below this is numerically zero (both fits resolve log L to ~1e-6).
LRT_ZERO = 1e-5
#: deviance/dof of the best candidate above which the comparison warns of misfit (the Poisson deviance has
#: mean ≈ dof and sd ≈ sqrt(2 dof) for a correct model; 1.5 is > 7 sd for dof ≥ 200).
MISFIT_DEVIANCE_RATIO = 1.5
#: ΔAIC below which two candidates are reported as not distinguishable (Burnham & Anderson 2002, §2.6).
INDISTINGUISHABLE_DAIC = 2.0


@dataclass(frozen=True, kw_only=True)
class CandidateRow(StatisticsResult):
    """One line of the ranked table (see :class:`Comparison`); ``values`` holds its statistics (no 1σ)."""

    name: str
    components: tuple[str, ...]
    n_params: int
    loglike: float
    aic: float
    bic: float
    delta_aic: float
    delta_bic: float
    akaike_weight: float
    deviance: float
    dof: int
    gof_p: float
    converged: bool

    @property
    def ok(self) -> bool:
        """The candidate's fit converged."""
        return bool(self.converged)

    @property
    def message(self) -> str:
        """Convergence of the candidate's fit."""
        return "fit converged" if self.converged else "fit did not converge: not a valid row"

    @property
    def warnings(self) -> tuple[str, ...]:
        """A non-converged fit, in words."""
        return () if self.converged else (f"candidate {self.name!r} did not converge",)

    @property
    def values(self) -> dict[str, float]:
        """log L, AIC, BIC (and their differences to the best), Akaike weight, deviance, goodness-of-fit p."""
        return {
            "loglike": self.loglike,
            "aic": self.aic,
            "bic": self.bic,
            "delta_aic": self.delta_aic,
            "delta_bic": self.delta_bic,
            "akaike_weight": self.akaike_weight,
            "deviance": self.deviance,
            "gof_p": self.gof_p,
        }


@dataclass(frozen=True, kw_only=True)
class LikelihoodRatioTest(StatisticsResult):
    """Likelihood-ratio test of a nested pair.

    Attributes
    ----------
    null, alternative : str
        The simpler candidate and the one containing it.
    extra : tuple of str
        Components of ``alternative`` not in ``null`` (their scales are tested at 0).
    statistic : float
        D = 2 (log L_alternative − log L_null), clipped at 0.
    df : int
        Δk, number of extra parameters.
    p_value : float
        From the boundary-corrected χ̄² mixture (``boundary``) or a plain χ²_Δk.
    boundary : bool
    valid : bool
        False when either fit did not converge (the p-value is then NaN).
    """

    null: str
    alternative: str
    extra: tuple[str, ...]
    statistic: float
    df: int
    p_value: float
    boundary: bool
    valid: bool

    @property
    def ok(self) -> bool:
        """Same as ``valid``."""
        return bool(self.valid)

    @property
    def message(self) -> str:
        """The test in words."""
        mix = "boundary χ̄² mixture" if self.boundary else f"χ²_{self.df}"
        return f"{self.null} ⊂ {self.alternative} (+{', '.join(self.extra)}), {mix}"

    @property
    def warnings(self) -> tuple[str, ...]:
        """An invalid test, in words."""
        return () if self.valid else ("a fit did not converge or the fits used different bins: p-value is NaN",)

    @property
    def values(self) -> dict[str, float]:
        """Statistic D, degrees of freedom and p-value."""
        return {"statistic": self.statistic, "df": float(self.df), "p_value": self.p_value}


@dataclass(frozen=True, kw_only=True)
class PeakAttribution(StatisticsResult):
    """Share of each component in the fitted signal above background within one Q window.

    Attributes
    ----------
    window : (float, float)  [Å⁻¹]
    position : float  [Å⁻¹]
        Maximum of the fitted signal above background (× Q) inside the window.
    signal : float  [counts]
        Fitted counts above background in the window.
    fractions : dict[str, float]
        Component name → share of ``signal`` (sums to 1).
    dominant : str
    """

    window: tuple[float, float]
    position: float
    signal: float
    fractions: dict[str, float]
    dominant: str

    _units = {"position": "Å⁻¹", "signal": "counts"}

    @property
    def ok(self) -> bool:
        """The window holds fitted signal above background."""
        return bool(self.signal > 0)

    @property
    def message(self) -> str:
        """Which component dominates the window."""
        return f"{self.dominant} dominates {self.window[0]:.3f}–{self.window[1]:.3f} Å⁻¹"

    @property
    def warnings(self) -> tuple[str, ...]:
        """An empty window, in words."""
        return () if self.ok else ("no fitted signal above background in the window: fractions are NaN",)

    @property
    def values(self) -> dict[str, float]:
        """Position [Å⁻¹], signal [counts] and ``fraction[name]`` of every component."""
        return {"position": self.position, "signal": self.signal} | {
            f"fraction[{k}]": v for k, v in self.fractions.items()
        }


@dataclass(frozen=True, kw_only=True, eq=False)
class Comparison(StatisticsResult):
    """Result of :func:`compare`.

    Attributes
    ----------
    rows : tuple of CandidateRow
        Ranked by AIC (best first).
    fits : dict[str, FitResult]
    tests : tuple of LikelihoodRatioTest
        One per nested pair.
    peaks : dict[str, tuple of PeakAttribution]
        Per candidate.
    degeneracies : dict[str, tuple of (str, str, float)]
        Per candidate: parameter pairs with |correlation| > ``DEGENERACY_CORRELATION``.
    warnings : tuple of str
    """

    rows: tuple[CandidateRow, ...]
    fits: dict[str, FitResult]
    tests: tuple[LikelihoodRatioTest, ...]
    peaks: dict[str, tuple[PeakAttribution, ...]]
    degeneracies: dict[str, tuple[tuple[str, str, float], ...]]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def best(self) -> str:
        """Name of the candidate with the lowest AIC."""
        return self.rows[0].name

    @property
    def ok(self) -> bool:
        """The best candidate's fit converged."""
        return bool(self.rows[0].converged)

    @property
    def message(self) -> str:
        """The winner and its margin."""
        if len(self.rows) == 1:
            return f"one candidate: {self.best!r}"
        return f"best {self.best!r}, next {self.rows[1].name!r} at ΔAIC = {self.rows[1].delta_aic:.2f}"

    @property
    def values(self) -> dict[str, float]:
        """ΔAIC of every candidate to the best."""
        return {f"delta_aic[{r.name}]": r.delta_aic for r in self.rows}

    def summary(self) -> str:
        """Same as :meth:`table`."""
        return self.table()

    def row(self, name: str) -> CandidateRow:
        """The table row of candidate ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"{name!r} is not a candidate; valid: {[r.name for r in self.rows]}")

    def test(self, null: str, alternative: str) -> LikelihoodRatioTest:
        """The likelihood-ratio test of ``null`` nested in ``alternative``."""
        for t in self.tests:
            if t.null == null and t.alternative == alternative:
                return t
        pairs = [(t.null, t.alternative) for t in self.tests]
        raise KeyError(f"no nested pair ({null!r} ⊂ {alternative!r}); nested pairs: {pairs}")

    def table(self) -> str:
        """The ranked table, the tests and the warnings as text."""
        head = (
            f"{'candidate':<28s} {'k':>3s} {'logL':>12s} {'AIC':>12s} {'ΔAIC':>8s} {'w':>6s} {'BIC':>12s} "
            f"{'ΔBIC':>8s} conv"
        )
        lines = [head]
        for r in self.rows:
            lines.append(
                f"{r.name:<28s} {r.n_params:>3d} {r.loglike:>12.2f} {r.aic:>12.2f} {r.delta_aic:>8.2f} "
                f"{r.akaike_weight:>6.3f} {r.bic:>12.2f} {r.delta_bic:>8.2f} {'yes' if r.converged else 'NO'}"
            )
        for t in self.tests:
            lines.append(
                f"LRT {t.null} ⊂ {t.alternative} (+{', '.join(t.extra)}): D={t.statistic:.2f}, df={t.df}, "
                f"p={t.p_value:.3g}{' (boundary χ̄²)' if t.boundary else ''}{'' if t.valid else ' INVALID'}"
            )
        for name, pk in self.peaks.items():
            for p in pk:
                shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(p.fractions.items(), key=lambda kv: -kv[1]))
                lines.append(f"{name}: peak {p.position:.3f} Å⁻¹ [{p.window[0]:.3f}–{p.window[1]:.3f}]: {shares}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def lrt_pvalue(statistic: float, df: int, *, boundary: bool = True) -> float:
    """p-value of a likelihood-ratio statistic.

    Parameters
    ----------
    statistic : float
        D = 2 Δlog L (≥ 0; negative values from round-off are treated as 0).
    df : int
        Number of extra parameters Δk ≥ 1.
    boundary : bool
        True: the extra parameters are non-negative scales tested at 0 → χ̄² mixture
        Σⱼ C(df, j) 2^(−df) χ²ⱼ (χ²₀ = point mass at 0); False: plain χ²_df (Wilks).

    Returns
    -------
    float
    """
    df = int(df)
    if df < 1:
        raise ValueError(f"df={df!r}: needs at least one extra parameter")
    d = max(float(statistic), 0.0)
    if not boundary:
        return float(chi2.sf(d, df))
    if d == 0.0:
        return 1.0
    return float(sum(comb(df, j) * 0.5**df * chi2.sf(d, j) for j in range(1, df + 1)))


def explain_peaks(fit: FitResult, windows=None, *, prominence: float = 0.05) -> tuple[PeakAttribution, ...]:
    """Which component explains which peak of a fitted profile.

    Parameters
    ----------
    fit : FitResult
    windows : sequence of (float, float) or None  [Å⁻¹]
        Q windows; ``None`` → one per maximum of the fitted signal above background weighted by Q (the I·Q
        curve the study reads peaks from), bounded by the minima between neighbouring maxima.
    prominence : float
        Minimum prominence of an automatic peak, as a fraction of the largest value of the I·Q signal.

    Returns
    -------
    tuple of PeakAttribution
    """
    used = fit.used
    q = fit.q[used]
    contrib = np.clip(fit.contributions[:, used], 0.0, None)  # (K, n) counts; scales ≥ 0 already
    expo = fit.exposure[used]
    total = contrib.sum(axis=0)
    names = fit.component_names
    sig_q = total / expo * q  # per-pixel signal × Q
    if windows is None:
        if not np.any(sig_q > 0):
            return ()
        idx, _ = find_peaks(sig_q, prominence=prominence * float(np.max(sig_q)))
        if idx.size == 0:
            return ()
        bounds = [0]
        for a, b in zip(idx[:-1], idx[1:]):
            bounds.append(a + int(np.argmin(sig_q[a : b + 1])))
        bounds.append(q.size - 1)
        windows = [(float(q[bounds[i]]), float(q[bounds[i + 1]])) for i in range(idx.size)]
    out = []
    for lo, hi in windows:
        lo, hi = float(lo), float(hi)
        if not lo < hi:
            raise ValueError(f"window ({lo}, {hi}): give (qmin, qmax) with qmin < qmax [Å⁻¹]")
        m = (q >= lo) & (q <= hi)
        if not np.any(m):
            raise ValueError(f"window ({lo}, {hi}) Å⁻¹ contains no fitted bin (fit range {q[0]:.3f}–{q[-1]:.3f})")
        per = contrib[:, m].sum(axis=1)
        s = float(per.sum())
        frac = {n: (float(v / s) if s > 0 else float("nan")) for n, v in zip(names, per)}
        pos = float(q[m][int(np.argmax(sig_q[m]))])
        out.append(
            PeakAttribution(
                window=(lo, hi), position=pos, signal=s, fractions=frac, dominant=names[int(np.argmax(per))]
            )
        )
    return tuple(out)


def _same_component(a, b) -> bool:
    return (
        a.q.shape == b.q.shape and np.array_equal(a.q, b.q) and np.array_equal(a.intensity, b.intensity, equal_nan=True)
    )


def compare(
    measured,
    candidates: Mapping[str, object],
    *,
    windows=None,
    **fit_kwargs,
) -> Comparison:
    """Fit every candidate to the measured profile and rank them.

    Parameters
    ----------
    measured : RadialProfiles, ScanProfiles or tuple
        One measured profile: a ``RadialProfiles`` (its ``q`` [Å⁻¹], ``sum`` [counts] and ``count`` [pixels] are
        used), a ``fitting.profiles.ScanProfiles`` (summed over its pixels; ``profiles.class_sum(mask)`` for one
        class) or ``(q, counts)`` / ``(q, counts, exposure)`` (see :func:`fitting.profiles.measured_profile`).
    candidates : Mapping[str, components or callable]
        Name → components as accepted by :func:`fitting.model.as_components` (use a Mapping name → profile so
        that components are named and nesting can be detected), or a callable with no arguments returning them.
    windows : sequence of (float, float) or None  [Å⁻¹]
        Peak windows for :func:`explain_peaks` (``None`` → automatic, per candidate).
    **fit_kwargs
        Passed to :func:`fitting.model.fit_profile` for every candidate (``background``, ``q_scale``, ``blur``,
        ``q_range``, ``likelihood``, ``resample`` …).

    Returns
    -------
    Comparison
    """
    if not isinstance(candidates, Mapping):
        raise TypeError(f"candidates={type(candidates).__name__}: give a Mapping name → components")
    if len(candidates) == 0:
        raise ValueError("candidates is empty: give at least one named set of components")
    q, y, e = measured_profile(measured)
    comps: dict[str, tuple] = {}
    for name, spec in candidates.items():
        spec = spec() if callable(spec) and not hasattr(spec, "q") else spec
        try:
            comps[str(name)] = as_components(spec, q)
        except ValueError as err:
            raise ValueError(f"candidate {name!r}: {err}") from err
    fits = {name: fit_profile(q, y, c, exposure=e, **fit_kwargs) for name, c in comps.items()}

    # ranked table
    aic = {n: f.aic for n, f in fits.items()}
    best_aic = min(aic.values())
    best_bic = min(f.bic for f in fits.values())
    rel = np.array([np.exp(-0.5 * (aic[n] - best_aic)) for n in fits])
    weights = dict(zip(fits, rel / rel.sum()))
    rows = sorted(
        (
            CandidateRow(
                name=n,
                components=f.component_names,
                n_params=f.n_params,
                loglike=f.loglike,
                aic=f.aic,
                bic=f.bic,
                delta_aic=f.aic - best_aic,
                delta_bic=f.bic - best_bic,
                akaike_weight=float(weights[n]),
                deviance=f.deviance,
                dof=f.dof,
                gof_p=float(chi2.sf(f.deviance, f.dof)) if f.likelihood == "poisson" else float(chi2.sf(f.chi2, f.dof)),
                converged=f.converged,
            )
            for n, f in fits.items()
        ),
        key=lambda r: r.aic,
    )

    # nested pairs → likelihood-ratio tests
    tests = []
    for na, ca in comps.items():
        for nb, cb in comps.items():
            if na == nb:
                continue
            names_a = {c.name for c in ca}
            by_name_b = {c.name: c for c in cb}
            if not names_a < set(by_name_b):
                continue
            if not all(_same_component(c, by_name_b[c.name]) for c in ca):
                continue
            fa, fb = fits[na], fits[nb]
            extra = tuple(c.name for c in cb if c.name not in names_a)
            df = fb.n_params - fa.n_params
            d = 2.0 * (fb.loglike - fa.loglike)
            # below the optimiser's resolution (Newton decrement tol 1e-6 per fit) D is 0: the extra scales sit
            # at their bound and the two fits are the same model
            d = d if d > LRT_ZERO else 0.0
            valid = fa.converged and fb.converged and fa.n_data == fb.n_data
            tests.append(
                LikelihoodRatioTest(
                    null=na,
                    alternative=nb,
                    extra=extra,
                    statistic=d,
                    df=df,
                    p_value=lrt_pvalue(d, df, boundary=True) if valid else float("nan"),
                    boundary=True,
                    valid=valid,
                )
            )

    peaks = {n: explain_peaks(f, windows) for n, f in fits.items()}
    degeneracies = {n: _degenerate_pairs(f) for n, f in fits.items()}

    warnings = []
    for n, f in fits.items():
        if not f.converged:
            warnings.append(f"candidate {n!r} did not converge ({f.message}); its row is not a valid result")
        if f.n_data != fits[rows[0].name].n_data:
            warnings.append(
                f"candidate {n!r} used {f.n_data} bins, the best {fits[rows[0].name].n_data}: AIC not comparable"
            )
    top = rows[0]
    if top.dof > 0 and top.deviance / top.dof > MISFIT_DEVIANCE_RATIO:
        warnings.append(
            f"the best candidate {top.name!r} does not fit the data (deviance/dof = {top.deviance / top.dof:.2f}, "
            f"goodness-of-fit p = {top.gof_p:.2g}): the ranking partly reflects misfit, extra components can absorb "
            "it and likelihood-ratio p-values are too small; look at the residuals"
        )
    close = [r.name for r in rows[1:] if r.delta_aic < INDISTINGUISHABLE_DAIC]
    if close:
        warnings.append(
            f"{', '.join(close)} within ΔAIC < {INDISTINGUISHABLE_DAIC:g} of {rows[0].name!r}: "
            "these data do not tell them apart"
        )
    for n, pairs in degeneracies.items():
        for a, b, rho in pairs:
            warnings.append(f"candidate {n!r}: {a} and {b} are degenerate (correlation {rho:+.3f})")
    return Comparison(
        rows=tuple(rows),
        fits=fits,
        tests=tuple(tests),
        peaks=peaks,
        degeneracies=degeneracies,
        warnings=tuple(warnings),
    )


def _degenerate_pairs(fit: FitResult) -> tuple[tuple[str, str, float], ...]:
    """Parameter pairs with |correlation| > DEGENERACY_CORRELATION, from the inverse of the full Fisher
    information (parameters at a bound included: a bound can hide a degeneracy); a singular information matrix
    reports the pairs spanning its null space with correlation ±1."""
    H = fit.information if fit.information is not None else None
    if H is None or not np.all(np.isfinite(H)):
        return ()
    diag = np.diag(H)
    keep = np.nonzero(diag > 1e-12 * np.max(np.abs(diag)))[0]  # parameters without information are not pairs
    names = [fit.param_names[i] for i in keep]
    d = np.sqrt(diag[keep])
    Hn = H[np.ix_(keep, keep)] / np.outer(d, d)
    w, v = np.linalg.eigh(Hn)
    out = []
    if w[0] <= 1e-10 * w[-1]:
        null = v[:, 0]
        idx = np.nonzero(np.abs(null) > 0.3)[0]
        for i in idx:
            for j in idx[idx > i]:
                out.append((names[i], names[j], float(-np.sign(null[i] * null[j]))))
        return tuple(out)
    c = np.linalg.inv(Hn)
    s = np.sqrt(np.diag(c))
    for i in range(len(s)):
        for j in range(i + 1, len(s)):
            rho = float(c[i, j] / (s[i] * s[j]))
            if abs(rho) > DEGENERACY_CORRELATION:
                out.append((names[i], names[j], rho))
    return tuple(out)
