"""structures.relax: the melt–quench–NPT protocol (with a cheap Lennard-Jones stand-in for the ML potential)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones

from structures import relax

# Argon-like LJ (ε = 0.0104 eV, σ = 3.40 Å): the fcc crystal at 0 K has its nearest neighbours at 2^(1/6)σ ≈ 3.82 Å
# (≈ 3.76 Å with a 2.5σ cut-off); a start compressed by 10 % must expand under NPT at 0 pressure.
EPS, SIGMA = 0.0104, 3.40
FAST = relax.Protocol(
    t_melt=60.0, melt_time=0.05, quench_rate=1000.0, t_final=10.0, npt_time=0.15, timestep=5.0, taup=100.0
)


def _lj():
    return LennardJones(epsilon=EPS, sigma=SIGMA, rc=2.5 * SIGMA, smooth=True), {"name": "LJ-Ar", "version": "test"}


def _start(compress: float = 0.9) -> Atoms:
    a0 = 2 ** (1 / 6) * SIGMA * np.sqrt(2)  # fcc lattice constant at the LJ minimum
    at = bulk("Ar", "fcc", a=a0 * compress, cubic=True).repeat(2)
    at.rattle(0.02, seed=1)
    return at


class _Interrupting(LennardJones):
    """Raises KeyboardInterrupt at the n-th force evaluation (a user pressing Ctrl-C mid-run)."""

    def __init__(self, n, **kw):
        super().__init__(**kw)
        self.n, self.count = n, 0

    def calculate(self, *args, **kwargs):
        self.count += 1
        if self.count == self.n:
            raise KeyboardInterrupt
        super().calculate(*args, **kwargs)


def test_density_is_an_output_and_everything_is_recorded():
    start = _start(0.9)
    out = relax.melt_quench(start, potential=_lj(), protocol=FAST, seed=3, progress=False)
    r = out.info["relax"]
    assert r["steps"] == {"melt": 10, "quench": 10, "anneal": 30}
    assert r["potential"] == {"name": "LJ-Ar", "version": "test"}
    assert r["seed"] == 3 and r["protocol"]["t_final"] == 10.0 and r["protocol"]["pressure"] == 0.0
    # compressed start under positive pressure: the barostat expands it, so the density falls
    assert r["density_g_cm3"] < 0.97 * r["start_density_g_cm3"]
    assert np.isfinite(r["energy_eV_per_atom"]) and r["energy_eV_per_atom"] < 0
    assert out.info["density_g_cm3"] == r["density_g_cm3"]
    mass = np.sum(out.get_masses()) / out.get_volume() * 1.66053906660
    assert r["final_density_g_cm3"] == pytest.approx(mass, rel=1e-12)
    assert len(start.info) == 0 and start.calc is None  # input untouched


def test_seeded_and_reproducible():
    a = relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=5, progress=False)
    b = relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=5, progress=False)
    c = relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=6, progress=False)
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)


def test_interrupted_run_continues_from_checkpoint_bit_for_bit(tmp_path):
    ref = relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=7, progress=False)
    ck = tmp_path / "run.ckpt.json"
    calc = _Interrupting(33, epsilon=EPS, sigma=SIGMA, rc=2.5 * SIGMA, smooth=True)
    with pytest.raises(KeyboardInterrupt):
        relax.melt_quench(
            _start(), potential=(calc, {"name": "LJ-Ar", "version": "test"}), protocol=FAST, seed=7,
            progress=False, checkpoint=ck, checkpoint_every=4,
        )  # fmt: skip
    assert ck.exists() and not list(tmp_path.glob("*.tmp"))
    out = relax.melt_quench(
        _start(), potential=_lj(), protocol=FAST, seed=7, progress=False, checkpoint=ck, checkpoint_every=4
    )
    assert out.info["relax"]["resumed_at_step"] > 0
    assert np.allclose(out.positions, ref.positions, atol=1e-9)
    assert not ck.exists()
    with pytest.raises(ValueError, match="another run"):
        ck.write_text('{"fingerprint": {}}')
        relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=8, progress=False, checkpoint=ck)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="t_final"):
        relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=1, t_final=500.0, progress=False)
    with pytest.raises(TypeError, match="unknown protocol field"):
        relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=1, melt_temp=5.0)
    with pytest.raises(ValueError, match="quench_rate"):
        relax.melt_quench(_start(), potential=_lj(), protocol=FAST, seed=1, quench_rate=0.0)
    with pytest.raises(ValueError, match="potential"):
        relax.melt_quench(_start(), potential="nonsense", seed=1)
    with pytest.raises(ValueError, match="periodic"):
        relax.melt_quench(Atoms("Ar2", positions=[[0, 0, 0], [3, 0, 0]]), potential=_lj(), seed=1)


def test_minimise_returns_the_zero_pressure_crystal_of_the_potential_and_names_bad_input():
    # a rattled fcc cell compressed by 5 %: the minimisation over positions and isotropic strain must undo the
    # rattle (forces) and land on the minimum of E(a) of the same potential, found here independently by a
    # bounded 1D search over the perfect lattice
    from scipy.optimize import minimize_scalar

    calc, ident = _lj()
    a_lj = 2 ** (1 / 6) * SIGMA * np.sqrt(2)

    def energy(a):
        at = bulk("Ar", "fcc", a=a, cubic=True)
        at.calc = LennardJones(epsilon=EPS, sigma=SIGMA, rc=2.5 * SIGMA, smooth=True)
        return at.get_potential_energy()

    a_star = minimize_scalar(energy, bounds=(0.9 * a_lj, 1.1 * a_lj), method="bounded", options={"xatol": 1e-6}).x
    start = bulk("Ar", "fcc", a=0.95 * a_lj, cubic=True)
    start.rattle(0.02, seed=1)
    out = relax.minimise(start, potential=(calc, ident), fmax=1e-3, p_tol=1e-3, max_steps=500)
    m = out.info["minimisation"]
    assert m["converged"] and 0 < m["steps"] < 500
    assert m["before"]["pressure_GPa"] > 0.05 and m["before"]["max_force_eV_per_A"] > 1e-3
    assert abs(m["after"]["pressure_GPa"]) < 1e-3 and m["after"]["max_force_eV_per_A"] < 1e-3
    assert m["criteria"] == {"fmax_eV_per_A": 1e-3, "p_tol_GPa": 1e-3, "pressure_GPa": 0.0}
    assert out.cell.lengths()[0] == pytest.approx(a_star, rel=3e-4)  # 1e-3 GPa ≈ 1e-4 in a (B ≈ 3 GPa)
    assert out.info["density_g_cm3"] == pytest.approx(m["after"]["density_g_cm3"])
    assert m["after"]["density_g_cm3"] < m["before"]["density_g_cm3"]
    assert start.calc is None and "minimisation" not in start.info  # input untouched
    short = relax.minimise(start, potential=(calc, ident), fmax=1e-6, p_tol=1e-9, max_steps=2)
    assert short.info["minimisation"]["steps"] == 2 and not short.info["minimisation"]["converged"]
    for bad in ({"fmax": 0.0}, {"p_tol": -1.0}, {"max_steps": 0}, {"pressure": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            relax.minimise(start, potential=(calc, ident), **bad)
