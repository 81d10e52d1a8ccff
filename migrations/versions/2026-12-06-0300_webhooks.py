"""webhooks: endpoints, and deliveries that go to an endpoint instead of a person

`webhook_endpoint` is a tenant table (RLS policy and grants as every other). A delivery
now names a recipient or an endpoint, exactly one of the two: a person's rows keep their
unique (recipient, item, event_key, channel), an endpoint's get a partial unique index of
their own. `response_code` records the receiver's last HTTP status.

Revision ID: c81f4e2a7d35
Revises: 2e7b9d4c6a18
Create Date: 2026-12-06 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from config import Settings

revision: str = "c81f4e2a7d35"
down_revision: str | None = "2e7b9d4c6a18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT = "NULLIF(current_setting('app.account_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "event_filter",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column("format", sa.String(length=16), server_default="standard", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "format IN ('standard', 'slack')", name=op.f("ck_webhook_endpoint_format")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_webhook_endpoint_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoint")),
    )
    op.create_index(op.f("ix_webhook_endpoint_account_id"), "webhook_endpoint", ["account_id"])
    role = Settings().db_app_role
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoint TO "{role}"')
    op.execute("ALTER TABLE webhook_endpoint ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON webhook_endpoint "
        f"USING (account_id = {TENANT}) WITH CHECK (account_id = {TENANT})"
    )

    op.add_column("delivery", sa.Column("endpoint_id", sa.UUID(), nullable=True))
    op.add_column("delivery", sa.Column("response_code", sa.SmallInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_delivery_endpoint_id_webhook_endpoint"),
        "delivery",
        "webhook_endpoint",
        ["endpoint_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.alter_column("delivery", "recipient_id", existing_type=sa.UUID(), nullable=True)
    op.create_check_constraint(
        op.f("ck_delivery_recipient_or_endpoint"),
        "delivery",
        "(recipient_id IS NULL) <> (endpoint_id IS NULL)",
    )
    op.create_index(
        "uq_delivery_endpoint_id_item_id_event_key_channel",
        "delivery",
        ["endpoint_id", "item_id", "event_key", "channel"],
        unique=True,
        postgresql_where=sa.text("endpoint_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("DELETE FROM delivery WHERE endpoint_id IS NOT NULL")
    op.drop_index("uq_delivery_endpoint_id_item_id_event_key_channel", table_name="delivery")
    op.drop_constraint(op.f("ck_delivery_recipient_or_endpoint"), "delivery", type_="check")
    op.alter_column("delivery", "recipient_id", existing_type=sa.UUID(), nullable=False)
    op.drop_constraint(
        op.f("fk_delivery_endpoint_id_webhook_endpoint"), "delivery", type_="foreignkey"
    )
    op.drop_column("delivery", "response_code")
    op.drop_column("delivery", "endpoint_id")
    op.drop_table("webhook_endpoint")  # its policy and grants go with it
