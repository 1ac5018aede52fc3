"""Mail on job state transitions and events in the feed, in Gas Town's own line formats.

In a town: mail through `gt mail send <addr> -s … --stdin`, events appended to
`<town>/.events.jsonl` under the `.events.jsonl.lock` flock (gastown.md §4.1, §5.1, §5.3).
Outside one: the same lines go to `mail.jsonl` / `events.jsonl` in the workspace, so an
operator can read them with the same tools. Mail is a Dolt write in a town, so it is sent
only on transitions (and, if asked for, finished steps); progress goes to the feed.

How much mail, and to whom, is the operator's choice in `<home>/config.toml`:

    [notify]
    verbosity = "transitions"   # quiet: only what needs someone (failed, paused, review requests)
                                # transitions: every job state change (default)
                                # milestones: also each finished step
    [notify.recipients]         # addresses per event type; `default` for the rest
    default = ["overseer"]
    failed = ["overseer", "mayor/"]
    review = ["finetune/witness", "overseer"]   # who gets FT_EVAL_REVIEW
    milestone = ["overseer"]
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..beads.embedded import now_iso
from ..errors import InputError
from ..workspace import NotRegularFile, open_regular, shown
from . import retry
from .discover import Town

SOURCE = "gt_finetune"
VERBOSITY = ("quiet", "transitions", "milestones")
NEEDS_SOMEONE = ("failed", "paused")  # the transitions mailed even when quiet
EVENT_TYPES = ("ready", "active", "review", "done", "failed", "paused", "cancelled", "milestone", "default")


def bad_address(address: str) -> str:
    """Why `address` cannot be a mail address, or '' when it can. One starting with `-` would reach
    `gt mail send` as an option (`--help`), and whitespace is no part of a Gas Town address."""
    if not address or address.startswith("-") or any(c.isspace() or c == "\0" for c in address):
        return f"`{address}` is not a mail address (an agent such as `overseer`, `mayor/` or `<rig>/witness`)"
    return ""


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """The `[notify]` table of config.toml."""
    verbosity: str = "transitions"
    recipients: dict = field(default_factory=dict)  # event type -> addresses

    def __post_init__(self):
        if self.verbosity not in VERBOSITY:
            raise ValueError(f"`verbosity` must be one of {', '.join(VERBOSITY)}, got {self.verbosity!r}")
        for event, addresses in self.recipients.items():
            if event not in EVENT_TYPES:
                raise ValueError(f"`recipients.{event}` is no event type; use one of {', '.join(EVENT_TYPES)}")
            if not isinstance(addresses, list) or not all(isinstance(a, str) and a.strip() for a in addresses):
                raise ValueError(f"`recipients.{event}` must be a list of addresses, e.g. [\"overseer\"]")
            problem = next(filter(None, map(bad_address, addresses)), "")
            if problem:
                raise ValueError(f"`recipients.{event}`: {problem}")


@dataclass(frozen=True, slots=True)
class Recipients:
    transitions: tuple[str, ...] = ("overseer",)
    review: tuple[str, ...] = ()  # mailed FT_EVAL_REVIEW on the move to review, e.g. `finetune/witness`
    by_event: dict = field(default_factory=dict)  # state or `milestone` -> addresses, over `transitions`
    verbosity: str = "transitions"

    def of(self, event: str) -> tuple[str, ...]:
        """An event's own list, even an empty one (no mail), else the default recipients."""
        return tuple(self.by_event[event] if event in self.by_event else self.transitions)


def append_locked(path: Path, line: str) -> None:
    """Append one line under an exclusive flock on `<path>.lock`, as gt's events.Log does.

    Any agent can write in a town: a feed file that is a symlink (to the operator's `~/.bashrc`)
    or a FIFO (which would block the job) is refused, never written through.

    Raises:
        InputError: the feed file or its lock is not a regular file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_append(Path(f"{path}.lock")) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with _open_append(path) as f:
                f.write((line + "\n").encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _open_append(path: Path):
    try:
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # a symlink; a FIFO nobody reads; a folder
            raise
        refused = exc
    except NotRegularFile as exc:
        refused = exc
    else:
        return os.fdopen(fd, "ab")
    raise InputError(f"{shown(path)} is not a regular file: refusing to append to it",
                     hint="remove it; gt-finetune and gt create it again") from refused


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
        _append_or_warn(self.events_path, json.dumps(line, separators=(",", ":"), ensure_ascii=False))

    def transition(self, bead_id: str, run: str, state: str, body: str) -> None:
        """`FT_<STATE>: <ft-id> <run>` to that state's recipients; on review, reviewers get
        `review_request` instead (one mail each: every mail is a Dolt write). Quiet: only the
        states that need someone."""
        if self.recipients.verbosity == "quiet" and state not in NEEDS_SOMEONE:
            return
        skip = self.recipients.review if state == "review" else ()
        subject = f"FT_{state.upper()}: {bead_id} {run}"
        for address in self.recipients.of(state):
            if address not in skip:
                self.mail(address, subject, body)

    def milestone(self, bead_id: str, run: str, step: str, summary: str) -> None:
        """`FT_MILESTONE: <ft-id> <run> <step> done`, only at verbosity `milestones`."""
        if self.recipients.verbosity != "milestones":
            return
        for address in self.recipients.of("milestone"):
            self.mail(address, f"FT_MILESTONE: {bead_id} {run} {step} done", f"Step {step} done: {summary}")

    def review_request(self, bead_id: str, body: str) -> None:
        """`FT_EVAL_REVIEW: <ft-id>` to the reviewers: the witness and the overseer by default."""
        for address in self.recipients.review:
            self.mail(address, f"FT_EVAL_REVIEW: {bead_id}", body)

    def mail(self, to: str, subject: str, body: str) -> None:
        if bad_address(to):
            _warn(f"mail `{subject}` was not sent: {bad_address(to)}")
            return
        if self.town is None:
            message = {"id": f"msg-{uuid.uuid4().hex[:12]}", "from": self.actor, "to": to, "subject": subject,
                       "body": body, "timestamp": now_iso(), "read": False, "priority": 2,
                       "type": "notification", "delivery": "pending", "thread_id": "", "reply_to": "",
                       "pinned": False}
            _append_or_warn(self.mail_path, json.dumps(message, ensure_ascii=False))
            return
        argv = [self.gt, "mail", "send", to, "-s", subject, "--stdin"]
        policy = retry.RetryPolicy.from_env("gt", timeout=60)
        try:
            proc = retry.run(argv, what="gt mail send", write=True, policy=policy, cwd=self.town.root, input=body)
        except OSError as exc:
            _warn(f"mail `{subject}` to `{to}` was not sent: {exc}")
            return
        if proc.timed_out:
            _warn(f"mail `{subject}` to `{to}` may not have been sent: `gt mail send` gave no answer in "
                  f"{policy.timeout:g}s; check with `gt mail inbox {to}`")
        elif proc.returncode != 0:
            _warn(f"mail `{subject}` to `{to}` was not sent: `gt mail send` exited {proc.returncode}: "
                  f"{proc.stderr.strip()[-200:]}")


def _append_or_warn(path: Path, line: str) -> None:
    try:
        append_locked(path, line)
    except InputError as exc:
        _warn(f"{exc.message}; the line was not written")


def _warn(message: str) -> None:
    """A lost notification must not fail a training job; say so and carry on."""
    print(f"warning: {message}", file=sys.stderr)
