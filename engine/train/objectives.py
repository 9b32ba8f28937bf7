"""What each training objective needs from a dataset and which of TRL's logged metrics mean something for it.

Light (no torch): the queue checks a dataset's fit before anything runs, and the metrics callback filters logs.
"""

from __future__ import annotations

from store.errors import Refused

# Dataset formats (the store's dataset row `format`) by what their snapshot rows hold.
PREFERENCE_FORMATS = frozenset({"preference"})
KTO_FORMATS = frozenset({"kto"})
PROMPTLESS_FORMATS = frozenset({"text"})  # plain text: no prompt to answer

# What the trainers log, kept per objective (also as eval_<name>). The loss, learning rate and the like are kept
# for every objective by the callback's common set.
_PAIR_METRICS = frozenset({"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"})
METRICS: dict[str, frozenset[str]] = {
    "sft": frozenset({"mean_token_accuracy", "entropy", "num_tokens"}),
    "dpo": _PAIR_METRICS,
    "orpo": _PAIR_METRICS | {"nll_loss", "log_odds_ratio", "log_odds_chosen"},
    "kto": frozenset({"rewards/chosen", "rewards/rejected", "rewards/margins", "kl"}),
    "reward": frozenset({"accuracy", "margin", "mean_reward", "min_reward", "max_reward"}),
    "grpo": frozenset({"reward", "reward_std", "kl", "entropy", "completions/mean_length",
                       "frac_reward_zero_std"}),
}
# Logged per reward function by GRPO: rewards/<function>/mean.
_GRPO_PREFIX, _GRPO_SUFFIX = "rewards/", "/mean"
# What the final evaluation of a run other than SFT reports (SFT: eval_loss per token and its perplexity). GRPO's
# loss is a surrogate around zero, not a measure of anything.
FINAL_EVAL: dict[str, tuple[str, ...]] = {
    "dpo": ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"),
    "orpo": ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins", "eval_log_odds_ratio"),
    "kto": ("eval_loss", "eval_rewards/margins", "eval_kl"),
    "reward": ("eval_loss", "eval_accuracy", "eval_margin"),
    "grpo": ("eval_reward", "eval_kl"),
}


def keeps(objective: str, name: str) -> bool:
    """Whether a logged metric means something for `objective` (train or eval_ variant)."""
    base = name.removeprefix("eval_")
    wanted = METRICS.get(objective, frozenset())
    if base in wanted:
        return True
    return objective == "grpo" and base.startswith(_GRPO_PREFIX) and base.endswith(_GRPO_SUFFIX)


def has_perplexity(objective: str) -> bool:
    """Only a language-modelling loss has a perplexity (exp of a DPO or KTO loss means nothing)."""
    return objective == "sft"


def check_dataset_fit(objective: str, dataset_name: str, fmt: str) -> None:
    """Refuse (Refused) a dataset whose format does not fit the objective, saying what would."""
    if objective in {"dpo", "orpo", "reward"} and fmt not in PREFERENCE_FORMATS:
        label = "A reward model" if objective == "reward" else objective.upper()
        raise Refused(f"{label} needs a preference dataset (prompt, chosen, rejected); {dataset_name!r} is {fmt}")
    if objective == "kto" and fmt not in PREFERENCE_FORMATS | KTO_FORMATS:
        raise Refused(f"KTO needs a kto dataset (prompt, completion, label) or a preference dataset (prompt, chosen, "
                      f"rejected); {dataset_name!r} is {fmt}")
    if objective == "grpo" and fmt in PROMPTLESS_FORMATS:
        raise Refused(f"GRPO needs prompts (a chat, instruction, preference or kto dataset); {dataset_name!r} is "
                      f"{fmt}, which has none")
    if objective == "sft" and fmt in PREFERENCE_FORMATS | KTO_FORMATS:
        other = "dpo, orpo, kto or reward" if fmt in PREFERENCE_FORMATS else "kto"
        raise Refused(f"dataset {dataset_name!r} is {fmt} data: use objective {other}, or an SFT dataset")
