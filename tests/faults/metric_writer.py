"""A second metric writer for the contention test: the engine's own write path (`Store.write` with
`upsert_metrics`, as `engine/train/callback.py` does it) in a tight loop for one job until a deadline.

Usage: python tests/faults/metric_writer.py HOME JOB_ID SECONDS. Prints {"attempted", "errors"} as JSON;
step N of the job gets the points "probe" = N and "probe_sq" = N * N.
"""

from __future__ import annotations

import json
import sys
import time

from store.db import open_store
from store.metrics import upsert_metrics


def main(home: str, job_id: int, seconds: float) -> dict:
    store = open_store(home)
    deadline = time.monotonic() + seconds
    attempted, errors = 0, []
    while time.monotonic() < deadline:
        attempted += 1
        try:
            with store.write() as session:
                upsert_metrics(session, job_id, attempted, {"probe": attempted, "probe_sq": attempted * attempted})
        except Exception as exc:  # counted and reported: the test fails on any
            errors.append(f"step {attempted}: {type(exc).__name__}: {exc}")
    store.close()
    return {"attempted": attempted, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))))
