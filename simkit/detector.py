"""Detector response: counting (Medipix3/Merlin-like) and integrating (EMPAD-like) pixel detectors.

Two entry points, one per kind of input:

* :func:`detect` takes the **expected** number of electrons per pixel (e.g. ``patterns × electrons``) and
  draws the arrivals itself, in the physically right order for the detector kind;
* :func:`apply` takes electron **counts** that already carry Poisson noise (e.g. from
  :func:`simkit.dose.expose`) and adds the detector's response.

Order of operations and why
---------------------------
Counting detectors register each electron at most once, in one pixel chosen by where its charge cloud
lands (charge sharing). If every electron is counted in a pixel drawn independently from the point-spread
function (PSF), the counts in each pixel are again independent Poisson variables whose mean is the
PSF-blurred expected intensity (Poisson thinning/superposition). So :func:`detect` blurs the *expected*
intensity and then draws Poisson counts; this is exact for that model and keeps counting statistics
(variance = mean), which blurring the counts would destroy. :func:`apply` reaches the same distribution from
counts by moving each count to a neighbour drawn from the PSF (multinomial redistribution). Dead time then
removes counts (binomial thinning with the survival fraction m/n of the chosen model, which keeps the mean
exact; the true dead-time process is slightly sub-Poissonian, which this ignores), the counter saturates at
2^bits − 1, dead pixels read 0 and hot pixels read the saturation value.

Integrating detectors measure deposited charge: every arriving electron (Poisson) spreads its signal
deterministically over neighbouring pixels, so the blur acts *after* the Poisson draw and makes the noise
spatially correlated (variance = gain² λ Σ K² instead of gain² λ). Then gain [counts/e] with an optional
per-electron gain spread (Landau-like energy deposition, as a relative rms), dark offset, Gaussian read noise
[counts rms] and saturation at ``full_scale``. No per-event dead time.

Presets carry their sources or stated assumptions: :func:`medipix_merlin` and :func:`empad`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from structures.checks import check_finite, check_positive

__all__ = [
    "DetectorModel",
    "apply",
    "dead_time_correct",
    "dead_time_response",
    "defect_masks",
    "detect",
    "empad",
    "medipix_merlin",
    "psf_kernel",
    "saturation_value",
]

_KINDS = ("counting", "integrating")
#: Patterns processed per block by detect/apply (fixed: seeded results must not depend on memory settings).
_CHUNK = 64
_DEAD_TIME_MODELS = ("paralysable", "non-paralysable")


@dataclass(frozen=True, kw_only=True)
class DetectorModel:
    """Response of a pixelated electron detector.

    Parameters
    ----------
    kind : str
        ``"counting"`` (threshold counting, no read noise) or ``"integrating"`` (charge integrating).
    name : str
        Free label, e.g. ``"Medipix3/Merlin 12-bit"``.
    shape : tuple of int or None  [px]
        Detector ``(ny, nx)``; ``None`` accepts any pattern shape. When set, patterns must match it.
    pixel_pitch : float  [µm]
        Physical pixel size (for ``DetectorGeometry.from_camera``; not used by the response itself).
    bit_depth : int
        Counting: counter depth, counts saturate at 2^bit_depth − 1 (1 ≤ bits ≤ 32).
        Integrating: ignored (see ``full_scale``).
    full_scale : float or None  [counts]
        Integrating: largest recordable value (saturation); ``None`` = no saturation.
    frame_time : float  [s]
        Exposure per frame (the dwell time per probe position); converts counts to rates for dead time.
    dead_time : float  [s]
        Counting: per-event dead time τ (0 = ideal counter).
    dead_time_model : str
        ``"paralysable"`` (m = n e^{−nτ}) or ``"non-paralysable"`` (m = n / (1 + nτ)); m, n [1/s].
    psf_sigma : float  [px]
        Standard deviation of a Gaussian charge-sharing PSF (MTF(f) = exp(−2π² σ² f²), f [cycles/px]).
    mtf : tuple of float or None
        Measured-like MTF sampled at equally spaced frequencies from 0 to Nyquist (0.5 cycles/px),
        ``mtf[0] == 1``; replaces the Gaussian when given. Its PSF (inverse transform, negative lobes
        clipped, renormalised) is used.
    dead_fraction, hot_fraction : float
        Fractions of dead (read 0) and hot (read saturation) pixels, each in [0, 1], sum ≤ 1.
    defect_seed : int
        Seed of the defect positions: the same seed gives the same dead/hot pixels on every frame and call
        (they are a property of the detector, not of the exposure ``rng``).
    gain : float  [counts/e]
        Integrating: mean signal per primary electron.
    gain_spread : float  [relative rms]
        Integrating: rms of a single electron's signal relative to ``gain`` (energy-deposition straggling).
    read_noise : float  [counts rms]
        Integrating: Gaussian read noise per pixel and frame.
    dark_offset : float  [counts]
        Integrating: constant dark level added to every pixel.
    """

    kind: str = "counting"
    name: str = ""
    shape: tuple[int, int] | None = None
    pixel_pitch: float = 55.0
    bit_depth: int = 12
    full_scale: float | None = None
    frame_time: float = 1e-3
    dead_time: float = 0.0
    dead_time_model: str = "paralysable"
    psf_sigma: float = 0.0
    mtf: tuple[float, ...] | None = None
    dead_fraction: float = 0.0
    hot_fraction: float = 0.0
    defect_seed: int = 0
    gain: float = 1.0
    gain_spread: float = 0.0
    read_noise: float = 0.0
    dark_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind={self.kind!r}: use 'counting' or 'integrating'")
        if self.shape is not None:
            try:
                shape = tuple(int(s) for s in self.shape)
            except (TypeError, ValueError):
                raise ValueError(f"shape={self.shape!r}: give (ny, nx) [px] or None") from None
            if len(shape) != 2 or min(shape) < 1:
                raise ValueError(f"shape={self.shape!r}: give (ny, nx) with ny, nx >= 1 [px] or None")
            object.__setattr__(self, "shape", shape)
        if isinstance(self.bit_depth, bool) or int(self.bit_depth) != self.bit_depth:
            raise TypeError(f"bit_depth={self.bit_depth!r}: must be an integer number of bits")
        if not 1 <= int(self.bit_depth) <= 32:
            raise ValueError(f"bit_depth={self.bit_depth!r}: must be between 1 and 32 bits")
        object.__setattr__(self, "bit_depth", int(self.bit_depth))
        _check(self, "pixel_pitch", positive=True)
        _check(self, "frame_time", positive=True)
        for name in ("dead_time", "psf_sigma", "gain_spread", "read_noise"):
            _check(self, name)
        _check(self, "dark_offset", allow_negative=True)
        _check(self, "gain", positive=True)
        if self.full_scale is not None:
            _check(self, "full_scale", positive=True)
        if self.dead_time_model not in _DEAD_TIME_MODELS:
            raise ValueError(f"dead_time_model={self.dead_time_model!r}: use 'paralysable' or 'non-paralysable'")
        for name in ("dead_fraction", "hot_fraction"):
            v = getattr(self, name)
            if not np.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}: must be a fraction in [0, 1]")
        if self.dead_fraction + self.hot_fraction > 1.0:
            raise ValueError(
                f"dead_fraction + hot_fraction = {self.dead_fraction + self.hot_fraction!r}: must not exceed 1"
            )
        if self.kind == "integrating" and self.dead_time > 0:
            raise ValueError(f"dead_time={self.dead_time!r}: integrating detectors have no per-event dead time; use 0")
        if self.mtf is not None:
            m = tuple(float(x) for x in self.mtf)
            if len(m) < 2 or abs(m[0] - 1.0) > 1e-9 or any((not np.isfinite(x)) or x < 0 or x > 1 for x in m):
                raise ValueError(f"mtf={self.mtf!r}: give >= 2 values in [0, 1] from f = 0 (value 1) to Nyquist")
            object.__setattr__(self, "mtf", m)


def _check(model, name, *, positive=False, allow_negative=False):
    v = getattr(model, name)
    if allow_negative:
        f = check_finite(name, v)
    else:
        f = check_positive(name, v, allow_zero=not positive)
    object.__setattr__(model, name, f)


# ----------------------------------------------------------------------------------------------------------
# presets
# ----------------------------------------------------------------------------------------------------------
def medipix_merlin(*, bit_depth: int = 12, frame_time: float = 1e-3, **overrides) -> DetectorModel:
    """A Medipix3-based counting detector (Quantum Detectors Merlin for EM), single-pixel mode.

    Parameters
    ----------
    bit_depth : int
        Counter depth: 1, 6, 12 (default) or 24 bits (Merlin's modes; 24 bit joins the pixel's two 12-bit
        counters). Saturation at 2^bits − 1 counts.
    frame_time : float  [s]
        Exposure per frame (dwell time).
    **overrides
        Any other :class:`DetectorModel` field.

    Returns
    -------
    DetectorModel

    Notes
    -----
    Sources and assumptions:

    * 256 × 256 pixels of 55 µm, two 12-bit counters per pixel that can be combined into 24 bits (CERN
      Medipix3 chip specification; Quantum Detectors Merlin for EM product description, which quotes
      1 : 16.7 million intensity range at 24 bits and zero read noise thanks to threshold discrimination).
    * Dead time: 1 µs, paralysable — *assumption*. The Medipix3 front end discharges at constant current,
      so a 300 keV electron's large charge keeps the pulse above threshold for of order a microsecond and
      overlapping pulses extend each other (paralysable pile-up); counting becomes non-linear above
      ~1e5 e/pixel/s, i.e. ~100 e/pixel in a 1 ms frame. Replace with a measured value for a real camera.
    * Charge sharing: Gaussian PSF with σ = 0.6 px (MTF at Nyquist exp(−π²σ²/2) ≈ 0.17) — *assumption*
      for 300 keV electrons in a 300–500 µm Si sensor with 55 µm pixels, where electron tracks span several
      pixels; use ``mtf=`` with a measured curve when available.
    * Defects: none by default (set ``dead_fraction``/``hot_fraction``).
    """
    if bit_depth not in (1, 6, 12, 24):
        raise ValueError(f"bit_depth={bit_depth!r}: the Merlin counter modes are 1, 6, 12 or 24 bits")
    kw = dict(
        kind="counting",
        name=f"Medipix3/Merlin {bit_depth}-bit",
        shape=(256, 256),
        pixel_pitch=55.0,
        bit_depth=bit_depth,
        frame_time=frame_time,
        dead_time=1e-6,
        dead_time_model="paralysable",
        psf_sigma=0.6,
    )
    kw.update(overrides)
    return DetectorModel(**kw)


def empad(*, frame_time: float = 1e-3, **overrides) -> DetectorModel:
    """An EMPAD-like charge-integrating pixel array detector.

    Parameters
    ----------
    frame_time : float  [s]
        Exposure per frame (EMPAD frames at up to 1.1 kHz, ≈ 0.86 ms exposure + readout).
    **overrides
        Any other :class:`DetectorModel` field.

    Returns
    -------
    DetectorModel
        Output in counts calibrated to one count per 300 keV primary electron (``gain = 1``).

    Notes
    -----
    Sources and assumptions:

    * 128 × 128 pixels of 150 µm on a 500 µm Si sensor, 1,000,000 : 1 dynamic range per frame with
      single-electron sensitivity, 1.1 kHz frame rate (Tate et al., Microsc. Microanal. 22, 237 (2016),
      arXiv:1511.03539). Saturation is therefore set at ``full_scale = 1e6`` electrons.
    * Read noise 0.02 e rms — *assumption* consistent with "single-electron sensitivity" (a single electron
      stands ≫ 10 σ above the noise); dark offset 0 (dark-subtracted output, as usually recorded).
    * Gain spread 0.1 (relative rms per electron) — *assumption* for energy-deposition straggling of
      300 keV electrons that are not fully stopped.
    * Charge spreading: Gaussian PSF σ = 0.3 px — *assumption*: the 150 µm pixels are large compared with
      the lateral charge spread, so most of an electron's signal stays in one pixel.
    """
    kw = dict(
        kind="integrating",
        name="EMPAD-like integrating PAD",
        shape=(128, 128),
        pixel_pitch=150.0,
        bit_depth=32,
        full_scale=1e6,
        frame_time=frame_time,
        psf_sigma=0.3,
        gain=1.0,
        gain_spread=0.1,
        read_noise=0.02,
        dark_offset=0.0,
    )
    kw.update(overrides)
    return DetectorModel(**kw)


# ----------------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------------
def saturation_value(model: DetectorModel) -> float:
    """Largest value the detector can record.

    Parameters
    ----------
    model : DetectorModel

    Returns
    -------
    float  [counts]
        2^bit_depth − 1 for counting detectors; ``full_scale`` (or +inf) for integrating ones.
    """
    if model.kind == "counting":
        return float(2**model.bit_depth - 1)
    return math.inf if model.full_scale is None else float(model.full_scale)


def dead_time_response(rate: float | np.ndarray, dead_time: float, model: str = "paralysable") -> np.ndarray:
    """Registered count rate for a true Poisson rate, the classical dead-time models.

    Parameters
    ----------
    rate : float or ndarray  [1/s]
        True event rate n >= 0.
    dead_time : float  [s]
        τ >= 0.
    model : str
        ``"paralysable"``: m = n e^{−nτ}; ``"non-paralysable"``: m = n / (1 + nτ).

    Returns
    -------
    ndarray  [1/s]
        Registered rate m.
    """
    n = np.asarray(rate, dtype=float)
    if np.any(~np.isfinite(n)) or np.any(n < 0):
        raise ValueError("rate: must be finite and >= 0 [1/s]")
    tau = float(dead_time)
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"dead_time={dead_time!r}: must be finite and >= 0 [s]")
    if model == "paralysable":
        return n * np.exp(-n * tau)
    if model == "non-paralysable":
        return n / (1.0 + n * tau)
    raise ValueError(f"model={model!r}: use 'paralysable' or 'non-paralysable'")


def dead_time_correct(measured: float | np.ndarray, dead_time: float, model: str = "paralysable") -> np.ndarray:
    """Invert :func:`dead_time_response`: the true rate from a registered rate.

    Parameters
    ----------
    measured : float or ndarray  [1/s]
        Registered rate m >= 0 (paralysable: m ≤ 1/(e τ), the maximum of the response).
    dead_time : float  [s]
    model : str
        ``"paralysable"`` (lower branch, n = −W₀(−mτ)/τ with Lambert's W) or ``"non-paralysable"``
        (n = m / (1 − mτ), requires mτ < 1).

    Returns
    -------
    ndarray  [1/s]
    """
    m = np.asarray(measured, dtype=float)
    tau = float(dead_time)
    if np.any(~np.isfinite(m)) or np.any(m < 0):
        raise ValueError("measured: must be finite and >= 0 [1/s]")
    if tau == 0:
        return m.copy()
    if model == "paralysable":
        if np.any(m * tau > 1 / np.e + 1e-12):
            raise ValueError("measured: above the paralysable maximum 1/(e·dead_time); no true rate gives it")
        return -np.real(special.lambertw(-np.minimum(m * tau, 1 / np.e), 0)) / tau
    if model == "non-paralysable":
        if np.any(m * tau >= 1):
            raise ValueError("measured: m·dead_time must be < 1 for a non-paralysable counter")
        return m / (1.0 - m * tau)
    raise ValueError(f"model={model!r}: use 'paralysable' or 'non-paralysable'")


def defect_masks(model: DetectorModel, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dead and hot pixel masks, fixed by ``model.defect_seed``.

    Parameters
    ----------
    model : DetectorModel
    shape : (int, int) or None  [px]
        Detector shape; defaults to ``model.shape``.

    Returns
    -------
    dead, hot : ndarray of bool, shape ``shape``
        Exactly round(f · n_pixels) pixels of each kind, disjoint, at positions drawn from
        ``numpy.random.default_rng(model.defect_seed)``.
    """
    shape = model.shape if shape is None else tuple(int(s) for s in shape)
    if shape is None:
        raise ValueError("shape: the model has no shape; give the detector shape (ny, nx) [px]")
    n = int(shape[0] * shape[1])
    n_dead = int(round(model.dead_fraction * n))
    n_hot = min(int(round(model.hot_fraction * n)), n - n_dead)
    perm = np.random.default_rng(model.defect_seed).permutation(n)
    dead = np.zeros(n, bool)
    hot = np.zeros(n, bool)
    dead[perm[:n_dead]] = True
    hot[perm[n_dead : n_dead + n_hot]] = True
    return dead.reshape(shape), hot.reshape(shape)


def psf_kernel(model: DetectorModel) -> np.ndarray:
    """The charge-sharing PSF as a small normalised, non-negative kernel (odd size, centre in the middle).

    Parameters
    ----------
    model : DetectorModel

    Returns
    -------
    ndarray  [fraction per px]
        Sums to 1; ``[[1.0]]`` when there is no blur. Gaussian: sampled over ±4σ (pixel-integrated with
        the error function). Tabulated MTF: 2-D inverse transform of the radially interpolated MTF on a 32 px
        grid, negative lobes clipped.
    """
    if model.mtf is not None:
        n = 32
        f = np.fft.fftfreq(n)
        fr = np.hypot(f[:, None], f[None, :])
        tab_f = np.linspace(0.0, 0.5, len(model.mtf))
        mtf2 = np.interp(fr, tab_f, np.asarray(model.mtf), right=model.mtf[-1])
        k = np.fft.fftshift(np.real(np.fft.ifft2(mtf2)))
        k = np.maximum(k, 0.0)
        # crop to where the kernel holds 99.9 % of its weight
        c = n // 2
        for h in range(1, c):
            if k[c - h : c + h + 1, c - h : c + h + 1].sum() >= 0.999 * k.sum():
                k = k[c - h : c + h + 1, c - h : c + h + 1]
                break
        return k / k.sum()
    s = model.psf_sigma
    if s <= 0:
        return np.ones((1, 1))
    h = max(1, int(math.ceil(4 * s)))
    edges = (np.arange(-h, h + 2) - 0.5) / (s * math.sqrt(2.0))
    w1 = np.diff(special.erf(edges)) / 2.0
    k = np.outer(w1, w1)
    return k / k.sum()


def _blur(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve the last two axes with the PSF; charge spreading beyond the detector edge is lost."""
    if kernel.shape == (1, 1):
        return images.astype(float, copy=True)
    wy, wx = kernel.sum(axis=1), kernel.sum(axis=0)
    if np.allclose(kernel, np.outer(wy, wx), rtol=0, atol=1e-12):  # separable (Gaussian): two 1-D passes
        out = ndimage.convolve1d(images.astype(float), wy, axis=-2, mode="constant", cval=0.0)
        return ndimage.convolve1d(out, wx, axis=-1, mode="constant", cval=0.0)
    full = np.zeros((1,) * (images.ndim - 2) + kernel.shape)
    full[...] = kernel
    return ndimage.convolve(images.astype(float), full, mode="constant", cval=0.0)


def _check_shape(data: np.ndarray, model: DetectorModel, name: str) -> None:
    if data.ndim < 2:
        raise ValueError(f"{name}: shape {data.shape} has no (ny, nx) detector axes")
    if model.shape is not None and tuple(data.shape[-2:]) != model.shape:
        raise ValueError(
            f"{name}: detector axes {tuple(data.shape[-2:])} do not match the model's shape {model.shape} [px]"
        )


def _survival(rate: np.ndarray, model: DetectorModel) -> np.ndarray:
    if model.dead_time == 0:
        return np.ones_like(rate)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = dead_time_response(rate, model.dead_time, model.dead_time_model)
        return np.where(rate > 0, m / np.where(rate > 0, rate, 1.0), 1.0)


def _finish_counting(counts: np.ndarray, model: DetectorModel) -> np.ndarray:
    dead, hot = defect_masks(model, counts.shape[-2:])
    sat = saturation_value(model)
    out = np.minimum(counts, sat).astype(np.uint32)
    out[..., hot] = np.uint32(sat)
    out[..., dead] = 0
    return out


def _finish_integrating(signal: np.ndarray, model: DetectorModel, rng: np.random.Generator) -> np.ndarray:
    out = signal + model.dark_offset
    if model.read_noise > 0:
        out = out + rng.normal(0.0, model.read_noise, size=out.shape)
    sat = saturation_value(model)
    out = np.minimum(out, sat)
    dead, hot = defect_masks(model, out.shape[-2:])
    out[..., hot] = sat if np.isfinite(sat) else np.finfo(np.float32).max
    out[..., dead] = 0.0
    return out.astype(np.float32)


def _integrating_signal(n: np.ndarray, model: DetectorModel, rng: np.random.Generator) -> np.ndarray:
    """Gain (with per-electron spread: the sum of n signals has rms gain·spread·sqrt(n)), then charge spread."""
    s = n.astype(float) * model.gain
    if model.gain_spread > 0:
        s = s + rng.normal(0.0, 1.0, size=s.shape) * (model.gain * model.gain_spread) * np.sqrt(n)
        s = np.maximum(s, 0.0)
    return _blur(s, psf_kernel(model))


# ----------------------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------------------
def detect(
    expected_electrons: np.ndarray, model: DetectorModel, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Record noise-free expected intensities: arrivals (Poisson) and detector response in the right order.

    Parameters
    ----------
    expected_electrons : ndarray, shape (..., ny, nx)  [e per pixel per frame]
        Mean number of electrons arriving on each pixel during one frame (``model.frame_time``).
    model : DetectorModel
    rng : numpy.random.Generator or int or None

    Returns
    -------
    ndarray, shape of the input
        Counting: uint32 counts (blurred expectation → Poisson → dead-time thinning with the survival
        fraction at the expected rate → saturation → hot/dead pixels). Integrating: float32 [counts]
        (Poisson arrivals → gain and spread → charge blur → offset, read noise, saturation, defects).
    """
    rng = np.random.default_rng(rng)
    lam_all = np.asarray(expected_electrons)
    _check_shape(lam_all, model, "expected_electrons")

    def run(block):
        lam = _check_intensity(block, "expected_electrons")
        if model.kind == "counting":
            lam_b = np.maximum(_blur(lam, psf_kernel(model)), 0.0)
            n = rng.poisson(lam_b)
            if model.dead_time > 0:
                n = rng.binomial(n, _survival(lam_b / model.frame_time, model))
            return _finish_counting(n, model)
        return _finish_integrating(_integrating_signal(rng.poisson(lam), model, rng), model, rng)

    return _chunked(lam_all, run, model)


def _chunked(data: np.ndarray, run, model: DetectorModel) -> np.ndarray:
    """Apply ``run`` to blocks of ``_CHUNK`` patterns (bounded memory; fixed block size keeps seeded runs
    reproducible) and assemble the output."""
    flat = data.reshape((-1,) + data.shape[-2:])
    out = np.empty(flat.shape, dtype=np.uint32 if model.kind == "counting" else np.float32)
    for s in range(0, flat.shape[0], _CHUNK):
        out[s : s + _CHUNK] = run(flat[s : s + _CHUNK])
    return out.reshape(data.shape)


def apply(
    electron_counts: np.ndarray, model: DetectorModel, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Detector response for electron counts that already carry Poisson noise (e.g. ``dose.expose``).

    Parameters
    ----------
    electron_counts : ndarray of int, shape (..., ny, nx)  [e per pixel per frame]
        Electrons that arrived on each pixel during one frame.
    model : DetectorModel
    rng : numpy.random.Generator or int or None

    Returns
    -------
    ndarray, shape of the input
        Counting: uint32 counts. Each count moves to a pixel drawn from the PSF (multinomial: the same
        distribution as blurring the expectation before Poisson), then dead-time thinning with the survival
        fraction at the observed rate, saturation, hot/dead pixels. Integrating: float32 [counts], exactly
        as in :func:`detect` after the Poisson draw.
    """
    rng = np.random.default_rng(rng)
    c_all = np.asarray(electron_counts)
    if not np.issubdtype(c_all.dtype, np.integer):
        if not np.issubdtype(c_all.dtype, np.floating) or np.any(c_all != np.round(c_all)):
            raise TypeError(
                f"electron_counts: dtype {c_all.dtype} is not integer counts; use detect() for expectations"
            )
    _check_shape(c_all, model, "electron_counts")
    kernel = psf_kernel(model)

    def run(block):
        c = _check_intensity(block, "electron_counts").astype(np.int64)
        if model.kind == "integrating":
            return _finish_integrating(_integrating_signal(c, model, rng), model, rng)
        if kernel.shape != (1, 1):
            c = _redistribute(c, kernel, rng)
        if model.dead_time > 0:
            c = rng.binomial(c, _survival(c / model.frame_time, model))
        return _finish_counting(c, model)

    return _chunked(c_all, run, model)


def _redistribute(counts: np.ndarray, kernel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move every count to a neighbouring pixel drawn from the kernel (counts falling off the edge are lost).

    Each electron is assigned independently (one categorical draw per electron, or a multinomial per pixel when
    a block holds more than 2e7 electrons); both give the same distribution."""
    ky, kx = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
    ny, nx = counts.shape[-2:]
    flat = counts.reshape(-1, ny, nx)
    pvals = kernel.ravel() / kernel.sum()
    off_y = np.repeat(np.arange(-ky, ky + 1), kernel.shape[1])
    off_x = np.tile(np.arange(-kx, kx + 1), kernel.shape[0])
    f, iy, ix = np.nonzero(flat)
    n = flat[f, iy, ix]
    if n.sum() <= 2e7:
        f, iy, ix = np.repeat(f, n), np.repeat(iy, n), np.repeat(ix, n)
        o = rng.choice(pvals.size, size=f.size, p=pvals)
        ty, tx = iy + off_y[o], ix + off_x[o]
        ok = (ty >= 0) & (ty < ny) & (tx >= 0) & (tx < nx)
        idx = (f[ok] * ny + ty[ok]) * nx + tx[ok]
        return np.bincount(idx, minlength=flat.size).astype(np.int64).reshape(counts.shape)
    moved = rng.multinomial(n, pvals)  # (n_nonzero, n_offsets)
    out = np.zeros(flat.size, dtype=np.int64)
    for o in range(pvals.size):
        ty, tx = iy + off_y[o], ix + off_x[o]
        ok = (ty >= 0) & (ty < ny) & (tx >= 0) & (tx < nx)
        out += np.bincount((f[ok] * ny + ty[ok]) * nx + tx[ok], weights=moved[ok, o], minlength=out.size).astype(
            np.int64
        )
    return out.reshape(counts.shape)


def _check_intensity(data, name: str) -> np.ndarray:
    a = np.asarray(data)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise TypeError(f"{name}: dtype {a.dtype} is not a real numeric array")
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name}: values must be finite and >= 0 [e per pixel]")
    return a
