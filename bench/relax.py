"""Cost of the physical relaxation (structures.relax, CHGNet) per 1000 atoms per ps of MD on 1 and 2 torch threads,
against the anchor of the rigid-unit fast path (structures.amorphous overlap packing, no forces) measured in the
same run, plus the cost of one step of the converged cell minimisation (:func:`structures.relax.minimise`).

Run in the environment with the optional extra (``pip install -e ".[relax]"``), under the machine-wide bench lock:

    flock /work/wt/bench.lock env OMP_NUM_THREADS=2 python bench/relax.py [--n-atoms 100] [--steps 8] [--rounds 3]

Rounds interleave the anchor and both thread counts; the best of the rounds is printed (the machine is shared:
wall times are noisy, CPU time shows how much of the second core torch actually uses). Target: ≤ 1 h wall per
1000 atoms per ps at 2 fs on 2 cores (the 27-model library, ≈ 0.3 ps per 100-atom model, then builds within a
working session on one core).
"""

from __future__ import annotations

import argparse
import os
import time

TARGET_H_PER_KATOM_PS = 1.0  # h wall per 1000 atoms per ps at 2 fs, 2 cores


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-atoms", type=int, default=100)
    ap.add_argument("--steps", type=int, default=8, help="MD steps per timing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-steps", type=int, default=6, help="FIRE steps of the minimisation timing")
    a = ap.parse_args()

    import torch

    from structures.amorphous import TYPE1_DEFAULT_UNITS, amorphous
    from structures.relax import LIBRARY, Protocol, chgnet_potential, melt_quench, minimise

    amorphous(TYPE1_DEFAULT_UNITS, 2.1, n_atoms=a.n_atoms, relax=False, rng=0)  # numba compile outside the timing
    start = amorphous(TYPE1_DEFAULT_UNITS, 2.1, n_atoms=a.n_atoms, relax=False, rng=1)
    calc, ident = chgnet_potential()
    start.calc = calc
    start.get_potential_energy()  # first call (graph set-up) outside the timing
    start.calc = None
    proto = Protocol(t_melt=1500.0, melt_time=a.steps * 2.0 / 1000, quench_rate=1e9, npt_time=0.0, timestep=2.0)
    n = len(start)
    best: dict = {}
    for _ in range(a.rounds):
        _, w, c = _timed(lambda: amorphous(TYPE1_DEFAULT_UNITS, 2.1, n_atoms=a.n_atoms, relax=False, rng=1))
        best["anchor"] = min(best.get("anchor", (1e99, 1e99)), (w, c))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _, w, c = _timed(
                lambda: melt_quench(start, potential=(calc, ident), protocol=proto, seed=0, progress=False)
            )
            best[threads] = min(best.get(threads, (1e99, 1e99)), (w / a.steps, c / a.steps))
    torch.set_num_threads(1)
    relaxed = melt_quench(start, potential=(calc, ident), protocol=proto, seed=0, progress=False)
    _, w_min, c_min = _timed(
        lambda: minimise(relaxed, potential=(calc, ident), fmax=1e-6, p_tol=1e-9, max_steps=a.min_steps)
    )

    print(f"CHGNet {ident['version']} (weights {ident['model']}), torch {ident['torch']}; best of {a.rounds} rounds")
    print(f"model: {n} atoms; {a.steps} MD steps at 2 fs per timing")
    load = os.getloadavg()
    print(f"machine load average (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on {os.cpu_count()} cores")
    w_fast, c_fast = best["anchor"]
    print(f"anchor (rigid-unit overlap packing, {n} atoms): {w_fast:.3f} s wall, {c_fast:.3f} s CPU")
    for threads in (1, 2):
        w, c = best[threads]
        print(
            f"{threads} thread(s): per MD step {w:.3f} s wall, {c:.3f} s CPU "
            f"({1e3 * w / n:.2f} wall-ms per atom-step); "
            f"ratio to the anchor build {w / max(w_fast, 1e-9):.1f}× (wall)"
        )
        for dt in (2.0, 1.0):
            h = w * 1000 / n * (1000.0 / dt) / 3600
            print(
                f"    per 1000 atoms per ps at {dt:g} fs: {h:.2f} h wall, {c * 1000 / n * 1000 / dt / 3600:.2f} h CPU"
            )
    w1, w2 = best[1][0], best[2][0]
    print(f"2-thread speed-up: {w1 / w2:.2f}× (wall)")
    h2 = w2 * 1000 / n * 500 / 3600
    print(
        f"target: ≤ {TARGET_H_PER_KATOM_PS:g} h wall per 1000 atoms per ps at 2 fs on 2 cores — "
        f"measured {h2:.2f} h: {'met' if h2 <= TARGET_H_PER_KATOM_PS else 'NOT met'}"
    )
    print(
        f"converged minimisation (FIRE, positions + isotropic cell), 1 thread: {w_min / a.min_steps:.3f} s wall, "
        f"{c_min / a.min_steps:.3f} s CPU per step for {n} atoms"
    )
    for name, spec in LIBRARY.items():
        calls = sum(spec.protocol.n_steps()) + spec.protocol.minimise_steps
        cpu = calls * best[1][1] * spec.n_atoms / n
        print(f"  library model {name}: ≤ {calls} force calls ≈ {cpu:.0f} CPU-s (1 thread)")


if __name__ == "__main__":
    main()
