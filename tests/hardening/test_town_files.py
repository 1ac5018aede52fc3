"""The town's own files are hostile input: `install` never writes outside the town, tells the truth
about what it wrote, and a town file of any shape is read or reported, never a traceback or a hang.

Agents write in the town, so `mayor/rigs.json`, `.beads/routes.jsonl`, a rig's `config.json` and
the folders install writes into (`.beads/formulas`, `plugins`, `<rig>/directives`) may hold
anything: a route out of the town, a symlink to the operator's files, JSON of any shape, nesting
past the stack, a byte-order mark, bytes that are not UTF-8, a FIFO.
"""
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gt_finetune.cli import main
from gt_finetune.errors import InputError
from gt_finetune.town.discover import Route, find_town, load_town, read_routes

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_town import make_town  # noqa: E402
from fuzz_settings import fuzz  # noqa: E402
from kit import time_limit  # noqa: E402

FUZZ = fuzz(30)
BOM = b"\xef\xbb\xbf"
DEEP = b"[" * 100_000
FT_ROUTE = '{"prefix":"ft-","path":"finetune/mayor/rig"}'
BOOKKEEPING = ("fake-bd.json", "fake-bd.log", "fake-bd.calls", ".gt-finetune-installed.json")


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below `root` (symlinks not followed), as {relative path: bytes}."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def written(before: dict, after: dict) -> set[str]:
    """Files created or changed, less the fake bd's store and our ledgers."""
    return {p for p, data in after.items() if before.get(p) != data and Path(p).name not in BOOKKEEPING}


@pytest.fixture
def town(tmp_path, fake_bin):
    """A town with the `ft` rig and its route (tests/fakes/fake_town.py), and a folder beside it with
    a beads store of its own, where an escaping install would write or run `bd config set`."""
    root, _ = make_town(tmp_path / "gt")
    outside = tmp_path / "outside"
    (outside / ".beads").mkdir(parents=True)
    (outside / ".beads" / "config.yaml").write_text("issue-prefix: ev\n")
    (outside / "victim.sh").write_text("echo the operator's own script\n")
    return root.resolve(), outside.resolve()


# --- item 7: install never writes outside the town --------------------------------------------

def route_to(path: str):
    def plant(root: Path, outside: Path) -> str:
        (root / ".beads" / "routes.jsonl").write_text('{"prefix":"hq-","path":"."}\n'
                                                      + json.dumps({"prefix": "ft-", "path": path}) + "\n")
        return "route `ft-`"
    return plant


def link(relative: str, to: str = ""):
    def plant(root: Path, outside: Path) -> str:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(outside / to)
        return relative
    return plant


ESCAPES = {
    "route ../outside": route_to("../outside"),
    "route absolute": lambda root, outside: route_to(str(outside))(root, outside),
    "route through a symlinked rig folder": lambda root, outside: (
        route_to("elsewhere/mayor/rig")(root, outside), link("elsewhere")(root, outside),
        (outside / "mayor" / "rig").mkdir(parents=True))[0],
    "symlinked .beads/formulas": link(".beads/formulas"),
    "symlinked plugins": link("plugins"),
    "symlinked plugin folder": link("plugins/finetune-harvest"),
    "symlinked run.sh": link("plugins/finetune-harvest/run.sh", "victim.sh"),
    "symlinked directives": link("finetune/directives"),
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["install", "dry-run"])
@pytest.mark.parametrize("escape", ESCAPES)
def test_a_target_outside_the_town_is_refused_and_nothing_is_written(town, capsys, escape, dry_run):
    root, outside = town
    named = ESCAPES[escape](root, outside)
    before_town, before_outside = files_under(root), files_under(outside)
    with time_limit(20):
        code = main(["install", "--town", str(root), *(["--dry-run"] if dry_run else [])])
    _, err = capsys.readouterr()
    assert code == 1, err
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert "outside the town" in line and named in line and str(root) in line
    # not one byte outside, no `bd` run there, and (all or nothing) nothing written in the town either
    assert files_under(outside) == before_outside
    assert not (outside / ".beads" / "fake-bd.log").exists()
    assert files_under(root) == before_town
    assert (outside / "victim.sh").read_text() == "echo the operator's own script\n"


def test_an_escaping_route_is_refused_for_every_command_not_only_install(town):
    root, outside = town
    route_to("../outside")(root, outside)
    found = find_town(explicit=str(root), env={})
    with pytest.raises(InputError) as err:
        found.workdir_for("ft-7k2")
    assert "outside the town" in err.value.message and "../outside" in err.value.message
    assert found.workdir_for("hq-1") == root  # the routes inside the town still work


def test_a_garbage_ledger_is_no_traceback_and_edited_files_are_kept(town, capsys):
    """The ledger (sha256 of what we wrote) is in the town too: any content means "not ours"."""
    root, _ = town
    folder = root / "plugins" / "finetune-harvest"
    folder.mkdir(parents=True)
    (folder / "run.sh").write_text("#!/bin/sh\necho the operator's edit\n")
    for ledger in (b"[1, 2]", DEEP, b"\xff\xfe", b'{"run.sh": ["x"]}'):
        (folder / ".gt-finetune-installed.json").write_bytes(ledger)
        assert main(["install", "--town", str(root)]) == 0
        err = capsys.readouterr().err
        assert "Traceback" not in err and "kept-edited  plugins/finetune-harvest/run.sh" in err
        assert (folder / "run.sh").read_text() == "#!/bin/sh\necho the operator's edit\n"


# --- item 16: what install says it changed is what it changed -------------------------------

def test_a_failed_status_merge_names_the_files_written_before_it(town, capsys, monkeypatch):
    root, _ = town
    before = files_under(root)
    monkeypatch.setenv("FAKE_BD_FAULTS", "config set=fail:database is locked")
    code = main(["install", "--town", str(root)])
    _, err = capsys.readouterr()
    changed = written(before, files_under(root))
    assert code == 3
    assert len(changed) == 6  # formula, 2 plugins x 2 files, the witness directive
    assert "nothing was changed" not in err
    for path in changed:
        assert path in err
    # and a rerun, once bd works, finishes the job without touching them again
    monkeypatch.delenv("FAKE_BD_FAULTS")
    assert main(["install", "--town", str(root)]) == 0
    out, _ = capsys.readouterr()
    assert "changed 1 of 7 items" in out


def test_bd_failing_before_any_write_changes_nothing(town, capsys, monkeypatch):
    root, _ = town
    before = files_under(root)
    monkeypatch.setenv("FAKE_BD_FAULTS", "config get=fail:failed to connect to Dolt server: connection refused")
    assert main(["install", "--town", str(root)]) == 3
    assert written(before, files_under(root)) == set()
    assert "nothing was changed" in capsys.readouterr().err


def test_the_printed_changes_are_the_files_written(town, capsys):
    root, _ = town
    before = files_under(root)
    assert main(["install", "--town", str(root)]) == 0
    out, err = capsys.readouterr()
    changed = written(before, files_under(root))
    printed = {line.split()[1] for line in err.splitlines() if line.split()[:1] == ["added"]}
    assert printed == changed and len(changed) == 6
    assert f"changed {len(changed) + 1} of 7 items in {root}" in out  # the files and status.custom
    before = files_under(root)
    assert main(["install", "--town", str(root)]) == 0
    out, _ = capsys.readouterr()
    assert "changed 0 of 7 items" in out and written(before, files_under(root)) == set()


# --- item 15: hostile town files are read or reported, never a traceback ---------------------

def plain_town(tmp_path: Path) -> Path:
    root = tmp_path / "gt"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"type":"town","version":2,"name":"demo"}')
    (root / ".beads").mkdir()
    (root / ".beads" / "routes.jsonl").write_text('{"prefix":"hq-","path":"."}\n' + FT_ROUTE + "\n")
    return root


@pytest.mark.parametrize("content, why", [
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"a string"', "expected a JSON object, got str"),
    (DEEP, "nested too deeply"),
    (b'{"rigs": 1' + b"0" * 5000 + b"}", "number"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"rigs": ["finetune"]}', "`rigs` is a list"),
    (b'{"rigs": {"finetune": 5}}', "rig `finetune`"),
    (b'{"rigs": {"finetune": {"beads": "ft"}}}', "rig `finetune`"),
    (b'{"rigs": {"finetune": {"beads": {"prefix": 7}}}}', "rig `finetune`"),
])
def test_a_bad_rigs_json_is_a_warning_and_the_rest_of_the_town_works(tmp_path, capsys, content, why):
    root = plain_town(tmp_path)
    (root / "mayor" / "rigs.json").write_bytes(content)
    town = load_town(root, env={})
    err = capsys.readouterr().err
    assert f"warning: {root / 'mayor' / 'rigs.json'}" in err and why in err
    assert len(err) < 2000  # said in a line, not with the file
    assert all(isinstance(r.prefix, str) and r.prefix != 7 for r in town.rigs)
    assert town.workdir_for("ft-1") == root / "finetune" / "mayor" / "rig"  # routes still work


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_rigs_json_that_is_no_file_is_a_warning_not_a_hang(tmp_path, capsys, kind):
    root = plain_town(tmp_path)
    path = root / "mayor" / "rigs.json"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    with time_limit(20):
        town = load_town(root, env={})
    assert town.rigs == ()
    assert f"warning: {path}: not a regular file" in capsys.readouterr().err


def test_a_rigs_json_with_a_bom_is_read(tmp_path, capsys):
    root = plain_town(tmp_path)
    (root / "mayor" / "rigs.json").write_bytes(BOM + b'{"version":1,"rigs":{"finetune":{"beads":{"prefix":"ft"}}}}')
    assert [(r.name, r.prefix) for r in load_town(root, env={}).rigs] == [("finetune", "ft")]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("content", [b"[]", b'{"beads": []}', b'{"beads": {"prefix": {"a": 1}}}', DEEP,
                                     b"\x80\x81", b"{", b"null"])
def test_a_bad_rig_config_json_loses_only_that_rigs_prefix(tmp_path, capsys, content):
    root = plain_town(tmp_path)
    (root / "mayor" / "rigs.json").write_text('{"rigs": {"lantern": {}, "harbor": {"beads": {"prefix": "hb"}}}}')
    (root / "lantern").mkdir()
    (root / "lantern" / "config.json").write_bytes(content)
    town = load_town(root, env={})
    assert [(r.name, r.prefix) for r in town.rigs] == [("harbor", "hb"), ("lantern", "")]
    assert f"warning: {root / 'lantern' / 'config.json'}" in capsys.readouterr().err


def test_a_routes_jsonl_with_a_bom_is_read(tmp_path):
    path = tmp_path / "routes.jsonl"
    path.write_bytes(BOM + b'{"prefix":"hq-","path":"."}\r\n' + FT_ROUTE.encode() + b"\r\n")
    assert read_routes(path) == [Route("hq-", "."), Route("ft-", "finetune/mayor/rig")]


@pytest.mark.parametrize("line, why", [
    (DEEP, "nested too deeply"),
    (b'{"prefix": "ft-", "path": 1' + b"0" * 5000 + b"}", "number"),
    (b'{"prefix": 5, "path": "x"}', "`prefix`"),
    (b'{"prefix": "ft-", "path": null}', "`path`"),
    (b'{"prefix": "ft-", "path": ["a"]}', "`path`"),
    (b'{"prefix": "", "path": "x"}', "`prefix`"),
])
def test_a_bad_route_names_the_file_and_line(tmp_path, line, why):
    path = tmp_path / "routes.jsonl"
    path.write_bytes(b'{"prefix":"hq-","path":"."}\n' + line + b"\n")
    with pytest.raises(InputError) as err:
        read_routes(path)
    assert err.value.message.startswith(f"{path}:2: not a route (") and why in err.value.message
    assert len(err.value.message) < 300


@pytest.mark.parametrize("content", [b"\xff\xfe\x00", b"x" * 100 + b"\x80"])
def test_a_routes_jsonl_that_is_not_utf8_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "routes.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"^{path}: not UTF-8"):
        read_routes(path)


def test_every_hostile_rigs_json_from_the_issue_gives_an_exit_code_not_a_traceback(tmp_path, capsys, fake_bin):
    root = plain_town(tmp_path)
    for content in (b"[1]", b'"x"', DEEP, b'{"rigs": {"finetune": 5}}'):
        (root / "mayor" / "rigs.json").write_bytes(content)
        assert main(["install", "--town", str(root), "--dry-run"]) == 0
        assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("daemon", [b"[]", b'{"env": ["GT_DOLT_PORT"]}', DEEP,
                                    b'{"env": {"GT_DOLT_PORT": "' + b"9" * 5000 + b'"}}',
                                    b'{"env": {"GT_DOLT_PORT": "\\u00b2"}}', b'{"env": {"GT_DOLT_PORT": 70000}}'])
def test_a_bad_daemon_json_leaves_the_default_dolt_port(tmp_path, daemon):
    root = plain_town(tmp_path)
    (root / "mayor" / "daemon.json").write_bytes(daemon)
    assert load_town(root, env={"GT_DOLT_PORT": "1" * 5000}).dolt.port == 3307


@pytest.mark.parametrize("yaml", [b"listener:\n  port: " + b"7" * 5000 + b"\n", b"listener:\n  port: 3311\n\xff"])
def test_a_bad_dolt_config_yaml_leaves_the_default_dolt_port(tmp_path, yaml):
    root = plain_town(tmp_path)
    (root / ".dolt-data").mkdir()
    (root / ".dolt-data" / "config.yaml").write_bytes(yaml)
    assert load_town(root, env={}).dolt.port == 3307


@pytest.mark.parametrize("town_arg", ["loop", "x" * 5000, "~no-such-user-here/gt", "file/below"])
def test_a_town_path_that_cannot_be_a_town_is_an_error_naming_it(tmp_path, capsys, town_arg):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "file").write_text("")
    arg = town_arg if town_arg.startswith("~") else str(tmp_path / town_arg)
    assert main(["install", "--town", arg, "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "which has no mayor/town.json" in err and len(err) < 1000


# --- fuzz (acceptance): any town file, an exit code or a warning, never a crash or a hang ------

NO_SURROGATES = st.characters(blacklist_categories=("Cs",))
names = st.sampled_from(["finetune", "harbor", "../x", "/etc", "a" * 300, ""]) | st.text(NO_SURROGATES, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(NO_SURROGATES, max_size=10)
    | st.sampled_from(["ft", "ft-", "x" * 100_000, "../outside", "/tmp"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(NO_SURROGATES, max_size=6), inner, max_size=3),
    max_leaves=8)
rig_entries = st.dictionaries(st.sampled_from(["beads", "git_url", "prefix"]),
                              json_values | st.dictionaries(st.sampled_from(["prefix", "repo"]), json_values,
                                                            max_size=2), max_size=3)
rigs_documents = json_values | st.fixed_dictionaries(
    {"version": json_values, "rigs": json_values | st.dictionaries(names, json_values | rig_entries, max_size=3)})
routes = st.fixed_dictionaries({"prefix": json_values | st.sampled_from(["ft-", "hq-", "ft-mol-"]),
                                "path": json_values | st.sampled_from([".", "finetune/mayor/rig", "../outside",
                                                                       "/tmp", "finetune/../../x"])})


def encoded(documents):
    """JSON text as a file holds it: plain, behind a BOM, cut short, or bytes of any kind."""
    text = documents.map(lambda d: json.dumps(d).encode())
    return st.one_of(
        text,
        text.map(lambda b: BOM + b),
        st.builds(lambda b, n: b[: n % (len(b) + 1)], text, st.integers(0, 10**6)),
        st.binary(max_size=60),
        st.builds(lambda n, bom: bom + b"[" * n, st.integers(900, 200_000), st.sampled_from([b"", BOM])),
        st.builds(lambda n: b'{"rigs": {"x": {"beads": {"prefix": "' + b"p" * n + b'"}}}}', st.integers(1, 10**6)),
    )


routes_files = st.lists(encoded(routes | json_values), max_size=4).map(b"\n".join) | st.sampled_from(
    [BOM + FT_ROUTE.encode(), b"# comment\n\n" + FT_ROUTE.encode() + b"\r\n"])


@FUZZ
@given(rigs=encoded(rigs_documents), routes_file=routes_files, rig_config=encoded(json_values | rig_entries))
def test_fuzz_town_files_give_an_exit_code_never_a_traceback_or_a_hang(tmp_path_factory, capsys, fake_bin, rigs,
                                                                      routes_file, rig_config):
    root = plain_town(tmp_path_factory.mktemp("town"))
    (root / "mayor" / "rigs.json").write_bytes(rigs)
    (root / ".beads" / "routes.jsonl").write_bytes(routes_file)
    for rig in ("finetune", "harbor"):
        (root / rig / "mayor" / "rig").mkdir(parents=True)
        (root / rig / "config.json").write_bytes(rig_config)
    before = files_under(root.parent)
    with time_limit(20):
        try:
            load_town(root, env={})
        except InputError as exc:
            assert str(root) in exc.message  # it names the town file that was wrong
        codes = [main(["install", "--town", str(root), "--dry-run"]),
                 main(["corpus", "build", "--town", str(root), "--sources", "formulas"])]
    err = capsys.readouterr().err
    assert set(codes) <= {0, 1, 2, 3}, err[-3000:]
    assert "Traceback" not in err
    after = files_under(root.parent)
    assert written(before, after) == set()  # a dry run writes nothing

