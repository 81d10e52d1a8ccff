"""sign-in requests: one rate limit for every API process, in Postgres, with expiry

The sign-in link limit (links per address per 15 minutes) was kept in each API process's
memory: two processes allowed twice as many, and every address ever asked stayed in
memory. Now each request is a row of `sign_in_request` (the address's SHA-256, never the
address, and when), written and counted by one definer function under a per-address lock,
which also drops the rows older than the window. The app role has no other access to it.

Revision ID: b1c2d3e4f5a6
Revises: a8b9c0d1e2f3
Create Date: 2026-12-06 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config import Settings

revision: str = "b1c2d3e4f5a6"
down_revision: str | None = "a8b9c0d1e2f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIT = "escalator_sign_in_admit(address_hash text, most integer, span interval)"


def upgrade() -> None:
    op.create_table(
        "sign_in_request",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_sign_in_request_address_hash_requested_at",
        "sign_in_request",
        ["address_hash", "requested_at"],
    )
    op.create_index("ix_sign_in_request_requested_at", "sign_in_request", ["requested_at"])
    op.execute("ALTER TABLE sign_in_request ENABLE ROW LEVEL SECURITY")
    create_admit()


def create_admit() -> None:
    """The limit's definer function (also what a later revision's downgrade puts back)."""
    role = Settings().db_app_role
    op.execute(
        f"""
        CREATE FUNCTION {ADMIT}
        RETURNS boolean
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        DECLARE
          recent integer;
        BEGIN
          PERFORM pg_advisory_xact_lock(7203, hashtext(address_hash));
          DELETE FROM sign_in_request WHERE requested_at < now() - span;
          SELECT count(*) INTO recent FROM sign_in_request r
           WHERE r.address_hash = escalator_sign_in_admit.address_hash;
          IF recent >= most THEN
            RETURN false;
          END IF;
          INSERT INTO sign_in_request (address_hash) VALUES (escalator_sign_in_admit.address_hash);
          RETURN true;
        END
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {ADMIT} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {ADMIT} TO "{role}"')


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {ADMIT}")
    op.drop_table("sign_in_request")
