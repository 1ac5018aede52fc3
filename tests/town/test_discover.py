"""Finding a town and reading its layout, routes and Dolt settings (gastown.md §2.4, §3.1, §6)."""
import json
import shutil
from pathlib import Path

import pytest

from gt_finetune.errors import InputError
from gt_finetune.town.discover import (DoltSettings, Rig, Route, dolt_settings, find_town, load_town,
                                       read_routes)


def make_town(root: Path, *, name: str = "tiny", rigs: dict | None = None, routes: str | None = None,
              daemon: dict | None = None, dolt_yaml: str | None = None) -> Path:
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text(json.dumps({"type": "town", "version": 2, "name": name}))
    if rigs is not None:
        (root / "mayor" / "rigs.json").write_text(json.dumps({"version": 1, "rigs": rigs}))
    if routes is not None:
        (root / ".beads").mkdir()
        (root / ".beads" / "routes.jsonl").write_text(routes)
    if daemon is not None:
        (root / "mayor" / "daemon.json").write_text(json.dumps(daemon))
    if dolt_yaml is not None:
        (root / ".dolt-data").mkdir()
        (root / ".dolt-data" / "config.yaml").write_text(dolt_yaml)
    return root


def rig_entry(prefix: str | None) -> dict:
    return {"git_url": "", "beads": {"repo": "", "prefix": prefix} if prefix is not None else {}}


ROUTES = "\n".join([
    '# town routes',
    '{"prefix":"hq-","path":"."}',
    '',
    '{"prefix":"ft-","path":"finetune/mayor/rig"}',
    '   # an indented comment',
    '{"prefix":"ft-mol-","path":"finetune/crew/max"}',
    '',
])


@pytest.fixture
def town(tmp_path) -> Path:
    return make_town(tmp_path / "gt", name="tiny", routes=ROUTES,
                     rigs={"finetune": rig_entry("ft"), "harbor": rig_entry("hb")})


# --- find_town -------------------------------------------------------------------------------

def test_outside_a_town_there_is_none(tmp_path):
    assert find_town(env={}) is None
    assert find_town(tmp_path / "work", env={}) is None


def test_walks_up_to_mayor_town_json(town):
    deep = town / "finetune" / "polecats" / "nux" / "src"
    deep.mkdir(parents=True)
    found = find_town(deep, env={})
    assert found is not None
    assert found.root == town.resolve()
    assert found.name == "tiny"


def test_walks_up_from_the_cwd_by_default(town, monkeypatch):
    deep = town / "harbor" / "mayor" / "rig"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_town().root == town.resolve()


def test_explicit_beats_gt_town_root_beats_gt_root(tmp_path):
    a = make_town(tmp_path / "a", name="alpha")
    b = make_town(tmp_path / "b", name="bravo")
    c = make_town(tmp_path / "c", name="charlie")
    env = {"GT_TOWN_ROOT": str(b), "GT_ROOT": str(c)}
    assert find_town(explicit=str(a), env=env).name == "alpha"
    assert find_town(env=env).name == "bravo"
    assert find_town(env={"GT_ROOT": str(c)}).name == "charlie"
    # an explicit or env town wins over the town the cwd is in
    assert find_town(a, env={"GT_ROOT": str(c)}).name == "charlie"


def test_env_town_is_read_from_os_environ(tmp_path, monkeypatch):
    make_town(tmp_path / "envtown", name="fromenv")
    monkeypatch.setenv("GT_TOWN_ROOT", str(tmp_path / "envtown"))
    assert find_town().name == "fromenv"


def test_empty_env_values_are_ignored(town):
    assert find_town(town, env={"GT_TOWN_ROOT": "", "GT_ROOT": ""}).name == "tiny"


@pytest.mark.parametrize("source", ["--town", "GT_TOWN_ROOT", "GT_ROOT"])
def test_pointing_at_a_non_town_raises(tmp_path, source):
    not_a_town = tmp_path / "plain"
    not_a_town.mkdir()
    kwargs = {"explicit": str(not_a_town), "env": {}} if source == "--town" else {"env": {source: str(not_a_town)}}
    with pytest.raises(InputError) as err:
        find_town(**kwargs)
    assert err.value.message == f"{source} points at {not_a_town.resolve()}, which has no mayor/town.json"
    assert "gt town root" in err.value.hint


def test_a_non_town_in_env_raises_even_inside_a_town(town, tmp_path):
    with pytest.raises(InputError, match="GT_ROOT points at"):
        find_town(town, env={"GT_ROOT": str(tmp_path / "missing")})


# --- load_town -------------------------------------------------------------------------------

def test_load_town_reads_name_rigs_routes(town):
    t = load_town(town, env={})
    assert t.root == town
    assert t.name == "tiny"
    assert t.beads_dir == town / ".beads"
    assert t.rigs == (Rig("finetune", "ft", town / "finetune"), Rig("harbor", "hb", town / "harbor"))
    assert t.routes == (Route("hq-", "."), Route("ft-", "finetune/mayor/rig"), Route("ft-mol-", "finetune/crew/max"))
    assert t.dolt == DoltSettings(host="127.0.0.1", port=3307, user="root", password="", port_source="default")


def test_name_falls_back_to_folder_name_and_missing_files_are_empty(tmp_path):
    root = tmp_path / "nameless"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text("{}")
    t = load_town(root, env={})
    assert (t.name, t.rigs, t.routes) == ("nameless", (), ())


def test_rig_prefix_falls_back_to_rig_config_json(tmp_path):
    root = make_town(tmp_path / "gt", rigs={"lantern": rig_entry(None), "bare": None})
    (root / "lantern").mkdir()
    (root / "lantern" / "config.json").write_text(json.dumps({"beads": {"prefix": "lt"}}))
    t = load_town(root, env={})
    assert t.rigs == (Rig("bare", "", root / "bare"), Rig("lantern", "lt", root / "lantern"))


def test_malformed_town_json_names_the_file(tmp_path):
    root = tmp_path / "gt"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"name": "x",\n  oops}')
    with pytest.raises(InputError, match=r"town\.json:2: not valid JSON"):
        load_town(root, env={})
    (root / "mayor" / "town.json").write_text('["a list"]')
    with pytest.raises(InputError, match=r"town\.json: expected a JSON object, got list"):
        load_town(root, env={})


def test_real_immortan_town(shared, tmp_path):
    root = tmp_path / "immortan-town"
    shutil.copytree(shared / "fixtures" / "real" / "immortan-town", root)
    t = load_town(root, env={})
    assert t.name == "immortan"
    assert t.rigs == (Rig("todosampler", "to", root / "todosampler"),)
    assert t.routes == ()  # the fixture has no .beads/routes.jsonl
    # its daemon.json sets no GT_DOLT_PORT and there is no .dolt-data: the default
    assert (t.dolt.port, t.dolt.port_source) == (3307, "default")
    assert t.rig("todosampler").prefix == "to"
    # no route: the rig is found by prefix
    assert t.workdir_for("to-abc") == root / "todosampler" / "mayor" / "rig"
    with pytest.raises(InputError, match="no route for `im-9o1`"):
        t.workdir_for("im-9o1")
    # and it is found by walking up from inside
    (root / "todosampler" / "polecats").mkdir(parents=True)
    assert find_town(root / "todosampler" / "polecats", env={}).name == "immortan"


# --- read_routes -----------------------------------------------------------------------------

def test_routes_missing_file_is_empty(tmp_path):
    assert read_routes(tmp_path / "routes.jsonl") == []


@pytest.mark.parametrize("bad, lineno", [
    ('{"prefix":"ft-"}', 3),  # no path
    ('{"prefix":"ft-", "path":', 3),  # not JSON
    ('["ft-", "x"]', 3),  # not an object
    ('null', 3),
])
def test_malformed_route_line_names_path_and_line(tmp_path, bad, lineno):
    path = tmp_path / "routes.jsonl"
    path.write_text(f'# comment\n{{"prefix":"hq-","path":"."}}\n{bad}\n{{"prefix":"x-","path":"x"}}\n')
    with pytest.raises(InputError) as err:
        read_routes(path)
    assert err.value.message.startswith(f"{path}:{lineno}: not a route (")
    assert err.value.message.endswith(bad[:80])
    assert err.value.hint == 'each line must look like {"prefix":"ft-","path":"finetune/mayor/rig"}'


def test_route_line_numbers_count_comments_and_blanks(tmp_path):
    path = tmp_path / "routes.jsonl"
    path.write_text('\n# c\n\n{"prefix":"a-","path":"a"}\n   \n{"prefix":"b-"}\n')
    with pytest.raises(InputError, match=rf"^{path}:6: "):
        read_routes(path)


# --- dolt_settings ---------------------------------------------------------------------------

LISTENER = ("log_level: info\nbehavior:\n  read_only: false\n  port: 9999\n"
            "listener:\n  host: 0.0.0.0\n  port: 3311\n  max_connections: 1000\n")


def test_port_precedence_yaml_over_env_over_daemon_over_default(tmp_path):
    root = make_town(tmp_path / "gt", daemon={"type": "daemon", "env": {"GT_DOLT_PORT": "3308"}}, dolt_yaml=LISTENER)
    yaml_path = str(root / ".dolt-data" / "config.yaml")
    assert dolt_settings(root, env={"GT_DOLT_PORT": "3309"}) == DoltSettings("127.0.0.1", 3311, "root", "", yaml_path)
    (root / ".dolt-data" / "config.yaml").unlink()
    assert dolt_settings(root, env={"GT_DOLT_PORT": "3309"}).port_source == "GT_DOLT_PORT"
    assert dolt_settings(root, env={"GT_DOLT_PORT": "3309"}).port == 3309
    daemon = dolt_settings(root, env={})
    assert (daemon.port, daemon.port_source) == (3308, str(root / "mayor" / "daemon.json"))
    (root / "mayor" / "daemon.json").unlink()
    assert (dolt_settings(root, env={}).port, dolt_settings(root, env={}).port_source) == (3307, "default")


def test_non_numeric_env_port_is_ignored(tmp_path):
    root = make_town(tmp_path / "gt", daemon={"env": {"GT_DOLT_PORT": 3310}})
    s = dolt_settings(root, env={"GT_DOLT_PORT": "auto"})
    assert (s.port, s.port_source) == (3310, str(root / "mayor" / "daemon.json"))


def test_yaml_port_may_be_quoted_and_other_blocks_are_ignored(tmp_path):
    root = make_town(tmp_path / "gt", dolt_yaml='behavior:\n  port: 1111\nlistener:  # sql\n  port: "3312"\n')
    assert dolt_settings(root, env={}).port == 3312
    (root / ".dolt-data" / "config.yaml").write_text("behavior:\n  port: 1111\n")
    assert dolt_settings(root, env={}).port_source == "default"


def test_column_zero_comment_inside_listener_block_keeps_the_port(tmp_path):
    root = make_town(tmp_path / "gt", dolt_yaml="listener:\n  host: 127.0.0.1\n# the town's sql port\n  port: 3313\n")
    assert dolt_settings(root, env={}).port == 3313


def test_host_user_password_from_env(tmp_path):
    root = make_town(tmp_path / "gt")
    s = dolt_settings(root, env={"GT_DOLT_HOST": "dolt.local", "GT_DOLT_USER": "gt", "GT_DOLT_PASSWORD": "pw"})
    assert (s.host, s.user, s.password, s.port) == ("dolt.local", "gt", "pw", 3307)


def test_load_town_uses_os_environ_for_dolt(town, monkeypatch):
    monkeypatch.setenv("GT_DOLT_PORT", "4406")
    monkeypatch.setenv("GT_DOLT_USER", "ops")
    d = load_town(town).dolt
    assert (d.port, d.port_source, d.user) == (4406, "GT_DOLT_PORT", "ops")


# --- Town.workdir_for / Town.rig -------------------------------------------------------------

def test_workdir_longest_route_prefix_wins(town):
    t = load_town(town, env={})
    assert t.workdir_for("ft-abc") == (town / "finetune" / "mayor" / "rig").resolve()
    assert t.workdir_for("ft-") == (town / "finetune" / "mayor" / "rig").resolve()
    assert t.workdir_for("ft-mol-x1") == (town / "finetune" / "crew" / "max").resolve()
    assert t.workdir_for("hq-123") == town.resolve()


def test_workdir_longest_prefix_wins_whatever_the_order(tmp_path):
    root = make_town(tmp_path / "gt",
                     routes='{"prefix":"ft-mol-","path":"deep"}\n{"prefix":"ft-","path":"shallow"}\n')
    t = load_town(root, env={})
    assert t.workdir_for("ft-mol-1") == (root / "deep").resolve()
    assert t.workdir_for("ft-1") == (root / "shallow").resolve()


def test_workdir_without_route_uses_the_rig_with_that_prefix(town):
    t = load_town(town, env={})
    assert t.workdir_for("hb-xyz") == town / "harbor" / "mayor" / "rig"
    assert t.rig_for_prefix("hb-") == Rig("harbor", "hb", town / "harbor")


def test_workdir_unknown_prefix_raises(town):
    t = load_town(town, env={})
    with pytest.raises(InputError) as err:
        t.workdir_for("zz-1")
    assert err.value.message == f"no route for `zz-1` in {town / '.beads' / 'routes.jsonl'}"
    assert "gt-finetune install" in err.value.hint


def test_rig_by_name(town):
    t = load_town(town, env={})
    assert t.rig("harbor") == Rig("harbor", "hb", town / "harbor")
    with pytest.raises(InputError) as err:
        t.rig("lantern")
    assert err.value.message == (f"rig `lantern` is not in {town / 'mayor' / 'rigs.json'} "
                                 "(rigs: finetune, harbor)")
    assert err.value.hint == "add it with `gt rig add lantern <git-url> --prefix ft`"


def test_rig_in_a_town_without_rigs(tmp_path):
    t = load_town(make_town(tmp_path / "gt"), env={})
    with pytest.raises(InputError, match=r"\(rigs: none\)"):
        t.rig("finetune")


def test_a_rig_name_that_is_a_path_is_ignored_with_a_warning(tmp_path, capsys):
    root = tmp_path / "town"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"name": "t"}')
    (root / "mayor" / "rigs.json").write_text(
        '{"rigs": {"../../evil": {"beads": {"prefix": "ft"}}, "harbor": {"beads": {"prefix": "hb"}}}}')
    town = load_town(root, env={})
    assert [r.name for r in town.rigs] == ["harbor"]
    assert town.rig_for_prefix("ft") is None  # so install writes no directive through it
    err = capsys.readouterr().err
    assert "warning: ignored a rig in" in err and "rig name `../../evil` is not a name" in err
