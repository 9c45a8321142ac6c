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
# # 01 — Peak-assignment hypotheses, from a scan file
#
# Which structures explain the measured SEI profiles? We start from a 4D scan file (here a small synthetic
# `bottom` scan: Li | SEI Type 1 | SEI Type 2 with LiF | Cu, 4 nm steps, 2 mrad probe), run the measured-data
# path (`fitting.pipeline.analyze_scan`: calibration, profiles, SRO peak map, classes), sum the patterns of each
# amorphous class and let `fitting.hypotheses.compare` rank candidate structures from the pattern library by
# AIC, with likelihood-ratio tests. The data are Poisson counts of the scan, not the candidates' own shapes.
# Q = 1/d [Å⁻¹].

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

from fitting.demo import DEMO_SETTINGS, demo_specs
from fitting.pipeline import analyze_scan, hypothesis_test
from fitting.plots import fit_figure
from simkit.library import PRESETS, build_library
from simkit.synth import default_scan, synthesize_scan

cache = os.environ.get("SEI_SEND_CACHE", str(Path.cwd().parent / ".sei-send-cache")) + "/library"
cfg = DEMO_SETTINGS[True]
scene, probe = default_scan("bottom", field_shape=(6, 20), li_side=cfg["li_side"])
library = build_library(
    demo_specs(cfg["preset"], cfg["one_zone"]), probe=probe, thickness=PRESETS["tiny"]["thickness"],
    cache_dir=cache, progress=False,
)  # fmt: skip
path = Path(tempfile.mkdtemp()) / "bottom.h5"
syn = synthesize_scan(scene, path, library=library, electrons_per_pattern=1e6, seed=0, progress=False)
print(f"scan {path.name}: {syn.electrons_per_pattern:.0f} e per pattern = scan fluence {syn.scan_fluence:.0f} e/Å² "
      f"(electrons per pattern / step²; the damage threshold of the study, ≈ 3600 e/Å², is far away)")  # fmt: skip

# %%
res = analyze_scan(path)
counts = {k: v for k, v in res.summary["class_counts"].items() if v}
print("classes [pixels]:", counts)
tests = hypothesis_test(res, library)
for cls, comp in tests.items():
    print(f"\nclass {cls}:")
    for r in comp.rows[:4]:
        state = "converged" if r.converged else "NOT converged"
        print(f"  {r.name:<26} ΔAIC = {r.delta_aic:8.1f}  Akaike weight = {r.akaike_weight:.3f}  "
              f"deviance/dof = {r.deviance / max(r.dof, 1):.2f}  {state}")  # fmt: skip

# %% [markdown]
# Data (points) with the model of each of the three best candidates, their components and the normalised
# residuals; the table lists every fitted parameter with its 1σ uncertainty.

# %%
t2 = tests["sei_type2"]
fit_figure(t2, top=3, title="class sei_type2 (summed counts)")

# %% [markdown]
# Physical consistency: the best candidate must have converged, and the Type 2 class (whose patterns carry LiF
# spots) should be explained better with LiF than without it. The scan was synthesised from the same library,
# and every amorphous candidate is its structure's whole family of library dilations (its density distribution
# over the class is fitted), so a candidate holding everything a class sum adds up — the class's own structure,
# LiF, and at the class edges the neighbouring Li or Cu grain's discs (one component per zone axis) — comes
# close to noise (deviance/dof ≈ 2 for "Type 2 matrix + LiF + Cu metal" in the demo); one that misses a piece
# does not (≈ 21 without Cu), and the residuals above show where. The ranking answers the question asked — which
# components are needed — and the verdict below says in words whether the best candidate also fits.

# %%
for cls, comp in tests.items():
    best = comp.rows[0]
    assert best.converged, (cls, best.name)
    dev = best.deviance / max(best.dof, 1)
    verdict = "describes the data within noise" if dev < 1.5 else "is the best of the set but misses structure"
    print(f"{cls}: best '{best.name}' (Akaike weight {best.akaike_weight:.2f}, deviance/dof {dev:.2f}): it {verdict}.")
with_lif = [r for r in t2.rows if "LiF" in r.name]
without = [r for r in t2.rows if "LiF" not in r.name]
assert with_lif and without and with_lif[0].aic < without[0].aic
print(f"Type 2: with LiF ΔAIC {with_lif[0].delta_aic:.1f} vs without {without[0].delta_aic:.1f} → LiF is needed.")
