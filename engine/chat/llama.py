"""Load a GGUF with llama-cpp-python and stream answers from it.

`load_engine` checks the file before llama.cpp sees it (GGUF magic, whole tensors, free
memory) and turns every failure into a `ChatError` with a plain message. `ChatEngine.generate`
checks that the conversation fits the context, then streams text pieces; `Generation.stop()`
(from any thread) ends the answer at the next token. Timing: time to first token from the
request, and decode speed in tokens/s between the first and the last piece of text.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.chat.errors import ContextFull, CorruptGGUF, ModelLoadError, ModelTooLarge, UnknownArchitecture
from engine.chat.llama_logs import capture_log
from engine.chat.params import SamplingParams
from engine.chat.system import default_threads, free_memory_bytes, gpu_offload_available, gpu_offload_supported
from engine.gguf.reader import GGUFInfo, known_architectures, read_metadata
from engine.gguf.template import ChatTemplate, template_for

DEFAULT_N_CTX = 4096
MIN_ROOM = 8  # tokens an answer needs at least; a longer prompt is "context full"
_load_lock = threading.Lock()  # loads swap sys.stderr for a moment: one at a time


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@dataclass(frozen=True)
class Answer:
    """One finished (or stopped) answer and how it went."""

    text: str
    prompt_tokens: int
    tokens: int
    ttft_s: float | None  # request to first text
    tok_s: float | None  # decode speed after the first token
    total_s: float
    finish: str  # "stop" (the model ended it), "length" (max_tokens or context), "stopped" (the user)
    seed: int

    @property
    def stopped(self) -> bool:
        return self.finish == "stopped"

    @property
    def context_used(self) -> int:
        return self.prompt_tokens + self.tokens

    def timing(self) -> dict[str, Any]:
        """What is stored with the message."""
        data = asdict(self)
        data.pop("text")
        data["stopped"] = self.stopped
        return data


def decode_rate(tokens: int, first: float | None, last: float | None) -> float | None:
    """Tokens per second between the first and the last piece of text (None with fewer than two tokens)."""
    if first is None or last is None or tokens < 2 or last <= first:
        return None
    return (tokens - 1) / (last - first)


class Generation:
    """An answer being streamed: iterate for text pieces; `stop()` ends it; `answer` once iteration ends."""

    def __init__(self, engine: ChatEngine, prompt: list[int], stop: list[str], criteria: Any,
                 params: SamplingParams, started: float) -> None:  # fmt: skip
        self.engine = engine
        self.prompt = prompt
        self.stop_strings = stop
        self.criteria = criteria
        self.params = params
        self.started = started
        self.answer: Answer | None = None
        self._stop = threading.Event()
        self._pieces: Iterator[str] | None = None

    def stop(self) -> None:
        """Ask the answer to end; takes effect at the next token."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[str]:
        """The text pieces; iterating again continues the same answer (after an interrupt, say)."""
        if self._pieces is None:
            self._pieces = self._run()
        return self._pieces

    def _run(self) -> Iterator[str]:
        from llama_cpp import StoppingCriteriaList

        engine = self.engine
        params = self.params
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        pieces: list[str] = []
        first = last = None
        finish = "stopped"
        with engine._lock:
            if engine.llm is None:
                raise ModelLoadError("the model was closed")
            room = engine.n_ctx - len(self.prompt)
            criteria = StoppingCriteriaList([lambda _ids, _logits: self._stop.is_set(), *(self.criteria or [])])
            stream = None
            try:
                if not self._stop.is_set():
                    stream = engine.llm.create_completion(
                        prompt=self.prompt, stream=True, max_tokens=min(params.max_tokens, room),
                        temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, min_p=params.min_p,
                        repeat_penalty=params.repeat_penalty, seed=seed, stop=self.stop_strings,
                        stopping_criteria=criteria,
                    )  # fmt: skip
                    for chunk in stream:
                        choice = chunk["choices"][0]
                        text = choice.get("text") or ""
                        if text:
                            last = time.perf_counter()
                            if first is None:
                                first = last
                            pieces.append(text)
                            yield text
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        if self._stop.is_set():
                            break
            finally:
                if stream is not None:
                    stream.close()
                end = time.perf_counter()
                if self._stop.is_set():
                    finish = "stopped"
                text = "".join(pieces)
                tokens = engine.count_text(text) if text else 0
                self.answer = Answer(
                    text=text, prompt_tokens=len(self.prompt), tokens=tokens,
                    ttft_s=None if first is None else first - self.started,
                    tok_s=decode_rate(tokens, first, last), total_s=end - self.started,
                    finish=finish if finish in ("stop", "length", "stopped") else "stop", seed=seed,
                )  # fmt: skip
                engine.context_used = self.answer.context_used


class ChatEngine:
    """A loaded GGUF model with its template; one answer at a time (a lock), any thread."""

    def __init__(self, info: GGUFInfo, llm: Any, template: ChatTemplate, n_ctx: int, threads: int,
                 gpu_offload: bool) -> None:  # fmt: skip
        self.info = info
        self.llm = llm
        self.template = template
        self.n_ctx = n_ctx
        self.threads = threads
        self.gpu_offload = gpu_offload
        self.context_used = 0
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        """The status line's device: "GPU offload" or "CPU"."""
        return "GPU offload" if self.gpu_offload else "CPU"

    @property
    def warning(self) -> str:
        """A warning to show with the model ('' when there is none)."""
        from engine.gguf.template import fallback_warning

        return fallback_warning(Path(self.info.path).name) if self.template.fallback else ""

    def settings(self) -> dict[str, Any]:
        """How the model was loaded (stored with a session)."""
        return {"n_ctx": self.n_ctx, "threads": self.threads, "device": self.device,
                "template": "chatml-fallback" if self.template.fallback else "gguf"}  # fmt: skip

    def count_text(self, text: str) -> int:
        """Tokens in `text` (special tokens parsed, no BOS added)."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def prompt_tokens(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str], Any]:
        """The tokens of `messages` rendered with the template and the reply opened, the stop strings and criteria."""
        prompt, stop, criteria = self.template.render(messages)
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True), stop, criteria

    def generate(self, messages: list[dict[str, str]], params: SamplingParams | None = None) -> Generation:
        """Start an answer to `messages` (role/content dicts, oldest first); ContextFull when they do not fit."""
        started = time.perf_counter()
        params = params or SamplingParams()
        tokens, stop, criteria = self.prompt_tokens(messages)
        if len(tokens) + MIN_ROOM > self.n_ctx:
            raise ContextFull(
                f"the conversation is {len(tokens)} tokens long and the context holds {self.n_ctx}; "
                "start a new chat, or reload the model with a larger context (n_ctx)"
            )
        return Generation(self, tokens, stop, criteria, params, started)

    def chat(self, messages: list[dict[str, str]], params: SamplingParams | None = None,
             on_piece: Callable[[str], None] | None = None) -> Answer:  # fmt: skip
        """Generate a whole answer, passing each piece of text to `on_piece`."""
        generation = self.generate(messages, params)
        for piece in generation:
            if on_piece is not None:
                on_piece(piece)
        assert generation.answer is not None
        return generation.answer

    def close(self) -> None:
        """Free the model; waits for an answer in progress (stop it first)."""
        with self._lock:
            if self.llm is not None:
                self.llm.close()
                self.llm = None


def check_memory(info: GGUFInfo, free_memory: int | None) -> None:
    """ModelTooLarge when the file is bigger than `free_memory` bytes (None: not known, no check)."""
    if free_memory is not None and info.size > free_memory:
        raise ModelTooLarge(
            f"{Path(info.path).name} is {_size(info.size)} but only {_size(free_memory)} of memory is free; "
            "close other programs or pick a smaller quantization"
        )


def _load_failure(info: GGUFInfo, log: list[str], exc: Exception) -> Exception:
    """The ChatError that explains why llama.cpp refused the file."""
    reason = next((line.split("error loading model:", 1)[1].strip() for line in log if "error loading model:" in line),
                  "")  # fmt: skip
    name = Path(info.path).name
    if "unknown model architecture" in reason or info.architecture not in known_architectures():
        return UnknownArchitecture(f"{name}: llama.cpp does not know the model architecture {info.architecture!r}; "
                                   "it cannot run this model (a newer llama-cpp-python may)")  # fmt: skip
    if "file bounds" in reason or "failed to read" in reason:
        return CorruptGGUF(f"{name} is damaged or incomplete: {reason}")
    return ModelLoadError(f"llama.cpp could not load {name}: {reason or exc}")


def load_engine(path: str | Path, *, n_ctx: int | None = None, threads: int | None = None, gpu: bool | None = None,
                free_memory: int | None = -1) -> ChatEngine:  # fmt: skip
    """Check and load a GGUF model.

    `n_ctx` defaults to the model's trained context, at most 4096; `threads` to `default_threads()`;
    `gpu` None offloads every layer when llama.cpp can and a GPU is there (True: whenever this build
    of llama-cpp-python can; False: never). `free_memory` (bytes) is
    what the file is checked against; the default -1 reads MemAvailable, None skips the check.
    Raises a `ChatError` (ModelNotFound, NotGGUF, CorruptGGUF, ModelTooLarge, UnknownArchitecture,
    ModelLoadError) instead of anything else.
    """
    info = read_metadata(path)
    offload = gpu_offload_available() if gpu is None else gpu and gpu_offload_supported()
    if not offload:  # with every layer on the GPU, the weights live in its memory
        check_memory(info, free_memory_bytes() if free_memory == -1 else free_memory)
    context = n_ctx or min(info.context_length or DEFAULT_N_CTX, DEFAULT_N_CTX)
    if context < MIN_ROOM * 4:
        raise ModelLoadError(f"n_ctx {context} is too small; use at least {MIN_ROOM * 4}")
    threads = threads or default_threads()
    import llama_cpp

    with _load_lock, capture_log() as log, contextlib.redirect_stderr(io.StringIO()):
        try:
            llm = llama_cpp.Llama(
                model_path=info.path, n_ctx=context, n_threads=threads, n_threads_batch=threads,
                n_gpu_layers=-1 if offload else 0, verbose=True,  # verbose=False would point fd 1 and 2 at /dev/null
            )  # fmt: skip
        except Exception as exc:
            log_lines = [line for line in log if line]
            raise _load_failure(info, log_lines, exc) from None
    llm.verbose = False  # no per-answer prints
    return ChatEngine(info, llm, template_for(llm, info.chat_template), context, threads, offload)
