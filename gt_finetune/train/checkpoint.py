"""Complete, atomic training checkpoints: adapter, optimizer, scheduler, RNG states, step.

The data order is a pure function of the spec and the step (see `lora._data_order`), so the
step is the data-loader position.
"""
from __future__ import annotations

import random
from pathlib import Path

from ..workspace import atomic_dir, read_manifest, write_json


def save_checkpoint(path: Path, *, step: int, metrics: list[dict], model, optimizer, scheduler) -> None:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    with atomic_dir(path) as tmp:
        adapter = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(adapter, str(tmp / "adapter.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                   tmp / "state.pt")
        write_json(tmp / "manifest.json", {"schema_version": 1, "stage": "checkpoint", "step": step,
                                           "metrics": metrics})


def load_checkpoint(path: Path, *, model, optimizer, scheduler) -> tuple[int, list[dict]]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter.safetensors")))
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
    manifest = read_manifest(path)
    return manifest["step"], manifest["metrics"]
