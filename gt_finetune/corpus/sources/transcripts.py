"""Claude Code session transcripts (`<config>/projects/<workdir-hash>/<session>.jsonl`) as records.

A transcript is a tree, not a list: each line names its parent (`parentUuid`), a rewind leaves the
abandoned branch in the file, compaction starts a new root that points back through
`logicalParentUuid`, and subagents (`isSidechain`) hold conversations of their own. Only what the
model finally saw is a worked example, so a session becomes the path from its root to its latest
leaf, and each subagent conversation becomes a record of its own (gastown.md §10, DESIGN.md §4).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from ...errors import InputError
from ..records import Rejected, json_line, make_record
from .context import HarvestContext, Refused, expand, long_line, numbered_lines, open_inside, root_of

CONVERSATION = ("user", "assistant")
# Lines Claude Code writes to itself or about itself: kept in the tree, never turned into turns.
META_FLAGS = ("isMeta", "isCompactSummary", "isApiErrorMessage", "isVisibleInTranscriptOnly")
SYNTHETIC_MODEL = "<synthetic>"
RIG_ROLES = {"polecats": "polecat", "crew": "crew", "witness": "witness", "refinery": "refinery"}
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class TranscriptOptions:
    """How transcripts become records.

    Args:
        max_tool_output_chars: longer tool results keep head and tail around an elision marker.
        town_root: the town the sessions ran in, so `cwd` below it names role and rig; when None
            the workdir shape decides (`…/<rig>/polecats/<name>`, `…/mayor`, …).
        session_roles: `session_start` payloads by session id, from the town's `.events.jsonl`;
            they win over what `cwd` suggests.
    """

    max_tool_output_chars: int = 4000
    town_root: Path | None = None
    session_roles: Mapping[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        if self.max_tool_output_chars < 1:
            raise InputError(f"`max_tool_output_chars` must be at least 1, got {self.max_tool_output_chars}")


@dataclass(slots=True, eq=False)
class _Line:
    no: int
    row: dict
    uuid: str
    session: str
    sidechain: bool
    ts: datetime
    parent: str | None = None

    @property
    def order(self) -> tuple[datetime, int]:
        return self.ts, self.no

    @property
    def message_id(self) -> str | None:
        mid = self.row["message"].get("id") if self.row.get("type") == "assistant" else None
        return mid if isinstance(mid, str) else None


def find_transcripts(root: Path) -> list[Path]:
    """Every session file under a Claude `projects/` dir, under a config dir holding one, or one file.

    A config dir (`~/.claude`, `~/.claude-accounts/<handle>`) also holds `history.jsonl` and other
    non-transcripts, so only its `projects/` is searched.

    Raises:
        InputError: `root` does not exist.
    """
    root = Path(root).expanduser()
    if os.path.lexists(root) and not root.is_dir():  # a file (a link or a FIFO is refused when opened)
        return [root]
    if not root.is_dir():
        raise InputError(f"no Claude Code transcripts at {root}: it does not exist",
                         hint="pass a Claude config dir (`~/.claude`, `~/.claude-accounts/<handle>`) "
                              "or its `projects/`")
    if (root / "projects").is_dir():
        root = root / "projects"
    return sorted(root.rglob("*.jsonl"))


def harvest_transcripts(paths: Sequence[Path], options: TranscriptOptions = TranscriptOptions()
                        ) -> Iterator[dict | Rejected]:
    """One record per session and per subagent conversation, and a Rejected per unusable line or session.

    Summary lines are gathered from every file first: Claude Code may write a session's summary
    into another session's file.
    """
    summaries = _summaries(paths)
    for path in paths:
        yield from (item for item, _ in _harvest_file(Path(path), _own_folder(path), options, summaries))


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    """Corpus source `transcripts:<dir>`: the town's root and its `session_start` events name roles.

    Files unchanged since the last harvest are not read again; only files inside `location` are read.
    """
    town = ctx.town.root if ctx.town else None
    options = TranscriptOptions(town_root=town, session_roles=session_starts(town / ".events.jsonl", town)
                                if town else {})
    given = expand(location)
    root = root_of(given, ctx.town)
    paths = find_transcripts(given)
    summaries = _summaries(paths, root)
    for path in paths:
        if ctx.unchanged(path):
            continue
        for item, lines in _harvest_file(path, root, options, summaries):
            used = isinstance(item, dict)
            ctx.count(str(path), used=lines if used else 0, rejected=0 if used else lines)
            if ctx.progress:
                ctx.progress(lines)
            yield item
        ctx.count(str(path), used=sum(1 for row in _rows_with(path, root, '"summary"')
                                      if row.get("type") == "summary" and not _in_tree(row)))


def session_starts(events_file: Path, town_root: Path | None = None) -> dict[str, dict]:
    """`session_start` payloads by session id: what `gt prime` said each session is (gastown.md §10).
    The file is read only when it lies inside `town_root` (default: its own folder)."""
    root = Path(os.path.realpath(town_root)) if town_root is not None else _own_folder(events_file)
    return {str(event["payload"]["session_id"]): event["payload"]
            for event in _rows_with(events_file, root, "session_start")
            if event.get("type") == "session_start" and isinstance(event.get("payload"), dict)
            and event["payload"].get("session_id")}


def role_from_cwd(cwd: str, town_root: Path | None = None) -> tuple[str, str, str]:
    """(role, rig, actor) of the agent whose workdir holds `cwd`; ("", "", "") when none does.

    Below `town_root` the path is read from the town down. Without it (or for a transcript from
    another machine) the leftmost workdir shape in `cwd` wins, so a repo folder named `witness`
    inside a polecat's worktree does not make the polecat a witness.
    """
    path = PurePosixPath(cwd)
    if town_root is not None and path.is_relative_to(str(town_root)):
        return _match(path.relative_to(str(town_root)).parts, anchored=True)
    return _match(path.parts[1:] if path.root else path.parts, anchored=False)


def _match(parts: Sequence[str], *, anchored: bool) -> tuple[str, str, str]:
    for i in range(1 if anchored else len(parts)):
        p = tuple(parts[i:])
        if p[:1] == ("mayor",) and p[1:2] != ("rig",):  # `<rig>/mayor/rig` is the rig's clone, not the mayor
            return "mayor", "", "mayor/"
        if p[:2] == ("deacon", "dogs") and len(p) > 2:
            return "dog", "", f"deacon/dogs/{p[2]}"
        if p[:1] == ("deacon",):
            return "deacon", "", "deacon/"
        if len(p) > 1 and p[1] in ("witness", "refinery"):
            return p[1], p[0], f"{p[0]}/{p[1]}"
        if len(p) > 2 and p[1] in ("polecats", "crew"):
            return RIG_ROLES[p[1]], p[0], "/".join(p[:3])
    return "", "", ""


def _role_from_start(payload: dict, cwd: str, town_root: Path | None) -> tuple[str, str, str]:
    """`gt prime` records the role as an address (`harbor/polecats/nux`, `mayor`) or a bare name."""
    name = str(payload.get("role") or "")
    found = _match(PurePosixPath(name).parts, anchored=True)
    if found[0]:
        return found
    role, rig, actor = role_from_cwd(str(payload.get("cwd") or cwd), town_root)
    return name or role, rig, actor


def _summaries(paths: Sequence[Path], root: Path | None = None) -> dict[str, str]:
    return {str(row["leafUuid"]): str(row.get("summary") or "") for path in paths
            for row in _rows_with(path, root or _own_folder(path), '"summary"')
            if row.get("type") == "summary" and row.get("leafUuid")}


def _rows_with(path: Path, root: Path, marker: str) -> Iterator[dict]:
    """JSON objects on the lines holding `marker`: a pre-pass that parses few lines and reports none
    (a file `open_inside` refuses is reported by the main read). Streamed: a town's event feed may be big."""
    try:
        f = open_inside(path, root, max_bytes=None)
    except Refused:
        return
    with f:
        for _, line in numbered_lines(f):
            try:
                row = json_line(line) if line is not None and marker in line else None
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row


def _own_folder(path: Path) -> Path:
    """The input folder of a file named on its own: where it really lies."""
    return Path(os.path.realpath(Path(path).parent))


def _harvest_file(path: Path, root: Path, options: TranscriptOptions, summaries: dict[str, str]
                  ) -> Iterator[tuple[dict | Rejected, int]]:
    """Each record or rejection with the number of file lines behind it."""
    rejected: list[Rejected] = []
    lines = _read_lines(path, root, rejected)
    yield from ((r, 1) for r in rejected)
    _link(lines)
    by_uuid = {line.uuid: line for line in lines}
    children: dict[str, list[_Line]] = {}
    group: dict[str, tuple] = {}  # uuid -> whose record it is in: a session, or one subagent conversation
    responses: dict[str, list[_Line]] = {}  # message.id -> its lines: one API response written as several
    for line in lines:
        parent = by_uuid.get(line.parent or "")
        if parent:
            children.setdefault(parent.uuid, []).append(line)
        if parent and parent.sidechain == line.sidechain:
            group[line.uuid] = group[parent.uuid]
        else:
            group[line.uuid] = ("subagent", line.uuid) if line.sidechain else ("session", line.session)
        if line.message_id:
            responses.setdefault(line.message_id, []).append(line)
    tips: dict[tuple, _Line] = {}
    for line in lines:
        key = group[line.uuid]
        if line.uuid not in children and (key not in tips or line.order > tips[key].order):
            tips[key] = line
    paths = {key: _live_path(tip, by_uuid, responses, children, group) for key, tip in tips.items()}
    used = {line.uuid for p in paths.values() for line in p}
    abandoned = Counter(group[line.uuid] for line in lines if line.uuid not in used)
    for key, live in sorted(paths.items(), key=lambda kv: kv[1][0].no):
        yield _record(path, live, abandoned[key], options, summaries), len(live)
    for line in lines:
        if line.uuid not in used:
            yield Rejected(f"{path}:{line.no}", "on an abandoned branch (a later turn replaced it)"), 1


def _read_lines(path: Path, root: Path, rejected: list[Rejected]) -> list[_Line]:
    """Lines that can sit in the tree; a user/assistant line that cannot be read is rejected (a file
    `open_inside` refuses, with why)."""
    try:
        with open_inside(path, root) as f:
            numbered = [(no, text) for no, text in numbered_lines(f) if text is None or text.strip()]
    except Refused as exc:
        rejected.append(Rejected(str(path), str(exc)))
        return []
    except OSError as exc:
        rejected.append(Rejected(str(path), f"unreadable ({exc.strerror})"))
        return []
    lines: list[_Line] = []
    first_at: dict[str, int] = {}
    for no, text in numbered:
        where = f"{path}:{no}"
        if text is None:
            rejected.append(Rejected(where, long_line()))
            continue
        try:
            row = json_line(text)
        except ValueError as exc:
            rejected.append(Rejected(where, str(exc)))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("type"), str):
            rejected.append(Rejected(where, f"not a transcript line (a JSON {type(row).__name__} with no `type`)"))
            continue
        problem = _problem(row) if row["type"] in CONVERSATION else None
        uuid = row.get("uuid")
        if problem:
            rejected.append(Rejected(where, problem))
        elif isinstance(uuid, str) and uuid in first_at:
            rejected.append(Rejected(where, f"duplicate uuid `{uuid}` (first at line {first_at[uuid]})"))
        elif _in_tree(row):
            first_at[uuid] = no
            lines.append(_Line(no, row, uuid, str(row.get("sessionId") or path.stem),
                               row.get("isSidechain") is True, _timestamp(row)))
        elif row["type"] != "summary":  # summaries are read separately, into meta.summary
            rejected.append(Rejected(where, f"a `{row['type']}` line without a uuid is not part of a conversation"))
    return lines


def _in_tree(row: dict) -> bool:
    """A line with a non-empty string `uuid` is a node of the tree; a summary without one feeds meta.summary."""
    return isinstance(row.get("uuid"), str) and bool(row["uuid"])


def _problem(row: dict) -> str | None:
    if not isinstance(row.get("uuid"), str) or not row["uuid"]:
        return "no `uuid`"
    message = row.get("message")
    if not isinstance(message, dict):
        return "`message` is not an object"
    content = message.get("content")
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return "`message.content` is neither text nor a list of blocks"
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return f"`message.content[{i}]` is not a content block"
    return None


def _timestamp(row: dict) -> datetime:
    try:
        ts = datetime.fromisoformat(str(row.get("timestamp")))
    except ValueError:
        return EARLIEST
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _link(lines: list[_Line]) -> None:
    """Parent of each line: `parentUuid`, or `logicalParentUuid` across a compaction.

    A parent that is not an earlier line here (it was rejected) and every line of a transcript
    written without links continue the line before them in the same conversation.
    """
    ref = {line.uuid: line.row.get("parentUuid") or line.row.get("logicalParentUuid") for line in lines}
    linked = {(line.session, line.sidechain) for line in lines if ref[line.uuid]}
    seen: set[str] = set()
    previous: dict[tuple, str] = {}
    for line in lines:
        key, parent = (line.session, line.sidechain), ref[line.uuid]
        if isinstance(parent, str) and parent in seen:
            line.parent = parent
        elif parent or key not in linked:
            line.parent = previous.get(key)
        seen.add(line.uuid)
        previous[key] = line.uuid


def _live_path(tip: _Line, by_uuid: dict[str, _Line], responses: dict[str, list[_Line]],
               children: dict[str, list[_Line]], group: dict[str, tuple]) -> list[_Line]:
    """Root-to-tip path, plus the parallel tool calls the walk up misses.

    Claude Code writes one assistant line per `tool_use` of a response (same `message.id`) and
    hangs each `tool_result` under its own line, so a single parent chain holds only one of them.
    Those siblings and their results go back in after the response's last line on the path, when
    they belong to the tip's record: a line is in one record only.
    """
    path = [tip]
    while path[-1].parent and by_uuid[path[-1].parent].sidechain == tip.sidechain:
        path.append(by_uuid[path[-1].parent])
    path.reverse()
    on_path = {line.uuid for line in path}
    out: list[_Line] = []
    for i, line in enumerate(path):
        out.append(line)
        mid = line.message_id
        if not mid or (i + 1 < len(path) and path[i + 1].message_id == mid):
            continue
        ours = group[tip.uuid]
        response = [other for other in responses[mid] if group[other.uuid] == ours]
        results = [c for r in response for c in children.get(r.uuid, ())
                   if _has_tool_result(c) and group[c.uuid] == ours]
        missed = sorted((x for x in response + results if x.uuid not in on_path), key=lambda x: x.order)
        on_path.update(x.uuid for x in missed)
        out.extend(missed)
    return out


def _has_tool_result(line: _Line) -> bool:
    content = line.row["message"].get("content") if line.row.get("type") == "user" else None
    return isinstance(content, list) and any(block.get("type") == "tool_result" for block in content)


def _record(path: Path, live: list[_Line], abandoned: int, options: TranscriptOptions,
            summaries: dict[str, str]) -> dict | Rejected:
    tip = live[-1]
    messages, counts = _messages(live, options.max_tool_output_chars)
    if not any(m["role"] == "assistant" for m in messages):
        kind = "subagent conversation in session" if tip.sidechain else "session"
        return Rejected(f"{path}:{live[0].no}", f"{kind} `{tip.session}` has no assistant message")
    cwd = next((str(line.row["cwd"]) for line in live if line.row.get("cwd")), "")
    start = options.session_roles.get(tip.session)
    town_root = options.town_root
    role, rig, actor = _role_from_start(start, cwd, town_root) if start else role_from_cwd(cwd, town_root)
    times = [line.row["timestamp"] for line in live if isinstance(line.row.get("timestamp"), str)]
    models = (line.row["message"].get("model") for line in live if line.row["type"] == "assistant")
    model = next((str(m) for m in models if m and m != SYNTHETIC_MODEL), "")
    meta = {
        "source": "transcripts", "location": str(path), "lines": _ranges(line.no for line in live),
        "session": tip.session, "sidechain": tip.sidechain, "role": role, "rig": rig, "actor": actor, "cwd": cwd,
        "created_at": times[0] if times else "", "updated_at": times[-1] if times else "",
        "model": model, "generated_by": f"model:{model or 'unknown'}",
        "summary": next((summaries[line.uuid] for line in reversed(live) if line.uuid in summaries), ""),
        **counts, "abandoned_lines": abandoned,
    }
    return make_record([{"role": "system", "content": _system_prompt(role, rig)}, *messages], meta)


def _system_prompt(role: str, rig: str) -> str:
    if role and rig:
        return f"You are a Gas Town {role} agent in rig `{rig}`."
    return f"You are a Gas Town {role} agent." if role else "You are a Gas Town agent."


def _messages(live: list[_Line], limit: int) -> tuple[list[dict], dict]:
    """OpenAI-style turns: text, `tool_calls` on the assistant turn, one `tool` turn per result."""
    messages: list[dict] = []
    counts = {"thinking_dropped": 0, "images_dropped": 0, "other_blocks_dropped": 0, "tool_outputs_elided": 0}
    orphans: list[str] = []
    tool_names: dict[str, str] = {}
    response = None  # message.id of the assistant turn being built
    for line in live:
        kind, message = line.row["type"], line.row.get("message")
        if kind not in CONVERSATION or any(line.row.get(flag) for flag in META_FLAGS) \
                or message.get("model") == SYNTHETIC_MODEL:
            continue
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if kind == "assistant":
            mid = message.get("id")
            if not (mid and mid == response and messages and messages[-1]["role"] == "assistant"):
                messages.append({"role": "assistant", "content": ""})
            response, turn = mid, messages[-1]
            for block in blocks:
                if block["type"] == "text":
                    turn["content"] = _join(turn["content"], block.get("text"))
                elif block["type"] == "tool_use":
                    call_id, name = str(block.get("id") or ""), str(block.get("name") or "")
                    tool_names[call_id] = name
                    arguments = json.dumps(block.get("input") or {}, sort_keys=True)
                    turn.setdefault("tool_calls", []).append(
                        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
                else:
                    _drop(block, counts)
            continue
        response = None
        for block in blocks:
            if block["type"] == "text":
                text = str(block.get("text") or "")
                if messages and messages[-1]["role"] == "user":
                    messages[-1]["content"] = _join(messages[-1]["content"], text)
                elif text.strip():
                    messages.append({"role": "user", "content": text})
            elif block["type"] == "tool_result":
                call_id = str(block.get("tool_use_id") or "")
                if call_id not in tool_names:
                    orphans.append(call_id)
                messages.append({"role": "tool", "tool_call_id": call_id, "name": tool_names.get(call_id, ""),
                                 "content": _tool_output(block.get("content"), limit, counts)})
            else:
                _drop(block, counts)
    messages = [m for m in messages if m["role"] != "assistant" or m["content"] or m.get("tool_calls")]
    return messages, {**counts, "orphan_tool_results": orphans}


def _join(text: str, more) -> str:
    more = str(more or "")
    return f"{text}\n\n{more}" if text.strip() and more.strip() else (text if text.strip() else more)


def _drop(block: dict, counts: dict) -> None:
    kind = str(block.get("type"))  # a tool result's inner blocks are not checked: any type may be here
    key = {"thinking": "thinking_dropped", "redacted_thinking": "thinking_dropped", "image": "images_dropped"}
    counts[key.get(kind, "other_blocks_dropped")] += 1


def _tool_output(content, limit: int, counts: dict) -> str:
    """Text of a tool result; a long one keeps its head and tail, where errors and totals are."""
    if isinstance(content, list):
        blocks = [block if isinstance(block, dict) else {} for block in content]
        for block in blocks:
            if block.get("type") != "text":
                _drop(block, counts)
        text = "\n".join(str(block.get("text") or "") for block in blocks if block.get("type") == "text")
    else:
        text = "" if content is None else str(content)
    if len(text) <= limit:
        return text
    counts["tool_outputs_elided"] += 1
    head = limit // 2
    return f"{text[:head]}\n[… {len(text) - limit} chars elided …]\n{text[len(text) - (limit - head):]}"


def _ranges(numbers) -> str:
    """`1-24,26`: the file lines a record came from, short enough to keep in every record."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
