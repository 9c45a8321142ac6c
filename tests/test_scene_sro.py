"""A scene's SRO-peak parameter is the synthesised one: the ground-truth estimator on the noise-free composed
pattern of a pure region returns the requested first-peak position to 0.003 Å⁻¹ — for Type 1, the Type 2 matrix
and the vitrified electrolyte, and for every SRO position that a scene preset asks for (with the amorphous
entries of the library presets)."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.geometry import DetectorGeometry
from simkit.library import EntrySpec, build_library, preset_specs
from simkit.synth import _prepare, compose, truth_peaks
from structures import scene_presets, scenes
from structures.scenes import Region, Scene

GEOM = DetectorGeometry()  # the library's default detector (what make demo uses)
THICK = 40.0
_AMORPHOUS = ("sei_type1", "type2_matrix", "electrolyte")
_ENTRY = {"sei_type1": "sei_type1", "sei_type2": "type2_matrix", "electrolyte": "electrolyte"}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The amorphous entries of the tiny preset (the same densities as every preset) plus vacuum."""
    specs = [EntrySpec(kind="vacuum")] + [s for s in preset_specs("tiny") if s.kind in _AMORPHOUS]
    return build_library(
        specs, geometry=GEOM, thickness=THICK, cache_dir=tmp_path_factory.mktemp("sro"), progress=False
    )


@pytest.fixture(scope="module")
def prepared(library):
    return _prepare(library)


def _scene(kind: str, params: dict) -> Scene:
    return Scene(
        name="one",
        layers=(Region(name="r", kind=kind, params=params),),
        interfaces=(),
        thickness=THICK,
        field_shape=(1, 2),
        step=40.0,
    )


def _measured(library, prepared, kind, params):
    pats, truth = compose(_scene(kind, params), library, prepared=prepared)
    return truth_peaks(pats.reshape(-1, *GEOM.shape), GEOM, probe=library.probe), truth


def _span(library, entry):
    # one structure's dilations: the region's own model (the other Type 1 candidates carry params["model"])
    e = [x for x in library.by_kind(entry) if "model" not in x.spec.params]
    m = truth_peaks(np.stack([x.pattern for x in e]), GEOM, probe=library.probe)
    return float(np.nanmin(m)), float(np.nanmax(m))


@pytest.mark.parametrize("kind", ["sei_type1", "sei_type2", "electrolyte"])
@pytest.mark.parametrize("where", [0.25, 0.75])
def test_requested_sro_peak_is_the_synthesised_truth(library, prepared, kind, where):
    """Any peak inside the span of the entries is reproduced: the compositor inverts the measured mixing path."""
    lo, hi = _span(library, _ENTRY[kind])
    assert hi - lo > 0.01  # the dilations move the peak
    q = lo + where * (hi - lo)
    params = {"sro_peak": q} if kind != "sei_type2" else {"sro_peak": q, "lif_volume_fraction": 0.0}
    measured, _ = _measured(library, prepared, kind, params)
    assert np.all(np.abs(measured - q) < 0.003), (kind, q, measured)


def _preset_requests():
    """(scene, region kind, requested first-peak position [Å⁻¹]) of every SRO position the presets ask for: the
    constant value, both ends of an inner→outer gradient, and ±1 rms of a smooth local variation."""
    all_scenes = [scene_presets.scene(n, e) for n in scene_presets.SCENE_NAMES for e in ("hce", "lifsi_1m", "lipf6_1m")]
    all_scenes += [scene_presets.between_grains(), scene_presets.type2_voltage(), scenes.bottom(), scenes.top()]
    out = set()
    for sc in all_scenes:
        for r in sc.regions:
            if r.kind not in _ENTRY:
                continue
            p = r.params
            rms = float(p.get("variation_rms", 0.0))
            for k in ("sro_peak", "sro_peak_inner", "sro_peak_outer"):
                if k not in p:
                    continue
                for fac in (1.0, 1 - rms, 1 + rms):
                    out.add((sc.name, r.kind, round(float(p[k]) * fac, 4), str(p.get("electrolyte", "hce"))))
    return sorted(out)


def test_every_preset_sro_request_is_covered():
    # the oracle below is only as good as its list: the presets ask for Type 1, Type 2 and electrolyte peaks
    kinds = {k for _, k, _, _ in _preset_requests()}
    assert kinds == {"sei_type1", "sei_type2", "electrolyte"}
    assert any(k == "electrolyte" and abs(q - 0.285) < 1e-9 for _, k, q, _ in _preset_requests())


def _cases():
    return sorted({(k, q) for _, k, q, _ in _preset_requests()})


@pytest.mark.parametrize("kind, q", _cases())
def test_preset_sro_requests_are_the_synthesised_truth(library, prepared, kind, q):
    """Each position a scene preset requests is what the truth estimator measures on the composed pattern."""
    params = {"sro_peak": q} if kind != "sei_type2" else {"sro_peak": q, "lif_volume_fraction": 0.0}
    measured, truth = _measured(library, prepared, kind, params)
    assert np.all(np.abs(measured - q) < 0.003), (kind, q, measured)
    assert np.all(np.isfinite(truth["density"]))  # the truth says what density the request cost
    if kind == "sei_type1":  # … and which Type 1 model it took
        assert np.all(truth["sei_type1_model"] >= 0)


def _type1_span(library, model):
    e = [x for x in library.by_kind("sei_type1") if x.spec.params.get("model") == model]
    m = truth_peaks(np.stack([x.pattern for x in e]), GEOM, probe=library.probe)
    return m, np.array([x.info["density"] for x in e])


def test_request_below_the_default_span_takes_the_candidate_whose_span_holds_it(library, prepared):
    """The top interface's outer 0.295 Å⁻¹ lies below every density of type1_default (its convolved I·Q maximum
    bottoms out near 0.30 Å⁻¹): the truth says the pixel is type1_nso at a density between those of the two
    type1_nso entries whose peaks bracket 0.295 (a uniform dilation: peak and density rise together); inside the
    default span the default model stays."""
    # the lowest peak any mixture of the default model's entries reaches (the compositor's mixing path)
    assert prepared.t1_peak["hce"][0][0] > 0.297  # else the case below would not test the fallback
    m, dens = _type1_span(library, "type1_nso")
    assert np.nanmin(m) < 0.289 and np.nanmax(m) > 0.300  # spans the outer request and its ±2 % variation
    below, above = dens[m < 0.295].max(), dens[m > 0.295].min()
    measured, truth = _measured(library, prepared, "sei_type1", {"sro_peak": 0.295})
    assert np.all(np.abs(measured - 0.295) < 0.003), measured
    names = truth["sei_type1_models"]
    assert {names[i] for i in truth["sei_type1_model"].ravel()} == {"type1_nso"}
    assert np.all((truth["density"] > below) & (truth["density"] < above)), (truth["density"], below, above)
    _, truth = _measured(library, prepared, "sei_type1", {"sro_peak": 0.33})
    assert {names[i] for i in truth["sei_type1_model"].ravel()} == {"type1_default"}


def test_type1_request_outside_every_span_is_clipped_to_the_own_model(library, prepared):
    # no candidate reaches 0.20 Å⁻¹: the region's own model at the low end of its mixing path, and the truth says so
    measured, truth = _measured(library, prepared, "sei_type1", {"sro_peak": 0.20})
    lo = prepared.t1_peak["hce"][0][0]
    assert np.all(np.abs(measured - lo) < 0.003), (measured, lo)
    assert {truth["sei_type1_models"][i] for i in truth["sei_type1_model"].ravel()} == {"type1_default"}


def test_electrolyte_without_sro_peak_is_undilated(library, prepared):
    # no requested peak: the electrolyte is the relaxed model at its own (physical) density, not a dilation
    _, truth = _measured(library, prepared, "electrolyte", {})
    pats, _ = compose(_scene("electrolyte", {}), library, prepared=prepared)
    plain = [e for e in library.by_kind("electrolyte") if "density" not in e.spec.params]
    assert plain
    m = truth_peaks(pats.reshape(-1, *GEOM.shape), GEOM, probe=library.probe)
    m_plain = truth_peaks(np.stack([e.pattern for e in plain]), GEOM, probe=library.probe)
    assert np.all(np.isin(np.round(m, 6), np.round(m_plain, 6)))


def test_denser_entry_peaks_higher_and_truth_density_follows(library, prepared):
    # a uniform dilation: the denser entry has the larger first peak, and the truth density of a pixel asked for
    # a peak between two neighbours lies between their densities
    def family(kind, model=None):  # the dilations of one structure
        e = [x for x in library.by_kind(kind) if x.spec.params.get("model") == model]
        return sorted(e, key=lambda x: x.info["density"])

    for kind, model in (("sei_type1", None), ("sei_type1", "type1_nso"), ("type2_matrix", None), ("electrolyte", None)):
        e = family(kind, model)
        m = truth_peaks(np.stack([x.pattern for x in e]), GEOM, probe=library.probe)
        m = m[np.isfinite(m)]  # the most dilute Type 1 entry shows a shoulder, no maximum
        assert m.size >= 2 and np.all(np.diff(m) > 0), (kind, model, m)
    for kind, entry in (("sei_type1", "sei_type1"), ("electrolyte", "electrolyte")):
        e = family(entry)
        m = truth_peaks(np.stack([x.pattern for x in e[-2:]]), GEOM, probe=library.probe)
        _, truth = _measured(library, prepared, kind, {"sro_peak": float(m.mean())})
        d = [x.info["density"] for x in e[-2:]]
        assert np.all((truth["density"] > d[0]) & (truth["density"] < d[1])), (kind, truth["density"], d)


def test_scan_file_records_which_type1_model_each_pixel_is(library, tmp_path):
    # the written ground truth says per pixel which Type 1 model (and density) the synthesiser used: two Type 1
    # regions side by side asking for 0.33 and 0.295 Å⁻¹, one pixel each (the 2 mrad probe is a point)
    from simkit.emd import read_truth
    from simkit.synth import synthesize_scan
    from structures.scenes import Interface

    sc = Scene(
        name="two",
        layers=(
            Region(name="a", kind="sei_type1", params={"sro_peak": 0.33}),
            Region(name="b", kind="sei_type1", params={"sro_peak": 0.295}),
        ),
        interfaces=(Interface(position=500.0),),
        thickness=THICK,
        field_shape=(1, 2),
        step=1000.0,
    )
    res = synthesize_scan(sc, tmp_path / "two.h5", library=library, seed=1, progress=False)
    t = read_truth(res.path)
    assert t["sei_type1_models"] == res.truth["sei_type1_models"]
    assert [t["sei_type1_models"][i] for i in t["sei_type1_model"].ravel()] == ["type1_default", "type1_nso"]
    assert np.all(np.abs(t["sro_peak"].ravel() - [0.33, 0.295]) < 0.003), t["sro_peak"]
    assert np.all(np.isfinite(t["density"]))
