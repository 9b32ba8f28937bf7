"""Sampling parameters of one answer: defaults, ranges, and parsing from text boxes or a stored session."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.chat.errors import BadParams

# name -> (type, lowest, highest): the ranges llama.cpp's samplers accept and a user would want.
RANGES: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 5.0),
    "top_p": (float, 0.0, 1.0),
    "top_k": (int, 0, 1_000_000),
    "min_p": (float, 0.0, 1.0),
    "repeat_penalty": (float, 0.0, 5.0),
    "max_tokens": (int, 1, 1_000_000),
    "seed": (int, 0, 2**31 - 1),
}


@dataclass(frozen=True)
class SamplingParams:
    """How to sample an answer. `seed` None draws a fresh seed per answer (the one used is recorded)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None

    def __post_init__(self) -> None:
        for name, (kind, low, high) in RANGES.items():
            value = getattr(self, name)
            if value is None and name == "seed":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
                raise BadParams(f"{name} must be {'a whole number' if kind is int else 'a number'}, not {value!r}")
            if not low <= value <= high:
                raise BadParams(f"{name} must be between {low:g} and {high:g}, not {value:g}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored with the session)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingParams:
        """Params from a stored dict; unknown keys are ignored, missing ones take their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_text(cls, values: dict[str, str]) -> SamplingParams:
        """Params from text boxes: '' keeps the default (for seed: a fresh seed per answer)."""
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in RANGES or not raw.strip():
                continue
            kind = RANGES[name][0]
            try:
                parsed[name] = kind(raw.strip()) if kind is int else float(raw.strip())
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise BadParams(f"{name}: {raw.strip()!r} is not {what}") from None
        return cls(**parsed)

    def replace(self, **changes: Any) -> SamplingParams:
        """A copy with `changes` (None values are skipped, so optional CLI flags can be passed as they are)."""
        data = self.to_dict()
        data.update({k: v for k, v in changes.items() if v is not None})
        return SamplingParams(**data)
