"""The bead store in a real town: every write goes through `bd --json`, never SQL.

`bd` only sees the database of the directory it runs in (bd ≥ 0.62 dropped prefix routing),
so each call runs in the owning rig's directory, or with an explicit `BEADS_DIR`
(gastown.md §0.3, §2.5, §2.6).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import ExternalError, InputError
from .store import Bead, Comment, HistoryEntry


class BdStore:
    kind = "bd"

    def __init__(self, *, workdir: Path | None = None, beads_dir: Path | None = None, bd: str = "bd",
                 timeout: float = 120):
        if workdir is None and beads_dir is None:
            raise ValueError("BdStore needs the rig directory or a BEADS_DIR")
        self.workdir = workdir or beads_dir.parent
        self.beads_dir = beads_dir
        self.bd = bd
        self.timeout = timeout
        self.location = f"`bd` in {beads_dir or workdir}"

    def run(self, *args: str, stdin: str | None = None):
        """Run `bd --json <args>` and return its parsed JSON (envelope and schema_version removed).

        `--json` goes first so that free text after `--` (a comment) stays free text.
        """
        argv = [self.bd, "--json", *args]
        env = {k: v for k, v in os.environ.items() if k != "BEADS_DIR"}
        if self.beads_dir is not None:
            env["BEADS_DIR"] = str(self.beads_dir)
        shown = shlex.join(["bd", *args])
        try:
            proc = subprocess.run(argv, cwd=self.workdir, env=env, input=stdin, capture_output=True,
                                  text=True, timeout=self.timeout)
        except FileNotFoundError as exc:
            raise ExternalError(f"`{self.bd}` is not on PATH, so job beads cannot be written in {self.workdir}",
                                hint="install beads (`bd version` must work), or run outside the town with "
                                     "`--home DIR` for the embedded store", code="bd_missing") from exc
        except subprocess.TimeoutExpired as exc:
            raise ExternalError(f"`{shown}` did not answer in {self.timeout:.0f}s (in {self.workdir})",
                                hint="check the Dolt server with `gt dolt status`", code="bd_timeout") from exc
        if proc.returncode != 0:
            raise _bd_error(shown, proc, self.workdir)
        out = proc.stdout.strip()
        if not out:
            return None
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise ExternalError(f"`{shown}` printed something that is not JSON: {out[:120]!r}",
                                hint="check `bd version` (gt-finetune needs bd ≥ 0.57)", code="bd_output") from exc
        if isinstance(data, dict) and set(data) <= {"schema_version", "data"} and "data" in data:
            data = data["data"]
        if isinstance(data, dict):
            data.pop("schema_version", None)
        return data

    def create(self, title: str, *, description: str = "", issue_type: str = "task",
               labels: Sequence[str] = (), parent: str | None = None, metadata: dict | None = None,
               priority: int = 2) -> Bead:
        args = ["create", f"--title={title}", f"--type={issue_type}", f"--priority={priority}", "--body-file=-"]
        if labels:
            args.append("--labels=" + ",".join(labels))
        if parent:
            args.append(f"--parent={parent}")
        if metadata:
            args.append("--metadata=" + json.dumps(metadata, sort_keys=True))
        return Bead.from_json(self._one(self.run(*args, stdin=description), "create"))

    def show(self, bead_id: str) -> Bead:
        return Bead.from_json(self._one(self.run("show", bead_id), "show"))

    def update(self, bead_id: str, *, status: str | None = None, add_labels: Sequence[str] = (),
               remove_labels: Sequence[str] = (), append_notes: str | None = None,
               metadata: dict | None = None) -> Bead:
        args = ["update", bead_id]
        if status is not None:
            args.append(f"--status={status}")
        args += [f"--add-label={label}" for label in add_labels]
        args += [f"--remove-label={label}" for label in remove_labels]
        if append_notes:
            args.append(f"--append-notes={append_notes}")
        if metadata:
            merged = {**self.show(bead_id).metadata, **metadata}
            args.append("--metadata=" + json.dumps(merged, sort_keys=True))
        return Bead.from_json(self._one(self.run(*args), "update"))

    def close(self, bead_id: str, reason: str) -> Bead:
        return Bead.from_json(self._one(self.run("close", bead_id, f"--reason={reason}"), "close"))

    def list(self, *, labels: Sequence[str] = (), include_closed: bool = False) -> list[Bead]:
        args = ["list", "--limit=0"]
        if include_closed:
            args.append("--all")
        args += [f"--label={label}" for label in labels]
        return [Bead.from_json(d) for d in self.run(*args) or []]

    def comment(self, bead_id: str, text: str) -> Comment:
        data = self.run("comments", "add", bead_id, "--", text)
        return _comment(data if isinstance(data, dict) else {"issue_id": bead_id, "text": text})

    def comments(self, bead_id: str) -> list[Comment]:
        return [_comment(c) for c in self.run("comments", bead_id) or []]

    def add_dependency(self, issue_id: str, depends_on_id: str, dep_type: str = "blocks") -> None:
        self.run("dep", "add", issue_id, depends_on_id, f"--type={dep_type}")

    def history(self, bead_id: str) -> list[HistoryEntry]:
        """`bd history` lists the bead as of each Dolt commit, newest first."""
        entries = []
        for h in self.run("history", bead_id) or []:
            issue = h.get("Issue") or {}
            entries.append(HistoryEntry(at=str(h.get("CommitDate", "")), actor=str(h.get("Committer", "")),
                                        status=str(issue.get("status", "")),
                                        labels=tuple(sorted(issue.get("labels") or ())),
                                        close_reason=str(issue.get("close_reason") or "")))
        return entries[::-1]

    def get_config(self, key: str) -> str:
        data = self.run("config", "get", key) or {}
        return str(data.get("value") or "")

    def set_config(self, key: str, value: str) -> None:
        self.run("config", "set", key, value)

    @staticmethod
    def _one(data, verb: str) -> dict:
        """`show/update/close` answer with a list, `create` with an object (gastown.md §2.6)."""
        if isinstance(data, list):
            if not data:
                raise ExternalError(f"`bd {verb}` returned an empty list", code="bd_output")
            return data[0]
        if isinstance(data, dict):
            return data
        raise ExternalError(f"`bd {verb}` returned {type(data).__name__}, expected JSON", code="bd_output")


def _comment(d: dict) -> Comment:
    return Comment(id=str(d.get("id", "")), issue_id=str(d.get("issue_id", "")), author=str(d.get("author", "")),
                   text=str(d.get("text", "")), created_at=str(d.get("created_at", "")))


def _bd_error(shown: str, proc: subprocess.CompletedProcess, workdir: Path):
    """bd reports errors on stderr as `{"error": …, "code": …}` under --json; plain text otherwise."""
    message, code = proc.stderr.strip(), ""
    for line in proc.stderr.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            message, code = str(obj.get("error") or message), str(obj.get("code") or "")
            break
    message = message.splitlines()[-1] if message else "no error message"
    if code == "not_found" or "not found" in message.lower():
        return InputError(f"`{shown}` failed: {message}",
                          hint=f"bd runs in {workdir}; check the id with `gt show <id>`", code="not_found")
    return ExternalError(f"`{shown}` failed (exit {proc.returncode}): {message}",
                         hint="nothing was changed by this command; when `bd doctor` passes, run it again",
                         code=code or "bd_failed")
