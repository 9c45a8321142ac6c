"""fitting.profiles: streamed per-pixel profiles, Qⁿ weighting, backgrounds, binning, sectors, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fitting.profiles import scan_profiles, sector_profiles, subtract_background
from simkit.radial import make_plan

SHAPE = (48, 48)
PS = 0.02


@pytest.fixture
def plan():
    return make_plan(SHAPE, center=(24.0, 23.5), pixel_size=PS, q_max=0.44)


def test_constant_patterns_give_constant_profiles_and_qn(plan):
    data = np.full((3, 4) + SHAPE, 5.0)
    pr = scan_profiles(data, plan, n=1, exclude_direct=0.1)
    keep = pr.q >= 0.1
    np.testing.assert_allclose(pr.intensity[..., keep], 5.0)
    assert np.isnan(pr.intensity[..., ~keep]).all()
    np.testing.assert_allclose(pr.iq[..., keep], np.broadcast_to(5.0 * pr.q[keep], (3, 4, keep.sum())))
    pr2 = scan_profiles(data, plan, n=2)
    np.testing.assert_allclose(pr2.iq, np.broadcast_to(5.0 * pr2.q**2, pr2.iq.shape))
    # total counts inside the bins = value × number of binned pixels (conservation)
    np.testing.assert_allclose(pr.total, 5.0 * plan.count.sum())


def test_chunking_and_h5py_input_do_not_change_results(plan, rng, tmp_path):
    data = rng.poisson(4.0, (5, 3) + SHAPE).astype(np.uint16)
    shifts = rng.uniform(-1, 1, (5, 3, 2))
    a = scan_profiles(data, plan, shifts=shifts)
    b = scan_profiles(data, plan, shifts=shifts, chunk=3)  # one row per chunk
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = data
    with h5py.File(tmp_path / "d.h5", "r") as f:
        c = scan_profiles(f["x"], plan, shifts=shifts, chunk=6)
    for o in (b, c):
        np.testing.assert_array_equal(a.intensity, o.intensity)
        np.testing.assert_array_equal(a.sem, o.sem)


def test_spatial_binning_equals_profile_of_summed_patterns(plan, rng):
    data = rng.poisson(3.0, (4, 6) + SHAPE).astype(float)
    pr = scan_profiles(data, plan, bin=2)
    assert pr.intensity.shape[:2] == (2, 3)
    summed = data.reshape(2, 2, 3, 2, *SHAPE).sum(axis=(1, 3))  # the 2×2 blocks added pixel by pixel
    ref = plan.integrate(summed)
    # mean of summed patterns = 4 × (mean pixel value of the block) (linearity)
    np.testing.assert_allclose(4 * pr.intensity, ref.mean, rtol=1e-12)
    np.testing.assert_allclose(pr.sem * 4, ref.sem_poisson, rtol=1e-12)
    np.testing.assert_allclose(
        pr.total,
        data.reshape(2, 2, 3, 2, *SHAPE).sum(axis=(1, 3))[..., plan.bin_table.reshape(SHAPE) < plan.n_q].sum(-1),
    )


def test_power_law_and_polynomial_backgrounds_are_exact_on_their_model():
    q = np.linspace(0.1, 0.8, 60)
    a = np.array([[2.0], [5.0]])
    p = np.array([[1.5], [2.5]])
    I = a * q**-p
    np.testing.assert_allclose(subtract_background(q, I, model="power"), I, rtol=1e-10)
    P = 3.0 - 2.0 * q + 0.5 * q**2
    np.testing.assert_allclose(subtract_background(q, P[None], model="poly", degree=2)[0], P, rtol=1e-10)
    # fitted only in ranges away from a peak, the background under the peak is the model's
    peak = 4.0 * np.exp(-0.5 * ((q - 0.33) / 0.03) ** 2)
    bg = subtract_background(q, I + peak, model="power", ranges=[(0.1, 0.2), (0.5, 0.8)])
    np.testing.assert_allclose(bg, I, rtol=1e-6)


def test_scan_profiles_background_subtraction(plan):
    iy, ix = np.indices(SHAPE)
    q = np.hypot(iy - 24.0, ix - 23.5) * PS
    img = 2.0 * np.maximum(q, PS) ** -1.5
    pr = scan_profiles(np.broadcast_to(img, (2, 2) + SHAPE), plan, background="power", exclude_direct=0.1, n=1)
    keep = pr.q >= 0.1
    # the radial mean of a power law is close to the power law; the residual after subtraction is small
    assert np.nanmax(np.abs(pr.iq[..., keep] / (pr.intensity[..., keep] * pr.q[keep]))) < 0.01


def test_nan_pixels_are_ignored(plan, rng):
    data = rng.poisson(6.0, (2, 2) + SHAPE).astype(float)
    bad = data.copy()
    bad[:, :, 5, 7] = np.nan
    bad[:, :, 30, 31] = np.nan
    mask = np.ones(SHAPE, bool)
    mask[5, 7] = mask[30, 31] = False
    masked = make_plan(SHAPE, center=(24.0, 23.5), pixel_size=PS, q_max=0.44, mask=mask)
    a = scan_profiles(bad, plan)
    b = scan_profiles(data, masked)
    np.testing.assert_allclose(a.intensity, b.intensity)


def test_sector_profiles_average_to_the_radial_profile(plan, rng):
    data = rng.poisson(5.0, (2, 3) + SHAPE).astype(float)
    q, m, s = sector_profiles(data, plan, n_phi=8, dtype=np.float64)
    assert m.shape == (2, 3, 8, plan.n_q)
    full = plan.integrate(data, n_phi=8)
    np.testing.assert_allclose(m, full.mean)
    np.testing.assert_allclose(s, full.sem_poisson)


def test_bad_input(plan):
    data = np.ones((2, 2) + SHAPE)
    with pytest.raises(ValueError, match="shifts"):
        scan_profiles(data, plan, shifts=np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="plan.shape"):
        scan_profiles(np.ones((2, 2, 32, 32)), plan)
    with pytest.raises(ValueError, match="background"):
        scan_profiles(data, plan, background="spline")
    with pytest.raises(ValueError, match="bin"):
        scan_profiles(data, plan, bin=3)
    with pytest.raises(ValueError, match="exclude_direct"):
        scan_profiles(data, plan, exclude_direct=5.0)
    with pytest.raises(ValueError, match="scan_y"):
        scan_profiles(np.ones(SHAPE), plan)
    with pytest.raises(TypeError, match="RadialPlan"):
        scan_profiles(data, "plan")
    with pytest.raises(ValueError, match="n_phi"):
        sector_profiles(data, plan, n_phi=1)


def test_all_zero_patterns_give_zero_profiles_not_errors(plan):
    pr = scan_profiles(np.zeros((2, 2) + SHAPE), plan, exclude_direct=0.1)
    keep = pr.q >= 0.1
    np.testing.assert_array_equal(pr.intensity[..., keep], 0.0)
    np.testing.assert_array_equal(pr.total, 0.0)


def test_integer_shift_mode_equals_exact_for_whole_pixel_shifts(rng):
    plan = make_plan(SHAPE, center=(24.0, 23.5), pixel_size=PS, q_max=0.36)  # 18 px: 4 px inside every edge
    data = rng.poisson(4.0, (3, 2) + SHAPE).astype(np.uint16)
    shifts = rng.integers(-3, 4, (3, 2, 2)).astype(float)
    a = scan_profiles(data, plan, shifts=shifts)
    b = scan_profiles(data, plan, shifts=shifts, shift_mode="integer")
    np.testing.assert_allclose(a.intensity, b.intensity, rtol=1e-6)
    qa, ma, sa = sector_profiles(data, plan, shifts=shifts, n_phi=8, shift_mode="exact", dtype=np.float64)
    qb, mb, sb = sector_profiles(data, plan, shifts=shifts, n_phi=8, dtype=np.float64)
    np.testing.assert_allclose(ma, mb, rtol=1e-6)
    # sub-pixel residuals are neglected: a 0.4 px shift changes the azimuthal average only slightly
    c = scan_profiles(data, plan, shifts=shifts + 0.4, shift_mode="integer")
    np.testing.assert_array_equal(c.intensity, b.intensity)
    with pytest.raises(ValueError, match="shift_mode"):
        scan_profiles(data, plan, shifts=shifts, shift_mode="nearest")
    # a plan reaching the detector edge: pixels moved in from outside are NaN (ignored), inner bins unchanged
    wide = make_plan(SHAPE, center=(24.0, 23.5), pixel_size=PS, q_max=0.46)
    d = scan_profiles(data, wide, shifts=shifts)
    e = scan_profiles(data, wide, shifts=shifts, shift_mode="integer")
    inner = wide.q < 0.36
    np.testing.assert_allclose(d.intensity[..., inner], e.intensity[..., inner], rtol=1e-6)
    assert np.all(np.isfinite(e.intensity[..., inner]))


def test_dask_input_equals_numpy(plan, rng):
    da = pytest.importorskip("dask.array")
    data = rng.poisson(4.0, (4, 3) + SHAPE).astype(np.uint16)
    a = scan_profiles(data, plan, chunk=3)
    b = scan_profiles(da.from_array(data, chunks=(1, 3) + SHAPE), plan, chunk=3)
    np.testing.assert_array_equal(a.intensity, b.intensity)
