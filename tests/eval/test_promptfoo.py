"""promptfoo suites run unchanged against our model: loading, templating, every assertion type,
transforms and sandboxed JavaScript (under each engine present), and people-readable errors."""
import filecmp
import shutil
import time
from pathlib import Path

import pytest

from gt_finetune.errors import InputError
from gt_finetune.eval import jsengine, promptfoo
from gt_finetune.eval.promptfoo import PromptfooCase, check_case, load_suite, run_suite

PATROL = Path(__file__).resolve().parent / "suites" / "patrol"
PACKAGED = Path(promptfoo.__file__).resolve().parents[1] / "data" / "suites" / "patrol"


def usable(name: str) -> bool:
    return (name == "quickjs" and jsengine._quickjs() is not None) or (name == "node" and bool(shutil.which("node")))


@pytest.fixture(params=["quickjs", "node"])
def engine(request, monkeypatch):
    """Run the test under one JavaScript engine; skipped where that engine is not installed."""
    if not usable(request.param):
        pytest.skip(f"{request.param} is not installed (`pip install quickjs` / Node.js on PATH)")
    monkeypatch.setattr(jsengine, "ENGINES", (request.param,))
    return request.param


def case(*assertions, transform=None, vars=None, threshold=None, base_dir=None) -> PromptfooCase:
    return PromptfooCase(id="t.yaml:1#prompt0", description="t", vars=vars or {},
                         messages=[{"role": "user", "content": "q"}], assertions=list(assertions),
                         transform=transform, threshold=threshold, base_dir=base_dir)


def grade(output, *assertions, **kw) -> list[bool]:
    return [a.passed for a in check_case(case(*assertions, **kw), output).assertions]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "promptfooconfig.yaml"


# --- the example suite, unchanged, with scripted answers ------------------------------------------

ANSWERS = {  # case id -> (scripted answer, what each assertion should say, whether the case passes)
    # defaultTest's three asserts come first: is-json, action allowed, reason given.
    "tests/deacon.yaml:3#prompt0": (
        '{"action": "file-warrant", "reason": "Sable\'s session is gone but the bead says running."}',
        [True, True, True, True, True], True),
    "tests/deacon.yaml:22#prompt0": (  # an action the step does not allow
        '{"action": "kill-sessions", "reason": "Four died at once."}',
        [True, False, True, False, True], False),
    "tests/refinery.yaml:3#prompt0": (  # fenced JSON: the transform unwraps it
        '```json\n{"action": "merge", "reason": "Clean rebase; 212 tests pass."}\n```',
        [True, True, True, True, True], True),
    "tests/refinery.yaml:20#prompt0": (
        '{"action": "return-to-polecat", "reason": "The rebase hit a conflict in src/ledger.py."}',
        [True, True, True, True, True], True),
    "tests/refinery.yaml:42#prompt0": (  # not JSON at all: every JSON.parse throws
        "I would hold the merge until main is green again.",
        [False, False, False, False, True], False),
    "tests/witness.yaml:3#prompt0": (  # right action, but the polecat is not named
        '{"action": "nudge", "reason": "Quiet for fifty minutes on a long bead."}',
        [True, True, True, True, False], False),
    "tests/witness.yaml:20#prompt0": (
        '{"action": "no-op", "reason": "Flint committed two minutes ago."}',
        [True, True, True, True, True], True),
    "tests/witness.yaml:37#prompt0": (  # scored 0 by the javascript assert: not > 0
        '{"action": "restart-session", "reason": "Moss keeps dying, try once more."}',
        [True, True, True, False, True], False),
}


def test_example_suite_runs_unchanged_with_scripted_answers(engine):
    cases = load_suite(PATROL / "promptfooconfig.yaml")
    assert cases.problems == []
    assert sorted(c.id for c in cases) == sorted(ANSWERS)
    asked = []

    def generate(messages):
        asked.append(messages)
        return ANSWERS[cases[len(asked) - 1].id][0]

    results = run_suite(cases, generate)
    assert len(asked) == len(cases) and all(m[0]["role"] == "user" for m in asked)
    for result in results:
        _, expected, passed = ANSWERS[result.case.id]
        assert [a.passed for a in result.assertions] == expected, (result.case.id, result.assertions)
        assert result.passed is passed, result.case.id


def test_example_suite_renders_its_prompt_and_file_vars():
    by_id = {c.id: c for c in load_suite(PATROL)}
    quiet = by_id["tests/witness.yaml:3#prompt0"].messages[0]["content"]
    assert quiet.startswith("You are the witness of a Gas Town rig.")
    assert 'step "survey-workers"' in quiet and "Also known at this point: Ember's bead" in quiet
    busy = by_id["tests/witness.yaml:20#prompt0"].messages[0]["content"]
    assert "Also known" not in busy and "{%" not in busy and "{{" not in busy
    mass = by_id["tests/deacon.yaml:22#prompt0"]
    assert mass.vars["shell_output"] == (PATROL / "outputs" / "mass-death.txt").read_text()
    assert "Sable    dead      running" in mass.messages[0]["content"]
    assert mass.transform.startswith("output.trim()")
    assert [a["type"] for a in mass.assertions[:3]] == ["is-json", "javascript", "javascript"]


def test_packaged_suite_is_the_example_suite():
    left, right = sorted(p.relative_to(PATROL) for p in PATROL.rglob("*") if p.is_file()), \
        sorted(p.relative_to(PACKAGED) for p in PACKAGED.rglob("*") if p.is_file())
    assert left == right
    assert all(filecmp.cmp(PATROL / p, PACKAGED / p, shallow=False) for p in left)


# --- assertion types ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, value, output, holds", [
    ("equals", "yes", "yes", True),
    ("equals", "yes", "yes ", False),
    ("equals", {"action": "no-op"}, '{"action": "no-op"}', True),
    ("equals", {"action": "no-op"}, "no-op", False),
    ("equals", 3, "3", True),
    ("contains", "Toast", "file a warrant for Toast", True),
    ("contains", "toast", "file a warrant for Toast", False),
    ("icontains", "toast", "file a warrant for Toast", True),
    ("contains-any", ["merge", "hold"], "please hold", True),
    ("contains-any", "merge, hold", "nothing", False),
    ("icontains-any", ["MERGE"], "merge now", True),
    ("contains-all", ["a", "b"], "a and b", True),
    ("contains-all", "conflict, ledger", "conflict in src/tally.py", False),
    ("icontains-all", ["CONFLICT", "Ledger"], "conflict in ledger", True),
    ("regex", r'"action"\s*:\s*"nudge"', '{"action" : "nudge"}', True),
    ("regex", r"^\d+$", "12a", False),
    ("starts-with", "{", '{"a": 1}', True),
    ("starts-with", "{", ' {"a": 1}', False),
    ("is-json", None, '{"a": [1, 2]}', True),
    ("is-json", None, "{'a': 1}", False),
    ("is-json", None, "NaN", False),
])
def test_assertion_types_and_their_not_variants(kind, value, output, holds):
    assertion = {"type": kind} if value is None else {"type": kind, "value": value}
    assert grade(output, assertion) == [holds]
    assert grade(output, {**assertion, "type": f"not-{kind}"}) == [not holds]


def test_javascript_and_not_javascript(engine):
    assert grade("abc", {"type": "javascript", "value": "output.length === 3"},
                 {"type": "not-javascript", "value": "output.length === 3"}) == [True, False]


def test_assertion_values_are_templates_over_the_vars():
    assert grade("warrant for Toast", {"type": "contains", "value": "{{ polecat }}"},
                 {"type": "contains-any", "value": ["{{polecat}}!", "for {{polecat}}"]},
                 vars={"polecat": "Toast"}) == [True, True]


def test_a_value_from_a_file(tmp_path):
    (tmp_path / "expected.txt").write_text("merge")
    assert grade("merge", {"type": "equals", "value": "file://expected.txt"}, base_dir=tmp_path) == [True]
    result = check_case(case({"type": "equals", "value": "file://missing.txt"}, base_dir=tmp_path), "merge")
    assert not result.passed and "missing.txt" in result.assertions[0].reason


def test_misused_assertions_fail_whatever_not_says():
    for assertion in ({"type": "not-contains"}, {"type": "not-regex", "value": "("},
                      {"type": "not-contains-any", "value": 3}):
        result = check_case(case(assertion), "text").assertions[0]
        assert not result.passed and result.reason


def test_model_graded_types_fail_with_a_reason():
    result = check_case(case({"type": "llm-rubric", "value": "is polite"}), "hello")
    assert not result.passed
    assert "`llm-rubric` is not supported" in result.assertions[0].reason
    assert "grader model" in result.assertions[0].reason


# --- javascript ------------------------------------------------------------------------------------

@pytest.mark.parametrize("code, threshold, passed", [
    ("output === 'ok'", None, True),                                   # one-line expression
    ("const n = output.length; n === 2", None, True),                  # declarations, last one returned
    ("const s = 'a;b'; s.length === 3", None, True),                   # `;` inside a string is no break
    ("const d = {a: 1};\nreturn d.a === 2;", None, False),             # several lines: a function body
    ("0.4", None, True),                                               # a number passes when > 0
    ("0", None, False),
    ("0.4", 0.5, False),                                               # ... or >= threshold
    ("0.5", 0.5, True),
    ("({pass: true, score: 0.2, reason: 'fine'})", None, True),        # a GradingResult
    ("({pass: false, reason: 'too short'})", None, False),
])
def test_javascript_results(engine, code, threshold, passed):
    assertion = {"type": "javascript", "value": code}
    if threshold is not None:
        assertion["threshold"] = threshold
    assert grade("ok", assertion) == [passed]


def test_javascript_sees_output_context_vars_and_config(engine):
    assertion = {"type": "javascript", "config": {"min": 2},
                 "value": "JSON.parse(context.vars.allowed).includes(output) && "
                          "context.config.min === 2 && context.prompt === 'q'"}
    assert grade("nudge", assertion, vars={"allowed": '["nudge", "no-op"]'}) == [True]


def test_object_reason_is_reported(engine):
    result = check_case(case({"type": "javascript", "value": "({pass: false, reason: 'chose ' + output})"}), "hold")
    assert result.assertions[0].reason == "chose hold"


def test_javascript_syntax_error_fails_that_assertion_only(engine):
    result = check_case(case({"type": "javascript", "value": "output.length >"},
                             {"type": "javascript", "value": "true"}), "x")
    assert [a.passed for a in result.assertions] == [False, True]
    assert "SyntaxError" in result.assertions[0].reason


def test_a_throwing_assertion_fails_even_when_negated(engine):
    result = check_case(case({"type": "not-javascript", "value": "JSON.parse(output).a"}), "not json")
    assert not result.passed and "SyntaxError" in result.assertions[0].reason


def test_javascript_must_return_something_gradable(engine):
    result = check_case(case({"type": "javascript", "value": "'a string'"}), "x")
    assert not result.passed and "must return a boolean, a number" in result.assertions[0].reason


def test_an_endless_loop_times_out_quickly_and_the_rest_still_runs(engine, monkeypatch):
    monkeypatch.setattr(promptfoo, "JS_TIMEOUT_S", 0.3)
    start = time.monotonic()
    result = check_case(case({"type": "javascript", "value": "while (true) {}\nreturn true"},
                             {"type": "javascript", "value": "try { for (;;) {} } catch (e) {}\nreturn true"},
                             {"type": "javascript", "value": "output === 'x'"}), "x")
    assert time.monotonic() - start < 5
    assert [a.passed for a in result.assertions] == [False, False, True]
    assert "timed out after 0.3 s" in result.assertions[0].reason


def test_the_sandbox_has_no_require_process_or_escape(engine):
    code = ("console.log('debugging', output);  // allowed, printed nowhere\n"
            "return typeof require === 'undefined' && typeof process === 'undefined' && "
            "this.constructor.constructor('return typeof process')() === 'undefined'")
    assert grade("x", {"type": "javascript", "value": code}) == [True]


def test_javascript_from_a_file(engine, tmp_path):
    (tmp_path / "check.js").write_text("module.exports = (output, context) => output === context.vars.want;\n"
                                       "module.exports.short = (output) => output.length < 3;\n")
    assert grade("ok", {"type": "javascript", "value": "file://check.js"},
                 {"type": "javascript", "value": "file://check.js:short"},
                 vars={"want": "ok"}, base_dir=tmp_path) == [True, True]


def test_without_any_engine_javascript_fails_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(jsengine, "ENGINES", ())
    result = check_case(case({"type": "javascript", "value": "true"}, {"type": "contains", "value": "x"}), "x")
    assert [a.passed for a in result.assertions] == [False, True]
    assert "pip install quickjs" in result.assertions[0].reason


# --- transforms ------------------------------------------------------------------------------------

def test_transform_parses_output_for_the_asserts(engine):
    result = check_case(case({"type": "javascript", "value": "output.action === 'hold'"},
                             {"type": "is-json"}, {"type": "contains", "value": '"action":"hold"'},
                             transform="JSON.parse(output)"), '{"action": "hold"}')
    assert [a.passed for a in result.assertions] == [True, True, True] and result.passed
    assert result.output == '{"action": "hold"}'


def test_multiline_transform_is_a_function_body(engine):
    body = "const t = output.trim();\nreturn t.toUpperCase();\n"
    assert grade("  hold ", {"type": "equals", "value": "HOLD"}, transform=body) == [True]


def test_a_failing_transform_fails_the_case_with_its_error(engine):
    result = check_case(case({"type": "contains", "value": "x"}, transform="JSON.parse(output)"), "not json")
    assert not result.passed
    assert [a.type for a in result.assertions] == ["transform"]
    assert "transform failed" in result.assertions[0].reason and "SyntaxError" in result.assertions[0].reason
    body_without_return = check_case(case({"type": "contains", "value": "x"}, transform="output\n"), "x")
    assert "transform returned undefined" in body_without_return.assertions[0].reason


def test_an_assertion_transform_applies_to_that_assertion_only(engine):
    assert grade("Hold", {"type": "equals", "value": "hold", "transform": "output.toLowerCase()"},
                 {"type": "equals", "value": "hold"}) == [True, False]


# --- scoring -------------------------------------------------------------------------------------------

def test_weight_zero_reports_but_never_fails():
    result = check_case(case({"type": "contains", "value": "x", "weight": 0}, {"type": "contains", "value": "y"}), "y")
    assert result.passed and "weight 0" in result.assertions[0].reason


def test_a_test_threshold_passes_on_the_weighted_mean():
    asserts = ({"type": "contains", "value": "a", "weight": 3}, {"type": "contains", "value": "b"})
    assert check_case(case(*asserts, threshold=0.75), "a").passed        # 3 / 4
    assert not check_case(case(*asserts, threshold=0.8), "a").passed


def test_cost_and_latency(monkeypatch):
    c = case({"type": "cost", "threshold": 0.1}, {"type": "latency", "threshold": 60_000})
    [result] = run_suite([c], lambda messages: "x")
    assert result.passed and "answered in" in result.assertions[1].reason
    unmeasured = check_case(c, "x")
    assert not unmeasured.passed and "no latency was measured" in unmeasured.assertions[1].reason


# --- loading ---------------------------------------------------------------------------------------

CONFIG = """\
prompts:
  - file://prompt.txt
providers: [openai:gpt-4o]
defaultTest:
  vars: {{tone: plain}}
  options:
    transform: output.trim()
  assert:
    - type: is-json
tests: {tests}
"""
TEST_FILE = """\
- description: first
  vars: {{who: {who}}}
  assert:
    - type: contains
      value: x

- vars: {{who: second}}
  options:
    transform: output
"""


def suite_dir(tmp_path: Path, tests: str, prompt: str = "Hi {{who}} ({{tone}})") -> Path:
    return write(tmp_path, {"promptfooconfig.yaml": CONFIG.format(tests=tests), "prompt.txt": prompt,
                            "cases/a.yaml": TEST_FILE.format(who="ann"), "cases/b.yml": TEST_FILE.format(who="bob")})


@pytest.mark.parametrize("tests", ["file://cases/", "file://cases/*.y*ml", "[file://cases/a.yaml, cases/b.yml]"])
def test_tests_as_folder_glob_or_list_of_files(tmp_path, tests):
    cases = load_suite(suite_dir(tmp_path, tests))
    assert [c.id for c in cases] == ["cases/a.yaml:1#prompt0", "cases/a.yaml:7#prompt0",
                                     "cases/b.yml:1#prompt0", "cases/b.yml:7#prompt0"]
    assert [c.messages[0]["content"] for c in cases] == ["Hi ann (plain)", "Hi second (plain)",
                                                         "Hi bob (plain)", "Hi second (plain)"]


def test_default_test_merges_into_each_test(tmp_path):
    first, second = load_suite(suite_dir(tmp_path, "file://cases/a.yaml"))
    assert first.description == "first" and second.description == "test at cases/a.yaml:7"
    assert [a["type"] for a in first.assertions] == ["is-json", "contains"]
    assert first.transform == "output.trim()" and second.transform == "output"  # the test's own wins
    assert first.vars == {"tone": "plain", "who": "ann"}


def test_inline_tests_every_prompt_with_every_test(tmp_path):
    config = write(tmp_path, {"promptfooconfig.yaml": """\
prompts:
  - file://prompts.txt
  - "Inline: {{ q }}"
tests:
  - vars: {q: one}
  - vars: {q: [two, three]}
""", "prompts.txt": "First {{q}}\n---\nSecond {{q}}\n"})
    cases = load_suite(config)
    assert [(c.id, c.messages[0]["content"]) for c in cases] == [
        ("promptfooconfig.yaml:5#prompt0", "First one"), ("promptfooconfig.yaml:5#prompt1", "Second one"),
        ("promptfooconfig.yaml:5#prompt2", "Inline: one"),
        ("promptfooconfig.yaml:6[0]#prompt0", "First two"), ("promptfooconfig.yaml:6[0]#prompt1", "Second two"),
        ("promptfooconfig.yaml:6[0]#prompt2", "Inline: two"),
        ("promptfooconfig.yaml:6[1]#prompt0", "First three"), ("promptfooconfig.yaml:6[1]#prompt1", "Second three"),
        ("promptfooconfig.yaml:6[1]#prompt2", "Inline: three")]


def test_json_chat_prompt_becomes_messages(tmp_path):
    config = write(tmp_path, {"promptfooconfig.yaml": "prompts: file://chat.json\ntests:\n  - vars: {q: why}\n",
                              "chat.json": '[{"role": "system", "content": "You patrol."},\n'
                                           ' {"role": "user", "content": "Say \\"{{ q }}\\""}]'})
    [only] = load_suite(config)
    assert only.messages == [{"role": "system", "content": "You patrol."}, {"role": "user", "content": 'Say "why"'}]


def test_nunjucks_if_blocks_and_undefined_vars(tmp_path):
    prompt = ("{% if context %}Context: {{context}}\n{% endif %}"
              "{% if branch is defined %}Branch: {{ branch }}\n{% endif %}"
              "Flag {{flag}}; missing [{{ nothing }}] [{{ nothing.deeper }}]")
    config = write(tmp_path, {"promptfooconfig.yaml": """\
prompts: [file://p.txt]
tests:
  - vars: {context: seen it, branch: main, flag: true}
  - vars: {context: "", flag: false}
""", "p.txt": prompt})
    first, second = (c.messages[0]["content"] for c in load_suite(config))
    assert first == "Context: seen it\nBranch: main\nFlag true; missing [] []"
    assert second == "Flag false; missing [] []"


def test_file_vars_load_text_relative_to_the_config(tmp_path):
    config = write(tmp_path, {"promptfooconfig.yaml": """\
prompts: ["Out: {{ shell_output }}"]
tests:
  - vars: {shell_output: file://out/ps.txt}
""", "out/ps.txt": "Toast dead\n"})
    [only] = load_suite(config)
    assert only.vars["shell_output"] == "Toast dead\n" and only.messages[0]["content"] == "Out: Toast dead\n"


def test_a_bad_test_is_skipped_and_reported_the_rest_kept(tmp_path):
    config = write(tmp_path, {"promptfooconfig.yaml": """\
prompts: ["{{ q }}"]
tests:
  - vars: {q: fine}
  - [not, a, test]
  - vars: {q: file://absent.txt}
  - vars: {q: ok}
    assert:
      - value: no type
""", "unused.txt": ""})
    cases = load_suite(config)
    assert [c.vars["q"] for c in cases] == ["fine"]
    assert len(cases.problems) == 3
    assert cases.problems[0].startswith(f"{config}:4: a test is a mapping") and "skipped" in cases.problems[0]
    assert cases.problems[1].startswith(f"{config}:5: var `q`") and "absent.txt" in cases.problems[1]
    assert cases.problems[2].startswith(f"{config}:6: assertion 1 needs a `type`")


def test_unsupported_assertion_types_are_listed_once(tmp_path):
    config = write(tmp_path, {"promptfooconfig.yaml": """\
prompts: ["{{ q }}"]
defaultTest:
  assert: [{type: llm-rubric, value: polite}]
tests:
  - vars: {q: a}
  - vars: {q: b}
"""})
    assert load_suite(config).problems == [
        f"{config}:5: assertion type `llm-rubric` is not supported (it needs a grader model); it fails in 2 test(s)"]


def test_malformed_yaml_names_file_and_line(tmp_path):
    config = suite_dir(tmp_path, "file://cases/a.yaml")
    (tmp_path / "cases" / "a.yaml").write_text("- vars: {who: ann}\n  assert: [\n- broken\n")
    with pytest.raises(InputError) as raised:
        load_suite(config)
    assert str(raised.value).startswith(f"{tmp_path / 'cases' / 'a.yaml'}:3: not valid YAML")


def test_malformed_config_names_the_file(tmp_path):
    config = write(tmp_path, {"promptfooconfig.yaml": "prompts: [a\ntests: []\n"})
    with pytest.raises(InputError, match=r"promptfooconfig\.yaml:2: not valid YAML"):
        load_suite(config)
    config.write_text("- just\n- a list\n")
    with pytest.raises(InputError, match="a promptfoo config is a mapping"):
        load_suite(config)


@pytest.mark.parametrize("tests, message", [
    ("file://nowhere.yaml", "tests `file://nowhere.yaml` not found"),
    ("file://prompt-folder/", "is a folder with no YAML or JSON file"),
    ("file://cases/*.json", "matches no file"),
    ("{a: 1}", "`tests` must be a list"),
])
def test_missing_or_wrong_tests_are_input_errors(tmp_path, tests, message):
    (tmp_path / "prompt-folder").mkdir()
    with pytest.raises(InputError, match=message):
        load_suite(suite_dir(tmp_path, tests))


def test_prompt_template_errors_name_file_and_line(tmp_path):
    with pytest.raises(InputError, match=r"prompt\.txt:2: template error"):
        load_suite(suite_dir(tmp_path, "file://cases/a.yaml", prompt="fine\n{% if who %}never closed"))


def test_missing_config_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="promptfoo config .* not found"):
        load_suite(tmp_path)
