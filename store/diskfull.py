"""A full disk: told apart from other write failures, and reported in one wording everywhere,
"disk full while writing PATH (free space on FOLDER)". Standard library only: the store uses it for
the database, the engine for checkpoints, snapshots and GGUFs."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from store.errors import TunedeckError

LOW_FREE_BYTES = 1 << 20
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


class DiskFull(TunedeckError):
    """The disk filled up while writing a file; the message names the file and where to free space."""


def disk_full_message(path: Path, note: str = "") -> str:
    """The one wording: "disk full while writing PATH (free space on FOLDER)[; note]"."""
    return f"disk full while writing {path} (free space on {path.parent})" + (f"; {note}" if note else "")


def nearly_full(folder: Path) -> bool:
    """Whether less than 1 MiB is free where `folder` lives (some writers report a short write without errno)."""
    try:
        return shutil.disk_usage(folder).free < LOW_FREE_BYTES
    except OSError:
        return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__  # orig: SQLAlchemy


def sqlite_full(exc: BaseException) -> bool:
    """Whether SQLite's "database or disk is full" is anywhere in `exc`'s chain."""
    return any(isinstance(c, sqlite3.OperationalError) and "disk is full" in str(c) for c in _chain(exc))


def is_disk_full(exc: BaseException, folder: Path, *, while_writing: bool = False) -> bool:
    """Whether `exc` means the disk under `folder` is full: ENOSPC or SQLite's "database or disk is full"
    anywhere in its chain (or ENOSPC's text, as safetensors reports it), or (for an OSError, or any error
    when the caller knows a write was under way) almost no free space left there."""
    if sqlite_full(exc) or any((isinstance(c, OSError) and c.errno == errno.ENOSPC) or NO_SPACE in str(c)
                               for c in _chain(exc)):
        return True
    return (while_writing or isinstance(exc, OSError)) and nearly_full(folder)


@contextmanager
def writing(path: Path, note: str = "") -> Iterator[None]:
    """Writes into `path` (a file or a folder): a full disk comes out of the block as DiskFull naming it."""
    try:
        yield
    except TunedeckError:
        raise
    except Exception as exc:
        if is_disk_full(exc, path.parent):
            raise DiskFull(disk_full_message(path, note)) from exc
        raise
