"""Merging: the merged folder is the trained model (base + adapter, or the full fine-tune), saved
with everything a runtime needs to prompt it and to stop where it was trained to stop."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from gt_finetune.errors import InputError
from gt_finetune.export.merge import merge_run
from gt_finetune.workspace import read_manifest, write_json


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def test_merged_model_gives_the_logits_of_base_plus_adapter(tiny_model, new_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    base = tiny_model("chatml")
    run = new_run(base, tmp_path / "run")
    trained = read_manifest(run)
    merge = merge_run(run, trained, tmp_path / "out", stop=[2])
    ids = AutoTokenizer.from_pretrained(base)("bd close hb-12 --reason done")["input_ids"]
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), run / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "merged")
    plain = AutoModelForCausalLM.from_pretrained(base)
    assert torch.allclose(logits(merged, ids), logits(peft, ids), atol=1e-5)
    assert not torch.allclose(logits(merged, ids), logits(plain, ids), atol=1e-3)  # the adapter is in there
    assert merged.dtype == torch.float32 and merge["method"] == "lora" and merge["dtype"] == "float32"
    names = {p.name for p in (tmp_path / "out" / "merged").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
            "generation_config.json"} <= names
    assert GenerationConfig.from_pretrained(tmp_path / "out" / "merged").eos_token_id == [2]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (run / "adapter" / "adapter_model.safetensors").read_bytes()


def test_generation_config_stops_on_eos_and_the_trained_end_of_turn(tiny_model, new_run, tmp_path):
    """Llama 3's end of turn (`<|eot_id|>`) is not its EOS: both must stop generation."""
    from transformers import AutoTokenizer, GenerationConfig

    base = tiny_model("llama3")
    tokenizer = AutoTokenizer.from_pretrained(base)
    stop = sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|eot_id|>")})
    run = new_run(base, tmp_path / "run")
    merge_run(run, read_manifest(run), tmp_path / "out", stop=stop)
    assert len(stop) == 2
    assert GenerationConfig.from_pretrained(tmp_path / "out" / "merged").eos_token_id == stop


def test_a_qlora_run_merges_into_the_full_precision_base(tiny_model, new_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = tiny_model("chatml")
    run = new_run(base, tmp_path / "run")
    trained = read_manifest(run)
    trained["spec"]["method"] = "qlora"
    merge_run(run, trained, tmp_path / "out", stop=[2])
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "merged")
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), run / "adapter")
    assert "quantization_config" not in json.loads((tmp_path / "out" / "merged" / "config.json").read_text())
    assert torch.allclose(logits(merged, [5, 6, 7, 8]), logits(peft, [5, 6, 7, 8]), atol=1e-5)


def test_a_quantised_base_is_refused(tiny_model, new_run, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_model("chatml"), base)
    config = json.loads((base / "config.json").read_text())
    write_json(base / "config.json", {**config, "quantization_config": {"load_in_4bit": True}})
    run = new_run(tiny_model("chatml"), tmp_path / "run")
    trained = {**read_manifest(run), "model_dir": str(base)}
    with pytest.raises(InputError, match="stored quantised"):
        merge_run(run, trained, tmp_path / "out", stop=[2])


def test_a_full_fine_tune_is_its_own_merged_model(tiny_model, new_run, tmp_path):
    from transformers import AutoModelForCausalLM

    run = new_run(tiny_model("chatml"), tmp_path / "run", method="full")
    merge = merge_run(run, read_manifest(run), tmp_path / "out", stop=[2])
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "merged")
    tuned = AutoModelForCausalLM.from_pretrained(run / "model")
    assert torch.equal(logits(merged, [5, 6, 7]), logits(tuned, [5, 6, 7]))
    assert merge["method"] == "full" and not (tmp_path / "out" / "adapter").exists()
    assert (tmp_path / "out" / "merged" / "tokenizer.json").is_file()


def test_a_run_without_its_adapter_is_refused(tiny_model, new_run, tmp_path):
    run = new_run(tiny_model("chatml"), tmp_path / "run")
    shutil.rmtree(run / "adapter")
    with pytest.raises(InputError, match="has no `adapter/` folder"):
        merge_run(run, read_manifest(run), tmp_path / "out", stop=[2])
