"""Experiment planner (fitting.plan): expected likelihood ratios, their Poisson spread and the answer.

Oracles: the Asimov ΔlogL of simple hypotheses is the Kullback–Leibler divergence, i.e. the exact mean of the
log-likelihood ratio over Poisson data (checked against ≥ 200 seeded draws within their standard error); the
expected ΔlogL is linear in the exposure (doubling the dose doubles it, also with the free scale and the
profiled thickness); identical hypotheses give 0 and a coin toss; the Gaussian decision probability agrees with
the simulated frequency; the profile deviance equals log L(y; y) − max log L(y; s·m) from
``fitting.model.poisson_loglike`` and a numerical maximisation; local fluence lies between one exposure
(N / A_eff) and the interior of a full raster (κ N / step²); the damage limit inverts
``simkit.damage.amorphous_fraction``; an integrating detector with a relative gain spread of 1 halves the
equivalent counts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from fitting.cli import main
from fitting.model import poisson_loglike
from fitting.plan import Hypothesis, PlanResult, PlanRow, hypothesis_from_atoms, plan_experiment, plot_plan
from fitting.plan.core import _deviance_min
from simkit.damage import DamageModel, amorphous_fraction
from simkit.detector import DetectorModel
from simkit.dose import effective_area, local_to_scan_ratio
from simkit.geometry import DetectorGeometry

Q = np.arange(0.0, 0.5 + 1e-9, 0.001)  # [Å⁻¹]
GEOM = DetectorGeometry(shape=(64, 64), pixel_size=0.01)
ALPHA = 0.5  # [mrad]: disc radius 0.025 Å⁻¹, cheap fluence tables
STEP = 40.0  # [Å]
KW = {"semiangles": (ALPHA,), "steps": (STEP,), "geometry": GEOM, "q_range": (0.1, 0.4), "scan_shape": (6, 6)}


def ring(q0: float, width: float, amp: float = 0.02) -> np.ndarray:
    """A Gaussian ring on a smooth falling background [fraction of the beam per Å⁻²]."""
    return amp * np.exp(-0.5 * ((Q - q0) / width) ** 2) + 0.01 * np.exp(-Q / 0.15)


def simple(name: str, q0: float, width: float, **kw) -> Hypothesis:
    return Hypothesis(name=name, q=Q, thicknesses=(100.0,), density=ring(q0, width), thickness=100.0, **kw)


def tabulated(name: str, shift: float) -> Hypothesis:
    """Three thicknesses whose ring ratio changes with thickness (as dynamical scattering does)."""
    t = np.array([50.0, 100.0, 200.0])
    dens = np.stack([ring(0.25, 0.01, 0.02 * x / 100) + ring(0.30 + shift, 0.01, 0.02 * (x / 100) ** 1.5) for x in t])
    return Hypothesis(name=name, q=Q, thicknesses=t, density=dens, thickness=100.0)


A, B = simple("A", 0.295, 0.03), simple("B", 0.303, 0.012)


def test_deviance_min_equals_poisson_loglike_with_numerically_fitted_scale(rng):
    m = np.stack([ring(0.3, 0.02)[100:400:10] * 50, ring(0.28, 0.03)[100:400:10] * 80])
    y = rng.poisson(m[0] * 1.3).astype(float)
    d, k = _deviance_min(y, m, free_scale=True)
    best = []
    for row in m:
        res = minimize_scalar(lambda s, row=row: -poisson_loglike(y, s * row), bounds=(0.1, 10), method="bounded",
                              options={"xatol": 1e-10})  # fmt: skip
        best.append(poisson_loglike(y, y) - (-res.fun))
    assert k == int(np.argmin(best))
    assert d == pytest.approx(min(best), rel=1e-6, abs=1e-8)
    d_fixed, _ = _deviance_min(y, m, free_scale=False)
    assert d_fixed == pytest.approx(min(poisson_loglike(y, y) - poisson_loglike(y, r) for r in m), rel=1e-10)


def test_expected_dlogl_is_the_mean_of_200_seeded_scans():
    # simple hypotheses (no free parameter): Λ is linear in the counts, E[Λ] = KL(A‖B) exactly
    res = plan_experiment((A, B), electrons_per_pattern=(2e3,), free_scale=False, n_sim=400, seed=3, **KW)
    r = res.rows[0]
    assert 1.0 < r.delta_loglike_a < 50.0  # a regime where the check means something
    assert abs(r.sim_mean_a - r.delta_loglike_a) < 3.0 * r.sim_sem_a
    # the linearised sd is the exact sd of a linear statistic: compare with the sample sd (χ² on 399 dof)
    assert r.sim_sd_a == pytest.approx(r.sd_a, rel=0.15)


def test_doubling_the_dose_doubles_the_expected_dlogl_without_damage():
    ta, tb = tabulated("thin-ratio", 0.0), tabulated("shifted", 0.004)
    res = plan_experiment((ta, tb), electrons_per_pattern=(1e3, 2e3), n_sim=0, **KW)
    r1, r2 = res.rows
    assert r1.delta_loglike_a > 0 and r1.delta_loglike_b > 0
    assert r2.delta_loglike_a == pytest.approx(2 * r1.delta_loglike_a, rel=1e-9)
    assert r2.delta_loglike_b == pytest.approx(2 * r1.delta_loglike_b, rel=1e-9)
    assert r2.counts == pytest.approx(2 * r1.counts, rel=1e-12)
    assert r2.local_fluence == pytest.approx(2 * r1.local_fluence, rel=1e-12)
    assert "thickness profiled" in res.nuisance


def test_identical_hypotheses_give_zero_and_a_coin_toss():
    twin = simple("A twin", 0.295, 0.03)
    res = plan_experiment((A, twin), electrons_per_pattern=(1e4,), n_sim=50, **KW)
    r = res.rows[0]
    assert abs(r.delta_loglike_a) < 1e-9 and abs(r.delta_loglike_b) < 1e-9
    assert r.p_correct == 0.5 and r.p_correct_sim == 0.5
    assert not res.recommend().reachable


def test_gaussian_decision_probability_agrees_with_simulated_frequency():
    # ~240 counts in the compared bins: the regime where the asymptotic normal approximation should hold
    near = simple("B near", 0.30, 0.028)
    res = plan_experiment((A, near), electrons_per_pattern=(1e5,), free_scale=False, n_sim=2000, seed=5, **KW)
    r = res.rows[0]
    assert r.counts > 100 and 0.7 < r.p_correct < 0.95
    se = math.sqrt(r.p_correct * (1 - r.p_correct) / 2000)
    assert abs(r.p_correct_sim - r.p_correct) < 3 * se + 0.02


def test_local_fluence_between_one_exposure_and_a_full_raster():
    n_e = 1e4
    r = plan_experiment((A, B), electrons_per_pattern=(n_e,), region_pixels=4, n_sim=0, **KW).rows[0]
    one = n_e / effective_area(ALPHA, 300e3)
    full = local_to_scan_ratio(ALPHA, 300e3, STEP) * n_e / STEP**2
    assert one < r.local_fluence <= full * 1.001
    assert r.scan_fluence == pytest.approx(n_e / STEP**2)


def test_damage_limit_inverts_the_amorphous_fraction_and_damage_changes_the_truth():
    model = DamageModel()
    amorph = simple("amorphous", 0.295, 0.03, damage="amorphous", atom_density=0.08)
    doses = (1e2, 3e7)  # 0.5 mrad, 4 nm: local ≈ 1.6 × scan fluence; the damage model's scale is 24 × (2 mrad)
    on = plan_experiment((amorph, B), electrons_per_pattern=doses, damage=model, max_damage=0.2, n_sim=0, **KW)
    off = plan_experiment((amorph, B), electrons_per_pattern=doses, damage=None, n_sim=0, **KW)
    assert float(amorphous_fraction(on.damage_fluence, model, "local")) == pytest.approx(0.8, rel=1e-12)
    assert on.study_threshold_local == pytest.approx(3600.0 * model.kappa, rel=1e-12)
    low, high = on.rows
    assert low.damage_fraction < 1e-3 < 0.2 < high.damage_fraction
    assert low.delta_loglike_a == pytest.approx(off.rows[0].delta_loglike_a, rel=1e-3)
    assert abs(high.delta_loglike_a / off.rows[1].delta_loglike_a - 1) > 0.01
    # B does not damage: its expectation is the same with and without the damage model
    assert high.delta_loglike_b == pytest.approx(off.rows[1].delta_loglike_b, rel=1e-9)


def test_integrating_detector_with_unit_gain_spread_halves_the_information():
    det = DetectorModel(kind="integrating", shape=GEOM.shape, gain_spread=1.0)
    ideal = plan_experiment((A, B), electrons_per_pattern=(1e4,), n_sim=0, **KW).rows[0]
    integ = plan_experiment((A, B), electrons_per_pattern=(1e4,), detector=det, n_sim=0, **KW).rows[0]
    assert integ.delta_loglike_a == pytest.approx(0.5 * ideal.delta_loglike_a, rel=1e-9)


def test_dead_pixels_remove_their_share_of_the_counts():
    det = DetectorModel(kind="counting", shape=GEOM.shape, dead_fraction=0.3, bit_depth=32)
    ideal = plan_experiment((A, B), electrons_per_pattern=(1e4,), n_sim=0, **KW).rows[0]
    dead = plan_experiment((A, B), electrons_per_pattern=(1e4,), detector=det, n_sim=0, **KW).rows[0]
    assert dead.counts / ideal.counts == pytest.approx(0.7, abs=0.05)


def _row(p, local, damage, n_e=1e3):
    nan = math.nan
    return PlanRow(
        semiangle=2.0, electrons_per_pattern=n_e, step=40.0, scan_fluence=n_e / 1600, local_fluence=local,
        damage_fraction=damage, counts=1.0, delta_loglike_a=1.0, delta_loglike_b=1.0, sd_a=1.0, sd_b=1.0,
        p_correct=p, sim_mean_a=nan, sim_sd_a=nan, sim_sem_a=nan, p_correct_sim=nan,
    )  # fmt: skip


def _result(rows):
    return PlanResult(
        hypotheses=("A", "B"), rows=tuple(rows), confidence=0.95, max_damage=0.1, damage_fluence=6000.0,
        study_threshold_local=86000.0, region_pixels=1, nuisance="none",
    )  # fmt: skip


def test_recommend_takes_the_lowest_local_fluence_that_reaches_the_confidence_within_the_damage_limit():
    rows = [_row(0.90, 10, 0.0), _row(0.96, 300, 0.01), _row(0.99, 100, 0.005, 2e3), _row(0.999, 50, 0.2)]
    rec = _result(rows).recommend()
    assert rec.reachable and rec.row is rows[2]  # row 4 is cheaper but damaged beyond the limit
    assert "mrad" in rec.message and "e/Å²" in rec.message
    rec = _result([_row(0.90, 10, 0.0), _row(0.93, 30, 0.05), _row(0.999, 50, 0.2)]).recommend()
    assert not rec.reachable and rec.row.p_correct == 0.93
    assert "not reachable" in rec.message and "best achievable" in rec.message
    assert not _result([_row(0.999, 50, 0.2)]).recommend().reachable


def test_table_and_figure(tmp_path):
    res = plan_experiment((A, B), electrons_per_pattern=(1e2, 1e3), n_sim=20, damage=DamageModel(), **KW)
    text = res.table()
    for unit in ("[mrad]", "[e/pat]", "[nm]", "[e/Å²]", "[%]"):
        assert unit in text
    assert len(text.splitlines()) == 2 + 2 + 1
    path = tmp_path / "plan.png"
    plot_plan(res, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"confidence": 1.2}, "confidence"),
        ({"region_pixels": 0}, "region_pixels"),
        ({"max_damage": 0.0}, "max_damage"),
        ({"electrons_per_pattern": (-1.0,)}, "electrons_per_pattern"),
        ({"region_pixels": 100}, "scan_shape"),
    ],
)
def test_bad_input_names_the_argument(kw, word):
    args = {"electrons_per_pattern": (1e3,), "n_sim": 0, **KW, **kw}
    with pytest.raises(ValueError, match=word):
        plan_experiment((A, B), **args)


def test_hypotheses_on_different_grids_are_refused():
    other = Hypothesis(name="C", q=Q[:-1], thicknesses=(100.0,), density=ring(0.3, 0.02)[:-1], thickness=100.0)
    with pytest.raises(ValueError, match="Q grids"):
        plan_experiment((A, other), electrons_per_pattern=(1e3,), n_sim=0, **KW)


def test_cli_plan_from_structure_files(tmp_path, capsys):
    from ase.io import write

    from structures.crystals import nanocrystal

    for phase in ("LiF", "Li2S"):
        write(tmp_path / f"{phase}.xyz", nanocrystal(phase, 15.0, orientation="random", rng=1))
    fig, table = tmp_path / "plan.png", tmp_path / "plan.csv"
    rc = main(["plan", str(tmp_path / "LiF.xyz"), str(tmp_path / "Li2S.xyz"), "--semiangles", "0.5",
               "--electrons", "1e2", "1e3", "--detector", "ideal", "--detector-px", "64", "--pixel-size", "0.01",
               "--q-range", "0.1", "0.4", "--scan", "6", "6", "--n-sim", "20", "--figure", str(fig),
               "--csv", str(table)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "LiF vs Li2S" in out and "[mrad]" in out and "e/Å²" in out
    assert fig.read_bytes()[:4] == b"\x89PNG"
    lines = table.read_text().splitlines()
    assert len(lines) == 3 and "local_fluence_e/A^2" in lines[0]
    rc = main(["plan", str(tmp_path / "LiF.xyz"), str(tmp_path / "Li2S.xyz"), "--figure", str(fig)])
    assert rc == 1 and "exists" in capsys.readouterr().err


def test_cli_plan_unknown_hypothesis(capsys):
    rc = main(["plan", "no_such_preset", "li2s"])
    err = capsys.readouterr().err
    assert rc == 1 and "no_such_preset" in err and "preset" in err and len(err.strip().splitlines()) == 1


def test_hypothesis_from_atoms_scales_with_thickness():
    from structures.crystals import nanocrystal

    nc = nanocrystal("LiF", 12.0, orientation="random", rng=0)
    h1 = hypothesis_from_atoms("x", nc, q=Q, thickness=50.0)
    h2 = hypothesis_from_atoms("x", nc, q=Q, thickness=100.0)
    assert h1.damage == "none"
    np.testing.assert_allclose(h2.density, 2 * h1.density, rtol=1e-12)


@pytest.mark.slow
def test_study_presets_sro_vs_li2s_and_lif_vacancies():
    from fitting.plan import preset_hypotheses
    from simkit.detector import medipix_merlin

    det = medipix_merlin()
    hs = preset_hypotheses(["sro_0.295", "li2s"], thickness=100.0)
    res = plan_experiment(hs, semiangles=(2.0, 0.15), electrons_per_pattern=(1e3, 1e4), detector=det,
                          damage=DamageModel(), n_sim=200)  # fmt: skip
    by = {(r.semiangle, r.electrons_per_pattern): r for r in res.rows}
    # the 0.1 Å⁻¹ probe disc at 2 mrad blurs the 3 nm Li₂S rings towards the SRO halo; 0.15 mrad keeps them apart
    assert by[(0.15, 1e3)].delta_loglike_a > 3 * by[(2.0, 1e3)].delta_loglike_a
    for r in res.rows:
        assert abs(r.sim_mean_a - r.delta_loglike_a) < 4 * r.sim_sem_a + 0.1 * r.delta_loglike_a
    hl = preset_hypotheses(["lif", "lif_fvac20"], thickness=50.0)
    res = plan_experiment(hl, semiangles=(0.15,), electrons_per_pattern=(1e4, 1e5), detector=det, n_sim=200)
    r1, r2 = res.rows
    assert r2.delta_loglike_a == pytest.approx(10 * r1.delta_loglike_a, rel=0.02)  # dead time is negligible here
    assert "thickness profiled" in res.nuisance
