"""Eval stage: held-out loss and a few greedy answers, base vs tuned, as a plain-language report.

For a LoRA adapter, base and tuned share one loaded model: the adapter is switched off for the
base numbers, so the comparison uses identical weights, data and tokenisation. A full fine-tune
is a model of its own, loaded after the base is scored and released. Answers stop at the
template's end-of-turn token (e.g. Llama 3's `<|eot_id|>`), not only at EOS.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..dataset import load_split
from ..device import pick_device
from ..workspace import atomic_dir, content_id, is_complete, read_manifest, short_id, write_json, write_text

IGNORE = -100


@dataclass(frozen=True, slots=True)
class EvalSpec:
    samples: int = 3  # held-out prompts answered by both models in the report
    max_new_tokens: int = 64


@dataclass(frozen=True, slots=True)
class EvalManifest:
    id: str
    path: Path  # holds report.md, metrics.json
    base_loss: float
    tuned_loss: float

    @property
    def improved(self) -> bool:
        return self.tuned_loss < self.base_loss


def evaluate(spec: EvalSpec, *, dataset_dir: Path, train_dir: Path, home: Path) -> EvalManifest:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trained = read_manifest(train_dir)
    dataset = read_manifest(dataset_dir)
    cid = content_id({"spec": asdict(spec), "train": trained["id"], "dataset": dataset["id"]})
    out = home / "eval" / short_id(cid)
    if is_complete(out):
        return _manifest_of(out)
    model_dir = Path(trained["model_dir"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    device = pick_device()
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    held_out = load_split(dataset_dir, "eval")
    end_of_turn = dataset.get("template", {}).get("end_of_turn")
    stop = sorted({tokenizer.eos_token_id, *([tokenizer.convert_tokens_to_ids(end_of_turn)] if end_of_turn else [])})

    def score(model) -> tuple[float, list[str]]:
        answers = [generate(model, tokenizer, e["messages"][:-1], spec.max_new_tokens, stop)
                   for e in held_out[:spec.samples]]
        return heldout_loss(model, held_out), answers

    if (train_dir / "model").is_dir():  # a full fine-tune: the tuned weights are a model of their own
        base_loss, base_answers = score(base)
        del base
        tuned_loss, tuned_answers = score(AutoModelForCausalLM.from_pretrained(
            train_dir / "model", dtype=torch.float32).to(device).eval())
    else:  # base and tuned share one model: the adapter is switched off for the base numbers
        model = PeftModel.from_pretrained(base, train_dir / "adapter").to(device).eval()
        with model.disable_adapter():
            base_loss, base_answers = score(model)
        tuned_loss, tuned_answers = score(model)
    samples = [{"id": e["id"], "prompt": e["messages"][-2]["content"], "reference": e["messages"][-1]["content"],
                "base": b, "tuned": t} for e, b, t in zip(held_out, base_answers, tuned_answers)]
    metrics = {"held_out_examples": len(held_out), "base_loss": round(base_loss, 4),
               "tuned_loss": round(tuned_loss, 4), "train_steps": trained["steps"],
               "train_final_loss": trained["final_loss"]}
    with atomic_dir(out) as tmp:
        write_text(tmp / "report.md", render_report(metrics, samples))
        write_json(tmp / "metrics.json", {**metrics, "samples": samples})
        write_json(tmp / "manifest.json", {"schema_version": 1, "stage": "eval", "id": cid,
                                           "inputs": [trained["id"], dataset["id"]], "spec": asdict(spec),
                                           **metrics})
    return _manifest_of(out)


def heldout_loss(model, examples: list[dict]) -> float:
    """Mean loss per trained token over the held-out examples."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e["input_ids"]], device=model.device)
            labels = torch.tensor([e["labels"]], device=model.device)
            logits = model(input_ids=ids).logits
            total += float(torch.nn.functional.cross_entropy(
                logits[0, :-1].float(), labels[0, 1:], ignore_index=IGNORE, reduction="sum"))
            count += int((labels[0, 1:] != IGNORE).sum())
    return total / max(count, 1)


def generate(model, tokenizer, messages: list[dict], max_new_tokens: int, stop: list[int]) -> str:
    """Greedy answer, stopping at EOS or the template's end-of-turn token."""
    import torch

    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def render_report(metrics: dict, samples: list[dict]) -> str:
    base, tuned = metrics["base_loss"], metrics["tuned_loss"]
    verdict = (f"The tuned model predicts the held-out close reasons better than the base model "
               f"(loss {tuned:.3f} vs {base:.3f}, {100 * (base - tuned) / base:.1f}% lower)."
               if tuned < base else
               f"The tuned model is NOT better than the base model on held-out beads (loss {tuned:.3f} vs {base:.3f}).")
    lines = ["# Evaluation", "", verdict, "",
             "| model | held-out loss | perplexity |", "|---|---|---|",
             f"| base | {base:.4f} | {_ppl(base)} |", f"| tuned | {tuned:.4f} | {_ppl(tuned)} |", "",
             f"Held-out examples: {metrics['held_out_examples']} (split by bead, never seen in training). "
             f"Training: {metrics['train_steps']} steps, final loss {metrics['train_final_loss']:.4f}.", "",
             "## Sample answers (greedy)", ""]
    for s in samples:
        lines += [f"### {s['id']}", "", "**Prompt:** " + s["prompt"].splitlines()[0], "",
                  "**Reference:** " + s["reference"], "", "**Base:** " + (s["base"] or "(empty)"), "",
                  "**Tuned:** " + (s["tuned"] or "(empty)"), ""]
    return "\n".join(lines)


def _ppl(loss: float) -> str:
    import math

    return f"{math.exp(loss):.2f}" if loss < 50 else "inf"


def _manifest_of(out: Path) -> EvalManifest:
    m = read_manifest(out)
    return EvalManifest(id=m["id"], path=out, base_loss=m["base_loss"], tuned_loss=m["tuned_loss"])
