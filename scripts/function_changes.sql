-- scripts/function_changes.sql: the function part of an upgrade script.
--
-- Run in a database holding the previous release (schema migrate_ext) with
-- the current version installed side by side under another schema name is
-- not possible, so it compares two databases through dblink: the one it
-- runs in has the previous release installed, :'new_db' a fresh install of
-- the current version.  It prints, in the order the current install script
-- creates them:
--   DROP FUNCTION for every function that is gone or changed its signature,
--   result type or argument names;
--   the definition of every function that is new or changed (pg_get_functiondef
--   gives CREATE OR REPLACE FUNCTION), with its comment.
-- Tables, types and data changes are written by hand above this part; the
-- upgrade test (test/sql/upgrade.sql) proves the result equals a fresh install.
--
--   psql -X -At -v new_db=regress_new -d regress_old -f scripts/function_changes.sql
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE TEMP TABLE new_functions AS
SELECT * FROM dblink(format('dbname=%s', :'new_db'), $q$
    SELECT p.oid::bigint, p.oid::regprocedure::text, pg_get_function_result(p.oid), pg_get_function_arguments(p.oid),
           pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc')
      FROM pg_proc AS p WHERE p.pronamespace = 'migrate_ext'::regnamespace
$q$) AS f(ord bigint, sig text, result text, args text, def text, note text);
CREATE TEMP TABLE old_functions AS
SELECT p.oid::regprocedure::text AS sig, pg_get_function_result(p.oid) AS result, pg_get_function_arguments(p.oid) AS args,
       pg_get_functiondef(p.oid) AS def, obj_description(p.oid, 'pg_proc') AS note
  FROM pg_proc AS p WHERE p.pronamespace = 'migrate_ext'::regnamespace;

-- gone, or changed in a way CREATE OR REPLACE cannot do
SELECT format('DROP FUNCTION %s;', o.sig)
  FROM old_functions AS o LEFT JOIN new_functions AS n ON n.sig = o.sig
 WHERE n.sig IS NULL OR n.result <> o.result OR n.args <> o.args
 ORDER BY o.sig;
-- new or changed, in creation order
SELECT rtrim(n.def, E'\n') || E';\n'
       || CASE WHEN n.note IS DISTINCT FROM o.note
               THEN format(E'COMMENT ON FUNCTION %s IS %s;\n', n.sig, quote_nullable(n.note)) ELSE '' END
  FROM new_functions AS n LEFT JOIN old_functions AS o ON o.sig = n.sig
 WHERE o.sig IS NULL OR n.def <> o.def OR n.result <> o.result OR n.args <> o.args OR n.note IS DISTINCT FROM o.note
 ORDER BY n.ord;
