"""A model's linear layer names, read from its config on the meta device (no weights loaded)."""

from __future__ import annotations

from store.errors import TunedeckError, first_line


def linear_module_names(model: str, trust_remote_code: bool = False) -> dict[str, int]:
    """{module name suffix: how many layers have it} for every nn.Linear except the LM head."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        with init_empty_weights():
            net = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # transformers refusing the config
        reason = first_line(str(exc), type(exc).__name__)
        raise TunedeckError(f"{model}: transformers cannot build the model from its config ({reason})") from None
    names: dict[str, int] = {}
    for full, module in net.named_modules():
        if isinstance(module, torch.nn.Linear) and not full.endswith("lm_head"):
            suffix = full.rsplit(".", 1)[-1]
            names[suffix] = names.get(suffix, 0) + 1
    return names
