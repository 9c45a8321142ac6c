"""Hypotheses of the planner: ring densities on the detector plane vs thickness, and the study's named presets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simkit.kinematic import relativistic_factor
from simkit.units import wavelength

#: Named hypotheses of :func:`preset_hypotheses` and what they are.
PRESETS: dict[str, str] = {
    "sro_0.295": "amorphous SEI Type 2 matrix (structures.amorphous.type2_matrix, first I·Q peak ≈ 0.295 Å⁻¹), "
    "kinematic Debye, damaged by the Type 1 → Li₂O kinetics",
    "li2s": "randomly oriented 3 nm Li₂S nanocrystals (111 at 0.303 Å⁻¹), kinematic Debye, beam-stable",
    "lif": "stoichiometric LiF, orientation-averaged dynamical (Bloch-wave) rings vs thickness, beam-stable",
    "lif_fvac20": "LiF with 20 % of the F sites empty, dynamical rings vs thickness, beam-stable",
}
#: Thickness grid [Å] of the dynamical LiF presets (the nuisance parameter is profiled over it).
LIF_THICKNESSES = (10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0)


# ----------------------------------------------------------------------------------------------------------------
# hypotheses
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class Hypothesis:
    """One structural hypothesis as a ring density on the detector plane, tabulated over thickness.

    Parameters
    ----------
    name : str
    q : ndarray, shape (n_q,)  [Å⁻¹]
        Uniform increasing grid (≥ 0), spacing well below the smallest probe disc radius used.
    thicknesses : ndarray, shape (n_t,)  [Å]
        Increasing thicknesses of the table (one value for kinematic hypotheses, where thickness is a scale).
    density : ndarray, shape (n_t, n_q)  [fraction of the incident beam per Å⁻²]
        Isotropic intensity I(|Q|) on the detector plane (direct beam excluded), before the probe.
    thickness : float  [Å]
        Thickness of the sample when this hypothesis is the truth (within the table's range).
    energy : float  [eV]
        Beam energy the density was computed for.
    damage : str
        ``"amorphous"`` (the short-range order decays and Li₂O grows by :class:`simkit.damage.DamageModel`) or
        ``"none"`` (the structure does not change within the planned fluences).
    atom_density : float or None  [atoms/Å³]
        Needed for ``damage="amorphous"``: scales the Li₂O powder profile per atom to the same units.
    source : str
    """

    name: str
    q: np.ndarray
    thicknesses: np.ndarray
    density: np.ndarray
    thickness: float
    energy: float = 300e3
    damage: str = "none"
    atom_density: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r}: a hypothesis needs a non-empty name")
        q = np.asarray(self.q, float)
        t = np.atleast_1d(np.asarray(self.thicknesses, float))
        d = np.asarray(self.density, float)
        if d.ndim == 1:
            d = d[None]
        if q.ndim != 1 or q.size < 8 or q[0] < 0 or not np.all(np.diff(q) > 0):
            raise ValueError(f"hypothesis {self.name!r}: q must be a 1-D increasing grid ≥ 0 of ≥ 8 values [Å⁻¹]")
        if np.ptp(np.diff(q)) > 1e-6 * np.diff(q).mean():
            raise ValueError(f"hypothesis {self.name!r}: q must be uniformly spaced [Å⁻¹]")
        if t.ndim != 1 or np.any(t <= 0) or not np.all(np.diff(t) > 0):
            raise ValueError(f"hypothesis {self.name!r}: thicknesses={t!r} must increase and be > 0 [Å]")
        if d.shape != (t.size, q.size) or not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError(
                f"hypothesis {self.name!r}: density of shape {d.shape} must be finite, ≥ 0 and of shape "
                f"(n_thicknesses, n_q) = {(t.size, q.size)} [fraction per Å⁻²]"
            )
        th = float(self.thickness)
        if not (t[0] - 1e-9 <= th <= t[-1] + 1e-9) and t.size > 1:
            raise ValueError(f"hypothesis {self.name!r}: thickness={th!r} Å lies outside the table {t[0]}–{t[-1]} Å")
        if self.damage not in ("none", "amorphous"):
            raise ValueError(f"damage={self.damage!r}: use 'none' or 'amorphous'")
        if self.damage == "amorphous" and not (self.atom_density and self.atom_density > 0):
            raise ValueError(f"hypothesis {self.name!r}: damage='amorphous' needs atom_density > 0 [atoms/Å³]")
        for a in (q, t, d):
            a.setflags(write=False)
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "thicknesses", t)
        object.__setattr__(self, "density", d)
        object.__setattr__(self, "thickness", th)

    def at_thickness(self, thickness: float) -> np.ndarray:
        """Density at ``thickness`` [Å]: linear interpolation in the table (kinematic tables scale linearly)."""
        t = self.thicknesses
        if t.size == 1:
            return self.density[0] * (thickness / t[0])
        j = int(np.clip(np.searchsorted(t, thickness) - 1, 0, t.size - 2))
        w = (thickness - t[j]) / (t[j + 1] - t[j])
        return (1.0 - w) * self.density[j] + w * self.density[j + 1]


def kinematic_scale(atom_density: float, thickness: float, energy: float) -> float:
    """n·t·(γλ)²: Debye intensity per atom [Å²] → fraction of the beam per Å⁻² of the detector plane.

    Parameters
    ----------
    atom_density : float  [atoms/Å³]
    thickness : float  [Å]
    energy : float  [eV]
    """
    return atom_density * thickness * (relativistic_factor(energy) * wavelength(energy)) ** 2


def hypothesis_from_iq(
    name: str,
    q,
    iq,
    *,
    atom_density: float,
    thickness: float = 100.0,
    energy: float = 300e3,
    damage: str = "none",
    source: str = "",
) -> Hypothesis:
    """A kinematic hypothesis from a Debye intensity per atom.

    Parameters
    ----------
    name : str
    q : ndarray  [Å⁻¹]
        Uniform grid of ``iq``.
    iq : ndarray  [Å² per atom]
        Kinematic intensity (e.g. :func:`simkit.kinematic.debye_intensity`).
    atom_density : float  [atoms/Å³]
    thickness : float  [Å]
        Sample thickness (with the planner's free scale it only sets the number of counts).
    energy : float  [eV]
    damage : str
        ``"none"`` or ``"amorphous"`` (see :class:`Hypothesis`).
    source : str

    Returns
    -------
    Hypothesis
    """
    iq = np.asarray(iq, float)
    dens = iq * kinematic_scale(float(atom_density), float(thickness), float(energy))
    return Hypothesis(
        name=name, q=q, thicknesses=(float(thickness),), density=dens, thickness=thickness, energy=energy,
        damage=damage, atom_density=float(atom_density), source=source or "kinematic Debye I(Q)",
    )  # fmt: skip


def hypothesis_from_atoms(
    name: str,
    atoms,
    *,
    q=None,
    thickness: float = 100.0,
    energy: float = 300e3,
    damage: str | None = None,
) -> Hypothesis:
    """A kinematic hypothesis from a structure (periodic amorphous model or finite nanocrystal).

    Parameters
    ----------
    name : str
    atoms : ase.Atoms
        Periodic in all directions without a vacuum gap (amorphous model: Debye sum with minimum images) or a
        finite cluster (open Debye sum; a nanocrystal in a vacuum box counts as finite).
    q : ndarray or None  [Å⁻¹]
        Uniform grid; default 0 … 1.2 Å⁻¹ in steps of 0.0005.
    thickness : float  [Å]
    energy : float  [eV]
    damage : str or None
        None → ``"amorphous"`` for a periodic model without vacuum, ``"none"`` for a finite crystal.

    Returns
    -------
    Hypothesis
        Atom density from the cell (periodic), or for a finite crystal that of its bulk phase when the model
        carries ``info["phase"]`` (as ``structures.crystals.nanocrystal`` does), otherwise n / cell volume.
    """
    from simkit.kinematic import is_periodic  # the Debye sum's own periodic/finite criterion

    q = _default_q() if q is None else np.asarray(q, float)
    periodic = is_periodic(atoms)
    iq = _debye(atoms, q, periodic)
    if periodic:
        n_vol = len(atoms) / atoms.get_volume()
    else:
        n_vol = _bulk_atom_density(atoms.info.get("phase"), len(atoms) / atoms.get_volume())
    return hypothesis_from_iq(
        name, q, iq, atom_density=n_vol, thickness=thickness, energy=energy,
        damage=("amorphous" if periodic else "none") if damage is None else damage,
        source=f"kinematic Debye of {len(atoms)} atoms ({'periodic' if periodic else 'finite'})",
    )  # fmt: skip


def _bulk_atom_density(phase, fallback: float) -> float:
    from structures.crystals import bulk

    try:
        b = bulk(str(phase))
    except Exception:  # unknown phase: the box density is the best we have
        return fallback
    return len(b) / b.get_volume()


def _default_q() -> np.ndarray:
    return np.arange(0.0, 1.2 + 1e-9, 0.0005)


# ----------------------------------------------------------------------------------------------------------------
# presets (cached on disk: building the amorphous model and the Bloch-wave average takes seconds)
# ----------------------------------------------------------------------------------------------------------------
def _cache_dir() -> Path:
    from simkit.library import default_cache_dir

    return default_cache_dir().parent / "plan"


def _cached(key: dict, build):
    from simkit.atomic import atomic_path

    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = _cache_dir() / f"{key['name']}-{h}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return arrays


def preset_hypotheses(
    names: Sequence[str],
    *,
    thickness: float = 100.0,
    energy: float = 300e3,
    q=None,
    seed: int = 0,
    n_orientations: int = 300,
) -> list[Hypothesis]:
    """Named hypotheses of the study (see :data:`PRESETS`), cached under ``$SEI_SEND_CACHE/plan``.

    Parameters
    ----------
    names : sequence of str
        Keys of :data:`PRESETS`.
    thickness : float  [Å]
        Sample thickness when the hypothesis is true (for the LiF presets within 10–300 Å, the table's range).
    energy : float  [eV]
    q : ndarray or None  [Å⁻¹]
        Uniform grid; default 0 … 1.2 Å⁻¹ in steps of 0.0005 (fine against the 0.0076 Å⁻¹ disc of 0.15 mrad).
    seed : int
        Seed of the amorphous model and the nanocrystal orientation.
    n_orientations : int
        Beam directions of the Bloch-wave orientation average (cubic wedge, Fibonacci lattice).

    Returns
    -------
    list of Hypothesis
    """
    q = _default_q() if q is None else np.asarray(q, float)
    out = []
    for name in names:
        if name not in PRESETS:
            raise ValueError(f"hypothesis {name!r}: unknown preset; use a structure file or one of {sorted(PRESETS)}")
        key = {"name": name, "energy": float(energy), "q": [float(q[0]), float(q[-1]), int(q.size)], "seed": seed,
               "model": "packing"}  # fmt: skip
        if name in ("lif", "lif_fvac20"):
            key.update(name="lif_series", n_orientations=int(n_orientations), thicknesses=list(LIF_THICKNESSES))
            arr = _cached(key, lambda: _lif_rings(q, energy, n_orientations))
            out.append(
                Hypothesis(
                    name=name,
                    q=q,
                    thicknesses=LIF_THICKNESSES,
                    density=arr[name],
                    thickness=thickness,
                    energy=energy,
                    damage="none",
                    source=PRESETS[name],
                )  # fmt: skip
            )
            continue
        arr = _cached(key, lambda name=name: _kinematic_iq(name, q, seed))
        out.append(
            hypothesis_from_iq(
                name,
                q,
                arr["iq"],
                atom_density=float(arr["atom_density"]),
                thickness=thickness,
                energy=energy,
                damage="amorphous" if name == "sro_0.295" else "none",
                source=PRESETS[name],
            )  # fmt: skip
        )
    return out


def _kinematic_iq(name: str, q: np.ndarray, seed: int) -> dict:
    from structures import amorphous, crystals

    if name == "sro_0.295":
        # the packed 600-atom model: the shipped relaxed Type 2 cells (~100 atoms, ~11 Å) are too small for a
        # periodic Debye sum down to the probe's Q (its low-Q intensity goes negative)
        atoms = amorphous.type2_matrix(n_atoms=600, relax=True, rng=seed, source="packing")
        return {"iq": _debye(atoms, q, True), "atom_density": len(atoms) / atoms.get_volume()}
    atoms = crystals.nanocrystal("Li2S", 30.0, orientation="random", rng=seed)
    b = crystals.bulk("Li2S")
    return {"iq": _debye(atoms, q, False), "atom_density": len(b) / b.get_volume()}


def _debye(atoms, q: np.ndarray, periodic: bool) -> np.ndarray:
    """Debye I(Q) [Å²/atom] on ``q``; below 0.02 Å⁻¹ (inside every probe disc) held at its value there."""
    from simkit.kinematic import debye_intensity

    keep = q >= 0.02
    iq = np.empty_like(q)
    iq[keep] = debye_intensity(atoms, q[keep], periodic=periodic)
    iq[~keep] = iq[keep][0]
    return iq


def _lif_rings(q: np.ndarray, energy: float, n_orientations: int) -> dict:
    """Both LiF presets from one orientation average (the beam sets and eigen-problems are shared)."""
    from simkit.bloch import powder_rings
    from structures.crystals import bulk

    rings, _ = powder_rings(
        bulk("LiF"), q, LIF_THICKNESSES, occupancies=[None, {"F": 0.8}], energy=energy,
        n_orientations=n_orientations, symmetry="m-3m",
    )  # fmt: skip
    return {"lif": rings[0], "lif_fvac20": rings[1]}
