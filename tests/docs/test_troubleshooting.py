"""docs/troubleshooting.md cannot rot: every message it documents still exists in the code.

Each documented message is a ```text block followed by `<!-- code: "fragment"; "fragment" -->`.
Every fragment must appear in the block and, verbatim, inside one string literal of
gt_finetune/**/*.py (f-string parts count; a `{…}` breaks a literal). A block that shows an
`error:`/`warning:`/`stopped:` line needs a fragment from that line and, when it has a `hint:`,
one from the hint too.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"
BLOCK = re.compile(r"^```text\n(.*?)^```\n(?:<!-- code: (.*?) -->)?", re.S | re.M)
MESSAGE = ("error:", "warning:", "stopped:")


def code_literals() -> list[str]:
    """Every string literal of the package; an f-string's `{…}` parts become a NUL, so a fragment
    never spans a value that the code fills in."""
    out = []
    for path in sorted((ROOT / "gt_finetune").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                out.append("".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
    return out


def documented() -> list[tuple[str, list[str]]]:
    blocks = []
    for match in BLOCK.finditer(DOC.read_text(encoding="utf-8")):
        fragments = re.findall(r'"([^"]+)"', match[2] or "")
        blocks.append((match[1], fragments))
    return blocks


BLOCKS = documented()


def test_the_page_documents_the_common_errors():
    assert len(BLOCKS) >= 30
    text = DOC.read_text(encoding="utf-8")
    for heading in ("The corpus is too small (size gate)", "The planner says NO-GO", "No town found",
                    "`bd` is missing", "The Dolt server is down", "`bd` does not answer", "The eval gate failed",
                    "Review rejected the job", "The disk is full"):
        assert f"### {heading}" in text, heading


@pytest.mark.parametrize("block,fragments", BLOCKS, ids=[b.splitlines()[0][:60] for b, _ in BLOCKS])
def test_each_documented_message_still_exists_in_the_code(block, fragments):
    first = block.splitlines()[0].strip()
    if first.startswith(MESSAGE):
        assert fragments, f"no `<!-- code: … -->` after the block starting {first!r}"
    if not fragments:
        return  # an example that is not a message (a config snippet, say)
    literals = code_literals_cached()
    for fragment in fragments:
        assert fragment in block, f"fragment {fragment!r} is not in the documented block"
        assert any(fragment in literal for literal in literals), \
            f"{fragment!r} is in no string of gt_finetune/: the message changed; update docs/troubleshooting.md"
    if first.startswith(MESSAGE):
        assert any(f in first for f in fragments), f"no fragment from the message line {first!r}"
        hint = block.split("\nhint: ", 1)[1] if "\nhint: " in block else ""
        if hint:
            assert any(f in hint for f in fragments), f"no fragment from the hint of {first!r}"


_LITERALS: list[str] = []


def code_literals_cached() -> list[str]:
    if not _LITERALS:
        _LITERALS.extend(code_literals())
    return _LITERALS
