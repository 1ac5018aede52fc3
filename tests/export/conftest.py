"""Export fixtures: training runs over tiny random models (a Llama and a Qwen2 with q/k/v biases),
the upstream manifests a real pipeline leaves (shaped like a sample-town run's), and one export
shared by the tests that only read it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gt_finetune.workspace import write_json

END_OF_TURN = "<|im_end|>"
SMALL = {"parity_prompts": 3, "parity_tokens": 8}  # a handful of prompts keeps each export to seconds


def build_qwen2(out: Path, tokenizer_dir: Path) -> Path:
    """A tiny random Qwen2 (untied output head) with non-zero q/k/v biases, and the chatml tokenizer
    splitting text as Qwen2's does (digits one by one), as a real Qwen2 tokenizer would."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_run(base: Path, out: Path, *, method: str = "lora", seed: int = 0) -> Path:
    """A training run folder as the train stage leaves it: an adapter whose B weights are not zero
    (a fresh LoRA is the identity) or, for `full`, perturbed weights; and its manifest."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    if method == "full":
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        model.save_pretrained(out / "model")
    else:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"],
                                                 task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        model.save_pretrained(out / "adapter")
    write_json(out / "manifest.json", train_manifest(base, out.name, method))
    return out


def train_manifest(base: Path, name: str, method: str = "lora") -> dict:
    """The manifest the train stage writes for a run of `method` on `base` (a sample-town run's numbers)."""
    spec = {"base_model": str(base), "max_steps": 12, "learning_rate": 0.0005, "batch_size": 2, "grad_accum": 1,
            "warmup_steps": 5, "seed": 0, "checkpoint_every": 10, "checkpoint_minutes": 10.0, "packing": True,
            "method": method, "dtype": "auto", "gradient_checkpointing": False,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj"]}}
    return {"schema_version": 1, "stage": "train", "id": f"run-{name}", "inputs": ["sha256:" + "d1" * 32],
            "spec": spec, "model_dir": str(base), "steps": 12, "final_loss": 3.71025, "examples": 311, "rows": 122,
            "processes": 1, "device": "cpu", "measured": {"peak_rss": 1907544064, "peak_gpu": 0}}


def write_upstream(root: Path) -> dict[str, Path]:
    """Dataset, corpus, plan and eval folders with the fields a real run writes (numbers invented
    but fixed, so the card's can be checked)."""
    corpus = {"schema_version": 1, "stage": "corpus", "id": "corpus-20261126T082206-081bc217080d",
              "created_at": "2026-11-26T08:22:06+00:00",
              "counts": {"by_source": {"beads": 260, "events": 83, "formulas": 1, "mail": 30, "transcripts": 3},
                         "by_role": {"-": 1, "crew": 51, "deacon": 9, "mayor": 43, "polecat": 223, "refinery": 18,
                                     "witness": 32},
                         "records": 377, "rejected": 194, "new_records": 378},
              "fingerprint": {"files": {"/town/.beads/formulas/mol-release.formula.toml": "sha256:" + "81" * 32},
                              "tools": {"bd": "", "gt": ""}, "town": "/town"},
              "redaction": {"github_token": 2, "home_user": 11, "ip": 1}}
    dataset = {"schema_version": 1, "stage": "dataset", "id": "sha256:" + "d1" * 32, "inputs": [corpus["id"]],
               "counts": {"train": 311, "eval": 79, "dropped": 1, "replay": 0, "role_context": 0},
               "mask_audit": {"by_role": {"assistant": {"tokens": 27119, "trained": 23698, "trained_share": 0.8739},
                                          "system": {"tokens": 16285, "trained": 0, "trained_share": 0.0},
                                          "user": {"tokens": 31026, "trained": 0, "trained_share": 0.0}},
                              "end_of_turn": END_OF_TURN, "eos_token": END_OF_TURN, "examples": 390,
                              "missing_end_of_turn": 0, "non_assistant_trained": 0, "tokens": 74430,
                              "trained_share": 0.3184, "trained_tokens": 23698, "truncated": 3,
                              "untrainable_windows": 0},
               "spec": {"max_seq_len": 512, "base_model": "tiny"},
               "template": {"end_of_turn": END_OF_TURN, "native_tools": False}}
    plan = {"schema_version": 1, "stage": "plan", "id": "sha256:" + "9a" * 32, "inputs": [dataset["id"]],
            "estimate": {"total_bytes": 2706737725}, "go": True,
            "workload": {"device": "cpu", "dtype": "float32", "seq_len": 512}}
    cell = lambda p, t: {"passed": p, "total": t, "low": 0.0, "high": 1.0}  # noqa: E731
    metrics = {"variants": ["base", "base+context", "tuned", "tuned+context"],
               "families": {"command_recall": {"base": cell(1, 5), "base+context": cell(2, 5), "tuned": cell(3, 5),
                                               "tuned+context": cell(4, 5)},
                            "safety": {"base": cell(2, 4), "base+context": cell(3, 4), "tuned": cell(3, 4),
                                       "tuned+context": cell(4, 4)}},
               "overall": {"base": cell(3, 9), "base+context": cell(5, 9), "tuned": cell(6, 9),
                           "tuned+context": cell(8, 9)},
               "forgetting": {"prompts": 30, "base_perplexity": 7.512, "tuned_perplexity": 8.034,
                              "base_keyword_hits": 11, "tuned_keyword_hits": 10},
               "gate": {"passed": True, "guidance": "", "checks": [
                   {"name": "margin over base+context", "passed": True, "measured": "88.9% vs 55.6% (+33.3 points)",
                    "required": "≥ +5.0 points"},
                   {"name": "safety", "passed": True, "measured": "4/4", "required": "≥ 100%"},
                   {"name": "forgetting", "passed": True, "measured": "general perplexity 7.51 → 8.03 (+6.9%)",
                    "required": "≤ +25%"}]},
               "held_out_examples": 79, "base_loss": 2.9811, "tuned_loss": 2.4517, "train_steps": 12,
               "train_final_loss": 3.71025}
    dirs = {}
    for name, manifest in (("dataset", dataset), ("corpus", corpus), ("plan", plan)):
        dirs[name] = root / name / "x"
        write_json(dirs[name] / "manifest.json", manifest)
    dirs["eval"] = root / "eval" / "x"
    write_json(dirs["eval"] / "metrics.json", metrics)
    write_json(dirs["eval"] / "manifest.json", {"schema_version": 2, "stage": "eval", "id": "sha256:" + "e7" * 32,
                                                "inputs": ["run-r1", dataset["id"]], "gate_passed": True})
    return dirs


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_model, tmp_path_factory) -> Path:
    return build_qwen2(tmp_path_factory.mktemp("tiny-qwen2"), tiny_model("chatml"))


@pytest.fixture(scope="session")
def exported(tiny_model, tmp_path_factory):
    """One complete export of a LoRA run on the tiny Llama with every upstream manifest."""
    from gt_finetune.export import ExportSpec, export_model

    root = tmp_path_factory.mktemp("exported")
    train_dir = make_run(tiny_model("chatml"), root / "train" / "r1")
    dirs = write_upstream(root)
    result = export_model(ExportSpec(**SMALL), train_dir=train_dir, home=root / "home", **{f"{k}_dir": v
                                                                                         for k, v in dirs.items()})
    return {"result": result, "train_dir": train_dir, "dirs": dirs, "home": root / "home",
            "manifest": json.loads((result.path / "manifest.json").read_text())}


@pytest.fixture
def export_copy(exported, tmp_path) -> Path:
    """A writable copy of the shared export's folder, for tests that damage it."""
    return Path(shutil.copytree(exported["result"].path, tmp_path / "export"))


@pytest.fixture
def new_run():
    """`new_run(base, folder, method=…)` → a training run folder (see `make_run`)."""
    return make_run


@pytest.fixture(name="train_manifest")
def train_manifest_fixture():
    """`train_manifest(base, name, method=…)` → a train stage manifest (see `train_manifest`)."""
    return train_manifest


@pytest.fixture
def upstream(tmp_path) -> dict[str, Path]:
    return write_upstream(tmp_path / "upstream")
