"""Reading a run configuration: YAML (duplicate keys refused) into a validated ``RunConfig``.

Every problem a user can cause surfaces as a ``ConfigError`` whose message holds one line per problem, e.g.
``run.yaml: training.learning_rate: must be greater than 0 (got -1)``, or ``run.yaml:3:7: invalid YAML: ...``;
never a pydantic dump.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.train.config.errors import ConfigError, show_number, show_value
from engine.train.config.schema import ALIASES, SECTIONS, RunConfig, field_paths, objective_problems

__all__ = ["load_config", "parse_config", "parse_yaml", "require_complete"]


def _dotted(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _suggest(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _suggest_field(parent: tuple[str, ...], key: str) -> str | None:
    """The field a user most likely meant by an unknown key under ``parent`` (a path, () for the top level)."""
    here = SECTIONS.get(parent[0]) if parent else RunConfig
    if here is None or len(parent) > 1:
        return None
    # A known field in another place: `learning_rate:` at the top level, `beta:` under training, `lr:`.
    everywhere = field_paths()
    if key in ALIASES:
        return ALIASES[key]
    exact = [p for p in everywhere if p.rsplit(".", 1)[-1] == key]
    if len(exact) == 1:
        return exact[0]
    local = _suggest(key, here.model_fields)
    if local:
        return local
    leaf = _suggest(key, {p.rsplit(".", 1)[-1]: p for p in everywhere})
    return next((p for p in everywhere if p.rsplit(".", 1)[-1] == leaf), None) if leaf else None


def _problem(err: Mapping[str, Any]) -> str:
    """One error as ``path: what was expected (got value)``."""
    loc = tuple(err.get("loc", ()))
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    path = _dotted(loc) or "(top level)"
    if kind in {"extra_forbidden", "invalid_key"}:
        key = str(loc[-1]) if loc else "?"
        path = _dotted((*loc[:-1], key))
        hint = _suggest_field(tuple(str(p) for p in loc[:-1]), key)
        return f"{path}: unknown field '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        text = f"{path}: must be one of {', '.join(choices)} (got {show_value(value)})"
        hint = _suggest(str(value), choices) if isinstance(value, str) else None
        return text + (f"; did you mean '{hint}'?" if hint else "")
    expected = {
        "greater_than": lambda: f"must be greater than {show_number(ctx.get('gt'))}",
        "greater_than_equal": lambda: f"must be at least {show_number(ctx.get('ge'))}",
        "less_than": lambda: f"must be less than {show_number(ctx.get('lt'))}",
        "less_than_equal": lambda: f"must be at most {show_number(ctx.get('le'))}",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "finite_number": lambda: "must be a finite number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be text",
        "string_too_long": lambda: f"must be at most {ctx.get('max_length')} characters",
        "list_type": lambda: "must be a list",
        "too_long": lambda: f"must have at most {ctx.get('max_length')} items",
        "model_type": lambda: "must be a mapping of fields (key: value lines)",
        "model_attributes_type": lambda: "must be a mapping of fields (key: value lines)",
        "dict_type": lambda: "must be a mapping of fields (key: value lines)",
    }.get(kind)
    if expected is not None:
        text = expected()
    else:
        text = str(err.get("msg", kind))
        for prefix in ("Value error, ", "Assertion failed, "):
            text = text.removeprefix(prefix)
    if kind in {"model_type", "model_attributes_type", "dict_type", "list_type"} and isinstance(value, dict | list):
        got = "a list" if isinstance(value, list) else "a mapping"
        return f"{path}: {text} (got {got})"
    return f"{path}: {text} (got {show_value(value)})"


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark
            ) from None
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first given on line {first + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    text = f"{where}: invalid YAML: {problem}"
    if context and getattr(exc, "context_mark", None) is not None and exc.context_mark is not mark:
        text += f" ({context} on line {exc.context_mark.line + 1})"
    return ConfigError(text)


def parse_yaml(text: str, source: str = "<config>") -> Any:
    """YAML text to Python data; a syntax error becomes a ConfigError naming ``source:line:column``."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    """Validate loaded data (normally a dict) into a RunConfig, or raise ConfigError listing every problem."""
    if data is None:
        raise ConfigError(f"{source}: the configuration is empty; expected fields such as model: and dataset: "
                          "(`tunedeck run template` prints a complete example)")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"{show_value(data)}"
        raise ConfigError(f"{source}: expected a mapping of fields (key: value lines) at the top level, got {kind}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problem(e)}" for e in exc.errors(include_url=False)) from None
    problems = objective_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: {p}" for p in problems)
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run.yaml; every problem is a ConfigError whose lines start with the path."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return parse_config(parse_yaml(text, source), source)


def require_complete(cfg: RunConfig, source: str = "run config") -> None:
    """Raise ConfigError unless the fields the schema lets stay empty (model, dataset) are filled in."""
    missing = []
    if not cfg.model:
        missing.append(f"{source}: model: required: a local model directory or a hub id")
    if not cfg.dataset:
        missing.append(f"{source}: dataset: required: the name or id of one of the project's datasets")
    if missing:
        raise ConfigError(missing)
