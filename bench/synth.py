"""Benchmark: synthetic SEND scan from a cached library (issue 7 targets).

Prints the library build time (separately), the time to compose + expose + write a 90×60 scan of 256²
patterns (target < 30 s on 2 cores), the write throughput relative to copying the raw stack in memory in the
same run, and the peak resident memory (target < 2 GB whatever the scan size). ``--big`` adds a 1000×1000 scan
on a 32² detector to show that memory stays bounded. ``--semiangle 0.15`` runs the narrow-probe case: the
library's crystal entries then take the cheap paths of simkit.library.resolve_method (disc_multislice for Li,
Cu, Li₂O; kinematic for LiF) and the compositor mixes over the probe's 26 nm footprint; the table lists the
method and build time of each entry kind. ``--cold`` builds the library in a fresh temporary cache (timing a
build from scratch).

    python bench/synth.py [--preset tiny|demo] [--semiangle 2|0.15] [--quick] [--big] [--cold]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from simkit.geometry import DetectorGeometry
from simkit.library import build_library
from simkit.nbed import Probe
from simkit.synth import default_scan, synthesize_scan


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", help="library preset (tiny|demo|full)")
    ap.add_argument("--quick", action="store_true", help="30×45 scan instead of 60×90")
    ap.add_argument("--big", action="store_true", help="also run a 1000×1000 scan on a 32² detector")
    ap.add_argument("--cache", default=".sei-send-cache/library", help="library cache directory")
    ap.add_argument("--semiangle", type=float, default=2.0, help="probe convergence semi-angle [mrad] (default 2)")
    ap.add_argument("--cold", action="store_true", help="build the library in a fresh temporary cache")
    args = ap.parse_args()

    geom = DetectorGeometry(shape=(256, 256), pixel_size=0.005)
    probe = Probe(semiangle=args.semiangle)
    cold = tempfile.TemporaryDirectory() if args.cold else None
    cache = cold.name if cold is not None else args.cache
    t = time.perf_counter()
    lib = build_library(args.preset, probe=probe, geometry=geom, cache_dir=cache, progress=True)
    t_lib = time.perf_counter() - t
    print(
        f"library '{args.preset}' at {args.semiangle:g} mrad: {len(lib.entries)} entries, {lib.built} simulated, "
        f"{t_lib:.1f} s wall (2 workers)"
    )
    per_kind: dict[tuple[str, str], list[float]] = {}
    for e in lib.entries:
        per_kind.setdefault((e.spec.kind, e.info.get("method", e.spec.method)), []).append(e.info.get("seconds", 0.0))
    print(f"  {'kind':14s} {'method':16s} {'n':>3s} {'s/entry':>8s}  (build time of each entry, one thread)")
    for (kind, method), sec in per_kind.items():
        print(f"  {kind:14s} {method:16s} {len(sec):3d} {np.mean(sec):8.2f}")

    shape = (30, 45) if args.quick else (60, 90)
    scene, _ = default_scan("bottom", semiangle=args.semiangle, field_shape=shape)
    with tempfile.TemporaryDirectory() as d:
        # warm-up (numba compilation is cached on disk; the first call in a fresh checkout compiles)
        small, _ = default_scan("bottom", semiangle=args.semiangle, field_shape=(2, 4))
        synthesize_scan(small, Path(d) / "warm.h5", library=lib, progress=False)
        t = time.perf_counter()
        res = synthesize_scan(scene, Path(d) / "scan.h5", library=lib, progress=False, seed=1)
        t_scan = time.perf_counter() - t
        size = res.path.stat().st_size / 1e6
        n = shape[0] * shape[1]
        raw = np.zeros((n, *geom.shape), np.uint16)
        t = time.perf_counter()
        _ = raw.copy()
        t_copy = time.perf_counter() - t
    print(
        f"scan {shape[0]}×{shape[1]} of 256² with noise at {args.semiangle:g} mrad (library cached): {t_scan:.2f} s "
        f"({n / t_scan:.0f} patterns/s), {size:.0f} MB on disk (lzf); target < 30 s for 90×60"
    )
    print(f"  ratio to a bare in-memory copy of the raw stack: {t_scan / t_copy:.0f}×")
    print(f"  electrons per pattern {res.electrons_per_pattern:.0f} e, scan fluence {res.scan_fluence:.2f} e/Å²")
    print(f"peak RSS so far: {peak_rss_gb():.2f} GB (target < 2 GB)")

    if args.big:
        g32 = DetectorGeometry(shape=(32, 32), pixel_size=0.03)
        lib32 = build_library("tiny", probe=probe, geometry=g32, cache_dir=cache, progress=True)
        big, _ = default_scan("bottom", semiangle=args.semiangle, field_shape=(1000, 1000))
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            # a 0.15 mrad direct disc (0.0076 Å⁻¹) sits in one 0.03 Å⁻¹ pixel: 10⁵ e there overflow uint16
            dt = np.uint32 if probe.disc_radius < 2 * g32.pixel_size else np.uint16
            synthesize_scan(big, Path(d) / "big.h5", library=lib32, progress=True, rows_per_chunk=8, dtype=dt)
            print(f"1000×1000 scan of 32²: {time.perf_counter() - t:.1f} s, peak RSS {peak_rss_gb():.2f} GB")
    if cold is not None:
        cold.cleanup()


if __name__ == "__main__":
    main()
