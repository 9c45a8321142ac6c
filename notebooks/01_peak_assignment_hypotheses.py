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
# # 01 — Peak-assignment hypotheses
#
# Which structures explain a measured SEI radial profile? We simulate kinematic profiles (Debye I(Q) with
# electron scattering factors, convolved with a 2 mrad probe through `simkit.radial`) for an amorphous Type 1
# model and a small LiF crystal, draw Poisson "measured" counts from a Type 2-like mixture, and let
# `fitting.hypotheses.compare` rank the candidates by AIC with likelihood-ratio tests. Q = 1/d [Å⁻¹].

# %%
import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure

from fitting.hypotheses import compare
from simkit.geometry import DetectorGeometry
from simkit.kinematic import debye_intensity, probe_convolve
from structures import amorphous, crystals

geometry = DetectorGeometry(shape=(192, 192), pixel_size=0.005)  # [Å⁻¹/px]
q = np.linspace(0.02, 0.75, 300)  # [Å⁻¹]
kw = {"semiangle": 2.0, "energy": 300e3, "geometry": geometry}  # [mrad], [eV]

type1 = amorphous.type1_sei(n_atoms=300, relax=False, rng=1)
lif = crystals.nanocrystal("LiF", 20.0, orientation="random", f_vacancy=0.2, rng=2)
p_t1 = probe_convolve(q, debye_intensity(type1, q, periodic=True), **kw)
p_lif = probe_convolve(q, debye_intensity(lif, q), **kw)
print(f"Type 1 model: {len(type1)} atoms; LiF crystal: {len(lif)} atoms; {p_t1.q.size} bins of 0.005 Å⁻¹")

# %% [markdown]
# "Measured" profile: Type 1 SRO plus a LiF contribution and a power-law background, Poisson counts.

# %%
rng = np.random.default_rng(0)
qd = p_t1.q
sel = (qd > 0.18) & (qd < 0.62)
expo = p_t1.count[sel].astype(float)  # detector pixels per bin
shape_t1 = p_t1.mean[sel] / np.nanmax(p_t1.mean[sel])
shape_lif = p_lif.mean[sel] / np.nanmax(p_lif.mean[sel])
mu = expo * (200 * shape_t1 + 60 * shape_lif + 20 * (qd[sel] / 0.3) ** -2)
counts = rng.poisson(mu).astype(float)

candidates = {
    "Type 1": {"type1": (qd[sel], p_t1.mean[sel])},
    "Type 1 + LiF": {"type1": (qd[sel], p_t1.mean[sel]), "lif": (qd[sel], p_lif.mean[sel])},
}
comp = compare((qd[sel], counts, expo), candidates, q_range=(0.2, 0.6))
for r in comp.rows:
    print(f"{r.name:<14} ΔAIC = {r.delta_aic:8.1f}   Akaike weight = {r.akaike_weight:.3f}")
for t in comp.tests:
    print(f"LRT {t.null} ⊂ {t.alternative}: D = {t.statistic:.1f}, p = {t.p_value:.2g}")
assert comp.best == "Type 1 + LiF"

# %%
fig = Figure(figsize=(6, 3.5))
ax = fig.add_subplot()
ax.plot(qd[sel], counts / expo * qd[sel], ".", ms=3, label="measured (I·Q)")
ax.plot(qd[sel], comp.fits["Type 1 + LiF"].expected / expo * qd[sel], label="Type 1 + LiF fit")
ax.set_xlabel("Q = 1/d [Å⁻¹]")
ax.set_ylabel("I·Q [counts/px · Å⁻¹]")
ax.legend()
fig  # noqa: B018  (display the figure)
