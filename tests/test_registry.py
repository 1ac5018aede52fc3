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
