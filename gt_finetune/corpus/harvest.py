"""Corpus stage: harvest a town's history from its sources into one versioned, immutable corpus.

Each input is a (source, location) pair — `beads_jsonl:~/gt/.beads/backup`, `transcripts:~/.claude/projects`,
… — read by that source's module. Records are filtered (scope, --since/--until), deduplicated by
content hash, and compared with what earlier harvests saw: nothing new writes nothing, new
records make a new version `corpus-<timestamp>-<hash>` holding everything so far. Every line
read is accounted for: it feeds a record or is listed in `rejected.jsonl` with where and why.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ExternalError, InputError
from ..town import Town
from ..workspace import (atomic_dir, content_id, read_jsonl, read_manifest, safe_name, short_id, write_json,
                         write_jsonl)
from ..config import load_section
from .forget import load_rules
from .health import HealthConfig, HealthReport, assess, formula_hash
from .report import write_report
from .records import Rejected
from .redact import PlaceholderScope, RedactionConfig, Redactor
from .sources import beads_jsonl, beads_sql, events, formulas, role_context, store_beads, transcripts
from .sources.context import HarvestContext

SourceFn = Callable[[str, HarvestContext], Iterator["dict | Rejected"]]
SOURCES: dict[str, SourceFn] = {
    "beads_jsonl": beads_jsonl.harvest,
    "beads_sql": beads_sql.harvest,
    "transcripts": transcripts.harvest,
    "events": events.harvest,
    "formulas": formulas.harvest,
    "role_context": role_context.harvest,
    "store": store_beads.harvest,
}
SAMPLE_TOWN = Path(__file__).resolve().parent.parent / "data" / "sample_town"


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    inputs: tuple[tuple[str, str], ...]  # (source, location) pairs
    scope: tuple[str, ...] = ()  # `town` (town-level history) and/or `rig:<name>` entries; empty: everything
    since: str = ""  # ISO date or time; records created earlier are left out
    until: str = ""
    min_reason_chars: int = 20

    def __post_init__(self):
        if self.min_reason_chars < 0:
            raise InputError(f"`min_reason_chars` must be >= 0, got {self.min_reason_chars}")
        if not self.inputs:
            raise InputError("a corpus needs at least one input",
                             hint="e.g. `gt-finetune corpus build --beads-jsonl ~/gt/.beads/backup`")
        for kind, _ in self.inputs:
            if kind not in SOURCES:
                raise InputError(f"unknown corpus source `{kind}` (sources: {', '.join(SOURCES)})")
        for entry in self.scope:
            if entry != "town" and (not entry.startswith("rig:") or not entry[4:]):
                raise InputError(f"`--scope {entry}` must be `town` or `rig:<name>`",
                                 hint="e.g. `--scope town --scope rig:harbor`; leave it out to keep everything read")
        for name in ("since", "until"):
            if getattr(self, name):
                _parse_time(getattr(self, name), name)


@dataclass(frozen=True, slots=True)
class CorpusManifest:
    id: str  # corpus-<timestamp>-<hash>
    path: Path
    records: int
    new_records: int
    rejected: int
    source: str  # what was read, for one-line summaries


def build_corpus(spec: CorpusSpec, *, home: Path, town: Town | None = None, store=None,
                 quiet: bool = False) -> CorpusManifest:
    """Harvest every input; write a new corpus version only when something is new.

    Raises:
        InputError: a location does not exist, or nothing usable was found at all.
        ExternalError: a server behind an input (Dolt, `bd`) failed; it says what was read before
            it, and nothing is written.
    """
    state_path = home / "corpus" / ".state" / f"{short_id(content_id(asdict(spec)))}.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"sources": {}, "seen": [], "latest": ""}
    latest = home / "corpus" / state["latest"] if state["latest"] else None
    if latest is not None and not (latest / "manifest.json").is_file():
        state, latest = {"sources": {}, "seen": [], "latest": ""}, None  # the previous version is gone: start over
    seen = set(state["seen"])
    harvest = _harvest(spec, state, home=home, town=town, store=store, quiet=quiet)
    new = [r for r in harvest.records if r["meta"]["content_hash"] not in seen]
    if latest is not None and not new:
        _save_state(state_path, state)
        _ensure_report(latest)
        return _manifest_of(latest, new_records=0)
    previous = read_jsonl(latest / "records.jsonl") if latest is not None else []
    replaced = {identity(r) for r in new}
    everything = [r for r in previous if identity(r) not in replaced] + new
    if latest is not None:
        harvest.carry_over(latest)
    config = load_section(home, "health", HealthConfig)
    health = assess(everything, config, current_formulas=current_formulas(spec, town),
                    existing_beads=harvest.bead_ids or None)
    new_hashes = {r["meta"]["content_hash"] for r in new}
    by_hash = {r["meta"]["content_hash"]: r for r in everything}
    for entry in health.dropped:
        if entry["content_hash"] in new_hashes:
            kind = entry["reason"].split(" of record")[0]
            twin = f" of `{_where(by_hash[entry['kept']])}`" if entry["kept"] in by_hash else ""
            harvest.reject(everything[entry["index"]], f"{kind}{twin}")
    everything = health.kept
    if not everything:
        raise InputError(f"no usable record in {', '.join(f'{k}:{v}' for k, v in spec.inputs)} "
                         f"({len(harvest.rejected)} lines rejected)",
                         hint="see why with the rejected lines above, or point the inputs at more history")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    digest = short_id(content_id({"spec": asdict(spec), "records": [r["meta"]["content_hash"] for r in everything]}))
    corpus_id = f"corpus-{stamp}-{digest}"
    out = home / "corpus" / corpus_id
    state["seen"], state["latest"] = sorted(seen | new_hashes), corpus_id
    if (out / "manifest.json").is_file():  # same spec, same records, same second: it is this very corpus
        _save_state(state_path, state)
        _ensure_report(out)
        return _manifest_of(out, new_records=len(new))
    rejected = harvest.rejected
    manifest = {
        "schema_version": 1, "stage": "corpus", "id": corpus_id, "previous": latest.name if latest else "",
        "spec": public_spec(spec), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {"records": len(everything), "new_records": len(new), "rejected": len(rejected),
                   "by_source": _count(everything, "source"), "by_rig": _count(everything, "rig"),
                   "by_role": _count(everything, "role")},
        "rejected_reasons": dict(Counter(_reason_kind(r.reason) for r in rejected).most_common()),
        "redaction": dict(sorted(harvest.redaction.items())),
        "health": {"dropped": len(health.dropped), "stale": len(health.stale), "conflicts": len(health.conflicts),
                   "tokens": health.tokens, "gate": health.gate(config)},
        "accounting": harvest.accounting, "fingerprint": fingerprint(spec, town)}
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "records.jsonl", everything)
        write_jsonl(tmp / "rejected.jsonl", [asdict(r) for r in rejected])
        write_json(tmp / "health.json", {"dropped": health.dropped, "stale": health.stale,
                                         "conflicts": health.conflicts, "tokens": health.tokens})
        write_json(tmp / "manifest.json", manifest)
    _save_state(state_path, state)  # first: a run killed now still finds this corpus next time
    write_report(out, health, manifest, out_dir=out)  # reads the corpus's own rejected.jsonl: after the rename
    _show_rejections(rejected, out, quiet)
    return _manifest_of(out, new_records=len(new))


@dataclass
class _Harvest:
    """What one harvest read: records, rejected lines, and per-file accounting of both."""

    records: list[dict] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    accounting: dict = field(default_factory=dict)
    bead_ids: set = field(default_factory=set)

    redaction: Counter = field(default_factory=Counter)  # replacements per rule family

    def reject(self, record: dict, reason: str, raw_location: str | None = None) -> None:
        """A line that became a record and was then filtered or dropped: rejected after all.

        `raw_location` is the file as the accounting knows it, before redaction touched the path."""
        where = raw_location if raw_location is not None else record["meta"].get("location", "")
        self.rejected.append(Rejected(_storable(_where(record)), reason))
        if where in self.accounting:
            entry = self.accounting[where]
            self.accounting[where] = {**entry, "used": entry["used"] - 1, "rejected": entry["rejected"] + 1}

    def carry_over(self, latest: Path) -> None:
        """Files not read again this time keep what the last version said of them."""
        read_now = set(self.accounting) | {_file_of(r.where) for r in self.rejected}
        for file, entry in read_manifest(latest).get("accounting", {}).items():
            self.accounting.setdefault(file, entry)
        self.rejected += [Rejected(**r) for r in read_jsonl(latest / "rejected.jsonl")
                          if _file_of(r["where"]) not in read_now]


def _where(record: dict) -> str:
    """`file:line` when the record knows its line, else `file#<bead id or session>`."""
    meta = record["meta"]
    spot = f":{meta['line']}" if meta.get("line") else f"#{meta.get('bead_id') or meta.get('session', '')}"
    return f"{meta.get('location', '')}{spot}"


def _harvest(spec: CorpusSpec, state: dict, *, home: Path, town: Town | None, store, quiet: bool) -> _Harvest:
    """Read every input; filter (scope, dates, forget rules) and drop exact duplicates as it goes."""
    out, rules, by_hash, progress = _Harvest(), load_rules(home), {}, _Progress(quiet)
    redactor = Redactor(load_section(home, "redaction", RedactionConfig))

    def scrub(text: str) -> str:
        return redactor.redact_text(_storable(text), PlaceholderScope())[0]

    read: list[str] = []  # what each finished input gave, for the error when a later one fails
    for n, (kind, location) in enumerate(spec.inputs):
        ctx = HarvestContext(town=town, min_reason_chars=spec.min_reason_chars, progress=progress.add, store=store,
                             state=state["sources"].setdefault(f"{kind}:{location}", {}), bead_ids=out.bead_ids)
        pending, before = [], len(out.records)
        try:
            for item in SOURCES[kind](location, ctx):
                if isinstance(item, Rejected):  # where and why can quote what was read: scrub them too
                    out.rejected.append(Rejected(scrub(item.where), scrub(item.reason)))
                    continue
                raw_location = item["meta"].get("location", location)
                redacted, counts, why = redactor.redact_record(item)
                if redacted is None:  # fail closed: what cannot be scanned never goes on
                    pending.append(({"meta": {**item["meta"], "location": scrub(raw_location)}},
                                    f"cannot be scanned: {why}", raw_location))
                    continue
                item = redacted
                out.redaction.update(counts)
                _name_rig(item, town)
                reason = _filtered_out(item, spec, town) or next(
                    (f"forgotten ({rule.describe()})" for rule in rules if rule.matches(item)), None)
                if reason is None and item["meta"]["content_hash"] in by_hash:
                    reason = f"duplicate of a record from {by_hash[item['meta']['content_hash']]}"
                if reason:
                    pending.append((item, reason, raw_location))
                    continue
                by_hash[item["meta"]["content_hash"]] = item["meta"].get("location", location)
                out.records.append(item)
        except FileNotFoundError as exc:
            missing = exc.filename or (exc.args[0] if exc.args else location)
            raise InputError(f"corpus input `{kind}:{location}` does not exist ({missing})",
                             hint="check the path; `gt-finetune corpus build --help` lists the inputs") from exc
        except ExternalError as exc:
            progress.done()
            others = [f"{k}:{_public_location(k, loc)}" for k, loc in spec.inputs[n + 1:]]
            raise ExternalError(f"corpus input `{kind}:{_public_location(kind, location)}` failed: {exc.message}; "
                                f"read before it: {', '.join(read) or 'nothing'}"
                                + (f"; not read: {', '.join(others)}" if others else ""),
                                hint=exc.hint, code=exc.code) from exc
        out.accounting.update(ctx.accounting)
        places = len(ctx.accounting)
        read.append(f"{kind} {len(out.records) - before} records"
                    + (f" from {places} {'table' if kind == 'beads_sql' else 'file'}{'s' if places != 1 else ''}"
                       if places else ""))
        for item, reason, raw_location in pending:
            out.reject(item, reason, raw_location)
    progress.done()
    return out


def public_spec(spec: CorpusSpec) -> dict:
    """The spec as the manifest keeps it: passwords in `beads_sql` locations are masked."""
    return {**asdict(spec), "inputs": [[kind, _public_location(kind, location)] for kind, location in spec.inputs]}


def _public_location(kind: str, location: str) -> str:
    return re.sub(r"^([^:@/]*):[^@]*@", r"\1:***@", location) if kind == "beads_sql" else location


def current_formulas(spec: CorpusSpec, town: Town | None) -> dict[str, str]:
    """Formula name -> hash of its current text, from the town and the `formulas` inputs (staleness)."""
    folders = [Path(loc).expanduser() for kind, loc in spec.inputs if kind == "formulas"]
    if town is not None:
        folders.append(town.root / ".beads" / "formulas")
    out = {}
    for folder in folders:
        for path in sorted(folder.glob("*.formula.toml")) if folder.is_dir() else []:
            try:
                name = tomllib.loads(path.read_text(encoding="utf-8")).get("formula")
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                continue
            if isinstance(name, str):
                out.setdefault(name, formula_hash(path.read_text(encoding="utf-8")))
    return out


def _ensure_report(corpus_dir: Path) -> None:
    """The report of a corpus whose build was killed between publishing it and writing its report
    (a version `corpus forget` wrote has no health check to report)."""
    if not (corpus_dir / "report.md").is_file() and (corpus_dir / "health.json").is_file():
        write_report(corpus_dir, health_of(corpus_dir), read_manifest(corpus_dir), out_dir=corpus_dir)


def health_of(corpus_dir: Path) -> HealthReport:
    """A written corpus's health, as its build assessed it."""
    saved = json.loads((corpus_dir / "health.json").read_text(encoding="utf-8"))
    return HealthReport(kept=read_jsonl(corpus_dir / "records.jsonl"), **saved)


def town_inputs(root: Path, *, sources: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """What a town offers, in source order: Dolt over SQL (when the town runs a server), JSONL
    backups, the event feed, formulas, role directives, and Claude transcripts under the town."""
    candidates: list[tuple[str, Path | str]] = []
    if (root / ".dolt-data").is_dir():
        candidates.append(("beads_sql", ""))
    backups = [root / ".beads" / "backup", *sorted(root.glob("*/mayor/rig/.beads/backup"))]
    candidates += [("beads_jsonl", p) for p in backups if (p / "issues.jsonl").is_file()]
    if (root / ".events.jsonl").is_file() or (root / ".feed.jsonl").is_file():
        candidates.append(("events", root))
    if (root / ".beads" / "formulas").is_dir():
        candidates.append(("formulas", root / ".beads" / "formulas"))
    candidates += [("role_context", p) for p in [root / "directives", *sorted(root.glob("*/directives"))]
                   if p.is_dir()]
    if (root / "claude" / "projects").is_dir():
        candidates.append(("transcripts", root / "claude" / "projects"))
    chosen = tuple((kind, str(location)) for kind, location in candidates if not sources or kind in sources)
    if not chosen:
        raise InputError(f"found no history to harvest in {root}" + (f" for sources {', '.join(sources)}"
                                                                     if sources else ""),
                         hint="name inputs explicitly, e.g. `gt-finetune corpus build --beads-jsonl DIR`")
    return chosen


def identity(record: dict) -> str:
    """What a record is *about*: a newer version (a bead's edited close reason, a transcript that
    grew, an edited formula) replaces the older one instead of standing beside it."""
    meta = record["meta"]
    source = meta.get("source", "")
    if meta.get("bead_id") and source in ("beads", "mail"):
        return f"{source}:{meta['bead_id']}"
    if source == "transcripts" and meta.get("session"):
        return f"transcripts:{meta['session']}:{meta.get('sidechain', False)}:{meta.get('lines', '').split('-')[0]}"
    if source in ("formulas", "role_context"):
        return f"{source}:{meta.get('location', '')}"
    return meta["content_hash"]


def load_records(corpus_dir: Path) -> list[dict]:
    return read_jsonl(corpus_dir / "records.jsonl")


def list_corpora(home: Path) -> list[dict]:
    folder = home / "corpus"
    if not folder.is_dir():
        return []
    manifests = [read_manifest(p) for p in folder.glob("corpus-*") if (p / "manifest.json").is_file()]
    return sorted(manifests, key=lambda m: (m.get("created_at", ""), m["id"]))


def find_corpus(home: Path, corpus_id: str) -> Path:
    """The corpus whose id starts with `corpus_id`.

    Raises:
        InputError: `corpus_id` is not a name (a path, a glob), or it matches no corpus or several.
    """
    safe_name(corpus_id, what="corpus id", hint="list them with `gt-finetune corpus list`")
    matches = [p for p in sorted((home / "corpus").glob(f"{corpus_id}*")) if (p / "manifest.json").is_file()]
    if len(matches) != 1:
        what = "no corpus" if not matches else f"{len(matches)} corpora"
        raise InputError(f"{what} matching `{corpus_id}` in {home / 'corpus'}",
                         hint="list them with `gt-finetune corpus list`")
    return matches[0]


def fingerprint(spec: CorpusSpec, town: Town | None) -> dict:
    """What the town looked like: formula and role-context hashes, bd/gt versions when installed."""
    files = {}
    for kind, location in spec.inputs:
        if kind in ("formulas", "role_context"):
            root = Path(location).expanduser()
            for path in sorted(root.rglob("*") if root.is_dir() else [root]):
                if path.is_file() and path.suffix in (".toml", ".json", ".md", ".tmpl", ".txt"):
                    files[str(path)] = content_id(path.read_text(encoding="utf-8", errors="replace"))
    return {"files": files, "tools": {name: _version(name) for name in ("bd", "gt")},
            "town": str(town.root) if town else ""}


def staleness(fp: dict) -> list[str]:
    """How the town moved on since a corpus's `fingerprint`: formulas and role texts changed or
    gone, `bd`/`gt` upgraded. A model trained on that corpus may teach what no longer holds."""
    reasons = []
    for name, digest in sorted(fp.get("files", {}).items()):
        path = Path(name)
        if not path.is_file():
            reasons.append(f"{name} is gone")
        elif content_id(path.read_text(encoding="utf-8", errors="replace")) != digest:
            reasons.append(f"{name} changed")
    for tool, version in sorted(fp.get("tools", {}).items()):
        now = _version(tool)
        if version and now and now != version:
            reasons.append(f"`{tool}` is now {now} (was {version})")
    return reasons


@functools.cache  # one `bd version` / `gt version` per process, however many models `staleness` checks
def _version(tool: str) -> str:
    if shutil.which(tool) is None:
        return ""
    try:
        proc = subprocess.run([tool, "version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""


def _name_rig(record: dict, town: Town | None) -> None:
    """Bead prefixes become rig names when the town knows them (`hb` → `harbor`)."""
    meta = record["meta"]
    if town is not None and meta.get("rig"):
        rig = town.rig_for_prefix(meta["rig"])
        if rig is not None:
            meta["rig"] = rig.name


def _scope_of(meta: dict, town: Town | None) -> str:
    """`rig:<name>` for a rig's history; `town` for the town's own (hq, mayor, deacon, no rig)."""
    rig = meta.get("rig") or ""
    if not rig or rig == "hq" or (town is not None and all(r.name != rig for r in town.rigs)):
        return "town"
    return f"rig:{rig}"


def _filtered_out(record: dict, spec: CorpusSpec, town: Town | None) -> str | None:
    meta = record["meta"]
    if spec.scope and _scope_of(meta, town) not in spec.scope:
        return f"rig `{meta.get('rig') or 'town'}` is outside --scope {','.join(spec.scope)}"
    created = meta.get("created_at") or ""
    if (spec.since or spec.until) and created:
        try:
            when = _parse_time(created, "created_at")
        except InputError:
            return f"created_at is not a timestamp, so --since/--until cannot place it ({created!r})"
        if spec.since and when < _parse_time(spec.since, "since"):
            return f"created before --since {spec.since} ({created})"
        if spec.until and when > _parse_time(spec.until, "until"):
            return f"created after --until {spec.until} ({created})"
    return None


def _storable(text: str) -> str:
    """A quoted value (a bead id, an event type) may hold a lone surrogate, which no UTF-8 file can store: `?`."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _file_of(where: str) -> str:
    return re.split(r"[#]|:(?=\d+$)", where, maxsplit=1)[0]


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"`{name}` is not an ISO date or time: {value!r}", hint="e.g. `--since 2026-10-01`") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _reason_kind(reason: str) -> str:
    """`belongs to `hb-a3`, not an example` → `belongs to …, not an example`, for counting."""
    return re.sub(r"\s*\([^)]*\)", "", re.sub(r"`[^`]*`", "…", reason)).strip()


def _count(records: list[dict], key: str) -> dict[str, int]:
    return dict(Counter(str(r["meta"].get(key) or "-") for r in records).most_common())


def _save_state(path: Path, state: dict) -> None:
    write_json(path, state)


def _show_rejections(rejected: list[Rejected], out: Path, quiet: bool) -> None:
    """The reasons, most common first, with one example each; every line is in rejected.jsonl."""
    if quiet or not rejected:
        return
    kinds = Counter(_reason_kind(r.reason) for r in rejected)
    example = {}
    for r in rejected:
        example.setdefault(_reason_kind(r.reason), r.where)
    print(f"  rejected {len(rejected)} lines:", file=sys.stderr)
    for kind, n in kinds.most_common(5):
        print(f"    {n:>5}× {kind} (e.g. {example[kind]})", file=sys.stderr)
    print(f"  all of them, with reasons: {out / 'rejected.jsonl'}", file=sys.stderr)


def _manifest_of(out: Path, *, new_records: int) -> CorpusManifest:
    m = read_manifest(out)
    sources = ", ".join(f"{k} {v}" for k, v in m["counts"]["by_source"].items())
    return CorpusManifest(id=m["id"], path=out, records=m["counts"]["records"], new_records=new_records,
                          rejected=m["counts"]["rejected"], source=sources)


class _Progress:
    """One line on stderr, refreshed at most every half second, for long reads (never on a pipe)."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty() and not _env_off()
        self.total, self.last = 0, 0.0

    def add(self, n: int) -> None:
        self.total += n
        now = time.monotonic()
        if self.enabled and now - self.last > 0.5:
            print(f"\r  harvesting… {self.total:,} read", end="", file=sys.stderr, flush=True)
            self.last = now

    def done(self) -> None:
        if self.enabled and self.last:
            print("", file=sys.stderr)


def _env_off() -> bool:
    return bool(os.environ.get("GT_FINETUNE_NO_PROGRESS"))
