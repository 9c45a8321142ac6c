"""Electron dose: scan fluence, the probe's intensity profile, local accumulated fluence and Poisson exposure.

Two doses, never mixed up (binding convention, see the project README):

* **scan fluence** [e/Å²] = electrons per pattern / step area. 1 pA for 1 ms is 6,242 e; over a 40 × 40 Å
  step that is 3.90 e/Å².
* **local fluence** [e/Å²] = the probe's intensity profile summed over the raster. The same 6,242 e land
  mostly inside the Airy disc: ≈ 6,242 / (π·6.0²) ≈ 55 e/Å² for a 2 mrad probe at 300 keV (first zero at
  6.0 Å; the peak is 202 e/Å²), ≈ 0.3 e/Å² for 0.15 mrad (first zero at 80 Å).

Beam damage (``simkit.damage``) runs on the local accumulated fluence. Two measures of it are returned for
every probe position by :func:`accumulated_fluence_map`:

* the value at the probe centre, Σ_j N P(r_k − r_j);
* the *probe-weighted* value, ∫ P(r − r_k) D(r) d²r = N Σ_j A(r_k − r_j) with A = P ⋆ P the probe's
  autocorrelation: the mean local fluence of the material that scatters into pattern k. This is what the
  damage model uses.

Probe model: aberration-free (optionally defocused) probe with a sharp circular aperture of semi-angle α,
intensity |2 J1(v)/v|² with v = 2π α r / λ for zero defocus, normalised so that ∫ P d²r = 1 [1/Å²],
optionally convolved with a Gaussian source image of given **FWHM** [Å]. The probe's transfer function
(the Fourier transform of P) vanishes beyond 2α/λ, so P is band-limited: sampled on a grid finer than
λ/(4α) its discrete sum equals its integral (Poisson summation). The default fine grid obeys this.

Truncation: the Airy tail falls as r⁻³ (enclosed power 1 − J0(v)² − J1(v)² ≈ 1 − 2/(πv)), so kernels are
cut at the radius where the enclosed probe power reaches ``power_fraction`` (default 99.9 %: ≈ 1,000 Å for
2 mrad, ≈ 13,000 Å for 0.15 mrad at 300 keV); the missing 0.1 % is spread uniformly over the kernel's disc
so that each exposure still deposits exactly its electrons (conservation of charge) without inflating the
probe's core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit
from scipy import interpolate, signal, special

from simkit.units import ELEMENTARY_CHARGE_C, mrad_to_q, wavelength
from structures.checks import check_finite, check_in_range, check_positive

__all__ = [
    "ELECTRONS_PER_PA_S",
    "FluenceMap",
    "accumulated_fluence_map",
    "effective_area",
    "electrons_per_pattern",
    "expose",
    "local_fluence_peak",
    "local_to_scan_ratio",
    "probe_first_zero",
    "probe_kernel",
    "probe_profile",
    "probe_radius",
    "scan_fluence",
]

#: Electrons per second in a 1 pA beam [e/(pA·s)] = 1e-12 C/s / e.
ELECTRONS_PER_PA_S = 1e-12 / ELEMENTARY_CHARGE_C
#: First zero of J1 (Airy first dark ring at v = 3.8317).
_J1_ZERO = 3.831705970207512
#: Gaussian FWHM / σ.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# ----------------------------------------------------------------------------------------------------------
# scan fluence
# ----------------------------------------------------------------------------------------------------------
def electrons_per_pattern(current_pA: float, dwell_s: float) -> float:
    """Number of electrons delivered during one exposure.

    Parameters
    ----------
    current_pA : float  [pA]
        Probe current, >= 0.
    dwell_s : float  [s]
        Dwell (exposure) time per probe position, > 0.

    Returns
    -------
    float  [e]
        I·t/e; 1 pA for 1 ms gives 6,241.5 e.
    """
    i = check_positive("current_pA", current_pA, "pA", allow_zero=True)
    t = check_positive("dwell_s", dwell_s, "s")
    return i * t * ELECTRONS_PER_PA_S


def scan_fluence(current_pA: float, dwell_s: float, step: float | tuple[float, float]) -> float:
    """Scan fluence: electrons per pattern divided by the area of one scan step.

    Parameters
    ----------
    current_pA : float  [pA]
    dwell_s : float  [s]
    step : float or (float, float)  [Å]
        Scan step (square) or ``(step_y, step_x)``.

    Returns
    -------
    float  [e/Å²]
        Scan fluence per pass; 1 pA, 1 ms, 40 Å step → 3.90 e/Å².
    """
    n = electrons_per_pattern(current_pA, dwell_s)
    sy, sx = _steps(step)
    return n / (sy * sx)


def _steps(step) -> tuple[float, float]:
    if np.ndim(step) == 0:
        s = check_positive("step", step, "Å")
        return s, s
    if np.ndim(step) != 1 or len(step) != 2:
        raise ValueError(f"step={step!r}: give one scan step or (step_y, step_x) [Å]")
    return check_positive("step[0]", step[0], "Å"), check_positive("step[1]", step[1], "Å")


# ----------------------------------------------------------------------------------------------------------
# probe intensity profile
# ----------------------------------------------------------------------------------------------------------
def _k_alpha(semiangle: float, energy: float) -> float:
    return mrad_to_q(check_positive("semiangle", semiangle, "mrad"), energy)


def probe_first_zero(semiangle: float, energy: float) -> float:
    """Radius of the first zero of the aberration-free Airy probe.

    Parameters
    ----------
    semiangle : float  [mrad]
    energy : float  [eV]

    Returns
    -------
    float  [Å]
        0.6098 λ/α (6.0 Å for 2 mrad, 80 Å for 0.15 mrad at 300 keV).
    """
    return _J1_ZERO / (2.0 * math.pi * _k_alpha(semiangle, energy))


@lru_cache(maxsize=8)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _transfer(q: np.ndarray, ka: float, lam: float, defocus: float, sigma: float) -> np.ndarray:
    """Fourier transform of the normalised probe intensity (optical transfer function × source), T(0) = 1.

    q [Å⁻¹] must lie in [0, 2 ka]. For zero defocus T is the autocorrelation of a disc ("chat" function);
    otherwise the pupil's autocorrelation is integrated along the overlap lens (a real 1-D integral).
    """
    q = np.asarray(q, dtype=float)
    if defocus == 0.0:
        x = np.clip(q / (2.0 * ka), 0.0, 1.0)
        t = (2.0 / np.pi) * (np.arccos(x) - x * np.sqrt(1.0 - x * x))
    else:
        # T(q) = 1/(π ka²) ∫ 2 sqrt(ka² − (|u| + q/2)²) cos(2π λ Δf q u) du over |u| ≤ ka − q/2
        nodes, weights = _gauss_legendre(256)
        half = np.maximum(ka - q / 2.0, 0.0)
        u = 0.5 * (nodes[None, :] + 1.0) * half[:, None]  # even integrand: integrate over [0, half] twice
        h = np.sqrt(np.maximum(ka * ka - (u + q[:, None] / 2.0) ** 2, 0.0))
        f = 2.0 * h * np.cos(2.0 * np.pi * lam * defocus * q[:, None] * u)
        t = 2.0 * (f * weights[None, :]).sum(axis=1) * 0.5 * half / (np.pi * ka * ka)
    if sigma > 0.0:
        t = t * np.exp(-2.0 * np.pi**2 * sigma**2 * q * q)
    return t


@lru_cache(maxsize=64)
def _hankel_nodes(ka: float, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Composite 16-point Gauss–Legendre nodes and weights on [0, 2 ka], panels narrower than 1/(2 r_max)."""
    n_panels = int(math.ceil(4.0 * ka * r_max)) + 8
    x, w = _gauss_legendre(16)
    edges = np.linspace(0.0, 2.0 * ka, n_panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    q = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    return q, (half[:, None] * w[None, :]).ravel()


def _nodes_for(ka: float, lam: float, defocus: float, sigma: float, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes q [Å⁻¹] and weights × T(q) for radii up to r_max (rounded up to a power of two)."""
    return _weighted_nodes(ka, lam, defocus, sigma, float(2.0 ** math.ceil(math.log2(max(r_max, 1.0)))))


@lru_cache(maxsize=64)
def _weighted_nodes(ka: float, lam: float, defocus: float, sigma: float, r_max: float):
    q, w = _hankel_nodes(ka, r_max)
    return q, _transfer(q, ka, lam, defocus, sigma) * w


def _profile_hankel(r: np.ndarray, ka: float, lam: float, defocus: float, sigma: float) -> np.ndarray:
    """P(r) = 2π ∫₀^{2ka} T(q) J0(2π q r) q dq on a 1-D array of radii."""
    r_max = float(r.max()) if r.size else 0.0
    q, tw = _nodes_for(ka, lam, defocus, sigma, r_max)
    tw = tw * q * 2.0 * np.pi
    out = np.empty(r.shape, dtype=float)
    for s in range(0, r.size, 2048):
        rr = r[s : s + 2048]
        out[s : s + 2048] = special.j0(2.0 * np.pi * rr[:, None] * q[None, :]) @ tw
    return out


def probe_profile(
    semiangle: float,
    energy: float,
    r: float | np.ndarray,
    *,
    defocus: float = 0.0,
    source_size: float = 0.0,
) -> np.ndarray:
    """Intensity profile of the probe, normalised to integrate to 1 over the plane.

    Parameters
    ----------
    semiangle : float  [mrad]
        Convergence semi-angle α of the (sharp, circular) probe-forming aperture.
    energy : float  [eV]
        Beam energy.
    r : float or ndarray  [Å]
        Radial distance(s) from the probe centre, any shape (for a 2-D grid pass ``np.hypot(y, x)``).
    defocus : float  [Å]
        Defocus Δf (aberration phase χ = π λ Δf k²); the intensity does not depend on its sign.
    source_size : float  [Å]
        **FWHM** of the Gaussian source image convolved with the coherent probe (σ = FWHM / 2.3548).

    Returns
    -------
    ndarray  [1/Å²]
        P(r), same shape as ``r``; ∫ P d²r = 1. For zero defocus and source size this is the Airy pattern
        π (α/λ)² |2 J1(v)/v|², v = 2π α r / λ (first zero at 0.61 λ/α); otherwise it is computed as the
        Hankel transform of the probe's transfer function (exact up to quadrature error ~1e-6).
    """
    ka = _k_alpha(semiangle, energy)
    lam = wavelength(energy)
    df = check_finite("defocus", defocus, "Å")
    fwhm = check_positive("source_size", source_size, "Å (FWHM)", allow_zero=True)
    r_arr = np.asarray(r, dtype=float)
    if np.any(~np.isfinite(r_arr)) or np.any(r_arr < 0):
        raise ValueError("r: radii must be finite and >= 0 [Å]")
    if df == 0.0 and fwhm == 0.0:
        v = 2.0 * np.pi * ka * r_arr
        with np.errstate(invalid="ignore", divide="ignore"):
            airy = np.where(v > 1e-8, 2.0 * special.j1(v) / np.where(v > 1e-8, v, 1.0), 1.0)
        return np.pi * ka * ka * airy * airy
    flat = r_arr.ravel()
    uniq, inverse = np.unique(flat, return_inverse=True)
    if uniq.size > 4096:  # tabulate finely and interpolate (smooth, band-limited function)
        dr = 0.05 / ka  # 1/20 of the probe's band-limit period; cubic interpolation error < 1e-4 of the peak
        table_r = np.arange(0.0, uniq[-1] + 4 * dr, dr)
        table = _profile_hankel(table_r, ka, lam, df, fwhm / _FWHM_PER_SIGMA)
        vals = interpolate.CubicSpline(table_r, table, bc_type=((1, 0.0), "not-a-knot"))(uniq)
    else:
        vals = _profile_hankel(uniq, ka, lam, df, fwhm / _FWHM_PER_SIGMA)
    return vals[inverse].reshape(r_arr.shape)


def _enclosed(radius: np.ndarray, ka: float, lam: float, defocus: float, sigma: float) -> np.ndarray:
    """Power of the normalised probe inside radius R: 2π R ∫ T(q) J1(2π q R) dq (1 − J0² − J1² for Airy)."""
    radius = np.asarray(radius, dtype=float)
    if defocus == 0.0 and sigma == 0.0:
        v = 2.0 * np.pi * ka * radius
        return 1.0 - special.j0(v) ** 2 - special.j1(v) ** 2
    q, tw = _nodes_for(ka, lam, defocus, sigma, float(radius.max()))
    return 2.0 * np.pi * radius * (special.j1(2.0 * np.pi * radius[:, None] * q[None, :]) @ tw)


@lru_cache(maxsize=64)
def _radius_cached(ka: float, lam: float, defocus: float, sigma: float, fraction: float) -> float:
    r0 = _J1_ZERO / (2.0 * np.pi * ka)
    hi = r0
    while _enclosed(np.array([hi]), ka, lam, defocus, sigma)[0] < fraction:
        hi *= 2.0
        if hi > 1e4 * r0 + 1e3 * sigma + 1e3 * abs(defocus * lam * ka):
            raise ValueError(f"power_fraction={fraction!r}: the enclosed power does not reach it; use a smaller one")
    # the enclosed power is monotonic (P >= 0): the first crossing on a fine grid, then bisection
    grid = np.linspace(0.0, hi, 513)[1:]
    e = _enclosed(grid, ka, lam, defocus, sigma)
    i = int(np.argmax(e >= fraction))
    lo, hi = (grid[i - 1] if i > 0 else 0.0), grid[i]
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _enclosed(np.array([mid]), ka, lam, defocus, sigma)[0] >= fraction:
            hi = mid
        else:
            lo = mid
    return hi


def probe_radius(
    semiangle: float,
    energy: float,
    *,
    power_fraction: float = 0.999,
    defocus: float = 0.0,
    source_size: float = 0.0,
) -> float:
    """Radius inside which the probe carries ``power_fraction`` of its electrons.

    Parameters
    ----------
    semiangle : float  [mrad]
    energy : float  [eV]
    power_fraction : float
        Enclosed fraction, 0 < f < 1 (0.838 is the Airy disc; 0.999 is the truncation used for kernels).
    defocus : float  [Å]
    source_size : float  [Å]  (Gaussian FWHM)

    Returns
    -------
    float  [Å]
    """
    ka = _k_alpha(semiangle, energy)
    f = check_in_range("power_fraction", power_fraction, 0.0, 1.0, "fraction", low_open=True, high_open=True)
    df = check_finite("defocus", defocus, "Å")
    sigma = check_positive("source_size", source_size, "Å (FWHM)", allow_zero=True) / _FWHM_PER_SIGMA
    return _radius_cached(ka, wavelength(energy), df, sigma, f)


def nyquist_step(semiangle: float, energy: float) -> float:
    """Largest grid step that samples the probe intensity without aliasing, λ/(4α).

    Parameters
    ----------
    semiangle : float  [mrad]
    energy : float  [eV]

    Returns
    -------
    float  [Å]
        2.46 Å for 2 mrad, 32.8 Å for 0.15 mrad at 300 keV.
    """
    return 1.0 / (4.0 * _k_alpha(semiangle, energy))


def probe_kernel(
    semiangle: float,
    energy: float,
    grid_step: float,
    *,
    power_fraction: float = 0.999,
    defocus: float = 0.0,
    source_size: float = 0.0,
) -> np.ndarray:
    """The probe intensity sampled on a square grid centred on the probe, truncated and renormalised.

    Parameters
    ----------
    semiangle : float  [mrad]
    energy : float  [eV]
    grid_step : float  [Å]
        Grid spacing; should be below λ/(4α) (:func:`nyquist_step`) for the sum to equal the integral.
    power_fraction : float
        Truncation: pixels outside the radius enclosing this fraction of the probe power are zero.
    defocus : float  [Å]
    source_size : float  [Å]  (Gaussian FWHM)

    Returns
    -------
    ndarray, shape (2p + 1, 2p + 1)  [1/Å²]
        Kernel with its centre at index (p, p) and ``kernel.sum() * grid_step**2 == 1``: the power beyond the
        truncation radius is added back as a uniform pedestal over the kernel's disc.
    """
    gs = check_positive("grid_step", grid_step, "Å")
    radius = probe_radius(semiangle, energy, power_fraction=power_fraction, defocus=defocus, source_size=source_size)
    p = int(math.ceil(radius / gs))
    if (2 * p + 1) ** 2 > 4e8:
        raise ValueError(
            f"grid_step={grid_step!r} Å: the {radius:.0f} Å probe kernel would be too large; use a coarser grid"
        )
    c = np.arange(-p, p + 1) * gs
    rr = np.hypot(c[:, None], c[None, :])
    k = probe_profile(semiangle, energy, rr, defocus=defocus, source_size=source_size)
    inside = rr <= radius
    k[~inside] = 0.0
    k = np.maximum(k, 0.0)
    # the truncated tail's power (1 − sum) goes back as a uniform pedestal over the kernel disc: charge is
    # conserved and the core (peak, ∫P²) is not inflated as it would be by a multiplicative renormalisation
    k[inside] += (1.0 - k.sum() * gs * gs) / (np.count_nonzero(inside) * gs * gs)
    return k


def local_fluence_peak(
    electrons: float,
    semiangle: float,
    energy: float,
    *,
    defocus: float = 0.0,
    source_size: float = 0.0,
) -> float:
    """Local fluence at the probe centre from one exposure, N·P(0).

    Parameters
    ----------
    electrons : float  [e]
        Electrons per pattern (see :func:`electrons_per_pattern`).
    semiangle : float  [mrad]
    energy : float  [eV]
    defocus : float  [Å]
    source_size : float  [Å]  (Gaussian FWHM)

    Returns
    -------
    float  [e/Å²]
        Peak local fluence of a single exposure; 6,242 e in a 2 mrad probe at 300 keV give 202 e/Å² (the
        mean over the Airy disc, N/(π r₀²), is 55 e/Å²).
    """
    n = check_positive("electrons", electrons, "e", allow_zero=True)
    return n * float(probe_profile(semiangle, energy, 0.0, defocus=defocus, source_size=source_size))


def effective_area(
    semiangle: float,
    energy: float,
    *,
    defocus: float = 0.0,
    source_size: float = 0.0,
) -> float:
    """Effective probe area 1/∫P² d²r: one exposure of N electrons gives the probe-weighted fluence N/A_eff.

    Parameters
    ----------
    semiangle : float  [mrad]
    energy : float  [eV]
    defocus : float  [Å]
    source_size : float  [Å]  (Gaussian FWHM)

    Returns
    -------
    float  [Å²]
        67.1 Å² for 2 mrad at 300 keV (Parseval: ∫P² d²r = ∫T² d²q, evaluated in Fourier space).
    """
    ka = _k_alpha(semiangle, energy)
    lam = wavelength(energy)
    df = check_finite("defocus", defocus, "Å")
    sigma = check_positive("source_size", source_size, "Å (FWHM)", allow_zero=True) / _FWHM_PER_SIGMA
    q, w = _hankel_nodes(ka, 64.0 / ka)
    t = _transfer(q, ka, lam, df, sigma)
    return 1.0 / float(2.0 * np.pi * np.sum(t * t * q * w))


# ----------------------------------------------------------------------------------------------------------
# Poisson exposure
# ----------------------------------------------------------------------------------------------------------
def expose(
    patterns: np.ndarray,
    electrons_per_pattern: float | np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    dose: float | np.ndarray | None = None,
    step: float | tuple[float, float] | None = None,
    chunk: int = 64,
) -> np.ndarray:
    """Poisson counts of electrons arriving on each pixel.

    Parameters
    ----------
    patterns : ndarray, shape (..., ny, nx)  [fraction of the incident beam per pixel]
        Noise-free patterns normalised to an incident intensity of 1 (each pattern sums to ≤ 1; the part
        scattered off the detector is simply missing). Relative intensities of float patterns are kept.
    electrons_per_pattern : float or ndarray  [e]
        Incident electrons per pattern; an array broadcasts against ``patterns.shape[:-2]`` (e.g. a
        fluctuating current). Give this *or* ``dose`` and ``step``.
    rng : numpy.random.Generator or int or None
        Random source (seeded runs repeat).
    dose : float or ndarray  [e/Å²]
        Scan fluence per pattern; converted with ``electrons = dose · step_y · step_x``.
    step : float or (float, float)  [Å]
        Scan step, required with ``dose``.
    chunk : int
        Patterns drawn per call (bounds memory). The Poisson stream is consumed element by element in C
        order, so the result does not depend on ``chunk`` for a given ``rng`` (tested).

    Returns
    -------
    ndarray of uint32, shape of ``patterns``  [counts]
        Poisson(patterns · electrons) per pixel.

    Raises
    ------
    ValueError
        Negative or non-finite intensities or doses, patterns summing to more than 1.02 of the incident
        beam (not normalised), or neither/both of ``electrons_per_pattern`` and ``dose``.
    """
    rng = np.random.default_rng(rng)
    p = np.asarray(patterns)
    if p.ndim < 2:
        raise ValueError(f"patterns: shape {p.shape} has no (ny, nx) detector axes")
    if not np.issubdtype(p.dtype, np.number) or np.iscomplexobj(p):
        raise TypeError(f"patterns: dtype {p.dtype} is not a real numeric array of intensities")
    if (electrons_per_pattern is None) == (dose is None):
        raise ValueError("give exactly one of electrons_per_pattern [e] or dose [e/Å²] (with step [Å])")
    if dose is not None:
        if step is None:
            raise ValueError("dose [e/Å²] needs step [Å] to convert to electrons per pattern")
        sy, sx = _steps(step)
        d = np.asarray(dose, dtype=float)
        if np.any(~np.isfinite(d)) or np.any(d < 0):
            raise ValueError(f"dose={dose!r}: must be finite and >= 0 [e/Å²]")
        n_e = d * sy * sx
    else:
        n_e = np.asarray(electrons_per_pattern, dtype=float)
        if np.any(~np.isfinite(n_e)) or np.any(n_e < 0):
            raise ValueError(f"electrons_per_pattern={electrons_per_pattern!r}: must be finite and >= 0 [e]")
    lead = p.shape[:-2]
    try:
        n_e = np.broadcast_to(n_e, lead)
    except ValueError:
        raise ValueError(
            f"electrons_per_pattern/dose of shape {np.shape(n_e)} does not broadcast to the pattern axes {lead}"
        ) from None
    if np.any(~np.isfinite(p)) or np.any(p < 0):
        raise ValueError("patterns: intensities must be finite and >= 0 (fraction of the incident beam)")
    sums = p.reshape(lead + (-1,)).sum(axis=-1)
    if np.any(sums > 1.02):
        raise ValueError(
            f"patterns: a pattern sums to {float(np.max(sums)):.4g} of the incident beam; normalise patterns to "
            "an incident intensity of 1 before exposing them"
        )
    flat = p.reshape((-1,) + p.shape[-2:])
    ne = n_e.reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint32)
    chunk = max(1, int(chunk))
    for s in range(0, flat.shape[0], chunk):
        lam = flat[s : s + chunk].astype(float) * ne[s : s + chunk, None, None]
        if np.any(lam > 4.0e9):
            raise ValueError("electrons_per_pattern: expected counts exceed the uint32 range (4e9) in a pixel")
        out[s : s + chunk] = rng.poisson(lam)
    return out.reshape(p.shape)


# ----------------------------------------------------------------------------------------------------------
# accumulated local fluence of a raster scan
# ----------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _causal_accumulate(rank, lattice, before, total):
    """For each scan position k: Σ_j lattice[r_k − r_j] over j exposed before k (``before``) and over all j.

    rank : (ny, nx) int64 acquisition index; lattice : (2ky+1, 2kx+1) float64, centre (ky, kx), symmetric.
    The centre term (own exposure) is excluded from ``before`` and included in ``total``.
    """
    ny, nx = rank.shape
    ky = (lattice.shape[0] - 1) // 2
    kx = (lattice.shape[1] - 1) // 2
    for i in range(ny):
        for j in range(nx):
            rk = rank[i, j]
            acc_b = 0.0
            acc_t = 0.0
            for di in range(max(-ky, -i), min(ky, ny - 1 - i) + 1):
                for dj in range(max(-kx, -j), min(kx, nx - 1 - j) + 1):
                    v = lattice[ky + di, kx + dj]
                    acc_t += v
                    if rank[i + di, j + dj] < rk:
                        acc_b += v
            before[i, j] = acc_b
            total[i, j] = acc_t


def scan_order(scan_shape: tuple[int, int], order: str = "raster") -> np.ndarray:
    """Acquisition index of each probe position within one pass.

    Parameters
    ----------
    scan_shape : (int, int)
        ``(scan_y, scan_x)`` positions; the fast axis is x.
    order : str
        ``"raster"`` (every row left to right, fly-back) or ``"serpentine"`` (odd rows right to left).

    Returns
    -------
    ndarray of int64, shape ``scan_shape``
    """
    ny, nx = _scan_shape(scan_shape)
    rank = np.arange(ny * nx, dtype=np.int64).reshape(ny, nx)
    if order == "serpentine":
        rank[1::2] = rank[1::2, ::-1]
    elif order != "raster":
        raise ValueError(f"order={order!r}: use 'raster' or 'serpentine'")
    return rank


def _scan_shape(scan_shape) -> tuple[int, int]:
    try:
        ny, nx = (int(s) for s in scan_shape)
    except (TypeError, ValueError):
        raise ValueError(f"scan_shape={scan_shape!r}: give (scan_y, scan_x) as two positive integers") from None
    if ny < 1 or nx < 1:
        raise ValueError(f"scan_shape={scan_shape!r}: both sizes must be >= 1")
    return ny, nx


def _grid_for(step: float, semiangle: float, energy: float, grid_step: float | None) -> tuple[float, int]:
    """Fine-grid spacing that divides the scan step: returns (grid_step [Å], step / grid_step)."""
    if grid_step is None:
        m = max(1, math.ceil(step / (0.9 * nyquist_step(semiangle, energy))))
        return step / m, m
    gs = check_positive("grid_step", grid_step, "Å")
    m = step / gs
    if abs(m - round(m)) > 1e-6 * max(1.0, m) or round(m) < 1:
        raise ValueError(f"grid_step={grid_step!r} Å must divide the scan step {step!r} Å an integer number of times")
    return step / round(m), int(round(m))


@dataclass(frozen=True, kw_only=True, eq=False)
class FluenceMap:
    """Local accumulated fluence of a raster scan (see :func:`accumulated_fluence_map`).

    Attributes
    ----------
    map : ndarray, shape (my, mx)  [e/Å²]
        Local fluence on the fine grid after all passes.
    grid_step : float  [Å]
        Spacing of ``map``.
    origin : (float, float)  [Å]
        (y, x) position of ``map[0, 0]`` relative to the first probe position (0, 0).
    positions : ndarray, shape (ny, nx, 2)  [Å]
        (y, x) of every probe position; position (i, j) is at ``map[pad + i·m, pad + j·m]``.
    order : ndarray of int64, shape (ny, nx)
        Acquisition index within one pass.
    before, after : ndarray, shape (passes, ny, nx)  [e/Å²]
        Probe-weighted local fluence ∫P(r − r_k) D(r) d²r received by the material seen by pattern k just
        before and just after its own exposure, for every pass.
    peak_before, peak_after : ndarray, shape (passes, ny, nx)  [e/Å²]
        The same at the probe centre r_k.
    single_exposure : float  [e/Å²]
        Probe-weighted fluence of one exposure, N·∫P² d²r = N / A_eff.
    scan_fluence : float  [e/Å²]
        Electrons per pattern / step area, per pass.
    electrons_per_pattern : float  [e]
    step : float  [Å]
    passes : int
    truncation_radius : float  [Å]
        Kernel cut (enclosed power = ``power_fraction``).
    power_fraction : float
    """

    map: np.ndarray
    grid_step: float
    origin: tuple[float, float]
    positions: np.ndarray
    order: np.ndarray
    before: np.ndarray
    after: np.ndarray
    peak_before: np.ndarray
    peak_after: np.ndarray
    single_exposure: float
    scan_fluence: float
    electrons_per_pattern: float
    step: float
    passes: int
    truncation_radius: float
    power_fraction: float

    @property
    def during(self) -> np.ndarray:
        """Probe-weighted fluence averaged over each exposure, (before + after) / 2, shape (passes, ny, nx) [e/Å²]."""
        return 0.5 * (self.before + self.after)


def _lattice_tables(kernel: np.ndarray, m: int, gs: float) -> tuple[np.ndarray, np.ndarray]:
    """Probe value P and probe autocorrelation A = P ⋆ P at the scan-lattice offsets (multiples of m pixels)."""
    p = (kernel.shape[0] - 1) // 2
    kl = p // m
    idx = p + m * np.arange(-kl, kl + 1)
    centre = kernel[np.ix_(idx, idx)]
    auto = signal.fftconvolve(kernel, kernel[::-1, ::-1], mode="full") * gs * gs  # centre at (2p, 2p)
    ka = (2 * p) // m
    idx2 = 2 * p + m * np.arange(-ka, ka + 1)
    weighted = np.maximum(auto[np.ix_(idx2, idx2)], 0.0)
    return centre, weighted


@lru_cache(maxsize=32)
def _kernel_tables(semiangle, energy, step, grid_step, power_fraction, defocus, source_size):
    gs, m = _grid_for(step, semiangle, energy, grid_step)
    kernel = probe_kernel(
        semiangle, energy, gs, power_fraction=power_fraction, defocus=defocus, source_size=source_size
    )
    centre, weighted = _lattice_tables(kernel, m, gs)
    return gs, m, kernel, centre, weighted


def accumulated_fluence_map(
    scan_shape: tuple[int, int],
    step: float,
    semiangle: float,
    energy: float,
    electrons_per_pattern: float,
    *,
    order: str = "raster",
    passes: int = 1,
    grid_step: float | None = None,
    power_fraction: float = 0.999,
    defocus: float = 0.0,
    source_size: float = 0.0,
) -> FluenceMap:
    """Local accumulated fluence of a raster scan, as a map and as the history at each probe position.

    The total map is the FFT convolution of the (truncated, renormalised) probe kernel with the scan's point
    pattern. The history uses the scan lattice: probe value P and autocorrelation A = P ⋆ P at lattice
    offsets, summed over the positions exposed earlier (a causal sum, numba kernel), so damage at pattern k
    depends on positions 0..k only. Repeated passes add the full single-pass total.

    Parameters
    ----------
    scan_shape : (int, int)
        ``(scan_y, scan_x)`` probe positions; x is the fast axis.
    step : float  [Å]
        Scan step (square lattice).
    semiangle : float  [mrad]
    energy : float  [eV]
    electrons_per_pattern : float  [e]
        Electrons per exposure (:func:`electrons_per_pattern`).
    order : str
        ``"raster"`` or ``"serpentine"``.
    passes : int
        Number of identical passes over the area (>= 1).
    grid_step : float or None  [Å]
        Fine-grid spacing; must divide ``step``. Default: the largest step/m below 0.9 λ/(4α) (Nyquist), so
        that the sampled probe sums to its integral.
    power_fraction : float
        Kernel truncation (enclosed probe power), default 0.999.
    defocus : float  [Å]
    source_size : float  [Å]  (Gaussian FWHM)

    Returns
    -------
    FluenceMap
        Conservation: ``map.sum() * grid_step**2 == electrons_per_pattern * ny * nx * passes``; away from the
        edges (farther than the truncation radius) the mean of the map over a unit cell equals
        ``scan_fluence * passes``.
    """
    ny, nx = _scan_shape(scan_shape)
    s = check_positive("step", step, "Å")
    n_e = check_positive("electrons_per_pattern", electrons_per_pattern, "e", allow_zero=True)
    if int(passes) != passes or passes < 1:
        raise ValueError(f"passes={passes!r}: must be an integer >= 1")
    passes = int(passes)
    check_in_range("power_fraction", power_fraction, 0.0, 1.0, "fraction", low_open=True, high_open=True)
    rank = scan_order((ny, nx), order)
    gs, m, kernel, centre, weighted = _kernel_tables(
        float(semiangle), float(energy), s, None if grid_step is None else float(grid_step),
        float(power_fraction), float(defocus), float(source_size),
    )  # fmt: skip
    p = (kernel.shape[0] - 1) // 2
    pts = np.zeros(((ny - 1) * m + 1, (nx - 1) * m + 1))
    pts[::m, ::m] = 1.0
    fmap = signal.fftconvolve(pts, kernel, mode="full") * (n_e * passes)
    fmap = np.maximum(fmap, 0.0)  # FFT round-off

    def history(table):
        b = np.empty((ny, nx))
        t = np.empty((ny, nx))
        _causal_accumulate(rank, np.ascontiguousarray(table * n_e), b, t)
        own = table[(table.shape[0] - 1) // 2, (table.shape[1] - 1) // 2] * n_e
        k = np.arange(passes)[:, None, None]
        before = k * t[None] + b[None]
        return before, before + own, own

    before, after, own = history(weighted)
    pk_before, pk_after, _ = history(centre)
    iy, ix = np.indices((ny, nx), dtype=float)
    radius = probe_radius(semiangle, energy, power_fraction=power_fraction, defocus=defocus, source_size=source_size)
    return FluenceMap(
        map=fmap,
        grid_step=gs,
        origin=(-p * gs, -p * gs),
        positions=np.stack([iy * s, ix * s], axis=-1),
        order=rank,
        before=before,
        after=after,
        peak_before=pk_before,
        peak_after=pk_after,
        single_exposure=float(own),
        scan_fluence=n_e / (s * s),
        electrons_per_pattern=n_e,
        step=s,
        passes=passes,
        truncation_radius=radius,
        power_fraction=float(power_fraction),
    )


def local_to_scan_ratio(
    semiangle: float,
    energy: float,
    step: float,
    *,
    defocus: float = 0.0,
    source_size: float = 0.0,
) -> float:
    """Probe-weighted local fluence per unit scan fluence in the interior of an infinite raster, κ.

    κ = step² Σ_lattice A(d) with A = P ⋆ P, evaluated exactly by Poisson summation in Fourier space:
    κ = Σ_G T(|G|)² over the scan's reciprocal lattice G = (i, j)/step, T the probe's transfer function
    (zero beyond 2α/λ, so the sum is finite and needs no truncation). κ ≈ step²/A_eff when the step is much
    larger than the probe (≈ 24 for 2 mrad at 300 keV and a 40 Å step) and exactly 1 when the step is below
    λ/(2α) (only G = 0 contributes; 0.15 mrad with a 40 Å step).

    Parameters
    ----------
    semiangle : float  [mrad]
    energy : float  [eV]
    step : float  [Å]
    defocus : float  [Å]
    source_size : float  [Å]  (Gaussian FWHM)

    Returns
    -------
    float  [dimensionless]
        Probe-weighted local accumulated fluence / scan fluence (per pass, scan order irrelevant).
    """
    s = check_positive("step", step, "Å")
    ka = _k_alpha(semiangle, energy)
    df = check_finite("defocus", defocus, "Å")
    sigma = check_positive("source_size", source_size, "Å (FWHM)", allow_zero=True) / _FWHM_PER_SIGMA
    n = int(math.floor(2.0 * ka * s))
    i = np.arange(-n, n + 1)
    g = np.hypot(i[:, None], i[None, :]).ravel() / s
    g = g[g < 2.0 * ka]
    t = _transfer(g, ka, wavelength(energy), df, sigma)
    return float(np.sum(t * t))
