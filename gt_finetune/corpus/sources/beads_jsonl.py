"""Beads JSONL: `.beads/backup/*.jsonl`, `~/.dolt-archive/git/<db>/*.jsonl`, or `bd export` output.

Real backups are messy: numbers as strings, `"None"` for null, fields older or newer bd versions
add or drop, malformed lines, a byte-order mark (read as `utf-8-sig`, as the other JSONL sources),
a bead written twice (the row updated last is kept). Every line is accounted for: it feeds a record,
or it is rejected with `file:line` and a reason; a file that links out of the folder, or is no
regular file, is rejected whole (`context.open_inside`).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from ..records import Rejected, json_line
from .beads_rows import bead_record
from .context import HarvestContext, Refused, expand, long_line, numbered_lines, open_inside, root_of

SIDE_TABLES = ("labels", "comments", "events", "dependencies")
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    given = expand(location)
    issues_file = find_issues_file(given)
    root = root_of(given, ctx.town)
    side_files = (issues_file.with_name(f"{n}.jsonl") for n in SIDE_TABLES)
    files = [issues_file, *(p for p in side_files if os.path.lexists(p))]
    if not any([not ctx.unchanged(f) for f in files]):  # a list: every file's stamp is recorded
        return
    rejected: list[Rejected] = []
    rows = newest_per_id(list(read_rows(issues_file, rejected, root=root)), issues_file, rejected)
    ctx.bead_ids.update(str(row["id"]) for _, row in rows)
    side = {name: _side_table(issues_file.with_name(f"{name}.jsonl"), root, rejected) for name in SIDE_TABLES}
    for name, path in _other_files(issues_file):
        for lineno in _line_numbers(path, root, rejected):
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
    refused = Counter(re.sub(r":\d+$", "", r.where) for r in rejected)
    for file in sorted(set(used) | set(refused)):
        ctx.count(file, used=used[file], rejected=refused[file])
    yield from rejected


def find_issues_file(source: Path) -> Path:
    """`issues.jsonl` in the folder given (or its `.beads/backup`, `backup`), or the file given itself.
    Whatever is there is opened by `open_inside`, which refuses a link out or a FIFO with why."""
    if os.path.lexists(source) and not source.is_dir():
        return source
    for candidate in (source / "issues.jsonl", source / ".beads" / "backup" / "issues.jsonl",
                      source / "backup" / "issues.jsonl"):
        if os.path.lexists(candidate):
            return candidate
    raise FileNotFoundError(source / "issues.jsonl")


def read_rows(path: Path, rejected: list[Rejected], *, root: Path | None = None,
              key: str = "id") -> Iterator[tuple[int, dict]]:
    """JSON object lines that carry `key`; anything else is rejected with file:line (a file refused
    by `open_inside` with the file and why). `root`: the input's folder (default: the file's own)."""
    try:
        f = open_inside(path, root or Path(os.path.realpath(path.parent)))
    except Refused as exc:
        rejected.append(Rejected(str(path), str(exc)))
        return
    with f:
        for lineno, line in numbered_lines(f):
            if line is None:
                rejected.append(Rejected(f"{path}:{lineno}", long_line()))
                continue
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
            if not isinstance(row[key], (str, int)) or isinstance(row[key], bool):
                rejected.append(Rejected(f"{path}:{lineno}", f"`{key}` is a {type(row[key]).__name__}, not an id"))
                continue
            yield lineno, {k: clean(v) for k, v in row.items()}


def newest_per_id(rows: list[tuple[int, dict]], path: Path, rejected: list[Rejected]) -> list[tuple[int, dict]]:
    """One row per bead id: a backup appended to, or written by two bd versions, can hold a bead twice.
    The row updated last is the bead (a later line when `updated_at` does not tell); the other is
    rejected, naming the line kept."""
    kept: dict[str, tuple[int, dict]] = {}
    for lineno, row in rows:
        bead_id = str(row["id"])
        other = kept.get(bead_id)
        if other is not None and _updated(other[1]) > _updated(row):
            newer, older = other, (lineno, row)
        else:
            newer, older = (lineno, row), other
        kept[bead_id] = newer
        if older is not None:
            rejected.append(Rejected(f"{path}:{older[0]}", f"duplicate of bead `{bead_id}` at line {newer[0]}, "
                                                            "which is kept (updated later, or later in the file)"))
    return sorted(kept.values(), key=lambda entry: entry[0])


def _updated(row: dict) -> datetime:
    try:
        when = datetime.fromisoformat(str(row.get("updated_at")).replace("Z", "+00:00"))
    except ValueError:
        return EARLIEST
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def clean(value):
    """Backups written through some exporters turn null into "None"."""
    return None if value == "None" else value


def _listed(value) -> list:
    """An embedded `labels`/`comments` array; any other type (a string, a number) holds none."""
    return value if isinstance(value, list) else []


def _side_table(path: Path, root: Path, rejected: list[Rejected]) -> list[tuple[int, dict]]:
    return list(read_rows(path, rejected, root=root, key="issue_id")) if os.path.lexists(path) else []


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


def _line_numbers(path: Path, root: Path, rejected: list[Rejected]) -> list[int]:
    try:
        f = open_inside(path, root)
    except Refused as exc:
        rejected.append(Rejected(str(path), str(exc)))
        return []
    with f:
        return [n for n, line in numbered_lines(f) if line is None or line.strip()]
