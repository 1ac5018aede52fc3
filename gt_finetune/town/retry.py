"""Retry `bd` and `gt` calls through the Dolt server's blips, and only through those.

Both CLIs fail fast while Dolt restarts, is busy or holds a lock (gastown.md §3.1; bd's own
`isRetryableError` lists the same messages). A read that met one of these, or timed out, is safe
to repeat. A write is repeated only when the server cannot have received it (the connection was
refused); a write that timed out may have happened, so it never is, and the caller says how to
check. `GT_FINETUNE_<TOOL>_RETRIES`, `_BACKOFF` and `_TIMEOUT` tune it for operators and tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InputError

# what a CLI prints when the command never reached the server: a write can be sent again
NOT_SENT = ("connection refused", "server is not running", "circuit breaker is open", "too many connections")
# ...when the server turned it away unapplied (a lock, read-only under load): a read can be repeated
REFUSED = ("database is locked", "database is read only")
# ...and when the server went away mid-command: a read can be repeated; a write may have happened
LOST = ("i/o timeout", "connection reset", "broken pipe", "lost connection", "server has gone away", "bad connection")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 3  # tries after the first
    backoff: float = 1.0  # seconds before the first retry, doubled before each next one
    timeout: float = 120.0  # seconds one try may take

    def __post_init__(self):
        if self.retries < 0 or self.backoff < 0 or self.timeout <= 0:
            raise InputError(f"retry policy needs `retries` >= 0, `backoff` >= 0 and `timeout` > 0, got {self}")

    @classmethod
    def from_env(cls, tool: str, **defaults) -> "RetryPolicy":
        """`GT_FINETUNE_<TOOL>_RETRIES` / `_BACKOFF` / `_TIMEOUT` over `defaults` over the class defaults.

        Raises:
            InputError: one of the variables is not a number.
        """
        values = dict(defaults)
        for name, kind in (("retries", int), ("backoff", float), ("timeout", float)):
            var = f"GT_FINETUNE_{tool.upper()}_{name.upper()}"
            raw = os.environ.get(var, "").strip()
            if raw:
                try:
                    values[name] = kind(raw)
                except ValueError:
                    raise InputError(f"`{var}` must be {'a whole number' if kind is int else 'a number'}, "
                                     f"got {raw!r}", hint=f"e.g. `export {var}=3`, or unset it") from None
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The last try of a command: exit code (None when it timed out), output, and how many tries it took."""
    returncode: int | None
    stdout: str
    stderr: str
    tries: int

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def transient_cause(stderr: str, *, write: bool) -> str:
    """The phrase in `stderr` that makes another try worthwhile, or '' when none does."""
    text = stderr.lower()
    return next((phrase for phrase in (NOT_SENT if write else NOT_SENT + REFUSED + LOST) if phrase in text), "")


def may_have_applied(stderr: str) -> bool:
    """The server went away mid-command: a write may have happened although the CLI failed."""
    text = stderr.lower()
    return any(phrase in text for phrase in LOST)


def run(argv: Sequence[str], *, what: str, write: bool, policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep, **kwargs) -> Outcome:
    """Run a command (`subprocess.run` keywords in `kwargs`) and try again while it fails transiently,
    waiting `policy.backoff`, then twice that, and so on; one warning line on stderr per retry
    (`bd list: connection refused; retry 1/3 in 1.0s`). A non-zero exit is returned, not raised.

    Raises:
        OSError: the program cannot be started (e.g. it is not installed).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=policy.timeout, **kwargs)
        except subprocess.TimeoutExpired as exc:
            outcome = Outcome(None, _text(exc.stdout), _text(exc.stderr), attempt)
            cause = "" if write else f"no answer in {policy.timeout:g}s"
        else:
            outcome = Outcome(proc.returncode, proc.stdout, proc.stderr, attempt)
            cause = transient_cause(proc.stderr, write=write) if proc.returncode else ""
        if not cause or attempt > policy.retries:
            return outcome
        delay = policy.backoff * 2 ** (attempt - 1)
        print(f"warning: {what}: {cause}; retry {attempt}/{policy.retries} in {delay:.1f}s", file=sys.stderr)
        sleep(delay)


def _text(output: bytes | str | None) -> str:
    """`TimeoutExpired` keeps captured output as bytes even in text mode."""
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return output or ""
