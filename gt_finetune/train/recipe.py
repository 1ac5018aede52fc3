"""The training recipe: one readable loop over a causal LM — LoRA (default), QLoRA or full.

    gt-finetune run finetune-lora --var max_steps=60 --var method=lora

setup (model, packed rows and their order, optimizer) → resume from the last checkpoint if any →
loop (loss normalised by trained tokens across the accumulated micro-batches and ranks) →
checkpoint every `checkpoint_every` steps or `checkpoint_minutes` → save. The data order is a
pure function of the spec, and checkpoints carry optimizer, scheduler and RNG states, so a
killed run resumes to the same final weights as one never killed. Under torchrun each rank
takes its share of every step's micro-batches and accelerate keeps the gradients in sync.

This runs in the worker process (`worker.py`); `supervise.py` starts and watches it.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..dataset import load_split
from ..device import pick_device
from ..dataset.pack import collate, pack_rows
from ..errors import InputError
from ..models import resolve_model
from ..workspace import atomic_dir, content_id, is_complete, read_manifest, short_id, write_json, write_jsonl
from .attention import logits
from .checkpoint import checkpoint_ready, load_checkpoint, save_checkpoint
from .control import CANCEL, RunControl
from .curve import draw_loss_curve
from .memory import peak_rss
from .model import load_model

IGNORE = -100
METHODS = ("lora", "qlora", "full")
DTYPES = ("auto", "float32", "bfloat16", "float16")


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
    batch_size: int = 4  # rows per micro-batch (per rank): packed rows with `packing`, else examples
    grad_accum: int = 1
    warmup_steps: int = 5
    seed: int = 0
    checkpoint_every: int = 20  # steps
    checkpoint_minutes: float = 10.0  # also checkpoint when this much time passed since the last one
    packing: bool = True
    method: str = "lora"
    dtype: str = "auto"  # bfloat16 on a GPU that has it, else float32
    gradient_checkpointing: bool = False
    lora: LoraSpec = field(default_factory=LoraSpec)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "grad_accum", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise InputError(f"`learning_rate` must be between 0 and 1, got {self.learning_rate}")
        if self.method not in METHODS:
            raise InputError(f"`method` must be one of {', '.join(METHODS)}, got `{self.method}`")
        if self.dtype not in DTYPES:
            raise InputError(f"`dtype` must be one of {', '.join(DTYPES)}, got `{self.dtype}`")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSpec":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        lora = values.pop("lora", {}) or {}
        lora = LoraSpec(**{**lora, "target_modules": tuple(lora.get("target_modules", LoraSpec.target_modules))})
        return cls(**values, lora=lora)


@dataclass(frozen=True, slots=True)
class TrainManifest:
    id: str
    path: Path  # holds adapter/ (or model/ for full), metrics.jsonl, loss.png, manifest.json
    steps: int
    final_loss: float


def output_dir(spec: TrainSpec, *, dataset_dir: Path, home: Path) -> Path:
    """Where this spec's run on this dataset lives; the same inputs are the same run."""
    dataset = read_manifest(dataset_dir)
    model_dir = resolve_model(spec.base_model, home=home)
    return home / "train" / short_id(content_id({"spec": asdict(spec), "dataset": dataset["id"],
                                                 "model": str(model_dir)}))


def train(spec: TrainSpec, *, dataset_dir: Path, home: Path, control: RunControl | None = None,
          supervisor_pid: int | None = None, on_progress: Callable[[dict], None] | None = None) -> TrainManifest | dict:
    """Train on `<dataset>/train.jsonl`; reuse a complete run with the same inputs.

    Returns the finished run, or `{"status": "paused"|"cancelled", "step", "reason"}` when
    `control` asked it to stop, or the job's process (`supervisor_pid`) died (after a checkpoint).
    """
    import torch
    from accelerate import Accelerator

    out = output_dir(spec, dataset_dir=dataset_dir, home=home)
    if is_complete(out):
        return manifest_of(out)
    dataset = read_manifest(dataset_dir)
    model_dir = resolve_model(spec.base_model, home=home)
    work = out.parent / f"{out.name}.work"
    ckpt_dir = work / "checkpoint"

    # -- setup ---------------------------------------------------------------------------
    accelerator = Accelerator(cpu=pick_device() == "cpu")
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    main = accelerator.is_main_process
    torch.manual_seed(spec.seed)
    model = load_model(spec, model_dir, device=device)
    pad_id = _pad_id(model_dir)
    examples = load_split(dataset_dir, "train")
    rows = pack_rows(examples, dataset["spec"]["max_seq_len"]) if spec.packing else examples
    order = _data_order(len(rows), spec, world)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, spec))
    step, metrics = 0, []
    if checkpoint_ready(ckpt_dir):
        step, metrics = load_checkpoint(ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler, rank=rank)
        _say(main, f"resumed training from checkpoint at step {step}/{spec.max_steps}")
    model, optimizer = accelerator.prepare(model, optimizer)
    if main:
        work.mkdir(parents=True, exist_ok=True)
        _say(main, f"{len(examples)} examples in {len(rows)} {'packed rows' if spec.packing else 'rows'}; "
                   f"{spec.method}, {world} process(es) on {device}")
    log = _MetricsLog(work / "metrics.jsonl", main, keep=metrics)
    log.add({"kind": "start", "step": step, "max_steps": spec.max_steps, "processes": world})
    steps_per_epoch = max(1, math.ceil(len(rows) / (spec.batch_size * spec.grad_accum * world)))

    # -- loop ----------------------------------------------------------------------------
    model.train()
    start, last_save = time.monotonic(), time.monotonic()
    while step < spec.max_steps:
        request = _agreed_request(control, accelerator, supervisor_pid)
        if request:
            return _stop(request, step, ckpt_dir, log, accelerator, model, optimizer, scheduler, control)
        optimizer.zero_grad(set_to_none=True)
        first = (step * spec.grad_accum * world) + rank
        batches = [collate([rows[i] for i in order[(first + k * world) % len(order)]], pad_id,
                           attention_mask=not spec.packing, device=device) for k in range(spec.grad_accum)]
        local = torch.tensor([sum(trained_weight(b["labels"], b["weights"]) for b in batches),
                              sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)],
                             dtype=torch.float64, device=device)
        total = accelerator.reduce(local, reduction="sum")
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for k, b in enumerate(batches):
            with _sync_on_last(accelerator, model, last=k == len(batches) - 1):
                # DDP averages gradients over ranks; scaling by `world` makes that the sum, so the
                # step's gradient is that of the loss over every rank's tokens.
                keep = trained_positions(b["labels"])
                loss = weighted_loss(logits(model, b, keep=keep), b["labels"], b["weights"], float(total[0]),
                                     positions=keep) * world
                accelerator.backward(loss)
            loss_sum += loss.detach().double() / world
        loss_sum = accelerator.reduce(loss_sum, reduction="sum")
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        elapsed = time.monotonic() - start
        log.add({"kind": "step", "step": step, "max_steps": spec.max_steps, "loss": round(float(loss_sum), 5),
                 "lr": scheduler.get_last_lr()[0], "trained_tokens": int(total[1]), "elapsed_s": round(elapsed, 3)})
        if on_progress:
            on_progress(log.rows[-1])
        if step % steps_per_epoch == 0:
            log.add({"kind": "epoch", "step": step, "epoch": step // steps_per_epoch})
        due = step % spec.checkpoint_every == 0 or time.monotonic() - last_save > spec.checkpoint_minutes * 60
        if due and step < spec.max_steps:
            _checkpoint(ckpt_dir, step, log, accelerator, model, optimizer, scheduler)
            last_save = time.monotonic()

    # -- save ----------------------------------------------------------------------------
    measured = _peak_memory(accelerator, device)
    checksums = _rank_checksums(accelerator, model)
    if len(set(checksums)) > 1:
        raise RuntimeError(f"ranks ended with different weights ({checksums}); the run is not saved")
    if main:
        steps_rows = log.steps()
        final = sum(r["loss"] for r in steps_rows[-5:]) / len(steps_rows[-5:])
        with atomic_dir(out) as tmp:
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.save_pretrained(tmp / ("model" if spec.method == "full" else "adapter"))
            write_jsonl(tmp / "metrics.jsonl", log.rows)
            draw_loss_curve(steps_rows, tmp / "loss.png")
            write_json(tmp / "manifest.json", {
                "schema_version": 1, "stage": "train", "id": out.name, "inputs": [dataset["id"]],
                "spec": asdict(spec), "model_dir": str(model_dir), "steps": step, "final_loss": round(final, 5),
                "examples": len(examples), "rows": len(rows), "processes": world, "device": str(device),
                "measured": measured, "rank_checksums": checksums,
                "tokens_per_s": round(sum(r["trained_tokens"] for r in steps_rows) / max(steps_rows[-1]["elapsed_s"], 1e-9), 1)})
        shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
    return manifest_of(out)


def weighted_loss(logits, labels, weights, weight_sum: float, *, positions=None):
    """Next-token loss where each trained token counts by its weight (`weights` is [B, T]: its
    example's weight, as model-written text is down-weighted by the corpus health step), divided by
    the weighted token count of the whole accumulated step (`trained_weight` summed over its
    micro-batches and ranks) — so the loss is the same however the step is split or packed.

    `logits` are for every position, or only for `positions` (see `trained_positions`), where
    `logits[:, k]` predicts `labels[:, positions[k] + 1]`.
    """
    import torch

    if positions is None:
        positions = torch.arange(labels.shape[1] - 1, device=labels.device)
        logits = logits[:, :-1]
    targets, target_weights = labels[:, positions + 1], weights[:, positions + 1]
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                                  ignore_index=IGNORE, reduction="none")
    return (per_token * target_weights.reshape(-1)).sum() / max(weight_sum, 1e-8)


def trained_positions(labels):
    """Positions whose next token is trained in some row: the only ones that need logits. With a
    large vocabulary the LM head over every position (prompts, tool output, padding) is a fifth of
    the forward pass and most of its memory."""
    return (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(1)


def trained_weight(labels, weights) -> float:
    """The weighted count of the tokens `weighted_loss` trains in one micro-batch."""
    return float(((labels[:, 1:] != IGNORE) * weights[:, 1:]).sum())


def manifest_of(out: Path) -> TrainManifest:
    m = read_manifest(out)
    return TrainManifest(id=m["id"], path=out, steps=m["steps"], final_loss=m["final_loss"])


def _data_order(n: int, spec: TrainSpec, world: int = 1) -> list[list[int]]:
    """Micro-batches of row indices, reshuffled each epoch from the seed: a pure function of the
    spec, the rows and the number of ranks, so a resumed run sees exactly the batches the
    uninterrupted run would have."""
    needed = spec.max_steps * spec.grad_accum * world
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


def _agreed_request(control: RunControl | None, accelerator, supervisor_pid: int | None) -> dict | None:
    """A pause/cancel request every rank acts on at the same step (rank 0's view, broadcast). A
    trainer whose job process was killed pauses itself, so `resume` never meets two trainers."""
    request = control.pending() if control and accelerator.is_main_process else None
    if request is None and supervisor_pid and accelerator.is_main_process and not _alive(supervisor_pid):
        request = {"action": "pause", "reason": f"the job's process (pid {supervisor_pid}) is gone"}
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        request = broadcast_object_list([request])[0]
    return request


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop(request: dict, step: int, ckpt_dir: Path, log: "_MetricsLog", accelerator, model, optimizer, scheduler,
          control: RunControl) -> dict:
    if step:
        _checkpoint(ckpt_dir, step, log, accelerator, model, optimizer, scheduler)
    status = "cancelled" if request["action"] == CANCEL else "paused"
    outcome = {"status": status, "step": step, "reason": request.get("reason", "")}
    if accelerator.is_main_process:
        control.stopped(outcome)
    _say(accelerator.is_main_process, f"{status} at step {step}: {outcome['reason']}")
    accelerator.wait_for_everyone()
    return outcome


def _checkpoint(ckpt_dir: Path, step: int, log: "_MetricsLog", accelerator, model, optimizer, scheduler) -> None:
    save_checkpoint(ckpt_dir, step=step, metrics=log.rows, model=accelerator.unwrap_model(model),
                    optimizer=optimizer, scheduler=scheduler, rank=accelerator.process_index,
                    world=accelerator.num_processes, barrier=accelerator.wait_for_everyone)
    if accelerator.is_main_process:
        draw_loss_curve(log.steps(), ckpt_dir.parent / "loss.png")
        log.add({"kind": "checkpoint", "step": step, "path": str(ckpt_dir)})


def _sync_on_last(accelerator, model, *, last: bool):
    """Gradients are all-reduced once per step, on its last micro-batch."""
    import contextlib

    return contextlib.nullcontext() if last or accelerator.num_processes == 1 else accelerator.no_sync(model)


def _peak_memory(accelerator, device) -> dict:
    """Peak RSS of this process (max over ranks) and, on a GPU, peak allocated GPU memory."""
    import torch

    rss = peak_rss()
    gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    peaks = accelerator.reduce(torch.tensor([rss, gpu], dtype=torch.float64, device=device), reduction="max")
    return {"peak_rss": int(peaks[0]), "peak_gpu": int(peaks[1])}


def _rank_checksums(accelerator, model) -> list[str]:
    """sha256 of the trainable weights on every rank: they must agree, or data-parallel training
    silently diverged."""
    import hashlib

    from accelerate.utils import gather_object

    digest = hashlib.sha256()
    for name, p in accelerator.unwrap_model(model).named_parameters():
        if p.requires_grad:
            digest.update(name.encode() + p.detach().float().cpu().numpy().tobytes())
    return gather_object([digest.hexdigest()])


def _pad_id(model_dir: Path) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def _say(main: bool, text: str) -> None:
    if main:
        print(f"  {text}", file=sys.stderr, flush=True)


class _MetricsLog:
    """The run's rows, appended to `metrics.jsonl` as they happen (rank 0), so `supervise` and
    `status` can follow a live run; a resumed run starts from the checkpoint's rows."""

    def __init__(self, path: Path, main: bool, *, keep: list[dict]):
        self.path, self.main = path, main
        self.rows = [r for r in keep if r.get("kind") != "start"]  # each run of the trainer adds its own
        if main:
            write_jsonl(path, self.rows)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self.main:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()

    def steps(self) -> list[dict]:
        return [r for r in self.rows if r.get("kind", "step") == "step"]
