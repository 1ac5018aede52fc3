"""Beads over SQL: read a town's Dolt server (or any MySQL-protocol copy) read-only, parameterised.

Databases are `hq` plus one per rig (gastown.md §3). Rows are normalised to the JSONL backup's
forms (RFC3339 timestamps, plain strings) and converted by the same code as the JSONL reader,
so a bead gives the same record either way. A missing table or an unexpected column skips that
part with a clear rejection; a server that does not answer, or stops mid-read, fails the harvest
with how far it got, so no corpus silently lacks the town's beads. Dolt history
(`dolt_log`) is detected at run time; MariaDB and other servers simply lack it.
"""
from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from ...errors import ExternalError
from ..records import Rejected, generated_by, make_record
from .beads_rows import bead_record, role_of
from .context import HarvestContext

SYSTEM_DATABASES = {"information_schema", "mysql", "performance_schema", "sys"}
TABLES = ("issues", "labels", "comments", "events", "dependencies", "interactions",
          "wisps", "wisp_labels", "wisp_comments", "wisp_events", "wisp_dependencies")
READ = ("issues", "labels", "comments", "wisps", "wisp_labels", "wisp_comments", "interactions")  # the ones selected


def harvest(location: str, ctx: HarvestContext) -> Iterator[dict | Rejected]:
    """Every beads database on the server (or those named in `location`).

    Raises:
        ExternalError: the server cannot be reached, or it went away mid-read (the error says how
            far the read got; the harvest publishes nothing).
    """
    import pymysql
    import pymysql.cursors

    settings = connection_settings(location, ctx)
    where = f"{settings['host']}:{settings['port']}"
    try:
        conn = pymysql.connect(host=settings["host"], port=settings["port"], user=settings["user"],
                               password=settings["password"], connect_timeout=5, read_timeout=300,
                               cursorclass=pymysql.cursors.DictCursor, charset="utf8mb4")
    except Exception as exc:  # noqa: BLE001 - pymysql raises several types for one problem: not reachable
        denied = isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] == (1045,)
        raise ExternalError(
            f"cannot connect to the Dolt server at {where} as `{settings['user']}`: {exc}",
            hint=("check the user and password (`GT_DOLT_USER`, `GT_DOLT_PASSWORD`, or `user:password@host:port` "
                  "in the input)" if denied else
                  "check the server with `gt dolt status` (start it with `gt dolt start`), or leave `beads_sql` "
                  "out of the inputs to harvest the JSONL backups instead"), code="dolt_unreachable") from exc
    read = _Read()
    try:
        names = databases(conn, settings["databases"], ctx)
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
    """`[user[:password]@]host:port[/db,db]`; blanks come from the town, then GT_DOLT_*, then defaults."""
    dolt = ctx.town.dolt if ctx.town else None
    user = (dolt.user if dolt else None) or os.environ.get("GT_DOLT_USER") or "root"
    password = (dolt.password if dolt else None) or os.environ.get("GT_DOLT_PASSWORD") or ""
    host = (dolt.host if dolt else None) or os.environ.get("GT_DOLT_HOST") or "127.0.0.1"
    port = dolt.port if dolt else int(os.environ.get("GT_DOLT_PORT") or 3307)
    rest, _, dbs = location.partition("/")
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, _, password = credentials.partition(":")
    if rest:
        host, _, port_text = rest.partition(":")
        port = int(port_text) if port_text else port
    return {"host": host or "127.0.0.1", "port": int(port), "user": user, "password": password,
            "databases": tuple(d for d in dbs.split(",") if d)}


def databases(conn, named: tuple[str, ...], ctx: HarvestContext) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        available = [next(iter(row.values())) for row in cur.fetchall()]
    if named:
        return [d for d in named if d in available]
    return [d for d in available if d not in SYSTEM_DATABASES]


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
    """Every row of one table, normalised to the JSONL backup's value forms. Names are checked
    against information_schema before they are quoted into the statement; values never are."""
    if table not in columns:
        return []
    read.current = f"{database}.{table}"
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{database}`.`{table}`")
        rows = [{k: _norm(v) for k, v in row.items()} for row in cur.fetchall()]
    read.rows += len(rows)
    read.tables[read.current] = len(rows)
    if ctx.progress:
        ctx.progress(len(rows))
    return rows


def _has_dolt_history(conn, database: str) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT commit_hash FROM `{database}`.dolt_log LIMIT 1")
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
