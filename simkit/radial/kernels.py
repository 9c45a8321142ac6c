"""Numba kernels of radial integration: one kernel per geometry path, any dtype.

Every kernel takes arrays and scalars only and writes per-pattern rows of its output (``parallel=True`` over
patterns, each thread owns its patterns' rows). Geometry paths:

* table (fixed centre or whole-pixel shifts), no splitting: :func:`_k_offset` / :func:`_k_offset_mean` read a
  per-pixel interleaved table ``bin·_W + column % _W`` (the fixed centre is the table moved by zero);
* fixed centre, uint8/uint16: :func:`_k_fixed8` (eight patterns per sweep, chunks of fewer patterns
  :func:`_k_fixed`): Σ I and Σ I² packed into one uint64 per pixel (the count is the plan's), accumulators
  pattern-major (``8·slot + pattern``) so that four patterns take one 4 × uint64 vector add (an llvmlite
  intrinsic, :func:`_vadd4`: numba runs no SLP vectoriser), fed by per-row words of four patterns' pixels
  (:func:`_words16`, another intrinsic); the finished fields written branch-free (:func:`_store_profiles8`);
* sub-pixel shifts, no splitting: :func:`_k_shift` (squared-radius thresholds through a look-up table,
  optionally sectors through the diamond-angle table); for sectors with uniform bins the same bins computed
  directly: :func:`_k_direct` (float data) and :func:`_k_sectors` (uint8/uint16: row crossings of the sector
  boundaries, float32 radii, packed sums);
* split pixels: :func:`_k_entries` (fixed entries) and :func:`_k_shifted` (extents on the fly);
* median and sigma clipping: :func:`_k_robust`;
* finishing pass: accumulators → statistics (:func:`_k_finish`); the table and shifted kernels can write the
  finished fields themselves (:func:`_store`).

The dtype is handled by three inlined helpers, specialised by numba on the type of the data:
:func:`_acc_zeros`, :func:`_acc_add`, :func:`_acc_bin`. uint8/uint16 data are summed exactly in int64 with the
count packed into the same accumulator as Σ I (count in the bits from 2^_CSHIFT up); any other real dtype in
float64 with NaN pixels skipped (not counted). ``_acc_add(..., s2=None)`` skips Σ I² (mean-only kernels).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from .geometry import (
    _W,
    _corrected,
    _exact_bin,
    _find_bin,
    _pixel_entries,
    _pixel_extent,
    _row_cells,
    _row_direct,
    _row_direct_sectors,
    _row_s,
    _row_span,
    _sector,
)

#: number of accumulator fields per bin returned by the kernels: Σw, Σw·I, Σw·I², Σw², Σw²·I, statistic
_NF = 6
_MAX_CLIP_ITER = 50
#: packing of (count, Σ I) into one int64 for uint8/uint16 data: count in the bits from _CSHIFT up (< 2^23 pixels
#: per bin), Σ I below (< 2^24 · 65535 < 2^40)
_CSHIFT = 40
_ONE = 1 << _CSHIFT
_LOW = _ONE - 1
#: bins (patterns × bins) from which the finishing pass runs on all threads
_PARALLEL_FINISH_BINS = 1 << 16


# ----------------------------------------------------------------------------------------------------------
# accumulators, by dtype. Each variant is written once; numba inlines the one the argument types select
# (overload), and the same Python functions run under NUMBA_DISABLE_JIT=1.
# ----------------------------------------------------------------------------------------------------------
def _zeros_packed(data, n, sq):
    return np.zeros(0, np.int64), np.zeros(n, np.int64), np.zeros(n if sq else 0, np.int64)


def _zeros_float(data, n, sq):
    return np.zeros(n), np.zeros(n), np.zeros(n if sq else 0)


def _add_packed(img, p, t, s0, s1, s2):
    v = np.int64(img[p])
    s1[t] += v | _ONE
    s2[t] += v * v


def _add_packed_sum(img, p, t, s0, s1, s2):
    s1[t] += np.int64(img[p]) | _ONE


def _add_float(img, p, t, s0, s1, s2):
    v = np.float64(img[p])
    if v == v:
        s0[t] += 1.0
        s1[t] += v
        s2[t] += v * v


def _add_float_sum(img, p, t, s0, s1, s2):
    v = np.float64(img[p])
    if v == v:
        s0[t] += 1.0
        s1[t] += v


def _bin_packed(s0, s1, s2, b, sq, w):
    a = np.int64(0)
    q2 = np.int64(0)
    for u in range(w):
        a += s1[b * w + u]
        if sq:
            q2 += s2[b * w + u]
    return a >> _CSHIFT, a & _LOW, q2


def _bin_float(s0, s1, s2, b, sq, w):
    c = 0.0
    a = 0.0
    q2 = 0.0
    for u in range(w):
        c += s0[b * w + u]
        a += s1[b * w + u]
        if sq:
            q2 += s2[b * w + u]
    return c, a, q2


_ZEROS = {True: _zeros_packed, False: _zeros_float}
_ADD = {
    (True, True): _add_packed,
    (True, False): _add_packed_sum,
    (False, True): _add_float,
    (False, False): _add_float_sum,
}
_BIN = {True: _bin_packed, False: _bin_float}


def _acc_zeros(data, n, sq):
    """Zeroed accumulators (s0, s1, s2) of n slots for data of data's dtype: packed int64 (s0 unused, empty) for
    uint8/uint16, float64 otherwise; s2 (Σ I²) is empty unless ``sq``."""
    return _ZEROS[data.dtype in (np.uint8, np.uint16)](data, n, sq)


def _acc_add(img, p, t, s0, s1, s2):
    """Add pixel img[p] to slot t: count and Σ I (packed for uint8/uint16), Σ I² unless s2 is None; NaN pixels
    are skipped (not counted)."""
    _ADD[img.dtype in (np.uint8, np.uint16), s2 is not None](img, p, t, s0, s1, s2)


def _acc_bin(s0, s1, s2, b, sq, w):
    """(count, Σ I, Σ I²) of bin b, summed over its w interleaved slots in slot order (Σ I² = 0 unless sq)."""
    return _BIN[s1.dtype == np.int64](s0, s1, s2, b, sq, w)


def _shift_w(data):
    """Interleaved accumulator copies of the sub-pixel shifted kernels: _W for float data (their sums depend
    on the order of additions, which the copies fix), 1 for uint8/uint16 (exact integer sums in any order; one
    copy keeps the accumulators compact, which these kernels, bound by their table look-ups, gain more from
    than from breaking store-to-load chains)."""
    return 1 if data.dtype in (np.uint8, np.uint16) else _W


def _w_packed(data):
    return 1


def _w_float(data):
    return _W


def _is_packed(dtype) -> bool:
    return isinstance(dtype, types.Integer) and not dtype.signed and dtype.bitwidth <= 16


@overload(_acc_zeros, inline="always")
def _ov_acc_zeros(data, n, sq):
    return _ZEROS[_is_packed(data.dtype)]


@overload(_acc_add, inline="always")
def _ov_acc_add(img, p, t, s0, s1, s2):
    return _ADD[_is_packed(img.dtype), not isinstance(s2, types.NoneType)]


@overload(_shift_w, inline="always")
def _ov_shift_w(data):
    return _w_packed if _is_packed(data.dtype) else _w_float


@overload(_acc_bin, inline="always")
def _ov_acc_bin(s0, s1, s2, b, sq, w):
    return _BIN[isinstance(s1.dtype, types.Integer)]


def _store_moments(out, n, b, c, a, q2):
    """Accumulator fields of bin b of pattern n without splitting (w = 1: Σw² = Σw, Σw²·I = Σw·I)."""
    out[n, 0, b] = c
    out[n, 1, b] = a
    out[n, 2, b] = q2
    out[n, 3, b] = c
    out[n, 4, b] = a
    out[n, 5, b] = np.nan


def _store_profiles(out, n, b, c, a, q2):
    """Finished fields (mean, sum, count, sem_poisson, sem_azimuthal) of bin b of pattern n: the arithmetic of
    _finish_one for statistic "mean" on the float64 accumulator fields _store_moments would write."""
    s0, s1, s2 = np.float64(c), np.float64(a), np.float64(q2)
    m, sp = _mean_sem(s0, s1, s1)
    out[0][n, b] = m
    out[1][n, b] = s1
    out[2][n, b] = s0
    out[3][n, b] = sp
    out[4][n, b] = _sem_azimuthal(s0, m, s2, s0)


def _store_mean_sem(out, n, b, c, a, q2):
    """mean and sem_poisson of bin b of pattern n (the arithmetic of _finish_one), into arrays of any float
    dtype (rounded once)."""
    s1 = np.float64(a)
    m, sp = _mean_sem(np.float64(c), s1, s1)
    out[0][n, b] = m
    out[1][n, b] = sp


def _store(out, n, b, c, a, q2):
    """Write bin b of pattern n from its sums (count c, Σ I = a, Σ I² = q2; no splitting), by the type of out:
    an array (N, 6, nb) takes the accumulator fields, a 5-tuple of (N, nb) arrays the finished profiles (mean,
    sum, count, sem_poisson, sem_azimuthal), a 2-tuple mean and sem_poisson."""
    if not isinstance(out, tuple):
        _store_moments(out, n, b, c, a, q2)
    elif len(out) == 5:
        _store_profiles(out, n, b, c, a, q2)
    else:
        _store_mean_sem(out, n, b, c, a, q2)


@overload(_store, inline="always")
def _ov_store(out, n, b, c, a, q2):
    if isinstance(out, types.Array):
        return _store_moments
    return _store_profiles if len(out) == 5 else _store_mean_sem


@njit(cache=True, inline="always")
def _mean_sem(s0, s1, p):
    """Mean s1 / s0 and sem_poisson sqrt(p) / s0 of one bin (NaN when empty; sem NaN for p < 0) [float64]."""
    m = np.nan
    sp = np.nan
    if s0 > 0:
        m = s1 / s0
        if p >= 0:
            sp = math.sqrt(abs(p)) / s0
    return m, sp


@njit(cache=True, inline="always")
def _sem_azimuthal(s0, m, s2, s3):
    """sem_azimuthal sqrt(σ² / (n_eff − 1)) of one bin from Σw = s0, its mean m, Σw·I² = s2, Σw² = s3 (NaN when
    empty or n_eff <= 1) [float64]."""
    sa = np.nan
    if s0 > 0:
        n_eff = s0 * s0 / s3
        if n_eff > 1 + 1e-12:
            sa = math.sqrt(max(s2 / s0 - m * m, 0.0) / (n_eff - 1.0))
    return sa


@njit(cache=True, inline="always")
def _add_weighted(acc, b, we, v):
    """acc[(Σw, Σw·I, Σw·I², Σw², Σw²·I), b] += one entry of weight we and value v."""
    acc[0, b] += we
    acc[1, b] += we * v
    acc[2, b] += we * v * v
    acc[3, b] += we * we
    acc[4, b] += we * we * v


# ----------------------------------------------------------------------------------------------------------
# table path: fixed centre (zero shift) and whole-pixel shifts, no splitting
# ----------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _offset_one(img, ny, nx, pad, tx, dy, dx, table, spans, valid, use_mask, s0, s1, s2):
    """One pattern moved by whole pixels (dy, dx): detector pixel (a, b) adds to slot table[a − dy + pad,
    b − dx + pad] (a grid ``pad`` pixels larger than the detector on every side; pad = 0 and no shift for a
    fixed centre); masked pixels are skipped when ``use_mask``."""
    for a in range(ny):
        i = a - dy + pad
        j0 = max(spans[i, 0], pad - dx)
        j1 = min(spans[i, 1], pad - dx + nx)
        tb = i * tx
        sb = a * nx + dx - pad  # detector index of table column j: sb + j
        for j in range(j0, j1):
            if use_mask and not valid[np.uint64(sb + j)]:
                continue
            _acc_add(img, np.uint64(sb + j), np.uint64(table[np.uint64(tb + j)]), s0, s1, s2)


@njit(parallel=True, cache=True)
def _k_offset(data, ishifts, ny, nx, pad, table, spans, nb, valid, use_mask, out):
    """Table path: data (N, ny·nx), ishifts (N, 2) int64 with |shift| <= pad → out: accumulators (N, 6, nb) or
    finished profiles (a tuple of arrays, see _store).

    table: the interleaved slots (bin·_W + column % _W, unused cells → nb·_W + column % _W, unsigned) of a grid
    extending the detector by ``pad`` pixels on every side, about the plan's centre moved by (pad, pad); spans
    (ny + 2·pad, 2) the columns [j0, j1) of each grid row holding used cells. No geometry per pixel: one table
    read per pixel; pixels off the moved table, masked or NaN are not counted.
    """
    n_pat = data.shape[0]
    tx = nx + 2 * pad
    for n in prange(n_pat):
        s0, s1, s2 = _acc_zeros(data, (nb + 1) * _W, True)
        _offset_one(data[n], ny, nx, pad, tx, ishifts[n, 0], ishifts[n, 1], table, spans, valid, use_mask, s0, s1, s2)
        for b in range(nb):
            c, a, q2 = _acc_bin(s0, s1, s2, b, True, _W)
            _store(out, n, b, c, a, q2)


@njit(parallel=True, cache=True)
def _k_offset_mean(data, ishifts, ny, nx, pad, table, spans, nb, valid, use_mask, out):
    """_k_offset without Σ I², for out = (mean, sem_poisson) (N, nb) arrays of any float dtype only."""
    n_pat = data.shape[0]
    tx = nx + 2 * pad
    for n in prange(n_pat):
        s0, s1, s2 = _acc_zeros(data, (nb + 1) * _W, False)
        _offset_one(data[n], ny, nx, pad, tx, ishifts[n, 0], ishifts[n, 1], table, spans, valid, use_mask, s0, s1, None)
        for b in range(nb):
            c, a, q2 = _acc_bin(s0, s1, s2, b, False, _W)
            _store(out, n, b, c, a, q2)


@njit(cache=True)
def _pattern_max(img):
    """Largest value of an unsigned integer pattern (a vectorised reduction) [counts]."""
    m = img[0]
    for p in range(1, img.size):
        m = max(m, img[p])  # in the data's own dtype: packed vector maxima
    return np.uint64(m)


@njit(cache=True, inline="always")
def _packed_shift(cmax, vmax):
    """Bit position of Σ I² in one uint64 word holding (Σ I, Σ I²) of a bin of at most ``cmax`` pixels of values
    <= ``vmax``: the smallest s with cmax·vmax < 2^s; 0 when Σ I² cannot fit above it (cmax·vmax² >= 2^(64 − s)),
    so that neither field can overflow into the other (exact integer sums)."""
    lo = cmax * vmax
    s = 1
    while s < 40 and (lo >> np.uint64(s)) != 0:
        s += 1
    if s >= 40 or ((cmax * vmax * vmax) >> np.uint64(64 - s)) != 0:
        return 0
    return s


#: patterns of one sweep over the table in _k_fixed (the table index is read once for all of them)
_GROUP = 4


@njit(cache=True)
def _fixed_packed_one(img, ny, nx, table, spans, sh, acc):
    """One pattern about the plan's fixed centre: acc[table[p]] += I + (I² << sh), one add per used pixel (the
    count of a bin is the plan's, as no pixel of unsigned integer data can be skipped)."""
    for a in range(ny):
        base = a * nx
        for j in range(spans[a, 0], spans[a, 1]):
            p = np.uint64(base + j)
            v = np.uint64(img[p])
            acc[np.uint64(table[p])] += v + ((v * v) << sh)


@njit(cache=True)
def _fixed_packed_group(i0, i1, i2, i3, ny, nx, table, spans, sh, acc, off):
    """_fixed_packed_one for four patterns in one sweep: pattern k adds to acc[k·off + table[p]]."""
    o1 = np.uint64(off)
    o2 = o1 + o1
    o3 = o2 + o1
    for a in range(ny):
        base = a * nx
        for j in range(spans[a, 0], spans[a, 1]):
            p = np.uint64(base + j)
            t = np.uint64(table[p])
            v = np.uint64(i0[p])
            acc[t] += v + ((v * v) << sh)
            v = np.uint64(i1[p])
            acc[t + o1] += v + ((v * v) << sh)
            v = np.uint64(i2[p])
            acc[t + o2] += v + ((v * v) << sh)
            v = np.uint64(i3[p])
            acc[t + o3] += v + ((v * v) << sh)


@njit(cache=True)
def _store_packed(out, n, acc, o, nb, counts, sh, stride=1):
    """Write the bins of pattern n from its packed words acc[o + (b·_W + u)·stride] (Σ I below bit sh, Σ I²
    above): stride 1 for _k_fixed's pattern blocks, _GROUP8 for _k_fixed8's pattern-major accumulators."""
    ush = np.uint64(sh)
    low = (np.uint64(1) << ush) - np.uint64(1)
    for b in range(nb):
        a = np.uint64(0)
        for u in range(_W):
            a += acc[o + (b * _W + u) * stride]
        _store(out, n, b, counts[b], np.int64(a & low), np.int64(a >> ush))


@njit(cache=True)
def _fixed_single(data, n, ny, nx, table, spans, nb, counts, cmax, valid, out):
    """Pattern n alone: packed when its maximum allows (_packed_shift), else the two accumulators of _k_offset."""
    img = data[n]
    sh = _packed_shift(np.uint64(cmax), _pattern_max(img))
    if sh > 0:
        acc = np.zeros((nb + 1) * _W, np.uint64)
        _fixed_packed_one(img, ny, nx, table, spans, np.uint64(sh), acc)
        _store_packed(out, n, acc, 0, nb, counts, sh)
    else:
        s0, s1, s2 = _acc_zeros(data, (nb + 1) * _W, True)
        _offset_one(img, ny, nx, 0, nx, 0, 0, table, spans, valid, False, s0, s1, s2)
        for b in range(nb):
            c, a, q2 = _acc_bin(s0, s1, s2, b, True, _W)
            _store(out, n, b, c, a, q2)


@njit(parallel=True, cache=True)
def _k_fixed(data, ny, nx, table, spans, nb, counts, cmax, valid, out):
    """Fixed centre, uint8/uint16 data, no splitting: _k_offset with zero shifts and the mask in the table, and
    bit-identical to it (exact integer sums), with Σ I and Σ I² sharing one uint64 add per pixel whenever the
    maximum of the patterns allows it (_packed_shift; the count of bin b is counts[b], the plan's, cmax their
    maximum), and _GROUP patterns per sweep over the table. Patterns whose maximum is too large for the packing
    take _k_offset's two accumulators."""
    n_pat = data.shape[0]
    n_grp = n_pat // _GROUP
    off = (nb + 1) * _W
    for g in prange(n_grp + n_pat % _GROUP):
        if g >= n_grp:  # the remainder, one pattern at a time
            _fixed_single(data, n_grp * _GROUP + g - n_grp, ny, nx, table, spans, nb, counts, cmax, valid, out)
            continue
        n = g * _GROUP
        vmax = max(
            max(_pattern_max(data[n]), _pattern_max(data[n + 1])),
            max(_pattern_max(data[n + 2]), _pattern_max(data[n + 3])),
        )
        sh = _packed_shift(np.uint64(cmax), vmax)
        if sh == 0:
            for k in range(_GROUP):
                _fixed_single(data, n + k, ny, nx, table, spans, nb, counts, cmax, valid, out)
            continue
        acc = np.zeros(_GROUP * off, np.uint64)
        _fixed_packed_group(
            data[n], data[n + 1], data[n + 2], data[n + 3], ny, nx, table, spans, np.uint64(sh), acc, off
        )
        for k in range(_GROUP):
            _store_packed(out, n + k, acc, k * off, nb, counts, sh)


# ----------------------------------------------------------------------------------------------------------
# fixed centre, uint8/uint16, eight patterns per sweep with pattern-major accumulators (one vector add per pixel
# for four patterns)
# ----------------------------------------------------------------------------------------------------------
#: patterns of one sweep of _k_fixed8: two words of four 16-bit pixels per table cell
_GROUP8 = 8


def _vadd4(acc, t, w, sh):
    """acc[t + k] += v_k + (v_k² << sh) for k = 0..3, v_k the 16-bit field k of the uint64 word w (bits 16k up).

    Compiled (see _ov_vadd4) as one load, add and store of four uint64 lanes: numba does not run LLVM's SLP
    vectoriser, so four scalar adds would stay four read-modify-writes."""
    for k in range(4):
        v = (w >> np.uint64(16 * k)) & np.uint64(0xFFFF)
        acc[t + np.uint64(k)] += v + ((v * v) << sh)


@intrinsic
def _vadd4_ir(typingctx, acc, t, w, sh):
    if not (
        isinstance(acc, types.Array) and acc.dtype == types.uint64 and acc.ndim == 1 and acc.layout == "C"
        and all(x == types.uint64 for x in (t, w, sh))
    ):  # fmt: skip
        return None

    def codegen(context, builder, signature, args):
        a, ti, x, s = args
        data = context.make_array(signature.args[0])(context, builder, a).data
        i32 = ir.IntType(32)
        vt = ir.VectorType(ir.IntType(64), 4)
        v = builder.zext(builder.bitcast(x, ir.VectorType(ir.IntType(16), 4)), vt)
        sv = builder.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(i32, 0))
        sv = builder.shuffle_vector(sv, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(i32, 4), [0] * 4))
        word = builder.add(v, builder.shl(builder.mul(v, v), sv))
        ptr = builder.bitcast(builder.gep(data, [ti]), vt.as_pointer())
        builder.store(builder.add(builder.load(ptr, align=8), word), ptr, align=8)
        return context.get_dummy_value()

    return types.void(acc, t, w, sh), codegen


@overload(_vadd4, inline="always")
def _ov_vadd4(acc, t, w, sh):
    def impl(acc, t, w, sh):
        _vadd4_ir(acc, t, w, sh)

    return impl


@njit(cache=True, inline="always")
def _row_words(i0, i1, i2, i3, base, j0, j1, buf):
    """buf[j] = the pixels base + j of four patterns as the 16-bit fields of one uint64 word (pattern k in bits
    16k up), columns [j0, j1); returns their largest value [counts] (0 for an empty span). A separate pass so
    that it vectorises; the maximum is taken in the data's dtype (packed vector maxima: uint64 has none on AVX2)."""
    if j1 <= j0:
        return np.uint64(0)
    m = i0[np.uint64(base + j0)]
    for j in range(j0, j1):
        p = np.uint64(base + j)
        a0 = i0[p]
        a1 = i1[p]
        a2 = i2[p]
        a3 = i3[p]
        m = max(m, max(max(a0, a1), max(a2, a3)))
        w = np.uint64(a0) | (np.uint64(a1) << np.uint64(16))
        buf[np.uint64(j)] = w | (np.uint64(a2) << np.uint64(32)) | (np.uint64(a3) << np.uint64(48))
    return np.uint64(m)


def _words16(i0, i1, i2, i3, p, buf, j, mx):
    """_row_words for the 16 pixels p .. p + 15 into buf[j .. j + 15], their maxima into mx (16 lanes, the data's
    dtype): compiled (_ov_words16) as four 16-lane loads, the interleaving shuffles and four maxima."""
    for q in range(16):
        a0, a1, a2, a3 = i0[p + q], i1[p + q], i2[p + q], i3[p + q]
        mx[q] = max(mx[q], max(max(a0, a1), max(a2, a3)))
        w = np.uint64(a0) | (np.uint64(a1) << np.uint64(16))
        buf[j + q] = w | (np.uint64(a2) << np.uint64(32)) | (np.uint64(a3) << np.uint64(48))


@intrinsic
def _words16_ir(typingctx, i0, i1, i2, i3, p, buf, j, mx):
    dts = (types.uint8, types.uint16)
    if not (
        all(isinstance(a, types.Array) and a.ndim == 1 and a.dtype in dts for a in (i0, i1, i2, i3, mx))
        and len({a.dtype for a in (i0, i1, i2, i3, mx)}) == 1
        and isinstance(buf, types.Array) and buf.dtype == types.uint64 and buf.ndim == 1
        and p == types.uint64 and j == types.uint64
    ):  # fmt: skip
        return None

    def codegen(context, builder, signature, args):
        ptrs = {k: context.make_array(signature.args[k])(context, builder, args[k]).data for k in (0, 1, 2, 3, 5, 7)}
        pi, ji = args[4], args[6]
        ew = signature.args[0].dtype.bitwidth
        i32 = ir.IntType(32)
        vin = ir.VectorType(ir.IntType(ew), 16)
        v16 = ir.VectorType(ir.IntType(16), 16)
        rows = [builder.load(builder.bitcast(builder.gep(ptrs[k], [pi]), vin.as_pointer()), align=1) for k in range(4)]
        mp = builder.bitcast(ptrs[7], vin.as_pointer())
        m = builder.load(mp, align=1)
        for r in rows:
            m = builder.select(builder.icmp_unsigned(">", r, m), r, m)
        builder.store(m, mp, align=1)
        rows = [builder.zext(r, v16) if ew < 16 else r for r in rows]
        ab = builder.shuffle_vector(rows[0], rows[1], ir.Constant(ir.VectorType(i32, 32), list(range(32))))
        cd = builder.shuffle_vector(rows[2], rows[3], ir.Constant(ir.VectorType(i32, 32), list(range(32))))
        order = [16 * k + q for q in range(16) for k in range(4)]
        out = builder.shuffle_vector(ab, cd, ir.Constant(ir.VectorType(i32, 64), order))
        dst = builder.bitcast(builder.gep(ptrs[5], [ji]), ir.VectorType(ir.IntType(16), 64).as_pointer())
        builder.store(out, dst, align=8)
        return context.get_dummy_value()

    return types.void(i0, i1, i2, i3, p, buf, j, mx), codegen


@overload(_words16, inline="always")
def _ov_words16(i0, i1, i2, i3, p, buf, j, mx):
    def impl(i0, i1, i2, i3, p, buf, j, mx):
        _words16_ir(i0, i1, i2, i3, p, buf, j, mx)

    return impl


@njit(cache=True, inline="always")
def _row_words16(i0, i1, i2, i3, base, j0, j1, buf, mx):
    """_row_words by blocks of 16 columns (_words16; maxima into mx), the last < 16 columns one by one."""
    j = j0
    while j + 16 <= j1:
        _words16(i0, i1, i2, i3, np.uint64(base + j), buf, np.uint64(j), mx)
        j += 16
    return _row_words(i0, i1, i2, i3, base, j, j1, buf)


@njit(cache=True)
def _packed_bound(cmax):
    """(vmax, s): the largest value vmax <= 65535 [counts] whose bins of at most ``cmax`` pixels pack (Σ I, Σ I²)
    into one uint64 word, and its bit position s = _packed_shift(cmax, vmax); (0, 0) when none does. Packing
    is monotone in the maximum, so every pattern of maximum <= vmax packs with s (exact integer sums)."""
    c = np.uint64(cmax)
    if _packed_shift(c, np.uint64(1)) == 0:
        return np.uint64(0), 0
    lo = np.uint64(1)
    hi = np.uint64(65535)
    while lo < hi:
        mid = (lo + hi + np.uint64(1)) >> np.uint64(1)
        if _packed_shift(c, mid) > 0:
            lo = mid
        else:
            hi = mid - np.uint64(1)
    return lo, _packed_shift(c, lo)


@njit(cache=True)
def _fixed8_group(data, n, ny, nx, table, spans, sh, acc, b0, b1):
    """Patterns n .. n + 7 in one sweep over the table: acc[8·table[p] + k] += I_k + (I_k² << sh) for pattern
    n + k (pattern-major slots: the eight patterns of a slot side by side, four per vector add). Returns the
    largest value of the pixels read [counts] (the caller checks it against the bound that fixed sh)."""
    i0, i1, i2, i3 = data[n], data[n + 1], data[n + 2], data[n + 3]
    i4, i5, i6, i7 = data[n + 4], data[n + 5], data[n + 6], data[n + 7]
    ush = np.uint64(sh)
    four = np.uint64(4)
    m = np.uint64(0)
    mx = np.zeros(16, data.dtype)
    for a in range(ny):
        base = a * nx
        j0 = spans[a, 0]
        j1 = spans[a, 1]
        m = max(m, _row_words16(i0, i1, i2, i3, base, j0, j1, b0, mx))
        m = max(m, _row_words16(i4, i5, i6, i7, base, j0, j1, b1, mx))
        for j in range(j0, j1):
            t = np.uint64(table[np.uint64(base + j)]) << np.uint64(3)
            _vadd4(acc, t, b0[np.uint64(j)], ush)
            _vadd4(acc, t + four, b1[np.uint64(j)], ush)
    return max(m, np.uint64(mx.max()))


@njit(cache=True, error_model="numpy")
def _store_profiles8(out, n, acc, k, nb, counts, sh):
    """_store_packed (stride _GROUP8) into the finished profiles (a 5-tuple, see _store) with the arithmetic of
    _store_profiles, branch-free over the bins (selects instead of branches; NumPy's error model, so empty bins
    divide by zero instead of raising) so that the divisions and square roots vectorise: the same IEEE
    operations, the same bits."""
    mean, total, count, sem_p, sem_a = out
    ush = np.uint64(sh)
    low = (np.uint64(1) << ush) - np.uint64(1)
    s1 = np.empty(nb)
    s2 = np.empty(nb)
    for b in range(nb):
        a = np.uint64(0)
        for u in range(_W):
            a += acc[(b * _W + u) * _GROUP8 + k]
        s1[b] = np.float64(np.int64(a & low))
        s2[b] = np.float64(np.int64(a >> ush))
    for b in range(nb):
        c = np.float64(counts[b])
        x = s1[b]
        m = x / c
        sp = math.sqrt(abs(x)) / c
        n_eff = c * c / c
        sa = math.sqrt(max(s2[b] / c - m * m, 0.0) / (n_eff - 1.0))
        pos = c > 0
        mean[n, b] = m if pos else np.nan
        total[n, b] = x
        count[n, b] = c
        sem_p[n, b] = sp if pos and x >= 0 else np.nan
        sem_a[n, b] = sa if pos and n_eff > 1 + 1e-12 else np.nan


def _store8(out, n, acc, k, nb, counts, sh):
    """_store_packed of _k_fixed8's accumulators; compiled (_ov_store8), finished profiles take _store_profiles8
    (same values)."""
    _store_packed(out, n, acc, k, nb, counts, sh, _GROUP8)


@overload(_store8, inline="always")
def _ov_store8(out, n, acc, k, nb, counts, sh):
    if isinstance(out, types.BaseTuple) and len(out) == 5:

        def impl(out, n, acc, k, nb, counts, sh):
            _store_profiles8(out, n, acc, k, nb, counts, sh)

    else:

        def impl(out, n, acc, k, nb, counts, sh):
            _store_packed(out, n, acc, k, nb, counts, sh, _GROUP8)

    return impl


@njit(parallel=True, cache=True)
def _k_fixed8(data, ny, nx, table, spans, nb, counts, cmax, valid, out):
    """_k_fixed with eight patterns per sweep and pattern-major accumulators, bit-identical to it (exact integer
    sums): (Σ I, Σ I²) packed with the bit position s of _packed_bound(cmax), fixed before the sweep; a group
    whose largest value exceeds that bound, and the patterns after the last full group, take _fixed_single
    (packed with their own maximum when it allows, else the two accumulators)."""
    n_pat = data.shape[0]
    n_grp = n_pat // _GROUP8
    off = (nb + 1) * _W * _GROUP8
    vb, sh = _packed_bound(cmax)
    for g in prange(n_grp + n_pat % _GROUP8):
        if g >= n_grp:  # the remainder, one pattern at a time
            _fixed_single(data, n_grp * _GROUP8 + g - n_grp, ny, nx, table, spans, nb, counts, cmax, valid, out)
            continue
        n = g * _GROUP8
        acc = np.zeros(off, np.uint64)
        packed = sh > 0
        if packed:
            b0 = np.empty(nx, np.uint64)
            b1 = np.empty(nx, np.uint64)
            packed = _fixed8_group(data, n, ny, nx, table, spans, sh, acc, b0, b1) <= vb
        for k in range(_GROUP8):
            if packed:
                _store8(out, n + k, acc, k, nb, counts, sh)
            else:
                _fixed_single(data, n + k, ny, nx, table, spans, nb, counts, cmax, valid, out)


# ----------------------------------------------------------------------------------------------------------
# sub-pixel shifts, no splitting
# ----------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _shift_one(img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, valid, cols, srow, crow, w, s0, s1, s2):
    """One pattern about centre (cyn, cxn), no sectors: slot t = k·w + j % w (w: _shift_w), k the bin of the squared
    corrected radius (n_q outside the bins: the spare bin).

    A function of its own (not inlined in the prange loop), and the sector variant another one: LLVM optimises
    the loop better this way.
    """
    nq = thr.size - 1
    t0 = thr[0]
    tn = thr[nq]
    cmax = lut.size - 1.0
    for i in range(ny):
        dy = i - cyn
        j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
        base = i * nx
        _row_s(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, inv_h, cmax, srow, crow)
        for j in range(j0, j1):
            k = np.int64(lut[np.uint64(crow[np.uint64(j)])])
            if k < 0:
                k = _exact_bin(srow[np.uint64(j)], k, thr, nq, t0, tn)
            _acc_add(img, np.uint64(base + j), np.uint64(k * w + (j & (w - 1))), s0, s1, s2)


@njit(cache=True, error_model="numpy")
def _shift_one_sectors(
    img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, cols, srow, crow, prow, w, s0, s1, s2
):
    """_shift_one with n_phi sectors: t = (sector·n_q + k)·w + j % w, spare bin n_phi·n_q.

    NumPy's error model: the diamond angle of a pixel exactly at the centre is 0/0 = NaN (cell 0, where atan2
    decides), not a ZeroDivisionError.
    """
    nq = thr.size - 1
    nb = n_phi * nq
    t0 = thr[0]
    tn = thr[nq]
    cmax = lut.size - 1.0
    for i in range(ny):
        dy = i - cyn
        j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
        base = i * nx
        _row_s(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, inv_h, cmax, srow, crow)
        _row_cells(j0, j1, dy, cxn, m00, m01, m11, cols, prow, plut.size)
        for j in range(j0, j1):
            k = np.int64(lut[np.uint64(crow[np.uint64(j)])])
            if k < 0:
                k = _exact_bin(srow[np.uint64(j)], k, thr, nq, t0, tn)
            if k < nq:
                sc = np.int64(plut[np.uint64(prow[np.uint64(j)])])
                if sc < 0:  # a sector boundary within the cell: atan2 decides
                    dx = cols[np.uint64(j)] - cxn
                    sc = _sector(m00 * dx + m01 * dy, m01 * dx + m11 * dy, n_phi)
                k += sc * nq
            else:
                k = nb
            _acc_add(img, np.uint64(base + j), np.uint64(k * w + (j & (w - 1))), s0, s1, s2)


@njit(parallel=True, cache=True)
def _k_shift(data, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, plut, valid, out):
    """Per-pattern centres (cy + shifts[n, 0], cx + shifts[n, 1]), no splitting → out: accumulators (N, 6, nb)
    or finished profiles (a tuple of arrays, see _store).

    Pixels are binned by their squared corrected radius s against thresholds thr (the s-space images of the bin
    edges, exact: see geometry.s_thresholds) through a look-up table; only the columns of each row that can
    reach a bin are visited.
    """
    n_pat = data.shape[0]
    nb = n_phi * (thr.size - 1)
    w = _shift_w(data)
    for n in prange(n_pat):
        s0, s1, s2 = _acc_zeros(data, (nb + 1) * w, True)
        srow = np.empty(nx)
        crow = np.empty(nx, np.int32)
        prow = np.empty(nx if n_phi > 1 else 0, np.int32)
        cols = np.arange(nx).astype(np.float64)
        if n_phi == 1:
            _shift_one(
                data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, thr, lut, inv_h, valid,
                cols, srow, crow, w, s0, s1, s2,
            )  # fmt: skip
        else:
            _shift_one_sectors(
                data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, thr, lut, inv_h, n_phi,
                plut, valid, cols, srow, crow, prow, w, s0, s1, s2,
            )  # fmt: skip
        for b in range(nb):
            c, a, q2 = _acc_bin(s0, s1, s2, b, True, w)
            _store(out, n, b, c, a, q2)


@njit(cache=True, inline="always")
def _direct_exact(j, dy, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, cols):
    """Bin (sector·n_q + k, n_phi·n_q outside) of column j of the row at offset dy by the exact arithmetic of
    _shift_one_sectors (squared-radius thresholds through the look-up table, atan2 for the sector), for the
    pixels the direct pass leaves undecided."""
    nq = thr.size - 1
    dx = cols[np.uint64(j)] - cxn
    bx = m01 * dy
    by = m11 * dy
    xc = m00 * dx + bx
    yc = m01 * dx + by
    s = xc * xc + yc * yc
    cmax = lut.size - 1.0
    k = np.int64(lut[np.uint64(np.int32(min(s * inv_h, cmax)))])
    if k < 0:
        k = _exact_bin(s, k, thr, nq, thr[0], thr[nq])
    if k >= nq:
        return np.int64(n_phi * nq)
    if n_phi > 1:
        k += _sector(m00 * dx + m01 * dy, m01 * dx + m11 * dy, n_phi) * nq
    return k


@njit(cache=True, error_model="numpy")
def _direct_one(img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, valid, cols, trow, w, s0, s1, s2):
    """One pattern about centre (cyn, cxn) by direct bins (geometry.direct_params): a vectorised pass per row
    computes every pixel's bin in float32 (−1 near a boundary), then one scatter pass adds the pixels, taking
    _direct_exact for the undecided ones; slot = bin·w + j % w, spare bin n_phi·n_q. Bins bit for bit those of
    _shift_one / _shift_one_sectors."""
    nq = thr.size - 1
    nb = n_phi * nq
    tn = thr[nq]
    a, b, eps_r, c_phi, eps_phi = prm
    for i in range(ny):
        dy = i - cyn
        j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
        base = i * nx
        if n_phi > 1:
            _row_direct_sectors(
                j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, a, b, eps_r, nq, c_phi, eps_phi, nb, trow
            )
        else:
            _row_direct(j0, j1, dy, cxn, m00, m01, m11, valid, base, cols, a, b, eps_r, nq, nb, trow)
        for j in range(j0, j1):
            k = np.int64(trow[np.uint64(j)])
            if k < 0:
                k = _direct_exact(j, dy, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, cols)
            _acc_add(img, np.uint64(base + j), np.uint64(k * w + (j & (w - 1))), s0, s1, s2)


@njit(parallel=True, cache=True)
def _k_direct(data, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, prm, valid, out):
    """_k_shift by direct bins (see _direct_one; geometry.direct_params gives ``prm``): the same bins, sums and
    outputs bit for bit, with the per-pixel look-ups replaced by vectorised float32 arithmetic."""
    n_pat = data.shape[0]
    nb = n_phi * (thr.size - 1)
    w = _shift_w(data)
    for n in prange(n_pat):
        s0, s1, s2 = _acc_zeros(data, (nb + 1) * w, True)
        trow = np.empty(nx, np.int32)
        cols = np.arange(nx).astype(np.float64)
        _direct_one(
            data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, thr, lut, inv_h, n_phi, prm,
            valid, cols, trow, w, s0, s1, s2,
        )  # fmt: skip
        for b in range(nb):
            c, a, q2 = _acc_bin(s0, s1, s2, b, True, w)
            _store(out, n, b, c, a, q2)


@njit(cache=True, inline="always")
def _bit_length(x):
    """Bits of the unsigned integer x (0 for 0)."""
    s = 0
    while s < 64 and (x >> np.uint64(s)) != 0:
        s += 1
    return s


@njit(cache=True, inline="always")
def _sector_pack(cb, vmax):
    """Bit positions (s1, s2) of Σ I² and of the count in one uint64 word per bin holding (count, Σ I, Σ I²) of
    at most ``cb`` pixels of values <= ``vmax`` (Σ I below s1): Σ I <= cb·vmax < 2^s1, Σ I² <= cb·vmax² <
    2^(s2 − s1), count <= cb < 2^(64 − s2), so that no field carries into the next (exact integer sums); (0, 0)
    when they do not fit in 64 bits, a sum would exceed 2^52 (the exact float conversion of the finishing) or cb
    >= 2^20."""
    if cb >= np.uint64(1 << 20):
        return 0, 0
    w1 = _bit_length(cb * vmax)
    w2 = _bit_length(cb * vmax * vmax)
    wc = _bit_length(cb)
    if w1 + w2 + wc > 64 or w2 > 52:
        return 0, 0
    return max(w1, 1), max(w1, 1) + w2


#: unit roundoff of float32
_U32 = 2.0**-24


@njit(cache=True, inline="always")
def _row_segments(j0, j1, dy, cxn, nx, sq, sinv, sseg, n_cross, nq, prow):
    """Sector offset sector·n_q of columns [j0, j1) of the row at offset dy from the segments between the row's
    crossings of the sector boundaries (geometry.sector_segments; crossing k at column x_k = cxn + |dy|·sq[r, k]);
    −1 for a column within a margin d_k of a crossing (its azimuth is too close to a boundary for anything but
    the exact atan2) and for every column of a row within 1e-9 px of the centre. sinv = 1 / gain."""
    if abs(dy) < 1e-9:
        for j in range(j0, j1):
            prow[np.uint64(j)] = -1
        return
    r = 0 if dy > 0 else 1
    ady = abs(dy)
    # the kernel's float64 azimuth of a pixel carries rounding errors far below 1e-11·(|coordinates| + 1) px
    scale = 1e-11 * (1.0 + abs(cxn) + ady + nx)
    kc = n_cross[r]
    fj0 = float(j0)
    fj1 = float(j1)
    for j in range(j0, j1):
        prow[np.uint64(j)] = 0
    # sector steps at the first column after each crossing of the span, then a running sum along the row
    first = -1
    for k in range(kc):
        xk = cxn + ady * sq[r, k]
        if xk < fj0:  # left of the span: every column lies after it
            continue
        if xk >= fj1:  # right of the span, and so are the later crossings
            break
        if first < 0:
            first = k
        jh = int(np.ceil(xk))
        if jh < j1:
            prow[np.uint64(jh)] += np.int32((sseg[r, k + 1] - sseg[r, k]) * nq)
    if first < 0:  # no crossing inside: the segment of the span is the one after the last crossing left of it
        first = kc
        for k in range(kc):
            if cxn + ady * sq[r, k] >= fj0:
                first = k
                break
    run = np.int32(sseg[r, first] * nq)
    for j in range(j0, j1):
        run += prow[np.uint64(j)]
        prow[np.uint64(j)] = run
    # columns within the margin d_k of a crossing: the exact path decides
    for k in range(kc):
        xk = cxn + ady * sq[r, k]
        dk = (scale + 1e-11 * ady * abs(sq[r, k])) * sinv[r, k]
        if xk + dk < fj0:
            continue
        if xk - dk >= fj1:
            break
        if dk < 0.5:  # at most the nearest column lies within the margin
            jn = np.floor(xk + 0.5)
            if abs(jn - xk) <= dk and jn >= fj0 and jn < fj1:
                prow[np.uint64(int(jn))] = -1
        else:  # (clamped as floats: dk may be far beyond the int64 range for a ray almost parallel to the rows)
            for jj in range(int(max(np.ceil(xk - dk), fj0)), int(min(np.floor(xk + dk) + 1.0, fj1))):
                prow[np.uint64(jj)] = -1


@njit(cache=True, inline="always", error_model="numpy")
def _row_radial_seg(j0, j1, x0, y0, m00f, m01f, colsf, valid, base, a, b, eps, nqf, sparef, prow, trow):
    """Bin of columns [j0, j1) of a row in float32 (8 lanes): sector offset prow[j] (from _row_segments) +
    floor(f), f = |(m00·j + x0, m01·j + y0)|·a − b; ``sparef`` outside the bins or masked, −1 where f lies within
    eps of an integer or the sector is undecided (the exact path decides). Returns the number of those."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    hi = one - eps
    neg = np.float32(-1.0)
    undecided = 0
    for j in range(j0, j1):
        cj = colsf[np.uint64(j)]
        xc = m00f * cj + x0
        yc = m01f * cj + y0
        f = np.sqrt(xc * xc + yc * yc) * a - b
        fk = np.floor(f)
        fr = f - fk
        sec = prow[np.uint64(j)]
        inside = (fk >= zero) & (fk < nqf)
        t = np.float32(sec) + fk if inside else sparef
        ok = (fr > eps) & (fr < hi) & ((sec >= 0) | ~inside)
        t = t if ok else neg
        t = t if valid[np.uint64(base + j)] else sparef
        undecided += t < zero
        trow[np.uint64(j)] = np.int32(t)
    return undecided


@njit(cache=True, inline="always")
def _seg_row(i, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg, n_cross, valid, cols, colsf,
             prow, trow):  # fmt: skip
    """Both row passes of the segment sector kernel for row i, then _direct_exact for the undecided columns:
    (j0, j1, base) with the bins in trow[j0:j1]."""
    nq = thr.size - 1
    tn = thr[nq]
    a, b, eps_base = prm
    dy = i - cyn
    j0, j1 = _row_span(nx, dy, cxn, m00, m01, m11, tn)
    base = i * nx
    _row_segments(j0, j1, dy, cxn, nx, sq, sgain, sseg, n_cross, nq, prow)
    x0 = m01 * dy - m00 * cxn
    y0 = m11 * dy - m01 * cxn
    # float32 rounding of the row's corrected offsets m·j + x0: |error| <= u·(3·|m|·j1 + 2·|x0|) each [px]
    ex = _U32 * 1.01 * (3.0 * abs(m00) * j1 + 2.0 * abs(x0) + 3.0 * abs(m01) * j1 + 2.0 * abs(y0))
    eps = np.float32(eps_base + 1.5 * np.float64(a) * ex)
    undecided = _row_radial_seg(
        j0, j1, np.float32(x0), np.float32(y0), np.float32(m00), np.float32(m01), colsf, valid, base, a, b, eps,
        np.float32(nq), np.float32(nq * (sseg.shape[1] - 1)), prow, trow,
    )  # fmt: skip
    if undecided > 0:  # the exact arithmetic of _k_shift for the undecided columns (a few per pattern)
        for j in range(j0, j1):
            if trow[np.uint64(j)] < 0:
                trow[np.uint64(j)] = np.int32(_direct_exact(j, dy, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, cols))
    return j0, j1, base


@njit(cache=True, error_model="numpy")
def _seg_one_packed(img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg, n_cross,
                    valid, cols, colsf, prow, trow, s1, one, acc):  # fmt: skip
    """One pattern of uint8/uint16 data by segment sectors and float32 radii, (count, Σ I, Σ I²) packed:
    acc[bin] += I + (I² << s1) + one (_sector_pack; the spare bin n_phi·n_q may wrap, it is never read)."""
    sh = np.uint64(s1)
    for i in range(ny):
        j0, j1, base = _seg_row(
            i, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg, n_cross, valid, cols,
            colsf, prow, trow,
        )  # fmt: skip
        for j in range(j0, j1):
            v = np.uint64(img[np.uint64(base + j)])
            acc[np.uint64(trow[np.uint64(j)])] += v + ((v * v) << sh) + one


@njit(cache=True, error_model="numpy")
def _seg_one(img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg, n_cross,
             valid, cols, colsf, prow, trow, s0, s1, s2):  # fmt: skip
    """_seg_one_packed with the separate accumulators of _acc_add (one copy per bin; patterns too bright to
    pack)."""
    for i in range(ny):
        j0, j1, base = _seg_row(
            i, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg, n_cross, valid, cols,
            colsf, prow, trow,
        )  # fmt: skip
        for j in range(j0, j1):
            _acc_add(img, np.uint64(base + j), np.uint64(trow[np.uint64(j)]), s0, s1, s2)


@njit(cache=True)
def _store_sector_packed(out, n, acc, nb, s1, s2):
    """Write the bins of pattern n from their packed words (Σ I below bit s1, Σ I² from s1, count from s2)."""
    u1 = np.uint64(s1)
    u2 = np.uint64(s2)
    low = (np.uint64(1) << u1) - np.uint64(1)
    mid = (np.uint64(1) << (u2 - u1)) - np.uint64(1)
    for b in range(nb):
        wd = acc[b]
        _store(out, n, b, np.int64(wd >> u2), np.int64(wd & low), np.int64((wd >> u1) & mid))


@njit(cache=True, error_model="numpy")
def _profiles_packed(out, n, acc, nb, s1, s2):
    """_store_sector_packed for out = the five finished fields: the arithmetic of _store_profiles (so the same
    values bit for bit, NaN where _mean_sem / _sem_azimuthal give it) with selects instead of branches, so that
    the loop over the bins vectorises."""
    mean, total, count, sem_p, sem_a = out
    u1 = np.uint64(s1)
    u2 = np.uint64(s2)
    low = (np.uint64(1) << u1) - np.uint64(1)
    mid = (np.uint64(1) << (u2 - u1)) - np.uint64(1)
    nan = np.nan
    for b in range(nb):
        wd = acc[b]
        c = np.float64(np.int64(wd >> u2))
        a = np.float64(np.int64(wd & low))
        q2 = np.float64(np.int64((wd >> u1) & mid))
        total[n, b] = a
        count[n, b] = c
        filled = c > 0.0
        cs = c if filled else 1.0  # (an empty bin's quotients are replaced by NaN: no 0/0 evaluated)
        m = a / cs
        mean[n, b] = m if filled else nan
        sp = math.sqrt(a) / cs
        sem_p[n, b] = sp if filled else nan
        n_eff = c * c / cs
        multi = n_eff > 1 + 1e-12
        v = math.sqrt(max(q2 / cs - m * m, 0.0) / ((n_eff if multi else 2.0) - 1.0))
        sem_a[n, b] = v if filled & multi else nan


def _finish_packed(out, n, acc, nb, s1, s2):
    """Write pattern n from its packed words: the five finished fields (_profiles_packed) or any other output of
    _store (_store_sector_packed)."""
    if isinstance(out, tuple) and len(out) == 5:
        _profiles_packed(out, n, acc, nb, s1, s2)
    else:
        _store_sector_packed(out, n, acc, nb, s1, s2)


@overload(_finish_packed, inline="always")
def _ov_finish_packed(out, n, acc, nb, s1, s2):
    if isinstance(out, types.BaseTuple) and len(out) == 5:
        return lambda out, n, acc, nb, s1, s2: _profiles_packed(out, n, acc, nb, s1, s2)
    return lambda out, n, acc, nb, s1, s2: _store_sector_packed(out, n, acc, nb, s1, s2)


@njit(parallel=True, cache=True)
def _k_sectors(data, shifts, ny, nx, cy, cx, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg,
               n_cross, valid, cb, out):  # fmt: skip
    """Sub-pixel shifted sectors of uint8/uint16 data (n_phi > 1): _k_shift's bins, sums and outputs bit for bit.

    Per row the sector of every column comes from the row's crossings of the sector boundaries (no azimuth per
    pixel, geometry.sector_segments) and the radial bin from a float32 pass (8 lanes); pixels within a margin of
    a crossing or of a bin edge take the exact arithmetic of _k_shift (_direct_exact). (count, Σ I, Σ I²) of a bin
    share one uint64 word (one add per pixel) whenever the pattern's maximum allows it (_sector_pack with the
    count bound ``cb``, geometry.sector_count_bound), else the separate accumulators. Exact integer sums.
    ``prm`` = (a, b, eps) of the radial pass: f = √s·a − b, base margin eps [bins].
    """
    n_pat = data.shape[0]
    nb = n_phi * (thr.size - 1)
    ucb = np.uint64(cb)
    for n in prange(n_pat):
        img = data[n]
        trow = np.empty(nx, np.int32)
        prow = np.empty(nx, np.int32)
        cols = np.arange(nx).astype(np.float64)
        colsf = cols.astype(np.float32)
        cyn = cy + shifts[n, 0]
        cxn = cx + shifts[n, 1]
        s1, s2 = _sector_pack(ucb, _pattern_max(img))
        if s2 > 0:
            acc = np.zeros(nb + 1, np.uint64)
            one = np.uint64(1) << np.uint64(s2)
            _seg_one_packed(
                img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg, n_cross,
                valid, cols, colsf, prow, trow, s1, one, acc,
            )  # fmt: skip
            _finish_packed(out, n, acc, nb, s1, s2)
            continue
        s0, sa, sqq = _acc_zeros(data, nb + 1, True)
        _seg_one(
            img, ny, nx, cyn, cxn, m00, m01, m11, thr, lut, inv_h, n_phi, prm, sq, sgain, sseg, n_cross, valid,
            cols, colsf, prow, trow, s0, sa, sqq,
        )  # fmt: skip
        for b in range(nb):
            c, a, q2 = _acc_bin(s0, sa, sqq, b, True, 1)
            _store(out, n, b, c, a, q2)


# ----------------------------------------------------------------------------------------------------------
# split pixels (float64 data)
# ----------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _accumulate_one(img, pix, bins, w, ne, acc):
    """acc[(Σw, Σw·I, Σw·I², Σw², Σw²·I), bin] over the first ne entries, skipping NaN pixels."""
    for e in range(ne):
        v = float(img[pix[e]])
        if v != v:
            continue
        _add_weighted(acc, bins[e], w[e], v)


@njit(parallel=True, cache=True)
def _k_entries(data, pix, bins, w, out):
    """Fixed centre, general (split pixels and/or sectors): data (N, npix) → out (N, 6, nb)."""
    n_pat = data.shape[0]
    ne = pix.size
    for n in prange(n_pat):
        out[n, :, :] = 0.0
        _accumulate_one(data[n], pix, bins, w, ne, out[n])
        out[n, 5, :] = np.nan


@njit(cache=True)
def _split_accumulate(img, ny, nx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq, n_phi, valid, acc):
    """Split pixels about centre (cy, cx) straight into acc[(Σw, Σw·I, Σw·I², Σw², Σw²·I), bin]: the entries of
    _pixel_entries(split=True) in the same order and arithmetic as _accumulate_one, without the entry list."""
    nq = edges.size - 1
    # a pixel's corrected square reaches at most half its corrected diagonal (|E1| + |E2|) / 2 beyond its centre
    # (E1 = M·(1, 0), E2 = M·(0, 1)): rows are visited only over the columns whose centres lie within that
    # reach (plus a pixel) of the top edge
    reach = 0.5 * (math.sqrt(m00 * m00 + m01 * m01) + math.sqrt(m01 * m01 + m11 * m11)) + 1.0
    r_top = edges[nq] / pixel_size + reach
    for i in range(ny):
        dy = i - cy
        j0, j1 = _row_span(nx, dy, cx, m00, m01, m11, r_top * r_top)
        for j in range(j0, j1):
            p = i * nx + j
            if not valid[p]:
                continue
            v = float(img[p])
            if v != v:
                continue
            dx = j - cx
            rmin, rmax = _pixel_extent(dy, dx, m00, m01, m11)
            qa = rmin * pixel_size
            qb = rmax * pixel_size
            if qb <= edges[0] or qa >= edges[nq]:
                continue
            s = 0
            if n_phi > 1:
                xc, yc = _corrected(dy, dx, m00, m01, m11)
                s = _sector(xc, yc, n_phi)
            k = max(_find_bin(edges, qa, inv_dq), 0)  # first bin reached
            while k < nq and edges[k] < qb:
                lo = max(qa, edges[k])
                hi = min(qb, edges[k + 1])
                if hi > lo:
                    _add_weighted(acc, s * nq + k, (hi - lo) / (qb - qa), v)
                k += 1


@njit(parallel=True, cache=True)
def _k_shifted(data, shifts, ny, nx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq, n_phi, valid, out):
    """Per-pattern centres (cy + shifts[n, 0], cx + shifts[n, 1]) with split pixels: extents on the fly."""
    n_pat = data.shape[0]
    for n in prange(n_pat):
        out[n, :, :] = 0.0
        _split_accumulate(
            data[n], ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, pixel_size, edges, inv_dq,
            n_phi, valid, out[n],
        )  # fmt: skip
        out[n, 5, :] = np.nan


@njit(cache=True)
def _stable_argsort(v):
    """Stable ascending argsort (bottom-up merge sort; cheaper to compile than numba's mergesort argsort)."""
    n = v.size
    a = np.arange(n)
    b = np.empty(n, np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            for k in range(lo, hi):
                if i < mid and (j >= hi or v[a[i]] <= v[a[j]]):
                    b[k] = a[i]
                    i += 1
                else:
                    b[k] = a[j]
                    j += 1
        a, b = b, a
        width *= 2
    return a


@njit(cache=True)
def _weighted_median(v, w):
    """Weighted median: v sorted (stably) ascending; smallest v[k] with cumulative weight >= half the total;
    exactly half → mean of v[k] and v[k+1]."""
    total = 0.0
    for k in range(v.size):
        total += w[k]
    half = 0.5 * total
    c = 0.0
    for k in range(v.size):
        c += w[k]
        if c >= half:
            if c == half and k + 1 < v.size:
                return 0.5 * (v[k] + v[k + 1])
            return v[k]
    return np.nan


@njit(cache=True)
def _robust_one(img, pix, bins, w, ne, nb, median, clip_sigma, acc):
    """Per-ring median or sigma-clipped mean for one pattern; acc as in _accumulate_one plus acc[5] = statistic."""
    # counting sort of the valid entries by bin (stable: pixel order kept within a bin)
    cnt = np.zeros(nb + 1, np.int64)
    for e in range(ne):
        if img[pix[e]] == img[pix[e]]:
            cnt[bins[e] + 1] += 1
    for b in range(nb):
        cnt[b + 1] += cnt[b]
    m = cnt[nb]
    vals = np.empty(m)
    wts = np.empty(m)
    pos = np.empty(nb, np.int64)
    for b in range(nb):
        pos[b] = cnt[b]
    for e in range(ne):
        v = float(img[pix[e]])
        if v != v:
            continue
        b = bins[e]
        vals[pos[b]] = v
        wts[pos[b]] = w[e]
        pos[b] += 1
    for b in range(nb):
        lo = cnt[b]
        hi = cnt[b + 1]
        acc[5, b] = np.nan
        if hi == lo:
            continue
        vb = vals[lo:hi]
        wb = wts[lo:hi]
        keep = np.ones(hi - lo, np.bool_)
        if median:
            order = _stable_argsort(vb)
            vs = np.empty(hi - lo)
            ws = np.empty(hi - lo)
            for t in range(hi - lo):
                vs[t] = vb[order[t]]
                ws[t] = wb[order[t]]
            acc[5, b] = _weighted_median(vs, ws)
        else:
            for _ in range(_MAX_CLIP_ITER):
                sw = 0.0
                swv = 0.0
                for t in range(hi - lo):
                    if keep[t]:
                        sw += wb[t]
                        swv += wb[t] * vb[t]
                mu = swv / sw
                sq = 0.0
                for t in range(hi - lo):
                    if keep[t]:
                        sq += wb[t] * (vb[t] - mu) * (vb[t] - mu)
                sd = math.sqrt(sq / sw)
                changed = False
                for t in range(hi - lo):
                    k = abs(vb[t] - mu) <= clip_sigma * sd
                    if k != keep[t]:
                        changed = True
                    keep[t] = k
                if not changed:
                    break
        for t in range(hi - lo):
            if keep[t]:
                _add_weighted(acc, b, wb[t], vb[t])
        if not median and acc[0, b] > 0:
            acc[5, b] = acc[1, b] / acc[0, b]


@njit(parallel=True, cache=True)
def _k_robust(
    data, shifted, shifts, pix0, bins0, w0, ny, nx, cy, cx, m00, m01, m11, pixel_size, edges, inv_dq,
    split, n_phi, valid, cap, median, clip_sigma, out,
):  # fmt: skip
    """Median / sigma-clipped mean per ring; fixed tables (pix0, bins0, w0) or per-pattern centres."""
    n_pat = data.shape[0]
    nb = out.shape[2]
    for n in prange(n_pat):
        out[n, :, :] = 0.0
        if shifted:
            pix = np.empty(cap, np.int32)
            bins = np.empty(cap, np.int32)
            w = np.empty(cap, np.float64)
            ne = _pixel_entries(
                ny, nx, cy + shifts[n, 0], cx + shifts[n, 1], m00, m01, m11, pixel_size, edges, inv_dq, split,
                n_phi, valid, pix, bins, w,
            )  # fmt: skip
            _robust_one(data[n], pix, bins, w, ne, nb, median, clip_sigma, out[n])
        else:
            _robust_one(data[n], pix0, bins0, w0, pix0.size, nb, median, clip_sigma, out[n])


# ----------------------------------------------------------------------------------------------------------
# finishing passes: accumulators → statistics
# ----------------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _finish_one(acc, n, statistic, root_half_pi, mean, total, count, sem_p, sem_a):
    """Bins of pattern n of _k_finish (inlined: no reference counting per call)."""
    nb = acc.shape[2]
    for b in range(nb):
        s0 = acc[n, 0, b]
        s1 = acc[n, 1, b]
        total[n, b] = s1
        count[n, b] = s0
        m, sp = _mean_sem(s0, s1, acc[n, 4, b])
        sa = _sem_azimuthal(s0, m, acc[n, 2, b], acc[n, 3, b])
        if statistic == 2:
            m = acc[n, 5, b]
            sa = sa * root_half_pi
        elif statistic == 1 and s0 > 0:
            m = acc[n, 5, b]
        mean[n, b] = m
        sem_p[n, b] = sp
        sem_a[n, b] = sa


@njit(cache=True)
def _k_finish(acc, statistic, mean, total, count, sem_p, sem_a):
    """Accumulators acc (N, 6, nb) → mean, sum, count, sem_poisson, sem_azimuthal (N, nb) (package docstring).

    Serial: a few ns per bin, less than waking the thread pool costs for one pattern (_k_finish_parallel for
    many bins).

    statistic: 0 mean, 1 clipped (mean = acc[5] in filled bins), 2 median (mean = acc[5], sem_azimuthal times
    sqrt(π/2)). NaN where a quantity is undefined (empty bin, Σw²·I < 0, n_eff <= 1).
    """
    root_half_pi = math.sqrt(math.pi / 2.0)
    for n in range(acc.shape[0]):
        _finish_one(acc, n, statistic, root_half_pi, mean, total, count, sem_p, sem_a)


@njit(parallel=True, cache=True)
def _k_finish_parallel(acc, statistic, mean, total, count, sem_p, sem_a):
    """_k_finish with patterns spread over threads (same arithmetic per bin, so identical results)."""
    root_half_pi = math.sqrt(math.pi / 2.0)
    for n in prange(acc.shape[0]):
        _finish_one(acc, n, statistic, root_half_pi, mean, total, count, sem_p, sem_a)
