"""webhook failing since: an endpoint is disabled for a sustained outage, not a burst

An endpoint was disabled after 10 failed attempts in a row, counted across all its
deliveries: a receiver's one-minute blip during a 09:00 burst switched the integration off.
Now `failing_since` records when the endpoint's current run of failures began (cleared by
any success), and it is disabled only once it has failed, without a single success, for
`ESCALATOR_WEBHOOK_DISABLE_AFTER_SECONDS` (a day by default) and at least
`ESCALATOR_WEBHOOK_DISABLE_AFTER_FAILURES` times.

Revision ID: f5a6b7c8d9e0
Revises: e4f5a6b7c8d9
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f5a6b7c8d9e0"
down_revision: str | None = "e4f5a6b7c8d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoint",
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("webhook_endpoint", "failing_since")
