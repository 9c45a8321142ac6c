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
from numba import njit, prange

from simkit.results import ResultMixin
from structures.checks import check_positive, mrad_to_q

__all__ = ["PeakFit", "peak_position", "sro_peak_position", "sro_width", "sro_window"]

_SHAPES = ("gaussian", "lorentzian")
_N_PAR = 5  # A, mu, log w, b0, b1 (in normalised units)


@dataclass(frozen=True, kw_only=True)
class PeakFit(ResultMixin):
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

    _units = {"position": "Å⁻¹", "width": "Å⁻¹", "amplitude": "I·Qⁿ", "background": "I·Qⁿ"}

    @property
    def message(self) -> str:
        """How many profiles gave a peak inside the window."""
        ok = np.asarray(self.ok)
        return (
            f"{self.shape} peak of I·Q^{self.n:g} in {self.q_range[0]:.3f}–{self.q_range[1]:.3f} Å⁻¹: "
            f"{int(np.count_nonzero(ok))} of {ok.size} fits inside the window"
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """Profiles without a peak inside the window."""
        ok = np.asarray(self.ok)
        bad = ok.size - int(np.count_nonzero(ok))
        return (f"{bad} of {ok.size} profiles: no converged maximum strictly inside the window (NaN)",) if bad else ()

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Position, amplitude, width and background by name."""
        return {
            "position": self.position,
            "amplitude": self.amplitude,
            "width": self.width,
            "background": self.background,
        }

    @property
    def stderr(self) -> dict[str, np.ndarray]:
        """1σ of the position (fit covariance); the other values carry none (NaN)."""
        nan = np.full(np.shape(self.position), np.nan)
        return {"position": self.position_err, "amplitude": nan, "width": nan, "background": nan}


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
    qmin, qmax = _check_common(q, I, q_range, shape, 0, min_bins=6)
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


# ---------------------------------------------------------------------------------------------------------------
# The SRO-peak estimator: a peak + constant background fitted in a window centred on the peak.
#
# Why a second entry point: an amorphous SRO hump seen through a 2 mrad probe is broad (Gaussian σ ≈ 0.07–0.16 Å⁻¹,
# as wide as the whole 0.22–0.42 Å⁻¹ search window) and shallow (I·Q changes by ≈ 15 % across the window). A
# linear background is then degenerate with the peak position (a slope moves the maximum of the curve as much as μ
# does), so the free five-parameter fit of ``peak_position`` is noise-dominated and fails for about half of the
# pixels at 10⁵ e/pattern, preferentially those whose noise pulls the maximum to a window edge (a biased
# selection). In a window *centred on the peak* a constant background is orthogonal to a shift, and the fit is
# stable. ``peak_position`` stays the estimator for narrow windows around sharp peaks (Bragg rings, calibration).
_MIN_BINS_SRO = 8
_GRID_MU = 12
_GRID_W = 6


@njit(cache=True)
def _sro_model(x, P, mu, lw, C, lor, J):
    """Peak + constant in the parametrisation (P, μ, log w, C): M = C w² (g(u) − 1) + P with u = (q − μ)/w.

    P is the curve's top (A + b₀), C = A/w² its curvature there; the Gaussian–parabola limit w → ∞ is then a
    flat direction of log w only, not a valley in which A → ∞ and b₀ → −∞ together (which stalls the fit).
    Fills J[:, 0..3] = d/d(P, μ, log w, C); returns the model values.
    """
    w = np.exp(lw)
    w2 = w * w
    m = x.size
    f = np.empty(m)
    for j in range(m):
        d = x[j] - mu
        u = d / w
        if lor:
            g = 1.0 / (1.0 + u * u)
            dg = -2.0 * u * g * g
        else:
            g = np.exp(-0.5 * u * u)
            dg = -u * g
        gm1 = g - 1.0
        f[j] = C * w2 * gm1 + P
        J[j, 0] = 1.0
        J[j, 1] = -C * w * dg
        J[j, 2] = C * w2 * (2.0 * gm1 - u * dg)
        J[j, 3] = w2 * gm1
    return f


@njit(cache=True)
def _solve4(H, g):
    """Solve the 4×4 SPD system H s = g by Cholesky; returns (s, ok)."""
    L = np.zeros((4, 4))
    for i in range(4):
        for k in range(i + 1):
            v = H[i, k]
            for p in range(k):
                v -= L[i, p] * L[k, p]
            if i == k:
                if v <= 0.0:
                    return np.zeros(4), False
                L[i, i] = np.sqrt(v)
            else:
                L[i, k] = v / L[k, k]
    z = np.zeros(4)
    for i in range(4):
        v = g[i]
        for p in range(i):
            v -= L[i, p] * z[p]
        z[i] = v / L[i, i]
    s = np.zeros(4)
    for i in range(3, -1, -1):
        v = z[i]
        for p in range(i + 1, 4):
            v -= L[p, i] * s[p]
        s[i] = v / L[i, i]
    return s, True


@njit(cache=True)
def _grid_start(x, y, wt, lo_w, hi_w, lor):
    """Best (P, μ, log w, C) on a (μ, w) grid with P, C solved linearly; C > 0 (a peak, not a dip) required."""
    m = x.size
    best = np.inf
    out = np.array([np.nan, np.nan, np.nan, np.nan])
    S1 = 0.0
    Sy = 0.0
    for j in range(m):
        S1 += wt[j]
        Sy += wt[j] * y[j]
    n_w = 1 if hi_w <= lo_w else _GRID_W
    for a in range(n_w):
        w = lo_w * (hi_w / lo_w) ** (a / max(n_w - 1, 1))
        w2 = w * w
        for k in range(_GRID_MU):
            mu = x[0] + (x[m - 1] - x[0]) * (k + 0.5) / _GRID_MU
            Sgg = 0.0
            Sg = 0.0
            Sgy = 0.0
            for j in range(m):
                u = (x[j] - mu) / w
                g = (1.0 / (1.0 + u * u) if lor else np.exp(-0.5 * u * u)) - 1.0
                g *= w2
                Sgg += wt[j] * g * g
                Sg += wt[j] * g
                Sgy += wt[j] * g * y[j]
            det = Sgg * S1 - Sg * Sg
            if det <= 1e-300 * max(Sgg * S1, 1e-300):
                continue
            C = (Sgy * S1 - Sg * Sy) / det
            if C <= 0.0:
                continue
            P = (Sgg * Sy - Sg * Sgy) / det
            chi = -(C * Sgy + P * Sy)  # χ² up to the constant Σ wt y²
            if chi < best:
                best = chi
                out[0], out[1], out[2], out[3] = P, mu, np.log(w), C
    return out


@njit(cache=True)
def _lm4(x, y, wt, p, lo_lw, hi_lw, lor, max_iter, fix_w):
    """Levenberg–Marquardt polish of (P, μ, log w, C); returns p, cost, converged, H = JᵀWJ."""
    m = x.size
    J = np.empty((m, 4))
    f = _sro_model(x, p[0], p[1], p[2], p[3], lor, J)
    cost = 0.0
    for j in range(m):
        r = y[j] - f[j]
        cost += wt[j] * r * r
    lam = 1e-3
    conv = False
    Jn = np.empty((m, 4))
    H = np.zeros((4, 4))
    for _ in range(max_iter):
        H[:] = 0.0
        g = np.zeros(4)
        for j in range(m):
            r = y[j] - f[j]
            for a in range(4):
                g[a] += wt[j] * J[j, a] * r
                for b in range(a + 1):
                    H[a, b] += wt[j] * J[j, a] * J[j, b]
        for a in range(4):
            for b in range(a):
                H[b, a] = H[a, b]
        Hd = H.copy()
        for a in range(4):
            Hd[a, a] = H[a, a] * (1.0 + lam) + 1e-12
        # active set: a width at its bound whose descent direction points outwards stays fixed
        if fix_w or (p[2] >= hi_lw - 1e-12 and g[2] > 0.0) or (p[2] <= lo_lw + 1e-12 and g[2] < 0.0):
            for a in range(4):
                Hd[2, a] = 0.0
                Hd[a, 2] = 0.0
            Hd[2, 2] = 1.0
            g[2] = 0.0
        s, ok = _solve4(Hd, g)
        if not ok:
            lam *= 10.0
            if lam > 1e10:
                break
            continue
        q = p + s
        q[2] = min(max(q[2], lo_lw), hi_lw)
        fn = _sro_model(x, q[0], q[1], q[2], q[3], lor, Jn)
        cn = 0.0
        for j in range(m):
            r = y[j] - fn[j]
            cn += wt[j] * r * r
        if np.isfinite(cn) and cn <= cost:
            rel = (cost - cn) / max(cost, 1e-300)
            step = 0.0
            for a in range(4):
                step = max(step, abs(s[a]))
            p = q
            f[:] = fn
            J[:] = Jn
            cost = cn
            lam = max(lam * 0.3, 1e-9)
            if rel < 1e-10 or step < 1e-8 or (abs(s[1]) < 1e-8 and rel < 1e-6):  # μ settled
                conv = True
                break
        else:
            lam *= 10.0
            if lam > 1e10:
                conv = True  # no downhill step left: at a minimum within numerical precision
                break
    H[:] = 0.0
    for j in range(m):
        for a in range(4):
            for b in range(4):
                H[a, b] += wt[j] * J[j, a] * J[j, b]
    return p, cost, conv, H


@njit(cache=True)
def _window_fraction(q, j, c, half):
    """Fraction of bin j (extent: half-way to its neighbours) inside [c − half, c + half]; edge bins enter with
    this weight so that the window, and with it the fit, moves continuously with c (no jumps by whole bins)."""
    m = q.size
    lo = q[j] - 0.5 * (q[j] - q[j - 1]) if j > 0 else q[j] - 0.5 * (q[1] - q[0])
    hi = q[j] + 0.5 * (q[j + 1] - q[j]) if j < m - 1 else q[j] + 0.5 * (q[m - 1] - q[m - 2])
    a = max(lo, c - half)
    b = min(hi, c + half)
    return max(0.0, (b - a) / (hi - lo))


@njit(cache=True, parallel=True)
def _k_sro(q, y, wt, qmin, qmax, halves, widths, lor, max_recentre, max_iter, out, ok):
    """Per profile i: start at the smoothed argmax in [qmin, qmax]; fit peak + constant in [c − h_i, c + h_i]
    (width w_i fixed, or fitted where w_i ≤ 0), recentre c on the fitted μ until it moves < 1e-5 Å⁻¹.
    out[:, 0..6] = μ, var(μ) (absolute), A, w, b₀, cost, n_bins."""
    N, m = y.shape
    for i in prange(N):
        half = halves[i]
        width = widths[i]
        # start: argmax of a 5-bin running mean inside the search range
        best = -np.inf
        c = np.nan
        for j in range(m):
            if q[j] < qmin or q[j] > qmax:
                continue
            s = 0.0
            n = 0
            for d in range(-2, 3):
                jj = j + d
                if 0 <= jj < m and np.isfinite(y[i, jj]) and wt[i, jj] > 0:
                    s += y[i, jj]
                    n += 1
            if n >= 3 and s / n > best:
                best = s / n
                c = q[j]
        if not np.isfinite(c):
            continue
        p = np.array([np.nan, np.nan, np.nan, np.nan])
        good = False
        for it in range(max_recentre + 1):
            nb = 0
            for j in range(m):
                if _window_fraction(q, j, c, half) > 0.0 and np.isfinite(y[i, j]) and wt[i, j] > 0:
                    nb += 1
            if nb < _MIN_BINS_SRO:
                good = False
                break
            x = np.empty(nb)
            yy = np.empty(nb)
            ww = np.empty(nb)
            k = 0
            for j in range(m):
                fr = _window_fraction(q, j, c, half)
                if fr > 0.0 and np.isfinite(y[i, j]) and wt[i, j] > 0:
                    x[k], yy[k], ww[k] = q[j], y[i, j], wt[i, j] * fr
                    k += 1
            fix_w = width > 0.0
            lo_w, hi_w = (width, width) if fix_w else (0.1 * half, 2.0 * half)
            if it == 0 or not np.isfinite(p[0]):
                p = _grid_start(x, yy, ww, lo_w, hi_w, lor)
                if not np.isfinite(p[0]):
                    good = False
                    break
            p, cost, conv, H = _lm4(x, yy, ww, p, np.log(lo_w), np.log(hi_w), lor, max_iter, fix_w)
            good = conv and p[3] > 0 and np.isfinite(p[1])
            if not good:
                break
            shift = p[1] - c
            c = p[1]
            if abs(shift) < 1e-5 or c < qmin or c > qmax:
                break
        if not good:
            continue
        if width > 0.0:  # fixed width: the covariance is that of (P, μ, C) only
            for a in range(4):
                H[2, a] = 0.0
                H[a, 2] = 0.0
            H[2, 2] = 1.0
        # covariance of mu: (H⁻¹)[1, 1] by solving H v = e_1
        e1 = np.zeros(4)
        e1[1] = 1.0
        v, okh = _solve4(H, e1)
        if not okh:
            continue
        w = np.exp(p[2])
        out[i, 0] = p[1]
        out[i, 1] = v[1]
        out[i, 2] = p[3] * w * w  # A = C w²
        out[i, 3] = w
        out[i, 4] = p[0] - p[3] * w * w  # b₀ = P − A
        out[i, 5] = cost
        out[i, 6] = nb
        ok[i] = qmin < p[1] < qmax and v[1] >= 0.0 and x[0] < p[1] < x[nb - 1]


#: Window half width = _HALF_FACTOR × peak width, clipped to _HALF_LIMITS [Å⁻¹] (see :func:`sro_width`).
_HALF_FACTOR = 1.2
_HALF_LIMITS = (0.05, 0.15)


def _check_common(q, I, q_range, shape, max_recentre, min_bins=_MIN_BINS_SRO):
    """Validate the common arguments of the estimators; returns (q_min, q_max) [Å⁻¹]."""
    if q.ndim != 1 or q.size < min_bins:
        raise ValueError(f"q has shape {q.shape}: give the 1-D bin centres [Å⁻¹] (at least {min_bins})")
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
    if int(max_recentre) < 0:
        raise ValueError(f"max_recentre={max_recentre!r}: must be ≥ 0")
    return qmin, qmax


def _per_profile(name: str, value, lead: tuple, N: int) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    try:
        v = np.broadcast_to(v, lead).reshape(N)
    except ValueError:
        raise ValueError(
            f"{name} has shape {v.shape}: give a scalar or an array of the profiles' shape {lead}"
        ) from None
    if not np.all(np.isfinite(v) & (v > 0)):
        raise ValueError(f"{name}={value!r}: must be positive and finite [Å⁻¹]")
    return v.astype(float)


def _fit_centred(q, I, qmin, qmax, widths, halves, n, sigma, lor, max_recentre, max_iter):
    """Normalise the rows of I·Qⁿ and run the centred-window kernel; widths ≤ 0 are fitted."""
    y = I.reshape(-1, q.size) * q**n
    if sigma is None:
        wt = np.where(np.isfinite(y), 1.0, 0.0)
    else:
        s = np.broadcast_to(np.asarray(sigma, dtype=float), I.shape).reshape(-1, q.size) * q**n
        with np.errstate(divide="ignore", invalid="ignore"):
            wt = np.where(np.isfinite(s) & (s > 0), 1.0 / (s * s), 0.0)
    # normalise each profile (the LM tolerances are relative, but the grid's determinant guard is absolute)
    with np.errstate(invalid="ignore"):
        scale = np.nanmax(np.where(wt > 0, np.abs(y), np.nan), axis=1, initial=0.0) if y.size else np.zeros(0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    yn = np.ascontiguousarray(y / scale[:, None])
    wn = np.ascontiguousarray(wt * scale[:, None] ** 2)
    out = np.full((yn.shape[0], 7), np.nan)
    ok = np.zeros(yn.shape[0], dtype=np.bool_)
    _k_sro(q, yn, wn, qmin, qmax, np.ascontiguousarray(halves, float), np.ascontiguousarray(widths, float), lor,
           int(max_recentre), int(max_iter), out, ok)  # fmt: skip
    return out, ok, scale


def sro_window(semiangle: float, energy: float = 300e3, *, intrinsic_width: float = 0.07) -> tuple[float, float]:
    """Peak width and window half width [Å⁻¹] of :func:`sro_peak_position` for a probe, fixed before any data.

    An SRO ring of Gaussian width w₀ seen through a probe of semi-angle α is convolved with the probe disc of
    radius Q_α = α/λ; the disc's radial projection (a semicircle law) has standard deviation Q_α/2, so the hump
    has w = √(w₀² + (Q_α/2)²). The window is h = 1.2·w, clipped to [0.05, 0.15] Å⁻¹. With w₀ = 0.07 Å⁻¹ (the
    first SRO peak of the simulated Type 1/Type 2/electrolyte models) a 2 mrad probe at 300 keV gives
    w = 0.086, h = 0.103 Å⁻¹ and a 0.15 mrad probe w = 0.070, h = 0.084 Å⁻¹. Fixing (w, h) from the probe, not
    from each noisy pixel, keeps the estimator identical for the measured pixels and for the noise-free ground
    truth of ``simkit.synth``.

    Parameters
    ----------
    semiangle : float  [mrad]
        Probe convergence semi-angle.
    energy : float  [eV]
        Beam energy.
    intrinsic_width : float  [Å⁻¹]
        Gaussian σ w₀ of the SRO peak itself.

    Returns
    -------
    (width, half_width) : float, float  [Å⁻¹]
    """
    semiangle = check_positive("semiangle", semiangle, "mrad")
    energy = check_positive("energy", energy, "eV")
    intrinsic_width = check_positive("intrinsic_width", intrinsic_width, "Å⁻¹")
    q_alpha = mrad_to_q(semiangle, energy)
    w = float(np.hypot(intrinsic_width, 0.5 * q_alpha))
    return w, float(np.clip(_HALF_FACTOR * w, *_HALF_LIMITS))


def sro_width(
    q: np.ndarray,
    intensity: np.ndarray,
    q_range: tuple[float, float] = (0.22, 0.42),
    *,
    n: float = 1.0,
    sigma: np.ndarray | None = None,
    shape: str = "gaussian",
    max_iter: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Self-consistent peak width and window of :func:`sro_peak_position` for each profile.

    Starting from a narrow window (half width 0.05 Å⁻¹, so that a sharp peak on a steep background is locked on
    first), fit peak + constant with a free width w, set the half width h = 1.2·w clipped to [0.05, 0.15] Å⁻¹,
    and repeat until h changes by < 10⁻⁴ Å⁻¹. A sharp peak (0.15 mrad, w ≈ 0.035 Å⁻¹) keeps a window of
    ±0.05 Å⁻¹, in which the background is nearly flat; a 2 mrad-broadened hump (w ≈ 0.08–0.13 Å⁻¹) grows it to
    ±0.1–0.15 Å⁻¹, wide enough to see both flanks.

    Parameters
    ----------
    q : array_like, shape (n_q,)  [Å⁻¹]
    intensity : array_like, shape (..., n_q)
        Profiles I(Q) with enough signal for a free width (noise-free, or averaged over neighbours: see
        ``fitting.peaks.sro_peak_map``).
    q_range : tuple of float  [Å⁻¹]
        Search range of the peak.
    n : float
    sigma : array_like or None
    shape : {"gaussian", "lorentzian"}
    max_iter : int
        Window updates at most.

    Returns
    -------
    (width, half_width) : ndarray, ndarray  [Å⁻¹], shape intensity.shape[:-1]
        NaN where the free fit fails.
    """
    q = np.asarray(q, dtype=float)
    I = np.asarray(intensity, dtype=float)
    qmin, qmax = _check_common(q, I, q_range, shape, 0)
    lead = I.shape[:-1]
    flat = I.reshape(-1, q.size)
    sg = None if sigma is None else np.broadcast_to(np.asarray(sigma, dtype=float), I.shape).reshape(flat.shape)
    N = flat.shape[0]
    halves = np.full(N, _HALF_LIMITS[0])
    widths = np.full(N, np.nan)
    active = np.arange(N)
    for _ in range(max(1, int(max_iter))):
        if active.size == 0:
            break
        out, ok, _ = _fit_centred(q, flat[active], qmin, qmax, np.zeros(active.size), halves[active], n,
                                  None if sg is None else sg[active], shape == "lorentzian", 6, 200)  # fmt: skip
        w = np.where(ok, out[:, 3], np.nan)
        widths[active] = w
        new = np.clip(_HALF_FACTOR * w, *_HALF_LIMITS)
        done = ~ok | (np.abs(new - halves[active]) < 1e-4)
        halves[active] = np.where(ok, new, halves[active])
        active = active[~done]
    halves = np.where(np.isfinite(widths), halves, np.nan)
    return widths.reshape(lead), halves.reshape(lead)


def sro_peak_position(
    q: np.ndarray,
    intensity: np.ndarray,
    q_range: tuple[float, float] = (0.22, 0.42),
    *,
    width: float | np.ndarray | None = None,
    half_width: float | np.ndarray | None = None,
    n: float = 1.0,
    sigma: np.ndarray | None = None,
    shape: str = "gaussian",
    max_recentre: int = 6,
) -> PeakFit:
    """Position of an SRO peak: a peak of fixed width + constant fitted to I·Qⁿ in a window centred on the peak.

    Estimator (the project's definition of the SRO peak position, used by ``fitting.peaks.sro_peak_map`` and for
    the ground truth of ``simkit.synth``): starting at the maximum of a 5-bin running mean of I·Qⁿ inside
    ``q_range``, fit M(q) = A·g((q − μ)/w) + b₀ (w fixed) to the bins within ``half_width`` of the window centre
    c (edge bins weighted by the fraction inside), move c to μ and refit until c moves by less than 10⁻⁵ Å⁻¹.
    The position is μ — the maximum of the fitted curve — and must lie strictly inside ``q_range``. The width w
    and half width h come from :func:`sro_width` (a self-consistent free fit: h = 1.2·w within [0.05, 0.15]
    Å⁻¹) unless given. The first fit starts from a grid search over μ with A ≥ 0 and b₀ solved linearly; a
    Levenberg–Marquardt polish follows (numba, parallel over profiles).

    Why not :func:`peak_position`: its linear background is degenerate with the position of a hump as broad as
    the window (a slope moves the curve's maximum as much as μ does), so on 2 mrad SRO humps at 10⁵ e/pattern
    about half of its fits fail, preferentially those whose noise pulls the maximum to a window edge — a biased
    selection. In a window centred on the peak a constant background is orthogonal to a shift; with w fixed
    (a matched filter: the centre of a symmetric peak does not depend on w) the fit has three parameters and
    sits at the Poisson Cramér–Rao bound (tests/test_peak_estimator.py). For a symmetric peak μ is its centre; for an
    asymmetric hump, the centre of the best symmetric match within ±h — what one reads off a broad hump.

    Parameters
    ----------
    q : array_like, shape (n_q,)  [Å⁻¹]
        Bin centres, increasing.
    intensity : array_like, shape (..., n_q)  [counts or arbitrary]
        Radial profiles I(Q) (not multiplied by Qⁿ); NaN bins are ignored.
    q_range : tuple of float  [Å⁻¹]
        Search range: where the peak position must lie (and where the start is looked for).
    width : float, ndarray or None  [Å⁻¹]
        Fixed peak width w (Gaussian σ / Lorentzian HWHM), a scalar or one per profile. None: from
        :func:`sro_width` of each profile itself (right for noise-free profiles; for noisy pixels give widths
        measured on averaged profiles, as ``fitting.peaks.sro_peak_map`` does).
    half_width : float, ndarray or None  [Å⁻¹]
        Half width h of the centred window; None: 1.2·w clipped to [0.05, 0.15]. Bins outside the data (NaN,
        e.g. the excluded direct beam) drop out; at least 8 finite bins are needed.
    n : float
        Exponent of the I·Qⁿ weighting (study: n = 1).
    sigma : array_like or None, shape like ``intensity``  [units of I]
        One-sigma errors of I (e.g. Poisson); the fit is then weighted and the covariance absolute. None: an
        unweighted fit with the covariance scaled by the residual variance.
    shape : {"gaussian", "lorentzian"}
    max_recentre : int
        Maximum number of recentring refits.

    Returns
    -------
    PeakFit
        ``position`` = μ [Å⁻¹], ``position_err`` [Å⁻¹] (from the covariance of the final fit), ``amplitude`` A
        [I·Qⁿ], ``width`` w [Å⁻¹], ``background`` b₀ [I·Qⁿ], ``ok``; NaN position where the fit fails, the
        automatic width fails or μ leaves the search range.

    Raises
    ------
    ValueError
        Bad shapes, a non-finite or empty ``q_range``, a non-positive ``width``/``half_width`` or one of the wrong
        shape, an unknown ``shape``.
    """
    q = np.asarray(q, dtype=float)
    I = np.asarray(intensity, dtype=float)
    qmin, qmax = _check_common(q, I, q_range, shape, max_recentre)
    lead = I.shape[:-1]
    N = int(np.prod(lead)) if lead else 1
    if width is None:
        widths, halves = sro_width(q, I, (qmin, qmax), n=n, sigma=sigma, shape=shape)
        widths, halves = widths.reshape(N), halves.reshape(N)
    else:
        widths = _per_profile("width", width, lead, N)
        halves = np.clip(_HALF_FACTOR * widths, *_HALF_LIMITS)
    if half_width is not None:
        halves = _per_profile("half_width", half_width, lead, N)
    bad = ~(np.isfinite(widths) & np.isfinite(halves))  # only where the automatic width failed
    out, ok, scale = _fit_centred(q, I, qmin, qmax, np.where(bad, 1.0, widths), np.where(bad, 1.0, halves), n,
                                  sigma, shape == "lorentzian", max_recentre, 50)  # fmt: skip
    ok &= ~bad
    var = out[:, 1]
    if sigma is None:
        dof = np.maximum(out[:, 6] - 3.0, 1.0)
        var = var * out[:, 5] / dof
    pos = np.where(ok, out[:, 0], np.nan)
    err = np.where(ok, np.sqrt(np.maximum(var, 0.0)), np.nan)
    return PeakFit(
        position=pos.reshape(lead),
        position_err=err.reshape(lead),
        amplitude=(out[:, 2] * scale).reshape(lead),
        width=np.where(ok, out[:, 3], np.nan).reshape(lead),
        background=(out[:, 4] * scale).reshape(lead),
        ok=ok.reshape(lead),
        shape=shape,
        q_range=(qmin, qmax),
        n=float(n),
    )
