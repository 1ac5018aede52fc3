"""Eval stage entry: is the tuned model a better Gas Town agent than the base model, prompted or not?

One run scores four variants on the same tasks — base, base + role context (what `gt prime`
injects), tuned, tuned + role context — on GT-Bench (or a promptfoo-format suite) plus the
held-out session turns of the dataset; then the forgetting probe and the held-out loss; then the
review gate. For a LoRA adapter, base and tuned share one loaded model (the adapter is switched
off for the base), so the comparison uses identical weights, data and tokenisation; a full
fine-tune is loaded after the base is scored and released.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..dataset import load_split
from ..device import pick_device
from ..errors import InputError
from ..workspace import atomic_dir, content_id, is_complete, read_manifest, short_id, write_json, write_text
from . import bench, promptfoo
from .forgetting import answer_perplexity, general_probe, keyword_hits, probe_summary
from .gate import Gate, decide
from .generate import generate_answers, stop_ids
from .heldout import heldout_loss
from .report import draw_chart, render_report

VARIANTS = ("base", "base+context", "tuned", "tuned+context")
LONG_ANSWER_TOKENS = 256  # a small formula file in TOML
PROBE_TOKENS = 48  # a one-sentence general answer: enough to name the probe's keywords
HISTORY_MESSAGES = 6  # held-out turns: the system prompt and this many messages before the turn
HISTORY_CHARS = 1500  # … each cut to this many characters (tool output can be pages long)
GT_BENCH = "gt-bench"
EVAL_VERSION = 2  # bump when scoring changes, so cached evaluations are redone


@dataclass(frozen=True, slots=True)
class EvalSpec:
    suite: str = GT_BENCH  # or the path of a promptfooconfig.yaml
    items_per_family: int = 0  # 0: every item; else the first N of each family (by id)
    held_out_turns: int = 20  # at most this many held-out session turns (0: none)
    probe_prompts: int = 30  # general prompts in the forgetting probe (at most the 30 packaged ones)
    max_new_tokens: int = 64  # a command, a JSON decision or a refusal; formula files get LONG_ANSWER_TOKENS
    batch_size: int = 8
    compare_base: bool = True
    gate: Gate = field(default_factory=Gate)


@dataclass(frozen=True, slots=True)
class EvalManifest:
    id: str
    path: Path  # holds report.md, results.json, metrics.json, chart.png
    base_loss: float | None
    tuned_loss: float | None
    gate_passed: bool

    @property
    def improved(self) -> bool:
        return self.base_loss is not None and self.tuned_loss is not None and self.tuned_loss < self.base_loss


@dataclass(frozen=True, slots=True)
class Task:
    """One prompt to answer, with and without role context, and how to score the answer."""
    id: str
    family: str
    role: str
    plain: list[dict]
    with_context: list[dict]
    score: Callable[[str], tuple[bool, str]]
    fingerprint: str  # what the task asks and checks, for the cache key
    long_answer: bool = False  # a formula file, not one command: a larger token budget


def evaluate(spec: EvalSpec, *, train_dir: Path, home: Path, dataset_dir: Path | None = None) -> EvalManifest:
    """Score a training run's model (adapter or full) against its base; `dataset_dir` adds the
    held-out split's loss and session turns."""
    trained = read_manifest(train_dir)
    dataset = read_manifest(dataset_dir) if dataset_dir else {}
    held_out = load_split(dataset_dir, "eval") if dataset_dir else []
    tasks = suite_tasks(spec) + turn_tasks(held_out, spec.held_out_turns)
    if not tasks:
        raise InputError(f"the suite `{spec.suite}` has no tasks to score", hint="check its tests, or use `--suite gt-bench`")
    cid = content_id({"spec": asdict(spec), "train": trained["id"], "dataset": dataset.get("id"),
                      "tasks": hashlib.sha256("".join(t.fingerprint for t in tasks).encode()).hexdigest(),
                      "version": EVAL_VERSION})
    out = home / "eval" / short_id(cid)
    if is_complete(out):
        return _manifest_of(out)
    model_dir = Path(trained["model_dir"])
    probes = general_probe()[:spec.probe_prompts]
    answers: dict[str, list[str]] = {}
    scores: dict[str, dict] = {}
    with _models(train_dir, model_dir, compare_base=spec.compare_base) as models:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        stop = stop_ids(tokenizer, dataset.get("template", {}).get("end_of_turn"))
        for who, model in models:
            for variant, key in ((who, "plain"), (f"{who}+context", "with_context")):
                started = time.monotonic()
                answers[variant] = _answer(model, tokenizer, tasks, key, spec, stop)
                passed = sum(t.score(a)[0] for t, a in zip(tasks, answers[variant]))
                _say(f"{variant}: {passed}/{len(tasks)} tasks passed ({time.monotonic() - started:.0f} s)")
            general = generate_answers(model, tokenizer, [[{"role": "user", "content": p["prompt"]}] for p in probes],
                                       max_new_tokens=PROBE_TOKENS, stop=stop, batch_size=spec.batch_size)
            scores[who] = {"perplexity": answer_perplexity(model, tokenizer, probes),
                           "hits": keyword_hits(general, probes), "general_answers": general,
                           "held_out_loss": heldout_loss(model, held_out) if held_out else None}
    variants = [v for v in VARIANTS if v in answers]
    results = [{"id": t.id, "family": t.family, "role": t.role,
                **{v: dict(zip(("passed", "detail"), t.score(answers[v][k])), output=answers[v][k]) for v in variants}}
               for k, t in enumerate(tasks)]
    metrics = summarise(results, variants, scores, spec.gate, trained, held_out)
    if spec.suite == GT_BENCH and spec.items_per_family:
        metrics["sampled"] = {"items_per_family": spec.items_per_family, "of": len(bench.load_bench())}
    with atomic_dir(out) as tmp:
        write_json(tmp / "results.json", results, sort_keys=False)
        write_json(tmp / "metrics.json", metrics, sort_keys=False)  # families in reading order
        write_text(tmp / "report.md", render_report(metrics, results, suite=spec.suite))
        draw_chart(metrics, tmp / "chart.png")
        write_json(tmp / "manifest.json", {"schema_version": 2, "stage": "eval", "id": cid,
                                           "inputs": [trained["id"]] + ([dataset["id"]] if dataset else []),
                                           "spec": asdict(spec), "base_loss": metrics["base_loss"],
                                           "tuned_loss": metrics["tuned_loss"], "gate_passed": metrics["gate"]["passed"]})
    return _manifest_of(out)


def _answer(model, tokenizer, tasks: list[Task], key: str, spec: EvalSpec, stop: list[int]) -> list[str]:
    """Answers in task order; formula tasks get a larger token budget than one-command tasks."""
    answers = [""] * len(tasks)
    for long_answer, budget in ((False, spec.max_new_tokens), (True, max(spec.max_new_tokens, LONG_ANSWER_TOKENS))):
        picked = [k for k, t in enumerate(tasks) if t.long_answer == long_answer]
        if picked:
            out = generate_answers(model, tokenizer, [getattr(tasks[k], key) for k in picked], max_new_tokens=budget,
                                   stop=stop, batch_size=spec.batch_size)
            for k, a in zip(picked, out):
                answers[k] = a
    return answers


def _say(text: str) -> None:
    print(f"  eval: {text}", file=sys.stderr, flush=True)


def summarise(results: list[dict], variants: list[str], scores: dict, gate: Gate, trained: dict,
              held_out: list[dict]) -> dict:
    """Pass counts per family and variant with 95% intervals, the forgetting probe, the gate."""
    families = sorted({r["family"] for r in results}, key=_family_order)
    table = {f: {v: _counts([r for r in results if r["family"] == f], v) for v in variants} for f in families}
    overall = {v: _counts(results, v) for v in variants}
    safety = table.get("safety", {}).get("tuned+context")
    probe = (probe_summary(scores["base"]["perplexity"], scores["tuned"]["perplexity"], scores["base"]["hits"],
                           scores["tuned"]["hits"]) if "base" in scores else None)
    decision = decide(gate, rates={v: (c["passed"], c["total"]) for v, c in overall.items()},
                      safety=(safety["passed"], safety["total"]) if safety else None,
                      perplexity=(probe["base_perplexity"], probe["tuned_perplexity"]) if probe else None)
    loss = {who: s["held_out_loss"] for who, s in scores.items()}
    return {"variants": variants, "families": table, "overall": overall, "forgetting": probe,
            "gate": {"passed": decision.passed, "guidance": decision.guidance, "thresholds": asdict(gate),
                     "checks": [asdict(c) for c in decision.checks]},
            "held_out_examples": len(held_out), "base_loss": _round(loss.get("base")),
            "tuned_loss": _round(loss.get("tuned")), "train_steps": trained["steps"],
            "train_final_loss": trained["final_loss"]}


def suite_tasks(spec: EvalSpec) -> list[Task]:
    if spec.suite == GT_BENCH:
        items = bench.load_bench()
        if spec.items_per_family:
            items = [i for f in bench.FAMILIES for i in sorted((i for i in items if i.family == f),
                                                               key=lambda i: i.id)[:spec.items_per_family]]
        return [_bench_task(i) for i in items]
    config = Path(spec.suite).expanduser()
    if not config.is_file():
        raise InputError(f"no promptfoo config at `{config}`",
                         hint="pass `--suite gt-bench` or the path of a promptfooconfig.yaml")
    return [_promptfoo_task(c, config.parent) for c in promptfoo.load_suite(config)]


def turn_tasks(held_out: list[dict], limit: int) -> list[Task]:
    """The next command the real agent ran, from held-out sessions the model never trained on,
    given the recent history (the system prompt and the last messages, long ones cut): what
    decides the next command, at a prompt length a CPU can answer."""
    if not limit:
        return []
    items = bench.held_out_items(held_out)[:limit]
    return [_bench_task(replace(i, context=json.dumps(_recent(json.loads(i.context)), ensure_ascii=False)))
            for i in items]


def _recent(messages: list[dict]) -> list[dict]:
    """The system prompt and the last messages, starting at a user message where there is one (a
    tool result whose call was cut off would confuse the template and the model)."""
    head = [m for m in messages[:1] if m.get("role") == "system"]
    tail = messages[len(head):][-HISTORY_MESSAGES:]
    start = next((k for k, m in enumerate(tail) if m.get("role") == "user"), 0)
    kept = head + tail[start:]
    return [{**m, "content": _cut(m["content"])} if isinstance(m.get("content"), str) else m for m in kept]


def _cut(text: str) -> str:
    return text if len(text) <= HISTORY_CHARS else text[:HISTORY_CHARS] + " …[cut]"


def _bench_task(item: bench.BenchItem) -> Task:
    def score(output: str) -> tuple[bool, str]:
        verdict = bench.check(item, output)
        return verdict.passed, verdict.detail

    return Task(item.id, item.family, item.role, bench.prompt_messages(item, role_context=None),
                bench.prompt_messages(item, role_context=_role_context(item.role)), score,
                json.dumps([item.id, item.context, item.input, item.check], sort_keys=True),
                long_answer=item.check.get("type") == "formula")


def _promptfoo_task(case: promptfoo.PromptfooCase, root: Path) -> Task:
    def score(output: str) -> tuple[bool, str]:
        result = promptfoo.check_case(case, output)
        failed = [f"{a.type}: {a.reason}" for a in result.assertions if not a.passed]
        return result.passed, "; ".join(failed) or "all assertions passed"

    role = str(case.vars.get("role") or "")
    context = _role_context(role)
    messages = case.messages
    if context:
        if messages and messages[0]["role"] == "system":
            with_context = [{"role": "system", "content": messages[0]["content"] + "\n\n" + context}] + messages[1:]
        else:
            with_context = [{"role": "system", "content": context}] + messages
    else:
        with_context = messages
    family = case.id.split(":")[0].removeprefix(str(root) + "/")
    return Task(case.id, family, role, messages, with_context, score,
                json.dumps([case.id, messages, case.assertions, case.transform], sort_keys=True, default=str))


def _role_context(role: str) -> str:
    try:
        return bench.role_context(role)
    except (InputError, KeyError, FileNotFoundError):
        return ""


@contextmanager
def _models(train_dir: Path, model_dir: Path, *, compare_base: bool) -> Iterator[Iterator[tuple[str, object]]]:
    """("base", model) then ("tuned", model), each ready to generate; base only with `compare_base`."""
    import torch
    from transformers import AutoModelForCausalLM

    device = pick_device()

    def load(path: Path):
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).to(device).eval()

    def pairs():
        if (train_dir / "model").is_dir():  # a full fine-tune: the tuned weights are a model of their own
            if compare_base:
                base = load(model_dir)
                yield "base", base
                del base
            yield "tuned", load(train_dir / "model")
            return
        from peft import PeftModel

        model = PeftModel.from_pretrained(load(model_dir), train_dir / "adapter", local_files_only=True)
        model = model.to(device).eval()
        if compare_base:
            with model.disable_adapter():
                yield "base", model
        yield "tuned", model

    yield pairs()


def _counts(rows: list[dict], variant: str) -> dict:
    passed, total = sum(1 for r in rows if r[variant]["passed"]), len(rows)
    lo, hi = bench.wilson(passed, total)
    return {"passed": passed, "total": total, "low": round(lo, 4), "high": round(hi, 4)}


def _family_order(family: str) -> tuple[int, str]:
    return (bench.FAMILIES.index(family) if family in bench.FAMILIES else len(bench.FAMILIES), family)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _manifest_of(out: Path) -> EvalManifest:
    m = read_manifest(out)
    return EvalManifest(id=m["id"], path=out, base_loss=m["base_loss"], tuned_loss=m["tuned_loss"],
                        gate_passed=m["gate_passed"])
