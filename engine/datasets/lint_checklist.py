"""The checklist of a good fine-tuning set, judged from a lint report's sections, and the overall verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.datasets.pii import KINDS

__all__ = ["SIZE_MIN", "SIZE_OK", "checklist", "verdict"]

SIZE_OK, SIZE_MIN = 500, 100  # training examples: recommended, and the least that teaches anything
_SEVERE_PII = ("credit_card", "api_key", "private_key")
_RANK = {"ok": 0, "warn": 1, "fail": 2}


def _check(check: str, status: str, detail: str) -> dict[str, str]:
    return {"check": check, "status": status, "detail": detail}


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _ids_text(ids: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:limit])
    return shown + (", …" if len(ids) > limit else "")


def checklist(report: dict[str, Any], dropped: dict[str, int]) -> list[dict[str, str]]:
    """The checks of a good fine-tuning set, each ``{check, status (ok/warn/fail), detail}``, from a report's
    sections and the records dropped at import (by category)."""
    c = report["counts"]
    n_train, n_val, total = c["train"], c["val"], c["total"]
    checks = []

    if n_train >= SIZE_OK:
        checks.append(_check("size", "ok", f"{n_train:,} training examples (>= {SIZE_OK} recommended)"))
    elif n_train >= SIZE_MIN:
        checks.append(_check("size", "warn", f"{n_train:,} training examples: {SIZE_OK}+ recommended"))
    else:
        checks.append(_check("size", "fail", f"only {n_train:,} training examples: under {SIZE_MIN} rarely "
                                             f"teaches anything, {SIZE_OK}+ recommended"))  # fmt: skip

    fmt_drops = {k: v for k, v in dropped.items() if "dup" not in k and v}
    n_bad = sum(fmt_drops.values())
    why = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in fmt_drops.items())
    if total == 0:
        checks.append(_check("consistent format", "fail", "no valid examples"))
    elif n_bad == 0:
        checks.append(_check("consistent format", "ok", f"all {total:,} records are {report['format']}"))
    else:
        share = n_bad / (n_bad + total)
        status = "fail" if share > 0.1 else "warn"
        checks.append(_check("consistent format", status, f"{_plural(n_bad, 'record')} ({share:.1%}) left out: {why}"))

    d = report["duplicates"]
    n_exact, n_near = d["exact"]["duplicates"], d["near"]["duplicates"]
    removed = sum(v for k, v in dropped.items() if "dup" in k)
    note = f"; {removed:,} removed at import" if removed else ""
    if n_exact + n_near == 0:
        checks.append(_check("deduplicated", "ok", f"no exact or near duplicates (>= {d['near']['threshold']}){note}"))
    else:
        share = (n_exact + n_near) / max(total, 1)
        parts = []
        if n_exact:
            parts.append(f"{_plural(n_exact, 'exact duplicate')} in {_plural(d['exact']['groups'], 'group')}")
        if n_near:
            parts.append(f"{_plural(n_near, 'near duplicate')} (>= {d['near']['threshold']})")
        hint = "--dedup near" if n_near else "--dedup exact"
        checks.append(_check("deduplicated", "fail" if share > 0.2 else "warn",
                             f"{'; '.join(parts)} ({share:.1%}); use {hint}{note}"))  # fmt: skip

    pii = report["pii"]
    found = [(k, pii[k]) for k in KINDS if pii[k]["count"]]
    if not found:
        checks.append(_check("no PII", "ok", "no e-mails, phone or card numbers, IPs or secrets found"))
    else:
        severe = any(k in _SEVERE_PII for k, _ in found)
        detail = "; ".join(f"{k.replace('_', ' ')}: {v['examples']:,} ex. ({_ids_text(v['ids'], 3)})" for k, v in found)
        checks.append(_check("no PII", "fail" if severe else "warn", detail))

    overlap = d["val_overlap"]
    if n_val == 0:
        checks.append(_check("validation split", "warn", "no validation split: loss on held-out data shows "
                                                         "overfitting (e.g. --val-fraction 0.1)"))  # fmt: skip
    elif overlap["count"]:
        checks.append(_check("validation split", "warn", f"{_plural(overlap['count'], 'validation example')} "
                                                         "duplicate training ones: validation loss will look "
                                                         "too good"))  # fmt: skip
    elif n_val < 10:
        checks.append(_check("validation split", "warn", f"only {n_val} validation examples: too few to trust"))
    else:
        checks.append(_check("validation split", "ok", f"{n_val:,} examples ({n_val / max(total, 1):.0%})"))

    issues = report["structure"]["issues"]
    if report["kind"] == "sft" and total:
        none = issues.get("no_assistant_turn", {}).get("count", 0)
        ends = issues.get("ends_without_assistant", {}).get("count", 0)
        if none:
            share = none / total
            checks.append(_check("trainable turns", "fail" if share > 0.1 else "warn",
                                 f"{_plural(none, 'example')} without an assistant turn train nothing "
                                 f"({_ids_text(issues['no_assistant_turn']['ids'], 3)})"))  # fmt: skip
        elif ends:
            checks.append(_check("trainable turns", "warn",
                                 f"{_plural(ends, 'example')} end on a non-assistant turn, which trains nothing"))
        else:
            checks.append(_check("trainable turns", "ok", "every example ends with an assistant turn"))
    if report["kind"] == "kto" and total:
        labels = report["structure"].get("labels") or {}
        good, bad = labels.get("desirable", 0), labels.get("undesirable", 0)
        if not good or not bad:
            checks.append(_check("kto labels", "warn", f"{good:,} desirable and {bad:,} undesirable completions: "
                                                       "KTO learns from both kinds"))  # fmt: skip
        else:
            checks.append(_check("kto labels", "ok", f"{good:,} desirable, {bad:,} undesirable completions"))
    unused = report.get("fields", {}).get("unused") or {}
    if unused:
        listed = ", ".join(f"{k} ({v:,})" for k, v in list(unused.items())[:6])
        more = f" and {len(unused) - 6} more" if len(unused) > 6 else ""
        checks.append(_check("fields used", "warn", f"not imported: {listed}{more}"))
    if report["kind"] == "preference" and total:
        same = issues.get("chosen_equals_rejected", {}).get("count", 0)
        missing = issues.get("missing_completion", {}).get("count", 0)
        if same or missing:
            checks.append(_check("preference pairs", "warn", f"{same:,} with chosen == rejected, "
                                                             f"{missing:,} missing a completion"))  # fmt: skip
        else:
            checks.append(_check("preference pairs", "ok", "every pair has two different completions"))

    tok = report["tokens"]
    if "skipped" not in tok and total:
        over, ml = tok["over_max"], tok["max_length"]
        if over == 0:
            checks.append(_check("fits max_length", "ok", f"no example exceeds {ml:,} tokens (longest {tok['max']:,})"))
        else:
            share = over / total
            checks.append(_check("fits max_length", "fail" if share > 0.25 else "warn",
                                 f"{_plural(over, 'example')} ({share:.1%}) exceed {ml:,} tokens and will be "
                                 "truncated"))  # fmt: skip
        errors = tok["template_errors"]["count"]
        if tok["note"] or errors:
            detail = tok["note"] or f"the chat template rejects {_plural(errors, 'example')}: {tok['template_error']}"
            checks.append(_check("chat template", "fail" if errors > 0.1 * total else "warn", detail[:200]))
    return checks


def verdict(checks: Sequence[dict[str, str]]) -> str:
    """The worst status among the checks (ok when there are none)."""
    return max((c["status"] for c in checks), key=_RANK.__getitem__, default="ok")
