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
    import emdfile

    p = tmp_path / "scan.h5"
    write_emd(p, small, step=40.0, pixel_size=0.0125)
    arr = emdfile.read(str(p), emdpath="root/datacube")
    np.testing.assert_array_equal(np.asarray(arr.data), small)
    assert arr.dim_units[2] == "A^-1"
    assert abs(arr.dims[2][1] - arr.dims[2][0] - 0.0125) < 1e-12


def test_reads_a_file_written_by_emdfile(tmp_path, small):
    import emdfile

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


# ------------------------------------------------------------------------------------------------------------
# interoperability: py4DSTEM layout, HyperSpy, other layouts (issue: files other tools open as they are)
# ------------------------------------------------------------------------------------------------------------
DATA = __import__("pathlib").Path(__file__).with_name("data")


def _our_file(path, data, *, step=40.0, pixel_size=0.0125, center=(7.5, 9.0), energy=300e3, semiangle=2.0, **kw):
    from simkit.emd import write_emd_header
    from simkit.geometry import DetectorGeometry

    geom = DetectorGeometry(shape=data.shape[2:], pixel_size=pixel_size, center=center)
    with h5py.File(path, "w") as f:
        ds = write_emd_header(f, data.shape[:2], geom, step, energy=energy, semiangle=semiangle, dtype=data.dtype, **kw)
        ds[...] = data
    return path


def test_py4dstem_fixture_calibrations_are_read_and_named():
    from tests.data.make_py4dstem_fixture import ORIGIN, Q_PIXEL, R_PIXEL, SEMIANGLE
    from tests.data.make_py4dstem_fixture import data as fixture_data

    s = load_scan(DATA / "py4dstem_datacube.h5")
    np.testing.assert_array_equal(s.data[()], fixture_data())
    assert s.step == pytest.approx(10 * R_PIXEL)  # nm → Å
    assert s.pixel_size == pytest.approx(Q_PIXEL, rel=1e-12)
    assert s.semiangle == pytest.approx(SEMIANGLE) and s.energy is None  # py4DSTEM stores no beam energy
    cal = s.metadata["calibration"]
    assert cal["pixel_size"]["source"].endswith("calibration/Q_pixel_size")
    assert "R_pixel_size" in cal["step"]["source"] and cal["center"]["value"] == ORIGIN


def test_our_file_has_py4dstem_layout_and_reads_as_a_calibrated_datacube(tmp_path, small):
    from tests import py4dstem_stub

    p = _our_file(tmp_path / "ours.emd", small)
    with h5py.File(DATA / "py4dstem_datacube.h5") as ref, h5py.File(p) as ours:
        for key in ("emd_group_type", "version_major", "version_minor", "UUID", "authoring_program"):
            assert key in ours.attrs and key in ref.attrs
        rroot, oroot = ref["datacube_root"], ours["root"]
        for rg, og in ((rroot, oroot), (rroot["datacube"], oroot["datacube"]),
                       (rroot["metadatabundle/calibration"], oroot["metadatabundle/calibration"])):  # fmt: skip
            assert {k: rg.attrs[k] for k in ("emd_group_type", "python_class")} == {
                k: og.attrs[k] for k in ("emd_group_type", "python_class")
            }
        rc, oc = rroot["metadatabundle/calibration"], oroot["metadatabundle/calibration"]
        assert set(rc) <= set(oc)  # every key py4DSTEM writes, with the same emdfile type tags
        assert all(rc[k].attrs["type"] == oc[k].attrs["type"] for k in rc)
        assert [oroot["datacube"][f"dim{i}"].attrs["name"] for i in range(4)] == ["Rx", "Ry", "Qx", "Qy"]
    dc = py4dstem_stub.read(p)  # py4DSTEM.read's path: emdfile + the calibration links
    assert type(dc).__name__ == "DataCube"
    np.testing.assert_array_equal(dc.data, small)
    c = dc.calibration
    assert (c.get_Q_pixel_size(), c.get_Q_pixel_units()) == (0.0125, "A^-1")
    assert (c.get_R_pixel_size(), c.get_R_pixel_units()) == (40.0, "A")
    assert c["convergence_semiangle_mrad"] == 2.0 and c["beam_energy_eV"] == 300e3
    # L = pitch / (λ · Δq): 55 µm / (0.019687 Å · 0.0125 Å⁻¹) = 223.5 mm at 300 keV
    assert c["camera_length_mm"] == pytest.approx(0.055 / (0.0196875 * 0.0125), rel=2e-4)
    np.testing.assert_allclose(np.diff(dc.dims[2][:2]), 0.0125)
    s = load_scan(p)
    assert (s.step, s.pixel_size, s.energy, s.semiangle) == (40.0, 0.0125, 300e3, 2.0)


def test_hyperspy_loads_our_hspy_file_without_reader(tmp_path, small):
    import hyperspy.api as hs

    p = _our_file(tmp_path / "ours.hspy", small)
    sig = hs.load(p)
    am = sig.axes_manager
    assert am.navigation_dimension == 2 and am.signal_dimension == 2
    assert am.navigation_shape == (5, 4) and am.signal_shape == (18, 16)  # HyperSpy lists x before y
    assert [a.scale for a in am.navigation_axes] == [40.0, 40.0] and am.navigation_axes[0].units == "Å"
    qx = am.signal_axes[0]
    assert qx.scale == 0.0125 and qx.offset == pytest.approx(-9.0 * 0.0125) and qx.units == "1/Å"
    np.testing.assert_array_equal(np.asarray(sig.data), small)
    tem = sig.metadata.Acquisition_instrument.TEM
    assert tem.beam_energy == 300.0 and tem.convergence_angle == 2.0  # keV, mrad
    assert tem.camera_length == pytest.approx(223.5, rel=1e-3)  # mm
    # the same file named .emd opens in rosettasciio's EMD reader with py4DSTEM's calibration in its tree
    (tmp_path / "ours.emd").write_bytes(p.read_bytes())
    emd = hs.load(tmp_path / "ours.emd")
    assert emd.original_metadata.calibration.Q_pixel_size == 0.0125
    assert [a.scale for a in emd.axes_manager.navigation_axes] == [40.0, 40.0]
    assert [a.scale for a in emd.axes_manager.signal_axes] == pytest.approx([0.0125, 0.0125])
    s = load_scan(p)  # and ours reads the .hspy through its EMD tree
    assert s.metadata["reader"] == "emd" and s.pixel_size == 0.0125


def _hspy_to_zspy(src, dst):
    """Copy a HyperSpy HDF5 file's tree (groups, arrays, attributes) into a zarr v2 directory store: the layout
    rosettasciio's zspy writer makes (``file_format='ZSpy'``), for zarr versions its writer does not support."""
    import zarr

    def plain(v):
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, np.generic):
            return v.item()
        return v.tolist() if isinstance(v, np.ndarray) else v

    def copy(h, z):
        z.attrs.update({k: plain(v) for k, v in h.attrs.items()})
        for k, obj in h.items():
            if isinstance(obj, h5py.Group):
                copy(obj, z.require_group(k))
            else:
                a = z.create_array(k, shape=obj.shape, dtype=obj.dtype, chunks=obj.chunks or obj.shape)
                a[...] = obj[()]
                a.attrs.update({kk: plain(vv) for kk, vv in obj.attrs.items()})

    with h5py.File(src, "r") as h:
        z = zarr.open_group(str(dst), mode="w", zarr_format=2)
        copy(h, z)
        z.attrs["file_format"] = "ZSpy"


@pytest.mark.parametrize("suffix", [".hspy", ".zspy", ".h5"])
def test_hspy_and_zspy_written_by_hyperspy_round_trip(tmp_path, small, suffix):
    import hyperspy.api as hs

    sig = hs.signals.Signal2D(small)
    axes = [(4.0, "nm", 0), (4.0, "nm", 0), (0.125, "1/nm", -1.0), (0.125, "1/nm", -1.125)]  # array order
    for ax, (scale, units, off) in zip(sig.axes_manager._axes, axes):
        ax.scale, ax.units, ax.offset = scale, units, off
    for k, v in (("beam_energy", 200.0), ("convergence_angle", 1.5), ("camera_length", 300.0)):  # keV, mrad, mm
        sig.metadata.set_item(f"Acquisition_instrument.TEM.{k}", v)
    p = tmp_path / f"hs{suffix}"
    try:
        sig.save(p, file_format="hspy" if suffix == ".h5" else None)  # a HyperSpy file named .h5
    except AttributeError as e:
        # rosettasciio's zspy writer needs zarr 2 (its own extra pins zarr<3, still on its main branch) and abTEM
        # needs zarr>=3.1, so here HyperSpy writes .hspy and the same tree is copied into a zarr store
        if suffix != ".zspy" or "NestedDirectoryStore" not in str(e):
            raise
        sig.save(tmp_path / "hs.hspy")
        _hspy_to_zspy(tmp_path / "hs.hspy", p)
        assert hs.load(p).axes_manager.navigation_shape == (5, 4)  # HyperSpy itself reads the copy
    s = load_scan(p)
    np.testing.assert_array_equal(np.asarray(s.data), small)
    assert s.step == pytest.approx(40.0) and s.pixel_size == pytest.approx(0.0125)  # nm → Å, 1/nm → 1/Å
    assert s.energy == pytest.approx(200e3) and s.semiangle == pytest.approx(1.5)
    cal = s.metadata["calibration"]
    assert cal["camera_length"]["value"] == pytest.approx(300.0)
    assert cal["center"]["value"] == pytest.approx((1.0 / 0.125, 1.125 / 0.125))  # (det_y, det_x) [px]
    assert "TEM/beam_energy" in cal["energy"]["source"]
    assert s.metadata["reader"] == f"rosettasciio.{suffix[1:] if suffix != '.h5' else 'hspy'}"


def test_write_zspy_round_trips_through_hyperspy_and_load_scan(tmp_path, small):
    """rosettasciio's zspy writer on a zarr-2 store opened by zarr 3: HyperSpy (the independent reader) and
    load_scan get the data, the 2 | 2 axes and the TEM metadata back; an existing store is not replaced silently."""
    import hyperspy.api as hs
    import zarr

    from simkit.emd import write_zspy

    p = tmp_path / "scan.zspy"
    kw = dict(step=40.0, pixel_size=0.0125, center=(7.5, 9.0), energy=300e3, semiangle=2.0, camera_length=250.0)
    with h5py.File(_our_file(tmp_path / "src.emd", small), "r") as f:
        write_zspy(p, f["root/datacube/data"], **kw)  # lazy source: copied block by block
    assert zarr.open_group(str(p), mode="r").metadata.zarr_format == 2  # the format rosettasciio's reader expects
    sig = hs.load(p)
    am = sig.axes_manager
    assert (am.navigation_shape, am.signal_shape) == ((5, 4), (18, 16))
    assert [a.name for a in am._axes] == ["scan_y", "scan_x", "ky", "kx"]
    assert [a.scale for a in am._axes] == [40.0, 40.0, 0.0125, 0.0125]
    assert [str(a.units) for a in am._axes] == ["Å", "Å", "1/Å", "1/Å"]
    assert (am._axes[2].offset, am._axes[3].offset) == (-7.5 * 0.0125, -9.0 * 0.0125)  # Q = 0 on the direct beam
    tem = sig.metadata.Acquisition_instrument.TEM
    assert (tem.beam_energy, tem.convergence_angle, tem.camera_length) == (300.0, 2.0, 250.0)  # keV, mrad, mm
    np.testing.assert_array_equal(np.asarray(sig.data), small)
    s = load_scan(p)
    assert (s.step, s.pixel_size, s.energy, s.semiangle) == (40.0, 0.0125, 300e3, 2.0)
    assert s.metadata["calibration"]["center"]["value"] == pytest.approx((7.5, 9.0))
    np.testing.assert_array_equal(np.asarray(s.data), small)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_zspy(p, small, **kw)
    write_zspy(p, small[:2], overwrite=True, **kw)
    assert hs.load(p).axes_manager.navigation_shape == (5, 2)
    with pytest.raises(ValueError, match=r"\.zspy"):
        write_zspy(tmp_path / "scan.zarr", small, **kw)


def test_write_zspy_leaves_nothing_behind_when_interrupted(tmp_path, small):
    from simkit.emd import write_zspy

    class Broken:  # an array whose last frames cannot be read (a truncated source)
        shape, dtype, ndim = small.shape, small.dtype, 4

        def __getitem__(self, key):
            if key[0].start is not None and key[0].start >= 3:
                raise OSError("truncated")
            return small[key]

    with pytest.raises(OSError, match="truncated"):
        write_zspy(tmp_path / "scan.zspy", Broken(), step=40.0, pixel_size=0.0125, center=(7.5, 9.0))
    assert list(tmp_path.iterdir()) == []


def test_single_frames_are_one_by_one_scans(tmp_path, small):
    frame = small[1, 2]
    np.save(tmp_path / "f.npy", frame)
    s = load_scan(tmp_path / "f.npy", pixel_size=0.01)
    assert s.shape == (1, 1, *frame.shape) and s.metadata["single_frame"]
    np.testing.assert_array_equal(np.asarray(s.data)[0, 0], frame)
    import hyperspy.api as hs

    hs.signals.Signal2D(frame).save(tmp_path / "f.hspy")
    np.testing.assert_array_equal(np.asarray(load_scan(tmp_path / "f.hspy").data), frame[None, None])


def test_3d_hdf5_stack_with_scan_shape_and_flyback(tmp_path, small):
    sy, sx, ny, nx = small.shape
    fb = 2
    rows = np.concatenate([np.zeros((sy, fb, ny, nx), small.dtype) + 9, small], axis=1)  # flyback first
    with h5py.File(tmp_path / "stack.h5", "w") as f:
        f.create_dataset("frames", data=rows.reshape(-1, ny, nx), chunks=(1, ny, nx))
    with pytest.raises(ValueError, match="scan_shape"):
        load_scan(tmp_path / "stack.h5")
    s = load_scan(tmp_path / "stack.h5", scan_shape=(sy, sx), flyback=fb)
    assert s.shape == small.shape
    np.testing.assert_array_equal(np.asarray(s.data), small)
    np.testing.assert_array_equal(load_scan(tmp_path / "stack.h5", scan_shape=(sy, sx), flyback=fb, lazy=False).data,
                                  small)  # fmt: skip


def test_emd_0x_layout_with_one_based_dims(tmp_path, small):
    """EMD 0.x (fpd / pixstem): emd_group_type 1, dims dim1..dim4, version 0.2."""
    p = tmp_path / "fpd.hdf5"
    with h5py.File(p, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("fpd_expt/fpd_data")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=small)
        for i, (v, u) in enumerate([([0, 5e-9], "m"), ([0, 5e-9], "m"), ([0, 0.02], "nm^-1"), ([0, 0.02], "nm^-1")]):
            d = g.create_dataset(f"dim{i + 1}", data=np.asarray(v, float))
            d.attrs["units"] = u
    s = load_scan(p)
    np.testing.assert_array_equal(s.data[()], small)
    assert s.step == pytest.approx(50.0) and s.pixel_size == pytest.approx(0.002)
    assert s.metadata["calibration"]["step"]["source"].endswith("dim1 [m]")
    from rsciio.emd import file_reader  # the independent reader agrees on the axes

    axes = file_reader(str(p))[0]["axes"][::-1]  # rosettasciio transposes EMD 0.x arrays (dim1 = our axis 0)
    assert [a["size"] for a in axes] == list(small.shape)
    assert axes[0]["scale"] == pytest.approx(5e-9) and axes[2]["scale"] == pytest.approx(0.02)


def test_malformed_calibration_names_file_and_field(tmp_path, small):
    p = _our_file(tmp_path / "bad.h5", small)
    with h5py.File(p, "a") as f:
        f["root/datacube"].attrs["energy"] = "three hundred"
        del f["root/datacube/metadatabundle/acquisition/energy"]
        del f["root/metadatabundle/calibration/beam_energy_eV"]
    with pytest.raises(ValueError, match=r"bad\.h5: metadata field 'energy' = 'three hundred'.*energy=") as e:
        load_scan(p)
    assert "fix the file" in str(e.value)
    assert load_scan(p, energy=200e3, lazy=False).energy == 200e3  # the argument replaces the broken field
    with h5py.File(p, "a") as f:
        f["root/datacube"].attrs["energy"] = 300e3
        f["root/datacube"].attrs["pixel_size"] = -0.01
    with pytest.raises(ValueError, match="'pixel_size' = -0.01"):
        load_scan(p)


def test_blosc_file_without_the_filter_names_codec_and_fix(tmp_path, small):
    import hdf5plugin

    p = _our_file(tmp_path / "blosc.h5", small, compression="blosc-lz4")
    np.testing.assert_array_equal(load_scan(p).data[()], small)
    h5py.h5z.unregister_filter(hdf5plugin.BLOSC_ID)
    try:
        with pytest.raises(ValueError, match=r"(?i)blosc.*hdf5plugin.*lzf"):
            load_scan(p)
    finally:
        hdf5plugin.register("blosc", force=True)
    np.testing.assert_array_equal(load_scan(p).data[()], small)


def _write_tia(stem, data, *, step_m, q_per_m, high_tension_kv, camera_length_m):
    """A TIA .emi/.ser pair for a 4-D scan as FEI/Thermo Fisher TIA lays it out (record = 2-D image, XY tags), written
    after rosettasciio's reader (rsciio/tia/_api.py): series header v0x0210, two scan dimensions in metres (Dim-1 = x,
    fast), image elements with their calibration, rows stored bottom-up, an .emi holding the XML ObjectInfo."""
    import struct

    sy, sx, ny, nx = data.shape
    n = sy * sx
    dims = b""
    for size, delta in ((sx, step_m), (sy, step_m)):  # Dim-1: x, Dim-2: y
        dims += struct.pack("<IddII", size, 0.0, delta, 0, 0) + struct.pack("<I", 6) + b"meters"
    head_len = 30 + len(dims)
    elem = 2 * (8 + 8 + 4) + 2 + 4 + 4 + ny * nx * 2  # calibration X/Y, type, sizes, uint16 pixels
    tag = 2 + 2 + 4 + 8 + 8
    off_arr = head_len
    first = off_arr + 2 * n * 4
    offsets = [first + k * (elem + tag) for k in range(n)]
    with open(f"{stem}_1.ser", "wb") as f:
        f.write(struct.pack("<HHHIIII", 0x4949, 0x0197, 0x0210, 0x4122, 0x4142, n, n))
        f.write(struct.pack("<II", off_arr, 2))
        f.write(dims)
        f.write(np.asarray(offsets + [o + elem for o in offsets], "<u4").tobytes())
        for k in range(n):
            iy, ix = divmod(k, sx)
            cal = struct.pack("<ddI", -nx / 2 * q_per_m, q_per_m, 0) + struct.pack(
                "<ddI", -ny / 2 * q_per_m, q_per_m, 0
            )
            f.write(cal + struct.pack("<HII", 2, nx, ny) + data[iy, ix, ::-1].astype("<u2").tobytes())
            f.write(struct.pack("<HHIdd", 0x4142, 0, 0, ix * step_m, iy * step_m))
    xml = (
        "<ObjectInfo><AcquireDate>Thu Jan 01 12:00:00 2026</AcquireDate><ExperimentalDescription><Root>"
        f"<Data><Label>High tension</Label><Value>{high_tension_kv}</Value><Unit>kV</Unit></Data>"
        f"<Data><Label>Camera length</Label><Value>{camera_length_m}</Value><Unit>m</Unit></Data>"
        "<Data><Label>Mode</Label><Value>STEM nP SA Zoom Diffraction</Value><Unit></Unit></Data>"
        "</Root></ExperimentalDescription><AcquireInfo><CameraNamePath>BM-Ceta</CameraNamePath>"
        "<DwellTimePath>0.01</DwellTimePath></AcquireInfo></ObjectInfo>"
    )
    with open(f"{stem}.emi", "wb") as f:
        f.write(b"\x00" * 32 + xml.encode() + b"\x00" * 16)


def test_tia_emi_ser_round_trip_through_rosettasciio(tmp_path, small):
    _write_tia(tmp_path / "scan", small, step_m=4e-9, q_per_m=0.0125e10, high_tension_kv=300.0, camera_length_m=0.25)
    s = load_scan(tmp_path / "scan.emi", lazy=False)
    np.testing.assert_array_equal(s.data, small)
    assert s.step == pytest.approx(40.0)  # 4 nm
    assert s.pixel_size == pytest.approx(0.0125)  # 1.25e8 1/m = 0.0125 1/Å
    assert s.energy == pytest.approx(300e3)
    assert s.metadata["calibration"]["camera_length"]["value"] == pytest.approx(250.0)  # m → mm
    assert s.metadata["calibration"]["center"]["value"] == pytest.approx((small.shape[2] / 2, small.shape[3] / 2))
    # a .ser without its .emi does not say the image is a diffraction pattern (rosettasciio reads metres): the
    # error names the file and the axis, and an explicit pixel size reads it
    ser = tmp_path / "scan_1.ser"
    with pytest.raises(ValueError, match=r"scan_1\.ser: metadata field 'axes/y.units' has units 'nm'.*pixel_size="):
        load_scan(ser)
    s = load_scan(ser, pixel_size=0.0125, lazy=False)
    np.testing.assert_array_equal(s.data, small)
    assert s.step == pytest.approx(40.0) and s.energy is None


def test_prismatic_4d_datacube_through_rosettasciio(tmp_path, small):
    """prismatic's EMD 0.x layout (as rosettasciio reads it): datacube with dims dim1..dim4, real space [n_m], detector
    angles [mrad], beam energy and probe semi-angle in the simulation parameters."""
    from simkit.units import wavelength

    p = tmp_path / "prism.emd"
    sy, sx, ny, nx = small.shape
    with h5py.File(p, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("4DSTEM_simulation/data/datacubes/CBED_array_depth0000")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("datacube", data=small)
        dims = [(np.arange(sy) * 0.4, "[n_m]"), (np.arange(sx) * 0.4, "[n_m]")]
        dims += [((np.arange(ny) - 8) * 0.25, "[mrad]"), ((np.arange(nx) - 9) * 0.25, "[mrad]")]
        for i, (v, u) in enumerate(dims):
            d = g.create_dataset(f"dim{i + 1}", data=v)
            d.attrs["name"], d.attrs["units"] = f"dim{i + 1}", u
        m = f.create_group("4DSTEM_simulation/metadata/metadata_0/original/simulation_parameters")
        m.attrs["E"], m.attrs["sa"] = 300.0, 2.0  # kV, mrad
    s = load_scan(p, lazy=False)
    np.testing.assert_array_equal(s.data, small)
    assert s.step == pytest.approx(4.0)  # 0.4 nm
    assert s.energy == pytest.approx(300e3) and s.semiangle == pytest.approx(2.0)
    assert s.pixel_size == pytest.approx(0.25e-3 / wavelength(300e3))  # θ/λ, Q = 1/d
    assert s.metadata["calibration"]["center"]["value"] == pytest.approx((8.0, 9.0))


def test_angular_pixel_size_needs_and_uses_the_beam_energy(tmp_path, small):
    """A detector calibrated in mrad (py4DSTEM allows Q_pixel_units='mrad') becomes Q = θ/λ once the energy is known."""
    from simkit.units import wavelength

    p = tmp_path / "mrad.h5"
    _our_file(p, small, energy=None, semiangle=None)
    with h5py.File(p, "a") as f:
        c = f["root/metadatabundle/calibration"]
        for k in ("Q_pixel_size", "Q_pixel_units"):
            del c[k]
        c["Q_pixel_size"], c["Q_pixel_units"] = 0.1, "mrad"
        g = f["root/datacube"]
        del g["metadatabundle/acquisition/pixel_size"]
        for i in (2, 3):
            g[f"dim{i}"].attrs["units"] = "pixels"
    with pytest.raises(ValueError, match=r"mrad\.h5: .*Q_pixel_size.*'mrad'.*beam energy.*energy="):
        load_scan(p)
    s = load_scan(p, energy=300e3, lazy=False)
    assert s.pixel_size == pytest.approx(0.1e-3 / wavelength(300e3))  # 0.0508 Å⁻¹ per mrad-pixel at 300 keV
    assert "mrad" in s.metadata["calibration"]["pixel_size"]["source"]


def test_fpd_merlin_layout_5d_with_colour_axis(tmp_path, rng):
    """The fpd package's EMD 0.x Merlin files (layout of pixstem 0.4.0's fpd_file_test.hdf5): per-position scalars and
    spectra beside a 5-D fpd_data (scanY, scanX, colour=1, detY, detX) whose dims say 'pixel' and '?/m'."""
    data = rng.integers(0, 4000, (2, 3, 1, 32, 24)).astype(">u2")
    p = tmp_path / "fpd.hdf5"
    with h5py.File(p, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        for name, arr, det in (("DAC", np.zeros((2, 3, 1, 27), "u1"), ("DAC",)), ("fpd_data", data, ("detY", "detX"))):
            g = f.create_group(f"fpd_expt/{name}")
            g.attrs["emd_group_type"] = 1
            g.create_dataset("data", data=arr)
            names = [("scanY", "pixel", b"y"), ("scanX", "pixel", b"x"), ("colour", "colour_index", np.array([1]))]
            names += [
                (d, "?/m" if d.startswith("det") else "val", np.arange(arr.shape[3 + i])) for i, d in enumerate(det)
            ]
            for i, (nm, u, v) in enumerate(names):
                d = g.create_dataset(f"dim{i + 1}", data=v)
                d.attrs["name"], d.attrs["units"] = nm, u
    s = load_scan(p)
    assert s.shape == (2, 3, 32, 24) and s.metadata["hdf5_path"] == "/fpd_expt/fpd_data/data"
    np.testing.assert_array_equal(np.asarray(s.data), data[:, :, 0])
    assert s.step is None and s.pixel_size is None  # 'pixel' and '?/m': uncalibrated, not an error
    assert "?/m" in s.metadata["uncalibrated_units"]


def test_single_frame_mib_is_a_one_by_one_scan_and_the_error_counts_frames(tmp_path, rng):
    frames = rng.integers(0, 1000, (1, 16, 12)).astype(np.uint16)
    _write_mib(tmp_path / "one.mib", frames)
    s = load_scan(tmp_path / "one.mib", lazy=False)
    assert s.shape == (1, 1, 16, 12)
    np.testing.assert_array_equal(s.data[0, 0], frames[0, ::-1])  # rosettasciio: Merlin rows bottom-up
    _write_mib(tmp_path / "six.mib", np.repeat(frames, 6, axis=0))
    with pytest.raises(ValueError, match=r"holds 6 frames.*scan_shape"):
        load_scan(tmp_path / "six.mib")
