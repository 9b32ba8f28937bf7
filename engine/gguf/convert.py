"""Converting a transformers model folder (or a LoRA adapter) to GGUF with llama.cpp's own converter.

The converter runs in this process, from the unpacked sdist (see `engine.gguf.tools`), with its
own gguf-py first on `sys.path` (PyPI's `gguf` is older than what the converter expects). Output
goes to a temporary name and is renamed into place only when the converter finished.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import runpy
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

from store import diskfull
from store.errors import TunedeckError

OUTTYPES = ("f32", "f16", "bf16")


class ConversionError(TunedeckError):
    """The converter refused or failed; the message says why and what to do."""


class DiskFull(ConversionError, diskfull.DiskFull):
    """The disk filled up while writing a GGUF."""


def known_pre_tokenizers(tools: Path) -> list[str]:
    """The BPE pre-tokenizer names llama.cpp's converter knows (from its hash table)."""
    source = (tools / "conversion" / "base.py").read_text(encoding="utf-8")
    start = source.find("def get_vocab_base_pre")
    block = source[start:source.find("Marker: End get_vocab_base_pre", start)]
    return sorted(set(re.findall(r'res = "([^"]+)"', block)))


@contextlib.contextmanager
def _converter_imports(tools: Path) -> Iterator[None]:
    """Put the sdist's gguf-py and conversion package first on sys.path, with fresh module objects."""
    def purge() -> None:
        for name in list(sys.modules):
            if name in {"gguf", "conversion"} or name.startswith(("gguf.", "conversion.")):
                del sys.modules[name]

    saved_path, saved_argv = list(sys.path), list(sys.argv)
    purge()
    sys.path[:0] = [str(tools / "gguf-py"), str(tools)]
    try:
        yield
    finally:
        sys.path[:], sys.argv[:] = saved_path, saved_argv
        purge()


def _run_script(script: Path, argv: list[str], pre_tokenizer: str | None, tools: Path) -> None:
    with _converter_imports(tools):
        if pre_tokenizer:
            names = known_pre_tokenizers(tools)
            if pre_tokenizer not in names:
                raise ConversionError(f"--pre-tokenizer {pre_tokenizer!r} is not one llama.cpp knows; known: "
                                      + ", ".join(names))
            import conversion.base as base  # the sdist's module, found through the path set above

            def forced(self: object, tokenizer: object) -> str:
                logging.getLogger("tunedeck").warning("pre-tokenizer forced to %r by --pre-tokenizer", pre_tokenizer)
                return pre_tokenizer

            base.TextModel.get_vocab_base_pre = forced  # type: ignore[method-assign]
        sys.argv = [str(script), *argv]
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise ConversionError(f"llama.cpp's converter stopped (exit {exc.code}); see the job log") from None


def _release(exc: BaseException) -> None:
    """Log the converter's traceback, then drop its frames so its open output file is closed now
    (a deleted but still open .partial keeps its disk space until the handle goes)."""
    traceback.print_exception(exc)
    traceback.clear_frames(exc.__traceback__)
    gc.collect()


def _explain(exc: BaseException, model_dir: Path, out: Path) -> ConversionError:
    text = str(exc)
    if diskfull.is_disk_full(exc, out.parent):
        return DiskFull(diskfull.disk_full_message(out, "nothing was kept"))
    if isinstance(exc, NotImplementedError) and "pre-tokenizer" in text:
        return ConversionError(
            f"{model_dir}: llama.cpp does not recognize this tokenizer's BPE pre-tokenizer (it identifies one by "
            "hashing how a probe string is split, and this hash is not in its table). Guessing would give a GGUF "
            "that splits text differently from the model you trained. If you know which pre-tokenizer the model "
            "uses (e.g. it is a fine-tune of a known model), convert again with --pre-tokenizer NAME "
            "(`tunedeck convert --list-pre-tokenizers` shows the names)")
    if isinstance(exc, NotImplementedError | KeyError) and ("not supported" in text or "architecture" in text):
        return ConversionError(f"{model_dir}: llama.cpp cannot convert this model: {text}")
    return ConversionError(f"{model_dir}: conversion failed: {type(exc).__name__}: {text}")


def _convert(script_name: str, argv: list[str], model_dir: Path, out: Path, tools: Path,
             pre_tokenizer: str | None) -> Path:
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        _run_script(tools / script_name, [*argv, "--outfile", str(partial)], pre_tokenizer, tools)
        if not partial.is_file():
            raise ConversionError(f"{model_dir}: the converter finished without writing {partial.name}")
        os.replace(partial, out)
    except ConversionError:
        partial.unlink(missing_ok=True)
        raise
    except KeyboardInterrupt:
        partial.unlink(missing_ok=True)
        raise
    except Exception as exc:
        partial.unlink(missing_ok=True)
        error = _explain(exc, model_dir, out)
        _release(exc)
        raise error from None
    return out


@contextlib.contextmanager
def _readable_by_converter(model_dir: Path) -> Iterator[Path]:
    """`model_dir`, or when its tokenizer_config.json lacks the added tokens (transformers 5 saves), a
    view of it: links to its files plus a completed tokenizer_config.json. The model is never changed."""
    from engine.tokenizer_files import patched_config

    config = patched_config(model_dir)
    if config is None:
        yield model_dir
        return
    with tempfile.TemporaryDirectory(prefix="tunedeck-convert-") as tmp:
        view = Path(tmp) / model_dir.name  # the converter names the model after its folder
        view.mkdir()
        for item in model_dir.iterdir():
            if item.name != "tokenizer_config.json":
                (view / item.name).symlink_to(item.resolve())
        (view / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
        logging.getLogger("tunedeck").info("tokenizer_config.json lacks added_tokens_decoder: converting "
                                           "from a view with it filled in from tokenizer.json")
        yield view


def convert_model(tools: Path, model_dir: Path, out: Path, outtype: str = "f16",
                  pre_tokenizer: str | None = None, model_name: str | None = None) -> Path:
    """Convert a transformers model folder to a GGUF file at `out` (f32, f16 or bf16); `model_name` becomes its
    general.name (the converter otherwise names it after the folder: "Output" for a run's output/)."""
    if outtype not in OUTTYPES:
        raise ConversionError(f"--outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    if not (model_dir / "config.json").is_file():
        raise ConversionError(f"{model_dir}: not a model folder (no config.json)")
    with _readable_by_converter(model_dir) as source:
        argv = [str(source), "--outtype", outtype, *(["--model-name", model_name] if model_name else [])]
        return _convert("convert_hf_to_gguf.py", argv, model_dir, out, tools, pre_tokenizer)


def convert_adapter(tools: Path, adapter_dir: Path, base_dir: Path, out: Path, outtype: str = "f16") -> Path:
    """Convert a PEFT LoRA adapter to a GGUF adapter for the GGUF of `base_dir` (llama.cpp's --lora)."""
    if outtype not in OUTTYPES:
        raise ConversionError(f"--outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConversionError(f"{adapter_dir}: not a LoRA adapter (no adapter_config.json)")
    if not (base_dir / "config.json").is_file():
        raise ConversionError(f"{base_dir}: the adapter's base model folder is missing (no config.json)")
    return _convert("convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(base_dir), "--outtype", outtype],
                    adapter_dir, out, tools, None)
