"""Exact and near-duplicate records, so one situation is not taught twice (DESIGN.md §4).

Two records are the same example when they share a content hash or their trained text (the
user prompt plus every assistant turn, lowercased, whitespace collapsed) is equal; they are
near duplicates when the MinHash estimate of the Jaccard similarity of their word 5-shingles
reaches the threshold. LSH banding keeps the comparison close to linear: a record is checked
only against earlier kept records that share a band with it. Pure Python, seeded, deterministic.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict

PRIME = (1 << 31) - 1  # Mersenne prime for h(x) = (a*x + b) mod p; a*x + b stays below 2**62
_SPACE = re.compile(r"\s+")


def find_duplicates(records: list[dict], *, threshold: float = 0.85, shingle: int = 5, num_perm: int = 64,
                    seed: int = 0) -> list[tuple[int, int, str]]:
    """Each duplicate as (dropped_index, kept_index, kind), kind `exact` or `near`, by dropped index.

    The earliest record of a group is kept; a later record is compared with kept records only,
    so a run of near-identical records all point at the first of them.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold}")
    perms = _permutations(num_perm, seed)
    bands, rows = _banding(num_perm, threshold)
    salt = seed.to_bytes(16, "little", signed=False)
    first_by_hash: dict[str, int] = {}
    first_by_text: dict[str, int] = {}
    kept_of: dict[int, int] = {}  # index → the kept record it stands for (itself when kept)
    signatures: dict[int, tuple[int, ...]] = {}
    buckets: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
    found: list[tuple[int, int, str]] = []
    for i, record in enumerate(records):
        text = trained_text(record)
        digest = record.get("meta", {}).get("content_hash", "")
        twin = first_by_hash.get(digest) if digest else None
        if twin is None and text:
            twin = first_by_text.get(text)
        if digest:
            first_by_hash.setdefault(digest, i)
        if text:
            first_by_text.setdefault(text, i)
        if twin is not None:
            kept_of[i] = kept_of[twin]
            found.append((i, kept_of[i], "exact"))
            continue
        kept_of[i] = i
        if not text:  # nothing trained: nothing to compare
            continue
        signature = _signature(_shingles(text, shingle, salt), perms)
        keys = [(b, signature[b * rows:(b + 1) * rows]) for b in range(bands)]
        candidates = sorted({j for key in keys for j in buckets.get(key, ())})
        match = next((j for j in candidates if _similarity(signature, signatures[j]) >= threshold), None)
        if match is not None:
            kept_of[i] = match
            found.append((i, match, "near"))
            continue
        signatures[i] = signature
        for key in keys:
            buckets[key].append(i)
    return found


def trained_text(record: dict) -> str:
    """The first user prompt and every assistant turn (text and tool calls), normalised."""
    messages = record.get("messages", [])
    prompt = next((m for m in messages if m.get("role") == "user"), None)
    parts = [message_text(m) for m in messages if m is prompt or m.get("role") == "assistant"]
    return normalise(" ".join(parts))


def message_text(message: dict) -> str:
    """Content (text parts of a content list too) plus tool-call names and arguments."""
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    calls = [f"{(c.get('function') or {}).get('name', '')} {(c.get('function') or {}).get('arguments', '')}"
             for c in message.get("tool_calls") or []]
    return " ".join(["" if content is None else str(content), *calls]).strip()


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text.lower()).strip()


def _shingles(text: str, size: int, salt: bytes) -> list[int]:
    """Distinct word `size`-shingles hashed below PRIME (a short text is one shingle)."""
    words = text.split()
    grams = {" ".join(words[k:k + size]) for k in range(max(1, len(words) - size + 1))}
    return [int.from_bytes(hashlib.blake2b(g.encode("utf-8"), digest_size=8, salt=salt).digest(), "little") % PRIME
            for g in sorted(grams)]


def _permutations(num_perm: int, seed: int) -> list[tuple[int, int]]:
    """(a, b) pairs for h(x) = (a*x + b) mod p, derived from the seed with blake2b."""
    perms = []
    for k in range(num_perm):
        raw = hashlib.blake2b(f"minhash:{seed}:{k}".encode(), digest_size=16).digest()
        a = int.from_bytes(raw[:8], "little") % (PRIME - 1) + 1
        b = int.from_bytes(raw[8:], "little") % PRIME
        perms.append((a, b))
    return perms


def _signature(shingles: list[int], perms: list[tuple[int, int]]) -> tuple[int, ...]:
    """min over shingles of (a*x + b) mod p, for every permutation at once (numpy; all values < 2**62)."""
    import numpy as np

    a = np.array([p[0] for p in perms], dtype=np.uint64)[:, None]
    b = np.array([p[1] for p in perms], dtype=np.uint64)[:, None]
    x = np.array(shingles, dtype=np.uint64)[None, :]
    return tuple(int(v) for v in ((a * x + b) % np.uint64(PRIME)).min(axis=1))


def _similarity(x: tuple[int, ...], y: tuple[int, ...]) -> float:
    return sum(1 for p, q in zip(x, y) if p == q) / len(x)


def _banding(num_perm: int, threshold: float, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest candidate pairs) that still makes a pair at
    exactly the threshold a candidate with probability ≥ `recall`; candidates are then checked
    on the whole signature, so extra candidates cost time, never correctness."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold ** rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1
