"""A minimal town on disk for the fake `bd`/`gt`: hq beads at the root, the `ft` rig's beads in
`finetune/mayor/rig`, routes between them."""
from __future__ import annotations

from pathlib import Path


def make_town(root: Path) -> tuple[Path, Path]:
    """Returns (town root, ft rig directory)."""
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"type":"town","version":2,"name":"demo"}')
    (root / "mayor" / "rigs.json").write_text('{"version":1,"rigs":{"finetune":{"beads":{"prefix":"ft"}}}}')
    (root / ".beads").mkdir()
    (root / ".beads" / "config.yaml").write_text("issue-prefix: hq\n")
    (root / ".beads" / "routes.jsonl").write_text('{"prefix":"hq-","path":"."}\n'
                                                  '{"prefix":"ft-","path":"finetune/mayor/rig"}\n')
    rig = root / "finetune" / "mayor" / "rig"
    (rig / ".beads").mkdir(parents=True)
    (rig / ".beads" / "config.yaml").write_text("issue-prefix: ft\n")
    return root, rig
