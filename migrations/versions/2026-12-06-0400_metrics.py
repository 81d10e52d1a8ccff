"""metrics: the open-item count for /metrics, and the outbox row's age for the push hub

Two definer functions, like the hub's and the reconciler's (see app_login_role):
- `escalator_item_counts()`: items not yet ended, counted by state and highest tier fired,
  across accounts. Only counts leave the database.
- `escalator_push_after(after, max)` now also returns each row's `created_at`, from which
  the hub measures the outbox lag.

Revision ID: d42a6b8e1f07
Revises: c81f4e2a7d35
Create Date: 2026-12-06 04:00:00
"""

from collections.abc import Sequence

from alembic import op

from config import Settings

revision: str = "d42a6b8e1f07"
down_revision: str | None = "c81f4e2a7d35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = "escalator_item_counts()"
PUSH_AFTER = "escalator_push_after(after bigint, max_rows integer)"
_DEFINER = "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp"


def _push_after(with_created_at: bool) -> str:
    extra_type, extra = (
        (", created_at timestamptz", ", p.created_at") if with_created_at else ("", "")
    )
    return f"""
        RETURNS TABLE (id bigint, account_id uuid, kind varchar, payload jsonb{extra_type})
        {_DEFINER}
        AS $$
          SELECT p.id, p.account_id, p.kind, p.payload{extra} FROM push_event p
           WHERE p.id > after ORDER BY p.id LIMIT max_rows
        $$
    """


def _create(signature: str, body: str) -> None:
    role = Settings().db_app_role
    op.execute(f"CREATE FUNCTION {signature} {body}")
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def upgrade() -> None:
    _create(
        COUNTS,
        f"""
        RETURNS TABLE (state varchar, tier integer, items bigint)
        {_DEFINER}
        AS $$
          SELECT i.state,
                 CASE WHEN i.escalate_2_fired_at IS NOT NULL THEN 2
                      WHEN i.escalate_1_fired_at IS NOT NULL THEN 1
                      WHEN i.remind_fired_at IS NOT NULL THEN 0 END,
                 count(*)
            FROM item i
           WHERE i.state IN ('open', 'paused', 'claimed')
           GROUP BY 1, 2
        $$
        """,
    )
    # A function's result type cannot be altered in place: dropped and made anew, in this
    # transaction, so the hub never finds it missing.
    op.execute(f"DROP FUNCTION {PUSH_AFTER}")
    _create(PUSH_AFTER, _push_after(with_created_at=True))


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {COUNTS}")
    op.execute(f"DROP FUNCTION {PUSH_AFTER}")
    _create(PUSH_AFTER, _push_after(with_created_at=False))
