"""Amorphous, carbon-free Li–O–F–S models of the SEI built from monatomic ions and rigid polyatomic units.

How a model is built (:func:`amorphous`):

1. **Composition** — ``units`` maps unit names (see :mod:`structures.units_library`: ``Li+``, ``F-``, ``O^2-``,
   ``S^2-``, ``SO4^2-``, ``SO3^2-``, ``SO2F-``, ``NSO2F^2-``, ``FSI-``, ``TFSI-``) to *fractions of units*
   (floats, normalised internally) or to *counts* (all ints). **Charge neutrality**: Li⁺ is the only cation and
   the balancing ion. If ``Li+`` is omitted, Li⁺ units are added so that the model is neutral; if it is given,
   its amount must equal the neutralising amount (fractions within 1e-6, counts exactly) or ValueError says what
   it must be.
2. **Size and density** — either ``n_atoms`` (a target; units are indivisible so the actual count differs by a
   few atoms) or ``cell`` (3 lengths or a diagonal 3×3 matrix [Å]) fixes the number of units; the box volume then
   follows from the exact mass so that mass/volume equals ``density`` to rounding error. A given ``cell`` keeps
   its shape and is rescaled isotropically by the (tiny) factor needed after rounding unit counts to integers;
   the factor is recorded in ``info["cell_scale"]``.
3. **Packing** — all units are placed at once at random positions and orientations at the final density and a
   soft overlap energy over element-pair minimum distances is minimised with rigid units (FIRE, cell lists,
   :mod:`structures._packing`). Random sequential insertion is not used: it jams far below ionic densities.
   When the distances cannot be reached within ``max_steps`` a ValueError names the worst pair.
4. **Relaxation** (optional, ``relax=True``) — a bounded FIRE minimisation of a rigid-ion pair potential,
   units kept rigid: Buckingham A exp(−r/ρ) − C/r⁶ for the pairs in :data:`BUCKINGHAM` plus damped-shifted-force
   Coulomb (Fennell & Gezelter 2006, J. Chem. Phys. 124, 234104; α = 0.3 Å⁻¹, cut-off 6 Å) between site
   charges (formal for monatomic ions; partial charges of polyatomic units, see :mod:`structures.units_library`)
   plus the overlap wall, so that Li⁺ moves into contact with its anions and reaches 3–5-fold coordination.
   Measured on LiF/Li₂O-like mixtures (tests): Li–F and Li–O first-neighbour peaks at ≈ 1.78–1.85 Å with
   tails to ≈ 2.2 Å — the lower end of the bond-valence expectation for 4-coordinated Li (Li–F ≈ 1.86 Å,
   Li–O ≈ 1.95 Å), because formal-charge rigid ions overbind under-coordinated Li. Intra-unit pairs are
   excluded (rigid). The relaxation is bounded (default 100 steps) and is not converged to a local minimum;
   a final overlap-only pass restores every minimum distance exactly.

Minimum distances (:data:`DEFAULT_MIN_DISTANCE`, inter-unit pairs only, [Å]): Li pairs are ≈ 0.85–0.9 × the
shortest contact in the binary crystals (Li–F 1.75 vs 2.01 in LiF; Li–O 1.75 vs 2.00 in Li₂O and ≈ 1.95 in
LiO₄ tetrahedra of Li₂SO₄; Li–S 2.2 vs 2.47 in Li₂S; Li–N 1.85 vs 1.94 in Li₃N; Li–Li 2.1 vs 2.31 in Li₂O).
Other pairs are 0.85 × the sum of Bondi van-der-Waals radii (Bondi 1964, J. Phys. Chem. 68, 441; H 1.10 Å from
Rowland & Taylor 1996, J. Phys. Chem. 100, 7384), with anion–anion contacts set to O–O = O–F = F–F = 2.5 Å
(LiF F–F 2.85 Å, Li₂O O–O 3.26 Å, close O···F contacts in oxyfluorides ≈ 2.6–2.8 Å) and S–S = 3.2 Å (Li₂S 4.04 Å,
vdW sum 3.6 Å).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from . import _packing
from .checks import AVOGADRO, check_cell, check_positive, check_rng
from .units_library import Unit, get_unit, unit_names

__all__ = [
    "AVOGADRO",
    "BUCKINGHAM",
    "DEFAULT_MIN_DISTANCE",
    "RelaxSettings",
    "TYPE1_DEFAULT_UNITS",
    "TYPE2_DEFAULT_UNITS",
    "amorphous",
    "min_distance_table",
    "pack_units",
    "type1_sei",
    "type2_matrix",
]

_BONDI = {"H": 1.10, "C": 1.70, "N": 1.55, "O": 1.52, "F": 1.47, "P": 1.80, "S": 1.80}
_LI = {"Li": 2.1, "F": 1.75, "O": 1.75, "S": 2.2, "N": 1.85, "C": 2.2, "H": 1.9, "P": 2.6}
_ANION = {("O", "O"): 2.5, ("F", "O"): 2.5, ("F", "F"): 2.5, ("S", "S"): 3.2}


def _default_table() -> dict:
    t = {}
    els = sorted(_BONDI)
    for i, a in enumerate(els):
        for b in els[i:]:
            key = tuple(sorted((a, b)))
            t[key] = round(0.85 * (_BONDI[a] + _BONDI[b]), 2)
    for b, d in _LI.items():
        t[tuple(sorted(("Li", b)))] = d
    for k, d in _ANION.items():
        t[tuple(sorted(k))] = d
    return t


#: Inter-unit minimum distances [Å] keyed by sorted element pair, e.g. ``("F", "Li"): 1.75`` (see module doc).
DEFAULT_MIN_DISTANCE: dict = _default_table()

#: Buckingham parameters (A [eV], ρ [Å], C [eV·Å⁶]) keyed by sorted element pair, for formal-charge rigid ions.
#: O–O: Lewis & Catlow 1985, J. Phys. C 18, 1149. F–F: Catlow, Norgett & Ross 1977, J. Phys. C 10, 1627 (CaF₂).
#: O–F: geometric means of A and C, arithmetic mean of ρ (combining rule; hypothesis). Li–O, Li–F, Li–S: ρ = 0.30 Å
#: (the Li⁺ value of Lewis & Catlow 1985), C = 0 and A fitted here so that this rigid-ion model (with the DSF
#: Coulomb of the default :class:`RelaxSettings`, α = 0.3 Å⁻¹, R = 6 Å) is in equilibrium at the room-temperature
#: lattice constants of Li₂O (4.611 Å), LiF (4.027 Å) and Li₂S (5.708 Å); tests/test_amorphous.py checks this with
#: an independent lattice sum (for comparison, Lewis & Catlow's shell-model Li–O has A = 426.48 eV). Pairs absent
#: here interact only through Coulomb and the overlap wall. Known weakness: formal-charge rigid ions overbind
#: under-coordinated Li, so amorphous Li–F/Li–O first peaks sit at ≈ 1.78–1.85 Å, at the lower end of the
#: bond-valence expectation for 4-coordinated Li (Li–F ≈ 1.86 Å, Li–O ≈ 1.95 Å).
BUCKINGHAM: dict = {
    ("O", "O"): (22764.0, 0.149, 27.88),
    ("F", "F"): (1127.7, 0.2753, 15.83),
    ("F", "O"): (math.sqrt(22764.0 * 1127.7), 0.5 * (0.149 + 0.2753), math.sqrt(27.88 * 15.83)),
    ("Li", "O"): (515.10, 0.30, 0.0),
    ("F", "Li"): (209.80, 0.30, 0.0),
    ("Li", "S"): (1627.07, 0.30, 0.0),
}


@dataclass(frozen=True, kw_only=True)
class RelaxSettings:
    """Settings of the physical relaxation.

    Attributes
    ----------
    steps : int
        Maximum number of rigid-body FIRE steps.
    fmax : float  [eV/Å]
        Stop early when the largest force on any unit is below this.
    cutoff : float  [Å]
        Cut-off of Buckingham and DSF Coulomb.
    alpha : float  [1/Å]
        DSF damping parameter.
    kwall : float  [eV/Å²]
        Stiffness of the overlap wall that keeps the minimum distances.
    """

    steps: int = 100
    fmax: float = 0.05
    cutoff: float = 6.0
    alpha: float = 0.3
    kwall: float = 20.0


def min_distance_table(elements, min_distance=None) -> np.ndarray:
    """Minimum-distance matrix for a list of elements.

    Parameters
    ----------
    elements : sequence of str
        Element symbols (order defines the matrix indices).
    min_distance : mapping or None
        Overrides [Å] keyed by ``"Li-F"`` strings or ``("Li", "F")`` tuples (order irrelevant).

    Returns
    -------
    numpy.ndarray  [Å]
        Symmetric matrix, shape (n, n).
    """
    table = dict(DEFAULT_MIN_DISTANCE)
    if min_distance is not None:
        if not isinstance(min_distance, Mapping):
            raise TypeError(f"min_distance must be a mapping like {{'Li-F': 1.8}}, got {min_distance!r}")
        for k, v in min_distance.items():
            pair = tuple(k.split("-")) if isinstance(k, str) else tuple(k)
            if len(pair) != 2 or any(p not in atomic_numbers for p in pair):
                raise ValueError(f"min_distance key {k!r} must name two elements like 'Li-F' or ('Li', 'F')")
            v = float(v)
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"min_distance[{k!r}] must be a positive distance [Å], got {v!r}")
            table[tuple(sorted(pair))] = v
    n = len(elements)
    m = np.zeros((n, n))
    for i, a in enumerate(elements):
        for j, b in enumerate(elements):
            key = tuple(sorted((a, b)))
            if key not in table:
                raise ValueError(f"no minimum distance for the pair {a}-{b}; pass it in min_distance={{'{a}-{b}': …}}")
            m[i, j] = table[key]
    return m


def _parse_units(units) -> tuple:
    """Canonical names → amounts, and whether amounts are integer counts."""
    if not isinstance(units, Mapping) or len(units) == 0:
        raise TypeError(f"units must be a non-empty mapping unit name → fraction or count, got {units!r}")
    out: dict = {}
    is_count = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in units.values())
    for name, v in units.items():
        u = get_unit(name)
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"units[{name!r}] must be a number, got {v!r}") from None
        if not np.isfinite(x) or x < 0:
            raise ValueError(f"units[{name!r}] must be a non-negative amount, got {v!r}")
        out[u.name] = out.get(u.name, 0) + (int(v) if is_count else x)
    if sum(out.values()) <= 0:
        raise ValueError(f"units must contain a positive amount of something, got {units!r}")
    for n in out:
        if get_unit(n).charge > 0 and n != "Li+":
            raise ValueError(f"only Li+ may be a cation, got {n!r}")
    return out, is_count


def _largest_remainder(x: np.ndarray, total: int) -> np.ndarray:
    base = np.floor(x).astype(np.int64)
    rest = total - int(base.sum())
    if rest > 0:
        order = np.argsort(-(x - base), kind="stable")
        base[order[:rest]] += 1
    return base


def resolve_counts(units, density, *, cell=None, n_atoms=None) -> dict:
    """Integer unit counts from a composition, with Li⁺ added or checked for neutrality.

    Parameters
    ----------
    units : mapping
        Unit name → fraction (floats) or count (ints).
    density : float  [g/cm³]
        Target density (used when ``cell`` fixes the size).
    cell : array-like or None  [Å]
        Box lengths; sets the amount of matter from the density.
    n_atoms : int or None
        Target number of atoms.

    Returns
    -------
    dict
        Canonical unit name → count (Li⁺ included), in a fixed order.
    """
    amounts, is_count = _parse_units(units)
    li_given = "Li+" in amounts
    li_amount = amounts.pop("Li+", 0)
    names = sorted(amounts, key=lambda n: unit_names().index(n))
    charge = np.array([get_unit(n).charge for n in names])
    x = np.array([amounts[n] for n in names], dtype=float)
    if is_count:
        if cell is not None or n_atoms is not None:
            raise ValueError("units given as integer counts fix the size: pass neither cell nor n_atoms")
        counts = x.astype(np.int64)
        need = -int(round(float(np.dot(counts, charge))))
        if need < 0:
            raise ValueError(f"the non-Li units carry a net positive charge {-need}; only Li+ can balance anions")
        if li_given and int(li_amount) != need:
            raise ValueError(f"units['Li+'] = {li_amount} does not neutralise the anions; it must be {need}")
    else:
        need_raw = -float(np.dot(x, charge))  # Li+ amount that neutralises the anions, on the caller's scale
        if need_raw < -1e-12:
            raise ValueError("the non-Li units carry a net positive charge; only Li+ can balance anions")
        if li_given and abs(li_amount - need_raw) > 1e-6 * max(need_raw, 1e-300):
            raise ValueError(
                f"units['Li+'] = {li_amount:.6g} does not neutralise the anions; it must be {need_raw:.6g} on the "
                "same scale as the other amounts (or omit 'Li+' to add it automatically)"
            )
        s = x.sum() + need_raw
        x = x / s
        need_frac = need_raw / s
        n_per = float(np.dot(x, [get_unit(n).n_atoms for n in names])) + need_frac
        m_per = float(np.dot(x, [get_unit(n).mass for n in names])) + need_frac * get_unit("Li+").mass
        if (cell is None) == (n_atoms is None):
            raise ValueError("give exactly one of cell (box lengths [Å]) or n_atoms to fix the size")
        if n_atoms is not None:
            if not isinstance(n_atoms, (int, np.integer)) or n_atoms < 1:
                raise ValueError(f"n_atoms must be a positive int, got {n_atoms!r}")
            scale = n_atoms / n_per
        else:
            vol = float(np.prod(cell))
            scale = density * vol * 1e-24 * AVOGADRO / m_per
        raw = x * scale
        counts = _largest_remainder(raw, int(round(raw.sum())))
        need = -int(round(float(np.dot(counts, charge))))
    out = {"Li+": int(need)} if need > 0 else {}
    for n, c in zip(names, counts):
        if c > 0:
            out[n] = int(c)
    if sum(out.values()) == 0:
        raise ValueError(f"the requested size gives no units at all (units={units!r}, n_atoms={n_atoms!r})")
    return out


# --------------------------------------------------------------------------------------------------------------
# assembling and packing
# --------------------------------------------------------------------------------------------------------------


def _assemble(names, box: np.ndarray) -> tuple:
    """RigidSystem for a sequence of unit names (one entry per unit, in storage order)."""
    # species = site types (element, partial charge): the relaxation needs the charge, the rest only the element
    kinds = sorted(set(names))
    types = sorted(
        {(s, q) for n in kinds for s, q in zip(get_unit(n).symbols, get_unit(n).site_charges)},
        key=lambda t: (atomic_numbers[t[0]], t[1]),
    )
    tidx = {t: i for i, t in enumerate(types)}
    per = {}
    for n in kinds:
        u: Unit = get_unit(n)
        per[n] = (u.positions, np.array([tidx[t] for t in zip(u.symbols, u.site_charges)]), np.array(u.site_charges))
    body = [per[n][0] for n in names]
    species = [per[n][1] for n in names]
    charge = [per[n][2] for n in names]
    sizes = np.array([len(per[n][1]) for n in names], dtype=np.int64)
    names = list(names)
    start = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=start[1:])
    system = _packing.RigidSystem(
        box=np.asarray(box, dtype=float),
        body=np.ascontiguousarray(np.concatenate(body), dtype=float),
        unit_start=start,
        species=np.concatenate(species).astype(np.int64),
        elements=tuple(t[0] for t in types),
        charge=np.concatenate(charge).astype(float),
    )
    return system, names, types


#: Formal charges [e] of the monatomic ions the Li–X Buckingham terms were fitted with.
_FORMAL = {"O": -2.0, "F": -1.0, "S": -2.0}


def _buckingham_tables(types) -> tuple:
    """Buckingham tables per site type (element, charge).

    Li–X repulsion prefactors were fitted for the formal-charge ions (O²⁻, F⁻, S²⁻); for a partially charged site
    of the same element (e.g. O −1.0 in SO₄²⁻) A is scaled by q/q_formal, so that the balance of Coulomb
    attraction and Born repulsion — hence the Li–X contact distance — is kept.
    """
    n = len(types)
    a, rho, c = np.zeros((n, n)), np.ones((n, n)), np.zeros((n, n))
    for i, (x, qx) in enumerate(types):
        for j, (y, qy) in enumerate(types):
            p = BUCKINGHAM.get(tuple(sorted((x, y))))
            if p is None:
                continue
            a[i, j], rho[i, j], c[i, j] = p
            if "Li" in (x, y) and x != y:
                other, q = (y, qy) if x == "Li" else (x, qx)
                a[i, j] *= max(q / _FORMAL[other], 0.0)
    return a, rho, c


def pack_units(
    counts: Mapping,
    box,
    *,
    min_distance=None,
    relax: bool | RelaxSettings = False,
    rng=None,
    max_steps: int = 5000,
) -> tuple:
    """Pack given numbers of rigid units into an orthorhombic periodic box (the engine behind every builder).

    Parameters
    ----------
    counts : mapping
        Canonical unit name → number of units.
    box : array-like  [Å]
        Box lengths, shape (3,).
    min_distance : mapping or None
        Overrides of :data:`DEFAULT_MIN_DISTANCE` [Å].
    relax : bool or RelaxSettings
        Run the physical relaxation afterwards.
    rng : numpy.random.Generator, int or None
        Randomness of positions and orientations.
    max_steps : int
        Bound on packing steps.

    Returns
    -------
    atoms : ase.Atoms
        Wrapped into the box, pbc on; ``arrays["unit_id"]`` gives each atom's unit index.
    report : dict
        ``unit_names`` (per unit), ``elements``, ``min_distance`` {pair: Å}, ``packing`` and ``relax`` summaries.
    """
    rng, _ = check_rng(rng)
    box = np.asarray(box, dtype=float)
    names = np.array([n for n, c in counts.items() for _ in range(int(c))], dtype=object)
    dmin_all = min_distance_table(sorted({s for n in counts for s in get_unit(n).symbols}), min_distance)
    for name in counts:
        u = get_unit(name)
        ext = 2 * np.sqrt(np.max(np.sum(u.positions**2, axis=1))) + dmin_all.max()
        if np.any(box < ext):
            raise ValueError(f"cell {box.tolist()} Å is too small for unit {name!r} (needs ≥ {ext:.2f} Å per axis)")
    # random centres and orientations, then units stored in spatial (cell) order so that neighbours are close in
    # memory — this matters for the cache once N is large
    centre = rng.random((len(names), 3)) * box
    rot = _packing.random_rotations(len(names), rng)
    ncell = np.maximum(1, (box // 5.0).astype(np.int64))
    ic = np.minimum((centre / box * ncell).astype(np.int64), ncell - 1)
    order = np.argsort((ic[:, 0] * ncell[1] + ic[:, 1]) * ncell[2] + ic[:, 2], kind="stable")
    names, centre, rot = names[order], centre[order], rot[order]
    system, names, types = _assemble(names, box)
    rot[np.diff(system.unit_start) == 1] = np.eye(3)
    dmin = min_distance_table(system.elements, min_distance)
    centre, rot, pos, pack_summary = _packing.pack(system, dmin, rng, max_steps=max_steps, start=(centre, rot))
    relax_summary = None
    if relax:
        st = relax if isinstance(relax, RelaxSettings) else RelaxSettings()
        a, rho, c = _buckingham_tables(types)
        centre, rot, pos, relax_summary = _packing.relax_physical(
            system,
            centre,
            rot,
            dmin,
            a,
            rho,
            c,
            alpha=st.alpha,
            cutoff=st.cutoff,
            kwall=st.kwall,
            steps=st.steps,
            fmax=st.fmax,
        )
        relax_summary["settings"] = asdict(st)
        # the wall is soft: restore every minimum distance exactly with a short overlap-only pass
        centre, rot, pos, clean = _packing.pack(system, dmin, rng, max_steps=max_steps, start=(centre, rot))
        relax_summary["cleanup_steps"] = clean["steps"]
    symbols = [system.elements[s] for s in system.species]
    atoms = Atoms(symbols=symbols, positions=pos, cell=np.diag(box), pbc=True)
    atoms.wrap()
    atoms.new_array("unit_id", np.repeat(np.arange(system.n_units), np.diff(system.unit_start)))
    pairs = {}
    for i, a_ in enumerate(system.elements):
        for j in range(i, len(system.elements)):
            key = "-".join(sorted((a_, system.elements[j])))
            pairs[key] = float(dmin[i, j])
    report = {
        "unit_names": names,
        "elements": system.elements,
        "min_distance": pairs,
        "packing": pack_summary,
        "relax": relax_summary,
    }
    return atoms, report


def amorphous(
    units: Mapping,
    density: float,
    cell=None,
    n_atoms: int | None = None,
    min_distance: Mapping | None = None,
    relax: bool | RelaxSettings = True,
    rng=None,
    *,
    max_steps: int = 5000,
) -> Atoms:
    """Amorphous ionic model from monatomic ions and rigid polyatomic units at a given density.

    Parameters
    ----------
    units : mapping
        Unit name → fraction of units (floats) or count (ints), e.g. ``{"F-": 0.3, "SO4^2-": 0.1}``; Li⁺ is added
        (or checked) for charge neutrality — see the module docstring. Valid names:
        :func:`structures.units_library.unit_names`.
    density : float  [g/cm³]
        Mass density of the model (exact up to float rounding).
    cell : array-like or None  [Å]
        Orthorhombic box (3 lengths or a diagonal 3×3 matrix); rescaled isotropically by the tiny factor needed
        after rounding unit counts. Give exactly one of ``cell`` and ``n_atoms``.
    n_atoms : int or None
        Target number of atoms (cubic box); the actual number differs by a few atoms.
    min_distance : mapping or None  [Å]
        Overrides of :data:`DEFAULT_MIN_DISTANCE`, e.g. ``{"F-F": 2.6}``.
    relax : bool or RelaxSettings
        Relax with Buckingham + DSF Coulomb keeping units rigid (default True, :class:`RelaxSettings()`).
    rng : numpy.random.Generator, int or None
        Random generator or seed.
    max_steps : int
        Bound on packing iterations; ValueError (naming the worst pair) if overlaps remain.

    Returns
    -------
    ase.Atoms
        Periodic model; ``arrays["unit_id"]`` marks rigid units; ``info`` holds ``builder``, ``units`` (counts),
        ``elements`` (counts), ``density_g_cm3``, ``seed``, ``n_atoms``, ``cell_scale``, ``min_distance`` [Å],
        ``packing`` and ``relax`` summaries and ``parameters`` (potential and charges).

    Raises
    ------
    ValueError
        Unknown unit (valid names listed), non-positive density, non-neutralisable composition, a cell too small
        for a unit or for the interaction range, or a density that the minimum distances cannot reach.
    """
    density = check_positive("density", density, "g/cm³")
    rng, seed = check_rng(rng)
    cell_arr = None if cell is None else check_cell("cell", cell)
    counts = resolve_counts(units, density, cell=cell_arr, n_atoms=n_atoms)
    mass_g = sum(c * get_unit(n).mass for n, c in counts.items()) / AVOGADRO
    vol = mass_g / density * 1e24  # Å³
    if cell_arr is None:
        box = np.full(3, vol ** (1.0 / 3.0))
        scale = 1.0
    else:
        scale = (vol / float(np.prod(cell_arr))) ** (1.0 / 3.0)
        box = cell_arr * scale
    atoms, rep = pack_units(counts, box, min_distance=min_distance, relax=relax, rng=rng, max_steps=max_steps)
    elements: dict = {}
    for s in atoms.get_chemical_symbols():
        elements[s] = elements.get(s, 0) + 1
    atoms.info.update(
        {
            "builder": "structures.amorphous.amorphous",
            "units": dict(counts),
            "elements": elements,
            "density_g_cm3": density,
            "seed": seed,
            "n_atoms": len(atoms),
            "cell_scale": float(scale),
            "min_distance": rep["min_distance"],
            "packing": rep["packing"],
            "relax": rep["relax"],
            "parameters": {
                "buckingham": {f"{a}-{b}": v for (a, b), v in BUCKINGHAM.items()},
                "site_charges": {n: get_unit(n).site_charges for n in counts},
                "coulomb": "damped shifted force (Fennell & Gezelter 2006)",
            },
        }
    )
    return atoms


#: Default Type 1 composition (fractions of anionic units; Li⁺ added for neutrality). A hypothesis, to be tuned
#: by the model-fitting issue. Chosen from a small scan (relaxed models of 2500 atoms, plain windowed Debye sum with
#: Lobato factors, no probe convolution, two seeds): at 2.1 g/cm³ this mixture of F⁻/O²⁻ with S²⁻, SO₃²⁻ and SO₄²⁻
#: puts the first I·Q maxima at 0.315–0.316 and 0.605–0.640 Å⁻¹, near the study's 0.33 / 0.6. In the same scan,
#: oxyanion-rich mixtures without S²⁻ peaked at 0.28–0.30, FSI⁻-rich ones at 0.24, and pure LiF at 0.43 Å⁻¹.
TYPE1_DEFAULT_UNITS: dict = {"F-": 0.35, "O^2-": 0.20, "S^2-": 0.15, "SO3^2-": 0.15, "SO4^2-": 0.15}

#: Default Type 2 matrix composition (hypothesis): no S²⁻ and more sulfur oxyanions than Type 1. In the scan above,
#: at 2.1 g/cm³, first I·Q maxima at 0.287–0.291 Å⁻¹ (study: ≈ 0.295).
TYPE2_DEFAULT_UNITS: dict = {"F-": 0.40, "O^2-": 0.20, "SO3^2-": 0.20, "SO4^2-": 0.20}


def type1_sei(
    n_atoms: int = 2000,
    density: float = 2.1,
    units: Mapping | None = None,
    cell=None,
    relax: bool | RelaxSettings = True,
    rng=None,
    **kwargs,
) -> Atoms:
    """SEI Type 1 of the study: amorphous, carbon-free Li–O–F–S (first I·Q peaks ≈ 0.33 and 0.6 Å⁻¹).

    A first SRO peak at 0.33 Å⁻¹ needs unit–unit spacings near 3.4–3.6 Å, which monatomic LiF/Li₂O-like
    mixtures do not give (≈ 0.43 Å⁻¹); the default composition (:data:`TYPE1_DEFAULT_UNITS`: F⁻, O²⁻, S²⁻,
    SO₃²⁻, SO₄²⁻) at 2.1 g/cm³ gives ≈ 0.315 and ≈ 0.62 Å⁻¹ before probe convolution. Both composition and
    density are hypotheses (parameters), not measurements; FSI⁻ fragments (``SO2F-``, ``NSO2F^2-``, ``FSI-``)
    can be added through ``units``.

    Parameters
    ----------
    n_atoms : int
        Target number of atoms (ignored if ``cell`` is given).
    density : float  [g/cm³]
        Mass density.
    units : mapping or None
        Composition (fractions of units); default :data:`TYPE1_DEFAULT_UNITS`.
    cell : array-like or None  [Å]
        Box lengths; if given, ``n_atoms`` is ignored.
    relax : bool or RelaxSettings
        Physical relaxation (see :func:`amorphous`).
    rng : numpy.random.Generator, int or None
        Random generator or seed.
    **kwargs
        Passed to :func:`amorphous` (``min_distance``, ``max_steps``).

    Returns
    -------
    ase.Atoms
        As :func:`amorphous`, with ``info["preset"] = "type1_sei"``.
    """
    atoms = amorphous(
        dict(TYPE1_DEFAULT_UNITS if units is None else units),
        density,
        cell=cell,
        n_atoms=None if cell is not None else n_atoms,
        relax=relax,
        rng=rng,
        **kwargs,
    )
    atoms.info["preset"] = "type1_sei"
    return atoms


def type2_matrix(
    n_atoms: int = 2000,
    density: float = 2.1,
    units: Mapping | None = None,
    cell=None,
    relax: bool | RelaxSettings = True,
    rng=None,
    **kwargs,
) -> Atoms:
    """Amorphous matrix of SEI Type 2 (isotropic SRO ≈ 0.295 Å⁻¹; LiF nanocrystals are added by scenes.embed).

    Hypothesis: the lower first-peak Q than Type 1 means larger unit–unit spacings — more polyatomic units
    (SO₃²⁻, SO₄²⁻) and no S²⁻ (default 2.1 g/cm³, :data:`TYPE2_DEFAULT_UNITS`; first I·Q maximum ≈ 0.29 Å⁻¹
    before probe convolution). Lower densities or intact FSI⁻ move it further down (≈ 0.24 Å⁻¹ for FSI⁻-rich
    mixtures at 1.8–1.9 g/cm³).

    Parameters
    ----------
    n_atoms : int
        Target number of atoms (ignored if ``cell`` is given).
    density : float  [g/cm³]
        Mass density.
    units : mapping or None
        Composition (fractions of units); default :data:`TYPE2_DEFAULT_UNITS`.
    cell : array-like or None  [Å]
        Box lengths.
    relax : bool or RelaxSettings
        Physical relaxation (see :func:`amorphous`).
    rng : numpy.random.Generator, int or None
        Random generator or seed.
    **kwargs
        Passed to :func:`amorphous`.

    Returns
    -------
    ase.Atoms
        As :func:`amorphous`, with ``info["preset"] = "type2_matrix"``.
    """
    atoms = amorphous(
        dict(TYPE2_DEFAULT_UNITS if units is None else units),
        density,
        cell=cell,
        n_atoms=None if cell is not None else n_atoms,
        relax=relax,
        rng=rng,
        **kwargs,
    )
    atoms.info["preset"] = "type2_matrix"
    return atoms
