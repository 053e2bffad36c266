--
-- validate: validate_and_prepare_clean_data() on the Supabase-like fixture
-- holding the contaminated production, against the scale-1 API data set.
-- Expected numbers are derived from the generator's ground truth
-- (truth.json), and compared in SQL.
--
\getenv dataset DATASET_DIR
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SET client_min_messages = warning;
CREATE DATABASE regress_app;
SELECT current_database() AS regress_db \gset
\c regress_app
SET client_min_messages = warning;
-- the fixture and its contaminated production (not echoed: long)
\set production_sql :dataset/production.sql
\i test/fixture/load.psql
\set SHOW_CONTEXT never
SELECT (SELECT count(*) FROM public.unified_profiles) AS profiles, (SELECT count(*) FROM public.transactions) AS transactions,
       (SELECT count(*) FROM public.enrollments) AS enrollments, (SELECT count(*) FROM auth.users) AS auth_users;
-- the generator's ground truth, readable by the test
CREATE SCHEMA regress;
CREATE TABLE regress.truth AS SELECT pg_read_file(:'dataset' || '/truth.json')::jsonb AS t;
GRANT USAGE, CREATE ON SCHEMA regress TO postgres;
GRANT SELECT ON regress.truth TO postgres;

-- As on Supabase: "postgres", not a superuser, owns the tables and installs the extension
\c regress_app postgres
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SELECT rolsuper FROM pg_roles WHERE rolname = current_user;
CREATE EXTENSION migrate_ext;

-- Bad configuration: a clear error, nothing written
SELECT * FROM migrate_ext.validate_and_prepare_clean_data();
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT source, status FROM migrate_ext.sync_raw_api_data();
UPDATE migrate_ext.products SET enrollment_course = 'Papers to Profit' WHERE code = 'P2P';
SELECT * FROM migrate_ext.validate_and_prepare_clean_data();
UPDATE migrate_ext.products SET enrollment_course = 'Papers to Profits' WHERE code = 'P2P';
ALTER TABLE public.transactions RENAME COLUMN contact_email TO email_of_contact;
SELECT * FROM migrate_ext.validate_and_prepare_clean_data();
ALTER TABLE public.transactions RENAME COLUMN email_of_contact TO contact_email;
ALTER TABLE public.enrollments RENAME TO enrollments_old;
SELECT * FROM migrate_ext.validate_and_prepare_clean_data();
ALTER TABLE public.enrollments_old RENAME TO enrollments;
DELETE FROM migrate_ext.products WHERE code = 'Other';
SELECT * FROM migrate_ext.validate_and_prepare_clean_data();
INSERT INTO migrate_ext.products (code, transaction_type, match_order) VALUES ('Other', 'Other', 1000);
SELECT count(*) AS validation_runs, to_regnamespace('migrate_staging') IS NULL AS no_staging
  FROM migrate_ext.validation_runs;

-- The report a DBA reads
SELECT section, item, rows, amount FROM migrate_ext.validate_and_prepare_clean_data();

-- Helpers over the last run (views on staging itself are temporary: a
-- view on a staging table would stop the next run from rebuilding it)
CREATE VIEW regress.last_issues AS
    SELECT * FROM migrate_ext.validation_issues
     WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs);
CREATE VIEW regress.paid_invoice AS
    SELECT x.*, CASE WHEN x.description ILIKE '%papers to profits%' THEN 'P2P'
                     WHEN x.description ILIKE '%canva%' THEN 'Canva' ELSE 'Other' END AS product,
           EXISTS (SELECT 1 FROM regress.last_issues AS q WHERE q.source = 'xendit' AND q.record_id = x.id
                      AND q.severity = 'error') AS left_out
      FROM migrate_ext.xendit_raw AS x WHERE x.status IN ('PAID', 'SETTLED');
SET search_path = regress, public;
CREATE TEMP VIEW produced_tx AS   -- transactions made from API data (not carried over)
    SELECT s.* FROM migrate_staging.transactions AS s
     WHERE NOT EXISTS (SELECT 1 FROM last_issues AS q WHERE q.rule = 'carried_over' AND q.record_id = s.id::text);

------------------------------------------------------------------------
-- Staging counts follow from the rules and the ground truth
------------------------------------------------------------------------
-- one transaction per PAID/SETTLED invoice, less exactly the ones left out
SELECT p.product,
       (t->'invoices_by_status_product'->'PAID'->>p.product)::int
         + (t->'invoices_by_status_product'->'SETTLED'->>p.product)::int AS truth_paid,
       count(*) FILTER (WHERE NOT p.left_out) AS staged,
       count(*) FILTER (WHERE p.left_out) AS left_out_with_error,
       (SELECT count(*) FROM produced_tx AS s WHERE s.transaction_type = p.product AND s.payment_method IS DISTINCT FROM 'manual')
         = count(*) FILTER (WHERE NOT p.left_out) AS staging_agrees,
       (t->'invoices_by_status_product'->'PAID'->>p.product)::int
         + (t->'invoices_by_status_product'->'SETTLED'->>p.product)::int = count(*) AS all_accounted_for
  FROM paid_invoice AS p, regress.truth
 GROUP BY p.product, t ORDER BY p.product;
-- one manual P2P payment at 800 for each PaidP2P contact without a paid P2P
-- invoice, less the contacts the rules leave out (reported as errors)
SELECT (t->'paidp2p_without_paid_p2p_invoice'->>'distinct_emails')::int AS truth_manual,
       (SELECT count(*) FROM jsonb_array_elements_text(t->'paidp2p_without_paid_p2p_invoice'->'contact_ids') AS c(id)
         WHERE EXISTS (SELECT 1 FROM last_issues AS q WHERE q.source = 'systemeio' AND q.record_id = c.id
                          AND q.severity = 'error')) AS left_out_with_error,
       (SELECT count(*) FROM produced_tx WHERE payment_method = 'manual') AS staged_manual,
       (SELECT count(*) FROM produced_tx WHERE payment_method = 'manual' AND (amount <> 800 OR transaction_type <> 'P2P')) AS not_800_p2p
  FROM regress.truth;
-- a profile and one 'Papers to Profits' enrollment per P2P buyer, none for Canva-only buyers
WITH p2p_buyers AS (SELECT DISTINCT contact_email AS email FROM produced_tx WHERE transaction_type = 'P2P'),
     canva_only AS (SELECT DISTINCT contact_email AS email FROM produced_tx WHERE transaction_type = 'Canva'
                    EXCEPT SELECT email FROM p2p_buyers)
SELECT (SELECT count(*) FROM p2p_buyers) AS p2p_buyers,
       (SELECT count(*) FROM p2p_buyers AS b WHERE NOT EXISTS
          (SELECT 1 FROM migrate_staging.unified_profiles AS u WHERE u.email = b.email)) AS buyers_without_profile,
       (SELECT count(*) FROM p2p_buyers AS b WHERE (SELECT count(*) FROM migrate_staging.enrollments AS e
           JOIN migrate_staging.unified_profiles AS u ON u.id = e.user_id JOIN public.courses AS c ON c.id = e.course_id
          WHERE u.email = b.email AND c.title = 'Papers to Profits') <> 1) AS buyers_without_one_enrollment,
       (SELECT count(*) FROM canva_only) AS canva_only_buyers,
       (SELECT count(*) FROM canva_only AS b JOIN migrate_staging.unified_profiles AS u ON u.email = b.email
         WHERE NOT EXISTS (SELECT 1 FROM last_issues AS q WHERE q.rule = 'carried_over' AND q.record_id = u.id::text)
       ) AS canva_only_with_new_profile;
-- revenue per product equals the sum of the source amounts
SELECT p.product, sum(p.amount) AS source_pesos,
       (SELECT sum(s.amount) FROM produced_tx AS s WHERE s.transaction_type = p.product
           AND s.payment_method IS DISTINCT FROM 'manual') AS staged_pesos
  FROM paid_invoice AS p WHERE NOT p.left_out GROUP BY p.product ORDER BY p.product;

------------------------------------------------------------------------
-- Stable identities
------------------------------------------------------------------------
-- existing auth users keep their ids
SELECT count(*) AS profiles_of_existing_users,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM auth.users AS a
                                           WHERE a.id = u.id AND lower(btrim(a.email)) = u.email)) AS not_their_auth_id,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE lower(p.email) = u.email)
                          AND NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p
                                           WHERE lower(p.email) = u.email AND p.id = u.id)) AS not_a_production_id
  FROM migrate_staging.unified_profiles AS u
 WHERE EXISTS (SELECT 1 FROM auth.users AS a WHERE lower(btrim(a.email)) = u.email);
-- (where production has two auth users for one e-mail, the oldest one's id is kept, and that is reported)
SELECT severity, rule, count(*) FROM last_issues WHERE rule = 'duplicate_auth_user' GROUP BY 1, 2;
SELECT count(*) > 0 AS shared_emails_staged, count(*) FILTER (WHERE s.id <> d.oldest) AS not_the_oldest_id
  FROM (SELECT lower(btrim(u.email)) AS email, (array_agg(u.id ORDER BY u.created_at NULLS LAST, u.id))[1] AS oldest
          FROM auth.users AS u GROUP BY 1 HAVING count(*) > 1) AS d
  JOIN migrate_staging.unified_profiles AS s ON s.email = d.email;
SELECT count(*) AS new_users, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM auth.users AS a WHERE a.id = n.id)) AS clash
  FROM migrate_staging.auth_users AS n;
-- a second run (in a new session: no view on staging) gives identical
-- staging rows with identical ids
CREATE FUNCTION regress.staging_fingerprint() RETURNS TABLE (k text, id uuid, h text)
LANGUAGE sql AS $$
    SELECT 'profile', id, md5(row(email, first_name, last_name, tags, is_student, is_admin)::text)
      FROM migrate_staging.unified_profiles
    UNION ALL
    SELECT 'transaction', id, md5(row(user_id, amount, currency, status, transaction_type, external_id, paid_at,
                                      settled_at, expires_at, contact_email, metadata)::text)
      FROM migrate_staging.transactions
    UNION ALL
    SELECT 'enrollment', id, md5(row(user_id, course_id, transaction_id, status, enrolled_at)::text)
      FROM migrate_staging.enrollments;
$$;
CREATE TABLE regress.fingerprint AS SELECT * FROM regress.staging_fingerprint();
\c regress_app postgres
SET client_min_messages = warning;
SET search_path = regress, public;
SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data();
WITH after AS (SELECT * FROM regress.staging_fingerprint())
SELECT (SELECT count(*) FROM fingerprint) AS rows_before,
       (SELECT count(*) FROM (SELECT * FROM fingerprint EXCEPT SELECT * FROM after) AS d) AS changed_or_gone,
       (SELECT count(*) FROM (SELECT * FROM after EXCEPT SELECT * FROM fingerprint) AS d) AS changed_or_new;
-- new API data (5 invoices paid since, 5 contacts tagged) adds rows and changes no old id
\c regress_app supabase_admin
SET client_min_messages = warning;
SELECT set_config('migrate_ext.xendit_base_url', current_setting('regress.emulator_url') || '/changed/5', false) IS NOT NULL AS changed,
       set_config('migrate_ext.systemeio_base_url', current_setting('regress.emulator_url') || '/changed/5', false) IS NOT NULL AS changed;
SELECT source, status, inserted, updated FROM migrate_ext.sync_raw_api_data();
\c regress_app postgres
SET client_min_messages = warning;
SET search_path = regress, public;
CREATE TABLE regress.before_changes AS
    SELECT 'profile' AS k, id, email AS key FROM migrate_staging.unified_profiles
    UNION ALL SELECT 'transaction', id, coalesce(external_id, contact_email) FROM migrate_staging.transactions
    UNION ALL SELECT 'enrollment', id, user_id || ':' || course_id FROM migrate_staging.enrollments;
SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data();
SELECT k, count(*) AS old_rows,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.unified_profiles AS u WHERE u.id = b.id AND u.email = b.key)
                          AND NOT EXISTS (SELECT 1 FROM migrate_staging.transactions AS t
                                           WHERE t.id = b.id AND coalesce(t.external_id, t.contact_email) = b.key)
                          AND NOT EXISTS (SELECT 1 FROM migrate_staging.enrollments AS e
                                           WHERE e.id = b.id AND e.user_id || ':' || e.course_id = b.key)) AS id_changed_or_gone
  FROM before_changes AS b GROUP BY k ORDER BY k;
SELECT (SELECT count(*) FROM migrate_staging.transactions) - (SELECT count(*) FROM before_changes WHERE k = 'transaction') AS new_transactions,
       (SELECT count(*) FROM migrate_staging.unified_profiles WHERE 'Reengaged2025' = ANY (tags)) AS profiles_with_new_tag;

------------------------------------------------------------------------
-- Every kind of bad record the generator plants is reported
------------------------------------------------------------------------
CREATE TEMP VIEW planted AS
    SELECT m.kind, m.source, id.value AS record_id
      FROM (VALUES ('currency_not_php', 'xendit', 'invoices'), ('amount_non_positive', 'xendit', 'invoices'),
                   ('amount_non_numeric', 'xendit', 'invoices'), ('email_missing_paid', 'xendit', 'invoices'),
                   ('email_invalid', 'xendit', 'invoices'), ('external_id_duplicate', 'xendit', 'invoices'),
                   ('email_invalid', 'systemeio', 'contacts'), ('duplicate_email', 'systemeio', 'contacts'),
                   ('email_test_account', 'xendit', 'invoices')) AS m(kind, source, part),
           regress.truth, jsonb_array_elements_text(t->'mess'->m.part->m.kind) AS id(value);
SELECT p.kind, p.source, count(*) AS planted,
       count(*) FILTER (WHERE x.status IN ('PAID', 'SETTLED')) AS planted_paid,
       string_agg(DISTINCT q.severity || ' ' || q.rule, ', ') AS reported_as,
       count(q.rule) AS reported,
       count(*) FILTER (WHERE q.rule IS NOT NULL AND q.email IS NULL AND p.kind <> 'email_missing_paid') AS reported_without_email
  FROM planted AS p
  LEFT JOIN migrate_ext.xendit_raw AS x ON p.source = 'xendit' AND x.id = p.record_id
  LEFT JOIN last_issues AS q ON q.source = p.source
       AND (q.record_id = p.record_id OR p.record_id = ANY (string_to_array(q.record_id, ',')))
       AND q.rule = CASE p.kind WHEN 'currency_not_php' THEN 'currency_not_php'
                                WHEN 'amount_non_positive' THEN 'non_positive_amount'
                                WHEN 'amount_non_numeric' THEN 'non_numeric_amount'
                                WHEN 'email_missing_paid' THEN 'paid_invoice_without_email'
                                WHEN 'email_invalid' THEN 'invalid_email'
                                WHEN 'external_id_duplicate' THEN 'duplicate_external_id'
                                WHEN 'duplicate_email' THEN 'duplicate_contact_email'
                                WHEN 'email_test_account' THEN 'test_account' END
 GROUP BY p.kind, p.source ORDER BY p.source, p.kind;
-- excluding a record resolves its error
SELECT count(*) AS usd_errors FROM last_issues WHERE rule = 'currency_not_php';
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT 'xendit_id', record_id, 'refunded: paid in USD by mistake' FROM last_issues
 WHERE rule = 'currency_not_php' ORDER BY record_id LIMIT 1;
SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data();
SELECT rule, severity, count(*) FROM last_issues WHERE rule IN ('currency_not_php', 'excluded') GROUP BY 1, 2 ORDER BY 1;
SELECT q.detail FROM last_issues AS q JOIN migrate_ext.exclusions AS e ON e.value = q.record_id WHERE q.rule = 'excluded';
-- an e-mail exclusion is a LIKE pattern on the trimmed, lower-case e-mail:
-- every invoice and contact it matches is left out, and listed
SELECT '%' || substr(s.email, 2) AS pattern FROM migrate_staging.unified_profiles AS s
  JOIN migrate_staging.transactions AS t ON t.user_id = s.id
 ORDER BY s.email LIMIT 1 \gset
INSERT INTO migrate_ext.exclusions (kind, value, reason) VALUES ('email', :'pattern', 'regress: one buyer');
SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data();
SELECT (SELECT count(*) FROM last_issues WHERE rule = 'excluded' AND email LIKE :'pattern')
       = (SELECT count(*) FROM migrate_ext.xendit_raw WHERE lower(btrim(payer_email)) LIKE :'pattern')
         + (SELECT count(*) FROM migrate_ext.systemeio_raw WHERE lower(btrim(email)) LIKE :'pattern') AS every_record_listed,
       (SELECT count(*) FROM last_issues WHERE rule = 'excluded' AND email LIKE :'pattern') > 0 AS some_excluded,
       (SELECT count(*) FROM migrate_staging.transactions WHERE contact_email LIKE :'pattern'
                                                            AND metadata ? 'xendit_invoice_id') AS invoices_staged;
DELETE FROM migrate_ext.exclusions WHERE value = :'pattern';
SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data();

------------------------------------------------------------------------
-- Staging has production's shape, and nobody else can read it
------------------------------------------------------------------------
CREATE TEMP VIEW shape AS
    SELECT n.nspname AS schema, c.relname AS tbl, 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
           || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS item
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
      JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
    UNION ALL
    SELECT n.nspname, c.relname, 'index ' || i.relname || ' ' || regexp_replace(pg_get_indexdef(x.indexrelid), '^.* ON \S+ ', '')
      FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid JOIN pg_class AS c ON c.oid = x.indrelid
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
    UNION ALL
    SELECT n.nspname, c.relname, 'constraint ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
      FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.conrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE k.contype <> 'f'
    UNION ALL
    SELECT n.nspname, c.relname, 'statistics ' || s.stxname
      FROM pg_statistic_ext AS s JOIN pg_class AS c ON c.oid = s.stxrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace;
SELECT p.tbl, count(*) AS production_items,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM shape AS s WHERE s.schema = 'migrate_staging'
                                             AND s.tbl = p.tbl AND s.item = p.item)) AS missing_in_staging,
       (SELECT count(*) FROM shape AS s WHERE s.schema = 'migrate_staging' AND s.tbl = p.tbl
           AND NOT EXISTS (SELECT 1 FROM shape AS q WHERE q.schema = 'public' AND q.tbl = s.tbl AND q.item = s.item)) AS extra_in_staging
  FROM shape AS p WHERE p.schema = 'public' AND p.tbl IN ('unified_profiles', 'transactions', 'enrollments')
 GROUP BY p.tbl ORDER BY p.tbl;
SELECT r.rolname, c.relname, has_table_privilege(r.oid, c.oid, 'SELECT') AS can_read,
       has_schema_privilege(r.oid, 'migrate_staging', 'USAGE') AS schema_usage
  FROM pg_roles AS r, pg_class AS c
 WHERE r.rolname IN ('anon', 'authenticated', 'service_role') AND c.relnamespace = 'migrate_staging'::regnamespace
   AND c.relkind = 'r'
 ORDER BY 1, 2;

------------------------------------------------------------------------
-- Nothing is lost: carried rows are listed, everything else is listed as removed
------------------------------------------------------------------------
SELECT regexp_replace(detail, '^(\w+) row kept: ', '\1: ') AS carried_because, count(*)
  FROM last_issues WHERE rule = 'carried_over' GROUP BY 1 ORDER BY 1;
SELECT rule, count(*) FROM last_issues WHERE rule IN ('foreign_key', 'would_orphan', 'carry_over_conflict', 'constraint_violation')
 GROUP BY 1 ORDER BY 1;
SELECT count(*) AS production_admins,
       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.unified_profiles AS s WHERE s.id = p.id)) AS admins_lost
  FROM public.unified_profiles AS p WHERE p.is_admin;
SELECT t.tbl,
       (SELECT count(*) FROM last_issues WHERE rule = 'removed_at_launch' AND source = t.tbl) AS listed_removed,
       CASE t.tbl
         WHEN 'unified_profiles' THEN (SELECT count(*) FROM public.unified_profiles AS p
                                        WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.unified_profiles AS s WHERE s.id = p.id))
         WHEN 'transactions' THEN (SELECT count(*) FROM public.transactions AS p
                                    WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.transactions AS s WHERE s.id = p.id))
         ELSE (SELECT count(*) FROM public.enrollments AS p
                WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.enrollments AS s WHERE s.id = p.id)) END AS not_in_staging
  FROM unnest('{unified_profiles,transactions,enrollments}'::text[]) AS t(tbl) ORDER BY 1;
-- a sign-up during the migration (after the sync started) is carried over
\c regress_app supabase_admin
INSERT INTO auth.users (instance_id, id, aud, role, email, created_at, updated_at, confirmation_token,
                        recovery_token, email_change_token_new, email_change)
VALUES ('00000000-0000-0000-0000-000000000000', '11111111-2222-3333-4444-555555555555', 'authenticated',
        'authenticated', 'new.signup@gmail.com', now(), now(), '', '', '', '');
INSERT INTO public.unified_profiles (id, email, first_name, created_at)
VALUES ('11111111-2222-3333-4444-555555555555', 'new.signup@gmail.com', 'Newly', now());
\c regress_app postgres
SET client_min_messages = warning;
SET search_path = regress, public;
SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data();
SELECT q.rule, q.email, q.detail FROM last_issues AS q WHERE q.email = 'new.signup@gmail.com';
SELECT count(*) AS carried_signup FROM migrate_staging.unified_profiles WHERE id = '11111111-2222-3333-4444-555555555555';

-- staging rows that would break a CHECK or a foreign key of production are errors, one per row
ALTER TABLE public.transactions ADD CONSTRAINT regress_amount_cap CHECK (amount < 100000) NOT VALID;
CREATE TABLE public.regress_transaction_types (code text PRIMARY KEY);
INSERT INTO public.regress_transaction_types VALUES ('P2P'), ('Canva');
ALTER TABLE public.transactions ADD CONSTRAINT regress_type_fk FOREIGN KEY (transaction_type)
    REFERENCES public.regress_transaction_types NOT VALID;
SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data();
SELECT q.severity, q.rule, q.source, count(*), min(regexp_replace(q.detail, '"[0-9a-f-]{36}"', '"..."')) AS example
  FROM last_issues AS q WHERE q.rule IN ('constraint_violation', 'foreign_key') GROUP BY 1, 2, 3 ORDER BY 2, 3;
SELECT (SELECT count(*) FROM paid_invoice WHERE NOT left_out AND amount >= 100000) AS invoices_over_cap,
       (SELECT count(*) FROM migrate_staging.transactions WHERE amount >= 100000) AS staged_over_cap,
       (SELECT count(*) FROM migrate_staging.transactions WHERE transaction_type NOT IN ('P2P', 'Canva')) AS staged_other_types;
ALTER TABLE public.transactions DROP CONSTRAINT regress_amount_cap, DROP CONSTRAINT regress_type_fk;

------------------------------------------------------------------------
-- The staged new users, created in auth.users as Supabase Auth expects
-- (the launch's first step; rolled back here)
------------------------------------------------------------------------
CREATE TEMP TABLE auth_before AS SELECT id, md5(u::text) AS h FROM auth.users AS u;
BEGIN;
SELECT migrate_ext.create_auth_users() AS created, (SELECT count(*) FROM migrate_staging.auth_users) AS staged;
SELECT (SELECT count(*) FROM auth.users) - (SELECT count(*) FROM auth_before) AS auth_users_grew_by,
       (SELECT count(*) FROM auth_before AS b JOIN auth.users AS u ON u.id = b.id WHERE md5(u::text) <> b.h) AS existing_changed;
SELECT u.aud, u.role, u.instance_id, u.raw_app_meta_data, u.confirmed_at IS NULL AS unconfirmed,
       count(*) AS users,
       count(*) FILTER (WHERE u.confirmation_token = '' AND u.recovery_token = '' AND u.email_change_token_new = ''
                          AND u.email_change = '' AND u.email_change_token_current = '' AND u.reauthentication_token = ''
                          AND u.phone_change = '' AND u.phone_change_token = '') AS empty_tokens,
       count(*) FILTER (WHERE u.raw_user_meta_data IS NOT NULL) AS with_user_meta,
       count(i.id) AS with_identity,
       count(*) FILTER (WHERE i.identity_data->>'sub' = u.id::text AND i.email = lower(u.email)) AS identity_matches
  FROM migrate_staging.auth_users AS s JOIN auth.users AS u ON u.id = s.id
  LEFT JOIN auth.identities AS i ON i.user_id = u.id AND i.provider = 'email'
 GROUP BY 1, 2, 3, 4, 5;
-- a second call creates nobody
SELECT migrate_ext.create_auth_users() AS created_again;
ROLLBACK;

-- Clean up
\c :regress_db supabase_admin
DROP DATABASE regress_app;
