"""Redaction side by side with detect-secrets: recall on the planted corpus, hits on real text, speed.

    .venv/bin/python benchmarks/redaction.py [--shared ../shared] [--seed 0] [--rounds 3]

Both tools scan the same text: every string of every planted record (message content, tool
arguments as stored, tool results, tools, meta), one record after another, and the title,
description and close reason of each carolina-futons issue. Ours runs `Redactor.redact_text` per
record and `redact_record` on the records themselves; detect-secrets runs `detect_secrets.core.scan.scan_file`
on the text written to a temporary file (its CLI path: default plugins and filters). Speed is the
median of the rounds, in MB/s of UTF-8 text.

Recall: a planted value counts as found by ours when it no longer appears in the redacted text; by
detect-secrets when it reports a secret on a line the value covers whose `secret_value` overlaps it
(either contains the other). That is lenient to detect-secrets: its GitHub rule reports just `ghp`.
On carolina every secret hit is a false positive (the issues hold none); home-directory user names
are the only PII there, so ours counts `home_user` separately. Nothing here is asserted.
"""
import argparse
import bisect
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "corpus"))

from gt_finetune.corpus.redact import PII_IDS, PlaceholderScope, Redactor  # noqa: E402
from planted_secrets import planted_corpus, strings  # noqa: E402

try:
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings
except ImportError:
    scan_file = None


def carolina_docs(shared: Path) -> list[str]:
    path = shared / "fixtures" / "real" / "carolina-futons" / "backup" / "issues.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [f"{r['title']}\n{r['description'] or ''}\n{r['close_reason'] or ''}" for r in rows]


def megabytes(docs: list[str]) -> float:
    return sum(len(d.encode("utf-8")) + 1 for d in docs) / 1e6


def timed(fn, rounds: int):
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def ours_text(redactor: Redactor, docs: list[str]) -> tuple[list[str], Counter]:
    out, counts = [], Counter()
    for doc in docs:
        text, found = redactor.redact_text(doc, PlaceholderScope())
        out.append(text)
        counts.update(found)
    return out, counts


def ours_records(redactor: Redactor, records: list[dict]) -> int:
    return sum(redactor.redact_record(r)[0] is not None for r in records)


def detect_secrets_scan(text: str) -> list:
    """(line_number, type, secret_value) for every secret detect-secrets reports in `text`.

    `scan_file` is what `SecretsCollection.scan_file` runs; called directly it keeps repeats, which
    the collection folds into one entry per distinct secret.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
    try:
        with default_settings():
            return [(s.line_number, s.type, s.secret_value or "") for s in scan_file(f.name)]
    finally:
        os.unlink(f.name)


def ds_found(text: str, hits: list, planted: list[tuple[str, str]]) -> set[str]:
    """Planted values detect-secrets reported: a hit on a line the value covers, overlapping it."""
    line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    by_line: dict[int, list[str]] = {}
    for line, _, value in hits:
        by_line.setdefault(line, []).append(value)
    found = set()
    for _, raw in planted:
        at = text.find(raw)
        while at >= 0 and raw not in found:
            first = bisect.bisect_right(line_starts, at)
            last = bisect.bisect_right(line_starts, at + len(raw) - 1)
            if any(v and (v in raw or raw in v) for n in range(first, last + 1) for v in by_line.get(n, [])):
                found.add(raw)
            at = text.find(raw, at + 1)
    return found


def recall_table(planted: list[tuple[str, str]], ours: set[str], theirs: set[str] | None) -> None:
    families = Counter(f for f, _ in planted)
    print(f"\n{'family':24s} {'planted':>7s} {'ours':>6s} {'detect-secrets':>14s}")
    for family, n in sorted(families.items()):
        values = [raw for f, raw in planted if f == family]
        mine = sum(raw in ours for raw in values)
        other = f"{sum(raw in theirs for raw in values):>14d}" if theirs is not None else f"{'-':>14s}"
        print(f"{family:24s} {n:7d} {mine:6d} {other}")
    for label, values in (("recall", [raw for _, raw in planted]),
                          ("recall, secrets only", [raw for f, raw in planted if f not in PII_IDS])):
        other = f"{sum(v in theirs for v in values) / len(values):14.1%}" if theirs is not None else f"{'-':>14s}"
        print(f"{label:24s} {len(values):7d} {sum(v in ours for v in values) / len(values):6.1%} {other}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    records, planted = planted_corpus(seed=args.seed)
    planted_docs = ["\n".join(strings(r)) for r in records]
    corpora = {"planted": planted_docs}
    if (args.shared / "fixtures" / "real").is_dir():
        corpora["carolina"] = carolina_docs(args.shared)
    else:
        print(f"carolina-futons fixtures not found under {args.shared}; pass --shared", file=sys.stderr)
    if scan_file is None:
        print("detect-secrets is not installed; reporting ours alone.\n"
              "hint: install it with `.venv/bin/python -m pip install detect-secrets`", file=sys.stderr)
    redactor = Redactor()
    print(f"planted corpus (seed {args.seed}): {len(records)} records, {len(planted)} secrets in "
          f"{len({f for f, _ in planted})} families")

    results = {}
    for name, docs in corpora.items():
        text = "\n".join(docs)
        mb = megabytes(docs)
        ours_s, (redacted, counts) = timed(lambda: ours_text(redactor, docs), args.rounds)
        ds_s, hits = timed(lambda: detect_secrets_scan(text), args.rounds) if scan_file else (None, None)
        results[name] = (mb, ours_s, ds_s, redacted, counts, text, hits)

    print(f"\n{'corpus':10s} {'MB':>6s} {'ours MB/s':>10s} {'detect-secrets MB/s':>20s} {'speed ratio':>12s}")
    for name, (mb, ours_s, ds_s, *_rest) in results.items():
        theirs = f"{mb / ds_s:20.2f}" if ds_s else f"{'-':>20s}"
        ratio = f"{ds_s / ours_s:11.1f}x" if ds_s else f"{'-':>12s}"
        print(f"{name:10s} {mb:6.2f} {mb / ours_s:10.2f} {theirs} {ratio}")
    record_s, kept = timed(lambda: ours_records(redactor, records), args.rounds)
    print(f"ours, whole records (JSON arguments parsed, meta, content hash): "
          f"{megabytes(planted_docs) / record_s:.2f} MB/s, {kept}/{len(records)} records kept")

    _, _, _, redacted, _, text, hits = results["planted"]
    joined = "\n\0".join(redacted)
    ours_found = {raw for _, raw in planted if raw not in joined}
    recall_table(planted, ours_found, ds_found(text, hits, planted) if hits is not None else None)

    if "carolina" in results:
        mb, _, _, _, counts, _, hits = results["carolina"]
        tokens = sum(len(d.split()) for d in corpora["carolina"])
        secret_hits = sum(n for family, n in counts.items() if family != "home_user")
        print(f"\ncarolina issues: {len(corpora['carolina'])} issues, {tokens} whitespace tokens")
        print(f"  ours: {secret_hits} false positives ({secret_hits / tokens:.3%}), "
              f"{counts.get('home_user', 0)} home-directory user names (real PII)")
        if hits is not None:
            kinds = Counter(kind for _, kind, _ in hits)
            print(f"  detect-secrets: {len(hits)} false positives ({len(hits) / tokens:.3%}) {dict(kinds)}")


if __name__ == "__main__":
    main()
