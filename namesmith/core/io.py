"""Atomic file writes: readers see the old file or the new one, never a part of either.

Every file namesmith writes for a user (model directories, plots) goes through here: the data is
written to a temporary file beside the target, flushed to disk, then renamed over the target (a
rename is atomic on POSIX and Windows file systems), and the directory entry is synced.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from namesmith.core.errors import CheckpointError


def cache_dir() -> Path:
    """The user's cache folder (built priors, training-word sets, the popularity index): $NAMESMITH_CACHE, else
    $XDG_CACHE_HOME/namesmith, else ~/.cache/namesmith."""
    if os.environ.get("NAMESMITH_CACHE"):
        return Path(os.environ["NAMESMITH_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "namesmith"


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_file(directory: Path, entry: Any, what: str, meta_file: str, strings: tuple[str, ...] = ()) -> Path:
    """The file an entry of a model directory's metadata (`meta_file`) names, after its name and sha256 are checked
    (`CheckpointError` otherwise); `strings`: more fields the entry must hold as text."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("file", "sha256", *strings)):
        raise CheckpointError(f"{directory / meta_file}: the {what} entry is malformed")
    path = directory / entry["file"]
    if Path(entry["file"]).name != entry["file"] or not path.is_file():
        raise CheckpointError(f"{directory}: {what} file {entry['file']!r} is missing")
    if sha256_file(path) != entry["sha256"]:
        raise CheckpointError(f"{path}: does not match its recorded sha256 (truncated or corrupted)")
    return path


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (where the file system allows it)."""
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask_mode() -> int:
    """The mode a plainly created file gets (mkstemp's temp files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[str], None], *, sync_dir: bool = True) -> None:
    """Call `write(tmp_path)` to fill a temporary file beside `path`, then rename it over `path`.

    On any failure (a full disk, an interrupt) the temporary file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_content_addressed(directory: Path, stem: str, write: Callable[[str], None]) -> tuple[str, str]:
    """Fill a temporary file with `write(tmp_path)`, then rename it to `<stem>-<sha256[:16]><suffix>`.

    Returns (file name, sha256). The name is known only once the content is, so a reader that
    finds the name (in a JSON written afterwards) finds the complete file.
    """
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        sha = sha256_file(tmp)
        name = f"{stem}-{sha[:16]}.safetensors"
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return name, sha


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_write`)."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
