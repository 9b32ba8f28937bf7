"""The new-run form: dataset, model, objective, method, preset and the common training fields.

Every field shows its recommended range; the focused one shows its full description from the schema.
Problems and recipe warnings are recomputed as fields change; ctrl+y shows the YAML the run will save.
The form's fields and the work behind it (validation, presets, queueing) are in tui.widgets.run_form; the
engine's config modules are imported in workers (they are light, but never needed at start-up).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from store.db import Store
from store.errors import TunedeckError
from tui.widgets.path_input import PathInput
from tui.widgets.run_form import (
    FIELDS,
    LR_HINTS,
    MAX_MESSAGES,
    METHODS,
    OBJECTIVES,
    PRESETS,
    SPECS,
    TOP_FIELDS,
    Checked,
    Prepared,
    check,
    config_yaml,
    field_node,
    gpu_estimate,
    prepare,
    preset_base,
    queue,
    read_scalar,
    show_value,
)
from tui.widgets.submit_form import SubmitInWorker


def _select(options: tuple[str, ...], value: str, widget_id: str, blank: bool = False) -> Select[str]:
    kwargs: dict[str, Any] = {"prompt": "custom"} if blank else {}
    return Select([(o, o) for o in options], value=value if value in options else Select.NULL,
                  allow_blank=blank, compact=True, id=widget_id, **kwargs)  # fmt: skip


def _field_path(widget: Widget | None) -> str | None:
    """The config path a form widget edits."""
    if widget is None or not widget.id:
        return None
    if widget.id in TOP_FIELDS or widget.id == "preset":
        return widget.id
    if widget.id.startswith("f-"):
        return widget.id[2:].replace("-", ".")
    return None


class NewRunForm(SubmitInWorker, ModalScreen[int | None]):
    """Queue a training run; result: its job id, or None when cancelled.

    `initial` (a run's config) prefills a copy of that run; otherwise the form starts from a preset
    (smoke for the demo project, else lora). Problems stay in the form; it closes once the run is queued.
    """

    HELP_TITLE = "New run"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new_run_form.cancel"),
        Binding("ctrl+s", "submit", "Queue run", priority=True, id="new_run_form.submit"),
        # Priority, so that enter queues from any field; an open list takes enter itself.
        Binding("enter", "submit", "Queue run", show=False, priority=True, id="new_run_form.submit_enter"),
        Binding("ctrl+y", "toggle_yaml", "Show YAML", priority=True, id="new_run_form.toggle_yaml"),
    ]

    submit_failure = "could not queue the run"

    def __init__(self, store: Store, project: str, initial: dict[str, Any] | None = None, title: str = "") -> None:
        super().__init__()
        self.store = store
        self.project = project
        self.initial = initial
        self.title_text = title or f"New run in [b]{escape(project)}[/b]"
        self.prepared: Prepared | None = None
        self.checked: Checked | None = None
        self._base: dict[str, Any] = {}
        self._preset_applied: str | None = None
        self._estimate_key: str | None = None

    # -- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="new-run", classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            with VerticalScroll(id="run-form"):
                with Horizontal(classes="field"):
                    yield Label("Preset", classes="field-label")
                    yield _select(PRESETS, "", "preset", blank=True)
                    yield Static("", id="preset-hint", classes="field-hint")
                with Horizontal(classes="field"):
                    yield Label("Dataset", classes="field-label")
                    yield Select([], allow_blank=True, prompt="no dataset", compact=True, id="dataset")
                    yield Static("", id="dataset-hint", classes="field-hint")
                with Horizontal(classes="field"):
                    yield Label("Model", classes="field-label")
                    yield PathInput(placeholder="a model folder or a hub id (org/name)", id="model", compact=True,
                                    suffixes=())  # fmt: skip
                with Horizontal(classes="field"):
                    yield Label("Name", classes="field-label")
                    yield Input(placeholder="optional", id="name", compact=True, max_length=200)
                with Horizontal(classes="field"):
                    yield Label("Objective", classes="field-label")
                    yield _select(OBJECTIVES, "sft", "objective")
                    yield Label("Method", classes="field-label2")
                    yield _select(METHODS, "lora", "method")
                for spec in FIELDS:
                    with Horizontal(classes="field", id=f"row-{spec.widget_id}"):
                        yield Label(spec.label, classes="field-label")
                        if spec.kind == "choice":
                            yield _select(spec.choices, spec.choices[0], spec.widget_id)
                        elif spec.kind == "bool":
                            yield Checkbox("", compact=True, id=spec.widget_id)
                        else:
                            yield Input(id=spec.widget_id, compact=True, classes="value")
                        yield Static(escape(spec.hint), id=f"{spec.widget_id}-hint", classes="field-hint")
            with VerticalScroll(id="yaml-view"):
                yield Static("", id="yaml-text")
            yield Static("", id="field-help")
            yield Static("", id="messages")
            estimate = Static("", id="gpu-estimate")  # the GPU memory line, shown once there is one
            estimate.display = False
            yield estimate
            yield Static("", id="error", classes="error")
            yield Static("ctrl+s queue · ctrl+y YAML · tab next · space opens a list · esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#yaml-view").display = False
        self.show_error("")
        self.query_one("#messages", Static).update("[dim]Loading…[/dim]")
        self.query_one("#run-form").disabled = True
        self.run_worker(partial(prepare, self.store, self.project, self.initial), group="prepare", thread=True,
                        exit_on_error=False)  # fmt: skip

    # -- filling -----------------------------------------------------------------

    def _fill(self, base: dict[str, Any]) -> None:
        """Put a full config into the fields."""
        self._base = base
        self.query_one("#name", Input).value = str(base.get("name") or "")
        self.query_one("#model", Input).value = str(base.get("model") or "")
        self._set_dataset(str(base.get("dataset") or ""))
        for key in ("objective", "method"):
            self.query_one(f"#{key}", Select).value = base.get(key) or Select.NULL
        for spec in FIELDS:
            node, leaf = field_node(base, spec.path)
            value = node.get(leaf)
            widget = self.query_one(f"#{spec.widget_id}")
            if isinstance(widget, Select):
                widget.value = value if value in spec.choices else spec.choices[0]
            elif isinstance(widget, Checkbox):
                widget.value = bool(value)
            elif isinstance(widget, Input):
                widget.value = show_value(value)

    def _set_dataset(self, name: str) -> None:
        prepared = self.prepared
        select = self.query_one("#dataset", Select)
        verdicts = prepared.verdicts if prepared else {}
        options = [(f"{d.name} ({d.format}, {d.num_train:,} train)" + (" · lint FAILED" if verdicts.get(d.name) ==
                    "fail" else ""), d.name) for d in (prepared.datasets if prepared else ())]  # fmt: skip
        if name and name not in {value for _, value in options}:
            options.append((name, name))  # a run's dataset given by id, or one deleted since
        select.set_options(options)
        fallback = prepared.default_dataset() if prepared else ""
        select.value = name or fallback or Select.NULL
        failed = [d.name for d in (prepared.datasets if prepared else ()) if verdicts.get(d.name) == "fail"]
        if not options:
            hint = "none yet: import one on the Datasets tab (i)"
        elif not name and not fallback:
            hint = "every dataset failed its lint: pick one knowingly, or fix and import again"
        elif failed:
            hint = f"lint failed, not chosen by default: {', '.join(failed[:3])}" + (
                f" +{len(failed) - 3} more" if len(failed) > 3 else "")
        else:
            hint = ""
        self.query_one("#dataset-hint", Static).update(hint)

    def _preset_hint(self, preset: str | None) -> None:
        titles = self.prepared.titles if self.prepared else {}
        # The select already names the preset: the hint shows what it sets, which fits the row at 80 columns.
        text = titles.get(preset, "").partition(": ")[2] if preset else "fields as given (pick a preset to refill)"
        self.query_one("#preset-hint", Static).update(escape(text))

    # -- reading and checking ----------------------------------------------------

    def form_data(self) -> dict[str, Any]:
        """The config the fields describe: the base config with every field laid over it.

        An emptied box means the schema's default for that field.
        """
        data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._base.items()}
        data["name"] = self.query_one("#name", Input).value.strip()
        data["model"] = self.query_one("#model", Input).value.strip()
        dataset = self.query_one("#dataset", Select).value
        data["dataset"] = "" if dataset is Select.NULL else str(dataset)
        for key in ("objective", "method"):
            value = self.query_one(f"#{key}", Select).value
            if value is not Select.NULL:
                data[key] = value
        for spec in FIELDS:
            node, leaf = field_node(data, spec.path, create=True)
            widget = self.query_one(f"#{spec.widget_id}")
            if isinstance(widget, Select):
                if widget.value is not Select.NULL:
                    node[leaf] = widget.value
            elif isinstance(widget, Checkbox):
                node[leaf] = widget.value
            elif spec.kind == "list":  # an emptied box is an empty list (no built-in rewards, say)
                node[leaf] = [part.strip() for part in widget.value.split(",") if part.strip()]
            elif isinstance(widget, Input):
                text = widget.value.strip()
                if text:
                    node[leaf] = read_scalar(text)
                else:
                    node.pop(leaf, None)
        return data

    def recheck(self) -> Checked | None:
        """Validate the fields now: mark the bad ones, list problems and warnings, refresh the YAML."""
        if self.prepared is None:
            return None
        checked = self.checked = check(self.form_data())
        bad = {p.split(":", 1)[0].strip() for p in checked.problems}
        for spec in FIELDS:
            self.query_one(f"#{spec.widget_id}").set_class(spec.path in bad, "bad")
        for key in TOP_FIELDS:
            self.query_one(f"#{key}").set_class(key in bad, "bad")
        lines = [f"[red]✗ {escape(p)}[/red]" for p in checked.problems]
        lines += [f"[yellow]! {escape(w)}[/yellow]" for w in checked.warnings]
        if len(lines) > MAX_MESSAGES:
            more = len(lines) - (MAX_MESSAGES - 1)
            lines = [*lines[: MAX_MESSAGES - 1], f"[dim]… and {more} more (ctrl+y lists them all)[/dim]"]
        if not lines:
            lines = ["[green]✓ valid, within the recommended ranges[/green]"]
        self.query_one("#messages", Static).update("\n".join(lines))
        self._effective_batch(checked)
        self._lr_hint(checked.data)
        self._objective_fields(checked.data)
        self._estimate(checked.data)
        if self.query_one("#yaml-view").display:
            self._show_yaml()
        return checked

    def _effective_batch(self, checked: Checked) -> None:
        hint = self.query_one("#f-training-grad_accum-hint", Static)
        cfg = checked.config
        if cfg is None:
            hint.update(escape(SPECS["training.grad_accum"].hint))
            return
        t = cfg.training
        effective = t.per_device_batch * t.grad_accum * max(1, len(cfg.devices), cfg.cpu_processes)
        colour = "green" if 8 <= effective <= 64 else "yellow"
        hint.update(f"effective batch [{colour}]{effective}[/{colour}] (recommended 8..64)")

    def _lr_hint(self, data: dict[str, Any]) -> None:
        objective = data.get("objective")
        kind = objective if objective in LR_HINTS else "full" if data.get("method") == "full" else "lora"
        self.query_one("#f-training-learning_rate-hint", Static).update(escape(LR_HINTS[kind]))

    def _objective_fields(self, data: dict[str, Any]) -> None:
        """Show the fields of the chosen objective only (DPO's beta for dpo, the rewards for grpo, ...)."""
        objective = data.get("objective")
        for spec in FIELDS:
            if spec.only:
                self.query_one(f"#row-{spec.widget_id}").display = objective in spec.only

    def _estimate(self, data: dict[str, Any]) -> None:
        """The GPU memory line: recomputed in a thread when a field it depends on changed."""
        import json

        fields = ("model", "method", "objective", "training", "lora", "quant", "devices", "strategy", "offload")
        key = json.dumps([data.get(k) for k in fields], sort_keys=True, default=str)
        if key != self._estimate_key:
            self._estimate_key = key
            self.run_worker(partial(self._estimate_work, key, data), group="estimate", exclusive=True, thread=True,
                            exit_on_error=False)  # fmt: skip

    def _estimate_work(self, key: str, data: dict[str, Any]) -> None:
        text = gpu_estimate(self.store, data)
        self.app.call_from_thread(self._show_estimate, key, text)

    def _show_estimate(self, key: str, text: str) -> None:
        if key == self._estimate_key:  # else a later change overtook this one
            line = self.query_one("#gpu-estimate", Static)
            line.update(escape(text))
            line.display = bool(text)

    def _show_yaml(self) -> None:
        checked = self.checked
        box = self.query_one("#yaml-text", Static)
        if checked is None:
            box.update("Loading…")
            return
        if checked.config is None:
            lines = "\n".join(f"  ✗ {p}" for p in checked.problems)
            box.update(escape(f"# Fix these first; the YAML shows once the form is valid:\n{lines}"))
            return
        notes = "".join(f"# warning: {w}\n" for w in checked.warnings)
        box.update(escape(notes + config_yaml(checked.config)))

    # -- events ------------------------------------------------------------------

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _field_changed(self) -> None:
        self.show_error("")
        self.recheck()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        self.show_error("")
        if event.select.id == "preset":
            value = None if event.value is Select.NULL else str(event.value)
            self._preset_hint(value)
            self._show_field_help()
            if value is not None and value != self._preset_applied and self.prepared is not None:
                self._apply_preset(value)
                return
        self.recheck()

    def _apply_preset(self, preset: str) -> None:
        data = self.form_data()
        try:
            base = preset_base(preset, data.get("model", ""), data.get("dataset", ""), data.get("name", ""))
        except TunedeckError as error:
            self.show_error(str(error))
            return
        self._preset_applied = preset
        self._fill(base)
        self.recheck()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_descendant_focus(self, event: object) -> None:
        self._show_field_help()

    def _show_field_help(self) -> None:
        """The focused field's description from the schema, under the form."""
        path = _field_path(self.focused)
        help_box = self.query_one("#field-help", Static)
        if path is None or self.prepared is None:
            help_box.update("")
            return
        text = self.prepared.descriptions.get(path, "")
        if path == "preset":
            value = self.query_one("#preset", Select).value
            title = self.prepared.titles.get(str(value), "") if value is not Select.NULL else ""
            text = (f"{title}. " if title else "") + "Choosing a preset refills every field below but the dataset, "
            text += "model and name."
        help_box.update(f"[b]{escape(path)}[/b]: {escape(text)}" if text else "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit" and any(select.expanded for select in self.query(Select)):
            return False  # enter picks the highlighted choice of an open list
        return True

    # -- actions -----------------------------------------------------------------

    def action_toggle_yaml(self) -> None:
        view = self.query_one("#yaml-view")
        form = self.query_one("#run-form")
        showing = not view.display
        view.display = showing
        form.display = not showing
        if showing:
            self._show_yaml()
            view.focus()
        else:
            self.query_one("#preset").focus()

    def action_submit(self) -> None:
        if self._busy or self.prepared is None:
            return
        checked = self.recheck()
        if checked is None:
            return
        if checked.config is None:
            first = checked.problems[0].split(":", 1)[0].strip() if checked.problems else ""
            target = SPECS[first].widget_id if first in SPECS else first if first in TOP_FIELDS else None
            self.show_error("Fix the fields marked in red first.")
            if target:
                if self.query_one("#yaml-view").display:
                    self.action_toggle_yaml()
                self.query_one(f"#{target}").focus()
            return
        self.submit_work(partial(queue, self.store, self.project, checked.data))
        self.query_one("#messages", Static).update("[dim]Queueing…[/dim]")

    def action_cancel(self) -> None:
        if self.query_one("#yaml-view").display:
            self.action_toggle_yaml()
            return
        self.dismiss(None)

    # -- workers -----------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "prepare":
            if event.state == WorkerState.SUCCESS:
                self.prepared = worker.result
                self.query_one("#run-form").disabled = False
                preset = self.prepared.preset
                self._preset_applied = preset
                self._fill(self.prepared.base)
                self.query_one("#preset", Select).value = preset or Select.NULL
                self._preset_hint(preset)
                self.recheck()
                self.query_one("#dataset" if self.prepared.datasets else "#preset").focus()
            elif event.state == WorkerState.ERROR:
                self.query_one("#messages", Static).update("")
                self.show_error(f"Could not open the form: {worker.error}")
        else:
            self.submit_finished(event)

    def submit_failed(self) -> None:
        if self.checked is not None:
            self.recheck()
