"""The recipe on a tiny model: packed rows come from the dataset's `max_seq_len`, and a run killed
after a checkpoint resumes to exactly the steps (same rows, same losses) of one never killed."""
from __future__ import annotations

import random

import pytest

from gt_finetune.train.lora import IGNORE, TrainSpec, train
from gt_finetune.workspace import read_jsonl, read_manifest, write_json, write_jsonl


class Killed(Exception):
    pass


@pytest.fixture
def dataset_dir(tmp_path):
    rng = random.Random(0)
    examples = []
    for i in range(12):
        ids = [rng.randrange(2000) for _ in range(rng.randint(8, 40))]
        examples.append({"id": f"e{i}", "group": f"g{i}", "input_ids": ids, "labels": [IGNORE] * 4 + ids[4:],
                         "messages": [], "weight": rng.choice([1.0, 0.5])})
    out = tmp_path / "dataset"
    out.mkdir()
    write_jsonl(out / "train.jsonl", examples)
    write_json(out / "manifest.json", {"schema_version": 1, "stage": "dataset", "id": "sha256:tiny",
                                       "spec": {"max_seq_len": 64}})
    return out


def test_a_killed_packed_run_resumes_to_the_same_steps(tiny_model, dataset_dir, tmp_path, capsys):
    spec = TrainSpec(base_model=str(tiny_model("chatml")), max_steps=3, batch_size=2, warmup_steps=1,
                     checkpoint_every=2)

    def kill_at_3(row: dict) -> None:
        if row["step"] == 3:
            raise Killed

    whole = train(spec, dataset_dir=dataset_dir, home=tmp_path / "a")
    with pytest.raises(Killed):
        train(spec, dataset_dir=dataset_dir, home=tmp_path / "b", on_progress=kill_at_3)
    resumed = train(spec, dataset_dir=dataset_dir, home=tmp_path / "b")
    assert "resumed training from checkpoint at step 2/3" in capsys.readouterr().out
    manifest = read_manifest(whole.path)
    assert manifest["examples"] == 12 and manifest["rows"] < 12
    a, b = (read_jsonl(m.path / "metrics.jsonl") for m in (whole, resumed))
    assert [r["trained_tokens"] for r in a] == [r["trained_tokens"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-4)
