-------------------------------------------------------------------------------
-- Raw API data
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.xendit_raw (
    id              text PRIMARY KEY,
    external_id     text,
    status          text,
    amount          numeric,
    paid_amount     numeric,
    currency        text,
    payer_email     text,
    description     text,
    payment_method  text,
    payment_channel text,
    paid_at         timestamptz,
    expiry_date     timestamptz,
    created         timestamptz,
    updated         timestamptz,
    api_synced_at   timestamptz NOT NULL,
    sync_run_id     bigint NOT NULL,
    api_response    jsonb NOT NULL
);
COMMENT ON TABLE migrate_ext.xendit_raw IS
    'Xendit invoices as the API sent them (api_response), with typed columns for the rules; api_synced_at is when this version was stored';

CREATE TABLE migrate_ext.systemeio_raw (
    id            text PRIMARY KEY,
    email         text,
    first_name    text,
    last_name     text,
    tags          text[] NOT NULL DEFAULT '{}',
    registered_at timestamptz,
    locale        text,
    source_url    text,
    unsubscribed  boolean,
    bounced       boolean,
    api_synced_at timestamptz NOT NULL,
    sync_run_id   bigint NOT NULL,
    api_response  jsonb NOT NULL
);
COMMENT ON TABLE migrate_ext.systemeio_raw IS
    'Systeme.io contacts as the API sent them (api_response), with typed columns for the rules; api_synced_at is when this version was stored';

CREATE SEQUENCE migrate_ext.sync_runs_run_id_seq;

CREATE TABLE migrate_ext.sync_runs (
    run_id      bigint NOT NULL,
    source      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    status      text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    pages       bigint NOT NULL,
    fetched     bigint NOT NULL,
    inserted    bigint NOT NULL,
    updated     bigint NOT NULL,
    unchanged   bigint NOT NULL,
    rejected    bigint NOT NULL,
    error       text,
    PRIMARY KEY (run_id, source)
);
COMMENT ON TABLE migrate_ext.sync_runs IS 'One row per source per sync_raw_api_data() call';

CREATE TABLE migrate_ext.sync_rejects (
    run_id      bigint NOT NULL,
    source      text NOT NULL,
    record_id   text,
    reason      text NOT NULL,
    raw         text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX sync_rejects_run_id_idx ON migrate_ext.sync_rejects (run_id, source);
COMMENT ON TABLE migrate_ext.sync_rejects IS
    'API records that could not be stored (e.g. a \u0000 in a string), with their exact text and the reason';

-------------------------------------------------------------------------------
-- pg_dump keeps the data of these tables
-------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('migrate_ext.xendit_raw', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.systemeio_raw', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.sync_rejects', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.sync_runs_run_id_seq', '');

