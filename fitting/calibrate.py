"""Calibrate a measured scan: descan (per-pattern beam centre), elliptical distortion, Q scale → ``RadialPlan``.

Steps (each usable alone; :func:`calibrate` runs them in order):

1. :func:`find_centers` — the direct-beam centre of every pattern [px], by an iterated centre of mass inside a
   disc (``method="com"``) or by cross-correlation with a disc template refined to sub-pixel precision by a
   parabola through the correlation maximum (``method="xcorr"``).
2. :func:`fit_descan` — a smooth polynomial surface (plane by default) fitted to the centres across the scan
   with iterative outlier rejection (Bragg discs near the beam pull single centres); :func:`descan_shifts`
   turns it into the ``shifts`` array of ``RadialPlan.integrate`` (actual centre minus ``plan.center``).
3. :func:`fit_ellipse` — elliptical distortion from a ring (amorphous or powder): the ring radius is measured
   in ``n_phi`` sectors (sector profiles from ``simkit.radial``) and r(φ) = R·(1 + ε·cos 2(φ − θ)) is fitted;
   ρ = (1 + ε)/(1 − ε) and θ are in the convention of ``simkit.radial`` (pattern stretched by ρ along θ,
   θ from +x towards +y). Iterated with the corrected plan until the residual ratio is below 1e-4.
4. :func:`calibrate_q` — the pixel size [Å⁻¹/px] from rings of known reflections (Li, Cu, LiF, Li₂O, Au at
   cryogenic lattice constants, or user d-spacings) by a least-squares fit through the origin of
   Q_known = pixel_size · r_px; or :func:`pixel_size_from_camera` from camera length and pixel pitch.
5. :func:`calibrated_plan` — the ``RadialPlan`` with the calibrated centre, pixel size and ellipse.

Radii in pixels are measured with the project's single peak estimator (``simkit.peakpos.peak_position``) on
the ring intensity (n = 0) of radial profiles computed by ``simkit.radial`` — no pixel binning happens here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from simkit.peakpos import peak_position
from simkit.radial import RadialPlan, make_plan

__all__ = [
    "CRYSTALS",
    "Calibration",
    "EllipseFit",
    "QCalibration",
    "calibrate",
    "calibrate_q",
    "calibrated_plan",
    "compose_ellipse",
    "descan_shifts",
    "ellipse_from_sectors",
    "find_centers",
    "fit_descan",
    "fit_ellipse",
    "pixel_size_from_camera",
    "reflection_q",
]

# Cryogenic (100 K) lattice constants [Å], used when structures.crystals is not importable. The numbers and
# their sources are those of structures.crystals.LATTICE_CONSTANTS (LiF: Swanson & Tatge 1953 + Touloukian 1977;
# Li₂O: PDF 12-0254 + Hull et al. 1988; Li: Barrett 1956; Cu: Straumanis & Yu 1969 + Kroeger & Swenson 1977;
# Au: Maeland & Flanagan 1964).
_FALLBACK_CRYO = {"LiF": 4.009, "Li2O": 4.600, "Li": 3.483, "Cu": 3.6050, "Au": 4.0677}
_FALLBACK_ROOM = {"LiF": 4.0270, "Li2O": 4.6114, "Li": 3.5100, "Cu": 3.6149, "Au": 4.0782}
#: Lattice centring of each calibration crystal ("F": h, k, l all even or all odd; "I": h + k + l even).
CRYSTALS = {"LiF": "F", "Li2O": "F", "Li": "I", "Cu": "F", "Au": "F"}


def _lattice_constant(phase: str, temperature: str) -> float:
    try:
        from structures.crystals import LATTICE_CONSTANTS

        return float(LATTICE_CONSTANTS[phase][temperature])
    except (ImportError, KeyError, TypeError):
        table = _FALLBACK_CRYO if temperature == "cryo" else _FALLBACK_ROOM
        return table[phase]


def reflection_q(phase: str, hkl: tuple[int, int, int], temperature: str = "cryo") -> float:
    """Q = 1/d of a reflection of a cubic calibration crystal.

    Parameters
    ----------
    phase : {"Li", "Cu", "LiF", "Li2O", "Au"}
    hkl : tuple of int
        Miller indices (must be allowed by the lattice centring).
    temperature : {"cryo", "room"}
        Lattice constant to use (cryogenic ≈ 100 K by default).

    Returns
    -------
    float  [Å⁻¹]
        sqrt(h² + k² + l²) / a.
    """
    if phase not in CRYSTALS:
        raise ValueError(f"phase={phase!r}: choose one of {tuple(CRYSTALS)} or give d_spacings")
    if temperature not in ("cryo", "room"):
        raise ValueError(f"temperature={temperature!r}: 'cryo' or 'room'")
    h, k, l = (int(v) for v in hkl)
    if CRYSTALS[phase] == "F" and len({h % 2, k % 2, l % 2}) != 1:
        raise ValueError(f"hkl={hkl!r}: forbidden in the F-centred {phase} lattice (h, k, l all even or all odd)")
    if CRYSTALS[phase] == "I" and (h + k + l) % 2:
        raise ValueError(f"hkl={hkl!r}: forbidden in the I-centred {phase} lattice (h + k + l even)")
    return math.sqrt(h * h + k * k + l * l) / _lattice_constant(phase, temperature)


# ---------------------------------------------------------------------------------------------------------------
# 1. direct-beam centres
def _mean_pattern(data, max_patterns=256):
    lead = data.shape[:-2]
    n = int(np.prod(lead))
    step = max(1, n // max_patterns)
    flat_idx = np.arange(0, n, step)[:max_patterns]
    acc = np.zeros(data.shape[-2:])
    for i in flat_idx:
        acc += np.asarray(data[np.unravel_index(i, lead)], dtype=float)
    return acc / len(flat_idx)


def _beam_estimate(mean):
    """Centre (cy, cx) and radius [px] of the direct beam from a mean pattern (half-maximum disc)."""
    m = np.nan_to_num(mean)
    if not np.any(m > 0):
        raise ValueError("data: all patterns are zero — no direct beam to find (check the file / scan region)")
    # smooth lightly to survive noise, then threshold at half of the maximum
    k = np.array([0.25, 0.5, 0.25])
    s = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 0, m)
    s = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, s)
    disc = s > 0.5 * s.max()
    iy, ix = np.nonzero(disc)
    w = m[iy, ix]
    cy, cx = float((iy * w).sum() / w.sum()), float((ix * w).sum() / w.sum())
    radius = math.sqrt(disc.sum() / math.pi)
    return cy, cx, radius


def find_centers(
    data,
    *,
    radius: float | None = None,
    method: str = "com",
    n_iter: int = 20,
    max_shift: float | None = None,
    chunk: int = 512,
) -> np.ndarray:
    """Direct-beam centre of every pattern.

    Parameters
    ----------
    data : array-like, shape (..., ny, nx)  [counts]
        Patterns (NumPy, memmap, h5py dataset or dask array; read ``chunk`` patterns at a time).
    radius : float or None  [px]
        Radius of the centre-of-mass disc (``com``) or of the template disc (``xcorr``); default: 1.5× the
        half-maximum radius of the direct beam in the mean pattern (``com``) or that radius (``xcorr``).
    method : {"com", "xcorr"}
        Iterated centre of mass inside a disc around the current estimate, or cross-correlation with a disc
        template (sub-pixel by a 3-point parabola through the maximum along each axis).
    n_iter : int
        Largest number of centre-of-mass iterations (``com``; stops earlier when the centre moves < 1e-10 px).
    max_shift : float or None  [px]
        Largest descan expected (sets the crop box); default 2× the beam radius.
    chunk : int
        Patterns per read.

    Returns
    -------
    ndarray, shape data.shape[:-2] + (2,)  [px]
        (cy, cx) in index coordinates (pixel (i, j) centred at (i, j)); NaN for patterns without signal.
    """
    if method not in ("com", "xcorr"):
        raise ValueError(f"method={method!r}: choose 'com' or 'xcorr'")
    shape = tuple(int(s) for s in data.shape)
    if len(shape) < 3:
        raise ValueError(f"data.shape={shape}: expected (..., ny, nx) patterns")
    lead, (ny, nx) = shape[:-2], shape[-2:]
    cy0, cx0, r_beam = _beam_estimate(_mean_pattern(data))
    if radius is None:
        radius = 1.5 * r_beam if method == "com" else r_beam
    radius = float(radius)
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius={radius!r}: must be a positive disc radius [px]")
    ms = 2.0 * r_beam if max_shift is None else float(max_shift)
    half = int(math.ceil(radius + ms + 2))
    y0, y1 = max(0, int(round(cy0)) - half), min(ny, int(round(cy0)) + half + 1)
    x0, x1 = max(0, int(round(cx0)) - half), min(nx, int(round(cx0)) + half + 1)
    n = int(np.prod(lead))
    out = np.full((n, 2), np.nan)
    flat = _flat_reader(data, lead, (slice(y0, y1), slice(x0, x1)))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        box = flat(s, e)
        if method == "com":
            c = np.empty((e - s, 2))
            _k_com(np.ascontiguousarray(box), float(y0), float(x0), float(cy0), float(cx0), radius, int(n_iter), c)
        else:
            box = box.astype(float)
            box = np.where(np.isfinite(box), box, 0.0)
            c = _xcorr(box, radius) + np.array([y0, x0])
        out[s:e] = c
    return out.reshape(lead + (2,))


def _flat_reader(data, lead, crop=(slice(None), slice(None))):
    """Read patterns [s, e) of the flattened leading index (contiguous slabs along the last leading axis),
    only the detector region ``crop`` (two slices)."""

    def read(s, e):
        if len(lead) == 1:
            return np.asarray(data[(slice(s, e),) + tuple(crop)])
        parts = []
        i = s
        while i < e:
            idx = np.unravel_index(i, lead)
            last = lead[-1]
            j = min(e, i + last - idx[-1])
            sl = tuple(int(v) for v in idx[:-1]) + (slice(int(idx[-1]), int(idx[-1]) + (j - i)),)
            block = np.asarray(data[sl + tuple(crop)])
            parts.append(block.reshape((-1,) + block.shape[-2:]))
            i = j
        return np.concatenate(parts, axis=0)

    return read


@njit(cache=True, parallel=True)
def _k_com(box, y0, x0, cy0, cx0, radius, n_iter, out):
    """Iterated centre of mass inside a disc of ``radius`` [px] for every pattern of ``box`` (m, by, bx), whose
    pixel (0, 0) sits at detector index (y0, x0); NaN pixels count as 0; out (m, 2) = (cy, cx), NaN for
    patterns with no counts in the disc. Twin: tests/reference.py::center_of_mass_reference."""
    m, by, bx = box.shape
    r2 = radius * radius
    for k in prange(m):
        cy = cy0
        cx = cx0
        ok = False
        for _ in range(n_iter):
            sy = 0.0
            sx = 0.0
            tot = 0.0
            i_lo = max(0, int(math.floor(cy - radius - y0)))
            i_hi = min(by - 1, int(math.ceil(cy + radius - y0)))
            j_lo = max(0, int(math.floor(cx - radius - x0)))
            j_hi = min(bx - 1, int(math.ceil(cx + radius - x0)))
            for i in range(i_lo, i_hi + 1):
                dy = i + y0 - cy
                for j in range(j_lo, j_hi + 1):
                    dx = j + x0 - cx
                    if dy * dy + dx * dx <= r2:
                        v = float(box[k, i, j])
                        if v == v:
                            sy += v * (i + y0)
                            sx += v * (j + x0)
                            tot += v
            if tot <= 0.0:
                ok = False
                break
            ny = sy / tot
            nx = sx / tot
            ok = True
            done = abs(ny - cy) < 1e-10 and abs(nx - cx) < 1e-10
            cy = ny
            cx = nx
            if done:
                break
        if ok:
            out[k, 0] = cy
            out[k, 1] = cx
        else:
            out[k, 0] = np.nan
            out[k, 1] = np.nan


def _xcorr(box, radius):
    m, by, bx = box.shape
    yy, xx = np.mgrid[:by, :bx]
    yy = yy - by // 2
    xx = xx - bx // 2
    tmpl = np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0)  # anti-aliased disc centred at (by//2, bx//2)
    F = np.fft.rfft2(box - box.mean(axis=(1, 2), keepdims=True))
    T = np.conj(np.fft.rfft2(np.fft.ifftshift(tmpl)))
    cc = np.fft.irfft2(F * T[None], s=(by, bx))
    flat = cc.reshape(m, -1).argmax(axis=1)
    py, px = np.unravel_index(flat, (by, bx))
    rows = np.arange(m)

    def parab(a, b, c):
        den = a - 2 * b + c
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den < 0, 0.5 * (a - c) / den, 0.0)

    dy = parab(cc[rows, (py - 1) % by, px], cc[rows, py, px], cc[rows, (py + 1) % by, px])
    dx = parab(cc[rows, py, (px - 1) % bx], cc[rows, py, px], cc[rows, py, (px + 1) % bx])
    # correlation lag L = position of the disc centre in box coordinates (template centred at index 0)
    cy = py + dy
    cx = px + dx
    bad = ~(box.sum(axis=(1, 2)) > 0)
    out = np.stack([cy, cx], axis=1).astype(float)
    out[bad] = np.nan
    return out


# ---------------------------------------------------------------------------------------------------------------
# 2. smooth descan
def _design(sy, sx, order):
    iy, ix = np.mgrid[:sy, :sx].astype(float)
    u = (iy - (sy - 1) / 2) / max(1.0, (sy - 1) / 2)
    v = (ix - (sx - 1) / 2) / max(1.0, (sx - 1) / 2)
    cols = [u**i * v**j for i in range(order + 1) for j in range(order + 1 - i)]
    return np.stack([c.ravel() for c in cols], axis=1)


def fit_descan(centers: np.ndarray, *, order: int = 1, clip: float = 4.0, n_iter: int = 5) -> np.ndarray:
    """Smooth polynomial surface through the per-pattern centres across the scan.

    Parameters
    ----------
    centers : ndarray, shape (scan_y, scan_x, 2)  [px]
        Measured (cy, cx) per pattern (NaN = unusable).
    order : int
        Total polynomial degree in the scan coordinates (1 = plane, as for linear descan).
    clip : float
        Outliers beyond ``clip`` robust standard deviations (1.4826·MAD) of the residuals are dropped, iterated.
    n_iter : int
        Rejection iterations.

    Returns
    -------
    ndarray, shape (scan_y, scan_x, 2)  [px]
        Smoothed centres.
    """
    c = np.asarray(centers, dtype=float)
    if c.ndim != 3 or c.shape[-1] != 2:
        raise ValueError(f"centers.shape={c.shape}: expected (scan_y, scan_x, 2) [px]")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order={order!r}: must be a non-negative polynomial degree")
    sy, sx = c.shape[:2]
    X = _design(sy, sx, order)
    out = np.empty_like(c)
    for k in range(2):
        y = c[..., k].ravel()
        use = np.isfinite(y)
        if use.sum() < X.shape[1]:
            raise ValueError(
                f"centers: only {int(use.sum())} finite centres for a degree-{order} surface "
                f"({X.shape[1]} coefficients); lower order= or check the data (all-zero patterns?)"
            )
        for _ in range(n_iter):
            coef, *_ = np.linalg.lstsq(X[use], y[use], rcond=None)
            res = y - X @ coef
            mad = 1.4826 * np.median(np.abs(res[use]))
            new = np.isfinite(y) & (np.abs(res) <= clip * max(mad, 1e-3))
            if new.sum() < X.shape[1] or np.array_equal(new, use):
                break
            use = new
        out[..., k] = (X @ coef).reshape(sy, sx)
    return out


def descan_shifts(centers: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    """Shifts for ``RadialPlan.integrate``: actual centre minus the plan's centre.

    Parameters
    ----------
    centers : ndarray, shape (..., 2)  [px]
        (cy, cx) per pattern (typically from :func:`fit_descan`).
    center : tuple of float  [px]
        The plan's centre (cy, cx).

    Returns
    -------
    ndarray, shape centers.shape  [px]
        (dy, dx).
    """
    c = np.asarray(centers, dtype=float)
    if c.shape[-1:] != (2,):
        raise ValueError(f"centers.shape={c.shape}: last axis must be (cy, cx)")
    if not np.all(np.isfinite(c)):
        raise ValueError("centers: contains NaN; smooth them with fit_descan first")
    return c - np.asarray(center, dtype=float)


# ---------------------------------------------------------------------------------------------------------------
# 3. ellipse
@dataclass(frozen=True, kw_only=True)
class EllipseFit:
    """Elliptical distortion measured from a ring.

    Attributes
    ----------
    ratio : float
        ρ: the recorded pattern is stretched by ρ along ``angle`` (``simkit.radial`` convention).
    angle : float  [rad]
        Stretch direction from +x (columns) towards +y (rows), in [0, π).
    radius : float  [px]
        Reference radius R (the middle of ``r_range``) times the mean sector scale of the last iteration.
    radii : ndarray  [px]
        R·s(φ) per sector of the last iteration (NaN where the sector fit failed).
    phi : ndarray  [rad]
        Sector centres.
    """

    ratio: float
    angle: float
    radius: float
    radii: np.ndarray
    phi: np.ndarray


def _nanmean0(a):
    """Mean over axis 0 ignoring NaN, NaN (silently) where a column has no finite value."""
    f = np.isfinite(a)
    n = f.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(f, a, 0.0).sum(axis=0) / n, np.nan)


def _isotropic_patterns(m, sem, r, r_range):
    """Patterns whose sector profiles inside ``r_range`` are isotropic: the reduced χ² of the sector means about
    their azimuthal mean (Poisson errors) is at most 3× its lower quartile over the patterns + 1. Bragg spots
    of single crystals (same orientation in many patterns) would otherwise bias the ellipse."""
    sel = (r >= r_range[0]) & (r <= r_range[1])
    a = m[..., sel]
    e = sem[..., sel]
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.nanmean(np.where(np.isfinite(a), a, np.nan), axis=1, keepdims=True) if a.size else a
        z2 = np.where(np.isfinite(a) & (e > 0), (a - mu) ** 2 / np.where(e > 0, e, 1.0) ** 2, np.nan)
        n = np.isfinite(z2).sum(axis=(1, 2))
        chi = np.where(n > 0, np.nansum(z2, axis=(1, 2)) / np.maximum(n, 1), np.inf)
    fin = np.isfinite(chi)
    if not fin.any():
        return np.ones(m.shape[0], dtype=bool)
    keep = chi <= 3.0 * np.quantile(chi[fin], 0.25) + 1.0
    return keep if keep.sum() >= 1 else fin


def _has_ring(m, r, r_range):
    """Patterns whose azimuthally averaged I·r has an interior maximum in ``r_range`` (a ring to measure)."""
    avg = np.nanmean(m, axis=1)
    return peak_position(r, avg, r_range, n=1.0).ok


def _sector_scales(m, r, r_range):
    """Radial scale s of each sector profile relative to the sector-mean profile: I_φ(r) ≈ a·Ī(r / s).

    Uses the whole profile shape inside ``r_range`` (robust for broad amorphous rings); s is found on a grid of
    relative steps 2·10⁻⁴ over ±6 % and refined by a parabola through the χ² minimum. NaN where a sector has
    too few finite bins.
    """
    ref = _nanmean0(m)
    fin = np.isfinite(ref)
    rr, ref = r[fin], ref[fin]
    sel = (r >= r_range[0]) & (r <= r_range[1])
    scales = 1.0 + np.arange(-0.06, 0.06 + 1e-12, 2e-4)
    T = np.stack([np.interp(r[sel] / s, rr, ref, left=np.nan, right=np.nan) for s in scales])  # (n_s, n_r)
    Y = m[:, sel]
    use = np.isfinite(Y)[:, None, :] & np.isfinite(T)[None, :, :]
    Yz = np.where(use, Y[:, None, :], 0.0)
    Tz = np.where(use, T[None, :, :], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (Yz * Tz).sum(-1) / (Tz * Tz).sum(-1)
        chi = ((Yz - a[..., None] * Tz) ** 2).sum(-1) / use.sum(-1)
    out = np.full(m.shape[0], np.nan)
    enough = use.sum(-1).min(axis=1) >= 5
    k = np.nanargmin(np.where(np.isfinite(chi), chi, np.inf), axis=1)
    for i in np.flatnonzero(enough):
        j = int(k[i])
        if 0 < j < scales.size - 1:
            c0, c1, c2 = chi[i, j - 1], chi[i, j], chi[i, j + 1]
            den = c0 - 2 * c1 + c2
            d = 0.5 * (c0 - c2) / den if den > 0 else 0.0
            out[i] = scales[j] + d * (scales[1] - scales[0])
    return out


def fit_ellipse(
    data,
    *,
    center: tuple[float, float],
    r_range: tuple[float, float],
    shifts: np.ndarray | None = None,
    n_phi: int = 36,
    n_iter: int = 4,
    bin_width: float = 0.5,
    max_patterns: int = 2000,
) -> EllipseFit:
    """Elliptical distortion from a ring (amorphous or powder) in ``n_phi`` sectors.

    In each sector the radial scale s(φ) of the sector profile relative to the mean profile is found by a
    least-squares match of the whole profile shape inside ``r_range`` (robust for broad amorphous rings as well
    as sharp powder rings); r(φ) = R·s(φ) is fitted with R·(1 + ε cos 2(φ − θ)), ρ = (1 + ε)/(1 − ε). The fit is
    repeated with the corrected plan (sectors then see the residual distortion) and the stretches composed.
    Only patterns that show a ring (an interior maximum of the azimuthally averaged I·r in ``r_range``) and whose
    sector profiles are isotropic within the noise enter the average (patterns with Bragg spots of a single
    crystal in ``r_range`` are dropped: reduced χ² of the sectors about their azimuthal mean above 3× its lower
    quartile + 1, tested from the second iteration on, when the plan already removes most of the ellipse).

    Parameters
    ----------
    data : array-like, shape (..., ny, nx) or (ny, nx)  [counts]
        Patterns (a strided subset of at most ``max_patterns`` is used) or one mean pattern.
    center : tuple of float  [px]
        Beam centre (cy, cx) of the plan that ``shifts`` refer to.
    r_range : tuple of float  [px]
        Radial window around the ring (corrected radius) in pixels.
    shifts : ndarray or None, shape data.shape[:-2] + (2,)  [px]
        Per-pattern descan (actual centre − ``center``).
    n_phi : int
        Number of sectors (≥ 8).
    n_iter : int
        Refinements of (ρ, θ) with the corrected plan.
    bin_width : float  [px]
        Radial bin width used for the sector profiles.
    max_patterns : int
        At most this many patterns enter the sector profiles.

    Returns
    -------
    EllipseFit
    """
    if isinstance(n_phi, bool) or not isinstance(n_phi, (int, np.integer)) or n_phi < 8:
        raise ValueError(f"n_phi={n_phi!r}: need at least 8 sectors to fit cos 2φ and sin 2φ")
    r0, r1 = (float(v) for v in r_range)
    if not (0 <= r0 < r1):
        raise ValueError(f"r_range={r_range!r}: need 0 <= r_min < r_max [px]")
    sub, sub_shifts = _subset(data, shifts, max_patterns)
    edges = np.arange(max(0.0, r0 - 4 * bin_width), r1 + 4 * bin_width + 1e-9, bin_width)
    # only the detector box holding the annulus is integrated (the plan covers nothing outside it)
    sub, ccenter = _crop(sub, center, sub_shifts, edges[-1] * 1.2)
    if sub_shifts is not None and sub.ndim == 3:
        # whole-pixel shifts, which simkit.radial bins through the plan's tables moved by the shift: the neglected
        # residual (≤ ½ px) is a cos φ distortion, orthogonal to the cos 2φ / sin 2φ of an ellipse (second order:
        # δ²/4R ≈ 0.001 px)
        sub_shifts = np.rint(sub_shifts)
    ratio, angle = 1.0, 0.0
    ring = None
    for it in range(max(1, n_iter)):
        plan = make_plan(
            sub.shape[-2:], center=ccenter, pixel_size=1.0, edges=edges, ellipse_ratio=ratio, ellipse_angle=angle
        )
        prof = plan.integrate(sub, sub_shifts, n_phi=int(n_phi))
        if prof.mean.ndim == 2:
            m = prof.mean
        else:
            pm = prof.mean.reshape((-1,) + prof.mean.shape[-2:])
            if ring is None:
                ring = _has_ring(pm, prof.q, (r0, r1))
                if not ring.any():
                    raise ValueError(
                        f"r_range={r_range!r}: no pattern shows a ring (a maximum of I·r) in this window; "
                        "choose a window around an amorphous or powder ring"
                    )
            keep = ring
            if it > 0:  # after the first correction the ellipse no longer makes every sharp ring anisotropic
                iso = _isotropic_patterns(pm, prof.sem_poisson.reshape(pm.shape), prof.q, (r0, r1))
                keep = ring & iso if (ring & iso).any() else ring
            m = _nanmean0(pm[keep])
        radii = _sector_scales(m, prof.q, (r0, r1)) * 0.5 * (r0 + r1)
        phi = 0.5 * (prof.phi_edges[1:] + prof.phi_edges[:-1])
        good = np.isfinite(radii)
        if good.sum() < 6:
            raise ValueError(
                f"r_range={r_range!r}: the ring was found in only {int(good.sum())} of {n_phi} sectors; "
                "check the window (in px) and the centre"
            )
        X = np.stack([np.ones(good.sum()), np.cos(2 * phi[good]), np.sin(2 * phi[good])], axis=1)
        a0, a1, a2 = np.linalg.lstsq(X, radii[good], rcond=None)[0]
        eps = math.hypot(a1, a2) / a0
        th = 0.5 * math.atan2(a2, a1)
        rho_res = (1 + eps) / (1 - eps)
        # compose the residual stretch with the current one (small residuals: multiply the two stretches as
        # matrices and take the symmetric part's eigen-decomposition)
        ratio, angle = _compose(ratio, angle, rho_res, th)
        if abs(rho_res - 1) < 1e-4 and it > 0:
            break
    return EllipseFit(ratio=ratio, angle=angle % math.pi, radius=float(a0), radii=radii, phi=phi)


def ellipse_from_sectors(
    q: np.ndarray,
    sector_mean: np.ndarray,
    *,
    select: np.ndarray | None = None,
    q_range: tuple[float, float] = (0.2, 0.5),
    pixel_size: float = 1.0,
) -> EllipseFit:
    """Residual elliptical distortion from sector profiles that a scan analysis has computed anyway.

    The sector means of the selected patterns (e.g. amorphous pixels without Bragg discs) are averaged; in each
    sector the radial scale s(φ) relative to the azimuthal mean is found by matching the whole profile shape in
    ``q_range`` (as in :func:`fit_ellipse`), and s(φ) = 1 + ε cos 2(φ − θ) gives ρ = (1 + ε)/(1 − ε). One pass,
    first order in ε: the distortion *left* by the plan that made the sector profiles (compose it with that
    plan's own ellipse). No re-integration of the patterns: cheap enough to run on every scan.

    Parameters
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
        Bin centres of the sector profiles.
    sector_mean : ndarray (..., n_phi, n_q)
        Sector mean intensities (``simkit.radial`` sector integration, sectors φ_k = (k + ½)·2π/n_phi from +x
        towards +y).
    select : ndarray of bool, shape sector_mean.shape[:-2], or None
        Patterns to use (default all).
    q_range : tuple of float  [Å⁻¹]
        Window of the ring(s) matched (the amorphous SRO hump and its flanks).
    pixel_size : float  [Å⁻¹/px]
        Converts the reference radius to pixels for ``EllipseFit.radius``/``radii``.

    Returns
    -------
    EllipseFit
        ``ratio``, ``angle`` [rad] of the residual distortion.

    Raises
    ------
    ValueError
        No selected pattern, fewer than 8 sectors, or the ring found in fewer than 6 sectors.
    """
    q = np.asarray(q, dtype=float)
    m = np.asarray(sector_mean)  # float64 only for the selected patterns (a scan's sectors are ~100 MB of float32)
    if m.dtype.kind != "f":
        m = m.astype(float)
    if m.ndim < 2 or m.shape[-1] != q.size:
        raise ValueError(f"sector_mean has shape {m.shape}: expected (..., n_phi, n_q) with n_q = {q.size}")
    n_phi = m.shape[-2]
    if n_phi < 8:
        raise ValueError(f"sector_mean has {n_phi} sectors: need at least 8 to fit cos 2φ and sin 2φ")
    flat = m.reshape((-1, n_phi, q.size))
    if select is not None:
        select = np.asarray(select, dtype=bool)
        if select.shape != m.shape[:-2]:
            raise ValueError(f"select has shape {select.shape}: must equal the scan shape {m.shape[:-2]}")
        flat = flat[select.reshape(-1)]
    if flat.shape[0] == 0:
        raise ValueError("select: no pattern selected to measure the ellipse on")
    flat = flat.astype(float, copy=False)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sectors empty in every pattern stay NaN
        avg = np.nanmean(flat, axis=0)
    scales = _sector_scales(avg, q, q_range)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    good = np.isfinite(scales)
    if good.sum() < 6:
        raise ValueError(f"q_range={q_range!r}: the ring was matched in only {int(good.sum())} of {n_phi} sectors")
    X = np.stack([np.ones(good.sum()), np.cos(2 * phi[good]), np.sin(2 * phi[good])], axis=1)
    a0, a1, a2 = np.linalg.lstsq(X, scales[good], rcond=None)[0]
    eps = math.hypot(a1, a2) / a0
    r0 = 0.5 * (q_range[0] + q_range[1]) / pixel_size
    return EllipseFit(
        ratio=(1 + eps) / (1 - eps), angle=(0.5 * math.atan2(a2, a1)) % math.pi, radius=float(a0 * r0),
        radii=scales * r0, phi=phi,
    )  # fmt: skip


def compose_ellipse(ratio1: float, angle1: float, ratio2: float, angle2: float) -> tuple[float, float]:
    """The single ellipse (ratio, angle [rad]) of two successive small stretches (``simkit.radial`` convention)."""
    return _compose(ratio1, angle1, ratio2, angle2)


def _stretch(rho, th):
    c, s = math.cos(th), math.sin(th)
    R = np.array([[c, -s], [s, c]])
    return R @ np.diag([rho, 1.0]) @ R.T


def _compose(rho1, th1, rho2, th2):
    """Stretch S2·S1 reduced to a single symmetric stretch (ρ, θ) with the unit-perpendicular normalisation."""
    S = _stretch(rho2, th2) @ _stretch(rho1, th1)
    S = 0.5 * (S + S.T)
    w, v = np.linalg.eigh(S)
    k = int(np.argmax(np.abs(w - w.mean()))) if abs(w[0] - w[1]) > 1e-15 else 1
    other = 1 - k
    rho = w[k] / w[other]
    vec = v[:, k]
    th = math.atan2(vec[1], vec[0])
    if rho < 1:  # express as a stretch > 1 along the perpendicular direction
        rho = 1 / rho
        th += math.pi / 2
    return float(rho), float(th % math.pi)


def _crop(sub, center, shifts, radius):
    """Crop patterns to the box that holds every pixel within ``radius`` [px] of the (shifted) centre; returns
    the cropped stack and the plan centre in the cropped frame."""
    ms = 0.0 if shifts is None else float(np.max(np.abs(shifts))) if np.size(shifts) else 0.0
    half = int(math.ceil(radius + ms + 2))
    ny, nx = sub.shape[-2:]
    y0, y1 = max(0, int(center[0]) - half), min(ny, int(center[0]) + half + 2)
    x0, x1 = max(0, int(center[1]) - half), min(nx, int(center[1]) + half + 2)
    return np.ascontiguousarray(sub[..., y0:y1, x0:x1]), (center[0] - y0, center[1] - x0)


def _subset(data, shifts, max_patterns):
    shape = tuple(int(s) for s in data.shape)
    if len(shape) == 2:
        return np.asarray(data, dtype=float), (None if shifts is None else np.asarray(shifts, dtype=float))
    lead = shape[:-2]
    n = int(np.prod(lead))
    stride = max(1, int(math.ceil(n / max_patterns)))
    idx = np.arange(0, n, stride)
    read = _flat_reader(data, lead)
    if stride == 1:
        sub = read(0, n)
    else:
        sub = np.stack([read(int(i), int(i) + 1)[0] for i in idx])
    sh = None
    if shifts is not None:
        sh = np.asarray(shifts, dtype=float).reshape(-1, 2)[idx]
    return sub, sh


# ---------------------------------------------------------------------------------------------------------------
# 4. Q calibration
@dataclass(frozen=True, kw_only=True)
class QCalibration:
    """Pixel size from known rings.

    Attributes
    ----------
    pixel_size : float  [Å⁻¹/px]
    pixel_size_err : float  [Å⁻¹/px]
        One-sigma uncertainty from the ring-radius uncertainties (and the scatter between rings when > 1).
    q_known : ndarray  [Å⁻¹]
        Q of the reflections used.
    radius_px : ndarray  [px]
        Measured ring radii.
    radius_err : ndarray  [px]
    labels : list of str
    """

    pixel_size: float
    pixel_size_err: float
    q_known: np.ndarray
    radius_px: np.ndarray
    radius_err: np.ndarray
    labels: list


def _known_rings(reflections, d_spacings, temperature):
    labels, qs = [], []
    if reflections is not None:
        for item in reflections:
            try:
                phase, hkl = item
                q = reflection_q(phase, hkl, temperature)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"reflections item {item!r}: expected (phase, (h, k, l)) with phase in {tuple(CRYSTALS)} ({e})"
                ) from None
            labels.append(f"{phase} {''.join(str(v) for v in hkl)}")
            qs.append(q)
    if d_spacings is not None:
        for d in np.atleast_1d(np.asarray(d_spacings, dtype=float)):
            if not np.isfinite(d) or d <= 0:
                raise ValueError(f"d_spacings contains {d!r}: give positive d-spacings [Å]")
            labels.append(f"d={d:.4f} Å")
            qs.append(1.0 / d)
    if not qs:
        raise ValueError("calibrate_q: give reflections=[(phase, (h, k, l)), ...] or d_spacings=[Å, ...]")
    return labels, np.array(qs)


def calibrate_q(
    data,
    *,
    center: tuple[float, float],
    pixel_size_guess: float,
    reflections: list | None = None,
    d_spacings: list | None = None,
    temperature: str = "cryo",
    shifts: np.ndarray | None = None,
    ellipse_ratio: float = 1.0,
    ellipse_angle: float = 0.0,
    window: float = 0.06,
    bin_width: float = 0.5,
    max_patterns: int = 2000,
) -> QCalibration:
    """Pixel size [Å⁻¹/px] from rings of known reflections.

    Parameters
    ----------
    data : array-like, shape (..., ny, nx) or (ny, nx)  [counts]
        Patterns with the calibration rings (a powder or a polycrystalline region).
    center : tuple of float  [px]
        Beam centre (cy, cx) the ``shifts`` refer to.
    pixel_size_guess : float  [Å⁻¹/px]
        Approximate pixel size (e.g. from the camera length, :func:`pixel_size_from_camera`); each ring is
        searched within ±``window`` (relative) of Q_known / guess.
    reflections : list of (phase, (h, k, l)) or None
        Known reflections, phase in ``CRYSTALS`` (Q from cryogenic lattice constants by default).
    d_spacings : list of float or None  [Å]
        User-given d-spacings (Q = 1/d).
    temperature : {"cryo", "room"}
        Lattice constants to use for ``reflections``.
    shifts : ndarray or None  [px]
        Per-pattern descan.
    ellipse_ratio, ellipse_angle : float, float  [–, rad]
        Ellipse correction (``simkit.radial`` convention), e.g. from :func:`fit_ellipse`.
    window : float
        Relative half-width of each ring's search window.
    bin_width : float  [px]
        Radial bin width of the profile.
    max_patterns : int
        At most this many patterns are integrated.

    Returns
    -------
    QCalibration
    """
    g = float(pixel_size_guess) if pixel_size_guess is not None else float("nan")
    if not np.isfinite(g) or g <= 0:
        raise ValueError(
            f"pixel_size_guess={pixel_size_guess!r}: give an approximate pixel size [Å⁻¹/px] (e.g. from "
            "pixel_size_from_camera(camera_length, pixel_pitch, energy))"
        )
    labels, qk = _known_rings(reflections, d_spacings, temperature)
    sub, sh = _subset(data, shifts, max_patterns)
    r_exp = qk / g
    rmax = float(r_exp.max() * (1 + 2 * window) + 4 * bin_width)
    edges = np.arange(0.0, rmax, bin_width)
    sub, ccenter = _crop(sub, center, sh, edges[-1] * max(ellipse_ratio, 1.0 / ellipse_ratio))
    plan = make_plan(
        sub.shape[-2:], center=ccenter, pixel_size=1.0, edges=edges, ellipse_ratio=ellipse_ratio,
        ellipse_angle=ellipse_angle,
    )  # fmt: skip
    prof = plan.integrate(sub, sh)
    m = prof.mean.reshape(-1, plan.n_q)
    mean = _nanmean0(m)
    sem = np.sqrt(np.nansum(prof.sem_poisson.reshape(-1, plan.n_q) ** 2, axis=0)) / m.shape[0]
    radii, errs = [], []
    for r in r_exp:
        try:
            fit = peak_position(prof.q, mean, (r * (1 - window), r * (1 + window)), n=0.0, sigma=sem)
        except ValueError as e:
            raise ValueError(f"ring expected at r ≈ {r:.1f} px lies outside the detector or window ({e})") from None
        radii.append(float(fit.position))
        errs.append(float(fit.position_err))
    radii, errs = np.array(radii), np.array(errs)
    ok = np.isfinite(radii) & np.isfinite(errs) & (errs > 0)
    if not ok.any():
        raise ValueError(
            f"no ring found near the expected radii {np.round(r_exp, 1).tolist()} px; check pixel_size_guess, "
            "centre and ellipse"
        )
    # Q = p · r: weighted least squares through the origin in r, errors in r → σ_Q = p σ_r
    w = 1.0 / errs[ok] ** 2
    p = float(np.sum(w * qk[ok] * radii[ok]) / np.sum(w * radii[ok] ** 2))
    p_each = qk[ok] / radii[ok]
    err_stat = float(p * np.sqrt(1.0 / np.sum((radii[ok] / errs[ok]) ** 2)))
    err = max(err_stat, float(np.std(p_each, ddof=1) / math.sqrt(ok.sum()))) if ok.sum() > 1 else err_stat
    return QCalibration(pixel_size=p, pixel_size_err=err, q_known=qk, radius_px=radii, radius_err=errs, labels=labels)


def pixel_size_from_camera(*, camera_length: float, pixel_pitch: float, energy: float) -> float:
    """Pixel size from the camera length.

    Parameters
    ----------
    camera_length : float  [mm]
    pixel_pitch : float  [µm]
        Physical pixel size (55 µm Merlin/Medipix3, 150 µm EMPAD, 100 µm Arina).
    energy : float  [eV]

    Returns
    -------
    float  [Å⁻¹/px]
        pitch / (camera length · λ) (small-angle mapping).
    """
    from simkit.geometry import DetectorGeometry

    return DetectorGeometry.from_camera(
        shape=(2, 2), camera_length=camera_length, pixel_pitch=pixel_pitch, energy=energy
    ).pixel_size


# ---------------------------------------------------------------------------------------------------------------
# 5. plan
def calibrated_plan(
    detector_shape,
    *,
    center: tuple[float, float],
    pixel_size: float | None = None,
    ellipse_ratio: float = 1.0,
    ellipse_angle: float = 0.0,
    q_min: float = 0.0,
    q_max: float | None = None,
    n_bins: int | None = None,
    edges=None,
    mask=None,
    split_pixels: bool = False,
) -> RadialPlan:
    """The ``RadialPlan`` of a calibrated detector (thin wrapper of ``simkit.radial.make_plan``).

    Parameters
    ----------
    detector_shape : tuple of int  [px] or fitting.io.Scan
        Detector shape (ny, nx), or a Scan (its detector shape and, if ``pixel_size`` is None, its pixel size).
    center : tuple of float  [px]
        Mean beam centre (cy, cx); per-pattern descan travels separately as ``shifts``.
    pixel_size : float or None  [Å⁻¹/px]
        Calibrated pixel size; None (and none in the Scan) raises a ValueError naming how to obtain it.
    ellipse_ratio, ellipse_angle : float, float  [–, rad]
    q_min, q_max : float  [Å⁻¹]
    n_bins : int or None
    edges : array-like or None  [Å⁻¹]
    mask : ndarray of bool or None
        True = use the pixel (e.g. False on dead pixels or a beam stop).
    split_pixels : bool

    Returns
    -------
    RadialPlan
    """
    if hasattr(detector_shape, "scan_shape"):  # a fitting.io.Scan
        scan = detector_shape
        detector_shape = scan.detector_shape
        pixel_size = scan.pixel_size if pixel_size is None else pixel_size
    if pixel_size is None:
        raise ValueError(
            "missing calibration 'pixel_size' [Å⁻¹/px]: give it (load_scan(..., pixel_size=...)) or obtain it with "
            "calibrate_q (known rings) or pixel_size_from_camera (camera length)"
        )
    return make_plan(
        detector_shape,
        center=center,
        pixel_size=pixel_size,
        edges=edges,
        n_bins=n_bins,
        q_max=q_max,
        q_min=q_min,
        mask=mask,
        ellipse_ratio=ellipse_ratio,
        ellipse_angle=ellipse_angle,
        split_pixels=split_pixels,
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class Calibration:
    """Everything :func:`calibrate` found.

    Attributes
    ----------
    plan : RadialPlan
        Plan at the mean beam centre with pixel size and ellipse.
    shifts : ndarray, shape (scan_y, scan_x, 2)  [px]
        Per-pattern descan relative to ``plan.center`` (smooth surface).
    centers : ndarray, shape (scan_y, scan_x, 2)  [px]
        Measured (unsmoothed) centres.
    ellipse : EllipseFit or None
    q_calibration : QCalibration or None
    info : dict
    """

    plan: RadialPlan
    shifts: np.ndarray
    centers: np.ndarray
    ellipse: EllipseFit | None
    q_calibration: QCalibration | None
    info: dict[str, Any]


def calibrate(
    scan,
    *,
    pixel_size: float | None = None,
    ellipse_q_range: tuple[float, float] | None = None,
    reflections: list | None = None,
    d_spacings: list | None = None,
    descan_order: int = 1,
    center_method: str = "com",
    ellipse_max_patterns: int = 512,
    q_max: float | None = None,
    n_bins: int | None = None,
    mask=None,
) -> Calibration:
    """Calibrate a scan end to end: centres → smooth descan → (ellipse) → (Q scale) → ``RadialPlan``.

    Parameters
    ----------
    scan : fitting.io.Scan or array-like (scan_y, scan_x, ny, nx)
    pixel_size : float or None  [Å⁻¹/px]
        Known pixel size (or the guess for ``reflections``/``d_spacings``); default ``scan.pixel_size``.
    ellipse_q_range : tuple of float or None  [Å⁻¹]
        Window around a ring to measure the ellipse; None skips the ellipse fit.
    reflections, d_spacings : see :func:`calibrate_q`; when given the pixel size is refined from them.
    descan_order : int
        Degree of the descan surface (1 = plane).
    center_method : {"com", "xcorr"}
    ellipse_max_patterns : int
        Patterns (evenly strided over the scan) used for the ellipse fit.
    q_max : float or None  [Å⁻¹]
    n_bins : int or None
    mask : ndarray of bool or None

    Returns
    -------
    Calibration
    """
    data = scan.data if hasattr(scan, "scan_shape") else scan
    ps = pixel_size if pixel_size is not None else getattr(scan, "pixel_size", None)
    if ps is None:
        raise ValueError(
            "missing calibration 'pixel_size' [Å⁻¹/px]: pass pixel_size= (or a guess with reflections=) or "
            "load the scan with pixel_size=..."
        )
    if data.ndim != 4:
        raise ValueError(f"scan data shape {tuple(data.shape)}: expected (scan_y, scan_x, det_y, det_x)")
    centers = find_centers(data, method=center_method)
    smooth = fit_descan(centers, order=descan_order)
    center = (float(np.mean(smooth[..., 0])), float(np.mean(smooth[..., 1])))
    shifts = descan_shifts(smooth, center)
    ell = None
    ratio, angle = 1.0, 0.0
    if ellipse_q_range is not None:
        ell = fit_ellipse(
            data, center=center, shifts=shifts, r_range=tuple(q / ps for q in ellipse_q_range),
            max_patterns=ellipse_max_patterns,
        )  # fmt: skip
        ratio, angle = ell.ratio, ell.angle
    qc = None
    if reflections is not None or d_spacings is not None:
        qc = calibrate_q(
            data, center=center, pixel_size_guess=ps, reflections=reflections, d_spacings=d_spacings,
            shifts=shifts, ellipse_ratio=ratio, ellipse_angle=angle,
        )  # fmt: skip
        ps = qc.pixel_size
    plan = calibrated_plan(
        tuple(data.shape[-2:]), center=center, pixel_size=ps, ellipse_ratio=ratio, ellipse_angle=angle,
        q_max=q_max, n_bins=n_bins, mask=mask,
    )  # fmt: skip
    info = {"descan_rms_residual_px": float(np.sqrt(np.nanmean((centers - smooth) ** 2)))}
    return Calibration(plan=plan, shifts=shifts, centers=centers, ellipse=ell, q_calibration=qc, info=info)
