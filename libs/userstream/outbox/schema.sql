-- userstream outbox, schema version 1 (CONTRACT §7). PostgreSQL 13 or newer.
--
-- Idempotent: running it again, also over an older version, is safe. Every
-- statement either creates what is missing or brings what exists to this
-- version; a database already at a newer version is refused, not downgraded.
-- `userstream outbox sql` prints this file; `userstream outbox install` runs it.

BEGIN;

-- Two installs at once (two relays starting, a deploy and a migration) wait for each other.
SELECT pg_advisory_xact_lock(hashtext('userstream.outbox.install'));

CREATE SCHEMA IF NOT EXISTS userstream;

-- The installed version, and the identity of this outbox in the log: a relay's
-- messages carry it (in their Nats-Msg-Id), so that two databases relaying into
-- one log never mistake each other's rows.
CREATE TABLE IF NOT EXISTS userstream.outbox_schema (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL,
    outbox_id uuid NOT NULL DEFAULT gen_random_uuid(),
    installed_at timestamptz NOT NULL DEFAULT now(),
    upgraded_at timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF (SELECT version FROM userstream.outbox_schema) > 1 THEN
        RAISE EXCEPTION 'userstream outbox: this database is at schema version %, newer than this release (1)',
            (SELECT version FROM userstream.outbox_schema);
    END IF;
END
$$;

-- What applications insert. The columns of CONTRACT §7, plus two the relay owns:
-- `id` (insertion order, and the row's identity in the log) and `xid`, the
-- inserting transaction (rows are relayed in (xid, id) order: see docs/outbox.md).
CREATE TABLE IF NOT EXISTS userstream.outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type text NOT NULL,
    organization_id text,
    entity_id text,
    user_id text,
    role text,
    data jsonb,
    changed_keys text[],
    transaction_id text,
    source_id text,
    changed_field text,
    idempotency_key text,
    public boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS outbox_relay_order ON userstream.outbox (xid, id);

-- Rows the relay refused (CONTRACT §7.3): every column of the row, plus why and when.
CREATE TABLE IF NOT EXISTS userstream.outbox_rejected (
    id bigint PRIMARY KEY,
    xid xid8 NOT NULL,
    type text NOT NULL,
    organization_id text,
    entity_id text,
    user_id text,
    role text,
    data jsonb,
    changed_keys text[],
    transaction_id text,
    source_id text,
    changed_field text,
    idempotency_key text,
    public boolean NOT NULL,
    created_at timestamptz NOT NULL,
    error text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);

-- The active relay's progress, written only by the relay holding the advisory lock.
-- `last_xid`: the transaction of the last row recorded (its remaining rows go first).
-- `inflight_*`: the batch being published (its row ids, the log's last sequence before
-- it, when it was sent), so that a relay starting after a crash can look for exactly
-- those rows in the log instead of trusting the duplicate window.
CREATE TABLE IF NOT EXISTS userstream.relay_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_xid xid8,
    inflight_ids bigint[],
    inflight_after_seq bigint,
    inflight_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO userstream.relay_state (singleton) VALUES (true) ON CONFLICT (singleton) DO NOTHING;

-- The named, defaulted way to insert one row:
--   SELECT userstream.record(type => 'page.updated', organization_id => 'acme', entity_id => 'p1');
CREATE OR REPLACE FUNCTION userstream.record(
    type text,
    organization_id text DEFAULT NULL,
    entity_id text DEFAULT NULL,
    user_id text DEFAULT NULL,
    role text DEFAULT NULL,
    data jsonb DEFAULT NULL,
    changed_keys text[] DEFAULT NULL,
    transaction_id text DEFAULT NULL,
    source_id text DEFAULT NULL,
    changed_field text DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    public boolean DEFAULT false
) RETURNS bigint
LANGUAGE sql
AS $$
    INSERT INTO userstream.outbox (
        type, organization_id, entity_id, user_id, role, data, changed_keys,
        transaction_id, source_id, changed_field, idempotency_key, public
    ) VALUES (
        record.type, record.organization_id, record.entity_id, record.user_id, record.role, record.data,
        record.changed_keys, record.transaction_id, record.source_id, record.changed_field,
        record.idempotency_key, coalesce(record.public, false)
    )
    RETURNING id
$$;

INSERT INTO userstream.outbox_schema (version) VALUES (1)
ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, upgraded_at = now()
WHERE userstream.outbox_schema.version < excluded.version;

COMMIT;
