"""The Dolt/MySQL harvest against hostile database names, hostile locations and a silent listener
(issue 15, items 1, 5, 13 and the `--dolt` parts of 15).

Database names come from the server, so a town's agents choose them: each is quoted (backticks
doubled) and the reads run inside `START TRANSACTION READ ONLY`; a name that cannot be shown or
named back is skipped with a reason. A location is parsed by one function (credentials end at the
last `@`), which the mask uses too, and no password reaches a file, an error or a hash. Tests that
need a server use the MariaDB of tests/sql (`town`, skipped without one); the rest need none.
"""
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import assume, given, strategies as st

from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus
from gt_finetune.corpus.harvest import public_spec
from gt_finetune.corpus.records import Rejected
from gt_finetune.corpus.sources import beads_sql
from gt_finetune.corpus.sources.context import HarvestContext
from gt_finetune.errors import ExternalError, InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402
from sql import conftest as sql_fixtures  # noqa: E402  (the `mysql` fixture and its skip when no server)
from sql.load import load_backup  # noqa: E402

mysql = sql_fixtures.mysql
INJECTION = "mysql`.`user` INTO OUTFILE '{out}' -- c"
GUARD_S = 60  # turns a hang into a failure; the harvest itself gives up within seconds


def sql_name(name: str) -> str:
    """The test's own quoting, for setting the server up (independent of the code under test)."""
    return "`" + name.replace("`", "``") + "`"


def split(items):
    items = list(items)
    return [i for i in items if not isinstance(i, Rejected)], [i for i in items if isinstance(i, Rejected)]


# ---- pure: quoting, parsing, masking ----

@fuzz(200)
@given(st.text(st.characters(exclude_characters="\x00"), min_size=1))
def test_any_name_quotes_to_one_identifier(name):
    q = beads_sql.quote_identifier(name)
    inner = q[1:-1]
    assert q[0] == q[-1] == "`"
    assert "`" not in inner.replace("``", "")  # every backtick inside is doubled: none closes the name
    assert inner.replace("``", "`") == name


def test_the_injection_name_stays_one_identifier():
    name = INJECTION.format(out="/tmp/x")
    assert beads_sql.quote_identifier(name) == "`mysql``.``user`` INTO OUTFILE '/tmp/x' -- c`"


@pytest.mark.parametrize("given, expected", [
    ("ci:pa/ss@db.example:3310/hq", ("db.example", 3310, "ci", "pa/ss", ("hq",))),
    ("ci:p@ss:w/rd@127.0.0.1:3399/hq,harbor", ("127.0.0.1", 3399, "ci", "p@ss:w/rd", ("hq", "harbor"))),
    ("[::1]:3310/hq", ("::1", 3310, "root", "", ("hq",))),
    ("ci@[::1]", ("::1", 3307, "ci", "", ())),
    ("ci:pw@[2001:db8::7]:3311", ("2001:db8::7", 3311, "ci", "pw", ())),
    ("127.0.0.1/hq", ("127.0.0.1", 3307, "root", "", ("hq",))),
])
def test_locations_parse_with_credentials_ending_at_the_last_at(given, expected):
    s = beads_sql.connection_settings(given, HarvestContext())
    assert (s["host"], s["port"], s["user"], s["password"], s["databases"]) == expected


def test_a_user_without_password_keeps_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("GT_DOLT_PASSWORD", "from-env")
    assert beads_sql.connection_settings("ci@127.0.0.1:3310", HarvestContext())["password"] == "from-env"
    assert beads_sql.connection_settings("ci:@127.0.0.1:3310", HarvestContext())["password"] == ""


@pytest.mark.parametrize("given, says", [
    ("ci:S3cr/et@127.0.0.1:abc/hq", "port `abc` is not a number from 1 to 65535"),
    ("ci:S3cr/et@127.0.0.1:70000", "port `70000` is not a number from 1 to 65535"),
    ("ci:S3cr/et@127.0.0.1:", "port `` is not a number from 1 to 65535"),
    ("ci:S3cr/et@::1:3307", "an IPv6 address goes in brackets"),
    ("ci:S3cr/et@[::1:3307", "an IPv6 address goes in brackets"),
    ("ci:S3cr/et@[::1]x:3307", "an IPv6 address goes in brackets"),
])
def test_a_bad_location_is_an_input_error_that_shows_no_password(given, says):
    with pytest.raises(InputError) as err:
        beads_sql.connection_settings(given, HarvestContext())
    assert says in err.value.message
    assert "S3cr" not in err.value.message + (err.value.hint or "")
    assert "ci:***@" in err.value.message


def test_a_bad_port_in_the_environment_is_an_input_error(monkeypatch):
    monkeypatch.setenv("GT_DOLT_PORT", "dolt")
    with pytest.raises(InputError, match="GT_DOLT_PORT"):
        beads_sql.connection_settings("", HarvestContext())


@pytest.mark.parametrize("given, masked", [
    ("ci:p@ss@h:1/hq", "ci:***@h:1/hq"),  # the old mask stopped at the first `@`: `ci:***@ss@h:1/hq`
    ("ci:pa/ss@h:1", "ci:***@h:1"),  # the old mask stopped at a `/`
    ("ci@h:1", "ci@h:1"),
    ("h:1/hq", "h:1/hq"),
    (":pw@h", ":***@h"),
])
def test_the_mask_agrees_with_the_parser(given, masked):
    spec = CorpusSpec(inputs=(("beads_sql", given), ("beads_jsonl", "ci:p@ss@h")))
    assert public_spec(spec)["inputs"] == [["beads_sql", masked], ["beads_jsonl", "ci:p@ss@h"]]


users = st.text(st.characters(exclude_characters=":@\x00"), max_size=8)
addresses = st.text(st.characters(exclude_characters="@\x00"), max_size=20)


@fuzz(200)
@given(users, st.text(min_size=1, max_size=20), addresses)
def test_fuzzed_locations_parse_or_fail_as_input_errors_and_never_show_the_password(user, password, address):
    password = f"PW{password}"
    assume("PW" not in user + address)
    location = f"{user}:{password}@{address}"
    masked = beads_sql.public_location(location)
    assert password not in masked and masked.endswith(f"@{address}")
    try:
        parsed = beads_sql.connection_settings(location, HarvestContext())
    except InputError as err:
        assert password not in err.message + (err.hint or "")
    else:
        assert (parsed["user"], parsed["password"]) == (user or "root", password)


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]  # nothing listens there once closed


@fuzz(40)
@given(users, st.text(max_size=12), st.sampled_from(["127.0.0.1", "[::1]", "", "127.0.0.1\x00x", "[::1", "[]"]),
       st.one_of(st.none(), st.text(max_size=8)), st.text(max_size=12))
def test_fuzzed_loopback_locations_end_in_an_input_or_external_error(closed_port, user, password, host, port, dbs):
    """Never a traceback: an address that does not parse is an InputError, one that does (on the
    loopback, at a closed port, so nothing else is contacted) an ExternalError."""
    location = f"{user}:PW{password}@{host}:{closed_port if port is None else port}/{dbs}"
    with pytest.raises((InputError, ExternalError)) as err:
        list(beads_sql.harvest(location, HarvestContext()))
    assert f"PW{password}" not in err.value.message + (err.value.hint or "")


def test_a_listener_that_never_greets_fails_within_seconds_naming_host_and_port():
    held = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def accept():
            while True:
                try:
                    held.append(server.accept()[0])  # accepted, never answered
                except OSError:
                    return
        threading.Thread(target=accept, daemon=True).start()
        outcome = {}

        def harvest():
            try:
                list(beads_sql.harvest(f"root@127.0.0.1:{port}", HarvestContext()))
            except Exception as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc
        worker = threading.Thread(target=harvest, daemon=True)
        worker.start()
        worker.join(GUARD_S)
        assert not worker.is_alive(), f"the harvest still waits on a silent listener after {GUARD_S} s"
    for sock in held:
        sock.close()
    err = outcome.get("error")
    assert isinstance(err, ExternalError), err
    assert err.exit_code == 3
    assert f"127.0.0.1:{port}" in err.message and "did not answer" in err.message


def test_cli_against_a_silent_listener_exits_3_with_one_error_line(capsys, monkeypatch):
    monkeypatch.setattr(beads_sql, "ANSWER_TIMEOUT_S", 1)  # the test above waits the real limit
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        held = []
        threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.setdefault(
            "rc", main(["corpus", "build", "--dolt", f"ci:S3cr/et@127.0.0.1:{port}/hq"])), daemon=True)
        worker.start()
        worker.join(GUARD_S)
        assert not worker.is_alive(), f"`corpus build --dolt` still waits after {GUARD_S} s"
    err = capsys.readouterr().err
    assert outcome["rc"] == 3, err
    [line] = [x for x in err.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: corpus input `beads_sql:ci:***@127.0.0.1:") and "did not answer" in line
    assert "S3cr" not in err and "Traceback" not in err


@pytest.mark.parametrize("dolt, rc, says", [
    ("ci:S3cr/et@127.0.0.1:abc/hq", 1, "port `abc` is not a number"),
    ("ci:S3cr/et@::1:3307", 1, "an IPv6 address goes in brackets"),
    ("ci:S3cr/et@127.0.0.1:{closed}/hq", 3, "cannot connect to the Dolt server at 127.0.0.1:{closed}"),
    ("ci:S3cr/et@[::1]:{closed}/hq", 3, "cannot connect to the Dolt server at [::1]:{closed}"),
])
def test_cli_dolt_locations_end_in_one_error_line_without_the_password(capsys, dolt, rc, says):
    with socket.create_server(("127.0.0.1", 0)) as s:
        closed = s.getsockname()[1]  # nothing listens there once closed
    code = main(["corpus", "build", "--dolt", dolt.format(closed=closed)])
    err = capsys.readouterr().err
    assert code == rc, err
    [line] = [x for x in err.splitlines() if x.startswith("error: ")]
    assert says.format(closed=closed) in line
    assert "S3cr" not in err and "Traceback" not in err


# ---- with a server ----

@pytest.fixture(scope="module")
def hostile(mysql):
    """`ft_sqlsafe` (the sample town's beads) and copies of its `issues` under hostile names:
    the injection name, ``evil`db`` and one with a control character in it."""
    out = Path("/tmp") / f"gtft-{uuid.uuid4().hex[:8]}"  # the name must fit in 64 characters
    names = {"injection": INJECTION.format(out=out), "backtick": "evil`db", "control": "ft_bell\x07db"}
    conn = mysql.connect()
    try:
        load_backup(conn, SAMPLE_TOWN / ".beads" / "backup", database="ft_sqlsafe")
        with conn.cursor() as cur:
            for name in names.values():
                cur.execute(f"DROP DATABASE IF EXISTS {sql_name(name)}")
                cur.execute(f"CREATE DATABASE {sql_name(name)}")
                cur.execute(f"CREATE TABLE {sql_name(name)}.`issues` LIKE `ft_sqlsafe`.`issues`")
                cur.execute(f"INSERT INTO {sql_name(name)}.`issues` SELECT * FROM `ft_sqlsafe`.`issues` "
                            "WHERE status = 'closed' ORDER BY id LIMIT 5")
        conn.commit()
    finally:
        conn.close()
    yield {**names, "outfile": out}
    conn = mysql.connect()
    try:
        with conn.cursor() as cur:
            for name in ("ft_sqlsafe", *names.values()):
                cur.execute(f"DROP DATABASE IF EXISTS {sql_name(name)}")
    finally:
        conn.close()
    out.unlink(missing_ok=True)  # only there when an injection worked


def at(mysql, databases: str = "", password: str | None = None) -> str:
    return (f"{mysql.user}:{mysql.password if password is None else password}@{mysql.host}:{mysql.port}"
            + (f"/{databases}" if databases else ""))


@pytest.mark.town
def test_hostile_database_names_are_read_as_names_in_the_default_harvest(mysql, hostile):
    records, rejected = split(beads_sql.harvest(at(mysql), HarvestContext()))
    assert not hostile["outfile"].exists(), "the database name was run as SQL"
    locations = {r["meta"]["location"] for r in records}
    where = f"{mysql.host}:{mysql.port}"
    assert f"{where}/{hostile['injection']}.issues" in locations
    assert f"{where}/evil`db.issues" in locations
    assert f"{where}/ft_sqlsafe.issues" in locations
    control = [r for r in rejected if "control or invisible" in r.reason]
    assert [r.where for r in control] == [f"{where}/'ft_bell\\x07db'"]
    assert not any("\x07" in r["meta"]["location"] for r in records)


@pytest.mark.town
def test_named_hostile_databases_are_read_too(mysql, hostile):
    records, _ = split(beads_sql.harvest(at(mysql, f"{hostile['injection']},evil`db"), HarvestContext()))
    assert not hostile["outfile"].exists()
    where = f"{mysql.host}:{mysql.port}"
    assert {r["meta"]["location"] for r in records} == {f"{where}/{hostile['injection']}.issues",
                                                       f"{where}/evil`db.issues"}


@pytest.mark.town
def test_every_read_is_inside_one_read_only_transaction(mysql, hostile, monkeypatch):
    import pymysql.connections

    sent = []
    original = pymysql.connections.Connection.query
    monkeypatch.setattr(pymysql.connections.Connection, "query",
                        lambda self, sql, unbuffered=False: sent.append(sql) or original(self, sql, unbuffered))
    records, _ = split(beads_sql.harvest(at(mysql, "ft_sqlsafe,evil`db"), HarvestContext()))
    assert records
    assert sent[0] == "START TRANSACTION READ ONLY"
    assert all(s.split(None, 1)[0] in ("SELECT", "SHOW") for s in sent[1:]), sent


@pytest.mark.town
def test_no_password_is_kept_in_any_file_error_or_hash(mysql, capsys, isolated):
    """A user whose password holds `/`, `@`, `:` and non-Latin-1 text logs in (the parse is right, the
    password goes as UTF-8); neither the workspace, nor the output, nor an error holds it; a new
    password keeps the corpus's identity."""
    conn = mysql.connect()
    user, first, second = "ft_pw_probe", "Pw/1@x:Sécret€", "Pw/2@y:Sécret€"
    host = "127.0.0.1"  # the test server's users are @127.0.0.1
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (first,))
        location = f"{user}:{first}@{host}:{mysql.port}/ft_nothing_here"
        spec = CorpusSpec(inputs=(("events", str(SAMPLE_TOWN)), ("beads_sql", location)))
        one = build_corpus(spec, home=isolated, quiet=True)
        assert main(["corpus", "build", "--dolt", location]) == 1  # nothing usable: an input error
        with conn.cursor() as cur:
            cur.execute(f"ALTER USER '{user}'@'{host}' IDENTIFIED BY %s", (second,))
        again = CorpusSpec(inputs=(("events", str(SAMPLE_TOWN)), ("beads_sql", location.replace(first, second))))
        two = build_corpus(again, home=isolated, quiet=True)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        conn.close()
    assert (two.id, two.new_records) == (one.id, 0)  # the password is no part of the corpus's identity
    out = capsys.readouterr()
    for secret in (first, second):
        assert secret not in out.out + out.err
        for path in isolated.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
                assert secret not in path.name
    assert f"{user}:***@{host}:{mysql.port}/ft_nothing_here" in out.err
