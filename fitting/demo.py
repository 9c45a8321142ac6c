"""`sei-send demo` / `make demo`: the main job end to end on the study's default ``bottom`` scene.

:func:`run_demo` chains the library functions — nothing here re-implements a computation:

1. :func:`simkit.library.build_library` — a small pattern library (only the entry kinds the scene needs),
   cached on disk under ``.sei-send-cache/`` (or ``$SEI_SEND_CACHE``); a second run simulates nothing;
2. :func:`simkit.synth.synthesize_scan` — a reduced ``bottom`` scan (Li | SEI Type 1 | SEI Type 2 with LiF |
   Cu, 4 nm steps, 2 mrad probe) written as an EMD 1.0 file with its ground truth (reused when it exists and
   its settings match);
3. :func:`fitting.pipeline.analyze_scan` — :func:`fitting.io.load_scan` → :func:`fitting.calibrate.calibrate` →
   :func:`fitting.profiles.scan_profiles` → :func:`fitting.peaks.sro_peak_map` /
   :func:`fitting.peaks.fit_histogram` → :func:`fitting.classify.features` / :func:`fitting.classify.classify`
   → figures (:mod:`fitting.plots`) and a JSON + CSV summary;
4. :func:`fitting.pipeline.hypothesis_test` — :func:`fitting.hypotheses.compare` of every amorphous class-mean
   profile against candidate structures made from the library entries (integrated by :mod:`simkit.radial` on
   the data's Q bins);
5. a Markdown report comparing the recovered numbers with the scene's ground truth.

``reduced=True`` (used by the tests) shrinks the library ("tiny" preset, one zone axis per crystal) and the scan
(6 × 20 positions) so the whole run takes tens of seconds once the library is cached.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from fitting.pipeline import AnalysisResult, analyze_scan, comparison_markdown, hypothesis_figure, hypothesis_test
from simkit.atomic import atomic_write_text

__all__ = ["DEMO_SETTINGS", "demo_specs", "read_truth", "run_demo"]

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


# the demo
# ----------------------------------------------------------------------------------------------------------
def demo_specs(preset: str, one_zone: bool):
    """Library entry specs of a preset that the ``bottom`` scene needs; ``one_zone`` keeps one zone axis per metal."""
    from simkit.library import preset_specs

    # (the other Type 1 candidate models serve SRO requests outside the default model's span: the bottom scene
    # has none, so they stay out of its library and of its hypothesis test)
    specs = [s for s in preset_specs(preset) if s.kind in _BOTTOM_KINDS and "model" not in s.params]
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
    specs = demo_specs(cfg["preset"], cfg["one_zone"])
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

        truth = read_truth(scan_path)
        say(f"  synthetic scan: reused {scan_path} (same library and seed)")
    else:
        res = synthesize_scan(
            scene, scan_path, library=library, electrons_per_pattern=DEMO_ELECTRONS_PER_PATTERN, seed=seed,
            overwrite=True, progress=progress,
        )  # fmt: skip
        truth = res.truth
        atomic_write_text(synth_meta, json.dumps(want) + "\n")
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
    hypothesis_figure(tests, out / "hypotheses.png")
    timings["hypotheses_s"] = time.perf_counter() - t0

    check = _truth_check(ana, truth)
    timings["total_s"] = time.perf_counter() - t_all
    report = _report(ana, tests, check, timings, reduced=reduced, reused=(n_cached, reuse))
    atomic_write_text(out / "report.md", report)
    ana.summary["truth_check"] = check
    ana.summary["timings"] = timings
    ana.summary["hypotheses"] = {
        c: [{"candidate": r.name, "delta_aic": r.delta_aic, "akaike_weight": r.akaike_weight} for r in comp.rows]
        for c, comp in tests.items()
    }
    atomic_write_text(out / "summary.json", json.dumps(ana.summary, indent=2) + "\n")

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


def read_truth(path: str | os.PathLike) -> dict:
    """Ground-truth maps of a synthetic scan file (``sro_peak`` [Å⁻¹], region map, …): simkit.emd.read_truth."""
    from simkit.emd import read_truth as _read

    return _read(path)


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


def _descan_line(d: dict) -> str:
    """The measured descan plane beside the one the demo scan was synthesised with (simkit.synth's default)."""
    from simkit.synth import DEFAULT_INSTRUMENT

    t = DEFAULT_INSTRUMENT.descan
    return (
        f"- descan plane: slope ({d['slope_y_px']:+.2f}, {d['slope_x_px']:+.2f}) px, offset ({d['offset_y_px']:+.2f}, "
        f"{d['offset_x_px']:+.2f}) px; simulated ({t.slope_y:+.2f}, {t.slope_x:+.2f}) px and ({t.offset_y:+.2f}, "
        f"{t.offset_x:+.2f}) px"
    )


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
        _descan_line(s["instrument"]["descan"]),
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
        lines += comparison_markdown(name, comp)
    lines += [
        "## Figures",
        "",
        "![Figure 2: example patterns, virtual ADF, classes, SRO peak map, histogram, I·Q](figure2.png)",
        "(also `figure2.pdf`; single panels: peak_map.png, virtual_adf.png, class_map.png, histogram.png,",
        "iq_per_class.png)",
        "",
        "![hypotheses: data vs the top candidates, components, residuals, parameters](hypotheses.png)",
        "",
        "## Timings",
        "",
        ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items()),
        "",
    ]
    return "\n".join(lines)
