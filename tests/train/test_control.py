"""Who is training: a trainer's pid counts only while that very process lives."""
import json
import os
import subprocess
import sys
import time

from gt_finetune.train.control import RunControl


def test_worker_is_the_live_process_that_registered(tmp_path):
    control = RunControl(tmp_path / "run")
    control.set_worker(os.getpid(), output="x")
    assert control.worker()["pid"] == os.getpid()


def test_a_reused_pid_is_not_the_trainer(tmp_path):
    control = RunControl(tmp_path / "run")
    control.set_worker(os.getpid())
    info = json.loads((control.dir / "worker.json").read_text())
    info["started_at"] = time.time() - 10 * 365 * 86400  # registered long before this process began
    (control.dir / "worker.json").write_text(json.dumps(info))
    assert control.worker() is None


def test_a_zombie_or_gone_trainer_is_not_alive(tmp_path):
    control = RunControl(tmp_path / "run")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    control.set_worker(child.pid)
    deadline = time.monotonic() + 30
    while control.worker() is not None:  # exited but not reaped yet: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.wait()
    assert control.worker() is None
