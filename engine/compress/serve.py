"""Serving a compressed-tensors model (a `compressed` artifact): vLLM and TGI read its quantization_config."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any


def compressed_serve_commands(artifact: Any) -> list[str]:
    """`vllm serve` and TGI's `text-generation-launcher` for a compressed-tensors folder. Both would detect the
    format from config.json; naming it makes a folder that lost its quantization_config fail loudly instead of
    loading as a dense model. W4A16 runs on NVIDIA GPUs of compute capability 8.0 and later (vLLM's INT4 kernels)."""
    path = shlex.quote(str(Path(artifact.path)))
    name = shlex.quote(artifact.name)
    return [f"vllm serve {path} --quantization compressed-tensors --served-model-name {name}",
            f"text-generation-launcher --model-id {path} --quantize compressed-tensors"]
