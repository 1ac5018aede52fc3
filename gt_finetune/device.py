"""Where the model runs, chosen once and said with its reason (never a quiet fallback)."""
from __future__ import annotations

import os
import sys


def pick_device() -> str:
    """`$GT_FINETUNE_DEVICE` if set, else the first CUDA device when there is one, else the CPU."""
    import torch

    explicit = os.environ.get("GT_FINETUNE_DEVICE")
    if explicit:
        device, reason = explicit, "GT_FINETUNE_DEVICE"
    elif torch.cuda.is_available():
        device, reason = "cuda", f"CUDA is available ({torch.cuda.get_device_name(0)})"
    else:
        device, reason = "cpu", f"no CUDA device; {torch.get_num_threads()} CPU threads"
    print(f"  device: {device} ({reason})", file=sys.stderr)
    return device
