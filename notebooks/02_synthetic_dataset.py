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
# # 02 — A synthetic SEND dataset with ground truth
#
# A small pattern library (cached under `.sei-send-cache/`), the study's bottom interface (Li | SEI Type 1 |
# SEI Type 2 with LiF | Cu) at 4 nm steps with a 2 mrad probe, written as an EMD 1.0 file with its ground truth
# inside (`simkit.emd.read_truth`), then read back with `fitting.io.load_scan` and mapped with the project's
# peak estimator.

# %%
import os
import tempfile
from pathlib import Path

# %matplotlib inline
import numpy as np

from fitting.demo import DEMO_SETTINGS, demo_specs
from fitting.io import load_scan
from fitting.peaks import sro_peak_map
from fitting.plots import peak_map
from simkit.library import PRESETS, build_library
from simkit.synth import default_scan, synthesize_scan

cache = os.environ.get("SEI_SEND_CACHE", str(Path.cwd().parent / ".sei-send-cache")) + "/library"
cfg = DEMO_SETTINGS[True]
scene, probe = default_scan("bottom", field_shape=(4, 20), li_side=cfg["li_side"])
library = build_library(
    demo_specs(cfg["preset"], cfg["one_zone"]), probe=probe, thickness=PRESETS["tiny"]["thickness"],
    cache_dir=cache, progress=False,
)  # fmt: skip
print(f"library: {len(library.entries)} entries, {library.built} simulated now")
path = Path(tempfile.mkdtemp()) / "bottom.h5"
res = synthesize_scan(scene, path, library=library, electrons_per_pattern=1e5, seed=1, progress=False)
print(f"{path.name}: {res.electrons_per_pattern:.0f} e per pattern = scan fluence {res.scan_fluence:.1f} e/Å² "
      "(electrons per pattern / step²; the local fluence under a 2 mrad probe is ≈ 24× that, simkit.dose)")  # fmt: skip

# %%
scan = load_scan(path)
print(scan.scan_shape, f"step {scan.step:.0f} Å, pixel {scan.pixel_size:.4f} Å⁻¹/px, {scan.semiangle} mrad")
names = res.truth["region_names"]
print("truth regions along x:", [names[i] for i in res.truth["region"][0]])

# %%
from fitting.calibrate import calibrate

cal = calibrate(scan)
pm = sro_peak_map(scan, plan=cal.plan, shifts=cal.shifts, exclude_direct=0.15)
t1 = res.truth["region"] == names.index("type1")
rec = np.nanmean(np.where(pm.ok, pm.position, np.nan)[t1])
truth = np.nanmean(res.truth["sro_peak"][t1])
print(f"Type 1: recovered {rec:.3f} Å⁻¹ vs truth {truth:.3f} Å⁻¹ (mean over the truth's Type 1 pixels)")
assert abs(rec - truth) < 0.01  # at 10⁵ e per pattern a pixel's peak is good to ≈ 0.004 Å⁻¹
peak_map(np.where(pm.ok, pm.position, np.nan), step=scan.step, title="SRO window maximum, every pixel")

# %% [markdown]
# The map above fits the SRO window in every pixel, so the Li-metal pixels show their Li 110 Bragg disc
# (≈ 0.40 Å⁻¹, clipped yellow) as a "peak". The whole measured-data path (`analyze_scan`) classifies the pixels
# first and keeps the SRO peak of the amorphous classes only, as in the study's Figure 2:

# %%
from fitting.pipeline import analysis_figure2, analyze_scan

ana = analyze_scan(path, Path(tempfile.mkdtemp()))
print({k: v for k, v in ana.summary["class_counts"].items() if v}, "pixels per class")
analysis_figure2(ana)

# %% [markdown]
# **Result.** The peak map recovers the Type 1 SRO peak of the ground truth to within the printed difference at
# a scan fluence of 62.5 e/Å² (10⁵ e per pattern); the crystalline Li and Cu pixels have no SRO peak (grey).
