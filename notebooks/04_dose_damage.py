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
# # 04 — Dose and beam damage
#
# Scan fluence (electrons per pattern / step²) versus the local fluence the probe profile actually deposits,
# and the damage kinetics of SEI Type 1: the amorphous SRO fades and crystalline Li₂O (111 at 0.376, 220 at
# 0.613 Å⁻¹) grows beyond ≈ 3600 e/Å² (the study's diffraction threshold). Doses in e/Å².

# %%
import matplotlib

matplotlib.use("Agg")
import numpy as np

from simkit.damage import DamageModel, dose_series, phase_fractions, plot_dose_series
from simkit.dose import electrons_per_pattern, local_to_scan_ratio, scan_fluence

e = electrons_per_pattern(1.6, 1e-3)  # 1.6 pA × 1 ms
f = scan_fluence(1.6, 1e-3, 40.0)  # 4 nm step [Å]
print(f"{e:.0f} e per pattern → scan fluence {f:.2f} e/Å²")
for alpha in (2.0, 0.15):
    print(f"{alpha} mrad probe at 4 nm steps: local/scan fluence = {local_to_scan_ratio(alpha, 300e3, 40.0):.2f}")

# %%
model = DamageModel()
doses = np.array([0, 400, 1000, 2000, 3600, 6000, 10000])  # [e/Å²]
fr = phase_fractions(doses, model)
for d, i in zip(doses, range(doses.size)):
    print(f"{d:>6} e/Å²: " + ", ".join(f"{k} {v[i]:.2f}" for k, v in fr.items()))

# %%
q = np.linspace(0.05, 1.0, 380)  # [Å⁻¹]
q1 = 0.33  # Type 1 first SRO peak [Å⁻¹], with a second at 0.6
iq = np.exp(-0.5 * ((q - q1) / 0.04) ** 2) + 0.5 * np.exp(-0.5 * ((q - 0.6) / 0.06) ** 2) + 0.2 * q**-1
series = dose_series([0, 1000, 3600, 6000], type1=(q, iq), q=q, rng=0)
plot_dose_series(series)
