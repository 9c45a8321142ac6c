"""Tests of fitting.crystal_fit: vacancy fraction and thickness of LiF fitted together from a 0.15 mrad profile.

The "measured" Type 2 profile is made independently of the fitted components: its LiF part is a different
orientation sample (a randomly rotated Fibonacci set of beam directions, seeded, vs the components' fixed
wedge lattice), with a different excitation-error cut-off, at a thickness between the grid nodes (62 Å) with
20 % F vacancies; its SRO ring has a different position and width (0.297/0.032 vs 0.295/0.030 Å⁻¹) from the SRO
component; a power-law background; Poisson counts drawn per detector pixel and integrated by simkit.radial
(``sum``/``count``). The oracle is the known truth (x = 0.2, t = 62 Å) and the Poisson statistics.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from fitting.crystal_fit import compare_grids, fit_defect_thickness
from simkit import bloch
from simkit.geometry import DetectorGeometry
from simkit.kinematic import make_probe_convolution
from structures.crystals import bulk

E0, SEMIANGLE = 300e3, 0.15
X_TRUE, T_TRUE = 0.2, 62.0
CI = (800, 3000, (0.0, 0.1, 0.2, 0.3, 0.4), (20.0, 45.0, 80.0, 130.0))


def gauss(q, q0, w):
    return np.exp(-0.5 * ((q - q0) / w) ** 2)


@functools.lru_cache(maxsize=2)
def _setup(n_components, n_data, vacancies, thicknesses):
    cell = bulk("LiF")
    geo = DetectorGeometry(shape=(401, 401), pixel_size=0.005)
    conv = make_probe_convolution(
        np.arange(0.0, 1.05, 0.0005), semiangle=SEMIANGLE, energy=E0, geometry=geo, oversample=2, q_max=1.0, n_bins=200
    )
    xs, ts = np.array(vacancies), np.array(thicknesses)
    prof, _, _ = bloch.powder_profiles(
        cell,
        ts,
        semiangle=SEMIANGLE,
        energy=E0,
        occupancies=[{"F": 1 - x} for x in xs],
        n_orientations=n_components,
        symmetry="m-3m",
        convolution=conv,
    )
    rings, _ = bloch.powder_rings(
        cell,
        conv.q,
        [T_TRUE],
        occupancies={"F": 1 - X_TRUE},
        rng=11,
        n_orientations=n_data,
        symmetry="m-3m",
        sg_max=0.08,
    )
    lif = conv.pattern(rings[0])
    lif /= lif.max()
    q = np.maximum(conv.q, 0.02)
    rest = 0.3 * conv.pattern(gauss(conv.q, 0.297, 0.032)) + 0.05 * conv.pattern((q / 0.4) ** -2.5)
    sro = conv(gauss(conv.q, 0.295, 0.03))
    return conv, xs, ts, prof.mean, lif + rest, {"sro": (sro.q, sro.mean)}


def _measure(conv, mu, dose, seed):
    counts = np.random.default_rng(seed).poisson(dose * mu).astype(float)
    return conv.plan.integrate(counts)


def test_vacancy_and_thickness_ci():
    """CI size: 800 orientations per component, 5 × 4 grid, one refinement round, Q scale and blur fixed."""
    conv, xs, ts, comps, mu, others = _setup(*CI)
    data = _measure(conv, mu, 10.0, 0)
    r = fit_defect_thickness(
        data, comps, xs, ts, others=others, name="LiF", q_range=(0.25, 0.95), q_scale=False, blur=False, n_refine=1
    )
    assert r.best_vacancy == pytest.approx(X_TRUE, abs=0.05)
    assert r.vacancy_interval[0] <= r.best_vacancy <= r.vacancy_interval[1]
    assert r.delta_aic_stoichiometric > 10 and r.lrt_p_value < 1e-3
    assert not r.degenerate
    assert ts[0] <= r.best_thickness <= ts[-1] and r.thickness_interval[0] <= r.best_thickness
    assert np.isfinite(r.correlation)
    assert "vacancy fraction" in r.summary()


def test_low_dose_degeneracy_is_reported():
    """At ≈ 6 counts in the 200 peak bin the vacancy fraction is not determined to ±0.05: the tool says so
    (degenerate, a warning, a wide interval) instead of returning a precise number."""
    conv, xs, ts, comps, mu, others = _setup(*CI)
    data = _measure(conv, mu, 0.01, 1)
    r = fit_defect_thickness(
        data, comps, xs, ts, others=others, name="LiF", q_range=(0.25, 0.95), q_scale=False, blur=False, n_refine=1
    )
    assert r.degenerate
    assert r.vacancy_interval[1] - r.vacancy_interval[0] > 0.1
    assert any("not determined" in w for w in r.warnings)


def test_bad_input():
    q = np.linspace(0.2, 1.0, 50)
    y = np.ones(50)
    comps = np.ones((2, 3, 50))
    with pytest.raises(ValueError, match="components has shape"):
        fit_defect_thickness((q, y), comps, [0.0, 0.1, 0.2], [10.0, 20.0, 30.0])
    with pytest.raises(ValueError, match="vacancy"):
        fit_defect_thickness((q, y), comps, [0.1, 0.0], [10.0, 20.0, 30.0])
    with pytest.raises(ValueError, match="thickness"):
        fit_defect_thickness((q, y), comps, [0.0, 0.1], [10.0])
    with pytest.raises(ValueError, match="name"):
        fit_defect_thickness((q, y), comps, [0.0, 0.1], [10.0, 20.0, 30.0], others={"crystal": (q, y)})
    with pytest.raises(TypeError, match="measured"):
        fit_defect_thickness(y, comps, [0.0, 0.1], [10.0, 20.0, 30.0])


@pytest.mark.slow
@pytest.mark.parametrize(("dose", "seed"), [(1.0, 0), (10.0, 0), (10.0, 1), (100.0, 0)])
def test_vacancy_and_thickness_full(dose, seed):
    """1500 orientations per component, 9 × 8 grid (x 0–0.4, t 2–16 nm), Q scale and blur fitted; data from
    3000 orientations (t = 6.2 nm, x = 0.2). Measured (200-peak bin ≈ 600 / 6000 / 6000 / 63000 counts):

    ========  =============  ====================  =====  =========
    dose      x ± σ          t [nm] (68 %)         ρ(x,t) ΔAIC(x=0)
    ========  =============  ====================  =====  =========
    1, s0     0.207 ± 0.019  8.6 (4.2–12.8)        +0.51  94
    10, s0    0.208 ± 0.006  7.1 (5.7–8.6)         +0.48  999
    10, s1    0.205 ± 0.006  9.9 (8.4–11.4)        +0.58  936
    100, s0   0.198 ± 0.002  8.1 (7.7–8.5)         +0.48  8898
    ========  =============  ====================  =====  =========

    The vacancy fraction is recovered to ≤ 0.01 at every dose. The thickness is not: an orientation average
    changes I111/I200 by only ≈ 10 % from 2 to 10 nm, so ≈ 1–3 % differences between the orientation samples of
    data and components move t by 1–4 nm, and its statistical 68 % interval misses the truth at ≥ 6000 counts.
    Only a loose bound is asserted."""
    xs = tuple(np.round(np.arange(0.0, 0.41, 0.05), 3))
    ts = tuple(np.arange(20.0, 161.0, 20.0))
    conv, xs, ts, comps, mu, others = _setup(1500, 3000, xs, ts)
    data = _measure(conv, mu, dose, seed)
    r = fit_defect_thickness(data, comps, xs, ts, others=others, name="LiF", q_range=(0.25, 0.95))
    print(f"\ndose {dose} seed {seed}\n{r.summary()}")
    assert r.best_vacancy == pytest.approx(X_TRUE, abs=0.05)
    assert r.delta_aic_stoichiometric > 10
    assert not r.degenerate
    assert r.best_thickness == pytest.approx(T_TRUE, abs=45.0)  # see the docstring: t is weakly identifiable


@pytest.mark.slow
@pytest.mark.parametrize("truth", ["ionic", "neutral"])
def test_ionicity_is_a_systematic_of_the_vacancy_fraction(truth):
    """Data with ionic (Li⁺, F⁻, Mott–Bethe) or neutral scattering factors, 20 % F vacancies, 6.2 nm; fitted with
    neutral and with ionic component grids (1000 orientations each, data 3000). Measured at ≈ 1900 counts in the
    200 peak bin: the two assumptions give x differing by ≈ 0.035 (ionic factors need fewer vacancies for the same
    I111/I200) — below the 0.05 requirement, but larger than σx ≈ 0.01. Which assumption the data prefer is NOT
    reliable with independent orientation samples: ΔAIC preferred 'ionic' by 52 for ionic data and by 11 for
    neutral data (with identical orientation sets and SRO shape each truth was preferred by ΔAIC ≈ 196) — so the
    test asserts the spread and the recovery under the true assumption, not the preference."""
    conv, xs, ts, _, _, others = _setup(*CI)
    cell = bulk("LiF")
    ion = {"Li": 1, "F": -1}
    grids = {}
    for name, charges in (("neutral", None), ("ionic", ion)):
        prof, _, _ = bloch.powder_profiles(
            cell,
            ts,
            semiangle=SEMIANGLE,
            energy=E0,
            occupancies=[{"F": 1 - x} for x in xs],
            n_orientations=1000,
            symmetry="m-3m",
            convolution=conv,
            charges=charges,
        )
        grids[name] = prof.mean
    rings, _ = bloch.powder_rings(
        cell,
        conv.q,
        [T_TRUE],
        occupancies={"F": 1 - X_TRUE},
        rng=11,
        n_orientations=3000,
        symmetry="m-3m",
        sg_max=0.08,
        charges=ion if truth == "ionic" else None,
    )
    lif = conv.pattern(rings[0])
    q = np.maximum(conv.q, 0.02)
    mu = lif / lif.max() + 0.3 * conv.pattern(gauss(conv.q, 0.297, 0.032)) + 0.05 * conv.pattern((q / 0.4) ** -2.5)
    c = compare_grids(
        _measure(conv, mu, 3.0, 0),
        grids,
        xs,
        ts,
        others=others,
        name="LiF",
        q_range=(0.25, 0.95),
        q_scale=False,
        blur=False,
        n_refine=1,
    )
    print(f"\ntruth {truth}\n{c.table()}")
    assert c.fits[truth].best_vacancy == pytest.approx(X_TRUE, abs=0.05)
    shift = c.fits["neutral"].best_vacancy - c.fits["ionic"].best_vacancy
    assert 0.015 < shift < 0.07


@pytest.mark.slow
@pytest.mark.parametrize("dose", [10.0, 100.0, 1000.0])
def test_single_zone_axis_grain(dose):
    """One LiF grain on [011] (a 0.15 mrad pixel on a zone-axis grain): components are exact-zone-axis slabs
    drawn as discs (spot_pattern) and integrated by simkit.radial; the data grain is tilted 1 mrad off the zone
    axis, with a larger excitation-error and g cut-off, another azimuth, t = 6.2 nm, x = 0.2. Here thickness
    moves I111/I200 as much as vacancies do (×2.5 from 1 to 9 nm), yet both are identifiable: the other zone
    reflections (220, 311, 222, 400) fix the thickness. Measured (200-peak bin 56 / 651 / 7012 counts):
    x = 0.230 ± 0.037 / 0.190 ± 0.016 / 0.200 ± 0.004, t = 6.4 / 5.7 / 6.3 nm, ρ(x, t) = +0.41 / +0.50 / +0.48
    (x and t trade off along a valley; at the lowest dose D rises by only 3–9 at x = 0.1 or 0.3 with t shifted)."""
    from simkit.radial import make_plan_from_geometry

    conv, _, _, _, _, others = _setup(*CI)
    cell = bulk("LiF")
    geo = conv.geometry
    plan = make_plan_from_geometry(geo, q_max=1.0, n_bins=200)
    xs, ts = np.array([0.0, 0.1, 0.2, 0.3, 0.4]), np.arange(20.0, 161.0, 20.0)
    comps = np.empty((xs.size, ts.size, 200))
    for i, x in enumerate(xs):
        b = bloch.slab_beams(cell, ts, direction=(0, 1, 1), occupancy={"F": 1 - x})
        for j in range(ts.size):
            comps[i, j] = plan.integrate(bloch.spot_pattern(b, geo, semiangle=SEMIANGLE, thickness_index=j)).mean
    u = np.array([0.0, 1.0, 1.0]) / np.sqrt(2) + np.array([1e-3, 0.0, 0.0])
    b = bloch.slab_beams(cell, [T_TRUE], direction=u, occupancy={"F": 1 - X_TRUE}, sg_max=0.15, g_max=2.5)
    lif = bloch.spot_pattern(b, geo, semiangle=SEMIANGLE, azimuth=0.4)
    q = np.maximum(conv.q, 0.02)
    rest = 0.3 * conv.pattern(gauss(conv.q, 0.297, 0.032)) + 0.05 * conv.pattern((q / 0.4) ** -2.5)
    mu = lif / lif.max() + 0.02 * rest / rest.max()
    data = plan.integrate(np.random.default_rng(0).poisson(dose * mu).astype(float))
    r = fit_defect_thickness(
        data, comps, xs, ts, others=others, name="LiF", q_range=(0.25, 0.95), q_scale=False, blur=False
    )
    print(f"\ndose {dose}\n{r.summary()}")
    assert r.best_vacancy == pytest.approx(X_TRUE, abs=0.05)
    assert r.best_thickness == pytest.approx(T_TRUE, abs=10.0)
    assert r.correlation > 0.2  # more vacancies ↔ thicker: both move I111/I200, in opposite directions
    assert r.delta_aic_stoichiometric > 10
