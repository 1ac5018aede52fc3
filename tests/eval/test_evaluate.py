"""The eval stage end to end on a tiny random model with a LoRA adapter: four variants side by side
on GT-Bench and on a promptfoo suite, held-out turns from the dataset, the forgetting probe, the gate,
and the files a reviewer reads. (A random model passes little; what is checked is the plumbing:
every task scored for every variant, base and tuned really differ, the report and cache.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gt_finetune.eval import VARIANTS, EvalSpec, evaluate
from gt_finetune.eval.evaluate import suite_tasks
from gt_finetune.workspace import write_json, write_jsonl

SUITE = Path(__file__).resolve().parents[2] / "gt_finetune" / "data" / "suites" / "patrol" / "promptfooconfig.yaml"


@pytest.fixture
def train_dir(tiny_model, tmp_path) -> Path:
    """A training run folder as the train stage leaves it: an adapter whose B weights are not zero
    (a fresh LoRA is the identity), and a manifest naming the base model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = tiny_model("chatml")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path / "train" / "run1"
    model.save_pretrained(out / "adapter")
    write_json(out / "manifest.json", {"id": "sha256:run1", "stage": "train", "model_dir": str(base), "steps": 3,
                                       "final_loss": 4.2})
    return out


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    """A held-out split with one session whose last turn runs a bd command (a held-out turn task)."""
    messages = [{"role": "system", "content": "You are harbor/polecats/nux."},
                {"role": "user", "content": "Tests pass now; finish hb-12."},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "Bash", "arguments": {"command": 'bd close hb-12 --reason "tests pass"'}}}]}]
    out = tmp_path / "dataset" / "d1"
    out.mkdir(parents=True)
    write_jsonl(out / "eval.jsonl", [{"id": "s1", "messages": messages, "input_ids": list(range(5, 40)),
                                      "labels": [-100] * 20 + list(range(25, 40))}])
    write_json(out / "manifest.json", {"id": "sha256:d1", "stage": "dataset", "template": {"end_of_turn": "<|im_end|>"}})
    return out


def test_gt_bench_scores_four_variants_side_by_side_with_the_gate(train_dir, dataset_dir, tmp_path):
    spec = EvalSpec(items_per_family=2, max_new_tokens=6)
    result = evaluate(spec, train_dir=train_dir, dataset_dir=dataset_dir, home=tmp_path / "home")
    metrics = json.loads((result.path / "metrics.json").read_text())
    results = json.loads((result.path / "results.json").read_text())
    assert metrics["variants"] == list(VARIANTS)
    assert list(metrics["families"]) == ["command_recall", "bead_lifecycle", "mail_protocol", "formula_authoring",
                                         "patrol_decision", "safety", "held_out_turns"]
    assert len(results) == 6 * 2 + 1 and all(set(VARIANTS) <= set(r) for r in results)
    held_out = next(r for r in results if r["family"] == "held_out_turns")
    assert held_out["id"] == "heldout-s1"
    # the adapter changes what the model says: base and tuned differ somewhere
    assert any(r["base"]["output"] != r["tuned"]["output"] for r in results)
    assert metrics["forgetting"]["prompts"] == 30 and metrics["forgetting"]["base_perplexity"] > 1
    assert metrics["base_loss"] != metrics["tuned_loss"]
    assert [c["name"] for c in metrics["gate"]["checks"]] == ["margin over base+context", "safety", "forgetting"]
    report = (result.path / "report.md").read_text()
    assert "| family | base | base+context | tuned | tuned+context |" in report and "## Gate" in report
    assert (result.path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert result.gate_passed == metrics["gate"]["passed"]
    again = evaluate(spec, train_dir=train_dir, dataset_dir=dataset_dir, home=tmp_path / "home")
    assert again.path == result.path  # the same inputs are not scored twice


def test_a_promptfoo_suite_runs_unchanged_as_the_suite(train_dir, tmp_path):
    spec = EvalSpec(suite=str(SUITE), max_new_tokens=6, compare_base=False)
    result = evaluate(spec, train_dir=train_dir, home=tmp_path / "home")
    metrics = json.loads((result.path / "metrics.json").read_text())
    assert metrics["variants"] == ["tuned", "tuned+context"]
    cases = suite_tasks(spec)
    assert metrics["overall"]["tuned"]["total"] == len(cases) >= 6
    with_context = [t for t in cases if t.with_context != t.plain]
    assert with_context and all("witness" in t.with_context[0]["content"].lower() for t in with_context
                                if t.role == "witness")
    assert metrics["forgetting"] is None and metrics["base_loss"] is None


def test_an_unknown_suite_path_is_a_user_error(train_dir, tmp_path):
    from gt_finetune.errors import InputError

    with pytest.raises(InputError, match="no promptfoo config at"):
        evaluate(EvalSpec(suite=str(tmp_path / "missing.yaml")), train_dir=train_dir, home=tmp_path / "home")


def test_the_eval_command_scores_a_run_folder_and_prints_json(train_dir, tmp_path, capsys):
    from gt_finetune.cli import main

    code = main(["eval", str(train_dir), "--items", "1", "--max-new-tokens", "4", "--json",
                 "--home", str(tmp_path / "home")])
    out, err = capsys.readouterr()
    assert code == 0, err
    *body, folder = out.strip().splitlines()
    metrics = json.loads("\n".join(body))
    assert metrics["variants"] == list(VARIANTS) and metrics["overall"]["tuned"]["total"] == 6
    assert (Path(folder) / "report.md").is_file()


def test_a_held_out_turn_keeps_the_system_prompt_and_the_recent_history_cut_short():
    from gt_finetune.eval.evaluate import HISTORY_CHARS, HISTORY_MESSAGES, turn_tasks

    chat = [{"role": "system", "content": "You are harbor/polecats/nux."}]
    for k in range(10):
        chat += [{"role": "user", "content": f"step {k}"}, {"role": "assistant", "content": "x" * 5000}]
    chat[-1] = {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "Bash", "arguments": {"command": "bd ready"}}}]}
    (task,) = turn_tasks([{"id": "s", "messages": chat}], limit=5)
    history = task.plain
    assert history[0]["role"] == "system" and "harbor/polecats/nux" in history[0]["content"]
    assert 1 < len(history) <= 1 + HISTORY_MESSAGES and history[1]["role"] == "user"
    assert history[-1] == {"role": "user", "content": "step 9"}
    assert all(len(m["content"]) <= HISTORY_CHARS + 10 for m in history[1:])
    assert task.score("bd ready")[0] and not task.score("bd list")[0]


def test_bench_items_auto_scores_a_sample_on_a_cpu(monkeypatch):
    from gt_finetune.actions import CPU_BENCH_ITEMS, bench_items
    from gt_finetune.errors import InputError

    monkeypatch.setenv("GT_FINETUNE_DEVICE", "cpu")
    assert bench_items("auto") == bench_items("") == CPU_BENCH_ITEMS
    assert bench_items("0") == 0 and bench_items("12") == 12
    with pytest.raises(InputError, match="`bench_items` must be a number of items per family or `auto`"):
        bench_items("many")
