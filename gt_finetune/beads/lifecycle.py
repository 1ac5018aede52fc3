"""The job state machine, exactly as DESIGN.md §2: each job state is a bead status plus labels.

| state     | bead                                         |
|-----------|----------------------------------------------|
| ready     | `open`                                       |
| active    | `in_progress` + `ft:stage:<stage>`           |
| review    | custom status `review`                       |
| done      | `closed`, reason `approved: …`               |
| failed    | `blocked` + `ft:failed`, notes: error+resume |
| paused    | `blocked` + `ft:paused`, notes: why+resume   |
| cancelled | `closed`, reason `cancelled: …`              |

`paused` is ours, beyond DESIGN.md's table: training gave its memory back on request (or to the
memory watchdog) and waits, checkpoint kept, for `gt-finetune resume`.
"""
from __future__ import annotations

from ..errors import InputError
from .store import Bead, BeadStore

READY, ACTIVE, REVIEW, DONE, FAILED, CANCELLED = "ready", "active", "review", "done", "failed", "cancelled"
PAUSED = "paused"
STAGES = ("corpus", "dataset", "plan", "train", "eval", "export")
JOB_LABEL = "ft:job"
FAILED_LABEL = "ft:failed"
PAUSED_LABEL = "ft:paused"
STAGE_PREFIX = "ft:stage:"

ALLOWED = {
    READY: {ACTIVE, CANCELLED},
    ACTIVE: {ACTIVE, REVIEW, FAILED, PAUSED, CANCELLED},
    PAUSED: {ACTIVE, FAILED, CANCELLED},
    REVIEW: {DONE, FAILED, CANCELLED},
    FAILED: {ACTIVE, CANCELLED},
    DONE: set(),
    CANCELLED: set(),
}


def state_of(bead: Bead) -> str:
    if bead.status == "closed":
        return CANCELLED if bead.close_reason.startswith("cancelled") else DONE
    if bead.status == "blocked" and FAILED_LABEL in bead.labels:
        return FAILED
    if bead.status == "blocked" and PAUSED_LABEL in bead.labels:
        return PAUSED
    mapping = {"open": READY, "in_progress": ACTIVE, "review": REVIEW}
    if bead.status in mapping:
        return mapping[bead.status]
    raise InputError(f"job bead `{bead.id}` has status `{bead.status}`, which is no job state",
                     hint=f"set it back with `bd update {bead.id} --status=open`, then `gt-finetune resume {bead.id}`")


def stage_of(bead: Bead) -> str:
    return next((label[len(STAGE_PREFIX):] for label in bead.labels if label.startswith(STAGE_PREFIX)), "")


def move(store: BeadStore, bead_id: str, to: str, *, stage: str = "", reason: str = "") -> tuple[Bead, str]:
    """Apply one transition; return the new bead and the state it left.

    Raises:
        InputError: the transition is not in the table (e.g. `done` → `active`), or a stage is
            missing/unknown for `active`.
    """
    bead = store.show(bead_id)
    current = state_of(bead)
    if to not in ALLOWED[current] or (to == ACTIVE and current == ACTIVE and stage == stage_of(bead)):
        allowed = ", ".join(sorted(ALLOWED[current])) or "none, it is final"
        raise InputError(f"job `{bead_id}` cannot go from {current} to {to} (allowed from {current}: {allowed})",
                         hint=f"see where it stands with `gt-finetune status {bead_id}`")
    if to == ACTIVE:
        if stage not in STAGES:
            raise InputError(f"stage `{stage}` is not one of {', '.join(STAGES)}")
        old = [label for label in bead.labels if label.startswith(STAGE_PREFIX) or label in (FAILED_LABEL, PAUSED_LABEL)]
        new = store.update(bead_id, status="in_progress", add_labels=[STAGE_PREFIX + stage],
                           remove_labels=[label for label in old if label != STAGE_PREFIX + stage])
    elif to == REVIEW:
        new = store.update(bead_id, status="review",
                           remove_labels=[label for label in bead.labels if label.startswith(STAGE_PREFIX)])
    elif to == FAILED:
        new = store.update(bead_id, status="blocked", add_labels=[FAILED_LABEL], append_notes=reason,
                           remove_labels=[PAUSED_LABEL] if PAUSED_LABEL in bead.labels else [])
    elif to == PAUSED:
        new = store.update(bead_id, status="blocked", add_labels=[PAUSED_LABEL], append_notes=reason)
    elif to == DONE:
        new = store.close(bead_id, reason if reason.startswith("approved") else f"approved: {reason}")
    else:
        new = store.close(bead_id, reason if reason.startswith("cancelled") else f"cancelled: {reason}")
    return new, current
