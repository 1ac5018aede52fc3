"""Corpus stage: a town's history → canonical chat records with provenance, versioned."""
from .harvest import (SAMPLE_TOWN, SOURCES, CorpusManifest, CorpusSpec, build_corpus, find_corpus, list_corpora,
                      load_records, town_inputs)

__all__ = ["SAMPLE_TOWN", "SOURCES", "town_inputs", "CorpusManifest", "CorpusSpec", "build_corpus", "find_corpus", "list_corpora", "load_records"]
