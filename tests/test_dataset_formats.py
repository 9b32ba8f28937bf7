"""Dataset reading and normalizing: every source type, every format, and every error's exact text."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from engine.datasets.formats import (
    DataError,
    ImportCancelled,
    LoadResult,
    detect_format,
    error_category,
    load_examples,
    normalize,
)
from engine.datasets.readers import EXPECTED_FILES, SourceError, count_hint, iter_records, source_files
from engine.datasets.types import Location, RecordError

USER, BOT = {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}
CHAT = {"messages": [USER, BOT]}
ALPACA = {"instruction": "Add", "input": "2 and 2", "output": "4"}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative file names, so that error texts are exact."""
    monkeypatch.chdir(tmp_path)


def jsonl(name: str, *records: Any) -> str:
    """Write records (dicts, or raw lines as str/bytes) one per line; returns the name."""
    lines = [r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode() for r in records]
    Path(name).write_bytes(b"\n".join(lines) + b"\n")
    return name


def write_csv(name: str, rows: list[list[str]]) -> str:
    with open(name, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return name


def write_parquet(name: str, records: list[dict[str, Any]]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), name, row_group_size=2)
    return name


def data(result: LoadResult) -> list[dict[str, Any]]:
    return [e.data for e in result.examples]


def skipped(source: str, **kw: Any) -> tuple[LoadResult, list[str]]:
    result = load_examples(source, on_error="skip", **kw)
    return result, [str(e) for e in result.errors]


# --- formats and their normalized form ------------------------------------------------------------------


def test_alpaca_becomes_a_chat_with_input_and_system() -> None:
    second = {"instruction": "Hi", "output": "Yo", "input": ""}
    src = jsonl("a.jsonl", {**ALPACA, "system": "Be terse.", "extra": 1}, second)
    result = load_examples(src)
    assert result.format == "alpaca" and result.total == 2 and result.error_count == 0
    assert data(result) == [
        {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Add\n\n2 and 2"},
                      {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
    ]
    assert result.examples[1].location == Location("a.jsonl", 2) and result.examples[1].format == "alpaca"


def test_chat_keeps_role_and_content_only() -> None:
    messages = [{"role": "system", "content": "S"}, {**USER, "name": "x"}, BOT, {"role": "tool", "content": "42"},
                {"role": "assistant", "content": "It is 42."}]
    result = load_examples(jsonl("c.jsonl", {"messages": messages, "id": 7}))
    assert result.format == "chat"
    assert data(result) == [{"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}]


def test_sharegpt_maps_speakers_to_roles() -> None:
    convo = [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]
    result = load_examples(jsonl("s.jsonl", {"conversations": convo}))
    assert result.format == "sharegpt"
    assert data(result) == [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                                          {"role": "assistant", "content": "A"}]}]


def test_preference_strings_and_message_lists() -> None:
    prompt = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    src = jsonl("p.jsonl", {"prompt": "Q", "chosen": "good", "rejected": "bad"},
                {"prompt": prompt, "chosen": [{"role": "assistant", "content": "good"}], "rejected": "bad"})
    result = load_examples(src)
    assert result.format == "preference"
    assert data(result) == [
        {"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}],
         "rejected": [{"role": "assistant", "content": "bad"}]},
        {"prompt": prompt, "chosen": [{"role": "assistant", "content": "good"}],
         "rejected": [{"role": "assistant", "content": "bad"}]},
    ]


def test_text() -> None:
    result = load_examples(jsonl("t.jsonl", {"text": "once upon a time", "meta": {"a": 1}}))
    assert result.format == "text" and data(result) == [{"text": "once upon a time"}]


@pytest.mark.parametrize(("record", "fmt"), [
    ({"messages": [], "text": "x"}, "chat"), ({"conversations": []}, "sharegpt"),
    ({"prompt": "", "chosen": "", "rejected": ""}, "preference"),
    ({"instruction": "", "output": "", "text": ""}, "alpaca"),
    ({"text": ""}, "text"), ({"instruction": "x"}, None), ({}, None), ({"prompt": "x", "completion": "y"}, None),
])
def test_detect_format(record: dict[str, Any], fmt: str | None) -> None:
    assert detect_format(record) == fmt


def test_normalize_returns_every_problem() -> None:
    loc = Location("f.jsonl", 3)
    record = {"messages": [{"role": "bot", "content": ""}, {"role": "system", "content": 3}, "hi"]}
    problems = normalize(record, "chat", loc)
    assert [str(p) for p in problems] == [
        "f.jsonl:3: messages[0].role: unknown role 'bot', expected one of system, user, assistant, tool",
        "f.jsonl:3: messages[0].content: empty (expected a non-empty string)",
        "f.jsonl:3: messages[1].content: expected a string, got int",
        "f.jsonl:3: messages[2]: expected an object with role and content, got string",
        "f.jsonl:3: messages[1].role: a system message may only come first",
    ]
    assert normalize(CHAT, "chat", loc).data == CHAT  # type: ignore[union-attr]


def test_explicit_format_reports_its_missing_fields() -> None:
    with pytest.raises(DataError) as err:
        load_examples(jsonl("c.jsonl", CHAT), fmt="alpaca")
    missing = "missing (expected a non-empty string)"
    assert err.value.errors == [RecordError(Location("c.jsonl", 1), "instruction", missing),
                                RecordError(Location("c.jsonl", 1), "output", missing)]


# --- source types ---------------------------------------------------------------------------------------


def test_json_array_rows() -> None:
    Path("d.json").write_text(json.dumps([ALPACA, 3, ALPACA]))
    result, errors = skipped("d.json")
    assert len(result.examples) == 2 and result.examples[1].location == Location("d.json", 3, "row")
    assert errors == ["d.json: row 2: expected a JSON object, got int"]


def test_json_file_holding_json_lines_is_read_as_lines() -> None:
    result = load_examples(jsonl("lines.json", ALPACA, ALPACA))
    assert len(result.examples) == 2 and result.examples[1].location == Location("lines.json", 2)


@pytest.mark.parametrize(("text", "message"), [
    ('{"train": [\n{"text": "a"}], "test": []}', "d.json: expected a JSON array of records, or an object holding "
                                                 "one list of them; this object holds lists under train, test"),
    ('{\n"version": 1\n}', "d.json: expected a JSON array of records, or an object holding one list of them; this "
                       "object holds no list (keys: version)"),
    ('"text"', "d.json: expected a JSON array of objects at the top level, got string"),
    ('[{"text": "a"},\n {"text": "b" x}]', "d.json:2: invalid JSON: expecting ',' delimiter at column 15"),
    ('[{"text": "a"}', "d.json:1: invalid JSON: expecting ',' or ']' after an array element at column 15"),
    ('[{"text": "a"}] []', "d.json:1: invalid JSON: extra data after the top-level array at column 17"),
    ("  \n", "d.json: the file is empty"),
])
def test_json_whole_file_problems(text: str, message: str) -> None:
    Path("d.json").write_text(text)
    with pytest.raises(SourceError) as err:
        load_examples("d.json")
    assert str(err.value) == message


def test_csv_alpaca_and_chat_with_json_cells() -> None:
    write_csv("a.csv", [["instruction", "input", "output", ""], ["Add", "", "4", "0"], ["Sub", "3 - 1", "2", "1"]])
    result = load_examples("a.csv")
    assert result.format == "alpaca" and result.examples[1].location == Location("a.csv", 2, "row")
    assert data(result)[1]["messages"][0] == {"role": "user", "content": "Sub\n\n3 - 1"}
    write_csv("c.csv", [["messages", "note"], [json.dumps([USER, BOT]), "[not json"]])
    assert data(load_examples("c.csv")) == [CHAT]
    write_csv("p.csv", [["prompt", "chosen", "rejected"], ["[INST] q", json.dumps([BOT]), "no"]])
    assert data(load_examples("p.csv"))[0]["prompt"] == [{"role": "user", "content": "[INST] q"}]


def test_csv_quoted_newlines_and_blank_lines() -> None:
    Path("n.csv").write_bytes(b'\xef\xbb\xbftext\r\n"line one\r\nline two"\r\n\r\nthird\r\n')
    result = load_examples("n.csv")
    assert data(result) == [{"text": "line one\r\nline two"}, {"text": "third"}]
    assert result.examples[1].location == Location("n.csv", 2, "row")


def test_parquet_row_groups_and_nested_messages() -> None:
    records = [{"messages": [USER, {"role": "assistant", "content": f"answer {i}"}]} for i in range(5)]
    result = load_examples(write_parquet("c.parquet", records))
    assert data(result) == records and result.examples[4].location == Location("c.parquet", 5, "row")
    assert count_hint("c.parquet") == 5


def test_parquet_with_json_text_column() -> None:
    write_parquet("j.parquet", [{"messages": json.dumps([USER, BOT])}])
    assert data(load_examples("j.parquet")) == [CHAT]


def test_directory_reads_its_data_files_in_order() -> None:
    d = Path("dir")
    d.mkdir()
    jsonl("dir/b.jsonl", {"text": "b"})
    Path("dir/a.json").write_text(json.dumps([{"text": "a"}]))
    write_csv("dir/c.csv", [["text"], ["c"]])
    jsonl("dir/.hidden.jsonl", {"text": "hidden"})
    Path("dir/README.md").write_text("about")
    (d / "sub").mkdir()
    assert source_files("dir") == [Path("dir/a.json"), Path("dir/b.jsonl"), Path("dir/c.csv")]
    result = load_examples("dir")
    assert data(result) == [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert [str(e.location) for e in result.examples] == ["dir/a.json: row 1", "dir/b.jsonl:1", "dir/c.csv: row 1"]
    assert count_hint("dir") is None  # the JSON array has no cheap count
    Path("dir/a.json").unlink()
    assert count_hint("dir") == 2


def test_mixed_formats_across_files_name_the_file_that_set_the_format() -> None:
    Path("dir").mkdir()
    jsonl("dir/a.jsonl", CHAT)
    jsonl("dir/b.jsonl", ALPACA)
    _, errors = skipped("dir")
    assert errors == ["dir/b.jsonl:1: mixed formats: this record looks like alpaca, dir/a.jsonl is chat"]


def test_saved_dataset_directory() -> None:
    import datasets

    datasets.Dataset.from_list([ALPACA, ALPACA]).save_to_disk("saved")
    result = load_examples("saved")
    assert result.format == "alpaca" and len(result.examples) == 2
    assert str(result.examples[1].location) == "saved: row 2"


def test_count_hint_and_iter_records() -> None:
    jsonl("a.jsonl", ALPACA, "", ALPACA)
    Path("b.jsonl").write_text(json.dumps(ALPACA))  # no final newline
    write_csv("c.csv", [["text"], ["x"], ["y"]])
    assert (count_hint("a.jsonl"), count_hint("b.jsonl"), count_hint("c.csv")) == (3, 1, 2)
    assert count_hint("missing.jsonl") is None
    assert [loc.line for loc, _ in iter_records("a.jsonl")] == [1, 3]


# --- whole-source errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("setup", "source", "message"), [
    (None, "missing.jsonl", "missing.jsonl: no such file or directory"),
    (None, "missing.txt", "missing.txt: no such file or directory"),
    ("data.xlsx", "data.xlsx", f"data.xlsx: unknown file type '.xlsx', expected {EXPECTED_FILES}"),
    ("data.parquet.gz", "data.parquet.gz", "data.parquet.gz: a gzipped Parquet file; Parquet compresses itself, "
                                           "so give the .parquet file"),
    ("notjson.gz", "notjson.gz", "notjson.gz: cannot tell what this gzip file holds; name it .jsonl.gz, .json.gz, "
                                 ".csv.gz or .txt.gz"),
    ("broken.jsonl.gz", "broken.jsonl.gz", "broken.jsonl.gz: not a readable gzip file"),
    ("empty.jsonl", "empty.jsonl", "empty.jsonl: the file is empty"),
    ("bad.parquet", "bad.parquet", "bad.parquet: not a readable Parquet file"),
    ("emptydir/notes.xlsx", "emptydir", f"emptydir: no {EXPECTED_FILES} files in this directory"),
    ("dup.csv", "dup.csv", "dup.csv: the header names column 'a' twice"),
    ("badhead.csv", "badhead.csv", "badhead.csv:1: invalid UTF-8 in the header (byte 0xff at column 2)"),
])
def test_source_errors(setup: str | None, source: str, message: str) -> None:
    contents = {"data.xlsx": b"x", "empty.jsonl": b"", "bad.parquet": b"not parquet at all",
                "emptydir/notes.xlsx": b"x", "data.parquet.gz": b"x", "notjson.gz": gzip.compress(b"a,b\n1,2\n"),
                "broken.jsonl.gz": b"\x1f\x8bxx",
                "dup.csv": b"a,b,a\n1,2,3\n", "badhead.csv": b"t\xffext\nx\n"}
    if setup:
        Path(setup).parent.mkdir(exist_ok=True)
        Path(setup).write_bytes(contents[setup])
    with pytest.raises(SourceError) as err:
        load_examples(source)
    assert str(err.value).startswith(message)


def test_hub_id_offline_without_cache_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(SourceError) as err:
        load_examples("someone/not-cached:default:train")
    text = str(err.value)
    assert text.startswith("cannot load Hugging Face dataset 'someone/not-cached:default:train': ")
    assert "HF_HUB_OFFLINE is set" in text and "Traceback" not in text and "\n" not in text
    assert source_files("someone/not-cached") == [] and count_hint("someone/not-cached") is None


# --- record errors: exact text, fail and skip -----------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [
    ("invalid JSON", "d.jsonl:2: invalid JSON: expecting ',' delimiter at column 21"),
    ("truncated JSON", "d.jsonl:2: invalid JSON: unterminated string starting at column 17"),
    ("not an object", "d.jsonl:2: expected a JSON object, got list"),
    ("invalid UTF-8", "d.jsonl:2: invalid UTF-8 (byte 0xff at column 18)"),
    ("NaN", "d.jsonl:2: output: expected a string, got float"),
    ("missing field", "d.jsonl:2: output: missing (expected a non-empty string)"),
    ("wrong type", "d.jsonl:2: instruction: expected a string, got int"),
    ("null", "d.jsonl:2: output: expected a string, got null"),
    ("empty content", "d.jsonl:2: output: only whitespace (expected a non-empty string)"),
    ("mixed formats", "d.jsonl:2: mixed formats: this record looks like text, the file is alpaca"),
])
def test_alpaca_file_record_errors(name: str, message: str) -> None:
    second = {
        "invalid JSON": b'{"instruction": "a" "b"}', "truncated JSON": b'{"instruction": "a',
        "not an object": b"[1, 2]",
        "invalid UTF-8": b'{"instruction": "\xff", "output": "y"}', "NaN": b'{"instruction": "x", "output": NaN}',
        "missing field": {"instruction": "x"}, "wrong type": {"instruction": 5, "output": "y"},
        "null": {"instruction": "x", "output": None}, "empty content": {"instruction": "x", "output": " \n"},
        "mixed formats": {"text": "t"},
    }[name]
    check_fail_and_skip(jsonl("d.jsonl", ALPACA, second, ALPACA), [message])


CHAT_CASES = [
    ([USER, {"role": "bot", "content": "x"}],
     ["messages[1].role: unknown role 'bot', expected one of system, user, assistant, tool"]),
    ([{"role": "User", "content": "x"}, BOT],
     ["messages[0].role: unknown role 'User' (names are lower case), expected one of system, user, assistant, tool"]),
    ([USER, {"content": "x"}], ["messages[1].role: missing (expected one of system, user, assistant, tool)"]),
    ([USER, {"role": "assistant", "content": ""}], ["messages[1].content: empty (expected a non-empty string)"]),
    ([USER, {"role": "assistant", "content": [{"type": "text"}]}],
     ["messages[1].content[0].text: missing (expected a non-empty string)"]),
    ([USER, {"role": "assistant", "content": {"text": "x"}}], ["messages[1].content: expected a string, got object"]),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]}, BOT],
     ["messages[0].content[0].type: multimodal content part (image_url): tunedeck imports text only"]),
    ([USER, BOT, {"role": "system", "content": "late"}], ["messages[2].role: a system message may only come first"]),
    ([{"role": "system", "content": "S"}, BOT, USER, BOT],
     ["messages[1].role: the conversation must start with a user message, got assistant"]),
    ([USER], ["messages: no assistant message to learn from"]),
    ([], ["messages: empty (expected at least one message)"]),
    ("hi", ["messages: expected a list of messages, got string"]),
    ([USER, 3], ["messages[1]: expected an object with role and content, got int"]),
]


@pytest.mark.parametrize(("messages", "expected"), CHAT_CASES)
def test_chat_record_errors(messages: Any, expected: list[str]) -> None:
    check_fail_and_skip(jsonl("d.jsonl", CHAT, {"messages": messages}), [f"d.jsonl:2: {e}" for e in expected])


@pytest.mark.parametrize(("turns", "expected"), [
    ([{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}],
     ["conversations[1].from: unknown speaker 'bot', expected one of human, gpt, system, function_call, "
      "observation"]),
    ([{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "b"}],
     ["conversations[0].from: the conversation must start with a human message, got gpt"]),
    ([{"from": "human", "value": "q"}], ["conversations: no gpt message to learn from"]),
    ([{"from": "human", "value": "q"}, {"from": "gpt"}],
     ["conversations[1].value: missing (expected a non-empty string)"]),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}, {"from": "system", "value": "s"}],
     ["conversations[2].from: a system message may only come first"]),
])
def test_sharegpt_record_errors(turns: list[dict[str, str]], expected: list[str]) -> None:
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    check_fail_and_skip(jsonl("d.jsonl", good, {"conversations": turns}), [f"d.jsonl:2: {e}" for e in expected])


@pytest.mark.parametrize(("record", "expected"), [
    ({"prompt": "q", "chosen": "same", "rejected": "same"},
     ["rejected: identical to chosen (a preference pair needs two different responses)"]),
    ({"prompt": "q", "chosen": [BOT], "rejected": "Hello!"},
     ["rejected: identical to chosen (a preference pair needs two different responses)"]),
    ({"prompt": "q", "chosen": "a"}, ["rejected: missing (expected a string or a list of messages)"]),
    ({"prompt": 1, "chosen": "", "rejected": "b"},
     ["prompt: expected a string or a list of messages, got int", "chosen: empty (expected a non-empty string)"]),
    ({"prompt": [USER], "chosen": [USER, BOT], "rejected": "b"},
     ["rejected: the conversation before the last assistant turn differs from chosen's (expected a shared prompt)"]),
    ({"prompt": "other", "chosen": [USER, BOT], "rejected": [USER, {"role": "assistant", "content": "b"}]},
     ["prompt: differs from the conversation before chosen's last assistant turn"]),
    ({"chosen": [USER, BOT, USER], "rejected": [USER, {"role": "assistant", "content": "b"}]},
     ["chosen[2].role: nothing may follow the last assistant message (it is the completion)"]),
    ({"chosen": "a", "rejected": "b"},
     ["prompt: missing (expected a string or a list of messages, or chosen/rejected conversations that hold the "
      "prompt)"]),
    ({"prompt": [USER, BOT], "chosen": "a", "rejected": "b"},
     ["prompt[1].role: the prompt must end with a user message, got assistant"]),
    ({"prompt": [{"role": "system", "content": "s"}], "chosen": "a", "rejected": "b"},
     ["prompt[0].role: the prompt must end with a user message, got system"]),
])
def test_preference_record_errors(record: dict[str, Any], expected: list[str]) -> None:
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    check_fail_and_skip(jsonl("d.jsonl", good, record), [f"d.jsonl:2: {e}" for e in expected])


def test_text_and_unrecognized_record_errors() -> None:
    check_fail_and_skip(jsonl("d.jsonl", {"text": "t"}, {"text": ["a"]}),
                        ["d.jsonl:2: text: expected a string, got list"])
    check_fail_and_skip(jsonl("e.jsonl", {"text": "t"}, {"other": 1}),
                        ["e.jsonl:2: text: missing (expected a non-empty string)"])
    with pytest.raises(DataError) as err:
        load_examples(jsonl("u.jsonl", {"question": "q", "answer": "a"}, {}), on_error="skip")
    expected = ("expected messages (chat), conversations (sharegpt), prompt+chosen+rejected or chosen+rejected "
                "conversations (preference), messages/completion+label or kto_tag (kto), segments (input_output), "
                "instruction+output (alpaca) or text (text)")
    assert [str(e) for e in err.value.errors] == [
        f"u.jsonl:1: unrecognized record with keys question, answer; {expected}",
        f"u.jsonl:2: unrecognized record with no keys; {expected}",
    ]
    assert str(err.value).startswith("no valid examples in u.jsonl (2 errors in 2 of 2 records):\n  u.jsonl:1: ")


@pytest.mark.parametrize(("raw", "message", "category"), [
    (b'text,n\nok,1\nbad,1,2\nok,2\n', "d.csv: row 2: expected 2 fields as in the header, got 3 (line 3)",
     "wrong field count"),
    (b'text,n\nok,1\nbad\nok,2\n', "d.csv: row 2: expected 2 fields as in the header, got 1 (line 3)",
     "wrong field count"),
    (b'text,n\nok,1\n"multi\nline,1\nok,2\n',
     "d.csv: row 2: malformed CSV: a quoted field is not closed by the end of the file (lines 3-5)",
     "malformed CSV"),
    (b'text,n\nok,1\nb\xffd,1\nok,2\n', "d.csv: row 2: invalid UTF-8 on line 3 (byte 0xff at column 2)",
     "invalid UTF-8"),
    (b'text,n\nok,1\n"bad"x,1\nok,2\n', "d.csv: row 2: malformed CSV: ',' expected after '\"' (line 3)",
     "malformed CSV"),
    (b'text,n\nok,1\n,1\nok,2\n', "d.csv: row 2: text: empty (expected a non-empty string)", "empty content"),
])
def test_csv_record_errors(raw: bytes, message: str, category: str) -> None:
    Path("d.csv").write_bytes(raw)
    result = check_fail_and_skip("d.csv", [message])
    assert result.dropped == {category: 1}


def test_csv_invalid_json_cell() -> None:
    write_csv("d.csv", [["messages"], [json.dumps([USER, BOT])], ['[{"role": "user"']])
    check_fail_and_skip("d.csv",
                        ["d.csv: row 2: messages: invalid JSON in the cell: expecting ',' delimiter at column 17"])


def check_fail_and_skip(source: str, messages: list[str]) -> LoadResult:
    """`fail` raises DataError listing MESSAGES; `skip` keeps the other rows and drops one record."""
    with pytest.raises(DataError) as err:
        load_examples(source)
    assert [str(e) for e in err.value.errors] == messages
    assert err.value.error_count == len(messages)
    assert str(err.value).splitlines()[1:] == [f"  {m}" for m in messages]
    result, errors = skipped(source)
    assert errors == messages and result.error_count == len(messages)
    assert sum(result.dropped.values()) == 1 and len(result.examples) == result.total - 1
    assert list(result.dropped) == [error_category(err.value.errors[0])]
    return result


def test_fail_message_counts_and_truncates() -> None:
    src = jsonl("d.jsonl", CHAT, *([b"nope"] * 5), {"messages": [USER]})
    with pytest.raises(DataError) as err:
        load_examples(src, max_errors=3)
    assert str(err.value) == (
        "d.jsonl: 6 errors in 6 of 7 records:\n"
        "  d.jsonl:2: invalid JSON: expecting value at column 1\n"
        "  d.jsonl:3: invalid JSON: expecting value at column 1\n"
        "  d.jsonl:4: invalid JSON: expecting value at column 1\n"
        "  ... and 3 more errors"
    )
    assert len(err.value.errors) == 3 and err.value.error_count == 6
    result = load_examples(src, on_error="skip", max_errors=3)
    assert result.dropped == {"invalid JSON": 5, "no assistant turn": 1} and len(result.errors) == 3
    assert result.error_count == 6 and result.total == 7 and len(result.examples) == 1


def test_no_valid_examples_and_no_records() -> None:
    jsonl("blank.jsonl", "", "  ")
    with pytest.raises(DataError, match=r"^no valid examples in blank.jsonl: it holds no records$"):
        load_examples("blank.jsonl", on_error="skip")
    Path("empty.json").write_text("[]")
    with pytest.raises(DataError, match=r"^no valid examples in empty.json: it holds no records$"):
        load_examples("empty.json")


def test_bad_arguments() -> None:
    jsonl("d.jsonl", CHAT)
    with pytest.raises(DataError, match="unknown format 'csv'"):
        load_examples("d.jsonl", fmt="csv")
    with pytest.raises(DataError, match="unknown on-error policy 'ignore'"):
        load_examples("d.jsonl", on_error="ignore")


def test_progress_and_cancel() -> None:
    jsonl("big.jsonl", *([{"text": "x"}] * 2500))
    seen: list[int] = []
    assert load_examples("big.jsonl", progress=seen.append).total == 2500
    assert seen == [1000, 2000, 2500]
    calls: list[int] = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) == 2

    with pytest.raises(ImportCancelled, match="cancelled after 2000 records"):
        load_examples("big.jsonl", should_stop=stop)


def test_surrogate_escapes_are_invalid() -> None:
    check_fail_and_skip(jsonl("d.jsonl", {"text": "ok"}, b'{"text": "\\ud800"}'),
                        ["d.jsonl:2: invalid JSON: a \\u escape is an unpaired surrogate, which is not valid Unicode"])
    assert data(load_examples(jsonl("e.jsonl", b'{"text": "\\ud83d\\ude00"}'))) == [{"text": "\U0001f600"}]


def test_deep_nesting_and_huge_numbers_are_record_errors() -> None:
    deep = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    huge = b'{"text": ' + b"9" * 5000 + b"}"
    _, errors = skipped(jsonl("d.jsonl", {"text": "ok"}, deep, huge))
    assert errors[0] == "d.jsonl:2: invalid JSON: nested too deeply"
    assert errors[1].startswith("d.jsonl:3: invalid JSON: ")


# --- the layouts beyond plain chat (fixtures of each public layout: test_dataset_layouts.py) ---------------------


def test_alpaca_style_ranking_and_role_content_sharegpt() -> None:
    ranking = {"instruction": "Pick a colour", "input": "for a bike", "chosen": "Red", "rejected": "Invisible"}
    result = load_examples(jsonl("r.jsonl", ranking))
    assert result.format == "preference" and data(result) == [{
        "prompt": [{"role": "user", "content": "Pick a colour\n\nfor a bike"}],
        "chosen": [{"role": "assistant", "content": "Red"}],
        "rejected": [{"role": "assistant", "content": "Invisible"}]}]
    convo = {"conversations": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    assert data(load_examples(jsonl("s.jsonl", convo))) == [{"messages": [USER | {"content": "Q"},
                                                                          BOT | {"content": "A"}]}]


@pytest.mark.parametrize(("record", "expected"), [
    ({"messages": [USER, BOT], "label": "yes"},
     ["label: expected true (a desirable completion) or false (an undesirable one), got string 'yes'"]),
    ({"messages": [USER], "label": True}, ["messages: no assistant message to learn from"]),
    ({"messages": [USER, BOT, USER], "label": True},
     ["messages[2].role: nothing may follow the last assistant message (it is the completion)"]),
    ({"completion": "a", "label": True}, ["prompt: missing (expected a string or a list of messages)"]),
])
def test_kto_record_errors(record: dict[str, Any], expected: list[str]) -> None:
    good = {"messages": [USER, BOT], "label": False}
    check_fail_and_skip(jsonl("d.jsonl", good, record), [f"d.jsonl:2: {e}" for e in expected])


@pytest.mark.parametrize(("record", "expected"), [
    ({"messages": [USER, BOT], "tools": "[{"}, ["tools: not valid JSON (expecting property name enclosed in double "
                                               "quotes); expected a list of tool schemas"]),
    ({"messages": [USER, BOT], "tools": [{"description": "no name"}]},
     ['tools[0]: expected a tool schema with a name (an object like {"name": ..., "parameters": {...}})']),
    ({"messages": [USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}]},
     ["messages[1].tool_calls[0].arguments: not valid JSON (expected a JSON object of arguments)"]),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "f(x)"},
                        {"from": "gpt", "value": "a"}]},
     ['conversations[1].value: not valid JSON (a function_call turn holds the call as JSON: {"name": ..., '
      '"arguments": {...}})']),
    ({"segments": [{"label": False, "text": "only context"}]}, ["segments: no segment with label true to learn from"]),
    ({"segments": [{"label": 1, "text": "x"}]}, ["segments[0].label: expected true (trained on) or false (context "
                                                 "only)"]),
    ({"messages": [USER, BOT], "videos": ["a.mp4"]},
     ["videos: multimodal record (videos holds 1 item(s)): tunedeck imports text only; remove the 'videos' column "
      "or these records"]),
])
def test_tool_segment_and_media_errors(record: dict[str, Any], expected: list[str]) -> None:
    good = {"chat": CHAT, "input_output": {"segments": [{"label": True, "text": "x"}]},
            "sharegpt": {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}}
    check_fail_and_skip(jsonl("d.jsonl", good[detect_format(record)], record), [f"d.jsonl:2: {e}" for e in expected])
