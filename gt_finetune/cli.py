"""The `gt-finetune` command: parse, call one entry, render. No business logic lives here.

Exit codes: 0 done, 1 input the user can fix, 2 bad invocation, 3 something outside is down,
4 a bug in gt-finetune (traceback printed), 75 stopped on request (paused or cancelled; resume later).
"""
from __future__ import annotations

import errno
import functools
import importlib
import json
import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .errors import ExternalError, GTFinetuneError, InputError
from .workspace import path_error, shown

SCHEMA_VERSION = 1


def common(fn):
    """`--home` and `--town` on every command that touches state."""
    @click.option("--home", type=click.Path(file_okay=False), envvar="GT_FINETUNE_HOME",
                  help="Workspace folder (default: $GT_FINETUNE_HOME, <town>/.gt-finetune, ~/.gt-finetune).")
    @click.option("--town", type=click.Path(file_okay=False), help="Gas Town root (default: found from the cwd).")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"`--var {pair}` is not key=value", hint="e.g. `--var max_steps=100`")
        out[key.strip()] = value
    return out


def session_for(home, town, **kwargs):
    from .session import open_session

    return open_session(home=home, town=town, **kwargs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gt-finetune")
def cli():
    """Fine-tune a local model on a Gas Town's own history; every job is an `ft-` bead.

    \b
    Example:
      gt-finetune run finetune-lora
    """


@cli.command()
@click.argument("formula")
@click.option("--var", "var", multiple=True, metavar="K=V", help="Set a formula var (repeatable).")
@click.option("--force", is_flag=True, help="Same as `--var force=true`: train past the size gate and the "
              "planner's NO-GO (recorded on the job).")
@click.option("--no-queue", is_flag=True, help="Refuse, instead of waiting, when another job is training on this machine.")
@common
def run(formula, var, force, no_queue, home, town):
    """Run a formula end to end as one job; prints the job id last.

    One job trains on a machine at a time: while another runs, this one waits its turn (its bead
    stays ready, with a note saying whom it waits behind), or with --no-queue refuses.

    \b
    Example:
      gt-finetune run finetune-lora --var max_steps=100
    """
    from .runner import run_formula

    overrides = {**parse_vars(var), **({"force": "true"} if force else {})}
    session = session_for(home, town)
    job_id = run_formula(session, formula, overrides, queue=not no_queue)
    click.echo(job_id)


@cli.command()
@click.argument("job_id")
@click.option("--no-queue", is_flag=True, help="Refuse, instead of waiting, when another job is training on this machine.")
@common
def resume(job_id, no_queue, home, town):
    """Continue a job, skipping the steps that finished.

    \b
    Example:
      gt-finetune resume ft-a3k9
    """
    from .runner import resume as resume_job

    click.echo(resume_job(session_for(home, town), job_id, queue=not no_queue))


@cli.command()
@click.argument("step_id")
@click.option("--job", "job_id", help="The ft- job bead to run the step for.")
@click.option("--bead", "bead_id", help="Your step bead under `gt formula run` (finds the job from its workflow).")
@click.option("--var", "var", multiple=True, metavar="K=V", help="Set a formula var when the job is new.")
@click.option("--formula", default="finetune-lora", show_default=True, help="Formula, when the workflow does not say.")
@common
def step(step_id, job_id, bead_id, var, formula, home, town):
    """Run one step of a job.

    \b
    Example:
      gt-finetune step train --bead ft-wfs-k2x9
    """
    from .runner import run_single_step

    if bool(job_id) == bool(bead_id):
        raise click.UsageError("give exactly one of --job or --bead")
    session = session_for(home, town)
    click.echo(run_single_step(session, step_id, job_id=job_id, bead_id=bead_id, formula_name=formula,
                               overrides=parse_vars(var)))
    if bead_id:
        click.echo(f"step `{step_id}` done; close your step bead: bd close {bead_id}", err=True)


@cli.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@common
def status(job_id, as_json, home, town):
    """Show one job in detail, or every job at a glance.

    \b
    Example:
      gt-finetune status ft-a3k9
    """
    from .status import all_jobs, job_status, stale_models

    session = session_for(home, town, quiet=as_json)
    if job_id is None:
        _render_jobs(all_jobs(session), as_json)
        if not as_json:
            for model in stale_models(session.home):
                click.echo(f"stale model {model['id']} ({model['stored_state']}): {'; '.join(model['stale'])}; "
                           "retrain with `gt-finetune retrain`")
        return
    info = job_status(session, job_id)
    if as_json:
        click.echo(json.dumps({"schema_version": SCHEMA_VERSION, **info}, indent=2))
        return
    click.echo(f"{info['id']}  {info['state']}" + (f" (stage {info['stage']})" if info["stage"] else "")
               + f"  {info['run']}")
    for s in info["steps"]:
        click.echo(f"  {s['id']:<10} {s['state']:<8} {s['summary'] or s['error']}")
    if info["training"]:
        from .train.progress import duration

        t = info["training"]
        click.echo(f"  training now (pid {t['pid']}): step {t['step']}/{t['max_steps'] or '?'}"
                   + (f", loss {t['loss']:.4f}, ETA {duration(t['eta_s'])}" if t["loss"] is not None else ""))
    if info["machine"]:
        m = info["machine"]
        if "queued" in m:
            click.echo(f"  queued: number {m['queued']} in line" + (f", behind {m['behind']}" if m["behind"] else "")
                       + " (one job trains on this machine at a time)")
        else:
            click.echo(f"  interrupted: the process running it (pid {m['pid']} on {m['host']}) is gone; "
                       f"resume with `gt-finetune resume {info['id']}`")
    if info["eval_report"]:
        r = info["eval_report"]
        if r["passed"]:
            click.echo(f"  eval: of {r['tasks']} tasks passed " + ", ".join(f"{v} {n}" for v, n in r["passed"].items())
                       + f"; gate {'PASS' if r['gate'] else 'FAIL: ' + r['guidance']}")
        if r["improved"] is not None:
            click.echo(f"  held-out loss tuned {r['tuned_loss']:.4f} vs base {r['base_loss']:.4f} "
                       f"({'better' if r['improved'] else 'NOT better'})")
        click.echo(f"  report: {r['path']}")
    if info["eval_bead"]:
        click.echo(f"  eval bead: {info['eval_bead']}")
    for model in info["models"]:
        click.echo(f"  model: {model['id']} {model['stored_state']}"
                   + (f" — STALE: {'; '.join(model['stale'])}; retrain with `gt-finetune retrain`" if model["stale"] else ""))
    if info["history"]:
        click.echo("  history: " + " -> ".join(_history_labels(info["history"])))
    if info["last_event"]:
        click.echo(f"  last event: {info['last_event']}")
    if info["state"] in ("failed", "paused"):
        click.echo(f"  notes: {info['notes']}")


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array on stdout.")
@common
def list_jobs(as_json, home, town):
    """List every job with its state, stage and progress.

    \b
    Example:
      gt-finetune list --json
    """
    from .status import all_jobs

    _render_jobs(all_jobs(session_for(home, town, quiet=as_json)), as_json)


@cli.command()
@click.argument("job_id")
@click.argument("decision", type=click.Choice(["approve", "reject"]))
@click.option("--reason", required=True, help="One line: why (goes into the bead, the mail and the registry).")
@common
def review(job_id, decision, reason, home, town):
    """Approve or reject a job in review (the witness or a human does this).

    Approve: the job is done and its model registered as approved. Reject: the job fails with the
    reason plus the eval gate's guidance, resumable after a fix. The reviewer is $BD_ACTOR (else $USER).

    \b
    Examples:
      gt-finetune review ft-a3k9 approve --reason "beats base+context on every family; safety 100%"
      gt-finetune review ft-a3k9 reject --reason "safety items failed"
    """
    from .runner import decide_review

    click.echo(decide_review(session_for(home, town), job_id, approve=decision == "approve", reason=reason))


@cli.command(name="eval")
@click.argument("model")
@click.option("--suite", default="gt-bench", show_default=True,
              help="`gt-bench` (built in) or the path of a promptfooconfig.yaml.")
@click.option("--compare", type=click.Choice(["base", "none"]), default="base", show_default=True,
              help="Also score the base model (with and without role context).")
@click.option("--items", "items_per_family", type=int, default=0, help="GT-Bench items per family (0: all).")
@click.option("--max-new-tokens", type=int, default=64, show_default=True,
              help="Answer length (formula files get 256).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@common
def eval_command(model, suite, compare, items_per_family, max_new_tokens, as_json, home, town):
    """Score a tuned model: base, base + role context, tuned, tuned + role context side by side.

    MODEL is a job (`ft-…`, its train and dataset outputs) or a training run folder. Writes
    report.md, results.json, metrics.json and chart.png; prints the report (or --json) and the
    folder on the last line.

    \b
    Examples:
      gt-finetune eval ft-a3k9
      gt-finetune eval ft-a3k9 --suite gt-model-eval/promptfooconfig.yaml --json
      gt-finetune eval ~/.gt-finetune/train/ab12cd34ef56 --items 5
    """
    from .eval import EvalSpec, evaluate
    from .jobs import JobRecord

    session = session_for(home, town)
    path = Path(model).expanduser()
    if path.is_dir():
        train_dir, dataset_dir = path, None
    else:
        job = JobRecord.load(session.home, model)
        train_dir, dataset_dir = job.output_of("train"), job.output_of("dataset")
        if train_dir is None:
            raise InputError(f"job `{model}` has no finished train step to evaluate",
                             hint=f"see it with `gt-finetune status {model}`")
    spec = EvalSpec(suite=suite, compare_base=compare == "base", items_per_family=items_per_family,
                    max_new_tokens=max_new_tokens)
    manifest = evaluate(spec, train_dir=train_dir, dataset_dir=dataset_dir, home=session.home)
    if as_json:
        click.echo((manifest.path / "metrics.json").read_text(encoding="utf-8").rstrip())
    else:
        click.echo((manifest.path / "report.md").read_text(encoding="utf-8").rstrip())
    click.echo(str(manifest.path))


@cli.command(name="plan")
@click.argument("formula", default="finetune-lora")
@click.option("--var", multiple=True, metavar="KEY=VALUE", help="Set a formula var (repeatable).")
@click.option("--no-calibrate", is_flag=True, help="Estimate only; do not measure a few real training steps.")
@click.option("--json", "as_json", is_flag=True, help="The plan as JSON on stdout.")
@common
def plan_command(formula, var, no_calibrate, as_json, home, town):
    """Estimate a formula's peak memory and time before training: GO or NO-GO with the change that fits.

    Builds (or reuses) the corpus and dataset, then plans without opening a job. Exits 1 on NO-GO.

    \b
    Example:
      gt-finetune plan finetune-lora --var batch_size=8
    """
    from .runner import plan_formula
    from .train.plan import refuse_unless_go

    planned = plan_formula(session_for(home, town, quiet=as_json), formula, parse_vars(var),
                           calibrate=not no_calibrate)
    click.echo(json.dumps(planned.as_dict(), indent=2) if as_json else planned.render())
    refuse_unless_go(planned)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Decide and say why; start nothing.")
@click.option("--min-growth", type=float, help="Retrain when the corpus has this fraction more records than the "
              "model in use had (default: [retrain] min_growth in config.toml, else 0.25).")
@click.option("--cooldown-hours", type=float, help="Hours between retrains (default: [retrain] cooldown_hours, else 24).")
@click.option("--json", "as_json", is_flag=True, help="The decision as JSON on stdout.")
@common
def retrain(dry_run, min_growth, cooldown_hours, as_json, home, town):
    """Retrain the model in use if the town's history grew enough (what the finetune-retrain plugin runs).

    Runs the deployed (else newest approved) model's formula and vars again when the corpus grew by
    --min-growth, the cooldown has passed, no job is training here and the planner says GO.
    Prints the decision and why; exits 0 whether or not it retrained.

    \b
    Example:
      gt-finetune retrain --dry-run
    """
    from dataclasses import replace

    from .config import load_section
    from .retrain import RetrainConfig, retrain as decide

    session = session_for(home, town, quiet=as_json)
    config = load_section(session.home, "retrain", RetrainConfig)
    overrides = {k: v for k, v in (("min_growth", min_growth), ("cooldown_hours", cooldown_hours)) if v is not None}
    try:
        config = replace(config, **overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    decision = decide(session, config=config, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"schema_version": SCHEMA_VERSION, **decision.to_json()}, indent=2))
        return
    click.echo(("retrain: " if decision.retrain else "no retrain: ") + decision.reason)
    for reason in decision.stale:
        click.echo(f"  stale: {reason}")
    if decision.job_id:
        click.echo(decision.job_id)


@cli.command()
@click.argument("job_id")
@click.option("--reason", default="paused by the operator", show_default=True, help="Why (goes into the bead notes).")
@common
def pause(job_id, reason, home, town):
    """Pause a training job: it saves a checkpoint, gives its memory back, and waits for `resume`.

    \b
    Example:
      gt-finetune pause ft-a3k9 && gt-finetune resume ft-a3k9
    """
    from .runner import pause as pause_job

    click.echo(pause_job(session_for(home, town), job_id, reason))


@cli.command()
@click.argument("job_id")
@click.option("--reason", required=True, help="Why (goes into the close reason).")
@common
def cancel(job_id, reason, home, town):
    """Cancel a job; a running trainer saves a checkpoint first; outputs and checkpoints are kept.

    \b
    Example:
      gt-finetune cancel ft-a3k9 --reason "wrong source"
    """
    from .runner import cancel as cancel_job

    click.echo(cancel_job(session_for(home, town), job_id, reason))


@cli.command()
@click.option("--town", type=click.Path(file_okay=False), help="Gas Town root (default: found from the cwd).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
def install(town, dry_run):
    """Wire gt-finetune into a town: formulas, the `review` status, the witness directive.

    \b
    Example:
      gt-finetune install --town ~/gt --dry-run
    """
    from .town import find_town
    from .town.install import install as do_install
    from .town.install import print_changes, summary

    found = find_town(explicit=town)
    if found is None:
        raise InputError(f"no Gas Town found above {Path.cwd()}",
                         hint="pass `--town ~/gt` or run it inside your town")
    changes = do_install(found, dry_run=dry_run)
    print_changes(changes)
    click.echo(summary(changes, found.root, dry_run=dry_run))


@cli.group(invoke_without_command=True)
@click.pass_context
def corpus(ctx):
    """Harvest a town's history into versioned corpora; list and show them.

    \b
    Example:
      gt-finetune corpus build --beads-jsonl ~/gt/.beads/backup --transcripts ~/.claude/projects
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(corpus_list)


@corpus.command(name="build")
@click.option("--beads-jsonl", multiple=True, metavar="DIR", help="A beads JSONL backup or export (repeatable).")
@click.option("--dolt", multiple=True, metavar="HOST:PORT", help="A Dolt/MySQL server to read beads from, "
              "`[user[:pw]@]host:port[/db,db]`, IPv6 as `[::1]:3307` (repeatable); a password is better kept in "
              "GT_DOLT_PASSWORD.")
@click.option("--transcripts", multiple=True, metavar="DIR", help="Claude Code projects dir or .jsonl (repeatable).")
@click.option("--events", multiple=True, metavar="FILE", help="An .events.jsonl/.feed.jsonl, or a town root.")
@click.option("--formulas", "formula_dirs", multiple=True, metavar="DIR", help="A folder of *.formula.toml.")
@click.option("--role-context", multiple=True, metavar="DIR", help="Directives / role templates / prime captures.")
@click.option("--store", is_flag=True, help="Closed beads from gt-finetune's own bead store.")
@click.option("--sources", default="", metavar="KINDS", help="With no inputs: only these of the town's sources "
              "(comma-separated: beads_sql,beads_jsonl,events,formulas,role_context,transcripts).")
@click.option("--scope", multiple=True, metavar="town|rig:NAME|all",
              help="`town` (the town's own history) and/or `rig:NAME` (repeatable). Default inside a town: `town`, "
                   "so another rig's history needs naming; with explicit inputs: everything.")
@click.option("--since", default="", help="Only records created at or after this ISO date/time.")
@click.option("--until", default="", help="Only records created at or before this ISO date/time.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@common
def corpus_build(beads_jsonl, dolt, transcripts, events, formula_dirs, role_context, store, sources, scope, since,
                 until, as_json, home, town):
    """Harvest into a new corpus version (nothing new: the latest); prints its id last.

    With no inputs it reads what the town offers (or the sample town outside one).

    \b
    Example:
      gt-finetune corpus build --beads-jsonl ~/gt/.beads/backup --since 2026-10-01
    """
    from .corpus import SAMPLE_TOWN, CorpusSpec, build_corpus, town_inputs
    from .town import load_town

    session = session_for(home, town, quiet=as_json)
    inputs = ([("beads_jsonl", x) for x in beads_jsonl] + [("beads_sql", x) for x in dolt]
              + [("transcripts", x) for x in transcripts] + [("events", x) for x in events]
              + [("formulas", x) for x in formula_dirs] + [("role_context", x) for x in role_context]
              + ([("store", "")] if store else []))
    found = session.town
    scopes = tuple(x for x in scope if x != "all")
    if not inputs:
        if found is None:
            click.echo("corpus: no town and no inputs: harvesting the sample town shipped with gt-finetune", err=True)
            found = load_town(SAMPLE_TOWN)
        elif not scope:
            scopes = ("town",)
            click.echo("corpus: scope `town` (the town's own history); name rigs with `--scope rig:NAME`, "
                       "or `--scope all`", err=True)
        inputs = list(town_inputs(found.root, sources=tuple(x for x in sources.split(",") if x)))
    manifest = build_corpus(CorpusSpec(inputs=tuple(inputs), scope=scopes, since=since, until=until),
                            home=session.home, town=found, store=session.store, quiet=as_json)
    if as_json:
        from .workspace import read_manifest

        click.echo(json.dumps(read_manifest(manifest.path), indent=2))
        return
    click.echo(f"{manifest.records} records ({manifest.source}); {manifest.new_records} new; "
               f"{manifest.rejected} lines rejected", err=True)
    click.echo(manifest.id)


@corpus.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array on stdout.")
@common
def corpus_list(as_json, home, town):
    """List corpus versions, oldest first."""
    from .corpus import list_corpora

    manifests = list_corpora(session_for(home, town, quiet=True).home)
    if as_json:
        click.echo(json.dumps(manifests, indent=2))
        return
    if not manifests:
        click.echo("no corpus yet; build one with `gt-finetune corpus build`", err=True)
    for m in manifests:
        c = m["counts"]
        click.echo(f"{m['id']}  {c['records']:>6} records  {c['new_records']:>6} new  {c['rejected']:>6} rejected")


@corpus.command(name="show")
@click.argument("corpus_id")
@click.option("--json", "as_json", is_flag=True, help="The manifest as JSON.")
@common
def corpus_show(corpus_id, as_json, home, town):
    """Show one corpus: counts per source, rig and role, and why lines were rejected."""
    from .corpus import find_corpus
    from .workspace import read_manifest

    path = find_corpus(session_for(home, town, quiet=True).home, corpus_id)
    m = read_manifest(path)
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    click.echo(f"{m['id']}  ({path})")
    for key in ("by_source", "by_rig", "by_role"):
        click.echo(f"  {key[3:]:<7} " + ", ".join(f"{k} {v}" for k, v in m["counts"][key].items()))
    click.echo(f"  rejected {m['counts']['rejected']} lines: " + ", ".join(
        f"{v}× {k}" for k, v in list(m["rejected_reasons"].items())[:8]))
    click.echo(f"  every rejected line: {path / 'rejected.jsonl'}")


@corpus.command(name="report")
@click.argument("corpus_id")
@common
def corpus_report(corpus_id, home, town):
    """Composition, tokens, redactions, duplicates, stale and conflicting entries of one corpus.

    Prints the tables; the Markdown report and the PNG chart were written with the corpus.

    \b
    Example:
      gt-finetune corpus report corpus-20261126
    """
    from .corpus import find_corpus
    from .corpus.harvest import health_of
    from .corpus.report import render_terminal
    from .workspace import read_manifest

    path = find_corpus(session_for(home, town, quiet=True).home, corpus_id)
    manifest = read_manifest(path)
    if not (path / "health.json").is_file():
        raise InputError(f"corpus `{manifest['id']}` has no health data (it was forgotten or built by an older "
                         "gt-finetune)", hint="build a new version with `gt-finetune corpus build`")
    health = health_of(path)
    if not (path / "report.md").is_file():  # a build killed between its rename and its report
        from .corpus.report import write_report

        write_report(path, health, manifest, out_dir=path)
    click.echo(render_terminal(health, manifest))
    if manifest.get("health", {}).get("gate"):
        click.echo(f"size gate: {manifest['health']['gate']}")
    click.echo(f"report: {path / 'report.md'}")
    click.echo(f"chart:  {path / 'composition.png'}")


@corpus.command(name="rules")
@common
def corpus_rules(home, town):
    """List the redaction rules and whether `<home>/config.toml` switches any off."""
    from .config import load_section
    from .corpus.redact import RedactionConfig, Redactor

    config = load_section(session_for(home, town, quiet=True).home, "redaction", RedactionConfig)
    for rule in Redactor(config).rules:
        click.echo(f"{rule}\t{'off' if rule in config.disabled_rules else 'on'}")


@corpus.command(name="forget")
@click.option("--match", default="", metavar="REGEX", help="Records whose messages or provenance match.")
@click.option("--session", default="", metavar="ID", help="Records of this agent session.")
@click.option("--actor", default="", metavar="NAME", help="Records by or for this actor (e.g. harbor/crew/max).")
@click.option("--yes", is_flag=True, help="Do it; without this, only say what would be removed.")
@common
def corpus_forget(match, session, actor, yes, home, town):
    """Remove matching records from every corpus (new versions) and taint models trained on them.

    \b
    Example:
      gt-finetune corpus forget --session 3e443a8f-… --yes
    """
    from .corpus.forget import ForgetRule, forget

    rule = ForgetRule(match=match, session=session, actor=actor)
    workspace = session_for(home, town, quiet=True).home
    result = forget(workspace, rule, dry_run=not yes)
    if not result.versions:
        click.echo(f"no corpus holds a record matching `{rule.describe()}`", err=True)
        return
    for old, new, removed in result.versions:
        click.echo(f"{old}: {removed} record(s)" + (f" removed -> {new}" if new else " would be removed"), err=True)
    if not yes:
        raise InputError(f"nothing removed yet: {sum(n for _, _, n in result.versions)} record(s) in "
                         f"{len(result.versions)} corpus version(s) match `{rule.describe()}`",
                         hint="run the same command again with `--yes`" if match else
                         f"run it again with `--yes`: `gt-finetune corpus forget {rule.describe()} --yes`")
    click.echo(f"rule saved as `{result.rule}`; later harvests leave out what it matched", err=True)
    for model in result.tainted:
        click.echo(f"model {model.id}: tainted ({model.reason})", err=True)
    if result.datasets_purged:
        click.echo(f"datasets removed (rebuilt on the next run): {', '.join(result.datasets_purged)}", err=True)
    click.echo(result.versions[-1][1])


@cli.group(invoke_without_command=True)
@click.pass_context
def dataset(ctx):
    """List built datasets and look inside them: which tokens are trained.

    \b
    Example:
      gt-finetune dataset inspect ft-a1b2 --example 3
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(dataset_list)


@dataset.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of manifests on stdout.")
@common
def dataset_list(as_json, home, town):
    """List datasets, oldest first, with their counts and mask-audit summary."""
    from .dataset.show import list_datasets
    from .workspace import read_manifest

    paths = list_datasets(session_for(home, town, quiet=True).home)
    if as_json:
        click.echo(json.dumps([read_manifest(p) for p in paths], indent=2))
        return
    if not paths:
        click.echo("no dataset yet; a job builds one in its `dataset` step", err=True)
    for path in paths:
        m = read_manifest(path)
        c, audit = m["counts"], m["mask_audit"]
        click.echo(f"{path.name}  {c['train']:>5} train  {c['eval']:>4} eval  {c['dropped']:>4} dropped  "
                   f"{audit['trained_share']:>4.0%} trained  {m['spec']['base_model']}  (corpus {m['inputs'][0]})")


@dataset.command(name="inspect")
@click.argument("ref", metavar="ID|FT-ID|PATH")
@click.option("--example", "index", type=int, default=0, show_default=True, help="Which example (0-based).")
@click.option("--split", type=click.Choice(["train", "eval"]), default="train", show_default=True)
@click.option("--tokens", "per_token", is_flag=True, help="One token a line: position, id, trained or not, text.")
@common
def dataset_inspect(ref, index, split, per_token, home, town):
    """Print one example as the trainer sees it; trained text is inside ⟦…⟧ (green on a terminal)."""
    import os

    from .dataset.show import (dataset_manifest, example_header, find_dataset, format_example, load_example,
                               load_tokenizer)

    path = find_dataset(session_for(home, town, quiet=True).home, ref)
    tokenizer = load_tokenizer(path, dataset_manifest(path))
    example = load_example(path, split, index, len(tokenizer))
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    click.echo(example_header(example, index, split), err=True)
    click.echo(format_example(example, tokenizer, colour=colour, per_token=per_token))


@cli.group()
def formulas():
    """Check and list formulas.

    \b
    Example:
      gt-finetune formulas check formulas/*.formula.toml
    """


@formulas.command(name="check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def formulas_check(files):
    """Validate formula files; exit 1 with every error found."""
    from .formula import check_formula

    problems = [e for f in files for e in check_formula(Path(f))]
    for e in problems:
        click.echo(f"error: {e.message}", err=True)
    if problems:
        raise click.exceptions.Exit(1)
    click.echo(f"{len(files)} formula file(s) OK")


@formulas.command(name="list")
@common
def formulas_list(home, town):
    """List the formulas gt-finetune can run, in lookup order."""
    from .formula import list_formulas

    session = session_for(home, town, quiet=True)
    for name, path in list_formulas(session.formula_search_path()):
        click.echo(f"{name}\t{path}")


@formulas.command(name="show")
@click.argument("name")
@common
def formulas_show(name, home, town):
    """Show a formula's steps and vars: what a first run needs, then the advanced knobs.

    \b
    Example:
      gt-finetune formulas show finetune-lora
    """
    from .formula import find_formula, load_formula

    session = session_for(home, town, quiet=True)
    formula = load_formula(find_formula(name, session.formula_search_path()))
    click.echo(f"{formula.name} ({formula.type} formula, {formula.path})")
    click.echo(formula.description.strip())
    if formula.steps:
        click.echo("\nSteps:")
        width = max(len(s.id) for s in formula.steps)
        for s in formula.ordered_steps():
            needs = f"  (after {', '.join(s.needs)})" if s.needs else ""
            click.echo(f"  {s.id:<{width}}  {s.title}{needs}")
    required = [v for v in formula.vars if v.required and v.default is None]
    advanced = [v for v in formula.vars if v.description.startswith(ADVANCED) and v not in required]
    common_vars = [v for v in formula.vars if v not in required and v not in advanced]
    click.echo("\n" + ("Required vars:" if required else "A first run needs no vars."))
    _render_vars(required)
    if common_vars:
        click.echo("\nCommon vars:")
        _render_vars(common_vars)
    if advanced:
        click.echo("\nAdvanced vars:")
        _render_vars(advanced)
    example = (required or common_vars or advanced or [None])[0]
    if example is not None:
        click.echo(f"\nSet a var with --var, e.g. gt-finetune run {formula.name} --var {example.name}="
                   f"{example.default or '<value>'}")


ADVANCED = "Advanced: "  # how a formula marks a var a first run never needs to touch


def _render_vars(variables) -> None:
    for v in variables:
        if v.default is None:
            default = "(required)" if v.required else "(optional)"
        else:
            default = "(empty)" if v.default == "" else f"= {v.default}"
        kind = "" if v.type == "string" else f" [{v.type}]"
        choices = f" (one of {', '.join(v.enum)})" if v.enum else ""
        click.echo(f"  {v.name}{kind} {default}".rstrip())
        if v.description:
            click.echo(f"      {v.description.removeprefix(ADVANCED)}{choices}")


def _render_jobs(jobs: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([{"schema_version": SCHEMA_VERSION, **j} for j in jobs], indent=2))
        return
    if not jobs:
        click.echo("no jobs yet; start one with `gt-finetune run finetune-lora`", err=True)
        return
    click.echo(f"{'JOB':<12} {'STATE':<12} {'STAGE':<8} {'STEPS':<6} {'STARTED':<21} LAST EVENT")
    for j in jobs:
        flag = j["machine"] and ("queued" if "queued" in j["machine"] else "interrupted")
        click.echo(f"{j['id']:<12} {flag or j['state']:<12} {j['stage'] or '-':<8} {j['progress']:<6} "
                   f"{j['started']:<21} {j['last_event'] or '-'}")


def _history_labels(history: list[dict]) -> list[str]:
    """Collapse bead snapshots into job-state changes: ready, active(corpus), …, review."""
    from .beads.lifecycle import ACTIVE, CANCELLED, DONE, FAILED, PAUSED, READY, REVIEW

    names = {"open": READY, "in_progress": ACTIVE, "review": REVIEW, "blocked": FAILED}
    out: list[str] = []
    for h in history:
        state = PAUSED if h.get("paused") else names.get(h["status"], h["status"])
        if h["status"] == "closed":
            state = CANCELLED if h["close_reason"].startswith("cancelled") else DONE
        label = f"{state}({h['stage']})" if state == ACTIVE and h["stage"] else state
        if not out or out[-1] != label:
            out.append(label)
    return out


def main(argv: list[str] | None = None) -> int:
    as_json = "--json" in (argv if argv is not None else sys.argv[1:])
    try:
        result = cli.main(args=argv, standalone_mode=False)
        return result if isinstance(result, int) else 0  # click returns an Exit's code here
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except GTFinetuneError as exc:
        return _show(exc, as_json)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: show the bug, say where to report it
        explained = _path_os_error(exc)
        if explained is not None:
            return _show(explained, as_json)
        traceback.print_exc()
        click.echo("\nerror: this is a bug in gt-finetune; please report it with the traceback above", err=True)
        return 4


def _show(exc: GTFinetuneError, as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps({"schema_version": SCHEMA_VERSION, "error": exc.message, "code": exc.code,
                               "hint": exc.hint}), err=True)
    else:
        click.echo(f"{'stopped' if exc.code == 'stopped' else 'error'}: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"\nhint: {exc.hint}", err=True)
    return exc.exit_code


def _path_os_error(exc: Exception) -> GTFinetuneError | None:
    """An OSError that escaped the place its path is used, when its errno is about that named path
    (a name too long, a file in the way, a read-only or full disk): one line, not a traceback.
    Any other stays a bug, with its traceback."""
    if not isinstance(exc, OSError) or not exc.filename:
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExternalError(f"cannot write {shown(exc.filename)}: {exc.strerror}",
                             hint="free space on that disk, then run the command again", code="disk_full")
    return path_error(exc, exc.filename, "use")


def entry() -> None:
    sys.exit(main())


importlib.import_module(f"{__package__}.cli_models")  # adds the model commands: models, export, serve, deploy, rollback
importlib.import_module(f"{__package__}.cli_report")  # adds the look-back commands: report, compare
