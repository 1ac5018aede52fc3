"""Dataset stage: canonical records → token ids + labels with the base model's own chat template.

Labels cover assistant tokens only, end-of-turn included. Masks are derived without knowing
the template: render the conversation up to a turn with the generation prompt, render it with
the turn, and train the difference (DESIGN.md §5.1). The split is by session/bead, never by
turn, so no held-out conversation leaks into training.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..corpus import load_records
from ..errors import InputError
from ..models import resolve_model
from .segment import segment
from ..workspace import (atomic_dir, content_id, is_complete, read_jsonl, read_manifest, short_id, write_json,
                         write_jsonl)

IGNORE = -100
BUILDER_VERSION = 2  # part of the dataset id: a change in how examples are built rebuilds cached datasets


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    base_model: str
    max_seq_len: int = 512
    eval_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.eval_fraction < 1:
            raise InputError(f"`eval_fraction` must be between 0 and 1, got {self.eval_fraction}")
        if self.max_seq_len < 32:
            raise InputError(f"`max_seq_len` must be at least 32, got {self.max_seq_len}")


@dataclass(frozen=True, slots=True)
class DatasetManifest:
    id: str
    path: Path
    train: int
    eval: int
    dropped: int


def build_dataset(spec: DatasetSpec, *, corpus_dir: Path, home: Path) -> DatasetManifest:
    """Write `<home>/dataset/<id>/{train,eval}.jsonl` + manifest; reuse a complete one.

    Raises:
        InputError: too few usable examples to hold any out.
    """
    corpus_manifest = read_manifest(corpus_dir)
    model_dir = resolve_model(spec.base_model, home=home)
    cid = content_id({"spec": asdict(spec), "corpus": corpus_manifest["id"], "model": str(model_dir),
                      "builder": BUILDER_VERSION})
    out = home / "dataset" / short_id(cid)
    if is_complete(out):
        return _manifest_of(out)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise InputError(f"the tokenizer in {model_dir} has no chat template",
                         hint="use an instruct/chat model, e.g. `--var base_model=smollm2-135m-instruct`")
    examples, dropped = [], []
    native_tools = "tool_calls" in tokenizer.chat_template
    def render(window: list[dict]) -> list[dict]:
        return window if native_tools else fold_tool_calls(window)

    def fits(window: list[dict]) -> bool:
        return len(_render(tokenizer, render(window), add_generation_prompt=False)) <= spec.max_seq_len

    for record in load_records(corpus_dir):
        meta = record["meta"]
        rid = meta.get("bead_id") or meta.get("session") or meta["content_hash"].split(":", 1)[-1][:12]
        windows, problems = segment(record["messages"], fits)
        dropped += [{"id": rid, "reason": reason} for reason in problems]
        for k, window in enumerate(windows):
            wid = rid if len(windows) == 1 else f"{rid}#{k + 1}"
            messages = render(window)
            example = tokenize({**record, "messages": messages}, tokenizer, max_seq_len=spec.max_seq_len)
            if isinstance(example, str):
                dropped.append({"id": wid, "reason": example})
                continue
            examples.append({"id": wid, "group": meta.get("session") or rid, **example, "messages": messages,
                             "weight": float(meta.get("weight", 1.0))})
    train, held_out = split_by_group(examples, eval_fraction=spec.eval_fraction, seed=spec.seed)
    if not train or not held_out:
        raise InputError(f"{len(examples)} usable examples in corpus {corpus_dir.name}: too few to train and hold some out",
                         hint="harvest more history, or lower `--var eval_fraction=`")
    audit = mask_audit(train + held_out, tokenizer)
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "train.jsonl", train)
        write_jsonl(tmp / "eval.jsonl", held_out)
        write_jsonl(tmp / "dropped.jsonl", dropped)
        write_json(tmp / "manifest.json", {
            "schema_version": 1, "stage": "dataset", "id": cid, "inputs": [corpus_manifest["id"]],
            "spec": asdict(spec), "model_dir": str(model_dir),
            "counts": {"train": len(train), "eval": len(held_out), "dropped": len(dropped)},
            "held_out_groups": sorted({e["group"] for e in held_out}), "mask_audit": audit})
    if dropped:
        print(f"  dropped {len(dropped)} examples (e.g. {dropped[0]['id']}: {dropped[0]['reason']}); "
              f"see {out / 'dropped.jsonl'}", file=sys.stderr)
    return _manifest_of(out)


def fold_tool_calls(messages: list[dict]) -> list[dict]:
    """For chat templates without tool support: calls become `<tool_call>` JSON in the assistant's
    text and results become user turns wrapped in `<tool_response>` (documented in docs/formats.md)."""
    out = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = "\n".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"],
                                                           "arguments": json.loads(c["function"]["arguments"] or "{}")},
                                                          sort_keys=True) + "\n</tool_call>" for c in m["tool_calls"])
            text = f"{m.get('content') or ''}\n{calls}".strip()
            out.append({k: v for k, v in {**m, "content": text}.items() if k != "tool_calls"})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response name=\"{m.get('name', '')}\">\n"
                                                   f"{m.get('content') or ''}\n</tool_response>"})
        else:
            out.append(m)
    merged: list[dict] = []
    for m in out:
        if merged and m["role"] == "user" and merged[-1]["role"] == "user":
            merged[-1] = {**merged[-1], "content": merged[-1]["content"] + "\n" + m["content"]}
        else:
            merged.append(m)
    return merged


def tokenize(record: dict, tokenizer, *, max_seq_len: int) -> dict | str:
    """Token ids and labels for one conversation, or why it cannot be used whole."""
    messages = record["messages"]
    full_ids = _render(tokenizer, messages, add_generation_prompt=False)
    labels = [IGNORE] * len(full_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("train") is False:
            continue
        prefix = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if upto[: len(prefix)] != prefix or full_ids[: len(upto)] != upto:
            return f"chat template renders turn {i} differently once later turns follow"
        labels[len(prefix): len(upto)] = upto[len(prefix):]
    if len(full_ids) > max_seq_len:
        return f"{len(full_ids)} tokens, more than max_seq_len {max_seq_len} (never cut mid-turn)"
    if all(label == IGNORE for label in labels):
        return "no assistant token to train"
    return {"input_ids": full_ids, "labels": labels}


def _render(tokenizer, messages: list[dict], *, add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def split_by_group(examples: list[dict], *, eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    groups = sorted({e["group"] for e in examples})
    random.Random(seed).shuffle(groups)
    n_eval = max(1, round(len(groups) * eval_fraction)) if len(groups) > 1 else 0
    held = set(groups[:n_eval])
    return [e for e in examples if e["group"] not in held], [e for e in examples if e["group"] in held]


def mask_audit(examples: list[dict], tokenizer) -> dict:
    """Share of trained tokens, and whether each trained turn ends on a trained end-of-turn token."""
    eos = tokenizer.eos_token_id
    total = sum(len(e["input_ids"]) for e in examples)
    trained = sum(sum(1 for label in e["labels"] if label != IGNORE) for e in examples)
    missing_eos = [e["id"] for e in examples if eos not in [label for label in e["labels"] if label != IGNORE]]
    if missing_eos:
        raise InputError(f"{len(missing_eos)} examples never train the end-of-turn token "
                         f"`{tokenizer.eos_token}` (first: {missing_eos[0]})",
                         hint="the model would not learn to stop; check the chat template's end-of-turn token")
    return {"tokens": total, "trained_tokens": trained, "trained_share": round(trained / max(total, 1), 4),
            "eos_token": tokenizer.eos_token, "pad_is_eos": tokenizer.pad_token_id == eos}


def load_split(dataset_dir: Path, split: str) -> list[dict]:
    return read_jsonl(dataset_dir / f"{split}.jsonl")


def _manifest_of(out: Path) -> DatasetManifest:
    m = read_manifest(out)
    return DatasetManifest(id=m["id"], path=out, train=m["counts"]["train"], eval=m["counts"]["eval"],
                           dropped=m["counts"]["dropped"])
