"""`tunedeck compress`: GPTQ or AWQ (W4A16, compressed-tensors) of a model artifact through llm-compressor."""

from __future__ import annotations

import argparse

from cli.common import open_from_args
from cli.job import finish_queued


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = verbs.add_parser("compress", parents=[common],
                         help="GPTQ or AWQ W4A16 of a model for vLLM/TGI (llm-compressor, compressed-tensors)")
    p.add_argument("artifact", help="model or merged model artifact (id or name)")
    p.add_argument("--method", required=True, metavar="gptq|awq")
    p.add_argument("--scheme", default="W4A16", metavar="W4A16", help="weights 4-bit, activations 16-bit")
    p.add_argument("--group-size", type=int, default=128, metavar="N",
                   help="weights per scale: 32, 64 or 128 (default 128); must divide the layers' input widths")
    p.add_argument("--calibration", metavar="DATASET",
                   help="calibration rows (its train split) and the check's held-out rows (its val split); "
                        "default: the dataset the model was trained on")
    p.add_argument("--samples", type=int, default=256, metavar="N", help="calibration rows (default 256)")
    p.add_argument("--max-length", type=int, default=512, metavar="N", help="tokens per row (default 512)")
    p.add_argument("--name", help="the compressed model's folder and artifact name")
    p.add_argument("--wait", action="store_true", help="wait for the job; exit non-zero if it fails")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    from core.artifacts import queue_compress

    store = open_from_args(args)
    job_id = queue_compress(store, args.artifact, method=args.method, scheme=args.scheme, group_size=args.group_size,
                            calibration=args.calibration, samples=args.samples, max_length=args.max_length,
                            name=args.name)
    code = finish_queued(args, store, job_id, "compress")
    if args.wait and not args.json:
        from cli.job import read_job

        result = read_job(store, job_id).result
        if result.get("delta") is not None:
            print(f"  perplexity {result['parent_perplexity']} -> {result['perplexity']} ({result['delta']:+.2%} vs "
                  f"its parent): {result.get('fidelity')} (pass up to +{result['limit']:.1%}, warn up to "
                  f"+{result['warn_limit']:.1%})")
    return code
