"""Oracles for simkit.detector: counting statistics, saturation, defects, dead time, charge sharing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit import detector as det


def _z_mean(k, lam):
    """Σ(k − λ)/sqrt(Σλ) for Poisson data: ~ N(0, 1)."""
    return (k - lam).sum() / np.sqrt(lam.sum())


def _z_dispersion(k, lam):
    """(χ² − n)/sqrt(2n) with χ² = Σ(k − λ)²/λ: ~ N(0, 1) for Poisson data."""
    n = k.size
    return (((k - lam) ** 2 / lam).sum() - n) / np.sqrt(2 * n)


def test_ideal_counter_is_poisson(rng):
    model = det.DetectorModel(kind="counting", bit_depth=24)
    lam = np.broadcast_to(0.5 + 20 * rng.random((32, 32)), (200, 32, 32))
    counts = det.detect(lam, model, rng=np.random.default_rng(1))
    assert counts.dtype == np.uint32
    k = counts.astype(float)
    assert abs(_z_mean(k, lam)) < 4
    assert abs(_z_dispersion(k, lam)) < 4


def test_blur_before_poisson_keeps_counting_statistics():
    # counting + PSF: mean = blurred expectation (interior, uniform → unchanged), variance = mean
    model = det.DetectorModel(kind="counting", bit_depth=24, psf_sigma=0.8)
    lam = np.full((150, 24, 24), 30.0)
    k = det.detect(lam, model, rng=2).astype(float)[:, 6:-6, 6:-6]
    lam_i = lam[:, 6:-6, 6:-6]
    assert abs(_z_mean(k, lam_i)) < 4
    assert abs(_z_dispersion(k, lam_i)) < 4
    # apply() on Poisson counts: multinomial redistribution gives the same distribution
    counts = np.random.default_rng(3).poisson(lam)
    k2 = det.apply(counts, model, rng=4).astype(float)[:, 6:-6, 6:-6]
    assert abs(_z_mean(k2, lam_i)) < 4
    assert abs(_z_dispersion(k2, lam_i)) < 4
    # a point source spreads as the PSF: the sum is conserved away from the edges, the shape is the kernel
    point = np.zeros((1, 15, 15), dtype=np.int64)
    point[0, 7, 7] = 10**6
    spread = det.apply(point, model, rng=5)[0].astype(float) / 10**6
    kern = det.psf_kernel(model)
    h = (kern.shape[0] - 1) // 2
    np.testing.assert_allclose(spread[7 - h : 7 + h + 1, 7 - h : 7 + h + 1], kern, atol=2e-3)
    assert spread.sum() == pytest.approx(1.0, abs=1e-9)  # the ±4σ kernel fits inside the detector
    # above 2e7 electrons per block the multinomial branch is used: same distribution
    point[0, 7, 7] = 3 * 10**7
    spread = det.apply(point, model, rng=6)[0].astype(float) / (3 * 10**7)
    np.testing.assert_allclose(spread[7 - h : 7 + h + 1, 7 - h : 7 + h + 1], kern, atol=2e-4)


def test_integrating_blur_after_arrivals_correlates_noise():
    # integrating: variance = gain² λ Σ K² + read² (charge of each electron spread deterministically)
    model = det.DetectorModel(kind="integrating", psf_sigma=0.8, gain=2.0, read_noise=0.5, dark_offset=10.0)
    lam = 40.0
    x = det.detect(np.full((400, 24, 24), lam), model, rng=6).astype(float)[:, 6:-6, 6:-6]
    kern = det.psf_kernel(model)
    assert x.mean() == pytest.approx(10.0 + 2.0 * lam, rel=2e-3)
    expected_var = 4.0 * lam * np.sum(kern**2) + 0.25
    # variance estimate from 400 × 144 correlated samples: use frame-to-frame variance per pixel
    assert x.var(axis=0, ddof=1).mean() == pytest.approx(expected_var, rel=0.05)
    assert expected_var < 4.0 * lam  # smaller than unblurred Poisson: the blur averages noise


def test_integrating_gain_read_noise_statistics(rng):
    model = det.DetectorModel(kind="integrating", gain=3.0, read_noise=1.5, dark_offset=5.0, full_scale=1e9)
    lam = 2.0 + 10 * rng.random((16, 16))
    x = det.detect(np.broadcast_to(lam, (2000, 16, 16)), model, rng=7).astype(float)
    mean = 5.0 + 3.0 * lam
    var = 9.0 * lam + 1.5**2
    # per-pixel means and variances against the analytic ones, aggregated
    z = (x.mean(axis=0) - mean) / np.sqrt(var / 2000)
    assert abs(z.mean() * np.sqrt(z.size)) < 4
    assert x.var(axis=0, ddof=1).mean() / var.mean() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("bits", [1, 6, 12])
def test_counts_never_exceed_bit_depth(bits, rng):
    model = det.DetectorModel(kind="counting", bit_depth=bits)
    lam = rng.random((10, 16, 16)) * 3 * 2**bits
    counts = det.detect(lam, model, rng=1)
    assert counts.max() == 2**bits - 1
    assert np.all(counts <= 2**bits - 1)
    big = det.apply(np.full((2, 4, 4), 10**7), model, rng=1)
    assert np.all(big == 2**bits - 1)


def test_dead_and_hot_pixels():
    model = det.medipix_merlin(dead_fraction=0.01, hot_fraction=0.005, defect_seed=42, psf_sigma=0.0)
    dead, hot = det.defect_masks(model)
    assert dead.sum() == round(0.01 * 65536) and hot.sum() == round(0.005 * 65536)
    assert not np.any(dead & hot)
    counts = det.detect(np.full((3, 256, 256), 50.0), model, rng=0)
    assert np.all(counts[:, dead] == 0)
    assert np.all(counts[:, hot] == 4095)
    # defects belong to the detector: same positions for any exposure rng, new ones for a new seed
    again = det.detect(np.full((1, 256, 256), 50.0), model, rng=99)
    assert np.all(again[:, dead] == 0)
    d2, _ = det.defect_masks(dataclasses.replace(model, defect_seed=43))
    assert not np.array_equal(dead, d2)
    emp = det.empad(dead_fraction=0.02, hot_fraction=0.01)
    x = det.detect(np.full((2, 128, 128), 5.0), emp, rng=0)
    d, h = det.defect_masks(emp)
    assert np.all(x[:, d] == 0.0) and np.all(x[:, h] == 1e6)


def test_dead_time_analytic_forms():
    tau = 1e-6
    n = np.array([0.0, 1e4, 1e5, 1e6, 3e6])
    np.testing.assert_allclose(det.dead_time_response(n, tau, "paralysable"), n * np.exp(-n * tau))
    np.testing.assert_allclose(det.dead_time_response(n, tau, "non-paralysable"), n / (1 + n * tau))
    # paralysable maximum 1/(eτ) at n = 1/τ; non-paralysable saturates at 1/τ
    grid = np.linspace(0, 5e6, 50001)
    m = det.dead_time_response(grid, tau, "paralysable")
    assert grid[np.argmax(m)] == pytest.approx(1 / tau, rel=1e-3)
    assert m.max() == pytest.approx(1 / (np.e * tau), rel=1e-6)
    # inverses
    for model in ("paralysable", "non-paralysable"):
        low = n[n < 1 / tau]
        np.testing.assert_allclose(
            det.dead_time_correct(det.dead_time_response(low, tau, model), tau, model), low, rtol=1e-9
        )


@pytest.mark.parametrize(
    ("model", "mc"),
    [("paralysable", ref.paralysable_monte_carlo), ("non-paralysable", ref.non_paralysable_monte_carlo)],
)
def test_dead_time_against_monte_carlo_of_arrivals(model, mc):
    tau, t_frame, n_frames = 1e-6, 2e-3, 300
    rng = np.random.default_rng(11)
    for rate in (2e5, 1e6):
        counts = mc(rate, tau, t_frame, n_frames, rng)
        expected = det.dead_time_response(rate, tau, model) * t_frame
        # frames start live, which adds < τ·m per frame; statistical error ≤ sqrt(expected / n_frames)
        assert counts.mean() == pytest.approx(expected, abs=4 * np.sqrt(expected / n_frames) + 1)


def test_detect_dead_time_mean_matches_model():
    model = det.DetectorModel(kind="counting", bit_depth=24, dead_time=1e-6, frame_time=1e-3)
    lam = np.full((200, 16, 16), 500.0)  # 5e5 e/s per pixel: 39 % loss for a paralysable counter
    k = det.detect(lam, model, rng=3).astype(float)
    m = det.dead_time_response(5e5, 1e-6) * 1e-3
    assert k.mean() == pytest.approx(m, rel=4 / np.sqrt(m * k.size))
    k2 = det.apply(np.random.default_rng(4).poisson(lam), model, rng=5).astype(float)
    assert k2.mean() == pytest.approx(m, rel=0.01)


def test_presets():
    m = det.medipix_merlin()
    assert m.shape == (256, 256) and m.pixel_pitch == 55.0 and m.bit_depth == 12
    assert det.saturation_value(m) == 4095
    assert det.saturation_value(det.medipix_merlin(bit_depth=24)) == 2**24 - 1
    e = det.empad()
    assert e.shape == (128, 128) and e.pixel_pitch == 150.0 and e.kind == "integrating"
    assert det.saturation_value(e) == 1e6
    with pytest.raises(ValueError, match="bit_depth"):
        det.medipix_merlin(bit_depth=5)
    with pytest.raises(ValueError, match="do not match"):
        det.detect(np.ones((2, 64, 64)), m)


def test_tabulated_mtf_psf():
    # an MTF sampled from the Gaussian's own exp(−2π²σ²f²) gives (nearly) the Gaussian kernel
    s = 0.8
    f = np.linspace(0, 0.5, 26)
    m_tab = det.DetectorModel(mtf=tuple(np.exp(-2 * np.pi**2 * s**2 * f**2)))
    k_tab = det.psf_kernel(m_tab)
    k_g = det.psf_kernel(det.DetectorModel(psf_sigma=s))
    assert k_tab.sum() == pytest.approx(1.0)
    c, h = (k_tab.shape[0] - 1) // 2, (k_g.shape[0] - 1) // 2
    assert k_tab[c, c] == pytest.approx(k_g[h, h], abs=0.03)


def test_seeded_runs_repeat():
    lam = np.full((3, 32, 32), 7.0)
    for model in (det.medipix_merlin(shape=None, dead_time=1e-6), det.empad(shape=None)):
        np.testing.assert_array_equal(det.detect(lam, model, rng=5), det.detect(lam, model, rng=5))
        assert not np.array_equal(det.detect(lam, model, rng=5), det.detect(lam, model, rng=6))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bit_depth": 0}, "bit_depth"),
        ({"bit_depth": 40}, "bit_depth"),
        ({"dead_fraction": 1.5}, "dead_fraction"),
        ({"hot_fraction": -0.1}, "hot_fraction"),
        ({"dead_fraction": 0.6, "hot_fraction": 0.6}, "dead_fraction"),
        ({"read_noise": -1.0}, "read_noise"),
        ({"frame_time": 0.0}, "frame_time"),
        ({"dead_time": -1e-6}, "dead_time"),
        ({"kind": "ccd"}, "kind"),
        ({"dead_time_model": "both"}, "dead_time_model"),
        ({"kind": "integrating", "dead_time": 1e-6}, "dead_time"),
        ({"mtf": (0.5, 0.2)}, "mtf"),
    ],
)
def test_bad_model_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        det.DetectorModel(**kwargs)


def test_bad_data():
    m = det.DetectorModel()
    with pytest.raises(ValueError, match="expected_electrons"):
        det.detect(-np.ones((2, 4, 4)), m)
    with pytest.raises(TypeError, match="electron_counts"):
        det.apply(np.full((2, 4, 4), 0.5), m)
    with pytest.raises(ValueError, match="rate"):
        det.dead_time_response(-1.0, 1e-6)


@settings(max_examples=50, deadline=None)
@given(n_tau=st.floats(0.0, 0.999), model=st.sampled_from(["paralysable", "non-paralysable"]))
def test_dead_time_inverse_below_the_maximum(n_tau, model):
    tau = 1e-6
    n = n_tau / tau  # paralysable lower branch: n < 1/τ
    m = det.dead_time_response(n, tau, model)
    assert m <= n
    assert det.dead_time_correct(m, tau, model) == pytest.approx(n, rel=1e-7, abs=1e-6)
