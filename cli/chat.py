"""`tunedeck chat MODEL`: one answer with --prompt, else a prompt loop on stdin (EOF ends it).

MODEL is a .gguf path or the id/name of a gguf or quant artifact. The conversation is saved as a
chat session (unless --no-save), so the TUI can reopen it. Problems (not a GGUF, truncated, too
big for free memory, unknown architecture, context full) end with one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import UsageError, open_from_args

if TYPE_CHECKING:
    from core.chat import ChatRecorder
    from engine.chat.llama import Answer, ChatEngine, Generation
    from store.db import Store


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = verbs.add_parser("chat", help="chat with a GGUF model (one answer with --prompt, else a prompt loop)",
                         parents=[common])  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="a .gguf file, or the id or name of a gguf/quant artifact")
    p.add_argument("--system", default="", metavar="TEXT", help="system prompt")
    p.add_argument("--prompt", metavar="TEXT", help="ask this, print the answer and exit")
    p.add_argument("--temperature", type=float, metavar="F")
    p.add_argument("--top-p", type=float, metavar="F")
    p.add_argument("--top-k", type=int, metavar="N")
    p.add_argument("--min-p", type=float, metavar="F")
    p.add_argument("--repeat-penalty", type=float, metavar="F")
    p.add_argument("--max-tokens", type=int, metavar="N")
    p.add_argument("--seed", type=int, metavar="N", help="sampling seed (default: a fresh one per answer)")
    p.add_argument("--n-ctx", type=int, metavar="N", help="context length (default: the model's, at most 4096)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the idle cores)")
    p.add_argument("--cpu", action="store_true", help="do not offload layers to a GPU")
    p.add_argument("--project", metavar="NAME", help="file the saved session under this project")
    p.add_argument("--no-save", action="store_true", help="do not save the conversation")
    p.add_argument("--json", action="store_true", help="print JSON (one object per answer)")
    p.set_defaults(func=cmd_chat)


def _params(args: argparse.Namespace) -> Any:
    from core.chat import sampling_params

    return sampling_params(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                           min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                           max_tokens=args.max_tokens, seed=args.seed)  # fmt: skip


def _answer(engine: ChatEngine, history: list[dict[str, str]], params: Any, stream: bool) -> Answer:
    """Generate an answer, printing it piece by piece when `stream`; ctrl+c stops it (the part so far is kept)."""
    generation: Generation = engine.generate(history, params)
    try:
        for piece in generation:
            if stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
    except KeyboardInterrupt:
        generation.stop()
        for _ in generation:  # the interrupt came between pieces: let the stop take effect
            pass
    if stream:
        sys.stdout.write("\n")
        sys.stdout.flush()
    assert generation.answer is not None
    return generation.answer


def _stats(answer: Answer) -> str:
    parts = [f"{answer.tokens} tokens"]
    if answer.ttft_s is not None:
        parts.append(f"first token {answer.ttft_s:.2f} s")
    if answer.tok_s:
        parts.append(f"{answer.tok_s:.1f} tok/s")
    parts.append(f"seed {answer.seed}")
    if answer.finish != "stop":
        parts.append(answer.finish)
    return ", ".join(parts)


def _result(engine: ChatEngine, prompt: str, answer: Answer, session_id: int | None) -> dict[str, Any]:
    return {"prompt": prompt, "answer": answer.text, "session_id": session_id, "timing": answer.timing(),
            "context": {"used": answer.context_used, "n_ctx": engine.n_ctx},
            "model": {**engine.info.to_dict(), **engine.settings()}, "warning": engine.warning or None}  # fmt: skip


def _turn(engine: ChatEngine, history: list[dict[str, str]], prompt: str, params: Any, args: argparse.Namespace,
          recorder: ChatRecorder | None, session_params: dict[str, Any]) -> None:  # fmt: skip
    history.append({"role": "user", "content": prompt})
    answer = _answer(engine, history, params, stream=not args.json)
    history.append({"role": "assistant", "content": answer.text})
    if recorder is not None:
        recorder.add("user", prompt, {"prompt_tokens": answer.prompt_tokens}, params=session_params)
        recorder.add("assistant", answer.text, answer.timing())
    if args.json:
        print(json.dumps(_result(engine, prompt, answer, recorder.session_id if recorder else None), sort_keys=True))
        sys.stdout.flush()
    elif sys.stderr.isatty():
        print(f"[{_stats(answer)}]", file=sys.stderr)


def cmd_chat(args: argparse.Namespace) -> int:
    from core.chat import ChatRecorder, load_model, looks_like_path, project_id, resolve_model, session_params

    for flag in ("n_ctx", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    params = _params(args)
    store: Store | None = None
    if looks_like_path(args.model) or Path(args.model).expanduser().exists():
        model = resolve_model(args.model)
    else:  # perhaps an artifact's id or name
        store = open_from_args(args)
        model = resolve_model(args.model, store)
    recorder = None
    if not args.no_save and args.project:  # a wrong project name is found before the model loads
        store = store or open_from_args(args)
        recorder = ChatRecorder(store, model, project_id(store, args.project))
    engine = load_model(model, n_ctx=args.n_ctx, threads=args.threads, gpu=False if args.cpu else None)
    try:
        if engine.warning:
            print(f"warning: {engine.warning}", file=sys.stderr)
        if not args.no_save and recorder is None:
            store = store or open_from_args(args)
            recorder = ChatRecorder(store, model)
        stored = session_params(args.system, params, engine.settings())
        history: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
        if args.prompt is not None:
            _turn(engine, history, args.prompt, params, args, recorder, stored)
            return 0
        interactive = sys.stdin.isatty()
        if interactive and not args.json:
            print(f"{model.label}: {engine.info.summary()} · {engine.device}. Ctrl+D ends, Ctrl+C stops an answer.",
                  file=sys.stderr)  # fmt: skip
        while True:
            if interactive:
                print("> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line:
                return 0
            prompt = line.strip()
            if prompt:
                _turn(engine, history, prompt, params, args, recorder, stored)
    finally:
        engine.close()
