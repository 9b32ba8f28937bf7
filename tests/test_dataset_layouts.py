"""Public dataset layouts, each as a small fixture of our own records in tests/fixtures/datasets/, imported
through the real import job (store row, snapshot on disk, lint report) and the normalized snapshot checked:
what each layout becomes, and that every field the importer does not use is named in the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.datasets.formats import DataError, load_examples
from engine.datasets.lint_report import format_report

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
U, A, S, T = "user", "assistant", "system", "tool"


def m(role: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


def call(name: str, arguments: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id:
        out["id"] = call_id
    return out


@pytest.fixture
def imported(store: Any):
    """Import a fixture with the real job handler (in this process) and return its row, snapshot and report."""
    from engine.datasets.importer import run_import_job
    from engine.jobctx import JobContext
    from store.jobs import create_job
    from store.models import Dataset
    from store.projects import create_project

    with store.write() as session:
        pid = create_project(session, "p").id

    def run(name: str, **options: Any) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
        config = {"project_id": pid, "source": str(FIXTURES / name), "name": name.split(".")[0],
                  "val_fraction": 0.0, "dedup": "none", **options}
        with store.write() as session:
            job_id = create_job(session, pid, "dataset-import", config, name=config["name"], slot="data").id
        folder = store.home / "jobs" / str(job_id)
        folder.mkdir(parents=True)
        run_import_job(JobContext(store, job_id, config, folder))
        dataset_id = _dataset_id(store, job_id)
        with store.read() as session:
            row = session.get(Dataset, dataset_id)
        snap = Path(row.path)
        rows = [json.loads(line) for line in (snap / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        report = json.loads((snap / "report.json").read_text(encoding="utf-8"))
        return row, rows, report

    return run


def _dataset_id(store: Any, job_id: int) -> int:
    from store.jobs import get_job

    with store.read() as session:
        return int(get_job(session, job_id).result["dataset_id"])


def _without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert [r["id"] for r in rows] == list(range(len(rows)))
    return [{k: v for k, v in r.items() if k != "id"} for r in rows]


def _unused(report: dict[str, Any]) -> dict[str, int]:
    return report["fields"]["unused"]


def test_alpaca_with_system_and_history(imported: Any) -> None:
    row, rows, report = imported("alpaca.json")
    assert row.format == "alpaca" and row.num_train == 6
    data = _without_ids(rows)
    assert data[0] == {"messages": [m(U, "Name the largest planet in the solar system."), m(A, "Jupiter.")]}
    assert data[1]["messages"][0] == m(U, "Translate to French.\n\nGood morning")
    assert data[3]["messages"][0] == m(S, "Answer briefly.")
    assert data[4] == {"messages": [m(U, "What is the boiling point of water at sea level in Celsius?"),
                                    m(A, "100 degrees Celsius."), m(U, "And in Fahrenheit?"),
                                    m(A, "212 degrees Fahrenheit.")]}
    assert _unused(report) == {}


def test_sharegpt_with_system_column(imported: Any) -> None:
    row, rows, report = imported("sharegpt.json")
    assert row.format == "sharegpt" and row.num_train == 5
    data = _without_ids(rows)
    assert data[1] == {"messages": [m(S, "You are a calculator."), m(U, "What is 12 times 12?"), m(A, "144."),
                                    m(U, "And 13 times 13?"), m(A, "169.")]}
    assert data[2]["messages"][0] == m(S, "Reply in one word.")
    assert _unused(report) == {}


def test_llamafactory_ranking_is_preference(imported: Any) -> None:
    row, rows, report = imported("llamafactory_ranking.json")
    assert row.format == "preference" and row.num_train == 5 and report["kind"] == "preference"
    data = _without_ids(rows)
    assert data[0] == {"prompt": [m(U, "Suggest a name for a grey cat.")], "chosen": [m(A, "How about Smokey?")],
                       "rejected": [m(A, "Cats do not need names.")]}
    assert data[3]["prompt"] == [m(U, "Hello!"), m(A, "Hi, how can I help?"), m(U, "Tell me a fun fact.")]
    assert data[4]["prompt"] == [m(S, "Be exact."), m(U, "What is 2 + 2?")]
    assert _unused(report) == {}
    assert any(c["check"] == "preference pairs" and c["status"] == "ok" for c in report["checklist"])


@pytest.mark.parametrize("name", ["llamafactory_kto.json", "sharegpt_kto_tag.json", "kto.jsonl"])
def test_kto_layouts(imported: Any, name: str) -> None:
    row, rows, report = imported(name)
    assert row.format == "kto" and report["kind"] == "kto"
    data = _without_ids(rows)
    for r in data:
        assert set(r) == {"prompt", "completion", "label"} and isinstance(r["label"], bool)
        assert r["prompt"][-1]["role"] == U and [x["role"] for x in r["completion"]] == [A]
    labels = [r["label"] for r in data]
    assert report["structure"]["labels"] == {"desirable": labels.count(True), "undesirable": labels.count(False)}
    assert any(c["check"] == "kto labels" and c["status"] == "ok" for c in report["checklist"])
    if name == "llamafactory_kto.json":  # the label: false answer is never an SFT target: it is a completion
        assert data[1] == {"prompt": [m(U, "How do I boil an egg?")],
                           "completion": [m(A, "Put it in the microwave for ten minutes.")], "label": False}
        assert data[4]["prompt"] == [m(U, "Hi"), m(A, "Hello!"), m(U, "Recommend a book.")]
    if name == "kto.jsonl":
        assert data[0] == {"prompt": [m(U, "Write a greeting.")], "completion": [m(A, "Hello, nice to meet you!")],
                           "label": True}
        assert _unused(report) == {"source": 2}
        assert any(c["check"] == "fields used" and "source (2)" in c["detail"] for c in report["checklist"])


def test_axolotl_chat_template_reports_per_message_weights(imported: Any) -> None:
    row, rows, report = imported("axolotl_chat_template.jsonl")
    assert row.format == "chat" and row.num_train == 5
    data = _without_ids(rows)
    assert data[2]["messages"][1] == m(A, "B")  # the weight is not applied ...
    assert _unused(report) == {"messages[].weight": 1}  # ... and the report says so


def test_axolotl_input_output_segments(imported: Any) -> None:
    row, rows, report = imported("axolotl_input_output.jsonl")
    assert row.format == "input_output" and report["kind"] == "sft"
    data = _without_ids(rows)
    assert data[0] == {"segments": [{"text": "<s>Q: What is the capital of Italy?\nA: ", "label": False},
                                    {"text": "Rome.</s>", "label": True}]}
    assert [s["label"] for s in data[3]["segments"]] == [True, False, True]
    assert "no_assistant_turn" not in report["structure"]["issues"]


def test_openai_tools_keep_schemas_calls_and_tool_turns(imported: Any) -> None:
    row, rows, report = imported("openai_tools.jsonl")
    assert row.format == "chat" and row.num_train == 5
    data = _without_ids(rows)
    weather = data[0]["tools"][0]
    assert weather["function"]["name"] == "get_weather" and weather["type"] == "function"
    assert data[0]["messages"] == [
        m(U, "What's the weather in Oslo?"),
        {"role": A, "content": "", "tool_calls": [call("get_weather", {"city": "Oslo"}, "call_1")]},
        m(T, '{"temp_c": 4, "sky": "cloudy"}', tool_call_id="call_1"),
        m(A, "It is 4 °C and cloudy in Oslo."),
    ]
    assert [t["function"]["name"] for t in data[1]["tools"]] == ["get_weather", "convert_currency"]  # JSON string
    assert data[1]["messages"][1]["tool_calls"] == [call("convert_currency", {"amount": 10, "to": "USD"}, "call_2")]
    assert data[1]["messages"][2] == m(T, '{"amount": 10.9, "currency": "USD"}', tool_call_id="call_2")
    assert data[2]["messages"][0] == m(U, "Hello!\nCan you check the weather?")  # text parts joined
    assert len(data[3]["messages"][2]["tool_calls"]) == 2 and data[3]["messages"][2]["content"] == "Let me check both."
    assert "tools" not in data[4]
    assert report["structure"]["with_tools"] == 4 and _unused(report) == {}


def test_llamafactory_function_call_and_observation(imported: Any) -> None:
    row, rows, report = imported("llamafactory_tools.json")
    assert row.format == "sharegpt"
    data = _without_ids(rows)
    assert data[0] == {
        "messages": [m(U, "What's the weather in Rome?"),
                     {"role": A, "content": "", "tool_calls": [call("get_weather", {"city": "Rome"})]},
                     m(T, '{"temp_c": 22}'), m(A, "It is 22 °C in Rome.")],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    }
    assert "tools" not in data[2]  # an empty tools string holds nothing
    assert _unused(report) == {}


def test_hh_rlhf_transcripts_split_at_the_last_assistant_turn(imported: Any) -> None:
    row, rows, _report = imported("hh_rlhf.jsonl.gz")
    assert row.format == "preference" and row.num_train == 5
    data = _without_ids(rows)
    assert data[0] == {"prompt": [m(U, "What should I pack for a beach day?")],
                       "chosen": [m(A, "Sunscreen, water, a towel and a hat.")],
                       "rejected": [m(A, "Nothing, just go.")]}
    assert data[2] == {"prompt": [m(U, "Can you help me with math?"), m(A, "Sure, what problem?"),
                                  m(U, "What is 15% of 200?")],
                       "chosen": [m(A, "15% of 200 is 30.")], "rejected": [m(A, "15% of 200 is 15.")]}


def test_ultrafeedback_binarized(imported: Any) -> None:
    row, rows, report = imported("ultrafeedback_binarized.jsonl")
    assert row.format == "preference"
    data = _without_ids(rows)
    assert data[0] == {"prompt": [m(U, "Explain photosynthesis in one sentence.")],
                       "chosen": [m(A, "Plants turn light, water and CO2 into sugar and oxygen.")],
                       "rejected": [m(A, "Photosynthesis is when plants sleep.")]}
    # messages repeats chosen, and the scores and ids are not trained on: all named, none dropped in silence
    assert _unused(report) == {"messages": 5, "prompt_id": 5, "score_chosen": 5, "score_rejected": 5}
    shown = format_report(report)  # what `tunedeck dataset show` prints
    assert "Fields not imported (field: records holding it)\n  messages: 5\n" in shown
    assert max(map(len, shown.splitlines())) <= 80
    fields = next(c for c in report["checklist"] if c["check"] == "fields used")
    assert fields["status"] == "warn" and fields["detail"].startswith("not imported: messages (5), prompt_id (5)")


@pytest.mark.parametrize(("source", "name"), [("hh_rlhf.jsonl.gz", "hh_rlhf"), ("single_object.json", "single_object"),
                                              ("notes.txt", "notes")])
def test_default_names_drop_the_data_suffixes(source: str, name: str) -> None:
    from engine.datasets.queue import resolve_source

    assert resolve_source(str(FIXTURES / source)) == (str(FIXTURES / source), name)


def test_txt_is_one_example_per_paragraph(imported: Any) -> None:
    row, rows, report = imported("notes.txt")
    assert row.format == "text" and report["kind"] == "text"
    assert [r["text"] for r in _without_ids(rows)] == [
        "The mitochondria is the powerhouse of the cell.\nIt produces most of the cell's energy.",
        "Water boils at 100 degrees Celsius at sea level.",
        "A haiku has three lines\nof five, seven and five syllables.",
        "Light travels at about 300,000 km per second.",
        "The Pacific is the largest ocean on Earth.",
    ]


def test_single_object_holding_a_list(imported: Any) -> None:
    row, rows, report = imported("single_object.json")
    assert row.format == "chat" and row.num_train == 5
    assert _without_ids(rows)[0] == {"messages": [m(U, "Hi there"), m(A, "Hello!")]}
    assert _unused(report) == {"(top level) description": 1, "(top level) version": 1}


def test_multimodal_records_are_refused() -> None:
    with pytest.raises(DataError) as err:
        load_examples(FIXTURES / "llamafactory_mllm.json")
    assert (f"{FIXTURES / 'llamafactory_mllm.json'}: row 1: images: multimodal record (images holds 1 item(s)): "
            "tunedeck imports text only; remove the 'images' column or these records") in str(err.value)


def test_every_format_can_be_forced(tmp_path: Path) -> None:
    """--format picks the layout when detection cannot: a KTO CSV's label is text, not a JSON boolean."""
    src = tmp_path / "kto.csv"
    src.write_text('prompt,completion,label\n"Say hi","Hi!",true\n"Say hi","Bye.",FALSE\n', encoding="utf-8")
    result = load_examples(src, fmt="kto")
    assert [e.data["label"] for e in result.examples] == [True, False]
    with pytest.raises(DataError, match="label: expected true"):
        src.write_text('prompt,completion,label\n"Say hi","Hi!",maybe\n', encoding="utf-8")
        load_examples(src, fmt="kto")


# --- tools through the model's chat template ----------------------------------------------------------------

TOOLS_TEMPLATE = (  # a small ChatML template that renders tools and tool calls, as tool-capable models' do
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% for c in message.get('tool_calls') or [] %}<tool_call>{{ c['function'] | tojson }}</tool_call>{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tool_rows() -> list[dict[str, Any]]:
    return [r.data for r in load_examples(FIXTURES / "openai_tools.jsonl").examples]


def test_a_template_without_tools_is_refused_naming_the_model(demo_model_dir: Path, tool_rows: list) -> None:
    from engine.datasets.tokens import ToolTemplateError, load_tokenizer
    from engine.train.data import sft_features

    tokenizer = load_tokenizer(str(demo_model_dir))
    with pytest.raises(ToolTemplateError) as err:
        sft_features(tokenizer, tool_rows[:1], max_length=512, assistant_only=True)
    assert str(err.value) == (f"the chat template of {demo_model_dir} cannot render tools: 'get_weather' does not "
                              "appear in its rendering of a conversation with tools; use a model whose chat "
                              "template supports tool calling")
    assert sft_features(tokenizer, tool_rows[4:], max_length=512, assistant_only=True)  # no tools: fine


def test_tools_render_through_a_template_that_supports_them(demo_model_dir: Path, tool_rows: list) -> None:
    from engine.datasets.tokens import load_tokenizer
    from engine.train.data import sft_features

    tokenizer = load_tokenizer(str(demo_model_dir))
    tokenizer.chat_template = TOOLS_TEMPLATE
    features = sft_features(tokenizer, tool_rows, max_length=2048, assistant_only=True)
    assert len(features) == len(tool_rows)
    ids, mask = features[0]["input_ids"], features[0]["assistant_masks"]
    text = tokenizer.decode(ids)
    assert '"name": "get_weather"' in text.replace('"name":"', '"name": "')  # the schema reaches the model
    trained = tokenizer.decode([t for t, k in zip(ids, mask, strict=True) if k])
    assert "get_weather" in trained and "Oslo" in trained  # the call is learned ...
    assert "cloudy in Oslo" in trained and "temp_c" not in trained  # ... and the answer; the tool's result is not


def test_import_lint_flags_a_template_without_tools(imported: Any, demo_model_dir: Path) -> None:
    _row, _rows, report = imported("openai_tools.jsonl", tokenizer=str(demo_model_dir))
    assert report["tokens"]["template_errors"]["count"] == 4  # the four examples with tools
    check = next(c for c in report["checklist"] if c["check"] == "chat template")
    assert check["status"] == "fail" and f"the chat template of {demo_model_dir} cannot render tools" in check["detail"]


def test_token_lengths_and_training_features_of_the_new_shapes(demo_model_dir: Path) -> None:
    """KTO and input_output rows are measured with the model's tokenizer, and input_output rows train on exactly
    their label-true segments."""
    from engine.datasets.lint import build_report
    from engine.datasets.tokens import load_tokenizer
    from engine.train.data import sft_features

    tokenizer = load_tokenizer(str(demo_model_dir))
    for name, kind in (("kto.jsonl", "kto"), ("axolotl_input_output.jsonl", "sft"), ("hh_rlhf.jsonl.gz", "preference")):
        result = load_examples(FIXTURES / name)
        rows = [{"id": i, **e.data} for i, e in enumerate(result.examples)]
        report = build_report(rows, [], fmt=result.format, kind=kind, tokenizer=tokenizer, max_length=64)
        assert report["tokens"]["min"] > 0 and report["tokens"]["template_errors"]["count"] == 0, name
    assert report["label_mask"]["skipped"].startswith("preference data")

    segments = [e.data for e in load_examples(FIXTURES / "axolotl_input_output.jsonl").examples]
    features = sft_features(tokenizer, segments, max_length=512, assistant_only=True)
    for row, feature in zip(segments, features, strict=True):
        trained = [t for t, k in zip(feature["input_ids"], feature["assistant_masks"], strict=True) if k]
        expected = [t for s in row["segments"] if s["label"]
                    for t in tokenizer(s["text"], add_special_tokens=False)["input_ids"]]
        assert trained == expected
