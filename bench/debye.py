"""Benchmark: Debye I(Q) of a 20,000-atom model at 511 Q points, sei-send vs debyecalculator (the anchor).

Anchor (shared/README): debyecalculator 1.1.1 (torch, CPU, 2 threads, grid pair sum; X-ray form factors)
takes ≈ 1.8 s for 20,000 atoms and 511 Q points on 2 cores. Both codes run here on the same structure and the
same Q grid (sei-send with electron scattering factors, open boundaries = all pairs, like debyecalculator);
the printed ratio is measured in this run (absolute times on a shared machine drift).

If debyecalculator (and torch) are not installed, a plain NumPy O(N²) implementation on a 4,000-atom subset is
timed instead and scaled by (N/4000)².

Run: .venv/bin/python bench/debye.py [n_atoms] [repeats]
"""

from __future__ import annotations

import sys
import time

import numpy as np
from ase import Atoms

from simkit.kinematic import debye_intensity, pair_histogram, scattering_factor

N_ATOMS = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
DENSITY = 2.0  # g/cm³
Q = np.linspace(0.02, 2.0, 511)  # Q = 1/d [Å⁻¹]


def random_structure(n: int, density: float, rng) -> Atoms:
    """Random Li/O/F positions at the given mass density [g/cm³] in a cube (open boundaries)."""
    symbols = rng.choice(["Li", "O", "F"], size=n, p=[0.5, 0.25, 0.25])
    masses = {"Li": 6.94, "O": 15.999, "F": 18.998}
    mass_g = sum(masses[s] for s in symbols) / 6.02214076e23
    edge = (mass_g / density * 1e24) ** (1 / 3)  # Å
    return Atoms(list(symbols), positions=rng.uniform(0, edge, (n, 3)), cell=[edge] * 3, pbc=False)


def best_of(fun, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fun()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(2026)
    atoms = random_structure(N_ATOMS, DENSITY, rng)
    print(f"structure: {N_ATOMS} atoms (Li/O/F random, {DENSITY} g/cm³, open boundaries), {Q.size} Q points")
    import numba

    print(f"numba threads: {numba.get_num_threads()}")
    debye_intensity(atoms[:200], Q)  # compile + scattering tables
    t_ours = best_of(lambda: debye_intensity(atoms, Q, periodic=False), REPEATS)
    print(f"sei-send debye_intensity (electron f, δ = 0.002 Å): {t_ours:.3f} s (best of {REPEATS})")
    t0 = time.perf_counter()
    pair_histogram(atoms, periodic=False)
    print(f"  of which pair histogram: {time.perf_counter() - t0:.3f} s")
    boxed = atoms.copy()
    boxed.pbc = True
    t_per = best_of(lambda: debye_intensity(boxed, Q, periodic=True), 1)
    print(f"  same box as a periodic amorphous model (min. image, Lorch window, uniform term): {t_per:.3f} s")

    # accuracy of the histogram at the default bin against the exact double sum (2,000-atom subset)
    sub = atoms[:2000]
    fac = {s: scattering_factor(s, Q) for s in set(sub.get_chemical_symbols())}
    fa = np.array([fac[s] for s in sub.get_chemical_symbols()])
    exact = np.sum(fa**2, axis=0)
    for i in range(len(sub) - 1):
        r = np.linalg.norm(sub.positions[i + 1 :] - sub.positions[i], axis=1)
        x = 2 * np.pi * np.outer(r, Q)
        exact += 2 * fa[i] * np.sum(fa[i + 1 :] * np.sin(x) / x, axis=0)
    exact /= len(sub)
    err = np.abs(debye_intensity(sub, Q, periodic=False) - exact)
    print(f"  accuracy (2,000 atoms, δ = 0.002 Å): max |ΔI|/I = {np.max(err / exact):.1e}")

    try:
        import torch
        from debyecalculator import DebyeCalculator
    except ImportError as err:
        print(f"debyecalculator not available ({err}); timing a NumPy O(N²) reference instead")
        sub = atoms[:4000]
        pos = sub.positions
        f = {s: scattering_factor(s, Q) for s in set(sub.get_chemical_symbols())}
        fa = np.array([f[s] for s in sub.get_chemical_symbols()])

        def numpy_debye():
            out = np.zeros_like(Q)
            for i in range(len(sub)):
                r = np.linalg.norm(pos[i + 1 :] - pos[i], axis=1)
                x = 2 * np.pi * np.outer(r, Q)
                out += 2 * fa[i] * np.sum(fa[i + 1 :] * np.sin(x) / x, axis=0)
            return out

        t_ref = best_of(numpy_debye, 1) * (N_ATOMS / 4000) ** 2
        print(f"numpy O(N²) reference (scaled from 4000 atoms): {t_ref:.1f} s")
        print(f"ratio reference / sei-send: {t_ref / t_ours:.1f}×")
        return

    torch.set_num_threads(2)
    two_pi = 2 * np.pi
    q2 = Q * two_pi  # debyecalculator uses Q = 4π sinθ/λ = 2π/d
    step = (q2[-1] - q2[0]) / (Q.size - 1)
    calc = DebyeCalculator(
        qmin=q2[0], qmax=q2[-1] + 0.5 * step, qstep=step, biso=0.0, device="cpu", num_threads=2, rmax=20.0
    )
    calc.iq(atoms[:200])
    n_q = calc.q.numel()
    res = {}

    def anchor():
        res["iq"] = calc.iq(atoms)

    t_anchor = best_of(anchor, REPEATS)
    from importlib.metadata import version

    print(
        f"debyecalculator {version('debyecalculator')} (torch {torch.__version__}, CPU, 2 threads, "
        f"{n_q} Q points): {t_anchor:.3f} s (best of {REPEATS})"
    )
    print(f"ratio debyecalculator / sei-send: {t_anchor / t_ours:.2f}× (≥ 1 means sei-send is as fast or faster)")


if __name__ == "__main__":
    main()
