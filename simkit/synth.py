"""Synthetic SEND scans with ground truth, written as EMD 1.0 (emdfile / py4DSTEM / rosettasciio layout).

:func:`synthesize_scan` turns a :class:`structures.scenes.Scene` and a :class:`simkit.library.PatternLibrary`
into a 4D dataset, pixel by pixel:

1. **Mixture along the beam and across the probe.** Region volume fractions come from
   ``Scene.fractions`` averaged over the probe's lateral intensity profile (a 0.15 mrad probe, Airy radius
   ≈ 8 nm, 95 % of its power within 26 nm, spans several 4 nm steps): :func:`simkit.dose.probe_profile`
   integrated over the cells of a half-step grid out to the 95 % radius; a probe whose 95 % radius is below
   half a step (2 mrad: 1.9 nm) is one point. The noise-free pattern is the first-order superposition
   P = P_vac + (t_scene / t_lib) Σ_r f_r (P_r − P_vac): every region adds its scattering to the probe in
   vacuum in proportion to its thickness along the beam. This is exact for kinematic scattering and ignores
   multiple scattering *between* regions (within a library entry, multislice keeps it); negative pixels that
   it can produce in a strongly depleted direct disc are clipped to 0, and a pattern whose total would exceed
   the incident beam (a thin crystal entry extrapolated to the lamella thickness: Li and Cu with the tiny
   and demo presets) is scaled down to it.
2. **Per-pixel variation.** Type 1: interpolation between library entries (uniform dilations of one model) so
   that the pattern's first SRO peak, measured with the truth estimator along the mixing path of the two
   neighbouring entries, is the scene's per-pixel ``sro_peak`` (else its density). The entries are the region's
   own model wherever its dilation span holds the request; outside it, another shipped Type 1 candidate of the
   library (entries with ``params["model"]``) whose span holds it, the one needing the smallest dilation
   |ln(ρ/ρ_relaxed)| (the default model peaks nowhere below ≈ 0.30 Å⁻¹; the top interface asks for 0.295):
   ``truth["sei_type1_model"]`` indexes ``truth["sei_type1_models"]`` per pixel and ``truth["density"]`` is that
   model's density. The Type 2 matrix follows the requested peak likewise when the scene gives ``sro_peak``.
   Type 2: the amorphous matrix plus LiF nanocrystals — their number along the beam follows the LiF volume fraction,
   each one a library crystal chosen by the pixel's seed and rotated in plane by a seeded angle (so orientations
   change from pixel to pixel); a probe wider than a crystal (effective area 1/∫P² above the crystal's π d²/4: 0.15
   mrad) lights proportionally more crystals, each more weakly, so the LiF scattering is the same and one pattern
   shows more orientations.
   Li and Cu grains: the entry of the grain's index. Electrolyte: like Type 1 when the scene gives ``sro_peak``
   (the library's dilations of the relaxed model), else an undilated entry chosen by the pixel's seed.
3. **Beam damage.** The local accumulated fluence of the raster (simkit.dose.accumulated_fluence_map, scan
   order included) converts the Type 1 fraction into Li₂O crystallites (simkit.damage.pattern_fractions;
   library ``li2o_damage`` entry of the nearest crystallite size).
4. **Instrument.** A known descan (a plane in scan position plus a constant offset, [px]) and a slight
   ellipse (ratio, angle in the convention of simkit.radial), configured by a :class:`simkit.instrument.Instrument`,
   applied by bilinear resampling (numba), intensity conserved; then dose (electrons per pattern) and detector
   (Poisson + :func:`simkit.detector.detect`). Without a detector model, resampling, dose and Poisson draw are
   one fused pass per pattern (:func:`_expose`): pattern k draws from its own counter-based stream (splitmix64 of
   a key from ``seed`` and k), so the counts depend on the seed only — not on threads, block sizes or scan order.

The scan is composed, exposed and written in blocks of :data:`BLOCK_PATTERNS` patterns (memory bounded whatever
the scan size); lzf chunks are byte-shuffled and compressed in parallel and written as finished chunks
(:mod:`simkit.chunkio`; layout: :mod:`simkit.emd`), into a temporary file that is renamed at the end.

Ground truth (an emdfile ``Metadata`` named ``truth`` in the datacube, :data:`simkit.emd.TRUTH_PATH`;
:func:`simkit.emd.read_truth` reads it): majority region and its fraction, all fractions, the SRO peak position
from :func:`simkit.peak_estimator.sro_peak_position` (window from the probe, :func:`simkit.peak_estimator.sro_window`)
on the noise-free, undistorted pattern's radial I·Q profile (the analysis' own estimator), density, LiF
orientation angle / entry / vacancy fraction, accumulated fluence, descan and ellipse, and all settings as JSON.

Default dose: 10⁶ electrons per pattern (16 pA × 10 ms, or 160 pA × 1 ms); over a 40 Å × 40 Å step that is a
scan fluence of 625 e/Å², 17 % of the ≈ 3600 e/Å² (accumulated scan fluence, the convention of simkit.dose) at
which the study saw SEI Type 1 turn into Li₂O. Why this dose: the per-pixel SRO peak position is Poisson-limited
(its error falls as 1/√N — tests/test_peaks_synth.py), and the study's claims rest on per-pixel peaks that wander
by 0.02 Å⁻¹ (0.325–0.345) with histogram widths ≈ 0.02 Å⁻¹; at 10⁶ e every amorphous class is located to
< 0.003 Å⁻¹ per pixel, so the noise adds about 1 % to the variance of such a histogram (errors per dose and
class accuracy: docs/measurements.md). Counts are stored
as uint16 unless the brightest expected pixel could overflow it (e.g. the direct beam of a 0.15 mrad probe,
which falls in one or two detector pixels), then uint32.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numba import njit, prange

from simkit.chunkio import write_patterns
from simkit.emd import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    camera_length_mm,
    filter_kwargs,
    write_emd_header,
    write_truth,
)
from simkit.geometry import DetectorGeometry
from simkit.instrument import Descan, Ellipse, Instrument
from simkit.library import PatternLibrary, build_library
from structures.checks import check_positive

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_ELECTRONS_PER_PATTERN",
    "DEFAULT_INSTRUMENT",
    "TRUTH_ESTIMATOR",
    "TRUTH_Q_RANGE",
    "SynthResult",
    "compose",
    "counts_dtype",
    "poisson_counts",
    "default_scan",
    "synthesize_scan",
    "truth_peaks",
    "truth_plan",
    "warp_patterns",
    "write_emd_header",
]

#: Default electrons per pattern (16 pA × 10 ms); 625 e/Å² scan fluence at 4 nm steps (see the module docstring:
#: the dose at which every amorphous class's per-pixel SRO peak is located to < 0.003 Å⁻¹).
DEFAULT_ELECTRONS_PER_PATTERN = 1.0e6
#: Descan and ellipse of the default synthetic scan [px, rad]: small enough to be realistic, large enough that an
#: analysis that ignores them is measurably wrong (a 2 % ellipse moves the azimuthal mean of a ring by ≈ 1 %).
DEFAULT_INSTRUMENT = Instrument(
    descan=Descan(slope_y=0.8, slope_x=-0.6, offset_y=1.5, offset_x=1.0), ellipse=Ellipse(ratio=1.02, angle=0.5)
)
#: Patterns composed, exposed and written per block: bounds memory (≈ 5 buffers of this × detector pixels × 4 B,
#: 160 MB at 256²) whatever the scan size.
BLOCK_PATTERNS = 128
#: Window [Å⁻¹] of the ground-truth SRO peak (the default window of fitting.peaks.sro_peak_map).
TRUTH_Q_RANGE = (0.22, 0.42)
#: Names the ground-truth SRO estimator; stored with every scan so that files made with another one are not reused.
TRUTH_ESTIMATOR = "sro_peak_position(width, half_width = sro_window(probe))"


#: Region kinds whose SRO peak is part of the ground truth (elsewhere the truth peak is NaN).
_SRO_KINDS = ("sei_type1", "sei_type2", "electrolyte")

_REGION_TO_ENTRY = {
    "li_metal": "li_metal",
    "cu": "cu",
    "li2o": "li2o",
    "sei_type1": "sei_type1",
    "sei_type2": "type2_matrix",
    "electrolyte": "electrolyte",
    "vacuum": "vacuum",
}


# ----------------------------------------------------------------------------------------------------------
# numba kernels
# ----------------------------------------------------------------------------------------------------------
def _warp_matrix(ratio: float, angle: float) -> np.ndarray:
    """Affine map (2, 2) from an output pixel's offset (dy, dx) to the source offset (undistorted).

    The component of the offset along ``angle`` is divided by ``ratio``: A = R(angle) · diag(1/ratio, 1) ·
    R(−angle) in (x, y) order, returned as [[a_yy, a_yx], [a_xy, a_xx]] for (dy, dx).
    """
    c, s = math.cos(angle), math.sin(angle)
    inv = 1.0 / ratio
    axx = inv * c * c + s * s
    ayy = inv * s * s + c * c
    axy = (inv - 1.0) * c * s  # both off-diagonal terms
    return np.array([[ayy, axy], [axy, axx]])


@njit(inline="always", cache=True)
def _bilinear(src, k, y, x, ny, nx):
    """Bilinear value of pattern k of src at (y, x) [px]; zero outside."""
    i0 = int(math.floor(y))
    j0 = int(math.floor(x))
    fy = y - i0
    fx = x - j0
    if 0 <= i0 < ny - 1 and 0 <= j0 < nx - 1:
        return (1 - fy) * ((1 - fx) * src[k, i0, j0] + fx * src[k, i0, j0 + 1]) + fy * (
            (1 - fx) * src[k, i0 + 1, j0] + fx * src[k, i0 + 1, j0 + 1]
        )
    acc = 0.0
    if 0 <= i0 < ny and 0 <= j0 < nx:
        acc += (1 - fy) * (1 - fx) * src[k, i0, j0]
    if 0 <= i0 < ny and 0 <= j0 + 1 < nx:
        acc += (1 - fy) * fx * src[k, i0, j0 + 1]
    if 0 <= i0 + 1 < ny and 0 <= j0 < nx:
        acc += fy * (1 - fx) * src[k, i0 + 1, j0]
    if 0 <= i0 + 1 < ny and 0 <= j0 + 1 < nx:
        acc += fy * fx * src[k, i0 + 1, j0 + 1]
    return acc


@njit(inline="always", cache=True)
def _warped(src, k, i, j, cy, cx, shifts, a):
    """Source value for output pixel (i, j) of pattern k: bilinear at centre + a · (offset from the shifted centre)."""
    dy = i - cy - shifts[k, 0]
    dx = j - cx - shifts[k, 1]
    y = cy + a[0, 0] * dy + a[0, 1] * dx
    x = cx + a[1, 0] * dy + a[1, 1] * dx
    return _bilinear(src, k, y, x, src.shape[1], src.shape[2])


@njit(parallel=True, cache=True)
def _warp(src, out, cy, cx, shifts, a, inv):
    """Bilinear resampling of each pattern: shifted centre and elliptical stretch (``a`` from :func:`_warp_matrix`).

    Output pixel (i, j) at offset (dy, dx) from the shifted centre samples the source at the centre plus
    a · (dy, dx); the value is divided by the ratio (``inv`` = 1/ratio) because the stretch scales areas by it.
    """
    n, ny, nx = src.shape
    for k in prange(n):
        for i in range(ny):
            for j in range(nx):
                out[k, i, j] = _warped(src, k, i, j, cy, cx, shifts, a) * inv


# Counter-based uniforms: pattern k's stream is splitmix64 applied to key_k + i·γ (i = 0, 1, …), the generator
# behind Java's SplittableRandom. Each pattern is drawn by one thread from its own key, so counts do not depend on
# the thread count or on how patterns are grouped into blocks.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0
#: 1/k for the inversion's recursion p_k = p_(k−1) · λ/k (a product instead of a division per step).
_RECIP = 1.0 / np.maximum(np.arange(200), 1).astype(np.float64)
#: Below this expected count [e] a pixel's counts come from the Poisson-process walk, above it from a direct draw.
_WALK_MAX = 0.7


@njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def _uniform(key, ctr):
    """(u in [0, 1), next counter)."""
    ctr = ctr + _GAMMA
    return float(_mix(key + ctr) >> _S11) * _INV53, ctr


@njit(inline="always", cache=True)
def _exponential(key, ctr):
    """(E ~ Exp(1), next counter): −log of a uniform in (0, 1]."""
    u, ctr = _uniform(key, ctr)
    return -math.log(1.0 - u), ctr


@njit(cache=True)
def _poisson_direct(lam, key, ctr):
    """One Poisson(lam) draw for lam ≥ _WALK_MAX: inversion below 10, PTRS (Hörmann 1993, as NumPy) above."""
    if lam < 10.0:
        u, ctr = _uniform(key, ctr)
        p = math.exp(-lam)
        f = p
        k = 0
        while u > f and k < _RECIP.size - 1:
            k += 1
            p *= lam * _RECIP[k]
            f += p
        return k, ctr
    slam = math.sqrt(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u, ctr = _uniform(key, ctr)
        v, ctr = _uniform(key, ctr)
        u -= 0.5
        us = 0.5 - abs(u)
        k = int(math.floor((2.0 * a / us + b) * u + lam + 0.43)) if us > 0.0 else -1
        if us >= 0.07 and v <= vr:
            return k, ctr
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b) <= -lam + k * math.log(lam) - math.lgamma(
            k + 1.0
        ):
            return k, ctr


@njit(inline="always", cache=True)
def _draw(lam, key, ctr, walk_at, walk_next):
    """Counts of one pixel: (count, ctr, walk_at, walk_next).

    Dim pixels (lam < _WALK_MAX) share one unit-rate Poisson process laid along their cumulative expected count:
    a pixel gets the events that fall into its interval of length lam — independent Poisson(lam) counts at one
    comparison per pixel plus one exponential per event. Bright pixels are drawn directly.
    """
    if lam < _WALK_MAX:
        walk_at += lam
        c = 0
        while walk_next < walk_at:
            c += 1
            e, ctr = _exponential(key, ctr)
            walk_next += e
        return c, ctr, walk_at, walk_next
    c, ctr = _poisson_direct(lam, key, ctr)
    return c, ctr, walk_at, walk_next


@njit(parallel=True, cache=True)
def _poisson_rows(lam, keys, out):
    """Poisson counts per row of ``lam`` (float64, ≥ 0), row k from its own key."""
    n, npix = lam.shape
    for k in prange(n):
        key = np.uint64(keys[k])
        ctr = np.uint64(0)
        walk_next, ctr = _exponential(key, ctr)
        walk_at = 0.0
        for p in range(npix):
            c, ctr, walk_at, walk_next = _draw(lam[k, p], key, ctr, walk_at, walk_next)
            out[k, p] = c


def _poisson_keys(seed_key: int, index: np.ndarray) -> np.ndarray:
    """Per-pattern 64-bit stream keys from a scan key and flat pattern indices (splitmix64 of both)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed_key & 0xFFFFFFFFFFFFFFFF) + np.asarray(index, dtype=np.uint64) * _GAMMA
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        z = z ^ (z >> _S31)
    return z


def poisson_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts for a stack of expected-count patterns, reproducible for a given ``rng`` state.

    Exact in distribution: pixels above 2 e are drawn one by one (inversion, or PTRS from 10 e), dimmer pixels
    share one Poisson process along their cumulative expected count (cost ∝ pixels + counts, not a draw per
    pixel). Independent of the number of threads.

    Parameters
    ----------
    expected : ndarray, shape (n, ...)  [e per pixel]
    rng : numpy.random.Generator
        Draws one 64-bit stream key (every pattern's stream derives from it and the pattern's index).

    Returns
    -------
    ndarray of uint32, shape of ``expected``
    """
    lam = np.ascontiguousarray(expected, dtype=np.float64).reshape(expected.shape[0], -1)
    if not np.all(np.isfinite(lam)) or lam.min(initial=0.0) < 0:
        raise ValueError("expected counts must be finite and non-negative")
    keys = _poisson_keys(int(rng.integers(0, 2**63 - 1)), np.arange(lam.shape[0]))
    out = np.empty(lam.shape, dtype=np.uint32)
    _poisson_rows(lam, keys, out)
    return out.reshape(expected.shape)


@njit(parallel=True, cache=True)
def _expose(src, cy, cx, shifts, a, inv, dose, keys, maxval, out, peak):
    """Warp (as :func:`_warp`), scale by the dose and draw Poisson counts in one pass, pattern by pattern.

    ``out`` receives min(count, maxval); ``peak[k]`` the largest count of pattern k (overflow check).
    """
    n, ny, nx = src.shape
    scale = inv * dose
    for k in prange(n):
        key = np.uint64(keys[k])
        ctr = np.uint64(0)
        walk_next, ctr = _exponential(key, ctr)
        walk_at = 0.0
        mx = 0
        for i in range(ny):
            for j in range(nx):
                lam = _warped(src, k, i, j, cy, cx, shifts, a) * scale
                c, ctr, walk_at, walk_next = _draw(lam, key, ctr, walk_at, walk_next)
                if c > mx:
                    mx = c
                out[k, i, j] = min(c, maxval)
        peak[k] = mx


def warp_patterns(
    patterns: np.ndarray,
    center: tuple[float, float],
    shifts: np.ndarray,
    ellipse_ratio: float = 1.0,
    ellipse_angle: float = 0.0,
) -> np.ndarray:
    """Move each pattern's centre by ``shifts`` and stretch it elliptically (what descan and lens distortion do).

    Parameters
    ----------
    patterns : ndarray, shape (n, ny, nx)
    center : (float, float)  [px]
        Undistorted centre (cy, cx).
    shifts : ndarray, shape (n, 2)  [px]
        (dy, dx) of each pattern's centre.
    ellipse_ratio : float
        Stretch along ``ellipse_angle`` (simkit.radial convention).
    ellipse_angle : float  [rad]
        From +x towards +y.

    Returns
    -------
    ndarray, shape (n, ny, nx), float32
    """
    src = np.ascontiguousarray(patterns, dtype=np.float32)
    if src.ndim != 3:
        raise ValueError(f"patterns has shape {src.shape}; expected (n, ny, nx)")
    sh = np.ascontiguousarray(shifts, dtype=np.float64).reshape(-1, 2)
    if sh.shape[0] != src.shape[0]:
        raise ValueError(f"shifts has {sh.shape[0]} rows for {src.shape[0]} patterns")
    ellipse_ratio = check_positive("ellipse_ratio", ellipse_ratio)
    out = np.empty_like(src)
    _warp(
        src,
        out,
        float(center[0]),
        float(center[1]),
        sh,
        _warp_matrix(ellipse_ratio, ellipse_angle),
        1.0 / ellipse_ratio,
    )
    return out


# ----------------------------------------------------------------------------------------------------------
# mixing
# ----------------------------------------------------------------------------------------------------------
#: Fraction of the probe's power inside the compositor's lateral footprint (the rest is renormalised in).
FOOTPRINT_POWER = 0.95
#: Footprint grid points per scan step.
FOOTPRINT_SUBSTEPS = 2


def _probe_optics(probe) -> dict:
    """Keywords of simkit.dose's probe functions for a simkit.nbed.Probe (source size σ → FWHM)."""
    return {"defocus": float(probe.defocus), "source_size": 2.3548200450309493 * float(probe.source_size)}


def _footprint(probe, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets [Å] and weights of the probe's lateral intensity for mixing region fractions across it.

    A probe whose :data:`FOOTPRINT_POWER` radius is below half a step is one point (2 mrad at 4 nm: 19 Å).
    Otherwise the footprint is a square grid of spacing step / :data:`FOOTPRINT_SUBSTEPS` out to that radius
    (0.15 mrad at 300 keV: 257 Å, ±13 points, 529 points); each point's weight is the probe intensity
    integrated over its cell (sub-sampled finer than half the Nyquist step λ/(4α)), normalised to 1.

    Returns
    -------
    (offsets, weights) : ndarray (n, 2) [Å] (dy, dx), ndarray (n,)
    """
    from simkit.dose import nyquist_step, probe_profile, probe_radius

    opt = _probe_optics(probe)
    r = float(probe_radius(probe.semiangle, probe.energy, power_fraction=FOOTPRINT_POWER, **opt))
    if r < 0.5 * step:
        return np.zeros((1, 2)), np.ones(1)
    h = float(step) / FOOTPRINT_SUBSTEPS
    p = int(math.ceil(r / h))
    ns = max(1, int(math.ceil(h / (0.5 * nyquist_step(probe.semiangle, probe.energy)))))
    sub = ((np.arange(ns) + 0.5) / ns - 0.5) * h
    g = np.arange(-p, p + 1) * h
    fine = (g[:, None] + sub[None, :]).ravel()
    fy, fx = np.meshgrid(fine, fine, indexing="ij")
    dens = probe_profile(probe.semiangle, probe.energy, np.hypot(fy, fx), **opt)
    n = 2 * p + 1
    w = dens.reshape(n, ns, n, ns).sum(axis=(1, 3))
    oy, ox = np.meshgrid(g, g, indexing="ij")
    w = w * (np.hypot(oy, ox) <= r + 0.5 * h)
    w = w / w.sum()
    keep = w > 0
    return np.stack([oy[keep], ox[keep]], -1), w[keep]


def _probe_area(probe) -> float:
    """Effective area 1/∫P² d²r [Å²] of the probe intensity P (67 Å² at 2 mrad, 11,900 Å² at 0.15 mrad)."""
    from simkit.dose import probe_profile, probe_radius

    opt = _probe_optics(probe)
    big = float(probe_radius(probe.semiangle, probe.energy, power_fraction=0.999, **opt))
    r = np.linspace(0.0, big, 20001)
    pr = probe_profile(probe.semiangle, probe.energy, r, **opt)
    return float(1.0 / np.trapezoid(pr**2 * 2 * np.pi * r, r))


def _footprint_fractions(scene, iy: np.ndarray, footprint) -> np.ndarray:
    """Region fractions of scan rows ``iy`` averaged over the probe footprint, shape (len(iy), nx, n_regions).

    When the offsets lie on a grid of spacing step/m, the scene is evaluated once on that fine grid and
    correlated with the weights (one evaluation per fine point instead of one per pixel and offset).
    """
    offs, wts = footprint
    offs = np.asarray(offs, dtype=float).reshape(-1, 2)
    wts = np.asarray(wts, dtype=float).ravel()
    nx = scene.field_shape[1]
    step = float(scene.step)
    y0, x0 = scene.origin
    nz = np.abs(offs[offs != 0])
    if len(wts) > 1 and nz.size and iy.size and np.all(np.diff(iy) == 1):
        h = float(nz.min())
        m = int(round(step / h))
        k = offs / h
        if m >= 1 and abs(step / m - h) < 1e-6 * step and np.allclose(k, np.round(k), atol=1e-6):
            ki = np.round(k).astype(int)
            p = int(np.abs(ki).max())
            kern = np.zeros((2 * p + 1, 2 * p + 1))
            np.add.at(kern, (ki[:, 0] + p, ki[:, 1] + p), wts)
            fy = y0 + (iy[0] * m - p + np.arange((iy.size - 1) * m + 2 * p + 1)) * h
            fx = x0 + (-p + np.arange((nx - 1) * m + 2 * p + 1)) * h
            yy, xx = np.meshgrid(fy, fx, indexing="ij")
            f = scene.fractions(yy, xx)
            win = np.lib.stride_tricks.sliding_window_view(f, (2 * p + 1, 2 * p + 1), axis=(0, 1))[::m, ::m]
            return np.einsum("ijrab,ab->ijr", win, kern)
    yy = np.broadcast_to(y0 + iy[:, None] * step, (iy.size, nx))
    xx = np.broadcast_to(x0 + np.arange(nx)[None, :] * step, (iy.size, nx))
    fr = np.zeros(yy.shape + (len(scene.regions),))
    for (oy, ox), w in zip(offs, wts):
        fr += w * scene.fractions(yy + oy, xx + ox)
    return fr


def _hash_uniform(seed: int, a: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniform numbers in [0, 1) from integer keys (splitmix64)."""
    x = np.asarray(a, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(
        (seed * 1_000_003 + salt) & 0xFFFFFFFF
    )
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _rotate(pattern: np.ndarray, center, angle: float) -> np.ndarray:
    """In-plane rotation about the centre (bilinear, intensity conserved to interpolation accuracy)."""
    from scipy.ndimage import affine_transform

    c, s = math.cos(angle), math.sin(angle)
    m = np.array([[c, -s], [s, c]])
    ctr = np.asarray(center, float)
    return affine_transform(pattern, m, offset=ctr - m @ ctr, order=1, mode="constant", cval=0.0)


@dataclass(frozen=True)
class _Prepared:
    vac: np.ndarray  # (npix,) float32
    stack: np.ndarray  # (n_entries, npix) float32: entry − vacuum
    base: dict  # (entry kind, variant tag) -> (first index, count)
    t1_density: dict  # variant tag -> densities [g/cm³] of the Type 1 entries, in entry order
    t1_peak: dict  # variant tag -> (peaks [Å⁻¹], u) along the mixing path of the Type 1 entries (_peak_path)
    t2_peak: tuple  # the same for the Type 2 matrix entries (empty when absent)
    lif_fv: np.ndarray
    dmg_size: np.ndarray
    n_rot: int
    probe_area: float = 0.0  # 1/∫P² [Å²]
    el_peak: dict | None = None  # variant tag -> (peaks, u) along the mixing path of the electrolyte entries
    el_plain: dict | None = None  # variant tag -> offsets of the undilated electrolyte entries (no "density")
    el_density: dict | None = None  # variant tag -> densities [g/cm³] of the electrolyte entries, in entry order
    t2_density: np.ndarray | None = None  # densities [g/cm³] of the Type 2 matrix entries, in entry order
    t1_model: dict | None = None  # variant tag -> what the Type 1 entries are (shipped model name, or the packing)
    t1_relaxed: dict | None = None  # variant tag -> pooled relaxed density [g/cm³] of that model (NaN: packing)


def _tag(params) -> str:
    """Group an entry or region belongs to: its Type 1 candidate ``model`` if named, else its electrolyte variant
    ("hce" when untagged)."""
    if "model" in params:
        return str(params["model"])
    return str(params.get("variant", params.get("sei_variant", params.get("electrolyte", "hce"))))


def _type1_source(entries) -> tuple[str, float]:
    """What a group of Type 1 entries is (shipped relaxed model name, or "packing (variant)") and that model's
    pooled relaxed density Σm/ΣV over its seeds [g/cm³] (NaN for a packing)."""
    from simkit.library import _relaxed_source
    from structures import relax

    name = _relaxed_source(entries[0].spec)
    if name is None:
        return f"packing ({_tag(entries[0].spec.params)})", float("nan")
    return name, relax.pooled_density(name)


def _peak_path(patterns, library: PatternLibrary, n_t: int = 9):
    """Measured SRO peak along the mixing path between neighbouring entries (sorted by their peak).

    The pattern (1 − t)·P_j + t·P_{j+1} does not peak at the weighted mean of the two peaks when they are a
    sizeable fraction of the peak width apart, so the truth estimator is run on ``n_t`` mixtures per pair and
    the path u = j + t ↦ peak is inverted by interpolation (see :func:`_on_path`). Mixtures without a maximum
    (NaN) are left out of the path. Returns (peaks, u), or () when fewer than two points remain or the path is
    not strictly increasing.
    """
    if len(patterns) < 2:
        return ()
    t = np.linspace(0.0, 1.0, n_t)
    mixes, u = [], []
    for j in range(len(patterns) - 1):
        for tk in t if j == 0 else t[1:]:
            mixes.append((1 - tk) * patterns[j] + tk * patterns[j + 1])
            u.append(j + tk)
    peaks = truth_peaks(np.stack(mixes), library.geometry, probe=library.probe).astype(float)
    u = np.asarray(u)
    ok = np.isfinite(peaks)  # a very dilute entry may show a shoulder, no maximum: the path starts after it
    peaks, u = peaks[ok], u[ok]
    if peaks.size < 2 or not np.all(np.diff(peaks) > 0):
        return ()
    return peaks, u


def _on_path(path, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry index j and weight t whose mixture peaks at q (clipped to the path's range)."""
    peaks, u = path
    uu = np.interp(np.clip(q, peaks[0], peaks[-1]), peaks, u)
    j = np.minimum(np.floor(uu).astype(int), int(u[-1]) - 1)
    return j, uu - j


def _type1_models(prepared: _Prepared) -> list[str]:
    """What the Type 1 entry groups of a prepared library are, in the order that ``truth["sei_type1_model"]``
    indexes: a shipped relaxed model name (``type1_default``, ``type1_nso``, …) or ``"packing (variant)"``."""
    return [prepared.t1_model[t] for t in sorted(prepared.t1_model or {})]


def _type1_choice(prep: _Prepared, own: str, q: np.ndarray) -> np.ndarray:
    """Per requested SRO peak q [Å⁻¹]: the Type 1 group (tag) whose entries compose it.

    The region's own model wherever its mixing path spans q; elsewhere, of the other shipped Type 1 candidates in
    the library (groups named by a ``model``) whose path spans q, the one that needs the smallest dilation
    |ln(ρ/ρ_relaxed)|; the own model (clipped to its span's end) where none does.
    """
    from structures import relax

    choice = np.full(q.shape, own, dtype=object)
    lo, hi = prep.t1_peak[own][0][[0, -1]]
    out = (q < lo) | (q > hi)
    if not out.any():
        return choice
    best = np.full(q.shape, np.inf)
    for g, path in prep.t1_peak.items():
        if g == own or g not in relax.LIBRARY or len(path) != 2 or not np.isfinite(prep.t1_relaxed[g]):
            continue
        peaks, _ = path
        inside = out & (q >= peaks[0]) & (q <= peaks[-1])
        if not inside.any():
            continue
        jg, tg = _on_path(path, q)
        xg = prep.t1_density[g]
        rho = xg[jg] * (1 - tg) + xg[np.minimum(jg + 1, xg.size - 1)] * tg
        cost = np.where(inside, np.abs(np.log(rho / prep.t1_relaxed[g])), np.inf)
        better = cost < best
        choice[better], best[better] = g, cost[better]
    return choice


def _bracket(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index j and weight t of linear interpolation of v on increasing nodes x (clipped to [x₀, x₋₁])."""
    vc = np.clip(v, x[0], x[-1])
    j = np.clip(np.searchsorted(x, vc) - 1, 0, len(x) - 2)
    return j, (vc - x[j]) / (x[j + 1] - x[j])


def _prepare(library: PatternLibrary, n_rot: int = 12) -> _Prepared:
    """Stack every entry's difference to vacuum once (LiF crystals at ``n_rot`` in-plane angles)."""
    vac = library.vacuum.astype(np.float32)
    blocks, base, i0 = [], {}, 0
    lif_fv = np.zeros(0)
    dmg_size = np.zeros(0)
    groups: dict = {}
    for e in library.entries:
        groups.setdefault((e.spec.kind, _tag(e.spec.params)), []).append(e)
    t1_density, t1_peak, t2_peak = {}, {}, ()
    t1_model, t1_relaxed = {}, {}
    el_peak, el_plain, el_density = {}, {}, {}
    t2_density = None
    for (kind, tag), entries in groups.items():
        if kind == "electrolyte" and len(entries) > 1:
            # sorted by the measured first SRO peak so that a requested peak interpolates between neighbours
            # (uniform dilations of the relaxed model); undilated entries (no "density") stay the default choice
            peaks = truth_peaks(np.stack([e.pattern for e in entries]), library.geometry, probe=library.probe)
            dens = np.array([float(e.info.get("density", np.nan)) for e in entries])
            key = peaks if np.all(np.isfinite(peaks)) or not np.all(np.isfinite(dens)) else dens
            order = np.argsort(np.where(np.isfinite(key), key, np.inf), kind="stable")
            entries = [entries[i] for i in order]
            el_peak[tag] = _peak_path([e.pattern for e in entries], library)
            el_density[tag] = np.array([float(e.info.get("density", np.nan)) for e in entries])
        if kind == "electrolyte":
            plain = [i for i, e in enumerate(entries) if "density" not in e.spec.params]
            el_plain[tag] = np.array(plain or range(len(entries)), dtype=int)
        if kind in ("sei_type1", "type2_matrix"):
            # sorted by the measured first SRO peak (the truth estimator on the entry alone), so that the
            # compositor can interpolate to a requested peak; density follows the peak for a uniform dilation
            peaks = truth_peaks(np.stack([e.pattern for e in entries]), library.geometry, probe=library.probe).astype(
                float
            )
            dens = np.array(
                [float(e.info.get("density", e.spec.params.get("density", np.nan))) for e in entries], dtype=float
            )
            # (by density when an entry shows no maximum: a uniform dilation orders both alike, and a mixed key
            # would put a peakless dilute entry after the densest)
            key = peaks if np.all(np.isfinite(peaks)) or not np.all(np.isfinite(dens)) else dens
            order = np.argsort(np.where(np.isfinite(key), key, np.inf), kind="stable")
            entries = [entries[i] for i in order]
            path = _peak_path([entries[i].pattern for i in range(len(entries))], library)
            if kind == "sei_type1":
                t1_density[tag], t1_peak[tag] = dens[order], path
                t1_model[tag], t1_relaxed[tag] = _type1_source(entries)
            elif tag == "hce":
                t2_peak, t2_density = path, dens[order]
        if kind == "lif":
            c = library.geometry.center
            diffs = [_rotate(e.pattern - vac, c, 2 * np.pi * r / n_rot) for e in entries for r in range(n_rot)]
            lif_fv = np.array([float(e.spec.params.get("f_vacancy", 0.0)) for e in entries])
        else:
            diffs = [e.pattern - vac for e in entries]
        if kind == "li2o_damage":
            dmg_size = np.array([float(e.spec.params.get("size", 0.0)) for e in entries])
        blocks.append(np.stack(diffs).reshape(len(diffs), -1).astype(np.float32))
        base[(kind, tag)] = (i0, len(diffs))
        i0 += len(diffs)
    return _Prepared(
        vac.reshape(-1),
        np.concatenate(blocks),
        base,
        t1_density,
        t1_peak,
        t2_peak,
        lif_fv,
        dmg_size,
        n_rot,
        _probe_area(library.probe),
        el_peak,
        el_plain,
        el_density,
        t2_density,
        t1_model,
        t1_relaxed,
    )


def compose(
    scene,
    library: PatternLibrary,
    rows: slice | None = None,
    *,
    damage_state: dict | None = None,
    seed: int = 0,
    footprint: tuple[np.ndarray, np.ndarray] | None = None,
    prepared: _Prepared | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Noise-free, undistorted patterns of scan rows ``rows`` and their per-pixel truth.

    Every pixel's pattern is P_vac + Σ_e w_e (P_e − P_vac): a sparse weight matrix (pixels × library entries)
    times the stacked entry differences, so the cost is one sparse-dense product per block of rows.

    Parameters
    ----------
    scene : structures.scenes.Scene
    library : PatternLibrary
    rows : slice or None
        Scan rows (slow axis) to compose; None = all.
    damage_state : dict or None
        From :func:`simkit.damage.pattern_fractions` (arrays (passes, ny, nx)); None = no damage.
    seed : int
        Seeds the per-pixel choices (LiF entry and in-plane angle, electrolyte and matrix configuration).
    footprint : (offsets [Å], weights) or None
        Probe footprint; default from the library's probe and the scene step.
    prepared : optional
        Cached stack from a previous call with the same library.

    Returns
    -------
    patterns : ndarray, shape (n_rows, nx, det_y, det_x)  [fraction of incident per pixel], float32
    truth : dict of ndarray
        ``fractions`` (n_rows, nx, n_regions), ``density`` [g/cm³], ``lif_entry``, ``lif_angle`` [rad],
        ``lif_f_vacancy``, ``lif_count``, ``li2o_damage_fraction``, ``sei_type1_model`` (index into the list
        ``sei_type1_models`` of the Type 1 model a Type 1 pixel is composed of, −1 elsewhere).
    """
    prep = prepared or _prepare(library)
    w, truth = _weights(scene, library, rows, damage_state, seed, footprint, prep)
    truth["sei_type1_models"] = _type1_models(prep)
    shape = truth["fractions"].shape[:2]
    return _dense(w, prep).reshape(*shape, *library.geometry.shape), truth


def _weights(scene, library: PatternLibrary, rows, damage_state, seed: int, footprint, prep: _Prepared):
    """The mixing weights of :func:`compose`: a sparse (pixels × stacked entries) matrix and the per-pixel truth."""
    from scipy import sparse

    ny_s, nx_s = scene.field_shape
    rows = rows or slice(0, ny_s)
    iy = np.arange(ny_s)[rows]
    ix = np.arange(nx_s)
    yy = np.broadcast_to(scene.origin[0] + iy[:, None] * scene.step, (iy.size, nx_s))
    xx = np.broadcast_to(scene.origin[1] + ix[None, :] * scene.step, (iy.size, nx_s))
    foot = footprint if footprint is not None else _footprint(library.probe, scene.step)
    fr = _footprint_fractions(scene, iy, foot)
    params = scene.parameters(yy, xx)
    scale = float(scene.thickness) / float(library.thickness)
    shape = yy.shape
    npx = yy.size
    pix = np.arange(npx)
    flat_idx = (iy[:, None] * nx_s + ix[None, :]).astype(np.uint64).reshape(-1)
    u1, u2, u3 = (_hash_uniform(seed, flat_idx, s) for s in (1, 2, 3))
    truth = {
        "density": np.full(npx, np.nan),
        "lif_entry": np.full(npx, -1, dtype=np.int32),
        "lif_angle": np.full(npx, np.nan),
        "lif_f_vacancy": np.full(npx, np.nan),
        "lif_count": np.zeros(npx, dtype=np.int32),
        "li2o_damage_fraction": np.zeros(npx),
        "sei_type1_model": np.full(npx, -1, dtype=np.int16),
    }
    r_idx, c_idx, vals = [], [], []

    def add(cols, w, where):
        r_idx.append(pix[where])
        c_idx.append(np.asarray(cols)[where] if np.ndim(cols) else np.full(int(where.sum()), cols))
        vals.append(np.asarray(w)[where] if np.ndim(w) else np.full(int(where.sum()), w))

    def need(kind, region, tag=None):
        tag = tag if tag is not None else (_tag(region.params) if kind in ("sei_type1", "electrolyte") else "hce")
        if (kind, tag) not in prep.base:
            have = ", ".join(sorted(f"{k}[{t}]" for k, t in prep.base))
            raise KeyError(
                f"the library has no {kind!r} entry for variant {tag!r} needed by region {region.name!r} "
                f"({region.kind}); build the library with it (it has: {have})"
            )
        return prep.base[(kind, tag)]

    for r, region in enumerate(scene.regions):
        f = fr[..., r].reshape(-1) * scale
        on = f > 1e-6
        if region.kind == "vacuum" or not on.any():
            continue
        kind = _REGION_TO_ENTRY[region.kind]
        b0, nb = need(kind, region)
        if region.kind == "sei_type1":
            rho_map = params.get(f"{region.name}.density")
            q_map = params.get(f"{region.name}.sro_peak")
            own = _tag(region.params)
            xd = prep.t1_density[own]
            xq = prep.t1_peak[own]
            # a requested SRO peak wins (it is what the scene means); else the density; both interpolate
            # linearly between the two neighbouring entries
            if q_map is not None and len(xq) == 2:
                tags = _type1_choice(prep, own, q_map.reshape(-1))
                names = sorted(prep.t1_model)
                j, t = np.zeros(npx, int), np.zeros(npx)
                rho = np.full(npx, np.nan)
                for g in np.unique(tags):
                    sel = tags == g
                    jg, tg = _on_path(prep.t1_peak[g], q_map.reshape(-1)[sel])
                    xg, (bg, ng) = prep.t1_density[g], prep.base[("sei_type1", g)]
                    j[sel], t[sel] = jg + (bg - b0), tg  # offsets from this region's own block
                    rho[sel] = xg[jg] * (1 - tg) + xg[np.minimum(jg + 1, ng - 1)] * tg
                    truth["sei_type1_model"][on & sel] = names.index(g)
            else:
                rho = rho_map.reshape(-1) if rho_map is not None else np.full(npx, np.nanmean(xd))
                if nb == 1 or not np.all(np.diff(xd) > 0):
                    j, t = np.zeros(npx, int), np.zeros(npx)
                else:
                    j, t = _bracket(xd, rho)
            truth["density"] = np.where(on, rho, truth["density"])
            amorph = np.ones(npx)
            if damage_state is not None:
                a = (damage_state["amorphous"][-1][rows] + damage_state["disordered"][-1][rows]).reshape(-1)
                xl = damage_state["li2o"][-1][rows].reshape(-1)
                size = damage_state["crystallite_size"][-1][rows].reshape(-1)
                amorph = a
                d0, nd = need("li2o_damage", region, "hce")
                k = np.argmin(np.abs(prep.dmg_size[None, :] - size[:, None]), axis=1)
                add(d0 + k, f * xl, on)
                truth["li2o_damage_fraction"] = np.where(on, xl, truth["li2o_damage_fraction"])
            add(b0 + j, f * amorph * (1 - t), on)
            if nb > 1:
                add(b0 + j + 1, f * amorph * t, on)
            if q_map is None or len(xq) != 2:
                truth["sei_type1_model"][on] = sorted(prep.t1_model).index(own)
        elif region.kind == "sei_type2":
            v = float(region.params.get("lif_volume_fraction", 0.0))
            q_map = params.get(f"{region.name}.sro_peak")
            xq = prep.t2_peak
            if q_map is not None and len(xq) == 2:
                j, t = _on_path(xq, q_map.reshape(-1))  # the matrix at the requested SRO peak
                add(b0 + j, f * (1.0 - v) * (1 - t), on)
                add(b0 + j + 1, f * (1.0 - v) * t, on)
                xd = prep.t2_density
                rho_m = xd[j] * (1 - t) + xd[np.minimum(j + 1, nb - 1)] * t
                truth["density"] = np.where(on & np.isnan(truth["density"]), rho_m, truth["density"])
            else:
                add(b0 + (u3 * nb).astype(int) % nb, f * (1.0 - v), on)
            rho2 = params.get(f"{region.name}.density")
            if rho2 is not None:
                truth["density"] = np.where(on & np.isnan(truth["density"]), rho2.reshape(-1), truth["density"])
            if v > 0 and ("lif", "hce") in prep.base:
                l0, nl = prep.base[("lif", "hce")]
                n_cr = nl // prep.n_rot
                dia = float(region.params.get("lif_diameter", 30.0))
                # crystals along the beam: LiF thickness v·f·t_scene over one crystal's mean chord (2/3 d)
                n_c = v * fr[..., r].reshape(-1) * float(scene.thickness) / (2.0 / 3.0 * dia)
                # a probe wider than a crystal (0.15 mrad: 1/∫P² ≈ 11,900 Å² against π d²/4 = 707 Å²) sees
                # `spread` times more crystals, each lit by 1/spread of the intensity: same LiF scattering,
                # more orientations in one pattern
                spread = max(1.0, prep.probe_area / (np.pi * dia**2 / 4.0))
                n_t = n_c * spread
                k = (u1 * n_cr).astype(int) % n_cr
                rot = (u2 * prep.n_rot).astype(int) % prep.n_rot
                present = on & (n_t > 0.05)
                add(l0 + k * prep.n_rot + rot, np.minimum(1.0, n_t) / spread, present)
                for extra in range(1, int(np.ceil(n_t.max(initial=0.0)))):
                    w = np.clip(n_t - extra, 0.0, 1.0)
                    kk = (k + extra + extra // n_cr) % n_cr
                    rr = (rot + 5 * extra + extra // prep.n_rot) % prep.n_rot
                    add(l0 + kk * prep.n_rot + rr, w / spread, present & (w > 0))
                truth["lif_entry"] = np.where(present, k, truth["lif_entry"])
                truth["lif_angle"] = np.where(present, 2 * np.pi * rot / prep.n_rot, truth["lif_angle"])
                truth["lif_f_vacancy"] = np.where(present, prep.lif_fv[k], truth["lif_f_vacancy"])
                truth["lif_count"] = np.where(present, np.maximum(1, np.rint(n_t)), truth["lif_count"]).astype(np.int32)
        elif region.kind in ("li_metal", "cu", "li2o"):
            g = params.get(f"{region.name}.grain")
            gi = g.reshape(-1).astype(int) if g is not None else np.zeros(npx, int)
            add(b0 + gi % nb, f, on)
        else:  # electrolyte: at the requested SRO peak if the scene gives one, else an undilated configuration
            tag = _tag(region.params)
            q_map = params.get(f"{region.name}.sro_peak")
            xq = (prep.el_peak or {}).get(tag, ())
            if q_map is not None and len(xq) == 2:
                j, t = _on_path(xq, q_map.reshape(-1))
                add(b0 + j, f * (1 - t), on)
                add(b0 + j + 1, f * t, on)
                xd = prep.el_density[tag]
                rho = xd[j] * (1 - t) + xd[np.minimum(j + 1, nb - 1)] * t
                truth["density"] = np.where(on & np.isnan(truth["density"]), rho, truth["density"])
            else:
                plain = prep.el_plain[tag]
                add(b0 + plain[(u3 * plain.size).astype(int) % plain.size], f, on)
    if r_idx:
        w = sparse.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(r_idx), np.concatenate(c_idx))),
            shape=(npx, prep.stack.shape[0]),
        )
    else:
        w = sparse.csr_matrix((npx, prep.stack.shape[0]), dtype=np.float32)
    truth = {k: v.reshape(shape) for k, v in truth.items()}
    truth["fractions"] = fr
    return w, truth


@njit(parallel=True, cache=True)
def _dense_kernel(indptr, indices, data, stack, vac, cap, out):
    """Row k of out = max(0, vac + Σ_e w_ke stack_e), scaled down to a total of ``cap`` if it holds more."""
    n, npix = out.shape
    for k in prange(n):
        for p in range(npix):
            out[k, p] = vac[p]
        for z in range(indptr[k], indptr[k + 1]):
            e = indices[z]
            w = data[z]
            for p in range(npix):
                out[k, p] += w * stack[e, p]
        total = 0.0
        for p in range(npix):
            v = max(out[k, p], np.float32(0.0))
            out[k, p] = v
            total += v
        if total > cap:
            f = np.float32(cap / total)
            for p in range(npix):
                out[k, p] *= f


def _dense(w, prep: _Prepared) -> np.ndarray:
    """Patterns (rows of w, npix) = P_vac + w · (P_e − P_vac), clipped at 0 and capped at the incident beam.

    Conservation: no pattern holds more electrons than the probe. The first-order superposition extrapolates a thin
    library entry to the scene thickness (×10 for the tiny preset's 60 Å entries in a 600 Å lamella); for strongly
    scattering crystals (Li, Cu) that would send 2–6× the incident beam into the Bragg discs, so such a pattern is
    scaled down to the incident total.
    """
    w = w.tocsr()
    out = np.empty((w.shape[0], prep.vac.size), np.float32)
    _dense_kernel(
        w.indptr.astype(np.int64),
        w.indices.astype(np.int64),
        w.data.astype(np.float32),
        prep.stack,
        prep.vac,
        float(prep.vac.sum(dtype=np.float64)),
        out,
    )
    return out


@dataclass(frozen=True, kw_only=True)
class SynthResult:
    """What :func:`synthesize_scan` wrote.

    Attributes
    ----------
    path : pathlib.Path
    truth : dict of ndarray
        The ground-truth maps also stored in the file (:data:`simkit.emd.TRUTH_PATH`).
    electrons_per_pattern : float  [e]
    scan_fluence : float  [e/Å²]
    settings : dict
    """

    path: Path
    truth: dict
    electrons_per_pattern: float
    scan_fluence: float
    settings: dict


def counts_dtype(library: PatternLibrary, electrons_per_pattern: float, *, thickness: float | None = None):
    """Smallest unsigned integer type (uint16 or uint32) that holds every expected count of a synthetic scan.

    Parameters
    ----------
    library : PatternLibrary
    electrons_per_pattern : float  [e]
    thickness : float or None  [Å]
        Scene thickness; entries are extrapolated to it as in :func:`compose` (default: the library's).

    Returns
    -------
    numpy dtype
        ``uint16`` if the brightest pixel of any entry (vacuum + t_scene/t_lib · (entry − vacuum)), times the
        dose, plus 10 Poisson σ stays below 65535, else ``uint32``.

    Raises
    ------
    ValueError
        When even ``uint32`` would overflow (a dose no detector records).
    """
    vac = np.asarray(library.vacuum, dtype=np.float64)
    scale = max(1.0, float(thickness) / float(library.thickness)) if thickness else 1.0
    peak = float(vac.max())
    for e in library.entries:
        peak = max(peak, float((vac + scale * (np.asarray(e.pattern, dtype=np.float64) - vac)).max()))
    lam = peak * float(electrons_per_pattern)
    if lam + 10.0 * math.sqrt(lam) + 10.0 >= np.iinfo(np.uint32).max:
        raise ValueError(
            f"electrons_per_pattern={electrons_per_pattern:g}: the brightest pixel would receive {lam:.3g} counts, "
            f"beyond a uint32 detector count ({np.iinfo(np.uint32).max}); give at most "
            f"{0.9 * np.iinfo(np.uint32).max / peak:.3g} e per pattern"
        )
    return np.dtype(np.uint16) if lam + 10.0 * math.sqrt(lam) + 10.0 < np.iinfo(np.uint16).max else np.dtype(np.uint32)


def truth_plan(geometry: DetectorGeometry):
    """The radial plan of the ground-truth peak positions: bins of max(0.005 Å⁻¹, one pixel) up to 0.9 Å⁻¹.

    Parameters
    ----------
    geometry : DetectorGeometry

    Returns
    -------
    simkit.radial.RadialPlan
    """
    from simkit.radial import make_plan_from_geometry

    qm = min(geometry.q_max, 0.9)
    width = max(0.005, geometry.pixel_size)
    return make_plan_from_geometry(geometry, n_bins=max(8, int(qm / width)), q_max=qm)


def truth_peaks(patterns: np.ndarray, geometry: DetectorGeometry, plan=None, *, probe=None) -> np.ndarray:
    """SRO peak positions [Å⁻¹] of noise-free patterns by the project's SRO estimator (NaN where it fails).

    The estimator is :func:`simkit.peak_estimator.sro_peak_position` with the width and window that
    :func:`simkit.peak_estimator.sro_window` gives for the probe — exactly what ``fitting.peaks.sro_peak_map`` applies
    to a measured scan that records its semi-angle and energy.

    Parameters
    ----------
    patterns : ndarray, shape (..., ny, nx)
    geometry : DetectorGeometry
    plan : RadialPlan or None
        Default :func:`truth_plan`.
    probe : simkit.nbed.Probe or None
        Sets the estimator's window (default: 2 mrad at 300 keV).

    Returns
    -------
    ndarray, shape patterns.shape[:-2]  [Å⁻¹]
    """
    from simkit.peak_estimator import sro_peak_position, sro_window

    plan = plan or truth_plan(geometry)
    prof = plan.integrate(patterns)
    w, h = sro_window(2.0, 300e3) if probe is None else sro_window(probe.semiangle, probe.energy)
    fit = sro_peak_position(prof.q, prof.mean, TRUTH_Q_RANGE, width=w, half_width=h, n=1)
    return np.where(fit.ok, fit.position, np.nan)


def synthesize_scan(
    scene,
    path: str | os.PathLike,
    *,
    library: PatternLibrary | str = "demo",
    probe=None,
    geometry: DetectorGeometry | None = None,
    electrons_per_pattern: float = DEFAULT_ELECTRONS_PER_PATTERN,
    detector=None,
    damage=None,
    instrument: Instrument = DEFAULT_INSTRUMENT,
    seed: int = 0,
    overwrite: bool = False,
    dtype=None,
    compression: str | None = DEFAULT_COMPRESSION,
    rows_per_chunk: int = 4,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> SynthResult:
    """Synthesise a SEND scan of ``scene`` and write it as an EMD 1.0 file with a ground-truth group.

    Parameters
    ----------
    scene : structures.scenes.Scene
        Region map; its ``field_shape`` (scan_y, scan_x) and ``step`` [Å] set the scan.
    path : path
        Output ``.h5``/``.emd`` file; refused if it exists unless ``overwrite``.
    library : PatternLibrary or str
        A built library, or a preset name ("tiny", "demo", "full") built/loaded from the cache.
    probe : simkit.nbed.Probe or None
        Used when ``library`` is a preset; default 300 keV, 2 mrad.
    geometry : DetectorGeometry or None
        Used when ``library`` is a preset; default ``DetectorGeometry()`` (256² × ``DEFAULT_PIXEL_SIZE`` Å⁻¹).
    electrons_per_pattern : float  [e]
        Dose per pattern (default 10⁶ e = 16 pA × 10 ms: the dose at which the per-pixel SRO peak error is
        < 0.003 Å⁻¹ — see the module docstring; scan fluence = this / step²).
    detector : simkit.detector.DetectorModel or None
        None = an ideal counting detector (Poisson only).
    damage : simkit.damage.DamageModel or None
        None = no beam damage.
    instrument : simkit.instrument.Instrument
        Known descan and ellipse (the truth the analysis should recover); a field left None simulates none of it.
        Default :data:`DEFAULT_INSTRUMENT`: a descan plane of (0.8, −0.6) px across the scan plus (1.5, 1.0) px,
        and a 2 % ellipse at 0.5 rad.
    seed : int
        Seeds everything random (per-pixel choices, Poisson noise, detector defects).
    overwrite : bool
    dtype : numpy dtype or None
        Stored counts type; None (default): uint16 unless the brightest expected pixel (library entries scaled to
        the scene thickness, times the dose, plus 10 σ) could exceed 65535, then uint32. Counts above the
        maximum of an explicit dtype raise.
    compression : {"lzf", "blosc-lz4", None}
        Codec of the pattern chunks (:mod:`simkit.emd`). Default "lzf": every HDF5 reader opens it. "blosc-lz4"
        writes about twice and decodes about four times as fast (docs/measurements.md), but readers need the
        hdf5plugin filters (``fitting.io`` registers them; in py4DSTEM/emdfile/h5py/HyperSpy sessions
        ``import hdf5plugin`` first).
    rows_per_chunk : int
        Scan rows whose mixing weights and truth are computed per step (small: ≈ n_regions floats per position);
        patterns are then made and written :data:`BLOCK_PATTERNS` at a time.
    cache_dir : path or None
        Library cache.
    progress : bool

    Returns
    -------
    SynthResult
    """
    from tqdm.auto import tqdm

    from simkit.detector import detect
    from simkit.dose import accumulated_fluence_map

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"path={str(path)!r} exists; pass overwrite=True to replace it")
    filter_kwargs(compression)  # an unknown codec fails before any work
    check_positive("electrons_per_pattern", electrons_per_pattern, "e per pattern")
    for r in scene.regions:
        if r.kind not in _REGION_TO_ENTRY:
            raise ValueError(f"region {r.name!r} has kind {r.kind!r} that the synthesiser does not know")
    if isinstance(library, str):
        library = build_library(
            library, probe=probe, geometry=geometry, cache_dir=cache_dir, progress=progress, seed=seed
        )
    if not isinstance(library, PatternLibrary):
        raise TypeError("library must be a PatternLibrary or a preset name")
    for r in scene.regions:
        ek = _REGION_TO_ENTRY[r.kind]
        if ek != "vacuum":
            library.by_kind(ek)  # raises naming the missing entry
    geometry = library.geometry
    probe = library.probe
    ny_s, nx_s = scene.field_shape
    step = float(scene.step)
    rng = np.random.default_rng(seed)

    # descan and ellipse (known truth)
    if not isinstance(instrument, Instrument):
        raise TypeError(f"instrument={instrument!r}: expected a simkit.instrument.Instrument")
    descan = instrument.descan or Descan()
    shifts = descan.shifts((ny_s, nx_s))
    if descan.center is not None:  # the library's patterns are centred on geometry.center
        shifts = shifts + (np.asarray(descan.center) - np.asarray(geometry.center, dtype=float))
    ellipse = instrument.ellipse or Ellipse()
    ratio, angle = ellipse.ratio, ellipse.angle

    damage_state = None
    fluence = None
    if damage is not None:
        from simkit.damage import pattern_fractions

        fmap = accumulated_fluence_map((ny_s, nx_s), step, probe.semiangle, probe.energy, electrons_per_pattern)
        damage_state = pattern_fractions(fmap, damage)
        fluence = damage_state["fluence"][-1]

    prep = _prepare(library)
    foot = _footprint(probe, step)
    tplan = truth_plan(geometry)
    if dtype is None:
        dtype = counts_dtype(library, electrons_per_pattern, thickness=float(scene.thickness))
    maxval = np.iinfo(dtype).max if np.issubdtype(np.dtype(dtype), np.integer) else np.inf
    cy, cx = (float(c) for c in geometry.center)
    amat = _warp_matrix(ratio, angle)
    dose = float(electrons_per_pattern)
    noise_key = int(rng.integers(0, 2**63 - 1))  # every pattern's Poisson stream: this key and its flat index

    names = [r.name for r in scene.regions]
    n_reg = len(names)
    truth = {
        "fractions": np.zeros((ny_s, nx_s, n_reg)),
        "sro_peak": np.full((ny_s, nx_s), np.nan),
        "density": np.full((ny_s, nx_s), np.nan),
        "lif_entry": np.full((ny_s, nx_s), -1, np.int32),
        "lif_angle": np.full((ny_s, nx_s), np.nan),
        "lif_f_vacancy": np.full((ny_s, nx_s), np.nan),
        "lif_count": np.zeros((ny_s, nx_s), np.int32),
        "li2o_damage_fraction": np.zeros((ny_s, nx_s)),
        "sei_type1_model": np.full((ny_s, nx_s), -1, np.int16),
    }
    settings = {
        "scene": json.loads(scene.to_json()),
        "probe": probe.to_dict(),
        "geometry": {"shape": list(geometry.shape), "pixel_size": geometry.pixel_size, "center": list(geometry.center)},
        "library_thickness": library.thickness,
        "library_keys": [e.key for e in library.entries],
        "electrons_per_pattern": float(electrons_per_pattern),
        "scan_fluence": float(electrons_per_pattern / step**2),
        "instrument": instrument.to_dict(),
        "seed": int(seed),
        "detector": None if detector is None else repr(detector),
        "damage": None if damage is None else repr(damage),
        "truth_q_range": list(TRUTH_Q_RANGE),
        "truth_estimator": TRUTH_ESTIMATOR,
    }
    from simkit import __version__
    from simkit.atomic import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = write_emd_header(
                f,
                (ny_s, nx_s),
                geometry,
                step,
                dtype=dtype,
                compression=compression,
                energy=probe.energy,
                semiangle=probe.semiangle,
                camera_length=None
                if detector is None
                else camera_length_mm(geometry.pixel_size, probe.energy, detector.pixel_pitch),
                file_id=f"sei-send synth {json.dumps(settings, sort_keys=True)}",
                attrs={
                    "energy": probe.energy,
                    "semiangle": probe.semiangle,
                    "step": step,
                    "pixel_size": geometry.pixel_size,
                    "center": list(geometry.center),
                },
            )
            bar = tqdm(total=ny_s, desc="synthesising scan", unit="row", disable=not progress)
            for r0 in range(0, ny_s, rows_per_chunk):
                sl = slice(r0, min(ny_s, r0 + rows_per_chunk))
                w, t = _weights(scene, library, sl, damage_state, seed, foot, prep)
                for k in ("density", "lif_entry", "lif_angle", "lif_f_vacancy", "lif_count", "li2o_damage_fraction",
                          "sei_type1_model"):  # fmt: skip
                    truth[k][sl] = t[k]
                truth["fractions"][sl] = t["fractions"]
                sro = np.zeros(t["fractions"].shape[:2], bool)
                for r, region in enumerate(scene.regions):
                    if region.kind in _SRO_KINDS:
                        sro |= t["fractions"][..., r] > 0.05
                sro = sro.reshape(-1)
                peaks = np.full(sro.size, np.nan)
                first = r0 * nx_s  # flat index of the group's first pattern
                for a in range(0, sro.size, BLOCK_PATTERNS):
                    b = min(sro.size, a + BLOCK_PATTERNS)
                    pats = _dense(w[a:b], prep).reshape(b - a, *geometry.shape)
                    if sro[a:b].any():
                        peaks[a:b][sro[a:b]] = truth_peaks(pats[sro[a:b]], geometry, tplan, probe=probe)
                    idx = np.arange(first + a, first + b)
                    sh = shifts.reshape(-1, 2)[idx]
                    if detector is None:
                        counts = np.empty(pats.shape, dtype=dtype)
                        peak = np.empty(b - a, np.int64)
                        _expose(pats, cy, cx, sh, amat, 1.0 / ratio, dose, _poisson_keys(noise_key, idx),
                                int(min(maxval, 2**62)), counts, peak)  # fmt: skip
                        top = int(peak.max(initial=0))
                    else:
                        warped = warp_patterns(pats, geometry.center, sh, ratio, angle)
                        counts = detect(warped * np.float32(electrons_per_pattern), detector, rng)
                        top = int(counts.max(initial=0))
                    if top > maxval:
                        raise OverflowError(
                            f"counts reach {top} > {maxval} of dtype {np.dtype(dtype).name}; "
                            "lower electrons_per_pattern or pass dtype=np.uint32"
                        )
                    write_patterns(ds, first + a, counts)
                truth["sro_peak"][sl] = peaks.reshape(-1, nx_s)
                bar.update(sl.stop - sl.start)
            bar.close()
            maj = np.argmax(truth["fractions"], axis=-1)
            stored = {
                "region": maj.astype(np.int16),
                "region_fraction": np.take_along_axis(truth["fractions"], maj[..., None], -1)[..., 0],
                "region_names": json.dumps(names),
                "region_kinds": json.dumps([r.kind for r in scene.regions]),
                "sei_type1_models": json.dumps(_type1_models(prep)),
                **truth,
                "descan": shifts,
                "ellipse_ratio": ratio,
                "ellipse_angle": angle,
                "instrument": json.dumps(instrument.to_dict()),
                "sro_peak_units": "A^-1 (Q = 1/d)",
                "settings": json.dumps(settings),
                "sei_send_version": __version__,
            }
            if fluence is not None:
                stored["fluence"] = fluence
            write_truth(f, stored)
            f.flush()
    maj = np.argmax(truth["fractions"], axis=-1)
    truth["region"] = maj
    truth["region_names"] = names
    truth["sei_type1_models"] = _type1_models(prep)
    truth["descan"] = shifts
    if fluence is not None:
        truth["fluence"] = fluence
    return SynthResult(
        path=path,
        truth=truth,
        electrons_per_pattern=float(electrons_per_pattern),
        scan_fluence=float(electrons_per_pattern / step**2),
        settings=settings,
    )


def default_scan(
    name: str = "bottom", *, semiangle: float = 2.0, field_shape: tuple[int, int] | None = None, **scene_kwargs: Any
):
    """The study's default scenes (``bottom`` / ``top``) with a probe of ``semiangle`` [mrad].

    Parameters
    ----------
    name : {"bottom", "top"}
    semiangle : float  [mrad]
        Probe convergence semi-angle at 300 keV: 2 (discs of 0.10 Å⁻¹) or 0.15 (0.0076 Å⁻¹ discs, a probe
        footprint of several 4 nm steps). Build the library with this probe (``build_library(...,
        probe=probe)``): its crystal entries then take the method the probe calls for
        (:func:`simkit.library.resolve_method`).
    field_shape : (int, int) or None
        (n_y, n_x) scan positions; None = the scene's default (60, 90).
    **scene_kwargs
        Passed to :func:`structures.scenes.bottom` / :func:`structures.scenes.top` (``step`` [Å],
        ``li_side`` [Å], ``thickness`` [Å], …).

    Returns
    -------
    (scene, probe) : structures.scenes.Scene, simkit.nbed.Probe
    """
    from simkit.nbed import Probe
    from structures import scenes

    makers = {"bottom": scenes.bottom, "top": scenes.top}
    if name not in makers:
        raise ValueError(f"name={name!r}: default scenes are {', '.join(makers)}")
    if field_shape is not None:
        scene_kwargs["field_shape"] = tuple(field_shape)
    return makers[name](**scene_kwargs), Probe(semiangle=float(semiangle))
