-- The migration as a DBA runs it from psql, against the API emulator.
\pset footer off
\echo '== install the extension'
CREATE EXTENSION migrate_ext;

\echo '== store the API keys (readable by the extension owner only)'
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');

\echo '== 1. sync_raw_api_data(): page both APIs into the raw tables'
SELECT * FROM migrate_ext.sync_raw_api_data();

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

\echo '== the sync log'
SELECT run_id, source, status, pages, fetched, inserted, updated, unchanged, rejected,
       finished_at - started_at AS took
  FROM migrate_ext.sync_runs ORDER BY run_id, source;
