"""token epoch: a user's bearer tokens can be revoked

Every token carries the user's `token_epoch` as it was when the token was minted, and only
a token of the current epoch is accepted. Signing out everywhere, a deactivation, a role
change, an address change or a deletion bumps it, so every earlier token stops working and
a reactivation does not bring them back.

Revision ID: a8b9c0d1e2f3
Revises: f7a1c2d3e4b5
Create Date: 2026-12-06 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a8b9c0d1e2f3"
down_revision: str | None = "f7a1c2d3e4b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "app_user",
        sa.Column("token_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("app_user", "token_epoch")
