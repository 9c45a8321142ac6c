"""Tests of fitting.refine with cheap analytic stand-ins for the builder and simulator.

Stand-ins: the 'builder' turns a density into an SRO peak position (Q₁ ∝ ρ^(1/3), the scaling of a
homogeneously compressed structure: d ∝ V^(1/3)) with a small seeded jitter (like a random structure); the
'simulator' renders that as a Gaussian peak on the data's Q grid. The measured data are drawn with a different
seed (independent noise), so the refinement is not fitting its own output. Oracles: recovery of the known
density, identical results after a simulated interruption + resume, cache (no recomputation), bad input.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fitting.model import Component
from fitting.refine import Parameter, likelihood_objective, peak_target_objective, refine

DQ = 0.005
Q = np.arange(1, 241) * DQ
EXPOSURE = 2 * np.pi * Q / DQ
RHO_TRUE = 1.9  # g/cm³
Q1_AT_1 = 0.33 / RHO_TRUE ** (1 / 3)  # Q₁(ρ) = Q1_AT_1·ρ^(1/3) → 0.33 Å⁻¹ at 1.9 g/cm³


def q1(rho):
    return Q1_AT_1 * rho ** (1 / 3)


def builder(params, rng):
    """'Structure' = its first-peak position, with a seeded 0.0003 Å⁻¹ jitter (random-structure noise)."""
    return {"q1": q1(params["density"]) + 3e-4 * rng.standard_normal(), "width": params.get("width", 0.04)}


def simulator(structure):
    w = structure["width"]
    it = np.exp(-0.5 * ((Q - structure["q1"]) / w) ** 2) + 0.5 * np.exp(
        -0.5 * ((Q - 1.8 * structure["q1"]) / 1.5 / w) ** 2
    )
    return Component(name="sim", q=Q, intensity=it)


def measured(seed=99):
    truth = simulator({"q1": q1(RHO_TRUE), "width": 0.04})
    mu = EXPOSURE * (20.0 * truth.intensity + 5.0)
    return (Q, np.random.default_rng(seed).poisson(mu).astype(float), EXPOSURE)


OBJ = likelihood_objective(measured(), q_range=(0.15, 1.0), q_scale=False, blur=False, background="poly2")
PARAMS = [Parameter(name="density", start=1.6, lower=1.2, upper=2.4, unit="g/cm³")]
_TARGET = simulator({"q1": q1(RHO_TRUE), "width": 0.04}).intensity


def cheap(profile):
    """A fast stand-in objective (sum of squares against the noise-free truth) for the mechanics tests."""
    return float(np.sum((profile.intensity - _TARGET) ** 2))


def test_refinement_recovers_density():
    r = refine(PARAMS, builder=builder, simulator=simulator, objective=OBJ, seed=3, progress=False, xtol=2e-3)
    assert r.converged
    # Q₁ is determined to ~1e-4 Å⁻¹ by these data → ρ to ~3·ρ·δQ/Q ≈ 0.003 g/cm³; jitter 3e-4 adds ≈ 0.005
    assert r.params["density"] == pytest.approx(RHO_TRUE, abs=0.03)
    assert r.n_computed == len(r.history_f) and r.fun == pytest.approx(np.min(r.history_f))


def test_resume_after_interruption_gives_the_same_result(tmp_path):
    full = refine(PARAMS, builder=builder, simulator=simulator, objective=cheap, seed=3, progress=False)
    calls = {"n": 0}

    def flaky(structure):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt("simulated interruption")
        return simulator(structure)

    ck = tmp_path / "refine.h5"
    with pytest.raises(KeyboardInterrupt):
        refine(PARAMS, builder=builder, simulator=flaky, objective=cheap, seed=3, checkpoint=ck, progress=False)
    with h5py.File(ck, "r") as f:
        assert f["x"].shape == (6, 1)
    assert not (tmp_path / "refine.h5.tmp").exists()
    resumed = refine(
        PARAMS, builder=builder, simulator=simulator, objective=cheap, seed=3, checkpoint=ck, progress=False
    )
    assert resumed.resumed
    assert resumed.x == pytest.approx(full.x, rel=0, abs=0)
    assert resumed.fun == full.fun
    assert resumed.n_computed == full.n_computed - 6
    # a third run with the completed checkpoint recomputes nothing
    again = refine(PARAMS, builder=builder, simulator=simulator, objective=cheap, seed=3, checkpoint=ck, progress=False)
    assert again.n_computed == 0 and again.fun == full.fun


def test_independent_streams_option():
    """common_random_numbers=False: each parameter value gets its own stream (hash of the values)."""
    seen = []

    def spy(structure):
        seen.append(structure["q1"] - q1(1.6))
        return simulator(structure)

    refine(PARAMS, builder=builder, simulator=spy, objective=cheap, max_evaluations=2, progress=False)
    crn = list(seen)
    seen.clear()
    refine(
        PARAMS,
        builder=builder,
        simulator=spy,
        objective=cheap,
        max_evaluations=2,
        progress=False,
        common_random_numbers=False,
    )
    assert seen[0] != crn[0]


def test_same_parameters_same_structure_and_seed_matters():
    seen = []

    def spy(structure):
        seen.append(structure["q1"])
        return simulator(structure)

    refine(PARAMS, builder=builder, simulator=spy, objective=cheap, seed=3, max_evaluations=3, progress=False)
    first = list(seen)
    seen.clear()
    refine(PARAMS, builder=builder, simulator=spy, objective=cheap, seed=3, max_evaluations=3, progress=False)
    assert seen == first
    seen.clear()
    refine(PARAMS, builder=builder, simulator=spy, objective=cheap, seed=4, max_evaluations=3, progress=False)
    assert seen != first


def test_two_parameters_with_powell():
    params = PARAMS + [Parameter(name="width", start=0.03, lower=0.02, upper=0.06, unit="Å⁻¹")]
    r = refine(params, builder=builder, simulator=simulator, objective=cheap, method="Powell", seed=1, progress=False)
    assert r.params["density"] == pytest.approx(RHO_TRUE, abs=0.05)
    assert r.params["width"] == pytest.approx(0.04, abs=0.002)


def test_peak_target_objective_finds_density_for_a_target_peak():
    """Find the density that puts the first I·Q peak at 0.295 Å⁻¹ (the study's outer SEI) — by the project's
    peak estimator on the profile. Expected ρ from the stand-in's scaling: 1.9·(0.295/0.33)³ — up to the small
    shift of the I·Q maximum relative to the I maximum: the oracle is the argmax of Q·I(Q) of the stand-in on a
    fine grid, solved for ρ by bisection (independent of the local-fit estimator)."""
    obj = peak_target_objective([(0.295, 0.06, 0.002)])
    r = refine(
        [Parameter(name="density", start=1.9, lower=1.0, upper=2.4)],
        builder=builder,
        simulator=simulator,
        objective=obj,
        seed=0,
        progress=False,
        xtol=1e-4,
        ftol=1e-4,
    )
    fine = np.linspace(0.2, 0.4, 20001)

    def iq_max(rho):
        qq = q1(rho)
        it = np.exp(-0.5 * ((fine - qq) / 0.04) ** 2) + 0.5 * np.exp(-0.5 * ((fine - 1.8 * qq) / 0.06) ** 2)
        return fine[np.argmax(fine * it)]

    a, b = 1.0, 2.4
    for _ in range(50):
        m = 0.5 * (a + b)
        a, b = (m, b) if iq_max(m) < 0.295 else (a, m)
    assert r.params["density"] == pytest.approx(0.5 * (a + b), abs=0.01)
    assert r.fun < 1.0


@pytest.mark.slow
def test_type1_density_for_the_study_peaks():
    """The real loop: structures.amorphous.type1_sei (1000 atoms, default composition, rigid-unit packing: its peak
    follows the density knob, which is what this test refines) → kinematic Debye
    I(Q) ⊗ 2 mrad probe → first I·Q maximum by simkit.peak_estimator; refine the density so the first peak lands at
    0.33 Å⁻¹ (SEI Type 1) and at 0.295 Å⁻¹ (the outer, less dense SEI). Measured on this machine (seeds 1, 2
    of a density scan): Q₁ = 0.24, 0.27, 0.30, 0.32, 0.345 Å⁻¹ at 1.4, 1.6, 1.8, 2.0, 2.2 g/cm³."""
    import structures.amorphous as amorphous
    from fitting.refine import kinematic_simulator

    q = np.linspace(0.0, 1.4, 561)
    sim = kinematic_simulator(q, semiangle=2.0, energy=300e3)

    def build(p, rng):
        return amorphous.type1_sei(n_atoms=1000, density=p["density"], rng=rng, source="packing")

    out = {}
    for target in (0.33, 0.295):
        r = refine(
            [Parameter(name="density", start=1.9, lower=1.3, upper=2.5, unit="g/cm³")],
            builder=build,
            simulator=sim,
            objective=peak_target_objective([(target, 0.08, 0.002)]),
            seed=1,
            xtol=2e-3,
            ftol=0.05,
            max_evaluations=30,
            progress=False,
        )
        assert r.fun < 1.0  # peak within 0.002 Å⁻¹ of the target
        out[target] = r.params["density"]
    assert 1.9 < out[0.33] < 2.25
    assert 1.6 < out[0.295] < 1.95
    assert out[0.33] - out[0.295] > 0.15


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        refine([], builder=builder, objective=OBJ)
    with pytest.raises(ValueError, match="outside"):
        Parameter(name="density", start=3.0, lower=1.0, upper=2.0)
    with pytest.raises(ValueError, match="method"):
        refine(PARAMS, builder=builder, objective=OBJ, method="BFGS")
    ck = tmp_path / "c.h5"
    refine(
        PARAMS, builder=builder, simulator=simulator, objective=OBJ, checkpoint=ck, max_evaluations=2, progress=False
    )
    other = [Parameter(name="thickness", start=100.0, lower=50.0, upper=200.0, unit="Å")]
    with pytest.raises(ValueError, match="checkpoint"):
        refine(other, builder=builder, simulator=simulator, objective=cheap, checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match="seed"):
        refine(PARAMS, builder=builder, simulator=simulator, objective=cheap, checkpoint=ck, seed=5, progress=False)
