"""Trained tokens/s on the CPU: our trainer (packed rows) vs TRL's `SFTTrainer` (padded batches).

    .venv/bin/python benchmarks/throughput.py [--shared ../shared] [--home DIR] [--examples 48] [--batch-size 2]

Same model, data, machine and process for both: SmolLM2-135M-Instruct in float32 on the CPU, LoRA
r=8 alpha=16 dropout 0.05 on q/k/v/o_proj, AdamW (torch's, not fused; no weight decay), the same
learning rate and linear schedule, gradient clipping at 1.0, no gradient checkpointing, batch
`--batch-size` per step, no gradient accumulation, `--threads` torch threads. Both train one epoch
over the same examples: the first `--examples` of the dataset stage's `train.jsonl` of the fixture
corpus (max_seq_len 512; built like `benchmarks/packing.py`, in a temporary home unless `--home`
names one to reuse), on the same tokens: TRL gets `input_ids` and a `completion_mask` of our
trained labels, with `completion_only_loss=True`, so its labels equal ours. What differs is
batching: ours packs the examples best-fit into rows of 512 tokens (a batch is `--batch-size`
packed rows, so the epoch takes fewer steps); TRL pads `--batch-size` examples to the longest
(`packing=False`, `padding_free=False`). Each keeps its own loss path and attention: TRL 1.16 runs
its fused LM head, which projects only the positions that have a label, and masked SDPA over each
padded batch; ours projects the positions that have a label in some row and runs segment attention
(causal SDPA per packed example, `gt_finetune.train.attention`). Our per-example loss weights
(model-written text counts half) change the loss, not the work; TRL has none.

The first optimizer step of each run is warm-up and not timed; the rest of the epoch is, from the
end of the first step to the end of the last, data loading included for both (ours: `elapsed_s` of
its metrics rows; TRL: a callback's clock at `on_step_end`). Trained tokens are labels other than
-100 after the first position (what the loss sees), counted per batch of the timed steps; padding
is the share of fed positions that belong to no example. The trainers alternate for `--rounds`
rounds (ours, TRL, ours, TRL, ...); the summary is each column's median. The last line is
`ratio=<ours/TRL>` of trained tokens/s. The defaults take about 10 minutes on two shared cores;
one torch thread, because there two threads ran 1-4x slower (each waits on the other core).
"""
import argparse
import contextlib
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ["GT_FINETUNE_DEVICE"] = "cpu"  # our trainer on the CPU even where CUDA exists, as TRL's `use_cpu`

from gt_finetune.corpus import CorpusSpec, build_corpus  # noqa: E402
from gt_finetune.dataset import DatasetSpec, build_dataset, load_split  # noqa: E402
from gt_finetune.dataset.pack import pack_rows  # noqa: E402
from gt_finetune.models import resolve_model  # noqa: E402
from gt_finetune.train import recipe  # noqa: E402
from gt_finetune.workspace import read_jsonl, write_jsonl  # noqa: E402
from collate_probe import watch_collate  # noqa: E402  (benchmarks/, this script's folder)

IGNORE = -100
MAX_SEQ_LEN = 512
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj")}
LR_WARMUP = 2  # learning-rate warm-up steps, both trainers (not the untimed warm-up step)
WARMUP = 1  # optimizer steps not timed


class Batches:
    """Per batch, in the order they were made: trained tokens, fed positions, positions of examples."""

    def __init__(self):
        self.trained: list[int] = []
        self.fed: list[int] = []
        self.real: list[int] = []

    def add(self, input_ids, labels, real: int) -> None:
        self.trained.append(int((labels[:, 1:] != IGNORE).sum()))
        self.fed.append(input_ids.numel())
        self.real.append(real)

    def result(self, seconds: float, steps: int) -> dict:
        timed = slice(WARMUP, steps)  # batch i is step i + 1 (one micro-batch per step)
        trained, fed, real = sum(self.trained[timed]), sum(self.fed[timed]), sum(self.real[timed])
        return {"steps": steps - WARMUP, "trained": trained, "seconds": seconds, "tok_s": trained / seconds,
                "padding": 1 - real / fed, "fed": fed}


def run_ours(model_dir: Path, dataset_dir: Path, examples: list[dict], args) -> dict:
    """One epoch over `examples`: a copy of the dataset folder that holds only them."""
    steps = math.ceil(len(pack_rows(examples, MAX_SEQ_LEN)) / args.batch_size)
    spec = recipe.TrainSpec(
        base_model=str(model_dir), max_steps=steps, learning_rate=args.lr,
        batch_size=args.batch_size, grad_accum=1, warmup_steps=LR_WARMUP, seed=args.seed,
        checkpoint_every=10 ** 6, checkpoint_minutes=10.0 ** 6, packing=True, method="lora", dtype="float32",
        gradient_checkpointing=False, lora=recipe.LoraSpec(**LORA))
    batches = Batches()
    count = watch_collate(lambda b, rows: batches.add(b["input_ids"], b["labels"],
                                                      sum(len(r["input_ids"]) for r in rows)))
    with tempfile.TemporaryDirectory(prefix="gt-finetune-throughput-") as home, count:
        subset = Path(home) / "dataset"
        subset.mkdir()
        shutil.copy(dataset_dir / "manifest.json", subset / "manifest.json")
        write_jsonl(subset / "train.jsonl", examples)
        run = recipe.train(spec, dataset_dir=subset, home=Path(home))
        rows = [r for r in read_jsonl(run.path / "metrics.jsonl") if r.get("kind") == "step"]
    seconds = rows[-1]["elapsed_s"] - rows[WARMUP - 1]["elapsed_s"]
    result = batches.result(seconds, steps)
    logged = sum(r["trained_tokens"] for r in rows[WARMUP:])
    if logged != result["trained"]:
        raise RuntimeError(f"our metrics say {logged} trained tokens, the batches {result['trained']}")
    return result


def run_trl(model_dir: Path, examples: list[dict], args) -> dict:
    """One epoch over `examples`, shuffled by TRL's own sampler."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter())

    data = Dataset.from_dict({"input_ids": [e["input_ids"] for e in examples],
                              "completion_mask": [[int(x != IGNORE) for x in e["labels"]] for e in examples]})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    peft = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules=list(LORA["target_modules"]), task_type="CAUSAL_LM")
    batches, clock = Batches(), Clock()
    steps = -(-len(examples) // args.batch_size)
    with tempfile.TemporaryDirectory(prefix="gt-finetune-throughput-trl-") as out:
        config = SFTConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1, learning_rate=args.lr, lr_scheduler_type="linear",
            warmup_steps=LR_WARMUP, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", seed=args.seed,
            use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
            max_length=MAX_SEQ_LEN, packing=False, padding_free=False, completion_only_loss=True,
            dataloader_num_workers=0, report_to=[], save_strategy="no", eval_strategy="no",
            logging_strategy="no", disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft, callbacks=[clock])
        made = trainer.data_collator

        def collate(features):
            batch = made(features)
            batches.add(batch["input_ids"], batch["labels"], int(batch["attention_mask"].sum()))
            return batch

        trainer.data_collator = collate  # TRL's own collator, counted; the data loader is built in `train()`
        with contextlib.redirect_stdout(sys.stderr):  # `Trainer` prints its end-of-run summary to stdout
            trainer.train()
    seconds = clock.ends[-1] - clock.ends[WARMUP - 1]
    return batches.result(seconds, steps)


def dataset_path(args) -> Path:
    real = Path(args.shared) / "fixtures" / "real"
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gt-finetune-throughput-home-"))
    corpus = build_corpus(CorpusSpec(inputs=(
        ("beads_jsonl", str(real / "carolina-futons" / "backup")),
        ("beads_jsonl", str(real / "immortan-town" / ".beads" / "backup")),
        ("transcripts", str(real / "claude-code-transcripts")))), home=home, quiet=True)
    return build_dataset(DatasetSpec(base_model="smollm2-135m-instruct", max_seq_len=MAX_SEQ_LEN),
                         corpus_dir=corpus.path, home=home).path


def line(name: str, r: dict) -> str:
    return (f"{name:6}{r['steps']:>7.0f}{r['trained']:>16,.0f}{r['seconds']:>10.1f}{r['tok_s']:>15.1f}"
            f"{r['padding']:>9.1%}{r['fed']:>12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("GT_FINETUNE_SHARED") or str(ROOT.parent / "shared"))
    parser.add_argument("--home", help="workspace to build in and reuse (default: a new temporary one)")
    parser.add_argument("--batch-size", type=int, default=2,
                        help="per step: packed rows (ours) or padded examples (TRL) (default 2)")
    parser.add_argument("--examples", type=int, default=48,
                        help="train examples both trainers train on, one epoch (default 48)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each trainer, alternating; the summary is their median (default 2)")
    parser.add_argument("--lr", type=float, default=3e-4, help="learning rate, both (default 3e-4)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, both (default 1: on a shared 2-core box 2 threads ran 1-4x slower)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.examples < 4 * args.batch_size or args.rounds < 1:
        parser.error("--examples must be at least 4 batches and --rounds at least 1")
    import torch

    torch.set_num_threads(args.threads)
    dataset_dir = dataset_path(args)
    model_dir = resolve_model("smollm2-135m-instruct", home=dataset_dir.parents[1])
    examples = load_split(dataset_dir, "train")[:args.examples]
    print(f"dataset {dataset_dir.name}: the first {len(examples)} train examples, "
          f"{sum(len(e['input_ids']) for e in examples):,} tokens; model {model_dir}")
    print(f"float32 on the CPU, torch threads {torch.get_num_threads()}; LoRA r={LORA['r']} alpha={LORA['alpha']} "
          f"on {','.join(LORA['target_modules'])}; lr {args.lr}; batch {args.batch_size}; one epoch, the "
          f"first step untimed; TRL {__import__('trl').__version__} labels: `completion_mask` column with "
          f"`completion_only_loss=True`, padded (`packing=False`, `padding_free=False`)")
    runs: dict[str, list[dict]] = {"ours": [], "trl": []}
    for n in range(1, args.rounds + 1):
        runs["ours"].append(run_ours(model_dir, dataset_dir, examples, args))
        runs["trl"].append(run_trl(model_dir, examples, args))
        if torch.get_num_threads() != args.threads:
            raise RuntimeError(f"a trainer changed torch's threads to {torch.get_num_threads()}")
        for name in runs:
            r = runs[name][-1]
            print(f"round {n} {name}: {r['trained']:,} trained tokens in {r['seconds']:.1f} s = "
                  f"{r['tok_s']:.1f}/s, padding {r['padding']:.1%}", flush=True)
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    print(f"{'':6}{'steps':>7}{'trained tokens':>16}{'seconds':>10}{'trained tok/s':>15}{'padding':>9}{'fed':>12}"
          f"   (median of {args.rounds} rounds)")
    print(line("ours", median["ours"]))
    print(line("trl", median["trl"]))
    print(f"ratio={median['ours']['tok_s'] / median['trl']['tok_s']:.2f}")


if __name__ == "__main__":
    main()
