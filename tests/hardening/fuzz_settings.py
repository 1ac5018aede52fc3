"""Hypothesis settings for the fuzz tests: bounded for the default run, reproducible, no database.

For a deeper, randomised hunt (the default run always tries the same examples):

    GT_FINETUNE_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/hardening -k fuzz
"""
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

DEEP = int(os.environ.get("GT_FINETUNE_FUZZ_EXAMPLES") or 0)
# Hypothesis caches (unicode tables, constants of the code under test) even without a database, in
# `.hypothesis/` of the cwd: keep them out of the repository.
set_hypothesis_home_dir(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
                        or Path(tempfile.gettempdir()) / "gt-finetune-hypothesis")


def fuzz(max_examples: int) -> settings:
    """`max_examples` derandomised (the same examples on every CI run), or DEEP random ones."""
    return settings(max_examples=DEEP or max_examples, deadline=None, derandomize=not DEEP, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
