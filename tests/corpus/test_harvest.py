"""The corpus harvest: accounting, incremental versions, filters, town inputs and the sample town."""
import json
import os
import re
import shutil
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import gt_finetune.corpus.harvest as harvest_mod
from gt_finetune.corpus import (SAMPLE_TOWN, SOURCES, CorpusSpec, build_corpus, find_corpus, list_corpora,
                                load_records, town_inputs)
from gt_finetune.corpus.redact import Redactor
from gt_finetune.corpus.sources.context import file_key
from gt_finetune.errors import InputError
from gt_finetune.town import load_town
from gt_finetune.workspace import content_id, read_jsonl, read_manifest

SAMPLE_BACKUP = SAMPLE_TOWN / ".beads" / "backup"
REASON = "Fixed it and added a regression test."


def bead(id_, **fields) -> dict:
    row = {"id": id_, "title": f"Fix {id_}", "status": "closed", "issue_type": "task", "priority": 2,
           "close_reason": REASON, "created_by": "mayor/", "created_at": "2026-03-01T10:00:00Z"}
    row.update(fields)
    return row


def write_backup(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "issues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def beads_spec(location, **kw) -> CorpusSpec:
    return CorpusSpec(inputs=(("beads_jsonl", str(location)),), **kw)


def nonblank_lines(path: Path) -> list[int]:
    """Line numbers the way the sources count them: file iteration, blank lines skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [n for n, line in enumerate(f, 1) if line.strip()]


def rejected_lines(rejected: list[dict]) -> dict[str, list[int]]:
    by_file: dict[str, list[int]] = defaultdict(list)
    for r in rejected:
        file, sep, line = r["where"].rpartition(":")
        if sep and line.isdigit():
            by_file[file].append(int(line))
    return by_file


def rejected_spots(rejected: list[dict]) -> dict[str, list[str]]:
    """By file: `12` for a `file:12` rejection (that line), `#hb-1` for `file#hb-1` (a record read from
    the file, then filtered out or found a duplicate)."""
    by_file: dict[str, list[str]] = defaultdict(list)
    for r in rejected:
        line = re.search(r":(\d+)$", r["where"])
        file, spot = (r["where"][:line.start()], line.group(1)) if line else r["where"].split("#", 1)
        by_file[file].append(spot if line else f"#{spot}")
    return by_file


def versions(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "corpus").glob("corpus-*"))


def snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)

    def tick(self, seconds: int = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The harvest's clock, frozen until ticked: version ids become predictable."""
    c = Clock()

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return c.now

    monkeypatch.setattr(harvest_mod, "datetime", FrozenDatetime)
    return c


@pytest.fixture
def real(shared) -> Path:
    return shared / "fixtures" / "real"


@pytest.fixture
def sample_copy(tmp_path) -> Path:
    """A writable copy of the sample town's backup."""
    return Path(shutil.copytree(SAMPLE_BACKUP, tmp_path / "backup"))


# --- accounting ------------------------------------------------------------------------------

def test_every_line_of_the_real_fixtures_is_used_or_rejected_with_its_line(real, isolated):
    carolina = real / "carolina-futons" / "backup"
    immortan = real / "immortan-town"
    transcripts = real / "claude-code-transcripts"
    spec = CorpusSpec(inputs=(("beads_jsonl", str(carolina)), ("beads_jsonl", str(immortan / ".beads" / "backup")),
                              ("events", str(immortan)), ("transcripts", str(transcripts))))
    m = build_corpus(spec, home=isolated, quiet=True)
    manifest = read_manifest(m.path)
    accounting = manifest["accounting"]
    rejected = read_jsonl(m.path / "rejected.jsonl")
    assert all(r["reason"].strip() for r in rejected)
    by_file = rejected_spots(rejected)
    files = [*sorted(carolina.glob("*.jsonl")), *sorted((immortan / ".beads" / "backup").glob("*.jsonl")),
             immortan / ".events.jsonl", *sorted(transcripts.glob("*.jsonl"))]
    assert len(files) == 15
    for file in files:
        lines = nonblank_lines(file)
        entry = accounting.get(str(file), {"lines": 0, "used": 0, "rejected": 0})  # comments.jsonl is empty
        assert entry["lines"] == len(lines), file
        assert entry["used"] + entry["rejected"] == entry["lines"], file
        spots = by_file.pop(str(file), [])
        assert len(spots) == len(set(spots)) == entry["rejected"], file
        assert {int(x) for x in spots if not x.startswith("#")} <= set(lines), file
    assert by_file == {}  # no rejected line points at a file outside the inputs
    issues = carolina / "issues.jsonl"
    # one bead repeats another's messages, and the health check finds 11 near duplicates: each is read,
    # then rejected under its id (and counted rejected, not used)
    assert accounting[str(issues)] == {"lines": 1262, "used": 211, "rejected": 1051}
    under_id = [r for r in rejected if r["where"].startswith(f"{issues}#")]
    assert under_id[0] == {"where": f"{issues}#hq-wisp-bhiuf", "reason": f"duplicate of a record from {issues}"}
    assert sorted(r["where"].split("#", 1)[1] for r in under_id[1:]) == [
        "hq-t9lkz", "hq-wisp-4l6xb", "hq-wisp-a0che", "hq-wisp-bph5x", "hq-wisp-ea2zc", "hq-wisp-eyzuc",
        "hq-wisp-fdg0", "hq-wisp-u9nh", "hq-wisp-yly29", "hq-wisp-z1eu1", "hq-wisp-zg6a6"]
    kept = {r["meta"].get("bead_id") for r in load_records(m.path)}
    for r in under_id[1:]:
        found = re.fullmatch(r"near duplicate \(estimated ≥ 85% alike\) of `[^`#]+#([^`]+)`", r["reason"])
        assert found and found.group(1) in kept, r  # dropped in favour of a record the corpus keeps
    assert manifest["health"]["dropped"] == 11
    # the feed's nudges carry their text in `reason`; repeated mail and nudges are duplicates, with their line
    feed = immortan / ".events.jsonl"
    assert accounting[str(feed)] == {"lines": 36, "used": 18, "rejected": 18}
    assert sorted(int(x) for x in rejected_spots([r for r in rejected if r["reason"].startswith("duplicate")])[
        str(feed)]) == [2, 13, 14, 15, 16, 20]
    assert accounting[str(immortan / ".beads" / "backup" / "issues.jsonl")] == {"lines": 2, "used": 2, "rejected": 0}
    assert accounting[str(transcripts / "edge_cases.jsonl")] == {"lines": 19, "used": 12, "rejected": 7}
    assert manifest["counts"]["by_source"] == {"mail": 193, "beads": 20, "events": 18, "transcripts": 5}


def test_a_duplicate_event_line_is_rejected_with_its_line_and_not_counted_as_used(tmp_path, isolated):
    town = tmp_path / "town"
    town.mkdir()
    event = {"ts": "2026-03-06T04:37:47Z", "type": "mail", "actor": "harbor/witness",
             "payload": {"to": "mayor/", "subject": "HELP"}}
    (town / ".events.jsonl").write_text(json.dumps(event) + "\n" + json.dumps(event) + "\n")
    m = build_corpus(CorpusSpec(inputs=(("events", str(town)),)), home=isolated, quiet=True)
    file = town / ".events.jsonl"
    assert m.records == 1
    assert [r["where"] for r in read_jsonl(m.path / "rejected.jsonl")] == [f"{file}:2"]
    assert read_manifest(m.path)["accounting"][str(file)] == {"lines": 2, "used": 1, "rejected": 1}


def test_duplicates_across_inputs_become_one_record(tmp_path, isolated):
    first = write_backup(tmp_path / "a", [bead("hb-1")])
    second = write_backup(tmp_path / "b", [bead("hb-1", created_by="overseer")])  # same messages, other meta
    m = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(first)), ("beads_jsonl", str(second)))),
                     home=isolated, quiet=True)
    assert m.records == 1
    assert load_records(m.path)[0]["meta"]["location"] == str(first / "issues.jsonl")
    assert read_jsonl(m.path / "rejected.jsonl") == [
        {"where": f"{second / 'issues.jsonl'}#hb-1", "reason": f"duplicate of a record from {first / 'issues.jsonl'}"}]
    assert read_manifest(m.path)["rejected_reasons"] == {f"duplicate of a record from {first / 'issues.jsonl'}": 1}


# --- incremental versions --------------------------------------------------------------------

def test_a_second_build_with_nothing_new_returns_the_latest_and_writes_nothing(sample_copy, isolated):
    spec = beads_spec(sample_copy)
    first = build_corpus(spec, home=isolated, quiet=True)
    before = snapshot(first.path)
    again = build_corpus(spec, home=isolated, quiet=True)
    assert (again.id, again.path, again.records, again.rejected, again.source) == (
        first.id, first.path, first.records, first.rejected, first.source)
    assert (first.new_records, again.new_records) == (first.records, 0)
    assert versions(isolated) == [first.id]
    assert snapshot(first.path) == before
    # touched but not changed: read again, still nothing new
    os.utime(sample_copy / "issues.jsonl", ns=(1, 1))
    touched = build_corpus(spec, home=isolated, quiet=True)
    assert (touched.id, touched.new_records, versions(isolated)) == (first.id, 0, [first.id])


def test_one_new_bead_makes_a_new_version_and_the_old_one_is_unchanged(sample_copy, isolated, clock):
    spec = beads_spec(sample_copy)
    first = build_corpus(spec, home=isolated, quiet=True)
    assert first.id.startswith("corpus-20261101T120000-")
    before = snapshot(first.path)
    old_records = (first.path / "records.jsonl").read_text()
    clock.tick()
    with open(sample_copy / "issues.jsonl", "a") as f:
        f.write(json.dumps(bead("hb-zz1", title="Pin the flaky clock", close_reason="Froze time in the fixture; "
                                "300 runs green.", created_at="2026-12-01T08:00:00Z")) + "\n")
    second = build_corpus(spec, home=isolated, quiet=True)
    assert second.id.startswith("corpus-20261101T120001-") and second.path != first.path
    assert (second.records, second.new_records) == (first.records + 1, 1)
    assert versions(isolated) == [first.id, second.id]
    assert snapshot(first.path) == before  # immutable
    # the new version holds everything so far, the previous records first
    new_text = (second.path / "records.jsonl").read_text()
    assert new_text.startswith(old_records)
    added = load_records(second.path)[-1]
    assert (added["meta"]["bead_id"], added["messages"][2]["content"]) == (
        "hb-zz1", "Froze time in the fixture; 300 runs green.")
    manifest = read_manifest(second.path)
    assert (manifest["previous"], manifest["counts"]["records"], manifest["counts"]["new_records"]) == (
        first.id, first.records + 1, 1)
    # the id hashes the spec together with every record's content hash
    hashes = [r["meta"]["content_hash"] for r in load_records(second.path)]
    digest = content_id({"spec": manifest["spec"], "records": hashes}).split(":")[1][:12]
    assert second.id == f"corpus-20261101T120001-{digest}"
    # and a third build has nothing new again
    clock.tick()
    third = build_corpus(spec, home=isolated, quiet=True)
    assert (third.id, third.new_records, third.records) == (second.id, 0, second.records)


def test_incremental_state_lives_under_corpus_state(sample_copy, isolated):
    m = build_corpus(beads_spec(sample_copy), home=isolated, quiet=True)
    states = list((isolated / "corpus" / ".state").glob("*.json"))
    assert len(states) == 1
    state = json.loads(states[0].read_text())
    assert state["latest"] == m.id
    assert state["seen"] == sorted(r["meta"]["content_hash"] for r in load_records(m.path))
    files = state["sources"][f"beads_jsonl:{sample_copy}"]["files"]
    stamped = [sample_copy / f"{n}.jsonl" for n in ("issues", "labels", "comments", "events", "dependencies")]
    assert all(p.is_file() for p in stamped)
    # config.jsonl: no record; keyed by a hash of the path, as a file name may hold a secret
    assert files == {file_key(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in stamped}
    # another spec keeps its own state
    build_corpus(beads_spec(sample_copy, min_reason_chars=0), home=isolated, quiet=True)
    assert len(list((isolated / "corpus" / ".state").glob("*.json"))) == 2


def test_a_changed_close_reason_replaces_the_older_record(tmp_path, isolated):
    backup = write_backup(tmp_path / "b", [bead("hb-1"), bead("hb-2")])
    first = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    write_backup(backup, [bead("hb-1", close_reason="Fixed it properly this time, with a test."), bead("hb-2")])
    second = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    assert (first.records, second.records, second.new_records) == (2, 2, 1)
    assert [(r["meta"]["bead_id"], r["messages"][2]["content"]) for r in load_records(second.path)] == [
        ("hb-2", REASON), ("hb-1", "Fixed it properly this time, with a test.")]
    assert [r["messages"][2]["content"] for r in load_records(first.path)] == [REASON, REASON]  # untouched


def test_a_deleted_latest_version_starts_over(sample_copy, isolated):
    spec = beads_spec(sample_copy)
    first = build_corpus(spec, home=isolated, quiet=True)
    shutil.rmtree(first.path)
    again = build_corpus(spec, home=isolated, quiet=True)
    assert (again.records, again.new_records) == (first.records, first.records)
    assert read_manifest(again.path)["previous"] == ""


def test_a_new_version_accounts_for_inputs_that_did_not_change(tmp_path, sample_copy, isolated):
    other = write_backup(tmp_path / "other", [bead("lt-1"), bead("lt-2", status="open")])
    spec = CorpusSpec(inputs=(("beads_jsonl", str(sample_copy)), ("beads_jsonl", str(other))))
    first = build_corpus(spec, home=isolated, quiet=True)
    with open(sample_copy / "issues.jsonl", "a") as f:
        f.write(json.dumps(bead("hb-zz1", close_reason="Something new that is long enough.")) + "\n")
    second = build_corpus(spec, home=isolated, quiet=True)
    assert second.new_records == 1
    # `other` was not read again: its accounting and its rejected lines carry over from the first version
    before, after = read_manifest(first.path)["accounting"], read_manifest(second.path)["accounting"]
    lines = str(other / "issues.jsonl")
    assert after[lines] == before[lines] == {"lines": 2, "used": 1, "rejected": 1}
    assert set(after) == set(before)
    issues = str(sample_copy / "issues.jsonl")
    assert after[issues] == {**before[issues], "lines": before[issues]["lines"] + 1,
                             "used": before[issues]["used"] + 1}
    old, new = read_jsonl(first.path / "rejected.jsonl"), read_jsonl(second.path / "rejected.jsonl")
    assert [r for r in new if r["where"].startswith(lines)] == [{"where": f"{lines}:2",
                                                                 "reason": "status is 'open', not closed"}]
    assert sorted(map(json.dumps, new)) == sorted(map(json.dumps, old))  # re-read lines are not listed twice
    assert second.rejected == first.rejected


def test_two_specs_with_the_same_records_in_one_second_do_not_overwrite_each_other(tmp_path, isolated, clock):
    backup = write_backup(tmp_path / "b", [bead("hb-1")])
    first = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    second = build_corpus(beads_spec(backup, min_reason_chars=21), home=isolated, quiet=True)
    assert read_manifest(first.path)["spec"]["min_reason_chars"] == 20
    assert read_manifest(second.path)["spec"]["min_reason_chars"] == 21
    assert second.id != first.id and first.id[:23] == second.id[:23] == "corpus-20261101T120000-"
    # one second, so the ids order them
    assert [c["id"] for c in list_corpora(isolated)] == sorted([first.id, second.id])


def test_the_same_spec_built_twice_in_one_second_returns_the_existing_version(tmp_path, isolated, clock):
    backup = write_backup(tmp_path / "b", [bead("hb-1")])
    first = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    before = snapshot(first.path)
    shutil.rmtree(isolated / "corpus" / ".state")  # forgotten state: the same records are harvested as new
    again = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    assert (again.id, again.path, again.records) == (first.id, first.path, first.records)
    assert snapshot(first.path) == before  # not written over
    assert versions(isolated) == [first.id]


def test_a_changed_side_table_alone_reads_the_backup_again(tmp_path, isolated):
    backup = write_backup(tmp_path / "b", [bead("hb-1")])
    (backup / "comments.jsonl").write_text("")
    first = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    (backup / "comments.jsonl").write_text(json.dumps(
        {"issue_id": "hb-1", "author": "harbor/witness", "text": "Seen it fail twice."}) + "\n")
    second = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    assert (second.records, second.new_records) == (1, 1) and second.id != first.id
    asked = load_records(second.path)[0]["messages"][1]["content"]
    assert asked.endswith("Comments:\n- harbor/witness: Seen it fail twice.")
    assert read_manifest(second.path)["accounting"][str(backup / "comments.jsonl")] == {
        "lines": 1, "used": 1, "rejected": 0}


# --- filters ---------------------------------------------------------------------------------

FILTER_ROWS = [bead("hb-1"), bead("hb-2", created_at="2026-03-10T10:00:00+02:00"),
               bead("lt-1", created_at="2026-03-05T09:00:00Z"), bead("hb-3", created_at="")]


@pytest.mark.parametrize("kw, kept, rejected", [
    ({"scope": ("rig:hb",)}, ["hb-1", "hb-2", "hb-3"], [("lt-1", "rig `lt` is outside --scope rig:hb")]),
    ({"scope": ("rig:hb", "rig:lt")}, ["hb-1", "hb-2", "lt-1", "hb-3"], []),
    ({"since": "2026-03-05"}, ["hb-2", "lt-1", "hb-3"],
     [("hb-1", "created before --since 2026-03-05 (2026-03-01T10:00:00Z)")]),
    ({"until": "2026-03-05T09:00:00Z"}, ["hb-1", "lt-1", "hb-3"],
     [("hb-2", "created after --until 2026-03-05T09:00:00Z (2026-03-10T10:00:00+02:00)")]),
    ({"since": "2026-03-02", "until": "2026-03-06", "scope": ("rig:hb",)}, ["hb-3"],
     [("hb-1", "created before --since 2026-03-02 (2026-03-01T10:00:00Z)"),
      ("hb-2", "created after --until 2026-03-06 (2026-03-10T10:00:00+02:00)"),
      ("lt-1", "rig `lt` is outside --scope rig:hb")]),
    ({"scope": ("rig:hb", "rig:nowhere"), "since": "2026-03-02"}, ["hb-2", "hb-3"],
     [("hb-1", "created before --since 2026-03-02 (2026-03-01T10:00:00Z)"),
      ("lt-1", "rig `lt` is outside --scope rig:hb,rig:nowhere")]),
])
def test_scope_since_and_until_filter_and_say_why(tmp_path, isolated, kw, kept, rejected):
    """A record without a creation time is never filtered by time."""
    backup = write_backup(tmp_path / "b", FILTER_ROWS)
    m = build_corpus(beads_spec(backup, **kw), home=isolated, quiet=True)
    assert [r["meta"]["bead_id"] for r in load_records(m.path)] == kept
    issues = backup / "issues.jsonl"
    assert read_jsonl(m.path / "rejected.jsonl") == [{"where": f"{issues}#{b}", "reason": why} for b, why in rejected]
    manifest = read_manifest(m.path)
    assert manifest["spec"]["scope"] == list(kw.get("scope", ()))
    # a row read into a record and then filtered out is a rejected line, not a used one
    assert manifest["accounting"][str(issues)] == {"lines": 4, "used": len(kept), "rejected": len(rejected)}


def test_filter_reasons_are_counted_by_kind(tmp_path, isolated):
    backup = write_backup(tmp_path / "b", FILTER_ROWS)
    m = build_corpus(beads_spec(backup, scope=("rig:hb",), since="2026-03-02"), home=isolated, quiet=True)
    assert [r["meta"]["bead_id"] for r in load_records(m.path)] == ["hb-2", "hb-3"]
    assert read_manifest(m.path)["rejected_reasons"] == {
        "rig … is outside --scope rig:hb": 1, "created before --since 2026-03-02": 1}


def test_records_before_since_count_as_one_kind(tmp_path, isolated):
    backup = write_backup(tmp_path / "b", [bead("hb-1", created_at="2026-03-01T10:00:00Z"),
                                           bead("hb-2", created_at="2026-03-02T10:00:00Z"),
                                           bead("hb-3", created_at="2026-04-01T10:00:00Z")])
    m = build_corpus(beads_spec(backup, since="2026-03-15"), home=isolated, quiet=True)
    assert m.rejected == 2
    assert len(read_manifest(m.path)["rejected_reasons"]) == 1


def test_everything_filtered_out_is_an_error(tmp_path, isolated):
    backup = write_backup(tmp_path / "b", FILTER_ROWS)
    with pytest.raises(InputError) as err:
        build_corpus(beads_spec(backup, scope=("rig:nowhere",)), home=isolated, quiet=True)
    assert err.value.message == f"no usable record in beads_jsonl:{backup} (4 lines rejected)"
    assert not versions(isolated)


def test_scope_uses_rig_names_when_the_town_is_known(isolated):
    town = load_town(SAMPLE_TOWN)
    m = build_corpus(beads_spec(SAMPLE_BACKUP, scope=("rig:harbor",)), home=isolated, town=town, quiet=True)
    records = load_records(m.path)
    assert records and {r["meta"]["rig"] for r in records} == {"harbor"}
    reasons = {r["reason"] for r in read_jsonl(m.path / "rejected.jsonl") if "#" in r["where"]}
    assert {"rig `lantern` is outside --scope rig:harbor", "rig `hq` is outside --scope rig:harbor",
            "rig `town` is outside --scope rig:harbor"} <= reasons
    # without the town the same scope names no bead rig: beads carry their prefix, `hb`
    plain = build_corpus(beads_spec(SAMPLE_BACKUP, scope=("rig:hb",)), home=isolated, quiet=True)
    assert {r["meta"]["rig"] for r in load_records(plain.path)} == {"hb"}


def test_a_bad_created_at_is_rejected_not_fatal(tmp_path, isolated):
    backup = write_backup(tmp_path / "b", [bead("hb-1", created_at="last tuesday"), bead("hb-2")])
    m = build_corpus(beads_spec(backup, since="2026-01-01"), home=isolated, quiet=True)
    assert m.records == 1
    assert [r["meta"]["bead_id"] for r in load_records(m.path)] == ["hb-2"]
    assert read_jsonl(m.path / "rejected.jsonl") == [{
        "where": f"{backup / 'issues.jsonl'}#hb-1",
        "reason": "created_at is not a timestamp, so --since/--until cannot place it ('last tuesday')"}]
    manifest = read_manifest(m.path)
    assert manifest["rejected_reasons"] == {"created_at is not a timestamp, so --since/--until cannot place it": 1}
    assert manifest["accounting"][str(backup / "issues.jsonl")] == {"lines": 2, "used": 1, "rejected": 1}
    # without --since/--until nothing needs placing in time: the row is kept
    assert build_corpus(beads_spec(backup), home=isolated, quiet=True).records == 2


def test_a_filtered_event_is_rejected_at_its_line(tmp_path, isolated):
    town = tmp_path / "town"
    town.mkdir()
    lines = [{"ts": "2026-03-01T10:00:00Z", "type": "hook", "actor": "harbor/witness", "payload": {"bead": "hb-1"}},
             {"ts": "2026-03-09T10:00:00Z", "type": "hook", "actor": "harbor/witness", "payload": {"bead": "hb-2"}}]
    (town / ".events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    m = build_corpus(CorpusSpec(inputs=(("events", str(town)),), since="2026-03-05"), home=isolated, quiet=True)
    feed = town / ".events.jsonl"
    assert [(r["meta"]["location"], r["meta"]["line"]) for r in load_records(m.path)] == [(str(feed), 2)]
    assert read_jsonl(m.path / "rejected.jsonl") == [
        {"where": f"{feed}:1", "reason": "created before --since 2026-03-05 (2026-03-01T10:00:00Z)"}]
    assert read_manifest(m.path)["accounting"][str(feed)] == {"lines": 2, "used": 1, "rejected": 1}


def test_a_negative_min_reason_chars_is_refused():
    with pytest.raises(InputError) as err:
        CorpusSpec(inputs=(("beads_jsonl", "x"),), min_reason_chars=-1)
    assert err.value.message == "`min_reason_chars` must be >= 0, got -1"


@pytest.mark.parametrize("kw, message", [
    ({"scope": ("harbor",)}, "`--scope harbor` must be `town` or `rig:<name>`"),
    ({"scope": ("rig:",)}, "`--scope rig:` must be `town` or `rig:<name>`"),
    ({"since": "yesterday"}, "`since` is not an ISO date or time: 'yesterday'"),
    ({"until": "2026-13-01"}, "`until` is not an ISO date or time: '2026-13-01'"),
])
def test_bad_scope_since_until_raise_with_the_value(kw, message):
    with pytest.raises(InputError) as err:
        CorpusSpec(inputs=(("beads_jsonl", "x"),), **kw)
    assert err.value.message == message
    if "since" in kw or "until" in kw:
        assert err.value.hint == "e.g. `--since 2026-10-01`"


def test_spec_needs_known_inputs():
    with pytest.raises(InputError) as err:
        CorpusSpec(inputs=())
    assert err.value.message == "a corpus needs at least one input"
    assert err.value.hint == "e.g. `gt-finetune corpus build --beads-jsonl ~/gt/.beads/backup`"
    with pytest.raises(InputError) as err:
        CorpusSpec(inputs=(("beads", "x"),))
    assert err.value.message == ("unknown corpus source `beads` (sources: beads_jsonl, beads_sql, transcripts, "
                                 "events, formulas, role_context, store)")
    assert list(SOURCES) == ["beads_jsonl", "beads_sql", "transcripts", "events", "formulas", "role_context",
                             "store"]


# --- town inputs -----------------------------------------------------------------------------

def test_town_inputs_of_the_sample_town():
    s = SAMPLE_TOWN
    assert town_inputs(s) == (("beads_jsonl", f"{s}/.beads/backup"), ("events", str(s)),
                              ("formulas", f"{s}/.beads/formulas"), ("transcripts", f"{s}/claude/projects"))
    assert town_inputs(s, sources=("events", "formulas")) == (("events", str(s)),
                                                              ("formulas", f"{s}/.beads/formulas"))


def test_town_inputs_of_a_full_town(tmp_path):
    root = tmp_path / "gt"
    for folder in (".dolt-data", ".beads/backup", "harbor/mayor/rig/.beads/backup", "lantern/mayor/rig/.beads/backup",
                   "directives", "harbor/directives", "claude/projects"):
        (root / folder).mkdir(parents=True)
    for backup in (".beads/backup", "harbor/mayor/rig/.beads/backup"):  # lantern's has no issues.jsonl
        (root / backup / "issues.jsonl").write_text("")
    (root / ".feed.jsonl").write_text("")  # the curated feed alone is enough
    assert town_inputs(root) == (
        ("beads_sql", ""), ("beads_jsonl", f"{root}/.beads/backup"),
        ("beads_jsonl", f"{root}/harbor/mayor/rig/.beads/backup"), ("events", str(root)),
        ("role_context", f"{root}/directives"), ("role_context", f"{root}/harbor/directives"),
        ("transcripts", f"{root}/claude/projects"))


def test_town_inputs_with_nothing_to_harvest(tmp_path):
    with pytest.raises(InputError) as err:
        town_inputs(tmp_path)
    assert err.value.message == f"found no history to harvest in {tmp_path}"
    assert err.value.hint == "name inputs explicitly, e.g. `gt-finetune corpus build --beads-jsonl DIR`"
    with pytest.raises(InputError) as err:
        town_inputs(SAMPLE_TOWN, sources=("role_context", "beads_sql"))
    assert err.value.message == f"found no history to harvest in {SAMPLE_TOWN} for sources role_context, beads_sql"


# --- the demo path: the whole sample town ----------------------------------------------------

def test_the_sample_town_harvest(isolated):
    town = load_town(SAMPLE_TOWN)
    m = build_corpus(CorpusSpec(inputs=town_inputs(SAMPLE_TOWN)), home=isolated, town=town, quiet=True)
    manifest = read_manifest(m.path)
    by_source = manifest["counts"]["by_source"]
    assert set(by_source) == {"beads", "mail", "events", "formulas", "transcripts"}
    assert (by_source["formulas"], by_source["transcripts"]) == (1, 3)
    # every record is new; the health check then drops one whose trained text repeats another's
    assert manifest["health"]["dropped"] == 1
    assert sum(by_source.values()) == m.records == m.new_records - 1 == 377
    events = SAMPLE_TOWN / ".events.jsonl"
    dropped = [r for r in read_jsonl(m.path / "rejected.jsonl")
               if r["reason"].startswith(("exact duplicate", "near duplicate"))]
    assert [r["where"] for r in dropped] == [f"{events}:142"]
    assert re.fullmatch(rf"exact duplicate of `{re.escape(str(events))}:\d+`", dropped[0]["reason"])
    assert {"harbor", "lantern"} <= set(manifest["counts"]["by_rig"]) and "hb" not in manifest["counts"]["by_rig"]
    records = load_records(m.path)
    assert len({r["meta"]["content_hash"] for r in records}) == len(records)
    formula = SAMPLE_TOWN / ".beads" / "formulas" / "mol-harbor-release.formula.toml"
    assert manifest["fingerprint"]["files"] == {str(formula): content_id(formula.read_text())}
    assert manifest["fingerprint"]["town"] == str(SAMPLE_TOWN)
    # every line of the beads backup and the event feed is used or rejected with its line
    accounting = manifest["accounting"]
    by_file = rejected_lines(read_jsonl(m.path / "rejected.jsonl"))
    for file in [*sorted(SAMPLE_BACKUP.glob("*.jsonl")), SAMPLE_TOWN / ".events.jsonl"]:
        assert accounting[str(file)]["lines"] == len(nonblank_lines(file)), file
        assert accounting[str(file)]["used"] + accounting[str(file)]["rejected"] == accounting[str(file)]["lines"], file
        assert len(set(by_file[str(file)])) == accounting[str(file)]["rejected"], file


def test_every_line_of_the_sample_transcripts_is_accounted_for(isolated):
    m = build_corpus(CorpusSpec(inputs=town_inputs(SAMPLE_TOWN, sources=("transcripts",))), home=isolated,
                     town=load_town(SAMPLE_TOWN), quiet=True)
    accounting = read_manifest(m.path)["accounting"]
    files = sorted((SAMPLE_TOWN / "claude" / "projects").glob("*/*.jsonl"))
    assert len(files) == 3
    names = [harvest_mod.scrub_path(Redactor(), str(f)) for f in files]  # `-home-op-…`: the user name is PII
    assert [accounting[name]["lines"] for name in names] == [len(nonblank_lines(f)) for f in files]


# --- versions on disk ------------------------------------------------------------------------

def test_output_folder_holds_three_files_and_no_partial(sample_copy, isolated):
    m = build_corpus(beads_spec(sample_copy), home=isolated, quiet=True)
    assert sorted(p.name for p in (isolated / "corpus").iterdir()) == [".state", m.id]
    # the corpus, its rejected lines and manifest, plus the health check's output: its findings, the report
    # and its chart, and the full list behind a section the report cuts (35 stale flags > report.CAP)
    assert sorted(p.name for p in m.path.iterdir()) == [
        "composition.png", "health.json", "manifest.json", "records.jsonl", "rejected.jsonl", "report.md",
        "stale.jsonl"]
    health = json.loads((m.path / "health.json").read_text())
    assert set(health) == {"dropped", "stale", "conflicts", "tokens"}
    assert read_jsonl(m.path / "stale.jsonl") == health["stale"]
    assert len(health["stale"]) == read_manifest(m.path)["health"]["stale"] == 35
    assert (m.path / "composition.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_write_leaves_nothing_behind(sample_copy, isolated, monkeypatch):
    def boom(path, obj):
        raise OSError("disk full")
    monkeypatch.setattr(harvest_mod, "write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        build_corpus(beads_spec(sample_copy), home=isolated, quiet=True)
    assert list((isolated / "corpus").iterdir()) == []


def test_stale_partial_from_a_killed_run_is_replaced(sample_copy, isolated, clock):
    spec = beads_spec(sample_copy)
    m = build_corpus(spec, home=isolated, quiet=True)
    shutil.rmtree(isolated / "corpus")
    partial = m.path.parent / f".{m.id}.partial"
    partial.mkdir(parents=True)
    (partial / "records.jsonl").write_text("half a line")
    again = build_corpus(spec, home=isolated, quiet=True)
    assert again.path == m.path and not partial.exists()
    assert len(load_records(again.path)) == m.records


def test_list_and_find_corpora(tmp_path, isolated, clock):
    assert list_corpora(isolated) == []
    backup = write_backup(tmp_path / "b", [bead("hb-1")])
    first = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    clock.tick()
    write_backup(backup, [bead("hb-1"), bead("hb-2")])
    second = build_corpus(beads_spec(backup), home=isolated, quiet=True)
    assert [c["id"] for c in list_corpora(isolated)] == [first.id, second.id]
    assert find_corpus(isolated, first.id) == first.path
    assert find_corpus(isolated, "corpus-20261101T120001") == second.path
    with pytest.raises(InputError) as err:
        find_corpus(isolated, "corpus-2026")
    assert err.value.message == f"2 corpora matching `corpus-2026` in {isolated / 'corpus'}"
    assert err.value.hint == "list them with `gt-finetune corpus list`"
    with pytest.raises(InputError) as err:
        find_corpus(isolated, "corpus-1999")
    assert err.value.message == f"no corpus matching `corpus-1999` in {isolated / 'corpus'}"
    assert re.fullmatch(r"corpus-20261101T120000-[0-9a-f]{12}", first.id)


def test_town_scope_keeps_town_history_and_needs_rigs_named(isolated):
    from gt_finetune.corpus import SAMPLE_TOWN, town_inputs
    from gt_finetune.town import load_town

    town = load_town(SAMPLE_TOWN)
    spec = CorpusSpec(inputs=town_inputs(SAMPLE_TOWN, sources=("beads_jsonl",)), scope=("town",))
    only_town = build_corpus(spec, home=isolated / "a", town=town, quiet=True)
    rigs = {r["meta"]["rig"] for r in read_jsonl(only_town.path / "records.jsonl")}
    assert rigs <= {"", "hq"} and only_town.records > 0
    spec = CorpusSpec(inputs=spec.inputs, scope=("town", "rig:harbor"))
    with_harbor = build_corpus(spec, home=isolated / "b", town=town, quiet=True)
    rigs = {r["meta"]["rig"] for r in read_jsonl(with_harbor.path / "records.jsonl")}
    assert "harbor" in rigs and "lantern" not in rigs


def test_a_corpus_killed_before_its_report_is_reused_and_gets_its_report(sample_copy, isolated, clock):
    spec = beads_spec(sample_copy)
    m = build_corpus(spec, home=isolated, quiet=True)
    (m.path / "report.md").unlink()  # killed right after the rename, before the report was written
    (m.path / "composition.png").unlink()
    again = build_corpus(spec, home=isolated, quiet=True)
    assert again.path == m.path and again.new_records == 0  # the same corpus: later stages keep their caches
    assert (m.path / "report.md").read_text().startswith(f"# Corpus report: `{m.id}`")
    assert (m.path / "composition.png").is_file()
