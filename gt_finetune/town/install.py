"""`gt-finetune install`: wire the rig described by rig.toml into a town, idempotently.

Merge, never clobber (the `gt doctor` rule): a formula or directive the operator edited is
kept, and `status.custom` gains `review` without losing anything already there.

All or nothing for the town's layout: agents write in the town, so a symlinked `plugins` or a
route out of it could aim our files (an executable `run.sh` among them) or `bd config set` at the
operator's own; every target is checked before the first write, and one that leads out of the
town, or is not a regular file, stops the install with nothing written.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..beads import BdStore
from ..beads.embedded import parse_custom_statuses
from ..errors import GTFinetuneError, InputError
from ..workspace import shown, write_bytes, write_json
from .discover import Town, optional, read_json

DATA = Path(__file__).resolve().parent.parent / "data"
LEDGER = ".gt-finetune-installed.json"  # sha256 of what we wrote, to tell our files from edited ones
CHANGED = ("added", "updated", "merged", "would-add", "would-update", "would-merge")
WRITTEN = ("added", "updated")


@dataclass(frozen=True, slots=True)
class Change:
    what: str
    action: str  # added | updated | merged | unchanged | kept-edited | skipped | would-add|update|merge
    detail: str = ""


def install(town: Town, *, dry_run: bool = False, rig_toml: Path = DATA / "rig.toml") -> list[Change]:
    """What changed, one Change per file and one for `status.custom`.

    Raises:
        InputError: a target leads out of the town or is not a regular file (nothing was written).
        ExternalError: `bd` failed; its hint names any files written before it.
    """
    spec = tomllib.loads(rig_toml.read_text(encoding="utf-8"))
    files = [(DATA / f, town.root / ".beads" / "formulas" / Path(f).name)
             for f in spec.get("formulas", {}).get("files", [])]
    for folder in spec.get("plugins", {}).get("dirs", []):
        source = DATA / folder
        files += [(path, town.root / "plugins" / source.name / path.name)
                  for path in sorted(p for p in source.iterdir() if p.is_file())]
    rig = town.rig_for_prefix(spec["prefix"])
    skipped = []
    for role, source in spec.get("directives", {}).items():
        if rig is None:
            skipped.append(Change(f"directives/{role}.md", "skipped",
                                  f"no rig with prefix `{spec['prefix']}`; add one with "
                                  f"`gt rig add {spec['name']} <git-url> --prefix {spec['prefix']}`"))
        else:
            files.append((DATA / source, rig.path / "directives" / f"{role}.md"))
    _refuse_unsafe_targets(town, [target for _, target in files])
    store = BdStore(workdir=town.workdir_for(f"{spec['prefix']}-") if rig else town.root)
    current = store.get_config("status.custom")  # before any write: a bd that fails here cost nothing
    changes = [_install_file(source, target, dry_run, town) for source, target in files] + skipped
    try:
        changes.append(_merge_statuses(store, current, spec.get("statuses", {}).get("custom", []), dry_run))
    except GTFinetuneError as exc:
        wrote = [c.what for c in changes if c.action in WRITTEN]
        if wrote:  # bd's "nothing was changed by this command" is about bd's command, not this one
            exc.hint = (f"install wrote {len(wrote)} files before `bd` failed and keeps them (a rerun leaves "
                        f"them as they are): {', '.join(wrote)}; `status.custom` is not merged yet: "
                        + (exc.hint or "").removeprefix("nothing was changed by this command; "))
        raise
    return changes


def _refuse_unsafe_targets(town: Town, targets: list[Path]) -> None:
    """Every file install would write (and the ledger beside it) must be absent or a regular file,
    and lead to a place inside the town once symlinks are followed."""
    escaping, irregular = {}, []
    for path in dict.fromkeys(p for target in targets for p in (target, target.parent / LEDGER)):
        if town.outside(path) is not None:
            way_out = _way_out(town, path)
            escaping[str(way_out.relative_to(town.root))] = shown(town.outside(way_out))
        elif os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            irregular.append(str(path.relative_to(town.root)))
    said = [f"{what} leads to {where}, outside the town {town.root}" for what, where in escaping.items()]
    said += [f"{what} is a symlink or not a regular file" for what in irregular]
    if said:
        raise InputError(f"install refused, nothing was written: {'; '.join(said)}",
                         hint="agents can write in the town, so gt-finetune writes only plain files in plain folders "
                              "inside it: make those a folder or file of the town (or remove them), then run it again")


def _way_out(town: Town, path: Path) -> Path:
    """The first folder or file on the way from the town root to `path` that leads out of the town."""
    parts = path.relative_to(town.root).parts
    return next(p for p in (town.root.joinpath(*parts[:i]) for i in range(1, len(parts) + 1))
                if town.outside(p) is not None)


def _install_file(source: Path, target: Path, dry_run: bool, town: Town) -> Change:
    data = source.read_bytes()
    what = str(target.relative_to(town.root))
    ledger_path = target.parent / LEDGER
    ledger = optional(ledger_path, read_json) or {}  # unreadable: no file counts as ours, edits are kept
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


def _merge_statuses(store: BdStore, current_raw: str, wanted: list[str], dry_run: bool) -> Change:
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


def summary(changes: list[Change], root: Path, *, dry_run: bool) -> str:
    """The last line: how many of the items changed (or would), and where our record of them is."""
    changed = sum(1 for c in changes if c.action in CHANGED)
    line = f"{'would change' if dry_run else 'changed'} {changed} of {len(changes)} items in {root}"
    if any(c.action in WRITTEN for c in changes):
        line += f" (the sha256 of each file written is kept in {LEDGER} beside it)"
    return line
