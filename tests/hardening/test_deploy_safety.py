"""`deploy` and `rollback` against a settings file that others write too, or that is hostile.

Two deploys racing into one settings file must both land (the read-check-write is locked beside
the file, so two workspaces deploying into one town exclude each other as well), and a settings
file nested 100k deep, a directory, a FIFO or a symlink loop is one `error:` line, exit 1, untouched.
"""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gt_finetune.cli import main
from gt_finetune.registry import Registry

from kit import time_limit

SETTINGS = '{\n  "type": "town-settings",\n  "version": 1\n}\n'
# Both racers read the file, then wait before going on, so without a lock both plan on the same bytes.
SLOW_READS = ("import sys, time\n"
              "import gt_finetune.deploy.agents as agents\n"
              "read = agents.read_bytes\n"
              "agents.read_bytes = lambda path: (read(path), time.sleep(0.3))[0]\n"
              "from gt_finetune.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")


def approved_model(home: Path, model_id: str) -> str:
    registry = Registry(home)
    registry.register(model_id=model_id, job_id=model_id.rsplit("-", 1)[0], corpus_id="corpus-1", dataset_id="d",
                      train_dir=str(home / "train" / model_id), base_model="smollm2-135m-instruct")
    registry.set_state(model_id, "approved", "witness: good")
    return model_id


def deploy_argv(model_id, alias, settings):
    return ["deploy", model_id, "--alias", alias, "--roles", alias.split("-")[-1], "--settings", str(settings)]


def test_two_deploys_racing_in_one_workspace_both_land(isolated, tmp_path, monkeypatch):
    import gt_finetune.deploy.agents as agents

    read = agents.read_bytes
    monkeypatch.setattr(agents, "read_bytes", lambda path: (read(path), threading.Event().wait(0.2))[0])
    models = [approved_model(isolated, f"ft-{n}-abc") for n in ("a1", "b2")]
    for round_ in range(3):
        settings = tmp_path / f"round-{round_}" / "settings" / "config.json"
        settings.parent.mkdir(parents=True)
        settings.write_text(SETTINGS)
        codes = {}
        racers = [threading.Thread(target=lambda m=m, a=a: codes.__setitem__(a, main(deploy_argv(m, a, settings))))
                  for m, a in zip(models, ("ft-dog", "ft-witness"))]
        for t in racers:
            t.start()
        for t in racers:
            t.join(60)
        doc = json.loads(settings.read_text())
        assert codes == {"ft-dog": 0, "ft-witness": 0}
        assert set(doc["agents"]) == {"ft-dog", "ft-witness"}, f"round {round_}: an alias was lost"
        assert doc["role_agents"] == {"dog": "ft-dog", "witness": "ft-witness"}
        registry = Registry(isolated)
        assert {registry.model(m).alias for m in models} == {"ft-dog", "ft-witness"}


def test_two_workspaces_deploying_into_one_town_exclude_each_other(tmp_path):
    settings = tmp_path / "town" / "settings" / "config.json"
    homes = [tmp_path / "home-a", tmp_path / "home-b"]
    models = [approved_model(home, f"ft-{n}-abc") for home, n in zip(homes, ("a1", "b2"))]
    for round_ in range(2):
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(SETTINGS)
        racers = [subprocess.Popen([sys.executable, "-c", SLOW_READS, *deploy_argv(m, a, settings)],
                                   env={**os.environ, "GT_FINETUNE_HOME": str(home)}, stderr=subprocess.PIPE, text=True)
                  for home, m, a in zip(homes, models, ("ft-dog", "ft-witness"))]
        errs = [p.communicate(timeout=120)[1] for p in racers]
        assert [p.returncode for p in racers] == [0, 0], errs
        assert set(json.loads(settings.read_text())["agents"]) == {"ft-dog", "ft-witness"}, f"round {round_}"
    assert not list(settings.parent.glob(".*")), "no lock or temp file is left beside the settings"


def nested(path: Path) -> Path:
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


def a_directory(path: Path) -> Path:
    path.mkdir()
    return path


def a_symlink_loop(path: Path) -> Path:
    path.symlink_to(path.name)
    return path


def a_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def snapshot(path: Path):
    st = os.lstat(path)
    return st.st_mode, st.st_ino, st.st_mtime_ns, sorted(os.listdir(path.parent))


@pytest.mark.parametrize("make", [nested, a_directory, a_symlink_loop, a_fifo])
@pytest.mark.parametrize("command", ["deploy", "rollback"])
def test_a_hostile_settings_file_is_one_error_line_and_left_alone(isolated, tmp_path, capsys, make, command):
    settings = tmp_path / "settings" / "config.json"
    settings.parent.mkdir()
    model = approved_model(isolated, "ft-a1-abc")
    if command == "rollback":  # deployed while the file was fine; then someone replaced it
        settings.write_text(SETTINGS)
        assert main(deploy_argv(model, "ft-dog", settings)) == 0
        settings.unlink()
    make(settings)
    before = snapshot(settings)
    capsys.readouterr()

    with time_limit(20, f"`{command}` on {make.__name__}"):
        code = main(deploy_argv(model, "ft-dog", settings) if command == "deploy" else ["rollback"])
    err = capsys.readouterr().err
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "config.json" in errors[0] and "Traceback" not in err, err
    assert snapshot(settings) == before
