"""Segmentation at assistant-turn boundaries, with a character budget standing in for tokens."""
from gt_finetune.dataset.segment import ELIDED, segment, turns

SYSTEM = {"role": "system", "content": "You are a Gas Town polecat."}


def budget(limit):
    return lambda window: sum(len(m.get("content") or "") + 10 for m in window) <= limit


def convo(n):
    out = [SYSTEM]
    for i in range(n):
        out += [{"role": "user", "content": f"step {i} " + "x" * 40},
                {"role": "assistant", "content": f"did {i} " + "y" * 40}]
    return out


def test_short_conversation_is_one_window():
    messages = convo(2)
    assert segment(messages, budget(10_000)) == ([messages], [])


def test_long_conversation_splits_at_assistant_turns_and_each_window_keeps_the_system_prompt():
    messages = convo(6)
    windows, problems = segment(messages, budget(250))
    assert problems == []
    assert all(w[0] == SYSTEM and w[-1]["role"] == "assistant" for w in windows)
    assert all(budget(250)(w) for w in windows)
    trained = [m for w in windows for m in w if m["role"] == "assistant" and m.get("train") is not False]
    assert [m["content"][:5] for m in trained] == [f"did {i}" for i in range(6)]  # every turn, once, in order


def test_a_window_opening_with_tool_results_brings_their_call_as_untrained_context():
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]}
    messages = [SYSTEM, {"role": "user", "content": "u" * 60}, call,
                {"role": "tool", "tool_call_id": "t1", "name": "Bash", "content": "r" * 60},
                {"role": "assistant", "content": "a" * 60}]
    windows, _ = segment(messages, budget(200))
    assert len(windows) == 2
    second = windows[1]
    assert second[1] == {**call, "train": False} and second[2]["role"] == "tool"


def test_oversized_tool_output_is_elided_before_the_turn_is_dropped():
    messages = [SYSTEM, {"role": "user", "content": "look"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "name": "Bash", "content": "z" * 5000},
                {"role": "assistant", "content": "found it"}]
    windows, problems = segment(messages, budget(200))
    assert problems == []
    assert any(m.get("content") == ELIDED for w in windows for m in w)
    assert windows[-1][-1]["content"] == "found it"


def test_a_turn_that_cannot_fit_is_reported_not_cut():
    messages = [SYSTEM, {"role": "user", "content": "q" * 500}, {"role": "assistant", "content": "a"},
                {"role": "user", "content": "short"}, {"role": "assistant", "content": "ok"}]
    windows, problems = segment(messages, budget(150))
    assert problems == ["turn 1 does not fit even alone with its tool outputs elided"]
    assert windows == [[SYSTEM, {"role": "user", "content": "short"}, {"role": "assistant", "content": "ok"}]]


def test_turns_ignore_a_trailing_unanswered_user_message():
    system, units = turns(convo(1) + [{"role": "user", "content": "dangling"}])
    assert system == SYSTEM and len(units) == 1
