"""links: single-use sign-in and claim links

Sign-in links (mailed on request, 15 minutes) and claim links (in every notification) are
signed tokens; a `used_link` row per redeemed token's `jti` makes each one single-use.
`escalator_sign_in_candidates(email)` lets the API, which cannot see across accounts, find
who a sign-in request is for; it returns only what the sign-in mail needs.

Revision ID: 9c4f1a7e3b52
Revises: 5b8e2c7a9d10
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from config import Settings

revision: str = "9c4f1a7e3b52"
down_revision: str | None = "5b8e2c7a9d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT = "NULLIF(current_setting('app.account_id', true), '')::uuid"
CANDIDATES = "escalator_sign_in_candidates(p_email text)"


def upgrade() -> None:
    op.create_table(
        "used_link",
        sa.Column("jti", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "used_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_used_link_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_used_link_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_used_link")),
    )
    op.create_index(op.f("ix_used_link_account_id"), "used_link", ["account_id"])
    role = Settings().db_app_role
    op.execute(f'GRANT SELECT, INSERT ON used_link TO "{role}"')
    op.execute("ALTER TABLE used_link ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON used_link "
        f"USING (account_id = {TENANT}) WITH CHECK (account_id = {TENANT})"
    )
    op.execute(
        f"""
        CREATE FUNCTION {CANDIDATES}
        RETURNS TABLE (user_id uuid, account_id uuid, name varchar, email varchar,
                       account_name varchar)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT u.id, u.account_id, u.name, u.email, a.name FROM app_user u
            JOIN account a ON a.id = u.account_id
           WHERE lower(u.email) = lower(p_email) AND u.is_active AND u.deleted_at IS NULL
           ORDER BY a.name LIMIT 10
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {CANDIDATES} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {CANDIDATES} TO "{role}"')


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {CANDIDATES}")
    op.drop_table("used_link")
