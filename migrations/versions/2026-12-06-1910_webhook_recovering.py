"""webhook recovering: an endpoint switched back on after an automatic switch-off

When escalator switches an endpoint off (410, or failing for the whole disable window), the
account's admins are mailed. An admin who switches it back on sets `recovering`; the first
delivery that reaches it clears the flag and mails the admins that it works again.

Revision ID: b7c8d9e0f1a2
Revises: a6b7c8d9e0f1
Create Date: 2026-12-06 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7c8d9e0f1a2"
down_revision: str | None = "a6b7c8d9e0f1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoint",
        sa.Column("recovering", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("webhook_endpoint", "recovering")
