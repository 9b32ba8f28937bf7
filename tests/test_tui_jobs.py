"""Every job in every project: the queue order (moving queued jobs up and down, honoured by the runner),
the Jobs screen (`j`) and the job screen of non-training jobs, in a real store with real runners."""

from __future__ import annotations

import pytest

from engine.runner import run_slot
from store.db import Store
from store.errors import IllegalTransition
from store.jobs import create_job, get_job, move_in_queue, next_queued
from store.projects import create_project


def queue_selftests(store: Store, n: int, slot: str = "order", project: str = "p") -> list[int]:
    with store.write() as session:
        pid = create_project(session, project).id
        return [create_job(session, pid, "selftest", {"steps": 1, "seconds": 0.05}, slot=slot).id for _ in range(n)]


def queued_order(store: Store, slot: str) -> list[int]:
    from store.jobs import QUEUE_ORDER_SQL

    with store.raw() as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM jobs WHERE slot = ? AND status = 'queued' "
                                           f"ORDER BY {QUEUE_ORDER_SQL}", (slot,))]


def test_moving_queued_jobs_changes_what_the_runner_takes_next(store: Store) -> None:
    a, b, c, d = queue_selftests(store, 4)
    with store.write() as session:
        other = create_job(session, 1, "selftest", {}, slot="elsewhere").id  # another slot's queue is apart
        assert move_in_queue(session, d, -1) == 2
        assert move_in_queue(session, d, -1) == 1
        assert move_in_queue(session, d, -5) == 0  # clamped at the top
        assert move_in_queue(session, a, +1) == 2
        assert move_in_queue(session, c, +1) == 3  # already last: stays
        assert move_in_queue(session, other, -1) == 0
    assert queued_order(store, "order") == [d, b, a, c]
    with store.read() as session:
        assert next_queued(session, "order").id == d
    # A job that jumped ahead keeps its place when new jobs arrive; a new job queues at the end.
    (e,) = queue_selftests(store, 1, project="q")
    assert queued_order(store, "order") == [d, b, a, c, e]
    with store.write() as session:
        assert move_in_queue(session, e, -4) == 0
    assert queued_order(store, "order") == [e, d, b, a, c]

    assert run_slot(store, "order") == 5  # the runner honours the order: start times follow it
    with store.read() as session:
        jobs = {i: get_job(session, i) for i in (a, b, c, d, e)}
    assert all(j.status == "completed" for j in jobs.values())
    starts = sorted(jobs, key=lambda i: jobs[i].started_at)
    assert starts == [e, d, b, a, c]
    with store.write() as session, pytest.raises(IllegalTransition, match="only queued jobs can be moved"):
        move_in_queue(session, a, -1)


def test_ties_between_a_requeued_job_and_a_moved_one_keep_a_strict_order(store: Store) -> None:
    a, b, c = queue_selftests(store, 3)
    with store.write() as session:
        move_in_queue(session, c, -2)  # c takes a's id as its position: a tie if a's position is NULL again
    with store.raw() as conn:
        conn.execute("UPDATE jobs SET queue_pos = NULL WHERE id = ?", (a,))
    assert queued_order(store, "order") == [a, c, b]  # c's position equals a's id: the id breaks the tie
    with store.write() as session:
        assert move_in_queue(session, b, -1) == 1
    assert queued_order(store, "order") == [a, b, c]
    with store.raw() as conn:
        keys = [r[0] for r in conn.execute("SELECT queue_pos FROM jobs WHERE slot = 'order' ORDER BY queue_pos")]
    assert len(set(keys)) == 3
