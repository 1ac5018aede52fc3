"""Forgetting a session removes it from new corpus versions, its data from old ones, and taints models."""
import json
import subprocess

import pytest

from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus, list_corpora, town_inputs
from gt_finetune.corpus.forget import ForgetRule, forget
from gt_finetune.errors import InputError
from gt_finetune.registry import Registry
from gt_finetune.workspace import read_jsonl, write_json

@pytest.fixture
def corpus(isolated):
    spec = CorpusSpec(inputs=town_inputs(SAMPLE_TOWN, sources=("beads_jsonl", "transcripts")))
    return spec, build_corpus(spec, home=isolated, quiet=True)


def sessions(path):
    return {r["meta"].get("session") for r in read_jsonl(path / "records.jsonl")}


def test_forgetting_a_session_writes_a_new_version_and_taints_dependent_models(corpus, isolated):
    spec, first = corpus
    forgotten = next(r for r in read_jsonl(first.path / "records.jsonl") if r["meta"]["source"] == "transcripts")
    session = forgotten["meta"]["session"]
    said = next(m["content"] for m in forgotten["messages"] if m["role"] == "assistant" and len(m["content"]) > 30)
    dataset = isolated / "dataset" / "abc"
    dataset.mkdir(parents=True)
    write_json(dataset / "manifest.json", {"id": "sha256:abc", "inputs": [json.loads(
        (first.path / "manifest.json").read_text())["id"]]})
    (dataset / "train.jsonl").write_text('{"messages": "secret session text"}\n')
    registry = Registry(isolated)
    registry.register(model_id="ft-1-m", job_id="ft-1", corpus_id=first.id, dataset_id="sha256:abc",
                      train_dir="/x", base_model="smollm2-135m-instruct")
    registry.register(model_id="ft-2-m", job_id="ft-2", corpus_id="corpus-other", dataset_id="sha256:def",
                      train_dir="/y", base_model="smollm2-135m-instruct")

    result = forget(isolated, ForgetRule(session=session))

    (old, new, removed), = result.versions
    assert old == first.id and removed >= 1
    assert session not in sessions(isolated / "corpus" / new)
    assert not (first.path / "records.jsonl").exists()  # the old version keeps its manifest only
    assert json.loads((first.path / "manifest.json").read_text())["forgotten_into"] == new
    assert not dataset.exists()
    assert [m.id for m in result.tainted] == ["ft-1-m"]
    assert {m.id: m.state for m in registry.models()} == {"ft-1-m": "tainted", "ft-2-m": "candidate"}
    actions = [a["action"] for a in registry.audit()]
    assert actions == ["register", "register", "taint", "forget"]
    assert said not in json.dumps(registry.audit())  # the audit names the rule, ids and counts, never content
    # the next harvest keeps it out, and nothing grep-able is left in the workspace
    again = build_corpus(spec, home=isolated, quiet=True)
    assert again.id == new and again.new_records == 0
    grep = subprocess.run(["grep", "-rlF", said[:60], str(isolated)], capture_output=True, text=True)
    assert grep.stdout.split() == []


def test_dry_run_removes_nothing(corpus, isolated):
    _, first = corpus
    result = forget(isolated, ForgetRule(actor="harbor/polecats/nux"), dry_run=True)
    assert result.versions and all(new == "" for _, new, _ in result.versions)
    assert (first.path / "records.jsonl").exists()
    assert len(list_corpora(isolated)) == 1


def test_cli_needs_yes_and_one_criterion(corpus, isolated, capsys):
    assert main(["corpus", "forget", "--actor", "harbor/polecats/nux"]) == 1
    err = capsys.readouterr().err
    assert "nothing removed yet" in err and "--yes" in err
    assert main(["corpus", "forget", "--actor", "x", "--session", "y"]) == 1
    assert "exactly one of --match, --session or --actor" in capsys.readouterr().err
    assert main(["corpus", "forget", "--match", "hb-zul", "--yes"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("corpus-") and "hb-zul" not in (isolated / "corpus" / out / "records.jsonl").read_text()


def test_bad_regex_is_a_user_error():
    with pytest.raises(InputError, match="not a valid regex"):
        ForgetRule(match="(unclosed")
