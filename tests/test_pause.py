"""Pause and cancel a real training job (tiny local model) from another process, as an operator
would: the trainer checkpoints and stops, the bead says so, and `resume` finishes the job."""
import json
import os
import subprocess
import sys
import time

import pytest

from gt_finetune.beads import EmbeddedStore
from gt_finetune.cli import main
from gt_finetune.jobs import JobRecord


def start_job(isolated, model, max_steps):
    argv = ["run", "finetune-lora", "--var", f"base_model={model}", "--var", f"max_steps={max_steps}",
            "--var", "min_examples=5", "--var", "min_tokens=100", "--var", "checkpoint_every=1000",
            "--var", "max_seq_len=256"]
    script = f"import sys; from gt_finetune.cli import main; sys.exit(main({argv!r}))"
    return subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "GT_FINETUNE_NO_PROGRESS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_training(isolated, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for worker in (isolated / "jobs").glob("*.run/worker.json"):
            metrics = list((isolated / "train").glob("*.work/metrics.jsonl"))
            if metrics and '"kind": "step"' in metrics[0].read_text().replace('"kind":"step"', '"kind": "step"'):
                return worker.parent.name.removesuffix(".run")
        time.sleep(0.2)
    raise AssertionError(f"the job never started training: {proc.communicate()[1][-3000:]}")


@pytest.mark.slow
def test_pause_then_resume_finishes_the_job(tiny_model, isolated, capsys, monkeypatch, hold_trainer):
    hold_trainer(2)  # the trainer waits before step 2 for the pause: it cannot finish first
    proc = start_job(isolated, tiny_model("chatml"), max_steps=60)
    job_id = wait_until_training(isolated, proc)
    assert main(["status", job_id]) == 0
    assert "training now (pid" in capsys.readouterr().out
    assert main(["pause", job_id, "--reason", "agents need the memory"]) == 0
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "stopped: training paused at step" in err and f"gt-finetune resume {job_id}" in err
    bead = EmbeddedStore(isolated / "beads.db").show(job_id)
    assert bead.status == "blocked" and "ft:paused" in bead.labels and "agents need the memory" in bead.notes
    assert (next((isolated / "train").glob("*.work")) / "checkpoint" / "manifest.json").is_file()
    mail = [json.loads(x) for x in (isolated / "mail.jsonl").read_text().splitlines()]
    assert any(m["subject"].startswith(f"FT_PAUSED: {job_id}") for m in mail)
    capsys.readouterr()
    assert main(["status", job_id]) == 0
    out = capsys.readouterr().out
    assert f"{job_id}  paused" in out and "agents need the memory" in out
    assert main(["pause", job_id]) == 1  # nothing runs now
    assert "not training right now" in capsys.readouterr().err

    monkeypatch.delenv("GT_KILL_AT")
    assert main(["resume", job_id]) == 0
    err = capsys.readouterr().err
    assert "train resumed at step" in err
    bead = EmbeddedStore(isolated / "beads.db").show(job_id)
    assert bead.status == "review" and "ft:paused" not in bead.labels
    record = JobRecord.load(isolated, job_id)
    assert all(step.state == "done" for step in record.steps.values() if step.action != "review")


@pytest.mark.slow
def test_cancel_stops_the_trainer_and_closes_the_bead(tiny_model, isolated, capsys, hold_trainer):
    hold_trainer(2)
    proc = start_job(isolated, tiny_model("chatml"), max_steps=60)
    job_id = wait_until_training(isolated, proc)
    assert main(["cancel", job_id, "--reason", "wrong source"]) == 0
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75 and "training cancelled" in err
    bead = EmbeddedStore(isolated / "beads.db").show(job_id)
    assert bead.status == "closed" and bead.close_reason.startswith("cancelled: wrong source")
