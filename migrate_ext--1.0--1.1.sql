/*
 * migrate_ext upgrade script 1.0 -> 1.1 (ALTER EXTENSION migrate_ext UPDATE).
 * Written by hand for tables and data; the function part was listed by
 * scripts/function_changes.sql and reviewed.  test/sql/upgrade.sql proves
 * that 1.0 updated with it equals a fresh install of 1.1.
 */

\echo Use "ALTER EXTENSION migrate_ext UPDATE TO '1.1'" to load this file. \quit

SET LOCAL search_path = pg_catalog, pg_temp;

-------------------------------------------------------------------------------
-- Rules and new tables (as in sql/40_rules.sql and sql/88_reconcile.sql)
-------------------------------------------------------------------------------

-- the validation's constants, as data: which statuses settle, the currency,
-- the e-mail and test-account patterns (1.0 had them in the code)
ALTER TABLE migrate_ext.status_map ADD COLUMN settles boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN migrate_ext.status_map.settles IS
    'The money reached the merchant: the transaction''s settled_at is the invoice''s last update';
UPDATE migrate_ext.status_map SET settles = true WHERE xendit_status OPERATOR(pg_catalog.=) 'SETTLED';
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

-- how the launch creates new buyers' auth users
CREATE TABLE migrate_ext.new_user_rules (
    single        boolean PRIMARY KEY DEFAULT true CHECK (single),
    email_confirm boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE migrate_ext.new_user_rules IS
    'How the launch creates the auth users of new buyers (one row)';
COMMENT ON COLUMN migrate_ext.new_user_rules.email_confirm IS
    'true (default, as the application''s own admin code did with email_confirm: true): created confirmed, they can sign in by magic link or password recovery at once; false: email_confirmed_at NULL, they must confirm by e-mail first';
INSERT INTO migrate_ext.new_user_rules DEFAULT VALUES;

-- reconcile() and the nightly job's results
CREATE TABLE migrate_ext.reconcile_settings (
    single   boolean PRIMARY KEY DEFAULT true CHECK (single),
    keep_for interval NOT NULL DEFAULT '30 days' CHECK (keep_for > interval '0')
);
COMMENT ON TABLE migrate_ext.reconcile_settings IS
    'nightly_reconcile(): keep_for is how long its runs and their results are kept (one row)';
INSERT INTO migrate_ext.reconcile_settings DEFAULT VALUES;

CREATE SEQUENCE migrate_ext.reconcile_runs_run_id_seq;

CREATE TABLE migrate_ext.reconcile_runs (
    run_id      bigint PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    sync        text NOT NULL,
    differences bigint
);
COMMENT ON TABLE migrate_ext.reconcile_runs IS
    'One row per nightly_reconcile(): when, how the sync went, how many differences';

CREATE TABLE migrate_ext.reconcile_results (
    run_id        bigint NOT NULL REFERENCES migrate_ext.reconcile_runs ON DELETE CASCADE,
    kind          text NOT NULL,
    source        text NOT NULL,
    record_id     text,
    email         text,
    production_id uuid,
    detail        text NOT NULL
);
CREATE INDEX reconcile_results_run_idx ON migrate_ext.reconcile_results (run_id, kind);
COMMENT ON TABLE migrate_ext.reconcile_results IS
    'The differences each nightly_reconcile() found, one row each (see reconcile())';
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.reconcile_runs', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.reconcile_results', '');

-------------------------------------------------------------------------------
-- Functions (listed by scripts/function_changes.sql)
-------------------------------------------------------------------------------

DROP FUNCTION migrate_ext.rollback_migration(text);
DROP FUNCTION migrate_ext.swap_dependents();
DROP FUNCTION migrate_ext.swap_foreign_keys();
DROP FUNCTION migrate_ext.table_counts(text);
CREATE OR REPLACE FUNCTION migrate_ext.close_extension_objects(ext_owner regrole)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- the owner's default privileges (less PUBLIC's), and the extension
    -- owner's: rights as aclitem letters (arwd: SELECT, INSERT, UPDATE,
    -- DELETE; rwU: SELECT, UPDATE, USAGE; X: EXECUTE; U: USAGE)
    PERFORM migrate_ext.set_acl(o.kind, o.target,
                                ARRAY(SELECT d FROM unnest(acldefault(o.acl_kind, o.owner)) AS d
                                       WHERE d::text NOT LIKE '=%')
                                || format('%s=%s/%s', ext_owner, o.rights, o.owner::regrole)::aclitem)
       FROM (SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, c.oid::regclass::text AS target,
                    c.relowner AS owner, CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char" AS acl_kind,
                    CASE c.relkind WHEN 'S' THEN 'rwU' ELSE 'arwd' END AS rights
               FROM pg_class AS c
              WHERE c.relnamespace = 'migrate_ext'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
             UNION ALL
             SELECT 'FUNCTION', p.oid::regprocedure::text, p.proowner, 'f', 'X'
               FROM pg_proc AS p WHERE p.pronamespace = 'migrate_ext'::regnamespace
             UNION ALL
             SELECT 'SCHEMA', 'migrate_ext', n.nspowner, 'n', 'U'
               FROM pg_namespace AS n WHERE n.nspname = 'migrate_ext') AS o;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.email_pattern()
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT r.email_pattern FROM migrate_ext.validation_rules AS r;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.invoice_facts(email_re text)
 RETURNS TABLE(id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamp with time zone, expiry_date timestamp with time zone, created timestamp with time zone, updated timestamp with time zone, payment_method text, payment_channel text, description text, amount_type text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT i.id, i.external_id, i.status, i.amount, i.currency, i.payer_email AS raw_email,
           nullif(lower(btrim(i.payer_email)), '') AS email,
           coalesce(lower(btrim(i.payer_email)) ~ email_re, false) AS email_ok,
           x.reason AS excluded,
           p.code AS product, p.transaction_type, p.description_pattern IS NULL AS fallback,
           sm.production_status, coalesce(sm.becomes_transaction, false) AS paid,
           sm.xendit_status IS NOT NULL AS known_status,
           i.paid_at, i.expiry_date, i.created, i.updated, i.payment_method, i.payment_channel,
           i.description, jsonb_typeof(i.api_response -> 'amount') AS amount_type
      FROM migrate_ext.xendit_raw AS i
      LEFT JOIN LATERAL (SELECT e.reason FROM migrate_ext.exclusions AS e
                          WHERE (e.kind = 'xendit_id' AND e.value = i.id)
                             OR (e.kind = 'email' AND lower(btrim(i.payer_email)) LIKE e.value)
                          ORDER BY e.kind LIMIT 1) AS x ON true
      LEFT JOIN LATERAL (SELECT pr.* FROM migrate_ext.products AS pr
                          WHERE pr.description_pattern IS NULL OR i.description ILIKE pr.description_pattern
                          ORDER BY pr.description_pattern IS NULL, pr.match_order, pr.code LIMIT 1) AS p ON true
      LEFT JOIN migrate_ext.status_map AS sm ON sm.xendit_status = i.status;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.invoice_issues(invoices regclass)
 RETURNS TABLE(severity text, rule text, record_id text, email text, detail text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- (the rows come from dynamic SQL, which plpgsql_check cannot follow to
    -- the OUT columns)
    -- @plpgsql_check_options: extra_warnings = off
    -- the rules read the given table under one name
    RETURN QUERY EXECUTE replace($rules$
    SELECT v.severity, v.rule, i.id, coalesce(i.email, i.raw_email), v.detail
      FROM pg_temp.invoices AS i
     CROSS JOIN LATERAL (VALUES
        (NOT i.known_status, 'error', 'unknown_status',
         format('status %s is not in migrate_ext.status_map', coalesce(i.status, 'NULL'))),
        (i.known_status AND i.paid AND i.email IS NULL, 'error', 'paid_invoice_without_email',
         format('%s invoice of %s %s has no payer_email: fix it in Xendit or exclude it', i.status, i.currency, i.amount)),
        (i.email IS NOT NULL AND NOT i.email_ok, CASE WHEN i.paid THEN 'error' ELSE 'warning' END, 'invalid_email',
         format('payer_email %L is not a valid address%s', i.raw_email,
                CASE WHEN i.paid THEN '' ELSE ' (unpaid invoice: left out)' END)),
        (i.paid AND i.amount IS NULL, 'error', 'non_numeric_amount',
         format('amount is a JSON %s, not a number', coalesce(i.amount_type, 'absence'))),
        (i.paid AND i.amount <= 0, 'error', 'non_positive_amount', format('amount %s is not positive', i.amount)),
        (i.paid AND i.currency IS DISTINCT FROM $2, 'error', 'currency_not_php',
         format('currency %s: production records %s only', coalesce(i.currency, 'NULL'), $2)),
        (i.paid AND i.fallback, 'warning', 'no_product_match',
         format('description %L matches no product: recorded as %s', i.description, i.transaction_type))
     ) AS v(hit, severity, rule, detail)
     WHERE v.hit AND i.excluded IS NULL
    UNION ALL
    SELECT 'warning', 'test_account', i.id, i.email,
           'a paid invoice of what looks like a test account: exclude it, e.g. INSERT INTO migrate_ext.exclusions VALUES (''email'', ''%@example.com'', ''test accounts'')'
      FROM pg_temp.invoices AS i
     WHERE i.paid AND i.excluded IS NULL AND i.email ~ $1
    UNION ALL
    SELECT 'error', 'duplicate_external_id', i.id, i.email,
           format('external_id %L is shared by %s paid invoices; production keeps external_id unique', i.external_id, d.n)
      FROM pg_temp.invoices AS i
      JOIN (SELECT external_id, count(*) AS n FROM pg_temp.invoices
             WHERE paid AND excluded IS NULL AND external_id IS NOT NULL
             GROUP BY external_id HAVING count(*) > 1) AS d ON d.external_id = i.external_id
     WHERE i.paid AND i.excluded IS NULL
    $rules$, 'pg_temp.invoices', invoices::text)
    USING (SELECT r.test_account_pattern FROM migrate_ext.validation_rules AS r),
          (SELECT r.currency FROM migrate_ext.validation_rules AS r);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.validate_and_prepare_clean_data(OUT section text, OUT item text, OUT rows bigint, OUT amount numeric, OUT detail text)
 RETURNS SETOF record
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    validation_run CONSTANT bigint := migrate_ext.start_validation();
    -- rows newer than the sync are the application's (carried over)
    sync_started CONSTANT timestamptz := (SELECT v.sync_started_at FROM migrate_ext.validation_runs AS v
                                          WHERE v.run_id = validation_run);
BEGIN
    PERFORM migrate_ext.stage_contacts(validation_run);
    PERFORM migrate_ext.stage_invoices(validation_run);
    PERFORM migrate_ext.stage_sales(validation_run);
    PERFORM migrate_ext.stage_users(validation_run, sync_started);
    PERFORM migrate_ext.stage_transactions();
    PERFORM migrate_ext.stage_enrollments(sync_started);
    PERFORM migrate_ext.create_staging_tables();
    PERFORM migrate_ext.fill_staging(validation_run);
    PERFORM migrate_ext.finish_validation(validation_run, sync_started);
    RETURN QUERY SELECT * FROM migrate_ext.validation_report(validation_run);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.start_validation()
 RETURNS bigint
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    validation_run bigint;
    v_table text;
BEGIN
    PERFORM migrate_ext.lock_out_other_runs('validate_and_prepare_clean_data()');
    PERFORM migrate_ext.check_configuration();
    PERFORM migrate_ext.claim_private_schema('migrate_staging', migrate_ext.staging_tables());
    validation_run := nextval('migrate_ext.validation_runs_run_id_seq');
    INSERT INTO migrate_ext.validation_runs (run_id, started_at, sync_run_id, sync_started_at, production_signature)
    SELECT validation_run, clock_timestamp(), s.run_id, min(s.started_at), migrate_ext.production_signature()
      FROM migrate_ext.sync_runs AS s
     WHERE s.run_id = (SELECT max(run_id) FROM migrate_ext.sync_runs WHERE status = 'succeeded')
     GROUP BY s.run_id;
    -- working tables of an earlier call in this transaction
    FOREACH v_table IN ARRAY '{mx_contact,mx_person,mx_invoice,mx_sale,mx_user,mx_prod_tx,mx_tx,mx_enroll,mx_auth}'::text[] LOOP
        IF to_regclass('pg_temp.' || v_table) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', v_table);
        END IF;
    END LOOP;
    RETURN validation_run;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.stage_contacts(validation_run bigint)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    email_re CONSTANT text := migrate_ext.email_pattern();
BEGIN
    PERFORM 'PRAGMA:TABLE: mx_contact (id text, email text, raw_email text, email_ok boolean, excluded text, first_name text, last_name text, tags text[], registered_at timestamptz)';
    CREATE TEMP TABLE mx_contact ON COMMIT DROP AS
    SELECT c.id, lower(btrim(c.email)) AS email, c.email AS raw_email,
           coalesce(lower(btrim(c.email)) ~ email_re, false) AS email_ok,
           x.reason AS excluded, c.first_name, c.last_name, c.tags, c.registered_at
      FROM migrate_ext.systemeio_raw AS c
      LEFT JOIN LATERAL (SELECT e.reason FROM migrate_ext.exclusions AS e
                          WHERE (e.kind = 'systemeio_id' AND e.value = c.id)
                             OR (e.kind = 'email' AND lower(btrim(c.email)) LIKE e.value)
                          ORDER BY e.kind LIMIT 1) AS x ON true;

    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    CREATE TEMP TABLE mx_person ON COMMIT DROP AS
    SELECT c.email,
           array_agg(DISTINCT c.id ORDER BY c.id) AS contact_ids,
           (array_agg(c.first_name ORDER BY c.registered_at DESC NULLS LAST, c.id DESC)
               FILTER (WHERE nullif(btrim(c.first_name), '') IS NOT NULL))[1] AS first_name,
           (array_agg(c.last_name ORDER BY c.registered_at DESC NULLS LAST, c.id DESC)
               FILTER (WHERE nullif(btrim(c.last_name), '') IS NOT NULL))[1] AS last_name,
           coalesce((array_agg(DISTINCT tg.tag ORDER BY tg.tag) FILTER (WHERE tg.tag IS NOT NULL)), '{}') AS tags,
           min(c.registered_at) AS registered_at
      FROM mx_contact AS c
      LEFT JOIN LATERAL unnest(c.tags) AS tg(tag) ON true
     WHERE c.email_ok AND c.excluded IS NULL
     GROUP BY c.email;
    CREATE UNIQUE INDEX ON mx_person (email);
    ANALYZE mx_contact, mx_person;

    -- what was left out on purpose
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'info', 'excluded', 'systemeio', c.id, c.email, 'excluded: ' || c.excluded
      FROM mx_contact AS c WHERE c.excluded IS NOT NULL;

    -- contact rules
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run,
           CASE WHEN c.tags && (SELECT coalesce(array_agg(pt.tag), '{}') FROM migrate_ext.products AS pr,
                                       unnest(pr.paid_tags) AS pt(tag))
                THEN 'error' ELSE 'warning' END,
           'invalid_email', 'systemeio', c.id, c.raw_email,
           format('e-mail %L is not a valid address', c.raw_email)
      FROM mx_contact AS c WHERE c.excluded IS NULL AND NOT c.email_ok;
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'warning', 'duplicate_contact_email', 'systemeio', array_to_string(p.contact_ids, ','), p.email,
           format('%s contacts share this e-mail: merged (tags united, earliest registration, latest names)',
                  cardinality(p.contact_ids))
      FROM mx_person AS p WHERE cardinality(p.contact_ids) > 1;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.stage_invoices(validation_run bigint)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM 'PRAGMA:TABLE: mx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text, valid boolean)';
    CREATE TEMP TABLE mx_invoice ON COMMIT DROP AS
    SELECT f.*, true AS valid FROM migrate_ext.invoice_facts(migrate_ext.email_pattern()) AS f;

    CREATE INDEX ON mx_invoice (id);
    ANALYZE mx_invoice;

    -- what was left out on purpose
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'info', 'excluded', 'xendit', i.id, i.email, 'excluded: ' || i.excluded
      FROM mx_invoice AS i WHERE i.excluded IS NOT NULL;

    -- invoice rules
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, q.severity, q.rule, 'xendit', q.record_id, q.email, q.detail
      FROM migrate_ext.invoice_issues('pg_temp.mx_invoice') AS q;

    -- an invoice with an error is left out; so is everything excluded or unpaid
    UPDATE mx_invoice AS i SET valid = false
     WHERE i.excluded IS NOT NULL OR NOT i.paid
        OR EXISTS (SELECT 1 FROM migrate_ext.validation_issues AS q
                    WHERE q.run_id = validation_run AND q.source = 'xendit' AND q.record_id = i.id AND q.severity = 'error');
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.stage_sales(validation_run bigint)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text, valid boolean)';
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    CREATE TEMP TABLE mx_sale ON COMMIT DROP AS
    SELECT i.email, i.product, min(i.paid_at) AS first_paid_at, false AS manual
      FROM mx_invoice AS i WHERE i.valid GROUP BY i.email, i.product;
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'warning', 'paid_tag_without_invoice', 'systemeio', array_to_string(pe.contact_ids, ','), pe.email,
           CASE WHEN pr.manual_price IS NOT NULL
                THEN format('tagged %s without a paid %s invoice: recorded as a manual payment of %s',
                            array_to_string(pr.paid_tags, '/'), pr.code, pr.manual_price)
                ELSE format('tagged %s without a paid %s invoice: no transaction (the product has no manual price)',
                            array_to_string(pr.paid_tags, '/'), pr.code) END
      FROM mx_person AS pe JOIN migrate_ext.products AS pr ON pe.tags && pr.paid_tags
     WHERE NOT EXISTS (SELECT 1 FROM mx_invoice AS i
                        WHERE i.paid AND i.email = pe.email AND i.product = pr.code);
    -- a manual payment only where no paid invoice of the product exists at
    -- all (one with an error or excluded still says the person paid)
    INSERT INTO mx_sale (email, product, first_paid_at, manual)
    SELECT pe.email, pr.code, pe.registered_at, true
      FROM mx_person AS pe JOIN migrate_ext.products AS pr ON pe.tags && pr.paid_tags
     WHERE pr.manual_price IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM mx_invoice AS i
                        WHERE i.paid AND i.email = pe.email AND i.product = pr.code);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.stage_users(validation_run bigint, sync_started timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    PERFORM 'PRAGMA:TABLE: mx_auth (email text, id uuid)';
    CREATE TEMP TABLE mx_auth ON COMMIT DROP AS
    SELECT lower(btrim(u.email)) AS email, (array_agg(u.id ORDER BY u.created_at NULLS LAST, u.id))[1] AS id
      FROM auth.users AS u WHERE u.email IS NOT NULL GROUP BY 1;
    CREATE UNIQUE INDEX ON mx_auth (email);
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'warning', 'duplicate_auth_user', 'auth.users',
           string_agg(u.id::text, ',' ORDER BY u.created_at NULLS LAST, u.id), lower(btrim(u.email)),
           format('%s auth users share this e-mail: the profile keeps the id of the oldest; the others are left as they are',
                  count(*))
      FROM auth.users AS u
     WHERE lower(btrim(u.email)) IN (SELECT s.email FROM mx_sale AS s)
     GROUP BY lower(btrim(u.email)) HAVING count(*) > 1;

    PERFORM migrate_ext.draw_ids('user',
        ARRAY(SELECT DISTINCT s.email FROM mx_sale AS s JOIN migrate_ext.products AS pr ON pr.code = s.product
               WHERE pr.grants_profile AND NOT EXISTS (SELECT 1 FROM mx_auth AS a WHERE a.email = s.email)));
    PERFORM 'PRAGMA:TABLE: mx_user (email text, id uuid, has_auth_user boolean, first_paid_at timestamptz, created_at timestamptz)';
    CREATE TEMP TABLE mx_user ON COMMIT DROP AS
    SELECT s.email, coalesce(a.id, m.id) AS id, a.id IS NOT NULL AS has_auth_user,
           min(s.first_paid_at) AS first_paid_at,
           coalesce(least(min(pe.registered_at), min(s.first_paid_at)), sync_started) AS created_at
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product AND pr.grants_profile
      LEFT JOIN mx_person AS pe ON pe.email = s.email
      LEFT JOIN mx_auth AS a ON a.email = s.email
      LEFT JOIN migrate_ext.identity_map AS m ON m.kind = 'user' AND m.key = s.email
     GROUP BY s.email, a.id, m.id;
    CREATE UNIQUE INDEX ON mx_user (email);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.stage_transactions()
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text, valid boolean)';
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    PERFORM 'PRAGMA:TABLE: mx_auth (email text, id uuid)';
    PERFORM 'PRAGMA:TABLE: mx_user (email text, id uuid, has_auth_user boolean, first_paid_at timestamptz, created_at timestamptz)';
    PERFORM migrate_ext.draw_ids('xendit_invoice', ARRAY(SELECT id FROM mx_invoice WHERE valid));
    PERFORM migrate_ext.draw_ids('manual_payment', ARRAY(SELECT product || ':' || email FROM mx_sale WHERE manual));
    -- production transactions that can be recognized: by an external id
    -- that only one of them has, or as the only manual payment of a product
    -- for an e-mail
    PERFORM 'PRAGMA:TABLE: mx_prod_tx (kind text, key text, id uuid)';
    CREATE TEMP TABLE mx_prod_tx ON COMMIT DROP AS
    SELECT 'external_id' AS kind, t.external_id AS key, min(t.id::text)::uuid AS id
      FROM public.transactions AS t WHERE t.external_id IS NOT NULL
     GROUP BY t.external_id HAVING count(*) = 1
    UNION ALL
    SELECT 'manual', t.transaction_type || ':' || lower(btrim(t.contact_email)), min(t.id::text)::uuid
      FROM public.transactions AS t WHERE t.payment_method = 'manual' AND t.contact_email IS NOT NULL
     GROUP BY t.transaction_type, lower(btrim(t.contact_email)) HAVING count(*) = 1;
    CREATE UNIQUE INDEX ON mx_prod_tx (kind, key);
    ANALYZE mx_prod_tx;

    PERFORM 'PRAGMA:TABLE: mx_tx (id uuid, source text, record_id text, email text, product text, user_id uuid, amount numeric, currency text, status text, payment_method text, transaction_type text, external_id text, paid_at timestamptz, settled_at timestamptz, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, metadata jsonb)';
    CREATE TEMP TABLE mx_tx ON COMMIT DROP AS
    SELECT coalesce(pt.id, m.id) AS id, 'xendit' AS source, i.id AS record_id, i.email, i.product,
           coalesce(a.id, u.id) AS user_id, i.amount, i.currency, i.production_status AS status,
           coalesce(i.payment_channel, i.payment_method) AS payment_method, i.transaction_type,
           i.external_id, i.paid_at,
           CASE WHEN sm.settles THEN i.updated END AS settled_at,
           i.expiry_date AS expires_at, i.created AS created_at, i.updated AS updated_at,
           jsonb_strip_nulls(jsonb_build_object('xendit_invoice_id', i.id, 'xendit_status', i.status,
                                                'description', i.description, 'payment_method', i.payment_method,
                                                'payment_channel', i.payment_channel)) AS metadata
      FROM mx_invoice AS i
      JOIN migrate_ext.identity_map AS m ON m.kind = 'xendit_invoice' AND m.key = i.id
      LEFT JOIN mx_auth AS a ON a.email = i.email
      LEFT JOIN mx_user AS u ON u.email = i.email
      LEFT JOIN mx_prod_tx AS pt ON pt.kind = 'external_id' AND pt.key = i.external_id
      LEFT JOIN migrate_ext.status_map AS sm ON sm.xendit_status = i.status
     WHERE i.valid
    UNION ALL
    SELECT coalesce(pm.id, m.id), 'systemeio', s.product || ':' || s.email, s.email, s.product,
           coalesce(a.id, u.id), pr.manual_price, (SELECT r.currency FROM migrate_ext.validation_rules AS r), 'completed',
           'manual', pr.transaction_type,
           NULL, s.first_paid_at, NULL, NULL, s.first_paid_at, s.first_paid_at,
           jsonb_build_object('manual_payment', true, 'systemeio_contact_ids', pe.contact_ids,
                              'paid_tags', pr.paid_tags)
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product
      JOIN mx_person AS pe ON pe.email = s.email
      JOIN migrate_ext.identity_map AS m ON m.kind = 'manual_payment' AND m.key = s.product || ':' || s.email
      LEFT JOIN mx_auth AS a ON a.email = s.email
      LEFT JOIN mx_user AS u ON u.email = s.email
      -- production's own record of the same manual payment keeps its id
      LEFT JOIN mx_prod_tx AS pm ON pm.kind = 'manual' AND pm.key = pr.transaction_type || ':' || s.email
     WHERE s.manual;
    CREATE UNIQUE INDEX ON mx_tx (id);
    CREATE INDEX ON mx_tx (email, product);
    ANALYZE mx_sale, mx_user, mx_tx;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.stage_enrollments(sync_started timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    PERFORM 'PRAGMA:TABLE: mx_user (email text, id uuid, has_auth_user boolean, first_paid_at timestamptz, created_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_tx (id uuid, source text, record_id text, email text, product text, user_id uuid, amount numeric, currency text, status text, payment_method text, transaction_type text, external_id text, paid_at timestamptz, settled_at timestamptz, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, metadata jsonb)';
    PERFORM 'PRAGMA:TABLE: mx_enroll (user_id uuid, course_id uuid, email text, transaction_id uuid, enrolled_at timestamptz, id uuid)';
    CREATE TEMP TABLE mx_enroll ON COMMIT DROP AS
    SELECT u.id AS user_id, c.id AS course_id, s.email,
           (SELECT t.id FROM mx_tx AS t WHERE t.email = s.email AND t.product = s.product
             ORDER BY t.paid_at NULLS LAST, t.id LIMIT 1) AS transaction_id,
           coalesce(s.first_paid_at, sync_started) AS enrolled_at, NULL::uuid AS id
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product AND pr.enrollment_course IS NOT NULL
      JOIN public.courses AS c ON c.title = pr.enrollment_course
      JOIN mx_user AS u ON u.email = s.email;
    PERFORM migrate_ext.draw_ids('enrollment', ARRAY(SELECT user_id || ':' || course_id FROM mx_enroll));
    UPDATE mx_enroll AS e
       SET id = coalesce((SELECT pe.id FROM public.enrollments AS pe
                           WHERE pe.user_id = e.user_id AND pe.course_id = e.course_id),
                         (SELECT m.id FROM migrate_ext.identity_map AS m
                           WHERE m.kind = 'enrollment' AND m.key = e.user_id || ':' || e.course_id));
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.create_staging_tables()
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_table text;
BEGIN
    IF to_regclass('migrate_staging.auth_users') IS NOT NULL THEN
        DROP TABLE migrate_staging.auth_users;
    END IF;
    -- the previous staging goes in one statement: after a rollback its
    -- tables reference each other
    IF EXISTS (SELECT 1 FROM unnest(migrate_ext.swapped_tables()) AS t WHERE to_regclass(format('migrate_staging.%I', t)) IS NOT NULL) THEN
        EXECUTE 'DROP TABLE ' || (SELECT string_agg(format('migrate_staging.%I', t), ', ')
                                    FROM unnest(migrate_ext.swapped_tables()) AS t
                                   WHERE to_regclass(format('migrate_staging.%I', t)) IS NOT NULL);
    END IF;
    FOREACH v_table IN ARRAY migrate_ext.swapped_tables() LOOP
        PERFORM migrate_ext.create_staging_table(v_table);
    END LOOP;
    CREATE TABLE migrate_staging.auth_users (
        id         uuid PRIMARY KEY,
        email      text NOT NULL UNIQUE,
        first_name text,
        last_name  text,
        created_at timestamptz NOT NULL
    );
    PERFORM migrate_ext.close_table('migrate_staging.auth_users'::regclass);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.fill_staging(validation_run bigint)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM migrate_ext.insert_reporting(validation_run, 'unified_profiles',
        'INSERT INTO migrate_staging.unified_profiles
         SELECT r.* FROM public.unified_profiles AS p
           JOIN pg_temp.mx_user AS u ON u.id = p.id
           LEFT JOIN pg_temp.mx_person AS pe ON pe.email = u.email
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''email'', u.email, ''first_name'', coalesce(pe.first_name, p.first_name),
                    ''last_name'', coalesce(pe.last_name, p.last_name), ''tags'', coalesce(pe.tags, p.tags))) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT p.id::text AS key, p.email, ''production'' AS source FROM public.unified_profiles AS p
          WHERE p.id IN (SELECT id FROM pg_temp.mx_user)');
    PERFORM migrate_ext.insert_reporting(validation_run, 'unified_profiles',
        'INSERT INTO migrate_staging.unified_profiles (id, email, first_name, last_name, tags, created_at)
         SELECT u.id, u.email, pe.first_name, pe.last_name, pe.tags, u.created_at
           FROM pg_temp.mx_user AS u LEFT JOIN pg_temp.mx_person AS pe ON pe.email = u.email
          WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = u.id)
            AND ($1::text IS NULL OR u.id::text = $1)',
        'SELECT u.id::text AS key, u.email, ''api'' AS source FROM pg_temp.mx_user AS u
          WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = u.id)');

    PERFORM migrate_ext.insert_reporting(validation_run, 'transactions',
        'INSERT INTO migrate_staging.transactions
         SELECT r.* FROM public.transactions AS p
           JOIN pg_temp.mx_tx AS t ON t.id = p.id
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''user_id'', t.user_id, ''amount'', t.amount, ''currency'', t.currency, ''status'', t.status,
                    ''payment_method'', t.payment_method, ''transaction_type'', t.transaction_type,
                    ''external_id'', t.external_id, ''paid_at'', t.paid_at, ''settled_at'', t.settled_at,
                    ''expires_at'', t.expires_at, ''contact_email'', t.email,
                    ''metadata'', coalesce(p.metadata, ''{}''::jsonb) || t.metadata)) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT t.id::text AS key, t.email, t.source FROM pg_temp.mx_tx AS t
          WHERE EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)');
    PERFORM migrate_ext.insert_reporting(validation_run, 'transactions',
        'INSERT INTO migrate_staging.transactions
                (id, user_id, amount, currency, status, payment_method, transaction_type, external_id,
                 paid_at, settled_at, expires_at, metadata, contact_email, created_at, updated_at)
         SELECT t.id, t.user_id, t.amount, t.currency, t.status, t.payment_method, t.transaction_type,
                t.external_id, t.paid_at, t.settled_at, t.expires_at, t.metadata, t.email,
                t.created_at, t.updated_at
           FROM pg_temp.mx_tx AS t
          WHERE NOT EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)
            AND ($1::text IS NULL OR t.id::text = $1)',
        'SELECT t.id::text AS key, t.email, t.source FROM pg_temp.mx_tx AS t
          WHERE NOT EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)');

    PERFORM migrate_ext.insert_reporting(validation_run, 'enrollments',
        'INSERT INTO migrate_staging.enrollments
         SELECT r.* FROM public.enrollments AS p
           JOIN pg_temp.mx_enroll AS e ON e.id = p.id
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''transaction_id'', coalesce(p.transaction_id, e.transaction_id))) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT e.id::text AS key, e.email, ''production'' AS source FROM pg_temp.mx_enroll AS e
          WHERE EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)');
    PERFORM migrate_ext.insert_reporting(validation_run, 'enrollments',
        'INSERT INTO migrate_staging.enrollments (id, user_id, course_id, transaction_id, status, enrolled_at)
         SELECT e.id, e.user_id, e.course_id, e.transaction_id, ''active'', e.enrolled_at
           FROM pg_temp.mx_enroll AS e
          WHERE NOT EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)
            AND ($1::text IS NULL OR e.id::text = $1)',
        'SELECT e.id::text AS key, e.email, ''api'' AS source FROM pg_temp.mx_enroll AS e
          WHERE NOT EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)');
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.finish_validation(validation_run bigint, sync_started timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_table text;
BEGIN
    PERFORM migrate_ext.carry_over(validation_run, sync_started);
    -- is_student as the application's trigger (sync_is_student) keeps it:
    -- true exactly when the profile has an active enrollment
    UPDATE migrate_staging.unified_profiles AS s SET is_student = a.active
      FROM (SELECT p.id, EXISTS (SELECT 1 FROM migrate_staging.enrollments AS e
                                  WHERE e.user_id = p.id AND e.status = 'active') AS active
              FROM migrate_staging.unified_profiles AS p) AS a
     WHERE a.id = s.id AND s.is_student IS DISTINCT FROM a.active;

    -- new auth users: the profiles whose id no auth user has
    INSERT INTO migrate_staging.auth_users (id, email, first_name, last_name, created_at)
    SELECT s.id, s.email, s.first_name, s.last_name, s.created_at
      FROM migrate_staging.unified_profiles AS s
     WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id);

    PERFORM migrate_ext.check_staging_references(validation_run);

    -- production rows that will be gone after the launch
    FOREACH v_table IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format(
            'INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
             SELECT $1, ''info'', ''removed_at_launch'', %L, p.id::text, %s, %L
               FROM public.%I AS p
              WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.%I AS s WHERE s.id = p.id)',
            v_table, migrate_ext.email_expression(v_table),
            format('production row of %s that the API data does not produce and nothing needs', v_table),
            v_table, v_table)
        USING validation_run;
    END LOOP;

    UPDATE migrate_ext.validation_runs AS v
       SET finished_at = clock_timestamp(),
           errors = (SELECT count(*) FROM migrate_ext.validation_issues AS q WHERE q.run_id = validation_run AND q.severity = 'error'),
           warnings = (SELECT count(*) FROM migrate_ext.validation_issues AS q WHERE q.run_id = validation_run AND q.severity = 'warning')
     WHERE v.run_id = validation_run;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swapped_relations(schema_name text DEFAULT 'public'::text)
 RETURNS TABLE(tbl text, ord integer, rel oid, reltype oid, typarray oid)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT c.relname::text, t.ord::integer, c.oid, c.reltype, ty.typarray
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, ord)
      JOIN pg_class AS c ON c.relname = t.name AND c.relnamespace = to_regnamespace(schema_name)
      JOIN pg_type AS ty ON ty.oid = c.reltype;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_dependents(schema_name text DEFAULT 'public'::text)
 RETURNS TABLE(tbl text, catalog regclass, deptype "char", object text, objid oid, objsubid integer, ord integer, rel oid, on_row_type boolean)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT s.tbl, d.classid::regclass, d.deptype,
           pg_describe_object(d.classid, d.objid, d.objsubid), d.objid, d.objsubid,
           s.ord, s.rel, d.refclassid = 'pg_type'::regclass
      FROM migrate_ext.swapped_relations(schema_name) AS s
      JOIN pg_depend AS d
        ON (d.refclassid = 'pg_class'::regclass AND d.refobjid = s.rel)
        OR (d.refclassid = 'pg_type'::regclass AND d.refobjid IN (s.reltype, s.typarray));
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.rewrite_dependents(rel oid)
 RETURNS TABLE(dependent oid, relkind "char")
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT DISTINCT v.oid, v.relkind
      FROM pg_depend AS d
      JOIN pg_rewrite AS w ON w.oid = d.objid
      JOIN pg_class AS v ON v.oid = w.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = rel AND v.oid <> rel;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_view_dependents()
 RETURNS TABLE(tbl text, ord integer, rel oid, dependent oid, relkind "char")
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT s.tbl, s.ord, s.rel, v.dependent, v.relkind
      FROM migrate_ext.swapped_relations() AS s
     CROSS JOIN LATERAL migrate_ext.rewrite_dependents(s.rel) AS v
     WHERE v.relkind IN ('v', 'm');
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_foreign_keys(all_schemas boolean DEFAULT false)
 RETURNS TABLE(conname name, src regclass, src_name name, src_swapped boolean, src_cols text[], dst regclass, dst_name name, dst_swapped boolean, dst_cols text[], conoid oid)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT c.conname, c.conrelid::regclass, cs.relname, ps.rel IS NOT NULL,
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY AS k(att, i)
                   JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.att ORDER BY k.i),
           c.confrelid::regclass, cd.relname, pd.rel IS NOT NULL,
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY AS k(att, i)
                   JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.att ORDER BY k.i),
           c.oid
      FROM pg_constraint AS c
      JOIN pg_class AS cs ON cs.oid = c.conrelid
      JOIN pg_class AS cd ON cd.oid = c.confrelid
      JOIN pg_namespace AS ns ON ns.oid = cs.relnamespace
      LEFT JOIN migrate_ext.swapped_relations() AS ps ON ps.rel = c.conrelid
      LEFT JOIN migrate_ext.swapped_relations() AS pd ON pd.rel = c.confrelid
     WHERE c.contype = 'f'
       AND (all_schemas OR ns.nspname NOT LIKE 'migrate\_%')
       AND (ps.rel IS NOT NULL OR pd.rel IS NOT NULL);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_privilege_refusals()
 RETURNS TABLE(tbl text, object text, reason text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH owned_dependents AS (
        -- views and materialized views over the table, replaced or re-created
        SELECT v.tbl, format('%s %s', CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
                             v.dependent::regclass) AS object, c.relowner AS owner
          FROM migrate_ext.swap_view_dependents() AS v JOIN pg_class AS c ON c.oid = v.dependent
        UNION ALL
        -- functions bound to the table or its row type, replaced
        SELECT d.tbl, d.object, f.proowner
          FROM migrate_ext.swap_dependents() AS d JOIN pg_proc AS f ON f.oid = d.objid
         WHERE d.catalog = 'pg_proc'::regclass
        UNION ALL
        -- other tables' policies and foreign keys, re-parsed or re-created
        SELECT d.tbl, d.object, c.relowner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_policy AS p ON p.oid = d.objid JOIN pg_class AS c ON c.oid = p.polrelid
         WHERE d.catalog = 'pg_policy'::regclass AND p.polrelid <> d.rel
        UNION ALL
        SELECT d.tbl, d.object, c.relowner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_constraint AS k ON k.oid = d.objid JOIN pg_class AS c ON c.oid = k.conrelid
         WHERE d.catalog = 'pg_constraint'::regclass AND k.contype = 'f' AND k.conrelid <> d.rel
        UNION ALL
        -- publications the table is moved out of and back into
        SELECT d.tbl, d.object, pb.pubowner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_publication_rel AS pr ON pr.oid = d.objid JOIN pg_publication AS pb ON pb.oid = pr.prpubid
         WHERE d.catalog = 'pg_publication_rel'::regclass
    )
    SELECT DISTINCT o.tbl, o.object,
           format('is owned by %s, and %s is not a member of that role, so the swap could not re-point it; '
                  'have its owner drop it before the launch and re-create it after, or run the launch as a member of %s',
                  o.owner::regrole, current_user, o.owner::regrole)
      FROM owned_dependents AS o
     WHERE NOT pg_has_role(current_user, o.owner, 'USAGE')
    UNION ALL
    SELECT s.tbl, format('column %s.%I', k.tbl, k.col),
           format('points at public.%s, and %s may not update and lock %s, so the swap could not re-point it; '
                  'grant it SELECT and UPDATE on %s for the launch', s.tbl, current_user, k.tbl, k.tbl)
      FROM migrate_ext.known_regclass_columns() AS k, migrate_ext.swapped_relations() AS s
     WHERE NOT (has_table_privilege(k.tbl, 'SELECT') AND has_table_privilege(k.tbl, 'UPDATE'))
    UNION ALL
    -- tables production's foreign keys reference: the new tables get the
    -- same foreign keys, which needs REFERENCES and a lock on them
    SELECT DISTINCT s.tbl, format('table %s', k.confrelid::regclass),
           format('is referenced by public.%s, and %s lacks REFERENCES or UPDATE on it, so the new table could not get the same foreign key; '
                  'grant both for the launch', s.tbl, current_user)
      FROM migrate_ext.swapped_relations() AS s JOIN pg_constraint AS k ON k.conrelid = s.rel AND k.contype = 'f'
     WHERE NOT pg_has_role(current_user, (SELECT r.relowner FROM pg_class AS r WHERE r.oid = k.confrelid), 'USAGE')
       AND NOT (has_table_privilege(k.confrelid, 'REFERENCES') AND has_table_privilege(k.confrelid, 'UPDATE'));
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_refusals()
 RETURNS TABLE(tbl text, object text, reason text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    -- kinds of dependents the swap does not handle at all
    SELECT d.tbl, d.object,
           format('depends on public.%s through %s, which the swap does not carry; drop it before the launch and re-create it after',
                  d.tbl, d.catalog)
      FROM migrate_ext.swap_dependents() AS d
     WHERE d.catalog NOT IN ('pg_type'::regclass, 'pg_class'::regclass, 'pg_constraint'::regclass,
                             'pg_rewrite'::regclass, 'pg_trigger'::regclass, 'pg_policy'::regclass,
                             'pg_statistic_ext'::regclass, 'pg_publication_rel'::regclass,
                             'pg_proc'::regclass, 'pg_attrdef'::regclass, 'pg_inherits'::regclass)
    UNION ALL
    -- rules on the table itself (a view's own _RETURN rule is a view, handled)
    SELECT c.relname::text, format('rule %s on public.%s', r.rulename, c.relname),
           'rewrites statements on the table and would not follow the swap; drop it before the launch and re-create it after'
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel JOIN pg_rewrite AS r ON r.ev_class = c.oid
     WHERE r.rulename <> '_RETURN'
    UNION ALL
    -- partitioning and inheritance
    SELECT c.relname::text, format('table public.%s', c.relname),
           'a partitioned table cannot be swapped by renaming; migrate its partitions instead'
      FROM migrate_ext.swapped_relations() AS s JOIN pg_class AS c ON c.oid = s.rel
     WHERE c.relkind = 'p'
    UNION ALL
    SELECT c.relname::text, format('table %s', i.inhrelid::regclass),
           format('inherits from public.%s, which would then be the backup; detach it (ALTER TABLE ... NO INHERIT) first', c.relname)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel JOIN pg_inherits AS i ON i.inhparent = c.oid
    UNION ALL
    SELECT c.relname::text, format('table public.%s', c.relname),
           format('is a partition or child of %s; swap the parent instead', i.inhparent::regclass)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel JOIN pg_inherits AS i ON i.inhrelid = c.oid
    UNION ALL
    -- columns of other tables typed as the table's row (or an array of it):
    -- their values would keep the backup's type
    -- (in a table, or in a composite type)
    SELECT c.relname::text, format('%s %s.%s', CASE o.relkind WHEN 'c' THEN 'attribute' ELSE 'column' END,
                                   CASE o.relkind WHEN 'c' THEN o.reltype::regtype::text ELSE a.attrelid::regclass::text END,
                                   a.attname),
           format('is of type public.%s (the table''s row type), which stays with the backup; change the %s''s type first',
                  c.relname, CASE o.relkind WHEN 'c' THEN 'attribute' ELSE 'column' END)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel
      JOIN pg_attribute AS a ON a.atttypid IN (s.reltype, s.typarray) AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_class AS o ON o.oid = a.attrelid AND o.relkind IN ('r', 'p', 'f', 'm', 'c')
    UNION ALL
    -- a materialized view over the table is dropped and created again,
    -- which anything built on it would not survive
    SELECT DISTINCT m.tbl, format('%s %s', CASE o.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, o.dependent::regclass),
           format('is built on materialized view %s, which the swap re-creates over public.%s; drop it before the launch and re-create it after',
                  m.dependent::regclass, m.tbl)
      FROM migrate_ext.swap_view_dependents() AS m
     CROSS JOIN LATERAL migrate_ext.rewrite_dependents(m.dependent) AS o
     WHERE m.relkind = 'm'
    UNION ALL
    -- security labels are not carried
    SELECT c.relname::text, format('security label of provider %s on public.%s', l.provider, c.relname),
           'is not carried by the swap; remove it before the launch and set it again after'
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel
      JOIN pg_seclabel AS l ON l.classoid = 'pg_class'::regclass AND l.objoid = c.oid
    UNION ALL
    -- what the launching role may not change
    SELECT x.tbl, x.object, x.reason FROM migrate_ext.swap_privilege_refusals() AS x
    UNION ALL
    -- a table that belongs to an extension is the extension's to change
    SELECT c.relname::text, format('table public.%s', c.relname),
           format('belongs to extension %s', e.extname)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel
      JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
      JOIN pg_extension AS e ON e.oid = d.refobjid
    ORDER BY 1, 2;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.view_relations(view_oid regclass)
 RETURNS TABLE(read oid)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH RECURSIVE reads(rel) AS (
        SELECT d.refobjid FROM pg_rewrite AS w
          JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                             AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.ev_class
         WHERE w.ev_class = view_oid
        UNION
        SELECT d.refobjid FROM reads AS r
          JOIN pg_rewrite AS w ON w.ev_class = r.rel
          JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                             AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.ev_class
    )
    SELECT r.rel FROM reads AS r;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.lock_for_swap(relations regclass[], shared regclass[] DEFAULT '{}'::regclass[])
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    attempts integer;
    per_attempt text;
    caller_timeout CONSTANT text := current_setting('lock_timeout');
    attempt integer := 0;
    rel record;
    waiting_for regclass;
    blocker regclass;
BEGIN
    PERFORM migrate_ext.load_settings();
    attempts := current_setting('migrate_ext.lock_retries')::integer + 1;
    per_attempt := current_setting('migrate_ext.lock_timeout');
    IF EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = ANY (relations || shared) AND c.relkind NOT IN ('r', 'p', 'v', 'f')) THEN
        RAISE EXCEPTION 'lock_for_swap() locks tables and views only'
              USING ERRCODE = 'wrong_object_type',
                    HINT = 'LOCK TABLE refuses materialized views and indexes; rebuild those after the swap.';
    END IF;
    LOOP
        attempt := attempt + 1;
        BEGIN
            PERFORM set_config('lock_timeout', per_attempt, true);
            -- tables first, then the views (locking a view locks the tables
            -- it reads, which are then already held), each in OID order
            FOR rel IN SELECT x.* FROM (SELECT r, 'ACCESS EXCLUSIVE' AS mode FROM unnest(relations) AS r
                                        UNION
                                        SELECT r, 'SHARE ROW EXCLUSIVE' FROM unnest(shared) AS r
                                         WHERE NOT r = ANY (relations)) AS x
                         JOIN pg_class AS c ON c.oid = x.r
                        ORDER BY c.relkind = 'v', x.r::oid LOOP
                waiting_for := rel.r;
                EXECUTE format('LOCK TABLE %s IN %s MODE', rel.r, rel.mode);
            END LOOP;
            PERFORM set_config('lock_timeout', caller_timeout, true);
            RETURN attempt;
        EXCEPTION WHEN lock_not_available THEN
            -- the attempt's subtransaction is gone, and every lock it took
            EXIT WHEN attempt >= attempts;
            PERFORM pg_sleep(least(0.05 * 2 ^ least(attempt, 10), 2.0) * (0.5 + random() / 2));
        END;
    END LOOP;
    -- the relation really waited on: a view's lock waits on what it reads
    SELECT l.relation::regclass INTO blocker
      FROM pg_locks AS l
     WHERE l.relation IN (SELECT waiting_for UNION ALL SELECT v.read FROM migrate_ext.view_relations(waiting_for) AS v)
       AND l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
       AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
     ORDER BY l.relation = waiting_for DESC, l.relation LIMIT 1;
    blocker := coalesce(blocker, waiting_for);
    RAISE EXCEPTION 'could not lock % for the swap: % attempts of % each timed out', blocker, attempt, per_attempt
          USING ERRCODE = 'lock_not_available',
                DETAIL = coalesce('Held by: ' || (SELECT string_agg(format('pid %s (%s, %s)', a.pid, coalesce(nullif(a.application_name, ''), a.usename), a.state), ', ' ORDER BY a.pid)
                                                  FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
                                                 WHERE l.relation = blocker AND l.granted AND l.pid <> pg_backend_pid()),
                                  'another session'),
                HINT = 'Nothing was changed. Retry when those sessions are done, or raise migrate_ext.lock_retries or migrate_ext.lock_timeout.';
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.create_auth_users()
 RETURNS bigint
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    n bigint;
    confirm boolean := coalesce((SELECT r.email_confirm FROM migrate_ext.new_user_rules AS r), true);
BEGIN
    IF to_regclass('migrate_staging.auth_users') IS NULL THEN
        RAISE EXCEPTION 'there is no staging: migrate_staging.auth_users is missing'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); first.';
    END IF;
    IF EXISTS (SELECT 1 FROM migrate_staging.auth_users AS s
                 JOIN auth.users AS u ON lower(u.email) = lower(s.email) AND u.id <> s.id) THEN
        RAISE EXCEPTION 'an auth user with the e-mail of a staged new user already exists'
              USING ERRCODE = 'unique_violation',
                    HINT = 'Somebody signed up after the validation: run validate_and_prepare_clean_data() again.';
    END IF;

    INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                            confirmation_token, recovery_token, email_change_token_new, email_change,
                            email_change_token_current, phone_change, phone_change_token, reauthentication_token,
                            raw_app_meta_data, raw_user_meta_data, is_super_admin, is_sso_user, is_anonymous,
                            created_at, updated_at)
    SELECT '00000000-0000-0000-0000-000000000000', s.id, 'authenticated', 'authenticated', s.email, '',
           CASE WHEN confirm THEN now() END,
           '', '', '', '', '', '', '', '',
           '{"provider": "email", "providers": ["email"]}'::jsonb,
           jsonb_strip_nulls(jsonb_build_object('email', s.email, 'email_verified', confirm,
                                                'first_name', s.first_name, 'last_name', s.last_name)),
           false, false, false, s.created_at, now()
      FROM migrate_staging.auth_users AS s
     WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id);
    GET DIAGNOSTICS n = ROW_COUNT;

    IF to_regclass('auth.identities') IS NOT NULL THEN
        INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at)
        SELECT s.id::text, s.id,
               jsonb_build_object('sub', s.id::text, 'email', s.email, 'email_verified', confirm, 'phone_verified', false),
               'email', now(), now()
          FROM migrate_staging.auth_users AS s
         WHERE NOT EXISTS (SELECT 1 FROM auth.identities AS i WHERE i.provider = 'email' AND i.provider_id = s.id::text);
    END IF;
    RETURN n;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_pairs(incoming text, outgoing_to text)
 RETURNS TABLE(ord integer, tbl text, prod oid, inc oid, q_prod text, q_inc text, q_out text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT t.ord::integer, t.name, format('public.%I', t.name)::regclass::oid,
           format('%I.%I', incoming, t.name)::regclass::oid,
           format('public.%I', t.name), format('%I.%I', incoming, t.name), format('%I.%I', outgoing_to, t.name)
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, ord);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.references_in(def text, to_schema text)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY migrate_ext.swapped_tables() LOOP
        def := replace(def, format(' REFERENCES public.%I(', s), format(' REFERENCES %I.%I(', to_schema, s));
    END LOOP;
    RETURN def;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.add_foreign_key_statements(target text, conname name, def text, validated boolean, drop_first boolean DEFAULT false)
 RETURNS TABLE(i integer, statement text)
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT x.i, x.statement
      FROM (VALUES (1, CASE WHEN drop_first THEN format('ALTER TABLE %s DROP CONSTRAINT %I', target, conname) END),
                   (2, format('ALTER TABLE %s ADD CONSTRAINT %I %s%s', target, conname, def,
                              CASE WHEN validated THEN ' NOT VALID' ELSE '' END)),
                   (3, CASE WHEN validated THEN format('ALTER TABLE %s VALIDATE CONSTRAINT %I', target, conname) END)) AS x(i, statement)
     WHERE x.statement IS NOT NULL;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.missing_foreign_keys(incoming text, outgoing_to text)
 RETURNS TABLE(ord integer, q_inc text, conname name, def text, validated boolean, dst regclass, dst_swapped boolean, in_incoming boolean)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT p.ord, p.q_inc, f.conname, x.def, k.convalidated, f.dst, f.dst_swapped, i.oid IS NOT NULL
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN migrate_ext.swap_foreign_keys(true) AS f ON f.src = p.prod
      JOIN pg_constraint AS k ON k.oid = f.conoid
     CROSS JOIN LATERAL (SELECT migrate_ext.references_in(pg_get_constraintdef(k.oid), incoming) AS def) AS x
      LEFT JOIN pg_constraint AS i ON i.conrelid = p.inc AND i.conname = f.conname
     WHERE NOT coalesce(i.contype = 'f' AND pg_get_constraintdef(i.oid) = x.def, false);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_own_foreign_keys(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT CASE WHEN m.dst_swapped THEN 'prepare' ELSE 'link' END, m.ord, 'own_fks',
           row_number() OVER (ORDER BY m.ord, m.conname, s.i), s.statement
      FROM migrate_ext.missing_foreign_keys(incoming, outgoing_to) AS m
     CROSS JOIN LATERAL migrate_ext.add_foreign_key_statements(m.q_inc, m.conname, m.def, m.validated, m.in_incoming) AS s;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_inbound_foreign_keys(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT x.stage, p.ord, 'inbound_fks', row_number() OVER (ORDER BY p.ord, f.src, f.conname, x.i), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN migrate_ext.swap_foreign_keys(true) AS f ON f.dst = p.prod AND NOT f.src_swapped
      JOIN pg_constraint AS k ON k.oid = f.conoid
     CROSS JOIN LATERAL (
           SELECT 'detach', 0, format('ALTER TABLE %s DROP CONSTRAINT %I', f.src, f.conname)
           UNION ALL
           SELECT 'repoint', a.i, a.statement
             FROM migrate_ext.add_foreign_key_statements(f.src::text, f.conname, pg_get_constraintdef(k.oid), k.convalidated) AS a
           UNION ALL
           SELECT 'repoint', 4, migrate_ext.comment_statement(format('CONSTRAINT %I ON %s', f.conname, f.src), d.note)
             FROM obj_description(k.oid, 'pg_constraint') AS d(note) WHERE d.note IS NOT NULL) AS x(stage, i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_publications(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT x.stage, p.ord, 'publications', row_number() OVER (ORDER BY p.ord, pb.pubname), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_publication_rel AS pr ON pr.prrelid = p.prod
      JOIN pg_publication AS pb ON pb.oid = pr.prpubid
     CROSS JOIN LATERAL (
           SELECT 'detach', format('ALTER PUBLICATION %I DROP TABLE %s', pb.pubname, p.q_prod)
           UNION ALL
           SELECT 'repoint', format('ALTER PUBLICATION %I ADD TABLE %s%s%s', pb.pubname, p.q_prod,
                                    coalesce(' (' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                                        FROM pg_attribute AS a
                                                       WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)) || ')', ''),
                                    coalesce(' WHERE (' || pg_get_expr(pr.prqual, pr.prrelid) || ')', ''))) AS x(stage, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_moves(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'move_out', p.ord, 'move', 1::bigint, format('ALTER TABLE %s SET SCHEMA %I', p.q_prod, outgoing_to)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
    UNION ALL
    SELECT 'move_in', p.ord, 'move', 1, format('ALTER TABLE %s SET SCHEMA public', p.q_inc)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_statistics(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'prepare', p.ord, 'analyze', 1::bigint, format('ANALYZE %s', p.q_inc)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
    UNION ALL
    SELECT 'detach', p.ord, 'ext_statistics', row_number() OVER (ORDER BY p.ord, x.stxname),
           format('ALTER STATISTICS public.%I SET SCHEMA %I', x.stxname, outgoing_to)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_statistic_ext AS x ON x.stxrelid = p.prod AND x.stxnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'move_in', p.ord, 'ext_statistics', row_number() OVER (ORDER BY p.ord, x.stxname),
           format('ALTER STATISTICS %I.%I SET SCHEMA public', incoming, x.stxname)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_statistic_ext AS x ON x.stxrelid = p.inc AND x.stxnamespace = incoming::regnamespace
    UNION ALL
    SELECT 'carry', p.ord, 'ext_statistics', row_number() OVER (ORDER BY p.ord, x.stxname), pg_get_statisticsobjdef(x.oid)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_statistic_ext AS x ON x.stxrelid = p.prod
     WHERE NOT EXISTS (SELECT 1 FROM pg_statistic_ext AS y WHERE y.stxrelid = p.inc AND y.stxname = x.stxname)
    UNION ALL
    SELECT 'carry', p.ord, 'column_statistics', row_number() OVER (ORDER BY p.ord, a.attnum, s.i), s.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_attribute AS a ON a.attrelid = p.prod AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_attribute AS i ON i.attrelid = p.inc AND i.attname = a.attname
     CROSS JOIN LATERAL (SELECT ARRAY(SELECT o FROM unnest(a.attoptions) AS o WHERE o NOT LIKE 'pg\_%' ORDER BY o) AS want,
                                ARRAY(SELECT o FROM unnest(i.attoptions) AS o WHERE o NOT LIKE 'pg\_%' ORDER BY o) AS have) AS o
     CROSS JOIN LATERAL (
           -- (PostgreSQL 17 stores the default as NULL, earlier versions as -1)
           SELECT 1, format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s', p.q_prod, a.attname, coalesce(a.attstattarget, -1))
            WHERE a.attstattarget IS DISTINCT FROM i.attstattarget
           UNION ALL
           SELECT 2, format('ALTER TABLE %s ALTER COLUMN %I RESET (%s)', p.q_prod, a.attname,
                            (SELECT string_agg(split_part(x, '=', 1), ', ') FROM unnest(o.have) AS x))
            WHERE o.want <> o.have AND cardinality(o.have) > 0
           UNION ALL
           SELECT 3, format('ALTER TABLE %s ALTER COLUMN %I SET (%s)', p.q_prod, a.attname, array_to_string(o.want, ', '))
            WHERE o.want <> o.have AND cardinality(o.want) > 0) AS s(i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_owner_grants(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'owner_grants', row_number() OVER (ORDER BY p.ord, x.i, x.k), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod
      JOIN pg_class AS ic ON ic.oid = p.inc
     CROSS JOIN LATERAL (
           SELECT 1, 0, format('ALTER TABLE %s OWNER TO %s', p.q_prod, c.relowner::regrole::text)
            WHERE ic.relowner <> c.relowner
           UNION ALL
           SELECT 2, 0, migrate_ext.set_acl_statement('TABLE', p.q_prod, c.relacl)
           UNION ALL
           SELECT 3, 0, migrate_ext.set_acl_statement('TABLE', p.q_out, NULL)
           UNION ALL
           SELECT 4, a.attnum, format('SELECT migrate_ext.set_column_acl(%L::regclass, %L::name, NULL::aclitem[])', p.q_out, a.attname)
             FROM pg_attribute AS a
            WHERE a.attrelid = p.prod AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
           UNION ALL
           SELECT 5, row_number() OVER (ORDER BY g.attname),
                  format('SELECT migrate_ext.set_column_acl(%L::regclass, %L::name, %L::aclitem[])', p.q_prod, g.attname,
                         (SELECT a.attacl FROM pg_attribute AS a WHERE a.attrelid = p.prod AND a.attname = g.attname))
             FROM (SELECT a.attname FROM pg_attribute AS a
                    WHERE a.attrelid IN (p.prod, p.inc) AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
                    GROUP BY a.attname) AS g) AS x(i, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_rls_policies(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'rls', x.i, x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod
     CROSS JOIN LATERAL (VALUES (1::bigint, format('ALTER TABLE %s %s ROW LEVEL SECURITY', p.q_prod,
                                                   CASE WHEN c.relrowsecurity THEN 'ENABLE' ELSE 'DISABLE' END)),
                                (2, format('ALTER TABLE %s %s ROW LEVEL SECURITY', p.q_prod,
                                           CASE WHEN c.relforcerowsecurity THEN 'FORCE' ELSE 'NO FORCE' END))) AS x(i, statement)
    UNION ALL
    SELECT 'carry', p.ord, 'policies', row_number() OVER (ORDER BY p.ord, x.i, x.polname, x.k), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
     CROSS JOIN LATERAL (
           SELECT 1, y.polname, 0, format('DROP POLICY %I ON %s', y.polname, p.q_prod)
             FROM pg_policy AS y WHERE y.polrelid = p.inc
           UNION ALL
           SELECT 2, y.polname, z.k, z.statement
             FROM pg_policy AS y
            CROSS JOIN LATERAL (
                  SELECT 1, format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', y.polname, p.q_prod,
                                   CASE WHEN y.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                                   CASE y.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                                 WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                                   (SELECT string_agg(migrate_ext.grantee_name(g), ', ' ORDER BY g) FROM unnest(y.polroles) AS g),
                                   coalesce(' USING (' || pg_get_expr(y.polqual, y.polrelid) || ')', ''),
                                   coalesce(' WITH CHECK (' || pg_get_expr(y.polwithcheck, y.polrelid) || ')', ''))
                  UNION ALL
                  SELECT 2, migrate_ext.comment_statement(format('POLICY %I ON %s', y.polname, p.q_prod), d.note)
                    FROM obj_description(y.oid, 'pg_policy') AS d(note) WHERE d.note IS NOT NULL) AS z(k, statement)
            WHERE y.polrelid = p.prod) AS x(i, polname, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_replica_identity(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'replica_identity', 1::bigint,
           format('ALTER TABLE %s REPLICA IDENTITY %s', p.q_prod,
                  CASE c.relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'
                       WHEN 'i' THEN 'USING INDEX ' || quote_ident((SELECT ic.relname FROM pg_index AS i
                                                                    JOIN pg_class AS ic ON ic.oid = i.indexrelid
                                                                   WHERE i.indrelid = p.prod AND i.indisreplident))
                       ELSE 'DEFAULT' END)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_storage(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'storage', x.i, x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod
      LEFT JOIN pg_class AS ct ON ct.oid = c.reltoastrelid
      JOIN pg_class AS i ON i.oid = p.inc
      LEFT JOIN pg_class AS it ON it.oid = i.reltoastrelid
     CROSS JOIN LATERAL (
           SELECT 1::bigint, format('ALTER TABLE %s RESET (%s)', p.q_prod,
                                    (SELECT string_agg(quote_ident(split_part(o, '=', 1)), ', ') FROM unnest(i.reloptions) AS o))
            WHERE i.reloptions IS NOT NULL
           UNION ALL
           SELECT 2, format('ALTER TABLE %s RESET (%s)', p.q_prod,
                            (SELECT string_agg('toast.' || quote_ident(split_part(o, '=', 1)), ', ') FROM unnest(it.reloptions) AS o))
            WHERE it.reloptions IS NOT NULL
           UNION ALL
           SELECT 3, format('ALTER TABLE %s SET (%s)', p.q_prod,
                            (SELECT string_agg(o, ', ')
                               FROM (SELECT quote_ident(split_part(o, '=', 1)) || ' = ' || quote_literal(substr(o, strpos(o, '=') + 1)) AS o
                                       FROM unnest(c.reloptions) AS o
                                     UNION ALL
                                     SELECT 'toast.' || quote_ident(split_part(o, '=', 1)) || ' = ' || quote_literal(substr(o, strpos(o, '=') + 1))
                                       FROM unnest(ct.reloptions) AS o) AS y))
            WHERE c.reloptions IS NOT NULL OR ct.reloptions IS NOT NULL) AS x(i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_sequences(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r record;
BEGIN
    stage := 'carry';
    slot := 'sequences';
    n := 0;
    FOR r IN SELECT p.ord, p.tbl, p.q_prod, a.attname, sq.relname AS seqname, sn.nspname AS seqschema, sq.relacl,
                    EXISTS (SELECT 1 FROM pg_attrdef AS ad
                              JOIN pg_attribute AS i ON i.attrelid = ad.adrelid AND i.attnum = ad.adnum
                              JOIN pg_depend AS dd ON dd.classid = 'pg_attrdef'::regclass AND dd.objid = ad.oid
                                                  AND dd.refclassid = 'pg_class'::regclass AND dd.refobjid = sq.oid
                             WHERE ad.adrelid = p.inc AND i.attname = a.attname) AS shared,
                    (SELECT s2.relname FROM pg_depend AS d2
                       JOIN pg_class AS s2 ON s2.oid = d2.objid AND s2.relkind = 'S'
                       JOIN pg_attribute AS i ON i.attrelid = p.inc AND i.attnum = d2.refobjsubid
                      WHERE d2.classid = 'pg_class'::regclass AND d2.refclassid = 'pg_class'::regclass
                        AND d2.refobjid = p.inc AND d2.deptype = 'i' AND i.attname = a.attname) AS identity_sequence
               FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
               JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                                  AND d.refobjid = p.prod AND d.deptype IN ('a', 'i')
               JOIN pg_class AS sq ON sq.oid = d.objid AND sq.relkind = 'S'
               JOIN pg_namespace AS sn ON sn.oid = sq.relnamespace
               JOIN pg_attribute AS a ON a.attrelid = p.prod AND a.attnum = d.refobjsubid
              ORDER BY p.ord, a.attnum LOOP
        tbl := r.ord;
        IF r.shared THEN
            RETURN QUERY SELECT stage, tbl, slot, n + x.i, x.s
                           FROM unnest(ARRAY[format('ALTER SEQUENCE %I.%I OWNED BY NONE', outgoing_to, r.seqname),
                                             format('ALTER SEQUENCE %I.%I SET SCHEMA %I', outgoing_to, r.seqname, r.seqschema),
                                             format('ALTER SEQUENCE %I.%I OWNED BY %s.%I', r.seqschema, r.seqname, r.q_prod, r.attname)])
                                WITH ORDINALITY AS x(s, i);
        ELSIF r.identity_sequence IS NOT NULL THEN
            RETURN QUERY SELECT stage, tbl, slot, n + x.i, x.s
                           FROM unnest(ARRAY[format('SELECT pg_catalog.setval(%L::regclass, greatest((SELECT last_value FROM %I.%I), (SELECT coalesce(max(%I), 0) FROM %s)))',
                                                    format('public.%I', r.identity_sequence), outgoing_to, r.seqname, r.attname, r.q_prod),
                                             migrate_ext.set_acl_statement('SEQUENCE', format('public.%I', r.identity_sequence), r.relacl),
                                             migrate_ext.set_acl_statement('SEQUENCE', format('%I.%I', outgoing_to, r.seqname), NULL)])
                                WITH ORDINALITY AS x(s, i);
        ELSE
            RAISE EXCEPTION 'column %.% uses sequence %.%, which %.% neither shares nor replaces with an identity',
                            r.q_prod, r.attname, r.seqschema, r.seqname, incoming, r.tbl
                  USING ERRCODE = 'feature_not_supported',
                        HINT = 'Nothing was changed. Build the incoming table with the same column default (LIKE ... INCLUDING ALL does).';
        END IF;
        n := n + 3;
    END LOOP;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_triggers(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'triggers', row_number() OVER (ORDER BY p.ord, x.i, x.tgname, x.k), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
     CROSS JOIN LATERAL (
           SELECT 1, g.tgname, 0, format('DROP TRIGGER %I ON %s', g.tgname, p.q_prod)
             FROM pg_trigger AS g WHERE g.tgrelid = p.inc AND NOT g.tgisinternal
           UNION ALL
           SELECT 2, g.tgname, z.k, z.statement
             FROM pg_trigger AS g
            CROSS JOIN LATERAL (
                  SELECT 1, pg_get_triggerdef(g.oid)
                  UNION ALL
                  SELECT 2, format('ALTER TABLE %s %s TRIGGER %I', p.q_prod,
                                   CASE g.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                                                    ELSE 'ENABLE REPLICA' END, g.tgname)
                   WHERE g.tgenabled <> 'O'
                  UNION ALL
                  SELECT 3, migrate_ext.comment_statement(format('TRIGGER %I ON %s', g.tgname, p.q_prod), d.note)
                    FROM obj_description(g.oid, 'pg_trigger') AS d(note) WHERE d.note IS NOT NULL) AS z(k, statement)
            WHERE g.tgrelid = p.prod AND NOT g.tgisinternal
           UNION ALL
           -- the table moved out (backup, or staging after a rollback) is
           -- inert: a cascade from a live table must not run the
           -- application's triggers on it (they write to live tables);
           -- coming back, it gets production's triggers and states again
           SELECT 3, '', 0, format('ALTER TABLE %s DISABLE TRIGGER USER', p.q_out)
            WHERE EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = p.prod AND NOT g.tgisinternal)) AS x(i, tgname, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_comments(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'comments', row_number() OVER (ORDER BY p.ord, x.i, x.k1, x.k2), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
     CROSS JOIN LATERAL (
           SELECT 1, 0, NULL::name, migrate_ext.comment_statement('TABLE ' || p.q_prod, obj_description(p.prod, 'pg_class'))
           UNION ALL
           SELECT 2, i.attnum, NULL, migrate_ext.comment_statement(format('COLUMN %s.%I', p.q_prod, i.attname), col_description(p.prod, a.attnum))
             FROM pg_attribute AS i LEFT JOIN pg_attribute AS a ON a.attrelid = p.prod AND a.attname = i.attname
            WHERE i.attrelid = p.inc AND i.attnum > 0 AND NOT i.attisdropped
              AND col_description(p.prod, a.attnum) IS DISTINCT FROM col_description(p.inc, i.attnum)
           UNION ALL
           SELECT 3, 0, i.conname, migrate_ext.comment_statement(format('CONSTRAINT %I ON %s', i.conname, p.q_prod),
                                                                 obj_description(k.oid, 'pg_constraint'))
             FROM pg_constraint AS i LEFT JOIN pg_constraint AS k ON k.conrelid = p.prod AND k.conname = i.conname
            WHERE i.conrelid = p.inc
              AND obj_description(k.oid, 'pg_constraint') IS DISTINCT FROM obj_description(i.oid, 'pg_constraint')
           UNION ALL
           SELECT 4, 0, ic.relname, migrate_ext.comment_statement(format('INDEX public.%I', ic.relname), obj_description(pc.oid, 'pg_class'))
             FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
             LEFT JOIN (pg_index AS pi JOIN pg_class AS pc ON pc.oid = pi.indexrelid)
                    ON pi.indrelid = p.prod AND pc.relname = ic.relname
            WHERE i.indrelid = p.inc
              AND obj_description(pc.oid, 'pg_class') IS DISTINCT FROM obj_description(ic.oid, 'pg_class')) AS x(i, k1, k2, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_views(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'repoint', w.ord, CASE v.relkind WHEN 'v' THEN 'views' ELSE 'matviews' END,
           row_number() OVER (ORDER BY w.ord, v.oid, x.i, x.k), x.statement
      FROM (SELECT d.dependent, min(d.ord) AS ord FROM migrate_ext.swap_view_dependents() AS d GROUP BY 1) AS w
      JOIN pg_class AS v ON v.oid = w.dependent
     CROSS JOIN LATERAL (SELECT v.oid::regclass AS view, pg_get_viewdef(v.oid) AS def,
                                coalesce(' WITH (' || array_to_string(v.reloptions, ', ') || ')', '') AS options) AS o
     CROSS JOIN LATERAL (
           SELECT 1, 0::bigint, format('CREATE OR REPLACE VIEW %s%s AS %s', o.view, o.options, rtrim(o.def, ';'))
            WHERE v.relkind = 'v'
           UNION ALL
           SELECT 2, 0, format('DROP MATERIALIZED VIEW %s', o.view) WHERE v.relkind = 'm'
           UNION ALL
           SELECT 3, 0, format('CREATE MATERIALIZED VIEW %s%s AS %s WITH %s', o.view, o.options, rtrim(o.def, ';'),
                               CASE WHEN v.relispopulated THEN 'DATA' ELSE 'NO DATA' END)
            WHERE v.relkind = 'm'
           UNION ALL
           SELECT 4, i.indexrelid::bigint, pg_get_indexdef(i.indexrelid) FROM pg_index AS i WHERE i.indrelid = v.oid AND v.relkind = 'm'
           UNION ALL
           SELECT 5, 0, format('ALTER MATERIALIZED VIEW %s OWNER TO %s', o.view, v.relowner::regrole::text) WHERE v.relkind = 'm'
           UNION ALL
           SELECT 6, 0, migrate_ext.set_acl_statement('TABLE', o.view::text, v.relacl) WHERE v.relkind = 'm'
           UNION ALL
           SELECT 7, 0, migrate_ext.comment_statement('MATERIALIZED VIEW ' || o.view, d.note)
             FROM obj_description(v.oid, 'pg_class') AS d(note) WHERE d.note IS NOT NULL AND v.relkind = 'm') AS x(i, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_other_policies(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'repoint', w.ord, 'other_policies', row_number() OVER (ORDER BY w.ord, p.polrelid, p.polname),
           format('ALTER POLICY %I ON %s%s%s', p.polname, p.polrelid::regclass,
                  coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', ''),
                  coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', ''))
      FROM (SELECT d.objid, min(d.ord) AS ord
              FROM migrate_ext.swap_dependents() AS d JOIN pg_policy AS p ON p.oid = d.objid
             WHERE d.catalog = 'pg_policy'::regclass AND NOT d.on_row_type AND p.polrelid <> d.rel
             GROUP BY 1) AS w
      JOIN pg_policy AS p ON p.oid = w.objid;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_functions(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'repoint', w.ord, 'functions', row_number() OVER (ORDER BY w.ord, f.oid, x.i), x.statement
      FROM (SELECT DISTINCT ON (d.objid) d.objid, d.ord, d.tbl, s.reltype, s.typarray
              FROM migrate_ext.swap_dependents() AS d JOIN migrate_ext.swapped_relations() AS s ON s.rel = d.rel
             WHERE d.catalog = 'pg_proc'::regclass
             ORDER BY d.objid, d.ord) AS w
      JOIN pg_proc AS f ON f.oid = w.objid
      JOIN pg_namespace AS ns ON ns.oid = f.pronamespace
     CROSS JOIN LATERAL (
           SELECT format('%I.%I(%s)', ns.nspname, f.proname,
                         (SELECT string_agg(format_type(a, NULL), ', ' ORDER BY i) FROM unnest(f.proargtypes::oid[]) WITH ORDINALITY AS x(a, i))) AS new_sig,
                  format('%I.%I(%s)', ns.nspname, f.proname,
                         (SELECT string_agg(CASE WHEN a = w.reltype THEN format('%I.%I', outgoing_to, w.tbl)
                                                 WHEN a = w.typarray THEN format('%I.%I[]', outgoing_to, w.tbl)
                                                 ELSE format_type(a, NULL) END, ', ' ORDER BY i)
                            FROM unnest(f.proargtypes::oid[]) WITH ORDINALITY AS x(a, i))) AS old_sig,
                  (f.prorettype IN (w.reltype, w.typarray)
                   OR w.reltype = ANY (coalesce(f.proallargtypes, f.proargtypes::oid[]))
                   OR w.typarray = ANY (coalesce(f.proallargtypes, f.proargtypes::oid[]))) AS type_bound,
                  rtrim(pg_get_functiondef(f.oid), E'\n') AS def) AS o
     CROSS JOIN LATERAL (
           SELECT 1, 'DROP ROUTINE ' || o.old_sig WHERE o.type_bound
           UNION ALL
           SELECT 2, o.def
           UNION ALL
           SELECT 3, format('ALTER ROUTINE %s OWNER TO %s', o.new_sig, f.proowner::regrole::text) WHERE o.type_bound
           UNION ALL
           SELECT 4, migrate_ext.set_acl_statement('FUNCTION', o.new_sig, f.proacl) WHERE o.type_bound
           UNION ALL
           SELECT 5, migrate_ext.comment_statement('ROUTINE ' || o.new_sig, d.note)
             FROM obj_description(f.oid, 'pg_proc') AS d(note) WHERE d.note IS NOT NULL AND o.type_bound) AS x(i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_realtime(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r record;
    found_regclass boolean;
BEGIN
    stage := 'repoint';
    slot := 'realtime';
    n := 0;
    FOR r IN SELECT p.ord, p.prod, p.q_prod, p.q_out, k.tbl AS regclass_table, k.col AS attname
               FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
              CROSS JOIN migrate_ext.known_regclass_columns() AS k
              ORDER BY p.ord, 5, 6 LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1)', r.regclass_table, r.attname) INTO found_regclass USING r.prod;
        CONTINUE WHEN NOT found_regclass;
        tbl := r.ord;
        n := n + 1;
        statement := format('UPDATE %s SET %I = %L::regclass WHERE %I = %L::regclass',
                            r.regclass_table, r.attname, r.q_prod, r.attname, r.q_out);
        RETURN NEXT;
    END LOOP;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_lock_set(incoming text)
 RETURNS regclass[]
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT array_agg(DISTINCT r ORDER BY r)
      FROM (SELECT s.rel::regclass AS r FROM migrate_ext.swapped_relations() AS s
            UNION ALL
            SELECT format('%I.%I', incoming, t)::regclass FROM unnest(migrate_ext.swapped_tables()) AS t
            UNION ALL
            SELECT f.src FROM migrate_ext.swap_foreign_keys(true) AS f WHERE f.dst_swapped AND NOT f.src_swapped
            UNION ALL
            SELECT p.polrelid::regclass FROM migrate_ext.swap_dependents() AS d JOIN pg_policy AS p ON p.oid = d.objid
             WHERE d.catalog = 'pg_policy'::regclass AND NOT d.on_row_type
               AND p.polrelid NOT IN (SELECT s.rel FROM migrate_ext.swapped_relations() AS s)
            UNION ALL
            SELECT v.dependent::regclass FROM migrate_ext.swap_view_dependents() AS v WHERE v.relkind = 'v') AS x;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_plan_order(stage text, slot text)
 RETURNS integer[]
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT ARRAY[array_position('{prepare,lock,link,detach,move_out,move_in,carry,repoint}'::text[], stage),
                 array_position('{own_fks,analyze,lock,inbound_fks,publications,move,ext_statistics,owner_grants,rls,'
                                'replica_identity,storage,sequences,column_statistics,policies,triggers,comments,views,'
                                'matviews,other_policies,functions,realtime,finish}'::text[], slot)];
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_plan(incoming text, outgoing_to text)
 RETURNS TABLE(step integer, phase text, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH exclusive AS (
        SELECT migrate_ext.swap_lock_set(incoming) AS rels
    ), referenced AS (
        -- tables the new foreign keys reference are locked in SHARE ROW
        -- EXCLUSIVE mode (what adding a foreign key takes); swapped ones
        -- are locked exclusively anyway
        SELECT ARRAY(SELECT DISTINCT m.dst FROM migrate_ext.missing_foreign_keys(incoming, outgoing_to) AS m, exclusive AS e
                      WHERE NOT m.dst_swapped AND NOT m.dst = ANY (e.rels)
                        AND NOT m.dst IN (SELECT s.rel FROM migrate_ext.swapped_relations() AS s
                                          UNION ALL
                                          SELECT s.rel FROM migrate_ext.swapped_relations(incoming) AS s)
                      ORDER BY m.dst) AS rels
    ), statements AS (
        SELECT g.* FROM migrate_ext.plan_own_foreign_keys(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_inbound_foreign_keys(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_publications(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_moves(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_statistics(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_owner_grants(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_rls_policies(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_replica_identity(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_storage(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_sequences(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_triggers(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_comments(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_views(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_other_policies(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_functions(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_realtime(incoming, outgoing_to) AS g
        UNION ALL
        SELECT 'lock', NULL, 'lock', 1, format('SELECT migrate_ext.lock_for_swap(%L::regclass[], %L::regclass[])',
                                               e.rels, r.rels::regclass[])
          FROM exclusive AS e, referenced AS r
        UNION ALL
        -- PostgREST reloads its schema cache when this commits (item 29)
        SELECT 'repoint', NULL, 'finish', x.n, x.statement
          FROM (VALUES (1::bigint, 'NOTIFY pgrst, ''reload schema'''::text),
                       (2, format('SELECT migrate_ext.check_swap_invariant(%L::text)', outgoing_to))) AS x(n, statement)
    )
    SELECT (row_number() OVER (ORDER BY (migrate_ext.swap_plan_order(s.stage, s.slot))[1], s.tbl,
                                        (migrate_ext.swap_plan_order(s.stage, s.slot))[2], s.n))::integer,
           CASE WHEN s.stage IN ('prepare', 'lock') THEN s.stage ELSE 'swap' END, s.statement
      FROM statements AS s
     ORDER BY 1;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.outside_dependents(schema_name text)
 RETURNS SETOF text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT DISTINCT coalesce((SELECT format('%s %s', CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
                                            v.oid::regclass)
                                FROM pg_rewrite AS w JOIN pg_class AS v ON v.oid = w.ev_class
                               WHERE d.catalog = 'pg_rewrite'::regclass AND w.oid = d.objid
                                 AND w.rulename = '_RETURN' AND v.relkind IN ('v', 'm')),
                             d.object)
      FROM migrate_ext.swap_dependents(schema_name) AS d
     WHERE (d.deptype = 'n' OR d.catalog = 'pg_publication_rel'::regclass)
       AND coalesce(CASE d.catalog
                        WHEN 'pg_constraint'::regclass THEN (SELECT k.conrelid FROM pg_constraint AS k WHERE k.oid = d.objid)
                        WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger AS g WHERE g.oid = d.objid)
                        WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy AS p WHERE p.oid = d.objid)
                        WHEN 'pg_rewrite'::regclass THEN (SELECT w.ev_class FROM pg_rewrite AS w WHERE w.oid = d.objid)
                        WHEN 'pg_statistic_ext'::regclass THEN (SELECT x.stxrelid FROM pg_statistic_ext AS x WHERE x.oid = d.objid)
                        WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef AS a WHERE a.oid = d.objid)
                        WHEN 'pg_class'::regclass THEN d.objid
                    END, 0) NOT IN (SELECT s.rel FROM migrate_ext.swapped_relations(schema_name) AS s)
     ORDER BY 1;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.check_swap_invariant(outgoing_to text)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    leftovers text;
BEGIN
    SELECT string_agg(o, '; ') INTO leftovers FROM migrate_ext.outside_dependents(outgoing_to) AS o;
    IF leftovers IS NOT NULL THEN
        RAISE EXCEPTION 'objects outside schema % still depend on its tables: %', outgoing_to, leftovers
              USING ERRCODE = 'dependent_objects_still_exist',
                    HINT = 'Nothing was changed. Re-point or drop them first (a swap does not know how to carry them: report it).';
    END IF;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.table_counts(schema_name text, created_since timestamp with time zone DEFAULT NULL::timestamp with time zone, created_before timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    t text;
    n bigint;
    counts jsonb := '{}'::jsonb;
BEGIN
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I WHERE ($1 IS NULL OR %I >= $1) AND ($2 IS NULL OR %I IS NULL OR %I < $2)',
                       schema_name, t, migrate_ext.created_column(t), migrate_ext.created_column(t), migrate_ext.created_column(t))
           INTO n USING created_since, created_before;
        counts := counts || jsonb_build_object(t, n);
    END LOOP;
    RETURN counts;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.counts_text(counts jsonb, nouns boolean, last_separator text DEFAULT ', '::text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT string_agg(CASE WHEN u.i = 1 THEN '' WHEN u.i = cardinality(migrate_ext.swapped_tables()) THEN last_separator ELSE ', ' END
                      || format('%s', counts->u.t)
                      || CASE WHEN nouns THEN ' ' || CASE u.t WHEN 'unified_profiles' THEN 'profiles' ELSE u.t END ELSE '' END,
                      '' ORDER BY u.i)
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS u(t, i);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.launch_refusals()
 RETURNS TABLE(problem text, hint text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    t text;
    n bigint;
    min_rows bigint;
    run record;
    last_sync bigint;
    missing text;
    launched text;
BEGIN
    PERFORM migrate_ext.load_settings();
    min_rows := current_setting('migrate_ext.min_staging_rows')::bigint;
    SELECT string_agg(format('migrate_staging.%s', x.name), ', ') INTO missing
      FROM unnest(migrate_ext.swapped_tables() || '{auth_users}'::text[]) AS x(name)
     WHERE to_regclass(format('migrate_staging.%I', x.name)) IS NULL;
    IF missing IS NOT NULL THEN
        SELECT m.backup_timestamp INTO launched FROM migrate_ext.migrations AS m
         WHERE m.state <> 'rolled_back'
           AND m.validation_run_id = (SELECT max(v.run_id) FROM migrate_ext.validation_runs AS v);
        problem := CASE WHEN launched IS NOT NULL
                        THEN format('there is no staging: the last one was launched as migration %s', launched)
                        ELSE format('there is no staging (%s missing)', missing) END;
        hint := 'Run SELECT * FROM migrate_ext.sync_raw_api_data(); and SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); to build one.';
        RETURN NEXT;
    END IF;
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        CONTINUE WHEN to_regclass(format('migrate_staging.%I', t)) IS NULL;
        EXECUTE format('SELECT count(*) FROM migrate_staging.%I', t) INTO n;
        IF n < min_rows THEN
            problem := format('migrate_staging.%s has %s rows, fewer than migrate_ext.min_staging_rows (%s)', t, n, min_rows);
            hint := 'An empty or truncated staging table would wipe production. Re-sync and re-validate, or lower migrate_ext.min_staging_rows if this is really intended.';
            RETURN NEXT;
        END IF;
        IF (SELECT c.relpersistence FROM pg_class AS c WHERE c.oid = format('migrate_staging.%I', t)::regclass) <> 'p' THEN
            problem := format('migrate_staging.%s is not a permanent logged table', t);
            hint := 'Making it logged would rewrite it under the swap''s locks; rebuild staging with validate_and_prepare_clean_data().';
            RETURN NEXT;
        END IF;
    END LOOP;

    SELECT * INTO run FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;
    IF NOT FOUND THEN
        problem := 'staging was not built by a validation run';
        hint := 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); first.';
        RETURN NEXT;
    ELSE
        IF run.errors > 0 THEN
            problem := format('the last validation (run %s) found %s errors', run.run_id, run.errors);
            hint := format('See SELECT * FROM migrate_ext.validation_issues WHERE run_id = %s AND severity = ''error''; fix them upstream or add exclusions, then validate again.', run.run_id);
            RETURN NEXT;
        END IF;
        SELECT max(s.run_id) INTO last_sync FROM migrate_ext.sync_runs AS s WHERE s.status = 'succeeded';
        IF last_sync IS DISTINCT FROM run.sync_run_id THEN
            problem := format('staging is older than the last sync: it was built from sync run %s, and sync run %s is newer',
                              coalesce(run.sync_run_id::text, 'none'), last_sync);
            hint := 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); again.';
            RETURN NEXT;
        END IF;
        IF run.production_signature IS DISTINCT FROM migrate_ext.production_signature() THEN
            problem := 'the production tables'' definitions changed after staging was built';
            hint := 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); again, so that staging has production''s columns.';
            RETURN NEXT;
        END IF;
    END IF;

    -- the swap moves the production tables and gives their owner the new ones
    FOR run IN SELECT c.relname, c.relowner::regrole AS owner,
                      (SELECT s.relowner FROM pg_class AS s
                        WHERE s.oid = to_regclass(format('migrate_staging.%I', c.relname))) AS staging_owner
                 FROM migrate_ext.swapped_relations() AS p JOIN pg_class AS c ON c.oid = p.rel
                ORDER BY c.relname LOOP
        IF NOT pg_has_role(current_user, run.owner, 'USAGE') THEN
            problem := format('public.%s is owned by %s, and %s is not a member of that role', run.relname, run.owner, current_user);
            hint := 'Run the launch as the owner of the production tables (postgres on Supabase).';
            RETURN NEXT;
        ELSIF run.staging_owner IS DISTINCT FROM run.owner::oid AND NOT has_schema_privilege(run.owner, 'public', 'CREATE') THEN
            problem := format('public.%s is owned by %s, which cannot own the new table: it lacks CREATE on schema public', run.relname, run.owner);
            hint := format('Grant it for the launch (GRANT CREATE ON SCHEMA public TO %s;), or make postgres the table''s owner.', run.owner);
            RETURN NEXT;
        END IF;
    END LOOP;

    -- something built over staging (a comparison view, say) would be left
    -- behind by the swap, or make it fail half-way
    FOR problem IN SELECT format('%s depends on a table of migrate_staging, which the launch moves into public', o)
                     FROM migrate_ext.outside_dependents('migrate_staging') AS o LOOP
        hint := 'Drop it before the launch and create it again afterwards over public.<table>.';
        RETURN NEXT;
    END LOOP;
    missing := migrate_ext.foreign_objects('migrate_staging', migrate_ext.staging_tables());
    IF missing IS NOT NULL THEN
        problem := format('schema migrate_staging holds objects migrate_ext did not put there: %s', missing);
        hint := 'They would be left behind, or read the new tables; move or drop them, then validate again.';
        RETURN NEXT;
    END IF;

    FOR problem IN SELECT format('%s %s', r.object, r.reason) FROM migrate_ext.swap_refusals() AS r LOOP
        hint := 'The swap fails closed on what it cannot carry: change or drop what is listed, launch, then re-create it.';
        RETURN NEXT;
    END LOOP;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.rollback_refusals(backup_timestamp text)
 RETURNS TABLE(problem text, hint text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT r.problem, r.hint
      FROM (SELECT 0::bigint AS i, 0 AS k,
                   format('migration %s cannot be rolled back while a later launch (%s) is in place', m.backup_timestamp,
                          string_agg(g.backup_timestamp, ', ' ORDER BY g.backup_timestamp)) AS problem,
                   'Roll back the later migrations first, newest first.' AS hint
              FROM migrate_ext.migrations AS m
              JOIN migrate_ext.migrations AS g ON g.state = 'launched' AND g.launched_at > m.launched_at
             WHERE m.backup_timestamp = rollback_refusals.backup_timestamp
             GROUP BY m.backup_timestamp
            UNION ALL
            SELECT t.i, x.k, x.problem, x.hint
              FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, i)
             CROSS JOIN LATERAL (
                   SELECT 1, format('backup table %s.%s is missing', migrate_ext.backup_schema(backup_timestamp), t.name),
                          'The backup was changed by hand; restore it from a dump.'
                    WHERE to_regclass(format('%I.%I', migrate_ext.backup_schema(backup_timestamp), t.name)) IS NULL
                   UNION ALL
                   SELECT 2, format('migrate_staging.%s exists: production cannot be moved back to staging', t.name),
                          'It was built after the launch by validate_and_prepare_clean_data(); drop it (DROP TABLE migrate_staging.unified_profiles, migrate_staging.transactions, migrate_staging.enrollments;) and roll back again.'
                    WHERE to_regclass(format('migrate_staging.%I', t.name)) IS NOT NULL) AS x(k, problem, hint)
            UNION ALL
            SELECT 8, 0, format('%s depends on a table of the backup, which the rollback moves into public', o),
                   'Drop it before the rollback and create it again afterwards over public.<table>.'
              FROM migrate_ext.outside_dependents(migrate_ext.backup_schema(backup_timestamp)) AS o
            UNION ALL
            SELECT 9, 0, format('%s %s', d.object, d.reason),
                   'The swap fails closed on what it cannot carry: change or drop what is listed, roll back, then re-create it.'
              FROM migrate_ext.swap_refusals() AS d) AS r
     ORDER BY r.i, r.k;
$function$;
COMMENT ON FUNCTION migrate_ext.rollback_refusals(text) IS 'Everything that stops rolling back a migration now; rollback_migration() refuses while this returns rows';

CREATE OR REPLACE FUNCTION migrate_ext.swap_refusal_list(what text, backup_timestamp text)
 RETURNS TABLE(problem text, hint text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT r.problem, r.hint FROM migrate_ext.launch_refusals() AS r WHERE what = 'launch'
    UNION ALL
    SELECT r.problem, r.hint FROM migrate_ext.rollback_refusals(backup_timestamp) AS r WHERE what = 'rollback';
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.check_swap_refusals(what text, backup_timestamp text)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_problems text;
    v_first_problem text;
    v_first_hint text;
BEGIN
    -- every problem in the detail, the first one in the message and hint
    SELECT string_agg('- ' || r.problem, E'\n' ORDER BY r.n), (array_agg(r.problem ORDER BY r.n))[1],
           (array_agg(r.hint ORDER BY r.n))[1]
      INTO v_problems, v_first_problem, v_first_hint
      FROM migrate_ext.swap_refusal_list(what, backup_timestamp) WITH ORDINALITY AS r(problem, hint, n);
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION '% refused: %', what, v_first_problem
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    DETAIL = format(E'Everything that stops the %s:\n', what) || v_problems,
                    HINT = 'Nothing was changed. ' || v_first_hint;
    END IF;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.run_swap(incoming text, outgoing_to text, what text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    per_attempt text;
    caller_timeout CONSTANT text := current_setting('lock_timeout');
    step record;
    current record;
    attempts integer;
    locked_at timestamptz;
    v_state text;
    v_message text;
    v_detail text;
    v_hint text;
BEGIN
    PERFORM migrate_ext.load_settings();
    per_attempt := current_setting('migrate_ext.lock_timeout');
    BEGIN
        -- no statement of the swap may queue for a lock longer than one attempt
        PERFORM set_config('lock_timeout', per_attempt, true);
        FOR step IN SELECT * FROM migrate_ext.swap_plan(incoming, outgoing_to) ORDER BY 1 LOOP
            current := step;
            IF step.phase = 'lock' THEN
                -- lock_for_swap() gives back the lock_timeout it was called with
                EXECUTE step.statement INTO attempts;
                locked_at := clock_timestamp();
            ELSE
                EXECUTE step.statement;
            END IF;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
        IF current.phase = 'lock' THEN
            RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail, HINT = v_hint;
        END IF;
        RAISE EXCEPTION '% failed at step % (%): %', what, current.step, current.phase, v_message
              USING ERRCODE = v_state,
                    DETAIL = concat_ws(E'\n', nullif(v_detail, ''), 'Statement: ' || current.statement),
                    HINT = concat_ws(' ', 'Nothing was changed: the whole ' || what || ' was rolled back.', nullif(v_hint, ''));
    END;
    PERFORM set_config('lock_timeout', caller_timeout, true);
    RETURN jsonb_build_object('lock_attempts', attempts,
                              'lock_ms', round(extract(epoch FROM clock_timestamp() - locked_at) * 1000, 1));
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_message(what text, ts text, backup_schema text, before jsonb, after jsonb, late jsonb, users bigint, lock jsonb)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT CASE what
           WHEN 'launch' THEN
               format('SUCCESS: launched %s. Production now has %s (before: %s); %s auth users created. The previous tables are in schema %s. '
                      'Locks held %s ms. Now check the application: SELECT * FROM migrate_ext.verify_production(); '
                      'To undo: SELECT migrate_ext.rollback_migration(%L);',
                      ts, migrate_ext.counts_text(after, true, ' and '), migrate_ext.counts_text(before, false),
                      users, backup_schema, lock->'lock_ms', ts)
           ELSE
               format('SUCCESS: rolled back %s. Production again has %s '
                      '(launched: %s, now in migrate_staging for a retry; %s of them created after the launch). '
                      '%s auth users created by the launch are kept. Locks held %s ms.',
                      ts, migrate_ext.counts_text(after, true, ' and '), migrate_ext.counts_text(before, false),
                      migrate_ext.counts_text(late, false, ' and '), users, lock->'lock_ms')
           END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_dry_run(what text, ts text, incoming text, outgoing_to text, new_users integer)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT format(E'-- dry run of %s %s: nothing was changed\n', what, ts)
        || CASE WHEN what = 'launch'
                THEN format(E'SELECT migrate_ext.create_private_schema(%L);\n', outgoing_to)
                  || format(E'SELECT migrate_ext.create_auth_users();  -- %s new auth users\n', new_users)
                WHEN to_regnamespace(outgoing_to) IS NULL
                THEN format(E'SELECT migrate_ext.create_private_schema(%L);\n', outgoing_to)
                ELSE '' END
        || (SELECT string_agg(format('%s;  -- %s %s', p.statement, p.phase, p.step), E'\n' ORDER BY p.step)
              FROM migrate_ext.swap_plan(incoming, outgoing_to) AS p)
        || CASE WHEN what = 'launch'
                THEN format(E'\nINSERT INTO migrate_ext.migrations ... VALUES (%L, ''launched'', ...);', ts)
                ELSE format(E'\nDROP SCHEMA %I;\nUPDATE migrate_ext.migrations SET state = ''rolled_back'', ... WHERE backup_timestamp = %L;',
                            incoming, ts) END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.perform_swap(what text, backup_timestamp text, dry_run boolean)
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    fn CONSTANT text := CASE what WHEN 'launch' THEN 'launch_clean_production' ELSE 'rollback_migration' END;
    m migrate_ext.migrations;
    v_ts text;
    v_schema text;
    v_incoming text;
    v_outgoing text;
    v_new_users uuid[];
    v_users bigint;
    v_before jsonb;
    v_after jsonb;
    v_late jsonb;
    v_lock jsonb;
    v_record jsonb := '{}'::jsonb;
BEGIN
    IF what = 'rollback' THEN
        m := migrate_ext.find_migration(backup_timestamp);
    END IF;
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must be true or false, not NULL'
              USING ERRCODE = 'null_value_not_allowed',
                    HINT = format('SELECT migrate_ext.%s(%sdry_run => true); shows the plan.', fn, quote_literal(m.backup_timestamp) || ', ');
    END IF;
    PERFORM migrate_ext.check_fresh_transaction(fn || '()');
    PERFORM migrate_ext.lock_out_other_runs(fn || '()');
    PERFORM migrate_ext.check_swap_refusals(what, m.backup_timestamp);
    IF what = 'launch' THEN
        v_ts := migrate_ext.new_backup_timestamp();
        v_schema := migrate_ext.backup_schema(v_ts);
        v_incoming := 'migrate_staging';
        v_outgoing := v_schema;
        v_new_users := ARRAY(SELECT s.id FROM migrate_staging.auth_users AS s
                              WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id) ORDER BY s.id);
    ELSE
        v_ts := m.backup_timestamp;
        v_schema := migrate_ext.backup_schema(v_ts);
        v_incoming := v_schema;
        v_outgoing := 'migrate_staging';
    END IF;
    IF dry_run THEN
        RETURN migrate_ext.swap_dry_run(what, v_ts, v_incoming, v_outgoing, cardinality(v_new_users));
    END IF;

    v_before := migrate_ext.table_counts('public');
    v_after := migrate_ext.table_counts(v_incoming);
    IF what = 'launch' THEN
        PERFORM migrate_ext.create_private_schema(v_schema);
        v_users := migrate_ext.create_auth_users();
        IF v_users <> cardinality(v_new_users) THEN
            RAISE EXCEPTION 'expected to create % auth users, created %', cardinality(v_new_users), v_users
                  USING ERRCODE = 'internal_error', HINT = 'Nothing was changed. Somebody changed auth.users during the launch; try again.';
        END IF;
    ELSE
        PERFORM migrate_ext.claim_private_schema('migrate_staging', migrate_ext.staging_tables());
        -- what was written after the launch stays with the launched tables
        v_late := migrate_ext.table_counts('public', m.launched_at);
        SELECT count(*) INTO v_users FROM auth.users AS u WHERE u.id = ANY (m.created_users);
    END IF;
    IF what = 'launch' THEN
        v_record := migrate_ext.launch_record();  -- what verify_production() compares against
    END IF;
    v_lock := migrate_ext.run_swap(v_incoming, v_outgoing, what);

    IF what = 'launch' THEN
        INSERT INTO migrate_ext.migrations (backup_timestamp, state, launched_at, validation_run_id, counts, created_users)
        VALUES (v_ts, 'launched', now(), (SELECT max(v.run_id) FROM migrate_ext.validation_runs AS v),
                jsonb_build_object('production', v_after, 'backup', v_before, 'auth_users_created', v_users) || v_lock || v_record,
                v_new_users);
    ELSE
        EXECUTE format('DROP SCHEMA %I', v_schema);
        UPDATE migrate_ext.migrations AS g SET state = 'rolled_back', rolled_back_at = now(),
               counts = g.counts || jsonb_build_object('rollback', jsonb_build_object('written_after_launch', v_late) || v_lock)
         WHERE g.backup_timestamp = m.backup_timestamp;
        RAISE NOTICE 'rows created after the launch (kept in migrate_staging, not in production): %', migrate_ext.counts_text(v_late, true)
              USING HINT = 'They stay in the tables now in migrate_staging; a new launch brings them back.';
        RAISE NOTICE '% auth users created by the launch are kept', v_users
              USING HINT = format('Their ids: SELECT unnest(created_users) FROM migrate_ext.migrations WHERE backup_timestamp = %L;', m.backup_timestamp);
    END IF;
    -- after a launch, also what the backup still references (sql/87_verify.sql)
    RETURN concat_ws(' ', migrate_ext.swap_message(what, v_ts, v_schema, v_before, v_after, v_late, v_users, v_lock),
                     CASE WHEN what = 'launch' THEN migrate_ext.backup_references(v_ts) END);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.launch_clean_production(dry_run boolean DEFAULT false)
 RETURNS text
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT migrate_ext.perform_swap('launch', NULL, dry_run);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.rollback_migration(backup_timestamp text, dry_run boolean DEFAULT false)
 RETURNS text
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT migrate_ext.perform_swap('rollback', backup_timestamp, dry_run);
$function$;
COMMENT ON FUNCTION migrate_ext.rollback_migration(text,boolean) IS 'Swap the backup of a launch back into production; the launched tables go to migrate_staging, kept for a retry; dry_run => true returns every statement and changes nothing';

CREATE OR REPLACE FUNCTION migrate_ext.migration_status()
 RETURNS TABLE(item text, state text, detail text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM migrate_ext.migrations ORDER BY backup_timestamp DESC LOOP
        item := 'migration ' || r.backup_timestamp;
        state := r.state;
        detail := format('launched %s by %s; production then had %s profiles, %s transactions, %s enrollments; %s auth users created',
                         migrate_ext.time_ago(r.launched_at), r.launched_by,
                         r.counts->'production'->'unified_profiles', r.counts->'production'->'transactions',
                         r.counts->'production'->'enrollments', r.counts->'auth_users_created');
        IF r.state = 'launched' THEN
            detail := detail || format('. Backup schema %s keeps the previous tables (%s profiles, %s transactions, %s enrollments). '
                                       'Roll back with SELECT migrate_ext.rollback_migration(%L); %s',
                                       migrate_ext.backup_schema(r.backup_timestamp),
                                       r.counts->'backup'->'unified_profiles', r.counts->'backup'->'transactions',
                                       r.counts->'backup'->'enrollments',
                                       r.backup_timestamp, migrate_ext.backup_references(r.backup_timestamp));
        ELSIF r.state = 'rolled_back' THEN
            detail := detail || format('; rolled back %s', migrate_ext.time_ago(r.rolled_back_at));
        ELSE
            detail := detail || format('; backup dropped %s', migrate_ext.time_ago(r.dropped_at));
        END IF;
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT DISTINCT ON (s.source) s.* FROM migrate_ext.sync_runs AS s ORDER BY s.source, s.run_id DESC LOOP
        item := 'last sync of ' || r.source;
        state := r.status;
        detail := format('run %s, %s: %s fetched, %s inserted, %s updated, %s rejected%s', r.run_id,
                         migrate_ext.time_ago(r.started_at), r.fetched, r.inserted, r.updated, r.rejected,
                         coalesce('; ' || r.error, ''));
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT * FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1 LOOP
        item := 'last validation';
        state := CASE WHEN r.errors > 0 THEN 'errors' ELSE 'ok' END;
        detail := format('run %s, %s, from sync run %s: %s errors, %s warnings', r.run_id,
                         migrate_ext.time_ago(r.started_at), r.sync_run_id, r.errors, r.warnings);
        RETURN NEXT;
    END LOOP;
    item := 'staging';
    SELECT string_agg(p.problem, '; ') INTO detail FROM migrate_ext.launch_refusals() AS p;
    state := CASE WHEN detail IS NULL THEN 'ready' ELSE 'not ready' END;
    detail := coalesce(detail, 'launch_clean_production() would go ahead');
    RETURN NEXT;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.app_properties(schema_name text)
 RETURNS TABLE(tbl text, kind text, item text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH t AS (
        SELECT c.oid, c.relname::text AS tbl FROM pg_class AS c
         WHERE c.relnamespace = to_regnamespace(schema_name) AND c.relname = ANY (migrate_ext.swapped_tables()))
    SELECT t.tbl, 'rls', format('row level security %s, forced %s', c.relrowsecurity, c.relforcerowsecurity)
      FROM t JOIN pg_class AS c ON c.oid = t.oid
    UNION ALL
    SELECT t.tbl, 'policy', format('%s: %s %s to %s using %s with check %s', p.polname, p.polcmd,
                                   CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                                   p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid),
                                   pg_get_expr(p.polwithcheck, p.polrelid))
      FROM t JOIN pg_policy AS p ON p.polrelid = t.oid
    UNION ALL
    SELECT t.tbl, 'grant', a::text
      FROM t JOIN pg_class AS c ON c.oid = t.oid CROSS JOIN LATERAL unnest(c.relacl) AS a
    UNION ALL
    SELECT t.tbl, 'grant', format('column %s: %s', a.attname, a.attacl)
      FROM t JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attacl IS NOT NULL AND NOT a.attisdropped
    UNION ALL
    SELECT t.tbl, 'trigger', format('%s (enabled %s): %s', g.tgname, g.tgenabled, pg_get_triggerdef(g.oid))
      FROM t JOIN pg_trigger AS g ON g.tgrelid = t.oid AND NOT g.tgisinternal
    UNION ALL
    SELECT t.tbl, 'foreign key', format('%s: %s', k.conname, pg_get_constraintdef(k.oid))
      FROM t JOIN pg_constraint AS k ON k.conrelid = t.oid AND k.contype = 'f'
    UNION ALL
    SELECT t.tbl, 'foreign key', format('%s of %s: %s', k.conname, k.conrelid::regclass, pg_get_constraintdef(k.oid))
      FROM t JOIN pg_constraint AS k ON k.confrelid = t.oid AND k.contype = 'f' AND k.conrelid <> t.oid;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.production_figures(schema_name text, created_before timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    revenue jsonb;
BEGIN
    EXECUTE format('SELECT coalesce(jsonb_object_agg(x.transaction_type, jsonb_build_object(''transactions'', x.n, ''amount'', x.amount)), ''{}'')
                      FROM (SELECT t.transaction_type, count(*) AS n, sum(t.amount) AS amount FROM %I.transactions AS t
                             WHERE t.status = ''completed'' AND ($1 IS NULL OR t.created_at IS NULL OR t.created_at < $1)
                             GROUP BY t.transaction_type) AS x', schema_name)
       INTO revenue USING created_before;
    RETURN jsonb_build_object('tables', migrate_ext.table_counts(schema_name, NULL, created_before), 'revenue', revenue);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.launch_record()
 RETURNS jsonb
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT jsonb_build_object(
        'properties', (SELECT coalesce(jsonb_agg(jsonb_build_array(p.tbl, p.kind, p.item) ORDER BY p.tbl, p.kind, p.item), '[]')
                         FROM migrate_ext.app_properties('public') AS p),
        'figures', jsonb_build_object('production', migrate_ext.production_figures('public'),
                                      'staging', migrate_ext.production_figures('migrate_staging')),
        'data_problems', (SELECT jsonb_object_agg(d.check_name || ' ' || d.subject, d.problems)
                            FROM migrate_ext.data_problems() AS d));
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.verify_catalog(m migrate_ext.migrations)
 RETURNS TABLE(check_name text, subject text, ok boolean, detail text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH recorded AS (
        SELECT r->>0 AS tbl, r->>1 AS kind, r->>2 AS item FROM jsonb_array_elements(m.counts->'properties') AS r),
    now_ AS (SELECT * FROM migrate_ext.app_properties('public')),
    diff AS (
        SELECT coalesce(r.tbl, n.tbl) AS tbl, coalesce(r.kind, n.kind) AS kind,
               CASE WHEN n.item IS NULL THEN 'missing ' ELSE 'not recorded at the launch ' END
               || coalesce(r.kind, n.kind) || ' ' || coalesce(r.item, n.item) AS problem
          FROM recorded AS r FULL JOIN now_ AS n USING (tbl, kind, item)
         WHERE r.item IS NULL OR n.item IS NULL)
    SELECT 'catalog: ' || k.kind, 'public.' || t.tbl, x.problems IS NULL,
           CASE WHEN m.counts->'properties' IS NULL THEN 'this launch recorded no catalog properties'
                WHEN x.problems IS NULL
                THEN format('as recorded at launch %s (%s)', m.backup_timestamp, x.recorded)
                ELSE x.problems END
      FROM unnest(migrate_ext.swapped_tables()) AS t(tbl)
     CROSS JOIN unnest('{rls,policy,grant,trigger,foreign key}'::text[]) AS k(kind)
     CROSS JOIN LATERAL (
        SELECT (SELECT count(*) FROM recorded AS r WHERE r.tbl = t.tbl AND r.kind = k.kind) AS recorded,
               (SELECT string_agg(d.problem, '; ' ORDER BY d.problem) FROM diff AS d
                 WHERE d.tbl = t.tbl AND d.kind = k.kind) AS problems) AS x
     WHERE m.counts->'properties' IS NOT NULL OR k.kind = 'rls'
     ORDER BY t.tbl, k.kind;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.verify_figures(m migrate_ext.migrations)
 RETURNS TABLE(check_name text, subject text, ok boolean, detail text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH f AS (
        SELECT m.counts->'figures'->(CASE WHEN m.state = 'rolled_back' THEN 'production' ELSE 'staging' END) AS expected,
               migrate_ext.production_figures('public', m.launched_at) AS actual,
               CASE WHEN m.state = 'rolled_back' THEN 'production before the launch' ELSE 'staging at the launch' END AS what)
    SELECT 'rows', 'public.' || t.key, (f.actual->'tables'->t.key) = t.value,
           format('%s rows created before the launch; %s had %s', f.actual->'tables'->t.key, f.what, t.value)
      FROM f CROSS JOIN LATERAL jsonb_each(f.expected->'tables') AS t
    UNION ALL
    SELECT 'revenue', coalesce(e.key, a.key), e.value IS NOT DISTINCT FROM a.value,
           format('%s completed transactions, %s PHP; %s had %s, %s PHP',
                  coalesce(a.value->>'transactions', '0'), coalesce(a.value->>'amount', '0'), f.what,
                  coalesce(e.value->>'transactions', '0'), coalesce(e.value->>'amount', '0'))
      FROM f CROSS JOIN LATERAL (
            SELECT x.key, x.value, y.key AS akey, y.value AS avalue
              FROM jsonb_each(f.expected->'revenue') AS x FULL JOIN jsonb_each(f.actual->'revenue') AS y ON y.key = x.key
           ) AS j(key, value, akey, avalue)
      CROSS JOIN LATERAL (SELECT j.key, j.value) AS e(key, value)
      CROSS JOIN LATERAL (SELECT j.akey, j.avalue) AS a(key, value)
     WHERE f.expected IS NOT NULL;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.data_problems()
 RETURNS TABLE(check_name text, subject text, problems bigint, examples text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH buyer AS (
        SELECT DISTINCT pr.code, t.user_id, lower(btrim(t.contact_email)) AS email, c.id AS course_id
          FROM public.transactions AS t
          JOIN migrate_ext.products AS pr ON pr.transaction_type = t.transaction_type AND pr.enrollment_course IS NOT NULL
          LEFT JOIN public.courses AS c ON c.title = pr.enrollment_course
         WHERE t.status = 'completed'),
    missing AS (
        SELECT b.code, b.email,
               NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = b.user_id) AS no_profile,
               NOT EXISTS (SELECT 1 FROM public.enrollments AS e WHERE e.user_id = b.user_id AND e.course_id = b.course_id) AS no_enrollment
          FROM buyer AS b)
    SELECT 'buyers: ' || x.what, pr.code || ' buyers', count(m.code),
           array_to_string((array_agg(coalesce(m.email, '(no e-mail)') ORDER BY m.email) FILTER (WHERE m.code IS NOT NULL))[1:5], ', ')
      FROM migrate_ext.products AS pr
     CROSS JOIN (VALUES ('a profile'), ('an enrollment')) AS x(what)
      LEFT JOIN missing AS m ON m.code = pr.code
                            AND ((x.what = 'a profile' AND m.no_profile) OR (x.what = 'an enrollment' AND m.no_enrollment))
     WHERE pr.enrollment_course IS NOT NULL
     GROUP BY pr.code, x.what
    UNION ALL
    SELECT 'is_student', 'public.unified_profiles', count(*),
           array_to_string((array_agg(p.email ORDER BY p.email))[1:5], ', ')
      FROM public.unified_profiles AS p
     WHERE p.is_student IS DISTINCT FROM EXISTS (SELECT 1 FROM public.enrollments AS e
                                                  WHERE e.user_id = p.id AND e.status = 'active');
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.verify_data(m migrate_ext.migrations)
 RETURNS TABLE(check_name text, subject text, ok boolean, detail text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT d.check_name, d.subject, d.problems <= x.allowed,
           CASE WHEN d.problems = 0 THEN 'none'
                ELSE format('%s: %s%s', d.problems, d.examples,
                            CASE WHEN x.allowed > 0 THEN format(' (production had %s before the launch)', x.allowed) ELSE '' END) END
      FROM migrate_ext.data_problems() AS d
     CROSS JOIN LATERAL (SELECT CASE WHEN m.state = 'rolled_back'
                                     THEN coalesce((m.counts->'data_problems'->>(d.check_name || ' ' || d.subject))::bigint, 0)
                                     ELSE 0 END AS allowed) AS x;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.verify_auth_users(m migrate_ext.migrations)
 RETURNS TABLE(check_name text, subject text, ok boolean, detail text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH bad AS (
        SELECT c.id, concat_ws(', ',
               CASE WHEN u.id IS NULL THEN 'missing' END,
               CASE WHEN u.aud IS DISTINCT FROM 'authenticated' OR u.role IS DISTINCT FROM 'authenticated' THEN 'aud/role' END,
               CASE WHEN u.instance_id IS DISTINCT FROM '00000000-0000-0000-0000-000000000000' THEN 'instance_id' END,
               CASE WHEN u.id IS NOT NULL AND (u.confirmation_token IS NULL OR u.recovery_token IS NULL
                      OR u.email_change_token_new IS NULL OR u.email_change IS NULL OR u.email_change_token_current IS NULL
                      OR u.phone_change IS NULL OR u.phone_change_token IS NULL OR u.reauthentication_token IS NULL)
                    THEN 'a NULL token' END,
               CASE WHEN u.raw_app_meta_data->>'provider' IS DISTINCT FROM 'email' THEN 'provider' END,
               CASE WHEN u.email IS DISTINCT FROM lower(btrim(u.email)) THEN 'e-mail not normalized' END,
               CASE WHEN (SELECT count(*) FROM auth.users AS o WHERE lower(o.email) = lower(u.email) AND NOT o.is_sso_user) <> 1
                    THEN 'not found by e-mail exactly once' END,
               CASE WHEN to_regclass('auth.identities') IS NOT NULL AND NOT EXISTS (
                         SELECT 1 FROM auth.identities AS i WHERE i.user_id = c.id AND i.provider = 'email'
                            AND i.provider_id = c.id::text AND i.identity_data->>'email' = u.email)
                    THEN 'no e-mail identity' END) AS problems
          FROM unnest(m.created_users) AS c(id) LEFT JOIN auth.users AS u ON u.id = c.id)
    SELECT 'auth users', 'auth.users', count(*) FILTER (WHERE b.problems <> '') = 0,
           CASE WHEN count(*) FILTER (WHERE b.problems <> '') = 0
                THEN format('the %s users launch %s created are well-formed and found by e-mail', count(*), m.backup_timestamp)
                ELSE format('%s of %s users launch %s created are malformed: %s', count(*) FILTER (WHERE b.problems <> ''),
                            count(*), m.backup_timestamp,
                            string_agg(b.id || ' (' || b.problems || ')', '; ' ORDER BY b.id) FILTER (WHERE b.problems <> '')) END
      FROM bad AS b;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.verify_customer_view(m migrate_ext.migrations)
 RETURNS TABLE(check_name text, subject text, ok boolean, detail text)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_role CONSTANT text := current_setting('role');
    v_claims CONSTANT text := current_setting('request.jwt.claims', true);
    c record;
    t text;
    own bigint;
    seen bigint;
    others bigint;
BEGIN
    FOR c IN SELECT * FROM (SELECT DISTINCT ON (x.id) x.id, x.email, x.who, x.o FROM (
                 (SELECT p.id, p.email, 'customer with the most payments' AS who, 1 AS o
                    FROM public.unified_profiles AS p JOIN public.transactions AS tr ON tr.user_id = p.id
                   WHERE NOT p.is_admin GROUP BY p.id, p.email ORDER BY count(*) DESC, p.email LIMIT 1)
                 UNION ALL
                 (SELECT p.id, p.email, 'customer created by the launch', 2
                    FROM public.unified_profiles AS p
                   WHERE p.id = ANY (m.created_users) AND NOT p.is_admin
                     AND EXISTS (SELECT 1 FROM public.transactions AS tr WHERE tr.user_id = p.id)
                   ORDER BY p.email LIMIT 1)) AS x ORDER BY x.id, x.o) AS y ORDER BY y.o LOOP
        FOR t IN SELECT r.relname FROM pg_class AS r
                  WHERE r.relnamespace = 'public'::regnamespace AND r.relname = ANY (migrate_ext.swapped_tables())
                    AND r.relrowsecurity
                    AND EXISTS (SELECT 1 FROM pg_attribute AS a WHERE a.attrelid = r.oid AND a.attname = 'user_id')
                  ORDER BY r.relname LOOP
            EXECUTE format('SELECT count(*) FROM public.%I WHERE user_id = $1', t) INTO own USING c.id;
            check_name := 'customer view';
            subject := format('public.%s as %s', t, c.who);
            BEGIN
                PERFORM set_config('role', 'authenticated', true);
                PERFORM set_config('request.jwt.claims', json_build_object('sub', c.id, 'role', 'authenticated', 'email', c.email)::text, true);
                EXECUTE format('SELECT count(*), count(*) FILTER (WHERE user_id IS DISTINCT FROM $1) FROM public.%I', t)
                   INTO seen, others USING c.id;
                PERFORM set_config('role', v_role, true);
                PERFORM set_config('request.jwt.claims', coalesce(v_claims, ''), true);
                ok := seen = own AND others = 0;
                detail := format('%s (%s) sees %s rows, %s of them of other users; owns %s', c.email, c.id, seen, others, own);
            EXCEPTION WHEN OTHERS THEN
                ok := false;
                detail := format('%s (%s) cannot read it: %s', c.email, c.id, SQLERRM);
            END;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.latest_migration()
 RETURNS migrate_ext.migrations
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    m migrate_ext.migrations;
BEGIN
    SELECT * INTO m FROM migrate_ext.migrations AS g ORDER BY g.launched_at DESC, g.backup_timestamp DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no migration was launched yet: there is nothing to verify'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Run it after SELECT migrate_ext.launch_clean_production(); or after a rollback.';
    END IF;
    RETURN m;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.verify_production()
 RETURNS TABLE(check_name text, subject text, ok boolean, detail text)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    m migrate_ext.migrations := migrate_ext.latest_migration();
BEGIN
    check_name := 'migration';
    subject := m.backup_timestamp;
    ok := true;
    detail := format('judging production after %s %s', CASE WHEN m.state = 'rolled_back' THEN 'the rollback of' ELSE 'launch' END,
                     m.backup_timestamp);
    RETURN NEXT;
    RETURN QUERY SELECT * FROM migrate_ext.verify_catalog(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_figures(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_data(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_auth_users(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_customer_view(m);
END;
$function$;
COMMENT ON FUNCTION migrate_ext.verify_production() IS 'After a launch or a rollback: catalog as recorded, figures as staged, buyers enrolled, is_student, new auth users, and what a customer sees through RLS; one row per check';

CREATE OR REPLACE FUNCTION migrate_ext.backup_delete_statements(backup_timestamp text, referenced regclass, key text)
 RETURNS SETOF text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH fk AS (
        SELECT k.conrelid, k.confrelid, a.attname AS col, fa.attname AS refcol, k.confdeltype
          FROM pg_constraint AS k
          JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
          JOIN pg_attribute AS fa ON fa.attrelid = k.confrelid AND fa.attnum = k.confkey[1]
         WHERE k.contype = 'f' AND cardinality(k.conkey) = 1
           AND k.conrelid IN (SELECT c.oid FROM pg_class AS c
                               WHERE c.relnamespace = to_regnamespace(migrate_ext.backup_schema(backup_timestamp)))),
    direct AS (SELECT * FROM fk WHERE fk.confrelid = referenced AND fk.confdeltype IN ('a', 'r'))
    SELECT format('DELETE FROM %s WHERE %I IN (SELECT %I FROM %s WHERE %I = %L);',
                  c.conrelid::regclass, c.col, c.refcol, d.conrelid::regclass, d.col, key)
      FROM direct AS d JOIN fk AS c ON c.confrelid = d.conrelid AND c.conrelid <> d.conrelid
    UNION ALL
    SELECT format('DELETE FROM %s WHERE %I = %L;', d.conrelid::regclass, d.col, key) FROM direct AS d
    UNION ALL
    SELECT format('DELETE FROM %s WHERE %I = %L;', referenced, (SELECT d.refcol FROM direct AS d LIMIT 1), key)
     WHERE EXISTS (SELECT 1 FROM direct);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.backup_references(backup_timestamp text)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT format('Backup schema %s keeps foreign keys to %s: while it exists, deleting a row they reference fails '
                  '(or, for ON DELETE SET NULL, also updates the backup). To delete such a row now, drop the backup '
                  '(SELECT migrate_ext.drop_backup(%L); the launch can then no longer be rolled back), or first delete '
                  'the backup''s rows that reference it; for an auth user: %s',
                  migrate_ext.backup_schema(backup_timestamp),
                  coalesce((SELECT string_agg(DISTINCT k.confrelid::regclass::text, ', ')
                              FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.conrelid
                              JOIN pg_class AS p ON p.oid = k.confrelid
                             WHERE k.contype = 'f'
                               AND c.relnamespace = to_regnamespace(migrate_ext.backup_schema(backup_timestamp))
                               AND p.relnamespace IS DISTINCT FROM c.relnamespace), 'no other table'),
                  backup_timestamp,
                  coalesce((SELECT string_agg(s, ' ')
                              FROM migrate_ext.backup_delete_statements(backup_timestamp, 'auth.users', '<user id>') AS s),
                           'nothing to delete first'));
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.reconcile()
 RETURNS TABLE(kind text, source text, record_id text, email text, production_id uuid, detail text)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- working tables of an earlier call in this transaction
    EXECUTE 'DROP TABLE IF EXISTS pg_temp.rx_invoice, pg_temp.rx_error';
    -- (the PRAGMA lines declare the working tables for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: rx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text)';
    CREATE TEMP TABLE rx_invoice ON COMMIT DROP AS
    SELECT f.* FROM migrate_ext.invoice_facts(migrate_ext.email_pattern()) AS f;
    PERFORM 'PRAGMA:TABLE: rx_error (record_id text, rules text)';
    CREATE TEMP TABLE rx_error ON COMMIT DROP AS
    SELECT q.record_id, string_agg(q.rule, ', ' ORDER BY q.rule) AS rules
      FROM migrate_ext.invoice_issues('pg_temp.rx_invoice') AS q WHERE q.severity = 'error' GROUP BY q.record_id;

    RETURN QUERY
    WITH inv AS (
        SELECT i.*, e.rules AS errors, i.paid AND i.excluded IS NULL AND e.rules IS NULL AS valid
          FROM pg_temp.rx_invoice AS i LEFT JOIN pg_temp.rx_error AS e ON e.record_id = i.id),
    -- rows the launch carried over on purpose are in its validation report
    -- (rule carried_over), not new differences
    carried AS (
        SELECT q.record_id FROM migrate_ext.validation_issues AS q
         WHERE q.rule = 'carried_over'
           AND q.run_id = (SELECT m.validation_run_id FROM migrate_ext.migrations AS m
                            WHERE m.state <> 'rolled_back' ORDER BY m.launched_at DESC LIMIT 1)),
    prod AS (
        SELECT t.id, t.external_id, t.amount, t.status, t.metadata->>'xendit_invoice_id' AS invoice_id
          FROM public.transactions AS t
         WHERE t.external_id IS NOT NULL AND t.id::text NOT IN (SELECT c.record_id FROM carried AS c)),
    -- a transaction is the invoice its metadata names; without that, the
    -- invoice of its external id (the paid one, else the latest, when a
    -- retry reused the external id)
    pair AS (
        SELECT i.id AS invoice, p.* FROM inv AS i JOIN prod AS p ON p.invoice_id = i.id
        UNION ALL
        SELECT i.id, p.* FROM inv AS i JOIN prod AS p ON p.invoice_id IS NULL AND p.external_id = i.external_id
         WHERE i.id = (SELECT j.id FROM inv AS j WHERE j.external_id = i.external_id
                        ORDER BY j.paid DESC, j.updated DESC NULLS LAST, j.id DESC LIMIT 1))
    SELECT 'payment_missing', 'xendit', i.id, i.email, NULL::uuid,
           format('%s invoice %s of %s %s (%s): production has no transaction with this external id',
                  i.status, i.external_id, i.currency, i.amount, i.product)
      FROM inv AS i WHERE i.valid AND NOT EXISTS (SELECT 1 FROM pair AS p WHERE p.invoice = i.id)
                          AND NOT EXISTS (SELECT 1 FROM prod AS p WHERE p.external_id = i.external_id AND p.invoice_id IS NULL)
    UNION ALL
    SELECT 'amount_differs', 'xendit', i.id, i.email, p.id,
           format('invoice %s: Xendit says %s %s, production says %s', i.external_id, i.currency, i.amount, p.amount)
      FROM inv AS i JOIN pair AS p ON p.invoice = i.id
     WHERE i.valid AND p.amount IS DISTINCT FROM i.amount
    UNION ALL
    SELECT 'status_differs', 'xendit', i.id, i.email, p.id,
           format('invoice %s: Xendit says %s (%s in production terms), production says %s',
                  i.external_id, i.status, i.production_status, p.status)
      FROM inv AS i JOIN pair AS p ON p.invoice = i.id
     WHERE i.known_status AND i.excluded IS NULL AND p.status IS DISTINCT FROM i.production_status
    UNION ALL
    SELECT 'invoice_with_error', 'xendit', i.id, i.email, NULL,
           format('%s invoice %s breaks %s: fix it in Xendit or exclude it', i.status, i.external_id, i.errors)
      FROM inv AS i WHERE i.paid AND i.excluded IS NULL AND i.errors IS NOT NULL
    UNION ALL
    SELECT CASE WHEN u.id IS NULL THEN 'buyer_without_profile' ELSE 'buyer_without_enrollment' END,
           'xendit', b.first_id, b.email, u.id,
           CASE WHEN u.id IS NULL THEN format('paid for %s: production has no profile with this e-mail', b.product)
                ELSE format('paid for %s: no enrollment in %s', b.product, b.course) END
      FROM (SELECT i.email, i.product, pr.enrollment_course AS course, min(i.id) AS first_id
              FROM inv AS i JOIN migrate_ext.products AS pr ON pr.code = i.product AND pr.enrollment_course IS NOT NULL
             WHERE i.valid GROUP BY i.email, i.product, pr.enrollment_course) AS b
      LEFT JOIN public.unified_profiles AS u ON lower(u.email) = b.email
     WHERE u.id IS NULL
        OR NOT EXISTS (SELECT 1 FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id
                        WHERE e.user_id = u.id AND c.title = b.course)
    UNION ALL
    SELECT 'profile_unknown_to_apis', 'production', NULL, p.email, p.id,
           'no Systeme.io contact and no Xendit invoice has this e-mail'
      FROM public.unified_profiles AS p
     WHERE NOT p.is_admin AND p.id::text NOT IN (SELECT c.record_id FROM carried AS c)
       AND NOT EXISTS (SELECT 1 FROM migrate_ext.systemeio_raw AS c WHERE lower(btrim(c.email)) = lower(p.email))
       AND NOT EXISTS (SELECT 1 FROM pg_temp.rx_invoice AS i WHERE i.email = lower(p.email));
    DROP TABLE pg_temp.rx_invoice, pg_temp.rx_error;
END;
$function$;
COMMENT ON FUNCTION migrate_ext.reconcile() IS 'Production against the raw API data under the validation''s rules; one row per difference; reads only (sync first)';

CREATE OR REPLACE FUNCTION migrate_ext.nightly_reconcile()
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_run bigint := nextval('migrate_ext.reconcile_runs_run_id_seq');
    v_started timestamptz := clock_timestamp();
    v_sync text;
    v_n bigint;
    v_dropped bigint;
BEGIN
    SELECT string_agg(format('%s %s%s', s.source, s.status, coalesce(' (' || s.error || ')', '')), ', ' ORDER BY s.source)
      INTO v_sync FROM migrate_ext.sync_raw_api_data() AS s;
    INSERT INTO migrate_ext.reconcile_runs (run_id, started_at, sync) VALUES (v_run, v_started, v_sync);
    INSERT INTO migrate_ext.reconcile_results (run_id, kind, source, record_id, email, production_id, detail)
    SELECT v_run, r.* FROM migrate_ext.reconcile() AS r;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE migrate_ext.reconcile_runs AS r SET finished_at = clock_timestamp(), differences = v_n WHERE r.run_id = v_run;
    DELETE FROM migrate_ext.reconcile_runs AS r
     WHERE r.started_at < v_started - (SELECT s.keep_for FROM migrate_ext.reconcile_settings AS s);
    GET DIAGNOSTICS v_dropped = ROW_COUNT;
    RETURN format('reconcile run %s: %s differences (sync: %s); %s old runs dropped. '
                  'See SELECT kind, count(*) FROM migrate_ext.reconcile_results WHERE run_id = %s GROUP BY kind;',
                  v_run, v_n, v_sync, v_dropped, v_run);
END;
$function$;
COMMENT ON FUNCTION migrate_ext.nightly_reconcile() IS 'For pg_cron: sync, reconcile(), keep the differences in reconcile_results for reconcile_settings.keep_for';


-- the extension's owner (not necessarily the role running the update) keeps
-- every privilege on the new objects, nobody else gets any
SELECT migrate_ext.close_extension_objects(e.extowner::pg_catalog.regrole)
  FROM pg_catalog.pg_extension AS e WHERE e.extname OPERATOR(pg_catalog.=) 'migrate_ext';
