"""Eval stage: GT-Bench (or a promptfoo suite), held-out turns and loss, the forgetting probe and
the review gate; base, base + role context, tuned and tuned + role context side by side."""
from .evaluate import VARIANTS, EvalManifest, EvalSpec, evaluate
from .gate import Gate

__all__ = ["VARIANTS", "EvalManifest", "EvalSpec", "Gate", "evaluate"]
