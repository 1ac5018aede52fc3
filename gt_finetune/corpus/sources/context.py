"""What every source gets from the harvest: options, the town, its incremental state, accounting,
and the one way a source opens a file (`open_inside`).

A town is written by its agents, so a file in an input may be a symlink to a file only the operator
can read, or a FIFO whose first `open()` waits for ever. A source opens a file only through
`open_inside`: a regular file whose real path is inside the input's own folder, opened without
following a last-moment link and without blocking, and read with bounds.
"""
from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ...town import Town
from ...workspace import NotRegularFile, open_regular
from ..records import Rejected

MAX_FILE_BYTES = 1 << 30  # a source file held in memory (a transcript's tree, a backup's rows): 1 GiB at most
MAX_LINE_CHARS = 32 << 20  # no JSONL record is longer; a longer line is rejected without being held


class Refused(Exception):
    """A file (or a whole input) the harvest does not read; the message says why, for the rejection."""


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
        """A file whose size and mtime match the last harvest holds nothing new: skip reading it.
        A file that cannot be stat'ed is read (and refused there, with why)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        key, now = file_key(path), [st.st_size, st.st_mtime_ns]
        seen = self.state.setdefault("files", {})
        if seen.get(key) == now:
            return True
        seen[key] = now
        return False

    def one_record_per_file(self, location: str, wanted: Callable[[Path], bool],
                            convert: Callable[[Path, bytes], "dict | object"], *, max_bytes: int) -> Iterator:
        """For sources where each file is one example (formulas, role context): convert the files
        under `location` that `wanted` picks and changed since the last harvest, counting each.
        `convert` gets the file's bytes (at most `max_bytes`); a file refused is rejected with why."""
        given = expand(location)
        root = root_of(given, self.town)
        files = [given] if not given.is_dir() else sorted(p for p in given.rglob("*") if wanted(p) and not p.is_dir())
        for path in files:
            if self.unchanged(path):
                continue
            try:
                item = convert(path, read_inside(path, root, max_bytes=max_bytes))
            except Refused as exc:
                item = Rejected(str(path), str(exc))
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


def file_key(path: Path) -> str:
    """How `.state` names a file: a hash of its path, never the path (its name may hold a secret)."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:32]


def root_of(location: Path, town: Town | None) -> Path:
    """The folder every file of the input at `location` must resolve inside: the location itself
    (a file's folder for a file). An input under the town's root (what `town_inputs` offers, a
    `<rig>/directives`) must also resolve inside the town: a linked folder cannot reach out.

    Raises:
        FileNotFoundError: nothing is at `location`. Refused: it leads out of the town.
    """
    real = Path(os.path.realpath(location))
    if not real.exists():
        raise FileNotFoundError(location)
    if town is not None and Path(os.path.abspath(location)).is_relative_to(os.path.abspath(town.root)) \
            and not real.is_relative_to(os.path.realpath(town.root)):
        raise Refused(f"a link to a folder outside the town {town.root}: not read")
    return real if real.is_dir() else real.parent


def open_inside(path: Path, root: Path, *, max_bytes: int | None = MAX_FILE_BYTES) -> TextIO:
    """`path` as UTF-8 text (a BOM skipped, bad bytes replaced), when `_checked_fd` accepts it.
    `max_bytes` None: a file read line by line, never held whole (each line is bounded instead).

    Raises:
        Refused: outside `root`, not a regular file, too big, or it cannot be opened (the reason says which).
    """
    return open(_checked_fd(path, root, max_bytes), encoding="utf-8-sig", errors="replace")


def read_inside(path: Path, root: Path | None, *, max_bytes: int) -> bytes:
    """The bytes of a file `_checked_fd` accepts, at most `max_bytes` (a file that grew past them is
    refused). `root` None: a file the workspace itself names (a fingerprint's), read wherever it is."""
    with open(_checked_fd(path, root, max_bytes), "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Refused(f"over the {max_bytes:,} bytes a file of this source may have: not read")
    return data


def _checked_fd(path: Path, root: Path | None, max_bytes: int | None) -> int:
    """A blocking read-only descriptor of `path`, when it is a regular file of at most `max_bytes` whose
    real path is inside `root` (a resolved folder, from `root_of`). The real path is opened with
    O_NOFOLLOW: a link swapped in after the check is not followed."""
    real = os.path.realpath(path)
    if root is not None and not Path(real).is_relative_to(root):
        raise Refused(f"a link to a file outside the input folder {root}: not read")
    try:
        fd = open_regular(real, os.O_RDONLY | os.O_NOFOLLOW)
    except NotRegularFile as exc:
        raise Refused(f"{exc}: not read") from None
    except OSError as exc:
        why = "it became a link while being read" if exc.errno == errno.ELOOP else exc.strerror
        raise Refused(f"cannot be opened ({why})") from None
    size = os.fstat(fd).st_size
    if max_bytes is not None and size > max_bytes:
        os.close(fd)
        raise Refused(f"{size:,} bytes, over the {max_bytes:,} a file of this source may have: not read")
    return fd


def numbered_lines(f: TextIO) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for each line of `f`, from 1; None for a line longer than MAX_LINE_CHARS,
    which is skipped without being held in memory (see LONG_LINE)."""
    no, limit = 0, MAX_LINE_CHARS
    while line := f.readline(limit):
        no += 1
        if len(line) < limit or line.endswith("\n"):
            yield no, line
            continue
        while (rest := f.readline(limit)) and not rest.endswith("\n"):
            pass
        yield no, None


def long_line() -> str:
    return f"longer than {MAX_LINE_CHARS:,} characters: not read"

