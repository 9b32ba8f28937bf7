"""Fuzzing the dataset reader: whatever the bytes, `load_examples` returns valid examples or raises a
located DataError / SourceError, never anything else."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.datasets.formats import DataError, LoadResult, load_examples
from engine.datasets.readers import SourceError
from engine.datasets.types import ROLES, kind_of

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- strategies -----------------------------------------------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(["", " ", "\n", "hi", "Hello!", "\x00", "\ud800", "日本", "[", "{}"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from([*ROLES, "human", "gpt", "bot", "User", ""]) | json_values
message = st.fixed_dictionaries({}, optional={"role": roles, "content": texts | json_values, "from": roles,
                                              "value": texts | json_values})
messages = st.lists(message, max_size=5) | json_values
KEYS = ["messages", "conversations", "prompt", "chosen", "rejected", "instruction", "input", "output", "system", "text"]
records = st.dictionaries(st.sampled_from(KEYS), texts | messages, max_size=5) | json_values


@st.composite
def plausible_records(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid records of one format, so that the valid path is exercised too."""
    fmt = draw(st.sampled_from(["chat", "sharegpt", "alpaca", "preference", "text"]))
    word = draw(st.sampled_from(["hi", "Hello!", "2 + 2", "日本語"]))
    if fmt == "chat":
        return {"messages": [{"role": "user", "content": word}, {"role": "assistant", "content": word + "!"}]}
    if fmt == "sharegpt":
        return {"conversations": [{"from": "human", "value": word}, {"from": "gpt", "value": word}]}
    if fmt == "alpaca":
        return {"instruction": word, "input": draw(st.sampled_from(["", "ctx"])), "output": word}
    if fmt == "preference":
        return {"prompt": word, "chosen": word + " yes", "rejected": word + " no"}
    return {"text": word}


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """DATA truncated, with bytes flipped, inserted or deleted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "truncate":
            del out[at:]
        elif op == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b"\n", b'"', b",", b"\xff", b"{"]))
        elif out:
            del out[at]
    return bytes(out)


def jsonl_bytes(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n" for r in rows)


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow([c if isinstance(c, str) else json.dumps(c) for c in row])
    return buf.getvalue().encode("utf-8", "surrogatepass")


# --- the property ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def check(path: Path, content: bytes, on_error: str = "skip") -> None:
    """Loading CONTENT from PATH gives valid examples or a located DataError / SourceError."""
    path.write_bytes(content)
    try:
        result = load_examples(path, on_error=on_error, max_errors=5)
    except DataError as e:
        event(f"{path.suffix}: DataError")
        assert str(e).strip()
        assert all(err.location.file == str(path) and err.location.line >= 1 for err in e.errors)
        assert e.error_count >= len(e.errors)
        return
    except SourceError as e:
        event(f"{path.suffix}: SourceError")
        assert str(e).startswith(str(path))
        return
    event(f"{path.suffix}: examples")
    check_result(result, path)


def check_result(result: LoadResult, path: Path) -> None:
    assert result.examples and result.total >= len(result.examples) + sum(result.dropped.values())
    assert result.error_count >= len(result.errors)
    for example in result.examples:
        assert example.location.file == str(path) and example.format == result.format
        check_example(example.data, kind_of(result.format))
        json.dumps(example.data, ensure_ascii=False).encode("utf-8")  # writable as a snapshot line


def check_example(data: dict[str, Any], kind: str) -> None:
    if kind == "text":
        assert list(data) == ["text"] and is_text(data["text"])
    elif kind == "sft":
        assert list(data) == ["messages"]
        check_turns(data["messages"])
        assert "assistant" in [m["role"] for m in data["messages"]]
    else:
        assert list(data) == ["prompt", "chosen", "rejected"] and data["chosen"] != data["rejected"]
        check_turns(data["prompt"])
        assert data["prompt"][-1]["role"] == "user"
        for side in ("chosen", "rejected"):
            assert data[side] and all(m["role"] == "assistant" and is_text(m["content"]) for m in data[side])


def check_turns(msgs: list[dict[str, Any]]) -> None:
    assert msgs and all(list(m) == ["role", "content"] and m["role"] in ROLES and is_text(m["content"]) for m in msgs)
    assert all(m["role"] != "system" for m in msgs[1:])
    rest = msgs[1:] if msgs[0]["role"] == "system" else msgs
    assert rest and rest[0]["role"] == "user"


def is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# --- the fuzz tests -------------------------------------------------------------------------------------


@FUZZ
@given(rows=st.lists(records | plausible_records(), min_size=1, max_size=6), on_error=st.sampled_from(["fail", "skip"]))
def test_random_json_records(workdir: Path, rows: list[Any], on_error: str) -> None:
    check(workdir / "r.jsonl", jsonl_bytes(rows), on_error)
    check(workdir / "r.json", json.dumps(rows, ensure_ascii=False).encode("utf-8", "surrogatepass"), on_error)


@FUZZ
@given(data=st.data(), rows=st.lists(plausible_records() | records, min_size=1, max_size=5))
def test_corrupted_jsonl_and_json(workdir: Path, data: st.DataObject, rows: list[Any]) -> None:
    check(workdir / "c.jsonl", data.draw(corrupted(jsonl_bytes(rows))))
    check(workdir / "c.json", data.draw(corrupted(json.dumps(rows).encode())))


@FUZZ
@given(data=st.data(), rows=st.lists(plausible_records(), min_size=1, max_size=5))
def test_corrupted_csv(workdir: Path, data: st.DataObject, rows: list[dict[str, Any]]) -> None:
    header = sorted({k for r in rows for k in r})
    table = [[r.get(k, "") for k in header] for r in rows]
    check(workdir / "c.csv", data.draw(corrupted(csv_bytes(header, table))))


@FUZZ
@given(header=st.lists(st.sampled_from(KEYS) | texts, min_size=1, max_size=4),
       rows=st.lists(st.lists(texts | messages, max_size=5), max_size=5))
def test_random_csv_tables(workdir: Path, header: list[str], rows: list[list[Any]]) -> None:
    check(workdir / "t.csv", csv_bytes(header, rows))


@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
def test_random_bytes(workdir: Path, content: bytes, suffix: str) -> None:
    check(workdir / f"b{suffix}", content)


@FUZZ
@given(depth=st.integers(1, 3000), opener=st.sampled_from(["[", "{\"a\":", '{"messages":[']))
def test_nested_garbage(workdir: Path, depth: int, opener: str) -> None:
    check(workdir / "n.jsonl", (opener * depth).encode() + b"\n" + jsonl_bytes([{"text": "ok"}]))
