"""Fuzzing the replay file reader (`--var replay=<chats.jsonl>`): a bad line is skipped and reported, and
every conversation it keeps can be rendered (tool calls folded into text) and stored.
"""
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gt_finetune.dataset.replay import _from_file
from gt_finetune.dataset.template import fold_tool_calls
from gt_finetune.errors import InputError
from gt_finetune.workspace import canonical_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402

FUZZ = fuzz(100)
anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def maybe(right):
    return st.one_of(right, right, right, anything)


calls = st.fixed_dictionaries({"function": maybe(st.fixed_dictionaries(
    {"name": maybe(st.text(max_size=5))}, optional={"arguments": maybe(st.text(max_size=10) | st.just('{"n": 1}'))}))},
    optional={"id": anything, "type": anything})
messages = st.fixed_dictionaries({"role": st.sampled_from(["assistant", "user", "system", "tool"]),
                                  "content": maybe(st.text(max_size=10))},
                                 optional={"tool_calls": maybe(st.lists(calls, max_size=2)), "name": anything})
rows = st.fixed_dictionaries({"messages": st.lists(messages, min_size=1, max_size=4)}, optional={
    "tools": maybe(st.lists(anything, max_size=2)), "meta": maybe(st.dictionaries(st.text(max_size=5), anything,
                                                                                  max_size=2))})
no_newline = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")  # text a file can hold
lines = st.one_of(rows.map(json.dumps), rows.map(lambda r: json.dumps(r, ensure_ascii=False)),
                  st.builds(json.dumps, anything), st.text(no_newline, max_size=20))
GOOD = {"messages": [{"role": "user", "content": "What is a convoy?"},
                     {"role": "assistant", "content": "A batch of beads that travel together."}]}


def read(path: Path, capsys) -> list[dict]:
    records = _from_file(path)
    capsys.readouterr()
    return records


@FUZZ
@given(garbage=st.lists(lines, max_size=6), at=st.integers(0, 6))
def test_bad_lines_are_skipped_and_kept_conversations_render_and_store(tmp_path, capsys, garbage, at):
    path = tmp_path / "replay.jsonl"
    path.write_text("\n".join(garbage[:at] + [json.dumps(GOOD)] + garbage[at:]), encoding="utf-8")
    records = read(path, capsys)
    assert GOOD["messages"] in [r["messages"] for r in records]  # the good line survives the garbage
    for record in records:
        fold_tool_calls(record["messages"])
        canonical_json(record).encode("utf-8")  # as write_jsonl stores it


# -- regressions: the minimal failing examples fuzzing found --------------------------------------

@pytest.mark.parametrize("line, why", [
    ('{"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": null}]}]}', "`tool_calls`"),
    ('{"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}]}', "`tool_calls`"),
    ('{"messages": [{"role": "assistant", "content": "\\ud800"}]}', "lone surrogate"),
    ('{"messages": [{"role": "assistant", "content": "x"}], "n": 1' + "0" * 4300 + "}", "number too long"),
    ("[" * 3000, "nesting too deep"),
])
def test_a_line_that_would_crash_a_later_stage_is_skipped_with_the_reason(tmp_path, capsys, line, why):
    path = tmp_path / "replay.jsonl"
    path.write_text(line + "\n" + json.dumps(GOOD), encoding="utf-8")
    assert [r["messages"] for r in _from_file(path)] == [GOOD["messages"]]
    err = capsys.readouterr().err
    assert f"{path}:1: " in err and why in err
    path.write_text(line, encoding="utf-8")
    with pytest.raises(InputError, match="no usable conversation"):
        _from_file(path)


def test_a_bom_does_not_cost_the_first_conversation(tmp_path, capsys):
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert [r["messages"] for r in read(path, capsys)] == [GOOD["messages"]]


def test_tool_call_arguments_past_pythons_limits_render_as_raw_text():
    huge = '{"n": 1' + "0" * 4300 + "}"
    (folded,) = fold_tool_calls([{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "Bash", "arguments": huge}}]}])
    assert json.loads(folded["content"].split("\n")[1]) == {"name": "Bash", "arguments": {"raw": huge}}
