-- SPDX-License-Identifier: Apache-2.0
-- oncebridge schema, migration 2: the transactional outbox.
--
-- Applications emit events inside their own transaction with
--   SELECT oncebridge.emit('rabbit-main', 'orders.created', '{"order": 42}');
-- and oncebridge's relay publishes them once the transaction has committed.

\set ON_ERROR_STOP on
BEGIN;

SELECT EXISTS (SELECT 1 FROM oncebridge.schema_migrations WHERE version = 2) AS already_applied \gset
\if :already_applied
\echo 'migration 2 already applied'
\else

-- One row per event to publish. id is the outbox order. event_id travels
-- with the message (AMQP message_id and header, MQTT 5 user property, MQTT
-- 3.1.1 payload envelope) so that consumers can deduplicate republished
-- copies.
CREATE TABLE oncebridge.outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text        NOT NULL DEFAULT gen_random_uuid()::text,
    destination  text        NOT NULL,          -- broker name in oncebridge's configuration
    topic        text        NOT NULL,          -- AMQP routing key or MQTT topic
    exchange     text,                          -- AMQP exchange; NULL: the destination's default
    payload      bytea       NOT NULL,
    content_type text,
    headers      jsonb       NOT NULL DEFAULT '{}',  -- AMQP headers / MQTT 5 user properties
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,                   -- set when the broker confirmed it
    attempts     integer     NOT NULL DEFAULT 0,
    CONSTRAINT outbox_event_id_length CHECK (length(event_id) BETWEEN 1 AND 200),
    CONSTRAINT outbox_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    -- an event ID is emitted to a destination once (until its row is pruned)
    CONSTRAINT outbox_destination_event_key UNIQUE (destination, event_id)
);

-- What the relay reads: unpublished rows of one destination, in order.
CREATE INDEX outbox_pending_idx ON oncebridge.outbox (destination, id) WHERE published_at IS NULL;
-- What pruning reads.
CREATE INDEX outbox_published_idx ON oncebridge.outbox (destination, published_at) WHERE published_at IS NOT NULL;

-- Wake the relay of the destination when a transaction that emitted commits.
CREATE FUNCTION oncebridge.outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oncebridge_outbox', NEW.destination);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON oncebridge.outbox
    FOR EACH ROW EXECUTE FUNCTION oncebridge.outbox_notify();

-- Emit an event in the caller's transaction, with a bytea payload. Returns
-- its event ID (minted here unless given). Emitting an event ID the
-- destination already holds does nothing and returns that ID, so a retried
-- or bridged event is emitted once.
CREATE FUNCTION oncebridge.emit_bytes(
    destination  text,
    topic        text,
    payload      bytea,
    event_id     text  DEFAULT NULL,
    exchange     text  DEFAULT NULL,
    headers      jsonb DEFAULT '{}',
    content_type text  DEFAULT 'application/octet-stream'
) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    id text := coalesce(emit_bytes.event_id, gen_random_uuid()::text);
BEGIN
    INSERT INTO oncebridge.outbox (event_id, destination, topic, exchange, payload, content_type, headers)
    VALUES (id, emit_bytes.destination, emit_bytes.topic, emit_bytes.exchange, emit_bytes.payload,
            emit_bytes.content_type, coalesce(emit_bytes.headers, '{}'))
    ON CONFLICT ON CONSTRAINT outbox_destination_event_key DO NOTHING;
    RETURN id;
END
$$;

-- The same for a JSON payload (content type application/json): the usual call.
CREATE FUNCTION oncebridge.emit(
    destination  text,
    topic        text,
    payload      jsonb,
    event_id     text  DEFAULT NULL,
    exchange     text  DEFAULT NULL,
    headers      jsonb DEFAULT '{}'
) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT oncebridge.emit_bytes(emit.destination, emit.topic, convert_to(emit.payload::text, 'UTF8'),
                                 emit.event_id, emit.exchange, emit.headers, 'application/json');
$$;

-- The same for a text payload.
CREATE FUNCTION oncebridge.emit_text(
    destination  text,
    topic        text,
    payload      text,
    event_id     text  DEFAULT NULL,
    exchange     text  DEFAULT NULL,
    headers      jsonb DEFAULT '{}',
    content_type text  DEFAULT 'text/plain'
) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT oncebridge.emit_bytes(emit_text.destination, emit_text.topic, convert_to(emit_text.payload, 'UTF8'),
                                 emit_text.event_id, emit_text.exchange, emit_text.headers, emit_text.content_type);
$$;

INSERT INTO oncebridge.schema_migrations (version, description)
VALUES (2, 'outbox and emit()');

\endif
COMMIT;
