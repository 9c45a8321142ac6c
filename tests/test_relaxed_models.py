"""The shipped relaxed models (structures/models/*.extxyz): provenance, conservation, and the README table."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from structures import relax
from structures.units_library import get_unit

NAMES = relax.model_names()
README = Path(__file__).resolve().parents[1] / "README.md"


def _shipped():
    return [(n, s) for n in NAMES for s in relax.model_seeds(n)]


def test_at_least_one_model_is_shipped_and_packaged():
    assert NAMES, "no relaxed model shipped in structures/models"
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "models/*.extxyz" in text  # shipped with the package


@pytest.mark.parametrize("name, seed", _shipped())
def test_provenance_is_complete_and_consistent(name, seed):
    a = relax.load_model(name, seed)
    info, r = a.info, a.info["relax"]
    assert info["model"] == name and info["seed"] == seed and r["seed"] == seed
    assert r["potential"]["name"] == "CHGNet" and r["potential"]["version"] and r["potential"]["model"]
    for key in ("t_melt", "quench_rate", "t_final", "pressure", "timestep", "melt_time", "npt_time"):
        assert key in r["protocol"]
    assert r["protocol"]["pressure"] == 0.0 and r["protocol"]["t_final"] == 100.0
    # composition is what the file holds
    sym = a.get_chemical_symbols()
    assert info["composition"] == {s: sym.count(s) for s in set(sym)}
    # the stated density is mass / volume of the stored cell (the relaxed cell: density is an output)
    rho = float(np.sum(a.get_masses()) / a.get_volume() * 1.66053906660)
    assert info["density_g_cm3"] == pytest.approx(rho, rel=1e-9)
    assert r["density_g_cm3"] != pytest.approx(r["start_density_g_cm3"], rel=1e-3)  # it moved
    assert math.isfinite(r["energy_eV_per_atom"]) and r["energy_eV_per_atom"] < 0
    # charge neutrality of the start's units (Li⁺ balances every anion)
    if info["kind"] != "electrolyte":
        assert sum(c * get_unit(u).charge for u, c in info["units"].items()) == 0
        # and the units' atoms are the file's atoms
        count: dict = {}
        for u, c in info["units"].items():
            for s in get_unit(u).symbols:
                count[s] = count.get(s, 0) + c
        assert count == info["composition"]


def _minimisation_cases():
    return list(_shipped())


@pytest.mark.parametrize("name, seed", _minimisation_cases())
def test_shipped_model_is_the_converged_zero_pressure_minimum(name, seed):
    # the density is the potential's 0 GPa output: a converged minimisation over positions and cell is recorded,
    # its final state meets its own criteria, and the file is that final state
    a = relax.load_model(name, seed)
    m = a.info["minimisation"]
    c = m["criteria"]
    assert m["converged"] and c["pressure_GPa"] == 0.0 and m["steps"] <= m["max_steps"]
    assert abs(m["after"]["pressure_GPa"] - c["pressure_GPa"]) < c["p_tol_GPa"] <= 0.1
    assert m["after"]["max_force_eV_per_A"] < c["fmax_eV_per_A"] <= 0.05
    rho = float(np.sum(a.get_masses()) / a.get_volume() * 1.66053906660)
    assert m["after"]["density_g_cm3"] == pytest.approx(rho, rel=1e-9)
    # it started from the melt-quench's NPT output (that density is recorded in the protocol's own block) and
    # went downhill in enthalpy = energy at 0 GPa
    assert m["before"]["density_g_cm3"] == pytest.approx(a.info["relax"]["density_g_cm3"], rel=1e-9)
    assert m["after"]["energy_eV_per_atom"] <= m["before"]["energy_eV_per_atom"] + 1e-6
    assert m["potential"]["name"] == a.info["relax"]["potential"]["name"]


def _readme_rows():
    text = README.read_text(encoding="utf-8")
    rows = {}
    for m in re.finditer(r"^\| (\w+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.—]+) \|", text, flags=re.M):
        rows[(m.group(1), int(m.group(2)))] = (int(m.group(3)), float(m.group(4)), m.group(5))
    return rows


def test_readme_table_lists_every_shipped_model_with_its_density():
    rows = _readme_rows()
    for name, seed in _shipped():
        assert (name, seed) in rows, f"README table misses {name} seed {seed}"
        a = relax.load_model(name, seed)
        n, rho, _ = rows[(name, seed)]
        assert n == len(a)
        assert rho == pytest.approx(a.info["density_g_cm3"], abs=6e-4)


def _peaks(name, seed):
    """(first I·Q peak the README table states [Å⁻¹] or None for '—', the one the radial path measures now)."""
    from simkit.models import model_peaks

    _, _, q1 = _readme_rows()[(name, seed)]
    return (None if q1 == "—" else float(q1)), model_peaks(relax.load_model(name, seed))["q1"]


def _agree(stated, measured) -> bool:
    return not math.isfinite(measured) if stated is None else abs(measured - stated) <= 6e-4


def test_readme_first_peak_is_what_the_radial_path_measures():
    stated, measured = _peaks(*_shipped()[0])
    assert _agree(stated, measured), (stated, measured)


@pytest.mark.slow
@pytest.mark.parametrize("name, seed", _shipped())
def test_readme_first_peaks_all_models(name, seed):
    stated, measured = _peaks(name, seed)
    assert _agree(stated, measured), (stated, measured)


def test_relaxed_builder_tiles_the_seeds_and_keeps_their_density():
    from structures.amorphous import type1_sei

    big = type1_sei(n_atoms=8 * 99, rng=0)
    base = relax.load_model("type1_default", big.info["seed"])  # the shipped seed the builder picked
    assert len(big) % len(base) == 0 and big.info["source"].startswith("relaxed model type1_default")
    n_units = len(np.unique(base.arrays["unit_id"]))
    assert len(np.unique(big.arrays["unit_id"])) == n_units * len(big) // len(base)  # unique across tiles
    # a mosaic of all seeds, each at their pooled density Σm/ΣV (same composition, so mass and volume add)
    seeds = relax.relaxed_seeds("type1_default")
    pooled = sum(float(np.sum(a.get_masses())) for a in seeds) / sum(a.get_volume() for a in seeds) * 1.66053906660
    assert big.info["mosaic"]["seeds"][0] == base.info["seed"] and len(big.info["mosaic"]["seeds"]) == len(seeds)
    assert big.info["density_g_cm3"] == pytest.approx(pooled, rel=1e-9)
    one = type1_sei(n_atoms=99, rng=0)  # one tile: the picked seed itself, at its own relaxed density
    assert one.info["density_g_cm3"] == pytest.approx(float(one.info["density_relaxed"]), rel=1e-12)
    dense = type1_sei(n_atoms=99, density=2.2, rng=0)
    rho = float(np.sum(dense.get_masses()) / dense.get_volume() * 1.66053906660)
    assert rho == pytest.approx(2.2, rel=1e-9)
    fast = type1_sei(n_atoms=400, source="packing", rng=0)
    assert fast.info["source"].startswith("rigid-unit packing")


def test_library_cache_key_follows_the_shipped_models(tmp_path, monkeypatch):
    # amorphous library entries are built from the shipped models: a changed model set must change their cache key
    # (and only theirs), so a cache built before new seeds were shipped is not reused
    import shutil

    from simkit.geometry import DetectorGeometry
    from simkit.library import EntrySpec, entry_key
    from simkit.nbed import Probe

    geom, probe = DetectorGeometry(shape=(32, 32), pixel_size=0.02), Probe()
    amorph, crystal = EntrySpec(kind="electrolyte", params={"n_atoms": 300}), EntrySpec(kind="vacuum")
    before = entry_key(amorph, probe, geom, 40.0), entry_key(crystal, probe, geom, 40.0)
    files = sorted(relax.MODEL_DIR.glob("*.extxyz"))
    for p in files[1:]:
        shutil.copy(p, tmp_path / p.name)
    monkeypatch.setattr(relax, "MODEL_DIR", tmp_path)
    after = entry_key(amorph, probe, geom, 40.0), entry_key(crystal, probe, geom, 40.0)
    assert after[0] != before[0] and after[1] == before[1]
    shutil.copy(files[0], tmp_path / files[0].name)
    assert entry_key(amorph, probe, geom, 40.0) == before[0]  # same files, same key


@pytest.mark.parametrize("name", sorted(relax.LIBRARY))
def test_every_library_model_ships_three_seeds(name):
    assert len(relax.model_seeds(name)) >= 3, relax.model_seeds(name)
