"""Formulas (`*.formula.toml` / `.json`) on every tier of the search path: one authoring example each.

The record asks for the formula by name and purpose and answers with the file as written, so
the model learns formulas that Gas Town's parser accepts. A file that does not validate is
rejected with the checker's one-line error, never taught.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...formula import MAX_FILE_BYTES, SUFFIXES, parse_formula
from ..records import Rejected, make_record
from .context import HarvestContext

SYSTEM = "You write Gas Town formulas: TOML that `gt formula run` and `bd cook` accept."


MAX_BYTES = MAX_FILE_BYTES  # what `formulas check` reads of a file too


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    return ctx.one_record_per_file(location, lambda p: p.name.endswith(SUFFIXES), _convert, max_bytes=MAX_BYTES)


def _convert(path: Path, data: bytes) -> dict | Rejected:
    """`data` is the file as `read_inside` read it, and what is checked and taught: the path is not
    opened again, so a file swapped after the read cannot slip an unchecked formula in."""
    formula, errors = parse_formula(path, data)
    if errors:
        return Rejected(str(path), f"formula does not validate: {errors[0].message}")
    text = data.decode("utf-8")  # it parsed: it decodes
    purpose = formula.description.strip().split("\n\n")[0].strip()
    ask = f"Write the Gas Town formula `{formula.name}`" + (f": {purpose}" if purpose else ".")
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask},
                {"role": "assistant", "content": text.strip()}]
    return make_record(messages, {"source": "formulas", "location": str(path), "formula": formula.name, "rig": "",
                                  "role": "", "actor": "", "session": "", "created_at": "",
                                  "generated_by": "unknown"})
