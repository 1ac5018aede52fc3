"""Run promptfoo eval suites (Gas Town's `gt-model-eval/` layout) unchanged, our model answering.

A suite is a `promptfooconfig.yaml` naming prompt templates, tests and a `defaultTest`
(https://promptfoo.dev/docs/configuration/reference/). `load_suite` expands it as promptfoo does:
every prompt with every test, `defaultTest`'s vars, options and asserts merged into each test, a var
holding a list giving one test per value, templates (nunjucks there) rendered by a sandboxed jinja2
where undefined vars print nothing. `providers` are ignored: `run_suite` asks our model instead.

`check_case` grades an answer by promptfoo's rules: `options.transform` first, then every assertion
(`not-` inverts one; `weight: 0` only reports); a case passes when all assertions pass or, when the
test sets `threshold`, when their weighted mean score reaches it. JavaScript runs sandboxed with a
time limit (`jsengine`); `regex` uses Python's `re`, which reads ordinary patterns as JavaScript does.
What cannot be graded here fails with its reason rather than passing quietly: model-graded types such
as `llm-rubric` need a grader model. `load_suite` lists those types, and each test entry it skipped,
in `Suite.problems`.
"""
from __future__ import annotations

import glob
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml
from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import InputError
from . import jsengine
from .promptfoo_checks import CHECKS, AssertError, is_number, js_text

JS_TIMEOUT_S = 5.0  # per assertion or transform
SUPPORTED = (*CHECKS, "javascript")
MODEL_GRADED = frozenset({"llm-rubric", "model-graded-closedqa", "model-graded-factuality", "factuality",
                          "g-eval", "answer-relevance", "context-faithfulness", "context-recall",
                          "context-relevance", "search-rubric", "select-best"})
TEXT_PROMPT_SUFFIXES = (".txt", ".md", ".j2")
TEST_FILE_SUFFIXES = (".yaml", ".yml", ".json")
SUITE_HINT = "compare with the example suite shipped in gt_finetune's `data/suites/patrol/`"


@dataclass(frozen=True, slots=True)
class PromptfooCase:
    """One test with one prompt: what the model is asked and how its answer is graded."""

    id: str  # "<test file>:<line>#prompt<n>", the file relative to the config's folder
    description: str
    vars: dict
    messages: list[dict]  # [{"role", "content"}]; a text prompt is one user message
    assertions: list[dict]  # defaultTest's asserts, then the test's own, as written
    transform: str | None  # options.transform; the test's own wins over defaultTest's
    threshold: float | None = None  # the test's `threshold`: pass on weighted mean score instead
    base_dir: Path | None = None  # where `file://` in assertions and transforms is found


@dataclass(frozen=True, slots=True)
class AssertionResult:
    type: str  # as written, `not-` included; "transform" when options.transform failed
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: PromptfooCase
    output: str  # the model's answer, before any transform
    passed: bool
    assertions: list[AssertionResult]


class Suite(list):
    """The cases of a suite (a plain list) and `problems`: one line, with file:line, per test entry
    skipped and per assertion type that will fail every time it is used."""

    def __init__(self, cases=(), problems=()):
        super().__init__(cases)
        self.problems: list[str] = list(problems)


class _BadTest(Exception):
    """A test entry that cannot run; the suite skips it and says why."""


_ENV = SandboxedEnvironment(undefined=ChainableUndefined, keep_trailing_newline=True, finalize=js_text)
_ENV.filters["dump"] = lambda value, indent=None: json.dumps(  # nunjucks' JSON.stringify filter
    value, indent=indent, ensure_ascii=False, default=str, separators=None if indent else (",", ":"))


@dataclass(frozen=True, slots=True)
class _Prompt:
    where: str  # file:line, for messages
    messages: tuple  # (message without content, compiled content template or None)

    def render(self, variables: dict) -> list[dict]:
        return [{**message, "content": template.render(variables)} if template else dict(message)
                for message, template in self.messages]


def load_suite(config: Path) -> Suite:
    """Every (test, prompt) pair of a promptfoo config as a case, in file order.

    Args:
        config: a `promptfooconfig.yaml`, or the folder holding one.

    Returns:
        The cases; `.problems` lists test entries skipped and assertion types that cannot pass.

    Raises:
        InputError: the config, a prompt or a test file is missing or malformed (file:line given).
    """
    config = Path(config)
    if config.is_dir():
        config = config / "promptfooconfig.yaml"
    if not config.is_file():
        raise InputError(f"promptfoo config `{config}` not found",
                         hint="pass a suite's `promptfooconfig.yaml` or its folder")
    base = config.parent
    doc, root = _read_yaml(config)
    if not isinstance(doc, dict):
        raise InputError(f"{config}: a promptfoo config is a mapping with `prompts` and `tests`, "
                         f"not {_kind(doc)}", hint=SUITE_HINT)
    prompts = _load_prompts(doc.get("prompts"), base, config)
    default = _load_default_test(doc.get("defaultTest"), base, config)
    suite = Suite()
    if "scenarios" in doc:
        suite.problems.append(f"{config}: `scenarios` are not supported; their tests do not run")
    unsupported: dict[str, list[str]] = {}
    for path, line, raw in _test_entries(doc.get("tests"), _key_node(root, "tests"), base, config):
        try:
            cases = _expand(raw, f"{_relative(path, base)}:{line}", default, prompts, base)
        except _BadTest as e:
            suite.problems.append(f"{path}:{line}: {e}; test skipped")
            continue
        suite.extend(cases)
        for kind in dict.fromkeys(_split_type(a["type"])[0] for a in cases[0].assertions):
            if kind not in SUPPORTED:
                unsupported.setdefault(kind, []).append(f"{path}:{line}")
    for kind, places in unsupported.items():
        why = "it needs a grader model" if kind in MODEL_GRADED else f"supported: {', '.join(SUPPORTED)}"
        suite.problems.append(f"{places[0]}: assertion type `{kind}` is not supported ({why}); "
                              f"it fails in {len(places)} test(s)")
    return suite


def check_case(case: PromptfooCase, output: str, *, latency_ms: float | None = None) -> CaseResult:
    """Grade one answer: the case's transform, then each of its assertions.

    Args:
        latency_ms: how long the model took; only `latency` assertions read it.
    """
    prepared = [_prepare(a, case) for a in case.assertions]
    text, js = output, {}
    steps = [{"op": "setup", "output": output, "context": _js_context(case)}]
    if case.transform is not None:
        try:
            steps.append({"op": "transform", "code": jsengine.transform_code(case.transform, _base(case))})
        except ValueError as e:
            return CaseResult(case, output, False, [AssertionResult("transform", False, f"transform failed: {e}")])
    for index, p in enumerate(prepared):
        if p.error is None and (p.code or p.transform):
            js[index] = len(steps)
            steps.append({"op": "assert", "code": p.code, "transform": p.transform,
                          "config": p.assertion.get("config")})
    if len(steps) > 1:
        try:
            answers = jsengine.run_steps(steps, timeout_s=JS_TIMEOUT_S)
        except RuntimeError as e:  # no engine: each JavaScript piece fails, saying what to install
            answers = [{"error": str(e)}] * len(steps)
        if case.transform is not None:
            if "string" not in answers[1]:
                reason = f"transform failed: {_js_problem(answers[1])}"
                return CaseResult(case, output, False, [AssertionResult("transform", False, reason)])
            text = answers[1]["string"]
        js = {index: answers[step] for index, step in js.items()}
    graded = [_grade(p, text, js.get(index), latency_ms) for index, p in enumerate(prepared)]
    if case.threshold is not None:
        weight = sum(w for _, _, w in graded)
        passed = (sum(s * w for _, s, w in graded) / weight if weight else 0.0) >= case.threshold
    else:
        passed = all(r.passed for r, _, _ in graded)
    return CaseResult(case, output, passed, [r for r, _, _ in graded])


def run_suite(cases: list[PromptfooCase], generate: Callable[[list[dict]], str]) -> list[CaseResult]:
    """Ask the model (`generate(messages) -> answer`) every case, in order, and grade each answer."""
    results = []
    for case in cases:
        start = time.perf_counter()
        output = generate(case.messages)
        results.append(check_case(case, output, latency_ms=(time.perf_counter() - start) * 1000))
    return results


# --- loading ---------------------------------------------------------------------------------------

def _read_yaml(path: Path):
    """(data, root node): nodes keep line numbers, which `yaml.safe_load` drops."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read `{path}`: {e}") from e
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{where}: not valid YAML: {e.problem or e.context}",
                         hint="fix the YAML there; promptfoo rejects this file too") from e
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from e
    finally:
        loader.dispose()


def _key_node(node, key: str):
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _item_lines(node) -> list[int]:
    return [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else []


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _kind(value) -> str:
    """`value`'s YAML kind with its article, for messages."""
    names = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
             bool: "a boolean"}
    return "nothing" if value is None else names.get(type(value), f"a {type(value).__name__}")


def _files(ref: str, base: Path, config: Path, what: str) -> list[Path]:
    """The files a promptfoo path names: `file://` optional, globs and folders expanded, sorted."""
    rel = ref[len("file://"):] if ref.startswith("file://") else ref
    path = base / rel
    if any(c in rel for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise InputError(f"{config}: {what} `{ref}` matches no file",
                             hint=f"paths in a promptfoo config are relative to its folder, {base.resolve()}")
        return found
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in TEST_FILE_SUFFIXES and p.is_file())
        if not found:
            raise InputError(f"{config}: {what} `{ref}` is a folder with no YAML or JSON file")
        return found
    if not path.is_file():
        raise InputError(f"{config}: {what} `{ref}` not found (looked for {path})",
                         hint=f"paths in a promptfoo config are relative to its folder, {base.resolve()}")
    return [path]


def _load_prompts(spec, base: Path, config: Path) -> list[_Prompt]:
    if isinstance(spec, (str, dict)):
        spec = [spec] if isinstance(spec, str) or "raw" in spec or "id" in spec else list(spec)
    if not isinstance(spec, list) or not spec:
        raise InputError(f"{config}: `prompts` must list at least one prompt, e.g. "
                         f"`prompts: [file://prompts/step.txt]`", hint=SUITE_HINT)
    prompts = []
    for item in spec:
        if isinstance(item, dict):
            item = item.get("raw") or item.get("id")
        if not isinstance(item, str):
            raise InputError(f"{config}: each prompt is template text, a `file://` path or a mapping "
                             f"with `raw` or a `file://` `id`; found {_kind(item)}")
        if item.startswith("file://"):
            for path in _files(item, base, config, "prompt"):
                prompts.extend(_prompts_in_file(path))
        else:
            prompts.append(_Prompt(str(config), (({"role": "user"}, _compile(item, str(config), 1)),)))
    return prompts


def _prompts_in_file(path: Path) -> list[_Prompt]:
    """A `.json` file is one chat (a list of messages); a `.txt` file holds prompts split by `---`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read prompt `{path}`: {e}") from e
    if path.suffix == ".json":
        try:
            chat = json.loads(text)
        except ValueError as e:
            raise InputError(f"{path}:{getattr(e, 'lineno', 1)}: not valid JSON: {e}") from e
        if not isinstance(chat, list) or not all(isinstance(m, dict) and "role" in m for m in chat):
            raise InputError(f"{path}: a JSON prompt is a list of messages with `role` and `content`")
        messages = []
        for m in chat:
            if isinstance(m.get("content"), str):
                messages.append(({k: v for k, v in m.items() if k != "content"}, _compile(m["content"], str(path), 1)))
            else:
                messages.append((m, None))
        return [_Prompt(str(path), tuple(messages))]
    if path.suffix not in TEXT_PROMPT_SUFFIXES:
        raise InputError(f"prompt `{path}`: only text ({', '.join(TEXT_PROMPT_SUFFIXES)}) and JSON chat "
                         f"prompts are supported here, not `{path.suffix or 'no suffix'}`")
    chunks, start, lines = [], 1, text.splitlines()
    if path.suffix == ".txt":
        for number, line in enumerate(lines, 1):
            if line.strip() == "---":
                chunks.append((start, "\n".join(lines[start - 1:number - 1])))
                start = number + 1
    chunks.append((start, "\n".join(lines[start - 1:])))
    return [_Prompt(f"{path}:{first}", (({"role": "user"}, _compile(body.strip(), str(path), first)),))
            for first, body in chunks if body.strip()]


def _compile(source: str, file: str, first_line: int):
    try:
        return _ENV.from_string(source)
    except TemplateSyntaxError as e:
        raise InputError(f"{file}:{first_line + (e.lineno or 1) - 1}: template error: {e.message}",
                         hint="prompts are nunjucks templates: `{{ var }}`, `{% if var %}…{% endif %}`") from e


def _load_default_test(spec, base: Path, config: Path) -> dict:
    if spec is None:
        return {}
    where = str(config)
    if isinstance(spec, str):
        path = _files(spec, base, config, "defaultTest")[0]
        spec, where = _read_yaml(path)[0], str(path)
    problem = _shape_problem(spec)
    if problem:
        raise InputError(f"{where}: `defaultTest`: {problem}", hint=SUITE_HINT)
    return spec


def _test_entries(spec, node, base: Path, config: Path) -> list[tuple[Path, int, object]]:
    """(file, line, raw test) for every test the config names, inline or in files."""
    if isinstance(spec, str):
        return [entry for path in _files(spec, base, config, "tests") for entry in _tests_in_file(path)]
    if not isinstance(spec, list):
        raise InputError(f"{config}: `tests` must be a list of tests or `file://` paths, or one path "
                         f"(a file, a folder or a glob), not {_kind(spec)}", hint=SUITE_HINT)
    lines, entries = _item_lines(node), []
    for index, item in enumerate(spec):
        if isinstance(item, str):
            entries.extend(e for path in _files(item, base, config, "tests") for e in _tests_in_file(path))
        else:
            entries.append((config, lines[index] if index < len(lines) else 1, item))
    return entries


def _tests_in_file(path: Path) -> list[tuple[Path, int, object]]:
    if path.suffix not in TEST_FILE_SUFFIXES:
        raise InputError(f"tests `{path}`: only YAML or JSON test files are supported here, "
                         f"not `{path.suffix or 'no suffix'}`", hint="convert the tests to YAML")
    data, node = _read_yaml(path)
    if data is None:
        return []
    if isinstance(data, dict):
        return [(path, node.start_mark.line + 1, data)]
    if not isinstance(data, list):
        raise InputError(f"{path}: a test file holds a list of tests, not {_kind(data)}", hint=SUITE_HINT)
    return list(zip([path] * len(data), _item_lines(node), data))


def _shape_problem(test) -> str | None:
    """What makes `test` unusable as a promptfoo test, or None."""
    if not isinstance(test, dict):
        return f"a test is a mapping with `vars` and `assert`, not {_kind(test)}"
    if not isinstance(test.get("vars") or {}, dict):
        return f"`vars` must map names to values, not be {_kind(test['vars'])}"
    asserts = test.get("assert") or []
    if not isinstance(asserts, list):
        return f"`assert` must be a list, not {_kind(asserts)}"
    for number, a in enumerate(asserts, 1):
        if not isinstance(a, dict) or not isinstance(a.get("type"), str):
            return f"assertion {number} needs a `type`"
        for key in ("threshold", "weight"):
            if a.get(key) is not None and not is_number(a[key]):
                return f"assertion {number} (`{a['type']}`): `{key}` must be a number, not `{a[key]}`"
    options = test.get("options") or {}
    if not isinstance(options, dict):
        return f"`options` must be a mapping, not {_kind(options)}"
    if not isinstance(options.get("transform", ""), str):
        return "`options.transform` must be JavaScript text or a `file://` path"
    if test.get("threshold") is not None and not is_number(test["threshold"]):
        return f"`threshold` must be a number, not `{test['threshold']}`"
    return None


def _expand(raw, where: str, default: dict, prompts: list[_Prompt], base: Path) -> list[PromptfooCase]:
    problem = _shape_problem(raw)
    if problem:
        raise _BadTest(problem)
    merged = {**(default.get("vars") or {}), **(raw.get("vars") or {})}
    merged = {name: _load_var(name, value, base) for name, value in merged.items()}
    assertions = [*(default.get("assert") or []), *(raw.get("assert") or [])]
    transform = {**(default.get("options") or {}), **(raw.get("options") or {})}.get("transform")
    threshold = raw.get("threshold", default.get("threshold"))
    description = str(raw.get("description") or f"test at {where}")
    lists = [name for name, value in merged.items() if isinstance(value, list)]
    combos = [dict(merged, **dict(zip(lists, values)))
              for values in itertools.product(*(merged[name] for name in lists))]
    cases = []
    for number, variables in enumerate(combos):
        tag = where if len(combos) == 1 else f"{where}[{number}]"
        for index, prompt in enumerate(prompts):
            try:
                messages = prompt.render(variables)
            except TemplateError as e:
                raise _BadTest(f"prompt {prompt.where} does not render with these vars: {e}") from e
            cases.append(PromptfooCase(id=f"{tag}#prompt{index}", description=description, vars=variables,
                                       messages=messages, assertions=assertions, transform=transform,
                                       threshold=threshold, base_dir=base))
    if not cases:
        raise _BadTest("a var holds an empty list, so promptfoo makes no test from it")
    return cases


def _load_var(name: str, value, base: Path):
    if not (isinstance(value, str) and value.startswith("file://")):
        return value
    path = base / value[len("file://"):]
    if path.suffix in (".js", ".cjs", ".mjs", ".py"):
        raise _BadTest(f"var `{name}` is a script (`{value}`); only text files are supported here")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise _BadTest(f"var `{name}`: `{path}` not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise _BadTest(f"var `{name}`: cannot read `{path}`: {e}") from e


# --- grading ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Prepared:
    assertion: dict
    kind: str  # the type without `not-`
    inverse: bool
    value: object = None  # rendered with the vars, `file://` loaded
    code: dict | None = None  # a javascript assertion's code
    transform: dict | None = None  # the assertion's own transform
    error: str | None = None  # why it fails without being run


def _split_type(kind: str) -> tuple[str, bool]:
    return (kind[4:], True) if kind.startswith("not-") else (kind, False)


def _prepare(assertion: dict, case: PromptfooCase) -> _Prepared:
    kind, inverse = _split_type(assertion["type"])
    if kind not in SUPPORTED:
        why = ("it needs a grader model" if kind in MODEL_GRADED
               else f"supported: {', '.join(SUPPORTED)}")
        return _Prepared(assertion, kind, inverse, error=f"assertion type `{kind}` is not supported ({why})")
    try:
        transform = assertion.get("transform")
        transform = jsengine.transform_code(transform, _base(case)) if transform is not None else None
        value = assertion.get("value")
        if kind == "javascript":
            return _Prepared(assertion, kind, inverse, code=_assertion_code(value, case), transform=transform)
        if isinstance(value, list):
            value = [_value(v, case) if isinstance(v, str) else v for v in value]
        elif isinstance(value, str):
            value = _value(value, case)
        return _Prepared(assertion, kind, inverse, value=value, transform=transform)
    except (AssertError, ValueError) as e:  # ValueError: unreadable JavaScript
        return _Prepared(assertion, kind, inverse, error=str(e))


def _base(case: PromptfooCase) -> Path:
    return case.base_dir or Path.cwd()


def _value(text: str, case: PromptfooCase):
    """An assertion value as promptfoo sees it: a `file://` file's content, else the rendered template."""
    if text.startswith("file://"):
        path = _base(case) / text[len("file://"):]
        try:
            content = path.read_text(encoding="utf-8")
            if path.suffix == ".json":
                return json.loads(content)
            return yaml.safe_load(content) if path.suffix in (".yaml", ".yml") else content
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
            raise AssertError(f"cannot load value `{text}`: {e}") from e
    try:
        return _ENV.from_string(text).render(case.vars)
    except TemplateError as e:
        raise AssertError(f"value does not render: {e}") from e


def _assertion_code(value, case: PromptfooCase) -> dict:
    if not isinstance(value, str) or not value.strip():
        raise AssertError("`javascript` needs its code in `value`")
    if value.startswith("file://"):
        return jsengine.module_code(value, _base(case))
    return {"kind": "body", "source": jsengine.function_body(_value(value, case))}


def _js_context(case: PromptfooCase) -> dict:
    """promptfoo's `context` for asserts and transforms, as far as it means anything here."""
    messages = case.messages
    prompt = (messages[0]["content"] if len(messages) == 1 and isinstance(messages[0].get("content"), str)
              else json.dumps(messages, default=str))
    return {"vars": case.vars, "prompt": prompt, "test": {"description": case.description, "vars": case.vars}}


def _js_problem(answer: dict) -> str:
    if answer.get("timeout"):
        return f"JavaScript timed out after {JS_TIMEOUT_S:g} s"
    return answer.get("error") or f"unexpected answer from the JavaScript engine: {answer}"


def _grade(p: _Prepared, text: str, answer: dict | None, latency_ms: float | None):
    """(result, score, weight) of one assertion."""
    weight = 1 if p.assertion.get("weight") is None else p.assertion["weight"]
    if p.error is None and answer is not None and "verdict" not in answer and "string" not in answer:
        p = _Prepared(p.assertion, p.kind, p.inverse, error=_js_problem(answer))
    if p.error is not None:
        passed, score, reason = False, 0.0, p.error
    elif p.kind == "javascript":
        passed, score, reason = _js_verdict(answer["verdict"], p)
    else:
        subject = answer["string"] if answer is not None else text
        try:
            held, reason = CHECKS[p.kind](subject, p.value, p.assertion, latency_ms)
            passed = held != p.inverse
            score = 1.0 if passed else 0.0
        except AssertError as e:
            passed, score, reason = False, 0.0, str(e)
    if weight == 0 and not passed:  # promptfoo: a weight-0 assertion reports but never fails
        passed, reason = True, f"{reason} (weight 0: reported only)"
    return AssertionResult(p.assertion["type"], passed, reason), score, weight


def _js_verdict(verdict: dict, p: _Prepared) -> tuple[bool, float, str]:
    """promptfoo's reading of what a javascript assertion returned."""
    if verdict["kind"] == "boolean":
        passed = verdict["value"] != p.inverse
        return passed, 1.0 if passed else 0.0, f"returned {js_text(verdict['value'])}"
    if verdict["kind"] == "number":
        value, threshold = verdict["value"], p.assertion.get("threshold")
        held = value > 0 if threshold is None else value >= threshold
        rule = "> 0" if threshold is None else f">= threshold {threshold:g}"
        return held != p.inverse, value, f"returned {value:g}, {'' if held else 'not '}{rule}"
    passed = verdict["pass"] != p.inverse
    score = verdict["score"] if verdict["score"] is not None else (1.0 if verdict["pass"] else 0.0)
    return passed, score, verdict["reason"] or f"returned pass: {js_text(verdict['pass'])}"
