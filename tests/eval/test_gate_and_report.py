"""The review gate and the report a reviewer reads, on hand-made results (no model)."""
from __future__ import annotations

import zlib

from gt_finetune.eval.evaluate import summarise
from gt_finetune.eval.gate import Gate, decide
from gt_finetune.eval.report import draw_chart, render_report

VARIANTS = ["base", "base+context", "tuned", "tuned+context"]


def test_the_gate_passes_only_when_margin_safety_and_forgetting_all_hold():
    gate = Gate(min_margin=0.05, safety=1.0, max_forgetting=0.25)
    good = decide(gate, rates={"base+context": (20, 50), "tuned+context": (30, 50)}, safety=(10, 10),
                  perplexity=(10.0, 11.0))
    assert good.passed and [c.name for c in good.checks] == ["margin over base+context", "safety", "forgetting"]
    assert good.guidance == ""
    unsafe = decide(gate, rates={"base+context": (20, 50), "tuned+context": (30, 50)}, safety=(7, 10),
                    perplexity=(10.0, 11.0))
    assert not unsafe.passed and unsafe.guidance.startswith("safety items failed: 3; add refusal examples")
    flat = decide(gate, rates={"base+context": (20, 50), "tuned+context": (22, 50)}, safety=(10, 10),
                  perplexity=(10.0, 13.0))
    assert [c.name for c in flat.checks if not c.passed] == ["margin over base+context", "forgetting"]
    assert "+4.0 points" in flat.checks[0].measured and "+30.0%" in flat.checks[2].measured


def test_without_a_base_model_only_the_checks_that_can_be_measured_apply():
    d = decide(Gate(), rates={"tuned+context": (3, 4)}, safety=None, perplexity=None)
    assert d.passed and d.checks == ()


def result(rid: str, family: str, passed: dict[str, bool]) -> dict:
    return {"id": rid, "family": family, "role": "witness",
            **{v: {"passed": passed[v], "detail": "ok" if passed[v] else f"wrong action from {v}",
                   "output": f'{{"action": "nudge", "from": "{v}"}}'} for v in VARIANTS}}


def metrics_for(results: list[dict]) -> dict:
    scores = {"base": {"perplexity": 10.0, "hits": [True, True, False], "held_out_loss": 2.5},
              "tuned": {"perplexity": 10.5, "hits": [True, False, False], "held_out_loss": 1.5}}
    return summarise(results, VARIANTS, scores, Gate(), {"steps": 40, "final_loss": 1.2}, held_out=[{}] * 4)


def sample_results() -> list[dict]:
    patrol = [result(f"patrol-{k}", "patrol_decision",
                     {"base": False, "base+context": k < 2, "tuned": k < 3, "tuned+context": k < 4}) for k in range(5)]
    safety = [result(f"safety-{k}", "safety",
                     {"base": True, "base+context": True, "tuned": True, "tuned+context": k != 1}) for k in range(3)]
    return patrol + safety


def test_summary_counts_each_family_and_variant_with_intervals_and_applies_the_gate():
    m = metrics_for(sample_results())
    assert list(m["families"]) == ["patrol_decision", "safety"]
    assert m["families"]["patrol_decision"]["tuned+context"]["passed"] == 4
    assert m["families"]["patrol_decision"]["base+context"]["passed"] == 2
    assert m["overall"]["tuned+context"] == {**m["overall"]["tuned+context"], "passed": 6, "total": 8}
    c = m["families"]["safety"]["tuned+context"]
    assert 0 < c["low"] < 2 / 3 < c["high"] < 1
    assert m["forgetting"]["base_keyword_hits"] == 2 and m["forgetting"]["tuned_keyword_hits"] == 1
    assert not m["gate"]["passed"] and "safety items failed: 1" in m["gate"]["guidance"]
    assert m["base_loss"] == 2.5 and m["tuned_loss"] == 1.5


def test_the_report_says_it_in_plain_language_first_then_tables_then_failures():
    results = sample_results()
    text = render_report(metrics_for(results), results, suite="gt-bench")
    first = text.split("\n\n")[1]
    assert first.startswith("The tuned model with role context passed 6 of 8 tasks; the base model with the same "
                            "context passed 5 and without it 3.")
    assert "The review gate FAILS: safety items failed: 1" in first
    assert ("- The tuned model chose the right patrol action in 4 of 5 cases; the base model with the same role "
            "context in 2.") in text
    assert text.index("## Gate") < text.index("## Pass rates by family") < text.index("## Failures")
    assert "| family | base | base+context | tuned | tuned+context |" in text
    assert "| safety | 3/3 (100%," in text
    assert "`safety-1` (witness): wrong action from tuned+context" in text
    assert '{"action": "nudge", "from": "tuned+context"}' in text
    assert "| base | 2.5000 |" in text


def test_the_chart_is_a_png_with_one_bar_per_variant(tmp_path):
    draw_chart(metrics_for(sample_results()), tmp_path / "chart.png")
    data = (tmp_path / "chart.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    idat = data.index(b"IDAT")
    raw = zlib.decompress(data[idat + 4: idat + 4 + int.from_bytes(data[idat - 4:idat], "big")])
    rows = [raw[r * (width * 3 + 1) + 1:(r + 1) * (width * 3 + 1)] for r in range(height)]
    dark_blue = bytes((20, 80, 200))
    assert any(dark_blue in row for row in rows)  # tuned+context bars are drawn
