"""Benchmark: ``fitting.pipeline.analyze_scan`` streamed from chunked files, at three scan sizes, each in a fresh
process — peak RSS, time per pattern, linearity, and the parallel decompression against h5py.

Target (issue 21, target 4): on a 512 × 512 × 256² file, peak RSS < 3 GB measured in a fresh subprocess,
≤ 0.25 ms per pattern (wall, 2 cores), linear from 90 × 60 to 512 × 512, decompression in parallel. With
``512x512`` among ``--sizes`` (a ≈ 6 GB file) the RSS and ms/pattern targets are judged on that measurement;
otherwise on straight lines in the number of patterns through the measured sizes, and only if 512 × 512 lies at
most 4× beyond the largest of them (else the bench refuses to judge, status 1). "Linear": the wall time per
pattern at the largest size within 1.3× of the smallest size's. Also printed: reads of every pattern
(``ScanSource.patterns_read`` / patterns; 1 + the descan rows, the ellipse strip and the selected pixels when
the early ellipse held), the ellipse check, and the study-size (90 × 60) wall time against the 5 s target of
issue 8.

How it measures (issue 21, target 6):

* every size runs in its own fresh process (``python -m tests.streaming_helpers``): imports and numba caches are
  warmed on a 16 × 6 file, the peak RSS is reset (``/proc/self/clear_refs``), the analysis streams the file
  (``memory_budget=0``) and the process reports VmHWM — the peak resident size of the whole process during the
  analysis (baseline included), which can exceed the target, unlike a peak that only rises within one process;
* the decompression anchor is h5py reading the same rows in the same process, interleaved with
  :mod:`fitting.chunks` at 1 and 2 numba threads, best of 3 each;
* the radial-profile anchor, pyFAI ``integrate1d`` (csr, cython, one pattern a call), runs in its own process with
  ``OMP_WAIT_POLICY=PASSIVE`` and one OpenMP thread, against :func:`fitting.profiles.scan_profiles` at one numba
  thread (per-core ratio); without pyFAI the bench says so and exits with status 2.

The files (``tests/streaming_helpers.py``) hold Poisson samples of per-row expected patterns of a layered
Li | SEI Type 1 | Type 2 | Cu stack (descan, 1 % ellipse, 10⁵ e/pattern, lzf + shuffle, chunked by pattern),
written once into ``--dir`` (default ``.sei-send-cache/bench``; 256 × 256 takes 1.7 GB of disk, 512 × 512 6 GB
and ≈ 12 min to write on one core).
Timings on a shared 2-core machine are noisy: the load average is printed with every number.

Run: .venv/bin/python bench/analysis.py [--dir DIR] [--sizes 90x60,256x256,512x512] [--independent]
(default sizes 90x60,128x128,256x256; ``--independent``: every pattern an independent Poisson realisation instead
of 8 per scan row — with 8, a narrow SEI band holds few independent patterns; ≈ 4 MB/s of file to write, so a
512×512 file takes ≈ 30 min)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RSS = 3e9  # bytes, at 512 × 512
TARGET_MS = 0.25  # ms per pattern, at 512 × 512
TARGET_STUDY_S = 5.0  # s, 90 × 60 end to end (issue 8)
LINEAR_TOL = 1.3  # per-pattern time at the largest size within this factor of the smallest: "linear"
FULL = 512 * 512
MAX_EXTRAPOLATION = 4.0  # at most this factor in patterns beyond the largest measured size


def _arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def _env(threads: int | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE")
    if threads is not None:
        env.update(NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    return env


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def run_size(path: Path, warm: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "tests.streaming_helpers", str(path), str(out), "0", str(warm)]
    subprocess.run(cmd, check=True, cwd=ROOT, env=_env())
    r = np.load(out)
    s = json.loads(str(r["summary"]))
    n = int(np.prod(s["scan_shape"]))
    return {
        "n": n, "wall": float(r["wall"]), "cpu": float(r["cpu"]), "rss": int(r["peak_rss"]),
        "base": int(r["base_rss"]), "reset": bool(r["hwm_reset"]), "classes": s["class_counts"],
        "ellipse": s["ellipse_ratio"], "check": s.get("ellipse_check"),
        "reads": float(r["patterns_read"]) / n if "patterns_read" in r else float("nan"),
    }  # fmt: skip


_DECODE = r"""
import sys, time, h5py, numba, numpy as np
from fitting.chunks import reader
f = h5py.File(sys.argv[1], "r"); ds = f["root/datacube/data"]; rows = int(sys.argv[2])
r = reader(ds); assert r.fast
r.read(0, 1)
best = {"h5py": 1e9, "chunks 1 thread": 1e9, "chunks 2 threads": 1e9}
for _ in range(3):  # interleaved rounds
    for k in best:
        if k != "h5py":
            numba.set_num_threads(1 if "1" in k else 2)
        t0 = time.perf_counter()
        a = ds[0:rows] if k == "h5py" else r.read(0, rows)
        best[k] = min(best[k], time.perf_counter() - t0)
assert np.array_equal(a, ds[0:rows])
n = rows * ds.shape[1]
print(" ".join(f"{k.replace(' ', '_')}={v / n * 1e3:.4f}" for k, v in best.items()))
"""

_PYFAI = r"""
import sys, time, warnings, h5py, numpy as np
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from simkit.radial import center_to_pyfai, make_plan
f = h5py.File(sys.argv[1], "r"); frames = f["root/datacube/data"][0:5].reshape(-1, 256, 256)
n_q, ps, c = 120, 0.0065, (128.3, 127.8)
px = 55e-6
p1, p2 = center_to_pyfai(c, px, px)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ai = AzimuthalIntegrator(dist=0.3, poni1=p1, poni2=p2, detector=Detector(px, px, max_shape=(256, 256)))
    kw = dict(unit="r_mm", radial_range=(0.0, n_q * px * 1e3), correctSolidAngle=False, method=("no", "csr", "cython"))
    ai.integrate1d(frames[0], n_q, **kw)
    plan = make_plan((256, 256), center=c, pixel_size=ps, n_bins=n_q, q_max=n_q * ps)
    plan.integrate(frames[:2])
    best_a = best_o = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        for fr in frames:
            ai.integrate1d(fr, n_q, **kw)
        best_a = min(best_a, time.perf_counter() - t0)
        t0 = time.perf_counter()
        plan.integrate(frames)
        best_o = min(best_o, time.perf_counter() - t0)
print(f"pyfai={frames.shape[0] / best_a:.0f} ours={frames.shape[0] / best_o:.0f}")
"""


def main() -> int:
    from tests.streaming_helpers import cached_scan_file

    default_dir = (
        Path("/work/scratch/stream") if Path("/work/scratch/stream").is_dir() else ROOT / ".sei-send-cache/bench"
    )
    folder = Path(_arg("--dir", str(default_dir)))
    sizes = [tuple(int(v) for v in s.split("x")) for s in _arg("--sizes", "90x60,128x128,256x256").split(",")]
    print(f"cores {os.cpu_count()}, files in {folder}; {load()}")
    t0 = time.perf_counter()
    warm = cached_scan_file(folder, (16, 6))
    # --independent: every pattern its own Poisson realisation (the default files draw each row's columns from 8)
    independent = "--independent" in sys.argv
    paths = [cached_scan_file(folder, s, **({"pool": None} if independent else {})) for s in sizes]
    print(f"  files ready in {time.perf_counter() - t0:.0f} s: " + ", ".join(
        f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in paths))  # fmt: skip

    # decompression: fitting.chunks vs h5py, same rows, same process, interleaved
    dec = subprocess.run([sys.executable, "-c", _DECODE, str(paths[0]), "20"], cwd=ROOT, env=_env(2),
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    d = {k: float(v) for k, v in (x.split("=") for x in dec)}
    print(f"\ndecompression of lzf + shuffle 256² uint16 chunks (best of 3, interleaved; {load()})")
    for k, v in d.items():
        print(f"  {k.replace('_', ' '):<18s} {v:.3f} ms/pattern  ({d['h5py'] / v:.1f}× h5py)")
    parallel = d["chunks_2_threads"] < d["chunks_1_thread"]
    print(f"  decompression in parallel (2 threads faster than 1): {'MET' if parallel else 'NOT MET (machine busy?)'}")

    # radial-profile anchor: pyFAI in its own process, one thread each
    pf = subprocess.run([sys.executable, "-c", _PYFAI, str(paths[0])], cwd=ROOT, env=_env(1), capture_output=True,
                        text=True)  # fmt: skip
    if pf.returncode != 0:
        print(f"\npyFAI anchor missing or failed ({pf.stderr.strip().splitlines()[-1:]}): no ratio printed")
        anchor_ok = False
    else:
        a = dict(x.split("=") for x in pf.stdout.split())
        print(f"\nradial profiles, 1 thread each, anchor in its own process (OMP_WAIT_POLICY=PASSIVE; {load()}):")
        print(f"  simkit.radial integrate {float(a['ours']):.0f} patterns/s vs pyFAI integrate1d csr "
              f"{float(a['pyfai']):.0f}/s → {float(a['ours']) / float(a['pyfai']):.1f}× per core")  # fmt: skip
        anchor_ok = True

    # analyze_scan streamed, one fresh process per size
    print(f"\nanalyze_scan streamed (memory_budget=0), one fresh process per size ({os.cpu_count()} cores)")
    print(f"  {'scan':>9s} {'patterns':>8s} {'wall [s]':>9s} {'ms/pattern':>10s} {'CPU ms/pat':>10s} "
          f"{'peak RSS':>9s} {'baseline':>9s} {'reads':>6s}  load")  # fmt: skip
    res = []
    for s, p in zip(sizes, paths):
        r = run_size(p, warm, folder / f"bench_{s[0]}x{s[1]}.npz")
        res.append(r)
        print(f"  {s[0]:>4d}×{s[1]:<4d} {r['n']:8d} {r['wall']:9.1f} {r['wall'] / r['n'] * 1e3:10.3f} "
              f"{r['cpu'] / r['n'] * 1e3:10.3f} {r['rss'] / 1e9:7.2f} GB {r['base'] / 1e9:7.2f} GB {r['reads']:6.2f}  "
              f"{load()}{'' if r['reset'] else ' (VmHWM not reset: includes warm-up)'}")  # fmt: skip
        print(f"            ellipse {r['ellipse']}: {r['check']}")
    n = np.array([r["n"] for r in res], float)
    rss = np.array([r["rss"] for r in res], float)
    wall = np.array([r["wall"] for r in res], float)
    per = wall / n
    linear = per[-1] <= LINEAR_TOL * per[0] and per[-1] <= LINEAR_TOL * per.min()
    if FULL in n:  # measured on a 512 × 512 file: the targets are judged on the measurement itself
        k = list(n).index(FULL)
        rss_full, ms_full, how = rss[k], per[k] * 1e3, "measured on the 512×512 file"
        if len(n) > 1:
            (b_rss, a_rss), (b_t, a_t) = np.polyfit(n, rss, 1), np.polyfit(n, wall, 1)
            print(f"\nstraight lines in the number of patterns (for the record): peak RSS = {a_rss / 1e9:.2f} GB + "
                  f"{b_rss / 1e3:.1f} kB/pattern, wall = {a_t:.1f} s + {b_t * 1e3:.3f} ms/pattern")  # fmt: skip
        else:
            print()
    else:
        ext = FULL / n.max()
        if ext > MAX_EXTRAPOLATION or len(n) < 2:
            print(f"\n512×512 is {ext:.0f}× beyond the largest measured size (at most {MAX_EXTRAPOLATION:.0f}× "
                  f"allowed, and two sizes): the targets are NOT judged — add 512x512 to --sizes")  # fmt: skip
            return 1
        (b_rss, a_rss), (b_t, a_t) = np.polyfit(n, rss, 1), np.polyfit(n, wall, 1)
        rss_full, ms_full = a_rss + b_rss * FULL, (a_t + b_t * FULL) / FULL * 1e3
        how = f"straight line, extrapolated {ext:.1f}× beyond the largest measured"
        print(f"\nstraight lines in the number of patterns: peak RSS = {a_rss / 1e9:.2f} GB + {b_rss / 1e3:.1f} "
              f"kB/pattern, wall = {a_t:.1f} s + {b_t * 1e3:.3f} ms/pattern")  # fmt: skip
    print(f"  peak RSS at 512×512 {rss_full / 1e9:.2f} GB ({how}); target < {TARGET_RSS / 1e9:.0f} GB: "
          f"{'MET' if rss_full < TARGET_RSS else 'NOT MET'}")  # fmt: skip
    print(f"  wall at 512×512 {ms_full:.3f} ms/pattern ({how}, {load()}); target ≤ {TARGET_MS} ms/pattern: "
          f"{'MET' if ms_full <= TARGET_MS else 'NOT MET'}")  # fmt: skip
    print(f"  linear: ms/pattern {', '.join(f'{v * 1e3:.3f}' for v in per)} at "
          f"{', '.join(f'{s[0]}×{s[1]}' for s in sizes)} (largest within {LINEAR_TOL}× of the smallest): "
          f"{'MET' if linear else 'NOT MET'}")  # fmt: skip
    if (90 * 60) in n:
        w = wall[list(n).index(90 * 60)]
        print(f"  90×60 end to end {w:.1f} s streamed; target < {TARGET_STUDY_S:.0f} s: "
              f"{'MET' if w < TARGET_STUDY_S else 'NOT MET'}")  # fmt: skip
    print(f"  classes at the largest size: {dict((k, v) for k, v in res[-1]['classes'].items() if v)}, ellipse "
          f"ratio {res[-1]['ellipse']}")  # fmt: skip
    return 0 if anchor_ok else 2


if __name__ == "__main__":
    sys.exit(main())
