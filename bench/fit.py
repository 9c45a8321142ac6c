"""Benchmark: batched Poisson fit of a 90×60 scan (fitting.model.fit_scan) vs a per-pixel scipy loop.

Target: the whole scan in < 10 s (wall, 2 threads). The anchor is what a user would write otherwise: one
``fitting.model.fit_profile`` (linear starts + bounded Newton steps) per pixel, timed on a subset and extrapolated.
Each measurement runs in its own fresh process (bench/_honest.py) — the batched fit at 1 and at 2 threads, the
anchor at 1 thread (scipy per pixel does not use a second one) — with its own peak RSS; ratios are printed per core
(1 thread each) and at 2 threads. Absolute times on a shared 2-core machine drift.
Model: SEI-Type-1-like SRO + LiF + power-law background, per-pixel scales, Q scale
and background (5 parameters per pixel), 211 bins in 0.15–1.2 Å⁻¹.

Run: ``.venv/bin/python bench/fit.py [--subset 150] [--ny 90 --nx 60]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _honest import emit, run_child, verdict

from fitting.model import fit_profile, fit_scan
from structures.crystals import reflection_q

DQ = 0.005
Q = np.arange(1, 261) * DQ
EXPOSURE = 2 * np.pi * Q / DQ


def gauss(q, q0, w):
    return np.exp(-0.5 * ((q - q0) / w) ** 2)


def sro(q):
    return gauss(q, 0.33, 0.04) + 0.5 * gauss(q, 0.6, 0.06)


def lif(q):
    q111, q200, q220 = (reflection_q("LiF", hkl, "room") for hkl in ((1, 1, 1), (2, 0, 0), (2, 2, 0)))
    return 0.6 * gauss(q, q111, 0.012) + gauss(q, q200, 0.012) + 0.7 * gauss(q, q220, 0.014)


def scan(ny, nx, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, nx)[None, :] * np.ones((ny, 1))
    a = 0.05 * t  # Type-1-like SRO grows across the scan
    lf = 0.02 * (1 - t) * (rng.random((ny, nx)) < 0.5)  # LiF nanocrystals in half the pixels of one side
    al = 1.0 + 0.01 * np.sin(np.linspace(0, 3, ny))[:, None] * np.ones((1, nx))
    x = al[..., None] * Q
    mu = EXPOSURE * (a[..., None] * sro(x) + lf[..., None] * lif(x) + 0.02 * (Q / 0.5) ** -2.5)
    return rng.poisson(mu).astype(float)


TARGET_S = 10.0


def _setup(args):
    comps = {"type1": sro(Q), "LiF": lif(Q)}
    return comps, scan(args.ny, args.nx), {"q_range": (0.15, 1.2)}


def child_batch(args) -> None:
    comps, y, kw = _setup(args)
    fit_scan(Q, y[:2, :40], EXPOSURE, comps, **kw)  # JIT warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    s = fit_scan(Q, y, EXPOSURE, comps, **kw)
    t, c = time.perf_counter() - t0, time.process_time() - c0
    np.savez(args.out, values=s.values, loglike=s.loglike, converged=s.converged)
    emit({"wall": t, "cpu": c, "bins": int(s.used.sum()), "n_par": len(s.param_names), "n_iter": int(s.n_iter)})


def child_loop(args) -> None:
    comps, y, kw = _setup(args)
    fit_profile(Q, y[0, 0], comps, exposure=EXPOSURE, blur=False, **kw)
    flat = y.reshape(-1, Q.size)
    idx = np.random.default_rng(1).choice(flat.shape[0], size=min(args.subset, flat.shape[0]), replace=False)
    t0, c0 = time.perf_counter(), time.process_time()
    single = [fit_profile(Q, flat[i], comps, exposure=EXPOSURE, blur=False, **kw) for i in idx]
    t = (time.perf_counter() - t0) / idx.size * flat.shape[0]
    c = (time.process_time() - c0) / idx.size * flat.shape[0]
    res = {k: np.array([getattr(r, k) for r in single]) for k in ("x", "stderr", "at_bound", "loglike")}
    np.savez(args.out, idx=idx, **res)
    emit({"wall": t, "cpu": c})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ny", type=int, default=90)
    ap.add_argument("--nx", type=int, default=60)
    ap.add_argument("--subset", type=int, default=150)
    ap.add_argument("--child", choices=("batch", "loop"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        (child_batch if args.child == "batch" else child_loop)(args)
        return 0
    n = args.ny * args.nx
    print(f"target: fit_scan of the {args.ny}×{args.nx} scan in < {TARGET_S:.0f} s wall at 2 threads")
    common = ["--ny", str(args.ny), "--nx", str(args.nx), "--subset", str(args.subset)]
    with tempfile.TemporaryDirectory() as d:
        loop = run_child(__file__, [*common, "--child", "loop", "--out", f"{d}/loop.npz"], 1, timeout=3600)
        batch = {th: run_child(__file__, [*common, "--child", "batch", "--out", f"{d}/b{th}.npz"], th) for th in (1, 2)}
        ref, b2 = np.load(f"{d}/loop.npz"), np.load(f"{d}/b2.npz")
        idx = ref["idx"]
        vals = b2["values"].reshape(-1, b2["values"].shape[-1])[idx]
        ll = b2["loglike"].reshape(-1)[idx]
        free = ~ref["at_bound"]
        dz = np.array([np.max(np.abs(v - x)[f] / e[f]) for v, x, e, f in zip(vals, ref["x"], ref["stderr"], free)])
        dll = np.abs(ll - ref["loglike"])
        conv = float(b2["converged"].mean())
    b = batch[2]
    print(f"cores: {os.cpu_count()}, scan {args.ny}×{args.nx} = {n} pixels, {b['bins']} bins, {b['n_par']} "
          f"parameters/pixel, LM iterations {b['n_iter']}; load average (1 min): {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'method (each a fresh process)':<48s} {'wall [s]':>9s} {'CPU [s]':>9s} {'pixels/s':>9s} {'RSS GB':>7s}")
    for th in (1, 2):
        r = batch[th]
        print(f"{f'fit_scan (batched LM, numba), {th} thread(s)':<48s} {r['wall']:>9.2f} {r['cpu']:>9.2f} "
              f"{n / r['wall']:>9.0f} {r['rss'] / 1e9:>7.2f}")  # fmt: skip
    print(f"{'anchor: fit_profile per pixel (scipy), extrap.':<48s} {loop['wall']:>9.2f} {loop['cpu']:>9.2f} "
          f"{n / loop['wall']:>9.0f} {loop['rss'] / 1e9:>7.2f}")  # fmt: skip
    print(f"ratio anchor / batched: {loop['wall'] / batch[1]['wall']:.1f}× per core (1 thread each), "
          f"{loop['wall'] / batch[2]['wall']:.1f}× at 2 threads")  # fmt: skip
    print(f"converged pixels: {conv:.2%}; agreement on {idx.size} pixels: max |Δθ|/σ median {np.median(dz):.2g}, "
          f"99th pct {np.percentile(dz, 99):.2g}; |ΔlogL| max {dll.max():.2g}")  # fmt: skip
    return verdict(f"whole {args.ny}×{args.nx} scan < {TARGET_S:.0f} s at 2 threads", batch[2]["wall"] < TARGET_S)


if __name__ == "__main__":
    sys.exit(main())
