"""The harvest opens only regular files inside the inputs it was given, survives its own broken
metadata, and says what it did with odd rows (issue 15, items 2, 15 and 16).

A town is hostile: an agent that can write a `directives/witness.md`, a `.beads/backup/*.jsonl` or a
transcript can make it a symlink to a file only the operator may read, or a FIFO that blocks the
first `open()`. Every such file is a rejected input with a reason; the rest of the harvest goes on.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus
from gt_finetune.town import load_town
from gt_finetune.workspace import read_jsonl

from kit import time_limit

REASON = "Fixed it and added a regression test."
PRIVATE = "only the operator may read this private line"


def bead(id_, **fields) -> dict:
    row = {"id": id_, "title": f"Fix {id_}", "status": "closed", "issue_type": "task", "priority": 2,
           "close_reason": REASON, "created_by": "mayor/", "created_at": "2026-03-01T10:00:00Z"}
    row.update(fields)
    return row


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def private_file(tmp_path: Path, name: str, text: str) -> Path:
    """A file outside every input, as `/etc/passwd` or `~/.ssh/…` would be."""
    path = tmp_path / "private" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def everything_written(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file() and p.suffix != ".png")


def rejected_of(manifest) -> list[dict]:
    return read_jsonl(manifest.path / "rejected.jsonl")


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- item 2: symlinks out of every source, and files that are not regular files -------------------

def transcript_lines(marker: str) -> str:
    rows = [{"type": "user", "uuid": "u1", "sessionId": "s-out", "timestamp": "2026-03-01T10:00:00Z",
             "message": {"role": "user", "content": f"Please check {marker}"}},
            {"type": "assistant", "uuid": "a1", "parentUuid": "u1", "sessionId": "s-out",
             "timestamp": "2026-03-01T10:00:05Z",
             "message": {"role": "assistant", "id": "m1", "model": "claude", "content": f"Done: {marker}"}}]
    return "".join(json.dumps(r) + "\n" for r in rows)


def formula_text(marker: str) -> str:
    return (f'formula = "mol-out"\ntype = "workflow"\ndescription = "{marker}"\nversion = 1\n\n'
            '[[steps]]\nid = "one"\ntitle = "One"\n')


def good_backup(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "good" / "issues.jsonl", [bead("hb-good1")]).parent


def link_out(tmp_path: Path, kind: str) -> tuple[tuple[str, str], Path]:
    """An input of `kind` holding one symlink to a private file; (input, the link)."""
    root = tmp_path / "in"
    if kind == "beads_jsonl":
        write_rows(root / "issues.jsonl", [bead("hb-in1")])
        private = private_file(tmp_path, "comments.jsonl",
                               json.dumps({"issue_id": "hb-in1", "author": "x", "text": PRIVATE}) + "\n")
        link = root / "comments.jsonl"
    elif kind == "beads_jsonl:issues":
        private = private_file(tmp_path, "issues.jsonl", json.dumps(bead("hb-priv", close_reason=PRIVATE)) + "\n")
        root.mkdir(parents=True)
        link, kind = root / "issues.jsonl", "beads_jsonl"
    elif kind == "role_context":
        private = private_file(tmp_path, "passwd", PRIVATE + "\n")
        (root / "directives").mkdir(parents=True)
        (root / "directives" / "mayor.md").write_text("Keep the town running; read your mail first.\n")
        link = root / "directives" / "witness.md"
    elif kind == "transcripts":
        private = private_file(tmp_path, "s-out.jsonl", transcript_lines(PRIVATE))
        (root / "proj-mayor").mkdir(parents=True)
        link = root / "proj-mayor" / "s-out.jsonl"
    elif kind == "formulas":
        private = private_file(tmp_path, "mol-out.formula.toml", formula_text(PRIVATE))
        root.mkdir(parents=True)
        link = root / "mol-out.formula.toml"
    elif kind == "events":
        event = {"ts": "2026-03-01T10:00:00Z", "type": "nudge", "actor": "harbor/witness",
                 "payload": {"target": "harbor/polecats/nux", "message": PRIVATE}}
        private = private_file(tmp_path, "events.jsonl", json.dumps(event) + "\n")
        root.mkdir(parents=True)
        link = root / ".events.jsonl"
    else:
        raise AssertionError(kind)
    link.symlink_to(private)
    return (kind, str(root)), link


@pytest.mark.parametrize("kind", ["beads_jsonl", "beads_jsonl:issues", "role_context", "transcripts", "formulas",
                                  "events"])
def test_a_symlink_out_of_an_input_is_refused_and_the_harvest_goes_on(tmp_path, isolated, kind):
    given, link = link_out(tmp_path, kind)
    spec = CorpusSpec(inputs=(("beads_jsonl", str(good_backup(tmp_path))), given))
    with time_limit(60):
        manifest = build_corpus(spec, home=isolated, quiet=True)
    assert PRIVATE not in everything_written(isolated)
    refusals = [r for r in rejected_of(manifest) if r["where"].startswith(str(link))]
    assert refusals and all("outside" in r["reason"] for r in refusals), rejected_of(manifest)
    assert manifest.records >= 1  # the good input still counts


def test_a_town_folder_linked_out_of_the_town_is_refused(tmp_path, isolated):
    """`<town>/directives` itself a link: every file in it is outside the town the operator named."""
    town_root = tmp_path / "town"
    shutil.copytree(SAMPLE_TOWN, town_root)
    outside = tmp_path / "private" / "directives"
    outside.mkdir(parents=True)
    (outside / "witness.md").write_text(PRIVATE + "\n")
    (town_root / "directives").symlink_to(outside)
    spec = CorpusSpec(inputs=(("beads_jsonl", str(town_root / ".beads" / "backup")),
                              ("role_context", str(town_root / "directives"))))
    manifest = build_corpus(spec, home=isolated, town=load_town(town_root, env={}), quiet=True)
    assert PRIVATE not in everything_written(isolated)
    assert any(r["where"].startswith(str(town_root / "directives")) and "outside" in r["reason"]
               for r in rejected_of(manifest)), rejected_of(manifest)


@pytest.mark.parametrize("kind", ["transcripts", "beads_jsonl", "role_context", "events"])
def test_a_fifo_is_refused_without_opening_it(tmp_path, isolated, kind):
    root = tmp_path / "in"
    if kind == "transcripts":
        (root / "proj").mkdir(parents=True)
        (root / "proj" / "good.jsonl").write_text(transcript_lines("a fine session"))
        fifo = root / "proj" / "stuck.jsonl"
    elif kind == "beads_jsonl":
        write_rows(root / "issues.jsonl", [bead("hb-in1")])
        fifo = root / "comments.jsonl"
    elif kind == "role_context":
        (root / "directives").mkdir(parents=True)
        fifo = root / "directives" / "witness.md"
    else:
        root.mkdir(parents=True)
        fifo = root / ".feed.jsonl"
        event = {"ts": "2026-03-01T10:00:00Z", "type": "hook", "actor": "harbor/polecats/nux",
                 "payload": {"bead": "hb-1"}}
        (root / ".events.jsonl").write_text(json.dumps(event) + "\n")
    os.mkfifo(fifo)
    spec = CorpusSpec(inputs=(("beads_jsonl", str(good_backup(tmp_path))), (kind, str(root))))
    with time_limit(30):
        manifest = build_corpus(spec, home=isolated, quiet=True)
    assert any(r["where"].startswith(str(fifo)) and "not a regular file" in r["reason"]
               for r in rejected_of(manifest)), rejected_of(manifest)


def test_a_line_past_the_limit_is_rejected_unread(tmp_path, isolated, monkeypatch):
    """Reads are bounded: a line longer than a source line may be is refused, not slurped."""
    from gt_finetune.corpus.sources import context
    monkeypatch.setattr(context, "MAX_LINE_CHARS", 1000)
    backup = write_rows(tmp_path / "b" / "issues.jsonl", [bead("hb-ok1"), bead("hb-big", description="x" * 5000),
                                                          bead("hb-ok2")]).parent
    manifest = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(backup)),)), home=isolated, quiet=True)
    ids = [r["meta"]["bead_id"] for r in read_jsonl(manifest.path / "records.jsonl")]
    assert ids == ["hb-ok1", "hb-ok2"]
    assert any(r["where"].endswith("issues.jsonl:2") and "longer than" in r["reason"] for r in rejected_of(manifest))


# -- item 15: broken metadata of the workspace itself -------------------------------------------------

def two_versions(tmp_path: Path, home: Path) -> tuple[Path, list]:
    backup = write_rows(tmp_path / "b" / "issues.jsonl", [bead("hb-one1")]).parent
    spec = CorpusSpec(inputs=(("beads_jsonl", str(backup)),))
    first = build_corpus(spec, home=home, quiet=True)
    write_rows(backup / "issues.jsonl", [bead("hb-one1"), bead("hb-two2")])
    second = build_corpus(spec, home=home, quiet=True)
    assert first.id != second.id
    return backup, [first, second]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def test_a_truncated_manifest_is_reported_and_skipped_by_list(tmp_path, isolated, capsys):
    _, (first, second) = two_versions(tmp_path, isolated)
    truncate(first.path / "manifest.json")
    code, out, err = cli(capsys, "corpus", "list", "--json")
    assert code == 0, err
    assert [m["id"] for m in json.loads(out)] == [second.id]
    assert first.id in err and "manifest.json" in err
    code, out, err = cli(capsys, "corpus", "list")
    assert code == 0 and second.id in out and first.id in err
    code, out, err = cli(capsys, "corpus", "show", first.id)
    assert code == 1 and "Traceback" not in err and "manifest.json" in err


def test_a_truncated_latest_manifest_does_not_break_the_next_build(tmp_path, isolated, capsys):
    backup, (_, second) = two_versions(tmp_path, isolated)
    truncate(second.path / "manifest.json")
    write_rows(backup / "issues.jsonl", [bead("hb-one1"), bead("hb-two2"), bead("hb-three")])
    code, out, err = cli(capsys, "corpus", "build", "--beads-jsonl", str(backup))
    assert code == 0, err
    newest = out.strip().splitlines()[-1]
    records = read_jsonl(isolated / "corpus" / newest / "records.jsonl")
    assert sorted(r["meta"]["bead_id"] for r in records) == ["hb-one1", "hb-three", "hb-two2"]


def test_a_truncated_state_file_is_rebuilt(tmp_path, isolated, capsys):
    backup, (_, second) = two_versions(tmp_path, isolated)
    [state] = (isolated / "corpus" / ".state").glob("*.json")
    truncate(state)
    before = sorted(p.name for p in (isolated / "corpus").glob("corpus-*"))
    code, out, err = cli(capsys, "corpus", "build", "--beads-jsonl", str(backup))
    assert code == 0, err
    assert out.strip().splitlines()[-1] == second.id  # nothing new: the same version, not a twin
    assert sorted(p.name for p in (isolated / "corpus").glob("corpus-*")) == before
    json.loads(state.read_text())  # rebuilt, readable again


def test_report_of_a_version_emptied_by_forget_is_an_error_line(tmp_path, isolated, capsys):
    backup = write_rows(tmp_path / "b" / "issues.jsonl", [bead("hb-one1"), bead("hb-two2")]).parent
    first = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(backup)),)), home=isolated, quiet=True)
    code, _, err = cli(capsys, "corpus", "forget", "--match", "Fix hb-", "--yes")
    assert code == 0, err
    code, out, _ = cli(capsys, "corpus", "list", "--json")
    ids = [m["id"] for m in json.loads(out)]
    assert first.id in ids  # still listed, for the audit trail
    for corpus_id in ids:
        code, out, err = cli(capsys, "corpus", "report", corpus_id)
        assert code in (0, 1), err
        assert "Traceback" not in err
        if code == 1:
            assert err.startswith("error: ") and corpus_id in err


# -- item 16: duplicates, wrong types, findable paths, a kill between publish and state -------------

def test_a_duplicate_bead_id_keeps_the_newest_and_rejects_the_other(tmp_path, isolated):
    rows = [bead("hb-dup1", close_reason="The newer reason: fixed the retry loop.", updated_at="2026-03-05T10:00:00Z"),
            bead("hb-dup1", close_reason="The older reason: looked at the retry loop.",
                 updated_at="2026-03-02T10:00:00Z"),
            bead("hb-other")]
    backup = write_rows(tmp_path / "b" / "issues.jsonl", rows).parent
    manifest = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(backup)),)), home=isolated, quiet=True)
    records = read_jsonl(manifest.path / "records.jsonl")
    dup = [r for r in records if r["meta"]["bead_id"] == "hb-dup1"]
    assert len(dup) == 1 and dup[0]["messages"][-1]["content"].startswith("The newer reason")
    assert any(r["where"].endswith("issues.jsonl:2") and "duplicate" in r["reason"] and "hb-dup1" in r["reason"]
               for r in rejected_of(manifest)), rejected_of(manifest)


@pytest.mark.parametrize("field,value", [("priority", {"x": 1}), ("issue_type", 7), ("title", ["a", "b"]),
                                         ("close_reason", {"text": REASON}), ("description", 12345),
                                         ("created_by", {"name": "mayor"})])
def test_a_field_of_the_wrong_type_is_rejected_not_turned_into_text(tmp_path, isolated, field, value):
    backup = write_rows(tmp_path / "b" / "issues.jsonl", [bead("hb-bad1", **{field: value}), bead("hb-ok1")]).parent
    manifest = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(backup)),)), home=isolated, quiet=True)
    records = read_jsonl(manifest.path / "records.jsonl")
    assert [r["meta"]["bead_id"] for r in records] == ["hb-ok1"]
    assert "{'" not in json.dumps(records) and "['" not in json.dumps(records)
    [why] = [r["reason"] for r in rejected_of(manifest) if r["where"].endswith("issues.jsonl:1")]
    assert f"`{field}`" in why, why


def test_a_comment_of_the_wrong_shape_is_not_turned_into_text(tmp_path, isolated):
    backup = write_rows(tmp_path / "b" / "issues.jsonl",
                        [bead("hb-c1", comments=[{"author": {"n": 1}, "text": ["x"]}]), bead("hb-ok1")]).parent
    manifest = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(backup)),)), home=isolated, quiet=True)
    assert "{'n'" not in (manifest.path / "records.jsonl").read_text()


def test_a_rejected_line_keeps_a_path_the_operator_can_find(tmp_path, isolated):
    """Only what the redactor flags in a path is replaced: a random-looking folder name the operator
    chose stays, and a secret in one folder name hides that name only."""
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    plain = tmp_path / "kZ8wQ3nB5vR1tY6u" / ".beads" / "backup"
    write_rows(plain / "issues.jsonl", [bead("hb-ok1"), {"no": "id"}])
    projects = tmp_path / "claude" / "projects"
    hidden = projects / f"-home-op-{secret}" / "s-1.jsonl"
    hidden.parent.mkdir(parents=True)
    hidden.write_text(transcript_lines("a fine session") + "{not json\n")
    spec = CorpusSpec(inputs=(("beads_jsonl", str(plain)), ("transcripts", str(projects))))
    manifest = build_corpus(spec, home=isolated, quiet=True)
    wheres = [r["where"] for r in rejected_of(manifest)]
    assert f"{plain}/issues.jsonl:2" in wheres, wheres
    [other] = [w for w in wheres if w.startswith(str(projects) + "/")]
    assert secret not in other and other.endswith("/s-1.jsonl:3"), other
    assert secret not in everything_written(isolated)


KILL_AFTER_PUBLISH = """
import os, signal, sys
from datetime import datetime, timezone
import gt_finetune.corpus.harvest as harvest
class Then(datetime):  # the next build, at the real time, cannot fall in the same second
    @classmethod
    def now(cls, tz=None):
        return datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
harvest.datetime = Then
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the corpus is published; its state is not saved
harvest._save_state = killed
from gt_finetune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_between_publishing_and_saving_state_publishes_no_twin(tmp_path, isolated, capsys):
    backup = write_rows(tmp_path / "b" / "issues.jsonl", [bead("hb-one1"), bead("hb-two2")]).parent
    env = {**os.environ, "GT_FINETUNE_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_PUBLISH, "corpus", "build", "--beads-jsonl", str(backup)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    published = sorted(p.name for p in (isolated / "corpus").glob("corpus-*"))
    assert len(published) == 1
    code, out, err = cli(capsys, "corpus", "build", "--beads-jsonl", str(backup))
    assert code == 0, err
    assert out.strip().splitlines()[-1] == published[0]
    assert sorted(p.name for p in (isolated / "corpus").glob("corpus-*")) == published
    assert (isolated / "corpus" / published[0] / "report.md").is_file()


def test_a_fingerprinted_file_named_with_a_secret_is_still_checked_for_staleness(tmp_path):
    from gt_finetune.corpus.harvest import fingerprint, staleness

    secret = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
    folder = tmp_path / "formulas"
    folder.mkdir()
    named = folder / f"{secret}.formula.toml"
    named.write_text('formula = "a"\n')
    (folder / "plain.formula.toml").write_text('formula = "b"\n')
    fp = fingerprint(CorpusSpec(inputs=(("formulas", str(folder)),)), None)
    assert secret not in json.dumps(fp) and len(fp["files"]) == 2
    assert staleness(fp) == []
    named.write_text('formula = "a"\nversion = 2\n')
    [changed] = staleness(fp)
    assert changed.endswith(" changed") and secret not in changed
    named.unlink()
    [gone] = staleness(fp)
    assert gone.endswith(" is gone")
