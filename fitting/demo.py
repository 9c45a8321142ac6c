"""`sei-send demo` / `make demo`: the main job end to end on the study's default ``bottom`` scene.

:func:`run_demo` chains the library functions — nothing here re-implements a computation:

1. :func:`simkit.library.build_library` — a small pattern library (only the entry kinds the scene needs),
   cached on disk under ``.sei-send-cache/`` (or ``$SEI_SEND_CACHE``); a second run simulates nothing;
2. :func:`simkit.synth.synthesize_scan` — a reduced ``bottom`` scan (Li | SEI Type 1 | SEI Type 2 with LiF |
   Cu, 4 nm steps, 2 mrad probe) written as an EMD 1.0 file with its ground truth (reused when it exists and
   its settings match);
3. :func:`analyze_scan` — :func:`fitting.io.load_scan` → :func:`fitting.calibrate.calibrate` →
   :func:`fitting.profiles.scan_profiles` → :func:`fitting.peaks.sro_peak_map` /
   :func:`fitting.peaks.fit_histogram` → :func:`fitting.classify.features` / :func:`fitting.classify.classify`
   → figures (:mod:`fitting.plots`) and a JSON + CSV summary;
4. :func:`hypothesis_test` — :func:`fitting.hypotheses.compare` of every amorphous class-mean profile against
   candidate structures made from the library entries (integrated by :mod:`simkit.radial` on the data's Q
   bins);
5. a Markdown report comparing the recovered numbers with the scene's ground truth.

``reduced=True`` (used by the tests) shrinks the library ("tiny" preset, one zone axis per crystal) and the scan
(6 × 20 positions) so the whole run takes tens of seconds once the library is cached.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simkit.atomic import atomic_path

__all__ = ["AnalysisResult", "DEMO_SETTINGS", "analyze_scan", "class_mean_profiles", "hypothesis_test", "run_demo"]

#: Scan and library sizes of the demo. ``li_side`` [Å] moves the Li | Type 1 interface into the reduced field;
#: layer widths stay the study's (Type 1 ≈ 15 nm, Type 2 ≈ 35 nm) at the study's 4 nm step.
DEMO_SETTINGS: dict[bool, dict[str, Any]] = {
    False: {"preset": "demo", "field_shape": (24, 40), "li_side": 600.0, "one_zone": False},
    True: {"preset": "tiny", "field_shape": (6, 20), "li_side": 240.0, "one_zone": True},
}
#: Electrons per pattern of the demo scan: the synthesiser's default 10⁶ (scan fluence 625 e/Å² at 4 nm steps,
#: 17 % of the ≈ 3600 e/Å² damage fluence of the study), where per-pixel SRO peaks are good to < 0.003 Å⁻¹.
DEMO_ELECTRONS_PER_PATTERN = 1.0e6
#: Library entry kinds the ``bottom`` scene needs (no electrolyte region; damage off: 625 e/Å² is 17 % of its fluence).
_BOTTOM_KINDS = ("vacuum", "li_metal", "cu", "li2o", "sei_type1", "type2_matrix", "lif")
#: Window [Å⁻¹] of the hypothesis fits: above the direct beam (excluded below 0.15), below the detector edge.
HYPOTHESIS_Q_RANGE = (0.2, 0.85)


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _save_fig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")


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
        SRO peak position per pixel [Å⁻¹].
    mixture : fitting.peaks.GaussianMixture or None
        Gaussian mixture of the peak positions [Å⁻¹] (None when fewer than 5 pixels have a peak).
    classes : ndarray of int (sy, sx)
        Index into :data:`fitting.classify.CLASSES`.
    calibration : fitting.calibrate.Calibration
    step : float or None  [Å]
        Scan step.
    summary : dict
        JSON-ready numbers (every Q in Å⁻¹).
    files : dict[str, pathlib.Path]
        Written files by role.
    """

    q: np.ndarray
    profiles: Any
    peak_map: Any
    mixture: Any
    classes: np.ndarray
    calibration: Any
    step: float | None
    summary: dict
    files: dict = field(default_factory=dict)


def analyze_scan(
    scan,
    out_dir: str | os.PathLike | None = None,
    *,
    pixel_size: float | None = None,
    ellipse_q_range: tuple[float, float] | None = None,
    exclude_direct: float = 0.15,
    q_range: tuple[float, float] | None = None,
    refine_ellipse: bool = True,
    memory_budget: float = 4e9,
    figures: bool = True,
    seed: int = 0,
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
    exclude_direct : float  [Å⁻¹]
        Bins below this Q (the direct beam) are excluded from the profiles.
    q_range : (float, float) or None  [Å⁻¹]
        SRO peak window (default: that of :func:`fitting.peaks.sro_peak_map`).
    refine_ellipse : bool
        When no ``ellipse_q_range`` is given: after classification, measure the elliptical distortion on the
        sector profiles of the amorphous pixels without Bragg discs (:func:`fitting.calibrate.
        ellipse_from_sectors`: cheap, and blind to the Li/Cu spots that bias a whole-scan ring fit) and, if such
        pixels (at least 5) hold ≥ 3 × 10⁶ counts (:data:`ELLIPSE_MIN_COUNTS`: 30 pixels at 10⁵ e) and give a
        ratio below 1.15, recompute the profiles and the peak map with it. An
        uncorrected 2 % ellipse moves the azimuthally averaged SRO peak by ≈ +1 % (≈ 0.003 Å⁻¹).
    memory_budget : float  [bytes]
        A lazy (file-backed) scan no larger than this is read into memory once — the analysis passes over the
        data up to four times (centres, profiles, sectors, ellipse refinement), and decompressing an lzf file
        four times costs more than the analysis itself; larger scans stay streamed chunk by chunk. 0 always
        streams.
    figures : bool
        Write the PNG figures when ``out_dir`` is given.
    seed : int
        Seed of the histogram mixture's initialisation.

    Returns
    -------
    AnalysisResult
    """
    from fitting.calibrate import calibrate
    from fitting.classify import CLASSES, classify, features
    from fitting.io import load_scan
    from fitting.peaks import fit_histogram, sro_peak_map
    from fitting.profiles import scan_profiles, sector_profiles

    if not hasattr(scan, "scan_shape"):
        scan = load_scan(scan, pixel_size=pixel_size)
    scan = _in_memory(scan, memory_budget)
    cal = calibrate(scan, pixel_size=pixel_size, ellipse_q_range=ellipse_q_range)
    prof = scan_profiles(scan.data, cal.plan, shifts=cal.shifts, exclude_direct=exclude_direct)
    sq, sm, ss = sector_profiles(scan.data, cal.plan, shifts=cal.shifts, n_phi=32)
    # the classes rest on the Bragg-disc features and the whole profile, never on the SRO position: the peak
    # map is made once, from the final (possibly ellipse-refined) profiles
    feats = features(sq, sm, ss, profiles=prof)
    classes = classify(feats)
    if refine_ellipse and cal.ellipse is None:
        refined = _refine_ellipse(scan, cal, sq, sm, feats, classes)
        if refined is not None:
            cal = refined
            prof = scan_profiles(scan.data, cal.plan, shifts=cal.shifts, exclude_direct=exclude_direct)
    # the estimator's window follows the probe (simkit.peakpos.sro_window), as in the synthetic scans' truth
    probe = {"semiangle": getattr(scan, "semiangle", None), "energy": getattr(scan, "energy", None)}
    pm = sro_peak_map(prof, **probe) if q_range is None else sro_peak_map(prof, q_range, **probe)
    pos = sro_positions(pm, classes)
    finite = pos[np.isfinite(pos)]
    mixture = fit_histogram(finite, rng=seed) if finite.size >= 5 else None
    step = getattr(scan, "step", None)

    counts = {c: int(np.count_nonzero(classes == i)) for i, c in enumerate(CLASSES)}
    per_class = {}
    for i, c in enumerate(CLASSES):
        sel = (classes == i) & np.isfinite(pos)
        if sel.any():
            per_class[c] = {
                "pixels": counts[c],
                "sro_peak_mean_A^-1": float(np.mean(pos[sel])),
                "sro_peak_std_A^-1": float(np.std(pos[sel])),
            }
    summary = {
        "scan_shape": list(classes.shape),
        "step_A": step,
        "pixel_size_A^-1_per_px": float(cal.plan.pixel_size),
        "beam_center_px": [float(c) for c in cal.plan.center],
        "ellipse_ratio": None if cal.ellipse is None else float(cal.ellipse.ratio),
        "ellipse_angle_rad": None if cal.ellipse is None else float(cal.ellipse.angle),
        "sro_peak_fitted_pixels": int(np.count_nonzero(pm.ok)),
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
    }
    res = AnalysisResult(
        q=prof.q, profiles=prof, peak_map=pm, mixture=mixture, classes=classes, calibration=cal, step=step,
        summary=summary,
    )  # fmt: skip
    if out_dir is not None:
        _write_analysis(res, Path(out_dir), figures=figures)
    return res


def _in_memory(scan, budget: float):
    """The scan with its data read once into memory when lazy and no larger than ``budget`` bytes."""
    import dataclasses

    data = scan.data
    if isinstance(data, np.ndarray) or not budget or budget <= 0:
        return scan
    nbytes = float(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
    if nbytes > budget:
        return scan
    if hasattr(data, "compute"):  # dask
        arr = np.asarray(data.compute())
    else:
        arr = np.empty(data.shape, dtype=data.dtype)
        if hasattr(data, "read_direct"):  # h5py: one sequential read, no intermediate copy
            data.read_direct(arr)
        else:
            arr[...] = data
    return dataclasses.replace(scan, data=arr)


#: Largest Bragg fraction (fitting.classify feature ``bragg``) of a pixel used for the ellipse refinement.
ELLIPSE_MAX_BRAGG = 0.005
#: Fewest counts [e] summed over the pixels of the ellipse refinement: the ring radius is measured on their summed
#: sector profiles, so precision follows the counts, not the pixel count (30 pixels at 10⁵ e gave ratios within
#: ±0.002 of the truth); and at least ELLIPSE_MIN_PIXELS pixels.
ELLIPSE_MIN_COUNTS = 3.0e6
ELLIPSE_MIN_PIXELS = 5


def _refine_ellipse(scan, cal, sq, sm, feats, classes):
    """A Calibration whose plan corrects the ellipse measured on Bragg-free amorphous pixels, or None."""
    import dataclasses

    from fitting.calibrate import calibrated_plan, compose_ellipse, ellipse_from_sectors
    from fitting.classify import CLASSES

    amorph = np.isin(classes, [CLASSES.index(c) for c in ("sei_type1", "sei_type2", "electrolyte")])
    bragg = np.where(np.isfinite(feats.bragg), feats.bragg, np.inf) if feats.bragg is not None else 0.0
    sel = amorph & (bragg <= ELLIPSE_MAX_BRAGG)
    total = np.where(np.isfinite(feats.total), feats.total, 0.0)
    if np.count_nonzero(sel) < ELLIPSE_MIN_PIXELS or float(np.sum(total[sel])) < ELLIPSE_MIN_COUNTS:
        return None
    try:
        ell = ellipse_from_sectors(sq, sm, select=sel, pixel_size=cal.plan.pixel_size)
    except ValueError:
        return None
    if not (np.isfinite(ell.ratio) and ell.ratio < 1.15):
        return None
    p = cal.plan
    ratio, angle = compose_ellipse(p.ellipse_ratio, p.ellipse_angle, ell.ratio, ell.angle)
    plan = calibrated_plan(
        p.shape, center=p.center, pixel_size=p.pixel_size, ellipse_ratio=ratio, ellipse_angle=angle, edges=p.edges,
        mask=p.mask, split_pixels=p.split_pixels,
    )  # fmt: skip
    ell = dataclasses.replace(ell, ratio=float(ratio), angle=float(angle))
    info = dict(cal.info, ellipse_source=f"sector profiles of {int(np.count_nonzero(sel))} Bragg-free amorphous pixels")
    return dataclasses.replace(cal, plan=plan, ellipse=ell, info=info)


def sro_positions(peak_map, classes: np.ndarray) -> np.ndarray:
    """SRO peak positions [Å⁻¹] of the amorphous classes (SEI Type 1/2, electrolyte); NaN elsewhere.

    As in the study's maps and histograms, an SRO peak is defined for amorphous pixels only: the window maximum
    of a Li or Cu pixel is a Bragg disc (Li 110 at 0.406 Å⁻¹ reads as ≈ 0.39–0.40), not short-range order.
    """
    from fitting.classify import CLASSES

    sro = np.isin(classes, [CLASSES.index(c) for c in ("sei_type1", "sei_type2", "electrolyte")])
    return np.where(np.asarray(peak_map.ok) & sro, peak_map.position, np.nan)


def _write_analysis(res: AnalysisResult, out: Path, *, figures: bool) -> None:
    from fitting.classify import CLASSES

    out.mkdir(parents=True, exist_ok=True)
    res.files["summary"] = out / "summary.json"
    _atomic_write_text(res.files["summary"], json.dumps(res.summary, indent=2) + "\n")
    pm = res.peak_map
    rows = ["iy,ix,class,sro_peak_A^-1,sro_peak_err_A^-1,sro_fit_ok"]
    for iy, ix in np.ndindex(res.classes.shape):
        rows.append(
            f"{iy},{ix},{CLASSES[res.classes[iy, ix]]},{pm.position[iy, ix]:.5f},{pm.position_err[iy, ix]:.5f},"
            f"{bool(pm.ok[iy, ix])}"
        )
    res.files["pixels"] = out / "pixels.csv"
    _atomic_write_text(res.files["pixels"], "\n".join(rows) + "\n")
    if not figures:
        return
    import matplotlib

    matplotlib.use("Agg", force=False)
    from fitting import plots

    pos = sro_positions(pm, res.classes)
    made = {
        "peak_map": plots.peak_map(pos, step=res.step),
        "histogram": plots.peak_histogram(pos[np.isfinite(pos)], res.mixture),
        "class_map": plots.class_map(res.classes, step=res.step),
        "iq_per_class": plots.class_profiles(res.q, res.profiles.iq, res.classes),
        "figure2": plots.figure2(res.q, res.profiles.iq, pos, res.classes, res.mixture, step=res.step),
    }
    for name, fig in made.items():
        ax = fig.axes[0] if fig.axes else None
        if ax is not None and fig is not made["figure2"]:
            fig.set_size_inches(5.5, 4.0)
        res.files[name] = out / f"{name}.png"
        _save_fig(fig, res.files[name])


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
        "Type 1 SRO" (mean of the Type 1 entries), "Type 1 SRO <ρ> g/cm³" (each density alone),
        "Type 2 matrix", "Type 2 matrix + LiF", "Type 1 + Type 2
        matrix", and "electrolyte" when the library has it. Profiles are integrated on the library's detector
        geometry by :mod:`simkit.radial` with the data's bin edges.
    """
    from simkit.radial import make_plan_from_geometry

    plan = make_plan_from_geometry(library.geometry, edges=np.asarray(edges))
    have = set(library.kinds)
    parts = {}
    for label, kind in (
        ("type1", "sei_type1"),
        ("type2", "type2_matrix"),
        ("lif", "lif"),
        ("electrolyte", "electrolyte"),
    ):
        if kind in have:
            parts[label] = _entry_profile(library.by_kind(kind), plan)
    cands: dict[str, dict] = {}
    if "type1" in parts:
        cands["Type 1 SRO"] = {"type1": parts["type1"]}
        # one candidate per simulated density, so the ranking says which density explains the ring
        t1 = [e for e in library.by_kind("sei_type1") if e.spec.params.get("variant", "hce") == "hce"]
        for e in sorted(t1, key=lambda e: e.spec.params.get("density", 0.0)):
            rho = e.spec.params.get("density")
            if rho is not None and len(t1) > 1:
                cands[f"Type 1 SRO {float(rho):.2f} g/cm³"] = {"type1": _entry_profile([e], plan)}
    if "type2" in parts:
        cands["Type 2 matrix"] = {"type2": parts["type2"]}
        if "lif" in parts:
            cands["Type 2 matrix + LiF"] = {"type2": parts["type2"], "lif": parts["lif"]}
        if "type1" in parts:
            cands["Type 1 + Type 2 matrix"] = {"type1": parts["type1"], "type2": parts["type2"]}
    if "type1" in parts and "lif" in parts:
        # the 15 nm Type 1 layer borders LiF-bearing Type 2 through a tilted, rough interface
        cands["Type 1 SRO + LiF"] = {"type1": parts["type1"], "lif": parts["lif"]}
    if "electrolyte" in parts:
        cands["electrolyte"] = {"electrolyte": parts["electrolyte"]}
    if "type1" in parts and "li_metal" in have:
        # a 15 nm layer next to Li: mixed pixels carry the Li grain's discs (the probe and the tilted interface)
        li = _entry_profile(library.by_kind("li_metal"), plan)
        cands["Type 1 SRO + Li metal"] = {"type1": parts["type1"], "li": li}
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


def _comparison_markdown(name: str, comp) -> list[str]:
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


def _hypothesis_figure(tests: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    cells = [
        [name, r.name, f"{r.delta_aic:.1f}", f"{r.akaike_weight:.3f}", f"{r.deviance / max(r.dof, 1):.2f}"]
        for name, comp in tests.items()
        for r in comp.rows
    ]
    fig = Figure(figsize=(7.5, 0.8 + 0.28 * (len(cells) + 1)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.86))
    ax.axis("off")
    if cells:
        tab = ax.table(
            cellText=cells, colLabels=["class", "candidate", "ΔAIC", "Akaike weight", "deviance/dof"],
            colWidths=[0.17, 0.33, 0.14, 0.17, 0.17], loc="upper center", cellLoc="center",
        )  # fmt: skip
        tab.auto_set_font_size(False)
        tab.set_fontsize(8)
        tab.scale(1.0, 1.25)
    fig.suptitle("peak-assignment hypotheses (class-summed profiles, Poisson likelihood)", fontsize=10)
    _save_fig(fig, path)


# ----------------------------------------------------------------------------------------------------------
# the demo
# ----------------------------------------------------------------------------------------------------------
def _demo_specs(preset: str, one_zone: bool):
    from simkit.library import preset_specs

    specs = [s for s in preset_specs(preset) if s.kind in _BOTTOM_KINDS]
    if one_zone:
        seen: set = set()
        kept = []
        for s in specs:
            if s.kind in ("li_metal", "cu"):
                if s.kind in seen:
                    continue
                seen.add(s.kind)
            kept.append(s)
        specs = kept
    return specs


def run_demo(
    reduced: bool = False,
    out: str | os.PathLike = "demo-output",
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    verbose: bool = True,
) -> int:
    """Run the demonstration; returns the exit code (0 on success).

    Parameters
    ----------
    reduced : bool
        Small library and scan (for tests; tens of seconds once the library is cached).
    out : path
        Output directory (figures, ``report.md``, ``summary.json``, ``pixels.csv``, the scan file).
    cache_dir : path or None
        Pattern-library cache (default :func:`simkit.library.default_cache_dir`).
    seed : int
        Seed of the synthetic scan (noise, per-pixel choices).
    progress : bool
        Progress bars.
    verbose : bool
        Print what happens.

    Returns
    -------
    int
        0 when everything ran; 1 when the recovered Type 1 peak is off the truth by more than 0.02 Å⁻¹ or no
        Type 1 pixel was found.
    """
    from simkit.library import PRESETS, build_library
    from simkit.synth import default_scan, synthesize_scan

    say = print if verbose else (lambda *a, **k: None)
    cfg = DEMO_SETTINGS[bool(reduced)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    timings = {}

    scene, probe = default_scan("bottom", field_shape=cfg["field_shape"], li_side=cfg["li_side"])
    say(
        f"sei-send demo{' (reduced)' if reduced else ''}: bottom interface (Li | SEI Type 1 | SEI Type 2 + LiF | Cu), "
        f"{scene.field_shape[0]} × {scene.field_shape[1]} positions at {scene.step / 10:.0f} nm steps, "
        f"{probe.semiangle:.1f} mrad probe at {probe.energy / 1e3:.0f} keV"
    )
    t0 = time.perf_counter()
    specs = _demo_specs(cfg["preset"], cfg["one_zone"])
    library = build_library(
        specs, probe=probe, thickness=PRESETS[cfg["preset"]]["thickness"], cache_dir=cache_dir, progress=progress
    )
    timings["library_s"] = time.perf_counter() - t0
    n_cached = len(library.entries) - library.built
    say(
        f"  pattern library ({cfg['preset']!r}, {len(library.entries)} entries): {library.built} simulated, "
        f"{n_cached} reused from the cache ({timings['library_s']:.1f} s)"
    )

    t0 = time.perf_counter()
    scan_path = out / "scan.h5"
    synth_meta = out / "scan.settings.json"
    from simkit.synth import TRUTH_ESTIMATOR

    want = {"keys": [e.key for e in library.entries], "seed": int(seed), "field": list(scene.field_shape),
            "li_side_A": cfg["li_side"], "electrons": DEMO_ELECTRONS_PER_PATTERN,
            "truth": TRUTH_ESTIMATOR}  # fmt: skip
    reuse = scan_path.exists() and synth_meta.exists() and json.loads(synth_meta.read_text()) == want
    if reuse:
        from fitting.io import load_scan

        truth = _read_truth(scan_path)
        say(f"  synthetic scan: reused {scan_path} (same library and seed)")
    else:
        res = synthesize_scan(
            scene, scan_path, library=library, electrons_per_pattern=DEMO_ELECTRONS_PER_PATTERN, seed=seed,
            overwrite=True, progress=progress,
        )  # fmt: skip
        truth = res.truth
        _atomic_write_text(synth_meta, json.dumps(want) + "\n")
        say(
            f"  synthetic scan: {scan_path} ({res.electrons_per_pattern:.0f} e per pattern, scan fluence "
            f"{res.scan_fluence:.2f} e/Å²)"
        )
    timings["synth_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from fitting.io import load_scan

    ana = analyze_scan(load_scan(scan_path), out, seed=seed)
    timings["analysis_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tests = hypothesis_test(ana, library)
    _hypothesis_figure(tests, out / "hypotheses.png")
    timings["hypotheses_s"] = time.perf_counter() - t0

    check = _truth_check(ana, truth)
    timings["total_s"] = time.perf_counter() - t_all
    report = _report(ana, tests, check, timings, reduced=reduced, reused=(n_cached, reuse))
    _atomic_write_text(out / "report.md", report)
    ana.summary["truth_check"] = check
    ana.summary["timings"] = timings
    ana.summary["hypotheses"] = {
        c: [{"candidate": r.name, "delta_aic": r.delta_aic, "akaike_weight": r.akaike_weight} for r in comp.rows]
        for c, comp in tests.items()
    }
    _atomic_write_text(out / "summary.json", json.dumps(ana.summary, indent=2) + "\n")

    t1 = check.get("type1")
    if t1:
        say(
            f"  SEI Type 1: recovered SRO peak {t1['recovered_A^-1']:.3f} Å⁻¹ (mean over {t1['fitted_pixels']} "
            f"pixels), ground truth {t1['truth_A^-1']:.3f} Å⁻¹ (|Δ| = {abs(t1['difference_A^-1']):.4f} Å⁻¹; per pixel "
            f"median |error| {t1['median_abs_error_A^-1']:.4f} Å⁻¹)"
        )
    for c, comp in tests.items():
        say(f"  hypotheses for {c}: best '{comp.best}' (Akaike weight {comp.rows[0].akaike_weight:.2f})")
    say(f"  done in {timings['total_s']:.0f} s. Look at {out / 'report.md'} and the figures in {out}/")
    ok = bool(t1) and abs(t1["difference_A^-1"]) <= 0.02
    if not ok:
        say("  WARNING: the Type 1 peak was not recovered within 0.02 Å⁻¹ of the truth")
    return 0 if ok else 1


def _read_truth(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        g = f["truth"]
        truth = {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}
        truth["region_names"] = json.loads(g.attrs["region_names"])
    return truth


def _truth_check(ana: AnalysisResult, truth: dict) -> dict:
    """Recovered SRO peak (mean of the per-pixel peak map, the project's estimator) vs the truth.

    For each amorphous region: over the pixels the truth assigns to it, and over the pixels the analysis
    classified as it, with the fraction of classified pixels that the truth agrees with.
    """
    from fitting.classify import CLASSES

    pos = np.where(ana.peak_map.ok, ana.peak_map.position, np.nan)
    names = list(truth["region_names"])
    out = {}
    for cls, region in (("sei_type1", "type1"), ("sei_type2", "type2")):
        if region not in names:
            continue
        in_truth = truth["region"] == names.index(region)
        in_class = ana.classes == CLASSES.index(cls)
        # the same pixels on both sides: fitted by the analysis and with a defined truth (a mixed pixel whose
        # noise-free pattern has no SRO peak in the window has none)
        both = in_truth & np.isfinite(pos) & np.isfinite(truth["sro_peak"])
        if not both.any():
            continue
        p_truth, t_truth = pos[both], truth["sro_peak"][both]
        t = float(np.mean(t_truth))
        p_class = pos[in_class & np.isfinite(pos)]
        out[region] = {
            "truth_pixels": int(np.count_nonzero(in_truth)),
            "fitted_pixels": int(p_truth.size),
            "recovered_A^-1": float(np.mean(p_truth)),
            "truth_A^-1": t,
            "difference_A^-1": float(np.mean(p_truth) - t),
            "median_abs_error_A^-1": float(np.median(np.abs(p_truth - t_truth))),
            "class_pixels": int(np.count_nonzero(in_class)),
            "class_recovered_A^-1": float(np.mean(p_class)) if p_class.size else None,
            "class_agrees_with_truth": float(np.mean(in_truth[in_class])) if in_class.any() else None,
        }
    return out


def _report(ana, tests, check, timings, *, reduced, reused) -> str:
    s = ana.summary
    lines = [
        "# sei-send demo report",
        "",
        f"Synthetic SEND scan of the study's bottom interface{' (reduced)' if reduced else ''}: "
        f"{s['scan_shape'][0]} × {s['scan_shape'][1]} positions, step {s['step_A']:.0f} Å. "
        f"Library entries reused from the cache: {reused[0]}; scan reused: {'yes' if reused[1] else 'no'}.",
        "",
        "## Calibration",
        f"- pixel size {s['pixel_size_A^-1_per_px']:.5f} Å⁻¹/px, mean beam centre ({s['beam_center_px'][0]:.2f}, "
        f"{s['beam_center_px'][1]:.2f}) px"
        + (f", ellipse ratio {s['ellipse_ratio']:.4f}" if s["ellipse_ratio"] is not None else ""),
        "",
        "## SRO peak map",
        f"- {s['sro_peak_fitted_pixels']} pixels with a peak in the window; mean "
        + (
            f"{s['sro_peak_mean_A^-1']:.3f} Å⁻¹, std {s['sro_peak_std_A^-1']:.3f} Å⁻¹"
            if s["sro_peak_mean_A^-1"]
            else "—"
        ),
    ]
    for comp in s["histogram_components"] or []:
        lines.append(
            f"- Gaussian component: mean {comp['mean_A^-1']:.3f} Å⁻¹, std {comp['std_A^-1']:.3f} Å⁻¹, "
            f"weight {comp['weight']:.2f}"
        )
    lines += ["", "## Classes", "", "| class | pixels | mean SRO peak [Å⁻¹] | std [Å⁻¹] |", "|---|---|---|---|"]
    for c, n in s["class_counts"].items():
        if n:
            pc = s["classes"].get(c)
            lines.append(
                f"| {c} | {n} | "
                + (f"{pc['sro_peak_mean_A^-1']:.3f} | {pc['sro_peak_std_A^-1']:.3f} |" if pc else "— | — |")
            )
    lines += ["", "## Against the ground truth", ""]
    for region, c in check.items():
        lines.append(
            f"- {region}: mean SRO peak {c['recovered_A^-1']:.3f} Å⁻¹ over its {c['fitted_pixels']} fitted truth "
            f"pixels with a defined truth (of {c['truth_pixels']}) vs truth {c['truth_A^-1']:.3f} Å⁻¹ "
            f"(Δ = {c['difference_A^-1']:+.4f} Å⁻¹; per-pixel median |error| {c['median_abs_error_A^-1']:.4f} Å⁻¹)"
        )
        if c["class_pixels"]:
            rec = c["class_recovered_A^-1"]
            lines.append(
                f"  - classified as {region}: {c['class_pixels']} pixels, "
                f"{100 * c['class_agrees_with_truth']:.0f} % of them that region in the truth; their mean peak "
                + (f"{rec:.3f} Å⁻¹" if rec is not None else "—")
            )
    lines += ["", "## Peak-assignment hypotheses (fitting.hypotheses.compare)", ""]
    for name, comp in tests.items():
        lines += _comparison_markdown(name, comp)
    lines += [
        "## Figures",
        "",
        "![SRO peak map](peak_map.png) ![histogram](histogram.png) ![classes](class_map.png)",
        "![I·Q per class](iq_per_class.png) ![hypotheses](hypotheses.png)",
        "",
        "## Timings",
        "",
        ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items()),
        "",
    ]
    return "\n".join(lines)
