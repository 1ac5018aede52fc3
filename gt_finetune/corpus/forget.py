"""Right to be forgotten: remove matching records from every corpus and taint what was trained on them.

Each affected corpus gets a new version without the records; the old version keeps only its
manifest (marked `forgotten_into`), and datasets built from it lose their data files too, so
the content is gone from the workspace. The rule is kept, so later harvests leave it out, and
the registry's audit log says what was forgotten and which models are now `tainted` — counts
and ids only, never the content.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError
from ..registry import Model, Registry
from ..workspace import atomic_dir, content_id, read_jsonl, read_manifest, short_id, write_json, write_jsonl

RULES_FILE = "forget.jsonl"


@dataclass(frozen=True, slots=True)
class ForgetRule:
    match: str = ""  # a regex searched in every message and the provenance
    session: str = ""
    actor: str = ""

    def __post_init__(self):
        if sum(bool(x) for x in (self.match, self.session, self.actor)) != 1:
            raise InputError("say what to forget with exactly one of --match, --session or --actor")
        if self.match:
            try:
                re.compile(self.match)
            except re.error as exc:
                raise InputError(f"`--match {self.match}` is not a valid regex: {exc}") from exc

    def matches(self, record: dict) -> bool:
        meta = record.get("meta", {})
        if self.session:
            return meta.get("session") == self.session
        if self.actor:
            return self.actor in (meta.get("actor"), meta.get("assignee"), meta.get("recipient"))
        text = json.dumps({"messages": record.get("messages"), "meta": meta}, ensure_ascii=False)
        return re.search(self.match, text) is not None

    def describe(self) -> str:
        return next(f"--{k} {v}" for k, v in asdict(self).items() if v)


@dataclass(frozen=True, slots=True)
class ForgetResult:
    versions: tuple[tuple[str, str, int], ...]  # (old corpus id, new corpus id, records removed)
    datasets_purged: tuple[str, ...]
    tainted: tuple[Model, ...]


def load_rules(home: Path) -> list[ForgetRule]:
    path = home / "corpus" / RULES_FILE
    return [ForgetRule(**{k: v for k, v in r.items() if k in ("match", "session", "actor")})
            for r in read_jsonl(path)] if path.is_file() else []


def forget(home: Path, rule: ForgetRule, *, dry_run: bool = False) -> ForgetResult:
    corpora = [p for p in sorted((home / "corpus").glob("corpus-*")) if (p / "records.jsonl").is_file()]
    plan = []
    for folder in corpora:
        records = read_jsonl(folder / "records.jsonl")
        keep = [r for r in records if not rule.matches(r)]
        if len(keep) != len(records):
            plan.append((folder, keep, len(records) - len(keep)))
    if dry_run or not plan:
        return ForgetResult(tuple((f.name, "", n) for f, _, n in plan), (), ())
    _append_rule(home, rule)
    versions, datasets = [], []
    for folder, keep, removed in plan:
        new_id = _rewrite(folder, keep, rule, removed)
        versions.append((folder.name, new_id, removed))
        datasets += _purge_datasets(home, read_manifest(folder)["id"])
        _tombstone(folder, new_id)
        _repoint_state(home, folder.name, new_id)
    registry = Registry(home)
    tainted = registry.taint([old for old, _, _ in versions], f"trained on records forgotten by `{rule.describe()}`")
    registry.record("forget", rule.describe(), {"versions": versions, "datasets_purged": datasets,
                                                "tainted": [m.id for m in tainted]})
    return ForgetResult(tuple(versions), tuple(datasets), tuple(tainted))


def _rewrite(folder: Path, keep: list[dict], rule: ForgetRule, removed: int) -> str:
    manifest = read_manifest(folder)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    new_id = f"corpus-{stamp}-{short_id(content_id({'forgot': manifest['id'], 'records': [r['meta']['content_hash'] for r in keep]}))}"
    with atomic_dir(folder.parent / new_id) as tmp:
        write_jsonl(tmp / "records.jsonl", keep)
        rejected = folder / "rejected.jsonl"
        write_jsonl(tmp / "rejected.jsonl", read_jsonl(rejected) if rejected.is_file() else [])
        counts = {**manifest["counts"], "records": len(keep), "new_records": 0}
        write_json(tmp / "manifest.json", {**manifest, "id": new_id, "previous": manifest["id"], "counts": counts,
                                           "forgot": {"rule": rule.describe(), "removed": removed},
                                           "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return new_id


def _tombstone(folder: Path, new_id: str) -> None:
    """The old version keeps its manifest for the audit trail; its data files go."""
    manifest = read_manifest(folder)
    for name in ("records.jsonl", "rejected.jsonl"):
        (folder / name).unlink(missing_ok=True)
    write_json(folder / "manifest.json", {**manifest, "forgotten_into": new_id})


def _purge_datasets(home: Path, corpus_id: str) -> list[str]:
    purged = []
    for folder in sorted((home / "dataset").glob("*")) if (home / "dataset").is_dir() else []:
        if not (folder / "manifest.json").is_file():
            continue
        manifest = read_manifest(folder)
        if corpus_id in manifest.get("inputs", []):
            shutil.rmtree(folder)  # rebuilt from the new corpus version when a job needs it again
            purged.append(folder.name)
    return purged


def _repoint_state(home: Path, old: str, new: str) -> None:
    for path in (home / "corpus" / ".state").glob("*.json") if (home / "corpus" / ".state").is_dir() else []:
        state = json.loads(path.read_text())
        if state.get("latest") == old:
            write_json(path, {**state, "latest": new})


def _append_rule(home: Path, rule: ForgetRule) -> None:
    path = home / "corpus" / RULES_FILE
    rows = read_jsonl(path) if path.is_file() else []
    write_jsonl(path, rows + [{**asdict(rule), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}])
