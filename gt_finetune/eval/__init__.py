"""Eval stage: held-out loss and sample answers, base vs tuned."""
from .heldout import EvalManifest, EvalSpec, evaluate

__all__ = ["EvalManifest", "EvalSpec", "evaluate"]
