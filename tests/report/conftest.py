"""Real jobs over a tiny random model, run once per test session in one shared workspace.

Fast (about 35 s together on two idle cores): a job whose corpus step fails its size gate, and a
job that really harvests, builds, plans and trains, then fails in eval (the suite var names a
file that is not there) — so the eval sections' "failed" paths are real too. Slow: a second such
job on a larger corpus with other vars, and two jobs that also evaluate (GT-Bench, one item per
family), for the eval tables and the comparisons.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_BEADS = ROOT / "gt_finetune" / "data" / "sample_town" / ".beads" / "backup"
QUICK = ("--var", "calibrate=false", "--var", "checkpoint_every=100")
EVAL_SMALL = ("--var", "bench_items=1", "--var", "held_out_turns=1", "--var", "probe_prompts=2")


@dataclass(frozen=True)
class Job:
    home: Path
    id: str
    returncode: int


def run_job(home: Path, *args: str) -> Job:
    """`gt-finetune run finetune-lora …` in a child process with no town around it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GT_", "BD_", "BEADS_", "FAKE_"))}
    env.update(GT_FINETUNE_HOME=str(home), HOME=str(home.parent / "user"), GT_FINETUNE_NO_PROGRESS="1")
    work = home.parent / "work"
    work.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "gt_finetune", "run", "finetune-lora", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=1200)
    found = re.search(r"^job (ft-[0-9a-z]+):", proc.stderr, re.M)
    assert found, f"no job was opened (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return Job(home=home, id=found.group(1), returncode=proc.returncode)


@pytest.fixture(scope="session")
def jobs_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("report-jobs") / "home"


@pytest.fixture(scope="session")
def early_failed_job(jobs_home, tiny_model) -> Job:
    """Its corpus step fails the size gate: nothing after it has run."""
    job = run_job(jobs_home, "--var", f"base_model={tiny_model()}", "--var", "min_examples=1000000", *QUICK)
    assert job.returncode == 1
    return job


@pytest.fixture(scope="session")
def trained_job(jobs_home, tiny_model) -> Job:
    """Beads only, 4 steps at 0.0005; trained for real, then eval fails (no such suite file)."""
    job = run_job(jobs_home, "--var", f"base_model={tiny_model()}", "--var", f"source={SAMPLE_BEADS}",
                  "--var", "max_steps=4", "--var", f"suite={jobs_home.parent / 'no-such-suite.yaml'}", *QUICK)
    assert job.returncode == 1
    return job


@pytest.fixture(scope="session")
def retrained_job(jobs_home, tiny_model, trained_job) -> Job:
    """The sample town's every source (more records), 6 steps at 0.001; eval fails the same way."""
    job = run_job(jobs_home, "--var", f"base_model={tiny_model()}", "--var", "max_steps=6",
                  "--var", "learning_rate=0.001", "--var", f"suite={jobs_home.parent / 'no-such-suite.yaml'}", *QUICK)
    assert job.returncode == 1
    return job


@pytest.fixture(scope="session")
def evaluated_jobs(jobs_home, tiny_model) -> tuple[Job, Job]:
    """Two jobs that run to review, 4 steps at 0.0005 and 6 at 0.001 (slow: eval generates answers)."""
    common = ("--var", f"base_model={tiny_model()}", *EVAL_SMALL, *QUICK)
    first = run_job(jobs_home, *common, "--var", "max_steps=4")
    second = run_job(jobs_home, *common, "--var", "max_steps=6", "--var", "learning_rate=0.001")
    assert (first.returncode, second.returncode) == (0, 0)
    return first, second
