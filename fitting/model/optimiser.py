"""The one bounded optimiser of fitting: damped Newton / Levenberg–Marquardt over a batch of problems.

Every likelihood fit of the package goes through :func:`minimize_bounded` and reports its uncertainties through
:func:`inverse_information` — :func:`fitting.model.fit_profile` (one profile, several starts as a batch),
:func:`fitting.model.fit_scan` (every pixel of a scan as a batch), :mod:`fitting.crystal_fit` (a profile fit per
grid node) and :mod:`fitting.refine` (bounds, at-bound flags and uncertainties of derivative-free refinements).

Conventions (the same for all callers):

- **Bounds** are a box ``lo ≤ θ ≤ hi`` (±inf for none). A parameter at a bound whose gradient points outwards
  is frozen for the step (active set); every trial point is projected onto the box.
- **Objective** is half the Poisson deviance (or any −log L up to a constant) per problem; the caller's
  ``terms`` returns it with its gradient and a positive semi-definite curvature matrix (the expected Fisher
  information, or the observed Hessian where that is positive definite).
- **Steps** solve (M + λ·diag M) δ = −g on the free parameters, with a per-problem damping λ adapted by
  Nielsen's rule (shrink by up to 3× after a good step, grow geometrically after a rejected one); a step is
  accepted when it lowers the objective.
- **Convergence**: the Newton decrement gᵀ M⁻¹ g over the free parameters (the change of log L still
  achievable) is below ``tol``. A problem whose damping exceeds 1e10 without progress stops as *stalled*
  (not converged).
- **Uncertainties**: 1σ = sqrt of the diagonal of the inverse information over the parameters not at a bound;
  a parameter at a bound gets 1/sqrt of its own information and is flagged (its interval is not a symmetric
  Gaussian one). A singular or indefinite information matrix gives NaN and ``ok = False``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Optimum", "active_set", "at_bound", "damped_solve", "inverse_information", "minimize_bounded"]

#: Damping λ above which a problem is declared stalled.
STALL_DAMPING = 1e10


def blas_single_thread():
    """Limit BLAS to one thread around tiny dense problems (P ≲ 10): on a loaded machine OpenBLAS's spinning
    threads make each small solve many times slower. No-op when threadpoolctl is unavailable."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def at_bound(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, rtol: float = 1e-12) -> np.ndarray:
    """Parameters that sit on a finite bound (within ``rtol`` relative, at least absolute ``rtol``)."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(lo) & (theta <= lo + rtol * np.maximum(1, np.abs(lo)))) | (
            np.isfinite(hi) & (theta >= hi - rtol * np.maximum(1, np.abs(hi)))
        )


def active_set(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Parameters frozen for a step: at a bound with the gradient of the objective pointing outwards."""
    return ((theta <= lo) & (g > 0)) | ((theta >= hi) & (g < 0))


def damped_solve(F: np.ndarray, g: np.ndarray, fixed: np.ndarray, lam) -> np.ndarray:
    """Solve (F + λ diag F) δ = −g per problem with the ``fixed`` parameters frozen (δ = 0).

    Parameters
    ----------
    F : ndarray (n, P, P)
    g : ndarray (n, P)
    fixed : ndarray of bool (n, P)
    lam : float or ndarray (n,)

    Returns
    -------
    ndarray (n, P)
    """
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


def inverse_information(F: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1σ uncertainties and covariance from an information matrix, per problem.

    The block of the parameters not at a bound is inverted (scaled to unit diagonal, eigen-decomposed: robust
    to a singular block); parameters at a bound get 1/sqrt of their own information on the diagonal of the
    covariance and no correlations.

    Parameters
    ----------
    F : ndarray (n, P, P)
        Information (Hessian of −log L) at the optimum.
    bound : ndarray of bool (n, P)
        Parameters at a bound.

    Returns
    -------
    stderr : ndarray (n, P)
    covariance : ndarray (n, P, P)
        NaN where undefined.
    ok : ndarray of bool (n,)
        The free block is positive definite (all its eigenvalues > 1e-12 of the largest).
    """
    P = F.shape[-1]
    idx = np.arange(P)
    d = np.diagonal(F, axis1=1, axis2=2).copy()
    free = ~bound
    M = F * (free[:, :, None] & free[:, None, :])
    M[:, idx, idx] = np.where(free, M[:, idx, idx], 1.0)
    dm = np.diagonal(M, axis1=1, axis2=2)
    s = np.sqrt(np.where(dm > 0, dm, 1.0))
    Ms = M / (s[:, :, None] * s[:, None, :])
    vals, vecs = np.linalg.eigh(Ms)
    good = vals > 1e-12 * np.max(vals, axis=1, keepdims=True)
    inv_vals = np.where(good, 1.0 / np.where(good, vals, 1.0), np.inf)
    with np.errstate(invalid="ignore"):
        cov = np.einsum("npk,nk,nrk->npr", vecs, inv_vals, vecs) / (s[:, :, None] * s[:, None, :])
    cov = np.where(np.isfinite(cov), cov, np.nan)
    var = np.diagonal(cov, axis1=1, axis2=2)
    out = np.sqrt(np.clip(var, 0, None))
    d_ok = d > 0
    out = np.where(free, out, np.where(d_ok, 1.0 / np.sqrt(np.where(d_ok, d, 1.0)), np.nan))
    pair = free[:, :, None] & free[:, None, :]
    cov = np.where(pair, cov, np.nan)
    cov[:, idx, idx] = np.where(free, var, out**2)
    ok = np.all(good, axis=1) & np.all(np.where(free, var > 0, True), axis=1)
    return out, cov, ok


@dataclass(frozen=True, kw_only=True, eq=False)
class Optimum:
    """Result of :func:`minimize_bounded`.

    Attributes
    ----------
    theta : ndarray (n, P)
        End points, inside the box.
    converged : ndarray of bool (n,)
        Newton decrement below ``tol``.
    stalled : ndarray of bool (n,)
        Damping exceeded ``STALL_DAMPING``: no step lowers the objective.
    decrement : ndarray (n,)
        Last Newton decrement (the achievable decrease of the objective) [same units as the objective].
    n_iter : int
        Iterations run (over the whole batch).
    """

    theta: np.ndarray
    converged: np.ndarray
    stalled: np.ndarray
    decrement: np.ndarray
    n_iter: int


def minimize_bounded(
    terms: Callable,
    theta0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    scale: np.ndarray | None = None,
    lam0: float = 1e-3,
) -> Optimum:
    """Minimise n independent bounded objectives at once (see the module docstring for the conventions).

    Parameters
    ----------
    terms : callable (theta (m, P), rows (m,) int, want: bool) → (f (m,), g (m, P), M (m, P, P))
        Objective, gradient and curvature of the problems ``rows`` at ``theta``; with ``want=False`` only ``f``
        is needed (return ``None`` for the others).
    theta0 : ndarray (n, P)
        Start values (projected onto the box).
    lo, hi : ndarray (P,)
        Bounds (±inf for none).
    max_iter : int
        Iterations of the batch.
    tol : float
        Newton decrement (achievable decrease of the objective) for convergence.
    scale : ndarray (P,) or None
        Typical size of each parameter; steps are computed for θ/scale (only the regularisation of nearly
        singular systems depends on it).
    lam0 : float
        Initial damping.

    Returns
    -------
    Optimum
    """
    th = np.clip(np.array(theta0, dtype=float, copy=True), lo, hi)
    n, P = th.shape
    sc = None if scale is None else np.asarray(scale, float)
    lam = np.full(n, float(lam0))
    nu = np.full(n, 2.0)
    converged = np.zeros(n, bool)
    stalled = np.zeros(n, bool)
    decrement = np.full(n, np.inf)
    n_it = 0
    for n_it in range(1, int(max_iter) + 1):  # noqa: B007
        act = np.nonzero(~converged & ~stalled)[0]
        if act.size == 0:
            break
        ta = np.ascontiguousarray(th[act])
        f, g, F = terms(ta, act, True)
        fixed = active_set(ta, lo, hi, g)
        if sc is not None:
            g = g * sc
            F = F * (sc[:, None] * sc[None, :])
        dF = np.diagonal(F, axis1=1, axis2=2)
        fixed |= dF <= 1e-300
        # full Newton decrement (λ = 0) on the free parameters: convergence test
        step0 = damped_solve(F, g, fixed, 0.0)
        dec = -np.sum(g * step0, axis=1)
        decrement[act] = dec
        done = dec < tol
        converged[act[done]] = True
        keep = ~done
        if not np.any(keep):
            continue
        act, ta, f, g, F, fixed = act[keep], ta[keep], f[keep], g[keep], F[keep], fixed[keep]
        step = damped_solve(F, g, fixed, lam[act])
        trial = np.clip(ta + (step if sc is None else step * sc), lo, hi)
        step = trial - ta if sc is None else (trial - ta) / sc
        pred = -np.sum(g * step, axis=1) - 0.5 * np.einsum("np,npr,nr->n", step, F, step)
        ft, _, _ = terms(np.ascontiguousarray(trial), act, False)
        rho = np.where(pred > 0, (f - ft) / np.where(pred > 0, pred, 1.0), -1.0)
        acc = np.isfinite(ft) & (ft <= f) & (rho > 0)
        ia, ir = act[acc], act[~acc]
        th[ia] = trial[acc]
        lam[ia] = np.maximum(lam[ia] * np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho[acc] - 1.0) ** 3), 1e-9)
        nu[ia] = 2.0
        lam[ir] *= nu[ir]
        nu[ir] *= 2.0
        stalled[act[lam[act] > STALL_DAMPING]] = True
    return Optimum(theta=th, converged=converged, stalled=stalled, decrement=decrement, n_iter=n_it)
