"""Right to be forgotten: remove matching records from every corpus and taint what was trained on them.

Each affected corpus gets a new version without the records; the old version keeps only its
manifest (marked `forgotten_into`), and datasets built from it lose their data files too, so
the content is gone from the workspace. The rule is kept, so later harvests leave it out, and
the registry's audit log says what was forgotten and which models are now `tainted` — counts
and ids only, never the content.

A `--match` pattern is often the secret itself (a leaked password, a customer's name), so it is
written nowhere: not in `forget.jsonl`, a manifest, the registry or the command's output. The
saved rule keeps keyed hashes instead: each text the pattern matched, widened to whole words (runs
of letters, digits and `_`) and joined by single spaces, hashed with HMAC-SHA256 under a random
key made on first use in `corpus/forget.key` (0600, copied nowhere). A later harvest hashes every
run of that many words in each string of a record the same way and drops the record on a hit:
the forgotten records stay out, and so does a new one that repeats those words; a new text the
pattern would also match needs another `corpus forget`. Without the key nobody can test guesses
against the hashes (a short password falls to a plain hash); without it the rules cannot be
checked either, so a missing key stops the harvest rather than let forgotten records back in.

Patterns run on the `regex` engine with a time limit per string: one that backtracks without end
(`(a|aa)+b`) is refused within about a second instead of hanging `corpus forget`.
"""
from __future__ import annotations

import functools
import hmac
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import regex

from ..errors import InputError
from ..registry import Model, Registry
from ..workspace import atomic_dir, content_id, read_jsonl, read_manifest, short_id, write_json, write_jsonl

RULES_FILE = "forget.jsonl"
KEY_FILE = "forget.key"
MATCH_SECONDS = 1.0  # per string searched; a linear pattern needs milliseconds on the largest record
MAX_SAVED = 1000  # different texts one `--match` rule may remember
_WORDS = re.compile(r"\w+")
_WORD_CHAR = re.compile(r"\w")


@dataclass(frozen=True, slots=True)
class ForgetRule:
    """What `corpus forget` was asked to remove: exactly one of the three."""
    match: str = ""  # a regex searched in every string of a record's messages and provenance
    session: str = ""
    actor: str = ""

    def __post_init__(self):
        if sum(bool(x) for x in (self.match, self.session, self.actor)) != 1:
            raise InputError("say what to forget with exactly one of --match, --session or --actor")
        if self.match:
            try:
                _compiled(self.match)
            except regex.error as exc:  # the message leaves the pattern out: it may be the secret
                raise InputError(f"`--match` is not a valid regex: {exc}") from exc

    def matches(self, record: dict) -> bool:
        meta = record.get("meta", {})
        if self.session:
            return meta.get("session") == self.session
        if self.actor:
            return self.actor in (meta.get("actor"), meta.get("assignee"), meta.get("recipient"))
        return bool(self.texts_in(record))

    def texts_in(self, record: dict) -> set[str]:
        """What `match` hits in the record's strings, each hit widened to whole words; an empty
        string for a hit with no letter or digit in it. Empty-width hits do not count.

        Raises:
            InputError: the pattern ran over MATCH_SECONDS on one string (it backtracks).
        """
        pattern, found = _compiled(self.match), set()
        for text in _strings(record):
            try:
                found.update(_widened(text, m.start(), m.end())
                             for m in pattern.finditer(text, timeout=MATCH_SECONDS) if m.end() > m.start())
            except TimeoutError as exc:
                raise InputError(f"the `--match` pattern took too long on record {_named(record)} "
                                 f"(over {MATCH_SECONDS:g} s on one string): it backtracks",
                                 hint="use a simpler pattern, without a repeat inside a repeat (`(a|aa)+`); "
                                      "a literal word or phrase is best") from exc
        return found

    def describe(self) -> str:
        if self.match:
            return "--match ‹pattern›"
        return next(f"--{k} {v}" for k, v in asdict(self).items() if v)

    def row(self) -> dict:
        """The rule as `forget.jsonl` keeps it; a `--match` rule is saved as a SavedMatch instead."""
        return asdict(self)


class SavedMatch:
    """A `--match` rule as kept: keyed hashes of the word runs it matched (see the module docstring)."""

    def __init__(self, rule: str, runs, key: bytes):
        self.rule = rule  # a keyed hash of the pattern: names the rule in manifests and the audit log
        self.runs = sorted(tuple(run) for run in runs)  # (words, hash of the first word, hash of them all)
        self._by_first: dict[str, list[tuple[int, str]]] = {}
        for count, first, whole in self.runs:
            self._by_first.setdefault(first, []).append((count, whole))
        self._hash = functools.lru_cache(maxsize=1 << 16)(functools.partial(_keyed, key))

    def matches(self, record: dict) -> bool:
        for text in _strings(record):
            words = _WORDS.findall(text)
            for i, word in enumerate(words):
                for count, whole in self._by_first.get(self._hash(word), ()):
                    if self._hash(" ".join(words[i:i + count])) == whole:
                        return True
        return False

    def describe(self) -> str:
        return f"--match ‹rule {self.rule}›"

    def row(self) -> dict:
        return {"rule": self.rule, "runs": [list(run) for run in self.runs]}


@dataclass(frozen=True, slots=True)
class ForgetResult:
    versions: tuple[tuple[str, str, int], ...]  # (old corpus id, new corpus id, records removed)
    datasets_purged: tuple[str, ...]
    tainted: tuple[Model, ...]
    rule: str = ""  # how the saved rule is named (`--match ‹rule 3f9a2e1b7d0c›`)


def load_rules(home: Path) -> list[ForgetRule | SavedMatch]:
    """The saved rules, for a harvest to apply. A row with a plain `match` (written before rules were
    hashed) still works as a pattern, under the same time limit.

    Raises:
        InputError: hashed rules are saved but `forget.key` is missing or damaged.
    """
    path = home / "corpus" / RULES_FILE
    rows = read_jsonl(path) if path.is_file() else []
    key = _key(home, create=False) if any("runs" in r for r in rows) else b""
    return [SavedMatch(r["rule"], r["runs"], key) if "runs" in r else
            ForgetRule(**{k: v for k, v in r.items() if k in ("match", "session", "actor")}) for r in rows]


def forget(home: Path, rule: ForgetRule, *, dry_run: bool = False) -> ForgetResult:
    corpora = [p for p in sorted((home / "corpus").glob("corpus-*")) if (p / "records.jsonl").is_file()]
    plan, gone = [], []
    for folder in corpora:
        records = read_jsonl(folder / "records.jsonl")
        hits = [rule.matches(r) for r in records]
        if any(hits):
            plan.append((folder, [r for r, hit in zip(records, hits) if not hit], sum(hits)))
            gone += [r for r, hit in zip(records, hits) if hit]
    if dry_run or not plan:
        return ForgetResult(tuple((f.name, "", n) for f, _, n in plan), (), (), rule.describe())
    if rule.match:
        rule = _hashed(home, rule, gone)
    _append_rule(home, rule.row())
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
    return ForgetResult(tuple(versions), tuple(datasets), tuple(tainted), rule.describe())


def _rewrite(folder: Path, keep: list[dict], rule: ForgetRule | SavedMatch, removed: int) -> str:
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
    """Incremental harvests that built on `old` build on `new` now; a damaged state file is left alone."""
    from .harvest import load_state  # harvest imports this module's rules

    for path in (home / "corpus" / ".state").glob("*.json") if (home / "corpus" / ".state").is_dir() else []:
        state = load_state(path, if_damaged="left as it is (the next build of its inputs rebuilds it)")
        if state["latest"] == old:
            write_json(path, {**state, "latest": new})


def _append_rule(home: Path, row: dict) -> None:
    path = home / "corpus" / RULES_FILE
    rows = read_jsonl(path) if path.is_file() else []
    write_jsonl(path, rows + [{**row, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}])


def _hashed(home: Path, rule: ForgetRule, gone: list[dict]) -> SavedMatch:
    """The `--match` rule as it is saved, from the records it removes (nothing is written before the
    checks pass, but the key)."""
    texts: set[str] = set()
    for record in gone:
        found = rule.texts_in(record)
        if "" in found:
            raise InputError(f"the `--match` pattern hits text with no letter or digit in record {_named(record)}; "
                             "a saved rule remembers words, so later harvests could not check it",
                             hint="make the pattern match a word or more (a name, a password, an id)")
        texts |= found
    if len(texts) > MAX_SAVED:
        raise InputError(f"the `--match` pattern hits {len(texts):,} different texts; a saved rule remembers at "
                         f"most {MAX_SAVED:,}", hint="narrow the pattern, or forget by `--session` or `--actor`")
    key = _key(home, create=True)
    return SavedMatch(_keyed(key, f"rule:{rule.match}")[:12],
                      [(len(t.split(" ")), _keyed(key, t.split(" ")[0]), _keyed(key, t)) for t in texts], key)


def _key(home: Path, *, create: bool) -> bytes:
    """The workspace's random key for rule hashes, made (0600, atomically: a racing `forget` uses
    the first one) when `create`."""
    path = home / "corpus" / KEY_FILE
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        key = path.read_bytes()
    except OSError as exc:
        key = b""
        why = exc.strerror
    else:
        why = f"{len(key)} bytes, not 32"
    if len(key) != 32:
        raise InputError(f"{path} cannot be read ({why}): the saved `--match` rules in {RULES_FILE} need it, "
                         "and without it records they forgot would come back",
                         hint=f"restore it from a backup of the workspace; if it is lost, delete the rows with "
                              f"`runs` from {path.parent / RULES_FILE}, build the corpus, and run each "
                              "`gt-finetune corpus forget --match … --yes` again")
    return key


def _keyed(key: bytes, text: str) -> str:
    return hmac.digest(key, text.encode("utf-8", "surrogatepass"), "sha256").hex()[:32]


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def _strings(value) -> list[str]:
    """Every string in a record's messages and provenance, keys too."""
    out, stack = [], [value.get("messages"), value.get("meta")] if isinstance(value, dict) else [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return out


def _widened(text: str, start: int, end: int) -> str:
    """The words of `text[start:end]` once the span is widened to whole words, joined by spaces."""
    while start > 0 and _WORD_CHAR.match(text, start - 1):
        start -= 1
    while end < len(text) and _WORD_CHAR.match(text, end):
        end += 1
    return " ".join(_WORDS.findall(text, start, end))


def _named(record: dict) -> str:
    """A record's content hash, short: its other fields could hold what is being forgotten."""
    return short_id(str(record.get("meta", {}).get("content_hash", "?")))
