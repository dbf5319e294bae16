-- SPDX-License-Identifier: Apache-2.0
-- oncebridge schema, migration 3: pruning of old dedupe keys.
--
-- oncebridge deletes processed_events rows older than the configured dedupe
-- window (retention.dedupe_window_s) in small batches, oldest first; this
-- index lets it find them without scanning the table.
--
-- On a large, busy processed_events table build the index without blocking
-- writes first, outside a transaction, and this migration then keeps it:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS processed_events_processed_at_idx
--       ON oncebridge.processed_events (processed_at);

\set ON_ERROR_STOP on
BEGIN;

SELECT EXISTS (SELECT 1 FROM oncebridge.schema_migrations WHERE version = 3) AS already_applied \gset
\if :already_applied
\echo 'migration 3 already applied'
\else

CREATE INDEX IF NOT EXISTS processed_events_processed_at_idx
    ON oncebridge.processed_events (processed_at);

INSERT INTO oncebridge.schema_migrations (version, description)
VALUES (3, 'processed_events index for retention');

\endif
COMMIT;
