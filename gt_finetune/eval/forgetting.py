"""The forgetting probe: did fine-tuning on a town's history cost general ability?

General prompts the corpus never contains (`data/gt_bench/general.jsonl`), each with a reference
answer and keywords: the perplexity of the reference answers under base and tuned (the same
tokens, so the numbers compare), and whether each model's own greedy answer names the keywords.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..workspace import read_jsonl

PROBE = Path(__file__).resolve().parents[1] / "data" / "gt_bench" / "general.jsonl"


def general_probe(path: Path = PROBE) -> list[dict]:
    return read_jsonl(path)


def answer_perplexity(model, tokenizer, probes: list[dict]) -> float:
    """exp(mean loss per token) of each probe's reference answer after its prompt, under the chat template."""
    import torch

    total, count = 0.0, 0
    for p in probes:
        user = [{"role": "user", "content": p["prompt"]}]
        prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": p["answer"]}], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(whole, add_special_tokens=False)["input_ids"]
        if ids[:len(prompt_ids)] != prompt_ids:  # the template rewrote the prompt: score the answer alone
            prompt_ids, ids = [], tokenizer(p["answer"], add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        target = torch.tensor(labels[1:], device=model.device)
        total += float(torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum"))
        count += int((target != -100).sum())
    return math.exp(total / max(count, 1)) if count else float("nan")


def keyword_hits(answers: list[str], probes: list[dict]) -> list[bool]:
    """Each answer names every keyword of its probe (case-insensitive)."""
    return [all(k.lower() in a.lower() for k in p["keywords"]) for a, p in zip(answers, probes)]


def probe_summary(base_ppl: float, tuned_ppl: float, base_hits: list[bool], tuned_hits: list[bool]) -> dict:
    return {"prompts": len(base_hits), "base_perplexity": round(base_ppl, 3), "tuned_perplexity": round(tuned_ppl, 3),
            "base_keyword_hits": sum(base_hits), "tuned_keyword_hits": sum(tuned_hits)}
