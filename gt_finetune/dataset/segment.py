"""Long sessions → windows that fit `max_seq_len`, split only at assistant-turn boundaries.

A window is the system prompt plus whole turns (a turn: the user/tool messages, then the
assistant message that answers them). Nothing is cut mid-turn. When a window opens with tool
results, the assistant message whose calls they answer comes along as context, untrained, so
every result still has its call. A turn too long even alone first has its older tool outputs
elided with a marker; if it still does not fit it is left out, with the reason.
"""
from __future__ import annotations

from collections.abc import Callable

ELIDED = "[… tool output elided to fit the context window …]"


def turns(messages: list[dict]) -> tuple[dict | None, list[list[dict]]]:
    """(system message or None, turns); trailing messages after the last assistant are not a turn."""
    system = messages[0] if messages and messages[0]["role"] == "system" else None
    rest = messages[1:] if system else messages
    out, current = [], []
    for m in rest:
        current.append(m)
        if m["role"] == "assistant":
            out.append(current)
            current = []
    return system, out


def segment(messages: list[dict], fits: Callable[[list[dict]], bool]) -> tuple[list[list[dict]], list[str]]:
    """Windows of whole turns that each `fits`, and the reasons for turns left out.

    Args:
        messages: a canonical conversation.
        fits: whether a candidate window (a message list) renders within the token budget.
    """
    if fits(messages):
        return [messages], []
    system, units = turns(messages)
    head = [system] if system else []
    windows: list[list[dict]] = []
    problems: list[str] = []
    window: list[dict] = []
    previous: dict | None = None  # the assistant message before the window, for orphaned tool results
    for index, unit in enumerate(units):
        candidate = head + window + unit
        if window and fits(candidate):
            window += unit
            previous = unit[-1]
            continue
        if window:
            windows.append(head + window)
        context = [{**previous, "train": False}] if previous and unit[0]["role"] == "tool" else []
        unit = _fit_alone(head + context, unit, fits)
        if unit is None:
            problems.append(f"turn {index + 1} does not fit even alone with its tool outputs elided")
            window, previous = [], None
            continue
        window = context + unit
        previous = unit[-1]
    if window:
        windows.append(head + window)
    return windows, problems


def _fit_alone(head: list[dict], unit: list[dict], fits: Callable[[list[dict]], bool]) -> list[dict] | None:
    if fits(head + unit):
        return unit
    trimmed = list(unit)
    for i, m in enumerate(trimmed):  # oldest tool output first
        if m["role"] == "tool" and m.get("content") != ELIDED:
            trimmed[i] = {**m, "content": ELIDED}
            if fits(head + trimmed):
                return trimmed
    return None
