-- SPDX-License-Identifier: Apache-2.0
-- Tables of the Sparkplug B example (conf/sparkplug/sparkplug.conf): one
-- row per metric of every NBIRTH, NDATA, DBIRTH, DDATA and NDEATH, with its
-- name even when the data message sent only the metric's alias.
--
-- Aliases: an edge node's birth certificate (NBIRTH for itself, DBIRTH for
-- each device) names each metric and gives it an alias; data messages may
-- then send the alias alone. The route's SQL stores every alias of a birth
-- in sparkplug_aliases, in the same transaction as the birth's metrics, and
-- resolves data messages against it. Being a table, the map survives a
-- restart of oncebridge (an edge node resends births only when it
-- reconnects). Aliases are unique per edge node, devices included.

CREATE TABLE sparkplug_aliases (
    group_id  text   NOT NULL,
    edge_node text   NOT NULL,
    alias     bigint NOT NULL,
    name      text   NOT NULL,
    datatype  text,
    PRIMARY KEY (group_id, edge_node, alias)
);

CREATE TABLE metrics (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text        NOT NULL,  -- the message's (topic/timestamp/seq)
    group_id     text        NOT NULL,
    edge_node    text        NOT NULL,
    device       text,                  -- NULL for the edge node's own metrics
    message_type text        NOT NULL,  -- NBIRTH, NDATA, DBIRTH, DDATA, NDEATH, ...
    name         text        NOT NULL,  -- NOT NULL: an alias no birth defined is a dead letter
    datatype     text,
    value        jsonb,                 -- the typed value: number, string, boolean, null, ...
    ts           timestamptz NOT NULL   -- the metric's timestamp, else the payload's
);

-- A data message may send a metric by its alias alone, without its data
-- type; oncebridge then cannot tell a signed integer from an unsigned one
-- and gives the unsigned value of the bits (Int8..Int32 travel as uint32,
-- Int64 as uint64, in two's complement). This reads a value with the data
-- type its birth gave; values already signed, and other types, pass as
-- they are.
CREATE FUNCTION sparkplug_value(v jsonb, datatype text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN jsonb_typeof(v) IS DISTINCT FROM 'number' THEN v
    WHEN datatype = 'Int8' THEN to_jsonb(((v::text::numeric::bigint & 255) # 128) - 128)
    WHEN datatype = 'Int16' THEN to_jsonb(((v::text::numeric::bigint & 65535) # 32768) - 32768)
    WHEN datatype = 'Int32' THEN to_jsonb(((v::text::numeric::bigint & 4294967295) # 2147483648) - 2147483648)
    WHEN datatype = 'Int64' AND v::text::numeric >= 9223372036854775808
      THEN to_jsonb(v::text::numeric - 18446744073709551616)
    ELSE v
  END
$$;
