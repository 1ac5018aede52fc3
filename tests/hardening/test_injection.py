"""Formula vars and user-supplied names cannot escape the workspace, and nothing reaches a shell.

Names (job ids, corpus ids, deployments) become path components, so a path, `..`, a NUL byte or a
newline where a name belongs is an InputError before anything is read or written. Vars that are
paths (`source`, `replay`, `suite`, `base_model`) may point anywhere for reading; every write stays
in GT_FINETUNE_HOME. `bd` and `gt` get argument lists, so hostile text arrives as one literal argument.
"""
import ast
import json
import os
import sys
from pathlib import Path

import pytest

import gt_finetune
from gt_finetune.beads import BdStore
from gt_finetune.cli import main
from gt_finetune.errors import InputError
from gt_finetune.models import resolve_model
from gt_finetune.workspace import safe_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
import fake_actions  # noqa: E402
from fake_town import make_town  # noqa: E402

PACKAGE = Path(gt_finetune.__file__).resolve().parent
FAKE_GT = Path(__file__).resolve().parents[1] / "fakes" / "gt"
HOSTILE_NAMES = ["../../etc/passwd", "/etc/passwd", "a/b", "..", ".hidden", "ft-1\x00x", "ft-1\nft-2", "ft-*",
                 "", "x" * 200]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files_under(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, int]:
    """Every file below `root` (not below `skip`) with its mtime: what a command may not touch.

    The one-trainer-per-machine lock in `~/.cache/gt-finetune` is shared by every workspace by design.
    """
    skip += (Path.home() / ".cache" / "gt-finetune",)
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and not any(p.is_relative_to(s) for s in skip)}


# -- names that become paths ------------------------------------------------------------------

@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_safe_name_refuses_anything_but_one_plain_name(value):
    with pytest.raises(InputError) as err:
        safe_name(value, what="job id", hint="list jobs with `gt-finetune list`")
    assert err.value.message.startswith("job id `") and "is not a name" in err.value.message
    assert "\n" not in err.value.message and "\x00" not in err.value.message  # one printable line
    assert err.value.hint == "list jobs with `gt-finetune list`"


@pytest.mark.parametrize("value", ["ft-7k2", "ft-7k2.1", "hq-wisp-9sw29", "corpus-20261126T103134-34c4d8f304cc",
                                   "3f9a2e1b7d0c", "dep_01"])
def test_safe_name_accepts_the_ids_gt_finetune_prints(value):
    assert safe_name(value, what="id") == value


@pytest.mark.parametrize("command", [["status"], ["resume"], ["pause"], ["cancel", "--reason", "x"],
                                     ["step", "review", "--job"], ["eval"]])
@pytest.mark.parametrize("job_id", ["../../etc/passwd", "/etc/passwd", "ft-1/../../x", "ft-1\x00", "ft-1\nx"])
def test_a_job_id_that_is_a_path_is_an_input_error(capsys, isolated, command, job_id):
    code, out, err = run_cli(capsys, *command, job_id)
    assert code == 1, err
    assert "error: job id `" in err and "is not a name" in err
    assert "hint: list jobs with `gt-finetune list`" in err
    assert not (isolated / "jobs").exists()


def test_a_dataset_ref_is_a_path_to_read_or_an_ft_job_id(isolated, tmp_path):
    from gt_finetune.dataset.show import find_dataset

    with pytest.raises(InputError, match="job id `ft-../../outside` is not a name"):
        find_dataset(isolated, "ft-../../outside")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "manifest.json").write_text("{}")
    assert find_dataset(isolated, str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"  # read where it is


def _job_file(path: Path, formula: Path) -> dict:
    """A job record whose steps up to review are done: `step review` would save it straight away."""
    steps = {s: {"state": "done", "action": s, "output": "/nonexistent"} for s in
             ("corpus", "dataset", "plan", "train", "eval")}
    job = {"schema_version": 1, "job_id": "ft-evil", "formula": "finetune-lora", "formula_path": str(formula),
           "run": "x", "vars": {}, "created_at": "2026-11-26T00:00:00Z", "steps": {**steps, "review": {}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job))
    return job


def test_a_job_record_outside_the_workspace_is_neither_read_nor_rewritten(capsys, isolated, tmp_path):
    """Before names were checked, `step review --job ../../outside/evil` loaded this file and saved it back."""
    outside = tmp_path / "outside" / "evil.json"
    _job_file(outside, PACKAGE / "data" / "formulas" / "finetune-lora.formula.toml")
    before = outside.read_bytes()
    code, _, err = run_cli(capsys, "step", "review", "--job", "../../outside/evil")
    assert code == 1 and "job id `../../outside/evil` is not a name" in err
    assert outside.read_bytes() == before


@pytest.mark.parametrize("corpus_id", ["../outside/corpus-x", "/etc/passwd", "corpus-*", "a\x00b", ""])
@pytest.mark.parametrize("command", ["show", "report"])
def test_a_corpus_id_that_is_a_path_or_glob_is_an_input_error(capsys, isolated, tmp_path, corpus_id, command):
    outside = tmp_path / "outside" / "corpus-x"  # a corpus-looking folder the old glob reached through `..`
    outside.mkdir(parents=True)
    (outside / "manifest.json").write_text(json.dumps({"id": "corpus-x", "counts": {}}))
    (outside / "health.json").write_text(json.dumps({"dropped": [], "stale": [], "conflicts": [], "tokens": {}}))
    (isolated / "corpus").mkdir(parents=True)
    code, _, err = run_cli(capsys, "corpus", command, corpus_id)
    assert code == 1, err
    assert "error: corpus id `" in err and "is not a name" in err and "hint: list them" in err
    assert sorted(p.name for p in outside.iterdir()) == ["health.json", "manifest.json"]  # no report written


@pytest.mark.parametrize("deployment", ["../../outside/dep", "/etc/passwd", "dep\n1"])
def test_a_deployment_that_is_a_path_is_an_input_error(capsys, isolated, tmp_path, deployment):
    code, _, err = run_cli(capsys, "rollback", deployment)
    assert code == 1 and "error: deployment `" in err and "is not a name" in err


def test_base_model_is_an_alias_or_a_folder_to_read(isolated, tmp_path):
    with pytest.raises(InputError, match="neither a known alias"):
        resolve_model("../../../etc", home=isolated)
    with pytest.raises(InputError, match="neither a known alias"):
        resolve_model("smollm2-135m-instruct/../../x", home=isolated)
    model = tmp_path / "anywhere" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    assert resolve_model(str(model), home=isolated) == model  # a path is read where it is
    assert not isolated.exists()  # and nothing was written for it


def test_a_corpus_source_outside_the_workspace_is_read_and_nothing_is_written_beside_it(
        capsys, isolated, tmp_path, monkeypatch):
    """`source` may point anywhere (it is read); the corpus and every other write land in the workspace."""
    from gt_finetune import actions

    fake_actions.install(monkeypatch)
    monkeypatch.setitem(actions.ACTIONS, "corpus", actions.Action("corpus", actions.corpus_action))
    backup = tmp_path / "elsewhere" / "backup"
    backup.mkdir(parents=True)
    rows = [{"id": f"hb-{i}", "title": f"Fix flaky test {i}", "status": "closed", "issue_type": "bug",
             "close_reason": f"Pinned the clock in test {i} and reran it 200 times.",
             "created_by": "harbor/polecats/nux"} for i in range(3)]
    (backup / "issues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = files_under(tmp_path, skip=(isolated,))
    code, out, err = run_cli(capsys, "run", "finetune-lora", "--var", f"source={backup}/../backup",
                             "--var", "force=true", "--var", "replay=../../../../etc/passwd",
                             "--var", "suite=/etc/promptfooconfig.yaml", "--var", "base_model=../../../etc")
    assert code == 0, err
    assert files_under(tmp_path, skip=(isolated,)) == before
    (corpus,) = (isolated / "corpus").glob("corpus-*")
    assert json.loads((corpus / "manifest.json").read_text())["counts"]["records"] == 3


# -- no shell anywhere ------------------------------------------------------------------------

SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
               ("asyncio", "create_subprocess_shell"), ("pty", "spawn")}


def _shell_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    alias = {}  # local name -> module, for `import subprocess as sp`
    spawners = set()  # names imported from subprocess: `from subprocess import run`
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            alias.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if (node.module, a.name) in SHELL_CALLS:
                    found.append(f"{path}:{node.lineno}: from {node.module} import {a.name}")
                if node.module == "subprocess":
                    spawners.add(a.asname or a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (alias.get(node.value.id, node.value.id), node.attr) in SHELL_CALLS:
                found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{path}:{node.lineno}: shell={ast.unparse(kw.value)}")
            func = node.func
            subprocess_call = (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                               and alias.get(func.value.id) == "subprocess"
                               or isinstance(func, ast.Name) and func.id in spawners)
            if subprocess_call and node.args and isinstance(node.args[0], (ast.JoinedStr, ast.BinOp)) \
                    or subprocess_call and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                name = func.attr if isinstance(func, ast.Attribute) else func.id
                found.append(f"{path}:{node.lineno}: {name}() of a string, not an argument list")
    return found


def test_no_module_runs_a_shell():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    assert [use for f in files for use in _shell_uses(f)] == []


def test_the_shell_scan_sees_every_form_it_forbids(tmp_path):
    sample = tmp_path / "bad.py"
    sample.write_text("import os, subprocess as sp\nfrom subprocess import getoutput, Popen\nos.system('x')\n"
                      "os.popen('x')\nsp.run(['a'], shell=True)\nsp.run(f'bd {x}')\nPopen('ls')\n"
                      "sp.run(['a'], shell=False)\nsp.run(['a'])\nstore.run('show', 'ft-1')\n")
    assert sorted(u.split(": ", 1)[1] for u in _shell_uses(sample)) == sorted([
        "from subprocess import getoutput", "os.system", "os.popen", "shell=True",
        "run() of a string, not an argument list", "Popen() of a string, not an argument list"])


@pytest.fixture
def town_with_logged_gt(tmp_path, fake_bin, monkeypatch):
    """A fake town; a `gt` first on PATH that logs its whole argv, then runs the fake `gt`."""
    town, rig = make_town(tmp_path / "gt")
    BdStore(workdir=rig).set_config("status.custom", "review:wip")
    bin_dir = tmp_path / "logbin"
    bin_dir.mkdir()
    log = tmp_path / "logs" / "gt-argv.jsonl"
    log.parent.mkdir()
    wrapper = bin_dir / "gt"
    wrapper.write_text(f"#!{sys.executable}\nimport json, runpy, sys\n"
                       f"with open({str(log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
                       f"runpy.run_path({str(FAKE_GT)!r}, run_name='__main__')\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GT_LOG", str(tmp_path / "logs" / "gt-mail.jsonl"))
    fake_actions.install(monkeypatch)
    return town, rig, log


def test_hostile_vars_reach_gt_and_bd_as_single_literal_arguments(capsys, isolated, tmp_path, town_with_logged_gt):
    town, rig, gt_log = town_with_logged_gt
    marker = tmp_path / "pwned"
    # addresses hold no whitespace (that is refused: see below), so these use ${IFS} as a shell would
    notify = f"overseer;touch${{IFS}}{marker}-1&&echo$(touch${{IFS}}{marker}-2)"
    reviewers = [f"$(touch${{IFS}}{marker}-3)", f"`touch${{IFS}}{marker}-4`", f"'\";touch${{IFS}}{marker}-6"]
    scope = f"town'; touch {marker}-7 #"
    before = files_under(tmp_path, skip=(isolated, town, gt_log.parent))
    code, out, err = run_cli(capsys, "run", "finetune-lora", "--town", str(town), "--var", f"notify={notify}",
                             "--var", f"reviewers={','.join(reviewers)}", "--var", f"scope={scope}",
                             "--var", f"torchrun_args=--rdzv_endpoint=$(touch {marker}-8)")
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    assert not list(tmp_path.glob("pwned*"))
    assert files_under(tmp_path, skip=(isolated, town, gt_log.parent)) == before  # nothing written elsewhere

    sent = [json.loads(line) for line in gt_log.read_text().splitlines()]
    assert {(*argv[:2], argv[3], *argv[5:]) for argv in sent} == {("mail", "send", "-s", "--stdin")}
    assert {argv[2] for argv in sent} == {notify, *reviewers}  # each address one literal argument, as typed
    bd_calls = [json.loads(line)["argv"] for line in (rig / ".beads" / "fake-bd.log").read_text().splitlines()]
    assert all(isinstance(a, str) for argv in bd_calls for a in argv)
    assert not any(marker.name in a for argv in bd_calls for a in argv)  # vars go to bd on stdin, not argv
    description = BdStore(workdir=rig).show(job_id).description
    assert f"- notify = {notify}\n" in description and f"- scope = {scope}\n" in description
    record = json.loads((isolated / "jobs" / f"{job_id}.json").read_text())
    assert record["vars"]["reviewers"] == ",".join(reviewers)


def test_an_address_with_whitespace_is_refused_before_anything_runs(capsys, isolated, tmp_path, town_with_logged_gt):
    town, _, gt_log = town_with_logged_gt
    code, _, err = run_cli(capsys, "run", "finetune-lora", "--town", str(town),
                           "--var", f"reviewers=mayor/\ntouch {tmp_path}/pwned")
    assert code == 1 and "error: var `reviewers`: `mayor/\ntouch" in err and "is not a mail address" in err
    assert not gt_log.exists() and not list(tmp_path.glob("pwned*"))


def test_a_recipient_that_looks_like_a_flag_cannot_become_one(capsys, isolated, tmp_path, town_with_logged_gt):
    """`--help` or `-sX` as an address would reach `gt mail send` as an option: refused up front,
    and the notifier itself never passes one on."""
    from gt_finetune.town.discover import load_town
    from gt_finetune.town.notify import Notifier

    code, _, err = run_cli(capsys, "run", "finetune-lora", "--var", "notify=overseer,--help")
    assert code == 1 and "error: var `notify`: `--help` is not a mail address" in err
    assert not (isolated / "jobs").exists()
    town, _, gt_log = town_with_logged_gt
    Notifier(town=load_town(town), home=tmp_path / "home").mail("-sX", "FT_READY: ft-1", "body")
    assert not gt_log.exists()
    assert "mail `FT_READY: ft-1` was not sent: `-sX` is not a mail address" in capsys.readouterr().err


def test_a_nul_byte_in_a_var_is_an_input_error_not_a_crash(capsys, isolated, tmp_path):
    """A NUL cannot go into an argument or a path; before, it reached `gt mail send` and crashed (exit 4)."""
    code, _, err = run_cli(capsys, "run", "finetune-lora", "--var", "notify=overseer\x00mayor/")
    assert code == 1 and "error: `notify` holds a NUL byte" in err and "(from --var)" in err
    formula = tmp_path / "nul.formula.toml"
    formula.write_text('formula = "nul"\n[vars.notify]\ndefault = "a\\u0000b"\n'
                       '[[steps]]\nid = "s"\ntitle = "S"\n[steps.finetune]\naction = "review"\n')
    code, _, err = run_cli(capsys, "formulas", "check", str(formula))
    assert code == 1 and f"{formula}:3: `vars.notify.default`: `notify` holds a NUL byte" in err
    assert not (isolated / "jobs").exists()


@pytest.mark.parametrize("bead_id", ["--help", "-s", "ft-1 --all", "", "ft\x00"])
def test_a_bead_id_that_looks_like_a_flag_never_reaches_bd(fake_bin, tmp_path, bead_id):
    _, rig = make_town(tmp_path / "town")
    store = BdStore(workdir=rig)
    for call in (lambda: store.show(bead_id), lambda: store.close(bead_id, "x"), lambda: store.comment(bead_id, "x"),
                 lambda: store.update(bead_id, status="open"), lambda: store.history(bead_id)):
        with pytest.raises(InputError, match="is not a bead id"):
            call()
    assert not (rig / ".beads" / "fake-bd.log").exists()
