"""The dataset lint: duplicates, PII, token lengths, the label mask, and the report with its checklist."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.datasets import dedup, pii
from engine.datasets.lint import build_report
from engine.datasets.lint_report import format_report

ROOT = Path(__file__).resolve().parents[1]

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ri", "su", "ta", "vo", "ze") for b in
         ("b", "d", "f", "g", "k", "m", "n", "p", "r", "s", "t", "v", "x", "z", "l", "c")]  # fmt: skip


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _chat(i: int, rng: random.Random, words: int = 30) -> dict:
    return {"id": i, "messages": [
        {"role": "user", "content": _sentence(rng, words)},
        {"role": "assistant", "content": _sentence(rng, words)},
    ]}  # fmt: skip


# ----------------------------------------------------------------------------- dedup


def test_example_text_covers_every_shape() -> None:
    sft = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert dedup.example_text(sft) == "user: hi\nassistant: hello"
    pref = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}]}  # fmt: skip
    text = dedup.example_text(pref)
    assert "q" in text and "good" in text and "bad" in text
    assert dedup.example_text({"text": "plain"}) == "plain"


def test_exact_groups_ignore_whitespace_and_case() -> None:
    texts = ["Hello  World", "other", "hello world", "HELLO\tWORLD\n", "another", "other", "Straße", "STRASSE"]
    assert dedup.exact_duplicate_groups(texts) == [[0, 2, 3], [1, 5], [6, 7]]


def _edited(text: str, rng: random.Random, changes: int) -> str:
    w = text.split()
    for _ in range(changes):
        w[rng.randrange(len(w))] = "edited"
    return " ".join(w)


def test_near_duplicates_found_for_light_edits_and_not_for_distinct_texts() -> None:
    rng = random.Random(7)
    base = [_sentence(rng, 120) for _ in range(80)]
    copies = [_edited(t, rng, 2) for t in base[:20]]
    copies[0] = copies[0].upper() + " !!"  # case and punctuation do not matter either
    texts = base + copies
    pairs = dedup.near_duplicate_pairs(texts, threshold=0.85)
    found = {(i, j) for i, j, _ in pairs}
    assert found == {(k, 80 + k) for k in range(20)}
    assert all(0.85 <= s <= 1.0 for _, _, s in pairs)
    assert dedup.near_duplicate_pairs(base, threshold=0.5) == []  # unrelated texts share little


def test_near_duplicates_exclude_exact_ones_and_follow_the_threshold() -> None:
    rng = random.Random(3)
    a = _sentence(rng, 100)
    b = _edited(a, rng, 10)  # ~25 of ~100 shingles changed: Jaccard ~0.6
    texts = [a, a.upper(), b]
    assert dedup.near_duplicate_pairs(texts, threshold=0.9) == []
    loose = dedup.near_duplicate_pairs(texts, threshold=0.4)
    assert [(i, j) for i, j, _ in loose] == [(0, 2)]  # 1 is an exact duplicate of 0: not a near pair
    exact_j = loose[0][2]
    sets = dedup.shingle_sets([a, b])
    inter = len(np.intersect1d(sets[0], sets[1]))
    assert exact_j == pytest.approx(inter / (len(sets[0]) + len(sets[1]) - inter), abs=1e-3)


def test_short_texts_are_compared_by_characters() -> None:
    texts = ["How do I reverse a list?", "How do I reverse a list", "What is the capital of France?"]
    assert [(i, j) for i, j, _ in dedup.near_duplicate_pairs(texts, threshold=0.7)] == [(0, 1)]


def test_minhash_estimates_track_exact_jaccard() -> None:
    rng = random.Random(5)
    base = [_sentence(rng, 150) for _ in range(30)]
    others = [_edited(t, rng, rng.randint(1, 25)) for t in base]
    sig = dedup.minhash_signatures(base + others, num_perm=64)
    sets = dedup.shingle_sets(base + others)
    errors = []
    for k in range(30):
        inter = len(np.intersect1d(sets[k], sets[30 + k]))
        exact = inter / (len(sets[k]) + len(sets[30 + k]) - inter)
        errors.append((sig[k] == sig[30 + k]).mean() - exact)
    assert abs(np.mean(errors)) < 0.05 and np.std(errors) < 0.1


def test_near_duplicates_are_deterministic_across_processes() -> None:
    code = (
        "import random, sys; sys.path.insert(0, '.')\n"
        "from engine.datasets.dedup import near_duplicate_pairs, minhash_signatures\n"
        "rng = random.Random(1); w = [str(i) + 'x' for i in range(500)]\n"
        "base = [' '.join(rng.choice(w) for _ in range(60)) for _ in range(40)]\n"
        "texts = base + [t.replace(t.split()[3], 'zz', 1) for t in base[:10]]\n"
        "print(near_duplicate_pairs(texts), int(minhash_signatures(texts).sum()))\n"
    )
    outs = set()
    for seed in ("1", "2"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})  # fmt: skip
        assert r.returncode == 0, r.stderr
        outs.add(r.stdout)
    assert len(outs) == 1 and "(0, 40," in outs.pop()


def test_duplicates_to_drop_keeps_the_first() -> None:
    rng = random.Random(11)
    a, c = _sentence(rng, 80), _sentence(rng, 80)
    texts = [a, c, a.upper(), _edited(a, rng, 1), _edited(c, rng, 1), c]
    assert dedup.duplicates_to_drop(texts, "none") == set()
    assert dedup.duplicates_to_drop(texts, "exact") == {2, 5}
    assert dedup.duplicates_to_drop(texts, "near", 0.85) == {2, 3, 4, 5}
    with pytest.raises(ValueError):
        dedup.duplicates_to_drop(texts, "fuzzy")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- PII

POSITIVE = [
    ("email", "mail john.doe+tag@mail.example.co.uk today", "john.doe+tag@mail.example.co.uk"),
    ("phone", "call +1 415 555 2671 now", "+1 415 555 2671"),
    ("phone", "office (415) 555-2671.", "(415) 555-2671"),
    ("phone", "cell 415-555-2671", "415-555-2671"),
    ("phone", "London +44 20 7946 0958", "+44 20 7946 0958"),
    ("phone", "Berlin 030 1234 5678", "030 1234 5678"),
    ("credit_card", "card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
    ("credit_card", "amex 378282246310005", "378282246310005"),
    ("credit_card", "mc 5500-0055-5555-5559", "5500-0055-5555-5559"),
    ("ip", "host 192.168.1.20 is up", "192.168.1.20"),
    ("ip", "dns 8.8.8.8.", "8.8.8.8"),
    ("ip", "v6 2001:db8::ff00:42:8329 here", "2001:db8::ff00:42:8329"),
    ("ip", "link fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
    ("api_key", "key sk-abcdefghij1234567890ABCDEFGHIJ0123456789klmn", "sk-abcdefghij1234567890ABCDEFGHIJ012345"),
    ("api_key", "OPENAI=sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zB9dF1hJ3l", "sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zB9dF1hJ3l"),
    ("api_key", "token ghp_16C7e42F292c6912E7710c838347Ae178B4a then", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("api_key", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
     "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("api_key", "aws AKIAIOSFODNN7EXAMPLE key", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "hf token hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345678", "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345678"),
    ("api_key", "slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
     "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("api_key", "google AIzaSyD-1234567890abcdefghijklmnopqrstu", "AIzaSyD-1234567890abcdefghijklmnopqrstu"),
    ("api_key", "gitlab glpat-xY7zAb3Cd5Ef7Gh9Ij1K", "glpat-xY7zAb3Cd5Ef7Gh9Ij1K"),
    ("api_key", 'api_key = "a8f5f167f44f4964e6c998dee827110c"', "a8f5f167f44f4964e6c998dee827110c"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1x\n-----END RSA PRIVATE KEY-----",
     "MIIEowIBAAKCAQEA1x"),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "-----BEGIN OPENSSH PRIVATE"),
]  # fmt: skip

NEGATIVE = [
    "card 4111 1111 1111 1112 fails Luhn",
    "order 1234567890123456 is not a card",
    "on 2023-01-15, 15.01.2023 or 01/15/2023 at 10:30:45",
    "python 3.11.4, v1.2.3.4, version 1.2.3.4.5 and 10.0",
    "population 8000000000, 1,234,567 people, pi 3.14159265, zip 94103, 42",
    "call 555-1234 or 123-456-7890",  # too short; area code 1xx does not exist
    "localhost 127.0.0.1, 0.0.0.0, ::1 and netmask 255.255.255.0",
    "std::vector<int> and a::b, mac 00:1a:2b:3c:4d:5e",
    'api_key = "YOUR_API_KEY_HERE", password = "hunter2", token: ${TOKEN}',
    "pip install sk-learn-compatible-estimators and task-specific heads",
    "see https://example.com/path?id=12345 and user@localhost",
    "tokenizer = AutoTokenizer.from_pretrained(name) with key_value_pairs",
]


@pytest.mark.parametrize(("kind", "text", "value"), POSITIVE, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(POSITIVE)])
def test_pii_found(kind: str, text: str, value: str) -> None:
    found = pii.find_pii(text)
    assert [k for k, _ in found] == [kind], found
    assert value in found[0][1]


@pytest.mark.parametrize("text", NEGATIVE)
def test_pii_not_flagged(text: str) -> None:
    assert pii.find_pii(text) == []


def test_luhn() -> None:
    assert pii.luhn_ok("4111111111111111") and pii.luhn_ok("378282246310005")
    assert not pii.luhn_ok("4111111111111112")


@pytest.mark.parametrize(("kind", "text", "value"), POSITIVE, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(POSITIVE)])
def test_redaction_never_shows_the_secret(kind: str, text: str, value: str) -> None:
    (found_kind, found), = pii.find_pii(text)
    shown = pii.redact(found_kind, found)
    assert found not in shown
    if kind != "private_key":
        assert value not in shown
    else:  # only the header line is shown, never the key material
        assert "MII" not in shown and "b3Bl" not in shown
    digits = "".join(c for c in found if c.isdigit())
    if kind in ("credit_card", "phone"):
        assert sum(c.isdigit() for c in shown) <= 4
    if kind == "credit_card":
        assert shown.endswith(digits[-4:])
    if kind == "api_key":  # at most the well-known prefix or the variable name survives
        kept = shown.split("****")[0]
        secret = found.split(" = ")[-1]
        rest = secret[len(kept):] if secret.startswith(kept) else secret
        assert len(rest) > 10 and not any(rest[i : i + 5] in shown for i in range(len(rest) - 4))


def test_scan_counts_ids_and_redacts() -> None:
    texts = [(i, f"row {i} mail person{i}@example.com") for i in range(60)]
    texts += [(100, "clean"), (101, "4111-1111-1111-1111")]
    result = pii.scan(texts)
    assert set(result) == set(pii.KINDS)
    assert result["email"]["count"] == 60 and result["email"]["examples"] == 60
    assert result["email"]["ids"] == list(range(50))
    assert result["credit_card"]["ids"] == [101] and result["ip"]["count"] == 0
    dumped = json.dumps(result)
    assert "person0@example.com" not in dumped and "4111-1111-1111-1111" not in dumped
    assert result["email"]["samples"][0] == "p***@e***.com"


def test_batched_scan_matches_single_texts() -> None:
    texts = [t for _, t, _ in POSITIVE] + NEGATIVE + ["", "ünïcode text with 4111 1111 1111 1111 ✓"]
    assert pii.find_pii_many(texts) == [pii.find_pii(t) for t in texts]


# ----------------------------------------------------------------------------- tokens and label mask


@pytest.fixture(scope="module")
def tok(demo_model_dir: Path):
    from engine.datasets.tokens import load_tokenizer

    return load_tokenizer(str(demo_model_dir))


CONVO = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Reverse the order of these words.\n\nred fox"},
    {"role": "assistant", "content": "fox red"},
    {"role": "user", "content": "And these: big blue sea"},
    {"role": "assistant", "content": "sea blue big"},
]


def test_token_lengths_use_the_real_chat_template(tok) -> None:
    from engine.datasets.tokens import token_lengths

    examples = [{"id": 0, "messages": CONVO}, {"id": 1, "messages": CONVO[1:3]}]
    got = token_lengths(tok, examples, "sft")
    want = [len(tok.apply_chat_template(ex["messages"], tokenize=True, return_dict=False)) for ex in examples]
    assert got.tolist() == want and want[0] > want[1]

    pref = [{"prompt": CONVO[:2], "chosen": [{"role": "assistant", "content": "fox red"}],
             "rejected": [{"role": "assistant", "content": "a much longer and wrong answer here"}]}]  # fmt: skip
    longer = len(tok.apply_chat_template(CONVO[:2] + pref[0]["rejected"], tokenize=True, return_dict=False))
    assert token_lengths(tok, pref, "preference").tolist() == [longer]
    assert token_lengths(tok, [{"text": "red fox"}], "text").tolist() == [len(tok("red fox")["input_ids"])]


def test_token_lengths_without_template_and_with_a_rejecting_template(tok) -> None:
    from engine.datasets.tokens import TokenCounter

    saved = tok.chat_template
    try:
        tok.chat_template = None
        counter = TokenCounter(tok, "sft")
        n = counter.add([{"id": 3, "messages": CONVO}])
        assert counter.note and "no chat template" in counter.note
        assert n[0] == len(tok("".join(f"{m['role']}: {m['content']}\n" for m in CONVO), add_special_tokens=False)[
            "input_ids"])
        tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                             "{{ raise_exception('no system role') }}{% endif %}{{ m['content'] }}{% endfor %}")
        counter = TokenCounter(tok, "sft")
        counter.add([{"id": 3, "messages": CONVO}, {"id": 4, "messages": CONVO[1:]}])
        assert counter.template_errors == 1 and counter.template_error_ids == [3]
        assert "no system role" in counter.template_error
    finally:
        tok.chat_template = saved


def test_length_stats() -> None:
    from engine.datasets.tokens import length_stats

    lengths = np.array([10, 20, 30, 40, 3000, 50, 60, 70, 80, 2500])
    st = length_stats(lengths, 2048, ids=list(range(100, 110)))
    assert (st["min"], st["median"], st["max"]) == (10, 55.0, 3000)
    assert st["p95"] == pytest.approx(np.percentile(lengths, 95))
    assert st["over_max"] == 2 and st["over_max_ids"] == [104, 109]
    hist = st["histogram"]
    assert sum(h["count"] for h in hist) == 10 and 6 <= len(hist) <= 14
    assert all(a["hi"] == b["lo"] for a, b in itertools.pairwise(hist))
    assert hist[0]["lo"] <= 10 < hist[0]["hi"] and hist[-1]["lo"] <= 3000 < hist[-1]["hi"]


def test_label_mask_trains_exactly_the_assistant_turns(tok) -> None:
    """Trained = each assistant content plus its <|im_end|>; system, user turns and role headers are masked."""
    from engine.datasets.tokens import label_mask, mask_summary, render_mask

    pairs = label_mask(tok, CONVO)
    full = tok.apply_chat_template(CONVO, tokenize=False)
    assert "".join(t for t, _ in pairs) == full
    assert len(pairs) == len(tok(full, add_special_tokens=False)["input_ids"])

    # Expected, independently: the assistant contents encoded on their own, each followed by <|im_end|>.
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    expected_ids: list[int] = []
    expected_text = ""
    for m in CONVO:
        if m["role"] == "assistant":
            expected_ids += tok(m["content"], add_special_tokens=False)["input_ids"] + [im_end]
            expected_text += m["content"] + "<|im_end|>"
    trained = [t for t, flag in pairs if flag]
    assert "".join(trained) == expected_text
    assert len(trained) == len(expected_ids)

    masked_text = "".join(t for t, flag in pairs if not flag)
    for m in CONVO:
        if m["role"] != "assistant":
            assert m["content"] in masked_text
    assert masked_text.count("<|im_start|>") == len(CONVO)  # every header, assistant ones included
    assert masked_text.count("<|im_end|>") == 3  # the system and user turns' markers
    assert not any(flag and ("<|im_start|>" in t or t.strip() in ("assistant", "user")) for t, flag in pairs)

    summary = mask_summary(pairs)
    assert summary == {"tokens": len(pairs), "trained": len(expected_ids), "masked": len(pairs) - len(expected_ids),
                       "trained_fraction": round(len(expected_ids) / len(pairs), 3)}  # fmt: skip
    shown = render_mask(pairs)
    assert "]fox red<|im_end|>[" in shown and "]sea blue big<|im_end|>[" in shown
    assert "[<|im_start|>system↵" in shown


def test_label_mask_with_another_template(tok) -> None:
    """The spans come from the template itself: a different turn format works the same way."""
    from engine.datasets.tokens import label_mask

    saved = tok.chat_template
    try:
        tok.chat_template = ("{{ bos_token }}{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}"
                             "{% if m['role'] == 'assistant' %}</s>{% endif %}\n\n{% endfor %}"
                             "{% if add_generation_prompt %}### assistant:\n{% endif %}")  # fmt: skip
        pairs = label_mask(tok, CONVO)
    finally:
        tok.chat_template = saved
    assert "".join(t for t, f in pairs if f) == "fox red</s>sea blue big</s>"


# ----------------------------------------------------------------------------- report and checklist


def _statuses(report: dict) -> dict[str, str]:
    return {c["check"]: c["status"] for c in report["checklist"]}


def test_report_of_a_good_large_set_is_ok(tok) -> None:
    rng = random.Random(1)
    examples = [_chat(i, rng) for i in range(660)]
    seen: list[float] = []
    report = build_report(examples[:600], examples[600:], fmt="chat", kind="sft", tokenizer=tok, max_length=512,
                          progress=lambda stage, f: seen.append(f))  # fmt: skip
    json.dumps(report)
    assert report["verdict"] == "ok", report["checklist"]
    assert set(_statuses(report)) >= {"size", "consistent format", "deduplicated", "no PII", "validation split"}
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert report["counts"] == {"train": 600, "val": 60, "total": 660, "dropped": {}}
    assert report["structure"]["turns"] == {"min": 2, "mean": 2.0, "max": 2}
    assert set(report["structure"]["roles"]) == {"user", "assistant"}
    assert report["structure"]["roles"]["user"]["turn_share"] == 0.5
    tokens = report["tokens"]
    assert tokens["min"] <= tokens["median"] <= tokens["p95"] <= tokens["max"] <= 512 and tokens["over_max"] == 0
    lm = report["label_mask"]
    assert lm["sample_id"] == 0 and lm["trained"] > 0 and lm["masked"] > 0
    assert examples[0]["messages"][1]["content"] in lm["rendered"]

    text = format_report(report)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "verdict: ✓ OK" in text and "|#" in text and "✓ ok" in text


def test_report_flags_small_sets_dups_pii_and_missing_val(tok) -> None:
    rng = random.Random(2)
    examples = [_chat(i, rng) for i in range(50)]
    examples[10] = {"id": 10, "messages": examples[3]["messages"]}
    examples[12]["messages"][0]["content"] += " write to jane.roe@example.org"
    examples[20]["messages"][1]["content"] += " use key AKIAIOSFODNN7EXAMPLE"
    examples[30]["messages"] = examples[30]["messages"][:1]
    examples[31]["messages"][1]["content"] = "word " * 700
    report = build_report(examples, [], fmt="sharegpt", kind="sft", tokenizer=tok, max_length=256,
                          dropped={"mixed_format": 4, "invalid": 1})  # fmt: skip
    st = _statuses(report)
    assert st["size"] == "fail" and st["validation split"] == "warn" and st["deduplicated"] == "warn"
    assert st["no PII"] == "fail" and st["consistent format"] == "warn" and st["trainable turns"] == "warn"
    assert st["fits max_length"] == "warn" and report["verdict"] == "fail"
    assert report["duplicates"]["exact"]["examples"][0]["ids"] == [3, 10]
    assert report["pii"]["email"]["ids"] == [12] and report["pii"]["api_key"]["ids"] == [20]
    assert report["tokens"]["over_max_ids"] == [31]
    assert report["structure"]["issues"]["no_assistant_turn"]["ids"] == [30]
    dumped = json.dumps(report)
    assert "AKIAIOSFODNN7EXAMPLE" not in dumped.split('"label_mask"')[0]  # the PII section stays redacted
    text = format_report(report)
    assert all(len(line) <= 80 for line in text.splitlines()) and "verdict: ✗ FAIL" in text


def test_sampled_token_stats_keep_truncation_exact(tok) -> None:
    rng = random.Random(8)
    examples = [_chat(i, rng, rng.randint(5, 40)) for i in range(300)]
    for i in (7, 150, 299):
        examples[i]["messages"][1]["content"] = _sentence(rng, 300)
    exact = build_report(examples, [], fmt="chat", kind="sft", tokenizer=tok, max_length=800)["tokens"]
    sampled = build_report(examples, [], fmt="chat", kind="sft", tokenizer=tok, max_length=800, token_sample=40)
    st = sampled["tokens"]
    assert exact["sampled"] is None and exact["measured"] == 300 and exact["over_max_ids"] == [7, 150, 299]
    assert st["sampled"] == 40 and 40 <= st["measured"] < 300
    assert (st["over_max"], st["over_max_ids"], st["max"]) == (3, [7, 150, 299], exact["max"])
    assert abs(st["median"] - exact["median"]) < 0.2 * exact["median"]
    assert "evenly spaced" in format_report(sampled)


def test_size_thresholds_and_validation_overlap() -> None:
    rng = random.Random(4)
    examples = [_chat(i, rng, 20) for i in range(220)]
    val = [dict(examples[0], id=1000), *examples[200:]]
    report = build_report(examples[:200], val, fmt="chat", kind="sft")
    st = _statuses(report)
    assert st["size"] == "warn" and st["validation split"] == "warn"
    assert report["duplicates"]["val_overlap"]["ids"] == [1000]
    assert report["tokens"] == {"skipped": "no tokenizer given"}
    assert "skipped" in report["label_mask"]
    assert all(len(line) <= 80 for line in format_report(report).splitlines())


def test_near_duplicate_report_and_other_kinds() -> None:
    rng = random.Random(6)
    texts = [{"id": i, "text": _sentence(rng, 80)} for i in range(30)]
    texts.append({"id": 30, "text": _edited(texts[4]["text"], rng, 1)})
    report = build_report(texts, [], fmt="text", kind="text", near_threshold=0.8)
    near = report["duplicates"]["near"]
    assert near["pairs"] == 1 and near["examples"][0]["ids"] == [4, 30] and near["threshold"] == 0.8
    assert report["structure"]["turns"] is None and "skipped" in report["label_mask"]

    pref = [{"id": i, "prompt": [{"role": "user", "content": _sentence(rng, 10)}],
             "chosen": [{"role": "assistant", "content": _sentence(rng, 10)}],
             "rejected": [{"role": "assistant", "content": _sentence(rng, 10)}]} for i in range(5)]  # fmt: skip
    pref[2]["rejected"] = pref[2]["chosen"]
    report = build_report(pref, pref[:0], fmt="preference", kind="preference")
    assert _statuses(report)["preference pairs"] == "warn"
    assert all(len(line) <= 80 for line in format_report(report).splitlines())


# --- PII precision and recall on a labelled set --------------------------------------------------------------

PII_LABELLED = Path(__file__).parent / "fixtures" / "pii_labelled.jsonl"


def test_pii_precision_and_recall_on_the_labelled_set() -> None:
    """Hand-labelled true and false positives (arithmetic results, addends, code samples, ids); the bench
    (scripts/bench/dataset_lint.py) prints the same figures."""
    from engine.datasets.pii import score_labelled

    rows = [json.loads(line) for line in PII_LABELLED.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 90 and sum(not r["kinds"] for r in rows) >= 40  # both sides well represented
    scores = score_labelled((r["text"], r["kinds"]) for r in rows)
    assert scores["all"]["precision"] >= 0.97 and scores["all"]["recall"] >= 0.93, scores["all"]
    for kind in ("phone", "credit_card", "api_key"):
        assert scores[kind]["precision"] >= 0.95 and scores[kind]["recall"] >= 0.9, (kind, scores[kind])


@pytest.mark.parametrize(("text", "kinds"), [
    ("123456789 * 33 = 4074074037", []),  # an arithmetic result that passes Luhn
    ("x = 250 + 4915112345678 - 3", []),
    ("What is 17 +12345678901? It is 12345678918.", []),  # an addend, not a +country code
    ("encoded_key = base64.b64encode(raw_key).decode()", []),  # code, not an API key
    ("Order id 4111111111111111 shipped.", []),  # Luhn-valid, but nothing says card
    ("card 4111111111111111 on file", ["credit_card"]),
    ("4111 1111 1111 1111", ["credit_card"]),  # grouped like a card
    ("Text +14155552671 when you arrive.", ["phone"]),
    ('SECRET_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"', ["api_key"]),
])
def test_pii_needs_context_and_shape(text: str, kinds: list[str]) -> None:
    from engine.datasets.pii import find_pii

    assert sorted({k for k, _ in find_pii(text)}) == kinds
