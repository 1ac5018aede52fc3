"""The trainer's attention over packed rows: packed examples never see each other (logits equal to
each example run alone) with eager, sdpa and segment attention, and train exactly what padded
examples train."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from gt_finetune.dataset.pack import IGNORE, collate, pack_rows, packed_row
from gt_finetune.train import attention
from gt_finetune.train.attention import SEGMENTS, logits, segments_of
from gt_finetune.train.recipe import trained_weight, weighted_loss

ATTENTIONS = ["eager", "sdpa", SEGMENTS]


def example(eid: str, ids: list[int], labels: list[int], weight: float = 1.0) -> dict:
    return {"id": eid, "input_ids": ids, "labels": labels, "weight": weight}


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

    attention.register()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn).eval()


def alone(path, ids: list[int]) -> torch.Tensor:
    """The logits of `ids` as the only sequence, from a plain (unpacked, unmasked) sdpa model."""
    return load(path, "sdpa")(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


def plain(ids: list[int]) -> dict:
    return example("x", ids, [IGNORE] + ids[1:])


@pytest.mark.parametrize("attn", ATTENTIONS)
@torch.no_grad()
def test_packed_examples_see_only_themselves(tiny_model, sequences, attn):
    path = tiny_model("chatml")
    model = load(path, attn)
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
                torch.testing.assert_close(out[r, start:start + n], alone(path, sequences[k]), atol=1e-5, rtol=0)
                start += n


@pytest.mark.parametrize("attn", ATTENTIONS)
@torch.no_grad()
def test_without_restarting_positions_the_second_example_sees_the_first(tiny_model, sequences, attn):
    """The control: the same row with positions 0..N-1 is one long sequence, so the check above can fail."""
    path = tiny_model("chatml")
    batch = collate([packed_row([plain(s) for s in sequences])], pad_id=0)
    batch["position_ids"] = torch.arange(sum(LENGTHS))[None]
    out = logits(load(path, attn), batch)
    torch.testing.assert_close(out[0, :LENGTHS[0]], alone(path, sequences[0]), atol=1e-5, rtol=0)
    second = out[0, LENGTHS[0]:LENGTHS[0] + LENGTHS[1]]
    assert (second - alone(path, sequences[1])).abs().max() > 1e-2


@pytest.mark.parametrize("attn", ["sdpa", SEGMENTS])
def test_packed_loss_and_gradients_equal_the_padded_ones(tiny_model, sequences, attn):
    """Packed rows train exactly what one padded example per row (with an attention mask) trains."""
    model = load(tiny_model("chatml"), attn)
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
    model.config._attn_implementation = "sdpa"  # padded rows: transformers' own masked attention
    padded_loss, padded_grad = loss_and_grad(collate(examples, pad_id=0, attention_mask=True))
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    torch.testing.assert_close(packed_grad, padded_grad, atol=1e-5, rtol=1e-4)


def test_segments_are_the_runs_of_positions_from_zero_across_rows():
    positions = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]])
    assert segments_of(positions) == [(0, 3), (3, 5), (5, 7), (7, 10)]
    with pytest.raises(ValueError, match="must start at 0"):
        segments_of(torch.tensor([[1, 2, 0]]))


@torch.no_grad()
def test_logits_for_some_positions_match_the_full_logits_with_segment_attention(tiny_model, sequences):
    model = load(tiny_model("chatml"), SEGMENTS)
    batch = collate([packed_row([plain(s) for s in sequences[:2]]), packed_row([plain(s) for s in sequences[2:]])],
                    pad_id=0)
    keep = torch.tensor([0, 5, 20, 25])
    torch.testing.assert_close(logits(model, batch, keep=keep), logits(model, batch)[:, keep], atol=1e-5, rtol=0)


def test_segment_attention_refuses_a_call_that_bypasses_logits(tiny_model):
    model = load(tiny_model("chatml"), SEGMENTS)
    with pytest.raises(ValueError, match="runs packed rows only"):
        model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=False)
