"""GGUF: what is written reads back as the merged model — through `gguf`'s reader tensor by tensor,
and through transformers' GGUF loader as a model that computes the same logits."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_SPLIT

from gt_finetune.errors import InputError
from gt_finetune.export.gguf import check_supported, permute_rotary, pre_tokenizer, write_gguf
from gt_finetune.export.reload import check_gguf
from gt_finetune.workspace import write_json


def fields(path):
    from gguf import GGUFReader

    big = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")
    return {k: f.contents() for k, f in GGUFReader(path).fields.items() if k not in big}


@pytest.fixture(params=["llama", "qwen2"])
def merged(request, tiny_model, tiny_qwen2):
    return tiny_model("chatml") if request.param == "llama" else tiny_qwen2


def test_f16_and_q8_0_read_back_equal_to_the_merged_model(merged, tmp_path):
    for gguf_type in ("f16", "q8_0"):
        write_gguf(merged, tmp_path / f"m-{gguf_type}.gguf", gguf_type=gguf_type, end_of_turn_id=2, name="tiny")
    f16 = check_gguf(tmp_path / "m-f16.gguf", merged, gguf_type="f16")
    q8 = check_gguf(tmp_path / "m-q8_0.gguf", merged, gguf_type="q8_0")
    assert set(f16["types"]) == {"F16", "F32"}  # matrices F16, vectors (norms, biases) F32
    assert set(q8["types"]) == {"Q8_0", "F32"} and q8["tensors"] == f16["tensors"]
    assert 0 < q8["q8_0_max_share_of_bound"] <= 1 and "q8_0_max_abs_error" not in f16
    meta = fields(tmp_path / "m-f16.gguf")
    arch = json.loads((merged / "config.json").read_text())["model_type"]
    assert meta["general.architecture"] == arch and meta["general.file_type"] == 1
    assert fields(tmp_path / "m-q8_0.gguf")["general.file_type"] == 7
    assert meta[f"{arch}.block_count"] == 2 and meta[f"{arch}.embedding_length"] == 64
    assert meta[f"{arch}.feed_forward_length"] == 192 and meta[f"{arch}.context_length"] == 2048
    assert meta[f"{arch}.attention.head_count"] == 4 and meta[f"{arch}.attention.head_count_kv"] == 2
    assert meta[f"{arch}.rope.dimension_count"] == 16 and meta[f"{arch}.rope.freq_base"] == 10000.0
    assert meta[f"{arch}.vocab_size"] == 2048
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == {"llama": "gpt-2", "qwen2": "qwen2"}[arch]  # how llama.cpp splits text
    assert meta["tokenizer.ggml.eos_token_id"] == 2 and meta["tokenizer.ggml.eot_token_id"] == 2
    assert meta["tokenizer.ggml.bos_token_id"] == 1 and meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.chat_template"].startswith("{% for m in messages %}<|im_start|>")


def test_transformers_loads_the_f16_gguf_as_the_merged_model(merged, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    write_gguf(merged, tmp_path / "model-f16.gguf", gguf_type="f16", end_of_turn_id=2, name="tiny")
    gguf_model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="model-f16.gguf", dtype=torch.float32)
    gguf_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file="model-f16.gguf")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(merged), AutoTokenizer.from_pretrained(merged)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "gt mail send mayor/ -s 'hi' 42"}],
                                         tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert gguf_tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    assert gguf_tokenizer.chat_template == tokenizer.chat_template
    with torch.no_grad():
        want, got = model(torch.tensor([ids])).logits, gguf_model(torch.tensor([ids])).logits
    assert torch.allclose(got, want, atol=5e-3), float((got - want).abs().max())  # float16 weights
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_qwen2_keeps_its_biases_and_its_q_k_rows_in_order(tiny_qwen2, tmp_path):
    from gguf import GGUFReader
    from safetensors.numpy import load_file

    write_gguf(tiny_qwen2, tmp_path / "m.gguf", gguf_type="f16", end_of_turn_id=2, name="tiny")
    tensors = {t.name: t for t in GGUFReader(tmp_path / "m.gguf").tensors}
    weights = load_file(tiny_qwen2 / "model.safetensors")
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias", "output.weight"} <= set(tensors)
    assert np.array_equal(np.asarray(tensors["blk.1.attn_k.bias"].data), weights["model.layers.1.self_attn.k_proj.bias"])
    q = np.asarray(tensors["blk.0.attn_q.weight"].data).astype(np.float32)
    assert np.array_equal(q, weights["model.layers.0.self_attn.q_proj.weight"].astype(np.float16).astype(np.float32))


def test_llama_q_k_permutation_is_the_one_transformers_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weight = np.arange(8 * 16 * 5, dtype=np.float32).reshape(8 * 16, 5)  # 8 heads of 16 rows
    permuted = permute_rotary(weight, 8)
    assert not np.array_equal(permuted, weight)
    undone = LlamaTensorProcessor(config={"num_attention_heads": 8, "num_key_value_heads": 8}).process(
        permuted, "blk.0.attn_q.weight").weights
    assert np.array_equal(undone, weight)
    # within one head, rows (0..7, 8..15) interleave as llama.cpp computes rotary pairs
    assert permuted[:4, 0].tolist() == [weight[0, 0], weight[8, 0], weight[1, 0], weight[9, 0]]


def test_end_of_turn_that_is_not_eos_becomes_the_eot_token(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    base = tiny_model("llama3")
    tokenizer = AutoTokenizer.from_pretrained(base)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    write_gguf(base, tmp_path / "m.gguf", gguf_type="f16", end_of_turn_id=eot, name="tiny")
    meta = fields(tmp_path / "m.gguf")
    assert meta["tokenizer.ggml.eot_token_id"] == eot != meta["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template


def test_a_flipped_tensor_fails_the_reload_check_naming_it(tiny_model, tmp_path):
    from gguf import GGUFReader

    merged = tiny_model("chatml")
    write_gguf(merged, tmp_path / "m.gguf", gguf_type="f16", end_of_turn_id=2, name="tiny")
    tensor = next(t for t in GGUFReader(tmp_path / "m.gguf", "r+").tensors if t.name == "blk.1.ffn_down.weight")
    tensor.data.view(np.uint8)[5, 7] ^= 0x40  # one flipped bit pair in one float16
    with pytest.raises(InputError, match=r"`blk\.1\.ffn_down\.weight` differs from the merged model at \[5, 3\]"):
        check_gguf(tmp_path / "m.gguf", merged, gguf_type="f16")


def test_other_architectures_and_rope_scaling_are_refused(tiny_model, tmp_path):
    with pytest.raises(InputError, match="GGUF export supports `llama` and `qwen2` models; `.*` is `gpt2`") as info:
        check_supported({"model_type": "gpt2"}, where=tmp_path)
    assert "--format safetensors" in info.value.hint
    with pytest.raises(InputError, match="RoPE scaling `llama3`"):
        check_supported({"model_type": "llama", "rope_parameters": {"rope_type": "llama3", "factor": 8.0}},
                        where=tmp_path)
    folder = tmp_path / "mistral"
    shutil.copytree(tiny_model("chatml"), folder)
    config = json.loads((folder / "config.json").read_text())
    write_json(folder / "config.json", {**config, "model_type": "mistral"})
    with pytest.raises(InputError, match="is `mistral`"):
        write_gguf(folder, tmp_path / "m.gguf", gguf_type="f16", end_of_turn_id=2, name="x")
    assert not (tmp_path / "m.gguf").exists()


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


@pytest.mark.parametrize("pre, name", [
    (BYTE_LEVEL, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL]}, "smollm"),
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
        {**BYTE_LEVEL, "use_regex": False}]}, "qwen2"),
])
def test_pre_tokenizer_is_named_as_llama_cpp_names_it(tmp_path, pre, name):
    write_json(tmp_path / "tokenizer.json", {"model": {"type": "BPE"}, "pre_tokenizer": pre})
    assert pre_tokenizer(tmp_path) == name


def test_a_split_llama_cpp_cannot_reproduce_is_refused(tmp_path):
    write_json(tmp_path / "tokenizer.json", {"model": {"type": "BPE"}, "pre_tokenizer": {
        "type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}})
    with pytest.raises(InputError, match=r"splits text as \[\{\"type\": \"Metaspace\""):
        pre_tokenizer(tmp_path)
    write_json(tmp_path / "tokenizer.json", {"model": {"type": "Unigram"}})
    with pytest.raises(InputError, match="is `Unigram`, not byte-level BPE"):
        pre_tokenizer(tmp_path)
