"""Fuzzing the JSONL sources: good lines among garbage are kept, every bad line is rejected with its
`file:line`, and nothing crashes (the rule: skip the bad record, report it, keep the rest).

Garbage is random text and bytes, truncated lines, JSON of the wrong shape, good rows with fields of
the wrong type, numbers past Python's 4300-digit limit, nesting past the stack, a BOM, CRLF.
"""
import json
import sys
from pathlib import Path

from hypothesis import given, strategies as st

from gt_finetune.corpus import CorpusSpec, build_corpus, load_records
from gt_finetune.corpus.records import Rejected
from gt_finetune.corpus.sources import beads_jsonl, events
from gt_finetune.corpus.sources.context import HarvestContext
from gt_finetune.workspace import read_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402

FUZZ = fuzz(120)
# Shapes as in shared/fixtures/real (carolina-futons backup, immortan-town feed), values made up.
BEAD = {"acceptance_criteria": "", "assignee": None, "close_reason": "", "closed_at": "2026-02-23T19:36:12Z",
        "closed_by_session": "", "compaction_level": 0, "created_at": "2026-02-23T19:35:47Z",
        "created_by": "harbor/polecats/nux", "description": "", "ephemeral": 0, "issue_type": "task",
        "metadata": "{}", "owner": "", "pinned": 0, "priority": 2, "status": "closed", "title": ""}
EVENT = {"ts": "2026-03-06T04:37:47Z", "source": "gt", "visibility": "feed"}

no_newline = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")  # text a file can hold
unicode_text = st.text(no_newline, min_size=1, max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(no_newline, max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def good_bead(i: int, title: str, mail: bool) -> dict:
    if mail:
        return {**BEAD, "id": f"hq-mail{i}", "title": f"Status {title}", "description": "all green",
                "assignee": "harbor/witness", "labels": ["gt:message", "from:mayor/"], "status": "open"}
    return {**BEAD, "id": f"hb-good{i}", "title": f"Fix {title}",
            "close_reason": f"Pinned the clock and reran it 200 times: {title}"}


def garbage_lines(template: dict, key: str):
    """One bad line, as bytes: what a crashed writer, an old exporter or a careless edit leaves."""
    mutated = st.builds(lambda extra, i: json.dumps({**template, key: f"bad{i}", **extra}),
                        st.dictionaries(st.sampled_from(sorted(template) + ["labels", "comments", "payload", key]),
                                        json_values, max_size=3), st.integers(0, 10**6))
    text = st.one_of(
        st.text(no_newline, max_size=60),
        st.builds(json.dumps, json_values),
        mutated,
        st.builds(lambda line, cut: line[:max(1, cut % len(line))], mutated, st.integers(0, 400)),  # truncated
        st.builds(lambda n: '{"%s": 1%s}' % (key, "0" * n), st.integers(4300, 4400)),  # past the digit limit
        st.builds(lambda n: "[" * n + "]" * n, st.integers(900, 3000)),  # past the stack
    )
    raw = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))  # not UTF-8
    return text.map(lambda t: t.encode("utf-8")) | raw


def jsonl_file(good: list[str], bad: list[bytes], data) -> tuple[bytes, list[int | None]]:
    """The lines shuffled together, CRLF or LF, maybe a BOM: (file bytes, good index of each line or None)."""
    lines = [(line.encode("utf-8"), i) for i, line in enumerate(good)] + [(b, None) for b in bad]
    lines = data.draw(st.permutations(lines))
    newline = data.draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = data.draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    body = bom + newline.join(line for line, _ in lines) + data.draw(st.sampled_from([b"", newline]))
    return body, [i for _, i in lines]


def nonblank_lines(body: bytes) -> list[int]:
    """Line numbers the readers see as non-blank (they read `utf-8-sig`, bad bytes replaced)."""
    return [n for n, line in enumerate(body.decode("utf-8-sig", "replace").split("\n"), 1) if line.strip()]


@FUZZ
@given(titles=st.lists(unicode_text, min_size=1, max_size=4), mail=st.booleans(),
       bad=st.lists(garbage_lines(BEAD, "id"), max_size=6),
       bad_labels=st.lists(garbage_lines({"label": "ci-failure"}, "issue_id"), max_size=3), data=st.data())
def test_beads_backup_keeps_good_rows_and_rejects_each_bad_line(tmp_path, titles, mail, bad, bad_labels, data):
    rows = [good_bead(i, t, mail and i == 0) for i, t in enumerate(titles)]
    body, order = jsonl_file([json.dumps(r, ensure_ascii=False) for r in rows], bad, data)
    backup = tmp_path / "backup"
    backup.mkdir(exist_ok=True)
    (backup / "issues.jsonl").write_bytes(body)
    (backup / "labels.jsonl").write_bytes(b"\n".join([json.dumps({"issue_id": "hb-good0", "label": "flaky"})
                                                      .encode(), *bad_labels]))
    ctx = HarvestContext()
    items = list(beads_jsonl.harvest(str(backup), ctx))
    records = [i for i in items if isinstance(i, dict)]
    rejected = [i for i in items if isinstance(i, Rejected)]

    kept = {r["meta"]["bead_id"] for r in records}
    assert {r["id"] for r in rows} <= kept  # every good row among the garbage is a record
    issues = backup / "issues.jsonl"
    nonblank = len(nonblank_lines(body))
    refused = [int(r.where.rsplit(":", 1)[1]) for r in rejected if r.where.startswith(f"{issues}:")]
    assert len(set(refused)) == len(refused) and len(records) + len(refused) == nonblank
    assert ctx.accounting[str(issues)] == {"lines": nonblank, "used": len(records), "rejected": len(refused)}
    assert all(r.where.rsplit(":", 1)[0] in (str(issues), str(backup / "labels.jsonl")) and r.reason
               for r in rejected)


def good_event(i: int, text: str) -> dict:
    kind = ("sling", "nudge", "mail")[i % 3]
    payload = {"sling": {"bead": f"hb-{i}", "target": "harbor/polecats/nux"},
               "nudge": {"target": "harbor/polecats/nux", "message": text},
               "mail": {"to": "mayor/", "subject": text}}[kind]
    return {**EVENT, "type": kind, "actor": "harbor/witness", "payload": payload}


@FUZZ
@given(texts=st.lists(unicode_text, min_size=1, max_size=4),
       bad=st.lists(garbage_lines({**EVENT, "actor": "gt", "payload": {}}, "type"), max_size=6), data=st.data())
def test_event_feed_keeps_good_events_and_rejects_each_bad_line(tmp_path, texts, bad, data):
    body, order = jsonl_file([json.dumps(good_event(i, t), ensure_ascii=False) for i, t in enumerate(texts)],
                             bad, data)
    feed = tmp_path / ".events.jsonl"
    feed.write_bytes(body)
    ctx = HarvestContext()
    items = list(events.harvest(str(feed), ctx))
    used = [r["meta"]["line"] for r in items if isinstance(r, dict)]
    refused = [int(r.where.rsplit(":", 1)[1]) for r in items if isinstance(r, Rejected)]
    good_lines = {n for n, i in enumerate(order, 1) if i is not None}
    assert good_lines <= set(used)
    nonblank = nonblank_lines(body)
    assert sorted(used + refused) == nonblank  # each line once: a record or a rejection
    assert ctx.accounting[str(feed)] == {"lines": len(nonblank), "used": len(used), "rejected": len(refused)}


TOPICS = ("the flaky allocator test", "the refinery merge gate on tides", "the witness patrol that hung at 3am")


@fuzz(25)
@given(bad=st.lists(garbage_lines(BEAD, "id"), max_size=4), surrogate=st.sampled_from(["", "\\ud800", "\\udfff"]),
       data=st.data())
def test_corpus_build_keeps_good_rows_and_writes_every_rejection(tmp_path, bad, surrogate, data):
    """The whole corpus stage on the same garbage, with lone surrogates in ids and side tables:
    the good rows are in the corpus, every rejection is stored in rejected.jsonl. (Distinct topics:
    the health stage drops near-duplicates, which is not what this test is about.)"""
    rows = [good_bead(i, t, False) for i, t in enumerate(TOPICS)]
    bad = bad + [json.dumps({**rows[0], "id": "hb-sur"}).replace("hb-sur", f"hb-{surrogate}").encode()]
    body, _ = jsonl_file([json.dumps(r, ensure_ascii=False) for r in rows], bad, data)
    backup = tmp_path / f"backup{len(list(tmp_path.iterdir()))}"
    backup.mkdir()
    (backup / "issues.jsonl").write_bytes(body)
    (backup / "labels.jsonl").write_text('{"issue_id": "hb-%s", "label": "x"}\n' % surrogate)
    manifest = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(backup)),)), home=tmp_path / "home", quiet=True)
    assert {r["id"] for r in rows} <= {r["meta"]["bead_id"] for r in load_records(manifest.path)}
    assert len(read_jsonl(manifest.path / "rejected.jsonl")) == manifest.rejected


# -- regressions: the minimal failing examples fuzzing found --------------------------------------

def harvest_lines(module, path: Path, text: str) -> tuple[list[dict], list[Rejected]]:
    path.write_text(text, encoding="utf-8")
    items = list(module.harvest(str(path), HarvestContext()))
    return [i for i in items if isinstance(i, dict)], [i for i in items if isinstance(i, Rejected)]


GOOD = json.dumps(good_bead(0, "the allocator", False))


def test_a_number_past_the_digit_limit_is_a_rejected_line(tmp_path):
    records, rejected = harvest_lines(beads_jsonl, tmp_path / "issues.jsonl", '{"id": 1' + "0" * 4300 + "}\n" + GOOD)
    assert [r["meta"]["bead_id"] for r in records] == ["hb-good0"]
    assert rejected == [Rejected(f"{tmp_path / 'issues.jsonl'}:1", "not JSON (a number too long to read)")]


def test_nesting_past_the_stack_is_a_rejected_line(tmp_path):
    path = tmp_path / "feed.jsonl"
    _, rejected = harvest_lines(events, path, "[" * sys.getrecursionlimit() * 2 + "\n")
    assert rejected == [Rejected(f"{path}:1", "not JSON (nested too deeply)")]


def test_labels_or_comments_of_the_wrong_type_are_ignored(tmp_path):
    lines = [json.dumps({**good_bead(1, "x", False), "labels": 5}), json.dumps({**good_bead(2, "y", False),
                                                                                "comments": 7})]
    records, rejected = harvest_lines(beads_jsonl, tmp_path / "issues.jsonl", "\n".join(lines))
    assert [r["meta"]["bead_id"] for r in records] == ["hb-good1", "hb-good2"] and rejected == []


def test_an_id_that_is_not_a_string_or_number_is_rejected(tmp_path):
    _, rejected = harvest_lines(beads_jsonl, tmp_path / "issues.jsonl", json.dumps({**BEAD, "id": ["x"]}))
    assert rejected == [Rejected(f"{tmp_path / 'issues.jsonl'}:1", "`id` is a list, not an id")]


def test_a_bom_does_not_cost_the_first_line(tmp_path):
    path = tmp_path / "issues.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert [r["meta"]["bead_id"] for r in beads_jsonl.harvest(str(path), HarvestContext())] == ["hb-good0"]


def test_a_lone_surrogate_in_a_row_rejects_that_row_only(tmp_path):
    path = tmp_path / "issues.jsonl"
    path.write_text(json.dumps({**good_bead(1, "x", False), "title": "\ud800"}) + "\n" + GOOD)
    records = list(beads_jsonl.harvest(str(path), HarvestContext()))
    assert [r["meta"]["bead_id"] for r in records] == ["hb-good1", "hb-good0"]  # the redactor refuses the first
    manifest = build_corpus(CorpusSpec(inputs=(("beads_jsonl", str(path)),)), home=tmp_path / "home", quiet=True)
    assert [r["meta"]["bead_id"] for r in load_records(manifest.path)] == ["hb-good0"]
    (why,) = read_jsonl(manifest.path / "rejected.jsonl")
    assert why["where"] == f"{path}#hb-good1" and "lone surrogate" in why["reason"]
