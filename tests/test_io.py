"""fitting.io: EMD 1.0 / HDF5, .npy and rosettasciio readers; calibration parsing; bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fitting.io import SUPPORTED_FORMATS, Scan, load_scan
from tests.synthetic_scan_helpers import write_emd


@pytest.fixture
def small(rng):
    return rng.poisson(3.0, (4, 5, 16, 18)).astype(np.uint16)


def test_emd_round_trip_lazy(tmp_path, small):
    p = tmp_path / "scan.h5"
    write_emd(p, small, step=40.0, pixel_size=0.0125, energy=300e3, semiangle=2.0)
    s = load_scan(p)
    assert isinstance(s, Scan)
    assert isinstance(s.data, h5py.Dataset)  # lazy: nothing read
    assert s.shape == small.shape and s.scan_shape == (4, 5) and s.detector_shape == (16, 18)
    np.testing.assert_array_equal(s.data[()], small)
    assert s.step == 40.0 and s.pixel_size == 0.0125
    assert s.energy == 300e3 and s.semiangle == 2.0
    assert s.metadata["emd_version"] == "1.0"
    eager = load_scan(p, lazy=False)
    assert isinstance(eager.data, np.ndarray)
    np.testing.assert_array_equal(eager.data, small)


def test_emdfile_reads_our_test_file(tmp_path, small):
    emdfile = pytest.importorskip("emdfile")
    p = tmp_path / "scan.h5"
    write_emd(p, small, step=40.0, pixel_size=0.0125)
    arr = emdfile.read(str(p), emdpath="root/datacube")
    np.testing.assert_array_equal(np.asarray(arr.data), small)
    assert arr.dim_units[2] == "A^-1"
    assert abs(arr.dims[2][1] - arr.dims[2][0] - 0.0125) < 1e-12


def test_reads_a_file_written_by_emdfile(tmp_path, small):
    emdfile = pytest.importorskip("emdfile")
    a = emdfile.Array(
        data=small,
        name="datacube",
        dims=[4.0, 4.0, 0.01, 0.01],
        dim_units=["nm", "nm", "A^-1", "A^-1"],
        dim_names=["Rx", "Ry", "Qx", "Qy"],
    )
    m = emdfile.Metadata(name="calibration")
    m["beam_energy"] = 300.0  # kV, as some writers store it
    m["convergence_semiangle_mrad"] = 2.0
    a.metadata = m
    root = emdfile.Root(name="root")
    root.tree(a)
    p = tmp_path / "emdfile.h5"
    emdfile.save(str(p), root, mode="o")
    s = load_scan(p)
    np.testing.assert_array_equal(s.data[()], small)
    assert s.step == pytest.approx(40.0)  # 4 nm
    assert s.pixel_size == pytest.approx(0.01)
    assert s.energy == pytest.approx(300e3)
    assert s.semiangle == pytest.approx(2.0)


def test_py4dstem_style_calibration_keys(tmp_path, small):
    p = tmp_path / "p4.h5"
    write_emd(p, small)  # dims in pixels -> no calibration from dims
    with h5py.File(p, "a") as f:
        g = f["root/datacube"].create_group("metadatabundle/calibration")
        g.attrs["emd_group_type"] = "metadata"
        g.create_dataset("Q_pixel_size", data=0.2)
        g.create_dataset("Q_pixel_units", data="nm^-1")
        g.create_dataset("R_pixel_size", data=4.0)
        g.create_dataset("R_pixel_units", data="nm")
    s = load_scan(p)
    assert s.pixel_size == pytest.approx(0.02)  # 0.2 nm⁻¹ = 0.02 Å⁻¹
    assert s.step == pytest.approx(40.0)


def test_arguments_override_file(tmp_path, small):
    p = tmp_path / "scan.h5"
    write_emd(p, small, step=40.0, pixel_size=0.0125)
    s = load_scan(p, step=20.0, pixel_size=0.01, energy=200e3, semiangle=0.15)
    assert (s.step, s.pixel_size, s.energy, s.semiangle) == (20.0, 0.01, 200e3, 0.15)


def test_npy_memmap_and_stack_with_flyback(tmp_path, small):
    p = tmp_path / "scan.npy"
    np.save(p, small)
    s = load_scan(p, pixel_size=0.01)
    assert isinstance(s.data, np.memmap)
    np.testing.assert_array_equal(np.asarray(s.data), small)
    # a 3-D stack of frames with one flyback frame at the start of every row
    sy, sx = small.shape[:2]
    rows = [np.concatenate([np.full((1, 16, 18), 999, np.uint16), small[i]]) for i in range(sy)]
    stack = np.concatenate(rows)
    p3 = tmp_path / "stack.npy"
    np.save(p3, stack)
    s3 = load_scan(p3, scan_shape=(sy, sx), flyback=1)
    np.testing.assert_array_equal(np.asarray(s3.data), small)
    # flyback at the end of the rows
    rows = [np.concatenate([small[i], np.full((2, 16, 18), 999, np.uint16)]) for i in range(sy)]
    np.save(p3, np.concatenate(rows))
    s4 = load_scan(p3, scan_shape=(sy, sx), flyback=2, flyback_position="end")
    np.testing.assert_array_equal(np.asarray(s4.data), small)


def test_4d_flyback_columns_dropped(tmp_path, small):
    p = tmp_path / "scan.npy"
    np.save(p, small)
    s = load_scan(p, flyback=1)
    np.testing.assert_array_equal(np.asarray(s.data), small[:, 1:])


# ---------------------------------------------------------------------------------------------------------------
# bad input
def test_unsupported_format_lists_supported(tmp_path):
    p = tmp_path / "scan.tif"
    p.write_bytes(b"II*\x00")
    with pytest.raises(ValueError, match="unsupported format") as e:
        load_scan(p)
    for suffix in SUPPORTED_FORMATS:
        assert suffix in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_scan(tmp_path / "nope.h5")


def test_truncated_hdf5(tmp_path, small):
    p = tmp_path / "scan.h5"
    write_emd(p, small, chunks=False)
    raw = p.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_scan(tmp_path / "cut.h5")


def test_corrupt_hdf5_and_npy(tmp_path, small):
    (tmp_path / "junk.h5").write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_scan(tmp_path / "junk.h5")
    np.save(tmp_path / "a.npy", small)
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_scan(tmp_path / "cut.npy")


def test_hdf5_without_4d_data(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["image"] = np.zeros((8, 8))
    with pytest.raises(ValueError, match="4-D"):
        load_scan(p)


def test_missing_calibration_names_the_parameter(tmp_path, small):
    np.save(tmp_path / "a.npy", small)
    s = load_scan(tmp_path / "a.npy")
    for name in ("pixel_size", "step", "energy", "semiangle"):
        with pytest.raises(ValueError, match=f"missing calibration '{name}'.*{name}="):
            s.require(name)


def test_mismatched_scan_shape(tmp_path, small):
    np.save(tmp_path / "a.npy", small)
    with pytest.raises(ValueError, match="scan_shape"):
        load_scan(tmp_path / "a.npy", scan_shape=(5, 5))
    np.save(tmp_path / "s.npy", small.reshape(20, 16, 18))
    with pytest.raises(ValueError, match="scan_shape"):
        load_scan(tmp_path / "s.npy", scan_shape=(3, 5))
    with pytest.raises(ValueError, match="scan_shape"):
        load_scan(tmp_path / "s.npy")


@pytest.mark.parametrize("kw", [{"pixel_size": -1.0}, {"step": 0.0}, {"energy": float("nan")}, {"flyback": -1}])
def test_bad_calibration_arguments(tmp_path, small, kw):
    np.save(tmp_path / "a.npy", small)
    with pytest.raises(ValueError, match=next(iter(kw))):
        load_scan(tmp_path / "a.npy", **kw)


def test_merlin_needs_scan_shape(tmp_path):
    p = tmp_path / "x.mib"
    p.write_bytes(b"MQ1,000001,00384,01,0016,0016,U16,   1x1,01" + b"\x00" * 600)
    with pytest.raises(ValueError, match="scan_shape"):
        load_scan(p)


def _write_mib(path, frames):
    """Minimal Quantum Detectors MIB file (single chip, U16 big-endian, 384-byte header per frame)."""
    ny, nx = frames.shape[1:]
    with open(path, "wb") as f:
        for k, fr in enumerate(frames):
            h = f"MQ1,{k + 1:06d},00384,01,{nx:04d},{ny:04d},U16,   1x1,01,2020-05-18T16:51:49.971626Z,1000000ns,0,"
            f.write(h.encode().ljust(384, b" "))
            f.write(fr.astype(">u2").tobytes())


def test_merlin_mib_through_rosettasciio_with_flyback(tmp_path, rng):
    pytest.importorskip("rsciio")
    sy, sx, fb, ny, nx = 3, 4, 1, 16, 12
    frames = rng.integers(0, 1000, (sy * (sx + fb), ny, nx)).astype(np.uint16)
    p = tmp_path / "scan.mib"
    _write_mib(p, frames)
    s = load_scan(p, scan_shape=(sy, sx), flyback=fb, pixel_size=0.01)
    assert s.shape == (sy, sx, ny, nx)
    # rosettasciio returns Merlin frames with the rows reversed (the detector's bottom-up readout)
    expect = frames.reshape(sy, sx + fb, ny, nx)[:, fb:, ::-1, :]
    np.testing.assert_array_equal(np.asarray(s.data), expect)
    with pytest.raises(ValueError, match="scan_shape"):
        load_scan(p, scan_shape=(sy, sx), flyback=0)
    raw = p.read_bytes()
    (tmp_path / "cut.mib").write_bytes(raw[:-50])
    with pytest.raises(ValueError, match="truncated"):
        load_scan(tmp_path / "cut.mib", scan_shape=(sy, sx), flyback=fb)
