"""The model card (`README.md`): what the model is, what it learned from, how well, and its limits.

Hugging Face front matter, then sections a reviewer or a later user reads: base model, corpus,
redaction, mask audit, training, memory, evaluation, limits, intended roles, files and parity.
Every number is read from a manifest; a manifest the export was not given is named as missing,
never filled in.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..workspace import content_id, short_id

FEW_EXAMPLES = 20  # a role with fewer corpus records than this is named under known limits
GB = 1e9


def base_model_info(model_dir: Path, name: str) -> dict:
    """`name` (the alias or the folder's name) and `license`, from the base model's own metadata:
    the packaged GGUF it was converted from (its manifest names it), or its README's front matter;
    None when neither states one."""
    manifest, readme = model_dir / "manifest.json", model_dir / "README.md"
    license_ = None
    if manifest.is_file():
        source = Path(json.loads(manifest.read_text(encoding="utf-8")).get("source") or "")
        if source.suffix == ".gguf" and source.is_file():
            from gguf import GGUFReader

            field = GGUFReader(source).fields.get("general.license")
            license_ = field.contents() if field else None
    if license_ is None and readme.is_file():
        front = readme.read_text(encoding="utf-8").split("---")
        if len(front) > 2 and not front[0].strip():
            license_ = next((line.split(":", 1)[1].strip() for line in front[1].splitlines()
                             if line.startswith("license:")), None)
    return {"name": Path(name).name if "/" in name else name, "license": license_}


def render_card(*, trained: dict, dataset: dict | None, corpus: dict | None, plan: dict | None,
                evaluation: dict | None, base: dict, files: list[dict], parity: dict | None, reload: dict) -> str:
    """`evaluation`: the eval stage's metrics.json with its manifest `id`; `base`: `name` and
    `license` (None when the base model states none). `parity` None: not exported yet, so the card
    has no Files and Parity sections (the job report draws it so)."""
    spec = trained["spec"]
    sections = [
        _front_matter(spec, base, gguf=any(f["path"].endswith(".gguf") for f in files)),
        f"# {base['name']} fine-tuned on a Gas Town's work history\n\n"
        f"Training run `{trained['id']}`: {_method(spec)} on `{base['name']}`, {trained['steps']} steps, "
        f"final training loss {trained['final_loss']}.",
        _base_section(trained, base),
        _corpus_section(corpus),
        _redaction_section(corpus),
        _mask_section(dataset),
        _training_section(trained, dataset, plan),
        _memory_section(trained, plan),
        _eval_section(evaluation),
        _limits_section(trained, corpus, evaluation),
        _roles_section(corpus),
    ] + ([_files_section(files, reload), _parity_section(parity)] if parity is not None else [])
    return "\n\n".join(sections) + "\n"


def _front_matter(spec: dict, base: dict, *, gguf: bool) -> str:
    tags = ["gt-finetune", "gas-town", spec["method"]] + (["peft"] if spec["method"] != "full" else []) \
        + (["gguf"] if gguf else [])
    return "\n".join(["---", f"license: {base['license'] or 'other'}", f"base_model: {base['name']}", "tags:",
                      *[f"- {t}" for t in tags], "library_name: transformers", "pipeline_tag: text-generation", "---"])


def _base_section(trained: dict, base: dict) -> str:
    license_line = (f"License: `{base['license']}` (from the base model's own metadata)." if base["license"] else
                    "License: the base model states none, so the front matter says `other`; set the base "
                    "model's real license before publishing.")
    return (f"## Base model\n\n`{base['name']}`, loaded from `{trained['model_dir']}`. {license_line}")


def _corpus_section(corpus: dict | None) -> str:
    if corpus is None:
        return "## Corpus\n\nNo corpus manifest was given to the export: the corpus id, its fingerprint and its " \
               "record counts are unknown."
    counts = corpus["counts"]
    fingerprint = corpus.get("fingerprint") or {}
    lines = ["## Corpus", "",
             f"Corpus `{corpus['id']}`, fingerprint `{short_id(content_id(fingerprint))}` (town "
             f"`{fingerprint.get('town', 'unknown')}`, {_count(len(fingerprint.get('files', {})), 'fingerprinted file')}), "
             f"created {corpus.get('created_at', 'at an unrecorded time')}: {counts['records']} records kept, "
             f"{counts['rejected']} lines rejected.", "", "| source | records |", "|---|---|"]
    lines += [f"| {source} | {n} |" for source, n in counts["by_source"].items()]
    return "\n".join(lines)


def _redaction_section(corpus: dict | None) -> str:
    if corpus is None:
        return "## Redaction\n\nNo corpus manifest was given to the export: redaction counts are unknown."
    counts = corpus.get("redaction") or {}
    if not counts:
        return "## Redaction\n\nThe redactor replaced nothing: no rule family matched any record."
    lines = ["## Redaction", "", f"{sum(counts.values())} values were replaced by placeholders before training.",
             "", "| rule family | replacements |", "|---|---|"]
    return "\n".join(lines + [f"| {family} | {n} |" for family, n in counts.items()])


def _mask_section(dataset: dict | None) -> str:
    if dataset is None:
        return "## Mask audit\n\nNo dataset manifest was given to the export: the mask audit is unknown."
    audit = dataset["mask_audit"]
    lines = ["## Mask audit", "",
             f"Dataset `{short_id(dataset['id'])}`: {dataset['counts']['train']} training and "
             f"{dataset['counts']['eval']} held-out examples. The loss trained {audit['trained_tokens']} of "
             f"{audit['tokens']} tokens ({audit['trained_share']:.1%}): assistant turns only, each ending on "
             f"`{audit['end_of_turn']}`.", "",
             "| check | count |", "|---|---|",
             f"| examples audited | {audit['examples']} |",
             f"| non-assistant tokens trained | {audit['non_assistant_trained']} |",
             f"| assistant turns missing their end-of-turn token | {audit['missing_end_of_turn']} |",
             f"| examples truncated | {audit['truncated']} |",
             f"| untrainable windows | {audit['untrainable_windows']} |", "",
             "| role | tokens | trained | share |", "|---|---|---|---|"]
    lines += [f"| {role} | {r['tokens']} | {r['trained']} | {r['trained_share']:.1%} |"
              for role, r in audit["by_role"].items()]
    return "\n".join(lines)


def _training_section(trained: dict, dataset: dict | None, plan: dict | None) -> str:
    spec = trained["spec"]
    lora = spec.get("lora") or {}
    seq_len = dataset["spec"]["max_seq_len"] if dataset else "unknown (no dataset manifest)"
    dtype = (f"{plan['workload']['dtype']} (`{spec['dtype']}` resolved by the planner)" if plan and spec["dtype"] == "auto"
             else f"`{spec['dtype']}`")
    rows = [("method", spec["method"])]
    if spec["method"] != "full":
        rows += [("LoRA rank r", lora.get("r")), ("LoRA alpha", lora.get("alpha")),
                 ("LoRA targets", ", ".join(lora.get("target_modules", [])))]
    rows += [("learning rate", spec["learning_rate"]), ("steps", f"{trained['steps']} of {spec['max_steps']}"),
             ("batch", f"{spec['batch_size']} per micro-batch × {spec['grad_accum']} accumulation × "
                       f"{_count(trained.get('processes', 1), 'process', 'processes')}"),
             ("packing", spec.get("packing")), ("sequence length", seq_len), ("dtype", dtype),
             ("device", trained.get("device", "unrecorded")), ("final training loss", trained["final_loss"])]
    return "\n".join(["## Training", "", "| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def _memory_section(trained: dict, plan: dict | None) -> str:
    measured = trained.get("measured") or {}
    gpu = bool(measured.get("peak_gpu"))
    kind, peak = ("GPU memory", measured.get("peak_gpu")) if gpu else ("process memory (peak RSS)",
                                                                        measured.get("peak_rss"))
    if plan is None:
        return (f"## Memory\n\nMeasured peak {kind}: {peak / GB:.2f} GB. No plan manifest was given to the "
                f"export, so there is no estimate to compare with.") if peak else \
            "## Memory\n\nNo plan manifest was given and the run recorded no peak memory."
    estimate = plan["estimate"]["total_bytes"]
    if not peak:
        return f"## Memory\n\nThe planner estimated {estimate / GB:.2f} GB; the run recorded no peak memory."
    return (f"## Memory\n\nThe planner estimated {estimate / GB:.2f} GB for {plan['workload']['device']}; the run's "
            f"measured peak {kind} was {peak / GB:.2f} GB ({peak / estimate - 1:+.0%} against the estimate).")


def _eval_section(evaluation: dict | None) -> str:
    if evaluation is None:
        return "## Evaluation\n\nNo eval manifest was given to the export: this model's pass rates, review gate " \
               "and forgetting probe are unknown."
    variants = evaluation["variants"]
    head = "| family | " + " | ".join(variants) + " |"
    lines = ["## Evaluation", "", f"Eval `{short_id(evaluation['id'])}`. Pass rates, with the change against "
             "`base` in percentage points:", "", head, "|---|" + "---|" * len(variants)]
    for family, cells in list(evaluation["families"].items()) + [("**all**", evaluation["overall"])]:
        base = _rate(cells["base"]) if "base" in cells else None
        lines.append(f"| {family} | " + " | ".join(_cell(cells[v], base, v) for v in variants) + " |")
    if evaluation.get("sampled"):
        lines += ["", f"GT-Bench was sampled: the first {evaluation['sampled']['items_per_family']} items of each "
                      f"family (of {evaluation['sampled']['of']})."]
    gate = evaluation["gate"]
    lines += ["", f"Review gate: **{'PASS' if gate['passed'] else 'FAIL'}**", "",
              "| check | measured | required | result |", "|---|---|---|---|"]
    lines += [f"| {c['name']} | {c['measured']} | {c['required']} | {'pass' if c['passed'] else 'FAIL'} |"
              for c in gate["checks"]]
    probe = evaluation.get("forgetting")
    lines += ["", (f"Forgetting probe ({probe['prompts']} general prompts): perplexity of reference answers "
                   f"{probe['base_perplexity']} base → {probe['tuned_perplexity']} tuned; answers naming the expected "
                   f"facts {probe['base_keyword_hits']} base → {probe['tuned_keyword_hits']} tuned.") if probe
              else "Forgetting probe: not run (the evaluation did not score the base model)."]
    if evaluation.get("tuned_loss") is not None:
        lines += ["", f"Held-out loss ({evaluation['held_out_examples']} examples): {evaluation['base_loss']} base → "
                      f"{evaluation['tuned_loss']} tuned."]
    return "\n".join(lines)


def _limits_section(trained: dict, corpus: dict | None, evaluation: dict | None) -> str:
    lines = ["## Known limits", "",
             f"- Small sample: {trained.get('examples', 'an unrecorded number of')} training examples "
             f"({trained.get('rows', 'unrecorded')} packed rows), {trained['steps']} optimizer steps.",
             "- Language: English only. The corpus is one town's English work history, and GT-Bench and the "
             "forgetting probe ask in English; other languages were not evaluated."]
    if corpus is not None:
        roles = {r: n for r, n in corpus["counts"].get("by_role", {}).items() if r != "-"}
        few = sorted((n, r) for r, n in roles.items() if n < FEW_EXAMPLES)
        if few:
            lines.append("- Roles with few examples (under " + str(FEW_EXAMPLES) + " corpus records): "
                         + ", ".join(f"{r} ({n})" for n, r in few) + "; expect weaker answers for them.")
    else:
        lines.append("- Roles with few examples: unknown (no corpus manifest).")
    if evaluation is not None and not evaluation["gate"]["passed"]:
        lines.append(f"- The review gate failed: {evaluation['gate']['guidance'] or 'see the evaluation above'}.")
    lines.append("- It learned this town's conventions (rigs, bead prefixes, formulas); another town differs.")
    return "\n".join(lines)


def _roles_section(corpus: dict | None) -> str:
    if corpus is None:
        return "## Intended roles\n\nUnknown: no corpus manifest was given to the export."
    roles = sorted(((n, r) for r, n in corpus["counts"].get("by_role", {}).items() if r != "-"), reverse=True)
    return ("## Intended roles\n\nGas Town agents in the roles the corpus covers, by records: "
            + ", ".join(f"{r} ({n})" for n, r in roles) + ".")


def _files_section(files: list[dict], reload: dict) -> str:
    lines = ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| `{f['path']}` | {f['bytes']} | `{f['sha256'][:16]}…` |" for f in files]
    for name, check in reload.items():
        types = ", ".join(f"{n} {t}" for t, n in check["types"].items())
        if "Q8_0" in check["types"]:
            how = (f"Q8_0 tensors within 8-bit rounding of the merged model (the worst error "
                   f"{check['q8_0_max_share_of_bound']:.0%} of its bound), the others equal to it")
        else:
            how = "each equal to the merged model's weight at its stored precision"
        lines.append(f"\nReload check `{name}`: {check['tensors']} tensors ({types}) read back; {how}.")
    return "\n".join(lines)


def _parity_section(parity: dict) -> str:
    lines = ["## Parity", "", f"Greedy decoding of {len(parity['prompts'])} prompts ({', '.join(f'`{p}`' for p in parity['prompts'])}), "
             f"up to {parity['max_new_tokens']} tokens, against the {parity['reference']}: {parity['summary']}.", "",
             "Exact formats must decode identical tokens. Lossy ones (GGUF f16, q8_0) round every weight, so each is "
             "fed the trainer-side model's answers instead, and its logits must stay within its format's bound (in "
             "standard deviations of the trainer-side model's logits at each position); a token may differ only "
             "where the trainer-side model's choice led by less than that bound (a near-tie).", "",
             "| runtime | held to | prompts identical | ended on end-of-turn | stop ids | max logit difference |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {_held_to(r)} | {r['agree']}/{r['of']} | {r['ended_at_end_of_turn']} | "
              f"{r['stop_token_ids']} | {r['max_logit_difference']:.2g} |" for name, r in parity["runtimes"].items()]
    lines += ["", f"End of turn: `{parity['end_of_turn']['token']}` (id {parity['end_of_turn']['id']}); the trainer-side "
                  f"model ended {parity['reference_ended_at_end_of_turn']} of its answers on it within the budget."]
    return "\n".join(lines)


def _held_to(runtime: dict) -> str:
    if runtime["mode"] == "strict":
        return "identical tokens"
    return (f"logits within {runtime['logit_bound']} sd ({runtime['max_share_of_bound']:.0%} of it used), "
            f"{_count(runtime['near_ties'], 'flipped near-tie')}")


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _method(spec: dict) -> str:
    if spec["method"] == "full":
        return "full fine-tune"
    lora = spec.get("lora") or {}
    return f"{'QLoRA' if spec['method'] == 'qlora' else 'LoRA'} (r={lora.get('r')}, alpha={lora.get('alpha')})"


def _rate(c: dict) -> float:
    return c["passed"] / c["total"] if c["total"] else 0.0


def _cell(c: dict, base: float | None, variant: str) -> str:
    text = f"{c['passed']}/{c['total']} ({_rate(c):.0%})"
    if base is None or variant == "base":
        return text
    return f"{text} {100 * (_rate(c) - base):+.0f}"
