"""row-level security, the app role, append-only audit

Every tenant table gets a policy keyed on `current_setting('app.account_id')`. The app
switches to a non-owner role on connect, so the policies apply to it; the owner (this
migration's user) bypasses them, which is what migrations and system jobs need. An unset
`app.account_id` matches no row at all rather than raising.

Revision ID: 7c1e5a0b9f21
Revises: d3829452a21e
Create Date: 2026-11-22 04:50:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "7c1e5a0b9f21"
down_revision: str | None = "d3829452a21e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tenant tables as of this revision (later tables get their policy in their own migration).
TENANT_TABLES = (
    "app_user",
    "role",
    "role_member",
    "business_calendar",
    "sla_policy",
    "item",
    "delivery",
    "audit_event",
    "push_event",
)
TENANT = "NULLIF(current_setting('app.account_id', true), '')::uuid"
# audit_event is append-only for the app: no UPDATE or DELETE grant, and a trigger for
# everyone else.
APPEND_ONLY = {"audit_event", "push_event"}


def _app_role() -> str:
    return Settings().db_app_role or "escalator_app"


def upgrade() -> None:
    role = _app_role()
    # Roles are cluster-wide, so create it only once; downgrade leaves it for other databases.
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE "{role}" NOLOGIN;
          END IF;
        END $$;
        """
    )
    # A non-superuser owner must be a member to `SET ROLE` to it.
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', '{role}', current_user);
          END IF;
        END $$;
        """
    )
    op.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
    op.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')

    op.execute("ALTER TABLE account ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON account USING (id = {TENANT})")
    op.execute(f'GRANT SELECT ON account TO "{role}"')
    for table in TENANT_TABLES:
        verbs = "SELECT, INSERT" if table in APPEND_ONLY else "SELECT, INSERT, UPDATE, DELETE"
        op.execute(f'GRANT {verbs} ON {table} TO "{role}"')
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (account_id = {TENANT}) WITH CHECK (account_id = {TENANT})"
        )

    op.execute(
        """
        CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'audit_event is append-only (% rejected)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()"
    )


def downgrade() -> None:
    role = _app_role()
    op.execute("DROP TRIGGER audit_event_no_truncate ON audit_event")
    op.execute("DROP TRIGGER audit_event_append_only ON audit_event")
    op.execute("DROP FUNCTION audit_event_append_only()")
    for table in (*TENANT_TABLES, "account"):
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f'REVOKE ALL ON {table} FROM "{role}"')
    op.execute(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{role}"')
    op.execute(f'REVOKE USAGE ON SCHEMA public FROM "{role}"')
