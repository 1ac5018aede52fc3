"""The job state machine against DESIGN.md's table, on the embedded store."""
import pytest

from gt_finetune.beads import EmbeddedStore, lifecycle
from gt_finetune.errors import InputError


@pytest.fixture
def store(tmp_path):
    return EmbeddedStore(tmp_path / "beads.db")


def new_job(store):
    return store.create("FT: job", labels=[lifecycle.JOB_LABEL]).id


def test_happy_path_maps_each_state_to_bead_fields(store):
    job = new_job(store)
    assert lifecycle.state_of(store.show(job)) == "ready"
    bead, old = lifecycle.move(store, job, "active", stage="corpus")
    assert (old, bead.status, lifecycle.stage_of(bead)) == ("ready", "in_progress", "corpus")
    bead, _ = lifecycle.move(store, job, "active", stage="train")
    assert [x for x in bead.labels if x.startswith("ft:stage:")] == ["ft:stage:train"]
    bead, _ = lifecycle.move(store, job, "review")
    assert bead.status == "review"
    bead, _ = lifecycle.move(store, job, "done", reason="beats base")
    assert (bead.status, bead.close_reason) == ("closed", "approved: beats base")
    assert lifecycle.state_of(bead) == "done"


def test_failed_is_blocked_with_label_and_notes_then_resumable(store):
    job = new_job(store)
    lifecycle.move(store, job, "active", stage="train")
    bead, _ = lifecycle.move(store, job, "failed", reason="step `train` failed: OOM\nresume: gt-finetune resume x")
    assert bead.status == "blocked" and "ft:failed" in bead.labels
    assert "resume: gt-finetune resume x" in bead.notes
    bead, _ = lifecycle.move(store, job, "active", stage="train")
    assert "ft:failed" not in bead.labels and lifecycle.state_of(bead) == "active"


def test_cancel_closes_with_reason(store):
    job = new_job(store)
    bead, _ = lifecycle.move(store, job, "cancelled", reason="wrong source")
    assert bead.close_reason == "cancelled: wrong source"
    assert lifecycle.state_of(bead) == "cancelled"


@pytest.mark.parametrize("path, illegal", [
    ([], "review"),
    ([], "done"),
    ([("active", "corpus"), ("review", "")], "active"),
    ([("cancelled", "")], "active"),
])
def test_illegal_transitions_are_refused_with_a_clear_error(store, path, illegal):
    job = new_job(store)
    for to, stage in path:
        lifecycle.move(store, job, to, stage=stage, reason="x")
    before = store.show(job)
    with pytest.raises(InputError) as err:
        lifecycle.move(store, job, illegal, stage="eval")
    assert f"cannot go from {lifecycle.state_of(before)} to {illegal}" in err.value.message
    assert store.show(job).status == before.status


def test_same_stage_twice_is_not_a_transition(store):
    job = new_job(store)
    lifecycle.move(store, job, "active", stage="corpus")
    with pytest.raises(InputError):
        lifecycle.move(store, job, "active", stage="corpus")


def test_unknown_stage_is_refused(store):
    job = new_job(store)
    with pytest.raises(InputError, match="stage `prep` is not one of"):
        lifecycle.move(store, job, "active", stage="prep")


def test_foreign_status_is_explained(store):
    job = new_job(store)
    store.update(job, status="deferred")
    with pytest.raises(InputError, match="has status `deferred`, which is no job state"):
        lifecycle.state_of(store.show(job))
