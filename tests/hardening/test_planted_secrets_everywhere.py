"""Issue 15's acceptance: every planted secret — provider formats, key contexts, shell flags, PII, and
a provider key in every metadata field — is gone after a job harvests it: from every file under the
workspace, from stdout and stderr of every command an operator would run next, and from the job's
HTML report page."""
import sys
from pathlib import Path

import pytest

from gt_finetune.cli import main
from gt_finetune.corpus import harvest as harvest_mod
from gt_finetune.corpus.records import Rejected

from kit import CORPUS_JOB

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))
from planted_secrets import planted_corpus, planted_values, round2_records  # noqa: E402



@pytest.fixture
def planted(monkeypatch):
    """A `planted` source yielding both generators' records, and a rejected line quoting a secret."""
    records, secrets = planted_corpus(seed=3)
    records = records + round2_records(seed=3)[0]
    token = next(value for family, value in secrets if family == "github_token")

    def source(location, ctx):
        for i, record in enumerate(records):
            ctx.count("planted", used=1)
            yield {**record, "meta": {**record["meta"], "location": "planted", "line": i + 1}}
        yield Rejected(f"planted:{len(records) + 1}", f"not JSON near `{token}`")
        ctx.count("planted", rejected=1)

    monkeypatch.setitem(harvest_mod.SOURCES, "planted", source)
    return planted_values(seed=3)


def test_no_planted_value_reaches_a_file_an_output_or_the_report_page(planted, isolated, tmp_path, capsys):
    assert len(planted) >= 400
    formula = tmp_path / "corpus-job.formula.toml"
    formula.write_text(CORPUS_JOB)
    outputs = []

    def run(*argv: str) -> str:
        code = main(list(argv))
        out, err = capsys.readouterr()
        outputs.append(out + err)
        assert code == 0, f"`{' '.join(argv)}` exited {code}: {err[-2000:]}"
        return out

    job_id = run("run", str(formula), "--var", "source=planted:town").strip().splitlines()[-1]
    [corpus] = (isolated / "corpus").glob("corpus-*")
    for argv in (("status", job_id), ("status", job_id, "--json"), ("list", "--json"), ("corpus", "list", "--json"),
                 ("corpus", "show", corpus.name, "--json"), ("corpus", "report", corpus.name),
                 ("report", job_id, "--out", str(tmp_path / "page.html"))):
        run(*argv)
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "corpus" in page.lower() and job_id in page

    texts = {"outputs": "\n".join(outputs), "report page": page}
    for path in isolated.rglob("*"):
        if path.is_file():
            texts[str(path.relative_to(isolated))] = str(path) + "\n" + path.read_bytes().decode("utf-8", "replace")
    leaks = {where: n for where, text in texts.items() if (n := sum(value in text for value in planted))}
    assert leaks == {}, f"planted values found in {leaks}"
    records = (corpus / "records.jsonl").read_text()
    assert "<SECRET:" in records and "<PII:" in records  # the plant reached the corpus, redacted
