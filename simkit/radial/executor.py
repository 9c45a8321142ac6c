"""The one driver behind :meth:`RadialPlan.integrate` and :meth:`RadialPlan.mean_profiles`: argument checks,
chunking of the leading axes (NumPy, memmap, h5py chunk by chunk, dask block by block), threading, the choice of
kernel for each chunk and the finishing pass.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import numpy as np
from numba import get_num_threads, set_num_threads

from .geometry import whole_pixel_shifts
from .kernels import (
    _GROUP8,
    _NF,
    _PARALLEL_FINISH_BINS,
    _k_direct,
    _k_entries,
    _k_finish,
    _k_finish_parallel,
    _k_fixed,
    _k_fixed8,
    _k_offset,
    _k_offset_mean,
    _k_robust,
    _k_sectors,
    _k_shift,
    _k_shifted,
)

STATISTICS = ("mean", "clipped", "median")
#: chunks with fewer patterns run on one thread (the parallel kernels are called with set_num_threads(1))
_MIN_PARALLEL = 4
#: dtypes the table and shifted kernels take as they are (uint8/uint16 summed exactly in int64, the others in
#: float64; uint32 counts at high dose are exact below 2^53); every other dtype is converted chunk by chunk
_FAST_DTYPES = (np.uint8, np.uint16, np.uint32, np.float32, np.float64)


#: _k_fixed8's intrinsics read four 16-bit pixels as the lanes of one uint64 word (pattern k in bits 16k up):
#: little-endian hosts only (elsewhere _k_fixed)
_LITTLE_ENDIAN = sys.byteorder == "little"


# ----------------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------------
def check_stack(data, shape: tuple[int, int]) -> tuple[int, ...]:
    """Shape of ``data`` after checking it is a real array of patterns (..., ny, nx) of the plan's detector."""
    dshape = getattr(data, "shape", None)
    if dshape is None or not hasattr(data, "dtype"):
        raise TypeError(
            f"data={type(data).__name__}: expected an array of shape (..., ny, nx) "
            "(numpy, memmap, h5py dataset or dask array)"
        )
    dshape = tuple(int(s) for s in dshape)
    if len(dshape) < 2 or dshape[-2:] != shape:
        raise ValueError(
            f"data.shape={dshape}: the last two axes must equal the plan's detector shape {shape} (ny, nx)"
        )
    dt = np.dtype(data.dtype)
    if dt.kind not in "biuf":
        raise TypeError(f"data.dtype={dt}: expected a real numeric dtype (integer, unsigned or float)")
    return dshape


def check_n_phi(n_phi) -> int:
    """Number of sectors (1 for None)."""
    if n_phi is None:
        return 1
    if isinstance(n_phi, bool) or not isinstance(n_phi, (int, np.integer)) or n_phi < 1:
        raise ValueError(f"n_phi={n_phi!r}: must be a positive integer number of sectors or None")
    return int(n_phi)


def check_chunk(chunk_size, default: int | None = None) -> int:
    """Patterns per chunk; None takes ``default`` when one is given."""
    if chunk_size is None and default is not None:
        return default
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        alt = " or None" if default is not None else ""
        raise ValueError(f"chunk_size={chunk_size!r}: must be a positive number of patterns{alt}")
    return int(chunk_size)


def _check_finite(shifts):
    if not np.all(np.isfinite(shifts)):
        raise ValueError("shifts: contains non-finite values; give finite (dy, dx) [px]")


def check_shifts(shifts, lead: tuple[int, ...], lazy: bool = False):
    """Per-pattern (dy, dx) [px] of shape lead + (2,) as float64 (left lazy for dask data when ``lazy``)."""
    if shifts is None:
        return None
    if type(shifts).__module__.startswith("dask") and not lazy:
        shifts = np.asarray(shifts.compute())
    sshape = tuple(int(s) for s in shifts.shape) if hasattr(shifts, "shape") else np.shape(shifts)
    if sshape != lead + (2,):
        raise ValueError(f"shifts.shape={sshape}: must be data.shape[:-2] + (2,) = {lead + (2,)} with (dy, dx) [px]")
    if lazy:
        return shifts
    shifts = np.asarray(shifts, dtype=np.float64)
    _check_finite(shifts)
    return shifts


# ----------------------------------------------------------------------------------------------------------
# chunks
# ----------------------------------------------------------------------------------------------------------
def native(block, npix: int) -> np.ndarray:
    """Block as C-contiguous (m, npix) in native byte order, booleans as uint8 (what the kernels take)."""
    block = np.ascontiguousarray(block).reshape(-1, npix)
    if block.dtype.kind == "b":
        return block.view(np.uint8)
    if not block.dtype.isnative:  # e.g. big-endian data from a file
        return block.astype(block.dtype.newbyteorder("="))
    return block


def leading_blocks(lead: tuple[int, ...], chunk: int):
    """Split the flattened leading index range into contiguous blocks of at most ``chunk`` patterns.

    Yields (start, stop, index) with ``index`` a tuple of ints and one slice, usable on h5py datasets.
    """
    if len(lead) == 0:
        yield 0, 1, ()
        return
    # slice the outermost axis whose trailing block of patterns fits in one chunk
    axis = len(lead) - 1
    while axis > 0 and int(np.prod(lead[axis:], dtype=np.int64)) <= chunk:
        axis -= 1
    inner = int(np.prod(lead[axis + 1 :], dtype=np.int64))
    step = max(1, chunk // max(inner, 1))
    for k, outer in enumerate(np.ndindex(*lead[:axis])):
        base = k * lead[axis] * inner
        for a0 in range(0, lead[axis], step):
            a1 = min(lead[axis], a0 + step)
            yield base + a0 * inner, base + a1 * inner, tuple(int(o) for o in outer) + (slice(a0, a1),)


@contextmanager
def _threads_for(m: int):
    """One thread for chunks of fewer than _MIN_PARALLEL patterns (waking the thread pool costs more than it
    saves: on a loaded machine ~1 ms), all threads otherwise."""
    threads = get_num_threads()
    if m >= _MIN_PARALLEL or threads == 1:
        yield
        return
    set_num_threads(1)
    try:
        yield
    finally:
        set_num_threads(threads)


def _pad(ish: np.ndarray) -> int:
    """Margin of the moved table for whole-pixel shifts: the largest shift rounded up to a multiple of 8 (so that
    tables are reused between chunks)."""
    return -(-int(np.abs(ish).max(initial=0)) // 8) * 8


def run_chunk(plan, block, shifts, n_phi, statistic, clip_sigma, bins_phi, out):
    """Integrate one chunk: block (m, ny·nx) native, shifts (m, 2) float64 or None.

    ``out``: the accumulators (m, 6, n_phi·n_q), C-contiguous; or, for statistic "mean" without splitting, the
    finished fields written straight from the kernels' sums: a 5-tuple (mean, sum, count, sem_poisson,
    sem_azimuthal) or a 2-tuple (mean, sem_poisson) of (m, n_phi·n_q) float arrays (the same arithmetic as the
    finishing pass).
    """
    m = block.shape[0]
    if m == 0:
        return out
    nb = n_phi * plan.n_q
    m00, m01, m11 = plan._geo()
    ny, nx = plan.shape
    cy, cx = plan.center
    valid = plan.mask.ravel()
    idq = plan._inv_dq
    fast = statistic == "mean" and not plan.split_pixels
    fused = isinstance(out, tuple)
    if fused and not fast:
        raise AssertionError("finished outputs need statistic 'mean' without splitting")
    if not (block.dtype in (np.uint8, np.uint16) or (fast and block.dtype in _FAST_DTYPES)):
        # the general kernels are compiled for float64 only (bounded compile time); the chunk is converted,
        # never the whole stack
        block = block.astype(np.float64)
    ish = None
    if fast:
        ish = np.zeros((m, 2), np.int64) if shifts is None else whole_pixel_shifts(shifts, plan.shape)
    with _threads_for(m):
        if ish is not None and (shifts is not None or (fused and len(out) == 2)):
            # table moved by whole pixels (or by zero, for mean and error only): no geometry per pixel
            pad = _pad(ish)
            table, spans = plan._offset_table(n_phi, pad)
            kernel = _k_offset_mean if fused and len(out) == 2 else _k_offset
            kernel(block, ish, ny, nx, pad, table, spans, nb, valid, not bool(valid.all()), out)
        elif ish is not None:
            # fixed centre: the plan's table with the mask applied
            table, spans = plan._fast_table(n_phi)
            if block.dtype in (np.uint8, np.uint16):
                counts = plan._bin_counts(n_phi)
                kernel = _k_fixed8 if m >= _GROUP8 and _LITTLE_ENDIAN else _k_fixed
                kernel(block, ny, nx, table, spans, nb, counts, int(counts.max(initial=0)), valid, out)
            else:
                _k_offset(block, ish, ny, nx, 0, table, spans, nb, valid, False, out)
        elif statistic != "mean":
            sh = np.zeros((1, 2)) if shifts is None else shifts
            _k_robust(
                block, shifts is not None, sh, plan.pixel_index, bins_phi, plan.weight, ny, nx, cy, cx, m00,
                m01, m11, plan.pixel_size, plan.edges, idq, plan.split_pixels, n_phi, valid, plan._capacity(),
                statistic == "median", float(clip_sigma), out,
            )  # fmt: skip
        elif shifts is None:
            _k_entries(block, plan.pixel_index, bins_phi, plan.weight, out)
        elif plan.split_pixels:
            _k_shifted(
                block, shifts, ny, nx, cy, cx, m00, m01, m11, plan.pixel_size, plan.edges, idq, n_phi, valid, out
            )  # fmt: skip
        else:
            thr, lut, inv_h = plan._s_tables()
            prm = plan._direct_params(n_phi) if n_phi > 1 else None
            if prm is not None and block.dtype in (np.uint8, np.uint16):
                # sectors, unsigned integer data: segment sectors, float32 radii, packed (count, Σ I, Σ I²)
                sprm, sq, sgain, sseg, n_cross = plan._segment_params(n_phi)
                _k_sectors(
                    block, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, sprm, sq, sgain, sseg,
                    n_cross, valid, plan._sector_cmax(n_phi), out,
                )  # fmt: skip
                return out
            if prm is not None:  # sectors: direct float32 bins, exact near boundaries (same bins bit for bit)
                _k_direct(block, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, prm, valid, out)
                return out
            plut = plan._phi_lookup(n_phi)
            _k_shift(block, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, out)
    return out


# ----------------------------------------------------------------------------------------------------------
# drivers
# ----------------------------------------------------------------------------------------------------------
_OUT_FIELDS = ("mean", "sum", "count", "sem_poisson", "sem_azimuthal")


def check_out_profiles(out, lead: tuple[int, ...], shape: tuple[int, ...]) -> tuple[np.ndarray, ...] | None:
    """The five fields of ``out`` (a RadialProfiles) as flat (n_pat, n_bins) views, after checking they are
    C-contiguous float64 arrays of the output ``shape`` (``lead`` + bins); None when ``out`` is None."""
    if out is None:
        return None
    n_pat = int(np.prod(lead, dtype=np.int64))
    flat = []
    for name in _OUT_FIELDS:
        a = getattr(out, name, None)
        if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != np.float64 or not a.flags.c_contiguous:
            got = (None, None) if not isinstance(a, np.ndarray) else (a.shape, a.dtype)
            raise ValueError(
                f"out.{name}: need a C-contiguous float64 array of shape {shape} (got shape {got[0]}, dtype "
                f"{got[1]}); pass the RadialProfiles of an earlier call on data of the same leading shape and "
                "n_phi, or out=None"
            )
        if not a.flags.writeable:
            raise ValueError(f"out.{name} is read-only; pass writeable arrays or out=None")
        flat.append(a.reshape(n_pat, -1))
    return tuple(flat)


def integrate(plan, data, shifts, *, n_phi, statistic, clip_sigma, chunk_size, progress, out=None) -> dict:
    """Fields of the :class:`RadialProfiles` of ``data`` (see :meth:`RadialPlan.integrate`)."""
    shape = check_stack(data, plan.shape)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic={statistic!r}: must be one of {STATISTICS}")
    cs = float(clip_sigma)
    if not np.isfinite(cs) or cs <= 0:
        raise ValueError(f"clip_sigma={clip_sigma!r}: must be a positive number of standard deviations")
    nphi = check_n_phi(n_phi)
    lead = shape[:-2]
    n_pat = int(np.prod(lead, dtype=np.int64))
    is_dask = type(data).__module__.startswith("dask")
    shifts = check_shifts(shifts, lead, lazy=is_dask)
    npix = plan.shape[0] * plan.shape[1]
    chunk = check_chunk(chunk_size, default=max(1, (128 << 20) // max(1, npix * np.dtype(data.dtype).itemsize)))
    bins_phi = plan._sector_entries(nphi)
    nb = nphi * plan.n_q
    given = check_out_profiles(out, lead, lead + ((nphi, plan.n_q) if nphi > 1 else (plan.n_q,)))
    if given is not None and (is_dask or statistic != "mean" or plan.split_pixels):
        # the other paths build their own fields: computed as always, then copied into the given arrays
        res = integrate(
            plan, data, shifts, n_phi=n_phi, statistic=statistic, clip_sigma=clip_sigma, chunk_size=chunk_size,
            progress=progress,
        )  # fmt: skip
        for name, a in zip(_OUT_FIELDS, given):
            a[...] = res[name].reshape(a.shape)
        return _profile_fields(plan, given, lead, nphi, statistic)

    def run(block, sh, out=None):
        block = native(block, npix)
        if sh is not None:
            sh = np.ascontiguousarray(sh, dtype=np.float64).reshape(-1, 2)
            _check_finite(sh)
        if out is None:
            out = np.empty((block.shape[0], _NF, nb))
        return run_chunk(plan, block, sh, nphi, statistic, cs, bins_phi, out)

    if is_dask:
        return finish(plan, _integrate_dask(data, shifts, run, nb), nphi, statistic)
    # statistic "mean" without splitting: the kernels write the finished fields (no accumulator array)
    fused = statistic == "mean" and not plan.split_pixels
    acc = np.empty((n_pat, _NF, nb)) if not fused else None
    if given is not None:  # the fields' order in the kernels: mean, sum, count, sem_poisson, sem_azimuthal
        fields = given
    else:
        fields = tuple(np.empty((n_pat, nb)) for _ in range(5)) if fused else None
    blocks = list(leading_blocks(lead, chunk))
    if progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc="radial", unit="chunk")
    for start, stop, index in blocks:
        sh = None if shifts is None else shifts[index]
        out = tuple(f[start:stop] for f in fields) if fused else acc[start:stop]
        run(np.asarray(data[index]), sh, out)  # the kernels write into acc (or the fields) directly
    if not fused:
        return finish(plan, acc.reshape(lead + (_NF, nb)), nphi, statistic)
    return _profile_fields(plan, fields, lead, nphi, statistic)


def mean_profiles(plan, data, shifts, *, n_phi, dtype, out, chunk_size):
    """(mean, sem_poisson) of ``data`` written into arrays of ``dtype`` (see :meth:`RadialPlan.mean_profiles`)."""
    shape = check_stack(data, plan.shape)
    nphi = check_n_phi(n_phi)
    chunk = check_chunk(chunk_size)
    lead = shape[:-2]
    shifts = check_shifts(shifts, lead)
    oshape = lead + ((nphi, plan.n_q) if nphi > 1 else (plan.n_q,))
    if out is None:
        out = (np.empty(oshape, dtype), np.empty(oshape, dtype))
    for o in out:
        if o.shape != oshape or not o.flags.c_contiguous or o.dtype.kind != "f":
            raise ValueError(f"out: need two C-contiguous float arrays of shape {oshape}")
    if plan.split_pixels:  # weighted entries: the general path
        prof = integrate(
            plan, data, shifts, n_phi=n_phi, statistic="mean", clip_sigma=3.0, chunk_size=None, progress=False
        )
        out[0][...], out[1][...] = prof["mean"], prof["sem_poisson"]
        return out
    nb = nphi * plan.n_q
    npix = plan.shape[0] * plan.shape[1]
    n_pat = int(np.prod(lead, dtype=np.int64))
    mean, sem = out[0].reshape(n_pat, nb), out[1].reshape(n_pat, nb)
    if shifts is None or (n_pat > 0 and whole_pixel_shifts(shifts.reshape(-1, 2), plan.shape) is not None):
        # one pass per pattern over the table (no geometry per pixel): large read blocks
        chunk = max(chunk, (256 << 20) // max(1, npix * np.dtype(data.dtype).itemsize))
    bins_phi = plan._sector_entries(nphi)
    for start, stop, index in leading_blocks(lead, chunk):
        block = native(np.asarray(data[index]), npix)
        sh = None if shifts is None else np.ascontiguousarray(shifts[index]).reshape(-1, 2)
        run_chunk(plan, block, sh, nphi, "mean", 3.0, bins_phi, (mean[start:stop], sem[start:stop]))
    return out


def finish(plan, acc, nphi, statistic) -> dict:
    """Accumulators (..., 6, n_phi·n_q) → the fields of a RadialProfiles."""
    lead = acc.shape[:-2]
    flat = np.ascontiguousarray(acc).reshape(-1, _NF, acc.shape[-1])
    fields = tuple(np.empty(flat.shape[::2]) for _ in range(5))
    big = flat.shape[0] * flat.shape[2] >= _PARALLEL_FINISH_BINS and flat.shape[0] >= _MIN_PARALLEL
    (_k_finish_parallel if big else _k_finish)(flat, STATISTICS.index(statistic), *fields)
    return _profile_fields(plan, fields, lead, nphi, statistic)


def _profile_fields(plan, fields, lead, nphi, statistic) -> dict:
    """RadialProfiles fields from the flat (n_pat, n_phi·n_q) arrays (mean, sum, count, sem_poisson,
    sem_azimuthal)."""
    shp = lead + ((nphi, plan.n_q) if nphi > 1 else (plan.n_q,))
    mean, total, count, sem_p, sem_a = (f.reshape(shp) for f in fields)
    return dict(
        q=plan.q,
        edges=plan.edges.copy(),
        mean=mean,
        sum=total,
        count=count,
        sem_poisson=sem_p,
        sem_azimuthal=sem_a,
        statistic=statistic,
        phi_edges=np.linspace(0.0, 2.0 * np.pi, nphi + 1) if nphi > 1 else None,
    )


def _integrate_dask(data, shifts, run, nb):
    """Apply ``run`` block by block with dask.array.blockwise; returns the accumulators as NumPy."""
    import dask.array as da

    nd = data.ndim
    nl = nd - 2
    x = data.rechunk({nd - 2: -1, nd - 1: -1})
    lead_ind = tuple(range(nl))
    out_ind = lead_ind + (nl, nl + 1)
    if nl == 0:
        return np.asarray(run(np.asarray(x.compute()), None if shifts is None else np.asarray(shifts)))[0]
    if shifts is None:

        def f(b):
            return run(b, None).reshape(b.shape[:-2] + (_NF, nb))

        res = da.blockwise(
            f, out_ind, x, lead_ind + (nl + 2, nl + 3), new_axes={nl: _NF, nl + 1: nb}, dtype=float, concatenate=True
        )
    else:
        s = da.asarray(shifts).rechunk(x.chunks[:-2] + ((2,),))

        def f(b, sh):
            return run(b, sh).reshape(b.shape[:-2] + (_NF, nb))

        res = da.blockwise(
            f, out_ind, x, lead_ind + (nl + 2, nl + 3), s, lead_ind + (nl + 4,),
            new_axes={nl: _NF, nl + 1: nb}, dtype=float, concatenate=True,
        )  # fmt: skip
    return np.asarray(res.compute())
