"""Plans and profiles: :class:`RadialPlan` (geometry, bins and the per-pixel tables built from them) with
:func:`make_plan` / :func:`make_plan_from_geometry`, and :class:`RadialProfiles` (what integration returns)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from structures.checks import check_finite, check_positive

from . import executor
from .geometry import (
    _W,
    _grid_table,
    _pixel_entries,
    correction_matrix,
    direct_params,
    phi_lookup,
    radius_px,
    row_spans,
    s_lookup,
    s_thresholds,
    sector_count_bound,
    sector_segments,
    uniform_inv_dq,
)

__all__ = ["RadialPlan", "RadialProfiles", "make_plan", "make_plan_from_geometry", "weight_qn"]


@dataclass(frozen=True, kw_only=True, eq=False)
class RadialProfiles:
    """Radial (or sector) profiles of a stack of patterns.

    Attributes
    ----------
    q : ndarray, shape (n_q,)  [Å⁻¹]
        Bin centres.
    edges : ndarray, shape (n_q + 1,)  [Å⁻¹]
        Bin edges.
    mean : ndarray, shape (..., n_q) or (..., n_phi, n_q)  [intensity per pixel]
        Mean pixel intensity per bin (for ``statistic="median"`` the weighted median, for ``"clipped"`` the
        sigma-clipped mean); NaN in empty bins.
    sum : ndarray  [intensity]
        Σw·I over the bin's pixels (the pixels kept by clipping for ``"clipped"``).
    count : ndarray  [pixels]
        Pixel weight Σw in the bin (number of pixels without splitting).
    sem_poisson : ndarray  [intensity per pixel]
        Standard error of ``mean`` from counting statistics, sqrt(Σw²·I) / Σw (for data in counts).
    sem_azimuthal : ndarray  [intensity per pixel]
        Standard error of ``mean`` from the scatter of pixel values around the ring (times sqrt(π/2) for the
        median).
    statistic : str
        ``"mean"``, ``"clipped"`` or ``"median"``.
    phi_edges : ndarray or None, shape (n_phi + 1,)  [rad]
        Sector edges when sectors were requested.
    """

    q: np.ndarray
    edges: np.ndarray
    mean: np.ndarray
    sum: np.ndarray
    count: np.ndarray
    sem_poisson: np.ndarray
    sem_azimuthal: np.ndarray
    statistic: str = "mean"
    phi_edges: np.ndarray | None = None


def weight_qn(profiles: RadialProfiles, n: float) -> RadialProfiles:
    """Weight profiles by Qⁿ (I·Qⁿ), e.g. n = 1 for the I·Q curves peaks are read from.

    Parameters
    ----------
    profiles : RadialProfiles
    n : float
        Power of Q [Å⁻¹] applied to ``mean``, ``sum``, ``sem_poisson`` and ``sem_azimuthal``; ``count`` is
        unchanged.

    Returns
    -------
    RadialProfiles
        Same shapes; the weighted quantities carry an extra unit of Å⁻ⁿ.
    """
    if not isinstance(profiles, RadialProfiles):
        raise TypeError(f"profiles={type(profiles).__name__}: expected a RadialProfiles")
    n = float(n)
    if not np.isfinite(n):
        raise ValueError(f"n={n!r}: must be a finite power of Q")
    f = profiles.q**n
    return replace(
        profiles,
        mean=profiles.mean * f,
        sum=profiles.sum * f,
        sem_poisson=profiles.sem_poisson * f,
        sem_azimuthal=profiles.sem_azimuthal * f,
    )


# ----------------------------------------------------------------------------------------------------------
# argument checks of the defining parameters
# ----------------------------------------------------------------------------------------------------------
def _check_shape(shape) -> tuple[int, int]:
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape={shape!r}: expected (ny, nx) [px]") from None
    if len(shp) != 2 or min(shp) < 1:
        raise ValueError(f"shape={shape!r}: expected (ny, nx) with ny, nx >= 1 [px]")
    return shp


def _check_center(center) -> tuple[float, float]:
    try:
        c = tuple(float(v) for v in center)
    except TypeError:
        raise TypeError(f"center={center!r}: expected (cy, cx) [px]") from None
    if len(c) != 2 or not all(np.isfinite(c)):
        raise ValueError(f"center={center!r}: must be two finite numbers (cy, cx) [px] in index coordinates")
    return c


def _check_geometry(pixel_size, ellipse_ratio, ellipse_angle) -> tuple[float, float, float]:
    ps = check_positive("pixel_size", pixel_size, "Å⁻¹/px")
    rho = check_positive("ellipse_ratio", ellipse_ratio)
    ang = check_finite("ellipse_angle", ellipse_angle, "rad")
    return ps, rho, ang


def _check_mask(mask, shp) -> np.ndarray:
    if mask is None:
        m = np.ones(shp, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape != shp:
            raise ValueError(f"mask.shape={m.shape}: must equal the detector shape {shp} (True = use the pixel)")
        if m.dtype != bool:
            raise TypeError(f"mask.dtype={m.dtype}: must be boolean (True = use the pixel)")
        m = m.copy()
    m.setflags(write=False)
    return m


def _check_edges(edges) -> np.ndarray:
    e = np.array(edges, dtype=np.float64).ravel()
    if e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise ValueError(f"edges={edges!r}: must be at least two finite, strictly increasing Q values [Å⁻¹]")
    e.setflags(write=False)
    return e


# ----------------------------------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class RadialPlan:
    """Geometry, bins and the per-pixel index tables built from them for radial integration; build with
    :func:`make_plan` or :func:`make_plan_from_geometry`.

    The tables (``pixel_index``, ``bin_index``, ``weight``, ``bin_table`` and the kernels' caches) are derived,
    not constructor arguments: every plan builds them from its defining fields, so
    ``dataclasses.replace(plan, center=...)`` (or :meth:`moved`) gives a plan that bins around the new centre.

    Attributes
    ----------
    shape : tuple of int  [px]
        Detector ``(ny, nx)``.
    center : tuple of float  [px]
        ``(cy, cx)`` in index coordinates (pixel (i, j) centred at (i, j)).
    pixel_size : float  [Å⁻¹/px]
    edges : ndarray  [Å⁻¹]
        Strictly increasing bin edges, shape (n_q + 1,).
    mask : ndarray of bool, shape ``shape``
        True = use the pixel (None at construction: all pixels).
    ellipse_ratio : float
        Stretch ρ of the recorded pattern along ``ellipse_angle`` (see the package docstring).
    ellipse_angle : float  [rad]
        Direction of the stretch, from +x (columns) towards +y (rows).
    split_pixels : bool
        Share each pixel among the bins its radial extent covers.
    pixel_index, bin_index : ndarray of int32
        Entries (flattened pixel index, bin index) for the plan's centre, in pixel order (derived).
    weight : ndarray of float64
        Entry weights (1 without splitting) (derived).
    bin_table : ndarray of int32, shape (ny·nx,)
        Bin of each pixel without splitting; n_q for pixels that are masked or outside the bins (all n_q with
        splitting: use the entries) (derived).
    """

    shape: tuple[int, int]
    center: tuple[float, float]
    pixel_size: float
    edges: np.ndarray
    mask: np.ndarray | None = field(default=None, repr=False)
    ellipse_ratio: float = 1.0
    ellipse_angle: float = 0.0
    split_pixels: bool = False
    pixel_index: np.ndarray = field(init=False, repr=False)
    bin_index: np.ndarray = field(init=False, repr=False)
    weight: np.ndarray = field(init=False, repr=False)
    bin_table: np.ndarray = field(init=False, repr=False)
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        shp = _check_shape(self.shape)
        c = _check_center(self.center)
        ps, rho, ang = _check_geometry(self.pixel_size, self.ellipse_ratio, self.ellipse_angle)
        e = _check_edges(self.edges)
        m = _check_mask(self.mask, shp)
        for name, value in (
            ("shape", shp), ("center", c), ("pixel_size", ps), ("edges", e), ("mask", m), ("ellipse_ratio", rho),
            ("ellipse_angle", ang), ("split_pixels", bool(self.split_pixels)),
        ):  # fmt: skip
            object.__setattr__(self, name, value)
        pix, bins, w = self._entries(1)
        if pix.size == 0:
            r = radius_px(shp, c, rho, ang)
            off = not (-0.5 <= c[0] <= shp[0] - 0.5 and -0.5 <= c[1] <= shp[1] - 0.5)
            where = f"; center={tuple(map(float, c))} px lies off the {shp[0]}×{shp[1]} detector" if off else ""
            raise ValueError(
                f"edges/q range [{e[0]:.4g}, {e[-1]:.4g}] Å⁻¹ contains no unmasked pixel of the detector "
                f"(pixels span Q = {r.min() * ps:.4g} Å⁻¹ to {r.max() * ps:.4g} Å⁻¹ at the farthest detector corner"
                f"{where}); choose q_min/q_max/edges inside that range"
            )
        table = np.full(shp[0] * shp[1], e.size - 1, np.int32)
        if not self.split_pixels:
            table[pix] = bins
        arrays = {"pixel_index": pix, "bin_index": bins, "weight": w, "bin_table": table}
        for name, a in arrays.items():
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    def moved(self, center: tuple[float, float]) -> RadialPlan:
        """The same plan about another centre (tables rebuilt).

        Parameters
        ----------
        center : tuple of float  [px]
            New ``(cy, cx)`` in index coordinates.

        Returns
        -------
        RadialPlan
        """
        return replace(self, center=center)

    @property
    def q(self) -> np.ndarray:
        """Bin centres [Å⁻¹]."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def n_q(self) -> int:
        """Number of Q bins."""
        return self.edges.size - 1

    @property
    def count(self) -> np.ndarray:
        """Pixel weight per bin for the plan's centre with no NaN pixels [pixels], shape (n_q,)."""
        return np.bincount(self.bin_index, weights=self.weight, minlength=self.n_q)[: self.n_q]

    # -- tables handed to the kernels (built on first use, cached per plan) -------------------------------
    def _geo(self):
        """Entries (m00, m01, m11) of the symmetric correction matrix M (geometry.correction_matrix)."""
        return correction_matrix(self.ellipse_ratio, self.ellipse_angle)

    def _cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def _inv_dq(self) -> float:
        """n_q / (edges[-1] − edges[0]) for (near-)uniform edges (arithmetic bin guess), else 0 (binary search)."""
        return self._cached("inv_dq", lambda: uniform_inv_dq(self.edges))

    def _fast_table(self, n_phi: int):
        """Interleaved unsigned table (bin·_W + p % _W; masked and unused pixels → bin n_phi·n_q) and the columns
        [j0, j1) of each row holding used pixels (int64, shape (ny, 2))."""

        def build():
            nb = n_phi * self.n_q
            npix = self.shape[0] * self.shape[1]
            table = np.full(npix, nb, np.int64)
            table[self.pixel_index] = self._sector_entries(n_phi)
            spans = row_spans((table < nb).reshape(self.shape))
            return (table * _W + np.arange(npix) % _W).astype(np.uint32), spans

        return self._cached(("table", n_phi), build)

    def _bin_counts(self, n_phi: int) -> np.ndarray:
        """Used (unmasked) pixels of each of the n_phi·n_q bins without splitting (int64): the count of every
        pattern of unsigned integer data about the fixed centre."""

        def build():
            nb = n_phi * self.n_q
            return np.bincount(self._sector_entries(n_phi), minlength=nb)[:nb].astype(np.int64)

        return self._cached(("counts", n_phi), build)

    def _offset_table(self, n_phi: int, pad: int):
        """Interleaved unsigned bins (bin·_W + column % _W, unused → n_phi·n_q) of the pixel centres of a grid that
        extends the detector by ``pad`` pixels on every side (mask not applied: the kernels test the detector
        pixel), and the columns [j0, j1) of each grid row holding used cells (int64, shape (ny + 2·pad, 2))."""

        def build():
            ny, nx = self.shape
            ty, tx = ny + 2 * pad, nx + 2 * pad
            nb = n_phi * self.n_q
            m00, m01, m11 = self._geo()
            bins = np.empty(ty * tx, np.int64)
            _grid_table(
                -pad, ty, -pad, tx, self.center[0], self.center[1], m00, m01, m11, self.pixel_size, self.edges,
                self._inv_dq, n_phi, bins,
            )  # fmt: skip
            spans = row_spans((bins < nb).reshape(ty, tx))
            return (bins * _W + np.arange(ty * tx) % tx % _W).astype(np.uint32), spans

        return self._cached(("offset", n_phi, pad), build)

    def _phi_lookup(self, n_phi: int) -> np.ndarray:
        """Sector look-up table of the diamond angle (geometry.phi_lookup)."""
        return self._cached(("phi", n_phi), lambda: phi_lookup(n_phi))

    def _s_tables(self):
        """Exact squared-radius thresholds of the bin edges and their look-up table (geometry.s_thresholds)."""

        def build():
            thr = s_thresholds(self.edges, self.pixel_size)
            return (thr,) + s_lookup(thr)

        return self._cached("s_tables", build)

    def _direct_params(self, n_phi: int):
        """Constants of the direct-bin sector kernel, or None where it does not apply (geometry.direct_params)."""
        return self._cached(
            ("direct", n_phi), lambda: direct_params(self.edges, self.pixel_size, self._s_tables()[0], n_phi)
        )

    def _segment_params(self, n_phi: int):
        """Constants of the segment sector kernel (kernels._k_sectors): ((a, b, eps), q, 1 / gain, seg, n_cross) with
        f = √s·a − b the fractional bin and eps its base margin [bins] (geometry.direct_params, plus the float32
        rounding of the squared radius) and the row crossings of geometry.sector_segments; None where the direct
        bins do not apply."""

        def build():
            prm = self._direct_params(n_phi)
            if prm is None:
                return None
            a, b, eps_r = (float(v) for v in prm[:3])
            f_top = math.sqrt(float(self._s_tables()[0][-1])) * a + 2.0 * a
            eps = eps_r + 4.0 * 2.0**-24 * (f_top + abs(b))
            q, gain, seg, n_cross = sector_segments(*self._geo(), n_phi)
            return (prm[0], prm[1], eps), q, 1.0 / gain, seg, n_cross

        return self._cached(("segments", n_phi), build)

    def _sector_cmax(self, n_phi: int) -> int:
        """Most pixels one (sector, radial bin) can hold for any centre (geometry.sector_count_bound), capped at the
        unmasked pixels [pixels]: the field widths of the packed sector sums."""

        def build():
            m00, m01, m11 = self._geo()
            cb = sector_count_bound(self.edges, self.pixel_size, m00, m01, m11, n_phi)
            return min(cb, int(self.mask.sum()))

        return self._cached(("cmax", n_phi), build)

    def _capacity(self) -> int:
        """Upper bound of the number of (pixel, bin) entries."""
        npix = self.shape[0] * self.shape[1]
        if not self.split_pixels:
            return npix
        widths = np.diff(self.edges)
        extent = math.sqrt(2.0) * max(1.0, 1.0 / self.ellipse_ratio) * self.pixel_size
        return npix * (int(math.ceil(extent / widths.min())) + 2)

    def _entries(self, n_phi: int):
        """(pixel, bin, weight) entries of the plan's centre for n_phi sectors, in pixel order (bin = sector·n_q
        + k): int32, int32, float64 arrays."""
        m00, m01, m11 = self._geo()
        cap = self._capacity()
        pix = np.empty(cap, np.int32)
        bins = np.empty(cap, np.int32)
        w = np.empty(cap)
        ne = _pixel_entries(
            self.shape[0], self.shape[1], self.center[0], self.center[1], m00, m01, m11, self.pixel_size,
            self.edges, self._inv_dq, self.split_pixels, n_phi, self.mask.ravel(), pix, bins, w,
        )  # fmt: skip
        return pix[:ne].copy(), bins[:ne].copy(), w[:ne].copy()

    def _sector_entries(self, n_phi: int) -> np.ndarray:
        """Combined bin index sector·n_q + k of the plan's entries for n_phi sectors."""
        return self.bin_index if n_phi == 1 else self._entries(n_phi)[1]

    def integrate(
        self,
        data,
        shifts=None,
        *,
        n_phi: int | None = None,
        statistic: str = "mean",
        clip_sigma: float = 3.0,
        chunk_size: int | None = None,
        progress: bool = False,
        out: RadialProfiles | None = None,
    ) -> RadialProfiles:
        """Integrate a stack of patterns into radial (or sector) profiles.

        Parameters
        ----------
        data : array-like, shape (..., ny, nx)  [counts or intensity per pixel]
            NumPy array, memmap, h5py dataset (read chunk by chunk, never whole) or dask array (processed
            block by block). Integer data are never converted as a whole; sums are accumulated in float64.
        shifts : array-like or None, shape data.shape[:-2] + (2,)  [px]
            Per-pattern (dy, dx): where each pattern's centre actually is minus ``plan.center`` (descan).
        n_phi : int or None
            Number of azimuthal sectors; profiles then have shape (..., n_phi, n_q).
        statistic : {"mean", "clipped", "median"}
            Per-ring statistic stored in ``mean``: the plain mean, an iterated sigma-clipped mean (robust to
            Bragg spots; pixels with |I − mean| > clip_sigma·std are dropped until none change), or the median.
        clip_sigma : float
            Clipping threshold in standard deviations (``statistic="clipped"`` only).
        chunk_size : int or None
            Patterns per chunk (default: about 128 MB of data per chunk).
        progress : bool
            Show a tqdm progress bar over chunks.
        out : RadialProfiles or None
            The result of an earlier call of the same output shape (leading dimensions, n_phi, n_q): its five
            float64 fields (``mean``, ``sum``, ``count``, ``sem_poisson``, ``sem_azimuthal``) are overwritten and
            shared by the returned profiles. Saves allocating and first touching the output in loops over
            chunks of a scan: with 32 sectors it is 154 kB per pattern, more than a 256² uint16 pattern, and a
            first touch of fresh memory can cost more than the binning (``docs/measurements.md``, "Output
            volume and page faults").

        Returns
        -------
        RadialProfiles
            Leading dimensions of ``data`` preserved.
        """
        return RadialProfiles(
            **executor.integrate(
                self,
                data,
                shifts,
                n_phi=n_phi,
                statistic=statistic,
                clip_sigma=clip_sigma,
                chunk_size=chunk_size,
                progress=progress,
                out=out,
            )
        )

    def mean_profiles(
        self, data, shifts=None, *, n_phi: int | None = None, dtype=np.float32, out=None, chunk_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and Poisson standard error only, written straight into arrays of ``dtype``: the ``mean`` and
        ``sem_poisson`` of :meth:`integrate` (statistic ``"mean"``; the same kernels and arithmetic, rounded
        once to ``dtype``) without the other fields — for many-sector maps of whole scans, where building
        every field in float64 costs as much as the binning.

        Parameters
        ----------
        data : array-like, shape (..., ny, nx)  [counts or intensity per pixel]
            NumPy array, memmap or h5py dataset (read ``chunk_size`` patterns at a time).
        shifts : array-like or None, shape data.shape[:-2] + (2,)  [px]
            Per-pattern (dy, dx) as in :meth:`integrate`.
        n_phi : int or None
            Number of azimuthal sectors; outputs then have shape (..., n_phi, n_q).
        dtype : numpy float dtype
            Type of the returned arrays.
        out : (ndarray, ndarray) or None
            C-contiguous arrays of the output shape and ``dtype`` to write into.
        chunk_size : int
            Patterns per kernel call (their float64 accumulators stay in cache and are reused).

        Returns
        -------
        mean : ndarray, shape (..., n_q) or (..., n_phi, n_q)  [intensity per pixel]
            NaN in empty bins.
        sem_poisson : ndarray, same shape  [intensity per pixel]
        """
        return executor.mean_profiles(self, data, shifts, n_phi=n_phi, dtype=dtype, out=out, chunk_size=chunk_size)


def make_plan(
    shape,
    *,
    center,
    pixel_size: float,
    edges=None,
    n_bins: int | None = None,
    q_max: float | None = None,
    q_min: float = 0.0,
    mask=None,
    ellipse_ratio: float = 1.0,
    ellipse_angle: float = 0.0,
    split_pixels: bool = False,
) -> RadialPlan:
    """Build a radial integration plan.

    Parameters
    ----------
    shape : tuple of int  [px]
        Detector shape ``(ny, nx)``.
    center : tuple of float  [px]
        Beam centre ``(cy, cx)`` in index coordinates (pixel (i, j) centred at (i, j)); see
        :func:`abtem_center` and :func:`center_from_pyfai` for conversions.
    pixel_size : float  [Å⁻¹/px]
        Q = 1/d per pixel; see :func:`pixel_size_from_mrad`.
    edges : array-like or None  [Å⁻¹]
        Strictly increasing bin edges. If None, ``n_bins`` equal bins over [q_min, q_max].
    n_bins : int or None
        Number of bins when ``edges`` is None (default: bins one pixel wide, ceil((q_max − q_min) /
        pixel_size)).
    q_max : float or None  [Å⁻¹]
        Upper Q limit when ``edges`` is None (default: the largest Q whose whole ring lies on the detector,
        i.e. the smallest corrected radius of a border pixel centre).
    q_min : float  [Å⁻¹]
        Lower Q limit when ``edges`` is None.
    mask : array-like of bool or None, shape ``shape``
        True = use the pixel; None uses all pixels.
    ellipse_ratio : float
        ρ > 0: the recorded pattern is stretched by ρ along ``ellipse_angle`` (module docstring).
    ellipse_angle : float  [rad]
        Direction of the stretch, from +x (increasing column) towards +y (increasing row).
    split_pixels : bool
        Share each pixel's intensity among the bins its radial extent covers.

    Returns
    -------
    RadialPlan
    """
    shp = _check_shape(shape)
    c = _check_center(center)
    ps, rho, ang = _check_geometry(pixel_size, ellipse_ratio, ellipse_angle)
    if edges is None:
        qmn = float(q_min)
        if not np.isfinite(qmn) or qmn < 0:
            raise ValueError(f"q_min={q_min!r}: must be a finite Q >= 0 [Å⁻¹]")
        if q_max is None:
            r = radius_px(shp, c, rho, ang)
            border = np.concatenate([r[0], r[-1], r[:, 0], r[:, -1]])
            qmx = float(border.min()) * ps
        else:
            qmx = float(q_max)
        if not np.isfinite(qmx) or qmx <= qmn:
            raise ValueError(f"q_max={q_max!r} (→ {qmx!r} Å⁻¹): must be finite and larger than q_min={qmn!r} [Å⁻¹]")
        if n_bins is None:
            nbins = max(1, int(math.ceil((qmx - qmn) / ps - 1e-9)))
        else:
            if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
                raise ValueError(f"n_bins={n_bins!r}: must be a positive integer")
            nbins = int(n_bins)
        edges = np.linspace(qmn, qmx, nbins + 1)
    return RadialPlan(
        shape=shp,
        center=c,
        pixel_size=ps,
        edges=edges,
        mask=mask,
        ellipse_ratio=rho,
        ellipse_angle=ang,
        split_pixels=bool(split_pixels),
    )


def make_plan_from_geometry(geometry, **kwargs) -> RadialPlan:
    """Build a plan from a :class:`simkit.geometry.DetectorGeometry`.

    Parameters
    ----------
    geometry : DetectorGeometry
        Supplies ``shape`` [px], ``center`` [px] and ``pixel_size`` [Å⁻¹/px].
    **kwargs
        Any other keyword of :func:`make_plan` (edges, n_bins, q_max, q_min, mask, ellipse_ratio,
        ellipse_angle, split_pixels); ``center`` and ``pixel_size`` override the geometry's if given.

    Returns
    -------
    RadialPlan
    """
    for attr in ("shape", "center", "pixel_size"):
        if not hasattr(geometry, attr):
            raise TypeError(f"geometry={type(geometry).__name__}: expected a DetectorGeometry (lacks {attr!r})")
    kwargs.setdefault("center", geometry.center)
    kwargs.setdefault("pixel_size", geometry.pixel_size)
    return make_plan(geometry.shape, **kwargs)
