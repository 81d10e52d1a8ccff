"""Bodies of the bulk re-plan (`POST /v1/replan`, `GET /v1/replan[/{id}]`): the selection,
a dry run's report, and a job as it stands."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.demo import stable_id
from domain.models import ReplanJob

REPLAN_LISTED = 100


class ReplanIn(BaseModel):
    """Which items to move to the latest policy and calendar versions."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"calendar_id": str(stable_id("demo", "calendar:berlin")), "dry_run": True}
            ],
            # Said in the schema too: a calendar_id, a type, or both (not null).
            "anyOf": [
                {"required": ["calendar_id"], "properties": {"calendar_id": {"type": "string"}}},
                {"required": ["type"], "properties": {"type": {"type": "string"}}},
            ],
        },
    )

    calendar_id: uuid.UUID | None = Field(
        default=None, description="every active item planning on this calendar"
    )
    type: str | None = Field(
        default=None, min_length=1, max_length=64, description="every active item of this type"
    )
    dry_run: bool = Field(
        default=False,
        description="report at once what would move, writing and locking nothing; without "
        "it, a job re-plans in the background",
    )

    @model_validator(mode="after")
    def _names_a_selection(self) -> ReplanIn:
        if self.calendar_id is None and self.type is None:
            raise ValueError("name a calendar_id, a type, or both: which items to re-plan")
        return self


class VersionMove(BaseModel):
    from_: int = Field(alias="from", serialization_alias="from")
    to: int


class ReplannedItem(BaseModel):
    id: uuid.UUID
    policy_version: VersionMove
    calendar_version: VersionMove
    rungs_moved: int


class ReplanOut(BaseModel):
    """A dry run: what a re-plan would move now."""

    dry_run: bool
    matched: int = Field(description="active items the selection matched")
    replanned: int = Field(description="of those, items not yet on the latest versions")
    rungs_moved: int = Field(description="upcoming rungs whose instant changed, appeared or went")
    items: list[ReplannedItem] = Field(description=f"the first {REPLAN_LISTED} replanned items")
    items_truncated: bool


class ReplanJobOut(BaseModel):
    """A bulk re-plan as it stands. It works through its items in batches, in id order; the
    counts grow with each batch (each is also pushed as `replan.progress`, the last as
    `replan.done`)."""

    id: uuid.UUID
    url: str = Field(description="where to follow it: GET it until `state` is not `running`")
    state: Literal["running", "done", "failed"]
    calendar_id: uuid.UUID | None
    type: str | None
    matched: int = Field(description="active items of the selection re-planned so far")
    replanned: int = Field(description="of those, items moved to the latest versions")
    rungs_moved: int = Field(description="upcoming rungs whose instant changed, appeared or went")
    created_at: datetime
    finished_at: datetime | None
    error: str | None = Field(description="why a `failed` job stopped")

    @classmethod
    def of(cls, job: ReplanJob) -> ReplanJobOut:
        return cls(
            id=job.id,
            url=job_url(job.id),
            state=job.state,
            calendar_id=job.calendar_id,
            type=job.item_type,
            matched=job.matched,
            replanned=job.replanned,
            rungs_moved=job.rungs_moved,
            created_at=job.created_at,
            finished_at=job.finished_at,
            error=job.error,
        )


class ReplanJobStarted(ReplanJobOut):
    """The job just created, and whether its workflow started."""

    workflow: Literal["started", "pending"] = Field(
        description="pending: Temporal was unreachable; the job stays `running` with nothing "
        "done: ask again"
    )


def job_url(job_id: uuid.UUID) -> str:
    return f"/v1/replan/{job_id}"
