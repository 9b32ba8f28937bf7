"""The one GGUF metadata reader: what a GGUF file says about its model, read with `gguf.GGUFReader`, and
checks that it is whole. The chat pane and `tunedeck chat`, the converter's fidelity check, `model add`'s GGUF
path, the quantizer's report and the serve/Modelfile export all read GGUFs through `read_metadata`.

Reading is not cheap (the tokenizer's arrays are parsed: ~2.5 s for a 49k vocabulary on a
slow core), so results are cached per path, size and modification time.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.chat.errors import CorruptGGUF, ModelNotFound, NotGGUF

GGUF_MAGIC = b"GGUF"
_cache: dict[tuple[str, int, int], GGUFInfo] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class GGUFInfo:
    """The facts of a model file: what the chat pane shows, what the fidelity check and the export use."""

    path: str
    size: int  # bytes on disk
    architecture: str
    name: str
    parameters: int  # elements of all tensors
    file_type: str  # e.g. "Q4_1", "F16"; from general.file_type, else the commonest weight type
    context_length: int | None  # what the model was trained for
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    tensor_count: int
    bos_token: str = ""  # the BOS/EOS tokens' text from the GGUF vocabulary ('' when there is none)
    eos_token: str = ""
    pre_tokenizer: str | None = None  # tokenizer.ggml.pre, e.g. "smollm", "gpt-2"
    tokenizer_model: str | None = None  # tokenizer.ggml.model, e.g. "gpt2", "llama"
    tensor_types: dict[str, int] = field(default_factory=dict)  # how many tensors of each ggml type

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    @property
    def parameters_text(self) -> str:
        """135M, 1.2B, ..."""
        n = self.parameters
        for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if n >= scale:
                value = n / scale
                return f"{value:.0f}{unit}" if value >= 100 else f"{value:.1f}{unit}".replace(".0", "")
        return str(n)

    def summary(self) -> str:
        """One line: architecture, size, quantization, trained context, template."""
        ctx = f"ctx {self.context_length}" if self.context_length else "ctx ?"
        template = "chat template" if self.has_chat_template else "no chat template"
        return f"{self.architecture} · {self.parameters_text} params · {self.file_type} · {ctx} · {template}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["has_chat_template"] = self.has_chat_template
        data.pop("chat_template")
        data.pop("tensor_types")
        return data


def check_magic(path: Path) -> None:
    """ModelNotFound or NotGGUF unless `path` is a file starting with the GGUF magic."""
    if not path.exists():
        raise ModelNotFound(f"{path}: no such file")
    if not path.is_file():
        raise NotGGUF(f"{path} is a directory, not a GGUF file")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != GGUF_MAGIC:
        raise NotGGUF(f"{path} is not a GGUF file (it does not start with 'GGUF'); chat needs a .gguf model, "
                      "so convert the model to GGUF first")  # fmt: skip


def _scalar(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:
        return None


def _file_type(reader: Any) -> str:
    import gguf

    code = _scalar(reader, "general.file_type")
    if isinstance(code, int):
        try:
            return gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        if len(tensor.shape) >= 2:
            name = gguf.GGMLQuantizationType(tensor.tensor_type).name
            counts[name] = counts.get(name, 0) + int(tensor.n_elements)
    return max(counts, key=lambda k: counts[k]) if counts else "?"


def _token(reader: Any, token_id: int | None) -> str:
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None or token_id is None or not 0 <= token_id < len(tokens.data):
        return ""
    return str(tokens.contents(token_id))


def _read(path: Path, size: int) -> GGUFInfo:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, IndexError, struct or numpy errors on bad bytes
        raise CorruptGGUF(f"{path} looks like a GGUF file but cannot be read ({type(exc).__name__}: {exc}); "
                          "it is probably truncated or damaged") from None  # fmt: skip
    end = 0
    for tensor in reader.tensors:
        end = max(end, int(tensor.data_offset) + int(tensor.n_bytes))
    if end > size:
        raise CorruptGGUF(f"{path} is truncated: its tensors need {end:,} bytes but the file has {size:,}")
    arch = _scalar(reader, "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise CorruptGGUF(f"{path} has no general.architecture key; it is not a model GGUF")
    template = _scalar(reader, "tokenizer.chat_template")
    context = _scalar(reader, f"{arch}.context_length")
    bos = _scalar(reader, "tokenizer.ggml.bos_token_id")
    eos = _scalar(reader, "tokenizer.ggml.eos_token_id")
    bos_id = int(bos) if isinstance(bos, int) else None
    eos_id = int(eos) if isinstance(eos, int) else None
    pre, model = _scalar(reader, "tokenizer.ggml.pre"), _scalar(reader, "tokenizer.ggml.model")
    types = Counter(gguf.GGMLQuantizationType(t.tensor_type).name for t in reader.tensors)
    return GGUFInfo(
        path=str(path),
        size=size,
        architecture=arch,
        name=str(_scalar(reader, "general.name") or path.stem),
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        file_type=_file_type(reader),
        context_length=int(context) if isinstance(context, int) else None,
        chat_template=template if isinstance(template, str) and template.strip() else None,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        tensor_count=len(reader.tensors),
        bos_token=_token(reader, bos_id),
        eos_token=_token(reader, eos_id),
        pre_tokenizer=pre if isinstance(pre, str) else None,
        tokenizer_model=model if isinstance(model, str) else None,
        tensor_types=dict(types),
    )


def read_metadata(path: str | Path) -> GGUFInfo:
    """The model facts of a GGUF file; ModelNotFound, NotGGUF or CorruptGGUF when it cannot be used."""
    path = Path(path).expanduser().resolve()
    check_magic(path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    info = _read(path, stat.st_size)
    with _cache_lock:
        _cache[key] = info
    return info


def known_architectures() -> set[str]:
    """The architecture names the installed gguf package knows (llama.cpp knows about the same set)."""
    import gguf

    return set(gguf.MODEL_ARCH_NAMES.values())
