"""Rigid-body packing and relaxation engine (numba, cell lists, periodic orthorhombic boxes).

All units (monatomic ions, polyatomic anions, molecules) are placed at once at the target density with random
centres and random orientations; then a FIRE minimisation (Bitzek et al. 2006, Phys. Rev. Lett. 97, 170201) of
a soft overlap energy

    E = Σ_pairs k (d_t(ij) − r_ij)²   for r_ij < d_t(ij),   d_t = (1 + margin) · d_min(ij)

moves every unit as a rigid body (centre translation + rotation about its centroid, driven by the summed force
and torque of its atoms). Pairs inside one unit are excluded. The minimisation stops as soon as every
inter-unit pair satisfies r_ij ≥ d_min(ij) (the margin makes this happen before the energy is exactly zero), or
raises after ``max_steps`` with the worst violating pair named. The same rigid-body FIRE minimises the physical
energy of :func:`relax` (Buckingham + damped-shifted-force Coulomb + the same overlap wall).

Neighbour lists are full CSR lists (each atom stores all neighbours j of other units within r_c + skin), built
with cell lists in O(N) and rebuilt when any atom has moved more than skin/2. Every kernel works on arrays and
scalars only, runs in parallel over atoms or units without races (each thread writes only its own rows), sums
global scalars in a fixed serial order, and therefore gives identical results with ``NUMBA_DISABLE_JIT=1``
(each has its plain NumPy twin in ``tests/reference.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["RigidSystem", "PackingError", "pack", "relax_physical", "COULOMB_EV_A"]

#: e²/(4πε₀) [eV·Å] (CODATA 2018).
COULOMB_EV_A = 14.399645478425668


class PackingError(ValueError):
    """The minimum distances could not be reached (a ValueError, so callers can catch bad input)."""


# ----------------------------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _cell_bins(pos, box, ncell):
    """Counting sort of atoms into cells. Returns (cell_start (nc+1,), cell_atoms (N,), atom_cell (N,))."""
    n = pos.shape[0]
    nc = ncell[0] * ncell[1] * ncell[2]
    atom_cell = np.empty(n, dtype=np.int64)
    counts = np.zeros(nc + 1, dtype=np.int64)
    for i in range(n):
        c = np.empty(3, dtype=np.int64)
        for d in range(3):
            f = pos[i, d] / box[d]
            f = f - math.floor(f)
            k = int(f * ncell[d])
            if k >= ncell[d]:
                k = ncell[d] - 1
            if k < 0:
                k = 0
            c[d] = k
        ci = (c[0] * ncell[1] + c[1]) * ncell[2] + c[2]
        atom_cell[i] = ci
        counts[ci + 1] += 1
    for k in range(nc):
        counts[k + 1] += counts[k]
    cell_start = counts.copy()
    fill = counts[:nc].copy()
    cell_atoms = np.empty(n, dtype=np.int64)
    for i in range(n):
        ci = atom_cell[i]
        cell_atoms[fill[ci]] = i
        fill[ci] += 1
    return cell_start, cell_atoms, atom_cell


@numba.njit(cache=True)
def _neighbour_fill(
    i0, i1, pos, box, unit_of, rc2, ncell, offx, offy, offz, cell_start, cell_atoms, atom_cell, cap, nbr, shift, cnt
):
    # atom i owns slots i*cap … i*cap + cap − 1; cnt[i] counts all neighbours (a rebuild follows if any > cap)
    for i in range(i0, i1):
        ci = atom_cell[i]
        cx = ci // (ncell[1] * ncell[2])
        cy = (ci // ncell[2]) % ncell[1]
        cz = ci % ncell[2]
        c = 0
        base = i * cap
        for ox in offx:
            nx = (cx + ox) % ncell[0]
            for oy in offy:
                ny = (cy + oy) % ncell[1]
                for oz in offz:
                    nz = (cz + oz) % ncell[2]
                    cj = (nx * ncell[1] + ny) * ncell[2] + nz
                    for p in range(cell_start[cj], cell_start[cj + 1]):
                        j = cell_atoms[p]
                        if unit_of[j] == unit_of[i]:
                            continue
                        d0 = pos[j, 0] - pos[i, 0]
                        s0 = -math.floor(d0 / box[0] + 0.5)
                        d0 += box[0] * s0
                        d1 = pos[j, 1] - pos[i, 1]
                        s1 = -math.floor(d1 / box[1] + 0.5)
                        d1 += box[1] * s1
                        d2 = pos[j, 2] - pos[i, 2]
                        s2 = -math.floor(d2 / box[2] + 0.5)
                        d2 += box[2] * s2
                        if d0 * d0 + d1 * d1 + d2 * d2 < rc2:
                            if c < cap:
                                nbr[base + c] = j
                                shift[base + c, 0] = int(s0)
                                shift[base + c, 1] = int(s1)
                                shift[base + c, 2] = int(s2)
                            c += 1
        cnt[i] = c


@numba.njit(cache=True)
def _overlap_forces(i0, i1, pos, box, species, dmin, margin, k, start, nbr, shift, force, energy, viol):
    """Soft overlap forces [eV/Å], per-atom energy [eV] (half of each pair) and per-atom worst violation [Å]
    for atoms i0 ≤ i < i1."""
    for i in range(i0, i1):
        fx = 0.0
        fy = 0.0
        fz = 0.0
        e = 0.0
        v = -1.0e30
        si = species[i]
        for p in range(start[i], start[i + 1]):
            j = nbr[p]
            dm = dmin[si, species[j]]
            dt = dm * (1.0 + margin)
            dx = pos[j, 0] - pos[i, 0]
            dx += box[0] * shift[p, 0]
            dy = pos[j, 1] - pos[i, 1]
            dy += box[1] * shift[p, 1]
            dz = pos[j, 2] - pos[i, 2]
            dz += box[2] * shift[p, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if r2 < dt * dt:
                r = math.sqrt(r2)
                if dm - r > v:
                    v = dm - r
                h = dt - r
                e += 0.5 * k * h * h
                if r > 1e-12:
                    g = 2.0 * k * h / r
                    fx -= g * dx
                    fy -= g * dy
                    fz -= g * dz
        force[i, 0] = fx
        force[i, 1] = fy
        force[i, 2] = fz
        energy[i] = e
        viol[i] = v


@numba.njit(cache=True)
def _physical_forces(
    i0, i1, pos, box, species, dmin, margin, kwall, tab, r2min, inv_dr2, rc, start, nbr, shift, force, energy
):
    """Tabulated pair potential + overlap wall for atoms i0 ≤ i < i1, cut at rc [Å].

    ``tab[s_i·n_s + s_j, k, 0]`` / ``[..., 1]`` hold the pair energy [eV] and (dU/dr)/r [eV/Å²] of the species
    (site-type) pair on a uniform grid in r² (r² = r2min + k / inv_dr2), Coulomb included (each site type has one
    charge); energy and force of a grid point share a cache line. Linear interpolation.
    """
    rc2 = rc * rc
    nsp = dmin.shape[0]
    nk = tab.shape[1] - 1
    for i in range(i0, i1):
        fx = 0.0
        fy = 0.0
        fz = 0.0
        e = 0.0
        si = species[i]
        for p in range(start[i], start[i + 1]):
            j = nbr[p]
            sj = species[j]
            dx = pos[j, 0] - pos[i, 0] + box[0] * shift[p, 0]
            dy = pos[j, 1] - pos[i, 1] + box[1] * shift[p, 1]
            dz = pos[j, 2] - pos[i, 2] + box[2] * shift[p, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if r2 >= rc2:
                continue
            x = (r2 - r2min) * inv_dr2
            if x < 0.0:
                x = 0.0
            k = int(x)
            if k >= nk:
                k = nk - 1
            w = x - k
            t = si * nsp + sj
            e += 0.5 * ((1.0 - w) * tab[t, k, 0] + w * tab[t, k + 1, 0])
            sc = (1.0 - w) * tab[t, k, 1] + w * tab[t, k + 1, 1]
            dt = dmin[si, sj] * (1.0 + margin)
            if r2 < dt * dt:
                r = math.sqrt(r2)
                h = dt - r
                e += 0.5 * kwall * h * h
                sc += -2.0 * kwall * h / r
            fx += sc * dx
            fy += sc * dy
            fz += sc * dz
        force[i, 0] = fx
        force[i, 1] = fy
        force[i, 2] = fz
        energy[i] = e


# Parallel drivers: each thread handles a contiguous chunk of atoms and writes only its own rows. Parallel regions
# are launched only for large systems (few launches per step), because on a shared, oversubscribed machine every
# launch can cost milliseconds; ``numba.set_num_threads(1)`` selects the serial path (better on a busy machine).
PARALLEL_MIN_ATOMS = 5000


@numba.njit(cache=True, parallel=True)
def _par_neighbour_fill(nchunk, pos, box, unit_of, rc2, ncell, offx, offy, offz, cs, ca, ac, cap, nbr, shift, cnt):
    n = pos.shape[0]
    for c in numba.prange(nchunk):
        _neighbour_fill(
            c * n // nchunk,
            (c + 1) * n // nchunk,
            pos,
            box,
            unit_of,
            rc2,
            ncell,
            offx,
            offy,
            offz,
            cs,
            ca,
            ac,
            cap,
            nbr,
            shift,
            cnt,
        )


@numba.njit(cache=True, parallel=True)
def _par_overlap_forces(nchunk, pos, box, species, dmin, margin, k, start, nbr, shift, force, energy, viol):
    n = pos.shape[0]
    for c in numba.prange(nchunk):
        _overlap_forces(
            c * n // nchunk,
            (c + 1) * n // nchunk,
            pos,
            box,
            species,
            dmin,
            margin,
            k,
            start,
            nbr,
            shift,
            force,
            energy,
            viol,
        )


@numba.njit(cache=True, parallel=True)
def _par_physical_forces(
    nchunk, pos, box, species, dmin, margin, kwall, tab, r2min, inv_dr2, rc, start, nbr, shift, force, energy
):
    n = pos.shape[0]
    for c in numba.prange(nchunk):
        _physical_forces(
            c * n // nchunk,
            (c + 1) * n // nchunk,
            pos,
            box,
            species,
            dmin,
            margin,
            kwall,
            tab,
            r2min,
            inv_dr2,
            rc,
            start,
            nbr,
            shift,
            force,
            energy,
        )


def _call(serial, parallel, n, *args):
    """Run a range kernel over all n atoms: serially for small n, in parallel chunks for large n."""
    if n >= PARALLEL_MIN_ATOMS and numba.config.DISABLE_JIT == 0 and numba.get_num_threads() > 1:
        parallel(4 * numba.get_num_threads(), *args)
    else:
        serial(0, n, *args)


@numba.njit(cache=True)
def _unit_reduce(pos, centre, unit_start, force, fu, tu):
    """Force and torque (about the unit centre) summed over each unit's atoms."""
    nu = unit_start.shape[0] - 1
    for u in range(nu):
        f0 = 0.0
        f1 = 0.0
        f2 = 0.0
        t0 = 0.0
        t1 = 0.0
        t2 = 0.0
        for i in range(unit_start[u], unit_start[u + 1]):
            rx = pos[i, 0] - centre[u, 0]
            ry = pos[i, 1] - centre[u, 1]
            rz = pos[i, 2] - centre[u, 2]
            f0 += force[i, 0]
            f1 += force[i, 1]
            f2 += force[i, 2]
            t0 += ry * force[i, 2] - rz * force[i, 1]
            t1 += rz * force[i, 0] - rx * force[i, 2]
            t2 += rx * force[i, 1] - ry * force[i, 0]
        fu[u, 0] = f0
        fu[u, 1] = f1
        fu[u, 2] = f2
        tu[u, 0] = t0
        tu[u, 1] = t1
        tu[u, 2] = t2


@numba.njit(cache=True)
def _dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        for d in range(3):
            s += a[i, d] * b[i, d]
    return s


@numba.njit(cache=True)
def _sum1(a):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i]
    return s


@numba.njit(cache=True)
def _max1(a):
    s = -1.0e300
    k = 0
    for i in range(a.shape[0]):
        if a[i] > s:
            s = a[i]
            k = i
    return s, k


@numba.njit(cache=True)
def _fire_velocity(v, w, fu, tu, mass, inertia, dt, a_mix, vnorm, fnorm, wnorm, tnorm):
    """v ← (1−α) v + α |v| F̂, then v += dt F/m (same for angular velocity with torque/inertia)."""
    nu = v.shape[0]
    sv = a_mix * vnorm / fnorm if fnorm > 0.0 else 0.0
    sw = a_mix * wnorm / tnorm if tnorm > 0.0 else 0.0
    for u in range(nu):
        for d in range(3):
            v[u, d] = (1.0 - a_mix) * v[u, d] + sv * fu[u, d] + dt * fu[u, d] / mass[u]
            if inertia[u] > 0.0:
                w[u, d] = (1.0 - a_mix) * w[u, d] + sw * tu[u, d] + dt * tu[u, d] / inertia[u]
            else:
                w[u, d] = 0.0


@numba.njit(cache=True)
def _fire_move(centre, rot, body, unit_start, radius, v, w, dt, max_step, pos):
    """Move units by dt·v and rotate by the angle vector dt·ω (Rodrigues), both capped so that no atom moves
    more than max_step [Å]; recompute atom positions from the rigid geometry."""
    nu = centre.shape[0]
    for u in range(nu):
        dx0 = dt * v[u, 0]
        dx1 = dt * v[u, 1]
        dx2 = dt * v[u, 2]
        ln = math.sqrt(dx0 * dx0 + dx1 * dx1 + dx2 * dx2)
        if ln > max_step:
            s = max_step / ln
            dx0 *= s
            dx1 *= s
            dx2 *= s
        centre[u, 0] += dx0
        centre[u, 1] += dx1
        centre[u, 2] += dx2
        if radius[u] > 0.0:
            a0 = dt * w[u, 0]
            a1 = dt * w[u, 1]
            a2 = dt * w[u, 2]
            th = math.sqrt(a0 * a0 + a1 * a1 + a2 * a2)
            if th * radius[u] > max_step:
                s = max_step / (th * radius[u])
                a0 *= s
                a1 *= s
                a2 *= s
                th *= s
            if th > 0.0:
                kx = a0 / th
                ky = a1 / th
                kz = a2 / th
                c = math.cos(th)
                sn = math.sin(th)
                t = 1.0 - c
                m = np.empty((3, 3))
                m[0, 0] = c + kx * kx * t
                m[0, 1] = kx * ky * t - kz * sn
                m[0, 2] = kx * kz * t + ky * sn
                m[1, 0] = ky * kx * t + kz * sn
                m[1, 1] = c + ky * ky * t
                m[1, 2] = ky * kz * t - kx * sn
                m[2, 0] = kz * kx * t - ky * sn
                m[2, 1] = kz * ky * t + kx * sn
                m[2, 2] = c + kz * kz * t
                r = np.empty((3, 3))
                for a in range(3):
                    for b in range(3):
                        r[a, b] = m[a, 0] * rot[u, 0, b] + m[a, 1] * rot[u, 1, b] + m[a, 2] * rot[u, 2, b]
                # Gram–Schmidt on the rows keeps the matrix orthonormal despite rounding
                for a in range(3):
                    for b in range(a):
                        p = r[a, 0] * r[b, 0] + r[a, 1] * r[b, 1] + r[a, 2] * r[b, 2]
                        for d in range(3):
                            r[a, d] -= p * r[b, d]
                    nn = math.sqrt(r[a, 0] * r[a, 0] + r[a, 1] * r[a, 1] + r[a, 2] * r[a, 2])
                    for d in range(3):
                        r[a, d] /= nn
                for a in range(3):
                    for b in range(3):
                        rot[u, a, b] = r[a, b]
        for i in range(unit_start[u], unit_start[u + 1]):
            for a in range(3):
                pos[i, a] = (
                    centre[u, a] + rot[u, a, 0] * body[i, 0] + rot[u, a, 1] * body[i, 1] + rot[u, a, 2] * body[i, 2]
                )


@numba.njit(cache=True)
def _max_displacement2(pos, ref):
    n = pos.shape[0]
    d2 = np.empty(n)
    for i in range(n):
        s = 0.0
        for d in range(3):
            x = pos[i, d] - ref[i, d]
            s += x * x
        d2[i] = s
    m = 0.0
    for i in range(n):
        if d2[i] > m:
            m = d2[i]
    return m


# ----------------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RigidSystem:
    """Rigid units in an orthorhombic periodic box (arrays only; atoms of a unit are contiguous).

    Attributes
    ----------
    box : numpy.ndarray  [Å]
        Box lengths, shape (3,).
    body : numpy.ndarray  [Å]
        Atom coordinates in their unit's body frame (centroid at 0), shape (N, 3).
    unit_start : numpy.ndarray
        Offsets, shape (n_units + 1,): unit u holds atoms unit_start[u]:unit_start[u+1].
    species : numpy.ndarray
        Index of each atom's element in ``elements``, shape (N,).
    elements : tuple of str
        Element symbols indexed by ``species``.
    charge : numpy.ndarray  [e]
        Site charges, shape (N,).
    """

    box: np.ndarray
    body: np.ndarray
    unit_start: np.ndarray
    species: np.ndarray
    elements: tuple
    charge: np.ndarray

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.body.shape[0])

    @property
    def n_units(self) -> int:
        """Number of units."""
        return int(self.unit_start.shape[0] - 1)

    @property
    def unit_of(self) -> np.ndarray:
        """Unit index of each atom, shape (N,)."""
        return np.repeat(np.arange(self.n_units, dtype=np.int64), np.diff(self.unit_start))


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed rotation matrices (Shoemake's quaternion method), shape (n, 3, 3)."""
    u1, u2, u3 = rng.random((3, n))
    q = np.stack(
        [
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
        ],
        axis=1,
    )
    x, y, z, w = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def _offsets(n: int, m: int) -> np.ndarray:
    # neighbouring cell offsets −m..m along one axis (cells are ≥ r/m wide) without visiting a cell twice when the
    # axis has fewer than 2m + 1 cells
    if n >= 2 * m + 1:
        return np.arange(-m, m + 1, dtype=np.int64)
    return np.arange(n, dtype=np.int64)


def pair_tables(
    buck_a, buck_rho, buck_c, charges, *, alpha: float, cutoff: float, r_min: float = 0.5, n_grid: int = 1024
):
    """Tables of the pair potential on a uniform grid in r² for :func:`_physical_forces`.

    Parameters
    ----------
    buck_a, buck_rho, buck_c : numpy.ndarray
        Buckingham A [eV], ρ [Å], C [eV·Å⁶] per species pair, shape (n_s, n_s); A = 0 means no term. Used in
        shifted-force form u(r) − u(R) − u'(R)(r − R) so that energy and force vanish at the cut-off.
    charges : numpy.ndarray  [e]
        Charge of each species (site type), shape (n_s,).
    alpha : float  [1/Å]
        Damping of the damped-shifted-force Coulomb term (Fennell & Gezelter 2006, J. Chem. Phys. 124, 234104):
        V(r) = K q q' [erfc(αr)/r − erfc(αR)/R + (erfc(αR)/R² + 2α/√π exp(−α²R²)/R)(r − R)], K = e²/4πε₀.
    cutoff : float  [Å]
        R.
    r_min : float  [Å]
        Smallest tabulated distance (values are clamped below; the overlap wall acts there).
    n_grid : int
        Number of grid intervals.

    Returns
    -------
    tab : numpy.ndarray
        Shape (n_s², n_grid + 1, 2): energy [eV] and (dU/dr)/r [eV/Å²] of pair s_i·n_s + s_j.
    r2min, inv_dr2 : float
        Grid origin [Å²] and inverse spacing [1/Å²].
    """
    from scipy.special import erfc

    ns = buck_a.shape[0]
    q = np.asarray(charges, dtype=float)
    r2min = r_min * r_min
    dr2 = (cutoff * cutoff - r2min) / n_grid
    r2 = r2min + dr2 * np.arange(n_grid + 1)
    r = np.sqrt(r2)
    R = cutoff
    fshift = erfc(alpha * R) / R**2 + 2 * alpha / np.sqrt(np.pi) * np.exp(-(alpha**2) * R**2) / R
    ve = COULOMB_EV_A * (erfc(alpha * r) / r - erfc(alpha * R) / R + fshift * (r - R))
    vg = COULOMB_EV_A * (-(erfc(alpha * r) / r2 + 2 * alpha / np.sqrt(np.pi) * np.exp(-(alpha**2) * r2) / r) + fshift)
    tab = np.zeros((ns * ns, n_grid + 1, 2))
    for a in range(ns):
        for b in range(ns):
            t = a * ns + b
            tab[t, :, 0] = q[a] * q[b] * ve
            tab[t, :, 1] = q[a] * q[b] * vg / r
            A, rho, C = buck_a[a, b], buck_rho[a, b], buck_c[a, b]
            if A == 0.0:
                continue
            ex = A * np.exp(-r / rho)
            ex_R, c_R = A * np.exp(-R / rho), C / R**6
            g = -ex / rho + 6 * C / r**7
            g_R = -ex_R / rho + 6 * c_R / R
            tab[t, :, 0] += ex - C / r**6 - (ex_R - c_R) - g_R * (r - R)
            tab[t, :, 1] += (g - g_R) / r
    return tab, float(r2min), float(1.0 / dr2)


class _NeighbourList:
    def __init__(self, system: RigidSystem, cutoff: float, skin: float):
        self.box = np.ascontiguousarray(system.box, dtype=np.float64)
        self.unit_of = system.unit_of
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        rl = self.cutoff + self.skin
        if np.any(self.box < 2.0 * rl):
            raise ValueError(
                f"cell lengths {self.box.tolist()} Å are too small for the interaction range: every length must be "
                f"≥ 2 × (cutoff + skin) = {2 * rl:.2f} Å (minimum-image convention)"
            )
        # cells of width ≥ rl/m, searched ±m cells: m = 2 visits ~half the volume of m = 1 for long cut-offs
        self.m = 2 if rl > 6.0 else 1
        self.ncell = np.maximum(1, np.floor(self.box * self.m / rl)).astype(np.int64)
        self.offs = [_offsets(int(n), self.m) for n in self.ncell]
        self.ref = None
        self.n_builds = 0
        # slots per atom: 1.5 × the mean number within cutoff + skin, plus room for fluctuations
        rho = system.n_atoms / float(np.prod(self.box))
        self.cap = int(1.5 * rho * 4.0 / 3.0 * np.pi * rl**3) + 16

    def build(self, pos):
        cs, ca, ac = _cell_bins(pos, self.box, self.ncell)
        rl2 = (self.cutoff + self.skin) ** 2
        n = pos.shape[0]
        cnt = np.zeros(n, dtype=np.int64)
        while True:
            cap = self.cap
            nbr = np.empty(n * cap, dtype=np.int32)
            shift = np.empty((n * cap, 3), dtype=np.int8)
            args = (pos, self.box, self.unit_of, rl2, self.ncell, *self.offs, cs, ca, ac, cap, nbr, shift, cnt)
            _call(_neighbour_fill, _par_neighbour_fill, n, *args)
            m = int(cnt.max()) if n else 0
            if m <= cap:
                break
            self.cap = int(1.2 * m) + 8  # a dense spot overflowed the slots: redo once with room to spare
        keep = (np.arange(cap)[None, :] < cnt[:, None]).ravel()
        self.nbr = nbr[keep]
        self.shift = shift[keep]
        start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(cnt, out=start[1:])
        self.start = start
        self.ref = pos.copy()
        self.n_builds += 1

    def update(self, pos):
        if self.ref is None or _max_displacement2(pos, self.ref) > (0.5 * self.skin) ** 2:
            self.build(pos)


@dataclass(frozen=True, kw_only=True)
class FireSettings:
    """FIRE parameters (Bitzek et al. 2006) in the engine's units (mass 1 per atom, forces [eV/Å])."""

    dt_start: float = 0.1
    dt_max: float = 0.5
    n_min: int = 5
    f_inc: float = 1.1
    f_dec: float = 0.5
    alpha_start: float = 0.1
    f_alpha: float = 0.99
    max_step: float = 0.2


class _State:
    def __init__(self, system: RigidSystem, centre, rot):
        self.s = system
        self.centre = np.ascontiguousarray(centre, dtype=np.float64)
        self.rot = np.ascontiguousarray(rot, dtype=np.float64)
        nu = system.n_units
        counts = np.diff(system.unit_start).astype(np.float64)
        self.mass = counts
        b2 = np.einsum("ij,ij->i", system.body, system.body)
        unit_of = system.unit_of
        self.inertia = np.bincount(unit_of, weights=b2, minlength=nu)
        self.radius = np.sqrt(np.maximum.reduceat(b2, system.unit_start[:-1])) if nu else np.zeros(0)
        self.radius[counts == 1] = 0.0
        self.inertia[counts == 1] = 0.0
        self.pos = np.empty((system.n_atoms, 3))
        self.v = np.zeros((nu, 3))
        self.w = np.zeros((nu, 3))
        self.fu = np.zeros((nu, 3))
        self.tu = np.zeros((nu, 3))
        self.force = np.zeros((system.n_atoms, 3))
        self.energy = np.zeros(system.n_atoms)
        self.place()

    def place(self):
        zero = np.zeros_like(self.v)
        _fire_move(self.centre, self.rot, self.s.body, self.s.unit_start, self.radius, zero, zero, 0.0, 1.0, self.pos)


def _fire_loop(state: _State, nlist: _NeighbourList, compute, settings: FireSettings, max_steps: int, done):
    """Generic rigid-body FIRE loop; `compute()` fills state.force/energy, `done(step)` returns True to stop."""
    dt = settings.dt_start
    a_mix = settings.alpha_start
    n_pos = 0
    step = 0
    for step in range(max_steps + 1):
        nlist.update(state.pos)
        compute()
        if done(step):
            return step, True
        if step == max_steps:
            break
        _unit_reduce(state.pos, state.centre, state.s.unit_start, state.force, state.fu, state.tu)
        power = _dot(state.fu, state.v) + _dot(state.tu, state.w)
        if power >= 0.0:
            n_pos += 1
            if n_pos > settings.n_min:
                dt = min(dt * settings.f_inc, settings.dt_max)
                a_mix *= settings.f_alpha
            vnorm = math.sqrt(_dot(state.v, state.v))
            fnorm = math.sqrt(_dot(state.fu, state.fu))
            wnorm = math.sqrt(_dot(state.w, state.w))
            tnorm = math.sqrt(_dot(state.tu, state.tu))
            _fire_velocity(
                state.v, state.w, state.fu, state.tu, state.mass, state.inertia, dt, a_mix, vnorm, fnorm, wnorm, tnorm
            )
        else:
            n_pos = 0
            dt *= settings.f_dec
            a_mix = settings.alpha_start
            state.v[:] = 0.0
            state.w[:] = 0.0
            _fire_velocity(state.v, state.w, state.fu, state.tu, state.mass, state.inertia, dt, 0.0, 0.0, 1.0, 0.0, 1.0)
        _fire_move(
            state.centre,
            state.rot,
            state.s.body,
            state.s.unit_start,
            state.radius,
            state.v,
            state.w,
            dt,
            settings.max_step,
            state.pos,
        )
    return step, False


def pack(
    system: RigidSystem,
    dmin: np.ndarray,
    rng: np.random.Generator,
    *,
    margin: float = 0.03,
    k: float = 1.0,
    max_steps: int = 5000,
    skin: float = 0.6,
    settings: FireSettings | None = None,
    start: tuple | None = None,
):
    """Place all units at random and remove overlaps by rigid-body FIRE on the soft overlap energy.

    Parameters
    ----------
    system : RigidSystem
        Units, box [Å] and species.
    dmin : numpy.ndarray  [Å]
        Minimum inter-unit distance per species pair, shape (n_species, n_species), symmetric.
    rng : numpy.random.Generator
        Source of the random centres and orientations.
    margin : float
        Relative padding of the target distance d_t = (1 + margin) d_min; convergence means r ≥ d_min.
    k : float  [eV/Å²]
        Stiffness of the overlap energy.
    max_steps : int
        Upper bound on FIRE steps; PackingError after that.
    skin : float  [Å]
        Verlet skin of the neighbour list.
    settings : FireSettings or None
        FIRE parameters.
    start : (centre, rot) or None
        Start from these unit centres [Å] and rotations instead of random ones (used to clean up after a
        relaxation).

    Returns
    -------
    centre : numpy.ndarray  [Å]
        Unit centres, shape (n_units, 3).
    rot : numpy.ndarray
        Unit rotation matrices, shape (n_units, 3, 3).
    positions : numpy.ndarray  [Å]
        Atom positions (not wrapped into the box), shape (N, 3).
    summary : dict
        steps, neighbour-list builds, final overlap energy [eV], worst remaining gap [Å], time [s].

    Raises
    ------
    PackingError
        If overlaps remain after ``max_steps``; names the worst element pair and the shortfall.
    """
    t0 = time.perf_counter()
    settings = settings or FireSettings()
    box = np.asarray(system.box, dtype=np.float64)
    if start is None:
        centre = rng.random((system.n_units, 3)) * box
        rot = random_rotations(system.n_units, rng)
        rot[np.diff(system.unit_start) == 1] = np.eye(3)
    else:
        centre, rot = np.array(start[0], dtype=np.float64), np.array(start[1], dtype=np.float64)
    state = _State(system, centre, rot)
    dmin = np.ascontiguousarray(dmin, dtype=np.float64)
    cutoff = float(dmin.max()) * (1.0 + margin)
    nlist = _NeighbourList(system, cutoff, skin)
    viol = np.zeros(system.n_atoms)
    species = np.ascontiguousarray(system.species, dtype=np.int64)

    def compute():
        _call(
            _overlap_forces,
            _par_overlap_forces,
            system.n_atoms,
            state.pos,
            box,
            species,
            dmin,
            margin,
            k,
            nlist.start,
            nlist.nbr,
            nlist.shift,
            state.force,
            state.energy,
            viol,
        )

    def done(step):
        return system.n_atoms == 0 or _max1(viol)[0] <= 0.0

    steps, ok = _fire_loop(state, nlist, compute, settings, max_steps, done)
    worst, iw = _max1(viol) if system.n_atoms else (0.0, 0)
    summary = {
        "steps": int(steps),
        "neighbour_builds": int(nlist.n_builds),
        "overlap_energy_eV": float(_sum1(state.energy)),
        "worst_gap_A": float(max(worst, 0.0)),
        "time_s": time.perf_counter() - t0,
    }
    if not ok:
        n_bad = int(np.sum(viol > 0.0))
        # the partner of the worst atom
        j_best, r_best = -1, np.inf
        for p in range(nlist.start[iw], nlist.start[iw + 1]):
            j = nlist.nbr[p]
            d = state.pos[j] - state.pos[iw]
            d -= box * np.round(d / box)
            r = float(np.linalg.norm(d))
            gap = dmin[species[iw], species[j]] - r
            if gap > 0 and (j_best < 0 or gap >= dmin[species[iw], species[j_best]] - r_best):
                j_best, r_best = j, r
        ei = system.elements[species[iw]]
        ej = system.elements[species[j_best]] if j_best >= 0 else "?"
        need = dmin[species[iw], species[j_best]] if j_best >= 0 else np.nan
        raise PackingError(
            f"could not satisfy the minimum distances at this density within max_steps={max_steps} FIRE steps: "
            f"{n_bad} atoms still too close; worst pair {ei}–{ej} at {r_best:.3f} Å < min_distance {need:.3f} Å "
            f"(short by {need - r_best:.3f} Å). Lower the density, reduce min_distance['{ei}-{ej}'], or raise "
            f"max_steps."
        )
    return state.centre, state.rot, state.pos, summary


def relax_physical(
    system: RigidSystem,
    centre: np.ndarray,
    rot: np.ndarray,
    dmin: np.ndarray,
    buck_a: np.ndarray,
    buck_rho: np.ndarray,
    buck_c: np.ndarray,
    *,
    alpha: float = 0.25,
    cutoff: float = 8.0,
    margin: float = 0.03,
    kwall: float = 20.0,
    steps: int = 300,
    fmax: float = 0.05,
    skin: float = 1.5,
    settings: FireSettings | None = None,
):
    """Minimise Buckingham + DSF Coulomb + overlap wall with rigid units (FIRE, bounded number of steps).

    Parameters
    ----------
    system : RigidSystem
        Units, box [Å], species and site charges [e].
    centre, rot : numpy.ndarray
        Starting unit centres [Å] (n_units, 3) and rotation matrices (n_units, 3, 3).
    dmin : numpy.ndarray  [Å]
        Minimum distances; a wall k_wall (d_t − r)² keeps them during the relaxation.
    buck_a, buck_rho, buck_c : numpy.ndarray
        Buckingham A [eV], ρ [Å], C [eV·Å⁶] per species pair (A = 0: no Buckingham term).
    alpha : float  [1/Å]
        DSF damping parameter.
    cutoff : float  [Å]
        Interaction cutoff.
    margin : float
        Relative padding of the wall distance.
    kwall : float  [eV/Å²]
        Wall stiffness.
    steps : int
        Maximum number of FIRE steps.
    fmax : float  [eV/Å]
        Stop when the largest unit force falls below this.
    skin : float  [Å]
        Verlet skin.
    settings : FireSettings or None
        FIRE parameters.

    Returns
    -------
    centre, rot, positions : numpy.ndarray
        Relaxed unit centres [Å], rotations and atom positions [Å].
    summary : dict
        energy_start/energy_end [eV per atom], steps, max unit force [eV/Å], time [s], converged.
    """
    t0 = time.perf_counter()
    settings = settings or FireSettings(dt_start=0.02, dt_max=0.1, max_step=0.1)
    box = np.asarray(system.box, dtype=np.float64)
    state = _State(system, centre.copy(), rot.copy())
    # small boxes: shorten the cut-off to what the minimum-image convention allows (recorded in the summary)
    cutoff = min(float(cutoff), 0.5 * float(box.min()) - skin)
    if cutoff < 5.0:
        raise ValueError(
            f"cell lengths {box.tolist()} Å are too small for the relaxation: need ≥ {2 * (5.0 + skin):.1f} Å per "
            "axis (Coulomb cut-off ≥ 5 Å under the minimum-image convention); use a larger cell or relax=False"
        )
    nlist = _NeighbourList(system, cutoff, skin)
    species = np.ascontiguousarray(system.species, dtype=np.int64)
    charge = np.ascontiguousarray(system.charge, dtype=np.float64)
    dmin = np.ascontiguousarray(dmin, dtype=np.float64)
    qtype = np.zeros(len(system.elements))
    qtype[species] = charge
    tab, r2min, inv_dr2 = pair_tables(buck_a, buck_rho, buck_c, qtype, alpha=alpha, cutoff=cutoff)
    energies = []

    def compute():
        _call(
            _physical_forces,
            _par_physical_forces,
            system.n_atoms,
            state.pos,
            box,
            species,
            dmin,
            margin,
            kwall,
            tab,
            r2min,
            inv_dr2,
            cutoff,
            nlist.start,
            nlist.nbr,
            nlist.shift,
            state.force,
            state.energy,
        )

    fmax_seen = [np.inf]

    def done(step):
        energies.append(_sum1(state.energy))
        _unit_reduce(state.pos, state.centre, state.s.unit_start, state.force, state.fu, state.tu)
        f = float(np.sqrt(np.max(np.einsum("ij,ij->i", state.fu, state.fu)))) if system.n_units else 0.0
        fmax_seen[0] = f
        return f < fmax

    n, ok = _fire_loop(state, nlist, compute, settings, steps, done)
    n_at = max(system.n_atoms, 1)
    summary = {
        "energy_start_eV_per_atom": float(energies[0] / n_at),
        "energy_end_eV_per_atom": float(energies[-1] / n_at),
        "steps": int(n),
        "max_unit_force_eV_per_A": float(fmax_seen[0]),
        "converged": bool(ok),
        "cutoff_A": cutoff,
        "time_s": time.perf_counter() - t0,
    }
    return state.centre, state.rot, state.pos, summary
