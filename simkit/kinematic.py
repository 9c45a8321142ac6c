"""Kinematic fast path: electron scattering factors, Debye scattering, spot patterns and probe convolution.

Conventions (binding, see README): Q = 1/d [Å⁻¹] (no 2π), lengths [Å], energies [eV], angles [mrad]. The beam
travels along +z of the atoms' frame; detector rows follow +y (``q_y``) and columns follow +x (``q_x``); pixel
(i, j) has its centre at index coordinates (i, j).

Electron scattering factors
---------------------------
Neutral atoms use abTEM's parametrizations (Lobato & Van Dyck 2014, Acta Cryst. A70, 636; Kirkland 2010,
*Advanced Computing in Electron Microscopy*): ``Parametrization.scattering_factor(symbol)`` returns a callable of
k² with k = 1/d, i.e. of Q² in our convention. The parameters are read from abTEM's data files and evaluated with
abTEM's formulas here (in float64, without importing abTEM, which costs seconds); a test checks them against
abTEM's own callables. These are the non-relativistic (Born) factors f_e [Å]; multiply by
the relativistic factor γ where absolute beam intensities are needed.

Mott–Bethe (International Tables for Crystallography Vol. C, §4.3.1): with s = sinθ/λ = Q/2,
f_e(s) = (m₀e²/(8πε₀h²))·(Z − f_x(s))/s² = 0.023934·(Z − f_x)/s² Å; in Q = 1/d this is
f_e(Q) = (Z − f_x(Q)) / (2π² a₀ Q²) = 0.095736·(Z − f_x(Q))/Q² Å (a₀ the Bohr radius) — four times the constant
of the s form.

abTEM's Lobato/Kirkland tables hold neutral atoms only (``charge > 0`` raises NotImplementedError there). Ionic
factors are therefore built as f_e^ion(Q) = f_e^neutral(Q) + 0.095736·(f_x^neutral(Q) − f_x^ion(Q))/Q², with
f_x the X-ray factors of Waasmaier & Kirfel (1995), Acta Cryst. A51, 416–431 (the 5-Gaussian + constant fits
shipped with abTEM as ``waasmaier_kirfel.json``). The correction carries the Coulomb tail 0.095736·z/Q² of the
net charge z, vanishes at large Q, and keeps the neutral-atom parametrization at large Q. Ions available:
those of Waasmaier & Kirfel (e.g. Li⁺, O⁻, O²⁻, F⁻, Na⁺, Cl⁻, Cu⁺; no S²⁻). Ionic factors diverge at Q → 0.

Debye scattering
----------------
I(Q) = (1/N) Σ_ij f_i f_j sin(2πQ r_ij)/(2πQ r_ij) [Å² per atom] is evaluated from pair-distance histograms per
pair of species (numba, all pairs, linear binning onto nodes r_k = k·δ). Linear binning makes the histogram sum
exactly the piecewise-linear interpolant of sinc(2πQr) between nodes, so the error per pair is at most
(2πQδ)²/24 of f_i f_j (|sinc''| ≤ 1/3); the default δ = 0.002 Å gives ≤ 2.6·10⁻⁵ at Q = 2 Å⁻¹.

Periodic boxes (amorphous models) use minimum-image distances up to r_c = half the smallest perpendicular cell
width, a Lorch window w(r) = sin(πr/r_c)/(πr/r_c) and the subtraction of the uniform-density pair distribution
(the ideal-gas histogram of each species pair over the same sphere), so that the truncation does not produce
the large small-Q artefact (the transform of the cut-off sphere, ∝ sin(2πQr_c)-type ripples rising as Q → 0):
I(Q) = (1/N)[Σ_i f_i² + Σ_{i≠j, r<r_c} f_i f_j w(r_ij) sinc(2πQr_ij) − Σ_ab N_a (N_b − δ_ab) f_a f_b (1/V)
∫_0^r_c 4πr² w(r) sinc(2πQr) dr] — the forward-scattering delta of the average density removed, as in a measured
pattern away from Q = 0. The window broadens features by ≈ 1/r_c [Å⁻¹]. Finite objects (nanocrystals, also when
placed in a periodic vacuum box) are summed over all pairs with open boundaries.

Spot patterns and probe convolution
-----------------------------------
:func:`kinematic_spots` lists the reflections of an oriented crystal (beam along +z) with their excitation errors
and kinematic intensities; :func:`spot_pattern` draws each as the probe's aperture disc (radius α/λ) on a
:class:`~simkit.geometry.DetectorGeometry`, conserving intensity. :func:`probe_convolve` turns a 1-D I(Q) into the
radial profile a probe of semi-angle α records: the exact 2-D convolution of the isotropic pattern with the disc
(reduced to a 1-D kernel), rendered on the detector and integrated through :mod:`simkit.radial`;
:func:`make_probe_convolution` plans it once for many profiles.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
from numba import get_num_threads, njit, prange

from simkit.geometry import DetectorGeometry
from simkit.units import ELECTRON_REST_ENERGY_EV, check_energy, mrad_to_q, wavelength
from structures.checks import check_array, check_positive

__all__ = [
    "BOHR_RADIUS",
    "MOTT_BETHE",
    "PARAMETRIZATIONS",
    "ProbeConvolution",
    "Spots",
    "debye_intensity",
    "disc_radius",
    "is_periodic",
    "kinematic_spots",
    "make_probe_convolution",
    "mott_bethe",
    "pair_histogram",
    "partial_structure_factors",
    "probe_convolve",
    "relativistic_factor",
    "render_discs",
    "scattering_factor",
    "spot_pattern",
    "xray_scattering_factor",
]

#: Bohr radius a₀ [Å] (CODATA 2018).
BOHR_RADIUS = 0.529177210903
#: Mott–Bethe constant for Q = 1/d: f_e(Q) = MOTT_BETHE·(Z − f_x(Q))/Q², = 1/(2π² a₀) = 0.095736 [Å⁻¹·Å²] →
#: f_e in Å for Q in Å⁻¹. (International Tables C §4.3.1 quote 0.023934 for s = sinθ/λ = Q/2.)
MOTT_BETHE = 1.0 / (2.0 * math.pi**2 * BOHR_RADIUS)
#: Electron scattering-factor parametrizations taken from abTEM.
PARAMETRIZATIONS = ("lobato", "kirkland")
#: Default pair-distance node spacing of the Debye histogram [Å].
DEFAULT_BIN_WIDTH = 0.002
#: ``periodic=None`` treats a fully periodic cell as a finite object in vacuum (nanocrystal in a box) when an
#: empty slab wider than this [Å] separates the atoms from their images along some cell axis.
VACUUM_GAP = 4.0


# --------------------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------------------
def _check_q_values(q, name: str = "q") -> np.ndarray:
    """Finite, non-negative Q values of any shape [Å⁻¹]."""
    return check_array(name, q, "Å⁻¹", low=0.0)


def _check_q_grid(q, name: str = "q") -> np.ndarray:
    """A 1-D, strictly increasing, non-negative Q grid [Å⁻¹]."""
    a = _check_q_values(q, name)
    if a.ndim != 1:
        raise ValueError(f"{name} has shape {a.shape}: expected a 1-D grid of Q values [Å⁻¹]")
    if a.size > 1 and not np.all(np.diff(a) > 0):
        raise ValueError(f"{name} must be strictly increasing [Å⁻¹] (got {a[:4].tolist()}...)")
    return a


def _check_atoms(atoms):
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms={type(atoms).__name__}: expected an ase.Atoms")
    if len(atoms) == 0:
        raise ValueError("atoms is empty: give at least one atom")
    return atoms


def _symbol(symbol) -> tuple[str, int]:
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(symbol, (int, np.integer)) and not isinstance(symbol, bool):
        z = int(symbol)
        if not 1 <= z < len(chemical_symbols):
            raise ValueError(f"symbol={symbol!r}: atomic number must be in 1..{len(chemical_symbols) - 1}")
        return chemical_symbols[z], z
    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise ValueError(f"symbol={symbol!r}: unknown element; give a chemical symbol such as 'Li', 'F', 'O'")
    return symbol, atomic_numbers[symbol]


def _check_charge(charge, name: str = "charge") -> int:
    try:
        c = float(charge)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={charge!r}: expected an integer ionic charge [e]") from None
    if not np.isfinite(c) or c != round(c):
        raise ValueError(f"{name}={charge!r}: must be an integer ionic charge [e] (e.g. +1 for Li⁺, -1 for F⁻)")
    return int(round(c))


# --------------------------------------------------------------------------------------------------------------
# scattering factors
# --------------------------------------------------------------------------------------------------------------
def _abtem_data_path(name: str) -> str:
    spec = importlib.util.find_spec("abtem")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("abTEM is required for its scattering-factor parametrizations (pip install abtem)")
    return os.path.join(spec.submodule_search_locations[0], "parametrizations", "data", name)


@functools.cache
def _parameter_table(name: str) -> dict:
    """abTEM's parameter file of a parametrization, read without importing abTEM (which costs seconds and does
    not import under NUMBA_DISABLE_JIT=1); the formulas below are those of abtem.parametrizations.functions."""
    with open(_abtem_data_path(f"{name}.json")) as fh:
        return {k: np.asarray(v, dtype=np.float64) for k, v in json.load(fh).items()}


def _lobato(k2: np.ndarray, p: np.ndarray) -> np.ndarray:
    # abtem.parametrizations.functions.lobato.scattering_factor: Σ aᵢ (2 + bᵢ k²) / (1 + bᵢ k²)²
    out = np.zeros_like(k2)
    for a, b in zip(p[0], p[1]):
        out += a * (2.0 + b * k2) / (1.0 + b * k2) ** 2
    return out


def _kirkland(k2: np.ndarray, p: np.ndarray) -> np.ndarray:
    # abtem.parametrizations.functions.kirkland.scattering_factor: Σ aᵢ / (bᵢ + k²) + cᵢ exp(−dᵢ k²)
    out = np.zeros_like(k2)
    for a, b, c, d in zip(p[0], p[1], p[2], p[3]):
        out += a / (b + k2) + c * np.exp(-d * k2)
    return out


_FORMULAS = {"lobato": _lobato, "kirkland": _kirkland}


def _check_parametrization(parametrization) -> str:
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization={parametrization!r}: choose one of {PARAMETRIZATIONS}")
    return parametrization


def _waasmaier_kirfel() -> dict:
    return _parameter_table("waasmaier_kirfel")


def _ion_key(symbol: str, charge: int) -> str:
    return symbol + ("+" * charge if charge > 0 else "-" * (-charge))


def xray_scattering_factor(symbol, q, *, charge=0) -> np.ndarray:
    """X-ray atomic scattering factor of Waasmaier & Kirfel (1995).

    Parameters
    ----------
    symbol : str or int
        Chemical symbol or atomic number.
    q : array-like  [Å⁻¹]
        Q = 1/d values (any shape, >= 0).
    charge : int  [e]
        Ionic charge (0 for the neutral atom).

    Returns
    -------
    ndarray  [electrons]
        f_x(Q) = Σ aᵢ exp(−bᵢ s²) + c with s = Q/2 [Å⁻¹] (Acta Cryst. A51 (1995) 416, fits for s ≤ 6 Å⁻¹).
    """
    sym, _ = _symbol(symbol)
    z = _check_charge(charge)
    qq = _check_q_values(q)
    table = _waasmaier_kirfel()
    key = _ion_key(sym, z)
    if key not in table:
        ions = sorted(k for k in table if k.rstrip("+-") == sym)
        raise ValueError(
            f"charge={charge!r} for {sym}: no Waasmaier–Kirfel X-ray factor for {key!r}; available: {ions}"
        )
    c = table[key]
    s2 = (0.5 * qq) ** 2
    out = np.full(qq.shape, c[5])
    for a, b in zip(c[:5], c[6:11]):
        out += a * np.exp(-b * s2)
    return out


def mott_bethe(z_nuclear, fx, q) -> np.ndarray:
    """Electron scattering factor from an X-ray one by the Mott–Bethe formula.

    Parameters
    ----------
    z_nuclear : int
        Nuclear charge Z.
    fx : array-like  [electrons]
        X-ray scattering factor at ``q``.
    q : array-like  [Å⁻¹]
        Q = 1/d > 0.

    Returns
    -------
    ndarray  [Å]
        f_e(Q) = (Z − f_x(Q)) / (2π² a₀ Q²) = 0.095736·(Z − f_x)/Q².
    """
    qq = _check_q_values(q)
    if np.any(qq == 0):
        raise ValueError("q contains 0: the Mott–Bethe formula is singular at Q = 0; give Q > 0 [Å⁻¹]")
    return MOTT_BETHE * (float(z_nuclear) - np.asarray(fx, dtype=np.float64)) / qq**2


def scattering_factor(symbol, q, *, parametrization: str = "lobato", charge=0.0) -> np.ndarray:
    """Electron scattering factor f_e(Q) (first Born approximation, non-relativistic).

    Parameters
    ----------
    symbol : str or int
        Chemical symbol (e.g. ``"Li"``) or atomic number.
    q : array-like  [Å⁻¹]
        Q = 1/d values, any shape, finite and >= 0 (abTEM's k = 1/d; its functions take k²).
    parametrization : {"lobato", "kirkland"}
        abTEM parametrization of the neutral atom.
    charge : int  [e]
        Ionic charge. Non-zero charges add the Mott–Bethe difference of the Waasmaier–Kirfel X-ray factors of
        the ion and the neutral atom (module docstring); they need Q > 0 (Coulomb tail 0.095736·z/Q² Å).

    Returns
    -------
    ndarray  [Å]
        f_e(Q), same shape as ``q`` (0-d array for a scalar).
    """
    sym, _ = _symbol(symbol)
    name = _check_parametrization(parametrization)
    z = _check_charge(charge)
    qq = _check_q_values(q)
    table = _parameter_table(name)
    if sym not in table:
        raise ValueError(f"symbol={symbol!r}: no {name} parametrization for this element")
    f = _FORMULAS[name](qq**2, table[sym])
    if z != 0:
        if np.any(qq == 0):
            raise ValueError(
                f"q contains 0 with charge={charge!r}: ionic electron scattering factors diverge at Q = 0 "
                "(Coulomb tail 0.0957·z/Q² Å); give Q > 0 [Å⁻¹]"
            )
        f = f + MOTT_BETHE * (xray_scattering_factor(sym, qq) - xray_scattering_factor(sym, qq, charge=z)) / qq**2
    return f


def _species(atoms, charges) -> tuple[list[tuple[str, int]], np.ndarray]:
    """Unique (symbol, charge) species and the per-atom species index."""
    symbols = atoms.get_chemical_symbols()
    n = len(symbols)
    if charges is None:
        ch = [0] * n
    elif isinstance(charges, dict):
        for k in charges:
            _symbol(k)
        ch = [_check_charge(charges.get(s, 0), f"charges[{s!r}]") for s in symbols]
    else:
        arr = np.asarray(charges)
        if arr.shape != (n,):
            raise ValueError(
                f"charges has shape {arr.shape}: give one integer charge per atom ({n},) or a dict symbol → charge"
            )
        ch = [_check_charge(c, "charges") for c in arr]
    keys = sorted(set(zip(symbols, ch)))
    lookup = {k: i for i, k in enumerate(keys)}
    index = np.fromiter((lookup[k] for k in zip(symbols, ch)), dtype=np.int32, count=n)
    return keys, index


def _factor_table(keys, q, parametrization) -> np.ndarray:
    """f_e for each (symbol, charge) species on the grid q, shape (n_species, n_q) [Å]."""
    return np.stack([scattering_factor(s, q, parametrization=parametrization, charge=c) for s, c in keys])


# --------------------------------------------------------------------------------------------------------------
# Debye scattering
# --------------------------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _pair_histogram_kernel(
    pos, starts, pair_index, n_pairs, inv_bin, n_nodes, mode, box, cell, inv_cell, r_cut, n_chunks
):
    """Linear-binned pair-distance histograms of unordered pairs i < j, one per species pair.

    ``pos`` is sorted by species; species s occupies rows ``starts[s]:starts[s + 1]``. For each row i the
    distances to all j > i are computed first (a vectorisable pass), then scattered species block by species
    block, so that only one histogram row is written at a time (cache-resident). mode 0: open boundaries;
    1: orthorhombic minimum image (box lengths ``box``); 2: general (reduced) cell, minimum image over the 27
    neighbouring images of the fractional-wrapped vector. Pairs with r >= r_cut are skipped. Returns
    (n_chunks, n_pairs, n_nodes); chunk c holds rows i ≡ c (mod n_chunks) (balanced triangular work).
    """
    n = pos.shape[0]
    n_species = starts.shape[0] - 1
    hist = np.zeros((n_chunks, n_pairs, n_nodes))
    x_cut = r_cut * inv_bin
    for c in prange(n_chunks):
        buf = np.empty(n)
        for i in range(c, n, n_chunks):
            xi = pos[i, 0]
            yi = pos[i, 1]
            zi = pos[i, 2]
            if mode == 0:
                for j in range(i + 1, n):
                    dx = pos[j, 0] - xi
                    dy = pos[j, 1] - yi
                    dz = pos[j, 2] - zi
                    buf[j] = math.sqrt(dx * dx + dy * dy + dz * dz) * inv_bin
            elif mode == 1:
                bx = box[0]
                by = box[1]
                bz = box[2]
                ibx = 1.0 / bx
                iby = 1.0 / by
                ibz = 1.0 / bz
                for j in range(i + 1, n):
                    dx = pos[j, 0] - xi
                    dy = pos[j, 1] - yi
                    dz = pos[j, 2] - zi
                    dx -= bx * math.floor(dx * ibx + 0.5)
                    dy -= by * math.floor(dy * iby + 0.5)
                    dz -= bz * math.floor(dz * ibz + 0.5)
                    buf[j] = math.sqrt(dx * dx + dy * dy + dz * dz) * inv_bin
            else:
                for j in range(i + 1, n):
                    dx = pos[j, 0] - xi
                    dy = pos[j, 1] - yi
                    dz = pos[j, 2] - zi
                    fa = dx * inv_cell[0, 0] + dy * inv_cell[1, 0] + dz * inv_cell[2, 0]
                    fb = dx * inv_cell[0, 1] + dy * inv_cell[1, 1] + dz * inv_cell[2, 1]
                    fc = dx * inv_cell[0, 2] + dy * inv_cell[1, 2] + dz * inv_cell[2, 2]
                    fa -= np.rint(fa)
                    fb -= np.rint(fb)
                    fc -= np.rint(fc)
                    r2 = 1e300
                    for ia in range(-1, 2):
                        for ib in range(-1, 2):
                            for ic in range(-1, 2):
                                ga = fa + ia
                                gb = fb + ib
                                gc = fc + ic
                                ex = ga * cell[0, 0] + gb * cell[1, 0] + gc * cell[2, 0]
                                ey = ga * cell[0, 1] + gb * cell[1, 1] + gc * cell[2, 1]
                                ez = ga * cell[0, 2] + gb * cell[1, 2] + gc * cell[2, 2]
                                d2 = ex * ex + ey * ey + ez * ez
                                if d2 < r2:
                                    r2 = d2
                    buf[j] = math.sqrt(r2) * inv_bin
            si = 0
            while starts[si + 1] <= i:
                si += 1
            for b in range(si, n_species):
                h = hist[c, pair_index[si, b]]
                for j in range(max(i + 1, starts[b]), starts[b + 1]):
                    x = buf[j]
                    if x >= x_cut:
                        continue
                    k = int(x)
                    t = x - k
                    h[k] += 1.0 - t
                    h[k + 1] += t
    return hist


def _sinc_sums_blocked(hist: np.ndarray, delta: float, q: np.ndarray) -> np.ndarray:
    """S[p, iq] = Σ_n hist[p, n] · sinc(2π q n δ) by matrix products (same sums as :func:`_sinc_sums`).

    With n = c·B + f, sin(w(r_c + r_f)) = sin(w r_c) cos(w r_f) + cos(w r_c) sin(w r_f) (w = 2πq), so
    Σ_n (hist_n / r_n) sin(w r_n) needs only (C + B)·n_q trigonometric evaluations and two BLAS products.
    """
    n_pairs, n_nodes = hist.shape
    w = 2.0 * np.pi * q
    block = max(1, int(math.ceil(math.sqrt(n_nodes))))
    n_blocks = int(math.ceil(n_nodes / block))
    r = np.arange(n_blocks * block) * delta
    v = np.zeros((n_pairs, n_blocks * block))
    v[:, 1:n_nodes] = hist[:, 1:] / r[1:n_nodes]
    v = v.reshape(n_pairs * n_blocks, block)
    r_fine = np.arange(block) * delta
    r_coarse = np.arange(n_blocks) * block * delta
    cos_f = np.cos(np.outer(r_fine, w))
    sin_f = np.sin(np.outer(r_fine, w))
    a = (v @ cos_f).reshape(n_pairs, n_blocks, -1)
    b = (v @ sin_f).reshape(n_pairs, n_blocks, -1)
    sin_c = np.sin(np.outer(r_coarse, w))
    cos_c = np.cos(np.outer(r_coarse, w))
    total = np.einsum("cq,pcq->pq", sin_c, a) + np.einsum("cq,pcq->pq", cos_c, b)
    w_safe = np.where(w > 0, w, 1.0)
    out = np.where(w > 0, total / w_safe, hist[:, 1:].sum(axis=1)[:, None]) + hist[:, :1]
    return out


@njit(parallel=True, cache=True)
def _sinc_sums(hist_t, r_nodes, q):
    """S[p, iq] = Σ_k hist_t[k, p] · sinc(2π q r_k) for the non-empty nodes given."""
    n_nodes, n_pairs = hist_t.shape
    n_q = q.shape[0]
    out = np.zeros((n_pairs, n_q))
    for iq in prange(n_q):
        w = 2.0 * math.pi * q[iq]
        acc = np.zeros(n_pairs)
        for k in range(n_nodes):
            x = w * r_nodes[k]
            s = math.sin(x) / x if x > 1e-12 else 1.0
            for p in range(n_pairs):
                acc[p] += hist_t[k, p] * s
        for p in range(n_pairs):
            out[p, iq] = acc[p]
    return out


def _cell_mode(atoms, periodic):
    """Boundary mode for the pair kernel: (mode, box, cell, inv_cell, r_cut)."""
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if periodic is None:
        periodic = is_periodic(atoms)
    if not periodic:
        return 0, np.ones(3), np.eye(3), np.eye(3), np.inf, 0.0
    if not np.all(atoms.pbc) or abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError(
            f"periodic=True needs a full 3-D periodic cell (atoms.pbc={atoms.pbc.tolist()}, "
            f"cell volume {abs(np.linalg.det(cell)):.3g} Å³)"
        )
    # Minkowski-reduced cell: same lattice, shortest vectors, so that the cut-off is the lattice's and the
    # 27-image search finds the minimum image
    cell, _ = atoms.cell.minkowski_reduce()
    cell = np.asarray(cell, dtype=np.float64)
    volume = abs(np.linalg.det(cell))
    # smallest perpendicular width of the cell: volume / largest face area
    widths = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    r_cut = 0.5 * min(widths)
    off = cell - np.diag(np.diag(cell))
    if np.all(np.abs(off) < 1e-12):
        return 1, np.diag(cell).copy(), cell, np.linalg.inv(cell), r_cut, volume
    return 2, np.ones(3), cell, np.linalg.inv(cell), r_cut, volume


def is_periodic(atoms) -> bool:
    """Whether ``periodic=None`` treats ``atoms`` as a periodic solid (else as a finite object in vacuum).

    Parameters
    ----------
    atoms : ase.Atoms

    Returns
    -------
    bool
        True for a full 3-D periodic cell without an empty slab wider than :data:`VACUUM_GAP` [Å] along any axis
        (a nanocrystal in a box has one and is summed as a finite object).
    """
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    return bool(np.all(atoms.pbc)) and abs(np.linalg.det(cell)) > 1e-9 and _vacuum_gap(atoms) <= VACUUM_GAP


def _vacuum_gap(atoms) -> float:
    """Widest empty slab [Å] between atoms along any cell axis (periodic wrap-around included)."""
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    volume = abs(np.linalg.det(cell))
    frac = np.linalg.solve(cell.T, atoms.positions.T).T % 1.0
    gap = 0.0
    for i in range(3):
        width = volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))
        f = np.sort(frac[:, i])
        d = np.diff(np.concatenate([f, [f[0] + 1.0]]))
        gap = max(gap, float(d.max()) * width)
    return gap


def _sort_spatially(pos: np.ndarray, species: np.ndarray, cell_size: float = 6.0) -> np.ndarray:
    """Order of atoms by species, then along a coarse 3-D grid (memory locality only)."""
    g = np.floor((pos - pos.min(axis=0)) / cell_size).astype(np.int64)
    return np.lexsort((g[:, 2], g[:, 1], g[:, 0], species))


def pair_histogram(atoms, *, bin_width: float = DEFAULT_BIN_WIDTH, charges=None, periodic=None, r_max=None):
    """Linear-binned pair-distance histograms per species pair (the Debye kernel's intermediate).

    Parameters
    ----------
    atoms : ase.Atoms
    bin_width : float  [Å]
        Node spacing δ; each unordered pair i < j at distance r adds (1 − t) to node ⌊r/δ⌋ and t to the next,
        with t the fractional part of r/δ.
    charges : None, dict or array-like
        Ionic charges [e] that split species (as in :func:`debye_intensity`).
    periodic : bool or None
        Minimum-image distances within half the smallest cell width; None → as in :func:`debye_intensity`.
    r_max : float or None  [Å]
        Ignore pairs at r >= r_max (default: all pairs, or the periodic cut-off).

    Returns
    -------
    r : ndarray, shape (n_nodes,)  [Å]
        Node positions k·δ.
    hist : ndarray, shape (n_species_pairs, n_nodes)
        Weighted pair counts (unordered pairs).
    species : list of (str, int)
        (symbol, charge) of each species.
    pairs : list of (int, int)
        Species indices (a <= b) of each histogram row.
    r_cut : float  [Å]
        Cut-off applied (inf for open boundaries).
    """
    atoms = _check_atoms(atoms)
    delta = check_positive("bin_width", bin_width, "Å")
    keys, index = _species(atoms, charges)
    mode, box, cell, inv_cell, r_cut, _ = _cell_mode(atoms, periodic)
    pos = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    if r_max is not None:
        r_cut = min(r_cut, check_positive("r_max", r_max, "Å"))
    if np.isfinite(r_cut):
        extent = r_cut
    else:
        span = pos.max(axis=0) - pos.min(axis=0)
        extent = float(np.sqrt(np.sum(span**2)))
    n_nodes = int(math.floor(extent / delta)) + 3
    ns = len(keys)
    pair_index = np.empty((ns, ns), dtype=np.int32)
    pairs = []
    for a in range(ns):
        for b in range(a, ns):
            pair_index[a, b] = pair_index[b, a] = len(pairs)
            pairs.append((a, b))
    # species blocks (one histogram row written at a time), spatially ordered inside each block
    order = _sort_spatially(pos, index)
    starts = np.searchsorted(index[order], np.arange(ns + 1)).astype(np.int64)
    hist = _pair_histogram_kernel(
        np.ascontiguousarray(pos[order]),
        starts,
        pair_index,
        len(pairs),
        1.0 / delta,
        n_nodes,
        mode,
        box,
        cell,
        inv_cell,
        float(r_cut) if np.isfinite(r_cut) else 1e300,
        max(1, min(len(pos), 2 * get_num_threads())),
    ).sum(axis=0)
    r = np.arange(n_nodes) * delta
    return r, hist, keys, pairs, float(r_cut)


def _uniform_histogram(r_nodes: np.ndarray, delta: float, r_cut: float, n_sub: int = 32) -> np.ndarray:
    """∫ tent_k(r) 4π r² dr over [0, r_cut]: the linear-binned histogram of a unit pair density [Å³]
    (midpoint rule, 2·n_sub points per node; exact to ~1e-4 relative at the cut-off node, exact elsewhere up to
    the rule's O(δ²/n_sub²) for the quadratic integrand)."""
    u = (np.arange(2 * n_sub) + 0.5) / n_sub - 1.0  # midpoints over [-1, 1] in units of δ
    tent = 1.0 - np.abs(u)
    out = np.empty_like(r_nodes)
    for s0 in range(0, r_nodes.size, 4096):
        r = r_nodes[s0 : s0 + 4096, None] + u[None, :] * delta
        ok = (r >= 0) & (r < r_cut)
        out[s0 : s0 + 4096] = np.sum(np.where(ok, tent * 4.0 * np.pi * r**2, 0.0), axis=1) * delta / n_sub
    return out


def _distinct_sums(atoms, qq, delta, charges, periodic, window):
    """Per unordered species pair p = (a, b): S_p(Q) = Σ_{i<j in p} [w(r_ij) sinc(2πQ r_ij)] − uniform term
    (periodic boxes), from the linear-binned histograms. Returns keys, counts, pairs, S (n_pairs, n_q), r_cut."""
    if window not in ("lorch", None):
        raise ValueError(f"window={window!r}: choose 'lorch' or None")
    r, hist, keys, pairs, r_cut = pair_histogram(atoms, bin_width=delta, charges=charges, periodic=periodic)
    _, index = _species(atoms, charges)
    counts = np.bincount(index, minlength=len(keys)).astype(np.float64)
    if np.isfinite(r_cut):  # periodic box
        volume = abs(np.linalg.det(atoms.cell.array))
        uni = _uniform_histogram(r, delta, r_cut)
        for p, (a, b) in enumerate(pairs):
            n_pairs_density = (counts[a] * counts[b] if a != b else counts[a] * (counts[a] - 1) / 2.0) / volume
            hist[p] -= n_pairs_density * uni
        if window == "lorch":
            x = np.pi * r / r_cut
            w = np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1.0), 1.0)
            hist *= np.where(r < r_cut, w, 0.0)
    return keys, counts, pairs, _sinc_sums_blocked(hist, delta, qq), r_cut


def debye_intensity(
    atoms,
    q,
    *,
    parametrization: str = "lobato",
    charges=None,
    bin_width: float | None = None,
    periodic: bool | None = None,
    window: str | None = "lorch",
    displacement_rms: float = 0.0,
) -> np.ndarray:
    """Orientation-averaged kinematic electron intensity (Debye scattering equation).

    Parameters
    ----------
    atoms : ase.Atoms
        Nanocrystal, cluster or periodic amorphous box (positions [Å]).
    q : array-like, shape (n_q,)  [Å⁻¹]
        1-D, strictly increasing, >= 0 grid of Q = 1/d.
    parametrization : {"lobato", "kirkland"}
        Electron scattering factors (abTEM).
    charges : None, dict or array-like  [e]
        Ionic charges: None (neutral atoms), ``{"Li": 1, "F": -1}`` or one integer per atom. Ionic factors
        diverge at Q → 0: use Q ≳ 0.1 Å⁻¹.
    bin_width : float or None  [Å]
        Pair-distance node spacing δ (default 0.002 Å); error per pair ≤ (2πQδ)²/24 of f_i f_j.
    periodic : bool or None
        Minimum-image treatment of a periodic box with cut-off r_c (half the smallest cell width), the window
        and the uniform-density subtraction described in the module docstring. None → ``all(atoms.pbc)`` unless
        an empty slab wider than ``VACUUM_GAP`` = 4 Å shows a finite object in a vacuum box (e.g. a nanocrystal
        from ``structures.crystals.nanocrystal``), which is summed over all pairs with open boundaries.
    window : {"lorch", None}
        Window applied to the distinct pairs of a periodic box (ignored for open boundaries).
    displacement_rms : float  [Å]
        Uncorrelated isotropic displacement (rms per Cartesian component) σ: distinct terms are multiplied by
        the Debye–Waller factor exp(−4π²Q²σ²); the self term is not.

    Returns
    -------
    ndarray, shape (n_q,)  [Å² per atom]
        I(Q) = (1/N) Σ_ij f_i f_j sinc(2πQ r_ij) (open), or ⟨f²⟩ + distinct − uniform (periodic).
    """
    atoms = _check_atoms(atoms)
    qq = _check_q_grid(q)
    name = _check_parametrization(parametrization)
    delta = DEFAULT_BIN_WIDTH if bin_width is None else check_positive("bin_width", bin_width, "Å")
    sigma = float(displacement_rms)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"displacement_rms={displacement_rms!r}: must be finite and >= 0 [Å]")
    keys, counts, pairs, s, _ = _distinct_sums(atoms, qq, delta, charges, periodic, window)
    n = len(atoms)
    f = _factor_table(keys, qq, name)  # (n_species, n_q)
    distinct = np.zeros_like(qq)
    for p, (a, b) in enumerate(pairs):
        distinct += 2.0 * f[a] * f[b] * s[p]
    if sigma > 0:
        distinct *= np.exp(-4.0 * np.pi**2 * qq**2 * sigma**2)
    self_term = np.sum(counts[:, None] * f**2, axis=0)
    return (self_term + distinct) / n


def partial_structure_factors(
    atoms,
    q,
    *,
    charges=None,
    bin_width: float | None = None,
    periodic: bool | None = None,
    window: str | None = "lorch",
) -> dict:
    """Faber–Ziman partial structure factors S_ab(Q) from the same pair histograms as :func:`debye_intensity`.

    S_ab(Q) = 1 + N/(N_a N_b) · Σ_{i∈a, j∈b, i≠j} [w(r_ij) sinc(2πQ r_ij)] − (uniform term of periodic boxes), so
    that I(Q) = Σ_a c_a f_a² + Σ_ab c_a c_b f_a f_b [S_ab(Q) − 1] with c_a = N_a/N (the Debye intensity per
    atom). For open boundaries (finite objects) S_ab includes the object's small-angle scattering.

    Parameters
    ----------
    atoms : ase.Atoms
    q : array-like, shape (n_q,)  [Å⁻¹]
        1-D, strictly increasing, >= 0.
    charges, bin_width, periodic, window
        As in :func:`debye_intensity` (charges [e], bin_width [Å]).

    Returns
    -------
    dict
        ``{(species_a, species_b): ndarray (n_q,)}`` [dimensionless] for a <= b in sorted species order; a species
        is its symbol, or ``"Li+1"``-style symbol+charge when ``charges`` are given. Symmetric: S_ba = S_ab.
    """
    atoms = _check_atoms(atoms)
    qq = _check_q_grid(q)
    delta = DEFAULT_BIN_WIDTH if bin_width is None else check_positive("bin_width", bin_width, "Å")
    keys, counts, pairs, s, _ = _distinct_sums(atoms, qq, delta, charges, periodic, window)
    n = len(atoms)
    names = [sym if charges is None else f"{sym}{ch:+d}" for sym, ch in keys]
    out = {}
    for p, (a, b) in enumerate(pairs):
        # S_p sums unordered pairs; the ordered sum over i∈a, j∈b is S_p (a ≠ b) or 2·S_p (a = b)
        ordered = s[p] * (2.0 if a == b else 1.0)
        out[(names[a], names[b])] = 1.0 + n * ordered / (counts[a] * counts[b])
    return out


# --------------------------------------------------------------------------------------------------------------
# kinematic spot patterns
# --------------------------------------------------------------------------------------------------------------
def disc_radius(semiangle: float, energy: float) -> float:
    """Radius of the probe's diffraction disc.

    Parameters
    ----------
    semiangle : float  [mrad]
        Probe-forming convergence semi-angle α (> 0).
    energy : float  [eV]

    Returns
    -------
    float  [Å⁻¹]
        α/λ (0.1016 Å⁻¹ for 2 mrad at 300 keV).
    """
    return mrad_to_q(check_positive("semiangle", semiangle, "mrad"), energy)


@dataclass(frozen=True, kw_only=True, eq=False)
class Spots:
    """Kinematic reflections of an oriented crystal (beam along +z).

    Attributes
    ----------
    hkl : ndarray of int, shape (n, 3)
        Miller indices with respect to ``lattice``.
    g : ndarray, shape (n, 3)  [Å⁻¹]
        Reciprocal-lattice vectors (Q = 1/d, no 2π) in the atoms' frame.
    q_xy : ndarray, shape (n, 2)  [Å⁻¹]
        Detector position (q_y, q_x) of each spot.
    excitation_error : ndarray, shape (n,)  [Å⁻¹]
        s_g: signed distance along z from g to the Ewald sphere (negative for g outside the sphere).
    intensity : ndarray, shape (n,)
        Kinematic intensity of each reflection: [Å² per atom] for finite crystals, fraction of the incident
        beam for slabs (``thickness`` given); see :func:`kinematic_spots`.
    """

    hkl: np.ndarray
    g: np.ndarray
    q_xy: np.ndarray
    excitation_error: np.ndarray
    intensity: np.ndarray


def kinematic_spots(
    atoms,
    *,
    energy: float,
    q_max: float,
    lattice=None,
    excitation_error: float | None = None,
    thickness: float | None = None,
    parametrization: str = "lobato",
    charges=None,
    min_intensity: float = 1e-10,
    systematic_absences: bool = True,
) -> Spots:
    """Reflections of an oriented crystal with their kinematic intensities.

    Parameters
    ----------
    atoms : ase.Atoms
        The crystal in its viewing orientation (beam along +z).
    energy : float  [eV]
        Beam energy (Ewald-sphere radius 1/λ).
    q_max : float  [Å⁻¹]
        Largest in-plane |g_xy| kept.
    lattice : array-like (3, 3) or None  [Å]
        Lattice vectors (rows) of the crystal in the atoms' frame. None → ``atoms.info["lattice"]`` if present,
        else a·Rᵀ from ``atoms.info["a"]`` and ``atoms.info["orientation"]`` (R, r_lab = R r_crystal, as filled
        by ``structures.crystals.nanocrystal`` for its cubic phases), else ``atoms.cell``.
    excitation_error : float or None  [Å⁻¹]
        Largest |s_g| kept; None → 3/t with t the thickness (``thickness`` or the atoms' z extent + 2 Å).
    thickness : float or None  [Å]
        None: finite crystal — intensity |Σ_j f_j(|q|) exp(2πi q·r_j)|²/N evaluated at the point q = g + s_g ẑ
        on the Ewald sphere, so the crystal's own shape transform sets the excitation-error dependence.
        A number t: ``atoms`` is one periodic cell (volume Ω = |det atoms.cell|) of a laterally infinite slab
        of thickness t under plane-wave illumination; intensity = fraction of the incident beam in the
        reflection, (λ γ |F_cell(g)| t / Ω)² · [sin(π s_g t)/(π s_g t)]² with γ = 1 + E/m₀c² (first Born
        approximation; agrees with abTEM multislice for LiF to 5 % at 1.1 nm and drifts with thickness).
    parametrization : {"lobato", "kirkland"}
    charges : None, dict or array-like  [e]
        Ionic charges (as in :func:`debye_intensity`).
    min_intensity : float  [unit of the intensity]
        Drop reflections weaker than this.
    systematic_absences : bool
        Skip reciprocal-lattice points forbidden by a centring of ``lattice`` (F, I, A/B/C: half-translations that
        map ≥ 90 % of the atoms onto sites of the same species, detected from the atoms). Without this, a finite
        crystal shows the shape-transform tails of its neighbours at such points (≲ 1 % of the strongest spot for
        a 2.4 nm LiF sphere), which are not reflections; vacancies and displacements do not break the detection.

    Returns
    -------
    Spots
    """
    atoms = _check_atoms(atoms)
    lam = wavelength(check_energy(energy))
    qmax = check_positive("q_max", q_max, "Å⁻¹")
    name = _check_parametrization(parametrization)
    if lattice is None:
        lattice = _lattice_from_info(atoms)
    lat = np.asarray(lattice, dtype=np.float64)
    if lat.shape != (3, 3) or abs(np.linalg.det(lat)) < 1e-9:
        raise ValueError(
            f"lattice={lattice!r}: need three non-coplanar lattice vectors (rows, Å); atoms.cell is used when "
            "lattice is None"
        )
    recip = np.linalg.inv(lat).T  # rows b_i with a_i · b_j = δ_ij (no 2π)
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if thickness is not None:
        t = check_positive("thickness", thickness, "Å")
    else:
        t = float(np.ptp(pos[:, 2])) + 2.0
    s_max = 3.0 / t if excitation_error is None else check_positive("excitation_error", excitation_error, "Å⁻¹")
    gz_max = s_max + 0.5 * lam * qmax**2 + 1e-9
    g_max = math.hypot(qmax, gz_max)
    hmax = [int(math.ceil(g_max * np.linalg.norm(lat[i]))) for i in range(3)]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in hmax], indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    g = hkl @ recip
    gxy = np.hypot(g[:, 0], g[:, 1])
    k0 = 1.0 / lam
    with np.errstate(invalid="ignore"):
        s = np.sqrt(k0**2 - gxy**2) - k0 - g[:, 2]
    keep = (gxy <= qmax) & np.isfinite(s) & (np.abs(s) <= s_max)
    keys, index = _species(atoms, charges)
    if systematic_absences:
        frac = np.linalg.solve(lat.T, pos.T).T
        for shift in _centring_translations(frac, index):
            keep &= np.cos(2 * np.pi * (hkl @ shift)) > 0.0  # h·t half-integer: 1 + exp(2πi h·t) = 0, absent
    hkl, g, gxy, s = hkl[keep], g[keep], gxy[keep], s[keep]
    if thickness is None:
        qv = g + np.outer(s, [0.0, 0.0, 1.0])
    else:
        qv = g
    qn = np.linalg.norm(qv, axis=1)
    amp = np.zeros(len(g), dtype=np.complex128)
    for sp, (sym, ch) in enumerate(keys):
        fj = scattering_factor(sym, qn, parametrization=name, charge=ch)
        phase = np.exp(2j * np.pi * (qv @ pos[index == sp].T))
        amp += fj * phase.sum(axis=1)
    if thickness is None:
        intensity = np.abs(amp) ** 2 / len(atoms)
    else:
        omega = abs(np.linalg.det(atoms.cell.array))
        if omega < 1e-9:
            raise ValueError("thickness given but atoms.cell has no volume: give one periodic cell of the slab")
        x = np.pi * s * t
        shape = np.where(np.abs(x) > 1e-12, np.sin(x) / np.where(np.abs(x) > 1e-12, x, 1.0), 1.0) ** 2
        intensity = (lam * relativistic_factor(energy) * t / omega) ** 2 * np.abs(amp) ** 2 * shape
    keep = intensity > min_intensity
    return Spots(
        hkl=hkl[keep],
        g=g[keep],
        q_xy=g[keep][:, [1, 0]],
        excitation_error=s[keep],
        intensity=intensity[keep],
    )


def _lattice_from_info(atoms) -> np.ndarray:
    """Crystal lattice (rows, Å, lab frame) recorded by the structure builders, else the atoms' cell."""
    info = atoms.info
    if "lattice" in info:
        return np.asarray(info["lattice"], dtype=np.float64)
    if "a" in info and "orientation" in info:
        rot = np.asarray(info["orientation"], dtype=np.float64)
        if rot.shape == (3, 3):
            return float(info["a"]) * rot.T
    return np.asarray(atoms.cell.array, dtype=np.float64)


_HALF_TRANSLATIONS = tuple(
    np.array(t, dtype=np.float64)
    for t in ((0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5), (0.5, 0.5, 0.5), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5))
)


def _centring_translations(frac: np.ndarray, species: np.ndarray, tol: float = 0.06, share: float = 0.9) -> list:
    """Half-translations t of the lattice that map at least ``share`` of the atoms (fractional coordinates
    ``frac``) onto an atom site of the same species (within ``tol`` in fractional units, modulo 1)."""
    found = []
    for sp in np.unique(species):
        f = frac[species == sp] % 1.0
        # distinct sites of this species in the cell (the crystal repeats them)
        key = np.round(f / tol).astype(np.int64) % int(round(1 / tol))
        _, first = np.unique(key, axis=0, return_index=True)
        sites = f[first]
        ok = []
        for t in _HALF_TRANSLATIONS:
            moved = (f + t) % 1.0
            d = moved[:, None, :] - sites[None, :, :]
            d -= np.round(d)
            hit = np.any(np.all(np.abs(d) < tol, axis=2), axis=1) if len(sites) < 512 else np.zeros(len(f), bool)
            ok.append(np.mean(hit) >= share)
        found.append(ok)
    allowed = np.all(np.array(found), axis=0)
    return [t for t, a in zip(_HALF_TRANSLATIONS, allowed) if a]


@njit(cache=True)
def _render_discs_kernel(out, cy, cx, radius_px, weights, oversample):
    """Add discs of radius ``radius_px`` centred at (cy[n], cx[n]) [px] with total ``weights[n]`` (over the whole
    disc, also the part off the detector); each pixel gets its fraction of o×o sub-pixel centres in the disc."""
    ny, nx = out.shape
    o = oversample
    r2 = radius_px * radius_px
    ext = int(math.ceil(radius_px + 1.0))
    for n in range(cy.shape[0]):
        i0 = int(math.floor(cy[n])) - ext
        j0 = int(math.floor(cx[n])) - ext
        size = 2 * ext + 2
        frac = np.zeros((size, size))
        total = 0.0
        for a in range(size):
            for b in range(size):
                cnt = 0
                for u in range(o):
                    y = i0 + a - 0.5 + (u + 0.5) / o - cy[n]
                    for v in range(o):
                        x = j0 + b - 0.5 + (v + 0.5) / o - cx[n]
                        if x * x + y * y <= r2:
                            cnt += 1
                frac[a, b] = cnt
                total += cnt
        if total == 0.0:  # disc smaller than a sub-pixel: all into the nearest pixel
            a = int(round(cy[n])) - i0
            b = int(round(cx[n])) - j0
            frac[a, b] = 1.0
            total = 1.0
        for a in range(size):
            i = i0 + a
            if i < 0 or i >= ny:
                continue
            for b in range(size):
                j = j0 + b
                if j < 0 or j >= nx or frac[a, b] == 0.0:
                    continue
                out[i, j] += weights[n] * frac[a, b] / total
    return out


def render_discs(geometry: DetectorGeometry, q_xy, weights, radius: float, *, oversample: int = 8) -> np.ndarray:
    """Draw uniform discs on the detector grid, conserving each disc's total intensity.

    Parameters
    ----------
    geometry : DetectorGeometry
    q_xy : array-like, shape (n, 2)  [Å⁻¹]
        Disc centres (q_y, q_x) relative to the direct beam.
    weights : array-like, shape (n,)  [intensity]
        Total intensity of each disc (the part falling off the detector is lost).
    radius : float  [Å⁻¹]
        Disc radius (α/λ for a probe, :func:`disc_radius`).
    oversample : int
        Sub-pixels per pixel side used for the anti-aliased area fractions.

    Returns
    -------
    ndarray, shape ``geometry.shape``  [intensity per pixel]
    """
    if not isinstance(geometry, DetectorGeometry):
        raise TypeError(f"geometry={type(geometry).__name__}: expected a simkit.geometry.DetectorGeometry")
    rad = check_positive("radius", radius, "Å⁻¹")
    if isinstance(oversample, bool) or not isinstance(oversample, (int, np.integer)) or oversample < 1:
        raise ValueError(f"oversample={oversample!r}: must be a positive integer")
    p = np.asarray(q_xy, dtype=np.float64).reshape(-1, 2)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape[0] != p.shape[0]:
        raise ValueError(f"weights has {w.shape[0]} values for {p.shape[0]} disc centres")
    ps = geometry.pixel_size
    cy = geometry.center[0] + p[:, 0] / ps
    cx = geometry.center[1] + p[:, 1] / ps
    out = np.zeros(geometry.shape)
    return _render_discs_kernel(out, cy, cx, rad / ps, w, int(oversample))


def spot_pattern(
    atoms,
    geometry: DetectorGeometry,
    *,
    semiangle: float,
    energy: float,
    lattice=None,
    excitation_error: float | None = None,
    thickness: float | None = None,
    q_max: float | None = None,
    parametrization: str = "lobato",
    charges=None,
    oversample: int = 8,
) -> np.ndarray:
    """Kinematic convergent-beam spot pattern of an oriented crystal on a detector grid.

    Each reflection of :func:`kinematic_spots` is drawn as the probe's aperture disc of radius α/λ centred at
    its in-plane position g_xy, carrying the reflection's intensity (area-weighted anti-aliasing; the sum over
    the detector equals the sum of the spot intensities for discs fully on the detector). The direct beam is
    not drawn. Overlapping discs add incoherently. The change of s_g across the disc (≈ α·|g|) is neglected.

    Parameters
    ----------
    atoms : ase.Atoms
        Crystal in its viewing orientation, beam along +z; detector rows follow +y, columns +x.
    geometry : DetectorGeometry
    semiangle : float  [mrad]
        Probe convergence semi-angle α (> 0).
    energy : float  [eV]
    lattice, excitation_error, thickness, parametrization, charges
        As in :func:`kinematic_spots` (lattice [Å], excitation_error [Å⁻¹], thickness [Å], charges [e]).
    q_max : float or None  [Å⁻¹]
        Largest |g_xy| drawn; None → every disc that touches the detector.
    oversample : int
        Sub-pixels per pixel side for the disc rendering.

    Returns
    -------
    ndarray, shape ``geometry.shape``
        [Å² per atom per pixel] for finite crystals; fraction of the incident beam per pixel for slabs.
    """
    if not isinstance(geometry, DetectorGeometry):
        raise TypeError(f"geometry={type(geometry).__name__}: expected a simkit.geometry.DetectorGeometry")
    radius = disc_radius(semiangle, energy)
    if q_max is None:
        ny, nx = geometry.shape
        cy, cx = geometry.center
        corner = max(math.hypot(y - cy, x - cx) for y in (-0.5, ny - 0.5) for x in (-0.5, nx - 0.5))
        q_max = corner * geometry.pixel_size + radius
    spots = kinematic_spots(
        atoms,
        energy=energy,
        q_max=q_max,
        lattice=lattice,
        excitation_error=excitation_error,
        thickness=thickness,
        parametrization=parametrization,
        charges=charges,
    )
    return render_discs(geometry, spots.q_xy, spots.intensity, radius, oversample=oversample)


# --------------------------------------------------------------------------------------------------------------
# probe convolution
# --------------------------------------------------------------------------------------------------------------
def _disc_angle(rho: np.ndarray, q: np.ndarray, radius: float) -> np.ndarray:
    """Θ(ρ, q): angle [rad] of the circle of radius q (about the origin) inside a disc of radius R centred at
    distance ρ. Broadcasts ρ against q."""
    rho, q = np.broadcast_arrays(rho, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (rho**2 + q**2 - radius**2) / (2.0 * rho * q)
    theta = 2.0 * np.arccos(np.clip(np.nan_to_num(c, nan=2.0, posinf=2.0, neginf=-2.0), -1.0, 1.0))
    small = (rho * q) < 1e-300
    return np.where(small, np.where(np.abs(rho - q) < radius, 2.0 * np.pi, 0.0), theta)


@dataclass(frozen=True, kw_only=True, eq=False)
class ProbeConvolution:
    """Precomputed probe convolution (plan once, apply to many I(Q)); build with :func:`make_probe_convolution`.

    Attributes
    ----------
    q : ndarray, shape (n_q,)  [Å⁻¹]
        Input grid of the 1-D profiles.
    semiangle : float  [mrad]
    energy : float  [eV]
    radius : float  [Å⁻¹]
        Disc radius α/λ.
    geometry : DetectorGeometry
    oversample : int
        Sub-pixel samples per pixel side used to average the convolved intensity over each pixel.
    rho : ndarray  [Å⁻¹]
        Radii at which the convolved 1-D intensity J(ρ) is tabulated.
    kernel : ndarray, shape (n_rho, n_q)
        J(ρ) = kernel @ I(q) (I piecewise linear between the q nodes, zero outside [q[0], q[-1]]).
    plan : simkit.radial.RadialPlan
        Radial integration of the detector pattern.
    """

    q: np.ndarray
    semiangle: float
    energy: float
    radius: float
    geometry: DetectorGeometry
    oversample: int
    rho: np.ndarray = field(repr=False)
    kernel: np.ndarray = field(repr=False)
    plan: object = field(repr=False)
    _pixel_matrix: object = field(repr=False)

    def convolved(self, iq) -> np.ndarray:
        """J(ρ) on ``rho`` [same unit as I], shape (..., n_rho)."""
        a = np.asarray(iq, dtype=np.float64)
        if a.shape[-1:] != self.q.shape:
            raise ValueError(f"iq has shape {a.shape}: the last axis must match q ({self.q.size} values)")
        if not np.all(np.isfinite(a)):
            raise ValueError("iq contains non-finite values")
        return a @ self.kernel.T

    def pattern(self, iq) -> np.ndarray:
        """The probe-convolved rings on the detector, shape (..., ny, nx) [I per pixel, pixel-averaged]."""
        j = self.convolved(iq)
        lead = j.shape[:-1]
        flat = j.reshape(-1, j.shape[-1])
        img = (self._pixel_matrix @ flat.T).T
        return img.reshape(*lead, *self.geometry.shape)

    def __call__(self, iq, **integrate_kwargs):
        """Radial profiles (through simkit.radial) of the probe-convolved pattern of ``iq`` (..., n_q)."""
        return self.plan.integrate(self.pattern(iq), **integrate_kwargs)


def _default_geometry(q: np.ndarray, radius: float) -> DetectorGeometry:
    # pixel ≤ 0.005 Å⁻¹ and ≤ R/3, coarser only if the detector would exceed 2049² pixels
    ps = max(min(0.005, radius / 3.0), (q[-1] + radius) / 1020.0)
    half = int(math.ceil((q[-1] + radius) / ps)) + 2
    return DetectorGeometry(shape=(2 * half + 1, 2 * half + 1), pixel_size=ps, center=(half, half))


def make_probe_convolution(
    q,
    *,
    semiangle: float,
    energy: float,
    geometry: DetectorGeometry | None = None,
    oversample: int | None = None,
    **plan_kwargs,
) -> ProbeConvolution:
    """Plan the probe convolution of 1-D profiles on the grid ``q``.

    The isotropic pattern I(|q|) convolved with the uniform aperture disc D (radius R = α/λ, unit integral) is
    isotropic: J(ρ) = (1/πR²) ∫ I(q) q Θ(ρ, q) dq with Θ the angle of the circle |q| inside the disc centred at
    distance ρ (exact 2-D convolution reduced to 1-D). J is evaluated at o×o sub-pixel points of every detector
    pixel (pixel average) and integrated by :mod:`simkit.radial` on the detector geometry.

    Parameters
    ----------
    q : array-like, shape (n_q,)  [Å⁻¹]
        1-D strictly increasing grid (>= 0) of the input profiles; I is taken piecewise linear between the
        nodes and zero outside [q[0], q[-1]].
    semiangle : float  [mrad]
        Probe convergence semi-angle α (> 0).
    energy : float  [eV]
    geometry : DetectorGeometry or None
        Detector; None → a square detector with pixel size min(0.005, R/3) Å⁻¹ (coarser if that needs more
        than 2049² pixels) covering q[-1] + R.
    oversample : int or None
        Sub-pixel samples per pixel side (1 = pixel centres). None → 3, reduced (down to 1) so that
        pixels × oversample² ≤ 6·10⁶ (memory of the plan ≈ 200 bytes per sample).
    **plan_kwargs
        Keywords of :func:`simkit.radial.make_plan_from_geometry` (edges, n_bins, q_max, mask, ...).

    Returns
    -------
    ProbeConvolution
    """
    from scipy import sparse

    from simkit.radial import make_plan_from_geometry

    qq = _check_q_grid(q)
    if qq.size < 2:
        raise ValueError(f"q has {qq.size} value: give a grid of at least two Q values [Å⁻¹]")
    radius = disc_radius(semiangle, energy)
    if geometry is None:
        geometry = _default_geometry(qq, radius)
    elif not isinstance(geometry, DetectorGeometry):
        raise TypeError(f"geometry={type(geometry).__name__}: expected a simkit.geometry.DetectorGeometry or None")
    if oversample is None:
        oversample = int(min(3, max(1, math.floor(math.sqrt(6e6 / (geometry.shape[0] * geometry.shape[1]))))))
    if isinstance(oversample, bool) or not isinstance(oversample, (int, np.integer)) or oversample < 1:
        raise ValueError(f"oversample={oversample!r}: must be a positive integer")
    o = int(oversample)
    ps = geometry.pixel_size
    ny, nx = geometry.shape
    cy, cx = geometry.center

    # sub-pixel radii of every pixel [Å⁻¹]
    off = (np.arange(o) + 0.5) / o - 0.5
    yy = (np.arange(ny)[:, None] + off[None, :] - cy) * ps  # (ny, o)
    xx = (np.arange(nx)[:, None] + off[None, :] - cx) * ps  # (nx, o)
    r_sub = np.sqrt(yy[:, None, :, None] ** 2 + xx[None, :, None, :] ** 2).reshape(ny * nx, o * o)
    r_top = float(r_sub.max())

    # tabulation grid of J(ρ); fine enough that linear interpolation is exact to ≪ 1 %
    d_rho = min(ps / (2 * o), radius / 16.0)
    rho = np.arange(0.0, r_top + 2 * d_rho, d_rho)

    # quadrature over q: midpoints of a fine grid, I piecewise linear (hat functions on the q nodes)
    dq_min = float(np.min(np.diff(qq)))
    h = min(dq_min / 4.0, radius / 16.0)
    n_f = int(math.ceil((qq[-1] - qq[0]) / h))
    h = (qq[-1] - qq[0]) / n_f
    qf = qq[0] + (np.arange(n_f) + 0.5) * h
    k = np.clip(np.searchsorted(qq, qf, side="right") - 1, 0, qq.size - 2)
    t = (qf - qq[k]) / (qq[k + 1] - qq[k])
    hat = sparse.csr_matrix(
        (np.concatenate([1.0 - t, t]), (np.concatenate([np.arange(n_f)] * 2), np.concatenate([k, k + 1]))),
        shape=(n_f, qq.size),
    )
    kernel = np.zeros((rho.size, qq.size))
    norm = h / (np.pi * radius**2)
    chunk = 64
    for s0 in range(0, rho.size, chunk):
        r_c = rho[s0 : s0 + chunk]
        # only |ρ − q| < R contributes (Θ = 0 elsewhere)
        lo, hi = np.searchsorted(qf, [r_c[0] - radius, r_c[-1] + radius])
        if hi <= lo:
            continue
        band = _disc_angle(r_c[:, None], qf[None, lo:hi], radius) * (qf[None, lo:hi] * norm)
        kernel[s0 : s0 + chunk] = (hat[lo:hi].T @ band.T).T

    # pixel matrix: linear interpolation of J at the sub-pixel radii, averaged over the o² sub-pixels
    x = r_sub / d_rho
    i0 = np.minimum(np.floor(x).astype(np.int64), rho.size - 2)
    w1 = x - i0
    rows = np.repeat(np.arange(ny * nx), o * o)
    pm = sparse.csr_matrix(
        (
            np.concatenate([(1.0 - w1).ravel(), w1.ravel()]) / (o * o),
            (np.concatenate([rows, rows]), np.concatenate([i0.ravel(), i0.ravel() + 1])),
        ),
        shape=(ny * nx, rho.size),
    )
    plan = make_plan_from_geometry(geometry, **plan_kwargs)
    return ProbeConvolution(
        q=qq,
        semiangle=float(semiangle),
        energy=float(energy),
        radius=radius,
        geometry=geometry,
        oversample=o,
        rho=rho,
        kernel=kernel,
        plan=plan,
        _pixel_matrix=pm,
    )


def probe_convolve(
    q,
    iq,
    *,
    semiangle: float,
    energy: float,
    geometry: DetectorGeometry | None = None,
    plan: ProbeConvolution | None = None,
    oversample: int | None = None,
    **integrate_kwargs,
):
    """The radial profile a probe of the given semiangle records from an isotropic intensity I(Q).

    Renders I(|q|) on the detector, convolves it with the probe's aperture disc (radius α/λ) and integrates the
    pattern through :mod:`simkit.radial` (see :func:`make_probe_convolution` for the method).

    Parameters
    ----------
    q : array-like, shape (n_q,)  [Å⁻¹]
        1-D strictly increasing grid (>= 0); I is zero outside [q[0], q[-1]].
    iq : array-like, shape (..., n_q)  [any intensity unit]
        One or many profiles on ``q``.
    semiangle : float  [mrad]
        Probe convergence semi-angle α (> 0).
    energy : float  [eV]
    geometry : DetectorGeometry or None
        Detector (None → see :func:`make_probe_convolution`).
    plan : ProbeConvolution or None
        A plan from :func:`make_probe_convolution` to reuse (its q, semiangle, energy must match).
    oversample : int or None
        Sub-pixel samples per pixel side when no plan is given (see :func:`make_probe_convolution`).
    **integrate_kwargs
        Passed to ``RadialPlan.integrate`` (e.g. ``n_phi``).

    Returns
    -------
    simkit.radial.RadialProfiles
        ``mean`` is the pixel-averaged convolved intensity per bin [unit of iq].
    """
    if plan is None:
        plan = make_probe_convolution(q, semiangle=semiangle, energy=energy, geometry=geometry, oversample=oversample)
    else:
        if not isinstance(plan, ProbeConvolution):
            raise TypeError(f"plan={type(plan).__name__}: expected a ProbeConvolution from make_probe_convolution")
        qq = _check_q_grid(q)
        if qq.shape != plan.q.shape or not np.allclose(qq, plan.q, rtol=0, atol=1e-12):
            raise ValueError("q differs from the grid the plan was made for (plan.q)")
        if not math.isclose(check_positive("semiangle", semiangle, "mrad"), plan.semiangle) or not math.isclose(
            check_energy(energy), plan.energy
        ):
            raise ValueError(
                f"semiangle={semiangle!r} mrad, energy={energy!r} eV differ from the plan's "
                f"({plan.semiangle} mrad, {plan.energy} eV)"
            )
        if geometry is not None and geometry != plan.geometry:
            raise ValueError("geometry differs from the plan's geometry")
    return plan(iq, **integrate_kwargs)


def relativistic_factor(energy: float) -> float:
    """γ = 1 + E/m₀c² (multiplies the Born scattering factors for absolute intensities).

    Parameters
    ----------
    energy : float  [eV]

    Returns
    -------
    float
    """
    return 1.0 + check_energy(energy) / ELECTRON_REST_ENERGY_EV
