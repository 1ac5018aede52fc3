"""Run the JavaScript of promptfoo suites (asserts, transforms) in a sandbox with a time limit.

Suites from towns are data, not code we trust, so their JavaScript never runs with access to files,
network or processes. The engine is QuickJS through the `quickjs` wheel (an interpreter in this
process that has no such APIs at all); without it, `node` runs the code inside a fresh `vm` context
with a null-prototype global (no `require`, no `process`), its input on stdin as JSON and nothing
from the suite on its command line. Each step has its own time limit; the steps of one case share
one context, so a case costs one engine start, not one per assertion.

A step is a dict the driver below understands:
  {"op": "setup", "output": str, "context": {...}}  the model's answer and promptfoo's `context`
  {"op": "transform", "code": CODE}                  replace the answer by CODE(output, context)
  {"op": "assert", "code": CODE | None, "transform": CODE | None, "config": {...} | None}
where CODE is {"kind": "body", "source": function body} or {"kind": "module", "source": CommonJS
text, "name": exported function or None, "file": path for messages}. Each answer is one of
{"string": output as text}, {"verdict": {...}}, {"error": message} or {"timeout": True}.
`function_body`, `transform_code` and `module_code` make CODE from a suite's text by promptfoo's rules.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

ENGINES = ("quickjs", "node")  # in order of preference; tests narrow it
MEMORY_LIMIT = 256 * 1024 * 1024
INSTALL_HINT = "`pip install quickjs` (or install Node.js so `node` is on PATH)"

# Runs inside the sandbox. Only `__gt.run(text) -> text` is called from outside; the state lives in
# a closure so the suite's code cannot reach it by name.
DRIVER = r"""
var console = {log: function () {}, info: function () {}, warn: function () {},
               error: function () {}, debug: function () {}};  // debugging output goes nowhere
var __gt = (function () {
  var state = {output: undefined, context: undefined};
  function compile(code) {
    if (code.kind === 'body') return new Function('output', 'context', code.source);
    var module = {exports: {}};
    new Function('module', 'exports', code.source)(module, module.exports);
    var e = module.exports;
    if (code.name) {
      if (e && typeof e[code.name] === 'function') return e[code.name];
      throw new Error(code.file + ' exports no function named ' + code.name);
    }
    if (typeof e === 'function') return e;
    if (e && typeof e['default'] === 'function') return e['default'];
    throw new Error(code.file + ' must set module.exports to a function (CommonJS)');
  }
  function text(value) { return typeof value === 'string' ? value : JSON.stringify(value); }
  function transform(code, value) {
    var out = compile(code)(value, state.context);
    if (out === null || out === undefined) throw new Error('transform returned ' + out);
    return out;
  }
  function verdict(r) {
    if (r && typeof r.then === 'function') throw new Error('returned a Promise; async code is not supported');
    if (typeof r === 'boolean') return {kind: 'boolean', value: r};
    if (typeof r === 'number') {
      if (!isFinite(r)) throw new Error('returned ' + r + ', not a finite number');
      return {kind: 'number', value: r};
    }
    if (r && typeof r === 'object' && typeof r.pass === 'boolean') {
      return {kind: 'object', pass: r.pass, score: typeof r.score === 'number' ? r.score : null,
              reason: typeof r.reason === 'string' ? r.reason : ''};
    }
    throw new Error('must return a boolean, a number or {pass, score, reason}, not ' +
                    (r === null ? 'null' : typeof r));
  }
  function run(arg) {
    var step = JSON.parse(arg);
    try {
      if (step.op === 'setup') {
        state.output = step.output;
        state.context = step.context;
        return '{}';
      }
      if (step.op === 'transform') {
        state.output = transform(step.code, state.output);
        return JSON.stringify({string: text(state.output)});
      }
      var output = step.transform ? transform(step.transform, state.output) : state.output;
      if (!step.code) return JSON.stringify({string: text(output)});
      var context = Object.assign({}, state.context);
      if (step.config) context.config = step.config;
      return JSON.stringify({verdict: verdict(compile(step.code)(output, context))});
    } catch (e) {
      var name = e && e.name ? e.name + ': ' : '';
      return JSON.stringify({error: name + (e && e.message !== undefined ? e.message : String(e))});
    }
  }
  return {run: run};
})();
"""

# The node side: reads {"driver", "steps", "timeout_ms"} on stdin, writes one answer per step.
NODE_HOST = r"""
const vm = require('vm');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const job = JSON.parse(input);
  const sandbox = vm.createContext(Object.create(null),
    {codeGeneration: {strings: true, wasm: false}, microtaskMode: 'afterEvaluate'});
  vm.runInContext(job.driver, sandbox);
  const answers = job.steps.map((step) => {
    sandbox.__gt_arg = JSON.stringify(step);
    try {
      return JSON.parse(vm.runInContext('__gt.run(__gt_arg)', sandbox, {timeout: job.timeout_ms}));
    } catch (e) {
      if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return {timeout: true};
      return {error: String(e && e.message !== undefined ? e.message : e)};
    }
  });
  process.stdout.write(JSON.stringify(answers));
});
"""


def module_code(ref: str, base: Path) -> dict:
    """`file://x.js` or `file://x.js:fn` (relative to `base`) as a step's CODE.

    Raises:
        ValueError: not a CommonJS file, or it cannot be read.
    """
    rel, name = ref[len("file://"):], None
    head, sep, tail = rel.rpartition(":")
    if sep and head.endswith((".js", ".cjs")):
        rel, name = head, tail
    path = base / rel
    if path.suffix not in (".js", ".cjs"):
        raise ValueError(f"`{ref}`: only JavaScript files (CommonJS `.js`/`.cjs`) run here")
    try:
        return {"kind": "module", "source": path.read_text(encoding="utf-8"), "name": name, "file": str(path)}
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot load `{ref}`: {e}") from e


def transform_code(code, base: Path) -> dict:
    """A transform as a step's CODE; promptfoo's rule: one line is an expression, several lines a
    function body.

    Raises:
        ValueError: not text, or its file cannot be read.
    """
    if not isinstance(code, str):
        raise ValueError("`transform` must be JavaScript text or a `file://` path")
    if code.startswith("file://"):
        return module_code(code, base)
    return {"kind": "body", "source": code if "\n" in code else f"return {code}"}


def function_body(code: str) -> str:
    """A javascript assertion's function body; promptfoo's rule: several lines are used as written,
    one line is an expression, or declarations (`const a = …; a > 1`) whose last one is returned."""
    code = code.rstrip()
    if "\n" in code:
        return code
    code = re.sub(r";+\s*$", "", code.strip())
    if re.match(r"(const|let|var)\s", code):
        cut = _last_statement_semicolon(code)
        if cut != -1 and code[cut + 1:].strip():
            return f"{code[:cut + 1]} return {code[cut + 1:].strip()}"
        return code
    return f"return {code}"


def _last_statement_semicolon(code: str) -> int:
    """Index of the last `;` outside strings and brackets, or -1."""
    depth, quote, last, index = 0, None, -1, 0
    while index < len(code):
        char = code[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == ";" and depth == 0:
            last = index
        index += 1
    return last



def engine() -> str | None:
    """The first engine of `ENGINES` usable here, or None."""
    for name in ENGINES:
        if name == "quickjs" and _quickjs() is not None:
            return name
        if name == "node" and shutil.which("node"):
            return name
    return None


def run_steps(steps: list[dict], *, timeout_s: float) -> list[dict]:
    """One answer per step (see the module docstring); `timeout_s` bounds each step.

    Raises:
        RuntimeError: no engine is available (the message says what to install).
    """
    name = engine()
    if name is None:
        raise RuntimeError(f"no JavaScript engine: {INSTALL_HINT}")
    return _run_quickjs(steps, timeout_s) if name == "quickjs" else _run_node(steps, timeout_s)


def _quickjs():
    try:
        import quickjs
    except ImportError:
        return None
    return quickjs


def _run_quickjs(steps: list[dict], timeout_s: float) -> list[dict]:
    quickjs = _quickjs()
    context = quickjs.Context()
    context.set_memory_limit(MEMORY_LIMIT)
    context.eval(DRIVER)
    answers = []
    for step in steps:
        context.set("__gt_arg", json.dumps(step, default=str))
        context.set_time_limit(timeout_s)  # CPU seconds of this process, so at most this long
        try:
            answers.append(json.loads(context.eval("__gt.run(__gt_arg)")))
        except quickjs.StackOverflow:
            answers.append({"error": "RangeError: stack overflow"})
        except quickjs.JSException as e:
            message = str(e).strip()
            if message.startswith("InternalError: interrupted"):
                answers.append({"timeout": True})
            else:  # QuickJS reports running out of memory as a bare `null`
                answers.append({"error": "out of memory" if message == "null" else message.splitlines()[0]})
        finally:
            context.set_time_limit(-1)
    return answers


def _run_node(steps: list[dict], timeout_s: float) -> list[dict]:
    job = json.dumps({"driver": DRIVER, "steps": steps, "timeout_ms": max(1, int(timeout_s * 1000))},
                     default=str)
    limit = timeout_s * (len(steps) + 1) + 10  # every step may use its whole limit; node starts in ms
    try:  # an empty environment: NODE_OPTIONS and friends cannot change what node loads
        done = subprocess.run([shutil.which("node"), "-e", NODE_HOST], input=job, capture_output=True,
                              text=True, timeout=limit, env={})
    except subprocess.TimeoutExpired:
        return [{"error": f"node did not finish within {limit:g} s"}] * len(steps)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return [{"error": f"node exited with status {done.returncode}: {last}"}] * len(steps)
    return json.loads(done.stdout)
