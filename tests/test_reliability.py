"""Reliability: writers killed at random moments, interrupted commands, racing cache builders, seeded determinism.

Oracles: a file at a target name is either absent or complete and readable (atomic writes); a re-run after a
kill completes; concurrent builders produce entries bit-identical to a serial build; the same seed gives the
same bytes in two processes whatever ``NUMBA_NUM_THREADS``, a different seed different bytes.

Children start from a ``forkserver`` that has imported the project (tests/reliability_workers.py), so a kill
costs milliseconds of start-up and the numba kernels come from the on-disk cache warmed by the parent.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests import reliability_workers as w

TRIALS = 20  # kills per writer
#: The project's pattern-library cache (shared with the demo and CLI tests; reused between test runs).
PROJECT_CACHE = Path(__file__).resolve().parents[1] / ".sei-send-cache" / "library"


@pytest.fixture(scope="module")
def ctx():
    c = mp.get_context("forkserver")
    c.set_forkserver_preload(["tests.reliability_workers"])
    return c


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("relcache")
    w.library(d)  # warm: entries on disk, numba kernels compiled into their on-disk cache
    return d


@pytest.fixture(scope="module")
def complete_scan(cache, tmp_path_factory):
    path = tmp_path_factory.mktemp("relscan") / "scan.h5"
    w.write_scan(str(cache), str(path), seed=5)
    return path


def _kill_trials(ctx, target, args, duration, rng, *, trials=TRIALS, check, sig=signal.SIGKILL):
    """Start ``target(*args, started)`` in a child, kill it U(0, 1.2·duration) s after it started; ``check()``.

    Returns the number of trials in which the child was still running when the signal came (a kill mid-work).
    """
    mid = 0
    for _ in range(trials):
        started = ctx.Event()
        p = ctx.Process(target=target, args=(*args, started))
        p.start()
        assert started.wait(60), "the writer did not start"
        time.sleep(float(rng.uniform(0.0, 1.2 * duration)))
        if p.is_alive():
            mid += 1
            os.kill(p.pid, sig)
        p.join(60)
        assert p.exitcode is not None, "the child did not end after the signal"
        check()
    return mid


def _timed(fn, *args) -> float:
    """Best of two runs [s]: the first may compile numba kernels that the children then load from the cache."""
    best = np.inf
    for _ in range(2):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


# ----------------------------------------------------------------------------------------------------------
# kills during writes
# ----------------------------------------------------------------------------------------------------------
def _check_scan(path: Path, shape) -> None:
    """Absent, or an EMD file whose every count and truth map reads back."""
    from fitting.io import load_scan
    from simkit.emd import read_truth

    if not path.exists():
        return
    scan = load_scan(path, lazy=False)
    assert scan.data.shape[:2] == shape
    assert np.all(np.asarray(scan.data).sum(axis=(2, 3)) > 0)  # every pattern written
    assert read_truth(path)["sro_peak"].shape == shape


def test_killed_scan_writer_leaves_no_corrupt_file(ctx, cache, tmp_path):
    rng = np.random.default_rng(1)
    target = tmp_path / "scan.h5"
    duration = _timed(w.write_scan, str(cache), str(tmp_path / "ref.h5"), 1)
    shape = w.scene().field_shape
    mid = _kill_trials(ctx, w.write_scan, (str(cache), str(target), 2), duration, rng,
                       check=lambda: _check_scan(target, shape))  # fmt: skip
    assert mid >= TRIALS // 2, f"only {mid} of {TRIALS} kills landed while the writer ran"
    w.write_scan(str(cache), str(target), 2)  # a re-run completes …
    _check_scan(target, shape)
    assert target.exists()


def _check_entries(cache_dir: Path, shape) -> None:
    from simkit.library import _read_entry as read_entry

    for p in cache_dir.glob("*.h5"):
        pat, spec, info = read_entry(p)  # raises on a truncated file
        assert pat.shape == shape and np.all(np.isfinite(pat))


def test_killed_library_builder_leaves_no_corrupt_entry(ctx, cache, tmp_path):
    rng = np.random.default_rng(2)
    fresh = tmp_path / "fresh"
    duration = _timed(w.build_entries, str(tmp_path / "timing"), 100)
    seeds = iter(range(200, 200 + TRIALS))  # new entries every trial: the kill can land in a simulation or a write

    def trial_args():
        return (str(fresh), next(seeds))

    mid = 0
    for _ in range(TRIALS):
        mid += _kill_trials(ctx, w.build_entries, trial_args(), duration, rng, trials=1,
                            check=lambda: _check_entries(fresh, w.GEOMETRY.shape))  # fmt: skip
    assert mid >= TRIALS // 2
    w.build_entries(str(fresh), 200)  # re-run completes on whatever the kills left
    _check_entries(fresh, w.GEOMETRY.shape)


def _check_analysis(out: Path, n_pixels: int) -> None:
    import matplotlib.image as mpimg

    for p in w.existing_outputs(out):
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".csv":
            rows = p.read_text().splitlines()
            assert len(rows) == n_pixels + 1, f"{p.name}: {len(rows)} rows"
        elif p.suffix == ".png":
            assert mpimg.imread(p).size > 0
        else:
            assert not p.name.endswith(".tmp"), f"temporary file {p.name} left under the target folder"


def test_killed_analysis_leaves_no_corrupt_output(ctx, complete_scan, tmp_path):
    rng = np.random.default_rng(3)
    out = tmp_path / "analysis"
    duration = _timed(w.write_analysis, str(complete_scan), str(tmp_path / "ref"))
    n = int(np.prod(w.scene().field_shape))
    mid = _kill_trials(ctx, w.write_analysis, (str(complete_scan), str(out)), duration, rng,
                       check=lambda: _check_analysis(out, n))  # fmt: skip
    assert mid >= TRIALS // 2
    w.write_analysis(str(complete_scan), str(out))
    _check_analysis(out, n)
    assert {p.name for p in w.existing_outputs(out)} >= {"summary.json", "pixels.csv"}


def test_killed_refinement_resumes_to_the_uninterrupted_result(ctx, tmp_path):
    rng = np.random.default_rng(4)
    ref = w.refine_quadratic(str(tmp_path / "ref.h5"))
    runs = iter(("timing1.h5", "timing2.h5"))  # fresh checkpoints: a second run on one file would only replay
    duration = _timed(lambda: w.refine_quadratic(str(tmp_path / next(runs)), None, 0.01))

    def check(ck: Path):
        if ck.exists():
            with h5py.File(ck, "r") as f:  # a complete HDF5 file with its history
                assert all(np.all(np.isfinite(f[k][()])) for k in f if isinstance(f[k], h5py.Dataset))

    mid = 0
    chains = [tmp_path / f"ck{k}.h5" for k in range(TRIALS // 4)]
    for k in range(TRIALS):  # chains of 4 kills on one checkpoint: each trial resumes from the previous one's
        ck = chains[k // 4]
        started = ctx.Event()
        p = ctx.Process(target=w.refine_quadratic, args=(str(ck), started, 0.01))
        p.start()
        assert started.wait(60)
        time.sleep(float(rng.uniform(0.0, 0.4 * duration)))
        if p.is_alive():
            mid += 1
            p.kill()
        p.join(60)
        check(ck)
    assert mid >= TRIALS // 2, f"only {mid} of {TRIALS} kills landed while the refinement ran"
    for ck in chains:
        res = w.refine_quadratic(str(ck))
        np.testing.assert_array_equal(res.x, ref.x)  # deterministic optimiser + replayed history: the same optimum
    assert abs(ref.x[0] - 0.3) < 0.01 and abs(ref.x[1] + 0.2) < 0.01


# ----------------------------------------------------------------------------------------------------------
# Ctrl-C on the command line
# ----------------------------------------------------------------------------------------------------------
def _interrupt_cli(argv, cwd, wait_for: str | None, delay: float):
    """Run ``sei-send argv`` in ``cwd``; once a file matching the glob ``wait_for`` appears there, wait ``delay`` s
    and send SIGINT. Returns (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "fitting.cli", *argv], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    t0 = time.time()
    while wait_for is not None and not any(Path(cwd).glob(wait_for)) and time.time() - t0 < 120:
        if p.poll() is not None:
            break
        time.sleep(0.02)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def test_ctrl_c_during_synthesis_exits_cleanly_without_partial_file(tmp_path):
    target = tmp_path / "scan.h5"
    argv = ["synth", str(target), "--size", "30", "40", "--preset", "tiny", "--cache-dir", str(PROJECT_CACHE),
            "--quiet", "--compression", "lzf"]  # fmt: skip
    code, out, err = _interrupt_cli(argv, tmp_path, "scan.h5.*.tmp", 0.3)  # Ctrl-C while the file is written
    assert code == 130, (code, err[-2000:])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines == ["sei-send: interrupted"], err[-2000:]
    assert not target.exists()
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"


def test_ctrl_c_during_analysis_leaves_no_partial_folder(complete_scan, tmp_path):
    out = tmp_path / "analysis"
    argv = ["analyze", str(complete_scan), "--output", str(out)]
    code, _, err = _interrupt_cli(argv, tmp_path, ".analysis.partial-*", 0.05)
    if code == 0:  # the analysis finished before the signal: then it must be complete
        _check_analysis(out, int(np.prod(w.scene().field_shape)))
        pytest.skip("the analysis finished before Ctrl-C arrived")
    assert code == 130, (code, err[-2000:])
    assert [ln for ln in err.strip().splitlines() if ln.strip()] == ["sei-send: interrupted"]
    assert not out.exists() or not w.existing_outputs(out), "partial analysis output under the target name"


# ----------------------------------------------------------------------------------------------------------
# concurrent cache builders
# ----------------------------------------------------------------------------------------------------------
def test_concurrent_builders_share_one_cache(ctx, tmp_path):
    from simkit.library import _read_entry as read_entry

    shared, serial = tmp_path / "shared", tmp_path / "serial"
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=w.build_entries, args=(str(shared), 300, None, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    w.build_entries(str(serial), 300)
    a = {p.name: read_entry(p)[0] for p in shared.glob("*.h5")}
    b = {p.name: read_entry(p)[0] for p in serial.glob("*.h5")}
    assert a.keys() == b.keys() and len(a) == len(w.library_specs())
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not list(shared.glob("*.tmp")), "a builder left a temporary file"


# ----------------------------------------------------------------------------------------------------------
# determinism across processes and thread counts
# ----------------------------------------------------------------------------------------------------------
def _fingerprints_in_process(tmp: Path, seed: int, threads: int) -> dict:
    code = (
        "import json, sys; from tests import reliability_workers as w; "
        f"print(json.dumps(w.fingerprints({str(tmp / 'cache')!r}, {str(tmp / 'scan.h5')!r}, {seed})))"
    )
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_same_seed_same_bytes_across_processes_and_threads(tmp_path):
    one = _fingerprints_in_process(tmp_path / "a", 7, threads=1)
    two = _fingerprints_in_process(tmp_path / "b", 7, threads=2)
    assert one == two
    other = w.fingerprints(str(tmp_path / "c"), str(tmp_path / "c.h5"), 8)
    for k in ("structure", "scan"):
        assert other[k] != one[k], f"seed 8 gave the same {k} as seed 7"
    # library entries of amorphous kinds come from a few shipped relaxed models that the seed picks among:
    # the same picked models must give the same bytes, other picks other bytes
    assert (other["library"] == one["library"]) == (other["library_sources"] == one["library_sources"])
