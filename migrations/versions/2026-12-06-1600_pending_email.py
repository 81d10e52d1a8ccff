"""pending email: an address change waits for the new address to confirm it

An admin's change of a user's address took effect at once, so an admin could point a
colleague's account at a mailbox of their own and sign in as them. Now the new address is
kept in `pending_email` until a link mailed to it is used; the old address, still the one
every mail and sign-in link goes to, is told of the change meanwhile.

Revision ID: d3e4f5a6b7c8
Revises: c2d3e4f5a6b7
Create Date: 2026-12-06 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d3e4f5a6b7c8"
down_revision: str | None = "c2d3e4f5a6b7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("app_user", sa.Column("pending_email", sa.String(320), nullable=True))


def downgrade() -> None:
    op.drop_column("app_user", "pending_email")
