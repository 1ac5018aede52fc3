"""CLI contract: exact forms other tools call, exit codes, JSON output, error shape."""
import json

from gt_finetune.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_formulas_check_ok_and_errors_exit_1(capsys, tmp_path):
    good = tmp_path / "good.formula.toml"
    good.write_text('formula = "good"\n[[steps]]\nid = "a"\ntitle = "A"\n')
    code, out, _ = run(capsys, "formulas", "check", str(good))
    assert code == 0 and out.strip() == "1 formula file(s) OK"
    cycle = tmp_path / "cycle.formula.toml"
    cycle.write_text('formula = "c"\n[[steps]]\nid = "a"\ntitle = "A"\nneeds = ["b"]\n'
                     '[[steps]]\nid = "b"\ntitle = "B"\nneeds = ["a"]\n')
    bad_toml = tmp_path / "bad.formula.toml"
    bad_toml.write_text('formula = "b"\n[[steps]\n')
    code, _, err = run(capsys, "formulas", "check", str(good), str(cycle), str(bad_toml))
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert str(cycle) in errors[0] and "cycle detected" in errors[0]
    assert str(bad_toml) in errors[1] and "invalid TOML" in errors[1]


def test_formulas_list_shows_the_packaged_formula(capsys):
    code, out, _ = run(capsys, "formulas", "list")
    assert code == 0
    assert any(line.split("\t")[0] == "finetune-lora" for line in out.splitlines())


def test_status_of_unknown_job_is_a_user_error_with_hint(capsys):
    code, _, err = run(capsys, "status", "ft-zzzz")
    assert code == 1
    assert "error: no job record for `ft-zzzz`" in err
    assert "hint: list jobs with `gt-finetune list`" in err


def test_json_errors_are_one_object_on_stderr(capsys):
    code, out, err = run(capsys, "status", "ft-zzzz", "--json")
    assert code == 1 and out == ""
    payload = json.loads(err.strip().splitlines()[-1])
    assert payload["schema_version"] == 1 and payload["code"] == "input" and "ft-zzzz" in payload["error"]


def test_list_json_is_an_array(capsys):
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0 and json.loads(out) == []


def test_bad_var_syntax(capsys):
    code, _, err = run(capsys, "run", "finetune-lora", "--var", "max_steps")
    assert code == 1 and "`--var max_steps` is not key=value" in err


def test_step_needs_exactly_one_of_job_or_bead(capsys):
    code, _, err = run(capsys, "step", "train")
    assert code == 2 and "give exactly one of --job or --bead" in err


def test_unknown_formula_lists_where_it_looked(capsys):
    code, _, err = run(capsys, "run", "no-such-formula")
    assert code == 1 and "no-such-formula" in err and "gt-finetune formulas list" in err


def test_town_env_pointing_nowhere_is_explained(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GT_TOWN_ROOT", str(tmp_path))
    code, _, err = run(capsys, "list")
    assert code == 1 and "GT_TOWN_ROOT points at" in err


def test_every_command_opens_a_store_made_by_another(isolated):
    """The engine (doltlite or sqlite3) is chosen when the package loads, so no command path can load
    sqlite3 first and then fail to open a doltlite store made by an earlier command."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GT_FINETUNE_HOME": str(isolated)}
    for argv in (["list"], ["corpus", "rules"], ["corpus", "list"], ["status", "--json"]):
        proc = subprocess.run([sys.executable, "-m", "gt_finetune", *argv], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (argv, proc.stderr[-500:])
