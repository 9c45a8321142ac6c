"""Tests of simkit.kinematic: physics oracles (analytic factors, Mott–Bethe, Debye forms, Bragg positions,
conservation, brute-force 2-D convolution), fast kernels against tests/reference.py, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from simkit import kinematic as K
from simkit.geometry import DetectorGeometry
from simkit.radial import make_plan_from_geometry, weight_qn
from simkit.units import wavelength
from tests import reference as ref

E0 = 300e3  # eV
A_LIF = 4.027  # Å, room-temperature LiF (shared/README reference table)
Q_LIF = {"111": 0.430, "200": 0.497, "220": 0.702}  # Å⁻¹, shared/README reference table


def lif_sphere(diameter: float, zone=(0, 0, 1)) -> tuple[Atoms, np.ndarray]:
    """LiF sphere (rock salt, a = 4.027 Å) cut around a Li site with [uvw] along +z, in a vacuum box (pbc True,
    as structures builders return); also its lattice vectors (rows) in that frame."""
    cell = bulk("LiF", "rocksalt", a=A_LIF, cubic=True)
    n = int(math.ceil(diameter / A_LIF)) + 2
    big = cell.repeat((2 * n, 2 * n, 2 * n))
    big.translate(-n * A_LIF * np.ones(3))
    keep = np.linalg.norm(big.positions, axis=1) <= diameter / 2
    atoms = big[keep]
    v = np.asarray(zone, float) / np.linalg.norm(zone)
    ref_axis = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = ref_axis - (ref_axis @ v) * v
    e1 /= np.linalg.norm(e1)
    rot = np.vstack([e1, np.cross(v, e1), v])  # r_lab = rot @ r_crystal
    atoms.positions = atoms.positions @ rot.T
    box = diameter + 12.0
    atoms.cell = [box, box, box]
    atoms.positions += box / 2
    atoms.pbc = True
    return atoms, A_LIF * rot.T


def local_maxima(x, y):
    i = np.flatnonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:])) + 1
    return x[i], y[i]


def parabolic_peak(x, y):
    i = int(np.nanargmax(y))
    c = np.polyfit(x[i - 2 : i + 3] - x[i], y[i - 2 : i + 3], 2)
    return x[i] - c[1] / (2 * c[0])


# ----------------------------------------------------------------------------------------------------------
# scattering factors
# ----------------------------------------------------------------------------------------------------------
def test_mott_bethe_constant_matches_international_tables():
    # International Tables C §4.3.1: f_e(s) = 0.023934 (Z − f_x)/s² Å with s = sinθ/λ = Q/2 → 4 × 0.023934 in Q.
    assert K.MOTT_BETHE == pytest.approx(4 * 0.023934, rel=2e-5)


def test_factors_equal_abtem_callables():
    # abTEM's Parametrization.scattering_factor(symbol) takes k² with k = 1/d (= Q); parameters in float32 there
    from abtem.parametrizations import KirklandParametrization, LobatoParametrization

    q = np.linspace(0.0, 4.0, 81)
    for name, par in (("lobato", LobatoParametrization()), ("kirkland", KirklandParametrization())):
        for symbol in ("H", "Li", "C", "O", "F", "S", "Cu", "Au"):
            want = par.scattering_factor(symbol)(q**2)
            np.testing.assert_allclose(K.scattering_factor(symbol, q, parametrization=name), want, rtol=1e-5)


@pytest.mark.parametrize("parametrization", ["lobato", "kirkland"])
def test_hydrogen_matches_exact_born_factor(parametrization):
    q = np.linspace(0.0, 3.0, 61)
    f = K.scattering_factor("H", q, parametrization=parametrization)
    exact = ref.hydrogen_electron_factor(q)
    assert f[0] == pytest.approx(0.529177, rel=2e-3)  # f_e(0) = a₀ for hydrogen
    np.testing.assert_allclose(f, exact, rtol=1e-2)


@pytest.mark.parametrize("parametrization", ["lobato", "kirkland"])
@pytest.mark.parametrize("symbol", ["Li", "C", "O", "F", "S", "Cu"])
def test_electron_factors_agree_with_mott_bethe_of_independent_xray_factors(symbol, parametrization):
    from ase.data import atomic_numbers

    q = np.linspace(0.3, 2.0, 35)
    fe = K.scattering_factor(symbol, q, parametrization=parametrization)
    fx = K.xray_scattering_factor(symbol, q)  # Waasmaier–Kirfel (1995), an independent Hartree–Fock fit
    assert K.xray_scattering_factor(symbol, 0.0) == pytest.approx(atomic_numbers[symbol], rel=1e-3)
    np.testing.assert_allclose(fe, K.mott_bethe(atomic_numbers[symbol], fx, q), rtol=0.03)


@pytest.mark.parametrize(("symbol", "charge", "key"), [("Li", 1, "Li+"), ("F", -1, "F-"), ("O", -2, "O--")])
def test_ionic_factors_coulomb_tail_and_peng_1998(symbol, charge, key):
    # Coulomb tail: f·Q² → 0.095736·z as Q → 0
    q0 = np.array([0.004])
    f0 = K.scattering_factor(symbol, q0, charge=charge)
    assert f0[0] * q0[0] ** 2 == pytest.approx(K.MOTT_BETHE * charge, rel=0.01)
    # independent electron factors of ions (Peng 1998) at the Q of SEI reflections and beyond
    q = np.linspace(0.4, 2.0, 17)
    np.testing.assert_allclose(
        K.scattering_factor(symbol, q, charge=charge), ref.peng_ionic_electron_factor(key, charge, q), rtol=0.06
    )
    # the ion differs from the neutral atom at small Q and converges to it at large Q
    assert abs(K.scattering_factor(symbol, 0.2, charge=charge) - K.scattering_factor(symbol, 0.2)) > 0.05
    assert K.scattering_factor(symbol, 4.0, charge=charge) == pytest.approx(K.scattering_factor(symbol, 4.0), rel=5e-3)


def test_lif_111_depends_on_ionicity():
    q = np.array([Q_LIF["111"]])
    neutral = K.scattering_factor("Li", q) - K.scattering_factor("F", q)
    ionic = K.scattering_factor("Li", q, charge=1) - K.scattering_factor("F", q, charge=-1)
    assert abs(ionic[0] - neutral[0]) / abs(neutral[0]) > 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"symbol": "Xx", "q": [0.1]}, "unknown element"),
        ({"symbol": "X", "q": [0.1]}, "unknown element"),
        ({"symbol": 0, "q": [0.1]}, "atomic number"),
        ({"symbol": "Li", "q": [-0.1]}, ">= 0"),
        ({"symbol": "Li", "q": [np.nan]}, "finite"),
        ({"symbol": "Li", "q": []}, "empty"),
        ({"symbol": "Li", "q": [0.1], "parametrization": "doyle"}, "parametrization"),
        ({"symbol": "Li", "q": [0.1], "charge": 0.5}, "integer"),
        ({"symbol": "S", "q": [0.1], "charge": -2}, "available"),
        ({"symbol": "F", "q": [0.0, 0.1], "charge": -1}, "diverge"),
    ],
)
def test_scattering_factor_bad_input(kwargs, match):
    symbol = kwargs.pop("symbol")
    q = kwargs.pop("q")
    with pytest.raises(ValueError, match=match):
        K.scattering_factor(symbol, q, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Debye scattering
# ----------------------------------------------------------------------------------------------------------
def test_debye_diatomic_analytic():
    q = np.linspace(0.0, 3.0, 301)
    d = 2.0137  # Å, not on a histogram node
    atoms = Atoms("F2", positions=[[0, 0, 0], [0, 0, d]])
    f = K.scattering_factor("F", q)
    x = 2 * np.pi * q * d
    sinc = np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1), 1.0)
    analytic = f**2 * (1 + sinc)  # = 2 f²(1 + sinc) / N with N = 2
    delta = 0.002
    bound = f**2 * (2 * np.pi * q * delta) ** 2 / 24
    got = K.debye_intensity(atoms, q, bin_width=delta)
    assert np.all(np.abs(got - analytic) <= bound + 1e-12)
    # hetero-nuclear pair
    atoms = Atoms("LiF", positions=[[0, 0, 0], [1.1, 1.2, 0.9]])
    d = np.linalg.norm([1.1, 1.2, 0.9])
    fl, ff = K.scattering_factor("Li", q), K.scattering_factor("F", q)
    x = 2 * np.pi * q * d
    sinc = np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1), 1.0)
    np.testing.assert_allclose(
        K.debye_intensity(atoms, q), (fl**2 + ff**2 + 2 * fl * ff * sinc) / 2, rtol=0, atol=1e-4 * fl[0] * ff[0]
    )


def _random_cluster(rng, n=300, edge=16.0):
    symbols = rng.choice(["Li", "O", "F"], size=n)
    return Atoms(list(symbols), positions=rng.uniform(0, edge, (n, 3)))


@pytest.mark.parametrize("delta", [0.002, 0.01, 0.03])
def test_debye_histogram_within_stated_bin_error(rng, delta):
    atoms = _random_cluster(rng)
    q = np.linspace(0.0, 2.5, 126)
    f = np.array([K.scattering_factor(s, q) for s in atoms.get_chemical_symbols()])
    exact = ref.debye_exact(atoms.positions, f, q)
    got = K.debye_intensity(atoms, q, bin_width=delta)
    n = len(atoms)
    abs_f = np.abs(f)
    pair_sum = (abs_f.sum(0) ** 2 - (abs_f**2).sum(0)) / n  # (1/N) Σ_{i≠j} |f_i f_j|
    bound = pair_sum * (2 * np.pi * q * delta) ** 2 / 24
    assert np.all(np.abs(got - exact) <= bound + 1e-9)
    if delta == 0.03:  # the error is second order in δ: 15× coarser bins, ≳ 100× larger error
        fine = K.debye_intensity(atoms, q, bin_width=0.002)
        assert np.max(np.abs(got - exact)) > 100 * np.max(np.abs(fine - exact))


def test_debye_periodic_box_matches_reference_twin(rng):
    n, edge = 300, 15.0
    symbols = rng.choice(["Li", "F"], size=n)
    atoms = Atoms(list(symbols), positions=rng.uniform(0, edge, (n, 3)), cell=[edge, edge, 16.0], pbc=True)
    q = np.linspace(0.05, 2.0, 79)
    f = np.array([K.scattering_factor(s, q) for s in symbols])
    delta = 0.002
    for window in ("lorch", None):
        got = K.debye_intensity(atoms, q, bin_width=delta, window=window)
        want = ref.debye_periodic_exact(atoms.positions, f, symbols, [edge, edge, 16.0], q, window=window is not None)
        tol = np.mean(f**2, axis=0) * 2e-3  # bin error plus the twin's quadrature of the uniform term
        np.testing.assert_array_less(np.abs(got - want), tol)
    # triclinic cell takes the general minimum-image path and agrees with the same box written obliquely
    oblique = atoms.copy()
    oblique.set_cell([[edge, 0, 0], [edge, edge, 0], [0, 0, 16.0]], scale_atoms=False)
    np.testing.assert_allclose(
        K.debye_intensity(oblique, q, bin_width=delta, periodic=True),
        K.debye_intensity(atoms, q, bin_width=delta),
        rtol=1e-9,
    )


@pytest.mark.slow
def test_debye_large_models_match_exact_double_sum(rng):
    # heavy variant of the 300-atom checks: 3,000 atoms, open and periodic, default bin
    n, edge = 3000, 32.0
    symbols = rng.choice(["Li", "O", "F"], size=n)
    atoms = Atoms(list(symbols), positions=rng.uniform(0, edge, (n, 3)))
    q = np.linspace(0.05, 2.0, 40)
    f = np.array([K.scattering_factor(s, q) for s in symbols])
    exact = ref.debye_exact(atoms.positions, f, q)
    np.testing.assert_allclose(K.debye_intensity(atoms, q), exact, rtol=1e-5)
    atoms.cell = [edge] * 3
    atoms.pbc = True
    want = ref.debye_periodic_exact(atoms.positions, f, symbols, [edge] * 3, q)
    np.testing.assert_array_less(np.abs(K.debye_intensity(atoms, q) - want), 2e-3 * np.mean(f**2, axis=0))


def test_debye_ideal_gas_has_no_small_q_artefact(rng):
    # Uniform random (Poisson) positions in a periodic box: S(Q) = 1, so I(Q) = ⟨f²⟩; without the uniform-density
    # subtraction the cut-off sphere would add a peak of order N⟨f⟩² at small Q.
    n, edge = 2000, 30.0
    symbols = rng.choice(["Li", "F"], size=n)
    atoms = Atoms(list(symbols), positions=rng.uniform(0, edge, (n, 3)), cell=[edge] * 3, pbc=True)
    q = np.linspace(0.1, 2.0, 96)
    i = K.debye_intensity(atoms, q)
    f2 = np.mean([K.scattering_factor(s, q) ** 2 for s in symbols], axis=0)
    s = i / f2
    assert abs(np.mean(s) - 1) < 0.05
    assert np.max(np.abs(s - 1)) < 0.35


def test_debye_periodic_default_detects_vacuum_box():
    atoms, _ = lif_sphere(14.0)  # pbc True, 6 Å of vacuum on each side
    q = np.linspace(0.1, 1.0, 10)
    np.testing.assert_array_equal(K.debye_intensity(atoms, q), K.debye_intensity(atoms, q, periodic=False))


def test_debye_lif_nanocrystal_bragg_maxima():
    atoms, _ = lif_sphere(36.0)
    q = np.linspace(0.3, 0.8, 501)
    i = K.debye_intensity(atoms, q)
    qm, im = local_maxima(q, i)
    strong = qm[im > 0.1 * im.max()]
    for hkl, q_hkl in Q_LIF.items():
        # finite-size shift of a 3.6 nm sphere (width ≈ 1/D ≈ 0.03 Å⁻¹ on a sloping f²/Q² background): < 0.006
        assert np.min(np.abs(strong - q_hkl)) < 0.006, (hkl, strong)


def test_debye_displacement_damps_distinct_terms_only():
    atoms = Atoms("F2", positions=[[0, 0, 0], [0, 0, 1.5]])
    q = np.linspace(0.0, 2.0, 41)
    sigma = 0.1
    f = K.scattering_factor("F", q)
    x = 2 * np.pi * q * 1.5
    sinc = np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1), 1.0)
    want = f**2 * (1 + sinc * np.exp(-4 * np.pi**2 * q**2 * sigma**2))
    np.testing.assert_allclose(K.debye_intensity(atoms, q, displacement_rms=sigma), want, rtol=2e-4)


def test_debye_charges_dict_and_array_agree():
    atoms, _ = lif_sphere(10.0)
    q = np.linspace(0.2, 1.5, 27)
    by_dict = K.debye_intensity(atoms, q, charges={"Li": 1, "F": -1})
    by_atom = K.debye_intensity(atoms, q, charges=[1 if s == "Li" else -1 for s in atoms.get_chemical_symbols()])
    np.testing.assert_array_equal(by_dict, by_atom)
    assert not np.allclose(by_dict, K.debye_intensity(atoms, q))


def test_partial_structure_factors_diatomic_and_recombination(rng):
    q = np.linspace(0.0, 2.0, 41)
    d = 1.57
    s = K.partial_structure_factors(Atoms("LiF", positions=[[0, 0, 0], [0, 0, d]]), q)
    x = 2 * np.pi * q * d
    sinc = np.where(x > 0, np.sin(x) / np.where(x > 0, x, 1), 1.0)
    np.testing.assert_allclose(s[("F", "Li")], 1 + 2 * sinc, atol=1e-4)  # N/(N_a N_b) = 2, one ordered pair
    np.testing.assert_allclose(s[("F", "F")], 1.0)
    # Faber–Ziman recombination reproduces the Debye intensity of a periodic box; ideal gas → S_ab ≈ 1
    n, edge = 1200, 24.0
    symbols = rng.choice(["Li", "F"], size=n)
    atoms = Atoms(list(symbols), positions=rng.uniform(0, edge, (n, 3)), cell=[edge] * 3, pbc=True)
    q = np.linspace(0.1, 2.0, 39)
    parts = K.partial_structure_factors(atoms, q)
    c = {e: np.mean(symbols == e) for e in ("F", "Li")}
    f = {e: K.scattering_factor(e, q) for e in ("F", "Li")}
    total = sum(c[e] * f[e] ** 2 for e in c)
    for a, b in (("F", "F"), ("F", "Li"), ("Li", "Li")):
        total = total + (1 if a == b else 2) * c[a] * c[b] * f[a] * f[b] * (parts[(a, b)] - 1)
        assert abs(np.mean(parts[(a, b)]) - 1) < 0.1
    np.testing.assert_allclose(total, K.debye_intensity(atoms, q), rtol=1e-10)


def test_debye_seeded_runs_repeat():
    q = np.linspace(0.05, 2.0, 50)
    a = K.debye_intensity(_random_cluster(np.random.default_rng(7), n=500), q)
    b = K.debye_intensity(_random_cluster(np.random.default_rng(7), n=500), q)
    np.testing.assert_array_equal(a, b)


def test_pair_kernel_identical_without_jit(rng):
    n = 40
    pos = rng.uniform(0, 8.0, (n, 3))
    starts = np.array([0, 13, 30, n], np.int64)  # three species blocks
    pair_index = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]], np.int32)
    cell = np.array([[8.0, 0, 0], [1.0, 8.0, 0], [0, 0, 8.0]])
    for mode in (0, 1, 2):
        r_cut = 1e300 if mode == 0 else 4.0
        args = (pos, starts, pair_index, 6, 500.0, 8000, mode, np.full(3, 8.0), cell, np.linalg.inv(cell), r_cut, 3)
        fast = K._pair_histogram_kernel(*args)
        slow = getattr(K._pair_histogram_kernel, "py_func", K._pair_histogram_kernel)(*args)  # plain Python
        np.testing.assert_array_equal(fast, slow)
        assert fast.sum() > 0
    hist = np.random.default_rng(1).random((50, 3))
    r = np.arange(50) * 0.1
    q = np.linspace(0, 2, 7)
    direct = K._sinc_sums(hist, r, q)
    np.testing.assert_allclose(direct, getattr(K._sinc_sums, "py_func", K._sinc_sums)(hist, r, q), rtol=1e-14)
    # the blocked (BLAS) evaluation used by debye_intensity gives the same sums
    np.testing.assert_allclose(K._sinc_sums_blocked(np.ascontiguousarray(hist.T), 0.1, q), direct, rtol=1e-10)


@pytest.mark.parametrize(
    ("q", "match"),
    [
        (np.zeros((2, 3)), "1-D"),
        ([0.3, 0.2], "increasing"),
        ([-0.1, 0.2], ">= 0"),
        ([0.1, 0.1], "increasing"),
    ],
)
def test_debye_bad_q(q, match):
    with pytest.raises(ValueError, match=match):
        K.debye_intensity(Atoms("F2", positions=[[0, 0, 0], [0, 0, 1.4]]), q)


def test_debye_bad_input():
    q = np.linspace(0.1, 1, 5)
    with pytest.raises(ValueError, match="empty"):
        K.debye_intensity(Atoms(), q)
    with pytest.raises(TypeError, match="ase.Atoms"):
        K.debye_intensity(np.zeros((3, 3)), q)
    with pytest.raises(ValueError, match="unknown element"):
        K.debye_intensity(Atoms("X2", positions=[[0, 0, 0], [0, 0, 1]]), q)
    with pytest.raises(ValueError, match="bin_width"):
        K.debye_intensity(Atoms("F2", positions=[[0, 0, 0], [0, 0, 1]]), q, bin_width=0)
    with pytest.raises(ValueError, match="charges"):
        K.debye_intensity(Atoms("F2", positions=[[0, 0, 0], [0, 0, 1]]), q, charges=[1])
    with pytest.raises(ValueError, match="periodic"):
        K.debye_intensity(Atoms("F2", positions=[[0, 0, 0], [0, 0, 1]]), q, periodic=True)


# ----------------------------------------------------------------------------------------------------------
# spot patterns
# ----------------------------------------------------------------------------------------------------------
def test_disc_radius_is_semiangle_over_wavelength():
    assert wavelength(E0) == pytest.approx(0.019687, rel=1e-4)  # 300 kV electron wavelength (literature)
    assert K.disc_radius(2.0, E0) == pytest.approx(2e-3 / 0.019687, rel=1e-4)
    geo = DetectorGeometry(shape=(101, 101), pixel_size=0.005)
    img = K.render_discs(geo, [[0.0012, -0.0021]], [3.0], K.disc_radius(2.0, E0))
    cy = geo.center[0] + 0.0012 / 0.005
    cx = geo.center[1] - 0.0021 / 0.005
    r_px = ref.disc_second_moment_radius(img, (cy, cx))
    assert r_px * 0.005 == pytest.approx(K.disc_radius(2.0, E0), rel=0.01)
    assert img.sum() == pytest.approx(3.0, rel=1e-12)


def _spot_families(spots, rel=1e-3):
    strong = spots.intensity > rel * spots.intensity.max()
    d = 1.0 / np.linalg.norm(spots.g[strong], axis=1)
    fam = {tuple(sorted(np.abs(h))) for h in spots.hkl[strong]}
    return fam, d


@pytest.mark.parametrize(
    ("zone", "families", "absent"),
    [((0, 0, 1), {(0, 0, 2), (0, 2, 2)}, (1, 1, 1)), ((0, 1, 1), {(1, 1, 1), (0, 0, 2), (0, 2, 2)}, None)],
)
def test_lif_zone_axis_spots(zone, families, absent):
    atoms, lattice = lif_sphere(24.0, zone)
    spots = K.kinematic_spots(atoms, energy=E0, q_max=0.75, lattice=lattice)
    fam, _ = _spot_families(spots)
    assert fam == families
    if absent is not None:
        assert absent not in fam
    # positions on a detector with 0.15 mrad discs: centroid of each disc within one pixel of Q = 1/d
    geo = DetectorGeometry(shape=(320, 320), pixel_size=0.005)
    img = K.spot_pattern(atoms, geo, semiangle=0.15, energy=E0, lattice=lattice, q_max=0.75)
    qy, qx = geo.q_grid()
    strong = spots.intensity > 1e-3 * spots.intensity.max()
    for g_xy, g in zip(spots.q_xy[strong], spots.g[strong]):
        win = np.hypot(qy - g_xy[0], qx - g_xy[1]) < 0.02
        cqy = np.sum(img[win] * qy[win]) / img[win].sum()
        cqx = np.sum(img[win] * qx[win]) / img[win].sum()
        hkl_q = np.linalg.norm(g)  # Q = 1/d of the reflection
        assert abs(math.hypot(cqy, cqx) - hkl_q) < geo.pixel_size
    # the radial profile through simkit.radial: 200 and 220 present, 111 only along [011]
    plan = make_plan_from_geometry(geo, q_max=0.75)
    prof = plan.integrate(img)

    def ring(q0):
        sel = np.abs(prof.q - q0) < 0.006
        return np.nansum(prof.sum[sel])

    assert ring(Q_LIF["200"]) > 0 and ring(Q_LIF["220"]) > 0
    if zone == (0, 0, 1):
        assert ring(Q_LIF["111"]) < 1e-6 * ring(Q_LIF["200"])
    else:
        assert ring(Q_LIF["111"]) > 0.01 * ring(Q_LIF["200"])


def test_centring_absences_survive_vacancies_and_keep_weak_allowed_reflections():
    from structures import crystals

    # F vacancies (30 %) and static displacements keep the F-centring: no 100/110 "reflections"
    atoms = crystals.nanocrystal("LiF", 24.0, orientation=(0, 0, 1), f_vacancy=0.3, displacement_rms=0.05, rng=3)
    lattice = atoms.info["a"] * np.asarray(atoms.info["orientation"]).T
    fam, _ = _spot_families(K.kinematic_spots(atoms, energy=E0, q_max=0.75, lattice=lattice), rel=0.0)
    assert fam == {(0, 0, 2), (0, 2, 2)}
    # the builder's info (a, orientation) supplies the same lattice when none is given
    same = K.kinematic_spots(atoms, energy=E0, q_max=0.75)
    np.testing.assert_allclose(
        np.sort(np.linalg.norm(same.g, axis=1)),
        np.sort(np.linalg.norm(K.kinematic_spots(atoms, energy=E0, q_max=0.75, lattice=lattice).g, axis=1)),
    )
    # antifluorite Li2O: 200 is allowed but very weak, F(200) = 4 f_O − 8 f_Li (slab of one cell)
    cell = crystals.bulk("Li2O", temperature="room")
    spots = K.kinematic_spots(cell, energy=E0, q_max=0.7, thickness=40.0, excitation_error=1.0)
    k = [i for i, h in enumerate(spots.hkl) if tuple(h) == (2, 0, 0)][0]
    g = np.linalg.norm(spots.g[k])
    x = np.pi * spots.excitation_error[k] * 40.0
    f200 = 4 * K.scattering_factor("O", g) - 8 * K.scattering_factor("Li", g)
    amplitude = wavelength(E0) * (1 + E0 / 510998.95) * f200 * 40.0 / np.linalg.det(cell.cell.array)
    want = amplitude**2 * (np.sin(x) / x) ** 2
    assert spots.intensity[k] == pytest.approx(want, rel=1e-10)
    assert spots.intensity[k] < 1e-2 * spots.intensity.max()


def test_slab_spot_intensities_match_rock_salt_structure_factors():
    # one conventional cell of a laterally infinite [011] slab: fraction (λγ|F|t/a³)² sinc²(π s t),
    # F(111) = 4(f_Li − f_F), F(200) = 4(f_Li + f_F) (shared/README), f at |g|
    cell = bulk("LiF", "rocksalt", a=A_LIF, cubic=True)
    cell.rotate([0, 1, 1], "z", rotate_cell=True)
    t = 50.0
    spots = K.kinematic_spots(cell, energy=E0, q_max=0.75, thickness=t, excitation_error=1.0)
    gamma = 1 + E0 / 510998.95
    for hkl, sign in (((1, 1, -1), -1), ((2, 0, 0), 1), ((0, 2, -2), 1)):
        k = [i for i, h in enumerate(spots.hkl) if tuple(h) == hkl][0]
        g = np.linalg.norm(spots.g[k])
        f_li, f_f = K.scattering_factor("Li", g), K.scattering_factor("F", g)
        x = np.pi * spots.excitation_error[k] * t
        amplitude = wavelength(E0) * gamma * 4 * (f_li + sign * f_f) * t / A_LIF**3
        assert spots.intensity[k] == pytest.approx(amplitude**2 * (np.sin(x) / x) ** 2, rel=1e-10)


def _lif_011_orthorhombic():
    """LiF in an orthorhombic cell (a, a√2, a√2) with [011] along z (for abTEM, which needs axis-aligned cells)."""
    from ase.build import make_supercell

    cell = make_supercell(bulk("LiF", "rocksalt", a=A_LIF, cubic=True), [[1, 0, 0], [0, 1, -1], [0, 1, 1]])
    rot = np.array([[1, 0, 0], [0, 1 / np.sqrt(2), -1 / np.sqrt(2)], [0, 1 / np.sqrt(2), 1 / np.sqrt(2)]])
    cell.positions = cell.positions @ rot.T
    cell.set_cell(np.diag([A_LIF, A_LIF * np.sqrt(2), A_LIF * np.sqrt(2)]), scale_atoms=False)
    cell.wrap()
    return cell


def _multislice_vs_kinematic(n_z):
    """I111, I200 (fractions of the incident plane wave) of an [011] LiF slab of n_z cells: abTEM vs kinematic."""
    import abtem

    cell = _lif_011_orthorhombic()
    slab = cell.repeat((1, 1, n_z))  # lateral period = the cell: every reflection lands on a Fourier pixel
    potential = abtem.Potential(slab, sampling=0.04, slice_thickness=A_LIF * np.sqrt(2) / 4, parametrization="lobato")
    dp = abtem.PlaneWave(energy=E0).multislice(potential).diffraction_patterns(max_angle=None).compute()
    arr = np.asarray(dp.array)  # abTEM order (x, y), zero frequency at n // 2
    sx, sy = dp.sampling
    g = {"111": (1 / A_LIF, np.sqrt(2) / A_LIF), "200": (2 / A_LIF, 0.0)}
    ms = {k: arr[arr.shape[0] // 2 + round(v[0] / sx), arr.shape[1] // 2 + round(v[1] / sy)] for k, v in g.items()}
    t = n_z * A_LIF * np.sqrt(2)
    spots = K.kinematic_spots(slab, energy=E0, q_max=0.6, thickness=t, excitation_error=1.0)
    kin = {}
    for k, v in g.items():
        d = np.hypot(spots.g[:, 0] - v[0], spots.g[:, 1] - v[1]) + np.abs(spots.g[:, 2])
        kin[k] = spots.intensity[np.argmin(d)]
    return t, ms, kin


def test_thin_lif_slab_kinematic_agrees_with_abtem_multislice():
    # 1.1 nm [011] slab, plane wave: kinematic theory holds, so absolute intensities and I111/I200 agree
    t, ms, kin = _multislice_vs_kinematic(2)
    assert ms["200"] == pytest.approx(kin["200"], rel=0.1)
    assert ms["111"] / ms["200"] == pytest.approx(kin["111"] / kin["200"], rel=0.1)


def test_dynamical_deviation_of_lif_111_200_grows_with_thickness():
    # documented: (I111/I200)_multislice / (I111/I200)_kinematic ≈ 1.05 (1.1 nm), 1.19 (2.3 nm), 1.56 (4.6 nm),
    # 2.56 (9.1 nm) at 300 keV — the kinematic path is good to 20 % only for ≲ 2 nm of LiF
    ratios = []
    for n_z in (2, 4, 8, 16):
        t, ms, kin = _multislice_vs_kinematic(n_z)
        ratios.append((ms["111"] / ms["200"]) / (kin["111"] / kin["200"]))
    assert abs(ratios[1] - 1) < 0.2  # ≤ 2.3 nm: within 20 %
    assert np.all(np.diff(ratios) > 0)
    assert ratios[-1] > 2.0  # nearly triples by ≈ 9 nm


def test_spot_pattern_conserves_intensity():
    atoms, lattice = lif_sphere(20.0, (0, 1, 1))
    geo = DetectorGeometry(shape=(400, 400), pixel_size=0.005)
    spots = K.kinematic_spots(atoms, energy=E0, q_max=0.75, lattice=lattice)
    img = K.spot_pattern(atoms, geo, semiangle=2.0, energy=E0, lattice=lattice, q_max=0.75)
    assert img.sum() == pytest.approx(spots.intensity.sum(), rel=1e-12)
    assert np.all(img >= 0)
    # a small detector clips the discs: never more than the spots' total
    small = DetectorGeometry(shape=(120, 120), pixel_size=0.005)
    assert K.spot_pattern(atoms, small, semiangle=2.0, energy=E0, lattice=lattice, q_max=0.75).sum() < img.sum()


def test_spot_pattern_bad_input():
    atoms, lattice = lif_sphere(10.0)
    geo = DetectorGeometry(shape=(64, 64), pixel_size=0.01)
    with pytest.raises(ValueError, match="semiangle"):
        K.spot_pattern(atoms, geo, semiangle=0.0, energy=E0, lattice=lattice)
    with pytest.raises(ValueError, match="semiangle"):
        K.spot_pattern(atoms, geo, semiangle=-1.0, energy=E0, lattice=lattice)
    with pytest.raises(ValueError, match="energy"):
        K.spot_pattern(atoms, geo, semiangle=2.0, energy=5e3, lattice=lattice)
    with pytest.raises(ValueError, match="empty"):
        K.spot_pattern(Atoms(), geo, semiangle=2.0, energy=E0, lattice=lattice)
    with pytest.raises(TypeError, match="DetectorGeometry"):
        K.spot_pattern(atoms, (64, 64), semiangle=2.0, energy=E0, lattice=lattice)
    with pytest.raises(ValueError, match="lattice"):
        K.spot_pattern(atoms, geo, semiangle=2.0, energy=E0, lattice=np.zeros((3, 3)))


# ----------------------------------------------------------------------------------------------------------
# probe convolution
# ----------------------------------------------------------------------------------------------------------
def _gauss_ring(q0, sigma):
    return lambda q: np.exp(-0.5 * ((q - q0) / sigma) ** 2)


def test_probe_convolution_matches_brute_force_2d():
    q0, sigma, semiangle = 0.2, 0.006, 2.0
    radius = K.disc_radius(semiangle, E0)
    q = np.arange(0.0, 0.45, 0.0005)
    ring = _gauss_ring(q0, sigma)
    geo = DetectorGeometry(shape=(81, 81), pixel_size=0.008)
    pc = K.make_probe_convolution(q, semiangle=semiangle, energy=E0, geometry=geo, oversample=1)
    img = pc.pattern(ring(q))
    cy, cx = geo.center
    pix = [(int(cy), j) for j in range(81)] + [(i, i) for i in range(81)] + [(i, 80 - i) for i in range(0, 81, 3)]
    pts = np.array([((i - cy) * geo.pixel_size, (j - cx) * geo.pixel_size) for i, j in pix])
    want = ref.disc_convolved_ring(pts, ring, radius)
    got = np.array([img[i, j] for i, j in pix])
    assert np.max(np.abs(got - want)) < 0.01 * want.max()


def test_probe_convolution_conserves_area_and_returns_radial_profiles():
    q = np.linspace(0.0, 0.8, 801)
    iq = np.exp(-0.5 * ((q - 0.45) / 0.01) ** 2) + 0.3 * np.exp(-0.5 * ((q - 0.6) / 0.05) ** 2)
    geo = DetectorGeometry(shape=(401, 401), pixel_size=0.005)  # holds q[-1] + α/λ: nothing falls off
    for semiangle in (2.0, 0.15):
        pc = K.make_probe_convolution(q, semiangle=semiangle, energy=E0, geometry=geo)
        area_in = np.trapezoid(iq * 2 * np.pi * q, q)
        assert pc.pattern(iq).sum() * geo.pixel_size**2 == pytest.approx(area_in, rel=2e-3)
        prof = K.probe_convolve(q, iq, semiangle=semiangle, energy=E0, plan=pc)
        assert prof.mean.shape == prof.q.shape
        assert np.allclose(prof.edges[1] - prof.edges[0], geo.pixel_size)
    # batched profiles equal one-by-one profiles
    batch = np.stack([iq, 2 * iq])
    np.testing.assert_allclose(pc(batch).mean[1], 2 * pc(iq).mean, rtol=1e-12)


def test_probe_convolution_peak_shift_at_2mrad_matches_disc_geometry():
    q0, semiangle = 0.33, 2.0
    radius = K.disc_radius(semiangle, E0)
    # analytic: a delta ring convolved with the disc is ∝ the ring fraction inside the disc at distance ρ; I·Q → ρ·J
    rho = np.linspace(q0 - 0.05, q0 + 0.06, 111)
    iqq = rho * ref.delta_ring_disc_profile(rho, q0, radius)
    expected = parabolic_peak(rho, iqq)
    assert 0.01 < expected - q0 < 0.03  # the README's ≈ 0.01–0.03 Å⁻¹
    q = np.arange(0.0, 0.6, 0.0005)
    geo = DetectorGeometry(shape=(301, 301), pixel_size=0.0025)
    prof = weight_qn(K.probe_convolve(q, _gauss_ring(q0, 0.0015)(q), semiangle=semiangle, energy=E0, geometry=geo), 1)
    got = parabolic_peak(prof.q, prof.mean)
    assert abs(got - expected) < 0.002
    # at 0.15 mrad the shift is below a pixel
    prof = weight_qn(K.probe_convolve(q, _gauss_ring(q0, 0.0015)(q), semiangle=0.15, energy=E0, geometry=geo), 1)
    assert abs(parabolic_peak(prof.q, prof.mean) - q0) < geo.pixel_size


def test_lif_111_200_merge_at_2mrad_resolved_at_015mrad():
    atoms, _ = lif_sphere(40.0)
    q = np.arange(0.02, 1.0, 0.002)
    iq = K.debye_intensity(atoms, q)
    geo = DetectorGeometry(shape=(401, 401), pixel_size=0.003)
    found = {}
    for semiangle in (2.0, 0.15):
        prof = weight_qn(K.probe_convolve(q, iq, semiangle=semiangle, energy=E0, geometry=geo), 1)
        sel = (prof.q > 0.39) & (prof.q < 0.54)
        found[semiangle], _ = local_maxima(prof.q[sel], prof.mean[sel])
    assert len(found[2.0]) == 1
    assert len(found[0.15]) == 2
    assert np.allclose(np.sort(found[0.15]), [Q_LIF["111"], Q_LIF["200"]], atol=0.008)


def test_probe_convolve_bad_input():
    q = np.linspace(0, 1, 11)
    with pytest.raises(ValueError, match="semiangle"):
        K.probe_convolve(q, q, semiangle=0.0, energy=E0)
    with pytest.raises(ValueError, match="increasing"):
        K.probe_convolve(q[::-1], q, semiangle=2.0, energy=E0)
    with pytest.raises(ValueError, match="1-D"):
        K.probe_convolve(np.ones((2, 2)), q, semiangle=2.0, energy=E0)
    with pytest.raises(ValueError, match="energy"):
        K.probe_convolve(q, q, semiangle=2.0, energy=2e6)
    geo = DetectorGeometry(shape=(41, 41), pixel_size=0.02)
    pc = K.make_probe_convolution(q, semiangle=2.0, energy=E0, geometry=geo)
    with pytest.raises(ValueError, match="last axis"):
        pc(np.ones(5))
    with pytest.raises(ValueError, match="plan"):
        K.probe_convolve(q, q, semiangle=1.0, energy=E0, plan=pc)
