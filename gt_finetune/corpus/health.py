"""Corpus health before any GPU hour: what goes on, what is dropped, stale or contradictory, and
whether there is enough of it (DESIGN.md §1 "Too little data", "Model collapse", §4).

Duplicates and excluded model-generated text are dropped; kept model-generated text is
down-weighted through `meta.weight`. Stale and conflicting records are only flagged: a person
decides, and the report says why each was flagged.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from .dedupe import find_duplicates, message_text, normalise

# CLI usage Gas Town's reference (gastown.md §0, §11 S16) marks removed or nonexistent.
REMOVED_CLI: tuple[tuple[str, str], ...] = (
    (r"\bbd sync\b", "`bd sync` is not a bd command (bd 1.0.5); push with `bd dolt push`"),
    (r"\bgt mail send\b[^\n`;|&]*--human\b", "`gt mail send --human` does not exist; address mail to `overseer`"),
    (r"--status[= ][\"']?(?:done|complete)\b",
     "there is no `done`/`complete` status; close with `bd close`"),
    (r"\bbd complete\b", "`bd complete` is not a command; use `bd close` (`bd done` is its alias)"),
    (r"\bgt issue create\b", "`gt issue create` is not a command; file work with `bd create`"),
    (r"\bgt polecat kill\b", "`gt polecat kill` is not a command; `gt polecat nuke` is the (explicit) one"),
    (r"\bbd create\b[^\n`;|&]*--(?:rig|prefix)\b",
     "`bd create --rig`/`--prefix` were removed (bd ≥ 0.62 works on the local rig); run bd in the owning rig"),
    (r"\bbd (?:move|refile)\b", "`bd move`/`bd refile` were removed with prefix routing (bd ≥ 0.62)"),
)

# Words around a command in prose that warn against it rather than use it.
WARNING_BEFORE = re.compile(r"\b(?:not|never|no longer|instead of|rather than|none|avoid|stop|without)\b|n't\b", re.I)
WARNING_AFTER = re.compile(r"\b(?:does not exist|is not a command|was removed|no longer)\b|n't (?:exist|a command)",
                           re.I)

# Actions an answer can prescribe, and which of them contradict each other. An answer that names
# both sides of a pair ("restart first, never nuke") takes neither side.
ACTIONS: dict[str, str] = {
    "closes": r"\bbd (?:close|done)\b|\bgt close\b|--status[= ]closed\b",
    "reopens": r"\bbd reopen\b|--status[= ]open\b",
    "approves": r"\bapprov(?:e|es|ed)\b",
    "rejects": r"\breject(?:s|ed)?\b",
    "restarts": r"\brestart(?:s|ed)?\b",  # `gt session restart`, or in words
    "nukes": r"\bnuke[sd]?\b",  # `gt polecat nuke`, or in words
}
OPPOSITES: tuple[tuple[str, str], ...] = (("closes", "reopens"), ("approves", "rejects"), ("restarts", "nukes"))

# Record sources in the order guidance names them, with the `corpus build` input that adds each.
SOURCE_INPUTS: dict[str, str] = {
    "transcripts": "`--transcripts ~/.claude/projects`",
    "beads": "`--beads-jsonl DIR` or `--dolt HOST:PORT`",
    "mail": "the town's `--beads-jsonl ~/gt/.beads/backup`",
    "events": "`--events ~/gt`",
    "formulas": "`--formulas DIR`",
    "role_context": "`--role-context DIR`",
}


@dataclass(frozen=True, slots=True)
class HealthConfig:
    exclude_generated_by: tuple[str, ...] = ()  # generated_by prefixes to drop, e.g. ("model:",)
    synthetic_weight: float = 0.5  # meta.weight of kept model-generated text
    min_examples: int = 50
    min_tokens: int = 5000
    near_duplicate_threshold: float = 0.85

    def __post_init__(self):
        if not 0 <= self.synthetic_weight <= 1:
            raise ValueError(f"`synthetic_weight` must be in [0, 1], got {self.synthetic_weight}")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError(f"`near_duplicate_threshold` must be in (0, 1], got {self.near_duplicate_threshold}")


@dataclass(frozen=True, slots=True)
class HealthReport:
    kept: list[dict]
    dropped: list[dict] = field(default_factory=list)  # {index, content_hash, reason, kept}
    stale: list[dict] = field(default_factory=list)  # {content_hash, reason}
    conflicts: list[dict] = field(default_factory=list)  # {a, b, situation, why}
    tokens: dict = field(default_factory=dict)

    def gate(self, config: HealthConfig, *, formula: str = "") -> str | None:
        """None when the kept records meet the minimums; else what is missing and which sources would
        add data: those with no records, or fewer than an even share (`min_examples` / 6) of the minimum."""
        examples, total = len(self.kept), self.tokens.get("total", 0)
        if examples >= config.min_examples and total >= config.min_tokens:
            return None
        who = f"formula `{formula}`" if formula else "the formula"
        have = f"you have {_plural(examples, 'usable example')} ({total:,} tokens)"
        need = f"{who} needs {_plural(config.min_examples, 'example')} and {config.min_tokens:,} tokens"
        counts = Counter(r["meta"].get("source", "") for r in self.kept)
        small = math.ceil(config.min_examples / len(SOURCE_INPUTS))
        wanted = [f"{source} ({'only ' + _plural(counts[source], 'record') if counts[source] else 'none harvested yet'}"
                  f": add {flag})" for source, flag in SOURCE_INPUTS.items() if counts[source] < small]
        more = ("Sources that would add data: " + ", ".join(wanted) if wanted
                else "Every source already has data; harvest a longer span of the town's history")
        return f"{have}; {need}. {more}"


def assess(records: list[dict], config: HealthConfig, *, current_formulas: Mapping[str, str] = {},
           existing_beads: Collection[str] | None = None) -> HealthReport:
    """Drop excluded and duplicate records, weight the rest, flag stale and conflicting ones.

    Args:
        current_formulas: formula name → `formula_hash` of its current text.
        existing_beads: bead ids that exist now; None skips the bead check.
    """
    dropped: list[dict] = []
    candidates: list[int] = []
    for i, record in enumerate(records):
        origin = str(record["meta"].get("generated_by", ""))
        prefix = next((p for p in config.exclude_generated_by if origin.startswith(p)), None)
        if prefix is None:
            candidates.append(i)
        else:
            dropped.append({"index": i, "content_hash": record["meta"]["content_hash"], "kept": "",
                            "reason": f"generated_by `{origin}` is excluded (prefix `{prefix}`)"})
    duplicates = find_duplicates([records[i] for i in candidates], threshold=config.near_duplicate_threshold)
    gone = set()
    for d, k, kind in duplicates:
        i, twin = candidates[d], candidates[k]
        gone.add(i)
        alike = f"near duplicate (estimated ≥ {config.near_duplicate_threshold:.0%} alike)"
        what = "exact duplicate" if kind == "exact" else alike
        dropped.append({"index": i, "content_hash": records[i]["meta"]["content_hash"],
                        "kept": records[twin]["meta"]["content_hash"], "reason": f"{what} of record {twin}"})
    dropped.sort(key=lambda entry: entry["index"])
    kept = [_weighted(records[i], config) for i in candidates if i not in gone]
    return HealthReport(kept=kept, dropped=dropped, stale=_stale(kept, current_formulas, existing_beads),
                        conflicts=_conflicts(kept), tokens=token_stats(kept))


def formula_hash(text: str) -> str:
    """What `current_formulas` maps a name to: the file's text as a record holds it (stripped)."""
    return "sha256:" + hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


def token_stats(records: list[dict]) -> dict:
    """Whitespace tokens per message role and in all, and the p50/p90/max record length."""
    by_role: Counter = Counter()
    lengths = []
    for record in records:
        length = 0
        for message in record.get("messages", []):
            n = len(message_text(message).split())
            by_role[message.get("role", "?")] += n
            length += n
        lengths.append(length)
    lengths.sort()
    return {"by_role": dict(sorted(by_role.items())), "total": sum(lengths), "records": len(lengths),
            "p50": _percentile(lengths, 50), "p90": _percentile(lengths, 90), "max": lengths[-1] if lengths else 0}


def _weighted(record: dict, config: HealthConfig) -> dict:
    synthetic = str(record["meta"].get("generated_by", "")).startswith("model:")
    return {**record, "meta": {**record["meta"], "weight": config.synthetic_weight if synthetic else 1.0}}


def _stale(kept: list[dict], current_formulas: Mapping[str, str], existing_beads: Collection[str] | None) -> list[dict]:
    found = []
    bead_id = _bead_pattern(kept, existing_beads) if existing_beads is not None else None
    for record in kept:
        meta = record["meta"]
        reasons = []
        name = meta.get("formula")
        if meta.get("source") == "formulas" and name in current_formulas:
            answer = next((m for m in record["messages"] if m.get("role") == "assistant"), {})
            now = current_formulas[name]
            if formula_hash(message_text(answer)).removeprefix("sha256:") != now.removeprefix("sha256:"):
                reasons.append(f"formula `{name}` has changed since this record was harvested")
        if bead_id is not None:
            text = " ".join(message_text(m) for m in record["messages"]) + " " + str(meta.get("bead_id") or "")
            missing = sorted({m for m in bead_id.findall(text) if m not in existing_beads})
            if missing:
                reasons.append(f"mentions beads that no longer exist: {', '.join(missing[:5])}"
                               + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        reasons += _removed_usage(record)
        found += [{"content_hash": meta["content_hash"], "reason": reason} for reason in reasons]
    return found


def _removed_usage(record: dict) -> list[str]:
    """Why each removed command an answer uses is wrong. A tool call always uses it; prose that
    warns against it ("none tried `bd sync` again", "`bd close`, not `bd complete`") does not."""
    answers = [m for m in record["messages"] if m.get("role") == "assistant"]
    prose = " ".join(message_text({"content": m.get("content")}) for m in answers)
    calls = " ".join(message_text({"tool_calls": m.get("tool_calls")}) for m in answers)
    return [why for pattern, why in REMOVED_CLI
            if re.search(pattern, calls) or any(not _warned(prose, hit) for hit in re.finditer(pattern, prose))]


def _warned(text: str, hit: re.Match) -> bool:
    before = re.split(r"[.;!?\n]", text[max(0, hit.start() - 60):hit.start()])[-1]
    after = re.split(r"[.;!?\n]", text[hit.end():hit.end() + 40])[0]
    return bool(WARNING_BEFORE.search(before) or WARNING_AFTER.search(after))


def _bead_pattern(kept: list[dict], existing_beads: Collection[str]) -> re.Pattern:
    """`<prefix>-<base36>` ids for the prefixes this town uses (so `re-run` or `dry-run` never match)."""
    ids = [*existing_beads, *(str(r["meta"].get("bead_id") or "") for r in kept)]
    prefixes = sorted({i.rsplit("-", 1)[0] for i in ids if "-" in i}, key=lambda p: (-len(p), p))
    if not prefixes:
        return re.compile(r"(?!)")
    alternatives = "|".join(re.escape(p) for p in prefixes)
    return re.compile(rf"(?<![\w-])(?:{alternatives})-[0-9a-z]{{3,8}}(?:\.\d+)*(?![\w-])")


def _conflicts(kept: list[dict]) -> list[dict]:
    """Same normalised prompt, opposite prescribed actions. Each record on one side is listed
    against the first record of the other side, so the list stays linear in the records."""
    by_prompt: dict[str, list[int]] = {}
    for i, record in enumerate(kept):
        prompt = normalise(next((message_text(m) for m in record["messages"] if m.get("role") == "user"), ""))
        if prompt:
            by_prompt.setdefault(prompt, []).append(i)
    found = []
    for prompt, members in by_prompt.items():
        if len(members) < 2:
            continue
        actions = {i: _actions(kept[i]) for i in members}
        for x, y in OPPOSITES:
            xs = [i for i in members if x in actions[i] and y not in actions[i]]
            ys = [i for i in members if y in actions[i] and x not in actions[i]]
            if not xs or not ys:
                continue
            pairs = [(xs[0], j) for j in ys] + [(i, ys[0]) for i in xs[1:]]
            for i, j in pairs:
                a, b = (i, j) if i < j else (j, i)
                found.append({"a": kept[a]["meta"]["content_hash"], "b": kept[b]["meta"]["content_hash"],
                              "situation": prompt[:120],
                              "why": f"a {x if a == i else y}, b {y if a == i else x}"})
    return found


def _actions(record: dict) -> set[str]:
    answers = normalise(" ".join(message_text(m) for m in record["messages"] if m.get("role") == "assistant"))
    return {name for name, pattern in ACTIONS.items() if re.search(pattern, answers)}


def _percentile(ordered: list[int], p: int) -> int:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else 0


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
