"""Formulas (`*.formula.toml` / `.json`) on every tier of the search path: one authoring example each.

The record asks for the formula by name and purpose and answers with the file as written, so
the model learns formulas that Gas Town's parser accepts. A file that does not validate is
rejected with the checker's one-line error, never taught.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...formula import SUFFIXES, check_formula
from ..records import Rejected, make_record
from .context import HarvestContext

SYSTEM = "You write Gas Town formulas: TOML that `gt formula run` and `bd cook` accept."


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    return ctx.one_record_per_file(location, lambda p: p.name.endswith(SUFFIXES), _convert)


def _convert(path: Path) -> dict | Rejected:
    errors = check_formula(path)
    if errors:
        return Rejected(str(path), f"formula does not validate: {errors[0].message}")
    import tomllib
    import json

    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    name = str(data["formula"])
    purpose = str(data.get("description") or "").strip().split("\n\n")[0].strip()
    ask = f"Write the Gas Town formula `{name}`" + (f": {purpose}" if purpose else ".")
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask},
                {"role": "assistant", "content": text.strip()}]
    return make_record(messages, {"source": "formulas", "location": str(path), "formula": name, "rig": "",
                                  "role": "", "actor": "", "session": "", "created_at": "",
                                  "generated_by": "unknown"})
