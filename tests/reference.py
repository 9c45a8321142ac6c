"""Slow, obvious reference implementations used as oracles by the tests.

Each fast kernel in the package has a plain NumPy twin here. Keep these simple enough to check by eye;
never import the function under test into its own reference. Add sections; do not rewrite others'.
"""

from __future__ import annotations

import numpy as np


# ==========================================================================================================
# simkit.radial — slow, obvious radial integration of ONE pattern (twin of the numba kernels)
# ==========================================================================================================
def radial_corrected_offsets(dy, dx, ellipse_ratio, ellipse_angle):
    """Ellipse-corrected offset (x', y') [px] of detector offsets (dy, dx) [px], by explicit matrices.

    The recorded pattern is stretched by ``ellipse_ratio`` along the direction ``ellipse_angle`` [rad] (from +x =
    columns towards +y = rows); undo it: rotate that direction onto x, divide x by the ratio, rotate back.
    """
    c, s = np.cos(ellipse_angle), np.sin(ellipse_angle)
    rot = np.array([[c, -s], [s, c]])  # takes the x axis onto the stretch direction
    m = rot @ np.diag([1.0 / ellipse_ratio, 1.0]) @ rot.T
    xy = np.stack([np.asarray(dx, float), np.asarray(dy, float)], axis=-1) @ m.T
    return xy[..., 0], xy[..., 1]


def _radial_point_segment(a, b):
    """Distance of the origin from segment a–b (2-vectors)."""
    d = b - a
    t = 0.0 if d @ d == 0 else float(np.clip(-(a @ d) / (d @ d), 0.0, 1.0))
    return float(np.hypot(*(a + t * d)))


def radial_reference(
    image,
    *,
    center,
    pixel_size,
    edges,
    mask=None,
    ellipse_ratio=1.0,
    ellipse_angle=0.0,
    split_pixels=False,
    n_phi=1,
    statistic="mean",
    clip_sigma=3.0,
):
    """Radial profile of one 2-D image by looping over pixels in Python.

    Returns a dict of arrays of shape (n_phi, n_q): count, sum, mean, sem_poisson, sem_azimuthal.
    Pixel (i, j) is centred at (i, j); Q = corrected radius [px] · pixel_size; bin k = [edges[k], edges[k+1]).
    With split_pixels, a pixel spreads uniformly over [r_min, r_max] (exact nearest point of the corrected
    pixel square, farthest corner). The sector of a pixel is that of its centre's corrected azimuth in [0, 2π).
    """
    image = np.asarray(image, dtype=float)
    ny, nx = image.shape
    edges = np.asarray(edges, float)
    nq = edges.size - 1
    mask = np.ones((ny, nx), bool) if mask is None else np.asarray(mask, bool)
    values = [[[] for _ in range(nq)] for _ in range(n_phi)]
    weights = [[[] for _ in range(nq)] for _ in range(n_phi)]
    for i in range(ny):
        for j in range(nx):
            v = image[i, j]
            if not mask[i, j] or np.isnan(v):
                continue
            dy, dx = i - center[0], j - center[1]
            xc, yc = radial_corrected_offsets(dy, dx, ellipse_ratio, ellipse_angle)
            phi = np.arctan2(yc, xc) % (2 * np.pi)
            sector = min(int(np.floor(phi / (2 * np.pi) * n_phi)), n_phi - 1) if n_phi > 1 else 0
            if not split_pixels:
                q = np.hypot(xc, yc) * pixel_size
                k = int(np.searchsorted(edges, q, side="right")) - 1
                if 0 <= k < nq:
                    values[sector][k].append(v)
                    weights[sector][k].append(1.0)
                continue
            corners = [
                np.array(radial_corrected_offsets(dy + a, dx + b, ellipse_ratio, ellipse_angle))
                for a, b in [(-0.5, -0.5), (-0.5, 0.5), (0.5, 0.5), (0.5, -0.5)]
            ]
            r_max = max(np.hypot(*c) for c in corners)
            inside = abs(dy) <= 0.5 and abs(dx) <= 0.5
            r_min = 0.0 if inside else min(_radial_point_segment(corners[k], corners[(k + 1) % 4]) for k in range(4))
            qa, qb = r_min * pixel_size, r_max * pixel_size
            for k in range(nq):
                overlap = min(qb, edges[k + 1]) - max(qa, edges[k])
                if overlap > 0:
                    values[sector][k].append(v)
                    weights[sector][k].append(overlap / (qb - qa))
    out = {key: np.full((n_phi, nq), np.nan) for key in ("count", "sum", "mean", "sem_poisson", "sem_azimuthal")}
    for s in range(n_phi):
        for k in range(nq):
            v = np.array(values[s][k])
            w = np.array(weights[s][k])
            if v.size == 0:
                out["count"][s, k] = 0.0
                out["sum"][s, k] = 0.0
                continue
            keep = np.ones(v.size, bool)
            if statistic == "clipped":
                for _ in range(50):
                    mu = np.sum(w[keep] * v[keep]) / np.sum(w[keep])
                    sd = np.sqrt(np.sum(w[keep] * (v[keep] - mu) ** 2) / np.sum(w[keep]))
                    new = np.abs(v - mu) <= clip_sigma * sd
                    if np.array_equal(new, keep):
                        break
                    keep = new
            vk, wk = v[keep], w[keep]
            count = wk.sum()
            out["count"][s, k] = count
            out["sum"][s, k] = np.sum(wk * vk)
            if count == 0:
                continue
            mean = np.sum(wk * vk) / count
            out["mean"][s, k] = mean
            p = np.sum(wk**2 * vk)
            out["sem_poisson"][s, k] = np.sqrt(p) / count if p >= 0 else np.nan
            n_eff = count**2 / np.sum(wk**2)
            var = np.sum(wk * (vk - mean) ** 2) / count
            out["sem_azimuthal"][s, k] = np.sqrt(var / (n_eff - 1)) if n_eff > 1 + 1e-12 else np.nan
            if statistic == "median":
                order = np.argsort(v, kind="stable")
                vs, cw = v[order], np.cumsum(w[order])
                k_half = int(np.argmax(cw >= 0.5 * cw[-1]))
                exact = cw[k_half] == 0.5 * cw[-1] and k_half + 1 < vs.size
                out["mean"][s, k] = 0.5 * (vs[k_half] + vs[k_half + 1]) if exact else vs[k_half]
                out["sem_azimuthal"][s, k] *= np.sqrt(np.pi / 2)
    return out


# ==========================================================================================================
# fitting.model — spline evaluation at α·Q, Poisson log-likelihood, forward model of one profile
# ==========================================================================================================
def spline_eval_reference(grid, values, q, alpha):
    """I_k(α·Q) and ∂/∂α = Q·I_k'(α·Q) with scipy's CubicSpline (not-a-knot), one pixel at a time.

    grid (m,) [Å⁻¹], values (m, K), q (n_q,) [Å⁻¹], alpha (n,) → two arrays (n, n_q, K); NaN outside the grid.
    """
    from scipy.interpolate import CubicSpline

    spl = CubicSpline(grid, values, extrapolate=False)
    n, nq, k = len(alpha), len(q), values.shape[1]
    val = np.empty((n, nq, k))
    dal = np.empty((n, nq, k))
    for p, a in enumerate(alpha):
        for j, qq in enumerate(q):
            val[p, j] = spl(a * qq)
            dal[p, j] = spl(a * qq, 1) * qq
    return val, dal


def poisson_loglike_reference(counts, mu):
    """Σ log Poisson(y | μ) term by term with scipy.stats."""
    from scipy.stats import poisson

    return float(sum(poisson.logpmf(int(y), m) for y, m in zip(counts, mu)))


def profile_model_reference(q, exposure, comp_grid, comp_values, scales, alpha, bg_amplitude, bg_exponent, q0):
    """μ(Q) = E·[Σ s_k I_k(α Q) + A (Q/Q0)^-p] bin by bin (cubic spline components, no blur)."""
    from scipy.interpolate import CubicSpline

    splines = [CubicSpline(comp_grid, comp_values[:, k]) for k in range(comp_values.shape[1])]
    mu = np.empty(len(q))
    for i, qq in enumerate(q):
        s = sum(scales[k] * float(splines[k](alpha * qq)) for k in range(len(splines)))
        mu[i] = exposure[i] * (s + bg_amplitude * (qq / q0) ** (-bg_exponent))
    return mu


# ==========================================================================================================
# simkit.peak_estimator / fitting.peaks / fitting.calibrate — slow, obvious twins (one scipy call per profile)
# ==========================================================================================================
def peak_position_reference(q, intensity, q_range, n=1.0, sigma=None, shape="gaussian"):
    """Maximum of a peak + linear background fitted to I·Qⁿ in q_range, ONE profile, by scipy.curve_fit.

    Returns (position [Å⁻¹], position_err [Å⁻¹]) or (nan, nan) when the fit fails or its maximum on the window
    lies on the window edge. The maximum is found on a 1e-6 Å⁻¹ grid; its error by numerically propagating the
    covariance (central differences of the grid-maximum with respect to each parameter).
    """
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    q = np.asarray(q, float)
    sel = (q >= q_range[0]) & (q <= q_range[1]) & np.isfinite(intensity)
    x = q[sel]
    y = np.asarray(intensity, float)[sel] * x**n
    s = None if sigma is None else np.asarray(sigma, float)[sel] * x**n
    qc = 0.5 * (q_range[0] + q_range[1])

    def g(u):
        return np.exp(-0.5 * u * u) if shape == "gaussian" else 1.0 / (1.0 + u * u)

    def model(x, a, mu, w, b0, b1):
        return a * g((x - mu) / w) + b0 + b1 * (x - qc)

    k = int(np.argmax(y))
    p0 = [y[k] - y.min(), x[k], 0.4 * 0.5 * (q_range[1] - q_range[0]), y.min(), 0.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            p, cov = curve_fit(model, x, y, p0=p0, sigma=s, absolute_sigma=s is not None, maxfev=20000)
    except (RuntimeError, OptimizeWarning):
        return np.nan, np.nan
    grid = np.arange(q_range[0], q_range[1] + 5e-7, 1e-6)

    def argmax(pp):  # grid maximum refined by a parabola through its neighbours (continuous in pp)
        v = model(grid, *pp)
        k = int(np.clip(np.argmax(v), 1, grid.size - 2))
        den = v[k - 1] - 2 * v[k] + v[k + 1]
        return grid[k] + (0.5 * (v[k - 1] - v[k + 1]) / den * 1e-6 if den < 0 else 0.0)

    pos = argmax(p)
    if p[0] <= 0 or pos <= grid[0] or pos >= grid[-1]:
        return np.nan, np.nan
    jac = np.zeros(5)
    for i in range(5):
        h = 1e-3 * max(abs(p[i]), 1e-3)
        pp, pm = p.copy(), p.copy()
        pp[i] += h
        pm[i] -= h
        jac[i] = (argmax(pp) - argmax(pm)) / (2 * h)
    return float(pos), float(np.sqrt(jac @ cov @ jac))


def sro_peak_position_reference(q, intensity, q_range, half_width, width, n=1.0, sigma=None, max_fits=7):
    """Centred-window SRO peak of ONE profile by scipy.curve_fit: Gaussian of fixed ``width`` + constant fitted to
    I·Qⁿ in [c − h, c + h]; c starts at the maximum of the 5-bin running mean inside q_range and moves to the
    fitted μ until it moves < 1e-5 Å⁻¹. Returns (μ [Å⁻¹], σ_μ [Å⁻¹]) or (nan, nan)."""
    from scipy.optimize import curve_fit

    q = np.asarray(q, float)
    y_all = np.asarray(intensity, float) * q**n
    s_all = None if sigma is None else np.asarray(sigma, float) * q**n
    fin = np.isfinite(y_all)
    best, c = -np.inf, np.nan
    for j in range(q.size):
        if not (q_range[0] <= q[j] <= q_range[1]):
            continue
        nb = [k for k in range(j - 2, j + 3) if 0 <= k < q.size and fin[k]]
        if len(nb) >= 3 and np.mean(y_all[nb]) > best:
            best, c = np.mean(y_all[nb]), q[j]

    def model(x, a, mu, b0):
        return a * np.exp(-0.5 * ((x - mu) / width) ** 2) + b0

    p = cov = None
    edges = np.concatenate([[q[0] - 0.5 * (q[1] - q[0])], 0.5 * (q[1:] + q[:-1]), [q[-1] + 0.5 * (q[-1] - q[-2])]])
    for _ in range(max_fits):
        # edge bins enter with the fraction of their extent inside [c − h, c + h] (weight = that fraction)
        frac = np.clip(
            (np.minimum(edges[1:], c + half_width) - np.maximum(edges[:-1], c - half_width)) / np.diff(edges), 0, 1
        )
        sel = fin & (frac > 0)
        x, y = q[sel], y_all[sel]
        s = (np.ones(x.size) if s_all is None else s_all[sel]) / np.sqrt(frac[sel])
        p0 = [y.max() - y.min(), c, y.min()] if p is None else p
        try:
            p, cov = curve_fit(model, x, y, p0=p0, sigma=s, absolute_sigma=s_all is not None, maxfev=20000)
        except RuntimeError:
            return np.nan, np.nan
        moved = abs(p[1] - c)
        c = p[1]
        if moved < 1e-5:
            break
    if p[0] <= 0 or not (q_range[0] < p[1] < q_range[1]):
        return np.nan, np.nan
    return float(p[1]), float(np.sqrt(cov[1, 1]))


def gaussian_mixture_loglike_reference(x, means, stds, weights):
    """Log-likelihood of values x under a 1-D Gaussian mixture, by a plain double loop."""
    total = 0.0
    for xi in np.asarray(x, float):
        p = 0.0
        for m, s, w in zip(means, stds, weights):
            p += w * np.exp(-0.5 * ((xi - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
        total += np.log(p)
    return total


def center_of_mass_reference(image, center, radius):
    """Centre of mass (cy, cx) [px] of the pixels within ``radius`` of ``center``, iterated to convergence,
    by looping over pixels."""
    cy, cx = center
    for _ in range(50):
        sy = sx = tot = 0.0
        for i in range(image.shape[0]):
            for j in range(image.shape[1]):
                if (i - cy) ** 2 + (j - cx) ** 2 <= radius**2:
                    sy += i * image[i, j]
                    sx += j * image[i, j]
                    tot += image[i, j]
        ny, nx = sy / tot, sx / tot
        if abs(ny - cy) < 1e-10 and abs(nx - cx) < 1e-10:
            break
        cy, cx = ny, nx
    return cy, cx


# ----------------------------------------------------------------------------------------------------------
# simkit.kinematic — slow, obvious twins (owner: kinematic)
# ----------------------------------------------------------------------------------------------------------
def hydrogen_electron_factor(q):
    """Exact first-Born electron scattering factor of the hydrogen 1s atom [Å] at Q = 1/d [Å⁻¹].

    Mott–Bethe with f_x = 16/(4 + x²)², x = 2πQ·a₀, gives f_e = 2a₀(8 + x²)/(4 + x²)² (f_e(0) = a₀).
    """
    a0 = 0.529177210903
    x = 2 * np.pi * np.asarray(q, float) * a0
    return 2 * a0 * (8 + x**2) / (4 + x**2) ** 2


def peng_ionic_electron_factor(symbol_with_charge, charge, q):
    """Electron scattering factor of an ion from Peng (1998), Acta Cryst. A54, 481–485 [Å]:
    Σ aᵢ exp(−bᵢ s²) + 0.023934·ΔZ/s², s = Q/2 [Å⁻¹]; coefficients as shipped with abTEM (peng_ionic.json)."""
    import importlib.util
    import json
    import os

    path = os.path.join(
        importlib.util.find_spec("abtem").submodule_search_locations[0], "parametrizations", "data", "peng_ionic.json"
    )
    with open(path) as fh:
        a, b = (np.asarray(v, float) for v in json.load(fh)[symbol_with_charge])
    s = 0.5 * np.asarray(q, float)
    return np.sum(a[:, None] * np.exp(-b[:, None] * s**2), axis=0) + 0.023934 * charge / s**2


def debye_exact(positions, factors, q):
    """Debye intensity (1/N) Σ_ij f_i f_j sinc(2πQ r_ij) [Å² per atom] by the plain double sum.

    positions (N, 3) [Å]; factors (N, n_q) [Å] per atom; q (n_q,) [Å⁻¹]."""
    pos = np.asarray(positions, float)
    f = np.asarray(factors, float)
    q = np.asarray(q, float)
    n = len(pos)
    out = np.zeros(q.size)
    for i in range(n):
        r = np.sqrt(np.sum((pos - pos[i]) ** 2, axis=1))
        x = 2 * np.pi * r[:, None] * q[None, :]
        sinc = np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1.0), 1.0)
        out += np.sum(f[i] * f * sinc, axis=0)
    return out / n


def debye_periodic_exact(positions, factors, species, cell_lengths, q, window=True, n_r=20001):
    """Periodic-box Debye intensity [Å² per atom] of an orthorhombic box, by the plain double sum over minimum
    images within r_c = min(L)/2, with the Lorch window w(r) = sinc(πr/r_c) (if ``window``) and the uniform
    density term Σ_ab N_a (N_b − δ_ab) f_a f_b (1/V) ∫₀^r_c 4πr² w(r) sinc(2πQr) dr subtracted (trapezoid
    rule on ``n_r`` points)."""
    pos = np.asarray(positions, float)
    f = np.asarray(factors, float)
    L = np.asarray(cell_lengths, float)
    q = np.asarray(q, float)
    species = np.asarray(species)
    n = len(pos)
    rc = 0.5 * L.min()

    def w(r):
        return np.sinc(r / rc) if window else np.ones_like(r)

    total = np.sum(f**2, axis=0)
    for i in range(n):
        d = pos - pos[i]
        d -= L * np.round(d / L)
        r = np.sqrt(np.sum(d**2, axis=1))
        ok = (r < rc) & (np.arange(n) != i)
        x = 2 * np.pi * r[ok, None] * q[None, :]
        total += np.sum(f[i] * f[ok] * w(r[ok])[:, None] * np.sin(x) / x, axis=0)
    r = np.linspace(0, rc, n_r)
    x = 2 * np.pi * r[:, None] * q[None, :]
    sinc = np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1.0), 1.0)
    integral = np.trapezoid(4 * np.pi * r[:, None] ** 2 * w(r)[:, None] * sinc, r, axis=0)
    volume = np.prod(L)
    for a in np.unique(species):
        for b in np.unique(species):
            na = np.sum(species == a)
            nb = np.sum(species == b) - (1 if a == b else 0)
            fa = f[np.flatnonzero(species == a)[0]]
            fb = f[np.flatnonzero(species == b)[0]]
            total -= na * nb * fa * fb * integral / volume
    return total / n


def disc_convolved_ring(points_q, ring, radius, n_side=241):
    """(I ⊗ D)(p) at 2-D points p [Å⁻¹] for an isotropic intensity ``ring(|q|)`` and the uniform unit-integral
    disc D of ``radius`` [Å⁻¹], by brute force: the mean of I(|p − u|) over a square grid of ``n_side``² points
    u, keeping those inside the disc. points_q (n, 2) as (q_y, q_x)."""
    t = (np.arange(n_side) + 0.5) / n_side * 2 - 1
    uy, ux = np.meshgrid(t * radius, t * radius, indexing="ij")
    inside = uy**2 + ux**2 <= radius**2
    uy, ux = uy[inside], ux[inside]
    out = np.empty(len(points_q))
    for k, (py, px) in enumerate(np.asarray(points_q, float)):
        out[k] = np.mean(ring(np.hypot(py - uy, px - ux)))
    return out


def delta_ring_disc_profile(rho, q0, radius, n_angle=200000):
    """Azimuthal fraction of a thin ring of radius q0 that lies inside a disc of ``radius`` centred at distance
    rho, by counting ring points (all [Å⁻¹]); ∝ the disc-convolved intensity of a delta ring at radius rho."""
    phi = (np.arange(n_angle) + 0.5) / n_angle * 2 * np.pi
    ry, rx = q0 * np.sin(phi), q0 * np.cos(phi)
    return np.array([np.mean((rx - r) ** 2 + ry**2 <= radius**2) for r in np.atleast_1d(rho)])


def disc_second_moment_radius(image, center):
    """Radius R [px] of a uniform disc from the intensity-weighted second moment, ⟨r²⟩ = R²/2."""
    iy, ix = np.indices(image.shape, dtype=float)
    r2 = (iy - center[0]) ** 2 + (ix - center[1]) ** 2
    return np.sqrt(2 * np.sum(image * r2) / np.sum(image))


# ==========================================================================================================
# structures.crystals / analysis / scenes — structure factors, pair distances, overlap removal by brute force
# ==========================================================================================================
_LOBATO_CACHE = {}


def lobato_f(symbol, q):
    """Electron scattering factor f(q) [Å] from abTEM's Lobato parametrization; q = 1/d [Å⁻¹], abTEM takes q²."""
    if symbol not in _LOBATO_CACHE:
        from abtem.parametrizations import LobatoParametrization

        _LOBATO_CACHE[symbol] = LobatoParametrization().scattering_factor(symbol)
    return _LOBATO_CACHE[symbol](np.asarray(q, dtype=float) ** 2)


def structure_factor_sum(symbols, positions, g):
    """F(g) = Σ_j f_j(|g|) exp(2πi g·r_j) by a plain loop over atoms.

    symbols: sequence of str; positions [Å], shape (N, 3); g: reciprocal vector(s) [Å⁻¹] (Q = 1/d
    convention), shape (3,) or (..., 3). Returns a complex scalar or an array of shape g.shape[:-1].
    """
    g = np.asarray(g, dtype=float)
    q = np.linalg.norm(g, axis=-1)
    f_of = {}
    total = np.zeros(g.shape[:-1], dtype=complex)
    for s, r in zip(symbols, np.asarray(positions, dtype=float)):
        if s not in f_of:
            f_of[s] = lobato_f(s, q)
        total = total + f_of[s] * np.exp(2j * np.pi * (g @ r))
    return total[()] if total.ndim == 0 else total


def all_image_distances(positions_a, positions_b, cell, r_max, same=False):
    """Every distance ≤ r_max between points a and b over periodic images of a (triclinic) cell, by loops.

    Images n·cell with |n_i| ≤ ceil(r_max / shortest height) + 1 along every axis. With same=True the
    zero-shift self pair (i, i) is skipped. Returns a 1-D array of distances [Å].
    """
    cell = np.asarray(cell, dtype=float)
    vol = abs(np.linalg.det(cell))
    heights = [vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    m = int(np.ceil(r_max / min(heights))) + 1
    out = []
    pa = np.asarray(positions_a, dtype=float)
    pb = np.asarray(positions_b, dtype=float)
    for n1 in range(-m, m + 1):
        for n2 in range(-m, m + 1):
            for n3 in range(-m, m + 1):
                shift = n1 * cell[0] + n2 * cell[1] + n3 * cell[2]
                for i in range(len(pa)):
                    d = np.linalg.norm(pb + shift - pa[i], axis=1)
                    if same and n1 == n2 == n3 == 0:
                        d[i] = np.inf
                    out.append(d[d <= r_max])
    return np.concatenate(out) if out else np.zeros(0)


def overlapping_matrix_atoms(matrix_positions, crystal_positions, box, min_distance):
    """Indices of matrix atoms closer than min_distance (strictly) to any crystal atom, minimum image in an
    orthorhombic box [Å], by a plain loop over matrix atoms."""
    box = np.asarray(box, dtype=float)
    cryst = np.asarray(crystal_positions, dtype=float)
    out = []
    for i, p in enumerate(np.asarray(matrix_positions, dtype=float)):
        d = cryst - p
        d -= box * np.round(d / box)
        if np.min(np.sqrt(np.sum(d * d, axis=1))) < min_distance:
            out.append(i)
    return np.array(out, dtype=int)


# ==========================================================================================================
# simkit.nbed — detector resampling (twin of nbed.to_detector)
# ==========================================================================================================
def rebin_supersampled(image, sampling, shape, pixel_size, center, oversample=8):
    """Split every source pixel into oversample² equal sub-pixels and drop each into the detector pixel
    that contains its centre. Source pixel (i, j) is centred at ((i - ny//2)·dqy, (j - nx//2)·dqx) [Å⁻¹];
    detector pixel (k, l) spans [(k - cy - ½)·p, (k - cy + ½)·p] × [(l - cx - ½)·p, (l - cx + ½)·p].
    Error per detector pixel ≲ (source pixels on its border) × max(image) / oversample."""
    ny, nx = image.shape
    out = np.zeros(shape)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    for i in range(ny):
        for j in range(nx):
            qy = (i - ny // 2 + sub) * sampling[0]
            qx = (j - nx // 2 + sub) * sampling[1]
            ky = np.floor(qy / pixel_size + center[0] + 0.5).astype(int)
            kx = np.floor(qx / pixel_size + center[1] + 0.5).astype(int)
            KY, KX = np.meshgrid(ky, kx, indexing="ij")
            ok = (KY >= 0) & (KY < shape[0]) & (KX >= 0) & (KX < shape[1])
            np.add.at(out, (KY[ok], KX[ok]), image[i, j] / oversample**2)
    return out


# ----------------------------------------------------------------------------------------------------------
# simkit.dose / simkit.detector / simkit.damage (issue 6)
# ----------------------------------------------------------------------------------------------------------
def causal_accumulate(rank, lattice):
    """Twin of ``simkit.dose._causal_accumulate``: plain double loop over all pairs of scan positions.

    Returns (before, total): Σ lattice[r_k − r_j] over positions j with rank_j < rank_k, and over all j, for
    offsets inside the lattice table (centre at its middle)."""
    rank = np.asarray(rank)
    ny, nx = rank.shape
    ky, kx = (lattice.shape[0] - 1) // 2, (lattice.shape[1] - 1) // 2
    before = np.zeros((ny, nx))
    total = np.zeros((ny, nx))
    for i in range(ny):
        for j in range(nx):
            for i2 in range(ny):
                for j2 in range(nx):
                    di, dj = i2 - i, j2 - j
                    if abs(di) > ky or abs(dj) > kx:
                        continue
                    v = lattice[ky + di, kx + dj]
                    total[i, j] += v
                    if rank[i2, j2] < rank[i, j]:
                        before[i, j] += v
    return before, total


def airy_intensity(r, k_alpha):
    """Normalised Airy probe intensity π k_α² (2 J1(v)/v)², v = 2π k_α r, k_α = α/λ [Å⁻¹], r [Å] → [1/Å²]."""
    from scipy.special import j1

    v = 2 * np.pi * k_alpha * np.asarray(r, float)
    a = np.ones_like(v)
    nz = v > 0
    a[nz] = 2 * j1(v[nz]) / v[nz]
    return np.pi * k_alpha**2 * a**2


def probe_overlap(d, k_alpha, half_width, h):
    """∫ P(r) P(r − d) d²r for the Airy probe by brute force on a square grid of spacing h [Å] over
    |x|, |y| <= half_width [Å]; d = (dy, dx) [Å]."""
    t = np.arange(-half_width, half_width + h / 2, h)
    y, x = np.meshgrid(t, t, indexing="ij")
    p0 = airy_intensity(np.hypot(y, x), k_alpha)
    p1 = airy_intensity(np.hypot(y - d[0], x - d[1]), k_alpha)
    return float(np.sum(p0 * p1) * h * h)


def paralysable_monte_carlo(rate, tau, t_frame, n_frames, rng):
    """Counts registered by a paralysable counter (every arrival, counted or not, restarts the dead time τ)
    for Poisson arrivals of ``rate`` [1/s] during frames of ``t_frame`` [s]; returns counts per frame."""
    out = np.zeros(n_frames, dtype=np.int64)
    for f in range(n_frames):
        n = rng.poisson(rate * t_frame)
        t = np.sort(rng.uniform(0, t_frame, n))
        gaps = np.diff(np.concatenate([[-np.inf], t]))
        out[f] = int(np.sum(gaps > tau))
    return out


def non_paralysable_monte_carlo(rate, tau, t_frame, n_frames, rng):
    """Counts of a non-paralysable counter (blind for τ after each *registered* count), Poisson arrivals."""
    out = np.zeros(n_frames, dtype=np.int64)
    for f in range(n_frames):
        n = rng.poisson(rate * t_frame)
        t = np.sort(rng.uniform(0, t_frame, n))
        last = -np.inf
        c = 0
        for ti in t:
            if ti - last >= tau:
                c += 1
                last = ti
        out[f] = c
    return out


def defocused_probe_fft(semiangle_rad, wavelength, defocus, n=2048, h=1.0):
    """Probe intensity |IFFT(aperture · exp(−iπλΔf k²))|² on an n × n grid of spacing h [Å], normalised to
    ∫ = 1 [1/Å²]; returns (radius [Å], intensity) of every grid point, centre at index (0, 0) (FFT order)."""
    k = np.fft.fftfreq(n, h)
    kx, ky = np.meshgrid(k, k)
    k2 = kx**2 + ky**2
    pupil = (np.sqrt(k2) <= semiangle_rad / wavelength) * np.exp(-1j * np.pi * wavelength * defocus * k2)
    p = np.abs(np.fft.ifft2(pupil)) ** 2
    p /= p.sum() * h * h
    y = np.fft.fftfreq(n, 1.0 / n) * h
    return np.hypot(*np.meshgrid(y, y)), p


# end of the issue-6 section (simkit.dose / detector / damage)


# ================================================================================================================
# structures.amorphous / structures._packing / structures.electrolyte (packing engine, pair potential, Debye I(Q))
# ================================================================================================================


def min_image_vectors(positions, box):
    """All pair vectors r_j − r_i under the minimum-image convention in an orthorhombic box, shape (N, N, 3)."""
    x = np.asarray(positions, dtype=float)
    box = np.asarray(box, dtype=float)
    d = x[None, :, :] - x[:, None, :]
    return d - box * np.round(d / box)


def min_distance_violations(positions, symbols, unit_id, box, table):
    """Brute-force list of inter-unit pairs closer than their minimum distance.

    ``table`` maps sorted element pairs ("F-Li") to distances [Å]. Returns a list of (i, j, r, d_min) with i < j.
    """
    d = np.linalg.norm(min_image_vectors(positions, box), axis=-1)
    sym = np.asarray(symbols)
    uid = np.asarray(unit_id)
    els = sorted(set(sym))
    t = np.array([[table["-".join(sorted((a, b)))] for b in els] for a in els])
    e = np.searchsorted(els, sym)
    dm = t[e[:, None], e[None, :]]
    i, j = np.nonzero(np.triu((d < dm) & (uid[:, None] != uid[None, :]), k=1))
    return [(int(a), int(b), float(d[a, b]), float(dm[a, b])) for a, b in zip(i, j)]


def overlap_energy_forces(positions, box, species, unit_of, dmin, margin, k):
    """Twin of ``_packing._overlap_forces``: E = Σ_{i<j, other units} k (d_t − r)² for r < d_t = (1+margin) d_min.

    Returns total energy [eV] and forces [eV/Å] shape (N, 3).
    """
    v = min_image_vectors(positions, box)
    r = np.linalg.norm(v, axis=-1)
    sp = np.asarray(species)
    dt = np.asarray(dmin)[sp[:, None], sp[None, :]] * (1 + margin)
    uid = np.asarray(unit_of)
    mask = (uid[:, None] != uid[None, :]) & (r < dt)
    h = np.where(mask, dt - r, 0.0)
    energy = 0.5 * np.sum(k * h * h)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(mask, 2 * k * h / r, 0.0)
    forces = -np.sum(g[:, :, None] * v, axis=1)
    return energy, forces


def dsf_buckingham_energy_forces(
    positions, box, charges, a, rho, c, species, unit_of, alpha, cutoff, dmin=None, margin=0.0, kwall=0.0
):
    """Analytic twin of the tabulated ``_packing._physical_forces``.

    Pair energy for r < R (pairs of different units only): damped shifted-force Coulomb
    K q q' [erfc(αr)/r − erfc(αR)/R + (erfc(αR)/R² + 2α/√π e^{−α²R²}/R)(r − R)] plus shifted-force Buckingham
    u(r) − u(R) − u'(R)(r − R) with u = A e^{−r/ρ} − C/r⁶, plus the wall kwall (d_t − r)² for r < d_t.
    Returns total energy [eV] and forces [eV/Å].
    """
    from scipy.special import erfc

    K = 14.399645478425668
    v = min_image_vectors(positions, box)
    r = np.linalg.norm(v, axis=-1)
    sp = np.asarray(species)
    uid = np.asarray(unit_of)
    q = np.asarray(charges, dtype=float)
    R = cutoff
    mask = (uid[:, None] != uid[None, :]) & (r < R)
    rr = np.where(mask, r, 1.0)
    fs = erfc(alpha * R) / R**2 + 2 * alpha / np.sqrt(np.pi) * np.exp(-(alpha**2) * R**2) / R
    qq = K * q[:, None] * q[None, :]
    e = qq * (erfc(alpha * rr) / rr - erfc(alpha * R) / R + fs * (rr - R))
    du = qq * (-(erfc(alpha * rr) / rr**2 + 2 * alpha / np.sqrt(np.pi) * np.exp(-(alpha**2) * rr**2) / rr) + fs)
    A = np.asarray(a)[sp[:, None], sp[None, :]]
    P = np.asarray(rho)[sp[:, None], sp[None, :]]
    C = np.asarray(c)[sp[:, None], sp[None, :]]
    u = A * np.exp(-rr / P) - C / rr**6
    u_r = A * np.exp(-R / P) - C / R**6
    g = -A / P * np.exp(-rr / P) + 6 * C / rr**7
    g_r = -A / P * np.exp(-R / P) + 6 * C / R**7
    e = e + np.where(A != 0, u - u_r - g_r * (rr - R), 0.0)
    du = du + np.where(A != 0, g - g_r, 0.0)
    if dmin is not None:
        dt = np.asarray(dmin)[sp[:, None], sp[None, :]] * (1 + margin)
        h = np.where(rr < dt, dt - rr, 0.0)
        e = e + kwall * h * h
        du = du - 2 * kwall * h
    e = np.where(mask, e, 0.0)
    du = np.where(mask, du, 0.0)
    forces = np.sum((du / rr)[:, :, None] * v, axis=1)
    return 0.5 * float(np.sum(e)), forces


def lobato_f_electron(symbol, q):
    """Electron scattering factor f(q) [Å] of a neutral atom from abTEM's Lobato parametrisation; q = 1/d [Å⁻¹]
    (abTEM's function takes k² with k = 1/d)."""
    from abtem.parametrizations import LobatoParametrization

    return np.asarray(LobatoParametrization().scattering_factor(symbol)(np.asarray(q, dtype=float) ** 2))


def debye_iq_periodic(positions, symbols, box, q, r_max=None, dr=0.005):
    """Plain windowed Debye sum of a periodic model, per atom [Å²].

    I(Q) = ⟨f²⟩ + (1/N) Σ_i Σ_{j≠i, r_ij < R} f_i f_j sinc(2πQ r_ij) w(r_ij) − ⟨f⟩² ρ ∫₀^R 4πr² sinc(2πQr) w(r) dr

    with Q = 1/d, minimum-image distances up to R = r_max (default half the shortest box length), the Lorch
    window w(r) = sin(πr/R)/(πr/R) against truncation ripples, and the uniform-density term subtracted so that
    only the structure-dependent part is added to the self term ⟨f²⟩. Distances are histogrammed per element
    pair in bins of ``dr`` [Å] (exact to O(dr²)).
    Returns (I(Q), self term ⟨f²⟩(Q)).
    """
    x = np.asarray(positions, dtype=float)
    box = np.asarray(box, dtype=float)
    q = np.asarray(q, dtype=float)
    R = 0.5 * box.min() if r_max is None else r_max
    sym = np.asarray(symbols)
    els = sorted(set(sym))
    f = {e: lobato_f_electron(e, q) for e in els}
    n = len(sym)
    edges = np.arange(0.0, R + dr, dr)
    rc = 0.5 * (edges[1:] + edges[:-1])
    w = np.sinc(rc / R)  # numpy sinc(x) = sin(πx)/(πx)
    kern = np.sinc(2 * q[:, None] * rc[None, :]) * w[None, :]  # sin(2πQr)/(2πQr)
    idx = {e: np.flatnonzero(sym == e) for e in els}
    distinct = np.zeros_like(q)
    for a in els:
        for b in els:
            ia, ib = idx[a], idx[b]
            h = np.zeros(len(rc))
            for s in range(0, len(ia), 256):
                d = x[ib][None, :, :] - x[ia[s : s + 256]][:, None, :]
                d -= box * np.round(d / box)
                r = np.linalg.norm(d, axis=-1).ravel()
                r = r[(r > 1e-9) & (r < R)]
                h += np.histogram(r, bins=edges)[0]
            distinct += f[a] * f[b] * (kern @ h)
    fmean = sum(len(idx[e]) * f[e] for e in els) / n
    f2 = sum(len(idx[e]) * f[e] ** 2 for e in els) / n
    rho = n / np.prod(box)
    uniform = n * fmean**2 * rho * (kern * (4 * np.pi * rc**2 * dr)[None, :]).sum(axis=1)
    return f2 + (distinct - uniform) / n, f2


def first_peak_above(q, y, q_min):
    """Q of the first local maximum of y above q_min (parabolic refinement); NaN if none."""
    q = np.asarray(q)
    y = np.asarray(y)
    for k in range(1, len(q) - 1):
        if q[k] > q_min and y[k] >= y[k - 1] and y[k] > y[k + 1]:
            den = y[k - 1] - 2 * y[k] + y[k + 1]
            off = 0.5 * (y[k - 1] - y[k + 1]) / den if den != 0 else 0.0
            return float(q[k] + off * (q[k + 1] - q[k]))
    return float("nan")


def poisson_terms_reference(grid, values, q, theta, y, exposure, q0):
    """Half Poisson deviance f, gradient g and expected information F per pixel for the model
    μ = E·[Σ s_k I_k(α q) + A (q/q0)^-p] with θ = (s_1..s_K, α, A, p), by finite-free analytic formulas
    written out bin by bin (CubicSpline components). Twin of fitting.model.poisson_terms_kernel (bg power)."""
    from scipy.interpolate import CubicSpline

    spl = CubicSpline(grid, values)
    n, P = theta.shape
    K = values.shape[1]
    f = np.zeros(n)
    g = np.zeros((n, P))
    F = np.zeros((n, P, P))
    for p in range(n):
        s, alpha, amp, pw = theta[p, :K], theta[p, K], theta[p, K + 1], theta[p, K + 2]
        for j, qq in enumerate(q):
            v = spl(alpha * qq)
            dv = spl(alpha * qq, 1)
            base = (qq / q0) ** (-pw)
            e = exposure[p, j]
            mu = e * (float(s @ v) + amp * base)
            jac = np.concatenate([e * v, [e * float(s @ dv) * qq, e * base, -e * np.log(qq / q0) * amp * base]])
            yy = y[p, j]
            f[p] += mu - yy + (yy * np.log(yy / mu) if yy > 0 else 0.0)
            g[p] += (1 - yy / mu) * jac
            F[p] += np.outer(jac, jac) / mu
    return f, g, F


# ==========================================================================================================
# fitting.classify — statistics over the sectors of sector profiles (twin of classify._k_sector_stats)
# ==========================================================================================================
def sector_statistics_reference(q, m, s, window, n_sigma):
    """Per-pixel statistics over sectors, written with NumPy's NaN-aware reductions in float64.

    m, s (sy, sx, n_phi, n_q): sector means and Poisson standard errors; non-finite values are ignored.
    Returns the dict of fitting.classify._sector_statistics.
    """
    import warnings

    q = np.asarray(q, float)
    m = np.asarray(m, np.float64)
    s = np.asarray(s, np.float64)
    fm = np.isfinite(m)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices → NaN, as wanted
        n = np.where(s > 0, m / s**2, 0.0)  # pixels of a sector bin (Poisson: mean / sem²)
        counts = np.nansum(np.where(fm, m * n, np.nan), axis=2)
        pixels = np.nansum(np.where(fm, n, np.nan), axis=2)
        mf = np.where(fm, m, np.nan)
        median = np.nanmedian(mf, axis=2)
        mx = np.nanmax(mf, axis=2)
        noise = np.nanmedian(np.where(np.isfinite(s), s, np.nan), axis=2)
        mean = np.nanmean(mf, axis=2)
        std = np.nanstd(mf, axis=2)
        w = (q >= window[0]) & (q <= window[1])
        e = m[..., w] - median[..., None, w] - n_sigma * s[..., w]
        ex = np.where(e > 0, e, 0.0) * n[..., w]  # excess counts per sector bin
        per = ex.sum(-1)  # (sy, sx, n_phi)
        tot = counts[..., w].sum(-1)
        bragg = np.where(tot > 0, per.sum(-1) / tot, 0.0)
        best = np.argmax(per, axis=-1)
        eb = np.take_along_axis(ex, best[..., None, None], axis=2)[..., 0, :]
        # the disc's radial extent: the run of bins around the largest excess above 10 % of it; whole runs →
        # their midpoint, a run cut at one end (window end or a bin without pixels) → one median whole-run
        # half-width from its other edge (≥ 5 whole runs of pixels with Bragg fraction ≥ 0.01)
        qw = q[w]
        dq = float(np.median(np.diff(q)))
        mw = np.take_along_axis(m[..., w], best[..., None, None], axis=2)[..., 0, :]  # that sector's means
        lo_q, hi_q = np.full(eb.shape[:-1], np.nan), np.full(eb.shape[:-1], np.nan)
        cut = np.zeros(eb.shape[:-1])
        for idx in np.ndindex(*eb.shape[:-1]):
            v = eb[idx]
            if v.size == 0 or not v.max() > 0:
                continue
            k = int(np.argmax(v))
            above = v > 0.1 * v[k]
            lo = k - (np.argmin(above[k::-1]) if not above[k::-1].all() else k + 1) + 1
            hi = k + (np.argmin(above[k:]) if not above[k:].all() else v.size - k) - 1
            lo_q[idx], hi_q[idx] = qw[lo], qw[hi]
            top = hi == v.size - 1 or not np.isfinite(mw[idx][hi + 1])
            low = lo == 0 or not np.isfinite(mw[idx][lo - 1])
            cut[idx] = 1.0 if top and not low else (-1.0 if low and not top else 0.0)
        bragg_q = 0.5 * (lo_q + hi_q)
        whole = (cut == 0) & np.isfinite(lo_q) & (bragg >= 0.01)
        if np.count_nonzero(whole) >= 5:
            r = np.median(0.5 * (hi_q[whole] - lo_q[whole] + dq))
            bragg_q = np.where(cut > 0, lo_q - 0.5 * dq + r, np.where(cut < 0, hi_q + 0.5 * dq - r, bragg_q))
    return {"counts": counts, "pixels": pixels, "median": median, "max": mx, "noise": noise, "mean": mean,
            "std": std, "bragg": bragg, "bragg_q": bragg_q}  # fmt: skip


# ==========================================================================================================
# numba kernels run as plain Python (NUMBA_DISABLE_JIT=1): the same functions, interpreted
# ==========================================================================================================
def json_with_and_without_jit(code: str) -> tuple:
    """Run ``code`` (a script printing one JSON document) in two subprocesses, compiled and with
    NUMBA_DISABLE_JIT=1, and return both parsed documents (compiled first)."""
    import json
    import os
    import subprocess
    import sys

    results = []
    for disable in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=disable)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(res.stdout))
    return tuple(results)
