"""Dataset stage: canonical records → token ids + labels with the base model's own chat template.

    gt-finetune run finetune-lora --var max_seq_len=1024 --var role_context=true

records → role context (optional) → windows that fit `max_seq_len` → the model's chat template
(`template.py`: assistant-only labels, end-of-turn trained) → split by session, never by turn →
replay mix into the training split (optional) → mask audit (`audit.py`) → train/eval JSONL.
A dataset is cached under an id fingerprinting the corpus, the tokenizer and template files,
the spec and this builder, so the same inputs rebuild nothing and any change rebuilds.
"""
from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..corpus import load_records
from ..errors import InputError
from ..models import resolve_model
from ..workspace import (atomic_dir, content_id, is_complete, read_jsonl, read_manifest, short_id, write_json,
                         write_jsonl)
from .audit import AuditThresholds, audit
from .replay import replay_conversations
from .segment import segment
from .template import IGNORE, ChatTemplate

BUILDER_VERSION = 3  # part of the dataset id: a change in how examples are built rebuilds cached datasets
TOKENIZER_FILES = ("tokenizer", "special_tokens_map", "chat_template", "vocab", "merges", "added_tokens")
NOTHING_TO_TRAIN = "no assistant token to train"
ROLE_CONTEXT_HEADER = "\n\nThe rules of your role (what `gt prime` gives you):\n"


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    base_model: str
    max_seq_len: int = 512
    eval_fraction: float = 0.2
    seed: int = 0
    role_context: bool = False  # add the role's directive (from the corpus) to each example's system prompt
    role_context_chars: int = 1200
    replay: str = ""  # general examples against forgetting: a JSONL file of chats, or `generate`
    replay_ratio: float = 0.1  # replay examples per training example
    audit: AuditThresholds = field(default_factory=AuditThresholds)

    def __post_init__(self):
        if not 0 < self.eval_fraction < 1:
            raise InputError(f"`eval_fraction` must be between 0 and 1, got {self.eval_fraction}")
        if self.max_seq_len < 32:
            raise InputError(f"`max_seq_len` must be at least 32, got {self.max_seq_len}")
        if not 0 <= self.replay_ratio <= 1:
            raise InputError(f"`replay_ratio` must be between 0 and 1, got {self.replay_ratio}")


@dataclass(frozen=True, slots=True)
class DatasetManifest:
    id: str
    path: Path
    train: int
    eval: int
    dropped: int


def build_dataset(spec: DatasetSpec, *, corpus_dir: Path, home: Path) -> DatasetManifest:
    """Write `<home>/dataset/<id>/{train,eval,dropped}.jsonl` + manifest; reuse a complete one.

    Raises:
        InputError: too few usable examples to hold any out, or the mask audit failed.
    """
    corpus_manifest = read_manifest(corpus_dir)
    model_dir = resolve_model(spec.base_model, home=home)
    fingerprint = tokenizer_fingerprint(model_dir)
    replay_file = Path(spec.replay).expanduser() if spec.replay not in ("", "generate") else None
    cid = content_id({"spec": asdict(spec), "corpus": corpus_manifest["id"], "model": str(model_dir),
                      "tokenizer": fingerprint, "builder": BUILDER_VERSION,
                      "replay_file": _file_hash(replay_file) if replay_file and replay_file.is_file() else ""})
    out = home / "dataset" / short_id(cid)
    if is_complete(out):
        return _manifest_of(out)

    template = ChatTemplate.load(model_dir)
    records = load_records(corpus_dir)
    contexts = _role_contexts(records, spec.role_context_chars) if spec.role_context else {}
    examples, dropped = [], []
    for record in records:
        meta = record["meta"]
        rid = meta.get("bead_id") or meta.get("session") or meta["content_hash"].split(":", 1)[-1][:12]
        made, problems = _examples_of(record, rid, template, spec, contexts)
        examples += made
        dropped += problems
    untrainable = [d["id"] for d in dropped if d["reason"] == NOTHING_TO_TRAIN]
    train, held_out = split_by_group(examples, eval_fraction=spec.eval_fraction, seed=spec.seed)
    if not train or not held_out:
        raise InputError(f"{len(examples)} usable examples in corpus {corpus_dir.name}: too few to train and hold some out",
                         hint="harvest more history, or lower `--var eval_fraction=`")
    replay = _replay(spec, len(train), template, model_dir, home, dropped)
    summary = audit(train + replay + held_out, untrainable, template, spec.audit)
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "train.jsonl", [_stored(e) for e in train + replay])
        write_jsonl(tmp / "eval.jsonl", [_stored(e) for e in held_out])
        write_jsonl(tmp / "dropped.jsonl", dropped)
        write_json(tmp / "manifest.json", {
            "schema_version": 1, "stage": "dataset", "id": cid, "inputs": [corpus_manifest["id"]],
            "spec": asdict(spec), "model_dir": str(model_dir),
            "template": {"end_of_turn": template.end_of_turn_text, "native_tools": template.native_tools,
                         "tokenizer_fingerprint": fingerprint},
            "counts": {"train": len(train) + len(replay), "eval": len(held_out), "dropped": len(dropped),
                       "replay": len(replay), "role_context": sum(1 for e in examples if e.get("role_context"))},
            "held_out_groups": sorted({e["group"] for e in held_out}), "mask_audit": summary})
    if dropped:
        print(f"  dropped {len(dropped)} examples (e.g. {dropped[0]['id']}: {dropped[0]['reason']}); "
              f"see {out / 'dropped.jsonl'}", file=sys.stderr)
    return _manifest_of(out)



def _examples_of(record: dict, rid: str, template: ChatTemplate, spec: DatasetSpec,
                 contexts: dict) -> tuple[list[dict], list[dict]]:
    """Tokenized windows of one record, and `{id, reason}` for each part of it left out."""
    meta, tools = record["meta"], record.get("tools") or None
    messages = record["messages"]
    context = "" if meta.get("source") == "role_context" else \
        contexts.get((meta.get("rig") or "", meta.get("role") or "")) or contexts.get(("", meta.get("role") or ""))
    if context:
        messages = _with_context(messages, context)

    def fits(window: list[dict]) -> bool:
        return len(template.render(template.prepare(window), tools=tools)) <= spec.max_seq_len

    windows, left_out = segment(messages, fits)
    made, problems = [], [{"id": rid, "reason": reason} for reason in left_out]
    for k, window in enumerate(windows):
        wid = rid if len(windows) == 1 else f"{rid}#{k + 1}"
        prepared = template.prepare(window)
        example = template.tokenize(prepared, tools=tools)
        if isinstance(example, dict) and len(example["input_ids"]) > spec.max_seq_len:
            example = f"{len(example['input_ids'])} tokens, more than max_seq_len {spec.max_seq_len}"
        elif isinstance(example, dict) and all(label == IGNORE for label in example["labels"]):
            example = NOTHING_TO_TRAIN
        if isinstance(example, str):
            problems.append({"id": wid, "reason": example})
            continue
        made.append({"id": wid, "group": meta.get("session") or rid, **example, "messages": prepared,
                     "weight": float(meta.get("weight", 1.0)), "source": meta.get("source", ""),
                     "role": meta.get("role", ""), "rig": meta.get("rig", ""), "role_context": bool(context)})
    return made, problems


def _role_contexts(records: list[dict], limit: int) -> dict[tuple[str, str], str]:
    """(rig, role) → the role's rules, from the corpus's role-context records (directives, prime output)."""
    found = {}
    for r in records:
        meta = r["meta"]
        if meta.get("source") == "role_context" and meta.get("role"):
            text = next((m["content"] for m in r["messages"] if m["role"] == "assistant"), "")
            if len(text) > limit:
                text = text[: text.rfind("\n", 0, limit) if "\n" in text[:limit] else limit] + "\n[…]"
            found[(meta.get("rig") or "", meta["role"])] = text
    return found


def _with_context(messages: list[dict], context: str) -> list[dict]:
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": messages[0]["content"] + ROLE_CONTEXT_HEADER + context}, *messages[1:]]
    return [{"role": "system", "content": ROLE_CONTEXT_HEADER.lstrip() + context}, *messages]


def _replay(spec: DatasetSpec, n_train: int, template: ChatTemplate, model_dir: Path, home: Path,
            dropped: list[dict]) -> list[dict]:
    """General-purpose examples for the training split only (never held out: eval measures the town)."""
    count = round(n_train * spec.replay_ratio) if spec.replay else 0
    if not count:
        return []
    out = []
    for conv in replay_conversations(spec.replay, count=count, model_dir=model_dir, home=home, seed=spec.seed):
        record = {"messages": conv["messages"], "tools": [],
                  "meta": {**conv.get("meta", {}), "source": "replay", "session": "replay"}}
        made, problems = _examples_of(record, conv["id"], template, spec, {})
        out += [{**e, "id": conv["id"], "group": "replay"} for e in made[:1]]
        dropped += problems
    return out


def split_by_group(examples: list[dict], *, eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    groups = sorted({e["group"] for e in examples})
    random.Random(seed).shuffle(groups)
    n_eval = max(1, round(len(groups) * eval_fraction)) if len(groups) > 1 else 0
    held = set(groups[:n_eval])
    return [e for e in examples if e["group"] not in held], [e for e in examples if e["group"] in held]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tokenizer_fingerprint(model_dir: Path) -> str:
    """sha256 over the tokenizer and chat-template files: a changed template or vocabulary rebuilds."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name.startswith(TOKENIZER_FILES)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load_split(dataset_dir: Path, split: str) -> list[dict]:
    return read_jsonl(dataset_dir / f"{split}.jsonl")


def _stored(example: dict) -> dict:
    return {k: v for k, v in example.items() if k != "roles"}


def _manifest_of(out: Path) -> DatasetManifest:
    m = read_manifest(out)
    return DatasetManifest(id=m["id"], path=out, train=m["counts"]["train"], eval=m["counts"]["eval"],
                           dropped=m["counts"]["dropped"])
