"""Dataset stage: render records with the model's chat template, assistant-only labels, split."""
from .build import DatasetManifest, DatasetSpec, build_dataset, load_split

__all__ = ["DatasetManifest", "DatasetSpec", "build_dataset", "load_split"]
