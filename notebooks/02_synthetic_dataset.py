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

import matplotlib

matplotlib.use("Agg")
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
print(f"{path.name}: {res.electrons_per_pattern:.0f} e per pattern, scan fluence {res.scan_fluence:.1f} e/Å²")

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
print(f"Type 1: recovered {rec:.3f} Å⁻¹ vs truth {np.nanmean(res.truth['sro_peak'][t1]):.3f} Å⁻¹")
peak_map(np.where(pm.ok, pm.position, np.nan), step=scan.step)
