"""Packing: best-fit bins, packed rows, collation, and proof that packed examples never see each
other (logits equal to each example run alone, for eager and sdpa attention)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from gt_finetune.dataset.pack import IGNORE, best_fit, collate, logits, pack_rows, packed_row
from gt_finetune.train.recipe import trained_weight, weighted_loss


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


def test_flash_attention_is_refused_for_several_packed_rows():
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    rows = [example("a", [1, 2], [IGNORE, 2]), example("b", [3], [IGNORE])]
    with pytest.raises(ValueError, match="only in a batch of one row, got 2 rows"):
        logits(model, collate(rows, pad_id=0))


# --- attention isolation, on a real (tiny) model -----------------------------------------------

LENGTHS = (9, 17, 4, 12)


@pytest.fixture(scope="module")
def sequences() -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 2000, (n,), generator=g).tolist() for n in LENGTHS]


def load(path, attn: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn).eval()


def alone(model, ids: list[int]) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


def plain(ids: list[int]) -> dict:
    return example("x", ids, [IGNORE] + ids[1:])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@torch.no_grad()
def test_packed_examples_see_only_themselves(tiny_model, sequences, attn):
    model = load(tiny_model("chatml"), attn)
    one_row = collate([packed_row([plain(s) for s in sequences])], pad_id=0)
    two_rows = collate([packed_row([plain(s) for s in sequences[:2]]),  # 26 tokens
                        packed_row([plain(s) for s in sequences[2:]])], pad_id=0)  # 16 tokens + 10 padding
    assert two_rows["position_ids"][1, 16:].tolist() == list(range(10))
    for batch, layout in ((one_row, [[0, 1, 2, 3]]), (two_rows, [[0, 1], [2, 3]])):
        out = logits(model, batch)
        for r, members in enumerate(layout):
            start = 0
            for k in members:
                n = len(sequences[k])
                torch.testing.assert_close(out[r, start:start + n], alone(model, sequences[k]), atol=1e-5, rtol=0)
                start += n


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@torch.no_grad()
def test_without_restarting_positions_the_second_example_sees_the_first(tiny_model, sequences, attn):
    """The control: the same row with positions 0..N-1 is one long sequence, so the check above can fail."""
    model = load(tiny_model("chatml"), attn)
    batch = collate([packed_row([plain(s) for s in sequences])], pad_id=0)
    batch["position_ids"] = torch.arange(sum(LENGTHS))[None]
    out = logits(model, batch)
    torch.testing.assert_close(out[0, :LENGTHS[0]], alone(model, sequences[0]), atol=1e-5, rtol=0)
    second = out[0, LENGTHS[0]:LENGTHS[0] + LENGTHS[1]]
    assert (second - alone(model, sequences[1])).abs().max() > 1e-2


def test_packed_loss_and_gradients_equal_the_padded_ones(tiny_model, sequences):
    """Packed rows train exactly what one padded example per row (with an attention mask) trains."""
    model = load(tiny_model("chatml"), "sdpa")
    # labels from the first token on (which no row may train: nothing predicts it), or a prompt left out
    examples = [example(str(k), s, s if k % 2 else [IGNORE] * 3 + s[3:], weight=w)
                for k, (s, w) in enumerate(zip(sequences, (1.0, 0.5, 2.0, 0.25)))]

    def loss_and_grad(batch: dict) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        loss = weighted_loss(logits(model, batch), batch["labels"], batch["weights"],
                             trained_weight(batch["labels"], batch["weights"]))
        loss.backward()
        return loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    rows = pack_rows(examples, capacity=30)
    assert len(rows) == 2  # 17 + 12, then 9 + 4: two rows of different widths, one padded
    packed_loss, packed_grad = loss_and_grad(collate(rows, pad_id=0))
    padded_loss, padded_grad = loss_and_grad(collate(examples, pad_id=0, attention_mask=True))
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    torch.testing.assert_close(packed_grad, padded_grad, atol=1e-5, rtol=1e-4)
