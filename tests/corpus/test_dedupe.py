"""Exact and near-duplicate detection: which record is dropped, which is kept, and why."""
import random

import pytest

from gt_finetune.corpus.dedupe import find_duplicates, trained_text
from gt_finetune.corpus.records import make_record

SYLLABLES = ["ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "vu", "we", "xe", "yo", "za", "bi", "do", "fu",
             "ga", "hi", "ju", "ko", "ly", "mo", "nu", "pe"]
VOCAB = [a + b for a in SYLLABLES for b in SYLLABLES]


def words(seed: int, n: int) -> list[str]:
    return random.Random(seed).choices(VOCAB, k=n)


def record(prompt: str, answer: str, system: str = "You are a Gas Town agent.") -> dict:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer}]
    return make_record(messages, {"source": "beads"})


def essay(seed: int, n: int = 200, change: int | None = None) -> dict:
    text = words(seed, n)
    if change is not None:
        text[change] = "changedword"
    return record(f"Bead hb-{seed}: what did you do?", " ".join(text))


def test_same_content_hash_is_an_exact_duplicate_of_the_earliest():
    a = essay(1)
    assert find_duplicates([a, essay(2), a, a]) == [(2, 0, "exact"), (3, 0, "exact")]


def test_same_trained_text_with_other_case_spacing_or_system_prompt_is_exact():
    a = record("Close hb-1?", "Closed  hb-1:\n tests pass.")
    b = record("close   HB-1?", "closed hb-1: tests PASS.", system="You are a Gas Town witness.")
    assert a["meta"]["content_hash"] != b["meta"]["content_hash"]
    assert find_duplicates([a, b]) == [(1, 0, "exact")]


def test_one_changed_word_is_a_near_duplicate_and_unrelated_records_are_not():
    assert find_duplicates([essay(1), essay(1, change=100)]) == [(1, 0, "near")]
    assert find_duplicates([essay(1), essay(2), essay(3)]) == []


def test_the_earliest_of_a_group_is_kept_even_through_a_dropped_twin():
    a, near_a = essay(1), essay(1, change=50)
    found = find_duplicates([essay(9), a, near_a, essay(1, change=150), near_a])
    assert found == [(2, 1, "near"), (3, 1, "near"), (4, 1, "exact")]


def test_trained_text_is_the_first_prompt_and_every_assistant_turn_with_tool_calls():
    messages = [{"role": "system", "content": "System words"},
                {"role": "user", "content": "First  PROMPT"},
                {"role": "assistant", "content": "Looking.",
                 "tool_calls": [{"id": "t1", "type": "function",
                                 "function": {"name": "Bash", "arguments": "{\"command\": \"bd ready\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "hb-1 open"},
                {"role": "user", "content": "second prompt"},
                {"role": "assistant", "content": [{"type": "text", "text": "Done."}]}]
    assert trained_text(make_record(messages, {})) == 'first prompt looking. bash {"command": "bd ready"} done.'


def test_records_without_trained_text_are_not_duplicates_of_each_other():
    empty_a = make_record([{"role": "system", "content": "a"}], {})
    empty_b = make_record([{"role": "system", "content": "b"}], {})
    assert find_duplicates([empty_a, empty_b]) == []


def test_results_are_deterministic_and_any_seed_finds_the_obvious():
    records = [essay(1), essay(2), essay(1, change=10), essay(2, change=190)]
    assert find_duplicates(records) == find_duplicates(records) == [(2, 0, "near"), (3, 1, "near")]
    assert find_duplicates(records, seed=7) == [(2, 0, "near"), (3, 1, "near")]


def test_threshold_must_be_a_fraction():
    with pytest.raises(ValueError, match="`threshold` must be in"):
        find_duplicates([], threshold=0)


def test_two_thousand_records_with_near_copies_scattered_through():
    records, expected = [], []
    for i in range(2000):
        if i % 10 == 9:  # a copy of record i-5 with its last word changed
            text = words(i - 5, 80)
            text[-1] = "changedword"
            records.append(record(f"Bead hb-{i - 5}: what did you do?", " ".join(text)))
            expected.append((i, i - 5, "near"))
        else:
            records.append(record(f"Bead hb-{i}: what did you do?", " ".join(words(i, 80))))
    assert find_duplicates(records) == expected
