"""Retrain the model in use when the town's history has grown enough to be worth it.

The model in use is the deployed one, else the newest approved one. Its job's formula and vars are
run again, so a retrain repeats the reviewed recipe on more history. It starts only when the
corpus grew by `min_growth` since that model's corpus, the last retrain is older than the
cooldown, the machine is free, and the planner says GO for this box — a scheduled retrain never
queues, never trains past the planner, and never opens a job bead it would have to fail.

    [retrain]                  # <home>/config.toml
    min_growth = 0.25          # retrain when the corpus has 25% more records than the model's
    cooldown_hours = 24        # at most one retrain a day
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import queue as machine
from .config import load_section
from .errors import InputError
from .formula import load_formula
from .jobs import JobRecord
from .lineage import lineage_of
from .registry import Model, Registry
from .runner import forget_inline_passwords, plan_job, prepare, run_job
from .session import Session
from .workspace import read_manifest, write_json


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    min_growth: float = 0.25
    cooldown_hours: float = 24.0

    def __post_init__(self):
        if not isinstance(self.min_growth, (int, float)) or self.min_growth < 0:
            raise ValueError(f"`min_growth` must be a fraction >= 0 (0.25 = 25% more records), got {self.min_growth!r}")
        if not isinstance(self.cooldown_hours, (int, float)) or self.cooldown_hours < 0:
            raise ValueError(f"`cooldown_hours` must be a number of hours >= 0, got {self.cooldown_hours!r}")


@dataclass
class Decision:
    retrain: bool
    reason: str
    model: str = ""
    old_records: int = 0
    new_records: int = 0
    growth: float | None = None
    stale: list[str] = field(default_factory=list)
    job_id: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def model_in_use(registry: Registry) -> Model | None:
    models = registry.models()
    deployed = [m for m in models if m.state == "deployed"]
    approved = [m for m in models if m.state == "approved"]
    return (deployed or approved or [None])[-1]


def retrain(session: Session, *, config: RetrainConfig | None = None, dry_run: bool = False) -> Decision:
    """Decide, and unless `dry_run`, start the retraining job (its id is in the decision)."""
    config = config or load_section(session.home, "retrain", RetrainConfig)
    model = model_in_use(Registry(session.home))
    if model is None:
        return Decision(False, "no approved or deployed model yet: train and review one first with "
                               "`gt-finetune run finetune-lora`")
    lineage = lineage_of(session.home, model)
    decision = Decision(False, "", model=model.id, stale=list(lineage.stale))
    if lineage.corpus_dir is None or not lineage.corpus_dir.is_dir():
        decision.reason = (f"model {model.id}'s corpus is gone from {session.home / 'corpus'}, so growth cannot be "
                           f"measured; retrain by hand with `gt-finetune run finetune-lora`")
        return decision
    waited = _since_last(session.home)
    if waited is not None and waited < config.cooldown_hours * 3600:
        decision.reason = (f"cooling down: the last retrain started {waited / 3600:.1f} h ago, the cooldown is "
                           f"{config.cooldown_hours:g} h ([retrain] cooldown_hours)")
        return decision
    job = JobRecord.load(session.home, model.job_id)
    forget_inline_passwords(session, job)
    formula = load_formula(Path(job.formula_path))
    decision.old_records = _records(lineage.corpus_dir)
    decision.new_records = _records(prepare(session, formula, job.vars, ("corpus",)).output_of("corpus"))
    decision.growth = (decision.new_records - decision.old_records) / max(decision.old_records, 1)
    grew = (f"the corpus grew {decision.growth:+.0%} ({decision.old_records} → {decision.new_records} records) "
            f"since model {model.id}")
    if decision.growth < config.min_growth:
        decision.reason = f"{grew}; retraining waits for {config.min_growth:+.0%} ([retrain] min_growth)"
        return decision
    busy = machine.holder()
    if busy is not None:
        decision.reason = f"{grew}, but {busy.describe()} is training on this machine; the next check tries again"
        return decision
    planned = plan_job(session, formula, job.vars, calibrate=False)
    if not planned.go:
        fix = f"; it would fit with {planned.suggestion.flags()}" if planned.suggestion else ""
        decision.reason = f"{grew}, but the planner says NO-GO for this machine ({planned.reason}){fix}"
        return decision
    decision.retrain = True
    if dry_run:
        decision.reason = f"{grew}; would run `{formula.name}` again with job {job.job_id}'s vars (dry run)"
        return decision
    decision.reason = f"{grew}; running `{formula.name}` again with job {job.job_id}'s vars"
    _started(session.home, model.id)
    session.notifier.event("finetune_retrain", {"model": model.id, "growth": round(decision.growth, 4),
                                                "message": f"retraining: {decision.reason}"})
    decision.job_id = run_job(session, formula, job.vars, queue=False)
    return decision


def _records(corpus_dir: Path | None) -> int:
    if corpus_dir is None:
        raise InputError("the corpus step wrote no output", hint="see `gt-finetune corpus list`")
    return int(read_manifest(corpus_dir).get("counts", {}).get("records", 0))


def _since_last(home: Path) -> float | None:
    """Seconds since the last retrain started, from `<home>/retrain.json`."""
    try:
        started = json.loads((home / "retrain.json").read_text(encoding="utf-8"))["started_at"]
        return time.time() - datetime.fromisoformat(started).timestamp()
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None


def _started(home: Path, model_id: str) -> None:
    write_json(home / "retrain.json", {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                       "from_model": model_id})
