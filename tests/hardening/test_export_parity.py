"""Issue 15: `gt-finetune export` of the default demo's model failed every time, because float16
rounding flipped a near-tie greedy token and gguf-f16 was held to token-for-token parity with the
float32 trainer. A lossy format is now held to logits within its bound (a flip only at a near-tie,
reported); a real divergence still fails, even one that changes no greedy token."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gt_finetune.errors import InputError
from gt_finetune.export import ExportSpec, export_model
from gt_finetune.export.parity import Runtime, check_parity, parity_prompts
from gt_finetune.workspace import read_manifest

TOKENS = 8
END_OF_TURN = 2  # the tiny chatml tokenizer's `<|im_end|>`, its EOS


def export_fixtures():
    """tests/export/conftest.py as a module, for its training-run builder."""
    path = Path(__file__).resolve().parents[1] / "export" / "conftest.py"
    spec = importlib.util.spec_from_file_location("export_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def greedy(model, ids: list[int]) -> list[int]:
    x = torch.tensor([ids])
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=TOKENS, do_sample=False,
                         eos_token_id=END_OF_TURN, pad_token_id=END_OF_TURN)
    return out[0, len(ids):].tolist()


def head_input(model, ids: list[int]) -> torch.Tensor:
    """The hidden state the output head turns into the next token's logits after `ids`."""
    seen = []
    hook = model.lm_head.register_forward_hook(lambda _m, args, _out: seen.append(args[0][0, -1].clone()))
    model(input_ids=torch.tensor([ids]))
    hook.remove()
    return seen[0]


def near_tie_run(base: Path, out: Path) -> dict:
    """A full fine-tune of the tiny Llama (output head untied) whose greedy answer to the first
    parity prompt leads its runner-up, at its first token, by less than float16 rounding keeps.
    Both head rows become the leader's row rounded to float16, plus less than one float16 step
    along the hidden state: the leader's rounds back on every value, the runner-up's rounds up a
    step on half of them. In float32 the leader still wins; with float16 weights the runner-up
    does. Returns the step and both tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export_fixtures().make_run(base, out, method="full")
    model = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32).eval()
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    tokenizer = AutoTokenizer.from_pretrained(base)
    text = tokenizer.apply_chat_template(list(parity_prompts(1)[0].messages), tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        answer = greedy(model, ids)
        step = 0  # the tiny random model repeats its first token: the tie is built where it first picks it
        hidden = head_input(model, ids + answer[:step]).numpy()
        leader = answer[step]
        runner_up = int(model.lm_head(torch.from_numpy(hidden)).topk(2).indices[1])
        rounded = model.lm_head.weight[leader].numpy().astype(np.float16)
        toward = np.nextafter(rounded, np.where(hidden > 0, np.inf, -np.inf).astype(np.float16))
        step_up = toward.astype(np.float32) - rounded.astype(np.float32)  # one float16 step along the hidden state
        half = np.arange(step_up.size) % 2 == 0  # here the runner-up rounds up a step; elsewhere both round back
        base_row = rounded.astype(np.float32)
        model.lm_head.weight[leader] = torch.from_numpy(base_row + 0.45 * step_up)
        model.lm_head.weight[runner_up] = torch.from_numpy(base_row + np.where(half, 0.55, 0.0) * step_up)
        model.save_pretrained(out / "model")
        # the construction holds: float32 keeps the answer, float16 weights pick the runner-up at `step`
        assert greedy(model, ids) == answer
        as_f16 = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float16).float().eval()
        assert int(as_f16(input_ids=torch.tensor([ids + answer[:step]])).logits[0, -1].argmax()) == runner_up
    return {"step": step, "leader": leader, "runner_up": runner_up}


@pytest.fixture(scope="module")
def near_tie(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("near-tie")
    tie = near_tie_run(tiny_model("chatml"), root / "train" / "r1")
    result = export_model(ExportSpec(gguf_types=("f16",), parity_prompts=1, parity_tokens=TOKENS),
                          train_dir=root / "train" / "r1", home=root / "home")
    return {**tie, "train_dir": root / "train" / "r1", "result": result,
            "manifest": json.loads((result.path / "manifest.json").read_text())}


def test_an_f16_rounding_that_flips_a_near_tie_exports_and_reports_the_first_difference(near_tie):
    parity = near_tie["manifest"]["parity"]
    safetensors, f16 = parity["runtimes"]["safetensors"], parity["runtimes"]["gguf-f16"]
    assert safetensors["mode"] == "strict" and safetensors["agree"] == safetensors["of"] == 1
    assert f16["mode"] == "lossy" and f16["agree"] == 0
    assert f16["first_difference"] == {
        "prompt": "gt-bench:cmd-polecat-001", "position": near_tie["step"],
        "trainer_side": {"id": near_tie["leader"], "text": f16["first_difference"]["trainer_side"]["text"]},
        "gguf-f16": {"id": near_tie["runner_up"], "text": f16["first_difference"]["gguf-f16"]["text"]}}
    assert f16["near_ties"] >= 1 and 0 < f16["max_share_of_bound"] < 1
    assert f"first difference at token {near_tie['step']} of `gt-bench:cmd-polecat-001` (a near-tie)" in \
        near_tie["result"].parity


def scale(path: Path, tensor_name: str, factor: float) -> None:
    """Damage one float16 tensor in place: every value times `factor`."""
    from gguf import GGUFReader

    tensor = next(t for t in GGUFReader(path, "r+").tensors if t.name == tensor_name)
    tensor.data[:] = (tensor.data.astype(np.float32) * factor).astype(np.float16)


def test_logits_moved_beyond_the_f16_bound_fail_parity_though_no_greedy_token_changes(near_tie, tmp_path):
    """A 3% larger output head keeps every greedy pick (it scales each position's logits) but moves
    the largest logits far more than float16 rounding can."""
    folder = Path(shutil.copytree(near_tie["result"].path, tmp_path / "export"))
    scale(folder / "model-f16.gguf", "output.weight", 1.03)
    with pytest.raises(InputError, match=r"^gguf-f16 differs from the trainer-side model on prompt "
                                         r"`gt-bench:cmd-polecat-001` at generated token \d+: a logit moves by "
                                         r"[\d.e-]+, more than float16 rounding explains"):
        check_parity(near_tie["train_dir"], read_manifest(near_tie["train_dir"]),
                     [Runtime("gguf-f16", folder, "model-f16.gguf", lossy="f16")], end_of_turn_id=END_OF_TURN,
                     prompts=parity_prompts(1), max_new_tokens=TOKENS)
