"""Oracles for the fixed-centre kernel of eight patterns per sweep (uint8/uint16, packed Σ I and Σ I²): exact
integer sums against float64 data (another kernel), analytic sums of constant patterns at the packing bound,
the fallbacks above it, and NUMBA_DISABLE_JIT."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.radial import make_plan
from simkit.radial.kernels import _packed_bound
from tests.reference import json_with_and_without_jit, radial_reference

FIELDS = ("count", "sum", "mean", "sem_poisson", "sem_azimuthal")


def _fits(cmax: int, vmax: int, s: int) -> bool:
    """Σ I <= cmax·vmax below bit s and Σ I² <= cmax·vmax² in the 64 − s bits above it (Python integers)."""
    return 0 < s < 64 and cmax * vmax < 2**s and cmax * vmax * vmax < 2 ** (64 - s)


@pytest.mark.parametrize("cmax", [1, 7, 746, 4096, 65536, 1 << 20, 1 << 23])
def test_packed_bound_is_the_largest_value_that_fits(cmax):
    vb, s = _packed_bound(cmax)
    vb, s = int(vb), int(s)
    assert _fits(cmax, vb, s)
    if vb < 65535:  # one count more fits at no bit position
        assert not any(_fits(cmax, vb + 1, t) for t in range(1, 64))


def test_packed_bound_none_when_nothing_fits():
    assert tuple(int(x) for x in _packed_bound(1 << 40)) == (0, 0)


def _exact(plan, data):
    """The same data as float64: sums in float64 by the table kernel (exact below 2^53), not the packed one."""
    return plan.integrate(data.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("n_pat", [8, 13, 24, 35])
def test_groups_and_remainder_equal_float64(rng, dtype, n_pat):
    """Groups of eight, a group falling back (one pixel at the dtype's maximum), the remainder: every pattern
    equals float64 data bit for bit, and the NumPy reference."""
    shape = (40, 44)
    mask = rng.random(shape) > 0.05
    plan = make_plan(shape, center=(19.3, 22.6), pixel_size=0.01, n_bins=18, q_max=0.2, mask=mask)
    top = np.iinfo(dtype).max
    data = rng.poisson(30.0, (n_pat,) + shape).clip(0, top).astype(dtype)
    data[n_pat // 2, 20, 21] = top
    data[-1] = rng.integers(0, top + 1, shape).astype(dtype)  # whole range (last group or the remainder)
    prof = plan.integrate(data)
    exact = _exact(plan, data)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(prof, f), getattr(exact, f), err_msg=f)
    for n in (0, n_pat // 2, n_pat - 1):
        ref = radial_reference(data[n], center=(19.3, 22.6), pixel_size=0.01, edges=plan.edges, mask=mask)
        for f in FIELDS:
            np.testing.assert_allclose(getattr(prof, f)[n], ref[f][0], rtol=1e-10, err_msg=f"{f} {n}")


def test_constant_patterns_at_the_packing_bound():
    """One bin over the whole detector (65 536 pixels): the bound is low enough to reach with uint16 data.
    Constant patterns at the bound fill both bit fields and pack; one count more falls back; both give the
    analytic sums count·v and Σ (I − mean)² = 0."""
    shape = (256, 256)
    plan = make_plan(shape, center=(127.5, 127.5), pixel_size=0.01, edges=[0.0, 5.0])
    vb, s = (int(x) for x in _packed_bound(shape[0] * shape[1]))
    assert 0 < vb < 65535
    npix = shape[0] * shape[1]
    # at v = vb both fields are full: Σ I reaches bit s − 1, Σ I² the top bit of the word
    assert (npix * vb).bit_length() == s and (npix * vb * vb).bit_length() == 64 - s
    for v in (vb, vb + 1, 65535):
        data = np.full((9,) + shape, v, np.uint16)
        data[8] = 0  # the remainder
        prof = plan.integrate(data)
        np.testing.assert_array_equal(prof.count[:, 0], 65536.0)
        np.testing.assert_array_equal(prof.sum[:8, 0], 65536.0 * v)
        np.testing.assert_array_equal(prof.mean[:8, 0], float(v))
        np.testing.assert_array_equal(prof.sem_azimuthal[:8, 0], 0.0)
        np.testing.assert_array_equal(prof.sum[8, 0], 0.0)


def test_identical_without_jit_for_groups():
    """Groups of eight (packed and falling back) and the remainder give identical results with
    NUMBA_DISABLE_JIT=1 (the vector add's Python version)."""
    code = r"""
import json, numpy as np
from simkit.radial import make_plan
r = np.random.default_rng(5)
mask = r.random((15, 17)) > 0.2
plan = make_plan((15, 17), center=(7.3, 8.6), pixel_size=0.01, n_bins=6, q_max=0.07, mask=mask,
                 ellipse_ratio=1.1, ellipse_angle=0.4)
out = {}
for dt in ("uint8", "uint16"):
    d = r.poisson(40.0, (19, 15, 17)).astype(dt)
    d[9, 7, 8] = np.iinfo(dt).max
    p = plan.integrate(d)
    out[dt] = [np.nan_to_num(getattr(p, f), nan=-1.0).tolist() for f in ("count", "sum", "mean", "sem_poisson",
                                                                      "sem_azimuthal")]
print(json.dumps(out))
"""
    results = json_with_and_without_jit(code)
    assert results[0] == results[1]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_empty_and_single_pixel_bins(rng, dtype):
    """The branch-free finishing of the eight-pattern kernel: a bin holding only the centre pixel (count 1:
    sem_azimuthal undefined), a bin emptied by the mask and a bin beyond the detector (count 0: mean and errors
    NaN) give what float64 data give through the other kernel, bit for bit, and the NumPy reference."""
    shape = (21, 23)
    center = (10.0, 11.0)  # on a pixel centre
    mask = np.ones(shape, bool)
    iy, ix = np.indices(shape)
    r = np.hypot(iy - center[0], ix - center[1])
    mask[(r >= 3.0) & (r < 4.0)] = False
    edges = np.array([0.0, 0.5, 1.5, 3.0, 4.0, 8.0, 30.0, 31.0]) * 0.01
    plan = make_plan(shape, center=center, pixel_size=0.01, edges=edges, mask=mask)
    data = rng.poisson(20.0, (16,) + shape).astype(dtype)
    prof = plan.integrate(data)
    e = edges / 0.01
    expect = [np.sum(mask & (r >= lo) & (r < hi)) for lo, hi in zip(e[:-1], e[1:])]
    assert expect[0] == 1 and expect[3] == 0 and expect[-1] == 0
    np.testing.assert_array_equal(prof.count, np.broadcast_to(expect, prof.count.shape))
    exact = plan.integrate(data.astype(np.float64))
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(prof, f), getattr(exact, f), err_msg=f)
    assert np.all(np.isnan(prof.sem_azimuthal[:, 0])) and np.all(np.isnan(prof.mean[:, 3]))
    ref = radial_reference(data[5], center=center, pixel_size=0.01, edges=plan.edges, mask=mask)
    for f in FIELDS:
        np.testing.assert_allclose(getattr(prof, f)[5], ref[f][0], rtol=1e-10, err_msg=f)
