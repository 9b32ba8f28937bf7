"""Queueing a post-training job (merge, convert, quantize, eval) and starting its runner. Light: no torch."""

from __future__ import annotations

from typing import Any

from engine.launch import start_runner
from store.db import Store
from store.jobs import create_job

POST_SLOT = "post"  # post-training work queues behind itself, not behind training runs


def queue_job(store: Store, project_id: int, kind: str, config: dict[str, Any], *, name: str = "",
              slot: str = POST_SLOT, start: bool = True) -> int:
    """Insert a queued job of `kind` and start the runner for `slot`; returns the job id."""
    with store.write() as session:
        job_id = create_job(session, project_id, kind, {"project_id": project_id, **config}, name=name,
                            slot=slot).id
    if start:
        start_runner(store.home, slot)
    return job_id
