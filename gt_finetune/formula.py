"""Formula files: load, check and look up the TOML (or JSON) recipes a Gas Town town shares.

`gt` and `bd` read the same files with different parsers, so we check what gt's parser checks,
accept bd's extra keys, and ignore keys nobody here uses (`[squash]`, `presets`, …).
"""
from __future__ import annotations

import graphlib
import json
import os
import re
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from gt_finetune.errors import InputError
from gt_finetune.workspace import open_regular, shown

VAR_TYPES = ("string", "int", "bool", "float")
SUFFIXES = (".formula.toml", ".formula.json")
# type -> (array key, noun); in gt's order for inferring a missing `type`.
_PARTS = {"workflow": ("steps", "step"), "convoy": ("legs", "leg"),
          "expansion": ("template", "template"), "aspect": ("aspects", "aspect")}
# Keys checked for their type only: bd reads them, and gt fails to decode a wrong type.
_TOP_FIELDS = (("pour", bool), ("agent", str), ("review_only", bool))
_STEP_FIELDS = (("description", str), ("acceptance", str), ("type", str), ("assignee", str),
                ("condition", str), ("needs", "strings"), ("depends_on", "strings"),
                ("labels", "strings"), ("parallel", bool), ("interactive", bool),
                ("priority", int), ("finetune", dict), ("metadata", dict), ("gate", dict))
_LEG_FIELDS = (("title", str), ("focus", str), ("description", str), ("agent", str),
               ("review_only", bool))
_KIND_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "a table",
               "strings": "an array of strings", "tables": "an array of tables"}
_TOML_NAMES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
               dict: "table"}
_ARTICLES = {"string": "a string", "int": "an int", "bool": "a bool", "float": "a float"}
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][\w-]*)\}\}")
_HEADER = re.compile(r"^\s*(\[\[?)([^\[\]]+)\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([\w\"' .-]+?)\s*=")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)$")
MAX_FILE_BYTES = 1 << 20  # the shipped formulas are a few KB; a town's file is read before it is trusted
MAX_VAR_CHARS = 4096  # PATH_MAX: no path, name or list a var holds is longer


class FormulaError(InputError):
    """A problem in one formula file, located by file, line (when known) and TOML key."""

    def __init__(self, path: Path, line: int | None, key: str | None, problem: str,
                 *, hint: str | None = None):
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: `{key}`: {problem}" if key else f"{where}: {problem}",
                         hint=hint)
        self.path, self.line, self.key, self.problem = path, line, key, problem


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    description: str = ""
    default: str | None = None
    required: bool = False
    type: str = "string"  # one of VAR_TYPES
    enum: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    title: str
    description: str
    needs: tuple[str, ...]  # `needs` and bd's `depends_on`, merged
    finetune: dict  # the `[steps.finetune]` table, or {}
    acceptance: str = ""


@dataclass(frozen=True, slots=True)
class Formula:
    name: str
    path: Path
    type: str  # workflow | convoy | expansion | aspect
    description: str
    version: int | None
    vars: tuple[Var, ...]
    steps: tuple[Step, ...]  # workflow steps; empty for other types
    legs: tuple[str, ...]  # convoy leg ids

    def step(self, step_id: str) -> Step:
        """The step `step_id`; raises InputError naming the steps that exist."""
        for step in self.steps:
            if step.id == step_id:
                return step
        known = ", ".join(f"`{s.id}`" for s in self.steps) or "none"
        raise InputError(f"formula `{self.name}` has no step `{step_id}`; its steps: {known}")

    def ordered_steps(self) -> tuple[Step, ...]:
        """Steps in `needs` order; among ready steps the file order wins, so runs are stable."""
        done: set[str] = set()
        pending, order = list(self.steps), []
        while pending:
            step = next(s for s in pending if done.issuperset(s.needs))
            pending.remove(step)
            done.add(step.id)
            order.append(step)
        return tuple(order)

    def resolve_vars(self, overrides: dict[str, str]) -> dict[str, object]:
        """Defaults overlaid with `--var` values, typed; optional vars with no value are left out.

        Raises:
            InputError: an unknown var, a missing required var, or a value that is not of the
                var's type or not in its `enum`.
        """
        known = {var.name: var for var in self.vars}
        for name in overrides:
            if name not in known:
                listed = ", ".join(f"`{n}`" for n in known) or "none"
                raise InputError(f"unknown var `{name}` (from --var); formula `{self.name}` "
                                 f"has vars: {listed}")
        resolved: dict[str, object] = {}
        for var in self.vars:
            if var.name in overrides:
                raw, source = overrides[var.name], "from --var"
            elif var.default is not None:
                raw, source = var.default, f"default in {self.path.name}"
            elif var.required:
                about = f" ({var.description})" if var.description else ""
                raise InputError(f"formula `{self.name}` needs var `{var.name}`{about}",
                                 hint=f"pass `--var {var.name}=<value>`")
            else:
                continue
            try:
                resolved[var.name] = _coerce(var, raw)
            except ValueError as exc:
                raise InputError(f"{exc} ({source})") from None
        return resolved

    def render(self, value: object, variables: dict[str, object]) -> object:
        """Replace `{{name}}` in strings, recursively; a string that is one placeholder and
        nothing else takes the typed value, so `max_steps = "{{max_steps}}"` stays an int."""
        if isinstance(value, str):
            whole = _PLACEHOLDER.fullmatch(value)
            if whole and whole[1] in variables:
                return variables[whole[1]]
            return _PLACEHOLDER.sub(
                lambda m: _text(variables[m[1]]) if m[1] in variables else m[0], value)
        if isinstance(value, dict):
            return {k: self.render(v, variables) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.render(v, variables) for v in value)
        return value


def load_formula(path: Path) -> Formula:
    """Parse and check one formula file.

    Raises:
        FormulaError: the first problem found; `check_formula` lists them all.
    """
    formula, errors = _parse(Path(path))
    if errors:
        if len(errors) > 1:
            errors[0].hint = (f"{len(errors) - 1} more problem(s); list them all with "
                              f"`gt-finetune formulas check {path}`")
        raise errors[0]
    return formula


def check_formula(path: Path) -> list[FormulaError]:
    """Every problem in one formula file, so an author fixes them in one pass."""
    return _parse(Path(path))[1]


def check_actions(formula: Formula, known_actions: Collection[str]) -> list[FormulaError]:
    """Problems with a workflow's `[steps.finetune]` actions; apart from `load_formula`
    because towns hold many formulas that gt-finetune never runs."""
    if formula.type != "workflow":
        return []
    try:
        c = _Checker(formula.path, _read(formula.path).decode("utf-8"))
    except (OSError, ValueError):
        c = _Checker(formula.path, "")
    known = ", ".join(f"`{a}`" for a in sorted(known_actions))
    for i, step in enumerate(formula.steps):
        key, action = ("steps", i, "finetune", "action"), step.finetune.get("action")
        if action is None:
            c.error(key, f"step `{step.id}` has no action; add a `[steps.finetune]` table "
                         f"with `action` set to one of {known}")
        elif not isinstance(action, str):
            c.error(key, f"must be a string, got {_describe(action)}")
        elif action not in known_actions:
            c.error(key, f"unknown action {action!r} in step `{step.id}`; known: {known}")
    return c.errors


def find_formula(name: str, search_path: Sequence[Path]) -> Path:
    """The file of formula `name`: the first search dir holding it wins, as in `gt formula run`.

    Raises:
        InputError: no search dir holds it.
    """
    given = Path(name)  # os.path.isfile: False, not an error, for a name no file can have (too long, a NUL)
    if os.path.isfile(given) and (len(given.parts) > 1 or given.suffix in (".toml", ".json")):
        return given
    for folder in search_path:
        for suffix in SUFFIXES:
            if os.path.isfile(candidate := Path(folder) / f"{name}{suffix}"):
                return candidate
    searched = ", ".join(str(d) for d in search_path) or "no directories"
    raise InputError(f"formula `{shown(name)}` not found; searched {searched}",
                     hint="see the formulas there are with `gt-finetune formulas list`")


def list_formulas(search_path: Sequence[Path]) -> list[tuple[str, Path]]:
    """(name, path) of each formula on the search path, by name; earlier dirs shadow later."""
    found: dict[str, Path] = {}
    for folder in search_path:
        for suffix in SUFFIXES:
            for path in sorted(Path(folder).glob(f"*{suffix}")):
                found.setdefault(path.name[: -len(suffix)], path)
    return sorted(found.items())


def parse_formula(path: Path, raw: bytes) -> tuple[Formula | None, list[FormulaError]]:
    """The formula in `raw`, the bytes of the file `path` as a caller already read them, and every
    problem in it (the formula is None when there is one). `path` only names the file in messages and
    picks JSON or TOML: it is not opened, so a file swapped after a safe read is not what gets checked.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [FormulaError(path, None, None, f"cannot read formula file: {exc}")]
    try:
        data = json.loads(text) if path.name.endswith(".json") else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        return None, [FormulaError(path, exc.lineno, None, f"invalid JSON: {exc}")]
    except tomllib.TOMLDecodeError as exc:
        at = _TOML_LINE.search(str(exc))
        line = int(at[1]) if at else text.count("\n") + 1  # tomllib says "at end of document"
        return None, [FormulaError(path, line, None, f"invalid TOML: {exc}")]
    except (ValueError, RecursionError) as exc:  # past Python's limits, not the format's
        why = "nested too deeply" if isinstance(exc, RecursionError) else "a number has over 4300 digits"
        return None, [FormulaError(path, None, None, f"cannot parse: {why}")]
    if _lone_surrogate(data):  # JSON may escape a lone surrogate (`"\ud800"`); TOML refuses one itself
        return None, [FormulaError(path, None, None, "invalid JSON: a string holds a lone surrogate "
                                                     "(an escape like `\\ud800` that is no character)")]
    c = _Checker(path, text)
    if not isinstance(data, dict):
        c.error((), f"the top level must be an object, got {_describe(data)}")
        return None, c.errors
    formula = _build(c, data)
    return (None if c.errors else formula), c.errors


def _parse(path: Path) -> tuple[Formula | None, list[FormulaError]]:
    try:
        data = _read(path)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return None, [FormulaError(path, None, None, f"cannot read formula file: {reason}")]
    return parse_formula(path, data)


def _read(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES. Opened without blocking and checked
    before reading: a FIFO would wait for a writer for ever, and `/dev/zero` never ends.

    Raises:
        OSError: it cannot be opened. ValueError: not a regular file, or too big.
    """
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"over {MAX_FILE_BYTES // (1 << 20)} MB; a formula is a few KB")
    return data


def _build(c: _Checker, data: dict) -> Formula:
    name = c.typed(data, (), "formula", str, required=True)
    description = c.typed(data, (), "description", str, default="")
    version = c.typed(data, (), "version", int)
    for key, kind in _TOP_FIELDS:
        c.typed(data, (), key, kind)
    if "type" in data:
        ftype = c.typed(data, (), "type", str)
        if ftype is not None and ftype not in _PARTS:
            c.error(("type",), f"must be one of {', '.join(_PARTS)}, got {ftype!r}")
    else:
        ftype = next((t for t, (key, _) in _PARTS.items() if data.get(key)), None)
        if ftype is None:
            c.error(("type",), "missing, and there are no `steps`, `legs`, `template` or "
                               "`aspects` to infer it from")
    variables = _vars(c, data)
    steps, legs = [], []
    if ftype in _PARTS:
        key, noun = _PARTS[ftype]
        if not data.get(key):
            c.error((key,), f"a formula of type `{ftype}` requires at least one `[[{key}]]` table")
        if ftype in ("workflow", "expansion"):  # expansion templates are shaped like steps
            steps = _steps(c, data, key, noun)
        else:
            legs = list(_ids(c, data, key, noun, _LEG_FIELDS)[1])
    if ftype == "convoy":
        synthesis = c.typed(data, (), "synthesis", dict, default={})
        for dep in c.typed(synthesis, ("synthesis",), "depends_on", "strings", default=[]):
            if dep not in legs:
                c.error(("synthesis", "depends_on"), f"names unknown leg `{dep}`")
    return Formula(name, c.path, ftype or "", description, version, tuple(variables),
                   tuple(steps) if ftype == "workflow" else (), tuple(legs))


def _vars(c: _Checker, data: dict) -> list[Var]:
    out = []
    for name, spec in c.typed(data, (), "vars", dict, default={}).items():
        key = ("vars", name)
        if not isinstance(spec, dict):  # gt's shorthand: `[vars] name = "default"`
            if _scalar(spec) is None:
                c.error(key, f"must be a default value or a table, got {_describe(spec)}")
            else:
                out.append(Var(name, default=_scalar(spec)))
            continue
        vtype = c.typed(spec, key, "type", str, default="string")
        if vtype not in VAR_TYPES:
            c.error(key + ("type",), f"must be one of {', '.join(VAR_TYPES)}, got {vtype!r}")
            vtype = "string"
        default = spec.get("default")
        if default is not None and _scalar(default) is None:
            c.error(key + ("default",), f"must be a string, number or boolean, "
                                        f"got {_describe(default)}")
        if (pattern := c.typed(spec, key, "pattern", str)) is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                c.error(key + ("pattern",), f"is not a valid regular expression: {exc}")
        var = Var(name, c.typed(spec, key, "description", str, default=""),
                  None if default is None else _scalar(default),
                  c.typed(spec, key, "required", bool, default=False), vtype,
                  tuple(c.typed(spec, key, "enum", "strings", default=[])))
        if var.default is not None:
            try:
                _coerce(var, var.default)
            except ValueError as exc:
                c.error(key + ("default",), str(exc))
        out.append(var)
    return out


def _steps(c: _Checker, data: dict, key: str, noun: str) -> list[Step]:
    items, index = _ids(c, data, key, noun, _STEP_FIELDS)
    steps = []
    for sid, i in index.items():
        item = items[i]
        title = c.typed(item, (key, i), "title", str, required=True)
        needs = [n for f in ("needs", "depends_on") if _is(item.get(f, []), "strings")
                 for n in item.get(f, [])]
        steps.append(Step(sid, title or "", item.get("description", ""),
                          tuple(dict.fromkeys(needs)), item.get("finetune", {}),
                          item.get("acceptance", "")))
    for step in steps:
        for need in step.needs:
            if need not in index:
                declared = items[index[step.id]].get("needs", [])  # any type: a wrong one is reported apart
                field = "needs" if _is(declared, "strings") and need in declared else "depends_on"
                c.error((key, index[step.id], field),
                        f"{noun} `{step.id}` needs unknown {noun} `{need}`")
    if cycle := _find_cycle({s.id: [n for n in s.needs if n in index] for s in steps}):
        c.error((key, index[cycle[0]], "needs"),
                f"cycle detected involving {noun} `{cycle[0]}`: {' -> '.join(cycle)}")
    return steps


def _ids(c: _Checker, data: dict, key: str, noun: str, fields) -> tuple[list, dict[str, int]]:
    """The `[[key]]` tables and their unique ids (id -> index), checking field types."""
    items = c.typed(data, (), key, "tables", default=[])
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        sid = c.typed(item, (key, i), "id", str, required=True)
        for field, kind in fields:
            c.typed(item, (key, i), field, kind)
        if sid in index:
            c.error((key, i, "id"), f"duplicate {noun} id `{sid}` (first at `{key}[{index[sid]}]`)")
        elif sid:
            index[sid] = i
    return items, index


def _find_cycle(needs: dict[str, list[str]]) -> list[str] | None:
    """A cycle in `needs` as [a, b, a] (a needs b, b needs a), or None."""
    try:
        graphlib.TopologicalSorter(needs).prepare()
    except graphlib.CycleError as exc:
        return exc.args[1][::-1]  # graphlib lists predecessors first; we follow `needs`
    return None


class _Checker:
    """Collects every problem with the line of the key it names, for `formulas check`."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = _key_lines(text) if path.name.endswith(".toml") else {}
        self.errors: list[FormulaError] = []

    def error(self, key: tuple, problem: str) -> None:
        line = next((self.lines[key[:n]] for n in range(len(key), 0, -1)
                     if key[:n] in self.lines), None)
        self.errors.append(FormulaError(self.path, line, _dotted(key) or None, problem))

    def typed(self, table: dict, at: tuple, key: str, kind, *, required=False, default=None):
        """`table[key]` when present with the right type; else record why and give `default`."""
        value = table.get(key)
        if value is None or (required and value == ""):
            if required:
                state = "missing" if value is None else "empty"
                self.error(at + (key,), f"is required but {state}")
            return default
        if not _is(value, kind):
            self.error(at + (key,), f"must be {_KIND_NAMES[kind]}, got {_describe(value)}")
            return default
        return value


def _key_lines(text: str) -> dict[tuple, int]:
    """Lines of key paths like ("steps", 2, "needs"), found by scanning the raw TOML; it skips
    multi-line strings and ignores inline tables, which is close enough to point at."""
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}  # array-of-tables path -> index of its latest entry
    table: tuple = ()
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        if fence:
            fence = None if line.count(fence) % 2 else fence
            continue
        if header := _HEADER.match(line):
            parts = _split_key(header[2])
            if header[1] == "[[":
                array = _resolve(parts[:-1], counts) + parts[-1:]
                counts[array] = counts.get(array, -1) + 1
                table = array + (counts[array],)
            else:
                table = _resolve(parts, counts)
            lines.setdefault(table, number)
        elif key := _KEY.match(line):
            lines.setdefault(table + _split_key(key[1]), number)
        fence = next((q for q in ('"""', "'''") if line.count(q) % 2), None)
    return lines


def _resolve(parts: tuple, counts: dict[tuple, int]) -> tuple:
    """("steps", "finetune") -> ("steps", 3, "finetune") while inside the fourth `[[steps]]`."""
    out: tuple = ()
    for part in parts:
        out += (part,) + ((counts[out + (part,)],) if out + (part,) in counts else ())
    return out


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _dotted(key: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in key).lstrip(".")


def _is(value: object, kind) -> bool:
    if kind in ("strings", "tables"):
        item = str if kind == "strings" else dict
        return isinstance(value, list) and all(isinstance(v, item) for v in value)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _lone_surrogate(data: object) -> bool:
    """Whether any string in `data`, keys too, holds a lone surrogate; a stack, not recursion: any depth."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += [*value, *value.values()]
        elif isinstance(value, list):
            stack += value
        elif isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _describe(value: object) -> str:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{_TOML_NAMES.get(type(value), type(value).__name__)} {shown}"


def _scalar(value: object) -> str | None:
    """A TOML scalar as the string `--var` would give; None for tables, arrays and dates."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (str, int, float)) else None


def _text(value: object) -> str:
    return str(value) if (scalar := _scalar(value)) is None else scalar


def _coerce(var: Var, raw: str) -> object:
    """`raw` as the var's type; ValueError with a one-line reason naming the var."""
    got = shown(repr(raw))
    if "\x00" in raw:  # no argument of `gt`/`bd` and no path can carry one
        raise ValueError(f"`{var.name}` holds a NUL byte, got {got}")
    if len(raw) > MAX_VAR_CHARS:
        raise ValueError(f"`{var.name}` is {len(raw):,} characters long; a var holds a path, a name or a "
                         f"short list, at most {MAX_VAR_CHARS:,}, got {got}")
    if var.enum and raw not in var.enum:
        raise ValueError(f"`{var.name}` must be one of {', '.join(var.enum)}, got {got}")
    try:
        if var.type == "bool":
            return _BOOLS[raw.strip().lower()]
        return {"int": int, "float": float}.get(var.type, str)(raw)
    except (ValueError, KeyError):
        raise ValueError(f"`{var.name}` must be {_ARTICLES[var.type]}, got {got}") from None
