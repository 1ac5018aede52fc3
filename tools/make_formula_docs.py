"""Write docs/formula-reference.md from the packaged formulas; `--check` fails when the file is stale.

    .venv/bin/python tools/make_formula_docs.py [--check]

Reads every `gt_finetune/data/formulas/*.formula.toml`: each var (name, type, default,
description) and each step (id, title, needs, action, the vars it uses). Vars are grouped as
`gt-finetune formulas show` groups them: required, common, then advanced — a var whose
description starts with `Advanced: `, the formula's mark for a var a first run never needs to touch.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_finetune.cli import ADVANCED  # noqa: E402
from gt_finetune.formula import load_formula  # noqa: E402

FORMULAS = ROOT / "gt_finetune" / "data" / "formulas"
TARGET = ROOT / "docs" / "formula-reference.md"
PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][\w-]*)\}\}")


def cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def default_of(var) -> str:
    if var.default is None:
        return "required" if var.required else "(none)"
    return f"`{var.default}`" if var.default != "" else "(empty)"


def vars_used(params: dict) -> list[str]:
    found: list[str] = []
    for value in params.values():
        for name in PLACEHOLDER.findall(str(value)):
            if name not in found:
                found.append(name)
    return found


def var_table(variables) -> list[str]:
    rows = ["| var | type | default | what it does |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.type} | {cell(default_of(v))} | {cell(v.description.removeprefix(ADVANCED))} |"
             for v in variables]
    return rows


def render_formula(path: Path) -> list[str]:
    formula = load_formula(path)
    required = [v for v in formula.vars if v.required and v.default is None]
    advanced = [v for v in formula.vars if v.description.startswith(ADVANCED) and v not in required]
    common = [v for v in formula.vars if v not in required and v not in advanced]
    out = [f"## `{formula.name}`", "", " ".join(formula.description.split()), "",
           f"File: `gt_finetune/data/formulas/{path.name}` ({formula.type} formula"
           + (f", version {formula.version})." if formula.version is not None else ")."), "",
           f"    gt-finetune run {formula.name} [--var name=value]…", ""]
    if formula.vars:
        intro = "" if required else "A first run needs no `--var`: every var has a default. "
        out += ["### Vars", "", intro + "Set one with `--var name=value` (repeatable); "
                f"`gt-finetune formulas show {formula.name}` prints the same list.", ""]
        if required:
            out += ["**Required** — the job refuses to start without these:", "", *var_table(required), ""]
        if common:
            out += ["**Common** — the ones you may want on a real run:", "", *var_table(common), ""]
        if advanced:
            out += ["**Advanced** — a first run never needs to touch these:", "", *var_table(advanced), ""]
    if formula.steps:
        out += ["### Steps", "", "Run in `needs` order; each is one `gt-finetune step <step>` under `gt formula run`.", "",
                "| step | title | needs | action | vars it uses |", "|---|---|---|---|---|"]
        for step in formula.steps:
            params = {k: v for k, v in step.finetune.items() if k != "action"}
            used = ", ".join(f"`{n}`" for n in vars_used(params)) or "—"
            needs = ", ".join(f"`{n}`" for n in step.needs) or "—"
            out.append(f"| `{step.id}` | {cell(step.title)} | {needs} | `{step.finetune.get('action', '')}` | {used} |")
        out.append("")
    return out


def render() -> str:
    paths = sorted(FORMULAS.glob("*.formula.toml"))
    parts = ["# Formula reference", "",
             "Generated from the formulas shipped in `gt_finetune/data/formulas/` by `tools/make_formula_docs.py`; "
             "a test fails when it is stale. How formulas are found, checked and run: docs/formulas.md.", "",
             "Formulas: " + ", ".join(f"`{p.name.removesuffix('.formula.toml')}`" for p in paths) + ".", ""]
    for path in paths:
        parts += render_formula(path)
    return "\n".join(parts).rstrip("\n") + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not TARGET.is_file() or TARGET.read_text(encoding="utf-8") != text:
            print("docs/formula-reference.md is stale: run `.venv/bin/python tools/make_formula_docs.py`",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
