"""LoRA recipe: one readable loop over a causal LM with a peft adapter.

    gt-finetune run finetune-lora --var max_steps=60

setup (model, adapter, packed rows and their order, optimizer) → resume from the last checkpoint
if any → loop (loss normalised by trained tokens across the accumulated micro-batches) → checkpoint
every `checkpoint_every` steps → save the adapter. A killed run resumes from its last checkpoint.
With `packing` (the default) a micro-batch is `batch_size` rows of examples packed up to the
dataset's `max_seq_len`, kept apart by position ids (see `dataset/pack.py`); without it, one
example per row, padded, with an attention mask.
"""
from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..dataset import load_split
from ..dataset.pack import collate, logits, pack_rows
from ..errors import InputError
from ..models import resolve_model
from ..workspace import (atomic_dir, content_id, is_complete, read_manifest, short_id, write_json,
                         write_jsonl)
from .checkpoint import load_checkpoint, save_checkpoint
from ..device import pick_device

IGNORE = -100


@dataclass(frozen=True, slots=True)
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True, slots=True)
class TrainSpec:
    base_model: str
    max_steps: int = 60
    learning_rate: float = 3e-4
    batch_size: int = 4  # rows per micro-batch: packed rows with `packing`, else examples
    grad_accum: int = 1
    warmup_steps: int = 5
    seed: int = 0
    checkpoint_every: int = 20
    packing: bool = True
    lora: LoraSpec = field(default_factory=LoraSpec)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "grad_accum", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise InputError(f"`learning_rate` must be between 0 and 1, got {self.learning_rate}")


@dataclass(frozen=True, slots=True)
class TrainManifest:
    id: str
    path: Path  # holds adapter/, metrics.jsonl, manifest.json
    steps: int
    final_loss: float


ProgressFn = Callable[[dict], None]


def train(spec: TrainSpec, *, dataset_dir: Path, home: Path, on_progress: ProgressFn | None = None) -> TrainManifest:
    """Train a LoRA adapter on `<dataset>/train.jsonl`; reuse a complete run with the same inputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dataset = read_manifest(dataset_dir)
    model_dir = resolve_model(spec.base_model, home=home)
    cid = content_id({"spec": asdict(spec), "dataset": dataset["id"], "model": str(model_dir)})
    out = home / "train" / short_id(cid)
    if is_complete(out):
        return _manifest_of(out)
    ckpt_dir = out.parent / f"{out.name}.checkpoint"

    # -- setup ---------------------------------------------------------------------------
    torch.manual_seed(spec.seed)
    device = pick_device()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model = get_peft_model(model, LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha,
                                             lora_dropout=spec.lora.dropout,
                                             target_modules=list(spec.lora.target_modules), task_type="CAUSAL_LM"))
    pad_id = _pad_id(model_dir)
    examples = load_split(dataset_dir, "train")
    rows = examples
    if spec.packing:
        capacity = dataset["spec"]["max_seq_len"]
        rows = pack_rows(examples, capacity)
        print(f"  packed {len(examples)} examples into {len(rows)} rows of at most {capacity} tokens", flush=True)
    order = _data_order(len(rows), spec)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, spec))
    step, metrics = 0, []
    if is_complete(ckpt_dir):
        step, metrics = load_checkpoint(ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler)
        print(f"  resumed training from checkpoint at step {step}/{spec.max_steps}", flush=True)

    # -- loop ----------------------------------------------------------------------------
    model.train()
    start = time.monotonic()
    while step < spec.max_steps:
        optimizer.zero_grad(set_to_none=True)
        batches = [collate([rows[i] for i in order[(step * spec.grad_accum + k) % len(order)]], pad_id,
                           attention_mask=not spec.packing, device=device)
                   for k in range(spec.grad_accum)]
        n_trained = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
        weight_sum = sum(trained_weight(b["labels"], b["weights"]) for b in batches)
        loss_sum = 0.0
        for b in batches:
            loss = weighted_loss(logits(model, b), b["labels"], b["weights"], weight_sum)
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        elapsed = time.monotonic() - start
        row = {"step": step, "loss": round(loss_sum, 5), "lr": scheduler.get_last_lr()[0],
               "trained_tokens": n_trained, "elapsed_s": round(elapsed, 2)}
        metrics.append(row)
        if on_progress:
            on_progress({**row, "max_steps": spec.max_steps})
        if step % spec.checkpoint_every == 0 and step < spec.max_steps:
            save_checkpoint(ckpt_dir, step=step, metrics=metrics, model=model, optimizer=optimizer, scheduler=scheduler)

    # -- save ----------------------------------------------------------------------------
    final = sum(r["loss"] for r in metrics[-5:]) / len(metrics[-5:])
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp / "adapter")
        write_jsonl(tmp / "metrics.jsonl", metrics)
        write_json(tmp / "manifest.json", {
            "schema_version": 1, "stage": "train", "id": cid, "inputs": [dataset["id"]], "spec": asdict(spec),
            "model_dir": str(model_dir), "steps": step, "final_loss": round(final, 5),
            "examples": len(examples), "rows": len(rows)})
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return _manifest_of(out)


def weighted_loss(logits, labels, weights, weight_sum: float):
    """Next-token loss where each trained token counts by its weight (`weights` is [B, T]: its
    example's weight, as model-written text is down-weighted by the corpus health step), divided by
    the weighted token count of the whole accumulated step (`trained_weight` summed over its
    micro-batches) — so the loss is the same however the step is split or packed into rows."""
    import torch

    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels[:, 1:],
                                                  ignore_index=IGNORE, reduction="none")
    return (per_token * weights[:, 1:]).sum() / max(weight_sum, 1e-8)


def trained_weight(labels, weights) -> float:
    """The weighted count of the tokens `weighted_loss` trains in one micro-batch."""
    return float(((labels[:, 1:] != IGNORE) * weights[:, 1:]).sum())


def _data_order(n: int, spec: TrainSpec) -> list[list[int]]:
    """Micro-batches of row indices (packed rows, or examples without packing), reshuffled each
    epoch from the seed: a pure function of the spec and the rows, so a resumed run sees exactly
    the batches the uninterrupted run would have."""
    needed = spec.max_steps * spec.grad_accum
    per_epoch = max(1, math.ceil(n / spec.batch_size))
    rng = random.Random(spec.seed)
    order: list[list[int]] = []
    while len(order) < needed:
        idx = list(range(n))
        rng.shuffle(idx)
        order += [idx[i * spec.batch_size:(i + 1) * spec.batch_size] for i in range(per_epoch)]
    return order


def _lr_factor(step: int, spec: TrainSpec) -> float:
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    return max(0.0, (spec.max_steps - step) / max(1, spec.max_steps - spec.warmup_steps))


def _pad_id(model_dir: Path) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def _manifest_of(out: Path) -> TrainManifest:
    m = read_manifest(out)
    return TrainManifest(id=m["id"], path=out, steps=m["steps"], final_loss=m["final_loss"])
