"""Seams of a relaxed-model mosaic: the tile boundaries are relaxed by the rigid packing's overlap wall so that no
inter-unit contact is closer than the packing's table (lowered to the relaxed tiles' own shortest contacts)."""

import numpy as np
import pytest

from structures import relax
from structures.amorphous import min_distance_table


def _inter_unit_distances(atoms):
    """Brute-force minimum-image distances [Å] of all inter-unit atom pairs, with the pairs' symbols."""
    box = atoms.cell.lengths()
    d = atoms.positions[:, None, :] - atoms.positions[None, :, :]
    d -= np.round(d / box) * box
    r = np.linalg.norm(d, axis=-1)
    uid = np.asarray(atoms.arrays["unit_id"])
    i, j = np.nonzero(np.triu(uid[:, None] != uid[None, :], 1))
    sym = np.asarray(atoms.get_chemical_symbols())
    return r[i, j], sym[i], sym[j]


def _oracle_table(seeds, elements):
    """min(packing table, shortest inter-unit distance of each element pair in the relaxed seeds) [Å]."""
    table = min_distance_table(elements)
    for s in seeds:
        r, a, b = _inter_unit_distances(s)
        for x, ex in enumerate(elements):
            for y, ey in enumerate(elements):
                sel = ((a == ex) & (b == ey)) | ((a == ey) & (b == ex))
                if sel.any():
                    table[x, y] = min(table[x, y], r[sel].min())
    return table


def _below(atoms, table, elements):
    r, a, b = _inter_unit_distances(atoms)
    ia, ib = np.searchsorted(elements, a), np.searchsorted(elements, b)
    return int(np.sum(r < table[ia, ib] - 1e-9))


def test_mosaic_has_no_contact_below_the_table_and_keeps_units_rigid():
    m = relax.relaxed_model("type1_default", n_atoms=800, rng=11)
    # the tiles are the seeds at one common density: the contacts they contain are those at that density
    seeds = relax.relaxed_seeds("type1_default", density=m.info["density_g_cm3"])
    elements = sorted(set(seeds[0].get_chemical_symbols()))
    table = _oracle_table(seeds, elements)
    gen = np.random.default_rng(11)
    gen.integers(len(seeds))  # relaxed_model's seed pick
    tiles, _, _ = relax._mosaic_tiles("type1_default", 0, None)
    raw = relax._mosaic(tiles, (2, 2, 2), gen)
    assert _below(raw, table, elements) > 0  # the unrelaxed seams do clash (the check below can fail)
    assert m.info["mosaic"]["seeds"][0] == 0  # the same tiles as `raw`
    assert _below(m, table, elements) == 0
    assert m.info["mosaic"]["seams"]["seam_clashing_unit_pairs_before"] > 0
    assert m.info["mosaic"]["seams"]["seam_clashing_unit_pairs_after"] == 0
    # rigid units: every intra-unit distance as in the unrelaxed mosaic (same atoms in unit order)
    order = np.argsort(raw.arrays["unit_id"], kind="stable")
    raw = raw[order]
    assert np.array_equal(raw.numbers, m.numbers) and np.array_equal(raw.arrays["unit_id"], m.arrays["unit_id"])
    uid = m.arrays["unit_id"]
    same = np.nonzero(np.triu(uid[:, None] == uid[None, :], 1))
    for a in (raw, m):
        a.info["d"] = np.linalg.norm(a.positions[same[0]] - a.positions[same[1]], axis=1)
    np.testing.assert_allclose(m.info["d"], raw.info["d"], atol=1e-9)
    # count, composition and box (hence density) are those of the tiles; seeded
    assert len(m) == 8 * 99 and np.allclose(m.cell.lengths(), 2 * tiles[0].cell.lengths())
    again = relax.relaxed_model("type1_default", n_atoms=800, rng=11)
    assert np.array_equal(again.positions, m.positions)


def _mosaic_q1(atoms):
    from simkit.models import model_peaks

    return model_peaks(atoms, min_box=0.0)["q1"]


def test_mosaic_first_peak_matches_the_single_cells_fast():
    """2×2×2 tiles: the relaxed seams bring the first I·Q peak (2 mrad) back towards the single cells' mean."""
    single = np.mean([_mosaic_q1(s) for s in relax.relaxed_seeds("type1_default")])
    m = relax.relaxed_model("type1_default", n_atoms=800, rng=5)
    assert abs(_mosaic_q1(m) - single) < 0.012


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            "type1_default",
            marks=pytest.mark.xfail(strict=True, reason="relaxed seams overshoot its single cells' q1 by ≈ 0.010 Å⁻¹"),
        ),
        "type2_matrix",
        "electrolyte_hce",
    ],
)
def test_mosaic_first_peak_matches_the_single_cells(name):
    """3×3×3 tiles: the same structure locally has the same first I·Q peak (2 mrad) as the single cells (mean)."""
    seeds = relax.relaxed_seeds(name)
    single = np.mean([_mosaic_q1(s) for s in seeds])
    for rng in (0, 1):
        m = relax.relaxed_model(name, n_atoms=27 * len(seeds[0]), rng=rng)
        assert abs(_mosaic_q1(m) - single) < 0.006, rng
