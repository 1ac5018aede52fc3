"""Job beads: one store interface (`bd` in a town, SQLite without one) and the job lifecycle."""
from . import engine  # noqa: F401  (first: chooses doltlite before sqlite3 loads)
from .bd import BdStore
from .embedded import EmbeddedStore
from .store import Bead, BeadStore, Comment, Dependency, HistoryEntry

__all__ = ["Bead", "BeadStore", "BdStore", "Comment", "Dependency", "EmbeddedStore", "HistoryEntry"]
