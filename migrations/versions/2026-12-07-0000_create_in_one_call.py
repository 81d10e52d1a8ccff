"""a create in one call: the caller's confirmation, the push and the new item server-side

Three functions, each what Python did in several round trips:

`escalator_principal(account, user, epoch)`: pins the transaction to the account and
confirms the token's user as the database knows them now (active, not deleted, the token's
epoch). It answers the user's role, or why the token is refused ('inactive', 'revoked').
Every authenticated request opens with it, where it used to take two statements.

`escalator_publish(account, events)`: the push outbox's write. The account's ordering lock,
then the rows in the events' order (their ids drawn after the lock is held) and a NOTIFY per
row inserted. A duplicate `dedup_key` inserts nothing and notifies nothing. PL/pgSQL, as
the others: its plans are kept per connection (a SQL function's are made on every call).

`escalator_create_item(...)`: a new task or handoff, whole. It confirms the caller and their
role, reads the policy (the type's newest on its calendar's newest version, or the one the
caller pinned), checks the assignee, inserts the item once per idempotency key, writes its
audit row and publishes its event. A refusal writes nothing and says why as `outcome`;
`replayed` and `key_reused` return the item the key made first. The values are Python's
(`domain.items`): the function decides only what needs the database.

All three run as their caller, so row-level security applies under the tenant they pin.

Revision ID: a2b3c4d5e6f7
Revises: f1a2b3c4d5e6
Create Date: 2026-12-07 00:00:00
"""

from collections.abc import Sequence

from migrations import functions

revision: str = "a2b3c4d5e6f7"
down_revision: str | None = "f1a2b3c4d5e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER_CLASS = 7202  # domain.push.ORDER_CLASS
CHANNEL = "escalator_push"  # domain.push.CHANNEL
OUTCOME = "RETURN QUERY SELECT {}::text, v_item, v_policy, v_version, v_name; RETURN;"
FUNCTIONS = {
    "escalator_principal(p_account uuid, p_user uuid, p_epoch integer)": """
        RETURNS TABLE (role text, refusal text)
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        DECLARE
          v_user app_user;
        BEGIN
          PERFORM set_config('app.account_id', p_account::text, true);
          SELECT * INTO v_user FROM app_user u WHERE u.id = p_user AND u.account_id = p_account;
          IF NOT FOUND OR NOT v_user.is_active OR v_user.deleted_at IS NOT NULL THEN
            RETURN QUERY SELECT NULL::text, 'inactive'::text;
          ELSIF v_user.token_epoch <> p_epoch THEN
            RETURN QUERY SELECT NULL::text, 'revoked'::text;
          ELSE
            RETURN QUERY SELECT v_user.role::text, NULL::text;
          END IF;
        END
        $$
    """,
    "escalator_publish(p_account uuid, p_events jsonb)": f"""
        RETURNS bigint
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        DECLARE
          v_inserted bigint;
        BEGIN
          PERFORM pg_advisory_xact_lock({ORDER_CLASS}, hashtext(p_account::text));
          WITH inserted AS (
            INSERT INTO push_event (account_id, item_id, kind, payload, dedup_key)
            SELECT p_account, (e.event->>'item_id')::uuid, e.event->>'kind',
                   e.event->'payload', e.event->>'dedup_key'
              FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e (event, n)
             ORDER BY e.n
            ON CONFLICT (dedup_key) DO NOTHING
            RETURNING id
          )
          SELECT count(*) INTO v_inserted FROM inserted, LATERAL (
            SELECT pg_notify('{CHANNEL}',
                             json_build_object('id', inserted.id,
                                               'account_id', p_account::text)::text)
          ) AS notified;
          RETURN v_inserted;
        END
        $$
    """,
    (
        "escalator_create_item(p_account uuid, p_actor uuid, p_epoch integer, p_roles text[], "
        "p_item jsonb, p_policy uuid, p_version uuid, p_audit jsonb, p_event jsonb)"
    ): f"""
        RETURNS TABLE (outcome text, made item, policy sla_policy,
                       version business_calendar_version, assignee_name text)
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        DECLARE
          v_role text;
          v_refusal text;
          v_new item := jsonb_populate_record(NULL::item, p_item);
          v_item item;
          v_policy sla_policy;
          v_version business_calendar_version;
          v_name text;
        BEGIN
          SELECT c.role, c.refusal INTO v_role, v_refusal
            FROM escalator_principal(p_account, p_actor, p_epoch) c;
          IF v_refusal IS NOT NULL THEN {OUTCOME.format("v_refusal")} END IF;
          IF NOT v_role = ANY (p_roles) THEN {OUTCOME.format("'forbidden'")} END IF;

          -- The policy: the caller's pin (a handoff plans its due on it first), or the
          -- type's newest version on the newest version of its calendar.
          IF p_policy IS NULL THEN
            SELECT * INTO v_policy FROM sla_policy p
             WHERE p.account_id = p_account AND p.item_type = v_new.item_type
             ORDER BY p.version DESC LIMIT 1;
            IF NOT FOUND THEN {OUTCOME.format("'unknown_type'")} END IF;
            SELECT v.* INTO v_version
              FROM business_calendar c
              JOIN business_calendar_version v ON v.calendar_id = c.id AND v.version = c.version
             WHERE c.id = v_policy.calendar_id AND c.account_id = p_account;
          ELSE
            SELECT * INTO v_policy FROM sla_policy p
             WHERE p.id = p_policy AND p.account_id = p_account;
            SELECT * INTO v_version FROM business_calendar_version v
             WHERE v.id = p_version AND v.account_id = p_account;
          END IF;
          -- (an ORM None is JSON null here, as in every policy a task type has)
          IF v_new.kind = 'task' AND v_policy.response_target <> 'null'::jsonb THEN
            {OUTCOME.format("'handoff_type'")}
          END IF;
          IF v_new.assignee_id IS NOT NULL THEN
            SELECT u.name INTO v_name FROM app_user u
             WHERE u.id = v_new.assignee_id AND u.account_id = p_account
               AND u.is_active AND u.deleted_at IS NULL AND coalesce(u.email, '') <> '';
            IF NOT FOUND THEN {OUTCOME.format("'unknown_assignee'")} END IF;
          END IF;

          INSERT INTO item (id, account_id, kind, item_type, title, assignee_id, creator_id,
                            due_at, state, policy_id, calendar_version_id, paused_at, pauses,
                            intent, engineer_notes, priority, session_ref, snapshot,
                            idempotency_key, idempotency_scope, request_fingerprint)
          VALUES (v_new.id, p_account, v_new.kind, v_new.item_type, v_new.title,
                  v_new.assignee_id, p_actor, v_new.due_at, v_new.state, v_policy.id,
                  v_version.id, v_new.paused_at, v_new.pauses, v_new.intent,
                  v_new.engineer_notes, v_new.priority, v_new.session_ref, v_new.snapshot,
                  v_new.idempotency_key, v_new.idempotency_scope, v_new.request_fingerprint)
          ON CONFLICT (account_id, idempotency_scope, idempotency_key) DO NOTHING
          RETURNING * INTO v_item;

          IF NOT FOUND THEN  -- the key made an item before: that one, on its own pins
            SELECT * INTO v_item FROM item i
             WHERE i.account_id = p_account AND i.idempotency_scope = v_new.idempotency_scope
               AND i.idempotency_key = v_new.idempotency_key;
            IF v_item.request_fingerprint IS DISTINCT FROM v_new.request_fingerprint
               AND v_item.request_fingerprint IS NOT NULL THEN
              {OUTCOME.format("'key_reused'")}
            END IF;
            SELECT * INTO v_policy FROM sla_policy p WHERE p.id = v_item.policy_id;
            SELECT * INTO v_version FROM business_calendar_version v
             WHERE v.id = v_item.calendar_version_id;
            {OUTCOME.format("'replayed'")}
          END IF;

          INSERT INTO audit_event (account_id, item_id, actor_id, action, data, idempotency_key)
          VALUES (p_account, v_item.id, p_actor, p_audit->>'action', p_audit->'data',
                  p_audit->>'key')
          ON CONFLICT (idempotency_key) DO NOTHING;
          PERFORM escalator_publish(p_account, jsonb_build_array(p_event));
          {OUTCOME.format("'created'")}
        END
        $$
    """,
}


def upgrade() -> None:
    functions.create(FUNCTIONS)


def downgrade() -> None:
    functions.drop(FUNCTIONS)
