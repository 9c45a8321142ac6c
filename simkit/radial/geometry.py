"""Geometry of radial integration: unit conversions, the ellipse-correction matrix, bin search, pixel extents,
exact squared-radius thresholds of the bin edges and the look-up tables over them, and sector look-up.

Everything here maps detector pixels to bins; nothing accumulates intensities (that is :mod:`.kernels`).
The numba functions take arrays and scalars only; the ``inline="always"`` ones are meant for the hot loops of
the kernels (an inlined helper costs no reference counting per call).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from structures.checks import check_positive, mrad_to_q

#: interleaved accumulator copies: pixel (i, j) adds to copy j % _W, which breaks the store-to-load dependency
#: chains of consecutive scatter-adds into the same bin (neighbouring pixels mostly share a bin)
_W = 4
#: cells of the azimuth look-up table of the sub-pixel shifted sector kernels (see phi_lookup)
_NPHI_LUT = 4096
#: half-width [diamond-angle units, 4 per turn] around a sector boundary inside which the exact atan2 decides
_PHI_GUARD = 1e-7
#: cells of the squared-radius look-up table of the shifted kernels (see s_lookup); 16384 cells keep the
#: fraction of pixels that need an exact threshold comparison near n_q / 16384
_NLUT = 16384

# Indices are cast to unsigned (np.uint64) where the kernels index arrays inside their hot loops: numba emits a
# negative-index wraparound test for every signed index it cannot prove non-negative, which costs about a third
# of the time of a scatter-add loop.


def pixel_size_from_mrad(mrad_per_pixel: float, energy: float) -> float:
    """Reciprocal pixel size from the angular pixel size.

    Parameters
    ----------
    mrad_per_pixel : float  [mrad]
        Scattering angle subtended by one detector pixel.
    energy : float  [eV]
        Beam energy.

    Returns
    -------
    float  [Å⁻¹]
        Q per pixel = θ_px / λ (small-angle mapping, Q = 1/d).
    """
    return mrad_to_q(check_positive("mrad_per_pixel", mrad_per_pixel, "mrad"), energy)


def abtem_center(shape: tuple[int, int]) -> tuple[float, float]:
    """Centre of an fftshifted abTEM diffraction pattern in index coordinates.

    Parameters
    ----------
    shape : tuple of int  [px]
        ``(ny, nx)``.

    Returns
    -------
    tuple of float  [px]
        ``(ny // 2, nx // 2)``: abTEM puts zero frequency at index n // 2.
    """
    ny, nx = (int(s) for s in shape)
    return float(ny // 2), float(nx // 2)


def center_from_pyfai(poni1: float, poni2: float, pixel1: float, pixel2: float) -> tuple[float, float]:
    """Convert a pyFAI point of normal incidence (rot1 = rot2 = rot3 = 0) to index coordinates.

    pyFAI measures positions from the corner of pixel (0, 0), so the centre of pixel i is at
    (i + ½)·pixel1.

    Parameters
    ----------
    poni1, poni2 : float  [m]
        pyFAI PONI along the slow (row, y) and fast (column, x) axis.
    pixel1, pixel2 : float  [m]
        pyFAI pixel sizes along the same axes.

    Returns
    -------
    tuple of float  [px]
        ``(cy, cx)`` = (poni1 / pixel1 − ½, poni2 / pixel2 − ½).
    """
    return float(poni1) / float(pixel1) - 0.5, float(poni2) / float(pixel2) - 0.5


def center_to_pyfai(center: tuple[float, float], pixel1: float, pixel2: float) -> tuple[float, float]:
    """Inverse of :func:`center_from_pyfai`.

    Parameters
    ----------
    center : tuple of float  [px]
        ``(cy, cx)`` in index coordinates.
    pixel1, pixel2 : float  [m]
        pyFAI pixel sizes along rows (y) and columns (x).

    Returns
    -------
    tuple of float  [m]
        ``(poni1, poni2)`` = ((cy + ½)·pixel1, (cx + ½)·pixel2).
    """
    cy, cx = center
    return (float(cy) + 0.5) * float(pixel1), (float(cx) + 0.5) * float(pixel2)


def correction_matrix(ellipse_ratio: float, ellipse_angle: float) -> tuple[float, float, float]:
    """Entries (m00, m01, m11) of the symmetric ellipse-correction matrix M = R(θ)·diag(1/ρ, 1)·R(θ)ᵀ.

    Parameters
    ----------
    ellipse_ratio : float
        Stretch ρ of the recorded pattern along ``ellipse_angle``.
    ellipse_angle : float  [rad]
        Direction of the stretch, from +x (columns) towards +y (rows).

    Returns
    -------
    tuple of float
        M·(dx, dy) is the corrected offset [px] of a pixel at offset (dy, dx) from the centre.
    """
    c, s, inv = math.cos(ellipse_angle), math.sin(ellipse_angle), 1.0 / ellipse_ratio
    return c * c * inv + s * s, c * s * (inv - 1.0), s * s * inv + c * c


def uniform_inv_dq(edges: np.ndarray) -> float:
    """n_q / (edges[-1] − edges[0]) for (near-)uniform edges (arithmetic bin guess in _find_bin), else 0 (binary
    search); either way _find_bin's result is exact."""
    d = np.diff(edges)
    uniform = np.all(np.abs(d - d.mean()) <= 1e-6 * d.mean())
    return (edges.size - 1) / float(edges[-1] - edges[0]) if uniform else 0.0


def row_spans(used: np.ndarray) -> np.ndarray:
    """Columns [j0, j1) of each row of the boolean grid ``used`` that hold used cells (0, 0 for empty rows):
    int64, shape (rows, 2)."""
    ny, nx = used.shape
    any_used = used.any(axis=1)
    spans = np.zeros((ny, 2), np.int64)
    spans[:, 0] = np.where(any_used, np.argmax(used, axis=1), 0)
    spans[:, 1] = np.where(any_used, nx - np.argmax(used[:, ::-1], axis=1), 0)
    return spans


def radius_px(shape, center, ratio, angle):
    """Ellipse-corrected radius of every pixel centre [px] (NumPy; used for default ranges and messages only)."""
    iy, ix = np.indices(shape, dtype=float)
    dy = iy - center[0]
    dx = ix - center[1]
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / ratio
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    return np.hypot(u, v)


def whole_pixel_shifts(shifts: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """``shifts`` as int64 when every one is a whole number of pixels no larger than the detector, else None."""
    if shifts.size == 0 or not np.all(np.abs(shifts) <= max(shape)):
        return None
    ish = np.rint(shifts)
    if not np.array_equal(ish, shifts):
        return None
    return np.ascontiguousarray(ish, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# numba: bins, sectors and pixel extents
# ----------------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _find_bin(edges, q, inv_dq):
    """Index k with edges[k] <= q < edges[k+1], or -1 (q NaN or outside).

    ``inv_dq`` > 0 (near-uniform edges): start from the arithmetic guess and correct it against the edges,
    so the result is exactly that of the binary search used when ``inv_dq`` is 0.
    """
    n = edges.size - 1
    if not (q >= edges[0]) or not (q < edges[n]):
        return -1
    if inv_dq > 0.0:
        k = int((q - edges[0]) * inv_dq)
        if k > n - 1:
            k = n - 1
        while q < edges[k]:
            k -= 1
        while q >= edges[k + 1]:
            k += 1
        return k
    lo = 0
    hi = n
    while hi - lo > 1:  # invariant: edges[lo] <= q < edges[hi]
        mid = (lo + hi) // 2
        if edges[mid] <= q:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True)
def _corrected(dy, dx, m00, m01, m11):
    """Ellipse-corrected offset (x', y') = M·(dx, dy) in the detector frame [px]; M = R(θ)·diag(1/ρ, 1)·R(θ)ᵀ
    is symmetric with entries m00, m01 (= m10), m11 (see RadialPlan._geo)."""
    return m00 * dx + m01 * dy, m01 * dx + m11 * dy


@njit(cache=True)
def _sector(xc, yc, n_phi):
    if n_phi <= 1:
        return 0
    phi = math.atan2(yc, xc)
    if phi < 0.0:
        phi += 2.0 * math.pi
    s = int(phi * (n_phi / (2.0 * math.pi)))
    if s >= n_phi:
        s = n_phi - 1
    return s


@njit(cache=True, inline="always")
def _row_cells(j0, j1, dy, cxn, m00, m01, m11, cols, prow, plut_size):
    """Azimuth look-up cell of columns [j0, j1) of a row: the diamond angle d ∈ [0, 4) of the corrected offset
    (1 − x/(|x| + |y|) for y >= 0, 3 + x/(|x| + |y|) below; monotone in the azimuth, one division) times
    plut_size/4, clipped (the centre pixel's NaN → cell 0, a boundary cell). A separate pass so that it
    vectorises; the sector is then plut[cell], or _sector's atan2 where plut holds −1 (see phi_lookup)."""
    bx = m01 * dy
    by = m11 * dy
    scale = plut_size * 0.25
    top = plut_size - 1.0
    for j in range(j0, j1):
        dx = cols[np.uint64(j)] - cxn
        xc = m00 * dx + bx
        yc = m01 * dx + by
        r = xc / (abs(xc) + abs(yc))
        d = (1.0 - r if yc >= 0.0 else 3.0 + r) * scale
        d = d if d >= 0.0 else 0.0
        d = d if d < top else top
        prow[np.uint64(j)] = np.int32(d)


@njit(cache=True)
def _seg_dist2(ax, ay, bx, by):
    """Squared distance of the origin from the segment A–B."""
    ex = bx - ax
    ey = by - ay
    ee = ex * ex + ey * ey
    t = 0.0
    if ee > 0.0:
        t = -(ax * ex + ay * ey) / ee
        if t < 0.0:
            t = 0.0
        elif t > 1.0:
            t = 1.0
    px = ax + t * ex
    py = ay + t * ey
    return px * px + py * py


@njit(cache=True)
def _pixel_extent(dy, dx, m00, m01, m11):
    """Smallest and largest corrected radius [px] over the pixel square centred at offset (dy, dx).

    Extremes are taken over squared distances and rooted once (the square root is monotone and correctly
    rounded, so this equals the extreme of the rooted distances bit for bit, with two roots instead of eight).
    """
    x0, y0 = _corrected(dy - 0.5, dx - 0.5, m00, m01, m11)
    x1, y1 = _corrected(dy - 0.5, dx + 0.5, m00, m01, m11)
    x2, y2 = _corrected(dy + 0.5, dx + 0.5, m00, m01, m11)
    x3, y3 = _corrected(dy + 0.5, dx - 0.5, m00, m01, m11)
    rmax = math.sqrt(max(x0 * x0 + y0 * y0, x1 * x1 + y1 * y1, x2 * x2 + y2 * y2, x3 * x3 + y3 * y3))
    if abs(dy) <= 0.5 and abs(dx) <= 0.5:
        return 0.0, rmax
    d2 = min(
        _seg_dist2(x0, y0, x1, y1),
        _seg_dist2(x1, y1, x2, y2),
        _seg_dist2(x2, y2, x3, y3),
        _seg_dist2(x3, y3, x0, y0),
    )
    return math.sqrt(d2), rmax


@njit(cache=True, inline="always")
def _row_span(nx, dy, cxn, m00, m01, m11, s_top):
    """Columns [j0, j1) of the row at offset dy that can hold pixels with squared corrected radius
    s = |M·(dx, dy)|² < s_top [px²]: the roots of the quadratic s(dx) = s_top, widened by a pixel each side
    (the exact test is still made per pixel, so the span only has to be conservative)."""
    if not (s_top < np.inf):
        return 0, nx
    bx = m01 * dy
    by = m11 * dy
    a = m00 * m00 + m01 * m01
    b = m00 * bx + m01 * by
    c = bx * bx + by * by
    disc = b * b - a * (c - (s_top * (1.0 + 1e-9) + 1e-9))
    if disc < 0.0:
        return 0, 0
    r = math.sqrt(disc)
    lo = max(-1.0, (-b - r) / a + cxn)
    hi = min(nx + 1.0, (-b + r) / a + cxn)
    j0 = max(0, int(math.floor(lo)) - 1)
    j1 = min(nx, int(math.ceil(hi)) + 2)
    if j1 < j0:
        j1 = j0
    return j0, j1


@njit(cache=True, inline="always")
def _row_s(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, inv_h, cmax, srow, crow):
    """Squared corrected radius s = |M·(dx, dy)|² [px²] of columns [j0, j1) of a row (the arithmetic of
    _pixel_entries before its square root; +inf for masked pixels) and its look-up cell min(s·inv_h, cmax).

    A separate pass so that it vectorises; ``cols`` holds the column indices as float64 (an int64 → float64
    conversion per pixel does not vectorise on AVX2 and would triple the cost of this pass).
    """
    bx = m01 * dy
    by = m11 * dy
    for j in range(j0, j1):
        dx = cols[np.uint64(j)] - cxn
        xc = m00 * dx + bx
        yc = m01 * dx + by
        s = xc * xc + yc * yc
        s = s if valid[np.uint64(base + j)] else np.inf
        srow[np.uint64(j)] = s
        crow[np.uint64(j)] = np.int32(min(s * inv_h, cmax))


@njit(cache=True, inline="always")
def _exact_bin(s, k, thr, nq, t0, tn):
    """Bin of the squared corrected radius s [px²] in a look-up cell that holds a threshold (table value
    k = −(lower bin + 1), see s_lookup): from the cell's lower bin by exact comparisons with the thresholds thr;
    n_q outside the bins. The kernels read the table themselves (``k = lut[cell]``, the bin where k >= 0) and
    call this only for k < 0."""
    if s >= t0 and s < tn:
        k = -k - 1
        while s >= thr[np.uint64(k + 1)]:
            k += 1
        return k
    return np.int64(nq)


@njit(cache=True)
def _pixel_entries(ny, nx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq, split, n_phi, valid, o_pix, o_bin, o_w):
    """Fill (pixel, bin, weight) entries in pixel order for one centre; returns the number of entries.

    bin = sector * n_q + k. ``valid`` is the flattened mask (True = use).
    """
    nq = edges.size - 1
    ne = 0
    for i in range(ny):
        dy = i - cy
        for j in range(nx):
            p = i * nx + j
            if not valid[p]:
                continue
            dx = j - cx
            xc, yc = _corrected(dy, dx, m00, m01, m11)
            s = _sector(xc, yc, n_phi)
            if not split:
                k = _find_bin(edges, math.sqrt(xc * xc + yc * yc) * pixel_size, inv_dq)
                if k >= 0:
                    o_pix[ne] = p
                    o_bin[ne] = s * nq + k
                    o_w[ne] = 1.0
                    ne += 1
            else:
                rmin, rmax = _pixel_extent(dy, dx, m00, m01, m11)
                qa = rmin * pixel_size
                qb = rmax * pixel_size
                if qb <= edges[0] or qa >= edges[nq]:
                    continue
                k = _find_bin(edges, qa, inv_dq)
                if k < 0:
                    k = 0
                while k < nq and edges[k] < qb:
                    lo = max(qa, edges[k])
                    hi = min(qb, edges[k + 1])
                    if hi > lo:
                        o_pix[ne] = p
                        o_bin[ne] = s * nq + k
                        o_w[ne] = (hi - lo) / (qb - qa)
                        ne += 1
                    k += 1
    return ne


@njit(cache=True)
def _grid_table(i0, ty, j0, tx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq, n_phi, out):
    """Combined bin sector·n_q + k of the pixel centres of rows [i0, i0 + ty) and columns [j0, j0 + tx) about
    (cy, cx) (rows and columns may lie off the detector), n_phi·n_q outside the bins: out (ty·tx,) int64.

    The arithmetic of _pixel_entries without splitting (dy = i − cy, dx = j − cx), so on the detector the
    bins are those of the plan's own tables bit for bit."""
    nq = edges.size - 1
    nb = n_phi * nq
    for r in range(ty):
        dy = (i0 + r) - cy
        for c in range(tx):
            dx = (j0 + c) - cx
            xc, yc = _corrected(dy, dx, m00, m01, m11)
            k = _find_bin(edges, math.sqrt(xc * xc + yc * yc) * pixel_size, inv_dq)
            out[r * tx + c] = nb if k < 0 else _sector(xc, yc, n_phi) * nq + k


# ----------------------------------------------------------------------------------------------------------
# tables over the squared radius and the azimuth (NumPy, built once per plan)
# ----------------------------------------------------------------------------------------------------------
def s_thresholds(edges: np.ndarray, pixel_size: float) -> np.ndarray:
    """Bin edges mapped exactly onto the squared corrected radius s [px²].

    The kernels with a fixed centre bin a pixel by q = fl(fl(√s)·pixel_size) against ``edges``. That map is
    monotone in s (a correctly rounded square root and product), so for each edge e there is a smallest double
    T with fl(fl(√T)·pixel_size) >= e, and ``q >= e`` exactly when ``s >= T``. T is found by bisection over the
    ordered bit patterns of the non-negative doubles, with the very arithmetic of the kernels, so binning s
    against T gives bit-for-bit the bins of binning q against the edges, without a square root per pixel.

    Parameters
    ----------
    edges : ndarray, shape (n_q + 1,)  [Å⁻¹]
    pixel_size : float  [Å⁻¹/px]

    Returns
    -------
    ndarray, shape (n_q + 1,)  [px²]
        Non-decreasing thresholds (+inf where no finite s reaches the edge).
    """
    e = np.asarray(edges, np.float64)
    lo = np.zeros(e.shape, np.int64)  # bit pattern of +0.0
    hi = np.full(e.shape, np.float64(np.inf)).view(np.int64)  # bit pattern of +inf: q(inf) = inf >= e
    while np.any(lo < hi):
        mid = lo + (hi - lo) // 2
        ok = np.sqrt(mid.view(np.float64)) * pixel_size >= e
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    return lo.view(np.float64)


def s_lookup(thr: np.ndarray) -> tuple[np.ndarray, float]:
    """Look-up table of the shifted kernels over the squared radius s [px²].

    Cell c (s·inv_h in [c, c + 1), widened by a relative 1e-9 against rounding) holds k, the bin of all
    its s (n_q when the whole cell lies outside the bins), when no threshold falls inside it, and −(k + 1)
    otherwise, k then being the bin of the cell's lower end (never above the bin of any s in the cell). The
    last cell takes every larger s as well.

    Returns
    -------
    lut : ndarray of int16 (int32 for n_q >= 32766), shape (_NLUT,)
    inv_h : float  [px⁻²]
        1 / cell width.
    """
    nq = thr.size - 1
    finite = thr[np.isfinite(thr)]
    top = float(finite.max()) if finite.size else 0.0
    if not top > 0.0:
        top = 1.0
    h = top * (1.0 + 1e-6) / (_NLUT - 1)  # the last cell starts above every finite threshold
    c = np.arange(_NLUT, dtype=np.float64)
    lo = c * h * (1.0 - 1e-9)
    k_lo = np.searchsorted(thr, lo, side="right") - 1  # bin of the cell's lower end: −1 below, n_q above
    k_hi = np.searchsorted(thr, (c + 1.0) * h * (1.0 + 1e-9), side="right") - 1
    k_hi[-1] = nq if thr[-1] <= lo[-1] else -1  # the last cell extends to +inf
    exact = k_lo == k_hi
    outside = (k_lo < 0) | (k_lo >= nq)
    lut = np.where(exact, np.where(outside, nq, k_lo), -(np.clip(k_lo, 0, nq - 1) + 1))
    return lut.astype(np.int16 if nq + 1 < 32767 else np.int32), 1.0 / h


def phi_lookup(n_phi: int) -> np.ndarray:
    """Sector of every cell of the diamond angle (see _row_cells), −1 where a sector boundary lies within
    _PHI_GUARD of the cell (the kernels then call atan2).

    Returns
    -------
    ndarray of int32, shape (_NPHI_LUT,)
        One dummy cell for n_phi = 1.
    """
    if n_phi <= 1:
        return np.zeros(1, np.int32)
    lo = np.arange(_NPHI_LUT) * (4.0 / _NPHI_LUT)
    hi = lo + 4.0 / _NPHI_LUT
    mid = 0.5 * (lo + hi)
    # a direction of diamond angle d: (1 − d, d), (1 − d, 2 − d), (d − 3, d − 4) ... quadrant by quadrant
    x = np.where(mid < 2.0, 1.0 - mid, mid - 3.0)
    y = np.where(mid < 2.0, 1.0 - np.abs(1.0 - mid), -(1.0 - np.abs(3.0 - mid)))
    plut = np.array([_sector(float(a), float(b), n_phi) for a, b in zip(x, y)], np.int32)
    ang = 2.0 * np.pi * np.arange(n_phi + 1) / n_phi
    bx, by = np.cos(ang), np.sin(ang)
    den = np.abs(bx) + np.abs(by)
    d_b = np.where(by >= 0.0, 1.0 - bx / den, 3.0 + bx / den)
    d_b = np.concatenate([d_b, d_b - 4.0, d_b + 4.0])  # the boundary at angle 0 sits at d = 0 and 4
    near = np.zeros(_NPHI_LUT, bool)
    for d in d_b:
        near |= (lo <= d + _PHI_GUARD) & (hi >= d - _PHI_GUARD)
    plut[near] = -1
    return plut


# ----------------------------------------------------------------------------------------------------------
# direct bins for sub-pixel shifts: float32 arithmetic with an exact fallback near every boundary
# ----------------------------------------------------------------------------------------------------------
#: atan(t) ≈ t·P(t²) on [0, 1] (P of degree 5, fitted for the smallest largest error), float32 coefficients
_ATAN_C = tuple(
    np.float32(c)
    for c in (
        0.9999772310256958,
        -0.3326232433319092,
        0.19354304671287537,
        -0.11643341928720474,
        0.052655115723609924,
        -0.01172225084155798,
    )
)
_A0, _A1, _A2, _A3, _A4, _A5 = _ATAN_C
#: bound [rad] of |_atan01(t) − atan(t)| on [0, 1] evaluated in float32 (measured largest error 1.8e-6; the test
#: test_direct_angle_error_bound checks the bound on a dense grid)
_ATAN_ERR = 4e-6
_HALF_PI32 = np.float32(0.5 * math.pi)
_PI32 = np.float32(math.pi)
_TWO_PI32 = np.float32(2.0 * math.pi)
#: pixels closer than this to the centre [px, corrected] take the exact path (their float32 angle would be
#: dominated by the rounding of tiny offsets)
_DIRECT_TINY = np.float32(1e-6)
#: largest margin [bins] the direct radius may need (otherwise, e.g. for very many bins, the look-up kernels run)
_DIRECT_MAX_EPS = 0.02


def direct_params(edges: np.ndarray, pixel_size: float, thr: np.ndarray, n_phi: int):
    """Constants of the direct-bin kernels, or None when they do not apply (non-uniform edges, an edge no
    finite radius reaches, or a margin above _DIRECT_MAX_EPS bins).

    The direct kernels compute, in float32, the fractional bin f = √s·(pixel_size·n_q / span) − e0·n_q / span of
    a pixel (s its squared corrected radius [px²]) and its fractional sector g = φ·n_phi / 2π (φ from a polynomial
    arctangent); a pixel whose f or g lies within a margin of an integer takes the exact arithmetic of the
    look-up kernels (thresholds, atan2), every other one floor(f), floor(g). The margins bound the float32
    rounding of every step, the polynomial's error and the edges' deviation from uniform, so the bins are
    bit for bit those of the exact arithmetic.

    Returns
    -------
    tuple (a, b, eps_r, c_phi, eps_phi) of float32, or None
        f = √s·a − b; margin eps_r [bins]; g = φ·c_phi; margin eps_phi [sectors].
    """
    e = np.asarray(edges, np.float64)
    nq = e.size - 1
    inv_dq = uniform_inv_dq(e)
    if not inv_dq > 0.0 or not np.isfinite(thr[-1]):
        return None
    dev = float(np.max(np.abs((e - e[0]) * inv_dq - np.arange(nq + 1))))
    a = pixel_size * inv_dq
    b = float(e[0]) * inv_dq
    f_top = math.sqrt(float(thr[-1])) * a + 2.0 * a  # largest f of a pixel in the row spans (≥ 1 px margin)
    eps_r = 2.0**-24 * 16.0 * (f_top + abs(b)) + 4.0 * dev + 1e-7
    if eps_r > _DIRECT_MAX_EPS:
        return None
    c_phi = n_phi / (2.0 * math.pi)
    eps_phi = c_phi * (_ATAN_ERR + 2e-6) + n_phi * 2.0**-20
    if n_phi > 1 and eps_phi > _DIRECT_MAX_EPS:
        return None
    return tuple(np.float32(v) for v in (a, b, eps_r, c_phi, eps_phi))


@njit(cache=True, inline="always")
def _atan01(t):
    """atan(t) for t in [0, 1] in float32 (error <= _ATAN_ERR) [rad]."""
    u = t * t
    return t * (_A0 + u * (_A1 + u * (_A2 + u * (_A3 + u * (_A4 + u * _A5)))))


@njit(cache=True, inline="always")
def _row_direct(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, a, b, eps_r, nq, spare, trow):
    """Bin of columns [j0, j1) of a row, no sectors: floor(f) (``spare`` outside the bins or masked), −1 where f
    lies within eps_r of an integer (the exact path decides). A separate pass so that it vectorises."""
    bx = m01 * dy
    by = m11 * dy
    one = np.float32(1.0)
    hi = one - eps_r
    for j in range(j0, j1):
        dx = cols[np.uint64(j)] - cxn
        xc = m00 * dx + bx
        yc = m01 * dx + by
        f = np.sqrt(np.float32(xc * xc + yc * yc)) * a - b
        fk = np.floor(f)
        fr = f - fk
        k = np.int32(fk)
        t = k if ((k >= 0) & (k < nq)) else spare
        t = t if ((fr > eps_r) & (fr < hi)) else np.int32(-1)
        trow[np.uint64(j)] = t if valid[np.uint64(base + j)] else spare


@njit(cache=True, inline="always", error_model="numpy")
def _row_direct_sectors(
    j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, a, b, eps_r, nq, c_phi, eps_phi, spare, trow
):
    """_row_direct with sectors: sector·n_q + k, the sector floor(g), −1 where f or g lies within its margin
    of an integer or the pixel within _DIRECT_TINY of the centre (the exact path decides)."""
    bx = m01 * dy
    by = m11 * dy
    one = np.float32(1.0)
    hi = one - eps_r
    hi_phi = one - eps_phi
    zero = np.float32(0.0)
    for j in range(j0, j1):
        dx = cols[np.uint64(j)] - cxn
        xc = m00 * dx + bx
        yc = m01 * dx + by
        f = np.sqrt(np.float32(xc * xc + yc * yc)) * a - b
        fk = np.floor(f)
        fr = f - fk
        k = np.int32(fk)
        x = np.float32(xc)
        y = np.float32(yc)
        ax = abs(x)
        ay = abs(y)
        mn = ax if ax < ay else ay
        mx = ay if ax < ay else ax
        ang = _atan01(mn / mx)
        ang = _HALF_PI32 - ang if ay > ax else ang
        ang = _PI32 - ang if x < zero else ang
        ang = _TWO_PI32 - ang if y < zero else ang
        g = ang * c_phi
        gk = np.floor(g)
        gr = g - gk
        inside = (k >= 0) & (k < nq)
        t = np.int32(gk) * np.int32(nq) + k if inside else spare
        ok = (fr > eps_r) & (fr < hi) & (~inside | ((gr > eps_phi) & (gr < hi_phi) & (mx > _DIRECT_TINY)))
        t = t if ok else np.int32(-1)
        trow[np.uint64(j)] = t if valid[np.uint64(base + j)] else spare


# ----------------------------------------------------------------------------------------------------------
# sectors: the most pixels one bin can hold for any centre (packed sums of the sub-pixel shifted sector kernel)
# ----------------------------------------------------------------------------------------------------------
def sector_count_bound(edges: np.ndarray, pixel_size: float, m00: float, m01: float, m11: float, n_phi: int) -> int:
    """Upper bound of the number of pixel centres any one (sector, radial bin) cell can hold, for every centre
    position [pixels] (n_phi >= 2).

    In corrected coordinates x' = M·(dx, dy) the pixel centres form a lattice whose cells M·[−½, ½]² are disjoint,
    of area det M, each within h (half its longer diagonal) of its centre. The cells of the centres inside a bin
    region K (radii [r_lo, r_hi) [px], a wedge of angle α = 2π/n_phi <= π) lie inside K grown by h, whose area is
    at most the annular sector of radii [r_lo − h, r_hi + h] plus the two half-strips of width h along the
    wedge's sides and the disc of radius h at its apex, so the count is at most that area / det M. Radii are
    widened by 1e-9 relative (the rounding of the binning arithmetic is far below).

    Parameters
    ----------
    edges : ndarray  [Å⁻¹]
    pixel_size : float  [Å⁻¹/px]
    m00, m01, m11 : float
        Entries of the symmetric ellipse-correction matrix M.
    n_phi : int
        Number of sectors (>= 2).

    Returns
    -------
    int
        The bound over all bins [pixels].
    """
    e = np.asarray(edges, np.float64) / pixel_size
    h = 0.5 * max(math.hypot(m00 + m01, m01 + m11), math.hypot(m00 - m01, m01 - m11)) + 1e-6
    slack = 1e-9 * float(np.abs(e).max()) + 1e-9
    r0 = np.maximum(e[:-1] - h - slack, 0.0)
    r1 = e[1:] + h + slack
    alpha = 2.0 * math.pi / n_phi
    area = 0.5 * alpha * (r1 * r1 - r0 * r0) + 2.0 * h * (r1 - np.maximum(r0 - h, 0.0)) + math.pi * h * h
    det = abs(m00 * m11 - m01 * m01)
    return int(math.floor(float(area.max()) / det)) + 1


def sector_segments(m00: float, m01: float, m11: float, n_phi: int):
    """Where the rows of the detector cross the sector boundaries, for the direct sector kernel (n_phi >= 2).

    Along a row at offset dy (≠ 0) from the centre the corrected offset M·(dx, dy) moves on a straight line that
    misses the origin, so its azimuth is monotone in dx and the row crosses each boundary ray φ_s = 2π s / n_phi
    at most once, at dx = dy·r_s with r_s = −(M e₂ × u_s) / (M e₁ × u_s) (u_s the ray's direction) — which rays
    a row crosses, and in which order, depends only on the sign of dy (scaling dy scales the crossing points).
    Between two crossings the sector is constant; it is found here once per sign from a point inside each segment.

    Returns
    -------
    q : ndarray (2, n_phi) float64
        For dy > 0 (row 0) and dy < 0 (row 1): crossing k at column cx + |dy|·q[·, k], ascending in k.
    gain : ndarray (2, n_phi) float64
        |M e₁ × u_s| of crossing k: a pixel at distance t [px] along the row from a crossing lies t·gain from the
        boundary line (the margins of the kernel).
    seg : ndarray (2, n_phi + 1) int64
        Sector of segment k (before crossing k; the last after the last crossing).
    n_cross : ndarray (2,) int64
        Crossings per sign.
    """
    q = np.zeros((2, n_phi))
    gain = np.ones((2, n_phi))
    seg = np.zeros((2, n_phi + 1), np.int64)
    n_cross = np.zeros(2, np.int64)
    e1 = (m00, m01)
    e2 = (m01, m11)

    def sector_at(dx, dy):
        x = e1[0] * dx + e2[0] * dy
        y = e1[1] * dx + e2[1] * dy
        phi = math.atan2(y, x) % (2.0 * math.pi)
        return min(int(phi * n_phi / (2.0 * math.pi)), n_phi - 1)

    for row, dy in enumerate((1.0, -1.0)):
        cross = []
        for s in range(n_phi):
            phi = 2.0 * math.pi * s / n_phi
            ux, uy = math.cos(phi), math.sin(phi)
            a = e1[0] * uy - e1[1] * ux
            b = e2[0] * uy - e2[1] * ux
            if a == 0.0:
                continue  # the ray is parallel to the rows: never crossed
            dx = -dy * b / a
            if (e1[0] * dx + e2[0] * dy) * ux + (e1[1] * dx + e2[1] * dy) * uy > 0.0:  # the ray, not its opposite
                cross.append((dx, abs(a), s))
        cross.sort()
        k = len(cross)
        n_cross[row] = k
        rays = [c[2] for c in cross]
        for i, (dx, a, _) in enumerate(cross):
            q[row, i] = dx
            gain[row, i] = a
        # the azimuth decreases along rows below the centre (dy > 0: d φ / d dx = −dy·det M / |M·(dx, dy)|²) and
        # increases above it, so crossing ray s leads from sector s into s − 1 (dy > 0) or from s − 1 into s
        if k == 0:
            seg[row, 0] = sector_at(0.0, dy)
        for i, ray in enumerate(rays):
            if i == 0:
                seg[row, 0] = ray if dy > 0 else (ray - 1) % n_phi
            seg[row, i + 1] = (ray - 1) % n_phi if dy > 0 else ray
    return q, gain, seg, n_cross
