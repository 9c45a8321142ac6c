"""Dynamical (Bloch-wave) spot intensities of crystal slabs, and their orientation average as radial profiles.

Why: at 0.15 mrad the probe's diffraction discs (radius α/λ ≈ 0.008 Å⁻¹ at 300 keV) do not overlap, so a
crystal's pattern is the plane-wave diffraction of the (laterally periodic) crystal with every beam drawn as a
uniform disc. Its Bragg intensities depend on the crystal thickness through dynamical scattering — for LiF [011]
I111/I200 is 1.05 / 1.19 / 1.56 / 2.56 × the kinematic ratio at 1.1 / 2.3 / 4.6 / 9.1 nm (abTEM multislice,
tests/test_kinematic.py) — as strongly as through F vacancies. A kinematic (Debye) component cannot carry that.

Method (high-energy Bloch waves, Q = 1/d, no 2π; e.g. De Graef, *Introduction to Conventional TEM*, ch. 6;
Kirkland, *Advanced Computing in Electron Microscopy*, §6): with the beam along +z and k₀ = 1/λ, the beam
amplitudes φ_g(z) obey dφ/dz = iπλ A φ with the structure matrix

    A_gh = 2k₀ s_g δ_gh + U_{g−h},    s_g = (k₀² − |k₀ẑ + g|²) / 2k₀ = −g_z − λ|g|²/2,
    U_g  = γ F_g / (π Ω),             F_g = Σ_j o_j f_j(|g|) exp(−2π² u_j² |g|²) exp(−2πi g·r_j)  [Å],

so φ(t) = C exp(iπλ t Λ) Cᴴ e₀ from one Hermitian eigen-decomposition A = C Λ Cᴴ — every thickness at once.
f_j are the electron scattering factors of :func:`simkit.kinematic.scattering_factor` (neutral, or ionic
through Mott–Bethe when ``charges`` are given — abTEM's own Bloch-wave and multislice codes only take neutral
atoms), o_j site occupancies (the virtual-crystal average of randomly distributed vacancies: the Bragg beams of
a crystal with a fraction x of its F sites empty see o_F = 1 − x; the diffuse scattering of the disorder is
not in the beams and belongs to the background) and u_j the rms displacement per direction (Debye–Waller;
defaults :data:`simkit.nbed.DEFAULT_DISPLACEMENT` at 100 K). U₀ (the mean inner potential, a common phase) is
dropped. The forward-scattering approximation (∂²φ/∂z² and backscattering neglected, 1 + g_z/k₀ ≈ 1) holds
for |g| ≲ 2 Å⁻¹ at 100–300 keV. No absorption: Σ_g |φ_g|² = 1 (unitarity) — a test checks it.

Kinematic limit (t → 0): |φ_g|² → (λγ|F_g|t/Ω)² sinc²(π s_g t), the slab formula of
:func:`simkit.kinematic.kinematic_spots`.

Beams: all reciprocal-lattice vectors with 0 < |g| ≤ ``g_max`` and |s_g| ≤ ``sg_max`` (plus the direct beam);
structure-factor zeros (centring extinctions) are left out.

Radial profiles of many grains (:func:`powder_profiles`): a region of randomly oriented crystals records the
orientation average. A radial profile is invariant under rotation about the beam, so only the beam direction in
the crystal frame is sampled: a Fibonacci lattice of directions (``symmetry="m-3m"``: only the cubic
fundamental wedge, 48× denser), or a seeded random rotation of it (randomised quasi-Monte Carlo). The average
converges slowly — a reflection is excited in a minority of orientations, so one orientation's ring intensity
scatters by ≈ 1.6× its mean (LiF 200, 1 nm); LiF I111/I200 from 1000 wedge directions agrees with 3000 to ≤ 3 %
up to 10 nm, and that residual sampling error is what limits a thickness fitted from a powder profile. Measured
orientation-averaged LiF (a = 4.009 Å, 100 K Debye–Waller) I111/I200 = 0.236 / 0.246 / 0.255 / 0.302 at 1 / 5 /
10 / 20 nm, and 0.117 / 0.119 / 0.126 / 0.147 with 20 % F vacancies: in a powder average thickness matters far
less than on a zone axis (×1.56 at 4.6 nm on [011]). Each beam of each orientation is a disc at |g_xy|; the
discs' total intensities are binned linearly onto a fine Q grid as a ring density and drawn on the detector
with the exact disc convolution of :func:`simkit.kinematic.make_probe_convolution`, then integrated by
:mod:`simkit.radial` (the only place that bins pixels by radius). :func:`spot_pattern` draws the discs of one
orientation explicitly (:func:`simkit.kinematic.render_discs`) — an independent rendering path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from simkit.geometry import DetectorGeometry
from simkit.kinematic import (
    disc_radius,
    make_probe_convolution,
    relativistic_factor,
    render_discs,
    scattering_factor,
)
from simkit.units import check_energy, wavelength
from structures.checks import check_positive

__all__ = [
    "SlabBeams",
    "beam_directions",
    "powder_profiles",
    "powder_rings",
    "slab_beams",
    "spot_pattern",
    "structure_factors",
]


# --------------------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------------------
def _check_cell(atoms):
    try:
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pos = np.asarray(atoms.positions, dtype=np.float64)
    except AttributeError:
        raise TypeError(f"atoms={type(atoms).__name__}: give one periodic unit cell as ase.Atoms") from None
    if len(atoms) == 0:
        raise ValueError("atoms is empty: give one periodic unit cell (e.g. structures.crystals.bulk('LiF'))")
    vol = abs(np.linalg.det(cell))
    if not vol > 1e-6:
        raise ValueError(f"atoms.cell has volume {vol!r} Å³: give a periodic unit cell with three lattice vectors")
    return cell, pos, vol


def _per_atom(atoms, values, name: str, default: float, lo: float, hi: float, unit: str) -> np.ndarray:
    symbols = atoms.get_chemical_symbols()
    if values is None:
        return np.full(len(symbols), default)
    if isinstance(values, Mapping):
        for k in values:
            if k not in symbols:
                raise ValueError(
                    f"{name}={dict(values)!r}: {k!r} is not an element of the cell ({sorted(set(symbols))})"
                )
        out = np.array([float(values.get(s, default)) for s in symbols])
    else:
        try:
            v = float(values)
        except (TypeError, ValueError):
            raise TypeError(f"{name}={values!r}: give a number or a dict element → value [{unit}]") from None
        out = np.full(len(symbols), v)
    if not np.all(np.isfinite(out)) or np.any(out < lo) or np.any(out > hi):
        raise ValueError(f"{name}={values!r}: values must lie in [{lo}, {hi}] [{unit}]")
    return out


def _check_thicknesses(thicknesses) -> np.ndarray:
    t = np.atleast_1d(np.asarray(thicknesses, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"thicknesses={thicknesses!r}: give one or more finite thicknesses ≥ 0 [Å]")
    return t


def _default_displacement() -> dict[str, float]:
    from simkit.nbed import DEFAULT_DISPLACEMENT

    return dict(DEFAULT_DISPLACEMENT)


# --------------------------------------------------------------------------------------------------------------
# structure factors
# --------------------------------------------------------------------------------------------------------------
def structure_factors(
    atoms,
    hkl,
    *,
    occupancy=None,
    displacement="default",
    charges=None,
    parametrization: str = "lobato",
) -> np.ndarray:
    """Electron structure factors F(hkl) of one periodic cell.

    Parameters
    ----------
    atoms : ase.Atoms
        One periodic cell (e.g. ``structures.crystals.bulk("LiF")``); Miller indices refer to its cell vectors.
    hkl : array-like of int, shape (n, 3)
    occupancy : None, float or dict element → float  [1]
        Site occupancies o_j in [0, 1] (None → 1). F vacancies at fraction x: ``{"F": 1 - x}``.
    displacement : "default", None, float or dict element → float  [Å]
        Rms displacement per direction u_j (Debye–Waller factor exp(−2π² u² |g|²)); "default" →
        ``simkit.nbed.DEFAULT_DISPLACEMENT`` (100 K), None → static lattice.
    charges : None or dict element → int  [e]
        Ionic charges (e.g. ``{"Li": 1, "F": -1}``); None → neutral atoms. F(000) is then not defined and
        returned as 0.
    parametrization : {"lobato", "kirkland"}

    Returns
    -------
    ndarray of complex, shape (n,)  [Å]
        F = Σ_j o_j f_j(|g|) DW_j(|g|) exp(−2πi g·r_j), non-relativistic f_j.
    """
    cell, pos, _ = _check_cell(atoms)
    h = np.asarray(hkl)
    if h.ndim != 2 or h.shape[1] != 3 or not np.issubdtype(h.dtype, np.integer):
        raise ValueError(f"hkl has shape {h.shape} and dtype {h.dtype}: give integer Miller indices of shape (n, 3)")
    occ = _per_atom(atoms, occupancy, "occupancy", 1.0, 0.0, 1.0, "1")
    if isinstance(displacement, str):
        if displacement != "default":
            raise ValueError(f"displacement={displacement!r}: give 'default', None, a number or a dict [Å]")
        known = _default_displacement()
        syms = set(atoms.get_chemical_symbols())
        missing = sorted(syms - set(known))
        if missing:
            raise ValueError(f"displacement='default' has no value for {missing}; give displacement explicitly [Å]")
        displacement = {s: known[s] for s in syms}
    u = _per_atom(atoms, displacement, "displacement", 0.0, 0.0, 2.0, "Å")
    ch = {} if charges is None else dict(charges)
    if charges is not None and not isinstance(charges, Mapping):
        raise TypeError(f"charges={charges!r}: give None or a dict element → charge [e]")
    _per_atom(atoms, {k: float(v) for k, v in ch.items()} or None, "charges", 0.0, -8.0, 8.0, "e")
    recip = np.linalg.inv(cell).T
    g = h @ recip
    gl = np.linalg.norm(g, axis=1)
    frac = np.linalg.solve(cell.T, pos.T).T
    symbols = atoms.get_chemical_symbols()
    out = np.zeros(len(h), dtype=np.complex128)
    nz = gl > 0
    phase = np.exp(-2j * np.pi * (h[nz] @ frac.T))  # (n, n_atoms)
    cache: dict[tuple[str, int], np.ndarray] = {}
    for j, s in enumerate(symbols):
        key = (s, int(ch.get(s, 0)))
        if key not in cache:
            cache[key] = scattering_factor(s, gl[nz], parametrization=parametrization, charge=key[1])
        dw = np.exp(-2.0 * np.pi**2 * u[j] ** 2 * gl[nz] ** 2)
        out[nz] += occ[j] * cache[key] * dw * phase[:, j]
    if not np.all(nz) and not ch:
        f0 = sum(
            occ[j] * float(scattering_factor(s, np.array([0.0]), parametrization=parametrization)[0])
            for j, s in enumerate(symbols)
        )
        out[~nz] = f0
    return out


# --------------------------------------------------------------------------------------------------------------
# one orientation
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class SlabBeams:
    """Beams of a crystal slab under plane-wave illumination (beam along +z), from :func:`slab_beams`.

    Attributes
    ----------
    hkl : ndarray of int, shape (n, 3)
        Miller indices (cell of the atoms); row 0 is the direct beam (0, 0, 0).
    g : ndarray, shape (n, 3)  [Å⁻¹]
        Reciprocal-lattice vectors in the lab frame (beam along +z).
    q_xy : ndarray, shape (n, 2)  [Å⁻¹]
        Detector positions (q_y, q_x) of the beams.
    excitation_error : ndarray, shape (n,)  [Å⁻¹]
        s_g = −g_z − λ|g|²/2.
    thickness : ndarray, shape (n_t,)  [Å]
    intensity : ndarray, shape (n_t, n)  [fraction of the incident beam]
        |φ_g(t)|²; each row sums to 1 (no absorption).
    """

    hkl: np.ndarray
    g: np.ndarray
    q_xy: np.ndarray
    excitation_error: np.ndarray
    thickness: np.ndarray
    intensity: np.ndarray


class _Lattice:
    """Reflections within g_max and a lookup of U for all differences (internal)."""

    def __init__(self, atoms, g_max, energy, occupancies, displacement, charges, parametrization):
        cell, _, vol = _check_cell(atoms)
        self.recip = np.linalg.inv(cell).T
        self.lam = wavelength(energy)
        n = [int(math.ceil(g_max * np.linalg.norm(cell[i]))) for i in range(3)]
        grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in n], indexing="ij"), axis=-1).reshape(-1, 3)
        g = grid @ self.recip
        gl = np.linalg.norm(g, axis=1)
        keep = (gl <= g_max) & (gl > 0)
        # drop structure-factor zeros (centring extinctions) using the first occupancy set, static lattice
        f_probe = structure_factors(atoms, grid[keep], occupancy=None, displacement=None, charges=None)
        big = np.abs(f_probe) > 1e-8 * np.abs(f_probe).max()
        self.hkl = np.vstack([np.zeros((1, 3), dtype=np.int64), grid[keep][big].astype(np.int64)])
        self.g = self.hkl @ self.recip
        self.g2 = np.sum(self.g**2, axis=1)
        # U for every difference vector, from a dense lookup box
        self.n2 = np.array([2 * m for m in n])
        dims = 2 * self.n2 + 1
        box = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in self.n2], indexing="ij"), axis=-1).reshape(-1, 3)
        pref = relativistic_factor(energy) / (np.pi * vol)
        self.u_box = []
        for occ in occupancies:
            f = structure_factors(
                atoms, box, occupancy=occ, displacement=displacement, charges=charges, parametrization=parametrization
            )
            self.u_box.append((pref * f).reshape(tuple(dims)))

    def u_matrix(self, idx, k):
        h = self.hkl[idx]
        d = h[:, None, :] - h[None, :, :] + self.n2
        return self.u_box[k][d[..., 0], d[..., 1], d[..., 2]]


def _propagate(A, lam, t):
    """|φ(t)|² for the incident beam in row 0 of the Hermitian structure matrix A [Å⁻²]; shape (n_t, n)."""
    v, c = np.linalg.eigh(A)
    alpha = np.conj(c[0])  # Cᴴ e₀
    ph = np.exp(1j * np.pi * lam * np.outer(t, v))  # (n_t, n)
    amp = (ph * alpha) @ c.T
    return np.abs(amp) ** 2


def _direction_rotation(direction) -> np.ndarray:
    from structures.crystals import rotation_to_zone_axis

    return rotation_to_zone_axis(direction)


def slab_beams(
    atoms,
    thicknesses,
    *,
    energy: float = 300e3,
    direction=(0, 0, 1),
    g_max: float = 2.0,
    sg_max: float = 0.1,
    occupancy=None,
    displacement="default",
    charges=None,
    parametrization: str = "lobato",
) -> SlabBeams:
    """Dynamical beam intensities of a laterally infinite crystal slab for a series of thicknesses.

    Parameters
    ----------
    atoms : ase.Atoms
        One periodic cell of the crystal in its own (crystal) frame, e.g. ``structures.crystals.bulk("LiF")``.
    thicknesses : float or array-like  [Å]
        Slab thicknesses (≥ 0); all come from one eigen-decomposition.
    energy : float  [eV]
    direction : array-like (3,)
        Beam direction [uvw] in the cell's Cartesian frame (a zone axis such as (0, 1, 1), or any direction).
        The lab frame puts it along +z (``structures.crystals.rotation_to_zone_axis``).
    g_max : float  [Å⁻¹]
        Largest |g| of the beams (and of the coupling). On the LiF [011] zone axis (the worst case: every
        zero-layer beam excited) I111/I200 with 2 Å⁻¹ is within 1.4 % (2.3 nm) / 3.4 % (9.1 nm) of 3 Å⁻¹.
    sg_max : float  [Å⁻¹]
        Largest |excitation error| of the beams.
    occupancy, displacement, charges, parametrization
        As in :func:`structure_factors` (occupancy [1], displacement [Å], charges [e]).

    Returns
    -------
    SlabBeams
    """
    e = check_energy(energy)
    t = _check_thicknesses(thicknesses)
    gm = check_positive("g_max", g_max, "Å⁻¹")
    sm = check_positive("sg_max", sg_max, "Å⁻¹")
    rot = _direction_rotation(direction)
    lat = _Lattice(atoms, gm, e, [occupancy], displacement, charges, parametrization)
    g_lab = lat.g @ rot.T
    s = -g_lab[:, 2] - 0.5 * lat.lam * lat.g2
    idx = np.flatnonzero(np.abs(s) <= sm)
    idx = np.concatenate([[0], idx[idx != 0]])
    A = lat.u_matrix(idx, 0)
    np.fill_diagonal(A, 2.0 / lat.lam * s[idx])
    inten = _propagate(A, lat.lam, t)
    return SlabBeams(
        hkl=lat.hkl[idx],
        g=g_lab[idx],
        q_xy=g_lab[idx][:, [1, 0]],
        excitation_error=s[idx],
        thickness=t,
        intensity=inten,
    )


# --------------------------------------------------------------------------------------------------------------
# orientation averages
# --------------------------------------------------------------------------------------------------------------
def _single_thread():
    """BLAS limited to one thread around the many small eigen-problems (spinning threads slow them down)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _accumulate(lat, dirs, gz_all, sm, qq, step, t, hist, direct):
    """Add the beams of every direction to the linear-binned histograms hist (n_occ, n_t, n_q) and direct."""
    for k in range(dirs.shape[0]):
        gz = gz_all[:, k]
        s = -gz - 0.5 * lat.lam * lat.g2
        idx = np.flatnonzero(np.abs(s) <= sm)
        idx = np.concatenate([[0], idx[idx != 0]])
        gxy = np.sqrt(np.clip(lat.g2[idx] - gz[idx] ** 2, 0.0, None))[1:]
        x = (gxy - qq[0]) / step
        i0 = np.floor(x).astype(np.int64)
        w1 = x - i0
        ok = (i0 >= 0) & (i0 + 1 < qq.size)
        i0, w1 = i0[ok], w1[ok]
        diag = 2.0 / lat.lam * s[idx]
        for m in range(hist.shape[0]):
            A = lat.u_matrix(idx, m)
            np.fill_diagonal(A, diag)
            inten = _propagate(A, lat.lam, t)
            direct[m] += inten[:, 0]
            w = inten[:, 1:][:, ok]
            for j in range(t.size):
                hist[m, j] += np.bincount(i0, w[j] * (1.0 - w1), minlength=qq.size)
                hist[m, j] += np.bincount(i0 + 1, w[j] * w1, minlength=qq.size)


def beam_directions(n: int, *, rng=None, symmetry: str | None = None) -> np.ndarray:
    """Beam directions sampling the unit sphere (or its cubic fundamental wedge) uniformly.

    Parameters
    ----------
    n : int
        Number of directions (≥ 1).
    rng : None, int or numpy.random.Generator
        None → a deterministic Fibonacci (golden-spiral) lattice; otherwise that lattice under a uniformly
        random rotation drawn with ``numpy.random.default_rng(rng)`` (randomised quasi-Monte Carlo: an unbiased
        sample whose orientation average converges much faster than independent random directions).
    symmetry : None or "m-3m"
        "m-3m": directions in the fundamental wedge 0 ≤ u_x ≤ u_y ≤ u_z of the cubic Laue group (1/48 of the
        sphere) — for a crystal with m-3m symmetry (rock salt, antifluorite, fcc, bcc in their cubic cells) the
        orientation average of any rotation-invariant quantity is the same, at 48× the sampling density.

    Returns
    -------
    ndarray, shape (n, 3)
        Unit vectors (crystal frame).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: give a positive integer number of directions")
    if symmetry is not None and symmetry != "m-3m":
        raise ValueError(f"symmetry={symmetry!r}: valid are None and 'm-3m'")
    if rng is not None:
        # randomised quasi-Monte Carlo: the Fibonacci lattice under a uniformly random rotation (unbiased, and
        # far less scattered than independent random directions), folded into the wedge when asked
        from structures.crystals import random_rotation

        u = beam_directions(n) @ random_rotation(np.random.default_rng(rng)).T
        return np.sort(np.abs(u), axis=1) if symmetry else u
    if symmetry is not None:
        u = beam_directions(48 * n + 96)
        return u[(u[:, 0] >= 0) & (u[:, 0] <= u[:, 1]) & (u[:, 1] <= u[:, 2])]
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5**0.5) * i
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _occupancy_list(occupancies):
    if occupancies is None or isinstance(occupancies, (Mapping, float, int)):
        return [occupancies], True
    if isinstance(occupancies, Sequence) and not isinstance(occupancies, str) and len(occupancies) > 0:
        return list(occupancies), False
    raise ValueError(f"occupancies={occupancies!r}: give None, one occupancy (dict/number) or a non-empty list")


def powder_rings(
    atoms,
    q,
    thicknesses,
    *,
    occupancies=None,
    energy: float = 300e3,
    n_orientations: int = 1000,
    directions=None,
    rng=None,
    symmetry: str | None = None,
    g_max: float = 2.0,
    sg_max: float = 0.05,
    displacement="default",
    charges=None,
    parametrization: str = "lobato",
) -> tuple[np.ndarray, np.ndarray]:
    """Orientation-averaged dynamical beam intensities of a slab as ring densities on a Q grid.

    Parameters
    ----------
    atoms : ase.Atoms
        One periodic cell (crystal frame).
    q : array-like, shape (n_q,)  [Å⁻¹]
        Uniform, increasing grid (≥ 0) of the ring density; spacing ≪ the probe's disc radius (e.g. 0.0005).
    thicknesses : float or array-like  [Å]
    occupancies : None, one occupancy (dict/number) or a list of them  [1]
        Site occupancies (see :func:`structure_factors`); a list gives one result per entry (the beam sets and
        eigen-problems of each orientation are shared bookkeeping, so a vacancy series costs little extra).
    energy : float  [eV]
    n_orientations : int
        Number of beam directions when ``directions`` is None.
    directions : array-like (n, 3) or None
        Beam directions (crystal frame); None → :func:`beam_directions` (``n_orientations``, ``rng``).
    rng : None, int or numpy.random.Generator
        None → Fibonacci directions; a seed → random directions.
    symmetry : None or "m-3m"
        Sample only the cubic fundamental wedge (see :func:`beam_directions`); for m-3m crystals only. Seeded
        random directions converge slowly (a reflection is excited in a minority of orientations: the scatter
        of one orientation's ring intensity is ≈ 1.6× its mean for LiF 200 at 1 nm, so 3000 directions leave
        ≈ 3 %); the Fibonacci wedge with 1000 directions agrees with 3000 to ≤ 3 % up to 10 nm.
    g_max, sg_max : float  [Å⁻¹]
        As in :func:`slab_beams`. Beams with |s_g| > ``sg_max`` are left out: a thin slab's kinematic tails
        beyond it are lost (≈ 10 % at s_max·t = 1), nearly equally for every reflection, so ring *ratios* keep
        and the overall scale (a free parameter of any fit) drops; 0.05 and 0.1 Å⁻¹ give LiF I111/I200 within
        1 %.
    displacement, charges, parametrization
        As in :func:`structure_factors`.

    Returns
    -------
    rings : ndarray, shape (n_occ, n_t, n_q) (the first axis dropped for a single occupancy)  [per Å⁻²]
        Isotropic 2-D intensity density I(|q|) (fraction of the incident beam per Å⁻², linear binning of the
        diffracted beams at |g_xy| with ∫ I 2πq dq = their mean total intensity), ready for
        :func:`simkit.kinematic.make_probe_convolution`. The direct beam is not included.
    direct : ndarray, shape (n_occ, n_t) (or (n_t,))  [fraction]
        Mean direct-beam intensity.
    """
    e = check_energy(energy)
    t = _check_thicknesses(thicknesses)
    qq = np.asarray(q, dtype=np.float64)
    if qq.ndim != 1 or qq.size < 3 or not np.all(np.isfinite(qq)) or qq[0] < 0:
        raise ValueError("q must be a 1-D finite grid of ≥ 3 values ≥ 0 [Å⁻¹]")
    dq = np.diff(qq)
    if not (np.all(dq > 0) and np.ptp(dq) <= 1e-6 * dq.mean()):
        raise ValueError("q must be uniformly spaced and increasing [Å⁻¹]")
    step = float(dq.mean())
    occ_list, single = _occupancy_list(occupancies)
    if directions is None:
        dirs = beam_directions(n_orientations, rng=rng, symmetry=symmetry)
    else:
        dirs = np.asarray(directions, float)
    if dirs.ndim != 2 or dirs.shape[1] != 3 or not np.all(np.isfinite(dirs)) or dirs.shape[0] == 0:
        raise ValueError(f"directions has shape {dirs.shape}: give finite unit vectors of shape (n, 3)")
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    gm = check_positive("g_max", g_max, "Å⁻¹")
    sm = check_positive("sg_max", sg_max, "Å⁻¹")
    lat = _Lattice(atoms, gm, e, occ_list, displacement, charges, parametrization)
    n_occ = len(occ_list)
    hist = np.zeros((n_occ, t.size, qq.size))
    direct = np.zeros((n_occ, t.size))
    gz_all = lat.g @ dirs.T  # (n_g, n_dir): g·u = g_z in the lab frame
    with _single_thread():
        _accumulate(lat, dirs, gz_all, sm, qq, step, t, hist, direct)
    n = dirs.shape[0]
    hist /= n
    direct /= n
    # ring density: a hat function at node q_k integrates to 2π q_k Δq over the plane (q_0 = 0: π Δq²/3)
    area = 2 * np.pi * qq * step
    if qq[0] == 0:
        area[0] = np.pi * step**2 / 3.0
    rings = hist / area
    if single:
        return rings[0], direct[0]
    return rings, direct


def powder_profiles(
    atoms,
    thicknesses,
    *,
    semiangle: float,
    energy: float = 300e3,
    geometry: DetectorGeometry | None = None,
    occupancies=None,
    q_step: float = 0.0005,
    q_max: float | None = None,
    n_orientations: int = 1000,
    directions=None,
    rng=None,
    symmetry: str | None = None,
    g_max: float = 2.0,
    sg_max: float = 0.05,
    displacement="default",
    charges=None,
    parametrization: str = "lobato",
    convolution=None,
    **plan_kwargs,
):
    """Radial profiles (through :mod:`simkit.radial`) of orientation-averaged dynamical slab patterns.

    Parameters
    ----------
    atoms : ase.Atoms
        One periodic cell (crystal frame).
    thicknesses : float or array-like  [Å]
    semiangle : float  [mrad]
        Probe semi-angle; every beam is a uniform disc of radius α/λ.
    energy : float  [eV]
    geometry : DetectorGeometry or None
        The data's detector (None → the default of ``make_probe_convolution``).
    occupancies : None, one occupancy or a list  [1]
        As in :func:`powder_rings`.
    q_step : float  [Å⁻¹]
        Spacing of the ring-density grid (≪ α/λ).
    q_max : float or None  [Å⁻¹]
        Largest ring radius; None → the detector's corner (or 1.5 Å⁻¹ without geometry).
    n_orientations, directions, rng, symmetry, g_max, sg_max, displacement, charges, parametrization
        As in :func:`powder_rings`.
    convolution : simkit.kinematic.ProbeConvolution or None
        A plan to reuse (its grid must be ``arange(0, q_max + q_step/2, q_step)``); None → planned here.
    **plan_kwargs
        Keywords of :func:`simkit.radial.make_plan_from_geometry` (``edges``, ``n_bins``, ``mask`` …) when the
        plan is made here.

    Returns
    -------
    profiles : simkit.radial.RadialProfiles
        ``mean`` of shape (n_occ, n_t, n_q) (first axis dropped for one occupancy) [fraction of the incident beam
        per Å⁻², pixel-averaged; × ``geometry.pixel_size**2`` → per pixel]; ``fitting.model.Component(q=...,
        intensity=mean[i, j])`` makes a fit component.
    direct : ndarray  [fraction]
        Mean direct-beam intensity (not drawn).
    convolution : simkit.kinematic.ProbeConvolution
        The plan (reuse it for further calls on the same detector).
    """
    if convolution is None:
        if q_max is None:
            if geometry is None:
                q_max = 1.5
            else:
                ny, nx = geometry.shape
                cy, cx = geometry.center
                corner = max(math.hypot(y - cy, x - cx) for y in (-0.5, ny - 0.5) for x in (-0.5, nx - 0.5))
                q_max = corner * geometry.pixel_size
        step = check_positive("q_step", q_step, "Å⁻¹")
        qgrid = np.arange(0.0, check_positive("q_max", q_max, "Å⁻¹") + 0.5 * step, step)
        convolution = make_probe_convolution(
            qgrid, semiangle=semiangle, energy=energy, geometry=geometry, **plan_kwargs
        )
    elif not (math.isclose(convolution.semiangle, semiangle) and math.isclose(convolution.energy, energy)):
        raise ValueError(
            f"convolution was planned for {convolution.semiangle} mrad, {convolution.energy} eV; "
            f"got semiangle={semiangle!r}, energy={energy!r}"
        )
    rings, direct = powder_rings(
        atoms,
        convolution.q,
        thicknesses,
        occupancies=occupancies,
        energy=energy,
        n_orientations=n_orientations,
        directions=directions,
        rng=rng,
        symmetry=symmetry,
        g_max=g_max,
        sg_max=sg_max,
        displacement=displacement,
        charges=charges,
        parametrization=parametrization,
    )
    return convolution(rings), direct, convolution


def spot_pattern(
    beams: SlabBeams,
    geometry: DetectorGeometry,
    *,
    semiangle: float,
    energy: float = 300e3,
    thickness_index: int = 0,
    azimuth: float = 0.0,
    include_direct: bool = False,
    oversample: int = 8,
) -> np.ndarray:
    """Draw the beams of one slab orientation as uniform probe discs on a detector.

    Parameters
    ----------
    beams : SlabBeams
    geometry : DetectorGeometry
    semiangle : float  [mrad]
        Disc radius α/λ.
    energy : float  [eV]
    thickness_index : int
        Which row of ``beams.intensity``.
    azimuth : float  [rad]
        In-plane rotation of the pattern about the beam.
    include_direct : bool
        Draw the direct beam too.
    oversample : int
        Sub-pixels per pixel side (``simkit.kinematic.render_discs``).

    Returns
    -------
    ndarray, shape ``geometry.shape``  [fraction of the incident beam per pixel]
    """
    if not isinstance(beams, SlabBeams):
        raise TypeError(f"beams={type(beams).__name__}: expected SlabBeams from slab_beams")
    if not (
        isinstance(thickness_index, (int, np.integer))
        and -beams.thickness.size <= thickness_index < beams.thickness.size
    ):
        raise ValueError(f"thickness_index={thickness_index!r}: beams hold {beams.thickness.size} thicknesses")
    c, s = math.cos(azimuth), math.sin(azimuth)
    qy, qx = beams.q_xy[:, 0], beams.q_xy[:, 1]
    q_xy = np.stack([s * qx + c * qy, c * qx - s * qy], axis=1)
    w = beams.intensity[thickness_index].copy()
    if not include_direct:
        w[0] = 0.0
    return render_discs(geometry, q_xy, w, disc_radius(semiangle, energy), oversample=oversample)
