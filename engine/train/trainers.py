"""One TRL trainer per objective, built from the run config, the loaded model and the snapshot's rows.

sft: SFTTrainer, dpo: DPOTrainer, kto: KTOTrainer, reward: RewardTrainer (trl); orpo: ORPOTrainer
(trl.experimental.orpo in TRL 1.16); grpo: GRPOTrainer with built-in, user-file and reward-model rewards.
TRL 1.16 ships no PPO trainer (neither in trl nor in trl.experimental), so there is no ppo objective.
"""

from __future__ import annotations

import os
from typing import Any

from engine.train.config import RunConfig
from store.errors import TunedeckError
from store.payloads import TrainConfig


def _datasets(rows: list[dict[str, Any]], val: list[dict[str, Any]]) -> tuple[Any, Any]:
    from datasets import Dataset

    return Dataset.from_list(rows), (Dataset.from_list(val) if val else None)


def grpo_rewards(cfg: RunConfig, job_config: TrainConfig) -> tuple[list[Any], list[Any]]:
    """GRPO's reward functions and their processing classes (None for a function, a tokenizer for a model); the
    reward file and model are the ones the queue resolved (job_config's reward_file and reward_model_path)."""
    from engine.train.rewards import builtin_rewards, load_reward_file

    g = cfg.grpo
    funcs: list[Any] = builtin_rewards(list(g.rewards), g.answer_field, g.format_regex, g.length_target)
    if g.reward_file:
        funcs += load_reward_file(job_config.reward_file or g.reward_file, list(g.reward_functions))
    classes: list[Any] = [None] * len(funcs)
    if g.reward_model:
        reward_model_path = job_config.reward_model_path
        if not reward_model_path:
            raise TunedeckError("grpo.reward_model: the job's config has no reward model path; queue the run again")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            scorer = AutoModelForSequenceClassification.from_pretrained(reward_model_path, num_labels=1)
            tokenizer = AutoTokenizer.from_pretrained(reward_model_path)
        except (OSError, ValueError) as exc:
            raise TunedeckError(f"grpo.reward_model: cannot load {reward_model_path}: {exc}") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        scorer.config.pad_token_id = tokenizer.pad_token_id
        scorer.config._name_or_path = "reward_model"  # TRL logs its score as rewards/<this>/mean
        scorer.eval()
        funcs.append(scorer)
        classes.append(tokenizer)
    return funcs, classes


def build_trainer(cfg: RunConfig, model: Any, tokenizer: Any, args: dict[str, Any], train_rows: list[dict[str, Any]],
                  val_rows: list[dict[str, Any]], callback: Any, job_config: TrainConfig,
                  sft_args: dict[str, Any] | None = None) -> Any:
    """The TRL trainer for `cfg.objective` (args: the shared TrainingArguments keywords of `trainer_args`; sft_args:
    SFTConfig's packing keywords, engine.train.speed.sft_packing_args)."""
    from engine.train.data import kto_rows, preference_rows, prompt_rows, sft_features

    common = {"processing_class": tokenizer, "callbacks": [callback]}
    objective, t = cfg.objective, cfg.training
    if objective == "sft":
        from trl import SFTConfig, SFTTrainer

        train = sft_features(tokenizer, train_rows, t.max_length, t.assistant_only_loss)
        val = sft_features(tokenizer, val_rows, t.max_length, t.assistant_only_loss) if val_rows else []
        if not train:
            raise TunedeckError("no training example has an assistant token left within max_length")
        train_ds, eval_ds = _datasets(train, val)
        config = SFTConfig(**{"packing": False, **(sft_args or {}), **args})
        return SFTTrainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds, **common)
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        train_ds, eval_ds = _datasets(preference_rows(train_rows, objective), preference_rows(val_rows, objective))
        return DPOTrainer(model=model, ref_model=None, args=DPOConfig(beta=cfg.dpo.beta, **args),
                          train_dataset=train_ds, eval_dataset=eval_ds, **common)
    if objective == "orpo":
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the notice is for library users, not ours
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        train_ds, eval_ds = _datasets(preference_rows(train_rows, objective), preference_rows(val_rows, objective))
        return ORPOTrainer(model=model, args=ORPOConfig(beta=cfg.orpo.beta, **args), train_dataset=train_ds,
                           eval_dataset=eval_ds, **common)
    if objective == "kto":
        from trl import KTOConfig, KTOTrainer

        k = cfg.kto
        train_ds, eval_ds = _datasets(kto_rows(train_rows, t.seed), kto_rows(val_rows, t.seed))
        return KTOTrainer(model=model, ref_model=None, args=KTOConfig(
            beta=k.beta, desirable_weight=k.desirable_weight, undesirable_weight=k.undesirable_weight, **args),
            train_dataset=train_ds, eval_dataset=eval_ds, **common)
    if objective == "reward":
        from trl import RewardConfig, RewardTrainer

        train_ds, eval_ds = _datasets(preference_rows(train_rows, objective), preference_rows(val_rows, objective))
        return RewardTrainer(model=model, args=RewardConfig(**args), train_dataset=train_ds, eval_dataset=eval_ds,
                             **common)
    if objective == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        g = cfg.grpo
        funcs, classes = grpo_rewards(cfg, job_config)
        grpo_args = {k: v for k, v in args.items() if k != "max_length"}
        config = GRPOConfig(num_generations=g.num_generations, max_completion_length=g.max_completion_length,
                            temperature=g.temperature, beta=g.beta, **grpo_args)
        train_ds, eval_ds = _datasets(prompt_rows(train_rows), prompt_rows(val_rows) if val_rows else [])
        return GRPOTrainer(model=model, reward_funcs=funcs, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                           reward_processing_classes=classes, **common)
    raise TunedeckError(f"objective {objective!r} has no trainer")
