"""The acceptance check: a real browser (headless Chromium) renders the report page — its loss
chart, its tables — with no blocked load in the console, and leaves a screenshot to look at.

Skipped without Chromium unless GT_FINETUNE_REQUIRE_CHROMIUM=1 (CI sets it), which makes that a
failure. Screenshots go to $GT_FINETUNE_TEST_ARTIFACTS, else build/test-artifacts/.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gt_finetune.report import write_job_report
from gt_finetune.session import open_session

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0")
PNG = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    found = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).is_file()), None)
    if found is None:
        if os.environ.get("GT_FINETUNE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("GT_FINETUNE_REQUIRE_CHROMIUM=1 but Chromium is not installed (no `chromium` on PATH or "
                        "at /usr/bin/chromium): install it, e.g. `apt-get install chromium`")
        pytest.skip("Chromium is not installed (GT_FINETUNE_REQUIRE_CHROMIUM=1 makes this a failure)")
    return found


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Content Security Policy" not in proc.stderr, "the page tried to load something: " + proc.stderr[-3000:]
    return proc


def artifacts() -> Path:
    folder = Path(os.environ.get("GT_FINETUNE_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def section(dom: str, element_id: str) -> str:
    found = re.search(rf'<section id="{element_id}">(.*?)</section>', dom, re.S)
    assert found, f"no #{element_id} in the rendered page"
    return found.group(1)


def screenshot(page: Path, profile: Path, name: str) -> Path:
    shot = artifacts() / name
    shot.unlink(missing_ok=True)
    browse(page, profile, f"--screenshot={shot}", "--window-size=1280,3000")
    assert shot.read_bytes()[:8] == PNG and shot.stat().st_size > 20_000, f"{shot} is not a full screenshot"
    return shot


def test_chromium_renders_the_loss_chart_and_tables_of_a_trained_job(trained_job, tmp_path):
    page = write_job_report(open_session(home=str(trained_job.home), quiet=True), trained_job.id)
    dom = browse(page, tmp_path / "profile", "--dump-dom").stdout
    assert f'data-job="{trained_job.id}"' in dom
    points = re.search(r'<polyline[^>]*class="line series-train"[^>]*points="([^"]+)"|'
                       r'<polyline[^>]*points="([^"]+)"[^>]*class="line series-train"', section(dom, "loss"))
    assert points and len((points.group(1) or points.group(2)).split()) == 4
    assert len(re.findall(r"<tr>", section(dom, "corpus"))) >= 10
    assert len(re.findall(r"<tr>", section(dom, "timeline"))) >= 7
    assert "failed: no promptfoo config" in section(dom, "eval")
    screenshot(page, tmp_path / "profile", "report.png")


@pytest.mark.slow
def test_chromium_renders_the_eval_tables_and_pass_rate_chart_of_an_evaluated_job(evaluated_jobs, tmp_path):
    job = evaluated_jobs[0]
    page = write_job_report(open_session(home=str(job.home), quiet=True), job.id)
    dom = browse(page, tmp_path / "profile", "--dump-dom").stdout
    evaluation = section(dom, "eval")
    families = re.search(r'<table class="passrates">(.*?)</table>', evaluation, re.S).group(1)
    assert len(re.findall(r"<tr>", families)) == 1 + 7 + 1  # header, six GT-Bench families and held-out turns, all
    assert len(re.findall(r'<rect[^>]*class="bar series-tuned-context"', evaluation)) == 8
    assert "<details>" in evaluation  # the tuned model's failures, with its answers
    assert "held-out loss, tuned" in section(dom, "loss")
    screenshot(page, tmp_path / "profile", "report-evaluated.png")
