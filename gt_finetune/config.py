"""`<home>/config.toml`: the operator's settings for hygiene (redaction, health gate) and the
training planner's memory budget, checked on load.

    [redaction]
    disabled_rules = ["email"]          # rule ids, see `gt-finetune corpus rules`
    allowlist = ["^sk-test-fixture$"]   # regexes: a hit that fully matches one is kept
    entropy_threshold = 4.0
    pii = true

    [health]
    exclude_generated_by = ["model:"]   # drop model-written text (default: keep, down-weighted)
    synthetic_weight = 0.5
    min_examples = 50
    min_tokens = 5000
    near_duplicate_threshold = 0.85

    [plan]
    reserve_gb = 1.5                    # kept free for Dolt and live agent sessions (CPU budget)
    budget_gb = 0                       # an explicit budget in GB; 0: available memory - reserve_gb
"""
from __future__ import annotations

import tomllib
import typing
from dataclasses import fields
from pathlib import Path

from .errors import InputError
from .workspace import shown

_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", dict: "a table"}


def load_section(home: Path, section: str, cls):
    """The `[section]` table of config.toml as a `cls` instance; unknown keys are errors, not ignored,
    and each value must have its field's type (`pii = "yes"` would otherwise switch a check on by
    being truthy, and `entropy_threshold = "x"` would fail deep inside a harvest)."""
    path = home / "config.toml"
    if not path.is_file():
        return cls()
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})",
                         hint="fix or remove the file; the defaults apply without it") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from exc
    except RecursionError as exc:
        raise InputError(f"{path}: not valid TOML (nested too deeply)") from exc
    table = config.get(section, {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: `{section}` must be a table (a `[{section}]` header and its keys), "
                         f"got {shown(repr(table))}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise InputError(f"{path}: unknown key(s) in [{section}]: {shown(', '.join(unknown))}",
                         hint=f"known keys: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    typed = {key: _typed(value, hints[key]) for key, value in table.items()}
    wrong = next((f"{path}: `{section}.{key}` must be {want}, got {shown(repr(table[key]))}"
                  for key, (_, want) in typed.items() if want), None)
    try:
        settings = cls(**{key: value for key, (value, _) in typed.items()})
    except ValueError as exc:  # the section's own check says more ("a number of GB")
        raise InputError(f"{path}: [{section}] {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a wrong-typed value may break the section's own checks
        if wrong is None:
            raise
        raise InputError(wrong) from exc
    if wrong:
        raise InputError(wrong)
    return settings


def _typed(value, hint) -> tuple[object, str]:
    """`value` as field type `hint` (a list becomes a tuple or frozenset, an int a float), and what
    it should have been when it has the wrong type ("" when it is right)."""
    origin = typing.get_origin(hint)
    if origin in (tuple, frozenset):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return origin(value), ""
        return value, "a list of strings"
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), ""
    if hint in _KINDS and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value, _KINDS[hint]
    return value, ""
