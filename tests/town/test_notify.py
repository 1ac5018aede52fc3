"""Feed events and transition mail, in gt's own line formats (gastown.md §4.1, §5.1, §5.3)."""
import fcntl
import json
import multiprocessing
import re
import threading
from pathlib import Path

import pytest

from gt_finetune.town.discover import load_town
from gt_finetune.town.notify import Notifier, Recipients, append_locked
from gt_finetune.workspace import read_jsonl as read_lines

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
EVENT_KEYS = ["ts", "source", "type", "actor", "payload", "visibility"]
MESSAGE_KEYS = {"id", "from", "to", "subject", "body", "timestamp", "read", "priority", "type", "delivery",
                "thread_id", "reply_to", "pinned"}


@pytest.fixture
def town(tmp_path):
    root = tmp_path / "gt"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"name": "tiny"}')
    return load_town(root, env={})


@pytest.fixture
def gt_log(tmp_path, monkeypatch, fake_bin) -> Path:
    log = tmp_path / "gt-calls.jsonl"
    monkeypatch.setenv("FAKE_GT_LOG", str(log))
    return log


# --- events ----------------------------------------------------------------------------------

def test_event_outside_a_town_goes_to_home(isolated):
    Notifier(town=None, home=isolated, actor="finetune/crew/max").event("ft.progress", {"step": 3, "loss": 1.5})
    raw = (isolated / "events.jsonl").read_text(encoding="utf-8")
    assert raw.endswith("\n") and raw.count("\n") == 1
    line = json.loads(raw)
    assert list(line) == EVENT_KEYS
    assert TS.match(line["ts"])
    assert {k: v for k, v in line.items() if k != "ts"} == {
        "source": "gt_finetune", "type": "ft.progress", "actor": "finetune/crew/max",
        "payload": {"step": 3, "loss": 1.5}, "visibility": "feed"}
    # compact, like Go's json.Marshal
    assert raw.strip() == json.dumps(line, separators=(",", ":"), ensure_ascii=False)
    assert (isolated / "events.jsonl.lock").is_file()


def test_event_in_a_town_goes_to_the_town_feed(town, isolated):
    n = Notifier(town=town, home=isolated)
    assert n.events_path == town.root / ".events.jsonl"
    n.event("ft.stage", {"stage": "corpus", "note": "naïve"})
    n.event("ft.stage", {"stage": "train"})
    lines = read_lines(town.root / ".events.jsonl")
    assert [ln["payload"] for ln in lines] == [{"stage": "corpus", "note": "naïve"}, {"stage": "train"}]
    assert all(ln["actor"] == "gt_finetune" and ln["source"] == "gt_finetune" for ln in lines)
    assert "naïve" in (town.root / ".events.jsonl").read_text(encoding="utf-8")  # not \u-escaped
    assert (town.root / ".events.jsonl.lock").is_file()
    assert not (isolated / "events.jsonl").exists()


# --- mail outside a town ---------------------------------------------------------------------

def test_transition_outside_a_town_writes_a_gt_message(isolated):
    Notifier(town=None, home=isolated, actor="gt_finetune").transition("ft-a1b", "run-3", "ready", "Job ready.\nGo.")
    messages = read_lines(isolated / "mail.jsonl")
    assert len(messages) == 1
    m = messages[0]
    assert set(m) == MESSAGE_KEYS
    assert re.fullmatch(r"msg-[0-9a-f]{12}", m["id"])
    assert TS.match(m["timestamp"])
    assert {k: m[k] for k in MESSAGE_KEYS - {"id", "timestamp"}} == {
        "from": "gt_finetune", "to": "overseer", "subject": "FT_READY: ft-a1b run-3", "body": "Job ready.\nGo.",
        "read": False, "priority": 2, "type": "notification", "delivery": "pending", "thread_id": "",
        "reply_to": "", "pinned": False}


def test_review_mails_each_reviewer_once_with_the_review_request(isolated):
    n = Notifier(town=None, home=isolated,
                 recipients=Recipients(transitions=("overseer", "mayor/"), review=("finetune/witness", "overseer")))
    n.transition("ft-1", "r1", "review", "please look")
    n.review_request("ft-1", "please look")
    n.transition("ft-1", "r1", "active", "started")
    sent = [(m["to"], m["subject"]) for m in read_lines(isolated / "mail.jsonl")]
    assert sent == [("mayor/", "FT_REVIEW: ft-1 r1"),
                    ("finetune/witness", "FT_EVAL_REVIEW: ft-1"), ("overseer", "FT_EVAL_REVIEW: ft-1"),
                    ("overseer", "FT_ACTIVE: ft-1 r1"), ("mayor/", "FT_ACTIVE: ft-1 r1")]
    ids = [m["id"] for m in read_lines(isolated / "mail.jsonl")]
    assert len(set(ids)) == len(ids)


def test_no_transition_recipients_sends_nothing(isolated):
    Notifier(town=None, home=isolated, recipients=Recipients(transitions=())).transition("ft-1", "r", "done", "x")
    assert not (isolated / "mail.jsonl").exists()


# --- mail in a town --------------------------------------------------------------------------

def test_mail_in_a_town_runs_gt_mail_send(town, isolated, gt_log):
    n = Notifier(town=town, home=isolated, recipients=Recipients(review=("finetune/witness",)))
    n.transition("ft-9z", "run-1", "review", "Eval: 0.81 → 0.86\nsee the card")
    n.review_request("ft-9z", "Eval: 0.81 → 0.86\nsee the card")
    calls = read_lines(gt_log)
    assert calls == [
        {"to": "overseer", "subject": "FT_REVIEW: ft-9z run-1", "body": "Eval: 0.81 → 0.86\nsee the card",
         "cwd": str(town.root)},
        {"to": "finetune/witness", "subject": "FT_EVAL_REVIEW: ft-9z", "body": "Eval: 0.81 → 0.86\nsee the card",
         "cwd": str(town.root)},
    ]
    assert not (isolated / "mail.jsonl").exists()


def test_failing_gt_warns_and_carries_on(town, isolated, gt_log, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_GT_FAIL", "1")
    Notifier(town=town, home=isolated).transition("ft-1", "r", "failed", "boom")  # must not raise
    err = capsys.readouterr().err
    assert err == ("warning: mail `FT_FAILED: ft-1 r` to `overseer` was not sent: `gt mail send` exited 1: "
                   "Error: mail router unavailable\n")
    assert not gt_log.exists()
    assert not (isolated / "mail.jsonl").exists()


def test_missing_gt_binary_warns_and_carries_on(town, isolated, tmp_path, capsys):
    missing = str(tmp_path / "no-such-gt")
    Notifier(town=town, home=isolated, gt=missing).mail("overseer", "FT_DONE: ft-1 r", "ok")
    err = capsys.readouterr().err
    assert err.startswith("warning: mail `FT_DONE: ft-1 r` to `overseer` was not sent: ")
    assert "No such file or directory" in err


# --- append_locked ---------------------------------------------------------------------------

def _append_many(path: str, worker: int, count: int, barrier) -> None:
    barrier.wait()
    for i in range(count):
        # lines well over PIPE_BUF, so an unlocked writer could interleave
        append_locked(Path(path), json.dumps({"worker": worker, "i": i, "pad": "x" * 9000}))


def test_concurrent_appends_from_processes_stay_whole(tmp_path):
    path = tmp_path / "feed" / ".events.jsonl"
    ctx = multiprocessing.get_context("fork")  # fcntl is POSIX-only anyway; spawn costs ~2 s of imports
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 50, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    assert lines[-1] == "" and len(lines) == 201
    rows = [json.loads(line) for line in lines[:-1]]
    assert sorted((r["worker"], r["i"]) for r in rows) == [(w, i) for w in range(4) for i in range(50)]
    assert all(len(r["pad"]) == 9000 for r in rows)
    # each worker's lines are in its own order
    for w in range(4):
        assert [r["i"] for r in rows if r["worker"] == w] == list(range(50))
    assert Path(f"{path}.lock").is_file()


def test_append_locked_creates_parents_and_appends(tmp_path):
    path = tmp_path / "a" / "b" / "mail.jsonl"
    append_locked(path, "one")
    append_locked(path, "two")
    assert path.read_text() == "one\ntwo\n"


def test_append_waits_for_the_lock_on_path_dot_lock(tmp_path):
    path = tmp_path / ".events.jsonl"
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as gt's events.Log holds it
        writer = threading.Thread(target=append_locked, args=(path, '{"type":"late"}'))
        writer.start()
        writer.join(timeout=0.3)
        assert writer.is_alive(), "append_locked wrote while another holder had the flock"
        assert not path.exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert path.read_text() == '{"type":"late"}\n'
