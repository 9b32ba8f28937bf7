"""Read-only views in plain SQL over a sqlite3 connection: what the TUI polls.

Standard library only, so the TUI's first frame does not wait for SQLAlchemy; the
SQLModel side (`store.projects`) runs the same SQL through its sessions.
"""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from store.errors import NotFound, Refused

if TYPE_CHECKING:
    from sqlmodel import Session

    from store.models import Job

ROW_LIMIT = 500


@dataclass(frozen=True)
class ProjectSummary:
    """A project with the counts the projects screen and `project list` show."""

    id: int
    name: str
    description: str
    created_at: float
    updated_at: float
    datasets: int
    runs: int
    artifacts: int
    active_jobs: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


PROJECT_SUMMARIES_SQL = """
SELECT p.id, p.name, p.description, p.created_at, p.updated_at,
    (SELECT count(*) FROM datasets d WHERE d.project_id = p.id),
    (SELECT count(*) FROM jobs j WHERE j.project_id = p.id AND j.kind = 'train'),
    (SELECT count(*) FROM artifacts a WHERE a.project_id = p.id),
    (SELECT count(*) FROM jobs j WHERE j.project_id = p.id AND j.status IN ('queued', 'running'))
FROM projects p
WHERE (:name_filter = '' OR instr(p.name, :name_filter) > 0)
ORDER BY p.updated_at DESC, p.id DESC
"""


def summaries_from_rows(rows: Any) -> list[ProjectSummary]:
    """ProjectSummary objects from rows of PROJECT_SUMMARIES_SQL."""
    return [ProjectSummary(*row) for row in rows]


def project_summaries(conn: sqlite3.Connection, name_filter: str = "") -> list[ProjectSummary]:
    """Every project (whose name contains `name_filter`), most recently changed first, with counts."""
    return summaries_from_rows(conn.execute(PROJECT_SUMMARIES_SQL, {"name_filter": name_filter}))


def project_summary(conn: sqlite3.Connection, name: str) -> ProjectSummary:
    """One project's summary, or NotFound."""
    for summary in project_summaries(conn, name):
        if summary.name == name:
            return summary
    raise NotFound(f"no project named {name!r} (see `tunedeck project list`)")


def _rows(conn: sqlite3.Connection, typename: str, sql: str, params: tuple) -> list[Any]:
    cursor = conn.execute(sql, params)
    cls = namedtuple(typename, [c[0] for c in cursor.description])
    return [cls(*row) for row in cursor]


@dataclass
class ProjectContents:
    """One project's rows for its tabs (newest first, at most ROW_LIMIT each)."""

    id: int
    name: str
    description: str
    datasets: list[Any]
    jobs: list[Any]
    artifacts: list[Any]
    chats: list[Any]


def project_contents(conn: sqlite3.Connection, name: str) -> ProjectContents:
    """Everything the project screen shows, in one read transaction."""
    conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT id, name, description FROM projects WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no project named {name!r}")
        pid = row[0]
        lim = (pid, ROW_LIMIT)
        return ProjectContents(
            id=pid, name=row[1], description=row[2],
            datasets=_rows(conn, "DatasetRow",
                           "SELECT id, name, format, num_train, num_val, lint, created_at FROM datasets "
                           "WHERE project_id = ? ORDER BY id DESC LIMIT ?", lim),
            jobs=_rows(conn, "JobRow",
                       "SELECT id, kind, name, status, step, total_steps, progress, error, updated_at FROM jobs "
                       "WHERE project_id = ? ORDER BY id DESC LIMIT ?", lim),
            artifacts=_rows(conn, "ArtifactRow",
                            "SELECT id, parent_id, kind, name, size, path, meta, created_at FROM artifacts "
                            "WHERE project_id = ? ORDER BY id DESC LIMIT ?", lim),
            chats=_rows(conn, "ChatRow",
                        "SELECT id, title, model_path, updated_at FROM chat_sessions "
                        "WHERE project_id = ? ORDER BY updated_at DESC LIMIT ?", lim),
        )
    finally:
        conn.execute("COMMIT")


@dataclass(frozen=True)
class DatasetDetail:
    """One dataset's row with its project's name: what the dataset screen shows above its tabs."""

    id: int
    project: str
    name: str
    format: str
    source: str
    path: str
    num_train: int
    num_val: int
    content_hash: str
    lint: str  # the JSON text of the verdict and checklist
    created_at: float


def dataset_detail(conn: sqlite3.Connection, dataset_id: int) -> DatasetDetail:
    """The dataset with id `dataset_id`, or NotFound."""
    row = conn.execute(
        "SELECT d.id, p.name, d.name, d.format, d.source, d.path, d.num_train, d.num_val, d.content_hash, d.lint, "
        "d.created_at FROM datasets d JOIN projects p ON p.id = d.project_id WHERE d.id = ?",
        (dataset_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no dataset with id {dataset_id}")
    return DatasetDetail(*row)


DATASET_USERS_SQL = ("SELECT id, kind, status FROM jobs WHERE kind != 'dataset-import' AND "
                     "json_extract(config, '$.dataset_id') = ? ORDER BY id")


def dataset_users(conn: sqlite3.Connection, dataset_id: int) -> list[tuple[int, str, str]]:
    """(id, kind, status) of the jobs (training runs, evaluations) whose config names dataset `dataset_id`."""
    return [(int(i), str(k), str(s)) for i, k, s in conn.execute(DATASET_USERS_SQL, (dataset_id,))]


IMPORT_KIND = "dataset-import"
IMPORT_ACTIVE = ("queued", "running")
IMPORT_FAILED = ("failed", "cancelled", "interrupted")


def listed_imports(datasets: list[Any], jobs: list[Any]) -> list[Any]:
    """The import jobs a project's dataset list shows beside its datasets (`dataset list` and the Datasets tab):
    each name's latest import, while it is queued or running, or when it failed (or was cancelled or interrupted)
    and no dataset has that name; those in progress first, then newest first. `datasets` and `jobs` are rows
    with `name` (and, for jobs, `kind` and `status`), jobs newest first as `project_contents` reads them."""
    names = {d.name for d in datasets}
    latest: set[str] = set()
    shown = []
    for j in jobs:
        if j.kind != IMPORT_KIND or j.name in latest:
            continue
        latest.add(j.name)
        if j.name not in names and (j.status in IMPORT_ACTIVE or j.status in IMPORT_FAILED):
            shown.append(j)
    shown.sort(key=lambda j: j.status not in IMPORT_ACTIVE)  # a stable sort: in progress first
    return shown


# ----------------------------------------------------------------------------- training runs

TRAIN_KIND = "train"


@dataclass(frozen=True)
class RunRow:
    """One row of a project's Runs tab: a training run with its latest train loss and ETA. `eta_s` is the
    engine's estimate written at `eta_at` (epoch seconds)."""

    id: int
    kind: str
    name: str
    status: str
    step: int
    total_steps: int | None
    progress: float
    error: str | None
    slot: str
    objective: str | None
    method: str | None
    model: str | None
    dataset: str | None
    loss: float | None
    eta_s: float | None
    eta_at: float | None
    updated_at: float


# The latest value of one metric per job: (job_id, step, name) is unique and indexed in that order, so each
# subquery walks that job's index entries backwards from its newest step and stops at the first match.
_LATEST = "(SELECT {col} FROM metrics m WHERE m.job_id = j.id AND m.name = '{name}' ORDER BY m.step DESC LIMIT 1)"

PROJECT_RUNS_SQL = f"""
SELECT j.id, j.kind, j.name, j.status, j.step, j.total_steps, j.progress, j.error, j.slot,
    json_extract(j.config, '$.run.objective'), json_extract(j.config, '$.run.method'),
    json_extract(j.config, '$.run.model'), json_extract(j.config, '$.run.dataset'),
    {_LATEST.format(col="value", name="loss")},
    {_LATEST.format(col="value", name="eta_s")},
    {_LATEST.format(col="created_at", name="eta_s")},
    j.updated_at
FROM jobs j
WHERE j.project_id = ? AND j.kind = '{TRAIN_KIND}'
ORDER BY j.id DESC
LIMIT ?
"""


def project_runs(conn: sqlite3.Connection, project_id: int, limit: int = ROW_LIMIT) -> list[RunRow]:
    """A project's training runs (the other jobs show on the Jobs screen, imports with the datasets too),
    newest first, with each one's latest `loss` and `eta_s` metric: one query, cheap for any number of
    metric points."""
    rows = conn.execute(PROJECT_RUNS_SQL, (project_id, limit))
    return [RunRow(*row) for row in rows]


def latest_values(conn: sqlite3.Connection, job_id: int, names: tuple[str, ...]) -> dict[str, float]:
    """The newest value of each of a job's metrics `names` that it has (one index walk per name)."""
    out: dict[str, float] = {}
    for name in names:
        row = conn.execute("SELECT value FROM metrics WHERE job_id = ? AND name = ? ORDER BY step DESC LIMIT 1",
                           (job_id, name)).fetchone()  # fmt: skip
        if row is not None:
            out[name] = float(row[0])
    return out


@dataclass(frozen=True)
class RunDetail:
    """One job as the run screen shows it; `config` and `result` are decoded JSON."""

    id: int
    project: str
    kind: str
    name: str
    status: str
    step: int
    total_steps: int | None
    progress: float
    error: str | None
    log_path: str | None
    slot: str
    cancel_requested: bool
    config: dict[str, Any]
    result: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    updated_at: float


def json_dict(text: Any) -> dict[str, Any]:
    """A JSON column as a dict ({} for NULL, bad JSON or a non-object)."""
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def run_detail(conn: sqlite3.Connection, job_id: int) -> RunDetail:
    """The job with id `job_id` and its project's name, or NotFound."""
    row = conn.execute(
        "SELECT j.id, p.name, j.kind, j.name, j.status, j.step, j.total_steps, j.progress, j.error, j.log_path, "
        "j.slot, j.cancel_requested, j.config, j.result, j.created_at, j.started_at, j.finished_at, j.heartbeat_at, "
        "j.updated_at FROM jobs j JOIN projects p ON p.id = j.project_id WHERE j.id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    values = list(row)
    values[11] = bool(values[11])
    values[12] = json_dict(values[12])
    values[13] = json_dict(values[13])
    return RunDetail(*values)


@dataclass(frozen=True)
class RunChoices:
    """What the new-run form offers for a project: its datasets and its model artifacts."""

    project_id: int
    datasets: list[Any]  # DatasetChoice(id, name, format, num_train, num_val), newest first
    models: list[Any]  # ModelChoice(id, kind, name, path), newest first


def run_choices(conn: sqlite3.Connection, project: str) -> RunChoices:
    """The datasets and model artifacts (kind model or merged) of project `project`, or NotFound."""
    row = conn.execute("SELECT id FROM projects WHERE name = ?", (project,)).fetchone()
    if row is None:
        raise NotFound(f"no project named {project!r}")
    pid = row[0]
    datasets = _rows(conn, "DatasetChoice", "SELECT id, name, format, num_train, num_val FROM datasets "
                     "WHERE project_id = ? ORDER BY id DESC LIMIT ?", (pid, ROW_LIMIT))  # fmt: skip
    models = _rows(conn, "ModelChoice", "SELECT id, kind, name, path FROM artifacts WHERE project_id = ? "
                   "AND kind IN ('model', 'merged') ORDER BY id DESC LIMIT ?", (pid, ROW_LIMIT))  # fmt: skip
    return RunChoices(pid, datasets, models)


@dataclass(frozen=True)
class CompareRun:
    """One run as the compare view shows it: its row, decoded config and the points of some metrics."""

    id: int
    kind: str
    name: str
    status: str
    step: int
    total_steps: int | None
    config: dict[str, Any]
    series: dict[str, list[tuple[int, float]]]  # metric name -> (step, value) points, oldest first


def compare_runs(conn: sqlite3.Connection, job_ids: list[int], metrics: tuple[str, ...] = ("loss", "eval_loss"),
                 ) -> list[CompareRun]:  # fmt: skip
    """Training runs `job_ids` (in that order) with their `metrics` series, in one read transaction; NotFound if
    one is gone, Refused if one is another kind of job (a merge or an eval has no curves to compare)."""
    marks = ", ".join("?" for _ in metrics)
    conn.execute("BEGIN")
    try:
        runs = []
        for job_id in job_ids:
            row = conn.execute("SELECT id, kind, name, status, step, total_steps, config FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()  # fmt: skip
            if row is None:
                raise NotFound(f"no job with id {job_id}")
            if row[1] != TRAIN_KIND:
                raise Refused(f"job {job_id} is a {row[1]} job, not a training run: only runs can be compared")
            series: dict[str, list[tuple[int, float]]] = {name: [] for name in metrics}
            points = conn.execute(f"SELECT name, step, value FROM metrics WHERE job_id = ? AND name IN ({marks}) "
                                  "ORDER BY step", (job_id, *metrics))  # fmt: skip
            for name, step, value in points:
                series[name].append((int(step), float(value)))
            runs.append(CompareRun(*row[:6], config=json_dict(row[6]), series=series))
        return runs
    finally:
        conn.execute("COMMIT")


@dataclass
class ArtifactFamily:
    """One artifact, its project's name, and every artifact of its lineage tree (root first)."""

    id: int
    project: str
    nodes: dict[int, Any]  # id -> ArtifactNode
    root: int
    active_jobs: int  # queued or running jobs that read from this artifact

    @property
    def artifact(self) -> Any:
        return self.nodes[self.id]

    def children(self, node_id: int) -> list[Any]:
        return sorted((n for n in self.nodes.values() if n.parent_id == node_id), key=lambda n: n.id)


def artifact_family(conn: sqlite3.Connection, artifact_id: int) -> ArtifactFamily:
    """The artifact with id `artifact_id` within its lineage tree, or NotFound."""
    conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT a.project_id, p.name FROM artifacts a JOIN projects p ON p.id = a.project_id "
                           "WHERE a.id = ?", (artifact_id,)).fetchone()
        if row is None:
            raise NotFound(f"no artifact {artifact_id}")
        nodes = {n.id: n for n in _rows(
            conn, "ArtifactNode", "SELECT id, parent_id, job_id, kind, name, path, size, sha256, meta, created_at "
            "FROM artifacts WHERE project_id = ?", (row[0],))}
        active = conn.execute(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND project_id = ? "
            "AND json_extract(config, '$.artifact_id') = ?", (row[0], artifact_id)).fetchone()[0]
    finally:
        conn.execute("COMMIT")
    root = artifact_id
    seen = {root}
    while nodes[root].parent_id in nodes and nodes[root].parent_id not in seen:
        root = nodes[root].parent_id
        seen.add(root)
    return ArtifactFamily(id=artifact_id, project=row[1], nodes=nodes, root=root, active_jobs=active)


def artifact_jobs(conn: sqlite3.Connection, artifact_id: int) -> list[Any]:
    """The queued and running jobs that work on artifact `artifact_id` (a merge, conversion, quantization, eval
    or push of it), oldest first: ArtifactJob(id, kind, status, step, total_steps, progress)."""
    return _rows(conn, "ArtifactJob", "SELECT id, kind, status, step, total_steps, progress FROM jobs "
                 "WHERE status IN ('queued', 'running') AND json_extract(config, '$.artifact_id') = ? ORDER BY id",
                 (artifact_id,))  # fmt: skip


def lineage_order(artifacts: list[Any]) -> list[tuple[Any, int]]:
    """Artifacts as a lineage tree in display order: each one followed by what was made from it (oldest
    first), with its depth. A parent outside the list (another project, deleted) makes a root."""
    by_id = {a.id: a for a in artifacts}
    kids: dict[int | None, list[Any]] = {}
    for a in sorted(artifacts, key=lambda a: a.id):
        kids.setdefault(a.parent_id if a.parent_id in by_id else None, []).append(a)
    out: list[tuple[Any, int]] = []
    stack = [(a, 0) for a in reversed(kids.get(None, []))]
    while stack:  # depth-first without recursion: lineage chains can be long
        a, depth = stack.pop()
        out.append((a, depth))
        stack.extend((child, depth + 1) for child in reversed(kids.get(a.id, [])))
    return out


# ----------------------------------------------------------------------------- every job (the Jobs screen)

ENDED_LIMIT = 200


@dataclass(frozen=True)
class JobRow:
    """One job of any project as the Jobs screen lists it. `place` is its 1-based place in its slot's queue
    (queued jobs only); `method`/`objective` describe a training run."""

    id: int
    project: str
    kind: str
    name: str
    status: str
    slot: str
    step: int
    total_steps: int | None
    progress: float
    error: str | None
    cancel_requested: bool
    heartbeat_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float
    queue_key: float
    method: str | None
    objective: str | None
    place: int | None = None


_JOB_COLUMNS = """j.id, p.name, j.kind, j.name, j.status, j.slot, j.step, j.total_steps, j.progress, j.error,
    j.cancel_requested, j.heartbeat_at, j.started_at, j.finished_at, j.updated_at, coalesce(j.queue_pos, j.id),
    json_extract(j.config, '$.run.method'), json_extract(j.config, '$.run.objective')"""


def all_jobs(conn: sqlite3.Connection, ended_limit: int = ENDED_LIMIT) -> list[JobRow]:
    """Every project's jobs in the order they run: running ones (oldest start first), then the queued ones
    slot by slot in queue order (the order runners take them), then the `ended_limit` latest that ended."""
    conn.execute("BEGIN")
    try:
        active = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN projects p ON p.id = j.project_id "
            "WHERE j.status IN ('queued', 'running') ORDER BY j.status = 'queued', j.slot, j.started_at, "
            "coalesce(j.queue_pos, j.id), j.id").fetchall()
        ended = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN projects p ON p.id = j.project_id "
            "WHERE j.status NOT IN ('queued', 'running') ORDER BY coalesce(j.finished_at, j.updated_at) DESC, "
            "j.id DESC LIMIT ?", (ended_limit,)).fetchall()
    finally:
        conn.execute("COMMIT")
    rows: list[JobRow] = []
    places: dict[str, int] = {}
    for row in active:
        values = list(row)
        values[10] = bool(values[10])
        place = None
        if values[4] == "queued":
            place = places[values[5]] = places.get(values[5], 0) + 1
        rows.append(JobRow(*values, place=place))
    rows.extend(JobRow(*row[:10], bool(row[10]), *row[11:]) for row in ended)
    return rows


def list_jobs(session: Session, project_id: int | None = None, kind: str | None = None,
              limit: int | None = ROW_LIMIT) -> list[Job]:
    """Jobs as full rows, newest first: only `project_id`'s, only of `kind`, at most `limit` (the CLI's
    `job list`, `run list` and `project show`). Through a SQLModel session, imported here only when called."""
    from sqlmodel import select

    from store.models import Job

    query = select(Job).order_by(Job.id.desc())  # type: ignore[union-attr]
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())
