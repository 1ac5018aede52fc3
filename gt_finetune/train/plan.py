"""Planner: will this training run fit in memory, and how long will it take — before it starts.

    gt-finetune plan finetune-lora --var batch_size=8

the dataset's real token lengths + the train spec → `Workload` (rows × tokens of the widest
micro-batch) → `estimate` (peak memory by component, `memory.py`) → budget (available memory
minus a reserve for Dolt and live agent sessions, or free GPU memory; `[plan]` in config.toml or
`GT_FINETUNE_BUDGET_GB` set it) → GO, or NO-GO with the smallest change that fits (`suggest`) →
when GO, a 3-step calibration run of the real trainer in a subprocess: seconds per step and the
measured peak, scaled to the run and to an epoch.

    [plan]
    reserve_gb = 1.5     # kept free for Dolt and agent sessions (CPU budget only)
    budget_gb = 0        # an explicit budget in GB; 0: measure what is available
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path

from ..config import load_section
from ..dataset.pack import best_fit
from ..errors import InputError
from ..models import resolve_model
from ..workspace import atomic_dir, content_id, read_manifest, short_id, write_json
from .memory import GB, CUDA_CONTEXT_BYTES, Estimate, ModelShape, Workload, estimate, model_shape, peak_rss

BUDGET_ENV = "GT_FINETUNE_BUDGET_GB"
CALIBRATION_STEPS = 3


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """`[plan]` in `<home>/config.toml`."""
    reserve_gb: float = 1.5
    budget_gb: float = 0.0  # 0: available memory minus `reserve_gb`

    def __post_init__(self):
        for name in ("reserve_gb", "budget_gb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number of GB, at least 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class DataShape:
    """The real token-length distribution of `train.jsonl`, and how it packs."""
    examples: int
    tokens: int
    p50: int
    p90: int
    p99: int
    longest: int
    max_seq_len: int  # the dataset's row capacity
    packed_rows: int  # best-fit rows of `max_seq_len` (what the trainer packs)
    widest_row: int
    density: float  # share of the packed rows' capacity that holds tokens
    lengths: tuple[int, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class Budget:
    bytes: int
    source: str  # "env", "config", "available", "gpu"
    available: int = 0
    reserve: int = 0

    def describe(self) -> str:
        if self.source == "env":
            return f"a {_gb(self.bytes)} budget ({BUDGET_ENV})"
        if self.source == "config":
            return f"a {_gb(self.bytes)} budget (config.toml [plan] budget_gb)"
        if self.source == "gpu":
            return f"{_gb(self.bytes)} of free GPU memory"
        return f"a {_gb(self.bytes)} budget (available {_gb(self.available)} − {_gb(self.reserve)} reserve)"


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The first change (in `suggest`'s order) whose estimate fits the budget."""
    changes: tuple[tuple[str, str], ...]  # formula vars to pass: (name, value)
    workload: Workload
    estimate: Estimate
    note: str = ""  # what the change costs (examples re-split or dropped by a shorter max_seq_len)

    def flags(self) -> str:
        return " ".join(f"--var {k}={v}" for k, v in self.changes)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A short run of the real trainer: its speed and its measured peak."""
    steps: int
    seconds_per_step: float  # mean over the steps after the first (warm-up)
    peak_bytes: int  # peak RSS of the trainer (CPU), or its peak GPU memory
    wall_s: float


@dataclass(frozen=True, slots=True)
class Plan:
    go: bool
    model: str  # as the spec names it
    workload: Workload
    data: DataShape
    estimate: Estimate
    budget: Budget
    max_steps: int
    steps_per_epoch: int
    suggestion: Suggestion | None = None
    calibration: Calibration | None = None
    reason: str = ""  # why NO-GO

    def render(self) -> str:
        """Operator-facing text: the config, the breakdown, go/no-go, time, and the fix when no-go."""
        w, e, d = self.workload, self.estimate, self.data
        lines = [f"plan: {Path(self.model).name}, {_method(w)}, {_batch(w, d)}, {_dtype(w.dtype)}, {w.device.upper()}"]
        lines.append("  data: " + _data_line(w, d))
        lines.append("  " + " · ".join(f"{name} {_gb(v)}" for name, v in _groups(e)))
        verdict = "GO" if self.go else "NO-GO"
        lines.append(f"  peak ≈ {_gb(e.total)} of {self.budget.describe()}: {verdict}")
        if self.calibration:
            c = self.calibration
            epoch = c.seconds_per_step * self.steps_per_epoch
            lines.append(f"  time ≈ {c.seconds_per_step:.1f} s/step → {self.max_steps} steps ≈ "
                         f"{_duration(c.seconds_per_step * self.max_steps)}; an epoch ({self.steps_per_epoch} steps) "
                         f"≈ {_duration(epoch)}")
            lines.append(f"  measured: peak {_gb(c.peak_bytes)} in a {c.steps}-step calibration run "
                         f"({(e.total - c.peak_bytes) / max(c.peak_bytes, 1):+.0%} estimate error)")
        if self.reason:
            lines.append(f"  {self.reason}")
        if self.suggestion:
            s = self.suggestion
            lines.append(f"  fits: {s.flags()} (peak ≈ {_gb(s.estimate.total)})")
            if s.note:
                lines.append(f"        {s.note}")
        elif not self.go:
            lines.append("  no change tried fits: free memory, or use a smaller base model")
        lines += [f"  note: {n}" for n in e.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        w = asdict(self.workload)
        w["model_dir"] = str(w["model_dir"])
        data = {k: v for k, v in asdict(self.data).items() if k != "lengths"}
        out = {"schema_version": 1, "go": self.go, "reason": self.reason, "model": self.model, "workload": w,
               "data": data, "estimate": self.estimate.as_dict(), "budget": asdict(self.budget),
               "max_steps": self.max_steps, "steps_per_epoch": self.steps_per_epoch, "suggestion": None,
               "calibration": asdict(self.calibration) if self.calibration else None}
        if self.suggestion:
            out["suggestion"] = {"vars": dict(self.suggestion.changes), "flags": self.suggestion.flags(),
                                 "total_bytes": self.suggestion.estimate.total, "note": self.suggestion.note}
        if self.calibration:
            out["time"] = {"seconds_per_step": self.calibration.seconds_per_step,
                           "run_s": round(self.calibration.seconds_per_step * self.max_steps, 1),
                           "epoch_s": round(self.calibration.seconds_per_step * self.steps_per_epoch, 1)}
        return out


def plan(spec, *, dataset_dir: Path, home: Path, calibrate: bool = True, device: str | None = None,
         calibration_steps: int = CALIBRATION_STEPS) -> Plan:
    """Estimate the peak memory and time of training `spec` on `dataset_dir` and say GO or NO-GO.

    Args:
        spec: a `TrainSpec` (its method, dtype and gradient checkpointing are read when it has them).
        calibrate: when the estimate fits, run the real trainer for a few steps in a subprocess to
            measure seconds per step and the actual peak (a measured peak over budget is NO-GO).
        device: "cpu" or "cuda"; default: where the trainer would run.
        calibration_steps: trainer steps in the calibration run (the first is warm-up, not timed).

    Raises:
        InputError: the model or dataset is missing, `[plan]` in config.toml is malformed, or the
            calibration run failed.
    """
    model_dir = resolve_model(spec.base_model, home=home)
    data = data_shape(dataset_dir)
    device = device or _device()
    shape = model_shape(model_dir)
    w = workload(spec, model_dir=model_dir, data=data, device=device)
    process = process_baseline(home) if device == "cpu" else CUDA_CONTEXT_BYTES
    est = estimate(w, shape, process_bytes=process, data_tokens=data.tokens)
    b = budget(home=home, device=device)
    rows = data.packed_rows if w.packing else data.examples
    per_epoch = max(1, math.ceil(rows / (spec.batch_size * spec.grad_accum)))  # as the recipe counts an epoch
    result = Plan(go=est.total <= b.bytes, model=spec.base_model, workload=w, data=data, estimate=est, budget=b,
                  max_steps=spec.max_steps, steps_per_epoch=per_epoch)

    def fix(within: Budget) -> Suggestion | None:
        return suggest(w, shape, data=data, budget=within, process_bytes=process,
                       can_checkpoint=_has_field(spec, "gradient_checkpointing"), can_quantize=_has_field(spec, "method"))

    if not result.go:
        return replace(result, reason=f"the estimate is {_gb(est.total - b.bytes)} over budget", suggestion=fix(b))
    if calibrate:
        cal = calibration_run(spec, model_dir=model_dir, dataset_dir=dataset_dir, steps=calibration_steps)
        result = replace(result, calibration=cal)
        if cal.peak_bytes > b.bytes:
            # the model underestimated this run: look for a fix within the budget scaled by its error
            scaled = replace(b, bytes=int(b.bytes * est.total / cal.peak_bytes))
            result = replace(result, go=False, suggestion=fix(scaled),
                             reason=f"the calibration run measured {_gb(cal.peak_bytes)}, over the budget")
    return result


def refuse_unless_go(p: Plan, *, force: bool = False) -> None:
    """Raise the NO-GO as a user error (with the change that fits as the hint), unless `force`.

    Raises:
        InputError: the plan is NO-GO and `force` is false.
    """
    if p.go or force:
        return
    need = p.calibration.peak_bytes if p.calibration and p.calibration.peak_bytes > p.estimate.total else p.estimate.total
    message = (f"training `{Path(p.model).name}` needs ≈ {_gb(need)}, more than {p.budget.describe()}")
    if p.suggestion:
        hint = (f"pass `{p.suggestion.flags()}` (≈ {_gb(p.suggestion.estimate.total)}), "
                f"or `--force` to launch anyway")
    else:
        hint = "free memory, raise `[plan] budget_gb` in config.toml, or pass `--force` to launch anyway"
    raise InputError(message, hint=hint, code="plan_no_go")


def save_plan(p: Plan, *, dataset_dir: Path, home: Path) -> Path:
    """Write `<home>/plan/<id>/manifest.json` (the plan's `as_dict`, as a stage output a formula
    step can hand to `train`); the id fingerprints the plan, so a plan saved twice is one folder."""
    doc = p.as_dict()
    cid = content_id({"plan": doc, "dataset": read_manifest(dataset_dir)["id"]})
    out = home / "plan" / short_id(cid)
    with atomic_dir(out) as tmp:
        write_json(tmp / "manifest.json", {**doc, "stage": "plan", "id": cid,
                                            "inputs": [read_manifest(dataset_dir)["id"]]})
    return out


def data_shape(dataset_dir: Path) -> DataShape:
    """Token lengths of `<dataset>/train.jsonl` and how they pack into rows of the dataset's max_seq_len."""
    capacity = int(read_manifest(dataset_dir)["spec"]["max_seq_len"])
    with open(dataset_dir / "train.jsonl", encoding="utf-8") as f:
        lengths = [len(json.loads(line)["input_ids"]) for line in f if line.strip()]
    if not lengths:
        raise InputError(f"dataset {dataset_dir} has no training examples")
    bins = best_fit(lengths, capacity)
    row_lengths = [sum(lengths[i] for i in b) for b in bins]
    ordered = sorted(lengths)
    total = sum(lengths)
    return DataShape(examples=len(lengths), tokens=total, p50=_percentile(ordered, 50), p90=_percentile(ordered, 90),
                     p99=_percentile(ordered, 99), longest=ordered[-1], max_seq_len=capacity,
                     packed_rows=len(bins), widest_row=max(row_lengths),
                     density=round(total / (len(bins) * capacity), 4), lengths=tuple(lengths))


def workload(spec, *, model_dir: Path, data: DataShape, device: str) -> Workload:
    """The micro-batch `spec` trains on `data`: packed rows as wide as the widest packed row, or
    (without packing) examples padded to the longest one — the longest example (the 100th
    percentile) lands in some batch every epoch, and `collate` pads its batch to it."""
    lora = spec.lora
    rows = data.packed_rows if spec.packing else data.examples
    return Workload(model_dir=model_dir, device=device, dtype=_compute_dtype(getattr(spec, "dtype", "auto"), device),
                    method=getattr(spec, "method", "lora"), lora_r=lora.r, target_modules=tuple(lora.target_modules),
                    lora_dropout=lora.dropout, batch_size=min(spec.batch_size, rows), grad_accum=spec.grad_accum,
                    seq_len=data.widest_row if spec.packing else data.longest, packing=spec.packing,
                    gradient_checkpointing=bool(getattr(spec, "gradient_checkpointing", False)))


def budget(*, home: Path, device: str = "cpu") -> Budget:
    """`GT_FINETUNE_BUDGET_GB`, else `[plan] budget_gb`, else free GPU memory on a GPU, else
    available memory (psutil) minus `[plan] reserve_gb` for Dolt and live agent sessions.

    Raises:
        InputError: `GT_FINETUNE_BUDGET_GB` is not a number, or `[plan]` is malformed.
    """
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"`{BUDGET_ENV}` must be a number of GB, got `{raw}`") from None
        return Budget(bytes=int(value * GB), source="env")
    settings = load_section(home, "plan", PlanSettings)
    if settings.budget_gb:
        return Budget(bytes=int(settings.budget_gb * GB), source="config")
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return Budget(bytes=int(free), source="gpu", available=int(free))
    import psutil

    available = psutil.virtual_memory().available
    reserve = int(settings.reserve_gb * GB)
    return Budget(bytes=max(0, available - reserve), source="available", available=available, reserve=reserve)


def suggest(w: Workload, shape: ModelShape, *, data: DataShape, budget: Budget, process_bytes: int,
            can_checkpoint: bool = True, can_quantize: bool = True) -> Suggestion | None:
    """The smallest change that fits, trying in order: halve the micro-batch and raise grad_accum
    to keep the effective batch; gradient checkpointing (at each of those batch sizes); a shorter
    `max_seq_len`, not below the dataset's 90th percentile; QLoRA (CUDA with bitsandbytes only).
    Each later step keeps the earlier changes. None when nothing fits."""
    effective = w.batch_size * w.grad_accum

    def fits(changes: dict, **kw) -> Suggestion | None:
        candidate = replace(w, **kw)
        est = estimate(candidate, shape, process_bytes=process_bytes, data_tokens=data.tokens)
        if est.total > budget.bytes:
            return None
        note = ""
        if candidate.seq_len < w.seq_len and "max_seq_len" in changes:
            note = _cut_note(data, candidate.seq_len)
        return Suggestion(changes=tuple((k, str(v)) for k, v in changes.items()), workload=candidate,
                          estimate=est, note=note)

    batches = []
    b = w.batch_size
    while b > 1:
        b //= 2
        batches.append((b, math.ceil(effective / b)))
    for b, accum in batches:
        if s := fits({"batch_size": b, "grad_accum": accum}, batch_size=b, grad_accum=accum):
            return s
    smallest = {"batch_size": 1, "grad_accum": effective} if w.batch_size > 1 else {}
    if can_checkpoint and not w.gradient_checkpointing:
        for b, accum in [(w.batch_size, w.grad_accum)] + batches:
            changes = ({"batch_size": b, "grad_accum": accum} if b != w.batch_size else {})
            if s := fits({**changes, "gradient_checkpointing": "true"}, batch_size=b, grad_accum=accum,
                         gradient_checkpointing=True):
                return s
        smallest["gradient_checkpointing"] = "true"
    kw = {"batch_size": 1, "grad_accum": effective,
          "gradient_checkpointing": can_checkpoint or w.gradient_checkpointing}
    for seq in _shorter_lengths(w.seq_len, data.p90):
        if s := fits({**smallest, "max_seq_len": seq}, seq_len=seq, **kw):
            return s
    if can_quantize and w.device == "cuda" and w.method == "lora" and _importable("bitsandbytes"):
        dtype = "bfloat16" if w.dtype == "float32" else w.dtype
        if s := fits({**smallest, "method": "qlora"}, method="qlora", dtype=dtype, **kw):
            return s
    return None


def baseline_key() -> str:
    """What the process baseline depends on (and how it was measured)."""
    key = " ".join(f"{pkg}={_version(pkg)}" for pkg in ("torch", "transformers", "peft"))
    return key + f" python={sys.version_info[0]}.{sys.version_info[1]} peak=VmHWM"


def process_baseline(home: Path) -> int:
    """Peak RSS of a Python process that imported the trainer (torch, transformers, peft) and ran
    one step of a 1-layer model (thread pools and kernels warmed): measured once in a subprocess,
    cached in `<home>/cache/planner_baseline.json` per torch/transformers/peft/Python version."""
    key = baseline_key()
    cache = home / "cache" / "planner_baseline.json"
    known = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    if key in known:
        return int(known[key])
    proc = subprocess.run([sys.executable, "-c", _BASELINE_SCRIPT], capture_output=True, text=True,
                          env=_child_env(home), timeout=600)
    if proc.returncode != 0:
        raise InputError(f"measuring the planner's process baseline failed: {_tail(proc.stderr)}")
    known[key] = int(proc.stdout.strip().splitlines()[-1])
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, known)
    return known[key]


def calibration_run(spec, *, model_dir: Path, dataset_dir: Path, steps: int = CALIBRATION_STEPS,
                    timeout_s: float = 3600) -> Calibration:
    """Run the real trainer for `steps` steps in a subprocess with a throwaway home (the model by
    its resolved folder, so nothing is converted; the dataset where it is); the first step is
    warm-up and not timed.

    Raises:
        InputError: the run failed or was killed (out of memory, most likely).
    """
    short = replace(spec, base_model=str(model_dir), max_steps=steps, checkpoint_every=max(steps, spec.checkpoint_every))
    home = Path(tempfile.mkdtemp(prefix="gt-finetune-calibrate-"))
    try:
        request = home / "request.pkl"
        request.write_bytes(pickle.dumps({"spec": short, "dataset_dir": str(dataset_dir), "home": str(home)}))
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-c", _CALIBRATE_SCRIPT, str(request)], capture_output=True,
                                  text=True, env=_child_env(home), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise InputError(f"the {steps}-step calibration run took over {timeout_s:.0f} s") from None
        wall = time.monotonic() - start
        if proc.returncode != 0:
            killed = " (killed: out of memory?)" if proc.returncode < 0 else ""
            raise InputError(f"the {steps}-step calibration run failed with exit {proc.returncode}{killed}: "
                             f"{_tail(proc.stderr)}", hint="pass `--force` to launch without a calibration")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    elapsed = out["elapsed_s"]
    timed = [b - a for a, b in zip(elapsed, elapsed[1:])] or elapsed
    return Calibration(steps=len(elapsed), seconds_per_step=round(sum(timed) / len(timed), 3),
                       peak_bytes=int(out["peak_bytes"]), wall_s=round(wall, 1))


def measured_peak() -> int:
    """This process's peak memory so far (RSS, or on a GPU the allocator's peak): for the run log."""
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.max_memory_reserved())
    return peak_rss()


# -- subprocess scripts ------------------------------------------------------------------------

_BASELINE_SCRIPT = """
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig
import gt_finetune.train
cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
model = get_peft_model(AutoModelForCausalLM.from_config(cfg),
                       LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
ids = torch.randint(0, 128, (2, 16))
out = model(input_ids=ids, position_ids=torch.arange(16).repeat(2, 1) % 8, use_cache=False).logits
torch.nn.functional.cross_entropy(out.transpose(1, 2), ids).backward()
torch.optim.AdamW([p for p in model.parameters() if p.requires_grad]).step()
from gt_finetune.train.memory import peak_rss
print(peak_rss())
"""

# The spec's own module trains it (the recipe that defines the spec); a trainer that runs in a
# worker process of its own records its peak in its manifest's `measured`.
_CALIBRATE_SCRIPT = """
import importlib, json, pickle, sys
from pathlib import Path
req = pickle.loads(Path(sys.argv[1]).read_bytes())
spec = req["spec"]
train = importlib.import_module(type(spec).__module__).train
result = train(spec, dataset_dir=Path(req["dataset_dir"]), home=Path(req["home"]))
rows = [json.loads(l) for l in (result.path / "metrics.jsonl").read_text().splitlines() if l.strip()]
elapsed = [r["elapsed_s"] for r in rows if r.get("kind", "step") == "step" and "elapsed_s" in r]
from gt_finetune.train.memory import peak_rss
measured = json.loads((result.path / "manifest.json").read_text()).get("measured") or {}
peak = max(peak_rss(), measured.get("peak_rss", 0))
if measured.get("peak_gpu"):
    peak = measured["peak_gpu"]
elif "torch" in sys.modules and sys.modules["torch"].cuda.is_available() and sys.modules["torch"].cuda.is_initialized():
    peak = sys.modules["torch"].cuda.max_memory_reserved()
print(json.dumps({"elapsed_s": elapsed, "peak_bytes": peak}))
"""


# -- helpers -----------------------------------------------------------------------------------

def _device() -> str:
    from ..device import pick_device

    return "cuda" if pick_device().startswith("cuda") else "cpu"


def _compute_dtype(name: str, device: str) -> str:
    """The recipe's `auto`: bfloat16 on a GPU that supports it, else float32."""
    if name != "auto":
        return name
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "float32"


def _has_field(spec, name: str) -> bool:
    return any(f.name == name for f in fields(spec))


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "none"


def _child_env(home: Path) -> dict:
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "GT_FINETUNE_HOME": str(home), "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _percentile(ordered: list[int], q: int) -> int:
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def _shorter_lengths(seq_len: int, floor: int) -> list[int]:
    """Multiples of 64 below `seq_len`, longest first, down to `floor` (the dataset's p90)."""
    steps = list(range((seq_len - 1) // 64 * 64, floor, -64))
    return [s for s in steps if s >= floor] + ([floor] if floor < seq_len else [])


def _cut_note(data: DataShape, seq: int) -> str:
    longer = [n for n in data.lengths if n > seq]
    share = sum(longer) / max(data.tokens, 1)
    return (f"{len(longer)} of {data.examples} examples ({share:.0%} of tokens) are longer than {seq} tokens: "
            f"the dataset is rebuilt, splitting them at turn boundaries or dropping them")


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "no output"


def _gb(n: int) -> str:
    return f"{n / GB:.2f} GB" if abs(n) < 10 * GB else f"{n / GB:.1f} GB"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if minutes < 10 and s else f"{minutes} min"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min"


def _groups(e: Estimate) -> list[tuple[str, int]]:
    p = dict(e.parts)
    groups = [("weights", p["weights"]), ("adapter+grads+optimizer", p["adapter"] + p["gradients"] + p["optimizer"]),
              ("activations", p["activations"]), ("logits", p["logits"]), ("allocator", p["allocator"]),
              ("data", p["data"]), ("process", p["process"])]
    return [(k, v) for k, v in groups if v or k in ("weights", "activations", "logits")]


def _method(w: Workload) -> str:
    if w.method == "full":
        return "full fine-tuning"
    targets = w.target_modules
    names = (",".join(t[:-5] for t in targets) + "_proj") if all(t.endswith("_proj") for t in targets) else ",".join(targets)
    return f"{'QLoRA' if w.method == 'qlora' else 'LoRA'} r={w.lora_r} on {names}"


def _batch(w: Workload, d: DataShape) -> str:
    what = "packed" if w.packing else "padded to the longest example"
    text = f"batch {w.batch_size} × {w.seq_len} tokens ({what})"
    if w.grad_accum > 1:
        text += f" × {w.grad_accum} accumulated"
    if w.gradient_checkpointing:
        text += ", gradient checkpointing"
    return text


def _dtype(name: str) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name, name)


def _data_line(w: Workload, d: DataShape) -> str:
    text = f"{d.examples} examples, {d.tokens:,} tokens (p50 {d.p50}, p90 {d.p90}, longest {d.longest})"
    if w.packing:
        text += f" → {d.packed_rows} rows of {d.max_seq_len}, {d.density:.0%} full"
    return text
