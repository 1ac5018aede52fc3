"""Beads as corpus records: the JSONL source, bead/mail rows, real backups and the sample town."""
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus
from gt_finetune.corpus.records import Rejected, generated_by, make_record
from gt_finetune.corpus.sources.beads_jsonl import clean, find_issues_file, read_rows
from gt_finetune.corpus.sources.beads_rows import (MAIL_SYSTEM, SYSTEM_PROMPT, bead_record, mail_record, rig_of,
                                                   rig_of_actor, role_of)
from gt_finetune.errors import InputError
from gt_finetune.town import load_town
from gt_finetune.workspace import read_jsonl, read_manifest

SYSTEM_HB = SYSTEM_PROMPT.format(rig="hb")


def content_hash(messages: list[dict], tools: list | tuple = ()) -> str:
    """sha256 of the canonical JSON of messages and tools, computed here independently of the code."""
    body = json.dumps({"messages": messages, "tools": list(tools)}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def bead(id_, **fields) -> dict:
    row = {"id": id_, "title": f"Fix {id_}", "description": "", "status": "closed", "issue_type": "task",
           "priority": 2, "ephemeral": 0, "close_reason": "Fixed it and added a regression test.",
           "created_by": "mayor/", "assignee": None, "created_at": "2026-03-01T10:00:00Z",
           "closed_at": "2026-03-01T11:00:00Z", "closed_by_session": ""}
    row.update(fields)
    return row


def spec(location, **kw) -> CorpusSpec:
    return CorpusSpec(inputs=(("beads_jsonl", str(location)),), **kw)


ISSUE_LINES = [
    json.dumps(bead("hb-a1", title="Flaky billing test", description="Fails 1 in 20 runs.",
                    assignee="harbor/polecats/nux", priority=1, closed_by_session="sess-1",
                    close_reason="Froze the clock with a fixture; 300 runs green.")),      # 1 agent
    '{"id": "hb-a2", "title": }',                                                          # 2 not JSON
    "",                                                                                    # 3 blank
    '["hb-a3", "closed"]',                                                                 # 4 not a record
    json.dumps(bead("hb-a4", assignee="overseer",
                    close_reason="Approved the release notes as written.")),              # 5 human
    json.dumps(bead("hq-a5", created_by="kv@example.com", assignee="None", description="None",
                    priority="None", closed_at="None", closed_by_session="None",
                    close_reason="Rotated the deploy key and updated the vault entry.")),  # 6 "None"
    json.dumps(bead("hb-a6", ephemeral=1, close_reason="Patrol step done, nothing to report.")),  # 7 wisp
    json.dumps(bead("hq-a7", issue_type="message", close_reason="Message delivered and acked.")),  # 8
    json.dumps(bead("hq-a8", created_by=None, assignee="mayor/", title="Billing test is flaky again",
                    description="Seen it fail twice today.", close_reason="")),           # 9 mail (label)
    json.dumps(bead("hb-a9", status="open")),                                              # 10
    json.dumps(bead("hb-b1", close_reason="done")),                                        # 11 short
    json.dumps(bead("hb-b2", title="   ")),                                                # 12 no title
    json.dumps(bead("hb-b3", ephemeral="None", issue_type="None", created_by="None",
                    created_at="2026-03-05T09:00:00Z",
                    close_reason="Bumped the pinned version and reran CI.")),             # 13 kept
    json.dumps({"title": "no id at all"}),                                                 # 14
    json.dumps(bead("hq-b4", assignee=None, title="Where is the merge queue?")),           # 15 mail, no recipient
]
LABEL_LINES = [
    '{"issue_id":"hq-a8","label":"gt:message"}',
    '{"issue_id":"hq-a8","label":"from:harbor/witness"}',
    'not json',
    '{"label":"orphan"}',
    '{"issue_id":"hb-a1","label":"ci-failure"}',
    '{"issue_id":"hq-b4","label":"gt:message"}',
    '{"issue_id":"hb-a9","label":"backlog"}',
    '{"issue_id":"hq-a8","label":"msg-type:reply"}',
]
COMMENT_LINES = [
    '{"issue_id":"hb-a1","author":"harbor/witness","text":"Seen it fail twice. ","created_at":"2026-03-01T10:30:00Z"}',
    '{"issue_id":"hb-a6","author":"deacon/","text":"Patrol ran.","created_at":"2026-03-01T10:31:00Z"}',
]
CONFIG_LINES = ['{"key":"issue_prefix","value":"hb"}', "", '{"key":"status.custom","value":""}']

FLAKY_MESSAGES = [
    {"role": "system", "content": SYSTEM_HB},
    {"role": "user", "content": "Bead hb-a1 (task, P1): Flaky billing test\n\nFails 1 in 20 runs.\n\n"
                                "Comments:\n- harbor/witness: Seen it fail twice."},
    {"role": "assistant", "content": "Froze the clock with a fixture; 300 runs green."},
]
MAIL_COMMAND = ("gt mail send mayor/ -s 'Billing test is flaky again' --type reply --stdin <<'BODY'\n"
                "Seen it fail twice today.\nBODY")


@pytest.fixture
def messy(tmp_path) -> Path:
    """A backup folder as real exporters leave them: bad lines, `"None"` for null, mail, wisps, side tables."""
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "issues.jsonl").write_text("\n".join(ISSUE_LINES) + "\n")
    (backup / "labels.jsonl").write_text("\n".join(LABEL_LINES) + "\n")
    (backup / "comments.jsonl").write_text("\n".join(COMMENT_LINES) + "\n")
    (backup / "config.jsonl").write_text("\n".join(CONFIG_LINES) + "\n")
    return backup


@pytest.fixture
def real(shared) -> Path:
    return shared / "fixtures" / "real"


def records_of(m) -> list[dict]:
    return read_jsonl(m.path / "records.jsonl")


# --- the hand-made backup --------------------------------------------------------------------

def test_messy_backup_keeps_good_rows_and_lists_every_rejection(messy, isolated):
    m = build_corpus(spec(messy), home=isolated)
    issues, labels, comments, config = (messy / f"{n}.jsonl" for n in ("issues", "labels", "comments", "config"))
    assert (m.records, m.new_records, m.rejected, m.source) == (5, 5, 16, "beads 4, mail 1")
    assert m.path == isolated / "corpus" / m.id
    assert re.fullmatch(r"corpus-\d{8}T\d{6}-[0-9a-f]{12}", m.id)
    assert [(r["meta"]["source"], r["meta"]["bead_id"]) for r in records_of(m)] == [
        ("beads", "hb-a1"), ("beads", "hb-a4"), ("beads", "hq-a5"), ("mail", "hq-a8"), ("beads", "hb-b3")]
    # unreadable lines (issues, then side tables), files that hold no examples, beads that are not
    # examples in file order, then side-table rows of beads that gave no record
    assert read_jsonl(m.path / "rejected.jsonl") == [
        {"where": f"{issues}:2", "reason": "not JSON (Expecting value)"},
        {"where": f"{issues}:4", "reason": "not a record (no `id`)"},
        {"where": f"{issues}:14", "reason": "not a record (no `id`)"},
        {"where": f"{labels}:3", "reason": "not JSON (Expecting value)"},
        {"where": f"{labels}:4", "reason": "not a record (no `issue_id`)"},
        {"where": f"{config}:1", "reason": "config rows are not examples"},
        {"where": f"{config}:3", "reason": "config rows are not examples"},
        {"where": f"{issues}:7", "reason": "ephemeral (wisp)"},
        {"where": f"{issues}:8", "reason": "plumbing bead (type 'message')"},
        {"where": f"{issues}:10", "reason": "status is 'open', not closed"},
        {"where": f"{issues}:11", "reason": "close reason too short (4 chars)"},
        {"where": f"{issues}:12", "reason": "no title"},
        {"where": f"{issues}:15", "reason": "mail without sender, recipient or subject"},
        {"where": f"{labels}:6", "reason": "belongs to `hq-b4`, not an example"},
        {"where": f"{labels}:7", "reason": "belongs to `hb-a9`, not an example"},
        {"where": f"{comments}:2", "reason": "belongs to `hb-a6`, not an example"},
    ]
    manifest = read_manifest(m.path)
    assert (manifest["stage"], manifest["schema_version"], manifest["id"], manifest["previous"]) == (
        "corpus", 1, m.id, "")
    assert manifest["spec"] == {"inputs": [["beads_jsonl", str(messy)]], "scope": [], "since": "", "until": "",
                                "min_reason_chars": 20}
    assert manifest["counts"] == {"records": 5, "new_records": 5, "rejected": 16,
                                  "by_source": {"beads": 4, "mail": 1},
                                  "by_rig": {"hb": 3, "hq": 1, "-": 1},
                                  "by_role": {"-": 2, "overseer": 1, "polecat": 1, "witness": 1}}
    assert manifest["rejected_reasons"] == {
        "belongs to …, not an example": 3, "not a record": 3, "not JSON": 2, "config rows are not examples": 2,
        "ephemeral": 1, "plumbing bead": 1, "status is 'open', not closed": 1, "close reason too short": 1,
        "no title": 1, "mail without sender, recipient or subject": 1}
    assert manifest["accounting"] == {
        str(issues): {"lines": 14, "used": 5, "rejected": 9},
        str(labels): {"lines": 8, "used": 4, "rejected": 4},
        str(comments): {"lines": 2, "used": 1, "rejected": 1},
        str(config): {"lines": 2, "used": 0, "rejected": 2},
    }
    assert set(manifest["fingerprint"]) == {"files", "tools", "town"}
    assert (manifest["fingerprint"]["files"], manifest["fingerprint"]["town"]) == ({}, "")
    assert set(manifest["fingerprint"]["tools"]) == {"bd", "gt"}


def test_record_shape(messy, isolated):
    m = build_corpus(spec(messy), home=isolated)
    assert records_of(m)[0] == {
        "messages": FLAKY_MESSAGES,
        "tools": [],
        "meta": {"source": "beads", "location": str(messy / "issues.jsonl"), "bead_id": "hb-a1", "rig": "hb",
                 "role": "polecat", "actor": "mayor/", "assignee": "harbor/polecats/nux", "session": "sess-1",
                 "created_at": "2026-03-01T10:00:00Z", "closed_at": "2026-03-01T11:00:00Z",
                 "content_hash": content_hash(FLAKY_MESSAGES),
                 "generated_by": "agent:harbor/polecats/nux",
                 "weight": 1.0},  # the health check weights every kept record; agent text is not synthetic
    }
    assert "`hb`" in SYSTEM_HB


def test_mail_bead_is_a_gt_mail_send_record(messy, isolated):
    m = build_corpus(spec(messy), home=isolated)
    mail = next(r for r in records_of(m) if r["meta"]["bead_id"] == "hq-a8")
    messages = [{"role": "system", "content": MAIL_SYSTEM.format(sender="harbor/witness")},
                {"role": "user", "content": "Send `mayor/` the mail with subject `Billing test is flaky again`."},
                {"role": "assistant", "content": MAIL_COMMAND}]
    assert mail == {
        "messages": messages, "tools": [],
        # the sender comes from the `from:` label when the row has no created_by
        "meta": {"source": "mail", "location": str(messy / "issues.jsonl"), "bead_id": "hq-a8", "rig": "",
                 "role": "witness", "actor": "harbor/witness", "recipient": "mayor/", "session": "",
                 "created_at": "2026-03-01T10:00:00Z", "closed_at": "2026-03-01T11:00:00Z",
                 "generated_by": "agent:harbor/witness", "content_hash": content_hash(messages), "weight": 1.0},
    }


def test_none_strings_read_as_null(messy, isolated):
    m = build_corpus(spec(messy), home=isolated)
    by_id = {r["meta"]["bead_id"]: r for r in records_of(m)}
    r = by_id["hq-a5"]
    # priority "None" → P2; description "None" → no description; assignee "None" → the creator
    assert r["messages"][1]["content"] == "Bead hq-a5 (task, P2): Fix hq-a5"
    assert (r["meta"]["closed_at"], r["meta"]["session"]) == ("", "")
    assert (r["meta"]["actor"], r["meta"]["assignee"], r["meta"]["role"]) == ("kv@example.com", "kv@example.com", "")
    assert r["meta"]["content_hash"] == content_hash(r["messages"])
    # ephemeral "None" is not a wisp; issue_type "None" is a task; created_by "None" is unknown
    b3 = by_id["hb-b3"]
    assert b3["messages"][1]["content"] == "Bead hb-b3 (task, P2): Fix hb-b3"
    assert (b3["meta"]["actor"], b3["meta"]["generated_by"]) == ("", "unknown")
    assert "None" not in json.dumps(by_id)


def test_generated_by_humans_and_agents(messy, isolated):
    m = build_corpus(spec(messy), home=isolated)
    assert {r["meta"]["bead_id"]: r["meta"]["generated_by"] for r in records_of(m)} == {
        "hb-a1": "agent:harbor/polecats/nux", "hb-a4": "human", "hq-a5": "human", "hq-a8": "agent:harbor/witness",
        "hb-b3": "unknown"}
    actors = ("mayor/", "deacon", "cfutons/crew/melania", "overseer", "kv@example.com", "")
    assert [generated_by(a) for a in actors] == [
        "agent:mayor/", "agent:deacon", "agent:cfutons/crew/melania", "human", "human", "unknown"]


def test_stderr_summarises_rejections_by_reason_and_points_at_the_file(messy, isolated, capsys):
    m = build_corpus(spec(messy), home=isolated)
    issues = messy / "issues.jsonl"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "  rejected 16 lines:"
    assert lines[-1] == f"  all of them, with reasons: {m.path / 'rejected.jsonl'}"
    kinds = lines[1:-1]
    assert 1 <= len(kinds) <= 5
    assert all(re.fullmatch(r"\s+\d+× .+ \(e\.g\. \S+\)", k) for k in kinds), kinds
    assert kinds[0].strip() == f"3× not a record (e.g. {issues}:4)"  # most common first


def test_quiet_prints_nothing(messy, isolated, capsys):
    build_corpus(spec(messy), home=isolated, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_min_reason_chars(messy, isolated):
    assert build_corpus(spec(messy, min_reason_chars=0), home=isolated).records == 6  # + hb-b1 ("done")
    strict = build_corpus(spec(messy, min_reason_chars=47), home=isolated)
    # hb-a1 and hq-a5 have 47 and 51 chars; mail has no close reason to measure
    assert [r["meta"]["bead_id"] for r in records_of(strict)] == ["hb-a1", "hq-a5", "hq-a8"]


def test_an_issues_file_can_be_named_directly(messy, isolated):
    m = build_corpus(spec(messy / "issues.jsonl"), home=isolated)
    assert m.records == 5
    assert {r["meta"]["location"] for r in records_of(m)} == {str(messy / "issues.jsonl")}


def test_a_file_not_named_issues_jsonl_reads_side_tables_but_rejects_no_other_files(messy, isolated):
    """Side tables beside the named file are read; other `*.jsonl` are listed only beside `issues.jsonl`."""
    other = messy / "export.jsonl"
    shutil.copy(messy / "issues.jsonl", other)
    m = build_corpus(spec(other), home=isolated, quiet=True)
    accounting = read_manifest(m.path)["accounting"]
    assert sorted(accounting) == sorted(str(messy / f"{n}.jsonl") for n in ("comments", "export", "labels"))
    assert accounting[str(other)] == {"lines": 14, "used": 5, "rejected": 9}
    assert m.records == 5


def test_input_without_issues_jsonl(tmp_path, isolated):
    with pytest.raises(InputError) as err:
        build_corpus(spec(tmp_path / "nowhere"), home=isolated)
    assert err.value.message.startswith(f"corpus input `beads_jsonl:{tmp_path / 'nowhere'}` does not exist (")
    assert err.value.hint == "check the path; `gt-finetune corpus build --help` lists the inputs"
    assert not (isolated / "corpus").exists()


def test_input_without_issues_jsonl_names_the_missing_file(tmp_path, isolated):
    with pytest.raises(InputError) as err:
        build_corpus(spec(tmp_path / "nowhere"), home=isolated)
    missing = tmp_path / "nowhere" / "issues.jsonl"
    assert err.value.message == f"corpus input `beads_jsonl:{tmp_path / 'nowhere'}` does not exist ({missing})"


def test_only_rejections_is_an_error(tmp_path, isolated):
    backup = tmp_path / "b"
    backup.mkdir()
    (backup / "issues.jsonl").write_text(json.dumps(bead("hb-1", status="open")) + "\n")
    with pytest.raises(InputError) as err:
        build_corpus(spec(backup), home=isolated, quiet=True)
    assert err.value.message == f"no usable record in beads_jsonl:{backup} (1 lines rejected)"
    assert not list((isolated / "corpus").glob("corpus-*"))


# --- helpers ---------------------------------------------------------------------------------

def test_find_issues_file_looks_in_beads_backup_and_backup(tmp_path):
    (tmp_path / "town" / ".beads" / "backup").mkdir(parents=True)
    (tmp_path / "town" / ".beads" / "backup" / "issues.jsonl").write_text("")
    (tmp_path / "dump" / "backup").mkdir(parents=True)
    (tmp_path / "dump" / "backup" / "issues.jsonl").write_text("")
    assert find_issues_file(tmp_path / "town") == tmp_path / "town" / ".beads" / "backup" / "issues.jsonl"
    assert find_issues_file(tmp_path / "dump") == tmp_path / "dump" / "backup" / "issues.jsonl"
    with pytest.raises(FileNotFoundError):
        find_issues_file(tmp_path)


def test_read_rows_cleans_none_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id":"a-1","assignee":"None","title":"None is fine here"}\n\n{"id":\n"str"\n')
    rejected: list[Rejected] = []
    rows = list(read_rows(path, rejected))
    assert rows == [(1, {"id": "a-1", "assignee": None, "title": "None is fine here"})]
    assert rejected == [Rejected(f"{path}:3", "not JSON (Expecting value)"),
                        Rejected(f"{path}:4", "not a record (no `id`)")]
    assert (clean("None"), clean("none"), clean(None), clean(0)) == (None, "none", None, 0)


def test_make_record_hashes_messages_and_tools_only():
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    a = make_record(messages, {"source": "x", "location": "a"})
    b = make_record(messages, {"source": "y", "location": "b", "rig": "hb"})
    assert a["meta"]["content_hash"] == b["meta"]["content_hash"] == content_hash(messages)
    tools = [{"type": "function", "function": {"name": "bash"}}]
    c = make_record(messages, {}, tools=tools)
    assert c["tools"] == tools and c["meta"]["content_hash"] == content_hash(messages, tools)
    assert c["meta"]["content_hash"] != a["meta"]["content_hash"]


@pytest.mark.parametrize("row, reason", [
    (bead("x-1", issue_type="convoy"), "plumbing bead (type 'convoy')"),
    (bead("x-1", issue_type="molecule"), "plumbing bead (type 'molecule')"),
    (bead("x-1", issue_type="agent"), "plumbing bead (type 'agent')"),
    (bead("x-1", issue_type="message"), "plumbing bead (type 'message')"),
    (bead("x-1", ephemeral="true"), "ephemeral (wisp)"),
    (bead("x-1", ephemeral=1), "ephemeral (wisp)"),
    (bead("x-1", status="tombstone"), "status is 'tombstone', not closed"),
    (bead("x-1", status="hooked"), "status is 'hooked', not closed"),
    (bead("x-1", close_reason=None), "close reason too short (0 chars)"),
    (bead("x-1", title=""), "no title"),
])
def test_bead_record_reasons(row, reason):
    assert bead_record(row, set(), [], location="s") == reason


@pytest.mark.parametrize("label", ["gt:agent", "gt:escalation", "ft:job", "ft:eval"])
def test_plumbing_labels_are_rejected(label):
    assert bead_record(bead("x-1"), {label, "other"}, [], location="s") == f"plumbing bead (label {label})"
    assert isinstance(bead_record(bead("x-1"), {"other"}, [], location="s"), dict)


def test_the_mail_label_wins_over_status_and_type():
    """Mail is a wisp of type message, often open: it is still mail, not plumbing."""
    row = bead("hq-m1", status="open", issue_type="message", ephemeral=1, created_by="harbor/polecats/nux",
               assignee="harbor/witness", title="POLECAT_DONE nux", description="")
    record = bead_record(row, {"gt:message"}, [], location="s")
    assert record["meta"]["source"] == "mail"
    assert record["messages"][2] == {"role": "assistant",
                                     "content": "gt mail send harbor/witness -s 'POLECAT_DONE nux'"}
    assert (record["meta"]["rig"], record["meta"]["role"]) == ("harbor", "polecat")


def test_mail_record_commands():
    row = bead("hq-m2", created_by="mayor/", assignee="harbor/crew/max", title="Don't merge yet",
               description="Freeze until 0.9.0 is tagged.\nThanks.")
    record = mail_record(row, {"gt:message", "msg-type:task"}, location="s")
    assert record["messages"][2]["content"] == ("gt mail send harbor/crew/max -s 'Don'\"'\"'t merge yet' --type task "
                                                "--stdin <<'BODY'\nFreeze until 0.9.0 is tagged.\nThanks.\nBODY")
    assert (record["meta"]["actor"], record["meta"]["recipient"], record["meta"]["rig"]) == (
        "mayor/", "harbor/crew/max", "harbor")
    # an explicit notification type is the default and is not spelled out
    plain = mail_record({**row, "description": ""}, {"gt:message", "msg-type:notification"}, location="s")
    assert plain["messages"][2]["content"] == "gt mail send harbor/crew/max -s 'Don'\"'\"'t merge yet'"
    # the `sender` column is used when created_by is empty
    from_sender = mail_record({**row, "created_by": None, "sender": "deacon/"}, set(), location="s")
    assert from_sender["meta"]["actor"] == "deacon/"
    for missing in ({"created_by": None}, {"assignee": ""}, {"title": "  "}):
        assert mail_record({**row, **missing}, {"gt:message"}, location="s") == \
            "mail without sender, recipient or subject"


@pytest.mark.parametrize("actor, role, rig", [
    ("mayor/", "mayor", ""), ("mayor", "mayor", ""), ("deacon/", "deacon", ""), ("deacon/dogs/alpha", "dog", ""),
    ("overseer", "overseer", ""), ("harbor/witness", "witness", "harbor"), ("harbor/refinery", "refinery", "harbor"),
    ("harbor/polecats/nux", "polecat", "harbor"), ("cfutons/crew/melania", "crew", "cfutons"),
    ("kv@example.com", "", ""), ("", "", ""),
])
def test_roles_and_rigs_of_actors(actor, role, rig):
    assert (role_of(actor), rig_of_actor(actor)) == (role, rig)


def test_rig_of_bead_id():
    assert (rig_of("hb-a1"), rig_of("hq-mol-x.1"), rig_of("nohyphen")) == ("hb", "hq", "")


# --- real backups ----------------------------------------------------------------------------

def test_real_carolina_futons_backup(real, isolated):
    backup = real / "carolina-futons" / "backup"
    issues = backup / "issues.jsonl"
    m = build_corpus(spec(backup), home=isolated, quiet=True)
    # 222 records are read; the health check then drops 11 near duplicates (1 bead, 10 mail)
    assert (m.records, m.new_records, m.rejected, m.source) == (211, 222, 6012, "beads 20, mail 191")
    manifest = read_manifest(m.path)
    assert manifest["rejected_reasons"] == {
        "belongs to …, not an example": 4948, "ephemeral": 803, "status is 'open', not closed": 193,
        "plumbing bead": 40, "config rows are not examples": 13, "close reason too short": 3,
        f"duplicate of a record from {issues}": 1,
        "near duplicate of …": 11}
    assert manifest["health"]["dropped"] == 11
    assert manifest["accounting"][str(issues)] == {"lines": 1262, "used": 211, "rejected": 1051}
    rows = {r["id"]: r for r in map(json.loads, issues.read_text().splitlines())}
    mail = {json.loads(line)["issue_id"] for line in (backup / "labels.jsonl").read_text().splitlines()
            if json.loads(line)["label"] == "gt:message"}
    assert len(mail) == 202  # 191 records, one mail identical to another, 10 near duplicates of others
    records = records_of(m)
    beads = [r for r in records if r["meta"]["source"] == "beads"]
    mails = [r for r in records if r["meta"]["source"] == "mail"]
    assert (len(beads), len(mails)) == (20, 191)
    # each dropped bead is rejected under its id as a near duplicate of a record that was kept, and
    # is one in fact: the same title as the kept one (a directive mailed to several people, a digest)
    near = {}
    for r in read_jsonl(m.path / "rejected.jsonl"):
        if r["where"].startswith(f"{issues}#") and "near duplicate" in r["reason"]:
            found = re.fullmatch(r"near duplicate \(estimated ≥ 85% alike\) of `[^`#]+#([^`]+)`", r["reason"])
            assert found, r
            near[r["where"].split("#", 1)[1]] = found.group(1)
    assert sorted(near) == ["hq-t9lkz", "hq-wisp-4l6xb", "hq-wisp-a0che", "hq-wisp-bph5x", "hq-wisp-ea2zc",
                            "hq-wisp-eyzuc", "hq-wisp-fdg0", "hq-wisp-u9nh", "hq-wisp-yly29", "hq-wisp-z1eu1",
                            "hq-wisp-zg6a6"]
    assert all(rows[dropped]["title"] == rows[kept]["title"] for dropped, kept in near.items())
    assert set(near.values()) <= {r["meta"]["bead_id"] for r in records}  # each twin is one the corpus keeps
    assert not set(near) & {r["meta"]["bead_id"] for r in records}
    assert sum(d in mail for d in near) == 10
    for r in records:
        meta, row = r["meta"], rows[r["meta"]["bead_id"]]
        assert [msg["role"] for msg in r["messages"]] == ["system", "user", "assistant"]
        assert meta["location"] == str(issues)
        assert meta["content_hash"] == content_hash(r["messages"])
        assert (meta["bead_id"] in mail) == (meta["source"] == "mail")
    for r in beads:
        row = rows[r["meta"]["bead_id"]]
        assert r["messages"][2]["content"] == row["close_reason"].strip()
        assert row["status"] == "closed" and row["ephemeral"] == 0 and row["issue_type"] == "task"
        assert r["meta"]["rig"] == "hq"
        assert r["meta"]["generated_by"] == "unknown"  # these rows have neither created_by nor assignee
    for r in mails:
        row = rows[r["meta"]["bead_id"]]
        assert r["messages"][2]["content"].startswith(f"gt mail send {row['assignee']} -s ")
        assert r["meta"]["recipient"] == row["assignee"]
    assert sum(r["meta"]["bead_id"].startswith("hq-mol-") for r in beads) == 5
    assert {r["meta"]["generated_by"] for r in mails if not r["meta"]["generated_by"].startswith("agent:")} == {"human"}
    # the parent folder works too, through backup/issues.jsonl
    assert build_corpus(spec(real / "carolina-futons"), home=isolated, quiet=True).records == 211


def test_real_immortan_backup_has_only_mail(real, isolated, tmp_path):
    town = tmp_path / "immortan-town"
    shutil.copytree(real / "immortan-town", town)
    m = build_corpus(spec(town), home=isolated, quiet=True)  # found via .beads/backup/
    issues = town / ".beads" / "backup" / "issues.jsonl"
    assert (m.records, m.rejected, m.source) == (2, 14, "mail 2")
    records = records_of(m)
    assert [r["meta"]["bead_id"] for r in records] == ["im-9o1", "im-u8z"]
    for r in records:
        assert r["meta"] | {"content_hash": ""} == {
            "source": "mail", "location": str(issues), "bead_id": r["meta"]["bead_id"], "rig": "",
            "role": "deacon", "actor": "deacon/", "recipient": "mayor/", "session": "",
            "created_at": r["meta"]["created_at"], "closed_at": r["meta"]["closed_at"],
            "generated_by": "agent:deacon/", "content_hash": "", "weight": 1.0}
        assert r["messages"][0]["content"] == MAIL_SYSTEM.format(sender="deacon/")
        assert r["messages"][2]["content"].startswith("gt mail send mayor/ -s '[")
        assert r["messages"][2]["content"].endswith("--reason \"resolution\"\nBODY")
    assert records[0]["messages"][2]["content"].split(" --stdin")[0] == (
        "gt mail send mayor/ -s '[HIGH] Zombie Dolt server persists: immortan rig running its own dolt sql-server "
        "at port 3307 (config: /Users/<PII:home_user#1>/Development/immortan/.dolt-data/config.yaml). Detected as zombie "
        "PID 92156 (since Mar 6), killed with SIGQUIT, immediately respawned as PID 56820. gt health --json reports "
        "zombie_count: 1 every cycle. Main workspace Dolt runs on port 3308. immortan Witness is stopped. "
        "Goroutine dump captured.'")  # the operator's home-directory name is PII: redacted
    assert read_manifest(m.path)["redaction"].get("home_user", 0) >= 1
    rejected = read_jsonl(m.path / "rejected.jsonl")
    config = town / ".beads" / "backup" / "config.jsonl"
    assert rejected == [{"where": f"{config}:{n}", "reason": "config rows are not examples"} for n in range(1, 15)]


# --- the sample town -------------------------------------------------------------------------

def sample_rows() -> tuple[dict, set[str]]:
    backup = SAMPLE_TOWN / ".beads" / "backup"
    rows = {}
    for line in (backup / "issues.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["id"]] = row
    mail = {json.loads(line)["issue_id"] for line in (backup / "labels.jsonl").read_text().splitlines()
            if line.strip() and json.loads(line)["label"] == "gt:message"}
    return rows, mail


def test_sample_town_backup(isolated):
    backup = SAMPLE_TOWN / ".beads" / "backup"
    issues = backup / "issues.jsonl"
    m = build_corpus(spec(backup), home=isolated, quiet=True)
    rows, mail = sample_rows()
    manifest = read_manifest(m.path)
    assert manifest["accounting"][str(issues)]["lines"] == len(rows)
    records = records_of(m)
    assert len(records) == m.records > 0
    assert {r["meta"]["source"] for r in records} == {"beads", "mail"}
    for r in records:
        row = rows[r["meta"]["bead_id"]]
        assert (r["meta"]["bead_id"] in mail) == (r["meta"]["source"] == "mail")
        assert r["meta"]["content_hash"] == content_hash(r["messages"])
        if r["meta"]["source"] == "beads":
            assert row["status"] == "closed"
            assert r["meta"]["generated_by"] == generated_by(row.get("assignee") or row.get("created_by") or "")
            assert r["meta"]["rig"] == r["meta"]["bead_id"].split("-", 1)[0]
    # beads that give no record are rejected with their line
    rejected_lines = {r["where"] for r in read_jsonl(m.path / "rejected.jsonl") if r["where"].startswith(f"{issues}:")}
    assert len(rejected_lines) + len(records) == len(rows)


def test_sample_town_rigs_are_named_with_the_town(isolated):
    backup = SAMPLE_TOWN / ".beads" / "backup"
    m = build_corpus(spec(backup), home=isolated, town=load_town(SAMPLE_TOWN), quiet=True)
    beads = [r for r in records_of(m) if r["meta"]["source"] == "beads"]
    by_prefix = {(r["meta"]["bead_id"].split("-", 1)[0], r["meta"]["rig"]) for r in beads}
    assert by_prefix == {("hb", "harbor"), ("lt", "lantern"), ("hq", "hq")}  # hq is the town's own: no rig
    # the prompt still says where the bead came from; only the provenance is renamed
    assert all(r["messages"][0]["content"] == SYSTEM_PROMPT.format(rig=r["meta"]["bead_id"].split("-", 1)[0])
               for r in beads)
    assert read_manifest(m.path)["fingerprint"]["town"] == str(SAMPLE_TOWN)
