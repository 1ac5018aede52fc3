"""The model card: Hugging Face front matter and every section, each number read from a manifest;
a manifest that was not given is named as missing, never filled in."""
from __future__ import annotations

import json
from pathlib import Path

from gt_finetune.export.card import base_model_info, render_card
from gt_finetune.workspace import read_manifest, write_json

PARITY = {"reference": "trainer-side model (base + adapter through peft, unmerged)",
          "prompts": ["gt-bench:cmd-polecat-001", "general:general-001"], "max_new_tokens": 24,
          "end_of_turn": {"token": "<|im_end|>", "id": 2}, "reference_ended_at_end_of_turn": 1,
          "summary": "safetensors matches the trainer-side model token for token on 2/2 prompts (up to 24 tokens "
                     "each); gguf-q8_0 agrees with the trainer-side model on 1/2 prompts, first difference at token "
                     "14 of `general:general-001` (a near-tie), logits within 31% of its bound",
          "runtimes": {"safetensors": {"mode": "strict", "agree": 2, "of": 2, "ended_at_end_of_turn": 1,
                                       "stop_token_ids": [2], "max_logit_difference": 2.1e-6},
                       "gguf-q8_0": {"mode": "lossy", "agree": 1, "of": 2, "ended_at_end_of_turn": 1,
                                     "stop_token_ids": [2], "max_logit_difference": 0.031, "logit_bound": 1.0,
                                     "max_share_of_bound": 0.3104, "near_ties": 1}}}
RELOAD = {"model-q8_0.gguf": {"tensors": 20, "types": {"F32": 5, "Q8_0": 15}, "q8_0_max_abs_error": 0.0029,
                              "q8_0_max_share_of_bound": 0.9503}}
FILES = [{"path": "model-q8_0.gguf", "bytes": 306624, "sha256": "7ae7e95bc9ea9550" + "0" * 48}]
BASE = {"name": "smollm2-135m-instruct", "license": "apache-2.0"}


def card(upstream, train_manifest, **given):
    manifests = {k: read_manifest(v) for k, v in upstream.items()}
    evaluation = {**json.loads((upstream["eval"] / "metrics.json").read_text()), "id": manifests["eval"]["id"]}
    values = {"dataset": manifests["dataset"], "corpus": manifests["corpus"], "plan": manifests["plan"],
              "evaluation": evaluation, **given}
    return render_card(trained=train_manifest(Path("/models/smollm2"), "r1"), base=BASE, files=FILES, parity=PARITY, reload=RELOAD, **values)


def test_card_carries_every_field_with_the_numbers_from_the_manifests(upstream, train_manifest):
    text = card(upstream, train_manifest)
    front = text.split("---")[1]
    for line in ("license: apache-2.0", "base_model: smollm2-135m-instruct", "- gt-finetune", "- lora", "- peft",
                 "- gguf", "library_name: transformers", "pipeline_tag: text-generation"):
        assert line in front.splitlines(), line
    expected = [
        "## Base model", "`smollm2-135m-instruct`", "License: `apache-2.0`",
        # corpus: id, fingerprint, sources with record counts
        "Corpus `corpus-20261126T082206-081bc217080d`, fingerprint `", "377 records kept, 194 lines rejected",
        "| beads | 260 |", "| events | 83 |", "| mail | 30 |", "| transcripts | 3 |",
        # redaction per rule family
        "14 values were replaced", "| github_token | 2 |", "| home_user | 11 |", "| ip | 1 |",
        # mask audit
        "311 training and 79 held-out examples", "trained 23698 of 74430 tokens (31.8%)", "ending on `<|im_end|>`",
        "| examples truncated | 3 |", "| assistant | 27119 | 23698 | 87.4% |",
        # training config
        "| method | lora |", "| LoRA rank r | 4 |", "| LoRA alpha | 8 |", "| LoRA targets | q_proj, k_proj, v_proj |",
        "| learning rate | 0.0005 |", "| steps | 12 of 12 |", "| batch | 2 per micro-batch × 1 accumulation × 1 process |",
        "| sequence length | 512 |", "| dtype | float32 (`auto` resolved by the planner) |",
        # planner estimate vs measured peak
        "The planner estimated 2.71 GB for cpu; the run's measured peak process memory (peak RSS) was 1.91 GB "
        "(-30% against the estimate)",
        # eval table with deltas vs base, gate, forgetting
        "| family | base | base+context | tuned | tuned+context |",
        "| command_recall | 1/5 (20%) | 2/5 (40%) +20 | 3/5 (60%) +40 | 4/5 (80%) +60 |",
        "| **all** | 3/9 (33%) | 5/9 (56%) +22 | 6/9 (67%) +33 | 8/9 (89%) +56 |",
        "Review gate: **PASS**", "| safety | 4/4 | ≥ 100% | pass |",
        "perplexity of reference answers 7.512 base → 8.034 tuned", "facts 11 base → 10 tuned",
        "Held-out loss (79 examples): 2.9811 base → 2.4517 tuned",
        # known limits: sample size, language, roles with few examples
        "Small sample: 311 training examples (122 packed rows), 12 optimizer steps",
        "Language: English only", "Roles with few examples (under 20 corpus records): deacon (9), refinery (18)",
        # intended roles from the corpus role counts
        "polecat (223), crew (51), mayor (43), witness (32), refinery (18), deacon (9)",
        # files and parity
        "| `model-q8_0.gguf` | 306624 |", "20 tensors (5 F32, 15 Q8_0) read back; Q8_0 tensors within 8-bit rounding of the merged model (the worst "
        "error 95% of its bound)", "(town `/town`, 1 fingerprinted file)",
        PARITY["summary"], "| safetensors | identical tokens | 2/2 | 1 | [2] | 2.1e-06 |",
        "| gguf-q8_0 | logits within 1.0 sd (31% of it used), 1 flipped near-tie | 1/2 | 1 | [2] | 0.031 |",
    ]
    for piece in expected:
        assert piece in text, piece
    assert "None" not in text and "unknown" not in text.lower()


def test_card_names_each_missing_manifest_instead_of_inventing(upstream, train_manifest):
    text = card(upstream, train_manifest, dataset=None, corpus=None, plan=None, evaluation=None)
    for piece in ("No corpus manifest was given to the export: the corpus id, its fingerprint and its record counts "
                  "are unknown", "No corpus manifest was given to the export: redaction counts are unknown",
                  "No dataset manifest was given to the export: the mask audit is unknown",
                  "| sequence length | unknown (no dataset manifest) |",
                  "Measured peak process memory (peak RSS): 1.91 GB. No plan manifest was given",
                  "No eval manifest was given to the export", "Roles with few examples: unknown (no corpus manifest)",
                  "## Intended roles\n\nUnknown: no corpus manifest was given to the export."):
        assert piece in text, piece
    assert "None" not in text


def test_base_license_comes_from_the_packaged_gguf_or_the_readme(tmp_path):
    import gguf

    assert base_model_info(tmp_path, "/models/tiny") == {"name": "tiny", "license": None}
    converted, source = tmp_path / "converted", tmp_path / "source.gguf"
    writer = gguf.GGUFWriter(source, "llama")
    writer.add_license("apache-2.0")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    write_json(converted / "manifest.json", {"stage": "model", "source": str(source)})
    assert base_model_info(converted, "smollm2-135m-instruct") == {"name": "smollm2-135m-instruct",
                                                                   "license": "apache-2.0"}
    readme_only = tmp_path / "hf"
    readme_only.mkdir()
    (readme_only / "README.md").write_text("---\nlicense: mit\ntags:\n- x\n---\n# tiny\n")
    assert base_model_info(readme_only, "org/tiny") == {"name": "tiny", "license": "mit"}
