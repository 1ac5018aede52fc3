"""Follow-ups to issue 15 in the corpus harvest: what the first round of fixes left open.

- `corpus forget` survives a damaged `.state` file (item 15) as `corpus build` does.
- An input location the system cannot use (a name too long, a file where a folder should be, a
  symlink loop) is one `error:` line naming the input and why, from `corpus build` and `plan`.
- Input locations are redacted wherever the harvest keeps or prints them (item 3): a town's rig
  folder named like a token reaches `<town>/<rig>/directives`, and so the manifest's `spec`, `.state`
  and `corpus show/list --json` — while the incremental harvest still finds its state next time.
- A formula is checked on the bytes the harvest read safely, never by opening the path again: a
  file swapped after the read cannot get an invalid formula taught (item 2).
"""
import json
import random
import shutil
import string
from pathlib import Path

import pytest

from gt_finetune import formula as formula_mod
from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus
from gt_finetune.corpus.records import Rejected
from gt_finetune.corpus.sources import context, formulas
from gt_finetune.corpus.sources.context import HarvestContext

REASON = "Pinned the toolchain version and reran the gate twice."


def backup(folder: Path) -> Path:
    shutil.copytree(SAMPLE_TOWN / ".beads" / "backup", folder)
    return folder


def errors_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_forget_skips_a_damaged_state_file_with_a_warning(tmp_path, isolated, capsys):
    folder = backup(tmp_path / "backup")
    build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(folder)),)), home=isolated, quiet=True)
    [state] = (isolated / "corpus" / ".state").glob("*.json")
    good = json.loads(state.read_text())
    (state.parent / "0damaged.json").write_text('{"sources": {"beads_jsonl:/x": {"fi')  # a write cut short
    (state.parent / "1garbage.json").write_bytes(b"\xff\xfe not json at all")
    capsys.readouterr()
    assert main(["corpus", "forget", "--actor", "mayor/", "--yes"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "Traceback" not in err and "0damaged.json" in err and "1garbage.json" in err
    assert (state.parent / "0damaged.json").read_text().endswith('{"fi')  # skipped, not rewritten
    repointed = json.loads(state.read_text())
    assert repointed["latest"] != good["latest"] and (isolated / "corpus" / repointed["latest"]).is_dir()


def unusable(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Input locations no system call can use, and what the error must say of each."""
    (tmp_path / "file").write_text("a regular file\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return {"too long": (f"{tmp_path}/{'a' * 300}", "the name is too long"),
            "under a file": (f"{tmp_path}/file/backup", "a part of it is a file, not a folder"),
            "a loop": (f"{tmp_path}/loop", "symlink loop")}


@pytest.mark.parametrize("case", ["too long", "under a file", "a loop"])
@pytest.mark.parametrize("kind", ["beads_jsonl", "transcripts", "events", "formulas", "role_context"])
def test_an_unusable_input_location_is_one_error_naming_the_input(tmp_path, capsys, kind, case):
    location, why = unusable(tmp_path)[case]
    code = main(["corpus", "build", f"--{kind.replace('_', '-')}", location])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    [line] = errors_of(err)
    assert f"`{kind}:" in line and why in line and len(line) < 600, line  # the location shown, shortened


def test_an_unusable_location_in_a_plan_var_is_one_error_naming_the_input(tmp_path, capsys):
    location, why = unusable(tmp_path)["too long"]
    code = main(["plan", "--var", f"source=beads_jsonl:{location}"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    [line] = errors_of(err)
    assert "`beads_jsonl:" in line and why in line and "a" * 200 not in line, line


def token(seed: int) -> str:
    rng = random.Random(seed)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


def test_input_locations_are_redacted_wherever_they_are_kept_or_printed(tmp_path, isolated, capsys):
    secret = token(3)
    town = tmp_path / "town"
    shutil.copytree(SAMPLE_TOWN, town)
    with open(town / ".beads" / "routes.jsonl", "a") as f:  # where the job beads would live (never used here)
        f.write('{"prefix":"ft-","path":"finetune/mayor/rig"}\n')
    (town / "finetune" / "mayor" / "rig").mkdir(parents=True)
    directives = town / secret / "directives"  # an agent named a rig folder like a token
    directives.mkdir(parents=True)
    (directives / "witness.md").write_text("# Witness\n\nPatrol the polecats every ten minutes and nudge any "
                                           "that stalled; escalate to the mayor after two nudges.\n")
    state_dir = isolated / "corpus" / ".state"
    state_dir.mkdir(parents=True)  # what a build before locations were redacted left: removed by the next
    (state_dir / "0ld.json").write_text(json.dumps({"sources": {f"role_context:{directives}": {}}, "seen": [],
                                                    "latest": ""}))
    outputs = []
    for argv in (["corpus", "build", "--scope", "all"], ["corpus", "list", "--json"], ["corpus", "show", "corpus-"],
                 ["corpus", "show", "corpus-", "--json"]):
        assert main([*argv, "--town", str(town)]) == 0, capsys.readouterr().err
        outputs.append(capsys.readouterr())
    manifest = json.loads(next(isolated.glob("corpus/corpus-*/manifest.json")).read_text())
    assert any(kind == "role_context" and "<SECRET:" in loc for kind, loc in manifest["spec"]["inputs"])
    assert any("Patrol the polecats" in line for line in
               next(isolated.glob("corpus/corpus-*/records.jsonl")).read_text().splitlines())
    leaked = [str(p) for p in isolated.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == [] and not [o for o in outputs if secret in o.out + o.err]
    # the next build finds its state (same redacted spec, same state file): nothing new, no new version
    states = sorted(p.name for p in (isolated / "corpus" / ".state").glob("*.json"))
    assert main(["corpus", "build", "--scope", "all", "--town", str(town)]) == 0
    again = capsys.readouterr()
    assert "; 0 new;" in again.out + again.err and secret not in again.out + again.err
    assert len(list(isolated.glob("corpus/corpus-*"))) == 1
    assert sorted(p.name for p in (isolated / "corpus" / ".state").glob("*.json")) == states


VALID = 'formula = "mol-swap"\ntype = "workflow"\n\n[[steps]]\nid = "a"\ntitle = "A"\n'
INVALID = VALID + '\n[[steps]]\nid = "b"\ntitle = "B"\nneeds = ["nowhere"]\n'  # parses, does not validate


def test_a_formula_swapped_after_the_safe_read_is_judged_by_what_was_read(tmp_path, monkeypatch):
    folder = tmp_path / "formulas"
    folder.mkdir()
    path = folder / "mol-swap.formula.toml"
    path.write_text(INVALID)
    read = context.read_inside

    def read_then_swap(*args, **kwargs):
        data = read(*args, **kwargs)
        path.write_text(VALID)  # an agent puts a valid file back the moment the harvest has read it
        return data

    monkeypatch.setattr(context, "read_inside", read_then_swap)
    [item] = formulas.harvest(str(folder), HarvestContext())
    assert isinstance(item, Rejected) and "needs unknown step `nowhere`" in item.reason, item


def test_the_harvest_checks_a_formula_without_opening_it_again(tmp_path, monkeypatch):
    folder = tmp_path / "formulas"
    folder.mkdir()
    (folder / "mol-swap.formula.toml").write_text(VALID)

    def opened_again(path):
        raise AssertionError(f"{path} was opened again after the safe read")

    monkeypatch.setattr(formula_mod, "_read", opened_again)
    [item] = formulas.harvest(str(folder), HarvestContext())
    assert isinstance(item, dict) and item["meta"]["formula"] == "mol-swap"
