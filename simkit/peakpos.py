"""The project's one peak-position estimator (used by ``fitting.peaks`` and by ``simkit.synth`` for ground truth).

Estimator (binding, see the README conventions): the position of the **maximum of a local fit** to
I·Qⁿ (n = 1 by default) of a radial profile, within a window ``q_range``. The local model is a peak shape
(Gaussian or Lorentzian) plus a linear background::

    M(q) = A · g((q − μ) / w) + b₀ + b₁ · (q − q_c)

fitted by a batched Levenberg–Marquardt in NumPy over all profiles at once (no per-profile scipy call),
initialised from the argmax of the (lightly smoothed) data. The reported position is the maximum of the
whole fitted curve M(q) (peak *and* background, i.e. what one reads off the curve), not μ; with a sloping
background the two differ. Its uncertainty follows from the fit covariance through the implicit-function
theorem (M'(q*) = 0).

Failures are reported, never hidden: ``ok=False`` and ``position = NaN`` when the fit does not converge,
is singular, has a non-positive amplitude, or when the fitted maximum is not inside the window (the
maximum of M on the window lies on its edge).

This module lives in simkit (not fitting) because simkit may not import fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PeakFit", "peak_position"]

_SHAPES = ("gaussian", "lorentzian")
_N_PAR = 5  # A, mu, log w, b0, b1 (in normalised units)


@dataclass(frozen=True, kw_only=True)
class PeakFit:
    """Result of :func:`peak_position`; every array has the leading shape of the input profiles.

    Attributes
    ----------
    position : ndarray  [Å⁻¹]
        Q of the maximum of the fitted curve (peak + linear background) of I·Qⁿ; NaN where ``ok`` is False.
    position_err : ndarray  [Å⁻¹]
        One-sigma uncertainty of ``position`` from the fit covariance; NaN where ``ok`` is False.
    amplitude : ndarray  [units of I·Qⁿ]
        Height A of the peak shape above the linear background.
    width : ndarray  [Å⁻¹]
        Gaussian standard deviation or Lorentzian half width at half maximum w.
    background : ndarray  [units of I·Qⁿ]
        Linear background at the fitted maximum, b₀ + b₁ (q* − q_c).
    ok : ndarray of bool
        True where the fit converged and its maximum lies strictly inside the window.
    shape : str
        Peak shape used ("gaussian" or "lorentzian").
    q_range : tuple of float  [Å⁻¹]
        The fitting window.
    n : float
        Exponent of the I·Qⁿ weighting.
    """

    position: np.ndarray
    position_err: np.ndarray
    amplitude: np.ndarray
    width: np.ndarray
    background: np.ndarray
    ok: np.ndarray
    shape: str
    q_range: tuple[float, float]
    n: float


# ---------------------------------------------------------------------------------------------------------------
# peak shapes in normalised units: u = (x - mu) / w ; return g, dg/du, d2g/du2
def _shape(u: np.ndarray, shape: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if shape == "gaussian":
        g = np.exp(-0.5 * u * u)
        return g, -u * g, (u * u - 1.0) * g
    s = 1.0 / (1.0 + u * u)
    return s, -2.0 * u * s * s, (6.0 * u * u - 2.0) * s * s * s


def _model(x: np.ndarray, p: np.ndarray, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Model values (N, m) and Jacobian (N, m, 5) for parameters p (N, 5) on x (m,)."""
    A, mu, lw, b0, b1 = (p[:, k : k + 1] for k in range(_N_PAR))
    w = np.exp(lw)
    u = (x[None, :] - mu) / w
    g, dg, _ = _shape(u, shape)
    f = A * g + b0 + b1 * x[None, :]
    J = np.empty(f.shape + (_N_PAR,))
    J[..., 0] = g
    J[..., 1] = -A * dg / w  # d/dmu
    J[..., 2] = -A * dg * u  # d/dlog w = w d/dw ; du/dw = -u/w
    J[..., 3] = 1.0
    J[..., 4] = x[None, :]
    return f, J


def _lm(x, y, wt, p, shape, max_iter, tol):
    """Batched Levenberg–Marquardt; returns parameters, converged flag, J^T W J at the solution."""
    N = y.shape[0]
    lam = np.full(N, 1e-3)
    f, J = _model(x, p, shape)
    r = (y - f) * wt
    cost = (r * r).sum(axis=1)
    active = np.ones(N, dtype=bool)
    converged = np.zeros(N, dtype=bool)
    eye = np.eye(_N_PAR)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Jw = J[idx] * wt[idx, :, None]
        JwT = Jw.transpose(0, 2, 1)
        H = JwT @ Jw
        gvec = (JwT @ r[idx][..., None])[..., 0]
        diag = np.diagonal(H, axis1=1, axis2=2)
        Hd = H + lam[idx, None, None] * (diag[:, :, None] * eye + 1e-12 * eye)
        try:
            step = np.linalg.solve(Hd, gvec[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([_safe_solve(h, gv) for h, gv in zip(Hd, gvec)])
        p_new = p[idx] + step
        p_new[:, 2] = np.clip(p_new[:, 2], np.log(1e-3), np.log(20.0))
        f_new, J_new = _model(x, p_new, shape)
        r_new = (y[idx] - f_new) * wt[idx]
        cost_new = (r_new * r_new).sum(axis=1)
        good = np.isfinite(cost_new) & (cost_new <= cost[idx])
        gi = idx[good]
        rel = (cost[gi] - cost_new[good]) / np.maximum(cost[gi], 1e-300)
        p[gi] = p_new[good]
        f[gi], J[gi], r[gi], cost[gi] = f_new[good], J_new[good], r_new[good], cost_new[good]
        lam[gi] = np.maximum(lam[gi] * 0.3, 1e-9)
        bi = idx[~good]
        lam[bi] = lam[bi] * 10.0
        small_step = np.max(np.abs(step[good]), axis=1) < tol if good.any() else np.zeros(0, dtype=bool)
        done = gi[(rel < tol * tol) | small_step]
        converged[done] = True
        active[done] = False
        stuck = bi[lam[bi] > 1e10]
        converged[stuck] = True  # cannot improve further: at a (local) minimum within numerical precision
        active[stuck] = False
    Jw = J * wt[..., None]
    H = Jw.transpose(0, 2, 1) @ Jw
    return p, converged, H, cost


def _safe_solve(h, g):
    try:
        return np.linalg.solve(h, g[:, None])[:, 0]
    except np.linalg.LinAlgError:
        return np.zeros_like(g)


def _maximum(p, shape, grid):
    """Maximum of the fitted curve on x in [-1, 1]: coarse grid then Newton; returns x*, interior flag."""
    A, mu, lw, b0, b1 = (p[:, k : k + 1] for k in range(_N_PAR))
    w = np.exp(lw)
    g, _, _ = _shape((grid[None, :] - mu) / w, shape)
    M = A * g + b1 * grid[None, :]
    k = np.argmax(M, axis=1)
    interior = (k > 0) & (k < grid.size - 1)
    xs = grid[k].astype(float)
    h = grid[1] - grid[0]
    for _ in range(8):
        u = (xs - mu[:, 0]) / w[:, 0]
        _, dg, d2g = _shape(u, shape)
        d1 = A[:, 0] * dg / w[:, 0] + b1[:, 0]
        d2 = A[:, 0] * d2g / (w[:, 0] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            dx = np.where(d2 < 0, -d1 / d2, 0.0)
        xs = xs + np.clip(np.nan_to_num(dx), -h, h)
    u = (xs - mu[:, 0]) / w[:, 0]
    _, dg, d2g = _shape(u, shape)
    d2 = A[:, 0] * d2g / (w[:, 0] ** 2)
    interior &= (d2 < 0) & (np.abs(xs) < 1.0)
    return xs, interior


def _position_gradient(xs, p, shape):
    """d x* / d p from M'(x*; p) = 0 (implicit-function theorem); shape (N, 5)."""
    A, mu, lw = p[:, 0], p[:, 1], p[:, 2]
    w = np.exp(lw)
    u = (xs - mu) / w
    _, dg, d2g = _shape(u, shape)
    F_x = A * d2g / w**2  # dF/dx with F = M'(x) = A g'(u)/w + b1
    dF = np.empty((xs.size, _N_PAR))
    dF[:, 0] = dg / w
    dF[:, 1] = -A * d2g / w**2
    # d/dlog w of (A g'(u)/w): u depends on w as -u per log w; 1/w gives -1
    dF[:, 2] = A / w * (-d2g * u - dg)
    dF[:, 3] = 0.0
    dF[:, 4] = 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return -dF / F_x[:, None]


def peak_position(
    q: np.ndarray,
    intensity: np.ndarray,
    q_range: tuple[float, float],
    *,
    n: float = 1.0,
    sigma: np.ndarray | None = None,
    shape: str = "gaussian",
    max_iter: int = 60,
    chunk: int = 65536,
) -> PeakFit:
    """Position of the SRO peak: the maximum of a local peak + linear-background fit to I·Qⁿ.

    Parameters
    ----------
    q : array_like, shape (n_q,)  [Å⁻¹]
        Bin centres of the radial profile (Q = 1/d), increasing.
    intensity : array_like, shape (..., n_q)  [counts or arbitrary]
        Radial profiles I(Q) (not yet multiplied by Qⁿ); leading dimensions are vectorised. NaN bins
        (empty bins of ``simkit.radial``) are ignored.
    q_range : tuple of float  [Å⁻¹]
        Fitting window (q_min, q_max); at least 6 finite bins must lie inside it.
    n : float
        Exponent of the weighting I·Qⁿ (the study uses n = 1).
    sigma : array_like or None, shape like ``intensity``  [units of I]
        One-sigma uncertainty of I (e.g. ``RadialProfiles.sem_poisson``); it is multiplied by Qⁿ with the
        data. When given, the fit is weighted by 1/σ² and the covariance is taken as absolute; when None,
        the fit is unweighted and the covariance is scaled by the residual variance.
    shape : {"gaussian", "lorentzian"}
        Peak shape g; ``width`` is the Gaussian standard deviation or the Lorentzian HWHM.
    max_iter : int
        Maximum Levenberg–Marquardt iterations.
    chunk : int
        Number of profiles fitted together (bounds memory: ≈ chunk × window bins × 5 × 8 bytes × a few).

    Returns
    -------
    PeakFit
        ``position`` [Å⁻¹], ``position_err`` [Å⁻¹], ``amplitude`` [I·Qⁿ], ``width`` [Å⁻¹], ``background``
        [I·Qⁿ], ``ok`` (bool). Where ``ok`` is False (non-convergence, singular fit, amplitude ≤ 0,
        maximum not strictly inside ``q_range``, too few finite bins) position and position_err are NaN.

    Raises
    ------
    ValueError
        Bad ``q``/``intensity`` shapes, a window with fewer than 6 bins, an unknown ``shape``.
    """
    q = np.asarray(q, dtype=float)
    I = np.asarray(intensity, dtype=float)
    if q.ndim != 1 or q.size < 6:
        raise ValueError(f"q has shape {q.shape}: give the 1-D bin centres [Å⁻¹] (at least 6)")
    if I.shape[-1:] != q.shape:
        raise ValueError(f"intensity has shape {I.shape}: its last axis must match q (n_q={q.size})")
    if shape not in _SHAPES:
        raise ValueError(f"shape={shape!r}: choose one of {_SHAPES}")
    try:
        qmin, qmax = (float(v) for v in q_range)
    except (TypeError, ValueError):
        raise ValueError(f"q_range={q_range!r}: give (q_min, q_max) [Å⁻¹]") from None
    if not (np.isfinite(qmin) and np.isfinite(qmax) and qmax > qmin):
        raise ValueError(f"q_range={q_range!r}: need finite q_min < q_max [Å⁻¹]")
    sel = np.flatnonzero((q >= qmin) & (q <= qmax))
    if sel.size < 6:
        raise ValueError(
            f"q_range={q_range!r} holds {sel.size} bins of q (spacing ≈ {np.median(np.diff(q)):.4g} Å⁻¹): "
            "widen the window or use finer bins (≥ 6 needed for a 5-parameter fit)"
        )
    if sigma is not None:
        sigma = np.broadcast_to(np.asarray(sigma, dtype=float), I.shape)
    lead = I.shape[:-1]
    Iw = I.reshape(-1, q.size)[:, sel]
    sw = None if sigma is None else sigma.reshape(-1, q.size)[:, sel]
    qw = q[sel]
    qn = qw**n
    qc, hw = 0.5 * (qmin + qmax), 0.5 * (qmax - qmin)
    x = (qw - qc) / hw
    N = Iw.shape[0]
    out = {k: np.full(N, np.nan) for k in ("position", "position_err", "amplitude", "width", "background")}
    ok = np.zeros(N, dtype=bool)
    grid = np.linspace(-1.0, 1.0, 201)
    for s in range(0, N, max(1, int(chunk))):
        e = min(N, s + int(chunk))
        _fit_chunk(x, Iw[s:e] * qn, None if sw is None else sw[s:e] * qn, shape, max_iter, grid, qc, hw, out, ok, s)
    return PeakFit(
        position=out["position"].reshape(lead),
        position_err=out["position_err"].reshape(lead),
        amplitude=out["amplitude"].reshape(lead),
        width=out["width"].reshape(lead),
        background=out["background"].reshape(lead),
        ok=ok.reshape(lead),
        shape=shape,
        q_range=(qmin, qmax),
        n=float(n),
    )


def _fit_chunk(x, y, sig, shape, max_iter, grid, qc, hw, out, ok, s):
    N, m = y.shape
    finite = np.isfinite(y)
    if sig is not None:
        finite &= np.isfinite(sig) & (sig > 0)
    enough = finite.sum(axis=1) >= 6
    scale = np.nanmax(np.where(finite, np.abs(y), np.nan), axis=1, initial=0.0) if m else np.zeros(N)
    enough &= np.isfinite(scale) & (scale > 0)
    scale = np.where(enough, scale, 1.0)
    yn = np.where(finite, y, 0.0) / scale[:, None]
    if sig is None:
        wt = finite.astype(float)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            wt = np.where(finite, scale[:, None] / np.where(finite, sig, 1.0), 0.0)
    # initial guess: 3-point smoothed argmax, linear background through the window ends
    ys = yn.copy()
    ys[:, 1:-1] = (yn[:, :-2] + yn[:, 1:-1] + yn[:, 2:]) / 3.0
    ys = np.where(finite, ys, -np.inf)
    k = np.argmax(ys, axis=1)
    e0 = np.argmax(finite, axis=1)
    e1 = m - 1 - np.argmax(finite[:, ::-1], axis=1)
    rows = np.arange(N)
    y0, y1 = yn[rows, e0], yn[rows, e1]
    x0, x1 = x[e0], x[e1]
    with np.errstate(divide="ignore", invalid="ignore"):
        b1 = np.where(x1 > x0, (y1 - y0) / (x1 - x0), 0.0)
    b0 = y0 - b1 * x0
    A0 = yn[rows, k] - (b0 + b1 * x[k])
    A0 = np.where(A0 > 0, A0, 0.1)
    p = np.stack([A0, x[k], np.full(N, np.log(0.4)), b0, b1], axis=1)
    idx = np.flatnonzero(enough)
    if idx.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        p_i, conv, H, cost = _lm(x, yn[idx], wt[idx], p[idx], shape, max_iter, 1e-7)
        good = conv & np.all(np.isfinite(p_i), axis=1) & (p_i[:, 0] > 0)
        xs, interior = _maximum(p_i, shape, grid)
        good &= interior
        try:
            cov = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            cov = np.stack([_safe_inv(h) for h in H])
        if sig is None:
            dof = np.maximum(wt[idx].sum(axis=1) - _N_PAR, 1.0)
            cov = cov * (cost / dof)[:, None, None]
        grad = _position_gradient(xs, p_i, shape)
        var = np.einsum("ni,nij,nj->n", grad, cov, grad)
        good &= np.isfinite(var) & (var >= 0)
        bg = p_i[:, 3] + p_i[:, 4] * xs
    gi = idx[good]
    ok[s + gi] = True
    out["position"][s + gi] = qc + hw * xs[good]
    out["position_err"][s + gi] = hw * np.sqrt(var[good])
    out["amplitude"][s + idx] = p_i[:, 0] * scale[idx]
    out["width"][s + idx] = hw * np.exp(p_i[:, 2])
    out["background"][s + idx] = bg * scale[idx]


def _safe_inv(h):
    try:
        return np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return np.full_like(h, np.nan)
