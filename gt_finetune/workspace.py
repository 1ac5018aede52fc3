"""Where gt-finetune keeps its state, and how every artifact is written atomically.

A reader never sees a half-written file: files go to a temp name and are renamed into
place; a stage's output folder is filled under a temp name and renamed whole. A folder
that holds `manifest.json` is complete, so a resumed run skips it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError

MANIFEST = "manifest.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # bead ids (`ft-7k2.1`), corpus ids, deployment ids


def resolve_home(explicit: str | os.PathLike | None, town_root: Path | None) -> Path:
    """`--home`, then `$GT_FINETUNE_HOME`, then `<town>/.gt-finetune`, then `~/.gt-finetune`.

    Raises:
        InputError: the folder given cannot be one: a symlink loop, `~user` of no user, a file or
            a device (`/dev/null`). One that cannot be made is refused where it is made (`ensure_dir`).
    """
    given = explicit or os.environ.get("GT_FINETUNE_HOME")
    if not given:
        return town_root / ".gt-finetune" if town_root is not None else Path.home() / ".gt-finetune"
    hint = "pass --home (or set GT_FINETUNE_HOME to) a folder you can write"
    try:
        home = Path(given).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (before Python 3.13), `~nobody`
        raise InputError(f"workspace {shown(given)} cannot be used: {shown(str(exc))}", hint=hint) from exc
    if os.path.exists(home) and not os.path.isdir(home):
        raise InputError(f"workspace {shown(given)} is not a folder", hint=hint)
    return home


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
    printed = shown(value) if isinstance(value, str) else repr(value)  # shortened: a name may be 5,000 chars
    raise InputError(f"{what} `{printed}` is not a name: use letters, digits, `.`, `_` and `-`, "
                     "starting with a letter or digit, at most 128", hint=hint)


# What an OSError on a path means, for the errnos that are about the path itself: a person can fix
# these by choosing another path. Others (a full disk, an I/O error) are not the path's fault.
PATH_PROBLEMS = {
    errno.ENOTDIR: "a part of it is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "it runs into a symlink loop",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted there",
}


_CHOOSE = "pick a path you can write; for the workspace itself, pass --home (or set GT_FINETUNE_HOME)"


def shown(path: str | os.PathLike) -> str:
    """A path for a one-line message: control characters escaped, the middle of a long one cut."""
    text = os.fsdecode(path)
    text = text if text.isprintable() else repr(text)[1:-1]
    return text if len(text) <= 160 else f"{text[:100]}…{text[-50:]}"


def path_error(exc: OSError, path: str | os.PathLike, doing: str) -> InputError | None:
    """`exc` as the InputError "cannot <doing> <path>: <why>", when its errno is about the path."""
    problem = PATH_PROBLEMS.get(exc.errno)
    if problem is None:
        return None
    return InputError(f"cannot {doing} {shown(path)}: {problem}", hint=_CHOOSE)


@contextlib.contextmanager
def _about(path: str | os.PathLike, doing: str) -> Iterator[None]:
    """OSErrors in the block that are about `path` (see PATH_PROBLEMS) become InputErrors naming it."""
    try:
        yield
    except OSError as exc:
        error = path_error(exc, path, doing)
        if error is None:
            raise
        raise error from exc


def ensure_dir(folder: Path) -> Path:
    """`mkdir -p folder`; a folder that cannot be made (a file in the way, a read-only disk, a name
    too long) is an InputError naming it."""
    try:
        with _about(folder, "make the folder"):
            folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # mkdir -p over a file, a device or a dangling link
        raise InputError(f"cannot make the folder {shown(folder)}: something that is not a folder is in "
                         "the way", hint=_CHOOSE) from exc
    return folder


def can_write(path: Path) -> bool:
    """Whether the file `path` can be created or changed: its folder (and the file, if there) writable.
    False on a read-only mount even for root, whom file modes do not stop."""
    return os.access(path.parent, os.W_OK) and (not os.path.lexists(path) or os.access(path, os.W_OK))


def not_writable(folder: Path) -> InputError:
    return InputError(f"the workspace {shown(folder)} is not writable (a read-only mount, or another user's): "
                      "commands that only read work there, this one must write",
                      hint="run it where the workspace can be written, or pass --home a folder you can write")


def write_bytes(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write `path` atomically: a temp file beside it, renamed over it. The file keeps the
    permissions of the one it replaces; a new one gets `mode` (by default private: a workspace
    holds training text).

    Raises:
        InputError: `path` is a symlink, a device, a FIFO or anything but a regular file (renaming
            over it would replace the link or the node, not write through it), or it cannot be
            written (a file in the way, a read-only disk, a name too long).
    """
    ensure_dir(path.parent)
    with _about(path, "write"):  # the temp name is cut so that it fits wherever the target's name does
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            kept = _regular_file_mode(path)  # checked last, so the window before the rename is short
            os.fchmod(f.fileno(), mode if kept is None else kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _regular_file_mode(path: Path) -> int | None:
    """The permissions of the regular file at `path`, None when there is none; anything else there
    is refused."""
    try:
        with _about(path, "write"):
            mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        raise InputError(f"{shown(path)} is {file_kind(mode)}, not a regular file: refusing to replace it",
                         hint="write to a new file name, or to the file the link points at")
    return stat.S_IMODE(mode)


class NotRegularFile(ValueError):
    """What is at a path is a folder, a FIFO, a device or a socket; the message says which."""


def open_regular(path: str | os.PathLike, flags: int = os.O_RDONLY, *, perms: int = 0o644) -> int:
    """A blocking descriptor of `path`, when it is a regular file. A town's files are written by its
    agents: opened with O_NONBLOCK so a FIFO is not waited on for ever, and checked with fstat before
    a byte is read or written (`/dev/zero` never ends). Add O_NOFOLLOW to `flags` to refuse a link.

    Raises:
        OSError: it cannot be opened (ELOOP: a link, under O_NOFOLLOW). NotRegularFile: it is opened
            but is not a regular file.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, perms)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"not a regular file ({file_kind(mode)})")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message."""
    return ("a symlink" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def write_json(path: Path, obj, *, sort_keys: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False, default=str) + "\n")


def parse_json(text: str) -> object:
    """JSON text's value; ValueError saying why not (its cause keeps json's line number), also past
    Python's limits (4300-digit numbers, nesting deeper than the stack), which json reports as other
    errors: a town's files and lines are written by its agents."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(exc.msg) from exc
    except ValueError:
        raise ValueError("a number too long to read") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


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
    ensure_dir(final.parent)
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
