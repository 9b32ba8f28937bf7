"""What a running job's code sees: its config, progress reporting, cancellation and logging.

Database writes are throttled so a tight loop can call `progress()` freely.
"""

from __future__ import annotations

import _thread
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from store.db import Store
from store.errors import TunedeckError
from store.jobs import cancel_requested, heartbeat, set_result
from store.payloads import JobConfig, kinds_of, read_payload

C = TypeVar("C", bound=JobConfig)

PROGRESS_EVERY_S = 0.5
CANCEL_CHECK_EVERY_S = 1.0


_checkpoint_hooks: list[Callable[[], None]] = []


def on_checkpoint(hook: Callable[[], None]) -> None:
    """Have `hook` called just before each training checkpoint is written. A cluster node mirrors its scratch
    store into the job folder: what the store holds by then must be mirrored first, or a kill right after the
    checkpoint would lose metrics that the resumed run never logs again."""
    _checkpoint_hooks.append(hook)


def before_checkpoint() -> None:
    """Run the hooks `on_checkpoint` registered (the training callback calls this)."""
    for hook in list(_checkpoint_hooks):
        hook()


class JobCancelled(TunedeckError):
    """Raised inside a job when a cancel was requested; the job ends `cancelled`."""


class JobContext:
    """Handle passed to each job handler."""

    def __init__(self, store: Store, job_id: int, config: dict[str, Any], job_dir: Path, *,
                 main: bool = True) -> None:
        self.store = store
        self.main = main  # False on ranks > 0 of a distributed job: they never write to the store
        self.job_id = job_id
        self.config = config
        self.job_dir = job_dir
        self.stop_event = threading.Event()  # set by SIGTERM
        self._last_progress = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False

    @property
    def home(self) -> Path:
        return self.store.home

    def config_as(self, model: type[C]) -> C:
        """The job's config read through its kind's model (store.payloads): typed fields, defaults for what an
        older version did not write; PayloadError names the job and the field when a value has the wrong type."""
        kind = " or ".join(kinds_of(model)) or "?"
        return read_payload(model, self.config, f"job {self.job_id} ({kind}) config")

    def log(self, message: str) -> None:
        """A line in the job's log (stdout is the log file); rank 0 speaks for a distributed job."""
        if not self.main:
            return
        stamp = time.strftime("%H:%M:%S")
        try:
            print(f"[{stamp}] {message}", file=sys.stdout, flush=True)
        except OSError:  # the log is on a full disk: losing a line must not fail the job or hide its end
            pass

    def progress(
        self, fraction: float | None = None, *, step: int | None = None, total: int | None = None,
        force: bool = False,
    ) -> None:
        """Report progress (0..1) and/or step counts; written at most every 0.5 s unless `force`."""
        now = time.monotonic()
        if not self.main or (not force and now - self._last_progress < PROGRESS_EVERY_S):
            return
        self._last_progress = now
        fields: dict[str, Any] = {}
        if fraction is not None:
            fields["progress"] = max(0.0, min(1.0, float(fraction)))
        if step is not None:
            fields["step"] = int(step)
        if total is not None:
            fields["total_steps"] = int(total)
        with self.store.write() as session:
            heartbeat(session, self.job_id, **fields)

    def should_stop(self) -> bool:
        """True once a cancel was requested (checked in the store at most once a second) or SIGTERM came.
        Ranks > 0 only see their own SIGTERM; a distributed trainer agrees on stopping across ranks."""
        if self._cancelled or self.stop_event.is_set():
            return True
        if not self.main:
            return False
        now = time.monotonic()
        if now - self._last_cancel_check >= CANCEL_CHECK_EVERY_S:
            self._last_cancel_check = now
            with self.store.read() as session:
                self._cancelled = cancel_requested(session, self.job_id)
        return self._cancelled

    def check_cancel(self) -> None:
        """Raise JobCancelled if the job should stop."""
        if self.should_stop():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Run library code that never checks for cancel: a watcher interrupts the main thread on cancel,
        and the interrupt comes out of this block as JobCancelled."""
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                if self.should_stop():
                    _thread.interrupt_main()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        except KeyboardInterrupt:
            raise JobCancelled(f"job {self.job_id} was cancelled") from None
        finally:
            done.set()

    def set_result(self, **result: Any) -> None:
        """Record what the job produced (rank 0 only)."""
        if not self.main:
            return
        with self.store.write() as session:
            set_result(session, self.job_id, result)
