"""Changing a run configuration: ``--set FIELD=VALUE`` overrides and ``merge`` of a mapping of updates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from engine.train.config.errors import ConfigError
from engine.train.config.loader import parse_config
from engine.train.config.schema import ALIASES, SECTIONS, RunConfig, field_paths

__all__ = ["apply_overrides", "merge"]


def _resolve_path(key: str) -> list[str]:
    """A user's field name (dotted path, alias or unambiguous leaf name) as a list of path parts."""
    key = key.strip()
    if "." in key:
        return [p.strip() for p in key.split(".")]
    if key in RunConfig.model_fields:
        return [key]
    if key in ALIASES:
        return ALIASES[key].split(".")
    matches = [p for p in field_paths() if p.rsplit(".", 1)[-1] == key]
    return matches[0].split(".") if len(matches) == 1 else [key]


def _field_annotation(parts: list[str]) -> Any:
    section = SECTIONS.get(parts[0]) if len(parts) == 2 else None
    model: type[BaseModel] | None = section if len(parts) == 2 else (RunConfig if len(parts) == 1 else None)
    if model is None or parts[-1] not in model.model_fields:
        return None
    return model.model_fields[parts[-1]].annotation


def _parse_value(parts: list[str], raw: str) -> Any:
    annotation = _field_annotation(parts)
    if annotation is str:
        return raw.strip()  # model=1234 stays text
    listed = {"target_modules", "devices", "rewards", "reward_functions", "report_to"}
    if parts[-1] in listed and not raw.strip().startswith("["):
        return raw.strip()  # the field itself splits "q_proj,v_proj" / "0,1"
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set(data: dict[str, Any], parts: list[str], value: Any, source: str) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}  # an unknown section; validation names it
        elif not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(parts)}: '{'.'.join(parts[: i + 1])}' has no sub-fields")
        node = child
    leaf = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        node[leaf] = {**node[leaf], **value}
    else:
        node[leaf] = value


def merge(cfg: RunConfig | Mapping[str, Any], updates: Mapping[str, Any], source: str = "<config>") -> RunConfig:
    """``cfg`` with ``updates`` applied: keys are dotted paths, aliases or field names; a dict updates a section."""
    data = cfg.model_dump(mode="python") if isinstance(cfg, RunConfig) else _deepcopy(dict(cfg))
    for key, value in updates.items():
        _set(data, _resolve_path(key), _deepcopy(value), source)
    return parse_config(data, source)


def apply_overrides(cfg: RunConfig, overrides: Iterable[str], source: str = "--set") -> RunConfig:
    """Apply ``FIELD=VALUE`` strings (values read as YAML scalars; aliases such as lr, r, epochs, batch allowed)."""
    data = cfg.model_dump(mode="python")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: {item!r}: expected FIELD=VALUE, e.g. training.learning_rate=1e-4")
        parts = _resolve_path(key)
        if any(not p for p in parts):
            raise ConfigError(f"{source}: {key.strip()!r}: not a field path")
        _set(data, parts, _parse_value(parts, raw), source)
    return parse_config(data, source)


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value
