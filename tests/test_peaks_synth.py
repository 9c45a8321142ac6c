"""SRO peak maps on real synthetic scans (simkit.synth, 2 mrad, the default 10⁶ e/pattern) against their ground
truth — issue 8, item 7 ("median error < 0.003 Å⁻¹ at the default dose").

Oracle: the truth stored in the scan file, the SRO estimator applied by simkit.synth to each pixel's noise-free,
undistorted pattern (same estimator and window as the analysis; see simkit.peak_estimator.sro_window), and the known
instrument distortion the synthesiser applied (ellipse 1.02 at 0.5 rad).

What the numbers say: per pixel the error is Poisson-limited (the reported σ matches the scatter, and
tests/test_peak_estimator.py shows the estimator sits at the Cramér–Rao bound), so it falls as 1/√dose: 0.0026–0.0042
Å⁻¹ at 10⁵ e (0.0068 on Type 2 pixels with bright LiF discs), 0.0008–0.0023 Å⁻¹ at the default 10⁶ e.
"""

from __future__ import annotations

import numpy as np
import pytest

from fitting.demo import read_truth
from fitting.pipeline import analyze_scan
from tests.test_classify_synth import DOSE, library  # noqa: F401  (the cached tiny library fixture)

PURE = 0.8


def _analysed(library, tmp_path, name, seed, field=(12, 90)):  # noqa: F811
    from simkit.synth import default_scan, synthesize_scan

    scene, _ = default_scan(name, field_shape=field)
    path = tmp_path / f"{name}.h5"
    synthesize_scan(scene, path, library=library, electrons_per_pattern=DOSE, progress=False, seed=seed)
    return read_truth(path), analyze_scan(path, None, figures=False), path


def _errors(pos, err, truth, regions, b=1):
    names = list(truth["region_names"])
    reg, frac, tp = truth["region"], truth["region_fraction"], truth["sro_peak"]
    if b > 1:
        sy, sx = (reg.shape[0] // b) * b, (reg.shape[1] // b) * b

        def blocks(a):
            return a[:sy, :sx].reshape(sy // b, b, sx // b, b).transpose(0, 2, 1, 3).reshape(sy // b, sx // b, b * b)

        R = blocks(reg)
        sel = (R == R[..., :1]).all(-1) & np.isin(R[..., 0], [names.index(r) for r in regions])
        sel &= blocks(frac).min(-1) >= PURE
        sel &= np.isfinite(blocks(tp)).all(-1)
        tp = np.where(sel[..., None], blocks(tp), 0.0).mean(-1)
    else:
        sel = np.isin(reg, [names.index(r) for r in regions]) & (frac >= PURE) & np.isfinite(tp)
    fitted = np.isfinite(pos[sel])
    d = (pos - tp)[sel][fitted]
    return d, err[sel][fitted], fitted.mean(), int(sel.sum())


def _measure(truth, res, regions) -> dict:
    """Ellipse and per-pixel errors of the analysis against the file's truth."""
    pm = res.peak_map
    d, e, fitted, n = _errors(pm.position, pm.position_err, truth, regions)
    return {
        "ellipse": res.calibration.ellipse, "n": n, "fitted": fitted, "median_abs": float(np.median(np.abs(d))),
        "bias": float(np.median(d)), "pull_sd": float(np.std(d / e)),
    }  # fmt: skip


def test_top_scan_peak_map_meets_truth(library, tmp_path):  # noqa: F811
    truth, res, path = _analysed(library, tmp_path, "top", seed=4)
    ell = res.calibration.ellipse  # the synthesiser's ellipse is 1.02 at 0.5 rad
    assert ell is not None and abs(ell.ratio - 1.02) < 0.006 and abs(ell.angle - 0.5) < 0.15, ell
    for regions in (("type1",), ("electrolyte",)):
        m = _measure(truth, res, regions)
        assert m["n"] >= 40 and m["fitted"] > 0.95, (regions, m)
        assert m["median_abs"] < 0.003, (regions, m)  # issue 8: < 0.003 Å⁻¹ at the default dose, per pixel
        assert abs(m["bias"]) < 0.001, (regions, m)  # no bias (an uncorrected ellipse gave +0.002–0.004)
        assert 0.6 < m["pull_sd"] < 1.6, (regions, m)  # honest uncertainties


@pytest.mark.slow
def test_bottom_scan_peak_map_meets_truth(library, tmp_path):  # noqa: F811
    truth, res, path = _analysed(library, tmp_path, "bottom", seed=5, field=(24, 90))
    ell = res.calibration.ellipse
    assert ell is not None and abs(ell.ratio - 1.02) < 0.006 and abs(ell.angle - 0.5) < 0.15, ell
    # Type 2: LiF discs of random orientation inside the SRO window add to the noise (per pixel 0.0068 at 10⁵ e)
    for regions in (("type1",), ("type2",)):
        m = _measure(truth, res, regions)
        assert m["n"] >= 40 and m["fitted"] > 0.95, (regions, m)
        assert m["median_abs"] < 0.003, (regions, m)
        assert abs(m["bias"]) < 0.002, (regions, m)
        # < 2, not 1.6: the ellipse measured on the ≈ 50 Bragg-free amorphous pixels of this small scan (1.015–1.020
        # for a true 1.020 at any dose) leaves ≈ ±0.001 Å⁻¹ that the per-pixel σ (≈ 0.0018 at 10⁶ e) leaves out
        assert 0.6 < m["pull_sd"] < 2.0, (regions, m)


def test_peak_error_falls_as_one_over_root_dose(library, tmp_path):  # noqa: F811
    """Poisson statistics: 4× the electrons per pattern halves the per-pixel SRO peak error (noise-limited
    estimator, no floor from calibration or model), and at 4 × 10⁵ e the per-pixel median error is < 0.003 Å⁻¹ —
    what a user needs for single-pixel maps (62.5 → 250 e/Å² scan fluence, 7 % of the 3600 e/Å² at which the
    study saw Type 1 turn into Li₂O)."""
    from simkit.synth import default_scan, synthesize_scan

    scene, _ = default_scan("top", field_shape=(8, 90))
    med = {}
    for dose in (1.0e5, 4.0e5):
        path = tmp_path / f"top_{dose:.0e}.h5"
        synthesize_scan(scene, path, library=library, electrons_per_pattern=dose, progress=False, seed=4)
        truth, res = read_truth(path), analyze_scan(path, None, figures=False)
        d, e, fitted, n = _errors(res.peak_map.position, res.peak_map.position_err, truth, ("type1", "electrolyte"))
        assert n >= 200 and fitted > 0.95, (dose, n, fitted)
        assert 0.6 < np.std(d / e) < 1.6, dose  # the reported σ follows the dose too
        med[dose] = float(np.median(np.abs(d)))
    ratio = med[4.0e5] / med[1.0e5]
    assert 0.35 < ratio < 0.7, med  # 1/√4 = 0.5
    assert med[4.0e5] < 0.003, med
