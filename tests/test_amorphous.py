"""Oracles for structures.amorphous, structures._packing and structures.units_library.

Expected values come from chemistry and arithmetic done here (unit stoichiometry, molar masses, literature bond
geometry, lattice equilibria), from brute-force references in tests/reference.py, never from the builder itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers
from reference import (
    debye_iq_periodic,
    dsf_buckingham_energy_forces,
    first_peak_above,
    min_distance_violations,
    min_image_vectors,
    overlap_energy_forces,
)

from structures import _packing
from structures.amorphous import (
    BUCKINGHAM,
    DEFAULT_MIN_DISTANCE,
    RelaxSettings,
    amorphous,
    pack_units,
    type1_sei,
    type2_matrix,
)
from structures.units_library import UNITS, get_unit, zmatrix_to_xyz

N_A = 6.02214076e23
MASS = {s: float(atomic_masses[atomic_numbers[s]]) for s in ("Li", "N", "O", "F", "S", "C", "H")}
TABLE = {"-".join(k): v for k, v in DEFAULT_MIN_DISTANCE.items()}


def _density(atoms):
    m = sum(MASS[s] for s in atoms.get_chemical_symbols()) / N_A
    return m / (atoms.get_volume() * 1e-24)


def _angle(a, b, c):
    u, v = a - b, c - b
    return np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))


# ---------------------------------------------------------------------------------------------------------- units


def test_unit_geometries_match_literature():
    so4 = get_unit("SO4^2-").positions
    assert np.allclose(np.linalg.norm(so4[1:] - so4[0], axis=1), 1.49)
    # regular tetrahedron: arccos(-1/3)
    assert _angle(so4[1], so4[0], so4[2]) == pytest.approx(np.degrees(np.arccos(-1 / 3)), abs=1e-9)
    so3 = get_unit("SO3^2-").positions
    assert np.allclose(np.linalg.norm(so3[1:] - so3[0], axis=1), 1.51)
    assert _angle(so3[1], so3[0], so3[2]) == pytest.approx(105.0, abs=1e-6)
    fsi = get_unit("FSI-").positions
    assert np.linalg.norm(fsi[1] - fsi[0]) == pytest.approx(1.57)
    assert _angle(fsi[1], fsi[0], fsi[2]) == pytest.approx(123.0, abs=1e-6)
    assert _angle(fsi[4], fsi[1], fsi[5]) == pytest.approx(121.0, abs=0.1)
    for u in UNITS.values():
        assert sum(u.site_charges) == pytest.approx(u.charge)
        assert np.allclose(u.positions.mean(axis=0), 0.0, atol=1e-12)


def test_zmatrix_builds_known_water_geometry():
    x = zmatrix_to_xyz([(), (0, 0.9572), (0, 0.9572, 1, 104.52)])
    assert np.linalg.norm(x[2] - x[0]) == pytest.approx(0.9572)
    assert _angle(x[1], x[0], x[2]) == pytest.approx(104.52)
    # dihedral: H–C–C–H of 60° in a 4-atom chain
    y = zmatrix_to_xyz([(), (0, 1.5), (1, 1.1, 0, 110.0), (0, 1.1, 1, 110.0, 2, 60.0)])
    b1, b2, b3 = y[1] - y[3], y[0] - y[1], y[2] - y[0]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    assert np.degrees(np.arccos(n1 @ n2 / np.linalg.norm(n1) / np.linalg.norm(n2))) == pytest.approx(60.0)


# ---------------------------------------------------------------------------------------------------- composition


def test_composition_neutrality_and_density_exact():
    units = {"F-": 0.5, "SO4^2-": 0.2, "O^2-": 0.3}
    a = amorphous(units, 1.9, n_atoms=600, relax=False, rng=1)
    c = a.info["units"]
    # Li+ balances the anions: 1·F + 2·SO4 + 2·O
    assert c["Li+"] == c["F-"] + 2 * c["SO4^2-"] + 2 * c["O^2-"]
    # anion ratios follow the fractions to within one unit
    n_an = c["F-"] + c["SO4^2-"] + c["O^2-"]
    for k, f in units.items():
        assert abs(c[k] - f * n_an) <= 1.0
    sym = a.get_chemical_symbols()
    assert sym.count("Li") == c["Li+"]
    assert sym.count("F") == c["F-"]
    assert sym.count("S") == c["SO4^2-"]
    assert sym.count("O") == 4 * c["SO4^2-"] + c["O^2-"]
    assert abs(len(a) - 600) <= 10
    assert _density(a) == pytest.approx(1.9, rel=1e-9)
    assert a.info["density_g_cm3"] == 1.9 and a.info["elements"]["O"] == sym.count("O")
    assert all(a.pbc)


def test_counts_and_cell_modes():
    a = amorphous({"Li+": 100, "F-": 40, "SO4^2-": 30}, 2.0, relax=False, rng=2)
    assert a.get_chemical_symbols().count("Li") == 100 and len(a) == 100 + 40 + 5 * 30
    assert _density(a) == pytest.approx(2.0, rel=1e-9)
    b = amorphous({"F-": 0.6, "SO3^2-": 0.4}, 1.8, cell=(20.0, 20.0, 30.0), relax=False, rng=3)
    L = b.cell.lengths()
    assert L[2] / L[0] == pytest.approx(1.5) and L[1] == pytest.approx(L[0])
    assert abs(b.info["cell_scale"] - 1) < 0.02
    assert _density(b) == pytest.approx(1.8, rel=1e-9)
    # a consistent Li+ fraction is accepted: Li 0.5, F 0.2, SO4 0.15 → 0.5 = 0.2 + 0.3
    amorphous({"Li+": 0.5, "F-": 0.2, "SO4^2-": 0.15}, 2.0, n_atoms=200, relax=False, rng=4)


def test_same_seed_same_atoms_different_seed_different():
    kw = dict(units={"F-": 0.5, "SO3^2-": 0.5}, density=1.9, n_atoms=300, relax=False)
    a, b, c = amorphous(rng=7, **kw), amorphous(rng=7, **kw), amorphous(rng=8, **kw)
    assert np.array_equal(a.positions, b.positions) and a.get_chemical_symbols() == b.get_chemical_symbols()
    assert not np.allclose(a.positions, c.positions)
    assert a.info["seed"] == 7


# ------------------------------------------------------------------------------------------------ minimum distances


def test_min_distances_respected_across_boundaries():
    a = amorphous({"F-": 0.4, "O^2-": 0.2, "SO4^2-": 0.2, "FSI-": 0.2}, 1.9, n_atoms=700, relax=False, rng=11)
    box = a.cell.lengths()
    bad = min_distance_violations(a.positions, a.get_chemical_symbols(), a.arrays["unit_id"], box, TABLE)
    assert bad == []
    # the check is meaningful: many close contacts exist only through a periodic image
    raw = np.linalg.norm(a.positions[None] - a.positions[:, None], axis=-1)
    img = np.linalg.norm(min_image_vectors(a.positions, box), axis=-1)
    assert np.sum((img < 3.0) & (raw > 0.5 * box.min())) > 10


def test_relaxed_model_keeps_min_distances_and_rigid_units():
    a = amorphous({"F-": 0.4, "O^2-": 0.2, "SO4^2-": 0.25, "SO3^2-": 0.15}, 1.9, n_atoms=900, rng=5)
    box = a.cell.lengths()
    sym = np.array(a.get_chemical_symbols())
    uid = a.arrays["unit_id"]
    assert min_distance_violations(a.positions, sym, uid, box, TABLE) == []
    for u in np.unique(uid):
        idx = np.flatnonzero(uid == u)
        if len(idx) == 1:
            continue
        x = a.positions[idx]
        x = x[0] + min_image_vectors(x, box)[0]  # unwrap the unit
        ref = 1.49 if len(idx) == 5 else 1.51
        ang = 109.4712 if len(idx) == 5 else 105.0
        assert np.allclose(np.linalg.norm(x[1:] - x[0], axis=1), ref, rtol=0.01)
        for i in range(1, len(idx)):
            for j in range(i + 1, len(idx)):
                assert _angle(x[i], x[0], x[j]) == pytest.approx(ang, rel=0.01)


def test_relax_lowers_energy_and_gives_physical_first_neighbours():
    a = amorphous({"F-": 0.7, "O^2-": 0.3}, 2.2, n_atoms=1200, rng=21, relax=RelaxSettings(steps=150))
    r = a.info["relax"]
    assert r["energy_end_eV_per_atom"] < r["energy_start_eV_per_atom"] - 0.5
    box = a.cell.lengths()
    sym = np.array(a.get_chemical_symbols())
    d = np.linalg.norm(min_image_vectors(a.positions, box), axis=-1)
    li = sym == "Li"
    for el, lo, hi in (("F", 1.75, 1.95), ("O", 1.75, 2.05)):
        dd = d[np.ix_(li, sym == el)].ravel()
        h, e = np.histogram(dd[dd < 3.0], bins=np.arange(1.6, 3.0, 0.05))
        peak = 0.5 * (e[np.argmax(h)] + e[np.argmax(h) + 1])
        assert lo <= peak <= hi, (el, peak)
    # coordination of Li by anions within 2.4 Å: between 3 and 6 on average (tetrahedral/octahedral range)
    cn = np.sum(d[np.ix_(li, sym != "Li")] < 2.4, axis=1).mean()
    assert 3.0 <= cn <= 6.0


# ----------------------------------------------------------------------------------------- kernels vs references


def _random_system(rng, box=16.0):
    from structures.amorphous import _assemble

    names = ["Li+"] * 30 + ["F-"] * 20 + ["SO4^2-"] * 5
    system, _, types = _assemble(names, np.full(3, box))
    centre = rng.random((system.n_units, 3)) * box
    rot = _packing.random_rotations(system.n_units, rng)
    st = _packing._State(system, centre, rot)
    return system, st, types, names


def test_overlap_kernel_matches_reference_and_pure_python(rng):
    system, st, types, _ = _random_system(rng)
    from structures.amorphous import min_distance_table

    dmin = min_distance_table(system.elements)
    nl = _packing._NeighbourList(system, dmin.max() * 1.03, 0.5)
    nl.build(st.pos)
    n = system.n_atoms
    out = [np.zeros((n, 3)), np.zeros(n), np.zeros(n)]
    args = (st.pos, system.box, system.species, dmin, 0.03, 1.0, nl.start, nl.nbr, nl.shift)
    _packing._overlap_forces(0, n, *args, *out)
    e_ref, f_ref = overlap_energy_forces(st.pos, system.box, system.species, system.unit_of, dmin, 0.03, 1.0)
    assert out[1].sum() == pytest.approx(e_ref, rel=1e-12)
    assert np.allclose(out[0], f_ref, atol=1e-10)
    # identical results without the JIT (NUMBA_DISABLE_JIT=1 runs the same Python function)
    out2 = [np.zeros((n, 3)), np.zeros(n), np.zeros(n)]
    _packing._overlap_forces.py_func(0, n, *args, *out2)
    assert all(np.array_equal(x, y) for x, y in zip(out, out2))


def test_tabulated_pair_potential_matches_analytic_reference(rng):
    system, st, types, _ = _random_system(rng, box=18.0)
    from structures.amorphous import _buckingham_tables, min_distance_table

    dmin = min_distance_table(system.elements)
    a, rho, c = _buckingham_tables(types)
    qtype = np.zeros(len(types))
    qtype[system.species] = system.charge
    tab, r2min, inv = _packing.pair_tables(a, rho, c, qtype, alpha=0.3, cutoff=6.0)
    nl = _packing._NeighbourList(system, 6.0, 0.5)
    nl.build(st.pos)
    n = system.n_atoms
    f, e = np.zeros((n, 3)), np.zeros(n)
    args = (st.pos, system.box, system.species, dmin, 0.03, 20.0, tab, r2min, inv, 6.0)
    _packing._physical_forces(0, n, *args, nl.start, nl.nbr, nl.shift, f, e)
    e_ref, f_ref = dsf_buckingham_energy_forces(
        st.pos, system.box, system.charge, a, rho, c, system.species, system.unit_of, 0.3, 6.0, dmin, 0.03, 20.0
    )
    assert e.sum() == pytest.approx(e_ref, rel=1e-3, abs=1e-2)
    scale = np.abs(f_ref).max()
    assert np.abs(f - f_ref).max() < 2e-3 * scale


@pytest.mark.parametrize("cutoff", [3.3, 6.5])
def test_neighbour_list_equals_brute_force_pairs(rng, cutoff):
    system, st, _, _ = _random_system(rng, box=16.0)
    st.pos += rng.normal(size=st.pos.shape) * 20.0  # unwrapped coordinates far outside the box
    nl = _packing._NeighbourList(system, cutoff, 0.5)
    nl.build(st.pos)
    got = {(i, int(j)) for i in range(system.n_atoms) for j in nl.nbr[nl.start[i] : nl.start[i + 1]]}
    d = np.linalg.norm(min_image_vectors(st.pos, system.box), axis=-1)
    uid = system.unit_of
    want = {(int(i), int(j)) for i, j in zip(*np.nonzero((d < cutoff + 0.5) & (uid[:, None] != uid[None, :])))}
    assert got == want
    # the stored image shifts reproduce the minimum-image vectors
    i = np.repeat(np.arange(system.n_atoms), np.diff(nl.start))
    vec = st.pos[nl.nbr] - st.pos[i] + nl.shift * system.box
    assert np.allclose(vec, min_image_vectors(st.pos, system.box)[i, nl.nbr])


def test_rigid_body_move_and_torque_against_numpy(rng):
    from scipy.spatial.transform import Rotation

    system, st, _, _ = _random_system(rng)
    nu = system.n_units
    force = rng.normal(size=(system.n_atoms, 3))
    fu, tu = np.zeros((nu, 3)), np.zeros((nu, 3))
    _packing._unit_reduce(st.pos, st.centre, system.unit_start, force, fu, tu)
    uid = system.unit_of
    rel = st.pos - st.centre[uid]
    assert np.allclose(fu, np.array([force[uid == u].sum(0) for u in range(nu)]))
    assert np.allclose(tu, np.array([np.cross(rel[uid == u], force[uid == u]).sum(0) for u in range(nu)]))
    # a small rotation of every unit by dt·ω equals scipy's rotation-vector rotation of its atoms
    w = rng.normal(size=(nu, 3)) * 0.05
    v = rng.normal(size=(nu, 3)) * 0.05
    before = st.pos.copy()
    c0 = st.centre.copy()
    _packing._fire_move(st.centre, st.rot, system.body, system.unit_start, st.radius, v, w, 1.0, 10.0, st.pos)
    for u in range(nu):
        idx = uid == u
        expect = Rotation.from_rotvec(w[u]).apply(before[idx] - c0[u]) + c0[u] + v[u]
        if st.radius[u] == 0:
            expect = before[idx] + v[u]
        assert np.allclose(st.pos[idx], expect, atol=1e-10)
        assert np.allclose(st.rot[u] @ st.rot[u].T, np.eye(3), atol=1e-12)


def test_physical_kernel_identical_without_jit(rng):
    system, st, types, _ = _random_system(rng, box=18.0)
    from structures.amorphous import _buckingham_tables, min_distance_table

    dmin = min_distance_table(system.elements)
    a, rho, c = _buckingham_tables(types)
    qtype = np.zeros(len(types))
    qtype[system.species] = system.charge
    tab, r2min, inv = _packing.pair_tables(a, rho, c, qtype, alpha=0.3, cutoff=6.0)
    nl = _packing._NeighbourList(system, 6.0, 0.5)
    nl.build(st.pos)
    n = system.n_atoms
    args = (st.pos, system.box, system.species, dmin, 0.03, 20.0, tab, r2min, inv, 6.0, nl.start, nl.nbr, nl.shift)
    f1, e1, f2, e2 = np.zeros((n, 3)), np.zeros(n), np.zeros((n, 3)), np.zeros(n)
    _packing._physical_forces(0, n, *args, f1, e1)
    _packing._physical_forces.py_func(0, n, *args, f2, e2)
    assert np.array_equal(f1, f2) and np.array_equal(e1, e2)


@pytest.mark.parametrize(
    "symbol, structure, a0, pair",
    [("LiF", "rocksalt", 4.027, ("F", "Li")), ("OLi2", "fluorite", 4.611, ("Li", "O"))],
)
def test_fitted_li_repulsion_puts_crystal_at_its_lattice_constant(symbol, structure, a0, pair):
    charges = {"Li": 1.0, "O": -2.0, "F": -1.0}

    def energy(a):
        at = bulk(symbol, structure, a=a, cubic=True).repeat(3)
        sym = at.get_chemical_symbols()
        els = sorted(set(sym))
        sp = np.array([els.index(s) for s in sym])
        A, R, C = np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))
        for i, x in enumerate(els):
            for j, y in enumerate(els):
                p = BUCKINGHAM.get(tuple(sorted((x, y))))
                if p:
                    A[i, j], R[i, j], C[i, j] = p
        q = [charges[s] for s in sym]
        e, _ = dsf_buckingham_energy_forces(
            at.positions, np.diag(at.cell), q, A, R, C, sp, np.arange(len(sym)), 0.3, 6.0
        )
        return e

    e0, em, ep = energy(a0), energy(a0 * 0.99), energy(a0 * 1.01)
    assert e0 < em and e0 < ep
    # the minimum of the parabola through the three points is within 0.2 % of a0
    a_min = a0 * (1 + 0.01 * 0.5 * (em - ep) / (em - 2 * e0 + ep))
    assert a_min == pytest.approx(a0, rel=2e-3)


# --------------------------------------------------------------------------------------------- negative oracle


@pytest.mark.parametrize("units, density", [({"F-": 1.0}, 1.7), ({"F-": 0.6, "O^2-": 0.4}, 2.2), ({"F-": 1.0}, 2.6)])
def test_monatomic_mixtures_do_not_peak_at_033(units, density):
    a = amorphous(units, density, n_atoms=1500, relax=False, rng=31)
    q = np.linspace(0.15, 0.9, 301)
    iq, _ = debye_iq_periodic(a.positions, a.get_chemical_symbols(), a.cell.lengths(), q)
    q1 = first_peak_above(q, iq * q, 0.2)
    assert np.isfinite(q1)
    assert not (0.30 <= q1 <= 0.36), q1
    assert q1 > 0.37


# ------------------------------------------------------------------------------------------------------ presets


def test_presets_record_their_parameters():
    a = type1_sei(n_atoms=600, relax=False, rng=1, source="packing")  # the fast path's default density
    assert a.info["preset"] == "type1_sei" and a.info["density_g_cm3"] == 2.1
    assert {"SO3^2-", "SO4^2-", "F-", "O^2-", "S^2-"} <= set(a.info["units"])
    assert "C" not in a.get_chemical_symbols()
    b = type2_matrix(n_atoms=600, relax=False, rng=1, source="packing")
    assert b.info["preset"] == "type2_matrix" and _density(b) == pytest.approx(2.1, rel=1e-9)


# ---------------------------------------------------------------------------------------------------- bad input


def test_bad_input_messages():
    with pytest.raises(ValueError, match="unknown unit 'XeF6'.*SO4\\^2-"):
        amorphous({"XeF6": 1.0}, 2.0, n_atoms=100)
    with pytest.raises(ValueError, match="density"):
        amorphous({"F-": 1.0}, 0.0, n_atoms=100)
    with pytest.raises(ValueError, match="density"):
        amorphous({"F-": 1.0}, -1.0, n_atoms=100)
    with pytest.raises(ValueError, match="exactly one of cell"):
        amorphous({"F-": 1.0}, 2.0)
    with pytest.raises(ValueError, match="must be 0.4"):
        amorphous({"Li+": 0.3, "F-": 0.4}, 2.0, n_atoms=100)
    with pytest.raises(ValueError, match="orthorhombic"):
        amorphous({"F-": 1.0}, 2.0, cell=[[20, 1, 0], [0, 20, 0], [0, 0, 20]])
    with pytest.raises(ValueError, match="too small"):
        amorphous({"FSI-": 1.0}, 1.5, cell=(6.0, 6.0, 6.0), relax=False)
    with pytest.raises(ValueError, match="min_distance key"):
        amorphous({"F-": 1.0}, 2.0, n_atoms=100, min_distance={"Xx-F": 2.0})


def test_unreachable_density_fails_with_named_pair():
    with pytest.raises(ValueError, match=r"worst pair (F–F|F–Li|Li–F|Li–Li).*short by"):
        amorphous({"F-": 1.0}, 6.0, n_atoms=300, relax=False, rng=1, max_steps=300)


def test_pack_units_rejects_overlapping_cell_for_cutoff():
    with pytest.raises(ValueError, match="too small"):
        pack_units({"Li+": 1, "F-": 1}, (5.0, 5.0, 5.0))


# --------------------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_type1_large_model_distances_brute_force():
    # the rigid-unit packing's promise (no pair closer than the table, density exactly as asked); relaxed models
    # have MD distances, checked in tests/test_relaxed_models.py
    a = type1_sei(n_atoms=4000, rng=2, source="packing")
    box = a.cell.lengths()
    sym = a.get_chemical_symbols()
    assert min_distance_violations(a.positions, sym, a.arrays["unit_id"], box, TABLE) == []
    assert _density(a) == pytest.approx(2.1, rel=1e-9)


@pytest.mark.slow
def test_type1_default_peaks_near_study_values():
    # the study's Type 1: first I·Q peak 0.325–0.345, second ≈ 0.6 Å⁻¹; before probe convolution we allow ±0.03.
    # The packing path at its default 2.1 g/cm³ (chosen for this peak); what the relaxed models give is in
    # tests/test_relaxed_models.py and the README's table
    a = type1_sei(n_atoms=3000, rng=4, source="packing")
    q = np.linspace(0.15, 0.9, 301)
    iq, _ = debye_iq_periodic(a.positions, a.get_chemical_symbols(), a.cell.lengths(), q)
    q1 = first_peak_above(q, iq * q, 0.2)
    q2 = first_peak_above(q, iq * q, q1 + 0.1)
    assert 0.30 <= q1 <= 0.36, q1
    assert 0.55 <= q2 <= 0.68, q2
