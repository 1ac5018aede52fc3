"""Packing: several examples share one row of up to `max_seq_len` tokens, and never see each other.

Padding a batch to its longest example spends a quarter to a half of its tokens on padding
(`benchmarks/packing.py`); packing fills rows instead (best-fit decreasing). Isolation comes from
position ids alone: each example's positions restart at 0 (padding too, so it is a sequence of its
own), and the trainer's attention keeps the runs apart (`gt_finetune.train.attention`).
"""
from __future__ import annotations

from bisect import bisect_left, insort

from .template import IGNORE


def best_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of indices into `lengths`, each summing to at most `capacity`: longest first, each into
    the fullest bin it still fits (ties: the lowest index, the earliest bin), so the result is a
    pure function of the lengths.

    Raises:
        ValueError: a length above `capacity` (the dataset stage drops such examples, so this is a bug).
    """
    if capacity < 1:
        raise ValueError(f"packing capacity must be at least 1 token, got {capacity}")
    for i, n in enumerate(lengths):
        if n > capacity:
            raise ValueError(f"example {i} has {n} tokens, more than the packing capacity {capacity}")
    bins: list[list[int]] = []
    space: list[tuple[int, int]] = []  # (room left, bin number), sorted: the fullest bins first
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        k = bisect_left(space, (lengths[i], -1))
        if k == len(space):
            bins.append([i])
            room, b = capacity, len(bins) - 1
        else:
            room, b = space.pop(k)
            bins[b].append(i)
        insort(space, (room - lengths[i], b))
    return bins


def packed_row(examples: list[dict]) -> dict:
    """`examples` back to back in one row: positions restart at 0 for each, every token carries its
    example's weight, and each example's first label is ignored — there the model would predict
    this example's first token from the previous one's last, which unpacked training never asks."""
    row: dict = {"ids": [], "input_ids": [], "labels": [], "position_ids": [], "weights": []}
    for e in examples:
        n = len(e["input_ids"])
        row["ids"].append(e.get("id"))
        row["input_ids"] += e["input_ids"]
        row["labels"] += [IGNORE] + list(e["labels"][1:])
        row["position_ids"] += range(n)
        row["weights"] += [float(e.get("weight", 1.0))] * n
    return row


def pack_rows(examples: list[dict], capacity: int) -> list[dict]:
    """Rows of at most `capacity` tokens holding every example once (see `best_fit`)."""
    bins = best_fit([len(e["input_ids"]) for e in examples], capacity)
    return [packed_row([examples[i] for i in b]) for b in bins]


def collate(rows: list[dict], pad_id: int, *, attention_mask: bool = False, device: str = "cpu") -> dict:
    """Tensors for one micro-batch of rows (packed, or plain examples), right-padded to the widest.

    Padding gets label `IGNORE`, weight 0 and positions restarting at 0, so without an attention
    mask it is one more isolated sequence. `attention_mask=True` adds the classic padding mask for
    unpacked rows; a padding mask cannot keep packed examples apart, so packed rows refuse it.
    """
    import torch

    rows = [r if "position_ids" in r else packed_row([r]) for r in rows]
    if attention_mask and any(len(r["ids"]) > 1 for r in rows):
        raise ValueError("an attention mask cannot isolate packed examples; pass packed rows without one")
    width = max(len(r["input_ids"]) for r in rows)
    pad = [width - len(r["input_ids"]) for r in rows]
    batch = {
        "input_ids": torch.tensor([r["input_ids"] + [pad_id] * p for r, p in zip(rows, pad)]),
        "position_ids": torch.tensor([r["position_ids"] + list(range(p)) for r, p in zip(rows, pad)]),
        "labels": torch.tensor([r["labels"] + [IGNORE] * p for r, p in zip(rows, pad)]),
        "weights": torch.tensor([r["weights"] + [0.0] * p for r, p in zip(rows, pad)]),
    }
    if attention_mask:
        batch["attention_mask"] = torch.tensor([[1] * len(r["input_ids"]) + [0] * p for r, p in zip(rows, pad)])
    return {k: v.to(device) for k, v in batch.items()}

