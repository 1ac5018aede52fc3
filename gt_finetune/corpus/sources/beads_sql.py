"""Beads over SQL: read a town's Dolt server (or any MySQL-protocol copy) read-only, parameterised.

Databases are `hq` plus one per rig (gastown.md §3). Rows are normalised to the JSONL backup's
forms (RFC3339 timestamps, plain strings) and converted by the same code as the JSONL reader,
so a bead gives the same record either way. A missing table or an unexpected column skips that
part with a clear rejection; a server that does not answer, or stops mid-read, fails the harvest
with how far it got, so no corpus silently lacks the town's beads. Dolt history
(`dolt_log`) is detected at run time; MariaDB and other servers simply lack it.

Database names come from the server, so the town's agents choose them: every name is quoted with
its backticks doubled, and every read runs in one `START TRANSACTION READ ONLY`.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from ...errors import ExternalError, InputError
from ...workspace import shown
from ..records import Rejected, generated_by, make_record
from .beads_rows import bead_record, role_of
from .context import HarvestContext

SYSTEM_DATABASES = {"information_schema", "mysql", "performance_schema", "sys"}
TABLES = ("issues", "labels", "comments", "events", "dependencies", "interactions",
          "wisps", "wisp_labels", "wisp_comments", "wisp_events", "wisp_dependencies")
READ = ("issues", "labels", "comments", "wisps", "wisp_labels", "wisp_comments", "interactions")  # the ones selected
DEFAULT_PORT = 3307
CONNECT_TIMEOUT_S = 5  # the TCP connect
ANSWER_TIMEOUT_S = 10  # greeting and login: a listener that accepts and stays silent is not a Dolt server
READ_TIMEOUT_S = 300  # the next bytes of a query, once the server has answered (big tables, busy server)
LOCATION_FORM = ("write it as `[user[:password]@]host[:port][/db,db]`, e.g. `root@127.0.0.1:3307/hq` (an IPv6 "
                 "host in brackets: `[::1]:3307`); keep the password in `GT_DOLT_PASSWORD` rather than here")


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    """Every beads database on the server (or those named in `location`).

    Raises:
        InputError: `location` (or `GT_DOLT_PORT`) does not read as a server address.
        ExternalError: the server cannot be reached or does not answer, or it went away mid-read
            (the error says how far the read got; the harvest publishes nothing).
    """
    import pymysql

    settings = connection_settings(location, ctx)
    where = settings["address"]
    conn = _connect(settings)
    read = _Read()
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION READ ONLY")  # one snapshot of every database, and no writes
        names, unusable = databases(conn, settings["databases"], where)
        yield from unusable
        read.expected = _estimated_rows(conn, names)
        for database in names:
            yield from _harvest_database(conn, database, f"{where}/{database}", ctx, read)
    except pymysql.err.MySQLError as exc:
        lost = isinstance(exc, pymysql.err.InterfaceError) or exc.args[:1] in ((2006,), (2013,), (2055,))
        what = f"the connection to the Dolt server at {where} was lost" if lost else \
            f"the Dolt server at {where} refused a query"
        raise ExternalError(f"{what} after {read.describe()}: {exc}",
                            hint="nothing was published; check the server with `gt dolt status` (start it with "
                                 "`gt dolt start`), then harvest again: it starts over", code="dolt_lost") from exc
    finally:
        conn.close()


def _connect(settings: dict):
    """A logged-in connection, or an ExternalError saying why not.

    pymysql's `connect_timeout` covers only the TCP connect, and its `read_timeout` the greeting as
    well as every query, so a listener that accepts and never greets would hold the harvest for
    READ_TIMEOUT_S. Here the greeting and login get ANSWER_TIMEOUT_S: a timer shuts the socket."""
    import pymysql
    import pymysql.cursors
    from pymysql.constants import CR

    where, user = settings["address"], settings["user"]
    silent = threading.Event()
    try:
        conn = pymysql.connect(  # pymysql would encode a str password as latin-1: Dolt reads UTF-8
            host=settings["host"], port=settings["port"], user=user,
            password=settings["password"].encode("utf-8", "surrogateescape"), connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S, cursorclass=pymysql.cursors.DictCursor, charset="utf8mb4",
            defer_connect=True)
        try:
            sock = socket.create_connection((settings["host"], settings["port"]), CONNECT_TIMEOUT_S)
        except OSError as exc:  # as pymysql reports it when it opens the socket itself
            raise pymysql.err.OperationalError(
                CR.CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {settings['host']!r} ({exc})") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        watchdog = threading.Timer(ANSWER_TIMEOUT_S, _hang_up, (sock, silent))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.connect(sock)
        finally:
            watchdog.cancel()
    except Exception as exc:  # noqa: BLE001 - pymysql raises several types for one problem: not reachable
        if not silent.is_set():
            denied = isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] == (1045,)
            raise ExternalError(
                f"cannot connect to the Dolt server at {where} as `{user}`: {exc}",
                hint=("check the user and password (`GT_DOLT_USER`, `GT_DOLT_PASSWORD`, or `user:password@host:port` "
                      "in the input)" if denied else
                      "check the server with `gt dolt status` (start it with `gt dolt start`), or leave `beads_sql` "
                      "out of the inputs to harvest the JSONL backups instead"), code="dolt_unreachable") from exc
    if silent.is_set():  # silent, or it answered just as the timer shut the socket: as good as silent
        conn.close()
        raise ExternalError(f"the Dolt server at {where} did not answer: it accepted the connection but sent no "
                            f"greeting and login reply within {ANSWER_TIMEOUT_S} s",
                            hint="check that the port is the Dolt server's (`gt dolt status`), not another "
                                 "program's", code="dolt_unreachable")
    return conn


def _hang_up(sock: socket.socket, silent: threading.Event) -> None:
    silent.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
    except OSError:
        pass


@dataclass
class _Read:
    """How far a harvest got, for the error when the server goes away mid-read."""
    rows: int = 0
    expected: int = 0  # the server's estimate for every table to read (information_schema)
    tables: dict[str, int] = field(default_factory=dict)  # `db.table` -> rows, in read order
    current: str = ""

    def describe(self) -> str:
        of = f" of ~{self.expected}" if self.expected > self.rows else ""
        done = f" ({', '.join(f'{t} {n}' for t, n in self.tables.items())})" if self.tables else ""
        during = f", while reading `{self.current}`" if self.current and self.current not in self.tables else ""
        return f"{self.rows}{of} rows{done}{during}"


def connection_settings(location: str, ctx: HarvestContext) -> dict:
    """`[user[:password]@]host[:port][/db,db]`; blanks come from the town, then GT_DOLT_*, then defaults.

    Credentials end at the last `@` (`split_credentials`, which the mask uses too), so a password may
    hold `@`, `/` and `:`; the host, port and database names may not hold `@`. An IPv6 host goes in
    brackets. A user without `:password` keeps the password from the town or `GT_DOLT_PASSWORD`.

    Raises:
        InputError: a port that is not a number from 1 to 65535, or a host that does not read as one.
    """
    dolt = ctx.town.dolt if ctx.town else None
    user = (dolt.user if dolt else None) or os.environ.get("GT_DOLT_USER") or "root"
    password = (dolt.password if dolt else None) or os.environ.get("GT_DOLT_PASSWORD") or ""
    host = (dolt.host if dolt else None) or os.environ.get("GT_DOLT_HOST") or "127.0.0.1"
    credentials, address = split_credentials(location)
    if credentials is not None:
        name, colon, secret = credentials.partition(":")
        user, password = name or user, secret if colon else password
    host_port, _, dbs = address.partition("/")
    if host_port.startswith("["):
        named_host, bracket, after = host_port[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else None
        if not bracket or (after and port_text is None):
            raise _bad_location(location, "an IPv6 address goes in brackets, then `:port`")
    elif host_port.count(":") > 1:
        raise _bad_location(location, "an IPv6 address goes in brackets")
    else:
        named_host, colon, port_text = host_port.partition(":")
        port_text = port_text if colon else None
    if port_text is not None:
        port = _port(port_text)
        if port is None:
            raise _bad_location(location, f"port `{shown(port_text)}` is not a number from 1 to 65535")
    elif dolt:
        port = dolt.port
    else:
        env = os.environ.get("GT_DOLT_PORT") or str(DEFAULT_PORT)
        port = _port(env)
        if port is None:
            raise InputError(f"`GT_DOLT_PORT` is `{shown(env)}`: not a port number from 1 to 65535",
                             hint=f"set it to the Dolt server's port (e.g. `export GT_DOLT_PORT={DEFAULT_PORT}`), "
                                  "or unset it")
    host = named_host or host
    return {"host": host, "port": port, "user": user, "password": password,
            "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "databases": tuple(d for d in dbs.split(",") if d)}


def split_credentials(location: str) -> tuple[str | None, str]:
    """`user[:password]@rest` -> (`user[:password]`, `rest`), split at the last `@`; no `@`: (None, location).

    The one place that decides where credentials end: the parser and the mask both use it."""
    credentials, at, address = location.rpartition("@")
    return (credentials, address) if at else (None, location)


def public_location(location: str) -> str:
    """The location with any password replaced by `***`: what manifests, state and errors show."""
    credentials, address = split_credentials(location)
    if credentials is None:
        return location
    user, colon, _ = credentials.partition(":")
    return f"{user}{':***' if colon else ''}@{address}"


def quote_identifier(name: str) -> str:
    """A database or table name as one SQL identifier, whatever it holds: backticks doubled inside."""
    return "`" + name.replace("`", "``") + "`"


def _port(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 65536 else None


def _bad_location(location: str, why: str) -> InputError:
    return InputError(f"the Dolt location `{shown(public_location(location))}` does not read as a server "
                      f"address: {why}", hint=LOCATION_FORM)


def databases(conn, named: tuple[str, ...], where: str) -> tuple[list[str], list[Rejected]]:
    """The databases to read (those named, else every one but the system's), and those skipped.

    A name with control or invisible characters cannot be shown to a person or named back, so it
    is skipped with a reason; any other name is read, quoted. A named one the server lacks is
    reported, not silently left out."""
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        available = [next(iter(row.values())) for row in cur.fetchall()]
    wanted = [d for d in named if d in available] if named else [d for d in available if d not in SYSTEM_DATABASES]
    skipped = [Rejected(f"{where}/{shown(ascii(d))}", "database name has control or invisible characters: "
                        "skipped (rename the database to harvest it)") for d in wanted if not d.isprintable()]
    skipped += [Rejected(f"{where}/{shown(d)}", "no such database on the server (or not visible to this user)")
                for d in named if d not in available]
    return [d for d in wanted if d.isprintable()], skipped


def _estimated_rows(conn, names: list[str]) -> int:
    """The server's own row estimate for the tables a harvest reads (0 when it has none)."""
    if not names:
        return 0
    with conn.cursor() as cur:
        cur.execute("SELECT SUM(table_rows) AS n FROM information_schema.tables WHERE table_schema IN "
                    f"({', '.join(['%s'] * len(names))}) AND table_name IN ({', '.join(['%s'] * len(READ))})",
                    (*names, *READ))
        row = cur.fetchone()
    return int((row or {}).get("n") or 0)


def _harvest_database(conn, database: str, where: str, ctx: HarvestContext,
                      read: _Read) -> Iterator[dict | Rejected]:
    columns = _columns(conn, database)
    if "issues" not in columns:
        yield Rejected(where, "no `issues` table: not a beads database")
        return
    ctx.state.setdefault("dolt_history", {})[database] = _has_dolt_history(conn, database)
    rejected: list[Rejected] = []
    used: Counter = Counter()
    for issues, labels_table, comments_table in (("issues", "labels", "comments"),
                                                 ("wisps", "wisp_labels", "wisp_comments")):
        if issues not in columns:
            continue
        rows = _select(conn, database, issues, columns, ctx, read)
        ctx.bead_ids.update(str(row["id"]) for row in rows)
        labels = _group(_select(conn, database, labels_table, columns, ctx, read), "label")
        comments = _group(_select(conn, database, comments_table, columns, ctx, read), None)
        for row in rows:
            bead_id = str(row["id"])
            record = bead_record(row, labels.get(bead_id, set()), comments.get(bead_id, []),
                                 location=f"{where}.{issues}", min_reason_chars=ctx.min_reason_chars)
            if isinstance(record, str):
                rejected.append(Rejected(f"{where}.{issues}#{bead_id}", record))
            else:
                used[f"{where}.{issues}"] += 1
                yield record
        ctx.count(f"{where}.{issues}", used=used[f"{where}.{issues}"],
                  rejected=len(rows) - used[f"{where}.{issues}"])
    if "interactions" in columns:
        for row in _select(conn, database, "interactions", columns, ctx, read):
            item = _interaction(row, f"{where}.interactions")
            (rejected.append(item) if isinstance(item, Rejected) else None)
            if isinstance(item, dict):
                used[f"{where}.interactions"] += 1
                yield item
    missing = [t for t in TABLES if t not in columns]
    if missing:
        rejected.append(Rejected(where, f"tables not present (skipped): {', '.join(missing)}"))
    yield from rejected


def _interaction(row: dict, where: str) -> dict | Rejected:
    """The agent interaction log: a prompt and the model's response are an example as they stand."""
    prompt, response = str(row.get("prompt") or "").strip(), str(row.get("response") or "").strip()
    if not prompt or not response or row.get("error"):
        return Rejected(f"{where}#{row.get('id')}", "interaction without prompt and response (or with an error)")
    actor = str(row.get("actor") or "")
    return make_record([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], {
        "source": "interactions", "location": where, "bead_id": str(row.get("issue_id") or ""), "rig": "",
        "role": role_of(actor), "actor": actor, "session": "", "created_at": _norm(row.get("created_at")),
        "generated_by": f"model:{row['model']}" if row.get("model") else generated_by(actor)})


def _columns(conn, database: str) -> dict[str, set[str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT table_name AS t, column_name AS c FROM information_schema.columns"
                    " WHERE table_schema = %s", (database,))
        out: dict[str, set[str]] = {}
        for row in cur.fetchall():
            out.setdefault(row["t"], set()).add(row["c"])
    return out


def _select(conn, database: str, table: str, columns: dict[str, set[str]], ctx: HarvestContext,
            read: _Read) -> list[dict]:
    """Every row of one table, normalised to the JSONL backup's value forms. The table name is one
    information_schema listed; both names are quoted, backticks doubled."""
    if table not in columns:
        return []
    read.current = f"{database}.{table}"
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {quote_identifier(database)}.{quote_identifier(table)}")
        rows = [{k: _norm(v) for k, v in row.items()} for row in cur.fetchall()]
    read.rows += len(rows)
    read.tables[read.current] = len(rows)
    if ctx.progress:
        ctx.progress(len(rows))
    return rows


def _has_dolt_history(conn, database: str) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT commit_hash FROM {quote_identifier(database)}.`dolt_log` LIMIT 1")
            cur.fetchall()
        return True
    except Exception:  # noqa: BLE001 - any refusal means this server has no Dolt history
        return False


def _group(rows: list[dict], field: str | None) -> dict:
    out: dict = {}
    for row in rows:
        key = str(row.get("issue_id"))
        if field:
            out.setdefault(key, set()).add(str(row[field]))
        else:
            out.setdefault(key, []).append(row)
    return out


def _norm(value):
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return value
