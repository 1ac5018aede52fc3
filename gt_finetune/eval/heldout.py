"""Held-out loss: how well a model predicts the trained tokens of examples it never trained on."""
from __future__ import annotations

IGNORE = -100


def heldout_loss(model, examples: list[dict]) -> float:
    """Mean loss per trained token over the held-out examples."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e["input_ids"]], device=model.device)
            labels = torch.tensor([e["labels"]], device=model.device)
            logits = model(input_ids=ids).logits
            total += float(torch.nn.functional.cross_entropy(
                logits[0, :-1].float(), labels[0, 1:], ignore_index=IGNORE, reduction="sum"))
            count += int((labels[0, 1:] != IGNORE).sum())
    return total / max(count, 1)
