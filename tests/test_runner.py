"""The runner end to end with cheap stage stand-ins: bead lifecycle, mail, feed, failure, resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gt_finetune import actions
from gt_finetune.beads import EmbeddedStore
from gt_finetune.cli import _history_labels, main
from gt_finetune.jobs import JobRecord

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
import fake_actions  # noqa: E402
from fake_town import make_town  # noqa: E402


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_run_moves_job_ready_active_review_with_mail_and_feed(capsys, isolated):
    calls = fake_actions.install(pytest.MonkeyPatch())
    code, out, err = run_cli(capsys, "run", "finetune-lora", "--var", "max_steps=7")
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    assert job_id.startswith("ft-")
    assert dict(calls) == {"corpus": 1, "dataset": 1, "plan": 1, "train": 1, "eval": 1}
    assert "beads: embedded store at" in err

    code, out, _ = run_cli(capsys, "status", job_id, "--json")
    info = json.loads(out)
    assert info["state"] == "review"
    assert _history_labels(info["history"]) == [
        "ready", "active(corpus)", "active(dataset)", "active(plan)", "active(train)", "active(eval)", "review"]
    assert info["eval_bead"] == f"{job_id}.1"
    assert info["eval_report"]["improved"] is True

    mail = lines(isolated / "mail.jsonl")
    assert [(m["to"], m["subject"].split(":")[0]) for m in mail] == [
        ("overseer", "FT_READY"), ("overseer", "FT_ACTIVE"),
        ("finetune/witness", "FT_EVAL_REVIEW"), ("overseer", "FT_EVAL_REVIEW")]
    assert all(m["subject"].startswith("FT_") and job_id in m["subject"] for m in mail)
    review = mail[-1]["body"]
    assert review.startswith("The tuned model passed 9 of 10 tasks.")
    assert f"bd show {info['eval_bead']}" in review and f"gt-finetune review {job_id} approve --reason" in review

    events = lines(isolated / "events.jsonl")
    steps = [(e["type"], e["payload"]["step"]) for e in events if e["type"].startswith("finetune_step")]
    assert steps == [(t, s) for s in ("corpus", "dataset", "plan", "train", "eval", "review")
                     for t in ("finetune_step_started", "finetune_step_finished")]
    assert all(set(e) == {"ts", "source", "type", "actor", "payload", "visibility"} for e in events)

    train_params = json.loads((Path(JobRecord.load(isolated, job_id).steps["train"].output) / "manifest.json")
                              .read_text())["params"]
    assert train_params["max_steps"] == 7


def test_failed_step_leaves_job_failed_with_resume_command_then_resume_skips_done_steps(capsys, isolated):
    monkeypatch = pytest.MonkeyPatch()
    failing = {"train": "out of memory at step 3"}
    calls = fake_actions.install(monkeypatch, fail_on=failing)
    code, out, err = run_cli(capsys, "run", "finetune-lora")
    assert code == 1
    assert "error: out of memory at step 3" in err
    job_id = JobRecord.load(isolated, next((isolated / "jobs").glob("*.json")).stem, ).job_id
    store = EmbeddedStore(isolated / "beads.db")
    bead = store.show(job_id)
    assert bead.status == "blocked" and "ft:failed" in bead.labels
    assert f"resume: gt-finetune resume {job_id}" in bead.notes
    assert lines(isolated / "mail.jsonl")[-1]["subject"].startswith(f"FT_FAILED: {job_id}")

    failing.clear()
    code, out, err = run_cli(capsys, "resume", job_id)
    assert code == 0, err
    assert dict(calls) == {"corpus": 1, "dataset": 1, "plan": 1, "train": 2, "eval": 1}
    assert "step corpus: done already" in err
    assert store.show(job_id).status == "review"


def test_malformed_formula_gives_one_line_error_and_creates_nothing(capsys, isolated, tmp_path):
    bad = tmp_path / "bad.formula.toml"
    bad.write_text('formula = "bad"\n[[steps]]\nid = "a"\ntitle = "A"\n[[steps]]\nid = "a"\ntitle = "B"\n')
    code, out, err = run_cli(capsys, "run", str(bad))
    assert code == 1
    first = err.strip().splitlines()
    error_line = next(x for x in first if x.startswith("error:"))
    assert str(bad) in error_line and "`steps[1].id`" in error_line and "duplicate step id" in error_line
    assert not (isolated / "jobs").exists()
    assert EmbeddedStore(isolated / "beads.db").list(include_closed=True) == []


def test_formula_without_finetune_actions_is_refused_before_anything_is_created(capsys, isolated, shared):
    path = shared / "fixtures" / "real" / "immortan-town" / ".beads" / "formulas" / "mol-dog-backup.formula.toml"
    code, _, err = run_cli(capsys, "run", str(path))
    assert code == 1
    assert "`steps[0].finetune" in err
    assert not (isolated / "jobs").exists()


def test_unknown_var_is_refused(capsys, isolated):
    fake_actions.install(pytest.MonkeyPatch())
    code, _, err = run_cli(capsys, "run", "finetune-lora", "--var", "max_stesp=3")
    assert code == 1 and "max_stesp" in err
    assert not (isolated / "jobs").exists()


def test_steps_under_gt_formula_run_share_one_job_bead(capsys, isolated):
    """Each step bead is tracked by the workflow root; `step --bead` finds or opens the one job."""
    calls = fake_actions.install(pytest.MonkeyPatch())
    store = EmbeddedStore(isolated / "beads.db")
    root = store.create("finetune-lora: Fine-tune a small local model (5 steps)", issue_type="convoy")
    step_beads = {}
    for step in ("corpus", "dataset", "plan", "train", "eval", "review"):
        step_beads[step] = store.create(f"step {step}").id
        store.add_dependency(root.id, step_beads[step], "tracks")
    jobs = set()
    for step in ("corpus", "dataset", "plan", "train", "eval", "review"):
        code, out, err = run_cli(capsys, "step", step, "--bead", step_beads[step])
        assert code == 0, err
        jobs.add(out.strip())
        assert f"bd close {step_beads[step]}" in err
    assert len(jobs) == 1
    job = store.show(jobs.pop())
    assert f"ft:workflow:{root.id}" in job.labels and job.status == "review"
    assert dict(calls) == {"corpus": 1, "dataset": 1, "plan": 1, "train": 1, "eval": 1}


def test_step_refuses_to_run_before_its_needs(capsys, isolated):
    fake_actions.install(pytest.MonkeyPatch())
    store = EmbeddedStore(isolated / "beads.db")
    lonely = store.create("a step bead with no workflow")
    code, _, err = run_cli(capsys, "step", "train", "--bead", lonely.id)
    assert code == 1
    assert "step `train` needs `plan` to finish first" in err


def test_mail_recipients_come_from_the_formula_vars(capsys, isolated):
    fake_actions.install(pytest.MonkeyPatch())
    code, out, err = run_cli(capsys, "run", "finetune-lora", "--var", "notify=overseer,mayor/",
                             "--var", "reviewers=harbor/witness")
    assert code == 0, err
    mail = lines(isolated / "mail.jsonl")
    assert [(m["to"], m["subject"].split(":")[0]) for m in mail] == [
        ("overseer", "FT_READY"), ("mayor/", "FT_READY"), ("overseer", "FT_ACTIVE"), ("mayor/", "FT_ACTIVE"),
        ("overseer", "FT_REVIEW"), ("mayor/", "FT_REVIEW"), ("harbor/witness", "FT_EVAL_REVIEW")]


def test_kill_during_training_then_resume_does_not_redo_finished_steps(capsys, isolated, tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent / 'fakes')!r}); import fake_actions; "
              "fake_actions.install(); from gt_finetune.cli import main; sys.exit(main(['run', 'finetune-lora']))")
    env = {**os.environ, "FAKE_TRAIN_SLEEP": "60"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = isolated / "train-started"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    job_id = next((isolated / "jobs").glob("*.json")).stem
    assert EmbeddedStore(isolated / "beads.db").show(job_id).status == "in_progress"

    calls = fake_actions.install(pytest.MonkeyPatch())
    code, out, err = run_cli(capsys, "resume", job_id)
    assert code == 0, err
    assert dict(calls) == {"train": 1, "eval": 1}
    assert "step corpus: done already" in err and "step dataset: done already" in err


def test_in_a_town_steps_write_beads_with_bd_mail_with_gt_and_events_to_the_town_feed(
        capsys, isolated, tmp_path, fake_bin, monkeypatch):
    """The `gt formula run` path in a town: root in hq, step beads in the ft rig, all through fakes."""
    calls = fake_actions.install(monkeypatch)
    town, rig = make_town(tmp_path / "gt")
    monkeypatch.setenv("FAKE_GT_LOG", str(tmp_path / "gt-mail.log"))
    monkeypatch.delenv("GT_FINETUNE_HOME")
    from gt_finetune.beads import BdStore

    hq, ft = BdStore(workdir=town), BdStore(workdir=rig)
    ft.set_config("status.custom", "review:wip")
    hq.run("create", "--id=hq-wf-abc12", "--force", "--type=convoy",
           "--title=finetune-lora: Fine-tune a small local model (5 steps)")
    steps = {}
    for step in ("corpus", "dataset", "plan", "train", "eval", "review"):
        steps[step] = ft.create(f"step {step}").id
        hq.add_dependency("hq-wf-abc12", f"external:ft:{steps[step]}", "tracks")

    jobs = set()
    for step in steps:
        code, out, err = run_cli(capsys, "step", step, "--bead", steps[step], "--town", str(town))
        assert code == 0, err
        jobs.add(out.strip())
    assert "beads: town `demo`" in err
    (job_id,) = jobs
    job = ft.show(job_id)
    assert job.status == "review" and "ft:workflow:hq-wf-abc12" in job.labels
    assert (town / ".gt-finetune" / "jobs" / f"{job_id}.json").is_file()
    assert dict(calls) == {"corpus": 1, "dataset": 1, "plan": 1, "train": 1, "eval": 1}
    sent = lines(tmp_path / "gt-mail.log")
    assert [(m["to"], m["subject"].split(":")[0]) for m in sent] == [
        ("overseer", "FT_READY"), ("overseer", "FT_ACTIVE"),
        ("finetune/witness", "FT_EVAL_REVIEW"), ("overseer", "FT_EVAL_REVIEW")]
    assert all(m["cwd"] == str(town) for m in sent)
    feed = lines(town / ".events.jsonl")
    assert sum(e["type"] == "finetune_step_finished" for e in feed) == 6
    bd_calls = [json.loads(x) for x in (rig / ".beads" / "fake-bd.log").read_text().splitlines()]
    assert {c["cwd"] for c in bd_calls} == {str(rig)}
    code, out, err = run_cli(capsys, "status", job_id, "--json", "--town", str(town))
    assert code == 0, err
    assert _history_labels(json.loads(out)["history"]) == [
        "ready", "active(corpus)", "active(dataset)", "active(plan)", "active(train)", "active(eval)", "review"]


def test_size_gate_stops_the_job_with_guidance_unless_forced(capsys, isolated, tmp_path):
    """The real corpus step on a tiny backup: the gate says how much there is and what would add more."""
    monkeypatch = pytest.MonkeyPatch()
    calls = fake_actions.install(monkeypatch)
    monkeypatch.setitem(actions.ACTIONS, "corpus", actions.Action("corpus", actions.corpus_action))
    backup = tmp_path / "backup"
    backup.mkdir()
    rows = [{"id": f"hb-{i}", "title": f"Fix flaky test number {i}", "status": "closed", "issue_type": "bug",
             "close_reason": f"Pinned the clock in test {i} and reran it 200 times without a failure.",
             "created_by": "harbor/polecats/nux"} for i in range(5)]
    (backup / "issues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_cli(capsys, "run", "finetune-lora", "--var", f"source={backup}")
    assert code == 1
    assert "error: you have 5 usable examples" in err and "formula `finetune-lora` needs 50 examples" in err
    assert "hint: harvest more" in err and "--var force=true" in err
    job_id = next((isolated / "jobs").glob("*.json")).stem
    assert EmbeddedStore(isolated / "beads.db").show(job_id).status == "blocked"
    code, out, err = run_cli(capsys, "run", "finetune-lora", "--var", f"source={backup}", "--var", "force=true")
    assert code == 0, err
    assert calls["train"] == 1


def test_history_tells_a_paused_job_from_a_failed_one():
    snap = lambda status, stage="", paused=False, reason="": {"status": status, "stage": stage, "paused": paused,  # noqa: E731
                                                               "close_reason": reason}
    history = [snap("open"), snap("in_progress", "train"), snap("blocked", paused=True), snap("in_progress", "train"),
               snap("blocked"), snap("closed", reason="cancelled: no")]
    assert _history_labels(history) == ["ready", "active(train)", "paused", "active(train)", "failed", "cancelled"]


def test_list_skips_a_stray_file_in_jobs_and_says_so(capsys, isolated):
    fake_actions.install(pytest.MonkeyPatch())
    code, out, _ = run_cli(capsys, "run", "finetune-lora")
    job_id = out.strip().splitlines()[-1]
    (isolated / "jobs" / "notes copy.json").write_text("{}")
    code, out, err = run_cli(capsys, "list")
    assert code == 0 and job_id in out
    assert "warning: skipped" in err and "notes copy.json: job id `notes copy` is not a name" in err


def test_a_failure_that_cannot_be_recorded_still_shows_the_steps_own_error(capsys, isolated, monkeypatch):
    """A full disk fails the checkpoint, then the bead store's write of `failed`: the user sees the
    first error (and that it could not be recorded), not a traceback calling it a bug."""
    import sqlite3

    from gt_finetune.beads import lifecycle

    fake_actions.install(monkeypatch, fail_on={"train": "disk full while writing checkpoint step 8"})
    move = lifecycle.move

    def full_disk(store, bead_id, to, **kw):
        if to == lifecycle.FAILED:
            raise sqlite3.OperationalError("database or disk is full")
        return move(store, bead_id, to, **kw)
    monkeypatch.setattr(lifecycle, "move", full_disk)
    code, _, err = run_cli(capsys, "run", "finetune-lora")
    assert code == 1
    assert "could not record that job" in err and "OperationalError: database or disk is full" in err
    assert "error: disk full while writing checkpoint step 8" in err and "this is a bug" not in err
    assert "resume: gt-finetune resume ft-" in err
