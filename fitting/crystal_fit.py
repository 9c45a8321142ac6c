"""Fit a crystal's defect fraction and thickness together — and say when the data cannot separate them.

Dynamical scattering makes Bragg-intensity ratios depend on the crystal thickness as well as on its
composition (LiF I111/I200 drops by half with 20 % F vacancies and rises with thickness: ×1.56 at 4.6 nm on the
[011] zone axis, ≈ ×1.1 for a random-orientation average at 10 nm; :mod:`simkit.bloch`). A vacancy fraction
fitted with a fixed (or kinematic) thickness can therefore be wrong with a small error bar. Here the
thickness is a fitted parameter:

1. ``components`` holds simulated profiles on a 2-D grid (vacancy fraction x_i × thickness t_j), e.g. from
   :func:`simkit.bloch.powder_profiles` with ``occupancies=[{"F": 1 − x} …]`` (one eigen-decomposition gives all
   thicknesses).
2. At every grid node the measured profile is fitted with :func:`fitting.model.fit_profile`: that crystal
   component plus the other components (amorphous SRO, matrix) and the background, with the common Q scale and
   residual blur — every nuisance parameter is profiled out. This gives the profile deviance
   D(x, t) = −2 log L_max(x, t).
3. D is interpolated between the nodes by a bicubic spline (``scipy.interpolate.RectBivariateSpline``; the
   grid must be fine enough that D is smooth on it — x enters |F|² quadratically, t through Pendellösung
   oscillations of period ≈ ξ_g, tens of nm for LiF) and evaluated on a fine grid.
4. Best (x, t) = the minimum; 68 % intervals of each parameter from the profile of D over the other
   (ΔD ≤ 1); the joint 68 % region ΔD ≤ 2.30 (two parameters); the correlation of x and t from the moments
   of exp(−ΔD/2) over the grid (flat prior on the grid; defined also for curved or open valleys).
5. Degeneracy is *reported*, not hidden: the x interval's width, whether it is open at an edge of the grid
   (the data do not bound x inside the simulated range), the extent of the joint region along x and t and the
   correlation. ``degenerate`` is set when the x interval is wider than ``max_vacancy_width`` or open at the
   upper grid edge.
6. The stoichiometric hypothesis x = 0 (thickness still fitted) against the best x: ΔAIC = D(0, t̂₀) − D̂ − 2
   (one extra parameter) and the likelihood-ratio p-value with the boundary mixture ½χ²₀ + ½χ²₁ (x ≥ 0 is
   tested at its bound; :func:`fitting.hypotheses.lrt_pvalue`). The grid must contain x = 0 for this.

Interval coverage relies on Wilks' theorem (Gaussian deviance near the minimum); with open or banana-shaped
valleys the intervals are approximate, which is why the region and the flags are returned too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import RectBivariateSpline

from fitting.hypotheses import _measured, lrt_pvalue
from fitting.model import Component, FitResult, fit_profile

__all__ = ["GridFit", "fit_defect_thickness"]

#: ΔD of the 68.27 % intervals: one parameter (profile) and two parameters jointly.
DELTA_1D = 1.0
DELTA_2D = 2.2957


@dataclass(frozen=True, kw_only=True, eq=False)
class GridFit:
    """Result of :func:`fit_defect_thickness`.

    Attributes
    ----------
    vacancy : ndarray, shape (n_x,)  [fraction]
        Grid of the defect (vacancy) fraction.
    thickness : ndarray, shape (n_t,)  [Å]
        Grid of thicknesses.
    deviance : ndarray, shape (n_x, n_t)
        −2 log L of the best fit at each node (nuisance parameters profiled out).
    fits : tuple of tuple of FitResult
        ``fits[i][j]`` is the fit at (vacancy[i], thickness[j]).
    best_vacancy, best_thickness : float  [fraction], [Å]
        Minimum of the interpolated deviance.
    min_deviance : float
    vacancy_interval, thickness_interval : (float, float)  [fraction], [Å]
        68 % profile-likelihood intervals (ΔD ≤ 1); an end at the grid edge is flagged in ``open_ends``.
    vacancy_sigma, thickness_sigma : float
        Half the interval width [fraction], [Å].
    open_ends : dict
        ``{"vacancy": (lower_open, upper_open), "thickness": (...)}``: the interval reaches that grid edge.
    joint_region : ((float, float), (float, float))
        Bounding box ((x_lo, x_hi), (t_lo, t_hi)) of the joint 68 % region ΔD ≤ 2.30.
    correlation : float
        Correlation of x and t from the moments of exp(−ΔD/2) on the grid.
    degenerate : bool
        The data do not determine x to within ``max_vacancy_width`` (or x is open at the upper grid edge).
    delta_aic_stoichiometric : float
        AIC(x = 0, t fitted) − AIC(best); > 0 favours vacancies (NaN without x = 0 on the grid).
    lrt_statistic, lrt_p_value : float
        D(0, t̂₀) − D̂ and its boundary-corrected p-value (H0: x = 0).
    not_converged : tuple of (int, int)
        Grid nodes whose fit did not converge (their deviance is still used; see ``warnings``).
    warnings : tuple of str
    settings : dict
    """

    vacancy: np.ndarray
    thickness: np.ndarray
    deviance: np.ndarray
    fits: tuple
    best_vacancy: float
    best_thickness: float
    min_deviance: float
    vacancy_interval: tuple[float, float]
    thickness_interval: tuple[float, float]
    vacancy_sigma: float
    thickness_sigma: float
    open_ends: dict
    joint_region: tuple
    correlation: float
    degenerate: bool
    delta_aic_stoichiometric: float
    lrt_statistic: float
    lrt_p_value: float
    not_converged: tuple
    warnings: tuple[str, ...]
    settings: dict = field(default_factory=dict)

    @property
    def best_fit(self) -> FitResult:
        """The grid fit nearest to the interpolated optimum."""
        i = int(np.argmin(np.abs(self.vacancy - self.best_vacancy)))
        j = int(np.argmin(np.abs(self.thickness - self.best_thickness)))
        return self.fits[i][j]

    def summary(self) -> str:
        """A few lines for a log or a notebook."""
        (xl, xh), (tl, th) = self.joint_region
        lines = [
            f"vacancy fraction x = {self.best_vacancy:.3f}  (68 %: {self.vacancy_interval[0]:.3f} – "
            f"{self.vacancy_interval[1]:.3f}, σ ≈ {self.vacancy_sigma:.3f})",
            f"thickness t = {self.best_thickness / 10:.2f} nm  (68 %: {self.thickness_interval[0] / 10:.2f} – "
            f"{self.thickness_interval[1] / 10:.2f} nm)",
            f"joint 68 % region: x {xl:.3f} – {xh:.3f}, t {tl / 10:.2f} – {th / 10:.2f} nm; "
            f"correlation(x, t) = {self.correlation:+.2f}; degenerate = {self.degenerate}",
            f"stoichiometric (x = 0): ΔAIC = {self.delta_aic_stoichiometric:.1f}, LRT D = {self.lrt_statistic:.1f}, "
            f"p = {self.lrt_p_value:.3g}",
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _grid(name, values, lo, unit):
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)) or not np.all(np.diff(v) > 0) or v[0] < lo:
        raise ValueError(f"{name}={values!r}: give ≥ 2 strictly increasing finite values ≥ {lo} [{unit}]")
    return v


def _interval(grid, prof, level):
    """Bounds of {prof ≤ level} around its minimum on a fine grid, with open-edge flags."""
    k = int(np.argmin(prof))
    inside = prof <= level
    lo = k
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = k
    while hi < grid.size - 1 and inside[hi + 1]:
        hi += 1

    def edge(a, b):  # linear interpolation of the crossing between fine nodes a (inside) and b (outside)
        fa, fb = prof[a] - level, prof[b] - level
        return grid[a] + (grid[b] - grid[a]) * fa / (fa - fb) if fb != fa else grid[a]

    x_lo = grid[0] if lo == 0 else edge(lo, lo - 1)
    x_hi = grid[-1] if hi == grid.size - 1 else edge(hi, hi + 1)
    return (float(x_lo), float(x_hi)), (lo == 0, hi == grid.size - 1)


def fit_defect_thickness(
    measured,
    components,
    vacancy,
    thickness,
    *,
    others: Mapping | None = None,
    name: str = "crystal",
    q: np.ndarray | None = None,
    max_vacancy_width: float = 0.1,
    n_fine: int = 241,
    **fit_kwargs,
) -> GridFit:
    """Fit a measured profile over a (vacancy fraction × thickness) grid of crystal components.

    Parameters
    ----------
    measured : RadialProfiles or tuple (q, counts[, exposure])
        The measured profile (``sum`` and ``count`` of a ``RadialProfiles``; counts [counts], exposure [pixels]).
    components : ndarray, shape (n_x, n_t, n_q)  [intensity per pixel]
        Simulated crystal profiles at every grid node, on the Q grid ``q`` (default: the measured Q grid) —
        e.g. ``simkit.bloch.powder_profiles(...)[0].mean`` integrated on the data's detector geometry.
    vacancy : array-like, shape (n_x,)  [fraction]
        Vacancy fractions of the grid (strictly increasing, ≥ 0; include 0 for the stoichiometric test).
    thickness : array-like, shape (n_t,)  [Å]
        Thicknesses of the grid (strictly increasing, > 0).
    others : Mapping name → spec or None
        Further components fitted at every node (e.g. ``{"sro": ...}``; see :func:`fitting.model.as_components`).
    name : str
        Name of the crystal component's scale.
    q : ndarray or None  [Å⁻¹]
        Q grid of ``components`` (None → the measured grid).
    max_vacancy_width : float  [fraction]
        Full width of the 68 % vacancy interval above which the result is flagged ``degenerate``.
    n_fine : int
        Points per axis of the fine grid on which the interpolated deviance is evaluated.
    **fit_kwargs
        Passed to :func:`fitting.model.fit_profile` (``q_range``, ``background``, ``q_scale``, ``blur`` …).

    Returns
    -------
    GridFit
    """
    qd, y, e = _measured(measured)
    xg = _grid("vacancy", vacancy, 0.0, "fraction")
    tg = _grid("thickness", thickness, 1e-9, "Å")
    comp = np.asarray(components, dtype=float)
    qc = qd if q is None else np.asarray(q, dtype=float)
    if comp.shape != (xg.size, tg.size, qc.size):
        raise ValueError(
            f"components has shape {comp.shape}; expected (n_vacancy, n_thickness, n_q) = "
            f"({xg.size}, {tg.size}, {qc.size})"
        )
    if not (isinstance(max_vacancy_width, (int, float)) and max_vacancy_width > 0):
        raise ValueError(f"max_vacancy_width={max_vacancy_width!r}: give a positive fraction")
    if not (isinstance(n_fine, (int, np.integer)) and n_fine >= 11):
        raise ValueError(f"n_fine={n_fine!r}: give an integer ≥ 11")
    others = {} if others is None else dict(others)
    if name in others:
        raise ValueError(f"name={name!r} is also a key of others; choose a distinct component name")

    dev = np.empty((xg.size, tg.size))
    fits = []
    bad = []
    for i in range(xg.size):
        row = []
        for j in range(tg.size):
            c = Component(name=name, q=qc, intensity=comp[i, j], source=f"x={xg[i]:.3f}, t={tg[j]:.1f} Å")
            f = fit_profile(qd, y, {**others, name: c}, exposure=e, **fit_kwargs)
            dev[i, j] = -2.0 * f.loglike
            if not f.converged:
                bad.append((i, j))
            row.append(f)
        fits.append(tuple(row))
    warnings = []
    if bad:
        warnings.append(f"{len(bad)} grid fits did not converge (nodes {bad[:5]}{'…' if len(bad) > 5 else ''})")

    kx, kt = min(3, xg.size - 1), min(3, tg.size - 1)
    spline = RectBivariateSpline(xg, tg, dev, kx=kx, ky=kt, s=0)
    xf = np.linspace(xg[0], xg[-1], n_fine)
    tf = np.linspace(tg[0], tg[-1], n_fine)
    df = spline(xf, tf)
    # guard against spline undershoot between nodes: never below the smallest node value minus a small margin
    dmin_node = float(dev.min())
    df = np.maximum(df, dmin_node - 5.0)
    k = np.unravel_index(int(np.argmin(df)), df.shape)
    dmin = float(df[k])
    bx, bt = float(xf[k[0]]), float(tf[k[1]])
    (x_lo, x_hi), x_open = _interval(xf, df.min(axis=1), dmin + DELTA_1D)
    (t_lo, t_hi), t_open = _interval(tf, df.min(axis=0), dmin + DELTA_1D)
    region = df <= dmin + DELTA_2D
    rx, rt = xf[region.any(axis=1)], tf[region.any(axis=0)]
    joint = ((float(rx.min()), float(rx.max())), (float(rt.min()), float(rt.max())))
    w = np.exp(-0.5 * (df - dmin))
    w /= w.sum()
    mx = float((w.sum(axis=1) * xf).sum())
    mt = float((w.sum(axis=0) * tf).sum())
    cxx = float((w.sum(axis=1) * (xf - mx) ** 2).sum())
    ctt = float((w.sum(axis=0) * (tf - mt) ** 2).sum())
    cxt = float((w * np.outer(xf - mx, tf - mt)).sum())
    corr = cxt / np.sqrt(cxx * ctt) if cxx > 0 and ctt > 0 else float("nan")

    x_width = x_hi - x_lo
    degenerate = bool(x_width > max_vacancy_width or x_open[1])
    if degenerate:
        warnings.append(
            f"vacancy fraction not determined: 68 % interval {x_lo:.3f}–{x_hi:.3f} (width {x_width:.3f} > "
            f"{max_vacancy_width}{', open at the grid edge' if x_open[1] else ''}); correlation with thickness "
            f"{corr:+.2f} — thickness and vacancies trade off in the Bragg ratios"
        )
    if t_open[0] or t_open[1]:
        warnings.append(
            f"thickness 68 % interval {t_lo:.1f}–{t_hi:.1f} Å reaches the grid edge: the data do not bound it "
            "inside the simulated range"
        )
    if abs(bx - xg[0]) < 1e-12 and xg[0] > 0:
        warnings.append("best vacancy fraction at the lowest grid value: extend the grid")

    if abs(xg[0]) < 1e-12:
        d0 = float(df[0].min())
        stat = max(d0 - dmin, 0.0)
        daic = stat - 2.0
        p = lrt_pvalue(stat, 1)
    else:
        stat = daic = p = float("nan")
        warnings.append("vacancy grid does not contain 0: no test against the stoichiometric crystal")
    return GridFit(
        vacancy=xg,
        thickness=tg,
        deviance=dev,
        fits=tuple(fits),
        best_vacancy=bx,
        best_thickness=bt,
        min_deviance=dmin,
        vacancy_interval=(x_lo, x_hi),
        thickness_interval=(t_lo, t_hi),
        vacancy_sigma=0.5 * x_width,
        thickness_sigma=0.5 * (t_hi - t_lo),
        open_ends={"vacancy": x_open, "thickness": t_open},
        joint_region=joint,
        correlation=float(corr),
        degenerate=degenerate,
        delta_aic_stoichiometric=float(daic),
        lrt_statistic=float(stat),
        lrt_p_value=float(p),
        not_converged=tuple(bad),
        warnings=tuple(warnings),
        settings={"name": name, "max_vacancy_width": max_vacancy_width, "n_fine": n_fine, **fit_kwargs},
    )
