"""Corpus stage: a town's history → canonical chat records with provenance."""
from .build import CorpusManifest, CorpusSpec, build_corpus, load_records

__all__ = ["CorpusManifest", "CorpusSpec", "build_corpus", "load_records"]
