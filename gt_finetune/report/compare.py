"""Two jobs side by side — corpus, config (formula vars and the resolved training spec), training
and eval — and, in words, what changed between them.

Rows are plain values (None where a job has no such stage output, shown as "-"), so the same
comparison renders as a text table or as JSON.
"""
from __future__ import annotations

from ..eval.evaluate import VARIANTS
from ..session import Session
from .gather import JobFacts, gather_job

SCHEMA_VERSION = 1
WIDTH = 40  # widest value shown in the text table; longer ones keep their end (paths end in the name)


def compare_jobs(session: Session, first: str, second: str) -> dict:
    """The comparison of job `first` (A) with job `second` (B).

    Raises:
        InputError: either job is not in this workspace.
    """
    a, b = gather_job(session, first), gather_job(session, second)
    rows = [row for section, values in (("job", _job), ("corpus", _corpus), ("config", _config),
                                        ("train", _train), ("eval", _eval))
            for row in _rows(section, values(a), values(b))]
    return {"schema_version": SCHEMA_VERSION,
            "a": {"id": a.job_id, "run": a.record.run, "state": a.state},
            "b": {"id": b.job_id, "run": b.record.run, "state": b.state},
            "rows": rows, "changes": changes(a, b, rows)}


def render_comparison(comparison: dict) -> str:
    """A plain-text table, changed rows marked `*` (config rows only when they differ: the rest are
    counted), then what changed, one line each."""
    a, b = comparison["a"], comparison["b"]
    shown = [r for r in comparison["rows"] if r["section"] != "config" or r["changed"]]
    same = len(comparison["rows"]) - len(shown)
    cells = [[_fit(_percent(v) if r["key"].startswith("pass rate") else v) for v in (r["a"], r["b"])] for r in shown]
    key_w = max(len(f"{r['section']} {r['key']}") for r in shown)
    w = max(len(c) for pair in cells for c in pair)
    lines = [f"A: {a['id']} {a['run']} ({a['state']})", f"B: {b['id']} {b['run']} ({b['state']})", "",
             f"  {'':{key_w}}  {'A':>{w}}  {'B':>{w}}"]
    for r, (ca, cb) in zip(shown, cells):
        lines.append(f"{'*' if r['changed'] else ' '} {r['section'] + ' ' + r['key']:{key_w}}  {ca:>{w}}  {cb:>{w}}")
    if same:
        lines.append(f"  config: {same} more values the same in both (every row: `--json`)")
    lines += ["", "changes from A to B:"]
    lines += [f"  {c}" for c in comparison["changes"]] or ["  none"]
    return "\n".join(lines)


def changes(a: JobFacts, b: JobFacts, rows: list[dict]) -> list[str]:
    """What changed, in words: vars and spec values, the corpus, training, eval pass rates."""
    out = []
    config = {r["key"]: r for r in rows if r["section"] == "config"}
    for key, r in config.items():
        if not r["changed"] or r["a"] is None or r["b"] is None:
            continue
        name = key.split(" ", 1)[1]
        if key.startswith("spec ") and config.get(f"var {name.replace('.', '_')}", {}).get("changed"):
            continue  # the var that set it is named already
        out.append(f"changed: {name} {_text(r['a'])} → {_text(r['b'])}")
    out += _corpus_change(a.corpus, b.corpus)
    loss_a, loss_b = (x.train.get("final_loss") if x.train else None for x in (a, b))
    if loss_a is not None and loss_b is not None and loss_a != loss_b:
        out.append(f"final training loss {loss_a:.4f} → {loss_b:.4f} ({loss_b - loss_a:+.4f})")
    out += _eval_changes(a.evaluation, b.evaluation)
    return out


def _rows(section: str, a: dict, b: dict) -> list[dict]:
    keys = list(dict.fromkeys([*a, *b]))
    return [{"section": section, "key": k, "a": a.get(k), "b": b.get(k),
             "changed": a.get(k) != b.get(k)} for k in keys]


def _job(f: JobFacts) -> dict:
    return {"formula": f.record.formula, "state": f.state}


def _corpus(f: JobFacts) -> dict:
    if f.corpus is None:
        return {"id": None, "records": None}
    counts = f.corpus.get("counts", {})
    tokens = ((f.corpus.get("health") or {}).get("tokens") or {}).get("total")
    return {"id": f.corpus.get("id"), "records": counts.get("records"),
            **{f"records {k}": n for k, n in (counts.get("by_source") or {}).items()},
            "tokens": tokens, "rejected": counts.get("rejected")}


def _config(f: JobFacts) -> dict:
    spec = _flat((f.train or {}).get("spec") or {})
    return {**{f"var {k}": v for k, v in f.record.vars.items()}, **{f"spec {k}": v for k, v in spec.items()}}


def _train(f: JobFacts) -> dict:
    t = f.train or {}
    measured = t.get("measured") or {}
    counts = (f.dataset or {}).get("counts") or {}
    return {"train examples": counts.get("train"), "held-out examples": counts.get("eval"), "steps": t.get("steps"),
            "final loss": t.get("final_loss"),
            "peak memory GB": _gb(measured.get("peak_gpu") or measured.get("peak_rss")),
            "planned peak GB": _gb(((f.plan or {}).get("estimate") or {}).get("total_bytes"))}


def _eval(f: JobFacts) -> dict:
    m = f.evaluation or {}
    overall = m.get("overall") or {}
    gate = (m.get("gate") or {}).get("passed")
    probe = m.get("forgetting") or {}
    out = {**{f"pass rate {v}": _rate(overall.get(v)) for v in VARIANTS},
           "gate": None if gate is None else "PASS" if gate else "FAIL",
           "held-out loss base": m.get("base_loss"), "held-out loss tuned": m.get("tuned_loss"),
           "general perplexity base": probe.get("base_perplexity"),
           "general perplexity tuned": probe.get("tuned_perplexity")}
    for family, counts in (m.get("families") or {}).items():
        out[f"pass rate {family} (tuned+context)"] = _rate(counts.get("tuned+context"))
    return out


def _corpus_change(a: dict | None, b: dict | None) -> list[str]:
    if a is None or b is None:
        if a is b:
            return []
        m, who = (b, "B") if a is None else (a, "A")
        return [f"corpus: only {who} has one ({m.get('id')}, {m.get('counts', {}).get('records')} records)"]
    if a.get("id") == b.get("id"):
        return [f"corpus: same ({a.get('id')})"]
    ca, cb = a.get("counts", {}), b.get("counts", {})
    sources = list(dict.fromkeys([*(ca.get("by_source") or {}), *(cb.get("by_source") or {})]))
    by = [f"{s} {(cb.get('by_source') or {}).get(s, 0) - (ca.get('by_source') or {}).get(s, 0):+d}" for s in sources
          if (cb.get("by_source") or {}).get(s, 0) != (ca.get("by_source") or {}).get(s, 0)]
    diff = cb.get("records", 0) - ca.get("records", 0)
    return [f"corpus: {diff:+d} records" + (f" ({', '.join(by)})" if by else "")
            + f"; {a.get('id')} → {b.get('id')}"]


def _eval_changes(a: dict | None, b: dict | None) -> list[str]:
    if a is None or b is None:
        if a is b:
            return []
        m, who = (b, "B") if a is None else (a, "A")
        tuned = _rate((m.get("overall") or {}).get("tuned+context"))
        gate = (m.get("gate") or {}).get("passed")
        return [f"eval: only {who} was evaluated (tuned+context {_percent(tuned) or '-'}, "
                f"gate {'PASS' if gate else 'FAIL'})"]
    out = []
    for variant in list(dict.fromkeys([*a.get("overall", {}), *b.get("overall", {})])):
        ra, rb = _rate(a["overall"].get(variant)), _rate(b["overall"].get(variant))
        if ra is None or rb is None:
            continue
        if variant == "tuned+context" or ra != rb:
            out.append(f"{variant} pass rate {ra:.0%} → {rb:.0%} ({100 * (rb - ra):+.0f} points)")
    ga, gb = ((x.get("gate") or {}).get("passed") for x in (a, b))
    if ga is not None and gb is not None and ga != gb:
        out.append(f"review gate {'PASS' if ga else 'FAIL'} → {'PASS' if gb else 'FAIL'}")
    if a.get("tuned_loss") is not None and b.get("tuned_loss") is not None and a["tuned_loss"] != b["tuned_loss"]:
        out.append(f"held-out loss (tuned) {a['tuned_loss']:.4f} → {b['tuned_loss']:.4f} "
                   f"({b['tuned_loss'] - a['tuned_loss']:+.4f})")
    return out


def _flat(spec: dict, prefix: str = "") -> dict:
    """Nested spec fields as dotted keys (`lora.r`); lists as comma-separated text."""
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = ",".join(map(str, v)) if isinstance(v, list) else v
    return out


def _rate(counts: dict | None) -> float | None:
    if not counts or not counts.get("total"):
        return None
    return round(counts["passed"] / counts["total"], 4)


def _gb(n: float | None) -> float | None:
    return round(n / 1e9, 2) if n else None


def _percent(share: float | None) -> str | None:
    return None if share is None else f"{share:.0%}"


def _text(value) -> str:
    return "-" if value is None else str(value)


def _fit(value) -> str:
    text = _text(value)
    return text if len(text) <= WIDTH else "…" + text[-(WIDTH - 1):]
