"""`gt-finetune retrain`: growth threshold, cooldown, a busy machine, the planner's gate, staleness in status."""
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gt_finetune import retrain as retrain_module
from gt_finetune.cli import main
from gt_finetune.registry import Registry

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
import fake_actions  # noqa: E402


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def approved_model(capsys, isolated, monkeypatch):
    """A job run on a 100-record corpus whose model was approved, and a planner that says GO."""
    fake_actions.install(monkeypatch)
    monkeypatch.setenv("FAKE_CORPUS_RECORDS", "100")
    code, out, err = run_cli(capsys, "run", "finetune-lora", "--var", "max_steps=7")
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    registry = Registry(isolated)
    registry.register(model_id=f"{job_id}-abc", job_id=job_id, corpus_id="c", dataset_id="d",
                      train_dir=str(isolated / "train"), base_model="tiny")
    registry.set_state(f"{job_id}-abc", "approved", "looks good")
    planned = []
    monkeypatch.setattr(retrain_module, "plan_job", lambda *a, **k: planned.append(a) or SimpleNamespace(
        go=planned_go[0], reason="peak 12 GB > 9 GB budget", suggestion=None))
    planned_go = [True]
    return SimpleNamespace(job_id=job_id, model=f"{job_id}-abc", planned=planned, go=planned_go)


def test_no_model_yet_means_nothing_to_retrain(capsys, isolated):
    code, out, _ = run_cli(capsys, "retrain")
    assert code == 0
    assert out.startswith("no retrain: no approved or deployed model yet")


def test_small_growth_waits_and_says_by_how_much(capsys, isolated, approved_model, monkeypatch):
    monkeypatch.setenv("FAKE_CORPUS_RECORDS", "110")
    code, out, _ = run_cli(capsys, "retrain")
    assert code == 0
    assert out.strip() == (f"no retrain: the corpus grew +10% (100 → 110 records) since model {approved_model.model}; "
                           "retraining waits for +25% ([retrain] min_growth)")
    assert approved_model.planned == []  # the planner is not asked before growth is enough


def test_enough_growth_runs_the_same_formula_and_vars_again_then_cools_down(capsys, isolated, approved_model,
                                                                           monkeypatch):
    monkeypatch.setenv("FAKE_CORPUS_RECORDS", "130")
    code, out, _ = run_cli(capsys, "retrain", "--dry-run")
    assert code == 0 and out.startswith("retrain: the corpus grew +30% (100 → 130 records)") and "(dry run)" in out
    assert len(list((isolated / "jobs").glob("*.json"))) == 1

    code, out, err = run_cli(capsys, "retrain", "--json")
    assert code == 0, err
    decision = json.loads(out)
    assert decision["retrain"] is True and decision["growth"] == pytest.approx(0.3)
    new_job = decision["job_id"]
    assert new_job and new_job != approved_model.job_id
    code, out, _ = run_cli(capsys, "status", new_job, "--json")
    info = json.loads(out)
    assert info["state"] == "review"
    old = json.loads((isolated / "jobs" / f"{approved_model.job_id}.json").read_text())["vars"]
    assert json.loads((isolated / "jobs" / f"{new_job}.json").read_text())["vars"] == old  # max_steps=7 kept
    events = [json.loads(x) for x in (isolated / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "finetune_retrain" and e["payload"]["model"] == approved_model.model for e in events)

    code, out, _ = run_cli(capsys, "retrain")
    assert out.startswith("no retrain: cooling down: the last retrain started 0.0 h ago, the cooldown is 24 h")
    code, out, _ = run_cli(capsys, "retrain", "--cooldown-hours", "0", "--dry-run")
    assert out.startswith("retrain: ")


def test_planner_no_go_blocks_the_retrain_before_any_bead(capsys, isolated, approved_model, monkeypatch):
    monkeypatch.setenv("FAKE_CORPUS_RECORDS", "200")
    approved_model.go[0] = False
    code, out, _ = run_cli(capsys, "retrain")
    assert code == 0
    assert "but the planner says NO-GO for this machine (peak 12 GB > 9 GB budget)" in out
    assert len(list((isolated / "jobs").glob("*.json"))) == 1


def test_busy_machine_skips_without_queueing(capsys, isolated, approved_model, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_CORPUS_RECORDS", "200")
    release = tmp_path / "release"
    release.write_text("hold")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, time; from gt_finetune.queue import machine_lock\n"
        f"with machine_lock('ft-busy'):\n    open({str(tmp_path / 'held')!r}, 'w').close()\n"
        f"    while os.path.exists({str(release)!r}): time.sleep(0.05)\n")])
    try:
        while not (tmp_path / "held").exists():
            assert holder.poll() is None
            time.sleep(0.02)
        code, out, _ = run_cli(capsys, "retrain")
    finally:
        release.unlink()
        holder.wait(timeout=30)
    assert code == 0 and "but ft-busy (pid" in out and "the next check tries again" in out


def test_min_growth_comes_from_config_and_bad_values_are_refused(capsys, isolated, approved_model, monkeypatch):
    monkeypatch.setenv("FAKE_CORPUS_RECORDS", "110")
    (isolated / "config.toml").write_text("[retrain]\nmin_growth = 0.05\n")
    code, out, _ = run_cli(capsys, "retrain", "--dry-run")
    assert out.startswith("retrain: the corpus grew +10%")
    code, _, err = run_cli(capsys, "retrain", "--min-growth", "-1")
    assert code == 1 and "`min_growth` must be a fraction >= 0" in err


def test_status_flags_a_stale_model_with_what_changed(capsys, isolated, approved_model, monkeypatch):
    monkeypatch.setattr("gt_finetune.lineage.staleness", lambda fp: ["formulas/mol-patrol.formula.toml changed"])
    code, out, _ = run_cli(capsys, "status")
    assert (f"stale model {approved_model.model} (approved): formulas/mol-patrol.formula.toml changed; "
            "retrain with `gt-finetune retrain`") in out
    code, out, _ = run_cli(capsys, "status", approved_model.job_id)
    assert f"model: {approved_model.model} approved — STALE: formulas/mol-patrol.formula.toml changed" in out
    code, out, _ = run_cli(capsys, "status", approved_model.job_id, "--json")
    assert json.loads(out)["models"] == [{"id": approved_model.model, "state": "stale", "stored_state": "approved",
                                          "stale": ["formulas/mol-patrol.formula.toml changed"]}]
