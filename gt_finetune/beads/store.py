"""The one bead-store interface, and the plain records both backends return.

Field names follow bd's JSON (gastown.md §2.6) so the same code reads a real `bd show --json`
and our embedded store.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

BUILTIN_STATUSES = ("open", "in_progress", "blocked", "deferred", "closed", "pinned", "hooked")
STATUS_CATEGORIES = ("active", "wip", "done", "frozen")


@dataclass(frozen=True, slots=True)
class Dependency:
    issue_id: str
    depends_on_id: str
    type: str = "blocks"


@dataclass(frozen=True, slots=True)
class Comment:
    id: str
    issue_id: str
    author: str
    text: str
    created_at: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """The bead as it was after one write (a Dolt commit in a town)."""

    at: str
    actor: str
    status: str
    labels: tuple[str, ...]
    close_reason: str = ""


@dataclass(frozen=True, slots=True)
class Bead:
    id: str
    title: str
    description: str = ""
    status: str = "open"
    issue_type: str = "task"
    priority: int = 2
    labels: tuple[str, ...] = ()
    notes: str = ""
    close_reason: str = ""
    assignee: str = ""
    created_at: str = ""
    updated_at: str = ""
    closed_at: str = ""
    metadata: dict = field(default_factory=dict)
    parent: str = ""
    dependencies: tuple[Dependency, ...] = ()
    dependents: tuple[Dependency, ...] = ()

    @classmethod
    def from_json(cls, data: dict) -> "Bead":
        """Read bd's Issue / IssueDetails JSON, tolerating fields older or newer bd adds or drops."""
        bead_id = str(data["id"])
        metadata = data.get("metadata") or {}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata) if metadata.strip() else {}
            except ValueError:
                metadata = {"_raw": metadata}
        deps = tuple(_dependency(bead_id, d, outgoing=True) for d in data.get("dependencies") or ())
        dependents = tuple(_dependency(bead_id, d, outgoing=False) for d in data.get("dependents") or ())
        return cls(
            id=bead_id,
            title=str(data.get("title") or ""),
            description=str(data.get("description") or ""),
            status=str(data.get("status") or "open"),
            issue_type=str(data.get("issue_type") or "task"),
            priority=int(data.get("priority") if data.get("priority") not in (None, "", "None") else 2),
            labels=tuple(sorted(str(x) for x in data.get("labels") or ())),
            notes=str(data.get("notes") or ""),
            close_reason=str(data.get("close_reason") or ""),
            assignee=str(data.get("assignee") or ""),
            created_at=str(data.get("created_at") or ""),
            updated_at=str(data.get("updated_at") or ""),
            closed_at=str(data.get("closed_at") or ""),
            metadata=metadata if isinstance(metadata, dict) else {},
            parent=str(data.get("parent") or ""),
            dependencies=tuple(d for d in deps if d),
            dependents=tuple(d for d in dependents if d),
        )

    def to_json(self) -> dict:
        return {
            "id": self.id, "title": self.title, "description": self.description, "status": self.status,
            "issue_type": self.issue_type, "priority": self.priority, "labels": list(self.labels),
            "notes": self.notes, "close_reason": self.close_reason, "assignee": self.assignee,
            "created_at": self.created_at, "updated_at": self.updated_at, "closed_at": self.closed_at,
            "metadata": self.metadata, "parent": self.parent,
            "dependencies": [{"issue_id": d.issue_id, "depends_on_id": d.depends_on_id, "type": d.type}
                             for d in self.dependencies],
            "dependents": [{"issue_id": d.issue_id, "depends_on_id": d.depends_on_id, "type": d.type}
                           for d in self.dependents],
        }


def _dependency(bead_id: str, d: dict, *, outgoing: bool) -> Dependency | None:
    """bd's show lists related issues with `dependency_type`; dep records use `type`."""
    if not isinstance(d, dict):
        return None
    dep_type = str(d.get("dependency_type") or d.get("type") or "blocks")
    if "issue_id" in d and ("depends_on_id" in d):
        return Dependency(str(d["issue_id"]), str(d["depends_on_id"]), dep_type)
    other = str(d.get("id") or "")
    if not other:
        return None
    return Dependency(bead_id, other, dep_type) if outgoing else Dependency(other, bead_id, dep_type)


class BeadStore(Protocol):
    """What gt-finetune needs from beads; `bd` in a town, SQLite without one."""

    kind: str  # "bd" or "embedded"
    location: str  # printed once so people know where their job beads live

    def create(self, title: str, *, description: str = "", issue_type: str = "task",
               labels: Sequence[str] = (), parent: str | None = None, metadata: dict | None = None,
               priority: int = 2) -> Bead: ...

    def show(self, bead_id: str) -> Bead: ...

    def update(self, bead_id: str, *, status: str | None = None, add_labels: Sequence[str] = (),
               remove_labels: Sequence[str] = (), append_notes: str | None = None,
               metadata: dict | None = None) -> Bead: ...

    def close(self, bead_id: str, reason: str) -> Bead: ...

    def list(self, *, labels: Sequence[str] = (), include_closed: bool = False) -> list[Bead]: ...

    def comment(self, bead_id: str, text: str) -> Comment: ...

    def comments(self, bead_id: str) -> list[Comment]: ...

    def add_dependency(self, issue_id: str, depends_on_id: str, dep_type: str = "blocks") -> None: ...

    def history(self, bead_id: str) -> list[HistoryEntry]: ...

    def get_config(self, key: str) -> str: ...

    def set_config(self, key: str, value: str) -> None: ...
