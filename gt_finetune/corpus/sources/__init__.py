"""Corpus sources: one module per kind of town history, each with one `harvest(location, ctx)` entry."""
