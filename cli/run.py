"""`tunedeck run ...`: training runs (the `model` verbs are in cli/model.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import UsageError, open_from_args, print_json, table, when
from cli.job import cmd_job_cancel, cmd_job_logs, wait_for_job
from core.runs import delete_run, export_run, prune_runs, queue_run, resume_run, retry_run, run_summary

if TYPE_CHECKING:
    from engine.train.config import RunConfig

PRESET_CHOICES = ("smoke", "lora", "qlora", "full", "dpo", "orpo", "kto", "reward", "grpo")


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run = verbs.add_parser("run", help="training runs: new, list, show, logs, cancel, resume, retry, delete, prune, "
                           "export",
                           parents=[common])
    rverbs = run.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(run))
    p = rverbs.add_parser("template", help="print a commented run config (YAML)", parents=[common])
    p.add_argument("--preset", choices=PRESET_CHOICES, default="lora")
    p.set_defaults(func=cmd_run_template)
    p = rverbs.add_parser("new", help="queue a training run; prints its job id", parents=[common])
    p.add_argument("project")
    p.add_argument("--config", metavar="FILE", help="a run config YAML (see `tunedeck run template`)")
    p.add_argument("--preset", choices=PRESET_CHOICES, help="start from a preset (default: lora)")
    p.add_argument("--dataset", metavar="NAME|ID")
    p.add_argument("--model", metavar="PATH|ID")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field, e.g. --set lr=1e-4 --set lora.r=32 (repeatable)")
    p.add_argument("--wait", action="store_true", help="wait for the run to end; exit non-zero unless it completed")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cluster", choices=["slurm"], help="submit the run to a cluster (sbatch/srun) and follow it here")
    p.add_argument("--partition", metavar="P", help="with --cluster: the SLURM partition (default: the cluster's)")
    p.add_argument("--nodes", type=int, default=1, metavar="N", help="with --cluster: nodes (default 1)")
    p.add_argument("--time", metavar="HH:MM:SS", help="with --cluster: the SLURM time limit")
    p.add_argument("--gpus-per-node", type=int, default=0, metavar="G",
                   help="with --cluster: GPUs per node, one process each (default: cpu_processes on the CPU)")
    p.add_argument("--cpus-per-task", type=int, metavar="C", help="with --cluster: CPUs for each node's task")
    p.add_argument("--sbatch-arg", dest="sbatch_args", action="append", default=[], metavar="ARG",
                   help="with --cluster: one more sbatch option, e.g. --sbatch-arg=--account=lab (repeatable)")
    p.set_defaults(func=cmd_run_new)
    p = rverbs.add_parser("list", help="training runs, newest first", parents=[common])
    p.add_argument("project", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run_list)
    p = rverbs.add_parser("show", help="a run's status, progress, latest metrics and config", parents=[common])
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run_show)
    p = rverbs.add_parser("logs", help="a run's log", parents=[common])
    p.add_argument("id", type=int)
    p.add_argument("--follow", "-f", action="store_true")
    p.set_defaults(func=cmd_job_logs)
    p = rverbs.add_parser("cancel", help="stop a run (it saves a checkpoint first)", parents=[common])
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_job_cancel)
    p = rverbs.add_parser("resume", help="continue an interrupted, failed or cancelled run from its last checkpoint",
                          parents=[common])
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_run_resume)
    p = rverbs.add_parser("retry", help="run a failed, cancelled or interrupted run again from the start",
                          parents=[common])
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_run_retry)
    p = rverbs.add_parser("delete", help="delete an ended run with its metrics, log and checkpoints",
                          parents=[common])
    p.add_argument("id", type=int)
    p.add_argument("--force", action="store_true", help="also delete the artifacts it made and what derives from them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run_delete)
    p = rverbs.add_parser("prune", help="remove the checkpoints of completed runs (their outputs stay)",
                          parents=[common])
    p.add_argument("project", nargs="?", help="only this project's runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run_prune)
    p = rverbs.add_parser("export", help="write a standalone YAML and print the command that reproduces the run",
                          parents=[common])
    p.add_argument("id", type=int)
    p.add_argument("--output", "-o", metavar="FILE", help="default: run-ID.yaml in the current folder")
    p.set_defaults(func=cmd_run_export)


def _build_config(args: argparse.Namespace) -> RunConfig:
    from core.run_config import build_config

    if args.config and args.preset:
        raise UsageError("give --config or --preset, not both (use --set to change a config's fields)")
    updates = {k: v for k, v in (("dataset", args.dataset), ("model", args.model)) if v}
    return build_config(args.config, args.preset, updates, args.overrides)


def cmd_run_template(args: argparse.Namespace) -> int:
    from core.run_config import template_yaml

    sys.stdout.write(template_yaml(args.preset))
    return 0


def _no_cluster_options(args: argparse.Namespace) -> None:
    given = [name for name, value, default in (
        ("--partition", args.partition, None), ("--nodes", args.nodes, 1), ("--time", args.time, None),
        ("--gpus-per-node", args.gpus_per_node, 0), ("--cpus-per-task", args.cpus_per_task, None),
        ("--sbatch-arg", args.sbatch_args, [])) if value != default]
    if given:
        raise UsageError(f"{', '.join(given)}: only with --cluster slurm")


def cmd_run_new(args: argparse.Namespace) -> int:
    from core.run_config import run_warnings

    if not args.cluster:
        _no_cluster_options(args)
    cfg = _build_config(args)
    notes = run_warnings(cfg)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    store = open_from_args(args)
    cluster = None
    if args.cluster:
        from core.runs import cluster_options

        cluster = cluster_options(partition=args.partition, nodes=args.nodes, time=args.time,
                                 gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
                                 sbatch_args=list(args.sbatch_args))
    job_id = queue_run(store, args.project, cfg, cluster)
    if args.json and not args.wait:
        print_json({"job_id": job_id, "warnings": notes})
    elif not args.wait:
        print(job_id)
    if not args.wait:
        return 0
    job = wait_for_job(store, job_id, f"run {job_id}", show_progress=not args.json)
    if args.json:
        print_json(run_summary(store, job_id))
    else:
        print(f"run {job_id} {job.status}" + (f": {job.error}" if job.error else ""))
    return 0 if job.status == "completed" else 1


def cmd_run_list(args: argparse.Namespace) -> int:
    from core.jobs import list_jobs

    jobs = list_jobs(open_from_args(args), args.project, kind="train")
    if args.json:
        print_json([j.model_dump() for j in jobs])
        return 0
    rows = [(j.id, j.status, f"{j.step}/{j.total_steps or '?'}", j.config.get("run", {}).get("method", "-"),
             j.name or "-", when(j.updated_at)) for j in jobs]
    print(table(("ID", "STATUS", "STEP", "METHOD", "NAME", "UPDATED"), rows) if rows else "no runs")
    return 0


def cmd_run_show(args: argparse.Namespace) -> int:
    data = run_summary(open_from_args(args), args.id)
    if args.json:
        print_json(data)
        return 0
    run = data["config"].get("run", {})
    print(f"run {data['id']} ({run.get('objective')}/{run.get('method')}): {data['status']}"
          + (f" - {data['error']}" if data.get("error") else ""))
    print(f"  step {data['step']}/{data['total_steps'] or '?'}  pid {data['pid'] or '-'}  "
          f"model {data['config'].get('model_path')}")
    for name, point in data["metrics"].items():
        print(f"  {name:<24} {point['value']:.6g}  (step {point['step']})")
    return 0


def cmd_run_resume(args: argparse.Namespace) -> int:
    print(resume_run(open_from_args(args), args.id))
    return 0


def cmd_run_retry(args: argparse.Namespace) -> int:
    print(retry_run(open_from_args(args), args.id))
    return 0


def cmd_run_delete(args: argparse.Namespace) -> int:
    report = delete_run(open_from_args(args), args.id, force=args.force)
    if args.json:
        print_json({"id": report.job_id, "artifacts": [{"id": i, "kind": k} for i, k in report.artifacts],
                    "kept": report.kept, "freed_bytes": report.freed_bytes})
        return 0
    print(f"deleted run {report.job_id} ({report.freed_bytes / 1e6:,.1f} MB freed)")
    for aid, kind in report.artifacts:
        print(f"deleted artifact {aid} ({kind})")
    for path in report.kept:
        print(f"left {path} (outside the home)")
    return 0


def cmd_run_prune(args: argparse.Namespace) -> int:
    pruned = prune_runs(open_from_args(args), args.project)
    if args.json:
        print_json([{"id": i, "checkpoints": n, "freed_bytes": b} for i, n, b in pruned])
        return 0
    for job_id, count, freed in pruned:
        print(f"run {job_id}: removed {count} checkpoint(s), {freed / 1e6:,.1f} MB")
    total = sum(b for _, _, b in pruned)
    print(f"{total / 1e6:,.1f} MB freed" if pruned else "no completed run has checkpoints left")
    return 0


def cmd_run_export(args: argparse.Namespace) -> int:
    done = export_run(open_from_args(args), args.id, Path(args.output) if args.output else None)
    print(f"wrote {done.path}\n{done.command}")
    return 0

