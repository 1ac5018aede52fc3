"""Commands for trained models: the registry (`models …`), export, serve, deploy and rollback.

Kept apart from `cli.py` (jobs and stages) so each file reads top to bottom; `cli.py` imports this
module last, which adds these commands to its group.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import click

from .cli import cli, common, session_for
from .errors import InputError


@cli.group()
def models():
    """Trained models and their life: candidate → approved → deployed → superseded/archived.

    `tainted`: trained on records a `corpus forget` removed (retrain). `stale`: the town's
    formulas, role texts or bd/gt changed since its corpus was harvested.

    \b
    Examples:
      gt-finetune models list
      gt-finetune models show ft-a3k9
      gt-finetune models compare ft-a3k9 ft-b7x2
    """


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@common
def models_list(as_json, home, town):
    """Every registered model: state, job, base model, eval result."""
    from .lineage import eval_line, lineage_of
    from .registry import Registry

    session = session_for(home, town)
    rows = [lineage_of(session.home, m) for m in Registry(session.home).models()]
    if as_json:
        click.echo(json.dumps([{"id": r.model.id, "state": r.state, "job": r.model.job_id, "base": r.model.base_model,
                                "created": r.model.created_at, "alias": r.model.alias, "stale": list(r.stale),
                                "eval": r.eval.get("overall", {}), "gate": r.eval.get("gate", {}).get("passed")}
                               for r in rows], indent=2))
        return
    if not rows:
        click.echo("no models yet: `gt-finetune run finetune-lora` trains one")
        return
    for r in rows:
        alias = f" as `{r.model.alias}`" if r.model.alias else ""
        click.echo(f"{r.model.id:<28} {r.state + alias:<22} {r.model.created_at[:16]:<17} {eval_line(r)}")


@models.command(name="show")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@common
def models_show(model, as_json, home, town):
    """One model: where it came from, its eval, exports, deployment, and its audit trail."""
    from .lineage import eval_line, find_model, lineage_of
    from .registry import Registry

    session = session_for(home, town)
    lin = lineage_of(session.home, find_model(session.home, model))
    m = lin.model
    trail = [a for a in Registry(session.home).audit() if a["subject"] == m.id]
    info = {"id": m.id, "state": lin.state, "reason": m.reason, "job": m.job_id, "base_model": m.base_model,
            "corpus": m.corpus_id, "dataset": m.dataset_id, "train_dir": m.train_dir, "export_dir": m.export_dir,
            "alias": m.alias, "deployment": m.deployment, "stale": list(lin.stale), "eval": lin.eval.get("overall", {}),
            "gate": lin.eval.get("gate", {}), "audit": trail}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{m.id}: {lin.state}" + (f" — {m.reason}" if m.reason else ""))
    for key in ("job", "base_model", "corpus", "dataset", "train_dir", "export_dir", "alias", "deployment"):
        if info[key]:
            click.echo(f"  {key.replace('_', ' ')}: {info[key]}")
    click.echo(f"  eval: {eval_line(lin)}")
    for reason in lin.stale:
        click.echo(f"  stale: {reason}")
    for a in trail:
        click.echo(f"  {a['at']}  {a['actor']}: {a['action']} {json.dumps(a['detail'], sort_keys=True)}")


@models.command(name="compare")
@click.argument("first")
@click.argument("second")
@common
def models_compare(first, second, home, town):
    """Two models side by side: training config and eval per family, with what changed."""
    from .lineage import find_model, lineage_of
    from .workspace import read_manifest

    session = session_for(home, town)
    a, b = (lineage_of(session.home, find_model(session.home, ref)) for ref in (first, second))
    specs = [read_manifest(x.train_dir).get("spec", {}) if (x.train_dir / "manifest.json").is_file() else {}
             for x in (a, b)]
    click.echo(f"{'':24} {a.model.id:>28} {b.model.id:>28}")
    click.echo(f"{'state':24} {a.state:>28} {b.state:>28}")
    click.echo(f"{'corpus':24} {a.model.corpus_id[:28]:>28} {b.model.corpus_id[:28]:>28}")
    for key in sorted(set(specs[0]) | set(specs[1])):
        va, vb = specs[0].get(key), specs[1].get(key)
        mark = "" if va == vb else "   ← changed"
        click.echo(f"{key:24} {str(va)[:28]:>28} {str(vb)[:28]:>28}{mark}")
    families = list(dict.fromkeys([*a.eval.get("families", {}), *b.eval.get("families", {})])) + ["all"]
    for family in families:
        cells = []
        for x in (a, b):
            counts = (x.eval.get("overall") if family == "all" else x.eval.get("families", {}).get(family)) or {}
            c = counts.get("tuned+context") or {}
            cells.append(f"{c['passed']}/{c['total']}" if c else "—")
        click.echo(f"{'eval ' + family:24} {cells[0]:>28} {cells[1]:>28}")


@models.command(name="archive")
@click.argument("model")
@click.option("--reason", required=True, help="Why it is put away (kept in the audit log).")
@common
def models_archive(model, reason, home, town):
    """Put a model away: it stays in the registry and the audit log, and can no longer be deployed."""
    from .lineage import find_model
    from .registry import Registry

    session = session_for(home, town)
    m = find_model(session.home, model)
    if m.state == "deployed":
        raise InputError(f"model `{m.id}` is deployed as `{m.alias}`; roll it back first",
                         hint=f"gt-finetune rollback {m.deployment}")
    Registry(session.home).set_state(m.id, "archived", reason)
    click.echo(m.id)


@cli.command(name="serve")
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback only, unless "
              "--allow-remote).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0: any free one); bound before the model loads.")
@click.option("--name", help="Model name clients ask for (default: the model id; its job id, the reference given "
              "and a deployed alias work too).")
@click.option("--allow-remote", is_flag=True, help="Listen on a non-loopback address: the endpoint has no "
              "authentication and runs any prompt it is sent.")
@common
def serve_command(model, host, port, name, allow_remote, home, town):
    """An OpenAI-compatible endpoint (/v1/chat/completions, streaming or not; /v1/models) for a model.

    MODEL is a registered model or job (its export's merged weights when exported, else its
    training run), or a model folder. Clients may name it by its id, job id, the MODEL given here
    or the alias it is deployed as. Stops at the trained end-of-turn token. Prints the URL;
    Ctrl-C stops it. The same export can be served by vLLM or llama.cpp: the commands are printed.

    \b
    Examples:
      gt-finetune serve ft-a3k9
      gt-finetune serve ft-a3k9 --port 8377
    """
    from .deploy.serve import other_runtimes, serve

    folder, names = _served_folder(model, home, town)
    names = (name or names[0], *names)
    click.echo(other_runtimes(folder, name=names[0]), err=True)
    serve(folder, host=host, port=port, name=names[0], aliases=tuple(dict.fromkeys(names[1:])),
          allow_remote=allow_remote)


def _served_folder(model: str, home, town) -> tuple[Path, tuple[str, ...]]:
    """The folder to serve for a model reference, and the names clients may use for it, the id first:
    the id, its job id, the reference as given (a prefix) and the alias it is deployed as."""
    from .lineage import find_model

    path = Path(model).expanduser()
    if path.is_dir():
        return path, (path.name,)
    m = find_model(session_for(home, town).home, model)
    return Path(m.export_dir or m.train_dir), (m.id, m.job_id, model, *([m.alias] if m.state == "deployed" else []))


@cli.command()
@click.argument("model")
@click.option("--roles", default="", help="Comma-separated roles to map to the alias in `role_agents` "
              "(mayor, deacon, witness, refinery, polecat, crew, boot, dog). Empty: the alias only.")
@click.option("--alias", default="finetune", show_default=True, help="The agent alias in settings `agents`.")
@click.option("--endpoint", default="http://127.0.0.1:8000/v1", show_default=True,
              help="Where `gt-finetune serve` (or vLLM / llama.cpp) answers for the model.")
@click.option("--agent-cli", type=click.Choice(["goose", "opencode"]), default="goose", show_default=True,
              help="The OpenAI-compatible agent CLI gt starts for the alias.")
@click.option("--settings", "settings_path", type=click.Path(),  # a folder here is refused in one line, exit 1
              help="Settings file to edit (default: <town>/settings/config.json).")
@click.option("--dry-run", is_flag=True, help="Show the change and write nothing.")
@click.option("--force", is_flag=True, help="Deploy a model that review has not approved (recorded).")
@common
def deploy(model, roles, alias, endpoint, agent_cli, settings_path, dry_run, force, home, town):
    """Make a model a Gas Town agent: an `agents` alias pointing an agent CLI at its endpoint.

    Adds or replaces settings `agents.<alias>` and, with --roles, `role_agents.<role>` — nothing
    else in the file, which keeps its formatting. Shows the diff first; records what was there so
    `gt-finetune rollback` restores it. Only approved models, unless --force.

    \b
    Examples:
      gt-finetune deploy ft-a3k9 --roles dog,witness --dry-run
      gt-finetune deploy ft-a3k9 --roles dog,witness
      gt-finetune serve ft-a3k9 --port 8000      # the endpoint the alias talks to
    """
    from .deploy import apply_deploy, plan_deploy, settings_lock
    from .lineage import find_model
    from .registry import Registry

    session = session_for(home, town)
    m = find_model(session.home, model)
    if m.state not in ("approved", "deployed", "superseded") and not force:
        raise InputError(f"model `{m.id}` is {m.state}, not approved by review",
                         hint=f"review it (`gt-finetune review {m.job_id} approve --reason …`), or pass --force")
    settings = _settings_file(settings_path, session)
    chosen = tuple(r.strip() for r in roles.split(",") if r.strip())
    record_dir = session.home / "deployments"
    # Another deploy or rollback (from any workspace) waits until this one has read, written and registered.
    with nullcontext(()) if dry_run else settings_lock(settings) as made:
        plan = plan_deploy(settings, alias=alias, model_name=m.id, endpoint=endpoint, roles=chosen,
                           agent_cli=agent_cli, record_dir=record_dir)
        click.echo(plan.diff or f"{settings}: already as planned", err=dry_run)
        for note in plan.notes:
            click.echo(f"note: {note}", err=True)
        if dry_run:
            return
        record = apply_deploy(plan, record_dir=record_dir, made=made)
        registry = Registry(session.home)
        if m.state not in ("approved", "deployed", "superseded"):
            registry.record("deploy-forced", m.id, {"state": m.state})
        registry.deployed(m.id, alias=alias, deployment=record.id)
    click.echo(f"deployed {m.id} as `{alias}`" + (f" for {', '.join(chosen)}" if chosen else "")
               + f"; start its endpoint with `gt-finetune serve {m.id} --port {_port(endpoint)}`; "
               f"undo with `gt-finetune rollback {record.id}`", err=True)
    click.echo(record.id)


@cli.command()
@click.argument("deployment", required=False)
@click.option("--dry-run", is_flag=True, help="Show what would be restored and write nothing.")
@common
def rollback(deployment, dry_run, home, town):
    """Undo a deployment (default: the latest): the settings file as it was, the model back to approved.

    When nobody touched the file since the deployment, its original bytes come back exactly;
    otherwise only the deployment's own keys are reverted and other edits are kept.

    \b
    Examples:
      gt-finetune rollback
      gt-finetune rollback 7dc07605ee15 --dry-run
    """
    from .deploy import load_deployment, previous_deployment, rollback as undo, settings_lock
    from .registry import Registry
    from .workspace import safe_name

    session = session_for(home, town)
    record_dir = session.home / "deployments"
    if deployment:
        safe_name(deployment, what="deployment", hint="`gt-finetune models list` shows the deployments")
        path = record_dir / f"{deployment}.json"
        if not path.is_file():
            raise InputError(f"no deployment `{deployment}` in {record_dir}",
                             hint="`gt-finetune models list` shows which model is deployed and its deployment")
        record = load_deployment(path)
    else:
        record = previous_deployment(record_dir)
        if record is None:
            raise InputError("nothing to roll back: no live deployment", hint="`gt-finetune models list`")
    with nullcontext() if dry_run else settings_lock(record.settings):  # as deploy: read, write, register at once
        result = undo(record, dry_run=dry_run)
        back = [] if dry_run else Registry(session.home).rolled_back(record.id)
    click.echo(result.diff or f"{result.settings}: nothing to change", err=dry_run)
    for note in [*result.notes, *(f"kept: {k}" for k in result.kept)]:
        click.echo(f"note: {note}", err=True)
    if not dry_run:
        click.echo(f"rolled back {record.id} ({result.mode})"
                   + (f"; {', '.join(f'{m.id} is {m.state}' for m in back)}" if back else ""), err=True)
        click.echo(record.id)


def _settings_file(explicit: str | None, session) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if session.town is None:
        raise InputError("no Gas Town found to deploy into",
                         hint="run inside a town, pass `--town <root>`, or name the file with `--settings`")
    return session.town.root / "settings" / "config.json"


def _port(endpoint: str) -> int:
    from urllib.parse import urlsplit

    return urlsplit(endpoint).port or 8000


@cli.command(name="export")
@click.argument("model")
@click.option("--format", "formats", default="safetensors,gguf", show_default=True,
              help="safetensors (always: merged weights + adapter) and/or gguf.")
@click.option("--gguf-types", default="f16,q8_0", show_default=True, help="GGUF types to write: f16, q8_0.")
@common
def export_command(model, formats, gguf_types, home, town):
    """Merge the adapter into the base and write safetensors, GGUF and a model card, with parity checks.

    The merged model and each GGUF, read back (tensor by tensor) and loaded by transformers, must
    stop at the trained end-of-turn token and carry the same chat template. The merged model must
    decode the same greedy tokens as the trained model; a GGUF (f16 and q8_0 round every weight)
    must keep each next-token logit within its format's bound, picking another token only at a
    near-tie, and its first differing token is reported. A failure names the prompt and the
    token. Prints the parity result; the export folder is the last line.

    \b
    Examples:
      gt-finetune export ft-a3k9
      gt-finetune export ft-a3k9 --format safetensors
    """
    from .export import ExportSpec, export_model
    from .lineage import find_model, lineage_of
    from .registry import Registry

    session = session_for(home, town)
    lin = lineage_of(session.home, find_model(session.home, model))
    spec = ExportSpec(formats=_listed(formats), gguf_types=_listed(gguf_types))
    result = export_model(spec, train_dir=lin.train_dir, home=session.home, dataset_dir=lin.dataset_dir,
                          corpus_dir=lin.corpus_dir, plan_dir=lin.plan_dir, eval_dir=lin.eval_dir)
    Registry(session.home).exported(lin.model.id, str(result.path))
    click.echo(f"parity: {result.parity}")
    click.echo(str(result.path))


def _listed(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


models.add_command(rollback, name="rollback")  # `models rollback` and `rollback` are one command
