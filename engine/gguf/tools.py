"""llama.cpp's conversion tools, taken from the llama-cpp-python source distribution of the installed version.

The sdist carries, under `vendor/llama.cpp/`, the converter scripts and gguf-py of the exact llama.cpp
commit the runtime links. They are fetched once (`pip download`, or a local sdist named by
TUNEDECK_LLAMA_SDIST) and unpacked into `<home>/tools/llama.cpp-<version>/`; later uses work offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path, PurePosixPath

from store.errors import TunedeckError
from store.home import subdir

SDIST_ENV = "TUNEDECK_LLAMA_SDIST"
WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "LICENSE", "conversion/", "gguf-py/")
READY_MARK = ".complete"


class ToolsUnavailable(TunedeckError):
    """llama.cpp's converter could not be fetched or unpacked."""


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (its sdist holds the matching converter)."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise ToolsUnavailable("llama-cpp-python is not installed: run the set-up (`make setup`)") from None


def tools_dir(home: Path, version: str | None = None) -> Path:
    """Where the converter for `version` lives (whether or not it is there yet)."""
    return home / "tools" / f"llama.cpp-{version or llama_cpp_version()}"


def _download_sdist(version: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "llama-cpp-python",
           "--disable-pip-version-check", "-d", str(into), f"llama-cpp-python=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ToolsUnavailable(
            f"could not download the llama-cpp-python {version} source distribution (it holds llama.cpp's "
            f"converter): {' / '.join(tail) or 'no file'}. Offline, put that sdist on this machine and set "
            f"{SDIST_ENV}=/path/to/llama_cpp_python-{version}.tar.gz")
    return found[0]


def _members(tar: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    picked = []
    for member in tar.getmembers():
        parts = PurePosixPath(member.name).parts
        if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp"):
            continue
        rel = PurePosixPath(*parts[3:])
        if ".." in rel.parts or not (member.isfile() or member.isdir()):
            continue
        if any(str(rel) == w or str(rel).startswith(w) for w in WANTED):
            picked.append((member, rel))
    return picked


def unpack_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack the converter, conversion/, gguf-py/ and LICENSE from `sdist` into `dest` (atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        try:
            with tarfile.open(sdist, "r:gz") as tar:
                picked = _members(tar)
                if not any(str(rel) == "convert_hf_to_gguf.py" for _, rel in picked):
                    raise ToolsUnavailable(f"{sdist}: no vendor/llama.cpp/convert_hf_to_gguf.py inside")
                for member, rel in picked:
                    target = tmp / rel
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, target.open("wb") as out:
                        shutil.copyfileobj(src, out)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ToolsUnavailable(f"{sdist}: cannot unpack the converter: {exc}") from exc
        (tmp / READY_MARK).write_text(sdist.name + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure_tools(home: Path, log: Callable[[str], None] = print) -> Path:
    """The unpacked converter directory for the installed llama-cpp-python, fetching it on first use."""
    version = llama_cpp_version()
    dest = tools_dir(home, version)
    if (dest / READY_MARK).is_file():
        return dest
    subdir(home, "tools")
    local = os.environ.get(SDIST_ENV)
    if local:
        sdist = Path(local).expanduser()
        if not sdist.is_file():
            raise ToolsUnavailable(f"{SDIST_ENV}={local}: no such file")
        log(f"unpacking llama.cpp's converter from {sdist}")
        return unpack_sdist(sdist, dest)
    with tempfile.TemporaryDirectory(prefix="sdist-", dir=dest.parent) as tmp:
        log(f"fetching llama-cpp-python {version} source (llama.cpp's converter), once")
        sdist = _download_sdist(version, Path(tmp))
        return unpack_sdist(sdist, dest)
