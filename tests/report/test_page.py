"""`gt-finetune report <ft-id>`: one self-contained page whose sections say what each stage did,
or why it has nothing to show."""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import pytest

from gt_finetune.cli import main
from gt_finetune.jobs import JobRecord
from gt_finetune.report import write_job_report
from gt_finetune.report.gather import gather_job
from gt_finetune.report.page import SECTIONS, render_page
from gt_finetune.session import open_session
from gt_finetune.workspace import read_manifest

HOSTILE = "<script>alert(1)</script>"


def report(capsys, job, *extra) -> tuple[int, str, str]:
    code = main(["report", job.id, "--home", str(job.home), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def section(page: str, element_id: str) -> str:
    found = re.findall(rf'<section id="{element_id}">(.*?)</section>', page, re.S)
    assert len(found) == 1, f"section #{element_id}: found {len(found)}"
    return found[0]


def test_a_trained_job_whose_eval_failed_shows_every_stage(capsys, trained_job):
    code, out, err = report(capsys, trained_job)
    assert code == 0, err
    path = trained_job.home / "reports" / f"{trained_job.id}.html"
    assert out.splitlines()[-1] == str(path)
    page = path.read_text(encoding="utf-8")
    assert [m for m in re.findall(r'<section id="([a-z]+)">', page)] == [s[0] for s in SECTIONS]

    job = JobRecord.load(trained_job.home, trained_job.id)
    corpus, plan = read_manifest(job.output_of("corpus")), read_manifest(job.output_of("plan"))
    timeline = section(page, "timeline")
    assert trained_job.id in timeline and "no promptfoo config at" in timeline
    assert re.search(r'<span class="badge bad">failed</span></td><td>', timeline)
    assert f"<dd>{corpus['counts']['records']}</dd>" in section(page, "corpus")
    assert "beads" in section(page, "corpus")
    assert f"{plan['estimate']['total_bytes'] / 1e9:.2f} GB" in section(page, "plan")
    assert '<span class="badge ok">GO</span>' in section(page, "plan")
    points = re.search(r'<polyline class="line series-train" points="([^"]+)"', section(page, "loss")).group(1)
    assert len(points.split()) == 4  # one point per step
    assert 'data-state="failed"' in section(page, "eval") and "failed: no promptfoo config" in section(page, "eval")
    card = section(page, "card")
    assert "draft from the job" in card and "LoRA (r=8, alpha=16)" in card and "<h4>Corpus</h4>" in card


def test_a_job_that_failed_in_its_corpus_step_says_why_each_section_is_empty(capsys, early_failed_job):
    code, out, err = report(capsys, early_failed_job)
    assert code == 0, err
    page = open(out.splitlines()[-1], encoding="utf-8").read()
    assert f'<body data-job="{early_failed_job.id}" data-state="failed">' in page
    assert re.search(r'<p class="note bad missing" data-state="failed">failed: you have \d+ usable examples',
                     section(page, "corpus"))
    for element_id in ("plan", "loss", "eval"):
        assert '<p class="note muted missing" data-state="pending">not run yet</p>' in section(page, element_id)
    assert "no model yet: training not run yet" in section(page, "card")
    assert f"resume: gt-finetune resume {early_failed_job.id}" in section(page, "timeline")


def test_text_from_beads_vars_and_errors_is_escaped(early_failed_job, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(early_failed_job.home, home)
    job = JobRecord.load(home, early_failed_job.id)
    job.vars["notify"] = f'"><img src=x onerror=alert(2)>{HOSTILE}'
    job.steps["corpus"].error = f"{HOSTILE} & more"
    job.save(home)
    session = open_session(home=str(home), quiet=True)

    class HostileTitles:
        """The real store, but every bead's title is an attack."""
        def __getattr__(self, name):
            return getattr(session.store, name)

        def show(self, bead_id):
            return replace(session.store.show(bead_id), title=HOSTILE)

    page = write_job_report(replace(session, store=HostileTitles()), job.job_id).read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section(page, "timeline")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in section(page, "timeline")
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in section(page, "timeline")
    assert "<title>" + early_failed_job.id in page


@pytest.mark.parametrize("which", ["trained_job", "early_failed_job"])
def test_the_page_loads_nothing_from_the_network(capsys, request, which):
    job = request.getfixturevalue(which)
    _, out, _ = report(capsys, job)
    page = open(out.splitlines()[-1], encoding="utf-8").read()
    assert not re.search(r"""\b(?:src|href|action)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, re.I)
    assert not re.search(r"<(?:script|link|img|iframe|object|embed)\b", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))
    assert "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';" in page


def test_the_page_is_written_atomically(early_failed_job, tmp_path, monkeypatch):
    session = open_session(home=str(early_failed_job.home), quiet=True)
    out = tmp_path / "reports" / "job.html"
    first = write_job_report(session, early_failed_job.id, out).read_text(encoding="utf-8")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("gt_finetune.workspace.os.replace", disk_full)
    with pytest.raises(OSError):
        write_job_report(session, early_failed_job.id, out)
    assert out.read_text(encoding="utf-8") == first
    assert [p.name for p in out.parent.iterdir()] == ["job.html"]  # no half-written temp file left behind


def test_out_and_json(capsys, early_failed_job, tmp_path):
    target = tmp_path / "pages" / "mine.html"
    code, out, err = report(capsys, early_failed_job, "--out", str(target))
    assert code == 0, err
    assert out.splitlines()[-1] == str(target) and target.is_file()
    code, out, err = report(capsys, early_failed_job, "--json")
    assert code == 0, err
    assert json.loads(out) == {"schema_version": 1, "id": early_failed_job.id,
                               "path": str(early_failed_job.home / "reports" / f"{early_failed_job.id}.html")}


def test_an_unknown_job_is_named_with_the_command_that_lists_jobs(capsys, isolated):
    code = main(["report", "ft-nope"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "error: no job record for `ft-nope`" in err
    assert "hint: list jobs with `gt-finetune list`" in err


def test_a_stage_output_that_cannot_be_read_is_named_and_the_rest_still_renders(capsys, trained_job):
    session = open_session(home=str(trained_job.home), quiet=True)
    facts = gather_job(session, trained_job.id)
    page = render_page(replace(facts, plan={**facts.plan, "budget": "not a budget"}))
    assert "could not read this stage&#x27;s output (AttributeError:" in section(page, "plan")
    assert "<polyline" in section(page, "loss") and "<h4>Corpus</h4>" in section(page, "card")
    assert f"warning: report part `plan` of job `{trained_job.id}` could not be drawn" in capsys.readouterr().err


def test_an_exported_card_is_shown_as_written_with_its_markup_escaped(trained_job, tmp_path):
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: other\n---\n\n# tiny fine-tuned\n\n| file | note |\n|---|---|\n"
                    f"| `model.gguf` | {HOSTILE} |\n\n- **checked** by parity\n", encoding="utf-8")
    facts = gather_job(open_session(home=str(trained_job.home), quiet=True), trained_job.id)
    body = section(render_page(replace(facts, card_path=card)), "card")
    assert f"source: exported card {card}" in body
    assert '<pre class="front-matter">license: other</pre>' in body and "<h3>tiny fine-tuned</h3>" in body
    assert "<td><code>model.gguf</code></td><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in body
    assert "<li><strong>checked</strong> by parity</li>" in body


def test_a_job_still_training_says_so_where_its_numbers_will_be(trained_job):
    facts = gather_job(open_session(home=str(trained_job.home), quiet=True), trained_job.id)
    training = replace(facts.stages["train"], state="running", output=None, finished_at="")
    pending = replace(facts.stages["eval"], state="pending", error="")
    page = render_page(replace(facts, stages={**facts.stages, "train": training, "eval": pending}, train=None,
                               train_rows=(), evaluation=None))
    assert "training: no step logged yet" in section(page, "loss")
    assert f"running since {training.started_at}" in section(page, "plan")
    assert "no model yet: training running since" in section(page, "card")
    assert "not run yet" in section(page, "eval")
