"""Atomic file output: write to a temporary file beside the target, fsync, then rename over it.

Never leaves a half-written file under the final name: an exception (or Ctrl-C) inside the block removes the
temporary file and leaves any previous file at ``path`` untouched. The final file gets the permissions of an
ordinary ``open(path, "w")`` (0666 minus the process umask), not the private 0600 of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "atomic_tree", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``path``.

    Parameters
    ----------
    path : path-like
        Final file name; its folder is created if needed.

    Yields
    ------
    pathlib.Path
        Temporary file in the same folder (same file system, so the rename is atomic). Close the file before
        leaving the block.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    """The process umask: from /proc on Linux, else by setting and restoring it (POSIX has no read-only call)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``path``; on success its files are moved into ``path``.

    For outputs made of several files (an analysis folder): an exception or Ctrl-C inside the block removes the
    staging folder, so nothing of an unfinished run appears under ``path``; on success each file is renamed into
    ``path`` (created if needed; files of the same name are replaced, others are kept).

    Parameters
    ----------
    path : path-like
        Final folder.

    Yields
    ------
    pathlib.Path
        The staging folder (same file system as ``path``, so every move is an atomic rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield stage
        path.mkdir(parents=True, exist_ok=True)
        for f in sorted(stage.iterdir()):
            os.replace(f, path / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def atomic_tree(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``path``; on success the whole folder *becomes* ``path``.

    For outputs that are one directory tree (a zarr store): unlike :func:`atomic_dir`, which moves files into an
    existing folder and keeps the others, the finished tree replaces any previous ``path`` whole, so no stale file
    of an earlier tree survives. The previous tree is renamed aside before the new one is renamed into place and
    removed after, so ``path`` is always either the old or the new tree. An exception or Ctrl-C inside the block
    removes the staging folder and leaves ``path`` untouched. The folder gets the permissions of an ordinary
    ``mkdir`` (0777 minus the process umask), not ``mkdtemp``'s private 0700.

    Parameters
    ----------
    path : path-like
        Final folder.

    Yields
    ------
    pathlib.Path
        The staging folder (same file system as ``path``, so the renames are atomic).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    os.chmod(stage, 0o777 & ~_umask())
    old = None
    try:
        yield stage
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(stage, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
