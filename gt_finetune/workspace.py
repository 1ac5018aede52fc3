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
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

MANIFEST = "manifest.json"


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

    The block must write `manifest.json` last. A leftover temp folder from a killed run is
    removed by the next attempt.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
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
