"""Mask audit: does what we train match what we meant to train? Runs on every dataset build.

The classic fine-tuning failures are silent: a template whose assistant turns are not marked
trains on the user's words, a missing end-of-turn label makes a model that never stops, a
pad token equal to EOS masks the stop token away (anchors.md §3). Each is counted here; those
above the spec's thresholds fail the build, naming the examples.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..errors import InputError
from .segment import ELIDED
from .template import IGNORE, ChatTemplate


@dataclass(frozen=True, slots=True)
class AuditThresholds:
    max_untrainable_share: float = 0.25  # windows with no trained token (they are dropped)
    max_missing_end_of_turn: int = 0  # trained turns whose end-of-turn token is not trained
    max_non_assistant_trained: int = 0  # trained tokens inside system/user/tool turns


def audit(examples: list[dict], untrainable: list[str], template: ChatTemplate,
          thresholds: AuditThresholds) -> dict:
    """Summary for the manifest; raises InputError naming the offending examples when a
    threshold is crossed.

    Args:
        examples: tokenized examples (`input_ids`, `labels`, `roles`, `messages`, `id`).
        untrainable: ids of windows that had no assistant token to train.
    """
    tokens, trained = Counter(), Counter()
    missing_eot, off_role, cut_calls, elided = [], [], [], 0
    for e in examples:
        for role, label in zip(e["roles"], e["labels"]):
            tokens[role or "template"] += 1
            trained[role or "template"] += label != IGNORE
        if any(label != IGNORE for role, label in zip(e["roles"], e["labels"]) if role != "assistant"):
            off_role.append(e["id"])
        turns = sum(1 for m in e["messages"] if m["role"] == "assistant" and m.get("train") is not False)
        if _trained_ends(e["labels"], template.end_of_turn) < turns:
            missing_eot.append(e["id"])
        answered = {m.get("tool_call_id") for m in e["messages"] if m["role"] == "tool"}
        if any(c.get("id") not in answered for m in e["messages"][:-1] for c in m.get("tool_calls") or []):
            cut_calls.append(e["id"])
        elided += sum(1 for m in e["messages"] if m.get("content") == ELIDED)
    tokenizer = template.tokenizer
    summary = {
        "examples": len(examples), "tokens": sum(tokens.values()), "trained_tokens": sum(trained.values()),
        "trained_share": round(sum(trained.values()) / max(sum(tokens.values()), 1), 4),
        "by_role": {role: {"tokens": tokens[role], "trained": trained[role],
                           "trained_share": round(trained[role] / max(tokens[role], 1), 4)} for role in sorted(tokens)},
        "end_of_turn": template.end_of_turn_text, "eos_token": tokenizer.eos_token,
        "untrainable_windows": len(untrainable), "missing_end_of_turn": len(missing_eot),
        "non_assistant_trained": len(off_role), "tool_calls_answered_in_next_window": len(cut_calls),
        "tool_outputs_elided": elided, "truncated": 0,
        # Labels come from the turn structure, never from token ids, so pad == EOS cannot mask the stop
        # token here; recorded because other tools (and collators) trip over it.
        "pad_is_eos": tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id,
    }
    share = len(untrainable) / max(len(untrainable) + len(examples), 1)
    failures = []
    if len(missing_eot) > thresholds.max_missing_end_of_turn:
        failures.append(f"{len(missing_eot)} examples have trained turns whose end-of-turn token "
                        f"`{template.end_of_turn_text}` is not trained (e.g. {_some(missing_eot)}): the model "
                        "would not learn to stop")
    if len(off_role) > thresholds.max_non_assistant_trained:
        failures.append(f"{len(off_role)} examples train tokens outside assistant turns (e.g. {_some(off_role)})")
    if share > thresholds.max_untrainable_share:
        failures.append(f"{len(untrainable)} of {len(untrainable) + len(examples)} windows have no assistant token "
                        f"to train ({share:.0%}, limit {thresholds.max_untrainable_share:.0%}; e.g. {_some(untrainable)})")
    if failures:
        raise InputError("mask audit failed: " + "; ".join(failures),
                         hint="check the base model's chat template (`gt-finetune dataset inspect` shows what is "
                              "trained), or the corpus records named above")
    return summary


def _trained_ends(labels: list[int], end_of_turn: int) -> int:
    """How many trained spans end on the end-of-turn token."""
    ends = 0
    for k, label in enumerate(labels):
        span_ends = label != IGNORE and (k + 1 == len(labels) or labels[k + 1] == IGNORE)
        ends += span_ends and label == end_of_turn
    return ends


def _some(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
