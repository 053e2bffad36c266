-------------------------------------------------------------------------------
-- Business rules as data: products, status_map, exclusions; stable ids;
-- the validation report.  New products need rows here, not code.
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.products (
    code                text PRIMARY KEY,
    transaction_type    text NOT NULL,
    description_pattern text,
    paid_tags           text[] NOT NULL DEFAULT '{}',
    grants_profile      boolean NOT NULL DEFAULT false,
    enrollment_course   text,
    manual_price        numeric CHECK (manual_price > 0),
    match_order         integer NOT NULL DEFAULT 100,
    CHECK (enrollment_course IS NULL OR grants_profile)
);
COMMENT ON TABLE migrate_ext.products IS
    'Product catalog: an invoice whose description matches description_pattern (ILIKE, lowest match_order first; NULL pattern = fallback) is this product';
COMMENT ON COLUMN migrate_ext.products.paid_tags IS
    'Systeme.io tags that mean "paid for this product"';
COMMENT ON COLUMN migrate_ext.products.enrollment_course IS
    'Title of the course (public.courses.title) a buyer is enrolled in; NULL: no enrollment';
COMMENT ON COLUMN migrate_ext.products.manual_price IS
    'Amount of a manual payment for a paid tag without a paid invoice; NULL: such a tag is only a warning';

INSERT INTO migrate_ext.products
       (code, transaction_type, description_pattern, paid_tags, grants_profile, enrollment_course, manual_price, match_order)
VALUES ('P2P',   'P2P',   '%papers to profits%', '{PaidP2P}',   true,  'Papers to Profits', 800,  10),
       ('Canva', 'Canva', '%canva%',             '{PaidCanva}', false, NULL,                NULL, 20),
       ('Other', 'Other', NULL,                  '{}',          false, NULL,                NULL, 1000);

CREATE TABLE migrate_ext.status_map (
    xendit_status       text PRIMARY KEY,
    production_status   text NOT NULL,
    becomes_transaction boolean NOT NULL
);
COMMENT ON TABLE migrate_ext.status_map IS
    'Xendit invoice status -> production transaction status, and whether it becomes a transaction';
INSERT INTO migrate_ext.status_map VALUES
    ('PAID', 'completed', true),
    ('SETTLED', 'completed', true),
    ('EXPIRED', 'expired', false),
    ('PENDING', 'pending', false);

CREATE TABLE migrate_ext.new_user_rules (
    single        boolean PRIMARY KEY DEFAULT true CHECK (single),
    email_confirm boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE migrate_ext.new_user_rules IS
    'How the launch creates the auth users of new buyers (one row)';
COMMENT ON COLUMN migrate_ext.new_user_rules.email_confirm IS
    'true (default, as the application''s own admin code did with email_confirm: true): created confirmed, they can sign in by magic link or password recovery at once; false: email_confirmed_at NULL, they must confirm by e-mail first';
INSERT INTO migrate_ext.new_user_rules DEFAULT VALUES;

CREATE TABLE migrate_ext.exclusions (
    kind       text NOT NULL CHECK (kind IN ('email', 'xendit_id', 'systemeio_id')),
    value      text NOT NULL,
    reason     text NOT NULL CHECK (reason <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT current_user,
    PRIMARY KEY (kind, value)
);
COMMENT ON TABLE migrate_ext.exclusions IS
    'What a DBA decided to leave out: email (a LIKE pattern on lower(trim(email))), xendit_id or systemeio_id (one record)';

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

-- products and status_map hold default rows that CREATE EXTENSION inserts,
-- so pg_dump does not dump them (a restore would insert them twice)
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.exclusions', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.identity_map', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.validation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.validation_issues', '');
