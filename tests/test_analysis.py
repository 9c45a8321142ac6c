"""Oracles for structures.analysis: crystal g(r) peaks and coordination numbers, ideal-gas g(r) = 1, pair
counts against a brute-force image loop, density and charge balance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms

from structures.analysis import composition, coordination_number, density, first_minimum, pair_histogram, rdf
from structures.crystals import LATTICE_CONSTANTS, bulk, nanocrystal
from tests import reference as ref


@pytest.mark.parametrize(
    "phase, pair, nn_factor, cn",
    [
        ("LiF", ("Li", "F"), 0.5, 6),  # rock salt: 6 anions at a/2
        ("LiF", ("Li", "Li"), 1 / math.sqrt(2), 12),  # fcc cation sublattice
        ("Li2O", ("Li", "O"), math.sqrt(3) / 4, 4),  # antifluorite: Li tetrahedral
        ("Li2O", ("O", "Li"), math.sqrt(3) / 4, 8),  # O cubic
        ("Li", ("Li", "Li"), math.sqrt(3) / 2, 8),  # bcc
        ("Cu", ("Cu", "Cu"), 1 / math.sqrt(2), 12),  # fcc
    ],
)
def test_crystal_first_peak_and_coordination(phase, pair, nn_factor, cn):
    atoms = bulk(phase, "room").repeat(4)
    a = LATTICE_CONSTANTS[phase]["room"]
    g = rdf(atoms, r_max=0.49 * 4 * a, dr=0.01)
    gp = g.partial[pair]
    first = g.r[np.flatnonzero(gp > 0)[0]]
    assert first == pytest.approx(nn_factor * a, abs=0.01)
    c = coordination_number(atoms, *pair)  # cutoff = first minimum of g_ab
    assert c.mean == cn and c.std == 0
    assert nn_factor * a < c.cutoff
    # n_ab = 4π ρ_b ∫ g_ab r² dr up to the cutoff, with the shell volumes of the histogram
    rho_b = g.n_atoms[pair[1]] / atoms.get_volume()
    inside = g.edges[1:] <= c.cutoff
    shells = 4 * np.pi / 3 * (g.edges[1:] ** 3 - g.edges[:-1] ** 3)
    assert rho_b * np.sum(gp[inside] * shells[inside]) == pytest.approx(cn)


def test_unit_cell_and_supercell_give_the_same_g():
    """With all periodic images counted and ρ = N/V, g(r) of a crystal does not depend on the cell chosen."""
    g1 = rdf(bulk("Li"), r_max=8.0, dr=0.05)
    g2 = rdf(bulk("Li").repeat(5), r_max=8.0, dr=0.05)
    np.testing.assert_allclose(g1.total, g2.total, atol=1e-9)


def test_ideal_gas_gives_one():
    """Uniform random points: ordered pairs per shell = N(N−1)/V·shell, so g = (N−1)/N; the bin-mean
    scatters with Poisson statistics."""
    rng = np.random.default_rng(0)
    n, box = 4000, 40.0
    sym = rng.choice(["Li", "F"], size=n)
    atoms = Atoms(symbols=sym.tolist(), positions=rng.uniform(0, box, (n, 3)), cell=[box] * 3, pbc=True)
    g = rdf(atoms, r_max=12.0, dr=0.5)
    sel = g.r > 3.0
    # pairs per bin are ~1e4–1e5: the relative Poisson error of each bin is < 1.5 %; pairs are not
    # independent (each atom appears in many), so allow 4 %
    np.testing.assert_allclose(g.total[sel], (n - 1) / n, rtol=0.04)
    assert np.mean(g.total[sel]) == pytest.approx(1.0, abs=0.01)
    for pair in (("Li", "F"), ("F", "F")):
        assert np.mean(g.partial[pair][sel]) == pytest.approx(1.0, abs=0.02)


def test_pair_histogram_matches_brute_force_in_all_paths():
    """Numba cell list (r_max ≤ L/3), periodic cKDTree (r_max < L/2) and explicit images (triclinic cell,
    r_max beyond half the box) against a plain loop over images."""
    rng = np.random.default_rng(1)
    n = 60
    pos = rng.uniform(0, 12.0, (n, 3))
    sym = rng.choice(["Li", "O"], size=n).tolist()
    ortho = Atoms(symbols=sym, positions=pos, cell=[12.0, 12.0, 12.0], pbc=True)
    tric = Atoms(symbols=sym, positions=pos, cell=[[12.0, 0, 0], [3.0, 11.0, 0], [1.0, 2.0, 10.0]], pbc=True)
    for atoms, r_max in ((ortho, 3.9), (ortho, 5.5), (tric, 5.5), (ortho, 9.0)):
        e = np.linspace(0, r_max, 23)
        h = pair_histogram(atoms, e)
        s = np.asarray(sym)
        for a in ("Li", "O"):
            for b in ("Li", "O"):
                d = ref.all_image_distances(
                    atoms.positions[s == a], atoms.positions[s == b], atoms.cell.array, r_max, same=a == b
                )
                expected = np.histogram(d, bins=e)[0]
                np.testing.assert_array_equal(h[(a, b)], expected)


def test_cell_list_kernel_is_identical_without_jit():
    """The numba kernel run as plain Python (what NUMBA_DISABLE_JIT=1 does) gives the same counts."""
    from structures.analysis import _cell_pair_histogram

    rng = np.random.default_rng(2)
    pos = rng.uniform(0, 10.0, (80, 3))
    kind = rng.integers(0, 2, 80).astype(np.int64)
    box = np.array([10.0, 10.0, 10.0])
    edges = np.linspace(0, 3.3, 12)
    fast = _cell_pair_histogram(pos, kind, 2, box, edges)
    plain = getattr(_cell_pair_histogram, "py_func", _cell_pair_histogram)  # already plain under DISABLE_JIT
    slow = plain(pos, kind, 2, box, edges)
    np.testing.assert_array_equal(fast, slow)
    assert fast.sum() > 0


def test_density_and_composition_report():
    lif = bulk("LiF", "room")
    a = LATTICE_CONSTANTS["LiF"]["room"]
    # 4 formula units of LiF (6.94 + 18.998 g/mol) in a³: 2.638 g/cm³
    assert density(lif) == pytest.approx(4 * (6.94 + 18.998403) / 6.02214076e23 / (a * 1e-8) ** 3, rel=1e-4)
    rep = composition(bulk("Li2O"))
    assert rep.formula == "Li2O" and rep.counts == {"Li": 8, "O": 4}
    assert rep.fractions == {"Li": pytest.approx(2 / 3), "O": pytest.approx(1 / 3)}
    assert rep.charge == 0 and rep.balanced
    nc = nanocrystal("LiF", 15.0, f_vacancy=0.2, rng=0)
    rep = composition(nc)
    n_vac = nc.info["n_vacancies"]["F"]
    n_excess = nc.info["n_sites"]["Li"] - nc.info["n_sites"]["F"]
    assert rep.charge == n_vac + n_excess and rep.balanced is False
    assert composition(nc, charges={"Li": 0, "F": 0}).charge == 0
    assert sum(rep.mass_fractions.values()) == pytest.approx(1.0)
    assert composition(Atoms("XeLi", positions=[[0, 0, 0], [2, 0, 0]])).charge is None
    assert rep.to_dict()["counts"] == rep.counts


def test_first_minimum_of_a_smooth_curve():
    r = np.linspace(0.01, 8, 800)
    g = 1 + 1.5 * np.exp(-((r - 2.5) ** 2) / 0.1) - 0.6 * np.exp(-((r - 3.6) ** 2) / 0.2)
    g[r < 1.8] = 0.0
    assert first_minimum(r, g) == pytest.approx(3.6, abs=0.05)


def test_bad_input():
    atoms = bulk("LiF").repeat(2)
    with pytest.raises(ValueError, match="r_max"):
        rdf(atoms, r_max=0)
    with pytest.raises(ValueError, match="dr"):
        rdf(atoms, r_max=3.0, dr=-0.1)
    with pytest.raises(ValueError, match="Li, F|F, Li"):
        coordination_number(atoms, "Li", "Cl")
    with pytest.raises(ValueError, match="cutoff"):
        coordination_number(atoms, "Li", "F", cutoff=-1.0)
    with pytest.raises(TypeError, match="ase.Atoms"):
        density("LiF")
    with pytest.raises(ValueError, match="volume"):
        density(Atoms("Li"))
