"""Keep job logs readable: what libraries print that a user of tunedeck cannot act on stays out of them.

A job's stdout and stderr are its log file, read with `tunedeck run logs` and in the TUI's Log tab.
Progress bars redraw with carriage returns, so in a file each one becomes a single line of frames;
the engine reports progress through the store instead.
"""

from __future__ import annotations

import logging
import os
import warnings

# Messages that are advice to library developers or describe a fallback the library takes by itself.
_MUTED = (
    # bitsandbytes, on CPUs with AVX512-BF16: it falls back to its own kernel when the optional
    # `kernels` package is missing, yet asks for it on every import.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward"),
    # transformers, when checkpoints are written within one mtime tick; numerical ordering is what we want.
    ("transformers.trainer_utils", "mtime may not be reliable"),
)


class _Drop(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_library_output() -> None:
    """Call in a job process before the heavy libraries are imported."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # datasets' map/filter bars
    for logger, text in _MUTED:
        logging.getLogger(logger).addFilter(_Drop(text))
    # Deprecations one library triggers in another (TRL reading transformers' is_gradient_checkpointing).
    for module in ("transformers", "trl", "peft", "accelerate", "bitsandbytes"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
