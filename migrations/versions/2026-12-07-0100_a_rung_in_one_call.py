"""a rung in one call: the fire, the recipients, the mails' attempt and the pushes server-side;
a mail's send guard in two calls around its SMTP commands

`escalator_fire_rung(...)`: a rung's whole transaction, one statement in autocommit. It pins
the account, stamps the rung on the open item (or only locks it: a handoff's fan-out, a
repeat), writes the audit rows in order (the falling due's first), resolves the chain,
audits an empty chain's end, writes the delivery rows (in their attempt state when the
caller sends them itself), and publishes the pushes with the item's summary and the names
mailed. An item that is not open writes nothing: the call answers its state. The values
are Python's (`activities.rungs`): keys, audit data, event kinds. The function decides what
needs the database.

The rules it needs, one implementation each, used from Python too:
- `escalator_recipients(...)`: a chain's first resolver with valid people (active, not
  deleted, with an address), ordered by address (`domain.recipients.resolve`);
- `escalator_quiet_until(at, tz, start, end)`: the end of the quiet window `at` falls in;
  a wall time that repeats (a clock turned back) ends at its first occurrence, one that is
  skipped moves forward;
- `escalator_attempt(...)`: the recipients' rows into their attempt state (final rows kept,
  quiet hours `deferred`, the rest `sending` with attempts + 1 and the note of an unknown
  earlier outcome), in recipient order (`domain.deliveries.attempt`);
- `escalator_summary(item)`: the item as every push event carries it (`domain.push.summary`
  builds the same in Python; a test holds them equal).

`escalator_send_hold(item, account)`: pins the call to the account, takes the item's send
guard (the shared advisory lock every transition takes exclusively) at session level, and
reads the item's state under a snapshot taken after it. An item that is not open lets the
guard go at once. The mail's SMTP commands run while the guard is held, outside any
transaction: no BEGIN and no COMMIT of its own.

`escalator_send_sent(...)`: the mail's `sent`, as `domain.deliveries.record` applies it (on
the row unless it is `sent` already, keeping the note of an unknown earlier outcome), then
lets the guard go. A claim waiting for the guard meets the row's lock and sees `sent`.

A call that fails leaves its guard as it was: the caller then closes the connection, which
lets go of every session lock it held (`domain.send_guard.held`). No exception block: it
would cost a subtransaction on every mail.

`escalator_send_guard`, the transaction-scoped guard these replace, is dropped.

Revision ID: b3c4d5e6f7a8
Revises: a2b3c4d5e6f7
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence
from importlib import import_module

from migrations import functions

revision: str = "b3c4d5e6f7a8"
down_revision: str | None = "a2b3c4d5e6f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD_CLASS = 7201  # domain.send_guard.GUARD_CLASS
GUARD = f"{GUARD_CLASS}, hashtext(p_item::text)"
FUNCTIONS = {
    "escalator_iso(p_at timestamptz)": """
        RETURNS text
        LANGUAGE sql STABLE SET search_path = public, pg_temp
        AS $$
          SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                 || CASE WHEN extract(microseconds FROM p_at)::bigint % 1000000 <> 0
                         THEN to_char(p_at AT TIME ZONE 'UTC', '.US') ELSE '' END
                 || '+00:00'
        $$
    """,
    "escalator_summary(i item)": """
        RETURNS jsonb
        LANGUAGE sql STABLE SET search_path = public, pg_temp
        AS $$
          SELECT jsonb_build_object('item', jsonb_build_object(
            'id', i.id::text, 'kind', i.kind, 'type', i.item_type, 'title', i.title,
            'state', i.state, 'intent', i.intent, 'priority', i.priority,
            'due_at', escalator_iso(i.due_at), 'claimed_by', i.claimed_by::text))
        $$
    """,
    "escalator_quiet_until(p_at timestamptz, p_tz text, p_start time, p_end time)": """
        RETURNS timestamptz
        LANGUAGE plpgsql STABLE SET search_path = public, pg_temp
        AS $$
        DECLARE
          v_local timestamp := p_at AT TIME ZONE p_tz;
          v_day date := v_local::date;
          v_end timestamp;
          v_until timestamptz;
        BEGIN
          IF p_start IS NULL OR p_end IS NULL OR p_start = p_end THEN
            RETURN NULL;
          ELSIF p_start < p_end THEN
            IF NOT (v_local::time >= p_start AND v_local::time < p_end) THEN
              RETURN NULL;
            END IF;
          ELSIF v_local::time >= p_start THEN  -- wraps midnight: ends tomorrow
            v_day := v_day + 1;
          ELSIF v_local::time >= p_end THEN
            RETURN NULL;
          END IF;
          v_end := v_day + p_end;
          v_until := v_end AT TIME ZONE p_tz;  -- a repeated wall time: Postgres takes the later
          IF (v_until - interval '1 hour') AT TIME ZONE p_tz = v_end THEN
            v_until := v_until - interval '1 hour';
          END IF;
          RETURN v_until;
        END
        $$
    """,
    (
        "escalator_recipients(p_account uuid, p_assignee uuid, p_claimer uuid, p_chain text[],"
        " p_actor uuid)"
    ): """
        RETURNS TABLE (rank integer, id uuid, email text, name text, timezone text,
                       quiet_start time, quiet_end time)
        LANGUAGE plpgsql STABLE SET search_path = public, pg_temp
        AS $$
        #variable_conflict use_column
        DECLARE
          v_resolver text;
          v_rank integer := 0;
        BEGIN
          FOREACH v_resolver IN ARRAY coalesce(p_chain, '{}') LOOP
            IF NOT (v_resolver IN ('assignee', 'claimer', 'assignee_manager')
                    OR v_resolver LIKE 'role:%' OR v_resolver LIKE 'account_roles:%') THEN
              RAISE EXCEPTION 'unknown resolver %', quote_literal(v_resolver)
                USING ERRCODE = 'invalid_parameter_value';
            END IF;
            RETURN QUERY
              SELECT v_rank, u.id, u.email::text, u.name::text, u.timezone::text,
                     u.quiet_start, u.quiet_end
                FROM app_user u
               WHERE u.account_id = p_account AND u.is_active AND u.deleted_at IS NULL
                 AND u.email IS NOT NULL AND u.email <> ''
                 AND CASE
                   WHEN v_resolver = 'assignee' THEN u.id = p_assignee
                   WHEN v_resolver = 'claimer' THEN u.id = p_claimer
                   WHEN v_resolver = 'assignee_manager' THEN u.id = (
                     SELECT a.manager_id FROM app_user a
                      WHERE a.id = p_assignee AND a.account_id = p_account)
                   WHEN v_resolver LIKE 'role:%' THEN u.id IN (
                     SELECT m.user_id FROM role_member m JOIN role r ON r.id = m.role_id
                      WHERE r.account_id = p_account AND m.account_id = p_account
                        AND r.key = substr(v_resolver, 6))
                   ELSE u.role = ANY (string_to_array(substr(v_resolver, 15), ','))
                        AND u.id IS DISTINCT FROM p_actor  -- never told of their own escalation
                 END
               ORDER BY u.email COLLATE "C", u.id;  -- as Python sorts them
            IF FOUND THEN
              RETURN;
            END IF;
            v_rank := v_rank + 1;
          END LOOP;
        END
        $$
    """,
    (
        "escalator_attempt(p_account uuid, p_item uuid, p_event text, p_at timestamptz,"
        " p_critical boolean, p_wanted jsonb, p_unknown text)"
    ): """
        RETURNS SETOF delivery
        LANGUAGE sql VOLATILE SET search_path = public, pg_temp
        AS $$
          INSERT INTO delivery AS d (id, account_id, item_id, recipient_id, event_key, channel,
                                     resolver_rank, status, attempts, deferred_until)
          SELECT gen_random_uuid(), p_account, p_item, w.id, p_event, 'email', w.rank,
                 CASE WHEN w.until IS NULL THEN 'sending' ELSE 'deferred' END,
                 CASE WHEN w.until IS NULL THEN 1 ELSE 0 END, w.until
            FROM (SELECT DISTINCT ON ((x->>'id')::uuid) (x->>'id')::uuid AS id,
                         (x->>'rank')::smallint AS rank,
                         CASE WHEN NOT p_critical THEN escalator_quiet_until(
                           p_at, x->>'timezone', (x->>'quiet_start')::time,
                           (x->>'quiet_end')::time) END AS until
                    FROM jsonb_array_elements(p_wanted) AS x
                   ORDER BY (x->>'id')::uuid) AS w
           ORDER BY w.id
          ON CONFLICT (recipient_id, item_id, event_key, channel) DO UPDATE SET
            status = CASE WHEN d.status IN ('sent', 'failed') THEN d.status
                          ELSE excluded.status END,
            attempts = CASE WHEN d.status IN ('sent', 'failed') THEN d.attempts
                            WHEN excluded.status = 'sending' THEN d.attempts + 1
                            ELSE d.attempts END,
            last_error = CASE WHEN d.status = 'sending' AND excluded.status = 'sending'
                              THEN p_unknown ELSE d.last_error END,
            deferred_until = CASE
              WHEN d.status NOT IN ('sent', 'failed') AND excluded.status = 'deferred'
              THEN excluded.deferred_until ELSE d.deferred_until END,
            updated_at = now()
          RETURNING d.*
        $$
    """,
    (
        "escalator_fire_rung(p_account uuid, p_item uuid, p_at timestamptz, p_stamp text,"
        " p_audits jsonb, p_chain text[], p_actor uuid, p_undeliverable jsonb,"
        " p_email boolean, p_event text, p_attempt integer, p_critical boolean, p_unknown text,"
        " p_events jsonb)"
    ): """
        RETURNS TABLE (recorded boolean, state text, claimed_by uuid, id uuid, item_type text,
                       kind text, title text, due_at timestamptz, engineer_notes text,
                       priority text, rungs jsonb, tz text, assignee_name text,
                       creator_name text, recipients jsonb, attempted jsonb)
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        #variable_conflict use_column
        DECLARE
          v item;
          v_found jsonb;
          v_count integer;
          v_attempted jsonb;
          v_names jsonb;
          v_events jsonb;
        BEGIN
          PERFORM set_config('app.account_id', p_account::text, true);
          IF p_stamp IS NULL THEN  -- a handoff's fan-out or a repeat: lock, stamp nothing
            SELECT * INTO v FROM item i
             WHERE i.id = p_item AND i.account_id = p_account AND i.state = 'open'
               FOR UPDATE;
          ELSE  -- the first stamp is kept; the planned instant of a fired rung is its stamp
            EXECUTE format(
              'UPDATE item SET %1$I = coalesce(%1$I, $1),'
              ' %2$I = CASE WHEN %1$I IS NULL THEN $1 ELSE %2$I END'
              ' WHERE id = $2 AND account_id = $3 AND state = ''open'' RETURNING *',
              p_stamp || '_fired_at', p_stamp || '_at')
            INTO v USING p_at, p_item, p_account;
          END IF;
          IF v.id IS NULL THEN  -- not open (or no such item: no row): nothing written
            RETURN QUERY
              SELECT false, i.state::text, i.claimed_by, i.id, NULL::text, NULL::text,
                     NULL::text, NULL::timestamptz, NULL::text, NULL::text, NULL::jsonb,
                     NULL::text, NULL::text, NULL::text, NULL::jsonb, NULL::jsonb
                FROM item i WHERE i.id = p_item AND i.account_id = p_account;
            RETURN;
          END IF;

          INSERT INTO audit_event (account_id, item_id, action, tier, data, idempotency_key)
          SELECT p_account, p_item, a.audit->>'action', (a.audit->>'tier')::smallint,
                 a.audit->'data', a.audit->>'key'
            FROM jsonb_array_elements(p_audits) WITH ORDINALITY AS a (audit, n)
           ORDER BY a.n
          ON CONFLICT (idempotency_key) DO NOTHING;

          SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.email COLLATE "C", r.id), '[]'),
                 count(*)
            INTO v_found, v_count
            FROM escalator_recipients(p_account, v.assignee_id, v.claimed_by, p_chain,
                                      p_actor) AS r;
          IF v_count = 0 THEN  -- never silent: an empty chain end is on the record
            INSERT INTO audit_event (account_id, item_id, action, tier, data, idempotency_key)
            VALUES (p_account, p_item, p_undeliverable->>'action',
                    (p_undeliverable->>'tier')::smallint, p_undeliverable->'data',
                    p_undeliverable->>'key')
            ON CONFLICT (idempotency_key) DO NOTHING;
          ELSIF p_email AND v_count <= coalesce(p_attempt, -1) THEN  -- the caller sends
            SELECT jsonb_agg(jsonb_build_object(
                     'recipient_id', d.recipient_id, 'status', d.status,
                     'message_id', d.message_id, 'sent_at', d.sent_at,
                     'last_error', d.last_error, 'deferred_until', d.deferred_until))
              INTO v_attempted
              FROM escalator_attempt(p_account, p_item, p_event, p_at, p_critical, v_found,
                                     p_unknown) AS d;
          ELSIF p_email THEN  -- `send_emails` attempts them
            INSERT INTO delivery (id, account_id, item_id, recipient_id, event_key, channel,
                                  resolver_rank)
            SELECT gen_random_uuid(), p_account, p_item, (f->>'id')::uuid, p_event, 'email',
                   (f->>'rank')::smallint
              FROM jsonb_array_elements(v_found) AS f
            ON CONFLICT DO NOTHING;
          END IF;

          SELECT coalesce(jsonb_agg(f.person->'name' ORDER BY f.n), '[]') INTO v_names
            FROM jsonb_array_elements(v_found) WITH ORDINALITY AS f (person, n);
          SELECT jsonb_agg(jsonb_build_object(
                   'item_id', p_item, 'kind', e.event->>'kind',
                   'dedup_key', e.event->>'dedup_key',
                   'payload', escalator_summary(v) || (e.event->'data')
                     || CASE WHEN (e.event->>'names')::boolean
                             THEN jsonb_build_object('recipients', v_names) ELSE '{}' END)
                 ORDER BY e.n)
            INTO v_events
            FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e (event, n);
          PERFORM escalator_publish(p_account, coalesce(v_events, '[]'));

          RETURN QUERY
            SELECT true, v.state::text, v.claimed_by, v.id, v.item_type::text, v.kind::text,
                   v.title::text, v.due_at, v.engineer_notes, v.priority::text, p.rungs,
                   c.tz::text, a.name::text, m.name::text, v_found, v_attempted
              FROM sla_policy p
              JOIN business_calendar_version c ON c.id = v.calendar_version_id
              LEFT JOIN app_user a ON a.id = v.assignee_id
              LEFT JOIN app_user m ON m.id = v.creator_id
             WHERE p.id = v.policy_id;
        END
        $$
    """,
    "escalator_send_hold(p_item uuid, p_account uuid)": f"""
        RETURNS text
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        DECLARE
          v_state text;
        BEGIN
          PERFORM set_config('app.account_id', p_account::text, true);
          PERFORM pg_advisory_lock_shared({GUARD});
          SELECT state INTO v_state FROM item WHERE id = p_item AND account_id = p_account;
          IF v_state IS DISTINCT FROM 'open' THEN
            PERFORM pg_advisory_unlock_shared({GUARD});
          END IF;
          RETURN v_state;
        END
        $$
    """,
    (
        "escalator_send_sent(p_item uuid, p_account uuid, p_recipient uuid, p_event text,"
        " p_sent_at timestamptz, p_message_id text, p_unknown text)"
    ): f"""
        RETURNS void
        LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp
        AS $$
        BEGIN
          PERFORM set_config('app.account_id', p_account::text, true);
          UPDATE delivery
             SET status = 'sent', sent_at = p_sent_at, message_id = p_message_id,
                 last_error = CASE WHEN last_error = p_unknown THEN last_error END,
                 updated_at = now()
           WHERE account_id = p_account AND item_id = p_item AND recipient_id = p_recipient
             AND event_key = p_event AND channel = 'email' AND status <> 'sent';
          PERFORM pg_advisory_unlock_shared({GUARD});
        END
        $$
    """,
}
# The transaction-scoped guard of revision f1a2b3c4d5e6, dropped here, made again on the way
# down from that revision's own text.
_GUARDED = import_module("migrations.versions.2026-12-06-2300_send_guard_and_replan_starts")
OLD_GUARD = {k: v for k, v in _GUARDED.FUNCTIONS.items() if k.startswith("escalator_send_guard(")}


def upgrade() -> None:
    functions.create(FUNCTIONS)
    functions.drop(OLD_GUARD)


def downgrade() -> None:
    functions.create(OLD_GUARD)
    functions.drop(FUNCTIONS)
