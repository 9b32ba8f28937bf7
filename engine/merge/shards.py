"""Writing merged tensors to safetensors as they come, a shard at a time, so memory holds one shard at most."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from engine.merge.compat import WEIGHT_INDEX

if TYPE_CHECKING:
    import torch

SHARD_BYTES = 2 * 1024**3


class ShardWriter:
    """Collects tensors and writes `model.safetensors`, or `model-0000i-of-0000N.safetensors` plus the index
    transformers reads when the tensors exceed `max_bytes`."""

    def __init__(self, dest: Path, max_bytes: int = SHARD_BYTES) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.current: dict[str, torch.Tensor] = {}
        self.current_bytes = 0
        self.parts: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Queue one tensor; writes the pending shard first when this one would overflow it."""
        nbytes = tensor.numel() * tensor.element_size()
        if self.current and self.current_bytes + nbytes > self.max_bytes:
            self._flush()
        self.current[name] = tensor.contiguous()
        self.current_bytes += nbytes
        self.total_bytes += nbytes

    def _flush(self) -> None:
        from safetensors.torch import save_file

        path = self.dest / f".part-{len(self.parts) + 1:05d}.safetensors"
        save_file(self.current, str(path), metadata={"format": "pt"})
        self.parts.append((path, list(self.current)))
        self.current, self.current_bytes = {}, 0

    def close(self) -> list[str]:
        """Write what is pending and give the shards their final names; returns the file names."""
        if self.current or not self.parts:
            self._flush()
        if len(self.parts) == 1:
            self.parts[0][0].rename(self.dest / "model.safetensors")
            return ["model.safetensors"]
        count = len(self.parts)
        weight_map: dict[str, str] = {}
        names: list[str] = []
        for i, (path, tensors) in enumerate(self.parts, start=1):
            final = f"model-{i:05d}-of-{count:05d}.safetensors"
            path.rename(self.dest / final)
            weight_map.update(dict.fromkeys(tensors, final))
            names.append(final)
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.dest / WEIGHT_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        return [*names, WEIGHT_INDEX]
