"""The Dolt server going away under a corpus harvest: which source failed, what was read, nothing
half-published, and a clean rerun once it is back.

A thread proxy stands between the harvest and the SQL server (MariaDB in CI, as in tests/sql) and
cuts each connection after a set number of bytes from the server, so no real server is stopped.
"""
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from gt_finetune.beads import EmbeddedStore, lifecycle
from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus
from gt_finetune.corpus.sources import beads_sql
from gt_finetune.corpus.sources.context import HarvestContext
from gt_finetune.errors import ExternalError
from gt_finetune.jobs import DONE, FAILED, JobRecord
from gt_finetune.workspace import read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sql import conftest as sql_fixtures  # noqa: E402  (the `mysql` fixture and its skip when no server)
from sql.load import load_backup  # noqa: E402

from kit import CORPUS_JOB  # noqa: E402

mysql = sql_fixtures.mysql


class Proxy:
    """Forwards 127.0.0.1:<port> to the server. With `limit` set, each connection is cut once that
    many bytes came back from the server, mid-packet, as when the server dies mid-read."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.limit: int | None = None
        self.last_total = 0  # bytes the server sent on the last connection that ended
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.limit, True), daemon=True).start()

    def _pump(self, src, dst, limit=None, from_server=False):
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[:limit - sent])
                    sent = limit
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            if from_server:
                self.last_total = sent
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self):
        self.listener.close()


@pytest.fixture(scope="module")
def sample_db(mysql):
    """The sample town's beads backup in `ft_hardening` (320 issues, 214 labels, 40 comments)."""
    conn = mysql.connect()
    try:
        load_backup(conn, SAMPLE_TOWN / ".beads" / "backup", database="ft_hardening")
    finally:
        conn.close()
    yield "ft_hardening"
    conn = mysql.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS `ft_hardening`")
    finally:
        conn.close()


@pytest.fixture
def proxy(mysql, sample_db):
    """A proxy that cuts each connection near the end of a full harvest of `sample_db` (after `issues`)."""
    p = Proxy(mysql.host, mysql.port)
    list(beads_sql.harvest(through(p, mysql, sample_db), HarvestContext()))
    deadline = time.monotonic() + 30
    while p.last_total == 0:  # the proxy's thread counts the bytes once it sees the connection close
        assert time.monotonic() < deadline, "the calibrating harvest's connection never closed"
        time.sleep(0.01)
    p.limit = p.last_total * 95 // 100
    yield p
    p.close()


def through(proxy: Proxy, mysql, database: str) -> str:
    return f"{mysql.user}:{mysql.password}@127.0.0.1:{proxy.port}/{database}"


@pytest.mark.town
def test_dolt_stopping_mid_harvest_says_what_was_read_and_publishes_nothing_until_it_is_back(
        proxy, mysql, sample_db, isolated):
    spec = CorpusSpec(inputs=(("events", str(SAMPLE_TOWN)), ("beads_sql", through(proxy, mysql, sample_db)),
                              ("formulas", str(SAMPLE_TOWN / ".beads" / "formulas"))))
    with pytest.raises(ExternalError) as err:
        build_corpus(spec, home=isolated, quiet=True)
    where = f"127.0.0.1:{proxy.port}"
    assert re.fullmatch(
        rf"corpus input `beads_sql:{mysql.user}:\*\*\*@{where}/{sample_db}` failed: the connection to the Dolt "
        rf"server at {where} was lost after \d+ of ~\d+ rows \({sample_db}\.issues 320[^)]*\), while reading "
        rf"`{sample_db}\.\w+`: \(2013, 'Lost connection to MySQL server during query.*\); read before it: "
        rf"events \d+ records from 1 file; not read: formulas:.*", err.value.message), err.value.message
    assert err.value.exit_code == 3 and "`gt dolt status`" in err.value.hint
    assert not list((isolated / "corpus").glob("*corpus-*"))  # neither a corpus nor a partial one

    proxy.limit = None
    corpus = build_corpus(spec, home=isolated, quiet=True)
    by_source = read_manifest(corpus.path)["counts"]["by_source"]
    direct = CorpusSpec(inputs=(("beads_sql", f"{mysql.user}:{mysql.password}@{mysql.host}:{mysql.port}/{sample_db}"),))
    full = build_corpus(direct, home=isolated / "direct", quiet=True)
    assert by_source["beads"] == read_manifest(full.path)["counts"]["by_source"]["beads"] > 100


@pytest.mark.town
def test_a_job_whose_harvest_loses_dolt_fails_with_that_message_and_resumes_once_it_is_back(
        capsys, proxy, mysql, sample_db, isolated, tmp_path, monkeypatch):
    formula = tmp_path / "corpus-job.formula.toml"
    formula.write_text(CORPUS_JOB)
    monkeypatch.setenv("GT_DOLT_PASSWORD", mysql.password)  # a job's vars are stored: no password in them
    source = f"events:{SAMPLE_TOWN},beads_sql:{mysql.user}@127.0.0.1:{proxy.port}/{sample_db}"
    code = main(["run", str(formula), "--var", f"source={source}"])
    err = capsys.readouterr().err
    assert code == 3, err
    job_id = next((isolated / "jobs").glob("*.json")).stem
    job = JobRecord.load(isolated, job_id)
    assert job.steps["corpus"].state == FAILED
    assert "the connection to the Dolt server at" in job.steps["corpus"].error
    assert "read before it: events" in job.steps["corpus"].error
    bead = EmbeddedStore(isolated / "beads.db").show(job_id)
    assert lifecycle.state_of(bead) == lifecycle.FAILED
    assert f"step `corpus` failed: {job.steps['corpus'].error}" in bead.notes
    assert not list((isolated / "corpus").glob("*corpus-*"))

    proxy.limit = None
    code = main(["resume", job_id])
    err = capsys.readouterr().err
    assert code == 0, err
    done = JobRecord.load(isolated, job_id).steps["corpus"]
    assert done.state == DONE
    counts = read_manifest(Path(done.output))["counts"]["by_source"]
    assert counts["beads"] > 100 and counts["events"] > 0


def test_dolt_down_from_the_start_names_host_and_port_and_how_to_check():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed on leaving: nothing listens there
    with pytest.raises(ExternalError) as err:
        list(beads_sql.harvest(f"root@127.0.0.1:{port}", HarvestContext()))
    assert err.value.message.startswith(f"cannot connect to the Dolt server at 127.0.0.1:{port} as `root`: "
                                        "(2003, \"Can't connect to MySQL server on '127.0.0.1'")
    assert err.value.hint.startswith("check the server with `gt dolt status` (start it with `gt dolt start`)")
    assert err.value.exit_code == 3
