"""idempotency keys scoped to (account, endpoint) and bound to the request that used them

`idempotency_scope` names the endpoint ("tasks", "handoffs") and `request_fingerprint` is a
SHA-256 of who sent what. The same key with the same request replays; with a different one
it is a 422. Items created before this have no fingerprint and keep replaying.

Revision ID: 9a4d6c2e8f31
Revises: 5e0c4f7a2b18
Create Date: 2026-11-22 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a4d6c2e8f31"
down_revision: str | None = "5e0c4f7a2b18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("item", sa.Column("idempotency_scope", sa.String(length=32), nullable=True))
    op.add_column("item", sa.Column("request_fingerprint", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE item SET idempotency_scope = CASE kind WHEN 'task' THEN 'tasks' "
        "ELSE 'handoffs' END WHERE idempotency_key IS NOT NULL"
    )
    op.drop_constraint("uq_item_account_id_idempotency_key", "item", type_="unique")
    op.create_unique_constraint(
        op.f("uq_item_account_id_idempotency_scope_idempotency_key"),
        "item",
        ["account_id", "idempotency_scope", "idempotency_key"],
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("uq_item_account_id_idempotency_scope_idempotency_key"), "item", type_="unique"
    )
    op.create_unique_constraint(
        "uq_item_account_id_idempotency_key", "item", ["account_id", "idempotency_key"]
    )
    op.drop_column("item", "request_fingerprint")
    op.drop_column("item", "idempotency_scope")
