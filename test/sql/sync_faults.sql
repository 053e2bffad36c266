--
-- sync_faults: every fault the emulator can inject, and what a sync does
-- about it.  Transient faults are retried and the sync completes; permanent
-- ones fail that source with an error naming the source, the HTTP status or
-- curl error and what to do, leave its raw table exactly as it was, and let
-- the other source sync.
--
SET client_min_messages = warning;
SET migrate_ext.max_retry_wait = '20ms';

-- A view of the last run, for short expected output
CREATE VIEW regress.last_run AS
    SELECT source, status, pages, fetched, inserted, updated, rejected, error
      FROM migrate_ext.sync_runs
     WHERE run_id = (SELECT max(run_id) FROM migrate_ext.sync_runs)
     ORDER BY source;

-- Mark every raw row, so that any write by a failed sync would show
CREATE FUNCTION regress.mark_raw() RETURNS void LANGUAGE sql AS $$
    UPDATE migrate_ext.xendit_raw SET api_response = api_response || '{"regress_mark": 1}';
    UPDATE migrate_ext.systemeio_raw SET api_response = api_response || '{"regress_mark": 1}';
$$;
CREATE FUNCTION regress.marked() RETURNS text LANGUAGE sql AS $$
    SELECT format('invoices marked %s of %s, contacts marked %s of %s',
        (SELECT count(*) FILTER (WHERE api_response ? 'regress_mark') FROM migrate_ext.xendit_raw),
        (SELECT count(*) FROM migrate_ext.xendit_raw),
        (SELECT count(*) FILTER (WHERE api_response ? 'regress_mark') FROM migrate_ext.systemeio_raw),
        (SELECT count(*) FROM migrate_ext.systemeio_raw));
$$;

-- Keep-alive and gzip: one connection for all pages, every page compressed
SELECT regress.use_emulator('/t/ka_x', '/t/ka_s');
SELECT source, status, pages FROM migrate_ext.sync_raw_api_data();
\! /usr/bin/python3 test/emulator/emuctl.py stats ka_x
\! /usr/bin/python3 test/emulator/emuctl.py stats ka_s

------------------------------------------------------------------------
-- Transient faults: retried, the sync completes
------------------------------------------------------------------------

-- 5xx with an empty body, twice on page 2
SELECT regress.use_emulator('/t/f503/f/503.p2.n2', '/t/f502/f/502.p3.n1+500.p4.n1');
SELECT source, status, pages, fetched, error FROM migrate_ext.sync_raw_api_data();
\! /usr/bin/python3 test/emulator/emuctl.py stats f503
\! /usr/bin/python3 test/emulator/emuctl.py stats f502

-- 429: Xendit says Rate-Limit-Reset, Systeme.io says Retry-After; both are
-- honoured (here 1 second), up to migrate_ext.max_retry_wait
SET migrate_ext.max_retry_wait = '10s';
SELECT regress.use_emulator('/t/f429x/f/429.p2.n1.w1', '/t/f429s/f/429.p2.n1.w1');
SELECT source, status, pages, error, seconds >= 1.0 AS waited_as_told
  FROM migrate_ext.sync_raw_api_data();
\! /usr/bin/python3 test/emulator/emuctl.py stats f429x
\! /usr/bin/python3 test/emulator/emuctl.py stats f429s
-- a quota used up (Remaining: 0) makes the next request wait for the reset
SELECT regress.use_emulator('/t/rem/f/remaining0.p3.n1.w1');
SELECT source, status, error, seconds >= 1.0 AS paused_as_told
  FROM migrate_ext.sync_raw_api_data('{xendit}');
SET migrate_ext.max_retry_wait = '20ms';

-- a response slower than migrate_ext.timeout
SET migrate_ext.timeout = '300ms';
SELECT regress.use_emulator('/t/slow/f/slow.p2.n1.w2');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data('{xendit}');
RESET migrate_ext.timeout;
\! /usr/bin/python3 test/emulator/emuctl.py stats slow

-- a dropped connection, a body cut short, truncated and invalid JSON (once)
SELECT regress.use_emulator('/t/drop/f/drop.p2.n1+cutoff.p3.n1', '/t/trunc/f/truncate.p2.n1+invalid.p3.n1');
SELECT source, status, pages, fetched, error FROM migrate_ext.sync_raw_api_data();

------------------------------------------------------------------------
-- Permanent faults: the source fails, its raw table stays exactly as it was
------------------------------------------------------------------------
SELECT regress.mark_raw();

-- a wrong key: 401, not retried, the API's message and what to do
SELECT migrate_ext.set_api_key('xendit', 'xnd_wrong_key_for_tests');
SELECT migrate_ext.set_api_key('systemeio', 'xnd_wrong_key_for_tests');
SELECT regress.use_emulator('/t/k401', '/t/k401_s');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data();
\! /usr/bin/python3 test/emulator/emuctl.py stats k401
\! /usr/bin/python3 test/emulator/emuctl.py stats k401_s
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT regress.marked();

-- 403, 404, 422 from the API: not retried
SELECT regress.use_emulator('/t/f403/f/403.p1.n0', '/t/f422/f/422.p2.n0');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data();
\! /usr/bin/python3 test/emulator/emuctl.py stats f403
\! /usr/bin/python3 test/emulator/emuctl.py stats f422
SELECT regress.use_emulator('/t/f404/f/404.p3.n0');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data('{xendit}');

-- a failure on a late page, after earlier pages were stored: all undone
SELECT regress.use_emulator('/t/late/f/403.p60.n0');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data('{xendit}');
SELECT regress.marked();

-- 5xx that never ends: retried migrate_ext.max_retries times, then fails
SET migrate_ext.max_retries = 2;
SELECT regress.use_emulator('/t/f503n0/f/503.p2.n0', '/t/inv/f/invalid.p1.n0');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data();
\! /usr/bin/python3 test/emulator/emuctl.py stats f503n0
-- nobody listening
SELECT set_config('migrate_ext.xendit_base_url', 'http://127.0.0.1:1', false) IS NOT NULL;
SET client_min_messages = error;
SELECT source, status, pages, regexp_replace(error, ' after \d+ ms', ' after N ms') AS error
  FROM migrate_ext.sync_raw_api_data('{xendit}');
SET client_min_messages = warning;
RESET migrate_ext.max_retries;

-- the wrong envelope: the API changed its format, not retried
SELECT regress.use_emulator('/t/env_x/f/envelope.p2.n1', '/t/env_s/f/envelope.p1.n1');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data();

-- a redirect is not followed, and its target never sees the key
SELECT regress.use_emulator('/t/redir_x/f/redirect.p1.n1', '/t/redir_s/f/redirect.p2.n1');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data();
\! /usr/bin/python3 test/emulator/emuctl.py trap

-- a response over migrate_ext.max_response_bytes
SET migrate_ext.max_response_bytes = '1MB';
SELECT regress.use_emulator('/t/huge/f/huge.p2.n1.b2000000', '/t/huge_s/f/huge.p1.n1.b2000000');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data();
RESET migrate_ext.max_response_bytes;

-- a cursor that does not advance
SELECT regress.use_emulator('/t/stuck/f/stuck.n0', '/t/stuck_s/f/stuck.n0');
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data();
-- the cursor parameter under another name than the API's is the same trap
SET migrate_ext.xendit_cursor_param = 'last_invoice';
SELECT regress.use_emulator();
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data('{xendit}');
RESET migrate_ext.xendit_cursor_param;

-- nothing above wrote a raw row
SELECT regress.marked();
SELECT status, count(*) FROM migrate_ext.sync_runs GROUP BY status ORDER BY status;

-- a missing key fails only its source
DELETE FROM migrate_ext.api_keys WHERE source = 'systemeio';
SELECT source, status, error FROM migrate_ext.sync_raw_api_data();
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');

-- and with everything healthy again, the marked rows are brought back in line
SELECT source, status, inserted, updated, unchanged, rejected FROM migrate_ext.sync_raw_api_data();
SELECT regress.marked();

-- HTTPS: the server's certificate is verified; a self-signed one is refused
-- (not retried) until migrate_ext.ca_file trusts it
SELECT set_config('migrate_ext.xendit_base_url', current_setting('regress.emulator_tls_url'), false) IS NOT NULL AS https;
SELECT source, status, pages, error FROM migrate_ext.sync_raw_api_data('{xendit}');
SELECT set_config('migrate_ext.ca_file', current_setting('regress.emulator_ca_file'), false) IS NOT NULL AS trusted;
SELECT source, status, pages, fetched, error FROM migrate_ext.sync_raw_api_data('{xendit}');
RESET migrate_ext.ca_file;
