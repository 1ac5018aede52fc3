"""The canonical record every source produces, and the note every rejected line leaves.

A record is OpenAI-style `messages` (+ `tools`) and `meta` provenance (DESIGN.md §1). Its
`content_hash` covers messages and tools only, so the same bead read from JSONL or over SQL
is the same record.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..workspace import canonical_json

HUMAN_MARKERS = ("@", "overseer")


@dataclass(frozen=True, slots=True)
class Rejected:
    where: str  # file:line, db.table:id, or a record id
    reason: str


def make_record(messages: list[dict], meta: dict, tools: list | tuple = ()) -> dict:
    body = {"messages": messages, "tools": list(tools)}
    digest = hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()
    return {**body, "meta": {**meta, "content_hash": f"sha256:{digest}"}}


def generated_by(actor: str) -> str:
    """Agents have identities like `harbor/polecats/nux` or `mayor/`; people have emails or `overseer`."""
    if not actor:
        return "unknown"
    if any(marker in actor for marker in HUMAN_MARKERS):
        return "human"
    return f"agent:{actor}"
