"""The export of a real model: the packaged SmolLM2-135M, trained two steps on the sample town,
exported to safetensors and GGUF f16 — every tensor read back, and both formats decoding what the
trainer-side model decodes. Slow (loads and trains a 135M model on the CPU): `pytest -m slow`."""
from __future__ import annotations

import json

import pytest

from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus, town_inputs
from gt_finetune.dataset import DatasetSpec, build_dataset
from gt_finetune.export import ExportSpec, export_model
from gt_finetune.town import load_town
from gt_finetune.train import TrainSpec, train

pytestmark = pytest.mark.slow


def test_smollm2_trained_two_steps_exports_with_parity(isolated, smollm2):
    corpus = build_corpus(CorpusSpec(inputs=town_inputs(SAMPLE_TOWN)), home=isolated, town=load_town(SAMPLE_TOWN),
                          quiet=True)
    dataset = build_dataset(DatasetSpec(base_model=str(smollm2), max_seq_len=128), corpus_dir=corpus.path,
                            home=isolated)
    run = train(TrainSpec(base_model=str(smollm2), max_steps=2, batch_size=1, warmup_steps=1),
                dataset_dir=dataset.path, home=isolated)
    result = export_model(ExportSpec(gguf_types=("f16",), parity_prompts=2, parity_tokens=8), train_dir=run.path,
                          home=isolated, dataset_dir=dataset.path, corpus_dir=corpus.path)
    manifest = json.loads((result.path / "manifest.json").read_text())
    runtimes = manifest["parity"]["runtimes"]
    assert set(runtimes) == {"safetensors", "gguf-f16"}
    for name, r in runtimes.items():
        assert r["agree"] == r["of"] == 2 and r["first_difference"] is None, name
        assert r["stop_token_ids"] == [2]  # SmolLM2's EOS is its end of turn, `<|im_end|>`
    assert manifest["reload"]["model-f16.gguf"] == {"tensors": 272, "types": {"F16": 211, "F32": 61}}
    assert result.parity.startswith("safetensors and gguf-f16 match the trainer-side model token for token on 2/2")
    card = (result.path / "README.md").read_text()
    assert "license: apache-2.0" in card and f"Corpus `{corpus.id}`" in card
    assert (result.path / "model-f16.gguf").stat().st_size > 200_000_000
