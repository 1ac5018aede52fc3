"""Bead rows → records, shared by the JSONL and SQL readers so both give identical records.

A closed work bead is a worked example: title, description and comments are the situation,
the close reason is what was done. A bead labelled `gt:message` is mail: the record teaches
writing that mail with `gt mail send`. Everything else says why it is not an example.
"""
from __future__ import annotations

import shlex

from ..records import generated_by, make_record

# Types and labels the JSONL Dog scrubs too (gastown.md §3.3): plumbing, not work.
NON_WORK_TYPES = {"message", "event", "agent", "convoy", "molecule", "role", "merge-request", "rig", "gate"}
NON_WORK_LABELS = {"gt:agent", "gt:escalation", "ft:job", "ft:eval"}
MAIL_LABEL = "gt:message"
# Fields bd writes as text: any other type (a number, an object) is refused, never str()'d into text.
TEXT_FIELDS = ("title", "description", "close_reason", "status", "issue_type", "assignee", "created_by", "sender",
               "created_at", "closed_at", "closed_by_session")
SYSTEM_PROMPT = ("You are a Gas Town agent working in rig `{rig}`. Given a bead (a unit of work tracked "
                 "with `bd`), say what you did to resolve it, as you would in its close reason.")
MAIL_SYSTEM = "You are `{sender}`, a Gas Town agent. Write mail the way Gas Town's mail protocol expects."


def bead_record(row: dict, labels: set[str], comments: list[dict], *, location: str,
                min_reason_chars: int = 20) -> dict | str:
    """One record for a bead row, or the reason it is not an example."""
    problem = wrong_type(row, comments)
    if problem:
        return problem
    if MAIL_LABEL in labels:
        return mail_record(row, labels, location=location)
    if row.get("status") != "closed":
        return f"status is {row.get('status')!r}, not closed"
    if labels & NON_WORK_LABELS:
        return f"plumbing bead (label {sorted(labels & NON_WORK_LABELS)[0]})"
    if str(row.get("issue_type") or "task") in NON_WORK_TYPES:
        return f"plumbing bead (type {row.get('issue_type')!r})"
    if _truthy(row.get("ephemeral")):
        return "ephemeral (wisp)"
    title = str(row.get("title") or "").strip()
    reason = str(row.get("close_reason") or "").strip()
    if not title:
        return "no title"
    if len(reason) < min_reason_chars:
        return f"close reason too short ({len(reason)} chars)"
    bead_id = str(row["id"])
    rig = rig_of(bead_id)
    description = str(row.get("description") or "").strip()
    priority = row.get("priority")
    user = f"Bead {bead_id} ({row.get('issue_type') or 'task'}, P{priority if priority not in (None, '') else 2}): {title}"
    if description:
        user += f"\n\n{description}"
    if comments:
        user += "\n\nComments:\n" + "\n".join(f"- {c.get('author') or 'someone'}: {str(c.get('text') or '').strip()}"
                                            for c in comments)
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(rig=rig or "town")},
                {"role": "user", "content": user},
                {"role": "assistant", "content": reason}]
    actor = str(row.get("created_by") or "")
    closer = str(row.get("assignee") or actor)
    return make_record(messages, {
        "source": "beads", "location": location, "bead_id": bead_id, "rig": rig, "role": role_of(closer),
        "actor": actor, "assignee": closer, "session": str(row.get("closed_by_session") or ""),
        "created_at": str(row.get("created_at") or ""), "closed_at": str(row.get("closed_at") or ""),
        "generated_by": generated_by(closer)})


def mail_record(row: dict, labels: set[str], *, location: str) -> dict | str:
    sender = str(row.get("created_by") or row.get("sender") or next(
        (label[5:] for label in labels if label.startswith("from:")), ""))
    recipient = str(row.get("assignee") or "")
    subject = str(row.get("title") or "").strip()
    body = str(row.get("description") or "").strip()
    if not (sender and recipient and subject):
        return "mail without sender, recipient or subject"
    msg_type = next((label[9:] for label in labels if label.startswith("msg-type:")), "notification")
    command = f"gt mail send {recipient} -s {shlex.quote(subject)}"
    if msg_type != "notification":
        command += f" --type {msg_type}"
    command += f" --stdin <<'BODY'\n{body}\nBODY" if body else ""
    messages = [{"role": "system", "content": MAIL_SYSTEM.format(sender=sender)},
                {"role": "user", "content": f"Send `{recipient}` the mail with subject `{subject}`."},
                {"role": "assistant", "content": command}]
    return make_record(messages, {
        "source": "mail", "location": location, "bead_id": str(row["id"]), "rig": rig_of_actor(recipient),
        "role": role_of(sender), "actor": sender, "recipient": recipient,
        "session": "", "created_at": str(row.get("created_at") or ""), "closed_at": str(row.get("closed_at") or ""),
        "generated_by": generated_by(sender)})


def wrong_type(row: dict, comments: list[dict]) -> str | None:
    """Why a row cannot be read as a bead: a text field, the priority or a comment holding another type
    (`"priority": {"x": 1}` would otherwise teach `Bead x (7, P{'x': 1})`)."""
    for key in TEXT_FIELDS:
        if row.get(key) is not None and not isinstance(row[key], str):
            return f"`{key}` is {_kind(row[key])}, not text"
    priority = row.get("priority")
    if priority not in (None, "") and not (type(priority) is int or isinstance(priority, str) and priority.isdigit()):
        return f"`priority` is {_kind(priority)}, not a whole number"
    for n, comment in enumerate(comments, 1):
        for key in ("author", "text"):
            if comment.get(key) is not None and not isinstance(comment[key], str):
                return f"comment {n}: `{key}` is {_kind(comment[key])}, not text"
    return None


def _kind(value) -> str:
    """A JSON type's name, as a person who wrote the file knows it (the value itself may be a secret)."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def rig_of(bead_id: str) -> str:
    return bead_id.split("-", 1)[0] if "-" in bead_id else ""


def rig_of_actor(actor: str) -> str:
    parts = [p for p in actor.split("/") if p]
    return parts[0] if len(parts) >= 2 and parts[0] not in ("mayor", "deacon") else ""


def role_of(actor: str) -> str:
    """Gas Town identities (gastown.md §12 #55): `mayor/`, `<rig>/witness`, `<rig>/polecats/<n>`, …"""
    parts = [p for p in actor.split("/") if p]
    if not parts:
        return ""
    if parts[0] in ("mayor", "deacon", "overseer"):
        return parts[0] if parts[0] != "deacon" or len(parts) < 3 else "dog"
    if len(parts) >= 2 and parts[1] in ("witness", "refinery"):
        return parts[1]
    if len(parts) >= 2 and parts[1] in ("polecats", "crew"):
        return {"polecats": "polecat", "crew": "crew"}[parts[1]]
    return ""


def _truthy(value) -> bool:
    return str(value or "0").lower() in ("1", "true")
