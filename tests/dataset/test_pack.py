"""Packing: best-fit bins, packed rows and collation (that packed examples never see each other is
tests/train/test_attention.py)."""
from __future__ import annotations

import random

import pytest

from gt_finetune.dataset.pack import IGNORE, best_fit, collate, pack_rows, packed_row


def next_fit(lengths: list[int], capacity: int) -> int:
    """Bins used by the naive packer: fill in order, open a new bin when the next one does not fit."""
    bins, room = 0, 0
    for n in lengths:
        if n > room:
            bins, room = bins + 1, capacity
        room -= n
    return bins


# --- best_fit --------------------------------------------------------------------------------

def test_best_fit_respects_capacity_and_places_every_index_once():
    lengths = [random.Random(7).randint(1, 100) for _ in range(300)]
    bins = best_fit(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)


def test_best_fit_is_deterministic_and_breaks_ties_by_index():
    lengths = [30, 70, 30, 70, 40, 60]
    assert best_fit(lengths, 100) == best_fit(list(lengths), 100) == [[1, 0], [3, 2], [5, 4]]


def test_best_fit_needs_fewer_bins_than_naive_packing():
    assert best_fit([5, 6, 5, 4], 10) == [[1, 3], [0, 2]]
    assert next_fit([5, 6, 5, 4], 10) == 3
    rng = random.Random(0)
    lengths = [rng.randint(10, 500) for _ in range(500)]
    bins = best_fit(lengths, 512)
    assert len(bins) < next_fit(lengths, 512)
    assert len(bins) <= sum(lengths) / 512 * 1.05 + 1  # within a few percent of the lower bound


def test_best_fit_refuses_an_example_longer_than_a_row():
    with pytest.raises(ValueError, match="example 2 has 600 tokens, more than the packing capacity 512"):
        best_fit([10, 20, 600], 512)


# --- rows and collation ----------------------------------------------------------------------

def example(eid: str, ids: list[int], labels: list[int], weight: float = 1.0) -> dict:
    return {"id": eid, "input_ids": ids, "labels": labels, "weight": weight}


def test_a_packed_row_restarts_positions_and_carries_each_examples_weight():
    row = packed_row([example("a", [1, 2, 3], [IGNORE, 2, 3], 0.5), example("b", [4, 5], [4, 5])])
    assert row["ids"] == ["a", "b"]
    assert row["input_ids"] == [1, 2, 3, 4, 5]
    assert row["position_ids"] == [0, 1, 2, 0, 1]
    assert row["weights"] == [0.5, 0.5, 0.5, 1.0, 1.0]
    # b's first token is not predicted from a's last one
    assert row["labels"] == [IGNORE, 2, 3, IGNORE, 5]


def test_pack_rows_keeps_every_example_once():
    examples = [example(str(i), [i] * n, [i] * n) for i, n in enumerate([5, 3, 6, 2, 4])]
    rows = pack_rows(examples, capacity=8)
    assert sorted(eid for r in rows for eid in r["ids"]) == ["0", "1", "2", "3", "4"]
    assert all(len(r["input_ids"]) <= 8 for r in rows)
    assert len(rows) == 3


def test_collate_pads_as_a_sequence_of_its_own():
    rows = [packed_row([example("a", [1, 2, 3], [IGNORE, 2, 3]), example("b", [4, 5], [IGNORE, 5], 0.5)]),
            example("c", [6, 7], [IGNORE, 7], 2.0)]  # a plain example is a row of one
    b = collate(rows, pad_id=0)
    assert "attention_mask" not in b
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert b["labels"].tolist() == [[IGNORE, 2, 3, IGNORE, 5], [IGNORE, 7, IGNORE, IGNORE, IGNORE]]
    assert b["weights"].tolist() == [[1.0, 1.0, 1.0, 0.5, 0.5], [2.0, 2.0, 0.0, 0.0, 0.0]]


def test_an_attention_mask_is_refused_for_packed_rows():
    rows = [packed_row([example("a", [1, 2], [IGNORE, 2]), example("b", [3, 4], [IGNORE, 4])])]
    with pytest.raises(ValueError, match="cannot isolate packed examples"):
        collate(rows, pad_id=0, attention_mask=True)
