--
-- plpgsql_check: every PL/pgSQL function of migrate_ext passes plpgsql_check
-- (Debian: postgresql-15-plpgsql-check) with no finding at all, errors,
-- warnings and extra warnings alike, as the C code builds with no compiler
-- warning.  The check prepares every statement against the tables it
-- names, so it runs where they exist: the Supabase-like fixture (public,
-- auth) and migrate_staging as a validation leaves it.  The working tables
-- validate_and_prepare_clean_data() creates are declared to the check by
-- its PRAGMA:TABLE lines.  A finding shows up in the diff of the last query.
--
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SET client_min_messages = warning;
CREATE DATABASE regress_check;
SELECT current_database() AS regress_db \gset
\c regress_check
SET client_min_messages = warning;
\i test/fixture/load.psql
\set SHOW_CONTEXT never
CREATE EXTENSION plpgsql_check;

\c regress_check postgres
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION migrate_ext;
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT source, status FROM migrate_ext.sync_raw_api_data();
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();

\c regress_check supabase_admin
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- the functions checked (trigger functions would need their table: none)
SELECT count(*) > 0 AS functions_checked,
       count(*) FILTER (WHERE p.prorettype = 'trigger'::regtype) AS trigger_functions
  FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
 WHERE p.pronamespace = 'migrate_ext'::regnamespace AND l.lanname = 'plpgsql';
-- every finding, with its line; none expected
SELECT p.oid::regprocedure AS function, r.lineno, r.level, r.sqlstate, r.message, r.detail
  FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
 CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid, fatal_errors => false, other_warnings => true,
                                              extra_warnings => true) AS r
 WHERE p.pronamespace = 'migrate_ext'::regnamespace AND l.lanname = 'plpgsql'
 ORDER BY 1::text, 2, 5;

\c :regress_db supabase_admin
DROP DATABASE regress_check;
