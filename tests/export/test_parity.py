"""Parity: each exported file, loaded as a runtime loads it, says what the trainer-side model says —
an exact format token for token, a lossy one within its format's logit bound; a damaged file,
another chat template or a missing stop token fails with the evidence."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gt_finetune.errors import InputError
from gt_finetune.export.parity import (LOGIT_BOUNDS, LOSSY, STRICT, Prompt, Runtime, _logits_compare, check_parity,
                                       parity_prompts, summarise)
from gt_finetune.workspace import read_manifest, write_json

PROMPTS = 2
TOKENS = 6


def run_parity(exported, runtimes):
    return check_parity(exported["train_dir"], read_manifest(exported["train_dir"]), runtimes, end_of_turn_id=2,
                        prompts=parity_prompts(PROMPTS), max_new_tokens=TOKENS)


def reverse_rows(path, tensor_name: str) -> None:
    """Damage one tensor in place: its rows in reverse order (each token gets another's embedding)."""
    from gguf import GGUFReader

    tensor = next(t for t in GGUFReader(path, "r+").tensors if t.name == tensor_name)
    tensor.data[:] = np.ascontiguousarray(tensor.data[::-1])


def test_every_runtime_matches_the_trainer_side_model(exported):
    parity = exported["manifest"]["parity"]
    runtimes = parity["runtimes"]
    assert set(runtimes) == {"safetensors", "gguf-f16", "gguf-q8_0"}
    assert runtimes["safetensors"]["mode"] == STRICT and runtimes["safetensors"]["agree"] == 3
    assert runtimes["safetensors"]["first_difference"] is None
    assert runtimes["safetensors"]["max_logit_difference"] < 1e-4  # merged vs unmerged: float32 rounding
    for name, gguf_type in (("gguf-f16", "f16"), ("gguf-q8_0", "q8_0")):
        assert runtimes[name]["mode"] == LOSSY and runtimes[name]["logit_bound"] == LOGIT_BOUNDS[gguf_type][0]
        assert 0 < runtimes[name]["max_share_of_bound"] < 1
    assert runtimes["gguf-f16"]["max_logit_difference"] < 1e-2  # float16 weights
    assert all(r["stop_token_ids"] == [2] for r in runtimes.values())
    assert parity["prompts"] == ["gt-bench:cmd-polecat-001", "gt-bench:bead-crew-001", "gt-bench:mail-witness-001"]
    assert parity["end_of_turn"] == {"token": "<|im_end|>", "id": 2}
    assert parity["summary"].startswith("safetensors matches the trainer-side model token for token on 3/3 prompts "
                                        "(up to 8 tokens each); gguf-f16 agrees with the trainer-side model on ")
    assert "; gguf-q8_0 agrees with the trainer-side model on " in parity["summary"]
    assert exported["result"].parity == parity["summary"]


def test_parity_prompts_take_one_task_per_family_then_general_questions():
    names = [p.name for p in parity_prompts(9)]
    assert names[:6] == ["gt-bench:cmd-polecat-001", "gt-bench:bead-crew-001", "gt-bench:mail-witness-001",
                         "gt-bench:formula-crew-001", "gt-bench:patrol-witness-001", "gt-bench:safety-s1-001"]
    assert all(n.startswith("general:") for n in names[6:])
    assert parity_prompts(9)[0].messages[0]["role"] == "system"


def test_damaged_merged_weights_fail_parity_naming_prompt_position_and_both_tokens(exported, export_copy):
    from safetensors.numpy import load_file, save_file

    weights = export_copy / "merged" / "model.safetensors"
    tensors = load_file(weights)
    tensors["model.embed_tokens.weight"] = np.ascontiguousarray(tensors["model.embed_tokens.weight"][::-1])
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(InputError) as info:
        run_parity(exported, [Runtime("safetensors", export_copy / "merged", None)])
    message = str(info.value)
    assert message.startswith("safetensors differs from the trainer-side model on prompt `gt-bench:cmd-polecat-001` at "
                              "generated token 0: ")
    assert message.count("(id ") == 2 and " instead of " in message


@pytest.mark.parametrize("gguf_type, cause", [("f16", "float16 rounding"), ("q8_0", "8-bit quantisation")])
def test_a_damaged_gguf_fails_parity_beyond_its_format_bound(exported, export_copy, gguf_type, cause):
    reverse_rows(export_copy / f"model-{gguf_type}.gguf", "token_embd.weight")
    with pytest.raises(InputError, match=rf"^gguf-{gguf_type} differs from the trainer-side model on prompt "
                                         rf"`gt-bench:cmd-polecat-001` at generated token 0: .*, more than {cause} "
                                         rf"explains \([\d.e-]+: {LOGIT_BOUNDS[gguf_type][0]} times the standard "
                                         rf"deviation of the trainer-side model's logits there\)"):
        run_parity(exported, [Runtime(f"gguf-{gguf_type}", export_copy, f"model-{gguf_type}.gguf", lossy=gguf_type)])


def test_a_lossy_runtime_may_pick_another_token_only_at_a_near_tie(tiny_model):
    """Every logit moves by less than the bound, but the top two move apart: the flip is accepted
    only where the trainer-side model's choice led by less than the bound."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model("chatml"))
    runtime = Runtime("gguf-f16", tiny_model("chatml"), "model-f16.gguf", lossy="f16")
    spread = torch.linspace(-1, 1, 200)[None]  # one position; token 199 leads
    allowed = LOGIT_BOUNDS["f16"][0] * float(spread.std())

    def flip(lead: float) -> dict:
        want = spread.clone()
        want[0, 198] = want[0, 199] - lead
        got = want.clone()
        got[0, 199] -= 0.9 * allowed
        got[0, 198] += 0.9 * allowed
        return _logits_compare(runtime, tokenizer, [Prompt("gt-bench:x", ())], [[199]], [want], [got])

    assert flip(0.5 * allowed)["near_ties"] == 1
    with pytest.raises(InputError, match=r"^gguf-f16 differs from the trainer-side model on prompt `gt-bench:x` at "
                                         r"generated token 0: it picks .* \(id 198\) where the trainer-side model's "
                                         r".* \(id 199\) led by 0\.04\d*, more than float16 rounding explains"):
        flip(1.5 * allowed)


def test_another_chat_template_fails_parity(exported, export_copy):
    (export_copy / "merged" / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>{% endfor %}")
    with pytest.raises(InputError, match=r"safetensors \(`.*`\) carries a different chat template from the one the model "
                                         r"was trained with: from character 50, \": \{\{ m\['content'\]"):
        run_parity(exported, [Runtime("safetensors", export_copy / "merged", None)])


def test_a_runtime_that_would_not_stop_on_the_end_of_turn_fails(exported, export_copy):
    config = json.loads((export_copy / "merged" / "generation_config.json").read_text())
    write_json(export_copy / "merged" / "generation_config.json", {**config, "eos_token_id": [0]})
    with pytest.raises(InputError, match=r"safetensors would not stop on the trained end-of-turn token `<\|im_end\|>` "
                                         r"\(id 2\): its stop ids are \[0\]"):
        run_parity(exported, [Runtime("safetensors", export_copy / "merged", None)])


def test_summary_names_agreement_first_difference_and_share_of_bound():
    results = {"safetensors": {"mode": STRICT},
               "gguf-f16": {"mode": LOSSY, "agree": 6, "of": 6, "first_difference": None, "max_share_of_bound": 0.2},
               "gguf-q8_0": {"mode": LOSSY, "agree": 5, "of": 6, "max_share_of_bound": 0.31,
                             "first_difference": {"prompt": "gt-bench:x", "position": 14}}}
    assert summarise(results, 6, 24) == (
        "safetensors matches the trainer-side model token for token on 6/6 prompts (up to 24 tokens each); "
        "gguf-f16 agrees with the trainer-side model on 6/6 prompts, token for token, logits within 20% of its "
        "bound; "
        "gguf-q8_0 agrees with the trainer-side model on 5/6 prompts, first difference at token 14 of `gt-bench:x` "
        "(a near-tie), logits within 31% of its bound")
