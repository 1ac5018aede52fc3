"""One contract, two backends: the embedded SQLite store and `bd` (a fake speaking bd's argv/JSON)."""
import json

import pytest

from gt_finetune.beads import BdStore, EmbeddedStore
from gt_finetune.errors import ExternalError, InputError


@pytest.fixture(params=["embedded", "bd"])
def store(request, tmp_path, fake_bin):
    if request.param == "embedded":
        return EmbeddedStore(tmp_path / "beads.db", prefix="ft")
    rig = tmp_path / "finetune" / "mayor" / "rig"
    (rig / ".beads").mkdir(parents=True)
    (rig / ".beads" / "config.yaml").write_text("issue-prefix: ft\n")
    s = BdStore(workdir=rig)
    s.set_config("status.custom", "review:wip")
    return s


def test_create_show_roundtrip(store):
    bead = store.create("FT: first", description="body\nwith lines", labels=["ft:job", "x"],
                        metadata={"formula": "finetune-lora"})
    assert bead.id.startswith("ft-")
    shown = store.show(bead.id)
    assert (shown.title, shown.description, shown.status) == ("FT: first", "body\nwith lines", "open")
    assert set(shown.labels) == {"ft:job", "x"}
    assert shown.metadata == {"formula": "finetune-lora"}


def test_ids_are_unique_and_beads_style(store):
    ids = {store.create(f"bead {i}").id for i in range(5)}
    assert len(ids) == 5
    assert all(i.split("-", 1)[0] == "ft" and 3 <= len(i.split("-", 1)[1]) <= 12 for i in ids)


def test_update_status_labels_notes_metadata(store):
    bead = store.create("job", labels=["ft:stage:corpus"], metadata={"a": 1})
    updated = store.update(bead.id, status="in_progress", add_labels=["ft:stage:train"],
                           remove_labels=["ft:stage:corpus"], append_notes="first note", metadata={"b": 2})
    assert updated.status == "in_progress"
    assert updated.labels == ("ft:stage:train",)
    assert updated.metadata == {"a": 1, "b": 2}
    again = store.update(bead.id, append_notes="second note")
    assert again.notes == "first note\nsecond note"


def test_custom_review_status_is_accepted_and_unknown_status_refused(store):
    bead = store.create("job")
    assert store.update(bead.id, status="review").status == "review"
    with pytest.raises((InputError, ExternalError)) as err:
        store.update(bead.id, status="done")
    assert "done" in err.value.message


def test_close_sets_reason(store):
    bead = store.create("job")
    closed = store.close(bead.id, "approved: beats base")
    assert (closed.status, closed.close_reason) == ("closed", "approved: beats base")


def test_list_filters_by_label_and_hides_closed_by_default(store):
    a = store.create("a", labels=["ft:job"])
    store.create("b", labels=["other"])
    c = store.create("c", labels=["ft:job"])
    store.close(c.id, "done")
    assert [b.id for b in store.list(labels=["ft:job"])] == [a.id]
    assert {b.id for b in store.list(labels=["ft:job"], include_closed=True)} == {a.id, c.id}


def test_comments(store):
    bead = store.create("job")
    store.comment(bead.id, "step `corpus` done: 12 examples")
    store.comment(bead.id, "--looks like a flag")
    assert [c.text for c in store.comments(bead.id)] == ["step `corpus` done: 12 examples", "--looks like a flag"]


def test_child_bead_and_dependencies(store):
    job = store.create("job")
    child = store.create("eval", parent=job.id, labels=["ft:eval"])
    assert child.id == f"{job.id}.1"
    assert store.show(child.id).parent == job.id
    other = store.create("root")
    store.add_dependency(other.id, job.id, "tracks")
    assert any(d.issue_id == other.id and d.type == "tracks" for d in store.show(job.id).dependents)


def test_history_records_each_write(store):
    bead = store.create("job")
    store.update(bead.id, status="in_progress", add_labels=["ft:stage:corpus"])
    store.update(bead.id, status="review")
    statuses = [h.status for h in store.history(bead.id)]
    assert statuses == ["open", "in_progress", "review"]


def test_config_roundtrip(store):
    store.set_config("status.custom", "review:wip,qa:active")
    assert store.get_config("status.custom") == "review:wip,qa:active"


def test_missing_bead_is_a_user_error(store):
    with pytest.raises(InputError) as err:
        store.show("ft-nope")
    assert "ft-nope" in err.value.message
    assert err.value.code == "not_found"


def test_bd_runs_in_the_rig_directory_without_inherited_beads_dir(tmp_path, fake_bin, monkeypatch):
    rig = tmp_path / "rig"
    (rig / ".beads").mkdir(parents=True)
    other = tmp_path / "elsewhere" / ".beads"
    other.mkdir(parents=True)
    monkeypatch.setenv("BEADS_DIR", str(other))
    BdStore(workdir=rig).create("job")
    call = json.loads((rig / ".beads" / "fake-bd.log").read_text().splitlines()[-1])
    assert call["cwd"] == str(rig)
    assert call["BEADS_DIR"] is None
    assert call["argv"][:2] == ["--json", "create"]


def test_bd_failure_maps_to_external_error_with_the_command(tmp_path, fake_bin, monkeypatch):
    rig = tmp_path / "rig"
    (rig / ".beads").mkdir(parents=True)
    store = BdStore(workdir=rig)
    bead = store.create("job")
    monkeypatch.setenv("FAKE_BD_FAIL", "update:database is locked")
    with pytest.raises(ExternalError) as err:
        store.update(bead.id, status="in_progress")
    assert err.value.message == (f"`bd update {bead.id} --status=in_progress` failed (exit 1): database is locked")
    assert err.value.exit_code == 3


def test_missing_bd_binary_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ExternalError) as err:
        BdStore(workdir=tmp_path, bd="bd").create("job")
    assert "not on PATH" in err.value.message
