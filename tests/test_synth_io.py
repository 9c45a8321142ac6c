"""simkit.synth's Poisson sampler against the Poisson law, and simkit.chunkio's direct-chunk LZF against h5py's reader.

Oracles: the histogram of counts at fixed λ follows the Poisson pmf (χ² over the bins holding ≥ 5 expected
entries) in each regime of the sampler (the dim-pixel walk, inversion, PTRS and their borders); counts do not depend
on the thread count; chunks written by the numba LZF compressor decode bit-identically with h5py's own LZF filter
(liblzf), including incompressible chunks and runs longer than one back reference.
"""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from scipy import stats

from simkit.chunkio import direct_chunk_codec, lzf_compress_patterns, write_patterns
from simkit.synth import poisson_counts


@pytest.mark.parametrize("lam", [0.02, 0.7, 1.999, 2.0, 4.5, 9.99, 10.0, 37.0, 900.0])
def test_poisson_counts_follow_the_poisson_pmf(lam):
    n = 60_000
    # mixed rows: the walk shares one process over the dim pixels, so interleave a bright and a dim pixel
    grid = np.empty((n // 100, 200))
    grid[:, ::2] = lam
    grid[:, 1::2] = 0.3 if lam >= 2 else 25.0
    c = poisson_counts(grid, np.random.default_rng(3))[:, ::2].ravel()
    lo, hi = int(stats.poisson.ppf(1e-6, lam)), int(stats.poisson.ppf(1 - 1e-6, lam)) + 1
    edges = np.arange(lo, hi + 1)
    expected = np.diff(stats.poisson.cdf(edges - 1, lam)) * c.size
    observed = np.histogram(c, bins=np.append(edges[:-1], hi) - 0.5)[0][: expected.size]
    keep = expected >= 5
    chi2 = float(np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep]))
    dof = int(keep.sum()) - 1
    assert stats.chi2.sf(chi2, max(dof, 1)) > 1e-4, f"χ² = {chi2:.1f} for {dof} dof at λ = {lam}"
    assert abs(c.mean() - lam) < 5 * np.sqrt(lam / c.size)


def test_poisson_counts_neighbours_are_uncorrelated():
    # the walk hands consecutive dim pixels consecutive stretches of one process: their counts must be independent
    lam = np.full((2000, 400), 0.5)
    c = poisson_counts(lam, np.random.default_rng(9)).astype(float)
    r = np.corrcoef(c[:, :-1].ravel(), c[:, 1:].ravel())[0, 1]
    assert abs(r) < 5 / np.sqrt(c.size)


def test_poisson_counts_do_not_depend_on_the_thread_count():
    code = (
        "import numpy as np, hashlib; from simkit.synth import poisson_counts;"
        "lam = np.random.default_rng(0).gamma(0.3, 20.0, size=(64, 4096));"
        "print(hashlib.sha256(poisson_counts(lam, np.random.default_rng(1)).tobytes()).hexdigest())"
    )
    out = []
    for nt in ("1", "2"):
        env = {**__import__("os").environ, "NUMBA_NUM_THREADS": nt}
        out.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True))
    assert out[0].stdout == out[1].stdout and len(out[0].stdout.strip()) == 64


def _patterns(rng):
    lam = rng.gamma(0.2, 5.0, size=(16, 64, 64))
    lam[:, 28:36, 28:36] += 3000.0  # a bright disc: high bytes in use
    c = rng.poisson(lam).astype(np.uint16)
    c[3] = rng.integers(0, 65535, size=(64, 64))  # incompressible: stored uncompressed, flagged in the mask
    c[4] = 0  # one long run of zeros (many maximal back references)
    c[5] = 7  # a constant pattern
    return c


@pytest.mark.parametrize("kw", [{"compression": "lzf", "shuffle": True}, {"compression": "lzf"}, {}])
def test_direct_lzf_chunks_read_back_with_h5py(tmp_path, rng, kw):
    c = _patterns(rng)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("d", shape=(4, 5, 64, 64), dtype=np.uint16, chunks=(1, 1, 64, 64), **kw)
        assert direct_chunk_codec(ds) is not None
        write_patterns(ds, 2, c)  # flat index 2 onwards: rows 0..3, crossing row ends
    with h5py.File(path) as f:
        back = f["d"][()].reshape(20, 64, 64)
    np.testing.assert_array_equal(back[2:18], c)
    assert not back[:2].any() and not back[18:].any()


def test_lzf_shrinks_count_patterns_and_flags_noise(rng):
    c = _patterns(rng)
    _, sizes = lzf_compress_patterns(c)
    assert sizes[3] < 0  # random 16-bit noise does not compress
    assert 0 < sizes[4] < 0.02 * c[4].nbytes  # zeros: ≈ 3 bytes per 264
    assert np.all(sizes[[0, 1, 2, 6, 7]] < 0.8 * c[0].nbytes)


def test_other_filters_fall_back_to_h5py_slicing(tmp_path, rng):
    c = _patterns(rng)[:6]
    with h5py.File(tmp_path / "g.h5", "w") as f:
        ds = f.create_dataset("d", shape=(2, 4, 64, 64), dtype=np.uint16, chunks=(1, 1, 64, 64), compression="gzip")
        assert direct_chunk_codec(ds) is None
        write_patterns(ds, 1, c)
        np.testing.assert_array_equal(ds[()].reshape(8, 64, 64)[1:7], c)
