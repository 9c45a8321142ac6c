"""Benchmark: amorphous SEI model building (packing + relaxation) versus size, and the anchors it replaces.

Run:  .venv/bin/python bench/structures.py [--sizes 5000 20000 80000] [--no-relax] [--slab] [--threads 1]

Prints, measured in this run:
* wall and CPU time of ``type1_sei`` at several N, split into packing and relaxation (wall), with the CPU cost
  per atom relative to the smallest N (≈ 1 means linear scaling; CPU time is less sensitive to other jobs);
* the target: 20,000 atoms in < 30 s on 2 cores (the machine may be shared: the load average is printed, and CPU
  time is the less noisy number);
* anchor 1 — one overlap-force evaluation by the numba cell-list kernel vs the plain O(N²) NumPy reference of
  tests/reference.py at the same N (ratio);
* anchor 2 — random sequential insertion with the same minimum distances at the same density (what users would
  try first): the fraction of atoms it manages to place, i.e. why it is not used;
* ``--slab``: the 40 × 40 × 5 nm Type 1 slab (≈ 600,000 atoms) needed under a 0.15 mrad probe.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# this script is called structures.py: keep its own folder off the import path so `structures` is the package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from structures import _packing  # noqa: E402
from structures.amorphous import RelaxSettings, amorphous, min_distance_table, type1_sei  # noqa: E402


def _timed(fn, *a, **k):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    return out, time.perf_counter() - t, time.process_time() - c


def _load() -> str:
    try:
        return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "load average n/a"


def bench_sizes(sizes, relax):
    import numba

    print(
        f"\n== type1_sei build time vs N (relax={'on' if relax else 'off'}; {_load()}; cpus={os.cpu_count()}, "
        f"numba threads={numba.get_num_threads()})"
    )
    print(
        f"{'N':>8} {'wall s':>8} {'cpu s':>8} {'pack s':>8} {'steps':>6} {'relax s':>8} {'cpu us/atom':>12} {'rel':>6}"
    )
    base = None
    rows = []
    for n in sizes:
        atoms, wall, cpu = _timed(type1_sei, n_atoms=n, rng=0, relax=relax)
        p = atoms.info["packing"]
        r = atoms.info["relax"] or {"time_s": 0.0}
        per = cpu / len(atoms) * 1e6
        base = base or per
        rows.append((len(atoms), wall, cpu))
        print(
            f"{len(atoms):8d} {wall:8.2f} {cpu:8.2f} {p['time_s']:8.2f} {p['steps']:6d} {r['time_s']:8.2f} "
            f"{per:12.1f} {per / base:6.2f}"
        )
    for n, wall, cpu in rows:
        if abs(n - 20000) < 100:
            verdict = "meets" if wall < 30 else "misses"
            print(f"20k-atom target (< 30 s on 2 cores): wall {wall:.1f} s, cpu {cpu:.1f} s -> {verdict} (wall)")
    return rows


def bench_kernel_vs_reference(n=2000):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from reference import overlap_energy_forces

    from structures.amorphous import _assemble

    names = ["Li+"] * (n // 2) + ["F-"] * (n // 2)
    box = np.full(3, (n * (6.94 + 19.0) / 2 / 6.022e23 / 2.0 * 1e24) ** (1 / 3))
    system, _, _ = _assemble(names, box)
    rng = np.random.default_rng(0)
    st = _packing._State(system, rng.random((n, 3)) * box, np.tile(np.eye(3), (n, 1, 1)))
    dmin = min_distance_table(system.elements)
    nl = _packing._NeighbourList(system, dmin.max() * 1.03, 0.6)
    out = [np.zeros((n, 3)), np.zeros(n), np.zeros(n)]
    args = (st.pos, system.box, system.species, dmin, 0.03, 1.0)

    def fast():
        nl.build(st.pos)
        _packing._call(_packing._overlap_forces, _packing._par_overlap_forces, n, *args, nl.start, nl.nbr, nl.shift,
                       *out)  # fmt: skip

    fast()
    _, t_fast, _ = _timed(lambda: [fast() for _ in range(5)])
    _, t_ref, _ = _timed(overlap_energy_forces, st.pos, system.box, system.species, system.unit_of, dmin, 0.03, 1.0)
    t_fast /= 5
    print(f"\n== anchor 1: one overlap-force evaluation incl. neighbour list, N = {n} LiF at 2.0 g/cm3")
    print(
        f"numba cell lists {t_fast * 1e3:.2f} ms, NumPy O(N^2) reference {t_ref * 1e3:.1f} ms, "
        f"ratio {t_ref / t_fast:.0f}x"
    )


def bench_sequential_insertion(n=1000, density=2.0, attempts=1000):
    """Random sequential insertion of LiF at the same density and minimum distances (periodic cKDTree)."""
    from scipy.spatial import cKDTree

    table = min_distance_table(["Li", "F"])
    dmax = float(table.max())
    vol = n / 2 * (6.94 + 18.998) / 6.02214076e23 / density * 1e24
    L = vol ** (1 / 3)
    rng = np.random.default_rng(0)
    pos = np.empty((0, 3))
    kinds = np.empty(0, dtype=int)
    tree, n_tree = None, 0
    t0 = time.perf_counter()
    for k in [0, 1] * (n // 2):  # alternate Li, F
        for _ in range(attempts):
            x = rng.random(3) * L
            cand = list(tree.query_ball_point(x, dmax)) if tree is not None else []
            cand += list(range(n_tree, len(pos)))  # placed since the last tree build
            if cand:
                dv = pos[cand] - x
                dv -= L * np.round(dv / L)
                if np.any(np.linalg.norm(dv, axis=1) < table[k, kinds[cand]]):
                    continue
            pos = np.vstack([pos, x])
            kinds = np.append(kinds, k)
            if len(pos) - n_tree >= 25:
                tree, n_tree = cKDTree(pos % L, boxsize=L), len(pos)
            break
    dt = time.perf_counter() - t0
    atoms, t_pack, _ = _timed(amorphous, {"F-": 1.0}, density, n_atoms=n, relax=False, rng=0)
    print(f"\n== anchor 2: random sequential insertion, LiF at {density} g/cm3, N = {n}, {attempts} tries per atom")
    print(
        f"RSI placed {len(pos)}/{n} atoms ({100 * len(pos) / n:.0f} %) in {dt:.1f} s; "
        f"collective packing placed {len(atoms)}/{n} in {t_pack:.2f} s"
    )


def bench_slab(relax):
    print(f"\n== 40 x 40 x 5 nm Type 1 slab (relax={'on' if relax else 'off'}; {_load()})")
    atoms, wall, cpu = _timed(type1_sei, cell=(400.0, 400.0, 50.0), rng=0, relax=relax)
    p = atoms.info["packing"]
    r = atoms.info["relax"] or {"time_s": 0.0}
    print(
        f"{len(atoms)} atoms: wall {wall:.0f} s ({wall / 60:.1f} min), cpu {cpu:.0f} s; packing {p['time_s']:.0f} s "
        f"({p['steps']} steps), relax {r['time_s']:.0f} s"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 80000])
    ap.add_argument("--no-relax", action="store_true", help="packing only")
    ap.add_argument("--slab", action="store_true", help="also build the 40 x 40 x 5 nm slab (~600k atoms)")
    ap.add_argument("--threads", type=int, default=None, help="numba threads (1 = serial kernels, no spin-waits)")
    ap.add_argument("--no-anchors", action="store_true", help="skip the two anchor measurements")
    args = ap.parse_args(argv)
    if args.threads:
        import numba

        numba.set_num_threads(args.threads)
    relax = RelaxSettings() if not args.no_relax else False
    type1_sei(n_atoms=600, rng=0)  # compile / load the numba cache outside the timings
    if not args.no_anchors:
        bench_kernel_vs_reference()
        bench_sequential_insertion()
    bench_sizes(args.sizes, relax)
    if args.slab:
        bench_slab(relax)


if __name__ == "__main__":
    main()
