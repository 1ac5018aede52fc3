"""Pick the SQLite engine for the embedded store: doltlite (Dolt commits) or plain sqlite3.

doltlite swaps the library under Python's `sqlite3`, which only works before `sqlite3` is
first imported (otherwise it re-executes the interpreter). So the choice is made once, when
this module is imported — before anything else loads sqlite3 — and the reason is kept for
the one line that names the backend.
"""
from __future__ import annotations

import os
import sys


# doltlite marks the environment as bootstrapped; child processes inherit the mark and then skip
# loading the library, so we take the mark back out once this process is set up.
_DOLTLITE_MARK = "_DOLTLITE_BOOTSTRAPPED"


def _choose() -> tuple[str, str]:
    if os.environ.get("GT_FINETUNE_SQLITE") == "plain":
        return "sqlite3", "GT_FINETUNE_SQLITE=plain"
    if "doltlite" in sys.modules:
        return "doltlite", "doltlite is loaded"
    if "sqlite3" in sys.modules or "_sqlite3" in sys.modules:
        return "sqlite3", "sqlite3 was loaded before doltlite could be"
    os.environ.pop(_DOLTLITE_MARK, None)
    try:
        import doltlite  # noqa: F401  (side effect: preloads libdoltlite under sqlite3)
    except ImportError:
        return "sqlite3", "doltlite is not installed"
    except Exception as exc:  # noqa: BLE001 - the optional engine failing must not stop the store
        return "sqlite3", f"doltlite failed to load ({type(exc).__name__})"
    finally:
        os.environ.pop(_DOLTLITE_MARK, None)
    return "doltlite", "doltlite is installed"


ENGINE, ENGINE_REASON = _choose()
