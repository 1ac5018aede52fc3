"""`bd` failing under a job: retried when Dolt blips, a clear error when it does not come back.

Jobs run in a fake town (tests/fakes/bd over a JSON store) with a three-step formula, so each
job costs a dozen `bd` calls; FAKE_BD_FAULTS (see tests/fakes/bd) breaks chosen calls.
"""
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gt_finetune import actions
from gt_finetune.beads import BdStore, lifecycle
from gt_finetune.cli import main
from gt_finetune.errors import ExternalError
from gt_finetune.jobs import FAILED, JobRecord
from gt_finetune.town.retry import RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
import fake_actions  # noqa: E402
from fake_town import make_town  # noqa: E402

REFUSED = "failed to connect to Dolt server at 127.0.0.1:3307: dial tcp 127.0.0.1:3307: connect: connection refused"
DENIED = "Error 1142 (42000): INSERT command denied to user 'ft'@'localhost' for table 'comments'"
TINY_JOB = """
formula = "tiny-job"
type = "workflow"
version = 1
description = "A stand-in training step, a stand-in eval and the real review hand-off: a whole job"

[[steps]]
id = "train"
title = "Train"
[steps.finetune]
action = "train"

[[steps]]
id = "eval"
title = "Evaluate"
needs = ["train"]
[steps.finetune]
action = "eval"

[[steps]]
id = "review"
title = "Hand over for review"
needs = ["eval"]
[steps.finetune]
action = "review"
"""


@pytest.fixture
def town(tmp_path, fake_bin, monkeypatch):
    """A town with the tiny formula and fast retries. Its train step posts a milestone comment
    through bd, as the real trainer does; `faults_in_train` become FAKE_BD_FAULTS right before it."""
    root, rig = make_town(tmp_path / "gt")
    BdStore(workdir=rig).set_config("status.custom", "review:wip")
    monkeypatch.setenv("FAKE_GT_LOG", str(tmp_path / "gt-mail.log"))
    monkeypatch.setenv("GT_FINETUNE_BD_RETRIES", "2")
    monkeypatch.setenv("GT_FINETUNE_BD_BACKOFF", "0.01")
    fake_actions.install(monkeypatch)
    stand_in = actions.ACTIONS["train"].run
    here = SimpleNamespace(root=root, rig=rig, formula=tmp_path / "tiny-job.formula.toml", faults_in_train="")
    here.formula.write_text(TINY_JOB)

    def train(ctx):
        if here.faults_in_train:
            monkeypatch.setenv("FAKE_BD_FAULTS", here.faults_in_train)
        ctx.session.store.comment(ctx.job.job_id, "training: step 4/8, loss 1.93")
        return stand_in(ctx)

    monkeypatch.setitem(actions.ACTIONS, "train", actions.Action("train", train))
    return here


def run_job(capsys, town):
    code = main(["run", str(town.formula), "--town", str(town.root)])
    _, err = capsys.readouterr()
    return code, err


def job_of(home: Path) -> JobRecord:
    """The one job record; every record on disk must parse (never half-written)."""
    paths = sorted((home / "jobs").glob("*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    assert len(records) == 1
    return JobRecord.load(home, records[0]["job_id"])


def bd_calls(rig: Path, name: str) -> int:
    log = [json.loads(line)["argv"] for line in (rig / ".beads" / "fake-bd.log").read_text().splitlines()]
    words = name.split()
    return sum(1 for argv in log if argv[1:1 + len(words)] == words)


def test_transient_bd_failures_are_retried_and_the_job_completes(capsys, isolated, town, monkeypatch):
    rig = town.rig
    monkeypatch.setenv("FAKE_BD_FAULTS", f"show#2=fail:{REFUSED};list#1=fail:database is locked;"
                                         "update#1=fail:Dolt server is not running on port 3307;"
                                         "comments add#1=fail:Error 1040: Too many connections")
    code, err = run_job(capsys, town)
    assert code == 0, err
    job = job_of(isolated)
    assert lifecycle.state_of(BdStore(workdir=rig).show(job.job_id)) == lifecycle.REVIEW
    warnings = [line for line in err.splitlines() if "; retry " in line]
    assert warnings == ["warning: bd show: connection refused; retry 1/2 in 0.0s",
                        "warning: bd update: server is not running; retry 1/2 in 0.0s",
                        "warning: bd comments add: too many connections; retry 1/2 in 0.0s",
                        "warning: bd list: database is locked; retry 1/2 in 0.0s"]


def test_a_permanent_bd_failure_mid_job_fails_it_with_the_reason_and_the_resume_command(
        capsys, isolated, town):
    rig = town.rig
    town.faults_in_train = f"comments add=fail:{DENIED}"
    code, err = run_job(capsys, town)
    assert code == 3
    job = job_of(isolated)
    error = f"`bd comments add {job.job_id} -- 'training: step 4/8, loss 1.93'` failed (exit 1): {DENIED}"
    assert f"error: {error}" in err
    assert "hint: nothing was changed by this command; when `bd doctor` passes, run it again" in err
    assert "retry" not in err  # a refused permission is no blip
    assert bd_calls(rig, "comments add") == 1
    assert job.steps["train"].state == FAILED and job.steps["train"].error == error
    bead = BdStore(workdir=rig).show(job.job_id)
    assert lifecycle.state_of(bead) == lifecycle.FAILED
    assert f"step `train` failed: {error}" in bead.notes and f"resume: gt-finetune resume {job.job_id}" in bead.notes


def test_bd_down_for_good_mid_job_fails_the_local_record_and_says_the_bead_is_stale(capsys, isolated, town):
    town.faults_in_train = f"*=fail:{REFUSED}"
    code, err = run_job(capsys, town)
    assert code == 3
    job = job_of(isolated)
    assert job.steps["train"].state == FAILED
    assert "failed (exit 1) after 3 tries: failed to connect to Dolt server" in job.steps["train"].error
    assert "warning: bd comments add: connection refused; retry 2/2 in 0.0s" in err
    assert f"warning: could not record that job `{job.job_id}` failed: `bd show {job.job_id}` failed" in err
    assert "hint: nothing was changed by this command; the Dolt server is down or busy: check it with " \
           "`gt dolt status`" in err


def test_a_write_that_hangs_times_out_once_and_says_how_to_check(capsys, isolated, town, monkeypatch):
    rig = town.rig
    monkeypatch.setenv("GT_FINETUNE_BD_TIMEOUT", "3")
    town.faults_in_train = "comments add=hang:60"
    code, err = run_job(capsys, town)
    assert code == 3
    job = job_of(isolated)
    assert bd_calls(rig, "comments add") == 1  # a timed-out write is never sent again
    assert job.steps["train"].state == FAILED
    assert (f"did not answer in 3s (in {rig}); it may have added the comment to `{job.job_id}` all the same"
            in job.steps["train"].error)
    assert f"hint: check with `bd comments {job.job_id}` before running it again" in err
    assert lifecycle.state_of(BdStore(workdir=rig).show(job.job_id)) == lifecycle.FAILED


def test_a_read_that_hangs_is_retried_then_times_out(fake_bin, tmp_path, monkeypatch):
    _, rig = make_town(tmp_path / "gt")
    store = BdStore(workdir=rig, retry=RetryPolicy(retries=1, backoff=0.01, timeout=1.5))
    bead = store.create("job", labels=["ft:job"])
    monkeypatch.setenv("FAKE_BD_FAULTS", "show=hang:60")
    with pytest.raises(ExternalError) as err:
        store.show(bead.id)
    assert err.value.message == f"`bd show {bead.id}` did not answer in 1.5s, 2 tries (in {rig})"
    assert "`gt dolt status`" in err.value.hint and "GT_FINETUNE_BD_TIMEOUT" in err.value.hint
    assert err.value.code == "bd_timeout" and bd_calls(rig, "show") == 2


def test_malformed_json_from_bd_create_stops_the_job_before_any_record(capsys, isolated, town, monkeypatch):
    rig = town.rig
    monkeypatch.setenv("FAKE_BD_FAULTS", "create=garbage")
    code, err = run_job(capsys, town)
    assert code == 3
    assert re.search(r"error: `bd create '--title=FT: tiny-job@[\d-]+' .*` printed something that is not JSON: "
                     r"'\{\"id\": \"ft-1\", \"title\": \"FT: tru'; it exited 0, so it probably created the bead: "
                     r"check with `bd list --label=ft:job` before running it again", err), err
    assert "hint: check `bd version`: gt-finetune needs bd ≥ 0.57, which prints JSON under `--json`" in err
    assert bd_calls(rig, "create") == 1
    assert not (isolated / "jobs").exists()
    assert len(BdStore(workdir=rig).list(labels=["ft:job"])) == 1  # what the error told us to check


def test_malformed_json_from_a_read_is_not_retried(fake_bin, tmp_path, monkeypatch):
    _, rig = make_town(tmp_path / "gt")
    monkeypatch.setenv("FAKE_BD_FAULTS", "list=garbage")
    with pytest.raises(ExternalError) as err:
        BdStore(workdir=rig).list(labels=["ft:job"])
    assert err.value.message.startswith("`bd list --limit=0 --label=ft:job` printed something that is not JSON")
    assert "probably" not in err.value.message and err.value.code == "bd_output"
    assert bd_calls(rig, "list") == 1


def test_bd_failing_as_a_step_starts_marks_that_step_failed(capsys, isolated, town):
    town.faults_in_train = f"update=fail:{DENIED}"  # the next move is the eval step's
    code, err = run_job(capsys, town)
    assert code == 3
    job = job_of(isolated)
    assert job.steps["train"].state == "done"
    assert job.steps["eval"].state == FAILED and DENIED in job.steps["eval"].error


def test_a_lost_step_done_comment_does_not_stop_the_job(capsys, isolated, town):
    town.faults_in_train = f"comments add#2=fail:{DENIED}"  # #1 is the milestone, #2 `step train done`
    code, err = run_job(capsys, town)
    assert code == 0, err
    assert f"warning: could not comment on job `{job_of(isolated).job_id}`" in err
