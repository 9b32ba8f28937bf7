"""The chat engine with the real SmolLM2 GGUF: metadata, templates, streaming, stop, seeds, context limits,
and every kind of bad model file; plus the chat-session queries and exports in the store."""

# ruff: noqa: F811 - the chat_models fixtures are imported, then named as test arguments

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_models import (  # noqa: F401 - fixtures, used as test arguments
    LONG_PROMPT,
    PROMPT,
    cut_header_gguf,
    no_template_gguf,
    not_gguf,
    smollm,
    truncated_gguf,
    unknown_arch_gguf,
)

from engine.chat.errors import (
    BadParams,
    ContextFull,
    CorruptGGUF,
    ModelNotFound,
    ModelTooLarge,
    NotGGUF,
    UnknownArchitecture,
)
from engine.chat.llama import ChatEngine, decode_rate, load_engine
from engine.chat.params import SamplingParams
from engine.chat.system import free_memory_bytes
from engine.gguf.reader import read_metadata
from store.db import Store
from store.errors import NotFound, Refused, TunedeckError

GREEDY = SamplingParams(temperature=0, max_tokens=40)


@pytest.fixture(scope="module")
def engine(smollm: Path) -> Iterator[ChatEngine]:
    loaded = load_engine(smollm, threads=1)  # one thread: steady on a shared 2-core machine
    yield loaded
    loaded.close()


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- metadata and loading ---------------------------------------------------------------------


def test_metadata_of_smollm(smollm: Path) -> None:
    info = read_metadata(smollm)
    assert info.architecture == "llama"
    assert info.file_type == "Q4_1"
    assert 130e6 < info.parameters < 140e6 and info.parameters_text == "135M"
    assert info.context_length == 8192
    assert info.has_chat_template and "<|im_start|>" in (info.chat_template or "")
    assert info.size == smollm.stat().st_size
    assert info.summary() == "llama · 135M params · Q4_1 · ctx 8192 · chat template"
    assert read_metadata(smollm) is info  # cached: the reader is slow on a big vocabulary
    # what the fidelity check, the export and model add read from the same reader
    assert (info.bos_token, info.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert (info.pre_tokenizer, info.tokenizer_model) == ("smollm", "gpt2")
    assert info.tensor_types == {"Q8_0": 1, "F32": 61, "Q4_1": 210} and sum(info.tensor_types.values()) == 272
    assert "tensor_types" not in info.to_dict() and "chat_template" not in info.to_dict()


def test_engine_reports_how_it_runs(engine: ChatEngine) -> None:
    assert engine.device == "CPU"  # this build of llama-cpp-python has no GPU offload
    assert not engine.gpu_offload
    assert engine.n_ctx == 4096  # the model's 8192, capped
    assert engine.template.label == "from GGUF" and not engine.warning
    assert engine.settings() == {"n_ctx": 4096, "threads": 1, "device": "CPU", "template": "gguf"}


def test_gpu_offload_only_where_the_build_has_it(smollm: Path) -> None:
    from engine.chat.system import gpu_offload_supported

    asked = load_engine(smollm, threads=1, gpu=True)
    try:
        assert asked.device == ("GPU offload" if gpu_offload_supported() else "CPU")
    finally:
        asked.close()


# -- answers ----------------------------------------------------------------------------------


def test_answers_berlin_with_timing(engine: ChatEngine) -> None:
    pieces: list[str] = []
    answer = engine.chat(ask(PROMPT), GREEDY, on_piece=pieces.append)
    assert "Berlin" in answer.text
    assert "".join(pieces) == answer.text and len(pieces) > 1  # it streamed
    assert answer.finish == "stop" and not answer.stopped
    assert answer.tokens > 2 and answer.prompt_tokens > 10
    assert answer.ttft_s is not None and 0 < answer.ttft_s < answer.total_s
    assert answer.tok_s is not None and answer.tok_s > 0
    assert engine.context_used == answer.prompt_tokens + answer.tokens
    timing = answer.timing()
    assert set(timing) >= {"ttft_s", "tok_s", "tokens", "prompt_tokens", "total_s", "finish", "seed", "stopped"}
    json.dumps(timing)  # stored as JSON


def test_system_prompt_and_history_reach_the_model(engine: ChatEngine) -> None:
    messages = [{"role": "system", "content": "You answer in one short sentence."}, *ask(PROMPT)]
    first = engine.chat(messages, GREEDY)
    messages += [{"role": "assistant", "content": first.text}, *ask("And the capital of France?")]
    tokens, _, _ = engine.prompt_tokens(messages)
    second = engine.chat(messages, GREEDY)
    assert second.prompt_tokens == len(tokens) > first.prompt_tokens + first.tokens
    assert "Paris" in second.text


def test_stop_flag_ends_the_answer_at_once(engine: ChatEngine) -> None:
    generation = engine.generate(ask(LONG_PROMPT), SamplingParams(temperature=0.7, seed=3, max_tokens=200))
    seen = 0
    after_stop = 0
    for _ in generation:
        if generation.stop_requested:
            after_stop += 1
        seen += 1
        if seen == 5:
            generation.stop()
    answer = generation.answer
    assert answer is not None and answer.finish == "stopped" and answer.stopped
    assert after_stop == 0  # checked per chunk: nothing came after the stop
    assert 0 < answer.tokens < 200
    assert answer.timing()["stopped"] is True


def test_iterating_again_continues_the_same_answer(engine: ChatEngine) -> None:
    """What `tunedeck chat` does after ctrl+c between two pieces: stop, then drain the same answer."""
    generation = engine.generate(ask(LONG_PROMPT), SamplingParams(temperature=0.7, seed=3, max_tokens=200))
    first = [piece for _, piece in zip(range(3), generation, strict=False)]
    generation.stop()
    rest = list(generation)
    assert generation.answer is not None and generation.answer.finish == "stopped"
    assert generation.answer.text == "".join(first + rest) and len(rest) <= 1
    assert list(generation) == []  # no second answer


def test_stop_before_the_first_token(engine: ChatEngine) -> None:
    generation = engine.generate(ask(PROMPT), GREEDY)
    generation.stop()
    assert list(generation) == []
    assert generation.answer is not None and generation.answer.finish == "stopped"


def test_same_seed_same_answer(engine: ChatEngine) -> None:
    params = SamplingParams(temperature=1.0, top_k=100, seed=1234, max_tokens=30)
    first = engine.chat(ask(LONG_PROMPT), params)
    second = engine.chat(ask(LONG_PROMPT), params)
    assert first.text == second.text and first.seed == second.seed == 1234
    third = engine.chat(ask(LONG_PROMPT), params.replace(seed=99))
    assert third.seed == 99


def test_max_tokens_ends_with_length(engine: ChatEngine) -> None:
    answer = engine.chat(ask(LONG_PROMPT), SamplingParams(temperature=0.7, seed=5, max_tokens=12))
    assert answer.finish == "length"
    assert 8 <= answer.tokens <= 14  # retokenizing the text may merge or split a token at the edges


def test_context_full_is_a_message_not_a_crash(smollm: Path) -> None:
    small = load_engine(smollm, n_ctx=64, threads=1)
    try:
        with pytest.raises(ContextFull, match=r"the conversation is \d+ tokens long and the context holds 64"):
            small.generate(ask("Tell me about Berlin. " * 20))
        answer = small.chat(ask(PROMPT), SamplingParams(temperature=0, max_tokens=500))
        assert answer.context_used <= 64  # max_tokens was clamped to the room left
    finally:
        small.close()


def test_decode_rate() -> None:
    assert decode_rate(11, 1.0, 2.0) == 10.0
    assert decode_rate(1, 1.0, 2.0) is None and decode_rate(5, None, 2.0) is None


# -- templates ----------------------------------------------------------------------------------


def test_gguf_without_template_gets_flagged_chatml(no_template_gguf: Path) -> None:
    assert not read_metadata(no_template_gguf).has_chat_template
    fallback = load_engine(no_template_gguf, threads=1)
    try:
        assert fallback.template.fallback and fallback.template.label == "ChatML (fallback)"
        assert "has no chat template" in fallback.warning and "ChatML" in fallback.warning
        prompt, stop, _ = fallback.template.render(ask(PROMPT))
        assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
        assert "<|im_end|>" in stop
        assert "Berlin" in fallback.chat(ask(PROMPT), GREEDY).text  # SmolLM2 speaks ChatML
    finally:
        fallback.close()


def _smollm_hf_tokenizer(template: str) -> object:
    """A real transformers tokenizer with SmolLM2's special tokens at SmolLM2's ids and its chat template (the
    fidelity check reads only these; loading SmolLM2's own from the GGUF takes over a minute here)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "[UNK]": 3}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                        bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="[UNK]")
    tokenizer.chat_template = template
    return tokenizer


def test_chat_fidelity_check_and_export_share_one_reader_and_one_renderer(
        engine: ChatEngine, smollm: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Issue 17: the chat pane, the converter's fidelity check and the Modelfile export read SmolLM2's GGUF through
    the one reader and render its chat template through the one renderer, to the same prompt text."""
    import engine.gguf.reader as reader
    import engine.gguf.template as renderer
    from engine.export import modelfile_text
    from engine.gguf.fidelity import CONVERSATION, check_template
    from engine.gguf.quantize import tensor_types

    rendered: list[tuple[str, str]] = []  # (template source, prompt) of every render
    real_apply = renderer.apply_template

    def apply_spy(formatter: object, messages: list[dict[str, str]]) -> object:
        result = real_apply(formatter, messages)
        if messages == CONVERSATION:
            rendered.append((formatter.template, result.prompt))  # type: ignore[attr-defined]
        return result

    read: list[Path] = []
    real_read = reader.read_metadata

    def read_spy(path: str | Path) -> object:
        read.append(Path(path))
        return real_read(path)

    monkeypatch.setattr(renderer, "apply_template", apply_spy)
    monkeypatch.setattr(reader, "read_metadata", read_spy)
    info = reader.read_metadata(smollm)
    assert engine.info is info  # the chat engine's facts are the reader's (cached) result

    chat_prompt, _stop, _criteria = engine.template.render(CONVERSATION)  # what the chat pane sends the model
    assert chat_prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert chat_prompt.endswith("<|im_start|>user\nNow: one two<|im_end|>\n<|im_start|>assistant\n")
    assert rendered == [(info.chat_template, chat_prompt)]

    check = check_template(_smollm_hf_tokenizer(info.chat_template or ""), info)  # the converter's check (b)
    assert check["status"] == "pass" and check["same_text"], check
    assert rendered[1] == (info.chat_template, chat_prompt)  # the same function, the same text

    read.clear()
    modelfile = modelfile_text(smollm)  # the export: its Go template proven against the same renderer
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile
    assert "PARAMETER num_ctx 8192" in modelfile
    assert tensor_types(smollm) == info.tensor_types
    assert read == [smollm, smollm]


def test_one_gguf_reader_and_one_template_renderer_in_the_code() -> None:
    """Only engine/gguf/reader.py opens GGUFs with gguf.GGUFReader and only engine/gguf/template.py compiles chat
    templates for llama.cpp (llama.cpp's built-in template engine, which the fidelity check compares with, aside)."""
    root = Path(__file__).resolve().parents[1]
    sources = [p for package in ("engine", "core", "cli", "tui", "store") for p in (root / package).rglob("*.py")]
    readers = sorted(str(p.relative_to(root)) for p in sources if "GGUFReader(" in p.read_text())
    renderers = sorted(str(p.relative_to(root)) for p in sources if "Jinja2ChatFormatter(" in p.read_text())
    assert readers == ["engine/gguf/reader.py"] and renderers == ["engine/gguf/template.py"]


# -- bad model files ----------------------------------------------------------------------------


def test_not_a_gguf(not_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(NotGGUF, match="is not a GGUF file"):
        load_engine(not_gguf)
    with pytest.raises(NotGGUF, match="directory"):
        load_engine(tmp_path)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(NotGGUF):
        load_engine(empty)


def test_missing_file() -> None:
    with pytest.raises(ModelNotFound, match="no such file"):
        load_engine("/nonexistent/model.gguf")


def test_truncated_gguf(truncated_gguf: Path, cut_header_gguf: Path) -> None:
    with pytest.raises(CorruptGGUF, match="probably truncated or damaged"):
        load_engine(truncated_gguf)
    with pytest.raises(CorruptGGUF, match="cannot be read"):
        load_engine(cut_header_gguf)


def test_model_bigger_than_free_memory(smollm: Path) -> None:
    with pytest.raises(ModelTooLarge, match=r"is 93\.8 MB but only 50\.0 MB of memory is free"):
        load_engine(smollm, free_memory=50 * 1024 * 1024, gpu=False)


def test_free_memory_reads_meminfo_or_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemFree:  10 kB\nMemAvailable:  500 kB\n")
    assert free_memory_bytes(meminfo) == 500 * 1024
    assert free_memory_bytes(tmp_path / "none") is None
    monkeypatch.setenv("TUNEDECK_FREE_MEMORY", "1234")
    assert free_memory_bytes(meminfo) == 1234


def test_unknown_architecture(unknown_arch_gguf: Path) -> None:
    assert read_metadata(unknown_arch_gguf).architecture == "tunedeckfoo"
    with pytest.raises(UnknownArchitecture, match="does not know the model architecture 'tunedeckfoo'"):
        load_engine(unknown_arch_gguf, threads=1)


def test_every_chat_error_is_a_tunedeck_error() -> None:
    for cls in (NotGGUF, CorruptGGUF, ModelTooLarge, UnknownArchitecture, ContextFull, ModelNotFound, BadParams):
        assert issubclass(cls, TunedeckError)


# -- parameters ---------------------------------------------------------------------------------


def test_params_parse_and_refuse() -> None:
    params = SamplingParams.from_text({"temperature": "0.2", "top_k": "10", "seed": "", "max_tokens": "64"})
    assert params == SamplingParams(temperature=0.2, top_k=10, max_tokens=64)
    assert SamplingParams.from_dict({**params.to_dict(), "system": "x", "n_ctx": 9}) == params
    with pytest.raises(BadParams, match="top_k: 'ten' is not a whole number"):
        SamplingParams.from_text({"top_k": "ten"})
    with pytest.raises(BadParams, match="temperature must be between 0 and 5"):
        SamplingParams(temperature=9)
    with pytest.raises(BadParams, match="max_tokens must be a whole number"):
        SamplingParams(max_tokens=1.5)  # type: ignore[arg-type]


# -- model references ---------------------------------------------------------------------------


def _project_with_artifact(store: Store, path: Path, kind: str = "gguf") -> tuple[int, int]:
    from store.models import Artifact
    from store.projects import create_project

    with store.write() as session:
        project = create_project(session, "p")
        artifact = Artifact(project_id=project.id, kind=kind, name=f"smol-{kind}", path=str(path))
        session.add(artifact)
        session.flush()
        return project.id, artifact.id  # type: ignore[return-value]


def test_model_by_path_or_artifact(store: Store, smollm: Path, tmp_path: Path) -> None:
    from core.chat import resolve_model

    assert resolve_model(str(smollm)).path == str(smollm.resolve())
    project_id, artifact_id = _project_with_artifact(store, smollm)
    by_id = resolve_model(str(artifact_id), store)
    assert (by_id.path, by_id.artifact_id, by_id.project_id) == (str(smollm.resolve()), artifact_id, project_id)
    assert resolve_model("smol-gguf", store).artifact_id == artifact_id
    with pytest.raises(ModelNotFound, match="no GGUF artifact"):
        resolve_model("999", store)
    with pytest.raises(ModelNotFound, match="no such file"):
        resolve_model("missing/model.gguf", store)
    from store.models import Artifact

    with store.write() as session:
        session.add(Artifact(project_id=project_id, kind="adapter", name="lora", path=str(tmp_path)))
    with pytest.raises(Refused, match="expected gguf or quant"):
        resolve_model("lora", store)


# -- sessions in the store ----------------------------------------------------------------------


def test_session_queries(store: Store) -> None:
    from store.chat import (
        add_message,
        create_session,
        delete_messages_from,
        delete_session,
        list_sessions,
        load_session,
        update_params,
    )
    from store.projects import create_project

    with store.write() as session:
        project_id = create_project(session, "p").id
        chat = create_session(session, "/m.gguf", project_id=project_id, params={"temperature": 0.5})
        loose = create_session(session, "/n.gguf")
        sid = chat.id
        add_message(session, sid, "user", "  What is   the capital\nof Germany?  ")
        answer = add_message(session, sid, "assistant", "Berlin.", {"ttft_s": 0.2, "tok_s": 60.0, "tokens": 3})
        add_message(session, sid, "user", "And France?")
        last = add_message(session, sid, "assistant", "Paris.", {"tokens": 2})
        update_params(session, sid, {"temperature": 0.1, "system": "Be brief."})
        with pytest.raises(ValueError, match="role"):
            add_message(session, sid, "robot", "beep")
    with store.read() as session:
        chat, messages = load_session(session, sid)
        assert chat.title == "What is the capital of Germany?"  # the first question, on one line
        assert chat.params == {"temperature": 0.1, "system": "Be brief."}
        assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
        assert messages[1].timing == {"ttft_s": 0.2, "tok_s": 60.0, "tokens": 3}
        assert [c.id for c in list_sessions(session, project_id)] == [sid]
        assert [c.id for c in list_sessions(session)] == [loose.id]  # those in no project
        assert {c.id for c in list_sessions(session, all_projects=True)} == {sid, loose.id}
    from store.chat import session_summaries

    with store.raw() as conn:
        summaries = {x.id: x for x in session_summaries(conn)}
    assert (summaries[sid].project, summaries[sid].messages, summaries[sid].title) == ("p", 4, chat.title)
    assert (summaries[loose.id].project, summaries[loose.id].messages) == (None, 0)
    with store.write() as session:
        assert delete_messages_from(session, sid, last.id) == 1  # regenerate: the last answer goes
        assert delete_messages_from(session, sid, answer.id) == 2  # edit: from the answer on
    with store.read() as session:
        assert [m.content for m in load_session(session, sid)[1]] == ["  What is   the capital\nof Germany?  "]
    with store.write() as session:
        delete_session(session, sid)
    with store.read() as session, pytest.raises(NotFound):
        load_session(session, sid)
    with store.raw() as conn:
        assert conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == 0


def _saved_session(store: Store, project: bool = True) -> int:
    from store.chat import add_message, create_session
    from store.projects import create_project

    with store.write() as session:
        project_id = create_project(session, "p").id if project else None
        sid = create_session(session, "/models/smol.gguf", project_id=project_id,
                             params={"system": "Be brief.", "temperature": 0.0, "seed": 7}).id  # fmt: skip
        add_message(session, sid, "user", "Name the capital of Germany.")
        add_message(session, sid, "assistant", "The capital of Germany is Berlin.",
                    {"tokens": 7, "ttft_s": 0.25, "tok_s": 61.5, "seed": 7})  # fmt: skip
        add_message(session, sid, "user", "Tell me a story.")
        add_message(session, sid, "assistant", "Once upon a", {"tokens": 3, "stopped": True})
        add_message(session, sid, "user", "Thanks")
    return sid  # type: ignore[return-value]


def test_markdown_export(store: Store) -> None:
    from core.chat import export_markdown

    sid = _saved_session(store)
    path = export_markdown(store, sid)
    assert path == store.home / "exports" / f"chat-{sid}.md"
    text = path.read_text()
    assert text.startswith("# Name the capital of Germany.\n")
    assert "- Model: `/models/smol.gguf`" in text and "## System\n\nBe brief." in text
    assert "## You\n\nName the capital of Germany." in text
    note = "*7 tokens, first token 0.25 s, 61.5 tok/s, seed 7*"
    assert f"## Assistant\n\nThe capital of Germany is Berlin.\n\n{note}" in text
    assert "stopped" in text


def test_session_becomes_a_chat_dataset(store: Store) -> None:
    from core.chat import dataset_name, session_to_dataset, training_example
    from store.chat import load_session

    sid = _saved_session(store)
    with store.read() as session:
        chat, messages = load_session(session, sid)
    example = training_example(chat, messages)
    # the stopped answer and the unanswered question are left out
    assert example == {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name the capital of Germany."},
        {"role": "assistant", "content": "The capital of Germany is Berlin."},
    ]}  # fmt: skip
    assert dataset_name(chat) == f"chat-{sid}-name-the-capital-of-germany"
    done = session_to_dataset(store, sid)
    assert json.loads(done.path.read_text()) == example
    with store.raw() as conn:
        kind, config = conn.execute("SELECT kind, config FROM jobs WHERE id = ?", (done.job_id,)).fetchone()
    assert kind == "dataset-import"
    assert json.loads(config)["name"] == done.name and json.loads(config)["format"] == "chat"
    deadline = time.monotonic() + 120
    while True:  # the data runner imports it
        with store.raw() as conn:
            status, error = conn.execute("SELECT status, error FROM jobs WHERE id = ?", (done.job_id,)).fetchone()
        if status not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.2)
    assert status == "completed", error
    with store.raw() as conn:
        assert conn.execute("SELECT num_train + num_val FROM datasets WHERE name = ?", (done.name,)).fetchone()[0] == 1
    # appended to that dataset: a new snapshot with its rows plus this chat again (here an exact duplicate,
    # which the import's default exact dedup drops; the old snapshot is left as runs used it)
    more = session_to_dataset(store, sid, append_to=done.name)
    assert more.name == f"{done.name}+chat{sid}" and more.examples == 2
    rows = [json.loads(line) for line in more.path.read_text().splitlines()]
    assert rows == [example, example]
    _wait_import(store, more.job_id)
    with store.raw() as conn:
        counts = dict(conn.execute("SELECT name, num_train + num_val FROM datasets").fetchall())
    assert counts == {done.name: 1, more.name: 1}
    with pytest.raises(NotFound):
        session_to_dataset(store, sid, append_to="no-such-dataset")


def _wait_import(store: Store, job_id: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        with store.raw() as conn:
            status, error = conn.execute("SELECT status, error FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if status not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.2)
    assert status == "completed", error


def test_session_without_project_or_answers_is_refused(store: Store) -> None:
    from core.chat import session_to_dataset
    from store.chat import add_message, create_session
    from store.projects import create_project

    loose = _saved_session(store, project=False)
    with pytest.raises(Refused, match="in no project"):
        session_to_dataset(store, loose)
    with store.write() as session:
        sid = create_session(session, "/m.gguf", project_id=create_project(session, "q").id).id
        add_message(session, sid, "user", "Hello?")
    with pytest.raises(Refused, match="no finished question and answer"):
        session_to_dataset(store, sid)
    with store.raw() as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
