"""item.pauses: the pause history, so plans can be computed from the database alone

Revision ID: 3b7d2e4c1a90
Revises: 7c1e5a0b9f21
Create Date: 2026-11-22 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3b7d2e4c1a90"
down_revision: str | None = "7c1e5a0b9f21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "item",
        sa.Column(
            "pauses",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("item", "pauses")
