"""`tunedeck artifact ...`, `convert`, `quantize` and `tools`: what runs produce and what is made from it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cli.common import human_size, open_from_args, print_json, table, when
from cli.job import finish_queued

if TYPE_CHECKING:
    from store.models import Artifact


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    art = verbs.add_parser("artifact", help="list, show and delete artifacts (models, adapters, GGUFs)",
                           parents=[common])
    averbs = art.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(art))
    p = averbs.add_parser("list", help="a project's artifacts with their lineage", parents=[common])
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_artifact_list)
    p = averbs.add_parser("show", help="one artifact: path, size, checksum, lineage, fidelity, evals",
                          parents=[common])
    p.add_argument("artifact", help="artifact id or name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_artifact_show)
    p = averbs.add_parser("delete", help="delete an artifact and its files", parents=[common])
    p.add_argument("artifact")
    p.add_argument("--force", action="store_true", help="also delete the artifacts derived from it")
    p.set_defaults(func=cmd_artifact_delete)

    p = averbs.add_parser("serve", help="the commands that serve an artifact (vLLM, llama-server, Ollama)",
                          parents=[common])
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_artifact_serve)

    p = verbs.add_parser("push", help="upload an artifact to the Hugging Face Hub (huggingface-hub's login)",
                         parents=[common])
    p.add_argument("artifact")
    p.add_argument("repo_id", help="org/name on the Hub")
    p.add_argument("--private", action="store_true")
    _wait_flags(p)
    p.set_defaults(func=cmd_push)

    p = verbs.add_parser("convert", help="convert a model or adapter to GGUF with llama.cpp's converter",
                         parents=[common])
    p.add_argument("artifact", nargs="?", help="model, merged model or adapter artifact (id or name)")
    p.add_argument("--outtype", default="f16", choices=["f16", "bf16", "f32"])
    p.add_argument("--quant", default="", metavar="TYPES", help="then quantize: e.g. q8_0,q4_k_m")
    p.add_argument("--pre-tokenizer", metavar="NAME",
                   help="force llama.cpp's BPE pre-tokenizer when it does not recognize the tokenizer")
    p.add_argument("--list-pre-tokenizers", action="store_true", help="print the names llama.cpp knows")
    p.add_argument("--name", help="base name of the GGUF files")
    _wait_flags(p)
    p.set_defaults(func=cmd_convert)

    p = verbs.add_parser("quantize", help="quantize a GGUF artifact with llama.cpp", parents=[common])
    p.add_argument("artifact", help="GGUF artifact (id or name)")
    p.add_argument("--quant", required=True, metavar="TYPES", help="e.g. q8_0,q4_k_m")
    _wait_flags(p)
    p.set_defaults(func=cmd_quantize)

    p = verbs.add_parser("eval", help="perplexity on a dataset, forgetting vs a base, a quant sweep",
                         parents=[common])
    p.add_argument("model", help="model, merged model, adapter or GGUF artifact (id or name)")
    p.add_argument("--dataset", help="dataset name or id (its --split is scored)")
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--compare", metavar="BASE",
                   help="flag forgetting: general-text perplexity against BASE (an artifact, or `base` for the "
                        "model's own base)")
    p.add_argument("--sweep", action="store_true", help="size, perplexity, delta and tokens/s of each quant")
    p.add_argument("--tasks", default="", help="lm-evaluation-harness tasks, comma-separated")
    _wait_flags(p)
    p.set_defaults(func=cmd_eval)

    p = verbs.add_parser("tools", help="llama.cpp's converter for the installed llama-cpp-python",
                         parents=[common])
    tverbs = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    t = tverbs.add_parser("fetch", help="fetch it now (it is otherwise fetched on first use)", parents=[common])
    t.add_argument("tool", nargs="?", default="llama.cpp", choices=["llama.cpp", "compressor"],
                   help="llama.cpp's converter (default), or llm-compressor's environment for `compress`")
    t.set_defaults(func=cmd_tools_fetch)


def _wait_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="wait for the job; exit non-zero if it fails")
    p.add_argument("--json", action="store_true")


def artifact_dict(artifact: Artifact, chain: list[Artifact], derived: list[Artifact]) -> dict[str, Any]:
    data = artifact.model_dump()
    data["lineage"] = [{"id": a.id, "kind": a.kind, "name": a.name, "job_id": a.job_id} for a in chain[1:]]
    data["derived"] = [{"id": a.id, "kind": a.kind, "name": a.name} for a in derived]
    data["fidelity"] = (artifact.meta.get("fidelity") or {}).get("status")
    data["evals"] = artifact.meta.get("evals", [])
    return data


def cmd_artifact_list(args: argparse.Namespace) -> int:
    from store.artifacts import list_artifacts
    from store.projects import get_project

    store = open_from_args(args)
    with store.read() as session:
        rows = list_artifacts(session, get_project(session, args.project).id)
    if args.json:
        print_json([a.model_dump() for a in rows])
        return 0
    from store.views import lineage_order

    lines = []
    for a, depth in lineage_order(rows):  # the same tree as the Artifacts tab
        badge = (a.meta.get("fidelity") or {}).get("status", "")
        kind = ("  " * (depth - 1) + "└ " if depth else "") + a.kind
        lines.append((a.id, kind, a.name, human_size(a.size), badge or "-", when(a.created_at)))
    print(table(("ID", "KIND", "NAME", "SIZE", "FIDELITY", "CREATED"), lines) if lines else "no artifacts")
    return 0


def cmd_artifact_show(args: argparse.Namespace) -> int:
    from store.artifacts import children, get_artifact, lineage

    store = open_from_args(args)
    with store.read() as session:
        artifact = get_artifact(session, args.artifact)
        data = artifact_dict(artifact, lineage(session, artifact), children(session, artifact.id))
    if args.json:
        print_json(data)
        return 0
    print(f"artifact {data['id']}: {data['kind']} {data['name']}")
    print(f"  path      {data['path']}")
    print(f"  size      {human_size(data['size'])}  sha256 {data['sha256']}")
    if data["job_id"]:
        print(f"  made by   job {data['job_id']}")
    meta = artifact.meta
    if meta.get("source_type"):  # a model registered by `tunedeck model add`
        print(f"  source    {meta['source_type']} {meta.get('source')} (sha {str(meta.get('source_sha'))[:16]})")
    if meta.get("note"):
        print(f"  note      {meta['note']}")
    for a in data["lineage"]:
        print(f"  from      {a['id']} {a['kind']} {a['name']}")
    for a in data["derived"]:
        print(f"  derived   {a['id']} {a['kind']} {a['name']}")
    fidelity = artifact.meta.get("fidelity") or {}
    if fidelity:
        print(f"  fidelity  {fidelity.get('status')}")
        for name, check in fidelity.items():
            if isinstance(check, dict):
                figures = {k: v for k, v in check.items() if k not in {"status", "examples", "hf", "gguf"}}
                print(f"    {name:<10} {check.get('status')}  {figures}")
    for ev in data["evals"]:
        print(f"  eval      {ev}")
    return 0


def cmd_artifact_delete(args: argparse.Namespace) -> int:
    from core.artifacts import delete_artifact
    from store.artifacts import get_artifact

    store = open_from_args(args)
    with store.read() as session:
        artifact_id = int(get_artifact(session, args.artifact).id)  # type: ignore[arg-type]
    for aid, kind, path, removed in delete_artifact(store, artifact_id, force=args.force):
        print(f"deleted artifact {aid} ({kind})" + ("" if removed else f"; left {path} (outside the home)"))
    return 0


def cmd_artifact_serve(args: argparse.Namespace) -> int:
    from core.artifacts import serve_artifact

    info = serve_artifact(open_from_args(args), args.artifact)
    if args.json:
        print_json(info)
        return 0
    print("\n".join(info["commands"]))
    if info.get("modelfile"):
        print(f"# Ollama Modelfile written: {info['modelfile']}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from core.artifacts import queue_push

    store = open_from_args(args)
    job_id = queue_push(store, args.artifact, args.repo_id, private=args.private)
    return finish_queued(args, store, job_id, "push")


def cmd_convert(args: argparse.Namespace) -> int:
    from core.artifacts import queue_convert

    store = open_from_args(args)
    if args.list_pre_tokenizers:
        from core.artifacts import pre_tokenizers

        print("\n".join(pre_tokenizers(store.home, lambda m: print(m, file=sys.stderr))))
        return 0
    if not args.artifact:
        from cli.common import UsageError

        raise UsageError("tunedeck convert: name the artifact to convert")
    job_id = queue_convert(store, args.artifact, outtype=args.outtype, quants=args.quant,
                           pre_tokenizer=args.pre_tokenizer, name=args.name)
    code = finish_queued(args, store, job_id, "convert")
    _print_quant_checks(args, store, job_id)
    return code


def _print_quant_checks(args: argparse.Namespace, store: Any, job_id: int) -> None:
    """Each quant's perplexity change with the limits it was judged by (after --wait, as text)."""
    if not args.wait or args.json:
        return
    from cli.job import read_job

    for q in read_job(store, job_id).result.get("quants", []):
        if q.get("delta") is not None:
            print(f"  {q['type']:<12} perplexity {q['delta']:+.2%} vs its parent: {q.get('fidelity')} (pass up to "
                  f"+{q['limit']:.1%}, warn up to +{q['warn_limit']:.1%}; from llama.cpp's perplexity table)")


def cmd_quantize(args: argparse.Namespace) -> int:
    from core.artifacts import queue_quantize

    store = open_from_args(args)
    job_id = queue_quantize(store, args.artifact, args.quant)
    code = finish_queued(args, store, job_id, "quantize")
    _print_quant_checks(args, store, job_id)
    return code


def cmd_eval(args: argparse.Namespace) -> int:
    from core.artifacts import queue_eval

    store = open_from_args(args)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    job_id = queue_eval(store, args.model, dataset=args.dataset, split=args.split, compare=args.compare,
                        sweep=args.sweep, tasks=tasks)
    code = finish_queued(args, store, job_id, "eval")
    if args.wait and not args.json:
        from cli.job import read_job

        print_eval(read_job(store, job_id).result)
    return code


def print_eval(result: dict[str, Any]) -> None:
    """An eval job's result as text."""
    if ds := result.get("dataset"):
        made = f"run {ds['from_run']}'s features" if ds.get("from_run") else "default features"
        print(f"  dataset {ds.get('name')} ({ds.get('split')}): perplexity {ds.get('perplexity')} over "
              f"{ds.get('tokens')} tokens of {ds.get('rows')} rows [{ds.get('backend')}; {made}, max_length "
              f"{ds.get('max_length')}, {ds.get('scored')}]")
    if fg := result.get("forgetting"):
        verdict = "DEGRADED (possible catastrophic forgetting)" if fg["degraded"] else "ok"
        print(f"  general text: perplexity {fg['perplexity']} vs base {fg.get('base_label') or fg['base']} "
              f"{fg['base_perplexity']} "
              f"({fg['change']:+.1%}, limit +{fg['limit']:.0%}): {verdict}")
    if rows := result.get("sweep"):
        from engine.evaluate.job import format_sweep

        print("  " + format_sweep(rows).replace("\n", "\n  "))
    for task in result.get("lm_eval", []):
        print(f"  lm-eval {task['task']}: {task['status']} ({task.get('reason', '')})")


def cmd_tools_fetch(args: argparse.Namespace) -> int:
    from core.artifacts import fetch_tool

    store = open_from_args(args)
    print(fetch_tool(store.home, args.tool, lambda m: print(m, file=sys.stderr)))
    return 0
