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

# %%
import tempfile
from pathlib import Path

import numpy as np

from fitting.refine import Parameter, kinematic_simulator, peak_target_objective, refine
from structures import amorphous

q = np.linspace(0.05, 0.8, 240)  # [Å⁻¹]
simulator = kinematic_simulator(q, semiangle=2.0, energy=300e3)  # [mrad], [eV]
objective = peak_target_objective([(0.33, 0.08, 0.005)])  # target [Å⁻¹], half window [Å⁻¹], tolerance [Å⁻¹]


def builder(params, rng):
    return amorphous.type1_sei(n_atoms=200, density=params["density"], relax=False, rng=rng)


ckpt = Path(tempfile.mkdtemp()) / "refine.h5"
res = refine(
    [Parameter(name="density", start=2.1, lower=1.6, upper=2.6, unit="g/cm³")],
    builder=builder, simulator=simulator, objective=objective, seed=0, checkpoint=ckpt, max_evaluations=8,
    progress=False,
)  # fmt: skip
print(f"density {res.params['density']:.3f} g/cm³, objective {res.fun:.3g}, {res.n_computed} structures built")

# %% [markdown]
# Resuming from the checkpoint replays the recorded evaluations without recomputing them.

# %%
again = refine(
    [Parameter(name="density", start=2.1, lower=1.6, upper=2.6, unit="g/cm³")],
    builder=builder, simulator=simulator, objective=objective, seed=0, checkpoint=ckpt, max_evaluations=8,
    progress=False,
)  # fmt: skip
print(f"resumed: {again.resumed}, new structures built: {again.n_computed}, same result: {again.x == res.x}")
assert again.n_computed == 0
