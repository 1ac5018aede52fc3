"""The export stage end to end: the folder it leaves, the manifest recording every file and check,
reuse of a finished export, nothing left behind by a failed one, and refusals before any work."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gt_finetune.errors import InputError
from gt_finetune.export import ExportManifest, ExportSpec, export_model
from gt_finetune.workspace import short_id, write_json

SMALL = {"parity_prompts": 2, "parity_tokens": 4}


def test_export_writes_every_format_and_records_each_file_and_check(exported):
    result, manifest = exported["result"], exported["manifest"]
    assert isinstance(result, ExportManifest) and result.path == exported["home"] / "export" / short_id(result.id)
    names = {p.relative_to(result.path).as_posix() for p in result.path.rglob("*") if p.is_file()}
    assert {"merged/model.safetensors", "merged/config.json", "merged/tokenizer.json", "merged/chat_template.jinja",
            "merged/generation_config.json", "adapter/adapter_model.safetensors", "adapter/adapter_config.json",
            "model-f16.gguf", "model-q8_0.gguf", "README.md", "manifest.json"} <= names
    recorded = {f["path"]: f for f in manifest["files"]}
    assert set(recorded) == names - {"manifest.json"}
    for path, f in recorded.items():
        data = (result.path / path).read_bytes()
        assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest(), path
    assert manifest["stage"] == "export" and manifest["id"] == result.id
    assert manifest["formats"] == ["safetensors", "gguf"] and manifest["spec"]["gguf_types"] == ["f16", "q8_0"]
    assert manifest["inputs"][0] == "run-r1" and set(manifest["upstream"]) == {"dataset", "corpus", "plan", "eval"}
    assert set(manifest["reload"]) == {"model-f16.gguf", "model-q8_0.gguf"}
    assert manifest["reload"]["model-q8_0.gguf"]["types"] == {"F32": 5, "Q8_0": 15}
    assert manifest["merge"]["method"] == "lora" and manifest["merge"]["stop_token_ids"] == [2]
    assert set(manifest["parity"]["runtimes"]) == {"safetensors", "gguf-f16", "gguf-q8_0"}
    card = (result.path / "README.md").read_text()
    assert card.startswith("---\nlicense: other\nbase_model: ") and manifest["parity"]["summary"] in card
    assert not list(result.path.parent.glob(".*.partial"))


def test_the_same_run_and_spec_reuse_the_finished_export(exported, monkeypatch):
    from gt_finetune.export import build

    def no_work(*args, **kwargs):
        raise AssertionError("a finished export was redone")

    monkeypatch.setattr(build, "merge_run", no_work)
    dirs = {f"{k}_dir": v for k, v in exported["dirs"].items()}
    again = export_model(ExportSpec(parity_prompts=3, parity_tokens=8), train_dir=exported["train_dir"],
                         home=exported["home"], **dirs)
    assert again == exported["result"]


def test_a_failed_check_leaves_no_export_behind(tiny_model, new_run, tmp_path, monkeypatch):
    from gt_finetune.export import build

    def differs(*args, **kwargs):
        raise InputError("gguf-f16 differs from the trainer-side model on prompt `x` at generated token 3")

    monkeypatch.setattr(build, "check_parity", differs)
    run = new_run(tiny_model("chatml"), tmp_path / "run")
    with pytest.raises(InputError, match="differs"):
        export_model(ExportSpec(gguf_types=("f16",), **SMALL), train_dir=run, home=tmp_path / "home")
    assert list((tmp_path / "home" / "export").iterdir()) == []


def test_a_qwen2_run_exports_with_parity(tiny_qwen2, new_run, upstream, tmp_path):
    run = new_run(tiny_qwen2, tmp_path / "run")
    result = export_model(ExportSpec(gguf_types=("f16",), **SMALL), train_dir=run, home=tmp_path / "home",
                          dataset_dir=upstream["dataset"])
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["parity"]["runtimes"]["gguf-f16"]["agree"] == 2 and manifest["upstream"]["corpus"] is None
    assert manifest["reload"]["model-f16.gguf"]["tensors"] == 27  # 2 × 12 per block (q/k/v biases) + 3
    assert not (result.path / "model-q8_0.gguf").exists()
    assert "No corpus manifest was given to the export" in (result.path / "README.md").read_text()


def test_an_architecture_gguf_cannot_express_is_refused_before_any_work(tiny_model, new_run, tmp_path):
    run = new_run(tiny_model("chatml"), tmp_path / "run")
    base = tmp_path / "phi"
    base.mkdir()
    write_json(base / "config.json", {"model_type": "phi3"})
    manifest = json.loads((run / "manifest.json").read_text())
    write_json(run / "manifest.json", {**manifest, "model_dir": str(base)})
    with pytest.raises(InputError, match="GGUF export supports `llama` and `qwen2` models; .* is `phi3`"):
        export_model(ExportSpec(**SMALL), train_dir=run, home=tmp_path / "home")
    assert not (tmp_path / "home" / "export").exists()


def test_an_end_of_turn_token_the_tokenizer_lacks_is_refused(tiny_model, new_run, upstream, tmp_path):
    manifest = json.loads((upstream["dataset"] / "manifest.json").read_text())
    write_json(upstream["dataset"] / "manifest.json", {**manifest, "template": {"end_of_turn": "<|turn_end|>"}})
    run = new_run(tiny_model("chatml"), tmp_path / "run")
    with pytest.raises(InputError, match="end-of-turn token `<\\|turn_end\\|>` is not a token of"):
        export_model(ExportSpec(**SMALL), train_dir=run, home=tmp_path / "home", dataset_dir=upstream["dataset"])


def test_upstream_folders_of_another_run_are_refused(tiny_model, new_run, upstream, tmp_path):
    run = new_run(tiny_model("chatml"), tmp_path / "other")  # id `run-other`; the eval scored `run-r1`
    with pytest.raises(InputError, match="eval `e7e7e7e7e7e7` scored another run than `run-other`") as info:
        export_model(ExportSpec(**SMALL), train_dir=run, home=tmp_path / "home", eval_dir=upstream["eval"],
                     dataset_dir=upstream["dataset"], corpus_dir=upstream["corpus"])
    assert "gt-finetune status" in info.value.hint


@pytest.mark.parametrize("values, message", [
    ({"formats": ("gguf",)}, "`formats` must include `safetensors`"),
    ({"formats": ("safetensors", "onnx")}, "`formats` must include `safetensors` and may add `gguf`"),
    ({"gguf_types": ("q4_k",)}, "`gguf_types` must be some of f16, q8_0; got q4_k"),
    ({"parity_tokens": 0}, "`parity_tokens` must be at least 1, got 0"),
])
def test_spec_errors_name_the_field(values, message):
    with pytest.raises(InputError, match=message):
        ExportSpec(**values)


def test_the_export_command_exports_a_registered_model_and_records_the_folder(tiny_model, new_run, tmp_path, isolated,
                                                                                capsys):
    from gt_finetune.cli import main
    from gt_finetune.registry import Registry

    run = new_run(tiny_model("chatml"), tmp_path / "train" / "r9")
    Registry(isolated).register(model_id="ft-zz9-r9", job_id="ft-zz9", corpus_id="c", dataset_id="d",
                                train_dir=str(run), base_model=str(tiny_model("chatml")))
    code = main(["export", "ft-zz9", "--format", "safetensors"])
    out, err = capsys.readouterr()
    assert code == 0, err
    *lines, folder = out.strip().splitlines()
    assert lines[-1].startswith("parity: ") and "safetensors" in lines[-1]
    assert (Path(folder) / "merged" / "model.safetensors").is_file() and not list(Path(folder).glob("*.gguf"))
    model = Registry(isolated).model("ft-zz9-r9")
    assert model.export_dir == folder and Registry(isolated).audit()[-1]["action"] == "export"
    code = main(["export", "ft-zz9", "--format", "gguf"])
    assert code == 1 and "`formats` must include `safetensors`" in capsys.readouterr().err
