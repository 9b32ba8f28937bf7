"""Where tunedeck keeps its data: TUNEDECK_HOME, --home, or the XDG data dir."""

from __future__ import annotations

import os
from pathlib import Path

DB_NAME = "tunedeck.db"


def default_home() -> Path:
    """The XDG data dir for tunedeck: `$XDG_DATA_HOME/tunedeck`, else `~/.local/share/tunedeck`."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "tunedeck"


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The home to use: an explicit `--home`, else `TUNEDECK_HOME`, else the XDG default."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get("TUNEDECK_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return default_home()


def ensure_home(home: Path) -> Path:
    """Create `home` (mode 0700) if missing; tighten it to 0700 when it already holds a store."""
    try:
        home.parent.mkdir(parents=True, exist_ok=True)
        home.mkdir(mode=0o700)
        os.chmod(home, 0o700)  # mkdir's mode is filtered by the umask
        return home
    except FileExistsError:
        pass  # made earlier, or by another process just now
    if not home.is_dir():
        raise NotADirectoryError(f"tunedeck home {home} exists and is not a directory")
    elif (home / DB_NAME).exists():
        os.chmod(home, 0o700)
    return home


def subdir(home: Path, *parts: str) -> Path:
    """A directory under the home, created 0700 if missing."""
    path = home.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def job_dir(home: Path, job_id: int, *, create: bool = False) -> Path:
    """The folder of job `job_id` (`<home>/jobs/<id>`: its log, config, checkpoints and outputs); with `create`,
    made 0700 if missing."""
    return subdir(home, "jobs", str(job_id)) if create else home / "jobs" / str(job_id)


def job_log(home: Path, job_id: int) -> Path:
    """Where job `job_id` writes its log unless its row names another file."""
    return job_dir(home, job_id) / "job.log"
