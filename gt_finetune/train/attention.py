"""How the trainer runs the model over packed rows: segment attention, or transformers' own mask.

A packed row holds several examples whose position ids each restart at 0. Given no attention
mask (and no KV cache), transformers turns the restarts into a block-diagonal causal mask for
eager and sdpa attention — correct, but the kernels then compute every pair of positions in the
row and throw most away, sdpa repeats k/v to every head (its GQA path needs no mask), and the CPU
materialises the mask. Segment attention (`SEGMENTS`, registered with transformers' attention
interface) instead flattens the batch into one sequence and runs sdpa with `is_causal=True` on each
example alone: work grows with the sum of squared example lengths rather than with the row's
length squared, and no mask exists. Padding restarts at 0 too, so it is a segment of its own.
`benchmarks/throughput.py` measures the difference; `tests/train/test_attention.py` proves the
logits equal each example run alone.
"""
from __future__ import annotations

SEGMENTS = "gt_segments"


def register() -> None:
    """Make `SEGMENTS` a valid `attn_implementation` (idempotent): the attention function, and a
    mask function that builds no mask."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(SEGMENTS, segment_attention)
    AttentionMaskInterface.register(SEGMENTS, _no_mask)


def _no_mask(*_args, **_kwargs):
    return None


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      segments=None, **_kwargs):
    """Causal sdpa on each `(start, end)` of `segments` along the sequence of a single-row batch.

    Raises:
        ValueError: no `segments` (the model was called without `logits`), or a mask was passed.
    """
    import torch
    import torch.nn.functional as F

    if segments is None or attention_mask is not None:
        raise ValueError(f"`{SEGMENTS}` attention runs packed rows only, through gt_finetune.train.attention.logits")
    outputs = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True,
                                              dropout_p=dropout, scale=scaling, enable_gqa=True)
               for s, e in segments]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def segments_of(position_ids) -> list[tuple[int, int]]:
    """`(start, end)` of each run of positions that starts at 0, along a flattened batch."""
    starts = (position_ids.reshape(-1) == 0).nonzero().squeeze(1).tolist()
    if not starts or starts[0] != 0:
        raise ValueError("position ids of a packed batch must start at 0")
    return list(zip(starts, starts[1:] + [position_ids.numel()]))


def logits(model, batch: dict, *, keep=None):
    """The model's logits for a `collate`d batch, [rows, positions, vocab]. `keep`: only these
    positions (a 1-D index tensor, the same for every row; transformers' `logits_to_keep`).

    Packed rows need no KV cache (transformers skips the packing detection with one — and Llama's
    config turns the cache on by default, even in train mode); flash-attention isolates them only
    in a batch of one row (its varlen path reads position ids only then).

    Raises:
        ValueError: flash-attention with more than one row (it would attend across examples).
    """
    import torch

    config = getattr(model, "module", model).config  # under DDP the model is wrapped
    attn = getattr(config, "_attn_implementation", "") or ""
    rows, width = batch["input_ids"].shape
    if "flash" in attn and "attention_mask" not in batch and rows > 1:
        raise ValueError(f"`{attn}` isolates packed examples only in a batch of one row, got "
                         f"{rows} rows; use `sdpa` or `eager` attention")
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
    if attn != SEGMENTS:
        if keep is not None:
            inputs["logits_to_keep"] = keep
        return model(**inputs, use_cache=False).logits
    if "attention_mask" in inputs:
        raise ValueError(f"`{SEGMENTS}` attention isolates examples by position ids; pass rows without a mask")
    flat = {k: v.reshape(1, -1) for k, v in inputs.items()}
    if keep is None:
        keep = torch.arange(width, device=batch["input_ids"].device)
    at = (torch.arange(rows, device=keep.device)[:, None] * width + keep[None, :]).reshape(-1)
    out = model(**flat, use_cache=False, logits_to_keep=at, segments=segments_of(flat["position_ids"])).logits
    return out.reshape(rows, len(keep), -1)
