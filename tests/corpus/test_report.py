"""The corpus health report: markdown sections and numbers, the composition PNG, the terminal tables."""
import struct
import zlib

import pytest

from gt_finetune.corpus.health import HealthConfig, HealthReport, assess
from gt_finetune.corpus.records import make_record
from gt_finetune.corpus.report import render_terminal, write_report
from gt_finetune.png import SIGNATURE, Canvas, text_width, write_png
from gt_finetune.workspace import read_jsonl, short_id, write_jsonl


def rec(answer: str, *, source: str, role: str, prompt: str = "What now?", **meta) -> dict:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return make_record(messages, {"source": source, "role": role, "rig": "harbor", "generated_by": "human", **meta})


@pytest.fixture
def corpus(tmp_path):
    """Five records (one exact duplicate, one stale, a conflicting pair), 25 rejected lines, a manifest."""
    records = [rec("Closed it with `bd close hb-1`.", source="beads", role="polecat", prompt="Bead hb-1 merged?"),
               rec("Reopened: `bd update hb-1 --status=open`.", source="beads", role="witness",
                   prompt="Bead hb-1 merged?"),
               rec("Pushed with `bd sync`.", source="transcripts", role="polecat", generated_by="model:claude"),
               rec("Closed it with `bd close hb-1`.", source="beads", role="polecat", prompt="Bead hb-1 merged?"),
               rec("Nudged nux.", source="events", role="", prompt="Polecat nux idle.")]
    corpus_dir = tmp_path / "corpus-1"
    rejected = [{"where": f"issues.jsonl:{n}", "reason": "status is 'open', not closed"} for n in range(1, 26)]
    write_jsonl(corpus_dir / "rejected.jsonl", rejected)
    manifest = {"id": "corpus-1", "counts": {"records": 5, "by_source": {"beads": 3, "transcripts": 1, "events": 1},
                                             "by_role": {"polecat": 3, "witness": 1, "-": 1}, "by_rig": {"harbor": 5}},
                "rejected_reasons": {"status is …, not closed": 25}, "redaction": {"aws_key": 2, "email": 1}}
    return corpus_dir, assess(records, HealthConfig()), manifest


def test_report_has_every_section_with_its_numbers(corpus, tmp_path):
    corpus_dir, health, manifest = corpus
    report, plot = write_report(corpus_dir, health, manifest, out_dir=tmp_path / "out")
    assert (report, plot) == (tmp_path / "out" / "report.md", tmp_path / "out" / "composition.png")
    text = report.read_text()
    for heading in ("# Corpus report: `corpus-1`", "## Composition", "### By source", "### By role", "### By rig",
                    "## Tokens", "## Redaction", "## Duplicates", "## Stale", "## Conflicts",
                    "## Per-entry diagnostics", "### Dropped by the health check", "### Rejected at harvest"):
        assert f"\n{heading}\n" in f"\n{text}"
    assert ("corpus corpus-1: 5 records harvested, 4 kept, 1 dropped, 1 stale flags, 1 conflicts.\n\n"
            "![kept records per source and per role](composition.png)") in text
    assert "| source | harvested | kept |\n| --- | ---: | ---: |\n| beads | 3 | 2 |\n| events | 1 | 1 |\n" \
           "| transcripts | 1 | 1 |\n" in text
    assert "| - | 1 | 1 |" in text  # no role, keyed as the harvest manifest keys it
    assert "| assistant | 17 |\n| user | 11 |\n| total | 28 |" in text
    assert "record length in tokens: p50 6, p90 9, max 9." in text
    assert "| aws_key | 2 |\n| email | 1 |" in text
    assert "1 exact and 0 near duplicates dropped" in text
    assert "| record | reason |\n| --- | --- |\n" \
           f"| {short_id(health.kept[2]['meta']['content_hash'])} | `bd sync` is not a bd command (bd 1.0.5); " \
           "push with `bd dolt push` |" in text
    closed, reopened = (short_id(r["meta"]["content_hash"]) for r in health.kept[:2])
    assert f"| {closed} | {reopened} | bead hb-1 merged? | a closes, b reopens |" in text
    assert f"| 3 | {closed} | exact duplicate of record 0 |" in text
    assert "| status is …, not closed | 25 |" in text
    assert f"… and 5 more; all 25: `{corpus_dir / 'rejected.jsonl'}`" in text


def test_long_lists_are_capped_and_written_out_in_full(tmp_path):
    stale = [{"content_hash": f"sha256:{n:064x}", "reason": f"reason {n}"} for n in range(23)]
    health = HealthReport(kept=[], stale=stale, tokens={"total": 0})
    corpus_dir = tmp_path / "corpus-2"
    corpus_dir.mkdir()
    report, _ = write_report(corpus_dir, health, {"id": "corpus-2"}, out_dir=tmp_path / "out")
    text = report.read_text()
    assert f"… and 3 more; all 23: `{tmp_path / 'out' / 'stale.jsonl'}`" in text
    assert read_jsonl(tmp_path / "out" / "stale.jsonl") == stale
    assert "| 000000000000 | reason 0 |" in text and "reason 20" not in text
    assert "No redaction counts in the manifest." in text and "No line rejected." in text
    assert "No conflicts." in text and "Nothing dropped." in text


def png_parts(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, decompressed IDAT) of a PNG, checking each chunk's CRC."""
    assert data[:8] == SIGNATURE
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2) and b"IEND" in chunks
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_composition_png_decodes_to_its_declared_size(corpus, tmp_path):
    corpus_dir, health, manifest = corpus
    _, plot = write_report(corpus_dir, health, manifest, out_dir=tmp_path / "out")
    width, height, raw = png_parts(plot.read_bytes())
    assert (width, height) == (662, 16 + 2 * (22 + 3 * 22 + 16))  # title, 3 bars, gap: 3 sources, 3 roles
    assert len(raw) == height * (1 + 3 * width)


def test_write_png_encodes_rows_of_rgb_pixels(tmp_path):
    pixels = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(1, 2, 3), (4, 5, 6), (7, 8, 9)]]
    write_png(tmp_path / "tiny.png", pixels)
    assert png_parts((tmp_path / "tiny.png").read_bytes()) == (
        3, 2, b"\x00" + bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]) + b"\x00" + bytes(range(1, 10)))
    with pytest.raises(ValueError, match="rows of equal width"):
        write_png(tmp_path / "bad.png", [[(0, 0, 0)], []])


def test_canvas_clips_rectangles_and_draws_the_font():
    canvas = Canvas(8, 9, (0, 0, 0))
    canvas.rect(6, 7, 10, 10, (9, 9, 9))
    assert [row[6:] for row in canvas.pixels[7:]] == [[(9, 9, 9)] * 2] * 2 and canvas.pixels[6][7] == (0, 0, 0)
    canvas = Canvas(12, 7, (0, 0, 0))
    canvas.text(0, 0, "-?", (1, 1, 1))
    lit = ["".join("#" if p == (1, 1, 1) else "." for p in row) for row in canvas.pixels]
    assert lit == [".......###..", "......#...#.", "..........#.", "#####....#..", "........#...",
                   "............", "........#..."]
    assert text_width("ab", scale=2) == 22


def test_render_terminal_is_aligned_plain_text(corpus):
    _, health, manifest = corpus
    text = render_terminal(health, manifest)
    assert "\x1b" not in text
    assert text.startswith("corpus corpus-1: 5 records harvested, 4 kept, 1 dropped, 1 stale flags, 1 conflicts\n\n"
                           "source       harvested  kept\n"
                           "beads                3     2\n"
                           "events               1     1\n"
                           "transcripts          1     1\n\n"
                           "role     harvested  kept\n"
                           "polecat          3     2\n"
                           "-                1     1\n"
                           "witness          1     1\n\n")
    assert "role       tokens\nassistant      17\nuser           11\ntotal          28\n" \
           "record length in tokens: p50 6, p90 9, max 9\n" in text
    assert "redaction rule  count\naws_key             2\nemail               1" in text
    assert text.endswith("dropped  records\nexact          1\n")
