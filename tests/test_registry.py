"""The model registry: lineage, tainting with a reason, an append-only audit log, re-openable."""
from gt_finetune.registry import Registry


def test_register_taint_and_audit_survive_reopening(tmp_path):
    reg = Registry(tmp_path)
    reg.register(model_id="ft-a-1", job_id="ft-a", corpus_id="corpus-1", dataset_id="sha256:d1", train_dir="/t1",
                 base_model="smollm2-135m-instruct")
    reg.register(model_id="ft-b-1", job_id="ft-b", corpus_id="corpus-2", dataset_id="sha256:d2", train_dir="/t2",
                 base_model="smollm2-135m-instruct")
    tainted = reg.taint(["corpus-2", "corpus-9"], "trained on forgotten records")
    assert [(m.id, m.state, m.reason) for m in tainted] == [("ft-b-1", "tainted", "trained on forgotten records")]
    again = Registry(tmp_path)  # migrations run once; state persists
    assert {m.id: m.state for m in again.models()} == {"ft-a-1": "candidate", "ft-b-1": "tainted"}
    assert [(a["action"], a["subject"]) for a in again.audit()] == [
        ("register", "ft-a-1"), ("register", "ft-b-1"), ("taint", "ft-b-1")]
    assert again.audit()[-1]["detail"] == {"corpus": "corpus-2", "reason": "trained on forgotten records",
                                           "was": "candidate"}


def test_registering_twice_keeps_the_first_entry(tmp_path):
    reg = Registry(tmp_path)
    for _ in range(2):
        reg.register(model_id="ft-a-1", job_id="ft-a", corpus_id="corpus-1", dataset_id="d", train_dir="/t",
                     base_model="m")
    assert len(reg.models()) == 1
    assert [a["action"] for a in reg.audit()] == ["register"]


def test_a_models_life_review_deploy_supersede_rollback(tmp_path):
    import pytest

    r = Registry(tmp_path)
    for n in (1, 2):
        r.register(model_id=f"ft-a-m{n}", job_id=f"ft-a{n}", corpus_id="c", dataset_id="d", train_dir="t",
                   base_model="b")
    r.set_state("ft-a-m1", "approved", "witness: good")
    r.deployed("ft-a-m1", alias="ft-local", deployment="dep-1")
    r.set_state("ft-a-m2", "approved", "witness: better")
    r.deployed("ft-a-m2", alias="ft-local", deployment="dep-2")
    assert (r.model("ft-a-m1").state, r.model("ft-a-m1").superseded_by) == ("superseded", "ft-a-m2")
    assert r.model("ft-a-m2").state == "deployed"
    back = r.rolled_back("dep-2")
    assert [(m.id, m.state) for m in back] == [("ft-a-m2", "approved"), ("ft-a-m1", "deployed")]
    assert [a["action"] for a in r.audit()][-3:] == ["deployed", "rollback", "deployed"]
    assert r.find("ft-a-m2").id == "ft-a-m2" and r.find("ft-a1").id == "ft-a-m1"
    with pytest.raises(KeyError, match="2 models matching `ft-a-m`"):
        r.find("ft-a-m")
    with pytest.raises(ValueError, match="unknown model state `done`"):
        r.set_state("ft-a-m1", "done", "x")


def test_a_corpus_fingerprint_goes_stale_when_the_town_changes(tmp_path):
    from gt_finetune.corpus.harvest import fingerprint, staleness
    from gt_finetune.corpus import CorpusSpec

    formulas = tmp_path / "formulas"
    formulas.mkdir()
    (formulas / "a.formula.toml").write_text('formula = "a"\n')
    (formulas / "b.formula.toml").write_text('formula = "b"\n')
    fp = fingerprint(CorpusSpec(inputs=(("formulas", str(formulas)),)), None)
    assert staleness(fp) == []
    (formulas / "a.formula.toml").write_text('formula = "a"\nversion = 2\n')
    (formulas / "b.formula.toml").unlink()
    assert staleness(fp) == [f"{formulas / 'a.formula.toml'} changed", f"{formulas / 'b.formula.toml'} is gone"]
