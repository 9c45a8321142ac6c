"""Structural analysis of atomistic models: pair distribution functions, coordination, density, composition.

Normalisation of g(r) is the plain number-density one (no scattering weights):

    g_ab(r) = V · H_ab(r) / (N_a · N_b · 4π/3 (r₊³ − r₋³)),

with H_ab(r) the number of ordered pairs (i ∈ a, j ∈ b, i ≠ j or a periodic image of i) whose distance
lies in the shell [r₋, r₊) and V the cell volume: ρ_b = N_b / V is the density of the infinite periodic
system the cell stands for, so that a crystal gives the same g(r) from its unit cell and from any
supercell, and n_ab(rc) = 4π ρ_b ∫₀^rc g_ab r² dr is exactly the mean neighbour count. An ideal gas of N
uniform random points gives g = (N − 1)/N ≈ 1 below the shortest lattice translation. The total g(r) uses
all ordered pairs with N². Distances are not minimum-image: every periodic image within
r_max is counted, so r_max may exceed half the box (the pair search then uses explicit periodic images,
which also handles non-orthogonal cells). Pairs come from a numba cell list (orthorhombic boxes at least
3·r_max wide) or scipy's cKDTree, never from O(N²) Python loops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numba
import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers, chemical_symbols
from scipy.spatial import cKDTree

from .crystals import AMU_PER_A3_TO_G_PER_CM3

__all__ = [
    "NOMINAL_CHARGES",
    "RDF",
    "Composition",
    "Coordination",
    "composition",
    "coordination_number",
    "density",
    "first_minimum",
    "pair_histogram",
    "rdf",
]

#: Nominal ionic charges [e] used by `composition` for the charge balance (override with ``charges=``).
NOMINAL_CHARGES: dict[str, int] = {
    "H": 1,
    "Li": 1,
    "Na": 1,
    "K": 1,
    "Mg": 2,
    "Cu": 0,
    "Au": 0,
    "N": -3,
    "O": -2,
    "S": -2,
    "F": -1,
    "Cl": -1,
    "P": 5,
    "C": 4,
}


@dataclass(frozen=True, kw_only=True)
class RDF:
    """Radial distribution functions of one structure.

    Attributes
    ----------
    r : numpy.ndarray, shape (n,)  [Å]
        Bin centres.
    edges : numpy.ndarray, shape (n + 1,)  [Å]
        Bin edges.
    total : numpy.ndarray, shape (n,)
        Total g(r) (all atoms, number-density normalised; 1 for an ideal gas).
    partial : dict[(str, str), numpy.ndarray]
        g_ab(r) for every ordered pair of elements present (g_ab = g_ba).
    counts : dict[(str, str), numpy.ndarray]
        Ordered pair counts H_ab per bin (i ∈ a, j ∈ b, i ≠ j).
    number_density : float  [Å⁻³]
        N / V.
    n_atoms : dict[str, int]
        Atoms per element.
    """

    r: np.ndarray
    edges: np.ndarray
    total: np.ndarray
    partial: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    counts: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    number_density: float
    n_atoms: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Coordination:
    """Coordination of `center` atoms by `neighbor` atoms.

    Attributes
    ----------
    mean : float
        Mean number of neighbours within the cutoff.
    std : float
        Standard deviation over the centre atoms.
    cutoff : float  [Å]
        Cutoff used (given, or the first minimum of g_ab).
    counts : numpy.ndarray of int, shape (n_center,)
        Neighbours of every centre atom.
    """

    mean: float
    std: float
    cutoff: float
    counts: np.ndarray


@dataclass(frozen=True, kw_only=True)
class Composition:
    """Composition report.

    Attributes
    ----------
    formula : str
        Empirical (reduced) Hill formula, e.g. "FLi" for LiF as ASE writes it, "Li2O".
    counts : dict[str, int]
        Atoms per element.
    fractions : dict[str, float]
        Atomic fractions.
    mass_fractions : dict[str, float]
    n_atoms : int
    charge : float or None  [e]
        Σ count · nominal charge, or None if an element has no nominal charge.
    charge_per_atom : float or None  [e]
    balanced : bool or None
        True when the nominal charge is zero.
    """

    formula: str
    counts: dict[str, int]
    fractions: dict[str, float]
    mass_fractions: dict[str, float]
    n_atoms: int
    charge: float | None
    charge_per_atom: float | None
    balanced: bool | None

    def to_dict(self) -> dict:
        """Plain-Python form (for ``atoms.info`` or JSON)."""
        return {
            "formula": self.formula,
            "counts": dict(self.counts),
            "fractions": dict(self.fractions),
            "mass_fractions": dict(self.mass_fractions),
            "n_atoms": self.n_atoms,
            "charge": self.charge,
            "charge_per_atom": self.charge_per_atom,
            "balanced": self.balanced,
        }


# ----------------------------------------------------------------------------------------------------------------
def _check_atoms(atoms: Atoms) -> None:
    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms={type(atoms).__name__} is not an ase.Atoms")
    if len(atoms) == 0:
        raise ValueError("atoms is empty; give at least one atom")


def _volume(atoms: Atoms) -> float:
    v = abs(float(np.linalg.det(atoms.cell.array)))
    if not v > 0:
        raise ValueError(f"atoms.cell={atoms.cell.array.tolist()} has zero volume; set a cell (Å)")
    return v


def density(atoms: Atoms) -> float:
    """Mass density of a structure over its cell.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure with a cell of non-zero volume.

    Returns
    -------
    float  [g/cm³]
    """
    _check_atoms(atoms)
    return float(np.sum(atoms.get_masses())) / _volume(atoms) * AMU_PER_A3_TO_G_PER_CM3


def composition(atoms: Atoms, charges: Mapping[str, float] | None = None) -> Composition:
    """Composition report: formula, counts, fractions and nominal charge balance.

    Parameters
    ----------
    atoms : ase.Atoms
    charges : mapping str → float, optional  [e]
        Charges per element overriding `NOMINAL_CHARGES` (nominal ionic charges; the charge balance is only
        meaningful for ionic solids, e.g. not for Li metal or molecules).

    Returns
    -------
    Composition
    """
    _check_atoms(atoms)
    symbols = atoms.get_chemical_symbols()
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    counts = dict(sorted(counts.items()))
    n = len(symbols)
    masses = {s: float(atomic_masses[atomic_numbers[s]]) * c for s, c in counts.items()}
    m_tot = sum(masses.values())
    table = dict(NOMINAL_CHARGES)
    if charges is not None:
        table.update({str(k): float(v) for k, v in charges.items()})
    if all(s in table for s in counts):
        charge = float(sum(table[s] * c for s, c in counts.items()))
        per_atom: float | None = charge / n
        balanced: bool | None = abs(charge) < 1e-9
    else:
        charge = per_atom = balanced = None
    return Composition(
        formula=atoms.get_chemical_formula(mode="hill", empirical=True),
        counts=counts,
        fractions={s: c / n for s, c in counts.items()},
        mass_fractions={s: m / m_tot for s, m in masses.items()},
        n_atoms=n,
        charge=charge,
        charge_per_atom=per_atom,
        balanced=balanced,
    )


# ----------------------------------------------------------------------------------------------------------------
def _edges(r_max: float, dr: float) -> np.ndarray:
    for name, v in (("r_max", r_max), ("dr", dr)):
        if not (isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name}={v!r} Å must be a positive finite length")
    if dr > r_max:
        raise ValueError(f"dr={dr!r} Å is larger than r_max={r_max!r} Å")
    n = int(round(r_max / dr))
    return np.linspace(0.0, n * dr, n + 1)


def _orthorhombic_periodic(atoms: Atoms, r_max: float) -> bool:
    cell = atoms.cell.array
    if not np.all(atoms.pbc):
        return False
    if not np.allclose(cell, np.diag(np.diag(cell)), atol=1e-9):
        return False
    return bool(r_max < 0.5 * np.min(np.diag(cell)))


def _cell_list_ok(atoms: Atoms, r_max: float) -> bool:
    """The numba cell list needs an orthorhombic periodic box at least three cut-offs wide."""
    if not _orthorhombic_periodic(atoms, r_max):
        return False
    return bool(r_max > 0 and np.all(np.diag(atoms.cell.array) >= 3 * r_max))


def _image_shifts(atoms: Atoms, r_max: float) -> np.ndarray:
    """Lattice translations [Å] of every periodic image that can hold a neighbour within r_max."""
    cell = atoms.cell.array
    volume = abs(float(np.linalg.det(cell)))
    ranges = []
    for k in range(3):
        if atoms.pbc[k]:
            # height of the cell perpendicular to the other two vectors
            height = volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
            m = int(math.ceil(r_max / height))
            ranges.append(np.arange(-m, m + 1))
        else:
            ranges.append(np.array([0]))
    n = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    # put the zero shift first so that index j < N is the atom itself
    order = np.argsort(np.abs(n).sum(axis=1), kind="stable")
    return n[order] @ cell


def _pairs(atoms: Atoms, r_max: float, chunk: int = 4096):
    """Yield (i, j, d) arrays of ordered pairs i != j (all periodic images) with d <= r_max [Å], in chunks of i."""
    pos = atoms.positions
    n = len(pos)
    if _orthorhombic_periodic(atoms, r_max):
        box = np.diag(atoms.cell.array).copy()
        pos = np.mod(pos, box)
        pos[pos >= box] = 0.0
        tree = cKDTree(pos, boxsize=box)
        for start in range(0, n, chunk):
            sub = cKDTree(pos[start : start + chunk], boxsize=box)
            m = sub.sparse_distance_matrix(tree, r_max, output_type="ndarray")
            i = m["i"].astype(np.int64) + start
            j = m["j"].astype(np.int64)
            keep = i != j
            yield i[keep], j[keep], m["v"][keep]
        return
    shifts = _image_shifts(atoms, r_max)
    images = (pos[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    tree = cKDTree(images)
    for start in range(0, n, chunk):
        sub = cKDTree(pos[start : start + chunk])
        m = sub.sparse_distance_matrix(tree, r_max, output_type="ndarray")
        i = m["i"].astype(np.int64) + start
        jimg = m["j"].astype(np.int64)
        keep = jimg != i  # image index i (< N, zero shift) is the atom itself
        yield i[keep], jimg[keep] % n, m["v"][keep]


@numba.njit(cache=True)
def _bin_index(edges: np.ndarray, d: float) -> int:
    """Index b with edges[b] <= d < edges[b + 1] (binary search), or -1 outside."""
    nb = edges.shape[0] - 1
    if d < edges[0] or d >= edges[nb]:
        return -1
    lo, hi = 0, nb
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if edges[mid] <= d:
            lo = mid
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _cell_pair_histogram(pos, kind, n_kinds, box, edges):
    """Ordered pair counts per (kind_i, kind_j, bin) in an orthorhombic periodic box by a cell list.

    pos (N, 3) [Å] wrapped into [0, box); kind (N,) int in [0, n_kinds); box (3,) [Å]; edges (nb + 1,) [Å]
    with edges[-1] <= min(box) / 3 (so the 27 neighbour cells are distinct). Minimum image; each unordered
    pair is visited once and counted in both orders. Serial on purpose: a parallel version compiles twice as
    long for at most 2× on the project's 2 cores. Returns int64 (n_kinds, n_kinds, nb).
    Twin: tests/reference.py all_image_distances + numpy.histogram.
    """
    n = pos.shape[0]
    nb = edges.shape[0] - 1
    r_max = edges[nb]
    nc0 = int(box[0] // r_max)
    nc1 = int(box[1] // r_max)
    nc2 = int(box[2] // r_max)
    cell = np.empty(n, dtype=np.int64)
    cx = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        a = min(int(pos[i, 0] / box[0] * nc0), nc0 - 1)
        b = min(int(pos[i, 1] / box[1] * nc1), nc1 - 1)
        c = min(int(pos[i, 2] / box[2] * nc2), nc2 - 1)
        cx[i, 0] = a
        cx[i, 1] = b
        cx[i, 2] = c
        cell[i] = (a * nc1 + b) * nc2 + c
    n_cells = nc0 * nc1 * nc2
    half = 0.5 * box
    start = np.zeros(n_cells + 1, dtype=np.int64)
    for i in range(n):
        start[cell[i] + 1] += 1
    for k in range(n_cells):
        start[k + 1] += start[k]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[fill[cell[i]]] = i
        fill[cell[i]] += 1
    # atoms sorted by cell: the inner loop then reads contiguous memory
    spos = np.empty((n, 3))
    skind = np.empty(n, dtype=np.int64)
    scx = np.empty((n, 3), dtype=np.int64)
    for p in range(n):
        spos[p] = pos[order[p]]
        skind[p] = kind[order[p]]
        scx[p] = cx[order[p]]
    hist = np.zeros((n_kinds, n_kinds, nb), dtype=np.int64)
    r2max = r_max * r_max
    for i in range(n):
        ki = skind[i]
        xi, yi, zi = spos[i, 0], spos[i, 1], spos[i, 2]
        for da in range(-1, 2):
            a = (scx[i, 0] + da) % nc0
            for db in range(-1, 2):
                b = (scx[i, 1] + db) % nc1
                for dc in range(-1, 2):
                    c = (scx[i, 2] + dc) % nc2
                    k = (a * nc1 + b) * nc2 + c
                    for j in range(max(start[k], i + 1), start[k + 1]):  # each unordered pair once
                        dx = spos[j, 0] - xi
                        if dx > half[0]:
                            dx -= box[0]
                        elif dx < -half[0]:
                            dx += box[0]
                        dy = spos[j, 1] - yi
                        if dy > half[1]:
                            dy -= box[1]
                        elif dy < -half[1]:
                            dy += box[1]
                        dz = spos[j, 2] - zi
                        if dz > half[2]:
                            dz -= box[2]
                        elif dz < -half[2]:
                            dz += box[2]
                        r2 = dx * dx + dy * dy + dz * dz
                        if r2 <= r2max:
                            bin_ = _bin_index(edges, np.sqrt(r2))
                            if bin_ >= 0:
                                hist[ki, skind[j], bin_] += 1
                                hist[skind[j], ki, bin_] += 1
    return hist


def pair_histogram(atoms: Atoms, edges: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Ordered pair counts per distance bin and element pair.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic along the axes where ``pbc`` is True (any cell shape; every image within range counts).
    edges : numpy.ndarray, shape (n + 1,)  [Å]
        Increasing bin edges, starting at >= 0.

    Returns
    -------
    dict[(str, str), numpy.ndarray of int, shape (n,)]
        H_ab: pairs (i in a, j in b, i != j, all periodic images) with r- <= d < r+.

    Notes
    -----
    Orthorhombic periodic boxes at least 3·r_max wide use a numba cell-list kernel (minimum image).
    Otherwise pairs come from scipy's cKDTree (periodic ``boxsize`` when r_max < half the shortest edge,
    explicit periodic images beyond that or for non-orthogonal cells), processed in chunks of centre atoms
    so that memory stays bounded. No O(N²) loop anywhere.
    """
    _check_atoms(atoms)
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise ValueError("edges must be a strictly increasing 1-D array of >= 2 distances >= 0 (Å)")
    symbols = np.asarray(atoms.get_chemical_symbols())
    elements = sorted(set(symbols.tolist()))
    ne, nb = len(elements), len(edges) - 1
    kind = np.searchsorted(np.asarray(elements), symbols).astype(np.int64)
    if _cell_list_ok(atoms, float(edges[-1])):
        box = np.diag(atoms.cell.array).astype(float)
        pos = np.mod(atoms.positions, box)
        pos[pos >= box] = 0.0
        h = _cell_pair_histogram(np.ascontiguousarray(pos), kind, ne, box, edges)
        return {(ea, eb): h[p, q] for p, ea in enumerate(elements) for q, eb in enumerate(elements)}
    total = np.zeros(ne * ne * nb, dtype=np.int64)
    for i, j, d in _pairs(atoms, float(edges[-1])):
        b = np.searchsorted(edges, d, side="right") - 1
        ok = (b >= 0) & (b < nb)
        flat = (kind[i[ok]] * ne + kind[j[ok]]) * nb + b[ok]
        total += np.bincount(flat, minlength=ne * ne * nb)
    total = total.reshape(ne, ne, nb)
    return {(ea, eb): total[p, q] for p, ea in enumerate(elements) for q, eb in enumerate(elements)}


def rdf(atoms: Atoms, *, r_max: float = 10.0, dr: float = 0.02) -> RDF:
    """Total and partial pair distribution functions g(r).

    Parameters
    ----------
    atoms : ase.Atoms
        Structure with a cell of non-zero volume; periodic along axes with ``pbc`` True (for non-periodic
        structures the cell volume is still used for the normalisation, so g(r) → (filled volume / V)).
    r_max : float  [Å]
        Largest distance. Fast path (cKDTree with periodic box) for orthorhombic fully periodic cells with
        r_max < half the shortest edge; otherwise explicit periodic images (any cell shape).
    dr : float  [Å]
        Bin width.

    Returns
    -------
    RDF
    """
    _check_atoms(atoms)
    edges = _edges(r_max, dr)
    volume = _volume(atoms)
    hist = pair_histogram(atoms, edges)
    symbols = atoms.get_chemical_symbols()
    n_el = {e: symbols.count(e) for e in sorted(set(symbols))}
    n = len(symbols)
    shell = 4.0 * np.pi / 3.0 * (edges[1:] ** 3 - edges[:-1] ** 3)
    partial: dict[tuple[str, str], np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for (ea, eb), h in hist.items():
            pairs = n_el[ea] * n_el[eb]
            partial[(ea, eb)] = h * volume / (pairs * shell) if pairs > 0 else np.zeros(len(shell))
        total_h = np.sum([h for h in hist.values()], axis=0)
        total = total_h * volume / (n * n * shell)
    return RDF(
        r=0.5 * (edges[1:] + edges[:-1]),
        edges=edges,
        total=total,
        partial=partial,
        counts=hist,
        number_density=n / volume,
        n_atoms=n_el,
    )


def first_minimum(r: np.ndarray, g: np.ndarray, *, smooth: int = 3) -> float:
    """Position of the first minimum of g(r) after its first peak.

    Parameters
    ----------
    r : numpy.ndarray  [Å]
        Bin centres.
    g : numpy.ndarray
        g(r) on `r`.
    smooth : int
        Width [bins] of a moving average applied first (1 = none) to suppress noise in amorphous models.

    Returns
    -------
    float  [Å]
        The first peak is the largest value of the first run of bins with g > 1; the minimum is the first
        local minimum after it (the centre of a plateau of equal values, e.g. the empty gap between crystal
        shells).
    """
    r = np.asarray(r, dtype=float)
    g = np.nan_to_num(np.asarray(g, dtype=float))
    if r.shape != g.shape or r.ndim != 1 or len(r) < 3:
        raise ValueError(f"r and g must be 1-D arrays of equal length >= 3, got {r.shape} and {g.shape}")
    if smooth > 1:
        g = np.convolve(g, np.ones(smooth) / smooth, mode="same")
    above = np.flatnonzero(g > 1.0)
    if len(above) == 0:
        raise ValueError("g(r) never exceeds 1: no first coordination peak to find a minimum after")
    start = above[0]
    stop = start
    while stop + 1 < len(g) and g[stop + 1] > 1.0:
        stop += 1
    p = start + int(np.argmax(g[start : stop + 1]))
    k = p
    while k + 1 < len(g) and g[k + 1] <= g[k]:
        k += 1
    # k is the last index of the descent; walk back over a plateau of equal values and take its centre
    j = k
    while j - 1 > p and g[j - 1] == g[k]:
        j -= 1
    return float(0.5 * (r[j] + r[k]))


def coordination_number(
    atoms: Atoms,
    center: str,
    neighbor: str,
    *,
    cutoff: float | None = None,
    r_max: float = 6.0,
    dr: float = 0.02,
) -> Coordination:
    """Number of `neighbor` atoms within a cutoff of each `center` atom.

    Equivalent to n_ab = 4π ρ_b ∫₀^rc g_ab(r) r² dr, but counted exactly (periodic images included).

    Parameters
    ----------
    atoms : ase.Atoms
    center, neighbor : str
        Element symbols present in `atoms`.
    cutoff : float, optional  [Å]
        Radius rc; by default the first minimum of g_ab(r) (see `first_minimum`) computed with `r_max`, `dr`.
    r_max, dr : float  [Å]
        Range and bin width of the g_ab(r) used to find the default cutoff.

    Returns
    -------
    Coordination
    """
    _check_atoms(atoms)
    present = sorted(set(atoms.get_chemical_symbols()))
    for name, el in (("center", center), ("neighbor", neighbor)):
        if el not in present:
            valid = [s for s in present if s in chemical_symbols]
            raise ValueError(f"{name}={el!r} is not an element of these atoms; present are {', '.join(valid)}")
    if cutoff is None:
        g = rdf(atoms, r_max=r_max, dr=dr)
        cutoff = first_minimum(g.r, g.partial[(center, neighbor)])
    elif not (math.isfinite(float(cutoff)) and float(cutoff) > 0):
        raise ValueError(f"cutoff={cutoff!r} Å must be a positive finite length")
    cutoff = float(cutoff)
    symbols = np.asarray(atoms.get_chemical_symbols())
    ci = np.flatnonzero(symbols == center)
    counts = np.zeros(len(atoms), dtype=np.int64)
    for i, j, _ in _pairs(atoms, cutoff):
        counts += np.bincount(i[symbols[j] == neighbor], minlength=len(atoms))
    counts = counts[ci]
    return Coordination(
        mean=float(np.mean(counts)), std=float(np.std(counts)), cutoff=cutoff, counts=counts.astype(np.int64)
    )
