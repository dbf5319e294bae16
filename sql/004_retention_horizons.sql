-- SPDX-License-Identifier: Apache-2.0
-- oncebridge schema, migration 4: how far back each consumer worker may
-- still be redelivered a message, so that retention never prunes a key
-- whose message may come back.
--
-- Every inbound worker keeps one row per route it consumes. safe_before:
-- every event this worker claimed before it has been acked to the broker
-- on a connection that stayed up afterwards, and the redeliveries of its
-- earlier connections have been settled; it only moves forward while the
-- worker is connected, so a broker outage holds it still. Retention
-- deletes a route's keys only when they are older than the dedupe window
-- and older than the safe_before of every live row of that route
-- (retention_holds). A row stops holding once its broker can no longer
-- redeliver anything to it: for an MQTT 5 session, session expiry
-- (hold_s) after the worker was last seen; for AMQP, when another worker of
-- the same route has advanced past the moment this one was last seen plus
-- its grace (the broker requeued this one's deliveries by then). Other
-- rows hold until their worker comes back or an operator deletes them.

\set ON_ERROR_STOP on
BEGIN;

SELECT EXISTS (SELECT 1 FROM oncebridge.schema_migrations WHERE version = 4) AS already_applied \gset
\if :already_applied
\echo 'migration 4 already applied'
\else

CREATE TABLE oncebridge.consumer_horizons (
    consumer    text             NOT NULL,          -- route name
    worker      text             NOT NULL,          -- "mqtt:CLIENT_ID" or "amqp:HOST/BROKER[N]"
    kind        text             NOT NULL,          -- "amqp" or "mqtt"
    safe_before timestamptz      NOT NULL DEFAULT '-infinity',
    seen_at     timestamptz      NOT NULL DEFAULT now(),  -- last write of the worker
    connected   boolean          NOT NULL DEFAULT false,  -- to its broker, at seen_at
    grace_s     double precision NOT NULL,          -- time for the broker to notice a lost connection
    hold_s      double precision,                   -- redelivery horizon after seen_at; NULL: unknown
    PRIMARY KEY (consumer, worker)
);

-- The rows that hold back pruning now.
CREATE VIEW oncebridge.retention_holds AS
SELECT h.consumer, h.worker, h.kind, h.safe_before, h.seen_at, h.connected
FROM oncebridge.consumer_horizons h
WHERE (h.hold_s IS NULL OR h.seen_at > now() - make_interval(secs => h.hold_s + h.grace_s))
  AND NOT (h.kind = 'amqp' AND EXISTS (
      SELECT 1 FROM oncebridge.consumer_horizons o
      WHERE o.consumer = h.consumer AND o.worker <> h.worker AND o.kind = 'amqp'
        AND o.safe_before > h.seen_at + make_interval(secs => h.grace_s)));

INSERT INTO oncebridge.schema_migrations (version, description)
VALUES (4, 'consumer_horizons: retention never prunes a key that may be redelivered');

\endif
COMMIT;
