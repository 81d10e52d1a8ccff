"""used links are pruned: a stream ticket's row goes once the ticket has expired

Every opened event stream spends its single-use ticket as a `used_link` row; with nothing
removing them, the table grew by a row per stream for ever. An expired ticket is refused by
its signature alone, so its row is no longer needed: the API deletes an account's expired
ticket rows when it spends the next ticket. The app role may delete a stream ticket's row
and nothing else of the table (a restrictive policy): a used sign-in, claim or address
link stays used.

Revision ID: e4f5a6b7c8d9
Revises: d3e4f5a6b7c8
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "e4f5a6b7c8d9"
down_revision: str | None = "d3e4f5a6b7c8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE POLICY only_tickets_deleted ON used_link AS RESTRICTIVE FOR DELETE "
        "USING (purpose = 'stream_ticket')"
    )
    op.execute(f'GRANT DELETE ON used_link TO "{Settings().db_app_role}"')


def downgrade() -> None:
    op.execute(f'REVOKE DELETE ON used_link FROM "{Settings().db_app_role}"')
    op.execute("DROP POLICY only_tickets_deleted ON used_link")
