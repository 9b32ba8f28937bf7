"""The warm engine: a process that imports the engine's heavy libraries (torch, transformers, peft, trl, datasets)
once and forks a child for each job, so a job starts in well under a second instead of spending 5-10 s of CPU
importing them. A runner asks it for a job's process (`run_warm`) and falls back to a plain subprocess whenever it
cannot be used; the job itself runs exactly as in a plain `python -m engine job` process.

- One warm engine serves every runner whose environment matches (the `warm_key`), across homes. It lives in its
  own session like the runners, exits after `IDLE_S` without work, and is found by an abstract Unix socket name
  (Linux; nothing written to disk but its log). Both ends check the other's uid (SO_PEERCRED).
- The child takes the job's environment, working folder and log, its own session, and an argv that `ps` and
  /proc show as the plain engine's (`python -m engine --home H job --id N`).
- tunedeck's own modules are imported in the child, after the fork, so an edit never runs stale code; the key
  covers the libraries' versions, the interpreter and every environment variable they may read at import.
- Not used where a GPU is visible: CUDA does not survive a fork once initialised, and importing bitsandbytes may
  initialise it. GPU jobs start cold.

Imports only the standard library: the runner loads this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

IDLE_S = 300.0  # a warm engine with no child and no request for this long exits
START_WAIT_S = 300.0  # how long a runner waits on a warm engine still importing before starting the job cold
ARGV_ROOM = 4096  # bytes of argv the warm engine reserves so that each child can show its own command line
PRELOAD: dict[str, tuple[str, ...]] = {  # module: names whose (lazy) import to trigger too
    "torch": (),
    "transformers": ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "Trainer", "TrainingArguments",
                     "TrainerCallback"),
    "peft": ("LoraConfig", "PeftModel", "get_peft_model"),
    "trl": ("SFTConfig", "SFTTrainer", "DPOConfig", "DPOTrainer"),
    "datasets": ("Dataset",),
    "accelerate": (),
    "safetensors.torch": (),
}
# Read when used, not when a library is imported, or tunedeck's own: a warm engine started with other values
# still serves a job that has these.
_CALL_TIME = {"PWD", "OLDPWD", "SHLVL", "_", "XDG_DATA_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
              "COLUMNS", "LINES"}
_CALL_TIME_PREFIXES = ("TUNEDECK_", "PYTEST_", "SSH_", "TEXTUAL_")  # the engine never imports textual
KEYS_KEPT = 100  # how many keys' first cold starts `warm-keys` remembers


def enabled(env: dict[str, str]) -> bool:
    """Whether jobs with environment `env` may start from a warm engine: not switched off with
    TUNEDECK_WARM_ENGINE=0, on Linux, and no GPU visible to them."""
    if env.get("TUNEDECK_WARM_ENGINE", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if env.get("CUDA_VISIBLE_DEVICES") == "" and env.get("HIP_VISIBLE_DEVICES", "") == "":
        return True
    dev = Path("/dev")
    return not (any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists())


def warm_key(env: dict[str, str]) -> str:
    """What a warm engine's imports depend on: the interpreter, the preloaded libraries' files and the
    environment they may read while importing."""
    parts = [sys.executable, sys.version]
    for module in PRELOAD:
        try:
            spec = importlib.util.find_spec(module.split(".")[0])
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec and spec.origin else ""
        parts.append(f"{module}={origin}:{os.stat(origin).st_mtime_ns if origin else 0}")
    parts += sorted(f"{k}={v}" for k, v in env.items()
                    if k not in _CALL_TIME and not k.startswith(_CALL_TIME_PREFIXES))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def warm_dir(home: Path, env: dict[str, str]) -> Path:
    """Where warm engines log: $TUNEDECK_WARM_DIR when set (warm engines shared by several homes), else the
    home's logs folder."""
    named = env.get("TUNEDECK_WARM_DIR")
    return Path(named) if named else home / "logs"


def socket_name(folder: Path, key: str) -> str:
    """The abstract socket name of the warm engine for `folder` and `key` (no file: no path length limit)."""
    digest = hashlib.sha256(f"{folder.resolve()}\0{key}".encode()).hexdigest()[:32]
    return f"\0tunedeck-warm-{os.getuid()}-{digest}"


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _connect(name: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(name)
    except OSError:
        sock.close()
        return None
    if _peer_uid(sock) != os.getuid():  # someone else's socket squatting the name: never hand it a job
        sock.close()
        return None
    return sock


def _start(folder: Path, name: str, env: dict[str, str]) -> None:
    """Start a warm engine for `name` in the background (it exits at once if another one won the race)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "warm-engine.log").open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-P", "-m", "engine.warm", "--name", name.lstrip("\0"), "--room", " " * ARGV_ROOM],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, env=env, cwd="/")


def start_warm(home: Path, env: dict[str, str], wait_s: float = START_WAIT_S) -> int | None:
    """Start the warm engine that serves jobs with environment `env` (if none does) and wait until it has
    imported everything; its pid, or None when it is not enabled or not ready in `wait_s` (with `wait_s` 0:
    without waiting)."""
    if not enabled(env):
        return None
    folder = warm_dir(home, env)
    name = socket_name(folder, warm_key(env))
    if wait_s <= 0:  # start it and go on
        if (sock := _connect(name)) is None:
            _start(folder, name, env)
        else:
            sock.close()
        return None
    deadline = time.monotonic() + wait_s
    started = False
    while time.monotonic() < deadline:
        sock = _connect(name)
        if sock is None:
            if not started:  # once: it binds its name within a fraction of a second
                _start(folder, name, env)
                started = True
            time.sleep(0.1)
            continue
        with sock:
            try:
                request = json.dumps({"ping": True}).encode()
                sock.sendall(struct.pack("!I", len(request)) + request)
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                ready = json.loads(sock.makefile("rb").readline() or b"{}").get("ready")
            except (OSError, ValueError):
                ready = None
        if isinstance(ready, int):
            return ready
        time.sleep(0.1)
    return None


def run_warm(home: Path, argv: list[str], env: dict[str, str], log_fd: int) -> int | None:
    """Run the engine command `argv` (`[python, "-m", "engine", ...]`) in a child of a warm engine, with
    environment `env` and stdout and stderr to `log_fd`, and wait for it: its exit status as
    `subprocess.run` gives it, or None when no warm engine could take it (the caller runs it cold)."""
    if argv[:3] != [sys.executable, "-m", "engine"] or not enabled(env):
        return None
    folder = warm_dir(home, env)
    name = socket_name(folder, warm_key(env))
    sock = _connect(name)
    if sock is None:  # this job starts cold, while a warm engine imports for the next ones
        try:
            if _seen_before(folder, name):
                _start(folder, name, env)
        except OSError:  # a full disk, an unwritable folder: the job starts cold all the same
            pass
        return None
    with sock:
        request = json.dumps({"argv": argv[1:], "env": env, "cwd": str(home)}).encode()
        try:
            message = struct.pack("!I", len(request)) + request
            sent = socket.send_fds(sock, [message], [log_fd])
            sock.sendall(message[sent:])
            sock.settimeout(START_WAIT_S)  # a warm engine that is still importing answers once it is done
            reply = sock.makefile("rb")
            started = json.loads(reply.readline() or b"{}")
        except (OSError, ValueError):
            return None
        pid = started.get("pid")
        if not isinstance(pid, int):
            return None  # it could not fork: run the job cold
        sock.settimeout(None)
        try:
            ended = json.loads(reply.readline() or b"{}")
        except (OSError, ValueError):
            ended = {}
    if isinstance(ended.get("exit"), int):
        return ended["exit"]
    from store.jobs import process_gone  # (the runner has it loaded already)

    while not process_gone(pid, None):  # the warm engine went away first: the job (now init's child) may still run
        time.sleep(1)
    return 1


def _seen_before(folder: Path, name: str) -> bool:
    """Whether a job with this warm engine's key started here before; remembers it if not. An environment seen
    once (a one-off setting) never costs a warm engine's imports and memory."""
    digest = name.rsplit("-", 1)[-1]
    path = folder / "warm-keys"
    try:
        seen = path.read_text().split()
    except OSError:
        seen = []
    if digest in seen:
        return True
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"warm-keys.{os.getpid()}.tmp")
    tmp.write_text("".join(f"{d}\n" for d in [*seen, digest][-KEYS_KEPT:]))
    tmp.replace(path)  # a race between two runners loses a key at worst: one more cold start
    return False


# --- the warm engine's side ----------------------------------------------------------------------------------


def _preload() -> None:
    import importlib
    import warnings

    from engine.quiet import quiet_library_output

    quiet_library_output()  # as a job process does before its imports (some settings are read at import)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module, names in PRELOAD.items():
            try:
                mod = importlib.import_module(module)
                for attr in names:
                    getattr(mod, attr)
            except Exception as exc:  # a missing optional library: its jobs import it themselves
                print(f"warm engine: not preloaded {module}: {type(exc).__name__}: {exc}", flush=True)


def _read_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    conn.settimeout(10)
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 4)
    if len(data) < 4:
        raise ValueError("short request")
    (size,) = struct.unpack("!I", data[:4])
    body = data[4:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("request cut short")
        body += chunk
    return json.loads(body), fds


def _show_argv(words: list[str]) -> None:
    """Make /proc/self/cmdline (what `ps` and `pgrep -f` read) show `words` instead of the warm engine's own
    command line, by writing into the argv area the warm engine reserved (`--room`)."""
    import ctypes

    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[-1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48 and 49 of proc(5))
    text = b"\0".join(w.encode() for w in words) + b"\0"
    if len(text) >= end - start:
        return
    ctypes.memmove(start, text + b"\0" * (end - start - len(text)), end - start)


def _child(request: dict[str, object], fds: list[int]) -> None:
    """In the forked child: become the job's engine process, run it, and never return."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        log = fds[0]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 1 << 16)
        os.environ.clear()
        os.environ.update(request["env"])  # type: ignore[arg-type]
        os.chdir(str(request["cwd"]))
        import tempfile

        tempfile.tempdir = None  # follow the job's TMPDIR, not the one the imports may have cached
        argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
        assert argv[:2] == ["-m", "engine"], argv
        with contextlib.suppress(OSError, ValueError):
            _show_argv([sys.executable, *argv])
        from engine.__main__ import main

        sys.argv = [str(Path(__file__).with_name("__main__.py")), *argv[2:]]
        code = main(argv[2:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def serve(name: str, idle_s: float = IDLE_S) -> int:
    """Bind `name`, import the heavy libraries, then fork a child per request until idle for `idle_s`."""
    import selectors

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + name)
    except OSError:
        return 0  # another warm engine serves this name
    listener.listen(64)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    started = time.monotonic()
    _preload()
    print(f"[{time.strftime('%H:%M:%S')}] warm engine {os.getpid()} ready in {time.monotonic() - started:.1f} s",
          flush=True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    last = time.monotonic()
    while children or time.monotonic() - last < idle_s:
        for key, _ in selector.select(timeout=5):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                _accept(conn, children)
                last = time.monotonic()
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                with conn, contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            last = time.monotonic()
    print(f"[{time.strftime('%H:%M:%S')}] warm engine {os.getpid()} idle for {idle_s:.0f} s: exiting", flush=True)
    return 0


def _accept(conn: socket.socket, children: dict[int, socket.socket]) -> None:
    """Fork the child one request asks for, and tell the runner its pid (the exit status follows at its end)."""
    fds: list[int] = []
    try:
        if _peer_uid(conn) != os.getuid():
            raise PermissionError("a request from another user")
        request, fds = _read_request(conn)
        if request.get("ping"):  # answered once the imports are done, as every request is
            conn.sendall(json.dumps({"ready": os.getpid()}).encode() + b"\n")
            conn.close()
            return
        if not fds:
            raise ValueError("no log file given")
        conn.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            if conn.recv(1, socket.MSG_PEEK) == b"":
                raise ValueError("the runner stopped waiting (it runs the job itself)")
        pid = os.fork()
        if pid == 0:
            _child(request, fds)
        children[pid] = conn
        conn.settimeout(5)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except (OSError, ValueError) as exc:
        print(f"warm engine: refused a request: {type(exc).__name__}: {exc}", flush=True)
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.warm")
    parser.add_argument("--name", required=True, help="the abstract socket name to serve")
    parser.add_argument("--room", default="", help="argv space kept for the children's command lines")
    parser.add_argument("--idle", type=float, default=IDLE_S)
    args = parser.parse_args(argv)
    return serve(args.name, args.idle)


if __name__ == "__main__":
    sys.exit(main())
