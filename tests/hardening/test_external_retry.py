"""The retry policy shared by `bd` and `gt` calls: what is retried, how often, and what is said."""
import subprocess

import pytest

from gt_finetune.errors import InputError
from gt_finetune.town import retry
from gt_finetune.town.retry import RetryPolicy

REFUSED = "Error: dial tcp 127.0.0.1:3307: connect: connection refused"
LOST = "Error: read tcp 127.0.0.1:51234->127.0.0.1:3307: i/o timeout"
BAD_FLAG = "Error: unknown flag: --bogus"


def scripted(monkeypatch, *answers):
    """subprocess.run answers in turn: a stderr text (exit 1), "" (success) or "hang" (timeout)."""
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        answer = answers[len(calls) - 1]
        if answer == "hang":
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"], output=b"", stderr=b"")
        return subprocess.CompletedProcess(argv, 1 if answer else 0, stdout="[]" if not answer else "", stderr=answer)

    monkeypatch.setattr(retry.subprocess, "run", run)
    return calls


@pytest.mark.parametrize("write, answers, tries, timed_out", [
    (False, (REFUSED, LOST, ""), 3, False),  # a read rides out a restart and a dropped connection
    (True, (REFUSED, REFUSED, ""), 3, False),  # a write that never reached the server is sent again
    (True, (LOST,), 1, False),  # ...but not one that may have happened
    (False, ("hang", ""), 2, False),  # a read that did not answer is asked again
    (True, ("hang",), 1, True),  # a write that did not answer is never repeated
    (False, (BAD_FLAG,), 1, False),  # a mistake is no blip
    (False, (REFUSED, REFUSED, REFUSED, REFUSED), 4, False),  # three retries, then the failure is returned
])
def test_what_is_retried(monkeypatch, capsys, write, answers, tries, timed_out):
    calls = scripted(monkeypatch, *answers)
    slept = []
    done = retry.run(["bd", "x"], what="bd x", write=write, policy=RetryPolicy(retries=3, backoff=1.0, timeout=5),
                     sleep=slept.append)
    assert (done.tries, done.timed_out, len(calls)) == (tries, timed_out, tries)
    assert slept == [1.0, 2.0, 4.0][:tries - 1]
    assert len(capsys.readouterr().err.splitlines()) == tries - 1


def test_one_warning_line_per_retry(monkeypatch, capsys):
    scripted(monkeypatch, REFUSED, "database is locked", "")
    retry.run(["bd", "list"], what="bd list", write=False, policy=RetryPolicy(retries=3, backoff=1.0),
              sleep=lambda s: None)
    assert capsys.readouterr().err.splitlines() == ["warning: bd list: connection refused; retry 1/3 in 1.0s",
                                                    "warning: bd list: database is locked; retry 2/3 in 2.0s"]


def test_policy_from_the_environment(monkeypatch):
    monkeypatch.setenv("GT_FINETUNE_GT_RETRIES", "5")
    monkeypatch.setenv("GT_FINETUNE_GT_BACKOFF", "0.5")
    assert RetryPolicy.from_env("gt", timeout=60) == RetryPolicy(retries=5, backoff=0.5, timeout=60)
    monkeypatch.setenv("GT_FINETUNE_GT_TIMEOUT", "9")
    assert RetryPolicy.from_env("gt", timeout=60).timeout == 9
    monkeypatch.setenv("GT_FINETUNE_GT_RETRIES", "three")
    with pytest.raises(InputError) as err:
        RetryPolicy.from_env("gt")
    assert err.value.message == "`GT_FINETUNE_GT_RETRIES` must be a whole number, got 'three'"


def test_a_write_failing_mid_flight_may_have_been_applied():
    assert retry.may_have_applied(LOST) and not retry.may_have_applied(REFUSED)
    assert retry.transient_cause(REFUSED, write=True) == "connection refused"
    assert retry.transient_cause("database is locked", write=True) == ""
