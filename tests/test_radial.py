"""Oracles for simkit.radial: slow reference, conservation laws, analytic rings, Poisson statistics, pyFAI."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit.geometry import DetectorGeometry
from simkit.radial import (
    RadialProfiles,
    abtem_center,
    center_from_pyfai,
    center_to_pyfai,
    make_plan,
    make_plan_from_geometry,
    pixel_size_from_mrad,
    weight_qn,
)
from tests.reference import json_with_and_without_jit, radial_corrected_offsets, radial_reference

FIELDS = ("count", "sum", "mean", "sem_poisson", "sem_azimuthal")


def assert_close(a, b, rtol=1e-10, what=""):
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: NaN pattern differs")
    ok = ~np.isnan(a)
    np.testing.assert_allclose(
        a[ok], b[ok], rtol=rtol, atol=rtol * max(1.0, np.abs(b[ok]).max(initial=0)), err_msg=what
    )


def ring_image(shape, center, radius, width, *, ellipse_ratio=1.0, ellipse_angle=0.0, background=0.0):
    """Gaussian ring drawn analytically at pixel centres; the ring is stretched by ellipse_ratio along
    ellipse_angle (the same convention the plan corrects). Independent of simkit.radial."""
    iy, ix = np.indices(shape, dtype=float)
    xc, yc = radial_corrected_offsets(iy - center[0], ix - center[1], ellipse_ratio, ellipse_angle)
    r = np.hypot(xc, yc)
    return background + np.exp(-0.5 * ((r - radius) / width) ** 2)


# --------------------------------------------------------------------------------------------------------
# helpers and conversions
# --------------------------------------------------------------------------------------------------------
def test_pixel_size_from_mrad_matches_wavelength():
    # λ(300 keV) = 0.019687 Å (relativistic), so 1 mrad/px ↔ 1e-3 / 0.019687 = 0.050795 Å⁻¹/px
    assert pixel_size_from_mrad(1.0, 300e3) == pytest.approx(1e-3 / 0.0196875, rel=1e-4)
    # linear in the angle
    assert pixel_size_from_mrad(0.25, 200e3) == pytest.approx(0.25 * pixel_size_from_mrad(1.0, 200e3))


def test_abtem_center_is_zero_frequency():
    for n in (64, 65, 256):
        freqs = np.fft.fftshift(np.fft.fftfreq(n))
        cy, cx = abtem_center((n, n + 1))
        assert freqs[int(cy)] == 0.0
        assert np.fft.fftshift(np.fft.fftfreq(n + 1))[int(cx)] == 0.0


def test_pyfai_center_conversion_against_pyfai_geometry():
    """pyFAI's own radius at pixel centres vanishes at our centre (pixel-corner convention handled)."""
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    pix = 55e-6
    center = (30.3, 41.7)
    poni1, poni2 = center_to_pyfai(center, pix, pix)
    assert center_from_pyfai(poni1, poni2, pix, pix) == pytest.approx(center)
    det = Detector(pix, pix, max_shape=(64, 80))
    ai = AzimuthalIntegrator(dist=0.5, poni1=poni1, poni2=poni2, detector=det, wavelength=1e-11)
    r_mm = ai.array_from_unit(shape=(64, 80), typ="center", unit="r_mm")
    iy, ix = np.indices((64, 80), dtype=float)
    ours = np.hypot(iy - center[0], ix - center[1]) * pix * 1e3
    np.testing.assert_allclose(r_mm, ours, rtol=1e-6, atol=1e-9)


def test_weight_qn(rng):
    plan = make_plan((32, 32), center=(15.5, 16.2), pixel_size=0.02)
    prof = plan.integrate(rng.poisson(20.0, (2, 32, 32)).astype(np.uint16))
    w = weight_qn(prof, 2)
    for f in ("mean", "sum", "sem_poisson", "sem_azimuthal"):
        assert_close(getattr(w, f), getattr(prof, f) * prof.q**2, what=f)
    np.testing.assert_array_equal(w.count, prof.count)


def test_plan_from_geometry_uses_its_centre_and_pixel_size():
    geo = DetectorGeometry(shape=(40, 50), pixel_size=0.01, center=(19.0, 26.0))
    plan = make_plan_from_geometry(geo, n_bins=10, q_max=0.15)
    assert plan.center == (19.0, 26.0)
    assert plan.pixel_size == 0.01
    assert plan.shape == (40, 50)
    np.testing.assert_allclose(plan.edges, np.linspace(0, 0.15, 11))


# --------------------------------------------------------------------------------------------------------
# fast kernel vs slow reference
# --------------------------------------------------------------------------------------------------------
def random_case(seed):
    r = np.random.default_rng(seed)
    ny, nx = int(r.integers(14, 24)), int(r.integers(14, 24))
    center = (float(r.uniform(4, ny - 4)), float(r.uniform(4, nx - 4)))
    ps = float(r.uniform(0.005, 0.02))
    nq = int(r.integers(4, 12))
    qmax = ps * float(r.uniform(6, 15))
    edges = np.sort(r.uniform(0.0, qmax, nq + 1)) if seed % 2 else np.linspace(0.3 * ps, qmax, nq + 1)
    mask = r.random((ny, nx)) > 0.15
    ratio = float(r.uniform(0.8, 1.25)) if seed % 3 else 1.0
    angle = float(r.uniform(-np.pi, np.pi))
    data = r.poisson(30.0, (3, ny, nx)).astype(np.float64)
    data[0, r.integers(0, ny), r.integers(0, nx)] = np.nan
    shifts = r.normal(0.0, 1.5, (3, 2))
    return dict(shape=(ny, nx), center=center, ps=ps, edges=edges, mask=mask, ratio=ratio, angle=angle), data, shifts


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("use_shifts", [False, True])
def test_kernel_equals_reference(seed, split, use_shifts):
    g, data, shifts = random_case(seed)
    n_phi = 3 if seed in (2, 5) else 1
    plan = make_plan(
        g["shape"], center=g["center"], pixel_size=g["ps"], edges=g["edges"], mask=g["mask"],
        ellipse_ratio=g["ratio"], ellipse_angle=g["angle"], split_pixels=split,
    )  # fmt: skip
    prof = plan.integrate(data, shifts if use_shifts else None, n_phi=n_phi if n_phi > 1 else None)
    for n in range(data.shape[0]):
        c = g["center"]
        if use_shifts:
            c = (c[0] + shifts[n, 0], c[1] + shifts[n, 1])
        ref = radial_reference(
            data[n], center=c, pixel_size=g["ps"], edges=g["edges"], mask=g["mask"], ellipse_ratio=g["ratio"],
            ellipse_angle=g["angle"], split_pixels=split, n_phi=n_phi,
        )  # fmt: skip
        for f in FIELDS:
            got = getattr(prof, f)[n]
            assert_close(got, ref[f] if n_phi > 1 else ref[f][0], what=f"{f} pattern {n}")


@pytest.mark.parametrize("statistic", ["median", "clipped"])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("use_shifts", [False, True])
def test_robust_statistics_equal_reference(statistic, split, use_shifts):
    g, data, shifts = random_case(11)
    r = np.random.default_rng(5)
    data[:, r.integers(0, g["shape"][0], 6), r.integers(0, g["shape"][1], 6)] = 5000.0  # Bragg-like outliers
    plan = make_plan(
        g["shape"], center=g["center"], pixel_size=g["ps"], edges=g["edges"], mask=g["mask"],
        ellipse_ratio=g["ratio"], ellipse_angle=g["angle"], split_pixels=split,
    )  # fmt: skip
    prof = plan.integrate(data, shifts if use_shifts else None, statistic=statistic, clip_sigma=2.5)
    for n in range(data.shape[0]):
        c = g["center"]
        if use_shifts:
            c = (c[0] + shifts[n, 0], c[1] + shifts[n, 1])
        ref = radial_reference(
            data[n], center=c, pixel_size=g["ps"], edges=g["edges"], mask=g["mask"], ellipse_ratio=g["ratio"],
            ellipse_angle=g["angle"], split_pixels=split, statistic=statistic, clip_sigma=2.5,
        )  # fmt: skip
        for f in FIELDS:
            assert_close(getattr(prof, f)[n], ref[f][0], what=f"{statistic} {f} pattern {n}")


def test_identical_without_jit():
    """The kernels give identical results with NUMBA_DISABLE_JIT=1 (run in a subprocess)."""
    code = r"""
import json, numpy as np
from simkit.radial import make_plan
r = np.random.default_rng(3)
d = r.poisson(40.0, (2, 15, 17)).astype(np.uint16)
mask = r.random((15, 17)) > 0.2
out = {}
for split in (False, True):
    plan = make_plan((15, 17), center=(7.3, 8.6), pixel_size=0.01, n_bins=6, q_max=0.07, mask=mask,
                     ellipse_ratio=1.1, ellipse_angle=0.4, split_pixels=split)
    for name, kw in [("plain", {}), ("shift", {"shifts": np.full((2, 2), 0.3)}), ("phi", {"n_phi": 2}),
                     ("whole", {"shifts": np.array([[1.0, -2.0], [0.0, 3.0]]), "n_phi": 3}),
                     ("phishift", {"shifts": np.array([[0.3, -1.7], [2.0, 0.5]]), "n_phi": 5}),
                     ("median", {"statistic": "median"}), ("clip", {"statistic": "clipped"})]:
        p = plan.integrate(d, **kw)
        out[f"{split}-{name}"] = [np.nan_to_num(getattr(p, f), nan=-1.0).tolist()
                                  for f in ("count", "sum", "mean", "sem_poisson", "sem_azimuthal")]
    for name, sh in [("mean-fixed", None), ("mean-whole", np.array([[1.0, -2.0], [0.0, 3.0]]))]:
        out[f"{split}-{name}"] = [np.nan_to_num(a, nan=-1.0).tolist() for a in plan.mean_profiles(d, sh, n_phi=3)]
print(json.dumps(out))
"""
    results = json_with_and_without_jit(code)
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        for a, b in zip(results[0][key], results[1][key]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=key)


def test_squared_radius_thresholds_are_exact():
    """The shifted kernels bin s = r² against thresholds T: T must be the smallest double whose Q = √T·pixel_size
    reaches the edge (checked against the neighbouring doubles), so that s >= T exactly when Q >= edge."""
    from simkit.radial.geometry import s_thresholds

    r = np.random.default_rng(7)
    for ps in (0.01, 0.25, float(r.uniform(1e-4, 0.1)), 0.003):
        edges = np.concatenate([[0.0, 5 * ps, 13 * ps], np.sort(r.uniform(0.0, 300 * ps, 40))])
        thr = s_thresholds(edges, ps)
        for e, t in zip(edges, thr):
            assert np.sqrt(t) * ps >= e
            if t > 0:
                assert np.sqrt(np.nextafter(t, 0.0)) * ps < e, (ps, e, t)
        assert thr[0] == 0.0
        # integer radii on integer-multiple edges are ties (√25·ps = 5·ps exactly): s = 25 already reaches the
        # edge (a slightly smaller s may too, its square root rounding up to 5)
        assert 24.9999 < thr[1] <= 25.0 and 168.9999 < thr[2] <= 169.0


def test_ties_on_bin_edges_agree_across_paths():
    """Integer centre and Pythagorean pixel distances (3-4-5, 5-12-13, …) put pixels exactly on bin edges
    (Q = k·pixel_size). Bin k holds Q >= edges[k], so the fixed table, the shifted kernels (shifted onto the
    same centre) and the slow reference must all put these pixels in the same bin: counts equal exactly."""
    shape = (41, 43)
    r = np.random.default_rng(2)
    data = r.poisson(50.0, (3,) + shape).astype(np.uint16)
    for ps in (0.25, 0.01):
        edges = np.arange(0, 19) * ps
        center = (20.0, 21.0)
        plan = make_plan(shape, center=center, pixel_size=ps, edges=edges)
        # the same geometry reached by shifting a plan built about another centre by whole pixels
        other = make_plan(shape, center=(17.0, 25.0), pixel_size=ps, edges=edges)
        shifts = np.tile([[3.0, -4.0]], (3, 1))
        ref = radial_reference(data[0], center=center, pixel_size=ps, edges=edges)
        for got in (
            plan.integrate(data),
            other.integrate(data, shifts),
            plan.integrate(data.astype(np.float64)),
            other.integrate(data.astype(np.float32), shifts),
        ):
            np.testing.assert_array_equal(got.count[0], ref["count"][0])
            np.testing.assert_array_equal(got.sum[0], ref["sum"][0])


@settings(max_examples=20, deadline=None)
@given(
    cy=st.floats(-3, 24),
    cx=st.floats(-3, 22),
    dy=st.floats(-6, 6),
    dx=st.floats(-6, 6),
    ratio=st.floats(0.7, 1.4),
    angle=st.floats(-3.2, 3.2),
    n_bins=st.sampled_from([1, 7, 30, 200, 40000]),
    uniform=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_shifted_equals_plan_rebuilt_at_moved_centre(cy, cx, dy, dx, ratio, angle, n_bins, uniform, seed):
    """Property: integrating with a shift equals integrating with a plan built about the moved centre, exactly
    (integer data; the shifted kernel's row spans, s-thresholds and look-up table against the fixed tables),
    also with 40000 bins (many bins per look-up cell) and with the centre off the detector."""
    r = np.random.default_rng(seed)
    shape = (21, 19)
    ps = 0.01
    q_top = 25.0 * max(1.0, 1.0 / ratio) * ps
    edges = np.linspace(0.02 * ps, q_top, n_bins + 1) if uniform else np.sort(r.uniform(0.0, q_top, n_bins + 1))
    if not np.all(np.diff(edges) > 0):
        return
    mask = r.random(shape) > 0.2
    data = r.integers(0, 1000, (1,) + shape).astype(np.uint16)
    kw = dict(pixel_size=ps, edges=edges, mask=mask, ellipse_ratio=ratio, ellipse_angle=angle)
    try:
        moved = make_plan(shape, center=(cy + dy, cx + dx), **kw)
    except ValueError:  # no unmasked pixel in the Q range about the moved centre
        return
    expect = moved.integrate(data)
    got = make_plan(shape, center=(cy, cx), **kw).integrate(data, np.array([[dy, dx]]))
    np.testing.assert_array_equal(got.count, expect.count)
    np.testing.assert_array_equal(got.sum, expect.sum)
    np.testing.assert_array_equal(np.isnan(got.mean), np.isnan(expect.mean))


# --------------------------------------------------------------------------------------------------------
# physics oracles
# --------------------------------------------------------------------------------------------------------
def test_counts_conserved_without_splitting(rng):
    shape, center, ps = (48, 52), (23.4, 25.9), 0.01
    edges = np.linspace(0.03, 0.2, 18)
    mask = rng.random(shape) > 0.1
    data = rng.poisson(12.0, (4,) + shape).astype(np.uint16)
    prof = make_plan(shape, center=center, pixel_size=ps, edges=edges, mask=mask).integrate(data)
    iy, ix = np.indices(shape)
    q = np.hypot(iy - center[0], ix - center[1]) * ps
    inside = mask & (q >= edges[0]) & (q < edges[-1])
    np.testing.assert_array_equal(prof.sum.sum(axis=-1), data[:, inside].sum(axis=-1))
    np.testing.assert_array_equal(prof.count[0], np.bincount(np.digitize(q[inside], edges) - 1, minlength=17))


@pytest.mark.parametrize("shifted", [False, True])
def test_counts_conserved_with_splitting(rng, shifted):
    """With split pixels and bins covering every pixel's whole extent, every count lands in some bin."""
    shape = (30, 34)
    mask = rng.random(shape) > 0.1
    data = rng.poisson(9.0, (3,) + shape).astype(np.int32)
    plan = make_plan(shape, center=(14.2, 16.7), pixel_size=0.01, edges=np.linspace(0, 0.35, 40), mask=mask,
                     ellipse_ratio=1.2, ellipse_angle=1.0, split_pixels=True)  # fmt: skip
    prof = plan.integrate(data, rng.normal(0, 1, (3, 2)) if shifted else None)
    np.testing.assert_allclose(prof.sum.sum(axis=-1), data[:, mask].sum(axis=-1), rtol=1e-12)
    np.testing.assert_allclose(prof.count.sum(axis=-1), mask.sum(), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    cy=st.floats(0, 20),
    cx=st.floats(0, 20),
    ps=st.floats(0.001, 0.05),
    n_bins=st.integers(1, 30),
    ratio=st.floats(0.7, 1.4),
    angle=st.floats(-3.2, 3.2),
    split=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_count_conservation_property(cy, cx, ps, n_bins, ratio, angle, split, seed):
    """Property: Σ over bins of sum = Σ over used pixels when the bins span the whole detector."""
    r = np.random.default_rng(seed)
    shape = (21, 19)
    data = r.integers(0, 1000, (2,) + shape).astype(np.uint16)
    mask = r.random(shape) > 0.3
    mask[int(cy) % 21, int(cx) % 19] = True
    q_top = 40.0 * max(1.0, 1.0 / ratio) * ps  # beyond every pixel corner
    plan = make_plan(shape, center=(cy, cx), pixel_size=ps, edges=np.linspace(0, q_top, n_bins + 1), mask=mask,
                     ellipse_ratio=ratio, ellipse_angle=angle, split_pixels=split)  # fmt: skip
    prof = plan.integrate(data)
    np.testing.assert_allclose(prof.sum.sum(axis=-1), data[:, mask].sum(axis=-1), rtol=1e-12)
    np.testing.assert_allclose(prof.count.sum(axis=-1), mask.sum(), rtol=1e-12)


@pytest.mark.parametrize("split", [False, True])
def test_flat_image_gives_flat_mean(split):
    shape = (40, 44)
    data = np.full((2,) + shape, 7.25)
    plan = make_plan(shape, center=(20.3, 19.8), pixel_size=0.01, n_bins=15, q_max=0.45, ellipse_ratio=1.1,
                     ellipse_angle=0.5, split_pixels=split)  # fmt: skip
    for kw in ({}, {"shifts": np.array([[0.5, -1.2], [2.0, 0.3]])}, {"n_phi": 4}):
        prof = plan.integrate(data, **kw)
        filled = prof.count > 0
        np.testing.assert_allclose(prof.mean[filled], 7.25, rtol=1e-12)
        np.testing.assert_allclose(prof.sem_azimuthal[filled & (prof.count > 1)], 0.0, atol=1e-6)
        assert np.all(np.isnan(prof.mean[~filled]))
        # bins wholly beyond the detector (> 0.40 Å⁻¹ = 40 px; the farthest corner is < 36 px away) are NaN
        assert np.isnan(prof.mean[..., -2:]).all()
        assert np.all(prof.count[..., -2:] == 0)


@pytest.mark.parametrize("radius", [17.3, 31.8])
def test_ring_peaks_at_its_radius(radius):
    shape, center, ps = (96, 96), (47.6, 48.3), 0.004
    img = ring_image(shape, center, radius, 1.2)
    plan = make_plan(shape, center=center, pixel_size=ps, n_bins=45, q_max=45 * ps)
    prof = plan.integrate(img)
    k = int(np.nanargmax(prof.mean))
    assert abs(prof.q[k] - radius * ps) <= 0.5 * (plan.edges[1] - plan.edges[0])


def _fwhm_bins(y):
    y = np.nan_to_num(y)
    return int(np.sum(y >= 0.5 * y.max()))


def test_ellipse_correction_sharpens_elliptical_ring():
    shape, center, ps = (128, 128), (63.4, 64.2), 0.005
    ratio, angle, radius, width = 1.15, 0.6, 40.2, 0.8
    img = ring_image(shape, center, radius, width, ellipse_ratio=ratio, ellipse_angle=angle)
    edges = np.arange(20.0, 60.0, 0.5) * ps
    corrected = make_plan(shape, center=center, pixel_size=ps, edges=edges, ellipse_ratio=ratio,
                          ellipse_angle=angle).integrate(img).mean  # fmt: skip
    wrong_angle = make_plan(shape, center=center, pixel_size=ps, edges=edges, ellipse_ratio=ratio,
                            ellipse_angle=angle + np.pi / 2).integrate(img).mean  # fmt: skip
    plain = make_plan(shape, center=center, pixel_size=ps, edges=edges).integrate(img).mean
    # one sharp peak at the true radius: FWHM of the Gaussian ring (2.355·0.8 px ≈ 1.9 px ≈ 4 bins) plus a bin
    k = int(np.nanargmax(corrected))
    assert abs(0.5 * (edges[k] + edges[k + 1]) - radius * ps) <= 0.5 * (edges[1] - edges[0])
    assert _fwhm_bins(corrected) <= 5
    assert np.nanmax(corrected) > 0.9
    # the uncorrected profile smears the ring over radius·(ratio − 1) ≈ 6 px
    assert _fwhm_bins(plain) >= 8
    assert _fwhm_bins(wrong_angle) >= 8
    assert np.nanmax(plain) < 0.6


def test_shift_equals_integrating_shifted_image():
    """A pattern drawn (analytically, sub-pixel) about centre + shift, integrated with that shift, equals the
    pattern drawn about the centre integrated without a shift (up to pixel sampling)."""
    shape, center, ps = (128, 128), (63.7, 64.1), 0.005
    shifts = np.array([[0.0, 0.0], [3.37, -2.61], [-5.2, 4.45]])
    edges = np.arange(5.0, 55.0, 1.0) * ps

    def pattern(c):
        return ring_image(shape, c, 25.0, 4.0) + 0.6 * ring_image(shape, c, 41.0, 5.0) + 0.1

    plan = make_plan(shape, center=center, pixel_size=ps, edges=edges, ellipse_ratio=1.05, ellipse_angle=0.3)
    ref = plan.integrate(pattern(center)).mean
    stack = np.stack([pattern((center[0] + s[0], center[1] + s[1])) for s in shifts])
    got = plan.integrate(stack, shifts).mean
    for n in range(3):
        # exactly what a plan rebuilt about the moved centre gives
        moved = make_plan(shape, center=(center[0] + shifts[n, 0], center[1] + shifts[n, 1]), pixel_size=ps,
                          edges=edges, ellipse_ratio=1.05, ellipse_angle=0.3)  # fmt: skip
        np.testing.assert_allclose(got[n], moved.integrate(stack[n]).mean, rtol=1e-12)
        # and the same profile as the unmoved pattern up to pixel sampling (1-px bins on steep ring flanks)
        np.testing.assert_allclose(got[n], ref, rtol=0.03)
        assert np.mean(np.abs(got[n] / ref - 1)) < 0.005
    # and without the shift the moved pattern is visibly wrong (the test can fail)
    wrong = plan.integrate(stack).mean
    assert np.max(np.abs(wrong[2] - ref) / ref) > 0.05


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("n_phi", [1, 5])
def test_whole_pixel_shifts_equal_reference_at_the_moved_centre(dtype, n_phi):
    """Whole-pixel shifts take the look-up path (the plan's tables moved by the shift, no geometry per pixel):
    every field equals the slow reference about the moved centre — with an ellipse, a mask on detector pixels, NaN
    pixels, sectors and bins reaching past the detector edge (pixels a moved pattern brings from beyond the
    plan's own table still count). Centre fractions avoid exact ties on bin edges (there the last bit of the
    offset decides, see test_ties_on_bin_edges_agree_across_paths for exact ties)."""
    r = np.random.default_rng(4)
    shape, center, ps = (37, 33), (17.37, 15.61), 0.01
    edges = np.linspace(0.013, 0.23, 19)  # 23 px: past the detector edge for shifted patterns
    mask = r.random(shape) > 0.1
    data = r.poisson(40.0, (6,) + shape).astype(dtype)
    if dtype == np.float32:
        data[1, 3, 4] = data[2, 20, 18] = np.nan
    shifts = np.array([[0.0, 0.0], [3.0, -2.0], [-5.0, 4.0], [9.0, 1.0], [-1.0, -11.0], [2.0, 2.0]])
    plan = make_plan(shape, center=center, pixel_size=ps, edges=edges, mask=mask, ellipse_ratio=1.08,
                     ellipse_angle=0.7)  # fmt: skip
    got = plan.integrate(data, shifts, n_phi=n_phi if n_phi > 1 else None)
    for n in range(data.shape[0]):
        c = (center[0] + shifts[n, 0], center[1] + shifts[n, 1])
        ref = radial_reference(data[n].astype(float), center=c, pixel_size=ps, edges=edges, mask=mask,
                               ellipse_ratio=1.08, ellipse_angle=0.7, n_phi=n_phi)  # fmt: skip
        for f in FIELDS:
            assert_close(getattr(got, f)[n], ref[f] if n_phi > 1 else ref[f][0], rtol=1e-12, what=f"{f} {n}")
    # the sub-pixel kernels agree: a shift a hair off whole pixels takes them and bins the same pixels here
    off = plan.integrate(data, shifts + 1e-9, n_phi=n_phi if n_phi > 1 else None)
    np.testing.assert_array_equal(off.count, got.count)
    np.testing.assert_array_equal(off.sum, got.sum)


@pytest.mark.parametrize("split", [False, True])
def test_mean_profiles_equal_integrate(split, tmp_path):
    """RadialPlan.mean_profiles gives integrate()'s mean and sem_poisson rounded once to the requested dtype, on
    every path (fixed centre, sub-pixel and whole-pixel shifts, sectors, split pixels; counts and float data with
    NaN), from NumPy and h5py, in
    chunks of one pattern (serial) or many, into given arrays; bad arguments are named."""
    import h5py

    r = np.random.default_rng(8)
    shape = (29, 31)
    data = r.poisson(30.0, (3, 4) + shape).astype(np.uint16)
    plan = make_plan(shape, center=(14.2, 15.7), pixel_size=0.01, n_bins=11, q_max=0.13, ellipse_ratio=1.04,
                     ellipse_angle=0.2, split_pixels=split)  # fmt: skip
    sub = r.normal(0.0, 1.5, (3, 4, 2))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["d"] = data
    floats = data.astype(np.float32)
    floats[0, 1, 14, 20] = np.nan
    for arr, shifts in [(data, None), (data, sub), (data, np.rint(sub)), (floats, None), (floats, np.rint(sub))]:
        for n_phi in (None, 4):
            ref = plan.integrate(arr, shifts, n_phi=n_phi)
            for dtype in (np.float32, np.float64):
                for chunk in (1, 64):
                    m, e = plan.mean_profiles(arr, shifts, n_phi=n_phi, dtype=dtype, chunk_size=chunk)
                    assert m.dtype == dtype and m.shape == ref.mean.shape
                    np.testing.assert_array_equal(m, ref.mean.astype(dtype))
                    np.testing.assert_array_equal(e, ref.sem_poisson.astype(dtype))
    with h5py.File(tmp_path / "d.h5", "r") as f:
        out = (np.empty((3, 4, 4, 11), np.float32), np.empty((3, 4, 4, 11), np.float32))
        got = plan.mean_profiles(f["d"], sub, n_phi=4, out=out)
    assert got is out
    ref = plan.integrate(data, sub, n_phi=4)
    np.testing.assert_array_equal(out[0], ref.mean.astype(np.float32))
    with pytest.raises(ValueError, match="shifts"):
        plan.mean_profiles(data, sub[:2])
    with pytest.raises(ValueError, match="out"):
        plan.mean_profiles(data, out=(np.empty(3), np.empty(3)))
    with pytest.raises(ValueError, match="chunk_size"):
        plan.mean_profiles(data, chunk_size=0)
    with pytest.raises(ValueError, match="detector shape"):
        plan.mean_profiles(data[..., :5])


def test_subpixel_sectors_equal_plan_rebuilt_at_moved_centre():
    """Sectors with sub-pixel shifts take their azimuth from a look-up table (atan2 only near sector
    boundaries): counts and sums equal a plan rebuilt about the moved centre exactly (its tables use atan2 for
    every pixel) — many sector counts, ellipses, and centres on half pixels, which put pixels exactly on the
    sector boundaries (axes, diagonals)."""
    r = np.random.default_rng(3)
    shape = (41, 45)
    data = r.integers(0, 1000, (1,) + shape).astype(np.uint16)
    for trial in range(40):
        n_phi = int(r.choice([2, 4, 7, 8, 32, 36]))
        ratio = 1.0 if trial % 3 == 0 else float(r.uniform(0.8, 1.25))
        kw = dict(pixel_size=0.01, n_bins=30, q_max=0.3, ellipse_ratio=ratio, ellipse_angle=float(r.uniform(-3, 3)))
        c = (20.0, 22.0) if trial % 2 else (float(r.uniform(15, 25)), float(r.uniform(15, 25)))
        d = (float(r.integers(-3, 4)) + 0.5, float(r.integers(-3, 4))) if trial % 2 else tuple(r.normal(0, 2, 2))
        expect = make_plan(shape, center=(c[0] + d[0], c[1] + d[1]), **kw).integrate(data, n_phi=n_phi)
        plan = make_plan(shape, center=c, **kw)
        for arr in (data, data.astype(np.float32)):
            got = plan.integrate(arr, np.array([d]), n_phi=n_phi)
            np.testing.assert_array_equal(got.count, expect.count)
            np.testing.assert_array_equal(got.sum, expect.sum)


def test_replaced_plan_bins_about_its_own_centre(rng):
    """A plan's tables are derived from its defining fields: dataclasses.replace(plan, center=...) and
    plan.moved(...) must bin exactly like a plan made about the new centre (every path: fixed table, sectors,
    whole-pixel and sub-pixel shifts, mean_profiles), with a cache of their own. Tables carried over from the old
    centre would bin around it."""
    shape = (33, 35)
    data = rng.poisson(20.0, (3,) + shape).astype(np.uint16)
    mask = rng.random(shape) > 0.1
    kw = dict(pixel_size=0.01, n_bins=12, q_max=0.15, mask=mask, ellipse_ratio=1.05, ellipse_angle=0.3)
    old = make_plan(shape, center=(16.0, 17.0), **kw)
    sub = np.array([[0.25, -0.5], [1.5, 0.75], [-0.3, 0.1]])
    whole = np.array([[1.0, -2.0], [0.0, 3.0], [-1.0, 0.0]])
    for args in ((), (sub,), (whole,)):
        old.integrate(data, *args)  # fill the old plan's caches
        old.integrate(data, *args, n_phi=4)
    old.mean_profiles(data, n_phi=4)
    new_center = (14.3, 18.6)
    expect = make_plan(shape, center=new_center, **kw)
    for plan in (dataclasses.replace(old, center=new_center), old.moved(new_center)):
        assert plan.center == new_center and plan._cache is not old._cache
        np.testing.assert_array_equal(plan.bin_table, expect.bin_table)
        np.testing.assert_array_equal(plan.count, expect.count)
        for args in ((), (sub,), (whole,)):
            for n_phi in (None, 4):
                got, exp = plan.integrate(data, *args, n_phi=n_phi), expect.integrate(data, *args, n_phi=n_phi)
                np.testing.assert_array_equal(got.count, exp.count)
                np.testing.assert_array_equal(got.sum, exp.sum)
        for a, b in zip(plan.mean_profiles(data, n_phi=4), expect.mean_profiles(data, n_phi=4)):
            np.testing.assert_array_equal(a, b)
    # the old plan still bins about its own centre, and the other defining fields rebuild the tables as well
    np.testing.assert_array_equal(old.bin_table, make_plan(shape, center=(16.0, 17.0), **kw).bin_table)
    unmasked = dataclasses.replace(old, mask=None)
    assert unmasked.mask.all() and unmasked.count.sum() > old.count.sum()
    with pytest.raises(ValueError, match="center"):
        dataclasses.replace(old, center=(np.nan, 1.0))


def test_subpixel_shift_onto_a_pixel_centre_with_sectors(rng):
    """A sub-pixel shift can put the centre exactly on a pixel centre (half-integer plan centre, shift ½ px):
    that pixel's offset is (0, 0), its sector atan2(0, 0) = 0, as for a plan made about the moved centre (the
    diamond angle 0/0 must not raise)."""
    shape = (24, 26)
    data = rng.poisson(30.0, (2,) + shape).astype(np.uint16)
    kw = dict(pixel_size=0.01, n_bins=8, q_max=0.1)
    plan = make_plan(shape, center=(10.5, 12.5), **kw)
    shifts = np.array([[0.5, -0.5], [-0.5, 0.5]])
    for n_phi in (3, 8):
        for arr in (data, data.astype(np.float64)):
            got = plan.integrate(arr, shifts, n_phi=n_phi)
            mean, _ = plan.mean_profiles(arr, shifts, n_phi=n_phi, dtype=np.float64)
            for n, c in enumerate(((11.0, 12.0), (10.0, 13.0))):
                exp = make_plan(shape, center=c, **kw).integrate(arr[n], n_phi=n_phi)
                np.testing.assert_array_equal(got.count[n], exp.count)
                np.testing.assert_array_equal(got.sum[n], exp.sum)
                np.testing.assert_array_equal(mean[n], exp.mean)


@pytest.mark.parametrize("n_phi", [None, 5])
def test_subpixel_shifts_identical_for_every_dtype(rng, n_phi):
    """The sub-pixel shifted kernels sum uint8/uint16 data exactly in integers with one accumulator copy per bin
    and other dtypes in float64 with four interleaved copies: on integer-valued counts every field must be the
    same bit for bit for uint8, uint16, uint32, float32 and float64 (integer sums below 2^53 are exact in float64
    in any order), and equal to the slow reference — odd non-square detector, mask, ellipse, centres moved onto
    pixel centres, pixel edges and arbitrary sub-pixel positions."""
    shape = (27, 38)
    data = rng.poisson(40.0, (5,) + shape).clip(0, 255)
    mask = rng.random(shape) > 0.1
    kw = dict(pixel_size=0.01, n_bins=11, q_max=0.13, mask=mask, ellipse_ratio=1.07, ellipse_angle=0.4)
    center = (13.0, 18.5)
    plan = make_plan(shape, center=center, **kw)
    shifts = np.array([[0.5, 0.0], [0.0, -0.5], [0.25, 0.75], [-1.5, 2.5], [0.3141, -0.2718]])
    expect = plan.integrate(data.astype(np.float64), shifts, n_phi=n_phi)
    for dt in (np.uint8, np.uint16, np.uint32, np.float32):
        got = plan.integrate(data.astype(dt), shifts, n_phi=n_phi)
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(got, f), getattr(expect, f), err_msg=f"{np.dtype(dt)} {f}")
        mean, sem = plan.mean_profiles(data.astype(dt), shifts, n_phi=n_phi, dtype=np.float64)
        np.testing.assert_array_equal(mean, expect.mean)
        np.testing.assert_array_equal(sem, expect.sem_poisson)
    for n in range(data.shape[0]):
        c = (center[0] + shifts[n, 0], center[1] + shifts[n, 1])
        ref = radial_reference(
            data[n].astype(np.float64), center=c, pixel_size=0.01, edges=plan.edges, mask=mask, ellipse_ratio=1.07,
            ellipse_angle=0.4, n_phi=n_phi or 1,
        )  # fmt: skip
        for f in FIELDS:
            assert_close(getattr(expect, f)[n], ref[f] if n_phi else ref[f][0], what=f"{f} pattern {n}")


def test_parallel_finishing_pass_is_identical(rng):
    """Many patterns × bins finish on all threads with the same arithmetic per bin as the serial pass."""
    from simkit.radial.kernels import _NF, _PARALLEL_FINISH_BINS, _k_finish, _k_finish_parallel

    n, nb = 8, _PARALLEL_FINISH_BINS // 4
    acc = rng.poisson(5.0, (n, _NF, nb)).astype(float)
    acc[:, 0] = rng.integers(0, 3, (n, nb))
    acc[:, 3] = acc[:, 0]
    acc[:, 5] = rng.normal(size=(n, nb))
    for statistic in (0, 1, 2):
        a = [np.empty((n, nb)) for _ in range(5)]
        b = [np.empty((n, nb)) for _ in range(5)]
        _k_finish(acc, statistic, *a)
        _k_finish_parallel(acc, statistic, *b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_masked_and_nan_pixels_never_contribute(rng):
    shape = (40, 40)
    data = rng.poisson(20.0, (2,) + shape).astype(np.float64)
    mask = np.ones(shape, bool)
    mask[5:15, 20:30] = False
    nanpix = (rng.integers(0, 40, 30), rng.integers(0, 40, 30))
    both = mask.copy()
    both[nanpix] = False
    poisoned = data.copy()
    poisoned[:, ~mask] = 1e30
    poisoned[(slice(None),) + nanpix] = np.nan
    for split in (False, True):
        kw = dict(center=(19.5, 20.2), pixel_size=0.01, n_bins=12, q_max=0.2, split_pixels=split)
        for st_ in ("mean", "median", "clipped"):
            a = make_plan(shape, mask=mask, **kw).integrate(poisoned, statistic=st_)
            b = make_plan(shape, mask=both, **kw).integrate(data, statistic=st_)
            for f in FIELDS:
                assert_close(getattr(a, f), getattr(b, f), rtol=1e-12, what=f"{st_} {f}")
        assert np.all(np.isfinite(a.sum))


def test_uint16_sums_never_overflow():
    shape = (256, 256)
    data = np.full((2,) + shape, 65535, np.uint16)
    plan = make_plan(shape, center=(127.5, 127.5), pixel_size=0.01, edges=[0.0, 5.0])  # one bin, whole detector
    prof = plan.integrate(data)
    np.testing.assert_array_equal(prof.sum, [[65535.0 * 65536], [65535.0 * 65536]])
    np.testing.assert_array_equal(prof.mean, 65535.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fixed_centre_packed_sums_exact(rng, dtype):
    """The fixed-centre kernel for unsigned integer data packs Σ I and Σ I² into one word when a pattern's maximum
    allows it and falls back to separate sums otherwise (per group of patterns and for the remainder): every
    pattern equals the same data as float64 (integer sums < 2^53 exact, a different kernel) bit for bit, and the
    NumPy reference."""
    shape = (40, 44)
    mask = rng.random(shape) > 0.05
    plan = make_plan(shape, center=(19.3, 22.6), pixel_size=0.01, n_bins=18, q_max=0.2, mask=mask)
    top = np.iinfo(dtype).max
    data = rng.integers(0, 40, (10,) + shape).astype(dtype)
    data[5, 20, 20] = top  # too large to pack: pattern 5's group of patterns falls back
    data[9, 3, 30] = top  # ... and one of the remainder
    data[7] = rng.integers(0, top + 1, shape).astype(dtype)  # whole range
    prof = plan.integrate(data)
    exact = plan.integrate(data.astype(np.float64))
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(prof, f), getattr(exact, f), err_msg=f)
    for n in (0, 5, 7, 9):
        ref = radial_reference(data[n], center=(19.3, 22.6), pixel_size=0.01, edges=plan.edges, mask=mask)
        for f in FIELDS:
            assert_close(getattr(prof, f)[n], ref[f][0], what=f"{f} pattern {n}")


def test_clipped_and_median_reject_bragg_spots(rng):
    """Amorphous background (Poisson, mean 50) plus a few bright Bragg spots: the clipped mean and the median
    stay at the background, the plain mean does not."""
    shape, center = (96, 96), (47.5, 47.5)
    img = rng.poisson(50.0, shape).astype(float)
    iy, ix = np.indices(shape)
    for a in np.arange(6) * np.pi / 3:  # six spots on a ring of radius 30 px
        d2 = (iy - center[0] - 30 * np.sin(a)) ** 2 + (ix - center[1] - 30 * np.cos(a)) ** 2
        img += 5000.0 * np.exp(-0.5 * d2 / 0.5**2)  # sharp spots, σ = 0.5 px
    plan = make_plan(shape, center=center, pixel_size=0.01, edges=[0.28, 0.32])
    mean = plan.integrate(img).mean[0]
    clipped = plan.integrate(img, statistic="clipped").mean[0]
    median = plan.integrate(img, statistic="median").mean[0]
    assert mean > 90  # the spots (≈ 47k counts over ≈ 750 ring pixels) bias the plain mean
    assert abs(clipped - 50) < 3
    assert abs(median - 50) < 3


def test_sectors_separate_anisotropic_scattering():
    """I ∝ 1 + cos 2φ: sector means follow the analytic sector average, and sectors add up to the full profile."""
    shape, center = (80, 80), (39.5, 40.0)
    iy, ix = np.indices(shape, dtype=float)
    phi = np.arctan2(iy - center[0], ix - center[1])
    img = 1.0 + np.cos(2 * phi)
    plan = make_plan(shape, center=center, pixel_size=0.01, n_bins=8, q_min=0.1, q_max=0.35)
    prof = plan.integrate(img, n_phi=4)
    assert prof.mean.shape == (4, 8)
    # sector average of cos 2φ over [a, a + Δ] is cos(2·mid)·sin(Δ)/Δ; with 8 sectors Δ = π/4
    prof8 = plan.integrate(img, n_phi=8)
    mid = (np.arange(8) + 0.5) * 2 * np.pi / 8
    expect = 1 + (8 / (2 * np.pi)) * np.sin(2 * np.pi / 8) * np.cos(2 * mid)
    np.testing.assert_allclose(prof8.mean, np.broadcast_to(expect[:, None], (8, 8)), atol=0.05)
    full = plan.integrate(img)
    np.testing.assert_allclose(prof.sum.sum(axis=0), full.sum, rtol=1e-12)
    np.testing.assert_allclose(prof.count.sum(axis=0), full.count, rtol=1e-12)
    np.testing.assert_allclose(prof.phi_edges, np.linspace(0, 2 * np.pi, 5))


def test_agrees_with_pyfai_integrate1d():
    """Smooth ring image: our Q = 1/d profile equals pyFAI's integrate1d (q in 2π/d, pixel-corner PONI)."""
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    shape, center = (256, 256), (127.6, 128.3)
    energy, mrad_per_px = 300e3, 0.1
    ps = pixel_size_from_mrad(mrad_per_px, energy)
    pix, dist = 55e-6, 55e-6 / (mrad_per_px * 1e-3)  # camera length giving 0.1 mrad per pixel
    from simkit.units import wavelength

    lam_m = wavelength(energy) * 1e-10
    img = 2.0 * ring_image(shape, center, 60.0, 6.0) + ring_image(shape, center, 95.0, 8.0) + 0.3
    poni1, poni2 = center_to_pyfai(center, pix, pix)
    ai = AzimuthalIntegrator(dist=dist, poni1=poni1, poni2=poni2, detector=Detector(pix, pix, max_shape=shape),
                             wavelength=lam_m)  # fmt: skip
    n_bins = 100
    q_lo, q_hi = 10 * ps, 120 * ps  # Å⁻¹, Q = 1/d
    res = ai.integrate1d(
        img, n_bins, unit="q_A^-1", radial_range=(2 * np.pi * q_lo, 2 * np.pi * q_hi),
        method=("no", "histogram", "cython"), correctSolidAngle=False, polarization_factor=None,
    )  # fmt: skip
    q_pyfai = res.radial / (2 * np.pi)
    # pyFAI's q = 4π sin θ / λ is not exactly linear in the detector radius: map its bin centres back to radius
    # through the exact geometry (2θ = atan(r / dist)) so that both integrate the same pixel annuli.
    q_edges = np.linspace(q_lo, q_hi, n_bins + 1)  # pyFAI's bins are uniform in its q over radial_range
    np.testing.assert_allclose(0.5 * (q_edges[1:] + q_edges[:-1]), q_pyfai, rtol=1e-6)
    r_px = np.tan(2 * np.arcsin(q_edges * wavelength(energy) / 2)) * dist / pix
    prof = make_plan(shape, center=center, pixel_size=ps, edges=r_px * ps).integrate(img)
    np.testing.assert_allclose(prof.mean, res.intensity, rtol=0.01)
    # the Q axes agree within 1 % too (small-angle mapping vs pyFAI's exact geometry)
    np.testing.assert_allclose(prof.q, q_pyfai, rtol=0.01)


def _chi2_consistency(n_real, shape, rng):
    plan = make_plan(shape, center=(shape[0] / 2 - 0.3, shape[1] / 2 + 0.2), pixel_size=0.01, n_bins=20,
                     q_min=0.02)  # fmt: skip
    expect = 5.0 + 40.0 * ring_image(shape, plan.center, 0.4 * shape[0], 3.0)
    data = rng.poisson(expect, (n_real,) + shape).astype(np.uint16)
    prof = plan.integrate(data)
    mu = plan.integrate(expect).mean  # the true mean per bin (noise-free pattern)
    z2 = ((prof.mean - mu) / prof.sem_poisson) ** 2
    chi2 = float(np.sum(z2))
    dof = z2.size
    return chi2, dof


def test_sem_poisson_consistent_with_scatter_chi2(rng):
    """200 Poisson realisations: Σ ((mean − truth)/sem)² over all bins and realisations is χ²(dof)."""
    chi2, dof = _chi2_consistency(200, (48, 48), rng)
    # χ² with dof = 4000 has sd sqrt(2 dof) ≈ 89; accept ±4 sd (z-test on the aggregate, not per bin)
    assert abs(chi2 - dof) < 4 * math.sqrt(2 * dof), (chi2, dof)


def test_sem_azimuthal_matches_sem_poisson_for_flat_poisson(rng):
    """For a flat Poisson image the ring scatter is the counting noise: both standard errors agree."""
    data = rng.poisson(100.0, (50, 64, 64)).astype(np.uint16)
    prof = make_plan((64, 64), center=(31.5, 32.5), pixel_size=0.01, n_bins=10, q_min=0.05).integrate(data)
    ratio = np.nanmean(prof.sem_azimuthal / prof.sem_poisson)
    assert ratio == pytest.approx(1.0, abs=0.03)


# --------------------------------------------------------------------------------------------------------
# data containers
# --------------------------------------------------------------------------------------------------------
def test_h5py_and_dask_equal_numpy(rng, tmp_path):
    import dask.array as da
    import h5py

    shape = (3, 5, 32, 36)
    data = rng.poisson(15.0, shape).astype(np.uint16)
    shifts = rng.normal(0, 1, shape[:2] + (2,))
    plan = make_plan((32, 36), center=(15.2, 17.9), pixel_size=0.01, n_bins=12, split_pixels=False)
    for sh in (None, shifts):
        ref = plan.integrate(data, sh)
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f.create_dataset("data", data=data, chunks=(1, 2, 32, 36))
            got_h5 = plan.integrate(f["data"], sh, chunk_size=4, progress=False)
        got_da = plan.integrate(da.from_array(data, chunks=(2, 3, 16, 36)), None if sh is None else da.from_array(sh))
        got_mm = None
        mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint16, shape=shape)
        mm[:] = data
        mm.flush()
        got_mm = plan.integrate(np.load(tmp_path / "x.npy", mmap_mode="r"), sh, chunk_size=7)
        for got in (got_h5, got_da, got_mm):
            for f in FIELDS:
                np.testing.assert_array_equal(getattr(got, f), getattr(ref, f))
            assert got.mean.shape == (3, 5, 12)


def test_single_pattern_and_leading_dims(rng):
    plan = make_plan((20, 20), center=(9.5, 9.5), pixel_size=0.01, n_bins=5)
    img = rng.random((20, 20))
    one = plan.integrate(img)
    assert isinstance(one, RadialProfiles)
    assert one.mean.shape == (5,)
    many = plan.integrate(np.broadcast_to(img, (2, 3, 4, 20, 20)))
    assert many.mean.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(many.mean[1, 2, 3], one.mean)
    assert one.q.shape == (5,) and one.edges.shape == (6,)


# --------------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"center": (np.nan, 3.0)}, "center"),
        ({"center": (1.0, np.inf)}, "center"),
        ({"edges": [0.1, 0.05, 0.2]}, "edges"),
        ({"edges": [0.1, 0.1]}, "edges"),
        ({"edges": [5.0, 6.0]}, "edges"),  # Q range with no pixel on the detector
        ({"q_min": 3.0, "q_max": 4.0}, "q range"),
        ({"mask": np.ones((5, 5), bool)}, "mask.shape"),
        ({"mask": np.ones((20, 20), int)}, "mask.dtype"),
        ({"pixel_size": -1.0}, "pixel_size"),
        ({"ellipse_ratio": 0.0}, "ellipse_ratio"),
        ({"n_bins": 0}, "n_bins"),
    ],
)
def test_bad_plan_arguments_are_named(kwargs, name):
    kw = dict(center=(10.0, 10.0), pixel_size=0.01)
    kw.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        make_plan((20, 20), **kw)


def test_bad_integrate_arguments_are_named():
    plan = make_plan((20, 20), center=(10.0, 10.0), pixel_size=0.01)
    data = np.zeros((3, 20, 20))
    with pytest.raises(ValueError, match="data.shape"):
        plan.integrate(np.zeros((3, 20, 21)))
    with pytest.raises(ValueError, match="shifts.shape"):
        plan.integrate(data, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="shifts.shape"):
        plan.integrate(data, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shifts"):
        plan.integrate(data, np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="statistic"):
        plan.integrate(data, statistic="mode")
    with pytest.raises(ValueError, match="n_phi"):
        plan.integrate(data, n_phi=0)
    with pytest.raises(TypeError, match="data"):
        plan.integrate([[1, 2], [3, 4]])
    with pytest.raises(TypeError, match="data.dtype"):
        plan.integrate(np.zeros((20, 20), complex))


def test_other_dtypes_and_progress(rng, capsys):
    """Integer, big-endian, float32 and bool data give the float64 result; progress=True draws a bar."""
    plan = make_plan((24, 24), center=(11.6, 12.2), pixel_size=0.01, n_bins=8)
    data = rng.integers(0, 200, (5, 24, 24))
    ref = plan.integrate(data.astype(np.float64))
    for dt in (np.uint8, np.int16, np.int32, np.uint32, ">u2", np.float32):
        got = plan.integrate(data.astype(dt), chunk_size=2, progress=True)
        for f in FIELDS:
            np.testing.assert_allclose(getattr(got, f), getattr(ref, f), rtol=1e-6, err_msg=f"{dt} {f}")
    assert "radial" in capsys.readouterr().err
    # uint32 counts (high dose) through the shifted, whole-pixel and sector kernels: the float64 sums exactly
    big = (data * 70000).astype(np.uint32)
    for sh in (rng.normal(0.0, 1.5, (5, 2)), np.rint(rng.normal(0.0, 1.5, (5, 2)))):
        for n_phi in (None, 4):
            a = plan.integrate(big, sh, n_phi=n_phi)
            b = plan.integrate(big.astype(np.float64), sh, n_phi=n_phi)
            np.testing.assert_array_equal(a.sum, b.sum)
            np.testing.assert_array_equal(a.mean, b.mean)
            np.testing.assert_array_equal(plan.mean_profiles(big, sh, n_phi=n_phi)[0], b.mean.astype(np.float32))
    flags = rng.random((3, 24, 24)) > 0.5
    np.testing.assert_allclose(plan.integrate(flags).sum, plan.integrate(flags.astype(float)).sum)


# --------------------------------------------------------------------------------------------------------
# direct float32 bins of the sub-pixel shifted sector kernel
# --------------------------------------------------------------------------------------------------------
def test_direct_angle_error_bound():
    """The float32 polynomial arctangent of the direct kernel stays within the bound its margins assume."""
    from simkit.radial.geometry import _ATAN_ERR, _atan01

    t = np.linspace(0.0, 1.0, 100001).astype(np.float32)
    got = np.array([_atan01(v) for v in t[::50]], np.float64)
    err = np.abs(got - np.arctan(t[::50].astype(np.float64)))
    assert err.max() < _ATAN_ERR


def _shift_vs(kernel, plan, data, shifts, n_phi):
    """Accumulators of the look-up kernel _k_shift and of ``kernel`` ("direct": _k_direct, "sectors": _k_sectors)
    on the same patterns: (a, b), each (n, _NF, n_phi·n_q)."""
    from simkit.radial.kernels import _NF, _k_direct, _k_sectors, _k_shift

    m00, m01, m11 = plan._geo()
    ny, nx = plan.shape
    thr, lut, inv_h = plan._s_tables()
    block = np.ascontiguousarray(data.reshape(data.shape[0], -1))
    nb = n_phi * plan.n_q
    a, b = np.empty((data.shape[0], _NF, nb)), np.empty((data.shape[0], _NF, nb))
    args = (block, shifts, ny, nx, plan.center[0], plan.center[1], m00, m01, m11, thr, lut, inv_h, n_phi)
    _k_shift(*args, plan._phi_lookup(n_phi), plan.mask.ravel(), a)
    if kernel == "direct":
        prm = plan._direct_params(n_phi)
        assert prm is not None
        _k_direct(*args, prm, plan.mask.ravel(), b)
    else:
        sp = plan._segment_params(n_phi)
        assert sp is not None
        _k_sectors(*args, *sp, plan.mask.ravel(), plan._sector_cmax(n_phi), b)
    return a, b


@pytest.mark.parametrize("n_phi", [1, 4, 8, 32, 7])
def test_direct_sector_bins_equal_lookup_kernel(rng, n_phi):
    """The direct kernel (float32 bins, exact arithmetic within a margin of every boundary) gives the look-up
    kernel's accumulators bit for bit: integer centres with bins and sectors whose boundaries pass exactly
    through pixel centres (ties on axes, diagonals and Pythagorean radii), shifts of ±0.5 px and several px,
    a centre near and off the detector edge, a mask, an ellipse, uint16 and float64 data."""
    shape = (37, 41)
    data = rng.poisson(40.0, (12,) + shape).astype(np.uint16)
    mask = rng.random(shape) > 0.1
    shifts = np.array(
        [[0.0, 0.0], [0.5, -0.5], [-0.5, 0.5], [3.0, -4.0], [2.7, 5.3], [-6.2, 1.1], [1e-12, -1e-12]]
        + rng.normal(0.0, 1.5, (5, 2)).tolist()
    )
    for center, ratio, angle in (((18.0, 20.0), 1.0, 0.0), ((17.3, 21.6), 1.08, 0.5), ((1.2, 39.5), 0.93, -1.0)):
        for edges in (np.arange(0, 19) * 0.25, np.linspace(0.1, 4.0, 23)):
            plan = make_plan(
                shape, center=center, pixel_size=0.25, edges=edges, mask=mask, ellipse_ratio=ratio,
                ellipse_angle=angle,
            )  # fmt: skip
            for d in (data, data.astype(np.float64)):
                a, b = _shift_vs("direct", plan, d, shifts, n_phi)
                np.testing.assert_array_equal(a, b, err_msg=f"{center} {ratio} {edges[:2]} {d.dtype}")


def test_direct_falls_back_for_many_bins_or_uneven_edges():
    """Margins above the limit (40000 bins) and non-uniform edges take the look-up kernel (params None)."""
    plan = make_plan((21, 19), center=(10.0, 9.0), pixel_size=0.01, edges=np.linspace(0.0, 0.1, 40001))
    assert plan._direct_params(8) is None
    uneven = make_plan((21, 19), center=(10.0, 9.0), pixel_size=0.01, edges=[0.0, 0.01, 0.03, 0.07])
    assert uneven._direct_params(8) is None
    assert make_plan((21, 19), center=(10.0, 9.0), pixel_size=0.01, n_bins=9)._direct_params(8) is not None


# --------------------------------------------------------------------------------------------------------
# segment sectors, float32 radii and packed sums (uint8/uint16, sub-pixel shifts, n_phi > 1)
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_phi", [2, 4, 8, 32, 7])
def test_segment_sector_bins_equal_lookup_kernel(rng, n_phi):
    """The segment sector kernel (sectors from each row's boundary crossings, radii in float32, exact arithmetic
    within a margin of every boundary, packed sums) gives the look-up kernel's accumulators bit for bit: integer
    centres whose rows and sector boundaries pass exactly through pixel centres (ties on axes, diagonals and
    Pythagorean radii), shifts of ±0.5 px and several px, centres near and off the detector edge, a mask, an
    ellipse, uint8 and uint16 data, a pattern too bright to pack (65535 counts)."""
    shape = (37, 41)
    data = rng.poisson(40.0, (12,) + shape).astype(np.uint16)
    data[3, 5, 7] = 65535  # too bright to pack: the separate accumulators
    mask = rng.random(shape) > 0.1
    shifts = np.array(
        [[0.0, 0.0], [0.5, -0.5], [-0.5, 0.5], [3.0, -4.0], [2.7, 5.3], [-6.2, 1.1], [1e-12, -1e-12]]
        + rng.normal(0.0, 1.5, (5, 2)).tolist()
    )
    for center, ratio, angle in (
        ((18.0, 20.0), 1.0, 0.0), ((17.3, 21.6), 1.08, 0.5), ((1.2, 39.5), 0.93, -1.0), ((18.0, 20.0), 1.0, 0.3),
        ((-3.0, 44.0), 1.0, 0.0),
    ):  # fmt: skip
        for edges in (np.arange(0, 19) * 0.25, np.linspace(0.1, 4.0, 23)):
            plan = make_plan(
                shape, center=center, pixel_size=0.25, edges=edges, mask=mask, ellipse_ratio=ratio,
                ellipse_angle=angle,
            )  # fmt: skip
            for d in (data, data.clip(0, 255).astype(np.uint8)):
                a, b = _shift_vs("sectors", plan, d, shifts, n_phi)
                np.testing.assert_array_equal(a, b, err_msg=f"{center} {ratio} {edges[:2]} {d.dtype}")


@pytest.mark.parametrize("ratio, angle, n_phi", [(1.0, 0.0, 32), (1.1, 0.7, 8), (0.9, -0.4, 3), (1.0, 0.0, 2)])
def test_sector_count_bound_holds_for_any_centre(rng, ratio, angle, n_phi):
    """The packed sector sums size their fields from geometry.sector_count_bound: no (sector, bin) of the slow
    reference ever holds more pixels, for random sub-pixel centres, integer centres (ties) and half-integer ones."""
    shape = (64, 64)
    plan = make_plan(
        shape, center=(31.5, 31.5), pixel_size=0.01, n_bins=28, q_max=0.3, ellipse_ratio=ratio, ellipse_angle=angle
    )  # fmt: skip
    bound = plan._sector_cmax(n_phi)
    iy, ix = np.indices(shape, dtype=float)
    centres = rng.uniform(28.0, 36.0, (40, 2)).tolist() + [[32.0, 32.0], [31.5, 32.0], [32.5, 31.5]]
    most = 0
    for cy, cx in centres:
        xc, yc = radial_corrected_offsets(iy - cy, ix - cx, ratio, angle)
        q = np.hypot(xc, yc) * 0.01
        k = np.searchsorted(plan.edges, q, side="right") - 1
        phi = np.mod(np.arctan2(yc, xc), 2 * np.pi)
        s = np.minimum((phi * n_phi / (2 * np.pi)).astype(int), n_phi - 1)
        inside = (k >= 0) & (k < plan.n_q)
        most = max(most, np.bincount((s * plan.n_q + k)[inside]).max())
    assert most <= bound
    assert bound < 2.5 * most + 12  # and not uselessly loose


def test_packed_sector_sums_exact_at_the_packing_limit(rng):
    """uint16 patterns whose maximum is the largest that still packs (count, Σ I, Σ I² in one word, every pixel
    of some bins at that maximum: the fields filled as far as the data allow) and the next value (separate
    accumulators): integrate equals the same data as float64 (the float kernel, integer sums exact) bit for bit,
    and the slow reference."""
    from simkit.radial.kernels import _sector_pack

    shape = (40, 44)
    center = (19.3, 22.6)
    kw = dict(pixel_size=0.01, mask=rng.random(shape) > 0.05, ellipse_ratio=1.05, ellipse_angle=0.3)
    plan = make_plan(shape, center=center, n_bins=6, q_max=0.2, **kw)
    cb = np.uint64(plan._sector_cmax(4))
    top = max(v for v in range(1, 65536) if _sector_pack(cb, np.uint64(v))[1] > 0)
    assert top < 65535 and _sector_pack(cb, np.uint64(top + 1))[1] == 0
    data = rng.integers(0, 50, (6,) + shape).astype(np.uint16)
    data[0] = top  # every bin at the limit
    data[1, :, :20] = top
    data[2] = top + 1  # one above: not packed
    data[3, 10, 10] = top + 1
    shifts = rng.normal(0.0, 1.2, (6, 2))
    prof = plan.integrate(data, shifts, n_phi=4)
    exact = plan.integrate(data.astype(np.float64), shifts, n_phi=4)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(prof, f), getattr(exact, f), err_msg=f)
    for n in (0, 1, 2, 4):
        c = (center[0] + shifts[n, 0], center[1] + shifts[n, 1])
        ref = radial_reference(data[n], center=c, edges=plan.edges, n_phi=4, **kw)
        for f in FIELDS:
            assert_close(getattr(prof, f)[n], ref[f], what=f"{f} pattern {n}")


@pytest.mark.parametrize("n_phi", [None, 8])
@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_integrate_into_out_equals_fresh_output(n_phi, dtype):
    # out= reuses an earlier result's arrays: every field equal bit for bit to a fresh call (same kernels), the
    # returned profiles share out's memory, and nothing of the earlier data survives
    rng = np.random.default_rng(5)
    data = rng.poisson(20.0, (3, 4, 64, 64)).astype(dtype)
    plan = make_plan((64, 64), center=(31.6, 32.3), pixel_size=0.01, n_bins=24, q_max=0.3)
    shifts = rng.normal(0.0, 1.2, (3, 4, 2))
    fresh = plan.integrate(data, shifts, n_phi=n_phi)
    prev = plan.integrate(data[..., ::-1, :].copy() * 2, shifts[::-1].copy(), n_phi=n_phi)
    again = plan.integrate(data, shifts, n_phi=n_phi, out=prev)
    for f in ("mean", "sum", "count", "sem_poisson", "sem_azimuthal"):
        assert np.array_equal(getattr(fresh, f), getattr(again, f), equal_nan=True), f
        assert np.shares_memory(getattr(again, f), getattr(prev, f)), f
    # the general (median) path fills out by copy
    med = plan.integrate(data, shifts, n_phi=n_phi, statistic="median")
    med2 = plan.integrate(data, shifts, n_phi=n_phi, statistic="median", out=prev)
    assert np.array_equal(med.mean, med2.mean, equal_nan=True) and np.shares_memory(med2.mean, prev.mean)


def test_integrate_out_of_the_wrong_shape_is_refused():
    plan = make_plan((32, 32), center=(16.0, 16.0), pixel_size=0.01, n_bins=10, q_max=0.15)
    data = np.ones((4, 32, 32), np.uint16)
    other = plan.integrate(data[:3])
    with pytest.raises(ValueError, match="out.mean: need a C-contiguous float64 array of shape"):
        plan.integrate(data, out=other)
    sectors = plan.integrate(data, n_phi=4)
    with pytest.raises(ValueError, match="same leading shape and n_phi"):
        plan.integrate(data, out=sectors)
