"""The one-line memory estimate the New Run form shows under its fields, from the form's config dict."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.gpu.estimate import GIB, OFFLOADS, STRATEGIES, Estimate, Settings, estimate
from engine.gpu.layout import model_layout, read_config
from store.errors import TunedeckError

if TYPE_CHECKING:
    from engine.gpu.nvml import Sampler
    from store.db import Store

MAX_WIDTH = 74


def _positive(value: Any, default: int) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def device_list(value: Any) -> list[int]:
    """GPU indices from a config's or a form's `devices` ([0, 1], 1 or "0,1"); [] when none or unreadable."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        return [int(p) for p in parts] if all(p.isdigit() for p in parts) else []
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def form_settings(data: dict[str, Any]) -> Settings | None:
    """Estimator settings from a run config dict (as the form holds it); None when a number is not usable yet."""
    training = data.get("training") or {}
    lora = data.get("lora") or {}
    quant = data.get("quant") or {}
    defaults = Settings()
    numbers = {
        "batch": _positive(training.get("per_device_batch"), defaults.batch),
        "grad_accum": _positive(training.get("grad_accum"), defaults.grad_accum),
        "max_length": _positive(training.get("max_length"), defaults.max_length),
        "rank": _positive(lora.get("r"), defaults.rank),
    }
    if any(value is None for value in numbers.values()):
        return None
    targets = lora.get("target_modules")
    precision = training.get("precision")
    gpus = max(1, len(device_list(data.get("devices"))))
    return Settings(
        gpus=gpus, strategy=data.get("strategy") if data.get("strategy") in STRATEGIES else "ddp",
        offload=data.get("offload") if data.get("offload") in OFFLOADS else "none",
        method=data.get("method") if data.get("method") in ("lora", "qlora", "full") else defaults.method,
        objective="dpo" if data.get("objective") == "dpo" else "sft",
        gradient_checkpointing=bool(training.get("gradient_checkpointing", defaults.gradient_checkpointing)),
        precision=precision if precision in ("bf16", "fp16", "fp32") else "bf16",  # auto is bf16 on a GPU
        double_quant=bool(quant.get("double_quant", True)),
        targets=tuple(targets) if isinstance(targets, list) and targets else None,
        **numbers,  # type: ignore[arg-type]
    )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_WIDTH else text[: MAX_WIDTH - 1] + "…"


def form_estimate(store: Store | None, data: dict[str, Any], sampler: Sampler | None = None) -> str:
    """"GPU memory ≈ 9.6 GiB · fits GPU 0 (…)", or why there is no estimate; "" without a model.

    Reads only local files (a hub id only from the Hugging Face cache), so it is cheap to call as fields change.
    """
    model = str(data.get("model") or "").strip()
    settings = form_settings(data)
    if not model or settings is None:
        return ""
    free, where = _free(data, sampler)
    try:
        result, _ = model_estimate(store, model, settings, free_bytes=free, local_only=True)
    except TunedeckError as error:
        reason = str(error).removeprefix(f"{model}: ")  # the model is in the field above
        return _clip(f"GPU memory: no estimate ({reason})")
    text = f"GPU memory ≈ {result.total_bytes / GIB:.1f} GiB" + (" (calibrated)" if result.factor else "")
    if free is None:
        return _clip(text + " · no GPU here to compare")
    if result.verdict != "too big":
        return _clip(f"{text} · {result.verdict} {where}")
    hint = f": try {'; '.join(result.suggestions[0].changes)}" if result.suggestions else ""
    return _clip(f"{text} · too big for {where}{hint}")


def model_estimate(store: Store | None, model: str, settings: Settings, *, free_bytes: int | None = None,
                   free_source: str = "", calibrate: bool = True, check: bool = False,
                   local_only: bool = False) -> tuple[Estimate, str]:
    """The memory estimate for training `model` with `settings`, and where its config was read: the one wiring of
    the estimator that `tunedeck estimate` and the New Run form share. `model` is a folder, a config.json, a hub id
    or (with a `store`) a `model add` name; with `calibrate` the store's correction factor for the family applies.
    `check`: refuse a config the loader would refuse; `local_only`: no download, and parameters counted by
    arithmetic (no torch: the form runs in the app's process)."""
    if store is not None:
        from engine.models.queue import model_ref

        model = (model_ref(store, model) or (model,))[0]
    config, where = read_config(model, download=not local_only)
    if check:
        from engine.model_folder import check_config

        check_config(config, where, known_type=False)  # the estimator has its own families and fallbacks
    layout = model_layout(config, meta=not local_only)
    settings.check()
    factor = None
    if calibrate and store is not None:
        from engine.gpu.calibrate import correction_factors, factor_for

        factor = factor_for(correction_factors(store), layout.model_type, settings.method)
    return estimate(layout, settings, free_bytes=free_bytes, free_source=free_source, factor=factor), where


def _free(data: dict[str, Any], sampler: Sampler | None) -> tuple[int | None, str]:
    from engine.gpu.record import default_sampler

    snap = (sampler or default_sampler()).sample()
    if not snap.available:
        return None, ""
    wanted = set(device_list(data.get("devices")))
    gpus = [g for g in snap.gpus if g.memory_free_mb is not None and (not wanted or g.index in wanted)]
    if not gpus:
        return None, ""
    if len(wanted) > 1:  # each of the run's cards holds its share: the least free one decides
        least = min(gpus, key=lambda g: g.memory_free_mb or 0.0)
        free = least.memory_free_mb or 0.0
        return int(free * 1024 * 1024), f"GPU {least.index} ({free / 1024:.0f} GiB free, least of {len(gpus)})"
    best = max(gpus, key=lambda g: g.memory_free_mb or 0.0)
    free = best.memory_free_mb or 0.0
    return int(free * 1024 * 1024), f"GPU {best.index} ({free / 1024:.0f} GiB free)"
