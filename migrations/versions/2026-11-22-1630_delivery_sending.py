"""delivery.status 'sending': the attempt is committed before SMTP is spoken to

A row left in 'sending' is an attempt whose outcome is unknown (the worker died mid-send):
the honest record of RFC 1047's window.

Revision ID: 7d3a9c5e1b24
Revises: 2f6b8e1d4c73
Create Date: 2026-11-22 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7d3a9c5e1b24"
down_revision: str | None = "2f6b8e1d4c73"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "('pending', 'sent', 'failed', 'deferred', 'suppressed')"
AFTER = "('pending', 'sending', 'sent', 'failed', 'deferred', 'suppressed')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_delivery_status"), "delivery", type_="check")
    op.create_check_constraint(op.f("ck_delivery_status"), "delivery", f"status IN {AFTER}")


def downgrade() -> None:
    op.execute("UPDATE delivery SET status = 'pending' WHERE status = 'sending'")
    op.drop_constraint(op.f("ck_delivery_status"), "delivery", type_="check")
    op.create_check_constraint(op.f("ck_delivery_status"), "delivery", f"status IN {BEFORE}")
