"""Fuzzing the formula loader: any file gives a Formula or a FormulaError naming the file, never a crash.

Formulas come from towns, so the loader reads what other people wrote: random text and bytes,
TOML and JSON of the right shape with wrong types, missing keys, cyclic `needs`, unknown actions,
huge numbers and unicode.
"""
import json
import math
import sys
import tomllib
from pathlib import Path

from hypothesis import assume, given, strategies as st

from gt_finetune.actions import ACTIONS
from gt_finetune.errors import GTFinetuneError, InputError
from gt_finetune.formula import FormulaError, check_actions, check_formula, load_formula

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402

FUZZ = fuzz(120)
VALID = """formula = "tiny"
type = "workflow"
version = 1

[vars.steps]
type = "int"
default = "3"

[[steps]]
id = "corpus"
title = "Harvest"
[steps.finetune]
action = "corpus"

[[steps]]
id = "dataset"
title = "Build"
needs = ["corpus"]
[steps.finetune]
action = "dataset"
max_steps = "{{steps}}"
"""

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=10**40),
                    st.floats(allow_nan=False), st.text(max_size=20))
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
ids = st.sampled_from(["a", "b", "c", "corpus", "ünï", ""])


def maybe(right):
    """The right type most of the time, anything at all otherwise."""
    return st.one_of(right, right, right, anything)


steps = st.lists(st.fixed_dictionaries({"id": maybe(ids)}, optional={
    "title": maybe(st.text(max_size=12)), "description": maybe(st.text(max_size=12)),
    "needs": maybe(st.lists(ids, max_size=3)), "depends_on": maybe(st.lists(ids, max_size=2)),
    "priority": maybe(st.integers()), "parallel": maybe(st.booleans()),
    "finetune": maybe(st.fixed_dictionaries({}, optional={
        "action": maybe(st.sampled_from([*ACTIONS, "nope", "CORPUS"])), "source": maybe(st.text(max_size=8))})),
}), max_size=4)
var_specs = st.one_of(scalars, st.fixed_dictionaries({}, optional={
    "type": maybe(st.sampled_from(["string", "int", "bool", "float", "list"])), "default": maybe(st.text(max_size=6)),
    "required": maybe(st.booleans()), "enum": maybe(st.lists(st.text(max_size=4), max_size=3)),
    "pattern": maybe(st.sampled_from(["^a+$", "(", "[", ".*"])), "description": maybe(st.text(max_size=8))}))
formulas = st.fixed_dictionaries({}, optional={
    "formula": maybe(st.text(min_size=1, max_size=12)), "description": maybe(st.text(max_size=20)),
    "type": maybe(st.sampled_from(["workflow", "convoy", "expansion", "aspect", "molecule"])),
    "version": maybe(st.integers()), "pour": maybe(st.booleans()),
    "vars": maybe(st.dictionaries(ids, var_specs, max_size=3)),
    "steps": maybe(steps), "legs": maybe(steps), "template": maybe(steps),
    "synthesis": maybe(st.fixed_dictionaries({}, optional={"depends_on": maybe(st.lists(ids, max_size=2))})),
})


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + "}"


def to_toml(doc: dict) -> str:
    """TOML the way people write formulas: scalars first, `[table]`s, then `[[steps]]` with `[steps.finetune]`."""
    lines, tables = [], []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        elif isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{toml_value(key)} = {toml_value(value)}")
    for key, value in tables:
        for item in value if isinstance(value, list) else [value]:
            name = toml_value(key)
            lines.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            subtables = {k: v for k, v in item.items() if isinstance(v, dict) and v}
            lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in item.items()
                      if v is not None and k not in subtables]
            for sub, table in subtables.items():
                lines.append(f"[{name}.{toml_value(sub)}]")
                lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def assert_loads_or_explains(path):
    """The contract: a Formula, or FormulaErrors that name the file and print as UTF-8."""
    problems = check_formula(path)
    assert all(isinstance(p, FormulaError) and str(path) in p.message for p in problems)
    for p in problems:
        p.message.encode("utf-8")
    try:
        formula = load_formula(path)
    except GTFinetuneError as exc:
        assert isinstance(exc, InputError) and problems
        assert str(path) in exc.message
        exc.message.encode("utf-8")
        return None
    assert not problems
    assert len(formula.ordered_steps()) == len(formula.steps)  # loaded means no cycle, no unknown `needs`
    assert all(str(path) in e.message for e in check_actions(formula, ACTIONS))
    try:
        formula.resolve_vars({})
    except InputError as exc:
        exc.message.encode("utf-8")
    return formula


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_never_crashes_the_loader(tmp_path, text):
    path = tmp_path / "random.formula.toml"
    path.write_text(text, encoding="utf-8")
    assert_loads_or_explains(path)


@FUZZ
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".formula.toml", ".formula.json"]))
def test_random_bytes_never_crash_the_loader(tmp_path, data, suffix):
    path = tmp_path / f"bytes{suffix}"
    path.write_bytes(data)
    assert_loads_or_explains(path)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(VALID)), insert=st.text(max_size=6))
def test_a_valid_formula_cut_or_spliced_never_crashes_the_loader(tmp_path, cut, insert):
    path = tmp_path / "spliced.formula.toml"
    path.write_text(VALID[:cut] + insert + VALID[cut + len(insert):], encoding="utf-8")
    assert_loads_or_explains(path)


@FUZZ
@given(doc=formulas)
def test_structured_but_wrong_toml_gives_formula_errors(tmp_path, doc):
    text = to_toml(doc)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assume(False)  # the generator wrote something that is not TOML: not what this test is about
    path = tmp_path / "shaped.formula.toml"
    path.write_text(text, encoding="utf-8")
    assert_loads_or_explains(path)


@FUZZ
@given(doc=formulas)
def test_structured_but_wrong_json_gives_formula_errors(tmp_path, doc):
    path = tmp_path / "shaped.formula.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert_loads_or_explains(path)


@FUZZ
@given(order=st.permutations(["a", "b", "c", "d"]), extra=st.lists(st.tuples(st.sampled_from("abcd"),
                                                                               st.sampled_from("abcd")), max_size=4))
def test_cyclic_needs_are_an_error_and_acyclic_ones_load_in_order(tmp_path, order, extra):
    needs = {s: set() for s in order}
    for a, b in [*zip(order[1:], order), *extra]:  # a chain, plus random edges that may close a cycle
        needs[a].add(b)
    path = tmp_path / "graph.formula.toml"
    path.write_text('formula = "graph"\n' + "".join(
        f'[[steps]]\nid = "{s}"\ntitle = "{s}"\nneeds = {json.dumps(sorted(needs[s]))}\n'
        f'[steps.finetune]\naction = "corpus"\n' for s in order), encoding="utf-8")
    formula = assert_loads_or_explains(path)
    cyclic = any(s in needs[s] for s in order) or _has_cycle(needs)
    assert (formula is None) == cyclic
    if formula is not None:
        done = set()
        for step in formula.ordered_steps():
            assert set(step.needs) <= done
            done.add(step.id)


def _has_cycle(needs: dict[str, set[str]]) -> bool:
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        if state.get(node) == 1:
            return True
        if state.get(node) == 2:
            return False
        state[node] = 1
        found = any(visit(n) for n in needs[node])
        state[node] = 2
        return found
    return any(visit(n) for n in needs)


# -- regressions: the minimal failing examples fuzzing found --------------------------------------

def test_a_number_over_4300_digits_is_a_formula_error(tmp_path):
    for name, text in (("long.formula.toml", 'formula = "x"\nversion = ' + "1" * 5000 + "\n"),
                       ("long.formula.json", '{"formula": "x", "version": ' + "1" * 5000 + "}")):
        path = tmp_path / name
        path.write_text(text)
        problems = check_formula(path)
        assert [p.message for p in problems] == [f"{path}: cannot parse: a number has over 4300 digits"]


def test_nesting_past_the_stack_is_a_formula_error(tmp_path):
    for name, text in (("deep.formula.toml", "a = " + "[" * 100_000), ("deep.formula.json", "[" * 100_000)):
        path = tmp_path / name
        path.write_text(text)
        assert [p.message for p in check_formula(path)] == [f"{path}: cannot parse: nested too deeply"]


def test_a_lone_surrogate_in_a_json_formula_is_a_formula_error_that_prints(tmp_path):
    path = tmp_path / "surrogate.formula.json"
    path.write_text('{"formula": "x", "steps": [{"id": "a", "title": "t", "needs": ["\\ud800"]}]}')
    (problem,) = check_formula(path)
    assert "lone surrogate" in problem.message
    problem.message.encode("utf-8")


def test_needs_of_the_wrong_type_beside_an_unknown_depends_on_is_two_errors(tmp_path):
    path = tmp_path / "needs.formula.toml"
    path.write_text('formula = "x"\n[[steps]]\nid = "a"\ntitle = "A"\nneeds = false\ndepends_on = ["b"]\n')
    assert [p.message.split(": ", 1)[1] for p in check_formula(path)] == [
        "`steps[0].needs`: must be an array of strings, got boolean False",
        "`steps[0].depends_on`: step `a` needs unknown step `b`"]
