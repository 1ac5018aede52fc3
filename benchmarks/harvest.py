"""Harvest throughput on the carolina-futons backup: JSONL and SQL paths, side by side.

    .venv/bin/python benchmarks/harvest.py [--shared ../shared] [--rounds 3]

The SQL path needs a MySQL-protocol server (`bash .ci/mysql.sh start`); the backup is loaded into
it first (not timed). Prints records/s and MB/s for each path (median of the rounds) and the
ratio JSONL/SQL. MB are the bytes of the backup's JSONL files, for both paths.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_finetune.corpus.records import Rejected  # noqa: E402
from gt_finetune.corpus.sources import beads_jsonl, beads_sql  # noqa: E402
from gt_finetune.corpus.sources.context import HarvestContext  # noqa: E402


def timed(fn, location: str) -> tuple[float, int]:
    start = time.perf_counter()
    records = sum(1 for item in fn(location, HarvestContext()) if not isinstance(item, Rejected))
    return time.perf_counter() - start, records


def sql_location() -> str | None:
    sys.path.insert(0, str(ROOT / "tests"))
    from sql.conftest import connection_facts  # noqa: PLC0415
    from sql.load import load_backup  # noqa: PLC0415

    facts = connection_facts()
    if facts is None:
        return None
    import pymysql

    conn = pymysql.connect(host=facts["HOST"], port=int(facts["PORT"]), user=facts["USER"],
                           password=facts["PASSWORD"])
    load_backup(conn, BACKUP, database="bench_carolina")
    conn.commit()
    conn.close()
    return f"{facts['USER']}:{facts['PASSWORD']}@{facts['HOST']}:{facts['PORT']}/bench_carolina"


def main() -> None:
    global BACKUP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("GT_FINETUNE_SHARED") or str(ROOT.parent / "shared"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    BACKUP = Path(args.shared) / "fixtures" / "real" / "carolina-futons" / "backup"
    megabytes = sum(p.stat().st_size for p in BACKUP.glob("*.jsonl")) / 1e6
    os.chdir(tempfile.mkdtemp())
    paths = {"jsonl": (beads_jsonl.harvest, str(BACKUP))}
    location = sql_location()
    if location:
        paths["sql"] = (beads_sql.harvest, location)
    else:
        print("sql: skipped (no MySQL-protocol server; start one with `bash .ci/mysql.sh start`)")
    rates = {}
    for name, (fn, where) in paths.items():
        runs = [timed(fn, where) for _ in range(args.rounds)]
        seconds = statistics.median(r[0] for r in runs)
        rates[name] = runs[0][1] / seconds
        print(f"{name:5} {runs[0][1]:5d} records in {seconds:.3f}s: {rates[name]:9.0f} records/s, "
              f"{megabytes / seconds:7.1f} MB/s (backup {megabytes:.1f} MB)")
    if len(rates) == 2:
        print(f"ratio jsonl/sql: {rates['jsonl'] / rates['sql']:.2f}x")


if __name__ == "__main__":
    main()
