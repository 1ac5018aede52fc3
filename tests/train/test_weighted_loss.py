"""The loss the recipe optimises: weighted by example, normalised by weighted trained tokens."""
import torch

from gt_finetune.train.lora import IGNORE, _batch, weighted_loss


def test_batch_carries_weights_and_masks_padding():
    rows = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7], "weight": 0.5},
            {"input_ids": [8, 9], "labels": [IGNORE, 9]}]
    b = _batch(rows, pad_id=0, device="cpu")
    assert b["weights"].tolist() == [0.5, 1.0]
    assert b["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, 9, IGNORE]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_weighted_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 10)
    labels = torch.tensor([[IGNORE, 1, 2], [IGNORE, 3, IGNORE]])
    weights = torch.tensor([0.5, 1.0])
    loss = weighted_loss(logits, labels, weights, weight_sum=2.0)  # 0.5 * 2 tokens + 1.0 * 1 token
    ce = torch.nn.functional.cross_entropy
    by_hand = (0.5 * ce(logits[0, 0:1], labels[0, 1:2]) + 0.5 * ce(logits[0, 1:2], labels[0, 2:3])
               + 1.0 * ce(logits[1, 0:1], labels[1, 1:2])) / 2.0
    assert torch.allclose(loss, by_hand)


def test_split_into_micro_batches_gives_the_same_gradient_signal():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[IGNORE, 1, 2, 3], [IGNORE, IGNORE, 4, IGNORE]])
    weights = torch.tensor([1.0, 0.5])
    whole = weighted_loss(logits, labels, weights, weight_sum=3.5)
    parts = (weighted_loss(logits[:1], labels[:1], weights[:1], weight_sum=3.5)
             + weighted_loss(logits[1:], labels[1:], weights[1:], weight_sum=3.5))
    assert torch.allclose(whole, parts)
