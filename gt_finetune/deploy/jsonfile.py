"""A JSON file rewritten the way it was written: the `json.dumps` style that reproduces it byte
for byte, an atomic replace that keeps its permissions (and writes through a symlink), and a diff
to show first. Settings files belong to their operator; a change must look like a hand edit."""
from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path


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


def unified_diff(before: bytes | None, after: bytes | None, path: Path) -> str:
    a = (before or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = (after or b"").decode("utf-8", "replace").splitlines(keepends=True)
    out = []
    for line in difflib.unified_diff(a, b, "/dev/null" if before is None else str(path),
                                     "/dev/null" if after is None else str(path)):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_target(settings: Path) -> Path:
    """The file to replace: a symlinked settings file is written through, never replaced by a copy."""
    return settings.resolve() if settings.is_symlink() else settings


# --- writing ------------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set straight back
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file beside `path`, same permissions as the file it replaces, then rename."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
