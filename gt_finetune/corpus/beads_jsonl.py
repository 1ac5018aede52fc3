"""Closed beads from a beads JSONL backup (`.beads/backup/*.jsonl`, `bd export`) as raw rows.

Real backups are messy: numbers as strings, `"None"` for null, fields that older or newer
bd versions add or drop, malformed lines. A bad line is reported with file:line and skipped.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Skipped:
    where: str  # file:line or bead id
    reason: str


def find_issues_file(source: Path) -> Path:
    if source.is_file():
        return source
    for candidate in (source / "issues.jsonl", source / ".beads" / "backup" / "issues.jsonl", source / "backup" / "issues.jsonl"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(source / "issues.jsonl")


def read_rows(path: Path, skipped: list[Skipped], *, key: str = "id") -> Iterator[tuple[int, dict]]:
    """JSON object lines that carry `key`; anything else is reported and skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                skipped.append(Skipped(f"{path}:{lineno}", f"not JSON ({exc.msg})"))
                continue
            if not isinstance(row, dict) or key not in row:
                skipped.append(Skipped(f"{path}:{lineno}", f"not a record (no `{key}`)"))
                continue
            yield lineno, {k: clean(v) for k, v in row.items()}


def read_labels(issues_file: Path, skipped: list[Skipped]) -> dict[str, set[str]]:
    """labels.jsonl beside issues.jsonl (`{"issue_id","label"}`)."""
    labels: dict[str, set[str]] = {}
    path = issues_file.with_name("labels.jsonl")
    if path.is_file():
        for _, row in read_rows(path, skipped, key="issue_id"):
            if row.get("label"):
                labels.setdefault(str(row["issue_id"]), set()).add(str(row["label"]))
    return labels


def clean(value):
    """Backups written through some exporters turn null into "None"."""
    return None if value == "None" else value
