"""One artifact: its lineage tree, size and checksum, fidelity badge, evals, and the actions on it.

Actions queue engine jobs (merge, convert, quantize, eval, push) from worker threads, open the
chat pane on a GGUF, copy the serve command (OSC 52, which works over SSH), or delete the artifact
(refused while others derive from it, unless forced).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static, Tree
from textual.worker import Worker, WorkerState

from store.db import Store
from store.errors import NotFound, TunedeckError
from store.views import ArtifactFamily, artifact_family, artifact_jobs, json_dict
from tui.widgets.artifact_text import BADGE, badge, home_relative
from tui.widgets.formatting import ago, size_text
from tui.widgets.submit_form import ActionDialog, FormField

POLL_SECONDS = 2.0
HF_KINDS = {"model", "merged", "adapter"}
# action -> the kinds it applies to
APPLIES = {
    "merge": {"adapter"},
    "convert": HF_KINDS,
    "quantize": {"gguf"},
    "eval": HF_KINDS | {"gguf"},
    "chat": {"gguf"},
    "push": HF_KINDS | {"gguf", "gguf-lora"},
    "serve": HF_KINDS | {"gguf", "gguf-lora", "compressed"},  # compressed: the vLLM and TGI commands
}


def node_label(node: Any) -> Text:
    meta = json_dict(node.meta)
    label = Text.assemble((f"{node.id} ", "dim"), (node.kind, "bold"), " ", node.name, "  ",
                          (size_text(node.size), "dim"))
    b = badge(meta)
    if b.plain:
        label.append("  ")
        label.append(b)
    return label


def fidelity_text(meta: dict[str, Any]) -> Text:
    fidelity = meta.get("fidelity") or {}
    out = Text()
    if not fidelity:
        return out
    out.append("Fidelity ", style="bold")
    out.append(badge(meta))
    out.append("\n")
    for name, check in fidelity.items():
        if not isinstance(check, dict):
            continue
        figures = ", ".join(f"{k} {v}" for k, v in check.items()
                            if k not in {"status", "examples", "hf", "gguf", "problems"} and not isinstance(v, dict))
        problems = "; ".join(check.get("problems") or [])
        out.append(f"  {name:<10} ", style="bold")
        out.append(check.get("status", "-"), style=BADGE.get(check.get("status", ""), ("", ""))[1])
        out.append(f"  {figures}" + (f"  ({problems})" if problems else "") + "\n")
    return out


def evals_text(meta: dict[str, Any]) -> Text:
    out = Text()
    for ev in meta.get("evals", [])[-5:]:
        out.append("Eval ", style="bold")
        if ds := ev.get("dataset"):
            out.append(f"{ds.get('name')} ({ds.get('split')}): perplexity {ds.get('perplexity')}  ")
        if fg := ev.get("forgetting"):
            style = "red" if fg.get("degraded") else "green"
            out.append(f"general text {fg.get('change', 0):+.1%} vs base", style=style)
            out.append("  ")
        for row in ev.get("sweep", []):
            out.append(f"\n  {row['type']:<7} {size_text(row['size']):>9}  ppl {row['perplexity']:<10} "
                       f"delta {row.get('delta_to_f16', 0):+.2%}  {row['tokens_per_s']} tok/s")
        out.append("\n")
    return out


# ----------------------------------------------------------------------------- work done in threads


def queue_action(store: Store, action: str, artifact_id: int, values: dict[str, str]) -> int:
    """Queue the engine job for `action` on an artifact; returns the job id."""
    ref = str(artifact_id)
    if action == "merge":
        from core.artifacts import queue_merge

        return queue_merge(store, ref, dtype=values.get("dtype") or "fp32")
    if action == "convert":
        from core.artifacts import queue_convert

        return queue_convert(store, ref, outtype=values.get("outtype") or "f16", quants=values.get("quant", ""))
    if action == "quantize":
        from core.artifacts import queue_quantize

        return queue_quantize(store, ref, values.get("quant", ""))
    if action == "eval":
        from core.artifacts import queue_eval

        return queue_eval(store, ref, dataset=values.get("dataset") or None, compare=values.get("compare") or None,
                          sweep=values.get("sweep", "").lower() in {"y", "yes"})
    if action == "push":
        from core.artifacts import queue_push

        return queue_push(store, ref, values.get("repo", "").strip(),
                          private=values.get("private", "").lower() in {"y", "yes"})
    raise TunedeckError(f"unknown action {action}")


# ----------------------------------------------------------------------------- dialogs


class ConfirmArtifactDelete(ModalScreen[str | None]):
    """y deletes; with derived artifacts only f does (and says they go too)."""

    HELP_TITLE = "Delete artifact"
    BINDINGS = [Binding("y", "delete", "Delete", id="confirm_artifact_delete.delete"),
                Binding("f", "force", "Delete with derived", id="confirm_artifact_delete.force"),
                Binding("n,escape", "keep", "Keep", id="confirm_artifact_delete.keep"),
                Binding("q", "app.quit", "Quit", show=False, id="app.quit")]

    def __init__(self, name: str, derived: int, active_jobs: int) -> None:
        super().__init__()
        self.name_text, self.derived, self.active_jobs = name, derived, active_jobs

    def compose(self) -> ComposeResult:
        name = escape(self.name_text)
        if self.active_jobs:
            body, hint = (f"[b]{name}[/b] is in use by {self.active_jobs} queued or running job(s).\n"
                          "Cancel them before deleting it."), "n or esc close"
        elif self.derived:
            body, hint = (f"{self.derived} artifact(s) derive from [b]{name}[/b].\nf deletes them too, with their "
                          "files. This cannot be undone."), "f delete with derived · n or esc keep"
        else:
            body, hint = f"Delete [b]{name}[/b] and its files?\nThis cannot be undone.", "y delete · n or esc keep"
        with Vertical(id="confirm-artifact-delete", classes="dialog"):
            yield Static("Delete artifact", classes="dialog-title")
            yield Static(body, id="confirm-body")
            yield Static(hint, classes="hint")

    def action_delete(self) -> None:
        if not self.active_jobs and not self.derived:
            self.dismiss("delete")
        elif self.derived and not self.active_jobs:
            self.notify(f"{self.derived} artifact(s) derive from it: press f to delete them too.", severity="warning")

    def action_force(self) -> None:
        if not self.active_jobs:
            self.dismiss("force")

    def action_keep(self) -> None:
        self.dismiss(None)


# ----------------------------------------------------------------------------- the screen


class ArtifactScreen(Screen[None]):
    """An artifact's details and lineage; keys run the actions that apply to its kind."""

    HELP_TITLE = "Artifact"
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", id="artifact.back"),
        Binding("m", "act('merge')", "Merge", id="artifact.act_merge"),
        Binding("v", "act('convert')", "Convert", id="artifact.act_convert"),
        Binding("Q", "act('quantize')", "Quantize", id="artifact.act_quantize"),  # q quits, as everywhere
        Binding("e", "act('eval')", "Eval", id="artifact.act_eval"),
        Binding("t", "chat", "Chat", show=False, id="artifact.chat"),  # the line under the details lists every action
        Binding("p", "act('push')", "Push", show=False, id="artifact.act_push"),
        Binding("y", "copy_serve", "Copy serve cmd", show=False, id="artifact.copy_serve"),
        Binding("d", "delete", "Delete", id="artifact.delete"),
        Binding("o", "open_job", "Open job", id="artifact.open_job"),
    ]

    def __init__(self, artifact_id: int) -> None:
        super().__init__()
        self.artifact_id = artifact_id
        self.family: ArtifactFamily | None = None
        self.jobs: list[Any] = []  # queued and running jobs that work on this artifact
        self._shown: tuple | None = None

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static("Loading...", id="artifact-header")
        yield Static("", id="artifact-jobs")
        with VerticalScroll(id="artifact-body"):
            yield Tree("lineage", id="artifact-tree")
            yield Static("", id="artifact-fidelity")
            yield Static("", id="artifact-evals")
            yield Static("", id="artifact-actions", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        tree = self.query_one(Tree)
        tree.show_root = False
        tree.styles.height = "auto"
        tree.styles.max_height = 10
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)

    def poll(self) -> None:
        self.run_worker(partial(self._read, self.store, self.artifact_id), group="poll", thread=True,
                        exclusive=True, exit_on_error=False)

    @staticmethod
    def _read(store: Store, artifact_id: int) -> tuple[ArtifactFamily, list[Any]]:
        with store.raw() as conn:
            return artifact_family(conn, artifact_id), artifact_jobs(conn, artifact_id)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if event.state == WorkerState.SUCCESS and group == "poll":
            family, jobs = event.worker.result
            self._show_jobs(jobs)
            self._show(family)
        elif event.state == WorkerState.ERROR and group == "poll":
            error = event.worker.error
            self.query_one("#artifact-header", Static).update(
                escape(str(error) if isinstance(error, NotFound) else f"cannot read the artifact: {error}"))
        elif event.state == WorkerState.SUCCESS and group == "serve":
            commands = event.worker.result["commands"]
            self.app.copy_to_clipboard(commands[0])
            extra = f"; Modelfile: {event.worker.result['modelfile']}" if event.worker.result.get("modelfile") else ""
            self.notify(f"Copied: {commands[0]}{extra}", timeout=8)
        elif event.state == WorkerState.SUCCESS and group == "delete":
            self.notify(f"Deleted {len(event.worker.result)} artifact(s).")
            self.app.pop_screen()
        elif event.state == WorkerState.ERROR and group in {"serve", "delete"}:
            error = event.worker.error
            self.notify(str(error) if isinstance(error, TunedeckError) else f"{group} failed: {error}",
                        severity="error")

    def _show_jobs(self, jobs: list[Any]) -> None:
        """What works on this artifact now (a merge, conversion, quantization, eval or push), with its progress."""
        from core.progress import progress_bar

        changed = [(j.id, j.status) for j in jobs] != [(j.id, j.status) for j in self.jobs]
        self.jobs = jobs
        lines = []
        for job in jobs[:3]:
            steps = f" · {job.step}/{job.total_steps}" if job.total_steps else ""
            lines.append(f"[b]{escape(job.kind)}[/b] job {job.id} {job.status} {progress_bar(job.progress, 8)}{steps}")
        if lines:
            lines[0] += "  [dim]o opens it[/dim]"
        widget = self.query_one("#artifact-jobs", Static)
        widget.update("\n".join(lines))
        widget.display = bool(lines)
        if changed:
            self.refresh_bindings()

    def _show(self, family: ArtifactFamily) -> None:
        self.family = family
        a = family.artifact
        meta = json_dict(a.meta)
        key = (tuple(sorted((n.id, n.meta) for n in family.nodes.values())), family.active_jobs)
        if key == self._shown:
            return
        self._shown = key
        self.refresh_bindings()
        header = Text.assemble(("Artifact ", "bold"), (f"{a.id} ", "dim"), (a.kind, "bold"), " ", a.name, "  ")
        header.append(badge(meta))
        header.append(f"\n{size_text(a.size)}  sha256 {a.sha256[:16]}…  made {ago(a.created_at)}"
                      + (f" by job {a.job_id}" if a.job_id else "") + f"\n{home_relative(a.path, self.store.home)}")
        self.query_one("#artifact-header", Static).update(header)
        tree = self.query_one(Tree)
        tree.clear()

        def add(parent: Any, node_id: int) -> None:
            node = family.nodes[node_id]
            label = node_label(node)
            if node_id == family.id:
                label.stylize("reverse")
            branch = parent.add(label, data=node_id, expand=True)
            for child in family.children(node_id):
                add(branch, child.id)
            if not family.children(node_id):
                branch.allow_expand = False

        add(tree.root, family.root)
        tree.root.expand_all()
        self.query_one("#artifact-fidelity", Static).update(fidelity_text(meta))
        self.query_one("#artifact-evals", Static).update(evals_text(meta))
        keys = {"merge": "m merge", "convert": "v convert", "quantize": "Q quantize", "eval": "e eval",
                "chat": "t chat", "push": "p push", "serve": "y copy serve command"}
        can = [label for action, label in keys.items() if a.kind in APPLIES[action]]
        self.query_one("#artifact-actions", Static).update(" · ".join([*can, "d delete", "esc back"]))

    # -- actions -------------------------------------------------------------------

    ACTIONS = {"act", "chat", "copy_serve"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer and the keys offer only what applies to this artifact's kind; o while a job works on it."""
        if action in self.ACTIONS:
            name = str(parameters[0]) if parameters else {"chat": "chat", "copy_serve": "serve"}.get(action, "")
            return self.family is not None and self.family.artifact.kind in APPLIES.get(name, set())
        if action == "open_job":
            return bool(self.jobs)
        return True

    def _applies(self, action: str) -> bool:
        if self.family is None:
            return False
        kind = self.family.artifact.kind
        if kind not in APPLIES[action]:
            self.notify(f"{action.capitalize()} does not apply to this {kind}.", severity="warning")
            return False
        return True

    def _fields(self, action: str) -> list[FormField]:
        assert self.family is not None
        a = self.family.artifact
        if action == "merge":
            return [FormField("dtype", "Precision of the merged model (fp32, bf16, fp16)", "fp32")]
        if action == "convert":
            quants = "" if a.kind == "adapter" else "q8_0,q4_k_m"
            return [FormField("outtype", "GGUF type (f16, bf16, f32)", "f16"),
                    FormField("quant", "Then quantize to (comma-separated; empty for none)", quants,
                              "q8_0,q4_k_m,q5_k_m,q6_k,q4_0,q3_k_m,q2_k")]
        if action == "quantize":
            return [FormField("quant", "Quant types (comma-separated)", "q8_0,q4_k_m")]
        if action == "eval":
            dataset = next((json_dict(n.meta).get("dataset_id") for n in self._chain() if
                            json_dict(n.meta).get("dataset_id")), "")
            return [FormField("dataset", "Dataset (name or id; empty to skip)", str(dataset or "")),
                    FormField("compare", "Forgetting check against (artifact id, or base; empty to skip)",
                              "base" if len(self._chain()) > 1 else ""),
                    FormField("sweep", "Quant sweep (y/n)", "y" if a.kind == "gguf" else "n")]
        if action == "push":
            return [FormField("repo", "Hub repo id (org/name)", "", "org/name"),
                    FormField("private", "Private (y/n)", "y")]
        return []

    def _chain(self) -> list[Any]:
        assert self.family is not None
        chain, node = [], self.family.artifact
        while node is not None and node not in chain:
            chain.append(node)
            node = self.family.nodes.get(node.parent_id)
        return chain

    def action_act(self, action: str) -> None:
        if not self._applies(action):
            return
        assert self.family is not None
        title = f"{action.capitalize()} [b]{escape(self.family.artifact.name)}[/b]"
        work = partial(queue_action, self.store, action, self.artifact_id)
        self.app.push_screen(ActionDialog(title, self._fields(action), work), partial(self._queued, action))

    def _queued(self, action: str, job_id: int | None) -> None:
        if job_id is not None:
            self.notify(f"{action.capitalize()} queued as job {job_id}; its results appear here when it ends.")

    def action_chat(self) -> None:
        if not self._applies("chat"):
            return
        assert self.family is not None
        from tui.screens.chat import ChatScreen

        self.app.push_screen(ChatScreen(self.family.artifact.path, project=self.family.project))

    def action_copy_serve(self) -> None:
        if not self._applies("serve"):
            return
        from core.artifacts import serve_artifact

        self.run_worker(partial(serve_artifact, self.store, str(self.artifact_id)), group="serve", thread=True,
                        exit_on_error=False)

    def action_delete(self) -> None:
        if self.family is None:
            return
        derived = len(self.family.children(self.artifact_id))
        dialog = ConfirmArtifactDelete(self.family.artifact.name, derived, self.family.active_jobs)
        self.app.push_screen(dialog, self._delete)

    def _delete(self, answer: str | None) -> None:
        if answer:
            from core.artifacts import delete_artifact

            self.run_worker(partial(delete_artifact, self.store, self.artifact_id, force=answer == "force"),
                            group="delete", thread=True, exit_on_error=False)

    def action_open_job(self) -> None:
        """o: the first job working on this artifact (its progress, stage and log)."""
        if self.jobs:
            from tui.screens.job import open_job

            job = self.jobs[0]
            open_job(self.app, job.id, job.kind)

    def action_back(self) -> None:
        self.app.pop_screen()
