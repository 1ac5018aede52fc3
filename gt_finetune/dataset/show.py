"""Find datasets and show an example the way the trainer sees it: which tokens are trained.

`gt-finetune dataset inspect <id> --example N` is the first place to look when a model
learns the wrong thing: a template problem shows up as trained text that is not the assistant's.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..jobs import JobRecord
from ..workspace import read_manifest
from .template import IGNORE

OPEN, CLOSE = "⟦", "⟧"  # around trained text, so the output reads without colour


def find_dataset(home: Path, ref: str) -> Path:
    """A dataset folder from its id (or a prefix of it), its path, or the `ft-` job that built it."""
    path = Path(ref).expanduser()
    if (path / "manifest.json").is_file():
        return path
    if ref.startswith("ft-") and JobRecord.path(home, ref).is_file():
        out = JobRecord.load(home, ref).output_of("dataset")
        if out is None:
            raise InputError(f"job `{ref}` has not built its dataset yet",
                             hint=f"see `gt-finetune status {ref}`")
        return out
    matches = [p for p in list_datasets(home) if p.name.startswith(ref) or read_manifest(p)["id"].startswith(ref)]
    if len(matches) != 1:
        what = "no dataset" if not matches else f"{len(matches)} datasets"
        raise InputError(f"{what} matching `{ref}` in {home / 'dataset'}",
                         hint="list them with `gt-finetune dataset list`, or pass an `ft-` job id")
    return matches[0]


def list_datasets(home: Path) -> list[Path]:
    folder = home / "dataset"
    found = [p for p in folder.iterdir() if (p / "manifest.json").is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: (p / "manifest.json").stat().st_mtime)


def format_example(example: dict, tokenizer, *, colour: bool, per_token: bool = False) -> str:
    """The example's text with trained runs inside ⟦…⟧ (green when `colour`), or one token a line."""
    ids, labels = example["input_ids"], example["labels"]
    if per_token:
        return "\n".join(f"{k:>5} {token:>7} {'TRAIN' if label != IGNORE else '  -  '} "
                         f"{tokenizer.decode([token])!r}" for k, (token, label) in enumerate(zip(ids, labels)))
    out, k = [], 0
    while k < len(ids):
        trained = labels[k] != IGNORE
        end = k
        while end < len(ids) and (labels[end] != IGNORE) == trained:
            end += 1
        text = tokenizer.decode(ids[k:end])
        if trained:
            text = f"{OPEN}{text}{CLOSE}"
            out.append(f"\x1b[1;32m{text}\x1b[0m" if colour else text)
        else:
            out.append(f"\x1b[2m{text}\x1b[0m" if colour else text)
        k = end
    return "".join(out)


def example_header(example: dict, index: int, split: str) -> str:
    trained = sum(1 for label in example["labels"] if label != IGNORE)
    total = len(example["input_ids"])
    where = ", ".join(f"{k} {example[k]}" for k in ("source", "role", "rig") if example.get(k))
    return (f"example {index} of {split}: `{example['id']}` (group `{example['group']}`{', ' + where if where else ''}); "
            f"{total} tokens, {trained} trained ({trained / max(total, 1):.0%}); trained text is inside {OPEN}…{CLOSE}")
