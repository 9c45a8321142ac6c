"""Calibrate a measured scan: descan (per-pattern beam centre), elliptical distortion, Q scale → ``RadialPlan``.

Steps (each usable alone; :func:`calibrate` runs them in order, with one detector ``mask`` — True = use the
pixel — carried through every step and into the plan):

0. :func:`find_bad_pixels` — static hot and dead pixels (robust per frame and per scan), merged into the mask;
   transient hot pixels (:func:`isolated_hot`) are excluded frame by frame from the centres.
1. :func:`find_centers` — the direct-beam centre of every pattern [px], by an iterated centre of mass inside a
   disc (``method="com"``) or by cross-correlation with a disc template refined to sub-pixel precision by a
   parabola through the correlation maximum (``method="xcorr"``); refused (:class:`CenterError`) when the mean
   pattern shows no compact direct-beam disc. :func:`find_center` finds the centre of one (mean) pattern by the
   direct beam, by ring points along rays and a circle fit (beam stop, ring-only patterns) or by the pattern's
   inversion (Friedel) symmetry (spot patterns), cross-checks the methods and raises or flags when they fail or
   disagree.
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

Radii in pixels are measured with the project's single peak estimator (``simkit.peak_estimator.peak_position``) on
the ring intensity (n = 0) of radial profiles computed by ``simkit.radial`` — no pixel binning happens here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit, prange

from simkit.peak_estimator import peak_position
from simkit.radial import RadialPlan, make_plan

__all__ = [
    "CRYSTALS",
    "BadPixels",
    "Calibration",
    "check_scan_data",
    "CenterError",
    "CenterFit",
    "EllipseFit",
    "QCalibration",
    "calibrate",
    "calibrate_q",
    "calibrated_plan",
    "compose_ellipse",
    "descan_shifts",
    "ellipse_from_sectors",
    "find_bad_pixels",
    "find_center",
    "find_centers",
    "fit_descan",
    "fit_ellipse",
    "fit_ellipse_points",
    "isolated_hot",
    "load_mask",
    "repair_hot",
    "pixel_size_from_camera",
    "reflection_q",
]

#: Lattice centring of each calibration crystal ("F": h, k, l all even or all odd; "I": h + k + l even).
CRYSTALS = {"LiF": "F", "Li2O": "F", "Li": "I", "Cu": "F", "Au": "F"}


def _lattice_constant(phase: str, temperature: str) -> float:
    """Lattice constant [Å] from ``structures.crystals.LATTICE_CONSTANTS`` (sources named there)."""
    from structures.crystals import LATTICE_CONSTANTS

    return float(LATTICE_CONSTANTS[phase][temperature])


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
def _mean_pattern(data, max_patterns=256, bad=None):
    """Mean of at most ``max_patterns`` strided patterns; ``bad`` (callable on a float frame → the frame with its
    transient hot pixels set to NaN) is applied per frame. NaN pixels are ignored (NaN where never finite)."""
    if data.ndim == 2:
        frame = np.asarray(data, dtype=float)
        return frame if bad is None else bad(frame)
    lead = data.shape[:-2]
    n = int(np.prod(lead))
    step = max(1, n // max_patterns)
    flat_idx = np.arange(0, n, step)[:max_patterns]
    acc = np.zeros(data.shape[-2:])
    if bad is None and np.dtype(data.dtype).kind in "iub":  # integer frames: no NaN to count around
        for i in flat_idx:
            acc += data[np.unravel_index(i, lead)]
        return acc / len(flat_idx)
    cnt = np.zeros(data.shape[-2:])
    for i in flat_idx:
        frame = np.asarray(data[np.unravel_index(i, lead)], dtype=float)
        if bad is not None:
            frame = bad(frame)
        f = np.isfinite(frame)
        acc += np.where(f, frame, 0.0)
        cnt += f
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, acc / cnt, np.nan)


def _native(a):
    """``a`` in native byte order (detector files are often big-endian; numba kernels need native)."""
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("=")) if a.dtype.byteorder not in ("=", "|") else a


def _check_mask(mask, shape, name="mask"):
    """The detector mask as a bool array of ``shape`` (True = use), or None."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"{name}.shape={m.shape}: must equal the detector shape {tuple(shape)} (True = use pixel)")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"{name}: expected a boolean mask (True = use the pixel), got values other than 0/1")
        m = m.astype(bool)
    if not m.any():
        raise ValueError(f"{name}: every pixel is masked (True = use the pixel; did you pass the inverse?)")
    return m


def load_mask(path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A detector mask from a file: ``.npy``, ``.tif``/``.tiff`` (Pillow) or ``.h5``/``.hdf5`` (the dataset named
    ``mask``, else the only 2-D dataset). Non-zero / True = use the pixel (the project's convention).

    Parameters
    ----------
    path : str or os.PathLike
    shape : tuple of int or None  [px]
        Expected detector shape (ny, nx); a mismatch raises.

    Returns
    -------
    ndarray of bool (ny, nx)
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"mask file not found: {p}")
    suf = p.suffix.lower()
    if suf == ".npy":
        m = np.load(p, allow_pickle=False)
    elif suf in (".tif", ".tiff"):
        from PIL import Image

        with Image.open(p) as im:
            m = np.array(im)
    elif suf in (".h5", ".hdf5"):
        import h5py

        with h5py.File(p, "r") as f:
            found = []
            f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 2 else None)
            names = [n for n in found if n.split("/")[-1] == "mask"] or found
            if len(names) != 1:
                raise ValueError(f"mask file {p}: expected a 2-D dataset named 'mask' (or exactly one 2-D dataset), "
                                 f"found {found}")  # fmt: skip
            m = np.asarray(f[names[0]])
    else:
        raise ValueError(f"mask file {p}: unknown format {suf!r}; use .npy, .tif or .h5 (True/non-zero = use)")
    if m.ndim != 2:
        raise ValueError(f"mask file {p}: expected a 2-D mask, got shape {m.shape}")
    m = np.asarray(m) != 0
    if shape is not None:
        m = _check_mask(m, shape)
    elif not m.any():
        raise ValueError(f"mask file {p}: every pixel is masked (True/non-zero = use; did you save the inverse?)")
    return m


# ---------------------------------------------------------------------------------------------------------------
# 0. bad pixels
#: An isolated pixel is hot when it exceeds this many times the largest of its 8 neighbours (+ 1 count): a real
#: feature (disc, spot, ring) spreads over several pixels through the detector's point-spread function, a hot pixel
#: or a cosmic-ray hit does not; Poisson noise reaches it with probability < 1e-20 per pixel.
HOT_FACTOR = 8.0


def isolated_hot(frames, *, factor: float = HOT_FACTOR) -> np.ndarray:
    """Isolated hot pixels of each frame (transient: cosmic rays, flickering pixels).

    Parameters
    ----------
    frames : ndarray (..., ny, nx)  [counts]
    factor : float
        A pixel is hot when its value exceeds ``factor`` × (largest of its 8 neighbours + 1 count).

    Returns
    -------
    ndarray of bool, frames.shape
        True = hot (exclude).
    """
    f = _native(frames)
    shape = f.shape
    f3 = np.ascontiguousarray(f.reshape((-1,) + shape[-2:]))
    bad = np.empty(f3.shape, dtype=np.bool_)
    _k_exclude(f3, np.ones(shape[-2:], dtype=np.bool_), float(factor), bad)
    if f3.dtype.kind == "f":
        bad &= np.isfinite(f3)  # NaN pixels are not hot, only absent
    return bad.reshape(shape)


def _neighbour_third_dimmest(frame):
    """The third-smallest of the 8 neighbours of every pixel (NaN and off-detector neighbours count as +inf): a
    pixel just outside a sharp disc edge has ≥ 3 dim neighbours farther out, a dead pixel in a bright region none."""
    p = np.pad(np.asarray(frame, dtype=float), 1, mode="constant", constant_values=np.inf)
    p = np.where(np.isnan(p), np.inf, p)
    ny, nx = frame.shape
    nb = np.stack([p[1 + dy : 1 + dy + ny, 1 + dx : 1 + dx + nx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    return np.sort(nb, axis=0)[2]


@njit(cache=True, parallel=True, nogil=True)
def _k_repair(block, use, factor, rnd, apply, hits):
    """Per frame k of ``block`` (m, ny, nx), in place: every isolated hot pixel (_left_out's rule on the original
    values) takes the mean of its finite non-hot neighbours, rounded when ``rnd`` (integer frames); ``apply``
    False only counts. hits[k] = number of such pixels."""
    m, ny, nx = block.shape
    for k in prange(m):
        n = 0
        for i in range(ny):
            # most rows hold no pixel above ``factor`` (a hot pixel must exceed it): a branch-free count first
            above = 0
            for j in range(nx):
                above += float(block[k, i, j]) > factor
            if above == 0:
                continue
            for j in range(nx):
                if use[i, j] and float(block[k, i, j]) > factor and _left_out(block, use, factor, k, i, j):
                    n += 1
        hits[k] = n
        if n == 0 or not apply:
            continue
        idx = np.empty((n, 2), np.int64)
        n = 0
        for i in range(ny):
            for j in range(nx):
                if use[i, j] and float(block[k, i, j]) > factor and _left_out(block, use, factor, k, i, j):
                    idx[n, 0] = i
                    idx[n, 1] = j
                    n += 1
        vals = np.empty(n)
        for t in range(n):
            i, j = idx[t, 0], idx[t, 1]
            acc, cnt = 0.0, 0
            for di in range(-1, 2):
                for dj in range(-1, 2):
                    ii, jj = i + di, j + dj
                    if (di != 0 or dj != 0) and 0 <= ii < ny and 0 <= jj < nx:
                        w = float(block[k, ii, jj])
                        if use[ii, jj] and w == w and not (w > factor and _left_out(block, use, factor, k, ii, jj)):
                            acc += w
                            cnt += 1
            vals[t] = acc / cnt if cnt > 0 else 0.0
            if rnd:
                vals[t] = math.floor(vals[t] + 0.5)
        for t in range(n):
            block[k, idx[t, 0], idx[t, 1]] = vals[t]


def repair_hot(data, *, mask=None, factor: float = HOT_FACTOR, chunk: int = 256, copy: bool = True):
    """Isolated hot pixels of every frame (:func:`isolated_hot`: cosmic rays, flickering pixels) taken out of the
    data: NaN in float data (then ignored by ``simkit.radial``), the rounded mean of their 8 neighbours in integer
    data (which cannot hold NaN).

    Parameters
    ----------
    data : ndarray (..., ny, nx)  [counts]
        In-memory patterns.
    mask : ndarray of bool (ny, nx) or None
        True = use; masked pixels (e.g. the static hot pixels of :func:`find_bad_pixels`) are neither tested nor
        used as neighbours.
    factor : float
        Isolation factor (see :func:`isolated_hot`).
    chunk : int
        Frames per kernel call.
    copy : bool
        Work on a copy (made only when a hot pixel is found); False repairs ``data`` in place (data in
        non-native byte order are always converted to a native copy first).

    Returns
    -------
    (ndarray, int)
        The data (the input itself when nothing was found) and the number of pixels taken out.
    """
    a = np.asarray(data)
    if a.dtype.byteorder not in ("=", "|"):  # big-endian detector data: repaired in a native-order copy
        a, copy = _native(a), False
    if not copy and not a.flags.c_contiguous:
        raise ValueError("repair_hot(copy=False): data must be a C-contiguous array to be repaired in place")
    flat = a.reshape((-1,) + a.shape[-2:])
    use = np.ones(a.shape[-2:], np.bool_) if mask is None else np.ascontiguousarray(_check_mask(mask, a.shape[-2:]))
    total = 0
    out = a
    for s in range(0, flat.shape[0], chunk):
        view = np.ascontiguousarray(flat[s : s + chunk])
        hits = np.zeros(view.shape[0], np.int64)
        _k_repair(view, use, float(factor), False, False, hits)  # count only: most chunks have none
        n = int(hits.sum())
        if n == 0:
            continue
        blk = view.copy()  # found pixels are replaced in a copy of the chunk
        if blk.dtype.kind == "f":
            blk[isolated_hot(np.where(use, blk, np.nan), factor=factor)] = np.nan
        else:
            _k_repair(blk, use, float(factor), True, True, hits)
        if n:
            if out is a and copy:
                out = a.copy()
            out.reshape(flat.shape)[s : s + chunk] = blk
            total += n
    return out, total


def _hot_in_sum(total, ratio=3.0, z=10.0):
    """Pixels of a summed pattern above ``ratio`` × (the second-brightest of their 8 neighbours + 1) by more than
    ``z`` Poisson standard deviations: a pixel a few times too bright in every frame. The second-brightest
    neighbour (not the median) keeps the pixels on the edge of a sharp disc (≥ 3 neighbours inside it)."""
    t = np.where(np.isfinite(total), total, -np.inf)
    p = np.pad(t, 1, mode="constant", constant_values=-np.inf)
    ny, nx = t.shape
    nb = np.stack([p[1 + dy : 1 + dy + ny, 1 + dx : 1 + dx + nx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    second = np.maximum(np.sort(nb, axis=0)[-2], 0.0)
    with np.errstate(invalid="ignore"):
        return np.isfinite(total) & (total > ratio * (second + 1.0)) & (total - second > z * np.sqrt(second + 1.0))


def _drop_hot(frame, factor=HOT_FACTOR):
    hot = isolated_hot(frame, factor=factor)
    return np.where(hot, np.nan, frame) if hot.any() else frame


@dataclass(frozen=True, kw_only=True, eq=False)
class BadPixels:
    """Bad detector pixels found by :func:`find_bad_pixels`.

    Attributes
    ----------
    mask : ndarray of bool (ny, nx)
        True = use the pixel: the user's mask without the static hot and dead pixels.
    hot : ndarray of int (n, 2)
        (iy, ix) of pixels hot in at least ``min_share`` of the checked frames, or in their summed pattern.
    dead : ndarray of int (n, 2)
        (iy, ix) of pixels with no count in any checked frame while the third-dimmest of their 8 neighbours sums
        to ≥ ``dead_counts``.
    transient : int
        Isolated hot (frame, pixel) detections in the checked frames that are not static (cosmic rays,
        flickering pixels); excluded frame by frame by the centre finder.
    frames_checked : int
    saturated_frames : int
        Checked frames with more than half their pixels at the frame's maximum value (flat / saturated frames).
    """

    mask: np.ndarray
    hot: np.ndarray
    dead: np.ndarray
    transient: int
    frames_checked: int
    saturated_frames: int

    def summary(self) -> dict:
        """JSON-ready numbers (pixel coordinates as (iy, ix))."""
        return {
            "hot_pixels": int(len(self.hot)),
            "dead_pixels": int(len(self.dead)),
            "hot_pixel_list_px": self.hot[:50].tolist(),
            "dead_pixel_list_px": self.dead[:50].tolist(),
            "transient_hot_detections": int(self.transient),
            "frames_checked": int(self.frames_checked),
            "saturated_frames": int(self.saturated_frames),
            "masked_pixels": int(np.count_nonzero(~self.mask)),
        }


def find_bad_pixels(
    data,
    *,
    mask=None,
    factor: float = HOT_FACTOR,
    min_share: float = 0.5,
    dead_counts: float = 20.0,
    max_patterns: int = 64,
) -> BadPixels:
    """Static hot and dead pixels of a detector from (a strided subset of) the patterns, robustly.

    Per frame, a pixel brighter than ``factor`` × (its brightest neighbour + 1) is an isolated hot pixel
    (:func:`isolated_hot`). Per scan, a pixel is *static* hot when it is isolated-hot in at least ``min_share``
    of the checked frames, or when in the summed pattern (each frame's isolated hits left out) it exceeds
    3 × (its second-brightest neighbour + 1) by more than 10 Poisson standard deviations (a pixel a few times too
    bright in every frame);
    dead when it has no count in any frame while even the third-dimmest of its 8 neighbours sums to
    ≥ ``dead_counts`` (Poisson probability of that ≲ e⁻²⁰; a pixel just outside a sharp disc edge has dim neighbours
    farther out).

    Parameters
    ----------
    data : array-like, shape (..., ny, nx) or (ny, nx)  [counts]
    mask : ndarray of bool or None
        User mask (True = use), e.g. a beam stop; kept in the result's mask.
    factor : float
        Isolation factor of a hot pixel.
    min_share : float
        Share of frames in which a pixel must be isolated-hot to be static.
    dead_counts : float  [counts]
        Smallest summed count of the third-dimmest neighbour for a zero pixel to be dead.
    max_patterns : int
        Frames checked (evenly strided; 64 float64 frames of 256² take 34 MB).

    Returns
    -------
    BadPixels
    """
    shape = tuple(int(v) for v in data.shape)
    if len(shape) < 2:
        raise ValueError(f"data.shape={shape}: expected (..., ny, nx) patterns")
    det = shape[-2:]
    user = _check_mask(mask, det)
    if len(shape) == 2:
        sub = np.asarray(data, dtype=float)[None]
    else:
        sub, _ = _subset(data, None, max_patterns)
        sub = np.array(sub, dtype=float).reshape((-1,) + det)  # an own copy, masked in place below
    if user is not None:
        sub[:, ~user] = np.nan
    hot_each = isolated_hot(sub, factor=factor)
    share = hot_each.mean(axis=0)
    # the sum with each frame's transient hits left out (np.nansum's arithmetic, with one work array)
    left = np.where(hot_each, 0.0, sub)
    left[np.isnan(left)] = 0.0
    total = np.sum(left, axis=0)
    del left
    # the sum test on the frames without their transient hits: one cosmic ray does not make a pixel static
    static = (share >= min_share) | _hot_in_sum(np.where(user, total, np.nan) if user is not None else total)
    if user is not None:
        static &= user
    nb = _neighbour_third_dimmest(np.where(user, total, np.nan) if user is not None else total)
    dead = (total == 0) & np.isfinite(nb) & (nb >= dead_counts)
    if user is not None:
        dead &= user
    transient = int(np.count_nonzero(hot_each & ~static[None]))
    fmax = np.nanmax(sub.reshape(sub.shape[0], -1), axis=1, initial=0.0)
    at_max = np.sum(sub.reshape(sub.shape[0], -1) == fmax[:, None], axis=1)
    saturated = int(np.count_nonzero((fmax > 0) & (at_max > 0.5 * np.prod(det))))
    use = np.ones(det, dtype=bool) if user is None else user.copy()
    use &= ~static & ~dead
    return BadPixels(
        mask=use, hot=np.argwhere(static), dead=np.argwhere(dead), transient=transient,
        frames_checked=int(sub.shape[0]), saturated_frames=saturated,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# 1. centres
class CenterError(ValueError):
    """No plausible centre: the method's evidence is missing or contradicts another method."""


def _beam_estimate(mean, mask=None, min_share=0.1):
    """Centre (cy, cx) and radius [px] of the direct beam from a mean pattern (half-maximum disc).

    The half maximum is taken of the 3×3-median-filtered, lightly smoothed pattern (isolated hot pixels cannot
    set it); of the pieces above ½, ¼ or ⅛ of the maximum the one holding the most counts, taken at its own half
    maximum, must be a compact disc (≥ 50 % of the circle through its farthest pixel) carrying ≥ ``min_share`` of
    the counts above the median background — else
    :class:`CenterError` (a beam stop, a ring-only or a spot pattern has no direct beam to find: use
    :func:`find_center` with ``method="ring"`` or ``"friedel"``).
    """
    from scipy.ndimage import label, median_filter

    m = np.asarray(mean, dtype=float)
    if mask is not None:
        m = np.where(mask, m, np.nan)
    if np.isnan(m).any() and np.isfinite(m).any():
        # masked pixels (a chip gap through the beam) filled from their neighbours by normalised convolution, so
        # the disc keeps its shape for this first estimate; the per-pattern centres leave them out
        from scipy.ndimage import gaussian_filter

        w = np.isfinite(m).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = gaussian_filter(np.nan_to_num(m), 2.0) / gaussian_filter(w, 2.0)
        m = np.where(np.isfinite(m), m, fill)
    if not np.isfinite(m).any() or not np.nanmax(m) > np.nanmin(m):
        raise ValueError(
            "data: all patterns are zero (or constant) — no direct beam to find (check the file / scan region)"
        )
    m = np.nan_to_num(m - np.nanmin(m))  # a detector offset (signed or biased storage) is not signal
    m = median_filter(m, size=3, mode="nearest")
    k = np.array([0.25, 0.5, 0.25])
    s = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 0, m)
    s = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, s)
    if not s.max() > 0:
        raise CenterError("data: no direct beam (only isolated pixels have counts)")
    back = float(np.median(m))
    excess = np.maximum(m - back, 0.0)
    total = max(float(excess.sum()), 1e-300)
    why = []
    # the direct beam is the piece holding the most counts, not necessarily the brightest pixels (a strong Bragg
    # disc can be brighter per pixel in a mean pattern): lower the level until such a piece is found
    for frac in (0.5, 0.25, 0.125):
        lab, _ = label(s > frac * s.max())
        sums = np.bincount(lab.ravel(), weights=excess.ravel())
        sums[0] = 0.0
        big = int(np.argmax(sums))
        peak = np.unravel_index(int(np.argmax(np.where(lab == big, s, -np.inf))), s.shape)
        lab2, _ = label(s > 0.5 * s[peak])  # its own half-maximum disc
        main = lab2 == lab2[peak]
        iy, ix = np.nonzero(main)
        w = m[iy, ix]
        cy, cx = float((iy * w).sum() / w.sum()), float((ix * w).sum() / w.sum())
        r_far = float(np.sqrt(((iy - cy) ** 2 + (ix - cx) ** 2).max())) + 0.5
        fill = main.sum() / (math.pi * r_far**2)
        # the direct beam carries a large share of the counts (≥ 14 % through 60 nm of Cu at 2 mrad; most of a
        # mean SEND pattern), a Bragg spot of a pattern whose beam is stopped only a few per cent
        share = float(excess[iy, ix].sum() / total)
        if fill >= 0.5 and share >= min_share:
            break
        why = []
        if fill < 0.5:
            why.append(f"is not a compact disc (fill {fill:.2f}: a ring?)")
        if share < min_share:
            why.append(f"holds only {100 * share:.1f} % of the counts (a Bragg spot?)")
    else:
        raise CenterError(
            f"no plausible direct-beam disc: the brightest half-maximum region {' and '.join(why)}; for a beam "
            "stop or ring-only pattern use find_center(..., method='ring'), for spots method='friedel'"
        )
    radius = math.sqrt(main.sum() / math.pi)
    return cy, cx, radius


def find_centers(
    data,
    *,
    radius: float | None = None,
    method: str = "com",
    n_iter: int = 20,
    max_shift: float | None = None,
    chunk: int = 512,
    mask=None,
    hot_factor: float | None = HOT_FACTOR,
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
    mask : ndarray of bool (ny, nx) or None
        True = use the pixel; masked pixels (beam stop edge, hot/dead pixels) do not enter any centre.
    hot_factor : float or None
        Isolated hot pixels of each frame (:func:`isolated_hot` with this factor) are excluded frame by frame;
        None keeps them.

    Returns
    -------
    ndarray, shape data.shape[:-2] + (2,)  [px]
        (cy, cx) in index coordinates (pixel (i, j) centred at (i, j)); NaN for patterns without signal.

    Raises
    ------
    CenterError
        The mean pattern shows no plausible direct-beam disc (see :func:`find_center` for other patterns).
    """
    if method not in ("com", "xcorr"):
        raise ValueError(f"method={method!r}: choose 'com' or 'xcorr'")
    shape = tuple(int(s) for s in data.shape)
    if len(shape) < 3:
        raise ValueError(f"data.shape={shape}: expected (..., ny, nx) patterns")
    lead, (ny, nx) = shape[:-2], shape[-2:]
    mask = _check_mask(mask, (ny, nx))
    # the first estimate's 3×3 median filter removes isolated hot pixels of the mean pattern
    cy0, cx0, r_beam = _beam_estimate(_mean_pattern(data), mask)
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
    use_box = np.ascontiguousarray(mask[y0:y1, x0:x1]) if mask is not None else np.ones((y1 - y0, x1 - x0), np.bool_)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        box = flat(s, e)
        box = np.ascontiguousarray(_native(box))
        fac = -1.0 if hot_factor is None else float(hot_factor)
        if method == "com":
            c = np.empty((e - s, 2))
            _k_com(box, use_box, fac, float(y0), float(x0), float(cy0), float(cx0), radius, int(n_iter), c)
        else:
            bad = np.empty(box.shape, dtype=np.bool_)
            _k_exclude(box, use_box, fac, bad)
            box = np.where(bad, 0.0, box.astype(float))
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


@njit(cache=True, inline="always")
def _left_out(box, use, factor, k, i, j):
    """Pixel (i, j) of pattern k is left out: not ``use`` (mask), NaN, or isolated hot — above ``factor`` × (the
    largest finite of its neighbours inside the box + 1) (``factor`` ≤ 0: no hot test). NumPy twin:
    :func:`isolated_hot` (the same rule on whole frames)."""
    v = float(box[k, i, j])
    if (not use[i, j]) or v != v:
        return True
    if factor <= 0.0 or v <= factor:  # below factor it cannot exceed factor × (neighbour + 1)
        return False
    by, bx = use.shape
    for di in range(-1, 2):
        for dj in range(-1, 2):
            ii = i + di
            jj = j + dj
            if (di != 0 or dj != 0) and 0 <= ii < by and 0 <= jj < bx:
                w = float(box[k, ii, jj])
                if w == w and v <= factor * (max(w, 0.0) + 1.0):
                    return False  # a bright enough neighbour (for most bright pixels the first one)
    return True


@njit(cache=True, parallel=True)
def _k_exclude(box, use, factor, bad):
    """bad[k, i, j] = _left_out(box, use, factor, k, i, j) for every pixel (the ``xcorr`` path)."""
    m, by, bx = box.shape
    for k in prange(m):
        for i in range(by):
            for j in range(bx):
                bad[k, i, j] = _left_out(box, use, factor, k, i, j)


@njit(cache=True, parallel=True)
def _k_com(box, use, factor, y0, x0, cy0, cx0, radius, n_iter, out):
    """Iterated centre of mass inside a disc of ``radius`` [px] for every pattern of ``box`` (m, by, bx), whose
    pixel (0, 0) sits at detector index (y0, x0); pixels left out (_left_out: masked, NaN, isolated hot) and the
    pixels at their mirror positions about the current centre count as 0 (none left out: the plain centre of
    mass); out (m, 2) = (cy, cx), NaN for patterns with no counts in the disc. Each pixel is tested once per
    pattern, when first visited. Twin: tests/reference.py::center_of_mass_reference."""
    m, by, bx = box.shape
    r2 = radius * radius
    for k in prange(m):
        state = np.zeros((by, bx), np.int8)  # 0 untested, 1 used, 2 left out
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
                        if state[i, j] == 0:
                            state[i, j] = 2 if _left_out(box, use, factor, k, i, j) else 1
                        if state[i, j] == 2:
                            continue
                        # a pixel whose mirror about the current centre is left out is left out too, so that a
                        # masked part of the disc does not pull the centre away from it
                        mi = int(math.floor(2.0 * (cy - y0) - i + 0.5))
                        mj = int(math.floor(2.0 * (cx - x0) - j + 0.5))
                        if 0 <= mi < by and 0 <= mj < bx:
                            if state[mi, mj] == 0:
                                state[mi, mj] = 2 if _left_out(box, use, factor, k, mi, mj) else 1
                            if state[mi, mj] == 2:
                                continue
                        v = float(box[k, i, j])
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


@dataclass(frozen=True, kw_only=True)
class CenterFit:
    """A pattern centre from :func:`find_center`.

    Attributes
    ----------
    center : tuple of float  [px]
        (cy, cx), index coordinates.
    method : str
        "beam" (direct-beam disc), "ring" (ring points along rays, circle/ellipse fit) or "friedel" (inversion
        symmetry of the pattern).
    radius : float or None  [px]
        Beam radius ("beam") or mean ring radius ("ring").
    residual : float  [px]
        RMS distance of the ring points from the fitted circle ("ring"); 0 otherwise.
    n_points : int
        Ring points used ("ring").
    checks : dict
        Other methods' centres [px] and their distances from ``center``.
    flag : str or None
        Why the centre is doubtful (methods disagree beyond the tolerance), None when they agree.
    """

    center: tuple
    method: str
    radius: float | None = None
    residual: float = 0.0
    n_points: int = 0
    checks: dict = field(default_factory=dict)
    flag: str | None = None


def _spot_pairs_center(img, mask=None, tol=2.0, z=8.0, max_spots=60):
    """Centre of inversion symmetry from Bragg spots (Friedel pairs p, 2c − p).

    Spots: local maxima of the 2 px-smoothed pattern ``z`` Poisson deviations above its 25 px median background
    (the ``max_spots`` brightest), positioned to sub-pixel precision by parabolas through the logarithm of the
    smoothed excess. Candidates: the midpoints of all spot pairs (on a
    lattice many coincide, so a midpoint shared by several pairs is not yet the centre). Score of a candidate c:
    the share of the spots whose mirror 2c − p falls on a usable detector pixel that find a spot within ``tol``
    px there. Intensities are not compared (Friedel's law fails for tilted or thick crystals: a pair on the
    scikit-ued Merlin frame differs 3.4×); on a lattice every half-lattice point is a centre of the positions,
    which the caller sees as a second candidate with the same score (ambiguous, refused). Returns (cy, cx, score,
    matched, next best score farther than 3 px), or None with < 4 spots."""
    from scipy import ndimage as ndi

    a = np.asarray(img, dtype=float)
    w = np.isfinite(a) if mask is None else (mask & np.isfinite(a))
    fill = np.where(w, a, np.nanmedian(np.where(w, a, np.nan)))
    sm = ndi.gaussian_filter(fill, 2.0)
    bg = ndi.median_filter(sm, 25)
    inner = ndi.binary_erosion(w, iterations=4)
    pk = (sm == ndi.maximum_filter(sm, 11)) & (sm - bg > z * np.sqrt(np.maximum(bg, 0) + 1)) & inner
    if pk.sum() < 4:
        return None
    # sub-pixel positions: a parabola through the logarithm of the smoothed excess (exact for a Gaussian spot)
    py, px = np.nonzero(pk)
    ex = np.maximum(sm - bg, 1e-12)
    py = np.clip(py, 1, a.shape[0] - 2)
    px = np.clip(px, 1, a.shape[1] - 2)

    def vertex(m1, c0, p1):
        m1, c0, p1 = np.log(m1), np.log(c0), np.log(p1)
        den = m1 - 2 * c0 + p1
        return np.where(den < 0, 0.5 * (m1 - p1) / np.where(den < 0, den, -1.0), 0.0)

    dy = vertex(ex[py - 1, px], ex[py, px], ex[py + 1, px])
    dx = vertex(ex[py, px - 1], ex[py, px], ex[py, px + 1])
    pts = np.stack([py + np.clip(dy, -1, 1), px + np.clip(dx, -1, 1)], axis=1)
    height = ex[py, px]
    order = np.argsort(height)[::-1][:max_spots]
    pts, height = pts[order], np.maximum(height[order], 1e-12)
    i, j = np.triu_indices(len(pts), 1)
    cand = 0.5 * (pts[i] + pts[j])
    mirror = 2 * cand[:, None, :] - pts[None, :, :]  # (n_cand, n_spots, 2)
    ry, rx = np.rint(mirror[..., 0]).astype(int), np.rint(mirror[..., 1]).astype(int)
    ok = (ry >= 0) & (ry < a.shape[0]) & (rx >= 0) & (rx < a.shape[1])
    usable = np.zeros(ok.shape, dtype=bool)
    usable[ok] = inner[ry[ok], rx[ok]]
    dd = np.hypot(mirror[..., None, 0] - pts[None, None, :, 0], mirror[..., None, 1] - pts[None, None, :, 1])
    d = dd.min(-1)
    matched = (usable & (d <= tol)).sum(axis=1)
    expected = usable.sum(axis=1)
    score = np.where(expected >= 4, matched / np.maximum(expected, 1), 0.0)
    best = int(np.lexsort((matched, score))[-1])
    if matched[best] < 4:
        return None
    # refine: the mean of the midpoints of the matched pairs
    m_ok = usable[best] & (d[best] <= tol)
    c = 0.5 * (pts[m_ok] + (2 * cand[best] - pts[m_ok]))
    partner = np.argmin(np.hypot(*(mirror[best][m_ok][:, None, :] - pts[None, :, :]).transpose(2, 0, 1)), axis=1)
    c = 0.5 * (pts[m_ok] + pts[partner]).mean(axis=0) if m_ok.any() else c.mean(axis=0)
    far = np.hypot(*(cand - cand[best]).T) > 3.0
    nxt = float(score[far].max()) if far.any() else 0.0
    return float(c[0]), float(c[1]), float(score[best]), int(matched[best]), nxt


def _friedel_center(img, mask=None, sigma=2.0, background=12.0):
    """Centre of inversion symmetry of ``img``: the maximum of the convolution of the high-passed, masked image
    with itself lies at 2·centre (a pattern equals itself rotated by π about its centre: Friedel's law for spots,
    any ring). Returns (cy, cx, sharpness = peak / second-highest separate peak)."""
    from scipy.ndimage import gaussian_filter, maximum_filter
    from scipy.signal import fftconvolve

    a = np.asarray(img, dtype=float)
    w = np.isfinite(a) if mask is None else (mask & np.isfinite(a))
    a = np.where(w, a, 0.0)
    a = np.log1p(np.maximum(a - np.min(a[w]), 0.0))  # compress the dynamic range: no single disc dominates
    wf = w.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bg = gaussian_filter(a * wf, background) / np.maximum(gaussian_filter(wf, background), 1e-12)
        hp = np.where(w, gaussian_filter(a, sigma) - bg, 0.0)
    c = fftconvolve(hp, hp, mode="full")
    ov = fftconvolve(wf, wf, mode="full")
    c = np.where(ov >= 0.25 * ov.max(), c / np.maximum(ov, 1.0), -np.inf)
    k = np.unravel_index(int(np.argmax(c)), c.shape)
    peak = c[k]

    def parab(m1, c0, p1):
        den = m1 - 2 * c0 + p1
        return 0.5 * (m1 - p1) / den if np.isfinite(den) and den < 0 else 0.0

    sy = k[0] + parab(c[k[0] - 1, k[1]], peak, c[k[0] + 1, k[1]]) if 0 < k[0] < c.shape[0] - 1 else float(k[0])
    sx = k[1] + parab(c[k[0], k[1] - 1], peak, c[k[0], k[1] + 1]) if 0 < k[1] < c.shape[1] - 1 else float(k[1])
    loc = (c == maximum_filter(c, size=9)) & np.isfinite(c)
    loc[max(0, k[0] - 4) : k[0] + 5, max(0, k[1] - 4) : k[1] + 5] = False
    second = float(c[loc].max()) if loc.any() else 0.0
    sharp = float(peak / second) if second > 0 else np.inf
    return 0.5 * sy, 0.5 * sx, sharp


def _prepare_rays(img, mask=None):
    """The pattern smoothed by a 1 px Gaussian (masked pixels 0) and the pixels a ray sample may not touch
    (masked or non-finite, dilated by 2 px: the smoothing and the interpolation reach that far)."""
    from scipy.ndimage import binary_dilation, gaussian_filter

    a = np.asarray(img, dtype=float)
    bad = ~np.isfinite(a) if mask is None else (~mask | ~np.isfinite(a))
    return gaussian_filter(np.where(bad, 0.0, a), 1.0), binary_dilation(bad, iterations=2)


def _ray_maxima(prep, center, phi, lo, hi, step=0.25):
    """Radius [px] of the intensity maximum along each ray φ inside its window [lo, hi] (sub-pixel by a parabola);
    NaN where the window leaves the detector, touches a bad pixel, the maximum sits on the window edge, or it
    stands above the ray's median by less than ¼ of the 90th percentile of that prominence over the rays."""
    from scipy.ndimage import map_coordinates

    a, bad = prep
    phi = np.asarray(phi, dtype=float)
    lo = np.broadcast_to(np.asarray(lo, dtype=float), phi.shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=float), phi.shape)
    n_s = max(3, int(math.ceil(float(np.max(hi - lo)) / step)) + 1)
    t = np.linspace(0.0, 1.0, n_s)
    r = lo[:, None] + (hi - lo)[:, None] * t[None, :]
    yy = center[0] + r * np.sin(phi)[:, None]
    xx = center[1] + r * np.cos(phi)[:, None]
    ny, nx = a.shape
    inside = ((yy >= 0) & (yy <= ny - 1) & (xx >= 0) & (xx <= nx - 1)).all(axis=1)
    prof = map_coordinates(a, [yy.ravel(), xx.ravel()], order=1, mode="nearest").reshape(yy.shape)
    hit = map_coordinates(bad.astype(float), [yy.ravel(), xx.ravel()], order=0, mode="nearest").reshape(yy.shape)
    k = np.argmax(prof, axis=1)
    ok = inside & (hit.max(axis=1) == 0) & (k > 0) & (k < n_s - 1)
    # a ring, not noise: the ray's maximum stands above its median by ≥ ¼ of what the clearest rays show
    prom = prof.max(axis=1) - np.median(prof, axis=1)
    if ok.any():
        ok &= prom >= 0.25 * np.percentile(prom[ok], 90)
    out = np.full(phi.shape, np.nan)
    for i in np.flatnonzero(ok):
        j = int(k[i])
        m1, c0, p1 = prof[i, j - 1], prof[i, j], prof[i, j + 1]
        den = m1 - 2 * c0 + p1
        dr = r[i, 1] - r[i, 0]
        out[i] = r[i, j] + (0.5 * (m1 - p1) / den * dr if den < 0 else 0.0)
    return out


def _ring_points(img, center, r_range, *, mask=None, n_rays=180):
    """(φ, r) of the ring maxima along ``n_rays`` rays from ``center`` within ``r_range`` [px] (see _ray_maxima)."""
    phi = (np.arange(n_rays) + 0.5) * 2 * np.pi / n_rays
    r = _ray_maxima(_prepare_rays(img, mask), center, phi, r_range[0], r_range[1])
    good = np.isfinite(r)
    return phi[good], r[good]


def _circle_fit(y, x):
    """Algebraic (Kåsa) circle through points: (cy, cx, R)."""
    A = np.stack([x, y, np.ones_like(x)], axis=1)
    b = x * x + y * y
    (p, q, c), *_ = np.linalg.lstsq(A, b, rcond=None)
    cx, cy = p / 2, q / 2
    return float(cy), float(cx), float(math.sqrt(max(c + cx * cx + cy * cy, 0.0)))


def _ring_center(img, guess, r_range, mask=None, n_iter=4, clip=3.0):
    """Ring centre by ring points along rays and a robust circle fit, iterated from ``guess``."""
    cy, cx = guess
    for _ in range(n_iter):
        phi, r = _ring_points(img, (cy, cx), r_range, mask=mask)
        if r.size < 12:
            raise CenterError(
                f"ring centre: the ring was found on only {r.size} of 180 rays in r_range={r_range} px around "
                f"({cy:.1f}, {cx:.1f}); give a window around a ring (r_range) or a better starting centre"
            )
        y, x = cy + r * np.sin(phi), cx + r * np.cos(phi)
        use = np.ones(r.size, dtype=bool)
        for _ in range(3):
            fy, fx, fr = _circle_fit(y[use], x[use])
            res = np.hypot(y - fy, x - fx) - fr
            mad = 1.4826 * np.median(np.abs(res[use])) + 1e-3
            new = np.abs(res) <= clip * mad
            if new.sum() < 12 or np.array_equal(new, use):
                break
            use = new
        moved = math.hypot(fy - cy, fx - cx)
        cy, cx = fy, fx
        if moved < 1e-3:
            break
    rms = float(np.sqrt(np.mean(res[use] ** 2)))
    return cy, cx, fr, rms, int(use.sum())


def _ring_window(img, center, mask=None):
    """The window [px] around the strongest ring of the azimuthal average of I·r about ``center``."""
    from scipy.ndimage import gaussian_filter1d

    a = np.asarray(img, dtype=float)
    w = np.isfinite(a) if mask is None else (mask & np.isfinite(a))
    rmax = int(min(center[0], center[1], a.shape[0] - 1 - center[0], a.shape[1] - 1 - center[1]))
    if rmax < 8:
        raise CenterError(f"ring centre: the centre guess ({center[0]:.1f}, {center[1]:.1f}) is at the detector edge")
    # azimuthal mean in 1-px rings about the guess, through the project's one radial core (pixel_size 1: Q = r [px])
    plan = make_plan(a.shape, center=(float(center[0]), float(center[1])), pixel_size=1.0,
                     edges=np.r_[0.0, np.arange(1, rmax + 1) - 0.5], mask=w)  # fmt: skip
    prof = np.asarray(plan.integrate(np.where(w, a, 0.0)).mean, dtype=float)
    # a ring stands above its ±6 px running background; beyond 4 px from the centre (the beam or beam stop)
    f = np.nan_to_num(prof)
    score = (f - gaussian_filter1d(f, 6.0)) * np.arange(rmax)
    score[: max(5, int(0.05 * max(a.shape)))] = -np.inf  # not the direct beam or the beam stop's edge
    k = int(np.argmax(score))
    half = max(4.0, 0.15 * k)
    return (max(2.0, k - half), min(rmax - 1.0, k + half))


def find_center(
    pattern,
    *,
    mask=None,
    method: str = "auto",
    r_range: tuple[float, float] | None = None,
    guess: tuple[float, float] | None = None,
    tolerance: float = 2.0,
    min_sharpness: float = 1.2,
) -> CenterFit:
    """Centre of one (mean) pattern by the method its content allows, failing loudly.

    ``beam``: the half-maximum disc of the direct beam (centre of mass), refused when the brightest region is not
    one compact disc (a beam stop, a ring-only or a spot pattern). ``friedel``: the centre of inversion symmetry
    (the direct beam may be hidden): the spot-pair midpoint about which ≥ 80 % of the Bragg spots whose mirror
    falls on the usable detector find their Friedel partner (≥ 4 matched spots), when spots are found, else the
    maximum of the self-convolution of the pattern (rings); refused when the best candidate is not sharp (its
    score or height below ``min_sharpness`` × that of the next candidate farther than 3 px: on a lattice of spots
    a half-lattice point is as symmetric as the origin). ``ring``: ring maxima along 180 rays (masked rays
    dropped) and a robust circle fit, started from ``guess`` or the Friedel centre; refused with fewer than 12
    rays. ``auto``: the beam when it is plausible (flagged when the Friedel centre lies farther than
    ``tolerance``), else Friedel refined by a ring when one is found (raises when the ring and the Friedel centre
    disagree beyond ``tolerance``: the beam stop is probably not masked); the other methods' centres are kept in
    ``checks``.

    Parameters
    ----------
    pattern : ndarray (ny, nx) or (..., ny, nx)  [counts]
        One pattern or a stack (its mean is used).
    mask : ndarray of bool or None
        True = use the pixel (beam stop and bad pixels False).
    method : {"auto", "beam", "friedel", "ring"}
    r_range : tuple of float or None  [px]
        Ring window of the ``ring`` method (default: around the strongest ring of the azimuthal average).
    guess : tuple of float or None  [px]
        Starting centre of the ``ring`` method.
    tolerance : float  [px]
        Largest disagreement between methods accepted by ``auto``.
    min_sharpness : float
        Smallest ratio of the Friedel peak to the next peak.

    Returns
    -------
    CenterFit

    Raises
    ------
    CenterError
        The method found no plausible centre, or (``auto`` without a direct beam) the ring and Friedel centres
        disagree by more than ``tolerance``.
    """
    if method not in ("auto", "beam", "friedel", "ring"):
        raise ValueError(f"method={method!r}: choose 'auto', 'beam', 'friedel' or 'ring'")
    img = np.asarray(pattern)
    if img.ndim > 2:
        img = _mean_pattern(img, bad=_drop_hot)
    else:
        img = _drop_hot(img.astype(float))
    mask = _check_mask(mask, img.shape)
    if method == "beam":
        cy, cx, r = _beam_estimate(img, mask)
        return CenterFit(center=(cy, cx), method="beam", radius=r)
    if method in ("friedel", "auto"):
        try:
            beam = _beam_estimate(img, mask) if method == "auto" else None
        except CenterError:
            beam = None
        sp = _spot_pairs_center(img, mask)
        from_spots = sp is not None and sp[2] >= 0.8  # ≥ 80 % of the spots with a usable mirror find a partner
        if from_spots:
            fy, fx, sharp = sp[0], sp[1], sp[2] / max(sp[4], 1e-3)
        else:
            fy, fx, sharp = _friedel_center(img, mask)
        if method == "friedel":
            if sharp < min_sharpness:
                raise CenterError(
                    f"Friedel centre: the symmetry peak is not sharp (peak/next {sharp:.2f} < {min_sharpness}); "
                    "the pattern may not be centrosymmetric or be too noisy"
                )
            return CenterFit(center=(fy, fx), method="friedel", checks={"friedel_sharpness": sharp})
        checks = {"friedel_px": [fy, fx], "friedel_sharpness": sharp, "friedel_from_spots": from_spots}
        if beam is not None:
            d = math.hypot(beam[0] - fy, beam[1] - fx)
            checks["friedel_distance_px"] = d
            flag = None
            if d > tolerance and sharp >= min_sharpness:
                flag = (
                    f"the direct beam ({beam[0]:.2f}, {beam[1]:.2f}) and the pattern's inversion centre "
                    f"({fy:.2f}, {fx:.2f}) disagree by {d:.1f} px > tolerance {tolerance} px (a bright Bragg disc "
                    "next to the beam, a tilted or truncated pattern)"
                )
            return CenterFit(center=(beam[0], beam[1]), method="beam", radius=beam[2], checks=checks, flag=flag)
        guess = (fy, fx) if guess is None else guess
    if guess is None:
        fy, fx, _ = _friedel_center(img, mask)
        guess = (fy, fx)
        checks = {"friedel_px": [fy, fx]}
    elif method == "ring":
        checks = {}
    try:
        win = _ring_window(img, guess, mask) if r_range is None else tuple(float(v) for v in r_range)
        cy, cx, R, rms, npts = _ring_center(img, guess, win, mask)
    except CenterError:
        if method == "ring":
            raise
        if checks.get("friedel_sharpness", 0.0) < min_sharpness or not checks.get("friedel_from_spots"):
            raise CenterError(
                "centre: no direct-beam disc, no ring found about the inversion centre, and no unambiguous set of "
                f"Friedel spot pairs (sharpness {checks.get('friedel_sharpness', 0.0):.2f}): mask the beam stop, "
                "or give the centre explicitly"
            ) from None
        return CenterFit(center=guess, method="friedel", checks=checks)
    d = math.hypot(cy - guess[0], cx - guess[1])
    checks["ring_start_distance_px"] = d
    flag = None
    if d > tolerance:
        flag = (
            f"the ring centre ({cy:.2f}, {cx:.2f}) and the starting (inversion) centre ({guess[0]:.2f}, "
            f"{guess[1]:.2f}) disagree by {d:.1f} px > tolerance {tolerance} px: mask the beam stop, or give r_range"
        )
        if method == "auto":
            raise CenterError(f"centre: {flag}")
    return CenterFit(center=(cy, cx), method="ring", radius=R, residual=rms, n_points=npts, checks=checks, flag=flag)


# ---------------------------------------------------------------------------------------------------------------
# 2. smooth descan
def _descan_rows(sy: int, n_rows: int | None, order: int):
    """Indices of ``n_rows`` evenly spaced scan rows (first and last included, at least ``order`` + 2 rows) whose
    centres fit the descan surface, or None for every row."""
    if n_rows is None:
        return None
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        raise ValueError(f"descan_rows={n_rows!r}: a positive number of scan rows, or None for every pattern")
    n = max(int(n_rows), int(order) + 2)
    if n >= sy:
        return None
    return np.unique(np.round(np.linspace(0, sy - 1, n)).astype(np.int64))


class _ScanRows:
    """The scan rows ``rows`` of a 4-D scan as a 4-D array-like (integer index of the first axis), read on demand:
    what :func:`find_centers` needs of the rows it measures, without copying them."""

    def __init__(self, data, rows):
        self.data = data
        self.rows = np.asarray(rows, np.int64)
        self.shape = (int(self.rows.size),) + tuple(int(v) for v in data.shape[1:])
        self.dtype = np.dtype(data.dtype)
        self.ndim = 4

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if not isinstance(key[0], (int, np.integer)):
            raise TypeError("_ScanRows: the first index must be an integer row")
        return np.asarray(self.data[(int(self.rows[int(key[0])]),) + tuple(key[1:])])


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


def _sector_scales(m, r, r_range, span=0.06, max_span=0.5):
    """Radial scale s of each sector profile relative to the sector-mean profile: I_φ(r) ≈ a·Ī(r / s).

    Uses the whole profile shape inside ``r_range`` (robust for broad amorphous rings); s is found on a grid of
    relative steps 2·10⁻⁴ over ±``span`` and refined by a parabola through the χ² minimum. A sector whose minimum
    sits on the edge of the grid is searched again on a grid three times as wide (up to ±``max_span``) — a scale
    on its search bound is never returned; NaN where a sector has too few finite bins or the minimum stays on the
    bound of the widest grid.
    """
    ref = _nanmean0(m)
    fin = np.isfinite(ref)
    rr, ref = r[fin], ref[fin]
    sel = (r >= r_range[0]) & (r <= r_range[1])
    out = np.full(m.shape[0], np.nan)
    todo = np.arange(m.shape[0])
    while todo.size:
        step = 2e-4 * max(1.0, span / 0.06)
        scales = 1.0 + np.arange(-span, span + 1e-12, step)
        T = np.stack([np.interp(r[sel] / sc, rr, ref, left=np.nan, right=np.nan) for sc in scales])  # (n_s, n_r)
        Y = m[todo][:, sel]
        use = np.isfinite(Y)[:, None, :] & np.isfinite(T)[None, :, :]
        Yz = np.where(use, Y[:, None, :], 0.0)
        Tz = np.where(use, T[None, :, :], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = (Yz * Tz).sum(-1) / (Tz * Tz).sum(-1)
            chi = ((Yz - a[..., None] * Tz) ** 2).sum(-1) / use.sum(-1)
        enough = use.sum(-1).min(axis=1) >= 5
        k = np.nanargmin(np.where(np.isfinite(chi), chi, np.inf), axis=1)
        again = []
        for i in np.flatnonzero(enough):
            j = int(k[i])
            if 0 < j < scales.size - 1:
                c0, c1, c2 = chi[i, j - 1], chi[i, j], chi[i, j + 1]
                den = c0 - 2 * c1 + c2
                d = 0.5 * (c0 - c2) / den if den > 0 else 0.0
                out[todo[i]] = scales[j] + d * (scales[1] - scales[0])
            else:
                again.append(todo[i])
        if not again or span >= max_span:
            break
        todo, span = np.array(again), min(max_span, 3.0 * span)
    return out


def _ray_ellipse(img, center, r_range, mask=None, n_iter=4, n_rays=180):
    """Ellipse about a fixed ``center`` from ring points along rays: (ratio, angle [rad], short semi-axis [px],
    number of points). The first pass searches each ray inside ``r_range`` (rays along the long axis of a strong
    ellipse find their maximum on the window edge and are dropped: the short-axis arc remains); later passes
    search each ray inside ``r_range`` scaled to the current ellipse's radius there, so ratios up to 2 and beyond
    are followed.
    A linear least-squares fit of A·dx² + B·dx·dy + C·dy² = 1 with robust rejection (4 MAD) gives the ellipse."""
    prep = _prepare_rays(img, mask)
    phi = (np.arange(n_rays) + 0.5) * 2 * np.pi / n_rays
    mid = 0.5 * (r_range[0] + r_range[1])
    lo, hi = r_range[0] / mid, r_range[1] / mid
    ratio, angle, b, n = 1.0, 0.0, mid, 0
    for it in range(n_iter):
        if it == 0:
            r = _ray_maxima(prep, center, phi, r_range[0], r_range[1])
        else:
            rp = b / np.sqrt(np.cos(phi - angle) ** 2 / ratio**2 + np.sin(phi - angle) ** 2)
            r = _ray_maxima(prep, center, phi, lo * rp, hi * rp)
        good = np.isfinite(r)
        if good.sum() < 12:
            raise ValueError(
                f"r_range={r_range!r}: the ring was found on only {int(good.sum())} of {n_rays} rays (masked rays "
                "are dropped); check the window (in px), the centre and the mask"
            )
        dx, dy = r[good] * np.cos(phi[good]), r[good] * np.sin(phi[good])
        A = np.stack([dx * dx, dx * dy, dy * dy], axis=1)
        use = np.ones(dx.size, dtype=bool)
        for _ in range(3):
            coef, *_ = np.linalg.lstsq(A[use], np.ones(use.sum()), rcond=None)
            res = A @ coef - 1.0
            mad = 1.4826 * np.median(np.abs(res[use])) + 1e-6
            new = np.abs(res) <= 4 * mad
            if new.sum() < 12 or np.array_equal(new, use):
                break
            use = new
        w, v = np.linalg.eigh(np.array([[coef[0], 0.5 * coef[1]], [0.5 * coef[1], coef[2]]]))
        if not w[0] > 0:
            raise ValueError(f"r_range={r_range!r}: the ring points do not lie on an ellipse about the centre")
        a_long, b = 1.0 / math.sqrt(w[0]), 1.0 / math.sqrt(w[1])
        ratio, angle = a_long / b, math.atan2(v[1, 0], v[0, 0]) % math.pi
        n = int(use.sum())
    return float(ratio), float(angle), float(b), n


def fit_ellipse_points(y, x) -> tuple[float, float, float, float, float]:
    """Ellipse through points by the direct least-squares conic fit (Fitzgibbon et al. 1999, in the numerically
    stable form of Halíř & Flusser 1998): works on arcs (a half or a quarter of the ring, as behind a beam stop).

    Parameters
    ----------
    y, x : array-like  [px]
        Point coordinates (rows, columns); at least 5 points.

    Returns
    -------
    (cy, cx, ratio, angle, b)
        Centre [px], ratio of the semi-axes (long / short ≥ 1), direction of the long axis [rad] from +x
        towards +y in [0, π) (the ``simkit.radial`` convention: pattern stretched by ``ratio`` along ``angle``),
        short semi-axis b [px] (the corrected ring radius).

    Raises
    ------
    ValueError
        Fewer than 5 points, or points that lie on no ellipse (e.g. on a line).
    """
    y, x = np.asarray(y, dtype=float).ravel(), np.asarray(x, dtype=float).ravel()
    if y.size != x.size or y.size < 5:
        raise ValueError(f"y, x: need ≥ 5 points of equal count, got {y.size} and {x.size}")
    my, mx = y.mean(), x.mean()
    sc = max(np.std(y), np.std(x))
    if not sc > 0:
        raise ValueError("y, x: all points coincide; no ellipse")
    yn, xn = (y - my) / sc, (x - mx) / sc
    D1 = np.stack([xn * xn, xn * yn, yn * yn], axis=1)
    D2 = np.stack([xn, yn, np.ones_like(xn)], axis=1)
    S1, S2, S3 = D1.T @ D1, D1.T @ D2, D2.T @ D2
    try:
        T = -np.linalg.solve(S3, S2.T)
    except np.linalg.LinAlgError:
        raise ValueError("y, x: the points lie on no ellipse (degenerate, e.g. collinear)") from None
    M = S1 + S2 @ T
    M = np.array([M[2] / 2, -M[1], M[0] / 2])
    w, v = np.linalg.eig(M)
    v = np.real(v)
    cond = 4 * v[0] * v[2] - v[1] ** 2
    ok = np.flatnonzero(cond > 0)
    if ok.size == 0:
        raise ValueError("y, x: the points lie on no ellipse (degenerate, e.g. collinear)")
    a1 = v[:, ok[0]]
    A, B, C = a1
    Dc, Ec, F = T @ a1
    den = B * B - 4 * A * C
    cxn = (2 * C * Dc - B * Ec) / den
    cyn = (2 * A * Ec - B * Dc) / den
    Q = np.array([[A, B / 2], [B / 2, C]])
    Fc = A * cxn**2 + B * cxn * cyn + C * cyn**2 + Dc * cxn + Ec * cyn + F
    w2, v2 = np.linalg.eigh(Q / -Fc)
    if not (w2 > 0).all():
        raise ValueError("y, x: the points lie on a hyperbola or a degenerate conic, not an ellipse")
    a_long, b = 1 / math.sqrt(w2[0]), 1 / math.sqrt(w2[1])
    angle = math.atan2(v2[1, 0], v2[0, 0]) % math.pi
    return float(my + sc * cyn), float(mx + sc * cxn), float(a_long / b), float(angle), float(b * sc)


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
    mask=None,
) -> EllipseFit:
    """Elliptical distortion from a ring (amorphous or powder) in ``n_phi`` sectors.

    In each sector the radial scale s(φ) of the sector profile relative to the mean profile is found by a
    least-squares match of the whole profile shape inside ``r_range`` (robust for broad amorphous rings as well
    as sharp powder rings); r(φ) = R·s(φ) is fitted with R·(1 + ε cos 2(φ − θ)), ρ = (1 + ε)/(1 − ε). The fit is
    repeated with the corrected plan (sectors then see the residual distortion) and the stretches composed. The
    first plan comes from ring points along rays (:func:`_ray_ellipse`: the ring maximum on each unmasked ray and
    a least-squares ellipse about ``center``) when they show a ratio above 1.04, so strong ellipses (ratio 2) are
    followed; a sector scale that sits on its ±6 % search bound is searched again on a wider grid (up to ±50 %),
    never returned on the bound. Masked pixels (``mask`` False: beam stop, bad pixels) enter no sector; rays
    through them are dropped.
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
    mask : ndarray of bool (ny, nx) or None
        True = use the pixel.

    Returns
    -------
    EllipseFit

    Raises
    ------
    ValueError
        No ring in the window, the ring in fewer than 6 sectors, or a fitted ratio that stays on its search bound.
    """
    if isinstance(n_phi, bool) or not isinstance(n_phi, (int, np.integer)) or n_phi < 8:
        raise ValueError(f"n_phi={n_phi!r}: need at least 8 sectors to fit cos 2φ and sin 2φ")
    r0, r1 = (float(v) for v in r_range)
    if not (0 <= r0 < r1):
        raise ValueError(f"r_range={r_range!r}: need 0 <= r_min < r_max [px]")
    sub, sub_shifts = _subset(data, shifts, max_patterns)
    mask = _check_mask(mask, sub.shape[-2:])
    edges = np.arange(max(0.0, r0 - 4 * bin_width), r1 + 4 * bin_width + 1e-9, bin_width)
    # a first ellipse from ring points along rays on the mean pattern (descan ignored: ≤ a few px of blur)
    mean_img = _nanmean0(sub.reshape((-1,) + sub.shape[-2:]).astype(float)) if sub.ndim == 3 else sub
    c_mean = center
    if sub_shifts is not None and sub.ndim == 3:
        c_mean = (center[0] + float(np.mean(sub_shifts[:, 0])), center[1] + float(np.mean(sub_shifts[:, 1])))
    try:
        ray_ratio, ray_angle, _, _ = _ray_ellipse(mean_img, c_mean, (r0, r1), mask)
    except ValueError:
        ray_ratio, ray_angle = 1.0, 0.0
    start = (ray_ratio, ray_angle) if ray_ratio > 1.04 else (1.0, 0.0)
    # only the detector box holding the annulus is integrated (the plan covers nothing outside it)
    sub, ccenter, cmask = _crop(sub, center, sub_shifts, edges[-1] * 1.2 * start[0], mask)
    if sub_shifts is not None and sub.ndim == 3:
        # whole-pixel shifts, which simkit.radial bins through the plan's tables moved by the shift: the neglected
        # residual (≤ ½ px) is a cos φ distortion, orthogonal to the cos 2φ / sin 2φ of an ellipse (second order:
        # δ²/4R ≈ 0.001 px)
        sub_shifts = np.rint(sub_shifts)
    ratio, angle = start
    ring = None
    for it in range(max(1, n_iter)):
        plan = make_plan(
            sub.shape[-2:], center=ccenter, pixel_size=1.0, edges=edges, ellipse_ratio=ratio, ellipse_angle=angle,
            mask=cmask,
        )  # fmt: skip
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
    if not (np.isfinite(ratio) and 1.0 <= ratio < 3.0):
        raise ValueError(f"r_range={r_range!r}: the fitted ratio {ratio!r} is outside the searched range [1, 3)")
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


def _crop(sub, center, shifts, radius, mask=None):
    """Crop patterns to the box that holds every pixel within ``radius`` [px] of the (shifted) centre; returns
    the cropped stack, the plan centre in the cropped frame and the cropped mask (None without one)."""
    ms = 0.0 if shifts is None else float(np.max(np.abs(shifts))) if np.size(shifts) else 0.0
    half = int(math.ceil(radius + ms + 2))
    ny, nx = sub.shape[-2:]
    y0, y1 = max(0, int(center[0]) - half), min(ny, int(center[0]) + half + 2)
    x0, x1 = max(0, int(center[1]) - half), min(nx, int(center[1]) + half + 2)
    cm = None if mask is None else np.ascontiguousarray(mask[y0:y1, x0:x1])
    return np.ascontiguousarray(sub[..., y0:y1, x0:x1]), (center[0] - y0, center[1] - x0), cm


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
    mask=None,
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
    mask : ndarray of bool (ny, nx) or None
        True = use the pixel (beam stop and bad pixels False).

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
    mask = _check_mask(mask, sub.shape[-2:])
    r_exp = qk / g
    rmax = float(r_exp.max() * (1 + 2 * window) + 4 * bin_width)
    edges = np.arange(0.0, rmax, bin_width)
    sub, ccenter, cmask = _crop(sub, center, sh, edges[-1] * max(ellipse_ratio, 1.0 / ellipse_ratio), mask)
    plan = make_plan(
        sub.shape[-2:], center=ccenter, pixel_size=1.0, edges=edges, ellipse_ratio=ellipse_ratio,
        ellipse_angle=ellipse_angle, mask=cmask,
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


def check_scan_data(data, *, name: str = "scan data", n_sample: int = 16) -> None:
    """Refuse data no detector records, before any work or file: shape, dtype and a sample of patterns.

    Parameters
    ----------
    data : array-like (scan_y, scan_x, det_y, det_x)  [counts]
    name : str
        How the error names the data.
    n_sample : int
        Patterns read (spread over the scan) for the value checks; a lazy scan is not read whole.

    Raises
    ------
    ValueError
        Not 4-D; a zero-size axis; int8 (signed 8-bit data wrap above 127 counts: the file most likely holds
        uint8); complex values; ±Inf; negative counts in integer data (a counting detector records none — float
        data may be dark-subtracted and keep small negatives; NaN in float data marks missing pixels).
    """
    shape = tuple(int(v) for v in getattr(data, "shape", ()))
    if len(shape) != 4:
        hint = " — a stack of frames: load_scan(..., scan_shape=(ny, nx))" if len(shape) == 3 else ""
        raise ValueError(
            f"{name} has shape {shape} ({len(shape)}-D); expected 4-D (scan_y, scan_x, det_y, det_x){hint}"
        )
    if min(shape) == 0:
        raise ValueError(
            f"{name} has shape {shape} with a zero-size axis; a scan needs ≥ 1 position and pixel per axis"
        )
    dt = np.dtype(data.dtype)
    if dt == np.int8:
        raise ValueError(
            f"{name} is int8: signed 8-bit counts wrap to negative above 127, so the file most likely stores uint8; "
            "reinterpret it (data.view(np.uint8)) or convert it before the analysis"
        )
    if dt.kind == "c" or dt.kind not in "biuf":
        raise ValueError(f"{name} has dtype {dt}; expected unsigned/signed integer or float counts")
    flat = np.linspace(0, shape[0] * shape[1] - 1, min(n_sample, shape[0] * shape[1])).astype(int)
    for k in np.unique(flat):
        iy, ix = divmod(int(k), shape[1])
        pat = np.asarray(data[iy, ix])
        if dt.kind == "f" and np.isinf(pat).any():
            raise ValueError(
                f"{name}: pattern ({iy}, {ix}) holds ±Inf counts; replace them (NaN marks a missing pixel)"
            )
        if dt.kind == "i" and (pat < 0).any():
            raise ValueError(
                f"{name}: pattern ({iy}, {ix}) holds negative counts (min {int(pat.min())}); a counting detector "
                "records none — check the file's dtype (signed vs unsigned) or its offset"
            )


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
    bad_pixels: bool = True,
    descan_rows: int | None = None,
) -> Calibration:
    """Calibrate a scan end to end: bad pixels → centres → smooth descan → (ellipse) → (Q scale) → ``RadialPlan``.

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
        Per-pattern direct-beam centres. When the mean pattern shows no plausible direct beam (beam stop, ring-only
        or spot data) the common centre of :func:`find_center` (``auto``: ring or Friedel symmetry) is used for
        every pattern with no descan, and a ``UserWarning`` says so; it raises when that fails too.
    ellipse_max_patterns : int
        Patterns (evenly strided over the scan) used for the ellipse fit.
    q_max : float or None  [Å⁻¹]
    n_bins : int or None
    mask : ndarray of bool (ny, nx) or None
        True = use the pixel (beam stop, known bad pixels False); carried through every step and into the plan.
    bad_pixels : bool
        Find static hot and dead pixels (:func:`find_bad_pixels`) and exclude them everywhere; transient hot
        pixels are excluded frame by frame from the centres. Reported in ``info["bad_pixels"]``.
    descan_rows : int or None
        Measure the centres on this many evenly spaced whole scan rows (first and last included) only and fit
        the descan surface to them; ``centers`` is NaN on the other rows. The surface is smooth by construction,
        so its coefficients need far fewer centres than a big scan has (16 rows of ≥ 60 centres fit a plane to
        ≲ 0.01 px of the all-pattern fit), and a lazy scan is then not read whole for its centres. None (default)
        or at least the scan's rows: every pattern.

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
    check_scan_data(data)
    det = tuple(int(v) for v in data.shape[-2:])
    use = _check_mask(mask, det)
    info: dict[str, Any] = {}
    if bad_pixels:
        bp = find_bad_pixels(data, mask=use)
        use = bp.mask if (use is not None or not bp.mask.all()) else None
        info["bad_pixels"] = bp.summary()
    rows = _descan_rows(data.shape[0], descan_rows, descan_order)
    try:
        if rows is None:
            centers = find_centers(data, method=center_method, mask=use)
            where = "per pattern"
        else:
            centers = np.full(tuple(data.shape[:2]) + (2,), np.nan)
            centers[rows] = find_centers(_ScanRows(data, rows), method=center_method, mask=use)
            where = f"per pattern of {rows.size} evenly spaced scan rows"
        smooth = fit_descan(centers, order=descan_order)
        center = (float(np.mean(smooth[..., 0])), float(np.mean(smooth[..., 1])))
        shifts = descan_shifts(smooth, center)
        info["center_source"] = f"direct beam {where} ({center_method}), descan surface of degree {descan_order}"
        info["descan_rms_residual_px"] = float(np.sqrt(np.nanmean((centers - smooth) ** 2)))
    except CenterError as e:
        fit = find_center(data, mask=use, method="auto")
        center = tuple(float(v) for v in fit.center)
        centers = np.broadcast_to(np.asarray(center), data.shape[:2] + (2,)).copy()
        shifts = np.zeros(data.shape[:2] + (2,))
        info["center_source"] = f"{fit.method} centre of the mean pattern (no direct beam: {e}); descan not measured"
        warnings.warn(
            f"calibrate: no direct beam to follow ({e}); the {fit.method} centre ({center[0]:.2f}, {center[1]:.2f}) "
            "px of the mean pattern is used for every pattern, without descan",
            UserWarning,
            stacklevel=2,
        )
    ell = None
    ratio, angle = 1.0, 0.0
    if ellipse_q_range is not None:
        ell = fit_ellipse(
            data, center=center, shifts=shifts, r_range=tuple(q / ps for q in ellipse_q_range),
            max_patterns=ellipse_max_patterns, mask=use,
        )  # fmt: skip
        ratio, angle = ell.ratio, ell.angle
    qc = None
    if reflections is not None or d_spacings is not None:
        qc = calibrate_q(
            data, center=center, pixel_size_guess=ps, reflections=reflections, d_spacings=d_spacings,
            shifts=shifts, ellipse_ratio=ratio, ellipse_angle=angle, mask=use,
        )  # fmt: skip
        ps = qc.pixel_size
    plan = calibrated_plan(
        det, center=center, pixel_size=ps, ellipse_ratio=ratio, ellipse_angle=angle, q_max=q_max, n_bins=n_bins,
        mask=use,
    )  # fmt: skip
    return Calibration(plan=plan, shifts=shifts, centers=centers, ellipse=ell, q_calibration=qc, info=info)
