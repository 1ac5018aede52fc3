"""One job at a time per machine: a second job waits in a queue, or refuses with `--no-queue`.

Two jobs training side by side on a 10 GB box both get killed by the OOM killer, so a job holds
the machine lock while its steps run. The lock is a `flock` on `<lock dir>/machine.lock`: the
kernel frees it when the holder dies, however it dies. Beside it `holder.json` names the job and
process, so others can say whom they wait for; a `holder.json` whose process is gone is a stale
lock from a killed job, reported and cleared. Waiters register in `queue/` and take the lock in
the order they came (flock alone wakes waiters in no particular order).

The lock dir is `$GT_FINETUNE_LOCK_DIR`, else `~/.cache/gt-finetune/lock`: one per user. Point
every user's `GT_FINETUNE_LOCK_DIR` at one shared folder to share a machine between users.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from .beads.embedded import now_iso
from .errors import InputError
from .workspace import write_json


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds (or waits for) the machine: a job and the process running it."""
    job_id: str
    pid: int
    host: str
    since: str
    created: float  # the process's start time: a reused pid is not the same process

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # another machine sharing the folder: we cannot tell, so assume it runs
        try:
            return abs(psutil.Process(self.pid).create_time() - self.created) < 1.0
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def describe(self) -> str:
        return f"{self.job_id} (pid {self.pid}, since {self.since})"


def lock_dir() -> Path:
    explicit = os.environ.get("GT_FINETUNE_LOCK_DIR")
    return Path(explicit).expanduser() if explicit else Path.home() / ".cache" / "gt-finetune" / "lock"


def me(job_id: str) -> Holder:
    return Holder(job_id=job_id, pid=os.getpid(), host=socket.gethostname(), since=now_iso(),
                  created=psutil.Process().create_time())


def _read(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def holder() -> Holder | None:
    """The live job holding the machine, if any (a stale record counts as none)."""
    found = _read(lock_dir() / "holder.json")
    return found if found and found.alive() else None


def waiting() -> list[Holder]:
    """Live waiters in the order they came; records of dead waiters are removed."""
    folder = lock_dir() / "queue"
    waiters = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        entry = _read(path)
        if entry is None or not entry.alive():
            path.unlink(missing_ok=True)
        else:
            waiters.append(entry)
    return sorted(waiters, key=lambda h: (h.since, h.job_id))


def queue_position(job_id: str) -> tuple[int, Holder | None] | None:
    """(1-based place in the queue, the job it waits behind) for a queued job, else None."""
    for place, entry in enumerate(waiting(), 1):
        if entry.job_id == job_id:
            return place, holder()
    return None


@contextlib.contextmanager
def machine_lock(job_id: str, *, wait: bool = True, on_queued: Callable[[Holder], None] = lambda h: None,
                 poll_s: float = 2.0) -> Iterator[Holder]:
    """Hold the machine for `job_id` for the duration of the block.

    Busy machine (or others already queued): with `wait`, call `on_queued(holder)` each time the job we wait behind changes
    and wait our turn; without it, raise InputError naming the holder.
    """
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    mine = me(job_id)
    with open(folder / "machine.lock", "a+") as lock:
        if waiting() or not _try_lock(lock):  # jobs already queued go first
            current = _read(folder / "holder.json")
            if not wait:
                who = current.describe() if current else "another job"
                raise InputError(f"another job is training on this machine: {who}",
                                 hint="wait for it to finish, or run without --no-queue to queue behind it")
            _wait_turn(lock, mine, on_queued, poll_s)
        _clear_stale(folder / "holder.json", mine)
        write_json(folder / "holder.json", asdict(mine))
        try:
            yield mine
        finally:
            (folder / "holder.json").unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait_turn(lock, mine: Holder, on_queued: Callable[[Holder], None], poll_s: float) -> None:
    """Register in the queue and take the lock when it is free and no earlier waiter is alive."""
    entry = lock_dir() / "queue" / f"{mine.job_id}.json"
    write_json(entry, asdict(mine))
    told = None
    try:
        while True:
            first = next(iter(waiting()), None)
            if (first is None or first.job_id == mine.job_id) and _try_lock(lock):
                return
            current = _read(lock_dir() / "holder.json") or first
            if current is not None and current.job_id != told:
                told = current.job_id
                on_queued(current)
            time.sleep(poll_s)
    finally:
        entry.unlink(missing_ok=True)


def _clear_stale(path: Path, mine: Holder) -> None:
    """We hold the flock, so a holder record left behind belongs to a process that died."""
    left = _read(path)
    if left is not None and (left.pid, left.host) != (mine.pid, mine.host):
        print(f"cleared a stale machine lock left by {left.describe()}: that process is gone",
              file=sys.stderr)
        path.unlink(missing_ok=True)
