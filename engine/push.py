"""The `push` job: upload an artifact to the Hugging Face Hub with huggingface-hub.

The token is huggingface-hub's own (its login or HF_TOKEN); tunedeck never reads, stores or logs it.
"""

from __future__ import annotations

from pathlib import Path

from engine.jobctx import JobContext
from store.errors import TunedeckError
from store.payloads import PushConfig


class PushFailed(TunedeckError):
    """The upload did not happen; the message says why."""


def run_push_job(ctx: JobContext) -> None:
    """Create the repo if needed and upload the artifact's file or folder."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    cfg = ctx.config_as(PushConfig)
    cfg.require("path", "repo_id")
    path, repo_id = Path(str(cfg.path)), str(cfg.repo_id)
    message = f"tunedeck: {path.name if cfg.name is None else cfg.name}"
    api = HfApi()
    ctx.log(f"pushing {path} to {repo_id} ({'private' if cfg.private else 'public'})")
    try:
        with ctx.interruptible():
            url = api.create_repo(repo_id, private=cfg.private, exist_ok=True)
            if path.is_dir():
                info = api.upload_folder(repo_id=repo_id, folder_path=str(path), commit_message=message)
            else:
                info = api.upload_file(path_or_fileobj=str(path), path_in_repo=path.name, repo_id=repo_id,
                                       commit_message=message)
    except OfflineModeIsEnabled:
        raise PushFailed("cannot push: Hugging Face Hub access is off (HF_HUB_OFFLINE=1); unset it and "
                         "retry") from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        hint = " (log in with `hf auth login`, or set HF_TOKEN)" if status in (401, 403) else ""
        raise PushFailed(f"push to {repo_id} failed: HTTP {status}{hint}") from None
    except OSError as exc:
        raise PushFailed(f"push to {repo_id} failed: {exc.strerror or exc} (no network?)") from None
    ctx.set_result(repo_url=str(url), commit=getattr(info, "oid", None))
    ctx.log(f"pushed: {url}")
