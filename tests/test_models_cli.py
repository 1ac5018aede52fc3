"""`gt-finetune models …`: the registry as an operator sees it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from gt_finetune.cli import main
from gt_finetune.registry import Registry

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
import fake_actions  # noqa: E402


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def two_models(capsys, monkeypatch, home: Path) -> list[str]:
    fake_actions.install(monkeypatch)
    ids = []
    for steps in (5, 9):
        _, out, _ = cli(capsys, "run", "finetune-lora", "--var", f"max_steps={steps}")
        job = out.strip().splitlines()[-1]
        train = home / "train" / f"run-{steps}"
        train.mkdir(parents=True)
        (train / "manifest.json").write_text(json.dumps({"spec": {"max_steps": steps, "learning_rate": 0.0002}}))
        Registry(home).register(model_id=f"{job}-m", job_id=job, corpus_id="corpus-1", dataset_id="d",
                                train_dir=str(train), base_model="smollm2-135m-instruct")
        ids.append(f"{job}-m")
    return ids


def test_list_show_compare_archive(capsys, monkeypatch, isolated):
    a, b = two_models(capsys, monkeypatch, isolated)
    code, out, err = cli(capsys, "models", "list")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [[a, "candidate"], [b, "candidate"]]
    assert "tuned+context 9/10, base+context 5/10, gate FAIL" in lines[0]

    code, out, err = cli(capsys, "models", "show", a[:8] if a[:8] != b[:8] else a, "--json")
    info = json.loads(out)
    assert info["state"] == "candidate" and info["eval"]["tuned+context"]["passed"] == 9
    assert [x["action"] for x in info["audit"]] == ["register"]

    code, out, err = cli(capsys, "models", "compare", a, b)
    assert code == 0, err
    assert any(line.startswith("max_steps") and line.endswith("← changed") for line in out.splitlines())
    assert any(line.startswith("learning_rate") and "changed" not in line for line in out.splitlines())
    assert any(line.startswith("eval all") and line.split()[-2:] == ["9/10", "9/10"] for line in out.splitlines())

    code, out, err = cli(capsys, "models", "archive", a, "--reason", "superseded by a bigger corpus")
    assert code == 0 and out.strip() == a
    assert Registry(isolated).model(a).state == "archived"


def test_a_deployed_model_cannot_be_archived_and_an_unknown_one_is_named(capsys, monkeypatch, isolated):
    a, _ = two_models(capsys, monkeypatch, isolated)
    Registry(isolated).deployed(a, alias="ft-local", deployment="dep-1")
    code, _, err = cli(capsys, "models", "archive", a, "--reason", "x")
    assert code == 1 and "is deployed as `ft-local`; roll it back first" in err and "gt-finetune rollback dep-1" in err
    code, _, err = cli(capsys, "models", "show", "nope")
    assert code == 1 and "no model matching `nope`" in err and "gt-finetune models list" in err


def test_deploy_then_rollback_through_the_cli(capsys, monkeypatch, isolated, tmp_path, shared):
    import shutil

    original = shared / "fixtures" / "real" / "immortan-town" / "settings" / "config.json"
    settings = tmp_path / "settings" / "config.json"
    settings.parent.mkdir()
    shutil.copy(original, settings)
    a, b = two_models(capsys, monkeypatch, isolated)
    code, _, err = cli(capsys, "deploy", a, "--settings", str(settings))
    assert code == 1 and "is candidate, not approved by review" in err
    registry = Registry(isolated)
    registry.set_state(a, "approved", "witness: good")

    code, out, err = cli(capsys, "deploy", a, "--roles", "dog,witness", "--settings", str(settings), "--dry-run")
    assert code == 0, err
    assert '+    "finetune" : {' in err and settings.read_bytes() == original.read_bytes()

    code, out, err = cli(capsys, "deploy", a, "--roles", "dog,witness", "--settings", str(settings))
    assert code == 0, err
    deployment = out.strip().splitlines()[-1]
    after = json.loads(settings.read_text())
    assert after["role_agents"] == {"dog": "finetune", "witness": "finetune"}
    assert after["agents"]["finetune"]["env"]["GOOSE_MODEL"] == a
    before = json.loads(original.read_text())
    assert {k: v for k, v in after.items() if k != "role_agents"} == {
        **before, "agents": {**before["agents"], "finetune": after["agents"]["finetune"]}}
    assert (registry.model(a).state, registry.model(a).alias) == ("deployed", "finetune")
    assert f"gt-finetune rollback {deployment}" in err

    code, out, err = cli(capsys, "rollback")
    assert code == 0, err
    assert settings.read_bytes() == original.read_bytes()
    assert registry.model(a).state == "approved" and "(exact)" in err
    code, _, err = cli(capsys, "rollback")
    assert code == 1 and "nothing to roll back" in err
