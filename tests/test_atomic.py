"""simkit.atomic: files appear whole or not at all, with the permissions of an ordinary open() (the umask)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from simkit.atomic import atomic_path, atomic_tree, atomic_write_text


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask):
        os.umask(mask)

    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_mode_of_an_ordinary_open(tmp_path, umask, mask):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    with open(tmp_path / "ref.txt", "w") as fh:  # what the user's umask gives any other program
        fh.write("x")
    want = (tmp_path / "ref.txt").stat().st_mode & 0o777
    assert want == 0o666 & ~mask
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == want
    with atomic_path(tmp_path / "a.h5") as tmp, h5py.File(tmp, "w") as f:  # HDF5 writers keep the mode too
        f["x"] = np.arange(3)
    assert (tmp_path / "a.h5").stat().st_mode & 0o777 == want


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "keep.txt"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.txt"]


def test_tree_replaces_the_whole_folder_and_keeps_it_on_failure(tmp_path, umask):
    """A directory output (zarr store) is replaced whole: no stale file of the previous tree survives, an
    interrupted write leaves the previous tree as it was, and the folder has the mode of an ordinary mkdir."""
    umask(0o022)
    p = tmp_path / "store.zspy"
    with atomic_tree(p) as stage:
        (stage / "a").write_text("1")
        (stage / "sub").mkdir()
        (stage / "sub" / "stale").write_text("x")
    assert p.stat().st_mode & 0o777 == 0o755
    with atomic_tree(p) as stage:
        (stage / "a").write_text("2")
    assert sorted(x.name for x in p.rglob("*")) == ["a"] and (p / "a").read_text() == "2"
    with pytest.raises(KeyboardInterrupt), atomic_tree(p) as stage:
        (stage / "a").write_text("half")
        raise KeyboardInterrupt
    assert (p / "a").read_text() == "2"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["store.zspy"]
