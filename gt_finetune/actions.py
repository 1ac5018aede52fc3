"""What a formula step's `[steps.finetune] action = "…"` runs: one small adapter per stage.

Each adapter turns the step's rendered parameters into the stage's spec, calls the stage's
one entry, and says in one line what it made. Register a new action with one line in ACTIONS.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .beads import lifecycle
from .corpus import SAMPLE_TOWN, SOURCES, CorpusSpec, build_corpus, town_inputs
from .corpus.harvest import health_of
from .corpus.sources import beads_sql
from .corpus.health import HealthConfig
from .dataset import DatasetSpec, build_dataset
from .device import pick_device
from .errors import InputError
from .eval import EvalSpec, Gate, evaluate
from .formula import Step
from .jobs import JobRecord
from .registry import Registry
from .session import Session
from .town import load_town
from .train import LoraSpec, TrainProgress, TrainSpec, job_control, run_training, watchdog_for
from .workspace import read_manifest, shown


CPU_BENCH_ITEMS = 5  # GT-Bench items per family scored on a CPU when `bench_items=auto`


@dataclass
class StepContext:
    session: Session
    job: JobRecord
    step: Step
    params: dict  # the step's [steps.finetune] table with {{vars}} rendered, `action` removed

    def need(self, action: str) -> Path:
        out = self.job.output_of(action)
        if out is None or not (out / "manifest.json").is_file():
            raise InputError(f"step `{self.step.id}` of job `{self.job.job_id}` needs the output of a `{action}` step, "
                             "which has not finished",
                             hint=f"run the whole job with `gt-finetune resume {self.job.job_id}`")
        return out


@dataclass(frozen=True, slots=True)
class StepOutput:
    output: Path
    summary: str


@dataclass(frozen=True, slots=True)
class Action:
    stage: str | None  # the job's `ft:stage:` label while it runs; None for the review hand-off
    run: Callable[[StepContext], StepOutput]


def corpus_action(ctx: StepContext) -> StepOutput:
    """`source`: empty (the town, else the sample town), `sample`, `store`, a town or backup folder, or
    explicit `kind:location` pairs separated by commas (e.g. `beads_jsonl:~/gt/.beads/backup`)."""
    source = str(ctx.params.get("source") or "").strip()
    town = ctx.session.town
    if source in ("", "sample") and town is None:
        town = load_town(SAMPLE_TOWN)  # names the sample's rigs (`hb` → `harbor`)
    if not source:
        root = ctx.session.town.root if ctx.session.town else SAMPLE_TOWN
        if ctx.session.town is None:
            print("corpus: no town and no `source` var: using the sample town shipped with gt-finetune",
                  file=sys.stderr)
        inputs = town_inputs(root)
    elif source == "sample":
        inputs = town_inputs(SAMPLE_TOWN)
    elif source == "store":
        inputs = (("store", ""),)
    elif pairs := source_pairs(source):
        inputs = pairs
    elif (Path(source).expanduser() / "mayor" / "town.json").is_file():
        inputs = town_inputs(Path(source).expanduser())
    else:
        inputs = (("beads_jsonl", source),)
    scope = tuple(x.strip() for x in str(ctx.params.get("scope") or "").split(",") if x.strip() not in ("", "all"))
    if ctx.session.town is None:
        scope = ()  # files and the sample town: everything they hold
    manifest = build_corpus(CorpusSpec(inputs=inputs, scope=scope,
                                       min_reason_chars=int(ctx.params.get("min_reason_chars", 20))),
                            home=ctx.session.home, town=town, store=ctx.session.store)
    gate = HealthConfig(min_examples=int(ctx.params.get("min_examples", 50)),
                        min_tokens=int(ctx.params.get("min_tokens", 5000)))
    too_small = health_of(manifest.path).gate(gate, formula=ctx.job.formula)
    if too_small and not ctx.params.get("force"):
        raise InputError(too_small, hint="harvest more (the sources above), lower `--var min_examples=`, or pass "
                                         "`--var force=true` (the model card will say so)")
    forced = f"; FORCED past the size gate: {too_small}" if too_small else ""
    return StepOutput(manifest.path, f"corpus {manifest.id}: {manifest.records} records ({manifest.source}; "
                                     f"{manifest.new_records} new), {manifest.rejected} lines rejected{forced}")


def source_pairs(source: str) -> tuple[tuple[str, str], ...]:
    """`kind:location,kind:location` as pairs; () when `source` does not start with a known kind.

    A comma-part that does not start with a known `kind:` continues the location before it, so a
    Dolt database list (`beads_sql:host:3307/hq,gt`) and a path with a comma stay whole."""
    pairs: list[list[str]] = []
    for part in source.split(","):
        kind, colon, location = part.lstrip().partition(":")
        if colon and kind in SOURCES:
            pairs.append([kind, location])
        elif pairs and part.strip():
            pairs[-1][1] += "," + part
        elif not pairs:
            return ()
    return tuple((kind, location.strip()) for kind, location in pairs)


def refuse_inline_passwords(variables: dict) -> None:
    """A job keeps its vars in its record and lists them in its bead: a Dolt password in one would
    be stored in clear. Refused before either exists; the harvest reads GT_DOLT_PASSWORD instead.

    Raises:
        InputError: a var holds a `beads_sql` location with `user:password@`.
    """
    for name, value in variables.items():
        for location, bare in _dolt_passwords(value):
            masked = shown(beads_sql.public_location(location))
            raise InputError(f"var `{name}` holds a Dolt password (`beads_sql:{masked}`): a job keeps its vars "
                             "in its record and its bead, so it would be stored in clear",
                             hint="put the password in GT_DOLT_PASSWORD (or the town's Dolt settings) and pass "
                                  f"`user@host:port` (here `beads_sql:{shown(bare)}`)")


def without_inline_passwords(variables: dict) -> dict:
    """The vars with `user:password@` in `beads_sql` locations cut to `user@`: for job records
    written before such vars were refused."""
    clean = dict(variables)
    for name, value in variables.items():
        for location, bare in _dolt_passwords(value):
            clean[name] = clean[name].replace(location, bare)
    return clean


def _dolt_passwords(value: object) -> list[tuple[str, str]]:
    """(location, the location without its password) for each `beads_sql` location in a var that
    holds `user:password@`; `user:@host` (an empty password, asked for on purpose) is no secret."""
    found = []
    for kind, location in source_pairs(value) if isinstance(value, str) else ():
        credentials, address = beads_sql.split_credentials(location)
        user, _, password = (credentials or "").partition(":")
        if kind == "beads_sql" and password:
            found.append((location, f"{user}@{address}"))
    return found


def dataset_action(ctx: StepContext) -> StepOutput:
    p = ctx.params
    spec = DatasetSpec(base_model=str(p["base_model"]), max_seq_len=int(p.get("max_seq_len", 512)),
                       eval_fraction=float(p.get("eval_fraction", 0.2)), seed=int(p.get("seed", 0)),
                       role_context=flag(p.get("role_context", False)), replay=str(p.get("replay") or ""),
                       replay_ratio=float(p.get("replay_ratio") or 0.1))
    manifest = build_dataset(spec, corpus_dir=ctx.need("corpus"), home=ctx.session.home)
    audit = read_manifest(manifest.path)["mask_audit"]
    return StepOutput(manifest.path, f"{manifest.train} train / {manifest.eval} held-out examples, "
                                     f"{audit['trained_share']:.0%} of tokens trained, {manifest.dropped} dropped")


def train_spec(p: dict) -> TrainSpec:
    return TrainSpec(base_model=str(p["base_model"]), max_steps=int(p.get("max_steps", 60)),
                     learning_rate=float(p.get("learning_rate", 3e-4)), batch_size=int(p.get("batch_size", 4)),
                     grad_accum=int(p.get("grad_accum", 1)), seed=int(p.get("seed", 0)),
                     checkpoint_every=int(p.get("checkpoint_every", 20)), packing=flag(p.get("packing", True)),
                     method=str(p.get("method") or "lora"), dtype=str(p.get("dtype") or "auto"),
                     gradient_checkpointing=flag(p.get("gradient_checkpointing", False)),
                     lora=LoraSpec(r=int(p.get("lora_r", 8)), alpha=int(p.get("lora_alpha", 16))))


def plan_action(ctx: StepContext) -> StepOutput:
    """Estimate peak memory and time before training; NO-GO stops the job with the change that
    fits, unless `force`."""
    from .train.plan import plan, refuse_unless_go, save_plan

    dataset_dir = ctx.need("dataset")
    planned = plan(train_spec(ctx.params), dataset_dir=dataset_dir, home=ctx.session.home,
                   calibrate=flag(ctx.params.get("calibrate", True)))
    print(planned.render(), file=sys.stderr)
    out = save_plan(planned, dataset_dir=dataset_dir, home=ctx.session.home)
    refuse_unless_go(planned, force=flag(ctx.params.get("force", False)))
    speed = f", {planned.calibration.seconds_per_step:.1f} s/step" if planned.calibration else ""
    verdict = "GO" if planned.go else "NO-GO, FORCED"
    return StepOutput(out, f"{verdict}: peak ≈ {planned.estimate.total / 1e9:.2f} GB of "
                           f"{planned.budget.bytes / 1e9:.2f} GB{speed}")


def train_action(ctx: StepContext) -> StepOutput:
    p, job_id, session = ctx.params, ctx.job.job_id, ctx.session
    spec = train_spec(p)
    progress = TrainProgress(
        every=int(p.get("progress_every", 10)),
        event=lambda payload: session.notifier.event("finetune_progress", {"issue": job_id, **payload}),
        milestone=lambda text: session.store.comment(job_id, text))
    dataset_dir = ctx.need("dataset")
    manifest = run_training(spec, dataset_dir=dataset_dir, home=session.home, control=job_control(session.home, job_id),
                            processes=int(p.get("processes", 1)), torchrun_args=str(p.get("torchrun_args") or ""),
                            on_row=progress, watchdog=watchdog_for(session.home))
    model = Registry(session.home).register(
        model_id=f"{job_id}-{manifest.path.name}", job_id=job_id,
        corpus_id=read_manifest(ctx.need("corpus"))["id"], dataset_id=read_manifest(dataset_dir)["id"],
        train_dir=str(manifest.path), base_model=spec.base_model)
    return StepOutput(manifest.path, f"{manifest.steps} steps, final loss {manifest.final_loss:.4f}"
                                     f"{_memory_note(manifest.path, ctx.job.output_of('plan'))}; "
                                     f"model {model.id} ({model.state})")


def _memory_note(train_dir: Path, plan_dir: Path | None) -> str:
    """Measured peak memory, next to the planner's estimate when the job planned: the run log
    keeps both, so estimates can be checked against reality."""
    measured = read_manifest(train_dir).get("measured", {})
    peak = measured.get("peak_gpu") or measured.get("peak_rss")
    if not peak:
        return ""
    note = f"; peak memory {peak / 1e9:.2f} GB measured"
    if plan_dir and (plan_dir / "manifest.json").is_file():
        estimate = read_manifest(plan_dir)["estimate"]["total_bytes"]
        note += f" vs {estimate / 1e9:.2f} GB planned ({(estimate - peak) / peak:+.0%})"
    return note


def flag(value) -> bool:
    return str(value).strip().lower() not in ("false", "0", "no", "off", "")


def bench_items(value) -> int:
    """`auto`: every GT-Bench item on a GPU; on a CPU, where each answer takes seconds, the first
    CPU_BENCH_ITEMS of each family (the report shows the counts and their intervals)."""
    text = str(value or "auto").strip().lower()
    if text != "auto":
        try:
            return max(0, int(text))
        except ValueError:
            raise InputError(f"`bench_items` must be a number of items per family or `auto`, got `{value}`",
                             hint="e.g. `--var bench_items=10` (0: all)") from None
    return 0 if pick_device().startswith("cuda") else CPU_BENCH_ITEMS


def eval_action(ctx: StepContext) -> StepOutput:
    p = ctx.params
    gate = Gate(min_margin=float(p.get("min_margin") or 0.05), safety=float(p.get("min_safety") or 1.0),
                max_forgetting=float(p.get("max_forgetting") or 0.25))
    spec = EvalSpec(suite=str(p.get("suite") or "gt-bench"), items_per_family=bench_items(p.get("items_per_family")),
                    held_out_turns=int(p.get("held_out_turns") or 0), gate=gate,
                    probe_prompts=int(p.get("probe_prompts") or 30))
    manifest = evaluate(spec, train_dir=ctx.need("train"), dataset_dir=ctx.need("dataset"), home=ctx.session.home)
    metrics = json.loads((manifest.path / "metrics.json").read_text(encoding="utf-8"))
    tuned = metrics["overall"][metrics["variants"][-1]]
    line = f"{metrics['variants'][-1]} passed {tuned['passed']}/{tuned['total']} tasks"
    if "base+context" in metrics["overall"]:
        line += f" (base+context {metrics['overall']['base+context']['passed']})"
    return StepOutput(manifest.path, line + f"; gate {'PASS' if manifest.gate_passed else 'FAIL'}")


def review_action(ctx: StepContext) -> StepOutput:
    """Open the eval bead (a child of the job, the report as its description) and hand the job to
    its reviewers: the rig's witness and the overseer, mailed FT_EVAL_REVIEW."""
    eval_dir = ctx.need("eval")
    store, job_id = ctx.session.store, ctx.job.job_id
    existing = [b for b in store.list(labels=["ft:eval"], include_closed=True) if b.parent == job_id]
    report = (eval_dir / "report.md").read_text(encoding="utf-8")
    eval_bead = existing[0] if existing else store.create(
        f"FT eval: {ctx.job.run}", description=report, labels=["ft:eval"], parent=job_id,
        metadata={"eval_dir": str(eval_dir)})
    if lifecycle.state_of(store.show(job_id)) != lifecycle.REVIEW:
        lifecycle.move(store, job_id, lifecycle.REVIEW)
        summary = report.split("\n\n")[1] if report.count("\n\n") else report
        body = (f"{summary}\n\nRead the report: bd show {eval_bead.id}\n"
                f"Approve: gt-finetune review {job_id} approve --reason \"…\"\n"
                f"Reject:  gt-finetune review {job_id} reject --reason \"…\"")
        ctx.session.notifier.transition(job_id, ctx.job.run, lifecycle.REVIEW, body)
        ctx.session.notifier.review_request(job_id, body)
    return StepOutput(eval_dir, f"eval bead {eval_bead.id} awaits review")


ACTIONS: dict[str, Action] = {
    "corpus": Action("corpus", corpus_action),
    "dataset": Action("dataset", dataset_action),
    "plan": Action("plan", plan_action),
    "train": Action("train", train_action),
    "eval": Action("eval", eval_action),
    "review": Action(None, review_action),
}
