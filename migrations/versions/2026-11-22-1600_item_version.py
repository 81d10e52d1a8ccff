"""item.version and item.applied_version: Postgres is the truth, signals are nudges

Every lifecycle change bumps `version` in its own transaction; the workflow records in
`applied_version` the version it has read back and acted on. The reconciler nudges every
workflow whose item it sees lagging, through `escalator_items_to_nudge`, so a signal lost
while Temporal was away heals within one reconcile period.

Revision ID: 2f6b8e1d4c73
Revises: 9a4d6c2e8f31
Create Date: 2026-11-22 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config import Settings

revision: str = "2f6b8e1d4c73"
down_revision: str | None = "9a4d6c2e8f31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NUDGE = "escalator_items_to_nudge(changed_before timestamptz, max_rows integer)"


def upgrade() -> None:
    op.add_column("item", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.add_column(
        "item", sa.Column("applied_version", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute("UPDATE item SET applied_version = version")  # what exists is in step
    op.execute(
        f"""
        CREATE FUNCTION {NUDGE}
        RETURNS TABLE (id uuid, account_id uuid, version integer)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT i.id, i.account_id, i.version FROM item i
           WHERE i.workflow_started_at IS NOT NULL
             AND i.applied_version < i.version
             AND i.updated_at < changed_before
           ORDER BY i.updated_at LIMIT max_rows
        $$
        """
    )
    role = Settings().db_app_role
    op.execute(f"REVOKE ALL ON FUNCTION {NUDGE} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {NUDGE} TO "{role}"')


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {NUDGE}")
    op.drop_column("item", "applied_version")
    op.drop_column("item", "version")
