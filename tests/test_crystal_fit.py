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

from fitting.crystal_fit import fit_defect_thickness
from simkit import bloch
from simkit.geometry import DetectorGeometry
from simkit.kinematic import make_probe_convolution
from structures.crystals import bulk

E0, SEMIANGLE = 300e3, 0.15
X_TRUE, T_TRUE = 0.2, 62.0


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
        cell, conv.q, [T_TRUE], occupancies={"F": 1 - X_TRUE}, rng=11, n_orientations=n_data, symmetry="m-3m", sg_max=0.08
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
    """CI size: 300 orientations per component, 5 × 4 grid, one refinement round, Q scale and blur fixed.
    Measured: x = 0.20 ± 0.01, ΔAIC(stoichiometric) ≈ 10³ at ≈ 6000 counts in the 200 peak bin."""
    conv, xs, ts, comps, mu, others = _setup(300, 1000, (0.0, 0.1, 0.2, 0.3, 0.4), (20.0, 45.0, 80.0, 130.0))
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
    conv, xs, ts, comps, mu, others = _setup(300, 1000, (0.0, 0.1, 0.2, 0.3, 0.4), (20.0, 45.0, 80.0, 130.0))
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
    3000 orientations. See the final report of issue 9 for the measured table."""
    xs = tuple(np.round(np.arange(0.0, 0.41, 0.05), 3))
    ts = tuple(np.arange(20.0, 161.0, 20.0))
    conv, xs, ts, comps, mu, others = _setup(1500, 3000, xs, ts)
    data = _measure(conv, mu, dose, seed)
    r = fit_defect_thickness(data, comps, xs, ts, others=others, name="LiF", q_range=(0.25, 0.95))
    print(f"\ndose {dose} seed {seed}\n{r.summary()}")
    assert r.best_vacancy == pytest.approx(X_TRUE, abs=0.05)
    assert r.delta_aic_stoichiometric > 10
    assert not r.degenerate
    # the thickness is weakly determined by an orientation average (≈ +10 % in I111/I200 from 2 to 10 nm) and
    # biased by the finite orientation sampling of components and data: within 3 nm only
    assert r.best_thickness == pytest.approx(T_TRUE, abs=30.0)
