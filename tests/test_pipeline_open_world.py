"""fitting.pipeline.analyze_scan and ``sei-send analyze`` on scans the rules were not tuned for: no amorphous
pixel at all, a detector mask file, a rules file, hot pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fitting.cli import main
from tests.synthetic_scan_helpers import REGIONS, make_scan, write_emd


@pytest.fixture(scope="module")
def metal_scan(tmp_path_factory):
    """Li metal and vacuum only (no SEI, no electrolyte): 4 × 6 patterns, one static hot pixel, one blank frame."""
    codes = np.full((4, 6), REGIONS.index("li"))
    codes[:, :2] = REGIONS.index("vacuum")
    data, truth = make_scan(codes, rng=4, electrons=1e5, det_shape=(96, 96))
    data[:, :, 10, 80] = 60000  # a hot pixel in every frame
    data[3, 5] = 0  # a blank frame (the detector missed it)
    data[1, 3, 30, 30] = 50000  # a cosmic-ray hit in one frame
    d = tmp_path_factory.mktemp("metal")
    path = d / "metal.h5"
    write_emd(path, data, step=40.0, pixel_size=truth["pixel_size"])
    return path, data, truth


def test_cli_finishes_on_a_scan_without_amorphous_pixels(metal_scan, tmp_path, capsys):
    path, data, truth = metal_scan
    mask = np.ones(data.shape[-2:], dtype=bool)
    mask[:5, :] = False  # e.g. a detector edge
    np.save(tmp_path / "mask.npy", mask)
    (tmp_path / "rules.json").write_text(json.dumps({"dense_min": 0.25}))
    out = tmp_path / "ana"
    with pytest.warns(UserWarning, match="blank"):
        rc = main(["analyze", str(path), "-o", str(out), "--mask", str(tmp_path / "mask.npy"), "--rules",
                   str(tmp_path / "rules.json")])  # fmt: skip
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["sro_peak_mean_A^-1"] is None and s["histogram_components"] is None  # no amorphous pixel: no SRO
    assert s["class_counts"]["li_metal"] + s["class_counts"]["vacuum"] == 23 and s["class_counts"]["unassigned"] == 1
    assert any("blank" in w for w in s["warnings"])
    assert s["classify_rules"]["dense_min"] == 0.25 and s["user_mask_pixels_excluded"] == 5 * 96
    assert s["bad_pixels"]["hot_pixels"] == 1 and s["bad_pixels"]["hot_pixel_list_px"] == [[10, 80]]
    assert s["bad_pixels"]["transient_hot_taken_out"] == 1
    assert (out / "class_map.png").is_file()
    assert "1 hot" in capsys.readouterr().out


def test_analyze_scan_takes_rules_and_a_mask_file(metal_scan, tmp_path):
    from fitting.classify import ClassifyRules
    from fitting.pipeline import analyze_scan

    path, data, truth = metal_scan
    np.save(tmp_path / "m.npy", np.ones(data.shape[-2:], dtype=bool))
    with pytest.warns(UserWarning, match="blank"):
        res = analyze_scan(path, None, mask=tmp_path / "m.npy", rules=ClassifyRules(vacuum_max=1.0), figures=False)
    assert (res.classes.ravel()[:-1] == 0).all()  # everything below a scattered fraction of 1 is vacuum
    assert not res.calibration.plan.mask[10, 80]  # the hot pixel is out of every profile
    with pytest.raises(ValueError, match="unknown field"):
        analyze_scan(path, None, rules={"vacuum_mx": 1.0}, figures=False)
    with pytest.raises(ValueError, match="mask.shape"):
        analyze_scan(path, None, mask=np.ones((5, 5), bool), figures=False)


@pytest.mark.parametrize("n_sro", [5, 8])
def test_few_sro_pixels_get_a_single_gaussian_and_a_warning(n_sro, tmp_path):
    """5–8 pixels with an SRO peak are too few for the BIC mixture (3 values per component, k ≤ 3): the analysis
    finishes with one Gaussian whose mean is the mean of the mapped peaks, and says so in the summary."""
    from fitting.pipeline import analyze_scan

    codes = np.full((3, 4), REGIONS.index("li"))
    codes.ravel()[:n_sro] = REGIONS.index("type2")
    data, truth = make_scan(codes, rng=5, electrons=1e5, det_shape=(96, 96))
    write_emd(tmp_path / "few.h5", data, step=40.0, pixel_size=truth["pixel_size"])
    res = analyze_scan(tmp_path / "few.h5", None, figures=False)
    s = res.summary
    n = s["sro_peak_fitted_pixels"]
    assert 5 <= n < 9, f"the scene should give 5-8 mapped SRO peaks, got {n}"
    assert len(s["histogram_components"]) == 1
    assert s["histogram_components"][0]["mean_A^-1"] == pytest.approx(s["sro_peak_mean_A^-1"], abs=1e-9)
    assert any("single Gaussian" in w and f"only {n} pixels" in w for w in s["warnings"])


def test_histogram_mixture_by_number_of_peaks():
    from fitting.pipeline import histogram_mixture

    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(0.295, 0.002, 30), rng.normal(0.335, 0.002, 30)])
    notes: list[str] = []
    assert histogram_mixture(two[:4], warnings_out=notes) is None and not notes  # < 5: no histogram fit
    assert len(histogram_mixture(two, warnings_out=notes).means) > 1 and not notes  # ≥ 9: BIC over k = 1–3
    one = histogram_mixture(two[::8], warnings_out=notes)  # 8 values
    assert len(one.means) == 1 and one.means[0] == pytest.approx(np.mean(two[::8]), abs=1e-9)
    assert len(notes) == 1 and "only 8 pixels" in notes[0]
