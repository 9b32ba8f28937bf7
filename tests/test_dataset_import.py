"""Dataset import end to end: the CLI queues a real job, a detached runner imports, the store and
the snapshot agree, and a failed import leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import run_cli, wait_job

from engine.datasets.importer import split_ids
from engine.demo import make_demo_examples


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"question number {i} about topic {i * 7}"},
                         {"role": "assistant", "content": f"answer {i}: the value is {i * 3}"}]}


@pytest.fixture
def project(home: Path) -> str:
    assert run_cli("project", "create", "p", home=home).returncode == 0
    return "p"


def _leftovers(home: Path) -> list[str]:
    root = home / "datasets"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_import_alpaca_with_tokenizer(home: Path, project: str, tmp_path: Path, demo_model_dir: Path) -> None:
    src = _write_jsonl(tmp_path / "reverse.jsonl", make_demo_examples(120, seed=3))
    before = src.read_bytes()
    result = run_cli("dataset", "add", project, str(src), "--tokenizer", str(demo_model_dir),
                     "--max-length", "64", "--json", home=home, timeout=300)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["name"] == "reverse" and shown["format"] == "alpaca"
    assert (shown["num_train"], shown["num_val"]) == (108, 12)
    folder = Path(shown["path"])
    assert folder == home / "datasets" / str(shown["id"])
    train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (folder / "val.jsonl").read_text().splitlines()]
    assert len(train) == 108 and len(val) == 12
    assert sorted(r["id"] for r in train + val) == list(range(120))
    assert [m["role"] for m in train[0]["messages"]] == ["user", "assistant"]
    # the content hash is over the snapshot's bytes, so the snapshot is checkable later
    digest = hashlib.sha256((folder / "train.jsonl").read_bytes() + b"\0val\0" + (folder / "val.jsonl").read_bytes())
    assert shown["content_hash"] == digest.hexdigest()
    report = shown["report"]
    assert report["tokens"]["max"] > 0 and report["verdict"] in {"ok", "warn", "fail"}
    assert report["import"]["records_read"] == 120
    assert src.read_bytes() == before  # the source is never modified
    listed = json.loads(run_cli("dataset", "list", project, "--json", home=home).stdout)
    assert [d["name"] for d in listed] == ["reverse"]
    text = run_cli("dataset", "show", "reverse", home=home)
    assert text.returncode == 0 and "reverse" in text.stdout
    jobs = json.loads(run_cli("job", "list", project, "--json", home=home).stdout)
    assert [(j["kind"], j["status"]) for j in jobs] == [("dataset-import", "completed")]
    assert jobs[0]["result"]["dataset_id"] == shown["id"]


def test_failed_import_stores_nothing(home: Path, project: str, tmp_path: Path) -> None:
    rows = [_chat(i) for i in range(30)]
    rows[4] = '{"messages": [{"role": "user", "content": "hi"}'  # truncated JSON
    rows[9] = {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]}
    src = _write_jsonl(tmp_path / "bad.jsonl", rows)
    result = run_cli("dataset", "add", project, str(src), home=home, timeout=300)
    assert result.returncode == 1
    assert f"{src}:5" in result.stderr and f"{src}:10: messages[0].role" in result.stderr
    assert "Traceback" not in result.stderr
    listed = json.loads(run_cli("dataset", "list", project, "--json", home=home).stdout)
    assert [(d["kind"], d["name"], d["status"], d["id"]) for d in listed] == [("failed", "bad", "failed", None)]
    assert f"{src}:10: messages[0].role" in listed[0]["error"]
    assert _leftovers(home) == []
    job = json.loads(run_cli("job", "list", "--json", home=home).stdout)[0]
    assert job["status"] == "failed" and "bad.jsonl:5" in job["error"]


def test_skip_keeps_valid_rows_and_reports_dropped(home: Path, project: str, tmp_path: Path) -> None:
    rows = [_chat(i) for i in range(30)]
    rows[4] = "not json at all"
    src = _write_jsonl(tmp_path / "some-bad.jsonl", rows)
    result = run_cli("dataset", "add", project, str(src), "--on-error", "skip", "--json", home=home, timeout=300)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["num_train"] + shown["num_val"] == 29
    assert shown["report"]["import"]["invalid"] == 1
    assert shown["report"]["import"]["errors"][0]["line"] == 5


def test_exact_dedup_and_seeded_split(home: Path, project: str, tmp_path: Path) -> None:
    rows = [_chat(i) for i in range(40)] + [_chat(3), _chat(7)]
    src = _write_jsonl(tmp_path / "dups.jsonl", rows)
    shown = json.loads(run_cli("dataset", "add", project, str(src), "--seed", "5", "--json",
                               home=home, timeout=300).stdout)
    assert shown["num_train"] + shown["num_val"] == 40
    assert shown["report"]["import"]["dropped"] == {"exact duplicate": 2}
    again = json.loads(run_cli("dataset", "add", project, str(src), "--seed", "5", "--name", "again", "--json",
                               home=home, timeout=300).stdout)
    assert again["content_hash"] == shown["content_hash"]  # same source, same seed: same snapshot
    assert split_ids(40, 0.1, 5) == split_ids(40, 0.1, 5) != split_ids(40, 0.1, 6)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["dataset", "add", "nope", "SRC"], 1, "error: no project named 'nope'"),
        (["dataset", "add", "p", "/no/such/file.jsonl"], 1, "error: /no/such/file.jsonl: no such file or directory"),
        (["dataset", "add", "p", "SRC", "--val-fraction", "1.5"], 2, "--val-fraction must be in [0, 1), got 1.5"),
        (["dataset", "add", "p", "SRC", "--format", "xml"], 2, "invalid choice: 'xml'"),
        (["dataset", "add", "p", "SRC", "--name", "a/b"], 1, "error: dataset name 'a/b' must not contain a path"),
        (["dataset", "show", "404"], 1, "error: no dataset with id 404"),
        (["dataset", "show", "ghost"], 1, "error: no dataset named 'ghost'"),
        (["dataset", "list", "nope"], 1, "error: no project named 'nope'"),
        (["job", "show", "99"], 1, "error: no job with id 99"),
        (["job", "cancel", "99"], 1, "error: no job with id 99"),
    ],
)
def test_dataset_cli_errors(home: Path, project: str, tmp_path: Path, args: list[str], code: int,
                            message: str) -> None:
    src = _write_jsonl(tmp_path / "ok.jsonl", [_chat(i) for i in range(5)])
    result = run_cli(*[str(src) if a == "SRC" else a for a in args], home=home)
    assert result.returncode == code
    assert message in result.stderr and "Traceback" not in result.stderr
    assert _leftovers(home) == []


def test_duplicate_name_refused_before_queueing(home: Path, project: str, tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "d.jsonl", [_chat(i) for i in range(5)])
    assert run_cli("dataset", "add", project, str(src), home=home, timeout=300).returncode == 0
    result = run_cli("dataset", "add", project, str(src), home=home)
    assert result.returncode == 1
    assert "project 'p' already has a dataset named 'd' (use --name)" in result.stderr
    assert len(json.loads(run_cli("job", "list", "--json", home=home).stdout)) == 1


def test_flags_for_the_preview_filters(home: Path, project: str, tmp_path: Path, demo_model_dir: Path) -> None:
    rows = [_chat(i) for i in range(30)]
    rows[2]["messages"][0]["content"] += " mail me at jane.doe@example.org"
    rows[5]["messages"][1]["content"] = "word " * 200  # long answer: truncated, still trainable
    rows[8]["messages"][0]["content"] = "prompt " * 200  # long prompt: nothing left to learn
    rows[11] = _chat(0)  # exact duplicate of record 0
    src = _write_jsonl(tmp_path / "flags.jsonl", rows)
    result = run_cli("dataset", "add", project, str(src), "--dedup", "none", "--tokenizer", str(demo_model_dir),
                     "--max-length", "128", "--json", home=home, timeout=300)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    flags = json.loads((Path(shown["path"]) / "flags.json").read_text())
    assert flags["pii"] == [2]
    assert flags["exact_duplicate"] == [0, 11]
    assert flags["too_long"] == [5, 8]
    assert flags["masked_out"] == [8]
    assert "flags" not in shown["report"]


@pytest.mark.slow
def test_cancel_a_running_import_stores_nothing(home: Path, project: str, tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    with src.open("w") as fh:
        for i in range(400_000):
            fh.write(json.dumps({"text": f"line {i} " + "word " * 20}) + "\n")
    job_id = json.loads(run_cli("dataset", "add", project, str(src), "--dedup", "near", "--no-wait", "--json",
                                home=home).stdout)["job_id"]

    wait_job(home, job_id, lambda row: row["status"] != "queued", "never started", 120, every=0.05)
    assert run_cli("job", "cancel", str(job_id), home=home).returncode == 0
    wait_job(home, job_id, lambda row: row["status"] != "running", "did not honour the cancel", 120)
    job = json.loads(run_cli("job", "show", str(job_id), "--json", home=home).stdout)
    assert job["status"] == "cancelled", job
    listed = json.loads(run_cli("dataset", "list", project, "--json", home=home).stdout)
    assert [(d["kind"], d["status"], d["job_id"]) for d in listed] == [("failed", "cancelled", job_id)]
    assert _leftovers(home) == []
