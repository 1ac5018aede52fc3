"""One job per machine: the lock, the queue, `--no-queue`, stale locks, and `status` after a kill."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gt_finetune import queue as machine
from gt_finetune.beads import EmbeddedStore
from gt_finetune.cli import main

FAKES = Path(__file__).parent / "fakes"
RUN_WITH_FAKE_STAGES = (f"import sys; sys.path.insert(0, {str(FAKES)!r}); import fake_actions; fake_actions.install(); "
                        "from gt_finetune.cli import main; sys.exit(main(['run', 'finetune-lora']))")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def wait_for(predicate, what, proc=None, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended while waiting for {what}: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def hold_machine(job_id: str, release: Path) -> subprocess.Popen:
    """Another process holding the machine until `release` disappears."""
    release.write_text("hold")
    script = (f"import os, time; from gt_finetune.queue import machine_lock\n"
              f"with machine_lock({job_id!r}):\n"
              f"    while os.path.exists({str(release)!r}): time.sleep(0.05)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    wait_for(lambda: machine.holder() is not None, "the holder to take the lock", proc)
    return proc


def test_lock_is_held_for_the_block_and_released_after(isolated):
    assert machine.holder() is None
    with machine.machine_lock("ft-one") as me:
        held = machine.holder()
        assert held is not None and (held.job_id, held.pid) == ("ft-one", os.getpid()) == (me.job_id, me.pid)
    assert machine.holder() is None


def test_no_queue_refuses_before_any_bead_exists(capsys, isolated, tmp_path):
    holder = hold_machine("ft-hold", tmp_path / "release")
    try:
        code, _, err = run_cli(capsys, "run", "finetune-lora", "--no-queue")
        with pytest.raises(Exception, match="another job is training on this machine: ft-hold"):
            with machine.machine_lock("ft-two", wait=False):
                pass
    finally:
        (tmp_path / "release").unlink()
        holder.wait(timeout=30)
    assert code == 1
    assert "error: another job is training on this machine: ft-hold (pid" in err
    assert "run without --no-queue to queue behind it" in err
    assert not (isolated / "jobs").exists()


def test_second_run_queues_with_bead_ready_and_a_note_then_runs_when_the_machine_frees(capsys, isolated, tmp_path):
    holder = hold_machine("ft-hold", tmp_path / "release")
    runner = subprocess.Popen([sys.executable, "-c", RUN_WITH_FAKE_STAGES], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: bool(machine.waiting()), "the job to queue", runner)
        job_id = machine.waiting()[0].job_id
        wait_for(lambda: "queued behind" in EmbeddedStore(isolated / "beads.db").show(job_id).notes,
                 "the queue note", runner)
        code, out, _ = run_cli(capsys, "status", job_id, "--json")
        info = json.loads(out)
        assert info["state"] == "ready"
        assert info["machine"] == {"queued": 1, "behind": "ft-hold"}
        assert "queued behind ft-hold: one job trains on this machine at a time" in info["notes"]
        code, out, _ = run_cli(capsys, "status", job_id)
        assert "queued: number 1 in line, behind ft-hold" in out
    finally:
        (tmp_path / "release").unlink()
        holder.wait(timeout=30)
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err[-3000:]
    assert "queued behind ft-hold" in err
    code, out, _ = run_cli(capsys, "status", job_id, "--json")
    info = json.loads(out)
    assert info["state"] == "review" and info["machine"] is None
    events = [json.loads(x) for x in (isolated / "events.jsonl").read_text().splitlines()]
    assert [e["payload"]["behind"] for e in events if e["type"] == "finetune_queued"] == ["ft-hold"]


def test_waiters_take_the_machine_in_the_order_they_came(isolated, tmp_path):
    holder = hold_machine("ft-hold", tmp_path / "release")
    order = tmp_path / "order"
    script = ("import sys, time; from gt_finetune.queue import machine_lock\n"
              "with machine_lock(sys.argv[1], poll_s=0.05):\n"
              f"    open({str(order)!r}, 'a').write(sys.argv[1] + '\\n'); time.sleep(0.2)\n")
    waiters = []
    for job_id in ("ft-first", "ft-second", "ft-third"):
        waiters.append(subprocess.Popen([sys.executable, "-c", script, job_id], stderr=subprocess.PIPE, text=True))
        wait_for(lambda: job_id in [w.job_id for w in machine.waiting()], f"{job_id} to queue", waiters[-1])
    (tmp_path / "release").unlink()
    holder.wait(timeout=30)
    for proc in waiters:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert order.read_text().split() == ["ft-first", "ft-second", "ft-third"]


def test_lock_left_by_a_killed_job_is_detected_and_cleared(capsys, isolated, tmp_path):
    holder = hold_machine("ft-dead", tmp_path / "release")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert json.loads((machine.lock_dir() / "holder.json").read_text())["job_id"] == "ft-dead"
    assert machine.holder() is None  # its process is gone, so nobody holds the machine
    with machine.machine_lock("ft-next", wait=False):
        assert machine.holder().job_id == "ft-next"
    err = capsys.readouterr().err
    assert "cleared a stale machine lock left by ft-dead (pid" in err and "that process is gone" in err


def test_status_says_interrupted_when_the_job_process_was_killed(capsys, isolated):
    env = {**os.environ, "FAKE_TRAIN_SLEEP": "60"}
    proc = subprocess.Popen([sys.executable, "-c", RUN_WITH_FAKE_STAGES], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (isolated / "train-started").exists(), "training to start", proc)
    job_id = next((isolated / "jobs").glob("*.json")).stem
    code, out, _ = run_cli(capsys, "status", job_id, "--json")
    assert json.loads(out)["machine"] is None  # running: nothing to flag
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, out, _ = run_cli(capsys, "status", job_id, "--json")
    info = json.loads(out)
    assert info["state"] == "active"
    assert info["machine"] == {"interrupted": True, "pid": proc.pid, "host": info["machine"]["host"]}
    code, out, _ = run_cli(capsys, "status", job_id)
    assert f"interrupted: the process running it (pid {proc.pid}" in out
    assert f"resume with `gt-finetune resume {job_id}`" in out
    code, out, _ = run_cli(capsys, "list")
    assert "interrupted" in out.splitlines()[1]
