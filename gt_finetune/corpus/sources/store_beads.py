"""Closed beads from the job's own bead store (`bd list --all` in a town, SQLite without one)."""
from __future__ import annotations

from collections.abc import Iterator

from ..records import Rejected
from .beads_rows import bead_record
from .context import HarvestContext


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    if ctx.store is None:
        raise FileNotFoundError("store")
    where = ctx.store.location
    used = refused = 0
    for bead in ctx.store.list(include_closed=True):
        ctx.bead_ids.add(bead.id)
        row = bead.to_json()
        record = bead_record(row, set(bead.labels), [], location=where, min_reason_chars=ctx.min_reason_chars)
        if isinstance(record, str):
            refused += 1
            yield Rejected(f"{where}#{bead.id}", record)
        else:
            used += 1
            yield record
    ctx.count(where, used=used, rejected=refused)
