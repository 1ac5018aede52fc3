"""Where gt-finetune keeps its state, and how every artifact is written atomically.

A reader never sees a half-written file: files go to a temp name and are renamed into
place; a stage's output folder is filled under a temp name and renamed whole. A folder
that holds `manifest.json` is complete, so a resumed run skips it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError

MANIFEST = "manifest.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # bead ids (`ft-7k2.1`), corpus ids, deployment ids


def resolve_home(explicit: str | os.PathLike | None, town_root: Path | None) -> Path:
    """`--home`, then `$GT_FINETUNE_HOME`, then `<town>/.gt-finetune`, then `~/.gt-finetune`."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("GT_FINETUNE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if town_root is not None:
        return town_root / ".gt-finetune"
    return Path.home() / ".gt-finetune"


def safe_name(value: str, *, what: str, hint: str | None = None) -> str:
    """`value`, when it can name one file or folder in the workspace (`<home>/jobs/<value>.json`).

    Ids and names the user types or a bead carries become path components; a path (`../x`, `/etc`),
    a NUL byte or a newline there would read or write outside the workspace, so they are refused.

    Raises:
        InputError: `value` is not letters, digits, `.`, `_` and `-` starting with a letter or digit,
            or it holds `..`; the message names `what` was expected, `hint` says where to find one.
    """
    if isinstance(value, str) and _NAME.fullmatch(value) and ".." not in value:
        return value
    shown = value if isinstance(value, str) and value.isprintable() else repr(value)
    raise InputError(f"{what} `{shown}` is not a name: use letters, digits, `.`, `_` and `-`, "
                     "starting with a letter or digit, at most 128", hint=hint)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def write_json(path: Path, obj, *, sort_keys: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    lines = [canonical_json(r) for r in rows]
    write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def content_id(obj) -> str:
    """`sha256:<hex>` of canonical JSON; shown to people as the first 12 hex chars."""
    return "sha256:" + hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def short_id(cid: str) -> str:
    return cid.split(":", 1)[-1][:12]


def read_manifest(stage_dir: Path) -> dict:
    return json.loads((stage_dir / MANIFEST).read_text(encoding="utf-8"))


def is_complete(stage_dir: Path) -> bool:
    return (stage_dir / MANIFEST).is_file()


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp folder beside `final`; rename it into place only if the block succeeds.

    The block must write `manifest.json` last. The temp folder's name says which process fills it
    (`.<name>.<host>-<pid>.partial`): one whose process is gone was left by a killed run and is
    removed by the next write in the same folder, whatever it was building (a plan's id and a
    corpus's change from run to run, so the same name may never come again).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for old in final.parent.glob(".*.partial"):
        if old.name == f".{final.name}.partial" or _abandoned(old):  # the former name: no writer in it
            shutil.rmtree(old, ignore_errors=True)
    tmp = final.parent / f".{final.name}.{_host()}-{os.getpid()}.partial"
    tmp.mkdir()
    try:
        yield tmp
        if not (tmp / MANIFEST).is_file():
            raise RuntimeError(f"stage output {final} was built without a {MANIFEST}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_PARTIAL = re.compile(r"\..+\.(?P<host>[^.]+)-(?P<pid>\d+)\.partial")


def _host() -> str:
    return socket.gethostname().split(".")[0]


def _abandoned(tmp: Path) -> bool:
    """A temp folder whose writer on this host is gone. Another host's (a workspace shared by
    torchrun nodes) is left to that host; a reused pid keeps one a little longer, harmlessly."""
    m = _PARTIAL.fullmatch(tmp.name)
    if m is None or m["host"] != _host():
        return False
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False
