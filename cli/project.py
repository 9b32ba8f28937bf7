"""`tunedeck project ...` and `tunedeck demo`."""

from __future__ import annotations

import argparse

from cli.common import open_from_args, print_json, table, when


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    project = verbs.add_parser("project", help="create, list, show and delete projects", parents=[common])
    pverbs = project.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(project))
    p = pverbs.add_parser("create", help="create a project", parents=[common])
    p.add_argument("name")
    p.add_argument("--description", default="", metavar="TEXT")
    p.add_argument("--guide-verdict", choices=("fine-tune", "rag", "prompting"), default=None,
                   help="record the decision guide's verdict (the app asks its questions when a project is made)")
    p.add_argument("--json", action="store_true", help="print the new project as JSON")
    p.set_defaults(func=cmd_project_create)
    p = pverbs.add_parser("list", help="list projects with their counts", parents=[common])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_project_list)
    p = pverbs.add_parser("show", help="show a project and what it holds", parents=[common])
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_project_show)
    p = pverbs.add_parser("rename", help="give a project a new name (its runs and datasets stay with it)",
                          parents=[common])
    p.add_argument("name")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_project_rename)
    p = pverbs.add_parser("delete", help="delete a project (refuses when it has runs unless --force)",
                          parents=[common])
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="also delete its runs and their files")
    p.set_defaults(func=cmd_project_delete)

    p = verbs.add_parser("demo", help="create the demo project: a tiny local model and a dataset",
                         parents=[common])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_project_create(args: argparse.Namespace) -> int:
    from store.projects import create_project, project_summary

    store = open_from_args(args)
    guide = {"verdict": args.guide_verdict, "source": "command line"} if args.guide_verdict else None
    with store.write() as session:
        name = create_project(session, args.name, args.description, guide=guide).name
    with store.read() as session:
        summary = project_summary(session, name)
    if args.json:
        print_json({**summary.to_dict(), "guide": guide or {}})
    else:
        verdict = f", guide verdict {args.guide_verdict}" if args.guide_verdict else ""
        print(f"created project {summary.name} (id {summary.id}{verdict})")
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    from store.projects import list_projects

    with open_from_args(args).read() as session:
        projects = list_projects(session)
    if args.json:
        print_json([p.to_dict() for p in projects])
    elif not projects:
        print("no projects yet: `tunedeck project create NAME` or `tunedeck demo`")
    else:
        rows = [(p.name, p.datasets, p.runs, p.artifacts, p.active_jobs, when(p.updated_at)) for p in projects]
        print(table(("NAME", "DATASETS", "RUNS", "ARTIFACTS", "ACTIVE", "UPDATED"), rows))
    return 0


def cmd_project_show(args: argparse.Namespace) -> int:
    from store.artifacts import list_artifacts
    from store.datasets import list_datasets
    from store.projects import get_project, project_summary
    from store.views import list_jobs

    with open_from_args(args).read() as session:
        summary = project_summary(session, args.name)
        guide = dict(get_project(session, args.name).guide or {})
        datasets = list_datasets(session, summary.id)
        jobs = list_jobs(session, project_id=summary.id, limit=None)
        artifacts = list_artifacts(session, summary.id)
    if args.json:
        data = summary.to_dict()
        data["datasets_list"] = [d.model_dump() for d in datasets]
        data["jobs"] = [j.model_dump() for j in jobs]
        data["artifacts_list"] = [a.model_dump() for a in artifacts]
        data["guide"] = guide
        print_json(data)
        return 0
    print(f"project {summary.name} (id {summary.id})")
    if summary.description:
        print(f"  {summary.description}")
    print(f"  created {when(summary.created_at)}, updated {when(summary.updated_at)}")
    print(f"  decision guide: {guide_text(guide)}")
    print(f"\ndatasets ({len(datasets)})")
    for d in datasets:
        print(f"  {d.id:>4}  {d.name}  {d.format}  train {d.num_train} / val {d.num_val}")
    print(f"\njobs ({len(jobs)})")
    for j in jobs:
        total = f"/{j.total_steps}" if j.total_steps else ""
        print(f"  {j.id:>4}  {j.kind:<14} {j.status:<11} step {j.step}{total}  {j.name}")
    print(f"\nartifacts ({len(artifacts)})")
    for a in artifacts:
        print(f"  {a.id:>4}  {a.kind:<9} {a.name}  {a.path}")
    return 0


def guide_text(guide: dict) -> str:
    """The decision guide's outcome in one line ("skipped" when there is none)."""
    if not guide.get("verdict"):
        return "skipped"
    checklist = guide.get("checklist") or {}
    missing = [item for item, done in checklist.items() if not done]
    if missing:
        return f"{guide['verdict']}; data checklist open: {', '.join(missing)}"
    return f"{guide['verdict']}; data checklist done" if checklist else str(guide["verdict"])


def cmd_project_rename(args: argparse.Namespace) -> int:
    from store.projects import rename_project

    with open_from_args(args).write() as session:
        new_name = rename_project(session, args.name, args.new_name).name
    print(f"project {args.name} is now {new_name}")
    return 0


def cmd_project_delete(args: argparse.Namespace) -> int:
    from core.projects import delete_project

    freed = delete_project(open_from_args(args), args.name, force=args.force)
    print(f"deleted project {args.name} ({freed / 1e6:,.1f} MB freed)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.job import wait_for_job
    from core.projects import demo_dataset, make_demo

    store = open_from_args(args)
    result = make_demo(store, log=None if args.json else print)
    job_id = result.pop("import_job_id", None)
    if job_id is not None:
        job = wait_for_job(store, job_id, "importing the demo dataset", show_progress=not args.json)
        result["dataset"] = demo_dataset(store, job)
    if args.json:
        print_json(result)
    return 0
