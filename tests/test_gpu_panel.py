"""The GPU panel: the NVML sampler (through its injectable seam), the run metrics it records, and the
screen at 80x24, both on this machine (no NVIDIA driver) and with NVML answers injected."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gpu_fakes import FakeNvml, gpu
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Static
from tui_pilot import drive, screen_text, wait_for

from engine.gpu.nvml import RETRY_INIT_S, Sampler, match_job
from engine.gpu.record import record_sample
from engine.gpu.types import OwnJob
from store.db import Store
from store.gpu import running_job_pids
from store.metrics import latest_metrics
from store.models import Job, Project
from tui.app import TunedeckApp
from tui.screens.gpu import MAX_PROCESSES, GpuScreen, snapshot_markup, spark
from tui.screens.projects import ProjectsScreen
from tui.widgets.key_actions import key_actions

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sampler(fake: FakeNvml, clock: Clock | None = None, **kwargs: object) -> Sampler:
    return Sampler(fake, clock=clock or Clock(), name_of=lambda pid: None, parent_of=lambda pid: None,
                   **kwargs)  # type: ignore[arg-type]  # fmt: skip


def add_running_job(store: Store, pid: int | None, name: str = "my-run", status: str = "running") -> int:
    with store.write() as session:
        project = session.exec(select(Project)).first()
        if project is None:
            project = Project(name="alpha")
            session.add(project)
            session.flush()
        job = Job(project_id=project.id, kind="train", name=name, status=status, pid=pid, heartbeat_at=time.time())
        session.add(job)
        session.flush()
        return job.id


# ----------------------------------------------------------------------------- without a driver


def test_no_driver_on_this_machine_is_a_message_not_an_error() -> None:
    snap = Sampler().sample()  # the real pynvml, on a machine without the NVIDIA driver
    assert not snap.available and snap.gpus == []
    assert "NVIDIA" in snap.message
    assert snap.to_dict()["available"] is False


@pytest.mark.parametrize(("code", "words"), [(12, "No NVIDIA driver found"), (9, "not loaded"),
                                             (4, "permission"), (999, "NVML could not start")])  # fmt: skip
def test_init_failures_say_why(code: int, words: str) -> None:
    snap = sampler(FakeNvml([gpu()], init_error=code)).sample()
    assert not snap.available and words in snap.message


def test_missing_package_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    snap = Sampler().sample()
    assert not snap.available and "nvidia-ml-py is not installed" in snap.message


def test_failed_init_is_retried_later_not_every_sample() -> None:
    clock = Clock()
    fake = FakeNvml([gpu()], init_error=12)
    s = sampler(fake, clock, min_interval=0.0)
    s.sample()
    clock.now += 5
    s.sample()
    assert fake.calls["nvmlInit"] == 1
    fake.init_error = None  # the driver got installed meanwhile
    clock.now += RETRY_INIT_S
    assert s.sample().available
    assert fake.calls["nvmlInit"] == 2


def test_no_gpu_or_no_count_is_unavailable() -> None:
    assert "no GPU" in sampler(FakeNvml([])).sample().message
    assert not sampler(FakeNvml([gpu()], fail={"nvmlDeviceGetCount"})).sample().available


# ----------------------------------------------------------------------------- with NVML answers injected


def test_full_answers_in_the_right_units() -> None:
    snap = sampler(FakeNvml([gpu(processes=[(10, 2048)]), gpu(name="NVIDIA A100", used_mb=0, util=0)])).sample()
    assert snap.available and snap.driver_version == "560.35.03" and len(snap.gpus) == 2
    first = snap.gpus[0]
    assert (first.name, first.util_pct, first.memory_used_mb, first.memory_total_mb) == ("NVIDIA H200", 35, 10240,
                                                                                         143771)  # fmt: skip
    assert first.memory_free_mb == 143771 - 10240
    assert (first.temperature_c, first.power_w, first.power_limit_w) == (45, 120, 700)  # mW -> W
    assert (first.sm_clock_mhz, first.mem_clock_mhz) == (1980, 2619)
    assert [(p.pid, p.memory_mb) for p in first.processes] == [(10, 2048)]
    assert snap.gpus[1].name == "NVIDIA A100" and snap.gpus[1].processes == []
    assert snap.to_dict()["gpus"][0]["memory_free_mb"] == 143771 - 10240


def test_failing_and_missing_calls_are_na_and_the_rest_still_shows() -> None:
    fake = FakeNvml([gpu(processes=[(10, None)])],
                    fail={"nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetName",
                          "nvmlDeviceGetGraphicsRunningProcesses"},
                    missing={"nvmlDeviceGetClockInfo", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetUUID"})
    snap = sampler(fake).sample()
    g = snap.gpus[0]
    assert snap.available
    assert (g.name, g.temperature_c, g.power_w, g.power_limit_w, g.sm_clock_mhz, g.uuid) == (None,) * 6
    assert (g.util_pct, g.memory_used_mb) == (35, 10240)
    assert g.processes[0].memory_mb is None  # usedGpuMemory not available (pynvml gives None)
    text = snapshot_markup(snap)
    assert "GPU 0[/b] n/a · n/a · n/a/n/a W · clk n/a/n/a MHz" in text
    assert "util  35%" in text


def test_memory_info_failing_leaves_memory_na() -> None:
    snap = sampler(FakeNvml([gpu()], fail={"nvmlDeviceGetMemoryInfo"})).sample()
    g = snap.gpus[0]
    assert g.memory_used_mb is None and g.memory_total_mb is None and g.memory_free_mb is None
    assert "n/a/n/a GiB" in snapshot_markup(snap)


def test_slow_fields_are_cached_and_sampling_is_rate_limited() -> None:
    clock = Clock()
    fake = FakeNvml([gpu(), gpu()])
    s = sampler(fake, clock)
    first = s.sample()
    assert s.sample() is first  # within a second: the same snapshot, no NVML call
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 2
    for _ in range(3):
        clock.now += 1.0
        s.sample()
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 8
    for name in ("nvmlDeviceGetName", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetUUID"):
        assert fake.calls[name] == 2, name  # once per GPU
    assert fake.calls["nvmlSystemGetDriverVersion"] == 1 and fake.calls["nvmlInit"] == 1


def test_history_is_kept_and_bounded() -> None:
    clock = Clock()
    fake = FakeNvml([gpu()])
    s = sampler(fake, clock, history=5)
    for util in range(8):
        fake.gpus[0]["util"] = util * 10
        clock.now += 1.0
        snap = s.sample()
    assert snap.gpus[0].util_history == [30, 40, 50, 60, 70]
    assert len(snap.gpus[0].mem_history) == 5
    assert spark([0, 50, 100, None], 100) == "▁▅█ "


def test_many_processes_with_our_job_marked_and_first() -> None:
    processes = [(1000 + i, 500 + i) for i in range(40)] + [(4242, 100)]
    snap = sampler(FakeNvml([gpu(processes=processes)], names={4242: "/usr/bin/python3"})).sample(
        {4242: OwnJob(7, "train", "my-run")})
    procs = snap.gpus[0].processes
    assert len(procs) == 41 and procs[0].pid == 1039  # the most memory first
    ours = [p for p in procs if p.job is not None]
    assert [(p.pid, p.job.job_id, p.name) for p in ours] == [(4242, 7, "python3")]
    text = snapshot_markup(snap)
    lines = text.splitlines()
    assert "◆ job 7" in lines[3]  # right under the title, utilization and memory lines
    assert f"… and {41 - MAX_PROCESSES} more processes" in text
    assert "1000" not in text  # the smallest ones are left out


def test_children_of_a_job_are_marked() -> None:
    parents = {501: 500, 500: 400}
    own = {400: OwnJob(3, "train")}
    assert match_job(501, own, parents.get) == own[400]
    assert match_job(999, own, parents.get) is None
    assert match_job(501, {}, parents.get) is None


def test_running_job_pids_reads_only_running_jobs_with_a_pid(store: Store) -> None:
    running = add_running_job(store, 4242)
    add_running_job(store, None, "no-pid")
    add_running_job(store, 5555, "done", status="completed")
    with store.raw() as conn:
        assert running_job_pids(conn) == {4242: (running, "train", "my-run")}


# ----------------------------------------------------------------------------- run metrics


def test_record_sample_writes_gpu_metrics(store: Store) -> None:
    job_id = add_running_job(store, 4242)
    fake = FakeNvml([gpu(util=10, processes=[(1, 900)]), gpu(util=80, processes=[(4242, 30_000)])])
    written = record_sample(store, job_id, 5, sampler=sampler(fake), pid=4242)
    assert written == {"gpu_util": 80.0, "gpu_mem_used_mb": 30_000.0}  # the job's GPU, the job's own memory
    with store.raw() as conn:
        assert latest_metrics(conn, job_id) == {"gpu_util": (5, 80.0), "gpu_mem_used_mb": (5, 30_000.0)}


def test_record_sample_falls_back_to_the_card_and_skips_without_gpu(store: Store) -> None:
    job_id = add_running_job(store, 4242)
    one = FakeNvml([gpu(util=50, used_mb=7000, processes=[(4242, None)])])  # no per-process memory
    assert record_sample(store, job_id, 1, sampler=sampler(one), pid=4242) == {"gpu_util": 50.0,
                                                                               "gpu_mem_used_mb": 7000.0}  # fmt: skip
    two = FakeNvml([gpu(util=20), gpu(util=60, used_mb=3000)])  # the pid is not listed (a container's pid space)
    assert record_sample(store, job_id, 2, sampler=sampler(two), device=1, pid=4242) == {
        "gpu_util": 60.0, "gpu_mem_used_mb": 3000.0}
    assert record_sample(store, job_id, 3, sampler=sampler(FakeNvml([gpu()], init_error=12)), pid=4242) == {}
    with store.raw() as conn:
        assert latest_metrics(conn, job_id)["gpu_util"] == (2, 60.0)


# ----------------------------------------------------------------------------- the screen


def test_g_opens_the_panel_which_says_there_is_no_gpu(store: Store) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "the projects screen")
        assert "GPUs" in {a.description for a in key_actions(app.screen)}  # so in help and the command palette
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, GpuScreen), "the GPU screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.snapshot is not None, "the first sample")
        shown = screen_text(app)
        assert "No GPU to show." in shown and "No NVIDIA driver found" in shown
        assert "no NVIDIA GPU" in shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "back")

    drive(store, scenario)


def test_panel_with_injected_gpus_at_80x24(store: Store) -> None:
    job_id = add_running_job(store, 4242)
    fake = FakeNvml([gpu(processes=[(1000 + i, 500 + i) for i in range(12)] + [(4242, 100)]),
                     gpu(name="NVIDIA A100-SXM4-80GB-with-a-long-name")],
                    fail={"nvmlDeviceGetTemperature"}, names={4242: "python3"})  # fmt: skip
    s = Sampler(fake, min_interval=0.2, name_of=lambda pid: None, parent_of=lambda pid: None)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "the projects screen")
        app.push_screen(GpuScreen(sampler=s))
        await wait_for(pilot, lambda: isinstance(app.screen, GpuScreen) and app.screen.snapshot is not None,
                       "the first sample")  # fmt: skip
        # the running jobs are read from the store beside the sample: under load they can land a refresh later
        await wait_for(pilot, lambda: f"◆ job {job_id} train my-run" in screen_text(app), "our job marked",
                       timeout=10)  # fmt: skip
        shown = screen_text(app)
        assert "driver 560.35.03 · 2 GPUs" in shown
        assert "GPU 0 NVIDIA H200 · n/a · 120/700 W · clk 1980/2619 MHz" in shown
        assert f"◆ job {job_id} train my-run" in shown and "python3" in shown
        assert "util  35%" in shown and "10.0/140.4 GiB (7%)" in shown
        fake.gpus[0]["util"] = 90
        await wait_for(pilot, lambda: "util  90%" in screen_text(app), "a later sample", timeout=5)
        assert len(app.screen.snapshot.gpus[0].util_history) >= 2
        assert "GPU 1 NVIDIA A100-SXM4-80GB-w… · n/a" in shown  # a long name is cut, the line still fits
        assert "… and 7 more processes" in shown
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "back with g")

    drive(store, scenario)
    assert fake.calls["nvmlDeviceGetName"] == 2  # cached across every sample


def test_startup_does_not_import_pynvml_or_the_gpu_engine() -> None:
    code = ("import sys, cli.main, tui.app, tui.screens.gpu, cli.gpu\n"
            "print(sorted(m for m in sys.modules if m == 'pynvml' or m.startswith('engine')))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- the New Run form's estimate line

LLAMA_3_8B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256}  # fmt: skip


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "llama-3-8b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_3_8B))
    return folder


def test_form_estimate_line(store: Store, tmp_path: Path) -> None:
    from engine.gpu.summary import form_estimate

    model = str(_model(tmp_path))
    run = {"model": model, "method": "qlora", "training": {"per_device_batch": 4, "max_length": 2048}}
    big = sampler(FakeNvml([gpu(total_mb=81_920, used_mb=1024)]))
    small = sampler(FakeNvml([gpu(total_mb=16_384, used_mb=0)]))
    assert form_estimate(store, run, big) == "GPU memory ≈ 23.8 GiB · fits GPU 0 (79 GiB free)"
    line = form_estimate(store, run, small)
    assert line.startswith("GPU memory ≈ 23.8 GiB · too big for GPU 0 (16 GiB free): try batch 4→1")
    assert len(line) <= 74
    assert form_estimate(store, run, sampler(FakeNvml([gpu()], init_error=12))).endswith("no GPU here to compare")
    assert form_estimate(store, {**run, "model": ""}, big) == ""
    assert form_estimate(store, {**run, "training": {"per_device_batch": "abc"}}, big) == ""  # not a number yet
    missing = form_estimate(store, {**run, "model": str(tmp_path / "nowhere")}, big)
    assert missing == "GPU memory: no estimate (no such model folder)"
    assert form_estimate(store, {**run, "model": "org/not-cached"}, big) == (
        "GPU memory: no estimate (not a local folder nor in the Hugging Face cache)")


def test_new_run_form_shows_the_estimate_live(store: Store, tmp_path: Path) -> None:
    from textual.widgets import Input, Select

    from store.projects import create_project
    from tui.screens.new_run import NewRunForm

    with store.write() as session:
        create_project(session, "alpha")
    model = str(_model(tmp_path))

    def line(app: TunedeckApp) -> str:
        widget = app.screen.query_one("#gpu-estimate", Static)
        return str(widget.visual) if widget.display else ""

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        app.push_screen(NewRunForm(store, "alpha"))
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunForm) and app.screen.checked is not None, "form")
        assert line(app) == ""  # no model yet
        app.screen.query_one("#model", Input).value = model
        await wait_for(pilot, lambda: "GPU memory ≈ 31.5 GiB" in line(app), "the LoRA estimate")  # bf16 base
        app.screen.query_one("#method", Select).value = "qlora"
        await wait_for(pilot, lambda: "GPU memory ≈ 23.8 GiB" in line(app), "the QLoRA estimate")
        app.screen.query_one("#f-training-per_device_batch", Input).value = "1"
        await wait_for(pilot, lambda: "GPU memory ≈ 12.4 GiB" in line(app), "a smaller batch")
        assert "no GPU here to compare" in screen_text(app)

    drive(store, scenario)


# ----------------------------------------------------------------------------- no GPU: the engine's processes


def test_without_a_gpu_the_panel_shows_the_engine_processes_cpu_and_memory(store: Store) -> None:
    from engine.launch import start_runner
    from store.jobs import create_job, get_job

    with store.write() as session:
        project = Project(name="alpha")
        session.add(project)
        session.flush()
        job_id = create_job(session, project.id, "selftest", {"steps": 200, "seconds": 40.0}, name="tick",
                            slot="procs").id  # fmt: skip
    start_runner(store.home, "procs")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "the projects screen")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, GpuScreen), "the GPU screen")
        screen: GpuScreen = app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: f"job {job_id} selftest tick" in screen_text(app), "the job's engine",
                       timeout=30)  # fmt: skip
        await wait_for(pilot, lambda: any(p.role.startswith("job ") and p.cpu_pct is not None for p in screen.procs),
                       "a CPU reading (two samples)", timeout=10)  # fmt: skip
        shown = screen_text(app)
        assert "Engine processes" in shown and "cores · load" in shown and "No GPU to show." in shown
        engine = next(p for p in screen.procs if p.role == f"job {job_id} selftest tick")
        with store.read() as session:
            assert engine.pid == get_job(session, job_id).pid  # the pid the engine recorded
        assert 10e6 < engine.rss < 2e9 and 0 <= engine.cpu_pct < 250
        assert any(p.role == "runner procs" for p in screen.procs)
        line = next(line for line in shown.splitlines() if f"job {job_id} selftest" in line)
        assert f"{engine.pid}" in line and "MB" in line and "%" in line

    try:
        drive(store, scenario)
    finally:
        from store.jobs import request_cancel

        with store.write() as session:
            request_cancel(session, job_id)
