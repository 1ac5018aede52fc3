"""Kill a real `gt-finetune` job with SIGKILL at a chosen moment, and judge what it leaves behind.

Two ways to pick the moment:

- from outside: `Job` runs `python -m gt_finetune …` in its own session, follows its stderr line by
  line and its home on disk, and `Job.kill()` SIGKILLs its process group (and, with
  `trainer=True`, the trainer's, which runs in a session of its own);
- from inside, for windows too narrow to hit from outside: under `hook_env(tmp, "<point>")` a
  `sitecustomize` calls `install(point)` in every Python process of the job (the trainer too), and
  the process that reaches the point SIGKILLs its own process group and its parent's (the
  trainer's parent is the job's runner; the test is spared). Points:

  | point                    | where                                                               |
  |--------------------------|---------------------------------------------------------------------|
  | `after:open`             | the job bead and record exist; the runner has not taken the machine  |
  | `after:<step>`           | `runner.run_step` returned for that step (`step X: done` printed)    |
  | `publish:<stage>`        | `<home>/<stage>/.X.partial` holds its manifest: just before the rename |
  | `publish:checkpoint:<n>` | the trainer's n-th checkpoint, just before its rename (the last one is aside) |
  | `moved:review`           | the job bead has just been moved to review                           |
  | `inside:corpus`          | the harvest has yielded its first record                             |
  | `inside:plan`            | the planner has started its measuring child (which dies with the job) |

`hold:train:<n>` kills nothing: the trainer waits before step n until a pause or cancel request
exists, so a test's request lands at the step it chose however fast the machine (not at a moment).
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("corpus", "dataset", "plan", "train", "eval")
STEPS = (*STAGES, "review")
REQUIRED = {  # what a complete stage folder holds besides manifest.json
    "corpus": ("records.jsonl", "rejected.jsonl"), "dataset": ("train.jsonl", "eval.jsonl"), "plan": (),
    "train": ("adapter", "metrics.jsonl"), "eval": ("metrics.json", "report.md", "results.json")}
CHECKPOINT_FILES = ("trainable.safetensors", "state.pt", "rng-rank0.pt")


# -- running a job --------------------------------------------------------------------------------

def env_for(home: Path, extra: dict | None = None) -> dict:
    env = {**os.environ, "GT_FINETUNE_HOME": str(home), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "GT_FINETUNE_NO_PROGRESS": "1", "GT_FINETUNE_MIN_AVAILABLE_GB": "0"}  # no watchdog pauses here
    for name in ("GT_KILL_AT", "GT_FINETUNE_LOCK_DIR", "BEADS_DIR", "GT_TOWN_ROOT", "GT_ROOT"):
        env.pop(name, None)  # one machine lock per test (under its HOME), no town
    return {**env, **(extra or {})}


def cli(home: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gt_finetune", *args], capture_output=True, text=True,
                          env=env_for(home, env), timeout=timeout)


class Job:
    """`python -m gt_finetune <args>` in a session of its own, its stderr read as it comes."""

    def __init__(self, home: Path, args: list[str], *, env: dict | None = None):
        """`env`: variables on top of the test's environment (`env_for`)."""
        self.home = home
        self.proc = subprocess.Popen([sys.executable, "-m", "gt_finetune", *args], env=env_for(home, env),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        # stderr is shared with the trainer, which may outlive the runner: read it to the end
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def wait_for(self, pattern: str, *, timeout: float = 300) -> re.Match:
        """The first stderr line from now on matching `pattern`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the job exited ({self.proc.wait()}) before `{pattern}`:\n{self.tail()}")
            self.lines.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no `{pattern}` within {timeout:.0f} s:\n{self.tail()}")

    def wait_for_file(self, pattern: str, *, timeout: float = 300, poll_s: float = 0.05) -> Path:
        """The first path under the home matching the glob `pattern` (polled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            found = sorted(self.home.glob(pattern))
            if found:
                return found[0]
            if self.proc.poll() is not None:
                raise AssertionError(f"the job exited ({self.proc.returncode}) before {pattern}:\n{self.tail()}")
            time.sleep(poll_s)
        raise AssertionError(f"no {pattern} within {timeout:.0f} s:\n{self.tail()}")

    def wait_killed(self, *, timeout: float = 300) -> None:
        """For a job that kills itself (`hook_env`): it must end by SIGKILL."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self._drain()
        assert code == -signal.SIGKILL, f"expected the job to be killed, it exited {code}:\n{self.tail()}"

    def kill(self, *, trainer: bool = False) -> int | None:
        """SIGKILL the job's process group (and the trainer's with `trainer`); return the trainer's pid
        when one is running."""
        worker = self.trainer_pid()
        os.killpg(self.proc.pid, signal.SIGKILL)
        if trainer and worker:
            try:
                os.killpg(worker, signal.SIGKILL)  # the trainer leads a session of its own
            except ProcessLookupError:
                pass
        self.proc.wait()
        self._drain()
        return worker

    def trainer_pid(self) -> int | None:
        for path in self.home.glob("jobs/*.run/worker.json"):
            try:
                return json.loads(path.read_text())["pid"]
            except (ValueError, KeyError, FileNotFoundError):
                return None
        return None

    def _drain(self) -> None:
        while True:
            try:
                line = self._new.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)

    def job_id(self) -> str:
        self._drain()
        for line in self.lines:
            if m := re.match(r"job (ft-[\w.-]+):", line):
                return m.group(1)
        found = sorted(self.home.glob("jobs/ft-*.json"))
        assert len(found) == 1, f"expected one job record, found {found}:\n{self.tail()}"
        return found[0].stem

    def tail(self, n: int = 40) -> str:
        self._drain()
        return "\n".join(self.lines[-n:])


# -- killing from inside --------------------------------------------------------------------------

SITECUSTOMIZE = """\
import os
if os.environ.get("GT_KILL_AT"):
    import kill_harness
    kill_harness.install(os.environ["GT_KILL_AT"])
"""


def hook_env(tmp: Path, point: str) -> dict:
    """Environment variables under which every Python process of the job kills itself at `point`."""
    site = tmp / "killsite"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join([str(site), str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"GT_KILL_AT": point, "PYTHONPATH": path, "GT_KILL_SPARE_PGID": str(os.getpgid(0))}


def die() -> None:
    """SIGKILL this process's group and its parent's (the trainer's parent is the job's runner),
    never the test's."""
    spare = int(os.environ.get("GT_KILL_SPARE_PGID", "0"))
    mine = os.getpgid(0)
    try:
        parent = os.getpgid(os.getppid())
    except ProcessLookupError:
        parent = spare
    sys.stderr.write(f"kill_harness: SIGKILL at {os.environ.get('GT_KILL_AT')}\n")
    sys.stderr.flush()
    if parent not in (spare, mine):
        os.killpg(parent, signal.SIGKILL)
    os.killpg(mine, signal.SIGKILL)
    time.sleep(60)  # not reached


def install(point: str) -> None:
    kind, _, what = point.partition(":")
    home = Path(os.environ["GT_FINETUNE_HOME"]).resolve()
    if kind == "after":
        from gt_finetune import runner

        if what == "open":
            opened = runner.open_job

            def open_job(*args, **kwargs):
                job = opened(*args, **kwargs)
                print(f"job {job.job_id}: opened", file=sys.stderr, flush=True)
                die()
            runner.open_job = open_job
            return
        ran = runner.run_step

        def run_step(session, job, formula, step):
            ran(session, job, formula, step)
            if step.id == what:
                die()
        runner.run_step = run_step
    elif kind == "publish":
        stage, _, nth = what.partition(":")
        replace, seen = os.replace, [0]

        def hooked_replace(src, dst, *args, **kwargs):
            s = Path(src)
            if s.name.endswith(".partial") and s.is_dir():
                if stage == "checkpoint" and s.name.startswith(".checkpoint."):
                    seen[0] += 1
                    if seen[0] == int(nth or 1):
                        die()
                elif s.parent.name == stage and s.parent.parent.resolve() == home:
                    die()
            return replace(src, dst, *args, **kwargs)
        os.replace = hooked_replace
    elif kind == "inside":
        _die_inside(what)
    elif kind == "hold":
        if "gt_finetune.train.worker" in sys.orig_argv:  # only the trainer holds
            _hold_trainer(int(what.removeprefix("train:")))
    elif kind == "moved":
        from gt_finetune.beads import lifecycle

        move = lifecycle.move

        def hooked_move(store, bead_id, to, **kwargs):
            result = move(store, bead_id, to, **kwargs)
            if to == what:
                die()
            return result
        lifecycle.move = hooked_move
    else:
        raise ValueError(f"unknown kill point {point}")


def _die_inside(stage: str) -> None:
    """Die in the middle of a stage's own work, at a point the test names rather than a moment."""
    if stage == "corpus":
        from gt_finetune.corpus import harvest

        for kind, read in list(harvest.SOURCES.items()):
            def first_then_die(location, ctx, read=read):
                for item in read(location, ctx):
                    yield item
                    die()
            harvest.SOURCES[kind] = first_then_die
    elif stage == "plan":
        from gt_finetune.train import plan

        class ChildThenDie:
            """`subprocess` as the planner sees it: its first child starts, then the job dies."""

            def __getattr__(self, name):
                return getattr(subprocess, name)

            def run(self, args, *, env=None, **_):
                subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                die()
        plan.subprocess = ChildThenDie()
    else:
        raise ValueError(f"no inside point for stage {stage}")


def _hold_trainer(step: int, timeout_s: float = 120) -> None:
    """A fresh trainer asks for requests once per step, from step 0: the n-th asking is step n."""
    from gt_finetune.train import recipe

    agreed, asked = recipe._agreed_request, [0]

    def held(control, accelerator, supervisor_pid):
        if asked[0] == step:
            deadline = time.monotonic() + timeout_s
            while control.pending() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        asked[0] += 1
        return agreed(control, accelerator, supervisor_pid)
    recipe._agreed_request = held


# -- judging what is left -------------------------------------------------------------------------

def status(home: Path, job_id: str, env: dict | None = None) -> dict:
    proc = cli(home, "status", job_id, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def visible_artefact_problems(home: Path) -> list[str]:
    """Stage folders a reader could take for complete but are not: no manifest, or files missing.
    Hidden names (`.X.partial`, `.state`) are temp or bookkeeping, which readers never open."""
    problems = []
    for stage in STAGES:
        folder = home / stage
        for d in sorted(folder.iterdir()) if folder.is_dir() else ():
            if d.name.startswith("."):
                continue
            if stage == "train" and d.name.endswith(".work"):  # the trainer's scratch: its checkpoint counts
                ckpt = d / "checkpoint"
                if ckpt.exists():
                    missing = [f for f in ("manifest.json", *CHECKPOINT_FILES) if not (ckpt / f).exists()]
                    if missing:
                        problems.append(f"{ckpt}: a checkpoint folder without {', '.join(missing)}")
                continue
            if not (d / "manifest.json").is_file():
                problems.append(f"{d}: no manifest.json")
                continue
            missing = [f for f in REQUIRED[stage] if not (d / f).exists()]
            if missing:
                problems.append(f"{d}: has manifest.json but lacks {', '.join(missing)}")
    return problems


def record_problems(home: Path, job_id: str) -> list[str]:
    """`jobs/<id>.json` parses, and its steps read as a run in order (done…, at most one started
    step, pending…); every done step's output is a complete folder."""
    from gt_finetune.jobs import JobRecord

    try:
        json.loads((home / "jobs" / f"{job_id}.json").read_text())
        record = JobRecord.load(home, job_id)
    except Exception as exc:  # noqa: BLE001 - any way of not loading is the finding
        return [f"jobs/{job_id}.json does not load: {type(exc).__name__}: {exc}"]
    problems = []
    states = [s.state for s in record.steps.values()]
    if list(record.steps) != list(STEPS):
        problems.append(f"steps {list(record.steps)}")
    if not re.fullmatch(r"d*x?p*", "".join({"done": "d", "pending": "p"}.get(s, "x") for s in states)):
        problems.append(f"steps out of order: {states}")
    for name, step in record.steps.items():
        if step.state == "done" and not (step.output and (Path(step.output) / "manifest.json").is_file()):
            problems.append(f"step {name} is done but its output {step.output!r} has no manifest")
    return problems


def consistency_problems(info: dict) -> list[str]:
    """The bead must not say more (or other) than the job record: not review or done while a step is
    unfinished, not active in a stage other than the one running (or, between steps, the last
    finished or the next)."""
    steps = {s["id"]: s["state"] for s in info["steps"]}
    done = [k for k, s in steps.items() if s == "done"]
    started = [k for k, s in steps.items() if s not in ("done", "pending")]
    pending = [k for k, s in steps.items() if s == "pending"]
    state, stage = info["state"], info["stage"]
    problems = []
    unfinished = [k for k in steps if k not in done]
    handed_off = state == "review" and unfinished == ["review"] and info["eval_bead"]
    if state in ("review", "done") and unfinished and not handed_off:
        # (handed_off: the review step moved the bead, then the kill beat its record; only `resume`
        # can settle that, so that is where it is judged)
        problems.append(f"bead is {state} but steps {unfinished} are not done")
    if state == "cancelled":
        problems.append("bead cancelled by a kill")
    if state == "ready" and done + started:
        problems.append(f"bead is ready but steps {done + started} started")
    if state == "active":
        allowed = {started[0]} if started else {done[-1] if done else None, pending[0] if pending else None}
        if stage not in allowed:
            problems.append(f"bead is active({stage}) but the record says done={done}, started={started}")
    return problems


def status_problems(info: dict) -> list[str]:
    """After a kill, status must say the job is not running rather than show it ready or active."""
    if info["state"] in ("ready", "active") and not (info.get("machine") or {}).get("interrupted") \
            and not info["training"]:
        return [f"bead is {info['state']}, no process runs it, and status does not say it was interrupted "
                f"(machine={info.get('machine')})"]
    return []


def checkpoint_step(home: Path) -> int:
    """The last step the trainer published a checkpoint for (its log says so after each one)."""
    steps = [0]
    for work in home.glob("train/*.work"):
        if (work / "checkpoint" / "manifest.json").is_file():
            steps.append(json.loads((work / "checkpoint" / "manifest.json").read_text())["step"])
        log = work / "metrics.jsonl"
        for text in log.read_text().splitlines() if log.is_file() else ():
            try:
                row = json.loads(text)
            except ValueError:  # the kill cut this line short
                continue
            if row.get("kind") == "checkpoint":
                steps.append(row["step"])
    return max(steps)


@dataclass
class Killed:
    """What one kill left behind, judged right after it."""
    job_id: str
    info: dict  # `status --json`
    text: str  # what `gt-finetune status <id>` printed, when `told` has a problem
    problems: list[str]  # artefacts, record, bead vs record
    told: list[str]  # status not saying the job was interrupted
    published: int  # the last checkpoint step published before the kill (0: none)
    train_done: bool


def judge_kill(home: Path, job_id: str, env: dict | None = None) -> Killed:
    info = status(home, job_id, env)
    problems = visible_artefact_problems(home) + record_problems(home, job_id) + consistency_problems(info)
    told = status_problems(info)
    text = cli(home, "status", job_id, env=env).stdout if told else ""  # what the operator sees, to show
    return Killed(job_id=job_id, info=info, text=text, problems=problems, told=told, published=checkpoint_step(home),
                  train_done=info["steps"][STEPS.index("train")]["state"] == "done")


def resumed_from(stderr: str) -> int | None:
    m = re.search(r"resumed training from checkpoint at step (\d+)/", stderr)
    return int(m.group(1)) if m else None


def finished_problems(home: Path, job_id: str, max_steps: int, env: dict | None = None) -> list[str]:
    """After the last resume: review, every step done with its output complete, nothing left over,
    the bead's history in order, and the training log one clean run of steps."""
    from gt_finetune.cli import _history_labels

    info = status(home, job_id, env)
    problems = visible_artefact_problems(home) + record_problems(home, job_id) + consistency_problems(info)
    if info["state"] != "review":
        problems.append(f"bead is {info['state']}, not review")
    if [s["state"] for s in info["steps"]] != ["done"] * len(STEPS):
        problems.append(f"steps {[(s['id'], s['state']) for s in info['steps']]}")
    if info["machine"] is not None or info["training"] is not None:
        problems.append(f"status still sees a process: machine={info['machine']}, training={info['training']}")
    left = [str(p.relative_to(home)) for p in home.rglob("*.partial")] + \
        [str(p.relative_to(home)) for p in home.glob("train/*.work")]
    if left:
        problems.append(f"left over: {left}")
    labels = _history_labels(info["history"])
    active = [x[len("active("):-1] for x in labels if x.startswith("active(")]
    if labels[0] != "ready" or labels[-1] != "review" or "done" in labels or list(dict.fromkeys(active)) != list(
            STAGES) or [STAGES.index(a) for a in active] != sorted(STAGES.index(a) for a in active):
        problems.append(f"history {labels}")
    train = info["steps"][STEPS.index("train")]["output"]
    if train and (Path(train) / "metrics.jsonl").is_file():
        rows = [json.loads(x) for x in (Path(train) / "metrics.jsonl").read_text().splitlines() if x.strip()]
        steps = [r["step"] for r in rows if r.get("kind", "step") == "step"]
        if steps != list(range(1, max_steps + 1)) or sum(r.get("kind") == "start" for r in rows) != 1:
            problems.append(f"training log: steps {steps}, {sum(r.get('kind') == 'start' for r in rows)} start rows")
    return problems
