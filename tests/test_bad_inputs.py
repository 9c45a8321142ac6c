"""Bad input across the API and the command line: every case gets an error that names the argument (or the file
and field), and no output file appears. The table of cases is docs/bad_inputs.md (kept in step by a test).

Each case is ``(id, call, exception, words)``: ``call()`` must raise ``exception`` (or a subclass) whose message
contains every one of ``words`` (case-insensitive) — the argument's name and, where it helps, the valid range.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from fitting.cli import main
from fitting.io import load_scan

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"


def _plan(**kw):
    from simkit.radial import make_plan

    base = {"center": (16.0, 16.0), "pixel_size": 0.01, "n_bins": 10}
    base.update(kw)
    return make_plan((32, 32), **base)


def _integrate(data, **kw):
    return _plan(**kw).integrate(data)


def _scan_file(tmp: Path, data, name="s.h5") -> Path:
    from tests.synthetic_scan_helpers import write_emd

    path = tmp / name
    write_emd(path, data, step=40.0, pixel_size=0.01, energy=300e3, semiangle=2.0)
    return path


def _calibrate_array(data):
    from fitting.calibrate import calibrate
    from fitting.io import Scan

    return calibrate(Scan(data=data, pixel_size=0.01, step=40.0, energy=300e3, semiangle=2.0))


def _good4d(shape=(2, 2, 32, 32), value=5):
    return np.full(shape, value, dtype=np.uint16)


def _nanocrystal(**kw):
    from structures.crystals import nanocrystal

    return nanocrystal("LiF", 20.0, **kw)


def _type1(**kw):
    from structures.amorphous import type1_sei

    base = {"n_atoms": 100}
    base.update(kw)
    return type1_sei(**base)


def _probe(**kw):
    from simkit.nbed import Probe

    return Probe(**kw)


def _synth(tmp: Path, **kw):
    from simkit.synth import default_scan, synthesize_scan

    scene, _ = default_scan("bottom", field_shape=(2, 2))
    return synthesize_scan(scene, tmp / "out.h5", library="tiny", progress=False, **kw)


def _cli(*argv):
    """The CLI's exit code must be 1 (error) or 2 (usage); returns nothing, raises SystemExit-like ValueError."""
    code = main([str(a) for a in argv])
    if code in (1, 2):
        raise ValueError(f"exit {code}")
    raise AssertionError(f"sei-send {' '.join(map(str, argv))} exited {code}")


def cases(tmp: Path):
    """The battery: (id, callable, exception, words that the message must contain)."""
    tmp.mkdir(parents=True, exist_ok=True)
    text = tmp / "text.h5"
    text.write_text("this is not HDF5\n")
    trunc = _scan_file(tmp, _good4d(), "trunc.h5")
    raw = trunc.read_bytes()
    (tmp / "truncated.h5").write_bytes(raw[: len(raw) // 2])
    nocube = tmp / "nocube.h5"
    with h5py.File(nocube, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    baddims = _scan_file(tmp, _good4d(), "baddims.h5")
    with h5py.File(baddims, "r+") as f:  # the beam energy is text instead of a number
        name = next(n for n, obj in _walk(f) if n.endswith("calibration/energy") and isinstance(obj, h5py.Dataset))
        attrs = dict(f[name].attrs)
        del f[name]
        f[name] = "three hundred kV"
        f[name].attrs.update(attrs)
    (tmp / "scan.xyz").write_text("1\n")
    spaced = tmp / "dir with spaces é"
    spaced.mkdir(exist_ok=True)
    good = _scan_file(spaced, _good4d(), "scan ü.h5")
    readonly = Path("/proc/sei-send-unwritable")  # not creatable even by root
    existing = tmp / "exists.h5"
    existing.write_bytes(b"x")
    inf4d = _good4d().astype(np.float32)
    inf4d[0, 0, 3, 3] = np.inf
    neg4d = _good4d().astype(np.int32)
    neg4d[0, 1, 2, 2] = -4
    return [
        # ---- scans and radial integration ---------------------------------------------------------------
        ("scan ndim 3", lambda: _calibrate_array(np.zeros((2, 32, 32), np.uint16)), ValueError, ["data", "4"]),
        ("scan ndim 1", lambda: _integrate(np.zeros(32)), ValueError, ["data", "shape"]),
        ("detector shape mismatch", lambda: _integrate(np.zeros((2, 2, 30, 32))), ValueError, ["shape", "32"]),
        (
            "zero-size scan axis",
            lambda: _calibrate_array(np.zeros((0, 2, 32, 32), np.uint16)),
            ValueError,
            ["zero-size"],
        ),
        ("infinite counts", lambda: _calibrate_array(inf4d), ValueError, ["inf"]),
        ("negative counts", lambda: _calibrate_array(neg4d), ValueError, ["negative"]),
        ("int8 scan", lambda: _calibrate_array(_good4d().astype(np.int8)), ValueError, ["int8"]),
        ("all-zero scan", lambda: _calibrate_array(np.zeros((2, 2, 32, 32), np.uint16)), ValueError, ["zero"]),
        ("mask wrong shape", lambda: _plan(mask=np.ones((31, 32), bool)), ValueError, ["mask", "shape"]),
        (
            "mask wrong dtype",
            lambda: _plan(mask=np.ones((32, 32), np.float64) * 0.5),
            (TypeError, ValueError),
            ["mask", "bool"],
        ),
        ("mask all False", lambda: _plan(mask=np.zeros((32, 32), bool)), ValueError, ["mask"]),
        ("centre off the detector", lambda: _plan(center=(500.0, 16.0)), ValueError, ["center"]),
        ("centre NaN", lambda: _plan(center=(np.nan, 16.0)), ValueError, ["center"]),
        ("pixel size zero", lambda: _plan(pixel_size=0.0), ValueError, ["pixel_size"]),
        ("pixel size negative", lambda: _plan(pixel_size=-0.01), ValueError, ["pixel_size"]),
        (
            "Q bins beyond the detector corner",
            lambda: _plan(n_bins=None, edges=np.linspace(1.0, 5.0, 11)),
            ValueError,
            ["edges", "corner"],
        ),
        ("edges not increasing", lambda: _plan(n_bins=None, edges=np.array([0.0, 0.2, 0.1])), ValueError, ["edges"]),
        ("n_bins zero", lambda: _plan(n_bins=0), ValueError, ["n_bins"]),
        ("ellipse ratio zero", lambda: _plan(ellipse_ratio=0.0), ValueError, ["ellipse_ratio"]),
        # ---- files ------------------------------------------------------------------------------------------
        ("missing file", lambda: load_scan(tmp / "nope.h5"), FileNotFoundError, ["nope.h5"]),
        ("text file named .h5", lambda: load_scan(text), ValueError, ["text.h5", "hdf5"]),
        ("truncated HDF5", lambda: load_scan(tmp / "truncated.h5"), ValueError, ["truncated.h5"]),
        ("HDF5 without a datacube", lambda: load_scan(nocube), ValueError, ["nocube.h5", "4-d"]),
        ("malformed calibration field", lambda: load_scan(baddims), ValueError, ["baddims.h5", "energy"]),
        ("unknown extension", lambda: load_scan(tmp / "scan.xyz"), ValueError, ["xyz"]),
        ("dataset that is not 4D", lambda: load_scan(nocube, dataset="x"), ValueError, ["x", "4"]),
        ("pixel size override negative", lambda: load_scan(good, pixel_size=-1.0), ValueError, ["pixel_size"]),
        # ---- outputs --------------------------------------------------------------------------------------
        (
            "read-only output folder",
            lambda: _cli("synth", readonly / "s.h5", "--size", "2", "2", "--quiet"),
            ValueError,
            ["exit 1"],
        ),
        (
            "existing output path",
            lambda: _cli("synth", existing, "--size", "2", "2", "--quiet"),
            ValueError,
            ["exit 1"],
        ),
        # ---- dose, probe, beam ------------------------------------------------------------------------------
        ("negative dose", lambda: _synth(tmp, electrons_per_pattern=-1.0), ValueError, ["electrons_per_pattern"]),
        ("zero dose", lambda: _synth(tmp, electrons_per_pattern=0.0), ValueError, ["electrons_per_pattern"]),
        ("overflowing dose", lambda: _synth(tmp, electrons_per_pattern=1e30), ValueError, ["electrons_per_pattern"]),
        (
            "beam current negative",
            lambda: __import__("simkit.dose").dose.electrons_per_pattern(-1.0, 1e-3),
            ValueError,
            ["current"],
        ),
        ("dwell zero", lambda: __import__("simkit.dose").dose.electrons_per_pattern(10.0, 0.0), ValueError, ["dwell"]),
        ("semiangle zero", lambda: _probe(semiangle=0.0), ValueError, ["semiangle"]),
        ("semiangle absurd", lambda: _probe(semiangle=5000.0), ValueError, ["semiangle"]),
        ("energy zero", lambda: _probe(energy=0.0), ValueError, ["energy"]),
        ("energy NaN", lambda: _probe(energy=float("nan")), ValueError, ["energy"]),
        # ---- structures -------------------------------------------------------------------------------------
        (
            "unknown element",
            lambda: __import__("simkit.kinematic").kinematic.scattering_factor("Xx", np.array([0.3])),
            (ValueError, KeyError),
            ["xx"],
        ),
        (
            "unknown phase",
            lambda: __import__("structures.crystals").crystals.bulk("unobtainium"),
            (ValueError, KeyError),
            ["unobtainium"],
        ),
        ("vacancy fraction above 1", lambda: _nanocrystal(f_vacancy=1.5), ValueError, ["f_vacancy"]),
        ("vacancy fraction negative", lambda: _nanocrystal(f_vacancy=-0.1), ValueError, ["f_vacancy"]),
        (
            "diameter negative",
            lambda: __import__("structures.crystals").crystals.nanocrystal("LiF", -3.0),
            ValueError,
            ["diameter"],
        ),
        ("density zero", lambda: _type1(density=0.0), ValueError, ["density"]),
        ("density negative", lambda: _type1(density=-2.0), ValueError, ["density"]),
        ("n_atoms zero", lambda: _type1(n_atoms=0), ValueError, ["n_atoms"]),
        ("unknown scene", lambda: __import__("simkit.synth").synth.default_scan("middle"), ValueError, ["middle"]),
        # ---- command line -----------------------------------------------------------------------------------
        ("CLI no arguments to analyze", lambda: _cli("analyze"), ValueError, ["exit 2"]),
        ("CLI mistyped option", lambda: _cli("synth", tmp / "a.h5", "--sise", "2", "2"), ValueError, ["exit 2"]),
        ("CLI negative step", lambda: _cli("synth", tmp / "b.h5", "--step-nm", "-4"), ValueError, ["exit 2"]),
        ("CLI non-number size", lambda: _cli("synth", tmp / "c.h5", "--size", "a", "2"), ValueError, ["exit 2"]),
        ("CLI fit without candidate", lambda: _cli("fit", tmp / "p.csv"), ValueError, ["exit 2"]),
        (
            "CLI fit of a missing profiles file",
            lambda: _cli("fit", tmp / "p.csv", "--candidate", "a=b.csv"),
            ValueError,
            ["exit 1"],
        ),
        ("CLI refine of a missing file", lambda: _cli("refine", tmp / "p.csv"), ValueError, ["exit"]),
        (
            "CLI analyze of a missing file",
            lambda: _cli("analyze", tmp / "none.h5", "-o", tmp / "o"),
            ValueError,
            ["exit 1"],
        ),
        ("CLI simulate negative semiangle", lambda: _cli("simulate", "--semiangle", "-2"), ValueError, ["exit 2"]),
    ]


def _walk(group, prefix=""):
    for k, v in group.items():
        yield prefix + "/" + k, v
        if isinstance(v, h5py.Group):
            yield from _walk(v, prefix + "/" + k)


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    return tmp, cases(tmp)


def _ids():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return [c[0] for c in cases(Path(d))]


CASE_IDS = _ids()


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_gets_a_named_error(battery, case_id, capsys):
    tmp, all_cases = battery
    before = {p for p in tmp.rglob("*")}
    _, call, exc, words = next(c for c in all_cases if c[0] == case_id)
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    if msg.startswith("exit "):  # the CLI printed its one-line error
        err = capsys.readouterr().err
        assert err.strip(), "the command exited without saying why"
        assert "Traceback" not in err
    for word in words:
        assert word.lower() in msg.lower(), f"message {msg!r} does not name {word!r}"
    after = {p for p in tmp.rglob("*")}
    assert after <= before, f"files appeared: {sorted(map(str, after - before))}"


def test_battery_has_at_least_forty_cases():
    assert len(CASE_IDS) >= 40 and len(set(CASE_IDS)) == len(CASE_IDS)


def test_docs_table_lists_every_case():
    text = DOCS.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| (.+?) \|", text, flags=re.M))
    missing = [c for c in CASE_IDS if c not in rows]
    assert not missing, f"docs/bad_inputs.md lacks rows for {missing}"


def write_table(path: Path = DOCS) -> None:
    """Regenerate docs/bad_inputs.md from the battery: ``python -m tests.test_bad_inputs``."""
    import contextlib
    import io
    import tempfile

    from simkit.atomic import atomic_write_text

    rows = ["# Bad input: what each case gets", "",
            "Generated by `python -m tests.test_bad_inputs` from the battery in tests/test_bad_inputs.py (every case",
            "is a test: the error must name the argument or file and field, and no output file may appear).", "",
            "| case | error | message |", "|---|---|---|"]  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        for case_id, call, _, _ in cases(Path(d)):
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    call()
                kind, msg = "none", "(no error)"
            except Exception as exc:
                kind, msg = type(exc).__name__, str(exc)
                if msg.startswith("exit "):
                    msg = f"{msg}: {err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ''}"
            msg = msg.replace("|", "\\|").replace("\n", " ")
            rows.append(f"| {case_id} | {kind} | {msg[:300]} |")
    atomic_write_text(path, "\n".join(rows) + "\n")


if __name__ == "__main__":
    write_table()
