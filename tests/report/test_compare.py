"""`gt-finetune compare <ft-a> <ft-b>`: what changed between two jobs, in words and as JSON."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from gt_finetune.cli import main
from gt_finetune.jobs import JobRecord
from gt_finetune.report.compare import changes, compare_jobs
from gt_finetune.report.gather import gather_job
from gt_finetune.session import open_session
from gt_finetune.workspace import read_manifest


def compare(capsys, home, *argv) -> tuple[int, str, str]:
    code = main(["compare", *argv, "--home", str(home)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # a second training run: about 15 s more on two idle cores, much more on a busy box
def test_two_trained_jobs_name_the_vars_the_corpus_and_the_loss_that_changed(capsys, trained_job, retrained_job):
    code, out, err = compare(capsys, trained_job.home, trained_job.id, retrained_job.id)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"A: {trained_job.id} finetune-lora@") and lines[0].endswith("(failed)")
    assert "  changed: max_steps 4 → 6" in lines
    assert "  changed: learning_rate 0.0005 → 0.001" in lines
    assert sum("changed: max_steps" in x for x in lines) == 1  # the spec's max_steps is the var's doing
    a, b = (read_manifest(JobRecord.load(j.home, j.id).output_of("corpus")) for j in (trained_job, retrained_job))
    grown = {s: b["counts"]["by_source"].get(s, 0) - a["counts"]["by_source"].get(s, 0)
             for s in b["counts"]["by_source"]}
    by = ", ".join(f"{s} {n:+d}" for s, n in grown.items() if n)
    assert (f"  corpus: {b['counts']['records'] - a['counts']['records']:+d} records ({by}); "
            f"{a['id']} → {b['id']}") in lines
    assert any(re.fullmatch(r"  final training loss \d+\.\d{4} → \d+\.\d{4} \([+-]\d+\.\d{4}\)", x) for x in lines)

    for row in (r"\* config var max_steps +4 +6", r"\* config spec learning_rate +0\.0005 +0\.001",
                r"\* train steps +4 +6", r"  eval pass rate tuned\+context +- +-"):  # neither got through eval
        assert re.search(f"^{row}$", out, re.M), row
    assert re.search(r"^  config: \d+ more values the same in both", out, re.M)


def test_json_has_every_row_with_none_where_a_job_lacks_the_stage(capsys, trained_job, early_failed_job):
    code, out, err = compare(capsys, trained_job.home, early_failed_job.id, trained_job.id, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema_version"] == 1
    assert doc["a"] == {"id": early_failed_job.id, "run": doc["a"]["run"], "state": "failed"}
    assert set(doc) == {"schema_version", "a", "b", "rows", "changes"}
    rows = {(r["section"], r["key"]): r for r in doc["rows"]}
    assert all(set(r) == {"section", "key", "a", "b", "changed"} for r in doc["rows"])
    assert rows[("corpus", "records")]["a"] is None and rows[("corpus", "records")]["b"] > 0
    assert rows[("train", "steps")] == {"section": "train", "key": "steps", "a": None, "b": 4, "changed": True}
    assert rows[("config", "var min_examples")]["a"] == 1000000 and rows[("config", "var min_examples")]["changed"]
    assert any(c.startswith("corpus: only B has one (corpus-") for c in doc["changes"])


def test_the_text_table_shows_a_dash_for_a_missing_stage(capsys, trained_job, early_failed_job):
    code, out, err = compare(capsys, trained_job.home, early_failed_job.id, trained_job.id)
    assert code == 0, err
    assert re.search(r"^\* train steps +- +4$", out, re.M)
    assert re.search(r"^\* corpus records +- +\d+$", out, re.M)


def test_an_unknown_job_is_an_error_naming_it(capsys, trained_job):
    code, _, err = compare(capsys, trained_job.home, trained_job.id, "ft-nope")
    assert code == 1 and "no job record for `ft-nope`" in err and "hint:" in err


def test_change_lines_read_as_sentences(trained_job):
    """The wording, pinned on manifests shaped like real ones."""
    facts = gather_job(open_session(home=str(trained_job.home), quiet=True), trained_job.id)

    def corpus(beads, events, cid):
        return {"id": cid, "counts": {"records": beads + events, "by_source": {"beads": beads, "events": events}}}

    def evaluation(passed, gate):
        overall = {"base+context": {"passed": 4, "total": 20}, "tuned+context": {"passed": passed, "total": 20}}
        return {"overall": overall, "gate": {"passed": gate}, "tuned_loss": 1.5 if gate else 1.75}
    a = replace(facts, corpus=corpus(100, 50, "corpus-a"), evaluation=evaluation(8, False))
    b = replace(facts, corpus=corpus(400, 62, "corpus-b"), evaluation=evaluation(11, True))
    assert changes(a, b, []) == [
        "corpus: +312 records (beads +300, events +12); corpus-a → corpus-b",
        "tuned+context pass rate 40% → 55% (+15 points)",
        "review gate FAIL → PASS",
        "held-out loss (tuned) 1.7500 → 1.5000 (-0.2500)",
    ]


@pytest.mark.slow
def test_two_evaluated_jobs_compare_pass_rates(capsys, evaluated_jobs):
    first, second = evaluated_jobs
    comparison = compare_jobs(open_session(home=str(first.home), quiet=True), first.id, second.id)
    rows = {(r["section"], r["key"]): r for r in comparison["rows"]}
    assert rows[("eval", "pass rate tuned+context")]["a"] is not None
    assert rows[("eval", "gate")]["a"] in ("PASS", "FAIL")
    assert "changed: max_steps 4 → 6" in comparison["changes"]
    assert any(re.fullmatch(r"tuned\+context pass rate \d+% → \d+% \([+-]\d+ points\)", c)
               for c in comparison["changes"])
    code, out, err = compare(capsys, first.home, first.id, second.id)
    assert code == 0, err
    assert re.search(r"^[* ] eval pass rate tuned\+context +\d+% +\d+%$", out, re.M)
