"""Claude Code transcripts → records: the live branch, subagents, tool turns, roles, real files."""
import hashlib
import json
from pathlib import Path

import pytest

import gt_finetune
from gt_finetune.corpus.records import Rejected
from gt_finetune.corpus.sources.context import HarvestContext
from gt_finetune.corpus.sources.transcripts import (TranscriptOptions, find_transcripts, harvest,
                                                    harvest_transcripts, role_from_cwd, session_starts)
from gt_finetune.errors import InputError
from gt_finetune.town.discover import load_town
from gt_finetune.workspace import canonical_json

SAMPLE_TOWN = Path(gt_finetune.__file__).resolve().parent / "data" / "sample_town"
NUX = "/home/op/gt/harbor/polecats/nux"
SYSTEM_NUX = "You are a Gas Town polecat agent in rig `harbor`."
ABANDONED = "on an abandoned branch (a later turn replaced it)"


def turn(uuid, parent, kind, content, *, at, session="s-1", cwd=NUX, **extra) -> dict:
    row = {"type": kind, "uuid": uuid, "parentUuid": parent, "sessionId": session, "isSidechain": False,
           "cwd": cwd, "timestamp": f"2026-11-24T14:{at:02d}:00.000Z", "message": {"role": kind, "content": content}}
    if kind == "assistant":
        row["message"].update(id=extra.pop("msg_id", f"msg_{uuid}"), model=extra.pop("model", "claude-sonnet-4-5"))
    row.update(extra)
    return row


def text(s):
    return {"type": "text", "text": s}


def tool_use(call_id, name, **arguments):
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def tool_result(call_id, content, **extra):
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": False, **extra}


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def write(tmp_path, rows, name="s-1.jsonl") -> Path:
    path = tmp_path / "projects" / "-home-op-gt-harbor-polecats-nux" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def run(*paths, **options):
    items = list(harvest_transcripts(list(paths), TranscriptOptions(**options)))
    return [i for i in items if isinstance(i, dict)], [i for i in items if isinstance(i, Rejected)]


def spans(ranges: str) -> set[int]:
    lines = set()
    for part in filter(None, ranges.split(",")):
        first, _, last = part.partition("-")
        lines.update(range(int(first), int(last or first) + 1))
    return lines


def test_tool_use_and_result_become_canonical_turns(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", [text("Work is on your hook: hb-zul.")], at=0),
        turn("a1", "u1", "assistant", [text("Reading the bead."),
                                       tool_use("toolu_1", "Bash", command="bd show hb-zul", description="Read it")],
             at=1),
        turn("u2", "a1", "user", [tool_result("toolu_1", "hb-zul: allocator ignores draft")], at=2,
             toolUseResult={"stdout": "hb-zul: allocator ignores draft", "stderr": ""}),
        turn("a2", "u2", "assistant", "Claimed.", at=3),
    ])
    (record,), rejected = run(path)
    messages = [
        {"role": "system", "content": SYSTEM_NUX},
        {"role": "user", "content": "Work is on your hook: hb-zul."},
        {"role": "assistant", "content": "Reading the bead.",
         "tool_calls": [call("toolu_1", "Bash", '{"command": "bd show hb-zul", "description": "Read it"}')]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "Bash", "content": "hb-zul: allocator ignores draft"},
        {"role": "assistant", "content": "Claimed."},
    ]
    digest = hashlib.sha256(canonical_json({"messages": messages, "tools": []}).encode()).hexdigest()
    assert rejected == []
    assert record == {"messages": messages, "tools": [], "meta": {
        "source": "transcripts", "location": str(path), "lines": "1-4", "session": "s-1", "sidechain": False,
        "role": "polecat", "rig": "harbor", "actor": "harbor/polecats/nux", "cwd": NUX,
        "created_at": "2026-11-24T14:00:00.000Z", "updated_at": "2026-11-24T14:03:00.000Z",
        "model": "claude-sonnet-4-5", "generated_by": "model:claude-sonnet-4-5", "summary": "",
        "thinking_dropped": 0, "images_dropped": 0, "other_blocks_dropped": 0, "tool_outputs_elided": 0,
        "orphan_tool_results": [], "abandoned_lines": 0, "content_hash": f"sha256:{digest}"}}


def test_a_rewind_keeps_only_the_branch_with_the_latest_leaf(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", "Fix hb-zul.", at=0),
        turn("a1", "u1", "assistant", "Where should I start?", at=1),
        turn("u2a", "a1", "user", "Patch the allocator.", at=2),
        turn("a2a", "u2a", "assistant", "Patched without a test.", at=3),
        turn("u2b", "a1", "user", "Write the failing test first.", at=4),  # the user rewound to a1
        turn("a2b", "u2b", "assistant", "Test written; it fails as expected.", at=5),
    ])
    (record,), rejected = run(path)
    assert rejected == [Rejected(f"{path}:3", ABANDONED), Rejected(f"{path}:4", ABANDONED)]
    assert [m["content"] for m in record["messages"][1:]] == [
        "Fix hb-zul.", "Where should I start?", "Write the failing test first.", "Test written; it fails as expected."]
    assert (record["meta"]["lines"], record["meta"]["abandoned_lines"]) == ("1-2,5-6", 2)


def test_leaves_at_the_same_time_go_to_the_later_line(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", "Status?", at=0),
        turn("a1", "u1", "assistant", "First answer.", at=1),
        turn("a2", "u1", "assistant", "Regenerated answer.", at=1),
    ])
    (record,), rejected = run(path)
    assert rejected == [Rejected(f"{path}:2", ABANDONED)]
    assert record["messages"][-1] == {"role": "assistant", "content": "Regenerated answer."}
    assert (record["meta"]["lines"], record["meta"]["abandoned_lines"]) == ("1,3", 1)


def test_a_subagent_conversation_is_a_record_of_its_own(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", "Find the draft check.", at=0),
        turn("a1", "u1", "assistant", [tool_use("toolu_task", "Task", prompt="Find _fits_draft")], at=1),
        turn("s1", None, "user", "Find _fits_draft", at=2, isSidechain=True),
        turn("s2", "s1", "assistant", "allocator.py line 41.", at=3, isSidechain=True),
        turn("u2", "a1", "user", [tool_result("toolu_task", [text("allocator.py line 41.")])], at=4),
        turn("a2", "u2", "assistant", "Found it in the allocator.", at=5),
    ])
    (main, sub), rejected = run(path)
    assert rejected == []
    assert main["messages"][1:] == [
        {"role": "user", "content": "Find the draft check."},
        {"role": "assistant", "content": "",
         "tool_calls": [call("toolu_task", "Task", '{"prompt": "Find _fits_draft"}')]},
        {"role": "tool", "tool_call_id": "toolu_task", "name": "Task", "content": "allocator.py line 41."},
        {"role": "assistant", "content": "Found it in the allocator."},
    ]
    assert sub["messages"] == [{"role": "system", "content": SYSTEM_NUX},
                               {"role": "user", "content": "Find _fits_draft"},
                               {"role": "assistant", "content": "allocator.py line 41."}]
    assert [[r["meta"][k] for k in ("sidechain", "lines", "session", "role")] for r in (main, sub)] == [
        [False, "1-2,5-6", "s-1", "polecat"], [True, "3-4", "s-1", "polecat"]]


def test_summary_lines_describe_their_session_even_from_another_file(tmp_path):
    path = write(tmp_path, [
        {"type": "summary", "summary": "An earlier session", "leafUuid": "elsewhere"},
        turn("u1", None, "user", "Patrol.", at=0),
        turn("a1", "u1", "assistant", "Nothing stuck.", at=1),
    ])
    summary = {"type": "summary", "summary": "Witness patrol: all clear", "leafUuid": "a1"}
    other = write(tmp_path, [summary], "s-2.jsonl")
    records, rejected = run(path, other)
    assert rejected == []
    assert [(r["meta"]["summary"], r["meta"]["lines"]) for r in records] == [("Witness patrol: all clear", "2-3")]
    assert all("Witness patrol" not in m["content"] for m in records[0]["messages"])


def test_images_and_thinking_are_dropped_and_counted(tmp_path):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    path = write(tmp_path, [
        turn("u1", None, "user", [text("The chart is blank:"), image], at=0),
        turn("a1", "u1", "assistant", [{"type": "thinking", "thinking": "Probably the zoom.", "signature": "x"}],
             msg_id="msg_1", at=1),
        turn("a2", "a1", "assistant", [text("Looking at the screenshot file.")], msg_id="msg_1", at=1),
        turn("a3", "a2", "assistant", [tool_use("toolu_1", "Read", file_path="/tmp/chart.png")], msg_id="msg_1", at=1),
        turn("u2", "a3", "user", [tool_result("toolu_1", [image, text("Read image (12KB)")])], at=2),
        turn("a4", "u2", "assistant", [{"type": "redacted_thinking", "data": "..."}, text("The axis is empty.")], at=3),
    ])
    (record,), _ = run(path)
    assert record["messages"][1:] == [
        {"role": "user", "content": "The chart is blank:"},
        {"role": "assistant", "content": "Looking at the screenshot file.",
         "tool_calls": [call("toolu_1", "Read", '{"file_path": "/tmp/chart.png"}')]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "Read", "content": "Read image (12KB)"},
        {"role": "assistant", "content": "The axis is empty."},
    ]
    meta = record["meta"]
    assert (meta["images_dropped"], meta["thinking_dropped"], meta["other_blocks_dropped"]) == (2, 2, 0)


def test_long_tool_output_keeps_head_and_tail(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", "Run the tests.", at=0),
        turn("a1", "u1", "assistant", [tool_use("toolu_1", "Bash", command="pytest")], at=1),
        turn("u2", "a1", "user", [tool_result("toolu_1", "H" * 3000 + "T" * 3000)], at=2),
        turn("a2", "u2", "assistant", [tool_use("toolu_2", "Bash", command="git status")], at=3),
        turn("u3", "a2", "user", [tool_result("toolu_2", "clean")], at=4),
        turn("a3", "u3", "assistant", "Green.", at=5),
    ])
    (record,), _ = run(path)
    assert record["messages"][3]["content"] == "H" * 2000 + "\n[… 2000 chars elided …]\n" + "T" * 2000
    assert record["messages"][5]["content"] == "clean"
    assert record["meta"]["tool_outputs_elided"] == 1
    (short,), _ = run(path, max_tool_output_chars=11)
    assert short["messages"][3]["content"] == "HHHHH\n[… 5989 chars elided …]\nTTTTTT"


def test_parallel_tool_calls_are_one_turn_with_every_result(tmp_path):
    """Claude Code hangs each result under its own tool_use line, so the chain up holds only one."""
    path = write(tmp_path, [
        turn("u1", None, "user", "Check both rigs.", at=0),
        turn("a1", "u1", "assistant", [tool_use("toolu_1", "Bash", command="gt ready --rig=harbor")], at=1, msg_id="m"),
        turn("a2", "a1", "assistant", [tool_use("toolu_2", "Bash", command="gt ready --rig=lantern")], at=1,
             msg_id="m"),
        turn("r1", "a1", "user", [tool_result("toolu_1", "harbor: 0 ready")], at=2),
        turn("r2", "a2", "user", [tool_result("toolu_2", "lantern: 8 ready")], at=2),
        turn("a3", "r2", "assistant", "Lantern has work.", at=3),
    ])
    (record,), _ = run(path)
    assert record["messages"][2:] == [
        {"role": "assistant", "content": "", "tool_calls": [
            call("toolu_1", "Bash", '{"command": "gt ready --rig=harbor"}'),
            call("toolu_2", "Bash", '{"command": "gt ready --rig=lantern"}')]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "Bash", "content": "harbor: 0 ready"},
        {"role": "tool", "tool_call_id": "toolu_2", "name": "Bash", "content": "lantern: 8 ready"},
        {"role": "assistant", "content": "Lantern has work."},
    ]
    assert (record["meta"]["lines"], record["meta"]["abandoned_lines"]) == ("1-6", 0)


def test_compaction_continues_the_session_and_meta_lines_are_not_turns(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", "Start the patrol.", at=0),
        turn("a1", "u1", "assistant", "Patrol started.", at=1),
        {"type": "system", "subtype": "compact_boundary", "uuid": "b1", "parentUuid": None, "logicalParentUuid": "a1",
         "sessionId": "s-1", "timestamp": "2026-11-24T14:02:00.000Z", "content": "Conversation compacted"},
        turn("c1", "b1", "user", "This session is being continued from a previous conversation…", at=3,
             isCompactSummary=True),
        turn("m1", "c1", "user", "<local-command-stdout>ok</local-command-stdout>", at=4, isMeta=True),
        turn("u2", "m1", "user", "Any stuck polecats?", at=5),
        turn("a2", "u2", "assistant", "None.", at=6),
        {"type": "file-history-snapshot", "messageId": "a2", "snapshot": {}},
    ])
    (record,), rejected = run(path)
    assert rejected == [
        Rejected(f"{path}:8", "a `file-history-snapshot` line without a uuid is not part of a conversation")]
    assert [m["content"] for m in record["messages"][1:]] == ["Start the patrol.", "Patrol started.",
                                                              "Any stuck polecats?", "None."]
    assert record["meta"]["lines"] == "1-7"


def test_user_text_merges_and_orphan_results_are_kept(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", [tool_result("toolu_gone", "output of a call made before a resume")], at=0),
        turn("u2", "u1", "user", [text("Now run `gt done`.")], at=1),
        turn("u3", "u2", "user", "And mail the witness.", at=2),
        turn("a1", "u3", "assistant", "Done and mailed.", at=3),
    ])
    (record,), _ = run(path)
    assert record["messages"][1:] == [
        {"role": "tool", "tool_call_id": "toolu_gone", "name": "", "content": "output of a call made before a resume"},
        {"role": "user", "content": "Now run `gt done`.\n\nAnd mail the witness."},
        {"role": "assistant", "content": "Done and mailed."},
    ]
    assert record["meta"]["orphan_tool_results"] == ["toolu_gone"]


def test_bad_lines_and_sessions_without_an_answer_are_rejected_with_where(tmp_path):
    path = write(tmp_path, [
        turn("u1", None, "user", "Fix hb-zul.", at=0),
        '{"type": "user", "uuid": ',
        turn("u2", "u1", "user", "oops", at=1) | {"message": "error"},
        turn("a1", "u2", "assistant", "On it.", at=2),  # its parent was rejected: it continues the line before
        turn("a1", "u1", "assistant", "Duplicate.", at=3),
        "[1]",
        "",
        turn("x1", None, "user", "Anyone there?", at=4, session="s-other"),
    ])
    (record,), rejected = run(path)
    assert rejected == [
        Rejected(f"{path}:2", "not JSON (Expecting value)"),
        Rejected(f"{path}:3", "`message` is not an object"),
        Rejected(f"{path}:5", "duplicate uuid `a1` (first at line 4)"),
        Rejected(f"{path}:6", "not a transcript line (a JSON list with no `type`)"),
        Rejected(f"{path}:8", "session `s-other` has no assistant message"),
    ]
    assert [m["content"] for m in record["messages"][1:]] == ["Fix hb-zul.", "On it."]
    assert record["meta"]["lines"] == "1,4"


@pytest.mark.parametrize(("cwd", "expected"), [
    ("/home/op/gt/harbor/polecats/nux", ("polecat", "harbor", "harbor/polecats/nux")),
    ("/home/op/gt/harbor/polecats/nux/harbor/internal/witness", ("polecat", "harbor", "harbor/polecats/nux")),
    ("/home/op/gt/harbor/crew/max/rig", ("crew", "harbor", "harbor/crew/max")),
    ("/home/op/gt/harbor/witness", ("witness", "harbor", "harbor/witness")),
    ("/home/op/gt/harbor/refinery/rig", ("refinery", "harbor", "harbor/refinery")),
    ("/home/op/gt/mayor", ("mayor", "", "mayor/")),
    ("/home/op/gt/deacon", ("deacon", "", "deacon/")),
    ("/home/op/gt/deacon/dogs/rex", ("dog", "", "deacon/dogs/rex")),
    ("/home/op/gt/harbor/mayor/rig", ("", "", "")),
    ("/tmp", ("", "", "")),
    ("", ("", "", "")),
])
def test_role_from_workdir_shape(cwd, expected):
    assert role_from_cwd(cwd) == expected


def test_role_below_the_town_root_reads_from_the_town_down():
    assert role_from_cwd("/home/crew/gt/harbor/witness") == ("crew", "home", "home/crew/gt")  # the shape guess misleads
    town = Path("/home/crew/gt")
    assert role_from_cwd("/home/crew/gt/harbor/witness", town) == ("witness", "harbor", "harbor/witness")
    assert role_from_cwd("/home/crew/gt", town) == ("", "", "")
    assert role_from_cwd("/srv/gt/mayor", town) == ("mayor", "", "mayor/")  # another machine


def test_session_start_wins_over_cwd(tmp_path):
    path = write(tmp_path, [turn("u1", None, "user", "Patrol.", at=0, cwd="/tmp"),
                            turn("a1", "u1", "assistant", "Done.", at=1, cwd="/tmp")])
    starts = {"s-1": {"session_id": "s-1", "role": "harbor/witness", "cwd": "/home/op/gt/harbor/witness"}}
    (record,), _ = run(path, session_roles=starts)
    assert record["messages"][0] == {"role": "system", "content": "You are a Gas Town witness agent in rig `harbor`."}
    assert [record["meta"][k] for k in ("role", "rig", "actor", "cwd")] == ["witness", "harbor", "harbor/witness",
                                                                            "/tmp"]
    crew = {"session_id": "s-1", "role": "crew", "cwd": "/home/op/gt/harbor/crew/max"}  # a bare role name
    (bare,), _ = run(path, session_roles={"s-1": crew})
    assert [bare["meta"][k] for k in ("role", "rig", "actor")] == ["crew", "harbor", "harbor/crew/max"]
    (mayor,), _ = run(path, session_roles={"s-1": {"session_id": "s-1", "role": "mayor"}})
    assert mayor["messages"][0]["content"] == "You are a Gas Town mayor agent."


def test_options_are_checked():
    with pytest.raises(InputError, match="`max_tool_output_chars` must be at least 1, got 0"):
        TranscriptOptions(max_tool_output_chars=0)


def test_find_transcripts_in_config_dir_projects_dir_or_file(tmp_path):
    path = write(tmp_path, [turn("u1", None, "user", "hi", at=0)])
    sub = path.parent / "s-1" / "subagents" / "agent-a1.jsonl"
    sub.parent.mkdir(parents=True)
    sub.write_text("")
    (tmp_path / "history.jsonl").write_text("{}\n")  # a config dir's prompt history is no transcript
    assert find_transcripts(tmp_path) == [sub, path]
    assert find_transcripts(tmp_path / "projects") == [sub, path]
    assert find_transcripts(path) == [path]
    with pytest.raises(InputError, match="does not exist"):
        find_transcripts(tmp_path / "nope")


def test_real_transcripts_account_for_every_line(shared):
    folder = shared / "fixtures" / "real" / "claude-code-transcripts"
    paths = find_transcripts(folder)
    assert [p.name for p in paths] == ["edge_cases.jsonl", "representative_messages.jsonl", "session_b.jsonl",
                                       "todowrite_examples.jsonl"]
    records, rejected = run(*paths)
    for path in paths:
        numbered = [(no, line) for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                    if line.strip()]
        used = [spans(r["meta"]["lines"]) for r in records if r["meta"]["location"] == str(path)]
        refused = {int(r.where.rsplit(":", 1)[1]) for r in rejected if r.where.startswith(f"{path}:")}
        summaries = {no for no, line in numbered if _type(line) == "summary" and '"uuid"' not in line}
        parts = [*used, refused, summaries]
        assert sum(map(len, parts)) == len(numbered), path.name  # no line is counted twice…
        assert set().union(*parts) == {no for no, _ in numbered}, path.name  # …and none is missed
    assert all(r["meta"]["abandoned_lines"] == 0 for r in records)
    edge = str(folder / "edge_cases.jsonl")
    assert rejected == [
        Rejected(f"{edge}:10", "`message.content` is neither text nor a list of blocks"),
        Rejected(f"{edge}:11", "`message` is not an object"),
        Rejected(f"{edge}:13", "not a transcript line (a JSON str with no `type`)"),
        Rejected(f"{edge}:14", "not a transcript line (a JSON dict with no `type`)"),
        Rejected(f"{edge}:15", "not a transcript line (a JSON int with no `type`)"),
        Rejected(f"{edge}:16", "not a transcript line (a JSON list with no `type`)"),
        Rejected(f"{edge}:18", "`message.content[0]` is not a content block"),
    ]
    assert [(Path(r["meta"]["location"]).name, r["meta"]["session"], r["meta"]["lines"], len(r["messages"]),
             r["meta"]["model"]) for r in records] == [
        ("edge_cases.jsonl", "edge_cases", "1-9,12", 9, "claude-3-sonnet-20240229"),
        ("edge_cases.jsonl", "todowrite_session", "17", 2, "claude-sonnet-4"),
        ("representative_messages.jsonl", "test_session", "1-11", 12, "claude-3-sonnet-20240229"),
        ("session_b.jsonl", "session_b", "1-3", 4, "claude-3-sonnet-20240229"),
        ("todowrite_examples.jsonl", "todowrite_session", "1-11", 12, "claude-sonnet-4"),
    ]
    assert [r["meta"]["summary"][:30] for r in records] == [
        "Tested various edge cases incl", "", "User learned about Python deco", "", "Feature Implementation with Ta"]
    assert {(r["meta"]["role"], r["messages"][0]["content"]) for r in records} == {("", "You are a Gas Town agent.")}
    edge_tool = records[0]["messages"][5]
    assert edge_tool == {"role": "tool", "tool_call_id": "tool_edge_001", "name": "FailingTool",
                         "content": "Error: Tool execution failed with error: Command not found"}


def _type(line: str):
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row.get("type") if isinstance(row, dict) else None


def test_sample_town_transcripts_map_to_their_roles():
    paths = find_transcripts(SAMPLE_TOWN / "claude")
    expected = [("polecat", "harbor", "harbor/polecats/nux", SYSTEM_NUX),
                ("witness", "harbor", "harbor/witness", "You are a Gas Town witness agent in rig `harbor`."),
                ("mayor", "", "mayor/", "You are a Gas Town mayor agent.")]
    starts = session_starts(SAMPLE_TOWN / ".events.jsonl")
    for options in ({}, {"session_roles": starts}, {"town_root": Path("/home/op/gt")}):
        records, rejected = run(*paths, **options)
        assert rejected == []
        assert [(r["meta"]["role"], r["meta"]["rig"], r["meta"]["actor"], r["messages"][0]["content"])
                for r in records] == expected
    assert [(r["meta"]["lines"], len(r["messages"]), r["meta"]["generated_by"]) for r in records] == [
        ("1-24", 25, "model:claude-sonnet-4-5-20250929"), ("1-18", 19, "model:claude-sonnet-4-5-20250929"),
        ("1-20", 21, "model:claude-sonnet-4-5-20250929")]
    assert records[2]["meta"]["summary"] == "Mayor: unstick rictus (force-push guard), sling lantern work to toast"
    assert starts["3e443a8f-525b-401f-9d48-20add9564a77"]["role"] == "mayor"


def test_harvest_entry_reads_roles_from_the_town_and_counts_lines():
    ctx = HarvestContext(town=load_town(SAMPLE_TOWN, env={}))
    records = list(harvest(str(SAMPLE_TOWN / "claude"), ctx))
    assert [r["meta"]["actor"] for r in records] == ["harbor/polecats/nux", "harbor/witness", "mayor/"]
    # every non-blank line is counted, the trailing `summary` line included (it feeds meta.summary)
    files = find_transcripts(SAMPLE_TOWN / "claude")
    lines = [sum(1 for line in f.read_text(encoding="utf-8").splitlines() if line.strip()) for f in files]
    assert lines == [25, 19, 21]
    assert ctx.accounting == {str(f): {"lines": n, "used": n, "rejected": 0} for f, n in zip(files, lines)}
    assert list(harvest(str(SAMPLE_TOWN / "claude"), ctx)) == []  # nothing changed since


def test_harvest_entry_counts_every_non_blank_line_once(tmp_path):
    """Live lines and the summary are used; abandoned lines and uuid-less housekeeping are rejected."""
    path = write(tmp_path, [
        turn("u1", None, "user", "Fix hb-zul.", at=0),
        turn("a1", "u1", "assistant", "Where should I start?", at=1),
        turn("u2a", "a1", "user", "Patch the allocator.", at=2),
        turn("a2a", "u2a", "assistant", "Patched without a test.", at=3),
        turn("u2b", "a1", "user", "Write the failing test first.", at=4),
        turn("a2b", "u2b", "assistant", "Test written; it fails as expected.", at=5),
        "",
        {"type": "file-history-snapshot", "messageId": "a2b", "snapshot": {}},
        {"type": "summary", "summary": "Test-first fix of hb-zul", "leafUuid": "a2b"},
    ])
    ctx = HarvestContext()
    items = list(harvest(str(path), ctx))
    assert [i["meta"]["summary"] for i in items if isinstance(i, dict)] == ["Test-first fix of hb-zul"]
    assert [i for i in items if isinstance(i, Rejected)] == [
        Rejected(f"{path}:8", "a `file-history-snapshot` line without a uuid is not part of a conversation"),
        Rejected(f"{path}:3", ABANDONED), Rejected(f"{path}:4", ABANDONED)]
    assert ctx.accounting == {str(path): {"lines": 8, "used": 5, "rejected": 3}}
