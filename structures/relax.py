"""Physical relaxation of amorphous models: melt, quench and NPT with an interatomic potential.

The rigid-unit packing of :mod:`structures.amorphous` and :mod:`structures.electrolyte` puts matter at a density
the caller chooses, so the first SRO peak follows that choice. :func:`melt_quench` turns such a start into a
physical model whose density is an *output*:

1. **melt** — NVT Langevin MD at ``t_melt`` [K] for ``melt_time`` [ps] at the starting density (erases the
   packing's memory);
2. **quench** — isotropic NPT (Berendsen thermostat and barostat, ASE's ``NPTBerendsen``) while the target
   temperature falls linearly from ``t_melt`` to ``t_final`` at ``quench_rate`` [K/ps];
3. **anneal** — NPT at ``t_final`` (default 100 K, cryo-EM conditions) and ``pressure`` (default 0 GPa) for
   ``npt_time`` [ps]; the reported density is the mean over its second half.

The run is seeded (velocities and Langevin noise from one ``numpy`` generator), shows a ``tqdm`` bar, and can
write a JSON checkpoint (atomically, every ``checkpoint_every`` steps) from which an interrupted run continues
bit for bit. Every parameter, the potential's name and version, and the resulting density and energy go to
``atoms.info["relax"]``.

Potential
---------
The default engine is CHGNet (Deng et al. 2023, Nat. Mach. Intell. 5, 1031), a universal machine-learned
potential trained on the Materials Project trajectory set (DFT, PBE/PBE+U) over 89 elements: it covers Li, O, F,
S, N, C, H and P in one consistent model and its weights ship inside the PyPI package (no download at run time).
Install with ``pip install -e ".[relax]"``; nothing else in the project needs it. Known limits: PBE under-binds
dispersion, so molecular liquids (DME, EC/DEC) come out less dense than experiment; MPtrj holds few molecular
structures, so the organic electrolytes are the least trustworthy models. Any ASE calculator can be passed
instead (tests use a cheap one).

Shipped models (:func:`load_model`, :func:`model_names`) live in ``structures/models/*.extxyz``; the command
``python -m structures.relax build`` regenerates them (see :data:`LIBRARY`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

__all__ = [
    "pooled_density",
    "LIBRARY",
    "MODEL_DIR",
    "ModelSpec",
    "Protocol",
    "build_model",
    "chgnet_potential",
    "load_model",
    "melt_quench",
    "minimise",
    "model_names",
    "model_seeds",
    "models_fingerprint",
    "relaxed_model",
    "relaxed_seeds",
    "start_structure",
]

#: Folder of the shipped relaxed models.
MODEL_DIR = Path(__file__).resolve().parent / "models"

_AMU_PER_A3_TO_G_CM3 = 1.66053906660  # 1 u/Å³ in g/cm³


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """Melt–quench–NPT protocol (see the module docstring).

    Attributes
    ----------
    t_melt : float  [K]
        Melt temperature (NVT) and start of the quench.
    melt_time : float  [ps]
        Duration of the NVT melt.
    quench_rate : float  [K/ps]
        Cooling rate of the NPT quench from ``t_melt`` to ``t_final``.
    t_final : float  [K]
        Temperature of the final NPT anneal.
    npt_time : float  [ps]
        Duration of the final anneal; the density is averaged over its second half.
    pressure : float  [GPa]
        Barostat pressure of quench and anneal.
    timestep : float  [fs]
        MD time step.
    friction : float  [1/fs]
        Langevin friction of the melt.
    taut : float  [fs]
        Berendsen thermostat time constant.
    taup : float  [fs]
        Berendsen barostat time constant.
    compressibility : float  [1/GPa]
        Compressibility the Berendsen barostat assumes (sets its step size, not the physics).
    minimise_steps : int
        After the anneal, at most this many FIRE steps minimising the energy over positions and an isotropic
        cell strain at ``pressure`` (0 K inherent structure; 0 = no minimisation).
    fmax : float  [eV/Å]
        Force convergence of the minimisation.
    """

    t_melt: float = 1500.0
    melt_time: float = 1.0
    quench_rate: float = 1000.0
    t_final: float = 100.0
    npt_time: float = 1.0
    pressure: float = 0.0
    timestep: float = 1.0
    friction: float = 0.02
    taut: float = 50.0
    taup: float = 500.0
    compressibility: float = 0.05
    minimise_steps: int = 0
    fmax: float = 0.05

    def n_steps(self) -> tuple[int, int, int]:
        """Steps of the melt, quench and anneal stages."""
        quench_time = max(self.t_melt - self.t_final, 0.0) / self.quench_rate
        return tuple(int(round(1000.0 * t / self.timestep)) for t in (self.melt_time, quench_time, self.npt_time))


def _check_protocol(p: Protocol) -> None:
    for name in ("t_melt", "quench_rate", "t_final", "timestep", "friction", "taut", "taup", "compressibility"):
        v = getattr(p, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name}={v!r} must be a positive finite number (see Protocol for units)")
    if not (isinstance(p.minimise_steps, (int, np.integer)) and p.minimise_steps >= 0):
        raise ValueError(f"minimise_steps={p.minimise_steps!r} must be an int >= 0")
    for name in ("melt_time", "npt_time", "fmax"):
        v = getattr(p, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name}={v!r} ps must be >= 0")
    if p.t_final > p.t_melt:
        raise ValueError(f"t_final={p.t_final!r} K is above t_melt={p.t_melt!r} K; a quench cools")
    if not math.isfinite(p.pressure):
        raise ValueError(f"pressure={p.pressure!r} GPa must be finite")


def chgnet_potential(device: str = "cpu") -> tuple[Any, dict]:
    """CHGNet calculator (pretrained weights shipped in the package) and its identity.

    Parameters
    ----------
    device : str
        Torch device; "cpu" by default.

    Returns
    -------
    calculator : ase.calculators.calculator.Calculator
        Energies [eV], forces [eV/Å] and stress.
    identity : dict
        ``name``, ``version`` (package), ``model`` (weights version), ``torch`` version, ``threads``.

    Raises
    ------
    ImportError
        When the optional extra is missing: ``pip install -e ".[relax]"``.
    """
    try:
        import chgnet
        import torch
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator
    except ImportError as err:  # pragma: no cover  (depends on the optional extra)
        raise ImportError('the relaxation engine needs the optional extra: pip install -e ".[relax]"') from err
    model = CHGNet.load(verbose=False)
    calc = CHGNetCalculator(model=model, use_device=device)
    ident = {
        "name": "CHGNet",
        "version": getattr(chgnet, "__version__", "unknown"),
        "model": str(getattr(model, "version", "0.3.0")),
        "torch": torch.__version__,
        "threads": int(torch.get_num_threads()),
        "reference": "Deng et al. 2023, Nat. Mach. Intell. 5, 1031",
    }
    return calc, ident


def _density(atoms: Atoms) -> float:
    return float(np.sum(atoms.get_masses()) / atoms.get_volume() * _AMU_PER_A3_TO_G_CM3)


def _atomic_write_json(path: Path, obj: dict) -> None:
    """Write JSON next to ``path`` and rename (no half-written checkpoint after an interrupt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _resolve_potential(potential) -> tuple[Any, dict]:
    if isinstance(potential, str):
        if potential.lower() != "chgnet":
            raise ValueError(f"potential={potential!r} is not known; give 'chgnet' or (calculator, identity dict)")
        return chgnet_potential()
    if isinstance(potential, tuple) and len(potential) == 2 and isinstance(potential[1], Mapping):
        calc, ident = potential
        if "name" not in ident:
            raise ValueError("the potential's identity dict must hold at least 'name' (and 'version')")
        return calc, dict(ident)
    raise TypeError(
        f"potential={potential!r} must be 'chgnet' or a tuple (ASE calculator, {{'name': ..., 'version': ...}})"
    )


def melt_quench(
    atoms: Atoms,
    *,
    potential: Any = "chgnet",
    protocol: Protocol | None = None,
    seed: int,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    **overrides,
) -> Atoms:
    """Melt, quench and anneal a periodic model under NPT (then optionally minimise) so that its density is an output.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic starting model (e.g. a rigid-unit packing); not modified.
    potential : "chgnet" or tuple (calculator, dict)
        "chgnet" (:func:`chgnet_potential`) or any ASE calculator with stress, with an identity dict holding
        ``name`` and ``version``.
    protocol : Protocol or None
        Temperatures, times, rate and barostat settings; ``Protocol()`` by default.
    seed : int
        Seeds the initial Maxwell–Boltzmann velocities and the Langevin noise.
    progress : bool
        Show a tqdm bar over all MD steps.
    checkpoint : path or None
        JSON checkpoint file, written atomically every ``checkpoint_every`` steps; if it exists (from the same
        start, protocol and seed) the run continues from it. Removed after a finished run.
    checkpoint_every : int
        Steps between checkpoint writes.
    **overrides
        Protocol fields (``t_melt=…, quench_rate=…, t_final=…, pressure=…, melt_time=…, npt_time=…,
        timestep=…``) replacing those of ``protocol``.

    Returns
    -------
    ase.Atoms
        Relaxed model (cell changed by the barostat, velocities dropped). ``info["relax"]`` holds the protocol,
        the steps per stage, seed, potential identity, ``density_g_cm3`` (after the minimisation if any, else
        the mean of the anneal's second half), ``npt_density_g_cm3`` and ``npt_density_std_g_cm3`` (anneal),
        ``final_density_g_cm3`` (last frame), ``energy_eV_per_atom`` (potential energy of the last frame),
        ``energy_mean_eV_per_atom`` (second half of the anneal), ``minimise_steps_taken``,
        ``max_force_eV_per_A``, ``start_density_g_cm3``, ``wall_time_s`` and the number of atoms;
        ``info["density_g_cm3"]`` is the relaxed density.
    """
    from ase.md.langevin import Langevin
    from ase.md.nptberendsen import NPTBerendsen
    from tqdm.auto import tqdm

    if not isinstance(atoms, Atoms) or not np.all(atoms.pbc) or atoms.cell.volume <= 0:
        raise ValueError("atoms must be a periodic ase.Atoms with a 3-D cell (pbc True on all axes)")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed={seed!r} must be an int")
    if not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive int (steps)")
    base = protocol if protocol is not None else Protocol()
    bad = set(overrides) - set(asdict(base))
    if bad:
        raise TypeError(f"unknown protocol field(s) {sorted(bad)}; valid: {sorted(asdict(base))}")
    overrides = {k: (int(v) if k == "minimise_steps" else float(v)) for k, v in overrides.items()}
    proto = Protocol(**{**asdict(base), **overrides})
    _check_protocol(proto)
    calc, ident = _resolve_potential(potential)

    n_melt, n_quench, n_npt = proto.n_steps()
    total = n_melt + n_quench + n_npt
    work = atoms.copy()
    work.info = {}
    for key in list(work.arrays):
        if key not in ("numbers", "positions"):
            del work.arrays[key]
    start_density = _density(work)
    fingerprint = {
        "numbers_sha": int(np.sum(work.numbers * np.arange(1, len(work) + 1)) % 2_147_483_647),
        "n_atoms": len(work),
        "protocol": asdict(proto),
        "seed": int(seed),
        "potential": ident.get("name"),
    }
    rng = np.random.default_rng(int(seed))
    step0 = 0
    samples: list[tuple[float, float]] = []  # (density, energy per atom) over the anneal's second half
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and ckpt.exists():
        state = json.loads(ckpt.read_text(encoding="utf-8"))
        if state.get("fingerprint") != fingerprint:
            raise ValueError(
                f"checkpoint={str(ckpt)!r} belongs to another run (start, protocol, seed or potential differ); "
                "delete it or give another path"
            )
        work.set_cell(np.array(state["cell"]), scale_atoms=False)
        work.set_positions(np.array(state["positions"]))
        work.set_momenta(np.array(state["momenta"]))
        rng.bit_generator.state = state["rng_state"]
        step0 = int(state["step"])
        samples = [tuple(s) for s in state["samples"]]
    else:
        m = work.get_masses()[:, None]
        p = rng.standard_normal((len(work), 3)) * np.sqrt(m * units.kB * proto.t_melt)  # Maxwell–Boltzmann
        work.set_momenta(p - m * (p.sum(axis=0) / m.sum()))  # no centre-of-mass drift
    work.calc = calc

    dt = proto.timestep * units.fs
    p_au = proto.pressure * units.GPa
    comp_au = proto.compressibility / units.GPa

    def make(stage: str):
        if stage == "melt":
            return Langevin(
                work, dt, temperature_K=proto.t_melt, friction=proto.friction / units.fs, rng=rng, fixcm=False
            )
        return NPTBerendsen(
            work,
            dt,
            temperature_K=proto.t_melt if stage == "quench" else proto.t_final,
            pressure_au=p_au,
            taut=proto.taut * units.fs,
            taup=proto.taup * units.fs,
            compressibility_au=comp_au,
        )

    def stage_of(step: int) -> str:
        return "melt" if step < n_melt else ("quench" if step < n_melt + n_quench else "anneal")

    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step0, disable=not progress, desc="melt-quench", unit="step", leave=False)
    step = step0
    try:
        while step < total:
            stage = stage_of(step)
            dyn = make(stage)
            end = {"melt": n_melt, "quench": n_melt + n_quench, "anneal": total}[stage]
            while step < end:
                if stage == "quench":
                    frac = (step - n_melt + 1) / max(n_quench, 1)
                    dyn.set_temperature(temperature_K=proto.t_melt + frac * (proto.t_final - proto.t_melt))
                dyn.run(1)
                step += 1
                if stage == "anneal" and step > n_melt + n_quench + n_npt // 2:
                    samples.append((_density(work), float(work.get_potential_energy()) / len(work)))
                bar.update(1)
                if ckpt is not None and (step % checkpoint_every == 0 or step == total):
                    _atomic_write_json(
                        ckpt,
                        {
                            "fingerprint": fingerprint,
                            "step": step,
                            "cell": work.cell.array.tolist(),
                            "positions": work.positions.tolist(),
                            "momenta": work.get_momenta().tolist(),
                            "rng_state": rng.bit_generator.state,
                            "samples": samples,
                        },
                    )
    finally:
        bar.close()
    npt_density = _density(work)
    n_min = 0
    if proto.minimise_steps > 0:
        from ase.filters import FrechetCellFilter
        from ase.optimize import FIRE

        work.set_momenta(np.zeros((len(work), 3)))
        filt = FrechetCellFilter(work, hydrostatic_strain=True, scalar_pressure=p_au)
        opt = FIRE(filt, logfile=None)
        opt.run(fmax=proto.fmax, steps=proto.minimise_steps)
        n_min = int(opt.get_number_of_steps())
    wall = time.perf_counter() - t0

    energy = float(work.get_potential_energy()) / len(work)
    out = Atoms(numbers=work.numbers, positions=work.positions, cell=work.cell, pbc=True)
    out.wrap()
    dens = np.array([s[0] for s in samples]) if samples else np.array([_density(out)])
    ener = np.array([s[1] for s in samples]) if samples else np.array([energy])
    out.info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool, dict, list))}
    out.info["relax"] = {
        "protocol": asdict(proto),
        "steps": {"melt": n_melt, "quench": n_quench, "anneal": n_npt},
        "thermostat": "Langevin (melt), Berendsen (quench, anneal)",
        "barostat": "Berendsen isotropic (quench, anneal)",
        "seed": int(seed),
        "potential": ident,
        "n_atoms": len(out),
        "start_density_g_cm3": start_density,
        "npt_density_g_cm3": float(dens.mean()),
        "npt_density_std_g_cm3": float(dens.std()),
        "npt_last_density_g_cm3": npt_density,
        "minimise_steps_taken": n_min,
        "max_force_eV_per_A": float(np.max(np.linalg.norm(work.get_forces(), axis=1))),
        "density_g_cm3": _density(out) if proto.minimise_steps > 0 else float(dens.mean()),
        "final_density_g_cm3": _density(out),
        "energy_eV_per_atom": energy,
        "energy_mean_eV_per_atom": float(ener.mean()),
        "wall_time_s": wall,
        "resumed_at_step": step0,
    }
    out.info["density_g_cm3"] = out.info["relax"]["density_g_cm3"]
    if ckpt is not None and ckpt.exists():
        ckpt.unlink()
    return out


def _pressure_gpa(atoms: Atoms) -> float:
    """Instantaneous virial pressure [GPa] (no kinetic term: a minimised, static structure)."""
    return float(-np.trace(atoms.get_stress(voigt=False)) / 3.0 / units.GPa)


def minimise(
    atoms: Atoms,
    *,
    potential: Any = "chgnet",
    pressure: float = 0.0,
    fmax: float = 0.05,
    p_tol: float = 0.1,
    max_steps: int = 1500,
    cell_factor: float = 10.0,
) -> Atoms:
    """Converged 0 K minimisation of positions and an isotropic cell strain at ``pressure`` (FIRE).

    The inherent structure of a quenched model: the energy (enthalpy at ``pressure``) is minimised over the
    atom positions and one isotropic cell strain (ASE ``UnitCellFilter(hydrostatic_strain=True)``; the linear strain
    parametrisation is enough for an isotropic strain of a few per cent and needs no matrix exponentials) until
    *both* the largest atomic force is below ``fmax`` and the residual virial pressure is within ``p_tol`` of
    ``pressure`` — the filter's own convergence test mixes the two (its cell "force" is the stress times
    volume per atom, ≈ 0.7 GPa for 0.05 eV at ≈ 11 Å³/atom), so the two are checked separately after every step.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic model (not modified); its ``info`` is copied.
    potential : "chgnet" or (calculator, identity dict)
        As in :func:`melt_quench`.
    pressure : float  [GPa]
        Target pressure.
    fmax : float  [eV/Å]
        Force convergence.
    p_tol : float  [GPa]
        Pressure convergence |P − pressure|.
    max_steps : int
        Bound on FIRE steps (the result says whether it converged within it).
    cell_factor : float
        Scale of the strain coordinate (ASE's default is the atom count). With it, the strain mode is
        ≈ (N²/(V·B))⁻¹ as stiff as an atomic one would need (V·B ≈ 200 eV for 100 atoms at B ≈ 30 GPa): ~100×
        softer than the atoms, and FIRE crawls along it; ≈ √(V·B/k) ≈ 6–10 (k ≈ 2–5 eV/Å², an atomic
        stiffness) makes the two alike.

    Returns
    -------
    ase.Atoms
        Minimised copy; ``info["minimisation"]`` holds the criteria, ``steps``, ``converged``, the pressure
        [GPa], largest force [eV/Å], density [g/cm³] and energy [eV/atom] before and after, the potential's
        identity, the wall and process CPU time [s]; ``info["density_g_cm3"]`` is the new density.
    """
    from ase.filters import UnitCellFilter
    from ase.optimize import FIRE

    for name, v in (("fmax", fmax), ("p_tol", p_tol)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name}={v!r} must be a positive finite number ({'eV/Å' if name == 'fmax' else 'GPa'})")
    if not (isinstance(max_steps, (int, np.integer)) and max_steps >= 1):
        raise ValueError(f"max_steps={max_steps!r} must be an int >= 1")
    if not (isinstance(pressure, (int, float)) and math.isfinite(pressure)):
        raise ValueError(f"pressure={pressure!r} GPa must be finite")
    calc, ident = _resolve_potential(potential)
    work = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    work.calc = calc

    def state() -> dict:
        return {
            "pressure_GPa": _pressure_gpa(work),
            "max_force_eV_per_A": float(np.max(np.linalg.norm(work.get_forces(), axis=1))),
            "density_g_cm3": _density(work),
            "energy_eV_per_atom": float(work.get_potential_energy()) / len(work),
        }

    def done(st: dict) -> bool:
        return st["max_force_eV_per_A"] < fmax and abs(st["pressure_GPa"] - pressure) < p_tol

    t0, c0 = time.perf_counter(), time.process_time()
    before = state()
    st, steps = before, 0
    if not done(st):
        filt = UnitCellFilter(
            work, hydrostatic_strain=True, scalar_pressure=pressure * units.GPa, cell_factor=cell_factor
        )
        opt = FIRE(filt, logfile=None)
        for _ in opt.irun(fmax=1e-12, steps=max_steps):
            steps = int(opt.get_number_of_steps())
            st = state()
            if steps > 0 and done(st):
                break
    out = Atoms(numbers=work.numbers, positions=work.positions, cell=work.cell, pbc=True)
    out.wrap()
    for key, arr in atoms.arrays.items():
        if key not in ("numbers", "positions"):
            out.new_array(key, np.array(arr))
    out.info = json.loads(json.dumps(atoms.info, default=str))
    out.info["minimisation"] = {
        "method": "FIRE over positions + isotropic cell strain (ASE UnitCellFilter)",
        "criteria": {"fmax_eV_per_A": float(fmax), "p_tol_GPa": float(p_tol), "pressure_GPa": float(pressure)},
        "max_steps": int(max_steps),
        "cell_factor": float(cell_factor),
        "steps": steps,
        "converged": bool(done(st)),
        "before": before,
        "after": st,
        "potential": ident,
        "wall_time_s": time.perf_counter() - t0,
        "cpu_time_s": time.process_time() - c0,
    }
    out.info["density_g_cm3"] = st["density_g_cm3"]
    return out


# --------------------------------------------------------------------------------------------------------------
# shipped library
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One relaxed-model family of the shipped library.

    Attributes
    ----------
    kind : {"type1", "type2", "electrolyte"}
        What it models.
    units : dict
        Unit fractions for :func:`structures.amorphous.amorphous` (type1/type2); empty for electrolytes.
    electrolyte : str
        Name for :func:`structures.electrolyte_presets.study_electrolyte` (electrolytes only).
    n_atoms : int
        Target size of the start.
    start_density : float  [g/cm³]
        Density of the rigid start (the relaxation changes it).
    protocol : Protocol
        Melt–quench–NPT settings.
    description : str
        One line for tables.
    """

    kind: str
    units: dict = field(default_factory=dict)
    electrolyte: str = ""
    n_atoms: int = 100
    start_density: float = 2.0
    protocol: Protocol = field(default_factory=Protocol)
    description: str = ""


#: Inorganic melts (LiF melts at 1121 K, Li₂SO₄ at 1132 K, Li₂O at 1711 K). The CHGNet budget of this machine
#: (≈ 7 CPU-ms per atom and step, see bench/relax.py, on 2 cores shared by many jobs) allows only a very fast
#: quench of ~100-atom models: 0.1 ps at 1500 K, 14 000 K/ps (0.1 ps), 0.05 ps NPT at 100 K, then a
#: 0-pressure minimisation of positions and cell (the inherent structure), whose density is the reported one.
_INORGANIC = Protocol(
    t_melt=1500.0, melt_time=0.1, quench_rate=14000.0, t_final=100.0, npt_time=0.05, timestep=2.0, taup=100.0,
    minimise_steps=75, fmax=0.1,
)  # fmt: skip
#: Electrolytes are liquids already: a mild 500 K "melt" (below decomposition), 1 fs steps for the H atoms.
_LIQUID = Protocol(
    t_melt=500.0, melt_time=0.05, quench_rate=8000.0, t_final=100.0, npt_time=0.025, timestep=1.0, taup=100.0,
    minimise_steps=75, fmax=0.1,
)  # fmt: skip

#: The shipped library: name → spec. C-free Type 1 candidates span LiF-, Li₂O- and Li₂S-rich mixtures and
#: ones with polyatomic SOₓ / N–S–O (FSI⁻-fragment) units; ``type1_default`` is
#: :data:`structures.amorphous.TYPE1_DEFAULT_UNITS`, ``type2_matrix`` :data:`structures.amorphous.TYPE2_DEFAULT_UNITS`.
LIBRARY: dict = {
    "type1_lif_rich": ModelSpec(
        kind="type1",
        units={"F-": 0.60, "O^2-": 0.20, "SO4^2-": 0.20},
        start_density=2.2,
        protocol=_INORGANIC,
        description="LiF-rich: F⁻ 0.6, O²⁻ 0.2, SO₄²⁻ 0.2",
    ),
    "type1_li2o_rich": ModelSpec(
        kind="type1",
        units={"O^2-": 0.55, "F-": 0.20, "SO3^2-": 0.25},
        start_density=2.0,
        protocol=_INORGANIC,
        description="Li₂O-rich: O²⁻ 0.55, F⁻ 0.2, SO₃²⁻ 0.25",
    ),
    "type1_li2s_rich": ModelSpec(
        kind="type1",
        units={"S^2-": 0.55, "F-": 0.25, "SO4^2-": 0.20},
        start_density=1.8,
        protocol=_INORGANIC,
        description="Li₂S-rich: S²⁻ 0.55, F⁻ 0.25, SO₄²⁻ 0.2",
    ),
    "type1_nso": ModelSpec(
        kind="type1",
        units={"F-": 0.35, "O^2-": 0.15, "NSO2F^2-": 0.25, "SO2F-": 0.25},
        start_density=2.0,
        protocol=_INORGANIC,
        description="N–S–O (FSI⁻ fragments): F⁻ 0.35, O²⁻ 0.15, NSO₂F²⁻ 0.25, SO₂F⁻ 0.25",
    ),
    "type1_default": ModelSpec(
        kind="type1",
        units={"F-": 0.35, "O^2-": 0.20, "S^2-": 0.15, "SO3^2-": 0.15, "SO4^2-": 0.15},
        start_density=2.1,
        protocol=_INORGANIC,
        description="mixed (TYPE1_DEFAULT_UNITS): F⁻, O²⁻, S²⁻, SO₃²⁻, SO₄²⁻",
    ),
    "type2_matrix": ModelSpec(
        kind="type2",
        units={"F-": 0.40, "O^2-": 0.20, "SO3^2-": 0.20, "SO4^2-": 0.20},
        start_density=2.1,
        protocol=_INORGANIC,
        description="Type 2 matrix (TYPE2_DEFAULT_UNITS): F⁻ 0.4, O²⁻ 0.2, SO₃²⁻ 0.2, SO₄²⁻ 0.2",
    ),
    "electrolyte_hce": ModelSpec(
        kind="electrolyte",
        electrolyte="hce",
        n_atoms=120,
        protocol=_LIQUID,
        description="4.6 m LiFSI + 2.3 m LiTFSI in DME",
    ),
    "electrolyte_lifsi_1m": ModelSpec(
        kind="electrolyte",
        electrolyte="lifsi_1m",
        n_atoms=120,
        protocol=_LIQUID,
        description="1 M LiFSI in DME",
    ),
    "electrolyte_lipf6_1m": ModelSpec(
        kind="electrolyte",
        electrolyte="lipf6_1m",
        n_atoms=230,
        protocol=_LIQUID,
        description="1 M LiPF₆ in EC/DEC",
    ),
}


def _check_name(name: str) -> ModelSpec:
    if name not in LIBRARY:
        raise ValueError(f"name={name!r} is not a library model; valid names: {sorted(LIBRARY)}")
    return LIBRARY[name]


def start_structure(name: str, seed: int) -> Atoms:
    """The rigid-unit start of a library model (fast packing, no forces)."""
    spec = _check_name(name)
    if spec.kind == "electrolyte":
        from .electrolyte_presets import study_electrolyte

        return study_electrolyte(spec.electrolyte, n_atoms=spec.n_atoms, rng=seed, source="packing")
    from .amorphous import amorphous

    return amorphous(spec.units, spec.start_density, n_atoms=spec.n_atoms, relax=False, rng=seed)


def _model_path(name: str, seed: int, folder: Path | None = None) -> Path:
    return Path(folder or MODEL_DIR) / f"{name}_s{int(seed)}.extxyz"


def build_model(
    name: str,
    seed: int,
    *,
    potential: Any = "chgnet",
    folder: str | os.PathLike | None = None,
    progress: bool = True,
    checkpoint_every: int = 25,
) -> Atoms:
    """Build one library model (rigid start → :func:`melt_quench`) and write it to ``folder`` (atomically).

    Parameters
    ----------
    name : str
        Key of :data:`LIBRARY`.
    seed : int
        Seeds the start and the MD.
    potential : see :func:`melt_quench`
    folder : path or None
        Output folder; :data:`MODEL_DIR` by default. A checkpoint ``<file>.ckpt.json`` sits beside the output
        while running.
    progress : bool
        tqdm bar.
    checkpoint_every : int
        MD steps between checkpoint writes.

    Returns
    -------
    ase.Atoms
        The relaxed model with ``info`` keys ``model``, ``kind``, ``description``, ``composition`` (element
        counts), ``units`` (start unit counts), ``seed`` and ``relax`` (see :func:`melt_quench`).
    """
    spec = _check_name(name)
    start = start_structure(name, seed)
    path = _model_path(name, seed, None if folder is None else Path(folder))
    model = melt_quench(
        start,
        potential=potential,
        protocol=spec.protocol,
        seed=int(seed),
        progress=progress,
        checkpoint=path.with_suffix(".ckpt.json"),
        checkpoint_every=checkpoint_every,
    )
    comp: dict = {}
    for s in model.get_chemical_symbols():
        comp[s] = comp.get(s, 0) + 1
    info = {
        "model": name,
        "kind": spec.kind,
        "description": spec.description,
        "composition": comp,
        "units": start.info.get("units", start.info.get("counts", {})),
        "electrolyte": spec.electrolyte,
        "seed": int(seed),
        "start_builder": start.info.get("builder", ""),
        "density_g_cm3": model.info["density_g_cm3"],
        "relax": model.info["relax"],
    }
    model.info = info
    if "unit_id" in start.arrays:  # melt_quench keeps the atom order
        model.new_array("unit_id", np.asarray(start.arrays["unit_id"]))
    _write_model(path, model)
    return model


def _write_model(path: Path, atoms: Atoms) -> None:
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        out = atoms.copy()
        out.info = {"provenance": json.dumps(atoms.info, sort_keys=True, ensure_ascii=True)}
        write(tmp, out, format="extxyz")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shipped model is read by everyone
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def models_fingerprint() -> str:
    """SHA-256 (24 hex digits) of the shipped model files' names and bytes: anything built from them (e.g. cached
    library entries) is stale when it changes."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(MODEL_DIR.glob("*.extxyz")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:24]


def model_names() -> list[str]:
    """Library models that have at least one shipped file, sorted."""
    return sorted({p.name.rsplit("_s", 1)[0] for p in MODEL_DIR.glob("*.extxyz")})


def model_seeds(name: str) -> list[int]:
    """Seeds of the shipped files of one model, sorted."""
    _check_name(name)
    return sorted(int(p.stem.rsplit("_s", 1)[1]) for p in MODEL_DIR.glob(f"{name}_s*.extxyz"))


def load_model(name: str, seed: int | None = None) -> Atoms:
    """A shipped relaxed model.

    Parameters
    ----------
    name : str
        Key of :data:`LIBRARY` (see :func:`model_names` for the ones shipped).
    seed : int or None
        Which seed; None picks the lowest shipped one.

    Returns
    -------
    ase.Atoms
        Periodic relaxed model; ``info`` is its provenance (see :func:`build_model`).
    """
    from ase.io import read

    _check_name(name)
    seeds = model_seeds(name)
    if not seeds:
        raise ValueError(f"no shipped file for model {name!r}; build it with `python -m structures.relax build`")
    if seed is None:
        seed = seeds[0]
    if int(seed) not in seeds:
        raise ValueError(f"seed={seed!r} of model {name!r} is not shipped; shipped seeds: {seeds}")
    atoms = read(_model_path(name, int(seed)), format="extxyz")
    info = json.loads(atoms.info.pop("provenance"))
    atoms.info = info
    atoms.pbc = True
    if "unit_id" not in atoms.arrays:
        # files written without it: the seeded start is deterministic and MD keeps the atom order
        start = start_structure(name, int(seed))
        if start.get_chemical_symbols() != atoms.get_chemical_symbols():
            raise ValueError(f"model {name!r} seed {seed}: its start no longer matches the file; rebuild it")
        atoms.new_array("unit_id", np.asarray(start.arrays["unit_id"]))
    return atoms


def _mass_density(atoms: Atoms) -> float:
    return _density(atoms)


def _cube_operations(cubic: bool) -> np.ndarray:
    """Signed permutation matrices: the 48 operations of the cube's point group (proper and improper), or only the
    8 axis reflections for a box that is not cubic (they map any orthorhombic cell onto itself)."""
    import itertools

    perms = list(itertools.permutations(range(3))) if cubic else [(0, 1, 2)]
    ops = []
    for p in perms:
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), p] = signs
            ops.append(m)
    return np.stack(ops)


def _wrap_whole_units(frac: np.ndarray, unit_id) -> np.ndarray:
    """Fractional coordinates wrapped into the cell unit by unit: each unit (molecule or polyatomic ion) is made
    whole by the minimum image about its first atom and moved by the lattice vector that brings its centroid
    into [0, 1)³, so no unit is cut at the cell faces (its atoms may stick out by up to the unit's radius)."""
    uid = np.arange(len(frac)) if unit_id is None else np.asarray(unit_id)
    _, first, inv = np.unique(uid, return_index=True, return_inverse=True)
    anchor = frac[first][inv]
    d = frac - anchor
    x = anchor + d - np.round(d)
    cnt = np.bincount(inv)
    cen = np.stack([np.bincount(inv, weights=x[:, c]) for c in range(3)], axis=1) / cnt[:, None]
    return x - np.floor(cen)[inv]


def relaxed_seeds(name: str, *, density: float | None = None) -> list[Atoms]:
    """Every shipped seed of a relaxed model, each its own periodic cell (untiled), optionally rescaled to a density.

    For quantities of a periodic model that must not see its period — a Debye I(Q) with pair distances ≤ L/2 of
    the model's own cell — evaluate each seed on its own and average (seed noise falls as 1/√n_seeds).

    Parameters
    ----------
    name : str
        Key of :data:`LIBRARY` with shipped files.
    density : float or None  [g/cm³]
        None keeps each seed's relaxed density; a value rescales every seed isotropically to it.

    Returns
    -------
    list of ase.Atoms
        In seed order; ``info`` as :func:`load_model` plus ``density_relaxed`` [g/cm³] and ``linear_scale``.
    """
    out = []
    for seed in model_seeds(name):
        a = load_model(name, seed)
        rho0 = _density(a)
        s = 1.0 if density is None else (rho0 / _check_density(density)) ** (1.0 / 3.0)
        if s != 1.0:
            a.set_cell(a.cell.array * s, scale_atoms=True)
        a.info.update({"density_relaxed": rho0, "linear_scale": float(s)})
        out.append(a)
    if not out:
        raise ValueError(f"no shipped file for model {name!r}; shipped: {model_names()}")
    return out


def pooled_density(name: str) -> float:
    """Pooled relaxed density Σm/ΣV of a model's shipped seeds [g/cm³] (what a seed-averaged entry stands for).

    Parameters
    ----------
    name : str
        Key of :data:`LIBRARY` with shipped files.
    """
    return _pooled_density([load_model(name, s) for s in model_seeds(name)])


def _pooled_density(models: list[Atoms]) -> float:
    """Σm/ΣV of periodic cells [g/cm³]."""
    mass = sum(float(np.sum(m.get_masses())) for m in models)
    return mass / sum(m.get_volume() for m in models) * _AMU_PER_A3_TO_G_CM3


def _check_density(density) -> float:
    d = float(density)
    if not (math.isfinite(d) and d > 0):
        raise ValueError(f"density={density!r} g/cm³ must be positive and finite")
    return d


def _mosaic_tiles(name: str, first_seed: int, density: float | None) -> tuple[list[Atoms], float, float]:
    """The tiles of a mosaic: the shipped seeds in cyclic order from ``first_seed``, each rescaled to one common
    density (the given one, else the seeds' pooled relaxed density Σm/ΣV) so that their cells coincide.

    Seeds whose composition differs from the first one's (their cells could not coincide) are left out.
    Returns (tiles, common density [g/cm³], pooled relaxed density [g/cm³])."""
    seeds = model_seeds(name)
    k = seeds.index(first_seed)
    models = [load_model(name, s) for s in seeds[k:] + seeds[:k]]
    key = sorted(models[0].numbers.tolist())
    models = [m for m in models if sorted(m.numbers.tolist()) == key and len(m) == len(models[0])]
    mass = float(np.sum(models[0].get_masses()))
    rho_pool = _pooled_density(models)
    rho = rho_pool if density is None else _check_density(density)
    v = mass / rho * _AMU_PER_A3_TO_G_CM3  # Å³ of every tile
    for m in models:
        m.set_cell(m.cell.array * (v / m.get_volume()) ** (1.0 / 3.0), scale_atoms=True)
    return models, rho, rho_pool


def _mosaic(tiles: list[Atoms], reps, gen: np.random.Generator) -> Atoms:
    """A reps[0]×reps[1]×reps[2] mosaic of periodic tiles without a common period.

    Tile t (in C order of its grid index) is ``tiles[t % len(tiles)]`` transformed by a random operation of the
    cube's point group (:func:`_cube_operations`; exact for a periodic cube: the operated tile is again a periodic
    structure on the same cell) and a random periodic shift (uniform in the cell), its units kept whole
    (:func:`_wrap_whole_units`). The result is periodic with the mosaic's box; unit ids are unique across tiles.
    """
    cell = tiles[0].cell.array
    lengths = np.diag(cell)
    if not np.allclose(cell, np.diag(lengths)) or not all(np.allclose(t.cell.array, cell) for t in tiles):
        raise ValueError("mosaic tiles must share one orthorhombic cell")
    ops = _cube_operations(bool(np.allclose(lengths, lengths[0], rtol=1e-9)))
    numbers, positions, uids = [], [], []
    uid_next = 0
    for t, index in enumerate(np.ndindex(*reps)):
        tile = tiles[t % len(tiles)]
        op = ops[int(gen.integers(len(ops)))]
        shift = gen.random(3)
        uid = np.asarray(tile.arrays["unit_id"]) if "unit_id" in tile.arrays else np.arange(len(tile))
        frac = _wrap_whole_units(tile.get_scaled_positions(wrap=False) @ op.T + shift, uid)
        positions.append((frac + np.asarray(index)) * lengths)
        numbers.append(tile.numbers)
        _, inv = np.unique(uid, return_inverse=True)
        uids.append(inv + uid_next)
        uid_next += int(inv.max()) + 1
    out = Atoms(
        numbers=np.concatenate(numbers),
        positions=np.concatenate(positions),
        cell=np.diag(lengths * np.asarray(reps)),
        pbc=True,
    )
    out.new_array("unit_id", np.concatenate(uids))
    out.new_array("mosaic_tile", np.repeat(np.arange(len(numbers)), [len(n) for n in numbers]))
    return out


def _contact_pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom pairs (i, j) of a periodic orthorhombic box closer than ``cutoff`` [Å] (minimum image) and their
    distances [Å]."""
    from scipy.spatial import cKDTree

    box = atoms.cell.lengths()
    pos = atoms.positions - np.floor(atoms.positions / box) * box
    pos = np.minimum(pos, np.nextafter(box, 0))  # cKDTree's periodic box is half-open
    pairs = cKDTree(pos, boxsize=box).query_pairs(float(cutoff), output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    d = pos[i] - pos[j]
    d -= np.round(d / box) * box
    return i, j, np.linalg.norm(d, axis=1)


def _mosaic_contact_table(tiles: list[Atoms], elements: list[str]) -> np.ndarray:
    """Contact distances [Å] for the seams, per element pair: the rigid packing's table
    (:func:`structures.amorphous.min_distance_table`), lowered to the shortest inter-unit distance that the relaxed
    tiles themselves contain for that pair (the relaxation brings some contacts, e.g. Li–O, below the packing's
    conservative values; a seam contact is unphysical only if it is closer than anything in the relaxed bulk)."""
    from .amorphous import min_distance_table

    table = min_distance_table(elements)
    seen = np.full_like(table, np.inf)
    for t in tiles:
        kind = np.searchsorted(elements, t.get_chemical_symbols())
        uid = np.asarray(t.arrays["unit_id"]) if "unit_id" in t.arrays else np.arange(len(t))
        i, j, r = _contact_pairs(t, table.max())
        inter = uid[i] != uid[j]
        np.minimum.at(seen, (kind[i[inter]], kind[j[inter]]), r[inter])
    seen = np.minimum(seen, seen.T)
    return np.minimum(table, seen)


def _mosaic_seam_clashes(atoms: Atoms, table: np.ndarray, elements: list[str]) -> np.ndarray:
    """Unit pairs (i < j, rows) with an atom pair across a tile boundary (different ``mosaic_tile``) closer than
    ``table`` [Å] (element pairs in the order of ``elements``), minimum image in the mosaic's periodic box;
    sorted, unique."""
    kind = np.searchsorted(elements, atoms.get_chemical_symbols())
    i, j, r = _contact_pairs(atoms, table.max())
    tile, uid = np.asarray(atoms.arrays["mosaic_tile"]), np.asarray(atoms.arrays["unit_id"])
    bad = (tile[i] != tile[j]) & (r < table[kind[i], kind[j]])
    u = np.sort(np.stack([uid[i[bad]], uid[j[bad]]], axis=1), axis=1)
    return np.unique(u, axis=0).reshape(-1, 2)


def _mosaic_relax_seams(atoms: Atoms, tiles: list[Atoms]) -> tuple[Atoms, dict]:
    """Push apart the close contacts at the tile boundaries of a mosaic, keeping every unit rigid and every atom.

    The rigid-unit packing's soft overlap wall (:func:`structures._packing.pack`, rigid-body FIRE started from the
    mosaic's own unit centres and orientations) is minimised with the seams' contact table
    (:func:`_mosaic_contact_table`): inside a tile every inter-unit pair already satisfies it (the table is at most
    the tiles' own shortest contacts), so the relaxation acts at the seams, where unrelated structures meet with
    contacts closer than anything in the relaxed bulk, and spreads the overlap into the seams' gaps. The count,
    composition, box and hence density are unchanged; deterministic (FIRE has no random step). Returns the relaxed
    mosaic (units contiguous in ``unit_id`` order) and a record of the seam contacts before and after.
    """
    from . import _packing

    order = np.argsort(np.asarray(atoms.arrays["unit_id"]), kind="stable")
    atoms = atoms[order]
    uid = np.asarray(atoms.arrays["unit_id"])
    elements = sorted(set(atoms.get_chemical_symbols()))
    table = _mosaic_contact_table(tiles, elements)
    before = len(_mosaic_seam_clashes(atoms, table, elements))
    _, start, inv = np.unique(uid, return_index=True, return_inverse=True)
    cnt = np.bincount(inv)
    centre = np.stack([np.bincount(inv, weights=atoms.positions[:, c]) for c in range(3)], axis=1) / cnt[:, None]
    system = _packing.RigidSystem(
        box=atoms.cell.lengths().astype(float),
        body=np.ascontiguousarray(atoms.positions - centre[inv]),
        unit_start=np.append(start, len(atoms)).astype(np.int64),
        species=np.searchsorted(elements, atoms.get_chemical_symbols()).astype(np.int64),
        elements=tuple(elements),
        charge=np.zeros(len(atoms)),
    )
    rot = np.broadcast_to(np.eye(3), (len(cnt), 3, 3))
    new_centre, _, pos, summary = _packing.pack(
        system, table, np.random.default_rng(0), start=(centre, rot), margin=0.0
    )
    moved = np.linalg.norm(new_centre - centre, axis=1)
    out = atoms.copy()
    out.positions = pos
    record = {
        "seam_clashing_unit_pairs_before": before,
        "seam_clashing_unit_pairs_after": len(_mosaic_seam_clashes(out, table, elements)),
        "unit_shift_rms_A": float(np.sqrt(np.mean(moved**2))),
        "unit_shift_max_A": float(moved.max()),
        "fire_steps": summary["steps"],
    }
    return out, record


def relaxed_model(
    name: str,
    *,
    n_atoms: int | None = None,
    cell=None,
    density: float | None = None,
    rng=None,
    relax_seams: bool = True,
) -> Atoms:
    """A shipped relaxed model, optionally rescaled to a density, enlarged to a size or cut to a box.

    A box larger than one model is a **mosaic**, not a repeat: a plain repeat of a periodic ≈ 11 Å model is a
    crystal with that lattice (its Debye sum beyond L/2 and a multislice through it show the reciprocal lattice
    |n|/L, not the amorphous structure). Each tile of the mosaic is a shipped seed (cycling through the seeds from
    the one ``rng`` picks) transformed by a random operation of the cube's point group and a random periodic
    shift — exact for a periodic cube, so there is no interface inside a tile — with its molecules and ions kept
    whole. All tiles are rescaled to one density (``density``, else the seeds' pooled relaxed density Σm/ΣV) so
    that their cells coincide. The tile boundaries, where unrelated structures meet, are then relaxed
    (:func:`_mosaic_relax_seams`): rigid units are pushed apart by the packing's overlap wall until no inter-unit
    contact is closer than the packing's table or the tiles' own shortest contact per element pair, keeping every
    atom, the box and the density. Unrelaxed seams add small-angle scattering and pull the first I·Q maximum down by
    ≈ 0.03 Å⁻¹; relaxed, the probe-convolved first maximum at 2 mrad is within ≈ 0.003 Å⁻¹ of the single cells'
    for Type 2 and the HCE electrolyte and ≈ 0.010 Å⁻¹ above it for Type 1, and I(Q) at 0.05–0.15 Å⁻¹ is within
    ≈ 0.6 Å² per atom of theirs (docs/measurements.md). The (1/L, 0) Fourier component the seams leave is at the
    level of the amorphous speckle, far below a repeat's Bragg spots. Quantities that must not see the seams (the
    library's kinematic I(Q)) use the untiled seeds (:func:`relaxed_seeds`).

    Parameters
    ----------
    name : str
        Key of :data:`LIBRARY` with shipped files.
    n_atoms : int or None
        Target size: k = round((n_atoms/N)^(1/3)) ≥ 1 tiles per axis; k = 1 is the picked seed itself, k > 1 a
        k×k×k mosaic (periodic with its box; the count is k³·N).
    cell : array-like or None  [Å]
        Orthorhombic box (3 lengths): a mosaic covering it is cut to it after a seeded random shift; periodicity
        across the box faces is lost (a seam), the local structure and density are kept. Give at most one of
        ``n_atoms`` and ``cell``.
    density : float or None  [g/cm³]
        None keeps the relaxed density (the physical output). A value rescales all coordinates isotropically,
        ρ → density, which moves every SRO peak by (density/ρ)^(1/3) — a stated hypothesis, not physics.
    rng : numpy.random.Generator, int or None
        Picks the seed among the shipped ones, the mosaic's operations and shifts, and the cut's shift.
    relax_seams : bool
        Relax the mosaic's tile boundaries (default). The relaxation moves density systematically at planes L
        apart: the projected density's (1/L, 0) Fourier power rises from speckle level (≤ 5× the ring) to ≈ 7–17×
        (a repeat: ≈ 57×); at 1/L ≈ 0.09 Å⁻¹ it lies inside a 2 mrad bright-field disk. False keeps the raw seams.

    Returns
    -------
    ase.Atoms
        ``info`` holds the model's provenance plus ``source`` ("relaxed model <name> seed <s>", for a mosaic
        followed by its seeds), ``density_relaxed`` and ``density_g_cm3`` [g/cm³], ``repeats`` (tiles per axis),
        ``linear_scale`` and, for a mosaic, ``mosaic`` (seeds, tile length [Å], ``seams``: clashing unit pairs
        before/after, rms/max unit shift [Å], FIRE steps).
    """
    if n_atoms is not None and cell is not None:
        raise ValueError("give at most one of n_atoms and cell")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    seeds = model_seeds(name)
    if not seeds:
        raise ValueError(f"no shipped file for model {name!r}; shipped: {model_names()}")
    seed = seeds[int(gen.integers(len(seeds)))]
    base = load_model(name, seed)
    rho0 = _density(base)
    scale = 1.0
    if density is not None:
        scale = (rho0 / _check_density(density)) ** (1.0 / 3.0)
        base.set_cell(base.cell.array * scale, scale_atoms=True)
    reps = (1, 1, 1)
    if n_atoms is not None:
        if not isinstance(n_atoms, (int, np.integer)) or n_atoms < 1:
            raise ValueError(f"n_atoms={n_atoms!r} must be a positive int")
        k = max(1, int(round((n_atoms / len(base)) ** (1.0 / 3.0))))
        reps = (k, k, k)
    elif cell is not None:
        box = np.asarray(cell, dtype=float)
        if box.shape == (3, 3):
            box = np.diag(box)
        if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
            raise ValueError(f"cell={cell!r} must be 3 positive lengths [Å]")
        reps = tuple(int(math.ceil(b / L)) + 1 for b, L in zip(box, base.cell.lengths()))
    info = dict(base.info)
    source = f"relaxed model {name} seed {seed}"
    if reps == (1, 1, 1):
        out = base
    else:
        tiles, rho, rho0 = _mosaic_tiles(name, seed, density)
        out, seams = _mosaic(tiles, reps, gen), None
        if relax_seams:
            out, seams = _mosaic_relax_seams(out, tiles)
        del out.arrays["mosaic_tile"]
        used = [int(t.info["seed"]) for t in tiles]
        lengths = tiles[0].cell.lengths()
        scale = float((rho0 / rho) ** (1.0 / 3.0))
        source += f" (mosaic of {'×'.join(map(str, reps))} tiles of seeds {used}, random cube operations and shifts)"
        info["mosaic"] = {
            "seeds": used,
            "tile_length": float(lengths[0]),
            "operations": "cube point group",
            "seams": seams,
        }
        if cell is not None:
            pos = out.positions - gen.random(3) * lengths
            pos -= np.floor(pos / out.cell.lengths()) * out.cell.lengths()
            keep = np.all(pos < box, axis=1)
            uid = np.asarray(out.arrays["unit_id"])[keep]
            out = Atoms(numbers=out.numbers[keep], positions=pos[keep], cell=np.diag(box), pbc=True)
            out.new_array("unit_id", uid)
    info.update(
        {
            "source": source,
            "density_relaxed": rho0,
            "density_g_cm3": _density(out),
            "repeats": list(reps),
            "linear_scale": float(scale),
        }
    )
    out.info = info
    return out


def _main(argv=None) -> None:  # pragma: no cover  (long runs; exercised by hand)
    import argparse

    ap = argparse.ArgumentParser(prog="python -m structures.relax", description="build the shipped relaxed models")
    ap.add_argument("command", choices=["build", "minimise"], help="build: melt-quench; minimise: re-minimise shipped")
    ap.add_argument("--names", nargs="*", default=sorted(LIBRARY), help="library models (default: all)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--checkpoint-every", type=int, default=25)
    ap.add_argument("--out", default=str(MODEL_DIR))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-existing", action="store_true")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    for seed in a.seeds:
        for name in a.names:
            path = _model_path(name, seed, Path(a.out))
            if a.skip_existing and path.exists():
                continue
            if a.command == "minimise":
                if seed not in model_seeds(name):
                    continue
                m = minimise(load_model(name, seed))
                _write_model(path, m)
                r = m.info["minimisation"]
                print(
                    f"{name} seed {seed}: {r['steps']} steps, converged {r['converged']}, P "
                    f"{r['before']['pressure_GPa']:+.3f} → {r['after']['pressure_GPa']:+.3f} GPa, max|F| "
                    f"{r['before']['max_force_eV_per_A']:.3f} → {r['after']['max_force_eV_per_A']:.3f} eV/Å, density "
                    f"{r['before']['density_g_cm3']:.3f} → {r['after']['density_g_cm3']:.3f} g/cm³, "
                    f"{r['wall_time_s']:.0f} s wall, {r['cpu_time_s']:.0f} CPU-s",
                    flush=True,
                )
                continue
            m = build_model(name, seed, folder=a.out, progress=False, checkpoint_every=a.checkpoint_every)
            r = m.info["relax"]
            print(
                f"{name} seed {seed}: {r['n_atoms']} atoms, density {r['density_g_cm3']:.3f} g/cm³ "
                f"(start {r['start_density_g_cm3']:.3f}), E {r['energy_eV_per_atom']:.4f} eV/atom, "
                f"{r['wall_time_s']:.0f} s",
                flush=True,
            )


if __name__ == "__main__":  # pragma: no cover
    _main()
