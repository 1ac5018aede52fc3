"""Train stage: the recipe (LoRA, QLoRA, full), its checkpoints, and the supervisor that runs it
in a child process with progress, pause, cancel and a memory watchdog."""
from .progress import TrainProgress
from .recipe import LoraSpec, TrainManifest, TrainSpec, train
from .supervise import TrainingStopped, job_control, run_training, watchdog_for

__all__ = ["LoraSpec", "TrainManifest", "TrainProgress", "TrainSpec", "TrainingStopped", "job_control",
           "run_training", "train", "watchdog_for"]
