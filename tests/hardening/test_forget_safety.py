"""`corpus forget --match` keeps no copy of what it forgets, and a hostile pattern cannot hang it.

The pattern given to `--match` is often the secret itself (a leaked password, a customer's name):
after forgetting, no file under the workspace holds it (not `forget.jsonl`, not a manifest, not
`registry.db`), nor does the command's output, yet every later harvest still leaves out records
that hold it. Patterns that backtrack without end are refused within a time limit instead of
hanging `corpus forget` and, once saved, every later harvest.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus
from gt_finetune.errors import InputError
from gt_finetune.workspace import read_jsonl

from kit import time_limit

SECRET = "Ottilie Brandwhistle"  # a name no redaction rule knows: only `forget` can take it out


@pytest.fixture
def backup(tmp_path):
    """A copy of the sample town's beads backup; `plant(text)` adds a bead whose description holds it."""
    folder = tmp_path / "backup"
    shutil.copytree(SAMPLE_TOWN / ".beads" / "backup", folder)
    issues = folder / "issues.jsonl"
    template = json.loads(issues.read_text().splitlines()[0])

    def plant(text: str, n: int) -> None:
        row = {**template, "id": f"hb-plant{n}", "content_hash": f"{n:064x}",
               "description": f"The customer on this ticket is {text}; call them before the retry lands."}
        with issues.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return folder, plant


@pytest.fixture(autouse=True)
def no_hang():
    """A pattern that backtracks for ever fails the test instead of hanging it."""
    with time_limit(30, "a pattern without a limit"):
        yield


def holding(root, text: str) -> list[str]:
    """Every file under `root` whose bytes contain `text` (sqlite journals and temp files too)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_a_forgotten_secret_is_stored_nowhere_and_later_harvests_still_forget_it(backup, isolated, capsys):
    folder, plant = backup
    plant(SECRET, 1)
    spec = CorpusSpec(inputs=(("beads_jsonl", str(folder)),))
    first = build_corpus(spec, home=isolated, quiet=True)
    assert SECRET in (first.path / "records.jsonl").read_text()  # the planted bead is training text now

    assert main(["corpus", "forget", "--match", SECRET, "--yes"]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert holding(isolated, SECRET) == []
    assert holding(isolated, "Brandwhistle") == []  # not even one word of it

    plant(f"Mr {SECRET}", 2)  # the same secret again, in a new bead: the saved rule must still catch it
    plant("someone else entirely", 3)
    again = build_corpus(spec, home=isolated, quiet=True)
    beads = {r["meta"].get("bead_id") for r in read_jsonl(again.path / "records.jsonl")}
    assert "hb-plant3" in beads and not beads & {"hb-plant1", "hb-plant2"}
    assert holding(isolated, "Brandwhistle") == []
    reasons = [json.loads(line)["reason"] for line in (again.path / "rejected.jsonl").read_text().splitlines()]
    assert sum(r.startswith("forgotten") for r in reasons) == 2


def test_the_rule_key_is_private_and_losing_it_stops_harvests_instead_of_leaking(backup, isolated, capsys):
    folder, plant = backup
    plant(SECRET, 1)
    spec = CorpusSpec(inputs=(("beads_jsonl", str(folder)),))
    build_corpus(spec, home=isolated, quiet=True)
    assert main(["corpus", "forget", "--match", "Brandwhistle", "--yes"]) == 0
    keys = [p for p in (isolated / "corpus").iterdir() if p.suffix == ".key"]
    assert len(keys) == 1 and stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    keys[0].unlink()
    plant(SECRET, 2)
    with pytest.raises(InputError, match="key"):  # a rule that cannot be checked must not let records through
        build_corpus(spec, home=isolated, quiet=True)


def test_a_pattern_with_no_match_saves_nothing_and_a_dry_run_writes_nothing(backup, isolated, capsys):
    folder, plant = backup
    plant(SECRET, 1)
    build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(folder)),)), home=isolated, quiet=True)
    before = sorted(p.name for p in (isolated / "corpus").iterdir())
    assert main(["corpus", "forget", "--match", SECRET]) == 1  # without --yes: only says what would go
    _, err = capsys.readouterr()
    assert "nothing removed yet" in err and SECRET not in err
    assert main(["corpus", "forget", "--match", "Zebediah Quill", "--yes"]) == 0
    assert sorted(p.name for p in (isolated / "corpus").iterdir()) == before


@pytest.mark.parametrize("pattern", ["(a|aa)+b", "(aa|a)+%"])
def test_a_catastrophic_pattern_is_refused_within_a_time_limit(backup, isolated, capsys, pattern):
    folder, plant = backup
    plant("a" * 60, 1)
    build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(folder)),)), home=isolated, quiet=True)
    assert main(["corpus", "forget", "--match", pattern, "--yes"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("error: ") and "too long" in err and "Traceback" not in err
    assert not (isolated / "corpus" / "forget.jsonl").exists()


def test_nested_repeats_the_engine_runs_in_linear_time_still_work(backup, isolated, capsys):
    """`(a+)+b` over 60 `a`s is 2**60 steps for Python's `re`; the engine `forget` uses needs a few."""
    folder, plant = backup
    plant("a" * 60, 1)
    build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(folder)),)), home=isolated, quiet=True)
    assert main(["corpus", "forget", "--match", "(a+)+b"]) == 1  # a dry run: it matches (`tab…`), removes nothing
    assert "nothing removed yet" in capsys.readouterr().err


def test_a_saved_catastrophic_rule_fails_the_harvest_fast_instead_of_hanging_it(backup, isolated):
    """A `forget.jsonl` from before rules were hashed holds the pattern itself; it still runs, under the limit."""
    folder, plant = backup
    plant("a" * 60, 1)
    (isolated / "corpus").mkdir(parents=True)
    (isolated / "corpus" / "forget.jsonl").write_text(json.dumps({"match": "(a|aa)+b"}) + "\n")
    code = ("import sys; from pathlib import Path; from gt_finetune.corpus import CorpusSpec, build_corpus\n"
            "from gt_finetune.errors import InputError\n"
            f"try: build_corpus(CorpusSpec(inputs=(('beads_jsonl', {str(folder)!r}),)), home=Path({str(isolated)!r}), quiet=True)\n"
            "except InputError as exc: print(exc.message); sys.exit(1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=25,
                          env={**os.environ, "GT_FINETUNE_HOME": str(isolated)})
    assert done.returncode == 1 and "too long" in done.stdout, done.stderr[-2000:]
