"""The review loop on both bead backends: approve → done + model approved; reject → failed with
the reason and the gate's guidance, resumable; mail to the transition recipients; the reviewer's
identity recorded."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gt_finetune.beads import BdStore, EmbeddedStore
from gt_finetune.cli import main
from gt_finetune.registry import Registry

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
import fake_actions  # noqa: E402
from fake_town import make_town  # noqa: E402


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def mail_log(path: Path) -> list[tuple[str, str]]:
    return [(m["to"], m["subject"].split(":")[0]) for m in map(json.loads, path.read_text().splitlines())]


@pytest.fixture(params=["embedded", "bd"])
def backend(request, capsys, isolated, tmp_path, fake_bin, monkeypatch):
    """A job in review, on the embedded store or through the fake `bd`/`gt` in a town.
    Returns (job id, extra CLI args, store, home, where the mail is logged)."""
    fake_actions.install(monkeypatch)
    monkeypatch.setenv("BD_ACTOR", "finetune/witness")
    if request.param == "embedded":
        code, out, err = cli(capsys, "run", "finetune-lora")
        assert code == 0, err
        return out.strip().splitlines()[-1], (), EmbeddedStore(isolated / "beads.db"), isolated, isolated / "mail.jsonl"
    town, rig = make_town(tmp_path / "gt")
    monkeypatch.setenv("FAKE_GT_LOG", str(tmp_path / "gt-mail.log"))
    monkeypatch.delenv("GT_FINETUNE_HOME")
    BdStore(workdir=rig).set_config("status.custom", "review:wip")
    code, out, err = cli(capsys, "run", "finetune-lora", "--town", str(town))
    assert code == 0, err
    return (out.strip().splitlines()[-1], ("--town", str(town)), BdStore(workdir=rig), town / ".gt-finetune",
            tmp_path / "gt-mail.log")


def test_approve_closes_the_job_approves_the_model_and_mails(backend, capsys):
    job_id, town, store, home, mail = backend
    before = len(mail_log(mail))
    code, out, err = cli(capsys, "review", job_id, "approve", "--reason", "beats base+context", *town)
    assert code == 0, err
    bead = store.show(job_id)
    # the fake eval's gate failed: the approval stands, with that on the record and a warning
    guidance = "safety items failed: 1; add refusal examples to the corpus or lower the learning rate"
    assert (bead.status, bead.close_reason) == (
        "closed", f"approved by finetune/witness: beats base+context\n(approved over a failed eval gate: {guidance})")
    assert f"warning: approving job `{job_id}` although its eval gate FAILED: {guidance}" in err
    assert mail_log(mail)[before:] == [("overseer", "FT_DONE")]
    code, _, err = cli(capsys, "review", job_id, "approve", "--reason", "again", *town)
    assert code == 1 and "is done, not in review" in err


def test_reject_fails_the_job_with_the_reason_and_the_gates_guidance(backend, capsys):
    job_id, town, store, home, mail = backend
    before = len(mail_log(mail))
    code, _, err = cli(capsys, "review", job_id, "reject", "--reason", "unsafe answers", *town)
    assert code == 0, err
    bead = store.show(job_id)
    assert bead.status == "blocked" and "ft:failed" in bead.labels
    notes = bead.notes
    assert "rejected in review by finetune/witness: unsafe answers" in notes
    assert "guidance: safety items failed: 1; add refusal examples" in notes
    assert f"resume: gt-finetune resume {job_id}" in notes
    assert mail_log(mail)[before:] == [("overseer", "FT_FAILED")]
    code, out, err = cli(capsys, "status", job_id, "--json", *town)
    assert code == 0, err
    assert json.loads(out)["state"] == "failed"


def test_review_needs_a_decision_and_a_reason(capsys, isolated):
    code, _, err = cli(capsys, "review", "ft-abc", "maybe", "--reason", "x")
    assert code == 2 and "'maybe' is not one of 'approve', 'reject'" in err
    code, _, err = cli(capsys, "review", "ft-abc", "approve")
    assert code == 2 and "Missing option '--reason'" in err


def test_approve_registers_the_trained_model_as_approved(capsys, isolated, monkeypatch):
    fake_actions.install(monkeypatch)
    monkeypatch.setenv("BD_ACTOR", "harbor/witness")
    _, out, _ = cli(capsys, "run", "finetune-lora")
    job_id = out.strip().splitlines()[-1]
    registry = Registry(isolated)
    registry.register(model_id=f"{job_id}-m1", job_id=job_id, corpus_id="c", dataset_id="d", train_dir="t",
                      base_model="b")
    cli(capsys, "review", job_id, "approve", "--reason", "good")
    assert registry.model(f"{job_id}-m1").state == "approved"
    assert registry.audit()[-1]["action"] == "approved" and registry.audit()[-1]["actor"] == "harbor/witness"
