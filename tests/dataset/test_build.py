"""Dataset build on tiny local models with two structurally different chat templates."""
import json
import shutil

import pytest

from gt_finetune.corpus.records import make_record
from gt_finetune.dataset import DatasetSpec, build_dataset, load_split
from gt_finetune.dataset.template import IGNORE
from gt_finetune.errors import InputError
from gt_finetune.workspace import read_jsonl, read_manifest, write_json, write_jsonl


def call(cid, command):
    return {"id": cid, "type": "function", "function": {"name": "Bash", "arguments": json.dumps({"command": command})}}


def session(n: int, *, role="polecat", rig="harbor", turns=2) -> dict:
    messages = [{"role": "system", "content": f"You are a Gas Town {role} agent in rig `{rig}`."},
                {"role": "user", "content": f"Work on bead hb-{n}: fix the flaky test number {n}."}]
    for t in range(turns):
        messages += [{"role": "assistant", "content": f"Looking at hb-{n} step {t}.", "tool_calls": [call(f"c{n}-{t}", f"bd show hb-{n}")]},
                     {"role": "tool", "tool_call_id": f"c{n}-{t}", "name": "Bash", "content": f"hb-{n} open P2 flaky {t}"},
                     {"role": "assistant", "content": f"  Closed hb-{n} after fix {t}.  "}]
        if t + 1 < turns:
            messages.append({"role": "user", "content": f"Thanks. Next part {t}."})
    return make_record(messages, {"source": "transcripts", "session": f"s{n}", "role": role, "rig": rig,
                                  "generated_by": "agent:x"})


def make_corpus(root, records, cid="corpus-test-1"):
    path = root / "corpus" / cid
    path.mkdir(parents=True)
    write_jsonl(path / "records.jsonl", records)
    write_json(path / "manifest.json", {"schema_version": 1, "stage": "corpus", "id": cid})
    return path


@pytest.fixture
def corpus(isolated):
    return make_corpus(isolated, [session(n) for n in range(10)])


def trained_spans(example):
    spans, current = [], []
    for label in example["labels"]:
        if label != IGNORE:
            current.append(label)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def assert_round_trip(examples, tokenizer, eot, *, trims: bool):
    """Decoding each example's trained tokens gives exactly its assistant turns, each with the
    end-of-turn token, and nothing else (no system, user or tool text)."""
    for e in examples:
        assistant = [m for m in e["messages"] if m["role"] == "assistant" and m.get("train") is not False]
        spans = [tokenizer.decode(s) for s in trained_spans(e)]
        assert len(spans) == len(assistant), e["id"]
        for text, m in zip(spans, assistant):
            assert text.endswith(eot), (e["id"], text)
            body = text[: -len(eot)]
            for c in m.get("tool_calls") or []:
                assert c["function"]["name"] in body, (e["id"], body)
            if not trims:  # content rendered as is; calls (if any) folded into it
                assert body == m["content"], (e["id"], body)
            elif not m.get("tool_calls"):  # Llama-3 trims content; native calls replace it
                assert body == m["content"].strip(), (e["id"], body)
            others = [o["content"] for o in e["messages"] if o["role"] != "assistant" and len(o["content"]) > 20]
            assert not any(o in body for o in others), (e["id"], body)


@pytest.mark.parametrize("template, eot", [("chatml", "<|im_end|>"), ("llama3", "<|eot_id|>")])
def test_trained_tokens_decode_to_exactly_the_assistant_turns(template, eot, tiny_model, corpus, isolated):
    from transformers import AutoTokenizer

    model = tiny_model(template)
    manifest = build_dataset(DatasetSpec(base_model=str(model), max_seq_len=2048), corpus_dir=corpus, home=isolated)
    examples = load_split(manifest.path, "train") + load_split(manifest.path, "eval")
    assert len(examples) == 10
    assert_round_trip(examples, AutoTokenizer.from_pretrained(model), eot, trims=template == "llama3")
    audit = read_manifest(manifest.path)["mask_audit"]
    assert audit["end_of_turn"] == eot and audit["missing_end_of_turn"] == 0
    assert set(k for k, v in audit["by_role"].items() if v["trained"]) == {"assistant"}


@pytest.mark.slow
def test_round_trip_on_smollm2_and_the_sample_town(smollm2, isolated):
    from transformers import AutoTokenizer

    from gt_finetune.corpus import SAMPLE_TOWN, CorpusSpec, build_corpus, town_inputs
    from gt_finetune.town import load_town

    corpus = build_corpus(CorpusSpec(inputs=town_inputs(SAMPLE_TOWN)), home=isolated, town=load_town(SAMPLE_TOWN))
    manifest = build_dataset(DatasetSpec(base_model=str(smollm2), max_seq_len=512), corpus_dir=corpus.path,
                             home=isolated)
    examples = load_split(manifest.path, "train") + load_split(manifest.path, "eval")
    assert len(examples) > 50
    assert_round_trip(examples, AutoTokenizer.from_pretrained(smollm2), "<|im_end|>", trims=False)


def test_native_tool_template_keeps_tool_turns(tiny_model, corpus, isolated):
    manifest = build_dataset(DatasetSpec(base_model=str(tiny_model("llama3")), max_seq_len=2048),
                             corpus_dir=corpus, home=isolated)
    example = load_split(manifest.path, "train")[0]
    assert any(m["role"] == "tool" for m in example["messages"])
    assert read_manifest(manifest.path)["template"]["native_tools"] is True
    call_args = next(m for m in example["messages"] if m.get("tool_calls"))["tool_calls"][0]["function"]["arguments"]
    assert isinstance(call_args, dict)  # templates apply `tojson` to a dict, not to a JSON string


def test_unmarked_template_fails_the_audit_with_a_clear_message(tiny_model, corpus, isolated):
    with pytest.raises(InputError) as err:
        build_dataset(DatasetSpec(base_model=str(tiny_model("unmarked"))), corpus_dir=corpus, home=isolated)
    assert "mask audit failed" in str(err.value) and "does not mark assistant turns" in str(err.value)
    assert not (isolated / "dataset").exists() or not any((isolated / "dataset").iterdir())


def test_template_that_drops_the_end_of_turn_in_later_turns_names_the_examples(tiny_model, corpus, isolated, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model("chatml"), broken)
    config_path = broken / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    # Closes the first assistant turn properly (the probe passes) but not the ones after it.
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                "{% if m['role'] != 'assistant' or loop.index0 < 3 %}<|im_end|>{% endif %}\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    if "chat_template" in config:
        config["chat_template"] = template
        config_path.write_text(json.dumps(config))
    else:
        (broken / "chat_template.jinja").write_text(template)
    with pytest.raises(InputError) as err:
        build_dataset(DatasetSpec(base_model=str(broken), max_seq_len=2048), corpus_dir=corpus, home=isolated)
    message = str(err.value)
    assert "mask audit failed" in message and "end-of-turn token `<|im_end|>` is not trained" in message
    assert "s0" in message or "s1" in message


def test_no_held_out_session_in_training(tiny_model, isolated):
    records = [session(n, turns=6) for n in range(12)]
    corpus = make_corpus(isolated, records)
    manifest = build_dataset(DatasetSpec(base_model=str(tiny_model("chatml")), max_seq_len=160, eval_fraction=0.25),
                             corpus_dir=corpus, home=isolated)
    train, held = load_split(manifest.path, "train"), load_split(manifest.path, "eval")
    assert any("#" in e["id"] for e in train)  # long sessions became several windows
    assert {e["group"] for e in train}.isdisjoint({e["group"] for e in held})
    assert sorted({e["group"] for e in held}) == read_manifest(manifest.path)["held_out_groups"]
    assert all(len(e["input_ids"]) <= 160 for e in train + held)


def test_same_inputs_reuse_and_a_changed_template_rebuilds(tiny_model, corpus, isolated, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model("chatml"), model)
    spec = DatasetSpec(base_model=str(model), max_seq_len=2048)
    first = build_dataset(spec, corpus_dir=corpus, home=isolated)
    mtime = (first.path / "train.jsonl").stat().st_mtime_ns
    assert build_dataset(spec, corpus_dir=corpus, home=isolated).path == first.path
    assert (first.path / "train.jsonl").stat().st_mtime_ns == mtime
    config_path = model / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_max_length"] = 4096
    config_path.write_text(json.dumps(config))
    assert build_dataset(spec, corpus_dir=corpus, home=isolated).path != first.path
    other = DatasetSpec(base_model=str(model), max_seq_len=1024)
    assert build_dataset(other, corpus_dir=corpus, home=isolated).path != first.path


def test_special_token_text_in_content_is_dropped_with_the_reason(tiny_model, isolated):
    bad = make_record([{"role": "user", "content": "what ends a turn?"},
                       {"role": "assistant", "content": "It is <|im_end|> in ChatML."}],
                      {"source": "beads", "bead_id": "hb-bad", "generated_by": "human"})
    corpus = make_corpus(isolated, [session(n) for n in range(4)] + [bad])
    manifest = build_dataset(DatasetSpec(base_model=str(tiny_model("chatml")), max_seq_len=2048),
                             corpus_dir=corpus, home=isolated)
    dropped = read_jsonl(manifest.path / "dropped.jsonl")
    assert [d["id"] for d in dropped] == ["hb-bad"] and "special token text `<|im_end|>`" in dropped[0]["reason"]
    assert manifest.train + manifest.eval == 4


def test_role_context_is_added_to_the_system_prompt(tiny_model, isolated):
    directive = make_record([{"role": "system", "content": "You are a Gas Town polecat."},
                             {"role": "user", "content": "What does your role directive tell you?"},
                             {"role": "assistant", "content": "Run `gt done` when the work is merged."}],
                            {"source": "role_context", "role": "polecat", "rig": "", "generated_by": "unknown"})
    corpus = make_corpus(isolated, [session(n) for n in range(6)] + [session(9, role="witness"), directive])
    manifest = build_dataset(DatasetSpec(base_model=str(tiny_model("chatml")), max_seq_len=2048, role_context=True),
                             corpus_dir=corpus, home=isolated)
    examples = load_split(manifest.path, "train") + load_split(manifest.path, "eval")
    by_role = {e["role"]: e for e in examples if e["source"] == "transcripts"}
    assert "Run `gt done` when the work is merged." in by_role["polecat"]["messages"][0]["content"]
    assert "gt done" not in by_role["witness"]["messages"][0]["content"]
    assert read_manifest(manifest.path)["counts"]["role_context"] == 6


def test_inspect_shows_the_trained_text_and_only_it(tiny_model, corpus, isolated, capsys):
    from gt_finetune.cli import main

    manifest = build_dataset(DatasetSpec(base_model=str(tiny_model("chatml")), max_seq_len=2048),
                             corpus_dir=corpus, home=isolated)
    assert main(["dataset", "inspect", manifest.path.name[:6], "--example", "1"]) == 0
    out, err = capsys.readouterr()
    example = load_split(manifest.path, "train")[1]
    assert f"example 1 of train: `{example['id']}`" in err and "trained" in err
    inside = [part.split("⟧")[0] for part in out.split("⟦")[1:]]
    assistant = [m["content"] for m in example["messages"] if m["role"] == "assistant"]
    assert inside == [f"{text}<|im_end|>" for text in assistant]
    assert "\x1b[" not in out  # not a terminal: no colour codes
    assert main(["dataset", "inspect", manifest.path.name, "--example", "99"]) == 1
    assert "there is no example 99" in capsys.readouterr().err
    assert main(["dataset", "list"]) == 0
    assert manifest.path.name[:12] in capsys.readouterr().out


def test_replay_examples_join_training_only(tiny_model, corpus, isolated, tmp_path):
    general = tmp_path / "general.jsonl"
    write_jsonl(general, [{"messages": [{"role": "user", "content": f"What is {n} + {n}?"},
                                        {"role": "assistant", "content": f"{n} + {n} = {2 * n}."}]} for n in range(9)])
    spec = DatasetSpec(base_model=str(tiny_model("chatml")), max_seq_len=2048, replay=str(general), replay_ratio=0.5)
    manifest = build_dataset(spec, corpus_dir=corpus, home=isolated)
    train, held = load_split(manifest.path, "train"), load_split(manifest.path, "eval")
    replay = [e for e in train if e["group"] == "replay"]
    assert len(replay) == round((len(train) - len(replay)) * 0.5) == read_manifest(manifest.path)["counts"]["replay"]
    assert all(e["id"].startswith("replay:") and e["source"] == "replay" for e in replay)
    assert not any(e["group"] == "replay" for e in held)
    assert build_dataset(DatasetSpec(base_model=spec.base_model, max_seq_len=2048), corpus_dir=corpus,
                         home=isolated).path != manifest.path
    with general.open("a") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "Name a colour."},
                                         {"role": "assistant", "content": "Blue."}]}) + "\n")
    assert build_dataset(spec, corpus_dir=corpus, home=isolated).path != manifest.path  # new file content rebuilds
