"""sign-in requests are durable: the worker sends their mails, the reconciler restarts them

A sign-in request looked its address up in the API and started one workflow per matching
user after answering; had Temporal been down, the request was lost. Now every request, an
address with accounts or not, writes the same one row and nothing else: the address (kept
only until the worker has handled it, then cleared) beside its SHA-256, which the rate limit
counts. One `SignInMailWorkflow` per request (`sign-in-<row id>`) looks the address up and
sends; the reconciler starts it for a row nobody handled.

Definer functions (the app role has no other access to the table):
- `escalator_sign_in_request(address, most, span)`: the rate limit and the row; its id, or
  NULL when the address has had `most` links within `span`;
- `escalator_sign_in_recipients(request)`: the active users the request's address belongs
  to (none once handled);
- `escalator_sign_in_handled(request)`: clears the address, stamps `handled_at`;
- `escalator_sign_ins_to_start(before, after, max)`: the requests nobody handled.

Revision ID: c2d3e4f5a6b7
Revises: b1c2d3e4f5a6
Create Date: 2026-12-06 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from config import Settings

revision: str = "c2d3e4f5a6b7"
down_revision: str | None = "b1c2d3e4f5a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ADMIT = "escalator_sign_in_admit(address_hash text, most integer, span interval)"
FUNCTIONS = {
    "escalator_sign_in_request(p_address text, most integer, span interval)": """
        RETURNS bigint
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        DECLARE
          digest text := encode(sha256(convert_to(p_address, 'UTF8')), 'hex');
          recent integer;
          made bigint;
        BEGIN
          PERFORM pg_advisory_xact_lock(7203, hashtext(digest));
          DELETE FROM sign_in_request WHERE requested_at < now() - span;
          SELECT count(*) INTO recent FROM sign_in_request r WHERE r.address_hash = digest;
          IF recent >= most THEN
            RETURN NULL;
          END IF;
          INSERT INTO sign_in_request (address_hash, address) VALUES (digest, p_address)
          RETURNING id INTO made;
          RETURN made;
        END
        $$
    """,
    "escalator_sign_in_recipients(request bigint)": """
        RETURNS TABLE (user_id uuid, account_id uuid, requested_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT u.id, u.account_id, r.requested_at FROM sign_in_request r
            JOIN app_user u ON lower(u.email) = lower(r.address)
            JOIN account a ON a.id = u.account_id
           WHERE r.id = request AND r.handled_at IS NULL
             AND u.is_active AND u.deleted_at IS NULL
           ORDER BY a.name LIMIT 10
        $$
    """,
    "escalator_sign_in_handled(request bigint)": """
        RETURNS void
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          UPDATE sign_in_request SET address = NULL, handled_at = coalesce(handled_at, now())
           WHERE id = request
        $$
    """,
    "escalator_sign_ins_to_start(before timestamptz, since timestamptz, max_rows integer)": """
        RETURNS TABLE (id bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
          SELECT r.id FROM sign_in_request r
           WHERE r.handled_at IS NULL AND r.address IS NOT NULL
             AND r.requested_at < before AND r.requested_at >= since
           ORDER BY r.requested_at LIMIT max_rows
        $$
    """,
}


def upgrade() -> None:
    op.add_column("sign_in_request", sa.Column("address", sa.String(320), nullable=True))
    op.add_column(
        "sign_in_request", sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(f"DROP FUNCTION {OLD_ADMIT}")
    role = Settings().db_app_role
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    op.drop_column("sign_in_request", "handled_at")
    op.drop_column("sign_in_request", "address")
    # The earlier revision's function, from the earlier revision's own module.
    context.script.get_revision("b1c2d3e4f5a6").module.create_admit()
