"""beads_schema.sql + load.py against a real MySQL-protocol server (MariaDB in CI).

Start one with `bash .ci/mysql.sh start`; without a server these tests skip.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import SAMPLE_TOWN_BACKUP
from .load import load_backup, parse_timestamp

pytestmark = pytest.mark.town

JSON_COLUMNS = {"metadata", "extra"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def jsonl(backup: Path, stem: str) -> list[dict]:
    path = backup / f"{stem}.jsonl"
    return read_jsonl(path) if path.is_file() else []


def line_count(backup: Path, stem: str) -> int:
    return len(jsonl(backup, stem))


def fetch_dicts(conn, sql: str, params=()) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def as_backup_value(column: str, value):
    """A value read from the server, in the form the JSONL backup writes it."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if column in JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    return value


def assert_round_trip(conn, table: str, expected: dict) -> None:
    [row] = fetch_dicts(conn, f"SELECT * FROM `{table}` WHERE id = %s", (expected["id"],))
    for key, want in expected.items():
        got = as_backup_value(key, row[key])
        if key in JSON_COLUMNS and isinstance(want, str):
            want = json.loads(want)
        assert got == want, f"{table}.{key} of {expected['id']}: {got!r} != {want!r}"


def assert_counts_match_backup(counts: dict[str, int], backup: Path) -> None:
    issues = jsonl(backup, "issues")
    assert counts["issues"] + counts["wisps"] == len(issues)
    assert counts["wisps"] == sum(1 for row in issues if row.get("ephemeral") == 1)
    for stem in ("labels", "events", "dependencies", "comments"):
        assert counts[stem] + counts[f"wisp_{stem}"] == line_count(backup, stem), stem
    assert counts["config"] == line_count(backup, "config")
    assert counts["interactions"] == line_count(backup, "interactions")


def dependency_pairs(conn, table: str, shape: str) -> Counter:
    target = ("depends_on_id" if shape == "old"
              else "COALESCE(depends_on_issue_id, depends_on_wisp_id, depends_on_external)")
    rows = fetch_dicts(conn, f"SELECT issue_id, {target} AS target, type FROM `{table}`")
    return Counter((r["issue_id"], r["target"], r["type"]) for r in rows)


def backup_dependency_pairs(backup: Path) -> Counter:
    return Counter((r["issue_id"], r["depends_on_id"], r["type"]) for r in jsonl(backup, "dependencies"))


def drop(mysql, database: str) -> None:
    conn = mysql.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()


@pytest.fixture
def scratch_db(mysql):
    """A database name for one test, dropped afterwards."""
    names = []

    def make(name: str) -> str:
        names.append(name)
        return name

    yield make
    for name in names:
        drop(mysql, name)


# --- carolina-futons (real Gas Town backup, new dependencies shape) -----------------------------

def test_carolina_counts_match_backup(carolina_db, carolina_backup):
    assert_counts_match_backup(carolina_db, carolina_backup)
    # The numbers the fixture is known for, so a silently changed fixture shows up here.
    assert carolina_db["issues"] + carolina_db["wisps"] == 1262
    assert carolina_db["labels"] + carolina_db["wisp_labels"] == 1347


def test_carolina_dependency_targets(carolina_db, carolina_backup, mysql):
    deps = jsonl(carolina_backup, "dependencies")
    conn = mysql.connect("carolina_test")
    try:
        loaded = dependency_pairs(conn, "dependencies", "new") + dependency_pairs(conn, "wisp_dependencies", "new")
        assert loaded == backup_dependency_pairs(carolina_backup)
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT COUNT(*) FROM dependencies WHERE depends_on_external IS NOT NULL)"
                        " + (SELECT COUNT(*) FROM wisp_dependencies WHERE depends_on_external IS NOT NULL)")
            external = cur.fetchone()[0]
            # Every row has exactly one target (the CHECK constraint held).
            cur.execute("SELECT COUNT(*) FROM dependencies WHERE (depends_on_issue_id IS NOT NULL)"
                        " + (depends_on_wisp_id IS NOT NULL) + (depends_on_external IS NOT NULL) <> 1")
            assert cur.fetchone()[0] == 0
            # Server-generated UUID ids.
            cur.execute("SELECT COUNT(DISTINCT id), MIN(CHAR_LENGTH(id)) FROM dependencies")
            distinct, shortest = cur.fetchone()
            assert distinct == carolina_db["dependencies"] and shortest == 36
        assert external == sum(1 for d in deps if d["depends_on_id"].startswith("external:"))
    finally:
        conn.close()


def test_carolina_round_trip(carolina_db, carolina_backup, mysql):
    issues = jsonl(carolina_backup, "issues")
    durable = [r for r in issues if r["ephemeral"] == 0]
    ephemeral = [r for r in issues if r["ephemeral"] == 1]
    # The durable issue with the longest description, and a wisp with a close reason.
    durable_pick = max(durable, key=lambda r: (len(r["description"]), r["id"]))
    wisp_pick = max(ephemeral, key=lambda r: (len(r["close_reason"]), r["closed_at"] or "", r["id"]))
    assert len(durable_pick) == 53
    conn = mysql.connect("carolina_test")
    try:
        assert_round_trip(conn, "issues", durable_pick)
        assert_round_trip(conn, "wisps", wisp_pick)
        for pick, table in ((durable_pick, "labels"), (wisp_pick, "wisp_labels")):
            want = sorted(r["label"] for r in jsonl(carolina_backup, "labels") if r["issue_id"] == pick["id"])
            got = sorted(r["label"] for r in fetch_dicts(conn, f"SELECT label FROM `{table}` WHERE issue_id = %s",
                                                         (pick["id"],)))
            assert got == want
        # An event: integer ids (pre-migration-0037 backups) come back as text, timestamps as UTC.
        event = max(jsonl(carolina_backup, "events"), key=lambda r: (len(r["old_value"] or ""), r["id"]))
        table = "wisp_events" if event["issue_id"] in {r["id"] for r in ephemeral} else "events"
        [row] = fetch_dicts(conn, f"SELECT * FROM `{table}` WHERE id = %s", (str(event["id"]),))
        assert row["old_value"] == event["old_value"] and row["new_value"] == event["new_value"]
        assert row["created_at"] == parse_timestamp(event["created_at"])
        # config's `key` column (a reserved word) round-trips.
        config = {r["key"]: r["value"] for r in fetch_dicts(conn, "SELECT `key`, value FROM config")}
        assert config == {r["key"]: r["value"] for r in jsonl(carolina_backup, "config")}
    finally:
        conn.close()


def test_carolina_without_wisp_routing(mysql, carolina_backup, scratch_db):
    conn = mysql.connect()
    try:
        counts = load_backup(conn, carolina_backup, database=scratch_db("carolina_flat_test"),
                             wisps_from_ephemeral=False)
    finally:
        conn.close()
    assert counts["issues"] == line_count(carolina_backup, "issues")
    assert counts["labels"] == line_count(carolina_backup, "labels")
    assert counts["events"] == line_count(carolina_backup, "events")
    assert counts["dependencies"] == line_count(carolina_backup, "dependencies")
    assert not any(counts[t] for t in counts if t.startswith("wisp"))


def test_carolina_old_dependencies_shape(mysql, carolina_backup, scratch_db):
    database = scratch_db("carolina_old_deps_test")
    conn = mysql.connect()
    try:
        counts = load_backup(conn, carolina_backup, database=database, deps_shape="old")
        assert_counts_match_backup(counts, carolina_backup)
        columns = [r["COLUMN_NAME"] for r in fetch_dicts(
            conn, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
                  " AND TABLE_NAME = 'dependencies' ORDER BY ORDINAL_POSITION", (database,))]
        assert columns == ["issue_id", "depends_on_id", "type", "created_at", "created_by"]
        [pk] = fetch_dicts(conn, "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS cols"
                                 " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
                                 " AND TABLE_NAME = 'dependencies' AND INDEX_NAME = 'PRIMARY'", (database,))
        assert pk["cols"] == "issue_id,depends_on_id"
        loaded = dependency_pairs(conn, "dependencies", "old") + dependency_pairs(conn, "wisp_dependencies", "old")
        assert loaded == backup_dependency_pairs(carolina_backup)
    finally:
        conn.close()


def test_carolina_load_twice_is_idempotent(carolina_db, carolina_backup, mysql):
    """Loading into the already loaded `carolina_test` again gives the same tables (DROP first)."""
    def snapshot(conn):
        return (fetch_dicts(conn, "SELECT * FROM issues ORDER BY id"),
                fetch_dicts(conn, "SELECT * FROM wisp_labels ORDER BY issue_id, label"),
                fetch_dicts(conn, "SELECT issue_id, depends_on_issue_id, depends_on_wisp_id, depends_on_external,"
                                  " type, created_at FROM dependencies ORDER BY issue_id, id"))

    conn = mysql.connect("carolina_test")
    try:
        before = snapshot(conn)
        counts = load_backup(conn, carolina_backup, database="carolina_test")
        after = snapshot(conn)
    finally:
        conn.close()
    assert counts == carolina_db
    assert len(before[0]) == counts["issues"]
    assert before[:2] == after[:2]
    key = lambda r: (r["issue_id"], r["depends_on_issue_id"] or "", r["depends_on_wisp_id"] or "",
                     r["depends_on_external"] or "")
    assert sorted(before[2], key=key) == sorted(after[2], key=key)


# --- the sample town shipped in the package -----------------------------------------------------

def test_sample_town_loads(mysql, scratch_db):
    backup = SAMPLE_TOWN_BACKUP
    assert (backup / "issues.jsonl").is_file(), backup
    conn = mysql.connect()
    try:
        counts = load_backup(conn, backup, database=scratch_db("sample_town_test"))
        assert_counts_match_backup(counts, backup)
        assert counts["comments"] == line_count(backup, "comments") > 0
        assert dependency_pairs(conn, "dependencies", "new") == backup_dependency_pairs(backup)
        issue = max(jsonl(backup, "issues"), key=lambda r: (len(r["notes"]), len(r["description"]), r["id"]))
        assert_round_trip(conn, "wisps" if issue["ephemeral"] else "issues", issue)
        comment = jsonl(backup, "comments")[0]
        [row] = fetch_dicts(conn, "SELECT * FROM comments WHERE id = %s", (comment["id"],))
        assert {k: as_backup_value(k, v) for k, v in row.items()} == comment
    finally:
        conn.close()


def test_sample_town_old_dependencies_shape(mysql, scratch_db):
    conn = mysql.connect()
    try:
        counts = load_backup(conn, SAMPLE_TOWN_BACKUP, database=scratch_db("sample_town_old_test"), deps_shape="old")
        assert_counts_match_backup(counts, SAMPLE_TOWN_BACKUP)
        assert dependency_pairs(conn, "dependencies", "old") == backup_dependency_pairs(SAMPLE_TOWN_BACKUP)
    finally:
        conn.close()


# --- loader guards ------------------------------------------------------------------------------

def test_loader_rejects_unknown_keys_and_bad_names(mysql, tmp_path, scratch_db):
    backup = tmp_path / "backup"
    backup.mkdir()
    row = {"id": "x-1", "title": "t", "description": "", "design": "", "acceptance_criteria": "", "notes": "",
           "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05+02:00",
           "closed_at": "None", "ephemeral": 0, "metadata": '{"a": 1}'}
    (backup / "issues.jsonl").write_text(json.dumps(row) + "\n")
    conn = mysql.connect()
    try:
        with pytest.raises(ValueError, match="database name"):
            load_backup(conn, backup, database="bad-name; DROP")
        database = scratch_db("loader_guard_test")
        counts = load_backup(conn, backup, database=database)
        assert counts["issues"] == 1
        [got] = fetch_dicts(conn, "SELECT created_at, updated_at, closed_at, metadata FROM issues")
        assert got["created_at"] == datetime(2026, 1, 2, 3, 4, 5)
        assert got["updated_at"] == datetime(2026, 1, 2, 1, 4, 5)  # +02:00 stored as UTC
        assert got["closed_at"] is None  # "None" -> NULL
        assert json.loads(got["metadata"]) == {"a": 1}
        (backup / "issues.jsonl").write_text(json.dumps({**row, "no_such_column": 1}) + "\n")
        with pytest.raises(ValueError, match="no_such_column"):
            load_backup(conn, backup, database=database)
        (backup / "issues.jsonl").write_text(json.dumps(row) + "\n")
        (backup / "mystery.jsonl").write_text("{}\n")
        with pytest.raises(ValueError, match="mystery.jsonl"):
            load_backup(conn, backup, database=database)
    finally:
        conn.close()
