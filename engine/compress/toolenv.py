"""llm-compressor's own Python environment: a tool, like llama.cpp's converter.

llmcompressor 0.14 pins transformers 5.15-5.17 and compressed-tensors 0.19, while tunedeck runs a newer
transformers; pip cannot put both in one environment. So llm-compressor gets a venv of its own under
`<home>/tools/compressor-<version>/`, made on first use (or by `tunedeck tools fetch compressor`): llmcompressor
and its pinned dependencies are installed there, torch is not. torch (hundreds of MB, and the CUDA build on a GPU
box) is shared with tunedeck's environment: a folder of links to its packages, added by a `.pth` file AFTER the
venv's own site-packages, so the tool's transformers wins and tunedeck's torch is used. Only torch (and the CUDA
libraries it loads) are shared; nothing else of tunedeck's environment is visible there.

`TUNEDECK_COMPRESSOR_PYTHON=/path/to/python` uses an existing environment with llmcompressor instead.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from store.errors import TunedeckError
from store.home import subdir

LLMCOMPRESSOR = "0.14.0.1"
PYTHON_ENV = "TUNEDECK_COMPRESSOR_PYTHON"
READY_MARK = ".complete"
# Which of torch's own requirements are shared with it rather than installed (a CUDA torch loads its libraries
# from these).
SHARED_PREFIXES = ("nvidia-", "triton", "cuda-")
PIP_TIMEOUT_S = 1800


class CompressorUnavailable(TunedeckError):
    """llm-compressor's environment could not be found or made."""


def toolenv_dir(home: Path) -> Path:
    """Where the compressor venv lives under a home (whether or not it is there yet)."""
    return home / "tools" / f"compressor-{LLMCOMPRESSOR}"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        raise CompressorUnavailable("torch is not installed in tunedeck's environment: run the set-up") from None


def _stamp() -> dict[str, str]:
    """What a built venv depends on: a venv made for another torch or Python is rebuilt."""
    return {"llmcompressor": LLMCOMPRESSOR, "torch": _torch_version(), "python": sys.version.split()[0],
            "torch_path": str(Path(metadata.distribution("torch").locate_file("")).resolve())}


def is_ready(venv: Path) -> bool:
    """True when `venv` holds a complete build for this tunedeck environment."""
    try:
        return json.loads((venv / READY_MARK).read_text()) == _stamp() and _python(venv).exists()
    except (OSError, ValueError):
        return False


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=PIP_TIMEOUT_S)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()
                 and "is ignored: it is neither a file nor a directory" not in ln]
        raise CompressorUnavailable(f"{what} failed (exit {proc.returncode}): {' / '.join(lines[-4:])}. It needs "
                                    f"PyPI once; offline, set {PYTHON_ENV} to a python with llmcompressor "
                                    f"{LLMCOMPRESSOR} installed")
    return proc.stdout


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _shared_names() -> set[str]:
    """torch and the native libraries it requires (a CUDA build's nvidia-* and triton): shared, never installed.
    Pure-Python packages that merely share a prefix (nvidia-ml-py) are installed in the tool venv as usual."""
    from packaging.requirements import Requirement

    names = {"torch"}
    for spec in metadata.requires("torch") or []:
        req = Requirement(spec)
        if (req.marker is None or req.marker.evaluate({"extra": ""})) and _norm(req.name).startswith(SHARED_PREFIXES):
            names.add(_norm(req.name))
    return names


def _shared(name: str) -> bool:
    return _norm(name) in _shared_names()


def _resolve(python: Path, workdir: Path) -> list[str]:
    """`name==version` of everything llmcompressor needs beside tunedeck's torch (pip's own resolver, dry run)."""
    report = workdir / "resolve.json"
    base_torch = _torch_version().split("+")[0]
    _run([str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
          str(report), f"llmcompressor=={LLMCOMPRESSOR}", f"torch=={base_torch}"],
         f"resolving llmcompressor {LLMCOMPRESSOR} with torch {base_torch}")
    picked = []
    for item in json.loads(report.read_text())["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if not _shared(name):
            picked.append(f"{name}=={version}")
    return picked


def _shared_tops() -> list[Path]:
    """The top-level files and folders of tunedeck's torch (and the CUDA libraries beside it), from their RECORDs."""
    tops: dict[str, Path] = {}
    for dist in metadata.distributions():
        if not _shared(dist.metadata["Name"] or ""):
            continue
        for row in csv.reader((dist.read_text("RECORD") or "").splitlines()):
            first = row[0].split("/")[0] if row else ""
            if first and first != ".." and not first.endswith(".pth"):
                tops.setdefault(first, Path(dist.locate_file(first)))
    return [p for p in tops.values() if p.exists()]


def _share_torch(venv: Path) -> None:
    """Link tunedeck's torch into `venv/shared-torch`, searched after the venv's own packages."""
    shared = venv / "shared-torch"
    shared.mkdir(exist_ok=True)
    for path in _shared_tops():
        link = shared / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz-tunedeck-shared-torch.pth").write_text(str(shared.resolve()) + "\n")


def build_toolenv(dest: Path, log: Callable[[str], None] = print) -> Path:
    """Make the compressor venv at `dest` (atomically: built beside it, renamed when complete); its python."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    start = time.monotonic()
    try:
        venv = tmp / "venv"
        log(f"making llm-compressor's environment ({LLMCOMPRESSOR}) once; tunedeck's torch is shared with it")
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        pins = _resolve(_python(venv), tmp)
        (tmp / "requirements.txt").write_text("\n".join(pins) + "\n")
        log(f"installing {len(pins)} packages (pinned by pip's resolver; torch {_torch_version()} shared)")
        _run([str(_python(venv)), "-m", "pip", "install", "--quiet", "--no-deps", "-r",
              str(tmp / "requirements.txt")], "pip install llmcompressor")
        _share_torch(venv)
        _run([str(_python(venv)), "-c", "import torch, transformers, compressed_tensors, llmcompressor"],
             "importing llmcompressor in its environment")
        _run([str(_python(venv)), "-m", "pip", "check"], "pip check in llm-compressor's environment")
        shutil.copy(tmp / "requirements.txt", venv / "tunedeck-requirements.txt")
        (venv / READY_MARK).write_text(json.dumps(_stamp()))
        if dest.exists():
            shutil.rmtree(dest)
        # A venv's scripts name its own path: it is built at a temporary name, so the worker is always started as
        # `<dest>/bin/python worker.py` (which finds its site-packages relative to itself), never through them.
        os.replace(venv, dest)
        _share_torch(dest)  # the .pth names the folder by its final path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"llm-compressor's environment is ready in {time.monotonic() - start:.0f} s: {dest}")
    return _python(dest)


def cache_dir() -> Path:
    """A machine-wide place for a venv made for this tunedeck environment (the test suite's; `make test` fills
    it), keyed by what the venv depends on, so two checkouts with different environments never share one."""
    import hashlib

    key = hashlib.sha256(json.dumps(_stamp(), sort_keys=True).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tunedeck" / f"compressor-{LLMCOMPRESSOR}-{key}"


def compressor_python(home: Path, log: Callable[[str], None] = print) -> Path:
    """The python that runs llm-compressor: $TUNEDECK_COMPRESSOR_PYTHON, else the home's tool venv (made now if
    missing or made for another torch or Python)."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        python = Path(given).expanduser()
        if not python.exists():
            raise CompressorUnavailable(f"{PYTHON_ENV}={given}: no such file")
        return python
    dest = toolenv_dir(home)
    if is_ready(dest):
        return _python(dest)
    subdir(home, "tools")
    return build_toolenv(dest, log)


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.compress.toolenv DEST|--cache`: make (or check) a compressor venv at DEST, or in the
    machine-wide cache (`cache_dir()`); prints its python."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine.compress.toolenv DEST|--cache", file=sys.stderr)
        return 2
    dest = cache_dir() if args[0] == "--cache" else Path(args[0]).expanduser().resolve()
    try:
        python = _python(dest) if is_ready(dest) else build_toolenv(dest, lambda m: print(m, file=sys.stderr))
    except CompressorUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
