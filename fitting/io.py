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
* Through **rosettasciio** (≥ 0.15, optional): Quantum Detectors Merlin ``.mib`` (with its ``.hdr``; the
  file does not store the scan shape — give ``scan_shape`` — and may hold ``flyback`` extra frames per scan
  row, which are dropped), Gatan ``.dm4``/``.dm3``, EMPAD ``.xml`` (+ ``.raw``), Dectris Arina ``.h5``
  (needs hdf5plugin).

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

__all__ = ["SUPPORTED_FORMATS", "Scan", "load_scan"]

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
}


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
        ``(scan_y, scan_x)`` of the recorded scan *without* flyback frames. Required for Merlin ``.mib`` files
        (they do not store it); for ``.npy``/other files with a 3-D stack of frames it reshapes the stack.
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

    Raises
    ------
    ValueError
        Unsupported suffix (the message lists the supported formats), a truncated/corrupt file, a file without
        4-D data, bad ``scan_shape``/``flyback``, non-positive calibrations.
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

    if suffix in (".h5", ".hdf5", ".emd"):
        scan = _read_hdf5(p, lazy, dataset, scan_shape)
    elif suffix == ".npy":
        scan = _read_npy(p, lazy)
    else:
        scan = _read_rsciio(p, suffix, lazy, scan_shape, flyback)

    data = scan.data
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
    return Scan(data=data, metadata=md, path=str(p), **kw)


def _reshape_stack(data, scan_shape, flyback, name, position):
    ny, nx = scan_shape
    n_exp = ny * (nx + flyback)
    if data.shape[0] != n_exp:
        raise ValueError(
            f"scan_shape={scan_shape}, flyback={flyback}: expects {n_exp} frames but {name} holds {data.shape[0]}"
        )
    d = data.reshape((ny, nx + flyback) + tuple(data.shape[1:]))
    if not flyback:
        return d
    return d[:, flyback:] if position == "start" else d[:, :nx]


# ---------------------------------------------------------------------------------------------------------------
# HDF5 / EMD 1.0
def _attr(obj, key, default=None):
    v = obj.attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.item()
    return v


def _read_hdf5(p: Path, lazy: bool, dataset: str | None, scan_shape) -> Scan:
    import h5py

    try:  # registers the Blosc/LZ4/bitshuffle filters (simkit.synth's "blosc-lz4", Dectris files) with h5py
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise ValueError(f"{p.name}: cannot open as HDF5 — the file is truncated or corrupt ({e})") from None
    try:
        is_emd = _attr(f, "emd_group_type") == "file"
        if not is_emd and "entry" in f and dataset is None:
            f.close()
            return _read_rsciio(p, ".arina", lazy, scan_shape, 0)
        group, dset = _find_datacube(f, dataset, p.name)
        md: dict[str, Any] = {"reader": "emd" if is_emd else "hdf5", "hdf5_path": dset.name}
        if is_emd:
            md["emd_version"] = f"{_attr(f, 'version_major')}.{_attr(f, 'version_minor')}"
        for k, v in f.attrs.items():
            md[f"file/{k}"] = _plain(v)
        if group is not None:
            _collect_metadata(group, md, prefix="")
        cal = _calibration_from_emd(group, md)
        if dset.ndim == 4:
            # touch the last frame so that a truncated file fails here rather than deep inside an analysis
            try:
                dset[tuple(s - 1 for s in dset.shape[:2])]
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"{p.name}: reading the data failed — the file is truncated or corrupt ({e})"
                ) from None
        return Scan(data=dset, metadata=md, path=str(p), **cal)
    except Exception:
        f.close()
        raise


def _plain(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.size <= 16:
        return v.tolist()
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
            if isinstance(d, h5py.Dataset) and d.ndim in (3, 4):
                found.append((obj, d))

    f.visititems(visit)
    if not found:  # plain HDF5: any 4-D dataset
        plain = []
        f.visititems(lambda nm, o: plain.append(o) if isinstance(o, h5py.Dataset) and o.ndim == 4 else None)
        if len(plain) == 1:
            return plain[0].parent, plain[0]
        raise ValueError(
            f"{name}: no EMD 1.0 array group with 4-D 'data' found"
            + (f" and {len(plain)} 4-D datasets; choose one with dataset=" if plain else "")
        )
    four = [x for x in found if x[1].ndim == 4] or found
    if len(four) > 1:
        named = [x for x in four if x[0].name.rsplit("/", 1)[-1] == "datacube"]
        if len(named) == 1:
            return named[0]
        raise ValueError(f"{name}: several 4-D arrays {[g.name for g, _ in four]}; choose one with dataset=")
    return four[0]


def _collect_metadata(group, md, prefix):
    import h5py

    for k, v in group.attrs.items():
        md[f"{prefix}{k}"] = _plain(v)
    for k, obj in group.items():
        if isinstance(obj, h5py.Group):
            _collect_metadata(obj, md, prefix=f"{prefix}{k}/")
        elif isinstance(obj, h5py.Dataset) and k != "data" and obj.size <= 16:
            md[f"{prefix}{k}"] = _plain(obj[()])
            if k.startswith("dim"):
                for a, av in obj.attrs.items():
                    md[f"{prefix}{k}.{a}"] = _plain(av)


def _dim_spacing(group, i):
    if group is None or f"dim{i}" not in group:
        return None, None
    d = group[f"dim{i}"]
    v = np.asarray(d[()], dtype=float).ravel()
    if v.size < 2 or not np.isfinite(v[1] - v[0]) or v[1] == v[0]:
        return None, None
    return abs(float(v[1] - v[0])), str(_attr(d, "units", "")).strip().lower()


def _find_key(md, names):
    for key, val in md.items():
        leaf = key.rsplit("/", 1)[-1].lower()
        if leaf in names and isinstance(val, (int, float)) and not isinstance(val, bool):
            return key, float(val)
    return None, None


def _calibration_from_emd(group, md) -> dict:
    out = {"step": None, "pixel_size": None, "energy": None, "semiangle": None}
    sy, uy = _dim_spacing(group, 0)
    sx, ux = _dim_spacing(group, 1)
    if sy is not None and uy in _UNITS_LENGTH:
        out["step"] = sy * _UNITS_LENGTH[uy]
        if sx is not None and ux in _UNITS_LENGTH:
            md["step_yx"] = (out["step"], sx * _UNITS_LENGTH[ux])
    qy, uq = _dim_spacing(group, 2)
    if qy is not None and uq in _UNITS_RECIP:
        out["pixel_size"] = qy * _UNITS_RECIP[uq]
    # explicit metadata (ours, then py4DSTEM's)
    _, v = _find_key(md, {"step", "step_a", "scan_step"})
    if v is not None:
        out["step"] = v
    _, v = _find_key(md, {"pixel_size", "pixel_size_inv_a", "q_pixel_size_inv_a"})
    if v is not None:
        out["pixel_size"] = v
    if out["pixel_size"] is None:
        k, v = _find_key(md, {"q_pixel_size"})
        if v is not None:
            u = str(md.get(k.replace("Q_pixel_size", "Q_pixel_units"), "A^-1")).lower()
            if u in _UNITS_RECIP:
                out["pixel_size"] = v * _UNITS_RECIP[u]
    if out["step"] is None:
        k, v = _find_key(md, {"r_pixel_size"})
        if v is not None:
            u = str(md.get(k.replace("R_pixel_size", "R_pixel_units"), "A")).lower()
            if u in _UNITS_LENGTH:
                out["step"] = v * _UNITS_LENGTH[u]
    _, v = _find_key(md, {"energy", "energy_ev", "beam_energy", "beam_energy_ev", "accelerating_voltage"})
    if v is not None:
        out["energy"] = v * 1e3 if v < 1e3 else v  # a value < 1000 is in kV/keV
    _, v = _find_key(
        md, {"semiangle", "semiangle_mrad", "convergence_semiangle_mrad", "convergence_semiangle", "probe_semiangle"}
    )
    if v is not None:
        out["semiangle"] = v
    return {k: (None if v is None or not np.isfinite(v) or v <= 0 else float(v)) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------------
# .npy
def _read_npy(p: Path, lazy: bool) -> Scan:
    try:
        arr = np.load(p, mmap_mode="r" if lazy else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{p.name}: cannot read as .npy — the file is truncated or corrupt ({e})") from None
    if arr.ndim not in (3, 4):
        raise ValueError(f"{p.name}: array of shape {arr.shape}; expected (scan_y, scan_x, det_y, det_x)")
    return Scan(data=arr, metadata={"reader": "npy"}, path=str(p))


# ---------------------------------------------------------------------------------------------------------------
# rosettasciio
def _read_rsciio(p: Path, suffix: str, lazy: bool, scan_shape, flyback) -> Scan:
    try:
        if suffix == ".mib":
            from rsciio.quantumdetector import file_reader
        elif suffix in (".dm4", ".dm3"):
            from rsciio.digitalmicrograph import file_reader
        elif suffix == ".xml":
            from rsciio.empad import file_reader
        else:
            import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4 filters Dectris files use)
            from rsciio.arina import file_reader
    except ImportError as e:
        raise ValueError(
            f"{p.name}: reading {SUPPORTED_FORMATS.get(suffix, 'Dectris Arina HDF5')} needs rosettasciio>=0.15 "
            f"(and hdf5plugin for Arina): pip install 'sei-send[io]' ({e})"
        ) from None
    kwargs: dict[str, Any] = {}
    if suffix == ".mib":
        if scan_shape is None:
            raise ValueError(
                f"{p.name}: Merlin .mib files do not store the scan shape; pass scan_shape=(scan_y, scan_x) "
                "and flyback=<extra frames per row>"
            )
        kwargs["navigation_shape"] = (scan_shape[1] + flyback, scan_shape[0])  # rosettasciio order: (x, y)
    elif suffix == ".arina" and scan_shape is not None:
        kwargs["navigation_shape"] = (scan_shape[1] + flyback, scan_shape[0])
    try:
        res = file_reader(str(p), lazy=lazy if suffix != ".arina" else False, **kwargs)
    except Exception as e:  # rosettasciio raises many types for bad files
        raise ValueError(
            f"{p.name}: rosettasciio could not read the file — truncated, corrupt or wrong format ({e})"
        ) from e
    sigs = [r for r in res if np.ndim(r["data"]) in (3, 4)]
    if not sigs:
        raise ValueError(
            f"{p.name}: no 3-D/4-D data set in the file (found shapes {[np.shape(r['data']) for r in res]})"
        )
    r = sigs[0]
    data = r["data"]
    axes = sorted(r.get("axes", []), key=lambda a: a.get("index_in_array", 0))
    md: dict[str, Any] = {"reader": f"rosettasciio{suffix if suffix != '.arina' else '.arina'}"}
    _flatten(r.get("metadata", {}), md, "")
    _flatten(r.get("original_metadata", {}), md, "original/")
    cal = {"step": None, "pixel_size": None, "energy": None, "semiangle": None}
    nav = [a for a in axes if a.get("navigate", False)]
    sig = [a for a in axes if not a.get("navigate", True)]
    if nav:
        u = str(nav[0].get("units", "")).strip().lower()
        if u in _UNITS_LENGTH and nav[0].get("scale"):
            cal["step"] = float(nav[0]["scale"]) * _UNITS_LENGTH[u]
    if sig:
        u = str(sig[0].get("units", "")).strip().lower()
        if u in _UNITS_RECIP and sig[0].get("scale"):
            cal["pixel_size"] = float(sig[0]["scale"]) * _UNITS_RECIP[u]
    tem = r.get("metadata", {}).get("Acquisition_instrument", {}).get("TEM", {})
    if tem.get("beam_energy"):
        cal["energy"] = float(tem["beam_energy"]) * 1e3  # HyperSpy stores keV
    if tem.get("convergence_angle"):
        cal["semiangle"] = float(tem["convergence_angle"])  # HyperSpy stores mrad
    md["_flyback_done"] = False
    if suffix == ".mib":
        _check_mib_frames(p, data, scan_shape, flyback)
    if np.ndim(data) == 4 and suffix == ".mib" and data.shape[:2] != (scan_shape[0], scan_shape[1] + flyback):
        raise ValueError(
            f"scan_shape={scan_shape}, flyback={flyback}: {p.name} holds data of shape {tuple(data.shape)}"
        )
    return Scan(data=data, metadata=md, path=str(p), **cal)


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
