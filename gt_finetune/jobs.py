"""The local record of a job: which formula and vars it runs, and where each step's output is.

The bead is what people watch; this file is what `resume` needs. It lives at
`<home>/jobs/<ft-id>.json` and is rewritten atomically after every step.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InputError
from .workspace import safe_name, write_json

PENDING, RUNNING, DONE, FAILED, STOPPED = "pending", "running", "done", "failed", "stopped"


@dataclass
class StepRecord:
    state: str = PENDING
    action: str = ""
    output: str = ""  # the stage folder the step wrote (complete, with a manifest)
    started_at: str = ""
    finished_at: str = ""
    summary: str = ""
    error: str = ""


@dataclass
class JobRecord:
    job_id: str
    formula: str
    formula_path: str
    run: str
    vars: dict
    created_at: str
    workflow_root: str = ""
    steps: dict[str, StepRecord] = field(default_factory=dict)
    runner: dict = field(default_factory=dict)  # the process running the job now: pid, host, created, since

    @staticmethod
    def path(home: Path, job_id: str) -> Path:
        """Raises:
            InputError: `job_id` is not a name (`../x`, `/etc`): it would lead out of `<home>/jobs`.
        """
        safe_name(job_id, what="job id", hint="list jobs with `gt-finetune list`")
        return home / "jobs" / f"{job_id}.json"

    def save(self, home: Path) -> None:
        # steps keep the formula's order, so no key sorting here
        write_json(self.path(home, self.job_id), {"schema_version": 1, **asdict(self)}, sort_keys=False)

    @classmethod
    def load(cls, home: Path, job_id: str) -> "JobRecord":
        path = cls.path(home, job_id)
        if not path.is_file():
            raise InputError(f"no job record for `{job_id}` in {home / 'jobs'}",
                             hint="list jobs with `gt-finetune list`, or pass the workspace with `--home DIR`")
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.pop("schema_version", 1)
        if version > 1:
            raise InputError(f"{path} was written by a newer gt-finetune (schema {version})",
                             hint="upgrade with `pip install -U gt-finetune`")
        data["steps"] = {k: StepRecord(**v) for k, v in data.get("steps", {}).items()}
        return cls(**data)

    def output_of(self, action: str) -> Path | None:
        """The output folder of the latest finished step with this action."""
        for record in self.steps.values():
            if record.action == action and record.state == DONE and record.output:
                return Path(record.output)
        return None


def list_records(home: Path) -> list[JobRecord]:
    folder = home / "jobs"
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(JobRecord.load(home, path.stem))
        except InputError as exc:  # a stray file, or a record too new: say so and list the rest
            print(f"warning: skipped {path}: {exc.message}", file=sys.stderr)
    return records
