"""fitting.calibrate: descan, ellipse and Q calibration against synthetic scans with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from fitting import calibrate as cal
from tests.reference import center_of_mass_reference
from tests.synthetic_scan_helpers import REGIONS, make_scan


@pytest.fixture(scope="module")
def type1_scan():
    codes = np.full((12, 10), REGIONS.index("type1"))
    return make_scan(
        codes,
        rng=5,
        ellipse=(1.02, 0.6),
        electrons=1e5,
        descan=((0.4, 1.7, -0.9), (-0.3, -0.8, 1.4)),
    )


def test_com_matches_pixel_loop_reference(type1_scan):
    data, truth = type1_scan
    c = cal.find_centers(data[:1, :2], radius=11.0, n_iter=60)
    for j in range(2):
        # the reference loops over a 40² crop (pixels beyond 11 px + the descan never enter the disc)
        ref = center_of_mass_reference(data[0, j, 44:84, 44:84].astype(float), (20.0, 20.0), 11.0)
        np.testing.assert_allclose(c[0, j], np.add(ref, 44.0), atol=1e-8)


@pytest.mark.parametrize("method", ["com", "xcorr"])
def test_descan_recovered_below_0p1_px(type1_scan, method):
    data, truth = type1_scan
    centers = cal.find_centers(data, method=method)
    smooth = cal.fit_descan(centers, order=1)
    err = np.abs(smooth - truth["centers"])
    assert err.max() < 0.1, err.max()
    # shifts relative to a plan centre are the centres minus it
    sh = cal.descan_shifts(smooth, (64.0, 64.0))
    np.testing.assert_allclose(sh + 64.0, smooth)


def test_descan_surface_rejects_outliers():
    rng = np.random.default_rng(1)
    iy, ix = np.mgrid[:20, :15]
    true = np.stack([60 + 0.05 * iy - 0.02 * ix, 62 - 0.03 * iy + 0.04 * ix], axis=-1).astype(float)
    meas = true + rng.normal(0, 0.05, true.shape)
    meas[3, 4] += 5.0  # a Bragg disc pulled one centre
    meas[10, 2] = np.nan  # an empty pattern
    smooth = cal.fit_descan(meas)
    assert np.abs(smooth - true).max() < 0.05


def test_ellipse_from_amorphous_ring(type1_scan):
    data, truth = type1_scan
    smooth = cal.fit_descan(cal.find_centers(data))
    center = tuple(smooth.reshape(-1, 2).mean(0))
    ps = truth["pixel_size"]
    ell = cal.fit_ellipse(data, center=center, shifts=cal.descan_shifts(smooth, center), r_range=(0.24 / ps, 0.42 / ps))
    assert abs(ell.ratio - 1.02) < 0.002
    assert abs(ell.angle - 0.6) < 0.06


def test_ellipse_from_sector_profiles_and_its_composition(type1_scan):
    """The generator's known 2 % ellipse (0.6 rad) measured from the sector profiles that a scan analysis makes
    anyway (one pass, no re-integration); measured again with the corrected plan, nothing is left."""
    from fitting.profiles import sector_profiles

    data, truth = type1_scan
    smooth = cal.fit_descan(cal.find_centers(data))
    center = tuple(smooth.reshape(-1, 2).mean(0))
    shifts = cal.descan_shifts(smooth, center)
    plan = cal.calibrated_plan(data.shape[-2:], center=center, pixel_size=truth["pixel_size"])
    q, m, _ = sector_profiles(data, plan, shifts=shifts, n_phi=32)
    ell = cal.ellipse_from_sectors(q, m, pixel_size=plan.pixel_size, q_range=(0.2, 0.5))
    assert abs(ell.ratio - 1.02) < 0.003
    assert abs(ell.angle - 0.6) < 0.08
    ratio, angle = cal.compose_ellipse(1.0, 0.0, ell.ratio, ell.angle)
    assert ratio == pytest.approx(ell.ratio) and angle == pytest.approx(ell.angle)
    fixed = cal.calibrated_plan(
        data.shape[-2:], center=center, pixel_size=plan.pixel_size, ellipse_ratio=ratio, ellipse_angle=angle
    )
    q2, m2, _ = sector_profiles(data, fixed, shifts=shifts, n_phi=32)
    assert cal.ellipse_from_sectors(q2, m2, pixel_size=plan.pixel_size).ratio < 1.005  # 2 % → < 0.5 % in one pass
    select = np.zeros(m.shape[:2], bool)
    with pytest.raises(ValueError, match="select"):
        cal.ellipse_from_sectors(q, m, select=select)
    with pytest.raises(ValueError, match="select"):
        cal.ellipse_from_sectors(q, m, select=select[:-1])
    with pytest.raises(ValueError, match="sector_mean"):
        cal.ellipse_from_sectors(q[:-1], m)


def test_ellipse_from_powder_rings_and_no_false_ellipse():
    codes = np.full((4, 4), REGIONS.index("li2o"))
    for ratio, angle in [(1.03, 2.2), (1.0, 0.0)]:
        data, truth = make_scan(codes, rng=3, ellipse=(ratio, angle), electrons=2e5, descan=((0, 0, 0), (0, 0, 0)))
        ps = truth["pixel_size"]
        ell = cal.fit_ellipse(data, center=truth["center"], r_range=(0.34 / ps, 0.66 / ps))
        assert abs(ell.ratio - ratio) < 0.002
        if ratio > 1:
            assert abs(ell.angle - angle) < 0.03


def _lif_powder(pixel_size, rng, a=4.009, shape=(160, 160), electrons=3e6):
    """Powder rings of LiF (111, 200, 220, 311) for lattice constant a [Å] on a detector, Poisson counts."""
    iy, ix = np.mgrid[: shape[0], : shape[1]].astype(float)
    c = (shape[0] / 2 + 0.3, shape[1] / 2 - 0.4)
    q = np.hypot(iy - c[0], ix - c[1]) * pixel_size
    img = 1.0 / (q + 0.05) ** 2
    for hkl, amp in [((1, 1, 1), 1.0), ((2, 0, 0), 3.0), ((2, 2, 0), 2.0), ((3, 1, 1), 0.8)]:
        qh = np.sqrt(sum(h * h for h in hkl)) / a
        img += amp / (qh + 0.05) ** 2 * np.exp(-0.5 * ((q - qh) / 0.006) ** 2)
    img *= electrons / img.sum()
    return rng.poisson(img)[None], c


def test_q_calibration_from_rings_with_cryo_lattice_constants(rng):
    p_true = 0.0093
    data, c = _lif_powder(p_true, rng)
    refl = [("LiF", (1, 1, 1)), ("LiF", (2, 0, 0)), ("LiF", (2, 2, 0))]
    qc = cal.calibrate_q(data, center=c, pixel_size_guess=p_true * 1.04, reflections=refl)
    assert abs(qc.pixel_size / p_true - 1) < 0.003
    assert qc.pixel_size_err < 0.002 * p_true
    # the same rings with room-temperature constants are off by the thermal contraction (0.45 % for LiF)
    qr = cal.calibrate_q(data, center=c, pixel_size_guess=p_true, reflections=refl, temperature="room")
    assert abs(qr.pixel_size / qc.pixel_size - 4.009 / 4.0270) < 0.001
    # user d-spacings (d = a / sqrt(h²+k²+l²)) give the same answer
    d = [4.009 / np.sqrt(3), 4.009 / 2]
    qd = cal.calibrate_q(data, center=c, pixel_size_guess=p_true * 0.97, d_spacings=d)
    assert abs(qd.pixel_size / p_true - 1) < 0.003


def test_reflection_q_values():
    # Q = sqrt(h²+k²+l²)/a; the study's room-temperature table: LiF 200 0.497, Cu 111 0.479, Li 110 0.403
    assert abs(cal.reflection_q("LiF", (2, 0, 0), "room") - 0.497) < 0.001
    assert abs(cal.reflection_q("Cu", (1, 1, 1), "room") - 0.479) < 0.001
    assert abs(cal.reflection_q("Li", (1, 1, 0), "room") - 0.403) < 0.001
    assert cal.reflection_q("Li", (1, 1, 0)) > cal.reflection_q("Li", (1, 1, 0), "room")  # cryo contraction
    with pytest.raises(ValueError, match="forbidden"):
        cal.reflection_q("Cu", (1, 0, 0))
    with pytest.raises(ValueError, match="forbidden"):
        cal.reflection_q("Li", (1, 1, 1))


def test_pixel_size_from_camera_is_pitch_over_camera_length_and_wavelength():
    # 55 µm pixels at 100 mm: 0.55 mrad per pixel; λ(300 keV) = 0.019687 Å → 0.027937 Å⁻¹
    p = cal.pixel_size_from_camera(camera_length=100.0, pixel_pitch=55.0, energy=300e3)
    assert abs(p - 0.55e-3 / 0.0196875) < 2e-6


def test_calibrate_end_to_end(type1_scan):
    data, truth = type1_scan
    c = cal.calibrate(data, pixel_size=truth["pixel_size"], ellipse_q_range=(0.24, 0.42))
    actual = np.asarray(c.plan.center) + c.shifts
    assert np.abs(actual - truth["centers"]).max() < 0.1
    assert abs(c.plan.ellipse_ratio - 1.02) < 0.002
    assert c.plan.pixel_size == truth["pixel_size"]


# ---------------------------------------------------------------------------------------------------------------
def test_calibrated_plan_from_a_scan(tmp_path):
    from fitting.io import load_scan

    np.save(tmp_path / "a.npy", np.ones((2, 2, 40, 48), np.uint16))
    scan = load_scan(tmp_path / "a.npy", pixel_size=0.01)
    plan = cal.calibrated_plan(scan, center=(20.0, 24.0))
    assert plan.shape == (40, 48) and plan.pixel_size == 0.01
    with pytest.raises(ValueError, match="missing calibration 'pixel_size'"):
        cal.calibrated_plan(load_scan(tmp_path / "a.npy"), center=(20.0, 24.0))


def test_bad_input():
    with pytest.raises(ValueError, match="pixel_size"):
        cal.calibrated_plan((64, 64), center=(32, 32), pixel_size=None)
    with pytest.raises(ValueError, match="all patterns are zero"):
        cal.find_centers(np.zeros((2, 2, 32, 32)))
    with pytest.raises(ValueError, match="method"):
        cal.find_centers(np.ones((2, 2, 32, 32)), method="magic")
    with pytest.raises(ValueError, match="centers"):
        cal.fit_descan(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        cal.descan_shifts(np.full((2, 2, 2), np.nan), (1.0, 1.0))
    with pytest.raises(ValueError, match="pixel_size_guess"):
        cal.calibrate_q(np.ones((32, 32)), center=(16, 16), pixel_size_guess=None, d_spacings=[2.0])
    with pytest.raises(ValueError, match="reflections"):
        cal.calibrate_q(np.ones((32, 32)), center=(16, 16), pixel_size_guess=0.01)
    with pytest.raises(ValueError, match="n_phi"):
        cal.fit_ellipse(np.ones((32, 32)), center=(16, 16), r_range=(5, 10), n_phi=4)
    with pytest.raises(ValueError, match="pixel_size"):
        cal.calibrate(np.ones((2, 2, 32, 32)))


def test_nan_pixels_do_not_break_centres(type1_scan):
    data, truth = type1_scan
    d = data[:3, :3].astype(float)
    d[:, :, 10, 10] = np.nan  # dead pixels far from the beam
    d[:, :, 64, 70] = np.nan  # and one inside the centre-of-mass disc
    c = cal.find_centers(d)
    assert np.all(np.isfinite(c))
    assert np.abs(c - truth["centers"][:3, :3]).max() < 0.5


def test_load_mask_reads_npy_tif_and_h5(tmp_path):
    import h5py
    from PIL import Image

    m = np.ones((12, 16), dtype=bool)
    m[3:5, 7:9] = False
    np.save(tmp_path / "m.npy", m)
    Image.fromarray(m.astype(np.uint8)).save(tmp_path / "m.tif")
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["entry/other"] = np.zeros(3)
        f["entry/mask"] = m.astype(np.uint8)
    for name in ("m.npy", "m.tif", "m.h5"):
        np.testing.assert_array_equal(cal.load_mask(tmp_path / name, shape=(12, 16)), m)
    with pytest.raises(ValueError, match="mask.shape"):
        cal.load_mask(tmp_path / "m.npy", shape=(16, 12))
    np.save(tmp_path / "none.npy", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="every pixel is masked"):
        cal.load_mask(tmp_path / "none.npy")
    (tmp_path / "m.raw").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="unknown format"):
        cal.load_mask(tmp_path / "m.raw")


def test_mask_reaches_the_plan_and_every_step(type1_scan):
    data, truth = type1_scan
    mask = np.ones(data.shape[-2:], dtype=bool)
    mask[:, :20] = False  # a detector edge outside the rings
    mask[:, 60:62] = False  # a chip gap through the direct beam
    mask[60:64, 64:68] = False  # and a dead block in it
    k = cal.calibrate(data, pixel_size=truth["pixel_size"], mask=mask, ellipse_q_range=(0.24, 0.42))
    assert not k.plan.mask[:, :20].any() and not k.plan.mask[60:64, 64:68].any()
    # masked pixels and their mirrors about the centre leave the centre of mass: the descan stays right
    assert np.abs(k.shifts + np.array(k.plan.center) - truth["centers"]).max() < 0.1
    zeroed = data.astype(float)
    zeroed[..., ~mask] = 0.0  # what a mask-blind centre finder sees
    try:
        assert np.abs(cal.fit_descan(cal.find_centers(zeroed)) - truth["centers"]).max() > 0.3
    except cal.CenterError:
        pass  # the gap splits its disc: not a plausible direct beam at all
    assert abs(k.ellipse.ratio - 1.02) < 0.003


def test_isolated_hot_kernel_equals_numpy_rule(rng):
    """The numba rule (a pixel above 8 × (its brightest neighbour + 1)) against scipy's maximum filter."""
    from scipy.ndimage import maximum_filter

    f = rng.poisson(rng.uniform(0, 50, (5, 40, 30))).astype(float)
    f[0, 3, 4] = 4000
    f[1, 0, 0] = 900  # corner
    f[2, 10, 10] = f[2, 10, 11] = 5000  # a hot pair is not isolated
    f[3, 20, 20] = np.nan
    fp = np.ones((1, 3, 3), bool)
    fp[0, 1, 1] = False
    nb = maximum_filter(np.where(np.isfinite(f), f, -np.inf), footprint=fp, mode="constant", cval=-np.inf)
    with np.errstate(invalid="ignore"):
        ref = np.isfinite(f) & (f > 8.0 * (np.maximum(nb, 0.0) + 1.0))
    got = cal.isolated_hot(f)
    np.testing.assert_array_equal(got, ref)
    assert got[0, 3, 4] and got[1, 0, 0] and not got[2, 10, 10] and got.sum() == 2
    u = np.nan_to_num(f).astype(np.uint16)  # integer frames take the same rule
    nb_u = maximum_filter(u.astype(float), footprint=fp, mode="constant", cval=-np.inf)
    np.testing.assert_array_equal(cal.isolated_hot(u), u > 8.0 * (np.maximum(nb_u, 0.0) + 1.0))


def test_descan_plane_from_evenly_spaced_rows(type1_scan):
    # the descan surface from the centres of 4 of 12 scan rows: only those rows are measured, and the plane stays
    # within the centre-of-mass noise of the all-pattern fit and of the true linear descan
    data, truth = type1_scan
    full = cal.calibrate(data, pixel_size=0.0065, bad_pixels=False)
    sub = cal.calibrate(data, pixel_size=0.0065, bad_pixels=False, descan_rows=4)
    measured = np.isfinite(sub.centers[..., 0]).any(axis=1)
    np.testing.assert_array_equal(np.flatnonzero(measured), [0, 4, 7, 11])
    assert np.isfinite(sub.centers[measured]).all() and np.isfinite(full.centers).all()
    c_full = np.asarray(full.plan.center) + full.shifts
    c_sub = np.asarray(sub.plan.center) + sub.shifts
    assert np.abs(c_sub - truth["centers"]).max() < 0.02
    assert np.abs(c_sub - c_full).max() < 0.01
    # as many rows as the scan has (or more): every pattern, the same calibration
    same = cal.calibrate(data, pixel_size=0.0065, bad_pixels=False, descan_rows=12)
    np.testing.assert_array_equal(same.shifts, full.shifts)
    with pytest.raises(ValueError, match="descan_rows=0"):
        cal.calibrate(data, pixel_size=0.0065, bad_pixels=False, descan_rows=0)
