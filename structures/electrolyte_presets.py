"""The reference study's three electrolytes as vitrified-liquid models, and the molecules they need.

Electrolytes (:data:`ELECTROLYTES`, :func:`study_electrolyte`):

``"hce"`` — 4.6 m LiFSI + 2.3 m LiTFSI in DME (the study's high-concentration electrolyte), built by
:func:`structures.electrolyte.electrolyte` (molality arithmetic and density estimate ≈ 1.30 g/cm³ in its docstring).

``"lifsi_1m"`` — 1 M LiFSI in DME (molarity, mol per litre of solution). No measured density is known to us:
**estimate** by ideal mixing of molar volumes. Per litre of solution: 1 mol LiFSI occupies V_φ = 100 cm³
(apparent molar volume of Li imide salts, the value :mod:`structures.electrolyte` uses), so DME fills
1000 − 100 = 900 cm³ = 900 · 0.8683 = 781.5 g = 781.5 / 90.122 = 8.671 mol. Mass 781.5 + 187.07 = 968.5 g →
ρ ≈ 0.969 g/cm³ (±0.03). Ratio LiFSI : DME = 1 : 8.67; molality 1 / 0.7815 kg = 1.28 m.

``"lipf6_1m"`` — 1 M LiPF₆ in EC/DEC 1:1. The study does not say by volume or by weight. The common
commercial "LP40" (BASF/Merck Selectilyte) is 1 M LiPF₆ in EC:DEC 1:1 **by weight**; Sigma-Aldrich's battery-grade
"1.0 M LiPF₆ in EC/DEC = 50/50 (v/v)" is **by volume**. Default here: by volume (the product typical of US
academic labs; ``solvent_basis="weight"`` gives LP40). Density: **estimate** by ideal mixing — EC 88.062 g/mol,
1.321 g/cm³ (liquid at 40 °C; EC melts at 36 °C), DEC 118.132 g/mol, 0.975 g/cm³ (25 °C), apparent molar volume
of LiPF₆ in carbonates V_φ ≈ 60 cm³/mol (hypothesis, ±15 cm³/mol). Per litre of solution (v/v 1:1): solvents
fill 1000 − 60 = 940 cm³, 470 cm³ each → EC 470 · 1.321 = 620.9 g = 7.051 mol, DEC 470 · 0.975 = 458.3 g =
3.879 mol; mass 620.9 + 458.3 + 151.91 = 1231.1 g → ρ ≈ 1.23 g/cm³ (within the 1.2–1.3 g/cm³ usually quoted for
1 M LiPF₆ in carbonate blends). Ratio LiPF₆ : EC : DEC = 1 : 7.05 : 3.88. By weight (LP40): 1079.2 g solvent
split 539.6 g each → EC 6.128 mol, DEC 4.568 mol (same density estimate to ±1 %).

Molecular geometries (rigid; values rounded to 0.01 Å / 0.5°, the diffraction needs ~1 %):

* EC (ethylene carbonate, C₃H₄O₃) — planar C₂ᵥ ring (the real ring is slightly twisted, ≈ 0.1 Å out of plane):
  C=O 1.19 Å, C(carbonyl)–O(ring) 1.33 Å, O–CH₂ 1.45 Å, C–C 1.52 Å, O–C–O 111°, C–H 1.09 Å; the ring's
  remaining angles follow from closure. Values typical of the crystal structure (Brown 1954, Acta Cryst. 7, 92)
  and gas-phase/DFT structures of EC (hypothesis-grade, ±0.02 Å).
* DEC (diethyl carbonate, C₅H₁₀O₃) — cis-cis conformer (both ethyls cis to C=O, the lowest-energy form),
  C–O–C–C trans; C=O 1.20, C–O 1.34, O–CH₂ 1.45, C–C 1.51, C–H 1.09 Å; O=C–O 125°, C–O–C 116°, O–C–C 108°
  (standard ester/carbonate values, e.g. Allen et al. 1987, J. Chem. Soc. Perkin Trans. 2, S1).
* PF₆⁻ — regular octahedron, P–F 1.59 Å (hexafluorophosphate salts: 1.58–1.60 Å; free-ion DFT is ≈ 0.03 Å
  longer).

SEI fragments (used by :mod:`structures.sei_variants`; geometries hypothesis-grade):

* CO₃²⁻ (Li₂CO₃) — trigonal planar, C–O 1.29 Å (carbonates: 1.28–1.30 Å).
* CH₃O⁻ (LiOCH₃, a DME reduction product) — C–O 1.40 Å, C–H 1.09 Å, tetrahedral H.
* EtOCO₂⁻ (lithium ethyl carbonate, C₂H₅OCO₂Li, the ROCO₂Li of DEC reduction) — carboxylate-like C–O 1.26 Å
  (×2, O–C–O 128°), C–O(ester) 1.37 Å, O–CH₂ 1.45 Å, C–C 1.51 Å.

Partial charges (for the optional Buckingham + Coulomb relaxation of :mod:`structures.amorphous` only;
hypotheses): CO₃²⁻ C +0.7, O −0.9; CH₃O⁻ O −1.0, C and H 0; EtOCO₂⁻ carboxylate O −0.8, C +0.8, ester O −0.4,
CH₂ carbon +0.2; PF₆⁻ P +1.0, F −1/3; EC and DEC 0 (never relaxed with charges).

Why the HCE model's SRO peak sits at ≈ 0.245 Å⁻¹ (2 mrad probe, I·Q) rather than the study's 0.285 (measured
with :func:`simkit.electrolyte_comparison.profile_decomposition`, 2000-atom models, two seeds each): the maximum of a
recorded I·Q is a compromise between the atomic self term ⟨f²⟩·Q, whose own maximum after the 2 mrad probe is at
0.2975 Å⁻¹ for this composition (no structure in it), and the distinct (intermolecular) part, whose maximum is at
≈ 0.23 Å⁻¹ (molecule spacing ≈ 5.4 Å). Density is the main lever: 1.30 → 0.245, 1.45 → 0.26, 1.60 →
0.2775 g/cm³ → Å⁻¹ (≈ 0.1 Å⁻¹ per g/cm³), so 0.285 would need ≈ 1.7 g/cm³, +30 % over the estimate — more than
vitrification plausibly adds (+5–15 %). Box size is not it (1500 vs 3000 atoms: same within the ±0.005 Å⁻¹ seed
scatter), nor is Li⁺–anion coordination (rigid-ion relaxation of the packed electrolyte moves the peak by
−0.005 Å⁻¹). Composition matters: 1 M LiFSI/DME at 0.97 g/cm³ peaks higher (≈ 0.255) than the HCE, because
its distinct peak (DME–DME) is at higher Q than the HCE's anion-rich one. So the remaining gap is structural —
random rigid packing without a force field puts intermolecular correlations at too low Q — or lies in how the
study's profiles were processed ("after signal enhancement", not specified). electrolyte.py is left unchanged.

These units live in :data:`STUDY_UNITS` and are made known to the packing engine only inside the
:func:`study_units` context (the builders here and in :mod:`structures.sei_variants` enter it), because
:mod:`structures.units_library` is not ours to edit; they belong there (reported to the lead).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from . import units_library
from .checks import AVOGADRO, check_positive
from .electrolyte import electrolyte as _hce_electrolyte
from .electrolyte import solution
from .units_library import get_unit, make_unit, zmatrix_to_xyz

__all__ = [
    "ELECTROLYTES",
    "ElectrolyteSpec",
    "SALT_UNITS",
    "SOLVENT_DENSITY",
    "STUDY_UNITS",
    "counts_from_molarity",
    "molarity_composition",
    "get_study_unit",
    "study_units",
    "study_electrolyte",
]


# ================================================================================================================
# molecules
# ================================================================================================================
def _ec() -> np.ndarray:
    """EC: C1 (carbonyl), O1 (exo), O2, O3 (ring), C2, C3 (CH2), then H on C2 (2), H on C3 (2)."""
    c_o_ring, o_ch2, cc, co_exo, ch, ang = 1.33, 1.45, 1.52, 1.19, 1.09, 111.0
    h = 0.5 * ang * np.pi / 180.0
    xo = c_o_ring * np.sin(h)
    y1 = np.sqrt(o_ch2**2 - (xo - cc / 2) ** 2) + c_o_ring * np.cos(h)  # ring closure through O–CH2
    c1 = np.array([0.0, y1, 0.0])
    o2 = np.array([xo, y1 - c_o_ring * np.cos(h), 0.0])
    o3 = o2 * [-1, 1, 1]
    c2 = np.array([cc / 2, 0.0, 0.0])
    c3 = c2 * [-1, 1, 1]
    o1 = c1 + [0.0, co_exo, 0.0]
    hs = []
    for c, o, other in ((c2, o2, c3), (c3, o3, c2)):
        out = 2 * c - o - other
        out /= np.linalg.norm(out)
        t = np.radians(109.47 / 2)
        for s in (1, -1):
            hs.append(c + ch * (np.cos(t) * out + s * np.sin(t) * np.array([0.0, 0.0, 1.0])))
    return np.vstack([c1, o1, o2, o3, c2, c3, *hs])


def _dec() -> np.ndarray:
    """DEC: C0 (carbonyl), O1 (=O), O2, O3, C4 (CH2), C5 (CH3), C6 (CH2), C7 (CH3), then 10 H."""
    t = 109.47
    rows = [
        (),
        (0, 1.20),
        (0, 1.34, 1, 125.0),
        (0, 1.34, 1, 125.0, 2, 180.0),
        (2, 1.45, 0, 116.0, 1, 0.0),
        (4, 1.51, 2, 108.0, 0, 180.0),
        (3, 1.45, 0, 116.0, 1, 0.0),
        (6, 1.51, 3, 108.0, 0, 180.0),
    ]
    for ch2, o, cme in ((4, 2, 5), (6, 3, 7)):
        rows += [(ch2, 1.09, o, t, 0, 60.0), (ch2, 1.09, o, t, 0, -60.0)]
        rows += [(cme, 1.09, ch2, t, o, d) for d in (180.0, 60.0, -60.0)]
    return zmatrix_to_xyz(rows)


def _pf6() -> np.ndarray:
    r = 1.59
    return np.vstack([[0, 0, 0], r * np.vstack([np.eye(3), -np.eye(3)])])


def _co3() -> np.ndarray:
    r = 1.29
    a = np.radians([90.0, 210.0, 330.0])
    return np.vstack([[0, 0, 0], np.stack([r * np.cos(a), r * np.sin(a), np.zeros(3)], -1)])


def _ch3o() -> np.ndarray:
    t = 109.47
    return zmatrix_to_xyz([(), (0, 1.40), (0, 1.09, 1, t), (0, 1.09, 1, t, 2, 120.0), (0, 1.09, 1, t, 2, -120.0)])


def _etoco2() -> np.ndarray:
    """C0 (carbonate C), O1, O2 (carboxylate), O3 (ester), C4 (CH2), C5 (CH3), 5 H."""
    t = 109.47
    rows = [
        (),
        (0, 1.26),
        (0, 1.26, 1, 128.0),
        (0, 1.37, 1, 116.0, 2, 180.0),
        (3, 1.45, 0, 116.0, 1, 0.0),
        (4, 1.51, 3, 108.0, 0, 180.0),
        (4, 1.09, 3, t, 0, 60.0),
        (4, 1.09, 3, t, 0, -60.0),
        (5, 1.09, 4, t, 3, 180.0),
        (5, 1.09, 4, t, 3, 60.0),
        (5, 1.09, 4, t, 3, -60.0),
    ]
    return zmatrix_to_xyz(rows)


def _study_units() -> dict:
    u = {}
    u["EC"] = make_unit(
        "EC",
        ["C", "O", "O", "O", "C", "C", "H", "H", "H", "H"],
        _ec(),
        0,
        [0.0] * 10,
        ((0, 1), (0, 2), (0, 3), (2, 4), (3, 5), (4, 5), (4, 6), (4, 7), (5, 8), (5, 9)),
        "ethylene carbonate, planar C2v ring; C=O 1.19, C–O 1.33, O–CH2 1.45, C–C 1.52 Å, O–C–O 111° (Brown 1954)",
    )
    u["DEC"] = make_unit(
        "DEC",
        ["C", "O", "O", "O", "C", "C", "C", "C"] + ["H"] * 10,
        _dec(),
        0,
        [0.0] * 18,
        ((0, 1), (0, 2), (0, 3), (2, 4), (4, 5), (3, 6), (6, 7))
        + ((4, 8), (4, 9), (5, 10), (5, 11), (5, 12), (6, 13), (6, 14), (7, 15), (7, 16), (7, 17)),
        "diethyl carbonate, cis-cis; C=O 1.20, C–O 1.34, O–CH2 1.45, C–C 1.51 Å (standard ester values)",
    )
    u["PF6-"] = make_unit(
        "PF6-",
        ["P"] + ["F"] * 6,
        _pf6(),
        -1,
        [1.0] + [-1.0 / 3.0] * 6,
        tuple((0, k) for k in range(1, 7)),
        "octahedral hexafluorophosphate, P–F 1.59 Å (salts 1.58–1.60 Å)",
    )
    u["CO3^2-"] = make_unit(
        "CO3^2-",
        ["C", "O", "O", "O"],
        _co3(),
        -2,
        [0.7, -0.9, -0.9, -0.9],
        ((0, 1), (0, 2), (0, 3)),
        "trigonal planar carbonate, C–O 1.29 Å (Li2CO3-like; hypothesis-grade)",
    )
    u["CH3O-"] = make_unit(
        "CH3O-",
        ["C", "O", "H", "H", "H"],
        _ch3o(),
        -1,
        [0.0, -1.0, 0.0, 0.0, 0.0],
        ((0, 1), (0, 2), (0, 3), (0, 4)),
        "methoxide (LiOCH3-like DME reduction fragment), C–O 1.40 Å (hypothesis-grade)",
    )
    u["EtOCO2-"] = make_unit(
        "EtOCO2-",
        ["C", "O", "O", "O", "C", "C", "H", "H", "H", "H", "H"],
        _etoco2(),
        -1,
        [0.8, -0.8, -0.8, -0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ((0, 1), (0, 2), (0, 3), (3, 4), (4, 5), (4, 6), (4, 7), (5, 8), (5, 9), (5, 10)),
        "ethyl carbonate anion (ROCO2Li-like), C–O 1.26/1.37, O–CH2 1.45 Å (hypothesis-grade)",
    )
    return u


#: The units this module adds (name → structures.units_library.Unit).
STUDY_UNITS: dict = _study_units()


_LOCK = threading.Lock()
_USERS = [0]
_ADDED: list = []


@contextmanager
def study_units():
    """Context in which :data:`STUDY_UNITS` are known to :func:`structures.units_library.get_unit`.

    The units are added to ``units_library.UNITS`` on entry and removed on exit (reference-counted and locked,
    so concurrent builders in threads share one registration), so importing this module changes nothing for
    other code: e.g. ``get_unit("PF6-")`` outside the context still raises. Names already in the unit library
    are never touched.
    """
    with _LOCK:
        if _USERS[0] == 0:
            _ADDED.clear()
            for name, unit in STUDY_UNITS.items():
                if name not in units_library.UNITS:
                    units_library.UNITS[name] = unit
                    _ADDED.append(name)
        _USERS[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS[0] -= 1
            if _USERS[0] == 0:
                for name in _ADDED:
                    units_library.UNITS.pop(name, None)
                _ADDED.clear()


def get_study_unit(name: str):
    """A unit by name: one of :data:`STUDY_UNITS` or any unit of :mod:`structures.units_library`.

    Parameters
    ----------
    name : str

    Returns
    -------
    structures.units_library.Unit
    """
    if isinstance(name, str) and name in STUDY_UNITS:
        return STUDY_UNITS[name]
    return get_unit(name)


# ================================================================================================================
# compositions
# ================================================================================================================
#: Salts → (cation unit, anion unit).
SALT_UNITS: dict = {"LiFSI": ("Li+", "FSI-"), "LiTFSI": ("Li+", "TFSI-"), "LiPF6": ("Li+", "PF6-")}

#: Pure-solvent densities [g/cm³] (ρ, source).
SOLVENT_DENSITY: dict = {
    "DME": (0.8683, "liquid DME at 20 °C (as structures.electrolyte)"),
    "EC": (1.321, "liquid EC at 40 °C (EC melts at 36.4 °C)"),
    "DEC": (0.975, "liquid DEC at 25 °C"),
}

#: Apparent molar volumes of the salts [cm³/mol] (estimates): LiFSI as structures.electrolyte; LiPF6 hypothesis.
SALT_MOLAR_VOLUME: dict = {"LiFSI": 100.0, "LiTFSI": 145.0, "LiPF6": 60.0}


def _salt_mass(salt: str) -> float:
    cat, an = SALT_UNITS[salt]
    return get_study_unit(cat).mass + get_study_unit(an).mass


def molarity_composition(molarity: Mapping, solvents: Mapping, *, basis: str = "volume", density=None) -> dict:
    """Moles of every species in one litre of solution, from molarities and a solvent mixing ratio.

    Solvent volumes (``basis="volume"``, ratio of the pure solvents' volumes before mixing) or masses
    (``basis="weight"``) are in the given ratio. The density is the given one or, if None, the ideal-mixing estimate:
    salts occupy Σ c·V_φ cm³ (:data:`SALT_MOLAR_VOLUME`), the pure solvents fill the rest of the litre.

    Parameters
    ----------
    molarity : mapping
        Salt name (:data:`SALT_UNITS`) → molarity [mol/L of solution].
    solvents : mapping
        Solvent unit name → ratio part (volume or weight, see ``basis``).
    basis : {"volume", "weight"}
        How the solvent ratio is meant.
    density : float or None  [g/cm³]
        Solution density; None → ideal-mixing estimate.

    Returns
    -------
    dict
        ``moles`` {species: mol per litre}, ``density`` [g/cm³], ``density_source``, ``solvent_mass_g``
        {solvent: g per litre}, ``molality`` {salt: mol/kg of total solvent}.
    """
    if basis not in ("volume", "weight"):
        raise ValueError(f"basis={basis!r}: use 'volume' or 'weight'")
    for s, c in molarity.items():
        if s not in SALT_UNITS:
            raise ValueError(f"unknown salt {s!r}; valid salts are {sorted(SALT_UNITS)}")
        if not (np.isfinite(c) and c > 0):
            raise ValueError(f"molarity of {s} must be positive [mol/L], got {c!r}")
    for s, p in solvents.items():
        if s not in SOLVENT_DENSITY:
            raise ValueError(f"unknown solvent {s!r}; valid solvents are {sorted(SOLVENT_DENSITY)}")
        if not (np.isfinite(p) and p > 0):
            raise ValueError(f"solvents[{s!r}] must be a positive ratio part, got {p!r}")
    salt_mass = sum(c * _salt_mass(s) for s, c in molarity.items())
    tot = sum(solvents.values())
    if basis == "volume":
        vfrac = {s: p / tot for s, p in solvents.items()}
    else:  # weight ratio → volume ratio of the pure solvents
        v = {s: p / SOLVENT_DENSITY[s][0] for s, p in solvents.items()}
        vfrac = {s: x / sum(v.values()) for s, x in v.items()}
    if density is None:
        v_solv = 1000.0 - sum(c * SALT_MOLAR_VOLUME[s] for s, c in molarity.items())
        mass_solv = {s: v_solv * f * SOLVENT_DENSITY[s][0] for s, f in vfrac.items()}
        density = (salt_mass + sum(mass_solv.values())) / 1000.0
        source = "ideal mixing of molar volumes (estimate)"
    else:
        density = check_positive("density", density, "g/cm³")
        m_total = 1000.0 * density - salt_mass
        if m_total <= 0:
            raise ValueError(f"density={density} g/cm³ leaves no mass for the solvent at molarity {dict(molarity)}")
        wfrac = {s: f * SOLVENT_DENSITY[s][0] for s, f in vfrac.items()}
        wsum = sum(wfrac.values())
        mass_solv = {s: m_total * w / wsum for s, w in wfrac.items()}
        source = "given"
    moles: dict = {}
    for s, c in molarity.items():
        cat, an = SALT_UNITS[s]
        moles[cat] = moles.get(cat, 0.0) + c
        moles[an] = moles.get(an, 0.0) + c
    for s, m in mass_solv.items():
        moles[s] = m / get_study_unit(s).mass
    kg = sum(mass_solv.values()) / 1000.0
    return {
        "moles": moles,
        "density": float(density),
        "density_source": source,
        "solvent_mass_g": mass_solv,
        "molality": {s: c / kg for s, c in molarity.items()},
    }


def counts_from_molarity(moles: Mapping, *, n_atoms: int = 3000) -> dict:
    """Integer molecule counts with the mole ratios of ``moles``, ≈ ``n_atoms`` atoms in total.

    The least abundant anion sets the unit: n_anion = max(1, round(n_atoms / atoms per anion formula)); every
    other species is round(n_anion · moles[s] / moles[anion]) (cations exactly as their anions, neutrality).

    Parameters
    ----------
    moles : mapping
        Species (unit name) → moles (any common scale), e.g. ``molarity_composition(...)["moles"]``.
    n_atoms : int
        Target number of atoms.

    Returns
    -------
    dict
        Unit name → count.
    """
    if not isinstance(n_atoms, (int, np.integer)) or n_atoms < 1:
        raise ValueError(f"n_atoms must be a positive int, got {n_atoms!r}")
    anions = [s for s in moles if get_study_unit(s).charge < 0]
    if not anions:
        raise ValueError(f"moles={dict(moles)} has no anion")
    ref = min(anions, key=lambda s: moles[s])
    per_ref = sum(moles[s] / moles[ref] * get_study_unit(s).n_atoms for s in moles)
    k = max(1, int(round(n_atoms / per_ref)))
    counts = {s: int(round(k * moles[s] / moles[ref])) for s in moles if s != "Li+"}
    counts["Li+"] = int(round(-sum(get_study_unit(s).charge * c for s, c in counts.items())))
    return counts


@dataclass(frozen=True, kw_only=True)
class ElectrolyteSpec:
    """One of the study's electrolytes.

    Parameters
    ----------
    name : str
        Key in :data:`ELECTROLYTES`.
    label : str
        Human-readable composition.
    molarity : dict
        Salt → mol/L (molarity-defined electrolytes); empty for molality-defined ones.
    molality : dict
        Salt → mol/kg solvent (molality-defined electrolytes).
    solvents : dict
        Solvent → ratio part.
    solvent_basis : str
        "volume" or "weight".
    sro_peak : float or None  [Å⁻¹]
        The study's measured electrolyte SRO peak, where it reports one (only the HCE: 0.285).
    """

    name: str
    label: str
    molarity: dict = field(default_factory=dict)
    molality: dict = field(default_factory=dict)
    solvents: dict = field(default_factory=dict)
    solvent_basis: str = "volume"
    sro_peak: float | None = None


#: The study's electrolytes.
ELECTROLYTES: dict = {
    "hce": ElectrolyteSpec(
        name="hce",
        label="4.6 m LiFSI + 2.3 m LiTFSI in DME",
        molality={"LiFSI": 4.6, "LiTFSI": 2.3},
        solvents={"DME": 1.0},
        sro_peak=0.285,
    ),
    "lifsi_1m": ElectrolyteSpec(
        name="lifsi_1m", label="1 M LiFSI in DME", molarity={"LiFSI": 1.0}, solvents={"DME": 1.0}
    ),
    "lipf6_1m": ElectrolyteSpec(
        name="lipf6_1m",
        label="1 M LiPF6 in EC/DEC 1:1 (v/v)",
        molarity={"LiPF6": 1.0},
        solvents={"EC": 1.0, "DEC": 1.0},
        solvent_basis="volume",
    ),
}


def study_electrolyte(
    name: str = "hce",
    *,
    n_atoms: int = 3000,
    density: float | None = None,
    solvent_basis: str | None = None,
    cell=None,
    rng=None,
    max_steps: int = 5000,
    source: str = "relaxed",
) -> Atoms:
    """A vitrified-liquid model of one of the study's electrolytes.

    The shipped relaxed model ``electrolyte_<name>`` of :mod:`structures.relax` when present and neither
    ``density`` nor ``solvent_basis`` is given (density an output); otherwise, or with ``source="packing"``,
    rigid molecules packed at the estimated density (the fast path).

    Parameters
    ----------
    name : {"hce", "lifsi_1m", "lipf6_1m"}
        See :data:`ELECTROLYTES` and the module docstring (arithmetic and density sources).
    n_atoms : int
        Target number of atoms.
    density : float or None  [g/cm³]
        Override; default the estimate of the module docstring (HCE: structures.electrolyte's estimate).
    solvent_basis : {"volume", "weight"} or None
        Override the EC/DEC mixing basis of ``"lipf6_1m"`` ("weight" = LP40).
    cell : array-like or None  [Å]
        Box shape (scaled to the density).
    rng : numpy.random.Generator, int or None
        Random generator or seed.
    max_steps : int
        Bound on packing iterations.
    source : {"relaxed", "packing"}
        Shipped relaxed model when available (default) or the packing fast path.

    Returns
    -------
    ase.Atoms
        As :func:`structures.electrolyte.solution`; ``info`` adds ``electrolyte`` (name), ``label``,
        ``molarity_built`` [mol/L], ``molality_built`` [mol/kg], ``density_source``.
    """
    if name not in ELECTROLYTES:
        raise ValueError(f"name={name!r}: the study's electrolytes are {sorted(ELECTROLYTES)}")
    if source not in ("relaxed", "packing"):
        raise ValueError(f"source={source!r} must be 'relaxed' (shipped relaxed model) or 'packing' (fast path)")
    if source == "relaxed" and density is None and solvent_basis is None:
        from . import relax as _relax

        if _relax.model_seeds(f"electrolyte_{name}"):
            atoms = _relax.relaxed_model(
                f"electrolyte_{name}", n_atoms=None if cell is not None else n_atoms, cell=cell, rng=rng
            )
            atoms.info.update({"electrolyte": name, "label": ELECTROLYTES[name].label})
            return atoms
    spec = ELECTROLYTES[name]
    if spec.molality:
        atoms = _hce_electrolyte(
            spec.molality["LiFSI"],
            spec.molality["LiTFSI"],
            density=density,
            n_atoms=n_atoms,
            cell=cell,
            rng=rng,
            max_steps=max_steps,
            source="packing",
        )
        atoms.info.update({"electrolyte": name, "label": spec.label, "molarity_built": atoms.info["molarity_M"]})
        return atoms
    basis = spec.solvent_basis if solvent_basis is None else solvent_basis
    comp = molarity_composition(spec.molarity, spec.solvents, basis=basis, density=density)
    counts = counts_from_molarity(comp["moles"], n_atoms=n_atoms)
    with study_units():
        atoms = solution(counts, comp["density"], cell=cell, rng=rng, max_steps=max_steps)
    vol_l = atoms.get_volume() * 1e-27 * AVOGADRO
    kg = sum(counts[s] * get_study_unit(s).mass for s in spec.solvents) / 1000.0
    label = spec.label if basis == spec.solvent_basis else spec.label.replace("(v/v)", "(w/w)")
    atoms.info.update(
        {
            "builder": "structures.electrolyte_presets.study_electrolyte",
            "electrolyte": name,
            "label": label,
            "solvent_basis": basis,
            "molarity_target": dict(spec.molarity),
            "molarity_built": {s: counts[SALT_UNITS[s][1]] / vol_l for s in spec.molarity},
            "molality_built": {s: counts[SALT_UNITS[s][1]] / kg for s in spec.molarity},
            "density_source": comp["density_source"],
            "source": "rigid-molecule packing (fast path, density chosen, no interatomic forces in MD)",
        }
    )
    return atoms
