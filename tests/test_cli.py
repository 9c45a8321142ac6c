"""The ``sei-send`` command: every subcommand on tiny inputs, its exit codes and one-line error messages.

Oracles are independent of the code under test: densities of crystals from their lattice constant and formula
(ρ = Z·M/(N_A a³)), the LiF (200) reflection at Q = 2/a of the cryogenic lattice constant, the scan fluence as
electrons per pattern / step², and the contract that errors are one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from fitting.cli import main
from simkit.geometry import DEFAULT_PIXEL_SIZE

ROOT = Path(__file__).resolve().parents[1]
#: The project's pattern-library cache (shared with the demo; reused between test runs).
CACHE = ROOT / ".sei-send-cache" / "library"
U_G = 1.66053906660  # g/cm³ per u/Å³
M_LI, M_F = 6.941, 18.998  # u


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(err: str, *words: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "error" in lines[0] and "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


# ------------------------------------------------------------------------------------------------------------
# build
# ------------------------------------------------------------------------------------------------------------
def test_build_crystal_density_from_lattice_constant(tmp_path, capsys):
    rc, out, _ = run(capsys, "build", "crystal", tmp_path / "lif.cif", "--phase", "LiF")
    assert rc == 0
    atoms = read(tmp_path / "lif.cif")
    a = atoms.cell.lengths()[0]
    assert len(atoms) == 8 and 3.95 < a < 4.03  # rock salt, cryogenic a ≈ 4.01 Å (room 4.027 Å)
    rho = 4 * (M_LI + M_F) * U_G / a**3  # Z = 4 formula units per cell
    assert f"density {rho:.3f} g/cm³" in out
    assert "Å" in out and "atoms" in out


def test_build_nanocrystal_and_amorphous(tmp_path, capsys):
    rc, out, _ = run(capsys, "build", "nanocrystal", tmp_path / "n.xyz", "--diameter-nm", "1.2", "--f-vacancy", "0.2")
    assert rc == 0
    atoms = read(tmp_path / "n.xyz")
    pos = atoms.positions - atoms.positions.mean(0)
    assert np.max(np.linalg.norm(pos, axis=1)) <= 6.0 + 2.1  # a 12 Å sphere (+ one bond of surface tolerance)
    rc, out, _ = run(capsys, "build", "type1", tmp_path / "t1.traj", "--n-atoms", "120", "--no-relax",
                     "--density", "2.0")  # fmt: skip
    assert rc == 0
    t1 = read(tmp_path / "t1.traj")
    rho = t1.get_masses().sum() * U_G / t1.get_volume()
    assert rho == pytest.approx(2.0, rel=0.02)
    assert "density 2.0" in out
    rc, out, _ = run(capsys, "build", "electrolyte", tmp_path / "el.xyz", "--n-atoms", "300", "--source", "packing")
    assert rc == 0
    el = read(tmp_path / "el.xyz")
    assert 250 < len(el) < 400 and set(el.get_chemical_symbols()) >= {"Li", "F", "S", "O", "N", "C", "H"}


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["build", "crystal", "x.pdb"], 1, [".pdb", ".xyz"]),
        (["build", "glass", "x.xyz"], 2, ["glass", "crystal"]),
        (["build", "type1", "x.xyz", "--density", "-1"], 2, ["--density", "positive", "g/cm³"]),
        (["build", "nanocrystal", "x.xyz", "--f-vacancy", "1.5"], 2, ["1.5", "[0, 1]"]),
        (["build", "nanocrystal", "x.xyz", "--orientation", "a,b"], 1, ["h,k,l"]),
        (["build", "crystal", "x.xyz", "--phase", "Unobtainium"], 1, ["Unobtainium"]),
        (["build", "electrolyte", "x.xyz", "--molality-lifsi", "-1"], 1, ["molality_lifsi=-1.0", "mol/kg"]),
        (["simulate", "missing.xyz", "--profile-csv", "p.csv"], 1, ["not found", "missing.xyz"]),
        (["simulate", "x.xyz", "--semiangle", "0"], 2, ["--semiangle", "mrad"]),
        (["synth", "s.h5", "--scene", "middle"], 2, ["middle", "bottom"]),
        (["synth", "s.h5", "--dose", "-3"], 2, ["--dose", "positive", "e/Å²"]),
        (["synth", "s.h5", "--electrons", "0"], 2, ["--electrons", "positive"]),
        (["synth", "s.h5", "--step-nm", "-4"], 2, ["--step-nm", "nm"]),
        (["analyze", "missing.h5"], 1, ["not found"]),
        (["fit", "missing.csv", "--candidate", "a=b.csv"], 1, ["not found"]),
        (["refine", "missing.csv"], 1, ["not found"]),
        (["frobnicate"], 2, ["frobnicate"]),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, monkeypatch, capsys, argv, code, words):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, *argv)
    assert rc == code
    one_line_error(err, *words)


def test_existing_output_needs_overwrite_and_debug_raises(tmp_path, capsys):
    out = tmp_path / "li.xyz"
    assert run(capsys, "build", "crystal", out, "--phase", "Li")[0] == 0
    rc, _, err = run(capsys, "build", "crystal", out, "--phase", "Li")
    assert rc == 1
    one_line_error(err, "--overwrite")
    with pytest.raises(Exception, match="overwrite"):
        main(["--debug", "build", "crystal", str(out), "--phase", "Li"])


def test_every_option_help_names_its_unit():
    from fitting.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    unitless = {"help", "overwrite", "quiet", "no_relax", "no_figures", "reduced", "debug"}
    for name, p in sub.choices.items():
        for act in p._actions:
            if act.dest in unitless or act.help is None or not act.option_strings:
                continue
            text = act.help
            assert "[" in text or "file" in text or "dir" in text or "here" in text or "class" in text, (name, act.dest)


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("sei-send")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "fitting.cli"]
    r = subprocess.run([*cmd, "build", "crystal", str(tmp_path / "c.xyz"), "--phase", "Cu"], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cmd, "analyze", str(tmp_path / "none.h5")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    one_line_error(r.stderr, "not found")


# ------------------------------------------------------------------------------------------------------------
# simulate (kinematic path in CI; multislice is slow)
# ------------------------------------------------------------------------------------------------------------
def test_simulate_kinematic_profile_has_lif_200_peak(tmp_path, capsys):
    # 8 cells (33 Å): a 4-cell crystal's 200 hump merges with 111 and peaks 0.012 Å⁻¹ low
    assert run(capsys, "build", "crystal", tmp_path / "lif.xyz", "--phase", "LiF", "--repeat", "8")[0] == 0
    a = read(tmp_path / "lif.xyz").cell.lengths()[0] / 8
    rc, out, _ = run(capsys, "simulate", tmp_path / "lif.xyz", "--method", "kinematic", "--profile-csv",
                     tmp_path / "p.csv", "--semiangle", "0.5")  # fmt: skip
    assert rc == 0 and "Å⁻¹" in out
    with open(tmp_path / "p.csv") as fh:
        rows = list(csv.DictReader(fh))
    q = np.array([float(r["Q=1/d [1/Å]"]) for r in rows])
    i = np.array([float(r["intensity"]) for r in rows])
    win = (q > 0.46) & (q < 0.54)
    q200 = 2.0 / a  # LiF (200), Q = 1/d
    assert abs(q[win][np.argmax(i[win] * q[win])] - q200) < DEFAULT_PIXEL_SIZE  # within one bin (one pixel)
    rc, _, err = run(capsys, "simulate", tmp_path / "lif.xyz", tmp_path / "x.h5", "--method", "kinematic")
    assert rc == 1
    one_line_error(err, "--profile-csv")


@pytest.mark.slow
def test_simulate_multislice_writes_patterns(tmp_path, capsys):
    from simkit.nbed import load_patterns

    assert run(capsys, "build", "nanocrystal", tmp_path / "n.xyz", "--diameter-nm", "1.5")[0] == 0
    # a 24 Å cell needs a wide probe (the cell must hold 3 λ/α: 5 mrad → 12 Å; 2 mrad would need 30 Å)
    rc, out, _ = run(capsys, "simulate", tmp_path / "n.xyz", tmp_path / "n.h5", "--profile-csv", tmp_path / "n.csv",
                     "--semiangle", "5")  # fmt: skip
    assert rc == 0 and "Å⁻¹/px" in out
    pats, _ = load_patterns(tmp_path / "n.h5")
    assert pats.array.sum() == pytest.approx(1.0, abs=0.05)  # incident intensity conserved (normalised to 1)


# ------------------------------------------------------------------------------------------------------------
# synth → analyze → fit → refine on one tiny scan
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("scan")
    path = d / "s.h5"
    rc = main(["synth", str(path), "--size", "3", "40", "--step-nm", "4", "--dose", "62.5", "--preset", "tiny",
               "--cache-dir", str(CACHE), "--quiet", "--seed", "3"])  # fmt: skip
    assert rc == 0
    return path


def test_synth_writes_emd_with_dose_and_truth(tiny_scan):
    import h5py

    with h5py.File(tiny_scan, "r") as f:
        assert f.attrs["emd_group_type"] == "file" and int(f.attrs["version_major"]) == 1
        assert f["root/datacube/data"].compression == "lzf"  # the default codec opens in every HDF5 reader
    from simkit.emd import read_truth

    truth = read_truth(tiny_scan)
    settings = truth["settings"]
    assert truth["region"].shape == (3, 40)
    # --dose is the scan fluence: electrons per pattern = 62.5 e/Å² × (40 Å)²
    assert settings["electrons_per_pattern"] == pytest.approx(62.5 * 40.0**2)
    assert settings["scan_fluence"] == pytest.approx(62.5)


def test_synth_refuses_to_overwrite(tiny_scan, capsys):
    rc, _, err = run(capsys, "synth", tiny_scan, "--size", "2", "2")
    assert rc == 1
    one_line_error(err, "--overwrite")


@pytest.fixture(scope="module")
def analysis(tiny_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("ana")
    assert main(["analyze", str(tiny_scan), "-o", str(out), "--no-figures"]) == 0
    return out


def test_analyze_writes_summary_and_csv(analysis):
    s = json.loads((analysis / "summary.json").read_text())
    assert s["scan_shape"] == [3, 40]
    assert s["step_A"] == pytest.approx(40.0)
    assert s["pixel_size_A^-1_per_px"] == pytest.approx(DEFAULT_PIXEL_SIZE, rel=1e-6)  # the library detector's
    assert sum(s["class_counts"].values()) == 120
    cal = s["scan_calibration"]  # what the reader took from the file, and from where
    assert cal["energy"]["value"] == pytest.approx(300e3) and cal["energy"]["units"] == "eV" and cal["energy"]["source"]
    with open(analysis / "pixels.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 120
    with open(analysis / "profiles.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"class", "Q=1/d [1/Å]", "counts", "exposure_px"} <= set(rows[0])
    assert min(float(r["Q=1/d [1/Å]"]) for r in rows) >= 0.15  # direct beam excluded


def test_exported_sro_peaks_are_amorphous_only_and_consistent(analysis, capsys):
    """pixels.csv, summary.json and the printed line describe the same pixels; Li/Cu pixels have no SRO peak."""
    s = json.loads((analysis / "summary.json").read_text())
    with open(analysis / "pixels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert "SRO peak Q=1/d [1/Å]" in rows[0] and not any("q_A" in k for k in rows[0])
    amorphous = ("sei_type1", "sei_type2", "electrolyte")
    others = [r for r in rows if r["class"] not in amorphous]
    assert others, "the tiny bottom scan has Li and Cu pixels"
    for r in others:  # no SRO peak where there is no short-range order
        assert np.isnan(float(r["SRO peak Q=1/d [1/Å]"])) and r["SRO fit ok"] == "False"
    fitted = [float(r["SRO peak Q=1/d [1/Å]"]) for r in rows if r["class"] in amorphous and r["SRO fit ok"] == "True"]
    assert s["sro_peak_fitted_pixels"] == len(fitted) > 0
    assert s["sro_peak_amorphous_pixels"] == sum(r["class"] in amorphous for r in rows)
    assert s["sro_peak_mean_A^-1"] == pytest.approx(np.mean(fitted), abs=1e-5)  # CSV rounds to 1e-5
    for c, pc in s["classes"].items():
        vals = [float(r["SRO peak Q=1/d [1/Å]"]) for r in rows if r["class"] == c and r["SRO fit ok"] == "True"]
        assert pc["sro_peak_fitted_pixels"] == len(vals) and pc["pixels"] == s["class_counts"][c]
        assert pc["sro_peak_mean_A^-1"] == pytest.approx(np.mean(vals), abs=1e-5)


def test_analyze_prints_count_and_mean_of_the_same_pixels_and_files_honour_umask(tiny_scan, tmp_path, capsys):
    import os

    old = os.umask(0o027)
    try:
        rc, out, _ = run(capsys, "analyze", tiny_scan, "-o", tmp_path / "a", "--no-figures")
    finally:
        os.umask(old)
    assert rc == 0
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    line = next(ln for ln in out.splitlines() if "SRO peak" in ln)
    assert f"over {s['sro_peak_fitted_pixels']} fitted pixels" in line and f"{s['sro_peak_mean_A^-1']:.3f} Å⁻¹" in line
    for name in ("summary.json", "pixels.csv", "profiles.csv"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o640, name  # 0666 & ~0027, not mkstemp's 0600


def test_fit_rejects_the_ambiguous_pyfai_column(tmp_path, capsys):
    p = tmp_path / "pyfai.csv"
    p.write_text("q_A^-1,counts\n2.0,5\n2.1,6\n")
    rc, _, err = run(capsys, "fit", p, "--candidate", f"x={p}")
    assert rc == 1
    one_line_error(err, "2π/d")


def test_fit_and_refine_on_analysis(analysis, tmp_path, capsys):
    with open(analysis / "profiles.csv") as fh:
        cls = max({r["class"] for r in csv.DictReader(fh)}, key=lambda c: c.startswith("sei"))
    assert run(capsys, "build", "type1", tmp_path / "t1.xyz", "--n-atoms", "150", "--no-relax")[0] == 0
    assert run(capsys, "build", "crystal", tmp_path / "lif.xyz", "--phase", "LiF", "--repeat", "3")[0] == 0
    for name in ("t1", "lif"):
        rc, _, _ = run(capsys, "simulate", tmp_path / f"{name}.xyz", "--method", "kinematic", "--profile-csv",
                       tmp_path / f"{name}.csv")  # fmt: skip
        assert rc == 0
    table = tmp_path / "rank.csv"
    rc, out, _ = run(capsys, "fit", analysis / "profiles.csv", "--class", cls, "--candidate",
                     f"t1={tmp_path / 't1.csv'}", "--candidate", f"t1+lif={tmp_path / 't1.csv'}+{tmp_path / 'lif.csv'}",
                     "-o", table, "--curves", tmp_path / "curves.csv")  # fmt: skip
    assert rc == 0 and "ΔAIC" in out
    with open(tmp_path / "curves.csv") as fh:
        curves = list(csv.DictReader(fh))
    assert "Q=1/d [1/Å]" in curves[0] and not any("q_A" in k for k in curves[0])  # not pyFAI's 2π/d name
    with open(analysis / "profiles.csv") as fh:
        q_prof = {r["Q=1/d [1/Å]"] for r in csv.DictReader(fh) if r["class"] == cls}
    assert {r["Q=1/d [1/Å]"] for r in curves} <= q_prof  # the bins of profiles.csv (1/d), not rescaled
    with open(table) as fh:
        ranked = list(csv.DictReader(fh))
    assert {r["candidate"] for r in ranked} == {"t1", "t1+lif"}
    assert float(ranked[0]["delta_AIC"]) == 0.0
    rc, out, _ = run(capsys, "refine", analysis / "profiles.csv", "--class", cls, "--n-atoms", "120",
                     "--max-evaluations", "3", "--quiet")  # fmt: skip
    assert rc == 0 and "g/cm³" in out
    rc, _, err = run(capsys, "fit", analysis / "profiles.csv", "--candidate", f"t1={tmp_path / 't1.csv'}")
    assert rc == 1
    one_line_error(err, "--class")


def test_synth_dose_default_is_the_library_default():
    """`sei-send synth` without --electrons/--dose synthesises at simkit.synth's default dose (the CLI once
    defaulted to 10⁴ e, ten times below the library's, where the Type 2 LiF spots drown in noise)."""
    from fitting.cli import build_parser
    from simkit.synth import DEFAULT_ELECTRONS_PER_PATTERN

    args = build_parser().parse_args(["synth", "s.h5"])
    assert args.electrons == DEFAULT_ELECTRONS_PER_PATTERN and args.dose is None


def test_analyze_reports_the_simulated_descan(analysis, capsys):
    """The tiny scan carries simkit.synth's default descan plane and 2 % ellipse; the analysis measures the
    descan from the direct beam (issue: recovered to < 0.1 px) and reports it with the ellipse it corrected."""
    from simkit.synth import DEFAULT_INSTRUMENT

    s = json.loads((analysis / "summary.json").read_text())
    assert s["instrument_given"] == {"descan": False, "ellipse": False}
    d, t = s["instrument"]["descan"], DEFAULT_INSTRUMENT.descan
    assert d["center_px"] == [128.0, 128.0]  # offsets refer to the detector's middle pixel, as in the synthesis
    assert d["offset_y_px"] == pytest.approx(t.offset_y, abs=0.1)
    assert d["offset_x_px"] == pytest.approx(t.offset_x, abs=0.1)
    assert d["slope_x_px"] == pytest.approx(t.slope_x, abs=0.1)


def test_analyze_applies_a_known_instrument(tiny_scan, tmp_path, capsys):
    from simkit.synth import DEFAULT_INSTRUMENT

    inst = tmp_path / "instrument.json"
    inst.write_text(json.dumps({"descan": DEFAULT_INSTRUMENT.to_dict()["descan"]}))
    out = tmp_path / "ana"
    rc, text, _ = run(capsys, "analyze", tiny_scan, "-o", out, "--no-figures", "--instrument", inst,
                      "--ellipse", "1.02", "0.5")  # fmt: skip
    assert rc == 0 and "descan (given)" in text and "ellipse (given): ratio 1.0200" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["instrument_given"] == {"descan": True, "ellipse": True}
    assert s["instrument"]["ellipse"] == {"ratio": 1.02, "angle_rad": 0.5}
    # the plane fitted through the centres used is the given one
    got, want = s["instrument"]["descan"], DEFAULT_INSTRUMENT.descan
    assert [got["slope_y_px"], got["offset_x_px"]] == pytest.approx([want.slope_y, want.offset_x], abs=1e-9)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ellipse": {"ratio": 1.02, "angle": 0.5}}))
    rc, _, err = run(capsys, "analyze", tiny_scan, "-o", out, "--instrument", bad)
    assert rc == 1
    one_line_error(err, "angle_rad")


def test_analyze_reads_merlin_mib_with_scan_shape_and_flyback(tiny_scan, analysis, tmp_path, capsys):
    """The same counts as a Merlin .mib with 2 flyback frames per row give the same analysis as the EMD file."""
    import h5py

    from tests.test_io import _write_mib

    with h5py.File(tiny_scan, "r") as f:
        data = f["root/datacube/data"][()]
    sy, sx, ny, nx = data.shape
    fly = np.zeros((sy, 2, ny, nx), data.dtype)
    frames = np.concatenate([fly, data], axis=1).reshape(-1, ny, nx)
    _write_mib(tmp_path / "s.mib", frames[:, ::-1])  # rosettasciio flips Merlin rows back (bottom-up readout)
    args = ["analyze", tmp_path / "s.mib", "-o", tmp_path / "m", "--no-figures", "--pixel-size",
            str(DEFAULT_PIXEL_SIZE), "--step-nm", "4", "--energy-kev", "300", "--semiangle", "2"]  # fmt: skip
    rc, _, err = run(capsys, *args)
    assert rc == 1
    one_line_error(err, "--scan-shape")
    rc, out, _ = run(capsys, *args, "--scan-shape", "3", "40", "--flyback", "2")
    assert rc == 0, out
    got = json.loads((tmp_path / "m" / "summary.json").read_text())
    want = json.loads((analysis / "summary.json").read_text())
    assert got["class_counts"] == want["class_counts"]
    assert got["sro_peak_fitted_pixels"] == want["sro_peak_fitted_pixels"]
    assert got["sro_peak_mean_A^-1"] == pytest.approx(want["sro_peak_mean_A^-1"], abs=1e-9)
