"""Complete, atomic training checkpoints: trainable weights, optimizer, scheduler, RNG states, step.

The data order is a pure function of the spec and the step (see `recipe._data_order`), so the
step is the data-loader position. Trainable weights are saved by name whatever the method (LoRA
adapter or every weight for a full fine-tune). Each rank keeps its own RNG states (dropout draws
differ per rank); rank 0 writes the rest, and the checkpoint only counts once its manifest lands.
"""
from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path

from ..workspace import atomic_dir, read_manifest, write_bytes, write_json


def save_checkpoint(path: Path, *, step: int, metrics: list[dict], model, optimizer, scheduler, rank: int = 0,
                    world: int = 1, barrier: Callable[[], None] = lambda: None) -> None:
    import torch
    from safetensors.torch import save_file

    rng_dir = path.parent / "rng"
    write_bytes(rng_dir / f"step{step}-rank{rank}.pt", _to_bytes(_rng_state()))
    barrier()  # every rank's RNG state is on disk before the checkpoint is published
    if rank == 0:
        with atomic_dir(path) as tmp:
            trainable = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
            save_file(trainable, str(tmp / "trainable.safetensors"))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "state.pt")
            for r in range(world):
                (tmp / f"rng-rank{r}.pt").write_bytes((rng_dir / f"step{step}-rank{r}.pt").read_bytes())
            write_json(tmp / "manifest.json", {"schema_version": 2, "stage": "checkpoint", "step": step,
                                               "world": world, "metrics": metrics})
        for old in rng_dir.glob("*.pt"):
            old.unlink(missing_ok=True)
    barrier()


def load_checkpoint(path: Path, *, model, optimizer, scheduler, rank: int = 0) -> tuple[int, list[dict]]:
    """Restore everything `save_checkpoint` wrote; return (step, metrics rows so far).

    Raises:
        ValueError: the checkpoint's weights do not fit this model (another base or method).
    """
    import torch
    from safetensors.torch import load_file

    trainable = load_file(str(path / "trainable.safetensors"))
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in trainable]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {len(missing)} trainable weights of this model "
                         f"(e.g. {missing[0]}); it was made for another model or method")
    model.load_state_dict(trainable, strict=False)
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = path / f"rng-rank{rank}.pt"
    _set_rng_state(torch.load(rng_file if rng_file.is_file() else path / "rng-rank0.pt", weights_only=False))
    manifest = read_manifest(path)
    return manifest["step"], manifest["metrics"]


def _rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_bytes(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
