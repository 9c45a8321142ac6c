"""The ``sei-send`` command: argument parsing only; the work is done by the library functions.

Subcommands: ``build`` (structures → .xyz/.cif/.traj), ``simulate`` (NBED multislice or kinematic profile of a
structure file), ``synth`` (a synthetic scan of a default scene → EMD 1.0), ``convert`` (a scan in any readable
format → EMD 1.0 or HyperSpy ``.zspy``, calibrated), ``analyze`` (scan → profiles, peak map, classes, figures,
JSON + CSV summary), ``fit`` (a measured profile vs candidate profiles → ranked table), ``refine`` (a structure
parameter against a measured profile), ``demo``.

Units at the command line are named in every option (``--step-nm``, ``--diameter-nm``, ``--energy-kev`` …) and
converted once to the library's units (Å, eV). Errors exit with code 2 (bad arguments, from argparse) or 1 (bad
input found while running) and a one-line message on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from fitting import __version__
from simkit.geometry import DEFAULT_PIXEL_SIZE  # the synthetic detector's pixel size, shown in --help

#: Structure kinds of ``build``.
BUILD_KINDS = ("crystal", "nanocrystal", "type1", "type2", "electrolyte")
#: Output formats of ``build`` (ASE writers).
STRUCTURE_FORMATS = {".xyz": "extxyz", ".cif": "cif", ".traj": "traj"}
NM = 10.0  # Å per nm


class CLIError(Exception):
    """A user error found while running a subcommand (one-line message, exit code 1)."""


# ----------------------------------------------------------------------------------------------------------
# helpers (file handling only)
# ----------------------------------------------------------------------------------------------------------
def _positive(name: str, unit: str):
    """An argparse type: a positive number [unit] (structures.checks.check_positive)."""
    from structures.checks import check_positive

    def parse(text: str) -> float:
        try:
            return check_positive(name, text, unit)
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return v


def _count(name: str, minimum: int = 1):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {text!r}")
        return v

    return parse


def _existing(path: str, directory_ok: tuple[str, ...] = ()) -> Path:
    p = Path(path)
    if not (p.is_file() or (p.is_dir() and p.suffix.lower() in directory_ok)):
        raise CLIError(f"file not found: {path}")
    return p


def _check_new(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise CLIError(f"{path} exists; pass --overwrite to replace it")


def _write_csv(path: Path, header: list[str], rows) -> None:
    """Write a CSV atomically (``name.tmp`` → rename)."""
    from simkit.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _read_columns(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise CLIError(f"{path}: expected a CSV with a header and at least one row")
    cols = {h.strip(): [] for h in rows[0]}
    for r in rows[1:]:
        for h, v in zip(rows[0], r):
            cols[h.strip()].append(v)
    return cols


def _q_column(path: Path, cols: dict, others: str) -> list[str]:
    from fitting.pipeline import Q_COLUMN

    if Q_COLUMN in cols:
        return cols[Q_COLUMN]
    if "q_A^-1" in cols:
        raise CLIError(
            f"{path}: column 'q_A^-1' is ambiguous (pyFAI's name for 2π/d); rename it to '{Q_COLUMN}' — values from "
            "sei-send < 0.2 are 1/d already, pyFAI's must be divided by 2π"
        )
    raise CLIError(f"{path}: needs columns '{Q_COLUMN}' and {others}")


def _load_measured(path: Path, cls: str | None):
    """(q [Å⁻¹], counts, exposure [pixels]) from ``profiles.csv`` of ``analyze`` (or a Q, counts[, exposure] CSV)."""
    import numpy as np

    cols = _read_columns(path)
    what = "counts (and exposure_px), as written by 'sei-send analyze'"
    qcol = _q_column(path, cols, what)
    if "counts" not in cols:
        _q_column(path, {}, what)
    sel = np.ones(len(qcol), bool)
    if "class" in cols:
        classes = sorted(set(cols["class"]))
        if cls is None:
            raise CLIError(f"{path} holds several classes ({', '.join(classes)}); choose one with --class")
        if cls not in classes:
            raise CLIError(f"--class {cls!r} is not in {path}; it has {', '.join(classes)}")
        sel = np.array([c == cls for c in cols["class"]])
    q = np.array(qcol, float)[sel]
    y = np.array(cols["counts"], float)[sel]
    e = np.array(cols["exposure_px"], float)[sel] if "exposure_px" in cols else np.ones_like(q)
    return q, y, e


def _load_component(path: Path):
    """(q [Å⁻¹], intensity) from a ``simulate --profile-csv`` file."""
    import numpy as np

    cols = _read_columns(path)
    what = "intensity, as written by 'sei-send simulate --profile-csv'"
    qcol = _q_column(path, cols, what)
    if "intensity" not in cols:
        _q_column(path, {}, what)
    return np.array(qcol, float), np.array(cols["intensity"], float)


# ----------------------------------------------------------------------------------------------------------
# subcommands
# ----------------------------------------------------------------------------------------------------------
def _structure_from_args(args):
    """Call the structures builder named by ``args.kind`` (units converted: nm → Å)."""
    from structures import amorphous, crystals

    rng = args.seed
    cell = tuple(NM * float(x) for x in args.box_nm) if args.box_nm else None
    if args.kind == "crystal":
        atoms = crystals.bulk(args.phase, temperature=args.temperature)
        if args.repeat > 1:
            atoms = atoms.repeat(args.repeat)
        return atoms
    if args.kind == "nanocrystal":
        return crystals.nanocrystal(
            args.phase, NM * args.diameter_nm, orientation=_orientation(args.orientation), f_vacancy=args.f_vacancy,
            temperature=args.temperature, rng=rng,
        )  # fmt: skip
    kw = {"relax": not args.no_relax, "rng": rng, "source": args.source}
    if cell is not None:
        kw["cell"] = cell
    else:
        kw["n_atoms"] = args.n_atoms
    if args.kind == "type1":
        return amorphous.type1_sei(density=args.density or 2.1, **kw)
    if args.kind == "type2":
        return amorphous.type2_matrix(density=args.density or 2.1, **kw)
    from structures.electrolyte import electrolyte

    kw.pop("relax")
    return electrolyte(
        molality_lifsi=args.molality_lifsi, molality_litfsi=args.molality_litfsi, solvent=args.solvent,
        density=args.density, **kw,
    )  # fmt: skip


def _orientation(text: str):
    if text == "random":
        return text
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--orientation {text!r}: give a zone axis 'h,k,l' (integers) or 'random'") from None


def cmd_build(args) -> int:
    from ase.io import write

    out = Path(args.output)
    fmt = STRUCTURE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise CLIError(f"output {out.name!r}: unsupported extension; use one of {', '.join(STRUCTURE_FORMATS)}")
    _check_new(out, args.overwrite)
    atoms = _structure_from_args(args)
    from simkit.atomic import atomic_path

    with atomic_path(out) as tmp:
        write(tmp, atoms, format=fmt)
    vol = atoms.get_volume()
    dens = atoms.get_masses().sum() * 1.66053906660 / vol if vol > 0 else float("nan")
    print(f"wrote {out}: {len(atoms)} atoms, cell {' × '.join(f'{x:.2f}' for x in atoms.cell.lengths())} Å, "
          f"density {dens:.3f} g/cm³")  # fmt: skip
    return 0


def _read_structure(path: Path):
    from ase.io import read

    try:
        return read(path)
    except Exception as exc:  # ASE raises many kinds on unreadable files
        raise CLIError(f"cannot read a structure from {path}: {exc}") from exc


def cmd_simulate(args) -> int:
    import numpy as np

    from fitting.pipeline import Q_COLUMN
    from simkit.geometry import DetectorGeometry
    from simkit.radial import make_plan_from_geometry

    src = _existing(args.structure)
    atoms = _read_structure(src)
    if len(atoms) == 0:
        raise CLIError(f"{src} holds no atoms")
    energy = 1e3 * args.energy_kev
    geometry = DetectorGeometry(shape=(args.detector_px, args.detector_px), pixel_size=args.pixel_size)
    out = Path(args.output) if args.output else None
    if out is None and args.profile_csv is None:
        raise CLIError("nothing to write: give an output .h5 (multislice) and/or --profile-csv")
    if args.method == "kinematic":
        from simkit.kinematic import debye_intensity, probe_convolve

        if out is not None:
            raise CLIError("--method kinematic gives a radial profile only: use --profile-csv instead of an output .h5")
        q = np.linspace(0.02, geometry.q_max * 1.05, 400)
        iq = debye_intensity(atoms, q)
        prof = probe_convolve(q, iq, semiangle=args.semiangle, energy=energy, geometry=geometry)
        q_out, i_out = prof.q, prof.mean
    else:
        from simkit.nbed import Multislice, Probe, save_patterns, simulate_pattern, to_detector

        if out is not None:
            _check_new(out, args.overwrite)
        probe = Probe(energy=energy, semiangle=args.semiangle)
        ms = Multislice(sampling=args.sampling, slice_thickness=args.slice_thickness, n_phonons=args.phonons)
        sim = simulate_pattern(atoms, probe, ms, seed=args.seed, allow_repeat=True)
        if out is not None:
            save_patterns(out, sim, atoms)
            print(f"wrote {out}: pattern {sim.array.shape[-2]}×{sim.array.shape[-1]} px, sampling "
                  f"{sim.sampling[0]:.5f} Å⁻¹/px")  # fmt: skip
        pattern = to_detector(sim, geometry)
        plan = make_plan_from_geometry(geometry, n_bins=int(geometry.q_max / args.pixel_size), q_max=geometry.q_max)
        prof = plan.integrate(pattern)
        q_out, i_out = prof.q, prof.mean
    if args.profile_csv:
        path = Path(args.profile_csv)
        _check_new(path, args.overwrite)
        _write_csv(path, [Q_COLUMN, "intensity"], ((f"{a:.6f}", f"{b:.8g}") for a, b in zip(q_out, i_out)))
        print(f"wrote {path}: radial profile, {len(q_out)} bins up to {q_out[-1]:.3f} Å⁻¹")
    return 0


def _instrument(args, default):
    """The Instrument of ``--instrument FILE`` (or ``default``) with ``--descan``/``--ellipse`` put over it."""
    import dataclasses

    from simkit.instrument import Descan, Ellipse, load_instrument

    inst = default if args.instrument is None else load_instrument(_existing(args.instrument))
    if args.descan is not None:
        sy, sx, oy, ox = args.descan
        inst = dataclasses.replace(inst, descan=Descan(slope_y=sy, slope_x=sx, offset_y=oy, offset_x=ox))
    if args.ellipse is not None:
        ratio, angle = args.ellipse
        inst = dataclasses.replace(inst, ellipse=Ellipse(ratio=ratio, angle=angle))
    return inst


def cmd_synth(args) -> int:
    from simkit.synth import DEFAULT_INSTRUMENT, default_scan, synthesize_scan

    out = Path(args.output)
    _check_new(out, args.overwrite)
    step = NM * args.step_nm
    if args.dose is not None:
        electrons = args.dose * step**2  # scan fluence [e/Å²] × step area [Å²]
    else:
        electrons = args.electrons
    scene, _ = default_scan(args.scene, field_shape=tuple(args.size), step=step)
    res = synthesize_scan(
        scene, out, library=args.preset, probe=None if args.semiangle == 2.0 else _probe(args.semiangle),
        electrons_per_pattern=electrons, seed=args.seed, overwrite=args.overwrite, cache_dir=args.cache_dir,
        progress=not args.quiet, compression=None if args.compression == "none" else args.compression,
        instrument=_instrument(args, DEFAULT_INSTRUMENT),
    )  # fmt: skip
    print(f"wrote {res.path}: {args.scene} scene, {scene.field_shape[0]} × {scene.field_shape[1]} positions at "
          f"{step:.0f} Å steps, {res.electrons_per_pattern:.0f} e per pattern (scan fluence "
          f"{res.scan_fluence:.2f} e/Å²)")  # fmt: skip
    hs = "hs.load(path)" if out.suffix.lower() in (".hspy", ".emd") else "hs.load(path, file_format='hspy')"
    codec = "" if args.compression != "blosc-lz4" else "; other readers: import hdf5plugin first (blosc-lz4)"
    print(f"  opens in py4DSTEM.read(path) (DataCube + Calibration), HyperSpy {hs}, emdfile.read(path) after "
          f"`import simkit.emd`, and fitting.io.load_scan{codec}")  # fmt: skip
    return 0


def _load_scan(args, src: Path):
    """``fitting.io.load_scan`` with the options of :func:`_scan_options` (units converted: nm → Å, keV → eV)."""
    from fitting.io import load_scan

    return load_scan(
        src, pixel_size=args.pixel_size, step=None if args.step_nm is None else NM * args.step_nm,
        scan_shape=args.scan_shape, flyback=args.flyback, flyback_position=args.flyback_position,
        energy=None if args.energy_kev is None else 1e3 * args.energy_kev, semiangle=args.semiangle,
        dataset=args.dataset,
    )  # fmt: skip


def cmd_convert(args) -> int:
    from fitting.io import convert_scan

    src = _existing(args.scan, directory_ok=(".zspy",))
    out = Path(args.output)
    _check_new(out, args.overwrite)
    scan = _load_scan(args, src)
    convert_scan(scan, out, compression=None if args.compression == "none" else args.compression, overwrite=True)
    print(f"wrote {out}: {scan.scan_shape[0]} × {scan.scan_shape[1]} positions at {scan.step:.4g} Å steps, "
          f"{scan.pixel_size:.5g} Å⁻¹/px (Q = 1/d)")  # fmt: skip
    return 0


def _probe(semiangle: float):
    from simkit.nbed import Probe

    return Probe(semiangle=semiangle)


def cmd_analyze(args) -> int:
    from fitting.calibrate import load_mask
    from fitting.classify import ClassifyRules
    from fitting.pipeline import Q_COLUMN, analyze_scan, class_mean_profiles
    from simkit.instrument import Instrument

    src = _existing(args.scan, directory_ok=(".zspy",))
    scan = _load_scan(args, src)
    mask = None if args.mask is None else load_mask(_existing(args.mask), shape=tuple(scan.data.shape[-2:]))
    rules = None if args.rules is None else ClassifyRules.from_json(_existing(args.rules))
    out = Path(args.output)
    res = analyze_scan(
        scan, out, pixel_size=args.pixel_size, ellipse_q_range=args.ellipse_window,
        instrument=_instrument(args, Instrument()), exclude_direct=args.exclude_direct, figures=not args.no_figures,
        seed=args.seed, mask=mask, rules=rules,
    )  # fmt: skip
    rows = []
    for cls, (q, y, e) in class_mean_profiles(res).items():
        rows += [(cls, f"{a:.6f}", f"{b:.6g}", f"{c:.6g}") for a, b, c in zip(q, y, e)]
    _write_csv(out / "profiles.csv", ["class", Q_COLUMN, "counts", "exposure_px"], rows)
    s = res.summary
    print(f"analysed {src}: {s['scan_shape'][0]} × {s['scan_shape'][1]} patterns, pixel size "
          f"{s['pixel_size_A^-1_per_px']:.5f} Å⁻¹/px")  # fmt: skip
    if s["sro_peak_mean_A^-1"] is not None:  # count, mean and std over the same (amorphous, fitted) pixels
        print(f"  SRO peak (amorphous classes): mean {s['sro_peak_mean_A^-1']:.3f} Å⁻¹, std "
              f"{s['sro_peak_std_A^-1']:.3f} Å⁻¹ over {s['sro_peak_fitted_pixels']} fitted pixels (of "
              f"{s['sro_peak_amorphous_pixels']} amorphous pixels)")  # fmt: skip
    d, e = s["instrument"]["descan"], s["instrument"]["ellipse"]
    src_d, src_e = ("given" if g else "measured" for g in s["instrument_given"].values())
    src_e = "none corrected" if src_e == "measured" and s["ellipse_ratio"] is None else src_e
    print(f"  descan ({src_d}): slope {d['slope_y_px']:+.2f}, {d['slope_x_px']:+.2f} px, offset "
          f"{d['offset_y_px']:+.2f}, {d['offset_x_px']:+.2f} px; ellipse ({src_e}): ratio {e['ratio']:.4f}, "
          f"angle {e['angle_rad']:.3f} rad")  # fmt: skip
    for c, n in s["class_counts"].items():
        if n:
            print(f"  class {c}: {n} pixels")
    bp = s.get("bad_pixels") or {}
    if bp.get("hot_pixels") or bp.get("dead_pixels") or bp.get("transient_hot_detections"):
        print(f"  bad pixels: {bp['hot_pixels']} hot, {bp['dead_pixels']} dead (excluded); "
              f"{bp['transient_hot_detections']} transient hot hits in {bp['frames_checked']} frames")  # fmt: skip
    for w in s.get("warnings") or []:
        print(f"  warning: {w}")
    print(f"  wrote {out}/summary.json, pixels.csv, profiles.csv" + ("" if args.no_figures else " and figures"))
    return 0


def _candidates(specs: list[str]) -> dict:
    cands: dict = {}
    for spec in specs:
        if "=" not in spec:
            raise CLIError(f"--candidate {spec!r}: use NAME=profile.csv[+other.csv...]")
        name, files = spec.split("=", 1)
        parts = {}
        for f in files.split("+"):
            p = _existing(f)
            parts[p.stem] = _load_component(p)
        cands[name] = parts
    return cands


def cmd_fit(args) -> int:
    from fitting.hypotheses import compare

    measured = _load_measured(_existing(args.profiles), args.cls)
    cands = _candidates(args.candidate)
    if args.top < 1:
        raise CLIError(f"--top {args.top}: give at least 1 candidate to show")
    comp = compare(measured, cands, q_range=tuple(args.q_range), resample=True)
    rows = [
        (r.name, f"{r.delta_aic:.3f}", f"{r.akaike_weight:.4f}", f"{r.loglike:.3f}", r.n_params,
         f"{r.deviance / max(r.dof, 1):.3f}", r.converged)
        for r in comp.rows
    ]  # fmt: skip
    header = ["candidate", "delta_AIC", "akaike_weight", "loglike", "n_params", "deviance_per_dof", "converged"]
    print(f"{'rank':>4}  {'candidate':<30} {'ΔAIC':>9} {'weight':>7} {'dev/dof':>8}  converged")
    for k, r in enumerate(comp.rows, 1):
        print(f"{k:>4}  {r.name:<30} {r.delta_aic:>9.2f} {r.akaike_weight:>7.3f} "
              f"{r.deviance / max(r.dof, 1):>8.2f}  {'yes' if r.converged else 'no'}")  # fmt: skip
    for w in comp.warnings:
        print(f"  warning: {w}")
    if args.output:
        _write_csv(Path(args.output), header, rows)
        print(f"wrote {args.output}")
    if args.curves:
        _write_csv(Path(args.curves), *_fit_curves(comp, top=args.top))
        print(f"wrote {args.curves}: data, model, components and Pearson residuals of the top {args.top} candidates")
    if args.figure:
        from fitting.pipeline import save_figure
        from fitting.plots import fit_figure

        cls = f" — class {args.cls}" if args.cls else ""
        save_figure(fit_figure(comp, top=args.top, title=f"{args.profiles}{cls}"), Path(args.figure))
        print(f"wrote {args.figure}: data vs the top {args.top} candidates, components, residuals, parameters ± 1σ")
    return 0


def _fit_curves(comp, *, top: int):
    """Header and rows of the fitted curves: per candidate and bin, data, model, components and residuals."""
    from fitting.pipeline import Q_COLUMN

    names = sorted({c for r in comp.rows[:top] for c in comp.fits[r.name].component_names})
    header = ["candidate", Q_COLUMN, "counts", "exposure_px", "model_counts", "background_counts"]
    header += [f"{n}_counts" for n in names] + ["pearson_residual"]
    rows = []
    for r in comp.rows[:top]:
        f = comp.fits[r.name]
        contrib = dict(zip(f.component_names, f.contributions))
        for i in range(len(f.q)):
            if not f.used[i]:
                continue
            parts = [f"{contrib[n][i]:.6g}" if n in contrib else "" for n in names]
            rows.append([r.name, f"{f.q[i]:.6f}", f"{f.counts[i]:.6g}", f"{f.exposure[i]:.6g}", f"{f.expected[i]:.6g}",
                         f"{f.background_counts[i]:.6g}", *parts, f"{f.residuals[i]:.5g}"])  # fmt: skip
    return header, rows


def cmd_refine(args) -> int:
    import numpy as np

    from fitting.refine import Parameter, kinematic_simulator, likelihood_objective, refine
    from structures import amorphous

    measured = _load_measured(_existing(args.profiles), args.cls)
    lo, hi = args.density_range
    if not 0 < lo < hi:
        raise CLIError(f"--density-range {lo} {hi}: need 0 < low < high [g/cm³]")
    start = args.density if args.density is not None else 0.5 * (lo + hi)
    builder_fn = amorphous.type1_sei if args.structure == "type1" else amorphous.type2_matrix

    def builder(params, rng):
        return builder_fn(n_atoms=args.n_atoms, density=params["density"], relax=False, rng=rng)

    q_sim = np.linspace(0.05, max(measured[0].max() * 1.2, 1.0), 300)
    res = refine(
        [Parameter(name="density", start=start, lower=lo, upper=hi, unit="g/cm³")],
        builder=builder,
        simulator=kinematic_simulator(q_sim, semiangle=args.semiangle, energy=1e3 * args.energy_kev),
        objective=likelihood_objective(measured, q_range=tuple(args.q_range), resample=True),
        seed=args.seed, checkpoint=args.checkpoint, max_evaluations=args.max_evaluations, progress=not args.quiet,
    )  # fmt: skip
    best = float(res.params["density"])
    err = _profile_sigma(res.history_x[:, 0], res.history_f, best)
    at_bound = min(best - lo, hi - best) < 1e-3 * (hi - lo)
    print(f"refined {args.structure} density: {best:.3f} "
          + (f"± {err:.3f} g/cm³ (1σ, Δ(−log L) = ½ on a parabola through the evaluations)" if err else
             "g/cm³ (1σ not defined: the profile of −log L is not curved upwards around the best value)")
          + f"; −log L = {res.fun:.2f}, {res.n_evaluations} evaluations, "
          f"{'converged' if res.converged else 'NOT converged (' + res.message + ')'}")  # fmt: skip
    if at_bound:
        print(f"  warning: the best density sits at a bound of --density-range {lo} {hi}: widen the range")
    if args.output:
        import json

        from simkit.atomic import atomic_write_text

        atomic_write_text(Path(args.output), json.dumps({
            "structure": args.structure, "density_g_cm3": best, "density_1sigma_g_cm3": err,
            "neg_loglike": float(res.fun), "n_evaluations": int(res.n_evaluations), "converged": bool(res.converged),
            "at_bound": bool(at_bound), "bounds_g_cm3": [lo, hi], "message": res.message,
            "evaluations": [[float(x), float(f)] for x, f in zip(res.history_x[:, 0], res.history_f)],
        }, indent=2) + "\n")  # fmt: skip
        print(f"wrote {args.output}")
    if args.figure:
        from fitting.pipeline import save_figure
        from fitting.plots import profile_likelihood_figure

        fig = profile_likelihood_figure(res.history_x[:, 0], res.history_f, name=f"{args.structure} density",
                                        unit="g/cm³", best=best, err=err, bounds=(lo, hi))  # fmt: skip
        save_figure(fig, Path(args.figure))
        print(f"wrote {args.figure}: profile likelihood of the density")
    return 0


def _profile_sigma(x, f, best: float):
    """1σ [units of x] from a parabola through the evaluations nearest the best value (Δf = ½), or None."""
    import numpy as np

    x, f = np.asarray(x, float), np.asarray(f, float)
    ok = np.isfinite(x) & np.isfinite(f)
    x, f = x[ok], f[ok]
    ux, idx = np.unique(np.round(x, 9), return_index=True)
    if ux.size < 3:
        return None
    x, f = x[idx], f[idx]
    near = np.argsort(np.abs(x - best))[: max(3, min(5, x.size))]
    a = np.polyfit(x[near], f[near], 2)[0]
    return float(np.sqrt(0.5 / a)) if a > 0 else None


def cmd_demo(args) -> int:
    from fitting.demo import run_demo

    return run_demo(reduced=args.reduced, out=args.output, cache_dir=args.cache_dir, progress=not args.quiet)


# ----------------------------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage block) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------------------------------------
# plan: experiment planner (fitting.plan)
# ----------------------------------------------------------------------------------------------------------
#: Detector presets of ``plan`` (None = an ideal counter).
PLAN_DETECTORS = ("ideal", "merlin", "empad")


def _plan_hypothesis(spec: str, thickness: float, energy: float):
    from fitting.plan import PRESETS, hypothesis_from_atoms, preset_hypotheses

    if spec in PRESETS:
        return preset_hypotheses([spec], thickness=thickness, energy=energy)[0]
    path = Path(spec)
    if not path.exists():
        raise CLIError(f"hypothesis {spec!r}: neither a preset ({', '.join(PRESETS)}) nor an existing structure file")
    atoms = _read_structure(path)
    if len(atoms) == 0:
        raise CLIError(f"{path} holds no atoms")
    return hypothesis_from_atoms(path.stem, atoms, thickness=thickness, energy=energy)


def cmd_plan(args) -> int:
    from fitting.plan import plan_experiment, plot_plan
    from simkit.damage import DamageModel
    from simkit.detector import empad, medipix_merlin
    from simkit.geometry import DetectorGeometry

    fig_path = Path(args.figure)
    _check_new(fig_path, args.overwrite)
    if args.csv:
        _check_new(Path(args.csv), args.overwrite)
    energy = 1e3 * args.energy_kev
    thickness = NM * args.thickness_nm
    hyps = [_plan_hypothesis(h, thickness, energy) for h in args.hypotheses]
    shape = (args.detector_px, args.detector_px)
    detector = {"ideal": None, "merlin": lambda: medipix_merlin(shape=shape), "empad": lambda: empad(shape=shape)}[
        args.detector
    ]
    detector = detector() if detector else None
    damage = None if args.no_damage else DamageModel(threshold_kind=args.damage_kind)
    res = plan_experiment(
        hyps, semiangles=args.semiangles, electrons_per_pattern=args.electrons,
        steps=[NM * s for s in args.steps_nm], detector=detector, damage=damage, region_pixels=args.region_pixels,
        confidence=args.confidence, max_damage=args.max_damage, energy=energy,
        geometry=DetectorGeometry(shape=shape, pixel_size=args.pixel_size), q_range=tuple(args.q_range),
        scan_shape=tuple(args.scan), model_damage=args.model_damage, n_sim=args.n_sim, seed=args.seed,
    )  # fmt: skip
    print(res.table())
    print(res.recommend().message)
    plot_plan(res, fig_path)
    print(f"wrote {fig_path}")
    if args.csv:
        from dataclasses import asdict

        rows = [asdict(r) for r in res.rows]
        units = {"semiangle": "mrad", "electrons_per_pattern": "e", "step": "A", "scan_fluence": "e/A^2",
                 "local_fluence": "e/A^2", "counts": "counts"}  # fmt: skip
        header = [f"{k}_{units[k]}" if k in units else k for k in rows[0]]
        _write_csv(Path(args.csv), header, [list(r.values()) for r in rows])
        print(f"wrote {args.csv}")
    return 0


def _add_plan_parser(sub, common) -> None:
    p = sub.add_parser(
        "plan", parents=[common],
        help="experiment planner: which semi-angle / dose / step tells two hypotheses apart before damage",
    )  # fmt: skip
    p.add_argument("hypotheses", nargs=2, metavar="HYPOTHESIS",
                   help="two presets (sro_0.295, li2s, lif, lif_fvac20) or structure files (ASE)")  # fmt: skip
    p.add_argument("--semiangles", type=_positive("--semiangles", "mrad"), nargs="+", default=[2.0, 0.15],
                   help="probe semi-angles [mrad] (default 2 0.15)")  # fmt: skip
    p.add_argument("--electrons", type=_positive("--electrons", "e per pattern"), nargs="+",
                   default=[1e3, 1e4, 1e5, 1e6], help="electrons per pattern [e] (default 1e3 … 1e6)")  # fmt: skip
    p.add_argument("--steps-nm", type=_positive("--steps-nm", "nm"), nargs="+", default=[4.0],
                   help="scan steps [nm] (default 4)")  # fmt: skip
    p.add_argument("--region-pixels", type=int, default=1, help="patterns summed per decision [-] (default 1)")
    p.add_argument("--confidence", type=float, default=0.95, help="required P(correct decision) [0.5–1] (default 0.95)")
    p.add_argument("--max-damage", type=float, default=0.1,
                   help="largest accepted loss of short-range order [fraction] (default 0.1)")  # fmt: skip
    p.add_argument("--damage-kind", choices=("scan", "local"), default="scan",
                   help="the study's damage doses read as scan or local fluence [-] (default scan)")  # fmt: skip
    p.add_argument("--no-damage", action="store_true", help="switch beam damage off [-]")
    p.add_argument("--model-damage", action="store_true",
                   help="fit hypotheses that include the scan's damage [-] (default: pristine structures)")  # fmt: skip
    p.add_argument("--thickness-nm", type=_positive("--thickness-nm", "nm"), default=10.0,
                   help="sample thickness when a hypothesis is true [nm] (default 10)")  # fmt: skip
    p.add_argument("--detector", choices=PLAN_DETECTORS, default="merlin", help="detector model [-] (default merlin)")
    p.add_argument("--detector-px", type=int, default=256, help="detector side [px] (default 256)")
    p.add_argument("--pixel-size", type=_positive("--pixel-size", "Å⁻¹/px"), default=DEFAULT_PIXEL_SIZE,
                   help=f"detector pixel size [Å⁻¹/px] (default {DEFAULT_PIXEL_SIZE:g})")  # fmt: skip
    p.add_argument("--energy-kev", type=_positive("--energy-kev", "keV"), default=300.0,
                   help="beam energy [keV] (default 300)")  # fmt: skip
    p.add_argument("--q-range", type=float, nargs=2, default=(0.15, 0.85), metavar=("QMIN", "QMAX"),
                   help="compared Q window [Å⁻¹] (default 0.15 0.85)")  # fmt: skip
    p.add_argument("--scan", type=int, nargs=2, default=(90, 60), metavar=("NY", "NX"),
                   help="whole scan around the region (slow, fast) [positions] (default 90 60)")  # fmt: skip
    p.add_argument("--n-sim", type=int, default=200, help="seeded Poisson simulations per setting [-] (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed [-]")
    p.add_argument("--figure", default="plan.png", help="figure file (.png/.pdf/.svg) (default plan.png)")
    p.add_argument("--csv", default=None, help="also write the table as CSV here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_plan)


def _scan_options(p) -> None:
    """The reading options of a scan (calibrations over the file's, scan shape, flyback, dataset)."""
    p.add_argument("--pixel-size", type=_positive("--pixel-size", "Å⁻¹/px"), default=None,
                   help="detector pixel size [Å⁻¹/px] (overrides the file)")  # fmt: skip
    p.add_argument("--step-nm", type=_positive("--step-nm", "nm"), default=None,
                   help="scan step [nm] (overrides the file)")  # fmt: skip
    p.add_argument("--energy-kev", type=_positive("--energy-kev", "keV"), default=None,
                   help="beam energy [keV] (overrides the file)")  # fmt: skip
    p.add_argument("--semiangle", type=_positive("--semiangle", "mrad"), default=None,
                   help="probe convergence semi-angle [mrad] (overrides the file)")  # fmt: skip
    p.add_argument("--scan-shape", type=_count("--scan-shape"), nargs=2, default=None, metavar=("NY", "NX"),
                   help="scan positions (slow, fast) without flyback frames [-]: needed for Merlin .mib and 3-D "
                        "stacks of frames")  # fmt: skip
    p.add_argument("--flyback", type=_count("--flyback", minimum=0), default=0,
                   help="extra (flyback) frames per scan row, dropped [-] (default 0)")  # fmt: skip
    p.add_argument("--flyback-position", choices=("start", "end"), default="start",
                   help="whether the flyback frames open or close each row [-] (default start)")  # fmt: skip
    p.add_argument("--dataset", default=None,
                   help="HDF5 path of the 4-D array when a file holds several [-]")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``sei-send`` command."""
    parser = _Parser(
        prog="sei-send",
        description="Simulate and analyse cryo-SEND (4D-STEM) data of Li-metal SEIs. Q = 1/d [Å⁻¹] throughout.",
    )
    parser.add_argument("--version", action="version", version=f"sei-send {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")

    b = sub.add_parser("build", parents=[common], help="write a structure (.xyz/.cif/.traj)")
    b.add_argument("kind", choices=BUILD_KINDS, help="what to build")
    b.add_argument("output", help="output file; format from the extension: .xyz, .cif or .traj")
    b.add_argument("--phase", default="LiF", help="crystal phase (LiF, Li2O, Li2S, Li, Cu, …) [-]")
    b.add_argument("--temperature", default="cryo", help="lattice constant set: cryo | room [-]")
    b.add_argument("--repeat", type=int, default=1, help="crystal: unit-cell repeats per axis [-]")
    b.add_argument("--diameter-nm", type=_positive("--diameter-nm", "nm"), default=3.0,
                   help="nanocrystal diameter [nm] (default 3)")  # fmt: skip
    b.add_argument("--orientation", default="random", help="nanocrystal zone axis 'h,k,l' or 'random' [-]")
    b.add_argument("--f-vacancy", type=_fraction, default=0.0, help="nanocrystal F-vacancy fraction [0–1]")
    b.add_argument("--density", type=_positive("--density", "g/cm³"), default=None,
                   help="amorphous density [g/cm³] (Type 1/2: 2.1; electrolyte: from its composition)")  # fmt: skip
    b.add_argument("--n-atoms", type=int, default=600, help="amorphous model size [atoms] (default 600)")
    b.add_argument("--box-nm", type=_positive("--box-nm", "nm"), nargs=3, default=None,
                   help="amorphous cell edges a b c [nm] (instead of --n-atoms)")  # fmt: skip
    b.add_argument("--molality-lifsi", type=float, default=4.6, help="electrolyte LiFSI molality [mol/kg] (4.6)")
    b.add_argument("--molality-litfsi", type=float, default=2.3, help="electrolyte LiTFSI molality [mol/kg] (2.3)")
    b.add_argument("--solvent", default="DME", help="electrolyte solvent (DME = 1,2-dimethoxyethane) [-]")
    b.add_argument("--no-relax", action="store_true", help="amorphous: skip the potential relaxation")
    b.add_argument("--source", choices=("relaxed", "packing"), default="relaxed",
                   help="amorphous/electrolyte: shipped melt-quenched model (relaxed, density an output) or rigid "
                        "units packed at --density (packing, the fast path) [-] (default relaxed)")  # fmt: skip
    b.add_argument("--seed", type=int, default=0, help="random seed [-]")
    b.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser(
        "simulate", parents=[common], help="diffraction of a structure file (NBED multislice or kinematic profile)"
    )
    s.add_argument("structure", help="structure file readable by ASE (.xyz, .cif, .traj, …)")
    s.add_argument("output", nargs="?", default=None, help="patterns .h5 (multislice only; simkit.nbed layout)")
    s.add_argument("--method", choices=("multislice", "kinematic"), default="multislice",
                   help="abTEM multislice NBED or kinematic Debye I(Q) convolved with the probe [-]")  # fmt: skip
    s.add_argument("--semiangle", type=_positive("--semiangle", "mrad"), default=2.0,
                   help="probe convergence semi-angle [mrad] (default 2)")  # fmt: skip
    s.add_argument("--energy-kev", type=_positive("--energy-kev", "keV"), default=300.0,
                   help="beam energy [keV] (default 300)")  # fmt: skip
    s.add_argument("--sampling", type=_positive("--sampling", "Å"), default=0.1,
                   help="multislice real-space sampling [Å] (default 0.1)")  # fmt: skip
    s.add_argument("--slice-thickness", type=_positive("--slice-thickness", "Å"), default=2.0,
                   help="multislice slice thickness [Å] (default 2)")  # fmt: skip
    s.add_argument("--phonons", type=int, default=1, help="frozen-phonon configurations [-] (default 1)")
    s.add_argument("--detector-px", type=int, default=256, help="detector side for the profile [px] (default 256)")
    s.add_argument("--pixel-size", type=_positive("--pixel-size", "Å⁻¹/px"), default=DEFAULT_PIXEL_SIZE,
                   help=f"detector pixel size for the profile [Å⁻¹/px] (default {DEFAULT_PIXEL_SIZE:g})")  # fmt: skip
    s.add_argument("--profile-csv", default=None, help="write the radial profile (q [Å⁻¹], intensity per px) here")
    s.add_argument("--seed", type=int, default=0, help="frozen-phonon seed [-]")
    s.add_argument("--overwrite", action="store_true", help="replace existing output files")
    s.set_defaults(func=cmd_simulate)

    y = sub.add_parser(
        "synth", parents=[common], help="synthetic SEND scan of a default scene → EMD 1.0 file with ground truth"
    )
    y.add_argument("output", help="output file: .emd/.h5 (py4DSTEM, emdfile) or .emd/.hspy (hs.load); same content")
    y.add_argument("--scene", choices=("bottom", "top"), default="bottom",
                   help="bottom: Li|Type 1|Type 2|Cu; top: Li|Type 1|electrolyte [-]")  # fmt: skip
    y.add_argument("--semiangle", type=_positive("--semiangle", "mrad"), default=2.0,
                   help="probe semi-angle [mrad] (default 2)")  # fmt: skip
    y.add_argument("--size", type=int, nargs=2, default=(12, 50), metavar=("NY", "NX"),
                   help="scan positions (slow, fast) [-] (default 12 50)")  # fmt: skip
    y.add_argument("--step-nm", type=_positive("--step-nm", "nm"), default=4.0, help="scan step [nm] (default 4)")
    dose = y.add_mutually_exclusive_group()
    # the library default (simkit.synth.DEFAULT_ELECTRONS_PER_PATTERN; not imported here to keep --help fast)
    dose.add_argument("--electrons", type=_positive("--electrons", "e per pattern"), default=1.0e6,
                      help="dose per pattern [e] (default 1e6 = 16 pA x 10 ms)")  # fmt: skip
    dose.add_argument("--dose", type=_positive("--dose", "e/Å²"), default=None,
                      help="scan fluence [e/Å²] = electrons per pattern / step² (instead of --electrons)")  # fmt: skip
    y.add_argument("--preset", choices=("tiny", "demo", "full"), default="tiny",
                   help="pattern-library size preset [-] (default tiny)")  # fmt: skip
    y.add_argument("--cache-dir", default=None, help="pattern-library cache directory (default .sei-send-cache)")
    y.add_argument("--seed", type=int, default=0, help="random seed [-]")
    y.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    y.add_argument("--compression", choices=("lzf", "blosc-lz4", "none"), default="lzf",
                   help="file codec of the patterns [-]: lzf opens in every HDF5 reader (default); blosc-lz4 writes "
                        "2x and decodes ~5x faster but other readers must import hdf5plugin first")  # fmt: skip
    y.add_argument("--quiet", action="store_true", help="no progress bars")
    _instrument_options(y, "the simulated", "(default: descan 0.8 -0.6 1.5 1.0, ellipse 1.02 0.5)")
    y.set_defaults(func=cmd_synth)

    a = sub.add_parser(
        "analyze", parents=[common], help="scan → calibrated profiles, SRO peak map, classes, figures, JSON/CSV summary"
    )
    a.add_argument("scan", help="4D scan file (EMD 1.0 .h5/.emd, .npy, or formats read through rosettasciio)")
    a.add_argument("-o", "--output", default="analysis", help="output directory (default ./analysis)")
    _scan_options(a)
    a.add_argument("--ellipse-window", type=float, nargs=2, default=None, metavar=("QMIN", "QMAX"),
                   help="ring window for the ellipse fit [Å⁻¹] (default: no ellipse fit)")  # fmt: skip
    a.add_argument("--exclude-direct", type=_positive("--exclude-direct", "Å⁻¹"), default=0.15,
                   help="ignore Q below this (direct beam) [Å⁻¹] (default 0.15)")  # fmt: skip
    a.add_argument("--mask", default=None, metavar="FILE",
                   help="detector mask .npy/.tif/.h5 (non-zero = use the pixel; 0 on a beam stop) [-]")  # fmt: skip
    a.add_argument("--rules", default=None, metavar="RULES.json",
                   help="classification thresholds: JSON of fitting.classify.ClassifyRules fields [-]")  # fmt: skip
    a.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    a.add_argument("--seed", type=int, default=0, help="seed of the histogram mixture [-]")
    _instrument_options(a, "a known", "(default: measured from the data)")
    a.set_defaults(func=cmd_analyze)

    c = sub.add_parser(
        "convert", parents=[common], help="scan in any readable format → .emd/.h5/.hspy (EMD 1.0) or .zspy, calibrated"
    )
    c.add_argument("scan", help="4D scan file (any format analyze reads)")
    c.add_argument("output", help=".emd (py4DSTEM, emdfile, hs.load), .h5, .hspy or .zspy (HyperSpy zarr)")
    _scan_options(c)
    c.add_argument("--compression", choices=("lzf", "blosc-lz4", "none"), default="lzf",
                   help="codec of the EMD patterns [-] (default lzf: every HDF5 reader opens it)")  # fmt: skip
    c.add_argument("--overwrite", action="store_true", help="replace an existing output")
    c.set_defaults(func=cmd_convert)

    f = sub.add_parser("fit", parents=[common], help="a measured profile vs candidate profiles → table ranked by AIC")
    f.add_argument("profiles", help="profiles.csv from 'analyze' (class, Q=1/d [1/Å], counts, exposure_px)")
    f.add_argument("--class", dest="cls", default=None, help="class whose summed profile is fitted, e.g. sei_type1")
    f.add_argument("--candidate", action="append", required=True, metavar="NAME=A.csv[+B.csv]",
                   help="candidate: profile CSVs from 'simulate --profile-csv' (q [Å⁻¹], intensity)")  # fmt: skip
    f.add_argument("--q-range", type=float, nargs=2, default=(0.2, 0.85), metavar=("QMIN", "QMAX"),
                   help="fitted Q window [Å⁻¹] (default 0.2 0.85)")  # fmt: skip
    f.add_argument("-o", "--output", default=None, help="write the ranked table as CSV here")
    f.add_argument("--figure", default=None, help="write data vs the top candidates' models here (.png 300 dpi/.pdf)")
    f.add_argument("--curves", default=None, help="write the fitted curves and residuals as CSV here")
    f.add_argument("--top", type=int, default=3, help="candidates in the figure and curves CSV [-] (default 3)")
    f.set_defaults(func=cmd_fit)

    r = sub.add_parser(
        "refine", parents=[common], help="refine the density of an amorphous model against a measured profile"
    )
    r.add_argument("profiles", help="profiles.csv from 'analyze'")
    r.add_argument("--class", dest="cls", default=None, help="class whose summed profile is fitted")
    r.add_argument("--structure", choices=("type1", "type2"), default="type1", help="amorphous model [-]")
    r.add_argument("--density", type=_positive("--density", "g/cm³"), default=None, help="start density [g/cm³]")
    r.add_argument("--density-range", type=float, nargs=2, default=(1.7, 2.5), metavar=("LOW", "HIGH"),
                   help="density bounds [g/cm³] (default 1.7 2.5)")  # fmt: skip
    r.add_argument("--n-atoms", type=int, default=300, help="model size per evaluation [atoms] (default 300)")
    r.add_argument("--semiangle", type=_positive("--semiangle", "mrad"), default=2.0, help="probe semi-angle [mrad]")
    r.add_argument("--energy-kev", type=_positive("--energy-kev", "keV"), default=300.0, help="beam energy [keV]")
    r.add_argument("--q-range", type=float, nargs=2, default=(0.2, 0.85), metavar=("QMIN", "QMAX"),
                   help="fitted Q window [Å⁻¹]")  # fmt: skip
    r.add_argument("--max-evaluations", type=int, default=30, help="objective evaluations allowed [-]")
    r.add_argument("--checkpoint", default=None, help="HDF5 checkpoint file (resumes when it exists)")
    r.add_argument("--seed", type=int, default=0, help="root seed [-]")
    r.add_argument("-o", "--output", default=None, help="write the result (density ± 1σ, evaluations) as JSON here")
    r.add_argument("--figure", default=None, help="write the profile likelihood of the density here (.png/.pdf)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_refine)

    d = sub.add_parser(
        "demo", parents=[common], help="the demonstration on the built-in bottom scene (writes demo-output/)"
    )
    d.add_argument("-o", "--output", default="demo-output", help="output directory (default ./demo-output)")
    d.add_argument("--reduced", action="store_true", help="small library and scan (a quick check)")
    d.add_argument("--cache-dir", default=None, help="pattern-library cache directory (default .sei-send-cache)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)
    _add_plan_parser(sub, common)
    return parser


def _instrument_options(p, which: str, default: str) -> None:
    """``--instrument``, ``--descan``, ``--ellipse`` (simkit.instrument.Instrument) of ``synth`` and ``analyze``."""
    p.add_argument("--instrument", default=None, metavar="JSON",
                   help=f"{which} descan/ellipse as a JSON file, e.g. {{\"descan\": {{\"slope_y_px\": 0.8, "
                        f"\"offset_x_px\": 1.0}}, \"ellipse\": {{\"ratio\": 1.02, \"angle_rad\": 0.5}}}} "
                        f"{default}")  # fmt: skip
    p.add_argument("--descan", type=float, nargs=4, default=None,
                   metavar=("SLOPE_Y", "SLOPE_X", "OFFSET_Y", "OFFSET_X"),
                   help=f"{which} descan plane [px]: centre shift = slope·(i/n − ½) + offset along y and x "
                        "(over --instrument)")  # fmt: skip
    p.add_argument("--ellipse", type=float, nargs=2, default=None, metavar=("RATIO", "ANGLE"),
                   help=f"{which} ellipse: axis ratio [-] and direction [rad] (over --instrument)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sei-send`` console script; returns the exit code.

    Parameters
    ----------
    argv : list of str or None
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on an error while running, 2 on bad arguments (argparse).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("sei-send: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line per error unless --debug
        if getattr(args, "debug", False):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"sei-send {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
