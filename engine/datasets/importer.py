"""The dataset-import job: read, validate and normalize a source, de-duplicate, split, lint,
and write an immutable snapshot under `datasets/<id>/` together with its store row.

Nothing partial ever appears: the snapshot is written to a hidden temp folder and renamed
into place inside the transaction that inserts the row; any failure removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from engine.datasets.dedup import duplicates_to_drop, example_text
from engine.datasets.formats import load_examples
from engine.datasets.lint import build_report
from engine.datasets.readers import count_hint
from engine.datasets.types import Example, kind_of
from engine.jobctx import JobContext
from store.datasets import dataset_name_taken
from store.errors import AlreadyExists
from store.home import subdir
from store.models import Dataset
from store.names import check_name

SNAPSHOT_FILES = ("train.jsonl", "val.jsonl", "report.json", "meta.json", "flags.json")
DEFAULTS: dict[str, Any] = {
    "format": "auto", "val_fraction": 0.1, "seed": 0, "dedup": "exact", "on_error": "fail",
    "tokenizer": None, "max_length": 2048, "near_threshold": 0.85,
}


def split_ids(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/val split of range(n): (train ids, val ids), each sorted."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def _write_jsonl(path: Path, rows: list[dict[str, Any]], digest: Any) -> None:
    with path.open("wb") as fh:
        for row in rows:
            line = json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            digest.update(line)
            fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
        fh.flush()
        os.fsync(fh.fileno())


def write_snapshot(folder: Path, train: list[dict], val: list[dict], report: dict, meta: dict) -> str:
    """Write the snapshot files into `folder` (created); returns the content hash of train+val."""
    folder.mkdir(mode=0o700)
    digest = hashlib.sha256()
    _write_jsonl(folder / "train.jsonl", train, digest)
    digest.update(b"\0val\0")
    _write_jsonl(folder / "val.jsonl", val, digest)
    content_hash = digest.hexdigest()
    _write_json(folder / "report.json", report)
    _write_json(folder / "meta.json", {**meta, "content_hash": content_hash})
    return content_hash


def run_import_job(ctx: JobContext) -> None:
    """Job handler for kind `dataset-import` (config: see DEFAULTS plus project_id, name, source)."""
    cfg = {**DEFAULTS, **ctx.config}
    source, name = str(cfg["source"]), check_name(cfg["name"], "dataset name")
    ctx.log(f"importing {source} as {name!r} (format {cfg['format']}, dedup {cfg['dedup']})")
    hint = count_hint(source)

    def on_read(n: int) -> None:
        ctx.progress(0.5 * min(1.0, n / hint) if hint else None, step=n)

    loaded = load_examples(source, cfg["format"], cfg["on_error"], progress=on_read, should_stop=ctx.should_stop)
    dropped = dict(loaded.dropped)
    if loaded.error_count:
        ctx.log(f"skipped {loaded.error_count} invalid record(s); first: {loaded.errors[0]}")
    examples: list[Example] = loaded.examples
    ctx.log(f"read {loaded.total} record(s): {len(examples)} valid, format {loaded.format}")
    ctx.check_cancel()

    if cfg["dedup"] != "none":
        drop = duplicates_to_drop([example_text(e.data) for e in examples], cfg["dedup"], cfg["near_threshold"])
        if drop:
            examples = [e for i, e in enumerate(examples) if i not in drop]
            dropped[f"{cfg['dedup']} duplicate"] = len(drop)
            ctx.log(f"dropped {len(drop)} {cfg['dedup']} duplicate(s)")
    rows = [{"id": i, **e.data} for i, e in enumerate(examples)]
    train_ids, val_ids = split_ids(len(rows), float(cfg["val_fraction"]), int(cfg["seed"]))
    train, val = [rows[i] for i in train_ids], [rows[i] for i in val_ids]
    ctx.progress(0.55, force=True)
    ctx.check_cancel()

    tokenizer = None
    if cfg["tokenizer"]:
        from engine.datasets.tokens import load_tokenizer

        tokenizer = load_tokenizer(str(cfg["tokenizer"]))
    report = build_report(
        train, val, fmt=loaded.format, kind=kind_of(loaded.format), tokenizer=tokenizer,
        max_length=int(cfg["max_length"]), near_threshold=float(cfg["near_threshold"]), dropped=dropped,
        progress=lambda _phase, frac: ctx.progress(0.55 + 0.4 * frac),
    )
    flags = report.pop("flags", {})
    report["import"] = {
        "source": source, "records_read": loaded.total, "invalid": loaded.error_count,
        "errors": [e.to_dict() for e in loaded.errors], "dropped": dropped,
        "tokenizer": cfg["tokenizer"], "seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
    }
    ctx.check_cancel()
    _commit_snapshot(ctx, cfg, name, loaded.format, train, val, report, flags)


def _commit_snapshot(
    ctx: JobContext, cfg: dict, name: str, fmt: str, train: list, val: list, report: dict, flags: dict
) -> None:
    root = subdir(ctx.home, "datasets")
    tmp = root / f".tmp-job{ctx.job_id}"
    shutil.rmtree(tmp, ignore_errors=True)  # leftover of an earlier, killed attempt
    meta = {"name": name, "source": str(cfg["source"]), "format": fmt, "seed": cfg["seed"],
            "val_fraction": cfg["val_fraction"], "dedup": cfg["dedup"], "job_id": ctx.job_id}
    final: Path | None = None
    committed = False
    try:
        content_hash = write_snapshot(tmp, train, val, report, meta)
        _write_json(tmp / "flags.json", flags)
        with ctx.store.write() as session:
            if dataset_name_taken(session, cfg["project_id"], name):
                raise AlreadyExists(f"the project already has a dataset named {name!r}")
            row = Dataset(
                project_id=cfg["project_id"], name=name, format=fmt, source=str(cfg["source"]),
                num_train=len(train), num_val=len(val), content_hash=content_hash,
                lint={k: report[k] for k in ("verdict", "checklist") if k in report},
            )
            session.add(row)
            session.flush()
            final = root / str(row.id)
            if final.exists():  # an orphan of a crash between rename and commit: no row owns it
                shutil.rmtree(final)
            os.replace(tmp, final)
            row.path = str(final)
            session.add(row)
        committed = True
        dataset_id = row.id
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not committed and final is not None:
            shutil.rmtree(final, ignore_errors=True)
    ctx.set_result(dataset_id=dataset_id, name=name)
    ctx.log(f"dataset {name!r} is id {dataset_id}: {len(train)} train / {len(val)} val, verdict "
            f"{report.get('verdict')}")
