"""bounded tables: push events and used links are pruned, and a replay page is an index
range

`push_event` and `used_link` only grew: `push_retention_days` filtered the replay but
deleted nothing, and a used sign-in or claim link's row stayed long after the link itself
had expired. `escalator_prune(now, push_before, max_rows)` deletes one batch of each (the
reconciler calls it every round, batch after batch, for a bounded time):

- push events created before `push_before` (the retention window), oldest first;
- used links whose link can no longer be valid: used before `now` minus the longest life
  of a link of their purpose (a sign-in link 15 minutes, an address link 24 hours, a claim
  link 7 days, a stream ticket 60 seconds).

And `push_event (account_id, id)` replaces the index on `account_id` alone: a resuming
stream's page (`account_id = ? AND id > ? ORDER BY id LIMIT 200`) is then a range read,
not a sort of the account's whole history for every page.

Revision ID: d9e0f1a2b3c4
Revises: c8d9e0f1a2b3
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "d9e0f1a2b3c4"
down_revision: str | None = "c8d9e0f1a2b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRUNE = "escalator_prune(now timestamptz, push_before timestamptz, max_rows integer)"


def upgrade() -> None:
    op.create_index("ix_push_event_account_id_id", "push_event", ["account_id", "id"])
    op.drop_index("ix_push_event_account_id", table_name="push_event")
    op.create_index("ix_used_link_used_at", "used_link", ["used_at"])
    op.execute(
        f"""
        CREATE FUNCTION {PRUNE}
        RETURNS TABLE (push_events bigint, used_links bigint)
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          WITH events AS (
            DELETE FROM push_event WHERE id IN (
              SELECT id FROM push_event WHERE created_at < push_before
               ORDER BY id LIMIT max_rows)
            RETURNING 1
          ), links AS (
            DELETE FROM used_link WHERE jti IN (
              SELECT jti FROM used_link
               WHERE used_at < now - CASE purpose
                       WHEN 'sign_in' THEN interval '15 minutes'
                       WHEN 'address' THEN interval '24 hours'
                       WHEN 'stream_ticket' THEN interval '60 seconds'
                       ELSE interval '7 days' END
               ORDER BY used_at LIMIT max_rows)
            RETURNING 1
          )
          SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM links)
        $$
        """
    )
    role = Settings().db_app_role
    op.execute(f"REVOKE ALL ON FUNCTION {PRUNE} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {PRUNE} TO "{role}"')


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {PRUNE}")
    op.drop_index("ix_used_link_used_at", table_name="used_link")
    op.create_index("ix_push_event_account_id", "push_event", ["account_id"])
    op.drop_index("ix_push_event_account_id_id", table_name="push_event")
