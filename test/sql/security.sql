--
-- security: installing or running migrate_ext never hands anyone more
-- privilege than they had.  Each attack of the security review is played
-- by a role with only the privileges it names, on the Supabase-like
-- fixture: regress_attacker may log in, create schemas (CREATE on the
-- database, as many Supabase roles may) and is a member of authenticated,
-- so it reads the application's tables as a signed-in user does.
--
\getenv dataset DATASET_DIR
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset
CREATE ROLE regress_attacker LOGIN NOSUPERUSER;
CREATE ROLE regress_installer LOGIN NOSUPERUSER;

-------------------------------------------------------------------------------
-- 1. CREATE EXTENSION in a schema somebody prepared.  The install script
-- runs as a superuser on behalf of the database owner; an operator or
-- function planted in schema migrate_ext would run as that superuser.
-------------------------------------------------------------------------------
CREATE DATABASE regress_sec_install OWNER regress_installer;
\c regress_sec_install regress_installer
SET client_min_messages = warning;
\set SHOW_CONTEXT never
CREATE SCHEMA migrate_ext;
CREATE FUNCTION migrate_ext.escalate(numeric, integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE regress_installer SUPERUSER';
    END IF;
    RETURN $1 OPERATOR(pg_catalog.>) $2::numeric;
END
$$;
CREATE OPERATOR migrate_ext.> (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = migrate_ext.escalate);
CREATE FUNCTION migrate_ext.unnest(text[]) RETURNS SETOF text
LANGUAGE sql AS $$ SELECT pg_catalog.unnest($1) $$;
-- the owner of the database installs the trusted extension: refused
CREATE EXTENSION migrate_ext;
SELECT rolsuper AS installer_became_superuser FROM pg_roles WHERE rolname = 'regress_installer';
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'migrate_ext';
DROP SCHEMA migrate_ext CASCADE;
-- an empty schema of another role is refused too: its owner could plant
-- objects while the script runs, or drop everything afterwards
\c regress_sec_install supabase_admin
SET client_min_messages = warning;
CREATE SCHEMA migrate_ext AUTHORIZATION regress_attacker;
\c regress_sec_install regress_installer
SET client_min_messages = warning;
\set SHOW_CONTEXT never
CREATE EXTENSION migrate_ext;
\c regress_sec_install supabase_admin
SET client_min_messages = warning;
DROP SCHEMA migrate_ext;
-- an empty schema of the installing role (a restored dump makes one) is its own
\c regress_sec_install regress_installer
SET client_min_messages = warning;
CREATE SCHEMA migrate_ext;
CREATE EXTENSION migrate_ext;
SELECT extversion AS installed FROM pg_extension WHERE extname = 'migrate_ext';
-- and every operator and function the extension's objects use is
-- PostgreSQL's own or the extension's
SELECT count(*) AS foreign_references
  FROM pg_depend AS d
  LEFT JOIN pg_operator AS o ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
  LEFT JOIN pg_proc AS p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
 WHERE coalesce(o.oprnamespace, p.pronamespace)
       NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'migrate_ext'::regnamespace);
SELECT rolsuper AS installer_became_superuser FROM pg_roles WHERE rolname = 'regress_installer';
\c :regress_db supabase_admin
SET client_min_messages = warning;
DROP DATABASE regress_sec_install;

-------------------------------------------------------------------------------
-- The fixture, with the default privileges Supabase projects often have:
-- new schemas, tables and sequences of postgres open to anon
-------------------------------------------------------------------------------
CREATE DATABASE regress_sec;
\c regress_sec
SET client_min_messages = warning;
\set production_sql :dataset/production.sql
\i test/fixture/load.psql
\set SHOW_CONTEXT never
GRANT CREATE ON DATABASE regress_sec TO regress_attacker;
GRANT authenticated TO regress_attacker;
CREATE ROLE "App Reader";
CREATE ROLE """App Reader""";
CREATE SCHEMA regress;
GRANT USAGE, CREATE ON SCHEMA regress TO postgres;
CREATE EXTENSION dblink SCHEMA regress;
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO anon;
ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO anon;
ALTER DEFAULT PRIVILEGES GRANT SELECT ON SEQUENCES TO anon;
-- a grant to a role whose name needs quoting, and an index whose name does
GRANT SELECT ON public.transactions TO "App Reader";
CREATE INDEX "Transactions By Email" ON public.transactions (contact_email, created_at);
CREATE EXTENSION migrate_ext;
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT source, status FROM migrate_ext.sync_raw_api_data();

\i test/fixture/error_of.psql

-------------------------------------------------------------------------------
-- 3. A schema migrate_staging prepared by another role: validation would
-- put customer data in it, and its owner could read or drop it
-------------------------------------------------------------------------------
\c regress_sec regress_attacker
SET client_min_messages = warning;
CREATE SCHEMA migrate_staging;
GRANT USAGE, CREATE ON SCHEMA migrate_staging TO PUBLIC;
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT regress.error_of('SELECT * FROM migrate_ext.validate_and_prepare_clean_data()');
SELECT count(*) AS validation_runs, (SELECT count(*) FROM pg_class WHERE relnamespace = 'migrate_staging'::regnamespace) AS staged
  FROM migrate_ext.validation_runs;
\c regress_sec regress_attacker
SET client_min_messages = warning;
DROP SCHEMA migrate_staging;
-- an object planted in the extension's staging schema is refused as well
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
CREATE SCHEMA migrate_staging;
CREATE VIEW migrate_staging.peek AS SELECT 1 AS one;
SELECT regress.error_of('SELECT * FROM migrate_ext.validate_and_prepare_clean_data()');
DROP VIEW migrate_staging.peek;

-------------------------------------------------------------------------------
-- 5. Any role can take an advisory lock: the run lock must not be one.
-- A session of regress_attacker holds the old key while postgres validates.
-------------------------------------------------------------------------------
\c regress_sec supabase_admin
SET client_min_messages = warning;
SELECT regress.dblink_connect('attacker', format('host=%s port=%s dbname=regress_sec user=regress_attacker',
                                         current_setting('unix_socket_directories'), current_setting('port')));
SELECT * FROM regress.dblink('attacker', 'SELECT pg_advisory_lock(1835624306, 1)::text') AS t(locked text);
SET ROLE postgres;
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
-- (the DBA excludes test accounts and records that cannot be fixed upstream)
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id, 'regress: ' || rule
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error';
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
SELECT errors FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;
RESET ROLE;
SELECT regress.dblink_disconnect('attacker');
-- and the run lock itself is out of its reach
\c regress_sec regress_attacker
SET client_min_messages = warning;
SELECT 1 FROM migrate_ext.run_lock FOR UPDATE;
SELECT migrate_ext.lock_out_other_runs('launch_clean_production()');

-------------------------------------------------------------------------------
-- 6. Whatever default privileges say, anon reaches nothing of staging
-------------------------------------------------------------------------------
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT has_schema_privilege('anon', 'migrate_staging', 'USAGE') AS anon_uses_staging,
       (SELECT count(*) FROM pg_class AS c
         WHERE c.relnamespace = 'migrate_staging'::regnamespace AND c.relkind IN ('r', 'S')
           AND (has_table_privilege('anon', c.oid, 'SELECT') OR c.relacl IS NOT NULL
                AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner))) AS open_staging_relations;

-------------------------------------------------------------------------------
-- 4. Dependents the launching role cannot change: refused before anything
-- runs, naming the object and its owner
-------------------------------------------------------------------------------
\c regress_sec regress_attacker
SET client_min_messages = warning;
CREATE SCHEMA evil;
CREATE VIEW evil.payments AS SELECT id, amount FROM public.transactions;
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT tbl, object, reason FROM migrate_ext.swap_refusals();
SELECT regress.error_of('SELECT migrate_ext.launch_clean_production()');
\c regress_sec regress_attacker
SET client_min_messages = warning;
DROP VIEW evil.payments;

-------------------------------------------------------------------------------
-- 2. A table of another role with a regclass column naming a production
-- table, and a trigger that would run as whoever updates it
-------------------------------------------------------------------------------
CREATE TABLE evil.watch (entity regclass, loot text);
INSERT INTO evil.watch VALUES ('public.transactions', NULL);
CREATE FUNCTION evil.steal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.loot := (SELECT string_agg(api_key, ',') FROM migrate_ext.api_keys);
    EXECUTE 'GRANT postgres TO regress_attacker';
    RETURN NEW;
END
$$;
CREATE TRIGGER steal BEFORE UPDATE ON evil.watch FOR EACH ROW EXECUTE FUNCTION evil.steal();

-------------------------------------------------------------------------------
-- 8. An overload of a function the swap's plan calls, planted in the
-- extension's schema by its owner: the plan's typed calls never pick it
-------------------------------------------------------------------------------
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
CREATE TABLE regress.overload_calls (target text);
CREATE FUNCTION migrate_ext.set_acl(kind text, target text, acl text) RETURNS void
LANGUAGE sql AS $$ INSERT INTO regress.overload_calls VALUES (target) $$;

-------------------------------------------------------------------------------
-- 9. Schemas squatting the next seconds' backup names: a clear refusal
-- within a few seconds, not a wait of one second per name
-------------------------------------------------------------------------------
\c regress_sec regress_attacker
SET client_min_messages = warning;
DO $$
BEGIN
    FOR s IN 0..30 LOOP
        EXECUTE format('CREATE SCHEMA %I', 'migrate_backup_'
                       || to_char((clock_timestamp() + s * interval '1 second') AT TIME ZONE 'UTC', 'YYYY_MM_DD_HH24_MI_SS'));
    END LOOP;
END
$$;
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
CREATE TEMP TABLE started AS SELECT clock_timestamp() AS at;
SELECT regress.error_of('SELECT migrate_ext.launch_clean_production()');
SELECT clock_timestamp() - at < interval '5 seconds' AS refused_quickly FROM started;
\c regress_sec regress_attacker
SET client_min_messages = warning;
DO $$
DECLARE
    s text;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'migrate\_backup\_%' AND nspowner = current_user::regrole LOOP
        EXECUTE format('DROP SCHEMA %I', s);
    END LOOP;
END
$$;

-------------------------------------------------------------------------------
-- The launch, then what each attack got
-------------------------------------------------------------------------------
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT migrate_ext.launch_clean_production() ~ '^SUCCESS: launched' AS launched;
SELECT backup_timestamp AS ts FROM migrate_ext.migrations WHERE state = 'launched' \gset
-- 2: the unknown table was not touched, its trigger never ran
SELECT entity::text LIKE 'migrate_backup_%' AS still_names_the_old_table, loot IS NULL AS nothing_stolen,
       NOT pg_has_role('regress_attacker', 'postgres', 'MEMBER') AS attacker_gained_nothing
  FROM evil.watch;
-- realtime's subscription, which the swap knows, follows the new table
SELECT entity::text AS realtime_entity, entity = 'public.transactions'::regclass AS follows FROM realtime.subscription;
-- 8: the planted overload was never called
SELECT count(*) AS overload_calls FROM regress.overload_calls;
DROP FUNCTION migrate_ext.set_acl(text, text, text);
-- 7: the grant to a role whose name needs quoting came along, to that role only
SELECT has_table_privilege('App Reader', 'public.transactions', 'SELECT') AS app_reader_reads,
       has_table_privilege('"App Reader"', 'public.transactions', 'SELECT') AS quoted_name_role_reads;
-- 10: an index whose name needs quoting keeps its name
SELECT indexrelid::regclass AS index FROM pg_index
 WHERE indrelid = 'public.transactions'::regclass AND indexrelid::regclass::text = '"Transactions By Email"';
-- 6: the backup is closed to anon as well
SELECT has_schema_privilege('anon', format('migrate_backup_%s', :'ts'), 'USAGE') AS anon_uses_backup;

-- 4, the way back: a view of another role over the launched tables makes
-- the rollback refuse before anything runs, instead of failing half-way
\c regress_sec regress_attacker
SET client_min_messages = warning;
CREATE VIEW evil.payments AS SELECT id, amount FROM public.transactions;
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT regress.error_of(format('SELECT migrate_ext.rollback_migration(%L)', :'ts'));
\c regress_sec regress_attacker
SET client_min_messages = warning;
DROP VIEW evil.payments;
\c regress_sec postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT migrate_ext.rollback_migration(:'ts') ~ '^SUCCESS: rolled back' AS rolled_back;
-- 3, after the rollback: the launched tables are in migrate_staging, which
-- no other role owns or may use
\c regress_sec regress_attacker
SET client_min_messages = warning;
DROP TABLE migrate_staging.transactions;
DROP SCHEMA migrate_staging CASCADE;
\c regress_sec postgres
SET client_min_messages = warning;
SELECT count(*) AS launched_transactions_kept FROM migrate_staging.transactions HAVING count(*) > 0;

\c :regress_db supabase_admin
SET client_min_messages = warning;
DROP DATABASE regress_sec;
DROP ROLE regress_attacker;
DROP ROLE regress_installer;
DROP ROLE "App Reader";
DROP ROLE """App Reader""";
