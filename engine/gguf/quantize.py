"""Quantizing a GGUF in-process with llama.cpp's quantizer (`llama_cpp.llama_model_quantize`)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.gguf.convert import ConversionError, DiskFull
from store.diskfull import disk_full_message

QUANT_TYPES: dict[str, str] = {
    "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
}
FALLBACK_RE = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback quantization")
FALLBACK_TENSOR_RE = re.compile(r"^warning: (\S+)\s+- ncols\s+\d+ not divisible by (\d+) \(required for type\s+(\w+)\)"
                                r" -> falling back to\s+(\w+)", re.MULTILINE)


def parse_quant_list(text: str) -> list[str]:
    """`q8_0,q4_k_m` -> ['q8_0', 'q4_k_m'], refusing unknown types by name."""
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in QUANT_TYPES]
    if unknown:
        raise ConversionError(f"unknown quant type {', '.join(unknown)}; expected some of {', '.join(QUANT_TYPES)}")
    return list(dict.fromkeys(types))


@contextlib.contextmanager
def _capture_fd2() -> Iterator[list[str]]:
    """Collect what C code writes to fd 2 (llama.cpp logs there), then echo it to our stderr."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            captured.append(text)
            sys.stderr.write(text)
            sys.stderr.flush()


TENSOR_LINE_RE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+\S+\s+- \[[^\]]*\], type =\s*(\w+)"
                            r"(?:, converting to (\w+))?", re.MULTILINE)


def logged_tensor_types(log: str) -> dict[str, int] | None:
    """Tensor types of the output as llama.cpp's quantizer reports them, one line per tensor (None if the
    log does not list every tensor). Much faster than reading the file back: GGUFReader parses the whole
    vocabulary (seconds for a 50k-token model)."""
    found = TENSOR_LINE_RE.findall(log)
    if not found or len(found) != int(found[-1][1]):
        return None
    return dict(Counter((converted or kept).upper() for _, _, kept, converted in found))


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each ggml type a GGUF holds (the GGUF reader's count)."""
    from engine.gguf.reader import read_metadata

    return dict(read_metadata(path).tensor_types)


def quantize(src: Path, out: Path, qtype: str, threads: int | None = None) -> dict[str, Any]:
    """Quantize `src` into `out` as `qtype`; returns a report of tensor types and k-quant fallbacks."""
    import llama_cpp

    from engine.cpu_threads import default_threads

    if qtype not in QUANT_TYPES:
        raise ConversionError(f"unknown quant type {qtype!r}; expected one of {', '.join(QUANT_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[qtype])
    params.nthread = threads or default_threads(cap=None)
    params.allow_requantize = True
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with _capture_fd2() as log:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
        text = "".join(log)
        if rc != 0:
            if "No space left" in text or shutil.disk_usage(out.parent).free < src.stat().st_size // 8:
                raise DiskFull(disk_full_message(out, "nothing was kept"))
            last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no reason given"]
            raise ConversionError(f"llama.cpp could not quantize {src.name} to {qtype}: {last[0].strip()}")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    types = logged_tensor_types(text) or tensor_types(out)
    report: dict[str, Any] = {"type": qtype, "tensor_types": types, "n_tensors": sum(types.values())}
    fell_back = fallback_tensors(text)
    report["fallback"] = len(fell_back)
    if m := FALLBACK_RE.search(text):
        report["fallback"] = int(m.group(1))
        report["fallback_tensors"] = fell_back
        report["note"] = (f"{m.group(1)} of {m.group(2)} tensors have rows not divisible by the k-quant block "
                          f"and were quantized with llama.cpp's fallback type instead: {fallback_summary(fell_back)}")
    return report


def fallback_tensors(log: str) -> dict[str, str]:
    """The tensors llama.cpp's quantizer could not give the k-quant it wanted: name -> 'wanted->used'."""
    return {name: f"{wanted.lower()}->{used.lower()}" for name, _, wanted, used in FALLBACK_TENSOR_RE.findall(log)}


def fallback_summary(fell_back: dict[str, str]) -> str:
    """`fallback_tensors` in a line: per change of type, how many and which tensors (by their name within a
    block, with how many blocks), e.g. `12 q4_k->q5_0 (attn_k x2, attn_q x2, ...)`."""
    groups: dict[str, Counter[str]] = {}
    for name, change in fell_back.items():
        groups.setdefault(change, Counter())[re.sub(r"^blk\.\d+\.", "", name)] += 1
    parts = []
    for change, names in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
        listed = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(names.items()))
        parts.append(f"{sum(names.values())} {change} ({listed})")
    return "; ".join(parts) or "none listed in llama.cpp's log"
