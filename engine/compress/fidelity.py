"""The compressed model's perplexity check: its change against the parent model, judged as the GGUF quants are
(engine.gguf.fidelity): the published increase for the method, scaled for small models, with a noise floor."""

from __future__ import annotations

from typing import Any

# Wikitext-2 perplexity increase of 4-bit, group-128 weights over FP16 on Llama-2-7B (5.47): GPTQ 5.87 as
# AutoGPTQ makes it, AWQ 5.60 (the AWQ paper, Lin et al. 2023, INT4-g128).
PUBLISHED_INCREASE = {"gptq": round(5.87 / 5.47 - 1, 5), "awq": round(5.60 / 5.47 - 1, 5)}
# The same allowances as the GGUF quant check: a small model loses more than a 7B one, the check scores a few
# hundred tokens, not Wikitext.
SMALL_MODEL_FACTOR = 3.0
NOISE_FLOOR = 0.02
WARN_FACTOR = 2.0


def delta_limits(method: str) -> tuple[float, float]:
    """(pass, warn) limits on the perplexity increase of `method`'s W4A16 model over its parent."""
    ok = round(max(NOISE_FLOOR, SMALL_MODEL_FACTOR * PUBLISHED_INCREASE[method]), 4)
    return ok, round(WARN_FACTOR * ok, 4)


def check_delta(parent: float | None, compressed: float | None, method: str) -> dict[str, Any]:
    """pass / warn / fail for a compressed model's perplexity against its parent's on the same tokens."""
    ok, warn = delta_limits(method)
    if not parent or compressed is None:
        return {"status": "fail", "perplexity": compressed, "parent_perplexity": parent, "delta": None,
                "limit": ok, "warn_limit": warn, "published_increase": PUBLISHED_INCREASE[method],
                "note": "no scored tokens"}
    delta = (compressed - parent) / parent
    status = "pass" if delta <= ok else ("warn" if delta <= warn else "fail")
    return {"status": status, "perplexity": round(compressed, 4), "parent_perplexity": round(parent, 4),
            "delta": round(delta, 5), "limit": ok, "warn_limit": warn,
            "published_increase": PUBLISHED_INCREASE[method]}
