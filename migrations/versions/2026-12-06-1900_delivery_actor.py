"""delivery actor: who caused a lifecycle webhook's event

A claim, release, resolve or cancel now posts a webhook too (`item.claimed` …), planned as
delivery rows in the transition's own transaction. `actor_id` is who made the transition
(null for the system's own: a claim that timed out), for the body's `by`.

Revision ID: a6b7c8d9e0f1
Revises: f5a6b7c8d9e0
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a6b7c8d9e0f1"
down_revision: str | None = "f5a6b7c8d9e0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "delivery",
        sa.Column(
            "actor_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("app_user.id", ondelete="SET NULL", name="fk_delivery_actor_id_app_user"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("delivery", "actor_id")
