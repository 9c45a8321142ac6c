"""Tests of simkit.bloch: dynamical beam intensities of crystal slabs and their orientation averages.

Oracles: abTEM's own Bloch-wave solver (an independent implementation: its structure factors, structure matrix
and eigen-solver); the kinematic structure-factor ratio of rock salt written out here (F111 = 4(f_Li − o_F f_F),
F200 = 4(f_Li + o_F f_F), shared/README) in the thin-slab limit; unitarity (no absorption: Σ|φ_g|² = 1); the
LiF reflection positions √3/a, 2/a, √8/a from the cryogenic lattice constant; the multislice/kinematic
I111/I200 ratios documented from abTEM plane-wave multislice (tests/test_kinematic.py, README: 1.05, 1.19, 1.56,
2.56 at 1.1, 2.3, 4.6, 9.1 nm for a = 4.027 Å, static lattice).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk as ase_bulk

from simkit import bloch
from simkit import kinematic as K
from simkit.geometry import DetectorGeometry
from simkit.units import wavelength
from structures.crystals import LATTICE_CONSTANTS, bulk

E0 = 300e3
A_RT = 4.027  # Å, room-temperature LiF of the documented multislice numbers


def _family(beams, hkl):
    key = tuple(sorted(abs(int(v)) for v in hkl))
    idx = [i for i, h in enumerate(beams.hkl) if tuple(sorted(abs(int(v)) for v in h)) == key]
    return beams.intensity[:, idx].sum(axis=1)


def _f(symbol, q, charge=0):
    return float(K.scattering_factor(symbol, np.array([q]), charge=charge)[0])


def test_matches_abtem_bloch_waves():
    """Same physics, independent code: abTEM's BlochWaves on LiF [011] (static lattice, neutral atoms)."""
    import abtem.bloch as abtem_bloch

    from structures.crystals import rotation_to_zone_axis

    cell = ase_bulk("LiF", "rocksalt", a=A_RT, cubic=True)
    ts = [11.4, 45.6, 91.1]
    ours = bloch.slab_beams(cell, ts, direction=(0, 1, 1), displacement=None, g_max=2.0, sg_max=0.3)
    sf = abtem_bloch.StructureFactor(cell, g_max=4.5, parametrization="lobato")
    bw = abtem_bloch.BlochWaves(
        sf, energy=E0, sg_max=0.3, g_max=2.0, orientation_matrix=rotation_to_zone_axis((0, 1, 1))
    )
    ref = np.asarray(bw.calculate_diffraction_patterns(ts, lazy=False).array)
    keys = [tuple(sorted(abs(int(v)) for v in h)) for h in bw.hkl]
    for fam in ((1, 1, 1), (0, 0, 2), (0, 2, 2)):
        r = ref[:, [i for i, k in enumerate(keys) if k == fam]].sum(axis=1)
        assert _family(ours, fam) == pytest.approx(r, rel=2e-3)
    assert len(ours.hkl) == len(bw.hkl)


def test_unitarity_any_direction_with_vacancies_and_debye_waller():
    cell = bulk("LiF")
    b = bloch.slab_beams(cell, [0.0, 10.0, 100.0, 400.0], direction=(0.3, -0.5, 0.81), occupancy={"F": 0.7})
    assert b.intensity[0, 0] == pytest.approx(1.0, abs=1e-12)  # t = 0: all in the direct beam
    np.testing.assert_allclose(b.intensity.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(b.intensity >= 0)
    assert tuple(b.hkl[0]) == (0, 0, 0)


def test_thin_slab_is_kinematic_structure_factor_ratio():
    """t = 3 Å on [011]: I111/I200 and the absolute I200 equal the rock-salt structure-factor formulas."""
    cell = bulk("LiF")
    a = cell.info["a"]
    x, t = 0.2, 3.0
    u = {"Li": 0.09, "F": 0.05}
    b = bloch.slab_beams(cell, [t], direction=(0, 1, 1), occupancy={"F": 1 - x}, displacement=u)
    q111, q200 = np.sqrt(3) / a, 2 / a

    def fe(sym, q):
        return _f(sym, q) * np.exp(-2 * np.pi**2 * u[sym] ** 2 * q**2)

    f111 = 4 * (fe("Li", q111) - (1 - x) * fe("F", q111))
    f200 = 4 * (fe("Li", q200) + (1 - x) * fe("F", q200))
    # per reflection, ZOLZ s_g = -λg²/2 ⇒ sinc² ≈ 1 at 3 Å; 4 members of 111 and 2 of 200 on [011]
    kin = (4 * f111**2) / (2 * f200**2)
    assert _family(b, (1, 1, 1))[0] / _family(b, (0, 0, 2))[0] == pytest.approx(kin, rel=0.01)
    lam, gam = wavelength(E0), K.relativistic_factor(E0)
    assert _family(b, (0, 0, 2))[0] / 2 == pytest.approx((lam * gam * f200 * t / a**3) ** 2, rel=0.01)


def test_ionic_structure_factor_is_the_ion_sum():
    cell = bulk("LiF")
    a = cell.info["a"]
    hkl = np.array([[1, 1, 1], [2, 0, 0]])
    F = bloch.structure_factors(cell, hkl, charges={"Li": 1, "F": -1}, displacement=None)
    q111, q200 = np.sqrt(3) / a, 2 / a
    # origin on Li: F111 = 4(f_Li+ − f_F−) (F on the half-translation), F200 = 4(f_Li+ + f_F−)
    assert F[0].real == pytest.approx(4 * (_f("Li", q111, 1) - _f("F", q111, -1)), rel=1e-9)
    assert F[1].real == pytest.approx(4 * (_f("Li", q200, 1) + _f("F", q200, -1)), rel=1e-9)
    assert np.abs(F.imag).max() < 1e-9
    neutral = bloch.structure_factors(cell, hkl, displacement=None)
    assert abs(F[0]) != pytest.approx(abs(neutral[0]), rel=0.05)  # ionicity matters at the 111 (Coulomb tail)


@pytest.mark.parametrize(("n_cells", "documented", "tol"), [(4, 1.19, 0.03), (8, 1.56, 0.03), (16, 2.56, 0.06)])
def test_dynamical_ratio_matches_documented_multislice(n_cells, documented, tol):
    """[011] LiF (a = 4.027 Å, static) I111/I200 over the kinematic ratio vs abTEM plane-wave multislice
    (README / tests/test_kinematic.py). Measured: 1.179 / 1.557 / 2.677 with g_max = 2 Å⁻¹ (1.195 / 1.591 / 2.77
    with g_max = 3 Å⁻¹, = abTEM's BlochWaves): Bloch and multislice differ by ≈ 5–8 % at 9.1 nm (multislice's
    finite potential cutoff and slicing vs the forward-scattering Bloch matrix), ≤ 2 % up to 4.6 nm."""
    cell = ase_bulk("LiF", "rocksalt", a=A_RT, cubic=True)
    t = n_cells * A_RT * np.sqrt(2)
    b = bloch.slab_beams(cell, [t], direction=(0, 1, 1), displacement=None, g_max=2.0, sg_max=0.3)
    q111, q200 = np.sqrt(3) / A_RT, 2 / A_RT
    kin = 4 * (_f("Li", q111) - _f("F", q111)) ** 2 / (2 * (_f("Li", q200) + _f("F", q200)) ** 2)
    ratio = _family(b, (1, 1, 1))[0] / _family(b, (0, 0, 2))[0] / kin
    assert ratio == pytest.approx(documented, rel=tol)


def _explicit_vacancy_multislice(seeds, n_cells, sampling):
    """abTEM plane-wave multislice through LiF [011] slabs (2 × 2 supercell, static) with 20 % of the F atoms
    removed at random; I111/I200 at every 16 slices (2 cells), averaged over the seeded configurations."""
    import abtem
    from ase.build import make_supercell

    cell0 = bulk("LiF")
    a = cell0.info["a"]
    cell = make_supercell(cell0, [[1, 0, 0], [0, 1, -1], [0, 1, 1]])
    rot = np.array([[1, 0, 0], [0, 1 / np.sqrt(2), -1 / np.sqrt(2)], [0, 1 / np.sqrt(2), 1 / np.sqrt(2)]])
    cell.positions = cell.positions @ rot.T
    cell.set_cell(np.diag([a, a * np.sqrt(2), a * np.sqrt(2)]), scale_atoms=False)
    cell.wrap()
    g111 = [(sx / a, sy * np.sqrt(2) / a) for sx in (1, -1) for sy in (1, -1)]
    g200 = [(2 / a, 0.0), (-2 / a, 0.0)]
    i111, i200 = 0.0, 0.0
    for seed in seeds:
        slab = cell.repeat((2, 2, n_cells))
        f_idx = np.flatnonzero(np.array(slab.get_chemical_symbols()) == "F")
        drop = np.random.default_rng(seed).choice(f_idx, size=round(0.2 * f_idx.size), replace=False)
        del slab[drop]
        pot = abtem.Potential(
            slab, sampling=sampling, slice_thickness=a * np.sqrt(2) / 4, parametrization="lobato", exit_planes=8
        )
        dp = abtem.PlaneWave(energy=E0).multislice(pot).diffraction_patterns(max_angle=None).compute(progress_bar=False)
        arr = np.asarray(dp.array)  # (exit plane, x, y), zero frequency at n // 2
        sx, sy = dp.sampling
        nx, ny = arr.shape[-2:]
        i111 = i111 + sum(arr[:, nx // 2 + round(gx / sx), ny // 2 + round(gy / sy)] for gx, gy in g111)
        i200 = i200 + sum(arr[:, nx // 2 + round(gx / sx), ny // 2 + round(gy / sy)] for gx, gy in g200)
    t = np.asarray(pot.exit_thicknesses)[1:]
    b = bloch.slab_beams(cell0, t, direction=(0, 1, 1), occupancy={"F": 0.8}, displacement=None, sg_max=0.3)
    return t, i111[1:] / i200[1:], _family(b, (1, 1, 1)) / _family(b, (0, 0, 2))


def test_virtual_crystal_matches_multislice_with_explicit_vacancies_ci():
    """20 % F vacancies as an occupancy of 0.8 (Bloch) vs explicit random vacancies (multislice), 1 configuration,
    4.5 nm. Only the exit of the whole slab is compared: its vacancy fraction is exactly 0.2, while a partial
    depth of one small configuration has its own (fluctuating) fraction."""
    t, ms, vca = _explicit_vacancy_multislice([0], 8, 0.05)
    assert t[-1] == pytest.approx(45.36, abs=0.05)
    assert vca[-1] == pytest.approx(ms[-1], rel=0.08)


@pytest.mark.slow
def test_virtual_crystal_matches_multislice_with_explicit_vacancies():
    """Three configurations to 9.1 nm. Measured: I111/I200 (Bloch, occupancy 0.8) = 0.168 / 0.224 / 0.289 /
    0.365 vs multislice 0.179 / 0.226 / 0.295 / 0.371 at 2.3 / 4.5 / 6.8 / 9.1 nm."""
    t, ms, vca = _explicit_vacancy_multislice([0, 1, 2], 16, 0.05)
    assert t == pytest.approx([11.34 * k for k in range(1, 9)], abs=0.05)
    assert vca[1] == pytest.approx(ms[1], rel=0.1)  # 2.3 nm: partial depths fluctuate in vacancy fraction
    assert vca[3::2] == pytest.approx(ms[3::2], rel=0.05)


def test_powder_rings_positions_and_conservation():
    cell = bulk("LiF")
    a = LATTICE_CONSTANTS["LiF"]["cryo"]
    step = 0.0005
    q = np.arange(0.0, 2.2, step)
    rings, direct = bloch.powder_rings(cell, q, [20.0, 60.0], n_orientations=200, symmetry="m-3m", g_max=2.0)
    area = 2 * np.pi * q * step
    area[0] = np.pi * step**2 / 3
    total = (rings * area).sum(axis=1) + direct
    np.testing.assert_allclose(total, 1.0, atol=1e-9)  # every beam lands inside the grid (q ≥ g_max)
    for hkl2, lo, hi in ((3, 0.40, 0.46), (4, 0.47, 0.53), (8, 0.67, 0.74)):
        m = (q > lo) & (q < hi)
        # the ring-weighted mean |g_xy| sits just below |g| (g_z ≠ 0 off the Bragg condition: ≤ 0.05 Å⁻¹ → 0.3 %)
        qbar = (rings[1, m] * area[m] * q[m]).sum() / (rings[1, m] * area[m]).sum()
        assert qbar == pytest.approx(np.sqrt(hkl2) / a, abs=0.0015)
    # through the probe-disc convolution and simkit.radial: the pattern holds the rings' intensity
    geo = DetectorGeometry(shape=(241, 241), pixel_size=0.005)
    prof, d2, conv = bloch.powder_profiles(
        cell,
        [60.0],
        semiangle=0.15,
        energy=E0,
        geometry=geo,
        q_step=step,
        q_max=0.58,
        n_orientations=200,
        symmetry="m-3m",
        oversample=2,
    )
    qc = conv.q
    r2, _ = bloch.powder_rings(cell, qc, [60.0], n_orientations=200, symmetry="m-3m")
    a2 = 2 * np.pi * qc * step
    a2[0] = np.pi * step**2 / 3
    m = qc < 0.56  # rings within the detector (radius 0.6 Å⁻¹) after the 0.008 Å⁻¹ discs
    pattern = conv.pattern(np.where(m, r2[0], 0.0)) * geo.pixel_size**2  # density [per Å⁻²] → per pixel
    assert pattern.sum() == pytest.approx((r2[0, m] * a2[m]).sum(), rel=2e-3)
    assert prof.mean.shape[-1] == prof.q.size


def test_m3m_wedge_equals_full_sphere_average():
    """A radial profile is invariant under the cubic group: one direction and its wedge image agree, and the
    wedge-sampled average agrees with a full-sphere one."""
    cell = bulk("LiF")
    q = np.arange(0.0, 1.2, 0.0005)
    u = np.array([[0.3, -0.5, 0.81]])
    r1, _ = bloch.powder_rings(cell, q, [50.0], directions=u)
    r2, _ = bloch.powder_rings(cell, q, [50.0], directions=np.sort(np.abs(u), axis=1))
    np.testing.assert_allclose(r1, r2, rtol=1e-9, atol=1e-12)
    w = bloch.beam_directions(300, symmetry="m-3m")
    assert np.all((w[:, 0] >= 0) & (w[:, 0] <= w[:, 1]) & (w[:, 1] <= w[:, 2]))
    assert abs(len(w) - 300) < 15
    full, _ = bloch.powder_rings(cell, q, [20.0], n_orientations=4000)
    wedge, _ = bloch.powder_rings(cell, q, [20.0], n_orientations=300, symmetry="m-3m")

    def band(r, lo, hi):
        m = (q > lo) & (q < hi)
        return (r[0, m] * q[m]).sum()

    for lo, hi in ((0.42, 0.44), (0.49, 0.51), (0.69, 0.72)):
        assert band(wedge, lo, hi) == pytest.approx(band(full, lo, hi), rel=0.04)


def test_vacancies_lower_111_over_200_and_thickness_raises_it():
    cell = bulk("LiF")
    q = np.arange(0.0, 0.8, 0.0005)
    rings, _ = bloch.powder_rings(
        cell, q, [20.0, 100.0], occupancies=[{"F": 1.0}, {"F": 0.8}], n_orientations=300, symmetry="m-3m"
    )

    def ratio(r):
        m1, m2 = (q > 0.42) & (q < 0.44), (q > 0.49) & (q < 0.51)
        return (r[..., m1] * q[m1]).sum(-1) / (r[..., m2] * q[m2]).sum(-1)

    r = ratio(rings)
    assert r[1, 0] < 0.6 * r[0, 0]  # 20 % F vacancies halve I111/I200 (|f_Li − o f_F|² falls fast)
    assert r[0, 1] > r[0, 0]  # thicker: dynamical transfer raises the weak 111 relative to 200


def test_spot_pattern_conserves_and_places_discs():
    cell = bulk("LiF")
    b = bloch.slab_beams(cell, [50.0], direction=(0, 1, 1))
    geo = DetectorGeometry(shape=(811, 811), pixel_size=0.005)  # ±2.02 Å⁻¹: every beam (|g| ≤ 2) on it
    img = bloch.spot_pattern(b, geo, semiangle=0.15, energy=E0, azimuth=0.3)
    assert img.sum() == pytest.approx(b.intensity[0, 1:].sum(), rel=1e-9)
    cy, cx = geo.center
    i, j = np.unravel_index(np.argmax(img), img.shape)  # brightest disc: a 200 (|g| = 2/a) on [011]
    assert np.hypot(i - cy, j - cx) * geo.pixel_size == pytest.approx(2 / bulk("LiF").info["a"], abs=0.006)
    img_d = bloch.spot_pattern(b, geo, semiangle=0.15, energy=E0, include_direct=True)
    assert img_d.sum() - bloch.spot_pattern(b, geo, semiangle=0.15, energy=E0).sum() == pytest.approx(
        b.intensity[0, 0], rel=1e-9
    )


def test_bad_input():
    cell = bulk("LiF")
    with pytest.raises(ValueError, match="thicknesses"):
        bloch.slab_beams(cell, [-1.0])
    with pytest.raises(ValueError, match="occupancy"):
        bloch.slab_beams(cell, [10.0], occupancy={"F": 1.5})
    with pytest.raises(ValueError, match="occupancy"):
        bloch.slab_beams(cell, [10.0], occupancy={"O": 0.5})
    with pytest.raises(ValueError, match="g_max"):
        bloch.slab_beams(cell, [10.0], g_max=0.0)
    with pytest.raises(TypeError, match="atoms"):
        bloch.slab_beams("LiF", [10.0])
    with pytest.raises(ValueError, match="symmetry"):
        bloch.beam_directions(10, symmetry="6/mmm")
    with pytest.raises(ValueError, match="n="):
        bloch.beam_directions(0)
    with pytest.raises(ValueError, match="uniformly"):
        bloch.powder_rings(cell, np.array([0.0, 0.1, 0.3, 0.31]), [10.0])
    with pytest.raises(ValueError, match="displacement"):
        bloch.structure_factors(ase_bulk("Si"), np.array([[1, 1, 1]]))
    with pytest.raises(TypeError, match="SlabBeams"):
        bloch.spot_pattern(None, DetectorGeometry(), semiangle=0.15)
