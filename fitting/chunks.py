"""Parallel reading of chunked HDF5 scans: raw chunks read once, decompressed on every core.

h5py decompresses chunk by chunk under its global lock, on one core (0.35–0.8 ms per lzf-compressed 256² uint16
pattern). For the codec every h5py writes without plugins — LZF, optionally after HDF5's byte shuffle, with
chunks holding whole patterns — :func:`read_rows` instead finds the file offset of every chunk once
(``h5py`` ``chunk_iter``), reads the compressed bytes of a block of rows with one ``pread`` per run of adjacent
chunks and decodes them in a numba ``prange`` kernel (LZF as in liblzf's ``lzf_d.c``, then the inverse shuffle).
Other layouts and codecs (Blosc through hdf5plugin, chunks smaller than a pattern, big-endian data, virtual or
external datasets) are read through h5py; so are NumPy arrays, memmaps and dask arrays (their own block reads).
The values are identical to h5py's in every case.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from simkit.chunkio import lzf_decode_chunks, pattern_chunk_filters

__all__ = ["ChunkReader", "ScanSource", "read_rows", "reader"]


class ChunkReader:
    """Reads blocks of scan rows of a 4-D dataset (scan_y, scan_x, det_y, det_x) as NumPy arrays.

    Use :func:`reader` to make one; ``read(r0, r1)`` returns rows [r0, r1) as an ndarray of the dataset's dtype
    (native byte order); ``fast`` says whether the parallel raw-chunk path is used (else h5py / the array's
    own slicing).
    """

    def __init__(self, data):
        self.data = data
        self.shape = tuple(int(v) for v in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.fast = False
        self._index = None
        try:
            self._index = _chunk_index(data)
        except Exception:  # any layout the fast path does not cover: h5py reads it
            self._index = None
        self.fast = self._index is not None

    def read(self, r0: int, r1: int) -> np.ndarray:
        """Scan rows [r0, r1) as an ndarray (r1 − r0, scan_x, det_y, det_x)."""
        if not self.fast:
            block = self.data[r0:r1]
            if hasattr(block, "compute"):
                block = block.compute()
            return np.asarray(block)
        sx = self.shape[1]
        return self.read_flat(r0 * sx, r1 * sx).reshape((r1 - r0,) + self.shape[1:])

    def read_flat(self, k0: int, k1: int) -> np.ndarray:
        """Patterns [k0, k1) of the flattened scan index as (k1 − k0, det_y, det_x) (fast path only)."""
        idx = self._index
        addr, size = idx["addr"][k0:k1], idx["size"][k0:k1]
        out = np.empty((k1 - k0, self.dtype.itemsize * int(np.prod(self.shape[2:]))), np.uint8)
        src, starts = _read_raw(idx["fd"], addr, size)
        bad = lzf_decode_chunks(src, starts, size, idx["lzf"][k0:k1], idx["shuffle"][k0:k1], self.dtype.itemsize, out)
        if bad:
            raise OSError(f"{idx['name']}: {bad} chunk(s) of patterns {k0}–{k1} could not be decoded (corrupt file?)")
        return out.view(self.dtype).reshape((k1 - k0,) + self.shape[2:])

    def close(self) -> None:
        if self._index is not None and self._index.get("fd") is not None:
            os.close(self._index["fd"])
            self._index["fd"] = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def reader(data) -> ChunkReader:
    """A :class:`ChunkReader` of a 4-D scan (h5py dataset, NumPy array, memmap or dask array)."""
    return data if isinstance(data, ChunkReader) else ChunkReader(data)


def read_rows(data, r0: int, r1: int) -> np.ndarray:
    """Scan rows [r0, r1) of ``data`` as an ndarray (parallel raw-chunk decoding where possible)."""
    return reader(data).read(r0, r1)


def _chunk_index(ds):
    """File address, size and applied filters of every chunk of an h5py dataset chunked by whole patterns,
    compressed with nothing or LZF (with or without shuffle); None when the fast path does not apply."""
    import h5py

    if not isinstance(ds, h5py.Dataset) or ds.ndim != 4 or ds.chunks is None:
        return None
    sy, sx, ny, nx = (int(v) for v in ds.shape)
    if tuple(ds.chunks) != (1, 1, ny, nx) or ds.is_virtual or ds.external:
        return None
    dt = ds.dtype
    if dt.kind not in "uif" or not dt.isnative or dt.itemsize not in (1, 2, 4, 8) or sys.byteorder != "little":
        return None
    filters = pattern_chunk_filters(ds)
    if filters is None:
        return None
    pos = {f: i for i, f in enumerate(filters)}
    n = sy * sx
    addr = np.full(n, -1, np.int64)
    size = np.zeros(n, np.int64)
    mask = np.zeros(n, np.int64)

    def visit(c):
        k = int(c.chunk_offset[0]) * sx + int(c.chunk_offset[1])
        addr[k] = int(c.byte_offset)
        size[k] = int(c.size)
        mask[k] = int(c.filter_mask)

    ds.id.chunk_iter(visit)
    if (addr < 0).any():  # unwritten chunks (fill value): h5py fills them
        return None
    base = int(ds.file.userblock_size or 0)

    def applied(f):
        if f not in pos:
            return np.zeros(n, np.bool_)
        return (mask >> pos[f]) & 1 == 0

    fd = os.open(ds.file.filename, os.O_RDONLY)
    return {
        "addr": addr + base, "size": size, "fd": fd,
        "lzf": applied(h5py.h5z.FILTER_LZF), "shuffle": applied(h5py.h5z.FILTER_SHUFFLE),
        "name": f"{ds.file.filename}:{ds.name}",
    }  # fmt: skip


def _read_raw(fd, addr, size):
    """The bytes of the given chunks in one buffer (one pread per run of adjacent chunks) and their offsets."""
    n = addr.size
    out = np.empty(int(size.sum()), np.uint8)
    starts = np.empty(n, np.int64)
    pos = 0
    k = 0
    while k < n:
        j = k + 1
        while j < n and addr[j] == addr[j - 1] + size[j - 1]:
            j += 1
        length = int(addr[j - 1] + size[j - 1] - addr[k])
        view = memoryview(out)[pos : pos + length]
        got = 0
        while got < length:
            m = os.preadv(fd, [view[got:]], int(addr[k]) + got)
            if m <= 0:
                raise OSError(f"short read at file offset {int(addr[k]) + got}")
            got += m
        starts[k:j] = pos + (addr[k:j] - addr[k])
        pos += length
        k = j
    return out, starts


class ScanSource:
    """A 4-D scan (scan_y, scan_x, det_y, det_x) read block by block, with transient hot pixels taken out of
    every frame as it is read — the same frames an in-memory analysis sees.

    It indexes like an array (``src[r0:r1]``, ``src[iy, ix]``, ``src[iy, x0:x1, y0:y1, x0:x1]``; scan axes by
    integers or slices, the detector axes by anything NumPy takes) and returns ndarrays; reads go through a
    :class:`ChunkReader` (parallel raw-chunk decoding where the layout allows). Each frame read is repaired by
    :func:`fitting.calibrate.repair_hot` with ``repair_mask`` (None: no repair); ``hot_taken_out`` counts the
    pixels taken out since the last :meth:`reset_count`; ``patterns_read`` counts every pattern read (decoded)
    since it was made, so that a caller can check how many times a pass over the scan read each pattern.

    Parameters
    ----------
    data : h5py dataset, memmap, dask or NumPy array (scan_y, scan_x, det_y, det_x)  [counts]
    repair_mask : ndarray of bool (det_y, det_x) or None
        True = use the pixel (the static bad pixels False); None: frames are returned as stored.
    """

    def __init__(self, data, repair_mask=None):
        self._reader = reader(data)
        self.shape = tuple(int(v) for v in data.shape)
        if len(self.shape) != 4:
            raise ValueError(f"data of shape {self.shape}: expected (scan_y, scan_x, det_y, det_x)")
        self.dtype = np.dtype(data.dtype)
        self.ndim = 4
        self.size = int(np.prod(self.shape))
        self.nbytes = self.size * self.dtype.itemsize
        self.repair_mask = None if repair_mask is None else np.ascontiguousarray(repair_mask, dtype=bool)
        self.hot_taken_out = 0
        self.patterns_read = 0
        # isolated hot pixels per frame (−1: not yet read): later reads repair only the frames that have some
        self._hits = np.full(self.shape[0] * self.shape[1], -1, np.int32)

    @property
    def fast(self) -> bool:
        """Whether the parallel raw-chunk path reads the data."""
        return self._reader.fast

    def reset_count(self) -> None:
        self.hot_taken_out = 0

    def _repair(self, frames, k0):
        """Frames k0, k0 + 1, … repaired in place; frames found clean once are not searched again."""
        if self.repair_mask is None:
            return frames
        from fitting.calibrate import HOT_FACTOR, _k_repair, repair_hot

        if not frames.flags.c_contiguous or not frames.flags.writeable or frames.dtype.byteorder not in ("=", "|"):
            frames = np.ascontiguousarray(frames, dtype=frames.dtype.newbyteorder("="))
        m = frames.shape[0]
        hits = self._hits[k0 : k0 + m]
        todo = np.flatnonzero(hits < 0)
        if todo.size:  # first read of these frames: count their isolated hot pixels (repair_hot's first step)
            sub = frames if todo.size == m else np.ascontiguousarray(frames[todo])
            got = np.zeros(sub.shape[0], np.int64)
            _k_repair(sub, self.repair_mask, float(HOT_FACTOR), False, False, got)
            hits[todo] = got
        hot = np.flatnonzero(hits > 0)
        if hot.size:
            part, n = repair_hot(np.ascontiguousarray(frames[hot]), mask=self.repair_mask, copy=False)
            frames[hot] = part
            self.hot_taken_out += int(n)
        return frames

    def _flat(self, k0: int, k1: int) -> np.ndarray:
        """Patterns [k0, k1) of the flattened scan index, as (k1 − k0, det_y, det_x), repaired."""
        sy, sx = self.shape[:2]
        r0, r1 = k0 // sx, (k1 - 1) // sx + 1
        self.patterns_read += k1 - k0
        if self._reader.fast:
            blocks = self._reader.read_flat(k0, k1)  # a fresh array: repaired in place
        else:  # the caller's array (or h5py's) is never changed: repaired in a copy
            rows = self._reader.read(r0, r1).reshape((-1,) + self.shape[2:])
            blocks = np.array(rows[k0 - r0 * sx : k1 - r0 * sx])
        return self._repair(blocks, k0)

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Scan rows [r0, r1) as (r1 − r0, scan_x, det_y, det_x), repaired."""
        sx = self.shape[1]
        return self._flat(r0 * sx, r1 * sx).reshape((r1 - r0,) + self.shape[1:])

    def read_patterns(self, flat_index) -> np.ndarray:
        """The patterns at the given flat scan indices (sorted runs are read together), repaired, in order."""
        idx = np.asarray(flat_index, dtype=np.int64).ravel()
        out = np.empty((idx.size,) + self.shape[2:], self.dtype)
        if idx.size == 0:
            return out
        order = np.argsort(idx, kind="stable")
        s = idx[order]
        k = 0
        while k < s.size:
            j = k + 1
            while j < s.size and s[j] - s[j - 1] <= 1 and j - k < 512:
                j += 1
            block = self._flat(int(s[k]), int(s[j - 1]) + 1)
            out[order[k:j]] = block[s[k:j] - s[k]]
            k = j
        return out

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (4 - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (4 - len(key))
        sy, sx = self.shape[:2]
        sel = []
        for k, n in zip(key[:2], (sy, sx)):
            if isinstance(k, (int, np.integer)):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} out of range for a scan axis of {n}")
                sel.append((range(i, i + 1), True))
            elif isinstance(k, slice):
                sel.append((range(*k.indices(n)), False))
            else:
                raise TypeError(f"ScanSource: scan axes take integers or slices, not {type(k).__name__}")
        (rows, drop_y), (cols, drop_x) = sel
        det = key[2:]
        if len(cols) == 0 or len(rows) == 0:
            out = np.empty((len(rows), len(cols)) + self.shape[2:], self.dtype)[(slice(None), slice(None)) + det]
        elif cols.step == 1 and len(cols) == sx and rows.step == 1:
            out = self.read_rows(rows.start, rows.stop)[(slice(None), slice(None)) + det]
        else:
            c0, c1 = min(cols), max(cols) + 1
            parts = [self._flat(r * sx + c0, r * sx + c1)[:: cols.step if cols.step > 0 else 1] for r in rows]
            out = np.stack(parts)
            if cols.step < 0:
                out = out[:, ::-1]
            out = out[(slice(None), slice(None)) + det]
        if drop_x:
            out = out[:, 0]
        if drop_y:
            out = out[0]
        if not all(isinstance(k, slice) and k == slice(None) for k in det):  # a crop: a copy (frees the frames)
            out = out.copy()
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.read_rows(0, self.shape[0])
        return a if dtype is None else a.astype(dtype)
