"""What an operator sees while a model trains: a bar with an honest ETA on a terminal, a line
every N steps elsewhere, feed events every N steps and milestone notes on the job bead.

The ETA comes from the measured duration of recent steps (the last 10), so it settles after the
first slow steps and follows the machine when agents start competing for it.
"""
from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable

WINDOW = 10


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class TrainProgress:
    """Called with each row the trainer logs (`start`, `step`, `checkpoint`, `epoch`)."""

    def __init__(self, *, every: int, event: Callable[[dict], None], milestone: Callable[[str], None],
                 stream=None):
        self.every, self.event, self.milestone = max(1, every), event, milestone
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() and not os.environ.get("GT_FINETUNE_NO_PROGRESS")
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.last_elapsed: float | None = None
        self.last_row: dict = {}

    def __call__(self, row: dict) -> None:
        kind = row.get("kind", "step")
        if kind == "start":
            self.last_elapsed = None  # a (re)started trainer counts time from zero again
            if row["step"]:
                self._line(f"train resumed at step {row['step']}/{row['max_steps']}")
        elif kind == "step":
            self._step(row)
        elif kind == "checkpoint":
            self.milestone(f"checkpoint saved at step {row['step']}")
        elif kind == "epoch":
            self.milestone(f"epoch {row['epoch']} done at step {row['step']} "
                           f"(loss {self.last_row.get('loss', float('nan')):.4f})")

    def eta(self, step: int, max_steps: int) -> float | None:
        if not self.recent:
            return None
        return sum(self.recent) / len(self.recent) * (max_steps - step)

    def _step(self, row: dict) -> None:
        if self.last_elapsed is not None and row["elapsed_s"] >= self.last_elapsed:
            self.recent.append(row["elapsed_s"] - self.last_elapsed)
        elif self.last_elapsed is None and row["elapsed_s"] > 0:
            self.recent.append(row["elapsed_s"])
        self.last_elapsed, self.last_row = row["elapsed_s"], row
        step, total = row["step"], row["max_steps"]
        per_step = sum(self.recent) / len(self.recent) if self.recent else 0.0
        eta = self.eta(step, total) or 0.0
        tokens_s = row["trained_tokens"] / per_step if per_step else 0.0
        text = (f"step {step}/{total} loss {row['loss']:.4f} · {per_step:.2f} s/step · "
                f"{tokens_s:,.0f} trained tokens/s · ETA {duration(eta)}")
        if self.bar:
            filled = round(24 * step / total)
            end = "\n" if step == total else ""
            self.stream.write(f"\r  train ▕{'█' * filled}{'░' * (24 - filled)}▏ {text}\x1b[K{end}")
            self.stream.flush()
        elif step % self.every == 0 or step == total:
            self._line(f"train {text}")
        if step % self.every == 0 or step == total:
            self.event({"step": step, "max_steps": total, "loss": row["loss"], "tokens_per_s": round(tokens_s, 1),
                        "eta_s": round(eta), "message": f"step {step}/{total} loss={row['loss']:.4f} "
                                                        f"ETA {duration(eta)}"})

    def _line(self, text: str) -> None:
        if self.bar:
            self.stream.write("\n")
        print(f"  {text}", file=self.stream, flush=True)
