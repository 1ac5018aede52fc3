"""Corpus stage: closed beads → canonical chat records with provenance (DESIGN.md §1, §4).

A closed bead is a worked example: its title and description are the situation, its close
reason is what the agent did. Each becomes one record of OpenAI-style `messages` + `meta`.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..beads.store import BeadStore
from ..errors import InputError
from ..workspace import atomic_dir, content_id, is_complete, read_jsonl, short_id, write_json, write_jsonl
from .beads_jsonl import Skipped, find_issues_file, read_labels, read_rows

SAMPLE_TOWN = Path(__file__).resolve().parent.parent / "data" / "sample_town"
# Types and labels the JSONL Dog scrubs too (gastown.md §3.3): plumbing, not work.
NON_WORK_TYPES = {"message", "event", "agent", "convoy", "molecule", "role", "merge-request", "rig", "gate"}
NON_WORK_LABELS = {"gt:message", "gt:agent", "gt:escalation", "ft:job", "ft:eval"}
HUMAN_MARKERS = ("@", "overseer")
SYSTEM_PROMPT = ("You are a Gas Town agent working in rig `{rig}`. Given a bead (a unit of work tracked "
                 "with `bd`), say what you did to resolve it, as you would in its close reason.")


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    source: str  # a backup folder or issues.jsonl, `sample`, or `store` (closed beads in the job's store)
    min_reason_chars: int = 20

    def __post_init__(self):
        if self.min_reason_chars < 0:
            raise InputError(f"`min_reason_chars` must be >= 0, got {self.min_reason_chars}")


@dataclass(frozen=True, slots=True)
class CorpusManifest:
    id: str
    path: Path
    records: int
    skipped: int
    source: str


def build_corpus(spec: CorpusSpec, *, home: Path, store: BeadStore | None = None) -> CorpusManifest:
    """Write `<home>/corpus/<id>/records.jsonl` + manifest; an existing complete corpus is reused.

    Raises:
        InputError: the source does not exist, or holds no usable closed bead.
    """
    skipped: list[Skipped] = []
    source_name, rows = _rows(spec, store, skipped)
    records = []
    for where, row, labels in rows:
        record = to_record(row, labels, source=source_name, min_reason_chars=spec.min_reason_chars)
        if isinstance(record, str):
            skipped.append(Skipped(where, record))
        else:
            records.append(record)
    if not records:
        raise InputError(f"no usable closed bead in `{source_name}` ({len(skipped)} skipped)",
                         hint="point `--var source=` at a beads backup folder (e.g. `<town>/.beads/backup`)")
    cid = content_id({"spec": asdict(spec), "records": records})
    out = home / "corpus" / short_id(cid)
    if not is_complete(out):
        with atomic_dir(out) as tmp:
            write_jsonl(tmp / "records.jsonl", records)
            write_jsonl(tmp / "skipped.jsonl", [asdict(s) for s in skipped])
            write_json(tmp / "manifest.json", {
                "schema_version": 1, "stage": "corpus", "id": cid, "spec": asdict(spec), "source": source_name,
                "counts": {"records": len(records), "skipped": len(skipped)},
                "skipped_reasons": _count_reasons(skipped)})
    for s in skipped[:3]:
        print(f"  skipped {s.where}: {s.reason}", file=sys.stderr)
    if len(skipped) > 3:
        print(f"  … {len(skipped) - 3} more; all are listed in {out / 'skipped.jsonl'}", file=sys.stderr)
    return CorpusManifest(id=cid, path=out, records=len(records), skipped=len(skipped), source=source_name)


def load_records(corpus_dir: Path) -> list[dict]:
    return read_jsonl(corpus_dir / "records.jsonl")


def _rows(spec: CorpusSpec, store: BeadStore | None, skipped: list[Skipped]):
    if spec.source == "store":
        if store is None:
            raise InputError("corpus source `store` needs a bead store")
        beads = [b for b in store.list(include_closed=True) if b.status == "closed"]
        rows = [(b.id, b.to_json(), set(b.labels)) for b in beads]
        return store.location, rows
    path = SAMPLE_TOWN if spec.source == "sample" else Path(spec.source).expanduser()
    try:
        issues = find_issues_file(path)
    except FileNotFoundError:
        raise InputError(f"corpus source {path} has no issues.jsonl (looked in it, .beads/backup/ and backup/)",
                         hint="pass `--var source=<town>/.beads/backup`, `--var source=sample` or `--var source=store`")
    labels = read_labels(issues, skipped)
    rows = [(f"{issues}:{lineno}", row, labels.get(str(row["id"]), set()) | set(row.get("labels") or ()))
            for lineno, row in read_rows(issues, skipped)]
    return str(issues), rows


def to_record(row: dict, labels: set[str], *, source: str, min_reason_chars: int = 20) -> dict | str:
    """One canonical record, or the reason the bead is not a training example."""
    if row.get("status") != "closed":
        return f"status is {row.get('status')!r}, not closed"
    if labels & NON_WORK_LABELS:
        return f"plumbing bead (label {sorted(labels & NON_WORK_LABELS)[0]})"
    if str(row.get("issue_type") or "task") in NON_WORK_TYPES:
        return f"plumbing bead (type {row.get('issue_type')!r})"
    if str(row.get("ephemeral") or "0") in ("1", "True", "true"):
        return "ephemeral (wisp)"
    title = str(row.get("title") or "").strip()
    reason = str(row.get("close_reason") or "").strip()
    if not title:
        return "no title"
    if len(reason) < min_reason_chars:
        return f"close reason too short ({len(reason)} chars)"
    bead_id = str(row["id"])
    rig = bead_id.split("-", 1)[0] if "-" in bead_id else ""
    description = str(row.get("description") or "").strip()
    priority = row.get("priority")
    user = f"Bead {bead_id} ({row.get('issue_type') or 'task'}, P{priority if priority is not None else 2}): {title}"
    if description:
        user += f"\n\n{description}"
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT.format(rig=rig or "town")},
        {"role": "user", "content": user},
        {"role": "assistant", "content": reason},
    ]
    actor = str(row.get("created_by") or "")
    closer = str(row.get("assignee") or actor)
    return {
        "messages": messages,
        "tools": [],
        "meta": {
            "source": "beads", "location": source, "bead_id": bead_id, "rig": rig, "actor": actor,
            "assignee": closer, "session": str(row.get("closed_by_session") or ""),
            "created_at": row.get("created_at") or "", "closed_at": row.get("closed_at") or "",
            "content_hash": "sha256:" + hashlib.sha256(f"{title}\n{description}\n{reason}".encode()).hexdigest(),
            "generated_by": generated_by(closer),
        },
    }


def generated_by(actor: str) -> str:
    """Agents have identities like `harbor/polecats/nux` or `mayor/`; people have emails or `overseer`."""
    if not actor:
        return "unknown"
    if any(marker in actor for marker in HUMAN_MARKERS):
        return "human"
    return f"agent:{actor}"


def _count_reasons(skipped: list[Skipped]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in skipped:
        key = s.reason.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
