"""Beads over SQL against a real MySQL-protocol server (MariaDB in CI), compared with the JSONL path."""
import pytest

from gt_finetune.corpus import CorpusSpec, build_corpus
from gt_finetune.corpus.records import Rejected
from gt_finetune.corpus.sources import beads_jsonl, beads_sql
from gt_finetune.corpus.sources.context import HarvestContext

from .load import load_backup


def location(mysql, database):
    return f"{mysql.user}:{mysql.password}@{mysql.host}:{mysql.port}/{database}"


def split(items):
    items = list(items)
    return ([i for i in items if not isinstance(i, Rejected)], [i for i in items if isinstance(i, Rejected)])


def test_sql_and_jsonl_give_the_same_record_set(mysql, carolina_db, carolina_backup):
    from_sql, _ = split(beads_sql.harvest(location(mysql, "carolina_test"), HarvestContext()))
    from_jsonl, _ = split(beads_jsonl.harvest(str(carolina_backup), HarvestContext()))
    assert len(from_jsonl) > 20
    assert sorted(r["meta"]["content_hash"] for r in from_sql) == sorted(r["meta"]["content_hash"] for r in from_jsonl)
    assert {r["meta"]["source"] for r in from_sql} == {r["meta"]["source"] for r in from_jsonl}


def test_old_dependencies_shape_and_missing_tables_are_handled(mysql, carolina_backup):
    conn = mysql.connect()
    try:
        load_backup(conn, carolina_backup, database="carolina_old", deps_shape="old")
        with conn.cursor() as cur:
            cur.execute("DROP TABLE `carolina_old`.`interactions`")
            cur.execute("DROP TABLE `carolina_old`.`wisp_comments`")
        conn.commit()
    finally:
        conn.close()
    ctx = HarvestContext()
    records, rejected = split(beads_sql.harvest(location(mysql, "carolina_old"), ctx))
    assert len(records) > 20
    assert any("tables not present (skipped): " in r.reason and "interactions" in r.reason for r in rejected)
    assert ctx.state["dolt_history"] == {"carolina_old": False}  # MariaDB has no dolt_log


def test_a_database_without_beads_is_skipped_with_a_reason(mysql):
    conn = mysql.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS not_beads")
            cur.execute("CREATE DATABASE not_beads")
            cur.execute("CREATE TABLE not_beads.things (id INT)")
        conn.commit()
        records, rejected = split(beads_sql.harvest(location(mysql, "not_beads"), HarvestContext()))
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS not_beads")
        conn.close()
    assert records == []
    assert [r.reason for r in rejected] == ["no `issues` table: not a beads database"]


def test_incremental_harvest_over_sql_adds_exactly_the_new_bead(mysql, carolina_backup, isolated):
    conn = mysql.connect()
    try:
        load_backup(conn, carolina_backup, database="carolina_inc")
    finally:
        conn.close()
    spec = CorpusSpec(inputs=(("beads_sql", location(mysql, "carolina_inc")),))
    first = build_corpus(spec, home=isolated, quiet=True)
    again = build_corpus(spec, home=isolated, quiet=True)
    assert (again.id, again.new_records) == (first.id, 0)
    conn = mysql.connect("carolina_inc")
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status,"
                        " priority, issue_type, close_reason, created_at, updated_at, closed_at, created_by, assignee)"
                        " VALUES (%s, %s, %s, '', '', '', 'closed', 2, 'task', %s, NOW(), NOW(), NOW(), %s, %s)",
                        ("hq-new1", "Rotate the webhook secret", "The old one leaked into a log.",
                         "Rotated it with `gt config set` and purged the log line; verified delivery.",
                         "mayor/", "harbor/polecats/nux"))
        conn.commit()
    finally:
        conn.close()
    third = build_corpus(spec, home=isolated, quiet=True)
    assert third.new_records == 1 and third.records == first.records + 1 and third.id != first.id
    conn = mysql.connect()
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS carolina_inc")
    conn.close()


@pytest.mark.parametrize("given, expected", [
    ("", ("127.0.0.1", 3307, "root", "", ())),
    ("db.example:3310", ("db.example", 3310, "root", "", ())),
    ("ci:pw@127.0.0.1:3399/hq,harbor", ("127.0.0.1", 3399, "ci", "pw", ("hq", "harbor"))),
])
def test_connection_settings(given, expected):
    s = beads_sql.connection_settings(given, HarvestContext())
    assert (s["host"], s["port"], s["user"], s["password"], s["databases"]) == expected
