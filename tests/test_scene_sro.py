"""A scene's SRO-peak parameter is the synthesised one: the ground-truth estimator on the noise-free composed
pattern of a pure region returns the requested first-peak position to 0.003 Å⁻¹ (Type 1, Type 2 matrix)."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.geometry import DetectorGeometry
from simkit.library import EntrySpec, build_library
from simkit.synth import compose, truth_peaks
from structures.scenes import Region, Scene

GEOM = DetectorGeometry(shape=(96, 96), pixel_size=0.012)
THICK = 40.0


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    specs = [EntrySpec(kind="vacuum")]
    specs += [EntrySpec(kind="sei_type1", params={"density": d, "n_atoms": 400}, seed=21) for d in (1.5, 2.6)]
    specs += [EntrySpec(kind="type2_matrix", params={"density": d, "n_atoms": 400}, seed=23) for d in (1.5, 2.6)]
    return build_library(
        specs, geometry=GEOM, thickness=THICK, cache_dir=tmp_path_factory.mktemp("sro"), progress=False
    )


def _scene(kind: str, params: dict) -> Scene:
    return Scene(
        name="one",
        layers=(Region(name="r", kind=kind, params=params),),
        interfaces=(),
        thickness=THICK,
        field_shape=(1, 2),
        step=40.0,
    )


def _span(library, kind):
    e = library.by_kind(kind)
    m = truth_peaks(np.stack([x.pattern for x in e]), GEOM, probe=library.probe)
    return float(m.min()), float(m.max())


@pytest.mark.parametrize("kind, entry", [("sei_type1", "sei_type1"), ("sei_type2", "type2_matrix")])
@pytest.mark.parametrize("where", [0.25, 0.75])
def test_requested_sro_peak_is_the_synthesised_truth(library, kind, entry, where):
    """Any peak inside the span of the entries is reproduced: the compositor inverts the measured mixing path."""
    lo, hi = _span(library, entry)
    assert hi - lo > 0.01  # a 1.5 → 2.6 g/cm³ dilation moves the peak
    q = lo + where * (hi - lo)
    params = {"sro_peak": q} if kind == "sei_type1" else {"sro_peak": q, "lif_volume_fraction": 0.0}
    pats, truth = compose(_scene(kind, params), library)
    measured = truth_peaks(pats.reshape(-1, *GEOM.shape), GEOM, probe=library.probe)
    assert np.all(np.abs(measured - q) < 0.003), (kind, q, measured)


def test_denser_entry_peaks_higher_and_truth_density_follows(library):
    # a uniform dilation: the denser entry has the larger first peak, and the truth density of a pixel asked for
    # a peak between the two lies between the two densities
    for kind in ("sei_type1", "type2_matrix"):
        e = sorted(library.by_kind(kind), key=lambda x: x.info["density"])
        m = truth_peaks(np.stack([x.pattern for x in e]), GEOM, probe=library.probe)
        assert m[0] < m[1], (kind, m)
    lo, hi = _span(library, "sei_type1")
    _, truth = compose(_scene("sei_type1", {"sro_peak": 0.5 * (lo + hi)}), library)
    d = sorted(x.info["density"] for x in library.by_kind("sei_type1"))
    assert np.all((truth["density"] > d[0]) & (truth["density"] < d[1]))
