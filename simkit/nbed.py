"""Nanobeam electron diffraction (NBED / 4D-STEM patterns) by multislice with abTEM.

Conventions (project-wide): Q = 1/d [Å⁻¹]; angles [mrad]; lengths [Å]; energies [eV]. Patterns are
``(..., ny, nx)`` arrays with zero frequency at index ``(ny // 2, nx // 2)``, axis -2 along the atoms' y and
axis -1 along x (abTEM itself stores ``(x, y)``; this module transposes once). Probe positions are ``(x, y)``
[Å] in the atoms' cell, the same order as ``atoms.positions[:, :2]``. Every pattern is normalised to an
incident intensity of 1: a vacuum probe sums to 1 over the full simulated reciprocal grid.

Method choice (conventional multislice or PRISM)
------------------------------------------------
A conventional run propagates one probe per position (and frozen-phonon configuration). PRISM (abTEM's
``SMatrix`` at interpolation 1, which is exact: it agrees with the conventional run to ~1e-6) propagates one
plane wave per beam inside the probe aperture, ``n_beams ≈ π (α L / λ)²`` for an ``L × L`` cell, and then
builds each position's exit wave as a weighted sum of the beams. :func:`choose_method` compares the two
costs explicitly in FFT units (see :func:`estimate_cost`): a plane-wave propagation costs the same as a
probe propagation, and a reduction costs ``n_beams`` complex multiply-adds per pixel plus one FFT. PRISM wins
for small semiangles and many positions (0.15 mrad in a 40 nm cell: ~30 beams), never for one position.

Why the cell must hold the probe, and why small amorphous boxes are never tiled
------------------------------------------------------------------------------
The simulation is periodic: a probe wider than the cell overlaps its own periodic images and the pattern is
aliased. :func:`required_extent` gives the smallest cell (diameter 3 λ/α ≈ 5 Airy radii, plus the defocus
spread), e.g. ≈ 40 nm at 0.15 mrad and 300 keV; smaller cells raise ``ValueError`` with that size. A small
amorphous box repeated to fill a large cell adds a fake reciprocal lattice (period 6 nm → 0.017 Å⁻¹, more than
the 0.015 Å⁻¹ disc diameter at 0.15 mrad) that shows up as speckle; this module therefore offers no ``tile``
option and refuses a structure that is an exact lateral repeat with a period longer than
``MAX_CRYSTAL_PERIOD`` (see :func:`lateral_period`). For 0.15 mrad patterns of nanocrystals in a thick
amorphous matrix use :func:`simulate_nanocrystal_in_matrix`: multislice of the crystal(s) in a thin slab of
the matrix in a ≥ 40 nm cell, plus the diffuse scattering of the remaining matrix thickness added
kinematically.

Performance notes
-----------------
Grids are rounded up to FFT-friendly sizes (:func:`fft_friendly`; a prime 401² grid is ≈ 4× slower than
405², bench/nbed.py). abTEM's default FFTW planner (``FFTW_MEASURE``) spends seconds planning each new grid
and batch size in a process and is not reproducible across processes (it times candidate algorithms); the
multislice here plans with ``Multislice.fft_planning`` = "FFTW_ESTIMATE" by default, so a pattern is the same
bit for bit in every process (cached library entries equal fresh ones). Computations run on dask's threaded
scheduler with 2 workers.
Defaults (sampling 0.1 Å, 2 Å slices, 4 phonon configurations) come from docs/convergence.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from scipy import special

from simkit.atomic import atomic_path
from simkit.geometry import DetectorGeometry
from simkit.units import check_energy, mrad_to_q, q_to_mrad, wavelength
from structures.checks import check_finite, check_positive

__all__ = [
    "ABTEM_VERSION",
    "DEFAULT_DISPLACEMENT",
    "FFT_PLANNERS",
    "DetectorGeometry",
    "MAX_CRYSTAL_PERIOD",
    "Multislice",
    "Probe",
    "SimulatedPatterns",
    "choose_method",
    "convergence_study",
    "crop_patterns",
    "debye_displacement",
    "estimate_cost",
    "fft_friendly",
    "lateral_period",
    "load_patterns",
    "matrix_diffuse",
    "measure_reflections",
    "required_extent",
    "save_patterns",
    "simulate_nanocrystal_in_matrix",
    "simulate_pattern",
    "simulate_scan",
    "simulate_scan_to_file",
    "to_detector",
]


def _abtem():
    import abtem

    return abtem


def _abtem_version() -> str:
    return str(_abtem().__version__)


ABTEM_VERSION = _abtem_version()

#: Longest lateral repeat period [Å] accepted as a crystal's own periodicity. Larger exact repeats mean a
#: tiled box (fake reciprocal lattice of spacing 1/period); every crystal unit cell of the SEI phases
#: (LiF 4.03, Li₂O 4.61, Li₂S 5.71, Cu 3.62, Li 3.51 Å; ×√2 along [011]) is shorter.
MAX_CRYSTAL_PERIOD = 12.0


# ----------------------------------------------------------------------------------------------------------
# Thermal displacements
# ----------------------------------------------------------------------------------------------------------

_HBAR2_OVER_AMU_KB = 48.508  # ħ²/(1 u · k_B) [Å²·K]  (CODATA 2018 constants)


def debye_displacement(mass: float, debye_temperature: float, temperature: float) -> float:
    """Root-mean-square displacement along one direction in the Debye model.

    ``<u_x²> = 3ħ²T / (m k_B θ_D²) · [Φ(θ_D/T) + θ_D/(4T)]`` with ``Φ(x) = (1/x)∫₀ˣ t/(eᵗ−1) dt``
    (Debye–Waller theory, e.g. Willis & Pryor, *Thermal Vibrations in Crystallography*, 1975, eq. 4.22);
    the isotropic Debye–Waller factor is ``B = 8π² <u_x²>``.

    Parameters
    ----------
    mass : float  [u]
        Atomic mass.
    debye_temperature : float  [K]
    temperature : float  [K]

    Returns
    -------
    float  [Å]
        ``sqrt(<u_x²>)``, the per-direction standard deviation abTEM's ``FrozenPhonons`` expects.
    """
    if mass <= 0 or debye_temperature <= 0 or temperature < 0:
        raise ValueError(
            f"mass={mass!r} [u], debye_temperature={debye_temperature!r} [K] must be positive and "
            f"temperature={temperature!r} [K] non-negative"
        )
    if temperature == 0:
        bracket = 0.25
        t = 1.0
    else:
        x = debye_temperature / temperature
        ts = np.linspace(1e-9, x, 2001)
        phi = np.trapezoid(ts / np.expm1(ts), ts) / x
        bracket = phi + x / 4.0
        t = temperature
    u2 = 3.0 * _HBAR2_OVER_AMU_KB * t / (mass * debye_temperature**2) * bracket
    if temperature == 0:  # zero-point limit: 3ħ²/(4 m k θ)
        u2 = 3.0 * _HBAR2_OVER_AMU_KB / (4.0 * mass * debye_temperature)
    return float(np.sqrt(u2))


#: (mass [u], Debye temperature [K], source) used for the defaults at 100 K (cryo-EM).
_DEBYE_PARAMETERS = {
    # LiF: θ_D ≈ 732 K (low-temperature heat capacity, as tabulated e.g. in Ashcroft & Mermin, Solid State
    # Physics, Table 23.3). Used for Li and F in the ionic SEI phases (LiF, Li₂O).
    "Li": (6.94, 732.0, "Debye model, theta_D(LiF) = 732 K"),
    "F": (19.00, 732.0, "Debye model, theta_D(LiF) = 732 K"),
    # O, S: no single tabulated θ_D for the amorphous SEI; the LiF value is assumed (at 100 K the
    # displacement is zero-point dominated and scales only as θ_D^-1/2).
    "O": (16.00, 732.0, "Debye model, theta_D assumed = LiF 732 K"),
    "S": (32.06, 732.0, "Debye model, theta_D assumed = LiF 732 K"),
    # Cu: θ_D = 343 K (Kittel, Introduction to Solid State Physics, 8th ed., Table 5.1 [ch. 5]).
    "Cu": (63.55, 343.0, "Debye model, theta_D(Cu) = 343 K (Kittel)"),
    # Light elements of organic/FSI-derived fragments, same assumption as O.
    "C": (12.01, 732.0, "Debye model, theta_D assumed = LiF 732 K"),
    "N": (14.01, 732.0, "Debye model, theta_D assumed = LiF 732 K"),
    "H": (1.008, 732.0, "Debye model, theta_D assumed = LiF 732 K"),
    "P": (30.97, 732.0, "Debye model, theta_D assumed = LiF 732 K"),
}

#: Default rms displacement per direction at 100 K [Å]: Li 0.090, F 0.054, O 0.059, S 0.042, Cu 0.050 Å, i.e.
#: B = 8π²u² = 0.64, 0.23, 0.28, 0.14, 0.20 Å² (zero-point motion is most of it). Check of the model at
#: 295 K: B(Cu) = 0.47 Å² against the measured ≈ 0.55 Å², B(Li in LiF) = 1.06 Å²; the single-θ_D model
#: probably underestimates the heavier ion of a compound (B(F) = 0.39 Å² at 295 K), so treat F, O, S as
#: lower bounds. Their effect on Bragg ratios at Q ≤ 0.7 Å⁻¹ is small (exp(−B Q²/4) ≥ 0.92).
DEFAULT_DISPLACEMENT: dict[str, float] = {
    el: round(debye_displacement(m, th, 100.0), 4) for el, (m, th, _) in _DEBYE_PARAMETERS.items()
}


# ----------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Probe:
    """Probe-forming settings.

    Parameters
    ----------
    energy : float  [eV]
        Beam energy, 10–1000 keV (default 300e3).
    semiangle : float  [mrad]
        Convergence semi-angle of the (soft-edged, abTEM default) condenser aperture; > 0.
    defocus : float  [Å]
        Defocus (abTEM convention: positive = underfocus, ``C10 = -defocus``).
    source_size : float  [Å]
        Standard deviation of a Gaussian effective source in the specimen plane; the pattern is the
        incoherent average over a 3 × 3 Gauss–Hermite stencil of probe positions (0 = coherent).
    """

    energy: float = 300e3
    semiangle: float = 2.0
    defocus: float = 0.0
    source_size: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy", check_energy(self.energy, "energy"))
        s = check_positive("semiangle", self.semiangle, "mrad")
        if s > 100:
            raise ValueError(f"semiangle={self.semiangle!r} mrad: NBED semi-angles are ≤ 100 mrad [mrad]")
        object.__setattr__(self, "semiangle", s)
        object.__setattr__(self, "defocus", check_finite("defocus", self.defocus, "Å"))
        object.__setattr__(self, "source_size", check_positive("source_size", self.source_size, "Å", allow_zero=True))

    @property
    def wavelength(self) -> float:
        """Relativistic electron wavelength [Å]."""
        return wavelength(self.energy)

    @property
    def disc_radius(self) -> float:
        """Radius of the bright-field disc, semiangle/λ [Å⁻¹]."""
        return mrad_to_q(self.semiangle, self.energy)

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the settings (HDF5-attribute friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Probe:
        """Inverse of :meth:`to_dict` (unknown keys are rejected)."""
        return cls(**_known_keys(cls, d))


#: FFTW planner efforts accepted by :class:`Multislice` (``fft_planning``).
FFT_PLANNERS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")


@dataclass(frozen=True, kw_only=True)
class Multislice:
    """Multislice settings (defaults chosen by the convergence study in docs/convergence.md).

    Parameters
    ----------
    sampling : float  [Å]
        Requested real-space sampling; the grid uses the next FFT-friendly size, so the actual sampling is
        equal or finer.
    slice_thickness : float  [Å]
    n_phonons : int
        Frozen-phonon configurations (0 = static lattice, no displacements).
    displacement : dict of {str: float}  [Å]
        Per-element rms displacement along each direction (abTEM ``FrozenPhonons`` sigmas); defaults
        :data:`DEFAULT_DISPLACEMENT` (Debye model at 100 K, sources in ``_DEBYE_PARAMETERS``).
    max_angle : float  [mrad]
        Largest scattering angle kept in the patterns (half-width of the square pattern). Must not exceed
        abTEM's antialias limit ``(2/3) · λ / (2 · sampling)``.
    parametrization : str
        abTEM scattering-factor parametrization: "lobato" (default) or "kirkland".
    fft_planning : str
        FFTW planner effort of the multislice FFTs: "FFTW_ESTIMATE" (default), "FFTW_MEASURE", "FFTW_PATIENT"
        or "FFTW_EXHAUSTIVE". Only "FFTW_ESTIMATE" is reproducible bit for bit from one process to the next:
        the others pick their algorithm by timing it, so the same simulation in a new process differs in the
        last bits (measured: ≈ 4·10⁻⁶ of the largest pixel of a Li metal library entry). That is enough to
        re-randomise every Poisson draw of a synthetic scan made from the pattern, so cached and freshly
        simulated library entries would give different scans. The measuring planners can be faster for long
        runs on one grid (they spend seconds planning each new grid and batch size).
    """

    sampling: float = 0.1
    slice_thickness: float = 2.0
    n_phonons: int = 4
    displacement: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DISPLACEMENT))
    max_angle: float = 40.0
    parametrization: str = "lobato"
    fft_planning: str = "FFTW_ESTIMATE"

    def __post_init__(self) -> None:
        for name in ("sampling", "slice_thickness", "max_angle"):
            v = check_positive(name, getattr(self, name), "mrad" if name == "max_angle" else "Å")
            object.__setattr__(self, name, v)
        n = self.n_phonons
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"n_phonons={n!r}: must be an integer ≥ 0 (0 = static lattice)")
        object.__setattr__(self, "n_phonons", int(n))
        if not isinstance(self.displacement, Mapping):
            raise TypeError(f"displacement={self.displacement!r}: give a dict {{element: rms displacement [Å]}}")
        disp = {
            str(k): check_positive(f"displacement[{k!r}]", v, "Å", allow_zero=True)
            for k, v in self.displacement.items()
        }
        object.__setattr__(self, "displacement", disp)
        if self.parametrization not in ("lobato", "kirkland"):
            raise ValueError(f"parametrization={self.parametrization!r}: use 'lobato' or 'kirkland'")
        if self.fft_planning not in FFT_PLANNERS:
            raise ValueError(
                f"fft_planning={self.fft_planning!r}: use one of {', '.join(FFT_PLANNERS)} (only 'FFTW_ESTIMATE' "
                "is reproducible bit for bit across processes)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; ``displacement`` stays a dict (stored as JSON in HDF5)."""
        d = asdict(self)
        d["displacement"] = dict(self.displacement)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Multislice:
        """Inverse of :meth:`to_dict`; ``displacement`` may be a JSON string."""
        d = dict(_known_keys(cls, d))
        if isinstance(d.get("displacement"), str):
            d["displacement"] = json.loads(d["displacement"])
        return cls(**d)

    def replace(self, **changes: Any) -> Multislice:
        """Copy with some settings changed."""
        d = self.to_dict()
        d.update(changes)
        return Multislice(**d)


def _known_keys(cls, d: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings {sorted(unknown)}; valid: {sorted(names)}")
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


@dataclass(frozen=True, kw_only=True)
class SimulatedPatterns:
    """Simulated diffraction patterns.

    Parameters
    ----------
    array : numpy.ndarray
        Intensities ``(..., ny, nx)`` with zero frequency at ``(ny // 2, nx // 2)``; fraction of the incident
        intensity per pixel (a vacuum probe sums to 1 over the full simulated grid).
    sampling : tuple of float  [Å⁻¹]
        Pixel size ``(dqy, dqx)`` = 1 / cell length (Q = 1/d).
    metadata : dict
        Every setting needed to reproduce the patterns (probe, multislice, grid, positions, seed, method,
        abTEM version).
    """

    array: np.ndarray
    sampling: tuple[float, float]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def center(self) -> tuple[int, int]:
        """Index of zero frequency ``(ny // 2, nx // 2)`` [px]."""
        return self.array.shape[-2] // 2, self.array.shape[-1] // 2

    def q_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates ``(qy, qx)`` [Å⁻¹], each of shape ``array.shape[-2:]``."""
        ny, nx = self.array.shape[-2:]
        qy = (np.arange(ny) - ny // 2) * self.sampling[0]
        qx = (np.arange(nx) - nx // 2) * self.sampling[1]
        return np.meshgrid(qy, qx, indexing="ij")


# ----------------------------------------------------------------------------------------------------------
# Grids, limits, probe size
# ----------------------------------------------------------------------------------------------------------


def fft_friendly(n: int) -> int:
    """Smallest integer ≥ n of the form 2^a · 3^b · 5^c (fast FFT sizes).

    Parameters
    ----------
    n : int
        Requested number of grid points (≥ 1).

    Returns
    -------
    int
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n={n!r}: must be ≥ 1")
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def max_angle_limit(sampling: float, energy: float) -> float:
    """Largest scattering angle free of aliasing for a real-space sampling (abTEM's 2/3 antialias aperture).

    Parameters
    ----------
    sampling : float  [Å]
    energy : float  [eV]

    Returns
    -------
    float  [mrad]
        ``(2/3) · λ / (2 · sampling)``.
    """
    return 2.0 / 3.0 * wavelength(energy) / (2.0 * sampling) * 1e3


def required_extent(probe: Probe) -> float:
    """Smallest lateral cell that holds the probe without aliasing.

    A diameter of 3 λ/α (radius 1.5 λ/α ≈ 2.5 Airy radii, holding ≈ 93 % of a focused hard-aperture
    probe's intensity — :func:`_encircled_fraction`; abTEM's soft aperture has weaker tails) plus the
    geometric defocus spread 2·|Δf|·α and 6 source-size standard deviations. 0.15 mrad at 300 keV:
    394 Å (≈ 40 nm: the 8 nm Airy radius and tails beyond 20 nm); 2 mrad: 30 Å.

    Parameters
    ----------
    probe : Probe

    Returns
    -------
    float  [Å]
    """
    alpha = probe.semiangle * 1e-3
    return 3.0 * probe.wavelength / alpha + 2.0 * abs(probe.defocus) * alpha + 6.0 * probe.source_size


def _encircled_fraction(radius: float, probe: Probe) -> float:
    """Fraction of a focused hard-aperture probe's intensity within ``radius`` [Å] (1 − J0² − J1²)."""
    v = 2 * np.pi * probe.semiangle * 1e-3 * radius / probe.wavelength
    return float(1 - special.j0(v) ** 2 - special.j1(v) ** 2)


def _maps_onto_itself(wrapped, num, trees, boxsize, axis, length, t, idx, tol) -> bool:
    """True if atoms ``idx`` moved by ``t`` along ``axis`` (mod ``length``) land on same-element atoms."""
    from scipy.spatial import cKDTree

    for z in np.unique(num[idx]):
        sel = idx[num[idx] == z]
        if z not in trees:
            trees[z] = cKDTree(wrapped[num == z], boxsize=boxsize)
        moved = wrapped[sel].copy()
        moved[:, axis] = np.mod(moved[:, axis] + t, length)
        d, _ = trees[z].query(moved, distance_upper_bound=tol * 10)
        if not np.all(d < tol * 10):
            return False
    return True


def lateral_period(atoms, *, tol: float = 1e-3, max_candidates: int = 64) -> tuple[float | None, float | None]:
    """Shortest exact lateral repeat of a structure along x and y.

    A translation t along x is a repeat if every atom moved by t (modulo the cell) lands on an atom of the
    same element within ``tol``. Candidates are the x-offsets of same-element atoms in the first atom's
    row, tested in ascending order (first on 256 random atoms, then on all).

    Parameters
    ----------
    atoms : ase.Atoms
        Orthorhombic cell.
    tol : float  [Å]
    max_candidates : int
        Candidates tested per axis (the shortest ones).

    Returns
    -------
    tuple  [Å]
        ``(period_x, period_y)``; ``None`` where no repeat shorter than the cell exists.
    """
    pos = np.asarray(atoms.positions, dtype=float)
    num = np.asarray(atoms.numbers)
    cell = np.diag(np.asarray(atoms.cell)).astype(float)
    if len(pos) == 0:
        return None, None
    wrapped = np.mod(pos, np.where(cell > 0, cell, 1.0))
    boxsize = np.where(cell > 0, cell, 1e9)
    subset = np.random.default_rng(0).permutation(len(pos))[:256]
    everything = np.arange(len(pos))
    out: list[float | None] = []
    for axis in (0, 1):
        length = cell[axis]
        others = [a for a in (0, 1, 2) if a != axis]
        ref = wrapped[0]
        same = (num == num[0]) & np.all(np.abs(wrapped[:, others] - ref[others]) < tol, axis=1)
        cand = np.sort(np.mod(wrapped[same, axis] - ref[axis], length))
        cand = cand[(cand > tol) & (cand < length - tol)][:max_candidates]
        trees: dict = {}
        found = None
        for t in cand:
            args = (wrapped, num, trees, boxsize, axis, length, t)
            if _maps_onto_itself(*args, subset, tol) and _maps_onto_itself(*args, everything, tol):
                found = float(t)
                break
        out.append(found)
    return out[0], out[1]


def _check_atoms(atoms, probe: Probe, ms: Multislice, *, allow_repeat: bool = False) -> tuple[float, float]:
    """Validate the structure and return the lateral extent (Lx, Ly) [Å]."""
    try:
        n = len(atoms)
        cell = np.asarray(atoms.cell, dtype=float)
    except (TypeError, AttributeError) as err:
        raise TypeError(f"atoms={type(atoms).__name__}: give an ase.Atoms with a cell") from err
    if n == 0:
        raise ValueError("atoms is empty (0 atoms): give a structure with at least one atom and a cell [Å]")
    if cell.shape != (3, 3) or np.any(np.abs(cell - np.diag(np.diag(cell))) > 1e-6):
        raise ValueError(f"atoms.cell={cell.tolist()!r}: must be orthorhombic (diagonal) [Å]")
    lx, ly, lz = np.diag(cell)
    if min(lx, ly, lz) <= 0:
        raise ValueError(f"atoms.cell lengths {lx, ly, lz} [Å] must be positive (set atoms.cell)")
    need = required_extent(probe)
    if min(lx, ly) < need:
        raise ValueError(
            f"atoms cell {lx:.0f} × {ly:.0f} Å is too small for a {probe.semiangle} mrad probe at "
            f"{probe.energy / 1e3:.0f} keV (defocus {probe.defocus} Å): the cell must be ≥ {need:.0f} Å "
            f"(3 λ/α, about 5 Airy radii) on each side, or the pattern is aliased by the probe's periodic images"
        )
    limit = max_angle_limit(ms.sampling, probe.energy)
    if ms.max_angle > limit:
        raise ValueError(
            f"sampling={ms.sampling} Å is too coarse for max_angle={ms.max_angle} mrad at {probe.energy / 1e3:.0f} "
            f"keV: the antialias limit is {limit:.1f} mrad; use sampling ≤ "
            f"{2 / 3 * probe.wavelength / (2 * ms.max_angle * 1e-3):.4f} Å or a smaller max_angle"
        )
    if ms.n_phonons > 0:
        missing = sorted(set(atoms.get_chemical_symbols()) - set(ms.displacement))
        if missing:
            raise ValueError(
                f"displacement has no rms value for {missing}: add them to Multislice.displacement [Å] "
                f"(known defaults: {sorted(DEFAULT_DISPLACEMENT)}) or set n_phonons=0"
            )
    if not allow_repeat:
        px, py = lateral_period(atoms)
        for name, p in (("x", px), ("y", py)):
            if p is not None and p > MAX_CRYSTAL_PERIOD:
                raise ValueError(
                    f"atoms is an exact repeat along {name} with period {p:.1f} Å > {MAX_CRYSTAL_PERIOD} Å: a tiled "
                    f"box adds a fake reciprocal lattice (spacing {1 / p:.4f} Å⁻¹); build one structure that "
                    "fills the cell instead of tiling a small box"
                )
    return float(lx), float(ly)


def _grid(extent: tuple[float, float], sampling: float) -> tuple[int, int]:
    return tuple(fft_friendly(math.ceil(e / sampling - 1e-9)) for e in extent)


# ----------------------------------------------------------------------------------------------------------
# Cost model and method choice
# ----------------------------------------------------------------------------------------------------------


def _n_beams(probe: Probe, extent: tuple[float, float]) -> int:
    """Plane waves inside the aperture on the cell's reciprocal lattice (what abTEM's SMatrix propagates)."""
    kc = probe.disc_radius
    my = int(np.ceil(kc * extent[1])) + 1
    mx = int(np.ceil(kc * extent[0])) + 1
    i, j = np.meshgrid(np.arange(-mx, mx + 1) / extent[0], np.arange(-my, my + 1) / extent[1])
    return int(np.count_nonzero(i**2 + j**2 <= kc**2))


def estimate_cost(
    probe: Probe, ms: Multislice, extent: tuple[float, float], thickness: float, n_positions: int
) -> dict[str, float]:
    """Operation-count estimate of conventional multislice versus PRISM.

    Units: one complex FFT of the full grid = ``5 N log2 N`` flops with N the number of grid points.
    Conventional: ``n_pos · n_conf · n_slices · (2 FFT + 12 N)``. PRISM: ``n_conf · n_beams · n_slices ·
    (2 FFT + 12 N)`` for the plane waves plus ``n_pos · n_conf · (8 N n_beams + FFT)`` for the reductions
    (source-size stencils multiply the position count by 9).

    Parameters
    ----------
    probe, ms : Probe, Multislice
    extent : tuple of float  [Å]
    thickness : float  [Å]
    n_positions : int

    Returns
    -------
    dict
        ``{"multislice": flops, "prism": flops, "n_beams": int, "gpts": (nx, ny)}``.
    """
    gpts = _grid(extent, ms.sampling)
    n = gpts[0] * gpts[1]
    fft = 5.0 * n * np.log2(n)
    n_slices = max(1, math.ceil(thickness / ms.slice_thickness))
    n_conf = max(1, ms.n_phonons)
    n_pos = n_positions * (9 if probe.source_size > 0 else 1)
    per_wave = n_slices * (2 * fft + 12 * n)
    nb = _n_beams(probe, extent)
    return {
        "multislice": float(n_pos * n_conf * per_wave),
        "prism": float(n_conf * (nb * per_wave + n_pos * (8.0 * n * nb + fft))),
        "n_beams": nb,
        "gpts": gpts,
    }


def choose_method(probe: Probe, ms: Multislice, extent, thickness: float, n_positions: int) -> str:
    """``"prism"`` if :func:`estimate_cost` says PRISM is cheaper by more than 20 %, else ``"multislice"``."""
    c = estimate_cost(probe, ms, extent, thickness, n_positions)
    return "prism" if c["prism"] < 0.8 * c["multislice"] else "multislice"


# ----------------------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------------------


def _potential(atoms, ms: Multislice, gpts, seed):
    abtem = _abtem()
    if ms.n_phonons > 0 and any(ms.displacement.get(s, 0.0) > 0 for s in set(atoms.get_chemical_symbols())):
        symbols = sorted(set(atoms.get_chemical_symbols()))
        sigmas = {s: ms.displacement[s] for s in symbols}
        seeds = tuple(int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, ms.n_phonons))
        structure = abtem.FrozenPhonons(atoms, num_configs=ms.n_phonons, sigmas=sigmas, seed=seeds)
    else:
        structure = atoms
    return abtem.Potential(
        structure,
        gpts=gpts,
        slice_thickness=ms.slice_thickness,
        parametrization=ms.parametrization,
        projection="infinite",
    )


def _stencil(positions: np.ndarray, source_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Expand (n, 2) positions to (n, 9, 2) Gauss–Hermite nodes and weights (9,) for a Gaussian source."""
    if source_size <= 0:
        return positions[:, None, :], np.ones(1)
    nodes = np.array([-np.sqrt(3.0), 0.0, np.sqrt(3.0)]) * source_size
    w1 = np.array([1 / 6, 2 / 3, 1 / 6])
    dx, dy = np.meshgrid(nodes, nodes, indexing="ij")
    offs = np.stack([dx.ravel(), dy.ravel()], axis=-1)
    w = np.outer(w1, w1).ravel()
    return positions[:, None, :] + offs[None], w


def crop_patterns(array: np.ndarray, sampling: tuple[float, float], qmax: float) -> np.ndarray:
    """Crop abTEM diffraction patterns to the square |q| ≤ ``qmax`` (how simulate_scan trims abTEM's output).

    Parameters
    ----------
    array : ndarray, shape (..., nx, ny)
        Patterns in abTEM's order, zero frequency at index n//2.
    sampling : (float, float)  [Å⁻¹]
        Reciprocal sampling of the last two axes.
    qmax : float  [Å⁻¹]

    Returns
    -------
    ndarray
        A view with odd last two lengths, zero frequency at n//2.
    """
    out = array
    for ax, dq in zip((-2, -1), sampling):
        n = out.shape[ax]
        c = n // 2
        h = min(int(np.ceil(qmax / dq - 1e-9)), c, n - 1 - c)
        idx = slice(c - h, c + h + 1)
        out = out[(Ellipsis, idx, slice(None))] if ax == -2 else out[(Ellipsis, idx)]
    return out


def _run_batches(atoms, probe: Probe, ms: Multislice, positions: np.ndarray, seed, method: str, batch: int):
    """Generator: first the metadata dict, then ``(start, stop, weight, patterns)`` per batch of positions.

    ``patterns`` has shape ``(stop - start, ny, nx)`` in (y, x) order, averaged over the source-size stencil;
    the caller adds ``weight * patterns`` into rows ``start:stop`` of its target (for PRISM with several
    frozen-phonon configurations each batch comes once per configuration, weight 1/n_configs). The metadata
    dict gains ``sampling`` (dqy, dqx) [Å⁻¹] once the first batch is done.
    """
    import dask

    abtem = _abtem()
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    gpts = _grid(extent, ms.sampling)
    pot = _potential(atoms, ms, gpts, seed)
    stencil, weights = _stencil(positions, probe.source_size)
    n_st = len(weights)
    detector = abtem.PixelatedDetector(max_angle=ms.max_angle)
    aberr = {"C10": -probe.defocus} if probe.defocus else {}
    qmax = mrad_to_q(ms.max_angle, probe.energy)
    meta = {
        "probe": probe.to_dict(),
        "multislice": ms.to_dict(),
        "method": method,
        "gpts": [int(g) for g in gpts],
        "extent": list(extent),
        "actual_sampling": [extent[0] / gpts[0], extent[1] / gpts[1]],
        "thickness": float(atoms.cell[2, 2]),
        "n_slices": int(pot.num_slices),
        "seed": None if seed is None else int(seed),
        "abtem_version": ABTEM_VERSION,
        "n_atoms": len(atoms),
        "normalisation": "fraction of incident intensity per pixel",
    }

    def finish(m, n_pos):
        arr = np.asarray(m.array, dtype=np.float64).reshape(-1, *m.array.shape[-2:])
        samp = (float(m.sampling[0]), float(m.sampling[1]))  # (dqx, dqy) in abTEM order
        meta["sampling"] = [samp[1], samp[0]]
        arr = crop_patterns(arr, samp, qmax)
        arr = arr.reshape(n_pos, n_st, *arr.shape[-2:])
        arr = np.tensordot(weights, arr, axes=([0], [1]))
        return np.swapaxes(arr, -1, -2)  # abTEM (x, y) → (y, x)

    yield meta
    n = len(positions)
    # abTEM chunks ensembles by "dask.chunk-size" (default 128 MB) and refuses a single wave larger than that
    # (an 8000² complex128 grid is 1 GB): allow at least two waves per chunk.
    from dask.utils import parse_bytes

    wave_bytes = 16 * gpts[0] * gpts[1]
    chunk = max(parse_bytes(str(abtem.config.get("dask.chunk-size"))), 2 * wave_bytes)
    settings = {
        "diagnostics.progress_bar": False,
        "dask.chunk-size": f"{chunk} B",
        "fftw.planning_effort": ms.fft_planning,
    }
    with dask.config.set(scheduler="threads", num_workers=2), abtem.config.set(settings):
        if method == "prism":
            # One S-matrix per frozen-phonon configuration, built once and reduced for every batch of
            # positions (abTEM's lazy SMatrix.scan would rebuild it per call). Configurations come from the
            # same FrozenPhonons object as the conventional path, so both give identical patterns.
            structure = pot.frozen_phonons
            configs = list(structure) if hasattr(structure, "seed") else [atoms]
            ctf = abtem.CTF(semiangle_cutoff=probe.semiangle, energy=probe.energy, **aberr)
            for config in configs:
                cpot = abtem.Potential(
                    config,
                    gpts=gpts,
                    slice_thickness=ms.slice_thickness,
                    parametrization=ms.parametrization,
                    projection="infinite",
                )
                smat = abtem.SMatrix(
                    semiangle_cutoff=probe.semiangle,
                    energy=probe.energy,
                    potential=cpot,
                    interpolation=1,
                    downsample=False,
                ).build(lazy=False)
                for i in range(0, n, batch):
                    j = min(i + batch, n)
                    scan = abtem.CustomScan(stencil[i:j].reshape(-1, 2))
                    m = smat.reduce(scan=scan, ctf=ctf, detectors=detector)
                    m = m.compute() if m.is_lazy else m
                    yield i, j, 1.0 / len(configs), finish(m, j - i)
        else:
            pr = abtem.Probe(energy=probe.energy, semiangle_cutoff=probe.semiangle, **aberr)
            pr.grid.match(pot)
            for i in range(0, n, batch):
                j = min(i + batch, n)
                scan = abtem.CustomScan(stencil[i:j].reshape(-1, 2))
                m = pr.multislice(pot, scan=scan, detectors=detector, lazy=True).compute()
                yield i, j, 1.0, finish(m, j - i)


def _prepare(atoms, probe, ms, positions, method, batch, allow_repeat):
    pos = np.asarray(positions, dtype=float)
    if pos.ndim < 1 or pos.shape[-1] != 2 or pos.size == 0 or not np.all(np.isfinite(pos)):
        raise ValueError(f"positions with shape {pos.shape}: give finite (..., 2) probe positions (x, y) [Å]")
    if method not in ("auto", "multislice", "prism"):
        raise ValueError(f"method={method!r}: use 'auto', 'multislice' or 'prism'")
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError(f"batch={batch!r}: must be an integer ≥ 1 (positions per abTEM call)")
    extent = _check_atoms(atoms, probe, ms, allow_repeat=allow_repeat)
    flat = pos.reshape(-1, 2)
    thickness = float(atoms.cell[2, 2])
    if method == "auto":
        method = choose_method(probe, ms, extent, thickness, len(flat))
    cost = estimate_cost(probe, ms, extent, thickness, len(flat))
    cost["gpts"] = list(cost["gpts"])
    return pos, flat, method, cost


def simulate_scan(
    atoms,
    probe: Probe,
    ms: Multislice,
    positions,
    *,
    seed: int | None = None,
    method: str = "auto",
    batch: int = 16,
    allow_repeat: bool = False,
) -> SimulatedPatterns:
    """NBED patterns at many probe positions (in memory; :func:`simulate_scan_to_file` streams long scans).

    Parameters
    ----------
    atoms : ase.Atoms
        Structure in an orthorhombic cell; the beam runs along -z through the whole cell (thickness = cell z).
    probe : Probe
    ms : Multislice
    positions : array_like  [Å]
        Probe positions ``(..., 2)`` as ``(x, y)`` in the cell.
    seed : int or None
        Seed of the frozen-phonon displacements (same seed → identical patterns).
    method : {"auto", "multislice", "prism"}
        "auto" chooses by :func:`choose_method` (explicit cost estimate).
    batch : int
        Probe positions per abTEM call (bounds memory: one batch of full-grid patterns at a time).
    allow_repeat : bool
        Skip the tiled-box check (:func:`lateral_period`) — only for genuinely periodic crystals with
        large cells.

    Returns
    -------
    SimulatedPatterns
        ``array`` of shape ``positions.shape[:-1] + (ny, nx)``, sampling ``(dqy, dqx)`` [Å⁻¹].
    """
    pos, flat, method, cost = _prepare(atoms, probe, ms, positions, method, batch, allow_repeat)
    gen = _run_batches(atoms, probe, ms, flat, seed, method, int(batch))
    meta = next(gen)
    out = None
    for i, j, w, arr in gen:
        if out is None:
            out = np.zeros((len(flat), *arr.shape[-2:]))
        out[i:j] += w * arr
    sampling = tuple(meta.pop("sampling"))
    meta["positions"] = flat.tolist()
    meta["cost"] = cost
    out = out.reshape(*pos.shape[:-1], *out.shape[-2:])
    return SimulatedPatterns(array=out, sampling=sampling, metadata=meta)


def simulate_scan_to_file(
    path,
    atoms,
    probe: Probe,
    ms: Multislice,
    positions,
    *,
    seed: int | None = None,
    method: str = "auto",
    batch: int = 16,
    allow_repeat: bool = False,
    dtype=np.float32,
) -> None:
    """Like :func:`simulate_scan` but streams each batch into an HDF5 file (bounded memory for long scans).

    The file has the layout of :func:`save_patterns` (``/patterns`` of shape ``(n_positions, ny, nx)``,
    one pattern per chunk, attribute ``positions_shape``; settings, structure and versions) and is written to
    a temporary file beside ``path`` and renamed when complete, so ``path`` never holds a partial scan. Read it with
    :func:`load_patterns` (which restores ``positions_shape``) or lazily with h5py.

    Parameters
    ----------
    path : str or os.PathLike
    atoms, probe, ms, positions, seed, method, batch, allow_repeat
        As :func:`simulate_scan`.
    dtype : numpy dtype
        Storage type of the patterns (float32 default: 7 significant digits).
    """
    import h5py

    pos, flat, method, cost = _prepare(atoms, probe, ms, positions, method, batch, allow_repeat)
    gen = _run_batches(atoms, probe, ms, flat, seed, method, int(batch))
    meta = next(gen)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = None
        for i, j, w, arr in gen:
            if ds is None:
                ny, nx = arr.shape[-2:]
                ds = f.create_dataset("patterns", shape=(len(flat), ny, nx), dtype=dtype, chunks=(1, ny, nx))
                ds[...] = 0
            ds[i:j] = ds[i:j] + w * arr
        meta["positions"] = flat.tolist()
        meta["cost"] = cost
        ds.attrs["positions_shape"] = list(pos.shape[:-1])
        _write_attrs(f, ds, tuple(meta.pop("sampling")), meta, atoms)


def simulate_pattern(
    atoms,
    probe: Probe,
    ms: Multislice,
    position=None,
    seed: int | None = None,
    *,
    method: str = "auto",
    allow_repeat: bool = False,
) -> SimulatedPatterns:
    """One NBED pattern.

    Parameters
    ----------
    atoms : ase.Atoms
    probe : Probe
    ms : Multislice
    position : tuple of float or None  [Å]
        Probe position ``(x, y)``; None = centre of the cell.
    seed : int or None
        Frozen-phonon seed.
    method : {"auto", "multislice", "prism"}
    allow_repeat : bool
        See :func:`simulate_scan`.

    Returns
    -------
    SimulatedPatterns
        ``array`` of shape ``(ny, nx)``, zero frequency at ``(ny // 2, nx // 2)``, sampling [Å⁻¹].
    """
    if position is None:
        try:
            position = (float(atoms.cell[0, 0]) / 2, float(atoms.cell[1, 1]) / 2)
        except (TypeError, AttributeError, IndexError) as err:
            raise TypeError(f"atoms={type(atoms).__name__}: give an ase.Atoms with a cell") from err
    pos = np.asarray(position, dtype=float)
    if pos.shape != (2,):
        raise ValueError(f"position={position!r}: give one (x, y) probe position [Å]")
    out = simulate_scan(atoms, probe, ms, pos, seed=seed, method=method, allow_repeat=allow_repeat)
    return out


# ----------------------------------------------------------------------------------------------------------
# Detector resampling
# ----------------------------------------------------------------------------------------------------------


def _overlap_matrix(n_src: int, c_src: float, d_src: float, n_dst: int, c_dst: float, d_dst: float) -> np.ndarray:
    """(n_dst, n_src) fractions of each source pixel falling in each target pixel (1-D interval overlap)."""
    s_lo = (np.arange(n_src) - c_src - 0.5) * d_src
    t_lo = (np.arange(n_dst) - c_dst - 0.5) * d_dst
    lo = np.maximum(t_lo[:, None], s_lo[None, :])
    hi = np.minimum(t_lo[:, None] + d_dst, s_lo[None, :] + d_src)
    return np.clip(hi - lo, 0.0, None) / d_src


def to_detector(patterns: SimulatedPatterns, geometry: DetectorGeometry) -> np.ndarray:
    """Resample simulated patterns onto a detector grid, conserving intensity.

    Exact area-overlap rebinning: each simulation pixel is a rectangle ``dqy × dqx`` around its centre
    (zero frequency at index n//2), each detector pixel a square of side ``geometry.pixel_size`` around its
    centre (``geometry.center`` ↔ Q = 0). The intensity of a source pixel is shared among the detector pixels
    in proportion to the overlap area (separable: 1-D overlap matrices along y and x). Intensity falling
    outside the detector is lost; everything inside is conserved exactly.

    Parameters
    ----------
    patterns : SimulatedPatterns
        ``array (..., ny, nx)``, sampling ``(dqy, dqx)`` [Å⁻¹].
    geometry : DetectorGeometry
        Target grid: shape [px], pixel_size [Å⁻¹/px], center [px].

    Returns
    -------
    numpy.ndarray
        ``(..., det_ny, det_nx)`` float64, fraction of incident intensity per detector pixel.
    """
    if not isinstance(patterns, SimulatedPatterns):
        raise TypeError(f"patterns={type(patterns).__name__}: give a SimulatedPatterns")
    if not isinstance(geometry, DetectorGeometry):
        raise TypeError(f"geometry={type(geometry).__name__}: give a DetectorGeometry")
    a = np.asarray(patterns.array, dtype=np.float64)
    ny, nx = a.shape[-2:]
    dqy, dqx = patterns.sampling
    cy, cx = geometry.center
    my = _overlap_matrix(ny, ny // 2, dqy, geometry.shape[0], cy, geometry.pixel_size)
    mx = _overlap_matrix(nx, nx // 2, dqx, geometry.shape[1], cx, geometry.pixel_size)
    return np.matmul(np.matmul(my, a), mx.T)


# ----------------------------------------------------------------------------------------------------------
# Reflection measurement and convergence study
# ----------------------------------------------------------------------------------------------------------


def measure_reflections(
    patterns: SimulatedPatterns, g_vectors: Mapping[str, Sequence], *, radius: float | None = None
) -> dict[str, dict[str, float]]:
    """Integrated intensity and centroid of Bragg discs around given reciprocal vectors.

    For each named reflection the listed g-vectors (symmetry equivalents, ``(gy, gx)`` [Å⁻¹]) are summed:
    the intensity inside a disc of ``radius`` around each g; the measured position is the length of each
    disc's intensity-weighted centroid vector, averaged over the equivalents with their intensities as
    weights. (The mean of |q| over a disc would be biased outwards by ≈ radius²/(8|g|), 0.003 Å⁻¹ for a
    2 mrad disc at 111.)

    Parameters
    ----------
    patterns : SimulatedPatterns
        One pattern ``(ny, nx)`` (leading dimensions are summed first).
    g_vectors : dict of {str: array_like (m, 2)}  [Å⁻¹]
    radius : float or None  [Å⁻¹]
        Integration radius; default 1.5 × the probe's disc radius (from metadata), at least 2 pixels.

    Returns
    -------
    dict
        ``{name: {"intensity": fraction of incident, "q": measured |g| [Å⁻¹]}}``.
    """
    a = np.asarray(patterns.array, dtype=np.float64)
    a = a.reshape(-1, *a.shape[-2:]).sum(axis=0)
    qy, qx = patterns.q_grid()
    if radius is None:
        pr = patterns.metadata.get("probe", {})
        disc = mrad_to_q(pr["semiangle"], pr["energy"]) if pr else 0.0
        radius = max(1.5 * disc, 2.0 * max(patterns.sampling))
    out = {}
    for name, gs in g_vectors.items():
        gs = np.atleast_2d(np.asarray(gs, dtype=float))
        mask = np.zeros(a.shape, dtype=bool)
        lengths, weights = [], []
        for gy, gx in gs:
            m = (qy - gy) ** 2 + (qx - gx) ** 2 <= radius**2
            mask |= m
            w = float(a[m].sum())
            if w > 0:
                lengths.append(np.hypot((a[m] * qy[m]).sum() / w, (a[m] * qx[m]).sum() / w))
                weights.append(w)
        inten = float(a[mask].sum())
        q = float(np.average(lengths, weights=weights)) if weights else float("nan")
        out[name] = {"intensity": inten, "q": q}
    return out


def convergence_study(
    atoms,
    probe: Probe,
    settings_list: Sequence[Multislice],
    reflections: Mapping[str, Sequence],
    *,
    ratio: tuple[str, str] | None = None,
    seed: int = 0,
    position=None,
    radius: float | None = None,
) -> list[dict[str, Any]]:
    """Reflection positions and intensity ratios versus multislice settings (fixed phonon seed).

    Parameters
    ----------
    atoms : ase.Atoms
    probe : Probe
    settings_list : sequence of Multislice
    reflections : dict of {str: array_like (m, 2)}  [Å⁻¹]
        Named sets of symmetry-equivalent g-vectors ``(gy, gx)`` in the pattern plane (see
        :func:`measure_reflections`).
    ratio : tuple of str or None
        ``(numerator, denominator)`` reflection names; default the first two.
    seed : int
        Frozen-phonon seed used for every row (so rows differ only by the settings).
    position : tuple or None  [Å]
    radius : float or None  [Å⁻¹]

    Returns
    -------
    list of dict
        One row per settings: ``sampling`` [Å], ``slice_thickness`` [Å], ``n_phonons``, ``gpts``,
        ``q_<name>`` [Å⁻¹], ``I_<name>`` [fraction of incident], ``ratio`` (I_num / I_den), ``seconds``.
    """
    import time

    names = list(reflections)
    if ratio is None:
        if len(names) < 2:
            raise ValueError(f"reflections={names!r}: give at least two to form a ratio")
        ratio = (names[0], names[1])
    rows = []
    for ms in settings_list:
        t0 = time.perf_counter()
        p = simulate_pattern(atoms, probe, ms, position=position, seed=seed)
        dt = time.perf_counter() - t0
        meas = measure_reflections(p, reflections, radius=radius)
        row: dict[str, Any] = {
            "sampling": ms.sampling,
            "slice_thickness": ms.slice_thickness,
            "n_phonons": ms.n_phonons,
            "gpts": tuple(p.metadata["gpts"]),
        }
        for k, v in meas.items():
            row[f"q_{k}"] = v["q"]
            row[f"I_{k}"] = v["intensity"]
        row["ratio"] = meas[ratio[0]]["intensity"] / meas[ratio[1]]["intensity"]
        row["seconds"] = dt
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------
# Nanocrystal in a thick amorphous matrix (0.15 mrad strategy)
# ----------------------------------------------------------------------------------------------------------


def simulate_nanocrystal_in_matrix(
    scene,
    matrix,
    probe: Probe,
    ms: Multislice,
    *,
    extra_thickness: float,
    positions=None,
    seed: int | None = None,
    method: str = "auto",
) -> SimulatedPatterns:
    """Nanocrystal(s) in a thick amorphous matrix: multislice of a thin slab + kinematic diffuse remainder.

    The ``scene`` (crystal(s) embedded in a thin slab of the matrix, in a cell that holds the probe) is
    simulated by multislice. The remaining matrix thickness, which only adds diffuse scattering, is added
    kinematically by :func:`matrix_diffuse` (Debye profile of the small ``matrix`` model through
    ``simkit.kinematic.debye_intensity``, scaled to the extra thickness and convolved with the probe's
    aperture), and the transmitted patterns are depleted by the same scattered fraction. Valid while the
    extra matrix scatters kinematically (light elements, a few nm to ~20 nm); validated against full
    multislice in tests/test_nbed.py (``test_nanocrystal_in_matrix_*``).

    Parameters
    ----------
    scene : ase.Atoms
        Crystal(s) in a thin matrix slab, orthorhombic cell ≥ :func:`required_extent`.
    matrix : ase.Atoms
        A representative amorphous matrix model (periodic box) used for its Debye profile and density.
    probe : Probe
    ms : Multislice
    extra_thickness : float  [Å]
        Matrix thickness beyond the scene's slab (≥ 0).
    positions : array_like or None  [Å]
        Probe positions ``(..., 2)`` as ``(x, y)``; None = one pattern at the cell centre.
    seed : int or None
        Frozen-phonon seed of the multislice part.
    method : {"auto", "multislice", "prism"}

    Returns
    -------
    SimulatedPatterns
        Same layout as :func:`simulate_scan` (or :func:`simulate_pattern` when ``positions`` is None);
        ``metadata["matrix"]`` records the kinematic part.
    """
    check_positive("extra_thickness", extra_thickness, "Å", allow_zero=True)
    if positions is None:
        p = simulate_pattern(scene, probe, ms, seed=seed, method=method)
    else:
        p = simulate_scan(scene, probe, ms, positions, seed=seed, method=method)
    if extra_thickness == 0:
        return p
    diffuse, info = matrix_diffuse(matrix, probe, ms, extra_thickness, p.array.shape[-2:], p.sampling)
    array = p.array * (1.0 - info["kinematic_fraction"]) + diffuse
    meta = dict(p.metadata)
    meta["matrix"] = info
    return SimulatedPatterns(array=array, sampling=p.sampling, metadata=meta)


def matrix_diffuse(
    matrix, probe: Probe, ms: Multislice, thickness: float, shape: tuple[int, int], sampling: tuple[float, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Kinematic diffuse pattern of an amorphous layer, on a simulation grid.

    Intensity per pixel = n_area · γ² · I(|q|) · λ² · dqy · dqx, with I(Q) [Å² per atom] the Debye intensity
    of ``matrix`` (``simkit.kinematic.debye_intensity``; non-relativistic Born factors, hence the relativistic
    mass ratio γ = 1 + E/m₀c² squared), n_area = atoms per volume × ``thickness`` [Å⁻²] and λ² dq² the solid
    angle of a pixel; then convolved (2-D, FFT) with the probe's normalised aperture intensity.

    Parameters
    ----------
    matrix : ase.Atoms
        Amorphous model (periodic box, orthorhombic or not) [Å].
    probe : Probe
    ms : Multislice
        Supplies the parametrization.
    thickness : float  [Å]
    shape : tuple of int  [px]
        Pattern shape ``(ny, nx)``, zero frequency at ``n // 2``.
    sampling : tuple of float  [Å⁻¹]

    Returns
    -------
    tuple
        ``(pattern (ny, nx) [fraction of incident per pixel], info dict)``.
    """
    from simkit import kinematic
    from simkit.units import ELECTRON_REST_ENERGY_EV

    if len(matrix) == 0:
        raise ValueError("matrix is empty (0 atoms): give an amorphous model with a cell")
    volume = float(abs(matrix.cell.volume))
    if volume <= 0:
        raise ValueError("matrix has no cell volume: give the amorphous model's periodic cell [Å]")
    ny, nx = shape
    qy = (np.arange(ny) - ny // 2) * sampling[0]
    qx = (np.arange(nx) - nx // 2) * sampling[1]
    qabs = np.hypot(*np.meshgrid(qy, qx, indexing="ij"))
    qs = np.linspace(0.0, float(qabs.max()) * 1.001, 2048)
    iq = np.asarray(kinematic.debye_intensity(matrix, qs, parametrization=ms.parametrization), dtype=float)
    gamma = 1.0 + probe.energy / ELECTRON_REST_ENERGY_EV
    n_area = len(matrix) / volume * thickness
    diffuse = np.clip(np.interp(qabs, qs, iq), 0.0, None) * gamma**2 * n_area * probe.wavelength**2
    diffuse *= sampling[0] * sampling[1]
    disc = _vacuum_disc(shape, sampling, probe)
    conv = np.real(np.fft.ifft2(np.fft.fft2(diffuse) * np.fft.fft2(np.fft.ifftshift(disc))))
    conv = np.clip(conv, 0.0, None)
    info = {
        "extra_thickness": float(thickness),
        "n_atoms_model": len(matrix),
        "atoms_per_area": n_area,
        "kinematic_fraction": float(conv.sum()),
        "gamma": gamma,
    }
    return conv, info


def _vacuum_disc(shape, sampling, probe: Probe) -> np.ndarray:
    """Normalised aperture intensity (abTEM soft aperture) on a pattern grid, zero at n//2."""
    ny, nx = shape
    qy = (np.arange(ny) - ny // 2) * sampling[0]
    qx = (np.arange(nx) - nx // 2) * sampling[1]
    q = np.hypot(*np.meshgrid(qy, qx, indexing="ij"))
    alpha = q_to_mrad(q, probe.energy)
    # abTEM's soft aperture (abtem.transfer.soft_aperture): amplitude tapers linearly over one angular
    # pixel centred on the cut-off; the intensity is its square.
    phi = np.arctan2(*np.meshgrid(qy, qx, indexing="ij"))  # angle from +x; abTEM's (x, y) order swapped
    da = q_to_mrad(np.hypot(np.sin(phi) * sampling[0], np.cos(phi) * sampling[1]), probe.energy)
    amp = np.clip((probe.semiangle - alpha) / da + 0.5, 0.0, 1.0)
    disc = amp**2
    return disc / disc.sum()


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------


def _write_attrs(f, ds, sampling, meta, atoms) -> None:
    """Settings, versions and structure next to the /patterns dataset (layout of :func:`save_patterns`)."""
    import simkit

    ny, nx = ds.shape[-2:]
    ds.attrs["sampling"] = np.asarray(sampling, dtype=float)
    ds.attrs["sampling_units"] = "1/Angstrom (Q = 1/d)"
    ds.attrs["center"] = np.asarray((ny // 2, nx // 2), dtype=int)
    f.attrs["metadata"] = json.dumps(meta, default=_json_default)
    f.attrs["abtem_version"] = str(meta.get("abtem_version", ABTEM_VERSION))
    f.attrs["sei_send_version"] = simkit.__version__
    for name in ("probe", "multislice"):
        g = f.create_group(name)
        for k, v in meta.get(name, {}).items():
            g.attrs[k] = json.dumps(v) if isinstance(v, dict) else v
    if atoms is not None:
        g = f.create_group("structure")
        g.create_dataset("positions", data=np.asarray(atoms.positions, dtype=float))
        g.create_dataset("numbers", data=np.asarray(atoms.numbers, dtype=int))
        g.create_dataset("cell", data=np.asarray(atoms.cell, dtype=float))
        g.create_dataset("pbc", data=np.asarray(atoms.pbc, dtype=bool))


def save_patterns(path, patterns: SimulatedPatterns, atoms=None, *, compression: str | None = "gzip") -> None:
    """Write patterns, settings, structure and versions to HDF5 atomically (temporary file → rename).

    Layout: dataset ``/patterns`` (..., ny, nx) with attrs ``sampling`` [Å⁻¹] and ``center`` [px];
    groups ``/probe`` and ``/multislice`` whose attributes are the settings (``displacement`` as JSON);
    root attr ``metadata`` (JSON of every setting), ``abtem_version``, ``sei_send_version``; optional group
    ``/structure`` with ``positions`` [Å], ``numbers``, ``cell`` [Å], ``pbc``.

    Parameters
    ----------
    path : str or os.PathLike
    patterns : SimulatedPatterns
    atoms : ase.Atoms or None
    compression : str or None
        h5py compression filter for the patterns.
    """
    import h5py

    if not isinstance(patterns, SimulatedPatterns):
        raise TypeError(f"patterns={type(patterns).__name__}: give a SimulatedPatterns")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("patterns", data=np.asarray(patterns.array), compression=compression)
        _write_attrs(f, ds, patterns.sampling, patterns.metadata, atoms)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in metadata")


def load_patterns(path) -> tuple[SimulatedPatterns, Any]:
    """Read a file written by :func:`save_patterns`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    tuple
        ``(SimulatedPatterns, atoms or None)``; the probe and multislice settings are in
        ``metadata["probe"]`` / ``metadata["multislice"]`` (rebuild them with ``Probe.from_dict`` /
        ``Multislice.from_dict``).
    """
    import h5py

    with h5py.File(os.fspath(path), "r") as f:
        if "patterns" not in f:
            raise ValueError(f"path={os.fspath(path)!r} has no /patterns dataset: not a save_patterns file")
        arr = f["patterns"][()]
        if "positions_shape" in f["patterns"].attrs:
            arr = arr.reshape(*f["patterns"].attrs["positions_shape"], *arr.shape[-2:])
        sampling = tuple(float(s) for s in f["patterns"].attrs["sampling"])
        meta = json.loads(f.attrs["metadata"])
        atoms = None
        if "structure" in f:
            from ase import Atoms

            g = f["structure"]
            atoms = Atoms(numbers=g["numbers"][()], positions=g["positions"][()], cell=g["cell"][()], pbc=g["pbc"][()])
    return SimulatedPatterns(array=arr, sampling=sampling, metadata=meta), atoms
