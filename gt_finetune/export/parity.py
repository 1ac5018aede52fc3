"""Parity: every exported file says what the trained model says, token for token.

The reference is the model as the trainer left it (base + adapter through peft, not merged; or
the full fine-tune's weights). Each runtime — the merged safetensors reloaded from disk, each GGUF
reloaded through transformers' GGUF loader — is loaded the way a user would load it, with its own
tokenizer, chat template and stop tokens (the merged `generation_config.json`; the GGUF's EOS and
EOT ids), and greedily decodes the same prompts: a few GT-Bench tasks and a few general questions.

Strict runtimes (safetensors, GGUF f16) must render the same prompt ids from the same chat
template, stop on the trained end-of-turn token, and produce identical tokens; any difference
fails the export, naming the prompt, the position and both tokens. q8_0 rounds every weight to
8 bits, which moves logits by design: its token agreement is reported, not enforced — but its
template, tokenizer and stop tokens must still be right.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..eval.bench import FAMILIES, load_bench, prompt_messages
from ..eval.forgetting import general_probe

STRICT = "strict"  # identical tokens required
REPORTED = "reported"  # agreement measured, not enforced
REPORT = ("Nothing was exported (the partial folder is removed); run the export again, and report this message if "
          "it fails again")


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str  # `gt-bench:<item id>` or `general:<id>`
    messages: tuple[dict, ...]


@dataclass(frozen=True, slots=True)
class Runtime:
    """How one exported file is loaded: a folder for `from_pretrained`, and the GGUF in it, if any."""
    name: str  # `safetensors`, `gguf-f16`, `gguf-q8_0`
    folder: Path
    gguf_file: str | None
    mode: str  # STRICT or REPORTED


def parity_prompts(count: int) -> list[Prompt]:
    """The first GT-Bench task of each family, then general questions, then further tasks: `count` in all."""
    bench = [i for i in load_bench() if i.family != "held_out_turns"]
    firsts = [next(i for i in bench if i.family == f) for f in FAMILIES if any(i.family == f for i in bench)]
    general = [Prompt(f"general:{p['id']}", ({"role": "user", "content": p["prompt"]},)) for p in general_probe()]
    rest = [i for i in bench if i not in firsts]
    as_prompt = [Prompt(f"gt-bench:{i.id}", tuple(prompt_messages(i, role_context=None))) for i in firsts + rest]
    return (as_prompt[:len(firsts)] + general + as_prompt[len(firsts):])[:count]


def check_parity(train_dir: Path, trained: dict, runtimes: list[Runtime], *, end_of_turn_id: int,
                 prompts: list[Prompt], max_new_tokens: int) -> dict:
    """Decode `prompts` with the trainer-side model and each runtime; compare.

    Returns per runtime: prompts agreeing, the first difference, how many answers ended on the
    end-of-turn token, the stop ids it used and the largest difference from the trainer-side
    model's logits while both decoded the same tokens; and a one-line `summary`.

    Raises:
        InputError: a strict runtime differs in tokens, prompt ids, chat template or stop tokens;
            any runtime lacks the trained end-of-turn token among its stop tokens.
    """
    import torch
    from transformers import AutoTokenizer

    from ..device import pick_device
    from .merge import load_trainer_side

    tokenizer = AutoTokenizer.from_pretrained(trained["model_dir"])
    stop = sorted({tokenizer.eos_token_id, end_of_turn_id} - {None})
    texts = [tokenizer.apply_chat_template(list(p.messages), tokenize=False, add_generation_prompt=True)
             for p in prompts]
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    device = torch.device(pick_device())
    with torch.no_grad():
        reference, reference_logits = _decode(load_trainer_side(train_dir, trained), prompt_ids, stop,
                                              max_new_tokens, device)
    results = {}
    for runtime in runtimes:
        loaded_tokenizer, template, runtime_stop = _runtime_tokenizer(runtime)
        _same_template(runtime, template, tokenizer.chat_template)
        if end_of_turn_id not in runtime_stop:
            raise InputError(f"{runtime.name} would not stop on the trained end-of-turn token "
                             f"`{tokenizer.convert_ids_to_tokens(end_of_turn_id)}` (id {end_of_turn_id}): its stop ids "
                             f"are {runtime_stop}", hint=REPORT)
        _same_prompt_ids(runtime, loaded_tokenizer, prompts, texts, prompt_ids)
        with torch.no_grad():
            outputs, logits = _decode(_runtime_model(runtime), prompt_ids, runtime_stop, max_new_tokens, device)
        results[runtime.name] = {**_compare(runtime, tokenizer, prompts, reference, outputs, end_of_turn_id),
                                 "stop_token_ids": runtime_stop,
                                 "max_logit_difference": _logit_difference(reference, outputs, reference_logits, logits)}
    return {"reference": "trainer-side model (base + adapter through peft, unmerged)" if trained["spec"]["method"] != "full"
            else "trainer-side model (the full fine-tune's own weights)",
            "prompts": [p.name for p in prompts], "max_new_tokens": max_new_tokens,
            "end_of_turn": {"token": tokenizer.convert_ids_to_tokens(end_of_turn_id), "id": end_of_turn_id},
            "reference_ended_at_end_of_turn": sum(1 for r in reference if r and r[-1] == end_of_turn_id),
            "runtimes": results, "summary": summarise(results, len(prompts), max_new_tokens)}


def summarise(results: dict, prompts: int, max_new_tokens: int) -> str:
    """One sentence per mode, e.g. "safetensors and gguf-f16 match the trainer-side model token for token
    on 8/8 prompts (up to 24 tokens each); gguf-q8_0 agrees on 5/8 prompts, first difference at token
    14 of `gt-bench:cr-003`"."""
    strict = [name for name, r in results.items() if r["mode"] == STRICT]
    parts = []
    if strict:
        parts.append(f"{' and '.join(strict)} match{'es' if len(strict) == 1 else ''} the trainer-side model token "
                     f"for token on {prompts}/{prompts} prompts (up to {max_new_tokens} tokens each)")
    for name, r in results.items():
        if r["mode"] == REPORTED:
            first = r["first_difference"]
            where = (f", first difference at token {first['position']} of `{first['prompt']}`" if first
                     else ", token for token")
            parts.append(f"{name} agrees with the trainer-side model on {r['agree']}/{r['of']} prompts{where}")
    return "; ".join(parts)


def _decode(model, prompt_ids: list[list[int]], stop: list[int], max_new_tokens: int, device):
    """(greedy tokens per prompt, the logits each token was picked from). One prompt at a time (no
    padding to differ between runtimes); each answer is cut after its first stop token, which is
    kept: where a model stops is part of what it says."""
    import torch

    model = model.to(device).eval()
    outputs, logits = [], []
    for ids in prompt_ids:
        x = torch.tensor([ids], device=device)
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stop, pad_token_id=stop[0], output_logits=True,
                             return_dict_in_generate=True)
        tokens = out.sequences[0, len(ids):].tolist()
        end = next((k + 1 for k, t in enumerate(tokens) if t in stop), len(tokens))
        outputs.append(tokens[:end])
        logits.append(torch.cat(out.logits[:end]).float().cpu())
    return outputs, logits


def _logit_difference(reference: list[list[int]], outputs: list[list[int]], reference_logits, logits) -> float:
    """The largest logit difference where both models saw the same tokens: every step up to and
    including each prompt's first differing token."""
    worst = 0.0
    for want, got, a, b in zip(reference, outputs, reference_logits, logits):
        same = next((k for k, (x, y) in enumerate(zip(want, got)) if x != y), min(len(want), len(got)) - 1) + 1
        worst = max(worst, float((a[:same] - b[:same]).abs().max()))
    return worst


def _runtime_tokenizer(runtime: Runtime):
    """(tokenizer, chat template as the file stores it, stop ids) — as a runtime reads them."""
    from transformers import AutoTokenizer, GenerationConfig

    if runtime.gguf_file is None:
        tokenizer = AutoTokenizer.from_pretrained(runtime.folder)
        eos = GenerationConfig.from_pretrained(runtime.folder).eos_token_id
        return tokenizer, tokenizer.chat_template, sorted(eos if isinstance(eos, list) else [eos])
    from gguf import GGUFReader

    fields = GGUFReader(runtime.folder / runtime.gguf_file).fields
    meta = {k: fields[k].contents() for k in ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                                              "tokenizer.ggml.eot_token_id") if k in fields}
    tokenizer = AutoTokenizer.from_pretrained(runtime.folder, gguf_file=runtime.gguf_file)
    stop = sorted({meta[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in meta})
    return tokenizer, meta.get("tokenizer.chat_template"), stop


def _runtime_model(runtime: Runtime):
    import torch
    from transformers import AutoModelForCausalLM

    if runtime.gguf_file is None:
        return AutoModelForCausalLM.from_pretrained(runtime.folder, dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(runtime.folder, gguf_file=runtime.gguf_file, dtype=torch.float32)


def _same_template(runtime: Runtime, template: str | None, trained: str | None) -> None:
    if template == trained:
        return
    if template is None:
        problem = "carries no chat template"
    else:
        at = next((k for k, (a, b) in enumerate(zip(template, trained or "")) if a != b),
                  min(len(template), len(trained or "")))
        problem = (f"carries a different chat template from the one the model was trained with: from character "
                   f"{at}, {json.dumps(template[at:at + 40])} instead of {json.dumps((trained or '')[at:at + 40])}")
    raise InputError(f"{runtime.name} (`{runtime.folder / (runtime.gguf_file or '')}`) {problem}",
                     hint=f"a model prompted with another template answers differently. {REPORT}")


def _same_prompt_ids(runtime: Runtime, tokenizer, prompts: list[Prompt], texts: list[str],
                     expected: list[list[int]]) -> None:
    """The runtime's own tokenizer must turn each rendered prompt into the ids the model was trained on."""
    for prompt, text, want in zip(prompts, texts, expected):
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if got != want:
            at = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise InputError(f"{runtime.name} tokenises prompt `{prompt.name}` differently from the trained tokenizer "
                             f"at token {at}: {_pair(tokenizer, got, at)} instead of {_pair(tokenizer, want, at)}",
                             hint=REPORT)


def _compare(runtime: Runtime, tokenizer, prompts: list[Prompt], reference: list[list[int]],
             outputs: list[list[int]], end_of_turn_id: int) -> dict:
    first = None
    agree = 0
    for prompt, want, got in zip(prompts, reference, outputs):
        if got == want:
            agree += 1
            continue
        at = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        if first is None:
            first = {"prompt": prompt.name, "position": at, "trainer_side": _token(tokenizer, want, at),
                     runtime.name: _token(tokenizer, got, at)}
        if runtime.mode == STRICT:
            raise InputError(f"{runtime.name} differs from the trainer-side model on prompt `{prompt.name}` at "
                             f"generated token {at}: {_pair(tokenizer, got, at)} instead of "
                             f"{_pair(tokenizer, want, at)}",
                             hint=f"the exported {runtime.name} weights do not reproduce the trained model. {REPORT}")
    return {"mode": runtime.mode, "agree": agree, "of": len(prompts), "first_difference": first,
            "ended_at_end_of_turn": sum(1 for o in outputs if o and o[-1] == end_of_turn_id)}


def _token(tokenizer, ids: list[int], at: int) -> dict:
    if at >= len(ids):
        return {"id": None, "text": "(stopped)"}
    return {"id": ids[at], "text": tokenizer.decode([ids[at]])}


def _pair(tokenizer, ids: list[int], at: int) -> str:
    token = _token(tokenizer, ids, at)
    return "(stopped)" if token["id"] is None else f"{json.dumps(token['text'])} (id {token['id']})"
