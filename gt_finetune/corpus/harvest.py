"""Corpus stage: harvest a town's history from its sources into one versioned, immutable corpus.

Each input is a (source, location) pair — `beads_jsonl:~/gt/.beads/backup`, `transcripts:~/.claude/projects`,
… — read by that source's module. Records are filtered (scope, --since/--until), deduplicated by
content hash, and compared with what earlier harvests saw: nothing new writes nothing, new
records make a new version `corpus-<timestamp>-<hash>` holding everything so far. Every line
read is accounted for: it feeds a record or is listed in `rejected.jsonl` with where and why.

A town is hostile: sources open only regular files inside their input (`sources.context.open_inside`),
and every string the harvest writes or prints itself — rejected lines, per-file accounting, the
fingerprint, rig names, input locations — passes the redactor (paths part by part, so the operator
can still find the file); `.state` names files by a hash of their path. A damaged manifest or state
file is reported and skipped or rebuilt, never a traceback.
"""
from __future__ import annotations

import errno
import functools
import glob
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
from ..workspace import (PATH_PROBLEMS, atomic_dir, content_id, read_jsonl, read_manifest, safe_name, short_id,
                         shown, write_json, write_jsonl)
from ..config import load_section
from .forget import load_rules
from .health import HealthConfig, HealthReport, assess, formula_hash
from .report import write_report
from .records import Rejected
from .redact import PlaceholderScope, RedactionConfig, Redactor
from .sources import beads_jsonl, beads_sql, events, formulas, role_context, store_beads, transcripts
from .sources.context import HarvestContext, Refused, expand, read_inside, root_of

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
FINGERPRINTED = (".toml", ".json", ".md", ".tmpl", ".txt")  # the formula and role-context files a corpus notes
MAX_FINGERPRINTED_BYTES = 16 << 20
_PLACEHOLDER = re.compile(r"<(?:SECRET|PII):[\w.-]+#\d+>")  # what the redactor puts in place of a hit
_CORPUS_ID = re.compile(r"corpus-[0-9T]+-[0-9a-f]+")


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
    redactor = Redactor(load_section(home, "redaction", RedactionConfig))
    spec_kept = public_spec(spec, redactor)  # what is kept of the spec: no password, no flagged name
    state_path = home / "corpus" / ".state" / f"{short_id(content_id(spec_kept))}.json"
    state = load_state(state_path)
    latest = _usable(home / "corpus" / state["latest"]) if state["latest"] else None
    if latest is None:
        state = _fresh_state()  # the previous version is gone (or broken): start over
    seen = set(state["seen"])
    harvest = _harvest(spec, state, home=home, town=town, store=store, quiet=quiet, redactor=redactor)
    new = [r for r in harvest.records if r["meta"]["content_hash"] not in seen]
    if latest is not None and not new:
        _save_state(state_path, state, redactor)
        _ensure_report(latest)
        return _manifest_of(latest, new_records=0)
    previous = _previous_records(latest) if latest is not None else []
    replaced = {identity(r) for r in new}
    everything = [r for r in previous if identity(r) not in replaced] + new
    if latest is not None:
        harvest.carry_over(latest)
    config = load_section(home, "health", HealthConfig)
    health = assess(everything, config, current_formulas=current_formulas(spec, town, redactor),
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
        raise InputError(f"no usable record in {', '.join(f'{k}:{shown(v)}' for k, v in spec_kept['inputs'])} "
                         f"({len(harvest.rejected)} lines rejected)",
                         hint="see why with the rejected lines above, or point the inputs at more history")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    digest = short_id(content_id({"spec": spec_kept,
                                  "records": [r["meta"]["content_hash"] for r in everything]}))
    corpus_id = f"corpus-{stamp}-{digest}"
    out = home / "corpus" / corpus_id
    twin = _published(home, digest)
    state["seen"], state["latest"] = sorted(seen | new_hashes), twin.name if twin else corpus_id
    if twin is not None:  # same spec, same records: a build killed before it saved its state, or this second's
        _save_state(state_path, state, redactor)
        _ensure_report(twin)
        return _manifest_of(twin, new_records=len(new))
    rejected = harvest.rejected
    manifest = {
        "schema_version": 1, "stage": "corpus", "id": corpus_id, "previous": latest.name if latest else "",
        "spec": spec_kept, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {"records": len(everything), "new_records": len(new), "rejected": len(rejected),
                   "by_source": _count(everything, "source"), "by_rig": _count(everything, "rig"),
                   "by_role": _count(everything, "role")},
        "rejected_reasons": dict(Counter(_reason_kind(r.reason) for r in rejected).most_common()),
        "redaction": dict(sorted(harvest.redaction.items())),
        "health": {"dropped": len(health.dropped), "stale": len(health.stale), "conflicts": len(health.conflicts),
                   "tokens": health.tokens, "gate": health.gate(config)},
        "accounting": harvest.accounting, "fingerprint": fingerprint(spec, town, redactor)}
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "records.jsonl", everything)
        write_jsonl(tmp / "rejected.jsonl", [asdict(r) for r in rejected])
        write_json(tmp / "health.json", {"dropped": health.dropped, "stale": health.stale,
                                         "conflicts": health.conflicts, "tokens": health.tokens})
        write_json(tmp / "manifest.json", manifest)
    _save_state(state_path, state, redactor)  # first: a run killed now still finds this corpus next time
    write_report(out, health, manifest, out_dir=out)  # reads the corpus's own rejected.jsonl: after the rename
    _show_rejections(rejected, out, quiet)
    return _manifest_of(out, new_records=len(new))


@dataclass
class _Harvest:
    """What one harvest read: records, rejected lines, and per-file accounting of both."""

    redactor: Redactor
    records: list[dict] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    accounting: dict = field(default_factory=dict)  # file (as `scrub_path` shows it) -> counts
    bead_ids: set = field(default_factory=set)

    redaction: Counter = field(default_factory=Counter)  # replacements per rule family
    _paths: dict = field(default_factory=dict)

    def path(self, raw: str) -> str:
        """`scrub_path` of a file, once per file: a backup's thousand records share one."""
        if raw not in self._paths:
            self._paths[raw] = scrub_path(self.redactor, raw)
        return self._paths[raw]

    def where(self, where: str) -> str:
        """A rejection's `file:line`, `file#id` or `file`: the file scrubbed as a path, an id as text."""
        file, spot = re.fullmatch(r"(.*?)(:\d+|#.*)?", where, flags=re.S).groups(default="")
        return self.path(file) + (scrub_text(self.redactor, spot) if spot.startswith("#") else spot)

    def reject(self, record: dict, reason: str) -> None:
        """A line that became a record and was then filtered or dropped: rejected after all."""
        where = record["meta"].get("location", "")
        self.rejected.append(Rejected(_storable(_where(record)), reason))
        if where in self.accounting:
            entry = self.accounting[where]
            self.accounting[where] = {**entry, "used": entry["used"] - 1, "rejected": entry["rejected"] + 1}

    def account(self, accounting: dict) -> None:
        """A source's per-file counts, under the names `scrub_path` gives the files."""
        for file, entry in accounting.items():
            into = self.accounting.setdefault(self.path(file), {"lines": 0, "used": 0, "rejected": 0})
            for key in into:
                into[key] += entry[key]

    def carry_over(self, latest: Path) -> None:
        """Files not read again this time keep what the last version said of them (scrubbed again:
        a version written before the file names were scrubbed may hold a secret in one)."""
        read_now = set(self.accounting) | {_file_of(r.where) for r in self.rejected}
        for file, entry in read_manifest(latest).get("accounting", {}).items():
            self.accounting.setdefault(self.path(file), entry)
        earlier = [Rejected(self.where(r["where"]), scrub_text(self.redactor, r["reason"]))
                   for r in read_jsonl(latest / "rejected.jsonl")]
        self.rejected += [r for r in earlier if _file_of(r.where) not in read_now]


def _where(record: dict) -> str:
    """`file:line` when the record knows its line, else `file#<bead id or session>`."""
    meta = record["meta"]
    spot = f":{meta['line']}" if meta.get("line") else f"#{meta.get('bead_id') or meta.get('session', '')}"
    return f"{meta.get('location', '')}{spot}"


def scrub_text(redactor: Redactor, text: str) -> str:
    """A string the harvest writes itself (a reason, a name), as the redactor leaves it."""
    return redactor.redact_text(_storable(text), PlaceholderScope())[0]


def scrub_path(redactor: Redactor, path: str) -> str:
    """A file's path with each part scanned on its own: a flagged folder or file name is replaced and
    the rest stays, so the operator can still find the file (scanned whole, a path of plain folder
    names can read as one random-looking token and vanish)."""
    return "/".join(scrub_text(redactor, part) for part in path.split("/"))


def _harvest(spec: CorpusSpec, state: dict, *, home: Path, town: Town | None, store, quiet: bool,
             redactor: Redactor) -> _Harvest:
    """Read every input; filter (scope, dates, forget rules) and drop exact duplicates as it goes.

    Every string it keeps passes the redactor: records whole, file paths part by part."""
    out, rules, by_hash, progress = _Harvest(redactor), load_rules(home), {}, _Progress(quiet)
    read: list[str] = []  # what each finished input gave, for the error when a later one fails
    for n, (kind, location) in enumerate(spec.inputs):
        key = f"{kind}:{public_location(kind, location, redactor)}"
        ctx = HarvestContext(town=town, min_reason_chars=spec.min_reason_chars, progress=progress.add, store=store,
                             state=state["sources"].setdefault(key, {}),
                             bead_ids=out.bead_ids)
        pending, before = [], len(out.records)
        try:
            for item in SOURCES[kind](location, ctx):
                if isinstance(item, Rejected):  # where and why can quote what was read: scrub them too
                    out.rejected.append(Rejected(out.where(item.where), scrub_text(redactor, item.reason)))
                    continue
                file = out.path(item["meta"].get("location", location))
                _name_rig(item, town)  # before the scan: a rig's name comes from the town's own files
                redacted, counts, why = redactor.redact_record(item)
                if redacted is None:  # fail closed: what cannot be scanned never goes on, nor does its meta
                    spot = str(item["meta"].get("bead_id") or item["meta"].get("session") or "")
                    pending.append(({"meta": {"location": file, "line": item["meta"].get("line"),
                                              "bead_id": scrub_text(redactor, spot)}}, f"cannot be scanned: {why}"))
                    continue
                item = redacted
                item["meta"]["location"] = file
                out.redaction.update(counts)
                reason = _filtered_out(item, spec, town) or next(
                    (f"forgotten ({rule.describe()})" for rule in rules if rule.matches(item)), None)
                if reason is None and item["meta"]["content_hash"] in by_hash:
                    reason = f"duplicate of a record from {by_hash[item['meta']['content_hash']]}"
                if reason:
                    pending.append((item, reason))
                    continue
                by_hash[item["meta"]["content_hash"]] = file
                out.records.append(item)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError) and exc.filename is None:
                raise  # not about a path (a socket): the source says what failed
            raise _unusable_input(kind, location, exc, redactor) from exc
        except Refused as exc:  # the whole input leads out of the town: the other inputs go on
            ctx.count(location, rejected=1)
            out.rejected.append(Rejected(scrub_path(redactor, location), scrub_text(redactor, str(exc))))
        except ExternalError as exc:
            progress.done()
            others = [f"{k}:{shown(public_location(k, loc, redactor))}" for k, loc in spec.inputs[n + 1:]]
            raise ExternalError(f"corpus input `{kind}:{shown(public_location(kind, location, redactor))}` failed: "
                                f"{exc.message}; "
                                f"read before it: {', '.join(read) or 'nothing'}"
                                + (f"; not read: {', '.join(others)}" if others else ""),
                                hint=exc.hint, code=exc.code) from exc
        out.account(ctx.accounting)
        places = len(ctx.accounting)
        read.append(f"{kind} {len(out.records) - before} records"
                    + (f" from {places} {'table' if kind == 'beads_sql' else 'file'}{'s' if places != 1 else ''}"
                       if places else ""))
        for item, reason in pending:
            out.reject(item, reason)
    progress.done()
    return out


def public_spec(spec: CorpusSpec, redactor: Redactor | None = None) -> dict:
    """The spec as manifests, state and ids keep it, each location as `public_location` shows it (a
    hash of a password would let anyone holding a corpus id test guesses offline). The same spec and
    redaction settings give the same public spec: the next build finds its state by it."""
    redactor = redactor or Redactor()
    return {**asdict(spec), "inputs": [[kind, public_location(kind, location, redactor)]
                                       for kind, location in spec.inputs]}


def public_location(kind: str, location: str, redactor: Redactor) -> str:
    """An input location as the workspace keeps it and messages show it: a Dolt password masked
    (first: the mask must see the location as typed), then each part scrubbed as `scrub_path` does
    a file's (a town-derived `<town>/<rig>/directives` carries a rig folder an agent named)."""
    return scrub_path(redactor, beads_sql.public_location(location) if kind == "beads_sql" else location)


def _unusable_input(kind: str, location: str, exc: OSError, redactor: Redactor) -> InputError:
    """An input location the system refused, as one line naming the input and why: missing, a name too
    long, a file where a folder should be, a symlink loop, no permission. A source that found nothing
    raises FileNotFoundError itself (`Path.exists` hides why), so the path is asked again for the cause."""
    path = exc.filename or (exc.args[0] if exc.errno is None and exc.args else location)
    if exc.errno in (None, errno.ENOENT):
        try:
            os.stat(path)
        except OSError as why:
            exc = why
    given = f"corpus input `{kind}:{shown(public_location(kind, location, redactor))}`"
    at = "" if os.fsdecode(path) == location else f" ({shown(scrub_path(redactor, os.fsdecode(path)))})"
    if exc.errno in (None, errno.ENOENT):
        return InputError(f"{given} does not exist{at}", hint=_INPUT_HINT)
    why = PATH_PROBLEMS.get(exc.errno) or exc.strerror
    return InputError(f"{given} cannot be read: {why}{at}", hint=_INPUT_HINT)


_INPUT_HINT = "check the path; `gt-finetune corpus build --help` lists the inputs"


def current_formulas(spec: CorpusSpec, town: Town | None, redactor: Redactor) -> dict[str, str]:
    """Formula name (as the redactor leaves it in a record) -> hash of its current text, from the town
    and the `formulas` inputs (staleness). Read as the harvest reads: regular files inside the folder."""
    folders = [expand(loc) for kind, loc in spec.inputs if kind == "formulas"]
    if town is not None:
        folders.append(town.root / ".beads" / "formulas")
    out = {}
    for folder in folders:
        try:
            root = root_of(folder, town) if folder.is_dir() else None
        except (FileNotFoundError, Refused):
            continue
        for path in sorted(folder.glob("*.formula.toml")) if root else []:
            try:
                text = read_inside(path, root, max_bytes=formulas.MAX_BYTES).decode("utf-8")
                name = tomllib.loads(text).get("formula")
            except (Refused, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            if isinstance(name, str):
                out.setdefault(scrub_text(redactor, name), formula_hash(text))
    return out


def _ensure_report(corpus_dir: Path) -> None:
    """The report of a corpus whose build was killed between publishing it and writing its report
    (a version `corpus forget` wrote has no health check to report)."""
    if not (corpus_dir / "report.md").is_file() and (corpus_dir / "health.json").is_file():
        write_report(corpus_dir, health_of(corpus_dir), read_manifest(corpus_dir), out_dir=corpus_dir)


def health_of(corpus_dir: Path) -> HealthReport:
    """A written corpus's health, as its build assessed it.

    Raises:
        InputError: `corpus forget` emptied the version (its records moved to a new one), or its
            files are not readable.
    """
    manifest = corpus_manifest(corpus_dir)
    if not (corpus_dir / "records.jsonl").is_file():
        into = manifest.get("forgotten_into")
        raise InputError(f"corpus `{manifest['id']}` holds no records: `corpus forget` emptied it"
                         + (f" into `{into}`" if isinstance(into, str) and into else ""),
                         hint=f"report the version that replaced it: `gt-finetune corpus report {into}`"
                         if isinstance(into, str) and into else "list the versions with `gt-finetune corpus list`")
    try:
        saved = json.loads((corpus_dir / "health.json").read_text(encoding="utf-8"))
        return HealthReport(kept=read_jsonl(corpus_dir / "records.jsonl"), **saved)
    except (ValueError, TypeError) as exc:
        raise InputError(f"corpus `{manifest['id']}` cannot be read: its health.json or records.jsonl is "
                         f"damaged ({type(exc).__name__})", hint=_BROKEN_HINT) from exc


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
    """Every readable corpus manifest, oldest first; a damaged one is named in a warning and skipped."""
    folder = home / "corpus"
    if not folder.is_dir():
        return []
    manifests = []
    for path in sorted(folder.glob("corpus-*")):
        if (path / "manifest.json").is_file():
            try:
                manifests.append(corpus_manifest(path))
            except InputError as exc:
                print(f"warning: skipped {exc.message}", file=sys.stderr)
    return sorted(manifests, key=lambda m: (str(m.get("created_at", "")), m["id"]))


def corpus_manifest(corpus_dir: Path) -> dict:
    """A corpus's manifest, checked for what every command reads of it.

    Raises:
        InputError: it is not a complete manifest (truncated, edited, written by something else).
    """
    path = corpus_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not JSON: truncated or damaged"
        raise InputError(f"corpus `{corpus_dir.name}`: {path} cannot be read ({why})", hint=_BROKEN_HINT) from exc
    counts = manifest.get("counts") if isinstance(manifest, dict) else None
    if not (isinstance(counts, dict) and isinstance(manifest.get("id"), str)
            and all(type(counts.get(k)) is int for k in ("records", "new_records", "rejected"))
            and all(isinstance(counts.get(k), dict) for k in ("by_source", "by_rig", "by_role"))):
        raise InputError(f"corpus `{corpus_dir.name}`: {path} is not a corpus manifest (its `id` or `counts` "
                         "are missing)", hint=_BROKEN_HINT)
    return manifest


_BROKEN_HINT = ("move that version's folder out of the workspace; `gt-finetune corpus build` then builds from "
                "the inputs again")


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
    corpus_manifest(matches[0])  # a damaged manifest is one error line here, not a traceback in the caller
    return matches[0]


def fingerprint(spec: CorpusSpec, town: Town | None, redactor: Redactor | None = None) -> dict:
    """What the town looked like: formula and role-context hashes, bd/gt versions when installed.
    Files are read as the harvest reads them, and named as `scrub_path` shows them."""
    redactor, files = redactor or Redactor(), {}
    for kind, location in spec.inputs:
        if kind in ("formulas", "role_context"):
            given = expand(location)
            try:
                root = root_of(given, town)
            except (FileNotFoundError, Refused):
                continue
            for path in sorted(given.rglob("*") if given.is_dir() else [given]):
                if path.suffix in FINGERPRINTED:
                    text = _fingerprinted(path, root)
                    if text is not None:
                        files[scrub_path(redactor, str(path))] = content_id(text)
    return {"files": files, "tools": {name: _version(name) for name in ("bd", "gt")},
            "town": scrub_path(redactor, str(town.root)) if town else ""}


def _fingerprinted(path: Path, root: Path | None) -> str | None:
    """A fingerprinted file's text; None for one the harvest would not read (a link out, a FIFO, huge)."""
    try:
        return read_inside(path, root, max_bytes=MAX_FINGERPRINTED_BYTES).decode("utf-8", errors="replace")
    except Refused:
        return None


def staleness(fp: dict) -> list[str]:
    """How the town moved on since a corpus's `fingerprint`: formulas and role texts changed or
    gone, `bd`/`gt` upgraded. A model trained on that corpus may teach what no longer holds.

    A file whose name was redacted is found again as the file there that the redactor names alike."""
    reasons, redactor = [], None
    for name, digest in sorted(fp.get("files", {}).items()):
        parts = _PLACEHOLDER.split(name)
        candidates = [name]
        if len(parts) > 1:
            redactor = redactor or Redactor()
            pattern = "*".join(glob.escape(p) for p in parts)
            candidates = [c for c in glob.glob(pattern) if scrub_path(redactor, c) == name]
        texts = [t for t in (_fingerprinted(Path(c), None) for c in candidates) if t is not None]
        if not texts:
            reasons.append(f"{name} is gone")
        elif digest not in {content_id(t) for t in texts}:
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


def _fresh_state() -> dict:
    return {"sources": {}, "seen": [], "latest": ""}


def load_state(path: Path, *, if_damaged: str = "rebuilding it (every input is read again)") -> dict:
    """What earlier harvests of this spec saw. A damaged state file (truncated, edited) is a cache
    lost, not an error: a warning says so and what happens (`if_damaged`), and it reads as fresh."""
    if not path.is_file():
        return _fresh_state()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    if not (isinstance(state, dict) and isinstance(state.get("sources"), dict) and isinstance(state.get("seen"), list)
            and isinstance(state.get("latest"), str) and all(isinstance(v, dict) for v in state["sources"].values())
            and all(isinstance(h, str) for h in state["seen"])
            and (not state["latest"] or _CORPUS_ID.fullmatch(state["latest"]))):
        print(f"warning: {path} is damaged; {if_damaged}", file=sys.stderr)
        return _fresh_state()
    return state


def _usable(corpus_dir: Path) -> Path | None:
    """`corpus_dir` when it is a corpus the next version can build on: a readable manifest and its records."""
    try:
        corpus_manifest(corpus_dir)
    except InputError as exc:
        if (corpus_dir / "manifest.json").is_file():
            print(f"warning: {exc.message}; building from the inputs again", file=sys.stderr)
        return None
    return corpus_dir if (corpus_dir / "records.jsonl").is_file() else None


def _previous_records(latest: Path) -> list[dict]:
    try:
        return read_jsonl(latest / "records.jsonl")
    except ValueError as exc:
        raise InputError(f"corpus `{latest.name}`: {latest / 'records.jsonl'} is damaged (not JSONL)",
                         hint=_BROKEN_HINT) from exc


def _published(home: Path, digest: str) -> Path | None:
    """A complete corpus with this spec and these records, if one exists: a build killed between
    publishing it and saving its state left it, and the next build must not publish its twin.
    (A version `corpus forget` emptied has no records: it is not one.)"""
    for path in sorted((home / "corpus").glob(f"corpus-*-{digest}")):
        if _usable(path) is not None:
            return path
    return None


def _save_state(path: Path, state: dict, redactor: Redactor) -> None:
    write_json(path, state)
    _remove_leaky_states(path, redactor)


def _remove_leaky_states(saved: Path, redactor: Redactor) -> None:
    """State files written before locations were kept as `public_location` shows them key a source
    `beads_sql:user:password@…` or `role_context:<town>/<a token>/directives`, and are named after
    that spec: no build reads them any more, yet they hold the password or the name (in clear, and
    hashed in the file name). They are caches: removed; that input is harvested afresh. The one just
    `saved` is this build's own, keyed as `public_location` shows its inputs: kept whatever it holds."""
    for path in saved.parent.glob("*.json"):
        if path == saved:
            continue
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable or truncated: not this sweep's to judge
        keys = state.get("sources") if isinstance(state, dict) else None
        if isinstance(keys, dict) and any((kind == "beads_sql" and _password_in(location))
                                          or scrub_path(redactor, location) != location
                                          for kind, _, location in (key.partition(":") for key in keys)):
            try:
                path.unlink()
            except OSError as exc:
                print(f"warning: could not remove {path}, which holds a password or a secret-like name in clear: "
                      f"{exc.strerror}; delete it", file=sys.stderr)


def _password_in(location: str) -> bool:
    """Whether a Dolt location holds a password in clear. A redactor's placeholder (`<SECRET:rule#1>`
    for a user name) holds a `:` of its own, which the mask would take for one: set aside first."""
    bare = _PLACEHOLDER.sub("-", location)
    return beads_sql.public_location(bare) != bare


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
