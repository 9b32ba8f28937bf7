"""Bad input at every door of the command line: run configs, model folders, GGUF files and names.

Each case must end with a non-zero exit, one clear message naming the file, folder or field (and the line of a
YAML syntax error), no traceback, and nothing written: the home's files and the store's rows are compared before
and after. The bulk runs `cli.main.main` in this process (the same code as the console script, milliseconds a
call); representative cases run the real `tunedeck` in a subprocess, and one runs the real engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import copy_home, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main

TABLES = ("projects", "datasets", "jobs", "metrics", "artifacts", "chat_sessions", "chat_messages")
VOLATILE = {"tunedeck.db-wal", "tunedeck.db-shm", "tunedeck.db-journal"}  # SQLite's own, come and go
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------- helpers


def state(home: Path) -> tuple[frozenset[str], dict[str, int]]:
    """Every path under the home (but SQLite's side files) and the row count of every table."""
    paths = frozenset(str(p.relative_to(home)) for p in home.rglob("*") if p.name not in VOLATILE)
    conn = sqlite3.connect(home / "tunedeck.db")
    try:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()
    return paths, rows


def cli(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[int, str, str]:
    """`tunedeck --home HOME ARGS` in this process: (exit code, stdout, stderr)."""
    code = main(["--home", str(home), *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, out: str, err: str, *needles: str) -> None:
    """Non-zero exit, an error (after any warnings) holding every needle, no traceback or unexpected exception,
    no raw control character that could drive the terminal, nothing on stdout."""
    assert code != 0, (out, err)
    assert re.search(r"^error: ", err, re.MULTILINE), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in out + err and "error: unexpected " not in err, err
    assert not [c for c in err if unicodedata.category(c) == "Cc" and c != "\n"], repr(err)
    assert out == "", out


def refused(capsys: pytest.CaptureFixture[str], home: Path, args: list[str], *needles: str) -> str:
    """Run ARGS in-process, assert it was refused with `needles` and wrote nothing; returns the message."""
    before = state(home)
    code, out, err = cli(capsys, home, *args)
    assert_refused(code, out, err, *needles)
    assert state(home) == before, f"{args} wrote something"
    return err


def refused_subprocess(home: Path, args: list[str], *needles: str) -> str:
    """The same in a real `tunedeck` subprocess: also one line on stderr."""
    before = state(home)
    result = run_cli(*args, home=home)
    assert_refused(result.returncode, result.stdout, result.stderr, *needles)
    assert len([line for line in result.stderr.splitlines() if not line.startswith("warning: ")]) == 1, \
        result.stderr
    assert state(home) == before, f"{args} wrote something"
    return result.stderr


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, demo_home_src: Path) -> Path:
    """A home with the demo project (model artifact 1, data artifact 2, dataset `demo`); tests only read it."""
    return copy_home(demo_home_src, tmp_path_factory.mktemp("bad-input") / "home")


def demo_model(home: Path) -> Path:
    return home / "models" / "demo-llama"


# ----------------------------------------------------------------------------- 1. run configs

CONFIGS: dict[str, tuple[str | bytes, tuple[str, ...]]] = {
    "negative lr": ("training:\n  learning_rate: -1\n", ("training.learning_rate: must be greater than 0",)),
    "r=0": ("lora:\n  r: 0\n", ("lora.r: must be at least 1 (got 0)",)),
    "r=10**9": ("lora:\n  r: 1000000000\n", ("lora.r: must be at most",)),
    "max_length=-1": ("training:\n  max_length: -1\n", ("training.max_length: must be at least",)),
    "epochs=1e9": ("training:\n  epochs: 1e9\n", ("training.epochs: must be at most 1000",)),
    "nan": ("training:\n  learning_rate: .nan\n", ("training.learning_rate: must be a finite number",)),
    "huge int": ("training:\n  seed: 99999999999999999999999999\n", ("training.seed: must be at most",)),
    "string for a number": ("training:\n  epochs: three\n", ("training.epochs: must be a number (got 'three')",)),
    "list for a scalar": ("lora:\n  r: [1, 2]\n", ("lora.r:",)),
    "mapping for a scalar": ("training:\n  seed: {a: 1}\n", ("training.seed:",)),
    "scalar for a section": ("lora: 5\n", ("lora: must be a mapping of fields",)),
    "unknown key": ("trainig:\n  epochs: 1\n", ("trainig: unknown field 'trainig' (did you mean 'training'?)",)),
    "unknown nested key": ("training:\n  lernig_rate: 1\n", ("training.lernig_rate: unknown field",)),
    "several problems": ("lora:\n  r: 0\ntraining:\n  per_device_batch: 0\n",
                         ("lora.r: must be at least 1", "\n", "training.per_device_batch: must be at least 1")),
    "top-level list": ("- model: x\n- dataset: y\n", ("expected a mapping of fields", "got a list")),
    "top-level scalar": ("42\n", ("expected a mapping of fields",)),
    "binary garbage": (bytes(range(256)) * 8, ("not a UTF-8 text file",)),
    "UTF-16": ("model: m\n".encode("utf-16"), ("not a UTF-8 text file",)),
    "syntax error": ("model: x\ntraining:\n  epochs: 1\n   seed: 3\n", (":4:", "invalid YAML")),
    "tab indent": ("training:\n\tepochs: 1\n", (":2:", "invalid YAML")),
    "unclosed quote": ('model: "x\ndataset: y\n', ("invalid YAML",)),
    "duplicate key": ("training:\n  seed: 1\n  seed: 2\n", (":3:", "duplicate key 'seed'")),
    "empty": ("", ("the configuration is empty",)),
    "only a comment": ("# nothing\n", ("the configuration is empty",)),
    "python tag": ("model: !!python/object/apply:os.system ['touch {marker}']\n", ("invalid YAML",)),
    "alias bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
                   ("a: unknown field 'a'",)),
    "bad run name": ("name: a/b\n", ("name: must not contain a path separator",)),
    "control character in a name": ('name: "run\\x1b[2J"\n', ("name: must be a single line of text",)),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_run_config_file(capsys: pytest.CaptureFixture[str], demo_home: Path, tmp_path: Path, case: str) -> None:
    text, needles = CONFIGS[case]
    marker = tmp_path / "pwned"
    path = tmp_path / "run.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.replace("{marker}", str(marker)).encode())
    err = refused(capsys, demo_home, ["run", "new", "demo", "--config", str(path)], f"error: {path}", *needles)
    assert not marker.exists()
    if "invalid YAML" in needles:
        assert re.match(rf"error: {re.escape(str(path))}:\d+:\d+: invalid YAML", err), err


def test_config_that_is_missing_or_a_folder(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                            tmp_path: Path) -> None:
    refused(capsys, demo_home, ["run", "new", "demo", "--config", str(tmp_path / "nope.yaml")], "no such file")
    refused(capsys, demo_home, ["run", "new", "demo", "--config", str(tmp_path)], "is a directory")


OVERRIDES = {
    "lr=-1": "--set: training.learning_rate: must be greater than 0 (got -1)",
    "r=0": "--set: lora.r: must be at least 1 (got 0)",
    "r=1000000000": "--set: lora.r: must be at most",
    "max_length=-1": "--set: training.max_length: must be at least",
    "epochs=1e9": "--set: training.epochs: must be at most 1000",
    "epochs=abc": "--set: training.epochs: must be a number (got 'abc')",
    "lr=nan": "--set: training.learning_rate: must be a finite number",
    "lr=[1,2]": "--set: training.learning_rate: must be a number",
    "r=1.5": "--set: lora.r: must be a whole number",
    "lora=5": "--set: lora: must be a mapping of fields",
    "training=[1]": "--set: training: must be a mapping of fields",
    "foo=1": "--set: foo: unknown field 'foo'",
    "model.x=1": "--set: model.x: 'model' has no sub-fields",
    "=5": "expected FIELD=VALUE",
    "lr": "expected FIELD=VALUE",
    "name=a/b": "--set: name: must not contain a path separator",
    "model=a\x01": "--set: model: must be a single line of text",
}


@pytest.mark.parametrize("item", list(OVERRIDES))
def test_bad_override(capsys: pytest.CaptureFixture[str], demo_home: Path, item: str) -> None:
    refused(capsys, demo_home, ["run", "new", "demo", "--set", item], OVERRIDES[item])


def test_bad_configs_in_a_real_subprocess(demo_home: Path, tmp_path: Path) -> None:
    """What a user sees in the terminal: one line, the exit code, no traceback."""
    path = tmp_path / "run.yaml"
    path.write_text("model: x\ntraining:\n  epochs: 1\n   seed: 3\n")
    err = refused_subprocess(demo_home, ["run", "new", "demo", "--config", str(path)], "invalid YAML")
    assert err.startswith(f"error: {path}:4:")
    path.write_bytes(b"\x00\xff" * 100)
    refused_subprocess(demo_home, ["run", "new", "demo", "--config", str(path)], f"{path}: not a UTF-8 text file")
    refused_subprocess(demo_home, ["run", "new", "demo", "--set", "r=0", "--wait"], "--set: lora.r: must be at least 1")


# Property tests: in-process (each CLI call costs a second). Any input ends in a RunConfig or a ConfigError
# whose every line starts with where the input came from; never another exception, never pydantic's wording.

FIELDS = ["name", "model", "dataset", "objective", "method", "lora", "quant", "training", "dpo", "devices",
          "strategy", "trust_remote_code", "r", "lr", "epochs", "learning_rate", "seed", "max_length", "alpha",
          "per_device_batch", "target_modules", "beta", "x"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["1e-4", "all-linear", "lora", "sft", "0,1", "nan", "-1", "1e9"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
MAPPINGS = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), VALUES, max_size=6)


def _clean_refusal(exc: Exception, source: str) -> None:
    from engine.train.config import ConfigError

    assert isinstance(exc, ConfigError), repr(exc)
    assert exc.problems and all(line.startswith(source) for line in exc.problems), exc.problems
    text = str(exc)
    assert not any(word in text for word in ("Traceback", "pydantic", "Input should", "validation error")), text


@FUZZ
@given(data=st.one_of(MAPPINGS, VALUES))
def test_random_mappings_parse_or_name_the_field(data: object) -> None:
    from engine.train.config import RunConfig, parse_config

    try:
        assert isinstance(parse_config(data, "run.yaml"), RunConfig)
    except Exception as exc:
        _clean_refusal(exc, "run.yaml")


@FUZZ
@given(text=st.one_of(st.text(max_size=200), MAPPINGS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                      st.builds(lambda d, cut: yaml.safe_dump(d)[:cut], MAPPINGS, st.integers(0, 60))))
def test_random_yaml_text_loads_or_refuses(tmp_path: Path, text: str) -> None:
    from engine.train.config import RunConfig, load_config

    path = tmp_path / "run.yaml"
    try:
        path.write_text(text, encoding="utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no file can hold it
        return
    try:
        assert isinstance(load_config(path), RunConfig)
    except Exception as exc:
        _clean_refusal(exc, str(path))


@FUZZ
@given(key=st.sampled_from([*FIELDS, "lora.r", "training.epochs", "quant.quant_type"]) | st.text(max_size=10),
       value=st.text(max_size=20) | st.integers().map(str) | st.floats().map(str))
def test_random_overrides_apply_or_refuse(key: str, value: str) -> None:
    from engine.train.config import RunConfig, apply_overrides, default_config

    try:
        assert isinstance(apply_overrides(default_config(), [f"{key}={value}"]), RunConfig)
    except Exception as exc:
        _clean_refusal(exc, "--set")


# ----------------------------------------------------------------------------- 2. model folders


def _edit_config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
    return edit


def _truncate(name: str, keep: float) -> Callable[[Path], None]:
    def cut(folder: Path) -> None:
        file = folder / name
        os.truncate(file, int(file.stat().st_size * keep))
    return cut


def _remove(*patterns: str) -> Callable[[Path], None]:
    def remove(folder: Path) -> None:
        for pattern in patterns:
            for file in folder.glob(pattern):
                file.unlink()
    return remove


# name: (how to break a copy of the demo model, what the message says, whether only the weights or the
# tokenizer are broken: `model modules` and `estimate` read config.json alone, so they accept those folders)
BROKEN: dict[str, tuple[Callable[[Path], None], str, bool]] = {
    "no config.json": (_remove("config.json"), "not a model folder (no config.json)", False),
    "config not JSON": (lambda f: (f / "config.json").write_text("{not json"), "config.json: not valid JSON", False),
    "config a list": (lambda f: (f / "config.json").write_text("[1, 2]"), "expected a JSON object", False),
    "config binary": (lambda f: (f / "config.json").write_bytes(b"\xff\xfe\x00"), "config.json: not valid JSON",
                      False),
    "no model_type": (_edit_config(lambda c: c.pop("model_type")), "config.json: no model_type", False),
    "huge hidden_size": (_edit_config(lambda c: c.update(hidden_size=10**9)), "config.json: hidden_size is "
                         "1000000000; expected a whole number from 1 to", False),
    "huge model": (_edit_config(lambda c: c.update(hidden_size=100_000, num_hidden_layers=1000,
                                                   intermediate_size=400_000)),
                   "its sizes describe about", False),
    "negative size": (_edit_config(lambda c: c.update(num_hidden_layers=-2)), "num_hidden_layers is -2", False),
    "size as text": (_edit_config(lambda c: c.update(vocab_size="big")), "vocab_size is 'big'", False),
    "no weights": (_remove("*.safetensors"), "no weights (no *.safetensors or pytorch_model.bin)", True),
    "truncated weights": (_truncate("model.safetensors", 0.5), "model.safetensors: truncated (its tensors need",
                          True),
    "weights cut in the header": (_truncate("model.safetensors", 0.0005), "model.safetensors: truncated or not a "
                                  "safetensors file", True),
    "weights of 5 bytes": (lambda f: (f / "model.safetensors").write_bytes(b"12345"), "not a safetensors file",
                           True),
    "weights header garbage": (lambda f: (f / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{"),
                               "safetensors header cannot be read", True),
    "index names a missing shard": (
        lambda f: (f / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})),
        "weights file model-00002-of-00002.safetensors named by model.safetensors.index.json is missing", True),
    "no tokenizer files": (_remove("tokenizer.json", "tokenizer.model"), "no tokenizer files", True),
}


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> dict[str, Path]:
    """A broken copy of the demo model per BROKEN case, plus a plain file and a missing path."""
    root = tmp_path_factory.mktemp("broken-models")
    out = {}
    for name, (breaker, _, _) in BROKEN.items():
        folder = root / name.replace(" ", "-")
        shutil.copytree(demo_model_dir, folder)
        breaker(folder)
        out[name] = folder
    (root / "a-file").write_text("not a folder\n")
    out["a file"] = root / "a-file"
    out["missing"] = root / "missing"
    return out


MODEL_CASES = [*BROKEN, "a file", "missing"]
PATH_MESSAGES = {"a file": "not a folder", "missing": "no such folder"}


def _message(case: str) -> str:
    return BROKEN[case][1] if case in BROKEN else PATH_MESSAGES[case]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_run_new_refuses_a_broken_model_folder(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                               broken_models: dict[str, Path], case: str) -> None:
    folder = broken_models[case]
    refused(capsys, demo_home, ["run", "new", "demo", "--model", str(folder)], str(folder), _message(case))


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if c not in BROKEN or not BROKEN[c][2]])
def test_model_modules_refuses_a_broken_config(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                               broken_models: dict[str, Path], case: str) -> None:
    folder = broken_models[case]
    refused(capsys, demo_home, ["model", "modules", str(folder)], str(folder), _message(case))


@pytest.mark.parametrize("case", [c for c in BROKEN if not BROKEN[c][2]] + ["missing"])
def test_estimate_refuses_a_broken_config(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                          broken_models: dict[str, Path], case: str) -> None:
    folder = broken_models[case]
    expected = {"missing": "no such model folder"}.get(case, _message(case))
    refused(capsys, demo_home, ["estimate", "--model", str(folder), "--gpu-memory", "80"], str(folder), expected)


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if c != "no tokenizer files"])
def test_merge_models_refuses_a_broken_model_folder(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                                    broken_models: dict[str, Path], case: str) -> None:
    """merge-models reads config and weights (a merge keeps the base's tokenizer)."""
    folder, base = broken_models[case], str(demo_model(demo_home))
    expected = {"no config.json": "not a model folder (no config.json) nor an adapter folder",
                "missing": "no such artifact (id or name) nor model folder"}.get(case, _message(case))
    refused(capsys, demo_home, ["merge-models", "demo", str(folder), base, "--method", "linear", "--base", base],
            str(folder), expected)


def test_broken_models_in_a_real_subprocess(demo_home: Path, broken_models: dict[str, Path]) -> None:
    trunc, untyped, huge = broken_models["truncated weights"], broken_models["no model_type"], \
        broken_models["huge hidden_size"]
    refused_subprocess(demo_home, ["run", "new", "demo", "--model", str(trunc), "--wait"],
                       f"{trunc}/model.safetensors: truncated")
    refused_subprocess(demo_home, ["model", "modules", str(untyped)], f"{untyped}/config.json: no model_type")
    refused_subprocess(demo_home, ["estimate", "--model", str(huge)], f"{huge}/config.json: hidden_size is")


def test_unknown_model_type(capsys: pytest.CaptureFixture[str], demo_home: Path, tmp_path: Path,
                            demo_model_dir: Path) -> None:
    """A model_type transformers does not know is refused before queueing; one that ships its own code names
    trust_remote_code."""
    folder = tmp_path / "foo"
    shutil.copytree(demo_model_dir, folder)
    _edit_config(lambda c: c.update(model_type="tunedeckfoo"))(folder)
    refused(capsys, demo_home, ["run", "new", "demo", "--model", str(folder)],
            "model_type 'tunedeckfoo' is not one the installed transformers knows")
    refused(capsys, demo_home, ["model", "modules", str(folder)], "model_type 'tunedeckfoo'")
    _edit_config(lambda c: c.update(auto_map={"AutoConfig": "x.FooConfig"}))(folder)
    refused(capsys, demo_home, ["run", "new", "demo", "--model", str(folder)], "set trust_remote_code: true")


def test_dataset_tokenizer_that_is_not_a_model(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                               broken_models: dict[str, Path]) -> None:
    data = str(demo_home / "demo" / "demo-reverse-words.jsonl")
    folder = broken_models["no tokenizer files"]
    refused(capsys, demo_home, ["dataset", "add", "demo", data, "--name", "t", "--tokenizer", str(folder)],
            f"{folder}: no tokenizer files")
    refused(capsys, demo_home, ["dataset", "add", "demo", data, "--name", "t", "--tokenizer",
                                str(broken_models["a file"])], "not a model folder nor a .gguf file")


def test_damaged_model_artifact_is_refused(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                           tmp_path: Path) -> None:
    """The demo's own model artifact, damaged in the home: `run new` (which defaults to it) refuses."""
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    weights = demo_model(home) / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 100)
    with sqlite3.connect(home / "tunedeck.db") as conn:  # the copy's artifact rows still name the original
        conn.execute("UPDATE artifacts SET path = replace(path, ?, ?)", (str(demo_home), str(home)))
        conn.execute("UPDATE datasets SET path = replace(path, ?, ?)", (str(demo_home), str(home)))
    conn.close()
    refused(capsys, home, ["run", "new", "demo", "--preset", "smoke"], f"{weights}: truncated")
    refused(capsys, home, ["run", "new", "demo", "--model", "1"], f"{weights}: truncated")


@pytest.mark.slow
def test_model_broken_after_queueing_fails_the_job_cleanly(demo_home: Path, tmp_path: Path,
                                                           demo_model_dir: Path) -> None:
    """Broken between queueing and loading (only the engine can see it): each job ends `failed` with one line
    naming the model and what is wrong, no traceback in the error, no output, no artifact; the runner goes on."""
    from engine.train.config import apply_overrides
    from engine.train.presets import preset_config
    from engine.train.queue import queue_run
    from store.db import open_store
    from store.jobs import get_job

    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    with sqlite3.connect(home / "tunedeck.db") as conn:
        conn.execute("UPDATE datasets SET path = replace(path, ?, ?)", (str(demo_home), str(home)))
    conn.close()
    models = {name: tmp_path / name for name in ("cut", "garbled")}
    store = open_store(home)
    jobs = {}
    for name, folder in models.items():
        shutil.copytree(demo_model_dir, folder)
        cfg = apply_overrides(preset_config("smoke"), ["max_steps=2", f"model={folder}"])
        jobs[name] = queue_run(store, "demo", cfg, start=False)  # the CLI's own queueing, runner not started yet
    os.truncate(models["cut"] / "model.safetensors", 1000)
    (models["garbled"] / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    (models["garbled"] / "tokenizer.model").write_bytes(b"garbage")
    with store.read() as session:
        slot = get_job(session, jobs["cut"]).slot
    before = state(home)[1]["artifacts"]
    subprocess.run([sys.executable, "-m", "engine", "--home", str(home), "runner", "--slot", slot], check=True,
                   timeout=300, stdin=subprocess.DEVNULL, capture_output=True)
    expected = {"cut": f"{models['cut']}/model.safetensors: truncated",
                "garbled": f"cannot load the model {models['garbled']}: "}
    for name, job_id in jobs.items():
        with store.read() as session:
            job = get_job(session, job_id)
        assert job.status == "failed" and job.error.startswith(expected[name]), (name, job.error)
        assert "\n" not in job.error and "Traceback" not in job.error
        leftovers = [p.name for p in (home / "jobs" / str(job_id)).iterdir() if p.name != "job.log"]
        assert leftovers == [], leftovers
    assert state(home)[1]["artifacts"] == before
    store.close()


# ----------------------------------------------------------------------------- 3. GGUF files for chat


def _gguf_header(version: int = 3, tensors: int = 0, kvs: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def _no_tensor_gguf(path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(path, "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# Cases tests/test_cli_chat.py lacks (it covers a non-GGUF file, a truncated and a cut-header SmolLM2, an
# unknown architecture and a missing path).
GGUFS: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty file": (lambda p: p.write_bytes(b""), "is not a GGUF file"),
    "magic only": (lambda p: p.write_bytes(b"GGUF"), "cannot be read"),
    "absurd counts": (lambda p: p.write_bytes(_gguf_header(tensors=2**62, kvs=2**62)), "cannot be read"),
    "absurd string length": (lambda p: p.write_bytes(_gguf_header(kvs=1) + struct.pack("<Q", 2**60) + b"general"),
                             "cannot be read"),
    "unknown version": (lambda p: p.write_bytes(_gguf_header(version=999)), "version 999"),
    "no architecture": (lambda p: p.write_bytes(_gguf_header()), "has no general.architecture key"),
    "architecture but no tensors": (_no_tensor_gguf, "llama.cpp could not load"),
    "safetensors renamed": (lambda p: p.write_bytes(struct.pack("<Q", 2) + b"{}"), "is not a GGUF file"),
}


@pytest.mark.parametrize("case", list(GGUFS))
def test_chat_refuses_a_bad_gguf(capsys: pytest.CaptureFixture[str], demo_home: Path, tmp_path: Path,
                                 case: str) -> None:
    maker, message = GGUFS[case]
    path = tmp_path / "model.gguf"
    maker(path)
    refused(capsys, demo_home, ["chat", str(path), "--prompt", "hi", "--threads", "1"], path.name, message)


def test_chat_refuses_folders_and_non_gguf_artifacts(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                                     tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / name).write_bytes(_gguf_header())
    (tmp_path / "dir.gguf").mkdir()
    for args, message in [
        ([str(tmp_path / "none")], "holds no .gguf file"),
        ([str(tmp_path / "two")], "holds 2 .gguf files"),
        ([str(tmp_path / "dir.gguf")], "holds no .gguf file"),
        (["demo-llama"], "artifact 1 is a model; expected gguf or quant"),
        (["1", "--project", "demo"], "artifact 1 is a model; expected gguf or quant"),
    ]:
        refused(capsys, demo_home, ["chat", *args, "--prompt", "hi"], message)


def test_chat_bad_gguf_in_a_real_subprocess(demo_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(_gguf_header(tensors=2**62, kvs=2**62))
    refused_subprocess(demo_home, ["chat", str(path), "--prompt", "hi", "--threads", "1"], f"{path} looks like a GGUF")


# ----------------------------------------------------------------------------- 4. names

BAD_NAMES = {
    "slash": "a/b", "backslash": "a\\b", "dot-dot": "..", "SOH": "a\x01b", "newline": "a\nb",
    "escape": "a\x1b[31mred", "C1 CSI": "a\x9b31mred", "300 characters": "x" * 300,
}
REASON = re.compile(r"path separator|is not allowed|'\.' or '\.\.'|control character|single line of text|"
                    r"characters long; the limit is 64|at most 200 characters")


def _creations(home: Path, name: str) -> list[list[str]]:
    """Every command that gives something a name."""
    model = str(demo_model(home))
    data = str(home / "demo" / "demo-reverse-words.jsonl")
    return [
        ["project", "create", name],
        ["dataset", "add", "demo", data, "--name", name],
        ["run", "new", "demo", "--preset", "smoke", "--set", f"name={name}"],
        ["merge", "demo-llama", "--name", name],
        ["merge-models", "demo", model, model, "--method", "linear", "--base", model, "--name", name],
        ["convert", "demo-llama", "--name", name],
    ]


@pytest.mark.parametrize("which", list(BAD_NAMES))
def test_bad_names_are_refused_by_every_verb_that_names(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                                        which: str) -> None:
    for args in _creations(demo_home, BAD_NAMES[which]):
        err = refused(capsys, demo_home, args, "name")
        assert REASON.search(err), (args, err)


@pytest.mark.parametrize("which", list(BAD_NAMES))
def test_bad_names_in_lookups_are_shown_escaped(capsys: pytest.CaptureFixture[str], demo_home: Path,
                                                which: str) -> None:
    """Looking a bad name up says it is not there, printed so it cannot drive the terminal."""
    name = BAD_NAMES[which]
    for args in (["project", "show", name], ["project", "delete", name], ["dataset", "list", name],
                 ["dataset", "show", name], ["artifact", "show", name], ["artifact", "delete", name],
                 ["run", "list", name], ["convert", name], ["merge", name], ["chat", name, "--prompt", "hi"],
                 ["chat", "x.gguf", "--project", name, "--prompt", "hi"]):
        refused(capsys, demo_home, args)


def test_bad_names_in_a_real_subprocess(demo_home: Path) -> None:
    err = refused_subprocess(demo_home, ["project", "create", "a\x1b]0;owned\x07b"], "contains a control character")
    assert "\\x1b" in err
    refused_subprocess(demo_home, ["run", "new", "demo", "--set", "name=../../x"],
                       "--set: name: must not contain a path separator")
    refused_subprocess(demo_home, ["artifact", "show", "a\nb"], "no artifact named 'a\\nb'")
