"""Oracles for structures.sei_variants: presets at their density and neutral, carbon only where the hypothesis
puts it, rigid fragments intact after relaxation, the voltage → LiF-fraction law, and the Li₂O surface layer
thickness as a column property."""

from __future__ import annotations

import numpy as np
import pytest

from structures.electrolyte_presets import get_study_unit as get_unit
from structures.sei_variants import (
    SEI_VARIANTS,
    li2o_surface_layer,
    sei_variant,
    type1_between_grains,
    type2_at_voltage,
    type2_lif_fraction,
)

N_A = 6.02214076e23


@pytest.mark.parametrize("name", sorted(SEI_VARIANTS))
def test_variant_density_neutrality_and_carbon(name):
    atoms = sei_variant(name, n_atoms=400, rng=1)
    rho = atoms.get_masses().sum() / N_A / (atoms.get_volume() * 1e-24)
    assert rho == pytest.approx(SEI_VARIANTS[name].density, rel=1e-6)
    # neutrality: Li+ balances the anion charges unit by unit
    uid = atoms.arrays["unit_id"]
    sym = np.array(atoms.get_chemical_symbols())
    charge = 0.0
    for u in np.unique(uid):
        s = tuple(sym[uid == u])
        charge += next(get_unit(n).charge for n in list(SEI_VARIANTS[name].units) + ["Li+"] if get_unit(n).symbols == s)
    assert charge == pytest.approx(0.0, abs=1e-9)
    has_c = "C" in set(sym)
    assert has_c == (name != "hce")  # the HCE Type 1 is carbon-free (study's EELS); the 1 M SEIs are not


def test_carbonate_fragments_intact_after_relaxation():
    atoms = sei_variant("lipf6_1m", n_atoms=400, rng=2)
    uid = atoms.arrays["unit_id"]
    sym = np.array(atoms.get_chemical_symbols())
    cell = np.diag(atoms.cell.array)
    n = 0
    for u in np.unique(uid):
        idx = np.flatnonzero(uid == u)
        if tuple(sym[idx]) == ("C", "O", "O", "O"):  # CO3^2-: C–O 1.29 Å (carbonates 1.28–1.30 Å)
            for k in idx[1:]:
                d = atoms.positions[k] - atoms.positions[idx[0]]
                d -= cell * np.round(d / cell)
                assert np.linalg.norm(d) == pytest.approx(1.29, rel=0.05)
                n += 1
    assert n >= 3


def test_lif_fraction_law():
    assert type2_lif_fraction(0.0) == pytest.approx(0.05)
    assert type2_lif_fraction(0.75) == pytest.approx(0.025)
    assert type2_lif_fraction(2.0) == 0.0
    with pytest.raises(ValueError, match="voltage"):
        type2_lif_fraction(-0.1)
    a = type2_at_voltage(0.3, n_atoms=300, rng=1)
    assert a.info["lif_volume_fraction"] == pytest.approx(0.05 * (1 - 0.3 / 1.5))


def test_between_grains_is_denser_type1():
    a = type1_between_grains(n_atoms=300, rng=1)
    rho = a.get_masses().sum() / N_A / (a.get_volume() * 1e-24)
    assert rho == pytest.approx(2.1, rel=1e-6)


def test_li2o_layer_thickness():
    """O atoms only within the oxide thickness of each surface; the O areal density equals that of Li2O
    (4 O per a³, a = cryo lattice constant ≈ 4.6 Å) times two layers of 15 Å."""
    col = li2o_surface_layer(15.0, lamella_thickness=200.0, cell_xy=(23.0, 23.0))
    z = col.positions[:, 2]
    o = np.array(col.get_chemical_symbols()) == "O"
    assert np.all((z[o] < 15.0 + 1e-6) | (z[o] > 185.0 - 1e-6))
    a = col.info["layers"][0]
    assert a["phase"] == "Li2O"
    area = 23.0 * 23.0
    n_o_expected = 2 * 15.0 * area * 4 / 4.6**3
    assert o.sum() == pytest.approx(n_o_expected, rel=0.1)
    with pytest.raises(ValueError, match="oxide_thickness"):
        li2o_surface_layer(120.0, lamella_thickness=200.0)
