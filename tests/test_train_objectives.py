"""The objectives beyond SFT, trained for real on CPU with the demo model through the CLI and the runner: DPO, ORPO,
KTO, a reward model and GRPO (built-in, user-file and reward-model rewards). Each test checks that the objective's
own metric moves the right way, and the refusals a wrong dataset or a broken reward file get before queueing.

The preference data is made to be learnable from the demo model's start: it prefers a fixed reply ("I cannot do
that.") over the word-reversal answers the demo model was pretrained toward, so DPO/KTO margins start at 0 and
ORPO's at a negative value, and must grow; the reward model must score the held-out pairs right.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import copy_home, run_cli

from engine.demo import demo_chat_messages, make_demo_examples
from engine.train.rewards import builtin_rewards, check_reward_file, load_reward_file
from store.errors import TunedeckError

FIXED = "I cannot do that."
FAST = ("--set", "batch=4", "--set", "grad_accum=1", "--set", "max_length=128", "--set", "gradient_checkpointing=false",
        "--set", "logging_steps=5", "--set", "seed=7")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, demo_home_src: Path) -> Path:
    """The demo project with a preference set ("prefs"), a kto set ("ktoset"), GRPO prompts ("prompts": a few, as
    GRPO's final evaluation samples answers to every held-out prompt) and a plain text set ("notes")."""
    root = tmp_path_factory.mktemp("objectives")
    home = copy_home(demo_home_src, root / "home")
    examples = make_demo_examples(160, seed=9)
    prefs = [{"prompt": demo_chat_messages(ex)[:1], "chosen": FIXED, "rejected": ex["output"]} for ex in examples]
    kto = [{"prompt": demo_chat_messages(ex)[0]["content"], "completion": FIXED if i % 2 else ex["output"],
            "label": bool(i % 2)} for i, ex in enumerate(examples)]
    notes = [{"text": f"note {i}: {ex['input']}"} for i, ex in enumerate(examples[:40])]
    prompts = [{"messages": demo_chat_messages(ex)} for ex in examples[:40]]
    for name, rows in (("prefs", prefs), ("ktoset", kto), ("prompts", prompts), ("notes", notes)):
        added = run_cli("dataset", "add", "demo", str(_write(root / f"{name}.jsonl", rows)), "--json", home=home,
                        timeout=300)
        assert added.returncode == 0, added.stderr
    formats = {d["name"]: d["format"] for d in json.loads(run_cli("dataset", "list", "demo", "--json",
                                                                   home=home).stdout)}
    assert (formats["prefs"], formats["ktoset"], formats["prompts"], formats["notes"]) == ("preference", "kto", "chat",
                                                                                         "text")
    return home


def _run(home: Path, *args: str, ok: bool = True) -> dict:
    result = run_cli("run", "new", "demo", "--wait", "--json", *args, home=home, timeout=900)
    data = json.loads(result.stdout)
    if ok:
        assert data["status"] == "completed" and result.returncode == 0, (data["error"], result.stderr)
    return data


def _series(home: Path, job_id: int, name: str) -> list[float]:
    with sqlite3.connect(home / "tunedeck.db") as conn:
        rows = conn.execute("SELECT step, value FROM metrics WHERE job_id = ? AND name = ? ORDER BY step",
                            (job_id, name)).fetchall()
    print(f"job {job_id} {name}: " + " ".join(f"{s}:{v:.3f}" for s, v in rows))  # the figures, for the report
    return [v for _, v in rows]


def _artifact(home: Path, artifact_id: int) -> dict:
    shown = json.loads(run_cli("project", "show", "demo", "--json", home=home).stdout)
    return next(a for a in shown["artifacts_list"] if a["id"] == artifact_id)


@pytest.mark.slow
def test_dpo_reports_margins_not_perplexity(home: Path) -> None:
    data = _run(home, "--preset", "dpo", "--dataset", "prefs", "--set", "max_steps=20", "--set", "eval_steps=10",
                "--set", "lr=5e-4", *FAST)
    assert "eval_perplexity" not in data["metrics"] and "eval_perplexity" not in data["result"]
    assert {"rewards/margins", "rewards/accuracies", "eval_rewards/margins", "eval_rewards/accuracies"} <= set(
        data["metrics"])
    margins = _series(home, data["id"], "eval_rewards/margins")
    assert margins[0] == pytest.approx(0, abs=1e-6) and margins[-1] > 0.5  # step 0: the model is its reference
    assert _series(home, data["id"], "eval_rewards/accuracies")[-1] > 0.9


@pytest.mark.slow
def test_orpo_widens_the_margin(home: Path) -> None:
    data = _run(home, "--preset", "orpo", "--dataset", "prefs", "--set", "max_steps=30", "--set", "eval_steps=15",
                "--set", "lr=5e-4", *FAST)
    assert "eval_perplexity" not in data["metrics"]
    margins = _series(home, data["id"], "eval_rewards/margins")
    odds = _series(home, data["id"], "eval_log_odds_ratio")
    assert margins[0] < 0 and margins[-1] > margins[0] + 0.1, margins  # starts preferring the pretrained answer
    assert odds[-1] > odds[0] + 1, odds
    assert _artifact(home, data["result"]["artifact_id"])["kind"] == "adapter"


@pytest.mark.slow
def test_kto_on_a_kto_dataset_and_on_unpaired_preferences(home: Path) -> None:
    data = _run(home, "--preset", "kto", "--dataset", "ktoset", "--set", "max_steps=30", "--set", "eval_steps=15",
                "--set", "lr=5e-4", *FAST)
    assert {"kl", "rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(data["metrics"])
    assert "eval_perplexity" not in data["metrics"]
    margins = _series(home, data["id"], "eval_rewards/margins")
    assert margins[0] == pytest.approx(0, abs=1e-6) and margins[-1] > 0.5, margins
    out = Path(_artifact(home, data["result"]["artifact_id"])["path"])
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()  # no frozen reference copy

    paired = _run(home, "--preset", "kto", "--dataset", "prefs", "--set", "max_steps=6", "--set", "eval_steps=0",
                  "--set", "lr=5e-4", *FAST)
    assert _series(home, paired["id"], "rewards/margins")[-1] > 0


@pytest.fixture(scope="module")
def reward_model(home: Path) -> dict:
    """A LoRA reward model trained on the preference set, and its run."""
    return _run(home, "--preset", "reward", "--dataset", "prefs", "--set", "max_steps=30", "--set", "eval_steps=15",
                "--set", "lr=1e-3", *FAST)


@pytest.mark.slow
def test_reward_model_scores_held_out_pairs(home: Path, reward_model: dict) -> None:
    data = reward_model
    accuracy = _series(home, data["id"], "eval_accuracy")  # on the held-out val split
    losses = _series(home, data["id"], "eval_loss")
    assert accuracy[-1] >= 0.9 and data["result"]["eval_accuracy"] == accuracy[-1]
    assert losses[-1] < losses[0] - 0.2, losses
    artifact = _artifact(home, data["result"]["artifact_id"])
    assert artifact["kind"] == "reward-model" and artifact["meta"]["eval_accuracy"] == accuracy[-1]
    # The artifact is a whole model: transformers loads it alone and it ranks an unseen pair right.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = artifact["path"]
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = {"role": "user", "content": "Reverse the order of these words.\n\nthe moon sees a sad cat"}
    scores = []
    for reply in (FIXED, "cat sad a sees moon the"):
        text = tokenizer.apply_chat_template([prompt, {"role": "assistant", "content": reply}], tokenize=False)
        with torch.no_grad():
            scores.append(float(model(**tokenizer(text, return_tensors="pt")).logits[0, 0]))
    assert scores[0] > scores[1], scores


@pytest.mark.slow
def test_grpo_reward_mean_rises_on_a_length_reward(home: Path) -> None:
    data = _run(home, "--preset", "grpo", "--dataset", "prompts", "--set", "max_steps=30", "--set", "batch=8",
                "--set", "grad_accum=1", "--set", "eval_steps=0", "--set", "lr=3e-3", "--set", "logging_steps=5",
                "--set", "gradient_checkpointing=false", "--set", "seed=7", "--set", "grpo.rewards=[length]",
                "--set", "grpo.length_target=60", "--set", "grpo.max_completion_length=24",
                "--set", "grpo.temperature=1.2")
    assert {"reward", "reward_std", "kl", "rewards/length/mean", "completions/mean_length"} <= set(data["metrics"])
    assert "eval_perplexity" not in data["metrics"]
    rewards = _series(home, data["id"], "reward")
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.03, rewards
    assert _series(home, data["id"], "kl")[-1] > 0  # the policy moved away from its reference


@pytest.mark.slow
def test_grpo_with_a_reward_file_and_the_reward_model(home: Path, reward_model: dict, tmp_path: Path) -> None:
    rewards = tmp_path / "my_rewards.py"
    rewards.write_text("def brevity(completions, **kwargs):\n"
                       "    return [1.0 / (1 + len(c[0]['content'])) for c in completions]\n\n\n"
                       "def crashes(completions, answer, **kwargs):\n"
                       "    return [len(a) / 0 for a in answer]\n")
    artifact = str(reward_model["result"]["artifact_id"])
    common = ("--preset", "grpo", "--dataset", "prompts", "--set", "max_steps=2", "--set", "eval_steps=0",
              "--set", "grpo.max_completion_length=8", "--set", f"grpo.reward_file={rewards}", *FAST)
    data = _run(home, *common, "--set", "grpo.reward_functions=[brevity]", "--set", f"grpo.reward_model={artifact}",
                "--set", "grpo.rewards=[exact_answer, length]")
    assert {"rewards/exact_answer/mean", "rewards/length/mean", "rewards/brevity/mean",
            "rewards/reward_model/mean"} <= set(data["metrics"])
    assert data["config"]["reward_model_artifact_id"] == int(artifact)

    failed = _run(home, *common, "--set", "grpo.reward_functions=[crashes]", ok=False)
    assert failed["status"] == "failed"
    assert failed["error"] == f"{rewards}:6: in reward function crashes: ZeroDivisionError: division by zero"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "reward", "--dataset", "demo"],
         "A reward model needs a preference dataset (prompt, chosen, rejected); 'demo' is alpaca"),
        (["--preset", "orpo", "--dataset", "ktoset"],
         "ORPO needs a preference dataset (prompt, chosen, rejected); 'ktoset' is kto"),
        (["--preset", "kto", "--dataset", "demo"],
         "KTO needs a kto dataset (prompt, completion, label) or a preference dataset"),
        (["--preset", "grpo", "--dataset", "notes"], "GRPO needs prompts"),
        (["--preset", "lora", "--dataset", "ktoset"], "dataset 'ktoset' is kto data: use objective kto"),
        (["--preset", "grpo", "--dataset", "demo", "--set", "grpo.reward_model=1"],
         "grpo.reward_model: artifact 1 is a model; expected reward-model"),
        (["--preset", "grpo", "--dataset", "demo", "--set", "grpo.reward_model=nope"],
         "grpo.reward_model: no artifact named 'nope'"),
        (["--preset", "grpo", "--dataset", "demo", "--set", "grpo.reward_file=/no/such.py",
          "--set", "grpo.reward_functions=[f]"], "grpo.reward_file: /no/such.py: no such file"),
        (["--preset", "kto", "--dataset", "prefs", "--set", "batch=1"],
         "training.per_device_batch: KTO needs at least 2"),
        (["--preset", "grpo", "--dataset", "demo", "--set", "batch=3", "--set", "grad_accum=1"],
         "grpo.num_generations: 4 must divide the batch of sampled answers"),
        (["--preset", "dpo", "--dataset", "prefs", "--set", "objective=ppo"], "TRL 1.16 ships no PPO trainer"),
    ],
)
def test_objective_misfits_are_refused_before_queueing(home: Path, args: list[str], message: str) -> None:
    before = _job_count(home)
    result = run_cli("run", "new", "demo", *args, home=home)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert _job_count(home) == before


def _job_count(home: Path) -> int:
    """Jobs in the store, read directly (a CLI listing per check would double this test's Python starts)."""
    with sqlite3.connect(home / "tunedeck.db") as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


@pytest.mark.slow
def test_reward_file_errors_name_the_file_and_line(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def ok(completions, **kwargs):\n    return [0.0] * len(completions)\n\n\ndef bad(x:\n")
    result = run_cli("run", "new", "demo", "--preset", "grpo", "--dataset", "demo", "--set",
                     f"grpo.reward_file={broken}", "--set", "grpo.reward_functions=[ok]", home=home)
    assert result.returncode == 1 and f"{broken}:5: syntax error: '(' was never closed" in result.stderr
    fine = tmp_path / "fine.py"
    fine.write_text("def ok(completions, **kwargs):\n    return [0.0] * len(completions)\n")
    result = run_cli("run", "new", "demo", "--preset", "grpo", "--dataset", "demo", "--set",
                     f"grpo.reward_file={fine}", "--set", "grpo.reward_functions=[okk]", home=home)
    assert result.returncode == 1 and f"{fine}: no function named 'okk' (functions defined there: ok)" in result.stderr


# --- the reward functions themselves (no training) ----------------------------------------------------------------


def test_builtin_rewards_score_each_completion() -> None:
    exact, fmt, length = builtin_rewards(["exact_answer", "format", "length"], "answer", r"<answer>.*</answer>", 10)
    completions = [[{"role": "assistant", "content": " Cat  Sad "}], [{"role": "assistant", "content": "<answer>dog"
                   "</answer>"}], [{"role": "assistant", "content": "x" * 15}]]
    answers = ["cat sad", "dog", "cat"]
    assert exact(completions=completions, answer=answers) == [1.0, 1.0, 0.0]
    assert fmt(completions=completions) == [0.0, 1.0, 0.0]
    assert length(completions=completions) == pytest.approx([0.8, 0.0, 0.5])  # 8, 20 and 15 characters
    assert [f.__name__ for f in (exact, fmt, length)] == ["exact_answer", "format", "length"]  # TRL's metric names
    with pytest.raises(TunedeckError, match=r"grpo\.answer_field: the dataset has no field 'answer'"):
        exact(completions=completions)


def test_reward_file_problems_name_file_and_line(tmp_path: Path) -> None:
    loud = tmp_path / "loud.py"
    loud.write_text("import math\n\nLIMIT = math.sqrt(-1)\n\n\ndef r(completions, **kwargs):\n    return []\n")
    assert check_reward_file(loud, ["r"]) == loud.resolve()  # checked without running it
    with pytest.raises(TunedeckError) as info:
        load_reward_file(loud, ["r"])
    assert str(info.value) == f"{loud}:3: error while loading the reward file: ValueError: math domain error"
    odd = tmp_path / "odd.py"
    odd.write_text("def half(completions, **kwargs):\n    return [0.5]\n\n\ndef words(completions, **kwargs):\n"
                   "    return ['many' for _ in completions]\n")
    half, words = load_reward_file(odd, ["half", "words"])
    completions = [[{"role": "assistant", "content": "a"}]] * 2
    with pytest.raises(TunedeckError, match=r"odd.py: reward function half must return a list of 2 numbers "
                                            r"\(one per completion\), got a list of 1"):
        half(completions=completions)
    with pytest.raises(TunedeckError, match=r"odd\.py: reward function words returned a value that is not a number"):
        words(completions=completions)


# --- the New Run form -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_new_run_form_offers_the_objectives(home: Path) -> None:
    import time

    from textual.widgets import Input, Select
    from tui_pilot import drive, text, type_text, wait_for

    from store.db import open_store
    from tui.screens.new_run import NewRunForm
    from tui.screens.project import ProjectScreen

    store = open_store(home)

    def shown(form: NewRunForm, widget_id: str) -> bool:
        return bool(form.query_one(f"#row-{widget_id}").display)

    async def scenario(app, pilot) -> None:  # type: ignore[no-untyped-def]
        await wait_for(pilot, lambda: app.screen.query("#projects") and app.screen.projects, "the projects list")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.data is not None, "project")
        await pilot.press("2", "n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunForm) and app.screen.checked is not None, "form")
        form: NewRunForm = app.screen  # type: ignore[assignment]
        assert not shown(form, "f-orpo-beta") and not shown(form, "f-grpo-rewards")  # sft: no objective fields

        form.query_one("#preset", Select).value = "orpo"
        await wait_for(pilot, lambda: form.query_one("#objective", Select).value == "orpo", "the orpo preset")
        await wait_for(pilot, lambda: shown(form, "f-orpo-beta"), "ORPO's beta")
        assert not shown(form, "f-dpo-beta") and not shown(form, "f-kto-beta")
        assert "for ORPO" in text(app, "#f-training-learning_rate-hint")
        form.query_one("#dataset", Select).value = "demo"
        await pilot.press("ctrl+s")  # the queue refuses an SFT dataset for ORPO; the form stays
        await wait_for(pilot, lambda: "ORPO needs a preference dataset" in text(app, "#error"), "the refusal")

        form.query_one("#preset", Select).value = "grpo"
        await wait_for(pilot, lambda: shown(form, "f-grpo-rewards") and not shown(form, "f-orpo-beta"), "GRPO")
        assert form.query_one("#f-grpo-rewards", Input).value == "exact_answer"
        box = form.query_one("#f-grpo-rewards", Input)
        box.focus()
        box.clear()
        await type_text(pilot, "length, format")
        await wait_for(pilot, lambda: "grpo.format_regex: the format reward needs a regular expression"
                       in text(app, "#messages"), "the missing regex")
        box = form.query_one("#f-grpo-format_regex", Input)
        box.focus()
        await type_text(pilot, "[a-z ]+")
        await wait_for(pilot, lambda: form.checked is not None and form.checked.config is not None, "valid again")
        assert form.checked.config.grpo.rewards == ["length", "format"]

        form.query_one("#preset", Select).value = "reward"
        form.query_one("#dataset", Select).value = "prefs"
        await wait_for(pilot, lambda: form.query_one("#objective", Select).value == "reward", "the reward preset")
        steps = form.query_one("#f-training-max_steps", Input)
        steps.focus()
        steps.clear()
        await type_text(pilot, "2")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "queued", timeout=30)

    try:
        drive(store, scenario)
        with store.raw() as conn:
            job_id, objective = conn.execute("SELECT id, json_extract(config, '$.run.objective') FROM jobs "
                                             "WHERE kind = 'train' ORDER BY id DESC LIMIT 1").fetchone()
        assert objective == "reward"
        deadline = time.monotonic() + 300
        while True:  # let it end, so the module's other runs are not queued behind it
            with store.raw() as conn:
                status = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            if status not in {"queued", "running"}:
                break
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert status == "completed"
    finally:
        store.close()
