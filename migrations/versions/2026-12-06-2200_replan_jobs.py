"""replan jobs: a bulk re-plan is durable background work

`POST /v1/replan` used to lock every matching item in the request's one transaction, so a
claim on any of them waited for the whole re-plan. Now it writes a `replan_job` row and
starts `ReplanWorkflow` (`replan-<id>`), which re-plans a batch of items per transaction in
id order. The row is the job's record and its resume point: `cursor` is the last item id
done, and `matched`, `replanned` and `rungs_moved` grow with it in the same transaction.
A tenant table (RLS policy and grants as every other).

Revision ID: e0f1a2b3c4d5
Revises: d9e0f1a2b3c4
Create Date: 2026-12-06 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config import Settings

revision: str = "e0f1a2b3c4d5"
down_revision: str | None = "d9e0f1a2b3c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT = "NULLIF(current_setting('app.account_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "replan_job",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("actor_id", sa.UUID(), nullable=True),
        sa.Column("calendar_id", sa.UUID(), nullable=True),
        sa.Column("item_type", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("matched", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("replanned", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rungs_moved", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cursor", sa.UUID(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('running', 'done', 'failed')", name=op.f("ck_replan_job_state")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_replan_job_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["app_user.id"],
            name=op.f("fk_replan_job_actor_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["business_calendar.id"],
            name=op.f("fk_replan_job_calendar_id_business_calendar"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replan_job")),
    )
    op.create_index(op.f("ix_replan_job_account_id"), "replan_job", ["account_id"])
    role = Settings().db_app_role
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON replan_job TO "{role}"')
    op.execute("ALTER TABLE replan_job ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON replan_job "
        f"USING (account_id = {TENANT}) WITH CHECK (account_id = {TENANT})"
    )


def downgrade() -> None:
    op.drop_table("replan_job")  # its policy and grants go with it
