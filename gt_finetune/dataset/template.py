"""The base model's own chat template: rendering, the end-of-turn token, assistant-only labels.

Masks are derived without knowing the template: render the conversation up to a turn with the
generation prompt, render it with the turn, and train the difference up to and including the
end-of-turn token (DESIGN.md §5.1). The end-of-turn token is found the same way, from a probe
conversation, so ChatML (`<|im_end|>` = EOS), Llama-3 (`<|eot_id|>` ≠ EOS) and Gemma
(`<end_of_turn>`) templates all work, and a template that does not close assistant turns is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

IGNORE = -100
PROBE = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    tokenizer: object
    end_of_turn: int  # the token that closes an assistant turn (trained, and where generation stops)
    native_tools: bool  # the template renders `tool_calls` and `tool` turns itself
    special_texts: tuple[str, ...]  # literal texts the tokenizer would read as special tokens

    @classmethod
    def load(cls, model_dir: Path) -> "ChatTemplate":
        """Raises:
            InputError: no chat template, or one that does not close assistant turns with a special token.
        """
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if not tokenizer.chat_template:
            raise InputError(f"the tokenizer in {model_dir} has no chat template",
                             hint="use an instruct/chat model, e.g. `--var base_model=smollm2-135m-instruct`")
        special = {i: t.content for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        special.update({i: tokenizer.convert_ids_to_tokens(i) for i in tokenizer.all_special_ids})
        end_of_turn = _probe_end_of_turn(tokenizer, set(special), model_dir)
        return cls(tokenizer, end_of_turn, "tool_calls" in tokenizer.chat_template,
                   tuple(sorted(set(special.values()), key=len, reverse=True)))

    @property
    def end_of_turn_text(self) -> str:
        return self.tokenizer.convert_ids_to_tokens(self.end_of_turn)

    def prepare(self, messages: list[dict]) -> list[dict]:
        """Messages as this template expects them: native tool calls get their arguments as a dict
        (templates apply `tojson`); templates without tool support get calls folded into text."""
        if not self.native_tools:
            return fold_tool_calls(messages)
        out = []
        for m in messages:
            if m.get("tool_calls"):
                calls = [{**c, "function": {**c["function"], "arguments": _arguments(c["function"].get("arguments"))}}
                         for c in m["tool_calls"]]
                m = {**m, "tool_calls": calls}
            out.append(m)
        return out

    def render(self, messages: list[dict], *, tools: list | None = None, generation_prompt: bool = False) -> list[int]:
        return self._ids(self.text(messages, tools=tools, generation_prompt=generation_prompt))

    def text(self, messages: list[dict], *, tools: list | None = None, generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def tokenize(self, messages: list[dict], *, tools: list | None = None) -> dict | str:
        """`{input_ids, labels, roles}` for prepared messages (`roles[k]`: the role of the message token
        k belongs to), or why the conversation cannot be used as it is.

        Each assistant turn is tokenized on its own, after its generation prompt, exactly as the
        model meets it when it answers: tokenizing the whole text at once can merge the prompt's
        last characters with the answer's first (e.g. `\\n` + spaces) into a token never seen at
        inference, and would make the trained span not decode to the turn.
        """
        for i, m in enumerate(messages):
            content = m.get("content") if isinstance(m.get("content"), str) else ""
            clash = next((s for s in self.special_texts if s in content), None)
            if clash:
                return f"message {i + 1} ({m['role']}) contains the special token text `{clash}`, which the " \
                       "tokenizer would read as a turn boundary"
        full = self.text(messages, tools=tools)
        pieces: list[tuple[str, str, bool]] = []  # (text, role, trained)
        done = 0
        for i, m in enumerate(messages):
            upto = self.text(messages[: i + 1], tools=tools)
            if not full.startswith(upto) or len(upto) < done:
                return f"chat template renders turn {i + 1} differently once later turns follow"
            if m["role"] == "assistant" and m.get("train") is not False:
                prompt = self.text(messages[:i], tools=tools, generation_prompt=True)
                if not upto.startswith(prompt) or len(prompt) < done:
                    return f"chat template's generation prompt does not match how turn {i + 1} is rendered"
                pieces += [(prompt[done:], m["role"], False), (upto[len(prompt):], m["role"], True)]
            else:
                pieces.append((upto[done:], m["role"], False))
            done = len(upto)
        pieces.append((full[done:], "", False))
        ids, labels, roles = [], [], []
        for text, role, trained in pieces:
            piece = self._ids(text)
            cut = piece.index(self.end_of_turn) + 1 if trained and self.end_of_turn in piece else len(piece)
            ids += piece
            labels += (piece[:cut] + [IGNORE] * (len(piece) - cut)) if trained else [IGNORE] * len(piece)
            roles += [role] * len(piece)
        return {"input_ids": ids, "labels": labels, "roles": roles}

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _probe_end_of_turn(tokenizer, special_ids: set[int], model_dir: Path) -> int:
    prompt = tokenizer.apply_chat_template(PROBE[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(PROBE, tokenize=False)
    turn = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"] if full.startswith(prompt) else []
    closing = [t for t in turn if t in special_ids]
    if not closing:
        raise InputError(f"mask audit failed: the chat template in {model_dir} does not mark assistant turns: the "
                         f"assistant turn of a probe renders as {full[len(prompt):]!r} after the prompt {prompt!r}, "
                         "with no special end-of-turn token, so the model could not learn where its turn ends",
                         hint="use the model's own instruct template (a chat_template that wraps each turn in "
                              "special tokens such as `<|im_start|>…<|im_end|>`)")
    return closing[0]


def _arguments(raw) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (ValueError, RecursionError):  # not JSON, or past Python's limits (4300-digit numbers, the stack)
        return {"raw": raw}
    return value if isinstance(value, dict) else {"value": value}


def fold_tool_calls(messages: list[dict]) -> list[dict]:
    """For chat templates without tool support: calls become `<tool_call>` JSON in the assistant's
    text and results become user turns wrapped in `<tool_response>` (documented in docs/formats.md)."""
    out = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = "\n".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"],
                                                           "arguments": _arguments(c["function"].get("arguments"))},
                                                          sort_keys=True) + "\n</tool_call>" for c in m["tool_calls"])
            text = f"{m.get('content') or ''}\n{calls}".strip()
            out.append({k: v for k, v in {**m, "content": text}.items() if k != "tool_calls"})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response name=\"{m.get('name', '')}\">\n"
                                                   f"{m.get('content') or ''}\n</tool_response>"})
        else:
            out.append(m)
    merged: list[dict] = []
    for m in out:
        if merged and m["role"] == "user" and merged[-1]["role"] == "user":
            merged[-1] = {**merged[-1], "content": merged[-1]["content"] + "\n" + m["content"]}
        else:
            merged.append(m)
    return merged
