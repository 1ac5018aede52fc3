"""LoRA on one CUDA GPU in bfloat16: our trainer's trained tokens/s, peak GPU memory and MFU.

    .venv/bin/python benchmarks/gpu_throughput.py [--model DIR] [--home DIR] [--steps 30] [--batch-size 8]

Where CUDA is not available it prints one line saying why it skipped, and exits 0. Otherwise it
builds the fixture corpus's dataset (as `benchmarks/packing.py`) with max_seq_len 1024 for
`--model` (a local Hugging Face folder; default the SmolLM2-135M-Instruct alias), in a temporary
home unless `--home` names one to reuse, and runs our trainer in this process: LoRA with
`TrainSpec`'s defaults (r=8 on q/k/v/o_proj), `dtype="bfloat16"`, packing, `--batch-size` packed
rows of up to 1024 tokens per step, `--warmup` + `--steps` optimizer steps. Only the last `--steps`
are timed (`elapsed_s` of its metrics rows; each step ends on a host sync, so the time is the GPU's).

MFU convention: the standard 6·N·T, with N every parameter of the model (the frozen base, tied
weights once, plus the adapter) and T every position fed to it (padding included; packing leaves
a few percent), per second, over the device's dense bf16 peak; attention's own FLOPs are left out.
That counts full fine-tuning's work: with the base frozen, LoRA skips the base's weight gradients
(≈ 2·N·T of the 6), so the arithmetic actually done is ≈ 4·N·T and the hardware's busy share is
about 2/3 of the printed figure. The peak comes from a table by device name, or `--peak-tflops`.
The last line is `mfu=<percent>%`.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_finetune.corpus import CorpusSpec, build_corpus  # noqa: E402
from gt_finetune.dataset import DatasetSpec, build_dataset, load_split  # noqa: E402
from gt_finetune.models import DEFAULT_MODEL, resolve_model  # noqa: E402
from gt_finetune.train import recipe  # noqa: E402
from gt_finetune.workspace import read_jsonl  # noqa: E402
from collate_probe import watch_collate  # noqa: E402  (benchmarks/, this script's folder)

MAX_SEQ_LEN = 1024
# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s; the first name contained in the device's wins.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989), ("H200", 989), ("A100", 312),
                    ("L40S", 362), ("L4", 121), ("RTX 4090", 165))


def skip_reason() -> str | None:
    import torch

    if os.environ.get("GT_FINETUNE_DEVICE", "") == "cpu":
        return "GT_FINETUNE_DEVICE=cpu keeps the trainer on the CPU"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return f"no CUDA device is visible (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return None


def peak_tflops(device_name: str) -> float | None:
    for name, tflops in PEAK_BF16_TFLOPS:
        if name in device_name:
            return float(tflops)
    return None


def parameter_count(model_dir: Path, lora: recipe.LoraSpec) -> tuple[int, int]:
    """(base, adapter) parameters, from the config alone (a model on the meta device holds no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    base = sum(p.numel() for p in model.parameters())  # `parameters()` yields tied weights once
    adapter = sum(lora.r * (m.in_features + m.out_features) for name, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in lora.target_modules)
    return base, adapter


def dataset_path(model: str, shared: Path, home: Path) -> Path:
    real = shared / "fixtures" / "real"
    corpus = build_corpus(CorpusSpec(inputs=(
        ("beads_jsonl", str(real / "carolina-futons" / "backup")),
        ("beads_jsonl", str(real / "immortan-town" / ".beads" / "backup")),
        ("transcripts", str(real / "claude-code-transcripts")))), home=home, quiet=True)
    return build_dataset(DatasetSpec(base_model=model, max_seq_len=MAX_SEQ_LEN), corpus_dir=corpus.path,
                         home=home).path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"local Hugging Face model folder, or an alias (default {DEFAULT_MODEL})")
    parser.add_argument("--shared", default=os.environ.get("GT_FINETUNE_SHARED") or str(ROOT.parent / "shared"))
    parser.add_argument("--home", help="workspace to build in and reuse (default: a new temporary one)")
    parser.add_argument("--batch-size", type=int, default=8, help="packed rows per step (default 8)")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps before them (default 3)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's dense bf16 peak in TFLOP/s (default: from the table by device name)")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error("--warmup, --steps and --batch-size must be at least 1")
    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}; this benchmark needs a CUDA GPU")
        return
    import torch

    device_name = torch.cuda.get_device_name()
    peak = args.peak_tflops or peak_tflops(device_name)
    if peak is None:
        sys.exit(f"error: no dense bf16 peak known for `{device_name}`\n\n"
                 f"hint: pass `--peak-tflops <TFLOP/s>` from the device's datasheet")
    source = "--peak-tflops" if args.peak_tflops else "table"
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gt-finetune-gpu-throughput-"))
    model_dir = resolve_model(args.model, home=home)
    dataset_dir = dataset_path(str(model_dir), Path(args.shared), home)
    examples = load_split(dataset_dir, "train")
    spec = recipe.TrainSpec(base_model=str(model_dir), max_steps=args.warmup + args.steps,
                            batch_size=args.batch_size, grad_accum=1, checkpoint_every=10 ** 6,
                            checkpoint_minutes=10.0 ** 6, packing=True, method="lora", dtype="bfloat16")
    base, adapter = parameter_count(model_dir, spec.lora)
    print(f"device {device_name}: {peak:g} dense bf16 TFLOP/s ({source}); model {model_dir}: "
          f"{base / 1e6:.1f}M parameters + {adapter / 1e6:.2f}M LoRA")
    print(f"dataset {dataset_dir.name}: {len(examples)} train examples packed into rows of {MAX_SEQ_LEN}; "
          f"batch {args.batch_size} rows; {args.steps} timed steps after {args.warmup} warm-up")

    fed: list[tuple[int, int]] = []
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="gt-finetune-gpu-run-") as run_home, watch_collate(
            lambda b, rows: fed.append((b["input_ids"].numel(), sum(len(r["input_ids"]) for r in rows)))):
        run = recipe.train(spec, dataset_dir=dataset_dir, home=Path(run_home))
        steps = [r for r in read_jsonl(run.path / "metrics.jsonl") if r.get("kind") == "step"]
    peak_memory = torch.cuda.max_memory_allocated()

    timed = steps[args.warmup:]
    seconds = timed[-1]["elapsed_s"] - steps[args.warmup - 1]["elapsed_s"]
    trained = sum(r["trained_tokens"] for r in timed)
    positions = sum(n for n, _ in fed[args.warmup:args.warmup + args.steps])
    real = sum(k for _, k in fed[args.warmup:args.warmup + args.steps])
    mfu = 6 * (base + adapter) * positions / seconds / (peak * 1e12)
    print(f"trained tokens/s {trained / seconds:,.0f} ({trained:,} in {seconds:.2f} s); fed tokens/s "
          f"{positions / seconds:,.0f}, padding {1 - real / positions:.1%}")
    print(f"peak GPU memory {peak_memory / 2 ** 30:.2f} GiB (torch.cuda.max_memory_allocated)")
    print(f"mfu={100 * mfu:.1f}%")


if __name__ == "__main__":
    main()
