"""simkit.instrument: the descan plane and ellipse configuration shared by synthesis and analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simkit.instrument import Descan, Ellipse, Instrument, load_instrument


def test_descan_plane_at_the_scan_corners():
    d = Descan(slope_y=0.8, slope_x=-0.6, offset_y=1.5, offset_x=1.0)
    s = d.shifts((4, 10))
    assert s.shape == (4, 10, 2)
    # first row/column: slope·(0 − ½) + offset; last row: slope·((n−1)/n − ½) + offset
    assert s[0, 0].tolist() == pytest.approx([1.5 - 0.4, 1.0 + 0.3])
    assert s[-1, -1].tolist() == pytest.approx([0.8 * (3 / 4 - 0.5) + 1.5, -0.6 * (9 / 10 - 0.5) + 1.0])
    assert np.ptp(s[..., 0], axis=1).max() == 0.0  # y shift depends on the row only


def test_fit_recovers_a_noisy_plane_to_its_standard_error():
    rng = np.random.default_rng(2)
    truth = Descan(slope_y=2.0, slope_x=-1.2, offset_y=0.7, offset_x=-0.3)
    ref = (128.0, 128.0)
    sigma = 0.05  # px, per-pattern centre noise
    centers = np.asarray(ref) + truth.shifts((30, 40)) + rng.normal(0, sigma, (30, 40, 2))
    centers[3, 4] = np.nan  # a pattern without a centre is ignored
    fit = Descan.fit(centers, ref)
    # offset error σ/√N ≈ 0.0014 px; slope error σ·√12/√N ≈ 0.005 px: 5σ bounds
    assert fit.offset_y == pytest.approx(0.7, abs=0.008) and fit.offset_x == pytest.approx(-0.3, abs=0.008)
    assert fit.slope_y == pytest.approx(2.0, abs=0.03) and fit.slope_x == pytest.approx(-1.2, abs=0.03)
    assert fit.center == ref


def test_dict_and_json_round_trip(tmp_path):
    inst = Instrument(descan=Descan(slope_y=0.8, offset_x=1.0, center=(64.0, 60.5)), ellipse=Ellipse(ratio=1.02))
    back = Instrument.from_dict(json.loads(json.dumps(inst.to_dict())))
    assert back == inst
    p = tmp_path / "i.json"
    p.write_text(json.dumps({"ellipse": {"ratio": 1.03, "angle_rad": 0.2}}))
    assert load_instrument(p) == Instrument(ellipse=Ellipse(ratio=1.03, angle=0.2))


@pytest.mark.parametrize(
    ("make", "exc", "words"),
    [
        (lambda: Ellipse(ratio=0.0), ValueError, ["ratio=0.0", "> 0"]),
        (lambda: Descan(slope_y=float("inf")), ValueError, ["slope_y=inf"]),
        (lambda: Instrument(descan=(0.8, -0.6, 1.5, 1.0)), TypeError, ["descan=", "Descan"]),
        (lambda: Instrument.from_dict({"ellipse": {"ratio": 1.0, "angle": 0.5}}), ValueError, ["'angle'", "angle_rad"]),
        (lambda: Instrument.from_dict({"descan": {}, "shear": 1}), ValueError, ["'shear'", "descan"]),
    ],
)
def test_bad_settings_name_what_is_valid(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    for w in words:
        assert w in str(info.value)
