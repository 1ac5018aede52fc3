"""Find datasets and show an example the way the trainer sees it: which tokens are trained.

`gt-finetune dataset inspect <id> --example N` is the first place to look when a model
learns the wrong thing: a template problem shows up as trained text that is not the assistant's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError
from ..jobs import JobRecord
from ..workspace import MANIFEST, shown
from .template import IGNORE

OPEN, CLOSE = "⟦", "⟧"  # around trained text, so the output reads without colour
LIST_HINT = "list them with `gt-finetune dataset list`, or pass an `ft-` job id"


def find_dataset(home: Path, ref: str) -> Path:
    """A dataset folder from its id (or a prefix of it), its path, or the `ft-` job that built it."""
    path = Path(os.path.expanduser(ref))
    if os.path.isfile(path / MANIFEST):  # False, not an error, for a name no file can have (too long)
        return path
    if ref.startswith("ft-") and JobRecord.path(home, ref).is_file():
        out = JobRecord.load(home, ref).output_of("dataset")
        if out is None:
            raise InputError(f"job `{ref}` has not built its dataset yet",
                             hint=f"see `gt-finetune status {ref}`")
        return out
    matches = [p for p in list_datasets(home) if p.name.startswith(ref) or _id_of(p).startswith(ref)]
    if len(matches) != 1:
        what = "no dataset" if not matches else f"{len(matches)} datasets"
        raise InputError(f"{what} matching `{shown(ref)}` in {home / 'dataset'}", hint=LIST_HINT)
    return matches[0]


def dataset_manifest(path: Path) -> dict:
    """The manifest of the dataset in `path`, refusing a damaged one or another stage's folder."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{shown(path / MANIFEST)} cannot be read: {shown(str(exc))}",
                         hint="the folder is damaged; build the dataset again") from exc
    stage = manifest.get("stage") if isinstance(manifest, dict) else None
    if stage != "dataset":
        what = f"a {shown(stage)} folder" if isinstance(stage, str) else "no stage's output"
        raise InputError(f"{shown(path)} is {what}, not a dataset", hint=LIST_HINT)
    return manifest


def load_example(path: Path, split: str, index: int, vocab: int) -> dict:
    """Example `index` of a split (its line among the non-empty ones), checked to be token ids below
    `vocab` with labels that line up; a damaged line elsewhere does not stop the others showing."""
    file = path / f"{split}.jsonl"
    if not os.path.isfile(file):
        raise InputError(f"dataset {path.name} has no {split} split ({shown(file)} is missing)",
                         hint="pick the other one with `--split`, or build the dataset again")
    count, found = 0, None
    with open(file, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                if count == index:
                    found = (lineno, line)
                count += 1
    if found is None:
        raise InputError(f"dataset {path.name} has {count} {split} examples; there is no example {index}",
                         hint=f"pick one from 0 to {count - 1}" if count else "pick the other split with `--split`")
    lineno, line = found
    try:
        example = json.loads(line)
        problem = _example_problem(example, vocab)
    except ValueError as exc:
        problem = f"not JSON: {exc}"
    if problem:
        raise InputError(f"{shown(file)}:{lineno}: example {index} is damaged: {problem}",
                         hint="the others still show; build the dataset again to repair it")
    return example


def load_tokenizer(path: Path, manifest: dict):
    """The tokenizer the dataset was built with, from its local folder only: a `model_dir` that is no
    folder here (`org/model`) would make transformers download it from a model hub."""
    model_dir = manifest.get("model_dir")
    if not isinstance(model_dir, str) or not os.path.isdir(model_dir):
        raise InputError(f"dataset {path.name} was built with `model_dir` {shown(repr(model_dir))}, which is "
                         "not a folder here; tokenizers load from local folders only",
                         hint="put the base model back at that path, or build the dataset again")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the tokenizer in {shown(model_dir)} (dataset {path.name}): "
                         f"{shown(str(exc))}", hint="check that the folder holds a complete model") from exc


def _example_problem(example, vocab: int) -> str:
    if not isinstance(example, dict):
        return f"a JSON {type(example).__name__}, not an object"
    ids, labels = example.get("input_ids"), example.get("labels")
    for name, value in (("input_ids", ids), ("labels", labels)):
        if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return f"`{name}` is not a list of token ids"
    if len(ids) != len(labels):
        return f"{len(ids)} `input_ids` but {len(labels)} `labels`"
    unknown = next((t for t in ids if not 0 <= t < vocab), None)
    return f"token id {shown(str(unknown))} is not in the tokenizer's {vocab} ids" if unknown is not None else ""


def _id_of(folder: Path) -> str:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return str(manifest.get("id", ""))
    except (OSError, ValueError, AttributeError):
        return ""  # a damaged folder matches by name only; `dataset inspect` on it says what is wrong


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
    return (f"example {index} of {split}: `{example.get('id')}` (group `{example.get('group')}`"
            f"{', ' + where if where else ''}); "
            f"{total} tokens, {trained} trained ({trained / max(total, 1):.0%}); trained text is inside {OPEN}…{CLOSE}")
