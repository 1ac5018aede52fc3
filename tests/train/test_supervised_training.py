"""The trainer as operators run it: in a child process, killed with -9, paused, stopped by the
memory watchdog, several ranks under torchrun — always ending on the same weights."""
from __future__ import annotations

import json
import os
import random
import signal

import pytest

from gt_finetune.train.control import PAUSE, RunControl
from gt_finetune.train.recipe import IGNORE, TrainSpec
from gt_finetune.train.supervise import TrainingStopped, Watchdog, run_training
from gt_finetune.errors import GTFinetuneError
from gt_finetune.workspace import read_jsonl, read_manifest, write_json, write_jsonl


@pytest.fixture
def dataset_dir(tmp_path):
    rng = random.Random(0)
    examples = []
    for i in range(16):
        ids = [rng.randrange(2000) for _ in range(rng.randint(8, 40))]
        examples.append({"id": f"e{i}", "group": f"g{i}", "input_ids": ids, "labels": [IGNORE] * 4 + ids[4:],
                         "messages": [], "weight": rng.choice([1.0, 0.5])})
    out = tmp_path / "dataset"
    out.mkdir()
    write_jsonl(out / "train.jsonl", examples)
    write_json(out / "manifest.json", {"schema_version": 1, "stage": "dataset", "id": "sha256:tiny",
                                       "spec": {"max_seq_len": 64}})
    return out


def weights(run) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run.path / "adapter" / "adapter_model.safetensors"))


def assert_bit_identical(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def spec_for(model, **overrides) -> TrainSpec:
    values = {"base_model": str(model), "max_steps": 6, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2,
              **overrides}
    return TrainSpec(**values)


def test_kill_9_at_a_random_step_then_resume_gives_bit_identical_weights(tiny_model, dataset_dir, tmp_path,
                                                                         monkeypatch, hold_trainer):
    spec = spec_for(tiny_model("chatml"), max_steps=30, checkpoint_every=3)
    whole = run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "a", control=RunControl(tmp_path / "ca"))
    kill_at = random.Random().randint(4, 15)  # after the first checkpoint, well before the end
    control = RunControl(tmp_path / "cb")

    def kill(row: dict) -> None:
        if row.get("kind") == "step" and row["step"] == kill_at:
            os.killpg(control.worker()["pid"], signal.SIGKILL)

    hold_trainer(kill_at)  # the trainer waits there, so the kill lands at that step however busy the machine
    with pytest.raises(GTFinetuneError, match="exited with code -9"):
        run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "b", control=control, on_row=kill)
    monkeypatch.delenv("GT_KILL_AT")
    rows = []
    resumed = run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "b", control=control, on_row=rows.append)
    start = next(r for r in rows if r.get("kind") == "start")
    assert start["step"] == kill_at // 3 * 3, f"killed at {kill_at}"
    assert_bit_identical(weights(whole), weights(resumed))
    manifest = read_manifest(resumed.path)
    assert manifest["measured"]["peak_rss"] > 50 * 2 ** 20 and (resumed.path / "loss.png").is_file()
    assert manifest["examples"] == 16 and manifest["rows"] < 16  # the trainer packs rows
    assert [r["loss"] for r in read_jsonl(whole.path / "metrics.jsonl") if r.get("kind") == "step"] == \
           [r["loss"] for r in read_jsonl(resumed.path / "metrics.jsonl") if r.get("kind") == "step"]


def test_pause_keeps_a_checkpoint_and_resume_finishes_identically(tiny_model, dataset_dir, tmp_path, monkeypatch,
                                                                   hold_trainer):
    spec = spec_for(tiny_model("chatml"), max_steps=30, checkpoint_every=100)
    whole = run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "a", control=RunControl(tmp_path / "ca"))
    control = RunControl(tmp_path / "cb")

    def pause(row: dict) -> None:
        if row.get("kind") == "step" and row["step"] == 2 and control.pending() is None:
            control.request(PAUSE, "operator asked")

    hold_trainer(3)  # the trainer waits before step 3 for the request: it cannot finish first
    with pytest.raises(TrainingStopped) as stop:
        run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "b", control=control, on_row=pause)
    assert stop.value.action == PAUSE and stop.value.step == 3 and "operator asked" in stop.value.message
    assert control.worker() is None
    control.clear()
    monkeypatch.delenv("GT_KILL_AT")
    resumed = run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "b", control=control)
    assert_bit_identical(weights(whole), weights(resumed))


def test_memory_watchdog_pauses_instead_of_running_the_box_out(tiny_model, dataset_dir, tmp_path):
    control = RunControl(tmp_path / "c")
    with pytest.raises(TrainingStopped, match="memory watchdog"):
        run_training(spec_for(tiny_model("chatml"), max_steps=200), dataset_dir=dataset_dir, home=tmp_path / "h",
                     control=control, watchdog=Watchdog(min_available=2 ** 60))


def test_full_fine_tune_saves_the_whole_model_and_evaluates(tiny_model, dataset_dir, tmp_path):
    from gt_finetune.eval import EvalSpec, evaluate

    run = run_training(spec_for(tiny_model("chatml"), method="full", max_steps=2, learning_rate=1e-4),
                       dataset_dir=dataset_dir, home=tmp_path / "h", control=RunControl(tmp_path / "c"))
    assert (run.path / "model" / "config.json").is_file() and not (run.path / "adapter").exists()
    (dataset_dir / "eval.jsonl").write_text((dataset_dir / "train.jsonl").read_text().splitlines()[0] + "\n")
    result = evaluate(EvalSpec(items_per_family=1, max_new_tokens=4), dataset_dir=dataset_dir, train_dir=run.path,
                      home=tmp_path / "h")
    assert result.base_loss != result.tuned_loss


@pytest.mark.slow
def test_two_ranks_under_torchrun_end_with_identical_weights(tiny_model, dataset_dir, tmp_path):
    run = run_training(spec_for(tiny_model("chatml"), max_steps=4), dataset_dir=dataset_dir, home=tmp_path / "h",
                       control=RunControl(tmp_path / "c"), processes=2)
    manifest = read_manifest(run.path)
    assert manifest["processes"] == 2
    assert len(manifest["rank_checksums"]) == 2 and len(set(manifest["rank_checksums"])) == 1


def test_launch_command_is_an_argument_list_and_refuses_anything_but_options(tmp_path):
    import sys

    from gt_finetune.errors import InputError
    from gt_finetune.train.supervise import launch_command

    request = tmp_path / "request.json"
    assert launch_command(request) == [sys.executable, "-m", "gt_finetune.train.worker", str(request)]
    assert launch_command(request, processes=4)[3:6] == ["--standalone", "--nproc_per_node=4", "-m"]
    multi = launch_command(request, processes=2, torchrun_args="--nnodes=2 --node_rank=1 --rdzv_endpoint=h:29500")
    assert "--standalone" not in multi and "--node_rank=1" in multi
    with pytest.raises(InputError, match="takes only --options"):
        launch_command(request, torchrun_args="--nnodes=2; rm -rf ~")


def test_a_trainer_whose_job_process_is_killed_stops_itself_and_resume_finishes_identically(
        tiny_model, dataset_dir, tmp_path):
    import subprocess
    import sys
    import time

    spec = spec_for(tiny_model("chatml"), max_steps=30, checkpoint_every=100)
    whole = run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "a", control=RunControl(tmp_path / "ca"))
    control = RunControl(tmp_path / "cb")
    script = ("import sys, pathlib; from gt_finetune.train.control import RunControl; "
              "from gt_finetune.train.recipe import TrainSpec; from gt_finetune.train.supervise import run_training; "
              f"run_training(TrainSpec.from_dict({spec_dict(spec)!r}), dataset_dir=pathlib.Path({str(dataset_dir)!r}), "
              f"home=pathlib.Path({str(tmp_path / 'b')!r}), control=RunControl(pathlib.Path({str(control.dir)!r})))")
    job = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    metrics = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (metrics and '"step": 2' in metrics.read_text()):
        found = list((tmp_path / "b" / "train").glob("*.work/metrics.jsonl")) if (tmp_path / "b" / "train").is_dir() else []
        metrics = found[0] if found else None
        time.sleep(0.1)
    trainer = control.worker()
    assert trainer is not None
    job.kill()  # the job's process dies; its trainer is in a session of its own and lives on…
    job.wait()
    deadline = time.monotonic() + 120
    while control.worker() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert control.worker() is None  # …until its next step, where it checkpoints and stops
    assert control.outcome()["status"] == "paused" and "is gone" in control.outcome()["reason"]
    resumed = run_training(spec, dataset_dir=dataset_dir, home=tmp_path / "b", control=control)
    assert_bit_identical(weights(whole), weights(resumed))


def spec_dict(spec: TrainSpec) -> dict:
    from dataclasses import asdict

    return asdict(spec)


def test_rows_of_a_run_that_ends_between_two_polls_are_read_from_the_finished_run(tmp_path):
    """The trainer moves its rows to the finished run and removes its work folder when it ends; a
    short resumed run can do that before the supervisor looks once: no row is lost, none repeated."""
    from gt_finetune.train.supervise import _Tail

    earlier = [{"kind": "step", "step": 1}]  # copied from the checkpoint: seen when it happened
    rows = [{"kind": "start", "step": 1}, {"kind": "step", "step": 2}, {"kind": "step", "step": 3}]
    work, finished = tmp_path / "run.work" / "metrics.jsonl", tmp_path / "run" / "metrics.jsonl"
    work.parent.mkdir()
    work.write_text("".join(json.dumps(r) + "\n" for r in earlier + rows[:2]))
    tail = _Tail(work, finished=finished)
    assert tail.rows() == rows[:2]
    work.unlink()
    write_jsonl(finished, earlier + rows)  # the finished run's own formatting
    assert tail.rows() == rows[2:] and tail.rows() == []
    never_seen = _Tail(tmp_path / "gone" / "metrics.jsonl", finished=finished)
    assert never_seen.rows() == rows and never_seen.last_step == 3
