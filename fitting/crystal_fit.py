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
3. Between the nodes the crystal component is interpolated (a polynomial of degree ≤ 3 in x by least squares
   — kinematically |F|² is exactly quadratic in an occupancy — and a cubic spline in t), and D is evaluated on
   a 5 × 5 box of (x, t) around the best node (± one grid step), where a quadratic surface is fitted to it by
   least squares; a second round re-centres the box on that surface's minimum with a half-width of ≈ 2.5 σ.
   (A spline of D through the coarse nodes alone fails at high dose: D changes by thousands between nodes and
   the spline overshoots.)
4. Best (x, t) = the minimum of the final quadratic surface (restricted to the grid range); 68 % intervals of
   each parameter from its profile over the other (ΔD ≤ 1); the joint 68 % region ΔD ≤ 2.30 (two
   parameters); the correlation of x and t from the surface's curvature (covariance = 2 H⁻¹).
5. Degeneracy is *reported*, not hidden: the x interval's width, whether it is open at an edge of the grid
   (the data do not bound x inside the simulated range), the extent of the joint region along x and t and the
   correlation. ``degenerate`` is set when the x interval is wider than ``max_vacancy_width``, open at the
   upper grid edge, or the surface has no minimum (not positive definite: a valley).
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
from scipy.interpolate import CubicSpline

from fitting.hypotheses import lrt_pvalue
from fitting.model import Component, FitResult, fit_profile
from fitting.model.optimiser import inverse_information
from fitting.profiles import measured_profile
from simkit.results import ResultMixin

__all__ = ["GridComparison", "GridFit", "compare_grids", "fit_defect_thickness"]

#: ΔD of the 68.27 % intervals: one parameter (profile) and two parameters jointly.
DELTA_1D = 1.0
DELTA_2D = 2.2957


@dataclass(frozen=True, kw_only=True, eq=False)
class GridFit(ResultMixin):
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
        Minimum of the local quadratic deviance surface.
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
        Correlation of x and t from the curvature of the local quadratic deviance surface (NaN if it has no
        minimum).
    degenerate : bool
        The data do not determine x to within ``max_vacancy_width`` (or x is open at the upper grid edge).
    delta_aic_stoichiometric : float
        AIC(x = 0, t fitted) − AIC(best); > 0 favours vacancies (NaN without x = 0 on the grid).
    lrt_statistic, lrt_p_value : float
        D(0, t̂₀) − D̂ and its boundary-corrected p-value (H0: x = 0).
    not_converged : tuple
        Grid nodes (i, j) and interpolated points (x, t) whose fit did not converge (still used; see
        ``warnings``).
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

    _units = {"vacancy": "fraction", "thickness": "Å"}

    @property
    def ok(self) -> bool:
        """The vacancy fraction is determined (not ``degenerate``) and every fit converged."""
        return not self.degenerate and not self.not_converged

    @property
    def message(self) -> str:
        """Determined or not, in words."""
        if self.degenerate:
            return "vacancy fraction not determined by these data (see warnings)"
        return "vacancy fraction and thickness determined" + (
            "" if not self.not_converged else f"; {len(self.not_converged)} fits did not converge"
        )

    @property
    def values(self) -> dict[str, float]:
        """Best vacancy fraction [fraction] and thickness [Å]."""
        return {"vacancy": self.best_vacancy, "thickness": self.best_thickness}

    @property
    def stderr(self) -> dict[str, float]:
        """Half widths of the 68 % profile-likelihood intervals, [fraction] and [Å]."""
        return {"vacancy": self.vacancy_sigma, "thickness": self.thickness_sigma}

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


def _quadratic(pts, dv, centre, scale):
    """Least-squares quadratic D ≈ c0 + c·u + ½ uᵀHu in scaled coordinates u = (p − centre)/scale."""
    u = (pts - np.asarray(centre)) / np.asarray(scale)
    a = np.column_stack([np.ones(len(u)), u[:, 0], u[:, 1], u[:, 0] ** 2, u[:, 0] * u[:, 1], u[:, 1] ** 2])
    c = np.linalg.lstsq(a, dv, rcond=None)[0]
    h = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
    definite = bool(np.all(np.linalg.eigvalsh(h) > 0))
    if definite:
        # D = −2 log L → information = ½ H, the optimiser's convention: covariance = its inverse
        _, cov_u, _ = inverse_information(0.5 * h[None], np.zeros((1, 2), bool))
        cov_u = cov_u[0]
        sig = np.sqrt(np.diag(cov_u)) * np.asarray(scale)
        corr = float(cov_u[0, 1] / np.sqrt(cov_u[0, 0] * cov_u[1, 1]))
    else:
        sig = np.array([np.inf, np.inf])
        corr = float("nan")
    return {
        "c": c,
        "centre": np.asarray(centre),
        "scale": np.asarray(scale),
        "definite": definite,
        "sigma": sig,
        "correlation": corr,
    }


def _evaluate(quad, box, n):
    xf = np.linspace(box[0][0], box[0][1], n)
    tf = np.linspace(box[1][0], box[1][1], n)
    ux = (xf - quad["centre"][0]) / quad["scale"][0]
    ut = (tf - quad["centre"][1]) / quad["scale"][1]
    c = quad["c"]
    d = (
        c[0]
        + c[1] * ux[:, None]
        + c[2] * ut[None, :]
        + c[3] * ux[:, None] ** 2
        + c[4] * ux[:, None] * ut[None, :]
        + c[5] * ut[None, :] ** 2
    )
    return xf, tf, d


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
    n_refine: int = 2,
    **fit_kwargs,
) -> GridFit:
    """Fit a measured profile over a (vacancy fraction × thickness) grid of crystal components.

    Parameters
    ----------
    measured : RadialProfiles, ScanProfiles or tuple (q, counts[, exposure])
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
        Points per axis of the fine grid on which the local quadratic deviance is evaluated.
    n_refine : int
        Rounds of local refinement (5 × 5 fits with interpolated components each).
    **fit_kwargs
        Passed to :func:`fitting.model.fit_profile` (``q_range``, ``background``, ``q_scale``, ``blur`` …).

    Returns
    -------
    GridFit
    """
    qd, y, e = measured_profile(measured)
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

    if not (isinstance(n_refine, (int, np.integer)) and n_refine >= 1):
        raise ValueError(f"n_refine={n_refine!r}: give an integer ≥ 1")
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
    ht0 = float(np.min(np.diff(tg)))
    warnings = []

    # components between the nodes: polynomial in x (|F|² is quadratic in an occupancy; the dynamical terms
    # are smooth) of degree ≤ 3 by least squares, cubic spline in t
    deg = min(3, xg.size - 1)
    vx = np.vander(xg, deg + 1, increasing=True)  # (n_x, deg+1)
    coef = np.linalg.lstsq(vx, comp.reshape(xg.size, -1), rcond=None)[0].reshape(deg + 1, tg.size, qc.size)
    spl = CubicSpline(tg, coef, axis=1) if tg.size >= 3 else None

    def component(x, t):
        a = spl(t) if spl is not None else coef[:, 0] + (coef[:, 1] - coef[:, 0]) * (t - tg[0]) / (tg[1] - tg[0])
        return np.tensordot(x ** np.arange(deg + 1), a, axes=1)

    cache: dict[tuple[float, float], float] = {}

    def deviance(x, t):
        key = (round(float(x), 10), round(float(t), 6))
        if key not in cache:
            c = Component(name=name, q=qc, intensity=component(x, t), source=f"interpolated x={x:.4f}, t={t:.2f} Å")
            f = fit_profile(qd, y, {**others, name: c}, exposure=e, **fit_kwargs)
            if not f.converged:
                bad.append((float(x), float(t)))
            cache[key] = -2.0 * f.loglike
        return cache[key]

    # local quadratic surfaces of the deviance around the best node, twice (the second on a box of ≈ ±2σ)
    i0, j0 = np.unravel_index(int(np.argmin(dev)), dev.shape)
    cx, ct = float(xg[i0]), float(tg[j0])
    hx = float(np.max(np.diff(xg)))
    ht = float(np.diff(tg)[min(j0, tg.size - 2)])
    quad = None
    for _ in range(n_refine):
        px = np.unique(np.clip(cx + hx * np.linspace(-1, 1, 5), xg[0], xg[-1]))
        pt = np.unique(np.clip(ct + ht * np.linspace(-1, 1, 5), tg[0], tg[-1]))
        pts = np.array([(a, b) for a in px for b in pt])
        dv = np.array([deviance(a, b) for a, b in pts])
        quad = _quadratic(pts, dv, (cx, ct), (hx, ht))
        box = ((px[0], px[-1]), (pt[0], pt[-1]))
        xf, tf, df = _evaluate(quad, box, n_fine)
        k = np.unravel_index(int(np.argmin(df)), df.shape)
        cx, ct = float(xf[k[0]]), float(tf[k[1]])
        sx, st = quad["sigma"]
        new_hx = min(max(2.5 * sx, 0.1 * hx), hx) if np.isfinite(sx) else hx
        new_ht = min(max(2.5 * st, 0.1 * ht), ht) if np.isfinite(st) else ht
        hx, ht = new_hx, new_ht
    # intervals from the last local surface, evaluated over the whole grid range (a box edge is not a limit)
    xf, tf, df = _evaluate(quad, ((xg[0], xg[-1]), (tg[0], tg[-1])), n_fine)
    dmin = float(df.min())
    k = np.unravel_index(int(np.argmin(df)), df.shape)
    bx, bt = float(xf[k[0]]), float(tf[k[1]])
    (x_lo, x_hi), x_open = _interval(xf, df.min(axis=1), dmin + DELTA_1D)
    (t_lo, t_hi), t_open = _interval(tf, df.min(axis=0), dmin + DELTA_1D)
    region = df <= dmin + DELTA_2D
    rx, rt = xf[region.any(axis=1)], tf[region.any(axis=0)]
    joint = ((float(rx.min()), float(rx.max())), (float(rt.min()), float(rt.max())))
    corr = quad["correlation"]
    x_width = x_hi - x_lo
    degenerate = bool(x_width > max_vacancy_width or x_open[1] or not quad["definite"])
    if degenerate:
        why = []
        if x_width > max_vacancy_width:
            why.append(f"68 % interval {x_lo:.3f}–{x_hi:.3f} wider than {max_vacancy_width}")
        if x_open[1]:
            why.append("interval open at the upper grid edge")
        if not quad["definite"]:
            why.append("no minimum of the deviance surface (a valley)")
        rho = "undefined" if not np.isfinite(corr) else f"{corr:+.2f}"
        warnings.append(
            f"vacancy fraction not determined: {'; '.join(why)}; correlation with thickness {rho} — thickness and "
            "vacancies trade off in the Bragg ratios"
        )
    if t_open[0] or t_open[1]:
        warnings.append(
            f"thickness 68 % interval {t_lo:.1f}–{t_hi:.1f} Å reaches the grid edge: the data do not bound it "
            "inside the simulated range"
        )
    if bad:
        warnings.append(f"{len(bad)} fits did not converge (at {bad[:4]}{'…' if len(bad) > 4 else ''})")
    if abs(bx - xg[0]) < 1e-12 and xg[0] > 0:
        warnings.append("best vacancy fraction at the lowest grid value: extend the grid")

    if abs(xg[0]) < 1e-12:
        # x = 0 with the thickness fitted: best node, then a parabola through it and its neighbours in t
        j = int(np.argmin(dev[0]))
        tt = np.unique(np.clip(tg[j] + 0.5 * np.array([-1, -0.5, 0, 0.5, 1]) * ht0, tg[0], tg[-1]))
        d0 = min(float(dev[0].min()), min(deviance(0.0, t) for t in tt))
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


@dataclass(frozen=True, kw_only=True, eq=False)
class GridComparison(ResultMixin):
    """Result of :func:`compare_grids`: one :class:`GridFit` per modelling assumption.

    Attributes
    ----------
    fits : dict name → GridFit
    delta_aic : dict name → float
        AIC of each assumption minus the best (same number of parameters: the deviance difference).
    best : str
    vacancy_spread : float  [fraction]
        Largest difference of the best vacancy fractions among the assumptions within ΔAIC < 2 of the best.
    ambiguous : bool
        Assumptions the data do not tell apart (ΔAIC < 2) give vacancy fractions that differ by more than their
        combined 1σ: the vacancy fraction depends on the assumption (e.g. ionic vs neutral scattering factors).
    warnings : tuple of str
    """

    fits: dict
    delta_aic: dict
    best: str
    vacancy_spread: float
    ambiguous: bool
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """The assumptions agree on the vacancy fraction (not ``ambiguous``)."""
        return not self.ambiguous

    @property
    def message(self) -> str:
        """The best assumption and whether the others agree."""
        return f"best assumption {self.best!r}; " + (
            "assumptions within ΔAIC < 2 disagree on x" if self.ambiguous else "vacancy fraction agrees"
        )

    @property
    def values(self) -> dict[str, float]:
        """Best vacancy fraction [fraction] under each assumption (``vacancy[name]``)."""
        return {f"vacancy[{n}]": f.best_vacancy for n, f in self.fits.items()}

    @property
    def stderr(self) -> dict[str, float]:
        """Half width of each assumption's 68 % vacancy interval [fraction]."""
        return {f"vacancy[{n}]": f.vacancy_sigma for n, f in self.fits.items()}

    def summary(self) -> str:
        """Same as :meth:`table`."""
        return self.table()

    def table(self) -> str:
        """One line per assumption, best first."""
        rows = [f"{'assumption':>16s}  {'ΔAIC':>8s}  {'x':>6s}  {'σx':>6s}  {'t [nm]':>7s}  {'ΔAIC(x=0)':>9s}"]
        for n in sorted(self.delta_aic, key=self.delta_aic.get):
            f = self.fits[n]
            rows.append(
                f"{n:>16s}  {self.delta_aic[n]:8.1f}  {f.best_vacancy:6.3f}  {f.vacancy_sigma:6.3f}  "
                f"{f.best_thickness / 10:7.2f}  {f.delta_aic_stoichiometric:9.1f}"
            )
        return "\n".join(rows + [f"warning: {w}" for w in self.warnings])

    def __str__(self) -> str:
        return self.table()


def compare_grids(measured, grids: Mapping, vacancy, thickness, **kwargs) -> GridComparison:
    """Fit the same profile under several modelling assumptions (e.g. neutral vs ionic scattering factors).

    Parameters
    ----------
    measured : RadialProfiles, ScanProfiles or tuple (q, counts[, exposure])
    grids : Mapping name → ndarray (n_x, n_t, n_q)
        Crystal components on the same (vacancy × thickness) grid under each assumption.
    vacancy, thickness : array-like  [fraction], [Å]
    **kwargs
        Passed to :func:`fit_defect_thickness`.

    Returns
    -------
    GridComparison
    """
    if not isinstance(grids, Mapping) or len(grids) == 0:
        raise ValueError("grids must be a non-empty Mapping name → components (n_x, n_t, n_q)")
    fits = {str(n): fit_defect_thickness(measured, g, vacancy, thickness, **kwargs) for n, g in grids.items()}
    dmin = min(f.min_deviance for f in fits.values())
    daic = {n: f.min_deviance - dmin for n, f in fits.items()}
    best = min(daic, key=daic.get)
    close = [n for n in fits if daic[n] < 2.0]
    xs = [fits[n].best_vacancy for n in close]
    spread = float(max(xs) - min(xs)) if len(xs) > 1 else 0.0
    ambiguous = False
    warnings = []
    for a in close:
        for b in close:
            if a < b:
                d = abs(fits[a].best_vacancy - fits[b].best_vacancy)
                if d > np.hypot(fits[a].vacancy_sigma, fits[b].vacancy_sigma):
                    ambiguous = True
                    warnings.append(
                        f"'{a}' and '{b}' fit equally well (ΔAIC < 2) but give x = {fits[a].best_vacancy:.3f} and "
                        f"{fits[b].best_vacancy:.3f}: the vacancy fraction depends on that assumption"
                    )
    return GridComparison(
        fits=fits, delta_aic=daic, best=best, vacancy_spread=spread, ambiguous=ambiguous, warnings=tuple(warnings)
    )
