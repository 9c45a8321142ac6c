"""Result types of the profile fits: :class:`FitResult` (one profile) and :class:`ScanFit` (a scan's maps).

Both follow the result protocol of :mod:`simkit.results` (``ok``, ``message``, ``warnings``, ``values``,
``stderr``, ``summary()``); their older names (``converged``, ``x``, ``uncertainties``, ``map()`` …) stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simkit.results import NamedArray, ResultMixin, format_summary

__all__ = ["FitNotConvergedError", "FitResult", "ScanFit", "parameter_units"]


class FitNotConvergedError(RuntimeError):
    """Raised by :meth:`FitResult.require_converged` for a fit that did not converge."""


def parameter_units(name: str, component_names=()) -> str:
    """Unit of a fit parameter by name (component scales are dimensionless multipliers of their component)."""
    if name in component_names or name == "q_scale" or name == "bg_exponent":
        return "1"
    return {"blur_var": "Å⁻²", "bg_decay": "Å"}.get(name, "counts/pixel")


@dataclass(frozen=True, kw_only=True, eq=False)
class FitResult(ResultMixin):
    """Result of :func:`fitting.model.fit_profile`.

    Attributes
    ----------
    param_names : tuple of str
        Component scales (named like the components), then ``q_scale`` (α, dimensionless), ``blur_var``
        (σ_b² [Å⁻²]) when fitted, then background parameters (``bg_amplitude`` [counts per pixel],
        ``bg_exponent`` [1] / ``bg_decay`` [Å] / ``bg_c0..c2`` [counts per pixel]).
    x : ndarray  [units as above]
        Best-fit values (``values`` is the same by name).
    stderr : NamedArray
        An ndarray that is also a mapping name → 1σ. Uncertainties from the observed information (inverse
        Hessian of −log L over the free parameters; for a parameter at a bound: 1/sqrt of its own curvature, see
        ``at_bound``).
    covariance : ndarray, shape (P, P)
    at_bound : ndarray of bool
        Parameters that ended at a bound (their interval is not a symmetric Gaussian one).
    loglike : float
        Full log-likelihood (Poisson incl. −log y!; Gaussian incl. normalisation).
    deviance : float
        2·(log L_saturated − log L).
    chi2 : float
        Pearson χ² = Σ (y − μ)²/μ (Poisson) or Σ ((y − μ)/σ)² (Gaussian).
    dof, n_data, n_params : int
    aic, bic : float
        2k − 2 log L and k ln n − 2 log L with k = ``n_params`` (all fitted parameters).
    q : ndarray  [Å⁻¹]
        The data grid.
    counts, exposure : ndarray  [counts], [pixels]
    expected : ndarray  [counts]
        μ on the data grid (NaN on bins not used).
    residuals : ndarray
        Pearson residuals (y − μ)/sqrt(μ) (Poisson) or (y − μ)/σ (Gaussian); NaN on bins not used.
    contributions : ndarray, shape (K, n_q)  [counts]
        Expected counts of each component (after scale, α and blur); NaN on bins not used.
    background_counts : ndarray  [counts]
    used : ndarray of bool
        Bins that entered the likelihood.
    nan_bins : ndarray of int
        Indices of bins ignored because counts, exposure or sigma were NaN (or exposure was 0).
    excluded_bins : ndarray of int
        Bins within ``q_range`` dropped because a component does not cover α·Q there (or Q ≤ 0 for a power law).
    converged : bool
    message : str
    description : str
        The forward model in words, with settings.
    likelihood : str
    component_names : tuple of str
    information : ndarray, shape (P, P)
        Expected (Fisher) information JᵀWJ over all parameters at the optimum, including those at a bound
        (positive semi-definite; its inverse shows degeneracies that a bound hides).
    settings : dict
        The fit settings (background, Q-scale and blur options, ``q0``/``qw`` of the background).
    """

    param_names: tuple[str, ...]
    x: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    at_bound: np.ndarray
    loglike: float
    deviance: float
    chi2: float
    dof: int
    n_data: int
    n_params: int
    aic: float
    bic: float
    q: np.ndarray
    counts: np.ndarray
    exposure: np.ndarray
    expected: np.ndarray
    residuals: np.ndarray
    contributions: np.ndarray
    background_counts: np.ndarray
    used: np.ndarray
    nan_bins: np.ndarray
    excluded_bins: np.ndarray
    converged: bool
    message: str
    description: str
    likelihood: str
    component_names: tuple[str, ...]
    information: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stderr", NamedArray(self.stderr, self.param_names))

    @property
    def ok(self) -> bool:
        """Same as ``converged``."""
        return bool(self.converged)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Parameters at a bound and bins left out, in words."""
        out = []
        if not self.converged:
            out.append(f"did not converge: {self.message}")
        b = [n for n, f in zip(self.param_names, self.at_bound) if f]
        if b:
            out.append(f"at a bound (1σ is not a Gaussian interval): {', '.join(b)}")
        if self.excluded_bins.size:
            out.append(f"{self.excluded_bins.size} bins in q_range outside the components' Q range were left out")
        return tuple(out)

    @property
    def values(self) -> dict[str, float]:
        """Best-fit values by parameter name."""
        return {n: float(v) for n, v in zip(self.param_names, self.x)}

    @property
    def uncertainties(self) -> dict[str, float]:
        """1σ uncertainties by parameter name."""
        return {n: float(v) for n, v in zip(self.param_names, self.stderr)}

    @property
    def scales(self) -> dict[str, float]:
        """Component scales sₖ by component name."""
        return {n: float(self.x[i]) for i, n in enumerate(self.component_names)}

    def blur_sigma(self) -> tuple[float, float]:
        """Residual blur σ_b [Å⁻¹] and its 1σ uncertainty (delta method; NaN when σ_b = 0 or not fitted)."""
        if "blur_var" not in self.param_names:
            return float(self.settings.get("blur", 0.0)), float("nan")
        i = self.param_names.index("blur_var")
        v, e = max(float(self.x[i]), 0.0), float(self.stderr[i])
        s = np.sqrt(v)
        return float(s), float(e / (2 * s)) if s > 0 else float("nan")

    def require_converged(self) -> FitResult:
        """Return self, or raise :class:`FitNotConvergedError` if the fit did not converge."""
        if not self.converged:
            raise FitNotConvergedError(f"fit did not converge: {self.message} ({self.description})")
        return self

    def summary(self) -> str:
        """A human-readable table of the parameters (with units) and statistics."""
        lines = [self.description, f"converged={self.converged} ({self.message})"]
        for n, v, e, b in zip(self.param_names, self.x, self.stderr, self.at_bound):
            unit = parameter_units(n, self.component_names)
            lines.append(f"  {n:>16s} = {v: .6g} ± {e:.3g} [{unit}]{'  (at bound)' if b else ''}")
        lines.append(
            f"  logL={self.loglike:.3f} deviance={self.deviance:.2f} chi2={self.chi2:.2f} dof={self.dof} "
            f"AIC={self.aic:.2f} BIC={self.bic:.2f} NaN bins={self.nan_bins.size}"
        )
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True, eq=False)
class ScanFit(ResultMixin):
    """Result of :func:`fit_scan`: parameter maps with uncertainty maps.

    Attributes
    ----------
    param_names : tuple of str
        As in :class:`FitResult` (no ``blur_var``: the blur is fixed in batch fits).
    values, stderr : NamedArray, shape scan_shape + (P,)
        ndarrays that are also mappings name → map (``values["q_scale"]`` is the α map). Best-fit values and
        1σ uncertainties from the per-pixel expected Fisher information (free parameters; a parameter at a bound
        gets 1/sqrt of its own information and ``at_bound`` True).
    at_bound : ndarray of bool, shape scan_shape + (P,)
    converged : ndarray of bool, shape scan_shape
        Newton decrement (achievable change of log L) below ``tol`` at the end.
    loglike, deviance : ndarray, shape scan_shape
        Poisson log-likelihood and deviance per pixel.
    n_data : ndarray of int, shape scan_shape
        Bins used per pixel.
    n_iter : int
        Levenberg–Marquardt iterations run.
    q : ndarray  [Å⁻¹]
    used : ndarray of bool
        Bins (common to all pixels) inside the fit window and the components' range.
    description : str
    settings : dict
    """

    param_names: tuple[str, ...]
    values: np.ndarray
    stderr: np.ndarray
    at_bound: np.ndarray
    converged: np.ndarray
    loglike: np.ndarray
    deviance: np.ndarray
    n_data: np.ndarray
    n_iter: int
    q: np.ndarray
    used: np.ndarray
    description: str
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", NamedArray(self.values, self.param_names))
        object.__setattr__(self, "stderr", NamedArray(self.stderr, self.param_names))

    @property
    def ok(self) -> np.ndarray:
        """Per-pixel convergence (same as ``converged``)."""
        return self.converged

    @property
    def message(self) -> str:
        """Convergence in numbers."""
        c = np.asarray(self.converged)
        return f"{int(c.sum())} of {c.size} pixels converged after {self.n_iter} iterations"

    @property
    def warnings(self) -> tuple[str, ...]:
        """Pixels that did not converge, in words."""
        c = np.asarray(self.converged)
        return () if c.all() else (f"{int(c.size - c.sum())} pixels did not converge (NaN-free but unreliable)",)

    def map(self, name: str) -> np.ndarray:
        """Parameter map (scan_shape) of ``name``."""
        return self.values[name]

    def stderr_map(self, name: str) -> np.ndarray:
        """1σ uncertainty map (scan_shape) of ``name``."""
        return self.stderr[name]

    def summary(self) -> str:
        """Median of every parameter map with its median 1σ, units and convergence."""
        comps = tuple(n for n in self.param_names if n not in ("q_scale", "blur_var") and not n.startswith("bg_"))
        return format_summary(
            self.description,
            self.values,
            self.stderr,
            units={n: parameter_units(n, comps) for n in self.param_names},
            ok=self.ok,
            message=self.message,
            warnings=self.warnings,
        )
