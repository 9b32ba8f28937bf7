"""Dataset import benchmark: 100,000 chat records with planted duplicates, near-duplicates and PII.

Runs the real import (CLI -> detached runner -> job process) with near-dedup and token
stats on the demo tokenizer at several sizes, and reports for each: wall time, records/s,
the ratio against a bare read of the same file (json.loads per line, same run), and the
job's peak RSS (memory should stay flat-ish as the file grows). Then precision/recall of
the planted findings: duplicates from what the import dropped (end to end), PII from the
detector the import uses, on every record (1% of records also carry a distractor that must not be
found: an arithmetic result that passes Luhn, an addend after '+', a code sample assigning a key).
First, precision and recall of the PII detectors on the hand-labelled true and false positives of
tests/fixtures/pii_labelled.jsonl (the unit test holds them to a floor).

    .venv/bin/python scripts/bench/dataset_lint.py [--sizes 25000,50000,100000] [--pii-only]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORDS = ("model data train learn token layer weight batch epoch loss value graph query answer system "
         "network signal vector matrix python server client memory cache thread kernel driver packet "
         "window buffer stream sample metric label cluster shard replica backup archive").split()
PII = {
    "email": lambda r: f"write to {r.choice(['ann', 'bo', 'cy'])}.{r.randint(1, 999)}@example.org please",
    "phone": lambda r: f"call +1 415-555-{r.randint(1000, 9999)} tomorrow",
    "credit_card": lambda r: f"card {_luhn(r)} on file",
    "ip": lambda r: f"host 10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)} is down",
    "api_key": lambda r: "key sk-" + "".join(r.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
                                                 for _ in range(40)),
}


DISTRACTORS = (  # PII-shaped text that is not PII: never planted as truth, so a finding is a false positive
    lambda r: f"{(n := r.randint(10**6, 10**7))} * {r.randint(100, 999)} = {n * 7}",
    lambda r: f"the sum {r.randint(1, 99)} +{r.randint(10**10, 10**11)} is easy",
    lambda r: "encoded_key = base64.b64encode(raw_key_bytes).decode()",
    lambda r: f"order id {_luhn(r).replace(' ', '')} shipped",
)


def _luhn(r: random.Random) -> str:
    digits = [4] + [r.randint(0, 9) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return f"{s[:4]} {s[4:8]} {s[8:12]} {s[12:]}"


def _sentence(r: random.Random, n: int) -> str:
    return " ".join(r.choice(WORDS) for _ in range(n))


def generate(n: int, seed: int = 0) -> tuple[list[dict], dict[str, set[int]]]:
    """n chat records (~4 turns) and the 0-based indices of what was planted, by kind."""
    r = random.Random(seed)
    rows: list[dict] = []
    truth: dict[str, set[int]] = {"exact": set(), "near": set(), **{k: set() for k in PII}}
    for i in range(n):
        if i > 100 and r.random() < 0.02:
            src = r.randrange(i)
            rows.append(json.loads(json.dumps(rows[src])))
            truth["exact"].add(i)
            _inherit_pii(truth, src, i)
            continue
        if i > 100 and r.random() < 0.02:
            src = r.randrange(i)
            _inherit_pii(truth, src, i)
            base = json.loads(json.dumps(rows[src]))
            words = base["messages"][1]["content"].split()
            words[r.randrange(len(words))] = "edited"
            base["messages"][1]["content"] = " ".join(words)
            rows.append(base)
            truth["near"].add(i)
            continue
        turns = [
            {"role": "user", "content": f"record {i}: {_sentence(r, 25)}?"},
            {"role": "assistant", "content": _sentence(r, 60)},
            {"role": "user", "content": _sentence(r, 15) + "?"},
            {"role": "assistant", "content": _sentence(r, 40)},
        ]
        if r.random() < 0.01:
            kind = r.choice(sorted(PII))
            turns[2]["content"] += " " + PII[kind](r)
            truth[kind].add(i)
        if r.random() < 0.01:
            turns[3]["content"] += " " + r.choice(DISTRACTORS)(r)
        rows.append({"messages": turns})
    return rows, truth


def _inherit_pii(truth: dict[str, set[int]], src: int, dst: int) -> None:
    """A copy of a record that holds planted PII holds it too."""
    for kind in PII:
        if src in truth[kind]:
            truth[kind].add(dst)


def _prf(found: set[int], truth: set[int]) -> str:
    tp = len(found & truth)
    p = tp / len(found) if found else 1.0
    rcl = tp / len(truth) if truth else 1.0
    return f"precision {p:.3f} recall {rcl:.3f} (planted {len(truth)}, found {len(found)})"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "--home", str(home), *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)


def bench_size(tmp: Path, n: int, tokenizer: Path) -> tuple[dict, list[dict], dict]:
    rows, truth = generate(n)
    src = tmp / f"chat-{n}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = time.perf_counter()
    with src.open("rb") as fh:
        for line in fh:
            json.loads(line)
    bare = time.perf_counter() - t
    home = tmp / f"home-{n}"
    _cli(home, "project", "create", "bench")
    t = time.perf_counter()
    out = _cli(home, "dataset", "add", "bench", str(src), "--dedup", "near", "--tokenizer", str(tokenizer),
               "--max-length", "512", "--json")
    wall = time.perf_counter() - t
    if out.returncode:
        raise SystemExit(f"import failed: {out.stderr}")
    shown = json.loads(out.stdout)
    job = json.loads(_cli(home, "job", "list", "--json").stdout)[0]
    stats = {"n": n, "wall": wall, "bare": bare, "rss": job["result"].get("peak_rss_mb"),
             "kept": shown["num_train"] + shown["num_val"], "bytes": src.stat().st_size}
    return stats, rows, {"truth": truth, "snapshot": Path(shown["path"]), "report": shown["report"]}


def labelled_pii() -> None:
    """Precision and recall per kind on the labelled set."""
    from engine.datasets.pii import score_labelled

    path = ROOT / "tests" / "fixtures" / "pii_labelled.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    negatives = sum(not r["kinds"] for r in rows)
    print(f"PII on the labelled set ({len(rows)} texts, {negatives} with no PII): {path.relative_to(ROOT)}")
    for kind, s in score_labelled((r["text"], r["kinds"]) for r in rows).items():
        print(f"  {kind:<12} precision {s['precision']:.3f} recall {s['recall']:.3f} "
              f"(tp {s['tp']}, fp {s['fp']}, fn {s['fn']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="25000,50000,100000")
    parser.add_argument("--pii-only", action="store_true", help="only the labelled PII set (a second)")
    args = parser.parse_args()
    labelled_pii()
    if args.pii_only:
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    from engine.datasets.dedup import example_text
    from engine.datasets.pii import find_pii
    from engine.demo import build_demo_model

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tokenizer = build_demo_model(tmp / "demo-model")
        results = []
        for n in sizes:
            stats, rows, extra = bench_size(tmp, n, tokenizer)
            results.append(stats)
            print(f"{n:>7,} records ({stats['bytes'] / 1e6:5.1f} MB): import {stats['wall']:6.1f} s "
                  f"= {n / stats['wall']:7,.0f} records/s; bare json read {stats['bare']:.2f} s "
                  f"(import/bare time ratio {stats['wall'] / stats['bare']:.0f}x); job peak RSS "
                  f"{stats['rss']:.0f} MB", flush=True)
        # precision/recall on the largest size
        truth = extra["truth"]
        kept = Counter()
        for split in ("train.jsonl", "val.jsonl"):
            for line in (extra["snapshot"] / split).read_text().splitlines():
                row = json.loads(line)
                row.pop("id")
                kept[example_text(row)] += 1
        dropped: set[int] = set()
        for i, row in enumerate(rows):
            key = example_text(row)
            if kept[key] > 0:
                kept[key] -= 1
            else:
                dropped.add(i)
        planted_dups = truth["exact"] | truth["near"]
        print(f"duplicates dropped by --dedup near: {_prf(dropped, planted_dups)}")
        print(f"  of which exact: {_prf(dropped & truth['exact'], truth['exact'])}")
        found: dict[str, set[int]] = {k: set() for k in PII}
        for i, row in enumerate(rows):
            for kind, _match in find_pii(example_text(row)):
                found.setdefault(kind, set()).add(i)
        for kind in PII:
            print(f"PII {kind:<12}: {_prf(found.get(kind, set()), truth[kind])}")
        report_pii = {k: v.get("count") for k, v in extra["report"].get("pii", {}).items() if isinstance(v, dict)}
        print(f"import report PII counts: {report_pii}")
        big, small = results[-1], results[0]
        print(f"largest: {big['n']:,} records in {big['wall']:.1f} s (goal < 60 s); peak RSS "
              f"{small['rss']:.0f} MB at {small['n']:,} -> {big['rss']:.0f} MB at {big['n']:,} "
              f"({(big['rss'] - small['rss']) / ((big['n'] - small['n']) / 1000):.2f} MB per 1,000 records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
