"""Parity: every exported file says what the trained model says.

The reference is the model as the trainer left it (base + adapter through peft, not merged; or
the full fine-tune's weights), in float32. Each runtime — the merged safetensors reloaded from
disk, each GGUF reloaded through transformers' GGUF loader — is loaded the way a user would load
it, with its own tokenizer, chat template and stop tokens (the merged `generation_config.json`;
the GGUF's EOS and EOT ids), and greedily decodes the same prompts: a few GT-Bench tasks and a
few general questions. Every runtime must render the same prompt ids from the same chat template
and stop on the trained end-of-turn token.

Each runtime is held to what its format can promise:

- Exact formats (safetensors: the merged float32 weights) must produce identical tokens; any
  difference fails the export, naming the prompt, the position and both tokens.
- Lossy formats (GGUF f16 and q8_0) round every weight, which moves every logit a little and so
  flips a greedy pick wherever two tokens are nearly tied: identical tokens cannot be their bar.
  Instead the runtime is fed the reference's own greedy answer (teacher forcing) and its
  next-token logits are compared with the reference's at every position. The export fails where
  a logit moves by more than the format's bound, or where the runtime would pick another token
  than one the reference preferred by more than that bound (not a near-tie). Their free greedy
  decoding is still compared and its first difference reported.

The bound is in standard deviations of the reference's logits at that position (their spread
over the vocabulary), so it scales with the model. Measured over 8 prompts x 24 tokens, the
largest moves were 0.010 (f16) and 0.30 (q8_0) on the default demo's model (SmolLM2-135M, 30
LoRA steps), 0.007 and 0.13 on tiny random Llama and Qwen2 models; the flips they caused were
all near-ties, the reference leading by at most 0.0023 (f16) and 0.05 (q8_0). q8_0's error is
about 30 times f16's, as its rounding step is. The bounds, 0.05 and 1.0, sit 3 to 7 times
above those moves and far below what broken weights do (embedding rows shuffled: 5 to 12).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..eval.bench import FAMILIES, load_bench, prompt_messages
from ..eval.forgetting import general_probe

STRICT = "strict"  # identical tokens required
LOSSY = "lossy"  # logits within the format's bound; tokens may differ only at near-ties, reported
# Largest logit move each lossy GGUF type may cause, in standard deviations of the reference's
# logits at that position, and what causes it (see the module docstring for the measurements).
LOGIT_BOUNDS = {"f16": (0.05, "float16 rounding"), "q8_0": (1.0, "8-bit quantisation")}
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
    lossy: str | None = None  # the GGUF type (a key of LOGIT_BOUNDS) of a lossy format; None: exact

    @property
    def mode(self) -> str:
        return STRICT if self.lossy is None else LOSSY


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

    Returns per runtime: its mode, prompts agreeing, the first difference, how many answers ended
    on the end-of-turn token, the stop ids it used, the largest logit difference from the
    trainer-side model with the trainer-side answer fed to both (and, for a lossy format, its
    bound and the largest share of it used, and how many positions picked another token); and a
    one-line `summary`.

    Raises:
        InputError: an exact runtime differs in tokens; a lossy one moves logits beyond its format's
            bound or flips a token that was no near-tie; any runtime differs in prompt ids, chat
            template or stop tokens, or lacks the trained end-of-turn token among its stop tokens.
    """
    import torch
    from transformers import AutoTokenizer

    from ..device import pick_device
    from .merge import load_trainer_side

    tokenizer = AutoTokenizer.from_pretrained(trained["model_dir"], local_files_only=True)
    stop = sorted({tokenizer.eos_token_id, end_of_turn_id} - {None})
    texts = [tokenizer.apply_chat_template(list(p.messages), tokenize=False, add_generation_prompt=True)
             for p in prompts]
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    device = torch.device(pick_device())
    with torch.no_grad():
        model = load_trainer_side(train_dir, trained).to(device).eval()
        reference = _decode(model, prompt_ids, stop, max_new_tokens, device)
        reference_logits = _forced_logits(model, prompt_ids, reference, device)
        del model  # one model in memory at a time
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
            model = _runtime_model(runtime).to(device).eval()
            logits = _forced_logits(model, prompt_ids, reference, device)
            outputs = _decode(model, prompt_ids, runtime_stop, max_new_tokens, device)
            del model
        results[runtime.name] = {**_compare(runtime, tokenizer, prompts, reference, outputs, end_of_turn_id),
                                 "stop_token_ids": runtime_stop,
                                 **_logits_compare(runtime, tokenizer, prompts, reference, reference_logits, logits)}
    return {"reference": "trainer-side model (base + adapter through peft, unmerged)" if trained["spec"]["method"] != "full"
            else "trainer-side model (the full fine-tune's own weights)",
            "prompts": [p.name for p in prompts], "max_new_tokens": max_new_tokens,
            "end_of_turn": {"token": tokenizer.convert_ids_to_tokens(end_of_turn_id), "id": end_of_turn_id},
            "reference_ended_at_end_of_turn": sum(1 for r in reference if r and r[-1] == end_of_turn_id),
            "runtimes": results, "summary": summarise(results, len(prompts), max_new_tokens)}


def summarise(results: dict, prompts: int, max_new_tokens: int) -> str:
    """One sentence per mode, e.g. "safetensors matches the trainer-side model token for token on 8/8
    prompts (up to 24 tokens each); gguf-f16 agrees with the trainer-side model on 7/8 prompts, first
    difference at token 8 of `gt-bench:mail-witness-001` (a near-tie), logits within 9% of its bound"."""
    strict = [name for name, r in results.items() if r["mode"] == STRICT]
    parts = []
    if strict:
        parts.append(f"{' and '.join(strict)} match{'es' if len(strict) == 1 else ''} the trainer-side model token "
                     f"for token on {prompts}/{prompts} prompts (up to {max_new_tokens} tokens each)")
    for name, r in results.items():
        if r["mode"] == LOSSY:
            first = r["first_difference"]
            where = (f", first difference at token {first['position']} of `{first['prompt']}` (a near-tie)" if first
                     else ", token for token")
            parts.append(f"{name} agrees with the trainer-side model on {r['agree']}/{r['of']} prompts{where}, "
                         f"logits within {r['max_share_of_bound']:.0%} of its bound")
    return "; ".join(parts)


def _decode(model, prompt_ids: list[list[int]], stop: list[int], max_new_tokens: int, device) -> list[list[int]]:
    """Greedy tokens per prompt. One prompt at a time (no padding to differ between runtimes); each
    answer is cut after its first stop token, which is kept: where a model stops is part of what
    it says."""
    import torch

    outputs = []
    for ids in prompt_ids:
        x = torch.tensor([ids], device=device)
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stop, pad_token_id=stop[0])
        tokens = out[0, len(ids):].tolist()
        end = next((k + 1 for k, t in enumerate(tokens) if t in stop), len(tokens))
        outputs.append(tokens[:end])
    return outputs


def _forced_logits(model, prompt_ids: list[list[int]], answers: list[list[int]], device) -> list:
    """Per prompt, the logits `model` predicts each token of `answers` from, with the answer fed in
    (teacher forcing): one forward pass over prompt + answer, so both sides see the same context."""
    import torch

    logits = []
    for ids, answer in zip(prompt_ids, answers):
        x = torch.tensor([ids + answer[:-1]], device=device)
        out = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, len(ids) - 1:]
        logits.append(out.float().cpu())
    return logits


def _logits_compare(runtime: Runtime, tokenizer, prompts: list[Prompt], reference: list[list[int]],
                    reference_logits: list, logits: list) -> dict:
    """The largest logit difference from the reference over every forced position; for a lossy
    runtime also its bound, the largest share of it used and the positions picking another token.

    Raises:
        InputError: a lossy runtime moves a logit beyond its bound, or picks another token where the
            reference's choice led by more than the bound.
    """
    worst, share, flips = 0.0, 0.0, 0
    bound, cause = LOGIT_BOUNDS[runtime.lossy] if runtime.lossy else (None, None)
    for prompt, answer, want, got in zip(prompts, reference, reference_logits, logits):
        difference = (got - want).abs().max(dim=-1).values
        worst = max(worst, float(difference.max()))
        if bound is None:
            continue
        allowed = bound * want.std(dim=-1)
        share = max(share, float((difference / allowed).max()))
        for at in range(len(answer)):
            picked = int(got[at].argmax())
            lead = float(want[at, answer[at]] - want[at, picked])
            if difference[at] > allowed[at] or lead > allowed[at]:
                what = (f"a logit moves by {float(difference[at]):.3g}" if difference[at] > allowed[at] else
                        f"it picks {_pair(tokenizer, [picked], 0)} where the trainer-side model's "
                        f"{_pair(tokenizer, answer, at)} led by {lead:.3g}")
                raise InputError(f"{runtime.name} differs from the trainer-side model on prompt `{prompt.name}` at "
                                 f"generated token {at}: {what}, more than {cause} explains ({float(allowed[at]):.3g}: "
                                 f"{bound} times the standard deviation of the trainer-side model's logits there)",
                                 hint=f"the exported {runtime.name} weights do not reproduce the trained model. "
                                      f"{REPORT}")
            flips += picked != answer[at]
    if bound is None:
        return {"max_logit_difference": worst}
    return {"max_logit_difference": worst, "logit_bound": bound, "max_share_of_bound": round(share, 4),
            "near_ties": flips}


def _runtime_tokenizer(runtime: Runtime):
    """(tokenizer, chat template as the file stores it, stop ids) — as a runtime reads them."""
    from transformers import AutoTokenizer, GenerationConfig

    if runtime.gguf_file is None:
        tokenizer = AutoTokenizer.from_pretrained(runtime.folder, local_files_only=True)
        eos = GenerationConfig.from_pretrained(runtime.folder, local_files_only=True).eos_token_id
        return tokenizer, tokenizer.chat_template, sorted(eos if isinstance(eos, list) else [eos])
    from gguf import GGUFReader

    fields = GGUFReader(runtime.folder / runtime.gguf_file).fields
    meta = {k: fields[k].contents() for k in ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                                              "tokenizer.ggml.eot_token_id") if k in fields}
    tokenizer = AutoTokenizer.from_pretrained(runtime.folder, gguf_file=runtime.gguf_file, local_files_only=True)
    stop = sorted({meta[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in meta})
    return tokenizer, meta.get("tokenizer.chat_template"), stop


def _runtime_model(runtime: Runtime):
    import torch
    from transformers import AutoModelForCausalLM

    if runtime.gguf_file is None:
        return AutoModelForCausalLM.from_pretrained(runtime.folder, dtype=torch.float32, local_files_only=True)
    return AutoModelForCausalLM.from_pretrained(runtime.folder, gguf_file=runtime.gguf_file, dtype=torch.float32,
                                                local_files_only=True)


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
