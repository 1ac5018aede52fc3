"""The loss the recipe optimises: weighted per token, normalised by weighted trained tokens."""
import torch

from gt_finetune.dataset.pack import collate
from gt_finetune.train.recipe import IGNORE, trained_weight, weighted_loss

ce = torch.nn.functional.cross_entropy


def test_unpacked_batch_carries_token_weights_and_masks_padding():
    rows = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7], "weight": 0.5},
            {"input_ids": [8, 9], "labels": [IGNORE, 9]}]
    b = collate(rows, pad_id=0, attention_mask=True)
    assert b["weights"].tolist() == [[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]]
    assert b["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, 9, IGNORE]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert trained_weight(b["labels"], b["weights"]) == 0.5 * 2 + 1.0 * 1


def test_weighted_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 10)
    labels = torch.tensor([[IGNORE, 1, 2], [IGNORE, 3, IGNORE]])
    weights = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]])
    loss = weighted_loss(logits, labels, weights, weight_sum=2.0)  # 0.5 * 2 tokens + 1.0 * 1 token
    by_hand = (0.5 * ce(logits[0, 0:1], labels[0, 1:2]) + 0.5 * ce(logits[0, 1:2], labels[0, 2:3])
               + 1.0 * ce(logits[1, 0:1], labels[1, 1:2])) / 2.0
    assert torch.allclose(loss, by_hand)


def test_each_token_counts_by_its_own_weight_inside_a_packed_row():
    torch.manual_seed(2)
    logits = torch.randn(1, 5, 10)
    # two examples in one row: [IGNORE, 1] with weight 0.25, then [IGNORE, 2, 3] with weight 1.0
    labels = torch.tensor([[IGNORE, 1, IGNORE, 2, 3]])
    weights = torch.tensor([[0.25, 0.25, 1.0, 1.0, 1.0]])
    weight_sum = trained_weight(labels, weights)
    assert weight_sum == 0.25 + 2.0
    by_hand = (0.25 * ce(logits[0, 0:1], labels[0, 1:2]) + ce(logits[0, 2:3], labels[0, 3:4])
               + ce(logits[0, 3:4], labels[0, 4:5])) / weight_sum
    assert torch.allclose(weighted_loss(logits, labels, weights, weight_sum), by_hand)


def test_split_into_micro_batches_gives_the_same_gradient_signal():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[IGNORE, 1, 2, 3], [IGNORE, IGNORE, 4, IGNORE]])
    weights = torch.tensor([[1.0] * 4, [0.5] * 4])
    weight_sum = trained_weight(labels[:1], weights[:1]) + trained_weight(labels[1:], weights[1:])
    assert weight_sum == trained_weight(labels, weights) == 3.5
    whole = weighted_loss(logits, labels, weights, weight_sum)
    parts = (weighted_loss(logits[:1], labels[:1], weights[:1], weight_sum)
             + weighted_loss(logits[1:], labels[1:], weights[1:], weight_sum))
    assert torch.allclose(whole, parts)


def test_logits_for_trained_positions_only_give_the_same_loss_and_gradients(tiny_model):
    from transformers import AutoModelForCausalLM

    from gt_finetune.train.attention import logits as model_logits
    from gt_finetune.dataset.pack import pack_rows
    from gt_finetune.train.recipe import trained_positions

    model = AutoModelForCausalLM.from_pretrained(tiny_model("chatml"), dtype=torch.float32)
    rows = pack_rows([{"id": "a", "input_ids": list(range(10, 40)), "labels": [IGNORE] * 20 + list(range(30, 40))},
                      {"id": "b", "input_ids": list(range(50, 70)), "labels": [IGNORE] * 5 + list(range(55, 70)),
                       "weight": 0.5}], 64)
    batch = collate(rows, pad_id=0)
    weight_sum = trained_weight(batch["labels"], batch["weights"])
    keep = trained_positions(batch["labels"])
    assert len(keep) == 10 + 15 < batch["labels"].shape[1]
    losses, grads = [], []
    for positions in (None, keep):
        model.zero_grad()
        loss = weighted_loss(model_logits(model, batch, keep=positions), batch["labels"], batch["weights"],
                             weight_sum, positions=positions)
        loss.backward()
        losses.append(loss.detach())
        grads.append(model.lm_head.weight.grad.clone())
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
