"""Export stage entry: a training run → a merged model, GGUF files, a model card, all checked.

    merged/           the adapter folded into the float32 base (safetensors, tokenizer, template,
                      generation config stopping on EOS and the trained end-of-turn token)
    adapter/          the LoRA adapter as trained (adapter runs only)
    model-f16.gguf    llama.cpp's format, float16 matrices
    model-q8_0.gguf   8-bit blocks
    README.md         the model card
    manifest.json     formats, files with sizes and sha256, reload checks, parity

Nothing is published unchecked: each GGUF is read back tensor by tensor against the merged
model, and every format greedily decodes the same prompts as the trainer-side model (parity).
A failed check fails the export and leaves no folder behind. The same run and spec reuse the
finished folder.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError
from ..workspace import atomic_dir, content_id, is_complete, read_manifest, short_id, write_json, write_text
from .card import base_model_info, render_card
from .gguf import GGUF_TYPES, check_supported, write_gguf
from .merge import MERGED, merge_run
from .parity import Runtime, check_parity, parity_prompts
from .reload import check_gguf

FORMATS = ("safetensors", "gguf")
EXPORT_VERSION = 2  # bump when what an export writes or checks changes, so cached exports are redone


@dataclass(frozen=True, slots=True)
class ExportSpec:
    formats: tuple[str, ...] = FORMATS  # the merged safetensors are always written: every other format comes from them
    gguf_types: tuple[str, ...] = GGUF_TYPES
    parity_prompts: int = 8  # the first GT-Bench task of each family, then general questions
    parity_tokens: int = 24  # greedy tokens per prompt compared between runtimes

    def __post_init__(self):
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or "safetensors" not in self.formats:
            raise InputError(f"`formats` must include `safetensors` and may add `gguf`; got {', '.join(self.formats) or 'none'}",
                             hint="pass `--format safetensors,gguf` (or `safetensors` alone)")
        bad = [t for t in self.gguf_types if t not in GGUF_TYPES]
        if bad or ("gguf" in self.formats and not self.gguf_types):
            raise InputError(f"`gguf_types` must be some of {', '.join(GGUF_TYPES)}; got {', '.join(self.gguf_types) or 'none'}",
                             hint="pass `--gguf-types f16,q8_0`")
        for name in ("parity_prompts", "parity_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"`{name}` must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class ExportManifest:
    id: str
    path: Path  # holds merged/, adapter/, *.gguf, README.md, manifest.json
    parity: str  # one-line parity summary


def export_model(spec: ExportSpec, *, train_dir: Path, home: Path, dataset_dir: Path | None = None,
                 corpus_dir: Path | None = None, plan_dir: Path | None = None,
                 eval_dir: Path | None = None) -> ExportManifest:
    """Export the run in `train_dir` to `<home>/export/<id>/`; reuse a complete one.

    The upstream folders feed the model card (and the dataset's end-of-turn token the stop
    tokens); each one not given is named as missing in the card.

    Raises:
        InputError: an architecture GGUF cannot express, a run folder without its weights, a
            quantised base, an end-of-turn token the tokenizer lacks, a failed reload check, or a
            strict runtime whose tokens differ from the trainer-side model's (parity).
    """
    trained = read_manifest(train_dir)
    upstream = {"dataset": _read(dataset_dir), "corpus": _read(corpus_dir), "plan": _read(plan_dir),
                "eval": _read(eval_dir)}
    _check_lineage(trained, upstream)
    cid = content_id({"train": trained["id"], "spec": asdict(spec), "version": EXPORT_VERSION,
                      "inputs": {k: m.get("id") if m else None for k, m in upstream.items()}})
    out = home / "export" / short_id(cid)
    if is_complete(out):
        return _manifest_of(out)
    model_dir = Path(trained["model_dir"])
    if "gguf" in spec.formats:
        check_supported(json.loads((model_dir / "config.json").read_text(encoding="utf-8")), where=model_dir)
    end_of_turn_id, stop = _stop_tokens(model_dir, upstream["dataset"])
    evaluation = _evaluation(eval_dir, upstream["eval"])
    base = base_model_info(model_dir, trained["spec"]["base_model"])
    started = time.monotonic()
    with atomic_dir(out) as tmp:
        _say(f"merging {trained['spec']['method']} run `{trained['id']}` into a float32 copy of `{base['name']}`")
        merge = merge_run(train_dir, trained, tmp, stop=stop)
        runtimes = [Runtime("safetensors", tmp / MERGED, None)]
        reload = {}
        for gguf_type in spec.gguf_types if "gguf" in spec.formats else ():
            name = f"model-{gguf_type}.gguf"
            _say(f"writing {name}")
            write_gguf(tmp / MERGED, tmp / name, gguf_type=gguf_type, end_of_turn_id=end_of_turn_id,
                       name=f"{base['name']}-gt-finetune-{short_id(trained['id'])}", base_license=base["license"])
            reload[name] = check_gguf(tmp / name, tmp / MERGED, gguf_type=gguf_type)
            _say(f"{name}: reload check passed ({reload[name]['tensors']} tensors)")
            runtimes.append(Runtime(f"gguf-{gguf_type}", tmp, name, lossy=gguf_type))
        prompts = parity_prompts(spec.parity_prompts)
        _say(f"parity: {len(prompts)} prompts, up to {spec.parity_tokens} tokens, "
             f"{len(runtimes)} runtime(s) against the trainer-side model")
        parity = check_parity(train_dir, trained, runtimes, end_of_turn_id=end_of_turn_id, prompts=prompts,
                              max_new_tokens=spec.parity_tokens)
        _say(f"parity: {parity['summary']}")
        files = _files(tmp)
        write_text(tmp / "README.md", render_card(trained=trained, dataset=upstream["dataset"],
                                                  corpus=upstream["corpus"], plan=upstream["plan"],
                                                  evaluation=evaluation, base=base, files=files, parity=parity,
                                                  reload=reload))
        write_json(tmp / "manifest.json", {
            "schema_version": 1, "stage": "export", "id": cid, "version": EXPORT_VERSION,
            "inputs": [trained["id"]] + [m["id"] for m in upstream.values() if m],
            "upstream": {k: m["id"] if m else None for k, m in upstream.items()},
            "spec": asdict(spec), "train_dir": str(train_dir), "base_model": base, "merge": merge,
            "formats": list(spec.formats), "files": files + _files(tmp, only=("README.md",)),
            "reload": reload, "parity": parity, "seconds": round(time.monotonic() - started, 1),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return _manifest_of(out)


def _read(stage_dir: Path | None) -> dict | None:
    if stage_dir is None:
        return None
    if not is_complete(stage_dir):
        raise InputError(f"`{stage_dir}` is not a finished stage folder (it has no manifest.json)",
                         hint="pass the folder of a completed step, or leave it out (the model card then says "
                              "what is missing)")
    return read_manifest(stage_dir)


def _check_lineage(trained: dict, upstream: dict[str, dict | None]) -> None:
    """Each upstream folder must belong to this run: the card would otherwise describe another model.

    Raises:
        InputError: a folder whose manifest is not an input of (or does not take as input) the run.
    """
    dataset, corpus, plan, evaluation = (upstream[k] for k in ("dataset", "corpus", "plan", "eval"))
    wrong = []
    if dataset and dataset["id"] not in trained["inputs"]:
        wrong.append(f"dataset `{short_id(dataset['id'])}` is not the one run `{trained['id']}` trained on")
    if corpus and dataset and corpus["id"] not in dataset["inputs"]:
        wrong.append(f"corpus `{corpus['id']}` is not the one dataset `{short_id(dataset['id'])}` was built from")
    if plan and not set(plan["inputs"]) & set(trained["inputs"]):
        wrong.append(f"plan `{short_id(plan['id'])}` planned another dataset than run `{trained['id']}` trained on")
    if evaluation and trained["id"] not in evaluation["inputs"]:
        wrong.append(f"eval `{short_id(evaluation['id'])}` scored another run than `{trained['id']}`")
    if wrong:
        raise InputError("; ".join(wrong), hint="pass the folders of this run's own job steps (`gt-finetune status "
                                                "<job>` lists them), or leave one out")


def _evaluation(eval_dir: Path | None, manifest: dict | None) -> dict | None:
    """The eval stage's metrics.json with its manifest id, for the card."""
    if manifest is None:
        return None
    metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    return {**metrics, "id": manifest["id"]}


def _stop_tokens(model_dir: Path, dataset: dict | None) -> tuple[int, list[int]]:
    """(end-of-turn id, stop ids): the dataset's end-of-turn token — the one every trained answer
    ends with — and EOS. Without a dataset manifest the end of turn is taken to be EOS, and said so.

    Raises:
        InputError: the tokenizer has no such token.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    end_of_turn = (dataset or {}).get("template", {}).get("end_of_turn")
    if end_of_turn is None:
        _say(f"no dataset manifest: the trained end-of-turn token is unknown; stopping on EOS "
             f"`{tokenizer.eos_token}` only")
        return tokenizer.eos_token_id, [tokenizer.eos_token_id]
    found = tokenizer.convert_tokens_to_ids(end_of_turn)
    if found is None or (found == tokenizer.unk_token_id and end_of_turn != tokenizer.unk_token):
        raise InputError(f"the dataset's end-of-turn token `{end_of_turn}` is not a token of `{model_dir}`'s tokenizer",
                         hint="pass the dataset folder this run was trained on (`--dataset <id>`)")
    return found, sorted({tokenizer.eos_token_id, found})


def _files(folder: Path, *, only: tuple[str, ...] = ()) -> list[dict]:
    """Every file under `folder` (or just `only`) with its size and sha256, in path order."""
    paths = [folder / name for name in only] if only else sorted(p for p in folder.rglob("*") if p.is_file())
    return [{"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in paths]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_of(out: Path) -> ExportManifest:
    m = read_manifest(out)
    return ExportManifest(id=m["id"], path=out, parity=m["parity"]["summary"])


def _say(text: str) -> None:
    print(f"  export: {text}", file=sys.stderr, flush=True)
