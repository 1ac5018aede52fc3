"""Everything a job's report or comparison shows, read once: the job record, its bead's history,
and each stage's manifest and metrics — or, for a stage with none, why (not run yet, failed …).

Only reads: a job that is running, failed early or comes from an older gt-finetune still gathers.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..beads import lifecycle
from ..beads.store import Bead, HistoryEntry
from ..errors import GTFinetuneError
from ..jobs import DONE, FAILED, PENDING, RUNNING, STOPPED, JobRecord, StepRecord
from ..session import Session
from ..workspace import MANIFEST

ABSENT = "absent"  # the job's formula has no step with this action


@dataclass(frozen=True, slots=True)
class StageState:
    """Where one action of the job stands, from its step in the job record."""
    action: str
    step: str  # the formula's step id ("" when the formula has none with this action)
    state: str  # pending, running, done, failed, stopped, or ABSENT
    output: Path | None
    summary: str = ""
    error: str = ""
    started_at: str = ""
    finished_at: str = ""

    @property
    def done(self) -> bool:
        return self.state == DONE and self.output is not None

    def why_missing(self, job_id: str) -> str:
        """One line for a section whose stage left nothing to show."""
        return {
            ABSENT: f"the formula has no `{self.action}` step",
            PENDING: "not run yet",
            RUNNING: f"running since {self.started_at}" if self.started_at else "running",
            FAILED: f"failed: {self.error}",
            STOPPED: f"stopped: {self.error}; resume with `gt-finetune resume {job_id}`",
        }.get(self.state, f"{self.state}: {self.error or 'no output recorded'}")


@dataclass(frozen=True, slots=True)
class JobFacts:
    record: JobRecord
    title: str
    state: str  # the job state (ready, active, review, done, failed, paused, cancelled) or `unknown`
    stage: str
    notes: str
    history: tuple[dict, ...]  # job-state changes: at, actor, state, stage, reason
    stages: dict[str, StageState]  # by action
    corpus: dict | None  # each stage's manifest, when it finished
    corpus_drops: dict[str, int]  # records the corpus health step dropped, by kind: exact, near, excluded
    dataset: dict | None
    plan: dict | None
    train: dict | None
    train_rows: tuple[dict, ...]  # training steps (loss, lr, elapsed_s), live while it trains
    evaluation: dict | None  # the eval stage's metrics.json
    results: tuple[dict, ...]  # … and its results.json (every task, every variant's answer)
    eval_id: str
    card_path: Path | None  # the exported model card (README.md), when the model was exported

    @property
    def job_id(self) -> str:
        return self.record.job_id

    def stage_state(self, action: str) -> StageState:
        return self.stages.get(action) or StageState(action=action, step="", state=ABSENT, output=None)


def gather_job(session: Session, job_id: str) -> JobFacts:
    """Read job `job_id` from the workspace and its bead.

    Raises:
        InputError: no job record for `job_id` in this workspace.
    """
    record = JobRecord.load(session.home, job_id)
    try:
        bead = session.store.show(job_id)
        title, state, stage, notes = bead.title, _state(bead), lifecycle.stage_of(bead), bead.notes
        history = _changes(job_id, session.store.history(job_id))
    except GTFinetuneError as exc:  # bd down, or a bead removed by hand: the files still tell the story
        title, state, stage, notes, history = "", "unknown", "", exc.message, ()
    stages = {s.action: _stage(k, s) for k, s in record.steps.items()}
    read = {a: _manifest(st.output) if st.done else None for a, st in stages.items()}
    eval_dir = stages["eval"].output if "eval" in stages and stages["eval"].done else None
    metrics = _json(eval_dir / "metrics.json") if eval_dir else None
    return JobFacts(
        record=record, title=title, state=state, stage=stage, notes=notes, history=history, stages=stages,
        corpus=read.get("corpus"), corpus_drops=_drops(stages["corpus"] if "corpus" in stages else None),
        dataset=read.get("dataset"), plan=read.get("plan"), train=read.get("train"),
        train_rows=tuple(_train_rows(session.home, job_id, stages.get("train"))), evaluation=metrics,
        results=tuple(_json(eval_dir / "results.json") or ()) if eval_dir else (),
        eval_id=(read.get("eval") or {}).get("id", ""), card_path=_exported_card(session.home, job_id))


def _stage(step_id: str, step: StepRecord) -> StageState:
    return StageState(action=step.action, step=step_id, state=step.state,
                      output=Path(step.output) if step.output else None, summary=step.summary, error=step.error,
                      started_at=step.started_at, finished_at=step.finished_at)


def _state(bead: Bead) -> str:
    try:
        return lifecycle.state_of(bead)
    except GTFinetuneError:  # a status set by hand that is no job state: show it as it is
        return bead.status


def _changes(job_id: str, entries: list[HistoryEntry]) -> tuple[dict, ...]:
    """Bead snapshots collapsed into job-state changes (ready, active(corpus), …), each with the
    time it happened."""
    out: list[dict] = []
    for h in entries:
        snapshot = Bead(id=job_id, title="", status=h.status, labels=h.labels, close_reason=h.close_reason)
        state = _state(snapshot)
        stage = lifecycle.stage_of(snapshot) if state == lifecycle.ACTIVE else ""
        if out and (out[-1]["state"], out[-1]["stage"]) == (state, stage):
            continue
        out.append({"at": h.at, "actor": h.actor, "state": state, "stage": stage, "reason": h.close_reason})
    return tuple(out)


def _manifest(folder: Path | None) -> dict | None:
    return _json(folder / MANIFEST) if folder else None


def _json(path: Path):
    """A JSON file's content, or None when the file is not there (a stage folder removed by hand)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _drops(corpus: StageState | None) -> dict[str, int]:
    """Dropped records by kind: `exact`/`near` duplicates (their reason says so, and names the record
    kept) or `excluded` (synthetic text), as the corpus report counts them."""
    health = _json(corpus.output / "health.json") if corpus is not None and corpus.done else None
    kinds = Counter(d["reason"].split(" ", 1)[0] if d.get("kept") else "excluded"
                    for d in (health or {}).get("dropped", ()))
    return dict(kinds)


def _train_rows(home: Path, job_id: str, train: StageState | None) -> list[dict]:
    """The training steps: the finished run's metrics.jsonl, or the live one of a running trainer."""
    if train is None:
        return []
    if train.done:
        path = train.output / "metrics.jsonl"
    elif train.state == RUNNING:
        from ..train.supervise import job_control

        worker = job_control(home, job_id).worker()
        if worker is None:
            return []
        path = Path(f"{worker['output']}.work") / "metrics.jsonl"
    else:
        return []
    if not path.is_file():
        return []
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # the line a live trainer is writing right now
            continue
        if row.get("kind", "step") == "step" and "loss" in row:
            rows[row["step"]] = row  # a resumed run logs its steps again from the checkpoint
    return [rows[k] for k in sorted(rows)]


def _exported_card(home: Path, job_id: str) -> Path | None:
    """The newest export's model card of this job's model, from the registry."""
    if not (home / "registry.db").is_file():
        return None
    from ..registry import Registry

    for model in reversed(Registry(home).models()):
        card = Path(model.export_dir) / "README.md" if model.job_id == job_id and model.export_dir else None
        if card and card.is_file():
            return card
    return None
