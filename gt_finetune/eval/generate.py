"""Greedy answers for many conversations at once, stopping where the trained model stops.

Prompts are rendered with the model's own chat template and left-padded into batches (shortest
first, so a batch wastes little on padding); each answer ends at EOS or at the template's
end-of-turn token (e.g. Llama 3's `<|eot_id|>`), the token the trainer taught it to emit.
"""
from __future__ import annotations


def stop_ids(tokenizer, end_of_turn: str | None) -> list[int]:
    """EOS plus the dataset's end-of-turn token, when the template has one."""
    ids = {tokenizer.eos_token_id}
    if end_of_turn:
        ids.add(tokenizer.convert_tokens_to_ids(end_of_turn))
    return sorted(i for i in ids if i is not None)


def generate_answers(model, tokenizer, conversations: list[list[dict]], *, max_new_tokens: int, stop: list[int],
                     batch_size: int = 8) -> list[str]:
    """One greedy answer per conversation, in the given order."""
    import torch

    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    answers: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk],
                            device=model.device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stop, pad_token_id=pad)
        for row, i in enumerate(chunk):
            answers[i] = tokenizer.decode(_until_stop(out[row, width:].tolist(), stop),
                                          skip_special_tokens=True).strip()
    return answers


def _until_stop(tokens: list[int], stop: list[int]) -> list[int]:
    """A batch keeps generating until every row stopped; a finished row is cut at its stop token."""
    for k, t in enumerate(tokens):
        if t in stop:
            return tokens[:k]
    return tokens
