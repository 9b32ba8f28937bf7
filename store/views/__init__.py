"""Read-only views in plain SQL over a sqlite3 connection: what the TUI polls. One module per thing viewed:
projects, datasets, runs, artifacts, jobs (and rows: what they share).

Standard library only, so the TUI's first frame does not wait for SQLAlchemy; the
SQLModel side (`store.projects`) runs the same SQL through its sessions. The names below are re-exported so that
``from store.views import ...`` keeps working.
"""

from __future__ import annotations

from store.views.artifacts import ArtifactFamily, artifact_family, artifact_jobs, lineage_order
from store.views.datasets import (
    DATASET_USERS_SQL,
    IMPORT_ACTIVE,
    IMPORT_FAILED,
    IMPORT_KIND,
    DatasetDetail,
    dataset_detail,
    dataset_users,
    listed_imports,
)
from store.views.jobs import ENDED_LIMIT, JobRow, all_jobs, list_jobs
from store.views.projects import (
    PROJECT_SUMMARIES_SQL,
    ProjectContents,
    ProjectSummary,
    project_contents,
    project_summaries,
    project_summary,
    summaries_from_rows,
)
from store.views.rows import ROW_LIMIT, json_dict, named_rows
from store.views.runs import (
    PROJECT_RUNS_SQL,
    TRAIN_KIND,
    CompareRun,
    RunChoices,
    RunDetail,
    RunRow,
    compare_runs,
    latest_values,
    project_runs,
    run_choices,
    run_detail,
)

__all__ = [
    "DATASET_USERS_SQL",
    "ENDED_LIMIT",
    "IMPORT_ACTIVE",
    "IMPORT_FAILED",
    "IMPORT_KIND",
    "PROJECT_RUNS_SQL",
    "PROJECT_SUMMARIES_SQL",
    "ROW_LIMIT",
    "TRAIN_KIND",
    "ArtifactFamily",
    "CompareRun",
    "DatasetDetail",
    "JobRow",
    "ProjectContents",
    "ProjectSummary",
    "RunChoices",
    "RunDetail",
    "RunRow",
    "all_jobs",
    "artifact_family",
    "artifact_jobs",
    "compare_runs",
    "dataset_detail",
    "dataset_users",
    "json_dict",
    "latest_values",
    "lineage_order",
    "list_jobs",
    "listed_imports",
    "named_rows",
    "project_contents",
    "project_runs",
    "project_summaries",
    "project_summary",
    "run_choices",
    "run_detail",
    "summaries_from_rows",
]
