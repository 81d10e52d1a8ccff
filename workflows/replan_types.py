"""Messages between the API, `ReplanWorkflow` and its activities (`activities/replan.py`).

As in `workflows.types`: frozen, keyword-only dataclasses, JSON-friendly fields, and every
field added later gets a default so old histories still decode.
"""

from __future__ import annotations

from dataclasses import dataclass

# The registered name: the API starts the workflow by it, without importing workflow code.
REPLAN_WORKFLOW = "ReplanWorkflow"


def replan_workflow_id(job_id: str) -> str:
    return f"replan-{job_id}"


# Batches per workflow run before it continues as new: a batch adds about two events per
# item it moved (the signal and its outcome), so a run stays near 4,000 events.
BATCHES_PER_RUN = 20


@dataclass(frozen=True, kw_only=True)
class ReplanInput:
    """The job to run, `batch` items a transaction (`domain.replan.BATCH`); `after` is the
    last item id done when a run continues as new (None: from the start)."""

    job_id: str
    account_id: str
    batch: int
    after: str | None = None
    batches_per_run: int = BATCHES_PER_RUN


@dataclass(frozen=True, kw_only=True)
class ReplanBatch:
    """The job's batch after item id `after`: the key that makes a retry do nothing."""

    job_id: str
    account_id: str
    after: str | None
    size: int


@dataclass(frozen=True, kw_only=True)
class ReplanProgress:
    """The job after a batch (its totals so far) and the items that batch moved, whose
    workflows the workflow nudges. `last`: the job is no longer running."""

    state: str
    cursor: str | None
    matched: int
    replanned: int
    rungs_moved: int
    moved: list[str]

    @property
    def last(self) -> bool:
        return self.state != "running"


@dataclass(frozen=True, kw_only=True)
class ReplanFailed:
    job_id: str
    account_id: str
    error: str
