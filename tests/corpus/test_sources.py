"""Corpus sources one by one: the event feed, formulas, role context and the job's bead store."""
import hashlib
import json
from pathlib import Path

import pytest

from gt_finetune.beads import EmbeddedStore
from gt_finetune.corpus import CorpusSpec, build_corpus, load_records
from gt_finetune.corpus.records import Rejected
from gt_finetune.corpus.sources import events, formulas, role_context, store_beads
from gt_finetune.corpus.sources.beads_rows import SYSTEM_PROMPT
from gt_finetune.corpus.sources.context import HarvestContext
from gt_finetune.formula import check_formula
from gt_finetune.workspace import read_manifest



def content_hash(messages: list[dict], tools: list | tuple = ()) -> str:
    body = json.dumps({"messages": messages, "tools": list(tools)}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def harvest(module, location, ctx: HarvestContext | None = None) -> tuple[list[dict], list[Rejected], HarvestContext]:
    ctx = ctx or HarvestContext()
    items = list(module.harvest(str(location), ctx))
    return ([i for i in items if isinstance(i, dict)], [i for i in items if isinstance(i, Rejected)], ctx)


# --- events ----------------------------------------------------------------------------------

def event(type_, payload=None, actor="harbor/witness", ts="2026-11-24T00:37:16Z") -> str:
    line = {"ts": ts, "source": "gt", "type": type_, "actor": actor, "visibility": "feed"}
    if payload is not None:
        line["payload"] = payload
    return json.dumps(line)


@pytest.mark.parametrize("type_, payload, ask, command", [
    ("sling", {"bead": "hb-1", "target": "harbor/polecats/nux"},
     "Hand bead hb-1 to harbor/polecats/nux.", "gt sling hb-1 harbor/polecats/nux"),
    ("mail", {"to": "harbor/refinery", "subject": "MERGE_READY nux"},
     "Mail harbor/refinery with subject `MERGE_READY nux`.",
     "gt mail send harbor/refinery -s 'MERGE_READY nux' --stdin"),
    ("nudge", {"target": "harbor/polecats/nux", "message": "Quiet for 30m. Still working?"},
     "Nudge harbor/polecats/nux: Quiet for 30m. Still working?",
     "gt nudge harbor/polecats/nux 'Quiet for 30m. Still working?'"),
    ("nudge", {"to": "lantern/witness", "message": "ok"}, "Nudge lantern/witness: ok", "gt nudge lantern/witness ok"),
    ("hook", {"bead": "hb-1"}, "Put bead hb-1 on your hook.", "gt hook hb-1"),
    ("done", {"bead": "hb-1", "branch": "polecat/nux/hb-1"}, "You finished your work on hb-1; hand it off.",
     "gt done"),
    ("done", {"bead": "hb-1", "status": "escalated"}, "You finished your work on hb-1; hand it off.",
     "gt done --status ESCALATED"),
    ("done", {"issue": "hb-2", "exit": "DEFERRED"}, "You finished your work on hb-2; hand it off.",
     "gt done --status DEFERRED"),
    ("done", {"status": "COMPLETED"}, "You finished; hand off.", "gt done"),
    ("patrol_complete", {"message": "4 working; nothing to escalate", "polecat_count": 6},
     "Close this patrol cycle and report what you found: 4 working; nothing to escalate",
     "gt patrol report --summary '4 working; nothing to escalate'"),
    ("escalation_sent", {"reason": "Dolt is down", "severity": "high"},
     "Escalate (high severity): Dolt is down", "gt escalate 'Dolt is down' -s HIGH"),
    ("escalation_sent", {"message": "Disk at 95%"},
     "Escalate (medium severity): Disk at 95%", "gt escalate 'Disk at 95%' -s MEDIUM"),
])
def test_each_event_type_becomes_its_command(tmp_path, type_, payload, ask, command):
    feed = tmp_path / ".events.jsonl"
    feed.write_text(event(type_, payload) + "\n")
    records, rejected, ctx = harvest(events, feed)
    assert rejected == []
    messages = [{"role": "system", "content": events.SYSTEM.format(actor="harbor/witness")},
                {"role": "user", "content": ask}, {"role": "assistant", "content": command}]
    assert records == [{
        "messages": messages, "tools": [],
        "meta": {"source": "events", "location": str(feed), "line": 1, "event": type_, "rig": "harbor",
                 "role": "witness",
                 "actor": "harbor/witness", "session": "", "created_at": "2026-11-24T00:37:16Z",
                 "generated_by": "agent:harbor/witness", "content_hash": content_hash(messages)}}]
    assert ctx.accounting == {str(feed): {"lines": 1, "used": 1, "rejected": 0}}


def test_event_feed_rejects_what_has_no_command(tmp_path):
    feed = tmp_path / ".events.jsonl"
    lines = [
        event("sling", {"bead": "hb-1", "target": "harbor/polecats/nux", "session_id": "s-1"}, actor="mayor"),  # 1
        "",                                                                             # 2 blank
        event("spawn", {"polecat": "nux", "rig": "harbor"}),                            # 3 no command
        event("session_start", {"session_id": "s-1"}),                                  # 4 no command
        event("sling", {"bead": "hb-1"}),                                               # 5 no target
        event("mail"),                                                                  # 6 no payload
        event("patrol_complete", "4 working"),                                          # 7 payload not an object
        event("escalation_sent", {"severity": "high"}),                                 # 8 no text
        event("hook", {"bead": "hb-1"}, actor="gt"),                                    # 9 the tool, not an agent
        event("hook", {"bead": "hb-1"}, actor=""),                                      # 10 no actor
        '{"ts": "2026-11-24T00:37:16Z", "type": ',                                      # 11 not JSON
        '["sling"]',                                                                    # 12 not an object
        '{"actor": "mayor"}',                                                           # 13 no type
    ]
    feed.write_text("\n".join(lines) + "\n")
    records, rejected, ctx = harvest(events, feed)
    assert [(r["meta"]["event"], r["meta"]["session"], r["meta"]["role"], r["meta"]["rig"]) for r in records] == [
        ("sling", "s-1", "mayor", "")]
    assert rejected == [
        Rejected(f"{feed}:3", "event `spawn`: no command behind it"),
        Rejected(f"{feed}:4", "event `session_start`: no command behind it"),
        Rejected(f"{feed}:5", "event `sling`: payload lacks the fields the command needs"),
        Rejected(f"{feed}:6", "event `mail`: payload lacks the fields the command needs"),
        Rejected(f"{feed}:7", "event `patrol_complete`: payload lacks the fields the command needs"),
        Rejected(f"{feed}:8", "event `escalation_sent`: payload lacks the fields the command needs"),
        Rejected(f"{feed}:9", "event `hook` has no agent actor"),
        Rejected(f"{feed}:10", "event `hook` has no agent actor"),
        Rejected(f"{feed}:11", "not JSON (Expecting value)"),
        Rejected(f"{feed}:12", "not an event (no `type`)"),
        Rejected(f"{feed}:13", "not an event (no `type`)"),
    ]
    assert ctx.accounting == {str(feed): {"lines": 12, "used": 1, "rejected": 11}}


def test_a_town_folder_reads_the_raw_and_the_curated_feed_once(tmp_path):
    (tmp_path / ".events.jsonl").write_text(event("hook", {"bead": "hb-1"}) + "\n")
    (tmp_path / ".feed.jsonl").write_text(event("hook", {"bead": "hb-2"}) + "\n" + event("spawn", {}) + "\n")
    ctx = HarvestContext()
    records, rejected, _ = harvest(events, tmp_path, ctx)
    assert [(r["meta"]["location"], r["messages"][2]["content"]) for r in records] == [
        (str(tmp_path / ".events.jsonl"), "gt hook hb-1"), (str(tmp_path / ".feed.jsonl"), "gt hook hb-2")]
    assert rejected == [Rejected(f"{tmp_path / '.feed.jsonl'}:2", "event `spawn`: no command behind it")]
    # unchanged files are not read again
    assert harvest(events, tmp_path, HarvestContext(state=ctx.state))[:2] == ([], [])
    with pytest.raises(FileNotFoundError):
        harvest(events, tmp_path / "nowhere")


def test_a_nudge_as_gt_writes_it_becomes_gt_nudge(tmp_path):
    feed = tmp_path / ".events.jsonl"
    feed.write_text(event("nudge", {"reason": "Are you blocked?", "rig": "harbor", "target": "harbor/polecats/nux"})
                    + "\n")
    records, rejected, _ = harvest(events, feed)
    assert rejected == []
    assert records[0]["messages"][2]["content"] == "gt nudge harbor/polecats/nux 'Are you blocked?'"


# --- formulas --------------------------------------------------------------------------------

TINY_FORMULA = '''formula = "mol-tiny"
description = """
Say hello to the rig.

Longer notes nobody reads.
"""
type = "workflow"
version = 1

[[steps]]
id = "hello"
title = "Say hello"
'''
BAD_FORMULA = 'formula = "mol-bad"\ntype = "workflow"\n\n[[steps]]\nid = "a"\ntitle = "A"\nneeds = ["zzz"]\n'


@pytest.fixture
def formula_dir(tmp_path) -> Path:
    root = tmp_path / "formulas"
    (root / "nested").mkdir(parents=True)
    (root / "mol-tiny.formula.toml").write_text(TINY_FORMULA)
    (root / "nested" / "mol-json.formula.json").write_text(
        '{"formula": "mol-json", "type": "workflow", "steps": [{"id": "a", "title": "A"}]}\n')
    (root / "mol-bad.formula.toml").write_text(BAD_FORMULA)
    (root / "notes.toml").write_text("not a formula\n")
    (root / "README.md").write_text("# formulas\n")
    return root


def test_formulas_become_authoring_examples(formula_dir):
    records, rejected, ctx = harvest(formulas, formula_dir)
    tiny, as_json = formula_dir / "mol-tiny.formula.toml", formula_dir / "nested" / "mol-json.formula.json"
    messages = [{"role": "system", "content": formulas.SYSTEM},
                {"role": "user", "content": "Write the Gas Town formula `mol-tiny`: Say hello to the rig."},
                {"role": "assistant", "content": TINY_FORMULA.strip()}]
    assert records[0] == {"messages": messages, "tools": [], "meta": {
        "source": "formulas", "location": str(tiny), "formula": "mol-tiny", "rig": "", "role": "", "actor": "",
        "session": "", "created_at": "", "generated_by": "unknown", "content_hash": content_hash(messages)}}
    assert records[1]["messages"][1:] == [
        {"role": "user", "content": "Write the Gas Town formula `mol-json`."},
        {"role": "assistant", "content": as_json.read_text().strip()}]
    assert len(records) == 2
    bad = formula_dir / "mol-bad.formula.toml"
    message = f"{bad}:7: `steps[0].needs`: step `a` needs unknown step `zzz`"
    assert check_formula(bad)[0].message == message
    assert rejected == [Rejected(str(bad), f"formula does not validate: {message}")]
    # one entry per formula file; other files are not formulas and are not counted
    assert ctx.accounting == {str(bad): {"lines": 1, "used": 0, "rejected": 1},
                              str(tiny): {"lines": 1, "used": 1, "rejected": 0},
                              str(as_json): {"lines": 1, "used": 1, "rejected": 0}}


def test_one_formula_file_can_be_named(formula_dir):
    records, rejected, _ = harvest(formulas, formula_dir / "mol-tiny.formula.toml")
    assert (len(records), rejected) == (1, [])
    with pytest.raises(FileNotFoundError):
        harvest(formulas, formula_dir / "missing")


# --- role context ----------------------------------------------------------------------------

@pytest.fixture
def town(tmp_path) -> Path:
    root = tmp_path / "gt"
    for folder in ("directives", "harbor/directives", "roles", "captures"):
        (root / folder).mkdir(parents=True)
    (root / "directives" / "mayor.md").write_text("\nKeep the convoys moving.\n")
    (root / "directives" / "notes.md").write_text("not a role\n")
    (root / "directives" / "polecat.md").write_text("  \n")
    (root / "harbor" / "config.json").write_text('{"type": "rig", "name": "harbor"}\n')  # a rig container
    (root / "harbor" / "directives" / "witness.md").write_text("Patrol every 10 minutes.")
    (root / "roles" / "crew.md.tmpl").write_text("You are crew {{name}}.")
    (root / "captures" / "deacon.prime.md").write_text("Deacon prime output.")
    (root / "captures" / "mayor.md").write_text("a role name outside directives/ or roles/")
    return root


def test_role_context_files_become_records(town):
    records, rejected, ctx = harvest(role_context, town)
    assert [(r["meta"]["role"], r["meta"]["rig"], r["meta"]["kind"], r["messages"][2]["content"]) for r in records] == [
        ("deacon", "", "prime output", "Deacon prime output."),
        ("mayor", "", "directive", "Keep the convoys moving."),
        ("witness", "harbor", "directive", "Patrol every 10 minutes."),
        ("crew", "", "template", "You are crew {{name}}."),
    ]
    witness = records[2]
    messages = [{"role": "system",
                 "content": "You are a Gas Town witness in rig `harbor`. You know the rules your role works under."},
                {"role": "user", "content": "What does your role directive tell you?"},
                {"role": "assistant", "content": "Patrol every 10 minutes."}]
    assert witness == {"messages": messages, "tools": [], "meta": {
        "source": "role_context", "location": str(town / "harbor" / "directives" / "witness.md"),
        "kind": "directive", "rig": "harbor", "role": "witness", "actor": "", "session": "", "created_at": "",
        "generated_by": "unknown", "content_hash": content_hash(messages)}}
    assert records[1]["messages"][0]["content"] == "You are a Gas Town mayor. You know the rules your role works under."
    empty = town / "directives" / "polecat.md"
    assert rejected == [Rejected(str(empty), "empty")]
    # notes.md and captures/mayor.md are not role files: neither harvested nor counted
    assert sorted(ctx.accounting) == sorted(str(p) for p in (
        town / "captures" / "deacon.prime.md", town / "directives" / "mayor.md", empty,
        town / "harbor" / "directives" / "witness.md", town / "roles" / "crew.md.tmpl"))
    assert ctx.accounting[str(empty)] == {"lines": 1, "used": 0, "rejected": 1}


def test_role_context_rejects_what_cannot_be_learned(tmp_path):
    root = tmp_path / "directives"
    root.mkdir()
    (root / "mayor.md").write_text("x" * 20_001)
    (root / "witness.md").write_bytes(b"\xff\xfe not utf-8")
    records, rejected, _ = harvest(role_context, root)
    assert records == []
    assert rejected == [Rejected(str(root / "mayor.md"), "20001 chars, over 20000: too long to learn as one answer"),
                        Rejected(str(root / "witness.md"), "not UTF-8 text")]
    with pytest.raises(FileNotFoundError):
        harvest(role_context, tmp_path / "nowhere")


def test_town_directives_named_by_their_folder_have_no_rig(town):
    records, _, _ = harvest(role_context, town / "directives")
    mayor = next(r for r in records if r["meta"]["role"] == "mayor")
    assert mayor["meta"]["rig"] == ""


def test_only_a_folder_holding_config_json_names_the_rig_of_its_directives(tmp_path):
    """`<town>/<rig>/directives/` is a rig's when `<rig>/config.json` marks a rig container; any
    other folder above `directives/` (the town root, a copy, a checkout) names no rig."""
    for folder in ("harbor", "notes"):
        (tmp_path / folder / "directives").mkdir(parents=True)
        (tmp_path / folder / "directives" / "witness.md").write_text(f"Patrol {folder}.")
    (tmp_path / "harbor" / "config.json").write_text("{}\n")
    records, rejected, _ = harvest(role_context, tmp_path)
    assert rejected == []
    assert [(r["meta"]["rig"], r["messages"][0]["content"]) for r in records] == [
        ("harbor", "You are a Gas Town witness in rig `harbor`. You know the rules your role works under."),
        ("", "You are a Gas Town witness. You know the rules your role works under.")]


# --- the job's bead store --------------------------------------------------------------------

CLOSE_REASON = "Lowered the LR to 1e-4 and warmed up for 20 steps; loss is flat."


@pytest.fixture
def store(tmp_path):
    s = EmbeddedStore(tmp_path / "store" / "beads.db", prefix="ft", actor="harbor/polecats/nux")
    done = s.create("Tune the LR", description="Loss diverges at step 40.")
    s.close(done.id, CLOSE_REASON)
    s.create("Still open")
    short = s.create("Short reason")
    s.close(short.id, "done")
    job = s.create("Fine-tune job", labels=["ft:job"])
    s.close(job.id, "The job finished and its model was exported.")
    return s


def test_store_beads(store):
    records, rejected, ctx = harvest(store_beads, "", HarvestContext(store=store))
    beads = {b.title: b for b in store.list(include_closed=True)}
    done = beads["Tune the LR"]
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(rig="ft")},
                {"role": "user", "content": f"Bead {done.id} (task, P2): Tune the LR\n\nLoss diverges at step 40."},
                {"role": "assistant", "content": CLOSE_REASON}]
    assert records == [{"messages": messages, "tools": [], "meta": {
        "source": "beads", "location": store.location, "bead_id": done.id, "rig": "ft", "role": "", "actor": "",
        "assignee": "", "session": "", "created_at": done.created_at, "closed_at": done.closed_at,
        "generated_by": "unknown", "content_hash": content_hash(messages)}}]
    assert sorted(rejected, key=lambda r: r.reason) == [
        Rejected(f"{store.location}#{beads['Short reason'].id}", "close reason too short (4 chars)"),
        Rejected(f"{store.location}#{beads['Fine-tune job'].id}", "plumbing bead (label ft:job)"),
        Rejected(f"{store.location}#{beads['Still open'].id}", "status is 'open', not closed"),
    ]
    assert ctx.accounting == {store.location: {"lines": 4, "used": 1, "rejected": 3}}
    with pytest.raises(FileNotFoundError):
        harvest(store_beads, "", HarvestContext())


def test_store_beads_through_build_corpus(store, isolated):
    m = build_corpus(CorpusSpec(inputs=(("store", ""),)), home=isolated, store=store, quiet=True)
    assert (m.records, m.rejected, m.source) == (1, 3, "beads 1")
    assert [r["messages"][2]["content"] for r in load_records(m.path)] == [CLOSE_REASON]
    assert read_manifest(m.path)["accounting"] == {store.location: {"lines": 4, "used": 1, "rejected": 3}}
