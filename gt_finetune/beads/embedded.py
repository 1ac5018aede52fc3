"""The bead store for a machine with no town: one SQLite file with beads' own fields.

Same statuses (custom ones through `status.custom`), labels, comments, dependencies and
events as bd, and `ft-` ids in the beads style (prefix + short base36 hash, children
`<parent>.<n>`). When `doltlite` is importable every write is also a Dolt-style commit.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ExternalError, InputError
from ..workspace import can_write, ensure_dir, not_writable
from .engine import ENGINE, ENGINE_REASON
from .store import BUILTIN_STATUSES, STATUS_CATEGORIES, Bead, Comment, Dependency, HistoryEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS issues (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'open', issue_type TEXT NOT NULL DEFAULT 'task',
  priority INTEGER NOT NULL DEFAULT 2, notes TEXT NOT NULL DEFAULT '', close_reason TEXT NOT NULL DEFAULT '',
  assignee TEXT NOT NULL DEFAULT '', created_by TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL, started_at TEXT, closed_at TEXT, metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS labels (issue_id TEXT NOT NULL, label TEXT NOT NULL, PRIMARY KEY (issue_id, label));
CREATE TABLE IF NOT EXISTS comments (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
  issue_id TEXT NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dependencies (issue_id TEXT NOT NULL, depends_on_id TEXT NOT NULL,
  type TEXT NOT NULL DEFAULT 'blocks', created_at TEXT NOT NULL, created_by TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (issue_id, depends_on_id));
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, issue_id TEXT NOT NULL, event_type TEXT NOT NULL,
  actor TEXT NOT NULL, old_value TEXT, new_value TEXT, comment TEXT, created_at TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY AUTOINCREMENT, issue_id TEXT NOT NULL,
  actor TEXT NOT NULL, at TEXT NOT NULL, snapshot TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS child_counters (parent_id TEXT PRIMARY KEY, last_child INTEGER NOT NULL);
"""

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_actor() -> str:
    """bd's order: BEADS_ACTOR > BD_ACTOR > $USER."""
    return os.environ.get("BEADS_ACTOR") or os.environ.get("BD_ACTOR") or os.environ.get("USER") or "gt-finetune"


def open_sqlite(path: Path) -> tuple[sqlite3.Connection, bool]:
    """`path` opened to read and write, or — in a workspace that cannot be written (a read-only
    mount, a backup, another user's) — read-only, so commands that only read still work. Where no
    file is there yet, an empty in-memory database stands in. The flag says whether it is writable.
    """
    if can_write(path):
        conn, writable = sqlite3.connect(str(path), timeout=30), True
    elif path.is_file():
        conn, writable = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30), False
    else:
        conn, writable = sqlite3.connect(":memory:"), False
    conn.row_factory = sqlite3.Row
    return conn, writable


def _engine_for(path: Path) -> tuple[str, str]:
    """A store keeps the engine it was created with: doltlite files are unreadable to stock SQLite."""
    header = path.read_bytes()[:16] if path.is_file() else b""
    if not header:
        return ENGINE, ENGINE_REASON
    if header.startswith(b"SQLite format 3"):
        return "sqlite3", "the store was created without doltlite" if ENGINE == "doltlite" else ENGINE_REASON
    if ENGINE != "doltlite":
        raise ExternalError(f"{path} is a doltlite (Dolt) database, but doltlite is not loaded here ({ENGINE_REASON})",
                            hint="install it with `pip install doltlite`, and start gt-finetune from its own "
                                 "command (doltlite must load before sqlite3)", code="engine")
    return "doltlite", ENGINE_REASON


class EmbeddedStore:
    kind = "embedded"

    def __init__(self, path: Path, *, prefix: str = "ft", actor: str | None = None):
        ensure_dir(path.parent)
        self.path = path
        self.prefix = prefix
        self.actor = actor or default_actor()
        self.engine, reason = _engine_for(path)
        self.conn, self.writable = open_sqlite(path)
        if self.writable:
            self.conn.executescript(SCHEMA)
            with self._write("init"):
                self._init_config()
        elif not path.is_file():  # the empty stand-in of a workspace that cannot be written
            self.conn.executescript(SCHEMA)
            self._init_config()
        self.location = f"{path} ({self.engine}: {reason}{'' if self.writable else '; read-only'})"

    def _init_config(self) -> None:
        self.conn.execute("INSERT OR IGNORE INTO config(key, value) VALUES ('issue_prefix', ?)", (self.prefix,))
        self.conn.execute("INSERT OR IGNORE INTO config(key, value) VALUES ('status.custom', 'review:wip')")

    # -- writes -------------------------------------------------------------------------

    @contextmanager
    def _write(self, message: str):
        """One transaction per logical write, committed in Dolt style when doltlite is in use."""
        if not self.writable:
            raise not_writable(self.path.parent)
        try:
            yield
            self.conn.commit()
            if self.engine == "doltlite":
                self._dolt_commit(message)
        except BaseException:
            self.conn.rollback()
            raise

    def _dolt_commit(self, message: str) -> None:
        try:
            self.conn.execute("SELECT dolt_commit('-A', '-m', ?)", (message,))
        except sqlite3.OperationalError as exc:
            if "nothing to commit" not in str(exc).lower():
                raise

    def create(self, title: str, *, description: str = "", issue_type: str = "task",
               labels: Sequence[str] = (), parent: str | None = None, metadata: dict | None = None,
               priority: int = 2) -> Bead:
        if not title.strip():
            raise InputError("a bead needs a non-empty title")
        ts = now_iso()
        with self._write(f"bd: create {title[:40]}"):
            bead_id = self._child_id(parent) if parent else self._new_id(title, ts)
            self.conn.execute(
                "INSERT INTO issues(id, title, description, issue_type, priority, created_by, created_at, updated_at, metadata)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (bead_id, title, description, issue_type, priority, self.actor, ts, ts, json.dumps(metadata or {})),
            )
            self._event(bead_id, "created", new=title)
            for label in labels:
                self._add_label(bead_id, label)
            if parent:
                self._add_dep(bead_id, parent, "parent-child")
            self._snapshot(bead_id)
        return self.show(bead_id)

    def update(self, bead_id: str, *, status: str | None = None, add_labels: Sequence[str] = (),
               remove_labels: Sequence[str] = (), append_notes: str | None = None,
               metadata: dict | None = None) -> Bead:
        current = self.show(bead_id)
        ts = now_iso()
        with self._write(f"bd: update {bead_id}"):
            if status is not None and status != current.status:
                self._check_status(status)
                started = ts if status == "in_progress" else None
                self.conn.execute(
                    "UPDATE issues SET status=?, started_at=COALESCE(started_at, ?), updated_at=? WHERE id=?",
                    (status, started, ts, bead_id))
                self._event(bead_id, "status_changed", old=current.status, new=status)
            for label in add_labels:
                self._add_label(bead_id, label)
            for label in remove_labels:
                if self.conn.execute("DELETE FROM labels WHERE issue_id=? AND label=?", (bead_id, label)).rowcount:
                    self._event(bead_id, "label_removed", comment=f"Removed label: {label}")
            if append_notes:
                notes = f"{current.notes}\n{append_notes}" if current.notes else append_notes
                self.conn.execute("UPDATE issues SET notes=? WHERE id=?", (notes, bead_id))
            if metadata:
                merged = {**current.metadata, **metadata}
                self.conn.execute("UPDATE issues SET metadata=? WHERE id=?", (json.dumps(merged), bead_id))
            self.conn.execute("UPDATE issues SET updated_at=? WHERE id=?", (ts, bead_id))
            self._snapshot(bead_id)
        return self.show(bead_id)

    def close(self, bead_id: str, reason: str) -> Bead:
        current = self.show(bead_id)
        ts = now_iso()
        with self._write(f"bd: close {bead_id}"):
            self.conn.execute(
                "UPDATE issues SET status='closed', close_reason=?, closed_at=?, updated_at=? WHERE id=?",
                (reason, ts, ts, bead_id))
            self._event(bead_id, "closed", old=current.status, new=reason)
            self._snapshot(bead_id)
        return self.show(bead_id)

    def comment(self, bead_id: str, text: str) -> Comment:
        self.show(bead_id)
        comment = Comment(id=str(uuid.uuid4()), issue_id=bead_id, author=self.actor, text=text, created_at=now_iso())
        with self._write(f"bd: comment {bead_id}"):
            self.conn.execute("INSERT INTO comments(id, issue_id, author, text, created_at) VALUES (?,?,?,?,?)",
                              (comment.id, bead_id, comment.author, text, comment.created_at))
            self._event(bead_id, "commented", comment=text)
        return comment

    def add_dependency(self, issue_id: str, depends_on_id: str, dep_type: str = "blocks") -> None:
        self.show(issue_id)
        with self._write(f"bd: dep add {issue_id} {depends_on_id}"):
            self._add_dep(issue_id, depends_on_id, dep_type)

    def set_config(self, key: str, value: str) -> None:
        if key == "status.custom":
            parse_custom_statuses(value)
        with self._write(f"bd: config set {key}"):
            self.conn.execute("INSERT OR REPLACE INTO config(key, value) VALUES (?, ?)", (key, value))

    # -- reads --------------------------------------------------------------------------

    def show(self, bead_id: str) -> Bead:
        row = self.conn.execute("SELECT * FROM issues WHERE id=?", (bead_id,)).fetchone()
        if row is None:
            raise InputError(f"no bead `{bead_id}` in {self.path}", hint="list jobs with `gt-finetune list`",
                             code="not_found")
        labels = [r[0] for r in self.conn.execute("SELECT label FROM labels WHERE issue_id=? ORDER BY label", (bead_id,))]
        deps = [Dependency(bead_id, r[0], r[1]) for r in
                self.conn.execute("SELECT depends_on_id, type FROM dependencies WHERE issue_id=?", (bead_id,))]
        dependents = [Dependency(r[0], bead_id, r[1]) for r in
                      self.conn.execute("SELECT issue_id, type FROM dependencies WHERE depends_on_id=?", (bead_id,))]
        parent = next((d.depends_on_id for d in deps if d.type == "parent-child"), "")
        return Bead(
            id=row["id"], title=row["title"], description=row["description"], status=row["status"],
            issue_type=row["issue_type"], priority=row["priority"], labels=tuple(labels), notes=row["notes"],
            close_reason=row["close_reason"], assignee=row["assignee"], created_at=row["created_at"],
            updated_at=row["updated_at"], closed_at=row["closed_at"] or "", metadata=json.loads(row["metadata"]),
            parent=parent, dependencies=tuple(deps), dependents=tuple(dependents),
        )

    def list(self, *, labels: Sequence[str] = (), include_closed: bool = False) -> list[Bead]:
        sql = "SELECT id FROM issues"
        params: list = []
        clauses = [] if include_closed else ["status != 'closed'"]
        for label in labels:
            clauses.append("id IN (SELECT issue_id FROM labels WHERE label=?)")
            params.append(label)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at, id"
        return [self.show(r[0]) for r in self.conn.execute(sql, params)]

    def comments(self, bead_id: str) -> list[Comment]:
        self.show(bead_id)
        return [Comment(r["id"], r["issue_id"], r["author"], r["text"], r["created_at"]) for r in
                self.conn.execute("SELECT * FROM comments WHERE issue_id=? ORDER BY seq", (bead_id,))]

    def history(self, bead_id: str) -> list[HistoryEntry]:
        self.show(bead_id)
        entries = []
        for r in self.conn.execute("SELECT actor, at, snapshot FROM history WHERE issue_id=? ORDER BY seq", (bead_id,)):
            snap = json.loads(r["snapshot"])
            entries.append(HistoryEntry(at=r["at"], actor=r["actor"], status=snap["status"],
                                        labels=tuple(snap["labels"]), close_reason=snap.get("close_reason", "")))
        return entries

    def events(self, bead_id: str) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT issue_id, event_type, actor, old_value, new_value, comment, created_at FROM events"
            " WHERE issue_id=? ORDER BY seq", (bead_id,))]

    def get_config(self, key: str) -> str:
        row = self.conn.execute("SELECT value FROM config WHERE key=?", (key,)).fetchone()
        return row[0] if row else ""

    # -- helpers ------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        custom = parse_custom_statuses(self.get_config("status.custom"))
        return {**{s: "builtin" for s in BUILTIN_STATUSES}, **custom}

    def _check_status(self, status: str) -> None:
        if status not in self.statuses():
            known = ", ".join(self.statuses())
            raise InputError(f"status `{status}` is not defined in {self.path} (statuses: {known})",
                             hint=f"add it with `bd config set status.custom \"{status}:wip\"`")

    def _new_id(self, title: str, ts: str) -> str:
        seed = f"{title}|{ts}|{time.monotonic_ns()}|{uuid.uuid4()}".encode()
        digest = int.from_bytes(hashlib.sha256(seed).digest()[:10], "big")
        chars = ""
        while digest:
            digest, rem = divmod(digest, 36)
            chars += _BASE36[rem]
        for length in range(4, len(chars) + 1):
            candidate = f"{self.prefix}-{chars[:length]}"
            if not self.conn.execute("SELECT 1 FROM issues WHERE id=?", (candidate,)).fetchone():
                return candidate
        raise RuntimeError("could not find a free bead id")  # 2**80 space: unreachable in practice

    def _child_id(self, parent: str) -> str:
        self.show(parent)
        row = self.conn.execute("SELECT last_child FROM child_counters WHERE parent_id=?", (parent,)).fetchone()
        n = (row[0] if row else 0) + 1
        self.conn.execute("INSERT OR REPLACE INTO child_counters(parent_id, last_child) VALUES (?, ?)", (parent, n))
        return f"{parent}.{n}"

    def _add_label(self, bead_id: str, label: str) -> None:
        if self.conn.execute("INSERT OR IGNORE INTO labels(issue_id, label) VALUES (?, ?)", (bead_id, label)).rowcount:
            self._event(bead_id, "label_added", comment=f"Added label: {label}")

    def _add_dep(self, issue_id: str, depends_on_id: str, dep_type: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO dependencies(issue_id, depends_on_id, type, created_at, created_by) VALUES (?,?,?,?,?)",
            (issue_id, depends_on_id, dep_type, now_iso(), self.actor))
        self._event(issue_id, "dependency_added", new=f"{depends_on_id} ({dep_type})")

    def _event(self, bead_id: str, event_type: str, *, old: str | None = None, new: str | None = None,
               comment: str | None = None) -> None:
        seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetchone()[0]
        self.conn.execute(
            "INSERT INTO events(id, issue_id, event_type, actor, old_value, new_value, comment, created_at, seq)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (str(uuid.uuid4()), bead_id, event_type, self.actor, old, new, comment, now_iso(), seq))

    def _snapshot(self, bead_id: str) -> None:
        row = self.conn.execute("SELECT status, close_reason FROM issues WHERE id=?", (bead_id,)).fetchone()
        labels = [r[0] for r in self.conn.execute("SELECT label FROM labels WHERE issue_id=? ORDER BY label", (bead_id,))]
        snap = {"status": row["status"], "close_reason": row["close_reason"], "labels": labels}
        self.conn.execute("INSERT INTO history(issue_id, actor, at, snapshot) VALUES (?,?,?,?)",
                          (bead_id, self.actor, now_iso(), json.dumps(snap)))


def parse_custom_statuses(value: str) -> dict[str, str]:
    """`name[:category],…` as bd's `status.custom` (gastown.md §2.1); category empty when absent."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in (value or "").split(",")):
        if not part:
            continue
        name, _, category = part.partition(":")
        if not _valid_status_name(name) or (category and category not in STATUS_CATEGORIES):
            raise InputError(f"`{part}` is not a valid custom status (want name[:{'|'.join(STATUS_CATEGORIES)}])",
                             hint="names match [a-z][a-z0-9_-]*, e.g. `review:wip`")
        if name in BUILTIN_STATUSES:
            raise InputError(f"custom status `{name}` collides with a built-in status")
        out[name] = category
    return out


def _valid_status_name(name: str) -> bool:
    return bool(name) and name[0].isascii() and name[0].islower() and all(
        c.isascii() and (c.islower() or c.isdigit() or c in "_-") for c in name)
