"""Vitrified liquid electrolytes as rigid molecules packed at the solution density.

The study's high-concentration electrolyte is 4.6 m LiFSI + 2.3 m LiTFSI in DME (1,2-dimethoxyethane,
CH₃OCH₂CH₂OCH₃, C₄H₁₀O₂; the paper's "dimethoxymethane" is a slip for the usual battery solvent DME).

Molality arithmetic (molality m = mol salt per kg solvent; molality is the primary quantity):

* M(DME) = 90.122 g/mol (ASE standard atomic weights) → 1 kg DME = 1000 / 90.122 = 11.096 mol DME.
* LiFSI: 4.6 mol per 11.096 mol DME = 0.4146 LiFSI per DME; LiTFSI: 2.3 / 11.096 = 0.2073 per DME.
* Hence FSI⁻ : TFSI⁻ : Li⁺ : DME = 4.6 : 2.3 : 6.9 : 11.096 = 2 : 1 : 3 : 4.825. A model with k TFSI⁻ has exactly
  2k FSI⁻, 3k Li⁺ and round(4.825 k) DME (the only rounding; ``info`` reports the molalities actually built).
* Why the study's "≈ 3 M LiFSI and 2 M LiTFSI" cannot be right: both salts share one solution volume, so the ratio
  of their molarities equals the ratio of their molalities, 4.6 / 2.3 = 2, not 3 / 2. With the density estimate
  below (mass 1000 + 4.6·187.07 + 2.3·287.09 = 2520.8 g per kg DME in ≈ 1.94 L) the molarities are ≈ 2.37 M
  LiFSI and ≈ 1.19 M LiTFSI (total Li⁺ ≈ 3.6 M).

Density: no measured value for this bisalt solution is known to us, so the default is an **estimate** by ideal
mixing of molar volumes: DME 90.122 / 0.8683 g/cm³ = 103.8 cm³/mol (liquid DME at 20 °C), and apparent molar
volumes ≈ 100 cm³/mol for LiFSI and ≈ 145 cm³/mol for LiTFSI (typical of Li imide salts in organic solvents;
±10 %). This gives ≈ 1.30 g/cm³ (high-concentration LiFSI/DME solutions are reported at ≈ 1.3–1.5 g/cm³), with
an uncertainty of roughly ±0.1 g/cm³; pass ``density`` to override. Vitrification at ≈ 100 K would raise it by
a few per cent, which we neglect.

Molecules are rigid (:mod:`structures.units_library` geometries), randomly oriented, and packed together with the
free Li⁺ at the density by the same engine as the amorphous SEI (:func:`structures.amorphous.pack_units`); no
physical relaxation (there is no force field for DME here), so the Li⁺ solvation shell is only as good as the
minimum distances.

:func:`solution` is the generic builder (molecule counts + density); :func:`counts_from_molality` converts
molalities into counts. Issue 11's 1 M LiFSI/DME and 1 M LiPF₆ in EC/DEC (by molarity) plug in by adding PF₆⁻,
EC and DEC to the unit library and a molarity → counts helper.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
from ase import Atoms

from .amorphous import pack_units
from .checks import AVOGADRO, check_cell, check_positive, check_rng
from .units_library import get_unit

__all__ = [
    "MOLAR_VOLUME_CM3",
    "SALTS",
    "counts_from_molality",
    "electrolyte",
    "ideal_mixing_density",
    "solution",
]

#: Salts: name → (cation unit, anion unit).
SALTS: dict = {"LiFSI": ("Li+", "FSI-"), "LiTFSI": ("Li+", "TFSI-")}

#: Molar volumes [cm³/mol] for density estimates: DME from its liquid density 0.8683 g/cm³ (20 °C); salts are
#: apparent molar volumes in organic solvents (estimates, ±10 %).
MOLAR_VOLUME_CM3: dict = {"DME": get_unit("DME").mass / 0.8683, "LiFSI": 100.0, "LiTFSI": 145.0}


def _salt_mass(salt: str) -> float:
    cat, an = SALTS[salt]
    return get_unit(cat).mass + get_unit(an).mass


def ideal_mixing_density(molalities: Mapping, solvent: str = "DME") -> float:
    """Solution density [g/cm³] by ideal mixing of molar volumes (:data:`MOLAR_VOLUME_CM3`).

    Parameters
    ----------
    molalities : mapping
        Salt name → molality [mol/kg solvent].
    solvent : str
        Solvent unit name.

    Returns
    -------
    float  [g/cm³]
    """
    mass = 1000.0
    vol = 1000.0 / get_unit(solvent).mass * MOLAR_VOLUME_CM3[solvent]
    for salt, m in molalities.items():
        mass += m * _salt_mass(salt)
        vol += m * MOLAR_VOLUME_CM3[salt]
    return mass / vol


def counts_from_molality(molalities: Mapping, solvent: str = "DME", *, n_atoms: int = 3000) -> dict:
    """Integer molecule counts that keep the salt ratios exact.

    The salts' molality ratios are turned into small integers (e.g. 4.6 : 2.3 → 2 : 1); a "salt formula"
    (here 2 LiFSI + 1 LiTFSI) is repeated k times and the solvent count is round(k · n_solvent per formula), with
    n_solvent per formula = (1000 / M_solvent) · (salts per formula / Σ molalities).

    Parameters
    ----------
    molalities : mapping
        Salt name (see :data:`SALTS`) → molality [mol/kg].
    solvent : str
        Solvent unit name, e.g. ``"DME"``.
    n_atoms : int
        Target number of atoms.

    Returns
    -------
    dict
        Unit name → count (Li⁺, anions, solvent).
    """
    if not isinstance(molalities, Mapping) or not molalities:
        raise TypeError(f"molalities must be a mapping salt → mol/kg, got {molalities!r}")
    for salt, m in molalities.items():
        if salt not in SALTS:
            raise ValueError(f"unknown salt {salt!r}; valid salts are {sorted(SALTS)}")
        if not np.isfinite(m) or m <= 0:
            raise ValueError(f"molality of {salt} must be positive [mol/kg], got {m!r}")
    if not isinstance(n_atoms, (int, np.integer)) or n_atoms < 1:
        raise ValueError(f"n_atoms must be a positive int, got {n_atoms!r}")
    solv = get_unit(solvent)
    salts = list(molalities)
    m0 = min(molalities.values())
    fr = [Fraction(molalities[s] / m0).limit_denominator(20) for s in salts]
    den = np.lcm.reduce([f.denominator for f in fr])
    per = [int(f * den) for f in fr]  # integer salt formula, e.g. [2, 1]
    g = np.gcd.reduce(per)
    per = [p // int(g) for p in per]
    n_salt = sum(per)
    solvent_per_formula = (1000.0 / solv.mass) * n_salt / sum(molalities.values())
    atoms_per_formula = solvent_per_formula * solv.n_atoms
    for s, p in zip(salts, per):
        cat, an = SALTS[s]
        atoms_per_formula += p * (get_unit(cat).n_atoms + get_unit(an).n_atoms)
    k = max(1, int(round(n_atoms / atoms_per_formula)))
    counts: dict = {}
    for s, p in zip(salts, per):
        cat, an = SALTS[s]
        counts[cat] = counts.get(cat, 0) + p * k
        counts[an] = counts.get(an, 0) + p * k
    counts[solv.name] = int(round(k * solvent_per_formula))
    return counts


def solution(counts: Mapping, density: float, *, cell=None, min_distance=None, rng=None, max_steps: int = 5000):
    """Generic liquid (vitrified) model: given numbers of rigid molecules/ions packed at a density.

    Parameters
    ----------
    counts : mapping
        Unit name → number of molecules/ions (must be charge-neutral).
    density : float  [g/cm³]
        Mass density; the box volume follows exactly from the mass.
    cell : array-like or None  [Å]
        Box shape (orthorhombic); scaled isotropically to the density. Default: cubic.
    min_distance : mapping or None  [Å]
        Overrides of :data:`structures.amorphous.DEFAULT_MIN_DISTANCE`.
    rng : numpy.random.Generator, int or None
        Random generator or seed.
    max_steps : int
        Bound on packing iterations.

    Returns
    -------
    ase.Atoms
        Periodic; ``arrays["unit_id"]`` marks molecules; ``info`` holds ``units``, ``elements``,
        ``density_g_cm3``, ``seed``, ``min_distance`` and ``packing``.
    """
    density = check_positive("density", density, "g/cm³")
    rng, seed = check_rng(rng)
    if not isinstance(counts, Mapping) or not counts:
        raise TypeError(f"counts must be a mapping unit → number of molecules, got {counts!r}")
    canon: dict = {}
    for name, c in counts.items():
        if not isinstance(c, (int, np.integer)) or c < 0:
            raise ValueError(f"counts[{name!r}] must be a non-negative int, got {c!r}")
        u = get_unit(name)
        canon[u.name] = canon.get(u.name, 0) + int(c)
    canon = {k: v for k, v in canon.items() if v > 0}
    q = sum(get_unit(n).charge * c for n, c in canon.items())
    if abs(q) > 1e-9:
        raise ValueError(f"counts {canon} carry a net charge {q:+g} e; a solution must be neutral")
    mass_g = sum(c * get_unit(n).mass for n, c in canon.items()) / AVOGADRO
    vol = mass_g / density * 1e24
    if cell is None:
        box = np.full(3, vol ** (1 / 3))
    else:
        c = check_cell("cell", cell)
        box = c * (vol / np.prod(c)) ** (1 / 3)
    atoms, rep = pack_units(canon, box, min_distance=min_distance, relax=False, rng=rng, max_steps=max_steps)
    elements: dict = {}
    for s in atoms.get_chemical_symbols():
        elements[s] = elements.get(s, 0) + 1
    atoms.info.update(
        {
            "builder": "structures.electrolyte.solution",
            "units": dict(canon),
            "elements": elements,
            "density_g_cm3": density,
            "seed": seed,
            "n_atoms": len(atoms),
            "min_distance": rep["min_distance"],
            "packing": rep["packing"],
        }
    )
    return atoms


def electrolyte(
    molality_lifsi: float = 4.6,
    molality_litfsi: float = 2.3,
    solvent: str = "DME",
    density: float | None = None,
    n_atoms: int = 3000,
    cell=None,
    rng=None,
    *,
    min_distance=None,
    max_steps: int = 5000,
) -> Atoms:
    """LiFSI + LiTFSI in DME (the study's high-concentration electrolyte) as a vitrified-liquid model.

    Parameters
    ----------
    molality_lifsi, molality_litfsi : float  [mol/kg DME]
        Salt molalities (study: 4.6 and 2.3); either may be 0 to leave that salt out.
    solvent : str
        Solvent unit; only ``"DME"`` is available now.
    density : float or None  [g/cm³]
        Solution density; default the ideal-mixing estimate :func:`ideal_mixing_density` (≈ 1.30 g/cm³ for the
        study's composition; see the module docstring for its basis and uncertainty).
    n_atoms : int
        Target number of atoms (the salt formula is repeated to approach it).
    cell : array-like or None  [Å]
        Box shape (orthorhombic), scaled to the density; default cubic.
    rng : numpy.random.Generator, int or None
        Random generator or seed.
    min_distance : mapping or None  [Å]
        Overrides of the minimum distances.
    max_steps : int
        Bound on packing iterations.

    Returns
    -------
    ase.Atoms
        As :func:`solution`, plus ``info["molality_target"]`` and ``info["molality_built"]`` [mol/kg],
        ``info["molarity_M"]`` [mol/L] and ``info["density_source"]``.
    """
    if solvent != "DME":
        raise ValueError(f"solvent must be 'DME' (the only solvent in the unit library), got {solvent!r}")
    mol = {}
    for salt, m in (("LiFSI", molality_lifsi), ("LiTFSI", molality_litfsi)):
        m = check_positive(f"molality_{salt.lower()}", m, "mol/kg", allow_zero=True)
        if m > 0:
            mol[salt] = m
    if not mol:
        raise ValueError("at least one of molality_lifsi, molality_litfsi must be positive")
    if density is None:
        density = ideal_mixing_density(mol, solvent)
        source = "ideal mixing of molar volumes (estimate, ±0.1 g/cm³)"
    else:
        source = "given"
    counts = counts_from_molality(mol, solvent, n_atoms=n_atoms)
    atoms = solution(counts, density, cell=cell, min_distance=min_distance, rng=rng, max_steps=max_steps)
    n_solv = counts[solvent]
    kg = n_solv * get_unit(solvent).mass / 1000.0  # kg solvent per mol of "model"
    built = {s: counts[SALTS[s][1]] / kg for s in mol}
    vol_l = atoms.get_volume() * 1e-27 * AVOGADRO
    atoms.info.update(
        {
            "builder": "structures.electrolyte.electrolyte",
            "solvent": solvent,
            "molality_target": dict(mol),
            "molality_built": built,
            "molarity_M": {s: counts[SALTS[s][1]] / vol_l for s in mol},
            "density_source": source,
        }
    )
    return atoms
