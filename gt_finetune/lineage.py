"""Where a registered model came from: its job's stage folders, its eval summary, whether the town
moved on since its corpus was harvested. What `models`, `export`, `serve` and `deploy` read."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .corpus.harvest import staleness
from .errors import GTFinetuneError, InputError
from .jobs import JobRecord
from .registry import Model, Registry
from .workspace import read_manifest


@dataclass(frozen=True, slots=True)
class Lineage:
    model: Model
    train_dir: Path
    dataset_dir: Path | None = None
    corpus_dir: Path | None = None
    plan_dir: Path | None = None
    eval_dir: Path | None = None
    stale: tuple[str, ...] = ()  # how the town changed since the corpus was harvested
    eval: dict = field(default_factory=dict)  # variants' pass counts and the gate, when evaluated

    @property
    def state(self) -> str:
        """The stored state, or `stale` for a model in use whose town moved on."""
        return "stale" if self.stale and self.model.state in ("candidate", "approved", "deployed") else self.model.state


def find_model(home: Path, ref: str) -> Model:
    """Raises:
        InputError: no model, or several, match `ref` (an id, a unique prefix or a job id).
    """
    try:
        return Registry(home).find(ref)
    except KeyError as exc:
        raise InputError(str(exc.args[0]), hint="list them with `gt-finetune models list`") from None


def lineage_of(home: Path, model: Model) -> Lineage:
    try:
        job = JobRecord.load(home, model.job_id)
    except GTFinetuneError:
        job = None
    dirs = {stage: job.output_of(stage) if job else None for stage in ("dataset", "corpus", "plan", "eval")}
    corpus = dirs["corpus"]
    stale = tuple(staleness(read_manifest(corpus).get("fingerprint", {}))) if corpus and corpus.is_dir() else ()
    summary = {}
    if dirs["eval"] and (dirs["eval"] / "metrics.json").is_file():
        metrics = json.loads((dirs["eval"] / "metrics.json").read_text(encoding="utf-8"))
        summary = {"overall": metrics.get("overall", {}), "gate": metrics.get("gate", {}),
                   "families": metrics.get("families", {}), "variants": metrics.get("variants", [])}
    return Lineage(model=model, train_dir=Path(model.train_dir), dataset_dir=dirs["dataset"], corpus_dir=corpus,
                   plan_dir=dirs["plan"], eval_dir=dirs["eval"], stale=stale, eval=summary)


def eval_line(lin: Lineage) -> str:
    """`tuned+context 31/40, base+context 22/40, gate PASS` — or `not evaluated`."""
    overall = lin.eval.get("overall") or {}
    if not overall:
        return "not evaluated"
    parts = [f"{v} {overall[v]['passed']}/{overall[v]['total']}" for v in ("tuned+context", "base+context")
             if v in overall]
    gate = lin.eval.get("gate", {})
    return ", ".join(parts) + (f", gate {'PASS' if gate.get('passed') else 'FAIL'}" if gate else "")
