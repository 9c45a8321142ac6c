"""Detector geometry shared by simulation (simkit.nbed.to_detector) and measured data (fitting.calibrate).

Pixel (i, j) has its centre at index coordinates (i, j). The default centre (ny//2, nx//2) is where
abTEM puts zero frequency after fftshift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simkit.units import mrad_to_q, wavelength
from structures.checks import check_positive

#: Default detector pixel size [Å⁻¹/px] of every synthetic detector (libraries, scans, planner, CLI): 256² pixels
#: reach 127.5 px × 0.0065 = 0.83 Å⁻¹ at the edge of the inscribed circle, so full rings hold the second SRO peak of
#: SEI Type 1 (≈ 0.6 Å⁻¹) and LiF 220 (0.706 Å⁻¹ at 100 K) with its whole 2 mrad disc (radius 0.10 Å⁻¹ at 300 keV).
DEFAULT_PIXEL_SIZE = 0.0065
#: Default detector shape (ny, nx) [px] of the synthetic detector.
DEFAULT_DETECTOR_SHAPE = (256, 256)


@dataclass(frozen=True, kw_only=True)
class DetectorGeometry:
    """A pixelated diffraction detector.

    Parameters
    ----------
    shape : tuple of int
        Detector shape ``(ny, nx)`` [px].
    pixel_size : float  [Å⁻¹]
        Reciprocal-space size of one pixel (Q = 1/d per pixel); default :data:`DEFAULT_PIXEL_SIZE`.
    center : tuple of float or None  [px]
        Direct-beam position ``(cy, cx)`` in index coordinates; ``None`` means ``(ny // 2, nx // 2)``.
    """

    shape: tuple[int, int] = DEFAULT_DETECTOR_SHAPE
    pixel_size: float = DEFAULT_PIXEL_SIZE
    center: tuple[float, float] | None = field(default=None)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 2 or min(shape) < 2:
            raise ValueError(f"shape={self.shape!r}: give the detector shape as (ny, nx) with ny, nx >= 2 [px]")
        object.__setattr__(self, "shape", shape)
        ps = check_positive("pixel_size", self.pixel_size, "Å⁻¹")
        object.__setattr__(self, "pixel_size", ps)
        c = (shape[0] // 2, shape[1] // 2) if self.center is None else self.center
        c = (float(c[0]), float(c[1]))
        if not all(np.isfinite(c)):
            raise ValueError(f"center={self.center!r}: must be finite (cy, cx) [px]")
        object.__setattr__(self, "center", c)

    @classmethod
    def from_camera(
        cls,
        *,
        shape: tuple[int, int],
        camera_length: float,
        pixel_pitch: float,
        energy: float,
        center: tuple[float, float] | None = None,
    ) -> DetectorGeometry:
        """Geometry from camera length and physical pixel pitch.

        Parameters
        ----------
        shape : tuple of int  [px]
        camera_length : float  [mm]
        pixel_pitch : float  [µm]
            Physical detector pixel size (55 µm for Medipix3/Merlin, 150 µm for EMPAD).
        energy : float  [eV]
        center : tuple of float or None  [px]
        """
        camera_length = check_positive("camera_length", camera_length, "mm")
        pixel_pitch = check_positive("pixel_pitch", pixel_pitch, "µm")
        angle_per_px = (pixel_pitch * 1e-3) / camera_length  # rad
        return cls(shape=shape, pixel_size=angle_per_px / wavelength(energy), center=center)

    @classmethod
    def from_mrad(
        cls, *, shape: tuple[int, int], mrad_per_pixel: float, energy: float, center=None
    ) -> DetectorGeometry:
        """Geometry from an angular pixel size.

        Parameters
        ----------
        mrad_per_pixel : float  [mrad]
        energy : float  [eV]
        """
        mpp = check_positive("mrad_per_pixel", mrad_per_pixel, "mrad")
        return cls(shape=shape, pixel_size=mrad_to_q(mpp, energy), center=center)

    @property
    def q_max(self) -> float:
        """Largest Q fully inside the detector (distance from centre to the nearest edge) [Å⁻¹]."""
        cy, cx = self.center
        ny, nx = self.shape
        return min(cy, cx, ny - 1 - cy, nx - 1 - cx) * self.pixel_size

    def q_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates ``(qy, qx)`` [Å⁻¹], each of shape ``shape``."""
        iy, ix = np.indices(self.shape, dtype=float)
        return (iy - self.center[0]) * self.pixel_size, (ix - self.center[1]) * self.pixel_size
