"""Radial (azimuthal) integration: the only place in sei-send that bins detector pixels by radius.

Plan once, integrate many: :func:`make_plan` turns the detector geometry (shape, centre, pixel size, ellipse
correction, mask, bins) into per-pixel index tables; :meth:`RadialPlan.integrate` applies them to any stack of
patterns ``(..., ny, nx)`` (NumPy array, memmap, h5py dataset, dask array) and returns :class:`RadialProfiles`;
:meth:`RadialPlan.mean_profiles` gives only its ``mean`` and ``sem_poisson``, straight into (float32) arrays
(many-sector maps of whole scans: 90×60 patterns × 32 sectors in ≈ 0.3 s instead of ≈ 1.4 s).

Conventions
-----------
* Q = 1/d [Å⁻¹] (no 2π). The Q of a pixel is its (ellipse-corrected) distance from the centre in pixels times
  ``pixel_size`` [Å⁻¹/px] (the small-angle detector mapping used throughout the toolkit).
* Pixel (i, j) (row i, column j) has its centre at index coordinates (i, j); its area spans
  [i − ½, i + ½] × [j − ½, j + ½]. abTEM puts zero frequency at index ``n // 2`` (:func:`abtem_center`);
  pyFAI measures from pixel corners, so its centre of pixel i is at i + ½ (:func:`center_from_pyfai`,
  :func:`center_to_pyfai`).
* Bin k holds pixels with ``edges[k] <= Q < edges[k + 1]``.
* Ellipse correction (``ellipse_ratio`` ρ, ``ellipse_angle`` θ [rad]): the recorded pattern is taken to be
  stretched by the factor ρ along the direction at angle θ, measured from the +x axis (increasing column
  index j) towards the +y axis (increasing row index i). A ring of true radius R then appears as an ellipse
  with semi-axis ρ·R along θ and R perpendicular to it. For a pixel at offset (dy, dx) = (i − cy, j − cx),
  with u = dx·cos θ + dy·sin θ and v = −dx·sin θ + dy·cos θ, the corrected radius is
  ``r = sqrt((u / ρ)² + v²)`` [px]: the component along θ is divided by ρ, the perpendicular one is kept.
* Sectors (``n_phi``): the azimuth φ of a pixel is the angle of its ellipse-corrected offset vector, from +x
  towards +y, in [0, 2π); sector s covers [2π s / n_phi, 2π (s + 1) / n_phi).
* Pixel splitting: a pixel's radial extent is [r_min, r_max] with r_max the largest corner radius and r_min
  the exact smallest distance of the (corrected) pixel square from the centre (0 if it contains the
  centre); its intensity is spread uniformly over that extent, each bin receiving the overlapping fraction.
  Without splitting a pixel goes wholly to the bin of its centre.

Statistics per bin (weights w are 1 without splitting, the overlap fractions with it)
---------------------------------------------------------------------------------------
``count`` = Σw, ``sum`` = Σw·I, ``mean`` = sum / count (NaN in empty bins),
``sem_poisson`` = sqrt(Σw²·I) / count (= sqrt(sum) / count without splitting; for counts data),
``sem_azimuthal`` = sqrt(σ² / (n_eff − 1)) with σ² = Σw(I − mean)² / Σw and n_eff = (Σw)² / Σw²
(= std(ddof=1) / sqrt(n) without splitting): the scatter of pixel values around the ring.
For ``statistic="clipped"`` these describe the pixels kept by the clipping; for ``"median"``, ``mean`` holds the
weighted median and ``sem_azimuthal`` is multiplied by sqrt(π/2) (the median's efficiency for normal noise).

Kernels (numba, ``parallel=True`` over patterns, each thread owns its patterns' output rows)
--------------------------------------------------------------------------------------------
* fixed centre, no splitting: a per-pixel unsigned table ``bin·4 + p % 4`` built once (four interleaved
  accumulator copies break the store-to-load chains of scatter-adds into the same bin), visited only over the
  columns of each row that hold used pixels; uint8/uint16 data are summed exactly in int64 (no overflow, no
  float conversion of the stack); other dtypes in float64.
* per-pattern centres (``shifts``), no splitting: per row only the columns that can reach a bin (the roots of
  a quadratic), a vectorised pass for the squared corrected radius s, then the bin of s from a look-up table
  whose cells are exact except where a threshold falls inside (then an exact comparison). The thresholds are
  the edges mapped exactly onto s (for each edge the smallest double s with fl(fl(√s)·pixel_size) >= edge,
  by bisection), so the bins are bit for bit those of comparing q = √s·pixel_size with the edges, without a
  square root per pixel. For uint8/uint16 the count and the sum share one int64 accumulator (count in the
  bits from 2⁴⁰ up).
* split pixels: (pixel, bin, weight) entries in float64 built once for a fixed centre; with shifts each
  pixel's radial extent is computed on the fly and accumulated directly (no entry list per pattern).
* whole-pixel shifts (every shift an integer number of pixels, e.g. ``fitting.profiles``' ``shift_mode=
  "integer"``), no splitting: detector pixel (a, b) takes the bin of cell (a − dy, b − dx) of a fixed table
  built about the plan's centre on a grid extending the detector by a margin ≥ the largest shift (the
  arithmetic of the plan's own tables, so on the detector the bins are theirs bit for bit); no geometry per
  pixel, as fast as a fixed centre, also with sectors; counts accumulated per pattern (pixels off the moved
  table, masked — the mask applies to detector pixels, as for any shift — or NaN are not counted). Equal to the
  sub-pixel shifted kernels up to ties broken by the last bit of the centre offset.
* sectors with sub-pixel shifts: as the shifted kernels plus the sector of each pixel from a look-up table
  over its "diamond angle" (one division in a vectorised pass); the ≈ 1 % of pixels whose table cell holds a
  sector boundary take the exact atan2, so the sectors are atan2's bit for bit (≈ 1.7× faster than an atan2
  for every pixel; still ≈ 5× the cost without sectors: the 32× larger accumulators leave the L1 cache).
* median and sigma clipping: general entry lists (per pattern with shifts).
Every path bins with the same arithmetic (q = |M·(dx, dy)|·pixel_size, M the symmetric ellipse-correction
matrix; exact search of ``edges``), so all paths agree with each other and with the slow reference in
``tests/reference.py``; ``NUMBA_DISABLE_JIT=1`` gives identical results.
Hot loops cast their indices to unsigned (numba tests every signed index it cannot prove non-negative for
wraparound, a third of the cost of a scatter-add loop) and call no helper that takes arrays (reference
counting on every call tripled the cost of the shifted kernel).

Benchmark (``bench/radial.py``, 2 cores, 5400 uint16 Poisson patterns, 1-px bins, ratios to pyFAI's fastest
``integrate1d`` method measured in the same run; 2026-11-25 on an idle 2-core AMD EPYC, two runs):

=====================================  =========================  =========================
case                                   256²                       128²
=====================================  =========================  =========================
fixed centre                           33 000/s, 23–25×           124 000/s, 36–49×
per-pattern centre + ellipse + mask    11 100–12 800/s, 7.4–9.7×  46 000–60 000/s, 17–18×
90×60 scan of 256² (fixed, in memory)  0.164–0.168 s
=====================================  =========================  =========================

(before this kernel work, same machine and conditions: 256² 11× and 2.6×, 128² 23× and 6×, scan 0.21 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads

from simkit.units import wavelength

__all__ = [
    "RadialPlan",
    "RadialProfiles",
    "abtem_center",
    "center_from_pyfai",
    "center_to_pyfai",
    "make_plan",
    "make_plan_from_geometry",
    "pixel_size_from_mrad",
    "weight_qn",
]

STATISTICS = ("mean", "clipped", "median")
#: number of accumulator fields per bin returned by the kernels: Σw, Σw·I, Σw·I², Σw², Σw²·I, statistic
_NF = 6
_MAX_CLIP_ITER = 50
#: chunks with fewer patterns run on one thread (the parallel kernels are called with set_num_threads(1))
_MIN_PARALLEL = 4


# ----------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------
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
    m = float(mrad_per_pixel)
    if not np.isfinite(m) or m <= 0:
        raise ValueError(f"mrad_per_pixel={mrad_per_pixel!r}: must be a positive angle per pixel [mrad]")
    return m * 1e-3 / wavelength(energy)


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


# ----------------------------------------------------------------------------------------------------------
# numba kernels (arrays and scalars in, arrays out). Each has a NumPy twin in tests/reference.py.
# ----------------------------------------------------------------------------------------------------------
@njit(cache=True)
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


#: cells of the azimuth look-up table of the sub-pixel shifted sector kernels (see _phi_lookup)
_NPHI_LUT = 4096
#: half-width [diamond-angle units, 4 per turn] around a sector boundary inside which the exact atan2 decides
_PHI_GUARD = 1e-7


@njit(cache=True, inline="always")
def _row_cells(j0, j1, dy, cxn, m00, m01, m11, cols, prow, plut_size):
    """Azimuth look-up cell of columns [j0, j1) of a row: the diamond angle d ∈ [0, 4) of the corrected offset
    (1 − x/(|x| + |y|) for y >= 0, 3 + x/(|x| + |y|) below; monotone in the azimuth, one division) times
    plut_size/4, clipped (the centre pixel's NaN → cell 0, a boundary cell). A separate pass so that it
    vectorises; the sector is then plut[cell], or _sector's atan2 where plut holds −1 (see _phi_lookup)."""
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
def _accumulate_one(img, pix, bins, w, ne, acc):
    """acc[(Σw, Σw·I, Σw·I², Σw², Σw²·I), bin] over the first ne entries, skipping NaN pixels."""
    for e in range(ne):
        v = float(img[pix[e]])
        if v != v:
            continue
        b = bins[e]
        we = w[e]
        acc[0, b] += we
        acc[1, b] += we * v
        acc[2, b] += we * v * v
        acc[3, b] += we * we
        acc[4, b] += we * we * v


@njit(parallel=True, cache=True)
def _k_entries(data, pix, bins, w, out):
    """Fixed centre, general (split pixels and/or sectors): data (N, npix) → out (N, 6, nb)."""
    n_pat = data.shape[0]
    ne = pix.size
    for n in prange(n_pat):
        out[n, :, :] = 0.0
        _accumulate_one(data[n], pix, bins, w, ne, out[n])
        out[n, 5, :] = np.nan


#: interleaved accumulator copies: pixel (i, j) adds to copy j % _W, which breaks the store-to-load dependency
#: chains of consecutive scatter-adds into the same bin (neighbouring pixels mostly share a bin)
_W = 4

# Indices below are cast to unsigned (np.uint64) where the kernels index arrays inside their hot loops: numba
# emits a negative-index wraparound test for every signed index it cannot prove non-negative, which costs
# about a third of the time of a scatter-add loop.


@njit(parallel=True, cache=True)
def _k_table_uint(data, table, spans, nx, nb, counts, out):
    """Fixed centre, no splitting, uint8/uint16 data: exact int64 sums (never overflow).

    data (N, npix); table[p] = bin·_W + j % _W (bin = nb for unused pixels), unsigned; spans (ny, 2) the
    columns [j0, j1) of each row holding used pixels; counts[b] pixels per bin.
    """
    n_pat = data.shape[0]
    ny = spans.shape[0]
    for n in prange(n_pat):
        s1 = np.zeros((nb + 1) * _W, np.int64)
        s2 = np.zeros((nb + 1) * _W, np.int64)
        img = data[n]
        for i in range(ny):
            for p in range(i * nx + spans[i, 0], i * nx + spans[i, 1]):
                pu = np.uint64(p)
                v = np.int64(img[pu])
                t = table[pu]
                s1[t] += v
                s2[t] += v * v
        for b in range(nb):
            a = 0
            q = 0
            for u in range(_W):
                a += s1[b * _W + u]
                q += s2[b * _W + u]
            out[n, 0, b] = counts[b]
            out[n, 1, b] = a
            out[n, 2, b] = q
            out[n, 3, b] = counts[b]
            out[n, 4, b] = a
            out[n, 5, b] = np.nan


@njit(parallel=True, cache=True)
def _k_table_float(data, table, spans, nx, nb, counts, out):
    """As _k_table_uint for any real dtype: float64 sums; NaN pixels are skipped and not counted."""
    n_pat = data.shape[0]
    ny = spans.shape[0]
    for n in prange(n_pat):
        s1 = np.zeros((nb + 1) * _W)
        s2 = np.zeros((nb + 1) * _W)
        bad = np.zeros((nb + 1) * _W, np.int64)
        img = data[n]
        for i in range(ny):
            for p in range(i * nx + spans[i, 0], i * nx + spans[i, 1]):
                pu = np.uint64(p)
                v = np.float64(img[pu])
                t = table[pu]
                if v != v:
                    bad[t] += 1
                    continue
                s1[t] += v
                s2[t] += v * v
        for b in range(nb):
            a = 0.0
            q = 0.0
            c = counts[b]
            for u in range(_W):
                a += s1[b * _W + u]
                q += s2[b * _W + u]
                c -= bad[b * _W + u]
            out[n, 0, b] = c
            out[n, 1, b] = a
            out[n, 2, b] = q
            out[n, 3, b] = c
            out[n, 4, b] = a
            out[n, 5, b] = np.nan


#: packing of (count, Σ I) into one int64 for uint8/uint16 data: count in the bits from _CSHIFT up (< 2^23 pixels
#: per bin), Σ I below (< 2^24 · 65535 < 2^40)
_CSHIFT = 40
#: cells of the squared-radius look-up table of the shifted kernels (see _s_lookup); 16384 cells keep the
#: fraction of pixels that need an exact threshold comparison near n_q / 16384
_NLUT = 16384


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


@njit(cache=True)
def _shift_one_uint(img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, valid, cols, srow, crow, s1, s2):
    """One uint8/uint16 pattern about centre (cyn, cxn), no splitting, no sectors: s1[t] += I + 2^_CSHIFT (count
    and Σ I), s2[t] += I² with t = k·_W + j % _W; outside pixels go to the spare bin n_q.

    A function of its own (not inlined in the prange loop), and the sector variant another one: LLVM optimises
    the loop better this way.
    """
    nq = thr.size - 1
    one = np.int64(1) << _CSHIFT
    t0 = thr[0]
    tn = thr[nq]
    cmax = lut.size - 1.0
    for i in range(ny):
        dy = i - cyn
        j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
        base = i * nx
        _row_s(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, inv_h, cmax, srow, crow)
        for j in range(j0, j1):
            # slot base k·_W of s via the look-up table (n_q·_W outside the bins); written out here rather than
            # in a helper: a helper taking arrays costs reference counting on every call
            k = np.int64(lut[np.uint64(crow[np.uint64(j)])])
            if k < 0:
                s = srow[np.uint64(j)]
                if s >= t0 and s < tn:
                    k = -k - 1
                    while s >= thr[np.uint64(k + 1)]:
                        k += 1
                else:
                    k = nq
                k *= _W
            t = np.uint64(k + (j & 3))
            v = np.int64(img[np.uint64(base + j)])
            s1[t] += v | one
            s2[t] += v * v


@njit(cache=True)
def _shift_one_uint_sectors(
    img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, cols, srow, crow, prow, s1, s2
):
    """_shift_one_uint with n_phi sectors: t = (sector·n_q + k)·_W + j % _W, spare bin n_phi·n_q."""
    nq = thr.size - 1
    nb = n_phi * nq
    one = np.int64(1) << _CSHIFT
    t0 = thr[0]
    tn = thr[nq]
    cmax = lut.size - 1.0
    for i in range(ny):
        dy = i - cyn
        j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
        base = i * nx
        _row_s(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, inv_h, cmax, srow, crow)
        _row_cells(j0, j1, dy, cxn, m00, m01, m11, cols, prow, plut.size)
        for j in range(j0, j1):
            k = np.int64(lut[np.uint64(crow[np.uint64(j)])])
            if k < 0:
                s = srow[np.uint64(j)]
                if s >= t0 and s < tn:
                    k = -k - 1
                    while s >= thr[np.uint64(k + 1)]:
                        k += 1
                else:
                    k = nq
            else:
                k //= _W
            if k < nq:
                sc = np.int64(plut[np.uint64(prow[np.uint64(j)])])
                if sc < 0:  # a sector boundary within the cell: atan2 decides
                    dx = cols[np.uint64(j)] - cxn
                    sc = _sector(m00 * dx + m01 * dy, m01 * dx + m11 * dy, n_phi)
                k += sc * nq
            else:
                k = nb
            t = np.uint64(k * _W + (j & 3))
            v = np.int64(img[np.uint64(base + j)])
            s1[t] += v | one
            s2[t] += v * v


@njit(cache=True)
def _shift_one_float(img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, valid, cols, srow, crow, s0, s1, s2):
    """As _shift_one_uint for float32/float64 data: s0 += 1, s1 += I, s2 += I² in float64; NaN pixels skipped."""
    nq = thr.size - 1
    t0 = thr[0]
    tn = thr[nq]
    cmax = lut.size - 1.0
    for i in range(ny):
        dy = i - cyn
        j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
        base = i * nx
        _row_s(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, inv_h, cmax, srow, crow)
        for j in range(j0, j1):
            v = np.float64(img[np.uint64(base + j)])
            if v != v:
                continue
            # slot base k·_W via the look-up table, as in _shift_one_uint
            k = np.int64(lut[np.uint64(crow[np.uint64(j)])])
            if k < 0:
                s = srow[np.uint64(j)]
                if s >= t0 and s < tn:
                    k = -k - 1
                    while s >= thr[np.uint64(k + 1)]:
                        k += 1
                else:
                    k = nq
                k *= _W
            t = np.uint64(k + (j & 3))
            s0[t] += 1.0
            s1[t] += v
            s2[t] += v * v


@njit(cache=True)
def _shift_one_float_sectors(
    img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, cols, srow, crow, prow, s0, s1, s2
):
    """_shift_one_float with n_phi sectors (as _shift_one_uint_sectors)."""
    nq = thr.size - 1
    nb = n_phi * nq
    t0 = thr[0]
    tn = thr[nq]
    cmax = lut.size - 1.0
    for i in range(ny):
        dy = i - cyn
        j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
        base = i * nx
        _row_s(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, inv_h, cmax, srow, crow)
        _row_cells(j0, j1, dy, cxn, m00, m01, m11, cols, prow, plut.size)
        for j in range(j0, j1):
            v = np.float64(img[np.uint64(base + j)])
            if v != v:
                continue
            # bin k of s via the look-up table (n_q outside the bins), as in _shift_one_uint
            k = np.int64(lut[np.uint64(crow[np.uint64(j)])])
            if k < 0:
                s = srow[np.uint64(j)]
                if s >= t0 and s < tn:
                    k = -k - 1
                    while s >= thr[np.uint64(k + 1)]:
                        k += 1
                else:
                    k = nq
            else:
                k //= _W
            if k < nq:
                sc = np.int64(plut[np.uint64(prow[np.uint64(j)])])
                if sc < 0:  # a sector boundary within the cell: atan2 decides
                    dx = cols[np.uint64(j)] - cxn
                    sc = _sector(m00 * dx + m01 * dy, m01 * dx + m11 * dy, n_phi)
                k += sc * nq
            else:
                k = nb
            t = np.uint64(k * _W + (j & 3))
            s0[t] += 1.0
            s1[t] += v
            s2[t] += v * v


@njit(parallel=True, cache=True)
def _k_shift_uint(data, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, out):
    """Per-pattern centres (cy + shifts[n, 0], cx + shifts[n, 1]), no splitting, uint8/uint16 data.

    Pixels are binned by their squared corrected radius s against thresholds thr (the s-space images of the bin
    edges, exact: see _s_thresholds) through a look-up table; only the columns of each row that can reach a bin
    are visited; exact int64 sums with (count, Σ I) packed in one accumulator.
    """
    n_pat = data.shape[0]
    nb = n_phi * (thr.size - 1)
    low = (np.int64(1) << _CSHIFT) - 1
    for n in prange(n_pat):
        s1 = np.zeros((nb + 1) * _W, np.int64)
        s2 = np.zeros((nb + 1) * _W, np.int64)
        srow = np.empty(nx)
        crow = np.empty(nx, np.int32)
        prow = np.empty(nx if n_phi > 1 else 0, np.int32)
        cols = np.arange(nx).astype(np.float64)
        if n_phi == 1:
            _shift_one_uint(
                data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, thr, lut, inv_h, valid,
                cols, srow, crow, s1, s2,
            )  # fmt: skip
        else:
            _shift_one_uint_sectors(
                data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, thr, lut, inv_h, n_phi,
                plut, valid, cols, srow, crow, prow, s1, s2,
            )  # fmt: skip
        for b in range(nb):
            a = np.int64(0)
            q2 = np.int64(0)
            for u in range(_W):
                a += s1[b * _W + u]
                q2 += s2[b * _W + u]
            c = a >> _CSHIFT
            out[n, 0, b] = c
            out[n, 1, b] = a & low
            out[n, 2, b] = q2
            out[n, 3, b] = c
            out[n, 4, b] = a & low
            out[n, 5, b] = np.nan


@njit(parallel=True, cache=True)
def _k_shift_float(data, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, out):
    """As _k_shift_uint for float32/float64 data: float64 sums, NaN pixels skipped."""
    n_pat = data.shape[0]
    nb = n_phi * (thr.size - 1)
    for n in prange(n_pat):
        s0 = np.zeros((nb + 1) * _W)
        s1 = np.zeros((nb + 1) * _W)
        s2 = np.zeros((nb + 1) * _W)
        srow = np.empty(nx)
        crow = np.empty(nx, np.int32)
        prow = np.empty(nx if n_phi > 1 else 0, np.int32)
        cols = np.arange(nx).astype(np.float64)
        if n_phi == 1:
            _shift_one_float(
                data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, thr, lut, inv_h, valid,
                cols, srow, crow, s0, s1, s2,
            )  # fmt: skip
        else:
            _shift_one_float_sectors(
                data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, thr, lut, inv_h, n_phi,
                plut, valid, cols, srow, crow, prow, s0, s1, s2,
            )  # fmt: skip
        for b in range(nb):
            c = 0.0
            a = 0.0
            q2 = 0.0
            for u in range(_W):
                c += s0[b * _W + u]
                a += s1[b * _W + u]
                q2 += s2[b * _W + u]
            out[n, 0, b] = c
            out[n, 1, b] = a
            out[n, 2, b] = q2
            out[n, 3, b] = c
            out[n, 4, b] = a
            out[n, 5, b] = np.nan


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


@njit(cache=True)
def _offset_one_uint(img, ny, nx, pad, tx, dy, dx, table, spans, valid, use_mask, s1, s2):
    """One uint8/uint16 pattern moved by whole pixels (dy, dx): detector pixel (a, b) adds to the table cell
    (a − dy + pad, b − dx + pad); s1[t] += I + 2^_CSHIFT (count and Σ I), s2[t] += I²."""
    one = np.int64(1) << _CSHIFT
    for a in range(ny):
        i = a - dy + pad
        j0 = max(spans[i, 0], pad - dx)
        j1 = min(spans[i, 1], pad - dx + nx)
        tb = i * tx
        sb = a * nx + dx - pad  # detector index of table column j: sb + j
        for j in range(j0, j1):
            if use_mask and not valid[np.uint64(sb + j)]:
                continue
            t = np.uint64(table[np.uint64(tb + j)])
            v = np.int64(img[np.uint64(sb + j)])
            s1[t] += v | one
            s2[t] += v * v


@njit(cache=True)
def _offset_one_float(img, ny, nx, pad, tx, dy, dx, table, spans, valid, use_mask, s0, s1, s2):
    """As _offset_one_uint for float32/float64 data: s0 += 1, s1 += I, s2 += I² in float64; NaN pixels skipped."""
    for a in range(ny):
        i = a - dy + pad
        j0 = max(spans[i, 0], pad - dx)
        j1 = min(spans[i, 1], pad - dx + nx)
        tb = i * tx
        sb = a * nx + dx - pad
        for j in range(j0, j1):
            if use_mask and not valid[np.uint64(sb + j)]:
                continue
            v = np.float64(img[np.uint64(sb + j)])
            if v != v:
                continue
            t = np.uint64(table[np.uint64(tb + j)])
            s0[t] += 1.0
            s1[t] += v
            s2[t] += v * v


@njit(parallel=True, cache=True)
def _k_offset_uint(data, ishifts, ny, nx, pad, table, spans, nb, valid, use_mask, out):
    """Whole-pixel per-pattern shifts (ishifts (N, 2) int64, |shift| <= pad), no splitting, uint8/uint16 data.

    table: the interleaved bins (bin·_W + column % _W, unused cells → nb·_W + column % _W, unsigned) of a grid
    extending the detector by ``pad`` pixels on every side, about the plan's centre moved by (pad, pad); spans
    (ny + 2·pad, 2) the columns [j0, j1) of each grid row holding used cells. No geometry per pixel: one table
    read, as for a fixed centre; counts are accumulated (pixels off the moved table, masked or NaN are not).
    """
    n_pat = data.shape[0]
    tx = nx + 2 * pad
    low = (np.int64(1) << _CSHIFT) - 1
    for n in prange(n_pat):
        s1 = np.zeros((nb + 1) * _W, np.int64)
        s2 = np.zeros((nb + 1) * _W, np.int64)
        _offset_one_uint(data[n], ny, nx, pad, tx, ishifts[n, 0], ishifts[n, 1], table, spans, valid, use_mask, s1, s2)
        for b in range(nb):
            a = np.int64(0)
            q2 = np.int64(0)
            for u in range(_W):
                a += s1[b * _W + u]
                q2 += s2[b * _W + u]
            c = a >> _CSHIFT
            out[n, 0, b] = c
            out[n, 1, b] = a & low
            out[n, 2, b] = q2
            out[n, 3, b] = c
            out[n, 4, b] = a & low
            out[n, 5, b] = np.nan


@njit(parallel=True, cache=True)
def _k_offset_float(data, ishifts, ny, nx, pad, table, spans, nb, valid, use_mask, out):
    """As _k_offset_uint for float32/float64 data: float64 sums, NaN pixels skipped."""
    n_pat = data.shape[0]
    tx = nx + 2 * pad
    for n in prange(n_pat):
        s0 = np.zeros((nb + 1) * _W)
        s1 = np.zeros((nb + 1) * _W)
        s2 = np.zeros((nb + 1) * _W)
        _offset_one_float(
            data[n], ny, nx, pad, tx, ishifts[n, 0], ishifts[n, 1], table, spans, valid, use_mask, s0, s1, s2
        )
        for b in range(nb):
            c = 0.0
            a = 0.0
            q2 = 0.0
            for u in range(_W):
                c += s0[b * _W + u]
                a += s1[b * _W + u]
                q2 += s2[b * _W + u]
            out[n, 0, b] = c
            out[n, 1, b] = a
            out[n, 2, b] = q2
            out[n, 3, b] = c
            out[n, 4, b] = a
            out[n, 5, b] = np.nan


@njit(cache=True)
def _offset_sum_uint(img, ny, nx, pad, tx, dy, dx, table, spans, valid, use_mask, s1):
    """_offset_one_uint without Σ I²: s1[t] += I + 2^_CSHIFT (count and Σ I)."""
    one = np.int64(1) << _CSHIFT
    for a in range(ny):
        i = a - dy + pad
        j0 = max(spans[i, 0], pad - dx)
        j1 = min(spans[i, 1], pad - dx + nx)
        tb = i * tx
        sb = a * nx + dx - pad
        for j in range(j0, j1):
            if use_mask and not valid[np.uint64(sb + j)]:
                continue
            s1[np.uint64(table[np.uint64(tb + j)])] += np.int64(img[np.uint64(sb + j)]) | one


@njit(cache=True)
def _offset_sum_float(img, ny, nx, pad, tx, dy, dx, table, spans, valid, use_mask, s0, s1):
    """_offset_one_float without Σ I²: s0 += 1, s1 += I; NaN pixels skipped."""
    for a in range(ny):
        i = a - dy + pad
        j0 = max(spans[i, 0], pad - dx)
        j1 = min(spans[i, 1], pad - dx + nx)
        tb = i * tx
        sb = a * nx + dx - pad
        for j in range(j0, j1):
            if use_mask and not valid[np.uint64(sb + j)]:
                continue
            v = np.float64(img[np.uint64(sb + j)])
            if v != v:
                continue
            t = np.uint64(table[np.uint64(tb + j)])
            s0[t] += 1.0
            s1[t] += v


@njit(parallel=True, cache=True)
def _k_offset_mean_uint(data, ishifts, ny, nx, pad, table, spans, nb, valid, use_mask, mean, sem_p):
    """_k_offset_uint reduced to mean and sem_poisson (N, nb) of any float dtype, written per pattern (no
    accumulator array): the arithmetic of _mean_sem_one on the same sums (Σw²·I = Σ I without splitting)."""
    n_pat = data.shape[0]
    tx = nx + 2 * pad
    low = (np.int64(1) << _CSHIFT) - 1
    for n in prange(n_pat):
        s1 = np.zeros((nb + 1) * _W, np.int64)
        _offset_sum_uint(data[n], ny, nx, pad, tx, ishifts[n, 0], ishifts[n, 1], table, spans, valid, use_mask, s1)
        for b in range(nb):
            a = np.int64(0)
            for u in range(_W):
                a += s1[b * _W + u]
            s0 = np.float64(a >> _CSHIFT)
            m = np.nan
            sp = np.nan
            if s0 > 0:
                p = np.float64(a & low)
                m = p / s0
                sp = math.sqrt(p) / s0
            mean[n, b] = m
            sem_p[n, b] = sp


@njit(parallel=True, cache=True)
def _k_offset_mean_float(data, ishifts, ny, nx, pad, table, spans, nb, valid, use_mask, mean, sem_p):
    """As _k_offset_mean_uint for float32/float64 data (float64 sums, NaN pixels skipped)."""
    n_pat = data.shape[0]
    tx = nx + 2 * pad
    for n in prange(n_pat):
        s0 = np.zeros((nb + 1) * _W)
        s1 = np.zeros((nb + 1) * _W)
        _offset_sum_float(data[n], ny, nx, pad, tx, ishifts[n, 0], ishifts[n, 1], table, spans, valid, use_mask, s0, s1)
        for b in range(nb):
            c = 0.0
            a = 0.0
            for u in range(_W):
                c += s0[b * _W + u]
                a += s1[b * _W + u]
            m = np.nan
            sp = np.nan
            if c > 0:
                m = a / c
                if a >= 0:
                    sp = math.sqrt(abs(a)) / c
            mean[n, b] = m
            sem_p[n, b] = sp


@njit(cache=True)
def _split_accumulate(img, ny, nx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq, n_phi, valid, acc):
    """Split pixels about centre (cy, cx) straight into acc[(Σw, Σw·I, Σw·I², Σw², Σw²·I), bin]: the entries of
    _pixel_entries(split=True) in the same order and arithmetic as _accumulate_one, without the entry list."""
    nq = edges.size - 1
    # a pixel's corrected square reaches at most half its corrected diagonal (|E1| + |E2|) / 2 beyond its centre
    # (E1 = M·(1, 0), E2 = M·(0, 1)): rows are visited only over the columns whose centres lie within that
    # reach (plus a pixel) of the top edge
    reach = 0.5 * (math.sqrt(m00 * m00 + m01 * m01) + math.sqrt(m01 * m01 + m11 * m11)) + 1.0
    r_top = edges[nq] / pixel_size + reach
    for i in range(ny):
        dy = i - cy
        j0, j1 = _row_span(nx, dy, cx, m00, m01, m11, r_top * r_top)
        for j in range(j0, j1):
            p = i * nx + j
            if not valid[p]:
                continue
            v = float(img[p])
            if v != v:
                continue
            dx = j - cx
            rmin, rmax = _pixel_extent(dy, dx, m00, m01, m11)
            qa = rmin * pixel_size
            qb = rmax * pixel_size
            if qb <= edges[0] or qa >= edges[nq]:
                continue
            s = 0
            if n_phi > 1:
                xc, yc = _corrected(dy, dx, m00, m01, m11)
                s = _sector(xc, yc, n_phi)
            # first bin reached: _find_bin(edges, qa, inv_dq) clipped at 0, written out (a helper taking an
            # array costs reference counting per call)
            k = 0
            if qa >= edges[0]:
                if inv_dq > 0.0:
                    k = min(int((qa - edges[0]) * inv_dq), nq - 1)
                    while qa < edges[k]:
                        k -= 1
                    while qa >= edges[k + 1]:
                        k += 1
                else:
                    kh = nq
                    while kh - k > 1:  # invariant: edges[k] <= qa < edges[kh]
                        mid = (k + kh) // 2
                        if edges[mid] <= qa:
                            k = mid
                        else:
                            kh = mid
            while k < nq and edges[k] < qb:
                lo = max(qa, edges[k])
                hi = min(qb, edges[k + 1])
                if hi > lo:
                    we = (hi - lo) / (qb - qa)
                    b = s * nq + k
                    acc[0, b] += we
                    acc[1, b] += we * v
                    acc[2, b] += we * v * v
                    acc[3, b] += we * we
                    acc[4, b] += we * we * v
                k += 1


@njit(parallel=True, cache=True)
def _k_shifted(data, shifts, ny, nx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq, n_phi, valid, out):
    """Per-pattern centres (cy + shifts[n, 0], cx + shifts[n, 1]) with split pixels: extents on the fly."""
    n_pat = data.shape[0]
    for n in prange(n_pat):
        out[n, :, :] = 0.0
        _split_accumulate(
            data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, pixel_size, edges, inv_dq,
            n_phi, valid, out[n],
        )  # fmt: skip
        out[n, 5, :] = np.nan


@njit(cache=True)
def _stable_argsort(v):
    """Stable ascending argsort (bottom-up merge sort; cheaper to compile than numba's mergesort argsort)."""
    n = v.size
    a = np.arange(n)
    b = np.empty(n, np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            for k in range(lo, hi):
                if i < mid and (j >= hi or v[a[i]] <= v[a[j]]):
                    b[k] = a[i]
                    i += 1
                else:
                    b[k] = a[j]
                    j += 1
        a, b = b, a
        width *= 2
    return a


@njit(cache=True)
def _weighted_median(v, w):
    """Weighted median: v sorted (stably) ascending; smallest v[k] with cumulative weight >= half the total;
    exactly half → mean of v[k] and v[k+1]."""
    total = 0.0
    for k in range(v.size):
        total += w[k]
    half = 0.5 * total
    c = 0.0
    for k in range(v.size):
        c += w[k]
        if c >= half:
            if c == half and k + 1 < v.size:
                return 0.5 * (v[k] + v[k + 1])
            return v[k]
    return np.nan


@njit(cache=True)
def _robust_one(img, pix, bins, w, ne, nb, median, clip_sigma, acc):
    """Per-ring median or sigma-clipped mean for one pattern; acc as in _accumulate_one plus acc[5] = statistic."""
    # counting sort of the valid entries by bin (stable: pixel order kept within a bin)
    cnt = np.zeros(nb + 1, np.int64)
    for e in range(ne):
        if img[pix[e]] == img[pix[e]]:
            cnt[bins[e] + 1] += 1
    for b in range(nb):
        cnt[b + 1] += cnt[b]
    m = cnt[nb]
    vals = np.empty(m)
    wts = np.empty(m)
    pos = np.empty(nb, np.int64)
    for b in range(nb):
        pos[b] = cnt[b]
    for e in range(ne):
        v = float(img[pix[e]])
        if v != v:
            continue
        b = bins[e]
        vals[pos[b]] = v
        wts[pos[b]] = w[e]
        pos[b] += 1
    for b in range(nb):
        lo = cnt[b]
        hi = cnt[b + 1]
        acc[5, b] = np.nan
        if hi == lo:
            continue
        vb = vals[lo:hi]
        wb = wts[lo:hi]
        keep = np.ones(hi - lo, np.bool_)
        if median:
            order = _stable_argsort(vb)
            vs = np.empty(hi - lo)
            ws = np.empty(hi - lo)
            for t in range(hi - lo):
                vs[t] = vb[order[t]]
                ws[t] = wb[order[t]]
            acc[5, b] = _weighted_median(vs, ws)
        else:
            for _ in range(_MAX_CLIP_ITER):
                sw = 0.0
                swv = 0.0
                for t in range(hi - lo):
                    if keep[t]:
                        sw += wb[t]
                        swv += wb[t] * vb[t]
                mu = swv / sw
                sq = 0.0
                for t in range(hi - lo):
                    if keep[t]:
                        sq += wb[t] * (vb[t] - mu) * (vb[t] - mu)
                sd = math.sqrt(sq / sw)
                changed = False
                for t in range(hi - lo):
                    k = abs(vb[t] - mu) <= clip_sigma * sd
                    if k != keep[t]:
                        changed = True
                    keep[t] = k
                if not changed:
                    break
        for t in range(hi - lo):
            if keep[t]:
                acc[0, b] += wb[t]
                acc[1, b] += wb[t] * vb[t]
                acc[2, b] += wb[t] * vb[t] * vb[t]
                acc[3, b] += wb[t] * wb[t]
                acc[4, b] += wb[t] * wb[t] * vb[t]
        if not median and acc[0, b] > 0:
            acc[5, b] = acc[1, b] / acc[0, b]


@njit(parallel=True, cache=True)
def _k_robust(
    data, shifted, shifts, pix0, bins0, w0, ny, nx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq,
    split, n_phi, valid, cap, median, clip_sigma, out,
):  # fmt: skip
    """Median / sigma-clipped mean per ring; fixed tables (pix0, bins0, w0) or per-pattern centres."""
    n_pat = data.shape[0]
    nb = out.shape[2]
    for n in prange(n_pat):
        out[n, :, :] = 0.0
        if shifted:
            pix = np.empty(cap, np.int32)
            bins = np.empty(cap, np.int32)
            w = np.empty(cap, np.float64)
            ne = _pixel_entries(
                ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, pixel_size, edges, inv_dq, split,
                n_phi, valid, pix, bins, w,
            )  # fmt: skip
            _robust_one(data[n], pix, bins, w, ne, nb, median, clip_sigma, out[n])
        else:
            _robust_one(data[n], pix0, bins0, w0, pix0.size, nb, median, clip_sigma, out[n])


@njit(cache=True, inline="always")
def _finish_one(acc, n, statistic, root_half_pi, mean, total, count, sem_p, sem_a):
    """Bins of pattern n of _k_finish (inlined: no reference counting per call)."""
    nb = acc.shape[2]
    for b in range(nb):
        s0 = acc[n, 0, b]
        s1 = acc[n, 1, b]
        p = acc[n, 4, b]
        total[n, b] = s1
        count[n, b] = s0
        m = np.nan
        sp = np.nan
        sa = np.nan
        if s0 > 0:
            m = s1 / s0
            if p >= 0:
                sp = math.sqrt(abs(p)) / s0
            n_eff = s0 * s0 / acc[n, 3, b]
            if n_eff > 1 + 1e-12:
                sa = math.sqrt(max(acc[n, 2, b] / s0 - m * m, 0.0) / (n_eff - 1.0))
        if statistic == 2:
            m = acc[n, 5, b]
            sa = sa * root_half_pi
        elif statistic == 1 and s0 > 0:
            m = acc[n, 5, b]
        mean[n, b] = m
        sem_p[n, b] = sp
        sem_a[n, b] = sa


@njit(cache=True)
def _k_finish(acc, statistic, mean, total, count, sem_p, sem_a):
    """Accumulators acc (N, 6, nb) → mean, sum, count, sem_poisson, sem_azimuthal (N, nb) (module docstring).

    Serial: a few ns per bin, less than waking the thread pool costs for one pattern (_k_finish_parallel for
    many bins).

    statistic: 0 mean, 1 clipped (mean = acc[5] in filled bins), 2 median (mean = acc[5], sem_azimuthal times
    sqrt(π/2)). NaN where a quantity is undefined (empty bin, Σw²·I < 0, n_eff <= 1).
    """
    root_half_pi = math.sqrt(math.pi / 2.0)
    for n in range(acc.shape[0]):
        _finish_one(acc, n, statistic, root_half_pi, mean, total, count, sem_p, sem_a)


@njit(parallel=True, cache=True)
def _k_finish_parallel(acc, statistic, mean, total, count, sem_p, sem_a):
    """_k_finish with patterns spread over threads (same arithmetic per bin, so identical results)."""
    root_half_pi = math.sqrt(math.pi / 2.0)
    for n in prange(acc.shape[0]):
        _finish_one(acc, n, statistic, root_half_pi, mean, total, count, sem_p, sem_a)


@njit(cache=True, inline="always")
def _mean_sem_one(acc, n, mean, sem_p):
    """Mean and sem_poisson of pattern n: the arithmetic of _finish_one for statistic "mean" (float64, rounded
    once when stored into arrays of another float dtype)."""
    for b in range(acc.shape[2]):
        s0 = acc[n, 0, b]
        m = np.nan
        sp = np.nan
        if s0 > 0:
            m = acc[n, 1, b] / s0
            p = acc[n, 4, b]
            if p >= 0:
                sp = math.sqrt(abs(p)) / s0
        mean[n, b] = m
        sem_p[n, b] = sp


@njit(parallel=True, cache=True)
def _k_mean_sem(acc, mean, sem_p):
    """Accumulators acc (N, 6, nb) → mean and sem_poisson (N, nb) of any float dtype (RadialPlan.mean_profiles)."""
    for n in prange(acc.shape[0]):
        _mean_sem_one(acc, n, mean, sem_p)


@njit(cache=True)
def _k_mean_sem_serial(acc, mean, sem_p):
    """_k_mean_sem on one thread (a few patterns)."""
    for n in range(acc.shape[0]):
        _mean_sem_one(acc, n, mean, sem_p)


#: bins (patterns × bins) from which the finishing pass runs on all threads
_PARALLEL_FINISH_BINS = 1 << 16


# ----------------------------------------------------------------------------------------------------------
# data classes
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class RadialProfiles:
    """Radial (or sector) profiles of a stack of patterns.

    Attributes
    ----------
    q : ndarray, shape (n_q,)  [Å⁻¹]
        Bin centres.
    edges : ndarray, shape (n_q + 1,)  [Å⁻¹]
        Bin edges.
    mean : ndarray, shape (..., n_q) or (..., n_phi, n_q)  [intensity per pixel]
        Mean pixel intensity per bin (for ``statistic="median"`` the weighted median, for ``"clipped"`` the
        sigma-clipped mean); NaN in empty bins.
    sum : ndarray  [intensity]
        Σw·I over the bin's pixels (the pixels kept by clipping for ``"clipped"``).
    count : ndarray  [pixels]
        Pixel weight Σw in the bin (number of pixels without splitting).
    sem_poisson : ndarray  [intensity per pixel]
        Standard error of ``mean`` from counting statistics, sqrt(Σw²·I) / Σw (for data in counts).
    sem_azimuthal : ndarray  [intensity per pixel]
        Standard error of ``mean`` from the scatter of pixel values around the ring (times sqrt(π/2) for the
        median).
    statistic : str
        ``"mean"``, ``"clipped"`` or ``"median"``.
    phi_edges : ndarray or None, shape (n_phi + 1,)  [rad]
        Sector edges when sectors were requested.
    """

    q: np.ndarray
    edges: np.ndarray
    mean: np.ndarray
    sum: np.ndarray
    count: np.ndarray
    sem_poisson: np.ndarray
    sem_azimuthal: np.ndarray
    statistic: str = "mean"
    phi_edges: np.ndarray | None = None


def weight_qn(profiles: RadialProfiles, n: float) -> RadialProfiles:
    """Weight profiles by Qⁿ (I·Qⁿ), e.g. n = 1 for the I·Q curves peaks are read from.

    Parameters
    ----------
    profiles : RadialProfiles
    n : float
        Power of Q [Å⁻¹] applied to ``mean``, ``sum``, ``sem_poisson`` and ``sem_azimuthal``; ``count`` is
        unchanged.

    Returns
    -------
    RadialProfiles
        Same shapes; the weighted quantities carry an extra unit of Å⁻ⁿ.
    """
    if not isinstance(profiles, RadialProfiles):
        raise TypeError(f"profiles={type(profiles).__name__}: expected a RadialProfiles")
    n = float(n)
    if not np.isfinite(n):
        raise ValueError(f"n={n!r}: must be a finite power of Q")
    f = profiles.q**n
    return replace(
        profiles,
        mean=profiles.mean * f,
        sum=profiles.sum * f,
        sem_poisson=profiles.sem_poisson * f,
        sem_azimuthal=profiles.sem_azimuthal * f,
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class RadialPlan:
    """Geometry, bins and precomputed per-pixel index tables for radial integration; build with
    :func:`make_plan` or :func:`make_plan_from_geometry`.

    Attributes
    ----------
    shape : tuple of int  [px]
        Detector ``(ny, nx)``.
    center : tuple of float  [px]
        ``(cy, cx)`` in index coordinates (pixel (i, j) centred at (i, j)).
    pixel_size : float  [Å⁻¹/px]
    edges : ndarray  [Å⁻¹]
        Strictly increasing bin edges, shape (n_q + 1,).
    mask : ndarray of bool, shape ``shape``
        True = use the pixel.
    ellipse_ratio : float
        Stretch ρ of the recorded pattern along ``ellipse_angle`` (see the module docstring).
    ellipse_angle : float  [rad]
        Direction of the stretch, from +x (columns) towards +y (rows).
    split_pixels : bool
        Share each pixel among the bins its radial extent covers.
    pixel_index, bin_index : ndarray of int32
        Entries (flattened pixel index, bin index) for the plan's centre, in pixel order.
    weight : ndarray of float64
        Entry weights (1 without splitting).
    bin_table : ndarray of int32, shape (ny·nx,)
        Bin of each pixel without splitting; n_q for pixels that are masked or outside the bins (all n_q with
        splitting: use the entries).
    """

    shape: tuple[int, int]
    center: tuple[float, float]
    pixel_size: float
    edges: np.ndarray
    mask: np.ndarray = field(repr=False)
    ellipse_ratio: float = 1.0
    ellipse_angle: float = 0.0
    split_pixels: bool = False
    pixel_index: np.ndarray = field(repr=False)
    bin_index: np.ndarray = field(repr=False)
    weight: np.ndarray = field(repr=False)
    bin_table: np.ndarray = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def q(self) -> np.ndarray:
        """Bin centres [Å⁻¹]."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def n_q(self) -> int:
        """Number of Q bins."""
        return self.edges.size - 1

    @property
    def count(self) -> np.ndarray:
        """Pixel weight per bin for the plan's centre with no NaN pixels [pixels], shape (n_q,)."""
        return np.bincount(self.bin_index, weights=self.weight, minlength=self.n_q)[: self.n_q]

    # -- geometry parameters handed to the kernels --------------------------------------------------------
    def _geo(self):
        """Entries (m00, m01, m11) of the symmetric correction matrix M = R(θ)·diag(1/ρ, 1)·R(θ)ᵀ."""
        c, s, inv = math.cos(self.ellipse_angle), math.sin(self.ellipse_angle), 1.0 / self.ellipse_ratio
        return c * c * inv + s * s, c * s * (inv - 1.0), s * s * inv + c * c

    @property
    def _inv_dq(self) -> float:
        """n_q / (edges[-1] − edges[0]) for (near-)uniform edges (arithmetic bin guess), else 0 (binary search)."""
        if "inv_dq" not in self._cache:
            d = np.diff(self.edges)
            uniform = np.all(np.abs(d - d.mean()) <= 1e-6 * d.mean())
            self._cache["inv_dq"] = self.n_q / float(self.edges[-1] - self.edges[0]) if uniform else 0.0
        return self._cache["inv_dq"]

    def _fast_table(self, n_phi: int):
        """Interleaved unsigned table (bin·_W + p % _W; unused pixels → bin n_phi·n_q), the columns [j0, j1) of
        each row holding used pixels (int64, shape (ny, 2)), and pixels per bin."""
        key = ("table", n_phi)
        if key not in self._cache:
            nb = n_phi * self.n_q
            ny, nx = self.shape
            npix = ny * nx
            bins = self._sector_entries(n_phi)
            table = np.full(npix, nb, np.int64)
            table[self.pixel_index] = bins
            used = (table < nb).reshape(ny, nx)
            any_used = used.any(axis=1)
            spans = np.zeros((ny, 2), np.int64)
            spans[:, 0] = np.where(any_used, np.argmax(used, axis=1), 0)
            spans[:, 1] = np.where(any_used, nx - np.argmax(used[:, ::-1], axis=1), 0)
            table = (table * _W + np.arange(npix) % _W).astype(np.uint32)
            counts = np.bincount(bins, minlength=nb).astype(np.int64)
            self._cache[key] = (table, spans, counts)
        return self._cache[key]

    def _offset_table(self, n_phi: int, pad: int):
        """Interleaved unsigned bins (bin·_W + column % _W, unused → n_phi·n_q) of the pixel centres of a grid that
        extends the detector by ``pad`` pixels on every side (mask not applied: the kernels test the detector
        pixel), and the columns [j0, j1) of each grid row holding used cells (int64, shape (ny + 2·pad, 2))."""
        key = ("offset", n_phi, pad)
        if key not in self._cache:
            ny, nx = self.shape
            ty, tx = ny + 2 * pad, nx + 2 * pad
            nb = n_phi * self.n_q
            m00, m01, m11 = self._geo()
            bins = np.empty(ty * tx, np.int64)
            _grid_table(
                -pad, ty, -pad, tx, self.center[0], self.center[1], m00, m01, m11, self.pixel_size, self.edges,
                self._inv_dq, n_phi, bins,
            )  # fmt: skip
            used = (bins < nb).reshape(ty, tx)
            any_used = used.any(axis=1)
            spans = np.zeros((ty, 2), np.int64)
            spans[:, 0] = np.where(any_used, np.argmax(used, axis=1), 0)
            spans[:, 1] = np.where(any_used, tx - np.argmax(used[:, ::-1], axis=1), 0)
            table = (bins * _W + np.arange(ty * tx) % tx % _W).astype(np.uint32)
            self._cache[key] = (table, spans)
        return self._cache[key]

    def _phi_lookup(self, n_phi: int) -> np.ndarray:
        """Sector of every cell of the diamond angle (see _row_cells), −1 where a sector boundary lies within
        _PHI_GUARD of the cell (the kernels then call atan2); int32, shape (_NPHI_LUT,) (one dummy cell for
        n_phi = 1)."""
        key = ("phi", n_phi)
        if key not in self._cache:
            if n_phi <= 1:
                self._cache[key] = np.zeros(1, np.int32)
                return self._cache[key]
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
            self._cache[key] = plut
        return self._cache[key]

    def _s_tables(self):
        """Exact squared-radius thresholds of the bin edges and their look-up table (see _s_thresholds)."""
        if "s_tables" not in self._cache:
            thr = _s_thresholds(self.edges, self.pixel_size)
            self._cache["s_tables"] = (thr,) + _s_lookup(thr)
        return self._cache["s_tables"]

    def _capacity(self) -> int:
        npix = self.shape[0] * self.shape[1]
        if not self.split_pixels:
            return npix
        widths = np.diff(self.edges)
        extent = math.sqrt(2.0) * max(1.0, 1.0 / self.ellipse_ratio) * self.pixel_size
        return npix * (int(math.ceil(extent / widths.min())) + 2)

    def _sector_entries(self, n_phi: int) -> np.ndarray:
        """Combined bin index sector·n_q + k of the plan's entries for n_phi sectors."""
        if n_phi == 1:
            return self.bin_index
        m00, m01, m11 = self._geo()
        cap = self._capacity()
        pix = np.empty(cap, np.int32)
        bins = np.empty(cap, np.int32)
        w = np.empty(cap)
        ne = _pixel_entries(
            self.shape[0], self.shape[1], self.center[0], self.center[1], m00, m01, m11, self.pixel_size,
            self.edges, self._inv_dq, self.split_pixels, n_phi, self.mask.ravel(), pix, bins, w,
        )  # fmt: skip
        return bins[:ne].copy()

    def _run(self, block, shifts, n_phi, statistic, clip_sigma, bins_phi, out=None):
        """Kernel dispatch for one chunk: block (m, ny·nx), shifts (m, 2) or None → (m, 6, n_phi·n_q), written
        into ``out`` (C-contiguous) when given."""
        m = block.shape[0]
        nb = n_phi * self.n_q
        if out is None:
            out = np.empty((m, _NF, nb))
        if m == 0:
            return out
        threads = get_num_threads()
        if m < _MIN_PARALLEL and threads > 1:
            # a few patterns: waking the thread pool costs more than it saves (on a loaded machine ~1 ms)
            set_num_threads(1)
            try:
                return self._dispatch(block, shifts, n_phi, statistic, clip_sigma, bins_phi, out)
            finally:
                set_num_threads(threads)
        return self._dispatch(block, shifts, n_phi, statistic, clip_sigma, bins_phi, out)

    def _dispatch(self, block, shifts, n_phi, statistic, clip_sigma, bins_phi, out):
        nb = n_phi * self.n_q
        m00, m01, m11 = self._geo()
        ny, nx = self.shape
        cy, cx = self.center
        valid = self.mask.ravel()
        idq = self._inv_dq
        small_uint = block.dtype in (np.uint8, np.uint16)
        fast_path = statistic == "mean" and not self.split_pixels
        if not small_uint and (block.dtype not in (np.float32, np.float64, np.uint32) or not fast_path):
            # general kernels are compiled for float64 only (bounded compile time); the chunk is converted,
            # never the whole stack. uint32 (counts at high dose) takes the float kernels as it is (float64
            # sums, exact below 2^53)
            block = block.astype(np.float64)
        if statistic != "mean":
            sh = np.zeros((1, 2)) if shifts is None else shifts
            _k_robust(
                block, shifts is not None, sh, self.pixel_index, bins_phi, self.weight, ny, nx, cy, cx, m00,
                m01, m11, self.pixel_size, self.edges, idq, self.split_pixels, n_phi, valid, self._capacity(),
                statistic == "median", float(clip_sigma), out,
            )  # fmt: skip
        elif shifts is not None and self.split_pixels:
            _k_shifted(
                block, shifts, ny, nx, cy, cx, m00, m01, m11, self.pixel_size, self.edges, idq, n_phi, valid, out
            )  # fmt: skip
        elif shifts is not None and (ish := _whole_pixel_shifts(shifts, self.shape)) is not None:
            # whole-pixel shifts: the bins of a fixed table moved by the shift, no geometry per pixel
            pad = -(-int(np.abs(ish).max(initial=0)) // 8) * 8  # table margin, a multiple of 8 (cache reuse)
            table, spans = self._offset_table(n_phi, pad)
            kernel = _k_offset_uint if small_uint else _k_offset_float
            kernel(block, ish, ny, nx, pad, table, spans, nb, valid, not bool(valid.all()), out)
        elif shifts is not None:
            thr, lut, inv_h = self._s_tables()
            kernel = _k_shift_uint if small_uint else _k_shift_float
            plut = self._phi_lookup(n_phi)
            kernel(block, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, out)
        elif not self.split_pixels:
            table, spans, counts = self._fast_table(n_phi)
            (_k_table_uint if small_uint else _k_table_float)(block, table, spans, nx, nb, counts, out)
        else:
            _k_entries(block, self.pixel_index, bins_phi, self.weight, out)
        return out

    def integrate(
        self,
        data,
        shifts=None,
        *,
        n_phi: int | None = None,
        statistic: str = "mean",
        clip_sigma: float = 3.0,
        chunk_size: int | None = None,
        progress: bool = False,
    ) -> RadialProfiles:
        """Integrate a stack of patterns into radial (or sector) profiles.

        Parameters
        ----------
        data : array-like, shape (..., ny, nx)  [counts or intensity per pixel]
            NumPy array, memmap, h5py dataset (read chunk by chunk, never whole) or dask array (processed
            block by block). Integer data are never converted as a whole; sums are accumulated in float64.
        shifts : array-like or None, shape data.shape[:-2] + (2,)  [px]
            Per-pattern (dy, dx): where each pattern's centre actually is minus ``plan.center`` (descan).
        n_phi : int or None
            Number of azimuthal sectors; profiles then have shape (..., n_phi, n_q).
        statistic : {"mean", "clipped", "median"}
            Per-ring statistic stored in ``mean``: the plain mean, an iterated sigma-clipped mean (robust to
            Bragg spots; pixels with |I − mean| > clip_sigma·std are dropped until none change), or the median.
        clip_sigma : float
            Clipping threshold in standard deviations (``statistic="clipped"`` only).
        chunk_size : int or None
            Patterns per chunk (default: about 128 MB of data per chunk).
        progress : bool
            Show a tqdm progress bar over chunks.

        Returns
        -------
        RadialProfiles
            Leading dimensions of ``data`` preserved.
        """
        shape = getattr(data, "shape", None)
        if shape is None or not hasattr(data, "dtype"):
            raise TypeError(
                f"data={type(data).__name__}: expected an array of shape (..., ny, nx) "
                "(numpy, memmap, h5py dataset or dask array)"
            )
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or shape[-2:] != self.shape:
            raise ValueError(
                f"data.shape={shape}: the last two axes must equal the plan's detector shape {self.shape} (ny, nx)"
            )
        dt = np.dtype(data.dtype)
        if dt.kind not in "biuf":
            raise TypeError(f"data.dtype={dt}: expected a real numeric dtype (integer, unsigned or float)")
        if statistic not in STATISTICS:
            raise ValueError(f"statistic={statistic!r}: must be one of {STATISTICS}")
        cs = float(clip_sigma)
        if not np.isfinite(cs) or cs <= 0:
            raise ValueError(f"clip_sigma={clip_sigma!r}: must be a positive number of standard deviations")
        if n_phi is None:
            nphi = 1
        else:
            if isinstance(n_phi, bool) or not isinstance(n_phi, (int, np.integer)) or n_phi < 1:
                raise ValueError(f"n_phi={n_phi!r}: must be a positive integer number of sectors or None")
            nphi = int(n_phi)
        lead = shape[:-2]
        n_pat = int(np.prod(lead, dtype=np.int64))
        is_dask = type(data).__module__.startswith("dask")
        if shifts is not None:
            if type(shifts).__module__.startswith("dask") and not is_dask:
                shifts = np.asarray(shifts.compute())
            sshape = tuple(int(s) for s in shifts.shape) if hasattr(shifts, "shape") else np.shape(shifts)
            if sshape != lead + (2,):
                raise ValueError(
                    f"shifts.shape={sshape}: must be data.shape[:-2] + (2,) = {lead + (2,)} with (dy, dx) [px]"
                )
            if not is_dask:
                shifts = np.asarray(shifts, dtype=np.float64)
                if not np.all(np.isfinite(shifts)):
                    raise ValueError("shifts: contains non-finite values; give finite (dy, dx) [px]")
        if chunk_size is None:
            chunk = max(1, (128 << 20) // max(1, self.shape[0] * self.shape[1] * dt.itemsize))
        else:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
                raise ValueError(f"chunk_size={chunk_size!r}: must be a positive number of patterns or None")
            chunk = int(chunk_size)
        bins_phi = self._sector_entries(nphi)
        nb = nphi * self.n_q
        npix = self.shape[0] * self.shape[1]

        def run(block, sh, out=None):
            block = np.ascontiguousarray(block).reshape(-1, npix)
            if block.dtype.kind == "b":
                block = block.view(np.uint8)
            elif not block.dtype.isnative:  # e.g. big-endian data from a file: the kernels need native order
                block = block.astype(block.dtype.newbyteorder("="))
            if sh is not None:
                sh = np.ascontiguousarray(sh, dtype=np.float64).reshape(-1, 2)
                if not np.all(np.isfinite(sh)):
                    raise ValueError("shifts: contains non-finite values; give finite (dy, dx) [px]")
            return self._run(block, sh, nphi, statistic, cs, bins_phi, out)

        if is_dask:
            acc = _integrate_dask(data, shifts, run, nb, chunk)
        else:
            acc = np.empty((n_pat, _NF, nb))
            blocks = list(_leading_blocks(lead, chunk))
            it = blocks
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(blocks, desc="radial", unit="chunk")
            for start, stop, index in it:
                sh = None if shifts is None else shifts[index]
                run(np.asarray(data[index]), sh, acc[start:stop])  # the kernels write into acc directly
            acc = acc.reshape(lead + (_NF, nb))
        return self._finish(acc, nphi, statistic)

    def mean_profiles(
        self, data, shifts=None, *, n_phi: int | None = None, dtype=np.float32, out=None, chunk_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and Poisson standard error only, written straight into arrays of ``dtype``: the ``mean`` and
        ``sem_poisson`` of :meth:`integrate` (statistic ``"mean"``; the same kernels and arithmetic, rounded
        once to ``dtype``) without the other fields — for many-sector maps of whole scans, where building
        every field in float64 costs as much as the binning.

        Parameters
        ----------
        data : array-like, shape (..., ny, nx)  [counts or intensity per pixel]
            NumPy array, memmap or h5py dataset (read ``chunk_size`` patterns at a time).
        shifts : array-like or None, shape data.shape[:-2] + (2,)  [px]
            Per-pattern (dy, dx) as in :meth:`integrate`.
        n_phi : int or None
            Number of azimuthal sectors; outputs then have shape (..., n_phi, n_q).
        dtype : numpy float dtype
            Type of the returned arrays.
        out : (ndarray, ndarray) or None
            C-contiguous arrays of the output shape and ``dtype`` to write into.
        chunk_size : int
            Patterns per kernel call (their float64 accumulators stay in cache and are reused).

        Returns
        -------
        mean : ndarray, shape (..., n_q) or (..., n_phi, n_q)  [intensity per pixel]
            NaN in empty bins.
        sem_poisson : ndarray, same shape  [intensity per pixel]
        """
        shape = getattr(data, "shape", None)
        if shape is None or not hasattr(data, "dtype"):
            raise TypeError(f"data={type(data).__name__}: expected an array of shape (..., ny, nx)")
        shape = tuple(int(v) for v in shape)
        if len(shape) < 2 or shape[-2:] != self.shape:
            raise ValueError(f"data.shape={shape}: the last two axes must equal the plan's detector shape {self.shape}")
        if np.dtype(data.dtype).kind not in "biuf":
            raise TypeError(f"data.dtype={data.dtype}: expected a real numeric dtype (integer, unsigned or float)")
        if n_phi is None:
            nphi = 1
        elif isinstance(n_phi, bool) or not isinstance(n_phi, (int, np.integer)) or n_phi < 1:
            raise ValueError(f"n_phi={n_phi!r}: must be a positive integer number of sectors or None")
        else:
            nphi = int(n_phi)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r}: must be a positive number of patterns")
        lead = shape[:-2]
        if shifts is not None:
            shifts = np.asarray(shifts, dtype=np.float64)
            if shifts.shape != lead + (2,):
                raise ValueError(f"shifts.shape={shifts.shape}: must be data.shape[:-2] + (2,) = {lead + (2,)}")
            if not np.all(np.isfinite(shifts)):
                raise ValueError("shifts: contains non-finite values; give finite (dy, dx) [px]")
        oshape = lead + ((nphi, self.n_q) if nphi > 1 else (self.n_q,))
        if out is None:
            out = (np.empty(oshape, dtype), np.empty(oshape, dtype))
        for o in out:
            if o.shape != oshape or not o.flags.c_contiguous or o.dtype.kind != "f":
                raise ValueError(f"out: need two C-contiguous float arrays of shape {oshape}")
        if self.split_pixels:  # weighted entries: the general path
            prof = self.integrate(data, shifts, n_phi=n_phi)
            out[0][...], out[1][...] = prof.mean, prof.sem_poisson
            return out
        nb = nphi * self.n_q
        npix = self.shape[0] * self.shape[1]
        n_pat = int(np.prod(lead, dtype=np.int64))
        mean, sem = out[0].reshape(n_pat, nb), out[1].reshape(n_pat, nb)
        ish = None
        if shifts is None:
            ish = np.zeros((n_pat, 2), np.int64)
        elif n_pat:
            ish = _whole_pixel_shifts(shifts.reshape(-1, 2), self.shape)
        if ish is not None and n_pat:
            # fixed centre or whole-pixel shifts: one pass per pattern straight to mean and error (no Σ I²,
            # no accumulator array), one parallel region per read block
            pad = -(-int(np.abs(ish).max(initial=0)) // 8) * 8
            table, spans = self._offset_table(nphi, pad)
            valid = self.mask.ravel()
            use_mask = not bool(valid.all())
            ny, nx = self.shape
            step = max(int(chunk_size), (256 << 20) // max(1, npix * np.dtype(data.dtype).itemsize))
            for start, stop, index in _leading_blocks(lead, step):
                block = self._native(np.asarray(data[index]).reshape(-1, npix))
                kernel = _k_offset_mean_uint if block.dtype in (np.uint8, np.uint16) else _k_offset_mean_float
                if block.dtype not in (np.uint8, np.uint16, np.uint32, np.float32, np.float64):
                    block = block.astype(np.float64)
                if stop - start < _MIN_PARALLEL and get_num_threads() > 1:
                    threads = get_num_threads()
                    set_num_threads(1)
                    try:
                        kernel(block, ish[start:stop], ny, nx, pad, table, spans, nb, valid, use_mask,
                               mean[start:stop], sem[start:stop])  # fmt: skip
                    finally:
                        set_num_threads(threads)
                else:
                    kernel(block, ish[start:stop], ny, nx, pad, table, spans, nb, valid, use_mask,
                           mean[start:stop], sem[start:stop])  # fmt: skip
            return out
        bins_phi = self._sector_entries(nphi)
        acc = np.empty((min(int(chunk_size), max(n_pat, 1)), _NF, nb))
        for start, stop, index in _leading_blocks(lead, int(chunk_size)):
            block = self._native(np.asarray(data[index]).reshape(-1, npix))
            sh = None if shifts is None else np.ascontiguousarray(shifts[index]).reshape(-1, 2)
            a = acc[: stop - start]
            self._run(block, sh, nphi, "mean", 3.0, bins_phi, a)
            if stop - start < _MIN_PARALLEL:
                _k_mean_sem_serial(a, mean[start:stop], sem[start:stop])
            else:
                _k_mean_sem(a, mean[start:stop], sem[start:stop])
        return out

    @staticmethod
    def _native(block):
        """C-contiguous block in native byte order, booleans as uint8 (what the kernels take)."""
        block = np.ascontiguousarray(block)
        if block.dtype.kind == "b":
            return block.view(np.uint8)
        if not block.dtype.isnative:  # e.g. big-endian data from a file
            return block.astype(block.dtype.newbyteorder("="))
        return block

    def _finish(self, acc, nphi, statistic) -> RadialProfiles:
        lead = acc.shape[:-2]
        shp = lead + ((nphi, self.n_q) if nphi > 1 else (self.n_q,))
        flat = np.ascontiguousarray(acc).reshape(-1, _NF, acc.shape[-1])
        mean, total, count, sem_p, sem_a = (np.empty(flat.shape[::2]) for _ in range(5))
        big = flat.shape[0] * flat.shape[2] >= _PARALLEL_FINISH_BINS and flat.shape[0] >= _MIN_PARALLEL
        (_k_finish_parallel if big else _k_finish)(flat, STATISTICS.index(statistic), mean, total, count, sem_p, sem_a)
        phi_edges = np.linspace(0.0, 2.0 * np.pi, nphi + 1) if nphi > 1 else None
        return RadialProfiles(
            q=self.q,
            edges=self.edges.copy(),
            mean=mean.reshape(shp),
            sum=total.reshape(shp),
            count=count.reshape(shp),
            sem_poisson=sem_p.reshape(shp),
            sem_azimuthal=sem_a.reshape(shp),
            statistic=statistic,
            phi_edges=phi_edges,
        )


def _whole_pixel_shifts(shifts: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """``shifts`` as int64 when every one is a whole number of pixels no larger than the detector, else None."""
    if shifts.size == 0 or not np.all(np.abs(shifts) <= max(shape)):
        return None
    ish = np.rint(shifts)
    if not np.array_equal(ish, shifts):
        return None
    return np.ascontiguousarray(ish, dtype=np.int64)


def _s_thresholds(edges: np.ndarray, pixel_size: float) -> np.ndarray:
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


def _s_lookup(thr: np.ndarray) -> tuple[np.ndarray, float]:
    """Look-up table of the shifted kernels over the squared radius s [px²].

    Cell c (s·inv_h in [c, c + 1), widened by a relative 1e-9 against rounding) holds k·_W, k the bin of all
    its s (n_q when the whole cell lies outside the bins), when no threshold falls inside it, and −(k + 1)
    otherwise, k then being the bin of the cell's lower end (never above the bin of any s in the cell). The
    last cell takes every larger s as well.

    Returns
    -------
    lut : ndarray of int16 (int32 for (n_q + 1)·_W >= 32767), shape (_NLUT,)
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
    lut = np.where(exact, np.where(outside, nq, k_lo) * _W, -(np.clip(k_lo, 0, nq - 1) + 1))
    return lut.astype(np.int16 if (nq + 1) * _W < 32767 else np.int32), 1.0 / h


def _leading_blocks(lead: tuple[int, ...], chunk: int):
    """Split the flattened leading index range into contiguous blocks of at most ``chunk`` patterns.

    Yields (start, stop, index) with ``index`` a tuple of ints and one slice, usable on h5py datasets.
    """
    if len(lead) == 0:
        yield 0, 1, ()
        return
    # slice the outermost axis whose trailing block of patterns fits in one chunk
    axis = len(lead) - 1
    while axis > 0 and int(np.prod(lead[axis:], dtype=np.int64)) <= chunk:
        axis -= 1
    inner = int(np.prod(lead[axis + 1 :], dtype=np.int64))
    step = max(1, chunk // max(inner, 1))
    for k, outer in enumerate(np.ndindex(*lead[:axis])):
        base = k * lead[axis] * inner
        for a0 in range(0, lead[axis], step):
            a1 = min(lead[axis], a0 + step)
            yield base + a0 * inner, base + a1 * inner, tuple(int(o) for o in outer) + (slice(a0, a1),)


def _integrate_dask(data, shifts, run, nb, chunk):
    """Apply ``run`` block by block with dask.array.blockwise; returns the accumulators as NumPy."""
    import dask.array as da

    nd = data.ndim
    nl = nd - 2
    x = data.rechunk({nd - 2: -1, nd - 1: -1})
    lead_ind = tuple(range(nl))
    out_ind = lead_ind + (nl, nl + 1)
    if nl == 0:
        return np.asarray(run(np.asarray(x.compute()), None if shifts is None else np.asarray(shifts)))[0]
    if shifts is None:

        def f(b):
            return run(b, None).reshape(b.shape[:-2] + (_NF, nb))

        res = da.blockwise(
            f, out_ind, x, lead_ind + (nl + 2, nl + 3), new_axes={nl: _NF, nl + 1: nb}, dtype=float, concatenate=True
        )
    else:
        s = da.asarray(shifts).rechunk(x.chunks[:-2] + ((2,),))

        def f(b, sh):
            return run(b, sh).reshape(b.shape[:-2] + (_NF, nb))

        res = da.blockwise(
            f, out_ind, x, lead_ind + (nl + 2, nl + 3), s, lead_ind + (nl + 4,),
            new_axes={nl: _NF, nl + 1: nb}, dtype=float, concatenate=True,
        )  # fmt: skip
    return np.asarray(res.compute())


# ----------------------------------------------------------------------------------------------------------
# plan construction
# ----------------------------------------------------------------------------------------------------------
def _radius_px(shape, center, ratio, angle):
    """Ellipse-corrected radius of every pixel centre [px] (NumPy; used for default ranges only)."""
    iy, ix = np.indices(shape, dtype=float)
    dy = iy - center[0]
    dx = ix - center[1]
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / ratio
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    return np.hypot(u, v)


def make_plan(
    shape,
    *,
    center,
    pixel_size: float,
    edges=None,
    n_bins: int | None = None,
    q_max: float | None = None,
    q_min: float = 0.0,
    mask=None,
    ellipse_ratio: float = 1.0,
    ellipse_angle: float = 0.0,
    split_pixels: bool = False,
) -> RadialPlan:
    """Build a radial integration plan.

    Parameters
    ----------
    shape : tuple of int  [px]
        Detector shape ``(ny, nx)``.
    center : tuple of float  [px]
        Beam centre ``(cy, cx)`` in index coordinates (pixel (i, j) centred at (i, j)); see
        :func:`abtem_center` and :func:`center_from_pyfai` for conversions.
    pixel_size : float  [Å⁻¹/px]
        Q = 1/d per pixel; see :func:`pixel_size_from_mrad`.
    edges : array-like or None  [Å⁻¹]
        Strictly increasing bin edges. If None, ``n_bins`` equal bins over [q_min, q_max].
    n_bins : int or None
        Number of bins when ``edges`` is None (default: bins one pixel wide, ceil((q_max − q_min) /
        pixel_size)).
    q_max : float or None  [Å⁻¹]
        Upper Q limit when ``edges`` is None (default: the largest Q whose whole ring lies on the detector,
        i.e. the smallest corrected radius of a border pixel centre).
    q_min : float  [Å⁻¹]
        Lower Q limit when ``edges`` is None.
    mask : array-like of bool or None, shape ``shape``
        True = use the pixel; None uses all pixels.
    ellipse_ratio : float
        ρ > 0: the recorded pattern is stretched by ρ along ``ellipse_angle`` (module docstring).
    ellipse_angle : float  [rad]
        Direction of the stretch, from +x (increasing column) towards +y (increasing row).
    split_pixels : bool
        Share each pixel's intensity among the bins its radial extent covers.

    Returns
    -------
    RadialPlan
    """
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape={shape!r}: expected (ny, nx) [px]") from None
    if len(shp) != 2 or min(shp) < 1:
        raise ValueError(f"shape={shape!r}: expected (ny, nx) with ny, nx >= 1 [px]")
    try:
        c = tuple(float(v) for v in center)
    except TypeError:
        raise TypeError(f"center={center!r}: expected (cy, cx) [px]") from None
    if len(c) != 2 or not all(np.isfinite(c)):
        raise ValueError(f"center={center!r}: must be two finite numbers (cy, cx) [px] in index coordinates")
    ps = float(pixel_size)
    if not np.isfinite(ps) or ps <= 0:
        raise ValueError(f"pixel_size={pixel_size!r}: must be a positive reciprocal pixel size [Å⁻¹/px]")
    rho = float(ellipse_ratio)
    if not np.isfinite(rho) or rho <= 0:
        raise ValueError(f"ellipse_ratio={ellipse_ratio!r}: must be a positive axis ratio")
    ang = float(ellipse_angle)
    if not np.isfinite(ang):
        raise ValueError(f"ellipse_angle={ellipse_angle!r}: must be a finite angle [rad]")
    if mask is None:
        m = np.ones(shp, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape != shp:
            raise ValueError(f"mask.shape={m.shape}: must equal the detector shape {shp} (True = use the pixel)")
        if m.dtype != bool:
            raise TypeError(f"mask.dtype={m.dtype}: must be boolean (True = use the pixel)")
        m = m.copy()
    m.setflags(write=False)
    if edges is not None:
        e = np.array(edges, dtype=np.float64).ravel()
        if e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
            raise ValueError(f"edges={edges!r}: must be at least two finite, strictly increasing Q values [Å⁻¹]")
    else:
        qmn = float(q_min)
        if not np.isfinite(qmn) or qmn < 0:
            raise ValueError(f"q_min={q_min!r}: must be a finite Q >= 0 [Å⁻¹]")
        if q_max is None:
            r = _radius_px(shp, c, rho, ang)
            border = np.concatenate([r[0], r[-1], r[:, 0], r[:, -1]])
            qmx = float(border.min()) * ps
        else:
            qmx = float(q_max)
        if not np.isfinite(qmx) or qmx <= qmn:
            raise ValueError(f"q_max={q_max!r} (→ {qmx!r} Å⁻¹): must be finite and larger than q_min={qmn!r} [Å⁻¹]")
        if n_bins is None:
            nbins = max(1, int(math.ceil((qmx - qmn) / ps - 1e-9)))
        else:
            if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
                raise ValueError(f"n_bins={n_bins!r}: must be a positive integer")
            nbins = int(n_bins)
        e = np.linspace(qmn, qmx, nbins + 1)
    e.setflags(write=False)
    plan = RadialPlan(
        shape=shp,
        center=c,
        pixel_size=ps,
        edges=e,
        mask=m,
        ellipse_ratio=rho,
        ellipse_angle=ang,
        split_pixels=bool(split_pixels),
        pixel_index=np.empty(0, np.int32),
        bin_index=np.empty(0, np.int32),
        weight=np.empty(0),
        bin_table=np.empty(0, np.int32),
    )
    m00, m01, m11 = plan._geo()
    cap = plan._capacity()
    pix = np.empty(cap, np.int32)
    bins = np.empty(cap, np.int32)
    w = np.empty(cap)
    ne = _pixel_entries(
        shp[0],
        shp[1],
        c[0],
        c[1],
        m00,
        m01,
        m11,
        ps,
        e,
        plan._inv_dq,
        plan.split_pixels,
        1,
        m.ravel(),
        pix,
        bins,
        w,
    )
    if ne == 0:
        r = _radius_px(shp, c, rho, ang)
        raise ValueError(
            f"edges/q range [{e[0]:.4g}, {e[-1]:.4g}] Å⁻¹ contains no unmasked pixel of the detector "
            f"(pixels span Q = {r.min() * ps:.4g}–{r.max() * ps:.4g} Å⁻¹); choose q_min/q_max/edges inside that range"
        )
    table = np.full(shp[0] * shp[1], e.size - 1, np.int32)
    if not plan.split_pixels:
        table[pix[:ne]] = bins[:ne]
    arrays = {
        "pixel_index": pix[:ne].copy(),
        "bin_index": bins[:ne].copy(),
        "weight": w[:ne].copy(),
        "bin_table": table,
    }
    for a in arrays.values():
        a.setflags(write=False)
    return replace(plan, **arrays)


def make_plan_from_geometry(geometry, **kwargs) -> RadialPlan:
    """Build a plan from a :class:`simkit.geometry.DetectorGeometry`.

    Parameters
    ----------
    geometry : DetectorGeometry
        Supplies ``shape`` [px], ``center`` [px] and ``pixel_size`` [Å⁻¹/px].
    **kwargs
        Any other keyword of :func:`make_plan` (edges, n_bins, q_max, q_min, mask, ellipse_ratio,
        ellipse_angle, split_pixels); ``center`` and ``pixel_size`` override the geometry's if given.

    Returns
    -------
    RadialPlan
    """
    for attr in ("shape", "center", "pixel_size"):
        if not hasattr(geometry, attr):
            raise TypeError(f"geometry={type(geometry).__name__}: expected a DetectorGeometry (lacks {attr!r})")
    kwargs.setdefault("center", geometry.center)
    kwargs.setdefault("pixel_size", geometry.pixel_size)
    return make_plan(geometry.shape, **kwargs)
