"""GRPO's reward functions: the built-ins (exact answer, format, length) and a user's Python file of them.

A reward function takes TRL's keyword arguments (``completions`` plus every dataset column, e.g. ``answer``)
and returns one float per completion. A user's file is checked without running it when the run is queued
(syntax, and that the named functions are defined at its top level), and imported in the job; an error
raised inside one of its functions names the file and line.
"""

from __future__ import annotations

import ast
import functools
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store.errors import TunedeckError

RewardFunc = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or TRL's conversational list of messages (their contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in completion)
    return str(completion)


def _normalize(text: str) -> str:
    return " ".join(str(text).split()).strip().lower()


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def exact_answer_reward(field: str) -> RewardFunc:
    """1.0 when a completion (or the last <answer>...</answer> in it) equals the row's `field`, compared without
    case and with whitespace collapsed; else 0.0."""

    def exact_answer(completions: list[Any], **kwargs: Any) -> list[float]:
        answers = kwargs.get(field)
        if answers is None:
            raise TunedeckError(f"grpo.answer_field: the dataset has no field {field!r}")
        out = []
        for completion, answer in zip(completions, answers, strict=True):
            text = completion_text(completion)
            tags = _ANSWER_TAG.findall(text)
            got = tags[-1] if tags else text
            out.append(1.0 if _normalize(got) == _normalize(answer) else 0.0)
        return out

    return exact_answer


def format_reward(pattern: str) -> RewardFunc:
    """1.0 when the whole completion matches the regular expression, else 0.0."""
    regex = re.compile(pattern)

    def matches(completions: list[Any], **kwargs: Any) -> list[float]:
        return [1.0 if regex.fullmatch(completion_text(c).strip()) else 0.0 for c in completions]

    matches.__name__ = "format"  # TRL logs each reward as rewards/<function name>/mean
    return matches


def length_reward(target: int) -> RewardFunc:
    """1.0 at `target` characters, falling linearly to 0.0 at 0 and at twice the target."""

    def length(completions: list[Any], **kwargs: Any) -> list[float]:
        return [max(0.0, 1.0 - abs(len(completion_text(c).strip()) - target) / target) for c in completions]

    return length


def builtin_rewards(names: list[str], answer_field: str, format_regex: str, length_target: int) -> list[RewardFunc]:
    """The built-in reward functions named in the config, in order."""
    made = {"exact_answer": lambda: exact_answer_reward(answer_field), "format": lambda: format_reward(format_regex),
            "length": lambda: length_reward(length_target)}
    return [made[name]() for name in names]


def _where(exc: BaseException, path: Path) -> str:
    """``file:line`` of the deepest frame of `exc`'s traceback that is in `path` (else just the file)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def check_reward_file(path: str | Path, names: list[str]) -> Path:
    """Without running it: the file exists, parses, and defines each of `names` at its top level. Returns the
    resolved path; a problem is a TunedeckError naming the file (and line)."""
    file = Path(path).expanduser()
    try:
        source = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunedeckError(f"grpo.reward_file: {file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TunedeckError(f"grpo.reward_file: {file}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        tree = ast.parse(source, filename=str(file))
    except SyntaxError as exc:
        raise TunedeckError(f"{file}:{exc.lineno}: syntax error: {exc.msg}") from None
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)}
    missing = [n for n in names if n not in defined]
    if missing:
        have = ", ".join(sorted(n for n in defined if not n.startswith("_"))) or "none"
        raise TunedeckError(f"{file}: no function named {', '.join(repr(n) for n in missing)} "
                            f"(functions defined there: {have})")
    return file.resolve()


def _guarded(func: Callable[..., Any], path: Path) -> RewardFunc:
    """`func`, with an exception inside it or a wrong result reported as ``file:line: in NAME: ...``."""
    name = getattr(func, "__name__", "reward")

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> list[float]:
        try:
            result = func(*args, **kwargs)
        except TunedeckError:
            raise
        except Exception as exc:
            raise TunedeckError(f"{_where(exc, path)}: in reward function {name}: {type(exc).__name__}: {exc}") \
                from None
        completions = kwargs.get("completions", [])
        if not isinstance(result, list | tuple) or len(result) != len(completions):
            got = f"a list of {len(result)}" if isinstance(result, list | tuple) else type(result).__name__
            raise TunedeckError(f"{path}: reward function {name} must return a list of {len(completions)} numbers "
                                f"(one per completion), got {got}")
        try:
            return [None if r is None else float(r) for r in result]
        except (TypeError, ValueError):
            raise TunedeckError(f"{path}: reward function {name} returned a value that is not a number: "
                                f"{next(r for r in result if not isinstance(r, int | float))!r}") from None

    return call


def load_reward_file(path: str | Path, names: list[str]) -> list[RewardFunc]:
    """Import a user's reward file and return the named functions (guarded); errors name the file and line."""
    import importlib.util
    import sys

    file = check_reward_file(path, names)
    module_name = f"tunedeck_rewards_{abs(hash(str(file)))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise TunedeckError(f"{file}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise TunedeckError(f"{_where(exc, file)}: error while loading the reward file: "
                            f"{type(exc).__name__}: {exc}") from None
    out = []
    for name in names:
        func = getattr(module, name, None)
        if not callable(func):
            raise TunedeckError(f"{file}: {name} is not a function")
        out.append(_guarded(func, file))
    return out
