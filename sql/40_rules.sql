-------------------------------------------------------------------------------
-- Business rules as data: products, status_map, the validation's constants,
-- how new users are created, exclusions.  New products need rows here, not
-- code.
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
    becomes_transaction boolean NOT NULL,
    settles             boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE migrate_ext.status_map IS
    'Xendit invoice status -> production transaction status, and whether it becomes a transaction';
COMMENT ON COLUMN migrate_ext.status_map.settles IS
    'The money reached the merchant: the transaction''s settled_at is the invoice''s last update';
INSERT INTO migrate_ext.status_map VALUES
    ('PAID', 'completed', true, false),
    ('SETTLED', 'completed', true, true),
    ('EXPIRED', 'expired', false, false),
    ('PENDING', 'pending', false, false);

CREATE TABLE migrate_ext.validation_rules (
    single               boolean PRIMARY KEY DEFAULT true CHECK (single),
    currency             text NOT NULL DEFAULT 'PHP',
    email_pattern        text NOT NULL DEFAULT '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$',
    test_account_pattern text NOT NULL DEFAULT '@(example\.(com|org|net)|test\.com)$'
);
COMMENT ON TABLE migrate_ext.validation_rules IS
    'The validation''s constants (one row)';
COMMENT ON COLUMN migrate_ext.validation_rules.currency IS
    'The only currency production records: a paid invoice in another one is an error (rule currency_not_php); manual payments are in it';
COMMENT ON COLUMN migrate_ext.validation_rules.email_pattern IS
    'A valid e-mail address (a regular expression on lower(trim(e-mail))); an invalid one on a paid record is an error';
COMMENT ON COLUMN migrate_ext.validation_rules.test_account_pattern IS
    'A test account''s e-mail (a regular expression): its paid invoices are a warning (rule test_account)';
INSERT INTO migrate_ext.validation_rules DEFAULT VALUES;

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

-- products, status_map, validation_rules and new_user_rules hold default
-- rows that CREATE EXTENSION inserts, so pg_dump does not dump them (a
-- restore would insert them twice); exclusions are the DBA's
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.exclusions', '');
