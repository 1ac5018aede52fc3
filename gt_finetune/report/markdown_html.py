"""The small Markdown the model card uses, as escaped HTML: front matter, headings, paragraphs,
lists, pipe tables, fenced code, `code` and **bold**. Anything else shows as plain text — no
Markdown dependency, and no raw HTML from the card ever reaches the page."""
from __future__ import annotations

import re

from .markup import Html, esc, join, tag

INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*")


def markdown_html(text: str, *, top_heading: int = 3) -> Html:
    """`# x` becomes `<h{top_heading}>`, `## x` the next level, and so on (at most h6)."""
    lines = text.splitlines()
    blocks: list[Html] = []
    k = 0
    if lines and lines[0].strip() == "---" and "---" in (x.strip() for x in lines[1:]):
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        blocks.append(tag("pre", "\n".join(lines[1:end]), cls="front-matter"))
        k = end + 1
    while k < len(lines):
        line = lines[k]
        if not line.strip():
            k += 1
        elif line.startswith("```"):
            end = next((i for i in range(k + 1, len(lines)) if lines[i].startswith("```")), len(lines))
            blocks.append(tag("pre", "\n".join(lines[k + 1:end])))
            k = end + 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            blocks.append(tag(f"h{min(6, top_heading + len(m.group(1)) - 1)}", inline(m.group(2))))
            k += 1
        else:
            kind = _kind(line)
            end = next((i for i in range(k + 1, len(lines)) if _kind(lines[i]) != kind or not lines[i].strip()),
                       len(lines))
            blocks.append({"table": _table, "list": _list}.get(kind, _paragraph)(lines[k:end]))
            k = end
    return join(blocks, "\n")


def inline(text: str) -> Html:
    """Escape, then mark up `code` and **bold** (their insides escaped too)."""
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(esc(text[pos:m.start()]))
        out.append(tag("code", m.group(1)) if m.group(1) is not None else tag("strong", m.group(2)))
        pos = m.end()
    out.append(esc(text[pos:]))
    return join(out)


def _kind(line: str) -> str:
    stripped = line.strip()
    if stripped.startswith("|"):
        return "table"
    if stripped.startswith(("- ", "* ")):
        return "list"
    if stripped.startswith(("#", "```")):
        return "block"
    return "paragraph"


def _table(lines: list[str]) -> Html:
    rows = [[c.strip() for c in x.strip().strip("|").split("|")] for x in lines]
    if len(rows) > 1 and all(re.fullmatch(r":?-+:?", c) for c in rows[1]):
        head, body = rows[0], rows[2:]
    else:
        head, body = [], rows
    thead = tag("thead", tag("tr", join(tag("th", inline(c)) for c in head))) if head else Html("")
    return tag("table", join([thead, tag("tbody", join(tag("tr", join(tag("td", inline(c)) for c in r))
                                                       for r in body))]))


def _list(lines: list[str]) -> Html:
    return tag("ul", join(tag("li", inline(x.strip()[2:])) for x in lines))


def _paragraph(lines: list[str]) -> Html:
    return tag("p", inline(" ".join(x.strip() for x in lines)))
