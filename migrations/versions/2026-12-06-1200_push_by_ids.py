"""push by ids: the hub re-reads the outbox rows it saw missing

The outbox's ordering lock is per account now (a stream is per account), so ids commit in
order within an account but not across accounts: the hub, which reads every account's rows
after the last id it dispatched, may see id N+1 before N commits. It remembers such gaps
and asks for them again by id through this definer function, like `escalator_push_after`.

Revision ID: f7a1c2d3e4b5
Revises: e5c3a9d21b40
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "f7a1c2d3e4b5"
down_revision: str | None = "e5c3a9d21b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BY_IDS = "escalator_push_by_ids(wanted bigint[])"


def upgrade() -> None:
    role = Settings().db_app_role
    op.execute(
        f"""
        CREATE FUNCTION {BY_IDS}
        RETURNS TABLE (id bigint, account_id uuid, kind varchar, payload jsonb,
                       created_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT p.id, p.account_id, p.kind, p.payload, p.created_at FROM push_event p
           WHERE p.id = ANY(wanted) ORDER BY p.id
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {BY_IDS} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {BY_IDS} TO "{role}"')


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {BY_IDS}")
