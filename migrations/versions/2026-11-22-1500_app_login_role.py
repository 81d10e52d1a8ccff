"""the app role logs in: no SET ROLE, and narrow definer functions for cross-tenant reads

Before this, the app connected as the owner and ran `SET ROLE` on connect. A rollback of the
transaction that carried the `SET ROLE` undid it, so a pooled connection could silently run
as the owner, which bypasses row-level security. Now the app role is a LOGIN of its own that
is neither superuser, nor BYPASSRLS, nor owner of anything; the API and worker log in as it.

The running system needs exactly two reads across accounts, and gets them as SECURITY
DEFINER functions (executed with the owner's rights, returning only what they name):
- `escalator_push_after(after, max)`: the outbox rows after an id, for the push hub to route
  to each account's subscribers (and `escalator_push_head()`, where it starts);
- `escalator_items_to_start(before, max)`: active items whose workflow never started, for
  the reconciler.

Revision ID: 5e0c4f7a2b18
Revises: 3b7d2e4c1a90
Create Date: 2026-11-22 15:00:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "5e0c4f7a2b18"
down_revision: str | None = "3b7d2e4c1a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = {
    "escalator_push_head()": """
        RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$ SELECT coalesce(max(id), 0) FROM push_event $$
    """,
    "escalator_push_after(after bigint, max_rows integer)": """
        RETURNS TABLE (id bigint, account_id uuid, kind varchar, payload jsonb)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT p.id, p.account_id, p.kind, p.payload FROM push_event p
           WHERE p.id > after ORDER BY p.id LIMIT max_rows
        $$
    """,
    "escalator_items_to_start(created_before timestamptz, max_rows integer)": """
        RETURNS TABLE (id uuid, account_id uuid, item_type varchar, title varchar)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT i.id, i.account_id, i.item_type, i.title FROM item i
           WHERE i.workflow_started_at IS NULL
             AND i.state IN ('open', 'paused', 'claimed')
             AND i.created_at < created_before
           ORDER BY i.created_at LIMIT max_rows
        $$
    """,
}


def upgrade() -> None:
    settings = Settings()
    role = settings.db_app_role
    # Roles are cluster-wide: an earlier revision created this one NOLOGIN.
    op.execute(f'ALTER ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE')
    if settings.db_app_password is not None:
        password = settings.db_app_password.get_secret_value().replace("'", "''")
        op.execute(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
    op.execute(f'GRANT CONNECT ON DATABASE "{_database()}" TO "{role}"')
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def downgrade() -> None:
    role = Settings().db_app_role
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute(f'ALTER ROLE "{role}" NOLOGIN')


def _database() -> str:
    name = op.get_bind().exec_driver_sql("SELECT current_database()").scalar()
    return str(name)
