"""send guard in one round trip: a mail's transaction starts with one call

Each mail is sent in a short transaction that pins the tenant, takes the item's send guard
(the shared advisory lock every transition takes exclusively) and reads the item's state
after it: three statements, three round trips to Postgres per mail. This function does the
three in one call. It runs as its caller (row-level security applies to the read, under the
tenant it has just pinned), and as PL/pgSQL its read takes a snapshot of its own after the
lock is held, so a transition that committed while this waited is seen.

Revision ID: f1a2b3c4d5e6
Revises: e0f1a2b3c4d5
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "f1a2b3c4d5e6"
down_revision: str | None = "e0f1a2b3c4d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "escalator_send_guard(p_item uuid, p_account uuid)"
GUARD_CLASS = 7201  # domain.send_guard.GUARD_CLASS


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {SIGNATURE} RETURNS text
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        BEGIN
          PERFORM set_config('app.account_id', p_account::text, true);
          PERFORM pg_advisory_xact_lock_shared({GUARD_CLASS}, hashtext(p_item::text));
          RETURN (SELECT state FROM item WHERE id = p_item AND account_id = p_account);
        END
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {SIGNATURE} TO "{Settings().db_app_role}"')


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
