"""A JSONL file read as a sequence of rows by byte offset: the importer's and the linter's view of a
dataset too big to hold as Python objects (memory: 8 bytes an example)."""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, overload


class JsonlRows(Sequence[dict[str, Any]]):
    """Rows of a JSONL file, loaded one at a time; sequential reads use one buffered handle."""

    def __init__(self, path: Path, offsets: array | None = None) -> None:
        self.path = path
        self.offsets = offsets if offsets is not None else self._index(path)
        self._fh: BinaryIO | None = None

    @staticmethod
    def _index(path: Path) -> array:
        offsets = array("q")
        pos = 0
        with path.open("rb") as fh:
            for line in fh:
                offsets.append(pos)
                pos += len(line)
        return offsets

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if self._fh is None:
            self._fh = self.path.open("rb")
        self._fh.seek(self.offsets[i])
        return json.loads(self._fh.readline())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as fh:
            for line in fh:
                yield json.loads(line)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
