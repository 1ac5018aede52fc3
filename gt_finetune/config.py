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
from dataclasses import fields
from pathlib import Path

from .errors import InputError


def load_section(home: Path, section: str, cls):
    """The `[section]` table of config.toml as a `cls` instance; unknown keys are errors, not ignored."""
    path = home / "config.toml"
    if not path.is_file():
        return cls()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get(section, {})
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from exc
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise InputError(f"{path}: unknown key(s) in [{section}]: {', '.join(unknown)}",
                         hint=f"known keys: {', '.join(known)}")
    values = {}
    for key, value in table.items():
        default = known[key].default
        if isinstance(default, (frozenset, tuple)):
            if not isinstance(value, list):
                raise InputError(f"{path}: `{section}.{key}` must be a list, got {value!r}")
            value = type(default)(value)
        values[key] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: [{section}] {exc}") from exc
