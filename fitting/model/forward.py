"""The forward model μ(θ) of a radial profile, its derivatives and the likelihood terms, vectorised over pixels.

μ_i = E_i · [ Σₖ sₖ · (Iₖ ⊗ G_σb)(α · Q_i) + B(Q_i) ] (see :mod:`fitting.model`). :class:`Forward` evaluates μ and
∂μ/∂θ for parameters θ of shape (n_pix, P); the numba kernels evaluate the components' cubic splines at α·Q and,
for batched Poisson fits, the half deviance with its gradient and Fisher information in one pass.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import gammaln

from fitting.model.components import BACKGROUNDS

__all__ = ["Forward", "poisson_loglike", "poisson_terms_kernel", "spline_eval_kernel"]

POWER_BOUNDS = (0.0, 8.0)  # exponent p of A·Q^-p; diffuse/inelastic tails fall as Q^-2 … Q^-4
EXP_BOUNDS = (0.0, 50.0)  # decay k [Å] of A·exp(-k Q)


def common_grid(comps) -> tuple[np.ndarray, np.ndarray]:
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


class Forward:
    """Evaluates μ and ∂μ/∂θ for parameters θ of shape (n_pix, P) (used by the fits of this package).

    Parameters
    ----------
    comps : tuple of Component
    q : ndarray (n_q,)  [Å⁻¹]
        Fitted bins.
    exposure : ndarray (n_pix, n_q) or (1, n_q)  [pixels]
    background : {"power", "exp", "poly2", None}
    fit_alpha, fit_blur : bool
    alpha_fixed : float  [1]
    blur_fixed : float  [Å⁻¹]
    q0, qw : float  [Å⁻¹]
        Reference Q and half width of the background.
    """

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
        self.grid, self.V = common_grid(comps)  # (n_c,), (n_c, K)
        self._coef_cache: dict[float, tuple] = {}

    def bounds(self, q_scale_bounds, blur_max: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Box bounds (lo, hi) of θ and the mask of parameters μ is linear in: sₖ ≥ 0, α in ``q_scale_bounds``,
        σ_b² in [0, ``blur_max``²] [Å⁻²], A ≥ 0 and the shape p or k in its interval."""
        lo = np.full(self.P, -np.inf)
        hi = np.full(self.P, np.inf)
        lin = np.zeros(self.P, bool)
        lo[: self.K] = 0.0
        lin[: self.K] = True
        if self.fit_alpha:
            lo[self.i_alpha], hi[self.i_alpha] = q_scale_bounds
        if self.fit_blur:
            lo[self.i_blur], hi[self.i_blur] = 0.0, blur_max**2
        if self.background in ("power", "exp"):
            lo[self.i_bg] = 0.0
            lin[self.i_bg] = True
            lo[self.i_bg + 1], hi[self.i_bg + 1] = POWER_BOUNDS if self.background == "power" else EXP_BOUNDS
        elif self.background == "poly2":
            lin[self.i_bg :] = True
        return lo, hi, lin

    # -- components -------------------------------------------------------------------------------------------
    def coefs(self, var: float):
        """Cubic-spline coefficients (4, n_c − 1, K) of the (blurred) components and of ∂/∂var (or None)."""
        key = float(var)
        hit = self._coef_cache.get(key)
        if hit is not None:
            return hit
        if var > 0 or self.fit_blur:
            vb, dvb = fft_blur(self.grid, self.V, var)
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
            c, cv = self.coefs(u)
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


@numba.njit(cache=True, inline="always")
def _uniform(grid):  # pragma: no cover (numba)
    """Number of nodes, first node and spacing of a uniform grid."""
    m = grid.shape[0]
    return m, grid[0], (grid[m - 1] - grid[0]) / (m - 1)


@numba.njit(cache=True, inline="always")
def _cell(x, grid, g0, dg, m):  # pragma: no cover (numba)
    """Index i of the spline piece holding x on the uniform grid (clamped to the end pieces) and x − grid[i]."""
    i = int(np.floor((x - g0) / dg))
    if i < 0:
        i = 0
    if i > m - 2:
        i = m - 2
    return i, x - grid[i]


@numba.njit(cache=True, inline="always")
def _piece(coef, i, k, t):  # pragma: no cover (numba)
    """Value and derivative of spline k's piece i at offset t."""
    c0 = coef[0, i, k]
    c1 = coef[1, i, k]
    c2 = coef[2, i, k]
    return ((c0 * t + c1) * t + c2) * t + coef[3, i, k], (3.0 * c0 * t + 2.0 * c1) * t + c2


def _spline_eval_impl(coef, grid, q, alpha, out_val, out_dalpha, deriv):  # pragma: no cover (numba)
    """Evaluate K cubic splines (PPoly coefficients ``coef`` (4, m − 1, K) on the uniform ``grid`` (m,)) at
    ``alpha[p]·q[j]`` for every pixel p and bin j; write values to ``out_val`` (n, n_q, K) and, if ``deriv``,
    ∂/∂α = q·I'(α q) to ``out_dalpha``. Points outside the grid give NaN. NumPy twin:
    ``tests.reference.spline_eval_reference``."""
    n = alpha.shape[0]
    nq = q.shape[0]
    K = coef.shape[2]
    m, g0, dg = _uniform(grid)
    tol = 1e-9 * dg
    for p in numba.prange(n):
        for j in range(nq):
            x = alpha[p] * q[j]
            i, t = _cell(x, grid, g0, dg, m)
            outside = x < g0 - tol or x > grid[m - 1] + tol
            for k in range(K):
                if outside:
                    out_val[p, j, k] = np.nan
                    if deriv:
                        out_dalpha[p, j, k] = np.nan
                    continue
                v, dv = _piece(coef, i, k, t)
                out_val[p, j, k] = v
                if deriv:
                    out_dalpha[p, j, k] = dv * q[j]


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


BG_KIND = {None: 0, "power": 1, "exp": 2, "poly2": 3}


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
    m, g0, dg = _uniform(grid)
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
            i, t = _cell(x, grid, g0, dg, m)
            s = 0.0
            ds = 0.0
            for k in range(K):
                v, dv = _piece(coef, i, k, t)
                J[k] = e * v
                s += theta[p, k] * v
                if ia >= 0:
                    ds += theta[p, k] * dv
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


def fft_blur(q: np.ndarray, v: np.ndarray, var: float) -> tuple[np.ndarray, np.ndarray]:
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


MU_FLOOR = 1e-300


def nll_terms(y, mu, w, likelihood, sig2):
    """Per-bin −log L up to a constant that vanishes at μ = y (half the deviance contribution)."""
    if likelihood == "poisson":
        m = np.maximum(mu, MU_FLOOR)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = m - y + np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / m), 0.0)
        return w * t
    return w * 0.5 * (y - mu) ** 2 / sig2


def grad_weights(y, mu, w, likelihood, sig2):
    """∂(−log L)/∂μ per bin."""
    if likelihood == "poisson":
        return w * (1.0 - y / np.maximum(mu, MU_FLOOR))
    return w * (mu - y) / sig2


def curv_weights(y, mu, w, likelihood, sig2, expected: bool):
    """∂²(−log L)/∂μ² per bin (observed) or its expectation (Fisher)."""
    if likelihood == "poisson":
        m = np.maximum(mu, MU_FLOOR)
        with np.errstate(over="ignore"):  # y / m / m: 0 where y = 0 even when m² underflows
            return w * (1.0 / m if expected else y / m / m)
    return w / sig2


def grad_hess(fwd: Forward, theta, y, w, likelihood, sig2):
    """−log L (n,), its gradient (n, P), observed Hessian (n, P, P) and expected information (n, P, P) at θ
    (n, P); second derivatives of μ by central differences of ∂μ in the nonlinear parameters."""
    n = theta.shape[0]
    mu, jac = fwd.mu_jac(theta)
    f = np.sum(nll_terms(y, mu, w, likelihood, sig2), axis=1)
    gw = grad_weights(y, mu, w, likelihood, sig2)
    g = np.einsum("nqp,nq->np", jac, gw)
    jt = np.swapaxes(jac, 1, 2)
    H = np.matmul(jt * np.broadcast_to(curv_weights(y, mu, w, likelihood, sig2, False), mu.shape)[:, None, :], jac)
    F = np.matmul(jt * np.broadcast_to(curv_weights(y, mu, w, likelihood, sig2, True), mu.shape)[:, None, :], jac)
    # ∂²μ: nonzero only for columns that are nonlinear (α, blur, background shape) and their cross terms
    nonlin = [i for i in (fwd.i_alpha, fwd.i_blur) if i is not None]
    if fwd.background in ("power", "exp"):
        nonlin.append(fwd.i_bg + 1)
    for i in nonlin:
        h = 1e-4 * np.maximum(np.abs(theta[:, i]), 1e-3) if fwd.names[i] != "blur_var" else np.full(n, 1e-8)
        tp, tm = theta.copy(), theta.copy()
        tp[:, i] += h
        tm[:, i] -= h
        _, jp = fwd.mu_jac(tp)
        _, jm = fwd.mu_jac(tm)
        d2 = (jp - jm) / (2 * h[:, None, None])  # (n, n_q, P): ∂²μ/∂θ_i∂θ_j
        row = np.einsum("nqp,nq->np", d2, gw)
        H[:, i, :] += row
        H[:, :, i] += row
        H[:, i, i] -= row[:, i]  # added twice above
    H = 0.5 * (H + np.swapaxes(H, 1, 2))
    return f, g, H, F


def describe(comps, background, fit_alpha, alpha_fixed, fit_blur, blur_fixed, likelihood, qf, q0, qw) -> str:
    """The forward model in words, with its settings."""
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
