"""llama.cpp's thread count: load-aware, and never above $OMP_NUM_THREADS when the user set it."""

from __future__ import annotations

import os

import pytest

from engine import cpu_threads


@pytest.mark.parametrize(("cores", "load", "omp", "expected"), [
    (2, 0.0, None, 2),   # idle: every core
    (2, 1.2, None, 1),   # one other busy process on 2 cores: 1 thread (2 would stall on the shared core)
    (2, 9.0, None, 1),   # never below 1
    (16, 0.0, None, 8),  # at most 8 by default (decoding)
    (16, 0.0, "4", 4),   # OMP_NUM_THREADS caps it
    (2, 0.0, "1", 1),
    (2, 0.0, "0", 2),    # 0 and junk are not a setting
    (2, 0.0, "x", 2),
])
def test_default_threads(monkeypatch: pytest.MonkeyPatch, cores: int, load: float, omp: str | None,
                         expected: int) -> None:
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert cpu_threads.default_threads() == expected


def test_chat_system_keeps_its_names() -> None:
    from engine.chat import system

    assert system.default_threads is cpu_threads.default_threads
    assert system.usable_cores is cpu_threads.usable_cores


def test_batch_work_is_not_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantizing and perplexity take every free core (cap=None), still under $OMP_NUM_THREADS."""
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 64)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads.default_threads(cap=None) == 62 and cpu_threads.default_threads() == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert cpu_threads.default_threads(cap=None) == 16
