"""Mail on job state transitions and events in the feed, in Gas Town's own line formats.

In a town: mail through `gt mail send <addr> -s … --stdin`, events appended to
`<town>/.events.jsonl` under the `.events.jsonl.lock` flock (gastown.md §4.1, §5.1, §5.3).
Outside one: the same lines go to `mail.jsonl` / `events.jsonl` in the workspace, so an
operator can read them with the same tools. Mail is a Dolt write in a town, so it is sent
only on transitions; progress goes to the feed.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..beads.embedded import now_iso
from .discover import Town

SOURCE = "gt_finetune"


@dataclass(frozen=True, slots=True)
class Recipients:
    transitions: tuple[str, ...] = ("overseer",)
    review: tuple[str, ...] = ()  # mailed FT_EVAL_REVIEW on the move to review, e.g. `finetune/witness`


def append_locked(path: Path, line: str) -> None:
    """Append one line under an exclusive flock on `<path>.lock`, as gt's events.Log does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Notifier:
    def __init__(self, *, town: Town | None, home: Path, recipients: Recipients = Recipients(),
                 actor: str = SOURCE, gt: str = "gt"):
        self.town = town
        self.home = home
        self.recipients = recipients
        self.actor = actor
        self.gt = gt

    @property
    def events_path(self) -> Path:
        return self.town.root / ".events.jsonl" if self.town else self.home / "events.jsonl"

    @property
    def mail_path(self) -> Path:
        return self.home / "mail.jsonl"

    def event(self, event_type: str, payload: dict) -> None:
        line = {"ts": now_iso(), "source": SOURCE, "type": event_type, "actor": self.actor,
                "payload": payload, "visibility": "feed"}
        append_locked(self.events_path, json.dumps(line, separators=(",", ":"), ensure_ascii=False))

    def transition(self, bead_id: str, run: str, state: str, body: str) -> None:
        """`FT_<STATE>: <ft-id> <run>` to the transition recipients; on review, reviewers get
        `review_request` instead (one mail each: every mail is a Dolt write)."""
        skip = self.recipients.review if state == "review" else ()
        subject = f"FT_{state.upper()}: {bead_id} {run}"
        for address in self.recipients.transitions:
            if address not in skip:
                self.mail(address, subject, body)

    def review_request(self, bead_id: str, body: str) -> None:
        """`FT_EVAL_REVIEW: <ft-id>` to the reviewers: the witness and the overseer by default."""
        for address in self.recipients.review:
            self.mail(address, f"FT_EVAL_REVIEW: {bead_id}", body)

    def mail(self, to: str, subject: str, body: str) -> None:
        if self.town is None:
            message = {"id": f"msg-{uuid.uuid4().hex[:12]}", "from": self.actor, "to": to, "subject": subject,
                       "body": body, "timestamp": now_iso(), "read": False, "priority": 2,
                       "type": "notification", "delivery": "pending", "thread_id": "", "reply_to": "",
                       "pinned": False}
            append_locked(self.mail_path, json.dumps(message, ensure_ascii=False))
            return
        argv = [self.gt, "mail", "send", to, "-s", subject, "--stdin"]
        try:
            proc = subprocess.run(argv, cwd=self.town.root, input=body, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _warn(f"mail `{subject}` to `{to}` was not sent: {exc}")
            return
        if proc.returncode != 0:
            _warn(f"mail `{subject}` to `{to}` was not sent: `gt mail send` exited {proc.returncode}: "
                  f"{proc.stderr.strip()[-200:]}")


def _warn(message: str) -> None:
    """A lost notification must not fail a training job; say so and carry on."""
    print(f"warning: {message}", file=sys.stderr)
