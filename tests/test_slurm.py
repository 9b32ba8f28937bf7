"""Runs on a real single-node SLURM (Debian's slurm-wlm: munged, slurmctld and slurmd started here, in a temp
dir): `run new --cluster slurm` submits through sbatch/srun, the engine on the node writes events to the job
folder (never the home's database), and the local runner follows them into SQLite; cancel is scancel; a job
killed by SLURM is interrupted and `run resume` resubmits it from its last checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli

DAEMONS = ("munged", "slurmctld", "slurmd")
SBIN = Path("/usr/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _slurm_conf(root: Path, host: str) -> str:
    return f"""ClusterName=tunedeck-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def test_events_apply_once_however_often_they_are_read(store, tmp_path: Path) -> None:
    """The follower's side without SLURM: a torn last line waits, re-reading the whole file changes nothing,
    the artifact is registered once and the result names its id here, and a SIGTERM nobody asked for here
    (SLURM's time limit, a node set down) leaves the run interrupted, not cancelled."""
    from engine.cluster.events import EventReader, EventWriter
    from engine.cluster.follow import Applier
    from store.jobs import create_job
    from store.projects import create_project

    with store.write() as session:
        project = create_project(session, "p")
        jobs = [create_job(session, project.id, "train", {}, slot="slurm").id for _ in range(2)]
    out = tmp_path / "output"
    out.mkdir()
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    t = time.time()
    writer.write([{"type": "status", "status": "running", "error": None},
                  {"type": "progress", "progress": 0.5, "step": 2, "total_steps": 4},
                  {"type": "metrics", "points": [[1, "loss", 2.0, t], [2, "loss", 1.5, t], [2, "grad_norm", 0.3, t]]},
                  {"type": "artifact", "id": 77, "project_id": project.id, "parent_id": None, "kind": "adapter",
                   "name": "a", "path": str(out), "size": 3, "sha256": "x", "meta": {"steps": 2}},
                  {"type": "result", "result": {"artifact_id": 77, "steps": 2}}])
    with path.open("a") as fh:
        fh.write('{"type": "status", "status": "compl')  # the node is still writing this line
    for _ in range(2):  # a restarted follower reads the file from the start again
        reader, applier = EventReader(path), Applier(store, jobs[0], tmp_path)
        applier.apply(reader.read_new())
        assert not applier.ended
    with path.open("a") as fh:
        fh.write('eted", "error": null}\n')
    applier.apply(reader.read_new())
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM metrics WHERE job_id = ?", (jobs[0],)).fetchone() == (3,)
        arts = conn.execute("SELECT id FROM artifacts WHERE job_id = ?", (jobs[0],)).fetchall()
        status, result, step = conn.execute("SELECT status, result, step FROM jobs WHERE id = ?", (jobs[0],)).fetchone()
    assert len(arts) == 1 and json.loads(result)["artifact_id"] == arts[0][0] != 77
    assert (status, step) == ("completed", 2)

    stopped = Applier(store, jobs[1], tmp_path)
    stopped.apply([{"type": "status", "status": "running"}, {"type": "status", "status": "cancelled", "error": "x"}])
    with sqlite3.connect(store.path) as conn:
        status, error = conn.execute("SELECT status, error FROM jobs WHERE id = ?", (jobs[1],)).fetchone()
    assert status == "interrupted" and "stopped by SLURM" in error


def test_cluster_options_are_checked_and_scripted(tmp_path: Path) -> None:
    from engine.cluster.slurm import ClusterOptions, batch_script
    from store.errors import Refused

    for bad, field in ((ClusterOptions(nodes=0), "--nodes"), (ClusterOptions(time="ten"), "--time"),
                       (ClusterOptions(partition="a b"), "--partition"),
                       (ClusterOptions(sbatch_args=["--x\n#SBATCH --y"]), "--sbatch-arg")):
        with pytest.raises(Refused, match=field):
            bad.check()
    one = batch_script(ClusterOptions(time="1-00:00:00").check(), {}, 5, tmp_path / "jobs" / "5")
    assert "#SBATCH --time=1-00:00:00" in one and "engine.cluster.node" in one and "accelerate" not in one
    many = batch_script(ClusterOptions(nodes=2, gpus_per_node=4, sbatch_args=["--account=lab"]).check(),
                        {"strategy": "fsdp"}, 5, tmp_path / "jobs" / "5")
    assert "#SBATCH --nodes=2" in many and "#SBATCH --gpus-per-node=4" in many and "#SBATCH --account=lab" in many
    assert "--num_processes 8" in many and '--machine_rank "$SLURM_NODEID"' in many
    done = subprocess.run(["bash", "-n"], input=many, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A one-node SLURM cluster on this machine for the module; yields its slurm.conf (exported as SLURM_CONF)."""
    missing = [d for d in DAEMONS if not (SBIN / d).exists()] + [c for c in ("sbatch", "sinfo") if not shutil.which(c)]
    if missing:
        why = (f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge "
               "(scripts/test_deps.sh, run by make test, does it as root)")
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail(why)  # CI installs it: a skip there would hide the cluster tests
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the test SLURM runs slurmd as root (it starts jobs as their user)")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, socket.gethostname()))
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    started = []
    try:
        for argv, pid_file in (
            ([str(SBIN / "munged"), f"--key-file={key}", f"--socket={root}/munge.sock", f"--pid-file={root}/munged.pid",
              f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed", "--force"], root / "munged.pid"),
            ([str(SBIN / "slurmctld"), "-i"], root / "slurmctld.pid"),
            ([str(SBIN / "slurmd")], root / "slurmd.pid"),
        ):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            started.append(pid_file)
            assert done.returncode == 0, f"{argv[0]} did not start: {done.stderr}{done.stdout}; logs in {root}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
            if shown.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            log = (root / "slurmctld.log").read_text()[-2000:] if (root / "slurmctld.log").exists() else ""
            pytest.fail(f"the SLURM node never became idle (sinfo: {shown.stdout.strip()} {shown.stderr.strip()}); "
                        f"slurmctld.log: {log}")
        yield conf
    finally:
        subprocess.run(["scancel", "--full", "--signal=KILL", "--user=root"], capture_output=True, check=False)
        for pid_file in reversed(started):
            _stop(pid_file)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def demo_home(slurm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("slurm-home") / "home"
    result = run_cli("demo", "--json", home=home, timeout=600)
    assert result.returncode == 0, result.stderr
    return home


# No evaluation between steps (the final one stays), one metric point a step, a checkpoint every 3 steps.
ARGS = ("--preset", "smoke", "--set", "logging_steps=1", "--set", "eval_steps=1000", "--set", "save_steps=3",
        "--cluster", "slurm", "--partition", "debug", "--time", "00:20:00")


def _job(home: Path, job_id: int) -> dict:
    with sqlite3.connect(home / "tunedeck.db") as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def _slurm_report() -> str:
    """What SLURM says of its node and jobs, and its controller's last words: for a wait that timed out."""
    out = []
    for argv in (["sinfo", "-N", "-o", "%N %T %E"], ["squeue", "-o", "%i %T %r %M"],
                 ["scontrol", "show", "job", "-o"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        out.append(f"$ {' '.join(argv)}\n{done.stdout.strip()}{done.stderr.strip()}")
    conf = Path(os.environ.get("SLURM_CONF", "/nonexistent"))
    for name in ("slurmctld.log", "slurmd.log"):
        log = conf.parent / name
        if log.exists():
            out.append(f"{name}:\n" + "\n".join(log.read_text().splitlines()[-25:]))
    return "\n".join(out)


def _wait(home: Path, job_id: int, until, what: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(home, job_id)
        if until(job):
            return job
        time.sleep(0.3)
    log = (home / "jobs" / str(job_id) / "job.log").read_text()[-3000:]
    raise AssertionError(f"job {job_id} never {what}: {job['status']} {job['error']}\n{log}\n{_slurm_report()}")


def _points(home: Path, job_id: int, name: str) -> list[tuple[int, float, float]]:
    with sqlite3.connect(home / "tunedeck.db") as conn:
        return conn.execute("SELECT step, value, created_at FROM metrics WHERE job_id = ? AND name = ? ORDER BY step",
                            (job_id, name)).fetchall()


def _slurm_id(home: Path, job_id: int) -> str:
    return (home / "jobs" / str(job_id) / "cluster" / "slurm_job").read_text().strip()


def _slurm_state(slurm_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True, check=False)
    return next((w.split("=", 1)[1] for w in out.stdout.split() if w.startswith("JobState=")), "GONE")


def _slurm_end(slurm_id: str, timeout: float = 60) -> str:
    """The state SLURM ends the job in (the engine still exits after recording its end)."""
    deadline = time.monotonic() + timeout
    while (state := _slurm_state(slurm_id)) in ("PENDING", "RUNNING", "COMPLETING") and time.monotonic() < deadline:
        time.sleep(0.5)
    return state


def _engine_pids(job_id: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"engine.cluster.node" in argv and str(job_id).encode() in argv:
                pids.append(int(proc.name))
    return pids


def _open_files(pid: int) -> list[str]:
    files = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            files.append(os.readlink(fd))
        except OSError:
            pass
    return files


@pytest.mark.slow
def test_submit_and_follow_to_completed(demo_home: Path) -> None:
    t0 = time.time()
    result = run_cli("run", "new", "demo", *ARGS, "--set", "max_steps=6", "--wait", "--json", home=demo_home,
                     timeout=900)
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["status"] == "completed", (data["error"], result.stderr)
    job_id = data["id"]
    assert data["slot"] == "slurm" and data["config"]["cluster"]["partition"] == "debug"
    assert data["progress"] == 1.0 and data["step"] == 6
    losses = _points(demo_home, job_id, "loss")
    assert [s for s, _, _ in losses] == [1, 2, 3, 4, 5, 6]  # one point a step, from the node's events
    assert _points(demo_home, job_id, "eval_loss"), "the final evaluation's metrics came back"
    shown = json.loads(run_cli("project", "show", "demo", "--json", home=demo_home).stdout)
    artifact = next(a for a in shown["artifacts_list"] if a["id"] == data["result"]["artifact_id"])
    assert artifact["kind"] == "adapter" and artifact["parent_id"] is not None
    folder = demo_home / "jobs" / str(job_id)
    assert (folder / "output" / "adapter_config.json").exists()
    slurm_id = _slurm_id(demo_home, job_id)
    assert _slurm_end(slurm_id) == "COMPLETED"
    log = (folder / "job.log").read_text()
    assert f"submitted to SLURM as job {slurm_id}" in log and f"job {job_id} completed" in log
    # Figures: submit to running (local), and the lag of each metric from its write on the node to SQLite here.
    events = [json.loads(line) for line in (folder / "cluster" / f"events-{slurm_id}.jsonl").read_text().splitlines()]
    written = {(p[0], p[1]): p[3] for e in events if e["type"] == "metrics" for p in e["points"]}
    lags = [created - written[(step, "loss")] for step, _, created in losses]
    print(f"slurm: submit to running {data['started_at'] - data['created_at']:.1f} s, whole run "
                         f"{time.time() - t0:.0f} s, metric lag node->SQLite median {statistics.median(lags):.2f} s, "
                         f"max {max(lags):.2f} s")
    assert max(lags) < 10, lags


@pytest.mark.slow
def test_two_processes_through_srun_and_accelerate_launch(demo_home: Path) -> None:
    result = run_cli("run", "new", "demo", *ARGS, "--set", "max_steps=4", "--set", "cpu_processes=2", "--wait",
                     "--json", home=demo_home, timeout=900)
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["status"] == "completed", (data["error"], result.stderr)
    folder = demo_home / "jobs" / str(data["id"])
    assert "--num_processes 2" in (folder / "cluster" / "job.sbatch").read_text()
    assert "(rank 0 of 2 processes)" in (folder / "job.log").read_text()
    assert [s for s, _, _ in _points(demo_home, data["id"], "loss")] == [1, 2, 3, 4]  # rank 0 alone reports


@pytest.mark.slow
def test_cancel_is_scancel_and_the_engine_never_opens_the_home_database(demo_home: Path) -> None:
    job_id = int(run_cli("run", "new", "demo", *ARGS, "--set", "max_steps=5000", home=demo_home).stdout.strip())
    _wait(demo_home, job_id, lambda j: j["status"] == "running" and j["step"] >= 2, "reached step 2")
    pids = _engine_pids(job_id)
    assert pids, "the engine runs under slurmstepd on the node"
    files = [f for pid in pids for f in _open_files(pid)]
    assert not [f for f in files if f.startswith(str(demo_home / "tunedeck.db"))], files
    assert [f for f in files if f.endswith("tunedeck.db")], f"a scratch store on node-local disk: {files}"
    slurm_id = _slurm_id(demo_home, job_id)
    assert run_cli("run", "cancel", str(job_id), home=demo_home).returncode == 0
    job = _wait(demo_home, job_id, lambda j: j["status"] not in ("queued", "running"), "ended", timeout=180)
    assert job["status"] == "cancelled", job["error"]
    assert list((demo_home / "jobs" / str(job_id) / "checkpoints").glob("checkpoint-*")), "a checkpoint first"
    assert _slurm_end(slurm_id) in ("COMPLETED", "CANCELLED", "FAILED")
    assert "scancel --signal=TERM" in (demo_home / "jobs" / str(job_id) / "job.log").read_text()


def _latest_checkpoint(folder: Path) -> int:
    """The step of the newest complete checkpoint in a run's checkpoints folder (0: none yet)."""
    done = [int(p.parent.name.split("-")[1]) for p in folder.glob("checkpoint-*/trainer_state.json")]
    return max(done, default=0)


def _interrupted(home: Path, job_id: int, how: str) -> dict:
    job = _wait(home, job_id, lambda j: j["status"] != "running", f"ended after {how}", timeout=180)
    assert job["status"] == "interrupted", (how, job["status"], job["error"])
    return job


@pytest.mark.slow
@pytest.mark.timeout(1200)  # three submissions, each waited for up to 240 s
def test_killed_jobs_are_interrupted_and_resumed_to_completion(demo_home: Path) -> None:
    """kill -9 of the engine under slurmstepd (a node dying under it: no goodbye), then SLURM's own
    `scancel --signal=KILL` (SLURM terminates the job: TERM, then KILL): each leaves the run interrupted,
    and `run resume` resubmits it from its last checkpoint, to the planned step with every metric once."""
    steps = 30
    job_id = int(run_cli("run", "new", "demo", *ARGS, "--set", f"max_steps={steps}", home=demo_home).stdout.strip())
    checkpoints = demo_home / "jobs" / str(job_id) / "checkpoints"
    # Wait on the checkpoint files, not the step in the store: metrics reach SQLite through the event file a moment
    # late, and older checkpoints are pruned as newer ones land (a fast node was past checkpoint-3 before the store
    # showed step 4, and the wait never ended).
    _wait(demo_home, job_id, lambda j: j["status"] == "running" and _latest_checkpoint(checkpoints) >= 3,
          "saved a checkpoint")
    first = _slurm_id(demo_home, job_id)
    for pid in _engine_pids(job_id):
        os.kill(pid, signal.SIGKILL)
    job = _interrupted(demo_home, job_id, "kill -9")
    assert job["step"] < steps, "killed mid-run"
    assert f"SLURM job {first} ended (FAILED)" in job["error"], job["error"]
    saved = _latest_checkpoint(checkpoints)

    assert run_cli("run", "resume", str(job_id), home=demo_home).returncode == 0
    _wait(demo_home, job_id, lambda j: _slurm_id(demo_home, job_id) != first and j["status"] == "running"
          and _latest_checkpoint(checkpoints) > saved, "saved a checkpoint after the resume")
    second = _slurm_id(demo_home, job_id)
    subprocess.run(["scancel", "--signal=KILL", second], check=True)
    job = _interrupted(demo_home, job_id, "scancel --signal=KILL")
    assert "stopped by SLURM" in job["error"] or f"SLURM job {second} ended" in job["error"], job["error"]

    assert run_cli("run", "resume", str(job_id), home=demo_home).returncode == 0
    job = _wait(demo_home, job_id, lambda j: _slurm_id(demo_home, job_id) not in (first, second)
                and j["status"] in ("completed", "failed", "cancelled", "interrupted"), "ended after the resume")
    assert job["status"] == "completed", job["error"]
    log = (demo_home / "jobs" / str(job_id) / "job.log").read_text()
    assert log.count("resuming from checkpoint-") == 2, log
    points = [s for s, _, _ in _points(demo_home, job_id, "loss")]
    assert points == list(range(1, steps + 1)), points  # no gap, no duplicate across the three submissions
    assert json.loads(job["result"])["steps"] == steps
