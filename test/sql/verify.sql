--
-- verify: the launch-day checks on the Supabase-like fixture.
--   * new auth users are created confirmed by default, unconfirmed when
--     migrate_ext.new_user_rules.email_confirm is false;
--   * verify_production() is clean after a correct launch, after a rollback
--     and after a second launch, and finds a planted defect of each kind it
--     checks (a dropped policy, a disabled trigger, a missing enrollment, a
--     malformed auth user);
--   * the launch result and migration_status() name the tables the backup
--     still references and how to delete such a row now.
-- Database regress_launchday stays launched for the reconcile suite.
--
\getenv dataset DATASET_DIR
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_launchday;
CREATE DATABASE regress_launchday;
\c regress_launchday
SET client_min_messages = warning;
\set production_sql :dataset/production.sql
\i test/fixture/load.psql
\set SHOW_CONTEXT never
CREATE SCHEMA regress;
GRANT USAGE, CREATE ON SCHEMA regress TO postgres;

\c regress_launchday postgres
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION migrate_ext;
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT source, status FROM migrate_ext.sync_raw_api_data();

-- timestamps and uuids differ in every run
CREATE FUNCTION regress.masked(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(t, '\d{4}(_\d{2}){5}', 'TS', 'g'),
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', 'UUID', 'g'),
                          'held [0-9.]+ ms', 'held N ms', 'g');
$$;

-- nothing to verify before a launch
SELECT * FROM migrate_ext.verify_production();

-- staging, after the DBA's exclusions
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id, 'regress: ' || rule
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error';
SELECT rows AS errors FROM migrate_ext.validate_and_prepare_clean_data() WHERE section = 'run' AND item = 'errors';

-- New auth users: confirmed by default (as the application's admin code
-- created them, email_confirm: true), in the user, its metadata and identity
SELECT * FROM migrate_ext.new_user_rules;
CREATE VIEW regress.new_users AS
SELECT count(*) AS users,
       count(*) FILTER (WHERE u.email_confirmed_at IS NOT NULL) AS email_confirmed,
       count(*) FILTER (WHERE u.confirmed_at IS NOT NULL) AS confirmed,
       count(*) FILTER (WHERE (u.raw_user_meta_data->>'email_verified')::boolean) AS meta_verified,
       count(*) FILTER (WHERE (i.identity_data->>'email_verified')::boolean) AS identity_verified
  FROM migrate_staging.auth_users AS s
  JOIN auth.users AS u ON u.id = s.id
  JOIN auth.identities AS i ON i.user_id = u.id AND i.provider = 'email';
BEGIN;
SELECT migrate_ext.create_auth_users() > 0 AS created;
SELECT * FROM regress.new_users;
ROLLBACK;
-- and unconfirmed when the rule says so: they must confirm by e-mail first
BEGIN;
UPDATE migrate_ext.new_user_rules SET email_confirm = false;
SELECT migrate_ext.create_auth_users() > 0 AS created;
SELECT * FROM regress.new_users;
ROLLBACK;

-- The launch tells the DBA to verify, and what the backup still references
SELECT regress.masked(migrate_ext.launch_clean_production()) AS launch;
SELECT backup_timestamp AS ts FROM migrate_ext.migrations \gset
SELECT * FROM regress.new_users;
SELECT item ~ '^migration ' AS migration, state, regress.masked(substring(detail FROM 'Backup schema \S+ keeps foreign.*')) AS detail
  FROM migrate_ext.migration_status() WHERE item LIKE 'migration %';

-- the statements it gives delete an auth user a backup row references
SELECT format('migrate_backup_%s', :'ts') AS backup_schema \gset
SELECT id AS victim FROM :"backup_schema".unified_profiles AS b
 WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = b.id)
   AND NOT EXISTS (SELECT 1 FROM public.affiliates AS a WHERE a.user_id = b.id)
   AND NOT EXISTS (SELECT 1 FROM public.ecommerce_orders AS o WHERE o.user_id = b.id)
 ORDER BY id LIMIT 1 \gset
BEGIN;
DELETE FROM auth.users WHERE id = :'victim';
ROLLBACK;
BEGIN;
SELECT string_agg(s, E'\n') AS statements
  FROM migrate_ext.backup_delete_statements(:'ts', 'auth.users', :'victim') AS s \gset
:statements
SELECT count(*) AS left_behind FROM auth.users WHERE id = :'victim';
ROLLBACK;

-- After a correct launch every check is ok
SELECT check_name, regress.masked(subject) AS subject, ok FROM migrate_ext.verify_production();
SELECT check_name, subject, regress.masked(detail) AS detail FROM migrate_ext.verify_production()
 WHERE check_name IN ('rows', 'revenue', 'auth users');

-- A planted defect of each kind is found
BEGIN;
DROP POLICY "Users can view their own transactions" ON public.transactions;
SELECT check_name, subject, ok, regress.masked(detail) AS detail FROM migrate_ext.verify_production() WHERE NOT ok;
ROLLBACK;
BEGIN;
ALTER TABLE public.enrollments DISABLE TRIGGER trigger_sync_is_student_on_enrollments_change;
SELECT check_name, subject, ok, regress.masked(detail) AS detail FROM migrate_ext.verify_production() WHERE NOT ok;
ROLLBACK;
BEGIN;
DELETE FROM public.enrollments
 WHERE id = (SELECT e.id FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id
              WHERE c.title = 'Papers to Profits' ORDER BY e.id LIMIT 1);
SELECT check_name, subject, ok, regress.masked(detail) ~ '^1[: ]' AS one_found FROM migrate_ext.verify_production() WHERE NOT ok;
ROLLBACK;
BEGIN;
UPDATE auth.users SET confirmation_token = NULL
 WHERE id = (SELECT min(c::text)::uuid FROM migrate_ext.migrations, unnest(created_users) AS c);
DELETE FROM auth.identities
 WHERE user_id = (SELECT max(c::text)::uuid FROM migrate_ext.migrations, unnest(created_users) AS c);
SELECT check_name, subject, ok, regress.masked(detail) AS detail FROM migrate_ext.verify_production() WHERE NOT ok;
ROLLBACK;
SELECT count(*) FILTER (WHERE NOT ok) AS failing FROM migrate_ext.verify_production();

-- After a rollback: the previous production as it was, its known data
-- problems included, and no new ones
SELECT regress.masked(migrate_ext.rollback_migration(:'ts')) IS NOT NULL AS rolled_back;
SELECT check_name, regress.masked(subject) AS subject, ok FROM migrate_ext.verify_production();
SELECT check_name, subject, regress.masked(detail) AS detail FROM migrate_ext.verify_production() WHERE check_name ~ '^buyers';

-- A second launch of the kept staging: clean again
SELECT regress.masked(migrate_ext.launch_clean_production()) ~ '^SUCCESS' AS launched;
SELECT count(*) AS checks, count(*) FILTER (WHERE NOT ok) AS failing FROM migrate_ext.verify_production();

\c contrib_regression supabase_admin
