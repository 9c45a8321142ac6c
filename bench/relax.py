"""Cost of the physical relaxation (structures.relax, CHGNet) per 1000 atoms per ps of MD, against the anchor of
the rigid-unit fast path (structures.amorphous overlap packing, no forces) measured in the same run.

Run in the environment with the optional extra (``pip install -e ".[relax]"``), one thread:

    OMP_NUM_THREADS=1 python bench/relax.py [--n-atoms 100] [--steps 10]

Prints wall and CPU seconds (the machine is shared: CPU time is the honest figure) per MD step, per 1000 atoms
per ps at the library's time steps (2 fs inorganic, 1 fs electrolytes), the time of one library model, and the
ratio to the fast path.
"""

from __future__ import annotations

import argparse
import time


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-atoms", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from structures.amorphous import TYPE1_DEFAULT_UNITS, amorphous
    from structures.relax import LIBRARY, Protocol, chgnet_potential, melt_quench

    # anchor: the rigid-unit fast path at the same size (the overlap packing, as the library starts use it)
    amorphous(TYPE1_DEFAULT_UNITS, 2.1, n_atoms=a.n_atoms, relax=False, rng=0)  # numba compile outside the timing
    start, w_fast, c_fast = _timed(lambda: amorphous(TYPE1_DEFAULT_UNITS, 2.1, n_atoms=a.n_atoms, relax=False, rng=1))
    calc, ident = chgnet_potential()
    start.calc = calc
    start.get_potential_energy()  # first call (graph set-up) outside the timing
    proto = Protocol(t_melt=1500.0, melt_time=a.steps * 2.0 / 1000, quench_rate=1e9, npt_time=0.0, timestep=2.0)
    _, w_md, c_md = _timed(lambda: melt_quench(start, potential=(calc, ident), protocol=proto, seed=0, progress=False))
    n = len(start)
    per_step_w, per_step_c = w_md / a.steps, c_md / a.steps
    print(f"CHGNet {ident['version']} (weights {ident['model']}), torch {ident['torch']}, {a.threads} thread(s)")
    print(f"model: {n} atoms; {a.steps} MD steps at 2 fs")
    print(
        f"per step: {per_step_w:.3f} s wall, {per_step_c:.3f} s CPU ({1e3 * per_step_c / n:.2f} CPU-ms per atom-step)"
    )
    for dt in (2.0, 1.0):
        steps_per_ps = 1000.0 / dt
        print(
            f"per 1000 atoms per ps at {dt:g} fs: {per_step_w * 1000 / n * steps_per_ps / 3600:.2f} h wall, "
            f"{per_step_c * 1000 / n * steps_per_ps / 3600:.2f} h CPU"
        )
    for name, spec in LIBRARY.items():
        calls = sum(spec.protocol.n_steps()) + spec.protocol.minimise_steps
        print(f"  library model {name}: ≤ {calls} force calls ≈ {calls * per_step_c * spec.n_atoms / n:.0f} CPU-s")
    print(f"anchor (rigid-unit overlap packing, {n} atoms): {w_fast:.3f} s wall, {c_fast:.3f} s CPU")
    print(f"ratio: one CHGNet MD step = {per_step_c / max(c_fast, 1e-9):.1f}× the whole fast-path build (CPU)")


if __name__ == "__main__":
    main()
