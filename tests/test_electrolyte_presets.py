"""Oracles for structures.electrolyte_presets: compositions from molarity/molality with independent arithmetic,
mass/volume = density, molecules intact (bond lengths within 5 % of the literature values typed here), and the
geometry of the new units (planar EC ring, octahedral PF6-)."""

from __future__ import annotations

import numpy as np
import pytest

from structures.electrolyte_presets import (
    ELECTROLYTES,
    STUDY_UNITS,
    counts_from_molarity,
    get_study_unit,
    molarity_composition,
    study_electrolyte,
    study_units,
)
from structures.units_library import get_unit as library_unit

N_A = 6.02214076e23
# molar masses [g/mol] from standard atomic weights (C 12.011, H 1.008, O 15.999, F 18.998, N 14.007, S 32.06,
# P 30.974, Li 6.94), typed here independently of the code
M = {"DME": 90.12, "EC": 88.06, "DEC": 118.13, "LiFSI": 187.07, "LiPF6": 151.90, "LiTFSI": 287.08}


def _unit_counts(atoms):
    return dict(atoms.info["units"])


def test_lifsi_1m_composition_from_molarity():
    # ideal mixing: 1 mol LiFSI takes 100 cm³; DME (0.8683 g/cm³) fills 900 cm³ of the litre
    m_dme = 900 * 0.8683
    rho = (m_dme + M["LiFSI"]) / 1000
    n_dme = m_dme / M["DME"]
    comp = molarity_composition({"LiFSI": 1.0}, {"DME": 1.0})
    assert comp["density"] == pytest.approx(rho, rel=1e-3)
    assert comp["moles"]["DME"] == pytest.approx(n_dme, rel=1e-3)
    assert comp["molality"]["LiFSI"] == pytest.approx(1000 / m_dme, rel=1e-3)


@pytest.mark.parametrize("basis", ["volume", "weight"])
def test_lipf6_ec_dec_ratio_by_volume_and_weight(basis):
    comp = molarity_composition({"LiPF6": 1.0}, {"EC": 1.0, "DEC": 1.0}, basis=basis)
    if basis == "volume":  # equal volumes of pure EC (1.321) and DEC (0.975)
        expected = (1.321 / M["EC"]) / (0.975 / M["DEC"])
    else:  # equal masses
        expected = M["DEC"] / M["EC"]
    assert comp["moles"]["EC"] / comp["moles"]["DEC"] == pytest.approx(expected, rel=2e-3)
    # mass conservation: one litre weighs 1000·ρ grams
    mass = M["LiPF6"] + comp["moles"]["EC"] * M["EC"] + comp["moles"]["DEC"] * M["DEC"]
    assert mass == pytest.approx(1000 * comp["density"], rel=2e-3)
    assert 1.2 < comp["density"] < 1.3  # the 1.2–1.3 g/cm³ range quoted for 1 M LiPF6 in carbonates


def test_given_density_conserves_mass():
    comp = molarity_composition({"LiPF6": 1.0}, {"EC": 1.0, "DEC": 1.0}, density=1.25)
    mass = M["LiPF6"] + comp["moles"]["EC"] * M["EC"] + comp["moles"]["DEC"] * M["DEC"]
    assert mass == pytest.approx(1250.0, rel=2e-3)
    assert comp["density_source"] == "given"


def test_counts_keep_ratios_and_neutrality():
    c = counts_from_molarity({"Li+": 1.0, "PF6-": 1.0, "EC": 7.05, "DEC": 3.88}, n_atoms=3000)
    assert c["Li+"] == c["PF6-"]
    assert c["EC"] / c["PF6-"] == pytest.approx(7.05, abs=0.5 / c["PF6-"] + 1e-9)
    assert c["DEC"] / c["PF6-"] == pytest.approx(3.88, abs=0.5 / c["PF6-"] + 1e-9)


@pytest.mark.parametrize("name", ["lifsi_1m", "lipf6_1m", "hce"])
def test_built_models_concentration_and_density(name):
    atoms = study_electrolyte(name, n_atoms=900, rng=2, source="packing")
    vol_cm3 = atoms.get_volume() * 1e-24
    rho = atoms.get_masses().sum() / N_A / vol_cm3
    assert rho == pytest.approx(atoms.info["density_g_cm3"], rel=1e-6)
    units = _unit_counts(atoms)
    spec = ELECTROLYTES[name]
    if name == "hce":  # FSI : TFSI : Li = 2 : 1 : 3 exactly, DME per TFSI = (1000/90.12)/2.3 = 4.825
        assert units["FSI-"] == 2 * units["TFSI-"] and units["Li+"] == 3 * units["TFSI-"]
        assert units["DME"] / units["TFSI-"] == pytest.approx(1000 / M["DME"] / 2.3, abs=0.5 / units["TFSI-"])
        return
    anion = {"lifsi_1m": "FSI-", "lipf6_1m": "PF6-"}[name]
    molarity = units[anion] / (vol_cm3 * 1e-3) / N_A
    target = next(iter(spec.molarity.values()))
    # the only rounding is the solvent count (±0.5 molecule) → a relative error ≤ 0.5·V_solvent/V_box
    assert molarity == pytest.approx(target, rel=0.03)
    assert units["Li+"] == units[anion]


# literature bond lengths [Å] of the new units (module docstring sources)
BONDS = {
    "EC": {("C", "O"): (1.19, 1.33, 1.45), ("C", "C"): (1.52,), ("C", "H"): (1.09,)},
    "DEC": {("C", "O"): (1.20, 1.34, 1.45), ("C", "C"): (1.51,), ("C", "H"): (1.09,)},
    "PF6-": {("F", "P"): (1.59,)},
    # existing units (structures.units_library sources): DME (Allen et al. 1987), FSI- (alkali FSI crystals)
    "DME": {("C", "O"): (1.416,), ("C", "C"): (1.513,), ("C", "H"): (1.09,)},
    "FSI-": {("N", "S"): (1.57,), ("O", "S"): (1.43,), ("F", "S"): (1.57,)},
}


def _bond_ok(sym_a, sym_b, d, table):
    key = tuple(sorted((sym_a, sym_b)))
    return any(abs(d - ref) <= 0.05 * ref for ref in table[key])


@pytest.mark.parametrize("name", ["lipf6_1m", "lifsi_1m"])
def test_molecules_intact_in_packed_model(name):
    """Every bond of every molecule, measured with the minimum image in the packed box, within 5 % of the
    literature length (rigid packing must not deform or split molecules across the boundary)."""
    atoms = study_electrolyte(name, n_atoms=900, rng=3, source="packing")
    sym = np.array(atoms.get_chemical_symbols())
    uid = atoms.arrays["unit_id"]
    cell = np.diag(atoms.cell.array)
    checked = 0
    for u in np.unique(uid):
        idx = np.flatnonzero(uid == u)
        s = tuple(sym[idx])
        for unit_name in BONDS:
            unit = get_study_unit(unit_name)
            if s == unit.symbols:
                for i, j in unit.bonds:
                    d = atoms.positions[idx[i]] - atoms.positions[idx[j]]
                    d -= cell * np.round(d / cell)
                    assert _bond_ok(s[i], s[j], np.linalg.norm(d), BONDS[unit_name]), (unit_name, i, j)
                    checked += 1
    assert checked > 100


def test_ec_ring_planar_and_pf6_octahedral():
    ec = STUDY_UNITS["EC"]
    heavy = ec.positions[[i for i, s in enumerate(ec.symbols) if s != "H"]]
    centred = heavy - heavy.mean(axis=0)
    assert np.linalg.svd(centred, compute_uv=False)[-1] < 1e-8  # all heavy atoms in one plane
    pf6 = STUDY_UNITS["PF6-"]
    v = pf6.positions[1:] - pf6.positions[0]
    cos = (v @ v.T) / np.outer(np.linalg.norm(v, axis=1), np.linalg.norm(v, axis=1))
    off = cos[~np.eye(6, dtype=bool)]
    assert np.all(np.isclose(off, 0.0, atol=1e-9) | np.isclose(off, -1.0, atol=1e-9))  # 90° or 180°


def test_formula_and_masses():
    assert sorted(STUDY_UNITS["EC"].symbols) == sorted("C" * 3 + "H" * 4 + "O" * 3)
    assert sorted(STUDY_UNITS["DEC"].symbols) == sorted("C" * 5 + "H" * 10 + "O" * 3)
    assert STUDY_UNITS["EC"].mass == pytest.approx(M["EC"], abs=0.02)
    assert STUDY_UNITS["DEC"].mass == pytest.approx(M["DEC"], abs=0.02)


def test_bad_input():
    with pytest.raises(ValueError, match="name"):
        study_electrolyte("LP30")
    with pytest.raises(ValueError, match="basis"):
        molarity_composition({"LiPF6": 1.0}, {"EC": 1.0}, basis="molar")
    with pytest.raises(ValueError, match="salt"):
        molarity_composition({"NaPF6": 1.0}, {"EC": 1.0})
    with pytest.raises(ValueError, match="molarity"):
        molarity_composition({"LiPF6": -1.0}, {"EC": 1.0})


def test_study_units_do_not_leak_into_the_unit_library():
    """Outside the study_units context the unit library is unchanged (other modules' error paths rely on it)."""
    with pytest.raises(ValueError, match="unknown unit"):
        library_unit("PF6-")
    with study_units():
        assert library_unit("PF6-") is STUDY_UNITS["PF6-"]
        with study_units():  # nested / concurrent users share one registration
            assert library_unit("EC") is STUDY_UNITS["EC"]
        assert library_unit("EC") is STUDY_UNITS["EC"]
    with pytest.raises(ValueError, match="unknown unit"):
        library_unit("EC")
