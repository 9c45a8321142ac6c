"""Per-pixel radial (and sector) profiles of a whole scan, through ``simkit.radial``, streamed by chunks.

:func:`scan_profiles` integrates every pattern with the calibrated ``RadialPlan`` and the per-pattern descan
``shifts``, chunk by chunk (only one chunk of patterns is in memory at a time; h5py datasets, memmaps and dask
arrays are read block-wise), and then

* excludes the direct beam: bins with Q < ``exclude_direct`` become NaN;
* optionally bins spatially (``bin`` × ``bin`` probe positions; the bin's profile is Σsum / Σcount, i.e. the
  profile of the summed patterns);
* subtracts a background fitted per pixel to I(Q) in ``background_ranges``: ``"power"`` — A·Q^(−p) (linear
  least squares in log–log, positive data only) — or ``"poly"`` — a polynomial of degree ``poly_degree`` in Q;
* weights by Qⁿ (I·Qⁿ, n = 1 as in the study).

:func:`sector_profiles` gives ``n_phi`` azimuthal sector profiles per pattern (anisotropy, Bragg spots), used by
``fitting.classify``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from simkit.radial import RadialPlan, RadialProfiles
from structures.checks import check_positive

__all__ = ["ScanProfiles", "measured_profile", "scan_profiles", "sector_profiles", "subtract_background"]

BACKGROUNDS = ("power", "poly", None)


@dataclass(frozen=True, kw_only=True, eq=False)
class ScanProfiles:
    """Per-pixel profiles of a scan.

    Attributes
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
        Bin centres.
    intensity : ndarray (sy, sx, n_q)  [counts per pixel]
        Mean pixel intensity per bin (NaN below ``exclude_direct`` and in empty bins), background not removed.
    iq : ndarray (sy, sx, n_q)  [counts per pixel · Å⁻ⁿ]
        (intensity − background) · Qⁿ.
    sem : ndarray (sy, sx, n_q)  [counts per pixel]
        Poisson standard error of ``intensity`` (not weighted).
    background : ndarray (sy, sx, n_q) or None  [counts per pixel]
        Fitted background (None when ``background=None``).
    count : ndarray (sy, sx, n_q)  [pixels]
        Pixels per bin (summed over binned positions).
    total : ndarray (sy, sx)  [counts]
        Total counts per pattern inside the plan's bins (incl. the direct beam if the plan covers it).
    n : float
        Qⁿ exponent of ``iq``.
    bin : int
        Spatial binning factor.
    exclude_direct : float  [Å⁻¹]
    statistic : str
    edges : ndarray (n_q + 1,) or None  [Å⁻¹]
        Bin edges of the plan (None: midpoints between the centres are used by the conversions).

    ``to_radial_profiles()`` and ``class_sum(select)`` give the same data as a ``simkit.radial.RadialProfiles``
    (names there: ``mean`` = ``intensity``, ``sem_poisson`` = ``sem``, ``sum`` = intensity × count), the type
    :mod:`fitting.model`, :mod:`fitting.hypotheses` and :mod:`fitting.crystal_fit` take.
    """

    q: np.ndarray
    intensity: np.ndarray
    iq: np.ndarray
    sem: np.ndarray
    background: np.ndarray | None
    count: np.ndarray
    total: np.ndarray
    n: float
    bin: int
    exclude_direct: float
    statistic: str
    edges: np.ndarray | None = None

    def _edges(self) -> np.ndarray:
        if self.edges is not None:
            return np.asarray(self.edges, float)
        q = np.asarray(self.q, float)
        mid = 0.5 * (q[1:] + q[:-1])
        return np.concatenate([[q[0] - (mid[0] - q[0])], mid, [q[-1] + (q[-1] - mid[-1])]])

    def to_radial_profiles(self) -> RadialProfiles:
        """The per-pixel profiles as a ``RadialProfiles`` of shape (sy, sx, n_q), background not removed.

        ``mean`` = ``intensity`` [counts per pixel] (NaN below ``exclude_direct``), ``count`` [pixels],
        ``sum`` = mean × count [counts] (NaN where the mean is), ``sem_poisson`` = ``sem``; ``sem_azimuthal`` is
        not kept by :func:`scan_profiles` and is NaN.
        """
        mean = np.asarray(self.intensity, float)
        return RadialProfiles(
            q=np.asarray(self.q, float),
            edges=self._edges(),
            mean=mean,
            sum=mean * self.count,
            count=np.asarray(self.count, float),
            sem_poisson=np.asarray(self.sem, float),
            sem_azimuthal=np.full(mean.shape, np.nan),
            statistic=self.statistic,
        )

    def class_sum(self, select=None) -> RadialProfiles:
        """One profile of the summed patterns of the selected pixels (e.g. one class), for the likelihood fits.

        Parameters
        ----------
        select : ndarray of bool (sy, sx) or None
            Pixels to sum (None: all).

        Returns
        -------
        RadialProfiles (1-D)
            ``sum`` = Σ mean × count over the pixels with a finite mean [counts], ``count`` = Σ count over the
            same pixels [pixels] (0 → ``mean`` NaN), ``sem_poisson`` from the pixels' Poisson errors.
        """
        inten = np.asarray(self.intensity, float)
        sel = np.ones(inten.shape[:-1], bool) if select is None else np.asarray(select, bool)
        if sel.shape != inten.shape[:-1]:
            raise ValueError(f"select has shape {sel.shape}; expected the scan shape {inten.shape[:-1]}")
        if not sel.any():
            raise ValueError("select is empty: choose at least one pixel")
        i, c, e = inten[sel], np.asarray(self.count, float)[sel], np.asarray(self.sem, float)[sel]
        fin = np.isfinite(i)
        total = np.sum(np.where(fin, i * c, 0.0), axis=0)
        expo = np.sum(np.where(fin, c, 0.0), axis=0)
        var = np.sum(np.where(fin, (e * c) ** 2, 0.0), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(expo > 0, total / expo, np.nan)
            sem = np.where(expo > 0, np.sqrt(var) / expo, np.nan)
        return RadialProfiles(
            q=np.asarray(self.q, float),
            edges=self._edges(),
            mean=mean,
            sum=total,
            count=expo,
            sem_poisson=sem,
            sem_azimuthal=np.full(mean.shape, np.nan),
            statistic=self.statistic,
        )


def measured_profile(measured) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(q [Å⁻¹], counts [counts], exposure [pixels] or None) of one measured profile, for the likelihood fits.

    Parameters
    ----------
    measured : RadialProfiles, ScanProfiles or tuple
        A 1-D ``RadialProfiles`` (``q``, ``sum``, ``count``); a ``ScanProfiles`` (summed over all its pixels
        with :meth:`ScanProfiles.class_sum`; pass ``profiles.class_sum(mask)`` for one class); or
        ``(q, counts)`` / ``(q, counts, exposure)``.

    Returns
    -------
    tuple
    """
    if isinstance(measured, ScanProfiles):
        measured = measured.class_sum()
    if hasattr(measured, "q") and hasattr(measured, "sum") and hasattr(measured, "count"):
        s = np.asarray(measured.sum, float)
        if s.ndim != 1:
            raise ValueError(
                f"measured.sum has shape {s.shape}; give one 1-D profile (ScanProfiles.class_sum(select) sums pixels)"
            )
        return np.asarray(measured.q, float), s, np.asarray(measured.count, float)
    if isinstance(measured, tuple) and len(measured) in (2, 3):
        q, y = np.asarray(measured[0], float), np.asarray(measured[1], float)
        e = None if len(measured) == 2 else np.asarray(measured[2], float)
        return q, y, e
    raise TypeError(
        f"measured={type(measured).__name__}: give a RadialProfiles (q, sum, count), a ScanProfiles or a tuple "
        "(q, counts[, exposure])"
    )


def _data_of(scan):
    data = scan.data if hasattr(scan, "scan_shape") else scan
    if not hasattr(data, "shape") or len(data.shape) != 4:
        raise ValueError(f"scan: data of shape {getattr(data, 'shape', None)}; expected (scan_y, scan_x, det_y, det_x)")
    return data


def _check(plan, data, shifts):
    if not isinstance(plan, RadialPlan):
        raise TypeError(f"plan={type(plan).__name__}: expected a simkit.radial.RadialPlan (fitting.calibrate)")
    if tuple(data.shape[-2:]) != plan.shape:
        raise ValueError(f"scan detector shape {tuple(data.shape[-2:])} does not match plan.shape {plan.shape}")
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=float)
        if shifts.shape != tuple(data.shape[:2]) + (2,):
            raise ValueError(f"shifts.shape={shifts.shape}: must be {tuple(data.shape[:2]) + (2,)} (dy, dx) [px]")
    return shifts


def _rows_per_chunk(data, chunk):
    sx = int(data.shape[1])
    if chunk is None:
        per = int(np.prod(data.shape[2:])) * np.dtype(data.dtype).itemsize * sx
        return max(1, (64 << 20) // max(per, 1))
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk={chunk!r}: must be a positive number of patterns or None")
    return max(1, int(chunk) // sx)


def _row_blocks(data, shifts, chunk, shift_mode, progress, desc):
    """Yield (r0, r1, block as ndarray, shifts of the block) over chunks of scan rows (dask/h5py read once each)."""
    rows = _rows_per_chunk(data, chunk)
    sy = int(data.shape[0])
    it = range(0, sy, rows)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=desc, unit="rows", total=math.ceil(sy / rows))
    from fitting.chunks import ScanSource, reader

    # h5py datasets through fitting.chunks (raw chunks decoded in parallel); the index is built once per call
    rd = None if isinstance(data, ScanSource) else reader(data)
    read = data.read_rows if rd is None else rd.read
    ahead = None
    if PREFETCH and sy > rows and (rd is None or rd.fast) and _concurrent_kernels_safe():  # streamed reads only
        from concurrent.futures import ThreadPoolExecutor

        ahead = ThreadPoolExecutor(1)
    try:
        yield from _blocks(read, it, rows, sy, shifts, shift_mode, ahead)
    finally:
        if ahead is not None:
            ahead.shutdown(wait=True)


#: Read (and decode) the next block of scan rows in a second thread while the current one is integrated.
PREFETCH = os.environ.get("SEI_SEND_PREFETCH", "1") != "0"


def _concurrent_kernels_safe() -> bool:
    """Whether numba ``parallel=True`` kernels may run from two Python threads at once: yes with the OpenMP and
    TBB threading layers; numba's fallback "workqueue" layer terminates the process on concurrent access, and
    before any parallel kernel has run the layer is not known (then no read-ahead)."""
    import numba

    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:
        return False


def _blocks(read, it, rows, sy, shifts, shift_mode, ahead):
    nxt = None
    for r0 in it:
        r1 = min(sy, r0 + rows)
        if ahead is None:
            block = read(r0, r1)
        else:
            block = (nxt if nxt is not None else ahead.submit(read, r0, r1)).result()
            nxt = ahead.submit(read, r1, min(sy, r1 + rows)) if r1 < sy else None
        sh = None if shifts is None else shifts[r0:r1]
        if sh is not None and shift_mode == "integer":
            # whole-pixel shifts: simkit.radial bins them through its fixed tables moved by the shift (no copy of
            # the data, no geometry per pixel); the residual |δ| ≤ ½ px is neglected (see shift_mode)
            sh = np.rint(sh)
        yield r0, r1, np.asarray(block), sh


def _bin(a, b, reduce="sum"):
    if b == 1:
        return a
    sy, sx = a.shape[:2]
    ty, tx = sy // b, sx // b
    a = a[: ty * b, : tx * b]
    a = a.reshape((ty, b, tx, b) + a.shape[2:])
    return a.sum(axis=(1, 3)) if reduce == "sum" else a.mean(axis=(1, 3))


def scan_profiles(
    scan,
    plan: RadialPlan,
    *,
    shifts: np.ndarray | None = None,
    chunk: int | None = None,
    exclude_direct: float = 0.0,
    n: float = 1.0,
    background: str | None = None,
    background_ranges: list | None = None,
    poly_degree: int = 2,
    bin: int = 1,
    statistic: str = "mean",
    shift_mode: str = "exact",
    progress: bool = False,
    on_block=None,
) -> ScanProfiles:
    """Radial profiles of every pattern of a scan (or of ``bin`` × ``bin`` blocks of patterns).

    Parameters
    ----------
    scan : fitting.io.Scan or array-like (scan_y, scan_x, det_y, det_x)  [counts]
    plan : simkit.radial.RadialPlan
        Calibrated plan (``fitting.calibrate.calibrated_plan``).
    shifts : ndarray (scan_y, scan_x, 2) or None  [px]
        Per-pattern descan (actual centre − plan.center).
    chunk : int or None
        Patterns per chunk (rounded to whole scan rows); default ≈ 64 MB of raw data. Streamed data
        (:class:`fitting.chunks.ScanSource`, or an h5py dataset the parallel chunk reader covers) is read one
        block ahead in a second thread while the current block is integrated (the lzf decoder and the hot-pixel
        search release the GIL; 5 % less wall time at 128 × 128 on 2 cores, one block more in memory;
        ``SEI_SEND_PREFETCH=0`` in the environment switches it off). The numbers are the same either way.
    exclude_direct : float  [Å⁻¹]
        Bins with Q below this are set to NaN (direct beam and its tail), e.g. 1.2·α/λ.
    n : float
        Exponent of the I·Qⁿ weighting of ``iq``.
    background : {"power", "poly", None}
        Background model subtracted before weighting.
    background_ranges : list of (q_min, q_max) or None  [Å⁻¹]
        Q ranges used to fit the background (default: the whole profile above ``exclude_direct``).
    poly_degree : int
        Degree of the ``"poly"`` background.
    bin : int
        Spatial binning factor (positions that do not fill a whole block at the scan edge are dropped).
    statistic : {"mean", "clipped", "median"}
        Per-ring statistic of ``simkit.radial`` ("clipped" is robust to Bragg spots).
    shift_mode : {"exact", "integer"}
        ``exact``: the sub-pixel descan goes to ``simkit.radial`` (per-pattern geometry); ``integer``: the shift
        is rounded to whole pixels, which ``simkit.radial`` bins through the plan's precomputed tables moved by
        the shift (no geometry per pixel) — much faster; the neglected residual |δ| ≤ ½ px moves azimuthal
        averages only at second order (δ²/4r, < 0.002 px at r = 30 px) but blurs sectors by up to ½ px.
    progress : bool
        Show a progress bar.
    on_block : callable or None
        Called as ``on_block(r0, r1, block, shifts, rows)`` with every block of scan rows [r0, r1) as read
        (``block`` an ndarray (r1 − r0, scan_x, det_y, det_x) [counts], ``shifts`` those the block was integrated
        with [px], ``rows`` the finished ScanProfiles of those rows), so that other per-pattern work shares the
        one read (and decompression) of each block; only with ``bin=1`` and ``background=None``.

    Returns
    -------
    ScanProfiles
    """
    data = _data_of(scan)
    shifts = _check(plan, data, shifts)
    if background not in BACKGROUNDS:
        raise ValueError(f"background={background!r}: choose one of {BACKGROUNDS}")
    if isinstance(bin, bool) or not isinstance(bin, (int, np.integer)) or bin < 1:
        raise ValueError(f"bin={bin!r}: must be a positive integer binning factor")
    if bin > min(data.shape[:2]):
        raise ValueError(f"bin={bin}: larger than the scan {tuple(data.shape[:2])}")
    exclude_direct = check_positive("exclude_direct", exclude_direct, "Å⁻¹", allow_zero=True)
    if exclude_direct >= plan.edges[-1]:
        raise ValueError(f"exclude_direct={exclude_direct} Å⁻¹ removes every bin (plan ends at {plan.edges[-1]:.4g})")
    sy, sx = int(data.shape[0]), int(data.shape[1])
    nq = plan.n_q
    q = plan.q
    drop = q < exclude_direct
    if shift_mode not in ("exact", "integer"):
        raise ValueError(f"shift_mode={shift_mode!r}: 'exact' or 'integer'")
    if bin == 1 and background is None:
        # per block straight into the outputs (no whole-scan sums kept): the same numbers, elementwise per pixel
        mean, sem, s0 = (np.empty((sy, sx, nq)) for _ in range(3))
        total = np.empty((sy, sx))
        for r0, r1, block, sh in _row_blocks(data, shifts, chunk, shift_mode, progress, "profiles"):
            prof = plan.integrate(block, sh, statistic=statistic)
            s0[r0:r1] = prof.count
            mean[r0:r1] = prof.mean
            var = prof.sem_poisson**2 * prof.count**2  # Σw²·I
            with np.errstate(invalid="ignore", divide="ignore"):
                sem[r0:r1] = np.where(prof.count > 0, np.sqrt(np.maximum(var, 0.0)) / prof.count, np.nan)
            total[r0:r1] = np.nansum(prof.sum, axis=-1)
            del prof, var
            mean[r0:r1, :, drop] = np.nan
            sem[r0:r1, :, drop] = np.nan
            if on_block is not None:
                rows = ScanProfiles(
                    q=q, intensity=mean[r0:r1], iq=mean[r0:r1] * q**n, sem=sem[r0:r1], background=None,
                    count=s0[r0:r1], total=total[r0:r1], n=float(n), bin=1, exclude_direct=exclude_direct,
                    statistic=statistic, edges=np.asarray(plan.edges, float),
                )  # fmt: skip
                on_block(r0, r1, block, sh, rows)
        return ScanProfiles(
            q=q, intensity=mean, iq=mean * q**n, sem=sem, background=None, count=s0, total=total, n=float(n),
            bin=1, exclude_direct=exclude_direct, statistic=statistic, edges=np.asarray(plan.edges, float),
        )  # fmt: skip
    s1 = np.empty((sy, sx, nq))
    s0 = np.empty((sy, sx, nq))
    mean = np.empty((sy, sx, nq))
    var = np.empty((sy, sx, nq))
    if on_block is not None:
        raise ValueError("on_block: only with bin=1 and background=None (per-block profiles are final only then)")
    for r0, r1, block, sh in _row_blocks(data, shifts, chunk, shift_mode, progress, "profiles"):
        prof = plan.integrate(block, sh, statistic=statistic)
        s1[r0:r1] = prof.sum
        s0[r0:r1] = prof.count
        mean[r0:r1] = prof.mean
        var[r0:r1] = prof.sem_poisson**2 * prof.count**2  # Σw²·I
    total = np.nansum(s1, axis=-1)
    if bin > 1:
        s1b, s0b, vb = _bin(s1, bin), _bin(s0, bin), _bin(var, bin)
        robust = _bin(np.where(np.isfinite(mean), mean, 0.0) * s0, bin)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(s0b > 0, (s1b if statistic == "mean" else robust) / s0b, np.nan)
        s1, s0, var = s1b, s0b, vb
        total = _bin(total, bin)
    with np.errstate(invalid="ignore", divide="ignore"):
        sem = np.where(s0 > 0, np.sqrt(np.maximum(var, 0.0)) / s0, np.nan)
    mean[..., drop] = np.nan
    sem[..., drop] = np.nan
    bg = None
    sub = mean
    if background is not None:
        bg = subtract_background(q, mean, model=background, ranges=background_ranges, degree=poly_degree)
        sub = mean - bg
    iq = sub * q**n
    return ScanProfiles(
        q=q,
        intensity=mean,
        iq=iq,
        sem=sem,
        background=bg,
        count=s0,
        total=total,
        n=float(n),
        bin=int(bin),
        exclude_direct=exclude_direct,
        statistic=statistic,
        edges=np.asarray(plan.edges, float),
    )


def subtract_background(q, intensity, *, model="power", ranges=None, degree=2) -> np.ndarray:
    """Background of every profile fitted in ``ranges`` (vectorised over leading dims).

    Parameters
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
    intensity : ndarray (..., n_q)  [counts per pixel]
        NaN bins are ignored.
    model : {"power", "poly"}
        ``"power"``: A·Q^(−p), fitted as a straight line in (log Q, log I) over positive finite bins;
        ``"poly"``: Σ c_k Q^k, k ≤ ``degree``.
    ranges : list of (q_min, q_max) or None  [Å⁻¹]
        Bins used for the fit (default all finite bins).
    degree : int
        Polynomial degree for ``"poly"``.

    Returns
    -------
    ndarray like ``intensity``  [counts per pixel]
        The background evaluated on ``q`` (NaN where the fit had fewer points than parameters).
    """
    q = np.asarray(q, dtype=float)
    I = np.asarray(intensity, dtype=float)
    if I.shape[-1] != q.size:
        raise ValueError(f"intensity.shape={I.shape}: last axis must match q ({q.size})")
    if model not in ("power", "poly"):
        raise ValueError(f"model={model!r}: choose 'power' or 'poly'")
    sel = np.ones(q.size, dtype=bool)
    if ranges is not None:
        sel = np.zeros(q.size, dtype=bool)
        for lo_hi in ranges:
            lo, hi = (float(v) for v in lo_hi)
            if not hi > lo:
                raise ValueError(f"background_ranges item {lo_hi!r}: need q_min < q_max [Å⁻¹]")
            sel |= (q >= lo) & (q <= hi)
    flat = I.reshape(-1, q.size)
    if model == "power":
        y = np.log(np.where(flat > 0, flat, np.nan))
        x = np.log(np.where(q > 0, q, np.nan))
        X = np.stack([np.ones_like(x), x], axis=1)
    else:
        if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
            raise ValueError(f"degree={degree!r}: non-negative integer")
        y = flat.copy()
        xs = q / max(q[sel].max() if sel.any() else 1.0, 1e-12)
        X = np.stack([xs**k for k in range(int(degree) + 1)], axis=1)
    use = np.isfinite(y) & sel[None, :] & np.all(np.isfinite(X), axis=1)[None, :]
    yz = np.where(use, y, 0.0)
    Xz = np.where(np.all(np.isfinite(X), axis=1)[:, None], X, 0.0)
    # per-row normal equations (rows differ in which bins are usable)
    A = np.einsum("nm,mi,mj->nij", use.astype(float), Xz, Xz)
    b = np.einsum("nm,mi->ni", yz * use, Xz)
    npar = X.shape[1]
    okr = use.sum(axis=1) >= npar + 1
    coef = np.full((flat.shape[0], npar), np.nan)
    if okr.any():
        A_ok = A[okr] + 1e-12 * np.eye(npar)
        coef[okr] = np.linalg.solve(A_ok, b[okr][..., None])[..., 0]
    fit = coef @ Xz.T
    if model == "power":
        fit = np.exp(fit)
        fit[:, ~np.isfinite(x)] = np.nan
    return fit.reshape(I.shape)


def sector_profiles(
    scan,
    plan: RadialPlan,
    *,
    n_phi: int = 16,
    shifts: np.ndarray | None = None,
    chunk: int | None = None,
    dtype=np.float32,
    shift_mode: str = "integer",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Azimuthal sector profiles of every pattern (for anisotropy / Bragg-spot features).

    Parameters
    ----------
    scan : fitting.io.Scan or array-like (scan_y, scan_x, det_y, det_x)  [counts]
    plan : RadialPlan
        Typically a coarser plan than for peak maps (fewer bins keeps memory at sy·sx·n_phi·n_q·2 values).
    n_phi : int
        Number of sectors (sector s covers azimuth [2π s/n_phi, 2π (s+1)/n_phi), from +x towards +y).
    shifts : ndarray or None  [px]
    chunk : int or None
        Patterns per chunk.
    dtype : numpy dtype
        Storage type of the returned arrays.
    shift_mode : {"exact", "integer"}
        How the descan is applied (see :func:`scan_profiles`); default ``integer`` (patterns moved by whole
        pixels, then the plan's tables — fast; spot features tolerate the neglected ≤ ½ px).
    progress : bool
        Show a progress bar.

    Returns
    -------
    q : ndarray (n_q,)  [Å⁻¹]
    mean : ndarray (sy, sx, n_phi, n_q)  [counts per pixel]
    sem : ndarray (sy, sx, n_phi, n_q)  [counts per pixel]  Poisson standard error
    """
    data = _data_of(scan)
    shifts = _check(plan, data, shifts)
    if isinstance(n_phi, bool) or not isinstance(n_phi, (int, np.integer)) or n_phi < 2:
        raise ValueError(f"n_phi={n_phi!r}: must be an integer number of sectors >= 2")
    if shift_mode not in ("exact", "integer"):
        raise ValueError(f"shift_mode={shift_mode!r}: 'exact' or 'integer'")
    sy, sx = int(data.shape[0]), int(data.shape[1])
    mean = np.empty((sy, sx, int(n_phi), plan.n_q), dtype=dtype)
    sem = np.empty_like(mean)
    for r0, r1, block, sh in _row_blocks(data, shifts, chunk, shift_mode, progress, "sectors"):
        # mean and standard error only, straight into the (float32) outputs
        plan.mean_profiles(block, sh, n_phi=int(n_phi), out=(mean[r0:r1], sem[r0:r1]))
    return plan.q, mean, sem
