"""Planner accuracy: estimated vs measured peak RSS of the real trainer on the CPU.

    .venv/bin/python benchmarks/planner_accuracy.py [--home DIR] [--steps 3] [--smollm2-batches 1,4]
                                                    [--checkpointing] [--skip-smollm2]

Builds the sample town's corpus and, per model, a dataset of rows of 512 tokens (packed); then per
case runs the planner (`gt_finetune.train.plan.plan`) with its calibration: the estimate, then the
real trainer for `--steps` steps in a subprocess, whose peak RSS is the measurement. Cases: the
tiny random Llama (2 layers × 64) and a wider one (4 × 256) at 2 and 8 rows, SmolLM2-135M at 1
and 4 rows (8 rows would need about 15 GB); `--checkpointing` adds each case with gradient
checkpointing. One line per case, `max_error=<percent>%` last.
About 5 minutes on 2 idle cores; `--home` keeps the SmolLM2 conversion, models and datasets for
the next run. The budget is set to 1000 GB so that every case calibrates.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus, town_inputs  # noqa: E402
from gt_finetune.dataset import DatasetSpec, build_dataset  # noqa: E402
from gt_finetune.models import resolve_model  # noqa: E402
from gt_finetune.town import load_town  # noqa: E402
from gt_finetune.train import TrainSpec  # noqa: E402
from gt_finetune.train.plan import BUDGET_ENV, plan  # noqa: E402

SEQ = 512


def tiny(home: Path, layers: int, hidden: int) -> Path:
    from tiny_models import build_tiny  # noqa: PLC0415

    out = home / "bench-models" / f"tiny-{layers}x{hidden}"
    if not (out / "config.json").is_file():
        build_tiny(out, "chatml", layers=layers, hidden=hidden)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="workspace to build in and reuse (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=3, help="trainer steps per measurement (default 3)")
    parser.add_argument("--tiny-batches", default="2,8", help="rows per micro-batch for the tiny models (default 2,8)")
    parser.add_argument("--smollm2-batches", default="1,4", help="rows per micro-batch for SmolLM2 (default 1,4)")
    parser.add_argument("--skip-smollm2", action="store_true", help="only the tiny models")
    parser.add_argument("--checkpointing", action="store_true",
                        help="also measure each case with gradient checkpointing (doubles the time)")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="planner-bench-")).resolve()
    os.environ["GT_FINETUNE_HOME"] = str(home)
    os.environ[BUDGET_ENV] = "1000"
    corpus = build_corpus(CorpusSpec(inputs=town_inputs(SAMPLE_TOWN)), home=home, town=load_town(SAMPLE_TOWN))
    models = [("tiny-2x64", tiny(home, 2, 64), args.tiny_batches), ("tiny-4x256", tiny(home, 4, 256), args.tiny_batches)]
    if not args.skip_smollm2:
        models.append(("smollm2-135m", resolve_model("smollm2-135m-instruct", home=home), args.smollm2_batches))
    print(f"{'case':<20} {'estimate':>10} {'measured':>10} {'error':>8} {'s/step':>8}")
    errors = []
    for name, model_dir, batches in models:
        dataset = build_dataset(DatasetSpec(base_model=str(model_dir), max_seq_len=SEQ), corpus_dir=corpus.path,
                                home=home).path
        cases = [(int(b), gc) for b in batches.split(",") for gc in ((False, True) if args.checkpointing else (False,))]
        for batch, gc in cases:
            start = time.monotonic()
            spec = TrainSpec(base_model=str(model_dir), batch_size=batch, max_steps=args.steps, gradient_checkpointing=gc)
            p = plan(spec, dataset_dir=dataset, home=home, calibrate=True, device="cpu", calibration_steps=args.steps)
            measured = p.calibration.peak_bytes
            error = (p.estimate.total - measured) / measured
            errors.append(abs(error))
            case = f"{name} b={batch}" + (" gc" if gc else "")
            print(f"{case:<20} {p.estimate.total / 1e9:>8.2f}GB {measured / 1e9:>8.2f}GB "
                  f"{error:>+8.1%} {p.calibration.seconds_per_step:>8.2f}   ({time.monotonic() - start:.0f} s)",
                  flush=True)
    print(f"max_error={max(errors) * 100:.1f}%")


if __name__ == "__main__":
    main()
