"""Oracles for simkit.dose: electron counting, the Airy probe, Poisson statistics and dose conservation."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import reference as ref
from scipy import special

from simkit import dose

E300 = 300e3
LAMBDA_300 = 0.0196875  # [Å] relativistic wavelength at 300 keV (textbook value, 0.01969 Å)


# ---------------------------------------------------------------------------------------------- scan fluence
def test_one_pA_one_ms_over_40A_step():
    # 1e-12 A × 1e-3 s / 1.602176634e-19 C = 6241.5 e; / (40 Å)² = 3.90 e/Å²
    assert dose.electrons_per_pattern(1.0, 1e-3) == pytest.approx(6241.509, abs=0.01)
    assert dose.scan_fluence(1.0, 1e-3, 40.0) == pytest.approx(3.90, abs=0.005)
    assert dose.scan_fluence(1.0, 1e-3, (40.0, 20.0)) == pytest.approx(7.80, abs=0.01)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: dose.electrons_per_pattern(-1.0, 1e-3), "current_pA"),
        (lambda: dose.electrons_per_pattern(1.0, 0.0), "dwell_s"),
        (lambda: dose.scan_fluence(1.0, 1e-3, -4.0), "step"),
        (lambda: dose.probe_profile(-2.0, E300, 1.0), "semiangle"),
        (lambda: dose.probe_profile(2.0, 3.0, 1.0), "energy"),
        (lambda: dose.probe_radius(2.0, E300, power_fraction=1.5), "power_fraction"),
        (lambda: dose.probe_profile(2.0, E300, 1.0, source_size=-1.0), "source_size"),
        (lambda: dose.local_fluence_peak(-5.0, 2.0, E300), "electrons"),
        (lambda: dose.accumulated_fluence_map((3, 3), 40.0, 2.0, E300, 100.0, order="spiral"), "order"),
        (lambda: dose.accumulated_fluence_map((3, 3), 40.0, 2.0, E300, 100.0, passes=0), "passes"),
        (lambda: dose.accumulated_fluence_map((3, 3), 40.0, 2.0, E300, 100.0, grid_step=3.0), "grid_step"),
        (lambda: dose.accumulated_fluence_map((0, 3), 40.0, 2.0, E300, 100.0), "scan_shape"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ---------------------------------------------------------------------------------------------- probe
def test_airy_first_zero_and_normalisation():
    ka = 2e-3 / LAMBDA_300
    # first zero 0.6098 λ/α (J1's first zero 3.8317 / 2π)
    assert dose.probe_first_zero(2.0, E300) == pytest.approx(0.6098 * LAMBDA_300 / 2e-3, rel=1e-4)
    r = np.linspace(0.0, 10.0, 100001)
    p = dose.probe_profile(2.0, E300, r)
    i_min = np.argmax(np.diff(p) > 0)  # first local minimum
    assert r[i_min] == pytest.approx(0.6098 * LAMBDA_300 / 2e-3, abs=2e-3)
    assert p[i_min] < 1e-8 * p[0]
    # peak π (α/λ)²; enclosed power against Rayleigh's 1 − J0² − J1²
    assert p[0] == pytest.approx(np.pi * ka**2, rel=1e-4)
    for radius in (6.0, 50.0, 400.0):
        rr = np.linspace(0, radius, 200001)
        enclosed = np.trapezoid(dose.probe_profile(2.0, E300, rr) * 2 * np.pi * rr, rr)
        v = 2 * np.pi * ka * radius
        assert enclosed == pytest.approx(1 - special.j0(v) ** 2 - special.j1(v) ** 2, abs=2e-6)
    # the whole plane: 1 − 2/(πv) asymptotically → within 1e-3 at 2000 Å
    rr = np.linspace(0, 2000.0, 400001)
    assert np.trapezoid(dose.probe_profile(2.0, E300, rr) * 2 * np.pi * rr, rr) == pytest.approx(1.0, abs=1e-3)


def test_fourier_route_matches_real_space_airy():
    # source_size → 0 goes through the Hankel transform of the transfer function: an independent route
    r = np.linspace(0.0, 300.0, 3001)
    a = dose.probe_profile(2.0, E300, r)
    b = dose.probe_profile(2.0, E300, r, source_size=1e-9)
    assert np.max(np.abs(a - b)) < 1e-9 * a[0]


def test_source_and_defocus_limits():
    # a Gaussian source much larger than the probe: P(0) → 1/(2πσ²) (the Airy core is a near-delta)
    fwhm = 200.0
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    p0 = dose.probe_profile(2.0, E300, 0.0, source_size=fwhm)
    assert p0 == pytest.approx(1 / (2 * np.pi * sigma**2), rel=0.03)
    # defocus: against the 2-D FFT of the aperture with the defocus phase (independent route)
    radius, p_fft = ref.defocused_probe_fft(2e-3, LAMBDA_300, 5e4, n=2048, h=1.0)
    for r0 in (0.0, 20.0, 50.0, 90.0, 120.0):
        ring = np.abs(radius - r0) < 0.5
        expected = p_fft[ring].mean()
        assert dose.probe_profile(2.0, E300, r0, defocus=5e4) == pytest.approx(expected, rel=0.02)
    r = np.linspace(0.0, 400.0, 4001)
    p = dose.probe_profile(2.0, E300, r, defocus=5e4)
    assert np.trapezoid(p * 2 * np.pi * r, r) == pytest.approx(1.0, abs=0.01)  # Airy-like tail beyond 400 Å


def test_issue_numbers_for_local_fluence():
    n = dose.electrons_per_pattern(1.0, 1e-3)
    r0 = dose.probe_first_zero(2.0, E300)
    assert r0 == pytest.approx(6.0, abs=0.05)
    assert n / (np.pi * r0**2) == pytest.approx(55, abs=1)  # the issue's "≈ 55 e/Å²"
    r0s = dose.probe_first_zero(0.15, E300)
    assert r0s == pytest.approx(80.0, abs=0.5)
    assert n / (np.pi * r0s**2) == pytest.approx(0.31, abs=0.01)
    ka = 2e-3 / LAMBDA_300
    assert dose.local_fluence_peak(n, 2.0, E300) == pytest.approx(n * np.pi * ka**2, rel=1e-4)


def test_probe_radius_inverts_rayleigh():
    ka = 2e-3 / LAMBDA_300
    for f in (0.838, 0.99, 0.999):
        radius = dose.probe_radius(2.0, E300, power_fraction=f)
        v = 2 * np.pi * ka * radius
        assert 1 - special.j0(v) ** 2 - special.j1(v) ** 2 == pytest.approx(f, abs=1e-6)


def test_kernel_sum_is_the_integral_below_nyquist():
    # band-limited probe: the unrenormalised grid sum equals the enclosed power when h < λ/(4α)
    h = 0.9 * dose.nyquist_step(2.0, E300)
    c = np.arange(-300, 301) * h
    rr = np.hypot(c[:, None], c[None, :])
    p = dose.probe_profile(2.0, E300, rr)
    radius = 250 * h
    ka = 2e-3 / LAMBDA_300
    v = 2 * np.pi * ka * radius
    assert p[rr <= radius].sum() * h * h == pytest.approx(1 - special.j0(v) ** 2 - special.j1(v) ** 2, abs=2e-4)
    k = dose.probe_kernel(2.0, E300, h, power_fraction=0.99)
    assert k.sum() * h * h == pytest.approx(1.0, abs=1e-12)


def test_effective_area_parseval_vs_real_space():
    ka = 2e-3 / LAMBDA_300
    a_eff = dose.effective_area(2.0, E300)
    direct = ref.probe_overlap((0.0, 0.0), ka, 400.0, 0.5)
    assert 1 / a_eff == pytest.approx(direct, rel=2e-3)


# ---------------------------------------------------------------------------------------------- Poisson
def test_expose_poisson_mean_and_dispersion(rng):
    shape = (300, 24, 24)
    base = rng.random((24, 24))
    base /= base.sum() * 1.1  # 91 % of the beam on the detector
    patterns = np.broadcast_to(base, shape)
    n_e = 2000.0
    counts = dose.expose(patterns, n_e, rng=np.random.default_rng(7))
    assert counts.dtype == np.uint32 and counts.shape == shape
    lam = base * n_e
    k = counts.astype(float)
    # mean: Σ(k − λ)/sqrt(Σλ) ~ N(0, 1)
    z_mean = (k - lam).sum() / np.sqrt(lam.sum() * shape[0])
    assert abs(z_mean) < 4
    # dispersion: Σ(k − λ)²/λ ~ χ²(n), n large → z = (χ² − n)/sqrt(2n)
    n = k.size
    chi2 = ((k - lam) ** 2 / lam).sum()
    assert abs((chi2 - n) / np.sqrt(2 * n)) < 4
    # relative intensities kept: per-pixel mean over 300 repeats tracks the pattern
    assert np.corrcoef(k.mean(axis=0).ravel(), base.ravel())[0, 1] > 0.98


def test_expose_dose_step_and_seed():
    p = np.full((4, 8, 8), 1 / 64)
    a = dose.expose(p, rng=3, dose=3.9009431715379765, step=40.0)
    b = dose.expose(p, 1.0 * 1e-3 * dose.ELECTRONS_PER_PA_S, rng=3)
    c = dose.expose(p, 6241.509074460762, rng=3, chunk=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)  # chunking does not change the stream
    assert not np.array_equal(a, dose.expose(p, 6241.5, rng=4))
    per_pattern = dose.expose(p, np.array([0.0, 10.0, 100.0, 1000.0]), rng=1)
    assert per_pattern[0].sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"electrons_per_pattern": -1.0}, "electrons_per_pattern"),
        ({"dose": -1.0, "step": 40.0}, "dose"),
        ({"dose": 1.0}, "step"),
        ({}, "exactly one"),
    ],
)
def test_expose_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dose.expose(np.full((2, 4, 4), 1 / 16), **kwargs)


def test_expose_rejects_unnormalised_patterns():
    with pytest.raises(ValueError, match="normalise"):
        dose.expose(np.full((2, 4, 4), 10.0), 100.0)
    with pytest.raises(ValueError, match="patterns"):
        dose.expose(np.full((2, 4, 4), -0.01), 100.0)


# ---------------------------------------------------------------------------------------------- dose maps
def test_map_conserves_electrons():
    n_e = 1000.0
    fm = dose.accumulated_fluence_map((7, 5), 40.0, 0.5, E300, n_e, passes=3, power_fraction=0.99)
    assert fm.map.sum() * fm.grid_step**2 == pytest.approx(n_e * 35 * 3, rel=1e-9)


def test_dense_scan_interior_equals_scan_fluence_times_passes():
    # step 10 Å < λ/(2α) = 19.7 Å for 0.5 mrad: the lattice sum of the band-limited probe is uniform
    n_e = 500.0
    passes = 2
    fm = dose.accumulated_fluence_map((100, 100), 10.0, 0.5, E300, n_e, passes=passes, power_fraction=0.99)
    assert fm.truncation_radius < 420
    p = int(round(-fm.origin[0] / fm.grid_step))
    margin = int(np.ceil(fm.truncation_radius / fm.grid_step)) + 2
    m = int(round(fm.step / fm.grid_step))
    interior = fm.map[p + margin : p + 99 * m - margin, p + margin : p + 99 * m - margin]
    assert interior.size > 100
    expected = n_e / 10.0**2 * passes
    assert fm.scan_fluence == pytest.approx(5.0)
    assert interior.mean() == pytest.approx(expected, rel=1e-6)
    assert interior.max() == pytest.approx(expected, rel=2e-3)  # uniform up to the 1 % truncated tail
    assert interior.min() == pytest.approx(expected, rel=2e-3)
    assert dose.local_to_scan_ratio(0.5, E300, 10.0) == pytest.approx(1.0, abs=1e-12)
    # probe-weighted history in the interior: one full pass adds exactly the scan fluence
    assert fm.before[1, 50, 50] - fm.before[0, 50, 50] == pytest.approx(n_e / 10.0**2, rel=2e-3)
    # half the neighbourhood is exposed after position k in a raster: 'after' sits near half a pass
    assert 0.4 < fm.after[0, 50, 50] / (n_e / 10.0**2) < 0.6


def test_sparse_scan_accumulated_equals_single_exposure():
    n_e = dose.electrons_per_pattern(1.0, 1e-3)
    fm = dose.accumulated_fluence_map((4, 5), 400.0, 2.0, E300, n_e, order="serpentine")
    a_eff = dose.effective_area(2.0, E300)
    assert fm.single_exposure == pytest.approx(n_e / a_eff, rel=2e-3)
    np.testing.assert_allclose(fm.after[0], n_e / a_eff, rtol=2e-3)
    np.testing.assert_allclose(fm.before[0], 0.0, atol=1e-3 * n_e / a_eff)
    np.testing.assert_allclose(fm.peak_after[0], dose.local_fluence_peak(n_e, 2.0, E300), rtol=2e-3)
    # the map at a probe position: its own peak (neighbours 400 Å away add the Airy tail, < 1e-4 of it)
    p = int(round(-fm.origin[0] / fm.grid_step))
    assert fm.map[p, p] == pytest.approx(dose.local_fluence_peak(n_e, 2.0, E300), rel=2e-3)
    assert dose.local_to_scan_ratio(2.0, E300, 2000.0) == pytest.approx(2000.0**2 / a_eff, rel=1e-6)


@functools.lru_cache(maxsize=2)
def _overlaps(ka):
    """Brute-force ∫P(r)P(r − d) d²r on the 15 Å scan lattice offsets (h = 2.5 Å < 1/(4 kα·2) = 4.9 Å)."""
    return {(a, b): ref.probe_overlap((15.0 * a, 15.0 * b), ka, 600.0, 2.5) for a in range(6) for b in range(5)}


@pytest.mark.parametrize("order", ["raster", "serpentine"])
def test_history_kernel_matches_reference_and_physics(order):
    n_e = 100.0
    fm = dose.accumulated_fluence_map((6, 5), 15.0, 0.5, E300, n_e, order=order, passes=2, power_fraction=0.99)
    rank = dose.scan_order((6, 5), order)
    # the numba kernel against its plain twin on a random symmetric table
    table = np.random.default_rng(0).random((7, 7))
    table = table + table[::-1, ::-1]
    b1, t1 = np.empty((6, 5)), np.empty((6, 5))
    dose._causal_accumulate(rank, table, b1, t1)
    b2, t2 = ref.causal_accumulate(rank, table)
    np.testing.assert_allclose(b1, b2, rtol=1e-12)
    np.testing.assert_allclose(t1, t2, rtol=1e-12)
    b3, t3 = np.empty((6, 5)), np.empty((6, 5))
    dose._causal_accumulate.py_func(rank, table, b3, t3)  # NUMBA_DISABLE_JIT path
    np.testing.assert_array_equal(b1, b3)
    np.testing.assert_array_equal(t1, t3)
    # physics: before_k = N Σ_{j earlier} ∫P(r − r_k)P(r − r_j) d²r with the overlap integrated by brute force
    ka = 0.5e-3 / LAMBDA_300
    overlap = _overlaps(ka)
    for i, j in [(0, 0), (2, 3), (5, 4), (3, 0)]:
        expected = sum(
            overlap[(abs(i2 - i), abs(j2 - j))] * n_e for i2 in range(6) for j2 in range(5) if rank[i2, j2] < rank[i, j]
        )
        assert fm.before[0, i, j] == pytest.approx(expected, rel=0.02, abs=1e-3 * fm.single_exposure)
    # order: the first exposed position has received nothing; pass 2 adds the whole first pass
    first = np.unravel_index(np.argmin(rank), rank.shape)
    assert fm.before[0][first] == 0.0
    total = fm.after[0][np.unravel_index(np.argmax(rank), rank.shape)]
    last = np.unravel_index(np.argmax(rank), rank.shape)
    assert fm.before[1][last] + fm.single_exposure == pytest.approx(2 * total)
    assert np.all(np.diff(fm.during, axis=0) > 0)


def test_serpentine_and_raster_same_total_different_history():
    kw = {"power_fraction": 0.99}
    a = dose.accumulated_fluence_map((4, 6), 15.0, 0.5, E300, 50.0, order="raster", **kw)
    b = dose.accumulated_fluence_map((4, 6), 15.0, 0.5, E300, 50.0, order="serpentine", **kw)
    np.testing.assert_allclose(a.map, b.map)
    assert not np.allclose(a.before, b.before)
    # (1, 5) is the last of row 1 in a raster (its row neighbours came first) but the first in a serpentine
    assert a.before[0, 1, 5] > b.before[0, 1, 5]
    assert a.before[0, 1, 0] < b.before[0, 1, 0]


def test_kappa_fourier_sum_equals_real_space_lattice_sum():
    # Poisson summation over the reciprocal lattice (exact) against one full pass in the interior of a
    # real-space raster (truncated kernel, lattice sum of the probe autocorrelation)
    n_e = 100.0
    for semiangle, step in ((2.0, 40.0), (1.0, 15.0)):
        fm = dose.accumulated_fluence_map((41, 41), step, semiangle, E300, n_e, passes=2, power_fraction=0.99)
        assert fm.truncation_radius / step < 20
        per_pass = fm.before[1, 20, 20] - fm.before[0, 20, 20]
        kappa = dose.local_to_scan_ratio(semiangle, E300, step)
        assert per_pass / fm.scan_fluence == pytest.approx(kappa, rel=0.01)
    assert dose.local_to_scan_ratio(2.0, E300, 40.0) == pytest.approx(23.9, abs=0.2)
