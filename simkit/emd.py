"""The 4D-STEM file: one HDF5 file that py4DSTEM, emdfile, rosettasciio/HyperSpy and ``fitting.io`` all open.

Layout (written by emdfile's own node writers and rosettasciio's HyperSpy writer where they can):

* **EMD 1.0 tree** (emdfile, the library py4DSTEM 0.14 reads and writes with): file attributes
  ``emd_group_type='file'``, ``version_major=1``, ``version_minor=0``; a root group ``/root``
  (``emd_group_type='root'``) whose metadata bundle holds py4DSTEM's ``Calibration`` (``python_class
  'Calibration'``: ``Q_pixel_size`` [Å⁻¹ per px, Q = 1/d] with ``Q_pixel_units='A^-1'``, ``R_pixel_size`` [Å] with
  ``R_pixel_units='A'``, ``qx0_mean``/``qy0_mean`` = direct-beam position [px], ``QR_rotation_degrees``,
  ``QR_flip``, ``convergence_semiangle_mrad`` and, beyond py4DSTEM's own keys, ``beam_energy_eV`` and
  ``camera_length_mm``, plus the ``_root_treepath``/``_target_paths`` links py4DSTEM's ``save`` adds), and
  the datacube ``/root/datacube`` (``emd_group_type='array'``, ``python_class='DataCube'``) with ``data``
  (Rx, Ry, Qx, Qy) = (scan_y, scan_x, det_y, det_x) and ``dim0..dim3``. ``py4DSTEM.read(path)`` returns a
  ``DataCube`` calibrated from that ``Calibration``. emdfile alone does not know the class names
  ``DataCube``/``Calibration`` (as for every py4DSTEM file: ``emdfile.read`` raises "Unknown classname
  Calibration" — its ``Node.from_h5`` falls back to a plain ``Metadata`` only on a KeyError, and ``_get_class``
  raises a plain Exception), so this module registers stand-ins through emdfile's own plug-in hook
  (``_emd_hook``): after ``import simkit.emd``, ``emdfile.read(path)`` returns a :class:`DataCube` (an emdfile
  ``Array`` with the calibrated dims) whose ``calibration`` is a :class:`Calibration` (an emdfile ``Metadata``).
  The hook stands aside whenever another imported package (py4DSTEM) provides those classes, so
  ``py4DSTEM.read`` always gets py4DSTEM's own. Without any import, plain emdfile still reads each part:
  ``emdfile.Array.from_h5(h5["root/datacube"])`` and ``emdfile.Metadata.from_h5(h5["root/metadatabundle/
  calibration"])``. ``fitting.io`` and rosettasciio read the groups directly.
* **Ground truth** (synthetic scans): an emdfile ``Metadata`` named ``truth`` in the datacube's metadata bundle
  (:data:`TRUTH_PATH`), so the whole file is one valid EMD tree.
* **HyperSpy tree** (rosettasciio's ``hspy`` writer, without data): ``/Experiments/<title>`` with axes
  (navigation: ``scan_y``, ``scan_x`` [Å]; signal: ``ky``, ``kx`` [1/Å]), ``metadata.Acquisition_instrument.TEM``
  (``beam_energy`` [keV], ``convergence_angle`` [mrad], ``camera_length`` [mm]) and a *soft link* ``data`` to the
  datacube (no copy; soft, so that HDF5 visitors still find the EMD dataset first). HyperSpy picks its reader by
  the file name's suffix (rosettasciio's ``specifications.yaml`` of each plug-in): ``.hspy`` goes to this tree.
* **EMD (NCEM) view** for ``.emd`` (:data:`NCEM_VIEW`, :func:`_write_ncem_view`): rosettasciio's EMD reader marks
  navigation axes only in prismatic's layout, so the datacube is hard-linked (no copy) once more in that layout;
  ``hyperspy.api.load("scan.emd")`` then gives the same 2 | 2 signal (title, axes names, Å, 1/Å), with beam
  energy, semi-angle and camera length in ``original_metadata`` (``simulation_parameters`` and py4DSTEM's
  ``calibration``): that reader maps no instrument metadata into ``metadata`` (``EMD_NCEM._parse_metadata`` fills
  ``General`` and ``Signal`` only). ``.h5`` and ``.hdf5`` are each claimed by several plug-ins (Arina, Delmic,
  TOFWERK, USID; hspy for ``.hdf5``) and HyperSpy asks which one: pass ``file_format="hspy"`` (HyperSpy ≥ 2.4;
  ``reader="hspy"`` before).
* **HyperSpy zarr** (``.zspy``, a directory): :func:`write_zspy` (rosettasciio's ``ZspyWriter`` on a zarr-2 store).

Codecs (:data:`COMPRESSIONS`): ``"lzf"`` (default: built into every h5py, so every reader opens it), ``None``, or
``"blosc-lz4"`` (Blosc LZ4 + bit-shuffle through hdf5plugin: ≈ 7× faster to decode and ≈ 40 % smaller on 256²
count patterns, but a reader must ``import hdf5plugin`` first; :func:`codec_error` words the message).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import emdfile
import h5py
import numpy as np

from simkit.atomic import atomic_tree
from simkit.geometry import DetectorGeometry

__all__ = [
    "COMPRESSIONS",
    "Calibration",
    "DataCube",
    "DEFAULT_COMPRESSION",
    "TRUTH_PATH",
    "camera_length_mm",
    "codec_error",
    "filter_kwargs",
    "read_truth",
    "write_emd_header",
    "write_truth",
    "write_zspy",
]

#: Codec names of the pattern chunks.
COMPRESSIONS = ("lzf", "blosc-lz4", None)
#: Default codec: readable by every HDF5 reader without plugins.
DEFAULT_COMPRESSION = "lzf"
#: HDF5 path of the ground-truth metadata of a synthetic scan.
TRUTH_PATH = "root/datacube/metadatabundle/truth"
#: Title of the HyperSpy signal (group ``/Experiments/<title>``).
HSPY_TITLE = "sei-send 4D-STEM scan"
#: Group of the datacube's view for rosettasciio's EMD (NCEM) reader; its last four characters are the reader's
#: stack index, so the signal's title is :data:`HSPY_TITLE`.
NCEM_VIEW = f"4DSTEM_simulation/data/datacubes/{HSPY_TITLE}0000"
#: Dataset names that rosettasciio's EMD (NCEM) reader loads as signals (``EMD_NCEM.find_dataset_paths``).
_NCEM_DATA_PREFIXES = ("data", "counted_datacube", "datacube", "diffractionslice", "realslice", "pointlist")
#: Detector pixel pitch [µm] assumed for the camera length when none is given (Medipix3 / Merlin).
DEFAULT_PIXEL_PITCH = 55.0


def filter_kwargs(compression) -> dict:
    """h5py dataset keywords of a codec name.

    Parameters
    ----------
    compression : {"lzf", "blosc-lz4", None}

    Returns
    -------
    dict
        Keywords for ``h5py.Group.create_dataset``.
    """
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if compression == "blosc-lz4":
        import hdf5plugin

        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    if compression is None:
        return {}
    raise ValueError(f"compression={compression!r}: choose one of {COMPRESSIONS}")


def codec_error(path, dataset) -> str | None:
    """The message for a dataset whose HDF5 filter is not available in this session, or None if it is readable.

    Parameters
    ----------
    path : path-like
        File name (for the message).
    dataset : h5py.Dataset

    Returns
    -------
    str or None
        Names the codec (Blosc/LZ4/bit-shuffle through hdf5plugin) and the fix.
    """
    from h5py import h5z

    plist = dataset.id.get_create_plist()
    missing = []
    for i in range(plist.get_nfilters()):
        code, _flags, _vals, name = plist.get_filter(i)
        if not h5z.filter_avail(code):
            nm = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            missing.append(f"{nm or 'filter'} (HDF5 filter id {code})")
    if not missing:
        return None
    return (
        f"{path}: dataset {dataset.name} is compressed with {', '.join(missing)}, which this session cannot decode; "
        "`pip install hdf5plugin` and `import hdf5plugin` before opening the file (or rewrite it with "
        "compression='lzf')"
    )


def camera_length_mm(pixel_size: float, energy: float, pixel_pitch: float = DEFAULT_PIXEL_PITCH) -> float:
    """Camera length [mm] that maps a detector pixel of ``pixel_pitch`` [µm] to ``pixel_size`` [Å⁻¹].

    Small-angle mapping: θ per pixel = λ · pixel_size = pitch / L.

    Parameters
    ----------
    pixel_size : float  [Å⁻¹/px]
    energy : float  [eV]
    pixel_pitch : float  [µm]

    Returns
    -------
    float  [mm]
    """
    from simkit.units import wavelength

    return float(pixel_pitch * 1e-3 / (wavelength(float(energy)) * float(pixel_size)))


def _calibration_metadata(geometry: DetectorGeometry, step: float, energy, semiangle, camera_length):
    import emdfile

    cal = emdfile.Metadata(name="calibration")
    cy, cx = geometry.center
    params: dict[str, Any] = {
        "Q_pixel_size": float(geometry.pixel_size),
        "Q_pixel_units": "A^-1",
        "R_pixel_size": float(step),
        "R_pixel_units": "A",
        "qx0_mean": float(cy),
        "qy0_mean": float(cx),
        "QR_rotation_degrees": 0.0,
        "QR_flip": False,
        # links that py4DSTEM.save adds so that py4DSTEM.read re-calibrates the datacube's dims
        "_root_treepath": "",
        "_target_paths": ["/datacube"],
    }
    if semiangle is not None:
        params["convergence_semiangle_mrad"] = float(semiangle)
    if energy is not None:
        params["beam_energy_eV"] = float(energy)
    if camera_length is not None:
        params["camera_length_mm"] = float(camera_length)
    for k, v in params.items():
        cal[k] = v
    return cal


def write_emd_header(
    f: h5py.File,
    scan_shape: tuple[int, int],
    geometry: DetectorGeometry,
    step: float,
    *,
    dtype=np.uint16,
    compression: str | None = DEFAULT_COMPRESSION,
    name: str = "datacube",
    energy: float | None = None,
    semiangle: float | None = None,
    camera_length: float | None = None,
    attrs: dict | None = None,
    file_id: str | None = None,
) -> h5py.Dataset:
    """Create the file's EMD 1.0 and HyperSpy trees and return the empty, chunked ``data`` dataset.

    Parameters
    ----------
    f : h5py.File
        Open for writing (empty).
    scan_shape : (int, int)
        (Rx, Ry) = (scan_y, scan_x) [positions].
    geometry : DetectorGeometry
        Detector shape, pixel size [Å⁻¹/px] and direct-beam centre [px].
    step : float  [Å]
        Scan step (both directions).
    dtype : numpy dtype
        Stored counts type.
    compression : {"lzf", "blosc-lz4", None}
        Codec of the pattern chunks (module docstring).
    name : str
        Datacube group name.
    energy : float or None  [eV]
        Beam energy.
    semiangle : float or None  [mrad]
        Probe convergence semi-angle.
    camera_length : float or None  [mm]
        Camera length; None and a known ``energy``: :func:`camera_length_mm` with a 55 µm pixel pitch.
    attrs : dict or None
        Extra attributes of the datacube group (``fitting.io`` reads ``energy`` [eV], ``semiangle`` [mrad],
        ``step`` [Å], ``pixel_size`` [Å⁻¹] there).
    file_id : str or None
        Seed text of the file's UUID (deterministic files); None: random.

    Returns
    -------
    h5py.Dataset
        Shape (Rx, Ry, Qx, Qy), chunked by pattern.
    """
    import emdfile
    from emdfile import Metadata, Node, Root

    opts = filter_kwargs(compression)
    pitch = None
    if camera_length is None and energy is not None:
        pitch = DEFAULT_PIXEL_PITCH
        camera_length = camera_length_mm(geometry.pixel_size, energy, pitch)
    f.attrs["emd_group_type"] = "file"
    f.attrs["version_major"] = 1
    f.attrs["version_minor"] = 0
    f.attrs["UUID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, file_id) if file_id is not None else uuid.uuid4())
    f.attrs["authoring_program"] = "sei-send"
    f.attrs["authoring_user"] = ""
    f.attrs["emdfile_version"] = emdfile.__version__

    root = Root(name="root")
    root.metadata = _calibration_metadata(geometry, step, energy, semiangle, camera_length)
    rg = Node.to_h5(root, f)  # emdfile's node writer: group, tags and the metadata bundle
    rg.attrs["emd_group_type"] = "root"
    rg.attrs["python_class"] = "Root"
    rg["metadatabundle/calibration"].attrs["python_class"] = "Calibration"  # py4DSTEM promotes it on read

    cube = Node(name=name)
    acq = Metadata(name="acquisition")
    acq["units"] = "energy [eV], semiangle [mrad], step [A], pixel_size [A^-1 = 1/d per px], camera_length [mm]"
    for k, v in (("energy", energy), ("semiangle", semiangle), ("camera_length", camera_length)):
        if v is not None:
            acq[k] = float(v)
    if pitch is not None:
        acq["camera_length_note"] = f"from pixel_size and energy for an assumed {pitch:g} um detector pixel pitch"
    acq["step"] = float(step)
    acq["pixel_size"] = float(geometry.pixel_size)
    cube.metadata = acq
    g = Node.to_h5(cube, rg)
    g.attrs["emd_group_type"] = "array"
    g.attrs["python_class"] = "DataCube"
    ny, nx = geometry.shape
    ds = g.create_dataset("data", shape=(*scan_shape, ny, nx), dtype=dtype, chunks=(1, 1, ny, nx), **opts)
    ds.attrs["units"] = "counts"
    ds.attrs["codec"] = {
        "lzf": "lzf (built into h5py: no plugin needed)",
        "blosc-lz4": "Blosc LZ4 + bit-shuffle, HDF5 filter 32001: `pip install hdf5plugin` and `import hdf5plugin` "
        "before reading",
        None: "none",
    }[compression]
    cy, cx = geometry.center
    ps = float(geometry.pixel_size)
    # emdfile stores a linear dim as its first two values [v0, v0 + step]
    dims = [
        ("Rx", "A", [0.0, float(step)]),
        ("Ry", "A", [0.0, float(step)]),
        ("Qx", "A^-1", [-cy * ps, (1 - cy) * ps]),
        ("Qy", "A^-1", [-cx * ps, (1 - cx) * ps]),
    ]
    for k, (nm, unit, v) in enumerate(dims):
        d = g.create_dataset(f"dim{k}", data=np.asarray(v, dtype=np.float64))
        d.attrs["name"] = nm
        d.attrs["units"] = unit
    for k, v in (attrs or {}).items():
        g.attrs[k] = v
    _write_hspy_tree(f, ds, step, geometry, energy, semiangle, camera_length)
    _write_ncem_view(f, ds, step, geometry, energy, semiangle, camera_length)
    return ds


def _write_ncem_view(f, ds, step, geometry, energy, semiangle, camera_length) -> None:
    """The datacube once more, as rosettasciio's EMD (NCEM) reader marks navigation axes: a hard link, no copy.

    That reader (``rsciio/emd/_emd_ncem.py``, ``EMD_NCEM._read_data_from_groups``) sets ``navigate`` only when
    the file has a top-level ``4DSTEM_simulation`` group (``_is_prismatic_file``) and then takes a dataset named
    ``datacube`` with 1-based, untransposed ``dim1..dim4`` as (navigation, navigation, signal, signal); in every
    other layout all axes are signal axes. HDF5 visits an object once, in name order, so the reader meets the
    data first under :data:`NCEM_VIEW` and skips the EMD 1.0 path ``/root/datacube/data``: ``hs.load`` returns
    one (scan_x, scan_y | kx, ky) signal. ``_parse_original_metadata`` requires the prismatic parameter group;
    it carries the beam energy [keV], semi-angle [mrad] and camera length [mm] (and py4DSTEM's calibration
    reaches ``original_metadata.calibration``). emdfile and py4DSTEM read only groups marked
    ``emd_group_type='root'`` at the top level, so they never see this group.
    """
    cy, cx = geometry.center
    ps = float(geometry.pixel_size)
    g = f.require_group(NCEM_VIEW)
    g.attrs["emd_group_type"] = 1
    g.attrs["note"] = "HyperSpy/rosettasciio view of /root/datacube/data (hard link); not a prismatic simulation"
    g["datacube"] = ds  # hard link: the same HDF5 object as the EMD 1.0 dataset
    dims = (
        ("scan_y", "Å", 0.0, step),
        ("scan_x", "Å", 0.0, step),
        ("ky", "1/Å", -cy * ps, ps),
        ("kx", "1/Å", -cx * ps, ps),
    )
    for k, (nm, unit, v0, dv) in enumerate(dims):
        d = g.create_dataset(f"dim{k + 1}", data=np.asarray([v0, v0 + float(dv)], dtype=np.float64))
        d.attrs["name"] = nm
        d.attrs["units"] = unit
    par = f.require_group(NCEM_VIEW.split("/")[0] + "/metadata/metadata_0/original/simulation_parameters")
    for k, v in (("beam_energy_keV", None if energy is None else energy / 1e3), ("convergence_angle_mrad", semiangle),
                 ("camera_length_mm", camera_length)):  # fmt: skip
        if v is not None:
            par.attrs[k] = float(v)


def _hspy_signal(shape, step, pixel_size, center, energy, semiangle, camera_length, *, data=None, title=HSPY_TITLE):
    """rosettasciio's signal dictionary of a (scan_y, scan_x, det_y, det_x) scan: axes [Å, 1/Å] and TEM metadata."""
    cy, cx = center if center is not None else (0.0, 0.0)
    ps = 1.0 if pixel_size is None else float(pixel_size)
    dr = 1.0 if step is None else float(step)
    sy, sx, ny, nx = shape
    axes = [
        {"name": "scan_y", "size": sy, "offset": 0.0, "scale": dr, "units": "Å" if step else None, "navigate": True},
        {"name": "scan_x", "size": sx, "offset": 0.0, "scale": dr, "units": "Å" if step else None, "navigate": True},
        {"name": "ky", "size": ny, "offset": -cy * ps, "scale": ps, "units": "1/Å" if pixel_size else None,
         "navigate": False},
        {"name": "kx", "size": nx, "offset": -cx * ps, "scale": ps, "units": "1/Å" if pixel_size else None,
         "navigate": False},
    ]  # fmt: skip
    for i, a in enumerate(axes):
        a["_type"] = "UniformDataAxis"
        a["index_in_array"] = i
        a["is_binned"] = False
    tem: dict[str, Any] = {}
    if energy is not None:
        tem["beam_energy"] = float(energy) / 1e3  # HyperSpy: keV
    if semiangle is not None:
        tem["convergence_angle"] = float(semiangle)  # mrad
    if camera_length is not None:
        tem["camera_length"] = float(camera_length)  # mm
        tem["Detector"] = {"Diffraction": {"camera_length": float(camera_length)}}  # pyxem's place
    metadata = {
        "General": {"title": title},
        "Signal": {"signal_type": "", "quantity": "Counts (Q = 1/d, no 2π)"},
        "_HyperSpy": {"Folding": {"unfolded": False, "signal_unfolded": False}},
    }
    if tem:
        metadata["Acquisition_instrument"] = {"TEM": tem}
    return {
        "data": data,
        "axes": axes,
        "metadata": metadata,
        "original_metadata": {},
        "learning_results": {},
        "models": {},
        "attributes": {"_lazy": False},
        "tmp_parameters": {},
        "package_info": {"package": "", "package_version": ""},
    }


def _write_hspy_tree(f, ds, step, geometry, energy, semiangle, camera_length) -> None:
    """HyperSpy's tree (rosettasciio's writer, no data) with a soft link to the EMD dataset."""
    try:
        from rsciio._hierarchical import version as hspy_version
        from rsciio.hspy._api import HyperspyWriter
    except ImportError:  # rosettasciio is a dependency; a stripped install still gets a valid EMD file
        return
    signal = _hspy_signal(ds.shape, step, geometry.pixel_size, geometry.center, energy, semiangle, camera_length)
    signal["original_metadata"] = {"emd_datacube": ds.name}
    f.attrs["file_format"] = "HyperSpy"
    f.attrs["file_format_version"] = hspy_version
    expg = f.require_group("Experiments").require_group(HSPY_TITLE)
    HyperspyWriter(f, signal, expg, write_dataset=False).write()
    expg["data"] = h5py.SoftLink(ds.name)


def write_zspy(
    path,
    data,
    *,
    step: float | None,
    pixel_size: float | None,
    center: tuple[float, float] | None,
    energy: float | None = None,
    semiangle: float | None = None,
    camera_length: float | None = None,
    overwrite: bool = False,
    title: str = HSPY_TITLE,
) -> Path:
    """Write a 4D scan as a HyperSpy zarr (``.zspy``) directory that ``hyperspy.api.load(path)`` opens.

    rosettasciio's own ``ZspyWriter`` writes the tree (axes, ``Acquisition_instrument.TEM``, the data in
    signal-aligned chunks, Blosc-zstd as HyperSpy does); only the store differs from its ``file_writer``, which
    builds a zarr-2 ``NestedDirectoryStore``: here zarr ≥ 3 opens a ``LocalStore`` with ``zarr_format=2``, the
    format rosettasciio's reader expects. The directory is written beside ``path`` under a hidden name and renamed
    into place when complete, so an interrupted write leaves nothing under ``path``.

    Parameters
    ----------
    path : path-like
        Output directory, name ending in ``.zspy``.
    data : array-like, shape (scan_y, scan_x, det_y, det_x)  [counts]
        NumPy, h5py or dask array (copied block by block; never loaded whole when lazy).
    step : float or None  [Å]
        Scan step; None: uncalibrated scan axes (scale 1, no units).
    pixel_size : float or None  [Å⁻¹/px]
        Detector pixel size in Q = 1/d; None: uncalibrated.
    center : (float, float) or None  [px]
        Direct-beam position (det_y, det_x): the signal axes are 0 there.
    energy : float or None  [eV]
    semiangle : float or None  [mrad]
    camera_length : float or None  [mm]
    overwrite : bool
        Replace an existing ``path``.
    title : str
        HyperSpy title (group ``Experiments/<title>``).

    Returns
    -------
    pathlib.Path
    """
    import warnings

    import dask.array as da
    import numcodecs
    import zarr
    from rsciio._hierarchical import version as hspy_version
    from rsciio.zspy._api import ZspyWriter

    path = Path(path)
    if path.suffix.lower() != ".zspy":
        raise ValueError(f"path={str(path)!r}: a HyperSpy zarr store must be named *.zspy")
    if getattr(data, "ndim", None) != 4:
        raise ValueError(f"data: expected (scan_y, scan_x, det_y, det_x), got shape {getattr(data, 'shape', None)}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"path={str(path)!r} exists; pass overwrite=True to replace it")
    if int(zarr.__version__.split(".")[0]) < 3:
        raise RuntimeError("write_zspy needs zarr >= 3 (zarr 2: use hyperspy's own signal.save(path))")
    lazy = data if isinstance(data, da.Array) else da.from_array(data, chunks=(1, -1, -1, -1))
    signal = _hspy_signal(lazy.shape, step, pixel_size, center, energy, semiangle, camera_length, data=lazy,
                          title=title)  # fmt: skip
    with atomic_tree(path) as stage:
        store = zarr.storage.LocalStore(stage)
        f = zarr.open_group(store=store, mode="w", zarr_format=2)
        f.attrs["file_format"] = "ZSpy"
        f.attrs["file_format_version"] = hspy_version
        expg = f.require_group("Experiments").require_group(title.replace("/", "-"))
        compressor = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)  # HyperSpy's default
        with warnings.catch_warnings():
            # rosettasciio calls zarr 2's Group.require_dataset, which zarr 3 keeps (same result) but deprecates
            warnings.filterwarnings("ignore", category=zarr.errors.ZarrDeprecationWarning)
            ZspyWriter(f, signal, expg, chunks=None, compressor=compressor, show_progressbar=False).write()
        zarr.consolidate_metadata(store)
    return path


def write_truth(f: h5py.File, truth: dict) -> None:
    """Store ground truth as an emdfile ``Metadata`` named ``truth`` in the datacube's metadata bundle.

    Parameters
    ----------
    f : h5py.File
        A file made by :func:`write_emd_header`.
    truth : dict[str, ndarray | str | float | int | bool]
        Maps (arrays, e.g. ``sro_peak`` [Å⁻¹]) and scalars/JSON strings; read back with
        ``h5py.File(path)[TRUTH_PATH]`` (arrays are datasets, scalars datasets of shape ()).
    """
    from emdfile import Metadata

    bad = sorted(k for k in truth if k.startswith(_NCEM_DATA_PREFIXES))
    if bad:
        raise ValueError(
            f"truth keys {bad}: rosettasciio's EMD reader loads every dataset whose name starts with one of "
            f"{_NCEM_DATA_PREFIXES} as a signal, so hs.load would fail on the file; rename them"
        )
    md = Metadata(name="truth")
    for k, v in truth.items():
        md[k] = v
    bundle = f[TRUTH_PATH.rsplit("/", 1)[0]]
    md.to_h5(bundle)


def read_truth(path) -> dict:
    """The ground truth of a synthetic scan file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict
        Arrays (``sro_peak`` [Å⁻¹], ``region``, ``fractions``, ``descan`` [px], …), scalars, and the JSON entries
        decoded (``region_names``, ``region_kinds``, ``sei_type1_models``, ``settings``, ``instrument``). Also reads
        files of the earlier layout (a top-level ``truth`` group with JSON attributes).
    """
    import json

    def plain(v):
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, np.ndarray) and v.dtype.kind == "S":
            return v.astype(str)
        return v

    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        g = f[TRUTH_PATH] if TRUTH_PATH in f else f.get("truth")
        if g is None:
            raise ValueError(f"{path}: no ground truth ({TRUTH_PATH}); is this a synthetic scan from simkit.synth?")
        for k, obj in g.items():
            if isinstance(obj, h5py.Dataset):
                out[k] = plain(obj[()])
        for k, v in g.attrs.items():
            if k not in ("emd_group_type", "python_class"):
                out[k] = plain(v)
    for k in ("region_names", "region_kinds", "sei_type1_models", "settings", "instrument"):
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out


# ---------------------------------------------------------------------------------------------------------------
# emdfile plug-in: the class names py4DSTEM writes, for sessions without py4DSTEM
class DataCube(emdfile.Array):
    """What ``emdfile.read`` returns for a ``python_class='DataCube'`` group when py4DSTEM is not imported.

    An emdfile ``Array``: ``data`` (Rx, Ry, Qx, Qy) = (scan_y, scan_x, det_y, det_x) [counts] and the dim vectors
    stored in the file (R [Å], Q = 1/d [Å⁻¹] about the direct beam). py4DSTEM's own class replaces it whenever
    py4DSTEM is imported.
    """

    @property
    def calibration(self):
        """The root's :class:`Calibration` (py4DSTEM's place for it), or None."""
        root = self.root
        if root is None or "calibration" not in root.metadata:
            return None
        return root.metadata["calibration"]


class Calibration(emdfile.Metadata):
    """What emdfile makes of a ``python_class='Calibration'`` metadata group when py4DSTEM is not imported.

    An emdfile ``Metadata`` (``cal["Q_pixel_size"]`` [Å⁻¹/px], ``cal["R_pixel_size"]`` [Å], ``qx0_mean``/``qy0_mean``
    [px], ``convergence_semiangle_mrad`` [mrad], ``beam_energy_eV`` [eV], ``camera_length_mm`` [mm]).
    """


#: The py4DSTEM class names this module stands in for.
_STAND_INS = ("DataCube", "Calibration")


def _other_provider() -> bool:
    """True when another imported emdfile plug-in (py4DSTEM) defines one of :data:`_STAND_INS`."""
    me = sys.modules.get(__name__)
    for mod in list(sys.modules.values()):
        d = getattr(mod, "__dict__", None)
        if mod is me or not isinstance(d, dict) or d.get("_emd_hook") is not True:
            continue
        if any(isinstance(d.get(n), type) for n in _STAND_INS):
            return True
    return False


def __getattr__(name: str):
    # emdfile looks for modules whose ``_emd_hook`` is True at every read and takes their Node/Metadata classes;
    # computed, so that this module stands aside when py4DSTEM (or another provider of the names) is imported
    if name == "_emd_hook":
        return not _other_provider()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
