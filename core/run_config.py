"""A training run's config as both faces build it: from a preset, a YAML file or the New Run form's fields, checked
with every problem on its own line, with the recipe warnings and as the YAML the run saves.

`tunedeck run new/template` and the New Run form call these; the schema, presets and wording are the engine's
(engine.train.config, engine.train.presets: pydantic and yaml only, loaded inside the functions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.train.config import RunConfig


def preset_config(preset: str, /, model: str = "", dataset: str = "", **overrides: Any) -> RunConfig:
    """The preset's config for `model` and `dataset`, with field `overrides` (`name=` is the run name)."""
    from engine.train.presets import preset_config as config

    return config(preset, model=model, dataset=dataset, **overrides)


def preset_titles() -> dict[str, str]:
    """Each preset's one-line description, by preset name."""
    from engine.train.presets import PRESET_TITLES

    return dict(PRESET_TITLES)


def field_descriptions() -> dict[str, str]:
    """The schema's description of every field, by dotted path ("training.seed", "model")."""
    from engine.train.config.schema import SECTIONS, RunConfig

    out: dict[str, str] = {}
    for name, info in RunConfig.model_fields.items():
        if name in SECTIONS:
            out.update({f"{name}.{sub}": sub_info.description or ""
                        for sub, sub_info in SECTIONS[name].model_fields.items()})
        else:
            out[name] = info.description or ""
    return out


def build_config(path: str | Path | None, preset: str | None, updates: Mapping[str, Any],
                 overrides: Iterable[str] = (), source: str = "command line") -> RunConfig:
    """The config read from `path` (else the `preset`, default lora) with `updates` (field: value) and `--set`
    style `overrides` applied; a ConfigError lists every problem."""
    from engine.train.config import apply_overrides, load_config, merge

    cfg = load_config(path) if path else preset_config(preset or "lora")
    if updates:
        cfg = merge(cfg, dict(updates), source=source)
    overrides = list(overrides)
    return apply_overrides(cfg, overrides) if overrides else cfg


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    """`data` (a dict as loaded from YAML) validated into a config, or a ConfigError listing every problem."""
    from engine.train.config.loader import parse_config as parse

    return parse(data, source=source)


def validate(data: Any, source: str = "<config>") -> tuple[RunConfig | None, list[str]]:
    """(the config, []) when `data` is valid, else (None, one line per problem, each starting with `source`)."""
    from engine.train.config.errors import ConfigError

    try:
        return parse_config(data, source), []
    except ConfigError as error:
        return None, list(error.problems)


def run_warnings(cfg: RunConfig) -> list[str]:
    """Valid values outside a good recipe's ranges, one line each (advice, not errors)."""
    from engine.train.config.warnings import warnings

    return warnings(cfg)


def config_yaml(cfg: RunConfig) -> str:
    """The config as the plain YAML the run saves."""
    from engine.train.config.template import dump_yaml

    return dump_yaml(cfg)


def template_yaml(preset: str) -> str:
    """The preset's config as YAML with a comment on every field (`tunedeck run template`)."""
    from engine.train.config.template import template_yaml as template

    return template(preset_config(preset))
