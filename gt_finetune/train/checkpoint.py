"""Complete, atomic training checkpoints: trainable weights, optimizer, scheduler, RNG states, step.

The data order is a pure function of the spec and the step (see `recipe._data_order`), so the
step is the data-loader position. Trainable weights are saved by name whatever the method (LoRA
adapter or every weight for a full fine-tune). Each rank keeps its own RNG states (dropout draws
differ per rank); rank 0 writes the rest, and the checkpoint only counts once its manifest lands.
A new checkpoint is built beside the last one, which steps aside only when the new one is
complete, so a save that fails (a full disk) or is killed leaves the last one loadable.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import ExternalError
from ..workspace import atomic_dir, is_complete, read_manifest, write_bytes, write_json

NO_SPACE = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}


def save_checkpoint(path: Path, *, step: int, metrics: list[dict], model, optimizer, scheduler, rank: int = 0,
                    world: int = 1, barrier: Callable[[], None] = lambda: None) -> None:
    """Write the checkpoint of `step` at `path`, replacing the last one only once it is whole.

    Raises:
        ExternalError: the disk (or a quota or file size limit) ran out mid-save; the last
            checkpoint is intact.
    """
    from safetensors.torch import save_file

    rng_dir = path.parent / "rng"
    previous = read_manifest(path)["step"] if checkpoint_ready(path) else None
    try:
        write_bytes(rng_dir / f"step{step}-rank{rank}.pt", _to_bytes(_rng_state()))
        barrier()  # every rank's RNG state is on disk before the checkpoint is published
        if rank == 0:
            with atomic_dir(path) as tmp:
                trainable = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()
                             if p.requires_grad}
                save_file(trainable, str(tmp / "trainable.safetensors"))
                _torch_save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                            tmp / "state.pt")
                for r in range(world):
                    (tmp / f"rng-rank{r}.pt").write_bytes((rng_dir / f"step{step}-rank{r}.pt").read_bytes())
                write_json(tmp / "manifest.json", {"schema_version": 2, "stage": "checkpoint", "step": step,
                                                   "world": world, "metrics": metrics})
                if path.exists():
                    os.replace(path, _aside(path))  # last: atomic_dir renames the new one in next
            shutil.rmtree(_aside(path), ignore_errors=True)
            for old in rng_dir.glob("*.pt"):
                old.unlink(missing_ok=True)
    except Exception as exc:
        code = _errno(exc)
        if code not in NO_SPACE:
            raise
        free = shutil.disk_usage(path.parent).free
        kept = (f"the checkpoint of step {previous} is intact" if previous is not None
                else "there is no earlier checkpoint, so training starts over")
        raise ExternalError(f"{NO_SPACE[code]} while writing checkpoint step {step} to {path}: "
                            f"{_size(free)} free; {kept}",
                            hint=f"free space on the disk holding {path.parent}, then resume the job"
                                 + (f": training goes on from step {previous}" if previous is not None else ""),
                            code="disk_full") from exc
    barrier()


def checkpoint_ready(path: Path) -> bool:
    """Whether a complete checkpoint is at `path`. A save killed between setting the last one
    aside and renaming the new one in left none under the name: the last one is put back.
    Callers check this before loading or saving."""
    aside = _aside(path)
    if aside.exists() and not path.exists() and is_complete(aside):
        with contextlib.suppress(FileNotFoundError):  # another rank put it back first
            os.replace(aside, path)
    elif aside.exists() and is_complete(path):
        shutil.rmtree(aside, ignore_errors=True)  # the swap was done; only its clean-up was lost
    return is_complete(path)


def _aside(path: Path) -> Path:
    return path.parent / f".{path.name}.previous"


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


def _torch_save(obj, path: Path) -> None:
    """`torch.save`, but a failed write raises its OSError: torch reports it as `unexpected pos`."""
    import torch

    with open(path, "wb") as f:
        sink = _Sink(f)
        try:
            torch.save(obj, sink)
        except RuntimeError as exc:
            if sink.error is None:
                raise
            raise sink.error from exc


class _Sink(io.RawIOBase):
    """A writable file that remembers the OSError its write raised."""

    def __init__(self, f):
        super().__init__()
        self.f, self.error = f, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise


def _errno(exc: BaseException) -> int | None:
    """The errno behind a failed write: an OSError's own, or the `(os error 28)` safetensors quotes."""
    if isinstance(exc, OSError):
        return exc.errno
    found = re.search(r"\(os error (\d+)\)", str(exc))
    return int(found.group(1)) if found else None


def _size(n: float) -> str:
    units = ("bytes", "KB", "MB", "GB", "TB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} {units[i]}" if i == 0 else f"{n:.1f} {units[i]}"
