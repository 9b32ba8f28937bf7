"""The Hugging Face Hub for model sources: is a hub id reachable now, is it in the cache, fetch it.

Everything here answers within seconds: one request with a short timeout and no retries, so an offline
machine (HF_HUB_OFFLINE set, no network, a firewall) hears one clear line instead of minutes of backoff.
Downloads go to the standard Hugging Face cache (HF_HOME / HF_HUB_CACHE honoured) and resume there file by file:
a file already in the cache is not fetched again (huggingface_hub 2 resumes a file cut mid-way within one try,
after a transient error, but drops it when the try ends).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store.errors import NotFound, Refused, TunedeckError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
REACH_TIMEOUT_S = 5.0  # one request; no retries
# What a transformers model folder loads from; other formats in a repo (GGUF, ONNX, TF, Flax, originals) are skipped.
MODEL_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py")
BIN_PATTERNS = ("*.bin",)  # only when the repo has no safetensors
LOGIN = "run `hf auth login` (with a token that can read it)"


class GatedModel(Refused):
    """The repo needs an accepted licence and a login."""


@dataclass
class HubModel:
    """A hub repo as seen before downloading: its commit, the files to fetch and their total size."""

    repo_id: str
    sha: str
    files: list[str] = field(default_factory=list)
    size: int = 0
    gated: bool = False


def is_hub_id(ref: str) -> bool:
    """Whether `ref` reads as `org/name` (and not as a path)."""
    return bool(HUB_ID.match(ref)) and not ref.startswith((".", "/", "~")) and ".." not in ref


def offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (at import), or as the environment says now."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache() -> Path:
    """The Hugging Face cache folder in use (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_model(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of `repo_id` when it holds a loadable model (config and whole weights), else
    None. Never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from engine.model_folder import check_model_folder

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        return None
    try:
        check_model_folder(folder)
    except TunedeckError:
        return None
    return folder


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's transport errors (huggingface_hub 2 uses httpx2, 1.x httpx) and OSError."""
    try:
        import httpx2 as client
    except ImportError:
        import httpx as client  # type: ignore[no-redef]
    return client.HTTPError, OSError


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _unreachable(repo_id: str, exc: BaseException) -> Refused:
    reason = type(exc).__name__
    return Refused(f"{repo_id}: cannot reach the Hugging Face Hub at {_endpoint()} ({reason}); check the network, "
                   "or use a local model folder or GGUF")


def check_hub_model(repo_id: str, timeout: float = REACH_TIMEOUT_S) -> HubModel:
    """Ask the Hub about `repo_id` (one request each for its file list and its config, `timeout` each, no
    retries): its commit and the files a model folder needs. NotFound at once when offline (HF_HUB_OFFLINE) or
    when there is no such repo; Refused when the Hub cannot be reached; GatedModel when it needs a login."""
    if offline():
        raise NotFound(f"{repo_id}: not in the Hugging Face cache ({hub_cache()}) and HF_HUB_OFFLINE is set, so "
                      "it cannot be downloaded; unset HF_HUB_OFFLINE, or use a local model folder or GGUF")
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = HfApi().model_info(repo_id, timeout=timeout, files_metadata=True)
        names = {s.rfilename: (s.size or 0) for s in info.siblings or []}
        if "config.json" not in names:
            raise Refused(f"{repo_id}: not a transformers model on the Hub (no config.json in the repo)")
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json", revision=info.sha), timeout=timeout)
    except GatedRepoError:
        raise GatedModel(f"{repo_id} is a gated model: accept its terms on {_endpoint()}/{repo_id}, then "
                         f"{LOGIN}") from None
    except RepositoryNotFoundError:
        raise NotFound(f"{repo_id}: no such model on the Hub (if it is private, {LOGIN})") from None
    except RevisionNotFoundError as exc:
        raise NotFound(f"{repo_id}: {exc}") from None
    except OfflineModeIsEnabled as exc:
        raise _unreachable(repo_id, exc) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in {401, 403}:
            raise GatedModel(f"{repo_id}: the Hub refused access (HTTP {status}); {LOGIN}") from None
        raise Refused(f"{repo_id}: the Hub answered HTTP {status} ({str(exc).splitlines()[0][:200]})") from None
    except _network_errors() as exc:
        raise _unreachable(repo_id, exc) from None
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    patterns = MODEL_PATTERNS if has_safetensors else (*MODEL_PATTERNS, *BIN_PATTERNS)
    files = sorted(n for n in names if _matches(n, patterns))
    return HubModel(repo_id, str(info.sha), files, sum(names[n] for n in files),
                    gated=bool(getattr(info, "gated", False)))


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    import fnmatch

    return "/" not in name and any(fnmatch.fnmatch(name, p) for p in patterns)


def require_hub_model(repo_id: str, timeout: float = REACH_TIMEOUT_S) -> Path | None:
    """Refuse a hub id that can be neither loaded from the cache nor downloaded now; returns the cached snapshot
    when there is one (no request made)."""
    cached = cached_model(repo_id)
    if cached is not None:
        return cached
    check_hub_model(repo_id, timeout)
    return None


def progress_class(report: Callable[[int, int], None]) -> type:
    """A tqdm class for `snapshot_download` that draws nothing and calls `report(bytes done, bytes total)` as
    the files' bytes arrive (the Hub's aggregated byte bar; its transfer and file-count bars are ignored)."""
    from tqdm.auto import tqdm

    class _Reporting(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            self._bytes = str(kwargs.get("desc") or "").startswith("Reconstructing")
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self._bytes:
                report(int(self.n), int(self.total or 0))
            return out

    return _Reporting


def download_model(model: HubModel, report: Callable[[int, int], None]) -> Path:
    """Fetch `model`'s files at its commit into the Hugging Face cache (resuming what an earlier try left) and
    return the snapshot folder. A gated repo or a lost network ends with one line saying so."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(model.repo_id, revision=model.sha, allow_patterns=model.files,
                                      tqdm_class=progress_class(report), max_workers=4))
    except GatedRepoError:
        raise GatedModel(f"{model.repo_id} is a gated model: accept its terms on {_endpoint()}/{model.repo_id}, "
                         f"then {LOGIN}") from None
    except RepositoryNotFoundError:
        raise NotFound(f"{model.repo_id}: no such model on the Hub (if it is private, {LOGIN})") from None
    except (HfHubHTTPError, *_network_errors()) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise TunedeckError(f"{model.repo_id}: download stopped ({type(exc).__name__}: {reason}); the files fetched "
                            "so far stay in the cache: add it again to fetch the rest") from None
