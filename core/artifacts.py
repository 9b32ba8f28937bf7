"""The artifact verbs both faces call: queue a merge, conversion, quantization, compression, evaluation or push of
one, how to serve one, deleting one with its files, and fetching the tools they need. Each checks through the
engine's queue module (imported when called), so `tunedeck convert` and c on the artifact screen refuse the same
way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from store.db import Store


def serve_artifact(store: Store, ref: str) -> dict[str, Any]:
    """The commands that serve artifact `ref` (`vllm serve`, `llama-server`) under `commands`; beside a GGUF an
    Ollama Modelfile is written (its path under `modelfile`)."""
    from engine.export import serve_info

    return serve_info(store, ref)


def delete_artifact(store: Store, artifact_id: int, force: bool = False) -> list[tuple[int, str, str, bool]]:
    """Delete an artifact and its files; with `force` also what derives from it. Returns (id, kind, path, whether
    its files were removed: False for files outside the home, which stay) for each artifact deleted."""
    from engine.artifacts import delete_with_files

    return delete_with_files(store, artifact_id, force=force)


def queue_push(store: Store, ref: str, repo_id: str, private: bool = False) -> int:
    """Queue a push of artifact `ref` to the Hub repo `repo_id` (org/name; huggingface-hub's own login); refused
    for a repo id the Hub would refuse or an artifact whose files are gone. Returns the job id."""
    from pathlib import Path

    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from engine.jobqueue import queue_job
    from store.artifacts import get_artifact
    from store.errors import NotFound, Refused

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise Refused(f"repo id {repo_id!r}: {exc}") from None
    if "/" not in repo_id:
        raise Refused(f"repo id {repo_id!r}: expected org/name")
    with store.read() as session:
        artifact = get_artifact(session, ref)
    if not Path(artifact.path).exists():
        raise NotFound(f"{artifact.path}: the artifact's files are gone")
    return queue_job(store, artifact.project_id, "push", {"artifact_id": artifact.id, "path": artifact.path,
                                                          "repo_id": repo_id, "private": private,
                                                          "name": artifact.name}, name=f"push {artifact.name}")


def merge_choices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the dtypes `merge` loads and saves in, the `merge-models` methods)."""
    from engine.merge.methods import DTYPES, METHODS  # light: no torch

    return DTYPES, METHODS


def queue_compress(store: Store, ref: str, *, method: str, **options: Any) -> int:
    """Queue a GPTQ or AWQ compression of model artifact `ref`; `options` (scheme, group_size, calibration,
    samples, max_length, name) default as engine.compress.queue says. Returns the job id."""
    from engine.compress.queue import queue_compress as queue

    return queue(store, ref, method=method, **options)


def fetch_tool(home: Path, tool: str, log: Callable[[str], None] = print) -> Path:
    """Fetch (or find) a tool under `home`/tools: "compressor" (llm-compressor's venv; its python) or else
    llama.cpp's converter and quantizer (their folder)."""
    if tool == "compressor":
        from engine.compress.toolenv import compressor_python

        return compressor_python(home, log)
    from engine.gguf.tools import ensure_tools

    return ensure_tools(home, log)


def pre_tokenizers(home: Path, log: Callable[[str], None] = print) -> list[str]:
    """The pre-tokenizer names llama.cpp's converter knows (fetching the converter first if needed)."""
    from engine.gguf.convert import known_pre_tokenizers

    return known_pre_tokenizers(fetch_tool(home, "llama.cpp", log))


def queue_merge(store: Store, ref: str, dtype: str = "fp32", name: str | None = None) -> int:
    """Queue folding adapter `ref` into its base model (in `dtype`); returns the job id."""
    from engine.merge.queue import queue_merge as queue

    return queue(store, ref, dtype=dtype, name=name)


def queue_merge_models(store: Store, project: str, base: str, inputs: list[str], method: str,
                       weights: list[float] | None = None, density: float | None = None, name: str | None = None,
                       seed: int = 0, on_warning: Callable[[str], object] | None = None) -> int:
    """Queue merging models `inputs` over `base` with `method` (linear, slerp, ties, dare_*); returns the job id."""
    from engine.merge.queue import queue_merge_models as queue

    return queue(store, project, base, inputs, method, weights, density, name, seed=seed, on_warning=on_warning)


def queue_convert(store: Store, ref: str, outtype: str = "f16", quants: str = "", pre_tokenizer: str | None = None,
                  name: str | None = None) -> int:
    """Queue converting artifact `ref` to GGUF (`outtype`), then to each quant of the comma list `quants`."""
    from engine.gguf.quantize import parse_quant_list
    from engine.gguf.queue import queue_convert as queue

    return queue(store, ref, outtype=outtype, quants=parse_quant_list(quants), pre_tokenizer=pre_tokenizer,
                 name=name)


def queue_quantize(store: Store, ref: str, quants: str) -> int:
    """Queue quantizing GGUF artifact `ref` to each quant of the comma list `quants` (e.g. q8_0,q4_k_m)."""
    from engine.gguf.quantize import parse_quant_list
    from engine.gguf.queue import queue_quantize as queue

    return queue(store, ref, parse_quant_list(quants))


def queue_eval(store: Store, model: str, dataset: str | None = None, split: str = "val", compare: str | None = None,
               sweep: bool = False, tasks: list[str] | None = None) -> int:
    """Queue evaluating `model` (perplexity on `dataset`'s `split`, against `compare`, a quant `sweep`, harness
    `tasks`); returns the job id."""
    from engine.evaluate.queue import queue_eval as queue

    return queue(store, model, dataset=dataset, split=split, compare=compare, sweep=sweep, tasks=tasks)
