"""Cheap stand-ins for the model stages, so runner tests exercise beads, mail and feed in seconds.

`install(calls)` swaps corpus/dataset/plan/train/eval for functions that write a complete stage
folder and count their calls; review stays real. `FAKE_TRAIN_SLEEP=<s>` makes train write
`train-started` in the workspace and sleep (for kill tests in a subprocess); the corpus manifest
counts `FAKE_CORPUS_RECORDS` records (default 100).
"""
import os
import time
from collections import Counter

from gt_finetune import actions
from gt_finetune.errors import InputError
from gt_finetune.workspace import atomic_dir, write_json, write_text


FAKE_METRICS = {
    "base_loss": 2.0, "tuned_loss": 1.0, "variants": ["base", "base+context", "tuned", "tuned+context"],
    "overall": {v: {"passed": n, "total": 10} for v, n in
                (("base", 2), ("base+context", 5), ("tuned", 7), ("tuned+context", 9))},
    "gate": {"passed": False, "guidance": "safety items failed: 1; add refusal examples to the corpus or lower the "
                                         "learning rate"}}


def _stage(name, calls, fail_on=None):
    def run(ctx):
        calls[name] += 1
        if fail_on is not None and fail_on.get(name):
            raise InputError(fail_on[name], hint="fix it and resume")
        if name == "train" and os.environ.get("FAKE_TRAIN_SLEEP"):
            (ctx.session.home / "train-started").write_text(str(os.getpid()))
            time.sleep(float(os.environ["FAKE_TRAIN_SLEEP"]))
        out = ctx.session.home / name / f"{ctx.job.job_id}-{calls[name]}"
        with atomic_dir(out) as tmp:
            if name == "eval":
                write_text(tmp / "report.md", "# Evaluation\n\nThe tuned model passed 9 of 10 tasks.\n")
                write_json(tmp / "metrics.json", FAKE_METRICS)
            counts = {"counts": {"records": int(os.environ.get("FAKE_CORPUS_RECORDS", "100"))}} if name == "corpus" else {}
            write_json(tmp / "manifest.json", {"stage": name, "params": ctx.params, **counts})
        return actions.StepOutput(out, f"fake {name}")
    return run


def install(monkeypatch=None, calls=None, fail_on=None):
    calls = Counter() if calls is None else calls
    for name in ("corpus", "dataset", "plan", "train", "eval"):
        action = actions.Action(name, _stage(name, calls, fail_on))
        if monkeypatch is not None:
            monkeypatch.setitem(actions.ACTIONS, name, action)
        else:
            actions.ACTIONS[name] = action
    return calls
