"""The corpus health report a person reads before any GPU hour: `report.md`, `composition.png`,
and the same numbers as plain-text tables for the terminal (DESIGN.md §4).

Long lists are cut at `CAP` rows; the report says how many more there are and names the JSONL
file holding all of them, so nothing is hidden and nothing floods the page.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..png import ADVANCE, Canvas, text_width
from ..workspace import read_jsonl, short_id, write_jsonl, write_text
from .health import HealthReport

CAP = 20
INK, SOURCE_BAR, ROLE_BAR = (40, 40, 40), (66, 110, 180), (70, 150, 90)


def write_report(corpus_dir: Path, health: HealthReport, manifest: dict, *, out_dir: Path) -> tuple[Path, Path]:
    """Write `report.md` and `composition.png` into `out_dir`; return their paths."""
    report, plot = out_dir / "report.md", out_dir / "composition.png"
    _chart(_kept_by(health, "source"), _kept_by(health, "role")).save(plot)
    write_text(report, _markdown(corpus_dir, health, manifest, out_dir, plot.name))
    return report, plot


def render_terminal(health: HealthReport, manifest: dict) -> str:
    """The report's numbers as aligned plain-text tables (no colour)."""
    blocks = [_headline(health, manifest)]
    for key in ("source", "role", "rig"):
        blocks.append(_text_table([key, "harvested", "kept"], _composition(health, manifest, key)))
    blocks.append(_text_table(["role", "tokens"], _token_rows(health.tokens)) + "\n" + _lengths(health.tokens))
    redaction = _redaction_rows(manifest)
    blocks.append(_text_table(["redaction rule", "count"], redaction) if redaction
                  else "redaction: no counts in the manifest")
    kinds = Counter(_drop_kind(d) for d in health.dropped)
    blocks.append(_text_table(["dropped", "records"], [[k, f"{n:,}"] for k, n in sorted(kinds.items())])
                  if kinds else "dropped: none")
    return "\n\n".join(blocks) + "\n"


def _markdown(corpus_dir: Path, health: HealthReport, manifest: dict, out_dir: Path, plot: str) -> str:
    lines = [f"# Corpus report: `{manifest.get('id', corpus_dir.name)}`", "", f"{_headline(health, manifest)}.", "",
             f"![kept records per source and per role]({plot})", "", "## Composition", ""]
    for key in ("source", "role", "rig"):
        lines += [f"### By {key}", "", *_md_table([key, "harvested", "kept"], _composition(health, manifest, key)), ""]
    lines += ["## Tokens", "", "Whitespace tokens in the kept records, by message role.", "",
              *_md_table(["role", "tokens"], _token_rows(health.tokens)), "", _lengths(health.tokens) + ".", ""]
    redaction = _redaction_rows(manifest)
    lines += ["## Redaction", "", *(_md_table(["rule", "redacted"], redaction) if redaction
                                    else ["No redaction counts in the manifest."]), ""]
    kinds = Counter(_drop_kind(d) for d in health.dropped)
    lines += ["## Duplicates", "", f"{kinds['exact']:,} exact and {kinds['near']:,} near duplicates dropped; "
              "the earliest record of each group is kept. Each is listed under per-entry diagnostics.", ""]
    lines += ["## Stale", "", "Flagged, not dropped: formulas changed since, beads that no longer exist, "
              "CLI usage Gas Town removed or never had.", ""]
    lines += _section([[short_id(s["content_hash"]), s["reason"]] for s in health.stale],
                      ["record", "reason"], health.stale, out_dir / "stale.jsonl", "No stale records.")
    lines += ["## Conflicts", "", "Same prompt, opposite actions prescribed; flagged, not dropped.", ""]
    lines += _section([[short_id(c["a"]), short_id(c["b"]), c["situation"], c["why"]] for c in health.conflicts],
                      ["a", "b", "situation", "why"], health.conflicts, out_dir / "conflicts.jsonl", "No conflicts.")
    lines += ["## Per-entry diagnostics", "", "### Dropped by the health check", ""]
    lines += _section([[str(d["index"]), short_id(d["content_hash"]), d["reason"]] for d in health.dropped],
                      ["index", "record", "reason"], health.dropped, out_dir / "dropped.jsonl", "Nothing dropped.")
    lines += ["### Rejected at harvest", ""]
    reasons = manifest.get("rejected_reasons", {})
    if reasons:
        lines += [*_md_table(["reason", "lines"], [[k, f"{n:,}"] for k, n in reasons.items()]), ""]
    rejected_path = corpus_dir / "rejected.jsonl"
    rejected = read_jsonl(rejected_path) if rejected_path.is_file() else []
    lines += _section([[r.get("where", ""), r.get("reason", "")] for r in rejected], ["where", "reason"],
                      None, rejected_path, "No line rejected.")
    return "\n".join(lines)


def _headline(health: HealthReport, manifest: dict) -> str:
    harvested = len(health.kept) + len(health.dropped)
    return (f"corpus {manifest.get('id', '?')}: {harvested:,} records harvested, {len(health.kept):,} kept, "
            f"{len(health.dropped):,} dropped, {len(health.stale):,} stale flags, "
            f"{len(health.conflicts):,} conflicts")


def _composition(health: HealthReport, manifest: dict, key: str) -> list[list[str]]:
    harvested = manifest.get("counts", {}).get(f"by_{key}", {})
    kept = _kept_by(health, key)
    names = sorted(set(harvested) | set(kept), key=lambda n: (-harvested.get(n, 0), -kept.get(n, 0), n))
    return [[n, f"{harvested.get(n, 0):,}", f"{kept.get(n, 0):,}"] for n in names]


def _kept_by(health: HealthReport, key: str) -> dict[str, int]:
    """Counts keyed as the harvest manifest keys them (`-` for none)."""
    return dict(Counter(str(r["meta"].get(key) or "-") for r in health.kept).most_common())


def _token_rows(tokens: dict) -> list[list[str]]:
    rows = [[role, f"{n:,}"] for role, n in tokens.get("by_role", {}).items()]
    return rows + [["total", f"{tokens.get('total', 0):,}"]]


def _redaction_rows(manifest: dict) -> list[list[str]]:
    """Counts per rule family as the redaction step recorded them (a number, or a nested object)."""
    return [[rule, f"{n:,}" if isinstance(n, int) else json.dumps(n, sort_keys=True)]
            for rule, n in manifest.get("redaction", {}).items()]


def _lengths(tokens: dict) -> str:
    return f"record length in tokens: p50 {tokens.get('p50', 0):,}, p90 {tokens.get('p90', 0):,}, " \
           f"max {tokens.get('max', 0):,}"


def _drop_kind(entry: dict) -> str:
    """`exact`/`near` for duplicates (their reason starts so), `excluded` for dropped synthetic text."""
    return entry["reason"].split(" ", 1)[0] if entry.get("kept") else "excluded"


def _section(rows: list[list[str]], headers: list[str], full: list[dict] | None, path: Path, empty: str) -> list[str]:
    """A table of at most CAP rows; past that it names `path`, which holds them all (written here
    from `full`, or already there when `full` is None)."""
    if not rows:
        return [empty, ""]
    lines = _md_table(headers, rows[:CAP])
    if len(rows) > CAP:
        if full is not None:
            write_jsonl(path, full)
        lines.append(f"\n… and {len(rows) - CAP:,} more; all {len(rows):,}: `{path}`")
    return [*lines, ""]


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def cell(value: str) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    aligns = ["---"] + ["---:" if all(_numeric(r[k]) for r in rows) else "---" for k in range(1, len(headers))]
    return ["| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |",
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[k])) for r in [headers, *rows]) for k in range(len(headers))]
    numeric = [k > 0 and all(_numeric(r[k]) for r in rows) for k in range(len(headers))]
    return "\n".join("  ".join(str(v).rjust(w) if num else str(v).ljust(w)
                               for v, w, num in zip(row, widths, numeric)).rstrip()
                     for row in [headers, *rows])


def _numeric(value: str) -> bool:
    return str(value).replace(",", "").isdigit()


def _chart(sources: dict[str, int], roles: dict[str, int]) -> Canvas:
    """Two horizontal bar panels, kept records per source and per role, largest first."""
    scale, margin, row_h, bar_h, label_chars = 2, 16, 22, 16, 16
    label_w = label_chars * ADVANCE * scale
    bar_left = margin + label_w + 8
    width = bar_left + 360 + text_width("000000", scale) + margin
    panels = [("kept records per source", sources, SOURCE_BAR), ("kept records per role", roles, ROLE_BAR)]
    height = margin + sum(row_h + max(1, len(counts)) * row_h + margin for _, counts, _ in panels)
    canvas = Canvas(width, height)
    top = margin
    for title, counts, color in panels:
        canvas.text(margin, top, title, INK, scale)
        top += row_h
        biggest = max(counts.values(), default=0)
        if not counts:
            canvas.text(margin, top + 3, "no records", INK, scale)
            top += row_h
        for name, n in counts.items():
            length = max(1, round(360 * n / biggest))
            canvas.text(margin, top + 3, name[:label_chars], INK, scale)
            canvas.rect(bar_left, top, length, bar_h, color)
            canvas.text(bar_left + length + 6, top + 1, str(n), INK, scale)
            top += row_h
        top += margin
    return canvas
