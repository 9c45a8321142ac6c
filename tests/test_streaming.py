"""Streaming analysis of chunked scans larger than the memory it may use, with the in-memory path's numbers.

* :mod:`fitting.chunks` decodes raw LZF (+ shuffle) chunks itself: every layout must give exactly h5py's values,
  and layouts it does not cover must fall back to h5py;
* :class:`fitting.chunks.ScanSource` indexes like the array it reads and repairs each frame as
  :func:`fitting.calibrate.repair_hot` repairs the whole array;
* :func:`fitting.pipeline.analyze_scan` streamed (``memory_budget=0``) in a fresh process stays under an RSS
  budget several times smaller than the decompressed scan and gives the classes, profiles and peak map of the
  in-memory analysis of the same file, bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fitting.calibrate import repair_hot
from fitting.chunks import ScanSource, reader
from fitting.pipeline import DESCAN_ROWS, EARLY_ELLIPSE_ITERATIONS, EARLY_ELLIPSE_ROWS
from tests.streaming_helpers import write_scan_file

ROOT = Path(__file__).resolve().parents[1]


def _write(path, data, **kw):
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=data, **kw)
    return path


@pytest.mark.parametrize(
    ("kw", "fast"),
    [
        ({"compression": "lzf", "shuffle": True, "chunks": (1, 1, 32, 24)}, True),
        ({"compression": "lzf", "chunks": (1, 1, 32, 24)}, True),
        ({"chunks": (1, 1, 32, 24)}, True),
        ({"compression": "gzip", "chunks": (1, 1, 32, 24)}, False),  # other codecs: h5py reads them
        ({"compression": "lzf", "shuffle": True, "chunks": (1, 3, 32, 24)}, False),  # chunks of several patterns
        ({"compression": "lzf", "shuffle": True, "chunks": (1, 1, 16, 24)}, False),  # chunks smaller than a pattern
    ],
)
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.float32, np.uint8])
def test_chunk_reader_equals_h5py(tmp_path, kw, fast, dtype):
    rng = np.random.default_rng(1)
    # sparse counts (compressible), a bright disc, and one pattern of noise over the full range (LZF cannot
    # shrink it: HDF5 stores that chunk unfiltered and flags it in the chunk's filter mask)
    data = rng.poisson(0.3, (4, 3, 32, 24)).astype(dtype)
    data[..., 12:20, 8:16] += np.asarray(200, dtype)
    info = np.iinfo(dtype) if np.dtype(dtype).kind == "u" else None
    data[2, 1] = rng.integers(0, info.max if info else 1000, (32, 24)).astype(dtype)
    path = _write(tmp_path / "d.h5", data, **kw)
    with h5py.File(path, "r") as f:
        r = reader(f["d"])
        assert r.fast is fast
        np.testing.assert_array_equal(r.read(0, 4), data)
        np.testing.assert_array_equal(r.read(1, 3), data[1:3])
        r.close()


def test_chunk_reader_big_endian_falls_back(tmp_path):
    data = np.arange(2 * 2 * 8 * 8, dtype=">u2").reshape(2, 2, 8, 8)
    path = _write(tmp_path / "be.h5", data, compression="lzf", chunks=(1, 1, 8, 8))
    with h5py.File(path, "r") as f:
        r = reader(f["d"])
        assert not r.fast
        np.testing.assert_array_equal(r.read(0, 2), data)


def test_corrupt_chunk_is_named(tmp_path):
    data = np.random.default_rng(0).poisson(2.0, (2, 2, 16, 16)).astype(np.uint16)
    path = _write(tmp_path / "c.h5", data, compression="lzf", chunks=(1, 1, 16, 16))
    with h5py.File(path, "r") as f:
        r = reader(f["d"])
        addr = int(r._index["addr"][1])
        r.close()
    with open(path, "r+b") as fh:  # overwrite chunk 1 with a back reference before any output
        fh.seek(addr)
        fh.write(bytes([0xE0, 0xFF, 0xFF]))
    with h5py.File(path, "r") as f:
        with pytest.raises(OSError, match="could not be decoded"):
            reader(f["d"]).read(0, 1)


def test_scan_source_indexes_and_repairs_like_the_array(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.poisson(3.0, (5, 4, 24, 20)).astype(np.uint16)
    data[..., 10:14, 8:12] += 300
    for _ in range(6):  # isolated hot pixels of single frames
        data[rng.integers(5), rng.integers(4), rng.integers(2, 22), rng.integers(2, 18)] = 4000
    mask = np.ones((24, 20), bool)
    mask[0, 0] = False
    fixed, n_hot = repair_hot(data, mask=mask)
    assert n_hot >= 6
    path = _write(tmp_path / "s.h5", data, compression="lzf", shuffle=True, chunks=(1, 1, 24, 20))
    with h5py.File(path, "r") as f:
        for src in (ScanSource(f["d"], repair_mask=mask), ScanSource(data, repair_mask=mask)):
            for key in [
                np.s_[1:4],
                np.s_[2, 3],
                np.s_[2, 1:3, 4:9, 2:7],
                np.s_[0:5:2, ::3],
                (np.int64(4), np.int64(0)),
                np.s_[..., 3:5, 1:2],
                np.s_[-1, -2],
            ]:
                np.testing.assert_array_equal(src[key], fixed[key], err_msg=str(key))
            np.testing.assert_array_equal(src.read_patterns([7, 3, 4, 19]), fixed.reshape(-1, 24, 20)[[7, 3, 4, 19]])
            src.reset_count()
            np.testing.assert_array_equal(src.read_rows(0, 5), fixed)
            assert src.hot_taken_out == n_hot
    np.testing.assert_array_equal(data, np.asarray(data))  # the caller's array is never repaired in place


def _child(path, out, budget, warm):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "2"))
    cmd = [sys.executable, "-m", "tests.streaming_helpers", str(path), str(out), str(budget), str(warm)]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, timeout=1200)
    return np.load(out)


def _compare(streamed, in_memory):
    """Streamed results against the in-memory analysis of the same data: classes, profiles and maps equal."""
    np.testing.assert_array_equal(streamed["classes"], in_memory.classes)
    np.testing.assert_array_equal(streamed["shifts"], in_memory.calibration.shifts)
    np.testing.assert_array_equal(streamed["intensity"], in_memory.profiles.intensity)
    d = np.abs(streamed["position"] - in_memory.peak_map.position)
    assert np.array_equal(np.isnan(streamed["position"]), np.isnan(in_memory.peak_map.position))
    assert np.nanmax(d, initial=0.0) <= 1e-9  # Å⁻¹
    s = json.loads(str(streamed["summary"]))
    assert s["ellipse_ratio"] == in_memory.summary["ellipse_ratio"]
    assert s["bad_pixels"] == in_memory.summary["bad_pixels"]
    assert s["classes"] == in_memory.summary["classes"]


def test_streamed_analysis_bounded_memory_same_numbers(tmp_path):
    """A 64 × 48 × 256² lzf scan (403 MB decompressed) with cosmic-ray hits, streamed in a fresh process: peak
    RSS growth over the warmed-up process below a third of the decompressed size (keeping the 32-sector profiles
    alone would take 100 MB more), numbers as in memory."""
    from fitting.pipeline import analyze_scan

    path = write_scan_file(tmp_path / "scan.h5", (64, 48), hot_per_row=2, seed=5)
    warm = write_scan_file(tmp_path / "warm.h5", (16, 6), seed=6)
    decompressed = 64 * 48 * 256 * 256 * 2
    out = _child(path, tmp_path / "streamed.npz", 0, warm)
    growth = int(out["peak_rss"]) - int(out["base_rss"])
    assert bool(out["hwm_reset"])
    budget = decompressed / 3
    print(f"peak RSS growth {growth / 1e6:.0f} MB, decompressed {decompressed / 1e6:.0f} MB")
    assert growth < budget, f"peak RSS grew by {growth / 1e6:.0f} MB streaming a {decompressed / 1e6:.0f} MB scan"
    mem = analyze_scan(path, None, figures=False)  # read into memory (under the default 4 GB budget)
    assert mem.summary["bad_pixels"]["transient_hot_taken_out"] > 0  # the repair is exercised in both paths
    assert mem.summary["ellipse_ratio"] is not None  # so is the ellipse refinement
    _compare(out, mem)
    # the ellipse was measured before the main pass (column strips) and checked on the whole scan: every pattern is
    # read once — twice when the check sent the profiles to a second pass —, plus the descan rows, the strips, the
    # selected pixels of the ellipse measurements and the calibration's mean pattern (≤ 256 patterns)
    s = json.loads(str(out["summary"]))
    passes = 1 if s["ellipse_check"].endswith("single pass") else 2
    sy, sx = 64, 48
    amorphous = s["class_counts"]["sei_type1"] + s["class_counts"]["sei_type2"] + s["class_counts"]["electrolyte"]
    strips = sy * round(EARLY_ELLIPSE_ROWS * sx / sy) * 2  # at most half the columns
    extra = DESCAN_ROWS * sx + strips + (2 + EARLY_ELLIPSE_ITERATIONS) * amorphous + 256
    n, got = sy * sx, int(out["patterns_read"])
    print(f"patterns read {got} of {n} ({got / n:.2f} per pattern, {passes} pass(es)): {s['ellipse_check']}")
    assert passes * n <= got <= passes * n + extra


@pytest.mark.slow
def test_streamed_3gb_scan_under_1p5gb(tmp_path_factory):
    """A 150 × 150 × 256² scan (2.9 GB decompressed) streamed under 1.5 GB peak RSS (the whole child process),
    with the numbers of an in-memory analysis of the same file."""
    from fitting.pipeline import analyze_scan

    tmp = tmp_path_factory.mktemp("big")
    path = write_scan_file(tmp / "big.h5", (150, 150), hot_per_row=1, seed=7)
    warm = write_scan_file(tmp / "warm.h5", (16, 6), seed=6)
    out = _child(path, tmp / "streamed.npz", 0, warm)
    assert int(out["peak_rss"]) < 1.5e9
    # the whole child, warm-up included: VmHWM of its own process image. Not ru_maxrss: Linux keeps a process's
    # maxrss across fork and execve, so a child of a pytest process that grew to 6 GB reports 6 GB
    assert int(out["life_hwm"]) < 1.5e9
    _compare(out, analyze_scan(path, None, figures=False, memory_budget=4e9))


def test_scan_file_with_independent_realisations(tmp_path):
    # pool=None: every pattern its own Poisson draw of its row's expectation — no two patterns of a row equal, and
    # the row's summed counts within 5 σ of the expected total (Poisson: variance = mean)
    import h5py

    from tests.streaming_helpers import expected_rows

    path = write_scan_file(tmp_path / "ind.h5", (2, 6), det=(32, 32), pool=None, electrons=2e4)
    exp, _ = expected_rows(2, (32, 32), electrons=2e4, seed=0)
    with h5py.File(path) as f:
        names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) and f[n].ndim == 4 else None)
        data = f[names[0]][()]
    assert data.shape == (2, 6, 32, 32)
    for i in range(2):
        flat = data[i].reshape(6, -1)
        assert len({row.tobytes() for row in flat}) == 6
        mu = 6 * exp[i].sum()
        assert abs(flat.sum() - mu) < 5 * np.sqrt(mu)


_WORKQUEUE_ANALYSIS = """
import sys
from pathlib import Path
from tests.streaming_helpers import write_scan_file
from fitting.io import load_scan
from fitting.pipeline import analyze_scan
p = write_scan_file(Path(sys.argv[1]) / "s.h5", (40, 6), det=(64, 64))
res = analyze_scan(load_scan(p), memory_budget=0)
import numba
assert numba.threading_layer() == "workqueue"
print("done", res.peak_map is not None)
"""


def test_streamed_analysis_runs_on_numba_workqueue_layer(tmp_path):
    # numba's fallback threading layer terminates the process when parallel kernels run from two threads at once:
    # the read-ahead of the streamed passes (decoder in a second thread) must then stay off
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("SEI_SEND_PREFETCH", None)
    res = subprocess.run(
        [sys.executable, "-c", _WORKQUEUE_ANALYSIS, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_read_ahead_allowed_with_a_threadsafe_layer():
    from fitting.profiles import _concurrent_kernels_safe
    from simkit.radial import make_plan

    make_plan((16, 16), center=(8.0, 8.0), pixel_size=0.01, n_bins=4).integrate(np.ones((2, 16, 16)))
    import numba

    assert _concurrent_kernels_safe() == (numba.threading_layer() != "workqueue")
