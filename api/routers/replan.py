"""Bulk re-plan: every active item of a calendar or a type onto the latest policy and
calendar versions, in one call, with how many rungs moved (`domain.replan`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import Admin
from api.deps import TemporalDep, UowDep
from api.errors import ErrorResponse
from api.schemas import REPLAN_LISTED, ReplanIn, ReplannedItem, ReplanOut, VersionMove
from domain import admin_policies, replan
from domain.clock import utcnow
from domain.replan import Report
from workflows.starts import signal_items

router = APIRouter(prefix="/v1", tags=["admin"])
_ERROR = {"model": ErrorResponse}
RESPONSES: dict[int | str, dict[str, Any]] = {403: _ERROR, 404: _ERROR}


@router.post("/replan", response_model=ReplanOut, responses=RESPONSES, summary="Re-plan many items")
async def replan_many(
    body: ReplanIn, uow: UowDep, principal: Admin, temporal: TemporalDep
) -> ReplanOut:
    """Moves every active item (open, paused or claimed) on `calendar_id` and/or of `type`
    to the latest policy version of its type and the latest version of that policy's
    calendar. Items keep the versions they pinned until this (or the item's own re-plan)
    moves them. Each moved item is audited (`replanned`, with the versions and its rungs
    moved) and its workflow re-plans from the database. `dry_run` reports and writes
    nothing. 404 for a calendar or a type the account does not have."""
    account = principal.account_id
    if body.calendar_id is not None:
        await admin_policies.get_calendar(uow.session, account, body.calendar_id)
    if body.type is not None:
        await admin_policies.policy_versions(uow.session, account, body.type)
    report = await replan.replan(
        uow.session,
        account,
        principal.user_id,
        utcnow(),
        calendar_id=body.calendar_id,
        item_type=body.type,
        dry_run=body.dry_run,
    )
    if not body.dry_run and report.moved:
        moved = [m.item_id for m in report.moved]

        async def nudge() -> None:
            await signal_items(temporal, moved, "replan")

        uow.after_commit(nudge)
    return replan_out(report, dry_run=body.dry_run)


def replan_out(report: Report, *, dry_run: bool) -> ReplanOut:
    return ReplanOut(
        dry_run=dry_run,
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
