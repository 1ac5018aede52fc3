"""The canonical record every source produces, and the note every rejected line leaves.

A record is OpenAI-style `messages` (+ `tools`) and `meta` provenance (DESIGN.md §1). Its
`content_hash` covers messages and tools only, so the same bead read from JSONL or over SQL
is the same record.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..workspace import canonical_json, parse_json

HUMAN_MARKERS = ("@", "overseer")


@dataclass(frozen=True, slots=True)
class Rejected:
    where: str  # file:line, db.table:id, or a record id
    reason: str


def make_record(messages: list[dict], meta: dict, tools: list | tuple = ()) -> dict:
    """A canonical record. A lone surrogate (`"\\ud800"` in a JSON line) is hashed as is, so the record
    reaches the redactor, which refuses it with a reason instead of the reader crashing here."""
    body = {"messages": messages, "tools": list(tools)}
    digest = hashlib.sha256(canonical_json(body).encode("utf-8", "surrogatepass")).hexdigest()
    return {**body, "meta": {**meta, "content_hash": f"sha256:{digest}"}}


def generated_by(actor: str) -> str:
    """Agents have identities like `harbor/polecats/nux` or `mayor/`; people have emails or `overseer`."""
    if not actor:
        return "unknown"
    if any(marker in actor for marker in HUMAN_MARKERS):
        return "human"
    return f"agent:{actor}"


def json_line(line: str):
    """One JSONL line's value; ValueError with the reason a reader reports when the line cannot be
    read: bad syntax, a number past Python's 4300-digit limit, or nesting deeper than the stack."""
    try:
        return parse_json(line)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
