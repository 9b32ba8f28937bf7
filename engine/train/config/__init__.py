"""The run configuration of a training job, one module per job:

- ``schema``: the pydantic ``RunConfig``, its sections, aliases and cross-field rules;
- ``loader``: YAML in, validated config out, every problem one ``file: field: why`` line;
- ``template``: plain YAML out, and the commented template ``tunedeck run template`` prints;
- ``overrides``: ``--set FIELD=VALUE`` and ``merge``;
- ``warnings``: values outside the recommended ranges (advice, not errors);
- ``precision``: ``auto`` precision made concrete for the hardware.

Cheap to import (pydantic and yaml only): the CLI validates a run.yaml without loading torch. The names below are
re-exported so that ``from engine.train.config import RunConfig`` keeps working.
"""

from __future__ import annotations

from engine.train.config.errors import ConfigError
from engine.train.config.loader import load_config, parse_config, parse_yaml, require_complete
from engine.train.config.overrides import apply_overrides, merge
from engine.train.config.precision import detect_precision, resolve_compute_dtype, resolve_precision
from engine.train.config.schema import (
    ALIASES,
    DpoSettings,
    GrpoSettings,
    KtoSettings,
    LoraSettings,
    OrpoSettings,
    QuantSettings,
    RunConfig,
    TrainingSettings,
    default_config,
    field_paths,
    objective_problems,
)
from engine.train.config.template import dump_yaml, template_yaml

# Last in import order: binding the function `warnings` here replaces the package attribute that importing the
# submodule of the same name set; `from engine.train.config.warnings import ...` still reaches the module.
from engine.train.config.warnings import config_warnings, warnings

__all__ = [
    "ALIASES",
    "ConfigError",
    "DpoSettings",
    "GrpoSettings",
    "KtoSettings",
    "LoraSettings",
    "OrpoSettings",
    "QuantSettings",
    "RunConfig",
    "TrainingSettings",
    "apply_overrides",
    "config_warnings",
    "default_config",
    "detect_precision",
    "dump_yaml",
    "field_paths",
    "load_config",
    "merge",
    "objective_problems",
    "parse_config",
    "parse_yaml",
    "require_complete",
    "resolve_compute_dtype",
    "resolve_precision",
    "template_yaml",
    "warnings",
]
