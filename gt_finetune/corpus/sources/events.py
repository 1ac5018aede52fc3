"""The event feed (`.events.jsonl`, `.feed.jsonl`): each action an agent took, as the command it ran.

A feed line records what happened (`sling`, `mail`, `nudge`, `done`, …) with its actor and
payload (gastown.md §5.1); the record asks the actor's role for that action and answers with
the `gt` command that produces it. Lines with no command behind them are rejected, with the type.
"""
from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

from ..records import Rejected, generated_by, json_line, make_record
from .beads_rows import rig_of_actor, role_of
from .context import HarvestContext, Refused, expand, long_line, numbered_lines, open_inside, root_of

SYSTEM = "You are `{actor}`, a Gas Town agent. Answer with the one `gt` command that does what is asked."


def _sling(p: dict) -> tuple[str, str] | None:
    if p.get("bead") and p.get("target"):
        return f"Hand bead {p['bead']} to {p['target']}.", f"gt sling {p['bead']} {p['target']}"
    return None


def _mail(p: dict) -> tuple[str, str] | None:
    if p.get("to") and p.get("subject"):
        return (f"Mail {p['to']} with subject `{p['subject']}`.",
                f"gt mail send {p['to']} -s {shlex.quote(str(p['subject']))} --stdin")
    return None


def _nudge(p: dict) -> tuple[str, str] | None:
    target, message = p.get("target") or p.get("to"), p.get("message") or p.get("reason")
    if target and message:
        return f"Nudge {target}: {message}", f"gt nudge {target} {shlex.quote(str(message))}"
    return None


def _hook(p: dict) -> tuple[str, str] | None:
    if p.get("bead"):
        return f"Put bead {p['bead']} on your hook.", f"gt hook {p['bead']}"
    return None


def _done(p: dict) -> tuple[str, str] | None:
    bead = p.get("bead") or p.get("issue")
    status = str(p.get("status") or p.get("exit") or "").upper()
    command = "gt done" + (f" --status {status}" if status in ("ESCALATED", "DEFERRED") else "")
    return (f"You finished your work on {bead}; hand it off." if bead else "You finished; hand off."), command


def _patrol_complete(p: dict) -> tuple[str, str] | None:
    if p.get("message"):
        return ("Close this patrol cycle and report what you found: " + str(p["message"]),
                f"gt patrol report --summary {shlex.quote(str(p['message']))}")
    return None


def _escalation(p: dict) -> tuple[str, str] | None:
    text = p.get("message") or p.get("reason") or p.get("description")
    severity = str(p.get("severity") or "MEDIUM").upper()
    if text:
        return (f"Escalate ({severity.lower()} severity): {text}",
                f"gt escalate {shlex.quote(str(text))} -s {severity}")
    return None


COMMANDS: dict[str, Callable[[dict], tuple[str, str] | None]] = {
    "sling": _sling, "mail": _mail, "nudge": _nudge, "hook": _hook, "done": _done,
    "patrol_complete": _patrol_complete, "escalation_sent": _escalation,
}


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    path = expand(location)
    root = root_of(path, ctx.town)
    files = [path / ".events.jsonl", path / ".feed.jsonl"] if path.is_dir() else [path]
    files = [f for f in files if os.path.lexists(f)]  # a link or a FIFO too: refused with why
    if not files:
        raise FileNotFoundError(path)
    for file in files:
        if ctx.unchanged(file):
            continue
        yield from _harvest_file(file, root, ctx)


def _harvest_file(file: Path, root: Path, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    try:
        f = open_inside(file, root, max_bytes=None)  # streamed: a feed may grow past what a file held whole may
    except Refused as exc:
        ctx.count(str(file), rejected=1)
        yield Rejected(str(file), str(exc))
        return
    used = refused = 0
    with f:
        for lineno, line in numbered_lines(f):
            if line is not None and not line.strip():
                continue
            if ctx.progress:
                ctx.progress(len(line or ""))
            item = _convert(line, f"{file}:{lineno}") if line is not None else Rejected(f"{file}:{lineno}", long_line())
            used, refused = (used + 1, refused) if isinstance(item, dict) else (used, refused + 1)
            yield item
    ctx.count(str(file), used=used, rejected=refused)


def _convert(line: str, where: str) -> dict | Rejected:
    try:
        event = json_line(line)
    except ValueError as exc:
        return Rejected(where, str(exc))
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return Rejected(where, "not an event (no `type`)")
    convert = COMMANDS.get(event["type"])
    # only text reaches a command: a number or an object in a payload field is not str()'d into one
    payload = {k: v for k, v in event["payload"].items() if isinstance(v, str)} \
        if isinstance(event.get("payload"), dict) else {}
    pair = convert(payload) if convert else None
    actor = event.get("actor") if isinstance(event.get("actor"), str) else ""
    if pair is None:
        why = "no command behind it" if convert is None else "payload lacks the fields the command needs"
        return Rejected(where, f"event `{event['type']}`: {why}")
    if not actor or actor == "gt":
        return Rejected(where, f"event `{event['type']}` has no agent actor")
    ask, command = pair
    messages = [{"role": "system", "content": SYSTEM.format(actor=actor)},
                {"role": "user", "content": ask}, {"role": "assistant", "content": command}]
    file, line = where.rsplit(":", 1)
    return make_record(messages, {"source": "events", "location": file, "line": int(line), "event": event["type"],
                                  "rig": rig_of_actor(actor), "role": role_of(actor), "actor": actor,
                                  "session": str(payload.get("session_id") or ""),
                                  "created_at": event["ts"] if isinstance(event.get("ts"), str) else "",
                                  "generated_by": generated_by(actor)})
