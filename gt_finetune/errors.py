"""Errors a person can act on: what is wrong, where, and the next command to run.

Library code raises these; only `cli.py` formats them and picks the exit code.
"""
from __future__ import annotations


class GTFinetuneError(Exception):
    """Base of every error shown to users.

    Args:
        message: one line saying what is wrong, with the value and where.
        hint: the exact next command or change that fixes it, if there is one.
    """

    exit_code = 1
    code = "error"

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InputError(GTFinetuneError):
    """Input the user can fix: a bad var, a malformed formula, an illegal transition."""

    exit_code = 1
    code = "input"


class ExternalError(GTFinetuneError):
    """Something outside is down or failing (`bd`, `gt`, Dolt); retrying may help."""

    exit_code = 3
    code = "external"


class Stopped(GTFinetuneError):
    """Work stopped on request (pause, cancel, the memory watchdog) with its state kept: not a
    failure, but not done either, so scripts and `gt` see a distinct exit code."""

    exit_code = 75  # EX_TEMPFAIL: try again later
    code = "stopped"
