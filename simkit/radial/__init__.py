"""Radial (azimuthal) integration: the only place in sei-send that bins detector pixels by radius.

Plan once, integrate many: :func:`make_plan` turns the detector geometry (shape, centre, pixel size, ellipse
correction, mask, bins) into per-pixel index tables; :meth:`RadialPlan.integrate` applies them to any stack of
patterns ``(..., ny, nx)`` (NumPy array, memmap, h5py dataset, dask array) and returns :class:`RadialProfiles`;
:meth:`RadialPlan.mean_profiles` gives only its ``mean`` and ``sem_poisson``, straight into (float32) arrays
(many-sector maps of whole scans, where building every field in float64 would cost as much as the binning).

Conventions
-----------
* Q = 1/d [Å⁻¹] (no 2π). The Q of a pixel is its (ellipse-corrected) distance from the centre in pixels times
  ``pixel_size`` [Å⁻¹/px] (the small-angle detector mapping used throughout the toolkit).
* Pixel (i, j) (row i, column j) has its centre at index coordinates (i, j); its area spans
  [i − ½, i + ½] × [j − ½, j + ½]. abTEM puts zero frequency at index ``n // 2`` (:func:`abtem_center`);
  pyFAI measures from pixel corners, so its centre of pixel i is at i + ½ (:func:`center_from_pyfai`,
  :func:`center_to_pyfai`).
* Bin k holds pixels with ``edges[k] <= Q < edges[k + 1]``.
* Ellipse correction (``ellipse_ratio`` ρ, ``ellipse_angle`` θ [rad]): the recorded pattern is taken to be
  stretched by the factor ρ along the direction at angle θ, measured from the +x axis (increasing column
  index j) towards the +y axis (increasing row index i). A ring of true radius R then appears as an ellipse
  with semi-axis ρ·R along θ and R perpendicular to it. For a pixel at offset (dy, dx) = (i − cy, j − cx),
  with u = dx·cos θ + dy·sin θ and v = −dx·sin θ + dy·cos θ, the corrected radius is
  ``r = sqrt((u / ρ)² + v²)`` [px]: the component along θ is divided by ρ, the perpendicular one is kept.
* Sectors (``n_phi``): the azimuth φ of a pixel is the angle of its ellipse-corrected offset vector, from +x
  towards +y, in [0, 2π); sector s covers [2π s / n_phi, 2π (s + 1) / n_phi).
* Pixel splitting: a pixel's radial extent is [r_min, r_max] with r_max the largest corner radius and r_min
  the exact smallest distance of the (corrected) pixel square from the centre (0 if it contains the
  centre); its intensity is spread uniformly over that extent, each bin receiving the overlapping fraction.
  Without splitting a pixel goes wholly to the bin of its centre.

Statistics per bin (weights w are 1 without splitting, the overlap fractions with it)
---------------------------------------------------------------------------------------
``count`` = Σw, ``sum`` = Σw·I, ``mean`` = sum / count (NaN in empty bins),
``sem_poisson`` = sqrt(Σw²·I) / count (= sqrt(sum) / count without splitting; for counts data),
``sem_azimuthal`` = sqrt(σ² / (n_eff − 1)) with σ² = Σw(I − mean)² / Σw and n_eff = (Σw)² / Σw²
(= std(ddof=1) / sqrt(n) without splitting): the scatter of pixel values around the ring.
For ``statistic="clipped"`` these describe the pixels kept by the clipping; for ``"median"``, ``mean`` holds the
weighted median and ``sem_azimuthal`` is multiplied by sqrt(π/2) (the median's efficiency for normal noise).

Kernels (numba, ``parallel=True`` over patterns, each thread owns its patterns' output rows)
--------------------------------------------------------------------------------------------
* fixed centre, no splitting: a per-pixel unsigned table ``bin·4 + p % 4`` built once (four interleaved
  accumulator copies break the store-to-load chains of scatter-adds into the same bin), visited only over the
  columns of each row that hold used pixels; uint8/uint16 data are summed exactly in int64 (no overflow, no
  float conversion of the stack; count and sum share one accumulator, the count in the bits from 2⁴⁰ up);
  other dtypes in float64. It is the whole-pixel-shift kernel below with a zero shift. For uint8/uint16 the count
  of a bin is the plan's, and Σ I and Σ I² share one uint64 add per pixel (Σ I² from bit s up, s fixed by the
  plan's largest bin and the largest value that still packs; a group of patterns above that value falls back
  to separate sums); eight patterns per sweep over the table, their accumulators side by side so that the
  pixels of four patterns (interleaved per row into one 64-bit word each, in a vectorised pass that also
  takes the group's maximum) make one vector add of four uint64 lanes.
* per-pattern centres (``shifts``), no splitting: per row only the columns that can reach a bin (the roots of
  a quadratic), a vectorised pass for the squared corrected radius s, then the bin of s from a look-up table
  whose cells are exact except where a threshold falls inside (then an exact comparison). The thresholds are
  the edges mapped exactly onto s (for each edge the smallest double s with fl(fl(√s)·pixel_size) >= edge,
  by bisection), so the bins are bit for bit those of comparing q = √s·pixel_size with the edges, without a
  square root per pixel. uint8/uint16 data use one accumulator copy per bin here (exact integer sums in any
  order; compact accumulators are worth more to these look-up-bound kernels than breaking store-to-load chains),
  other dtypes the four interleaved copies (their float sums depend on the order of additions).
* split pixels: (pixel, bin, weight) entries in float64 built once for a fixed centre; with shifts each
  pixel's radial extent is computed on the fly and accumulated directly (no entry list per pattern).
* whole-pixel shifts (every shift an integer number of pixels, e.g. ``fitting.profiles``' ``shift_mode=
  "integer"``), no splitting: detector pixel (a, b) takes the bin of cell (a − dy, b − dx) of a fixed table
  built about the plan's centre on a grid extending the detector by a margin ≥ the largest shift (the
  arithmetic of the plan's own tables, so on the detector the bins are theirs bit for bit); no geometry per
  pixel, as fast as a fixed centre, also with sectors; counts accumulated per pattern (pixels off the moved
  table, masked — the mask applies to detector pixels, as for any shift — or NaN are not counted). Equal to the
  sub-pixel shifted kernels up to ties broken by the last bit of the centre offset.
* sectors with sub-pixel shifts: as the shifted kernels plus the sector of each pixel from a look-up table
  over its "diamond angle" (one division in a vectorised pass); the ≈ 1 % of pixels whose table cell holds a
  sector boundary take the exact atan2, so the sectors are atan2's bit for bit. For uniform bins the bins are
  computed directly instead (exact arithmetic only within a rounding margin of a boundary, the same bins bit
  for bit): float data by a float32 radius and polynomial arctangent per pixel; uint8/uint16 data by each row's
  crossings of the sector boundaries (the azimuth is monotone along a row, so the sector is constant between
  crossings: no angle per pixel) and a float32 radius on 8 lanes, with count, Σ I and Σ I² of a bin packed in
  one uint64 add per pixel when the pattern's maximum and a bound of the pixels any bin can hold allow it.
* median and sigma clipping: general entry lists (per pattern with shifts).
* finishing: without splitting and for ``statistic="mean"`` the table and shifted kernels write the finished
  fields (or only mean and sem_poisson for ``mean_profiles``) straight from their per-pattern sums, with the
  arithmetic of the finishing pass that turns the (pattern, field, bin) accumulators of the other paths into
  profiles.
Every path bins with the same arithmetic (q = |M·(dx, dy)|·pixel_size, M the symmetric ellipse-correction
matrix; exact search of ``edges``), so all paths agree with each other and with the slow reference in
``tests/reference.py``; ``NUMBA_DISABLE_JIT=1`` gives identical results.
Hot loops cast their indices to unsigned (numba tests every signed index it cannot prove non-negative for
wraparound, a third of the cost of a scatter-add loop) and call helpers that take arrays only inlined
(``inline="always"``: a real call costs reference counting every time). Measured rates: ``bench/radial.py``.

Modules
-------
* :mod:`.geometry` — conversions, ellipse-correction matrix, bin search, pixel extents, exact squared-radius
  thresholds, look-up tables (radius and sector);
* :mod:`.kernels` — the numba kernels, one per geometry path, dtype handled by inlined accumulator helpers;
* :mod:`.executor` — argument checks, chunking, threading and kernel choice shared by ``integrate`` and
  ``mean_profiles``;
* :mod:`.plan` — :class:`RadialPlan`, :class:`RadialProfiles`, :func:`make_plan`, :func:`make_plan_from_geometry`.
"""

from .executor import STATISTICS as STATISTICS
from .geometry import abtem_center, center_from_pyfai, center_to_pyfai, pixel_size_from_mrad
from .plan import RadialPlan, RadialProfiles, make_plan, make_plan_from_geometry, weight_qn

__all__ = [
    "RadialPlan",
    "RadialProfiles",
    "abtem_center",
    "center_from_pyfai",
    "center_to_pyfai",
    "make_plan",
    "make_plan_from_geometry",
    "pixel_size_from_mrad",
    "weight_qn",
]
