"""llama.cpp's log, kept per thread instead of printed, so a failed load can say why.

llama-cpp-python prints llama.cpp's log to stderr (or, with verbose=False, points the
process's stdout and stderr at /dev/null while a model loads, which would swallow the TUI's
own frames). Here the log goes to a buffer of the thread that caused it; errors are kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOG_ERROR = 4  # ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation
_local = threading.local()
_callback: Any = None  # the ctypes callback; kept referenced so it is never collected
_install_lock = threading.Lock()


def _install() -> None:
    global _callback
    with _install_lock:
        if _callback is not None:
            return
        import ctypes

        import llama_cpp  # importing it installs llama-cpp-python's own callback, which this one replaces

        @llama_cpp.llama_log_callback
        def on_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
            lines = getattr(_local, "lines", None)
            if lines is not None and level in (3, LOG_ERROR):
                lines.append(text.decode("utf-8", "replace").strip())

        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
        _callback = on_log


@contextmanager
def capture_log() -> Iterator[list[str]]:
    """Collect llama.cpp's warnings and errors raised by this thread while the block runs."""
    _install()
    lines: list[str] = []
    _local.lines = lines
    try:
        yield lines
    finally:
        _local.lines = None
