-- SPDX-License-Identifier: Apache-2.0
-- The least privileges oncebridge's daemon needs in its own schema, for a
-- role that owns nothing and is not a superuser. Run it as the schema's
-- owner after oncebridge-migrate, naming the role:
--
--   psql -d app -v role=oncebridge -f oncebridge-grants.sql
--
-- Then grant that role exactly what each route's business SQL does on the
-- application's tables (for example GRANT INSERT ON app.readings), and
-- nothing else. The dead-letter commands (oncebridge dead-letters ...)
-- are an operator's tool: run them with a role that also has SELECT,
-- UPDATE and DELETE on oncebridge.dead_letters.
\set ON_ERROR_STOP on

GRANT USAGE ON SCHEMA oncebridge TO :"role";

-- the schema version check at connect
GRANT SELECT ON oncebridge.schema_migrations TO :"role";

-- claims (INSERT ... RETURNING reads what it inserted), the undo of a
-- claim whose business SQL will be retried, and retention (DELETE of
-- expired keys chosen with SELECT ... FOR UPDATE SKIP LOCKED, which needs
-- UPDATE on one column)
GRANT SELECT, INSERT, DELETE ON oncebridge.processed_events TO :"role";
GRANT UPDATE (processed_at) ON oncebridge.processed_events TO :"role";

-- poison messages, their retention (retention.dead_letter_window_s:
-- DELETE of the oldest rows, chosen by created_at), and the count of those
-- waiting for the metrics (by broker, route and class: no payload or detail)
GRANT INSERT, DELETE ON oncebridge.dead_letters TO :"role";
GRANT SELECT (id, created_at, broker, consumer, sqlstate, replayed_at) ON oncebridge.dead_letters TO :"role";

-- the outbox relay: read pending rows (FOR UPDATE SKIP LOCKED in parallel
-- mode), mark them published, prune old ones
GRANT SELECT, DELETE ON oncebridge.outbox TO :"role";
GRANT UPDATE (published_at, attempts) ON oncebridge.outbox TO :"role";

-- each inbound worker's redelivery horizon, and what retention reads of it;
-- the horizon of a retired MQTT session is deleted with it
GRANT SELECT, INSERT, UPDATE, DELETE ON oncebridge.consumer_horizons TO :"role";
GRANT SELECT ON oncebridge.retention_holds TO :"role";

-- the MQTT sessions each worker records, and the old ones worker 0
-- retires (reads, then deletes once the session is ended)
GRANT SELECT, INSERT, UPDATE, DELETE ON oncebridge.mqtt_sessions TO :"role";
