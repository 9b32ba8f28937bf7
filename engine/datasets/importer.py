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
from array import array
from pathlib import Path
from typing import Any, BinaryIO

from engine.datasets.dedup import NearDuplicateIndex, drop_set, exact_key, example_text
from engine.datasets.formats import ImportCancelled, load_examples
from engine.datasets.lint import build_report
from engine.datasets.readers import count_hint
from engine.datasets.rows import JsonlRows
from engine.datasets.types import Example, kind_of
from engine.jobctx import JobCancelled, JobContext
from store.datasets import dataset_name_taken
from store.diskfull import writing
from store.errors import AlreadyExists
from store.home import subdir
from store.models import Dataset
from store.names import check_name
from store.payloads import DatasetImportConfig

DEFAULTS: dict[str, Any] = {
    "format": "auto", "val_fraction": 0.1, "seed": 0, "dedup": "exact", "on_error": "fail",
    "tokenizer": None, "max_length": 2048, "near_threshold": 0.85,
    # Above this many examples, length statistics come from an even sample of this size (marked as
    # sampled in the report); the over-max_length count and ids stay exact for every example.
    "token_sample": 20_000,
}


def split_ids(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/val split of range(n): (train ids, val ids), each sorted."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def _fsync_close(fh: BinaryIO) -> None:
    try:
        fh.flush()
        os.fsync(fh.fileno())
    finally:
        fh.close()  # even when the flush failed (a full disk): an open file keeps its space after the cleanup


def _write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
        fh.flush()
        os.fsync(fh.fileno())


class _Spool:
    """Pass one: every valid example, normalized, appended to a scratch JSONL as it is read, with the
    keys deduplication needs (exact hashes, MinHash signatures) kept in memory instead of the rows."""

    def __init__(self, path: Path, near: bool) -> None:
        self.path = path
        self.fh = path.open("wb")
        self.offsets = array("q")
        self.pos = 0
        self.first_of: dict[bytes, int] = {}
        self.groups: dict[int, list[int]] = {}
        self.near = NearDuplicateIndex() if near else None
        self._texts: list[str] = []
        self._skip: list[bool] = []

    def __call__(self, example: Example) -> None:
        line = json.dumps(example.data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        index = len(self.offsets)
        self.offsets.append(self.pos)
        self.fh.write(line)
        self.pos += len(line)
        text = example_text(example.data)
        first = self.first_of.setdefault(exact_key(text), index)
        if first != index:
            self.groups.setdefault(first, [first]).append(index)
        if self.near is not None:
            self._texts.append(text)
            self._skip.append(first != index)
            if len(self._texts) >= 2000:
                self._flush_near()

    def _flush_near(self) -> None:
        if self.near is not None and self._texts:
            self.near.add(self._texts, self._skip)
            self._texts, self._skip = [], []

    def close(self) -> JsonlRows:
        self._flush_near()
        _fsync_close(self.fh)
        return JsonlRows(self.path, self.offsets)

    def drop(self, rows: JsonlRows, threshold: float) -> set[int]:
        pairs = self.near.pairs(threshold, lambda g: example_text(rows[g])) if self.near is not None else []
        return drop_set(self.groups.values(), pairs)


def _write_split(rows: JsonlRows, keep: list[int], ids: list[int], out: Path, digest: Any) -> JsonlRows:
    """Write rows[keep[i]] with "id" = ids[i] to `out`; returns the written file as rows."""
    offsets = array("q")
    pos = 0
    with out.open("wb") as fh:
        for source_index, new_id in zip(keep, ids, strict=True):
            line = json.dumps({"id": new_id, **rows[source_index]}, ensure_ascii=False,
                              separators=(",", ":")).encode() + b"\n"
            digest.update(line)
            offsets.append(pos)
            pos += len(line)
            fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return JsonlRows(out, offsets)


def run_import_job(ctx: JobContext) -> None:
    """Job handler for kind `dataset-import` (config: see DEFAULTS plus project_id, name, source).

    Streams: the source is read once into a normalized scratch file, and everything after
    works from files by offset, so memory grows by a few dozen bytes an example, not by the rows.
    """
    cfg = {**DEFAULTS, **ctx.config_as(DatasetImportConfig).model_dump(exclude_unset=True)}  # typed, then defaults
    source, name = str(cfg["source"]), check_name(cfg["name"], "dataset name")
    ctx.log(f"importing {source} as {name!r} (format {cfg['format']}, dedup {cfg['dedup']})")
    hint = count_hint(source)
    root = subdir(ctx.home, "datasets")
    tmp = root / f".tmp-job{ctx.job_id}"
    shutil.rmtree(tmp, ignore_errors=True)  # leftover of an earlier, killed attempt
    tmp.mkdir(mode=0o700)
    try:
        with writing(tmp, "nothing was kept"):  # says "disk full while writing" before the cleanup frees space
            _import_into(ctx, cfg, source, name, hint, tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _import_into(ctx: JobContext, cfg: dict, source: str, name: str, hint: int | None, tmp: Path,
                 root: Path) -> None:
    def on_read(n: int) -> None:
        ctx.progress(0.4 * min(1.0, n / hint) if hint else None, step=n)

    spool = _Spool(tmp / "scratch.jsonl", near=cfg["dedup"] == "near")
    try:
        loaded = load_examples(source, cfg["format"], cfg["on_error"], progress=on_read,
                               should_stop=ctx.should_stop, sink=spool)
    except ImportCancelled as exc:
        raise JobCancelled(str(exc)) from None
    finally:
        rows = spool.close()
    dropped = dict(loaded.dropped)
    if loaded.error_count:
        ctx.log(f"skipped {loaded.error_count} invalid record(s); first: {loaded.errors[0]}")
    ctx.log(f"read {loaded.total} record(s): {loaded.valid} valid, format {loaded.format}")
    if loaded.unused:
        ctx.log("fields not imported: " + ", ".join(f"{k} ({v})" for k, v in loaded.unused.items()))
    ctx.check_cancel()

    drop = spool.drop(rows, float(cfg["near_threshold"])) if cfg["dedup"] != "none" else set()
    if drop:
        dropped[f"{cfg['dedup']} duplicate"] = len(drop)
        ctx.log(f"dropped {len(drop)} {cfg['dedup']} duplicate(s)")
    kept = [i for i in range(len(rows)) if i not in drop]
    train_ids, val_ids = split_ids(len(kept), float(cfg["val_fraction"]), int(cfg["seed"]))
    snap = tmp / "snapshot"
    snap.mkdir(mode=0o700)
    digest = hashlib.sha256()
    train = _write_split(rows, [kept[i] for i in train_ids], train_ids, snap / "train.jsonl", digest)
    digest.update(b"\0val\0")
    val = _write_split(rows, [kept[i] for i in val_ids], val_ids, snap / "val.jsonl", digest)
    rows.close()
    (tmp / "scratch.jsonl").unlink()
    ctx.progress(0.5, force=True)
    ctx.check_cancel()

    tokenizer = None
    if cfg["tokenizer"]:
        from engine.datasets.tokens import load_tokenizer

        tokenizer = load_tokenizer(str(cfg["tokenizer"]))
    report = build_report(
        train, val, fmt=loaded.format, kind=kind_of(loaded.format), tokenizer=tokenizer,
        max_length=int(cfg["max_length"]), near_threshold=float(cfg["near_threshold"]), dropped=dropped,
        progress=lambda _phase, frac: ctx.progress(0.5 + 0.45 * frac),
        token_sample=int(cfg["token_sample"]) if cfg["token_sample"] else None, unused=loaded.unused,
    )
    train.close()
    val.close()
    flags = report.pop("flags", {})
    report["import"] = {
        "source": source, "records_read": loaded.total, "invalid": loaded.error_count,
        "errors": [e.to_dict() for e in loaded.errors], "dropped": dropped,
        "tokenizer": cfg["tokenizer"], "seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
    }
    ctx.check_cancel()
    meta = {"name": name, "source": source, "format": loaded.format, "seed": cfg["seed"],
            "val_fraction": cfg["val_fraction"], "dedup": cfg["dedup"], "job_id": ctx.job_id,
            "content_hash": digest.hexdigest()}
    _write_json(snap / "report.json", report)
    _write_json(snap / "meta.json", meta)
    _write_json(snap / "flags.json", flags)
    _commit_snapshot(ctx, cfg, name, loaded.format, len(train), len(val), report, snap, root)


def _commit_snapshot(ctx: JobContext, cfg: dict, name: str, fmt: str, n_train: int, n_val: int, report: dict,
                     snap: Path, root: Path) -> None:
    """Rename the finished snapshot into datasets/<id> inside the transaction that inserts its row."""
    meta = json.loads((snap / "meta.json").read_text())
    final: Path | None = None
    committed = False
    try:
        with ctx.store.write() as session:
            if dataset_name_taken(session, cfg["project_id"], name):
                raise AlreadyExists(f"the project already has a dataset named {name!r}")
            row = Dataset(
                project_id=cfg["project_id"], name=name, format=fmt, source=str(cfg["source"]),
                num_train=n_train, num_val=n_val, content_hash=meta["content_hash"],
                lint={k: report[k] for k in ("verdict", "checklist") if k in report},
            )
            session.add(row)
            session.flush()
            final = root / str(row.id)
            if final.exists():  # an orphan of a crash between rename and commit: no row owns it
                shutil.rmtree(final)
            os.replace(snap, final)
            row.path = str(final)
            session.add(row)
        committed = True
        dataset_id = row.id
    finally:
        if not committed and final is not None:
            shutil.rmtree(final, ignore_errors=True)
    ctx.set_result(dataset_id=dataset_id, name=name)
    ctx.log(f"dataset {name!r} is id {dataset_id}: {n_train} train / {n_val} val, verdict {report.get('verdict')}")
