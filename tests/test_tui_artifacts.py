"""The Artifacts tab and the artifact screen at 80x24: lineage tree, fidelity badge, actions that queue real
jobs, the serve command, and a delete that refuses while others derive from it unless forced."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import held_slot, run_cli, wait_job
from textual.pilot import Pilot
from textual.widgets import Input, Tree
from tui_pilot import drive, notes, screen_text, type_text, wait_for

from store.db import open_store
from tui.app import TunedeckApp
from tui.screens.artifact import ActionDialog, ArtifactScreen, ConfirmArtifactDelete
from tui.screens.job import JobScreen
from tui.screens.project import ProjectScreen
from tui.widgets.live_table import LiveTable


@pytest.fixture(scope="module")
def converted_home(tmp_path_factory: pytest.TempPathFactory, llama_sdist: Path) -> Path:
    """The demo model converted and quantized once for this module (the tests below run in order; the last
    one deletes part of it)."""
    home = tmp_path_factory.mktemp("artifacts") / "home"
    env = {"TUNEDECK_LLAMA_SDIST": str(llama_sdist), "HF_HUB_OFFLINE": "1"}
    assert run_cli("demo", home=home, env=env).returncode == 0
    proc = run_cli("convert", "1", "--quant", "q8_0", "--wait", home=home, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home


def _jobs(home: Path) -> list[dict]:
    return json.loads(run_cli("job", "list", "--json", home=home).stdout)


async def _open_artifacts(app: TunedeckApp, pilot: Pilot) -> LiveTable:
    app.push_screen(ProjectScreen("demo"))
    await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "project screen")
    await pilot.press("3")
    table = app.screen.query_one("#artifacts-table", LiveTable)
    await wait_for(pilot, lambda: table.row_count >= 4, "artifact rows")
    return table


def test_artifacts_tab_tree_and_artifact_screen(converted_home: Path) -> None:
    store = open_store(converted_home)
    seen: dict[str, str] = {}

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        table = await _open_artifacts(app, pilot)
        await wait_for(pilot, lambda: "pass" in screen_text(app), "fidelity badges")
        seen["tab"] = screen_text(app)
        # rows: model, its gguf (indented), the quant (indented twice), then the data file
        assert [table.get_row_at(i)[0] for i in range(table.row_count)][:3] == ["model", "└ gguf", "  └ gguf"]
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ArtifactScreen), "artifact screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.family is not None, "artifact read")
        await pilot.pause(0.2)
        seen["artifact"] = screen_text(app)
        tree = screen.query_one(Tree)
        labels = [str(n.label) for n in tree.root.children[0].children]
        assert any("gguf" in label and "f16" in label for label in labels)
        await pilot.press("y")
        await wait_for(pilot, lambda: "llama-server" in notes(app), "serve command copied")
        await pilot.press("Q")  # quantize (q quits, as everywhere)
        await wait_for(pilot, lambda: isinstance(app.screen, ActionDialog), "quantize dialog")
        box = app.screen.query_one("#artifact-action").region  # centred, whole at 80 columns
        assert box.x > 0 and box.right <= 80 and box.y > 0
        field = app.screen.query_one("#field-quant", Input)
        field.value = ""
        await type_text(pilot, "q6_k")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ArtifactScreen), "dialog closed", timeout=10)
        await wait_for(pilot, lambda: "queued as job" in notes(app), "queued note")
        await wait_for(pilot, lambda: "quantize job" in screen_text(app), "the job working on it, on the screen")
        assert screen.check_action("open_job", ())  # (the footer's line is under the toasts just now)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "the quantize job's screen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "back on the artifact")
        await pilot.press("Q")
        await wait_for(pilot, lambda: isinstance(app.screen, ActionDialog), "quantize dialog again")
        field = app.screen.query_one("#field-quant", Input)
        field.value = ""
        await type_text(pilot, "q9_x")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "unknown quant type q9_x" in screen_text(app), "error in the dialog")
        await pilot.press("escape")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmArtifactDelete), "delete dialog")
        # the quantize job reads it while it runs; once it ends, its q6_k derives from it
        shown = " ".join(screen_text(app).split())
        assert "is in use by 1 queued or running" in shown or "derive from" in shown
        await pilot.press("y")  # refused either way
        await pilot.pause(0.2)
        assert isinstance(app.screen, ConfirmArtifactDelete)
        await pilot.press("escape")

    # The slot's lock keeps the quantize job queued while the screen shows it: from a warm engine it would end
    # between two reads of the screen. Afterwards it runs, as the next tests expect.
    with held_slot(converted_home, "post"):  # the slot of conversions and quantizations
        drive(store, scenario)
        (job,) = [j for j in _jobs(converted_home) if j["kind"] == "quantize" and j["status"] == "queued"]
    assert wait_job(converted_home, job["id"])["status"] == "completed"
    assert "✓ pass" in seen["tab"] and "└ gguf" in seen["tab"]
    assert "Fidelity" in seen["artifact"] and "agreement" in seen["artifact"]
    quantize_jobs = [j for j in _jobs(converted_home) if j["kind"] == "quantize"]
    assert len(quantize_jobs) == 1 and quantize_jobs[0]["config"]["quants"] == ["q6_k"]
    done = wait_job(converted_home, quantize_jobs[0]["id"], timeout=120)
    assert done["status"] == "completed", done
    store.close()


def test_adapter_actions_queue_merge_convert_and_eval(home: Path, demo_model_dir: Path, tmp_path: Path) -> None:
    """m, v and e on an adapter queue real merge, convert and eval jobs with what the dialogs say."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.artifacts import register_artifact
    from store.jobs import get_job, request_cancel
    from store.projects import create_project

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(demo_model_dir)),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    adapter_dir = tmp_path / "adapter"
    model.save_pretrained(str(adapter_dir))
    store = open_store(home)
    with store.write() as session:
        project = create_project(session, "p")
        base = register_artifact(session, project.id, "model", demo_model_dir, name="base")
        adapter_id = register_artifact(session, project.id, "adapter", adapter_dir, name="ad", parent_id=base.id,
                                       meta={"base_model": str(demo_model_dir)}).id

    async def act(app: TunedeckApp, pilot: Pilot, key: str, before: int) -> None:
        await pilot.press(key)
        await wait_for(pilot, lambda: isinstance(app.screen, ActionDialog), f"{key} dialog")
        await pilot.press("enter")
        word = {"m": "Merge", "v": "Convert", "e": "Eval"}[key]  # (earlier toasts may have timed out by now)
        await wait_for(pilot, lambda: f"{word} queued as job" in notes(app), f"{key} queued", timeout=15)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        app.push_screen(ArtifactScreen(adapter_id))
        await wait_for(pilot, lambda: app.screen.family is not None, "artifact read")
        await pilot.pause(0.1)
        assert "m merge" in screen_text(app) and "Q quantize" not in screen_text(app)
        footer = screen_text(app).splitlines()[-1]
        assert "Merge" in footer and "Quantize" not in footer  # only what applies to an adapter
        for i, key in enumerate("mve"):
            await act(app, pilot, key, i)
        await pilot.press("Q")  # does not apply to an adapter: the key does nothing
        await pilot.pause(0.2)
        assert isinstance(app.screen, ArtifactScreen) and not app.screen.check_action("act", ("quantize",))

    drive(store, scenario)
    with store.raw() as conn:
        jobs = {kind: json.loads(config) for kind, config in conn.execute("SELECT kind, config FROM jobs")}
    assert set(jobs) == {"merge", "convert", "eval"}
    assert jobs["merge"]["dtype"] == "fp32" and jobs["convert"]["quants"] == []
    assert jobs["eval"]["base_path"] == str(demo_model_dir)
    with store.write() as session:
        for job_id in (1, 2, 3):  # a job may have ended already (a warm engine starts each in about a second)
            if get_job(session, job_id).status in ("queued", "running"):
                request_cancel(session, job_id)
    deadline = time.monotonic() + 60
    while True:
        with store.raw() as conn:
            if not conn.execute("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]:
                break
        assert time.monotonic() < deadline, "jobs did not stop"
        time.sleep(0.3)
    store.close()


def test_forced_delete_removes_the_subtree_and_its_files(converted_home: Path) -> None:
    store = open_store(converted_home)
    arts = json.loads(run_cli("artifact", "list", "demo", "--json", home=converted_home).stdout)
    f16 = next(a for a in arts if a["name"].endswith("f16.gguf"))
    quant = next(a for a in arts if a["name"].endswith("q8_0.gguf"))
    subtree = {f16["id"]}  # f16 and every quant made from it (the first test added a q6_k)
    for a in arts:
        if a["parent_id"] in subtree:
            subtree.add(a["id"])

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        app.push_screen(ArtifactScreen(f16["id"]))
        await wait_for(pilot, lambda: app.screen.family is not None, "artifact read")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmArtifactDelete), "delete dialog")
        await pilot.press("f")
        await wait_for(pilot, lambda: f"Deleted {len(subtree)} artifact(s)" in notes(app), "deleted note",
                       timeout=10)

    drive(store, scenario)
    left = {a["id"] for a in json.loads(run_cli("artifact", "list", "demo", "--json", home=converted_home).stdout)}
    assert not subtree & left and quant["id"] in subtree and 1 in left
    assert not Path(f16["path"]).exists() and not Path(quant["path"]).exists()
    assert Path(json.loads(run_cli("artifact", "show", "1", "--json", home=converted_home).stdout)["path"]).exists()
    store.close()


def test_lineage_order_keeps_each_branch_under_its_parent() -> None:
    """A model with two adapters, each converted: every derived artifact sits right under its own parent (the
    order `artifact list` and the Artifacts tab share), whatever order the ids came in."""
    from types import SimpleNamespace

    from store.views import lineage_order

    def art(id_: int, parent: int | None) -> SimpleNamespace:
        return SimpleNamespace(id=id_, parent_id=parent)

    arts = [art(1, None), art(2, 1), art(3, 1), art(4, 2), art(5, 3), art(6, 99), art(7, 4)]
    order = [(a.id, depth) for a, depth in lineage_order(list(reversed(arts)))]
    assert order == [(1, 0), (2, 1), (4, 2), (7, 3), (3, 1), (5, 2), (6, 0)]  # 6's parent is not listed: a root
