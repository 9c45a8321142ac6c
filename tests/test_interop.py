"""Our 4D-STEM files in the independent readers: emdfile (with and without py4DSTEM's classes), HyperSpy by suffix."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from fitting.io import load_scan
from tests.data.make_py4dstem_fixture import Q_PIXEL
from tests.test_io import DATA, _our_file

PS, STEP, CENTER = 0.0125, 40.0, (7.5, 9.0)  # [Å⁻¹/px], [Å], [px] of _our_file


@pytest.fixture
def small(rng):
    return rng.poisson(3.0, (4, 5, 16, 18)).astype(np.uint16)


def _run(code: str, *args) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported that the test session imported), warnings as errors."""
    r = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def _with_truth(path, small):
    from simkit.emd import write_truth

    p = _our_file(path, small)
    with h5py.File(p, "a") as f:
        write_truth(f, {"sro_peak": np.full(small.shape[:2], 0.31), "seed": 7})
    return p


def test_emdfile_alone_reads_each_part_and_after_import_simkit_emd_the_whole_file(tmp_path, small):
    p = _with_truth(tmp_path / "ours.emd", small)
    np.save(tmp_path / "small.npy", small)
    bare = """
        import sys, h5py, emdfile, numpy as np
        p, ref = sys.argv[1], np.load(sys.argv[2])
        try:
            emdfile.read(p)
        except Exception as e:  # emdfile's own behaviour for py4DSTEM's class names
            print("read:", e)
        with h5py.File(p) as f:
            a = emdfile.Array.from_h5(f["root/datacube"])
            c = emdfile.Metadata.from_h5(f["root/metadatabundle/calibration"])
        assert np.array_equal(a.data, ref)
        print(a.dims[2][1] - a.dims[2][0], a.dims[2][0], a.dims[0][1], c["Q_pixel_size"], c["beam_energy_eV"])
        print(sorted(a.metadata))
    """
    out = _run(bare, p, tmp_path / "small.npy").splitlines()
    assert out[0] == "read: Unknown classname Calibration"  # what the module docstring says plain emdfile does
    dq, q0, dr, qpix, e0 = map(float, out[1].split())
    assert dq == pytest.approx(PS) and q0 == pytest.approx(-CENTER[0] * PS)  # Q = 0 on the direct beam
    assert dr == STEP and qpix == PS and e0 == 300e3
    assert out[2] == "['acquisition', 'truth']"
    hooked = """
        import sys, emdfile, numpy as np
        import simkit.emd
        d = emdfile.read(sys.argv[1])
        assert type(d) is simkit.emd.DataCube and np.array_equal(d.data, np.load(sys.argv[2]))
        c = d.calibration
        print(type(c).__name__, c["Q_pixel_size"], c["Q_pixel_units"], c["R_pixel_size"], c["qx0_mean"],
              c["convergence_semiangle_mrad"], d.dims[3][1] - d.dims[3][0], d.dims[3][0])
        print(d.metadata["truth"]["seed"], np.all(d.metadata["truth"]["sro_peak"] == 0.31))
        ref = emdfile.read(sys.argv[3])  # the py4DSTEM-layout fixture opens the same way
        print(type(ref).__name__, ref.calibration["Q_pixel_size"], ref.calibration["R_pixel_units"])
    """
    out = _run(hooked, p, tmp_path / "small.npy", DATA / "py4dstem_datacube.h5").split()
    assert out[:3] == ["Calibration", str(PS), "A^-1"]
    assert float(out[3]) == STEP and float(out[4]) == CENTER[0] and float(out[5]) == 2.0
    assert float(out[6]) == pytest.approx(PS) and float(out[7]) == pytest.approx(-CENTER[1] * PS)
    assert out[8:10] == ["7", "True"]
    assert out[10:] == ["DataCube", str(Q_PIXEL), "nm"]


@pytest.mark.parametrize("first", ["simkit.emd", "tests.py4dstem_stub"])
def test_py4dstem_classes_win_over_the_stand_ins_in_either_import_order(tmp_path, small, first):
    p = _our_file(tmp_path / "ours.emd", small)
    code = f"""
        import sys, importlib
        importlib.import_module({first!r})
        import simkit.emd, tests.py4dstem_stub as st
        d = st.read(sys.argv[1])
        print(type(d).__module__, type(d.calibration).__module__, d.calibration.get_Q_pixel_size())
    """
    assert _run(code, p).split() == ["tests.py4dstem_stub", "tests.py4dstem_stub", str(PS)]


def test_hyperspy_reader_follows_the_suffix(tmp_path, small):
    """``.hspy`` (hspy reader) and ``.emd`` (EMD NCEM reader, through the datacube's view): the 2 | 2 signal with
    every calibration; ``.h5``: several plug-ins claim it; ``file_format="hspy"`` opens every name."""
    import hyperspy.api as hs

    p = _our_file(tmp_path / "ours.hspy", small)
    for suffix in (".emd", ".h5"):
        (tmp_path / f"ours{suffix}").write_bytes(p.read_bytes())
    with pytest.raises(ValueError, match="multiple file readers"):
        hs.load(tmp_path / "ours.h5")
    for suffix, fmt in ((".hspy", None), (".emd", None), (".emd", "hspy"), (".h5", "hspy")):
        sig = hs.load(tmp_path / f"ours{suffix}", file_format=fmt)
        am = sig.axes_manager
        assert (am.navigation_shape, am.signal_shape) == ((5, 4), (18, 16))  # HyperSpy lists x before y
        assert [a.name for a in am._axes] == ["scan_y", "scan_x", "ky", "kx"]  # array order
        assert [a.scale for a in am.navigation_axes] == [STEP, STEP]
        assert [str(a.units) for a in am.navigation_axes] == ["Å", "Å"]
        assert [a.scale for a in am.signal_axes] == pytest.approx([PS, PS], rel=1e-12)  # .emd: dim[1] - dim[0]
        assert [str(a.units).replace(" ", "") for a in am.signal_axes] == ["1/Å"] * 2  # pint writes "1 / Å"
        ky, kx = am._axes[2], am._axes[3]
        assert (ky.offset, kx.offset) == pytest.approx((-CENTER[0] * PS, -CENTER[1] * PS))  # Q = 0 on the beam
        np.testing.assert_array_equal(np.asarray(sig.data), small)
        assert sig.metadata.General.title == "sei-send 4D-STEM scan"
        if sig.metadata.General.FileIO["0"].io_plugin == "rsciio.emd":
            # the EMD (NCEM) reader maps no instrument metadata: the values are in its original_metadata
            assert emd_md(sig) == (300.0, 2.0, 300e3, 2.0)
        else:
            assert sig.metadata.Acquisition_instrument.TEM.beam_energy == 300.0  # keV
            assert sig.metadata.Acquisition_instrument.TEM.convergence_angle == 2.0  # mrad
        s = load_scan(tmp_path / f"ours{suffix}")
        assert (s.step, s.pixel_size, s.energy) == (STEP, PS, 300e3)


def emd_md(sig):
    om = sig.original_metadata
    sp = om.simulation_parameters
    return (
        sp.beam_energy_keV,
        sp.convergence_angle_mrad,
        om.calibration.beam_energy_eV,
        om.calibration.convergence_semiangle_mrad,
    )


def test_hyperspy_opens_the_emd_file_as_one_signal_with_truth_and_blosc(tmp_path, small):
    """A synthetic scan's file (ground truth in its tree) named .emd is one signal for HyperSpy, whichever codec."""
    import hdf5plugin  # noqa: F401  (blosc-lz4 needs it in any reader)
    import hyperspy.api as hs

    for compression in ("lzf", "blosc-lz4"):
        p = _our_file(tmp_path / f"{compression}.emd", small, compression=compression)
        with h5py.File(p, "a") as f:
            from simkit.emd import write_truth

            with pytest.raises(ValueError, match=r"truth keys \['data_note'\].*hs\.load"):
                write_truth(f, {"sro_peak": np.zeros(small.shape[:2]), "data_note": "x"})  # would break hs.load
            write_truth(f, {"sro_peak": np.full(small.shape[:2], 0.31), "density": np.ones(small.shape[:2]), "seed": 7})
        sig = hs.load(p)
        assert not isinstance(sig, list) and sig.axes_manager.navigation_shape == (5, 4)
        np.testing.assert_array_equal(np.asarray(sig.data), small)
        with h5py.File(p) as f:  # the view is the same HDF5 object (hard link), not a copy
            from simkit.emd import NCEM_VIEW

            assert f[f"{NCEM_VIEW}/datacube"].id == f["root/datacube/data"].id


# ---------------------------------------------------------------------------------------------------------------
# real FEI TIA files (rosettasciio's test data, GPL v3: tests/data/real/README.md)
REAL = __import__("pathlib").Path(__file__).with_name("data") / "real"


def _tia_by_hand(stem: str):
    """Independent parse of a TIA pair: the .emi's XML (High tension [kV], Camera length [m]) and the first data
    element of the .ser (TIA series format: header, offset array, element = calibration X/Y (offset [1/m], delta
    [1/m], element), data type, size X, size Y, pixels)."""
    import re
    import struct

    xml = (REAL / f"{stem}.emi").read_bytes().decode("latin-1")

    def value(label):
        return float(re.search(rf"<Label>{label}</Label><Value>([^<]*)</Value>", xml).group(1))

    raw = (REAL / f"{stem}_1.ser").read_bytes()
    version = struct.unpack_from("<H", raw, 4)[0]
    n_valid = struct.unpack_from("<I", raw, 18)[0]
    wide = version >= 0x220  # 64-bit offsets
    off_arr = struct.unpack_from("<Q" if wide else "<I", raw, 22)[0]
    first = struct.unpack_from("<Q" if wide else "<I", raw, off_arr)[0]
    x0, dx, _, y0, dy, _ = struct.unpack_from("<ddiddi", raw, first)
    dtype_code, nx, ny = struct.unpack_from("<HII", raw, first + 40)
    dtype = {1: "<u1", 2: "<u2", 3: "<u4", 4: "<i1", 5: "<i2", 6: "<i4", 7: "<f4", 8: "<f8"}[dtype_code]
    frame = np.frombuffer(raw, dtype, nx * ny, first + 50).reshape(ny, nx)
    return {"kv": value("High tension"), "camera_m": value("Camera length"), "dq_per_m": dx, "q0_per_m": x0,
            "n": n_valid, "frame": frame}  # fmt: skip


@pytest.mark.parametrize(
    "stem, scan_shape",
    [("64x64_diffraction_acquire", None), ("128x128x5-diffraction_preview", (1, 5))],
)
def test_real_tia_diffraction_files_keep_every_calibration(stem, scan_shape):
    if not (REAL / f"{stem}_1.ser").exists():
        pytest.skip(f"{stem} not shipped (see tests/data/real/README.md)")
    ref = _tia_by_hand(stem)
    if scan_shape is not None:
        with pytest.raises(ValueError, match=r"stack of 5 frames.*scan_shape"):
            load_scan(REAL / f"{stem}.emi")
    s = load_scan(REAL / f"{stem}.emi", scan_shape=scan_shape)
    assert s.shape[:2] == (scan_shape or (1, 1)) and s.shape[0] * s.shape[1] == ref["n"]
    np.testing.assert_array_equal(np.asarray(s.data[0, 0]), ref["frame"][::-1])  # TIA stores rows bottom-up
    assert s.pixel_size == pytest.approx(ref["dq_per_m"] * 1e-10, rel=1e-12)  # 1/m → 1/Å, Q = 1/d
    assert s.energy == ref["kv"] * 1e3
    cal = s.metadata["calibration"]
    assert cal["camera_length"]["value"] == pytest.approx(ref["camera_m"] * 1e3)  # m → mm
    assert cal["center"]["value"] == pytest.approx((-ref["q0_per_m"] / ref["dq_per_m"],) * 2)  # Q = 0 [px]
    assert s.step is None and s.semiangle is None  # a TEM diffraction acquisition: no scan, no probe angle
    from simkit.units import wavelength

    pitch_um = cal["camera_length"]["value"] * 1e3 * wavelength(s.energy) * s.pixel_size  # L·λ·Δq [µm]
    assert 20 < pitch_um < 250  # a binned CCD/CMOS pixel: the calibrations are mutually consistent


def test_scan_axes_of_the_wrong_kind_are_errors_and_unknown_units_are_named(tmp_path, small):
    """A reciprocal length on a scan axis cannot be a step (error naming the field); units that are neither a length
    nor a placeholder leave the step uncalibrated and say so — in both the EMD and the HyperSpy readers."""
    p = _our_file(tmp_path / "recip.h5", small)
    with h5py.File(p, "a") as f:
        del f["root/datacube/metadatabundle/acquisition/step"]
        del f["root/metadatabundle/calibration/R_pixel_size"]
        f["root/datacube/dim0"].attrs["units"] = "A^-1"
    with pytest.raises(
        ValueError, match=r"recip\.h5: metadata field '/root/datacube/dim0\.units' has units 'a\^-1'.*step="
    ):
        load_scan(p)
    assert load_scan(p, step=25.0).step == 25.0  # the argument replaces the field
    import hyperspy.api as hs

    sig = hs.signals.Signal2D(small)
    for ax in sig.axes_manager.signal_axes:
        ax.scale, ax.units = 0.125, "1/nm"
    for units, expect in (("1/nm", "error"), ("s", "time series"), ("parsecs", "unknown")):
        for ax in sig.axes_manager.navigation_axes:
            ax.scale, ax.units = 2.0, units
        q = tmp_path / f"nav_{expect.replace(' ', '_')}.hspy"
        sig.save(q)
        if expect == "error":
            with pytest.raises(ValueError, match=rf"{q.name}: metadata field 'axes/.*\.units' has units '1/nm'"):
                load_scan(q)
            continue
        s = load_scan(q)
        assert s.step is None and s.pixel_size == pytest.approx(0.0125)
        assert repr(units) in s.metadata["uncalibrated_units"]


def test_convert_cli_writes_files_hyperspy_and_emdfile_open_calibrated(tmp_path, small, capsys):
    """`sei-send convert` of a bare .npy (calibrations from the options) → .emd and .zspy that HyperSpy opens
    as scan_y, scan_x | ky, kx [Å, 1/Å] without reader=; missing calibrations are errors naming the option."""
    import hyperspy.api as hs

    from fitting.cli import main

    np.save(tmp_path / "raw.npy", small)
    common = ["--pixel-size", "0.0125", "--step-nm", "4", "--energy-kev", "200", "--semiangle", "1.5"]
    for out in ("c.emd", "c.zspy"):
        assert main(["convert", str(tmp_path / "raw.npy"), str(tmp_path / out), *common]) == 0
        sig = hs.load(tmp_path / out)
        am = sig.axes_manager
        assert (am.navigation_shape, am.signal_shape) == ((5, 4), (18, 16))
        assert [a.scale for a in am._axes] == pytest.approx([40.0, 40.0, 0.0125, 0.0125], rel=1e-12)  # 4 nm = 40 Å
        # no centre in a .npy: the detector's middle pixel (16 // 2, 18 // 2) is Q = 0
        assert (am._axes[2].offset, am._axes[3].offset) == pytest.approx((-8 * 0.0125, -9 * 0.0125))
        np.testing.assert_array_equal(np.asarray(sig.data), small)
        s = load_scan(tmp_path / out)
        assert (s.step, s.pixel_size, s.energy, s.semiangle) == (40.0, 0.0125, 200e3, 1.5)
    assert "wrote" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "raw.npy"), str(tmp_path / "c.emd"), *common]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "raw.npy"), str(tmp_path / "d.emd")]) == 1
    assert "missing calibration 'step'" in capsys.readouterr().err and not (tmp_path / "d.emd").exists()
    assert main(["convert", str(tmp_path / "raw.npy"), str(tmp_path / "d.mrc"), *common]) == 1
    assert "'.mrc' unknown" in capsys.readouterr().err
