"""The README's main job for real: packaged SmolLM2, sample town, kill during training, resume.

Slow (loads and trains a 135M model on the CPU): run with `pytest -m slow`.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from gt_finetune.cli import _history_labels
from gt_finetune.models import DEFAULT_MODEL, resolve_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def converted_model(tmp_path_factory):
    """Convert the packaged GGUF once per test session."""
    home = tmp_path_factory.mktemp("model-home")
    return resolve_model(DEFAULT_MODEL, home=home)


def cli(*args, home, check=True):
    proc = subprocess.run([sys.executable, "-m", "gt_finetune", *args], capture_output=True, text=True,
                          env={**os.environ, "GT_FINETUNE_HOME": str(home)}, timeout=1200)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_run_killed_in_training_resumes_to_review_with_lower_tuned_loss(isolated, converted_model):
    shutil.copytree(converted_model, isolated / "cache" / "models" / DEFAULT_MODEL)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gt_finetune", "run", "finetune-lora", "--var", "max_steps=12",
         "--var", "checkpoint_every=4", "--var", "calibrate=false",  # calibration: tests/train/test_plan.py
         # CI time on two cores: one GT-Bench item per family, a short forgetting probe, a small held-out split
         "--var", "bench_items=1", "--var", "held_out_turns=1", "--var", "probe_prompts=4",
         "--var", "eval_fraction=0.05"],
        env={**os.environ, "GT_FINETUNE_HOME": str(isolated)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 900
    checkpoints = []
    while not checkpoints and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1)
        checkpoints = list((isolated / "train").glob("*.work/checkpoint/manifest.json"))
    assert checkpoints, proc.communicate()[1].decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    job_id = next((isolated / "jobs").glob("*.json")).stem

    resumed = cli("resume", job_id, home=isolated)
    assert resumed.stdout.strip().splitlines()[-1] == job_id
    assert "step corpus: done already" in resumed.stderr
    assert "step dataset: done already" in resumed.stderr
    assert "resumed training from checkpoint at step" in resumed.stdout + resumed.stderr

    info = json.loads(cli("status", job_id, "--json", home=isolated).stdout)
    assert info["state"] == "review"
    assert info["eval_report"]["tuned_loss"] < info["eval_report"]["base_loss"]
    labels = _history_labels(info["history"])
    assert labels[0] == "ready" and labels[-1] == "review"
    assert [x for x in labels if x.startswith("active")] == [
        "active(corpus)", "active(dataset)", "active(plan)", "active(train)", "active(eval)"]

    mail = [json.loads(x) for x in (isolated / "mail.jsonl").read_text().splitlines()]
    assert [m["subject"].split(":")[0] for m in mail if m["to"] == "overseer"] == ["FT_READY", "FT_ACTIVE",
                                                                                   "FT_EVAL_REVIEW"]
    events = [json.loads(x) for x in (isolated / "events.jsonl").read_text().splitlines()]
    finished = [e["payload"]["step"] for e in events if e["type"] == "finetune_step_finished"]
    assert finished == ["corpus", "dataset", "plan", "train", "eval", "review"]
    report = next((isolated / "eval").glob("*/report.md")).read_text()
    assert "| family | base | base+context | tuned | tuned+context |" in report  # four variants side by side
    assert "## Gate" in report and ("**PASS**" in report or "**FAIL**" in report)
    assert "## Held-out loss" in report and "forgetting probe" in report
