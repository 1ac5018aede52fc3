"""The job's model card: the exported one when the model was exported, else the same card drawn
from the job's manifests without the parts only an export can fill in (its files and parity)."""
from __future__ import annotations

from pathlib import Path

from ..export.card import base_model_info, render_card
from .gather import JobFacts


def card_markdown(facts: JobFacts) -> tuple[str, str]:
    """(the card's Markdown, where it came from), for a job that was exported or has a finished
    train step."""
    if facts.card_path is not None:
        return facts.card_path.read_text(encoding="utf-8"), f"exported card {facts.card_path}"
    evaluation = {**facts.evaluation, "id": facts.eval_id} if facts.evaluation else None
    base = base_model_info(Path(facts.train["model_dir"]), facts.train["spec"]["base_model"])
    text = render_card(trained=facts.train, dataset=facts.dataset, corpus=facts.corpus, plan=facts.plan,
                       evaluation=evaluation, base=base, files=[], reload={}, parity=None)
    return text, "draft from the job's manifests (not exported yet: `gt-finetune export` adds its files and parity)"
