"""The training process: `python -m gt_finetune.train.worker <request.json>` (or every rank of it
under torchrun). Started by `supervise.py`; exits 0 when done, 75 when stopped on request."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import GTFinetuneError
from .control import EXIT_STOPPED, RunControl
from .recipe import TrainSpec, train


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    control = RunControl(Path(request["control_dir"]))
    try:
        result = train(TrainSpec.from_dict(request["spec"]), dataset_dir=Path(request["dataset_dir"]),
                       home=Path(request["home"]), control=control, supervisor_pid=request.get("supervisor_pid"))
    except GTFinetuneError as exc:
        try:  # the job's process raises it, so the bead and the CLI say what went wrong
            control.failed({"message": exc.message, "hint": exc.hint, "code": exc.code, "exit_code": exc.exit_code})
        except OSError:  # a full disk may refuse even this: say it here
            print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return EXIT_STOPPED if isinstance(result, dict) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
