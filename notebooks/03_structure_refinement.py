# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 — Structure refinement
#
# Refine the density of the amorphous Type 1 model so that its probe-convolved first SRO peak sits at the
# study's 0.33 Å⁻¹: parameters → `structures.amorphous.type1_sei` → kinematic profile (Debye I(Q), 2 mrad
# probe, `simkit.radial`) → distance of the peak (project estimator) from the target, minimised by
# `fitting.refine.refine` with seeded common random numbers and an HDF5 checkpoint.
#
# The builder here is the rigid-unit packing fast path (`source="packing"`), whose density is an input: the
# refinement answers "at which packing density does this composition put its peak at 0.33 Å⁻¹". The shipped
# melt-quenched models (`source="relaxed"`, the default) have their density as an output instead; rescaled,
# they need ≈ 3 g/cm³ to reach 0.33 Å⁻¹ (README, "Relaxed structure models") — outside these bounds.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import numpy as np

from fitting.refine import Parameter, kinematic_simulator, peak_target_objective, refine
from structures import amorphous

q = np.linspace(0.05, 0.8, 240)  # [Å⁻¹]
simulator = kinematic_simulator(q, semiangle=2.0, energy=300e3)  # [mrad], [eV]
objective = peak_target_objective([(0.33, 0.08, 0.005)])  # target [Å⁻¹], half window [Å⁻¹], tolerance [Å⁻¹]


def builder(params, rng):
    return amorphous.type1_sei(n_atoms=200, density=params["density"], relax=False, source="packing", rng=rng)


ckpt = Path(tempfile.mkdtemp()) / "refine.h5"
res = refine(
    [Parameter(name="density", start=1.5, lower=1.0, upper=2.4, unit="g/cm³")],
    builder=builder, simulator=simulator, objective=objective, seed=0, checkpoint=ckpt, max_evaluations=16,
    xtol=0.01, ftol=1.0, progress=False,
)  # fmt: skip
rho = res.params["density"]
at_bound = min(rho - 1.0, 2.4 - rho) < 1e-3
print(f"density {rho:.3f} g/cm³, objective {res.fun:.3g} (χ² of the peak offset in units of its 0.005 Å⁻¹ "
      f"tolerance), {res.n_computed} structures built")  # fmt: skip
print(f"optimiser: {'converged' if res.converged else 'NOT converged'} ({res.message}); "
      f"{'at a density bound: widen it' if at_bound else 'inside the bounds 1.0–2.4 g/cm³'}")  # fmt: skip
assert res.converged and not at_bound

# %% [markdown]
# Every evaluated density with its objective: the minimum sits well inside the bounds (dashed).

# %%
from fitting.plots import profile_likelihood_figure

profile_likelihood_figure(res.history_x[:, 0], res.history_f, name="Type 1 density", unit="g/cm³", best=rho,
                          bounds=(1.0, 2.4), ylabel="objective − min [χ² of the peak offset]")  # fmt: skip

# %% [markdown]
# Tolerances: 0.01 g/cm³ in density and 1 in the objective (one tolerance² of peak offset): every density builds
# a new random 200-atom structure (seeded, common random numbers), whose noise moves the peak by ≈ 0.003 Å⁻¹ —
# asking for more makes the optimiser chase the noise and stop on its evaluation budget instead.

# %% [markdown]
# Resuming from the checkpoint replays the recorded evaluations without recomputing them.

# %%
again = refine(
    [Parameter(name="density", start=1.5, lower=1.0, upper=2.4, unit="g/cm³")],
    builder=builder, simulator=simulator, objective=objective, seed=0, checkpoint=ckpt, max_evaluations=16,
    xtol=0.01, ftol=1.0, progress=False,
)  # fmt: skip
print(f"resumed: {again.resumed}, new structures built: {again.n_computed}, same result: {bool(again.x == res.x)}")
assert again.n_computed == 0

# %% [markdown]
# **Result.** The unrelaxed 200-atom Type 1 model puts its probe-convolved first SRO peak at 0.33 Å⁻¹ only at
# the density printed above — lower than the 2.1 g/cm³ default (which peaks higher in Q without the potential
# relaxation). Whether that density is physical is a separate question: a converged fit inside its bounds
# says the peak *can* be matched, not that the model is right; the relaxed model of the README and a
# likelihood fit of the whole profile (`sei-send refine`) are the better tests. The convergence line above
# states whether the optimiser stopped on its tolerance or on the evaluation budget.
