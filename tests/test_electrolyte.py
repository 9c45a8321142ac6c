"""Oracles for structures.electrolyte: molality arithmetic, density, intact molecules, minimum distances."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import atomic_masses, atomic_numbers
from reference import min_distance_violations, min_image_vectors

from structures.amorphous import DEFAULT_MIN_DISTANCE
from structures.electrolyte import counts_from_molality, electrolyte, ideal_mixing_density, solution

N_A = 6.02214076e23
M = {s: float(atomic_masses[atomic_numbers[s]]) for s in ("H", "Li", "C", "N", "O", "F", "S")}
M_DME = 4 * M["C"] + 10 * M["H"] + 2 * M["O"]
M_LIFSI = M["Li"] + M["N"] + 2 * M["S"] + 4 * M["O"] + 2 * M["F"]
M_LITFSI = M["Li"] + M["N"] + 2 * M["S"] + 4 * M["O"] + 2 * M["C"] + 6 * M["F"]
TABLE = {"-".join(k): v for k, v in DEFAULT_MIN_DISTANCE.items()}

# literature bond lengths [Å] (units_library docstring sources; Allen et al. 1987 for DME)
BONDS = {
    ("C", "H"): 1.09,
    ("C", "O"): 1.416,
    ("C", "C"): 1.513,
    ("O", "S"): 1.43,
    ("N", "S"): 1.57,
    ("F", "S"): 1.57,
    ("C", "S"): 1.83,
    ("C", "F"): 1.33,
}
N_BONDS = {"DME": 15, "FSI-": 8, "TFSI-": 14}


@pytest.fixture(scope="module")
def hce():
    return electrolyte(n_atoms=1500, rng=3, source="packing")  # the builder itself, not the shipped model


def test_molality_arithmetic(hce):
    c = hce.info["units"]
    # 4.6 : 2.3 = 2 : 1 exactly; every salt brings one Li+
    assert c["FSI-"] == 2 * c["TFSI-"]
    assert c["Li+"] == c["FSI-"] + c["TFSI-"]
    # DME per TFSI-: 1 kg DME (1000 / M_DME mol) per 2.3 mol LiTFSI
    exact = c["TFSI-"] * (1000.0 / M_DME) / 2.3
    assert abs(c["DME"] - exact) <= 0.5
    assert (1000.0 / M_DME) == pytest.approx(11.096, abs=1e-3)
    built = hce.info["molality_built"]
    assert built["LiFSI"] == pytest.approx(c["FSI-"] / (c["DME"] * M_DME / 1000.0))
    assert built["LiFSI"] == pytest.approx(4.6, rel=0.5 / c["DME"] + 1e-12)
    # the molarity ratio equals the molality ratio (2), so "3 M / 2 M" is impossible
    mol = hce.info["molarity_M"]
    assert mol["LiFSI"] / mol["LiTFSI"] == pytest.approx(2.0)


def test_element_counts_and_density(hce):
    c = hce.info["units"]
    sym = hce.get_chemical_symbols()
    assert sym.count("H") == 10 * c["DME"]
    assert sym.count("C") == 4 * c["DME"] + 2 * c["TFSI-"]
    assert sym.count("N") == c["FSI-"] + c["TFSI-"]
    assert sym.count("F") == 2 * c["FSI-"] + 6 * c["TFSI-"]
    mass = sum(M[s] for s in sym) / N_A
    assert mass / (hce.get_volume() * 1e-24) == pytest.approx(hce.info["density_g_cm3"], rel=1e-9)


def test_default_density_is_the_ideal_mixing_estimate():
    # 1 kg DME (0.8683 g/cm³) + 4.6 mol LiFSI (100 cm³/mol) + 2.3 mol LiTFSI (145 cm³/mol)
    mass = 1000 + 4.6 * M_LIFSI + 2.3 * M_LITFSI
    vol = 1000 / 0.8683 + 4.6 * 100 + 2.3 * 145
    assert ideal_mixing_density({"LiFSI": 4.6, "LiTFSI": 2.3}) == pytest.approx(mass / vol, rel=1e-12)
    assert 1.2 < mass / vol < 1.5


def test_molecules_intact_and_min_distances(hce):
    box = hce.cell.lengths()
    sym = np.array(hce.get_chemical_symbols())
    uid = hce.arrays["unit_id"]
    names = {}
    for u in np.unique(uid):
        idx = np.flatnonzero(uid == u)
        x = hce.positions[idx]
        x = x[0] + min_image_vectors(x, box)[0]
        s = sym[idx]
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        i, j = np.nonzero(np.triu(d < 1.95, k=1))
        bonds = [(tuple(sorted((s[a], s[b]))), d[a, b]) for a, b in zip(i, j) if {s[a], s[b]} != {"O"}]
        # (the geminal O···O of SO2 groups is ≈ 2.5 Å, never below 1.95 Å; H···H ≈ 1.78 Å are not bonds)
        bonds = [(k, r) for k, r in bonds if k in BONDS]
        key = "DME" if "H" in s else ("TFSI-" if "C" in s else ("FSI-" if len(idx) == 9 else "Li+"))
        names[key] = names.get(key, 0) + 1
        if key == "Li+":
            continue
        assert len(bonds) == N_BONDS[key], (key, len(bonds))
        for k, r in bonds:
            assert r == pytest.approx(BONDS[k], rel=0.05), (key, k, r)
    assert names == {k: v for k, v in hce.info["units"].items()}
    assert min_distance_violations(hce.positions, sym, uid, box, TABLE) == []


def test_seeds():
    a, b, c = (electrolyte(n_atoms=800, rng=s, source="packing") for s in (1, 1, 2))
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)


def test_counts_from_molality_single_salt_and_solution_generic():
    c = counts_from_molality({"LiFSI": 1.0}, "DME", n_atoms=2000)
    assert c["Li+"] == c["FSI-"]
    assert abs(c["DME"] - c["FSI-"] * (1000 / M_DME)) <= 0.5
    s = solution({"Li+": 20, "FSI-": 20, "DME": 60}, 1.1, rng=0)
    assert s.info["units"] == {"Li+": 20, "FSI-": 20, "DME": 60}
    assert sum(M[x] for x in s.get_chemical_symbols()) / N_A / (s.get_volume() * 1e-24) == pytest.approx(1.1)


def test_bad_input():
    with pytest.raises(ValueError, match="solvent must be 'DME'"):
        electrolyte(solvent="EC")
    with pytest.raises(ValueError, match="molality_lifsi=-1.0"):
        electrolyte(molality_lifsi=-1.0)
    with pytest.raises(ValueError, match="at least one"):
        electrolyte(0.0, 0.0)
    with pytest.raises(ValueError, match="density"):
        electrolyte(density=0.0)
    with pytest.raises(ValueError, match="net charge"):
        solution({"Li+": 2, "FSI-": 1, "DME": 10}, 1.2)
    with pytest.raises(ValueError, match="unknown unit"):
        solution({"PF6-": 2, "Li+": 2}, 1.2)
