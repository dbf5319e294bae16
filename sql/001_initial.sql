-- SPDX-License-Identifier: Apache-2.0
-- oncebridge schema, migration 1: dedupe keys and dead letters.
--
-- Apply with psql as a role that may create schemas (see README, "Schema"):
--   psql -v ON_ERROR_STOP=1 -d DBNAME -f 001_initial.sql
-- or run every migration in order with oncebridge-migrate. Each file runs in
-- one transaction and does nothing when it was applied before.

\set ON_ERROR_STOP on
BEGIN;

CREATE SCHEMA IF NOT EXISTS oncebridge;

CREATE TABLE IF NOT EXISTS oncebridge.schema_migrations (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

SELECT EXISTS (SELECT 1 FROM oncebridge.schema_migrations WHERE version = 1) AS already_applied \gset
\if :already_applied
\echo 'migration 1 already applied'
\else

-- One row per (consumer, event ID) whose effect has been committed. The
-- consumer is the route name, so two routes that consume the same event each
-- apply it once. The primary key is what makes a duplicate change nothing.
CREATE TABLE oncebridge.processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Messages that can never be applied as they are: invalid JSON, a missing
-- or invalid event ID, a payload over the limit, a data error raised by the
-- business SQL. They are kept whole (up to limits.max_payload) so that they
-- can be inspected and replayed after a fix.
CREATE TABLE oncebridge.dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    broker          text        NOT NULL,            -- broker connection name
    consumer        text,                            -- route name; NULL when no route matched
    event_id        text,                            -- NULL when missing or unusable
    source          text,                            -- AMQP queue or MQTT subscription
    exchange        text,                            -- AMQP exchange
    topic           text,                            -- AMQP routing key or MQTT topic
    properties      jsonb       NOT NULL DEFAULT '{}',  -- message properties and headers
    payload         bytea       NOT NULL,
    payload_size    integer     NOT NULL,            -- size before any truncation
    reason          text        NOT NULL,
    sqlstate        text,                            -- of the business SQL, when it failed
    error_detail    text,                            -- the database's message
    attempts        integer     NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz
);

CREATE INDEX dead_letters_consumer_idx ON oncebridge.dead_letters (consumer, created_at);
CREATE INDEX dead_letters_event_idx ON oncebridge.dead_letters (event_id) WHERE event_id IS NOT NULL;

INSERT INTO oncebridge.schema_migrations (version, description)
VALUES (1, 'processed_events and dead_letters');

\endif
COMMIT;
