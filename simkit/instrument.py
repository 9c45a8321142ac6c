"""Instrument imperfections of a SEND scan: descan and the elliptical distortion of the diffraction patterns.

One configuration object serves both directions:

- :func:`simkit.synth.synthesize_scan` *simulates* them (the known truth of a synthetic scan);
- :func:`fitting.pipeline.analyze_scan` *corrects* them — measured from the data when not given, applied as
  given otherwise (e.g. an ellipse measured once on a calibration standard) — and reports the ones it used.

Conventions. Descan moves the pattern centre linearly with scan position (a plane, what a slightly misaligned
descan coil pair does) plus a constant offset, all in detector pixels:
``shift_y = slope_y·(iy/ny − ½) + offset_y``, ``shift_x = slope_x·(ix/nx − ½) + offset_x`` for scan row ``iy`` of
``ny`` and column ``ix`` of ``nx``, relative to the undistorted pattern centre ``center``. The ellipse is a stretch
by ``ratio`` along the direction ``angle`` [rad] (from +x towards +y), the convention of
:func:`simkit.radial.make_plan`'s ``ellipse_ratio``/``ellipse_angle``: a plan built with the same two numbers
undoes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from structures.checks import check_finite, check_positive

__all__ = ["Descan", "Ellipse", "Instrument", "load_instrument"]


@dataclass(frozen=True, kw_only=True)
class Descan:
    """Descan: the pattern centre as a plane in scan position.

    Attributes
    ----------
    slope_y, slope_x : float  [px]
        Change of the centre's y (x) coordinate from the first to the last scan row (column).
    offset_y, offset_x : float  [px]
        Shift of the centre at the middle of the scan.
    center : (float, float) or None  [px]
        Undistorted pattern centre (cy, cx) the shifts refer to; None = that of the detector geometry
        (:class:`simkit.geometry.DetectorGeometry`, by default the middle pixel ``(ny//2, nx//2)``).
    """

    slope_y: float = 0.0
    slope_x: float = 0.0
    offset_y: float = 0.0
    offset_x: float = 0.0
    center: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("slope_y", "slope_x", "offset_y", "offset_x"):
            object.__setattr__(self, name, check_finite(name, getattr(self, name), "px"))
        if self.center is not None:
            c = tuple(self.center)
            if len(c) != 2:
                raise ValueError(f"center={self.center!r}: give (cy, cx) [px] or None")
            cy, cx = check_finite("center[0]", c[0], "px"), check_finite("center[1]", c[1], "px")
            object.__setattr__(self, "center", (cy, cx))

    def shifts(self, scan_shape: tuple[int, int]) -> np.ndarray:
        """Centre shift of every scan position.

        Parameters
        ----------
        scan_shape : (int, int)
            (scan_y, scan_x).

        Returns
        -------
        ndarray, shape (scan_y, scan_x, 2)  [px]
            (dy, dx) relative to :attr:`center`.
        """
        ny, nx = (int(n) for n in scan_shape)
        iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        return np.stack(
            [
                self.slope_y * (iy / max(ny, 1) - 0.5) + self.offset_y,
                self.slope_x * (ix / max(nx, 1) - 0.5) + self.offset_x,
            ],
            -1,
        )

    @classmethod
    def fit(cls, centers: np.ndarray, center: tuple[float, float]) -> Descan:
        """The least-squares descan plane of measured pattern centres.

        Parameters
        ----------
        centers : ndarray, shape (scan_y, scan_x, 2)  [px]
            Pattern centre (cy, cx) of every scan position; NaN entries are ignored.
        center : (float, float)  [px]
            Reference centre the offsets refer to (e.g. the detector's middle pixel).

        Returns
        -------
        Descan
        """
        c = np.asarray(centers, dtype=float)
        if c.ndim != 3 or c.shape[-1] != 2:
            raise ValueError(f"centers has shape {c.shape}: expected (scan_y, scan_x, 2) [px]")
        ny, nx = c.shape[:2]
        iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        out = {}
        for k, (axis, idx, n) in enumerate((("y", iy, ny), ("x", ix, nx))):
            v = c[..., k] - float(center[k])
            ok = np.isfinite(v)
            if not ok.any():
                raise ValueError("centers holds no finite value")
            u = idx[ok] / max(n, 1) - 0.5
            design = np.stack([u, np.ones_like(u)], -1) if n > 1 else np.ones((u.size, 1))
            coef = np.linalg.lstsq(design, v[ok], rcond=None)[0]
            out[f"slope_{axis}"] = float(coef[0]) if n > 1 else 0.0
            out[f"offset_{axis}"] = float(coef[-1])
        return cls(**out, center=(float(center[0]), float(center[1])))


@dataclass(frozen=True, kw_only=True)
class Ellipse:
    """Elliptical distortion of the patterns (projector-lens astigmatism).

    Attributes
    ----------
    ratio : float  [–]
        Stretch along ``angle`` (1 = round; > 0).
    angle : float  [rad]
        Direction of the stretch, from +x towards +y.
    """

    ratio: float = 1.0
    angle: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", check_positive("ratio", self.ratio, "–"))
        object.__setattr__(self, "angle", check_finite("angle", self.angle, "rad"))


@dataclass(frozen=True, kw_only=True)
class Instrument:
    """The instrument imperfections of a scan: descan and ellipse.

    A field left None means "not given": :func:`simkit.synth.synthesize_scan` then simulates none of it (no
    descan, round patterns), :func:`fitting.pipeline.analyze_scan` measures it from the data.

    Attributes
    ----------
    descan : Descan or None
    ellipse : Ellipse or None
    """

    descan: Descan | None = None
    ellipse: Ellipse | None = None

    def __post_init__(self) -> None:
        if self.descan is not None and not isinstance(self.descan, Descan):
            raise TypeError(f"descan={self.descan!r}: expected a simkit.instrument.Descan or None")
        if self.ellipse is not None and not isinstance(self.ellipse, Ellipse):
            raise TypeError(f"ellipse={self.ellipse!r}: expected a simkit.instrument.Ellipse or None")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (units: px, rad), readable by :meth:`from_dict`."""
        d: dict[str, Any] = {"descan": None, "ellipse": None}
        if self.descan is not None:
            s = self.descan
            d["descan"] = {
                "slope_y_px": s.slope_y, "slope_x_px": s.slope_x, "offset_y_px": s.offset_y,
                "offset_x_px": s.offset_x, "center_px": None if s.center is None else list(s.center),
            }  # fmt: skip
        if self.ellipse is not None:
            d["ellipse"] = {"ratio": self.ellipse.ratio, "angle_rad": self.ellipse.angle}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Instrument:
        """The inverse of :meth:`to_dict`; unknown keys raise, naming the valid ones."""
        if not isinstance(d, dict):
            raise TypeError(f"instrument settings must be a JSON object, got {type(d).__name__}")
        _known(d, ("descan", "ellipse"), "instrument")
        descan = ellipse = None
        if d.get("descan") is not None:
            s = d["descan"]
            keys = ("slope_y_px", "slope_x_px", "offset_y_px", "offset_x_px", "center_px")
            _known(s, keys, "descan")
            c = s.get("center_px")
            descan = Descan(
                **{k[:-3]: s[k] for k in keys[:4] if k in s}, center=None if c is None else tuple(c)
            )  # fmt: skip
        if d.get("ellipse") is not None:
            e = d["ellipse"]
            _known(e, ("ratio", "angle_rad"), "ellipse")
            ellipse = Ellipse(ratio=e.get("ratio", 1.0), angle=e.get("angle_rad", 0.0))
        return cls(descan=descan, ellipse=ellipse)


def _known(d: dict, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(d, dict):
        raise TypeError(f"{what} settings must be a JSON object, got {d!r}")
    bad = sorted(set(d) - set(keys))
    if bad:
        raise ValueError(f"{what} settings have unknown keys {bad}; valid keys are {list(keys)}")


def load_instrument(path: str | os.PathLike) -> Instrument:
    """Read an :class:`Instrument` from a JSON file (the form of :meth:`Instrument.to_dict`).

    Parameters
    ----------
    path : path
        e.g. ``{"descan": {"slope_y_px": 0.8, "offset_x_px": 1.0}, "ellipse": {"ratio": 1.02, "angle_rad": 0.5}}``.

    Returns
    -------
    Instrument
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    return Instrument.from_dict(d)
