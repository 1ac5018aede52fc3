"""`gt mail send` through Dolt's blips: sent again only when it never reached the server."""
import stat
from pathlib import Path

import pytest

from gt_finetune.town.discover import load_town
from gt_finetune.town.notify import Notifier

FLAKY_GT = '''#!/usr/bin/env python3
import os, sys, time
count = os.path.join(os.environ["FLAKY_DIR"], "calls")
n = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(n))
if n <= int(os.environ.get("FLAKY_FAILS", "0")):
    print(os.environ["FLAKY_ERROR"], file=sys.stderr)
    sys.exit(1)
if os.environ.get("FLAKY_HANG"):
    time.sleep(float(os.environ["FLAKY_HANG"]))
open(os.path.join(os.environ["FLAKY_DIR"], "sent"), "a").write(sys.argv[3] + "\\n")
'''


@pytest.fixture
def flaky_gt(tmp_path, monkeypatch):
    script = tmp_path / "gt"
    script.write_text(FLAKY_GT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FLAKY_DIR", str(tmp_path))
    monkeypatch.setenv("GT_FINETUNE_GT_BACKOFF", "0.01")
    root = tmp_path / "town"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"name": "tiny"}')
    return Notifier(town=load_town(root, env={}), home=tmp_path / "home", gt=str(script)), tmp_path


def calls(folder: Path) -> int:
    return int((folder / "calls").read_text())


def test_refused_connection_is_retried_with_backoff_then_sent(flaky_gt, monkeypatch, capsys):
    notifier, folder = flaky_gt
    monkeypatch.setenv("FLAKY_FAILS", "2")
    monkeypatch.setenv("FLAKY_ERROR", "Error: dial tcp 127.0.0.1:3307: connect: connection refused")
    notifier.mail("overseer", "FT_DONE: ft-1 r", "ok")
    assert calls(folder) == 3 and (folder / "sent").read_text() == "overseer\n"
    err = capsys.readouterr().err
    assert "warning: gt mail send: connection refused; retry 1/3 in 0.0s" in err
    assert "retry 2/3" in err and "was not sent" not in err


def test_a_failure_after_the_server_got_the_mail_is_not_repeated(flaky_gt, monkeypatch, capsys):
    notifier, folder = flaky_gt
    monkeypatch.setenv("FLAKY_FAILS", "5")
    monkeypatch.setenv("FLAKY_ERROR", "Error: database is locked")  # mid-write: sending again could duplicate
    notifier.mail("overseer", "FT_DONE: ft-1 r", "ok")
    assert calls(folder) == 1
    assert "mail `FT_DONE: ft-1 r` to `overseer` was not sent: `gt mail send` exited 1: Error: database is locked" \
        in capsys.readouterr().err


def test_a_hung_gt_times_out_says_the_mail_may_have_gone_and_is_not_resent(flaky_gt, monkeypatch, capsys):
    notifier, folder = flaky_gt
    monkeypatch.setenv("FLAKY_HANG", "5")
    monkeypatch.setenv("GT_FINETUNE_GT_TIMEOUT", "0.5")
    notifier.mail("overseer", "FT_DONE: ft-1 r", "ok")
    assert calls(folder) == 1
    err = capsys.readouterr().err
    assert "may not have been sent: `gt mail send` gave no answer in 0.5s; check with `gt mail inbox overseer`" in err


def test_notify_env_typos_are_errors_for_people(flaky_gt, monkeypatch):
    notifier, _ = flaky_gt
    monkeypatch.setenv("GT_FINETUNE_GT_RETRIES", "three")
    with pytest.raises(Exception, match="`GT_FINETUNE_GT_RETRIES` must be a whole number, got 'three'"):
        notifier.mail("overseer", "FT_DONE: ft-1 r", "ok")
