"""Corpus health: weighting and exclusion of model text, duplicates, stale and conflicting records, the gate."""
import json
import random

import pytest

from gt_finetune.corpus.health import HealthConfig, assess, formula_hash, token_stats
from gt_finetune.corpus.records import make_record

SYSTEM = "You are a Gas Town agent."
VOCAB = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en")]


def rec(prompt: str, answer: str, *, source: str = "beads", generated_by: str = "human", calls: tuple = (),
        **meta) -> dict:
    assistant = {"role": "assistant", "content": answer}
    if calls:
        assistant["tool_calls"] = [{"id": f"t{k}", "type": "function",
                                    "function": {"name": "Bash", "arguments": json.dumps({"command": c})}}
                                   for k, c in enumerate(calls)]
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}, assistant]
    return make_record(messages, {"source": source, "generated_by": generated_by, "rig": "harbor", "role": "polecat",
                                  **meta})


def essay(seed: int, change: int | None = None, **kw) -> dict:
    text = random.Random(seed).choices(VOCAB, k=200)
    if change is not None:
        text[change] = "changedword"
    return rec(f"Bead hb-{seed}: what did you do?", " ".join(text), **kw)


def hashes(records: list[dict]) -> list[str]:
    return [r["meta"]["content_hash"] for r in records]


def test_model_text_is_down_weighted_and_the_rest_weighs_one():
    records = [essay(1, generated_by="model:claude-opus"), essay(2, generated_by="human"),
               essay(3, generated_by="agent:harbor/polecats/nux")]
    report = assess(records, HealthConfig(synthetic_weight=0.25))
    assert [r["meta"]["weight"] for r in report.kept] == [0.25, 1.0, 1.0]
    assert report.dropped == []
    assert "weight" not in records[0]["meta"]  # the input is left alone


def test_excluded_model_text_is_dropped_before_deduplication():
    synthetic, human = essay(1, generated_by="model:claude-opus"), essay(1, change=20)
    report = assess([synthetic, human, essay(2)], HealthConfig(exclude_generated_by=("model:",)))
    assert hashes(report.kept) == hashes([human, essay(2)])
    assert report.dropped == [{"index": 0, "content_hash": synthetic["meta"]["content_hash"], "kept": "",
                               "reason": "generated_by `model:claude-opus` is excluded (prefix `model:`)"}]


def test_duplicates_are_dropped_with_their_kept_twin():
    a = essay(1)
    records = [a, essay(2), a, essay(1, change=100)]
    report = assess(records, HealthConfig())
    assert hashes(report.kept) == hashes(records[:2])
    assert report.dropped == [
        {"index": 2, "content_hash": a["meta"]["content_hash"], "kept": a["meta"]["content_hash"],
         "reason": "exact duplicate of record 0"},
        {"index": 3, "content_hash": records[3]["meta"]["content_hash"], "kept": a["meta"]["content_hash"],
         "reason": "near duplicate (estimated ≥ 85% alike) of record 0"}]


def test_a_formula_record_is_stale_when_the_formula_changed():
    old = rec("Write the Gas Town formula `mol-release`.", 'formula = "mol-release"\nversion = 1',
              source="formulas", formula="mol-release")
    other = rec("Write the Gas Town formula `mol-other`.", 'formula = "mol-other"', source="formulas",
                formula="mol-other")
    current = {"mol-release": formula_hash('formula = "mol-release"\nversion = 2\n'),
               "mol-other": formula_hash('formula = "mol-other"\n').removeprefix("sha256:")}
    report = assess([old, other], HealthConfig(), current_formulas=current)
    assert report.stale == [{"content_hash": old["meta"]["content_hash"],
                             "reason": "formula `mol-release` has changed since this record was harvested"}]
    assert len(report.kept) == 2  # flagged, not dropped


def test_a_record_is_stale_when_a_bead_it_mentions_is_gone():
    mentions = rec("Bead hb-a3f: re-run the flaky test", "Fixed after hb-a3f.1 and hb-zz9k; see lt-4q2, a dry-run "
                   "and a follow-up.", bead_id="hb-a3f")
    fine = rec("Bead hb-a3f: anything else?", "No, hb-a3f is done.", bead_id="hb-a3f")
    report = assess([mentions, fine], HealthConfig(), existing_beads={"hb-a3f", "hb-a3f.1", "lt-9x1"})
    assert report.stale == [{"content_hash": mentions["meta"]["content_hash"],
                             "reason": "mentions beads that no longer exist: hb-zz9k, lt-4q2"}]
    assert assess([mentions], HealthConfig()).stale == []  # no bead list, no bead check


@pytest.mark.parametrize("answer,calls,reason", [
    ("Pushed with `bd sync`.", (), "`bd sync` is not a bd command (bd 1.0.5); push with `bd dolt push`"),
    ("Marking it finished.", ("bd update hb-1 --status=done",),
     "there is no `done`/`complete` status; close with `bd close`"),
    ("Told the overseer.", ("gt mail send mayor/ -s Stuck -m 'help' --human",),
     "`gt mail send --human` does not exist; address mail to `overseer`"),
    ("Ran `bd complete hb-1`.", (), "`bd complete` is not a command; use `bd close` (`bd done` is its alias)"),
    ("Filed it: `gt issue create 'flaky test'`.", (), "`gt issue create` is not a command; file work with `bd create`"),
    ("Stopped it with `gt polecat kill harbor/nux`.", (),
     "`gt polecat kill` is not a command; `gt polecat nuke` is the (explicit) one"),
    ("Filed `bd create --rig harbor --title=Flaky`.", (),
     "`bd create --rig`/`--prefix` were removed (bd ≥ 0.62 works on the local rig); run bd in the owning rig"),
])
def test_an_answer_using_removed_cli_is_stale(answer, calls, reason):
    record = rec("Bead hb-1: what now?", answer, calls=calls)
    assert assess([record], HealthConfig()).stale == [{"content_hash": record["meta"]["content_hash"],
                                                       "reason": reason}]


@pytest.mark.parametrize("prompt,answer", [
    ("What now?", "Checked five sessions; none tried `bd sync` again."),
    ("What now?", "Use `bd close`, not `bd complete`."),
    ("What now?", "`gt polecat kill` does not exist, so I used `gt session stop harbor/nux`."),
    ("What now?", "Told crew to use `cd harbor/mayor/rig && bd create --title=X`; never `bd create --rig`."),
    ("Should I run `bd sync`?", "Push with `bd dolt push`."),  # the prompt is not the answer
])
def test_warning_against_removed_cli_is_not_using_it(prompt, answer):
    assert assess([rec(prompt, answer)], HealthConfig()).stale == []


def test_same_prompt_with_opposite_actions_is_a_conflict():
    close = rec("Bead hb-1: tests pass and the MR merged. What now?", "Run `bd close hb-1 --reason=merged`.")
    reopen = rec("bead hb-1:  Tests pass and the MR merged.  What now?", "Run `bd update hb-1 --status=open`.")
    both = rec("Bead hb-1: tests pass and the MR merged. What now?", "Reopen with `bd reopen hb-1`, "
               "or `bd close hb-1` once merged.")  # names both sides: takes neither
    report = assess([close, essay(5), reopen, both], HealthConfig())
    assert report.conflicts == [{"a": close["meta"]["content_hash"], "b": reopen["meta"]["content_hash"],
                                 "situation": "bead hb-1: tests pass and the mr merged. what now?",
                                 "why": "a closes, b reopens"}]


def test_agreeing_answers_and_different_prompts_are_not_conflicts():
    records = [rec("Polecat nux idle 30 minutes.", "Restart it: `gt session restart harbor/nux`."),
               rec("Polecat nux idle 30 minutes.", "I restarted the session."),
               rec("Polecat nux has a pending MR.", "Nuke it with `gt polecat nuke harbor/nux`.")]
    assert assess(records, HealthConfig()).conflicts == []


def test_token_counts_per_role_total_and_length_percentiles():
    records = [rec("one two", "a b c"), rec("one", " ".join(["w"] * 10)), rec("x y z", "q")]
    # the system prompt is 6 tokens; record lengths 11, 17, 10
    assert token_stats(records) == {"by_role": {"assistant": 14, "system": 18, "user": 6}, "total": 38,
                                    "records": 3, "p50": 11, "p90": 17, "max": 17}
    assert token_stats([]) == {"by_role": {}, "total": 0, "records": 0, "p50": 0, "p90": 0, "max": 0}


def gate_corpus() -> list[dict]:
    counts = {"beads": 3, "transcripts": 1, "events": 2, "formulas": 2, "role_context": 2}
    return [essay(100 * k + i, source=source) for k, (source, n) in enumerate(counts.items()) for i in range(n)]


def test_gate_passes_when_the_corpus_is_big_enough():
    report = assess(gate_corpus(), HealthConfig())
    assert report.gate(HealthConfig(min_examples=10, min_tokens=2000)) is None


def test_gate_names_what_is_missing_and_the_sources_that_would_add_data():
    report = assess(gate_corpus(), HealthConfig())
    assert report.tokens["total"] == 10 * (6 + 6 + 200)  # system, prompt, answer
    assert report.gate(HealthConfig(min_examples=12, min_tokens=5000), formula="finetune-lora") == (
        "you have 10 usable examples (2,120 tokens); formula `finetune-lora` needs 12 examples and 5,000 tokens. "
        "Sources that would add data: transcripts (only 1 record: add `--transcripts ~/.claude/projects`), "
        "mail (none harvested yet: add the town's `--beads-jsonl ~/gt/.beads/backup`)")


def test_gate_when_every_source_has_data_asks_for_more_history():
    records = [essay(i, source=s) for i, s in enumerate(["transcripts", "beads", "mail", "events", "formulas",
                                                         "role_context"])]
    report = assess(records, HealthConfig())
    assert report.gate(HealthConfig(min_examples=6, min_tokens=100_000)) == (
        "you have 6 usable examples (1,272 tokens); the formula needs 6 examples and 100,000 tokens. "
        "Every source already has data; harvest a longer span of the town's history")


@pytest.mark.parametrize("kw,message", [({"synthetic_weight": 1.5}, "`synthetic_weight` must be in"),
                                        ({"near_duplicate_threshold": 0}, "`near_duplicate_threshold` must be in")])
def test_config_refuses_out_of_range_values(kw, message):
    with pytest.raises(ValueError, match=message):
        HealthConfig(**kw)
