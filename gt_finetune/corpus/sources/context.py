"""What every source gets from the harvest: options, the town, its incremental state, accounting."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...town import Town


@dataclass
class HarvestContext:
    town: Town | None = None
    min_reason_chars: int = 20
    state: dict = field(default_factory=dict)  # this source's incremental state, saved after the harvest
    accounting: dict = field(default_factory=dict)  # file or table -> {"lines", "used", "rejected"}
    progress: Callable[[int], None] | None = None  # bytes or rows read, for the progress line
    store: object = None  # the job's BeadStore, for the `store` source
    bead_ids: set = field(default_factory=set)  # every bead id a beads source saw, open ones too (staleness)

    def unchanged(self, path: Path) -> bool:
        """A file whose size and mtime match the last harvest holds nothing new: skip reading it."""
        stat = path.stat()
        key, now = str(path), [stat.st_size, stat.st_mtime_ns]
        seen = self.state.setdefault("files", {})
        if seen.get(key) == now:
            return True
        seen[key] = now
        return False

    def one_record_per_file(self, location: str, wanted: Callable[[Path], bool],
                            convert: Callable[[Path], "dict | object"]) -> Iterator:
        """For sources where each file is one example (formulas, role context): convert the files
        under `location` that `wanted` picks and changed since the last harvest, counting each."""
        root = expand(location)
        if not root.exists():
            raise FileNotFoundError(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and wanted(p))
        for path in files:
            if self.unchanged(path):
                continue
            item = convert(path)
            used = isinstance(item, dict)
            self.count(str(path), used=int(used), rejected=int(not used))
            yield item

    def count(self, where: str, *, used: int = 0, rejected: int = 0) -> None:
        entry = self.accounting.setdefault(where, {"lines": 0, "used": 0, "rejected": 0})
        entry["lines"] += used + rejected
        entry["used"] += used
        entry["rejected"] += rejected


def expand(location: str) -> Path:
    return Path(os.path.expandvars(location)).expanduser()
