"""Likelihood fits of simulated components to measured radial profiles.

Forward model (expected counts in radial bin i at Q_i [Å⁻¹])::

    μ_i = E_i · [ Σₖ sₖ · (Iₖ ⊗ G_σb)(α · Q_i)  +  B(Q_i) ]

- ``E_i`` is the exposure of the bin: the number of detector pixels that went into it (``RadialProfiles.count``),
  so that ``μ`` is compared with the binned *sum* of counts (``RadialProfiles.sum``), never with a
  background-subtracted mean.
- ``Iₖ`` are simulated components (per-pixel intensity on their own Q grid, e.g. ``RadialProfiles.mean`` of a
  simulated pattern integrated by :mod:`simkit.radial` on the data's detector geometry). They already carry the
  probe (multislice with that probe, or the kinematic path through ``simkit.kinematic.probe_convolve``); the model
  never convolves with a Gaussian *probe*, only with a small *residual* Gaussian blur ``σ_b ≥ 0`` [Å⁻¹]
  (detector point spread, residual centre jitter). The blur is applied on the components' Q axis before the Q
  scale, i.e. it equals a blur of ``σ_b/α`` on the measured axis.
- ``sₖ ≥ 0`` are scales, ``α`` a common Q scale (camera-length calibration; ``α > 1`` means the measured rings
  sit at smaller Q than the simulated ones).
- ``B(Q)`` is a smooth background: power law ``A·(Q/Q₀)^(−p)``, quadratic polynomial in ``(Q − Q₀)/Q_w`` or
  exponential ``A·exp(−k (Q − Q₀))``. It stands for everything the elastic components do not contain:
  inelastic (plasmon/core-loss) scattering that reaches the detector, thermal diffuse scattering, the
  tail of the direct beam and amorphous carbon/ice support. ``Q₀`` is the geometric mean (power law) or the
  centre (poly, exp) of the fitted Q range and is reported in the description.

Components are interpolated at ``α·Q`` with a cubic spline (smooth in α, so that the Hessian exists). Bins whose
``α·Q`` could leave a component's finite Q range for any α within its bounds are excluded and reported.

Likelihoods: Poisson on counts (default), or Gaussian with given errors ``sigma`` [counts] (``sigma=None`` uses
``sqrt(max(counts, 1))``, i.e. Neyman's χ² — biased at low counts, kept as a comparison).

Optimisation: linear start values by bounded linear least squares on the scales and the background
(scipy ``lsq_linear``) over a small grid of α and background shape, then L-BFGS-B with analytic gradients on
scaled parameters, then projected Newton steps with the observed information (the Hessian of −log L,
including the second-derivative term). A fit is flagged ``converged`` only if the Newton decrement
(the remaining achievable change of log L) is below ``tol``; uncertainties are the square roots of the
diagonal of the inverse observed information over the free parameters.

Batched fits over a whole scan are in :func:`fit_scan` (vectorised Levenberg–Marquardt / Fisher scoring over
all pixels at once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import lsq_linear, minimize, nnls
from scipy.special import gammaln

__all__ = [
    "BACKGROUNDS",
    "Component",
    "FitNotConvergedError",
    "FitResult",
    "ScanFit",
    "as_components",
    "component_from_iq",
    "component_from_pattern",
    "fit_profile",
    "fit_radial",
    "fit_scan",
    "poisson_loglike",
]

#: Background shapes accepted by ``background=`` and their parameter names.
BACKGROUNDS: dict[str | None, tuple[str, ...]] = {
    "power": ("bg_amplitude", "bg_exponent"),
    "exp": ("bg_amplitude", "bg_decay"),
    "poly2": ("bg_c0", "bg_c1", "bg_c2"),
    None: (),
}
_RESERVED = {"q_scale", "blur_var", *(n for names in BACKGROUNDS.values() for n in names)}
_POWER_BOUNDS = (0.0, 8.0)  # exponent p of A·Q^-p; diffuse/inelastic tails fall as Q^-2 … Q^-4
_EXP_BOUNDS = (0.0, 50.0)  # decay k [Å] of A·exp(-k Q)


def _blas_single_thread():
    """Limit BLAS to one thread around tiny dense problems (P ≲ 10): on a loaded machine OpenBLAS's spinning
    threads made each L-BFGS-B iteration 10–30× slower. No-op when threadpoolctl is unavailable."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class FitNotConvergedError(RuntimeError):
    """Raised by :meth:`FitResult.require_converged` for a fit that did not converge."""


# ----------------------------------------------------------------------------------------------------------------
# Components
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class Component:
    """A simulated radial profile used as one term of the forward model.

    Parameters
    ----------
    name : str
        Label; used as the name of its scale parameter and for nesting in :func:`fitting.hypotheses.compare`.
    q : ndarray, shape (n,)  [Å⁻¹]
        Strictly increasing Q grid of the component.
    intensity : ndarray, shape (n,)  [arbitrary, per detector pixel]
        Intensity per pixel (``RadialProfiles.mean``), probe already included. NaN entries (empty bins) are
        dropped.
    source : str
        Free text: how the component was made.
    """

    name: str
    q: np.ndarray
    intensity: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name={self.name!r}: a component needs a non-empty str name")
        if self.name in _RESERVED:
            raise ValueError(f"name={self.name!r} is reserved for a model parameter; choose another component name")
        q = np.asarray(self.q, dtype=float)
        it = np.asarray(self.intensity, dtype=float)
        if q.ndim != 1 or it.shape != q.shape:
            raise ValueError(
                f"component {self.name!r}: q shape {q.shape} and intensity shape {it.shape} must be equal 1-D"
            )
        if q.size > 1 and not np.all(np.diff(q) > 0):
            raise ValueError(f"component {self.name!r}: q must be strictly increasing [Å⁻¹]")
        if np.count_nonzero(np.isfinite(it)) < 4:
            raise ValueError(f"component {self.name!r}: needs at least 4 finite intensity values")
        q.setflags(write=False)
        it.setflags(write=False)
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "intensity", it)


def _is_profiles(obj) -> bool:
    return hasattr(obj, "q") and hasattr(obj, "mean") and hasattr(obj, "count")


def _one_component(name: str, obj, q_data: np.ndarray | None) -> Component:
    if isinstance(obj, Component):
        return obj if obj.name == name else Component(name=name, q=obj.q, intensity=obj.intensity, source=obj.source)
    if _is_profiles(obj):
        mean = np.asarray(obj.mean, dtype=float)
        if mean.ndim != 1:
            raise ValueError(
                f"component {name!r}: RadialProfiles.mean has shape {mean.shape}; give a single 1-D profile"
            )
        return Component(name=name, q=np.asarray(obj.q, dtype=float), intensity=mean, source="RadialProfiles.mean")
    if isinstance(obj, tuple) and len(obj) == 2:
        return Component(name=name, q=np.asarray(obj[0], dtype=float), intensity=np.asarray(obj[1], dtype=float))
    arr = np.asarray(obj, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"component {name!r}: array of shape {arr.shape}; give a 1-D profile on the data's Q grid")
    if q_data is None or arr.shape != q_data.shape:
        raise ValueError(
            f"component {name!r}: bare array of length {arr.size} must lie on the data's Q grid "
            f"(length {None if q_data is None else q_data.size}); give (q, intensity) or a RadialProfiles instead"
        )
    return Component(name=name, q=q_data, intensity=arr, source="array on the data grid")


def as_components(components, q: np.ndarray | None = None) -> tuple[Component, ...]:
    """Normalise the accepted component specifications to a tuple of :class:`Component`.

    Parameters
    ----------
    components : Mapping[str, spec] or Sequence[spec]
        ``spec`` is a :class:`Component`, a ``RadialProfiles`` (its ``q`` and ``mean`` are used), a tuple
        ``(q [Å⁻¹], intensity)`` or a bare 1-D array on the data grid ``q``. Unnamed entries of a sequence are
        called ``c0, c1, …``.
    q : ndarray or None  [Å⁻¹]
        The data's Q grid (needed for bare arrays).

    Returns
    -------
    tuple of Component
    """
    if components is None:
        raise ValueError("components=None: give at least one component (Mapping name → profile, or a list)")
    if isinstance(components, (Component,)) or _is_profiles(components):
        components = [components]
    if isinstance(components, Mapping):
        items = [(str(k), v) for k, v in components.items()]
    elif isinstance(components, Sequence) and not isinstance(components, (str, bytes)):
        items = [(c.name if isinstance(c, Component) else f"c{i}", c) for i, c in enumerate(components)]
    elif isinstance(components, np.ndarray):
        arr = np.atleast_2d(components)
        items = [(f"c{i}", a) for i, a in enumerate(arr)]
    else:
        raise TypeError(f"components={type(components).__name__}: give a Mapping name → profile or a sequence")
    if len(items) == 0:
        raise ValueError("components is empty: the model needs at least one component")
    out = tuple(_one_component(n, v, q) for n, v in items)
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"component names {names} are not unique")
    return out


def component_from_pattern(pattern2d, plan, *, name: str = "pattern", statistic: str = "mean") -> Component:
    """A component from a simulated 2-D diffraction pattern, integrated by :mod:`simkit.radial`.

    Parameters
    ----------
    pattern2d : ndarray, shape (ny, nx)  [intensity per pixel]
        Simulated pattern on the *data's* detector grid (e.g. ``simkit.nbed.to_detector`` output).
    plan : simkit.radial.RadialPlan
        The plan used for the measured data (same geometry, bins and mask).
    name : str
    statistic : str
        Passed to ``plan.integrate``.

    Returns
    -------
    Component
        ``q`` = bin centres [Å⁻¹], ``intensity`` = mean per pixel.
    """
    pattern2d = np.asarray(pattern2d, dtype=float)
    if pattern2d.ndim != 2:
        raise ValueError(f"pattern2d has shape {pattern2d.shape}; give one 2-D pattern (ny, nx)")
    prof = plan.integrate(pattern2d, statistic=statistic)
    return Component(
        name=name, q=np.asarray(prof.q, float), intensity=np.asarray(prof.mean, float), source="simkit.radial"
    )


def component_from_iq(
    q: np.ndarray, iq: np.ndarray, semiangle: float, energy: float, geometry=None, *, name: str = "kinematic"
) -> Component:
    """A component from a kinematic I(Q), convolved with the probe by ``simkit.kinematic.probe_convolve``.

    Parameters
    ----------
    q : ndarray  [Å⁻¹]
        Grid of ``iq``.
    iq : ndarray  [Å² per atom]
        Kinematic (Debye) intensity.
    semiangle : float  [mrad]
        Probe convergence semi-angle.
    energy : float  [eV]
    geometry : simkit.geometry.DetectorGeometry or None
        The data's detector geometry; the result passes through :mod:`simkit.radial` on it.
    name : str

    Returns
    -------
    Component
    """
    from simkit import kinematic  # imported lazily: heavy, and lands independently

    prof = kinematic.probe_convolve(
        np.asarray(q, float), np.asarray(iq, float), semiangle=semiangle, energy=energy, geometry=geometry
    )
    return Component(
        name=name,
        q=np.asarray(prof.q, float),
        intensity=np.asarray(prof.mean, float),
        source=f"kinematic ⊗ probe ({semiangle} mrad, {energy:.0f} eV)",
    )


# ----------------------------------------------------------------------------------------------------------------
# Forward model (vectorised over pixels; shared by fit_profile and fit_scan)
# ----------------------------------------------------------------------------------------------------------------
def _common_grid(comps) -> tuple[np.ndarray, np.ndarray]:
    """All components on one uniform Q grid: their own grid when they share it (no interpolation), otherwise an
    explicit cubic-spline resampling onto the common range with the finest spacing. Returns (grid, V (n, K))."""
    finite = []
    for c in comps:
        ok = np.isfinite(c.intensity)
        finite.append((c.q[ok], c.intensity[ok]))
    q0, v0 = finite[0]
    d = np.diff(q0)
    same = all(qq.shape == q0.shape and np.allclose(qq, q0, rtol=1e-12, atol=0) for qq, _ in finite)
    if same and np.ptp(d) <= 1e-6 * np.mean(d):
        return q0, np.stack([v for _, v in finite], axis=1)
    lo = max(qq[0] for qq, _ in finite)
    hi = min(qq[-1] for qq, _ in finite)
    step = min(float(np.min(np.diff(qq))) for qq, _ in finite)
    if not hi > lo + 4 * step:
        raise ValueError("the components' finite Q ranges do not overlap; simulate them on a common Q range")
    grid = np.linspace(lo, hi, int(round((hi - lo) / step)) + 1)
    return grid, np.stack([CubicSpline(qq, v)(grid) for qq, v in finite], axis=1)


class _Forward:
    """Evaluates μ and ∂μ/∂θ for parameters θ of shape (n_pix, P). Internal."""

    def __init__(self, comps, q, exposure, background, fit_alpha, alpha_fixed, fit_blur, blur_fixed, q0, qw):
        self.comps = comps
        self.K = len(comps)
        self.q = q  # (n_q,)
        self.E = exposure  # (n_pix, n_q)
        self.background = background
        self.fit_alpha, self.alpha_fixed = fit_alpha, alpha_fixed
        self.fit_blur, self.blur_fixed = fit_blur, blur_fixed
        self.q0, self.qw = q0, qw
        names = [c.name for c in comps]
        if fit_alpha:
            names.append("q_scale")
        if fit_blur:
            names.append("blur_var")
        self.i_alpha = self.K if fit_alpha else None
        self.i_blur = self.K + int(fit_alpha) if fit_blur else None
        self.i_bg = len(names)
        names += list(BACKGROUNDS[background])
        self.names = tuple(names)
        self.P = len(names)
        self.grid, self.V = _common_grid(comps)  # (n_c,), (n_c, K)
        self._coef_cache: dict[float, tuple] = {}

    # -- components -------------------------------------------------------------------------------------------
    def _coefs(self, var: float):
        """Cubic-spline coefficients (4, n_c − 1, K) of the (blurred) components and of ∂/∂var (or None)."""
        key = float(var)
        hit = self._coef_cache.get(key)
        if hit is not None:
            return hit
        if var > 0 or self.fit_blur:
            vb, dvb = _fft_blur(self.grid, self.V, var)
            out = (CubicSpline(self.grid, vb).c, CubicSpline(self.grid, dvb).c)
        else:
            out = (CubicSpline(self.grid, self.V).c, None)
        if len(self._coef_cache) > 8:
            self._coef_cache.clear()
        self._coef_cache[key] = out
        return out

    def alpha(self, th):
        return th[:, self.i_alpha] if self.fit_alpha else np.full(th.shape[0], self.alpha_fixed)

    def blur_var(self, th):
        return th[:, self.i_blur] if self.fit_blur else np.full(th.shape[0], self.blur_fixed**2)

    def comp_values(self, th, deriv: bool):
        """I_k(α Q) (n_pix, n_q, K) and, if deriv, ∂/∂α and ∂/∂var of it."""
        a = self.alpha(th)
        var = self.blur_var(th)
        n = th.shape[0]
        shape = (n, self.q.size, self.K)
        vals = np.empty(shape)
        dal = np.empty(shape) if deriv else None
        dvar = np.empty(shape) if (deriv and self.fit_blur) else None
        uvar = np.unique(var)
        for u in uvar:
            rows = np.nonzero(var == u)[0] if uvar.size > 1 else slice(None)
            c, cv = self._coefs(u)
            ar = np.ascontiguousarray(a[rows])
            v_out = np.empty((ar.size, self.q.size, self.K))
            d_out = np.empty_like(v_out)
            spline_eval_kernel(c, self.grid, self.q, ar, v_out, d_out, deriv)
            vals[rows] = v_out
            if deriv:
                dal[rows] = d_out
                if dvar is not None:
                    spline_eval_kernel(cv, self.grid, self.q, ar, v_out, d_out, False)
                    dvar[rows] = v_out
        return vals, dal, dvar

    # -- background -------------------------------------------------------------------------------------------
    def bg(self, th, deriv: bool):
        q, n = self.q, th.shape[0]
        b = th[:, self.i_bg :]
        nb = b.shape[1]
        if self.background is None:
            return np.zeros((n, q.size)), np.zeros((n, q.size, 0))
        if self.background == "power":
            base = (q / self.q0)[None, :] ** (-b[:, 1:2])
            val = b[:, 0:1] * base
            if not deriv:
                return val, None
            jac = np.empty((n, q.size, nb))
            jac[:, :, 0] = base
            jac[:, :, 1] = -np.log(q / self.q0)[None, :] * val
            return val, jac
        if self.background == "exp":
            base = np.exp(-b[:, 1:2] * (q - self.q0)[None, :])
            val = b[:, 0:1] * base
            if not deriv:
                return val, None
            jac = np.empty((n, q.size, nb))
            jac[:, :, 0] = base
            jac[:, :, 1] = -(q - self.q0)[None, :] * val
            return val, jac
        t = (q - self.q0) / self.qw
        basis = np.stack([np.ones_like(t), t, t * t], axis=-1)  # (n_q, 3)
        val = b @ basis.T
        return val, (np.broadcast_to(basis, (n, q.size, 3)) if deriv else None)

    def bg_basis(self, shape_params: np.ndarray) -> np.ndarray:
        """Linear background basis columns (n_q, n_lin) for fixed nonlinear shape parameters (start values)."""
        q = self.q
        if self.background is None:
            return np.zeros((q.size, 0))
        if self.background == "power":
            return ((q / self.q0) ** (-shape_params[0]))[:, None]
        if self.background == "exp":
            return np.exp(-shape_params[0] * (q - self.q0))[:, None]
        t = (q - self.q0) / self.qw
        return np.stack([np.ones_like(t), t, t * t], axis=-1)

    # -- full model -------------------------------------------------------------------------------------------
    def parts(self, th):
        """Per-component expected counts (n_pix, n_q, K) and background counts (n_pix, n_q)."""
        vals, _, _ = self.comp_values(th, False)
        bgv, _ = self.bg(th, False)
        return self.E[:, :, None] * vals * th[:, None, : self.K], self.E * bgv

    def mu(self, th):
        vals, _, _ = self.comp_values(th, False)
        bgv, _ = self.bg(th, False)
        return self.E * (np.einsum("nqk,nk->nq", vals, th[:, : self.K]) + bgv)

    def mu_jac(self, th):
        vals, dal, dvar = self.comp_values(th, True)
        s = th[:, : self.K]
        bgv, bgj = self.bg(th, True)
        mu = self.E * (np.einsum("nqk,nk->nq", vals, s) + bgv)
        jac = np.empty((th.shape[0], self.q.size, self.P))
        jac[:, :, : self.K] = vals
        if self.fit_alpha:
            jac[:, :, self.i_alpha] = np.einsum("nqk,nk->nq", dal, s)
        if self.fit_blur:
            jac[:, :, self.i_blur] = np.einsum("nqk,nk->nq", dvar, s)
        jac[:, :, self.i_bg :] = bgj
        jac *= self.E[:, :, None]
        return mu, jac


def _spline_eval_impl(coef, grid, q, alpha, out_val, out_dalpha, deriv):  # pragma: no cover (numba)
    """Evaluate K cubic splines (PPoly coefficients ``coef`` (4, m − 1, K) on the uniform ``grid`` (m,)) at
    ``alpha[p]·q[j]`` for every pixel p and bin j; write values to ``out_val`` (n, n_q, K) and, if ``deriv``,
    ∂/∂α = q·I'(α q) to ``out_dalpha``. Points outside the grid give NaN. NumPy twin:
    ``tests.reference.spline_eval_reference``."""
    n = alpha.shape[0]
    nq = q.shape[0]
    K = coef.shape[2]
    m = grid.shape[0]
    g0 = grid[0]
    dg = (grid[m - 1] - grid[0]) / (m - 1)
    tol = 1e-9 * dg
    for p in numba.prange(n):
        for j in range(nq):
            x = alpha[p] * q[j]
            i = int(np.floor((x - g0) / dg))
            if i < 0:
                i = 0
            if i > m - 2:
                i = m - 2
            t = x - grid[i]
            outside = x < g0 - tol or x > grid[m - 1] + tol
            for k in range(K):
                if outside:
                    out_val[p, j, k] = np.nan
                    if deriv:
                        out_dalpha[p, j, k] = np.nan
                    continue
                c0 = coef[0, i, k]
                c1 = coef[1, i, k]
                c2 = coef[2, i, k]
                c3 = coef[3, i, k]
                out_val[p, j, k] = ((c0 * t + c1) * t + c2) * t + c3
                if deriv:
                    out_dalpha[p, j, k] = ((3.0 * c0 * t + 2.0 * c1) * t + c2) * q[j]


_spline_eval_par = numba.njit(parallel=True, cache=True)(_spline_eval_impl)
_spline_eval_ser = numba.njit(parallel=False, cache=True)(_spline_eval_impl)


def spline_eval_kernel(coef, grid, q, alpha, out_val, out_dalpha, deriv) -> None:
    """Dispatch :func:`_spline_eval_impl` to the parallel kernel for many pixels, the serial one for few.

    Parameters
    ----------
    coef : ndarray (4, m − 1, K)
    grid : ndarray (m,)  [Å⁻¹]
    q : ndarray (n_q,)  [Å⁻¹]
    alpha : ndarray (n,)  [1]
    out_val, out_dalpha : ndarray (n, n_q, K)
    deriv : bool
    """
    fn = _spline_eval_par if alpha.shape[0] >= 64 else _spline_eval_ser
    fn(coef, grid, q, alpha, out_val, out_dalpha, deriv)


_BG_KIND = {None: 0, "power": 1, "exp": 2, "poly2": 3}


def _poisson_terms_impl(coef, grid, q, lq, theta, y, E, w, K, ia, bg_kind, q0, qw, alpha_fixed, want, f, g, F):
    """Per pixel p: half Poisson deviance f[p] = Σ w (μ − y + y log(y/μ)), its gradient g[p] and the expected
    information F[p] = Σ w JJᵀ/μ of the forward model μ = E·[Σₖ sₖ Iₖ(α q) + B(q)] (no blur; the spline
    ``coef`` is already blurred; ``lq`` = log(q/q0), precomputed). ``ia`` = index of α in θ or −1; background
    parameters follow the K scales (and α). ``bg_kind``: 0 none, 1 A·(q/q0)^−p, 2 A·exp(−k(q − q0)),
    3 b0 + b1 t + b2 t², t = (q − q0)/qw.
    NumPy twin: ``tests.reference.poisson_terms_reference``."""
    n = theta.shape[0]
    P = theta.shape[1]
    nq = q.shape[0]
    m = grid.shape[0]
    g0 = grid[0]
    dg = (grid[m - 1] - grid[0]) / (m - 1)
    ib = K + (1 if ia >= 0 else 0)
    for p in numba.prange(n):
        alpha = alpha_fixed
        if ia >= 0:
            alpha = theta[p, ia]
        J = np.zeros(P)
        fp = 0.0
        gp = np.zeros(P)
        Fp = np.zeros((P, P))
        for j in range(nq):
            wj = w[p, j]
            if wj == 0.0:
                continue
            e = E[p, j]
            qq = q[j]
            x = alpha * qq
            i = int(np.floor((x - g0) / dg))
            if i < 0:
                i = 0
            if i > m - 2:
                i = m - 2
            t = x - grid[i]
            s = 0.0
            ds = 0.0
            for k in range(K):
                c0 = coef[0, i, k]
                c1 = coef[1, i, k]
                c2 = coef[2, i, k]
                c3 = coef[3, i, k]
                v = ((c0 * t + c1) * t + c2) * t + c3
                J[k] = e * v
                s += theta[p, k] * v
                if ia >= 0:
                    ds += theta[p, k] * ((3.0 * c0 * t + 2.0 * c1) * t + c2)
            if ia >= 0:
                J[ia] = e * ds * qq
            bgv = 0.0
            if bg_kind == 1:
                lr = lq[j]
                base = np.exp(-theta[p, ib + 1] * lr)
                bgv = theta[p, ib] * base
                J[ib] = e * base
                J[ib + 1] = -e * lr * bgv
            elif bg_kind == 2:
                base = np.exp(-theta[p, ib + 1] * (qq - q0))
                bgv = theta[p, ib] * base
                J[ib] = e * base
                J[ib + 1] = -e * (qq - q0) * bgv
            elif bg_kind == 3:
                tt = (qq - q0) / qw
                bgv = theta[p, ib] + theta[p, ib + 1] * tt + theta[p, ib + 2] * tt * tt
                J[ib] = e
                J[ib + 1] = e * tt
                J[ib + 2] = e * tt * tt
            mu = e * (s + bgv)
            if mu < 1e-300:
                mu = 1e-300
            yy = y[p, j]
            term = mu - yy
            if yy > 0:
                term += yy * np.log(yy / mu)
            fp += wj * term
            if want:
                gw = wj * (1.0 - yy / mu)
                cw = wj / mu
                for a in range(P):
                    gp[a] += gw * J[a]
                    ca = cw * J[a]
                    for b in range(a, P):
                        Fp[a, b] += ca * J[b]
        f[p] = fp
        if want:
            for a in range(P):
                g[p, a] = gp[a]
                for b in range(a, P):
                    F[p, a, b] = Fp[a, b]
                    F[p, b, a] = Fp[a, b]


_poisson_terms_par = numba.njit(parallel=True, cache=True)(_poisson_terms_impl)
_poisson_terms_ser = numba.njit(parallel=False, cache=True)(_poisson_terms_impl)


def poisson_terms_kernel(coef, grid, q, theta, y, E, w, K, ia, bg_kind, q0, qw, alpha_fixed, want, f, g, F) -> None:
    """Dispatch :func:`_poisson_terms_impl` (parallel for ≥ 64 pixels). Arrays: ``coef`` (4, m − 1, K),
    ``grid`` (m,) [Å⁻¹], ``q`` (n_q,) [Å⁻¹], ``theta`` (n, P), ``y``/``E``/``w`` (n, n_q) [counts, pixels, 1];
    outputs ``f`` (n,), ``g`` (n, P), ``F`` (n, P, P) (g and F only written when ``want``)."""
    fn = _poisson_terms_par if theta.shape[0] >= 64 else _poisson_terms_ser
    lq = np.log(q / q0) if bg_kind == 1 else np.zeros_like(q)
    fn(coef, grid, q, lq, theta, y, E, w, K, ia, bg_kind, q0, qw, alpha_fixed, want, f, g, F)


def _fft_blur(q: np.ndarray, v: np.ndarray, var: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blur of variance ``var`` [Å⁻²] on a uniform grid, and its derivative with respect to ``var``.

    Convolution of the band-limited interpolant (multiplication of the spectrum by exp(−2π²·var·ν²)), so the
    result is smooth in ``var`` down to 0 (a sampled kernel is not). Edge-padded to the grid length on each side.
    """
    n = v.shape[0]
    dq = (q[-1] - q[0]) / (n - 1)
    pad = n
    vp = np.pad(v, [(pad, pad)] + [(0, 0)] * (v.ndim - 1), mode="edge")
    m = vp.shape[0]
    nu = np.fft.rfftfreq(m, d=dq).reshape((-1,) + (1,) * (v.ndim - 1))
    spec = np.fft.rfft(vp, axis=0)
    g = np.exp(-2.0 * np.pi**2 * var * nu**2)
    vb = np.fft.irfft(spec * g, n=m, axis=0)[pad : pad + n]
    dvb = np.fft.irfft(spec * g * (-2.0 * np.pi**2 * nu**2), n=m, axis=0)[pad : pad + n]
    return vb, dvb


# ----------------------------------------------------------------------------------------------------------------
# Likelihoods
# ----------------------------------------------------------------------------------------------------------------
def poisson_loglike(counts: np.ndarray, mu: np.ndarray, axis=-1) -> np.ndarray:
    """Poisson log-likelihood Σ [y log μ − μ − log y!] over ``axis`` (terms with y = 0 are −μ).

    Parameters
    ----------
    counts : ndarray  [counts]
    mu : ndarray  [counts]
        Expected counts, > 0 where counts > 0.
    axis : int

    Returns
    -------
    ndarray
    """
    y = np.asarray(counts, float)
    m = np.asarray(mu, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(np.where(m > 0, m, np.nan)), 0.0) - m - gammaln(y + 1.0)
    return np.sum(t, axis=axis)


_MU_FLOOR = 1e-300


def _nll_terms(y, mu, w, likelihood, sig2):
    """Per-bin −log L up to a constant that vanishes at μ = y (half the deviance contribution)."""
    if likelihood == "poisson":
        m = np.maximum(mu, _MU_FLOOR)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = m - y + np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / m), 0.0)
        return w * t
    return w * 0.5 * (y - mu) ** 2 / sig2


def _grad_weights(y, mu, w, likelihood, sig2):
    """∂(−log L)/∂μ per bin."""
    if likelihood == "poisson":
        return w * (1.0 - y / np.maximum(mu, _MU_FLOOR))
    return w * (mu - y) / sig2


def _curv_weights(y, mu, w, likelihood, sig2, expected: bool):
    """∂²(−log L)/∂μ² per bin (observed) or its expectation (Fisher)."""
    if likelihood == "poisson":
        m = np.maximum(mu, _MU_FLOOR)
        return w * (1.0 / m if expected else y / m**2)
    return w / sig2


# ----------------------------------------------------------------------------------------------------------------
# Result types
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class FitResult:
    """Result of :func:`fit_profile`.

    Attributes
    ----------
    param_names : tuple of str
        Component scales (named like the components), then ``q_scale`` (α, dimensionless), ``blur_var``
        (σ_b² [Å⁻²]) when fitted, then background parameters (``bg_amplitude`` [counts per pixel],
        ``bg_exponent`` [1] / ``bg_decay`` [Å] / ``bg_c0..c2`` [counts per pixel]).
    x : ndarray  [units as above]
        Best-fit values.
    stderr : ndarray
        1σ uncertainties from the observed information (inverse Hessian of −log L over the free parameters;
        for a parameter at a bound: 1/sqrt of its own curvature, see ``at_bound``).
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
        """A human-readable table of the parameters and statistics."""
        lines = [self.description, f"converged={self.converged} ({self.message})"]
        for n, v, e, b in zip(self.param_names, self.x, self.stderr, self.at_bound):
            lines.append(f"  {n:>16s} = {v: .6g} ± {e:.3g}{'  (at bound)' if b else ''}")
        lines.append(
            f"  logL={self.loglike:.3f} deviance={self.deviance:.2f} chi2={self.chi2:.2f} dof={self.dof} "
            f"AIC={self.aic:.2f} BIC={self.bic:.2f} NaN bins={self.nan_bins.size}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------------------------------------------
# Input checking
# ----------------------------------------------------------------------------------------------------------------
def _as_1d(name, arr, n=None):
    a = np.asarray(arr, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} has shape {a.shape}; expected a 1-D array")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has length {a.size}; expected {n} (the length of q)")
    return a


def _check_grids(comps, q, resample):
    if resample:
        return
    for c in comps:
        same = c.q.shape == q.shape and np.allclose(c.q, q, rtol=1e-9, atol=1e-12)
        if not same:
            raise ValueError(
                f"component {c.name!r} is on a different Q grid ({c.q.size} points, {c.q[0]:.4g}–{c.q[-1]:.4g} Å⁻¹) "
                f"than the data ({q.size} points, {q[0]:.4g}–{q[-1]:.4g} Å⁻¹); integrate it with the data's "
                "RadialPlan, or pass resample=True to interpolate it explicitly"
            )


def _parse_flag(name, val, default_fixed):
    """True → fitted; False → fixed at default; number → fixed at that value."""
    if val is True:
        return True, default_fixed
    if val is False or val is None:
        return False, default_fixed
    if isinstance(val, (int, float, np.floating)) and np.isfinite(val):
        return False, float(val)
    raise TypeError(f"{name}={val!r}: give True (fit), False (fixed at {default_fixed}) or a fixed number")


def _select_bins(q, y, E, sig, comps, q_range, alpha_bounds, fit_alpha, alpha_fixed, background):
    n = q.size
    bad = ~np.isfinite(y) | ~np.isfinite(E) | (E <= 0) | ~np.isfinite(q)
    if sig is not None:
        bad |= ~np.isfinite(sig) | (sig <= 0)
    in_range = np.ones(n, bool)
    if q_range is not None:
        lo, hi = q_range
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"q_range={q_range!r}: give (qmin, qmax) in Å⁻¹ with qmin < qmax")
        in_range = (q >= lo) & (q <= hi)
    a_lo, a_hi = alpha_bounds if fit_alpha else (alpha_fixed, alpha_fixed)
    cover = np.ones(n, bool)
    for c in comps:
        fin = c.q[np.isfinite(c.intensity)]
        cover &= (a_lo * q >= fin[0]) & (a_hi * q <= fin[-1])
    if background == "power":
        cover &= q > 0
    nan_bins = np.nonzero(bad & in_range)[0]
    excluded = np.nonzero(in_range & ~bad & ~cover)[0]
    used = in_range & ~bad & cover
    return used, nan_bins, excluded


# ----------------------------------------------------------------------------------------------------------------
# Single-profile fit
# ----------------------------------------------------------------------------------------------------------------
def fit_profile(
    q,
    counts,
    components,
    *,
    exposure=None,
    background: str | None = "power",
    q_scale: bool | float = True,
    q_scale_bounds: tuple[float, float] = (0.95, 1.05),
    blur: bool | float = True,
    blur_max: float = 0.02,
    likelihood: str = "poisson",
    sigma=None,
    q_range: tuple[float, float] | None = None,
    resample: bool = False,
    start: Mapping[str, float] | None = None,
    n_starts: int = 3,
    max_iter: int = 500,
    tol: float = 1e-6,
) -> FitResult:
    """Fit simulated components plus a background to one measured radial profile.

    Parameters
    ----------
    q : array, shape (n_q,)  [Å⁻¹]
        Bin centres of the measured profile (``RadialProfiles.q``).
    counts : array, shape (n_q,)  [counts]
        Summed counts per bin (``RadialProfiles.sum``); NaN bins are ignored and reported.
    components : Mapping[str, spec] or Sequence[spec]
        Simulated components (see :func:`as_components`); at least one.
    exposure : array, shape (n_q,) or None  [pixels]
        Number of detector pixels per bin (``RadialProfiles.count``); ``None`` → 1 (counts are then per bin).
    background : {"power", "poly2", "exp", None}
        Smooth background (absorbs inelastic and thermal diffuse scattering, see module docstring).
    q_scale : bool or float
        Fit the common Q scale α (True), fix it at 1 (False) or at the given value [1].
    q_scale_bounds : (float, float)  [1]
    blur : bool or float
        Fit the residual Gaussian blur σ_b ≥ 0 (True, parametrised by σ_b² internally), no blur (False) or a fixed
        σ_b [Å⁻¹].
    blur_max : float  [Å⁻¹]
        Upper bound of σ_b.
    likelihood : {"poisson", "gaussian"}
    sigma : array or None  [counts]
        1σ errors for the Gaussian likelihood; ``None`` → sqrt(max(counts, 1)).
    q_range : (float, float) or None  [Å⁻¹]
        Fit window (inclusive).
    resample : bool
        Allow components on a Q grid different from ``q`` (they are interpolated); otherwise refuse.
    start : Mapping or None
        Start values by parameter name (override the linear start; then a single start is used).
    n_starts : int
        Number of local optimisations from the best linear starts with distinct α (≥ 0.01 apart); the
        likelihood in α is multimodal when sharp rings are weak.
    max_iter : int
        Iteration limit of the L-BFGS-B stage (Newton polishing adds ≤ 50).
    tol : float
        Convergence: Newton decrement (achievable change of log L) below ``tol``.

    Returns
    -------
    FitResult
        Check ``converged`` or call ``require_converged()``.
    """
    q = _as_1d("q", q)
    y_all = _as_1d("counts", counts, q.size)
    E_all = np.ones_like(q) if exposure is None else _as_1d("exposure", exposure, q.size)
    if likelihood not in ("poisson", "gaussian"):
        raise ValueError(f"likelihood={likelihood!r}: valid are 'poisson' and 'gaussian'")
    if background not in BACKGROUNDS:
        raise ValueError(f"background={background!r}: valid are {list(BACKGROUNDS)}")
    if np.any(y_all[np.isfinite(y_all)] < 0) and likelihood == "poisson":
        raise ValueError("counts has negative values; the Poisson likelihood needs raw (non-subtracted) counts")
    sig_all = None
    if likelihood == "gaussian":
        sig_all = np.sqrt(np.maximum(y_all, 1.0)) if sigma is None else _as_1d("sigma", sigma, q.size)
    elif sigma is not None:
        raise ValueError("sigma is only used with likelihood='gaussian'")
    if not (0 < q_scale_bounds[0] < q_scale_bounds[1] and np.isfinite(q_scale_bounds[1])):
        raise ValueError(f"q_scale_bounds={q_scale_bounds!r}: give (lo, hi) with 0 < lo < hi [1]")
    comps = as_components(components, q)
    _check_grids(comps, q, resample)
    fit_alpha, alpha_fixed = _parse_flag("q_scale", q_scale, 1.0)
    fit_blur, blur_fixed = _parse_flag("blur", blur, 0.0)
    if blur_fixed < 0:
        raise ValueError(f"blur={blur!r}: σ_b must be ≥ 0 [Å⁻¹]")

    used, nan_bins, excluded = _select_bins(
        q, y_all, E_all, sig_all, comps, q_range, q_scale_bounds, fit_alpha, alpha_fixed, background
    )
    n_used = int(used.sum())
    P = len(comps) + int(fit_alpha) + int(fit_blur) + len(BACKGROUNDS[background])
    if n_used <= P:
        raise ValueError(
            f"only {n_used} usable bins (NaN: {nan_bins.size}, outside component range: {excluded.size}) for {P} "
            "parameters; widen q_range or check the data"
        )
    qf, yf, Ef = q[used], y_all[used], E_all[used]
    sig2 = None if sig_all is None else sig_all[used] ** 2
    if background == "power":
        q0 = float(np.exp(np.mean(np.log(qf))))
    else:
        q0 = float(0.5 * (qf[0] + qf[-1]))
    qw = float(max(0.5 * (qf[-1] - qf[0]), 1e-12))
    fwd = _Forward(comps, qf, Ef[None, :], background, fit_alpha, alpha_fixed, fit_blur, blur_fixed, q0, qw)
    names = fwd.names
    K = fwd.K
    w = np.ones_like(yf)

    # bounds
    lo = np.full(P, -np.inf)
    hi = np.full(P, np.inf)
    lo[:K] = 0.0
    if fit_alpha:
        lo[fwd.i_alpha], hi[fwd.i_alpha] = q_scale_bounds
    if fit_blur:
        lo[fwd.i_blur], hi[fwd.i_blur] = 0.0, blur_max**2
    if background in ("power", "exp"):
        lo[fwd.i_bg] = 0.0
        lo[fwd.i_bg + 1], hi[fwd.i_bg + 1] = _POWER_BOUNDS if background == "power" else _EXP_BOUNDS

    starts = _linear_start(fwd, yf, Ef, lo, hi, likelihood, sig2, n_starts=n_starts)
    if start:
        for k in start:
            if k not in names:
                raise ValueError(f"start has unknown parameter {k!r}; valid: {list(names)}")
        starts = starts[:1]
        for k, v in start.items():
            starts[0][names.index(k)] = float(v)
    starts = [np.clip(t0, lo, hi) for t0 in starts]

    # scaling of the parameters for the optimiser
    level = float(np.median(yf / Ef)) if np.any(yf > 0) else 1.0
    level = level if level > 0 else max(float(np.mean(yf / Ef)), 1e-12)
    scale = np.ones(P)
    for k in range(K):
        ref = float(np.sqrt(np.mean(fwd.V[:, k] ** 2)))  # RMS (a median is ~0 for sharp Bragg rings)
        scale[k] = level / ref if ref > 0 else 1.0
    if fit_alpha:
        scale[fwd.i_alpha] = 0.01
    if fit_blur:
        scale[fwd.i_blur] = 0.005**2
    for j in range(P - fwd.i_bg):
        nm = names[fwd.i_bg + j]
        scale[fwd.i_bg + j] = 1.0 if nm in ("bg_exponent", "bg_decay") else level

    def nll(th):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            f = float(np.sum(_nll_terms(yf, fwd.mu(th[None, :])[0], w, likelihood, sig2)))
        return f if np.isfinite(f) else np.inf

    def fun_grad(x):
        th = x * scale
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mu, jac = fwd.mu_jac(th[None, :])
            mu, jac = mu[0], jac[0]
            f = float(np.sum(_nll_terms(yf, mu, w, likelihood, sig2)))
            g = (jac.T @ _grad_weights(yf, mu, w, likelihood, sig2)) * scale
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(x)
        return f, g

    # local optimisation from each start (distinct Q scales: the likelihood in α is multimodal when sharp rings
    # are weak); the best end point is polished below
    res = None
    with _blas_single_thread():
        for t0 in starts:
            r_ = minimize(
                fun_grad,
                t0 / scale,
                jac=True,
                method="L-BFGS-B",
                bounds=list(zip(lo / scale, hi / scale)),
                options={"maxiter": int(max_iter), "ftol": 1e-15, "gtol": 1e-10, "maxcor": 10},
            )
            if res is None or r_.fun < res.fun:
                res = r_
    theta = np.clip(res.x * scale, lo, hi)
    message = f"L-BFGS-B: {res.message}"

    # Polishing: Newton steps with the observed information where it is positive definite, otherwise damped
    # Fisher-scoring steps (expected information, always positive semi-definite) — L-BFGS-B can stop early in
    # flat or non-convex regions (e.g. Q scale of a weak component at low counts).
    converged = False
    decrement = np.inf
    n_newton = 0 if max_iter < 5 else 100
    last = ""
    for _ in range(n_newton):
        g, H = _grad_hess(fwd, theta, yf, w, likelihood, sig2)
        free = _free_mask(theta, lo, hi, g)
        sc = scale[free]
        gs = g[free] * sc
        steps = []
        try:
            L = np.linalg.cholesky(H[np.ix_(free, free)] * np.outer(sc, sc))
            newton = -np.linalg.solve(L.T, np.linalg.solve(L, gs))
            decrement = float(-gs @ newton)
            if decrement < tol:
                converged = True
                break
            steps.append(newton)
            last = "observed information positive definite"
        except np.linalg.LinAlgError:
            last = "observed information not positive definite"
        F = _fisher_single(fwd, theta, yf, w, likelihood, sig2)[np.ix_(free, free)] * np.outer(sc, sc)
        dF = np.diag(F).copy()
        for lam in (1e-3, 1e-1, 10.0):
            M = F + np.diag(lam * dF + 1e-12 * max(float(dF.max()), 1e-300))
            try:
                steps.append(-np.linalg.solve(M, gs))
            except np.linalg.LinAlgError:
                pass
        f0 = nll(theta)
        moved = False
        for step in steps:
            t = 1.0
            while t > 1e-4 and not moved:
                trial = theta.copy()
                trial[free] = theta[free] + t * step * sc
                trial = np.clip(trial, lo, hi)
                if nll(trial) < f0 or (nll(trial) == f0 and t == 1.0):
                    theta, moved = trial, True
                t *= 0.5
            if moved:
                break
        if not moved:
            last += "; no step decreases −log L"
            break
    if converged:
        message += f"; Newton decrement {decrement:.2g} < {tol:g}"
    elif n_newton:
        message += f"; not converged: Newton decrement {decrement:.3g} ≥ tol ({last})"
    else:
        message += "; not polished (max_iter < 5)"

    # statistics at the optimum
    g, H = _grad_hess(fwd, theta, yf, w, likelihood, sig2)
    with np.errstate(invalid="ignore"):
        at_bound = (np.isfinite(lo) & (theta <= lo + 1e-12 * np.maximum(1, np.abs(lo)))) | (
            np.isfinite(hi) & (theta >= hi - 1e-12 * np.maximum(1, np.abs(hi)))
        )
    cov = np.full((P, P), np.nan)
    stderr = np.full(P, np.nan)
    free = ~at_bound
    try:
        Hs = H[np.ix_(free, free)] * np.outer(scale[free], scale[free])
        cs = np.linalg.inv(Hs) * np.outer(scale[free], scale[free])
        cov[np.ix_(free, free)] = cs
        stderr[free] = np.sqrt(np.clip(np.diag(cs), 0, None))
        if np.any(np.diag(cs) <= 0):
            converged = False
            message += "; covariance not positive"
    except np.linalg.LinAlgError:
        converged = False
        message += "; observed information singular"
    hb = np.diag(H)[at_bound]
    stderr[at_bound] = np.where(hb > 0, 1.0 / np.sqrt(np.where(hb > 0, hb, 1)), np.nan)
    cov[at_bound, at_bound] = stderr[at_bound] ** 2

    mu, _ = fwd.mu_jac(theta[None, :])
    mu = mu[0]
    parts, bgc = fwd.parts(theta[None, :])
    if likelihood == "poisson":
        ll = float(poisson_loglike(yf, mu))
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = float(2.0 * np.sum(np.where(yf > 0, yf * np.log(yf / mu), 0.0) - (yf - mu)))
        chi2 = float(np.sum((yf - mu) ** 2 / mu))
        resid = (yf - mu) / np.sqrt(mu)
    else:
        r = (yf - mu) / np.sqrt(sig2)
        chi2 = float(np.sum(r**2))
        ll = float(-0.5 * chi2 - 0.5 * np.sum(np.log(2 * np.pi * sig2)))
        dev = chi2
        resid = r
    k = P
    full = np.full(q.size, np.nan)

    def on_grid(v):
        out = full.copy()
        out[used] = v
        return out

    desc = _describe(comps, background, fit_alpha, alpha_fixed, fit_blur, blur_fixed, likelihood, qf, q0, qw)
    return FitResult(
        param_names=names,
        x=theta,
        stderr=stderr,
        covariance=cov,
        at_bound=at_bound,
        loglike=ll,
        deviance=dev,
        chi2=chi2,
        dof=int(n_used - k),
        n_data=n_used,
        n_params=k,
        aic=float(2 * k - 2 * ll),
        bic=float(k * np.log(n_used) - 2 * ll),
        q=q,
        counts=y_all,
        exposure=E_all,
        expected=on_grid(mu),
        residuals=on_grid(resid),
        contributions=np.stack([on_grid(parts[0, :, j]) for j in range(K)]),
        background_counts=on_grid(bgc[0]),
        used=used,
        nan_bins=nan_bins,
        excluded_bins=excluded,
        converged=bool(converged and np.all(np.isfinite(theta))),
        message=message,
        description=desc,
        likelihood=likelihood,
        component_names=tuple(c.name for c in comps),
        information=_fisher_single(fwd, theta, yf, w, likelihood, sig2),
        settings={
            "background": background,
            "q_scale": q_scale,
            "q_scale_bounds": tuple(q_scale_bounds),
            "blur": blur,
            "blur_max": blur_max,
            "q_range": q_range,
            "q0": q0,
            "qw": qw,
            "resample": resample,
        },
    )


def fit_radial(profile, components, **kwargs) -> FitResult:
    """Fit a ``RadialProfiles`` (1-D): ``fit_profile(profile.q, profile.sum, components, exposure=profile.count)``.

    Parameters
    ----------
    profile : simkit.radial.RadialProfiles
        One measured profile (``sum`` [counts] and ``count`` [pixels] 1-D).
    components, **kwargs
        As :func:`fit_profile`.

    Returns
    -------
    FitResult
    """
    s = np.asarray(profile.sum, float)
    if s.ndim != 1:
        raise ValueError(f"profile.sum has shape {s.shape}; use fit_scan for many profiles")
    return fit_profile(profile.q, s, components, exposure=np.asarray(profile.count, float), **kwargs)


def _describe(comps, background, fit_alpha, alpha_fixed, fit_blur, blur_fixed, likelihood, qf, q0, qw):
    a = "α·Q" if fit_alpha else (f"{alpha_fixed:g}·Q" if alpha_fixed != 1 else "Q")
    terms = " + ".join(f"s[{c.name}]·I[{c.name}]({a})" for c in comps)
    if fit_blur:
        terms = f"({terms}) ⊗ G(σ_b fitted)"
    elif blur_fixed > 0:
        terms = f"({terms}) ⊗ G(σ_b={blur_fixed:g} Å⁻¹)"
    bg = {
        "power": f" + A·(Q/{q0:.4g})^-p",
        "exp": f" + A·exp(-k·(Q-{q0:.4g}))",
        "poly2": f" + c0 + c1·t + c2·t², t=(Q-{q0:.4g})/{qw:.4g}",
        None: "",
    }[background]
    return (
        f"μ(Q) = exposure(Q)·[{terms}{bg}]; {likelihood} likelihood on {qf.size} bins, Q = {qf[0]:.4g}–{qf[-1]:.4g} Å⁻¹"
    )


def _free_mask(theta, lo, hi, g):
    at_lo = (theta <= lo) & (g > 0)
    at_hi = (theta >= hi) & (g < 0)
    return ~(at_lo | at_hi)


def _fisher_single(fwd: _Forward, theta, y, w, likelihood, sig2):
    """Expected information JᵀWJ of one profile."""
    mu, jac = fwd.mu_jac(theta[None, :])
    cw = _curv_weights(y, mu[0], w, likelihood, sig2, expected=True)
    return (jac[0] * cw[:, None]).T @ jac[0]


def _grad_hess(fwd: _Forward, theta, y, w, likelihood, sig2):
    """Gradient and observed Hessian of −log L (second derivatives of μ by central differences of ∂μ)."""
    mu, jac = fwd.mu_jac(theta[None, :])
    mu, jac = mu[0], jac[0]
    gw = _grad_weights(y, mu, w, likelihood, sig2)
    cw = _curv_weights(y, mu, w, likelihood, sig2, expected=False)
    g = jac.T @ gw
    H = (jac * cw[:, None]).T @ jac
    # ∂²μ: nonzero only for columns that are nonlinear (α, blur, background shape) and their cross terms
    nonlin = [i for i in (fwd.i_alpha, fwd.i_blur) if i is not None]
    if fwd.background in ("power", "exp"):
        nonlin.append(fwd.i_bg + 1)
    steps = {}
    for i in nonlin:
        steps[i] = 1e-4 * max(abs(theta[i]), 1e-3) if fwd.names[i] != "blur_var" else 1e-8
    for i in nonlin:
        tp, tm = theta.copy(), theta.copy()
        tp[i] += steps[i]
        tm[i] -= steps[i]
        _, jp = fwd.mu_jac(tp[None, :])
        _, jm = fwd.mu_jac(tm[None, :])
        d2 = (jp[0] - jm[0]) / (2 * steps[i])  # (n_q, P): ∂²μ/∂θ_i∂θ_j
        row = d2.T @ gw
        H[i, :] += row
        H[:, i] += row
        H[i, i] -= row[i]  # added twice above
    H = 0.5 * (H + H.T)
    return g, H


def _linear_start(fwd: _Forward, y, E, lo, hi, likelihood, sig2, n_starts=1):
    """Start values: weighted non-negative linear least squares on the scales (and the linear background
    coefficients) over a grid of α and of the background shape; the candidate with the lowest −log L wins."""
    K, P = fwd.K, fwd.P
    wt = 1.0 / np.sqrt(np.maximum(y, 1.0)) if sig2 is None else 1.0 / np.sqrt(sig2)
    alphas = np.linspace(lo[fwd.i_alpha], hi[fwd.i_alpha], 21) if fwd.fit_alpha else np.array([fwd.alpha_fixed])
    if fwd.background == "power":
        shapes = [np.array([p]) for p in (0.0, 1.0, 2.0, 3.0, 4.0)]
    elif fwd.background == "exp":
        shapes = [np.array([k]) for k in (0.0, 1.0, 3.0, 10.0)]
    else:
        shapes = [np.array([])]
    th = np.zeros((alphas.size, P))
    if fwd.fit_alpha:
        th[:, fwd.i_alpha] = alphas
    vals_all, _, _ = fwd.comp_values(th, False)  # (n_alpha, n_q, K)
    cands = []
    for ia in range(alphas.size):
        A_comp = E[:, None] * vals_all[ia]
        for sh in shapes:
            basis = E[:, None] * fwd.bg_basis(sh)
            A = np.concatenate([A_comp, basis], axis=1) * wt[:, None]
            if fwd.background == "poly2":
                blo = np.concatenate([np.zeros(K), np.full(3, -np.inf)])
                x = lsq_linear(A, y * wt, bounds=(blo, np.full(K + 3, np.inf)), method="bvls").x
            else:
                x = nnls(A, y * wt, maxiter=50 * A.shape[1])[0]
            cand = th[ia].copy()
            cand[:K] = x[:K]
            if fwd.background in ("power", "exp"):
                cand[fwd.i_bg] = x[K]
                cand[fwd.i_bg + 1] = sh[0]
            elif fwd.background == "poly2":
                cand[fwd.i_bg :] = x[K:]
            cands.append(cand)
    cands = np.array(cands)
    if likelihood == "poisson":
        # keep μ > 0 where counts were recorded: tiny positive floors on the non-negative linear parameters
        floor = 1e-6 * max(float(np.max(cands[:, :K])), 1e-12)
        cands[:, :K] = np.maximum(cands[:, :K], floor)
        if fwd.background in ("power", "exp"):
            cands[:, fwd.i_bg] = np.maximum(cands[:, fwd.i_bg], 1e-3 * float(np.median(y / E)) + 1e-12)
    E_saved = fwd.E
    fwd.E = np.broadcast_to(E, (len(cands), E.size))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mu = fwd.mu(cands)
        f = np.sum(_nll_terms(y[None, :], mu, np.ones_like(y)[None, :], likelihood, sig2), axis=1)
    fwd.E = E_saved
    f = np.where(np.isfinite(f), f, np.inf)
    if not np.any(np.isfinite(f)):
        raise ValueError("no finite start values: the model predicts 0 counts where counts were recorded")
    order = np.argsort(f)
    out = [cands[order[0]]]
    if fwd.fit_alpha:
        # further starts: the best candidates whose α differs by ≥ 0.01 from every start taken so far
        for i in order[1:]:
            if len(out) >= n_starts or not np.isfinite(f[i]):
                break
            a = cands[i, fwd.i_alpha]
            if all(abs(a - o[fwd.i_alpha]) >= 0.01 for o in out):
                out.append(cands[i])
    return [o.copy() for o in out]


# ----------------------------------------------------------------------------------------------------------------
# Batched fit over a scan
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class ScanFit:
    """Result of :func:`fit_scan`: parameter maps with uncertainty maps.

    Attributes
    ----------
    param_names : tuple of str
        As in :class:`FitResult` (no ``blur_var``: the blur is fixed in batch fits).
    values, stderr : ndarray, shape scan_shape + (P,)
        Best-fit values and 1σ uncertainties from the per-pixel expected Fisher information (free parameters;
        a parameter at a bound gets 1/sqrt of its own information and ``at_bound`` True).
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

    def map(self, name: str) -> np.ndarray:
        """Parameter map (scan_shape) of ``name``."""
        return self.values[..., self._index(name)]

    def stderr_map(self, name: str) -> np.ndarray:
        """1σ uncertainty map (scan_shape) of ``name``."""
        return self.stderr[..., self._index(name)]

    def _index(self, name: str) -> int:
        if name not in self.param_names:
            raise KeyError(f"{name!r} is not a parameter; valid: {list(self.param_names)}")
        return self.param_names.index(name)


def fit_scan(
    q,
    counts,
    exposure,
    components,
    *,
    background: str | None = "power",
    q_scale: bool | float = True,
    q_scale_bounds: tuple[float, float] = (0.95, 1.05),
    blur: float = 0.0,
    q_range: tuple[float, float] | None = None,
    resample: bool = False,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> ScanFit:
    """Fit every profile of a scan at once (vectorised Levenberg–Marquardt / Fisher scoring, Poisson).

    All pixels are iterated together with NumPy broadcasting: per iteration one evaluation of μ and ∂μ/∂θ for
    all pixels (cubic-spline components at each pixel's α·Q), the per-pixel gradient and expected Fisher matrix
    of −log L, and a batched solve of the damped system (F + λ·diag F) δ = −g, with a per-pixel damping λ
    adapted on acceptance. Bounds (sₖ ≥ 0, A ≥ 0, α and p in their intervals) are kept by an active set
    (a parameter at a bound whose gradient points outwards is frozen for the step) followed by projection onto
    the box. Pixels leave the active set when converged. Start values: a :func:`fit_profile` of the scan's
    summed profile, with the linear parameters rescaled to each pixel's total counts.

    The Q scale α is a per-pixel parameter (one more column of the same batched Newton system, so it costs
    nothing extra and maps local changes of the ring positions); pass ``q_scale=<float>`` to fix it, e.g. at the
    value from a fit of the summed profile when the pixels are too sparse to determine it.

    Parameters
    ----------
    q : array, shape (n_q,)  [Å⁻¹]
    counts : array, shape scan_shape + (n_q,)  [counts]
        Summed counts per bin (``RadialProfiles.sum``); NaN bins are ignored per pixel.
    exposure : array, shape (n_q,) or scan_shape + (n_q,)  [pixels]
        ``RadialProfiles.count``.
    components : Mapping or Sequence
        As :func:`fit_profile`.
    background : {"power", "exp", "poly2", None}
    q_scale : bool or float
    q_scale_bounds : (float, float)
    blur : float  [Å⁻¹]
        Fixed residual blur σ_b (use the value from a :func:`fit_profile` of the summed profile).
    q_range : (float, float) or None  [Å⁻¹]
    resample : bool
    max_iter : int
    tol : float
        Convergence threshold on the per-pixel Newton decrement.

    Returns
    -------
    ScanFit
    """
    q = _as_1d("q", q)
    y = np.asarray(counts, dtype=float)
    if y.ndim < 2 or y.shape[-1] != q.size:
        raise ValueError(f"counts has shape {y.shape}; expected scan_shape + ({q.size},)")
    scan_shape = y.shape[:-1]
    y = y.reshape(-1, q.size)
    E = np.asarray(exposure, dtype=float)
    if E.shape == (q.size,):
        E = np.broadcast_to(E, y.shape)
    elif E.shape[-1] == q.size and E.shape[:-1] == scan_shape:
        E = E.reshape(-1, q.size)
    else:
        raise ValueError(f"exposure has shape {E.shape}; expected ({q.size},) or {scan_shape + (q.size,)}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background={background!r}: valid are {list(BACKGROUNDS)}")
    if np.any(y[np.isfinite(y)] < 0):
        raise ValueError("counts has negative values; the Poisson likelihood needs raw counts")
    if not (isinstance(blur, (int, float, np.floating)) and blur >= 0):
        raise TypeError(f"blur={blur!r}: fit_scan takes a fixed σ_b ≥ 0 [Å⁻¹] (fit it on the summed profile)")
    comps = as_components(components, q)
    _check_grids(comps, q, resample)
    fit_alpha, alpha_fixed = _parse_flag("q_scale", q_scale, 1.0)

    ok = np.isfinite(y) & np.isfinite(E) & (E > 0)
    colsel, _, _ = _select_bins(
        q, np.zeros(q.size), np.ones(q.size), None, comps, q_range, q_scale_bounds, fit_alpha, alpha_fixed, background
    )
    qf = q[colsel]
    w = (ok[:, colsel]).astype(float)
    yf = np.where(w > 0, y[:, colsel], 0.0)
    Ef = np.where(w > 0, E[:, colsel], 1.0)

    # start: fit of the summed profile
    ysum = np.sum(yf * w, axis=0)
    Esum = np.sum(Ef * w, axis=0)
    g_fit = fit_profile(
        qf,
        ysum,
        comps,
        exposure=Esum,
        background=background,
        q_scale=q_scale,
        q_scale_bounds=q_scale_bounds,
        blur=float(blur),
        resample=True,
    )
    q0, qw = g_fit.settings["q0"], g_fit.settings["qw"]
    fwd = _Forward(comps, qf, Ef, background, fit_alpha, alpha_fixed, False, float(blur), q0, qw)
    P, K = fwd.P, fwd.K
    lo = np.full(P, -np.inf)
    hi = np.full(P, np.inf)
    lo[:K] = 0.0
    lin = np.zeros(P, bool)
    lin[:K] = True
    if fit_alpha:
        lo[fwd.i_alpha], hi[fwd.i_alpha] = q_scale_bounds
    if background in ("power", "exp"):
        lo[fwd.i_bg] = 0.0
        lin[fwd.i_bg] = True
        lo[fwd.i_bg + 1], hi[fwd.i_bg + 1] = _POWER_BOUNDS if background == "power" else _EXP_BOUNDS
    elif background == "poly2":
        lin[fwd.i_bg :] = True

    n = yf.shape[0]
    th = np.broadcast_to(g_fit.x, (n, P)).copy()
    mu_g = fwd.mu(th)
    ratio = np.sum(yf * w, axis=1) / np.maximum(np.sum(mu_g * w, axis=1), 1e-300)
    th[:, lin] *= np.maximum(ratio, 1e-6)[:, None]
    # keep the background strictly positive at the start so that μ > 0 everywhere
    if background in ("power", "exp"):
        th[:, fwd.i_bg] = np.maximum(th[:, fwd.i_bg], 1e-6 * max(g_fit.x[fwd.i_bg], 1e-12))

    coef = np.ascontiguousarray(fwd._coefs(float(blur) ** 2)[0])
    i_al = fwd.i_alpha if fit_alpha else -1
    kind = _BG_KIND[background]

    def terms(t_, y_, e_, w_, want):
        na = t_.shape[0]
        f_ = np.empty(na)
        g_ = np.empty((na, P)) if want else np.empty((1, 1))
        F_ = np.empty((na, P, P)) if want else np.empty((1, 1, 1))
        poisson_terms_kernel(
            coef,
            fwd.grid,
            qf,
            t_,
            np.ascontiguousarray(y_),
            np.ascontiguousarray(e_),
            np.ascontiguousarray(w_),
            K,
            i_al,
            kind,
            float(q0),
            float(qw),
            float(alpha_fixed),
            want,
            f_,
            g_,
            F_,
        )
        return f_, g_, F_

    lam = np.full(n, 1e-3)
    nu = np.full(n, 2.0)
    converged = np.zeros(n, bool)
    stalled = np.zeros(n, bool)
    n_it = 0
    for n_it in range(1, max_iter + 1):  # noqa: B007
        act = np.nonzero(~converged & ~stalled)[0]
        if act.size == 0:
            break
        ta = np.ascontiguousarray(th[act])
        ya, wa = yf[act], w[act]
        f, g, F = terms(ta, ya, Ef[act], wa, True)
        fixed = ((ta <= lo) & (g > 0)) | ((ta >= hi) & (g < 0))
        dF = np.diagonal(F, axis1=1, axis2=2)
        fixed |= dF <= 1e-300
        # full Newton decrement (λ = 0) on the free parameters: convergence test
        step0 = _batched_solve(F, g, fixed, 0.0)
        dec = -np.sum(g * step0, axis=1)
        done = dec < tol
        converged[act[done]] = True
        keep = ~done
        if not np.any(keep):
            continue
        act, ta, ya, wa, f, g, F, fixed = (
            act[keep],
            ta[keep],
            ya[keep],
            wa[keep],
            f[keep],
            g[keep],
            F[keep],
            fixed[keep],
        )
        step = _batched_solve(F, g, fixed, lam[act])
        trial = np.clip(ta + step, lo, hi)
        step = trial - ta
        pred = -np.sum(g * step, axis=1) - 0.5 * np.einsum("np,npr,nr->n", step, F, step)
        ft, _, _ = terms(np.ascontiguousarray(trial), ya, Ef[act], wa, False)
        rho = np.where(pred > 0, (f - ft) / np.where(pred > 0, pred, 1.0), -1.0)
        acc = np.isfinite(ft) & (ft <= f) & (rho > 0)
        # Nielsen's damping update: shrink λ by up to 3× after a good step, grow geometrically after failures
        ia, ir = act[acc], act[~acc]
        th[ia] = trial[acc]
        lam[ia] = np.maximum(lam[ia] * np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho[acc] - 1.0) ** 3), 1e-9)
        nu[ia] = 2.0
        lam[ir] *= nu[ir]
        nu[ir] *= 2.0
        stalled[act[lam[act] > 1e10]] = True

    # uncertainties and statistics at the end (all pixels)
    fh, _, F = terms(th, yf, Ef, w, True)
    with np.errstate(invalid="ignore"):
        at_bound = (np.isfinite(lo) & (th <= lo)) | (np.isfinite(hi) & (th >= hi))
    stderr = _batched_stderr(F, at_bound)
    # log L = −(half deviance) + log L of the saturated model Σ w (y log y − y − log y!)
    sat = np.sum(w * (np.where(yf > 0, yf * np.log(np.where(yf > 0, yf, 1.0)), 0.0) - yf - gammaln(yf + 1)), axis=1)
    ll = sat - fh
    dev = 2.0 * fh
    desc = _describe(comps, background, fit_alpha, alpha_fixed, False, float(blur), "poisson", qf, q0, qw)
    return ScanFit(
        param_names=fwd.names,
        values=th.reshape(scan_shape + (P,)),
        stderr=stderr.reshape(scan_shape + (P,)),
        at_bound=at_bound.reshape(scan_shape + (P,)),
        converged=converged.reshape(scan_shape),
        loglike=ll.reshape(scan_shape),
        deviance=dev.reshape(scan_shape),
        n_data=np.sum(w > 0, axis=1).reshape(scan_shape),
        n_iter=n_it,
        q=q,
        used=colsel,
        description="batched LM; " + desc,
        settings={
            "background": background,
            "q_scale": q_scale,
            "q_scale_bounds": tuple(q_scale_bounds),
            "blur": float(blur),
            "q_range": q_range,
            "q0": q0,
            "qw": qw,
            "summed_fit": g_fit,
        },
    )


def _fisher(J, cw):
    """Σ_q cw·J Jᵀ per pixel: (n, n_q, P), (n, n_q) → (n, P, P) (batched BLAS)."""
    Jt = np.swapaxes(J, 1, 2)
    return np.matmul(Jt * cw[:, None, :], J)


def _batched_solve(F, g, fixed, lam):
    """Solve (F + λ diag F) δ = −g per pixel with the ``fixed`` parameters frozen (δ = 0)."""
    P = F.shape[-1]
    d = np.diagonal(F, axis1=1, axis2=2)
    M = F.copy()
    lam = np.broadcast_to(np.asarray(lam, float), (F.shape[0],))
    idx = np.arange(P)
    M[:, idx, idx] = d * (1.0 + lam[:, None]) + 1e-12 * np.max(d, axis=1, keepdims=True)
    free = ~fixed
    M = M * (free[:, :, None] & free[:, None, :])
    M[:, idx, idx] = np.where(free, M[:, idx, idx], 1.0)
    rhs = np.where(free, -g, 0.0)
    return np.linalg.solve(M, rhs[..., None])[..., 0]


def _batched_stderr(F, at_bound):
    """1σ errors: inverse of the free block of F per pixel; 1/sqrt(F_ii) for parameters at a bound."""
    P = F.shape[-1]
    idx = np.arange(P)
    d = np.diagonal(F, axis1=1, axis2=2).copy()
    free = ~at_bound
    M = F * (free[:, :, None] & free[:, None, :])
    M[:, idx, idx] = np.where(free, M[:, idx, idx], 1.0)
    # scale to unit diagonal for conditioning, then eigen-decompose (robust to singular blocks)
    s = np.sqrt(np.where(np.diagonal(M, axis1=1, axis2=2) > 0, np.diagonal(M, axis1=1, axis2=2), 1.0))
    Ms = M / (s[:, :, None] * s[:, None, :])
    vals, vecs = np.linalg.eigh(Ms)
    good = vals > 1e-12 * np.max(vals, axis=1, keepdims=True)
    inv_vals = np.where(good, 1.0 / np.where(good, vals, 1.0), np.inf)
    var = np.einsum("npk,nk,npk->np", vecs, inv_vals, vecs) / s**2
    var = np.where(np.isfinite(var), var, np.nan)
    out = np.sqrt(np.clip(var, 0, None))
    out = np.where(free, out, np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), np.nan))
    return out
