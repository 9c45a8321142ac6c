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
    e = library.by_kind(entry)
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
    constant value, both ends of an inner→outer gradient, and ±1 rms of a smooth local variation (not around
    the outer end, see below)."""
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
                # the variation around a gradient's outer end (0.295 ± 2 %) dips below the Type 1 span (clipped
                # at ≈ 0.296 Å⁻¹, README): only the end itself is required there
                facs = {1.0} if k == "sro_peak_outer" else {1.0, 1 - rms, 1 + rms}
                for fac in facs:
                    out.add((sc.name, r.kind, round(float(p[k]) * fac, 4), str(p.get("electrolyte", "hce"))))
    return sorted(out)


def test_every_preset_sro_request_is_covered():
    # the oracle below is only as good as its list: the presets ask for Type 1, Type 2 and electrolyte peaks
    kinds = {k for _, k, _, _ in _preset_requests()}
    assert kinds == {"sei_type1", "sei_type2", "electrolyte"}
    assert any(k == "electrolyte" and abs(q - 0.285) < 1e-9 for _, k, q, _ in _preset_requests())


def _cases():
    # every request; the top interface's outer Type 1 (0.295 Å⁻¹) is not reachable by the 0 GPa-minimised Type 1
    # model: under uniform dilation its convolved I·Q maximum bottoms out at ≈ 0.298 Å⁻¹ near 0.9 g/cm³ (0.8: 0.299;
    # 0.6–0.7: no maximum), so the compositor clips that request to the span's end (README)
    out = []
    for k, q in sorted({(k, q) for _, k, q, _ in _preset_requests()}):
        if k == "sei_type1" and q < 0.297:
            out.append(pytest.param(k, q, marks=pytest.mark.xfail(strict=True, reason="below the Type 1 span")))
        else:
            out.append((k, q))
    return out


@pytest.mark.parametrize("kind, q", _cases())
def test_preset_sro_requests_are_the_synthesised_truth(library, prepared, kind, q):
    """Each position a scene preset requests is what the truth estimator measures on the composed pattern."""
    params = {"sro_peak": q} if kind != "sei_type2" else {"sro_peak": q, "lif_volume_fraction": 0.0}
    measured, truth = _measured(library, prepared, kind, params)
    assert np.all(np.abs(measured - q) < 0.003), (kind, q, measured)
    assert np.all(np.isfinite(truth["density"]))  # the truth says what density the request cost


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
    for kind in ("sei_type1", "type2_matrix", "electrolyte"):
        e = sorted(library.by_kind(kind), key=lambda x: x.info["density"])
        m = truth_peaks(np.stack([x.pattern for x in e]), GEOM, probe=library.probe)
        m = m[np.isfinite(m)]  # the most dilute Type 1 entry shows a shoulder, no maximum
        assert m.size >= 2 and np.all(np.diff(m) > 0), (kind, m)
    for kind, entry in (("sei_type1", "sei_type1"), ("electrolyte", "electrolyte")):
        e = sorted(library.by_kind(entry), key=lambda x: x.info["density"])
        m = truth_peaks(np.stack([x.pattern for x in e[-2:]]), GEOM, probe=library.probe)
        _, truth = _measured(library, prepared, kind, {"sro_peak": float(m.mean())})
        d = [x.info["density"] for x in e[-2:]]
        assert np.all((truth["density"] > d[0]) & (truth["density"] < d[1])), (kind, truth["density"], d)
