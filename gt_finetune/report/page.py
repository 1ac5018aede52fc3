"""One job as one self-contained HTML page: inline CSS and SVG, no scripts, nothing fetched.

The page forbids itself any network load (a Content-Security-Policy of `default-src 'none'`),
so it can be mailed, attached to a bead or opened offline and shows the same. A section whose
stage output cannot be read says so in place; the rest of the page still renders.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..session import Session
from ..workspace import write_text
from . import sections
from .gather import JobFacts, gather_job
from .markup import Html, badge, join, note, percent, tag

# (element id, heading, renderer): the page in reading order; tests find sections by these ids
SECTIONS: tuple[tuple[str, str, Callable[[JobFacts], Html]], ...] = (
    ("timeline", "Timeline", sections.timeline),
    ("corpus", "Corpus", sections.corpus),
    ("plan", "Plan: estimated vs measured", sections.plan),
    ("loss", "Loss", sections.loss),
    ("eval", "Evaluation", sections.evaluation),
    ("card", "Model card", sections.card),
)
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def write_job_report(session: Session, job_id: str, out: Path | None = None) -> Path:
    """Write job `job_id`'s report page (atomically) to `out`, by default `<home>/reports/<ft-id>.html`.

    Returns:
        The page's path.

    Raises:
        InputError: no job `job_id` in this workspace.
    """
    facts = gather_job(session, job_id)
    path = Path(out).expanduser() if out else session.home / "reports" / f"{job_id}.html"
    write_text(path, render_page(facts))
    return path.resolve()


def render_page(facts: JobFacts) -> str:
    body = [_guarded(facts, "header", _header)] + [_section(facts, *entry) for entry in SECTIONS]
    return ("<!DOCTYPE html>\n" + tag("html", join([
        tag("head", join([Html('<meta charset="utf-8">'),
                          Html(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'),
                          Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                          tag("title", f"{facts.job_id} · {facts.record.run} · gt-finetune report"),
                          tag("style", Html(STYLE))])),
        tag("body", join([tag("main", join(body)), _footer()]), data_job=facts.job_id, data_state=facts.state)]),
        lang="en") + "\n")


def _section(facts: JobFacts, element_id: str, heading: str, render: Callable[[JobFacts], Html]) -> Html:
    return tag("section", join([tag("h2", heading), _guarded(facts, element_id, render)]), id=element_id)


def _guarded(facts: JobFacts, part: str, render: Callable[[JobFacts], Html]) -> Html:
    """`render(facts)`, or — for a manifest from another gt-finetune version or a stage folder
    edited by hand — a line saying what could not be read, so the rest of the page still shows."""
    try:
        return render(facts)
    except (AttributeError, IndexError, KeyError, OSError, TypeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        print(f"warning: report part `{part}` of job `{facts.job_id}` could not be drawn ({problem})",
              file=sys.stderr)
        return note(f"could not read this stage's output ({problem}); it may come from another gt-finetune "
                    "version", "bad")


def _header(facts: JobFacts) -> Html:
    """The job in one line, then the few numbers a reviewer looks for first."""
    tiles = [("state", sections.state_badge(facts.state))]
    if facts.train:
        tiles.append(("final training loss", f"{facts.train['final_loss']:.4f}"))
    m = facts.evaluation
    if m and m.get("overall"):
        tuned = "tuned+context" if "tuned+context" in m["overall"] else m["variants"][-1]
        c = m["overall"][tuned]
        tiles.append((f"{tuned} pass rate", f"{percent(c['passed'], c['total'])} ({c['passed']}/{c['total']})"))
        if "base+context" in m["overall"]:
            b = m["overall"]["base+context"]
            tiles.append(("base+context pass rate", f"{percent(b['passed'], b['total'])} ({b['passed']}/{b['total']})"))
        gate = (m.get("gate") or {}).get("passed")
        tiles.append(("review gate", badge("PASS", "ok") if gate else badge("FAIL", "bad")))
    return tag("header", join([
        tag("p", "gt-finetune job report", cls="kicker"),
        tag("h1", join([tag("code", facts.job_id), " ", facts.title or facts.record.run])),
        tag("p", f"formula {facts.record.formula} · run {facts.record.run} · created {facts.record.created_at}",
            cls="sub"),
        tag("nav", join(tag("a", heading, href=f"#{element_id}") for element_id, heading, _ in SECTIONS)),
        tag("div", join(tag("div", join([tag("span", label, cls="label"), tag("span", value, cls="value")]),
                            cls="tile") for label, value in tiles), cls="tiles"),
    ]))


def _footer() -> Html:
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return tag("footer", f"written by gt-finetune {__version__} at {made}; regenerate with "
                         f"`gt-finetune report <ft-id>`")


STYLE = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --bg: #f6f8fa; --card: #fff;
  --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 20px 8px; }
header { margin-bottom: 16px; }
h1 { font-size: 26px; margin: 0 0 4px; line-height: 1.25; overflow-wrap: anywhere; }
h2 { font-size: 19px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
h4 { font-size: 14px; margin: 12px 0 4px; }
.kicker { margin: 0; color: var(--muted); text-transform: uppercase; letter-spacing: .06em; font-size: 12px; }
.sub { margin: 0 0 10px; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; font-size: 14px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 12px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px;
  min-width: 150px; }
.tile .label { display: block; color: var(--muted); font-size: 12px; }
.tile .value { font-size: 18px; font-weight: 600; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
  margin: 14px 0; overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 14px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.steps td:nth-child(4), table.steps td:nth-child(5) { white-space: nowrap; color: var(--muted); }
.rate { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0 0 10px; font-size: 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.grid3 { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 4px 24px; }
table.shares { width: 100%; }
.share { display: inline-block; width: 110px; height: 9px; background: #eaeef2; border-radius: 5px; overflow: hidden; }
.share .fill { display: block; height: 100%; background: #4c8dd6; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.badge.ok { color: var(--ok); background: #dafbe1; } .badge.bad { color: var(--bad); background: #ffebe9; }
.badge.warn { color: var(--warn); background: #fff8c5; } .badge.muted { color: var(--muted); background: #f6f8fa; }
.note { margin: 6px 0; color: var(--muted); }
.note.bad { color: var(--bad); } .note.warn { color: var(--warn); }
.error { color: var(--bad); }
.headline { font-size: 16px; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; font-size: 13px;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 320px; overflow: auto; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg); padding: 0 3px;
  border-radius: 4px; }
h1 code { font-size: 24px; background: none; padding: 0; }
details { margin: 4px 0; } summary { cursor: pointer; }
.failures { margin-bottom: 8px; }
.card { border-left: 3px solid var(--line); padding-left: 16px; }
.card table { font-size: 13px; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 8px 0 12px; font-family: inherit; }
svg .grid { stroke: #eaeef2; } svg .axis { stroke: #8c959f; }
svg .tick, svg .legend { font-size: 11px; fill: var(--muted); } svg .axis-title { font-size: 12px; fill: var(--ink); }
svg polyline.line, svg line.line { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .dashed { stroke-dasharray: 6 4; }
svg .series-train { stroke: #8fb3e6; fill: #8fb3e6; } svg .series-smooth { stroke: #0a4fb4; fill: #0a4fb4; }
svg .series-heldout-base { stroke: #8c959f; fill: #8c959f; }
svg .series-heldout-tuned { stroke: #bf3989; fill: #bf3989; }
svg .series-base { fill: #c4cad1; stroke: #c4cad1; } svg .series-base-context { fill: #7d8590; stroke: #7d8590; }
svg .series-tuned { fill: #96bdf0; stroke: #96bdf0; } svg .series-tuned-context { fill: #0a55c4; stroke: #0a55c4; }
svg line.series-base, svg line.series-base-context, svg line.series-tuned, svg line.series-tuned-context {
  stroke-width: 8; }
svg .dot { stroke: #fff; stroke-width: 1; }
footer { max-width: 1120px; margin: 0 auto; padding: 4px 20px 24px; color: var(--muted); font-size: 12px; }
@media print { body { background: #fff; } nav { display: none; }
  section { break-inside: avoid; border: none; padding: 0; } }
"""
