"""The report's sections, one function each: a job's facts in, the section's HTML body out.

A section whose stage left nothing says why (not run yet, running, failed: <error>) instead of
showing empty tables; numbers are read from manifests, never recomputed or guessed.
"""
from __future__ import annotations

import math
from datetime import datetime

from ..eval.report import DOING, FAILURES_SHOWN
from ..jobs import DONE, FAILED, RUNNING, STOPPED
from .card import card_markdown
from .gather import JobFacts, StageState
from .markdown_html import markdown_html
from .markup import Html, badge, facts, gb, join, note, percent, seconds, table, tag
from .svg import Series, bar_chart, line_chart

# job states and step states share `done` and `failed`
STATE_BADGE = {DONE: "ok", FAILED: "bad", RUNNING: "warn", STOPPED: "warn", "active": "warn", "paused": "warn",
               "review": "warn"}
CAP = 12  # rows shown of a long breakdown (rejection reasons); the manifest holds every one
SMOOTH_OVER = 10  # steps in the running mean drawn over a long loss curve


def timeline(f: JobFacts) -> Html:
    r = f.record
    parts = [facts([("job", f.job_id), ("title", f.title or "-"),
                    ("state", join([state_badge(f.state), f" stage {f.stage}" if f.stage else ""])),
                    ("formula", f"{r.formula} ({r.formula_path})"), ("run", r.run), ("created", r.created_at)])]
    if f.state in ("failed", "paused", "unknown") and f.notes:
        parts.append(tag("pre", f.notes, cls="notes"))
    parts.append(tag("details", join([tag("summary", f"formula vars ({len(r.vars)})"),
                                      table(["var", "value"], sorted(r.vars.items()))])))
    if f.history:
        parts.append(tag("h3", "State changes"))
        parts.append(table(["at", "state", "by", "reason"],
                           [[h["at"], join([state_badge(h["state"]), f" ({h['stage']})" if h["stage"] else ""]),
                             h["actor"], h["reason"] or ""] for h in f.history]))
    else:
        parts.append(note("the job bead's history could not be read"))
    parts.append(tag("h3", "Steps"))
    parts.append(table(["step", "action", "state", "started", "finished", "took", "summary"],
                       [[k, s.action, state_badge(s.state), s.started_at or "-", s.finished_at or "-",
                         seconds(_between(s.started_at, s.finished_at)),
                         tag("span", s.error, cls="error") if s.error else s.summary] for k, s in r.steps.items()],
                       numeric=(5,), cls="steps"))
    return join(parts)


def corpus(f: JobFacts) -> Html:
    m = f.corpus
    if m is None:
        return missing(f, f.stage_state("corpus"))
    counts, health = m.get("counts", {}), m.get("health") or {}
    tokens = health.get("tokens") or {}
    redaction = m.get("redaction") or {}
    reasons = m.get("rejected_reasons") or {}
    duplicates = sum(n for k, n in reasons.items() if "duplicate" in k)  # caught while harvesting
    duplicates += f.corpus_drops.get("exact", 0) + f.corpus_drops.get("near", 0)  # caught by the health step
    parts = [facts([("corpus", m["id"]), ("records kept", counts.get("records")),
                    ("new in this version", counts.get("new_records")), ("lines rejected", counts.get("rejected")),
                    ("tokens", _tokens(tokens)), ("redactions", sum(redaction.values())),
                    ("duplicates removed", duplicates), ("synthetic text excluded", f.corpus_drops.get("excluded", 0)),
                    ("stale / conflicting", f"{health.get('stale', 0)} / {health.get('conflicts', 0)}"),
                    ("created", m.get("created_at", "-"))])]
    if health.get("gate"):
        parts.append(note(f"size gate: {health['gate']}", "bad"))
    parts.append(tag("div", join(tag("div", join([tag("h3", f"by {key[3:]}"), _shares(counts.get(key) or {})]))
                                 for key in ("by_source", "by_role", "by_rig")), cls="grid3"))
    row = []
    if tokens.get("by_role"):
        row.append(tag("div", join([tag("h3", "tokens by role"), _shares(tokens["by_role"])])))
    row.append(tag("div", join([tag("h3", "redactions by rule"),
                                _shares(redaction) if redaction else note("the redactor replaced nothing")])))
    parts.append(tag("div", join(row), cls="grid3"))
    if reasons:
        top = sorted(reasons.items(), key=lambda kv: -kv[1])
        parts.append(tag("h3", "why lines were rejected"))
        parts.append(table(["reason", "lines"], [[k, n] for k, n in top[:CAP]], numeric=(1,)))
        if len(top) > CAP:
            parts.append(note(f"… and {len(top) - CAP} more reasons in the manifest"))
    parts.append(note(f"folder: {f.stage_state('corpus').output}"))
    return join(parts)


def plan(f: JobFacts) -> Html:
    p, t = f.plan, f.train
    if p is None and t is None:
        return missing(f, f.stage_state("plan"))
    parts = []
    if p is None:
        parts.append(note(f"plan: {f.stage_state('plan').why_missing(f.job_id)}; measured values only"))
    else:
        verdict = badge("GO", "ok") if p.get("go") else badge("NO-GO", "bad")
        parts.append(tag("p", join([verdict, f" {p['reason']}" if p.get("reason") else ""])))
        if p.get("suggestion"):
            parts.append(note(f"the change that fits: {p['suggestion'].get('flags', '')} "
                              f"({p['suggestion'].get('note', '')})", "warn"))
    measured = (t or {}).get("measured") or {}
    peak = measured.get("peak_gpu") or measured.get("peak_rss")
    kind = "GPU" if measured.get("peak_gpu") else "process (RSS)"
    estimate = (p or {}).get("estimate", {}).get("total_bytes")
    calibration = (p or {}).get("calibration") or {}
    plan_time = (p or {}).get("time") or {}
    rows_done = f.train_rows
    loop_s = rows_done[-1].get("elapsed_s") if rows_done else None
    train_stage = f.stage_state("train")
    rows = [["peak memory", gb(estimate), f"{gb(peak)} {kind}" if peak else _absent(t, train_stage, f),
             _vs(peak, estimate)]]
    if calibration:
        rows.append(["calibration peak", "-",
                     f"{gb(calibration.get('peak_bytes'))} in {calibration.get('steps')} steps",
                     _vs(calibration.get("peak_bytes"), estimate)])
    rows.append(["training time", seconds(plan_time.get("run_s")) if plan_time else "not calibrated",
                 seconds(loop_s) if loop_s is not None else _absent(t, train_stage, f),
                 _vs(loop_s, plan_time.get("run_s"))])
    if plan_time and rows_done:
        rows.append(["seconds per step", f"{plan_time['seconds_per_step']:.2f}", f"{loop_s / len(rows_done):.2f}",
                     _vs(loop_s / len(rows_done), plan_time["seconds_per_step"])])
    rows.append(["train step wall time", "-", seconds(_between(train_stage.started_at, train_stage.finished_at)), ""])
    parts.append(table(["", "planned", "measured", "difference"], rows, numeric=(1, 2, 3), cls="compare"))
    if p is not None:
        budget, data, w = p.get("budget") or {}, p.get("data") or {}, p.get("workload") or {}
        parts.append(facts([
            ("budget", f"{gb(budget.get('bytes'))} ({gb(budget.get('available'))} {budget.get('source', '')} − "
                       f"{gb(budget.get('reserve'))} reserve)"),
            ("workload", f"{w.get('method')} r={w.get('lora_r')}, batch {w.get('batch_size')} × {w.get('grad_accum')}, "
                         f"{w.get('seq_len')} tokens, {w.get('dtype')} on {w.get('device')}"),
            ("data", f"{data.get('examples')} examples, {data.get('tokens')} tokens (p50 {data.get('p50')}, p90 "
                     f"{data.get('p90')}, longest {data.get('longest')}) in {data.get('packed_rows')} rows"),
            ("steps", f"{p.get('max_steps')} planned; an epoch is {p.get('steps_per_epoch')}")]))
        components = (p.get("estimate") or {}).get("components") or {}
        if components:
            parts.append(tag("h3", "estimated memory by component"))
            parts.append(_shares(components, fmt=gb))
    return join(parts)


def loss(f: JobFacts) -> Html:
    rows = f.train_rows
    train_stage = f.stage_state("train")
    if not rows:
        return missing(f, train_stage) if train_stage.state != RUNNING else note("training: no step logged yet")
    points = tuple((r["step"], r["loss"]) for r in rows)
    series = [Series("training loss", points, "train")]
    if len(points) > SMOOTH_OVER:
        series.append(Series(f"mean of last {SMOOTH_OVER}", _running_mean(points, SMOOTH_OVER), "smooth"))
    m = f.evaluation or {}
    span = (points[0][0], points[-1][0])
    for who in ("base", "tuned"):
        if m.get(f"{who}_loss") is not None:
            series.append(Series(f"held-out loss, {who}", tuple((x, m[f"{who}_loss"]) for x in span),
                                 f"heldout-{who}", dashed=True))
    last = rows[-1]
    parts = [line_chart(series, x_label="step", y_label="loss per trained token")]
    parts.append(facts([
        ("steps", f"{last['step']} of {last.get('max_steps', '?')}"),
        ("loss", f"{points[0][1]:.4f} at step {points[0][0]} → {points[-1][1]:.4f} at step {points[-1][0]}"),
        ("final training loss", f"{f.train['final_loss']:.4f} (mean of the last 5 steps)" if f.train else "-"),
        ("learning rate at the end", f"{last.get('lr', 0):.2g}"),
        ("trained tokens", sum(r.get("trained_tokens", 0) for r in rows)),
        ("throughput", f"{f.train.get('tokens_per_s')} tokens/s" if f.train else "-")]))
    if train_stage.state == RUNNING:
        parts.append(note(f"live: the trainer is at step {last['step']} of {last.get('max_steps', '?')}", "warn"))
    if m.get("tuned_loss") is None:
        parts.append(note(f"held-out loss: {_eval_note(f)}"))
    return join(parts)


def evaluation(f: JobFacts) -> Html:
    m = f.evaluation
    if m is None:
        return missing(f, f.stage_state("eval"))
    variants, overall, gate = m["variants"], m["overall"], m.get("gate") or {}
    tuned = "tuned+context" if "tuned+context" in variants else variants[-1]
    headline = (f"{tuned} passed {overall[tuned]['passed']} of {overall[tuned]['total']} tasks "
                f"({percent(overall[tuned]['passed'], overall[tuned]['total'])})")
    if "base+context" in overall:
        headline += f"; base+context passed {overall['base+context']['passed']}"
    parts = [tag("p", join([badge("gate PASS", "ok") if gate.get("passed") else badge("gate FAIL", "bad"),
                            f" {headline}."]), cls="headline")]
    if not gate.get("passed") and gate.get("guidance"):
        parts.append(note(gate["guidance"], "bad"))
    groups = list(m["families"].items()) + [("all", overall)]
    parts.append(tag("h3", "pass rates by family"))
    parts.append(table(["family", *variants],
                       [[tag("strong", fam) if fam == "all" else fam,
                         *[_cell(counts.get(v)) for v in variants]] for fam, counts in groups],
                       numeric=tuple(range(1, len(variants) + 1)), cls="passrates"))
    parts.append(bar_chart([(fam, [(v, c[v]["passed"] / c[v]["total"] if c[v]["total"] else 0.0,
                                    f"{fam} · {v}: {c[v]['passed']}/{c[v]['total']}") for v in variants if v in c])
                            for fam, c in groups], y_label="pass rate"))
    if m.get("sampled"):
        parts.append(note(f"GT-Bench sampled: the first {m['sampled']['items_per_family']} items of each family "
                          f"(of {m['sampled']['of']})"))
    if gate.get("checks"):
        parts.append(tag("h3", "review gate"))
        parts.append(table(["check", "measured", "required", "result"],
                           [[c["name"], c["measured"], c["required"],
                             badge("pass", "ok") if c["passed"] else badge("FAIL", "bad")] for c in gate["checks"]]))
    loss_rows = [[who, f"{m[f'{who}_loss']:.4f}", _perplexity(m[f"{who}_loss"])] for who in ("base", "tuned")
                 if m.get(f"{who}_loss") is not None]
    if loss_rows:
        parts.append(tag("h3", f"held-out loss ({m.get('held_out_examples', '?')} examples never trained on)"))
        parts.append(table(["model", "loss per trained token", "perplexity"], loss_rows, numeric=(1, 2)))
    probe = m.get("forgetting")
    parts.append(tag("h3", "forgetting probe"))
    parts.append(table(["", "base", "tuned"],
                       [["general-answer perplexity", probe["base_perplexity"], probe["tuned_perplexity"]],
                        ["answers naming the expected facts", probe["base_keyword_hits"], probe["tuned_keyword_hits"]]],
                       numeric=(1, 2)) if probe else note("not run (the base model was not scored)"))
    parts.append(tag("h3", f"failures of {tuned}"))
    parts.append(_failures(f.results, list(m["families"]), tuned))
    return join(parts)


def card(f: JobFacts) -> Html:
    if f.card_path is None and f.train is None:
        return missing(f, f.stage_state("train"), prefix="no model yet: training ")
    text, source = card_markdown(f)
    return join([note(f"source: {source}"), tag("div", markdown_html(text), cls="card")])


def missing(f: JobFacts, stage: StageState, *, prefix: str = "") -> Html:
    """What a section shows when its stage left no output: why, in one line."""
    kind = "bad" if stage.state in (FAILED, STOPPED) else "warn" if stage.state == RUNNING else "muted"
    return tag("p", prefix + stage.why_missing(f.job_id), cls=f"note {kind} missing", data_state=stage.state)


def state_badge(state: str) -> Html:
    return badge(state, STATE_BADGE.get(state, "muted"))


def _failures(results: tuple[dict, ...], families: list[str], variant: str) -> Html:
    blocks = []
    for family in families:
        failed = [r for r in results if r["family"] == family and not r[variant]["passed"]]
        if not failed:
            continue
        items = [tag("details", join([tag("summary", join([tag("code", r["id"]), f" ({r['role'] or 'any role'}): ",
                                                           r[variant]["detail"]])),
                                      tag("pre", r[variant]["output"] or "(empty answer)")]))
                 for r in failed[:FAILURES_SHOWN]]
        hidden = len(failed) - FAILURES_SHOWN
        more = [note(f"… and {hidden} more in results.json")] if hidden > 0 else []
        doing = DOING.get(family, f"passed the {family} tests")
        blocks.append(tag("div", join([tag("h4", f"{family}: {len(failed)} failed (passing means: {doing})"),
                                       *items, *more]), cls="failures"))
    return join(blocks) if blocks else note("none: the tuned model passed every task")


def _shares(counts: dict, *, fmt=str) -> Html:
    """A small table of counts with each one's share drawn as a bar."""
    total = sum(counts.values()) or 1
    rows = [[k, fmt(n), tag("span", tag("span", "", cls="fill", style=f"width:{100 * n / total:.1f}%"),
                            cls="share", title=f"{n / total:.0%} of {fmt(total)}")]
            for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return table(None, rows, numeric=(1,), cls="shares")


def _running_mean(points: tuple[tuple[float, float], ...], n: int) -> tuple[tuple[float, float], ...]:
    """Each point's y replaced by the mean of the last `n` ys up to it."""
    ys = [y for _, y in points]
    windows = (ys[max(0, k - n + 1):k + 1] for k in range(len(ys)))
    return tuple((x, sum(w) / len(w)) for (x, _), w in zip(points, windows))


def _tokens(tokens: dict) -> str:
    if not tokens:
        return "-"
    return (f"{tokens.get('total')} (per record p50 {tokens.get('p50')}, p90 {tokens.get('p90')}, "
            f"max {tokens.get('max')})")


def _cell(c: dict | None) -> Html:
    if not c:
        return Html("-")
    return join([f"{c['passed']}/{c['total']} ", tag("span", f"({percent(c['passed'], c['total'])})", cls="rate")])


def _perplexity(loss_value: float) -> str:
    return f"{math.exp(loss_value):.2f}" if loss_value < 50 else "inf"


def _vs(measured: float | None, planned: float | None) -> str:
    if not measured or not planned:
        return ""
    return f"{measured / planned - 1:+.0%}"


def _absent(manifest: dict | None, stage: StageState, f: JobFacts) -> str:
    return "not recorded" if manifest else stage.why_missing(f.job_id)


def _eval_note(f: JobFacts) -> str:
    eval_stage = f.stage_state("eval")
    return eval_stage.why_missing(f.job_id) if not eval_stage.done else "not measured (no held-out split)"


def _between(start: str, end: str) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

