"""Replay conversations: general examples mixed into the train split to limit forgetting.

A fine-tune on one town's history drifts away from everything else the base model could do;
a share of general conversations in training (never in the held-out split) keeps some of it.
They come from a JSONL file of chat records, or from the base model itself answering a
packaged prompt list (`generate`), so replay rehearses what the model already says. A
generated set is cached by the model folder's contents, the prompts and the answer length,
so only the first build pays for it.
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from ..corpus.records import make_record
from ..errors import InputError
from ..workspace import canonical_json, read_jsonl, write_jsonl

GENERATE = "generate"
PROMPTS = Path(__file__).resolve().parent.parent / "data" / "replay_prompts.txt"
ROLES = ("system", "user", "assistant", "tool")
MAX_NEW_TOKENS = 96
BATCH = 4  # prompts answered together; small enough for a CPU
SHOWN = 10  # bad lines printed with their location; the rest are only counted
GENERATOR_VERSION = 1  # part of the cache key: a change in how answers are made regenerates them
FILE_HINT = ('each line needs {"messages": [{"role": "user", "content": "…"}, {"role": "assistant", '
             '"content": "…"}]} (see docs/formats.md); or use `generate` to have the base model answer '
             'the packaged prompts')


def replay_conversations(source: str, *, count: int, model_dir: Path, home: Path, seed: int,
                         prompts_file: Path | None = None, max_new_tokens: int = MAX_NEW_TOKENS) -> list[dict]:
    """`count` general conversations, chosen by `seed`, as records the dataset stage tokenizes.

    Each is `{"id": "replay:<12 hex>", "messages", "tools", "meta"}`; the id is the start of the
    conversation's content hash, so it is the same wherever the conversation was read from.
    `meta` has `source: "replay"`, `generated_by` and `location` (file:line).

    Args:
        source: a JSONL file of chat records, or `generate` for the base model's own answers
            to `prompts_file`.
        count: how many to return; when fewer exist, all of them are returned and stderr says so.
        model_dir: the base model folder (used by `generate` only).
        home: the workspace; generated sets are cached under `<home>/cache/replay/`.
        seed: picks which conversations; the same seed picks the same ones.
        prompts_file: one prompt per line; defaults to the packaged `data/replay_prompts.txt`.
        max_new_tokens: the longest answer `generate` writes.

    Raises:
        InputError: `count` is negative; the file, the prompt file or the model folder is
            missing; the file holds no usable conversation; or every generated answer is empty.
    """
    if count < 0:
        raise InputError(f"replay `count` must be 0 or more, got {count}")
    if count == 0:
        return []
    if source == GENERATE:
        prompts_file = Path(prompts_file or PROMPTS)
        pool = _generated(Path(model_dir), home=home, prompts_file=prompts_file, max_new_tokens=max_new_tokens)
        what = f"the model's answers to `{prompts_file}`"
    else:
        path = Path(source).expanduser()
        pool = _from_file(path)
        what = f"`{path}`"
    return _choose(pool, count=count, seed=seed, what=what)


def _choose(pool: list[dict], *, count: int, seed: int, what: str) -> list[dict]:
    """`count` of `pool` without replacement, kept in pool order so a chosen set reads like its source."""
    if count >= len(pool):
        if count > len(pool):
            print(f"replay: asked for {count} conversations, but only {len(pool)} are in {what}; using all of them",
                  file=sys.stderr)
        return pool
    return [pool[i] for i in sorted(random.Random(seed).sample(range(len(pool)), count))]


def _record(messages: list[dict], tools: list, meta: dict) -> dict:
    record = make_record(messages, {**meta, "source": "replay"}, tools)
    return {"id": "replay:" + record["meta"]["content_hash"].split(":", 1)[1][:12], **record}


# --- file mode -------------------------------------------------------------------------------

def _from_file(path: Path) -> list[dict]:
    """Every usable conversation in `path`; a bad or repeated line is skipped and reported, never fatal."""
    if not path.is_file():
        raise InputError(f"replay file `{path}` does not exist", hint=FILE_HINT)
    records, first_seen, bad = [], {}, []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8-sig"))  # `-sig`: a BOM does not cost the first line
            except UnicodeDecodeError:
                bad.append((n, "not UTF-8 text"))
                continue
            except json.JSONDecodeError as e:
                bad.append((n, f"not JSON ({e.msg} at column {e.colno})"))
                continue
            except (ValueError, RecursionError):  # past Python's limits: 4300-digit numbers, the stack
                bad.append((n, "not JSON (a number too long or nesting too deep to read)"))
                continue
            problem = _problem(row)
            if problem:
                bad.append((n, problem))
                continue
            meta = row.get("meta") or {}
            record = _record(row["messages"], row.get("tools") or [],
                             {**meta, "generated_by": meta.get("generated_by") or "unknown",
                              "location": f"{path}:{n}"})
            if record["id"] in first_seen:
                bad.append((n, f"same conversation as line {first_seen[record['id']]}"))
                continue
            first_seen[record["id"]] = n
            records.append(record)
    for n, problem in bad[:SHOWN]:
        print(f"{path}:{n}: {problem}", file=sys.stderr)
    if bad:
        more = f" ({SHOWN} shown above)" if len(bad) > SHOWN else ""
        print(f"replay: skipped {len(bad)} bad line(s) in `{path}`{more}; using the other {len(records)}",
              file=sys.stderr)
    if not records:
        raise InputError(f"replay file `{path}` has no usable conversation ({len(bad)} bad line(s))",
                         hint=FILE_HINT)
    return records


def _problem(row) -> str | None:
    """What makes `row` unusable as a chat record, in words, or None."""
    if not isinstance(row, dict):
        return f"{json.dumps(row)[:40]} is not a JSON object"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no `messages` list"
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            return f"message {i} is not an object"
        if m.get("role") not in ROLES:
            return f"message {i} has role {json.dumps(m.get('role'))}; expected one of {', '.join(ROLES)}"
        if not isinstance(m.get("content"), str):
            return f"message {i} `content` is {json.dumps(m.get('content'))[:40]}, not a string (use \"\" for none)"
        calls = m.get("tool_calls", [])
        if not isinstance(calls, list) or not all(_is_call(c) for c in calls):
            return (f"message {i} `tool_calls` is not a list of "
                    '{"function": {"name": "…", "arguments": "…"}} objects')
    if not any(m["role"] == "assistant" for m in messages):
        return "no assistant turn, so nothing to train"
    if not isinstance(row.get("tools", []), list):
        return "`tools` is not a list"
    if not isinstance(row.get("meta", {}), dict):
        return "`meta` is not an object"
    try:
        canonical_json(row).encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds a lone surrogate (an escape like `\\ud800` that is no character)"
    except RecursionError:
        return "nested too deeply to store"
    return None


def _is_call(call) -> bool:
    """An OpenAI-style tool call the chat templates can render: a named function, arguments as JSON text or object."""
    function = call.get("function") if isinstance(call, dict) else None
    return (isinstance(function, dict) and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments", ""), (str, dict)))


# --- generate mode ---------------------------------------------------------------------------

def _generated(model_dir: Path, *, home: Path, prompts_file: Path, max_new_tokens: int) -> list[dict]:
    """The base model's answers to every prompt, from the cache when this model, prompt file and length met before."""
    if not prompts_file.is_file():
        raise InputError(f"replay prompt file `{prompts_file}` does not exist",
                         hint="pass a text file with one prompt per line, or leave it out to use the packaged prompts")
    text = prompts_file.read_text(encoding="utf-8")
    prompts = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not prompts:
        raise InputError(f"replay prompt file `{prompts_file}` has no prompts",
                         hint="write one prompt per line")
    key = hashlib.sha256(canonical_json({
        "model": _fingerprint(model_dir), "prompts": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "max_new_tokens": max_new_tokens, "version": GENERATOR_VERSION}).encode()).hexdigest()
    cache = home / "cache" / "replay" / f"{key[:16]}.jsonl"
    if cache.is_file():
        print(f"replay: {model_dir.name}'s answers to {prompts_file.name} from {cache}", file=sys.stderr)
        records = read_jsonl(cache)
    else:
        records = _answer(model_dir, prompts, prompts_file=prompts_file, max_new_tokens=max_new_tokens)
        write_jsonl(cache, records)
        print(f"replay: {len(records)} answers cached at {cache}", file=sys.stderr)
    if not records:
        raise InputError(f"base model `{model_dir.name}` gave only empty answers to the {len(prompts)} prompts "
                         f"in `{prompts_file}`", hint="check the model's chat template, or pass a JSONL file of "
                         "chat records as the replay source instead of `generate`")
    return records


def _fingerprint(model_dir: Path) -> dict[str, str]:
    """sha256 of every file at the top of the model folder: the model's identity is its contents, not its path.

    Weights are hashed whole (about a second per GB): a fine-tune may change only some
    tensors, so sampling parts of a file could mistake one model for another.
    """
    if not (model_dir / "config.json").is_file():
        raise InputError(f"model folder `{model_dir}` has no config.json, so it cannot answer the replay prompts",
                         hint="pass the base model's local Hugging Face folder")
    digests = {}
    for f in sorted(p for p in model_dir.iterdir() if p.is_file()):
        with open(f, "rb") as handle:
            digests[f.name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return digests


def _answer(model_dir: Path, prompts: list[tuple[int, str]], *, prompts_file: Path, max_new_tokens: int) -> list[dict]:
    """Greedy answers, a few prompts at a time; an empty answer is left out (it would teach silence)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..device import pick_device

    print(f"replay: {model_dir.name} answers {len(prompts)} prompts from {prompts_file} "
          f"(greedy, at most {max_new_tokens} new tokens)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    tokenizer.padding_side = "left"  # every row's answer then starts at the same column
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # only fills the left margin, which the attention mask hides
    device = pick_device()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True)
    model = model.to(device).eval()
    stop = model.generation_config.eos_token_id  # may list an end-of-turn token besides the tokenizer's EOS
    stop = sorted({tokenizer.eos_token_id, *(stop if isinstance(stop, list) else [stop])} - {None})
    records, empty = [], []
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start:start + BATCH]
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for _, p in batch]
        inputs = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop,
                                 pad_token_id=tokenizer.pad_token_id)
        for (n, prompt), ids in zip(batch, out[:, inputs["input_ids"].shape[1]:]):
            answer = tokenizer.decode(ids, skip_special_tokens=True).strip()
            if not answer:
                empty.append(n)
                continue
            records.append(_record([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                                   [], {"generated_by": f"model:{model_dir.name}",
                                        "location": f"{prompts_file.name}:{n}"}))
        print(f"replay: {start + len(batch)}/{len(prompts)} prompts answered", file=sys.stderr)
    if empty:
        lines = ", ".join(f"{prompts_file.name}:{n}" for n in empty[:SHOWN]) + (", …" if len(empty) > SHOWN else "")
        print(f"replay: {len(empty)} empty answer(s) left out ({lines})", file=sys.stderr)
    return records
