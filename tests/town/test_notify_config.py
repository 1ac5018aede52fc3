"""config.toml `[notify]`: verbosity (quiet | transitions | milestones) and recipients per event type."""
import sys
from pathlib import Path

import pytest

from gt_finetune.cli import main
from gt_finetune.config import load_section
from gt_finetune.errors import InputError
from gt_finetune.town.notify import Notifier, NotifyConfig, Recipients
from gt_finetune.workspace import read_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
import fake_actions  # noqa: E402


def config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def sent(home: Path) -> list[tuple[str, str]]:
    path = home / "mail.jsonl"
    return [(m["to"], m["subject"].split(":")[0]) for m in read_jsonl(path)] if path.exists() else []


def run_job(capsys, *argv) -> str:
    fake_actions.install(pytest.MonkeyPatch())
    code = main(["run", "finetune-lora", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.strip().splitlines()[-1]


@pytest.mark.parametrize("state,mailed", [("ready", False), ("active", False), ("done", False),
                                          ("cancelled", False), ("failed", True), ("paused", True)])
def test_quiet_mails_only_the_states_that_need_someone(isolated, state, mailed):
    n = Notifier(town=None, home=isolated, recipients=Recipients(verbosity="quiet"))
    n.transition("ft-1", "r", state, "x")
    n.milestone("ft-1", "r", "train", "4 steps")
    assert sent(isolated) == ([("overseer", f"FT_{state.upper()}")] if mailed else [])


def test_quiet_job_mails_only_the_review_request(capsys, isolated):
    config(isolated, '[notify]\nverbosity = "quiet"\n')
    run_job(capsys)
    assert sent(isolated) == [("finetune/witness", "FT_EVAL_REVIEW"), ("overseer", "FT_EVAL_REVIEW")]


def test_milestones_mail_each_finished_step(capsys, isolated):
    config(isolated, '[notify]\nverbosity = "milestones"\n[notify.recipients]\nmilestone = ["mayor/"]\n')
    job_id = run_job(capsys)
    mail = read_jsonl(isolated / "mail.jsonl")
    milestones = [m["subject"] for m in mail if m["subject"].startswith("FT_MILESTONE")]
    assert milestones == [f"FT_MILESTONE: {job_id} {mail[0]['subject'].split()[-1]} {step} done"
                          for step in ("corpus", "dataset", "plan", "train", "eval", "review")]
    assert {m["to"] for m in mail if m["subject"].startswith("FT_MILESTONE")} == {"mayor/"}
    assert ("overseer", "FT_READY") in sent(isolated) and ("overseer", "FT_ACTIVE") in sent(isolated)


def test_recipients_per_event_type_with_default_and_review(capsys, isolated):
    config(isolated, '[notify.recipients]\ndefault = ["crew/ops"]\nactive = []\n'
                     'review = ["finetune/witness"]\nfailed = ["mayor/", "crew/ops"]\n')
    run_job(capsys)
    assert sent(isolated) == [("crew/ops", "FT_READY"), ("crew/ops", "FT_REVIEW"),  # active = []: none
                              ("finetune/witness", "FT_EVAL_REVIEW")]


def test_failure_goes_to_the_failed_recipients(capsys, isolated):
    config(isolated, '[notify.recipients]\nfailed = ["mayor/", "crew/ops"]\n')
    fake_actions.install(pytest.MonkeyPatch(), fail_on={"dataset": "no usable examples"})
    assert main(["run", "finetune-lora"]) == 1
    capsys.readouterr()
    assert sent(isolated) == [("overseer", "FT_READY"), ("overseer", "FT_ACTIVE"),
                              ("mayor/", "FT_FAILED"), ("crew/ops", "FT_FAILED")]


def test_formula_var_notify_overrides_the_config_for_one_job(capsys, isolated):
    config(isolated, '[notify.recipients]\ndefault = ["crew/ops"]\nfailed = ["mayor/"]\n')
    run_job(capsys, "--var", "notify=crew/max")
    assert {to for to, subject in sent(isolated) if subject != "FT_EVAL_REVIEW"} == {"crew/max"}


@pytest.mark.parametrize("text,problem", [
    ('[notify]\nverbosity = "loud"\n', "`verbosity` must be one of quiet, transitions, milestones, got 'loud'"),
    ('[notify.recipients]\nfinished = ["x"]\n', "`recipients.finished` is no event type"),
    ('[notify.recipients]\nfailed = "mayor/"\n', "`recipients.failed` must be a list of addresses"),
    ('[notify]\nverbosty = "quiet"\n', "unknown key(s) in [notify]: verbosty"),
])
def test_bad_notify_config_names_the_file_and_the_key(isolated, text, problem):
    config(isolated, text)
    with pytest.raises(InputError) as err:
        load_section(isolated, "notify", NotifyConfig)
    assert str(isolated / "config.toml") in err.value.message and problem in err.value.message
