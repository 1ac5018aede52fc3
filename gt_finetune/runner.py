"""Formula → steps in dependency order → stage actions, with the job bead moved at each edge.

`run` opens the job bead (ready) only after the formula and vars check out; each step moves
it to active with that step's stage label; the review step moves it to review. A failing
step leaves it failed with the error and the exact resume command; `resume` skips finished
steps (their outputs are complete folders).
"""
from __future__ import annotations

import contextlib
import json
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import queue as machine
from .actions import ACTIONS, StepContext, refuse_inline_passwords, train_spec, without_inline_passwords
from .beads import lifecycle
from .beads.embedded import default_actor, now_iso
from .errors import GTFinetuneError, InputError
from .formula import Formula, Step, check_actions, find_formula, load_formula
from .registry import Registry
from .jobs import DONE, FAILED, PENDING, RUNNING, STOPPED, JobRecord, StepRecord
from .session import Session, ft_rig_name
from .train.supervise import TrainingStopped, job_control, stop_trainer
from .config import load_section
from .town.notify import NotifyConfig, Recipients, bad_address

WORKFLOW_LABEL = "ft:workflow:"


def load_runnable(session: Session, name: str) -> Formula:
    """Load a formula and check every step names a known action; nothing is created before this."""
    formula = load_formula(find_formula(name, session.formula_search_path()))
    if formula.type != "workflow":
        raise InputError(f"{formula.path}: formula `{formula.name}` is a {formula.type} formula; "
                         "gt-finetune runs workflow formulas")
    errors = check_actions(formula, ACTIONS)
    if errors:
        raise errors[0]
    return formula


def use_recipients(session: Session, variables: dict) -> None:
    """Who gets mail: the formula's `notify` / `reviewers` vars for this job, else config.toml's
    `[notify]`, else the overseer (and the rig's witness for reviews)."""
    def split(value, var: str) -> tuple[str, ...]:
        addresses = tuple(a.strip() for a in str(value or "").split(",") if a.strip())
        problem = next(filter(None, map(bad_address, addresses)), "")
        if problem:
            raise InputError(f"var `{var}`: {problem}", hint=f"e.g. `--var {var}=overseer,mayor/`")
        return addresses

    config = load_section(session.home, "notify", NotifyConfig)
    by_event = {event: tuple(addresses) for event, addresses in config.recipients.items()}
    notify = split(variables.get("notify"), "notify")
    review = (split(variables.get("reviewers"), "reviewers") or by_event.pop("review", ())
              or (f"{ft_rig_name(session.town)}/witness", "overseer"))
    transitions = notify or by_event.pop("default", ()) or session.notifier.recipients.transitions
    session.notifier.recipients = Recipients(transitions=transitions, review=review,
                                             by_event={} if notify else by_event, verbosity=config.verbosity)


def open_job(session: Session, formula: Formula, variables: dict, *, workflow_root: str = "") -> JobRecord:
    refuse_inline_passwords(variables)
    use_recipients(session, variables)
    run = f"{formula.name}@{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    labels = [lifecycle.JOB_LABEL] + ([WORKFLOW_LABEL + workflow_root] if workflow_root else [])
    bead = session.store.create(
        f"FT: {run}", labels=labels, metadata={"formula": formula.name, "run": run},
        description=(f"Fine-tuning job: formula `{formula.name}` ({formula.path}).\n\n"
                     + "\n".join(f"- {k} = {v}" for k, v in sorted(variables.items()))
                     + "\n\nWatch: gt-finetune status <this id>"))
    job = JobRecord(job_id=bead.id, formula=formula.name, formula_path=str(formula.path), run=run,
                    vars=variables, created_at=now_iso(), workflow_root=workflow_root,
                    steps={s.id: StepRecord(action=s.finetune["action"]) for s in formula.ordered_steps()},
                    runner=runner_record(machine.me(bead.id)))  # killed before it holds the machine: interrupted
    job.save(session.home)
    session.notifier.transition(bead.id, run, lifecycle.READY,
                                f"Job {bead.id} is ready: formula {formula.name}, "
                                f"{len(job.steps)} steps ({' -> '.join(job.steps)}).")
    return job


def run_formula(session: Session, name: str, overrides: dict[str, str], *, queue: bool = True) -> str:
    formula = load_runnable(session, name)
    return run_job(session, formula, formula.resolve_vars(overrides), queue=queue)


def run_job(session: Session, formula: Formula, variables: dict, *, queue: bool = True) -> str:
    """Open the job and run it; with `queue=False` a busy machine is refused before any bead exists."""
    busy = machine.holder()
    if not queue and busy is not None:
        raise InputError(f"another job is training on this machine: {busy.describe()}",
                         hint="wait for it to finish, or run without --no-queue to queue behind it")
    job = open_job(session, formula, variables)
    print(f"job {job.job_id}: {formula.name}, steps {' -> '.join(job.steps)}", file=sys.stderr)
    run_steps(session, job, formula, queue=queue)
    return job.job_id


def plan_formula(session: Session, name: str, overrides: dict[str, str], *, calibrate: bool):
    """`gt-finetune plan`: build (or reuse) the corpus and dataset the formula's plan step needs and
    plan its training, without opening a job — no bead, no mail. The stages are cached by content,
    so a `run` with the same vars afterwards reuses them."""
    formula = load_runnable(session, name)
    return plan_job(session, formula, formula.resolve_vars(overrides), calibrate=calibrate)


def plan_job(session: Session, formula: Formula, variables: dict, *, calibrate: bool):
    from .train.plan import plan

    steps = {s.finetune["action"]: s for s in formula.ordered_steps()}
    planner = steps.get("plan") or steps.get("train")
    if planner is None or "dataset" not in steps:
        raise InputError(f"formula `{formula.name}` has no dataset and plan/train steps to plan",
                         hint="plan a training formula such as `finetune-lora`")
    job = prepare(session, formula, variables, ("corpus", "dataset"))
    params = formula.render({k: v for k, v in planner.finetune.items() if k != "action"}, variables)
    return plan(train_spec(params), dataset_dir=job.output_of("dataset"), home=session.home, calibrate=calibrate)


def prepare(session: Session, formula: Formula, variables: dict, actions: tuple[str, ...]) -> JobRecord:
    """Run the formula's steps with these actions outside any job (no bead, no mail); the returned
    record points at their outputs."""
    refuse_inline_passwords(variables)  # as a job would: `plan`, then `run` with the same vars
    steps = {s.finetune["action"]: s for s in formula.ordered_steps()}
    job = JobRecord(job_id="plan", formula=formula.name, formula_path=str(formula.path), run="plan",
                    vars=variables, created_at=now_iso())
    for action in actions:
        step = steps[action]
        params = formula.render({k: v for k, v in step.finetune.items() if k != "action"}, variables)
        out = ACTIONS[action].run(StepContext(session=session, job=job, step=step, params=params))
        job.steps[step.id] = StepRecord(state=DONE, action=action, output=str(out.output), summary=out.summary)
        print(f"{step.id}: {out.summary}", file=sys.stderr)
    return job


def resume(session: Session, job_id: str, *, queue: bool = True) -> str:
    job = JobRecord.load(session.home, job_id)
    forget_inline_passwords(session, job)
    state = lifecycle.state_of(session.store.show(job_id))
    unfinished = [s.action for s in job.steps.values() if s.state != DONE]
    # killed after the review step handed the job over (bead in review, eval bead open) but before
    # its record said so: run it again to finish the record; it reuses the eval bead and mails no one
    handed_off = state == lifecycle.REVIEW and unfinished == ["review"]
    if state in (lifecycle.DONE, lifecycle.CANCELLED) or (state == lifecycle.REVIEW and not handed_off):
        raise InputError(f"job `{job_id}` is {state}; there is nothing to resume",
                         hint=f"see it with `gt-finetune status {job_id}`")
    run_steps(session, job, load_formula(Path(job.formula_path)), queue=queue)
    return job_id


def forget_inline_passwords(session: Session, job: JobRecord) -> None:
    """A record written before vars with a Dolt password were refused holds it in clear: rewrite it
    without, and say where the harvest now reads the password from."""
    clean = without_inline_passwords(job.vars)
    if clean != job.vars:
        job.vars = clean
        job.save(session.home)
        print(f"warning: job `{job.job_id}` kept a Dolt password in its vars; removed it from "
              f"{job.path(session.home, job.job_id)}: a step that reads Dolt now takes the password from "
              "GT_DOLT_PASSWORD (or the town's Dolt settings); the job bead's description may still show it",
              file=sys.stderr)


def run_steps(session: Session, job: JobRecord, formula: Formula, *, queue: bool = True) -> None:
    use_recipients(session, job.vars)
    with holding_machine(session, job, queue=queue):
        for step in formula.ordered_steps():
            record = job.steps.setdefault(step.id, StepRecord(action=step.finetune["action"]))
            if record.state == DONE and record.output and (Path(record.output) / "manifest.json").is_file():
                print(f"step {step.id}: done already ({record.summary})", file=sys.stderr)
                continue
            run_step(session, job, formula, step)


@contextlib.contextmanager
def holding_machine(session: Session, job: JobRecord, *, queue: bool):
    """Run the block as the machine's one job; the job record names the process while it runs,
    so `status` can tell a job that is running from one whose process was killed."""
    def queued(holder: machine.Holder) -> None:
        note = f"queued behind {holder.job_id}: one job trains on this machine at a time"
        print(f"{note} ({holder.describe()}); waiting — Ctrl-C leaves the queue, the job stays as it is",
              file=sys.stderr)
        session.store.update(job.job_id, append_notes=note)
        session.notifier.event("finetune_queued", {"issue": job.job_id, "behind": holder.job_id,
                                                   "message": f"{job.job_id}: {note}"})

    with machine.machine_lock(job.job_id, wait=queue, on_queued=queued) as me:
        job.runner = runner_record(me)
        job.save(session.home)
        try:
            yield
        finally:
            job.runner = {}
            with contextlib.suppress(OSError):  # a full disk: the step's own error is the one to show
                job.save(session.home)


def runner_record(me: machine.Holder) -> dict:
    """The process running a job, as the job record keeps it for `status`."""
    return {"pid": me.pid, "host": me.host, "created": me.created, "since": me.since}


def run_step(session: Session, job: JobRecord, formula: Formula, step: Step) -> None:
    """Run one step, moving the bead and telling the feed; on failure leave the job `failed`."""
    missing = [n for n in step.needs if job.steps.get(n, StepRecord()).state != DONE]
    if missing:
        raise InputError(f"step `{step.id}` needs {', '.join(f'`{m}`' for m in missing)} to finish first "
                         f"(job `{job.job_id}`)", hint=f"run the job with `gt-finetune resume {job.job_id}`")
    action = ACTIONS[step.finetune["action"]]
    params = formula.render({k: v for k, v in step.finetune.items() if k != "action"}, job.vars)
    store, notifier = session.store, session.notifier
    record = job.steps[step.id]
    record.state, record.started_at, record.error = RUNNING, now_iso(), ""
    job.save(session.home)
    try:
        if action.stage:
            bead = store.show(job.job_id)
            state = lifecycle.state_of(bead)
            if not (state == lifecycle.ACTIVE and lifecycle.stage_of(bead) == action.stage):
                lifecycle.move(store, job.job_id, lifecycle.ACTIVE, stage=action.stage)
                if state != lifecycle.ACTIVE:
                    notifier.transition(job.job_id, job.run, lifecycle.ACTIVE,
                                        f"Job {job.job_id} is running (step {step.id}).")
        notifier.event("finetune_step_started", {"issue": job.job_id, "step": step.id,
                                                 "action": action.stage or "review",
                                                 "message": f"{job.job_id}: {step.id} started"})
        print(f"step {step.id}: {step.title}", file=sys.stderr)
        out = action.run(StepContext(session=session, job=job, step=step, params=params))
    except TrainingStopped as stop:
        stopped(session, job, step, stop)
        raise
    except Exception as exc:
        fail(session, job, step, exc)
        raise
    record.state, record.output, record.summary, record.finished_at = DONE, str(out.output), out.summary, now_iso()
    job.save(session.home)
    notifier.event("finetune_step_finished", {"issue": job.job_id, "step": step.id, "output": str(out.output),
                                              "message": f"{job.job_id}: {step.id} done: {out.summary}"})
    try:  # the step is done and recorded: a lost comment must not stop the job
        store.comment(job.job_id, f"step `{step.id}` done: {out.summary}")
    except GTFinetuneError as exc:
        print(f"warning: could not comment on job `{job.job_id}`: {exc.message}", file=sys.stderr)
    notifier.milestone(job.job_id, job.run, step.id, out.summary)
    print(f"step {step.id}: done: {out.summary}", file=sys.stderr)


def stopped(session: Session, job: JobRecord, step: Step, stop: TrainingStopped) -> None:
    """Paused: the bead says why and how to go on. Cancelled: `cancel` already closed the bead."""
    record = job.steps[step.id]
    record.state, record.error, record.finished_at = STOPPED, stop.message, now_iso()
    job.save(session.home)
    if stop.action != "pause":
        return
    resume_cmd = f"gt-finetune resume {job.job_id}"
    stop.hint = resume_cmd
    text = f"{stop.message}; checkpoint kept at step {stop.step}\nresume: {resume_cmd}"
    if lifecycle.state_of(session.store.show(job.job_id)) == lifecycle.ACTIVE:
        lifecycle.move(session.store, job.job_id, lifecycle.PAUSED, reason=text)
        session.notifier.transition(job.job_id, job.run, lifecycle.PAUSED, f"{text}")


def fail(session: Session, job: JobRecord, step: Step, exc: BaseException) -> None:
    """Record the failure wherever we still can. Recording it may fail too (the disk that filled up
    under a checkpoint also holds the job record and the bead store): then say so, and let the
    original error be the one the user sees."""
    message = exc.message if isinstance(exc, GTFinetuneError) else f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, GTFinetuneError):
        traceback.print_exc(file=sys.stderr)
    resume_cmd = f"gt-finetune resume {job.job_id}"
    if isinstance(exc, GTFinetuneError) and resume_cmd not in (exc.hint or ""):
        exc.hint = f"{exc.hint}; then resume: {resume_cmd}" if exc.hint else f"resume: {resume_cmd}"
    record = job.steps[step.id]
    record.state, record.error, record.finished_at = FAILED, message, now_iso()
    try:
        job.save(session.home)
        session.notifier.event("finetune_step_failed", {"issue": job.job_id, "step": step.id,
                                                        "message": f"{job.job_id}: {step.id} failed: {message}"})
        if lifecycle.state_of(session.store.show(job.job_id)) != lifecycle.FAILED:
            lifecycle.move(session.store, job.job_id, lifecycle.FAILED,
                           reason=f"step `{step.id}` failed: {message}\nresume: {resume_cmd}")
            session.notifier.transition(job.job_id, job.run, lifecycle.FAILED,
                                        f"Step {step.id} failed: {message}\n\nResume with: {resume_cmd}")
    except Exception as recording:  # noqa: BLE001 - whatever it is, the step's own error matters more
        why = recording.message if isinstance(recording, GTFinetuneError) else f"{type(recording).__name__}: {recording}"
        print(f"warning: could not record that job `{job.job_id}` failed: {why}", file=sys.stderr)


def run_single_step(session: Session, step_id: str, *, job_id: str | None = None, bead_id: str | None = None,
                    formula_name: str = "finetune-lora", overrides: dict[str, str] | None = None) -> str:
    """`gt-finetune step <id> --job <ft-id>` or, under `gt formula run`, `--bead <step bead>`."""
    if job_id:
        job = JobRecord.load(session.home, job_id)
        forget_inline_passwords(session, job)
        formula = load_formula(Path(job.formula_path))
    else:
        root, title = workflow_root_of(session, bead_id)
        formula = load_runnable(session, formula_from_root_title(title) or formula_name)
        job = job_for_workflow(session, root, formula, overrides or {})
    step = formula.step(step_id)
    use_recipients(session, job.vars)
    if job.steps.get(step_id, StepRecord()).state == DONE:
        print(f"step {step_id}: done already in job {job.job_id}", file=sys.stderr)
        return job.job_id
    with holding_machine(session, job, queue=True):
        run_step(session, job, formula, step)
    return job.job_id


def workflow_root_of(session: Session, bead_id: str) -> tuple[str, str]:
    """The `hq-wf-…` bead that `tracks` this step bead, with its title (gastown.md §1.5).

    gt keeps the root in the town's beads and points at a rig's step as `external:<prefix>:<id>`,
    so in a town the root is looked up there. A bead no workflow tracks is its own root.
    """
    bead = session.store.show(bead_id)
    for dep in bead.dependents:
        if dep.type == "tracks":
            return dep.issue_id, session.store.show(dep.issue_id).title
    if session.town is not None:
        from .beads import BdStore

        town_store = BdStore(workdir=session.town.root)
        for root in town_store.list():
            if not root.id.startswith("hq-wf-"):
                continue
            detail = town_store.show(root.id)
            if any(d.type == "tracks" and (d.depends_on_id == bead_id or d.depends_on_id.endswith(f":{bead_id}"))
                   for d in detail.dependencies):
                return root.id, root.title
    return bead_id, bead.title


def formula_from_root_title(title: str) -> str:
    """gt titles workflow roots `<formula>: <description> (N steps)`."""
    name = title.split(":", 1)[0].strip() if ":" in title else ""
    return name if name and " " not in name else ""


def job_for_workflow(session: Session, root: str, formula: Formula, overrides: dict) -> JobRecord:
    """Every step of one workflow shares one job bead: find it by label, or open it."""
    for bead in session.store.list(labels=[WORKFLOW_LABEL + root], include_closed=True):
        if lifecycle.JOB_LABEL in bead.labels:
            try:
                return JobRecord.load(session.home, bead.id)
            except InputError:
                break
    return open_job(session, formula, formula.resolve_vars(overrides), workflow_root=root)


def decide_review(session: Session, job_id: str, *, approve: bool, reason: str) -> str:
    """Approve (job done, model approved) or reject (job failed and resumable, model rejected) a job
    in review. The reviewer's identity (bd's actor) goes into the bead, the mail and the registry."""
    state = lifecycle.state_of(session.store.show(job_id))
    if state != lifecycle.REVIEW:
        raise InputError(f"job `{job_id}` is {state}, not in review",
                         hint=f"see it with `gt-finetune status {job_id}`")
    job = JobRecord.load(session.home, job_id)
    use_recipients(session, job.vars)
    reviewer = default_actor()
    guidance = _gate_guidance(job)
    if approve:
        to, text = lifecycle.DONE, f"approved by {reviewer}: {reason}"
        if guidance is not None:  # the reviewer's call, but on the record, where everyone sees it
            print(f"warning: approving job `{job_id}` although its eval gate FAILED: {guidance}", file=sys.stderr)
            text += f"\n(approved over a failed eval gate: {guidance})"
    else:
        to = lifecycle.FAILED
        text = (f"rejected in review by {reviewer}: {reason}" + (f"\nguidance: {guidance}" if guidance else "")
                + f"\nresume: gt-finetune resume {job_id}")
        for record in job.steps.values():
            if record.action in ("eval", "review"):
                record.state = PENDING
        job.save(session.home)
    registry = Registry(session.home)
    for model in registry.models():
        if model.job_id == job_id and model.state in ("candidate", "rejected", "approved"):
            registry.set_state(model.id, "approved" if approve else "rejected", f"{reviewer}: {reason}")
    lifecycle.move(session.store, job_id, to, reason=text)
    session.notifier.transition(job_id, job.run, to, text)
    return job_id


def _gate_guidance(job: JobRecord) -> str | None:
    """The eval gate's advice when the gate failed (to hand back with a rejection, or to put on the
    record of an approval over it); None when it passed or there is none."""
    eval_dir = job.output_of("eval")
    metrics = eval_dir / "metrics.json" if eval_dir else None
    if not metrics or not metrics.is_file():
        return None
    gate = json.loads(metrics.read_text(encoding="utf-8")).get("gate") or {}
    return None if gate.get("passed", True) else gate.get("guidance", "") or "see the eval report"


def pause(session: Session, job_id: str, reason: str) -> str:
    """Ask the job's trainer to checkpoint and stop; the process running the job marks it paused."""
    JobRecord.load(session.home, job_id)
    if not stop_trainer(job_control(session.home, job_id), "pause", reason):
        raise InputError(f"job `{job_id}` is not training right now, so there is nothing to pause",
                         hint=f"see where it stands with `gt-finetune status {job_id}`")
    return job_id


def cancel(session: Session, job_id: str, reason: str) -> str:
    """Stop a training job first (its last checkpoint is kept), then close the bead `cancelled:`."""
    job = JobRecord.load(session.home, job_id)
    use_recipients(session, job.vars)
    stop_trainer(job_control(session.home, job_id), "cancel", reason)
    text = f"cancelled: {reason}; outputs and checkpoints kept under {session.home}"
    lifecycle.move(session.store, job_id, lifecycle.CANCELLED, reason=text)
    session.notifier.transition(job_id, job.run, lifecycle.CANCELLED, text)
    return job_id
