"""Shared frame of the benches: children in fresh processes, thread counts, peak RSS, verdict lines.

Every timed piece runs in its own subprocess (``run_child``) with NUMBA_NUM_THREADS / OMP_NUM_THREADS /
torch threads set to the requested count and OMP_WAIT_POLICY=PASSIVE, so that two thread pools never spin in one
process and each child's peak RSS (``getrusage`` in the child) is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def thread_env(threads: int) -> dict:
    """Environment of a child limited to ``threads`` threads in every pool (numba, OpenMP, BLAS, torch)."""
    t = str(int(threads))
    return {
        **os.environ,
        "NUMBA_NUM_THREADS": t,
        "OMP_NUM_THREADS": t,
        "OPENBLAS_NUM_THREADS": t,
        "MKL_NUM_THREADS": t,
        "OMP_WAIT_POLICY": "PASSIVE",
        "BENCH_THREADS": t,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def run_child(script: str, argv: list[str], threads: int, timeout: float = 600.0, echo: bool = False) -> dict:
    """Run ``python script *argv`` in a fresh process with ``threads`` threads; its last stdout line as JSON.

    ``echo``: print the child's other stdout lines (its own report) first.
    """
    p = subprocess.run(
        [sys.executable, script, *argv], env=thread_env(threads), capture_output=True, text=True, timeout=timeout
    )
    if p.returncode != 0:
        raise RuntimeError(f"child {Path(script).name} {' '.join(argv)} failed:\n{p.stderr[-3000:]}")
    lines = p.stdout.strip().splitlines()
    if echo and len(lines) > 1:
        print("\n".join(lines[:-1]), flush=True)
    return json.loads(lines[-1])


def peak_rss_bytes() -> int:
    """Peak resident memory of this process image [bytes]: VmHWM of /proc/self/status where there is one.

    Not ``ru_maxrss`` on Linux: the kernel keeps a process's maxrss across fork and execve, so a child started by a
    parent that holds 1.5 GB reports 1.5 GB however little it uses itself (measured). Elsewhere ru_maxrss.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def emit(result: dict) -> None:
    """A child's result line (read by :func:`run_child`), with its peak RSS added."""
    print(json.dumps({**result, "rss": peak_rss_bytes()}))


def verdict(target: str, met: bool) -> int:
    """Print the target and MET / NOT MET; the exit code (0 when met)."""
    print(f"target: {target}: {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


def pin_to_threads() -> int:
    """In a child: restrict the process to BENCH_THREADS CPUs (pools with a fixed worker count then share them)."""
    n = int(os.environ.get("BENCH_THREADS", "0") or 0)
    if n > 0 and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:n]
        os.sched_setaffinity(0, cpus)
    return n
