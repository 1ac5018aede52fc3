"""Formula loading: real Gas Town formulas load; each mistake gives one located line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gt_finetune.errors import InputError
from gt_finetune.formula import (
    FormulaError, Formula, Step, check_actions, check_formula, find_formula, list_formulas,
    load_formula,
)

SHARED = Path(os.environ.get("GT_FINETUNE_SHARED")
              or Path(__file__).resolve().parents[2] / "shared")
REAL = sorted(SHARED.glob("fixtures/real/*/.beads/formulas/*.formula.toml"))


def write(tmp_path: Path, text: str, name: str = "bad.formula.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- real formulas from a town ---------------------------------------------------------------

def test_real_formulas_are_present(shared):
    assert len(REAL) >= 6, f"expected at least 6 real formulas under {SHARED}"


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_formula_loads(path):
    formula = load_formula(path)
    assert formula.name == path.name.removesuffix(".formula.toml")
    assert check_formula(path) == []


def test_real_formulas_read_as_gt_reads_them(shared):
    by_name = {p.name.removesuffix(".formula.toml"): p for p in REAL}
    polecat = load_formula(by_name["mol-polecat-work"])
    assert polecat.type == "workflow"  # inferred from `[[steps]]`
    assert polecat.version == 8
    assert [s.id for s in polecat.ordered_steps()][:3] == ["load-context", "branch-setup",
                                                           "implement"]
    assert next(v for v in polecat.vars if v.name == "issue").required
    review = load_formula(by_name["code-review"])  # has `[presets]`, which gt ignores
    assert review.type == "convoy" and "correctness" in review.legs and review.steps == ()
    assert load_formula(by_name["design"]).legs[0] == "api"


# --- one located line per mistake ------------------------------------------------------------

TWO_STEPS = """formula = "demo"
[[steps]]
id = "a"
title = "A"
needs = {a_needs}
[[steps]]
id = "{b_id}"
title = "B"
needs = {b_needs}
"""

MALFORMED = {
    "duplicate step id": (
        TWO_STEPS.format(a_needs="[]", b_id="a", b_needs="[]"),
        "{p}:7: `steps[1].id`: duplicate step id `a` (first at `steps[0]`)"),
    "cycle": (
        TWO_STEPS.format(a_needs='["b"]', b_id="b", b_needs='["a"]'),
        "{p}:5: `steps[0].needs`: cycle detected involving step `a`: a -> b -> a"),
    "unknown needs": (
        TWO_STEPS.format(a_needs="[]", b_id="b", b_needs='["zzz"]'),
        "{p}:9: `steps[1].needs`: step `b` needs unknown step `zzz`"),
    "wrong type for needs": (
        TWO_STEPS.format(a_needs="[]", b_id="b", b_needs='"a"'),
        "{p}:9: `steps[1].needs`: must be an array of strings, got string 'a'"),
    "bad TOML": (
        'formula = "demo"\n[[steps]]\nid = \ntitle = "A"\n',
        "{p}:3: invalid TOML: Invalid value (at line 3, column 6)"),
    "missing formula": (
        'description = "no name"\n[[steps]]\nid = "a"\ntitle = "A"\n',
        "{p}: `formula`: is required but missing"),
    "missing step title": (
        'formula = "demo"\n[[steps]]\nid = "a"\n',
        "{p}:2: `steps[0].title`: is required but missing"),
    "bad type": (
        'formula = "demo"\ntype = "pipeline"\n[[steps]]\nid = "a"\ntitle = "A"\n',
        "{p}:2: `type`: must be one of workflow, convoy, expansion, aspect, got 'pipeline'"),
    "nothing to infer type from": (
        'formula = "demo"\n',
        "{p}: `type`: missing, and there are no `steps`, `legs`, `template` or `aspects`"),
    "version not an int": (
        'formula = "demo"\nversion = "2"\n[[steps]]\nid = "a"\ntitle = "A"\n',
        "{p}:2: `version`: must be an integer, got string '2'"),
    "bad var default": (
        'formula = "demo"\n[[steps]]\nid = "a"\ntitle = "A"\n'
        '[vars.max_steps]\ntype = "int"\ndefault = "lots"\n',
        "{p}:7: `vars.max_steps.default`: `max_steps` must be an int, got 'lots'"),
    "bool where a string belongs": (
        'formula = "demo"\n[[steps]]\nid = "a"\ntitle = "A"\ninteractive = "yes"\n',
        "{p}:5: `steps[0].interactive`: must be a boolean, got string 'yes'"),
    "convoy without legs": (
        'formula = "demo"\ntype = "convoy"\n',
        "{p}: `legs`: a formula of type `convoy` requires at least one `[[legs]]` table"),
    "synthesis on unknown leg": (
        'formula = "demo"\n[[legs]]\nid = "x"\n[synthesis]\ndepends_on = ["x", "y"]\n',
        "{p}:5: `synthesis.depends_on`: names unknown leg `y`"),
    "duplicate leg": (
        'formula = "demo"\n[[legs]]\nid = "x"\n[[legs]]\nid = "x"\n',
        "{p}:5: `legs[1].id`: duplicate leg id `x` (first at `legs[0]`)"),
}


@pytest.mark.parametrize("text,expected", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_formula_gives_one_located_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(FormulaError) as info:
        load_formula(path)
    message = str(info.value)
    assert expected.format(p=path) in message
    assert "\n" not in message
    assert isinstance(info.value, InputError) and info.value.path == path


def test_bad_json_formula_is_located(tmp_path):
    path = write(tmp_path, '{"formula": "demo",\n "steps": [}\n', "bad.formula.json")
    with pytest.raises(FormulaError, match=r"bad\.formula\.json:2: invalid JSON: "):
        load_formula(path)


def test_unreadable_formula(tmp_path):
    with pytest.raises(FormulaError, match="gone.formula.toml: cannot read formula file: No such"):
        load_formula(tmp_path / "gone.formula.toml")


def test_check_formula_reports_every_error_at_once(tmp_path):
    path = write(tmp_path, """formula = "demo"
version = "one"
[vars.lr]
type = "decimal"
[[steps]]
id = "a"
title = "A"
[[steps]]
id = "a"
title = "again"
[[steps]]
id = "c"
title = "C"
needs = ["missing"]
""")
    errors = check_formula(path)
    assert [str(e) for e in errors] == [
        f"{path}:2: `version`: must be an integer, got string 'one'",
        f"{path}:4: `vars.lr.type`: must be one of string, int, bool, float, got 'decimal'",
        f"{path}:9: `steps[1].id`: duplicate step id `a` (first at `steps[0]`)",
        f"{path}:14: `steps[2].needs`: step `c` needs unknown step `missing`",
    ]
    with pytest.raises(FormulaError) as info:
        load_formula(path)
    assert str(info.value) == str(errors[0])
    assert info.value.hint == (f"3 more problem(s); list them all with "
                               f"`gt-finetune formulas check {path}`")


def test_bd_keys_and_unknown_tables_are_accepted(tmp_path):
    path = write(tmp_path, """formula = "bd-style"
phase = "vapor"
[squash]
trigger = "on_complete"
[vars.env]
enum = ["dev", "prod"]
pattern = "^[a-z]+$"
default = "dev"
[[steps]]
id = "a"
title = "A {{env}}"
labels = ["x"]
condition = "{{env}} == dev"
[steps.gate]
type = "human"
[[steps]]
id = "b"
title = "B"
depends_on = ["a"]
priority = 2
[steps.finetune]
action = "train"
""")
    formula = load_formula(path)
    assert formula.step("b").needs == ("a",)
    assert formula.step("b").finetune == {"action": "train"}
    assert formula.step("a").finetune == {}


def test_json_formula_loads(tmp_path):
    path = write(tmp_path, '{"formula": "j", "steps": [{"id": "a", "title": "A"}]}',
                 "j.formula.json")
    assert load_formula(path).steps[0].id == "a"


# --- vars ------------------------------------------------------------------------------------

VARS = """formula = "vars"
[vars]
note = "hi"
[vars.max_steps]
type = "int"
default = "100"
[vars.lr]
type = "float"
default = 2e-4
[vars.qlora]
type = "bool"
default = false
[vars.mode]
enum = ["lora", "full"]
default = "lora"
[vars.feature]
description = "what to build"
required = true
[vars.optional]
description = "no default"
[[steps]]
id = "a"
title = "Build {{feature}}"
"""


@pytest.fixture
def with_vars(tmp_path) -> Formula:
    return load_formula(write(tmp_path, VARS, "vars.formula.toml"))


def test_resolve_vars_coerces_defaults_and_overrides(with_vars):
    assert with_vars.resolve_vars({"feature": "x"}) == {
        "note": "hi", "max_steps": 100, "lr": 2e-4, "qlora": False, "mode": "lora",
        "feature": "x"}
    got = with_vars.resolve_vars({"feature": "x", "max_steps": "7", "qlora": "yes",
                                  "lr": "0.5", "mode": "full"})
    assert (got["max_steps"], got["qlora"], got["lr"], got["mode"]) == (7, True, 0.5, "full")


@pytest.mark.parametrize("overrides,expected", [
    ({"feature": "x", "max_steps": "abc"}, "`max_steps` must be an int, got 'abc' (from --var)"),
    ({"feature": "x", "qlora": "maybe"}, "`qlora` must be a bool, got 'maybe' (from --var)"),
    ({"feature": "x", "lr": "fast"}, "`lr` must be a float, got 'fast' (from --var)"),
    ({"feature": "x", "mode": "qlora"}, "`mode` must be one of lora, full, got 'qlora'"),
    ({"feature": "x", "nope": "1"},
     "unknown var `nope` (from --var); formula `vars` has vars: `note`, `max_steps`, `lr`"),
    ({}, "formula `vars` needs var `feature` (what to build)"),
])
def test_resolve_vars_errors(with_vars, overrides, expected):
    with pytest.raises(InputError) as info:
        with_vars.resolve_vars(overrides)
    assert expected in str(info.value)


def test_missing_required_var_hints_the_flag(with_vars):
    with pytest.raises(InputError) as info:
        with_vars.resolve_vars({})
    assert info.value.hint == "pass `--var feature=<value>`"


def test_render_replaces_known_placeholders_recursively(with_vars):
    variables = with_vars.resolve_vars({"feature": "login"})
    table = {"title": "Build {{feature}} in {{max_steps}} steps", "steps": "{{max_steps}}",
             "args": ["{{mode}}", "{{unknown}}", 3], "nested": {"q": "{{qlora}}!"}}
    assert with_vars.render(table, variables) == {
        "title": "Build login in 100 steps", "steps": 100,
        "args": ["lora", "{{unknown}}", 3], "nested": {"q": "false!"}}


# --- steps -----------------------------------------------------------------------------------

def test_ordered_steps_follow_needs_then_file_order(tmp_path):
    formula = load_formula(write(tmp_path, """formula = "order"
[[steps]]
id = "c"
title = "C"
needs = ["b"]
[[steps]]
id = "a"
title = "A"
[[steps]]
id = "b"
title = "B"
depends_on = ["a"]
[[steps]]
id = "d"
title = "D"
"""))
    assert [s.id for s in formula.ordered_steps()] == ["a", "b", "c", "d"]


def test_unknown_step_lists_known_ids(with_vars):
    with pytest.raises(InputError, match=r"formula `vars` has no step `zz`; its steps: `a`"):
        with_vars.step("zz")
    assert isinstance(with_vars.step("a"), Step)


def test_check_actions_names_the_key(tmp_path):
    path = write(tmp_path, """formula = "ft"
[[steps]]
id = "prep"
title = "Prep"
[[steps]]
id = "train"
title = "Train"
[steps.finetune]
action = "trian"
[[steps]]
id = "eval"
title = "Eval"
[steps.finetune]
action = 3
[[steps]]
id = "export"
title = "Export"
[steps.finetune]
action = "export"
""")
    errors = check_actions(load_formula(path), {"train", "export"})
    assert [str(e) for e in errors] == [
        f"{path}:2: `steps[0].finetune.action`: step `prep` has no action; add a "
        f"`[steps.finetune]` table with `action` set to one of `export`, `train`",
        f"{path}:9: `steps[1].finetune.action`: unknown action 'trian' in step `train`; "
        f"known: `export`, `train`",
        f"{path}:14: `steps[2].finetune.action`: must be a string, got integer 3",
    ]
    good = write(tmp_path, 'formula = "ok"\n[[steps]]\nid = "t"\ntitle = "T"\n'
                           '[steps.finetune]\naction = "train"\n', "ok.formula.toml")
    assert check_actions(load_formula(good), {"train"}) == []
    convoy = write(tmp_path, 'formula = "c"\n[[legs]]\nid = "x"\n', "c.formula.toml")
    assert check_actions(load_formula(convoy), {"train"}) == []  # only workflows run steps


# --- search path -----------------------------------------------------------------------------

def test_find_formula_first_directory_wins(tmp_path):
    project, town = tmp_path / "project", tmp_path / "town"
    for folder in (project, town):
        folder.mkdir()
        write(folder, 'formula = "x"\n', "x.formula.toml")
    write(town, '{"formula": "y"}', "y.formula.json")
    write(town, 'formula = "y"\n', "y.formula.toml")
    assert find_formula("x", [project, town]) == project / "x.formula.toml"
    assert find_formula("y", [project, town]) == town / "y.formula.toml"  # toml before json
    assert list_formulas([project, town]) == [("x", project / "x.formula.toml"),
                                              ("y", town / "y.formula.toml")]
    direct = town / "x.formula.toml"
    assert find_formula(str(direct), [project]) == direct


def test_find_formula_missing_lists_searched_dirs(tmp_path):
    with pytest.raises(InputError) as info:
        find_formula("nope", [tmp_path / "a", tmp_path / "b"])
    searched = f"{tmp_path / 'a'}, {tmp_path / 'b'}"
    assert str(info.value) == f"formula `nope` not found; searched {searched}"
    assert "`gt-finetune formulas list`" in info.value.hint
