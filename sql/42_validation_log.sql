-------------------------------------------------------------------------------
-- What the validation keeps from run to run: the ids it drew (so re-runs
-- give the same ids) and every run's report.  pg_dump keeps them.
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.identity_map (
    kind       text NOT NULL,
    key        text NOT NULL,
    id         uuid NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
COMMENT ON TABLE migrate_ext.identity_map IS
    'Ids drawn once for rows production does not have yet (kind: user by e-mail, transaction by Xendit invoice id or manual payment, enrollment by user and course), so re-runs give the same ids';

CREATE SEQUENCE migrate_ext.validation_runs_run_id_seq;

CREATE TABLE migrate_ext.validation_runs (
    run_id               bigint PRIMARY KEY,
    started_at           timestamptz NOT NULL,
    finished_at          timestamptz,
    errors               bigint NOT NULL DEFAULT 0,
    warnings             bigint NOT NULL DEFAULT 0,
    sync_run_id          bigint,
    sync_started_at      timestamptz,
    production_signature text
);
COMMENT ON TABLE migrate_ext.validation_runs IS
    'One row per validate_and_prepare_clean_data(); sync_run_id is the sync staging was built from, production_signature the production table definitions it was built for';

CREATE TABLE migrate_ext.validation_issues (
    run_id    bigint NOT NULL REFERENCES migrate_ext.validation_runs ON DELETE CASCADE,
    severity  text NOT NULL CHECK (severity IN ('error', 'warning', 'info')),
    rule      text NOT NULL,
    source    text NOT NULL,
    record_id text,
    email     text,
    detail    text NOT NULL
);
CREATE INDEX validation_issues_run_idx ON migrate_ext.validation_issues (run_id, severity, rule);
COMMENT ON TABLE migrate_ext.validation_issues IS
    'Every issue of a validation run, never truncated: error blocks the launch, warning keeps the data with a documented fallback, info lists what is carried over or removed';

SELECT pg_catalog.pg_extension_config_dump('migrate_ext.identity_map', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.validation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.validation_issues', '');
