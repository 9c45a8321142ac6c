"""One pass over the data in :func:`fitting.pipeline.analyze_scan`: the ellipse measured on a column strip before
the main pass, checked on the whole scan's Bragg-free amorphous pixels afterwards.

Oracles:

* geometry — an ellipse of ratio ρ left uncorrected scales the azimuthal mean radius of a ring at Q₀ by
  (1 + ρ)/2 to first order (stretch ρ along one axis, 1 across). A leftover composed into the plan's ellipse
  (unit-perpendicular normalisation) thus moves an SRO peak by up to ≈ Q₀·(ρ − 1)/2 — along or across the
  plan's axis, not diagonally. Measured here with the file's true ellipse given and the same ellipse composed with
  a leftover of exactly the check's tolerance: at ρ − 1 = 0.003 the class-mean peaks moved by −0.00047/+0.00065
  (Type 1, 0.318 Å⁻¹) and −0.00052 Å⁻¹ (Type 2, 0.271), ≈ 1.0–1.4 × the geometric ring shift (at 0.002:
  ≤ 0.00043);
* ground truth — the regions the layered file was made of (tests/streaming_helpers.py): the single-pass classes
  are as right as the former two-pass classes; the SRO peaks of the two agree to the tolerance above.
"""

from __future__ import annotations

import numpy as np
import pytest

import fitting.pipeline as pipeline
from fitting.calibrate import compose_ellipse
from fitting.classify import CLASSES
from fitting.pipeline import EARLY_ELLIPSE_TOL, analyze_scan
from simkit.instrument import Ellipse, Instrument
from tests.streaming_helpers import expected_rows, write_scan_file

#: The files' ellipse (simkit.radial convention): tests/streaming_helpers.expected_rows.
TRUE_ELLIPSE = (1.01, 0.5)
#: Largest class-mean SRO peak move [Å⁻¹] the tolerance of the ellipse check may cause (measured 0.00065).
PEAK_TOL = 0.0007
#: Largest class-mean SRO peak difference [Å⁻¹] from the former two-pass path (its own ellipse error included).
TWO_PASS_TOL = 0.001
SHAPE = (40, 24)
NAMES = {"li": "li_metal", "cu": "cu", "type1": "sei_type1", "type2": "sei_type2"}


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    path = write_scan_file(tmp_path_factory.mktemp("single") / "scan.h5", SHAPE, seed=11)
    from tests.synthetic_scan_helpers import REGIONS

    regions = expected_rows(SHAPE[0], seed=11)[1]  # per scan row (the layers are stacked along y)
    truth = np.array([CLASSES.index(NAMES[REGIONS[r]]) for r in regions])[:, None].repeat(SHAPE[1], axis=1)
    return path, truth


def _class_means(res, other=None, where=True):
    """Mean SRO peak [Å⁻¹] per SEI class over its fitted pixels (with ``other``: those ``where`` both agree and
    both are fitted)."""
    out = {}
    for c in ("sei_type1", "sei_type2"):
        sel = (res.classes == CLASSES.index(c)) & np.isfinite(res.peak_map.position) & where
        if other is not None:
            sel &= np.isfinite(other.peak_map.position)
        out[c] = float(np.mean(res.peak_map.position[sel]))
    return out


def test_leftover_ellipse_of_the_tolerance_moves_the_sro_peak_by_under_7e_4(layered):
    path, _ = layered
    true = Instrument(ellipse=Ellipse(ratio=TRUE_ELLIPSE[0], angle=TRUE_ELLIPSE[1]))
    base = analyze_scan(path, None, figures=False, instrument=true)
    for extra in (0.0, np.pi / 4, np.pi / 2):  # leftover along, diagonal to and across the true axis
        ratio, angle = compose_ellipse(*TRUE_ELLIPSE, 1.0 + EARLY_ELLIPSE_TOL, TRUE_ELLIPSE[1] + extra)
        res = analyze_scan(path, None, figures=False, instrument=Instrument(ellipse=Ellipse(ratio=ratio, angle=angle)))
        same = res.classes == base.classes  # a borderline pixel may change class (Type 2 / electrolyte)
        assert same.mean() >= 0.99
        got, ref = _class_means(res, base, same), _class_means(base, res, same)
        for c, q0 in ref.items():
            move = got[c] - q0
            print(f"leftover {EARLY_ELLIPSE_TOL} at +{extra:.2f} rad: {c} SRO peak at {q0:.4f} moves {move:+.5f} Å⁻¹")
            # first order: up to Q₀·(ρ − 1)/2 = 0.00041–0.00048 Å⁻¹ at 0.27–0.32 Å⁻¹
            assert abs(move) <= PEAK_TOL, (c, extra, move)
            assert abs(move) <= 1.5 * q0 * EARLY_ELLIPSE_TOL / 2, (c, extra, move)


def test_single_pass_meets_the_two_pass_result_and_the_truth(layered, monkeypatch):
    path, truth = layered
    one = analyze_scan(path, None, figures=False)
    assert one.summary["ellipse_check"].endswith("single pass"), one.summary["ellipse_check"]
    assert "columns" in one.summary["ellipse_source"]
    monkeypatch.setattr(pipeline, "EARLY_ELLIPSE_ROWS", 0)  # the former path: ellipse after a first pass
    two = analyze_scan(path, None, figures=False)
    assert two.summary["ellipse_check"] is None
    # the two ellipses within the check's tolerance of each other, and the single pass's as near the file's 1.01
    # (on this small scan both read 1.005–1.007: few Bragg-free amorphous pixels; 1.009–1.011 at 90 × 60 and up)
    r1, r2 = one.summary["ellipse_ratio"], two.summary["ellipse_ratio"]
    assert abs(r1 / r2 - 1) <= EARLY_ELLIPSE_TOL, (r1, r2)
    assert abs(r1 - TRUE_ELLIPSE[0]) < 0.006 and abs(r2 - TRUE_ELLIPSE[0]) < 0.006, (r1, r2)
    # classes: as right against the regions of the file as before (pure rows; interface rows mix two regions)
    acc1, acc2 = np.mean(one.classes == truth), np.mean(two.classes == truth)
    assert acc1 >= acc2 - 0.01 and acc1 > 0.9, (acc1, acc2)
    assert np.mean(one.classes == two.classes) >= 0.99
    # SRO peaks: the former path's ellipse is one first-order measurement (no iteration, no check), so the two
    # differ by the check's tolerance plus the former's own error: class means within TWO_PASS_TOL (measured
    # 0.0005 Å⁻¹ on Type 1 of this file), per pixel a median within PEAK_TOL
    m1, m2 = _class_means(one), _class_means(two)
    d = one.peak_map.position - two.peak_map.position
    print(f"class means single/two pass {m1} {m2}; per-pixel median |Δ| {np.nanmedian(np.abs(d)):.5f} Å⁻¹")
    for c in m1:
        assert abs(m1[c] - m2[c]) <= TWO_PASS_TOL, (c, m1[c], m2[c])
    assert np.nanmedian(np.abs(d)) <= PEAK_TOL


def test_a_failed_check_makes_the_profiles_again(layered, monkeypatch):
    """With a zero tolerance the check sends the analysis to the second pass with the whole scan's ellipse (the
    early ellipse composed with the leftover), which lands where the former path's did."""
    path, _ = layered
    monkeypatch.setattr(pipeline, "EARLY_ELLIPSE_TOL", 0.0)
    res = analyze_scan(path, None, figures=False)
    assert res.summary["ellipse_check"].endswith("profiles made again"), res.summary["ellipse_check"]
    monkeypatch.setattr(pipeline, "EARLY_ELLIPSE_ROWS", 0)
    two = analyze_scan(path, None, figures=False)
    assert abs(res.summary["ellipse_ratio"] / two.summary["ellipse_ratio"] - 1) <= EARLY_ELLIPSE_TOL


def test_small_scans_keep_the_former_path(tmp_path):
    """Scans of at most DESCAN_ROWS rows are read whole for their centres anyway: the ellipse is refined after
    the first pass as before (no early measurement, no check)."""
    path = write_scan_file(tmp_path / "small.h5", (pipeline.DESCAN_ROWS, 40), seed=2)
    res = analyze_scan(path, None, figures=False)
    assert res.summary["ellipse_check"] is None


def test_streamed_single_pass_reads_every_pattern_once(layered, monkeypatch):
    """Streamed (``memory_budget=0``), the single pass reads every pattern once, plus the descan rows, the column
    strips of the early ellipse (at most half the columns), the selected pixels of its measurements and of the
    check, and the calibration's mean pattern (≤ 256 patterns): ``ScanSource.patterns_read``."""
    from fitting.chunks import ScanSource

    made = []
    init = ScanSource.__init__

    def recording(self, *a, **kw):
        init(self, *a, **kw)
        made.append(self)

    monkeypatch.setattr(ScanSource, "__init__", recording)
    path, _ = layered
    res = analyze_scan(path, None, figures=False, memory_budget=0)
    assert res.summary["ellipse_check"].endswith("single pass"), res.summary["ellipse_check"]
    sy, sx = SHAPE
    amorphous = sum(res.summary["class_counts"][c] for c in ("sei_type1", "sei_type2", "electrolyte"))
    strips = sy * sx // 2 + sy
    extra = pipeline.DESCAN_ROWS * sx + strips + (2 + pipeline.EARLY_ELLIPSE_ITERATIONS) * amorphous + 256
    got = sum(s.patterns_read for s in made)
    print(f"patterns read {got} of {sy * sx} ({got / (sy * sx):.2f} per pattern)")
    assert sy * sx <= got <= sy * sx + extra
