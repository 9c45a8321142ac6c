"""Crystalline reference phases and defective nanocrystals (ASE builders).

Phases: LiF (rock salt), Li₂O and Li₂S (antifluorite), Li (bcc), Cu (fcc) and Au (fcc, a diffraction
calibration standard). Every lattice constant is given at room temperature (293 K) and at the cryogenic
temperature of the measurement (≈ 100 K); cryogenic values are the default because cryo-SEND is recorded
near 100 K and the lattices contract by 0.2–0.8 %, which matters for any calibration better than 1 %.

Lattice constants [Å] and their sources
---------------------------------------
LiF
    293 K: 4.0270 Å (Swanson & Tatge, NBS Circular 539 vol. 1 (1953); PDF 04-0857).
    100 K: 4.009 Å, from the linear thermal expansion of LiF (Touloukian et al., *Thermal Expansion:
    Nonmetallic Solids*, TPRC vol. 13 (1977)): α ≈ 8.6, 17, 25, 30, 33 ×10⁻⁶ K⁻¹ at 100, 150, 200, 250,
    293 K; ∫α dT from 100 to 293 K ≈ 4.4 ×10⁻³ → a(100 K) = 4.0270·(1 − 0.0044) = 4.009 Å. Consistent with
    the interferometric expansivity of LiF at 20–270 K (Meincke & Graham, Can. J. Phys. 43 (1965) 1853) and
    the X-ray a(T) of Straumanis et al. (Z. anorg. allg. Chem., 1972) that flattens below ≈ 40 K.
Li₂O
    293 K: 4.6114 Å (PDF 12-0254; Farley et al., J. Nucl. Mater. 1991). 100 K: 4.600 Å, estimated with a
    mean α ≈ 12 ×10⁻⁶ K⁻¹ between 100 and 293 K (RT value ≈ 16 ×10⁻⁶ K⁻¹ falling with T, Hull et al.,
    J. Nucl. Mater. 160 (1988) 125): Δa/a ≈ −2.3 ×10⁻³. No direct 100 K measurement was used.
Li₂S
    293 K: 5.708 Å (project reference table, shared/README; PDF 23-0369 gives 5.7158 Å). 100 K: 5.691 Å,
    estimated with a mean α ≈ 15 ×10⁻⁶ K⁻¹ between 100 and 293 K (antifluorite Li₂S, RT α ≈ 19 ×10⁻⁶ K⁻¹
    from Buehrer et al., J. Phys. C 24 (1991) 2003 neutron data): Δa/a ≈ −2.9 ×10⁻³. Estimate, not measured.
Li (bcc)
    293 K: 3.5100 Å (Nadler & Kempter, Anal. Chem. 31 (1959) 2109: 3.51004 Å at 25 °C).
    100 K: 3.483 Å. Barrett (Acta Cryst. 9 (1956) 671) measured bcc Li ≈ 3.482 Å at 78 K; with
    α(Li) ≈ 40 ×10⁻⁶ K⁻¹ near 90 K the 100 K value is ≈ 1 mÅ larger. (Li metal partly transforms to a
    close-packed phase below ≈ 75 K when cold-worked; at 100 K it is bcc.)
Cu (fcc)
    293 K: 3.6149 Å (Straumanis & Yu, Acta Cryst. A25 (1969) 676). 100 K: 3.6050 Å from the thermal
    expansion of Cu (Kroeger & Swenson, J. Appl. Phys. 48 (1977) 853): α ≈ 10.3, 15.2, 16.5 ×10⁻⁶ K⁻¹
    at 100, 200, 293 K; ∫α dT ≈ 2.75 ×10⁻³.
Au (fcc)
    293 K: 4.0782 Å (Maeland & Flanagan, Can. J. Phys. 42 (1964) 2364; PDF 04-0784: 4.0786 Å).
    100 K: 4.0677 Å from α(Au) ≈ 11.8, 13.7, 14.2 ×10⁻⁶ K⁻¹ at 100, 200, 293 K (Touloukian, TPRC vol. 12):
    ∫α dT ≈ 2.57 ×10⁻³.

Temperatures between the two tabulated points are linearly interpolated (`lattice_constant`).
Reciprocal space uses Q = 1/d [Å⁻¹] (no 2π) everywhere.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from .checks import check_in_range, check_positive

__all__ = [
    "LATTICE_CONSTANTS",
    "PHASES",
    "ROOM_TEMPERATURE",
    "bulk",
    "lattice_constant",
    "nanocrystal",
    "random_rotation",
    "reflection_q",
    "reflections",
    "resolve_rng",
    "rotation_to_zone_axis",
    "mass_density",
]

#: Temperature of the "room" lattice constants [K].
ROOM_TEMPERATURE = 293.0

#: Conversion amu/Å³ → g/cm³ (1 amu = 1.66053906660e-24 g; 1 Å³ = 1e-24 cm³).
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660

#: Lattice constants [Å] at room temperature (293 K) and at the cryogenic temperature [K]; see the module
#: docstring for the reasoning behind every number.
LATTICE_CONSTANTS: dict[str, dict[str, Any]] = {
    "LiF": {
        "room": 4.0270,
        "cryo": 4.009,
        "temperature_cryo": 100.0,
        "source": "RT: Swanson & Tatge, NBS Circ. 539 (1953), PDF 04-0857; 100 K: RT value contracted by "
        "∫α dT = 4.4e-3 (α(T) from Touloukian et al., TPRC vol. 13, 1977)",
    },
    "Li2O": {
        "room": 4.6114,
        "cryo": 4.600,
        "temperature_cryo": 100.0,
        "source": "RT: PDF 12-0254; 100 K: estimate with mean α ≈ 12e-6/K over 100–293 K "
        "(Hull et al., J. Nucl. Mater. 160, 125 (1988)), not a direct measurement",
    },
    "Li2S": {
        "room": 5.708,
        "cryo": 5.691,
        "temperature_cryo": 100.0,
        "source": "RT: project reference table (PDF 23-0369 gives 5.7158); 100 K: estimate with mean "
        "α ≈ 15e-6/K over 100–293 K (Buehrer et al., J. Phys. C 24, 2003 (1991)), not a direct measurement",
    },
    "Li": {
        "room": 3.5100,
        "cryo": 3.483,
        "temperature_cryo": 100.0,
        "source": "RT: Nadler & Kempter, Anal. Chem. 31, 2109 (1959); 100 K: Barrett, Acta Cryst. 9, 671 "
        "(1956) (3.482 Å at 78 K) plus α ≈ 40e-6/K to 100 K",
    },
    "Cu": {
        "room": 3.6149,
        "cryo": 3.6050,
        "temperature_cryo": 100.0,
        "source": "RT: Straumanis & Yu, Acta Cryst. A25, 676 (1969); 100 K: ∫α dT = 2.75e-3 "
        "(Kroeger & Swenson, J. Appl. Phys. 48, 853 (1977))",
    },
    "Au": {
        "room": 4.0782,
        "cryo": 4.0677,
        "temperature_cryo": 100.0,
        "source": "RT: Maeland & Flanagan, Can. J. Phys. 42, 2364 (1964); 100 K: ∫α dT = 2.57e-3 "
        "(Touloukian et al., TPRC vol. 12, 1975)",
    },
}

_FCC = ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))
_BCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5))

# phase -> (structure name, lattice centring, basis [(symbol, fractional position)], anion symbol, anion charge)
_STRUCTURES: dict[str, tuple[str, str, tuple[tuple[str, tuple[float, float, float]], ...], str | None, int]] = {
    "LiF": ("rock salt", "F", (("Li", (0.0, 0.0, 0.0)), ("F", (0.5, 0.5, 0.5))), "F", 1),
    "Li2O": (
        "antifluorite",
        "F",
        (("O", (0.0, 0.0, 0.0)), ("Li", (0.25, 0.25, 0.25)), ("Li", (0.75, 0.75, 0.75))),
        "O",
        2,
    ),
    "Li2S": (
        "antifluorite",
        "F",
        (("S", (0.0, 0.0, 0.0)), ("Li", (0.25, 0.25, 0.25)), ("Li", (0.75, 0.75, 0.75))),
        "S",
        2,
    ),
    "Li": ("bcc", "I", (("Li", (0.0, 0.0, 0.0)),), None, 0),
    "Cu": ("fcc", "F", (("Cu", (0.0, 0.0, 0.0)),), None, 0),
    "Au": ("fcc", "F", (("Au", (0.0, 0.0, 0.0)),), None, 0),
}

#: Names of the phases that can be built.
PHASES: tuple[str, ...] = tuple(LATTICE_CONSTANTS)

_NOMINAL_CHARGE = {"Li": 1, "F": -1, "O": -2, "S": -2, "Cu": 0, "Au": 0}


# ----------------------------------------------------------------------------------------------------------------
# small helpers shared with scenes.py
# ----------------------------------------------------------------------------------------------------------------
def resolve_rng(rng: np.random.Generator | int | None) -> tuple[np.random.Generator, int]:
    """Normalise a random source and return a generator together with a seed that reproduces it.

    Parameters
    ----------
    rng : numpy.random.Generator | int | None
        An integer seed (≥ 0), a generator (one integer is drawn from it to seed a fresh generator, so that
        the recorded seed reproduces the result) or None (fresh OS entropy).

    Returns
    -------
    (numpy.random.Generator, int)
        The generator to use and its seed (store it in ``atoms.info["seed"]``).
    """
    if isinstance(rng, np.random.Generator):
        seed = int(rng.integers(0, 2**63 - 1))
    elif rng is None:
        seed = int(np.random.SeedSequence().entropy % (2**63 - 1))
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise ValueError(f"rng={rng!r} is negative; give a seed >= 0, a numpy Generator or None")
        seed = int(rng)
    else:
        raise TypeError(
            f"rng={rng!r} (type {type(rng).__name__}) is not valid; give a numpy Generator, an int seed or None"
        )
    return np.random.default_rng(seed), seed


def _check_phase(phase: str) -> str:
    if not isinstance(phase, str) or phase not in LATTICE_CONSTANTS:
        raise ValueError(f"phase={phase!r} is unknown; valid phases are {', '.join(PHASES)}")
    return phase


def mass_density(symbols: Sequence[str], volume: float) -> float:
    """Mass density of a set of atoms in a volume.

    Parameters
    ----------
    symbols : sequence of str
        Chemical symbols of the atoms.
    volume : float  [Å³]

    Returns
    -------
    float  [g/cm³]
    """
    if not volume > 0:
        raise ValueError(f"volume={volume!r} Å³ must be > 0")
    mass = float(sum(atomic_masses[atomic_numbers[s]] for s in symbols))
    return mass / float(volume) * AMU_PER_A3_TO_G_PER_CM3


def _composition(symbols: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in symbols:
        out[s] = out.get(s, 0) + 1
    return dict(sorted(out.items()))


def lattice_constant(phase: str, temperature: str | float = "cryo") -> float:
    """Cubic lattice constant of a phase.

    Parameters
    ----------
    phase : str
        One of `PHASES` ("LiF", "Li2O", "Li2S", "Li", "Cu", "Au").
    temperature : {"cryo", "room"} or float  [K]
        "cryo" (≈ 100 K, the default, as in the measurements), "room" (293 K), or a temperature [K] between
        the cryogenic and room temperature of the table, linearly interpolated.

    Returns
    -------
    float  [Å]
    """
    entry = LATTICE_CONSTANTS[_check_phase(phase)]
    if isinstance(temperature, str):
        if temperature not in ("cryo", "room"):
            raise ValueError(f"temperature={temperature!r} is not valid; give 'cryo', 'room' or a number in K")
        return float(entry[temperature])
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature={temperature!r} is not valid; give 'cryo', 'room' or a number in K") from None
    t_cryo = float(entry["temperature_cryo"])
    if not (t_cryo - 1e-9 <= t <= ROOM_TEMPERATURE + 1e-9):
        raise ValueError(
            f"temperature={temperature!r} K is outside the tabulated range {t_cryo:g}–{ROOM_TEMPERATURE:g} K for "
            f"{phase}; give a temperature in that range, 'cryo' or 'room'"
        )
    w = (t - t_cryo) / (ROOM_TEMPERATURE - t_cryo)
    return float(entry["cryo"] + w * (entry["room"] - entry["cryo"]))


def _temperature_kelvin(phase: str, temperature: str | float) -> float:
    if temperature == "cryo":
        return float(LATTICE_CONSTANTS[phase]["temperature_cryo"])
    if temperature == "room":
        return ROOM_TEMPERATURE
    return float(temperature)


def _unit_cell(phase: str) -> tuple[list[str], np.ndarray]:
    """Symbols and fractional positions of the conventional cubic cell."""
    _, centring, basis, _, _ = _STRUCTURES[phase]
    translations = _FCC if centring == "F" else _BCC
    symbols: list[str] = []
    frac: list[tuple[float, float, float]] = []
    for sym, pos in basis:
        for t in translations:
            symbols.append(sym)
            frac.append(tuple((p + q) % 1.0 for p, q in zip(pos, t)))
    return symbols, np.asarray(frac, dtype=float)


# ----------------------------------------------------------------------------------------------------------------
# bulk and reflections
# ----------------------------------------------------------------------------------------------------------------
def bulk(phase: str, temperature: str | float = "cryo") -> Atoms:
    """Conventional cubic unit cell of a phase.

    Parameters
    ----------
    phase : str
        One of `PHASES`.
    temperature : {"cryo", "room"} or float  [K]
        Which lattice constant to use (see `lattice_constant`); cryogenic by default.

    Returns
    -------
    ase.Atoms
        Periodic cubic cell of edge a [Å]; ``info`` holds phase, structure, a [Å], temperature [K],
        composition and density [g/cm³].
    """
    a = lattice_constant(phase, temperature)
    symbols, frac = _unit_cell(phase)
    atoms = Atoms(symbols=symbols, scaled_positions=frac, cell=np.eye(3) * a, pbc=True)
    atoms.info.update(
        {
            "builder": "structures.crystals.bulk",
            "phase": phase,
            "structure": _STRUCTURES[phase][0],
            "a": a,
            "temperature": _temperature_kelvin(phase, temperature),
            "composition": _composition(symbols),
            "density": mass_density(symbols, a**3),
        }
    )
    return atoms


def _allowed(centring: str, h: int, k: int, l: int) -> bool:
    if centring == "F":
        return (h % 2 == k % 2 == l % 2) and (h, k, l) != (0, 0, 0)
    if centring == "I":
        return (h + k + l) % 2 == 0 and (h, k, l) != (0, 0, 0)
    return (h, k, l) != (0, 0, 0)


def _cubic_multiplicity(hkl: tuple[int, int, int]) -> int:
    """Number of distinct {hkl} members under the cubic point group m-3m."""
    members = set()
    for perm in itertools.permutations(hkl):
        for signs in itertools.product((1, -1), repeat=3):
            members.add(tuple(s * p for s, p in zip(signs, perm)))
    return len(members)


def reflection_q(phase: str, hkl: Sequence[int], temperature: str | float = "cryo") -> float:
    """Q = 1/d of one reflection of a cubic phase.

    Parameters
    ----------
    phase : str
        One of `PHASES`.
    hkl : (int, int, int)
        Miller indices; must be allowed by the lattice centring (F: all even or all odd; I: h + k + l even).
    temperature : {"cryo", "room"} or float  [K]
        Lattice constant to use (see `lattice_constant`; cryogenic ≈ 100 K by default).

    Returns
    -------
    float  [Å⁻¹]
        sqrt(h² + k² + l²) / a.
    """
    centring = _STRUCTURES[_check_phase(phase)][1]
    try:
        h, k, l = (int(v) for v in hkl)
    except (TypeError, ValueError):
        raise TypeError(f"hkl={hkl!r}: give three integer Miller indices, e.g. (1, 1, 1)") from None
    if not _allowed(centring, h, k, l):
        rule = {"F": "h, k, l all even or all odd", "I": "h + k + l even"}.get(centring, "not (0, 0, 0)")
        raise ValueError(f"hkl={hkl!r} is forbidden in the {centring}-centred {phase} lattice ({rule})")
    return math.sqrt(h * h + k * k + l * l) / lattice_constant(phase, temperature)


def reflections(
    phase: str, temperature: str | float = "cryo", q_max: float = 1.0
) -> list[tuple[tuple[int, int, int], float, int]]:
    """Lattice-allowed reflection families of a phase up to a maximum Q.

    Only the lattice centring is used as the extinction rule (F: h, k, l all even or all odd; I: h+k+l
    even); for the phases here no further reflections vanish exactly (Li₂O 200 is very weak, not absent).

    Parameters
    ----------
    phase : str
        One of `PHASES`.
    temperature : {"cryo", "room"} or float  [K]
        Lattice constant to use (see `lattice_constant`).
    q_max : float  [Å⁻¹]
        Largest Q = 1/d to list.

    Returns
    -------
    list of ((h, k, l), Q [Å⁻¹], multiplicity)
        One representative per family (h ≥ k ≥ l ≥ 0), sorted by Q; multiplicity counts the members of
        the family under m-3m.
    """
    if not (isinstance(q_max, (int, float, np.floating, np.integer)) and math.isfinite(q_max) and q_max > 0):
        raise ValueError(f"q_max={q_max!r} Å⁻¹ must be a positive finite number")
    a = lattice_constant(phase, temperature)
    centring = _STRUCTURES[phase][1]
    n = int(math.floor(q_max * a)) + 1
    out = []
    for h in range(n + 1):
        for k in range(h + 1):
            for l in range(k + 1):
                if not _allowed(centring, h, k, l):
                    continue
                q = math.sqrt(h * h + k * k + l * l) / a
                if q <= q_max * (1 + 1e-12):
                    out.append(((h, k, l), q, _cubic_multiplicity((h, k, l))))
    out.sort(key=lambda item: (item[1], item[0]))
    return out


# ----------------------------------------------------------------------------------------------------------------
# orientation
# ----------------------------------------------------------------------------------------------------------------
def rotation_to_zone_axis(zone_axis: Sequence[float]) -> np.ndarray:
    """Rotation that puts a crystal direction [uvw] along the beam (+z).

    Parameters
    ----------
    zone_axis : sequence of 3 numbers
        Direction [uvw] in the cubic crystal frame (non-zero).

    Returns
    -------
    numpy.ndarray, shape (3, 3)
        Proper rotation R with r_lab = R @ r_crystal and R @ uvw/|uvw| = (0, 0, 1). The in-plane angle is
        fixed deterministically: crystal [100] (or [010] when [uvw] ∥ [100]) is projected onto +x.
    """
    v = np.asarray(zone_axis, dtype=float)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        raise ValueError(f"orientation={zone_axis!r} is not a valid zone axis; give three numbers [uvw], not all zero")
    e3 = v / np.linalg.norm(v)
    ref = np.array([1.0, 0.0, 0.0])
    if abs(e3 @ ref) > 1 - 1e-8:
        ref = np.array([0.0, 1.0, 0.0])
    e1 = ref - (ref @ e3) * e3
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e3, e1)
    return np.vstack([e1, e2, e3])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (a normalised Gaussian quaternion).

    Parameters
    ----------
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (3, 3)
        Proper rotation (det = +1).
    """
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _orientation_matrix(orientation: Any, rng: np.random.Generator) -> tuple[np.ndarray, list[float] | None]:
    if isinstance(orientation, str):
        if orientation == "random":
            return random_rotation(rng), None
        raise ValueError(
            f"orientation={orientation!r} is not valid; give a zone axis such as (0, 1, 1), a 3x3 rotation "
            "matrix or 'random'"
        )
    try:
        arr = np.asarray(orientation, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"orientation={orientation!r} is not valid; give a zone axis such as (0, 1, 1), a 3x3 rotation "
            "matrix or 'random'"
        ) from None
    if arr.shape == (3,):
        return rotation_to_zone_axis(arr), [float(x) for x in arr]
    if arr.shape == (3, 3):
        if not np.all(np.isfinite(arr)) or not np.allclose(arr @ arr.T, np.eye(3), atol=1e-6) or np.linalg.det(arr) < 0:
            raise ValueError(
                f"orientation={orientation!r} is not a proper rotation matrix (R Rᵀ = 1, det R = +1 required)"
            )
        return arr.copy(), None
    raise ValueError(
        f"orientation={orientation!r} (shape {arr.shape}) is not valid; give a zone axis such as (0, 1, 1), a "
        "3x3 rotation matrix or 'random'"
    )


def _check_fraction(name: str, x: Any) -> float:
    return check_in_range(name, x, 0.0, 1.0, "vacancy fraction", high_open=True)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# ----------------------------------------------------------------------------------------------------------------
# nanocrystal
# ----------------------------------------------------------------------------------------------------------------
def nanocrystal(
    phase: str,
    diameter: float,
    *,
    shape: str = "sphere",
    orientation: Any = (0, 0, 1),
    f_vacancy: float = 0.0,
    anion_vacancy: float | None = None,
    li_vacancy: float = 0.0,
    schottky: float = 0.0,
    displacement_rms: float = 0.0,
    temperature: str | float = "cryo",
    vacuum: float = 5.0,
    box: float | Sequence[float] | None = None,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """A finite, optionally defective nanocrystal in a periodic box.

    The crystal is cut from the perfect lattice around a lattice site (the cation site of LiF, the anion
    site of Li₂O/Li₂S, an atom of the metals), rotated so that the requested zone axis lies along the beam
    (+z), then vacancies are drawn and static displacements added.

    Parameters
    ----------
    phase : str
        One of `PHASES` ("LiF", "Li2O", "Li2S", "Li", "Cu", "Au").
    diameter : float  [Å]
        Sphere diameter, or cube edge for ``shape="cube"``; > 0.
    shape : {"sphere", "cube"}
        Cube faces are the crystal's {100} planes.
    orientation : sequence of 3 numbers | array (3, 3) | "random"
        Zone axis [uvw] put along +z (see `rotation_to_zone_axis`), or a proper rotation matrix R with
        r_lab = R @ r_crystal, or "random" (uniform over SO(3), drawn from `rng`).
    f_vacancy : float
        Fraction of anion sites left empty, in [0, 1): F in LiF, O in Li₂O, S in Li₂S. Exactly
        round(x·N_anion) sites (half up) are removed, chosen uniformly at random. Not allowed for metals.
    anion_vacancy : float, optional
        Alias of `f_vacancy` with a name that reads better for Li₂O/Li₂S; give one or the other.
    li_vacancy : float
        Fraction of Li sites left empty, in [0, 1); exact count round(x·N_Li). Not allowed for Cu/Au.
    schottky : float
        Neutral Schottky defects per anion site, in [0, 1): removes n = round(x·N_anion) further anions and
        q·n further Li (q = 1 for F⁻, 2 for O²⁻/S²⁻), so the nominal charge is unchanged. Ionic phases only.
    displacement_rms : float  [Å]
        Root-mean-square random static displacement along each Cartesian axis (Gaussian, independent).
    temperature : {"cryo", "room"} or float  [K]
        Lattice constant to use (see `lattice_constant`); cryogenic by default.
    vacuum : float  [Å]
        Space between the crystal's outermost atom and the box faces (ignored when `box` is given).
    box : float or sequence of 3 floats, optional  [Å]
        Edge lengths of the (orthorhombic) periodic box; the crystal must fit inside it.
    rng : numpy.random.Generator | int | None
        Random source for vacancies, displacements and a random orientation.

    Returns
    -------
    ase.Atoms
        Centred in an orthorhombic periodic box (pbc True). ``info`` holds phase, structure, a [Å],
        temperature [K], diameter [Å], shape, orientation (3×3 list, r_lab = R r_crystal), zone_axis,
        n_sites and n_vacancies per element, the requested fractions, n_schottky, displacement_rms [Å],
        seed, composition, formula, charge (nominal), density [g/cm³] of the particle (mass over the
        sphere/cube volume) and cell_density [g/cm³].
    """
    _check_phase(phase)
    d = check_positive("diameter", diameter, "Å")
    if shape not in ("sphere", "cube"):
        raise ValueError(f"shape={shape!r} is not valid; give 'sphere' or 'cube'")
    if anion_vacancy is not None:
        if _check_fraction("f_vacancy", f_vacancy) != 0.0 and float(f_vacancy) != float(anion_vacancy):
            raise ValueError(
                f"f_vacancy={f_vacancy!r} and anion_vacancy={anion_vacancy!r} disagree; they are aliases, give one"
            )
        f_vacancy = anion_vacancy
    fx = _check_fraction("f_vacancy", f_vacancy)
    lx = _check_fraction("li_vacancy", li_vacancy)
    sx = _check_fraction("schottky", schottky)
    sigma = check_positive("displacement_rms", displacement_rms, "Å", allow_zero=True)
    if not (math.isfinite(float(vacuum)) and float(vacuum) >= 0):
        raise ValueError(f"vacuum={vacuum!r} Å must be >= 0")

    structure, _, _, anion, anion_charge = _STRUCTURES[phase]
    symbols_cell, frac_cell = _unit_cell(phase)
    has_li = "Li" in symbols_cell
    if anion is None and (fx > 0 or sx > 0):
        raise ValueError(
            f"f_vacancy={fx!r}/schottky={sx!r} need an anion sublattice, which {phase} has none of; "
            "use them with LiF, Li2O or Li2S"
        )
    if not has_li and lx > 0:
        raise ValueError(f"li_vacancy={lx!r} needs a Li sublattice, which {phase} has none of")

    gen, seed = resolve_rng(rng)
    R, zone = _orientation_matrix(orientation, gen)
    a = lattice_constant(phase, temperature)

    # lattice block around the origin, cut in the crystal frame
    n = int(math.ceil(d / (2 * a))) + 1
    grid = np.arange(-n, n + 1)
    cells = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    pos = ((cells[:, None, :] + frac_cell[None, :, :]) * a).reshape(-1, 3)
    sym = np.tile(np.asarray(symbols_cell), len(cells))
    half = d / 2.0
    eps = 1e-9 * max(1.0, d)
    if shape == "sphere":
        keep = np.einsum("ij,ij->i", pos, pos) <= (half + eps) ** 2
    else:
        keep = np.all(np.abs(pos) <= half + eps, axis=1)
    pos, sym = pos[keep], sym[keep]

    # vacancies
    n_sites = {s: int(np.count_nonzero(sym == s)) for s in sorted(set(sym.tolist()))}
    n_anion_vac = n_li_vac = n_schottky = 0
    remove = np.zeros(len(sym), dtype=bool)
    if anion is not None:
        n_anion = n_sites[anion]
        n_anion_vac = _round_half_up(fx * n_anion)
        n_schottky = _round_half_up(sx * n_anion)
        if n_anion_vac + n_schottky > n_anion:
            raise ValueError(
                f"f_vacancy={fx!r} plus schottky={sx!r} remove {n_anion_vac + n_schottky} of {n_anion} {anion} sites; "
                "lower them so that their sum stays below 1"
            )
    if has_li:
        n_li = n_sites["Li"]
        n_li_vac = _round_half_up(lx * n_li)
        if n_li_vac + anion_charge * n_schottky > n_li:
            raise ValueError(
                f"li_vacancy={lx!r} plus schottky={sx!r} remove {n_li_vac + anion_charge * n_schottky} of {n_li} "
                "Li sites; lower them"
            )
    if anion is not None:
        idx = np.flatnonzero(sym == anion)
        remove[gen.choice(idx, size=n_anion_vac + n_schottky, replace=False)] = True
    if has_li:
        idx = np.flatnonzero(sym == "Li")
        remove[gen.choice(idx, size=n_li_vac + anion_charge * n_schottky, replace=False)] = True
    pos, sym = pos[~remove], sym[~remove]
    if len(sym) == 0:
        raise ValueError(f"diameter={diameter!r} Å with these vacancy fractions leaves no atom; make it larger")

    # rotate into the lab frame, then displace
    pos = pos @ R.T
    if sigma > 0:
        pos = pos + gen.normal(scale=sigma, size=pos.shape)

    reach = np.max(np.abs(pos), axis=0)  # the crystal centre (lattice origin) goes to the box centre
    if box is None:
        lengths = 2 * reach + 2 * float(vacuum)
    else:
        lengths = np.broadcast_to(np.asarray(box, dtype=float), (3,)).copy()
        if np.any(~np.isfinite(lengths)) or np.any(lengths <= 0):
            raise ValueError(f"box={box!r} Å must be positive finite edge length(s)")
        if np.any(2 * reach > lengths):
            raise ValueError(
                f"box={box!r} Å is smaller than the crystal (extent {np.round(2 * reach, 3).tolist()} Å); "
                "give a larger box or a smaller diameter"
            )
    lengths = np.maximum(lengths, 1e-6)
    pos = pos + lengths / 2
    atoms = Atoms(symbols=sym.tolist(), positions=pos, cell=np.diag(lengths), pbc=True)

    comp = _composition(atoms.get_chemical_symbols())
    volume = math.pi * d**3 / 6 if shape == "sphere" else d**3
    n_vac = {s: n_sites[s] - comp.get(s, 0) for s in n_sites}
    atoms.info.update(
        {
            "builder": "structures.crystals.nanocrystal",
            "phase": phase,
            "structure": structure,
            "a": a,
            "temperature": _temperature_kelvin(phase, temperature),
            "diameter": d,
            "shape": shape,
            "orientation": R.tolist(),
            "zone_axis": zone,
            "f_vacancy": fx,
            "li_vacancy": lx,
            "schottky": sx,
            "n_sites": n_sites,
            "n_vacancies": n_vac,
            "n_anion_vacancies": n_anion_vac,
            "n_li_vacancies": n_li_vac,
            "n_schottky": n_schottky,
            "displacement_rms": sigma,
            "seed": seed,
            "composition": comp,
            "formula": atoms.get_chemical_formula(mode="hill", empirical=False),
            "charge": int(sum(_NOMINAL_CHARGE[s] * c for s, c in comp.items())),
            "density": mass_density(atoms.get_chemical_symbols(), volume),
            "cell_density": mass_density(atoms.get_chemical_symbols(), float(np.prod(lengths))),
        }
    )
    return atoms
