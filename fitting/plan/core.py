"""The planner's computation: forward model per setting, Asimov and simulated likelihood ratios, the answer."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

from fitting.plan.hypothesis import Hypothesis, kinematic_scale
from simkit.damage import DamageModel, amorphous_fraction, damaged_profile, li2o_powder_profile
from simkit.detector import DetectorModel, dead_time_response, defect_masks, psf_kernel, saturation_value
from simkit.dose import accumulated_fluence_map
from simkit.geometry import DetectorGeometry
from simkit.kinematic import make_probe_convolution

_FLUENCE_LEVELS = 5  # damaged profiles per setting, linearly interpolated between (damage is smooth in dose)
_SUBSTEPS = 4  # thickness sub-steps between tabulated thicknesses in the profile fit


# ----------------------------------------------------------------------------------------------------------------
# result types
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PlanRow:
    """One setting of the plan.

    Attributes
    ----------
    semiangle : float  [mrad]
    electrons_per_pattern : float  [e]
    step : float  [Å]
    scan_fluence : float  [e/Å²]
        Electrons per pattern / step², per pass.
    local_fluence : float  [e/Å²]
        Largest probe-weighted local fluence of the region's material at the end of its scan.
    damage_fraction : float
        1 − amorphous fraction at ``local_fluence``.
    counts : float  [counts]
        Expected counts of the region in the compared bins (truth A).
    delta_loglike_a, delta_loglike_b : float
        Expected (Asimov) Λ when A is true, and −Λ when B is true.
    sd_a, sd_b : float
        Linearised standard deviation of Λ under A and under B.
    p_correct : float
        Asymptotic probability of a correct decision, the worse of A true and B true.
    sim_mean_a, sim_sd_a, sim_sem_a : float
        Mean, standard deviation and standard error of Λ over the seeded simulations under A (NaN if none).
    p_correct_sim : float
        Simulated frequency of correct decisions, the worse of A true and B true (NaN if no simulation).
    """

    semiangle: float
    electrons_per_pattern: float
    step: float
    scan_fluence: float
    local_fluence: float
    damage_fraction: float
    counts: float
    delta_loglike_a: float
    delta_loglike_b: float
    sd_a: float
    sd_b: float
    p_correct: float
    sim_mean_a: float
    sim_sd_a: float
    sim_sem_a: float
    p_correct_sim: float

    @property
    def p_decision(self) -> float:
        """The probability the answer relies on: the smaller of the asymptotic and the simulated one.

        At a few counts the asymptotic normal approximation is optimistic (the log-likelihood ratio of sparse
        Poisson data is skewed), so the planner never promises more than its own simulation shows.
        """
        return self.p_correct if not np.isfinite(self.p_correct_sim) else min(self.p_correct, self.p_correct_sim)


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """The planner's answer.

    Attributes
    ----------
    reachable : bool
    row : PlanRow or None
        The cheapest setting that reaches the confidence within the damage limit, or (not reachable) the setting
        with the highest decision probability within the damage limit (None if no setting stays within it).
    message : str
        One sentence with numbers and units.
    """

    reachable: bool
    row: PlanRow | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, kw_only=True, eq=False)
class PlanResult:
    """Result of :func:`plan_experiment`.

    Attributes
    ----------
    hypotheses : (str, str)
        Names of A and B.
    rows : tuple of PlanRow
    confidence : float
        Required probability of a correct decision.
    max_damage : float
        Largest accepted damage fraction.
    damage_fluence : float  [e/Å²]
        Local fluence at which the damage fraction reaches ``max_damage``.
    study_threshold_local : float  [e/Å²]
        The study's 3600 e/Å² (Type 1 → Li₂O) expressed as local fluence under the damage model.
    region_pixels : int
    nuisance : str
        How nuisance parameters were treated.
    settings : dict
    """

    hypotheses: tuple[str, str]
    rows: tuple[PlanRow, ...]
    confidence: float
    max_damage: float
    damage_fluence: float
    study_threshold_local: float
    region_pixels: int
    nuisance: str
    settings: dict = field(default_factory=dict)

    def recommend(self) -> Recommendation:
        """The cheapest setting (lowest local fluence) reaching ``confidence`` before damage passes ``max_damage``."""
        a, b = self.hypotheses
        ok = [r for r in self.rows if r.damage_fraction <= self.max_damage]
        good = [r for r in ok if r.p_decision >= self.confidence]
        if good:
            r = min(good, key=lambda r: (r.local_fluence, r.electrons_per_pattern))
            return Recommendation(
                reachable=True,
                row=r,
                message=(
                    f"{a} vs {b}: use {r.semiangle:g} mrad, {r.electrons_per_pattern:.3g} e/pattern, "
                    f"{r.step / 10:g} nm step — P(correct) = {r.p_decision:.3f} ≥ {self.confidence:g} from "
                    f"{self.region_pixels} pixel(s) at {r.local_fluence:.3g} e/Å² local fluence "
                    f"(damage {100 * r.damage_fraction:.1f} % ≤ {100 * self.max_damage:g} %)"
                ),
            )
        if not ok:
            return Recommendation(
                reachable=False,
                row=None,
                message=(
                    f"{a} vs {b}: not reachable with these settings — every setting damages more than "
                    f"{100 * self.max_damage:g} % (limit {self.damage_fluence:.3g} e/Å² local fluence)"
                ),
            )
        r = max(ok, key=lambda r: (r.p_decision, -r.local_fluence))
        return Recommendation(
            reachable=False,
            row=r,
            message=(
                f"{a} vs {b}: not reachable with these settings — best achievable within "
                f"{100 * self.max_damage:g} % damage is P(correct) = {r.p_decision:.3f} (< {self.confidence:g}) at "
                f"{r.semiangle:g} mrad, {r.electrons_per_pattern:.3g} e/pattern, {r.step / 10:g} nm step, "
                f"{r.local_fluence:.3g} e/Å² local fluence, {self.region_pixels} pixel(s)"
            ),
        )

    def table(self) -> str:
        """The plan as a fixed-width text table with units."""
        head = (
            f"{'α [mrad]':>8} {'N [e/pat]':>10} {'step [nm]':>9} {'scan [e/Å²]':>11} {'local [e/Å²]':>12} "
            f"{'damage [%]':>10} {'counts':>10} {'E[ΔlogL|A]':>11} {'E[ΔlogL|B]':>11} {'sd|A':>8} "
            f"{'sim mean|A':>10} {'P(correct)':>10} {'P sim':>6}"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.semiangle:>8g} {r.electrons_per_pattern:>10.3g} {r.step / 10:>9g} {r.scan_fluence:>11.4g} "
                f"{r.local_fluence:>12.4g} {100 * r.damage_fraction:>10.2f} {r.counts:>10.3g} "
                f"{r.delta_loglike_a:>11.4g} {r.delta_loglike_b:>11.4g} {r.sd_a:>8.3g} {r.sim_mean_a:>10.4g} "
                f"{r.p_correct:>10.4f} {r.p_correct_sim:>6.3f}"
            )
        lines.append(
            f"region {self.region_pixels} pixel(s); ΔlogL = log L_A − log L_B (natural log); "
            f"nuisance: {self.nuisance}; damage limit {100 * self.max_damage:g} % at "
            f"{self.damage_fluence:.4g} e/Å² local fluence"
        )
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# the planner
# ----------------------------------------------------------------------------------------------------------------
def _check_list(name: str, values, unit: str) -> tuple[float, ...]:
    vals = np.atleast_1d(np.asarray(values, float))
    if vals.ndim != 1 or vals.size == 0 or not np.all(np.isfinite(vals)) or np.any(vals <= 0):
        raise ValueError(f"{name}={values!r}: give one or more finite values > 0 [{unit}]")
    return tuple(float(v) for v in vals)


def _region_indices(scan_shape: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """A compact block of ``n`` scan positions in the middle of the scan (rows of the fast axis)."""
    ny, nx = scan_shape
    if n > ny * nx:
        raise ValueError(
            f"region_pixels={n}: larger than the scan's {ny}×{nx} = {ny * nx} positions; enlarge scan_shape"
        )
    w = min(nx, max(1, int(math.ceil(math.sqrt(n)))))
    h = int(math.ceil(n / w))
    y0, x0 = (ny - h) // 2, (nx - w) // 2
    yy, xx = np.divmod(np.arange(n), w)
    return y0 + yy, x0 + xx


@lru_cache(maxsize=32)
def _unit_fluence(scan_shape, step, semiangle, energy, region_pixels):
    """Probe-weighted local fluence per electron per pattern (during, after) of the region's patterns [1/Å²]."""
    fm = accumulated_fluence_map(scan_shape, step, semiangle, energy, 1.0)
    iy, ix = _region_indices(scan_shape, region_pixels)
    return fm.during[0][iy, ix].copy(), fm.after[0][iy, ix].copy()


_CONVOLUTIONS: dict = {}  # the last two probe-convolution plans (≈ 50 MB each at 256² px), reused between calls


def _convolution(q: np.ndarray, alpha: float, energy: float, geometry: DetectorGeometry, good: np.ndarray):
    """``simkit.kinematic.make_probe_convolution`` for the hypotheses' grid, cached for repeated plans."""
    key = (q.size, float(q[0]), float(q[-1]), alpha, energy, geometry, hashlib.sha1(good.tobytes()).hexdigest())
    if key not in _CONVOLUTIONS:
        while len(_CONVOLUTIONS) >= 2:
            _CONVOLUTIONS.pop(next(iter(_CONVOLUTIONS)))
        _CONVOLUTIONS[key] = make_probe_convolution(q, semiangle=alpha, energy=energy, geometry=geometry, mask=good)
    return _CONVOLUTIONS[key]


def _detector_setup(detector: DetectorModel | None, geometry: DetectorGeometry):
    if detector is None:
        return np.ones(geometry.shape, bool), None
    if detector.shape is not None and tuple(detector.shape) != tuple(geometry.shape):
        raise ValueError(
            f"detector shape {detector.shape} differs from geometry.shape {geometry.shape}: give a geometry of the "
            "detector's shape"
        )
    dead, hot = defect_masks(detector, geometry.shape)
    kern = psf_kernel(detector) if (detector.psf_sigma > 0 or detector.mtf is not None) else None
    return ~(dead | hot), kern


def _damaged_densities(h: Hypothesis, levels: np.ndarray, damage: DamageModel | None, model_t: np.ndarray):
    """Densities (n_levels, n_t, n_q) at the fluence levels [e/Å², local] for the thicknesses ``model_t`` [Å]."""
    base = np.stack([h.at_thickness(t) for t in model_t])  # (n_t, n_q)
    if h.damage != "amorphous" or damage is None or np.all(levels == 0):
        return np.broadcast_to(base, (levels.size,) + base.shape)
    out = np.empty((levels.size,) + base.shape)
    for j, t in enumerate(model_t):
        c = kinematic_scale(h.atom_density, t, h.energy)

        def li2o(q, size, c=c):
            return li2o_powder_profile(q, size) * c

        out[:, j] = damaged_profile(h.q, base[j], li2o, levels, damage, kind="local")
    return out


def _interp_weights(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Summed linear-interpolation weights of ``values`` on ``levels`` (shape (n_levels,))."""
    w = np.zeros(levels.size)
    if levels.size == 1:
        w[0] = values.size
        return w
    j = np.clip(np.searchsorted(levels, values) - 1, 0, levels.size - 2)
    f = np.clip((values - levels[j]) / (levels[j + 1] - levels[j]), 0.0, 1.0)
    np.add.at(w, j, 1.0 - f)
    np.add.at(w, j + 1, f)
    return w


def _fine_thicknesses(h: Hypothesis) -> np.ndarray:
    t = h.thicknesses
    if t.size == 1:
        return t.copy()
    sub = [np.linspace(t[i], t[i + 1], _SUBSTEPS + 1)[:-1] for i in range(t.size - 1)]
    return np.concatenate(sub + [t[-1:]])


def _deviance_min(y: np.ndarray, models: np.ndarray, free_scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """min over rows of ``models`` (n_m, n_b) of the Poisson deviance/2 D(y‖ŝ m), y of shape (..., n_b).

    D(y‖m) = Σ [y log(y/m) − y + m] = log L(y; y) − log L(y; m); ŝ = Σy/Σm when ``free_scale`` else 1.
    Returns (D_min (...), index of the best row (...)).
    """
    y = np.asarray(y, float)
    m = np.maximum(models, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0), axis=-1)
    sy = y.sum(axis=-1)
    ylogm = y @ np.log(m).T  # (..., n_m)
    sm = m.sum(axis=-1)
    if free_scale:
        s = sy[..., None] / sm
        with np.errstate(divide="ignore"):
            logs = np.where(s > 0, np.log(np.where(s > 0, s, 1.0)), 0.0)
        d = ylogy[..., None] - ylogm - sy[..., None] * logs - sy[..., None] + s * sm
    else:
        d = ylogy[..., None] - ylogm - sy[..., None] + sm
    k = np.argmin(d, axis=-1)
    return np.take_along_axis(d, k[..., None], axis=-1)[..., 0], k


def _best_model(y: np.ndarray, models: np.ndarray, free_scale: bool) -> np.ndarray:
    _, k = _deviance_min(y, models, free_scale)
    m = models[int(k)]
    return m * (y.sum() / m.sum()) if free_scale else m


def _decide(mu_true, models_true, models_other, free_scale, n_sim, rng):
    """Asimov Λ, its linearised sd, and the simulated mean/sd/frequency of Λ > 0 for one truth."""
    d_true, _ = _deviance_min(mu_true, models_true, free_scale)
    d_other, _ = _deviance_min(mu_true, models_other, free_scale)
    lam = float(d_other - d_true)
    m_t = np.maximum(_best_model(mu_true, models_true, free_scale), 1e-300)
    m_o = np.maximum(_best_model(mu_true, models_other, free_scale), 1e-300)
    sd = float(np.sqrt(np.sum(mu_true * np.log(m_t / m_o) ** 2)))
    if n_sim > 0:
        y = rng.poisson(np.broadcast_to(mu_true, (n_sim, mu_true.size))).astype(float)
        lam_s = _deviance_min(y, models_other, free_scale)[0] - _deviance_min(y, models_true, free_scale)[0]
        sim = (float(lam_s.mean()), float(lam_s.std(ddof=1)), float(np.mean(lam_s > 0) + 0.5 * np.mean(lam_s == 0)))
    else:
        sim = (math.nan, math.nan, math.nan)
    return lam, sd, sim


def _p_correct(lam: float, sd: float) -> float:
    if sd <= 0 or not np.isfinite(sd):
        return 0.5 if lam <= 0 else 1.0
    return float(ndtr(lam / sd))


def plan_experiment(
    hypotheses,
    *,
    semiangles=(2.0, 0.15),
    electrons_per_pattern=(1e4, 1e5, 1e6),
    steps=(40.0,),
    detector: DetectorModel | None = None,
    damage: DamageModel | None = None,
    region_pixels: int = 1,
    confidence: float = 0.95,
    max_damage: float = 0.1,
    geometry: DetectorGeometry | None = None,
    energy: float = 300e3,
    q_range: tuple[float, float] = (0.15, 0.85),
    scan_shape: tuple[int, int] = (90, 60),
    free_scale: bool = True,
    model_damage: bool = False,
    n_sim: int = 200,
    seed: int = 0,
) -> PlanResult:
    """Expected log-likelihood ratio and decision probability between two hypotheses for every setting.

    Parameters
    ----------
    hypotheses : (Hypothesis, Hypothesis)
        A and B (e.g. from :func:`preset_hypotheses`); same Q grid and energy.
    semiangles : sequence of float  [mrad]
        Probe convergence semi-angles α.
    electrons_per_pattern : sequence of float  [e]
        Incident electrons per pattern N (beam current × dwell time / e).
    steps : sequence of float  [Å]
        Scan steps s (square raster).
    detector : simkit.detector.DetectorModel or None
        Detector response (dead/hot pixels, PSF, dead time, saturation; integrating noise); None = ideal counter.
    damage : simkit.damage.DamageModel or None
        Damage kinetics; None = no damage (the structures do not change and the damage fraction is 0).
    region_pixels : int
        Patterns whose profiles are summed for one decision (1 = per pixel).
    confidence : float
        Required probability of a correct decision, in (0.5, 1).
    max_damage : float
        Largest accepted damage fraction of the short-range order (1 − amorphous fraction), in (0, 1).
    geometry : DetectorGeometry or None
        The detector in Q; None → the detector's shape (or 256²) at ``simkit.geometry.DEFAULT_PIXEL_SIZE``.
    energy : float  [eV]
    q_range : (float, float)  [Å⁻¹]
        Bins compared (outside the direct beam).
    scan_shape : (int, int)
        Whole scan ``(scan_y, scan_x)`` around the region (its probe tails add to the region's local fluence).
    free_scale : bool
        Profile a free overall scale of each hypothesis (amount of material); thickness of tabulated hypotheses
        is always profiled.
    model_damage : bool
        True: the fitted hypotheses include the damage the scan causes (an analyst who models it); False
        (default): they are the pristine structures, so damage of the true structure is a systematic error.
    n_sim : int
        Seeded Poisson simulations per setting and truth (0 = asymptotic numbers only).
    seed : int
        Seed of the simulations.

    Returns
    -------
    PlanResult
        ``rows`` for every (semi-angle, step, electrons) in that order; ``recommend()`` gives the answer.
    """
    hyps = tuple(hypotheses)
    if len(hyps) != 2 or not all(isinstance(h, Hypothesis) for h in hyps):
        raise TypeError("hypotheses: give exactly two Hypothesis objects (A, B), e.g. from preset_hypotheses")
    ha, hb = hyps
    if ha.q.shape != hb.q.shape or not np.allclose(ha.q, hb.q, rtol=0, atol=1e-12):
        raise ValueError(f"hypotheses {ha.name!r} and {hb.name!r} lie on different Q grids; build them on one grid")
    for h in hyps:
        if not math.isclose(h.energy, energy):
            raise ValueError(f"hypothesis {h.name!r} was computed for {h.energy} eV, energy={energy!r} eV")
    alphas = _check_list("semiangles", semiangles, "mrad")
    n_es = _check_list("electrons_per_pattern", electrons_per_pattern, "e")
    st = _check_list("steps", steps, "Å")
    if isinstance(region_pixels, bool) or int(region_pixels) != region_pixels or region_pixels < 1:
        raise ValueError(f"region_pixels={region_pixels!r}: give an integer ≥ 1 (patterns per decision)")
    region_pixels = int(region_pixels)
    if not 0.5 < float(confidence) < 1.0:
        raise ValueError(f"confidence={confidence!r}: give a probability in (0.5, 1), e.g. 0.95")
    if not 0.0 < float(max_damage) < 1.0:
        raise ValueError(f"max_damage={max_damage!r}: give a fraction in (0, 1), e.g. 0.1")
    if int(n_sim) != n_sim or n_sim < 0:
        raise ValueError(f"n_sim={n_sim!r}: give an integer ≥ 0")
    if detector is not None and not isinstance(detector, DetectorModel):
        raise TypeError(f"detector={type(detector).__name__}: expected a simkit.detector.DetectorModel or None")
    if damage is not None and not isinstance(damage, DamageModel):
        raise TypeError(f"damage={type(damage).__name__}: expected a simkit.damage.DamageModel or None")
    if geometry is None:
        shape = detector.shape if detector is not None and detector.shape is not None else (256, 256)
        geometry = DetectorGeometry(shape=shape)
    q_lo, q_hi = float(q_range[0]), float(q_range[1])
    if not 0 <= q_lo < q_hi:
        raise ValueError(f"q_range={q_range!r}: give (q_min, q_max) with 0 ≤ q_min < q_max [Å⁻¹]")
    scan_shape = (int(scan_shape[0]), int(scan_shape[1]))
    rng = np.random.default_rng(seed)
    good, psf = _detector_setup(detector, geometry)

    t_fine = [_fine_thicknesses(h) for h in hyps]
    rows = []
    for alpha in alphas:
        conv = _convolution(ha.q, alpha, float(energy), geometry, good)
        qb = np.asarray(conv.plan.integrate(np.zeros(geometry.shape)).q)

        def patterns(dens, conv=conv):
            return _patterns(conv, dens, psf)

        pristine = [patterns(np.stack([h.at_thickness(t) for t in tf])) for h, tf in zip(hyps, t_fine)]
        true_pristine = [patterns(h.at_thickness(h.thickness)) for h in hyps]
        for step in st:
            during1, after1 = _unit_fluence(scan_shape, step, alpha, float(energy), region_pixels)
            for n_e in n_es:
                during = during1 * n_e
                local = float(np.max(after1) * n_e)
                dmg = 0.0 if damage is None else float(1.0 - amorphous_fraction(local, damage, "local"))
                lo, hi = float(during.min()), float(during.max())
                levels = np.linspace(lo, hi, _FLUENCE_LEVELS) if hi > lo else np.array([lo])
                w = _interp_weights(during, levels)
                mus, models = [], []
                for h, tf, pp, tp in zip(hyps, t_fine, pristine, true_pristine):
                    if h.damage == "amorphous" and damage is not None:
                        dens_true = _damaged_densities(h, levels, damage, np.array([h.thickness]))[:, 0]
                        pat_true = patterns(w @ dens_true) * n_e  # region sum [e per pixel]
                    else:
                        pat_true = tp * (n_e * region_pixels)
                    if model_damage and h.damage == "amorphous" and damage is not None:
                        pat_m = patterns(np.tensordot(w, _damaged_densities(h, levels, damage, tf), axes=1)) * n_e
                    else:
                        pat_m = pp * (n_e * region_pixels)
                    mus.append(pat_true)
                    models.append(pat_m)
                # detector response on the region-summed expectation (rate from the mean pattern)
                stack, use_px = _respond(mus, models, detector, region_pixels)
                prof = conv.plan.integrate(stack)
                sums = np.asarray(prof.sum, float)
                count = np.broadcast_to(prof.count, sums.shape)[0]
                sel = (qb >= q_lo) & (qb <= q_hi) & np.all(np.isfinite(sums), axis=0) & (count > 0)
                if use_px is not None:
                    sel &= np.asarray(conv.plan.integrate(use_px.astype(float)).mean) > 0.999
                if np.count_nonzero(sel) < 4:
                    raise ValueError(
                        f"q_range={q_range!r}: fewer than 4 usable radial bins on this detector at {alpha} mrad"
                    )
                eff = _equivalent_counts(sums[0], count, detector, region_pixels)
                s = sums[:, sel] * eff[sel]
                mu_a, mu_b = s[0], s[1]
                na, nb = t_fine[0].size, t_fine[1].size
                mod_a, mod_b = s[2 : 2 + na], s[2 + na : 2 + na + nb]
                lam_a, sd_a, sim_a = _decide(mu_a, mod_a, mod_b, free_scale, int(n_sim), rng)
                lam_b, sd_b, sim_b = _decide(mu_b, mod_b, mod_a, free_scale, int(n_sim), rng)
                rows.append(
                    PlanRow(
                        semiangle=alpha,
                        electrons_per_pattern=n_e,
                        step=step,
                        scan_fluence=n_e / step**2,
                        local_fluence=local,
                        damage_fraction=dmg,
                        counts=float(mu_a.sum()),
                        delta_loglike_a=lam_a,
                        delta_loglike_b=lam_b,
                        sd_a=sd_a,
                        sd_b=sd_b,
                        p_correct=min(_p_correct(lam_a, sd_a), _p_correct(lam_b, sd_b)),
                        sim_mean_a=sim_a[0],
                        sim_sd_a=sim_a[1],
                        sim_sem_a=sim_a[1] / math.sqrt(n_sim) if n_sim > 1 else math.nan,
                        p_correct_sim=min(sim_a[2], sim_b[2]),
                    )  # fmt: skip
                )
    if damage is None:
        d_lim = math.inf
        study = math.inf
    else:
        # a(D) = exp(−D/D_c) in the model's fluence kind; back to local fluence
        d_model = -damage.critical_dose * math.log(1.0 - float(max_damage))
        to_local = damage.kappa if damage.threshold_kind == "scan" else 1.0
        d_lim = d_model * to_local
        study = 3600.0 * to_local
    tabulated = [h.name for h in hyps if h.thicknesses.size > 1]
    nuisance = ("free scale profiled; " if free_scale else "") + (
        f"thickness profiled over the table of {', '.join(tabulated)}" if tabulated else "no thickness parameter"
    )
    return PlanResult(
        hypotheses=(ha.name, hb.name),
        rows=tuple(rows),
        confidence=float(confidence),
        max_damage=float(max_damage),
        damage_fluence=float(d_lim),
        study_threshold_local=float(study),
        region_pixels=region_pixels,
        nuisance=nuisance,
        settings={
            "energy_eV": float(energy),
            "q_range_A^-1": (q_lo, q_hi),
            "scan_shape": scan_shape,
            "geometry": {"shape": list(geometry.shape), "pixel_size": geometry.pixel_size},
            "detector": None if detector is None else detector.name or detector.kind,
            "damage": None if damage is None else repr(damage),
            "model_damage": bool(model_damage),
            "n_sim": int(n_sim),
            "seed": seed,
            "thickness_A": {h.name: h.thickness for h in hyps},
        },  # fmt: skip
    )


def _patterns(conv, dens, psf) -> np.ndarray:
    """Density (..., n_q) [per Å⁻²] → expected fraction of the beam per pixel (..., ny, nx), detector PSF applied."""
    shape = conv.geometry.shape
    p = conv.pattern(dens) * conv.geometry.pixel_size**2
    if psf is not None:
        flat = p.reshape(-1, *shape)
        p = np.stack([ndimage.convolve(x, psf, mode="constant") for x in flat]).reshape(p.shape)
    return p


def _respond(truths, models, detector: DetectorModel | None, region_pixels: int):
    """Detector non-linearity on region-summed expected counts (rates from the per-pattern mean).

    Dead-time survival is evaluated on each hypothesis' true pattern and applied to it and to that hypothesis'
    fitted models (an analyst's model carries the same detector response; the survival is smooth in the rate,
    so evaluating it once per hypothesis is exact to first order). Returns the stack
    (truth A, truth B, models A…, models B…) and the mask of pixels below 90 % of saturation (None = all).
    """
    if detector is None:
        return np.concatenate([truths[0][None], truths[1][None], *models]), None
    use = None
    per_frame = [t / region_pixels for t in truths]
    if detector.kind == "counting":
        if detector.dead_time > 0:
            surv = []
            for pf in per_frame:
                rate = pf / detector.frame_time
                with np.errstate(divide="ignore", invalid="ignore"):
                    m = dead_time_response(rate, detector.dead_time, detector.dead_time_model)
                    surv.append(np.where(rate > 0, m / rate, 1.0))
            truths = [t * s for t, s in zip(truths, surv)]
            models = [m * s for m, s in zip(models, surv)]
            per_frame = [pf * s for pf, s in zip(per_frame, surv)]
        limit = 0.9 * saturation_value(detector)
        use = (per_frame[0] < limit) & (per_frame[1] < limit)
    elif detector.full_scale is not None:
        limit = 0.9 * detector.full_scale
        use = (per_frame[0] * detector.gain + detector.dark_offset < limit) & (
            per_frame[1] * detector.gain + detector.dark_offset < limit
        )
    return np.concatenate([truths[0][None], truths[1][None], *models]), use


def _equivalent_counts(mu_sum: np.ndarray, count: np.ndarray, detector: DetectorModel | None, region_pixels: int):
    """Factor μ/var per bin turning an integrating detector's signal into equivalent Poisson counts (1 otherwise)."""
    if detector is None or detector.kind == "counting":
        return np.ones_like(mu_sum)
    read = (detector.read_noise / detector.gain) ** 2 * np.asarray(count, float) * region_pixels
    var = (1.0 + detector.gain_spread**2) * mu_sum + read
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, mu_sum / var, 1.0)
