"""SRO peak-position maps, Gaussian-mixture histograms and layer profiles (the study's Figure 2e–h numbers).

* :func:`sro_peak_map` — per-pixel position [Å⁻¹] of the SRO peak with its uncertainty, amplitude and width,
  using the project's SRO estimator ``simkit.peak_estimator.sro_peak_position`` (a peak + constant background fitted
  to I·Qⁿ, n = 1, in a window centred on the peak; also the ground truth of ``simkit.synth``) on radial profiles
  from ``simkit.radial``. ``method="local"`` gives a fixed-window peak + linear-background fit
  (``simkit.peak_estimator.peak_position``), which fails for about half of the pixels on 2 mrad SRO humps at 10⁵
  e/pattern (its linear background is degenerate with the position of a hump as broad as the window).
* :func:`fit_histogram` — a 1–3 component Gaussian mixture of map values (number of components by BIC),
  fitted by expectation–maximisation in NumPy (optionally weighted, e.g. by 1/σ²) — "mean 0.33, std 0.019".
* :func:`erf_layer_fit` — thickness of a layer from a profile across it (two error-function edges), with the
  uncertainty from the fit covariance.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from simkit.peak_estimator import peak_position, sro_peak_position, sro_width, sro_window
from simkit.results import ResultMixin, no_stderr
from structures.checks import check_positive

__all__ = ["GaussianMixture", "LayerFit", "PeakMap", "erf_layer_fit", "fit_histogram", "sro_peak_map"]

#: Default SRO search range [Å⁻¹]: holds Type 1 (≈ 0.33), Type 2 (≈ 0.295) and electrolyte (≈ 0.285) peaks.
SRO_RANGE = (0.22, 0.42)


@dataclass(frozen=True, kw_only=True, eq=False)
class PeakMap(ResultMixin):
    """Per-pixel SRO peak maps (NaN where the fit failed, see ``ok``).

    Attributes
    ----------
    position, position_err : ndarray (sy, sx)  [Å⁻¹]
    amplitude : ndarray (sy, sx)  [I·Qⁿ units]
    width : ndarray (sy, sx)  [Å⁻¹]
    ok : ndarray of bool (sy, sx)
    q_range : tuple of float  [Å⁻¹]
    n : float
    """

    position: np.ndarray
    position_err: np.ndarray
    amplitude: np.ndarray
    width: np.ndarray
    ok: np.ndarray
    q_range: tuple[float, float]
    n: float

    _units = {"position": "Å⁻¹", "width": "Å⁻¹", "amplitude": "I·Qⁿ"}

    @property
    def message(self) -> str:
        """How many pixels gave a peak."""
        lo, hi = self.q_range
        return f"SRO peak in {lo:.3f}–{hi:.3f} Å⁻¹ at {int(self.ok.sum())} of {self.ok.size} pixels"

    @property
    def warnings(self) -> tuple[str, ...]:
        """Pixels without a peak."""
        bad = int(self.ok.size - self.ok.sum())
        return (f"{bad} of {self.ok.size} pixels without a peak inside the window (NaN)",) if bad else ()

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Maps of position, amplitude and width by name."""
        return {"position": self.position, "amplitude": self.amplitude, "width": self.width}

    @property
    def stderr(self) -> dict[str, np.ndarray]:
        """1σ map of the position; amplitude and width carry none (NaN)."""
        return {**no_stderr(self.values), "position": self.position_err}


def sro_peak_map(
    scan_or_profiles,
    q_range: tuple[float, float] = SRO_RANGE,
    *,
    plan=None,
    shifts=None,
    n: float | None = None,
    shape: str = "gaussian",
    weighted: bool = True,
    mask: np.ndarray | None = None,
    method: str = "centred",
    width: float | None = None,
    half_width: float | None = None,
    semiangle: float | None = None,
    energy: float | None = None,
    **profile_kwargs,
) -> PeakMap:
    """Map of the SRO peak position.

    Parameters
    ----------
    scan_or_profiles : fitting.profiles.ScanProfiles, simkit.radial.RadialProfiles, fitting.io.Scan or array
        Profiles (their background, if any, is subtracted before the fit) or raw patterns (then ``plan`` is
        required and profiles are computed with ``fitting.profiles.scan_profiles``).
    q_range : tuple of float  [Å⁻¹]
        Search range of the peak position (``method="centred"``) or fitting window (``method="local"``).
    plan : simkit.radial.RadialPlan or None
        Needed when raw patterns are given.
    shifts : ndarray or None  [px]
        Descan for raw patterns.
    n : float or None
        Qⁿ weighting (default: the profiles' own n, else 1).
    shape : {"gaussian", "lorentzian"}
    weighted : bool
        Weight the fit by the Poisson standard error of the profiles.
    mask : ndarray of bool (sy, sx) or None
        Pixels to fit (True = fit); others are NaN / ok=False.
    method : {"centred", "local"}
        ``"centred"`` (default): :func:`simkit.peak_estimator.sro_peak_position`, the project's SRO estimator (and the
        synthetic scans' ground truth); ``"local"``: :func:`simkit.peak_estimator.peak_position` in the fixed window.
    width : float or None  [Å⁻¹]
        Fixed peak width of the centred fit (``method="centred"``). None (default): from the probe by
        :func:`simkit.peak_estimator.sro_window` when ``semiangle`` is given (the same (w, h) as the ground truth of
        ``simkit.synth``), else the self-consistent width (:func:`simkit.peak_estimator.sro_width`) of the map's mean
        profile — one width for the whole map, never a noisy per-pixel one (the centre of an asymmetric hump
        moves with w, so a per-pixel w turns noise into position scatter).
    half_width : float or None  [Å⁻¹]
        Half width of the centred window; None: 1.2·width clipped to [0.05, 0.15] (``method="centred"``).
    semiangle : float or None  [mrad]
        Probe semi-angle for the default width (default: that of a ``fitting.io.Scan`` given as data).
    energy : float or None  [eV]
        Beam energy for the default width (default 300 keV).
    **profile_kwargs
        Passed to ``scan_profiles`` for raw patterns (exclude_direct, bin, background, chunk, ...).

    Returns
    -------
    PeakMap
    """
    from fitting.profiles import ScanProfiles, scan_profiles
    from simkit.radial import RadialProfiles

    if method not in ("centred", "local"):
        raise ValueError(f"method={method!r}: choose 'centred' (the SRO estimator) or 'local'")
    p = scan_or_profiles
    semiangle = getattr(p, "semiangle", None) if semiangle is None else semiangle  # a fitting.io.Scan knows it
    energy = getattr(p, "energy", None) if energy is None else energy
    if isinstance(p, ScanProfiles):
        I = p.intensity if p.background is None else p.intensity - p.background
        q, sem = p.q, p.sem
        nn = p.n if n is None else n
    elif isinstance(p, RadialProfiles):
        if p.mean.ndim < 1 or p.phi_edges is not None:
            raise ValueError("scan_or_profiles: sector profiles given; use profiles without n_phi")
        I, q, sem = p.mean, p.q, p.sem_poisson
        nn = 1.0 if n is None else n
    else:
        if plan is None:
            raise ValueError("plan=None: raw patterns need a RadialPlan (fitting.calibrate.calibrated_plan)")
        p = scan_profiles(p, plan, shifts=shifts, **profile_kwargs)
        I = p.intensity if p.background is None else p.intensity - p.background
        q, sem = p.q, p.sem
        nn = 1.0 if n is None else n
    lead = I.shape[:-1]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != lead:
            raise ValueError(f"mask.shape={mask.shape}: must equal the map shape {lead}")
        I = np.where(mask[..., None], I, np.nan)
    if method == "centred":
        sig = sem if weighted else None
        if width is None:
            width, auto_half = _map_width(q, I, q_range, nn, shape, semiangle, energy)
            half_width = auto_half if half_width is None else half_width
        fit = sro_peak_position(q, I, q_range, width=width, half_width=half_width, n=nn, sigma=sig, shape=shape)
    else:
        fit = peak_position(q, I, q_range, n=nn, sigma=sem if weighted else None, shape=shape)
    return PeakMap(
        position=fit.position,
        position_err=fit.position_err,
        amplitude=fit.amplitude,
        width=fit.width,
        ok=fit.ok,
        q_range=fit.q_range,
        n=float(nn),
    )


def _map_width(q, I, q_range, n, shape, semiangle, energy) -> tuple[float, float]:
    """(width, half width) [Å⁻¹] of a map: from the probe, else from the map's mean profile."""
    if semiangle is not None:
        return sro_window(float(semiangle), 300e3 if energy is None else float(energy))
    flat = np.where(np.isfinite(I), I, np.nan).reshape(-1, q.size)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins of an empty map
        mean = np.nanmean(flat, axis=0)
    if np.count_nonzero(np.isfinite(mean)) >= 8:
        w, h = sro_width(q, mean, q_range, n=n, shape=shape)
        if np.isfinite(w) and np.isfinite(h):
            return float(w), float(h)
    return sro_window(2.0)  # nothing to measure a width on: the study's 2 mrad probe


# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class GaussianMixture(ResultMixin):
    """A 1-D Gaussian mixture (components sorted by mean).

    Attributes
    ----------
    means, stds : ndarray (k,)  [units of the values, e.g. Å⁻¹]
    weights : ndarray (k,)
        Mixing fractions (sum 1).
    n_components : int
    log_likelihood : float
    bic : dict int → float
        BIC of every number of components tried.
    n : float
        Number of values used (sum of the normalised weights).
    """

    means: np.ndarray
    stds: np.ndarray
    weights: np.ndarray
    n_components: int
    log_likelihood: float
    bic: dict
    n: float

    @property
    def ok(self) -> bool:
        """Every component has a finite mean, a positive width and a positive weight."""
        return bool(np.all(np.isfinite(self.means)) and np.all(self.stds > 0) and np.all(self.weights > 0))

    @property
    def message(self) -> str:
        """The chosen number of components and why."""
        return f"{self.n_components} components (lowest BIC of {sorted(self.bic)}), log L = {self.log_likelihood:.2f}"

    @property
    def warnings(self) -> tuple[str, ...]:
        """None: the EM fit has no failure mode it reports."""
        return ()

    @property
    def values(self) -> dict[str, float]:
        """``mean[i]``, ``std[i]`` [units of the values] and ``weight[i]`` per component."""
        out = {}
        for i, (m, s, w) in enumerate(zip(self.means, self.stds, self.weights)):
            out |= {f"mean[{i}]": float(m), f"std[{i}]": float(s), f"weight[{i}]": float(w)}
        return out

    @property
    def stderr(self) -> dict[str, float]:
        """1σ of each mean, std/√(n·weight) (large-sample), and no uncertainty (NaN) for stds and weights."""
        out = no_stderr(self.values)
        for i, (s, w) in enumerate(zip(self.stds, self.weights)):
            out[f"mean[{i}]"] = float(s / np.sqrt(max(self.n * w, 1e-300)))
        return out

    def pdf(self, x, component: int | None = None) -> np.ndarray:
        """Mixture density at ``x`` (or one weighted component) [1/units of x]."""
        x = np.asarray(x, dtype=float)[..., None]
        d = self.weights * np.exp(-0.5 * ((x - self.means) / self.stds) ** 2) / (self.stds * math.sqrt(2 * math.pi))
        return d.sum(-1) if component is None else d[..., component]


_EM_BINS = 512


def _loglike(x, w, mu, sd, pi):
    logp = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd * math.sqrt(2 * math.pi)) + np.log(pi)
    m = logp.max(axis=1, keepdims=True)
    return float(np.sum(w * (m[:, 0] + np.log(np.exp(logp - m).sum(axis=1)))))


def _em(x, w, k, init_means, sd0, max_iter=1000, tol=1e-7):
    W = w.sum()
    mu = np.array(init_means, dtype=float)
    sd = np.full(k, sd0)
    pi = np.full(k, 1.0 / k)
    floor = max(1e-6 * sd0, 1e-12)
    ll_old = -np.inf
    for _ in range(max_iter):
        logp = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd * math.sqrt(2 * math.pi)) + np.log(pi)
        m = logp.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logp - m).sum(axis=1))
        ll = float(np.sum(w * lse))
        r = np.exp(logp - lse[:, None]) * w[:, None]
        nk = r.sum(axis=0)
        if np.any(nk <= 1e-9 * W):
            return None
        pi = nk / W
        mu = (r * x[:, None]).sum(axis=0) / nk
        sd = np.sqrt(np.maximum((r * (x[:, None] - mu) ** 2).sum(axis=0) / nk, floor**2))
        if abs(ll - ll_old) < tol * max(1.0, abs(ll)):
            break
        ll_old = ll
    return mu, sd, pi, ll


def fit_histogram(
    values,
    n_components: int | None = None,
    *,
    weights=None,
    max_components: int = 3,
    n_init: int = 3,
    rng=None,
) -> GaussianMixture:
    """Gaussian mixture of the finite ``values`` (e.g. a peak-position map), by EM.

    Parameters
    ----------
    values : array-like  [any unit, e.g. Å⁻¹]
        NaN values are ignored.
    n_components : int or None
        Number of components; None picks 1..``max_components`` by the Bayesian information criterion
        BIC = −2 ln L + (3k − 1) ln N.
    weights : array-like or None
        Non-negative weights per value (e.g. 1/σ²), normalised to mean 1 (so N is the number of values).
    max_components : int
        Largest k tried when ``n_components`` is None (1–3 by default).
    n_init : int
        Initialisations per k: quantile-spaced means plus random draws from the data.
    rng : numpy.random.Generator, int or None

    Returns
    -------
    GaussianMixture
    """
    rng = np.random.default_rng(rng)
    x = np.asarray(values, dtype=float).ravel()
    if weights is None:
        w = np.ones_like(x)
    else:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != x.shape:
            raise ValueError(f"weights has {w.size} entries for {x.size} values")
        if np.any(w[np.isfinite(w)] < 0):
            raise ValueError("weights: must be non-negative")
    use = np.isfinite(x) & np.isfinite(w) & (w > 0)
    x, w = x[use], w[use]
    if n_components is not None:
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
            raise ValueError(f"n_components={n_components!r}: a positive integer or None (BIC)")
        ks = [int(n_components)]
    else:
        ks = list(range(1, int(max_components) + 1))
    if x.size < 3 * max(ks):
        raise ValueError(f"values: {x.size} finite values are too few for {max(ks)} components (need ≥ {3 * max(ks)})")
    w = w * (x.size / w.sum())
    sd0 = float(np.sqrt(np.average((x - np.average(x, weights=w)) ** 2, weights=w)))
    if sd0 == 0:
        raise ValueError("values: all equal; a mixture cannot be fitted")
    best_by_k, bic = {}, {}
    N = float(w.sum())
    xf, wf = x, w
    if x.size > 2 * _EM_BINS:
        # EM on a fine weighted histogram (bin width = range/512 ≪ σ: Sheppard's variance bias h²/12 is
        # negligible); the final log-likelihood is evaluated on the raw values
        cnt, edges = np.histogram(x, bins=_EM_BINS, weights=w)
        keep = cnt > 0
        x, w = (0.5 * (edges[1:] + edges[:-1]))[keep], cnt[keep]
    for k in ks:
        best = None
        for t in range(max(1, n_init)):
            if t == 0:
                init = np.quantile(xf, (np.arange(k) + 0.5) / k)
            else:
                init = rng.choice(xf, size=k, replace=False)
            res = _em(x, w, k, init, sd0 / k)
            if res is not None and (best is None or res[3] > best[3]):
                best = res
        if best is None:
            continue
        if xf is not x:
            best = best[:3] + (_loglike(xf, wf, *best[:3]),)
        best_by_k[k] = best
        bic[k] = -2 * best[3] + (3 * k - 1) * math.log(N)
    if not bic:
        raise ValueError("fit_histogram: EM failed for every number of components")
    k = min(bic, key=bic.get)
    mu, sd, pi, ll = best_by_k[k]
    o = np.argsort(mu)
    return GaussianMixture(means=mu[o], stds=sd[o], weights=pi[o], n_components=k, log_likelihood=ll, bic=bic, n=N)


# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LayerFit(ResultMixin):
    """Layer between two error-function edges along a line.

    Attributes
    ----------
    thickness, thickness_err : float  [nm]
    edges, edges_err : tuple of float  [nm]
        Positions of the rising and falling edge from the first sample.
    blur : float  [nm]
        Gaussian width of the edges (interface roughness + probe).
    ok : bool
    """

    thickness: float
    thickness_err: float
    edges: tuple[float, float]
    edges_err: tuple[float, float]
    blur: float
    ok: bool

    _units = {"thickness": "nm", "edge_rising": "nm", "edge_falling": "nm", "blur": "nm"}

    @classmethod
    def failed(cls) -> LayerFit:
        """The result of a fit that found no layer (NaN everywhere, ``ok`` False)."""
        nan = float("nan")
        return cls(thickness=nan, thickness_err=nan, edges=(nan, nan), edges_err=(nan, nan), blur=nan, ok=False)

    @property
    def message(self) -> str:
        """Whether the two-edge fit converged."""
        return "two error-function edges fitted" if self.ok else "the two-edge fit failed (values are NaN)"

    @property
    def warnings(self) -> tuple[str, ...]:
        """A failed fit, in words."""
        return () if self.ok else (self.message,)

    @property
    def values(self) -> dict[str, float]:
        """Thickness, both edge positions and the edge blur [nm]."""
        return dict(zip(self._units, (self.thickness, *self.edges, self.blur)))

    @property
    def stderr(self) -> dict[str, float]:
        """1σ of thickness and edges [nm] (fit covariance); the blur carries none (NaN)."""
        return dict(zip(self._units, (self.thickness_err, *self.edges_err, float("nan"))))


def erf_layer_fit(profile, step: float, *, sigma=None) -> LayerFit:
    """Thickness of a layer from a profile across it: a·[E(x; x₁, s) − E(x; x₂, s)] + b.

    E is a Gaussian-blurred edge Φ((t − x₀)/s) averaged over each sample's extent [x − ½, x + ½] (a probe
    position or class pixel integrates over one step), so a perfectly sharp interface (s → 0) is a one-step
    ramp and the edge positions stay defined to a fraction of a step.

    Parameters
    ----------
    profile : array-like (n,)
        Indicator-like profile across the layer (e.g. class fraction or a feature averaged along the
        interface), high inside the layer.
    step : float  [Å]
        Sampling step along the profile (the scan step).
    sigma : array-like (n,) or None
        Standard errors of the profile (default: from the fit residuals).

    Returns
    -------
    LayerFit
        Thickness x₂ − x₁ [nm] with the covariance uncertainty.
    """
    from scipy.optimize import curve_fit
    from scipy.special import erf

    y = np.asarray(profile, dtype=float)
    step = check_positive("step", step, "Å")
    if y.ndim != 1 or y.size < 5:
        raise ValueError(f"profile: need a 1-D profile of at least 5 samples, got shape {y.shape}")
    x = np.arange(y.size, dtype=float)
    good = np.isfinite(y)
    hi = y[good] > 0.5 * (np.nanmax(y) + np.nanmin(y))
    if not hi.any():
        return LayerFit.failed()
    xi = x[good][hi]

    def G(u):  # ∫ Φ(u) du = u Φ(u) + φ(u)
        return u * 0.5 * (1 + erf(u / math.sqrt(2))) + np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)

    def edge(x, x0, s):  # Gaussian edge Φ((t − x0)/s) averaged over the sample's extent [x − ½, x + ½]
        return s * (G((x + 0.5 - x0) / s) - G((x - 0.5 - x0) / s))

    def f(x, a, b, x1, x2, s):
        return a * (edge(x, x1, s) - edge(x, x2, s)) + b

    p0 = [np.nanmax(y) - np.nanmin(y), np.nanmin(y), xi.min() - 0.5, xi.max() + 0.5, 0.5]
    bounds = ([0.0, -np.inf, -1.0, -1.0, 0.05], [np.inf, np.inf, y.size, y.size, y.size / 2])
    import warnings

    from scipy.optimize import OptimizeWarning

    try:
        sg = None if sigma is None else np.asarray(sigma, dtype=float)[good]
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            popt, pcov = curve_fit(
                f, x[good], y[good], p0=p0, sigma=sg, absolute_sigma=sigma is not None, bounds=bounds, max_nfev=5000
            )
    except (RuntimeError, ValueError, OptimizeWarning):
        return LayerFit.failed()
    x1, x2 = popt[2], popt[3]
    var = pcov[2, 2] + pcov[3, 3] - 2 * pcov[2, 3]
    nm = step / 10.0
    ok = bool(np.all(np.isfinite(pcov)) and var >= 0 and x2 > x1)
    err = math.sqrt(var) if var >= 0 and np.isfinite(var) else np.nan
    return LayerFit(
        thickness=float((x2 - x1) * nm),
        thickness_err=float(err * nm),
        edges=(float(x1 * nm), float(x2 * nm)),
        edges_err=(float(math.sqrt(abs(pcov[2, 2])) * nm), float(math.sqrt(abs(pcov[3, 3])) * nm)),
        blur=float(abs(popt[4]) * nm),
        ok=ok,
    )
