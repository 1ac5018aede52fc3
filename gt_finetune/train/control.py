"""Talking to a running training process through files: pause and cancel requests, who runs.

`gt-finetune pause` / `cancel` and the memory watchdog write a request; the trainer reads it at
each step boundary, saves a checkpoint and stops, and says how it stopped. Files, not signals:
they work the same for one process and for every rank under torchrun, and survive a restart.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..workspace import write_json

PAUSE, CANCEL = "pause", "cancel"
EXIT_STOPPED = 75  # the trainer stopped on request (EX_TEMPFAIL: try again later)


@dataclass(frozen=True, slots=True)
class RunControl:
    dir: Path  # `<home>/jobs/<ft-id>.run/`

    def request(self, action: str, reason: str) -> None:
        write_json(self.dir / "request.json", {"action": action, "reason": reason, "at": time.time()})

    def pending(self) -> dict | None:
        try:
            return json.loads((self.dir / "request.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def clear(self) -> None:
        (self.dir / "request.json").unlink(missing_ok=True)

    def set_worker(self, pid: int, **details) -> None:
        write_json(self.dir / "worker.json", {"pid": pid, "started_at": time.time(), **details})

    def worker(self) -> dict | None:
        """The training process, when one is alive."""
        try:
            info = json.loads((self.dir / "worker.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        try:  # a zombie, or a new process that reuses the pid, is not our trainer
            process = psutil.Process(info["pid"])
            alive = process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= info["started_at"] + 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
            return None
        return info if alive else None

    def clear_worker(self) -> None:
        (self.dir / "worker.json").unlink(missing_ok=True)

    def stopped(self, outcome: dict) -> None:
        write_json(self.dir / "stopped.json", outcome)

    def outcome(self) -> dict | None:
        try:
            return json.loads((self.dir / "stopped.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def failed(self, error: dict) -> None:
        """The trainer's own error (message, hint, code, exit_code), for the job's process to raise."""
        write_json(self.dir / "failed.json", error)

    def failure(self) -> dict | None:
        try:
            return json.loads((self.dir / "failed.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
