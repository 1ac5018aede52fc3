"""Jobs at a glance: state, stage, progress, started, last event — from the bead and the job record."""
from __future__ import annotations

import json
from collections import deque
from pathlib import Path

from . import queue as machine
from .beads import lifecycle
from .errors import GTFinetuneError
from .jobs import DONE, JobRecord, list_records
from .lineage import lineage_of
from .registry import Registry
from .session import Session


def job_status(session: Session, job_id: str) -> dict:
    record = JobRecord.load(session.home, job_id)
    try:
        bead = session.store.show(job_id)
        state, stage = lifecycle.state_of(bead), lifecycle.stage_of(bead)
        history = [{"at": h.at, "actor": h.actor, "status": h.status,
                    "stage": next((x.split(":", 2)[2] for x in h.labels if x.startswith(lifecycle.STAGE_PREFIX)), ""),
                    "paused": lifecycle.PAUSED_LABEL in h.labels,
                    "close_reason": h.close_reason} for h in session.store.history(job_id)]
        notes, close_reason = bead.notes, bead.close_reason
        children = [b for b in session.store.list(labels=["ft:eval"], include_closed=True) if b.parent == job_id]
    except GTFinetuneError as exc:
        state, stage, history, notes, close_reason, children = "unknown", "", [], exc.message, "", []
    done = sum(1 for s in record.steps.values() if s.state == DONE)
    eval_dir = record.output_of("eval")
    report = None
    if eval_dir and (eval_dir / "metrics.json").is_file():
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        base, tuned = metrics.get("base_loss"), metrics.get("tuned_loss")
        report = {"path": str(eval_dir / "report.md"), "base_loss": base, "tuned_loss": tuned,
                  "improved": None if base is None or tuned is None else tuned < base,
                  "passed": {v: metrics["overall"][v]["passed"] for v in metrics.get("variants", [])},
                  "tasks": next((c["total"] for c in metrics.get("overall", {}).values()), 0),
                  "gate": metrics.get("gate", {}).get("passed"), "guidance": metrics.get("gate", {}).get("guidance", "")}
    return {
        "id": job_id, "state": state, "stage": stage, "formula": record.formula, "run": record.run,
        "progress": f"{done}/{len(record.steps)}", "started": record.created_at,
        "steps": [{"id": k, "state": v.state, "summary": v.summary, "error": v.error, "output": v.output}
                  for k, v in record.steps.items()],
        "last_event": last_event(session, job_id), "training": live_training(session.home, job_id),
        "machine": machine_state(record, state), "models": job_models(session.home, job_id),
        "eval_bead": children[0].id if children else "",
        "eval_report": report, "history": history, "notes": notes, "close_reason": close_reason,
    }


def machine_state(record: JobRecord, state: str) -> dict | None:
    """Queued behind another job, or interrupted: its bead says it runs, but its process is gone
    (killed, the box rebooted). None when neither."""
    place = machine.queue_position(record.job_id)
    if place is not None:
        position, behind = place
        return {"queued": position, "behind": behind.job_id if behind else ""}
    if record.runner and state in (lifecycle.READY, lifecycle.ACTIVE):
        process = machine.Holder(job_id=record.job_id, **record.runner)
        if not process.alive():
            return {"interrupted": True, "pid": process.pid, "host": process.host}
    return None


def live_training(home: Path, job_id: str) -> dict | None:
    """Where a running trainer is, from its live metrics: step, loss, and an ETA from recent steps."""
    from .train import job_control

    worker = job_control(home, job_id).worker()
    if worker is None:
        return None
    metrics = Path(f"{worker['output']}.work") / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.is_file() else []
    steps = [r for r in rows if r.get("kind", "step") == "step"]
    if not steps:
        return {"pid": worker["pid"], "step": 0, "max_steps": None, "loss": None, "eta_s": None}
    recent = steps[-10:]
    per_step = (recent[-1]["elapsed_s"] - recent[0]["elapsed_s"]) / max(len(recent) - 1, 1) if len(recent) > 1 \
        else recent[-1]["elapsed_s"]
    last = steps[-1]
    return {"pid": worker["pid"], "step": last["step"], "max_steps": last["max_steps"], "loss": last["loss"],
            "eta_s": round(per_step * (last["max_steps"] - last["step"]))}


def job_models(home: Path, job_id: str) -> list[dict]:
    """The models this job trained, with their registry state and why they are stale, if they are."""
    return [_model_line(home, m) for m in _registered(home) if m.job_id == job_id]


def stale_models(home: Path) -> list[dict]:
    """Models in use (candidate, approved, deployed) whose town moved on since their corpus."""
    lines = [_model_line(home, m) for m in _registered(home) if m.state in IN_USE]
    return [line for line in lines if line["stale"]]


IN_USE = ("candidate", "approved", "deployed")


def _registered(home: Path) -> list:
    """The registry's models; a workspace without a registry has none (and status creates none)."""
    return Registry(home).models() if (home / "registry.db").is_file() else []


def _model_line(home: Path, model) -> dict:
    lineage = lineage_of(home, model)
    return {"id": model.id, "state": lineage.state, "stored_state": model.state, "stale": list(lineage.stale)}


def all_jobs(session: Session) -> list[dict]:
    return [job_status(session, r.job_id) for r in list_records(session.home)]


def last_event(session: Session, job_id: str, *, tail: int = 5000) -> str:
    """The newest feed line about this job (the feed can be large: read its tail only)."""
    path: Path = session.notifier.events_path
    if not path.is_file():
        return ""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = deque(f, maxlen=tail)
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (event.get("payload") or {}).get("issue") == job_id:
            return f"{event.get('ts', '')} {event.get('type', '')}: {(event.get('payload') or {}).get('message', '')}"
    return ""
