"""What several hardening tests share: a time limit that turns a hang into a failure, and a job
that only harvests."""
import contextlib
import signal

CORPUS_JOB = """
formula = "corpus-job"
type = "workflow"
version = 1
description = "Just the harvest, from the inputs in `source`"

[vars.source]
description = "kind:location pairs"
required = true

[[steps]]
id = "corpus"
title = "Harvest the corpus"
[steps.finetune]
action = "corpus"
source = "{{source}}"
min_examples = "1"
force = "true"
"""


class Hang(BaseException):
    """Not an OSError (as TimeoutError is), so no `except OSError` in the code under test swallows it."""


@contextlib.contextmanager
def time_limit(seconds: int, what: str = "the code under test"):
    """Generous: this is no timing assertion, only a hang (a FIFO, a backtracking regex) made a failure."""
    def expired(*_):
        raise Hang(f"{what} still running after {seconds} s: it hangs")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
