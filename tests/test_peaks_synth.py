"""SRO peak maps on real synthetic scans (simkit.synth, 2 mrad, the default 10⁵ e/pattern) against their ground
truth — issue 8, item 7 ("median error < 0.003 Å⁻¹ at the default dose").

Oracle: the truth stored in the scan file, the SRO estimator applied by simkit.synth to each pixel's noise-free,
undistorted pattern (same estimator and window as the analysis; see simkit.peakpos.sro_window), and the known
instrument distortion the synthesiser applied (ellipse 1.02 at 0.5 rad).

What the numbers say: per pixel at 10⁵ e the error is noise-limited (≈ 0.003–0.004 Å⁻¹ median, the reported σ
matches the scatter, and tests/test_peakpos.py shows the estimator sits at the Poisson Cramér–Rao bound), so the
0.003 Å⁻¹ target is met after 2 × 2 binning (8 nm pixels, still half the 15 nm Type 1 layer), not per pixel.
"""

from __future__ import annotations

import numpy as np
import pytest

from fitting.demo import _read_truth, analyze_scan
from fitting.peaks import sro_peak_map
from fitting.profiles import scan_profiles
from tests.test_classify_synth import DOSE, library  # noqa: F401  (the cached tiny library fixture)

PURE = 0.8


def _analysed(library, tmp_path, name, seed, field=(12, 90)):  # noqa: F811
    from simkit.synth import default_scan, synthesize_scan

    scene, _ = default_scan(name, field_shape=field)
    path = tmp_path / f"{name}.h5"
    synthesize_scan(scene, path, library=library, electrons_per_pattern=DOSE, progress=False, seed=seed)
    return _read_truth(path), analyze_scan(path, None, figures=False), path


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


def _measure(truth, res, path, regions) -> dict:
    """Ellipse, per-pixel and 2 × 2-binned errors of the analysis against the file's truth."""
    from fitting.io import load_scan

    pm = res.peak_map
    d, e, fitted, n = _errors(pm.position, pm.position_err, truth, regions)
    scan = load_scan(path)
    prof = scan_profiles(scan.data, res.calibration.plan, shifts=res.calibration.shifts, exclude_direct=0.15, bin=2)
    pm2 = sro_peak_map(prof, semiangle=scan.semiangle, energy=scan.energy)
    d2, _, fitted2, n2 = _errors(pm2.position, pm2.position_err, truth, regions, b=2)
    return {
        "ellipse": res.calibration.ellipse, "n": n, "fitted": fitted, "median_abs": float(np.median(np.abs(d))),
        "bias": float(np.median(d)), "pull_sd": float(np.std(d / e)), "n2": n2, "fitted2": fitted2,
        "median_abs2": float(np.median(np.abs(d2))),
    }  # fmt: skip


def test_top_scan_peak_map_meets_truth(library, tmp_path):  # noqa: F811
    truth, res, path = _analysed(library, tmp_path, "top", seed=4)
    m = _measure(truth, res, path, ("type1", "electrolyte"))
    ell = m["ellipse"]  # the synthesiser's ellipse is 1.02 at 0.5 rad
    assert ell is not None and abs(ell.ratio - 1.02) < 0.006 and abs(ell.angle - 0.5) < 0.15, ell
    assert m["n"] >= 40 and m["fitted"] > 0.95, m
    assert m["median_abs"] < 0.005, m  # per pixel: the 10⁵ e noise floor
    assert abs(m["bias"]) < 0.0015, m  # no bias (an uncorrected ellipse gave +0.002–0.004)
    assert 0.6 < m["pull_sd"] < 1.6, m  # honest uncertainties
    assert m["n2"] >= 10 and m["fitted2"] > 0.95 and m["median_abs2"] < 0.003, m  # 2 × 2 binned: the 0.003 Å⁻¹


@pytest.mark.slow
def test_bottom_scan_peak_map_meets_truth(library, tmp_path):  # noqa: F811
    truth, res, path = _analysed(library, tmp_path, "bottom", seed=5, field=(24, 90))
    m = _measure(truth, res, path, ("type1", "type2"))
    ell = m["ellipse"]
    assert ell is not None and abs(ell.ratio - 1.02) < 0.006 and abs(ell.angle - 0.5) < 0.15, ell
    assert m["n"] >= 40 and m["fitted"] > 0.95, m
    # Type 2: LiF discs of random orientation inside the SRO window add to the noise (0.0068 per pixel measured)
    assert m["median_abs"] < 0.008, m
    assert abs(m["bias"]) < 0.0015, m
    assert 0.6 < m["pull_sd"] < 1.6, m
    assert m["n2"] >= 4 and m["fitted2"] > 0.95 and m["median_abs2"] < 0.003, m


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
        truth, res = _read_truth(path), analyze_scan(path, None, figures=False)
        d, e, fitted, n = _errors(res.peak_map.position, res.peak_map.position_err, truth, ("type1", "electrolyte"))
        assert n >= 200 and fitted > 0.95, (dose, n, fitted)
        assert 0.6 < np.std(d / e) < 1.6, dose  # the reported σ follows the dose too
        med[dose] = float(np.median(np.abs(d)))
    ratio = med[4.0e5] / med[1.0e5]
    assert 0.35 < ratio < 0.7, med  # 1/√4 = 0.5
    assert med[4.0e5] < 0.003, med
