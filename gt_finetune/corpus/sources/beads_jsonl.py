"""Beads JSONL: `.beads/backup/*.jsonl`, `~/.dolt-archive/git/<db>/*.jsonl`, or `bd export` output.

Real backups are messy: numbers as strings, `"None"` for null, fields older or newer bd versions
add or drop, malformed lines, a byte-order mark (read as `utf-8-sig`, as the other JSONL sources).
Every line is accounted for: it feeds a record, or it is rejected with `file:line` and a reason.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..records import Rejected, json_line
from .beads_rows import bead_record
from .context import HarvestContext, expand

SIDE_TABLES = ("labels", "comments", "events", "dependencies")


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    issues_file = find_issues_file(expand(location))
    files = [issues_file, *(p for p in (issues_file.with_name(f"{n}.jsonl") for n in SIDE_TABLES) if p.is_file())]
    if not any([not ctx.unchanged(f) for f in files]):  # a list: every file's stamp is recorded
        return
    rejected: list[Rejected] = []
    rows = list(read_rows(issues_file, rejected))
    ctx.bead_ids.update(str(row["id"]) for _, row in rows)
    side = {name: _side_table(issues_file.with_name(f"{name}.jsonl"), rejected) for name in SIDE_TABLES}
    for name, path in _other_files(issues_file):
        for lineno in _line_numbers(path):
            rejected.append(Rejected(f"{path}:{lineno}", f"{name} rows are not examples"))
    labels = _group(side["labels"], "label")
    comments = _group(side["comments"], None)
    harvested: set[str] = set()
    for lineno, row in rows:
        bead_id = str(row["id"])
        row_labels = labels.get(bead_id, set()) | {x for x in _listed(row.get("labels")) if isinstance(x, str)}
        row_comments = comments.get(bead_id, []) or [c for c in _listed(row.get("comments")) if isinstance(c, dict)]
        record = bead_record(row, row_labels, row_comments, location=str(issues_file),
                             min_reason_chars=ctx.min_reason_chars)
        if isinstance(record, str):
            rejected.append(Rejected(f"{issues_file}:{lineno}", record))
        else:
            harvested.add(bead_id)
            yield record
    used = Counter({str(issues_file): len(harvested)})
    for name, entries in side.items():
        path = issues_file.with_name(f"{name}.jsonl")
        for lineno, row in entries:
            if str(row.get("issue_id")) in harvested:
                used[str(path)] += 1
            else:
                rejected.append(Rejected(f"{path}:{lineno}", f"belongs to `{row.get('issue_id')}`, not an example"))
    refused = Counter(r.where.rsplit(":", 1)[0] for r in rejected)
    for file in sorted(set(used) | set(refused)):
        ctx.count(file, used=used[file], rejected=refused[file])
    yield from rejected


def find_issues_file(source: Path) -> Path:
    if source.is_file():
        return source
    for candidate in (source / "issues.jsonl", source / ".beads" / "backup" / "issues.jsonl",
                      source / "backup" / "issues.jsonl"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(source / "issues.jsonl")


def read_rows(path: Path, rejected: list[Rejected], *, key: str = "id") -> Iterator[tuple[int, dict]]:
    """JSON object lines that carry `key`; anything else is rejected with file:line."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json_line(line)
            except ValueError as exc:
                rejected.append(Rejected(f"{path}:{lineno}", str(exc)))
                continue
            if not isinstance(row, dict) or key not in row:
                rejected.append(Rejected(f"{path}:{lineno}", f"not a record (no `{key}`)"))
                continue
            if not isinstance(row[key], (str, int)):
                rejected.append(Rejected(f"{path}:{lineno}", f"`{key}` is a {type(row[key]).__name__}, not an id"))
                continue
            yield lineno, {k: clean(v) for k, v in row.items()}


def clean(value):
    """Backups written through some exporters turn null into "None"."""
    return None if value == "None" else value


def _listed(value) -> list:
    """An embedded `labels`/`comments` array; any other type (a string, a number) holds none."""
    return value if isinstance(value, list) else []


def _side_table(path: Path, rejected: list[Rejected]) -> list[tuple[int, dict]]:
    return list(read_rows(path, rejected, key="issue_id")) if path.is_file() else []


def _group(entries: list[tuple[int, dict]], field: str | None) -> dict:
    out: dict = {}
    for _, row in entries:
        key = str(row["issue_id"])
        if field:
            if row.get(field):
                out.setdefault(key, set()).add(str(row[field]))
        else:
            out.setdefault(key, []).append(row)
    return out


def _other_files(issues_file: Path) -> list[tuple[str, Path]]:
    known = {"issues", *SIDE_TABLES}
    if issues_file.name != "issues.jsonl":
        return []
    return [(p.stem, p) for p in sorted(issues_file.parent.glob("*.jsonl")) if p.stem not in known]


def _line_numbers(path: Path) -> list[int]:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return [n for n, line in enumerate(f, 1) if line.strip()]
