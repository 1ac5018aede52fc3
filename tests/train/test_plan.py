"""The planner: parameter counts, the memory model's shape, budgets, NO-GO with a fix that fits,
and (slow) a calibration run of the real trainer on the tiny model."""
import importlib
import json
from dataclasses import replace

import pytest

from gt_finetune.corpus.records import make_record
from gt_finetune.dataset import DatasetSpec, build_dataset
from gt_finetune.dataset.pack import pack_rows
from gt_finetune.errors import InputError
from gt_finetune.train import TrainSpec
from gt_finetune.train.memory import GB, Workload, adapter_params, estimate, model_shape, param_count
from gt_finetune.workspace import read_jsonl, write_json, write_jsonl

planner = importlib.import_module("gt_finetune.train.plan")  # the module, even if `plan()` is re-exported
PROCESS = 400 * 10 ** 6  # stands in for the measured process baseline in fast tests


def session(n: int) -> dict:
    messages = [{"role": "system", "content": "You are a Gas Town polecat agent in rig `harbor`."},
                {"role": "user", "content": f"Work on bead hb-{n}: fix the flaky test number {n}."}]
    for t in range(1 + n % 4):  # 1 to 4 turns, so lengths vary
        messages += [{"role": "assistant", "content": f"Looking at hb-{n} step {t}: `bd show hb-{n}` " * (1 + n % 3)},
                     {"role": "user", "content": f"Next part {t} of hb-{n}, please."}]
    messages.append({"role": "assistant", "content": f"Closed hb-{n}."})
    return make_record(messages, {"source": "transcripts", "session": f"s{n}", "role": "polecat", "rig": "harbor",
                                  "generated_by": "agent:x"})


@pytest.fixture(scope="module")
def dataset(tiny_model, tmp_path_factory):
    """A tiny model's dataset of 24 sessions in rows of 256 tokens, built once for the module."""
    home = tmp_path_factory.mktemp("plan-home")
    corpus = home / "corpus" / "c1"
    corpus.mkdir(parents=True)
    write_jsonl(corpus / "records.jsonl", [session(n) for n in range(24)])
    write_json(corpus / "manifest.json", {"schema_version": 1, "stage": "corpus", "id": "corpus-plan-1"})
    manifest = build_dataset(DatasetSpec(base_model=str(tiny_model("chatml")), max_seq_len=256), corpus_dir=corpus,
                             home=home)
    return manifest.path


@pytest.fixture
def fast(monkeypatch):
    """No subprocess for the process baseline."""
    monkeypatch.setattr(planner, "process_baseline", lambda home: PROCESS)


def spec_for(model, **kw) -> TrainSpec:
    return TrainSpec(base_model=str(model), **kw)


def test_parameter_counts_match_the_real_model(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tiny_model("chatml")
    model = AutoModelForCausalLM.from_pretrained(path)
    shape = model_shape(path)
    assert param_count(shape) == sum(p.numel() for p in model.parameters())
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=list(targets), task_type="CAUSAL_LM"))
    assert adapter_params(shape, 4, targets) == sum(p.numel() for p in peft.parameters() if p.requires_grad)


def test_untied_head_and_biases_are_counted(tiny_model, tmp_path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = json.loads((tiny_model("chatml") / "config.json").read_text())
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=False)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path))
    assert param_count(model_shape(tmp_path)) == sum(p.numel() for p in model.parameters())


def test_breakdown_sums_to_the_total(tiny_model):
    est = estimate(Workload(model_dir=tiny_model("chatml")), model_shape(tiny_model("chatml")),
                   process_bytes=PROCESS, data_tokens=10_000)
    assert sum(v for _, v in est.parts) == est.total == est.as_dict()["total_bytes"]
    assert all(v >= 0 for _, v in est.parts) and est.part("process") == PROCESS


def test_estimate_grows_with_batch_size_and_sequence_length(tiny_model):
    shape = model_shape(tiny_model("chatml"))
    base = Workload(model_dir=tiny_model("chatml"), batch_size=1, seq_len=128)

    def total(**kw):
        return estimate(replace(base, **kw), shape, process_bytes=PROCESS).total
    assert total(batch_size=1) < total(batch_size=2) < total(batch_size=8)
    assert total(seq_len=128) < total(seq_len=256) < total(seq_len=1024)
    assert total(lora_r=8) < total(lora_r=64)


def test_gradient_checkpointing_reduces_activations(tiny_model):
    shape = model_shape(tiny_model("chatml"))
    w = Workload(model_dir=tiny_model("chatml"), batch_size=4, seq_len=512)
    plain, checkpointed = (estimate(replace(w, gradient_checkpointing=gc), shape, process_bytes=PROCESS)
                           for gc in (False, True))
    assert checkpointed.part("activations") < plain.part("activations")
    assert checkpointed.part("logits") == plain.part("logits")


def test_full_fine_tuning_and_qlora_change_the_right_components(tiny_model):
    shape = model_shape(tiny_model("chatml"))
    w = Workload(model_dir=tiny_model("chatml"), batch_size=2, seq_len=256)
    lora, full = (estimate(replace(w, method=m, lora_dropout=0.0), shape, process_bytes=PROCESS)
                  for m in ("lora", "full"))
    assert full.part("optimizer") == 2 * param_count(shape) * 4 > lora.part("optimizer")
    assert full.part("adapter") == 0 and full.part("activations") > lora.part("activations")
    dropout = estimate(replace(w, lora_dropout=0.05), shape, process_bytes=PROCESS)
    assert dropout.part("activations") > lora.part("activations")  # dropout keeps its output and noise
    qlora = estimate(replace(w, method="qlora", dtype="bfloat16", device="cuda"), shape, process_bytes=PROCESS)
    assert qlora.part("weights") < lora.part("weights") and qlora.part("data") == 0


def test_data_shape_reads_the_real_lengths_and_packs_like_the_trainer(dataset):
    shape = planner.data_shape(dataset)
    examples = read_jsonl(dataset / "train.jsonl")
    lengths = sorted(len(e["input_ids"]) for e in examples)
    assert shape.examples == len(examples) and shape.tokens == sum(lengths) and shape.longest == lengths[-1]
    assert lengths[0] <= shape.p50 <= shape.p90 <= shape.p99 <= shape.longest
    rows = pack_rows(examples, 256)
    assert shape.packed_rows == len(rows) and shape.widest_row == max(len(r["input_ids"]) for r in rows)
    assert 0 < shape.density <= 1


def test_workload_uses_packed_rows_or_the_longest_example(tiny_model, dataset):
    data = planner.data_shape(dataset)
    path = tiny_model("chatml")
    packed = planner.workload(spec_for(path, batch_size=2), model_dir=path, data=data, device="cpu")
    padded = planner.workload(spec_for(path, batch_size=2, packing=False), model_dir=path, data=data, device="cpu")
    assert (packed.seq_len, packed.batch_size) == (data.widest_row, 2)
    assert (padded.seq_len, padded.batch_size) == (data.longest, 2)
    capped = planner.workload(spec_for(path, batch_size=64), model_dir=path, data=data, device="cpu")
    assert capped.batch_size == data.packed_rows  # a micro-batch cannot hold more rows than there are


def test_budget_comes_from_env_then_config_then_available_memory(isolated, monkeypatch):
    monkeypatch.delenv(planner.BUDGET_ENV, raising=False)
    measured = planner.budget(home=isolated)
    assert measured.source == "available" and measured.reserve == int(1.5 * GB)
    assert measured.bytes == max(0, measured.available - measured.reserve)
    isolated.mkdir(parents=True, exist_ok=True)
    (isolated / "config.toml").write_text("[plan]\nreserve_gb = 2\n")
    assert planner.budget(home=isolated).reserve == 2 * GB
    (isolated / "config.toml").write_text("[plan]\nbudget_gb = 3.5\n")
    assert planner.budget(home=isolated) == planner.Budget(bytes=int(3.5 * GB), source="config")
    monkeypatch.setenv(planner.BUDGET_ENV, "1.25")
    assert planner.budget(home=isolated) == planner.Budget(bytes=int(1.25 * GB), source="env")


@pytest.mark.parametrize("config, env, message", [
    ("[plan]\nreserve = 2\n", "", "unknown key(s) in [plan]: reserve"),
    ("[plan]\nbudget_gb = -1\n", "", "`budget_gb` must be a number of GB"),
    ("[plan]\nreserve_gb = \"lots\"\n", "", "`reserve_gb` must be a number of GB"),
    ("", "six", "`GT_FINETUNE_BUDGET_GB` must be a number of GB, got `six`"),
])
def test_a_malformed_budget_is_a_user_error(isolated, monkeypatch, config, env, message):
    isolated.mkdir(parents=True, exist_ok=True)
    (isolated / "config.toml").write_text(config)
    monkeypatch.setenv(planner.BUDGET_ENV, env)
    with pytest.raises(InputError) as err:
        planner.budget(home=isolated)
    assert message in str(err.value)


def test_go_when_the_estimate_fits(tiny_model, dataset, isolated, monkeypatch, fast):
    monkeypatch.setenv(planner.BUDGET_ENV, "100")
    p = planner.plan(spec_for(tiny_model("chatml"), batch_size=2), dataset_dir=dataset, home=isolated,
                     calibrate=False, device="cpu")
    assert p.go and p.suggestion is None and p.calibration is None
    text = p.render()
    assert text.startswith("plan: ") and ": GO" in text and "batch 2 × " in text and "(packed)" in text
    doc = json.loads(json.dumps(p.as_dict()))
    assert doc["go"] is True and doc["estimate"]["total_bytes"] == p.estimate.total
    planner.refuse_unless_go(p)  # no error
    saved = planner.save_plan(p, dataset_dir=dataset, home=isolated)
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["stage"] == "plan" and manifest["go"] is True and saved.parent == isolated / "plan"
    assert manifest["inputs"] == [json.loads((dataset / "manifest.json").read_text())["id"]]


def test_a_budget_below_the_estimate_is_no_go_with_a_suggestion_that_fits(tiny_model, dataset, isolated,
                                                                          monkeypatch, fast):
    spec = spec_for(tiny_model("chatml"), batch_size=8, grad_accum=2)
    monkeypatch.setenv(planner.BUDGET_ENV, "100")
    full = planner.plan(spec, dataset_dir=dataset, home=isolated, calibrate=False, device="cpu").estimate.total
    one_row = estimate(replace(planner.workload(spec, model_dir=tiny_model("chatml"),
                                                data=planner.data_shape(dataset), device="cpu"), batch_size=2),
                       model_shape(tiny_model("chatml")), process_bytes=PROCESS,
                       data_tokens=planner.data_shape(dataset).tokens).total
    monkeypatch.setenv(planner.BUDGET_ENV, str((full + one_row) / 2 / GB))
    p = planner.plan(spec, dataset_dir=dataset, home=isolated, calibrate=True, device="cpu")
    assert not p.go and p.calibration is None  # no calibration run when the estimate does not fit
    s = p.suggestion
    assert s is not None and s.estimate.total <= p.budget.bytes < p.estimate.total
    assert s.workload.batch_size * s.workload.grad_accum == 16  # same effective batch
    assert s.flags() == f"--var batch_size={s.workload.batch_size} --var grad_accum={s.workload.grad_accum}"
    assert "NO-GO" in p.render() and s.flags() in p.render()
    assert p.as_dict()["suggestion"]["flags"] == s.flags()
    with pytest.raises(InputError) as err:
        planner.refuse_unless_go(p)
    assert "more than a" in err.value.message and s.flags() in err.value.hint and "--force" in err.value.hint
    planner.refuse_unless_go(p, force=True)  # --force launches anyway


def test_a_calibration_run_over_budget_is_no_go_even_when_the_estimate_fits(tiny_model, dataset, isolated,
                                                                            monkeypatch, fast):
    monkeypatch.setenv(planner.BUDGET_ENV, "100")
    spec = spec_for(tiny_model("chatml"), batch_size=8)
    estimated = planner.plan(spec, dataset_dir=dataset, home=isolated, calibrate=False, device="cpu").estimate.total
    monkeypatch.setenv(planner.BUDGET_ENV, str(estimated * 1.1 / GB))
    measured = int(estimated * 1.3)
    monkeypatch.setattr(planner, "calibration_run", lambda spec, **kw: planner.Calibration(
        steps=3, seconds_per_step=0.5, peak_bytes=measured, wall_s=4.0))
    p = planner.plan(spec, dataset_dir=dataset, home=isolated, calibrate=True, device="cpu")
    assert not p.go and "calibration run measured" in p.reason
    # the fix is sized for the budget scaled by the model's measured error
    assert p.suggestion and p.suggestion.estimate.total * measured / estimated <= p.budget.bytes
    text = p.render()
    assert "NO-GO" in text and "0.5 s/step" in text and "calibration run" in text
    with pytest.raises(InputError) as err:
        planner.refuse_unless_go(p)
    assert f"{measured / GB:.2f} GB" in err.value.message


def test_suggestions_go_on_to_checkpointing_then_a_shorter_max_seq_len(tiny_model, dataset):
    path = tiny_model("chatml")
    shape, data = model_shape(path), planner.data_shape(dataset)
    w = replace(planner.workload(spec_for(path, batch_size=1), model_dir=path, data=data, device="cpu"),
                seq_len=256)

    def total(**kw):
        return estimate(replace(w, **kw), shape, process_bytes=PROCESS, data_tokens=data.tokens).total
    between = planner.Budget(bytes=(total() + total(gradient_checkpointing=True)) // 2, source="env")
    s = planner.suggest(w, shape, data=data, budget=between, process_bytes=PROCESS)
    assert s.changes == (("gradient_checkpointing", "true"),) and s.estimate.total <= between.bytes
    shorter = max(data.p90, 192)
    tight = planner.Budget(bytes=total(seq_len=shorter), source="env")
    s = planner.suggest(w, shape, data=data, budget=tight, process_bytes=PROCESS, can_checkpoint=False)
    assert s.changes == (("max_seq_len", str(shorter)),) and s.workload.seq_len >= data.p90
    assert "longer than" in s.note and f"{data.examples} examples" in s.note
    nothing = planner.Budget(bytes=PROCESS, source="env")
    assert planner.suggest(w, shape, data=data, budget=nothing, process_bytes=PROCESS) is None


def test_process_baseline_is_read_from_its_cache(isolated, monkeypatch):
    def no_subprocess(*a, **kw):
        raise AssertionError("the cached baseline must not be measured again")
    write_json(isolated / "cache" / "planner_baseline.json", {planner.baseline_key(): 123456789})
    monkeypatch.setattr(planner.subprocess, "run", no_subprocess)
    assert planner.process_baseline(isolated) == 123456789


def test_a_child_of_a_big_process_measures_only_its_own_peak():
    """Linux's ru_maxrss survives fork and exec: a planner child started from a big job process
    would report the parent's peak as its own (the baseline measured 1.6 GB instead of 0.4 GB)."""
    import subprocess
    import sys

    ballast = bytearray(400 * 2 ** 20)  # 400 MiB, touched so that it is resident
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    out = subprocess.run([sys.executable, "-c", "import resource; from gt_finetune.train.memory import peak_rss; "
                          "print(peak_rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"],
                         capture_output=True, text=True, check=True).stdout.split()
    own, inherited = int(out[0]), int(out[1])
    del ballast
    assert own < 200 * 2 ** 20
    if sys.platform == "linux":
        assert inherited > 400 * 2 ** 20  # the control: what ru_maxrss would have reported


@pytest.mark.slow
def test_calibration_runs_the_real_trainer_and_measures_its_peak(tiny_model, dataset, isolated, monkeypatch):
    monkeypatch.setenv(planner.BUDGET_ENV, "100")
    p = planner.plan(spec_for(tiny_model("chatml"), batch_size=2, max_steps=40), dataset_dir=dataset,
                     home=isolated, calibrate=True, device="cpu")
    c = p.calibration
    assert p.go and c is not None and c.steps == planner.CALIBRATION_STEPS and c.seconds_per_step > 0
    assert 0.7 < p.estimate.total / c.peak_bytes < 1.3
    assert (isolated / "cache" / "planner_baseline.json").is_file()  # measured once, then cached
    text = p.render()
    assert "s/step → 40 steps ≈" in text and f"an epoch ({p.steps_per_epoch} steps)" in text
    assert p.as_dict()["time"]["run_s"] == round(c.seconds_per_step * 40, 1)
