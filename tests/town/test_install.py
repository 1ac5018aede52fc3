"""`gt-finetune install` against a copy of a real town, with the fake `bd`: idempotent, never clobbers."""
import json
import shutil

import pytest

from gt_finetune.cli import main
from gt_finetune.town import load_town
from gt_finetune.town.install import install


@pytest.fixture
def town(tmp_path, shared, fake_bin):
    root = tmp_path / "immortan"
    shutil.copytree(shared / "fixtures" / "real" / "immortan-town", root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def config(beads_dir):
    return json.loads((beads_dir / "fake-bd.json").read_text())["config"]


def actions(changes):
    return {c.what: c.action for c in changes}


def test_first_install_adds_formula_and_merges_status_keeping_valid_entries(town):
    changes = install(load_town(town))
    got = actions(changes)
    assert got[".beads/formulas/finetune-lora.formula.toml"] == "added"
    assert got["status.custom"] == "merged"
    assert got["directives/witness.md"] == "skipped"  # the town has no `ft` rig yet
    assert got["plugins/finetune-harvest/plugin.md"] == "added"
    run_sh = town / "plugins" / "finetune-harvest" / "run.sh"
    assert run_sh.stat().st_mode & 0o111 and 'gt-finetune corpus build' in run_sh.read_text()
    assert (town / ".beads" / "formulas" / "finetune-lora.formula.toml").is_file()
    # the real backup's value holds junk bd would reject; it is dropped and said so, the rest kept
    assert config(town / ".beads")["status.custom"] == "staged_ready,staged_warnings,review:wip"
    status = next(c for c in changes if c.what == "status.custom")
    assert "'status.custom (not set)'" in status.detail
    # the operator's six provisioned formulas are untouched
    assert len(list((town / ".beads" / "formulas").glob("*.formula.toml"))) == 7


def test_second_install_changes_nothing(town):
    install(load_town(town))
    again = actions(install(load_town(town)))
    assert again[".beads/formulas/finetune-lora.formula.toml"] == "unchanged"
    assert again["status.custom"] == "unchanged"


def test_operator_edits_are_kept(town):
    install(load_town(town))
    target = town / ".beads" / "formulas" / "finetune-lora.formula.toml"
    target.write_text(target.read_text().replace('default = "30"', 'default = "500"'))
    got = actions(install(load_town(town)))
    assert got[".beads/formulas/finetune-lora.formula.toml"] == "kept-edited"
    assert 'default = "500"' in target.read_text()


def test_with_an_ft_rig_status_goes_to_the_rig_db_and_the_directive_is_written(town):
    rigs = json.loads((town / "mayor" / "rigs.json").read_text())
    rigs["rigs"]["finetune"] = {"git_url": "", "beads": {"repo": "", "prefix": "ft"}}
    (town / "mayor" / "rigs.json").write_text(json.dumps(rigs))
    (town / ".beads" / "routes.jsonl").write_text('{"prefix":"hq-","path":"."}\n'
                                                  '{"prefix":"ft-","path":"finetune/mayor/rig"}\n')
    rig_beads = town / "finetune" / "mayor" / "rig" / ".beads"
    rig_beads.mkdir(parents=True)
    got = actions(install(load_town(town)))
    assert got["finetune/directives/witness.md"] == "added"
    assert "gt-finetune review <ft-id> approve" in (town / "finetune" / "directives" / "witness.md").read_text()
    assert config(rig_beads)["status.custom"] == "review:wip"
    call = json.loads((rig_beads / "fake-bd.log").read_text().splitlines()[-1])
    assert call["cwd"] == str(rig_beads.parent)


def test_dry_run_writes_nothing(town, capsys):
    code = main(["install", "--town", str(town), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "would-add" in err and "would-merge" in err
    assert not (town / ".beads" / "formulas" / "finetune-lora.formula.toml").exists()
    assert "would change 6 of 7 items" in out  # formula, status, 2 plugins × 2 files; the directive is skipped


def test_install_outside_a_town_says_what_to_do(capsys):
    code = main(["install"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "error: no Gas Town found above" in err and "hint: pass `--town ~/gt`" in err
