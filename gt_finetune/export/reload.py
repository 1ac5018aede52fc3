"""Reload check: read a written GGUF back and compare every tensor with the merged model.

The file is read with `gguf.GGUFReader` (the package's own parser, independent of the writer's
buffers), every tensor dequantised and compared with the merged safetensors laid out as llama.cpp
expects them: F32 tensors must equal the float32 weights and F16 tensors the float16-rounded
weights, bit for bit; a Q8_0 tensor may differ from the float32 weight by at most what 8-bit
blocks allow: each block of 32 stores `q * d` with `d = max|w| / 127` rounded to float16, so
`|w - q * d| <= d/2 + 127 * |d - fp16(d)| <= 0.57 * d` (plus float16's smallest step on tiny
blocks). The architecture metadata is read back too. Names, shapes and types must all match.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .gguf import Q8_BLOCK, gguf_tensors, tensor_type

Q8_SLACK = 0.57  # of d = max|w| / 127 per block; see the module docstring
FP16_STEP = 2.0 ** -24  # float16's smallest subnormal: d's rounding floor on near-zero blocks


def check_gguf(path: Path, merged_dir: Path, *, gguf_type: str) -> dict:
    """Compare `path`, written as `gguf_type`, with `merged_dir`; return the tensor count, their types and, for a file with
    Q8_0 tensors, the worst error (absolute, and as a share of its bound).

    Raises:
        InputError: a tensor is missing, extra, resized, stored in another type, or differs.
    """
    import gguf
    import numpy as np

    config = json.loads((merged_dir / "config.json").read_text(encoding="utf-8"))
    reader = gguf.GGUFReader(path)
    _check_metadata(path, reader, config)
    expected = {t.gguf_name: t for t in gguf_tensors(merged_dir, config)}
    found = {t.name: t for t in reader.tensors}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise _broken(path, f"tensors missing: {missing[:5] or 'none'}; unexpected: {extra[:5] or 'none'}")
    kinds = gguf.GGMLQuantizationType
    types: dict[str, int] = {}
    worst_error, worst_share = 0.0, 0.0
    for name, tensor in found.items():
        want = expected[name].load()
        if tensor.n_elements != want.size:
            raise _broken(path, f"tensor `{name}` has {tensor.n_elements} values; the merged model's has {want.size}")
        if tensor.tensor_type != tensor_type(want.shape, gguf_type):
            raise _broken(path, f"tensor `{name}` is stored as {tensor.tensor_type.name}; a `{gguf_type}` file stores "
                                f"it as {tensor_type(want.shape, gguf_type).name}")
        got = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(want.shape)
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
        if tensor.tensor_type == kinds.F32:
            _exact(path, name, got, want)
        elif tensor.tensor_type == kinds.F16:
            _exact(path, name, got, want.astype(np.float16).astype(np.float32))
        else:
            error, share = _within_q8(path, name, got, want)
            worst_error, worst_share = max(worst_error, error), max(worst_share, share)
    result = {"tensors": len(found), "types": dict(sorted(types.items()))}
    if kinds.Q8_0.name in types:
        result.update(q8_0_max_abs_error=round(worst_error, 8), q8_0_max_share_of_bound=round(worst_share, 4))
    return result


def _check_metadata(path: Path, reader, config: dict) -> None:
    arch = config["model_type"]
    want = {"general.architecture": arch, f"{arch}.block_count": config["num_hidden_layers"],
            f"{arch}.embedding_length": config["hidden_size"], f"{arch}.feed_forward_length": config["intermediate_size"],
            f"{arch}.attention.head_count": config["num_attention_heads"],
            f"{arch}.context_length": config["max_position_embeddings"], f"{arch}.vocab_size": config["vocab_size"]}
    for key, value in want.items():
        got = reader.fields[key].contents() if key in reader.fields else None
        if got != value:
            raise _broken(path, f"metadata `{key}` is {got!r}; the merged model's config says {value!r}")


def _exact(path: Path, name: str, got, want) -> None:
    import numpy as np

    if not np.array_equal(got, want):
        at = tuple(int(i) for i in np.argwhere(got != want)[0])
        raise _broken(path, f"tensor `{name}` differs from the merged model at {list(at)}: "
                            f"{float(got[at])!r} instead of {float(want[at])!r}")


def _within_q8(path: Path, name: str, got, want) -> tuple[float, float]:
    import numpy as np

    blocks = want.reshape(-1, Q8_BLOCK)
    bound = (np.abs(blocks).max(axis=1, keepdims=True) / 127 * Q8_SLACK + 127 * FP16_STEP).repeat(Q8_BLOCK, axis=1)
    error = np.abs(got.reshape(-1, Q8_BLOCK) - blocks)
    if not np.all(error <= bound):
        flat = int(np.argmax(error > bound))
        at = [int(i) for i in np.unravel_index(flat, want.shape)]
        raise _broken(path, f"tensor `{name}` differs from the merged model at {at} by {float(error.flat[flat]):.6g}, "
                            f"more than 8-bit rounding allows ({float(bound.flat[flat]):.6g})")
    return float(error.max()), float((error / bound).max())


def _broken(path: Path, problem: str) -> InputError:
    return InputError(f"GGUF reload check failed for `{path}`: {problem}",
                      hint="the file does not hold the merged model; re-run the export, and report it with the "
                           "export folder if it fails again")
