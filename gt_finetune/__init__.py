"""gt-finetune: fine-tune a local model on a Gas Town's own history, one `ft-` bead per job."""
# First, before any module loads sqlite3: the embedded bead store's engine (doltlite) must be
# chosen while it still can be (see beads/engine.py).
from .beads import engine as _engine  # noqa: F401

__version__ = "0.1.0"

__all__ = ["__version__"]
