"""Write a merged model as GGUF, the file llama.cpp, Ollama and LM Studio run.

Llama-family models (SmolLM2 included) and Qwen2 only: their tensors map one to one onto
llama.cpp's names (taken from the `gguf` package's own name map), and llama.cpp's conventions for
them are few — llama's q/k rows are permuted into the interleaved rotary layout llama.cpp computes
in, Qwen2's are not, and Qwen2 carries q/k/v biases. Anything else is refused rather than written
with a guess. Vectors (norms, biases) stay float32, as llama.cpp's converter keeps them; matrices
are float16 in `f16`, and 8-bit blocks in `q8_0` where a row divides into blocks of 32.

The tokenizer goes in as llama.cpp's byte-level BPE (`gpt2`): every token in id order, its type,
the merges, the special ids, whether BOS is added, the chat template, and the dataset's end-of-turn
token as EOT, so a runtime stops where the model was trained to stop.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

GGUF_TYPES = ("f16", "q8_0")
ARCHITECTURES = ("llama", "qwen2")  # transformers `model_type`, also llama.cpp's architecture name
Q8_BLOCK = 32

# A tokenizer.json pre-tokenizer step splitting text with GPT-2's regex (llama.cpp's `gpt-2` pre-tokenizer).
_GPT2_SPLIT = {"type": "ByteLevel", "use_regex": True}


def check_supported(config: dict, *, where: Path) -> None:
    """Refuse a model this writer cannot express exactly, before any work is done.

    Raises:
        InputError: another architecture, RoPE scaling, or a bias llama.cpp's llama has no slot for.
    """
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise InputError(f"GGUF export supports {' and '.join(f'`{a}`' for a in ARCHITECTURES)} models; "
                         f"`{where}` is `{model_type}`",
                         hint="export with `--format safetensors` to skip GGUF, or train a Llama-family or "
                              "Qwen2 base model")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise InputError(f"`{where}` uses RoPE scaling `{rope_type}`, which the GGUF export does not write",
                         hint="export with `--format safetensors` to skip GGUF")
    if model_type == "llama" and (config.get("attention_bias") or config.get("mlp_bias")):
        raise InputError(f"`{where}` is a llama with attention or MLP biases, which the GGUF export does not write",
                         hint="export with `--format safetensors` to skip GGUF")


def write_gguf(merged_dir: Path, path: Path, *, gguf_type: str, end_of_turn_id: int | None, name: str,
               base_license: str | None = None) -> None:
    """Write `merged_dir` (a saved transformers model with its tokenizer) to `path` as `gguf_type`;
    `base_license` is the base model's, carried into `general.license` when known.

    Raises:
        InputError: a model `check_supported` refuses, or a tokenizer llama.cpp would split differently.
    """
    import gguf
    import numpy as np
    from transformers import AutoTokenizer

    config = json.loads((merged_dir / "config.json").read_text(encoding="utf-8"))
    check_supported(config, where=merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir, local_files_only=True)
    arch = config["model_type"]
    writer = gguf.GGUFWriter(path, arch)
    q8 = gguf_type == "q8_0"
    writer.add_type("model")
    writer.add_name(name)
    if base_license:
        writer.add_license(base_license)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.MOSTLY_F16)
    if q8:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_hyperparameters(writer, config)
    _add_tokenizer(writer, tokenizer, merged_dir, config["vocab_size"], end_of_turn_id)
    # Tensor infos first, then the data one tensor at a time: memory stays at one tensor, not a model.
    tensors = gguf_tensors(merged_dir, config)
    for tensor in tensors:
        kind = tensor_type(tensor.shape, gguf_type)
        byte_shape = gguf.quant_shape_to_byte_shape(tensor.shape, kind)
        writer.add_tensor_info(tensor.gguf_name, byte_shape, np.dtype(np.uint8), math.prod(byte_shape), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in tensors:
        writer.write_tensor_data(encode(tensor.load(), tensor_type(tensor.shape, gguf_type)))
    writer.close()


@dataclass(frozen=True, slots=True)
class Tensor:
    """One weight of the merged model under its llama.cpp name, read only when `load()`ed."""
    gguf_name: str
    hf_name: str
    file: Path
    shape: tuple[int, ...]
    heads: int  # rotary permutation of llama q/k rows over this many heads; 0: none

    def load(self):
        """The weight as float32, in llama.cpp's layout."""
        from safetensors import safe_open

        with safe_open(self.file, framework="np") as f:
            array = f.get_tensor(self.hf_name).astype("float32")
        return permute_rotary(array, self.heads) if self.heads else array


def gguf_tensors(merged_dir: Path, config: dict) -> list[Tensor]:
    """Every weight of the merged model, named as llama.cpp names it (the `gguf` package's map).

    A tied output head is left out: llama.cpp (and transformers reading a GGUF) reuse `token_embd`.

    Raises:
        InputError: a weight llama.cpp has no name for.
    """
    import gguf
    from safetensors import safe_open

    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[config["model_type"]]
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    llama = config["model_type"] == "llama"
    heads = {".attn_q.weight": config["num_attention_heads"],
             ".attn_k.weight": config.get("num_key_value_heads") or config["num_attention_heads"]}
    tensors = []
    for file in sorted(merged_dir.glob("*.safetensors")):
        with safe_open(file, framework="np") as f:
            for hf_name in f.keys():
                if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue
                gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise InputError(f"tensor `{hf_name}` in `{file}` has no llama.cpp name for "
                                     f"`{config['model_type']}`", hint="export with `--format safetensors` to "
                                                                       "skip GGUF")
                rotary = next((n for suffix, n in heads.items() if gguf_name.endswith(suffix)), 0) if llama else 0
                tensors.append(Tensor(gguf_name, hf_name, file, tuple(f.get_slice(hf_name).get_shape()), rotary))
    return tensors


def permute_rotary(weight, heads: int):
    """llama.cpp computes rotary embeddings on interleaved pairs, transformers' Llama on halves:
    within each head, rows (0..d/2, d/2..d) become (0, d/2, 1, d/2+1, …) — the permutation of
    llama.cpp's `convert_hf_to_gguf.py`, which transformers' GGUF loader undoes."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def tensor_type(shape: tuple[int, ...], gguf_type: str):
    """The GGML type a weight is stored as: vectors F32; matrices F16, or Q8_0 in `q8_0` when rows
    split into blocks of 32 (llama.cpp's converter falls back to F16 the same way)."""
    import gguf

    kinds = gguf.GGMLQuantizationType
    if len(shape) == 1:
        return kinds.F32
    return kinds.Q8_0 if gguf_type == "q8_0" and shape[-1] % Q8_BLOCK == 0 else kinds.F16


def encode(array, kind):
    """`array` as the bytes of GGML type `kind`."""
    import gguf

    return gguf.quants.quantize(array, kind).view("uint8")


def pre_tokenizer(merged_dir: Path) -> str:
    """llama.cpp's name for how this tokenizer splits text before BPE (`tokenizer.ggml.pre`).

    Raises:
        InputError: a split llama.cpp would not reproduce.
    """
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_SPLIT

    data = json.loads((merged_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if data.get("model", {}).get("type") != "BPE":
        raise InputError(f"the tokenizer in `{merged_dir}` is `{data.get('model', {}).get('type')}`, not byte-level BPE; "
                         "the GGUF export writes BPE vocabularies only",
                         hint="export with `--format safetensors` to skip GGUF")
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    shape = [{k: s.get(k) for k in ("type", "use_regex", "individual_digits")} for s in steps]
    if len(steps) == 1 and _matches(steps[0], _GPT2_SPLIT):
        return "gpt-2"
    if len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits") \
            and _matches(steps[1], _GPT2_SPLIT):
        return "smollm"
    if len(steps) == 2 and steps[0].get("type") == "Split" and steps[0].get("pattern", {}).get("Regex") == QWEN2_SPLIT \
            and _matches(steps[1], {"type": "ByteLevel", "use_regex": False}):
        return "qwen2"
    raise InputError(f"the tokenizer in `{merged_dir}` splits text as {json.dumps(shape)}, which the GGUF export "
                     "cannot name for llama.cpp (it knows GPT-2, SmolLM and Qwen2 splitting)",
                     hint="export with `--format safetensors` to skip GGUF")


def _matches(step: dict, want: dict) -> bool:
    return all(step.get(k) == v for k, v in want.items())


def _add_hyperparameters(writer, config: dict) -> None:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    if head_dim * heads != config["hidden_size"]:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _add_tokenizer(writer, tokenizer, merged_dir: Path, vocab_size: int, end_of_turn_id: int | None) -> None:
    """Tokens in id order with llama.cpp's token types (ids the model has but the tokenizer never
    produces become unused `[PAD<id>]`, as llama.cpp's converter writes them), then merges,
    special ids, add-BOS/EOS flags and the chat template."""
    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    beyond = sorted(i for i in by_id if i >= vocab_size)
    if beyond:
        raise InputError(f"the tokenizer in `{merged_dir}` has token ids up to {beyond[-1]}, but the model's "
                         f"embedding has {vocab_size} rows", hint="resize the model's embeddings to the tokenizer")
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL if i not in added else
                         gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(merged_dir))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(merged_dir, load_merges=True, n_vocab=vocab_size)
    special.special_token_ids = {k: v for k, v in {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
                                                   "unk": tokenizer.unk_token_id, "pad": tokenizer.pad_token_id,
                                                   "eot": end_of_turn_id}.items()
                                 if v is not None}
    plain, marked = tokenizer("x", add_special_tokens=False)["input_ids"], tokenizer("x")["input_ids"]
    special.add_special_token = {"bos": len(marked) > len(plain) and marked[0] == tokenizer.bos_token_id,
                                 "eos": len(marked) > len(plain) and marked[-1] == tokenizer.eos_token_id}
    special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)

