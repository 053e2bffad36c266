--
-- upgrade: release 1.0, holding the state of a real migration (raw data,
-- sync log, exclusions, stable ids, validation history, a launch and its
-- backup), updated in place with ALTER EXTENSION ... UPDATE.  Nothing of
-- the state may change, the catalog must be the one a fresh install of the
-- current version makes, and the launch made under 1.0 must still roll back.
--
\getenv dataset DATASET_DIR
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset

-- a fresh install of the current version, to compare with
CREATE DATABASE regress_fresh;
\c regress_fresh
SET client_min_messages = warning;
\i test/fixture/load.psql
CREATE SCHEMA regress;
\i test/fixture/extension_catalog.psql
SET ROLE postgres;
CREATE EXTENSION migrate_ext;
RESET ROLE;

-- release 1.0, filled
CREATE DATABASE regress_upgrade;
\c regress_upgrade
SET client_min_messages = warning;
\set production_sql :dataset/production.sql
\i test/fixture/load.psql
\set SHOW_CONTEXT never
CREATE SCHEMA regress;
GRANT USAGE, CREATE ON SCHEMA regress TO postgres;
CREATE EXTENSION dblink SCHEMA regress;
\i test/fixture/extension_catalog.psql
\c regress_upgrade postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
CREATE EXTENSION migrate_ext VERSION '1.0';
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
-- the raw data as 1.0's sync stored it (this library is the current
-- version's, which syncs only once the SQL is updated): the API data set
-- stored page by page with 1.0's store_page(), and a successful sync run
\c regress_upgrade supabase_admin
SET client_min_messages = warning;
CREATE TEMP TABLE files AS
SELECT 'xendit' AS source, pg_read_file(:'dataset' || '/invoices.json') AS page
UNION ALL
SELECT 'systemeio', '{"items": ' || pg_read_file(:'dataset' || '/contacts.json') || ', "hasMore": false}';
SELECT nextval('migrate_ext.sync_runs_run_id_seq') AS run_id \gset
SELECT f.source, s.inserted > 1000 AS stored, s.rejected
  FROM files AS f, migrate_ext.store_page(f.source, f.page, :run_id) AS s ORDER BY 1;
INSERT INTO migrate_ext.sync_runs (run_id, source, started_at, finished_at, status, pages, fetched, inserted, updated, unchanged, rejected)
SELECT :run_id, s.source, now(), now(), 'succeeded', 1, count(*), count(*), 0, 0, 0
  FROM (SELECT 'xendit' AS source FROM migrate_ext.xendit_raw UNION ALL SELECT 'systemeio' FROM migrate_ext.systemeio_raw) AS s
 GROUP BY s.source;
\c regress_upgrade postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id, 'regress: ' || rule
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error';
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
SELECT migrate_ext.launch_clean_production() ~ '^SUCCESS: launched' AS launched_under_1_0;
SELECT backup_timestamp AS ts FROM migrate_ext.migrations WHERE state = 'launched' \gset

-- The state: every table of the extension, its rows digested over the
-- columns it has now
CREATE FUNCTION regress.digest(tbl regclass, cols text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    EXECUTE format('SELECT count(*) || '':'' || coalesce(md5(string_agg(r::text, '','' ORDER BY r::text)), '''') FROM (SELECT %s FROM %s) AS r',
                   (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) AS c), tbl)
       INTO d;
    RETURN d;
END;
$$;
CREATE TABLE regress.state_before AS
SELECT c.oid::regclass::text AS tbl,
       ARRAY(SELECT a.attname::text FROM pg_attribute AS a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS cols
  FROM pg_class AS c WHERE c.relnamespace = 'migrate_ext'::regnamespace AND c.relkind = 'r';
ALTER TABLE regress.state_before ADD COLUMN digest text;
UPDATE regress.state_before SET digest = regress.digest(tbl::regclass, cols);
SELECT count(*) AS tables, count(*) FILTER (WHERE digest NOT LIKE '0:%') AS filled FROM regress.state_before;

-- The update
ALTER EXTENSION migrate_ext UPDATE;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'migrate_ext') AS current_version,
       extversion <> '1.0' AS updated
  FROM pg_extension WHERE extname = 'migrate_ext';

-- nothing of the state changed
SELECT b.tbl, b.digest AS before, regress.digest(b.tbl::regclass, b.cols) AS after
  FROM regress.state_before AS b
 WHERE to_regclass(b.tbl) IS NULL OR regress.digest(b.tbl::regclass, b.cols) <> b.digest;

-- the catalog is the one a fresh install of this version makes
\c regress_upgrade supabase_admin
SET client_min_messages = warning;
CREATE TEMP TABLE fresh AS
SELECT * FROM regress.dblink(format('host=%s port=%s dbname=regress_fresh user=supabase_admin',
                                    current_setting('unix_socket_directories'), current_setting('port')),
                             'SELECT object, definition FROM regress.extension_catalog()')
           AS f(object text, definition text);
SELECT 'only after the update' AS side, object, definition FROM (
    SELECT * FROM regress.extension_catalog() EXCEPT SELECT * FROM fresh) AS x
UNION ALL
SELECT 'only in a fresh install', object, definition FROM (
    SELECT * FROM fresh EXCEPT SELECT * FROM regress.extension_catalog()) AS y
ORDER BY 2, 1;
SELECT count(*) > 50 AS compared_objects FROM fresh;

-- and the updated extension works on the state 1.0 left: the status, the
-- rollback of the launch made under 1.0, a sync, a new validation
\c regress_upgrade postgres
SET client_min_messages = warning;
\set SHOW_CONTEXT never
SELECT regexp_replace(item, '\d{4}(_\d{2}){5}', 'TS') AS item, state
  FROM migrate_ext.migration_status() WHERE item LIKE 'migration %';
SELECT migrate_ext.rollback_migration(:'ts') ~ '^SUCCESS: rolled back' AS rolled_back_after_update;
SELECT source, status, error FROM migrate_ext.sync_raw_api_data() ORDER BY 1;
SELECT count(*) > 0 AS validated_after_update FROM migrate_ext.validate_and_prepare_clean_data();
SELECT errors FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;

\c :regress_db supabase_admin
SET client_min_messages = warning;
DROP DATABASE regress_upgrade;
DROP DATABASE regress_fresh;
