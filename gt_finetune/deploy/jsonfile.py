"""A JSON file rewritten the way it was written: the `json.dumps` style that reproduces it byte
for byte, an atomic replace that keeps its permissions (and writes through a symlink), a lock for
its read-check-write, and a diff to show first. Settings files belong to their operator; a change
must look like a hand edit."""
from __future__ import annotations

import difflib
import fcntl
import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gt_finetune.errors import InputError
from gt_finetune.workspace import NotRegularFile, open_regular, write_bytes


# --- formatting ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class JsonStyle:
    indent: int | str | None = 2
    separator: str = ": "
    sort_keys: bool = False
    ensure_ascii: bool = False
    escape_html: bool = False       # Go's encoding/json writes <, >, & as \u003c, \u003e, \u0026
    crlf: bool = False
    trailing_newline: bool = True

    def dumps(self, obj) -> str:
        item = "," if self.indent is not None else ", "
        text = json.dumps(obj, indent=self.indent, separators=(item, self.separator),
                          sort_keys=self.sort_keys, ensure_ascii=self.ensure_ascii)
        if self.escape_html:  # <, >, & only occur inside strings in JSON text, so this is safe
            text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        if self.trailing_newline:
            text += "\n"
        return text.replace("\n", "\r\n") if self.crlf else text

    def describe(self) -> str:
        if self.indent is None:
            parts = ["one line"]
        else:
            parts = ["tab indent" if self.indent == "\t" else f"{self.indent}-space indent"]
        parts.append(f'`"key"{self.separator}value`')
        parts.append("sorted keys" if self.sort_keys else "keys in file order")
        if self.ensure_ascii:
            parts.append("non-ASCII as \\u escapes")
        if self.escape_html:
            parts.append("Go-style \\u003c escapes")
        if self.crlf:
            parts.append("CRLF line ends")
        parts.append("trailing newline" if self.trailing_newline else "no trailing newline")
        return ", ".join(parts)


DEFAULT_STYLE = JsonStyle()


def detect_style(text: str, obj) -> JsonStyle | None:
    """The first `json.dumps` setting that reproduces `text` exactly, or None.

    Preferences when several do (the file is then ambiguous): sorted keys (a sorted file stays
    sorted), literal non-ASCII, no HTML escapes.
    """
    crlf, trailing = "\r\n" in text, text.endswith("\n")
    indents: list = [2, 4, "\t", 1, 3, 5, 6, 7, 8]
    for indent, sep, sort_keys, ascii_, html in itertools.product(
            indents, (": ", " : "), (True, False), (False, True), (False, True)):
        style = JsonStyle(indent, sep, sort_keys, ascii_, html, crlf, trailing)
        if style.dumps(obj) == text:
            return style
    for sep, sort_keys, ascii_ in itertools.product((": ", ":"), (True, False), (False, True)):
        style = JsonStyle(None, sep, sort_keys, ascii_, False, crlf, trailing)
        if style.dumps(obj) == text:
            return style
    return None


MAX_DEPTH = 64  # JSON nesting we read: settings and chat requests are a few levels; far more would exhaust the stack


def json_depth(obj) -> int:
    """How deep a parsed JSON value nests (a scalar is 1), counted without recursion."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        item, depth = todo.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        todo.extend((child, depth + 1) for child in children)
    return deepest


def unified_diff(before: bytes | None, after: bytes | None, path: Path) -> str:
    a = (before or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = (after or b"").decode("utf-8", "replace").splitlines(keepends=True)
    out = []
    for line in difflib.unified_diff(a, b, "/dev/null" if before is None else str(path),
                                     "/dev/null" if after is None else str(path)):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when there is none.

    Raises:
        InputError: `path` is not a readable regular file (a directory, a FIFO, which would block
            the read forever, a device, a symlink loop, no permission).
    """
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return None
    except NotRegularFile as e:
        raise _unusable(path, str(e)) from None
    except OSError as e:
        raise _unusable(path, e.strerror or str(e)) from None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_target(settings: Path) -> Path:
    """The file to replace: a symlinked settings file is written through, never replaced by a copy.

    Raises:
        InputError: `settings` is a symlink loop.
    """
    if not settings.is_symlink():
        return settings
    try:
        return settings.resolve()
    except (OSError, RuntimeError) as e:  # Python 3.11 says RuntimeError("Symlink loop …"), later ones OSError
        raise _unusable(settings, f"a symlink that never reaches a file ({e})") from None


def _unusable(path: Path, why: str) -> InputError:
    return InputError(f"`{path}` cannot be used as a settings file: {why}",
                      hint=f"point `{path}` at a JSON settings file (or remove it), then run the command again; "
                           "nothing was changed")


@contextmanager
def settings_lock(settings: Path) -> Iterator[tuple[Path, ...]]:
    """Hold an exclusive lock for a read-check-write of `settings`; yields the folders it had to make.

    The lock is the folder that holds the file (flock on the folder itself), not a file in a
    workspace: two workspaces deploying into one town's settings exclude each other too, and no
    lock file is left among the operator's files. Folders made for it are removed again on the way
    out while still empty (the deploy failed), deepest first.

    Raises:
        InputError: the folder cannot be made or opened.
    """
    folder = write_target(Path(settings).absolute()).parent
    while True:
        made = []
        try:
            for parent in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
                try:
                    parent.mkdir()
                    made.insert(0, parent)
                except FileExistsError:  # another deploy made it a moment ago
                    pass
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise InputError(f"cannot lock `{folder}` to write `{Path(settings).name}` there: {e.strerror or e}",
                             hint=f"check that `{folder}` is a folder you may write, or pass another `--settings`"
                             ) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(folder)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the folder was removed (and maybe made again) while we waited: lock the one there now
    try:
        yield tuple(made)
    finally:
        for parent in made:
            try:
                parent.rmdir()
            except OSError:  # holds the settings now, or someone else's files
                break
        os.close(fd)


# --- writing ------------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set straight back
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """`write_bytes` (temp file, rename; a replaced file keeps its permissions), a new file getting
    what the operator's umask gives, not the workspace's private 0600: these are the town's files."""
    write_bytes(path, data, mode=0o666 & ~_umask())


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
