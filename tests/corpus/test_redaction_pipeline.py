"""Redaction inside the harvest: planted secrets never reach any file in the workspace, nor stderr."""
import os
import sys
from pathlib import Path

import pytest

from gt_finetune.cli import main
from gt_finetune.corpus import harvest as harvest_mod
from gt_finetune.corpus.records import Rejected
from gt_finetune.workspace import read_jsonl, read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_secrets import planted_corpus  # noqa: E402


@pytest.fixture
def planted(monkeypatch, tmp_path):
    records, secrets = planted_corpus(seed=0)

    def source(location, ctx):
        for i, record in enumerate(records):
            ctx.count("planted", used=1)
            yield {**record, "meta": {**record["meta"], "location": "planted", "line": i + 1}}
        # a rejected line whose reason quotes what it read is scrubbed as well
        token = next(value for family, value in secrets if family == "github_token")
        yield Rejected("planted:0", f"not JSON near `{token}`")
        ctx.count("planted", rejected=1)

    monkeypatch.setitem(harvest_mod.SOURCES, "planted", source)
    return secrets


def test_no_planted_value_survives_anywhere_in_the_workspace(planted, isolated, capsys):
    assert len(planted) >= 300 and len({family for family, _ in planted}) >= 15
    code = main(["corpus", "build", "--beads-jsonl", "/nonexistent-is-not-read"])  # fails: proves the CLI path
    assert code == 1
    spec = harvest_mod.CorpusSpec(inputs=(("planted", ""),))
    m = harvest_mod.build_corpus(spec, home=isolated)
    assert main(["corpus", "report", m.id]) == 0
    out, err = capsys.readouterr()
    blobs = [out, err]
    for root, _, files in os.walk(isolated):
        for name in files:
            blobs.append(open(os.path.join(root, name), "rb").read().decode("utf-8", "replace"))
    text = "\n".join(blobs)
    leaked = [(family, value) for family, value in planted if value in text]
    assert leaked == [], f"{len(leaked)} planted values leaked, families {sorted({f for f, _ in leaked})}"
    manifest = read_manifest(m.path)
    assert sum(manifest["redaction"].values()) >= len(planted)
    assert m.records > 0


def test_a_record_that_cannot_be_scanned_is_dropped_and_counted(monkeypatch, isolated):
    def source(location, ctx):
        ctx.count("odd", used=2)
        yield {"messages": [{"role": "user", "content": "bad \ud800 surrogate"},
                            {"role": "assistant", "content": "x" * 40}],
               "tools": [], "meta": {"source": "odd", "location": "odd", "line": 1, "content_hash": "sha256:1"}}
        yield {"messages": [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "fine too " * 5}],
               "tools": [], "meta": {"source": "odd", "location": "odd", "line": 2, "content_hash": "sha256:2"}}

    monkeypatch.setitem(harvest_mod.SOURCES, "odd", source)
    m = harvest_mod.build_corpus(harvest_mod.CorpusSpec(inputs=(("odd", ""),)), home=isolated, quiet=True)
    assert m.records == 1
    rejected = read_jsonl(m.path / "rejected.jsonl")
    assert [r["where"] for r in rejected] == ["odd:1"] and rejected[0]["reason"].startswith("cannot be scanned: ")
    assert read_manifest(m.path)["accounting"]["odd"] == {"lines": 2, "used": 1, "rejected": 1}
