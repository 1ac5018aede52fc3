"""Padding waste on the fixture corpus: one padded example per row vs best-fit packed rows.

    .venv/bin/python benchmarks/packing.py [--shared ../shared] [--home DIR] [--batch-size 4]

Builds a corpus from the shared fixtures (two beads backups and the Claude Code transcripts) and
a dataset with SmolLM2-135M-Instruct's chat template, in a temporary home unless `--home` names
one to reuse (the first build converts the packaged GGUF, about a minute). Then, over one epoch
of the train split in shuffled order, batch-size rows per batch, each batch padded to its longest
row: padded (a row is one example) vs packed (a row is examples best-fit into `max_seq_len`).
Prints batches, tokens and useful (non-padding) tokens per batch, and the share of padding;
the last line is `waste packed=<p>% padded=<q>%`.
"""
import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_finetune.corpus import CorpusSpec, build_corpus  # noqa: E402
from gt_finetune.dataset import DatasetSpec, build_dataset, load_split  # noqa: E402
from gt_finetune.dataset.pack import best_fit  # noqa: E402


def batches(row_lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """One epoch of rows in shuffled order, `batch_size` at a time (as the trainer's data order)."""
    order = list(range(len(row_lengths)))
    random.Random(seed).shuffle(order)
    return [[row_lengths[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]


def measure(epoch: list[list[int]]) -> dict:
    total = sum(len(b) * max(b) for b in epoch)
    useful = sum(sum(b) for b in epoch)
    return {"batches": len(epoch), "tokens": total / len(epoch), "useful": useful / len(epoch),
            "waste": 100 * (total - useful) / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("GT_FINETUNE_SHARED") or str(ROOT.parent / "shared"))
    parser.add_argument("--home", help="workspace to build in and reuse (default: a new temporary one)")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per batch (default 4)")
    parser.add_argument("--max-seq-len", type=int, default=512, help="dataset max_seq_len = packed row capacity (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    real = Path(args.shared) / "fixtures" / "real"
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gt-finetune-packing-"))

    corpus = build_corpus(CorpusSpec(inputs=(
        ("beads_jsonl", str(real / "carolina-futons" / "backup")),
        ("beads_jsonl", str(real / "immortan-town" / ".beads" / "backup")),
        ("transcripts", str(real / "claude-code-transcripts")))), home=home, quiet=True)
    dataset = build_dataset(DatasetSpec(base_model="smollm2-135m-instruct", max_seq_len=args.max_seq_len),
                            corpus_dir=corpus.path, home=home)
    lengths = [len(e["input_ids"]) for e in load_split(dataset.path, "train")]
    rows = [sum(lengths[i] for i in b) for b in best_fit(lengths, args.max_seq_len)]
    padded = measure(batches(lengths, args.batch_size, args.seed))
    packed = measure(batches(rows, args.batch_size, args.seed))

    print(f"dataset {dataset.path.name} in {home}: {len(lengths)} train examples, {sum(lengths):,} tokens "
          f"(mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}); max_seq_len {args.max_seq_len}, "
          f"batch size {args.batch_size}")
    print(f"packed into {len(rows)} rows, {sum(rows) / len(rows) / args.max_seq_len:.1%} full on average")
    print(f"{'':8}{'batches':>9}{'tokens/batch':>14}{'useful/batch':>14}{'waste':>8}")
    for name, m in (("padded", padded), ("packed", packed)):
        print(f"{name:8}{m['batches']:>9}{m['tokens']:>14.0f}{m['useful']:>14.0f}{m['waste']:>7.1f}%")
    print(f"padded needs {padded['batches'] / packed['batches']:.2f}x the batches and "
          f"{padded['batches'] * padded['tokens'] / (packed['batches'] * packed['tokens']):.2f}x the tokens")
    print(f"waste packed={packed['waste']:.1f}% padded={padded['waste']:.1f}%")

if __name__ == "__main__":
    main()
