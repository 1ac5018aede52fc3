"""The town's event feed is a file any agent can replace: a symlink or a FIFO there is refused
with a warning, never written through and never waited on; the job goes on."""
import os

import pytest

from gt_finetune.town.discover import load_town
from gt_finetune.town.notify import Notifier

from kit import time_limit


@pytest.fixture
def town(tmp_path):
    root = tmp_path / "town"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"name": "tiny"}')
    return load_town(root, env={})


@pytest.mark.parametrize("what", ["feed", "lock"])
def test_a_feed_symlink_is_not_written_through(town, tmp_path, capsys, what):
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=/usr/bin\n")
    link = town.root / (".events.jsonl" if what == "feed" else ".events.jsonl.lock")
    link.symlink_to(victim)
    Notifier(town=town, home=tmp_path / "home").event("finetune_step", {"step": "corpus"})
    assert victim.read_text() == "export PATH=/usr/bin\n" and link.is_symlink()
    err = capsys.readouterr().err
    assert "not a regular file: refusing to append" in err and "was not written" in err


def test_a_feed_fifo_is_not_waited_on(town, tmp_path, capsys):
    os.mkfifo(town.root / ".events.jsonl")
    with time_limit(20, "appending to the feed"):
        Notifier(town=town, home=tmp_path / "home").event("finetune_step", {"step": "corpus"})
    assert "not a regular file" in capsys.readouterr().err


def test_a_regular_feed_gets_the_line(town, tmp_path):
    Notifier(town=town, home=tmp_path / "home").event("finetune_step", {"step": "corpus"})
    assert '"type":"finetune_step"' in (town.root / ".events.jsonl").read_text()
