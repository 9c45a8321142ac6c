"""The measured-data path: a scan file → calibration → profiles → SRO peak map → classes → figures and tables.

:func:`analyze_scan` is the one pipeline used by the ``sei-send analyze`` command, the demo and the notebooks:
:func:`fitting.io.load_scan` → :func:`fitting.calibrate.calibrate` → :func:`fitting.profiles.scan_profiles` →
:func:`fitting.peaks.sro_peak_map` / :func:`fitting.peaks.fit_histogram` → :func:`fitting.classify.features` /
:func:`fitting.classify.classify` → figures (:mod:`fitting.plots`) and a JSON + CSV summary.
:func:`hypothesis_test` compares every amorphous class-mean profile with candidate structures made from
pattern-library entries (:func:`library_candidates`, integrated by :mod:`simkit.radial` on the data's Q bins).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simkit.atomic import atomic_dir, atomic_path, atomic_write_text
from simkit.instrument import Descan, Ellipse, Instrument

__all__ = [
    "AnalysisResult",
    "HYPOTHESIS_Q_RANGE",
    "PIXELS_CSV_COLUMNS",
    "Q_COLUMN",
    "SRO_CLASSES",
    "analysis_figure2",
    "analyze_scan",
    "class_mean_profiles",
    "comparison_markdown",
    "hypothesis_figure",
    "hypothesis_test",
    "instrument_used",
    "library_candidates",
    "save_figure",
    "sro_positions",
]

#: Resolution of the PNG figures [dots per inch] (print quality); Figure 2 is also written as PDF.
FIGURE_DPI = 300

#: Window [Å⁻¹] of the hypothesis fits: above the direct beam (excluded below 0.15), below the detector edge.
HYPOTHESIS_Q_RANGE = (0.2, 0.85)


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure atomically; the format follows the suffix of ``path`` (PNG at 300 dpi)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=FIGURE_DPI, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")


# ----------------------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class AnalysisResult:
    """What :func:`analyze_scan` found and wrote.

    Attributes
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
        Radial bin centres.
    profiles : fitting.profiles.ScanProfiles
        Per-pixel profiles (``iq`` = I·Q [counts per pixel · Å⁻¹]).
    peak_map : fitting.peaks.PeakMap
        SRO peak position per pixel [Å⁻¹], defined for the amorphous classes only (SEI Type 1/2, electrolyte):
        NaN with ``ok`` False on every other pixel (:func:`sro_positions`), as in ``pixels.csv`` and the summary.
    raw_peak_map : fitting.peaks.PeakMap
        The estimator run on every pixel (on Li/Cu pixels its window maximum is a Bragg disc, not an SRO peak):
        for diagnostics only.
    mixture : fitting.peaks.GaussianMixture or None
        Gaussian mixture of the peak positions [Å⁻¹] (None when fewer than 5 pixels have a peak).
    classes : ndarray of int (sy, sx)
        Index into :data:`fitting.classify.CLASSES`.
    calibration : fitting.calibrate.Calibration
    instrument : simkit.instrument.Instrument
        Descan and ellipse the analysis corrected (given or measured; ellipse ratio 1 = none corrected).
    step : float or None  [Å]
        Scan step.
    summary : dict
        JSON-ready numbers (every Q in Å⁻¹).
    files : dict[str, pathlib.Path]
        Written files by role.
    examples : dict[int, (iy, ix, pattern, center)]
        The most typical pattern of every class (:func:`fitting.plots.representative_pixels`): scan position,
        pattern (det_y, det_x) [counts] and its beam centre [px]; filled when figures are written.
    """

    q: np.ndarray
    profiles: Any
    peak_map: Any
    raw_peak_map: Any
    mixture: Any
    classes: np.ndarray
    calibration: Any
    step: float | None
    summary: dict
    files: dict = field(default_factory=dict)
    instrument: Any = None
    examples: dict = field(default_factory=dict)


def analyze_scan(
    scan,
    out_dir: str | os.PathLike | None = None,
    *,
    pixel_size: float | None = None,
    ellipse_q_range: tuple[float, float] | None = None,
    instrument: Instrument | None = None,
    exclude_direct: float = 0.15,
    q_range: tuple[float, float] | None = None,
    refine_ellipse: bool = True,
    memory_budget: float = 4e9,
    figures: bool = True,
    seed: int = 0,
    mask=None,
    rules=None,
) -> AnalysisResult:
    """Scan → calibrated profiles, SRO peak map, histogram mixture, classes, figures and a JSON + CSV summary.

    Parameters
    ----------
    scan : path or fitting.io.Scan
        A file readable by :func:`fitting.io.load_scan` or a loaded scan.
    out_dir : path or None
        Where to write ``summary.json``, ``pixels.csv`` and the figures; None writes nothing.
    pixel_size : float or None  [Å⁻¹/px]
        Overrides the file's detector calibration.
    ellipse_q_range : (float, float) or None  [Å⁻¹]
        Ring window of the ellipse fit (e.g. the amorphous SRO ring, (0.24, 0.42)); None (default) skips it: on
        a scan dominated by crystal spots (Li, Cu) the ring fit is biased (1.08 found for a true 1.02).
    instrument : simkit.instrument.Instrument or None
        Known instrument imperfections, applied instead of measuring them: a given ``descan`` replaces the
        measured centres (its offsets refer to ``descan.center``, by default the detector's middle pixel
        (ny//2, nx//2)); a given ``ellipse`` is corrected as it is (no ring fit, no refinement; not together with
        ``ellipse_q_range``). None fields, and None, are measured. The summary reports the ones used under
        ``"instrument"``.
    exclude_direct : float  [Å⁻¹]
        Bins below this Q (the direct beam) are excluded from the profiles.
    q_range : (float, float) or None  [Å⁻¹]
        SRO peak window (default: that of :func:`fitting.peaks.sro_peak_map`).
    refine_ellipse : bool
        When no ``ellipse_q_range`` is given: measure the elliptical distortion on the sector profiles of the
        amorphous pixels without Bragg discs (:func:`fitting.calibrate.ellipse_from_sectors`: cheap, and blind to
        the Li/Cu spots that bias a whole-scan ring fit), if such pixels (at least 5) hold ≥ 3 × 10⁶ counts
        (:data:`ELLIPSE_MIN_COUNTS`: 30 pixels at 10⁵ e) and give a ratio below 1.15. On a scan of more than
        :data:`DESCAN_ROWS` rows it is measured *before* the main pass, on strips of columns classified on their
        own (:func:`_early_ellipse`), so that the one pass makes the final profiles; after classification the
        whole scan's Bragg-free amorphous pixels check it, and if they still show a distortion above
        :data:`EARLY_ELLIPSE_TOL` (0.3 %: class-mean SRO peaks ≤ 0.00065 Å⁻¹ off) the profiles are made again
        with theirs (``summary["ellipse_check"]`` says which). Smaller scans, and scans whose strips give no
        ellipse, measure it after the first pass and make the profiles again with it. An uncorrected 2 %
        ellipse moves the azimuthally averaged SRO peak by ≈ +1 % (≈ 0.003 Å⁻¹).
    memory_budget : float  [bytes]
        A lazy (file-backed) scan no larger than this is read into memory once; larger scans are streamed block
        by block of scan rows (:class:`fitting.chunks.ScanSource`: lzf chunks decoded in parallel, transient hot
        pixels taken out of every frame as in memory), with the same results. The streamed analysis reads the
        data once for the profiles and sector features (fused in one pass), plus :data:`DESCAN_ROWS` scan rows
        for the descan surface, the column strips of the early ellipse and the selected pixels of its
        measurements and check (≈ 1.1 reads of every pattern at 256 × 256 and up), and again for the profiles
        only when the ellipse is refined after the pass; it keeps per pixel the radial profiles (4 float64
        arrays of n_q bins) and the features, never the sector profiles. 0 always streams.
    figures : bool
        Write the PNG figures when ``out_dir`` is given.
    seed : int
        Seed of the histogram mixture's initialisation.
    mask : ndarray of bool (ny, nx), path or None
        Detector mask, True = use the pixel (beam stop, known bad pixels), or a file for
        :func:`fitting.calibrate.load_mask` (.npy/.tif/.h5). Static hot and dead pixels found in the data are
        added to it (:func:`fitting.calibrate.find_bad_pixels`) and it is carried through the calibration into the
        plan; transient hot pixels of single frames are taken out of an in-memory scan
        (:func:`fitting.calibrate.repair_hot`, on a copy — the caller's array is not changed). All reported in
        ``summary["bad_pixels"]``.
    rules : fitting.classify.ClassifyRules, dict, path or None
        Classification thresholds (default ``ClassifyRules()``, tuned on synthetic scenes); a dict or a JSON file
        of :class:`~fitting.classify.ClassifyRules` fields. Written to ``summary["classify_rules"]``.

    Returns
    -------
    AnalysisResult
        Warnings (blank or flat frames, a centre without direct beam) are in ``summary["warnings"]``.
    """
    import dataclasses
    import warnings

    from fitting.calibrate import calibrate, find_bad_pixels, load_mask, repair_hot
    from fitting.chunks import ScanSource
    from fitting.classify import CLASSES, ClassifyRules, classify, features
    from fitting.io import load_scan
    from fitting.profiles import scan_profiles

    if not hasattr(scan, "scan_shape"):
        scan = load_scan(scan, pixel_size=pixel_size)
    given_data = scan.data
    scan = _in_memory(scan, memory_budget)
    if instrument is not None and not isinstance(instrument, Instrument):
        raise TypeError(f"instrument={instrument!r}: expected a simkit.instrument.Instrument or None")
    given = instrument or Instrument()
    if given.ellipse is not None and ellipse_q_range is not None:
        raise ValueError("give either a known instrument.ellipse or ellipse_q_range (to measure it), not both")
    if mask is not None and not isinstance(mask, np.ndarray):
        mask = load_mask(mask, shape=tuple(scan.data.shape[-2:]))
    # static hot/dead pixels → the mask; transient hot pixels (cosmic rays) out of every in-memory frame
    bp = find_bad_pixels(scan.data, mask=mask)
    bad_summary = bp.summary()
    use = bp.mask if (mask is not None or not bp.mask.all()) else None
    if isinstance(scan.data, np.ndarray):
        data, n_hot = repair_hot(scan.data, mask=bp.mask, copy=scan.data is given_data)
        if n_hot:
            scan = dataclasses.replace(scan, data=data)
        bad_summary["transient_hot_taken_out"] = int(n_hot)
    else:  # streamed: every frame is repaired as it is read, the same frames as in memory
        scan = dataclasses.replace(scan, data=ScanSource(scan.data, repair_mask=bp.mask))
    if rules is None:
        rules = ClassifyRules()
    elif isinstance(rules, dict):
        rules = ClassifyRules.from_dict(rules)
    elif not isinstance(rules, ClassifyRules):
        rules = ClassifyRules.from_json(rules)
    caught: list[str] = []

    def _record(w):
        for item in w:
            if issubclass(item.category, UserWarning):
                caught.append(str(item.message))
            else:  # not ours to swallow
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", UserWarning)
        cal = calibrate(
            scan, pixel_size=pixel_size, ellipse_q_range=ellipse_q_range, mask=use, bad_pixels=False,
            descan_rows=DESCAN_ROWS,
        )  # fmt: skip
    _record(w)
    cal = _apply_instrument(cal, given, scan.scan_shape)
    # the ellipse measured before the main pass, on a strip of columns, so that the one pass over the data is
    # made with it (checked against the whole scan's Bragg-free amorphous pixels after classification)
    early = None
    if refine_ellipse and cal.ellipse is None and given.ellipse is None:
        with warnings.catch_warnings():  # the strip's classification warns about frames the main pass reports
            warnings.simplefilter("ignore", UserWarning)
            early = _early_ellipse(scan, cal, rules, exclude_direct)
        if early is not None:
            cal = early
    # one pass over the data: per block of rows the radial profiles (exact sub-pixel descan) and the 32-sector
    # profiles (whole-pixel descan), reduced at once to the per-pixel features; the sector profiles are dropped
    parts = []

    def sector_features(r0, r1, block, sh, rows):
        m = np.empty((r1 - r0, block.shape[1], N_PHI, cal.plan.n_q), np.float32)
        s = np.empty_like(m)
        cal.plan.mean_profiles(block, None if sh is None else np.rint(sh), n_phi=N_PHI, out=(m, s))
        parts.append(features(cal.plan.q, m, s, profiles=rows))

    if isinstance(scan.data, ScanSource):
        scan.data.reset_count()
    prof = scan_profiles(
        scan.data, cal.plan, shifts=cal.shifts, exclude_direct=exclude_direct, on_block=sector_features,
        chunk=BLOCK_PATTERNS,
    )  # fmt: skip
    if isinstance(scan.data, ScanSource):
        bad_summary["transient_hot_taken_out"] = int(scan.data.hot_taken_out)
    # the classes rest on the Bragg-disc features and the whole profile, never on the SRO position: the peak
    # map is made once, from the final (possibly ellipse-refined) profiles
    feats = _stack_features(parts)
    parts.clear()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", UserWarning)
        classes = classify(feats, rules)
    _record(w)
    for msg in caught:  # the caller sees them once, and the summary keeps them
        warnings.warn(msg, UserWarning, stacklevel=2)
    refined = None
    if early is not None:
        cal, again = _check_early_ellipse(scan, cal, feats, classes)
        refined = cal if again else None
    elif refine_ellipse and cal.ellipse is None and given.ellipse is None:
        refined = _refine_ellipse(scan, cal, feats, classes)
    if refined is not None:  # a second pass with the refined ellipse
        cal = refined
        prof = None  # the first profiles are freed before the refined ones are made (peak memory)
        prof = scan_profiles(
            scan.data, cal.plan, shifts=cal.shifts, exclude_direct=exclude_direct, chunk=BLOCK_PATTERNS
        )
    # the estimator's window follows the probe (simkit.peak_estimator.sro_window), as in the synthetic scans' truth
    probe = {"semiangle": getattr(scan, "semiangle", None), "energy": getattr(scan, "energy", None)}
    raw = _peak_map_by_rows(prof, q_range, probe)
    pm = _amorphous_only(raw, classes)
    pos = sro_positions(pm, classes)
    finite = pos[np.isfinite(pos)]
    mixture = histogram_mixture(finite, seed=seed, warnings_out=caught)
    step = getattr(scan, "step", None)

    counts = {c: int(np.count_nonzero(classes == i)) for i, c in enumerate(CLASSES)}
    per_class = {}
    for i, c in enumerate(CLASSES):
        sel = (classes == i) & np.isfinite(pos)
        if sel.any():  # the mean, std and fitted-pixel count are over the same pixels
            per_class[c] = {
                "pixels": counts[c],
                "sro_peak_fitted_pixels": int(np.count_nonzero(sel)),
                "sro_peak_mean_A^-1": float(np.mean(pos[sel])),
                "sro_peak_std_A^-1": float(np.std(pos[sel])),
            }
    used = instrument_used(cal)
    summary = {
        "units": {"Q": "Q = 1/d [1/Å] (no 2π)", "step": "Å", "pixel_size": "1/Å per detector pixel"},
        "scan_shape": list(classes.shape),
        "step_A": step,
        "pixel_size_A^-1_per_px": float(cal.plan.pixel_size),
        "beam_center_px": [float(c) for c in cal.plan.center],
        "ellipse_ratio": None if cal.ellipse is None else float(cal.ellipse.ratio),
        "ellipse_angle_rad": None if cal.ellipse is None else float(cal.ellipse.angle),
        # where the ellipse came from and, when measured before the main pass, its check on the whole scan
        "ellipse_source": cal.info.get("ellipse_source"),
        "ellipse_check": cal.info.get("ellipse_check"),
        "instrument": used.to_dict(),
        "instrument_given": {"descan": given.descan is not None, "ellipse": given.ellipse is not None},
        # SRO peaks exist for the amorphous classes only; count, mean and std are over the same pixels
        "sro_peak_amorphous_pixels": int(np.count_nonzero(np.isin(classes, _amorphous_indices()))),
        "sro_peak_fitted_pixels": int(finite.size),
        "sro_peak_mean_A^-1": float(np.mean(finite)) if finite.size else None,
        "sro_peak_std_A^-1": float(np.std(finite)) if finite.size else None,
        "histogram_components": None
        if mixture is None
        else [
            {"mean_A^-1": float(m), "std_A^-1": float(s), "weight": float(w)}
            for m, s, w in zip(mixture.means, mixture.stds, mixture.weights)
        ],
        "class_counts": counts,
        "classes": per_class,
        "center_source": cal.info.get("center_source"),
        "bad_pixels": bad_summary,
        "user_mask_pixels_excluded": None if mask is None else int(np.count_nonzero(~np.asarray(mask, bool))),
        "classify_rules": rules.to_dict(),
        "warnings": caught,
        # every calibration the reader found, with units and the file field it came from (fitting.io.load_scan)
        "scan_calibration": _jsonable(getattr(scan, "metadata", {}).get("calibration", {})),
    }
    res = AnalysisResult(
        q=prof.q, profiles=prof, peak_map=pm, raw_peak_map=raw, mixture=mixture, classes=classes, calibration=cal,
        step=step, summary=summary, instrument=used,
    )  # fmt: skip
    if out_dir is not None and figures:
        res.examples.update(_example_patterns(scan, res))
    if out_dir is not None:
        _write_analysis(res, Path(out_dir), figures=figures)
    return res


def _jsonable(v):
    """Plain JSON types (tuples → lists, NumPy scalars → floats)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _example_patterns(scan, res: AnalysisResult) -> dict:
    """The most typical pattern of every class with its beam centre (plan centre + descan shift) [px]."""
    from fitting.plots import representative_pixels

    out = {}
    shifts = res.calibration.shifts
    for k, (iy, ix) in representative_pixels(res.profiles.iq, res.classes, q=res.q).items():
        pat = np.asarray(scan.data[iy, ix], dtype=float)
        c = np.asarray(res.calibration.plan.center, dtype=float)
        if shifts is not None:
            c = c + np.asarray(shifts[iy, ix], dtype=float)
        out[k] = (iy, ix, pat, (float(c[0]), float(c[1])))
    return out


def _in_memory(scan, budget: float):
    """The scan with its data read once into memory when lazy and no larger than ``budget`` bytes."""
    import dataclasses

    data = scan.data
    if isinstance(data, np.ndarray) or not budget or budget <= 0:
        return scan
    nbytes = float(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
    if nbytes > budget:
        return scan
    from fitting.chunks import reader

    rd = reader(data)
    if hasattr(data, "compute"):  # dask
        arr = np.asarray(data.compute())
    elif rd.fast:  # raw chunks decoded in parallel, a few rows at a time
        arr = np.empty(data.shape, dtype=rd.dtype)
        rows = max(1, (64 << 20) // max(1, arr[0].nbytes))
        for r0 in range(0, arr.shape[0], rows):
            arr[r0 : r0 + rows] = rd.read(r0, min(arr.shape[0], r0 + rows))
    else:
        arr = np.empty(data.shape, dtype=data.dtype)
        if hasattr(data, "read_direct"):  # h5py: one sequential read, no intermediate copy
            data.read_direct(arr)
        else:
            arr[...] = data
    rd.close()
    return dataclasses.replace(scan, data=arr)


def _apply_instrument(cal, given: Instrument, scan_shape: tuple[int, int]):
    """The Calibration with the given descan and/or ellipse in place of the measured ones."""
    import dataclasses

    from fitting.calibrate import calibrated_plan

    if given.descan is None and given.ellipse is None:
        return cal
    p = cal.plan
    center, shifts, info = p.center, cal.shifts, dict(cal.info)
    if given.descan is not None:
        ref = given.descan.center if given.descan.center is not None else _middle(p.shape)
        centers = np.asarray(ref, dtype=float) + given.descan.shifts(scan_shape)
        center = tuple(float(c) for c in centers.reshape(-1, 2).mean(axis=0))
        shifts = centers - np.asarray(center)
        info["descan_source"] = "given"
    ratio, angle = p.ellipse_ratio, p.ellipse_angle
    if given.ellipse is not None:
        ratio, angle = given.ellipse.ratio, given.ellipse.angle
        info["ellipse_source"] = "given"
    plan = calibrated_plan(
        p.shape, center=center, pixel_size=p.pixel_size, ellipse_ratio=ratio, ellipse_angle=angle, edges=p.edges,
        mask=p.mask, split_pixels=p.split_pixels,
    )  # fmt: skip
    return dataclasses.replace(cal, plan=plan, shifts=shifts, info=info)


def _middle(detector_shape) -> tuple[float, float]:
    """The detector's middle pixel (ny//2, nx//2) [px]: the default pattern centre of simkit.geometry."""
    return float(detector_shape[0] // 2), float(detector_shape[1] // 2)


def instrument_used(cal) -> Instrument:
    """The descan plane and ellipse a calibration corrects, as a :class:`simkit.instrument.Instrument`.

    Parameters
    ----------
    cal : fitting.calibrate.Calibration

    Returns
    -------
    Instrument
        ``descan``: least-squares plane through the per-pattern centres (``plan.center + shifts``), offsets
        relative to the detector's middle pixel [px]; ``ellipse``: the plan's ratio and angle [–, rad].
    """
    p = cal.plan
    centers = np.asarray(p.center, dtype=float) + np.asarray(cal.shifts, dtype=float)
    return Instrument(
        descan=Descan.fit(centers, _middle(p.shape)),
        ellipse=Ellipse(ratio=float(p.ellipse_ratio), angle=float(p.ellipse_angle)),
    )


#: Largest Bragg fraction (fitting.classify feature ``bragg``) of a pixel used for the ellipse refinement.
ELLIPSE_MAX_BRAGG = 0.005
#: Fewest counts [e] summed over the pixels of the ellipse refinement: the ring radius is measured on their summed
#: sector profiles, so precision follows the counts, not the pixel count (30 pixels at 10⁵ e gave ratios within
#: ±0.002 of the truth); and at least ELLIPSE_MIN_PIXELS pixels.
ELLIPSE_MIN_COUNTS = 3.0e6
ELLIPSE_MIN_PIXELS = 5


#: Evenly spaced scan rows whose per-pattern centres fit the descan plane (fitting.calibrate.calibrate
#: ``descan_rows``): ≥ 16 × 60 centres fit it to ≲ 0.01 px of the all-pattern fit, and a big scan is not read
#: whole for its centres; smaller scans use every pattern.
DESCAN_ROWS = 16
#: Azimuthal sectors of the classification features and of the ellipse refinement.
N_PHI = 32
#: Patterns per block of the profile passes (rounded to whole scan rows, at least one): ≈ 16 MB of 256² uint16
#: counts, so that the blocks and their float64 work arrays stay small against the per-pixel results.
BLOCK_PATTERNS = 128


def _stack_features(parts):
    """One :class:`fitting.classify.Features` of the whole scan from those of consecutive blocks of scan rows."""
    from fitting.classify import Features

    first = parts[0]
    out = {}
    for f in dataclasses.fields(Features):
        v = getattr(first, f.name)
        if f.name == "q_measured":
            out[f.name] = v
        elif isinstance(v, dict):
            out[f.name] = {k: np.concatenate([getattr(p, f.name)[k] for p in parts]) for k in v}
        else:
            out[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
    return Features(**out)


#: Pixels per call of the peak-map fit (its work arrays are a few kB per pixel).
PEAK_MAP_PIXELS = 16384


def _peak_map_by_rows(prof, q_range, probe):
    """:func:`fitting.peaks.sro_peak_map` of the profiles, in blocks of scan rows when its window follows the
    probe (every pixel is then fitted on its own, so the map is the same; without a probe the width comes from
    the whole map's mean profile and the map is fitted at once)."""
    from fitting.peaks import PeakMap, sro_peak_map

    args = () if q_range is None else (q_range,)
    sy, sx = prof.intensity.shape[:2]
    rows = max(1, PEAK_MAP_PIXELS // max(sx, 1))
    if probe.get("semiangle") is None or rows >= sy:
        return sro_peak_map(prof, *args, **probe)
    parts = []
    for r0 in range(0, sy, rows):
        r = slice(r0, min(sy, r0 + rows))
        sub = dataclasses.replace(
            prof, intensity=prof.intensity[r], iq=prof.iq[r], sem=prof.sem[r], count=prof.count[r],
            total=prof.total[r], background=None if prof.background is None else prof.background[r],
        )  # fmt: skip
        parts.append(sro_peak_map(sub, *args, **probe))
    cat = {
        k: np.concatenate([getattr(p, k) for p in parts])
        for k in ("position", "position_err", "amplitude", "width", "ok")
    }
    return PeakMap(**cat, q_range=parts[0].q_range, n=parts[0].n)


def _selected_sector_mean(data, cal, select, *, batch: int = 64) -> np.ndarray:
    """Mean (n_phi, n_q) over the ``select``-ed patterns of their sector means [counts per pixel], NaN where no
    pattern has the bin: float32 sector profiles of :meth:`RadialPlan.mean_profiles` (whole-pixel descan, as for
    the features), read and integrated ``batch`` patterns at a time, added pattern by pattern in scan order in
    float64 — the same arithmetic as ``np.nanmean`` over the stacked profiles, without holding them."""
    from fitting.chunks import ScanSource

    idx = np.flatnonzero(np.asarray(select, bool).ravel())
    nq = cal.plan.n_q
    tot = np.zeros((N_PHI, nq))
    cnt = np.zeros((N_PHI, nq), np.int64)
    shifts = None if cal.shifts is None else np.rint(np.asarray(cal.shifts, float).reshape(-1, 2))
    det = tuple(int(v) for v in data.shape[-2:])
    for k in range(0, idx.size, batch):
        ii = idx[k : k + batch]
        if isinstance(data, ScanSource):
            frames = data.read_patterns(ii)
        else:
            frames = np.asarray(data).reshape((-1,) + det)[ii]
        m = np.empty((1, ii.size, N_PHI, nq), np.float32)
        s = np.empty_like(m)
        sh = None if shifts is None else shifts[ii][None]
        cal.plan.mean_profiles(frames[None], sh, n_phi=N_PHI, out=(m, s))
        for row in m[0].astype(float):
            fin = np.isfinite(row)
            tot += np.where(fin, row, 0.0)
            cnt += fin
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / cnt, np.nan)


def _ellipse_pixels(feats, classes, *, min_pixels=None, min_counts=None):
    """Bragg-free amorphous pixels (mask of the scan) for the ellipse refinement, or None when they are fewer than
    ``min_pixels`` (default :data:`ELLIPSE_MIN_PIXELS`) or hold fewer than ``min_counts`` counts (default
    :data:`ELLIPSE_MIN_COUNTS`)."""
    min_pixels = ELLIPSE_MIN_PIXELS if min_pixels is None else min_pixels
    min_counts = ELLIPSE_MIN_COUNTS if min_counts is None else min_counts
    from fitting.classify import CLASSES

    amorph = np.isin(classes, [CLASSES.index(c) for c in ("sei_type1", "sei_type2", "electrolyte")])
    bragg = np.where(np.isfinite(feats.bragg), feats.bragg, np.inf)
    sel = amorph & (bragg <= ELLIPSE_MAX_BRAGG)
    total = np.where(np.isfinite(feats.total), feats.total, 0.0)
    if np.count_nonzero(sel) < max(min_pixels, 1) or float(np.sum(total[sel])) < min_counts:
        return None
    return sel


def _residual_ellipse(data, cal, sel):
    """The distortion the plan of ``cal`` leaves on the ``sel``-ected patterns of ``data``
    (:func:`fitting.calibrate.ellipse_from_sectors` of their mean sector profiles), or None when not measurable."""
    from fitting.calibrate import ellipse_from_sectors

    try:
        avg = _selected_sector_mean(data, cal, sel)
        ell = ellipse_from_sectors(cal.plan.q, avg[None], pixel_size=cal.plan.pixel_size)
    except ValueError:
        return None
    return ell if np.isfinite(ell.ratio) else None


def _with_ellipse(cal, ell, source: str):
    """``cal`` with the residual ellipse ``ell`` composed into its plan's ellipse (ratio, angle [rad])."""
    from fitting.calibrate import calibrated_plan, compose_ellipse

    p = cal.plan
    ratio, angle = compose_ellipse(p.ellipse_ratio, p.ellipse_angle, ell.ratio, ell.angle)
    plan = calibrated_plan(
        p.shape, center=p.center, pixel_size=p.pixel_size, ellipse_ratio=ratio, ellipse_angle=angle, edges=p.edges,
        mask=p.mask, split_pixels=p.split_pixels,
    )  # fmt: skip
    ell = dataclasses.replace(ell, ratio=float(ratio), angle=float(angle))
    return dataclasses.replace(cal, plan=plan, ellipse=ell, info=dict(cal.info, ellipse_source=source))


def _refine_ellipse(scan, cal, feats, classes):
    """A Calibration whose plan corrects the ellipse measured on Bragg-free amorphous pixels, or None."""
    sel = _ellipse_pixels(feats, classes)
    if sel is None:
        return None
    ell = _residual_ellipse(scan.data, cal, sel)
    if ell is None or not ell.ratio < ELLIPSE_MAX_RATIO:
        return None
    return _with_ellipse(cal, ell, f"sector profiles of {int(np.count_nonzero(sel))} Bragg-free amorphous pixels")


#: Largest ellipse ratio [1] the refinement accepts (a larger one is a failed measurement, not the instrument).
ELLIPSE_MAX_RATIO = 1.15
#: Patterns of the column strip on which the ellipse is measured before the main pass, in scan rows' worth
#: (:data:`DESCAN_ROWS` rows: as many patterns as the descan centres); scans of at most DESCAN_ROWS rows are
#: refined after the pass as before. 0 switches the early measurement off.
EARLY_ELLIPSE_ROWS = DESCAN_ROWS
#: Leftover distortion [1] the whole scan's Bragg-free amorphous pixels may show under the early ellipse for
#: the single pass to stand (ρ − 1, ρ the residual ratio measured on them). A ring at Q₀ then reads at most
#: ≈ Q₀·(ρ − 1)/2 off in the azimuthal mean (0.00045 Å⁻¹ at 0.3 Å⁻¹); the estimator's class-mean SRO peaks
#: moved by ≤ 0.00065 Å⁻¹ at this leftover (0.00043 at 0.002; tests/test_pipeline_single_pass.py). Beyond it the
#: profiles are made again with the whole scan's ellipse (the former second pass).
EARLY_ELLIPSE_TOL = 0.003
#: Counts [e] the early ellipse's pixels should hold (5 × ELLIPSE_MIN_COUNTS: ≈ ±0.001 in the ratio, a third of
#: EARLY_ELLIPSE_TOL), and the largest share of the columns its strips may take to find them (small scans).
EARLY_ELLIPSE_COUNTS = 5 * ELLIPSE_MIN_COUNTS
EARLY_ELLIPSE_MAX_COLUMNS = 0.5
#: Extra measurements of the strip's ellipse under the plan corrected so far (first-order estimates converge).
EARLY_ELLIPSE_ITERATIONS = 2


class _Columns:
    """Columns [c0, c1) of every scan row of a 4-D scan as a 4-D array-like (scan rows by slices), read on demand."""

    def __init__(self, data, c0: int, c1: int):
        self.data, self.c0, self.c1 = data, int(c0), int(c1)
        self.shape = (int(data.shape[0]), self.c1 - self.c0) + tuple(int(v) for v in data.shape[2:])
        self.dtype = np.dtype(data.dtype)
        self.ndim = 4

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("_Columns: scan rows by a slice only")
        return np.asarray(self.data[key, self.c0 : self.c1])


def _early_ellipse(scan, cal, rules, exclude_direct):
    """The Calibration with the ellipse measured before the main pass on strips of columns (all scan rows, about
    :data:`EARLY_ELLIPSE_ROWS` rows' worth of patterns each, the middle one first, then alternately right and
    left of it): profiles and sector features of each strip, its classes, its Bragg-free amorphous pixels —
    strips are added until those hold :data:`EARLY_ELLIPSE_COUNTS` counts or cover
    :data:`EARLY_ELLIPSE_MAX_COLUMNS` of the columns —, then the residual ellipse of their summed sector
    profiles, measured again under the corrected plan while it is not well inside :data:`EARLY_ELLIPSE_TOL`.
    None when the scan has at most :data:`DESCAN_ROWS` rows or the strips give no ellipse (then the ellipse is
    refined after the main pass, as before)."""
    from fitting.classify import classify, features
    from fitting.profiles import scan_profiles

    sy, sx = (int(v) for v in scan.data.shape[:2])
    if EARLY_ELLIPSE_ROWS <= 0 or sy <= DESCAN_ROWS:
        return None
    w = int(min(sx, max(1, round(EARLY_ELLIPSE_ROWS * sx / sy))))
    mid = (sx - w) // 2
    starts = [mid]
    for k in range(1, sx // w + 2):  # alternately right and left of the middle strip, inside the scan
        starts += [c for c in (mid + k * w, mid - k * w) if 0 <= c < sx and c + w <= sx]
    full = np.zeros((sy, sx), bool)
    counts, used = 0.0, []
    for c0 in starts:
        if used and (counts >= EARLY_ELLIPSE_COUNTS or (len(used) + 1) * w > EARLY_ELLIPSE_MAX_COLUMNS * sx):
            break
        used.append(c0)
        shifts = None if cal.shifts is None else np.asarray(cal.shifts)[:, c0 : c0 + w]
        parts = []

        def sector_features(r0, r1, block, sh, rows, parts=parts):
            m = np.empty((r1 - r0, block.shape[1], N_PHI, cal.plan.n_q), np.float32)
            s = np.empty_like(m)
            cal.plan.mean_profiles(block, None if sh is None else np.rint(sh), n_phi=N_PHI, out=(m, s))
            parts.append(features(cal.plan.q, m, s, profiles=rows))

        scan_profiles(
            _Columns(scan.data, c0, c0 + w), cal.plan, shifts=shifts, exclude_direct=exclude_direct,
            on_block=sector_features, chunk=BLOCK_PATTERNS,
        )  # fmt: skip
        feats = _stack_features(parts)
        sel = _ellipse_pixels(feats, classify(feats, rules), min_pixels=1, min_counts=0.0)
        if sel is not None:
            full[:, c0 : c0 + w] = sel
            counts += float(np.sum(np.where(np.isfinite(feats.total), feats.total, 0.0)[sel]))
    n = int(np.count_nonzero(full))
    if n < ELLIPSE_MIN_PIXELS or counts < ELLIPSE_MIN_COUNTS:
        return None
    src = f"sector profiles of {n} Bragg-free amorphous pixels of {len(used)} strip(s) of {w} columns"
    # ellipse_from_sectors is first order in the distortion: measured again under the corrected plan (only the
    # selected pixels are read) until what is left is well inside the check's tolerance
    for _ in range(1 + EARLY_ELLIPSE_ITERATIONS):
        ell = _residual_ellipse(scan.data, cal, full)
        if ell is None or not ell.ratio < ELLIPSE_MAX_RATIO:
            return None
        if cal.ellipse is not None and ell.ratio - 1.0 <= EARLY_ELLIPSE_TOL / 3:
            break
        cal = _with_ellipse(cal, ell, src)
    return cal


def _check_early_ellipse(scan, cal, feats, classes):
    """The early ellipse of ``cal`` checked on the whole scan's Bragg-free amorphous pixels: (cal, False) when the
    distortion it leaves on them is within :data:`EARLY_ELLIPSE_TOL` (or cannot be measured) — the single pass
    stands —, else (cal with the composed ellipse, True): the profiles are to be made again."""
    sel = _ellipse_pixels(feats, classes)
    ell = None if sel is None else _residual_ellipse(scan.data, cal, sel)
    if ell is None:
        return dataclasses.replace(cal, info=dict(cal.info, ellipse_check="not measurable on the whole scan")), False
    n = int(np.count_nonzero(sel))
    left = float(ell.ratio) - 1.0
    note = f"leftover ratio {1 + left:.4f} on {n} Bragg-free amorphous pixels of the scan"
    if left <= EARLY_ELLIPSE_TOL:
        return dataclasses.replace(cal, info=dict(cal.info, ellipse_check=note + ": single pass")), False
    if not ell.ratio < ELLIPSE_MAX_RATIO:
        return dataclasses.replace(cal, info=dict(cal.info, ellipse_check=note + ": not used")), False
    refined = _with_ellipse(cal, ell, f"sector profiles of {n} Bragg-free amorphous pixels (after an early ellipse)")
    return dataclasses.replace(refined, info=dict(refined.info, ellipse_check=note + ": profiles made again")), True


#: Classes whose SRO peak is defined (amorphous).
SRO_CLASSES = ("sei_type1", "sei_type2", "electrolyte")


def _amorphous_indices() -> list[int]:
    from fitting.classify import CLASSES

    return [CLASSES.index(c) for c in SRO_CLASSES]


def _amorphous_only(peak_map, classes: np.ndarray):
    """The peak map with NaN position/error/amplitude/width and ok=False on every non-amorphous pixel."""
    import dataclasses

    keep = np.isin(classes, _amorphous_indices())
    nan = {k: np.where(keep, getattr(peak_map, k), np.nan) for k in ("position", "position_err", "amplitude", "width")}
    return dataclasses.replace(peak_map, ok=np.asarray(peak_map.ok) & keep, **nan)


def sro_positions(peak_map, classes: np.ndarray) -> np.ndarray:
    """SRO peak positions [Å⁻¹] of the amorphous classes (SEI Type 1/2, electrolyte); NaN elsewhere.

    As in the study's maps and histograms, an SRO peak is defined for amorphous pixels only: the window maximum
    of a Li or Cu pixel is a Bragg disc (Li 110 at 0.406 Å⁻¹ reads as ≈ 0.39–0.40), not short-range order.
    """
    sro = np.isin(classes, _amorphous_indices())
    return np.where(np.asarray(peak_map.ok) & sro, peak_map.position, np.nan)


#: Per-pixel columns of ``pixels.csv`` after ``iy, ix, class`` (Q = 1/d, no 2π; NaN/False on non-amorphous pixels).
PIXELS_CSV_COLUMNS = ("SRO peak Q=1/d [1/Å]", "SRO peak error Q=1/d [1/Å]", "SRO fit ok")
#: Column name of Q in every CSV sei-send writes (pyFAI's "q_A^-1" is 2π/d: never used).
Q_COLUMN = "Q=1/d [1/Å]"


#: Fewest SRO peaks for the BIC choice of a histogram mixture (3 values per component, up to 3 components).
MIXTURE_MIN_PEAKS = 9


def histogram_mixture(positions: np.ndarray, *, seed: int = 0, warnings_out: list | None = None):
    """Gaussian mixture of the SRO peak positions [Å⁻¹] (:func:`fitting.peaks.fit_histogram`, k by BIC).

    With fewer than :data:`MIXTURE_MIN_PEAKS` positions a 3-component BIC choice is not possible: 5–8 positions
    get a single Gaussian (their mean and spread) and a note in ``warnings_out``; fewer than 5 get none (None).

    Parameters
    ----------
    positions : ndarray  [Å⁻¹]
        Finite per-pixel SRO peak positions.
    seed : int
        Seed of the mixture's initialisation.
    warnings_out : list of str or None
        Where the note goes (``summary["warnings"]`` of :func:`analyze_scan`).

    Returns
    -------
    fitting.peaks.GaussianMixture or None
    """
    from fitting.peaks import fit_histogram

    n = int(np.size(positions))
    if n < 5 or np.ptp(positions) == 0:
        return None
    if n < MIXTURE_MIN_PEAKS:
        if warnings_out is not None:
            warnings_out.append(
                f"only {n} pixels have an SRO peak: the histogram gets a single Gaussian (a mixture chosen by BIC "
                f"needs at least {MIXTURE_MIN_PEAKS})"
            )
        return fit_histogram(positions, n_components=1, rng=seed)
    return fit_histogram(positions, rng=seed)


def _write_analysis(res: AnalysisResult, out: Path, *, figures: bool) -> None:
    """Write the tables and figures into a staging folder, then move them into ``out`` (nothing partial there)."""
    with atomic_dir(out) as stage:
        _write_analysis_files(res, stage, figures=figures)
    res.files.update({k: out / p.name for k, p in res.files.items()})


def _write_analysis_files(res: AnalysisResult, out: Path, *, figures: bool) -> None:
    from fitting.classify import CLASSES

    res.files["summary"] = out / "summary.json"
    atomic_write_text(res.files["summary"], json.dumps(res.summary, indent=2) + "\n")
    pm = res.peak_map  # amorphous pixels only: NaN and False elsewhere
    rows = [",".join(["iy", "ix", "class", *PIXELS_CSV_COLUMNS])]
    for iy, ix in np.ndindex(res.classes.shape):
        rows.append(
            f"{iy},{ix},{CLASSES[res.classes[iy, ix]]},{pm.position[iy, ix]:.5f},{pm.position_err[iy, ix]:.5f},"
            f"{bool(pm.ok[iy, ix])}"
        )
    res.files["pixels"] = out / "pixels.csv"
    atomic_write_text(res.files["pixels"], "\n".join(rows) + "\n")
    if not figures:
        return
    import matplotlib

    matplotlib.use("Agg", force=False)
    from fitting import plots

    pos = sro_positions(pm, res.classes)
    prof = res.profiles
    adf = plots.virtual_adf(prof.intensity, prof.count, res.q, q_inner=ADF_Q_INNER)
    markers = {k: (v[0], v[1]) for k, v in res.examples.items()}
    made = {
        "peak_map": plots.peak_map(pos, step=res.step, markers=markers),
        "histogram": plots.peak_histogram(pos, res.mixture, classes=res.classes)
        if np.isfinite(pos).any()
        else None,
        "class_map": plots.class_map(res.classes, step=res.step),
        "virtual_adf": plots.virtual_image(adf, step=res.step, markers=markers,
                                           title=f"virtual ADF (Q ≥ {ADF_Q_INNER:g} Å⁻¹)"),
        "iq_per_class": plots.class_profiles(res.q, prof.iq, res.classes, rng=0, q_range=(0.15, float(res.q.max()))),
        "figure2": analysis_figure2(res),
    }  # fmt: skip
    for name, fig in made.items():
        if fig is None:
            continue
        res.files[name] = out / f"{name}.png"
        save_figure(fig, res.files[name])
    res.files["figure2_pdf"] = out / "figure2.pdf"
    save_figure(made["figure2"], res.files["figure2_pdf"])


def analysis_figure2(res: AnalysisResult):
    """The study's Figure 2 of an analysis (:func:`fitting.plots.figure2`): example patterns (``res.examples``,
    filled by :func:`analyze_scan` when it writes figures), virtual ADF (Q ≥ :data:`ADF_Q_INNER`), classes, SRO
    peak map, histogram with its mixture, I·Q per class.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from fitting import plots

    prof = res.profiles
    return plots.figure2(
        res.q, prof.iq, sro_positions(res.peak_map, res.classes), res.classes, res.mixture, step=res.step,
        patterns=res.examples, pattern_pixel_size=float(res.calibration.plan.pixel_size),
        adf=plots.virtual_adf(prof.intensity, prof.count, res.q, q_inner=ADF_Q_INNER), adf_q_inner=ADF_Q_INNER,
    )  # fmt: skip


#: Inner radius [Å⁻¹] of the virtual ADF annulus of the figures (outside the 2 mrad direct disc, 0.10 Å⁻¹).
ADF_Q_INNER = 0.15


def class_mean_profiles(res: AnalysisResult, *, min_pixels: int = 3) -> dict[str, tuple[np.ndarray, ...]]:
    """Summed counts and exposure of every class, for likelihood fits.

    Parameters
    ----------
    res : AnalysisResult
    min_pixels : int
        Classes with fewer pixels are left out.

    Returns
    -------
    dict[str, (q [Å⁻¹], counts [counts], exposure [pixels])]
        Finite bins only; counts = Σ over the class's patterns of mean × pixels per bin.
    """
    from fitting.classify import CLASSES

    prof = res.profiles
    out = {}
    for i, c in enumerate(CLASSES):
        sel = res.classes == i
        if np.count_nonzero(sel) < min_pixels:
            continue
        inten = prof.intensity[sel]
        cnt = prof.count[sel]
        counts = np.nansum(inten * cnt, axis=0)
        expo = np.sum(np.where(np.isfinite(inten), cnt, 0), axis=0)
        good = expo > 0
        out[c] = (prof.q[good], counts[good], expo[good].astype(float))
    return out


# ----------------------------------------------------------------------------------------------------------
# hypothesis test against library entries
# ----------------------------------------------------------------------------------------------------------
def _entry_profile(entries, plan):
    from fitting.model import component_from_pattern

    pat = np.mean([e.pattern for e in entries], axis=0)
    return component_from_pattern(pat, plan, name="entry")


def _dilation_family(entries, plan, label: str) -> dict:
    """One component per density of an amorphous model's uniform dilations (entries without a density: one).

    A library holds each amorphous structure as uniform dilations over a density span (the compositor of
    :mod:`simkit.synth` places a requested SRO peak by mixing the two neighbouring dilations); the mean over the
    span is no structure at all (its first ring is smeared over 0.285–0.315 Å⁻¹ for the Type 2 matrix). As
    separate components with non-negative amplitudes the family spans every such mixture, i.e. any distribution
    of density over the pixels of a class, while the structure stays fixed.

    Returns
    -------
    dict[str, Component]
        ``"<label> <ρ> g/cm³"`` per density (densest last), ``label`` for entries without one (pooled).
    """
    groups: dict = {}
    for e in entries:
        rho = e.spec.params.get("density")
        groups.setdefault(None if rho is None else round(float(rho), 4), []).append(e)
    out = {}
    for rho in sorted(groups, key=lambda r: -1.0 if r is None else r):
        out[label if rho is None else f"{label} {rho:.2f} g/cm³"] = _entry_profile(groups[rho], plan)
    return out


def _orientations(library, kind: str, plan, label: str) -> dict:
    """One component per zone axis of an oriented bulk crystal (a grain at the class edge shows one zone's discs,
    whose azimuthal mean differs from zone to zone); {} when the library has no such entry."""
    groups: dict = {}
    for e in library.by_kind(kind) if kind in set(library.kinds) else ():
        groups.setdefault(tuple(e.spec.params.get("zone_axis", ())), []).append(e)
    return {f"{label} [{''.join(map(str, z))}]" if z else label: _entry_profile(es, plan) for z, es in groups.items()}


#: Q-scale bounds of the hypothesis fits [1] (calibrated data: ±1 %).
HYPOTHESIS_Q_SCALE_BOUNDS = (0.99, 1.01)


def library_candidates(library, edges: np.ndarray) -> dict[str, dict]:
    """Candidate structures of the amorphous SEI from a pattern library, as profiles on the data's Q bins.

    Parameters
    ----------
    library : simkit.library.PatternLibrary
    edges : ndarray  [Å⁻¹]
        Radial bin edges of the data (the calibrated plan's).

    Returns
    -------
    dict[str, dict[str, Component]]
        Candidate name → components. An amorphous structure (Type 1 of the HCE, the Type 2 matrix, the HCE
        electrolyte; other variants and other Type 1 candidate models, ``params["model"]``, are named in
        brackets) is its whole family of library dilations, one
        component per density (:func:`_dilation_family`): the hypothesis is the structure, its density
        distribution over the class is fitted (the amplitudes per density say which densities explain the
        ring). "Type 1 SRO", "Type 2 matrix", "Type 2 matrix + LiF", "Type 1 + Type 2 matrix", "Type 1 SRO +
        LiF", "Type 1 SRO + Li metal", "Type 2 matrix + LiF + Cu metal" (the Type 2 layer borders Cu: mixed
        pixels carry its discs) and "electrolyte" when the library has the entries. LiF is the mean of its
        entries (random orientations); Li and Cu grains are one component per zone axis (:func:`_orientations`).
        Profiles are integrated on the library's detector geometry by :mod:`simkit.radial` with the data's bin
        edges.
    """
    from simkit.radial import make_plan_from_geometry

    plan = make_plan_from_geometry(library.geometry, edges=np.asarray(edges))
    have = set(library.kinds)

    def variants(kind, key):
        found: dict = {}
        for e in library.by_kind(kind) if kind in have else ():
            # a Type 1 candidate composition (params["model"]) is its own structure hypothesis
            found.setdefault(e.spec.params.get("model", e.spec.params.get(key, "hce")), []).append(e)
        return found

    t1s = variants("sei_type1", "variant")
    els = variants("electrolyte", "electrolyte")
    t1 = _dilation_family(t1s["hce"], plan, "type1") if "hce" in t1s else {}
    t2 = _dilation_family(library.by_kind("type2_matrix"), plan, "type2") if "type2_matrix" in have else {}
    lif = {"lif": _entry_profile(library.by_kind("lif"), plan)} if "lif" in have else {}
    li = _orientations(library, "li_metal", plan, "li")
    cu = _orientations(library, "cu", plan, "cu")
    cands: dict[str, dict] = {}
    if t1:
        cands["Type 1 SRO"] = t1
    for v, entries in t1s.items():
        if v != "hce":
            cands[f"Type 1 SRO ({v})"] = _dilation_family(entries, plan, f"type1 ({v})")
    if t2:
        cands["Type 2 matrix"] = t2
        if lif:
            cands["Type 2 matrix + LiF"] = {**t2, **lif}
            if cu:
                # the Type 2 layer borders Cu through a tilted, rough interface: mixed pixels carry Cu discs
                cands["Type 2 matrix + LiF + Cu metal"] = {**t2, **lif, **cu}
        if t1:
            cands["Type 1 + Type 2 matrix"] = {**t1, **t2}
    if t1 and lif:
        # the 15 nm Type 1 layer borders LiF-bearing Type 2 through a tilted, rough interface
        cands["Type 1 SRO + LiF"] = {**t1, **lif}
    for v, entries in els.items():
        label = "electrolyte" if v == "hce" else f"electrolyte ({v})"
        cands[label] = _dilation_family(entries, plan, label)
    if t1 and li:
        # a 15 nm layer next to Li: mixed pixels carry the Li grain's discs (the probe and the tilted interface)
        cands["Type 1 SRO + Li metal"] = {**t1, **li}
    return cands


def hypothesis_test(res: AnalysisResult, library, *, classes=("sei_type1", "sei_type2", "electrolyte")) -> dict:
    """:func:`fitting.hypotheses.compare` of every amorphous class-mean profile against library candidates.

    Parameters
    ----------
    res : AnalysisResult
    library : simkit.library.PatternLibrary
    classes : sequence of str
        Classes to test (those with at least 3 pixels).

    Returns
    -------
    dict[str, fitting.hypotheses.Comparison]
    """
    from fitting.hypotheses import compare

    profs = class_mean_profiles(res)
    cands = library_candidates(library, res.calibration.plan.edges)
    out = {}
    for c in classes:
        if c not in profs or not cands:
            continue
        q = profs[c][0]
        on_grid = {name: {k: _on_bins(comp, q) for k, comp in parts.items()} for name, parts in cands.items()}
        # the detector is calibrated (pixel size from the file, < 0.3 % from rings): a ±1 % Q scale absorbs
        # calibration error without letting one structure's ring slide onto another's (0.307 × 1.05 ≈ 0.32)
        out[c] = compare(profs[c], on_grid, q_range=HYPOTHESIS_Q_RANGE, q_scale_bounds=HYPOTHESIS_Q_SCALE_BOUNDS)
    return out


def _on_bins(comp, q: np.ndarray):
    """The component on the data's bins ``q`` (same plan edges, so the bin centres coincide; no interpolation)."""
    from fitting.model import Component

    idx = np.clip(np.searchsorted(comp.q, q - 1e-9), 0, comp.q.size - 1)
    if not np.allclose(comp.q[idx], q, rtol=0, atol=1e-9):
        raise ValueError("candidate profiles are not on the data's radial bins; build them with the data's edges")
    return Component(name=comp.name, q=q, intensity=comp.intensity[idx], source=comp.source)


def comparison_markdown(name: str, comp) -> list[str]:
    lines = [f"### class `{name}`", "", "| rank | candidate | ΔAIC | Akaike weight | deviance/dof | converged |"]
    lines.append("|---|---|---|---|---|---|")
    for k, r in enumerate(comp.rows, 1):
        lines.append(
            f"| {k} | {r.name} | {r.delta_aic:.1f} | {r.akaike_weight:.3f} | {r.deviance / max(r.dof, 1):.2f} | "
            f"{'yes' if r.converged else 'no'} |"
        )
    for t in comp.tests:
        lines.append(f"- LRT {t.null} ⊂ {t.alternative}: D = {t.statistic:.1f}, p = {t.p_value:.2g}")
    for w in comp.warnings:
        lines.append(f"- warning: {w}")
    return lines + [""]


def hypothesis_figure(tests: dict, path: Path, *, top: int = 3) -> None:
    """Data against the ``top`` candidates of every tested class (:func:`fitting.plots.fit_figure`, one row each).

    Parameters
    ----------
    tests : dict[str, fitting.hypotheses.Comparison]
        As returned by :func:`hypothesis_test`.
    path : path
        PNG (300 dpi), PDF or SVG by suffix.
    top : int
        Candidates shown per class (best AIC first).
    """
    from matplotlib.figure import Figure

    from fitting.plots import fit_figure

    n = max(1, len(tests))
    cols = max([min(top, len(c.rows)) for c in tests.values()] or [1])
    fig = Figure(figsize=(3.0 * cols + 0.6, 6.4 * n), layout="constrained")
    subs = fig.subfigures(n, 1, squeeze=False)[:, 0] if n > 1 else [fig]
    for sub, (name, comp) in zip(subs, tests.items()):
        fit_figure(comp, top=top, title=f"class {name}: class-summed counts, Poisson likelihood", fig=sub)
    if not tests:
        fig.text(0.5, 0.5, "no class to test", ha="center")
    save_figure(fig, Path(path))


# ----------------------------------------------------------------------------------------------------------
