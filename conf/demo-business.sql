-- Business tables of the sample configuration (conf/conf.d/rabbitmq.conf).
CREATE TABLE IF NOT EXISTS meter_readings (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL,
    meter    text NOT NULL,
    reading  numeric(12,3) NOT NULL CHECK (reading >= 0),
    site     text,
    received timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS meter_totals (
    meter text PRIMARY KEY,
    total numeric(14,3) NOT NULL
);
