"""The run screen's Config tab as text: the run's YAML as saved, what it was trained on and the speed settings
the engine chose."""

from __future__ import annotations

import json
from typing import Any

from store.views import RunDetail


def config_text(detail: RunDetail) -> str:
    """The Config tab: the run's YAML as saved (or its config as YAML/JSON for older and other jobs)."""
    config = detail.config
    text = config.get("run_yaml")
    if not text and isinstance(config.get("run"), dict):
        import yaml

        text = yaml.safe_dump(config["run"], sort_keys=False, allow_unicode=True, width=1000)
    if not text:
        text = json.dumps(config, indent=2, sort_keys=True) if config else "# this job has no configuration"
    extra = []
    for key, label in (("model_path", "model path"), ("dataset_id", "dataset id"), ("dataset_hash", "dataset hash")):
        if config.get(key) not in (None, ""):
            extra.append(f"# {label}: {config[key]}")
    speed = speed_line(detail.result)
    if speed:
        extra.append(f"# {speed}")
    return text.rstrip("\n") + ("\n\n" + "\n".join(extra) if extra else "") + "\n"


SPEED_FIELDS = (("attn_implementation", "attention"), ("optimizer", "optimizer"), ("packing", "packing"),
                ("liger_kernel", "liger"), ("torch_compile", "torch.compile"))


def speed_line(result: dict[str, Any]) -> str:
    """What the engine chose for the run's speed settings (engine.train.speed), as one line; '' before it chose."""
    shown = []
    for key, label in SPEED_FIELDS:
        if key in result:
            value = result[key]
            shown.append(f"{label} {('on' if value else 'off') if isinstance(value, bool) else value}")
    return "chosen: " + ", ".join(shown) if shown else ""
