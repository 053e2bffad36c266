-- The migration as a DBA runs it from psql, against the API emulator.
\pset footer off
SET client_min_messages = warning;
\echo '== production before: contaminated (test accounts, no Canva product line, missing customers)'
SELECT (SELECT count(*) FROM public.unified_profiles) AS profiles,
       (SELECT count(*) FROM public.transactions) AS transactions,
       (SELECT count(*) FROM public.transactions WHERE transaction_type = 'Canva') AS canva_transactions,
       (SELECT count(*) FROM public.enrollments) AS enrollments;

\echo '== install the extension (as postgres, the owner of the tables; not a superuser)'
CREATE EXTENSION migrate_ext;

\echo '== store the API keys (readable by the extension owner only)'
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');

\echo '== 1. sync_raw_api_data(): page both APIs into the raw tables'
SET client_min_messages = notice;
SELECT * FROM migrate_ext.sync_raw_api_data();
SET client_min_messages = warning;

\echo '== what landed: invoices by status and product family'
SELECT status,
       count(*) FILTER (WHERE description ILIKE '%papers to profits%') AS p2p,
       count(*) FILTER (WHERE description ILIKE '%canva%') AS canva,
       count(*) AS all_invoices,
       sum(amount) FILTER (WHERE currency = 'PHP') AS php_amount
  FROM migrate_ext.xendit_raw GROUP BY status ORDER BY status;

\echo '== contacts by tag'
SELECT tag, count(*) FROM migrate_ext.systemeio_raw, unnest(tags) AS tag
 GROUP BY tag ORDER BY count(*) DESC, tag;

\echo '== a few contacts, names as sent (accents and emoji intact)'
SELECT id, email, first_name, last_name, tags FROM migrate_ext.systemeio_raw
 WHERE first_name ~ '[^\x01-\x7f]' ORDER BY id::bigint LIMIT 5;

\echo '== records PostgreSQL could not store, with the reason'
SELECT source, record_id, reason, left(raw, 60) AS raw FROM migrate_ext.sync_rejects ORDER BY source;

\echo '== a second sync: nothing changed upstream, nothing is written'
SELECT source, status, inserted, updated, unchanged, rejected FROM migrate_ext.sync_raw_api_data();

\echo '== 2. validate_and_prepare_clean_data(): staging and the full report'
SELECT * FROM migrate_ext.validate_and_prepare_clean_data();

\echo '== the errors that block the launch, one line each (every issue is in migrate_ext.validation_issues)'
SELECT rule, source, record_id, email, detail FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error'
 ORDER BY rule, record_id;

\echo '== the DBA resolves them: test accounts and records that cannot be fixed upstream are excluded'
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id,
       'demo: cannot be fixed upstream today (' || rule || ')'
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error'
   AND source IN ('xendit', 'systemeio');
SELECT section, item, rows, amount, CASE WHEN section = 'run' THEN detail END AS detail
  FROM migrate_ext.validate_and_prepare_clean_data()
 WHERE section IN ('run', 'staging', 'revenue', 'production');

\echo '== the sync log'
SELECT run_id, source, status, pages, fetched, inserted, updated, unchanged, rejected,
       finished_at - started_at AS took
  FROM migrate_ext.sync_runs ORDER BY run_id, source;
