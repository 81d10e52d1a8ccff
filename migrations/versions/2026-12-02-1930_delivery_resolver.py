"""delivery.resolver_rank: why this person got the mail

The place in the rung's recipient chain of the resolver that matched, when the rung fired.
With the policy version the item pins (immutable), it says which resolver matched and which
came before it and found nobody valid. Null on rows written before it, and on fan-out rows
that no chain produced.

Revision ID: 2e7b9d4c6a18
Revises: 9c4f1a7e3b52
Create Date: 2026-12-02 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2e7b9d4c6a18"
down_revision: str | None = "9c4f1a7e3b52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("delivery", sa.Column("resolver_rank", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("delivery", "resolver_rank")
