"""reconciler cursor: a walk through lagging items that never starves

The nudge query returned the 500 oldest lagging items, whatever their state, with no way
past them: workflows of an older generation, and items whose workflow ended without
recording its version, stayed first on the list for ever, and once 500 such rows existed no
newer lagging item was nudged again. Now:

- `escalator_items_to_nudge(before, after_at, after_id, max)` walks the lagging items in
  (updated_at, id) order from a cursor the reconciler keeps, served by a partial index on
  exactly the lagging rows;
- `escalator_workflows_gone(ids)` settles the items whose workflow Temporal no longer has:
  an ended item counts as applied (nothing is left to tell its workflow), an active one is
  marked not started, so the reconciler's next start step starts it afresh.

Revision ID: c8d9e0f1a2b3
Revises: b7c8d9e0f1a2
Create Date: 2026-12-06 20:00:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "c8d9e0f1a2b3"
down_revision: str | None = "b7c8d9e0f1a2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_NUDGE = "escalator_items_to_nudge(changed_before timestamptz, max_rows integer)"
FUNCTIONS = {
    "escalator_items_to_nudge(changed_before timestamptz, after_at timestamptz, "
    "after_id uuid, max_rows integer)": """
        RETURNS TABLE (id uuid, account_id uuid, state varchar, updated_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT i.id, i.account_id, i.state, i.updated_at FROM item i
           WHERE i.workflow_started_at IS NOT NULL
             AND i.applied_version < i.version
             AND i.updated_at < changed_before
             AND (i.updated_at, i.id) > (after_at, after_id)
           ORDER BY i.updated_at, i.id LIMIT max_rows
        $$
    """,
    "escalator_workflows_gone(ids uuid[])": """
        RETURNS TABLE (id uuid, state varchar)
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          UPDATE item i
             SET applied_version = CASE WHEN i.state IN ('resolved', 'cancelled')
                                        THEN i.version ELSE i.applied_version END,
                 workflow_started_at = CASE WHEN i.state IN ('resolved', 'cancelled')
                                            THEN i.workflow_started_at END
           WHERE i.id = ANY(ids) AND i.applied_version < i.version
          RETURNING i.id, i.state
        $$
    """,
}
INDEX = "ix_item_lagging"


def upgrade() -> None:
    role = Settings().db_app_role
    op.execute(f"DROP FUNCTION {OLD_NUDGE}")
    op.execute(
        f"CREATE INDEX {INDEX} ON item (updated_at, id) "
        "WHERE applied_version < version AND workflow_started_at IS NOT NULL"
    )
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def downgrade() -> None:
    role = Settings().db_app_role
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute(f"DROP INDEX {INDEX}")
    op.execute(
        f"""
        CREATE FUNCTION {OLD_NUDGE}
        RETURNS TABLE (id uuid, account_id uuid, version integer)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT i.id, i.account_id, i.version FROM item i
           WHERE i.workflow_started_at IS NOT NULL
             AND i.applied_version < i.version
             AND i.updated_at < changed_before
           ORDER BY i.updated_at LIMIT max_rows
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {OLD_NUDGE} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {OLD_NUDGE} TO "{role}"')
