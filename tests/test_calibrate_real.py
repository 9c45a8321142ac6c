"""fitting.calibrate on real detector frames (tests/data/real, see its README for sources, licences and how each
reference was measured) and on the centre/ellipse test geometries of pyFAI and pyxem, re-expressed.

References are independent of this code: the Bi ring centre and radius (project reference), the pixstem ring
radius (project reference) and its direct-beam centre by py4DSTEM's method (centre of mass of the thresholded
central disc) re-derived here in plain NumPy; analytic centroids and ellipse parameters for the pyFAI and pyxem
geometries.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from fitting import calibrate as cal

DATA = Path(__file__).resolve().parent / "data" / "real"


def _need(name):
    p = DATA / name
    if not p.is_file():
        pytest.skip(f"{p} not shipped (see tests/data/real/README.md)")
    return p


@pytest.fixture(scope="module")
def bismuth():
    from rsciio.digitalmicrograph import file_reader

    img = file_reader(str(_need("bismuth.dm4")))[0]["data"].astype(float)
    mask = np.ones(img.shape, dtype=bool)
    mask[:152, 90:109] = False  # the rod of the beam stop (columns 92–106, rows 0–149) with a 2 px margin
    return img, mask


@pytest.fixture(scope="module")
def merlin_spots():
    from rsciio.quantumdetector import file_reader

    return file_reader(str(_need("test.mib")))[0]["data"].astype(float)


@pytest.fixture(scope="module")
def pixstem_scan():
    import h5py

    with h5py.File(_need("fpd_file_test.hdf5"), "r") as f:
        return np.asarray(f["fpd_expt/fpd_data/data"])[:, :, 0]  # (2, 2, 256, 256) uint16


# ---------------------------------------------------------------------------------------------------------------
# Bi powder pattern behind a beam stop
def test_bismuth_ring_centre_and_radius_behind_the_beam_stop(bismuth):
    img, mask = bismuth
    fit = cal.find_center(img, mask=mask)
    assert fit.method == "ring"
    assert math.hypot(fit.center[0] - 141.68, fit.center[1] - 99.26) < 0.3, fit
    assert abs(fit.radius - 38.86) < 0.15, fit.radius
    # no direct beam to follow: the per-pattern centre finder refuses instead of landing on the beam stop
    with pytest.raises(cal.CenterError, match="direct-beam"):
        cal.find_centers(img[None], mask=mask)
    # without the beam-stop mask nothing is confirmed: an error, not a centre 67 px off
    with pytest.raises(cal.CenterError):
        cal.find_center(img)
    # the end-to-end calibration falls back to the ring centre for every pattern, and says so
    with pytest.warns(UserWarning, match="no direct beam"):
        k = cal.calibrate(np.broadcast_to(img, (1, 2) + img.shape), pixel_size=0.01, mask=mask)
    assert math.hypot(k.plan.center[0] - 141.68, k.plan.center[1] - 99.26) < 0.3
    assert "ring centre" in k.info["center_source"] and not k.plan.mask[:152, 90:109].any()


def test_ellipse_on_bismuth_agrees_with_the_ray_fit_and_a_masked_circle_stays_round(bismuth):
    img, mask = bismuth
    c = cal.find_center(img, mask=mask).center
    ell = cal.fit_ellipse(img, center=c, r_range=(33.0, 45.0), mask=mask)
    ray_ratio, ray_angle, b, n = cal._ray_ellipse(img, c, (33.0, 45.0), mask)
    assert n > 100 and abs(ell.ratio - ray_ratio) < 0.003, (ell.ratio, ray_ratio)
    # a perfect circle under the same beam-stop mask (formerly read as 1.0117 without the mask support)
    ring = _ring_image(img.shape, c, 38.86, 1.0, 0.0, rng=1)
    e0 = cal.fit_ellipse(ring, center=c, r_range=(33.0, 45.0), mask=mask)
    assert abs(e0.ratio - 1.0) < 0.002, e0.ratio


# ---------------------------------------------------------------------------------------------------------------
# pixstem Merlin 4D scan: direct beam + ring
def _py4dstem_origin(dp):
    """py4DSTEM's origin of one pattern, re-derived: centre of mass of the thresholded (half-maximum of the 1 px
    blurred pattern) central disc, the connected piece at the maximum of the blurred pattern."""
    b = ndi.gaussian_filter(dp.astype(float), 1.0)
    peak = np.unravel_index(int(np.argmax(b)), b.shape)
    lab, _ = ndi.label(dp > 0.5 * b.max())
    w = dp * (lab == lab[peak])
    yy, xx = np.indices(dp.shape)
    return (yy * w).sum() / w.sum(), (xx * w).sum() / w.sum()


def test_pixstem_centres_match_py4dstem_origin_and_ring_at_115_px(pixstem_scan):
    c = cal.find_centers(pixstem_scan)
    for k, dp in enumerate(pixstem_scan.reshape(-1, 256, 256)):
        ref = _py4dstem_origin(dp)
        assert np.hypot(*(c.reshape(-1, 2)[k] - ref)) < 0.1, (c.reshape(-1, 2)[k], ref)
    center = tuple(c.reshape(-1, 2).mean(0))
    qc = cal.calibrate_q(
        pixstem_scan.reshape(-1, 256, 256), center=center, pixel_size_guess=1 / 115, d_spacings=[1.0], window=0.05
    )
    assert abs(qc.radius_px[0] - 115.0) < 0.3, qc.radius_px
    # the whole calibration runs on it, reports the bad pixels it excluded and the centre's source
    k = cal.calibrate(pixstem_scan, pixel_size=0.005)
    assert "direct beam" in k.info["center_source"]
    assert k.info["bad_pixels"]["hot_pixels"] == 0
    assert not k.plan.mask[tuple(np.array(k.info["bad_pixels"]["dead_pixel_list_px"]).T)].any()


def test_hot_pixels_cannot_move_the_centre(pixstem_scan):
    clean = cal.find_centers(pixstem_scan)
    hot = pixstem_scan.copy()
    hot[0, 1, 20, 20] = 65535  # one saturated pixel far from the beam, in one frame
    hot[1, 0, 126, 129] = 65535  # one inside the direct beam
    hot[:, :, 200, 40] = 65535  # a static hot pixel
    # the hot pixels are excluded: the beam pattern loses one of its ≈ 90 disc pixels (≤ 0.02 px), the others none
    np.testing.assert_allclose(cal.find_centers(hot), clean, atol=0.02)
    assert np.abs(cal.find_centers(hot, hot_factor=None) - clean).max() > 0.1  # kept, the 65535 pixel pulls it
    bp = cal.find_bad_pixels(hot)
    assert [tuple(p) for p in bp.hot.tolist()] == [(200, 40)] and not bp.mask[200, 40]  # static
    assert bp.transient == 2 and bp.mask[20, 20]  # the one-frame hits are transient, not masked for good
    repaired, n = cal.repair_hot(hot, mask=bp.mask)
    assert n == 2 and repaired[0, 1, 20, 20] < 100 and hot[0, 1, 20, 20] == 65535  # on a copy


def test_static_hot_and_dead_pixels_are_found_on_poisson_frames(rng):
    lam = np.full((64, 64), 30.0)
    frames = rng.poisson(lam, (50, 64, 64)).astype(float)
    frames[:, 10, 10] *= 4  # 4× too bright in every frame: not isolated enough per frame, clear in the sum
    frames[:, 30, 40] = 0  # dead
    frames[7, 50, 5] = 5000  # a cosmic-ray hit in one frame
    bp = cal.find_bad_pixels(frames)
    assert [tuple(p) for p in bp.hot.tolist()] == [(10, 10)]  # no false detections among 4096 × 50 Poisson pixels
    assert [tuple(p) for p in bp.dead.tolist()] == [(30, 40)]
    assert bp.transient == 1


# ---------------------------------------------------------------------------------------------------------------
# Merlin spot frame with a beam stop: no method may return a silently wrong centre
def test_spot_pattern_without_direct_beam_refuses_rather_than_guesses(merlin_spots):
    img = merlin_spots
    mask = np.ones(img.shape, dtype=bool)
    mask[95:, :30] = False  # the beam stop at the left edge
    with pytest.raises(cal.CenterError, match="Bragg spot"):
        cal.find_center(img, mask=mask, method="beam")
    # its spots form a lattice: a half-lattice point is as inversion-symmetric as the true centre (135.0, 86.0)
    with pytest.raises(cal.CenterError, match="not sharp"):
        cal.find_center(img, mask=mask, method="friedel")
    with pytest.raises(cal.CenterError):
        cal.find_center(img, mask=mask)


def test_friedel_pairs_give_the_centre_of_a_spot_pattern_with_a_hidden_beam(rng):
    """Spots of a non-lattice set (several crystals) with equal Friedel partners, beam behind a stop."""
    shape, c = (200, 220), (97.3, 112.6)
    g = np.array([[30.0, 5.0], [-12.0, 41.0], [55.0, -20.0], [8.0, -63.0], [-47.0, -33.0], [70.0, 44.0]])
    pts = np.concatenate([c + g, c - g])
    iy, ix = np.indices(shape)
    img = 5.0 + sum(300 * np.exp(-((iy - p[0]) ** 2 + (ix - p[1]) ** 2) / (2 * 1.5**2)) for p in pts)
    img = rng.poisson(img).astype(float)
    mask = np.hypot(iy - c[0], ix - c[1]) > 12  # the beam stop over the direct beam
    fit = cal.find_center(img, mask=mask, method="friedel")
    assert math.hypot(fit.center[0] - c[0], fit.center[1] - c[1]) < 0.1, fit


# ---------------------------------------------------------------------------------------------------------------
# pyxem's find_beam_center geometries (pyxem tests/utils/test_diffraction_tools / test_expt_utils), expected
# values replaced by the analytic centroids of the blurred squares
@pytest.mark.parametrize("sigma", [1, 2, 3])
@pytest.mark.parametrize(
    "rows,cols", [((28, 31), (24, 27)), ((28, 31), (24, 28)), ((5, 15), (41, 46))], ids=["3x3", "3x4", "edge"]
)
def test_pyxem_beam_centre_geometries(sigma, rows, cols):
    z = np.zeros((50, 50))
    z[rows[0] : rows[1], cols[0] : cols[1]] = 1
    z = ndi.gaussian_filter(z, sigma=sigma)
    expected = (0.5 * (rows[0] + rows[1] - 1), 0.5 * (cols[0] + cols[1] - 1))
    tol = 0.05 if rows[0] > 10 else 0.3  # the edge case loses part of the blurred square at the border
    c = cal.find_centers(z[None] * 1000, hot_factor=None)[0]
    assert np.hypot(*(c - expected)) < tol, (c, expected)
    assert np.hypot(*(np.array(cal.find_center(z * 1000, method="beam").center) - expected)) < tol


# ---------------------------------------------------------------------------------------------------------------
# pyFAI's ellipse tests (pyFAI/test/test_utils_ellipse.py), re-expressed for fit_ellipse_points and fit_ellipse
def test_pyfai_ellipse_point_sets():
    a = np.arange(0, np.pi * 2, 0.2)
    cy, cx, ratio, angle, b = cal.fit_ellipse_points(np.sin(a) * 20 + 50, np.cos(a) * 10 + 100)
    assert (cy, cx, ratio, b) == pytest.approx((50, 100, 2.0, 10.0), abs=1e-7)
    assert angle == pytest.approx(np.pi / 2, abs=1e-7)  # long axis along y
    cy, cx, ratio, angle, b = cal.fit_ellipse_points(np.sin(a) * 10 + 50, np.cos(a) * 20 + 100)
    assert (cy, cx, ratio, b) == pytest.approx((50, 100, 2.0, 10.0), abs=1e-7)
    assert min(angle, np.pi - angle) == pytest.approx(0.0, abs=1e-7)
    for span, n, places in [(np.pi, 10, 7), (np.pi / 2, 10, 7), (np.pi / 4, 5, 5)]:
        t = np.linspace(0, span, n)
        cy, cx, ratio, _, b = cal.fit_ellipse_points(np.sin(t) * 20 + 10, np.cos(t) * 20 + 10)
        assert (cy, cx, ratio, b) == pytest.approx((10, 10, 1.0, 20.0), abs=10.0**-places)
    with pytest.raises(ValueError, match="no ellipse"):
        cal.fit_ellipse_points(np.arange(10.0), np.arange(10.0))


def _ring_image(shape, c, R, ratio, angle, sigma=1.5, amp=1000.0, bg=20.0, rng=0, stack=None):
    """Poisson ring of corrected radius R [px] stretched by ``ratio`` along ``angle`` (simkit.radial convention)."""
    iy, ix = np.indices(shape).astype(float)
    dy, dx = iy - c[0], ix - c[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    lam = bg + amp * np.exp(-0.5 * ((np.hypot(u / ratio, v) - R) / sigma) ** 2)
    size = shape if stack is None else (stack,) + tuple(shape)
    return np.random.default_rng(rng).poisson(np.broadcast_to(lam, size)).astype(float)


@pytest.mark.parametrize("ratio,angle", [(2.0, np.pi / 2), (1.3, 0.4), (2.0, 1.2)])
def test_strong_ellipses_up_to_pyfai_ratio_two(ratio, angle):
    """pyFAI's ratio-2 ellipse (semi-axes 20 along y and 10 along x about (50, 100)) as a ring image, and others;
    the former sector fit returned 1.04 for it and 1.0006 for 1.30."""
    c = (50.0, 100.0) if ratio == 2.0 and angle == np.pi / 2 else (128.3, 127.6)
    R = 10.0 if c == (50.0, 100.0) else 40.0
    shape = (101, 201) if c == (50.0, 100.0) else (256, 256)
    img = _ring_image(shape, c, R, ratio, angle, sigma=1.0 if R == 10 else 1.5, stack=4)
    ell = cal.fit_ellipse(img, center=c, r_range=(0.8 * R, 1.2 * R))
    assert abs(ell.ratio - ratio) < 0.01 * ratio, ell.ratio
    d = abs(ell.angle - angle) % np.pi
    assert min(d, np.pi - d) < 0.01


def test_sector_scale_on_its_bound_widens_the_search():
    """A sector profile stretched by 10 % relative to the mean lies beyond the ±6 % grid: the search widens."""
    r = np.arange(20.0, 60.0, 0.5)
    prof = np.exp(-0.5 * ((r - 40.0) / 2.0) ** 2)
    m = np.stack([np.interp(r / s, r, prof) for s in (0.95, 1.0, 1.05, 1.10)])
    ref = np.nanmean(m, axis=0)
    s = cal._sector_scales(m, r, (30.0, 50.0))
    rr = r[np.argmax(m, axis=1)] / r[np.argmax(ref)]
    np.testing.assert_allclose(s, rr, atol=0.02)
    assert np.all(np.isfinite(s)) and s[-1] > 1.06
