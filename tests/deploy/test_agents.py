"""Deploying a model as a Gas Town agent alias touches only its own keys, keeps the file's
formatting, and rolls back to the exact bytes (or key by key when someone edited the file since)."""
import json
import re
import shutil
import stat

import pytest

from gt_finetune.deploy import (
    apply_deploy,
    list_deployments,
    plan_deploy,
    previous_deployment,
    rollback,
)
from gt_finetune.errors import InputError

ENDPOINT = "http://127.0.0.1:8000/v1"


@pytest.fixture
def town(shared, tmp_path):
    """A copy of the immortan town's settings (`"key" : value`, sorted keys, goose agents)."""
    real = shared / "fixtures" / "real" / "immortan-town"
    root = tmp_path / "town"
    (root / "settings").mkdir(parents=True)
    (root / "mayor").mkdir()
    shutil.copy(real / "settings" / "config.json", root / "settings" / "config.json")
    shutil.copy(real / "mayor" / "town.json", root / "mayor" / "town.json")
    (root / "settings" / "config.json").chmod(0o640)
    return root


@pytest.fixture
def records(tmp_path):
    return tmp_path / "deployments"


def deploy(settings, records, **kw):
    kw = {"alias": "ft-local", "model_name": "ft-3f9a", "endpoint": ENDPOINT, **kw}
    return apply_deploy(plan_deploy(settings, **kw), record_dir=records)


def without(obj, alias, roles):
    obj = json.loads(json.dumps(obj))
    obj.get("agents", {}).pop(alias, None)
    for role in roles:
        obj.get("role_agents", {}).pop(role, None)
    return {k: v for k, v in obj.items() if v != {}}


def test_deploy_touches_only_its_keys_keeps_formatting_and_rolls_back_to_the_same_bytes(town, records):
    settings = town / "settings" / "config.json"
    original = settings.read_bytes()
    plan = plan_deploy(settings, alias="ft-local", model_name="ft-3f9a", endpoint=ENDPOINT, roles=["dog", "witness"])
    assert plan.style == '2-space indent, `"key" : value`, sorted keys, trailing newline'
    assert plan.notes == ()
    record = apply_deploy(plan, record_dir=records)

    after = json.loads(settings.read_text())
    agent = after["agents"]["ft-local"]
    assert agent["command"] == "goose" and agent["prompt_mode"] == "arg"
    assert agent["env"]["GOOSE_PROVIDER"] == "openai" and agent["env"]["GOOSE_MODEL"] == "ft-3f9a"
    assert agent["env"]["OPENAI_HOST"] == "http://127.0.0.1:8000"
    assert agent["env"]["OPENAI_BASE_PATH"] == "v1/chat/completions"
    assert agent["env"]["OPENAI_API_KEY"] == "local"  # a placeholder, never a key
    assert after["role_agents"] == {"dog": "ft-local", "witness": "ft-local"}
    assert without(after, "ft-local", ["dog", "witness"]) == json.loads(original)
    assert stat.S_IMODE(settings.stat().st_mode) == 0o640

    # The diff adds our lines and changes nothing else (at most a comma on a neighbouring line).
    lines = plan.diff.splitlines()[2:]
    removed = [line[1:] for line in lines if line.startswith("-")]
    added = [line[1:] for line in lines if line.startswith("+")]
    assert all(r.rstrip(",") in {a.rstrip(",") for a in added} for r in removed)
    keys = set(re.findall(r'"([^"]+)" :', "\n".join(added)))
    assert keys <= {"ft-local", "args", "command", "env", "prompt_mode", "role_agents", "dog", "witness",
                    "GOOSE_PROVIDER", "GOOSE_MODEL", "OPENAI_HOST", "OPENAI_BASE_PATH", "OPENAI_API_KEY"}
    assert settings.read_bytes() == plan.new

    result = rollback(record)
    assert result.mode == "exact"
    assert result.restored == ("agents.ft-local", "role_agents.dog", "role_agents.witness")
    assert settings.read_bytes() == original
    assert stat.S_IMODE(settings.stat().st_mode) == 0o640
    assert previous_deployment(records) is None


def test_a_plan_alone_writes_nothing(town, records):
    settings = town / "settings" / "config.json"
    before = settings.read_bytes(), settings.stat().st_mtime_ns
    plan = plan_deploy(settings, alias="ft-local", model_name="ft-3f9a", endpoint=ENDPOINT, roles=["dog"])
    assert "+  \"role_agents\" : {" in plan.diff
    assert (settings.read_bytes(), settings.stat().st_mtime_ns) == before
    assert not records.exists()
    assert sorted(p.name for p in settings.parent.iterdir()) == ["config.json"]


def test_two_deployments_roll_back_latest_first_to_the_original(town, records):
    settings = town / "settings" / "config.json"
    original = settings.read_bytes()
    first = deploy(settings, records, roles=["dog"])
    after_first = settings.read_bytes()
    second = deploy(settings, records, model_name="ft-77aa", roles=["dog", "witness"])
    assert [r.id for r in list_deployments(records)] == [first.id, second.id]

    with pytest.raises(InputError) as err:
        rollback(first)
    assert err.value.message == (f"deployment `{first.id}` lies under a later one, `{second.id}`, on `{settings}`")
    assert err.value.hint == f"roll back `{second.id}` first (`gt-finetune rollback` undoes the latest)"

    assert rollback(previous_deployment(records)).id == second.id
    assert settings.read_bytes() == after_first
    assert rollback(previous_deployment(records)).id == first.id
    assert settings.read_bytes() == original
    assert previous_deployment(records) is None


def test_an_edit_made_after_deploy_survives_rollback(town, records):
    settings = town / "settings" / "config.json"
    record = deploy(settings, records, roles=["dog", "witness"])
    edited = json.loads(settings.read_text())
    edited["scheduler"]["max_polecats"] = 3
    edited["agents"]["mine"] = {"command": "goose", "args": ["run"]}
    edited["role_agents"]["witness"] = "llama4"  # someone re-pointed a role we set
    settings.write_text(json.dumps(edited, indent=2, separators=(",", " : "), sort_keys=True) + "\n")

    result = rollback(record)
    assert result.mode == "key-level"
    assert result.restored == ("agents.ft-local", "role_agents.dog")
    assert result.kept == ("role_agents.witness (changed since the deploy)",)
    assert any("kept the other edits" in note for note in result.notes)
    now = json.loads(settings.read_text())
    assert "ft-local" not in now["agents"]
    assert now["agents"]["mine"] == {"command": "goose", "args": ["run"]}
    assert now["scheduler"]["max_polecats"] == 3
    assert now["role_agents"] == {"witness": "llama4"}
    assert previous_deployment(records) is None


def test_an_existing_alias_is_recorded_and_restored(town, records):
    settings = town / "settings" / "config.json"
    original = settings.read_bytes()
    old = json.loads(original)["agents"]["llama4"]
    plan = plan_deploy(settings, alias="llama4", model_name="ft-3f9a", endpoint=ENDPOINT)
    assert plan.changes == ("replace `agents.llama4` (the old entry is recorded; rollback puts it back)",)
    record = apply_deploy(plan, record_dir=records)
    assert record.previous_agents == {"llama4": old}
    assert json.loads(settings.read_text())["agents"]["llama4"]["env"]["GOOSE_MODEL"] == "ft-3f9a"

    # Force the key-level path: the old entry must come back even when the bytes cannot.
    text = settings.read_text().replace('"max_polecats" : 1', '"max_polecats" : 2')
    settings.write_text(text)
    result = rollback(record)
    assert result.mode == "key-level" and result.restored == ("agents.llama4",)
    now = json.loads(settings.read_text())
    assert now["agents"]["llama4"] == old
    assert now["scheduler"]["max_polecats"] == 2


def test_replacing_an_alias_then_rolling_back_exactly(town, records):
    settings = town / "settings" / "config.json"
    original = settings.read_bytes()
    rollback(deploy(settings, records, alias="mayor", roles=["mayor"]))
    assert settings.read_bytes() == original


def test_a_missing_settings_file_is_created_and_rollback_removes_it(tmp_path, records):
    rig = tmp_path / "finetune"
    rig.mkdir()
    (rig / "config.json").write_text('{"type": "rig", "version": 1, "name": "finetune"}')
    settings = rig / "settings" / "config.json"
    plan = plan_deploy(settings, alias="ft-local", model_name="ft-3f9a", endpoint=ENDPOINT, roles=["polecat"])
    assert plan.original is None and plan.diff.startswith("--- /dev/null\n")
    record = apply_deploy(plan, record_dir=records)
    created = json.loads(settings.read_text())
    assert created["type"] == "rig-settings" and created["version"] == 1
    assert created["role_agents"] == {"polecat": "ft-local"}
    assert settings.read_text().startswith('{\n  "type": "rig-settings",\n  "version": 1,\n')

    result = rollback(record)
    assert result.mode == "exact"
    assert not settings.exists() and not settings.parent.exists()  # the absent state, folder included
    assert (rig / "config.json").exists()


def test_a_created_file_that_was_edited_keeps_the_edits(tmp_path, records):
    settings = tmp_path / "town" / "settings" / "config.json"
    (tmp_path / "town" / "mayor").mkdir(parents=True)
    (tmp_path / "town" / "mayor" / "town.json").write_text("{}")
    record = deploy(settings, records)
    obj = json.loads(settings.read_text())
    assert obj["type"] == "town-settings"
    obj["default_agent"] = "claude"
    settings.write_text(json.dumps(obj, indent=2) + "\n")
    result = rollback(record)
    assert result.mode == "key-level"
    assert json.loads(settings.read_text()) == {"type": "town-settings", "version": 1, "default_agent": "claude"}


def test_malformed_json_names_line_and_column(tmp_path):
    settings = tmp_path / "settings" / "config.json"
    settings.parent.mkdir()
    settings.write_text('{\n  "type": "town-settings",\n  "version": 1,\n}\n')
    with pytest.raises(InputError) as err:
        plan_deploy(settings, alias="ft-local", model_name="m", endpoint=ENDPOINT)
    assert err.value.message == (f"`{settings}`:4:1: not valid JSON "
                                 "(Expecting property name enclosed in double quotes)")
    assert err.value.hint.startswith(f"fix line 4 of `{settings}`")
    assert err.value.hint.endswith("nothing was changed")


def test_duplicate_keys_are_refused(tmp_path):
    settings = tmp_path / "settings" / "config.json"
    settings.parent.mkdir()
    settings.write_text('{\n  "agents": {},\n  "agents": {}\n}\n')
    with pytest.raises(InputError, match=r":3:3: key `agents` appears twice in one object"):
        plan_deploy(settings, alias="ft-local", model_name="m", endpoint=ENDPOINT)


def test_unknown_role_is_refused(tmp_path):
    with pytest.raises(InputError) as err:
        plan_deploy(tmp_path / "settings" / "config.json", alias="ft-local", model_name="m", endpoint=ENDPOINT,
                    roles=["dog", "janitor"])
    assert err.value.message == ("unknown role `janitor`; valid roles: mayor, deacon, witness, refinery, polecat, "
                                 "crew, boot, dog")


@pytest.mark.parametrize("alias, endpoint, message", [
    ("claude", ENDPOINT, "alias `claude` is a gt built-in agent"),
    ("ft local", ENDPOINT, "alias `ft local` is not a usable agent name"),
    ("ft-local", "127.0.0.1:8000", "endpoint `127.0.0.1:8000` is not an http(s) URL"),
    ("ft-local", "http://user:secret@127.0.0.1:8000/v1", "carries credentials"),
])
def test_bad_alias_or_endpoint_is_refused(tmp_path, alias, endpoint, message):
    with pytest.raises(InputError, match=re.escape(message)):
        plan_deploy(tmp_path / "settings" / "config.json", alias=alias, model_name="m", endpoint=endpoint)


def test_rolling_back_twice_is_refused(town, records):
    record = deploy(town / "settings" / "config.json", records)
    rollback(record)
    with pytest.raises(InputError) as err:
        rollback(record.path)
    assert err.value.message.startswith(f"deployment `{record.id}` was already rolled back (")
    assert err.value.hint == f"nothing deployed to `{record.settings}` is left to undo"


def test_rollback_dry_run_writes_nothing(town, records):
    settings = town / "settings" / "config.json"
    record = deploy(settings, records, roles=["dog"])
    deployed = settings.read_bytes()
    result = rollback(record, dry_run=True)
    assert result.dry_run and result.mode == "exact" and '-    "dog" : "ft-local"' in result.diff
    assert settings.read_bytes() == deployed
    assert previous_deployment(records).id == record.id


def test_a_settings_file_changed_between_plan_and_apply_is_not_overwritten(town, records):
    settings = town / "settings" / "config.json"
    plan = plan_deploy(settings, alias="ft-local", model_name="m", endpoint=ENDPOINT)
    settings.write_text(settings.read_text().replace('"max_polecats" : 1', '"max_polecats" : 4'))
    with pytest.raises(InputError, match="changed after this deployment was planned"):
        apply_deploy(plan, record_dir=records)
    assert '"max_polecats" : 4' in settings.read_text() and not records.exists()


@pytest.mark.parametrize("text", [
    '{\n    "version": 1,\n    "type": "town-settings",\n    "agents": {\n        "a": {\n            "command": "x"\n'
    '        }\n    }\n}',                                     # 4 spaces, file order, no trailing newline
    '{\r\n\t"type": "town-settings",\r\n\t"version": 1\r\n}\r\n',  # tabs and CRLF
])
def test_other_formatting_styles_are_kept(tmp_path, records, text):
    settings = tmp_path / "settings" / "config.json"
    settings.parent.mkdir()
    settings.write_bytes(text.encode())
    plan = plan_deploy(settings, alias="ft-local", model_name="m", endpoint=ENDPOINT, roles=["dog"])
    assert plan.notes == ()
    assert all(line.rstrip(",\r\n") in plan.new.decode() for line in text.splitlines())
    record = apply_deploy(plan, record_dir=records)
    rollback(record)
    assert settings.read_bytes() == text.encode()


def test_unreproducible_formatting_falls_back_to_two_spaces_and_says_so(tmp_path, records):
    settings = tmp_path / "settings" / "config.json"
    settings.parent.mkdir()
    original = b'{"type":  "town-settings", "version": 1}\n'
    settings.write_bytes(original)
    plan = plan_deploy(settings, alias="ft-local", model_name="m", endpoint=ENDPOINT)
    assert any("rewritten with 2-space indent" in note for note in plan.notes)
    rollback(apply_deploy(plan, record_dir=records))
    assert settings.read_bytes() == original


def test_opencode_gets_a_config_file_beside_the_record(town, records):
    settings = town / "settings" / "config.json"
    original = settings.read_bytes()
    plan = plan_deploy(settings, alias="ft-oc", model_name="ft-3f9a", endpoint="http://127.0.0.1:8080",
                       agent_cli="opencode", record_dir=records, roles=["crew"])
    record = apply_deploy(plan, record_dir=records)
    agent = json.loads(settings.read_text())["agents"]["ft-oc"]
    assert agent["command"] == "opencode" and agent["args"] == ["-m", "ft-oc/ft-3f9a"]
    assert agent["prompt_mode"] == "none"
    config_path = records / "opencode" / agent["env"]["OPENCODE_CONFIG"].rsplit("/", 1)[-1]
    assert str(config_path) == agent["env"]["OPENCODE_CONFIG"] and record.files == (config_path,)
    config = json.loads(config_path.read_text())
    provider = config["provider"]["ft-oc"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:8080/v1"}  # no apiKey
    assert config["model"] == config["small_model"] == "ft-oc/ft-3f9a"
    rollback(record)
    assert settings.read_bytes() == original
