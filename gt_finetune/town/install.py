"""`gt-finetune install`: wire the rig described by rig.toml into a town, idempotently.

Merge, never clobber (the `gt doctor` rule): a formula or directive the operator edited is
kept, and `status.custom` gains `review` without losing anything already there.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..beads import BdStore
from ..beads.embedded import parse_custom_statuses
from ..errors import InputError
from ..workspace import write_bytes, write_json
from .discover import Town

DATA = Path(__file__).resolve().parent.parent / "data"
LEDGER = ".gt-finetune-installed.json"  # sha256 of what we wrote, to tell our files from edited ones


@dataclass(frozen=True, slots=True)
class Change:
    what: str
    action: str  # added | updated | merged | unchanged | kept-edited | skipped | would-add|update|merge
    detail: str = ""


def install(town: Town, *, dry_run: bool = False, rig_toml: Path = DATA / "rig.toml") -> list[Change]:
    spec = tomllib.loads(rig_toml.read_text(encoding="utf-8"))
    changes = [_install_formula(town, DATA / f, dry_run) for f in spec.get("formulas", {}).get("files", [])]
    for folder in spec.get("plugins", {}).get("dirs", []):
        source = DATA / folder
        for path in sorted(p for p in source.iterdir() if p.is_file()):
            changes.append(_install_file(path, town.root / "plugins" / source.name / path.name, dry_run, town))
    rig = town.rig_for_prefix(spec["prefix"])
    for role, source in spec.get("directives", {}).items():
        if rig is None:
            changes.append(Change(f"directives/{role}.md", "skipped",
                                  f"no rig with prefix `{spec['prefix']}`; add one with "
                                  f"`gt rig add {spec['name']} <git-url> --prefix {spec['prefix']}`"))
        else:
            changes.append(_install_file(DATA / source, rig.path / "directives" / f"{role}.md", dry_run, town))
    workdir = town.workdir_for(f"{spec['prefix']}-") if rig else town.root
    changes.append(_merge_statuses(BdStore(workdir=workdir), spec.get("statuses", {}).get("custom", []), dry_run))
    return changes


def _install_formula(town: Town, source: Path, dry_run: bool) -> Change:
    return _install_file(source, town.root / ".beads" / "formulas" / source.name, dry_run, town)


def _install_file(source: Path, target: Path, dry_run: bool, town: Town) -> Change:
    data = source.read_bytes()
    what = str(target.relative_to(town.root))
    ledger_path = target.parent / LEDGER
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    new_sha = hashlib.sha256(data).hexdigest()
    if target.exists():
        current_sha = hashlib.sha256(target.read_bytes()).hexdigest()
        if current_sha == new_sha:
            return Change(what, "unchanged")
        if ledger.get(target.name) != current_sha:
            return Change(what, "kept-edited", f"your copy differs from ours; ours is {source}")
        action = "updated"
    else:
        action = "added"
    if dry_run:
        return Change(what, {"added": "would-add", "updated": "would-update"}[action])
    write_bytes(target, data)
    target.chmod(source.stat().st_mode & 0o777)
    write_json(ledger_path, {**ledger, target.name: new_sha})
    return Change(what, action)


def _merge_statuses(store: BdStore, wanted: list[str], dry_run: bool) -> Change:
    current_raw = store.get_config("status.custom")
    kept, dropped = [], []
    for part in (p.strip() for p in current_raw.split(",") if p.strip()):
        try:
            parse_custom_statuses(part)
            kept.append(part)
        except InputError:
            dropped.append(part)
    names = {p.split(":", 1)[0] for p in kept}
    added = [w for w in wanted if w.split(":", 1)[0] not in names]
    detail = f"in {store.workdir}"
    if dropped:
        detail += f"; dropped entries bd would reject: {', '.join(repr(d) for d in dropped)}"
    if not added and not dropped:
        return Change("status.custom", "unchanged", f"{current_raw} {detail}")
    value = ",".join(kept + added)
    if dry_run:
        return Change("status.custom", "would-merge", f"{current_raw!r} -> {value!r} {detail}")
    store.set_config("status.custom", value)
    return Change("status.custom", "merged", f"{current_raw!r} -> {value!r} {detail}")


def print_changes(changes: list[Change]) -> None:
    for c in changes:
        print(f"{c.action:>12}  {c.what}" + (f"  ({c.detail})" if c.detail else ""), file=sys.stderr)
