"""Fixtures for the SQL tests: a MySQL-protocol server (MariaDB in CI) and beads backups loaded into it.

Connection facts come from GT_FINETUNE_TEST_MYSQL_HOST/PORT/USER/PASSWORD, or else from the state
file that ``bash .ci/mysql.sh start`` writes (GT_FINETUNE_TEST_MYSQL_STATE, default
/tmp/gt-finetune-test-mysql.env).  With no server answering, every test here is skipped.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from .load import load_backup

HERE = Path(__file__).resolve().parent
DEFAULT_STATE = "/tmp/gt-finetune-test-mysql.env"
PREFIX = "GT_FINETUNE_TEST_MYSQL_"
START_HINT = ("no MySQL-protocol server: run `bash .ci/mysql.sh start && source /tmp/gt-finetune-test-mysql.env` "
              "(installs mariadb-server via apt when root; `bash .ci/mysql.sh stop` afterwards), "
              "or set GT_FINETUNE_TEST_MYSQL_HOST/PORT/USER/PASSWORD")


def shared_dir() -> Path:
    env = os.environ.get("GT_FINETUNE_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared"


CAROLINA_BACKUP = shared_dir() / "fixtures" / "real" / "carolina-futons" / "backup"
SAMPLE_TOWN_BACKUP = HERE.parents[1] / "gt_finetune" / "data" / "sample_town" / ".beads" / "backup"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test under tests/sql needs a server: mark it `town` (before -m deselection runs)."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.town)


def _read_state(path: Path) -> dict[str, str]:
    facts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if not line.startswith(PREFIX) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        parts = shlex.split(value) if value else [""]
        facts[key[len(PREFIX):]] = parts[0] if parts else ""
    return facts


def connection_facts() -> dict[str, str] | None:
    """HOST/PORT/USER/PASSWORD from the environment, else from the state file; None when neither."""
    env = {key: os.environ[PREFIX + key] for key in ("HOST", "PORT", "USER", "PASSWORD")
           if os.environ.get(PREFIX + key)}
    if "PORT" not in env:
        state = Path(os.environ.get(PREFIX + "STATE") or DEFAULT_STATE)
        if not state.is_file():
            return None
        env = {**_read_state(state), **env}
        if "PORT" not in env:
            return None
    return {"HOST": env.get("HOST", "127.0.0.1"), "PORT": env["PORT"],
            "USER": env.get("USER", "ci"), "PASSWORD": env.get("PASSWORD", "ci")}


@dataclass(frozen=True)
class MySQLServer:
    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None, **kwargs):
        import pymysql

        options = dict(host=self.host, port=self.port, user=self.user, password=self.password,
                       database=database, connect_timeout=3, charset="utf8mb4", autocommit=False)
        options.update(kwargs)
        return pymysql.connect(**options)


@pytest.fixture(scope="session")
def mysql() -> MySQLServer:
    pymysql = pytest.importorskip("pymysql")
    facts = connection_facts()
    if facts is None:
        pytest.skip(START_HINT)
    try:
        server = MySQLServer(facts["HOST"], int(facts["PORT"]), facts["USER"], facts["PASSWORD"])
    except ValueError:
        pytest.skip(f"{START_HINT} (bad port {facts['PORT']!r})")
    try:
        server.connect().close()
    except pymysql.err.MySQLError as exc:
        pytest.skip(f"{START_HINT} (nothing usable at {server.host}:{server.port}: {exc})")
    return server


@pytest.fixture(scope="session")
def carolina_backup(shared) -> Path:
    assert (CAROLINA_BACKUP / "issues.jsonl").is_file(), f"the carolina-futons backup is missing from {shared}"
    return CAROLINA_BACKUP


@pytest.fixture(scope="session")
def carolina_db(mysql, carolina_backup) -> dict[str, int]:
    """The real carolina-futons backup loaded (new dependencies shape) into `carolina_test`."""
    conn = mysql.connect()
    try:
        counts = load_backup(conn, carolina_backup, database="carolina_test")
    finally:
        conn.close()
    yield counts
    conn = mysql.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS `carolina_test`")
    finally:
        conn.close()
