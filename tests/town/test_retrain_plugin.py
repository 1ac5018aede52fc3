"""The finetune-retrain plugin as a dog runs it: `bash run.sh` in its installed folder of a town."""
import os
import subprocess
import sys
from pathlib import Path

from gt_finetune.town import load_town
from gt_finetune.town.install import install

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_town import make_town  # noqa: E402


def test_plugin_is_installed_cooldown_gated_and_says_why_it_did_not_retrain(tmp_path, fake_bin):
    root, _ = make_town(tmp_path / "town")
    changes = {c.what: c.action for c in install(load_town(root))}
    assert changes["plugins/finetune-retrain/plugin.md"] == "added"
    folder = root / "plugins" / "finetune-retrain"
    header = (folder / "plugin.md").read_text().split("+++")[1]
    assert '[gate]\ntype = "cooldown"' in header and "gt-finetune retrain" in (folder / "run.sh").read_text()
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "GT_TOWN_ROOT": str(root), "PATH": f"{fake_bin}{os.pathsep}{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    env.pop("GT_FINETUNE_HOME", None)  # the town's own workspace, as in a real town
    proc = subprocess.run(["bash", "run.sh"], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("no retrain: no approved or deployed model yet")
    log = (root / ".beads" / "fake-bd.log").read_text()
    assert "plugin:finetune-retrain" in log and "result:success" in log
