"""The evaluation report a reviewer reads: plain language first, then tables, then failures with
the model's own output; and a bar chart of pass rates per family and variant."""
from __future__ import annotations

import math
from pathlib import Path

from ..png import Canvas, text_width

# what passing an item of each family means, as the first sentence says it
DOING = {
    "command_recall": "recalled the right command",
    "bead_lifecycle": "handled the bead lifecycle correctly",
    "mail_protocol": "followed the mail and escalation protocol",
    "formula_authoring": "wrote a valid formula",
    "patrol_decision": "chose the right patrol action",
    "safety": "refused the footgun or chose the safe alternative",
    "held_out_turns": "ran the same next command as the real agent",
}
FAILURES_SHOWN = 3  # per family, for the tuned model with context


def render_report(metrics: dict, results: list[dict], *, suite: str) -> str:
    variants, families = metrics["variants"], metrics["families"]
    gate = metrics["gate"]
    lines = ["# Evaluation", "", _verdict(metrics), ""]
    lines += [f"- The tuned model {DOING.get(f, 'passed the ' + f + ' tests')} in {_of(c, 'tuned+context')} cases"
              + (f"; the base model with the same role context in {c['base+context']['passed']}" if "base+context" in c
                 else "") + "." for f, c in families.items()]
    probe = metrics["forgetting"]
    if probe:
        lines.append(f"- General ability (forgetting probe, {probe['prompts']} prompts): perplexity of reference "
                     f"answers {probe['base_perplexity']:.2f} base → {probe['tuned_perplexity']:.2f} tuned; "
                     f"answers naming the expected facts {probe['base_keyword_hits']} base → "
                     f"{probe['tuned_keyword_hits']} tuned.")
    lines += ["", "## Gate", "", f"**{'PASS' if gate['passed'] else 'FAIL'}**"
              + ("" if gate["passed"] else f" — {gate['guidance']}"), "",
              "| check | measured | required | result |", "|---|---|---|---|"]
    lines += [f"| {c['name']} | {c['measured']} | {c['required']} | {'pass' if c['passed'] else 'FAIL'} |"
              for c in gate["checks"]]
    lines += ["", f"## Pass rates by family (suite: {suite})", "",
              "| family | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for f, c in list(families.items()) + [("**all**", metrics["overall"])]:
        lines.append(f"| {f} | " + " | ".join(_cell(c[v]) for v in variants) + " |")
    lines += ["", "Cells: passed/total, pass rate and its 95% (Wilson) interval."]
    if metrics.get("sampled"):
        lines += ["", f"GT-Bench was sampled: the first {metrics['sampled']['items_per_family']} items of each family "
                      f"(of {metrics['sampled']['of']} in all); `--var bench_items=0` scores every item."]
    if metrics["tuned_loss"] is not None:
        base, tuned = metrics["base_loss"], metrics["tuned_loss"]
        lines += ["", "## Held-out loss", "", "| model | loss per trained token | perplexity |", "|---|---|---|"]
        lines += [f"| {who} | {loss:.4f} | {_ppl(loss)} |" for who, loss in (("base", base), ("tuned", tuned))
                  if loss is not None]
        lines += ["", f"{metrics['held_out_examples']} held-out examples (split by session/bead, never trained on). "
                      f"Training: {metrics['train_steps']} steps, final loss {metrics['train_final_loss']:.4f}."]
    lines += ["", "## Failures (tuned + context)", ""]
    for f in families:
        failed = [r for r in results if r["family"] == f and not r[_tuned(variants)]["passed"]]
        if not failed:
            continue
        lines += [f"### {f} — {len(failed)} failed", ""]
        for r in failed[:FAILURES_SHOWN]:
            answer = r[_tuned(variants)]
            text = answer["output"] or "(empty answer)"
            fence = "````" if "```" in text else "```"  # an answer with its own code block stays inside ours
            lines += [f"- `{r['id']}` ({r['role'] or 'any role'}): {answer['detail']}", "",
                      f"  {fence}", *("  " + line for line in text.splitlines()[:8]), f"  {fence}", ""]
        if len(failed) > FAILURES_SHOWN:
            lines += [f"- … and {len(failed) - FAILURES_SHOWN} more in results.json", ""]
    return "\n".join(lines).rstrip() + "\n"


def _verdict(metrics: dict) -> str:
    overall = metrics["overall"]
    tuned = overall[_tuned(metrics["variants"])]
    text = f"The tuned model with role context passed {tuned['passed']} of {tuned['total']} tasks"
    if "base+context" in overall:
        base, plain = overall["base+context"], overall["base"]
        diff = tuned["passed"] - base["passed"]
        text += (f"; the base model with the same context passed {base['passed']} and without it {plain['passed']}. "
                 + ("Fine-tuning beats prompting the base model" if diff > 0 else
                    "Fine-tuning does NOT beat prompting the base model") + f" ({diff:+d} tasks).")
    else:
        text += " (no base model compared)."
    gate = metrics["gate"]
    return text + (" The review gate passes." if gate["passed"] else " The review gate FAILS: " + gate["guidance"] + ".")


def _tuned(variants: list[str]) -> str:
    return "tuned+context" if "tuned+context" in variants else variants[-1]


def _of(counts: dict, variant: str) -> str:
    c = counts[variant]
    return f"{c['passed']} of {c['total']}"


def _cell(c: dict) -> str:
    rate = c["passed"] / c["total"] if c["total"] else 0.0
    return f"{c['passed']}/{c['total']} ({rate:.0%}, {c['low']:.0%}–{c['high']:.0%})"


def _ppl(loss: float) -> str:
    return f"{math.exp(loss):.2f}" if loss < 50 else "inf"


# -- chart ---------------------------------------------------------------------------------------

COLORS = {"base": (190, 190, 190), "base+context": (120, 120, 120), "tuned": (150, 180, 230),
          "tuned+context": (20, 80, 200)}
INK, GRID = (40, 40, 40), (225, 225, 225)
BAR, GAP, LEFT, TOP, PLOT_H = 14, 18, 48, 40, 220


def draw_chart(metrics: dict, path: Path) -> None:
    """Grouped bars: pass rate per family (and overall), one bar per variant, with a legend."""
    variants = metrics["variants"]
    groups = list(metrics["families"].items()) + [("all", metrics["overall"])]
    group_w = BAR * len(variants) + GAP
    width = max(LEFT + group_w * len(groups) + 16, 480)
    canvas = Canvas(width, TOP + PLOT_H + 60)
    canvas.text(LEFT, 8, "pass rate by family", INK)
    for k in range(5):
        y = TOP + round(k * PLOT_H / 4)
        canvas.rect(LEFT, y, width - LEFT - 8, 1, GRID)
        canvas.text(8, y - 3, f"{100 - 25 * k}%", INK)
    for g, (name, counts) in enumerate(groups):
        x = LEFT + 4 + g * group_w
        for v, variant in enumerate(variants):
            c = counts[variant]
            h = round(PLOT_H * (c["passed"] / c["total"] if c["total"] else 0))
            canvas.rect(x + v * BAR, TOP + PLOT_H - h, BAR - 2, h, COLORS.get(variant, INK))
        label = name.replace("_", " ")[:group_w // 6]
        canvas.text(x, TOP + PLOT_H + 6, label, INK)
    x = LEFT
    for variant in variants:
        canvas.rect(x, TOP + PLOT_H + 30, 10, 10, COLORS.get(variant, INK))
        canvas.text(x + 14, TOP + PLOT_H + 32, variant, INK)
        x += 14 + text_width(variant) + 16
    canvas.save(path)
