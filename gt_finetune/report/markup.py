"""HTML built from escaped text only: every builder escapes what it is given unless it is `Html`.

Bead titles, corpus text and model output are untrusted, so nothing reaches the page unescaped by
accident: markup is made here, and only here is a string declared safe.
"""
from __future__ import annotations

import html
from collections.abc import Iterable


class Html(str):
    """Markup that is already safe to put in the page."""


def esc(value) -> Html:
    """`value` as page text: Html passes through, None is "-", anything else is escaped."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("-" if value is None else str(value), quote=True))


def tag(name: str, body="", **attrs) -> Html:
    """`<name attrs>body</name>`; attribute names use `_` for `-` (`data_state` → `data-state`)
    and `cls` for `class`; a None or False attribute is left out."""
    parts = [name]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        key = "class" if key == "cls" else key.replace("_", "-")
        parts.append(key if value is True else f'{key}="{esc(value)}"')
    return Html(f"<{' '.join(parts)}>{esc(body)}</{name}>")


def join(items: Iterable, sep: str = "") -> Html:
    return Html(sep.join(esc(x) for x in items))


def table(headers: list | None, rows: Iterable[list], *, numeric: tuple[int, ...] = (), cls: str = "") -> Html:
    """A table (without a header row when `headers` is None); the columns in `numeric` are
    right-aligned, so numbers line up."""
    def cells(row, name):
        return join(tag(name, v, cls="num" if k in numeric else None) for k, v in enumerate(row))

    head = tag("thead", tag("tr", cells(headers, "th"))) if headers is not None else Html("")
    return tag("table", join([head, tag("tbody", join(tag("tr", cells(r, "td")) for r in rows))]), cls=cls or None)


def facts(pairs: Iterable[tuple]) -> Html:
    """A definition list of (label, value) pairs: the small key numbers of a section."""
    return tag("dl", join(join([tag("dt", k), tag("dd", v)]) for k, v in pairs), cls="facts")


def badge(text: str, kind: str) -> Html:
    """A coloured label: `ok`, `bad`, `warn` or `muted`."""
    return tag("span", text, cls=f"badge {kind}")


def note(text, kind: str = "muted") -> Html:
    return tag("p", text, cls=f"note {kind}")


def gb(n: float | None) -> str:
    return "-" if not n else f"{n / 1e9:.2f} GB"


def seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    if s < 60:
        return f"{s} s"
    minutes, rest = divmod(s, 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def percent(passed: int, total: int) -> str:
    return f"{passed / total:.0%}" if total else "-"
