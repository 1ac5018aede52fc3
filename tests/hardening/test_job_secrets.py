"""A Dolt password never reaches a job's record, bead, mail or the corpus state (issue 15, item 5).

A job keeps its vars in `<home>/jobs/<id>.json` and lists them in its bead, so a `beads_sql`
location with `user:password@` in a var is refused before either exists; the password belongs in
`GT_DOLT_PASSWORD` (or the town's Dolt settings). The `source` var's `kind:location` list keeps a
Dolt database list (`host:port/db1,db2`) whole. A `.state` file written before locations were
masked, holding `beads_sql:user:password@…`, is removed by the next build (it is a cache).
"""
import json
import socket
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from gt_finetune import actions
from gt_finetune.cli import main
from gt_finetune.corpus import SAMPLE_TOWN, SOURCES, CorpusSpec
from gt_finetune.workspace import content_id, short_id

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402

SECRET = "Planted-Pw/9@x:Sécret"  # `/`, `@` and `:` inside: credentials end at the last `@`


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]  # nothing listens there once closed: the old code failed fast here


def holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("command", ["run", "plan"])
@pytest.mark.parametrize("source", ["beads_sql:ft_user:{pw}@127.0.0.1:{port}/hq,gt",
                                    "events:{sample},beads_sql:ft_user:{pw}@127.0.0.1:{port}"])
def test_an_inline_dolt_password_in_a_var_is_refused_before_anything_is_written(
        tmp_path, isolated, capsys, closed_port, command, source):
    value = source.format(pw=SECRET, port=closed_port, sample=SAMPLE_TOWN)
    assert main([command, "finetune-lora", "--var", f"source={value}"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "var `source`" in errors[0] and f"ft_user:***@127.0.0.1:{closed_port}" in errors[0], err
    assert "GT_DOLT_PASSWORD" in err and f"ft_user@127.0.0.1:{closed_port}" in err, err
    assert SECRET not in err
    assert not (isolated / "jobs").exists() and not (isolated / "corpus").exists()
    assert holding(tmp_path, SECRET) == []


def test_a_var_with_a_user_but_no_password_is_not_refused(isolated, capsys, closed_port, monkeypatch):
    """`user@host` takes the password from GT_DOLT_PASSWORD: the job starts, and only the server's
    absence fails it (exit 3); the password is in no file."""
    monkeypatch.setenv("GT_DOLT_PASSWORD", SECRET)
    assert main(["run", "finetune-lora", "--var", f"source=beads_sql:ft_user@127.0.0.1:{closed_port}"]) == 3
    assert "cannot connect to the Dolt server" in capsys.readouterr().err
    assert list((isolated / "jobs").glob("*.json"))  # the job exists: it was not refused
    assert holding(isolated, SECRET) == []


@pytest.mark.parametrize("again", [["resume", "{job}"], ["step", "corpus", "--job", "{job}"]])
def test_a_legacy_job_record_with_a_password_is_scrubbed_when_it_runs_again(isolated, capsys, closed_port, again):
    """A record written before the refusal keeps the password in clear: running the job again
    rewrites its var without it (the harvest then reads GT_DOLT_PASSWORD) and says so."""
    assert main(["run", "finetune-lora", "--var", f"source=beads_sql:ft_user@127.0.0.1:{closed_port}"]) == 3
    record_path = next((isolated / "jobs").glob("*.json"))
    record = json.loads(record_path.read_text())
    record["vars"]["source"] = f"beads_sql:ft_user:{SECRET}@127.0.0.1:{closed_port}"
    record_path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main([arg.format(job=record_path.stem) for arg in again]) == 3  # still no server
    err = capsys.readouterr().err
    assert "GT_DOLT_PASSWORD" in err and SECRET not in err, err
    assert json.loads(record_path.read_text())["vars"]["source"] == f"beads_sql:ft_user@127.0.0.1:{closed_port}"
    assert SECRET.encode() not in record_path.read_bytes()


# ---- the `source` var: kind:location pairs, commas inside a location kept ----

def inputs_of(source: str, monkeypatch, home: Path) -> tuple:
    """The inputs `corpus_action` hands to the corpus stage for this `source` var."""
    seen = []

    def build(spec, **_):
        seen.append(spec.inputs)
        raise SystemExit  # stop before any harvest

    monkeypatch.setattr(actions, "build_corpus", build)
    ctx = SimpleNamespace(session=SimpleNamespace(town=None, home=home, store=None), params={"source": source})
    with pytest.raises(SystemExit):
        actions.corpus_action(ctx)
    return seen[0]


@pytest.mark.parametrize("source, expected", [
    ("beads_sql:root@127.0.0.1:3307/hq,gt", (("beads_sql", "root@127.0.0.1:3307/hq,gt"),)),
    ("beads_sql:127.0.0.1:3307/hq,gt,beads_jsonl:/b", (("beads_sql", "127.0.0.1:3307/hq,gt"), ("beads_jsonl", "/b"))),
    ("beads_jsonl:/a, beads_sql:[::1]:3307/db1,db2 ,", (("beads_jsonl", "/a"), ("beads_sql", "[::1]:3307/db1,db2"))),
    ("beads_jsonl:/data/a,b.jsonl", (("beads_jsonl", "/data/a,b.jsonl"),)),
])
def test_a_location_keeps_its_commas_in_the_source_var(monkeypatch, isolated, source, expected):
    assert inputs_of(source, monkeypatch, isolated) == expected


def one_location(text: str) -> bool:
    """What a location in a list may be: no blank comma-part, and none after the first that reads as
    `kind:…` (that starts the next pair, by the var's own rule)."""
    parts = text.split(",")
    return text.strip() == text != "" and all(p.strip() for p in parts) and not any(
        p.lstrip().partition(":")[1] and p.lstrip().partition(":")[0] in SOURCES for p in parts[1:])


segments = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00,"), min_size=1, max_size=8)
locations = st.lists(segments, min_size=1, max_size=3).map(",".join).filter(one_location)


@fuzz(60)
@given(st.lists(st.tuples(st.sampled_from(sorted(SOURCES)), locations), min_size=1, max_size=4))
def test_fuzzed_source_lists_split_back_into_their_pairs(monkeypatch, isolated, pairs):
    source = ",".join(f"{kind}:{location}" for kind, location in pairs)
    assert inputs_of(source, monkeypatch, isolated) == tuple(pairs)


# ---- corpus state written before locations were masked ----

def test_an_old_state_file_with_a_password_key_is_removed_by_the_next_build(isolated, capsys):
    """The old code named the state after the unmasked spec and keyed the source unmasked: that file
    is no build's state any more, and it holds the password twice (in clear, and hashed in its name)."""
    state_dir = isolated / "corpus" / ".state"
    state_dir.mkdir(parents=True)
    old_spec = CorpusSpec(inputs=(("beads_sql", f"ft_user:{SECRET}@127.0.0.1:3307/hq"),))
    old = state_dir / f"{short_id(content_id(asdict(old_spec)))}.json"
    old.write_text(json.dumps({"sources": {f"beads_sql:ft_user:{SECRET}@127.0.0.1:3307/hq": {"dolt_history": {}}},
                               "seen": [], "latest": ""}))
    masked = state_dir / "0123456789ab.json"  # a masked key is fine: kept as it is
    masked_state = {"sources": {"beads_sql:ft_user:***@127.0.0.1:3307/hq": {}, "beads_sql:": {}},
                    "seen": [], "latest": ""}
    masked.write_text(json.dumps(masked_state))
    broken = state_dir / "fedcba987654.json"
    broken.write_text('{"sources": {"beads_sql:')  # truncated: not this sweep's to judge
    assert main(["corpus", "build", "--events", str(SAMPLE_TOWN)]) == 0
    assert not old.exists()
    assert json.loads(masked.read_text()) == masked_state and broken.exists()
    assert holding(isolated, SECRET) == []
    assert SECRET not in capsys.readouterr().err
