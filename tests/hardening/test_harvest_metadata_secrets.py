"""No planted secret in a town's metadata survives a corpus build, anywhere (issue 15, item 3).

Provider-format keys are planted where the harvest reads names, not text: bead assignee and
created_by, the mail sender and recipient, the event actor, a transcript's `cwd` and `sessionId`,
a formula's file name and a rig's name. After `corpus build`, `show`, `show --json`, `list --json`
and `report`, no planted value may appear in any file under the workspace or in any output.

The record fields (`meta.*`) are redacted by the redactor's meta scan; the strings the harvest writes
itself (manifest accounting and fingerprint, `.state`, `by_rig`) by the harvest.
"""
import json
import random
import shutil
import string
from pathlib import Path

import pytest

from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN

ALNUM = string.ascii_letters + string.digits


def planted(seed: int = 15) -> dict[str, str]:
    """One fresh provider-format value per metadata field, so a leak names its field."""
    rng = random.Random(seed)

    def pick(chars: str, n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(n))

    github = lambda: "ghp_" + pick(ALNUM, 36)  # noqa: E731
    anthropic = lambda: "sk-ant-api03-" + pick(ALNUM, 90)  # noqa: E731
    aws = lambda: "AKIA" + pick(string.ascii_uppercase + string.digits, 16)  # noqa: E731
    return {"assignee": github(), "created_by": anthropic(), "mail_from": github(), "mail_to": aws(),
            "event_actor": github(), "cwd": anthropic(), "session": github(), "formula_file": github(),
            "rig": aws()}


def plant_town(root: Path, secrets: dict[str, str]) -> Path:
    shutil.copytree(SAMPLE_TOWN, root)
    rigs = json.loads((root / "mayor" / "rigs.json").read_text())
    rigs["rigs"][secrets["rig"]] = {"git_url": "", "beads": {"repo": "", "prefix": "zq"}}
    (root / "mayor" / "rigs.json").write_text(json.dumps(rigs))
    with open(root / ".beads" / "routes.jsonl", "a") as f:  # where the job beads would live (never used here)
        f.write('{"prefix":"ft-","path":"finetune/mayor/rig"}\n')
    (root / "finetune" / "mayor" / "rig").mkdir(parents=True)
    beads = root / ".beads" / "backup" / "issues.jsonl"
    rows = [
        {"id": "zq-1", "title": "Fix the rig's flaky build", "status": "closed", "issue_type": "task", "priority": 2,
         "close_reason": "Pinned the toolchain version and reran the gate twice.", "created_at": "2026-11-01T10:00:00Z",
         "assignee": f"harbor/polecats/{secrets['assignee']}", "created_by": f"harbor/crew/{secrets['created_by']}"},
        {"id": "hq-mail1", "title": "Release window", "status": "closed", "issue_type": "message", "priority": 2,
         "description": "The release window opens at noon.", "created_at": "2026-11-01T11:00:00Z",
         "labels": ["gt:message", f"from:{secrets['mail_from']}"], "sender": f"mayor/{secrets['mail_from']}",
         "assignee": f"harbor/{secrets['mail_to']}"},
    ]
    with open(beads, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    event = {"ts": "2026-11-21T13:45:54Z", "source": "gt", "type": "sling",
             "actor": f"lantern/crew/{secrets['event_actor']}", "payload": {"bead": "lt-ryc", "target": "lantern/x"}}
    with open(root / ".events.jsonl", "a") as f:
        f.write(json.dumps(event) + "\n")
    session = secrets["session"]
    project = root / "claude" / "projects" / "-home-op-gt-harbor-polecats-nux"
    lines = [{"type": "user", "uuid": "p-u1", "sessionId": session, "cwd": f"/home/op/gt/harbor/{secrets['cwd']}",
              "timestamp": "2026-11-02T10:00:00Z", "message": {"role": "user", "content": "Run the gate please."}},
             {"type": "assistant", "uuid": "p-a1", "parentUuid": "p-u1", "sessionId": session,
              "cwd": f"/home/op/gt/harbor/{secrets['cwd']}", "timestamp": "2026-11-02T10:00:09Z",
              "message": {"role": "assistant", "id": "m-p1", "model": "claude",
                          "content": "The gate passed on the second run."}}]
    (project / "planted-session.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    formulas = root / ".beads" / "formulas"
    original = formulas / "mol-harbor-release.formula.toml"
    (formulas / f"{secrets['formula_file']}.formula.toml").write_text(
        original.read_text().replace('formula = "mol-harbor-release"', 'formula = "mol-planted"'))
    return root


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return sorted(field for field, value in secrets.items() if value in text)


@pytest.fixture
def built(tmp_path, isolated, capsys):
    secrets = planted()
    town = plant_town(tmp_path / "town", secrets)
    outputs = []

    def run(*argv) -> str:
        code = main([*argv, "--town", str(town)])
        out, err = capsys.readouterr()
        assert code == 0, f"`{' '.join(argv)}` exited {code}: {err[-2000:]}"
        outputs.append((" ".join(argv), out + err))
        return out

    corpus_id = run("corpus", "build", "--scope", "all").strip().splitlines()[-1]
    for argv in (("corpus", "show", corpus_id), ("corpus", "show", corpus_id, "--json"),
                 ("corpus", "list", "--json"), ("corpus", "report", corpus_id)):
        run(*argv)
    return secrets, isolated, outputs


def test_the_harvest_read_every_planted_field(built):
    """The plant reached the records (so the checks below are not vacuous)."""
    _, home, _ = built
    [records] = list(home.glob("corpus/corpus-*/records.jsonl"))
    text = records.read_text()
    assert "Pinned the toolchain" in text and "release window opens" in text and "second run" in text
    assert "mol-planted" in text and "gt sling lt-ryc" in text


def test_no_planted_value_in_any_output(built):
    secrets, _, outputs = built
    assert {argv: leaks(text, secrets) for argv, text in outputs if leaks(text, secrets)} == {}


def test_no_planted_value_in_what_the_harvest_writes_itself(built):
    """Manifest (accounting, fingerprint, by_rig), `.state`, and the reports: the harvest's own strings."""
    secrets, home, _ = built
    [manifest_path] = list(home.glob("corpus/corpus-*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    own = {"accounting": manifest["accounting"], "fingerprint": manifest["fingerprint"],
           "by_rig": manifest["counts"]["by_rig"]}
    assert {k: leaks(json.dumps(v), secrets) for k, v in own.items() if leaks(json.dumps(v), secrets)} == {}
    states = {p.name: p.read_text() for p in (home / "corpus" / ".state").glob("*.json")}
    assert {name: leaks(text, secrets) for name, text in states.items() if leaks(text, secrets)} == {}


def test_no_planted_value_in_any_file_under_the_workspace(built):
    secrets, home, _ = built
    found = {}
    for path in home.rglob("*"):
        if path.is_file():
            hit = leaks(path.read_bytes().decode("utf-8", "replace"), secrets) + leaks(str(path), secrets)
            if hit:
                found[str(path.relative_to(home))] = hit
    assert found == {}
