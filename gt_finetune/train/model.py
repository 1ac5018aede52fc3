"""The model a recipe trains: the base with a LoRA adapter, a 4-bit base with one (QLoRA), or
every weight (full), in the dtype the device does best, optionally with gradient checkpointing;
packed rows run segment attention (see `attention`)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import InputError
from .attention import SEGMENTS
from .attention import register as register_segment_attention


def load_model(spec, model_dir: Path, *, device):
    """Raises:
        InputError: QLoRA without CUDA or bitsandbytes; a dtype the device cannot run.
    """
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(spec.dtype, device)
    kwargs = {"dtype": dtype}
    if spec.packing:
        register_segment_attention()
        kwargs["attn_implementation"] = SEGMENTS
    if spec.method == "qlora":
        if device.type != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
            raise InputError("QLoRA needs a CUDA GPU and the `bitsandbytes` package",
                             hint="install bitsandbytes on a CUDA machine, or use `--var method=lora`")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, **kwargs)
    if spec.method != "qlora":
        model = model.to(device)
    model.config.use_cache = False
    if spec.method == "full":
        if spec.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    elif spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = spec.lora
    return get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))


def resolve_dtype(name: str, device):
    """`auto`: bfloat16 on a GPU that supports it, else float32 (CPU half precision is slow and lossy)."""
    import torch

    if name == "auto":
        cuda = device.type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    if name in ("bfloat16", "float16") and device.type == "cpu":
        raise InputError(f"`dtype={name}` on the CPU is slow and loses precision",
                         hint="use `--var dtype=float32` (or `auto`) on a CPU")
    return getattr(torch, name)
