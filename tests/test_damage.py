"""Oracles for simkit.damage: kinetics, Li₂O reflections in damaged profiles, structure-level damage series."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
from ase import Atoms
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit import damage as dm
from simkit.peak_estimator import peak_position

matplotlib.use("Agg")

Q = np.arange(0.05, 1.0 + 1e-9, 0.0025)


@pytest.fixture(scope="module")
def type1_profile():
    """A Type 1-like profile: ⟨f²⟩ of O times (1 + SRO peaks at 0.33 and 0.6 Å⁻¹) [Å²/atom]."""
    from simkit.kinematic import scattering_factor

    f2 = scattering_factor("O", Q) ** 2
    sro = 0.6 * np.exp(-0.5 * ((Q - 0.33) / 0.035) ** 2) + 0.25 * np.exp(-0.5 * ((Q - 0.6) / 0.05) ** 2)
    return f2 * (1 + sro), f2


# ---------------------------------------------------------------------------------------------- kinetics
def test_kinetics_monotonic_and_bounded():
    m = dm.DamageModel(threshold_kind="local")
    d = np.linspace(0, 2e4, 2001)
    x = dm.transformed_fraction(d, m)
    a = dm.amorphous_fraction(d, m)
    s = dm.crystallite_size(d, m)
    fr = dm.phase_fractions(d, m)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(a) <= 0) and np.all(np.diff(s) >= 0)
    assert np.all(np.diff(fr["li2o"]) >= -1e-15)
    assert x[0] == 0 and x[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(fr["amorphous"] + fr["li2o"] + fr["disordered"], 1.0, atol=1e-12)
    assert np.all(fr["li2o"] <= 1 - fr["amorphous"] + 1e-15)
    assert s[0] == m.initial_size and s[-1] == pytest.approx(m.final_size)


def test_jmak_and_decay_analytic_values():
    m = dm.DamageModel(threshold_kind="local", onset_dose=500.0, rate=1e-3, avrami_exponent=3.0, critical_dose=1000.0)
    # X(D) = 1 − exp(−(k(D − D0))ⁿ): at D − D0 = 1/k, X = 1 − 1/e; zero before the onset
    assert dm.transformed_fraction(1500.0, m) == pytest.approx(1 - np.exp(-1))
    assert dm.transformed_fraction(499.0, m) == 0.0
    assert dm.transformed_fraction(1000.0, m) == pytest.approx(1 - np.exp(-(0.5**3)))
    assert dm.amorphous_fraction(1000.0, m) == pytest.approx(np.exp(-1))


def test_default_model_meets_the_study_anchors():
    m = dm.DamageModel()
    assert m.threshold_kind == "scan"
    # < 10 % change at 200 e/Å² (scan fluence under the reference SEND conditions): no Li₂O, SRO > 90 %
    fr = dm.phase_fractions(200.0, m, "scan")
    assert fr["li2o"] == 0.0 and fr["amorphous"] > 0.9
    # at 3600 e/Å² half the material is transformed, most of the SRO is gone
    fr = dm.phase_fractions(3600.0, m, "scan")
    assert fr["li2o"] > 0.3 and fr["amorphous"] < 0.3
    # the scan assumption: the material saw κ ≈ 24 × the scan fluence locally (2 mrad, 40 Å step)
    assert 20 < m.kappa < 28
    assert dm.transformed_fraction(3600.0 * m.kappa, m, "local") == pytest.approx(
        dm.transformed_fraction(3600.0, m, "scan")
    )
    local = dataclasses.replace(m, threshold_kind="local")
    assert dm.transformed_fraction(3600.0, local, "local") == pytest.approx(dm.transformed_fraction(3600.0, m, "scan"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold_kind": "peak"}, "threshold_kind"),
        ({"critical_dose": -1.0}, "critical_dose"),
        ({"onset_dose": -5.0}, "onset_dose"),
        ({"max_li2o_fraction": 1.2}, "max_li2o_fraction"),
        ({"mass_loss": -0.1}, "mass_loss"),
        ({"initial_size": 60.0, "final_size": 50.0}, "final_size"),
        ({"rate": float("nan")}, "rate"),
    ],
)
def test_bad_model(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dm.DamageModel(**kwargs)


def test_bad_dose():
    m = dm.DamageModel(threshold_kind="local")
    with pytest.raises(ValueError, match="fluence"):
        dm.transformed_fraction(-1.0, m)
    with pytest.raises(ValueError, match="kind"):
        dm.transformed_fraction(1.0, m, kind="dose")
    with pytest.raises(ValueError, match="doses"):
        dm.dose_series([-5.0], type1=(Q, np.ones_like(Q)))


# ---------------------------------------------------------------------------------------------- profiles
def test_li2o_structure_factor_antifluorite():
    from simkit.kinematic import scattering_factor

    q = np.array([0.376])
    f_o, f_li = scattering_factor("O", q), scattering_factor("Li", q)
    np.testing.assert_allclose(dm.li2o_structure_factor(q, 3), 4 * f_o)  # 111: Li cancels
    np.testing.assert_allclose(dm.li2o_structure_factor(q, 2), 4 * (f_o - 2 * f_li))  # 200: weak
    np.testing.assert_allclose(dm.li2o_structure_factor(q, 4), 4 * (f_o + 2 * f_li))  # 220: strong


def test_li2o_analytic_profile_positions_and_width():
    size = 40.0
    i = dm.li2o_powder_profile(Q, size, b_factor=0.0, scherrer_k=0.9)
    a = 4.600  # cryo lattice constant of structures.crystals (RT 4.611 → 0.376 and 0.613)
    for hkl2, lo, hi in ((3, 0.35, 0.40), (8, 0.59, 0.64)):
        fit = peak_position(Q, i, q_range=(lo, hi), n=0)
        assert fit.position == pytest.approx(np.sqrt(hkl2) / a, abs=1e-3)
        # Gaussian σ = K/L / 2.3548
        assert fit.width == pytest.approx(0.9 / size / 2.3548, rel=0.1)


@pytest.mark.slow
def test_li2o_analytic_vs_debye_nanocrystal_slow():
    r_deb, r_an = _analytic_vs_debye(40.0)
    assert r_deb == pytest.approx(r_an, rel=0.05)


def test_li2o_analytic_vs_debye_nanocrystal_small():
    r_deb, r_an = _analytic_vs_debye(26.0)
    assert r_deb == pytest.approx(r_an, rel=0.05)


def _analytic_vs_debye(size):
    """Kinematic Debye sum of a real nanocrystal against the analytic powder rings (independent routes)."""
    from simkit.kinematic import debye_intensity
    from structures.crystals import nanocrystal

    i_deb = debye_intensity(nanocrystal("Li2O", size, rng=1), Q)
    i_an = dm.li2o_powder_profile(Q, size, b_factor=0.0, scherrer_k=1.0)

    def area(i, lo, hi):
        s = (Q >= lo) & (Q <= hi)
        y = i[s] * 4 * np.pi * Q[s] ** 2
        return np.trapezoid(y - np.interp(Q[s], Q[s][[0, -1]], y[[0, -1]]), Q[s])

    w = 0.045  # ±3σ of the 111/220 peaks for sizes >= 26 Å; excludes 200 (0.435) and 311 (0.721)
    for q0 in (0.3765, 0.6149):
        p_deb = peak_position(Q, i_deb, q_range=(q0 - 0.02, q0 + 0.02), n=0).position
        p_an = peak_position(Q, i_an, q_range=(q0 - 0.02, q0 + 0.02), n=0).position
        # finite-size shift of the Debye maximum to lower Q grows as the crystal shrinks (0.002 Å⁻¹ at 26 Å)
        assert p_deb == pytest.approx(p_an, abs=1.2e-3 if size >= 40 else 2.5e-3)
    r_deb = area(i_deb, 0.6149 - w, 0.6149 + w) / area(i_deb, 0.3765 - w, 0.3765 + w)
    r_an = area(i_an, 0.6149 - w, 0.6149 + w) / area(i_an, 0.3765 - w, 0.3765 + w)
    return r_deb, r_an  # 220/111 ring areas: |F220|²·12 / |F111|²·8 with the Q⁻² ring dilution


def test_damaged_profile_mixing_and_li2o_positions(type1_profile):
    i1, f2 = type1_profile
    m = dm.DamageModel()
    doses = np.array([0.0, 200.0, 1000.0, 2000.0, 3600.0, 6000.0])
    prof = dm.damaged_profile(Q, i1, dm.li2o_powder_profile, doses, m, kind="scan")
    assert prof.shape == (6, Q.size)
    np.testing.assert_allclose(prof[0], i1)  # undamaged
    # < 10 % change at 200 e/Å² anywhere in 0.2–0.8 Å⁻¹
    s = (Q > 0.2) & (Q < 0.8)
    assert np.max(np.abs(prof[1, s] / i1[s] - 1)) < 0.1
    # the SRO peak height above ⟨f²⟩ fades monotonically
    k = np.argmin(np.abs(Q - 0.33))
    excess = prof[:, k] / f2[k] - 1
    assert np.all(np.diff(excess) < 0)
    # Li₂O reflections at their reference positions (unconvolved profile, I·Q maximum)
    for dose_idx in (4, 5):
        for ref_q, lo, hi in ((0.376, 0.355, 0.395), (0.613, 0.595, 0.635)):
            fit = peak_position(Q, prof[dose_idx], q_range=(lo, hi), n=1)
            assert fit.ok
            assert fit.position == pytest.approx(ref_q, abs=0.005)
    # the array form of the Li₂O input is Scherrer-broadened to the same result as the callable
    sharp = dm.li2o_powder_profile(Q, 150.0)  # FWHM 0.006 Å⁻¹: still resolved by the 0.0025 Å⁻¹ grid
    via_array = dm.damaged_profile(Q, i1, sharp, 3600.0, m, kind="scan")
    fit = peak_position(Q, via_array, q_range=(0.355, 0.395), n=1)
    assert fit.position == pytest.approx(0.376, abs=0.005)


def test_mass_loss_scales_the_profile(type1_profile):
    i1, f2 = type1_profile
    m = dm.DamageModel(threshold_kind="local", mass_loss=0.3, mass_loss_dose=1000.0, onset_dose=1e6)
    p = dm.damaged_profile(Q, i1, dm.li2o_powder_profile, 1e5, m, disordered_iq=f2)
    np.testing.assert_allclose(p, 0.7 * f2, rtol=1e-9)  # all SRO gone, 30 % of the mass lost


def test_scherrer_broadening_conserves_area():
    y = np.zeros_like(Q)
    y[200] = 1.0
    b = dm.scherrer_broaden(Q, y, 0.03)
    assert np.trapezoid(b, Q) == pytest.approx(np.trapezoid(y, Q), rel=1e-3)
    mu = np.trapezoid(b * Q, Q) / np.trapezoid(b, Q)
    sigma = np.sqrt(np.trapezoid(b * (Q - mu) ** 2, Q) / np.trapezoid(b, Q))
    assert mu == pytest.approx(Q[200], abs=1e-9)
    assert sigma * 2 * np.sqrt(2 * np.log(2)) == pytest.approx(0.03, rel=0.02)


# ---------------------------------------------------------------------------------------------- dose series
def test_dose_series_at_2_mrad(type1_profile):
    i1, _ = type1_profile
    doses = [0.0, 200.0, 3600.0, 8000.0]
    ser = dm.dose_series(doses, type1=(Q, i1), semiangle=2.0)
    assert ser.profiles_probe.shape[0] == 4 and ser.q_probe.ndim == 1
    np.testing.assert_allclose(ser.local_fluence, np.array(doses) * ser.model.kappa, rtol=1e-6)
    # fractions follow the model for the scan fluence under the reference conditions
    np.testing.assert_allclose(ser.li2o_fraction, dm.phase_fractions(np.array(doses), ser.model, "scan")["li2o"])
    # detectability at 3600 e/Å²: the recorded (probe-convolved) I·Q at the Li₂O 111 ring rises by > 10 %
    # relative to the undamaged profile, while nothing moves by 10 % at 200 e/Å²
    qp, pp = ser.q_probe, ser.profiles_probe
    k = np.argmin(np.abs(qp - 0.376))
    s = (qp > 0.2) & (qp < 0.8)
    assert np.max(np.abs(pp[1, s] / pp[0, s] - 1)) < 0.1
    li2o_part = ser.li2o_fraction[2] * np.interp(qp, ser.q, dm.li2o_powder_profile(ser.q, ser.crystallite_size[2]))
    assert li2o_part[k] > 0.1 * pp[2, k]
    # the SRO peak fades, the Li₂O 220 region rises (convolved)
    k33 = np.argmin(np.abs(qp - 0.33))
    assert pp[0, k33] > pp[3, k33]
    fig = dm.plot_dose_series(ser)
    assert len(fig.axes) == 3
    fig2 = dm.plot_dose_series(ser, probe=False, n=0)
    assert len(fig2.axes[0].lines) >= 4


def test_dose_series_seeded_and_kinds(type1_profile):
    i1, _ = type1_profile
    a = dm.dose_series([0.0, 3600.0], type1=(Q, i1), dose_kind="scan")
    b = dm.dose_series([0.0, 3600.0], type1=(Q, i1), dose_kind="scan")
    np.testing.assert_array_equal(a.profiles_probe, b.profiles_probe)
    # 0.15 mrad with a 40 Å step: κ = 1, so the same scan fluence damages ≈ 24 × less (scan assumption)
    c = dm.dose_series([3600.0], type1=(Q, i1), semiangle=0.15)
    assert c.local_fluence[0] == pytest.approx(3600.0, rel=1e-6)
    assert c.li2o_fraction[0] < 1e-3 < a.li2o_fraction[1]


# ---------------------------------------------------------------------------------------------- structures
def _toy_amorphous(rng, box=44.0, n_units=900):
    """A periodic Li–O–F box of rigid 'units' (unit_id) at random positions: enough for the geometry oracles."""
    centres = rng.random((n_units, 3)) * box
    symbols, pos, uid = [], [], []
    for u, c in enumerate(centres):
        for s, off in (("O", (0, 0, 0)), ("Li", (1.9, 0, 0)), ("F", (0, 1.9, 0))):
            symbols.append(s)
            pos.append(c + off)
            uid.append(u)
    at = Atoms(symbols, positions=pos, cell=[box] * 3, pbc=True)
    at.wrap()
    at.arrays["unit_id"] = np.array(uid)
    return at


def test_damage_series_structures():
    rng = np.random.default_rng(3)
    atoms = _toy_amorphous(rng)
    m = dm.DamageModel(threshold_kind="local", initial_size=16.0, final_size=24.0, mass_loss=0.2, mass_loss_dose=2e3)
    doses = [0.0, 2000.0, 5000.0]
    series = dm.damage_series(atoms, doses, m, rng=7)
    assert len(series) == 3
    assert series[0].info["n_crystallites"] == 0 and series[0].info["f_removed"] == 0
    assert len(series[0]) == len(atoms)
    for s, d in zip(series, doses):
        np.testing.assert_allclose(s.cell.array, atoms.cell.array)
        assert all(s.pbc)
        assert s.info["dose"] == d
    late = series[2]
    assert late.info["n_crystallites"] >= 1
    # realised volume fraction close to the target (within half a grain and the sampling error) ...
    target = late.info["li2o_fraction"]
    v1 = np.pi * late.info["crystallite_size"] ** 3 / 6 / 44.0**3
    assert abs(late.info["li2o_volume_fraction"] - target) <= v1 / 2 + 0.01
    # ... and the inserted atoms fill that volume at the Li₂O number density 12 / a³ (a = 4.600 Å)
    n_new = np.sum(late.arrays["unit_id"] >= 900)
    assert n_new / (12 / 4.600**3 * 44.0**3) == pytest.approx(late.info["li2o_volume_fraction"], rel=0.15)
    # whole units removed: every surviving unit_id of the original model is complete (3 atoms)
    uid = late.arrays["unit_id"]
    orig = uid[uid < 900]
    counts = np.bincount(orig)
    syms = np.array(late.get_chemical_symbols())[uid < 900]
    assert np.all(counts[counts > 0] <= 3)
    # fluorine loss: 1 − m(D) of the remaining F removed
    assert late.info["f_removed"] > 0
    assert np.sum(syms == "F") < np.sum(syms == "O")
    # inserted Li₂O is stoichiometric-ish (Li:O ≈ 2)
    new = uid >= 900
    ns = np.array(late.get_chemical_symbols())[new]
    assert np.sum(ns == "Li") / np.sum(ns == "O") == pytest.approx(2.0, rel=0.25)
    # seeded runs repeat
    again = dm.damage_series(atoms, doses, m, rng=7)
    for s1, s2 in zip(series, again):
        np.testing.assert_array_equal(s1.positions, s2.positions)
        np.testing.assert_array_equal(s1.numbers, s2.numbers)


def test_damage_series_bad_input():
    with pytest.raises(TypeError, match="atoms"):
        dm.damage_series("Li2O", [0.0])
    at = Atoms("Li", positions=[[0, 0, 0]], cell=[10, 10, 10], pbc=False)
    with pytest.raises(ValueError, match="periodic"):
        dm.damage_series(at, [0.0])


def test_pattern_fractions_follow_the_scan_history():
    from simkit.dose import accumulated_fluence_map, electrons_per_pattern

    m = dm.DamageModel()
    n_e = electrons_per_pattern(50.0, 1e-3)  # 50 pA, 1 ms: 195 e/Å² scan fluence per pass at 40 Å
    fm = accumulated_fluence_map((6, 6), 40.0, 2.0, 300e3, n_e, passes=20, power_fraction=0.99)
    pf = dm.pattern_fractions(fm, m)
    assert pf["li2o"].shape == (20, 6, 6)
    # dose only grows: pass after pass and, within a pass, never decreases along the acquisition order
    assert np.all(np.diff(pf["fluence"], axis=0) > 0)
    assert np.all(np.diff(pf["amorphous"], axis=0) <= 0)
    order = np.argsort(fm.order.ravel())
    # the probe barely overlaps at 40 Å: every pattern sees ≈ the same dose as the interior κ × scan fluence
    expected = (np.arange(20) + 0.5) * fm.single_exposure
    np.testing.assert_allclose(pf["fluence"].reshape(20, -1)[:, order].mean(axis=1), expected, rtol=0.02)
    # 20 passes × 195 e/Å² = 3900 e/Å² scan fluence under the reference conditions: Li₂O has formed
    assert pf["li2o"][-1].min() > 0.3
    with pytest.raises(ValueError, match="when"):
        dm.pattern_fractions(fm, m, when="later")


@pytest.mark.slow
def test_dose_series_with_type1_structure_slow():
    ser = dm.dose_series([0.0, 200.0, 3600.0, 6000.0], rng=1)
    for i in (2, 3):
        for ref_q, lo, hi in ((0.376, 0.355, 0.395), (0.613, 0.595, 0.635)):
            fit = peak_position(ser.q, ser.profiles[i], q_range=(lo, hi))
            assert fit.ok and fit.position == pytest.approx(ref_q, abs=0.005)
    s = (ser.q_probe > 0.2) & (ser.q_probe < 0.8)
    assert np.max(np.abs(ser.profiles_probe[1, s] / ser.profiles_probe[0, s] - 1)) < 0.1


@settings(max_examples=40, deadline=None)
@given(
    dc=st.floats(100, 1e5),
    d0=st.floats(0, 1e4),
    k=st.floats(1e-5, 1e-2),
    n=st.floats(0.5, 4.0),
    xmax=st.floats(0, 1),
)
def test_kinetics_properties_for_any_valid_model(dc, d0, k, n, xmax):
    m = dm.DamageModel(
        threshold_kind="local", critical_dose=dc, onset_dose=d0, rate=k, avrami_exponent=n, max_li2o_fraction=xmax
    )
    d = np.geomspace(1.0, 1e6, 300)
    fr = dm.phase_fractions(d, m)
    for v in fr.values():
        assert np.all((v >= 0) & (v <= 1))
    np.testing.assert_allclose(fr["amorphous"] + fr["li2o"] + fr["disordered"], 1.0, atol=1e-12)
    assert np.all(np.diff(fr["amorphous"]) <= 0)
    assert np.all(np.diff(dm.transformed_fraction(d, m)) >= 0)
    assert np.all(np.diff(dm.crystallite_size(d, m)) >= 0)
