"""sign-in deliveries: a sign-in mail is a delivery row of its own, with no item

The sign-in mail goes through the delivery engine (pooled, retried, on the record), so a
delivery row may belong to no item: `item_id` becomes nullable. A row without an item is a
sign-in mail (`event_key` `auth.sign_in`), keyed by its own id.

Revision ID: e5c3a9d21b40
Revises: d42a6b8e1f07
Create Date: 2026-12-06 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5c3a9d21b40"
down_revision: str | None = "d42a6b8e1f07"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("delivery", "item_id", existing_type=sa.UUID(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM delivery WHERE item_id IS NULL")
    op.alter_column("delivery", "item_id", existing_type=sa.UUID(), nullable=False)
