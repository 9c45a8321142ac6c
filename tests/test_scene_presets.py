"""Oracles for structures.scene_presets: every scene's fractions sum to one with library-known region kinds, the
layer order of each situation, the electrolyte tags, and each scene synthesises a tiny scan (simkit.synth) whose
patterns conserve the incident intensity and whose majority regions sit where the layout puts them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simkit.geometry import DetectorGeometry
from simkit.kinematic import disc_radius
from simkit.library import EntrySpec, LibraryEntry, PatternLibrary
from simkit.nbed import Probe
from simkit.synth import DEFAULT_INSTRUMENT, synthesize_scan
from structures.scene_presets import SCENE_NAMES, between_grains, scene, type2_voltage

ELECTROLYTES = ("hce", "lifsi_1m", "lipf6_1m")
# region kinds simkit.synth / simkit.library know (structures.scenes.REGION_KINDS)
KNOWN = {"li_metal", "cu", "li2o", "sei_type1", "sei_type2", "electrolyte", "vacuum"}


def _all_scenes(**kw):
    out = [scene(n, e, **kw) for n in SCENE_NAMES for e in ELECTROLYTES]
    return out + [between_grains(**kw), type2_voltage(0.5, **kw)]


@pytest.mark.parametrize("sc", _all_scenes(), ids=lambda s: s.name)
def test_fractions_sum_to_one_and_kinds_known(sc):
    ny, nx = sc.field_shape
    yy, xx = np.meshgrid(np.arange(ny) * sc.step, np.arange(nx) * sc.step, indexing="ij")
    f = sc.fractions(yy, xx)
    assert np.allclose(f.sum(-1), 1.0, atol=1e-12)
    assert np.all(f >= -1e-12)
    assert {r.kind for r in sc.regions} <= KNOWN


@pytest.mark.parametrize("e", ELECTROLYTES)
def test_electrolyte_tags(e):
    for n in SCENE_NAMES:
        sc = scene(n, e)
        for r in sc.layers:
            if r.kind in ("sei_type1", "sei_type2", "electrolyte"):
                assert r.params["electrolyte"] == e
    top = scene("top", e)
    elec = next(r for r in top.layers if r.kind == "electrolyte")
    # only the HCE electrolyte has a measured SRO peak in the study (0.285 Å⁻¹)
    assert elec.params.get("sro_peak") == (0.285 if e == "hce" else None)


def test_layer_order_of_the_special_situations():
    assert [r.kind for r in between_grains().layers] == ["li_metal", "sei_type1", "li_metal"]
    t2 = type2_voltage(0.3)
    assert [r.kind for r in t2.layers] == ["cu", "sei_type2", "electrolyte"]
    assert t2.oxide is None  # no Li, no Li2O lift-out artefact
    assert t2.layers[1].params["lif_volume_fraction"] == pytest.approx(0.05 * (1 - 0.3 / 1.5))
    with pytest.raises(ValueError, match="electrolyte"):
        scene("bottom", "LP30")
    with pytest.raises(ValueError, match="name"):
        scene("middle")


# ------------------------------------------------------------------------------------------------------------
# tiny synthetic library: each kind is the probe disc minus a scattered fraction s put into a ring at Q_kind,
# so every entry (and every composed pattern) sums to exactly 1 (the incident beam)
# ------------------------------------------------------------------------------------------------------------
RING = {
    "li_metal": (0.40, 0.25),
    "cu": (0.48, 0.35),
    "li2o": (0.36, 0.2),
    "sei_type1": (0.33, 0.1),
    "type2_matrix": (0.295, 0.1),
    "electrolyte": (0.285, 0.08),
}


def _library(thickness):
    geo = DetectorGeometry(shape=(64, 64), pixel_size=0.0125)
    probe = Probe(energy=300e3, semiangle=2.0)
    cy, cx = geo.center
    yy, xx = np.indices(geo.shape)
    rq = np.hypot(yy - cy, xx - cx) * geo.pixel_size
    disc = (rq <= disc_radius(2.0, 300e3)).astype(float)
    disc /= disc.sum()
    entries = [LibraryEntry(spec=EntrySpec(kind="vacuum"), pattern=disc.astype(np.float32), info={}, key="vac")]
    for kind, (q0, s) in RING.items():
        ring = np.exp(-0.5 * ((rq - q0) / 0.02) ** 2)
        pat = (1 - s) * disc + s * ring / ring.sum()
        params = {"density": 2.0} if kind == "sei_type1" else {}
        entries.append(
            LibraryEntry(spec=EntrySpec(kind=kind, params=params), pattern=pat.astype(np.float32), info={}, key=kind)
        )
        # the 1 M electrolytes' own Type 1 and electrolyte entries (the compositor picks entries by variant tag)
        if kind in ("sei_type1", "electrolyte"):
            for name in ("lifsi_1m", "lipf6_1m"):
                tag = {"variant": name} if kind == "sei_type1" else {"electrolyte": name}
                entries.append(
                    LibraryEntry(
                        spec=EntrySpec(kind=kind, params={**params, **tag}),
                        pattern=pat.astype(np.float32),
                        info={},
                        key=f"{kind}-{name}",
                    )
                )
    return PatternLibrary(geometry=geo, probe=probe, thickness=thickness, entries=tuple(entries))


@pytest.mark.parametrize("sc", _all_scenes(field_shape=(2, 12), step=300.0, thickness=300.0), ids=lambda s: s.name)
def test_each_scene_synthesises_a_tiny_scan(sc, tmp_path):
    lib = _library(sc.thickness)
    n_e = 2.0e4
    res = synthesize_scan(
        sc,
        tmp_path / f"{sc.name}.h5",
        library=lib,
        electrons_per_pattern=n_e,
        seed=1,
        progress=False,
        instrument=dataclasses.replace(DEFAULT_INSTRUMENT, descan=None),
    )
    import h5py

    with h5py.File(res.path, "r") as f:
        data = f["root/datacube/data"][()]
    t = res.truth
    assert np.allclose(t["fractions"].sum(-1), 1.0, atol=1e-9)
    # majority region at the far ends of the normal axis: first and last layer
    names = t["region_names"]
    assert names[t["region"][0, 0]] == sc.layers[0].name
    assert names[t["region"][0, -1]] == sc.layers[-1].name
    assert data.shape == (*sc.field_shape, *lib.geometry.shape)
    # intensity conservation + Poisson: mean counts per pattern = n_e within 5 σ of the mean (+1 % for the
    # elliptical resampling at the detector edge)
    tot = data.reshape(data.shape[0] * data.shape[1], -1).sum(-1).astype(float)
    assert abs(tot.mean() - n_e) < 5 * np.sqrt(n_e / tot.size) + 0.01 * n_e
