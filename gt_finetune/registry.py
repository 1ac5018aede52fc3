"""Models and the audit log, in SQLite under the workspace: what was trained on what, and why it changed.

A model's life: `candidate` (trained) → `approved` or `rejected` (review) → `deployed` (an agent
alias points at it) → `superseded` (another model took its alias) or back to `approved`
(rolled back); `archived` when put away; `tainted` when trained on forgotten records. `stale`
is not stored: the town changed since the corpus was harvested (see `corpus.harvest.staleness`).

Schema changes are append-only numbered migrations recorded in `_migrations`. The audit log is
never edited or pruned: forgetting records or tainting a model adds rows, it removes none.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .beads.embedded import default_actor, now_iso, open_sqlite
from .workspace import ensure_dir, not_writable

MIGRATIONS = (
    ("m001_models_and_audit", """
        CREATE TABLE models (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, corpus_id TEXT NOT NULL,
          dataset_id TEXT NOT NULL, train_dir TEXT NOT NULL, base_model TEXT NOT NULL,
          state TEXT NOT NULL DEFAULT 'candidate', reason TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
        CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
          action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
    """),
    ("m002_export_and_deployment", """
        ALTER TABLE models ADD COLUMN export_dir TEXT NOT NULL DEFAULT '';
        ALTER TABLE models ADD COLUMN alias TEXT NOT NULL DEFAULT '';
        ALTER TABLE models ADD COLUMN deployment TEXT NOT NULL DEFAULT '';
        ALTER TABLE models ADD COLUMN superseded_by TEXT NOT NULL DEFAULT '';
        ALTER TABLE models ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    """),
)
STATES = ("candidate", "approved", "rejected", "deployed", "superseded", "archived", "tainted")


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    job_id: str
    corpus_id: str
    dataset_id: str
    train_dir: str
    base_model: str
    state: str
    reason: str
    created_at: str
    export_dir: str = ""
    alias: str = ""  # the agent alias pointing at it while deployed
    deployment: str = ""  # the deployment record that can undo it
    superseded_by: str = ""
    seq: int = 0  # registration order (the storage engine's rowid order is not insertion order)


class Registry:
    def __init__(self, home: Path):
        self.home = ensure_dir(home)
        path = home / "registry.db"
        self.conn, self.writable = open_sqlite(path)
        if not self.writable and path.is_file() and self._pending():
            raise not_writable(home)  # written by an older version: reading it needs its migrations
        self.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        for name, sql in self._pending():
            with self.conn:
                self.conn.executescript(sql)
                self.conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, now_iso()))

    def _pending(self) -> list[tuple[str, str]]:
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name='_migrations'").fetchone() is None:
            return list(MIGRATIONS)
        done = {r[0] for r in self.conn.execute("SELECT name FROM _migrations")}
        return [(name, sql) for name, sql in MIGRATIONS if name not in done]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write, refused up front in a workspace that cannot be written."""
        if not self.writable:
            raise not_writable(self.home)
        with self.conn:
            yield

    def register(self, *, model_id: str, job_id: str, corpus_id: str, dataset_id: str, train_dir: str,
                 base_model: str) -> Model:
        with self._transaction():
            added = self.conn.execute(
                "INSERT OR IGNORE INTO models (id, job_id, corpus_id, dataset_id, train_dir, base_model, created_at, seq)"
                " VALUES (?,?,?,?,?,?,?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM models))",
                (model_id, job_id, corpus_id, dataset_id, train_dir, base_model, now_iso()))
            if added.rowcount:
                self._audit("register", model_id, {"job": job_id, "corpus": corpus_id})
        return self.model(model_id)

    def model(self, model_id: str) -> Model:
        row = self.conn.execute("SELECT * FROM models WHERE id=?", (model_id,)).fetchone()
        if row is None:
            raise KeyError(model_id)
        return Model(**dict(row))

    def models(self) -> list[Model]:
        return [Model(**dict(r)) for r in self.conn.execute("SELECT * FROM models ORDER BY seq, created_at, id")]

    def taint(self, corpus_ids: Iterable[str], reason: str) -> list[Model]:
        """Every model trained on one of these corpora needs retraining; say why in the registry."""
        ids = sorted(set(corpus_ids))
        hit = [m for m in self.models() if m.corpus_id in ids]
        with self._transaction():
            for m in hit:
                self.conn.execute("UPDATE models SET state='tainted', reason=? WHERE id=?", (reason, m.id))
                self._audit("taint", m.id, {"reason": reason, "corpus": m.corpus_id, "was": m.state})
        return [self.model(m.id) for m in hit]

    def set_state(self, model_id: str, state: str, reason: str) -> Model:
        """Move a model along its life (candidate → approved/rejected → …), with the why in the audit log."""
        if state not in STATES:
            raise ValueError(f"unknown model state `{state}`; states: {', '.join(STATES)}")
        was = self.model(model_id).state
        with self._transaction():
            self.conn.execute("UPDATE models SET state=?, reason=? WHERE id=?", (state, reason, model_id))
            self._audit(state, model_id, {"reason": reason, "was": was})
        return self.model(model_id)

    def exported(self, model_id: str, export_dir: str) -> Model:
        with self._transaction():
            self.conn.execute("UPDATE models SET export_dir=? WHERE id=?", (export_dir, model_id))
            self._audit("export", model_id, {"export_dir": export_dir})
        return self.model(model_id)

    def deployed(self, model_id: str, *, alias: str, deployment: str) -> Model:
        """`model_id` now answers for `alias`; whichever model did before is superseded by it."""
        with self._transaction():
            for old in self.conn.execute("SELECT id FROM models WHERE alias=? AND state='deployed' AND id<>?",
                                         (alias, model_id)).fetchall():
                self.conn.execute("UPDATE models SET state='superseded', superseded_by=? WHERE id=?",
                                  (model_id, old["id"]))
                self._audit("superseded", old["id"], {"by": model_id, "alias": alias})
            self.conn.execute("UPDATE models SET state='deployed', alias=?, deployment=?, reason=? WHERE id=?",
                              (alias, deployment, f"deployed as `{alias}`", model_id))
            self._audit("deployed", model_id, {"alias": alias, "deployment": deployment})
        return self.model(model_id)

    def rolled_back(self, deployment: str) -> list[Model]:
        """The model of `deployment` steps back to approved; what it superseded is deployed again."""
        row = self.conn.execute("SELECT id FROM models WHERE deployment=?", (deployment,)).fetchone()
        if row is None:
            return []
        model_id = row["id"]
        with self._transaction():
            self.conn.execute("UPDATE models SET state='approved', alias='', deployment='', reason=? WHERE id=?",
                              ("rolled back", model_id))
            self._audit("rollback", model_id, {"deployment": deployment})
            back = self.conn.execute("SELECT id FROM models WHERE superseded_by=? AND state='superseded'",
                                     (model_id,)).fetchall()
            for r in back:
                self.conn.execute("UPDATE models SET state='deployed', superseded_by='' WHERE id=?", (r["id"],))
                self._audit("deployed", r["id"], {"reason": f"rollback of {model_id}"})
        return [self.model(model_id)] + [self.model(r["id"]) for r in back]

    def find(self, ref: str) -> Model:
        """A model by id, unique id prefix, or job id (its latest model).

        Raises:
            KeyError: nothing or more than one model matches, with the candidates in the message.
        """
        models = self.models()
        exact = [m for m in models if m.id == ref]
        hits = exact or [m for m in models if m.id.startswith(ref)] or [m for m in models if m.job_id == ref][-1:]
        if len(hits) != 1:
            raise KeyError(f"{'no model' if not hits else f'{len(hits)} models'} matching `{ref}`"
                           + (f": {', '.join(m.id for m in hits)}" if hits else ""))
        return hits[0]

    def record(self, action: str, subject: str, detail: dict) -> None:
        with self._transaction():
            self._audit(action, subject, detail)

    def audit(self) -> list[dict]:
        return [{**dict(r), "detail": json.loads(r["detail"])}
                for r in self.conn.execute("SELECT * FROM audit ORDER BY seq")]

    def _audit(self, action: str, subject: str, detail: dict) -> None:
        self.conn.execute("INSERT INTO audit (at, actor, action, subject, detail) VALUES (?,?,?,?,?)",
                          (now_iso(), default_actor(), action, subject, json.dumps(detail, sort_keys=True)))
