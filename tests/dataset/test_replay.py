"""Replay conversations: a JSONL file read line by line, or the base model's cached answers."""
import json
import shutil
from pathlib import Path

import pytest

from gt_finetune.dataset.replay import PROMPTS, replay_conversations
from gt_finetune.errors import InputError


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def from_file(path: Path, count: int, seed: int = 0) -> list[dict]:
    return replay_conversations(str(path), count=count, model_dir=Path("unused"), home=path.parent / "home", seed=seed)


def test_bad_lines_are_reported_with_file_and_line_and_the_good_ones_kept(tmp_path, capsys):
    path = write_lines(tmp_path / "general.jsonl", [
        chat(0),
        "{not json",
        {"prompt": "alpaca style", "output": "no messages"},
        {"messages": [{"role": "user", "content": "no answer"}]},
        {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},
        "",
        {**chat(1), "meta": {"generated_by": "human", "license": "cc0"}},
        chat(0),
        "null",
    ])
    got = from_file(path, count=10)
    err = capsys.readouterr().err
    assert [m["messages"] for m in got] == [chat(0)["messages"], chat(1)["messages"]]
    reported = dict(line.split(": ", 1) for line in err.splitlines() if line.startswith(str(path)))
    expected = {2: "not JSON", 3: "no `messages` list", 4: "no assistant turn", 5: 'role "bot"',
                6: "`content` is 3, not a string", 9: "same conversation as line 1", 10: "null is not a JSON object"}
    assert set(reported) == {f"{path}:{n}" for n in expected}  # a blank line (7) is not a problem
    assert all(problem in reported[f"{path}:{n}"] for n, problem in expected.items())
    assert "skipped 7 bad line(s)" in err
    first, second = got
    assert first["id"].startswith("replay:") and len(first["id"]) == len("replay:") + 12
    assert first["meta"] == {"source": "replay", "generated_by": "unknown", "location": f"{path}:1",
                             "content_hash": first["meta"]["content_hash"]}
    assert second["meta"]["generated_by"] == "human" and second["meta"]["license"] == "cc0"


def test_the_seed_picks_the_same_conversations_and_ids_do_not_depend_on_line_order(tmp_path):
    path = write_lines(tmp_path / "general.jsonl", [chat(i) for i in range(30)])
    picked = from_file(path, count=5, seed=1)
    assert len(picked) == 5 and picked == from_file(path, count=5, seed=1)
    assert [r["id"] for r in picked] != [r["id"] for r in from_file(path, count=5, seed=2)]
    reversed_path = write_lines(tmp_path / "reversed.jsonl", [chat(i) for i in reversed(range(30))])
    ids = {r["id"] for r in from_file(path, count=30)}
    assert ids == {r["id"] for r in from_file(reversed_path, count=30)} and len(ids) == 30


def test_asking_for_more_than_there_are_returns_all_and_says_so(tmp_path, capsys):
    path = write_lines(tmp_path / "general.jsonl", [chat(i) for i in range(3)])
    assert len(from_file(path, count=8)) == 3
    assert "asked for 8 conversations" in capsys.readouterr().err
    assert from_file(path, count=0) == []


def test_a_missing_file_is_an_input_error_with_a_hint(tmp_path):
    with pytest.raises(InputError, match="does not exist") as e:
        from_file(tmp_path / "nope.jsonl", count=3)
    assert "`generate`" in e.value.hint


def test_a_file_without_one_usable_conversation_is_an_input_error(tmp_path):
    path = write_lines(tmp_path / "alpaca.jsonl", [{"instruction": "hi", "output": "hello"}])
    with pytest.raises(InputError, match="no usable conversation"):
        from_file(path, count=3)


def test_the_packaged_prompt_list_is_varied_and_one_prompt_a_line():
    prompts = PROMPTS.read_text(encoding="utf-8").splitlines()
    assert 50 <= len(prompts) <= 80 and all(p.strip() == p and p for p in prompts)
    assert len(set(prompts)) == len(prompts)


@pytest.fixture
def talkative_model(tiny_model, tmp_path) -> Path:
    """The tiny ChatML model with its generation prompt ending on a visible token.

    A random model keeps repeating the prompt's last token; after the usual `assistant\\n` that
    is whitespace, which the replay rightly leaves out as an empty answer.
    """
    folder = Path(shutil.copytree(tiny_model("chatml"), tmp_path / "talkative"))
    template = folder / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|im_start|>assistant\n{% endif %}",
                                                     "<|im_start|>assistant\nAnswer:{% endif %}"))
    return folder


def generate(model_dir: Path, home: Path, prompts: Path, count: int = 2, seed: int = 0) -> list[dict]:
    return replay_conversations("generate", count=count, model_dir=model_dir, home=home, seed=seed,
                                prompts_file=prompts, max_new_tokens=6)


def test_generated_answers_are_cached_by_model_contents_and_reused_without_loading_the_model(
        talkative_model, tmp_path, isolated, monkeypatch):
    prompts = write_lines(tmp_path / "prompts.txt", ["What is 2 + 2?", "Name a colour.", "Say hello."])
    first = generate(talkative_model, isolated, prompts)
    assert len(first) == 2
    for record in first:
        user, assistant = record["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant" and assistant["content"].strip()
        assert record["meta"]["generated_by"] == "model:talkative" and record["meta"]["source"] == "replay"
    assert len(list((isolated / "cache" / "replay").glob("*.jsonl"))) == 1

    import transformers

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded although its answers are cached")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    assert generate(talkative_model, isolated, prompts) == first
    moved = shutil.copytree(talkative_model, tmp_path / "elsewhere" / "talkative")
    assert generate(moved, isolated, prompts) == first  # same contents at another path
    assert len(generate(talkative_model, isolated, prompts, count=5)) == 3


def test_a_model_that_answers_only_whitespace_is_an_input_error(tiny_model, tmp_path, isolated, capsys):
    prompts = write_lines(tmp_path / "prompts.txt", ["Say hello."])
    with pytest.raises(InputError, match="only empty answers"):
        generate(tiny_model("chatml"), isolated, prompts)
    assert "1 empty answer(s) left out (prompts.txt:1)" in capsys.readouterr().err
