"""A disk that fills up while a checkpoint is written: the last checkpoint stays whole and loadable,
nothing partial takes its name, and the error says how much is free and what to do."""
import errno
import json
import subprocess
import sys
import textwrap
from dataclasses import asdict

import pytest

from gt_finetune.errors import ExternalError
from gt_finetune.train import TrainSpec, checkpoint, supervise, worker
from gt_finetune.train.control import RunControl

# a real size limit: RLIMIT_FSIZE makes writes past the limit fail with EFBIG (SIGXFSZ ignored). Under
# 32 KB the 64 KB weights of step 8 cannot be written (safetensors fails); under 100 KB they can, but
# not the optimizer state (torch.save fails); the small files before them can, each time.
SAVE_UNDER_A_LIMIT = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    import torch
    from gt_finetune.errors import ExternalError
    from gt_finetune.train.checkpoint import checkpoint_ready, load_checkpoint, save_checkpoint

    def parts():
        model = torch.nn.Linear(128, 128)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    def train_step():
        model(torch.randn(2, 128)).sum().backward()
        optimizer.step()
        scheduler.step()

    path = Path(sys.argv[1])
    torch.manual_seed(0)
    model, optimizer, scheduler = parts()
    train_step()
    save_checkpoint(path, step=4, metrics=[{"step": 4}], model=model, optimizer=optimizer, scheduler=scheduler)
    at_step_4 = model.weight.detach().clone()
    train_step()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    out = {"errors": []}
    for limit in (32 * 1024, 100 * 1024):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        try:
            save_checkpoint(path, step=8, metrics=[{"step": 8}], model=model, optimizer=optimizer,
                            scheduler=scheduler)
            out["errors"].append(None)
        except ExternalError as exc:
            out["errors"].append({"message": exc.message, "hint": exc.hint, "code": exc.code,
                                  "cause": type(exc.__cause__).__name__})
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    out["ready"] = checkpoint_ready(path)
    model, optimizer, scheduler = parts()
    out["step"], _ = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    out["weights_of_step_4"] = torch.equal(model.weight, at_step_4)
    print(json.dumps(out))
""")


def test_a_file_size_limit_mid_checkpoint_keeps_the_last_one_loadable(tmp_path):
    path = tmp_path / "run.work" / "checkpoint"
    proc = subprocess.run([sys.executable, "-c", SAVE_UNDER_A_LIMIT, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert [e["cause"] for e in out["errors"]] == ["SafetensorError", "OSError"]  # weights, then optimizer state
    for error in out["errors"]:
        assert error["message"].startswith(f"file size limit reached while writing checkpoint step 8 to {path}: ")
        assert error["message"].endswith(" free; the checkpoint of step 4 is intact")
        assert error["hint"] == f"free space on the disk holding {path.parent}, then resume the job: training " \
                                "goes on from step 4"
        assert error["code"] == "disk_full"
    assert out["ready"] and out["step"] == 4 and out["weights_of_step_4"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint", "rng"]  # nothing partial, nothing aside


@pytest.fixture
def tiny():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return dict(model=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1))


def test_enospc_as_the_manifest_is_written_leaves_the_last_checkpoint_in_place(tmp_path, tiny, monkeypatch):
    path = tmp_path / "run.work" / "checkpoint"
    checkpoint.save_checkpoint(path, step=4, metrics=[], **tiny)
    real_write_json = checkpoint.write_json

    def disk_full(target, obj, **kw):
        if target.name == "manifest.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        real_write_json(target, obj, **kw)

    monkeypatch.setattr(checkpoint, "write_json", disk_full)
    with pytest.raises(ExternalError) as err:
        checkpoint.save_checkpoint(path, step=8, metrics=[], **tiny)
    assert err.value.message.startswith(f"disk full while writing checkpoint step 8 to {path}: ")
    assert err.value.message.endswith("free; the checkpoint of step 4 is intact") and err.value.exit_code == 3
    assert checkpoint.read_manifest(path)["step"] == 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint", "rng"]


def test_a_save_killed_between_its_two_renames_gets_the_last_checkpoint_back(tmp_path, tiny):
    path = tmp_path / "run.work" / "checkpoint"
    checkpoint.save_checkpoint(path, step=4, metrics=[], **tiny)
    path.rename(path.parent / ".checkpoint.previous")  # the state a kill right after setting it aside leaves
    assert checkpoint.checkpoint_ready(path)
    assert checkpoint.read_manifest(path)["step"] == 4
    checkpoint.save_checkpoint(path, step=8, metrics=[], **tiny)
    assert checkpoint.read_manifest(path)["step"] == 8
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint", "rng"]


def test_the_trainers_disk_full_error_reaches_the_job_process(tmp_path, monkeypatch):
    """The worker hands its error to the supervisor through the control folder, so the job's bead
    says `disk full …`, not just that the trainer exited 1."""
    control = RunControl(tmp_path / "ft-abc.run")
    spec = TrainSpec(base_model="tiny")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"spec": asdict(spec), "dataset_dir": "d", "home": str(tmp_path),
                                   "control_dir": str(control.dir)}))
    error = ExternalError("disk full while writing checkpoint step 8 to /w/checkpoint: 0 bytes free; the checkpoint "
                          "of step 4 is intact", hint="free space on the disk holding /w, then resume the job",
                          code="disk_full")

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(worker, "train", full)
    assert worker.main([str(request)]) == 1
    handed = control.failure()
    assert handed == {"message": error.message, "hint": error.hint, "code": "disk_full", "exit_code": 3}

    child = f"from pathlib import Path; from gt_finetune.train.control import RunControl; " \
            f"RunControl(Path({str(control.dir)!r})).failed({handed!r}); raise SystemExit(1)"
    monkeypatch.setattr(supervise, "output_dir", lambda *a, **k: tmp_path / "train" / "run")
    monkeypatch.setattr(supervise, "launch_command", lambda *a, **k: [sys.executable, "-c", child])
    with pytest.raises(ExternalError) as err:
        supervise.run_training(spec, dataset_dir=tmp_path, home=tmp_path, control=control)
    assert (err.value.message, err.value.hint, err.value.code) == (error.message, error.hint, "disk_full")
