"""The planner as operators meet it: `gt-finetune plan`, and a job that refuses to train past
the memory budget unless forced (tiny local model, sample town)."""
import pytest

from gt_finetune.beads import EmbeddedStore
from gt_finetune.cli import main
from gt_finetune.jobs import JobRecord


def tiny_vars(model):
    return ["--var", f"base_model={model}", "--var", "min_examples=5", "--var", "min_tokens=100",
            "--var", "max_steps=2", "--var", "max_seq_len=256", "--var", "calibrate=false"]


def test_plan_prints_go_within_the_budget(tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("GT_FINETUNE_BUDGET_GB", "64")
    assert main(["plan", "finetune-lora", *tiny_vars(tiny_model("chatml")), "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan: ") and ": GO" in out and "peak ≈" in out


@pytest.mark.parametrize("command", ["plan", pytest.param("run", marks=pytest.mark.slow)])
def test_a_budget_below_the_estimate_refuses_with_a_config_that_fits(command, tiny_model, monkeypatch, capsys,
                                                                     isolated):
    monkeypatch.setenv("GT_FINETUNE_BUDGET_GB", "0.5")  # 16 packed rows of 256 tokens need more
    argv = [command, "finetune-lora", *tiny_vars(tiny_model("chatml")), "--var", "batch_size=16"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: training `" in err and "more than" in err and "--force" in err
    assert "hint: pass `--var batch_size=" in err or "free memory" in err
    if command == "run":
        job_id = next((isolated / "jobs").glob("*.json")).stem
        assert EmbeddedStore(isolated / "beads.db").show(job_id).status == "blocked"
        assert JobRecord.load(isolated, job_id).steps["train"].state == "pending"


@pytest.mark.slow
def test_force_runs_past_the_planner(tiny_model, monkeypatch, capsys, isolated):
    monkeypatch.setenv("GT_FINETUNE_BUDGET_GB", "0.5")
    monkeypatch.setenv("GT_FINETUNE_NO_PROGRESS", "1")
    assert main(["run", "finetune-lora", *tiny_vars(tiny_model("chatml")), "--var", "batch_size=16", "--force"]) == 0
    job_id = capsys.readouterr().out.strip().splitlines()[-1]
    record = JobRecord.load(isolated, job_id)
    assert record.steps["plan"].summary.startswith("NO-GO, FORCED")
    assert "measured vs" in record.steps["train"].summary and "planned" in record.steps["train"].summary
    assert EmbeddedStore(isolated / "beads.db").show(job_id).status == "review"
