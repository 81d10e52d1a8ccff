"""calendar versions: an item pins the calendar version it plans on

`business_calendar_version` keeps every version of a calendar's working time (zone, hours,
holiday rules, custom dates), never updated; `business_calendar.version` names the newest.
`item.calendar_version_id` is the pin: a calendar edit moves an item's plan only when it is
replanned, exactly as a policy edit does. Every existing calendar becomes version 1 and every
existing item pins it.

Revision ID: 5b8e2c7a9d10
Revises: 7d3a9c5e1b24
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from config import Settings

revision: str = "5b8e2c7a9d10"
down_revision: str | None = "7d3a9c5e1b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT = "NULLIF(current_setting('app.account_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "business_calendar_version",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("calendar_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("hours", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("holiday_country", sa.String(length=8), nullable=True),
        sa.Column("holiday_subdivision", sa.String(length=16), nullable=True),
        sa.Column(
            "custom_holidays",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "version >= 1", name=op.f("ck_business_calendar_version_version_positive")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_business_calendar_version_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["business_calendar.id"],
            name=op.f("fk_business_calendar_version_calendar_id_business_calendar"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business_calendar_version")),
        sa.UniqueConstraint(
            "calendar_id", "version", name=op.f("uq_business_calendar_version_calendar_id_version")
        ),
    )
    op.create_index(
        op.f("ix_business_calendar_version_account_id"), "business_calendar_version", ["account_id"]
    )
    op.create_index(
        op.f("ix_business_calendar_version_calendar_id"),
        "business_calendar_version",
        ["calendar_id"],
    )
    op.add_column(
        "business_calendar",
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
    )
    op.execute(
        """
        INSERT INTO business_calendar_version (id, account_id, calendar_id, version, tz, hours,
               holiday_country, holiday_subdivision, custom_holidays)
        SELECT gen_random_uuid(), account_id, id, 1, tz, hours, holiday_country,
               holiday_subdivision, custom_holidays
          FROM business_calendar
        """
    )
    op.add_column(
        "item", sa.Column("calendar_version_id", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.execute(
        """
        UPDATE item i SET calendar_version_id = v.id
          FROM sla_policy p, business_calendar_version v
         WHERE p.id = i.policy_id AND v.calendar_id = p.calendar_id AND v.version = 1
        """
    )
    op.alter_column("item", "calendar_version_id", nullable=False)
    op.create_foreign_key(
        op.f("fk_item_calendar_version_id_business_calendar_version"),
        "item",
        "business_calendar_version",
        ["calendar_version_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(op.f("ix_item_calendar_version_id"), "item", ["calendar_version_id"])

    # Tenant wall and append-only, as for every tenant table.
    role = Settings().db_app_role
    table = "business_calendar_version"
    op.execute(f'GRANT SELECT, INSERT ON {table} TO "{role}"')
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING (account_id = {TENANT}) WITH CHECK (account_id = {TENANT})"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_item_calendar_version_id"), table_name="item")
    op.drop_constraint(
        op.f("fk_item_calendar_version_id_business_calendar_version"), "item", type_="foreignkey"
    )
    op.drop_column("item", "calendar_version_id")
    op.drop_column("business_calendar", "version")
    op.drop_table("business_calendar_version")
