"""Bulk re-plan: every active item of a calendar or a type onto the latest policy and
calendar versions (`domain.replan`), as a job that `ReplanWorkflow` runs in batches; a dry
run answers at once."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from api.auth import Admin
from api.deps import SettingsDep, TemporalDep, UowDep
from api.errors import ErrorResponse
from api.replan_schemas import (
    REPLAN_LISTED,
    ReplanIn,
    ReplanJobOut,
    ReplanJobStarted,
    ReplannedItem,
    ReplanOut,
    VersionMove,
    job_url,
)
from domain import admin_policies, replan
from domain.clock import utcnow
from domain.replan import Report
from workflows.replan_types import ReplanInput
from workflows.starts import start_replan

router = APIRouter(prefix="/v1", tags=["admin"])
_ERROR = {"model": ErrorResponse}
RESPONSES: dict[int | str, dict[str, Any]] = {403: _ERROR, 404: _ERROR}


@router.post(
    "/replan",
    response_model=None,  # two bodies, one per status, each documented below
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": ReplanOut, "description": "`dry_run`: what would move now"},
        202: {"model": ReplanJobStarted, "description": "the job, re-planning in the background"},
        **RESPONSES,
    },
    summary="Re-plan many items",
)
async def replan_many(
    body: ReplanIn,
    uow: UowDep,
    principal: Admin,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
) -> ReplanJobStarted | ReplanOut:
    """Moves every active item (open, paused or claimed) on `calendar_id` and/or of `type`
    to the latest policy version of its type and the latest version of that policy's
    calendar. Items keep the versions they pinned until this (or the item's own re-plan)
    moves them.

    The answer is `202` with a job (`Location`: its `url`): a workflow re-plans its items
    100 at a time in id order, each batch one transaction that locks just those items, so a
    claim waits at most for its item's batch. Each moved item is audited (`replanned`, with
    the versions and its rungs moved) and its workflow re-plans from the database. Follow
    the job with `GET /v1/replan/{id}` or the live stream (`replan.progress`,
    `replan.done`). `workflow: pending` means Temporal was unreachable: the job stays
    `running` with nothing done until the reconciler starts its workflow, once Temporal is
    back.

    `dry_run` answers `200` with what would move now, and writes and locks nothing. 404 for
    a calendar or a type the account does not have."""
    account = principal.account_id
    if body.calendar_id is not None:
        await admin_policies.get_calendar(uow.session, account, body.calendar_id)
    if body.type is not None:
        await admin_policies.policy_versions(uow.session, account, body.type)
    if body.dry_run:
        report = await replan.preview(
            uow.session, account, utcnow(), calendar_id=body.calendar_id, item_type=body.type
        )
        response.status_code = status.HTTP_200_OK
        return replan_out(report)
    job = await replan.create_job(
        uow.session,
        account,
        principal.user_id,
        utcnow(),
        calendar_id=body.calendar_id,
        item_type=body.type,
    )
    await uow.commit()  # the job exists before its workflow looks for it
    start = ReplanInput(job_id=str(job.id), account_id=str(account), batch=replan.BATCH)
    started = await start_replan(temporal, settings.task_queue, start)
    response.headers["Location"] = job_url(job.id)
    return ReplanJobStarted(
        **ReplanJobOut.of(job).model_dump(), workflow="started" if started else "pending"
    )


@router.get(
    "/replan",
    response_model=list[ReplanJobOut],
    responses={403: _ERROR},
    summary="The latest re-plan jobs",
)
async def list_replans(uow: UowDep, principal: Admin) -> list[ReplanJobOut]:
    """The account's latest 20 jobs, newest first."""
    jobs = await replan.latest_jobs(uow.session, principal.account_id)
    return [ReplanJobOut.of(job) for job in jobs]


@router.get(
    "/replan/{job_id}",
    response_model=ReplanJobOut,
    responses=RESPONSES,
    summary="A re-plan job as it stands",
)
async def get_replan(job_id: uuid.UUID, uow: UowDep, principal: Admin) -> ReplanJobOut:
    return ReplanJobOut.of(await replan.get_job(uow.session, principal.account_id, job_id))


def replan_out(report: Report) -> ReplanOut:
    return ReplanOut(
        dry_run=True,
        matched=report.matched,
        replanned=len(report.moved),
        rungs_moved=report.rungs_moved,
        items=[
            ReplannedItem(
                id=m.item_id,
                policy_version=_move(m.policy_version),
                calendar_version=_move(m.calendar_version),
                rungs_moved=m.rungs_moved,
            )
            for m in report.moved[:REPLAN_LISTED]
        ],
        items_truncated=len(report.moved) > REPLAN_LISTED,
    )


def _move(versions: tuple[int, int]) -> VersionMove:
    return VersionMove(**{"from": versions[0], "to": versions[1]})
