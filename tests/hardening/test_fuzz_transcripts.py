"""Fuzzing the transcript converter (Claude Code session JSONL → chat records) with arbitrary JSON.

Whatever the lines hold (any type in any field, broken parent links, duplicate uuids, odd blocks),
the converter gives well-formed records and rejections, accounts for every line once, and keeps a
good session that shares the file with garbage.
"""
import json
import sys
from pathlib import Path

from hypothesis import given, strategies as st

from gt_finetune.corpus.records import Rejected
from gt_finetune.corpus.sources import transcripts
from gt_finetune.corpus.sources.context import HarvestContext
from gt_finetune.workspace import canonical_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402

FUZZ = fuzz(100)
ROLES = {"system", "user", "assistant", "tool"}

leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
anything = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
links = st.sampled_from(["a1", "u1", "a2", "u2", "u3", ""])  # few, so lines link, collide and fork
no_newline = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")  # text a file can hold


def maybe(right):
    """The right type three times in four, anything at all otherwise."""
    return st.one_of(right, right, right, anything)


blocks = st.fixed_dictionaries({"type": st.sampled_from(
    ["tool_use", "text", "tool_result", "thinking", "image", "redacted_thinking", "server_tool_use"])}, optional={
    "text": maybe(st.text(min_size=1, max_size=20)), "id": maybe(st.sampled_from(["t1", "t2"])),
    "name": maybe(st.text(max_size=6)), "input": anything, "tool_use_id": maybe(st.sampled_from(["t1", "t2", "t9"])),
    "content": maybe(st.text(max_size=30) | st.lists(st.fixed_dictionaries({"type": maybe(st.just("text")),
                                                                            "text": anything}), max_size=2)),
})
fields = {  # what a line may carry besides type, uuid and message, each of any type now and then
    "parentUuid": maybe(links | st.none()), "logicalParentUuid": maybe(links),
    "sessionId": maybe(st.sampled_from(["s1", "s2"])), "isSidechain": maybe(st.booleans()),
    "timestamp": maybe(st.sampled_from(["2026-11-24T14:00:00Z", "2026-11-24T14:01:00+02:00", "yesterday",
                                        "2026-11-24T14:02:00"])),
    "cwd": maybe(st.sampled_from(["/home/op/gt/harbor/polecats/nux", "/home/op/gt/mayor", "relative/witness"])),
    "isMeta": maybe(st.booleans()), "summary": maybe(st.text(max_size=10)), "leafUuid": maybe(links)}
# Turns the converter takes in (odd blocks, links and fields), and lines of any shape at all.
turns = st.fixed_dictionaries({
    "type": st.sampled_from(["assistant", "user"]), "uuid": links | st.uuids().map(str),
    "message": st.fixed_dictionaries({"content": st.lists(blocks, min_size=1, max_size=3) | st.text(max_size=30)},
                                     optional={"id": maybe(st.sampled_from(["m1", "m2"])),
                                               "model": maybe(st.sampled_from(["claude-x", "<synthetic>"]))})},
    optional=fields)
shapes = st.fixed_dictionaries({}, optional={
    "type": maybe(st.sampled_from(["assistant", "user", "summary", "system", "file-history-snapshot"])),
    "uuid": maybe(links), "message": anything, **fields})
raw_lines = st.one_of(turns.map(json.dumps), turns.map(lambda r: json.dumps(r, ensure_ascii=False)),
                      shapes.map(json.dumps), st.builds(json.dumps, anything), st.text(no_newline, max_size=40))

GOOD = [
    {"type": "user", "uuid": "good-u1", "parentUuid": None, "sessionId": "good", "timestamp": "2026-11-24T14:00:00Z",
     "cwd": "/home/op/gt/harbor/polecats/nux", "message": {"role": "user", "content": "Fix hb-zul."}},
    {"type": "assistant", "uuid": "good-a1", "parentUuid": "good-u1", "sessionId": "good",
     "timestamp": "2026-11-24T14:01:00Z", "message": {"id": "good-m1", "role": "assistant", "model": "claude-x",
                                                      "content": [{"type": "text", "text": "Pinned the clock."}]}},
]


def check_record(record: dict) -> None:
    canonical_json(record)
    messages = record["messages"]
    assert messages[0]["role"] == "system" and any(m["role"] == "assistant" for m in messages)
    for m in messages:
        assert m["role"] in ROLES and isinstance(m["content"], str)
        for call in m.get("tool_calls", ()):
            json.loads(call["function"]["arguments"])
    assert record["meta"]["source"] == "transcripts" and record["meta"]["lines"]


def write_lines(path, rows: list[str]) -> list[int]:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return [n for n, r in enumerate(rows, 1) if r.strip()]


@FUZZ
@given(rows=st.lists(raw_lines, max_size=10))
def test_arbitrary_lines_give_well_formed_records_and_account_for_every_line(tmp_path, rows):
    path = tmp_path / "session.jsonl"
    nonblank = write_lines(path, rows)
    ctx = HarvestContext()
    items = list(transcripts.harvest(str(path), ctx))
    for item in items:
        if isinstance(item, dict):
            check_record(item)
        else:
            assert isinstance(item, Rejected) and item.where.startswith(str(path)) and item.reason
    if nonblank:
        counted = ctx.accounting[str(path)]
        assert counted["lines"] == len(nonblank) == counted["used"] + counted["rejected"]


@FUZZ
@given(garbage=st.lists(raw_lines, max_size=8), at=st.integers(0, 8), data=st.data())
def test_a_good_session_survives_garbage_around_it(tmp_path, garbage, at, data):
    rows = garbage[:at] + [json.dumps(GOOD[0])] + garbage[at:]
    rows.insert(data.draw(st.integers(rows.index(json.dumps(GOOD[0])) + 1, len(rows))), json.dumps(GOOD[1]))
    path = tmp_path / "session.jsonl"
    write_lines(path, rows)
    records = [i for i in transcripts.harvest_transcripts([path]) if isinstance(i, dict)]
    good = [r for r in records if r["meta"]["session"] == "good"]
    assert [[m["content"] for m in r["messages"][1:]] for r in good] == [["Fix hb-zul.", "Pinned the clock."]]


# -- regressions: the minimal failing examples fuzzing found --------------------------------------

def test_a_tool_result_block_of_any_type_is_dropped_and_counted(tmp_path):
    path = tmp_path / "s.jsonl"
    write_lines(path, ['{"type": "assistant", "uuid": "a1", "message": {"content": "Reading it."}}',
                       '{"type": "user", "uuid": "u1", "message": {"content": [{"type": "tool_result", '
                       '"content": [{"type": [], "text": null}]}]}}'])
    (record,) = transcripts.harvest_transcripts([path])
    assert record["messages"][-1] == {"role": "tool", "tool_call_id": "", "name": "", "content": ""}
    assert record["meta"]["other_blocks_dropped"] == 1


def test_a_summary_whose_uuid_is_not_a_string_is_still_counted(tmp_path):
    path = tmp_path / "s.jsonl"
    write_lines(path, ['{"type": "summary", "uuid": true}'])
    ctx = HarvestContext()
    assert list(transcripts.harvest(str(path), ctx)) == []
    assert ctx.accounting[str(path)] == {"lines": 1, "used": 1, "rejected": 0}


def test_a_line_is_in_one_record_even_when_a_response_spans_two_conversations(tmp_path):
    """Line 4 continues session `s1` (its parent) but shares a response id with line 3 of the other
    conversation; the parallel-call repair used to pull each into the other's record too."""
    path = tmp_path / "session.jsonl"
    write_lines(path, [
        '{"type": "assistant", "uuid": "a1", "sessionId": "s1", "message": {"content": "Looking."}}',
        '{"type": "assistant", "uuid": "x2", "message": {"content": ""}}',
        '{"type": "assistant", "uuid": "x3", "message": {"content": [{"type": "tool_use"}], "id": "m2"}}',
        '{"type": "assistant", "uuid": "x4", "parentUuid": "a1", "message": {"content": "", "id": "m2"}}'])
    ctx = HarvestContext()
    items = list(transcripts.harvest(str(path), ctx))
    assert sorted(r["meta"]["lines"] for r in items if isinstance(r, dict)) == ["1,4", "3"]
    assert ctx.accounting[str(path)] == {"lines": 4, "used": 3, "rejected": 1}
