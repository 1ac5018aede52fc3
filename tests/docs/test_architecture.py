"""docs/architecture.md names the package's real folders, in the order data flows through them."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def diagram() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 1, "architecture.md has one diagram"
    return blocks[0]


def test_the_diagram_names_real_package_folders_in_data_flow_order():
    stages = re.findall(r"^ {2}([a-z]+/) ", diagram(), re.M)
    assert stages == ["corpus/", "dataset/", "train/", "eval/", "export/", "deploy/"]
    for folder in stages + ["town/", "beads/"]:
        assert (ROOT / "gt_finetune" / folder).is_dir(), folder


def test_every_folder_in_the_table_exists():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for folder in re.findall(r"^\| `([a-z_]+)/` \|", text, re.M):
        assert (ROOT / "gt_finetune" / folder).is_dir(), folder
