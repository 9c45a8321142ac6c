"""Side-by-side radial I·Q profiles of the SEIs of the study's three electrolytes (its Figure 4b) and an SRO metric.

:func:`compare_electrolytes` builds each electrolyte's SEI model (:mod:`structures.sei_variants`) for several seeds,
computes the kinematic Debye intensity (:func:`simkit.kinematic.debye_intensity`), records it with a 2 mrad probe
(:func:`simkit.kinematic.probe_convolve`, which integrates through :mod:`simkit.radial`), weights by Q and averages
over seeds (sem = configurational scatter / √n_seeds).

:func:`sro_strength` is the SRO-strength metric: a Gaussian peak on a linear background fitted (weighted least
squares, ``scipy.optimize.curve_fit`` with ``absolute_sigma``) to I·Q in a window; the strength is the peak height
over the background under it, C = A / B(q₀). Its uncertainty is propagated from the fit covariance (first order,
gradient of C in (A, q₀, w, b₀, b₁)). The ranking the models give follows from the model parameters of
:mod:`structures.sei_variants` (composition, density, relaxation) — it is shown, not a physics test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

__all__ = [
    "profile_decomposition",
    "ElectrolyteComparison",
    "SROStrength",
    "compare_electrolytes",
    "plot_electrolyte_comparison",
    "sro_strength",
]


@dataclass(frozen=True, kw_only=True)
class SROStrength:
    """Result of :func:`sro_strength`.

    Attributes
    ----------
    strength : float
        Peak height over background, A / B(q₀) (dimensionless).
    strength_err : float
        1σ uncertainty of ``strength`` (error propagation).
    position : float  [Å⁻¹]
    amplitude : float  [unit of the profile]
    width : float  [Å⁻¹]
        Gaussian σ.
    background : float  [unit of the profile]
        B(q₀).
    ok : bool
    """

    strength: float
    strength_err: float
    position: float
    amplitude: float
    width: float
    background: float
    ok: bool


def _model(q, a, q0, w, b0, b1, qc):
    return a * np.exp(-0.5 * ((q - q0) / w) ** 2) + b0 + b1 * (q - qc)


def sro_strength(q, iq, sem=None, *, q_range: tuple[float, float] = (0.15, 0.5)) -> SROStrength:
    """SRO strength: Gaussian peak height over a fitted linear background in a window of a radial profile.

    Parameters
    ----------
    q : array-like, shape (n_q,)  [Å⁻¹]
    iq : array-like, shape (n_q,)  [any intensity unit, usually I·Q]
    sem : array-like or None, shape (n_q,)  [unit of iq]
        Standard error per bin; None → unit weights and the uncertainty scaled by the fit residual.
    q_range : (float, float)  [Å⁻¹]
        Fit window (must hold the peak and background on both sides).

    Returns
    -------
    SROStrength
    """
    q = np.asarray(q, dtype=float)
    iq = np.asarray(iq, dtype=float)
    if q.ndim != 1 or iq.shape != q.shape:
        raise ValueError(f"q and iq must be 1-D of equal length, got shapes {q.shape} and {iq.shape}")
    lo, hi = map(float, q_range)
    if not (0 <= lo < hi):
        raise ValueError(f"q_range={q_range!r} Å⁻¹ must be (low, high) with 0 <= low < high")
    sel = (q >= lo) & (q <= hi) & np.isfinite(iq)
    if sem is not None:
        sem = np.asarray(sem, dtype=float)
        if sem.shape != q.shape:
            raise ValueError(f"sem must have the shape of q {q.shape}, got {sem.shape}")
        sel &= np.isfinite(sem) & (sem > 0)
    if sel.sum() < 8:
        raise ValueError(f"q_range={q_range!r} Å⁻¹ holds {int(sel.sum())} usable bins; need at least 8")
    x, y = q[sel], iq[sel]
    s = sem[sel] if sem is not None else None
    qc = 0.5 * (x[0] + x[-1])
    # start: background through the window ends, peak at the maximum above it
    b1 = (y[-1] - y[0]) / (x[-1] - x[0])
    b0 = y[0] + b1 * (qc - x[0])
    resid = y - (b0 + b1 * (x - qc))
    k = int(np.argmax(resid))
    p0 = [max(resid[k], 1e-12 * abs(y).max()), x[k], 0.15 * (hi - lo), b0, b1]

    def f(xx, a, q0, w, c0, c1):
        return _model(xx, a, q0, w, c0, c1, qc)

    try:
        popt, pcov = curve_fit(
            f,
            x,
            y,
            p0=p0,
            sigma=s,
            absolute_sigma=s is not None,
            bounds=([0.0, lo, 1e-3, -np.inf, -np.inf], [np.inf, hi, hi - lo, np.inf, np.inf]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError):
        nan = float("nan")
        return SROStrength(
            strength=nan, strength_err=nan, position=nan, amplitude=nan, width=nan, background=nan, ok=False
        )
    a, q0, w, c0, c1 = popt
    bg = c0 + c1 * (q0 - qc)
    c = a / bg
    g = np.array([1.0 / bg, -a * c1 / bg**2, 0.0, -a / bg**2, -a * (q0 - qc) / bg**2])
    err = float(np.sqrt(max(g @ pcov @ g, 0.0)))
    ok = bool(np.all(np.isfinite(pcov)) and bg > 0 and lo < q0 < hi)
    return SROStrength(
        strength=float(c),
        strength_err=err,
        position=float(q0),
        amplitude=float(a),
        width=float(w),
        background=float(bg),
        ok=ok,
    )


def profile_decomposition(
    atoms,
    *,
    semiangle: float = 2.0,
    energy: float = 300e3,
    q_max: float = 1.2,
    n_q: int = 500,
    q_range: tuple[float, float] = (0.15, 0.5),
) -> dict:
    """Split a model's probe-convolved I·Q into the atomic self term ⟨f²⟩·Q and the distinct (structural) part.

    The maximum of a measured I·Q is a compromise between the self term's own maximum (set by the scattering
    factors and the probe, not by structure) and the structural peak of the distinct term; this tells which one
    places the "SRO peak" of a model.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic amorphous model.
    semiangle : float  [mrad]
    energy : float  [eV]
    q_max : float  [Å⁻¹]
    n_q : int
    q_range : (float, float)  [Å⁻¹]
        Window in which the maxima are located.

    Returns
    -------
    dict
        ``q`` [Å⁻¹]; ``total``, ``self``, ``distinct`` (probe-convolved, times Q) [Å² per atom · Å⁻¹];
        ``peak_total``, ``peak_self``, ``peak_distinct`` [Å⁻¹] (bin of the maximum in ``q_range``).
    """
    from simkit.kinematic import debye_intensity, probe_convolve, scattering_factor

    qg = np.linspace(0.02, float(q_max), int(n_q))
    iq = debye_intensity(atoms, qg, periodic=True)
    syms, cnt = np.unique(atoms.get_chemical_symbols(), return_counts=True)
    f2 = sum(c * scattering_factor(s, qg) ** 2 for s, c in zip(syms, cnt)) / len(atoms)
    prof = probe_convolve(qg, np.stack([iq, f2, iq - f2]), semiangle=semiangle, energy=energy)
    q = prof.q
    tot, slf, dst = (prof.mean[k] * q for k in range(3))
    sel = (q >= q_range[0]) & (q <= q_range[1])

    def peak(y):
        yy = np.where(sel & np.isfinite(y), y, -np.inf)
        return float(q[int(np.argmax(yy))])

    return {
        "q": q,
        "total": tot,
        "self": slf,
        "distinct": dst,
        "peak_total": peak(tot),
        "peak_self": peak(slf),
        "peak_distinct": peak(dst),
    }


@dataclass(frozen=True, kw_only=True)
class ElectrolyteComparison:
    """Result of :func:`compare_electrolytes`.

    Attributes
    ----------
    names : tuple of str
        Electrolyte keys.
    labels : tuple of str
    q : ndarray, shape (n_q,)  [Å⁻¹]
        Radial bin centres.
    iq : ndarray, shape (n_el, n_q)  [Å² per atom · Å⁻¹]
        Seed-averaged, probe-convolved I·Q.
    sem : ndarray, shape (n_el, n_q)
        Standard error of ``iq`` over seeds.
    strengths : tuple of SROStrength
    peak_position : ndarray, shape (n_el,)  [Å⁻¹]
        :func:`simkit.peak_estimator.peak_position` of the mean profile (the project's estimator).
    ranking : tuple of str
        Names by decreasing SRO strength.
    settings : dict
    """

    names: tuple
    labels: tuple
    q: np.ndarray
    iq: np.ndarray
    sem: np.ndarray
    strengths: tuple
    peak_position: np.ndarray
    ranking: tuple
    settings: dict


def compare_electrolytes(
    names: Sequence[str] = ("hce", "lifsi_1m", "lipf6_1m"),
    *,
    n_atoms: int = 1500,
    seeds: Sequence[int] = (0, 1, 2),
    semiangle: float = 2.0,
    energy: float = 300e3,
    q_max: float = 1.2,
    n_q: int = 400,
    q_range: tuple[float, float] = (0.15, 0.5),
    geometry=None,
) -> ElectrolyteComparison:
    """Probe-convolved radial I·Q of each electrolyte's SEI model, averaged over seeds, with SRO strengths.

    Parameters
    ----------
    names : sequence of str
        Keys of :data:`structures.sei_variants.SEI_VARIANTS`.
    n_atoms : int
        Atoms per model.
    seeds : sequence of int
        Independent configurations per electrolyte (≥ 2 for a sem).
    semiangle : float  [mrad]
        Probe convergence semi-angle (study: 2 mrad).
    energy : float  [eV]
    q_max : float  [Å⁻¹]
        Largest Q of the Debye grid (the convolved profile is truncated within one disc radius of it).
    n_q : int
        Debye grid points.
    q_range : (float, float)  [Å⁻¹]
        Window of the SRO metric and of the peak position.
    geometry : simkit.geometry.DetectorGeometry or None
        Detector for the probe convolution (None → simkit.kinematic's default).

    Returns
    -------
    ElectrolyteComparison
    """
    from simkit.kinematic import debye_intensity, make_probe_convolution, probe_convolve
    from simkit.peak_estimator import peak_position
    from structures.electrolyte_presets import ELECTROLYTES
    from structures.sei_variants import SEI_VARIANTS, sei_variant

    names = tuple(names)
    for n in names:
        if n not in SEI_VARIANTS:
            raise ValueError(f"names contains {n!r}; valid: {sorted(SEI_VARIANTS)}")
    seeds = tuple(int(s) for s in seeds)
    if len(seeds) < 2:
        raise ValueError(f"seeds={seeds!r}: give at least 2 seeds for a standard error")
    qg = np.linspace(0.02, float(q_max), int(n_q))
    conv = make_probe_convolution(qg, semiangle=semiangle, energy=energy, geometry=geometry)
    curves = []
    for n in names:
        per = [debye_intensity(sei_variant(n, n_atoms=n_atoms, rng=s), qg, periodic=True) for s in seeds]
        prof = probe_convolve(qg, np.stack(per), semiangle=semiangle, energy=energy, plan=conv)
        curves.append(prof.mean * prof.q)
    q = prof.q
    arr = np.stack(curves)  # (n_el, n_seeds, n_q)
    mean = np.nanmean(arr, axis=1)
    sem = np.nanstd(arr, axis=1, ddof=1) / np.sqrt(len(seeds))
    strengths = tuple(sro_strength(q, m, s, q_range=q_range) for m, s in zip(mean, sem))
    fit = peak_position(q, np.where(np.isfinite(mean), mean / np.maximum(q, 1e-12), 0.0), q_range, n=1)
    pos = np.where(fit.ok, fit.position, np.nan)
    order = sorted(range(len(names)), key=lambda i: -np.nan_to_num(strengths[i].strength, nan=-np.inf))
    return ElectrolyteComparison(
        names=names,
        labels=tuple(ELECTROLYTES[SEI_VARIANTS[n].electrolyte].label for n in names),
        q=q,
        iq=mean,
        sem=sem,
        strengths=strengths,
        peak_position=np.asarray(pos, dtype=float),
        ranking=tuple(names[i] for i in order),
        settings={
            "n_atoms": int(n_atoms),
            "seeds": list(seeds),
            "semiangle_mrad": float(semiangle),
            "energy_eV": float(energy),
            "q_range": list(q_range),
            "q_max": float(q_max),
            "disc_radius": float(conv.radius),
        },
    )


def plot_electrolyte_comparison(result: ElectrolyteComparison, *, offset: float = 0.5):
    """Figure like the study's Figure 4b: normalised I·Q of the three SEIs, offset, with ±sem bands.

    Parameters
    ----------
    result : ElectrolyteComparison
    offset : float
        Vertical offset between curves (in units of each curve's maximum).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if not isinstance(result, ElectrolyteComparison):
        raise TypeError(f"result must be an ElectrolyteComparison, got {type(result).__name__}")
    fig = Figure(figsize=(5.0, 4.5))
    ax = fig.add_subplot()
    for k, (lab, y, s, st) in enumerate(zip(result.labels, result.iq, result.sem, result.strengths)):
        norm = np.nanmax(y)
        base = k * offset
        ax.plot(result.q, y / norm + base, label=f"{lab}: C = {st.strength:.2f} ± {st.strength_err:.2f}")
        ax.fill_between(result.q, (y - s) / norm + base, (y + s) / norm + base, alpha=0.3)
        if np.isfinite(result.peak_position[k]):
            ax.axvline(result.peak_position[k], ls=":", lw=0.8, color=ax.lines[-1].get_color())
    ax.set_xlabel("Q = 1/d [Å⁻¹]")
    ax.set_ylabel("I·Q (normalised, offset)")
    q_top = float(result.settings.get("q_max", result.q[-1])) - float(result.settings.get("disc_radius", 0.0))
    ax.set_xlim(0.05, min(1.0, q_top))
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"SEI radial profiles, {result.settings['semiangle_mrad']:g} mrad probe")
    return fig
