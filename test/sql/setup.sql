--
-- setup: test helpers and API keys for the suites that follow.
-- The API emulator's address is regress.emulator_url (set by test/run.sh);
-- path modifiers before the API path select a fault or a changed data set,
-- e.g. '/t/tag/f/503.p2.n2' (see test/emulator/emulator.py).
--
CREATE SCHEMA regress;

-- Point both sources at the emulator, each with its own path modifiers
CREATE FUNCTION regress.use_emulator(xendit text DEFAULT '', systemeio text DEFAULT '')
RETURNS boolean LANGUAGE sql AS $$
    SELECT set_config('migrate_ext.xendit_base_url',
                      current_setting('regress.emulator_url') || xendit, false) IS NOT NULL
       AND set_config('migrate_ext.systemeio_base_url',
                      current_setting('regress.emulator_url') || systemeio, false) IS NOT NULL;
$$;

-- A fingerprint of a raw table: changes if any row is written
CREATE FUNCTION regress.raw_fingerprint(tbl regclass) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    fp text;
BEGIN
    EXECUTE format('SELECT md5(string_agg(t.id || t.api_synced_at::text || t.sync_run_id::text || t.api_response::text, '','' ORDER BY t.id)) FROM %s AS t', tbl)
       INTO fp;
    RETURN fp;
END;
$$;

-- The extension is installed, in its own schema, with nothing in public
SELECT extname, extnamespace::regnamespace, extversion FROM pg_extension WHERE extname = 'migrate_ext';
SELECT count(*) AS objects_in_public
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'migrate_ext'
  JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
 WHERE c.relnamespace = 'public'::regnamespace;

-- The keys of the emulator's accounts (from the environment, never echoed)
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT source, set_by FROM migrate_ext.api_keys ORDER BY source;

-- Replacing a key keeps one row per source
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT count(*) FROM migrate_ext.api_keys;

-- Bad input is refused with a clear error, and nothing is stored
SELECT migrate_ext.set_api_key('stripe', 'sk_live_x');
SELECT migrate_ext.set_api_key(NULL, 'x');
SELECT migrate_ext.set_api_key('xendit', NULL);
SELECT migrate_ext.set_api_key('xendit', '');
SELECT migrate_ext.set_api_key('xendit', ' xnd_fake_bad_secret_1');
SELECT migrate_ext.set_api_key('xendit', repeat('k', 1025));
SELECT count(*) FROM migrate_ext.api_keys WHERE api_key = :'xendit_key' OR api_key = :'systemeio_key';

-- Settings: defaults, ranges, and URLs that are refused
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'migrate_ext.%'
   AND name NOT LIKE '%base_url' ORDER BY name;
SET migrate_ext.xendit_base_url = 'ftp://api.xendit.co';
SET migrate_ext.xendit_base_url = 'https://user:pw@api.xendit.co';
SET migrate_ext.xendit_base_url = 'https://api.xendit.co?x=1';
SET migrate_ext.xendit_cursor_param = 'last_invoice_id&x=1';
SET migrate_ext.page_size = 101;
SET migrate_ext.page_size = 9;
SET migrate_ext.no_such_setting = 1;
