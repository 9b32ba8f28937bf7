"""Writing a run configuration: plain YAML, and the commented template ``tunedeck run template`` prints."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

from engine.train.config.schema import RunConfig, default_config

__all__ = ["dump_yaml", "template_yaml"]


def dump_yaml(cfg: RunConfig) -> str:
    """Plain YAML of every field in schema order; ``parse_config(yaml.safe_load(dump_yaml(c))) == c``."""
    return yaml.safe_dump(cfg.model_dump(mode="python"), sort_keys=False, allow_unicode=True, width=1000)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000)
    return text.removesuffix("\n...\n").rstrip("\n")


_TEMPLATE_HEADER = """\
# tunedeck run configuration.
#   tunedeck run new PROJECT --config run.yaml            start a run from this file
#   tunedeck run new PROJECT --config run.yaml --set lr=1e-4 --set lora.r=32
# Fields left out take the values shown here (the LoRA recipe). Values outside the
# recommended ranges are allowed; tunedeck lists them as warnings before launch.
"""


def template_yaml(cfg: RunConfig | None = None) -> str:
    """``cfg`` (default: the default config) as YAML with a comment on every field; parses back to ``cfg``."""
    cfg = cfg if cfg is not None else default_config()
    lines = _TEMPLATE_HEADER.splitlines()

    def render(model: BaseModel, indent: int) -> None:
        pad = " " * indent
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if indent == 0:
                lines.append("")
            for line in textwrap.wrap(field.description or "", width=110 - indent):
                lines.append(f"{pad}# {line}")
            if isinstance(value, BaseModel):
                lines.append(f"{pad}{name}:")
                render(value, indent + 2)
            else:
                lines.append(f"{pad}{name}: {_scalar(value)}")

    render(cfg, 0)
    return "\n".join(lines) + "\n"
