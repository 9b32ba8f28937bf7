"""The event file a cluster job writes and its follower reads: one JSON object a line, appended only.

Every event has `type` and `t` (the writer's clock). Types: status (status, error), progress (progress, step,
total_steps), metrics (points: [step, name, value, t]), artifact (the row's columns, with the scratch id),
result (result), heartbeat. Applying an event twice changes nothing (metrics are upserted by job, step, name).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class EventWriter:
    """Appends events to a file; each batch is flushed and fsynced, so a reader on another node sees whole lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, events: list[dict[str, Any]]) -> None:
        """Append `events` (each stamped with `t` if it has none) as one write."""
        if not events:
            return
        stamp = time.time()
        data = "".join(json.dumps({"t": stamp, **e}, separators=(",", ":")) + "\n" for e in events)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


class EventReader:
    """Reads the whole lines appended to an event file since the last read (a partial last line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.bad_lines = 0

    def read_new(self) -> list[dict[str, Any]]:
        """The events appended since the previous call (none while the file does not exist)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                self.bad_lines += 1  # a torn write from a node that died mid-line; the next line is whole
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                events.append(event)
        return events
