"""Run the trainer in its own process and watch it: progress, memory watchdog, pause, cancel.

The job's process stays small and in charge of beads, mail and the feed; the trainer runs in a
child (`python -m gt_finetune.train.worker`, or every rank under torchrun when `processes` > 1)
that gives all its memory back when it exits. The child appends one JSON row per step (and per
checkpoint or epoch) to `metrics.jsonl`; this side tails it.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ExternalError, GTFinetuneError, InputError, Stopped
from ..workspace import is_complete, write_json
from .control import PAUSE, RunControl
from .recipe import TrainManifest, TrainSpec, manifest_of, output_dir

GB = 1024 ** 3
POLL_S = 0.5


class TrainingStopped(Stopped):
    """The trainer saved a checkpoint and stopped because someone (or the watchdog) asked."""

    def __init__(self, action: str, step: int, reason: str):
        super().__init__(f"training {'paused' if action == PAUSE else 'cancelled'} at step {step}: {reason}")
        self.action, self.step, self.reason = action, step, reason


@dataclass(frozen=True, slots=True)
class Watchdog:
    """Ask the trainer to pause before the box runs out of memory (Dolt and live agents share it)."""
    min_available: int  # bytes

    def check(self) -> str | None:
        import psutil

        available = psutil.virtual_memory().available
        if available < self.min_available:
            return (f"memory watchdog: {available / GB:.2f} GB available, below the "
                    f"{self.min_available / GB:.2f} GB floor")
        return None


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """`[train]` in `<home>/config.toml`."""
    min_available_gb: float = 0.5  # the watchdog pauses training when free memory falls below this


def watchdog_for(home: Path) -> Watchdog:
    """From `$GT_FINETUNE_MIN_AVAILABLE_GB`, else `[train] min_available_gb`."""
    from ..config import load_section

    env = os.environ.get("GT_FINETUNE_MIN_AVAILABLE_GB")
    floor = float(env) if env else load_section(home, "train", TrainConfig).min_available_gb
    return Watchdog(min_available=int(floor * GB))


def job_control(home: Path, job_id: str) -> RunControl:
    return RunControl(home / "jobs" / f"{job_id}.run")


def launch_command(request: Path, *, processes: int = 1, torchrun_args: str = "") -> list[str]:
    """The worker's argv: plain Python for one process; torchrun (`--standalone` on one machine,
    or the operator's rendezvous flags for several) otherwise. An argument list, never a shell string.

    Raises:
        InputError: `torchrun_args` holds something other than `--flag[=value]` options.
    """
    module = ["-m", "gt_finetune.train.worker", str(request)]
    extra = shlex.split(torchrun_args)
    bad = [a for a in extra if not a.startswith("--")]
    if bad:
        raise InputError(f"`torchrun_args` takes only --options (e.g. `--nnodes=2 --node_rank=0 "
                         f"--rdzv_endpoint=host:29500`), got `{bad[0]}`")
    if processes <= 1 and not extra:
        return [sys.executable, *module]
    return [sys.executable, "-m", "torch.distributed.run", *(extra or ["--standalone"]),
            f"--nproc_per_node={processes}", *module]


def run_training(spec: TrainSpec, *, dataset_dir: Path, home: Path, control: RunControl, processes: int = 1,
                 torchrun_args: str = "", on_row: Callable[[dict], None] | None = None,
                 watchdog: Watchdog | None = None) -> TrainManifest:
    """Train in a child process (or `processes` torchrun ranks per machine); return the finished run.

    Raises:
        TrainingStopped: paused or cancelled on request; the checkpoint is kept.
        GTFinetuneError: the trainer failed; its own error is printed above.
    """
    out = output_dir(spec, dataset_dir=dataset_dir, home=home)
    if is_complete(out):
        return manifest_of(out)
    work = out.parent / f"{out.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    control.dir.mkdir(parents=True, exist_ok=True)
    _wait_for_previous(control)
    control.clear()  # a request left from an earlier run is not for this one
    (control.dir / "stopped.json").unlink(missing_ok=True)
    (control.dir / "failed.json").unlink(missing_ok=True)
    request = work / "request.json"
    write_json(request, {"spec": asdict(spec), "dataset_dir": str(dataset_dir), "home": str(home),
                         "control_dir": str(control.dir), "supervisor_pid": os.getpid()})
    command = launch_command(request, processes=processes, torchrun_args=torchrun_args)
    if torchrun_args:
        print(f"  on every other machine of this run (shared {home}), start the same ranks with its own "
              f"--node_rank:\n    {shlex.join(command)}", file=sys.stderr)
    (work / "metrics.jsonl").unlink(missing_ok=True)  # the trainer rewrites it from its checkpoint
    tail = _Tail(work / "metrics.jsonl", finished=out / "metrics.jsonl")
    proc = subprocess.Popen(command, start_new_session=True)
    control.set_worker(proc.pid, processes=processes, output=str(out))
    try:
        _watch(proc, tail, control, on_row, watchdog)
    except KeyboardInterrupt:
        print("\n  interrupted: asking the trainer to save a checkpoint and stop (Ctrl-C again to kill it)",
              file=sys.stderr)
        control.request(PAUSE, "interrupted from the keyboard")
        try:
            proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    finally:
        control.clear_worker()
    for row in tail.rows():
        on_row and on_row(row)
    outcome = control.outcome() or {}
    if proc.returncode == 0 and is_complete(out):
        control.clear()
        return manifest_of(out)
    if outcome.get("status") in ("paused", "cancelled"):
        raise TrainingStopped(PAUSE if outcome["status"] == "paused" else "cancel", outcome.get("step", 0),
                              outcome.get("reason", ""))
    failure = control.failure()
    if failure:
        kind = ExternalError if failure["exit_code"] == ExternalError.exit_code else GTFinetuneError
        raise kind(failure["message"], hint=failure["hint"], code=failure["code"])
    raise GTFinetuneError(f"the trainer exited with code {proc.returncode} at step {tail.last_step}; "
                          "its error is printed above",
                          hint="fix the cause, then resume: it continues from the last checkpoint")


def _wait_for_previous(control: RunControl, timeout_s: float = 600) -> None:
    """A trainer left running by a killed job process notices and stops at its next step (it
    checkpoints first); wait for it rather than start a second one on the same checkpoint."""
    previous = control.worker()
    if previous is None:
        return
    print(f"  waiting for the previous trainer (pid {previous['pid']}) to checkpoint and stop…", file=sys.stderr)
    deadline = time.monotonic() + timeout_s
    while control.worker() is not None:
        if time.monotonic() > deadline:
            raise ExternalError(f"a trainer for this job is still running (pid {previous['pid']})",
                                hint=f"stop it with `kill {previous['pid']}`, then resume")
        time.sleep(POLL_S)


def _watch(proc, tail: "_Tail", control: RunControl, on_row, watchdog: Watchdog | None) -> None:
    """Forward progress rows and mind the memory until the child exits (its own manifest records
    its measured peak)."""
    asked = False
    while proc.poll() is None:
        for row in tail.rows():
            on_row and on_row(row)
        reason = watchdog.check() if watchdog and not asked else None
        if reason and control.pending() is None:
            print(f"  {reason}: asking the trainer to pause", file=sys.stderr)
            control.request(PAUSE, reason)
            asked = True
        time.sleep(POLL_S)


class _Tail:
    """New complete lines of the trainer's growing `metrics.jsonl`, from its `start` row on (rows
    before it were copied from the checkpoint and were seen when they happened). A run that ends
    between two polls has already moved its rows to the finished run's `metrics.jsonl` (the same rows
    in the same order): the ones not yet seen are read from there."""

    def __init__(self, path: Path, finished: Path):
        self.path, self.finished = path, finished
        self.offset, self.lines, self.last_step, self.started = 0, 0, 0, False

    def rows(self) -> list[dict]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offset += len(complete)
            lines = complete.splitlines()
        except FileNotFoundError:
            lines = self.finished.read_bytes().splitlines()[self.lines:] if self.finished.is_file() else []
        self.lines += len(lines)
        rows = []
        for line in lines:
            row = json.loads(line) if line.strip() else {}
            self.started = self.started or row.get("kind") == "start"
            if self.started and row:
                self.last_step = row.get("step", self.last_step)
                rows.append(row)
        return rows


def stop_trainer(control: RunControl, action: str, reason: str, *, timeout_s: float = 600) -> bool:
    """Ask a running trainer to checkpoint and stop, and wait until it has; False if none runs.

    Raises:
        ExternalError: it did not stop within `timeout_s` (it is still asked to).
    """
    if control.worker() is None:
        return False
    control.request(action, reason)
    print("  asked the trainer to save a checkpoint and stop; waiting…", file=sys.stderr)
    deadline = time.monotonic() + timeout_s
    while control.worker() is not None:
        if time.monotonic() > deadline:
            raise ExternalError(f"the trainer did not stop within {timeout_s:.0f} s (pid {control.worker()['pid']})",
                                hint="it will stop at its next step; check again with `gt-finetune status`")
        time.sleep(POLL_S)
    return True
