"""`g`: every GPU's utilization, memory, temperature, power and clocks with a short history, and the
processes on each card, tunedeck's own jobs marked. Without a GPU: the engine's processes (running jobs,
their children, the runners) with their CPU and memory.

A thread worker samples NVML about once a second (the sampler caches the fields that never change and
rate-limits itself); the UI thread only renders. Without an NVIDIA driver the screen says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from core.gpu import sample_gpus
from tui.widgets.formatting import clip, size_text

if TYPE_CHECKING:
    from core.procs import EngineProc, ProcSampler
    from engine.gpu.types import GpuSample, Snapshot
    from store.db import Store

POLL_SECONDS = 1.0
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 40
MAX_PROCESSES = 6  # per GPU; tunedeck's own come first
MAX_ENGINE_PROCS = 12


def spark(values: list[float | None], top: float | None, width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters scaled to 0..`top` (a gap where a value is unknown)."""
    if not top or top <= 0:
        return ""
    out = []
    for value in values[-width:]:
        if value is None:
            out.append(" ")
        else:
            level = min(max(value / top, 0.0), 1.0)
            out.append(SPARK[min(len(SPARK) - 1, int(level * len(SPARK)))])
    return "".join(out)


def _na(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _gib(mb: float | None) -> str:
    return "n/a" if mb is None else f"{mb / 1024:.1f}"


def gpu_text(gpu: GpuSample) -> str:
    """One GPU as markup: a title line, utilization and memory with their sparklines, then its processes."""
    power = f"{_na(gpu.power_w)}/{_na(gpu.power_limit_w)} W"
    clocks = f"clk {_na(gpu.sm_clock_mhz)}/{_na(gpu.mem_clock_mhz)} MHz"  # SM / memory
    lines = [
        f"[b]GPU {gpu.index}[/b] {escape(clip(gpu.name or 'n/a', 24))} · {_na(gpu.temperature_c, '°C')} · "
        f"{power} · {clocks}",
        f" util {_na(gpu.util_pct, '%'):>4}  [$accent]{spark(gpu.util_history, 100.0)}[/]",
    ]
    pct = ""
    if gpu.memory_used_mb is not None and gpu.memory_total_mb:
        pct = f" ({gpu.memory_used_mb / gpu.memory_total_mb * 100:.0f}%)"
    lines.append(f" mem  {_gib(gpu.memory_used_mb)}/{_gib(gpu.memory_total_mb)} GiB{pct}  "
                 f"[$accent]{spark(gpu.mem_history, gpu.memory_total_mb)}[/]")  # fmt: skip
    procs = sorted(gpu.processes, key=lambda p: (p.job is None, -(p.memory_mb or 0.0), p.pid))
    if not procs:
        lines.append(" [dim]no processes[/dim]")
    for proc in procs[:MAX_PROCESSES]:
        memory = "n/a" if proc.memory_mb is None else f"{proc.memory_mb / 1024:.1f} GiB"
        line = f"  {proc.pid:>7}  {memory:>9}  {escape(clip(proc.name or 'n/a', 20)):<20}"
        if proc.job is not None:
            job = proc.job
            line += f"  [b $success]◆ job {job.job_id}[/] {escape(clip(f'{job.kind} {job.name}'.strip(), 24))}"
        lines.append(line.rstrip())
    if len(procs) > MAX_PROCESSES:
        lines.append(f"  [dim]… and {len(procs) - MAX_PROCESSES} more processes[/dim]")
    return "\n".join(lines)


def snapshot_markup(snap: Snapshot) -> str:
    """The whole panel body."""
    if not snap.available:
        return (f"[b]No GPU to show.[/b]\n\n{escape(snap.message)}\n\n"
                "[dim]Everything else works: runs train on the CPU, and `tunedeck estimate` can still say "
                "what a run would need on a GPU (--gpu-memory).[/dim]")  # fmt: skip
    return "\n\n".join(gpu_text(gpu) for gpu in snap.gpus)


def procs_markup(procs: list[EngineProc], machine: str) -> str:
    """The engine's processes with their CPU and memory, under the machine's line (no GPU to show)."""
    lines = [f"[b]Engine processes[/b] [dim]· {escape(machine)}[/dim]"]
    if not procs:
        lines.append(" [dim]none running: runners start when a job is queued[/dim]")
        return "\n".join(lines)
    lines.append(f"[dim]{'PID':>8}  {'CPU':>5}  {'memory':>9}  process[/dim]")
    for proc in procs[:MAX_ENGINE_PROCS]:
        cpu = "…" if proc.cpu_pct is None else f"{proc.cpu_pct:.0f}%"
        what = ("  " * proc.depth + "└ " if proc.depth else "") + (proc.role or proc.name)
        style = "b $success" if proc.role.startswith("job ") else "dim" if proc.depth else ""
        label = escape(clip(what, 46))
        label = f"[{style}]{label}[/]" if style else label
        lines.append(f"{proc.pid:>8}  {cpu:>5}  {size_text(proc.rss):>9}  {label}")
    if len(procs) > MAX_ENGINE_PROCS:
        lines.append(f"  [dim]… and {len(procs) - MAX_ENGINE_PROCS} more[/dim]")
    return "\n".join(lines)


def sample_procs(store: Store, sampler: ProcSampler) -> tuple[list[EngineProc], str]:
    """The engine's processes (running jobs' engines and their children, the runners) and the machine line."""
    from core.procs import machine_line, runner_pids
    from store.gpu import running_job_pids

    with store.raw() as conn:
        jobs = {pid: f"job {job_id} {kind} {name}".strip() for pid, (job_id, kind, name) in
                running_job_pids(conn).items()}  # fmt: skip
    return sampler.sample(jobs, runner_pids(store.home)), machine_line()


class GpuScreen(Screen[None]):
    """The GPU panel. `sampler` (an `engine.gpu.nvml.Sampler`) is made on first use unless given."""

    HELP_TITLE = "GPUs"
    AUTO_FOCUS = "#gpu-body"
    DEFAULT_CSS = """
    GpuScreen #gpu-header { height: 1; padding: 0 1; color: $text-muted; }
    GpuScreen #gpu-body { height: 1fr; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape,backspace,g", "back", "Back", id="gpu.back"),
    ]

    def __init__(self, sampler: Any | None = None) -> None:
        super().__init__()
        self.sampler = sampler
        self._own_sampler = sampler is None
        self.snapshot: Snapshot | None = None
        self.procs: list[EngineProc] | None = None  # the engine's processes, sampled when there is no GPU
        self.proc_sampler: ProcSampler | None = None
        self._busy = False

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static("[b]tunedeck[/b] · GPUs", id="topbar")
        yield Static("Sampling…", id="gpu-header")
        with VerticalScroll(id="gpu-body"):
            yield Static("", id="gpu-text")
        yield Footer()

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)

    def on_unmount(self) -> None:
        if self._own_sampler and self.sampler is not None:
            self.sampler.close()

    def poll(self) -> None:
        """Sample in a thread, one sample at a time."""
        if self._busy:
            return
        self._busy = True
        self.run_worker(self._sample, group="gpu-sample", thread=True, exit_on_error=False)

    def _sample(self) -> tuple[Snapshot, tuple[list[EngineProc], str] | None]:
        if self.sampler is None:
            from core.gpu import gpu_sampler

            self.sampler = gpu_sampler()
        snap = sample_gpus(self.store, self.sampler)
        if snap.available:
            return snap, None
        if self.proc_sampler is None:
            from core.procs import ProcSampler

            self.proc_sampler = ProcSampler()
        return snap, sample_procs(self.store, self.proc_sampler)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "gpu-sample" or event.state not in (
            WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED
        ):  # fmt: skip
            return
        self._busy = False
        if event.state == WorkerState.SUCCESS:
            snap, procs = event.worker.result
            self.show(snap, procs)
        elif event.state == WorkerState.ERROR:
            self.query_one("#gpu-header", Static).update(escape(f"Could not sample the GPUs: {event.worker.error}"))

    def show(self, snap: Snapshot, procs: tuple[list[EngineProc], str] | None = None) -> None:
        """Render a snapshot, and the engine's processes when there is no GPU."""
        self.snapshot = snap
        if snap.available:
            count = len(snap.gpus)
            header = f"driver {snap.driver_version or 'n/a'} · {count} GPU{'s' if count != 1 else ''} · every 1 s"
        else:
            header = "no NVIDIA GPU"
        self.query_one("#gpu-header", Static).update(escape(header))
        body = snapshot_markup(snap)
        if procs is not None:
            self.procs = procs[0]
            body = procs_markup(*procs) + "\n\n" + body
        self.query_one("#gpu-text", Static).update(body)

    def action_back(self) -> None:
        self.app.pop_screen()
