"""Load a beads JSONL backup (``.beads/backup/*.jsonl``) into a MySQL-protocol server for tests.

``load_backup`` drops and re-creates one database, runs ``beads_schema.sql`` (plus
``beads_schema_old_deps.sql`` for the old dependencies shape) and inserts every JSONL file with
parameterised ``executemany`` INSERTs.  Values are never formatted into SQL; only identifiers
(database, table and column names, all checked against a whitelist or the live schema) are.

Mapping rules:

* ``issues.jsonl``: rows with ``ephemeral`` = 1 go to ``wisps`` when ``wisps_from_ephemeral``
  (as bd's migration 0035 and ``--ephemeral`` do), else to ``issues``.
* ``labels``/``events``/``comments``/``dependencies`` rows whose ``issue_id`` is a wisp go to the
  matching ``wisp_*`` table, the way bd stores a wisp's children.
* Dependencies: the backup's ``depends_on_id`` becomes ``depends_on_external`` when it starts with
  ``external:``, ``depends_on_wisp_id`` when it names a wisp loaded here, else
  ``depends_on_issue_id`` (the same order as bd migration 0041).  With ``deps_shape="old"`` it stays
  ``depends_on_id`` and the new-shape-only keys (``id``, ``metadata``, ``thread_id``) are dropped.
* Timestamps: RFC 3339 strings (``2026-02-23T19:35:47Z``, offsets, fractions) become naive UTC
  ``datetime`` values; ``None``/``""``/``"None"`` become NULL.
* ``"None"`` becomes NULL in every nullable column; JSON strings are validated and stored as they
  are; dicts/lists are serialised; integers bound for text columns (pre-0037 event ids) become text.
* A JSONL key with no column, or a JSONL file with no table, raises ``ValueError``: the schema file
  must keep up with the backups rather than lose data silently.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_SQL = HERE / "beads_schema.sql"
OLD_DEPS_SQL = HERE / "beads_schema_old_deps.sql"

# Dolt's default collation is utf8mb4_0900_bin: binary, case-sensitive, NO PAD.  Take the closest the
# server has (MariaDB 10.11 lacks the 0900 collations; utf8mb4_bin there is PAD SPACE).
COLLATION_PREFERENCE = ("utf8mb4_0900_bin", "utf8mb4_nopad_bin", "utf8mb4_bin")

CHILD_TABLES = ("labels", "events", "comments", "dependencies")
NEW_DEP_ONLY_KEYS = ("id", "metadata", "thread_id")
NEW_DEP_TARGETS = ("depends_on_issue_id", "depends_on_wisp_id", "depends_on_external")

_DB_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_TIME_TYPES = {"datetime", "timestamp", "date"}
_NUMBER_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "float",
                 "double", "bit", "year"}
_NULLISH = (None, "", "None", "null")
_BATCH = 500


def split_sql(text: str) -> list[str]:
    """Statements of a schema file: whole-line ``--`` comments dropped, split on ``;``."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 / ISO 8601 text to a naive UTC datetime (DATETIME has no zone)."""
    if value in _NULLISH:
        return None
    if isinstance(value, datetime):
        stamp = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(timezone.utc).replace(tzinfo=None)
    return stamp


class _Column:
    __slots__ = ("name", "data_type", "nullable", "is_json")

    def __init__(self, name: str, data_type: str, nullable: bool, is_json: bool):
        self.name, self.data_type, self.nullable, self.is_json = name, data_type, nullable, is_json

    def convert(self, value: Any, where: str) -> Any:
        if isinstance(value, str) and value == "None" and self.nullable:
            return None
        if self.data_type in _TIME_TYPES:
            try:
                return parse_timestamp(value)
            except ValueError as exc:
                raise ValueError(f"{where}: bad timestamp {value!r} for {self.name}") from exc
        if self.data_type in _NUMBER_TYPES:
            if value in _NULLISH:
                return None
            return int(value) if isinstance(value, bool) else value
        if self.is_json:
            if value in _NULLISH:
                return None
            if isinstance(value, (dict, list, int, float, bool)):
                return json.dumps(value, ensure_ascii=False)
            try:
                json.loads(value)
            except ValueError as exc:
                raise ValueError(f"{where}: {self.name} is not JSON: {value!r:.80}") from exc
            return value
        # Text columns.
        if value is None:
            return None if self.nullable else ""
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, (dict, list)):
            return json.dumps(value, ensure_ascii=False)
        return value


def _columns(cur, database: str) -> dict[str, dict[str, _Column]]:
    cur.execute(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, IS_NULLABLE FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION", (database,))
    rows = cur.fetchall()
    json_cols: set[tuple[str, str]] = set()
    try:  # MariaDB: JSON is LONGTEXT + CHECK (json_valid(`col`)), visible only here.
        cur.execute("SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
                    " WHERE CONSTRAINT_SCHEMA = %s", (database,))
        for table, clause in cur.fetchall():
            match = re.fullmatch(r"\s*json_valid\(`([^`]+)`\)\s*", clause or "", re.IGNORECASE)
            if match:
                json_cols.add((table, match.group(1)))
    except Exception:  # MySQL 8 has no TABLE_NAME there, and reports DATA_TYPE 'json' instead.
        pass
    tables: dict[str, dict[str, _Column]] = defaultdict(dict)
    for table, column, data_type, nullable in rows:
        data_type = data_type.lower()
        tables[table][column] = _Column(column, data_type, nullable == "YES",
                                        data_type == "json" or (table, column) in json_cols)
    return dict(tables)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path.name}:{number}: not a JSON object")
            rows.append(row)
    return rows


def _pick_collation(cur) -> str:
    cur.execute("SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (%s, %s, %s)",
                COLLATION_PREFERENCE)
    have = {name for (name,) in cur.fetchall()}
    for name in COLLATION_PREFERENCE:
        if name in have:
            return name
    raise RuntimeError(f"server has none of the collations {COLLATION_PREFERENCE}")


def _dependency_row(row: dict[str, Any], deps_shape: str, wisp_ids: set[str], where: str) -> dict[str, Any]:
    row = dict(row)
    target = row.pop("depends_on_id", None)
    new_targets = {key: row.pop(key, None) for key in NEW_DEP_TARGETS}
    if target in _NULLISH:  # a backup written in the new shape
        present = [value for value in new_targets.values() if value not in _NULLISH]
        if len(present) != 1:
            raise ValueError(f"{where}: expected exactly one dependency target, got {new_targets}")
        target = present[0]
    if deps_shape == "old":
        for key in NEW_DEP_ONLY_KEYS:
            row.pop(key, None)
        row["depends_on_id"] = target
    elif str(target).startswith("external:"):
        row["depends_on_external"] = target
    elif target in wisp_ids:
        row["depends_on_wisp_id"] = target
    else:
        row["depends_on_issue_id"] = target
    return row


def _insert(cur, table: str, columns: dict[str, _Column], rows: list[dict[str, Any]], source: str) -> None:
    """executemany, one statement per distinct key set so a missing key takes the column default."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        unknown = sorted(set(row) - set(columns))
        if unknown:
            raise ValueError(f"{source}: keys with no column in {table}: {unknown}")
        groups[tuple(sorted(row))].append(row)
    for keys, group in groups.items():
        names = ", ".join(f"`{key}`" for key in keys)
        marks = ", ".join(["%s"] * len(keys))
        sql = f"INSERT INTO `{table}` ({names}) VALUES ({marks})"
        params = [tuple(columns[key].convert(row[key], f"{source} -> {table}") for key in keys) for row in group]
        for start in range(0, len(params), _BATCH):
            cur.executemany(sql, params[start:start + _BATCH])


def load_backup(conn, backup_dir: Path, *, database: str, deps_shape: str = "new",
                wisps_from_ephemeral: bool = True) -> dict[str, int]:
    """(Re)create ``database`` from a beads JSONL backup; return ``{table: row count}`` for every table.

    ``conn`` is an open pymysql connection with rights to create and drop the database; it is left
    using ``database``.  Loading the same backup twice gives the same counts (the database is
    dropped first).
    """
    backup_dir = Path(backup_dir)
    if not _DB_NAME.match(database):
        raise ValueError(f"database name must match {_DB_NAME.pattern}: {database!r}")
    if deps_shape not in ("new", "old"):
        raise ValueError(f"deps_shape must be 'new' or 'old', not {deps_shape!r}")
    files = sorted(backup_dir.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no *.jsonl files in {backup_dir}")

    with conn.cursor() as cur:
        collation = _pick_collation(cur)
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE {collation}")
        conn.select_db(database)
        # Strict: a value that does not fit is an error, never a silent truncation.
        cur.execute("SET SESSION sql_mode = 'STRICT_TRANS_TABLES,STRICT_ALL_TABLES,NO_ZERO_IN_DATE,"
                    "NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'")
        schema = split_sql(SCHEMA_SQL.read_text(encoding="utf-8"))
        if deps_shape == "old":
            schema += split_sql(OLD_DEPS_SQL.read_text(encoding="utf-8"))
        for statement in schema:
            cur.execute(statement)
        tables = _columns(cur, database)

        data = {path.stem: _read_jsonl(path) for path in files}
        unknown_files = sorted(stem for stem in data if stem not in tables)
        if unknown_files:
            raise ValueError(f"{backup_dir}: no table for {', '.join(s + '.jsonl' for s in unknown_files)}")

        try:
            # Issues first: which ids are wisps decides where the child rows go.
            wisp_ids = {row["id"] for row in data.get("wisps", [])}
            issue_rows, wisp_rows = [], []
            for row in data.get("issues", []):
                ephemeral = row.get("ephemeral")
                if wisps_from_ephemeral and ephemeral not in _NULLISH and int(ephemeral) == 1:
                    wisp_rows.append(row)
                    wisp_ids.add(row["id"])
                else:
                    issue_rows.append(row)
            _insert(cur, "issues", tables["issues"], issue_rows, "issues.jsonl")
            _insert(cur, "wisps", tables["wisps"], wisp_rows, "issues.jsonl")
            if "wisps" in data:
                _insert(cur, "wisps", tables["wisps"], data["wisps"], "wisps.jsonl")

            for stem, rows in data.items():
                if stem in ("issues", "wisps"):
                    continue
                source = f"{stem}.jsonl"
                base = stem[len("wisp_"):] if stem.startswith("wisp_") else stem
                if base == "dependencies":
                    rows = [_dependency_row(row, deps_shape, wisp_ids, f"{source}:{n}")
                            for n, row in enumerate(rows, 1)]
                if stem in CHILD_TABLES:
                    own = [row for row in rows if row.get("issue_id") not in wisp_ids]
                    wisp = [row for row in rows if row.get("issue_id") in wisp_ids]
                    _insert(cur, stem, tables[stem], own, source)
                    _insert(cur, f"wisp_{stem}", tables[f"wisp_{stem}"], wisp, source)
                else:
                    _insert(cur, stem, tables[stem], rows, source)
            conn.commit()
        except Exception:
            conn.rollback()
            raise

        counts = {}
        for table in sorted(tables):
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            counts[table] = int(cur.fetchone()[0])
    return counts
