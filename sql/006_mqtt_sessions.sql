-- SPDX-License-Identifier: Apache-2.0
-- oncebridge schema, migration 6: the MQTT sessions each broker file used.
--
-- An MQTT broker keeps a persistent session, its subscriptions and the
-- messages queued for it, under a client ID until the session expires.
-- With "workers" > 1 each worker has its own session (client_id-N) in a
-- shared subscription group; when the number of workers goes down, or a
-- setup moves from one session to several, the sessions no longer used
-- would keep their share of the messages, or a copy of each, unread until
-- they expire. Every worker records its session here; worker 0 of the
-- broker then connects once to each recorded session that the current
-- configuration does not use (and to the bare client_id when workers > 1),
-- applies what it holds, unsubscribes its filters, ends it and deletes its
-- row (adapters/mqtt_retire.c).

\set ON_ERROR_STOP on
BEGIN;

SELECT EXISTS (SELECT 1 FROM oncebridge.schema_migrations WHERE version = 6) AS already_applied \gset
\if :already_applied
\echo 'migration 6 already applied'
\else

CREATE TABLE oncebridge.mqtt_sessions (
    broker     text NOT NULL,        -- the broker file's "name"
    family     text NOT NULL,        -- its "client_id"
    client_id  text NOT NULL,        -- the session: client_id, or client_id-N of worker N
    filters    text[] NOT NULL,      -- what the session subscribed, for the unsubscribe
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, client_id)
);
COMMENT ON TABLE oncebridge.mqtt_sessions IS
    'MQTT sessions oncebridge''s workers used, so that sessions a later configuration no longer uses are drained and ended';

INSERT INTO oncebridge.schema_migrations (version, description)
VALUES (6, 'mqtt_sessions: the MQTT sessions in use, to retire those a configuration no longer uses');

\endif
COMMIT;
