"""Commands for trained models: the registry (`models …`), export, serve, deploy and rollback.

Kept apart from `cli.py` (jobs and stages) so each file reads top to bottom; `cli.py` imports this
module last, which adds these commands to its group.
"""
from __future__ import annotations

import json

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
