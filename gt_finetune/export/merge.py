"""Fold a training run's adapter into its base: one plain model folder any runtime can load.

The base is loaded in float32 — for a QLoRA run too: the adapter is merged into the full-precision
weights, never into the 4-bit ones the run trained against, which would bake the quantisation
error into every weight. A full fine-tune's `model/` already is the merged model; it is re-saved
with the tokenizer beside it. The merged folder's `generation_config.json` lists EOS and the
dataset's end-of-turn token as `eos_token_id`, so `generate()` stops where the model was trained
to stop.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import InputError

MERGED = "merged"
ADAPTER = "adapter"


def load_trainer_side(train_dir: Path, trained: dict):
    """The model as the trainer left it: base + adapter through peft (not merged), or the full
    fine-tune's own weights, in float32 — the reference every exported file must reproduce."""
    import torch
    from transformers import AutoModelForCausalLM

    if trained["spec"]["method"] == "full":
        return AutoModelForCausalLM.from_pretrained(train_dir / "model", dtype=torch.float32, local_files_only=True)
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(_full_precision_base(trained), dtype=torch.float32,
                                                local_files_only=True)
    return PeftModel.from_pretrained(base, train_dir / ADAPTER, local_files_only=True)


def merge_run(train_dir: Path, trained: dict, out: Path, *, stop: list[int]) -> dict:
    """Write `out/merged/` (weights, config, tokenizer, chat template, and a generation config
    stopping on `stop` as well as on whatever the base stopped on) and, for an adapter run,
    `out/adapter/`; return what was merged, for the manifest.

    Raises:
        InputError: the run folder lacks its adapter (or model), or the base is stored quantised.
    """
    from transformers import AutoTokenizer

    method = trained["spec"]["method"]
    weights = train_dir / ("model" if method == "full" else ADAPTER)
    if not weights.is_dir():
        raise InputError(f"training run `{train_dir}` has no `{weights.name}/` folder for its `{method}` model",
                         hint="re-run the train step; a complete run holds it beside its manifest.json")
    model = load_trainer_side(train_dir, trained)
    if method != "full":
        model = model.merge_and_unload()
    known = model.generation_config.eos_token_id
    stop = sorted(set(stop) | set(known if isinstance(known, list) else [known] if known is not None else []))
    model.generation_config.eos_token_id = stop  # what the base already stopped on, and the trained end of turn
    merged = out / MERGED
    model.save_pretrained(merged, safe_serialization=True)
    AutoTokenizer.from_pretrained(trained["model_dir"], local_files_only=True).save_pretrained(merged)
    if method != "full":
        shutil.copytree(weights, out / ADAPTER)
    return {"method": method, "base": trained["model_dir"], "dtype": "float32",
            "from": str(weights), "stop_token_ids": stop}


def _full_precision_base(trained: dict) -> Path:
    """The base folder, checked to hold full-precision weights (QLoRA quantises on load, so its
    base folder is the same unquantised one)."""
    base = Path(trained["model_dir"])
    config = base / "config.json"
    if not config.is_file():
        raise InputError(f"the base model `{base}` of training run `{trained['id']}` is gone",
                         hint="restore the base model folder (or re-run `gt-finetune run` to convert it again)")
    if "quantization_config" in json.loads(config.read_text(encoding="utf-8")):
        raise InputError(f"the base model `{base}` is stored quantised; merging an adapter into quantised "
                         "weights would bake their rounding error into the merged model",
                         hint="train on the full-precision checkpoint of this model")
    return base
