"""send guard in one round trip; re-plan jobs the reconciler starts

`escalator_send_guard`: a mail's transaction starts with one call.

Each mail is sent in a short transaction that pins the tenant, takes the item's send guard
(the shared advisory lock every transition takes exclusively) and reads the item's state
after it: three statements, three round trips to Postgres per mail. This function does the
three in one call. It runs as its caller (row-level security applies to the read, under the
tenant it has just pinned), and as PL/pgSQL its read takes a snapshot of its own after the
lock is held, so a transition that committed while this waited is seen.

`escalator_replans_to_start(before, max)`: the re-plan jobs still `running` that were made
before `before`, across accounts, for the reconciler. Their workflow is started by the job's
id, so one that runs is left alone, and one that never started (Temporal was down at the
POST) or ended without finishing the job starts from the job's cursor.

Revision ID: f1a2b3c4d5e6
Revises: e0f1a2b3c4d5
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

from migrations import functions

revision: str = "f1a2b3c4d5e6"
down_revision: str | None = "e0f1a2b3c4d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD_CLASS = 7201  # domain.send_guard.GUARD_CLASS
FUNCTIONS = {
    "escalator_send_guard(p_item uuid, p_account uuid)": f"""
        RETURNS text
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        BEGIN
          PERFORM set_config('app.account_id', p_account::text, true);
          PERFORM pg_advisory_xact_lock_shared({GUARD_CLASS}, hashtext(p_item::text));
          RETURN (SELECT state FROM item WHERE id = p_item AND account_id = p_account);
        END
        $$
    """,
    "escalator_replans_to_start(created_before timestamptz, max_rows integer)": """
        RETURNS TABLE (id uuid, account_id uuid, cursor uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT j.id, j.account_id, j.cursor FROM replan_job j
           WHERE j.state = 'running' AND j.created_at < created_before
           ORDER BY j.created_at LIMIT max_rows
        $$
    """,
}


def upgrade() -> None:
    functions.create(FUNCTIONS)


def downgrade() -> None:
    functions.drop(FUNCTIONS)
