"""Read measured 4D-STEM (SEND) scans into a :class:`Scan`: lazy 4D data plus calibration and metadata.

Supported formats (see :data:`SUPPORTED_FORMATS`):

* **EMD 1.0 / HDF5** (``.h5``, ``.hdf5``, ``.emd``): the emdfile/py4DSTEM layout — root attributes
  ``emd_group_type='file'``, ``version_major=1``, ``version_minor=0``; a group with ``emd_group_type='array'``
  (or 1) holding a 4-D ``data`` dataset ``(Rx, Ry, Qx, Qy)`` = ``(scan_y, scan_x, det_y, det_x)`` and
  ``dim0..dim3`` datasets (at least two values each; attributes ``name`` and ``units``). Calibrations are
  taken from the dims (``dim0``/``dim1`` spacing with units Å/A or nm → ``step`` [Å]; ``dim2``/``dim3``
  spacing with units A^-1/Å⁻¹ or nm^-1 → ``pixel_size`` [Å⁻¹]; "pixels" means unknown) and from scalar
  entries of the datacube's metadata groups or attributes (our own layout, written by ``simkit.synth``):
  ``energy`` [eV] (also ``beam_energy``, ``energy_eV``, ``accelerating_voltage`` [V]), ``semiangle`` [mrad]
  (also ``semiangle_mrad``, ``convergence_semiangle_mrad``, ``convergence_semiangle``), ``step`` [Å]
  (also ``R_pixel_size`` with ``R_pixel_units``), ``pixel_size`` [Å⁻¹] (also ``Q_pixel_size`` with
  ``Q_pixel_units``, py4DSTEM). Dectris/Arina master files (HDF5 without EMD attributes, with ``/entry``)
  are read through rosettasciio.
* **NumPy** ``.npy``: memory-mapped; calibrations must be given as arguments.
* **HyperSpy** ``.hspy`` / ``.zspy`` (rosettasciio; also a HyperSpy file named ``.h5``/``.hdf5``, recognised by
  its ``file_format='HyperSpy'`` attribute; a file that is also EMD 1.0 — as written by :mod:`simkit.emd` — is read
  through its EMD tree, whatever its name); navigation axes → scan, signal axes → detector.
* Through **rosettasciio** (≥ 0.15): Quantum Detectors Merlin ``.mib`` (with its ``.hdr``; the file does not store
  the scan shape — give ``scan_shape`` — and may hold ``flyback`` extra frames per scan row, which are dropped),
  Gatan ``.dm4``/``.dm3``, EMPAD ``.xml`` (+ ``.raw``), FEI/Thermo Fisher TIA ``.emi``/``.ser``, Dectris Arina
  ``.h5`` (needs hdf5plugin), prismatic EMD (an EMD 0.x file with a top-level ``4DSTEM_simulation`` group;
  sei-send's EMD 1.0 files carry one only as HyperSpy's view of their datacube; Q axes in mrad are converted with
  the beam energy ``E0`` of its simulation parameters).
* **Other layouts**: EMD 0.x (e.g. fpd/pixstem: ``emd_group_type=1``, dims ``dim1..dim4``), plain HDF5 with one 3-D
  or 4-D dataset, and single 2-D frames (any reader), which become a 1 × 1 scan. A 3-D stack of frames needs
  ``scan_shape``.

Every calibration found is named in ``Scan.metadata["calibration"]``: ``{name: {"value", "units", "source"}}`` for
``step`` [Å], ``pixel_size`` [Å⁻¹/px], ``energy`` [eV], ``semiangle`` [mrad] and, when the file has them,
``camera_length`` [mm] and ``center`` (direct-beam position [px]). A calibration field that is present but not
a positive number (or has units that cannot be converted) raises a ValueError naming the file and the field,
unless the same calibration is given as an argument.

Calibrations given as arguments to :func:`load_scan` override those read from the file. A calibration that
is not known is None; functions that need it call :meth:`Scan.require`, which raises a ValueError naming the
parameter to give.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from structures.checks import check_positive

__all__ = ["CONVERT_FORMATS", "SUPPORTED_FORMATS", "Scan", "convert_scan", "load_scan"]

#: Suffix → format name of every supported input.
SUPPORTED_FORMATS: dict[str, str] = {
    ".h5": "EMD 1.0 / HDF5 (emdfile, py4DSTEM, sei-send) or Dectris Arina master file (rosettasciio)",
    ".hdf5": "EMD 1.0 / HDF5",
    ".emd": "EMD 1.0 / HDF5",
    ".npy": "NumPy array (memory-mapped)",
    ".mib": "Quantum Detectors Merlin (rosettasciio; give scan_shape, flyback)",
    ".dm4": "Gatan DigitalMicrograph 4 (rosettasciio)",
    ".dm3": "Gatan DigitalMicrograph 3 (rosettasciio)",
    ".xml": "EMPAD .xml + .raw (rosettasciio)",
    ".hspy": "HyperSpy HDF5 (rosettasciio; sei-send's own files through their EMD tree)",
    ".zspy": "HyperSpy zarr (rosettasciio)",
    ".emi": "FEI/Thermo Fisher TIA .emi + .ser (rosettasciio)",
    ".ser": "FEI/Thermo Fisher TIA .ser (rosettasciio)",
}

_UNITS_LENGTH = {"a": 1.0, "å": 1.0, "angstrom": 1.0, "ang": 1.0, "nm": 10.0, "pm": 0.01, "µm": 1e4, "um": 1e4}
_UNITS_RECIP = {
    "a^-1": 1.0,
    "å^-1": 1.0,
    "å⁻¹": 1.0,
    "1/a": 1.0,
    "1/å": 1.0,
    "a-1": 1.0,
    "nm^-1": 0.1,
    "1/nm": 0.1,
    "nm-1": 0.1,
    "nm⁻¹": 0.1,
    "1/m": 1e-10,
    "m^-1": 1e-10,
}
_UNITS_LENGTH.update({"m": 1e10, "mm": 1e7})


def _norm_units(u) -> str:
    """Lower-case units without spaces, brackets or underscores: '1 / Å' → '1/å', '[n_m]' → 'nm'."""
    if isinstance(u, bytes):
        u = u.decode(errors="replace")
    return str(u or "").strip().lower().replace(" ", "").replace("[", "").replace("]", "").replace("_", "")


@dataclass(frozen=True, kw_only=True, eq=False)
class Scan:
    """A 4D-STEM scan: lazy data plus calibration.

    Attributes
    ----------
    data : array-like, shape (scan_y, scan_x, det_y, det_x)  [counts]
        h5py dataset, NumPy memmap/array or dask array (never loaded whole by this module).
    step : float or None  [Å]
        Scan step (assumed equal along y and x; ``metadata['step_yx']`` keeps both when they differ).
    pixel_size : float or None  [Å⁻¹/px]
        Detector pixel size in Q = 1/d.
    energy : float or None  [eV]
        Beam energy.
    semiangle : float or None  [mrad]
        Probe convergence semi-angle.
    metadata : dict
        Raw metadata read from the file (flattened ``path/key`` → value) and the reader used.
    path : str or None
        File the scan was read from.
    """

    data: Any
    step: float | None = None
    pixel_size: float | None = None
    energy: float | None = None
    semiangle: float | None = None
    metadata: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(scan_y, scan_x, det_y, det_x)``."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def scan_shape(self) -> tuple[int, int]:
        """``(scan_y, scan_x)`` [positions]."""
        return self.shape[:2]

    @property
    def detector_shape(self) -> tuple[int, int]:
        """``(det_y, det_x)`` [px]."""
        return self.shape[2:]

    def require(self, name: str) -> float:
        """Return a calibration or raise a ValueError that names the parameter to give.

        Parameters
        ----------
        name : {"step", "pixel_size", "energy", "semiangle"}

        Returns
        -------
        float
            ``step`` [Å], ``pixel_size`` [Å⁻¹/px], ``energy`` [eV] or ``semiangle`` [mrad].
        """
        hint = {
            "step": "pass step=<scan step in Å> to load_scan (e.g. step=40.0 for 4 nm)",
            "pixel_size": "pass pixel_size=<Å⁻¹ per px> to load_scan or calibrate it with "
            "fitting.calibrate.calibrate_q (known reflections) or pixel_size_from_camera",
            "energy": "pass energy=<beam energy in eV> to load_scan (e.g. 300e3)",
            "semiangle": "pass semiangle=<probe semi-angle in mrad> to load_scan (e.g. 2.0)",
        }
        if name not in hint:
            raise ValueError(f"name={name!r}: one of {tuple(hint)}")
        v = getattr(self, name)
        if v is None:
            src = self.path or "this scan"
            raise ValueError(f"missing calibration {name!r}: {src} does not record it; {hint[name]}")
        return float(v)

    def with_calibration(self, **kwargs) -> Scan:
        """Copy with calibrations replaced (``step`` [Å], ``pixel_size`` [Å⁻¹], ``energy`` [eV], ``semiangle``
        [mrad])."""
        for k, v in kwargs.items():
            if k not in ("step", "pixel_size", "energy", "semiangle"):
                raise TypeError(f"with_calibration got {k!r}: expected step, pixel_size, energy or semiangle")
            kwargs[k] = _positive(k, v)
        return replace(self, **kwargs)


#: Units of the calibration fields, for error messages.
_CALIBRATION_UNITS = {"step": "Å", "pixel_size": "Å⁻¹/px", "energy": "eV", "semiangle": "mrad"}


def _positive(name: str, v) -> float | None:
    return None if v is None else check_positive(name, v, _CALIBRATION_UNITS.get(name, ""))


def _supported_list() -> str:
    return "; ".join(f"{k} ({v})" for k, v in SUPPORTED_FORMATS.items())


def load_scan(
    path: str | os.PathLike,
    lazy: bool = True,
    *,
    scan_shape: tuple[int, int] | None = None,
    flyback: int = 0,
    flyback_position: str = "start",
    step: float | None = None,
    pixel_size: float | None = None,
    energy: float | None = None,
    semiangle: float | None = None,
    dataset: str | None = None,
) -> Scan:
    """Open a 4D-STEM scan file.

    Parameters
    ----------
    path : str or PathLike
        File to read; the format follows its suffix (:data:`SUPPORTED_FORMATS`).
    lazy : bool
        Keep the data on disk (h5py dataset, memmap or dask array). With False the data are read into memory.
    scan_shape : tuple of int or None  [positions]
        ``(scan_y, scan_x)`` of the recorded scan *without* flyback frames. Required for Merlin ``.mib`` files of
        more than one frame (they do not store it) and for any file holding a 3-D stack of frames (``.npy``, HDF5,
        rosettasciio formats), which it reshapes. A single 2-D frame is read as a 1 × 1 scan.
    flyback : int
        Extra frames per scan row (Merlin with flyback); they are dropped.
    flyback_position : {"start", "end"}
        Whether the flyback frames are the first or the last frames of each row.
    step : float or None  [Å]
        Scan step; overrides the file.
    pixel_size : float or None  [Å⁻¹/px]
        Detector pixel size (Q = 1/d); overrides the file.
    energy : float or None  [eV]
        Beam energy; overrides the file.
    semiangle : float or None  [mrad]
        Probe convergence semi-angle; overrides the file.
    dataset : str or None
        HDF5 path of the EMD array group (or data set) to read when a file holds several 4-D arrays.

    Returns
    -------
    Scan
        ``metadata["calibration"]`` names every calibration found, its units and its source in the file.

    Raises
    ------
    ValueError
        Unsupported suffix (the message lists the supported formats), a truncated/corrupt file, a codec this
        session cannot decode (named, with the fix), a file without 2-D to 4-D data, bad ``scan_shape``/
        ``flyback``, non-positive calibration arguments, a malformed calibration field in the file (named, unless
        the same calibration is given as an argument).
    FileNotFoundError
        The file does not exist.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_FORMATS:
        raise ValueError(
            f"path={str(path)!r}: unsupported format {suffix or '(no suffix)'!r}; supported: {_supported_list()}"
        )
    if not p.exists():
        raise FileNotFoundError(f"path={str(path)!r}: no such file")
    over = {
        "step": _positive("step", step),
        "pixel_size": _positive("pixel_size", pixel_size),
        "energy": _positive("energy", energy),
        "semiangle": _positive("semiangle", semiangle),
    }
    if scan_shape is not None:
        try:
            scan_shape = tuple(int(s) for s in scan_shape)
        except TypeError:
            raise TypeError(f"scan_shape={scan_shape!r}: expected (scan_y, scan_x) [positions]") from None
        if len(scan_shape) != 2 or min(scan_shape) < 1:
            raise ValueError(f"scan_shape={scan_shape!r}: expected two positive ints (scan_y, scan_x)")
    if isinstance(flyback, bool) or not isinstance(flyback, (int, np.integer)) or flyback < 0:
        raise ValueError(f"flyback={flyback!r}: must be a non-negative integer number of frames per scan row")
    if flyback_position not in ("start", "end"):
        raise ValueError(f"flyback_position={flyback_position!r}: must be 'start' or 'end'")

    if suffix in (".h5", ".hdf5", ".emd") or (suffix == ".hspy" and _is_emd1(p)):
        scan = _read_hdf5(p, lazy, dataset, scan_shape)
    elif suffix == ".npy":
        scan = _read_npy(p, lazy)
    else:
        scan = _read_rsciio(p, suffix, lazy, scan_shape, flyback)
    try:
        return _finish(scan, p, lazy, scan_shape, flyback, flyback_position, over)
    except BaseException:
        f = getattr(scan.data, "file", None)  # an h5py dataset: close its file (nothing left open on errors)
        if f is not None and hasattr(f, "close"):
            f.close()
        raise


def _finish(scan: Scan, p: Path, lazy, scan_shape, flyback, flyback_position, over) -> Scan:
    """Check and shape what a reader returned: malformed calibrations, single frames, stacks, flyback."""
    mrad = scan.metadata.get("_pixel_size_mrad")
    energy = over.get("energy") or scan.energy
    if mrad is not None and energy and over.get("pixel_size") is None:  # an angular pixel size: θ/λ, Q = 1/d
        from structures.checks import mrad_to_q

        scan = replace(scan, pixel_size=mrad_to_q(mrad[0], energy))
        scan.metadata.setdefault("calibration", {})["pixel_size"] = {
            "value": scan.pixel_size, "units": _CAL_UNITS["pixel_size"],
            "source": f"{mrad[1]} [mrad] / λ({energy:.0f} eV)",
        }  # fmt: skip
        scan.metadata["_bad"] = [b for b in scan.metadata.get("_bad", []) if b[0] != "pixel_size"]
    for name, msg in scan.metadata.get("_bad", []):
        if over.get(name) is None:
            raise ValueError(msg)

    data = scan.data
    if data.ndim == 2:  # a single frame: a 1 × 1 scan
        data = data[None, None]
        scan.metadata["single_frame"] = True
    if data.ndim == 3:
        if scan_shape is None:
            raise ValueError(
                f"{p.name}: holds a stack of {data.shape[0]} frames without a scan shape; pass "
                "scan_shape=(scan_y, scan_x) (without flyback frames) and flyback=<frames per row>"
            )
        data = _reshape_stack(data, scan_shape, flyback, p.name, flyback_position)
        flyback_done = True
    else:
        flyback_done = scan.metadata.get("_flyback_done", False)
    if data.ndim != 4:
        raise ValueError(f"{p.name}: data have shape {data.shape}; expected 4-D (scan_y, scan_x, det_y, det_x)")
    if flyback and not flyback_done:
        nx = data.shape[1] - flyback
        if nx < 1:
            raise ValueError(f"flyback={flyback}: more than the {data.shape[1]} frames per row")
        data = data[:, flyback:] if flyback_position == "start" else data[:, :nx]
    if scan_shape is not None and tuple(data.shape[:2]) != scan_shape:
        raise ValueError(
            f"scan_shape={scan_shape}: the file holds a scan of {tuple(data.shape[:2])} positions "
            f"(after dropping {flyback} flyback frames per row)"
        )
    if min(data.shape) < 1:
        raise ValueError(f"{p.name}: empty data of shape {data.shape}")
    if not lazy:
        data = np.asarray(data[()] if hasattr(data, "id") else data)
        if hasattr(data, "compute"):
            data = data.compute()
    md = {k: v for k, v in scan.metadata.items() if not k.startswith("_")}
    kw = {k: (v if v is not None else getattr(scan, k)) for k, v in over.items()}
    named = dict(md.get("calibration", {}))
    for k, v in over.items():
        if v is not None:
            named[k] = {"value": v, "units": _CAL_UNITS[k], "source": "load_scan argument (overrides the file)"}
    md["calibration"] = named
    return Scan(data=data, metadata=md, path=str(p), **kw)


def _reshape_stack(data, scan_shape, flyback, name, position):
    ny, nx = scan_shape
    n_exp = ny * (nx + flyback)
    if data.shape[0] != n_exp:
        raise ValueError(
            f"scan_shape={scan_shape}, flyback={flyback}: expects {n_exp} frames but {name} holds {data.shape[0]}"
        )
    if not hasattr(data, "reshape"):  # an h5py dataset: reshape lazily through dask, one frame per chunk
        import dask.array as da

        data = da.from_array(data, chunks=(1, *data.shape[1:]))
    d = data.reshape((ny, nx + flyback) + tuple(data.shape[1:]))
    if not flyback:
        return d
    return d[:, flyback:] if position == "start" else d[:, :nx]


# ---------------------------------------------------------------------------------------------------------------
# calibration bookkeeping
_CAL_UNITS = {
    "step": "Å",
    "pixel_size": "Å⁻¹/px (Q = 1/d)",
    "energy": "eV",
    "semiangle": "mrad",
    "camera_length": "mm",
    "center": "px (det_y, det_x)",
}


class _Cal:
    """Calibrations found in a file: value, units and where each came from; malformed fields kept for errors."""

    def __init__(self, fname: str):
        self.fname = fname
        self.mrad_pixel = None
        self.found: dict[str, dict] = {}
        self.bad: list[tuple[str, str]] = []

    def set(self, name, value, source, *, override=True):
        if name in self.found and not override:
            return
        self.found[name] = {"value": value, "units": _CAL_UNITS[name], "source": source}

    def number(self, name, raw, source, *, scale=1.0, override=True):
        """Record a positive number, or a malformed-field error naming the file and the field."""
        try:
            v = float(raw.decode() if isinstance(raw, bytes) else raw) * scale
        except (TypeError, ValueError):
            v = None
        if v is None or not np.isfinite(v) or v <= 0:
            self.bad.append(
                (name, f"{self.fname}: metadata field {source!r} = {raw!r} is not a valid {name} (a positive number, "
                 f"[{_CAL_UNITS[name]}] after conversion); fix the file or pass {name}=... to load_scan")
            )  # fmt: skip
            return
        self.set(name, v, source, override=override)

    def mrad(self, value, source):
        """A detector pixel size in mrad: converted to Å⁻¹ once the beam energy is known (file or argument)."""
        self.mrad_pixel = (float(value), source)
        self.bad_units("pixel_size", "mrad", source)

    def bad_units(self, name, units, source):
        need = " without the beam energy (pass energy=...)" if units == "mrad" else ""
        self.bad.append(
            (name, f"{self.fname}: metadata field {source!r} has units {units!r} that cannot be converted to "
             f"{_CAL_UNITS[name]}{need}; fix the file or pass {name}=... to load_scan")
        )  # fmt: skip

    def values(self) -> dict:
        out = {k: None for k in ("step", "pixel_size", "energy", "semiangle")}
        for k in out:
            if k in self.found:
                out[k] = float(self.found[k]["value"])
        # a calibration that is malformed is not used even if a fallback source named it
        for k, _ in self.bad:
            if k in out:
                out[k] = None
        return out

    def into(self, md: dict) -> None:
        md["calibration"] = self.found
        md["_bad"] = self.bad
        if getattr(self, "mrad_pixel", None) is not None:
            md["_pixel_size_mrad"] = self.mrad_pixel


#: Units that mean "not calibrated" on an axis (no error, no calibration).
_PLACEHOLDER_UNITS = ("", "<undefined>", "undefined", "pixels", "pixel", "px", "t.b.d.", "none")


def _uncalibrated(md: dict, field: str, units: str) -> None:
    """Note an axis whose units are neither a calibration nor a placeholder (``metadata['uncalibrated_units']``)."""
    note = f"{field}: {units!r}"
    md["uncalibrated_units"] = f"{md['uncalibrated_units']}; {note}" if md.get("uncalibrated_units") else note


def _scan_axis_units(units: str, field: str, cal: _Cal, md: dict) -> None:
    """A scan axis whose units are not a length: an angle or reciprocal length is the wrong kind (an error naming the
    field, as for a length on a detector axis); other units (a time series, "a.u.") leave the step uncalibrated."""
    if units in _UNITS_RECIP or units == "mrad":
        cal.bad_units("step", units, field)
    elif units not in _PLACEHOLDER_UNITS:
        _uncalibrated(md, field, units)


def _q_scale(units: str, energy: float | None):
    """Å⁻¹ per unit of a detector axis: reciprocal length, or an angle in mrad (needs the beam energy [eV])."""
    if units in _UNITS_RECIP:
        return _UNITS_RECIP[units]
    if units == "mrad" and energy:
        from structures.checks import mrad_to_q

        return mrad_to_q(1.0, energy)
    return None


# ---------------------------------------------------------------------------------------------------------------
# HDF5 / EMD 1.0
def _attr(obj, key, default=None):
    v = obj.attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.item()
    return v


#: Output suffix → what :func:`convert_scan` writes there.
CONVERT_FORMATS: dict[str, str] = {
    ".emd": "EMD 1.0 (py4DSTEM, emdfile; hs.load without reader=)",
    ".h5": "EMD 1.0 (py4DSTEM, emdfile; hs.load(path, file_format='hspy'))",
    ".hspy": "EMD 1.0 file with its HyperSpy tree, named for hs.load",
    ".zspy": "HyperSpy zarr directory (rosettasciio's zspy writer)",
}


def convert_scan(scan: Scan, path, *, compression: str | None = "lzf", overwrite: bool = False) -> Path:
    """Write a scan with its calibrations in a format that py4DSTEM / emdfile / HyperSpy open as they are.

    Parameters
    ----------
    scan : Scan
        From :func:`load_scan` (any readable format); ``step`` [Å] and ``pixel_size`` [Å⁻¹/px] must be known
        (give them to ``load_scan``). The direct-beam centre [px] and camera length [mm] are taken from
        ``scan.metadata["calibration"]`` when recorded (centre otherwise: the detector's middle pixel).
    path : path-like
        Output; the suffix picks the format (:data:`CONVERT_FORMATS`).
    compression : {"lzf", "blosc-lz4", None}
        Codec of the EMD patterns (:data:`simkit.emd.COMPRESSIONS`; ignored for ``.zspy``).
    overwrite : bool
        Replace an existing output.

    Returns
    -------
    pathlib.Path
        The file (or ``.zspy`` directory), complete: written under a temporary name and renamed.
    """
    import h5py

    from simkit.atomic import atomic_path
    from simkit.emd import write_emd_header, write_zspy
    from simkit.geometry import DetectorGeometry

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONVERT_FORMATS:
        raise ValueError(f"path={str(path)!r}: output suffix {suffix!r} unknown; one of {sorted(CONVERT_FORMATS)}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    step, pixel_size = scan.require("step"), scan.require("pixel_size")
    cal = scan.metadata.get("calibration", {})
    center = cal.get("center", {}).get("value")
    camera_length = cal.get("camera_length", {}).get("value")
    geom = DetectorGeometry(shape=scan.detector_shape, pixel_size=pixel_size,
                            center=None if center is None else tuple(float(c) for c in center))  # fmt: skip
    kw = dict(energy=scan.energy, semiangle=scan.semiangle, camera_length=camera_length)
    if suffix == ".zspy":
        return write_zspy(path, scan.data, step=step, pixel_size=pixel_size, center=geom.center, overwrite=True, **kw)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = write_emd_header(f, scan.scan_shape, geom, step, dtype=scan.data.dtype, compression=compression, **kw)
        for r in range(scan.scan_shape[0]):  # one scan row at a time: never the whole scan in memory
            ds[r] = np.asarray(scan.data[r])
    return path


def _is_emd1(p: Path) -> bool:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            return _attr(f, "emd_group_type") == "file" and int(_attr(f, "version_major", -1)) >= 1
    except (OSError, ValueError, TypeError):
        return False


def _register_filters() -> None:
    try:  # registers the Blosc/LZ4/bitshuffle filters (simkit.emd's "blosc-lz4", Dectris files) with h5py
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass


def _read_hdf5(p: Path, lazy: bool, dataset: str | None, scan_shape) -> Scan:
    import h5py

    _register_filters()
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise ValueError(f"{p.name}: cannot open as HDF5 — the file is truncated or corrupt ({e})") from None
    try:
        is_emd = _attr(f, "emd_group_type") == "file"
        if dataset is None and not is_emd and "entry" in f:
            f.close()
            return _read_rsciio(p, ".arina", lazy, scan_shape, 0)
        if dataset is None and not is_emd and "4DSTEM_simulation" in f:  # prismatic (EMD 0.x): rosettasciio reads it
            f.close()
            return _read_rsciio(p, ".prismatic", lazy, scan_shape, 0)
        if dataset is None and not is_emd and _attr(f, "file_format") == "HyperSpy":  # .hspy saved as .h5/.hdf5
            f.close()
            return _read_rsciio(p, ".hspy", lazy, scan_shape, 0)
        group, dset = _find_datacube(f, dataset, p.name)
        md: dict[str, Any] = {"reader": "emd" if is_emd else "hdf5", "hdf5_path": dset.name}
        if is_emd:
            md["emd_version"] = f"{_attr(f, 'version_major')}.{_attr(f, 'version_minor')}"
        for k, v in f.attrs.items():
            md[f"file/{k}"] = _plain(v)
        if group is not None:
            _collect_metadata(group, md, prefix="")
            root = group.parent
            while root.name != "/" and "metadatabundle" not in root and root.parent.name != root.name:
                root = root.parent
            if root is not group and "metadatabundle" in root:  # py4DSTEM: the Calibration lives in the root
                _collect_metadata(root["metadatabundle"], md, prefix=f"{root.name.strip('/')}/metadatabundle/")
        cal = _Cal(p.name)
        skip = _extra_axis(dset)
        _calibration_from_emd(group, md, cal, skip)
        cal.into(md)
        msg = _check_readable(p, dset)
        if msg:
            raise ValueError(msg)
        data = dset if skip is None else _squeezed(dset)
        if skip is not None:
            md["squeezed_axis"] = skip
        return Scan(data=data, metadata=md, path=str(p), **cal.values())
    except Exception:
        f.close()
        raise


def _check_readable(p: Path, dset) -> str | None:
    """None, or why the data cannot be read (a codec this session lacks; a truncated file)."""
    from simkit.emd import codec_error

    msg = codec_error(p.name, dset)
    if msg:
        return msg
    if dset.ndim >= 3:
        # touch the last frame so that a truncated file fails here rather than deep inside an analysis
        try:
            dset[tuple(s - 1 for s in dset.shape[: dset.ndim - 2])]
        except (OSError, ValueError) as e:
            return f"{p.name}: reading the data failed — the file is truncated or corrupt ({e})"
    return None


def _plain(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.size <= 16:
        return [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v.tolist()]
    return v


def _find_datacube(f, dataset, name):
    import h5py

    if dataset is not None:
        if dataset not in f:
            raise ValueError(f"dataset={dataset!r}: not in {name}")
        obj = f[dataset]
        if isinstance(obj, h5py.Dataset):
            return obj.parent, obj
        if "data" not in obj:
            raise ValueError(f"dataset={dataset!r}: group has no 'data' array")
        return obj, obj["data"]
    found = []

    def visit(nm, obj):
        if isinstance(obj, h5py.Group) and _attr(obj, "emd_group_type") in ("array", 1, "1"):
            d = obj.get("data")
            if isinstance(d, h5py.Dataset) and (d.ndim in (2, 3, 4) or _extra_axis(d) is not None):
                found.append((obj, d))

    f.visititems(visit)
    if not found:  # plain HDF5: any 4-D dataset, else one 3-D stack
        plain: dict[int, list] = {3: [], 4: []}
        f.visititems(
            lambda nm, o: plain[o.ndim].append(o) if isinstance(o, h5py.Dataset) and o.ndim in (3, 4) else None
        )
        cands = plain[4] or plain[3]
        if len(cands) == 1:
            return cands[0].parent, cands[0]
        raise ValueError(
            f"{name}: no EMD array group with 2-D to 4-D 'data' found"
            + (f" and {len(cands)} {cands[0].ndim}-D datasets; choose one with dataset=" if cands else "")
        )
    # detector frames (last two axes ≥ 8 px) beat per-position scalars and spectra (fpd: DAC, Threshold, …)
    frames = [x for x in found if min(x[1].shape[-2:]) >= 8] or found
    rank = max(_rank(d) for _, d in frames)
    four = [x for x in frames if _rank(x[1]) == rank]
    if len(four) > 1:
        named = [x for x in four if x[0].name.rsplit("/", 1)[-1] == "datacube"]
        if len(named) == 1:
            return named[0]
        raise ValueError(f"{name}: several {rank}-D arrays {[g.name for g, _ in four]}; choose one with dataset=")
    return four[0]


def _extra_axis(d) -> int | None:
    """The length-1 axis of a 5-D (scan_y, scan_x, 1, det_y, det_x) array (fpd's colour axis), or None."""
    if getattr(d, "ndim", 0) == 5 and d.shape[2] == 1:
        return 2
    return None


def _rank(d) -> int:
    return d.ndim - (_extra_axis(d) is not None)


def _squeezed(dset):
    """A lazy 4-D view of a 5-D dataset with a length-1 third axis (dask, one frame per chunk)."""
    import dask.array as da

    return da.from_array(dset, chunks=(1, 1, 1, *dset.shape[-2:]))[:, :, 0]


def _collect_metadata(group, md, prefix):
    import h5py

    for k, v in group.attrs.items():
        md[f"{prefix}{k}"] = _plain(v)
    for k, obj in group.items():
        if isinstance(obj, h5py.Group):
            if k == "truth" and group.name.endswith("metadatabundle"):
                continue  # a synthetic scan's ground truth (simkit.emd.read_truth), not acquisition metadata
            _collect_metadata(obj, md, prefix=f"{prefix}{k}/")
        elif isinstance(obj, h5py.Dataset) and k != "data" and obj.size <= 16:
            md[f"{prefix}{k}"] = _plain(obj[()])
            if k.startswith("dim"):
                for a, av in obj.attrs.items():
                    md[f"{prefix}{k}.{a}"] = _plain(av)


def _dims(group, skip: int | None = None):
    """The four dim datasets (EMD 1.0: dim0..dim3; EMD 0.x: dim1..dim4; ``skip``: an axis dropped), or None."""
    if group is None:
        return None
    for first in (0, 1):
        names = [f"dim{first + i}" for i in range(5 if skip is not None else 4)]
        if skip is not None:
            del names[skip]
        if all(n in group for n in names[:2]):
            return [group.get(n) for n in names]
    return None


def _dim_spacing(d):
    if d is None:
        return None, None
    try:
        v = np.asarray(d[()], dtype=float).ravel()
    except (TypeError, ValueError):  # text labels (EMD 0.x files such as fpd name their axes): no calibration
        return None, None
    if v.size < 2 or not np.isfinite(v[1] - v[0]) or v[1] == v[0]:
        return None, None
    return abs(float(v[1] - v[0])), _norm_units(_attr(d, "units", ""))


def _find_key(md, names):
    """(key, raw value) of the first metadata entry whose last path element is one of ``names`` (lower case)."""
    for key, val in md.items():
        leaf = key.rsplit("/", 1)[-1].lower()
        if leaf in names and not isinstance(val, (bool, list, dict)) and val is not None and val != "_None":
            return key, val
    return None, None


_NAMES = {
    "step": {"step", "step_a", "scan_step"},
    "pixel_size": {"pixel_size", "pixel_size_inv_a", "q_pixel_size_inv_a"},
    "energy": {"energy", "energy_ev", "beam_energy", "beam_energy_ev", "accelerating_voltage", "e0"},
    "semiangle": {
        "semiangle", "semiangle_mrad", "convergence_semiangle_mrad", "convergence_semiangle", "probe_semiangle_mrad",
        "convergence_angle",
    },
    "camera_length": {"camera_length", "camera_length_mm"},
}  # fmt: skip


def _calibration_from_emd(group, md, cal: _Cal, skip: int | None = None) -> None:
    # explicit metadata first (ours, py4DSTEM's Calibration, others'), then the dim vectors
    for name in ("energy", "semiangle", "camera_length", "step", "pixel_size"):
        k, v = _find_key(md, _NAMES[name])
        if k is None:
            continue
        if name == "energy":
            try:
                fv = float(v)
            except (TypeError, ValueError):
                fv = None
            cal.number(name, v, k, scale=1e3 if fv is not None and 0 < fv < 1e3 else 1.0)  # < 1000: kV / keV
        else:
            cal.number(name, v, k)
    if "pixel_size" not in cal.found:
        k, v = _find_key(md, {"q_pixel_size"})
        if k is not None:
            uk = k[: -len("Q_pixel_size")] + "Q_pixel_units"
            u = _norm_units(md.get(uk, "A^-1"))
            if u not in ("pixels", "px"):
                sc = _q_scale(u, cal.values()["energy"])
                if sc is not None:
                    cal.number("pixel_size", v, k, scale=sc)
                elif u == "mrad":
                    cal.mrad(v, k)
                else:
                    cal.bad_units("pixel_size", u, uk)
    if "step" not in cal.found:
        k, v = _find_key(md, {"r_pixel_size"})
        if k is not None:
            uk = k[: -len("R_pixel_size")] + "R_pixel_units"
            u = _norm_units(md.get(uk, "A"))
            if u in _UNITS_LENGTH:
                cal.number("step", v, k, scale=_UNITS_LENGTH[u])
            elif u not in ("pixels", "px"):
                cal.bad_units("step", u, uk)
    dims = _dims(group, skip)
    if dims is not None:
        sy, uy = _dim_spacing(dims[0])
        sx, ux = _dim_spacing(dims[1])
        if sy is not None and uy in _UNITS_LENGTH:
            cal.set("step", sy * _UNITS_LENGTH[uy], f"{dims[0].name} [{uy}]", override=False)
            if sx is not None and ux in _UNITS_LENGTH:
                md["step_yx"] = (sy * _UNITS_LENGTH[uy], sx * _UNITS_LENGTH[ux])
        elif sy is not None and "step" not in cal.found:
            _scan_axis_units(uy, f"{dims[0].name}.units", cal, md)
        qy, uq = _dim_spacing(dims[2]) if dims[2] is not None else (None, None)
        if qy is not None and uq not in ("", "pixels", "px", "pixel"):
            sc = _q_scale(uq, cal.values()["energy"])
            if sc is not None:
                cal.set("pixel_size", qy * sc, f"{dims[2].name} [{uq}]", override=False)
            elif "pixel_size" not in cal.found:
                if uq == "mrad":
                    cal.mrad(qy, f"{dims[2].name}")
                elif uq in _UNITS_LENGTH:  # a length on a detector axis: wrong kind, not merely unknown
                    cal.bad_units("pixel_size", uq, f"{dims[2].name}.units")
                else:  # a placeholder ("?/m", "a.u."): uncalibrated
                    _uncalibrated(md, dims[2].name, uq)
    kx, vx = _find_key(md, {"qx0_mean"})
    ky, vy = _find_key(md, {"qy0_mean"})
    if kx is not None and ky is not None:
        cal.set("center", (float(vx), float(vy)), f"{kx}, {ky} (py4DSTEM origin: Qx = det_y, Qy = det_x)")
    elif "center" in md and isinstance(md["center"], list) and len(md["center"]) == 2:
        cal.set("center", tuple(float(c) for c in md["center"]), "center")


# ---------------------------------------------------------------------------------------------------------------
# .npy
def _read_npy(p: Path, lazy: bool) -> Scan:
    try:
        arr = np.load(p, mmap_mode="r" if lazy else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{p.name}: cannot read as .npy — the file is truncated or corrupt ({e})") from None
    if arr.ndim not in (2, 3, 4):
        raise ValueError(
            f"{p.name}: array of shape {arr.shape}; expected (scan_y, scan_x, det_y, det_x), a stack of frames or "
            "one frame"
        )
    return Scan(data=arr, metadata={"reader": "npy"}, path=str(p))


# ---------------------------------------------------------------------------------------------------------------
# rosettasciio
_RSCIIO_MODULES = {
    ".mib": "quantumdetector",
    ".dm4": "digitalmicrograph",
    ".dm3": "digitalmicrograph",
    ".xml": "empad",
    ".hspy": "hspy",
    ".zspy": "zspy",
    ".emi": "tia",
    ".ser": "tia",
    ".arina": "arina",
    ".prismatic": "emd",
}


def _read_rsciio(p: Path, suffix: str, lazy: bool, scan_shape, flyback) -> Scan:
    import importlib

    what = SUPPORTED_FORMATS.get(suffix) or {".arina": "Dectris Arina HDF5", ".prismatic": "prismatic EMD"}[suffix]
    try:
        if suffix == ".arina":
            import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4 filters Dectris files use)
        file_reader = importlib.import_module(f"rsciio.{_RSCIIO_MODULES[suffix]}").file_reader
    except ImportError as e:
        raise ValueError(
            f"{p.name}: reading {what} needs rosettasciio>=0.15 (and hdf5plugin for Arina): pip install "
            f"'sei-send[io]' ({e})"
        ) from None
    kwargs: dict[str, Any] = {}
    if suffix == ".mib":
        n = _mib_frames(p) if scan_shape is None else None
        if scan_shape is None and n == 1:  # one frame: a 1 × 1 scan
            scan_shape = (1, 1)
        elif scan_shape is None:
            raise ValueError(
                f"{p.name}: Merlin .mib files do not store the scan shape"
                + (f" (this one holds {n} frames)" if n else "")
                + "; pass scan_shape=(scan_y, scan_x) and flyback=<extra frames per row> (CLI: --scan-shape NY NX "
                "--flyback N)"
            )
        kwargs["navigation_shape"] = (scan_shape[1] + flyback, scan_shape[0])  # rosettasciio order: (x, y)
    elif suffix == ".arina" and scan_shape is not None:
        kwargs["navigation_shape"] = (scan_shape[1] + flyback, scan_shape[0])
    eager = suffix in (".arina", ".emi", ".ser")  # readers whose lazy mode needs a file kept open elsewhere
    try:
        res = file_reader(str(p), lazy=lazy and not eager, **kwargs)
    except Exception as e:  # rosettasciio raises many types for bad files
        raise ValueError(
            f"{p.name}: rosettasciio could not read the file — truncated, corrupt or wrong format ({e})"
        ) from e
    sigs = [r for r in res if np.ndim(r["data"]) in (2, 3, 4)]
    if not sigs:
        raise ValueError(
            f"{p.name}: no 2-D to 4-D data set in the file (found shapes {[np.shape(r['data']) for r in res]})"
        )
    r = max(sigs, key=lambda r: (np.ndim(r["data"]), int(np.prod(np.shape(r["data"])))))
    data = r["data"]
    md: dict[str, Any] = {"reader": f"rosettasciio.{_RSCIIO_MODULES[suffix]}"}
    r["metadata"] = _apply_mapping(r)
    _flatten(r.get("metadata", {}), md, "")
    _flatten(r.get("original_metadata", {}), md, "original/")
    cal = _Cal(p.name)
    _calibration_from_rsciio(r, md, cal, prismatic=suffix == ".prismatic")
    cal.into(md)
    md["_flyback_done"] = False
    if suffix == ".mib":
        _check_mib_frames(p, data, scan_shape, flyback)
    if np.ndim(data) == 4 and suffix == ".mib" and data.shape[:2] != (scan_shape[0], scan_shape[1] + flyback):
        raise ValueError(
            f"scan_shape={scan_shape}, flyback={flyback}: {p.name} holds data of shape {tuple(data.shape)}"
        )
    return Scan(data=data, metadata=md, path=str(p), **cal.values())


def _center_from_axes(sig, cal: _Cal, *, tia: bool) -> None:
    """Direct-beam position [px] from the signal axes' offsets (Q = 0 at -offset/scale), when it is on the detector."""
    for unit_fix in (1.0, 1e-9) if tia else (1.0,):  # rosettasciio's TIA reader converts SI scales, not offsets
        try:
            c = tuple(-float(a.get("offset", 0.0)) * unit_fix / float(a["scale"]) for a in sig)
        except (TypeError, ValueError, ZeroDivisionError):
            return
        sizes = [int(a.get("size", 0) or 0) for a in sig]
        if all(np.isfinite(c)) and any(c) and all(-n <= v <= 2 * n for v, n in zip(c, sizes)):
            src = "signal axes offsets (Q = 0 position)" + (" [offsets read as SI]" if unit_fix != 1.0 else "")
            cal.set("center", c, src)
            return


def _apply_mapping(r: dict) -> dict:
    """The signal's metadata with rosettasciio's ``mapping`` (original_metadata path → metadata path, converter)
    applied, as HyperSpy does on load (TIA: High tension [kV] → TEM.beam_energy, camera length [m] → [mm], …)."""
    import copy

    md = copy.deepcopy(r.get("metadata", {}) or {})
    om = r.get("original_metadata", {}) or {}
    for src, (dst, fn) in (r.get("mapping") or {}).items():
        node: Any = om
        for part in src.split("."):
            if not isinstance(node, dict):
                node = None
                break
            key = next((k for k in node if str(k).replace(" ", "_") == part.replace(" ", "_")), None)
            node = node.get(key) if key is not None else None
        if node is None:
            continue
        try:
            value = fn(node) if fn is not None else node
        except Exception:  # a converter that fails on odd metadata: leave the field out
            continue
        tgt = md
        parts = dst.split(".")
        for part in parts[:-1]:
            tgt = tgt.setdefault(part, {})
        tgt.setdefault(parts[-1], value)
    return md


def _calibration_from_rsciio(r: dict, md: dict, cal: _Cal, *, prismatic: bool) -> None:
    """Calibrations of a rosettasciio signal dictionary: axes (navigation → step, signal → pixel size) and
    ``metadata.Acquisition_instrument.TEM`` (HyperSpy: beam_energy [keV], convergence_angle [mrad],
    camera_length [mm])."""
    axes = sorted(r.get("axes", []), key=lambda a: a.get("index_in_array", 0))
    ndim = np.ndim(r["data"])
    if prismatic or not any(a.get("navigate", False) for a in axes) and ndim == 4:
        # rosettasciio's EMD reader marks every axis of a 4-D array as a signal axis: the first two are the scan
        for i, a in enumerate(axes):
            a["navigate"] = i < ndim - 2
    tem = r.get("metadata", {}).get("Acquisition_instrument", {}).get("TEM", {})
    src = "metadata/Acquisition_instrument/TEM/"
    if tem.get("beam_energy") is not None:
        cal.number("energy", tem["beam_energy"], src + "beam_energy", scale=1e3)  # HyperSpy stores keV
    if tem.get("convergence_angle") is not None:
        cal.number("semiangle", tem["convergence_angle"], src + "convergence_angle")  # HyperSpy stores mrad
    cl = tem.get("camera_length", tem.get("Detector", {}).get("Diffraction", {}).get("camera_length"))
    if cl is not None:
        cal.number("camera_length", cl, src + "camera_length")
    if prismatic:
        sim = r.get("original_metadata", {}).get("simulation_parameters", {})
        if sim.get("E0") is not None:  # prismatic: E0 [eV] (a value < 1000 is kV)
            e0 = float(sim["E0"])
            cal.number("energy", e0, "original/simulation_parameters/E0", scale=1e3 if 0 < e0 < 1e3 else 1.0)
        if sim.get("probeSemiangle") is not None:  # prismatic: rad internally; a value >= 0.2 is mrad
            sa = float(sim["probeSemiangle"])
            cal.number("semiangle", sa, "original/simulation_parameters/probeSemiangle", scale=1e3 if sa < 0.2 else 1.0)
    nav = [a for a in axes if a.get("navigate", False)]
    sig = [a for a in axes if not a.get("navigate", True)]
    if nav:
        u = _norm_units(nav[0].get("units", ""))
        if u in _UNITS_LENGTH and nav[0].get("scale"):
            cal.number("step", nav[0]["scale"], f"axes/{nav[0].get('name') or 'navigation 0'} [{u}]",
                       scale=_UNITS_LENGTH[u])  # fmt: skip
            if len(nav) > 1 and _norm_units(nav[1].get("units", "")) in _UNITS_LENGTH and nav[1].get("scale"):
                u1 = _norm_units(nav[1].get("units", ""))
                md["step_yx"] = (float(nav[0]["scale"]) * _UNITS_LENGTH[u], float(nav[1]["scale"]) * _UNITS_LENGTH[u1])
        elif nav[0].get("scale"):
            _scan_axis_units(u, f"axes/{nav[0].get('name') or 'navigation 0'}.units", cal, md)
    if sig:
        u = _norm_units(sig[0].get("units", ""))
        sc = _q_scale(u, cal.values()["energy"])
        if sc is not None and sig[0].get("scale"):
            cal.number("pixel_size", sig[0]["scale"], f"axes/{sig[0].get('name') or 'signal 0'} [{u}]", scale=sc)
        elif u == "mrad" and sig[0].get("scale"):
            cal.mrad(sig[0]["scale"], f"axes/{sig[0].get('name') or 'signal 0'}")
        elif u in _UNITS_LENGTH:  # a length on a detector axis (a TIA .ser without its .emi): wrong kind
            cal.bad_units("pixel_size", u, f"axes/{sig[0].get('name') or 'signal 0'}.units")
        elif u not in _PLACEHOLDER_UNITS:
            _uncalibrated(md, f"axes/{sig[0].get('name') or 'signal 0'}", u)
        if len(sig) == 2 and sig[0].get("scale") and sig[1].get("scale"):
            _center_from_axes(sig, cal, tia=md.get("reader") == "rosettasciio.tia")


def _mib_frames(p: Path) -> int | None:
    """Number of frames of a .mib file from its first header (None when the header cannot be parsed)."""
    with open(p, "rb") as f:
        head = f.read(384).decode(errors="replace").split(",")
    try:
        size = int(head[2]) + int(head[4]) * int(head[5]) * {"U08": 1, "U16": 2, "U32": 4}[head[6].strip()]
    except (IndexError, ValueError, KeyError):
        return None
    n, rest = divmod(p.stat().st_size, size)
    return n if n and not rest else None


def _check_mib_frames(p: Path, data, scan_shape, flyback):
    """The number of frames in a .mib file must equal scan_y · (scan_x + flyback) (rosettasciio would silently
    read a prefix)."""
    with open(p, "rb") as f:
        head = f.read(384).decode(errors="replace").split(",")
    try:
        head_size = int(head[2])
    except (IndexError, ValueError):
        raise ValueError(f"{p.name}: no valid MIB header — the file is truncated or corrupt") from None
    frame = head_size + int(np.prod(data.shape[-2:])) * np.dtype(data.dtype).itemsize
    size = p.stat().st_size
    n_frames, rest = divmod(size, frame)
    expected = scan_shape[0] * (scan_shape[1] + flyback)
    if rest:
        raise ValueError(f"{p.name}: {size} bytes is not a whole number of {frame}-byte frames — truncated file")
    if n_frames != expected:
        raise ValueError(
            f"scan_shape={scan_shape}, flyback={flyback}: expects {expected} frames but {p.name} holds {n_frames}"
        )


def _flatten(d, out, prefix):
    for k, v in d.items():
        if isinstance(v, dict):
            _flatten(v, out, f"{prefix}{k}/")
        else:
            out[f"{prefix}{k}"] = _plain(v)
