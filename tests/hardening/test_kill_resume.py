"""kill -9 a real job at every stage boundary and inside every stage: `resume` finishes it, no
partial artefact is ever visible, and the job bead never says more than the artefacts.

Slow (a tiny random model really trains and answers): `pytest -m slow tests/hardening/test_kill_resume.py`.

A kill comes from outside (a stderr line or a file on disk, then SIGKILL of the job's process group,
as an operator's `kill -9` or the OOM killer would) or, where the window is too narrow to hit from
outside, from inside at an exact point (`kill_harness.install`). After each kill the home is judged
(`kill_harness.judge_kill`), then `gt-finetune resume` runs; a case may kill that resume too.

Cost: the priming job runs every stage once and is itself killed in training (twice) and in eval,
the two dearest stages to run again; every other case copies from its home the stage outputs it
does not exercise (stages are cached by content, so the job reuses them) and runs for real only
the stage it kills.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kill_harness import Job, Killed, cli, finished_problems, hook_env, judge_kill, resumed_from

pytestmark = pytest.mark.slow

SUITE = """\
description: "one item: the eval step has to run, not to take long"
prompts:
  - "Say {{word}}"
providers:
  - id: echo
tests:
  - vars: {word: hello}
    assert:
      - type: contains
        value: hello
"""
MAX_STEPS = 3  # checkpoints after steps 1 and 2 (none after the last)


# -- kill points ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kill:
    where: str  # where the job record says it landed: `<step> running`, `<step> done` or `nothing started`
    hook: str = ""  # kill from inside at this point (kill_harness.install), or
    at: Callable[[Job], None] | None = None  # wait for the moment from outside, then SIGKILL the job
    trainer: bool = True  # from outside: the trainer (a session of its own) dies too, as in a crash


@dataclass(frozen=True)
class Case:
    seed: tuple[str, ...]  # folders taken from the primed home: the steps that made them are cache hits
    kills: tuple[Kill, ...]  # the run, then each resume but the last, killed in turn
    rescan: bool = False  # the corpus forgets what it read, so its step harvests again (same corpus)


def on_line(pattern: str) -> Callable[[Job], None]:
    return lambda job: job.wait_for(pattern)


def on_file(pattern: str) -> Callable[[Job], None]:
    return lambda job: job.wait_for_file(pattern)


ALL = ("cache", "corpus", "dataset", "train", "eval")  # `cache`: the planner's measured process baseline
NOT_TRAIN = ("cache", "corpus", "dataset", "eval")
PRIMING = Case(seed=(), kills=(
    # everything killed while a checkpoint replaces the last one (set aside, the new one not yet in)
    Kill("train running", hook="publish:checkpoint:2"),
    # the resumed trainer killed with the whole job as it publishes the finished run
    Kill("train running", hook="publish:train"),
    Kill("eval running", at=on_line(r"eval: base: ")),  # eval has scored the base model
))
CASES = {
    # (a) stage boundaries: right after `step X: done`
    **{f"after-{s}": Case(ALL, (Kill(f"{s} done", hook=f"after:{s}"),))
       for s in ("corpus", "dataset", "plan", "train", "eval")},
    # (b) inside each stage (and the priming job: training and eval)
    "in-corpus": Case(ALL, (Kill("corpus running", hook="inside:corpus"),), rescan=True),  # harvesting
    "in-dataset": Case(("cache", "corpus", "train", "eval"), (Kill("dataset running", hook="publish:dataset"),)),
    "in-plan": Case(("corpus", "dataset", "train", "eval"),  # the planner measures its process baseline (a child)
                    (Kill("plan running", hook="inside:plan"),)),
    "in-plan-publish": Case(ALL, (Kill("plan running", hook="publish:plan"),)),
    "in-train-runner-only": Case(NOT_TRAIN, (  # the trainer outlives the runner, checkpoints and stops
        Kill("train running", at=on_file("train/*.work/checkpoint/manifest.json"), trainer=False),)),
    "in-review": Case(ALL, (Kill("review running", hook="moved:review"),)),
    # before the first step: the job exists, its runner had not taken the machine yet
    "after-open": Case(ALL, (Kill("nothing started", hook="after:open"),)),
}


# -- playing a case ---------------------------------------------------------------------------------

@dataclass
class Story:
    job_id: str = ""
    killed: list[Killed] = field(default_factory=list)
    after: list[str] = field(default_factory=list)  # stderr of the run that followed each kill
    where: list[str] = field(default_factory=list)  # where each kill landed, by the job record
    final: subprocess.CompletedProcess | None = None  # the last `resume`


def play(home: Path, args: list[str], case: Case, tmp: Path, env: dict | None = None) -> Story:
    """Run the job and kill it as the case says, each resume but the last killed in turn."""
    story = Story()
    for n, kill in enumerate(case.kills):
        extra = {**(env or {}), **(hook_env(tmp, kill.hook) if kill.hook else {})}
        job = Job(home, args if n == 0 else ["resume", story.job_id], env=extra)
        if kill.hook:
            job.wait_killed()
        else:
            kill.at(job)
            job.kill(trainer=kill.trainer)
        story.job_id = story.job_id or job.job_id()
        if n:
            story.after.append("\n".join(job.lines))
        story.killed.append(judge_kill(home, story.job_id, env))
        story.where.append(where(story.killed[-1]))
    story.final = cli(home, "resume", story.job_id, env=env)
    story.after.append(story.final.stderr)
    return story


def where(killed: Killed) -> str:
    steps = killed.info["steps"]
    running = [s["id"] for s in steps if s["state"] not in ("done", "pending")]
    done = [s["id"] for s in steps if s["state"] == "done"]
    return f"{running[0]} running" if running else f"{done[-1]} done" if done else "nothing started"


def story_problems(home: Path, story: Story, case: Case, env: dict | None = None) -> list[str]:
    problems = [f"kill {n} landed at `{got}`, not `{kill.where}`"
                for n, (kill, got) in enumerate(zip(case.kills, story.where), 1) if got != kill.where]
    for n, (killed, after) in enumerate(zip(story.killed, story.after), 1):
        problems += [f"kill {n}: {p}" for p in killed.problems]
        trained = re.search(r"examples in \d+ (packed )?rows", after)  # a trainer started in the next run
        if killed.published and not killed.train_done and trained:
            step = resumed_from(after)
            if step is None or step < killed.published:
                problems.append(f"kill {n}: a checkpoint of step {killed.published} was published before it, but "
                                f"the next run {'started over' if step is None else f'resumed from step {step}'}")
    final = story.final
    if final.returncode != 0:
        return problems + [f"`gt-finetune resume {story.job_id}` exited {final.returncode}:\n{final.stderr[-3000:]}"]
    if final.stdout.strip().splitlines()[-1:] != [story.job_id]:
        problems.append(f"resume printed {final.stdout!r}, not the job id")
    return problems + finished_problems(home, story.job_id, MAX_STEPS, env)


def told_problems(story: Story) -> list[str]:
    return [f"after kill {n}, `gt-finetune status {k.job_id}` printed:\n{k.text}\n{p}"
            for n, k in enumerate(story.killed, 1) for p in k.told]


# -- the priming job --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Primed:
    home: Path
    args: list[str]
    env: dict
    story: Story

    def seed(self, home: Path, case: Case) -> None:
        home.mkdir(parents=True, exist_ok=True)
        for name in case.seed:
            shutil.copytree(self.home / name, home / name)
        if case.rescan:
            for state in (home / "corpus" / ".state").glob("*.json"):
                state.write_text(json.dumps({**json.loads(state.read_text()), "sources": {}}))


@pytest.fixture(scope="module")
def primed(tiny_model, tmp_path_factory) -> Primed:
    """A job run from scratch, killed twice in training and once in eval, resumed to review: its
    home holds every stage's output for the other cases."""
    root = tmp_path_factory.mktemp("kill-primed")
    (root / "suite").mkdir()
    (root / "suite" / "promptfooconfig.yaml").write_text(SUITE)
    args = ["run", "finetune-lora"]
    for k, v in {"base_model": tiny_model(), "max_steps": MAX_STEPS, "checkpoint_every": 1, "calibrate": "false",
                 "suite": root / "suite" / "promptfooconfig.yaml", "held_out_turns": 0, "probe_prompts": 1,
                 "eval_fraction": 0.05}.items():
        args += ["--var", f"{k}={v}"]
    home, env = root / "home", {"HOME": str(root / "user")}  # its own machine lock, as each test has
    story = play(home, args, PRIMING, root, env)
    assert (home / "eval").is_dir(), story.final.stderr[-3000:]
    return Primed(home, args, env, story)


# -- the tests --------------------------------------------------------------------------------------

def test_a_job_killed_twice_in_training_and_once_in_eval_finishes(primed: Primed):
    story = primed.story
    assert [k.published for k in story.killed[:2]] == [1, 2]  # checkpoints of steps 1 and 2 were on disk
    assert [resumed_from(after) for after in story.after[:2]] == [1, 2]
    assert story_problems(primed.home, story, PRIMING, primed.env) == []
    assert told_problems(story) == []


@pytest.mark.parametrize("case", [
    pytest.param(case, id=name) for name, case in CASES.items()])
def test_kill_9_then_resume_finishes_the_job(case: Case, primed: Primed, isolated: Path, tmp_path: Path):
    primed.seed(isolated, case)
    story = play(isolated, primed.args, case, tmp_path)
    assert story_problems(isolated, story, case) == []
    assert told_problems(story) == []  # last, so a case failing here has had its resume checked
