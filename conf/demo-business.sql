-- SPDX-License-Identifier: Apache-2.0
-- Business tables of the example broker files rabbitmq.conf and
-- mosquitto.conf (installed with this file in
-- /usr/share/doc/oncebridge/examples/). Run it as the database's owner:
--   runuser -u oncebridge -- psql -d oncebridge -f demo-business.sql
-- The schema is named: for the role oncebridge the default search_path
-- ("$user", public) would put them into oncebridge's own schema.
CREATE TABLE IF NOT EXISTS public.meter_readings (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL,
    meter    text NOT NULL,
    reading  numeric(12,3) NOT NULL CHECK (reading >= 0),
    site     text,
    received timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS public.meter_totals (
    meter text PRIMARY KEY,
    total numeric(14,3) NOT NULL
);
