"""Cost of Dolt-style history in the embedded bead store: doltlite vs plain sqlite3, side by side.

    .venv/bin/python benchmarks/bead_store.py [--beads 50]

Each engine runs in its own process (doltlite must load before sqlite3), alternating, three
rounds; the ratio of medians is printed. A job makes ~20 bead writes, so this is per-job overhead.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

WORKLOAD = """
import json, sys, tempfile, time
from pathlib import Path
from gt_finetune.beads import EmbeddedStore
n = int(sys.argv[1])
store = EmbeddedStore(Path(tempfile.mkdtemp()) / "beads.db")
start = time.perf_counter()
for i in range(n):
    bead = store.create(f"job {i}", labels=["ft:job"])
    store.update(bead.id, status="in_progress", add_labels=["ft:stage:train"])
    store.comment(bead.id, "step done")
    store.close(bead.id, "approved: fine")
print(json.dumps({"engine": store.engine, "writes_per_s": 4 * n / (time.perf_counter() - start)}))
"""


def measure(engine: str, beads: int) -> dict:
    env = {**os.environ, **({"GT_FINETUNE_SQLITE": "plain"} if engine == "sqlite3" else {})}
    out = subprocess.run([sys.executable, "-c", WORKLOAD, str(beads)], env=env, capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beads", type=int, default=50)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"sqlite3": [], "doltlite": []}
    for _ in range(3):
        for engine in rates:
            result = measure(engine, args.beads)
            rates[result["engine"]].append(result["writes_per_s"])
    if not rates["doltlite"]:
        sys.exit("doltlite is not installed here; `pip install doltlite` to compare")
    plain, dolt = statistics.median(rates["sqlite3"]), statistics.median(rates["doltlite"])
    print(f"sqlite3:  {plain:8.1f} bead writes/s (median of 3)")
    print(f"doltlite: {dolt:8.1f} bead writes/s (median of 3, one Dolt commit per write)")
    print(f"ratio sqlite3/doltlite: {plain / dolt:.2f}x")


if __name__ == "__main__":
    main()
