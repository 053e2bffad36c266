--
-- sync_security: who may call what, where API keys may and may not appear,
-- and that a caller's search_path cannot steer the extension.
--
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SET client_min_messages = warning;

-- No function is executable by PUBLIC, no table readable by PUBLIC
SELECT count(*) AS public_function_grants
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'migrate_ext'::regnamespace AND a.grantee = 0;
SELECT count(*) AS public_table_grants
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'migrate_ext'::regnamespace AND a.grantee = 0;
SELECT count(*) FILTER (WHERE prosecdef) AS security_definer_functions
  FROM pg_proc WHERE pronamespace = 'migrate_ext'::regnamespace;

-- The keys appear nowhere but migrate_ext.api_keys
SELECT count(*) AS in_settings FROM pg_settings
 WHERE setting LIKE '%' || :'xendit_key' || '%' OR setting LIKE '%' || :'systemeio_key' || '%'
    OR reset_val LIKE '%' || :'xendit_key' || '%' OR boot_val LIKE '%' || :'xendit_key' || '%';
SELECT count(*) AS in_role_settings FROM pg_db_role_setting
 WHERE array_to_string(setconfig, ' ') LIKE '%' || :'xendit_key' || '%'
    OR array_to_string(setconfig, ' ') LIKE '%' || :'systemeio_key' || '%';
SELECT count(*) AS in_sync_runs FROM migrate_ext.sync_runs
 WHERE coalesce(error, '') LIKE '%' || :'xendit_key' || '%' OR coalesce(error, '') LIKE '%' || :'systemeio_key' || '%'
    OR coalesce(error, '') LIKE '%xnd_wrong_key_for_tests%';
SELECT count(*) AS in_rejects FROM migrate_ext.sync_rejects
 WHERE raw LIKE '%' || :'xendit_key' || '%' OR reason LIKE '%' || :'xendit_key' || '%';
SELECT (SELECT count(*) FROM migrate_ext.xendit_raw
         WHERE api_response::text LIKE '%' || :'xendit_key' || '%') +
       (SELECT count(*) FROM migrate_ext.systemeio_raw
         WHERE api_response::text LIKE '%' || :'systemeio_key' || '%') AS in_api_response;

-- A role that owns the application tables but is not a superuser (Supabase's
-- "postgres") installs the extension (it is trusted) and uses it
CREATE ROLE regress_owner LOGIN NOSUPERUSER;
CREATE ROLE regress_other LOGIN NOSUPERUSER;
CREATE DATABASE regress_owner_db OWNER regress_owner;
SELECT current_database() AS regress_db \gset
\c regress_owner_db regress_owner
SET client_min_messages = warning;
CREATE EXTENSION migrate_ext;
SELECT rolsuper FROM pg_roles WHERE rolname = current_user;
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT source, status, fetched, inserted, rejected, error FROM migrate_ext.sync_raw_api_data();
SELECT (SELECT count(*) FROM migrate_ext.xendit_raw) AS invoices, (SELECT count(*) FROM migrate_ext.systemeio_raw) AS contacts;
-- it cannot point the extension at another host: URLs are superuser settings
SET migrate_ext.xendit_base_url = 'https://attacker.example';
SET migrate_ext.max_response_bytes = '1GB';
-- a caller's search_path cannot steer the extension's SQL
CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE FUNCTION evil.json_array_elements(json) RETURNS SETOF json LANGUAGE sql AS $$ SELECT '{}'::json $$;
SET search_path = evil, pg_catalog, public;
DELETE FROM migrate_ext.xendit_raw WHERE id IN (SELECT id FROM migrate_ext.xendit_raw ORDER BY id LIMIT 3);
SELECT source, status, inserted, updated, error FROM migrate_ext.sync_raw_api_data('{xendit}');
SELECT count(*) AS synced_in_2000 FROM migrate_ext.xendit_raw WHERE api_synced_at < '2001-01-01';
RESET search_path;
-- the tables belong to the bootstrap superuser; the installing role may use
-- them, nobody else may
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner,
       has_table_privilege('regress_owner', c.oid, 'SELECT,INSERT,UPDATE') AS owner_may,
       has_table_privilege('regress_other', c.oid, 'SELECT') AS other_may_read
  FROM pg_class c WHERE c.relnamespace = 'migrate_ext'::regnamespace AND c.relkind = 'r'
   AND c.relname IN ('api_keys', 'xendit_raw', 'systemeio_raw', 'sync_runs', 'sync_rejects') ORDER BY 1;
SELECT count(*) > 0 AS has_tables, count(*) FILTER (WHERE has_table_privilege('regress_other', c.oid, 'SELECT')) AS other_may_read
  FROM pg_class c WHERE c.relnamespace = 'migrate_ext'::regnamespace AND c.relkind = 'r';
SELECT count(*) > 0 AS has_functions,
       bool_and(has_function_privilege('regress_owner', p.oid, 'EXECUTE')) AS owner_may_execute_all,
       count(*) FILTER (WHERE has_function_privilege('regress_other', p.oid, 'EXECUTE')) AS other_may_execute
  FROM pg_proc p WHERE p.pronamespace = 'migrate_ext'::regnamespace;

-- Another role can neither read the keys nor run anything
\c regress_owner_db regress_other
SELECT * FROM migrate_ext.api_keys;
SELECT * FROM migrate_ext.sync_raw_api_data();
SELECT migrate_ext.set_api_key('xendit', 'xnd_other_role_attempt');
SELECT count(*) FROM migrate_ext.xendit_raw;

-- Clean up
\c :regress_db supabase_admin
DROP DATABASE regress_owner_db;
DROP ROLE regress_owner;
DROP ROLE regress_other;
