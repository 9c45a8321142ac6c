"""Dose-dependent beam damage of SEI Type 1: amorphous (short-range order) → crystalline Li₂O.

The study (Koh, Detsi, Stach) reports that SEI Type 1 loses its short-range order and shows Li₂O diffraction
after ≈ 3600 e/Å² of accumulated dose in SEND, while EELS fine structure (Li and O K edges) changes above
≈ 400 e/Å². It does not say whether 3600 e/Å² is a scan fluence (electrons per pattern / step area) or a
local fluence (the probe's own intensity profile); see :mod:`simkit.dose` for the two.

Kinetics (functions of a fluence D [e/Å²], see :class:`DamageModel` for each parameter's source)
------------------------------------------------------------------------------------------------
* amorphous (SRO-bearing) fraction    a(D) = exp(−D / D_c)
* Li₂O (JMAK) transformed fraction     X(D) = 1 − exp(−(k (D − D₀))ⁿ) for D > D₀, else 0
* Li₂O fraction of the material        x(D) = min(x_max · X(D), 1 − a(D))
* disordered remainder (no SRO, no crystal) r(D) = 1 − a − x
* Li₂O crystallite diameter            d(D) = d₀ + (d_max − d₀) · X(D)            [Å]
* optional fluorine/mass loss          m(D) = m_max (1 − exp(−D / D_m)) of the F atoms (structure level) or of
  the scattering mass (profile level)

Which dose drives the kinetics
------------------------------
Damage runs on the **local** accumulated fluence, and for a diffraction pattern the relevant value is the
probe-weighted local fluence ∫P(r − r_k) D(r) d²r of the material the probe sees
(``simkit.dose.accumulated_fluence_map(...).during``). The model's dose parameters (D_c, D₀, 1/k, D_m) are
quoted in the fluence named by ``threshold_kind``:

* ``"scan"`` (default, an **assumption**): the study's 3600 e/Å² is accumulated *scan* fluence, recorded under
  the reference SEND conditions (2 mrad, 300 keV, 4 nm step: ``reference_*`` fields). A local fluence is
  converted to that scale by dividing by κ = local/scan for those conditions (κ ≈ 24 for a 2 mrad probe and a
  40 Å step, see ``simkit.dose.local_to_scan_ratio``), i.e. the material actually received ≈ 24 × 3600 e/Å²
  locally. Consequence: a 0.15 mrad scan (κ = 1) needs ≈ 24 × more scan fluence for the same damage.
* ``"local"``: the parameters are local fluences (the study's number read as the local dose).

Every kinetic function takes the fluence together with its kind (``kind="local"`` by default, or
``"scan"`` meaning scan fluence under the model's reference conditions) and converts as needed.

Approximation: the damage state seen by a pattern is the kinetics evaluated at the probe-weighted mean
fluence, not the probe-weighted mean of the kinetics over the non-uniform dose under the probe; the two
agree when the local fluence is uniform over the probe footprint (dense scans, repeated passes).

Beam energy: the defaults describe 300 keV; damage cross-sections change with energy and are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from structures.checks import check_in_range, check_positive
from structures.crystals import reflection_q

__all__ = [
    "DamageModel",
    "DoseSeries",
    "amorphous_fraction",
    "crystallite_size",
    "damage_series",
    "damaged_profile",
    "dose_series",
    "li2o_powder_profile",
    "li2o_structure_factor",
    "mass_remaining",
    "model_fluence",
    "pattern_fractions",
    "phase_fractions",
    "plot_dose_series",
    "scherrer_broaden",
    "transformed_fraction",
]

#: Li₂O reference reflections (Q = 1/d [Å⁻¹]) at the cryogenic lattice constant (structures.crystals).
LI2O_111 = reflection_q("Li2O", (1, 1, 1))
LI2O_220 = reflection_q("Li2O", (2, 2, 0))
#: SEI Type 1 short-range-order peaks of the study [Å⁻¹].
TYPE1_SRO = (0.33, 0.6)


@dataclass(frozen=True, kw_only=True)
class DamageModel:
    """Parameters of the Type 1 → Li₂O damage kinetics.

    Parameters
    ----------
    threshold_kind : str
        ``"scan"`` or ``"local"``: the fluence the dose parameters below are quoted in (module docstring).
    critical_dose : float  [e/Å²]
        D_c of the amorphous decay exp(−D/D_c). Default 2500: leaves 92 % of the SRO at 200 e/Å² (< 10 %
        change, since the study sees no change at the SEND doses of its maps) and 24 % at
        3600 e/Å², where the study reports the SRO "destroyed". Reasoning, not a measurement.
    onset_dose : float  [e/Å²]
        D₀, dose before any Li₂O forms (incubation: radiolysis must first free O²⁻/Li⁺). Default 800,
        above the ≈ 400 e/Å² at which the study's EELS fine structure starts to change (chemistry changes
        before crystals appear). Reasoning.
    rate : float  [Å²/e]
        JMAK rate k. Default 1/3300: X(3600) = 0.51, half transformed at the study's threshold.
    avrami_exponent : float
        n. Default 2: site-saturated nucleation with 2-D-like (thin-lamella) growth, or 3-D diffusion-limited
        growth (n = 1.5–2.5 in the classical JMAK tables, Christian, *The Theory of Transformations in
        Metals and Alloys*, 2002); an assumption.
    max_li2o_fraction : float
        x_max in [0, 1]: the share of Type 1 material that can end as Li₂O. Default 0.8 — Type 1 is C-free
        Li–O–F–S; F and S go to other products or are lost, so not all of it can become Li₂O. Assumption.
    initial_size : float  [Å]
        d₀, diameter of the first Li₂O crystallites. Default 15 Å (≈ 3 unit cells, the smallest crystal that
        gives a Bragg peak; beam-induced Li₂O grains in cryo-EM of SEIs are 2–5 nm). Assumption.
    final_size : float  [Å]
        d_max, diameter at full transformation (≥ d₀). Default 50 Å. Assumption.
    mass_loss : float
        m_max in [0, 1]: fraction of fluorine (structure level) or of the scattering mass (profile level)
        finally lost by radiolysis/desorption. Default 0 (off).
    mass_loss_dose : float  [e/Å²]
        D_m of the mass loss. Default 5000.
    scherrer_k : float
        Scherrer constant K (0.9–1.0): Li₂O peak FWHM in Q = K / d [Å⁻¹] (Q = 1/d, no 2π).
    reference_semiangle : float  [mrad]
        Probe semi-angle of the reference SEND conditions (study: 2 mrad).
    reference_energy : float  [eV]
        Beam energy of the reference conditions (300 keV assumed).
    reference_step : float  [Å]
        Scan step of the reference conditions (study: 4 nm = 40 Å).
    """

    threshold_kind: str = "scan"
    critical_dose: float = 2500.0
    onset_dose: float = 800.0
    rate: float = 1.0 / 3300.0
    avrami_exponent: float = 2.0
    max_li2o_fraction: float = 0.8
    initial_size: float = 15.0
    final_size: float = 50.0
    mass_loss: float = 0.0
    mass_loss_dose: float = 5000.0
    scherrer_k: float = 0.9
    reference_semiangle: float = 2.0
    reference_energy: float = 300e3
    reference_step: float = 40.0

    def __post_init__(self) -> None:
        if self.threshold_kind not in ("scan", "local"):
            raise ValueError(f"threshold_kind={self.threshold_kind!r}: use 'scan' or 'local'")
        for name, unit in (
            ("critical_dose", "e/Å²"),
            ("rate", "Å²/e"),
            ("avrami_exponent", "dimensionless"),
            ("initial_size", "Å"),
            ("final_size", "Å"),
            ("mass_loss_dose", "e/Å²"),
            ("scherrer_k", "dimensionless"),
            ("reference_semiangle", "mrad"),
            ("reference_energy", "eV"),
            ("reference_step", "Å"),
        ):
            check_positive(name, getattr(self, name), unit)
        check_positive("onset_dose", self.onset_dose, "e/Å²", allow_zero=True)
        for name in ("max_li2o_fraction", "mass_loss"):
            check_in_range(name, getattr(self, name), 0.0, 1.0, "fraction")
        if self.final_size < self.initial_size:
            raise ValueError(
                f"final_size={self.final_size!r} Å must be >= initial_size={self.initial_size!r} Å (crystals grow)"
            )

    @property
    def kappa(self) -> float:
        """Probe-weighted local / scan fluence under the reference SEND conditions (dimensionless)."""
        return _kappa_ref(self.reference_semiangle, self.reference_energy, self.reference_step)


@lru_cache(maxsize=16)
def _kappa_ref(semiangle: float, energy: float, step: float) -> float:
    from simkit.dose import local_to_scan_ratio

    return local_to_scan_ratio(semiangle, energy, step)


def _fluence(fluence, name: str = "fluence") -> np.ndarray:
    d = np.asarray(fluence, dtype=float)
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"{name}={fluence!r}: doses must be finite and >= 0 [e/Å²]")
    return d


def model_fluence(fluence, model: DamageModel, kind: str = "local") -> np.ndarray:
    """Express a fluence in the kind the model's dose parameters are quoted in.

    Parameters
    ----------
    fluence : float or ndarray  [e/Å²]
        Accumulated fluence, >= 0.
    model : DamageModel
    kind : str
        ``"local"`` (probe-weighted local fluence) or ``"scan"`` (scan fluence under the model's reference
        SEND conditions).

    Returns
    -------
    ndarray  [e/Å²]
        Local → scan divides by ``model.kappa``; scan → local multiplies; same kind unchanged.
    """
    d = _fluence(fluence)
    if kind not in ("local", "scan"):
        raise ValueError(f"kind={kind!r}: use 'local' or 'scan'")
    if kind == model.threshold_kind:
        return d
    return d / model.kappa if kind == "local" else d * model.kappa


def amorphous_fraction(fluence, model: DamageModel, kind: str = "local") -> np.ndarray:
    """Fraction of the Type 1 material that keeps its short-range order, a(D) = exp(−D/D_c).

    Parameters
    ----------
    fluence : float or ndarray  [e/Å²]
    model : DamageModel
    kind : str
        ``"local"`` or ``"scan"`` (see :func:`model_fluence`).

    Returns
    -------
    ndarray  [fraction]
    """
    return np.exp(-model_fluence(fluence, model, kind) / model.critical_dose)


def transformed_fraction(fluence, model: DamageModel, kind: str = "local") -> np.ndarray:
    """JMAK transformed fraction X(D) = 1 − exp(−(k (D − D₀))ⁿ) for D > D₀, else 0.

    Parameters
    ----------
    fluence : float or ndarray  [e/Å²]
    model : DamageModel
    kind : str
        ``"local"`` or ``"scan"`` (see :func:`model_fluence`).

    Returns
    -------
    ndarray  [fraction in [0, 1]]
        Monotonic non-decreasing in dose; the Li₂O fraction of the material is ``x_max · X`` (bounded by
        the amorphous material already lost, :func:`phase_fractions`).
    """
    d = model_fluence(fluence, model, kind)
    t = np.maximum(d - model.onset_dose, 0.0) * model.rate
    return -np.expm1(-(t**model.avrami_exponent))


def phase_fractions(fluence, model: DamageModel, kind: str = "local") -> dict[str, np.ndarray]:
    """Amorphous, Li₂O and disordered fractions of the Type 1 material (they sum to 1).

    Parameters
    ----------
    fluence : float or ndarray  [e/Å²]
    model : DamageModel
    kind : str
        ``"local"`` or ``"scan"``.

    Returns
    -------
    dict with ``"amorphous"``, ``"li2o"``, ``"disordered"`` : ndarray  [fraction]
        x = min(x_max · X, 1 − a): Li₂O can only form from material that has lost its SRO.
    """
    a = amorphous_fraction(fluence, model, kind)
    x = np.minimum(model.max_li2o_fraction * transformed_fraction(fluence, model, kind), 1.0 - a)
    return {"amorphous": a, "li2o": x, "disordered": np.maximum(1.0 - a - x, 0.0)}


def crystallite_size(fluence, model: DamageModel, kind: str = "local") -> np.ndarray:
    """Li₂O crystallite diameter d(D) = d₀ + (d_max − d₀) · X(D).

    Parameters
    ----------
    fluence : float or ndarray  [e/Å²]
    model : DamageModel
    kind : str
        ``"local"`` or ``"scan"``.

    Returns
    -------
    ndarray  [Å]
    """
    return model.initial_size + (model.final_size - model.initial_size) * transformed_fraction(fluence, model, kind)


def mass_remaining(fluence, model: DamageModel, kind: str = "local") -> np.ndarray:
    """Fraction of the lossy species (F) or scattering mass left, 1 − m_max (1 − exp(−D/D_m)).

    Parameters
    ----------
    fluence : float or ndarray  [e/Å²]
    model : DamageModel
    kind : str

    Returns
    -------
    ndarray  [fraction]
    """
    d = model_fluence(fluence, model, kind)
    return 1.0 - model.mass_loss * (-np.expm1(-d / model.mass_loss_dose))


def pattern_fractions(fluence_map, model: DamageModel, *, when: str = "during") -> dict[str, np.ndarray]:
    """Damage state seen by every pattern of a raster scan, from its probe-weighted local fluence history.

    Parameters
    ----------
    fluence_map : simkit.dose.FluenceMap
        From ``simkit.dose.accumulated_fluence_map``.
    model : DamageModel
    when : str
        ``"before"`` (dose received before the exposure), ``"during"`` (mean over the exposure, default:
        the pattern integrates while its own electrons arrive) or ``"after"``.

    Returns
    -------
    dict of ndarray, shape (passes, scan_y, scan_x)
        ``"fluence"`` [e/Å², local, probe-weighted], ``"amorphous"``, ``"li2o"``, ``"disordered"``
        [fractions] and ``"crystallite_size"`` [Å].
    """
    if when not in ("before", "during", "after"):
        raise ValueError(f"when={when!r}: use 'before', 'during' or 'after'")
    d = np.asarray(getattr(fluence_map, when), float)
    out = dict(phase_fractions(d, model, "local"))
    out["fluence"] = d
    out["crystallite_size"] = crystallite_size(d, model, "local")
    return out


# ----------------------------------------------------------------------------------------------------------
# profile level
# ----------------------------------------------------------------------------------------------------------
def scherrer_broaden(q, iq, fwhm: float) -> np.ndarray:
    """Convolve a profile with a unit-area Gaussian of given FWHM in Q (Scherrer size broadening).

    Parameters
    ----------
    q : ndarray, shape (n_q,)  [Å⁻¹]
        Increasing grid (need not be uniform).
    iq : ndarray, shape (..., n_q)
    fwhm : float  [Å⁻¹]
        K / L for crystallite size L [Å] (Q = 1/d, no 2π).

    Returns
    -------
    ndarray, shape of ``iq``
        ∫ I(q') G(q − q') dq' by trapezoid weights on the grid, renormalised row by row so that a flat
        profile stays flat near the grid ends.
    """
    q = np.asarray(q, float)
    iq = np.asarray(iq, float)
    s = float(fwhm) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    if s <= 0:
        return iq.copy()
    w = np.gradient(q)
    g = np.exp(-0.5 * ((q[:, None] - q[None, :]) / s) ** 2) * w[None, :]
    g /= g.sum(axis=1, keepdims=True)
    return iq @ g.T


def li2o_structure_factor(q_hkl, hkl_sum_parity: int, *, parametrization: str = "lobato") -> np.ndarray:
    """Antifluorite Li₂O structure factor of a reflection family, F = 4 [f_O + 2 f_Li cos(π(h+k+l)/2)].

    Parameters
    ----------
    q_hkl : float or ndarray  [Å⁻¹]
        Q of the reflection.
    hkl_sum_parity : int
        h + k + l (all-even or all-odd indices; mixed ones are extinct by the F centring).
    parametrization : str
        Electron scattering factors of ``simkit.kinematic.scattering_factor``.

    Returns
    -------
    ndarray  [Å]
        111, 311: 4 f_O; 200: 4 (f_O − 2 f_Li) (weak); 220: 4 (f_O + 2 f_Li).
    """
    from simkit.kinematic import scattering_factor

    q = np.atleast_1d(np.asarray(q_hkl, float))
    f_o = scattering_factor("O", q, parametrization=parametrization)
    f_li = scattering_factor("Li", q, parametrization=parametrization)
    return 4.0 * (f_o + 2.0 * f_li * np.cos(np.pi * hkl_sum_parity / 2.0))


def li2o_powder_profile(
    q,
    size: float,
    *,
    b_factor: float = 0.5,
    scherrer_k: float = 0.9,
    temperature: str | float = "cryo",
    parametrization: str = "lobato",
) -> np.ndarray:
    """Analytic powder profile of Li₂O crystallites of a given size, per atom.

    I(Q) = Σ_hkl m |F|² e^{−B Q²/2} G(Q − Q_hkl) / (n_at V_c 4π Q²) + ⟨f²⟩ (1 − e^{−B Q²/2})
    (Bragg rings of a random powder, intensity per atom in the Debye normalisation; the second term is the
    thermal-diffuse background that the Debye–Waller factor removes from the peaks). G is a unit-area
    Gaussian of FWHM K/size.

    Parameters
    ----------
    q : ndarray, shape (n_q,)  [Å⁻¹]
    size : float  [Å]
        Crystallite diameter L.
    b_factor : float  [Å²]
        Isotropic Debye–Waller B (intensity factor exp(−2B s²), s = Q/2). Default 0.5 Å² — assumption for
        Li₂O near 100 K.
    scherrer_k : float
        K in FWHM = K / L [Å⁻¹].
    temperature : str or float
        Lattice constant of ``structures.crystals`` ("cryo" by default: a = 4.600 Å).
    parametrization : str

    Returns
    -------
    ndarray, shape (n_q,)  [Å² per atom]
    """
    from simkit.kinematic import scattering_factor
    from structures.crystals import lattice_constant, reflections

    q = np.asarray(q, float)
    size = check_positive("size", size, "Å")
    a = lattice_constant("Li2O", temperature)
    sigma = scherrer_k / size / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    q_max = float(q.max()) + 5 * sigma
    dw = np.exp(-b_factor * q**2 / 2.0)
    out = np.zeros_like(q)
    n_at, vol = 12, a**3
    for hkl, q0, mult in reflections("Li2O", temperature, q_max=q_max):
        f = li2o_structure_factor(q0, sum(hkl), parametrization=parametrization)[0]
        g = np.exp(-0.5 * ((q - q0) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        out += mult * f * f * math.exp(-b_factor * q0**2 / 2.0) * g / (n_at * vol * 4.0 * math.pi * q0**2)
    f2 = (
        2.0 * scattering_factor("Li", q, parametrization=parametrization) ** 2
        + scattering_factor("O", q, parametrization=parametrization) ** 2
    ) / 3.0
    return out + f2 * (1.0 - dw)


def damaged_profile(
    q,
    type1_iq,
    li2o,
    fluence,
    model: DamageModel,
    *,
    kind: str = "local",
    disordered_iq=None,
) -> np.ndarray:
    """Profile of partly transformed Type 1: amorphous, Li₂O and disordered parts mixed by their fractions.

    I(Q; D) = m(D) [a(D) I₁(Q) + x(D) I_Li₂O(Q; d(D)) + r(D) I_dis(Q)], all per atom [Å²/atom].

    Parameters
    ----------
    q : ndarray, shape (n_q,)  [Å⁻¹]
    type1_iq : ndarray, shape (n_q,)  [Å² per atom]
        Undamaged Type 1 profile (e.g. ``simkit.kinematic.debye_intensity`` of ``type1_sei``).
    li2o : callable or ndarray
        ``li2o(q, size)`` → I(Q) [Å²/atom] of crystallites of diameter ``size`` [Å] that already contains the
        size broadening (e.g. :func:`li2o_powder_profile` or a Debye sum of a nanocrystal), or an array on
        ``q`` of a large-crystal profile, which is then Scherrer-broadened with FWHM = K / d(D).
    fluence : float or ndarray  [e/Å²]
        Accumulated fluence(s); an array gives one profile per value.
    model : DamageModel
    kind : str
        ``"local"`` or ``"scan"`` (see :func:`model_fluence`).
    disordered_iq : ndarray or None  [Å² per atom]
        Profile of the disordered remainder; default: ``type1_iq`` smoothed by a Gaussian of FWHM 0.2 Å⁻¹,
        which removes the SRO oscillation but keeps the low-Q deficit of a dense solid (the bare self term
        ⟨f²⟩ would overestimate the low-Q intensity of a dense disordered material).

    Returns
    -------
    ndarray, shape ``fluence.shape + (n_q,)``  [Å² per atom]
    """
    q = np.asarray(q, float)
    i1 = np.asarray(type1_iq, float)
    if q.ndim != 1 or i1.shape != q.shape:
        raise ValueError(f"type1_iq: shape {i1.shape} must equal the q grid's {q.shape}")
    if np.any(~np.isfinite(i1)):
        raise ValueError("type1_iq: must be finite")
    d = _fluence(fluence)
    fr = phase_fractions(d, model, kind)
    size = crystallite_size(d, model, kind)
    mass = mass_remaining(d, model, kind)
    i_dis = scherrer_broaden(q, i1, 0.2) if disordered_iq is None else np.asarray(disordered_iq, float)
    if i_dis.shape != q.shape:
        raise ValueError(f"disordered_iq: shape {i_dis.shape} must equal the q grid's {q.shape}")
    out = np.empty(d.shape + q.shape)
    cache: dict[float, np.ndarray] = {}
    for idx in np.ndindex(d.shape):
        L = float(size[idx])
        if L not in cache:
            if callable(li2o):
                cache[L] = np.asarray(li2o(q, L), float)
            else:
                arr = np.asarray(li2o, float)
                if arr.shape != q.shape:
                    raise ValueError(f"li2o: array shape {arr.shape} must equal the q grid's {q.shape}")
                cache[L] = scherrer_broaden(q, arr, model.scherrer_k / L)
        out[idx] = mass[idx] * (fr["amorphous"][idx] * i1 + fr["li2o"][idx] * cache[L] + fr["disordered"][idx] * i_dis)
    return out


# ----------------------------------------------------------------------------------------------------------
# structure level
# ----------------------------------------------------------------------------------------------------------
def damage_series(
    atoms,
    doses,
    model: DamageModel | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    kind: str = "local",
    gap: float = 1.0,
    max_size_fraction: float = 0.8,
) -> list:
    """Structures of a Type 1 model at each dose: amorphous regions replaced by Li₂O nanocrystallites.

    At each dose, x(D) of the cell volume is converted: spheres of the current crystallite diameter d(D) are
    nucleated at random centres (minimum image) until their union covers x(D) of the cell (Poisson
    nucleation with impingement, the picture behind JMAK kinetics; impinging grains meet at a boundary where
    the later grain's atoms inside the earlier one are dropped), the amorphous atoms within d/2 + ``gap`` of
    a centre are removed (whole rigid units when the model carries ``arrays["unit_id"]``), and randomly
    oriented Li₂O nanocrystals (``structures.crystals.nanocrystal``) are inserted. A fraction 1 − m(D) of the
    remaining F atoms is removed when ``model.mass_loss > 0``. The loss of SRO in the disordered remainder
    is not represented at this level (use :func:`damaged_profile`).

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic amorphous Type 1 model (e.g. ``structures.amorphous.type1_sei``).
    doses : sequence of float  [e/Å²]
        Accumulated fluences.
    model : DamageModel or None
        Default ``DamageModel()``.
    rng : numpy.random.Generator or int or None
        Positions, orientations and removals (seeded runs repeat).
    kind : str
        ``"local"`` or ``"scan"`` fluence (see :func:`model_fluence`).
    gap : float  [Å]
        Extra clearance between inserted crystals and remaining amorphous atoms.
    max_size_fraction : float
        Crystallite diameters are capped at this fraction of the smallest cell length (stated in ``info``).

    Returns
    -------
    list of ase.Atoms
        Same cell and pbc as ``atoms`` (an abTEM-ready ensemble); ``info`` holds dose [e/Å²], dose_kind,
        li2o_fraction (target), li2o_volume_fraction (realised), crystallite_size [Å], n_crystallites,
        amorphous_fraction, f_removed.
    """
    from ase import Atoms

    from structures.crystals import nanocrystal

    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms={type(atoms).__name__}: expected an ase.Atoms periodic amorphous model")
    if not all(atoms.pbc):
        raise ValueError("atoms: the amorphous model must be periodic in x, y and z (pbc all True)")
    cell = atoms.cell.array
    if not np.allclose(cell, np.diag(np.diag(cell))):
        raise ValueError("atoms: only orthorhombic cells are supported")
    model = DamageModel() if model is None else model
    rng = np.random.default_rng(rng)
    d_arr = _fluence(doses, "doses")
    if d_arr.ndim != 1:
        raise ValueError(f"doses: give a 1-D sequence of fluences [e/Å²], got shape {d_arr.shape}")
    box = np.diag(cell).astype(float)
    volume = float(np.prod(box))
    fr = phase_fractions(d_arr, model, kind)
    sizes = np.minimum(crystallite_size(d_arr, model, kind), max_size_fraction * box.min())
    mass = mass_remaining(d_arr, model, kind)
    unit_id = atoms.arrays.get("unit_id")
    out = []
    for i, dose in enumerate(d_arr):
        x, size = float(fr["li2o"][i]), float(sizes[i])
        v_sphere = math.pi * size**3 / 6.0
        # Poisson nucleation with impingement (the JMAK picture): spheres at random centres until their union
        # covers the target volume fraction, measured on random sample points; overlapping grains share the
        # union (atoms of a later grain inside an earlier grain are dropped)
        probe = rng.random((20000, 3)) * box
        covered = np.zeros(len(probe), bool)
        centres = []
        while covered.mean() < x - 0.5 * v_sphere / volume and len(centres) < 10000:
            c = rng.random(3) * box
            covered |= np.linalg.norm(_min_image(probe - c, box), axis=1) < size / 2.0
            centres.append(c)
        pos = atoms.positions
        remove = np.zeros(len(atoms), bool)
        for c in centres:
            remove |= np.linalg.norm(_min_image(pos - c, box), axis=1) < size / 2.0 + gap
        if unit_id is not None and remove.any():
            remove |= np.isin(unit_id, np.unique(unit_id[remove]))
        keep = ~remove
        if model.mass_loss > 0:
            f_idx = np.nonzero(keep & (atoms.numbers == 9))[0]
            n_lost = int(round((1.0 - float(mass[i])) * f_idx.size))
            keep[rng.choice(f_idx, size=n_lost, replace=False)] = False
        else:
            n_lost = 0
        new = atoms[keep]
        next_unit = (int(unit_id.max()) + 1) if unit_id is not None and unit_id.size else 0
        for j, c in enumerate(centres):
            nc = nanocrystal("Li2O", size, orientation="random", rng=rng, vacuum=2.0)
            p = nc.positions - np.diag(nc.cell.array) / 2.0 + c
            inside_earlier = np.zeros(len(p), bool)
            for c0 in centres[:j]:
                inside_earlier |= np.linalg.norm(_min_image(p - c0, box), axis=1) < size / 2.0 + gap / 2.0
            add = Atoms(numbers=nc.numbers[~inside_earlier], positions=p[~inside_earlier], cell=atoms.cell, pbc=True)
            if unit_id is not None:
                add.arrays["unit_id"] = np.full(len(add), next_unit)
                next_unit += 1
            new += add
        new.wrap()
        new.info = dict(atoms.info)
        new.info.update(
            dose=float(dose),
            dose_kind=kind,
            damage_threshold_kind=model.threshold_kind,
            li2o_fraction=x,
            li2o_volume_fraction=float(covered.mean()),
            crystallite_size=size,
            crystallite_size_capped=bool(size < float(crystallite_size(dose, model, kind))),
            n_crystallites=len(centres),
            amorphous_fraction=float(fr["amorphous"][i]),
            f_removed=n_lost,
        )
        out.append(new)
    return out


def _min_image(v: np.ndarray, box: np.ndarray) -> np.ndarray:
    return v - box * np.round(v / box)


# ----------------------------------------------------------------------------------------------------------
# dose series
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class DoseSeries:
    """Radial profiles of damaged Type 1 versus accumulated dose.

    Attributes
    ----------
    doses : ndarray, shape (n_d,)  [e/Å²]
        Accumulated fluence as given (kind ``dose_kind``).
    dose_kind : str
        ``"scan"`` or ``"local"``.
    local_fluence : ndarray, shape (n_d,)  [e/Å²]
        Probe-weighted local accumulated fluence that drives the kinetics.
    q : ndarray, shape (n_q,)  [Å⁻¹]
        Grid of the unconvolved profiles.
    profiles : ndarray, shape (n_d, n_q)  [Å² per atom]
        Unconvolved damaged profiles.
    q_probe : ndarray, shape (n_b,)  [Å⁻¹]
        Bin centres of the probe-convolved profiles (through ``simkit.radial``).
    profiles_probe : ndarray, shape (n_d, n_b)  [Å² per atom]
        Profiles as recorded with the probe (``simkit.kinematic.probe_convolve``).
    amorphous_fraction, li2o_fraction, crystallite_size : ndarray, shape (n_d,)
        [fraction], [fraction], [Å].
    semiangle : float  [mrad]
    energy : float  [eV]
    step : float  [Å]
    model : DamageModel
    """

    doses: np.ndarray
    dose_kind: str
    local_fluence: np.ndarray
    q: np.ndarray
    profiles: np.ndarray
    q_probe: np.ndarray
    profiles_probe: np.ndarray
    amorphous_fraction: np.ndarray
    li2o_fraction: np.ndarray
    crystallite_size: np.ndarray
    semiangle: float
    energy: float
    step: float
    model: DamageModel


def dose_series(
    doses,
    *,
    type1=None,
    q=None,
    model: DamageModel | None = None,
    semiangle: float = 2.0,
    energy: float = 300e3,
    step: float = 40.0,
    dose_kind: str = "scan",
    li2o: str = "analytic",
    rng: np.random.Generator | int | None = None,
) -> DoseSeries:
    """Type 1 profiles versus accumulated dose: the SRO peak fades, Li₂O 111 (0.377) and 220 (0.615 Å⁻¹ at 100 K) rise.

    Parameters
    ----------
    doses : sequence of float  [e/Å²]
        Accumulated fluences (``dose_kind``), e.g. ``[0, 200, 1000, 2000, 3600, 6000]``.
    type1 : ase.Atoms, or (q, iq) tuple, or None
        Undamaged Type 1: atoms (Debye I(Q) through ``simkit.kinematic.debye_intensity``), or a profile
        ``(q, iq)`` on its own grid (interpolated to ``q``), or None to build
        ``structures.amorphous.type1_sei(n_atoms=1000, rng=rng)`` (slow: tens of seconds). The disordered
        remainder scatters as the Type 1 profile smoothed by 0.2 Å⁻¹ (see :func:`damaged_profile`).
    q : ndarray or None  [Å⁻¹]
        Grid of the unconvolved profiles; default 0.05–1.0 Å⁻¹ in 0.0025 steps.
    model : DamageModel or None
    semiangle : float  [mrad]
        Probe semi-angle of the series (2 mrad: the study's SEND maps).
    energy : float  [eV]
    step : float  [Å]
        Scan step; with ``dose_kind="scan"`` the local fluence is κ(semiangle, energy, step) × dose.
    dose_kind : str
        ``"scan"`` (accumulated scan fluence of repeated passes) or ``"local"``.
    li2o : str
        ``"analytic"`` (:func:`li2o_powder_profile`) or ``"debye"`` (Debye sum of a
        ``structures.crystals.nanocrystal("Li2O", d)`` of the current size).
    rng : numpy.random.Generator or int or None

    Returns
    -------
    DoseSeries
    """
    from simkit.dose import local_to_scan_ratio
    from simkit.kinematic import debye_intensity, probe_convolve

    model = DamageModel() if model is None else model
    d = _fluence(doses, "doses")
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"doses: give a non-empty 1-D sequence of fluences [e/Å²], got shape {d.shape}")
    if dose_kind not in ("scan", "local"):
        raise ValueError(f"dose_kind={dose_kind!r}: use 'scan' or 'local'")
    if li2o not in ("analytic", "debye"):
        raise ValueError(f"li2o={li2o!r}: use 'analytic' or 'debye'")
    q = np.arange(0.05, 1.0 + 1e-9, 0.0025) if q is None else np.asarray(q, float)
    rng = np.random.default_rng(rng)
    if type1 is None:
        from structures.amorphous import type1_sei

        type1 = type1_sei(n_atoms=1000, rng=rng)
    if isinstance(type1, tuple):
        q1, i1 = (np.asarray(v, float) for v in type1)
        type1_iq = np.interp(q, q1, i1)
    else:
        type1_iq = debye_intensity(type1, q)
    local = d * local_to_scan_ratio(semiangle, energy, step) if dose_kind == "scan" else d
    if li2o == "analytic":

        def li2o_fn(qq, size):
            return li2o_powder_profile(qq, size, scherrer_k=model.scherrer_k)

    else:
        from structures.crystals import nanocrystal

        def li2o_fn(qq, size):
            return debye_intensity(nanocrystal("Li2O", size, rng=rng), qq)

    prof = damaged_profile(q, type1_iq, li2o_fn, local, model, kind="local")
    conv = probe_convolve(q, prof, semiangle=semiangle, energy=energy)
    fr = phase_fractions(local, model, "local")
    return DoseSeries(
        doses=d,
        dose_kind=dose_kind,
        local_fluence=local,
        q=q,
        profiles=prof,
        q_probe=np.asarray(conv.q),
        profiles_probe=np.asarray(conv.mean),
        amorphous_fraction=fr["amorphous"],
        li2o_fraction=fr["li2o"],
        crystallite_size=crystallite_size(local, model, "local"),
        semiangle=float(semiangle),
        energy=float(energy),
        step=float(step),
        model=model,
    )


def plot_dose_series(series: DoseSeries, *, n: float = 1.0, probe: bool = True, q_range=(0.15, 0.9)):
    """Plot I·Qⁿ versus Q for each dose, with the Type 1 SRO and Li₂O reflection positions marked.

    Parameters
    ----------
    series : DoseSeries
    n : float
        Power of the Q weighting (1: the study's I·Q curves).
    probe : bool
        Plot the probe-convolved profiles (as recorded) or the unconvolved ones.
    q_range : (float, float)  [Å⁻¹]

    Returns
    -------
    matplotlib.figure.Figure
        Two panels: profiles (colour = dose) and phase fractions / crystallite size versus dose. Built
        without pyplot (safe under the Agg backend and in threads).
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if not isinstance(series, DoseSeries):
        raise TypeError(f"series={type(series).__name__}: expected a DoseSeries from dose_series()")
    q = series.q_probe if probe else series.q
    prof = series.profiles_probe if probe else series.profiles
    sel = (q >= q_range[0]) & (q <= q_range[1])
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.6, 1])
    cmap = colormaps["viridis"]
    nd = len(series.doses)
    for i in range(nd):
        y = prof[i, sel] * q[sel] ** n
        ax.plot(q[sel], y, color=cmap(i / max(nd - 1, 1)), label=f"{series.doses[i]:g} e/Å² ({series.dose_kind})")
    for x0, lab in ((TYPE1_SRO[0], "SRO 0.33"), (LI2O_111, "Li₂O 111"), (LI2O_220, "Li₂O 220")):
        ax.axvline(x0, color="0.5", ls=":" if lab.startswith("SRO") else "--", lw=0.8)
        ax.text(x0, 1.0, lab, rotation=90, va="top", ha="right", fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_xlabel("Q = 1/d [Å⁻¹]")
    power = "" if n == 1 else f"$^{{{n:g}}}$"
    unit = "Å" if 2 - n == 1 else ("1" if 2 - n == 0 else f"Å$^{{{2 - n:g}}}$")
    ax.set_ylabel(f"I·Q{power} [{unit} per atom]")
    kind = f"{series.semiangle:g} mrad probe" if probe else "no probe"
    ax.set_title(f"SEI Type 1 under the beam ({kind}, step {series.step:g} Å)")
    ax.legend(fontsize=7)
    x = series.doses
    ax2.plot(x, series.amorphous_fraction, "o-", label="amorphous (SRO)")
    ax2.plot(x, series.li2o_fraction, "s-", label="Li₂O")
    ax2.set_xlabel(f"accumulated {series.dose_kind} fluence [e/Å²]")
    ax2.set_ylabel("fraction")
    ax2.set_ylim(-0.02, 1.02)
    ax3 = ax2.twinx()
    ax3.plot(x, series.crystallite_size, "^:", color="C3", label="Li₂O size")
    ax3.set_ylabel("crystallite diameter [Å]", color="C3")
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center")  # above the crossing curves
    return fig
