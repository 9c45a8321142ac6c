"""The fits: :func:`fit_profile` (one profile), :func:`fit_radial` (a ``RadialProfiles``) and :func:`fit_scan`
(every profile of a scan at once), all through the one bounded optimiser of :mod:`fitting.model.optimiser`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.optimize import lsq_linear, nnls
from scipy.special import gammaln

from fitting.model.components import BACKGROUNDS, as_components
from fitting.model.forward import (
    BG_KIND,
    Forward,
    describe,
    grad_hess,
    nll_terms,
    poisson_loglike,
    poisson_terms_kernel,
)
from fitting.model.optimiser import at_bound, blas_single_thread, inverse_information, minimize_bounded
from fitting.model.results import FitResult, ScanFit

__all__ = ["fit_profile", "fit_radial", "fit_scan"]


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


def _linear_start(fwd: Forward, y, E, lo, hi, likelihood, sig2, n_starts=1):
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
        f = np.sum(nll_terms(y[None, :], mu, np.ones_like(y)[None, :], likelihood, sig2), axis=1)
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
        Number of local optimisations (one batch of :func:`fitting.model.optimiser.minimize_bounded`) from the
        best linear starts with distinct α (≥ 0.01 apart); the likelihood in α is multimodal when sharp rings are
        weak.
    max_iter : int
        Iteration limit of the optimiser (damped Newton steps).
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
    fwd = Forward(comps, qf, Ef[None, :], background, fit_alpha, alpha_fixed, fit_blur, blur_fixed, q0, qw)
    names = fwd.names
    K = fwd.K
    w = np.ones_like(yf)

    lo, hi, _ = fwd.bounds(q_scale_bounds, blur_max)
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

    def terms(th, rows, want):
        """Half deviance (or ½χ²) of the start rows, gradient and curvature: the observed Hessian where it is
        positive definite (Newton steps), otherwise the expected information (Fisher scoring)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if not want:
                f = np.sum(nll_terms(yf, fwd.mu(th), w, likelihood, sig2), axis=1)
                return np.where(np.isfinite(f), f, np.inf), None, None
            f, g, H, F = grad_hess(fwd, th, yf, w, likelihood, sig2)
        s = np.sqrt(np.clip(np.diagonal(H, axis1=1, axis2=2), 1e-300, None))
        with np.errstate(over="ignore", invalid="ignore"):
            eig = np.linalg.eigvalsh(np.nan_to_num(H / (s[:, :, None] * s[:, None, :])))
        pd = np.all(np.isfinite(H), axis=(1, 2)) & (eig[:, 0] > 1e-10)
        return f, g, np.where(pd[:, None, None], H, F)

    # all starts (distinct Q scales: the likelihood in α is multimodal when sharp rings are weak) optimised as
    # one batch; the best end point wins
    with blas_single_thread():
        opt = minimize_bounded(terms, np.array(starts), lo, hi, max_iter=max_iter, tol=tol, scale=scale)
        f_end = terms(opt.theta, np.arange(len(starts)), False)[0]
        best = int(np.argmin(f_end))
        theta = opt.theta[best]
        converged = bool(opt.converged[best])
        dec = float(opt.decrement[best])
        message = f"bounded Newton/LM ({len(starts)} starts, {opt.n_iter} iterations): "
        if converged:
            message += f"Newton decrement {dec:.2g} < {tol:g}"
        else:
            why = "no step lowers −log L" if opt.stalled[best] else f"max_iter={max_iter} reached"
            message += f"not converged: Newton decrement {dec:.3g} ≥ tol ({why})"

        # statistics at the optimum: uncertainties from the observed information over the parameters not at a
        # bound (one convention with fit_scan, which uses the expected information)
        _, _, H, F = grad_hess(fwd, theta[None, :], yf, w, likelihood, sig2)
        # a parameter the model no longer depends on (zero information: the exponent of a background whose
        # amplitude sits at 0) is not estimable, like one at a bound: no σ, and not part of the free block
        bound = at_bound(theta, lo, hi)
        stderr, cov, cov_ok = inverse_information(H, (bound | ~(np.diagonal(H[0]) > 0))[None, :])
    stderr, cov = stderr[0], cov[0]
    if not cov_ok[0]:
        converged = False
        message += "; observed information singular or not positive definite at the optimum"
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

    desc = describe(comps, background, fit_alpha, alpha_fixed, fit_blur, blur_fixed, likelihood, qf, q0, qw)
    return FitResult(
        param_names=names,
        x=theta,
        stderr=stderr,
        covariance=cov,
        at_bound=bound,
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
        information=F[0],
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


# ----------------------------------------------------------------------------------------------------------------
# Batched fit over a scan
# ----------------------------------------------------------------------------------------------------------------
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
    """Fit every profile of a scan at once (Poisson; the optimiser of :func:`fit_profile` on all pixels as one
    batch, with the expected information).

    All pixels are iterated together (:func:`fitting.model.optimiser.minimize_bounded`): per iteration one
    evaluation of μ and ∂μ/∂θ for all pixels (cubic-spline components at each pixel's α·Q), the per-pixel gradient
    and expected Fisher matrix of −log L, and a batched solve of the damped system (F + λ·diag F) δ = −g, with a
    per-pixel damping λ adapted on acceptance. Bounds (sₖ ≥ 0, A ≥ 0, α and p in their intervals) are kept by an
    active set (a parameter at a bound whose gradient points outwards is frozen for the step) followed by projection
    onto the box. Pixels leave the active set when converged. Start values: a :func:`fit_profile` of the scan's
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
    fwd = Forward(comps, qf, Ef, background, fit_alpha, alpha_fixed, False, float(blur), q0, qw)
    P, K = fwd.P, fwd.K
    lo, hi, lin = fwd.bounds(q_scale_bounds)

    n = yf.shape[0]
    th = np.broadcast_to(g_fit.x, (n, P)).copy()
    mu_g = fwd.mu(th)
    ratio = np.sum(yf * w, axis=1) / np.maximum(np.sum(mu_g * w, axis=1), 1e-300)
    th[:, lin] *= np.maximum(ratio, 1e-6)[:, None]
    # keep the background strictly positive at the start so that μ > 0 everywhere
    if background in ("power", "exp"):
        th[:, fwd.i_bg] = np.maximum(th[:, fwd.i_bg], 1e-6 * max(g_fit.x[fwd.i_bg], 1e-12))

    coef = np.ascontiguousarray(fwd.coefs(float(blur) ** 2)[0])
    i_al = fwd.i_alpha if fit_alpha else -1
    kind = BG_KIND[background]

    def kernel_terms(t_, y_, e_, w_, want):
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

    def terms(t_, rows, want):
        return kernel_terms(t_, yf[rows], Ef[rows], w[rows], want)

    opt = minimize_bounded(terms, th, lo, hi, max_iter=max_iter, tol=tol)
    th, converged, n_it = opt.theta, opt.converged, opt.n_iter

    # uncertainties and statistics at the end (all pixels)
    fh, _, F = kernel_terms(th, yf, Ef, w, True)
    bound = at_bound(th, lo, hi)
    stderr, _, _ = inverse_information(F, bound)
    # log L = −(half deviance) + log L of the saturated model Σ w (y log y − y − log y!)
    sat = np.sum(w * (np.where(yf > 0, yf * np.log(np.where(yf > 0, yf, 1.0)), 0.0) - yf - gammaln(yf + 1)), axis=1)
    ll = sat - fh
    dev = 2.0 * fh
    desc = describe(comps, background, fit_alpha, alpha_fixed, False, float(blur), "poisson", qf, q0, qw)
    return ScanFit(
        param_names=fwd.names,
        values=th.reshape(scan_shape + (P,)),
        stderr=stderr.reshape(scan_shape + (P,)),
        at_bound=bound.reshape(scan_shape + (P,)),
        converged=converged.reshape(scan_shape),
        loglike=ll.reshape(scan_shape),
        deviance=dev.reshape(scan_shape),
        n_data=np.sum(w > 0, axis=1).reshape(scan_shape),
        n_iter=n_it,
        q=q,
        used=colsel,
        description="batched Newton/LM (expected information); " + desc,
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
