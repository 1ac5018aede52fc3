"""Parity: each exported file, loaded as a runtime loads it, decodes what the trainer-side model
decodes; a damaged file, another chat template or a missing stop token fails with the evidence."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gt_finetune.errors import InputError
from gt_finetune.export.parity import REPORTED, STRICT, Runtime, check_parity, parity_prompts, summarise
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
    for name in ("safetensors", "gguf-f16"):
        assert runtimes[name]["mode"] == STRICT and runtimes[name]["agree"] == runtimes[name]["of"] == 3
        assert runtimes[name]["first_difference"] is None and runtimes[name]["stop_token_ids"] == [2]
    assert runtimes["safetensors"]["max_logit_difference"] < 1e-4  # merged vs unmerged: float32 rounding
    assert runtimes["gguf-f16"]["max_logit_difference"] < 1e-2  # float16 weights
    assert runtimes["gguf-q8_0"]["mode"] == REPORTED
    assert parity["prompts"] == ["gt-bench:cmd-polecat-001", "gt-bench:bead-crew-001", "gt-bench:mail-witness-001"]
    assert parity["end_of_turn"] == {"token": "<|im_end|>", "id": 2}
    assert parity["summary"].startswith("safetensors and gguf-f16 match the trainer-side model token for token on "
                                        "3/3 prompts (up to 8 tokens each); gguf-q8_0 agrees with the trainer-side "
                                        "model on ")
    assert exported["result"].parity == parity["summary"]


def test_parity_prompts_take_one_task_per_family_then_general_questions():
    names = [p.name for p in parity_prompts(9)]
    assert names[:6] == ["gt-bench:cmd-polecat-001", "gt-bench:bead-crew-001", "gt-bench:mail-witness-001",
                         "gt-bench:formula-crew-001", "gt-bench:patrol-witness-001", "gt-bench:safety-s1-001"]
    assert all(n.startswith("general:") for n in names[6:])
    assert parity_prompts(9)[0].messages[0]["role"] == "system"


def test_a_damaged_gguf_fails_parity_naming_prompt_position_and_both_tokens(exported, export_copy):
    reverse_rows(export_copy / "model-f16.gguf", "token_embd.weight")
    with pytest.raises(InputError) as info:
        run_parity(exported, [Runtime("gguf-f16", export_copy, "model-f16.gguf", STRICT)])
    message = str(info.value)
    assert message.startswith("gguf-f16 differs from the trainer-side model on prompt `gt-bench:cmd-polecat-001` at "
                              "generated token 0: ")
    assert message.count("(id ") == 2 and " instead of " in message


def test_a_damaged_q8_0_file_is_reported_not_failed(exported, export_copy):
    reverse_rows(export_copy / "model-q8_0.gguf", "token_embd.weight")
    result = run_parity(exported, [Runtime("gguf-q8_0", export_copy, "model-q8_0.gguf", REPORTED)])
    q8 = result["runtimes"]["gguf-q8_0"]
    assert q8["agree"] < q8["of"] == PROMPTS
    first = q8["first_difference"]
    assert first["prompt"] == "gt-bench:cmd-polecat-001" and first["position"] == 0
    assert first["trainer_side"]["id"] != first["gguf-q8_0"]["id"]
    assert result["summary"] == (f"gguf-q8_0 agrees with the trainer-side model on {q8['agree']}/{PROMPTS} prompts, "
                                 "first difference at token 0 of `gt-bench:cmd-polecat-001`")


def test_another_chat_template_fails_parity(exported, export_copy):
    (export_copy / "merged" / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>{% endfor %}")
    with pytest.raises(InputError, match=r"safetensors \(`.*`\) carries a different chat template from the one the model "
                                         r"was trained with: from character 50, \": \{\{ m\['content'\]"):
        run_parity(exported, [Runtime("safetensors", export_copy / "merged", None, STRICT)])


def test_a_runtime_that_would_not_stop_on_the_end_of_turn_fails(exported, export_copy):
    config = json.loads((export_copy / "merged" / "generation_config.json").read_text())
    write_json(export_copy / "merged" / "generation_config.json", {**config, "eos_token_id": [0]})
    with pytest.raises(InputError, match=r"safetensors would not stop on the trained end-of-turn token `<\|im_end\|>` "
                                         r"\(id 2\): its stop ids are \[0\]"):
        run_parity(exported, [Runtime("safetensors", export_copy / "merged", None, STRICT)])


def test_summary_names_agreement_and_first_difference():
    results = {"safetensors": {"mode": STRICT}, "gguf-f16": {"mode": STRICT},
               "gguf-q8_0": {"mode": REPORTED, "agree": 5, "of": 6,
                             "first_difference": {"prompt": "gt-bench:x", "position": 14}}}
    assert summarise(results, 6, 24) == (
        "safetensors and gguf-f16 match the trainer-side model token for token on 6/6 prompts (up to 24 tokens each); "
        "gguf-q8_0 agrees with the trainer-side model on 5/6 prompts, first difference at token 14 of `gt-bench:x`")
