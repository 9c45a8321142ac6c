"""Write whole-pattern chunks of a 4D dataset, compressed in parallel outside HDF5's (single-threaded) filter pipeline.

HDF5 applies a dataset's filters inside ``H5Dwrite`` while h5py holds its global lock, so shuffle + LZF of the
pattern chunks runs on one core whatever the rest of the program does. :func:`write_patterns` instead byte-shuffles
and LZF-compresses every pattern in a numba kernel (parallel over patterns, no GIL) and hands the finished chunks to
``h5py.h5d.DatasetID.write_direct_chunk``. The stream is standard LZF (the format liblzf's ``lzf_decompress`` and
h5py's built-in ``lzf`` filter read): literal runs of 1–32 bytes and back references of 3–264 bytes at distances up to
8192. The compressor is a plain greedy LZF (a 3-byte hash table, no lazy matching), so its bytes differ from liblzf's
but decode to the same data. A chunk that would not shrink is stored shuffled but uncompressed with the LZF bit of
the filter mask set, as HDF5 does for an optional filter that fails.

Datasets with any other filter pipeline (e.g. Blosc through hdf5plugin) are written with ordinary h5py slicing.
The decoder (:func:`lzf_decode_chunks`, liblzf's ``lzf_decompress`` and the inverse shuffle) lives here too, so one
module holds the format both ways; ``fitting.chunks`` uses it to read scans in parallel.
"""

from __future__ import annotations

import h5py
import numpy as np
from numba import njit, prange

__all__ = [
    "direct_chunk_codec",
    "lzf_compress_patterns",
    "lzf_decode_chunks",
    "pattern_chunk_filters",
    "write_patterns",
]

_HLOG = 14
_MAX_OFF = 1 << 13
_MAX_REF = (1 << 8) + (1 << 3)  # 264 bytes: the longest back reference (len field 7 + 255, plus 2)
_MAX_LIT = 1 << 5


@njit(cache=True, nogil=True)
def _lzf(src, dst, htab) -> int:
    """Greedy LZF compression of ``src`` into ``dst`` (capacity ≥ len(src) + len(src)//32 + 2); bytes written."""
    n = src.size
    htab[:] = -1
    ip = 0
    op = 1  # dst[0] is the control byte of the first literal run
    lit = 0
    while ip < n:
        ref = -1
        if ip + 2 < n:  # the last two bytes can only be literals
            v = (np.int64(src[ip]) << 16) | (np.int64(src[ip + 1]) << 8) | np.int64(src[ip + 2])
            h = ((v * 2654435761) & 0xFFFFFFFF) >> (32 - _HLOG)
            ref = htab[h]
            htab[h] = ip
        if (
            ref >= 0
            and ip - ref - 1 < _MAX_OFF
            and src[ref] == src[ip]
            and src[ref + 1] == src[ip + 1]
            and src[ref + 2] == src[ip + 2]
        ):
            if lit:
                dst[op - lit - 1] = lit - 1  # close the literal run
            else:
                op -= 1  # no literal run: drop its reserved control byte
            maxlen = min(n - ip, _MAX_REF)
            length = 3
            while length < maxlen and src[ref + length] == src[ip + length]:
                length += 1
            off = ip - ref - 1
            ln = length - 2
            if ln < 7:
                dst[op] = (off >> 8) + (ln << 5)
                op += 1
            else:
                dst[op] = (off >> 8) + (7 << 5)
                dst[op + 1] = ln - 7
                op += 2
            dst[op] = off & 0xFF
            op += 2  # the back reference's last byte, then the next run's control byte
            lit = 0
            ip += length
        else:
            dst[op] = src[ip]
            op += 1
            ip += 1
            lit += 1
            if lit == _MAX_LIT:
                dst[op - lit - 1] = lit - 1
                lit = 0
                op += 1
    if lit:
        dst[op - lit - 1] = lit - 1
    else:
        op -= 1
    return op


@njit(parallel=True, cache=True)
def _shuffle_lzf(raw, shuffle, itemsize, out, sizes):
    """Per row of ``raw`` (uint8, one chunk a row): optional HDF5 byte shuffle, then LZF into ``out``; sizes."""
    n, nb = raw.shape
    nel = nb // itemsize
    for k in prange(n):
        buf = np.empty(nb, np.uint8)
        if shuffle:
            for b in range(itemsize):
                for e in range(nel):
                    buf[b * nel + e] = raw[k, e * itemsize + b]
        else:
            buf[:] = raw[k]
        htab = np.empty(1 << _HLOG, np.int64)
        m = _lzf(buf, out[k], htab)
        if m >= nb:  # incompressible: keep the (shuffled) bytes, flagged by the caller's filter mask
            out[k, :nb] = buf
            m = -nb
        sizes[k] = m


def lzf_compress_patterns(patterns: np.ndarray, *, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Byte-shuffle (HDF5 order) and LZF-compress each pattern of a stack, in parallel over patterns.

    Parameters
    ----------
    patterns : ndarray, shape (n, ...)
        One chunk per leading index (any integer dtype).
    shuffle : bool
        Apply HDF5's byte shuffle first (what ``shuffle=True`` with ``compression="lzf"`` does).

    Returns
    -------
    buffer : ndarray of uint8, shape (n, capacity)
        Chunk k is ``buffer[k, :abs(sizes[k])]``.
    sizes : ndarray of int64, shape (n,)
        Compressed size [bytes]; negative (−raw size) where LZF did not shrink the chunk (stored uncompressed).
    """
    a = np.ascontiguousarray(patterns)
    n = a.shape[0]
    raw = a.reshape(n, -1).view(np.uint8)
    nb = raw.shape[1]
    out = np.empty((n, nb + nb // 32 + 16), np.uint8)
    sizes = np.empty(n, np.int64)
    _shuffle_lzf(raw, bool(shuffle) and a.dtype.itemsize > 1, a.dtype.itemsize, out, sizes)
    return out, sizes


@njit(cache=True, nogil=True)
def _lzf_decode(src, s0, s1, dst):
    """LZF-decode src[s0:s1] into dst (liblzf ``lzf_decompress``); returns the number of bytes written (−1 on a
    corrupt stream)."""
    ip = s0
    op = 0
    n_out = dst.size
    while ip < s1:
        ctrl = np.int64(src[ip])
        ip += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            ctrl += 1
            if op + ctrl > n_out or ip + ctrl > s1:
                return -1
            for k in range(ctrl):
                dst[op + k] = src[ip + k]
            op += ctrl
            ip += ctrl
        else:  # back reference
            ln = ctrl >> 5
            ref = op - ((ctrl & 0x1F) << 8) - 1
            if ln == 7:
                if ip >= s1:
                    return -1
                ln += np.int64(src[ip])
                ip += 1
            if ip >= s1:
                return -1
            ref -= np.int64(src[ip])
            ip += 1
            ln += 2
            if ref < 0 or op + ln > n_out:
                return -1
            if ln >= 32 and op - ref >= ln:  # long and without overlap: a block copy
                dst[op : op + ln] = dst[ref : ref + ln]
            elif ln >= 32 and op - ref == 1:  # a long run of one byte (the high bytes of shuffled counts)
                dst[op : op + ln] = dst[ref]
            else:  # short, or overlapping the output: byte by byte (LZF's own semantics)
                for k in range(ln):
                    dst[op + k] = dst[ref + k]
            op += ln
    return op


@njit(cache=True, parallel=True, nogil=True)
def lzf_decode_chunks(src, starts, sizes, lzf, shuffle, itemsize, out):
    """Decode chunk k (bytes src[starts[k]:starts[k] + sizes[k]]) into out[k] (bytes), in parallel over chunks.

    The inverse of :func:`lzf_compress_patterns` and of h5py's own ``shuffle`` + ``lzf`` filters: ``lzf[k]`` and
    ``shuffle[k]`` say which filters were applied to chunk k (HDF5 skips a filter on a chunk it could not
    compress, as :func:`write_patterns` does). Returns the count of chunks that failed (corrupt or of the wrong
    length)."""
    n, nbytes = out.shape
    bad = np.zeros(n, np.int64)
    for k in prange(n):
        s0 = starts[k]
        s1 = s0 + sizes[k]
        tmp = np.empty(nbytes, np.uint8)
        if lzf[k]:
            got = _lzf_decode(src, s0, s1, tmp)
        else:
            got = min(sizes[k], nbytes)
            tmp[:got] = src[s0 : s0 + got]
        if got != nbytes:
            bad[k] = 1
            continue
        if shuffle[k] and itemsize == 2:
            m = nbytes // 2
            o16 = out[k].view(np.uint16)
            for i in range(m):  # little-endian: the first byte plane holds the low bytes
                o16[i] = np.uint16(tmp[i]) | (np.uint16(tmp[m + i]) << np.uint16(8))
        elif shuffle[k] and itemsize > 1:
            m = nbytes // itemsize
            for j in range(itemsize):
                base = j * m
                for i in range(m):
                    out[k, i * itemsize + j] = tmp[base + i]
        else:
            out[k, :] = tmp
    return bad.sum()


def pattern_chunk_filters(ds: h5py.Dataset) -> list[int] | None:
    """The filter pipeline of ``ds`` (HDF5 filter ids, in order) when its chunks hold whole patterns and the
    pipeline is nothing, LZF, byte shuffle, or shuffle then LZF — the layouts this module encodes and decodes
    outside h5py; None for anything else (other chunking or filters, shuffle after LZF)."""
    if ds.ndim != 4 or ds.chunks is None or tuple(ds.chunks) != (1, 1, *ds.shape[2:]):
        return None
    plist = ds.id.get_create_plist()
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    shuffle, lzf = h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_LZF
    if codes in ([], [lzf], [shuffle], [shuffle, lzf]):
        return codes
    return None


def direct_chunk_codec(ds: h5py.Dataset) -> str | None:
    """``"lzf"``, ``"shuffle+lzf"`` or ``"raw"`` when :func:`write_patterns` can write ``ds`` chunk by chunk, else None.

    Direct writing needs chunks of exactly one pattern, (1, 1, det_y, det_x), and a filter pipeline of nothing,
    LZF, or byte shuffle followed by LZF.
    """
    codes = pattern_chunk_filters(ds)
    names = {(): "raw", (h5py.h5z.FILTER_LZF,): "lzf", (h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_LZF): "shuffle+lzf"}
    return None if codes is None else names.get(tuple(codes))  # shuffle alone: written through h5py


def write_patterns(ds: h5py.Dataset, start: int, patterns: np.ndarray) -> None:
    """Write patterns ``start, start + 1, …`` (flat scan index, row-major) of a (scan_y, scan_x, ny, nx) dataset.

    Parameters
    ----------
    ds : h5py.Dataset
        Shape (scan_y, scan_x, det_y, det_x).
    start : int
        Flat index of the first pattern (scan_y · scan_x order).
    patterns : ndarray, shape (n, det_y, det_x)
        Cast to the dataset's dtype (must already fit in it).

    Notes
    -----
    Pattern chunks with a supported pipeline (:func:`direct_chunk_codec`) are compressed in parallel and written
    with ``write_direct_chunk``; anything else goes through h5py slicing, one scan-row segment at a time.
    """
    sx = ds.shape[1]
    data = np.ascontiguousarray(patterns, dtype=ds.dtype)
    n = data.shape[0]
    codec = direct_chunk_codec(ds)
    if codec is None:
        k = 0
        while k < n:
            iy, ix = divmod(start + k, sx)
            m = min(n - k, sx - ix)
            ds[iy, ix : ix + m] = data[k : k + m]
            k += m
        return
    dsid = ds.id
    if codec == "raw":
        for k in range(n):
            iy, ix = divmod(start + k, sx)
            dsid.write_direct_chunk((iy, ix, 0, 0), data[k])
        return
    buf, sizes = lzf_compress_patterns(data, shuffle=codec == "shuffle+lzf")
    lzf_bit = 1 if codec == "shuffle+lzf" else 0  # position of LZF in the pipeline
    for k in range(n):
        iy, ix = divmod(start + k, sx)
        m = int(sizes[k])
        mask = 0 if m > 0 else 1 << lzf_bit
        dsid.write_direct_chunk((iy, ix, 0, 0), buf[k, : abs(m)], filter_mask=mask)
