"""Big chunked SEND scan files for the streaming tests and ``bench/analysis.py``, made fast.

A full synthesis costs ≈ 2 ms per pattern; these files instead hold Poisson samples of a few expected patterns:
the layered Li | SEI Type 1 | Type 2 | Cu stack of :func:`tests.synthetic_scan_helpers.make_scan` along scan y
(descan along y, a 1 % ellipse, 10⁵ electrons per pattern), one expected pattern per scan row and ``pool``
Poisson realisations of it, each column drawing one of them. The content is realistic SEND data (direct beam,
SRO rings, Bragg spots of Li, Cu and LiF, descan), so calibration, classification and the ellipse refinement all
run; only the noise repeats within a row. Written in the EMD 1.0 layout of :func:`simkit.emd.write_emd_header`
(chunked by pattern).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from simkit.atomic import atomic_path
from simkit.emd import write_emd_header
from simkit.geometry import DetectorGeometry
from tests.synthetic_scan_helpers import layered_weights, make_scan

#: Detector pixel size of the files [Å⁻¹/px] (256 px cover ±0.83 Å⁻¹), as in bench/analysis.py.
PIXEL_SIZE = 0.0065
#: Scan step [Å].
STEP = 40.0


def expected_rows(sy: int, det=(256, 256), *, electrons: float = 1e5, seed: int = 0):
    """Expected patterns (sy, ny, nx) [counts] of a layered stack along y, one per scan row, and their regions."""
    rng = np.random.default_rng(seed)
    # Li | Type 1 (≈ 15 nm at 4 nm steps, at least 4 rows) | Type 2 (≈ 35 nm) | Cu, as in the study's bottom scan
    t1 = max(4.0, 15 / 4)
    t2 = max(9.0, 35 / 4)
    lo = 0.35 * sy
    w = layered_weights((sy, 1), [lo, lo + t1, lo + t1 + t2], ["li", "type1", "type2", "cu"])
    exp, truth = make_scan(
        w, det_shape=det, pixel_size=PIXEL_SIZE, electrons=electrons, rng=rng, noise=False,
        descan=((0.0, 2.0, 0.0), (0.0, -1.5, 0.0)), ellipse=(1.01, 0.5),
    )  # fmt: skip
    return exp[:, 0], truth["regions"][:, 0]


def write_scan_file(
    path,
    scan_shape,
    *,
    det=(256, 256),
    electrons: float = 1e5,
    pool: int | None = 8,
    seed: int = 0,
    compression="lzf",
    hot_per_row: int = 0,
) -> Path:
    """Write (atomically) a chunked EMD file of ``scan_shape`` Poisson-sampled layered patterns.

    Parameters
    ----------
    path : path
    scan_shape : (int, int)  [positions]
    det : (int, int)  [px]
    electrons : float  [e per pattern]
    pool : int or None
        Poisson realisations per scan row (columns draw among them); None: an independent realisation for every
        pattern (slower to write: ≈ 4 MB/s of file on one core).
    seed : int
    compression : {"lzf", "blosc-lz4", None}
    hot_per_row : int
        Transient hot pixels (cosmic-ray hits of 5000 counts, one pixel of one frame each) added per scan row.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    sy, sx = (int(v) for v in scan_shape)
    rng = np.random.default_rng(seed)
    exp, _ = expected_rows(sy, det, electrons=electrons, seed=seed)
    geom = DetectorGeometry(shape=tuple(det), pixel_size=PIXEL_SIZE)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = write_emd_header(
                f, (sy, sx), geom, STEP, compression=compression, energy=300e3, semiangle=2.0, file_id=str(seed),
            )  # fmt: skip
            for i in range(sy):
                n_real = sx if pool is None else pool
                real = rng.poisson(np.broadcast_to(exp[i], (n_real,) + tuple(det))).astype(np.uint16)
                row = real if pool is None else real[rng.integers(0, pool, sx)]
                for _ in range(int(hot_per_row)):
                    row[rng.integers(sx), rng.integers(det[0]), rng.integers(det[1])] = 5000
                ds[i] = row
    return path


def cached_scan_file(folder, scan_shape, **kw) -> Path:
    """:func:`write_scan_file` into ``folder`` once (the name holds every parameter); later calls reuse it."""
    sy, sx = scan_shape
    tag = "_".join(f"{k}{v}" for k, v in sorted(kw.items()))
    path = Path(folder) / f"layered_{sy}x{sx}_{tag or 'default'}.h5"
    if not path.exists():
        os.makedirs(path.parent, exist_ok=True)
        write_scan_file(path, scan_shape, **kw)
    return path


def _status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _record_sources() -> list:
    """Every :class:`fitting.chunks.ScanSource` made from now on in this process, in a list (for its
    ``patterns_read``: how many patterns a streamed analysis read)."""
    from fitting.chunks import ScanSource

    made: list = []
    init = ScanSource.__init__

    def recording(self, *a, **kw):
        init(self, *a, **kw)
        made.append(self)

    ScanSource.__init__ = recording
    return made


def analyze_in_child(path, out, *, memory_budget: float = 0.0, warm=None) -> None:
    """Body of the child process of the bounded-memory tests and bench: warm up (imports, numba caches) on the
    small file ``warm``, reset the peak RSS (``/proc/self/clear_refs``), stream ``path`` through
    :func:`fitting.pipeline.analyze_scan` and save the results with the peak RSS [bytes] and the number of
    patterns the streamed analysis read (``patterns_read``) to ``out`` (.npz)."""
    import json
    import resource
    import time

    from fitting.pipeline import analyze_scan

    if warm is not None:
        analyze_scan(warm, None, figures=False, memory_budget=memory_budget)
    base = _status_kib("VmRSS") * 1024
    life = _status_kib("VmHWM") * 1024  # this process image's peak so far (imports, warm-up)
    try:
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS (Linux ≥ 4.0)
            f.write("5")
        reset = True
    except OSError:
        reset = False
    sources = _record_sources()
    t0, c0 = time.perf_counter(), time.process_time()
    res = analyze_scan(path, None, figures=False, memory_budget=memory_budget)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    hwm = _status_kib("VmHWM") * 1024
    np.savez(
        out, classes=res.classes, position=res.peak_map.position, raw_position=res.raw_peak_map.position,
        intensity=res.profiles.intensity, shifts=res.calibration.shifts, summary=json.dumps(res.summary),
        peak_rss=hwm, base_rss=base, hwm_reset=reset, wall=wall, cpu=cpu,
        patterns_read=sum(src.patterns_read for src in sources),
        life_hwm=max(life, hwm),  # the whole life of this process image: warm-up and analysis
        ru_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # see tests/test_streaming.py
    )  # fmt: skip


if __name__ == "__main__":  # python -m tests.streaming_helpers PATH OUT.npz MEMORY_BUDGET [WARM_PATH]
    import sys

    analyze_in_child(
        sys.argv[1], sys.argv[2], memory_budget=float(sys.argv[3]), warm=sys.argv[4] if len(sys.argv) > 4 else None
    )
