"""Corpus stage over beads JSONL backups: real ones, the sample town and a hand-made messy one."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from gt_finetune.corpus import build as build_mod
from gt_finetune.corpus.beads_jsonl import Skipped, clean, find_issues_file, read_rows
from gt_finetune.corpus.build import SAMPLE_TOWN, SYSTEM_PROMPT, CorpusSpec, build_corpus, generated_by, to_record
from gt_finetune.errors import InputError
from gt_finetune.workspace import read_jsonl, read_manifest, short_id

SYSTEM_HB = SYSTEM_PROMPT.format(rig="hb")


def bead(id_, **fields) -> dict:
    row = {"id": id_, "title": f"Fix {id_}", "description": "", "status": "closed", "issue_type": "task",
           "priority": 2, "ephemeral": 0, "close_reason": "Fixed it and added a regression test.",
           "created_by": "mayor/", "assignee": None, "created_at": "2026-03-01T10:00:00Z",
           "closed_at": "2026-03-01T11:00:00Z", "closed_by_session": ""}
    row.update(fields)
    return row


def sha(title: str, description: str, reason: str) -> str:
    return "sha256:" + hashlib.sha256(f"{title}\n{description}\n{reason}".encode()).hexdigest()


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
    json.dumps(bead("hq-a8", close_reason="Read it and replied to the witness.")),          # 9 mail by label
    json.dumps(bead("hb-a9", status="open")),                                              # 10
    json.dumps(bead("hb-b1", close_reason="done")),                                        # 11 short
    json.dumps(bead("hb-b2", title="   ")),                                                # 12 no title
    json.dumps(bead("hb-b3", ephemeral="None", issue_type="None", created_by="None",
                    close_reason="Bumped the pinned version and reran CI.")),             # 13 kept
    json.dumps({"title": "no id at all"}),                                                 # 14
]
LABEL_LINES = [
    '{"issue_id":"hq-a8","label":"gt:message"}',
    '{"issue_id":"hq-a8","label":"from:harbor/witness"}',
    'not json',
    '{"label":"orphan"}',
    '{"issue_id":"hb-a1","label":"ci-failure"}',
]


@pytest.fixture
def messy(tmp_path) -> Path:
    """A backup folder as real exporters leave them: bad lines, `"None"` for null, mail and wisps."""
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "issues.jsonl").write_text("\n".join(ISSUE_LINES) + "\n")
    (backup / "labels.jsonl").write_text("\n".join(LABEL_LINES) + "\n")
    return backup


@pytest.fixture
def real(shared) -> Path:
    return shared / "fixtures" / "real"


# --- the hand-made backup --------------------------------------------------------------------

def test_messy_backup_keeps_good_rows_and_lists_every_skip(messy, isolated):
    m = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    issues, labels = messy / "issues.jsonl", messy / "labels.jsonl"
    assert (m.records, m.skipped, m.source) == (4, 11, str(issues))
    assert m.path == isolated / "corpus" / short_id(m.id)
    kept = [r["meta"]["bead_id"] for r in read_jsonl(m.path / "records.jsonl")]
    assert kept == ["hb-a1", "hb-a4", "hq-a5", "hb-b3"]
    # unreadable lines (labels first, then issues) as they are read, then beads that are not examples
    assert read_jsonl(m.path / "skipped.jsonl") == [
        {"where": f"{labels}:3", "reason": "not JSON (Expecting value)"},
        {"where": f"{labels}:4", "reason": "not a record (no `issue_id`)"},
        {"where": f"{issues}:2", "reason": "not JSON (Expecting value)"},
        {"where": f"{issues}:4", "reason": "not a record (no `id`)"},
        {"where": f"{issues}:14", "reason": "not a record (no `id`)"},
        {"where": f"{issues}:7", "reason": "ephemeral (wisp)"},
        {"where": f"{issues}:8", "reason": "plumbing bead (type 'message')"},
        {"where": f"{issues}:9", "reason": "plumbing bead (label gt:message)"},  # from labels.jsonl
        {"where": f"{issues}:10", "reason": "status is 'open', not closed"},
        {"where": f"{issues}:11", "reason": "close reason too short (4 chars)"},
        {"where": f"{issues}:12", "reason": "no title"},
    ]
    manifest = read_manifest(m.path)
    assert manifest["stage"] == "corpus" and manifest["schema_version"] == 1
    assert manifest["id"] == m.id and m.id.startswith("sha256:")
    assert manifest["spec"] == {"source": str(messy), "min_reason_chars": 20}
    assert manifest["counts"] == {"records": 4, "skipped": 11}
    assert manifest["skipped_reasons"] == {"not JSON": 2, "not a record": 3, "plumbing bead": 2, "ephemeral": 1,
                                           "status is 'open', not closed": 1, "close reason too short": 1,
                                           "no title": 1}


def test_record_shape(messy, isolated):
    m = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    first = read_jsonl(m.path / "records.jsonl")[0]
    reason = "Froze the clock with a fixture; 300 runs green."
    assert first == {
        "messages": [
            {"role": "system", "content": SYSTEM_HB},
            {"role": "user", "content": "Bead hb-a1 (task, P1): Flaky billing test\n\nFails 1 in 20 runs."},
            {"role": "assistant", "content": reason},
        ],
        "tools": [],
        "meta": {"source": "beads", "location": str(messy / "issues.jsonl"), "bead_id": "hb-a1", "rig": "hb",
                 "actor": "mayor/", "assignee": "harbor/polecats/nux", "session": "sess-1",
                 "created_at": "2026-03-01T10:00:00Z", "closed_at": "2026-03-01T11:00:00Z",
                 "content_hash": sha("Flaky billing test", "Fails 1 in 20 runs.", reason),
                 "generated_by": "agent:harbor/polecats/nux"},
    }
    assert "`hb`" in SYSTEM_HB


def test_none_strings_read_as_null(messy, isolated):
    m = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    by_id = {r["meta"]["bead_id"]: r for r in read_jsonl(m.path / "records.jsonl")}
    r = by_id["hq-a5"]
    # priority "None" → P2; description "None" → no description; assignee "None" → the creator
    assert r["messages"][1]["content"] == "Bead hq-a5 (task, P2): Fix hq-a5"
    assert (r["meta"]["closed_at"], r["meta"]["session"]) == ("", "")
    assert (r["meta"]["actor"], r["meta"]["assignee"]) == ("kv@example.com", "kv@example.com")
    assert r["meta"]["content_hash"] == sha("Fix hq-a5", "", "Rotated the deploy key and updated the vault entry.")
    # ephemeral "None" is not a wisp; issue_type "None" is a task; created_by "None" is unknown
    b3 = by_id["hb-b3"]
    assert b3["messages"][1]["content"] == "Bead hb-b3 (task, P2): Fix hb-b3"
    assert (b3["meta"]["actor"], b3["meta"]["generated_by"]) == ("", "unknown")
    assert "None" not in json.dumps(by_id)


def test_generated_by_humans_and_agents(messy, isolated):
    m = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    assert {r["meta"]["bead_id"]: r["meta"]["generated_by"] for r in read_jsonl(m.path / "records.jsonl")} == {
        "hb-a1": "agent:harbor/polecats/nux", "hb-a4": "human", "hq-a5": "human", "hb-b3": "unknown"}
    actors = ("mayor/", "deacon", "cfutons/crew/melania", "overseer", "kv@example.com", "")
    assert [generated_by(a) for a in actors] == [
        "agent:mayor/", "agent:deacon", "agent:cfutons/crew/melania", "human", "human", "unknown"]


def test_stderr_lists_three_skips_and_points_at_the_rest(messy, isolated, capsys):
    m = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    err = capsys.readouterr().err.splitlines()
    labels = messy / "labels.jsonl"
    assert err == [f"  skipped {labels}:3: not JSON (Expecting value)",
                   f"  skipped {labels}:4: not a record (no `issue_id`)",
                   f"  skipped {messy / 'issues.jsonl'}:2: not JSON (Expecting value)",
                   f"  … 8 more; all are listed in {m.path / 'skipped.jsonl'}"]


def test_min_reason_chars(messy, isolated):
    assert build_corpus(CorpusSpec(source=str(messy), min_reason_chars=0), home=isolated).records == 5  # + hb-b1
    strict = build_corpus(CorpusSpec(source=str(messy), min_reason_chars=47), home=isolated)
    kept = [r["meta"]["bead_id"] for r in read_jsonl(strict.path / "records.jsonl")]
    assert kept == ["hb-a1", "hq-a5"]  # 47 and 51 chars
    with pytest.raises(InputError, match=r"`min_reason_chars` must be >= 0, got -1"):
        CorpusSpec(source="x", min_reason_chars=-1)


def test_an_issues_file_can_be_named_directly(messy, isolated):
    m = build_corpus(CorpusSpec(source=str(messy / "issues.jsonl")), home=isolated)
    assert (m.records, m.source) == (4, str(messy / "issues.jsonl"))


def test_source_without_issues_jsonl(tmp_path, isolated):
    with pytest.raises(InputError) as err:
        build_corpus(CorpusSpec(source=str(tmp_path / "nowhere")), home=isolated)
    assert err.value.message == (f"corpus source {tmp_path / 'nowhere'} has no issues.jsonl "
                                 "(looked in it, .beads/backup/ and backup/)")
    assert "--var source=sample" in err.value.hint
    assert not (isolated / "corpus").exists()


# --- caching and atomic output ---------------------------------------------------------------

def test_second_build_reuses_the_same_folder(messy, isolated):
    first = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    before = (first.path / "records.jsonl").stat().st_ino, (first.path / "manifest.json").stat().st_mtime_ns
    second = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    assert (second.id, second.path, second.records, second.skipped) == (first.id, first.path, 4, 11)
    after = (second.path / "records.jsonl").stat().st_ino, (second.path / "manifest.json").stat().st_mtime_ns
    assert after == before  # not rewritten
    assert sorted(p.name for p in (isolated / "corpus").iterdir()) == [short_id(first.id)]


def test_changed_text_or_spec_gives_a_new_folder(messy, isolated):
    first = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    other_spec = build_corpus(CorpusSpec(source=str(messy), min_reason_chars=21), home=isolated)
    assert other_spec.id != first.id
    issues = messy / "issues.jsonl"
    issues.write_text(issues.read_text().replace("300 runs green", "500 runs green"))
    changed = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    assert changed.id not in (first.id, other_spec.id)
    assert len(list((isolated / "corpus").iterdir())) == 3


def test_changed_meta_is_not_served_from_a_stale_folder(messy, isolated):
    first = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    issues = messy / "issues.jsonl"
    issues.write_text(issues.read_text().replace('"assignee": "harbor/polecats/nux"', '"assignee": "overseer"'))
    second = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    meta = read_jsonl(second.path / "records.jsonl")[0]["meta"]
    assert (meta["bead_id"], meta["assignee"], meta["generated_by"]) == ("hb-a1", "overseer", "human")
    assert second.id != first.id


def test_output_is_atomic_no_partial_left(messy, isolated):
    m = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    assert [p.name for p in (isolated / "corpus").iterdir()] == [m.path.name]
    assert sorted(p.name for p in m.path.iterdir()) == ["manifest.json", "records.jsonl", "skipped.jsonl"]
    assert not list(m.path.rglob("*.tmp"))


def test_failed_write_leaves_nothing_behind(messy, isolated, monkeypatch):
    def boom(path, obj):
        raise OSError("disk full")
    monkeypatch.setattr(build_mod, "write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    assert list((isolated / "corpus").iterdir()) == []


def test_stale_partial_from_a_killed_run_is_replaced(messy, isolated):
    m = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    shutil.rmtree(m.path)
    partial = m.path.parent / f".{m.path.name}.partial"
    partial.mkdir()
    (partial / "records.jsonl").write_text("half a line")
    again = build_corpus(CorpusSpec(source=str(messy)), home=isolated)
    assert again.path == m.path and not partial.exists()
    assert len(read_jsonl(again.path / "records.jsonl")) == 4


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


def test_read_rows_cleans_none_and_counts_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id":"a-1","assignee":"None","title":"None is fine here"}\n\n{"id":\n')
    skipped: list[Skipped] = []
    rows = list(read_rows(path, skipped))
    assert rows == [(1, {"id": "a-1", "assignee": None, "title": "None is fine here"})]
    assert skipped == [Skipped(f"{path}:3", "not JSON (Expecting value)")]
    assert (clean("None"), clean("none"), clean(None), clean(0)) == (None, "none", None, 0)


@pytest.mark.parametrize("row, reason", [
    (bead("x-1", issue_type="convoy"), "plumbing bead (type 'convoy')"),
    (bead("x-1", issue_type="molecule"), "plumbing bead (type 'molecule')"),
    (bead("x-1", issue_type="agent"), "plumbing bead (type 'agent')"),
    (bead("x-1", ephemeral="true"), "ephemeral (wisp)"),
    (bead("x-1", status="tombstone"), "status is 'tombstone', not closed"),
    (bead("x-1", close_reason=None), "close reason too short (0 chars)"),
])
def test_to_record_reasons(row, reason):
    assert to_record(row, set(), source="s") == reason


@pytest.mark.parametrize("label", ["gt:message", "gt:agent", "gt:escalation", "ft:job", "ft:eval"])
def test_plumbing_labels_are_skipped(label):
    assert to_record(bead("x-1"), {label, "other"}, source="s") == f"plumbing bead (label {label})"
    assert isinstance(to_record(bead("x-1"), {"other"}, source="s"), dict)


# --- real backups ----------------------------------------------------------------------------

def test_real_carolina_futons_backup(real, isolated):
    backup = real / "carolina-futons" / "backup"
    m = build_corpus(CorpusSpec(source=str(backup)), home=isolated)
    assert (m.records, m.skipped, m.source) == (21, 1241, str(backup / "issues.jsonl"))
    assert read_manifest(m.path)["skipped_reasons"] == {
        "ephemeral": 803, "status is 'open', not closed": 215, "plumbing bead": 212,
        "status is 'hooked', not closed": 8, "close reason too short": 3}
    records = read_jsonl(m.path / "records.jsonl")
    rows = {r["id"]: r for r in map(json.loads, (backup / "issues.jsonl").read_text().splitlines())}
    mail = {json.loads(line)["issue_id"] for line in (backup / "labels.jsonl").read_text().splitlines()
            if json.loads(line)["label"] == "gt:message"}
    assert len(mail) == 202
    for r in records:
        meta, row = r["meta"], rows[r["meta"]["bead_id"]]
        assert [msg["role"] for msg in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][2]["content"] == row["close_reason"].strip()
        assert row["status"] == "closed" and row["ephemeral"] == 0 and row["issue_type"] == "task"
        assert meta["bead_id"] not in mail
        assert meta["rig"] == "hq" and meta["location"] == str(backup / "issues.jsonl")
        assert meta["content_hash"] == sha(row["title"].strip(), row["description"].strip(),
                                           row["close_reason"].strip())
        assert meta["generated_by"] == "unknown"  # these rows have neither created_by nor assignee
    assert sum(r["meta"]["bead_id"].startswith("hq-mol-") for r in records) == 5
    # the parent folder works too, through backup/issues.jsonl, and gives another id (the spec differs)
    assert build_corpus(CorpusSpec(source=str(real / "carolina-futons")), home=isolated).records == 21


def test_real_immortan_backup_has_only_mail(real, isolated, tmp_path):
    town = tmp_path / "immortan-town"
    shutil.copytree(real / "immortan-town", town)
    with pytest.raises(InputError) as err:
        build_corpus(CorpusSpec(source=str(town)), home=isolated)  # found via .beads/backup/
    issues = town / ".beads" / "backup" / "issues.jsonl"
    assert err.value.message == f"no usable closed bead in `{issues}` (2 skipped)"
    assert err.value.hint == "point `--var source=` at a beads backup folder (e.g. `<town>/.beads/backup`)"
    assert not (isolated / "corpus").exists()


# --- the sample town -------------------------------------------------------------------------

def test_sample_town(isolated):
    issues = SAMPLE_TOWN / ".beads" / "backup" / "issues.jsonl"
    if not issues.is_file():
        pytest.skip(f"the sample town is not generated yet ({issues} is missing)")
    m = build_corpus(CorpusSpec(source="sample"), home=isolated)
    manifest = read_manifest(m.path)
    assert (m.source, manifest["source"], manifest["spec"]["source"]) == (str(issues), str(issues), "sample")
    rows = {}
    for line in issues.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["id"]] = row
    assert m.records + m.skipped == len(rows)
    labels = SAMPLE_TOWN / ".beads" / "backup" / "labels.jsonl"
    mail = {json.loads(line)["issue_id"] for line in labels.read_text().splitlines()
            if line.strip() and json.loads(line)["label"] == "gt:message"} if labels.is_file() else set()
    records = read_jsonl(m.path / "records.jsonl")
    assert len(records) == m.records > 0
    for r in records:
        row = rows[r["meta"]["bead_id"]]
        assert row["status"] == "closed" and r["meta"]["bead_id"] not in mail
        assert r["meta"]["content_hash"].startswith("sha256:") and len(r["meta"]["content_hash"]) == 71
        assert r["meta"]["generated_by"] == generated_by(row.get("assignee") or row.get("created_by") or "")
        assert r["meta"]["rig"] == r["meta"]["bead_id"].split("-", 1)[0]
    assert build_corpus(CorpusSpec(source="sample"), home=isolated).path == m.path
