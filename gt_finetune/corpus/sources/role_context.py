"""Role context: directives (`<town>[/<rig>]/directives/<role>.md`), role templates, captured `gt prime`.

What `gt prime` injects is the rulebook an agent works under (gastown.md §10). Each file becomes
a record that asks the role for its rules; the dataset stage can also inject it as context.
A folder is searched for `directives/<role>.md`, `roles/<role>.md.tmpl` or `<role>.toml`,
and `*.prime.md` / `*.prime.txt` captures (the role is the file's stem).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..records import Rejected, make_record
from .context import HarvestContext

ROLES = ("mayor", "deacon", "witness", "refinery", "polecat", "crew", "dog", "boot")
MAX_CHARS = 20_000
SYSTEM = "You are a Gas Town {role}{where}. You know the rules your role works under."


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    # a longer file cannot hold MAX_CHARS characters or fewer: refused unread
    return ctx.one_record_per_file(location, lambda p: bool(_role_of(p)), _convert, max_bytes=4 * MAX_CHARS + 3)


def _role_of(path: Path) -> str:
    stem = path.name.split(".")[0]
    if stem not in ROLES:
        return ""
    if path.parent.name in ("directives", "roles") or ".prime." in path.name:
        return stem
    return ""


def _convert(path: Path, data: bytes) -> dict | Rejected:
    """A rig's directives sit in `<town>/<rig>/directives/`, and a rig folder holds `config.json`."""
    role = _role_of(path) or path.name.split(".")[0]
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Rejected(str(path), "not UTF-8 text")
    if not text:
        return Rejected(str(path), "empty")
    if len(text) > MAX_CHARS:
        return Rejected(str(path), f"{len(text)} chars, over {MAX_CHARS}: too long to learn as one answer")
    container = path.parent.parent
    rig = container.name if path.parent.name == "directives" and (container / "config.json").is_file() else ""
    kind = "directive" if path.parent.name == "directives" else "prime output" if ".prime." in path.name else "template"
    where = f" in rig `{rig}`" if rig else ""
    messages = [{"role": "system", "content": SYSTEM.format(role=role, where=where)},
                {"role": "user", "content": f"What does your role {kind} tell you?"},
                {"role": "assistant", "content": text}]
    return make_record(messages, {"source": "role_context", "location": str(path), "kind": kind, "rig": rig,
                                  "role": role, "actor": "", "session": "", "created_at": "",
                                  "generated_by": "unknown"})
