"""Commands that look back at jobs: `report` (one job as an HTML page) and `compare` (two jobs).

Kept apart from `cli.py` like `cli_models.py`; `cli.py` imports this module last, which adds
these commands to its group.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import SCHEMA_VERSION, cli, common, session_for


@cli.command()
@click.argument("job_id")
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the page "
              "(default: <home>/reports/<ft-id>.html).")
@click.option("--json", "as_json", is_flag=True, help="Print {schema_version, id, path} instead of the path.")
@common
def report(job_id, out, as_json, home, town):
    """Write a job's report as one self-contained HTML page; prints its path last.

    Timeline, corpus, plan vs measured, loss curve, evaluation and model card, with inline CSS
    and SVG and nothing fetched: open it offline, mail it, or attach it to a bead. A stage that
    has not run (yet) says so in its section.

    \b
    Example:
      gt-finetune report ft-a3k9 && xdg-open ~/.gt-finetune/reports/ft-a3k9.html
    """
    from .report import write_job_report

    path = write_job_report(session_for(home, town, quiet=as_json), job_id, Path(out) if out else None)
    if as_json:
        click.echo(json.dumps({"schema_version": SCHEMA_VERSION, "id": job_id, "path": str(path)}))
        return
    click.echo(str(path))


@cli.command()
@click.argument("first", metavar="FT_A")
@click.argument("second", metavar="FT_B")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every row and the changes.")
@common
def compare(first, second, as_json, home, town):
    """Two jobs side by side: corpus, config, training and eval, with what changed from A to B.

    Rows that differ are marked `*`; a job without a stage's output shows `-`.

    \b
    Example:
      gt-finetune compare ft-a3k9 ft-b7x2
    """
    from .report import compare_jobs, render_comparison

    comparison = compare_jobs(session_for(home, town, quiet=as_json), first, second)
    click.echo(json.dumps(comparison, indent=2) if as_json else render_comparison(comparison))
