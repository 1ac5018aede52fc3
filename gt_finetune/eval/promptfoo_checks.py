"""promptfoo's assertion types that need no JavaScript, by promptfoo's rules, in Python.

Each check takes (output text, rendered `value`, the assertion as written, latency in ms) and
returns (whether the assertion's claim holds, the fact behind it in words); `not-` is applied by
the caller. A check raises `AssertError` when the assertion itself is unusable (no `value`, a bad
regex): promptfoo fails such an assertion whatever its `not-` says. `regex` uses Python's `re`,
which reads ordinary patterns as JavaScript does.
"""
from __future__ import annotations

import csv
import json
import re


class AssertError(Exception):
    """An assertion that cannot be evaluated; it fails whatever its `not-` says."""


def js_text(value) -> str:
    """What JavaScript's String() gives, so `{{ var }}` prints as it does under promptfoo."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(js_text(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(text: str, limit: int = 80) -> str:
    text = str(text)
    return json.dumps(text if len(text) <= limit else text[:limit - 1] + "…", ensure_ascii=False)


def _needle(value, kind: str) -> str:
    if isinstance(value, str) and value:
        return value
    if is_number(value):
        return js_text(value)
    raise AssertError(f"`{kind}` needs a non-empty string or number `value`")


def _needles(value, kind: str) -> list[str]:
    if isinstance(value, str):  # promptfoo reads a string as comma-separated values
        value = [v.strip() for v in next(csv.reader([value], skipinitialspace=True), []) if v.strip()]
    if not isinstance(value, list) or not value:
        raise AssertError(f"`{kind}` needs a list `value` (or comma-separated text)")
    return [js_text(v) for v in value]


def _equals(text, value, assertion, latency_ms):
    if isinstance(value, (dict, list)):
        try:
            same = json.loads(text) == value
        except (ValueError, RecursionError):  # also a 4301-digit number or nesting past the stack
            same = False
        shown = json.dumps(value, ensure_ascii=False, default=str)
    else:
        shown = js_text(value)
        same = text == shown
    return same, f"output {'equals' if same else 'differs from'} {_short(shown)}"


def _contains(text, value, assertion, latency_ms, *, fold=False):
    needle = _needle(value, assertion["type"])
    found = needle.lower() in text.lower() if fold else needle in text
    return found, f"output {'contains' if found else 'does not contain'} {_short(needle)}"


def _contains_any(text, value, assertion, latency_ms, *, fold=False):
    needles = _needles(value, assertion["type"])
    hay = text.lower() if fold else text
    found = [n for n in needles if (n.lower() if fold else n) in hay]
    listed = ", ".join(_short(n, 30) for n in needles)
    return bool(found), (f"output contains {_short(found[0])}" if found else f"output contains none of {listed}")


def _contains_all(text, value, assertion, latency_ms, *, fold=False):
    needles = _needles(value, assertion["type"])
    hay = text.lower() if fold else text
    missing = [n for n in needles if (n.lower() if fold else n) not in hay]
    listed = ", ".join(_short(n, 30) for n in missing)
    return not missing, ("output contains all of them" if not missing else f"output lacks {listed}")


def _starts_with(text, value, assertion, latency_ms):
    prefix = _needle(value, "starts-with")
    held = text.startswith(prefix)
    return held, f"output {'starts' if held else 'does not start'} with {_short(prefix)}"


def _regex(text, value, assertion, latency_ms):
    if not isinstance(value, str) or not value:
        raise AssertError("`regex` needs a pattern in `value`")
    try:
        held = re.search(value, text) is not None
    except re.error as e:
        raise AssertError(f"bad regex {_short(value)}: {e}") from e
    return held, f"output {'matches' if held else 'does not match'} /{value}/"


def _is_json(text, value, assertion, latency_ms):
    if value not in (None, ""):
        raise AssertError("`is-json` with a JSON-schema `value` is not supported here")
    try:
        json.loads(text, parse_constant=_no_constant)
        return True, "output is valid JSON"
    except ValueError as e:
        return False, f"output is not valid JSON ({e})"
    except RecursionError:
        return False, "output is not valid JSON (nested too deeply to read)"


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _cost(text, value, assertion, latency_ms):
    threshold = assertion.get("threshold")
    if threshold is None:
        raise AssertError("`cost` needs a `threshold`")
    return 0 <= threshold, f"a local model costs nothing (threshold {threshold:g})"


def _latency(text, value, assertion, latency_ms):
    threshold = assertion.get("threshold")
    if threshold is None:
        raise AssertError("`latency` needs a `threshold` in milliseconds")
    if latency_ms is None:
        raise AssertError("no latency was measured: run the case with `run_suite` or pass `latency_ms`")
    held = latency_ms <= threshold
    return held, f"answered in {latency_ms:.0f} ms ({'within' if held else 'over'} {threshold:g} ms)"


CHECKS = {
    "equals": _equals,
    "contains": _contains,
    "icontains": lambda *a: _contains(*a, fold=True),
    "contains-any": _contains_any,
    "icontains-any": lambda *a: _contains_any(*a, fold=True),
    "contains-all": _contains_all,
    "icontains-all": lambda *a: _contains_all(*a, fold=True),
    "starts-with": _starts_with,
    "regex": _regex,
    "is-json": _is_json,
    "cost": _cost,
    "latency": _latency,
}
