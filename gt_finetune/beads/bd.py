"""The bead store in a real town: every write goes through `bd --json`, never SQL.

`bd` only sees the database of the directory it runs in (bd ≥ 0.62 dropped prefix routing),
so each call runs in the owning rig's directory, or with an explicit `BEADS_DIR`
(gastown.md §0.3, §2.5, §2.6).
"""
from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from ..errors import ExternalError, InputError
from ..town import retry as retrying
from ..town.retry import Outcome, RetryPolicy
from .store import Bead, Comment, HistoryEntry


class BdStore:
    kind = "bd"

    def __init__(self, *, workdir: Path | None = None, beads_dir: Path | None = None, bd: str = "bd",
                 retry: RetryPolicy | None = None):
        if workdir is None and beads_dir is None:
            raise ValueError("BdStore needs the rig directory or a BEADS_DIR")
        self.workdir = workdir or beads_dir.parent
        self.beads_dir = beads_dir
        self.bd = bd
        self.retry = retry or RetryPolicy.from_env("bd")
        self.location = f"`bd` in {beads_dir or workdir}"

    def run(self, *args: str, stdin: str | None = None):
        """Run `bd --json <args>` and return its parsed JSON (envelope and schema_version removed).

        `--json` goes first so that free text after `--` (a comment) stays free text. A Dolt
        blip is retried (`town/retry.py`); a write only when bd cannot have made it.
        """
        env = {k: v for k, v in os.environ.items() if k != "BEADS_DIR"}
        if self.beads_dir is not None:
            env["BEADS_DIR"] = str(self.beads_dir)
        shown = shlex.join(["bd", *args])
        write = not _is_read(args)
        try:
            done = retrying.run([self.bd, "--json", *args], what=_verb(args), write=write, policy=self.retry,
                             cwd=self.workdir, env=env, input=stdin)
        except FileNotFoundError as exc:
            raise ExternalError(f"`{self.bd}` is not on PATH, so job beads cannot be written in {self.workdir}",
                                hint="install beads (`bd version` must work), or run outside the town with "
                                     "`--home DIR` for the embedded store", code="bd_missing") from exc
        if done.timed_out:
            raise _timeout_error(shown, args, done, self.retry, self.workdir)
        if done.returncode != 0:
            raise _bd_error(shown, args, done, self.workdir)
        out = done.stdout.strip()
        if not out:
            return None
        try:
            data = json.loads(out)
        except ValueError as exc:
            effect = (f"; it exited 0, so it probably {_effect(args)}: check with `{_check(args)}` before running "
                      "it again") if write else ""
            raise ExternalError(f"`{shown}` printed something that is not JSON: {out[:120]!r}{effect}",
                                hint="check `bd version`: gt-finetune needs bd ≥ 0.57, which prints JSON "
                                     "under `--json`",
                                code="bd_output") from exc
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
        return Bead.from_json(self._one(self.run("show", _id(bead_id)), "show"))

    def update(self, bead_id: str, *, status: str | None = None, add_labels: Sequence[str] = (),
               remove_labels: Sequence[str] = (), append_notes: str | None = None,
               metadata: dict | None = None) -> Bead:
        args = ["update", _id(bead_id)]
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
        return Bead.from_json(self._one(self.run("close", _id(bead_id), f"--reason={reason}"), "close"))

    def list(self, *, labels: Sequence[str] = (), include_closed: bool = False) -> list[Bead]:
        args = ["list", "--limit=0"]
        if include_closed:
            args.append("--all")
        args += [f"--label={label}" for label in labels]
        return [Bead.from_json(d) for d in self.run(*args) or []]

    def comment(self, bead_id: str, text: str) -> Comment:
        data = self.run("comments", "add", _id(bead_id), "--", text)
        return _comment(data if isinstance(data, dict) else {"issue_id": bead_id, "text": text})

    def comments(self, bead_id: str) -> list[Comment]:
        return [_comment(c) for c in self.run("comments", _id(bead_id)) or []]

    def add_dependency(self, issue_id: str, depends_on_id: str, dep_type: str = "blocks") -> None:
        self.run("dep", "add", _id(issue_id), _id(depends_on_id), f"--type={dep_type}")

    def history(self, bead_id: str) -> list[HistoryEntry]:
        """`bd history` lists the bead as of each Dolt commit, newest first."""
        entries = []
        for h in self.run("history", _id(bead_id)) or []:
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


def _id(bead_id: str) -> str:
    """A bead id as a positional argument: one starting with `-` would be read by bd as a flag."""
    if not bead_id or bead_id.startswith("-") or any(c.isspace() or c == "\0" for c in bead_id):
        raise InputError(f"`{bead_id}` is not a bead id", hint="bead ids look like `ft-a3k9`; list jobs with `gt-finetune list`")
    return bead_id


def _comment(d: dict) -> Comment:
    return Comment(id=str(d.get("id", "")), issue_id=str(d.get("issue_id", "")), author=str(d.get("author", "")),
                   text=str(d.get("text", "")), created_at=str(d.get("created_at", "")))


def _is_read(args: Sequence[str]) -> bool:
    """Reads can be repeated freely; everything else is treated as a write."""
    verb, sub = (list(args) + ["", ""])[:2]
    return verb in ("show", "list", "history") or (verb == "comments" and sub != "add") or \
        (verb == "config" and sub == "get")


def _verb(args: Sequence[str]) -> str:
    """`bd comments add`, `bd list`: the command without its values, for warnings."""
    words = ["bd", args[0]] if args else ["bd"]
    if len(args) > 1 and args[0] in ("comments", "dep", "config") and args[1] in ("add", "get", "set"):
        words.append(args[1])
    return " ".join(words)


def _effect(args: Sequence[str]) -> str:
    """What a write that did not answer may have done all the same."""
    verb, target = (args[0] if args else ""), _target(args)
    return {"create": "created the bead", "update": f"updated `{target}`", "close": f"closed `{target}`",
            "comments": f"added the comment to `{target}`", "dep": f"added the dependency of `{target}`",
            "config": f"set `{target}`"}.get(verb, "made its change")


def _check(args: Sequence[str]) -> str:
    """The read that shows whether a write happened."""
    verb, target = (args[0] if args else ""), _target(args)
    if verb == "create":
        labels = next((a.split("=", 1)[1] for a in args if a.startswith("--labels=")), "")
        return f"bd list --label={labels.split(',')[0]}" if labels else "bd list"
    if verb == "comments":
        return f"bd comments {target}"
    if verb == "config":
        return f"bd config get {target}"
    return f"bd show {target}"


def _target(args: Sequence[str]) -> str:
    """The bead id (or config key) a write is about: `update ID`, `comments add ID`, `config set KEY`."""
    values = [a for a in args[1:] if not a.startswith("-")]
    if args and args[0] in ("comments", "dep", "config") and values[:1] in (["add"], ["set"]):
        values = values[1:]
    return values[0] if values else ""


def _reported(stderr: str) -> tuple[str, str]:
    """bd's error and code: from its `{"error": …, "code": …}` line under --json, else the plain text;
    of a long error, the first line (what failed) and the last two (what bd advises), each cut short."""
    text, code = stderr, ""
    for line in stderr.splitlines():
        if line.strip().startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            text, code = str(obj.get("error") or stderr), str(obj.get("code") or "")
            break
    lines = [line.strip()[:200] for line in text.splitlines() if line.strip()]
    if not lines:
        return "no error message", code
    return " / ".join(lines if len(lines) <= 3 else [lines[0], "…", *lines[-2:]]), code


def _timeout_error(shown: str, args: Sequence[str], done: Outcome, policy: RetryPolicy, workdir: Path):
    if _is_read(args):
        tries = f", {done.tries} tries" if done.tries > 1 else ""
        return ExternalError(f"`{shown}` did not answer in {policy.timeout:g}s{tries} (in {workdir})",
                             hint="check the Dolt server with `gt dolt status`; a slow town can be given longer "
                                  "with `GT_FINETUNE_BD_TIMEOUT=<seconds>`", code="bd_timeout")
    return ExternalError(f"`{shown}` did not answer in {policy.timeout:g}s (in {workdir}); it may have "
                         f"{_effect(args)} all the same",
                         hint=f"check with `{_check(args)}` before running it again (a write that timed out is "
                              "never retried); `gt dolt status` shows the Dolt server", code="bd_timeout")


def _bd_error(shown: str, args: Sequence[str], done: Outcome, workdir: Path):
    """What failed, with bd's own words, and whether it can have changed anything."""
    message, code = _reported(done.stderr)
    if code == "not_found" or "not found" in message.lower():
        return InputError(f"`{shown}` failed: {message}",
                          hint=f"bd runs in {workdir}; check the id with `gt show <id>`", code="not_found")
    write = not _is_read(args)
    tries = f" after {done.tries} tries" if done.tries > 1 else ""
    if write and retrying.may_have_applied(done.stderr):
        hint = (f"the Dolt server went away mid-write, so bd may have {_effect(args)} all the same: check with "
                f"`{_check(args)}` before running it again; `gt dolt status` shows the server")
    elif retrying.transient_cause(done.stderr, write=False):
        hint = ("nothing was changed by this command; the Dolt server is down or busy: check it with "
                "`gt dolt status` (start it with `gt dolt start`), then run it again")
    else:
        hint = "nothing was changed by this command; when `bd doctor` passes, run it again"
    return ExternalError(f"`{shown}` failed (exit {done.returncode}){tries}: {message}", hint=hint,
                         code=code or "bd_failed")
