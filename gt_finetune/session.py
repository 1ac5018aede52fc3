"""One command's view of the world: the town (if any), the workspace, the bead store, the notifier.

The backend is chosen automatically and said once on stderr: `bd` in the `ft` rig of the
town we are in, or the embedded SQLite store in the workspace when there is no town.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .beads import BdStore, BeadStore, EmbeddedStore
from .town import Town, find_town
from .town.notify import Notifier, Recipients
from .workspace import resolve_home

JOB_PREFIX = "ft"


@dataclass
class Session:
    town: Town | None
    home: Path
    store: BeadStore
    notifier: Notifier

    def formula_search_path(self) -> list[Path]:
        """gt's lookup order (gastown.md §1.4), then the formulas shipped with gt-finetune."""
        paths = [Path.cwd() / ".beads" / "formulas"]
        if self.town:
            paths.append(self.town.root / ".beads" / "formulas")
        paths.append(Path.home() / ".beads" / "formulas")
        paths.append(Path(__file__).resolve().parent / "data" / "formulas")
        return list(dict.fromkeys(paths))


def open_session(*, home: str | None = None, town: str | None = None, quiet: bool = False,
                 recipients: Recipients | None = None) -> Session:
    found = find_town(explicit=town)
    workspace = resolve_home(home, found.root if found else None)
    beads_dir = os.environ.get("BEADS_DIR")
    if found is not None:
        store: BeadStore = (BdStore(beads_dir=Path(beads_dir)) if beads_dir
                            else BdStore(workdir=found.workdir_for(f"{JOB_PREFIX}-")))
        line = f"beads: town `{found.name}` at {found.root}, {store.location}"
    else:
        store = EmbeddedStore(workspace / "beads.db", prefix=JOB_PREFIX)
        line = (f"beads: embedded store at {store.location} "
                f"(no Gas Town above {Path.cwd()}; set GT_TOWN_ROOT or pass --town to use one)")
    if not quiet:
        print(line, file=sys.stderr)
    recipients = recipients or Recipients(review=(f"{ft_rig_name(found)}/witness",))
    return Session(town=found, home=workspace, store=store,
                   notifier=Notifier(town=found, home=workspace, recipients=recipients))


def ft_rig_name(town: Town | None) -> str:
    """The rig that owns `ft-` beads; its witness reviews evals."""
    rig = town.rig_for_prefix(JOB_PREFIX) if town else None
    return rig.name if rig else "finetune"
