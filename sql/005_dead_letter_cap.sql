-- SPDX-License-Identifier: Apache-2.0
-- oncebridge schema, migration 5: dead letters cannot fill the database.
--
-- oncebridge keeps at most limits.dead_letter_payload bytes of a poison
-- payload; payload_size has always held the full size, and payload_sha256
-- now holds the SHA-256 of the full payload, so a truncated row still
-- identifies what was received. Rows written before this migration have
-- no hash. retention.dead_letter_window_s deletes dead letters by
-- created_at, through the new index.

\set ON_ERROR_STOP on
BEGIN;

SELECT EXISTS (SELECT 1 FROM oncebridge.schema_migrations WHERE version = 5) AS already_applied \gset
\if :already_applied
\echo 'migration 5 already applied'
\else

ALTER TABLE oncebridge.dead_letters ADD COLUMN payload_sha256 bytea;  -- of the full payload
COMMENT ON COLUMN oncebridge.dead_letters.payload_sha256 IS
    'SHA-256 of the full payload; payload may hold only its first limits.dead_letter_payload bytes';

CREATE INDEX dead_letters_created_idx ON oncebridge.dead_letters (created_at);

INSERT INTO oncebridge.schema_migrations (version, description)
VALUES (5, 'dead_letters: payload_sha256 of truncated payloads, created_at index for retention');

\endif
COMMIT;
