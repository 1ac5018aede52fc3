"""Train stage: the LoRA recipe and its checkpoints."""
from .lora import LoraSpec, TrainManifest, TrainSpec, train

__all__ = ["LoraSpec", "TrainManifest", "TrainSpec", "train"]
