--
-- sync_basic: a full sync of the scale-1 data set, exact values, a second
-- sync that writes nothing, change detection, progress.
--
\getenv dataset DATASET_DIR
SET client_min_messages = warning;

-- The API's own records, read from the generator's files as json (not
-- jsonb), so that every number and string keeps the exact text it was sent as
-- (records holding the escape \u0000, which PostgreSQL cannot store as text,
-- are kept apart: json ->> would refuse them too)
CREATE TEMP TABLE api_records AS
    SELECT 'xendit' AS source, e AS rec, e::text LIKE '%\u0000%' AS unstorable
      FROM json_array_elements(pg_read_file(:'dataset' || '/invoices.json')::json) AS e
    UNION ALL
    SELECT 'systemeio', e, e::text LIKE '%\u0000%'
      FROM json_array_elements(pg_read_file(:'dataset' || '/contacts.json')::json) AS e;
CREATE TEMP VIEW api_invoices AS SELECT rec FROM api_records WHERE source = 'xendit' AND NOT unstorable;
CREATE TEMP VIEW api_contacts AS SELECT rec FROM api_records WHERE source = 'systemeio' AND NOT unstorable;
SELECT source, count(*), count(*) FILTER (WHERE unstorable) AS unstorable
  FROM api_records GROUP BY source ORDER BY source;

-- First sync: everything is new
SELECT pg_current_wal_insert_lsn() AS lsn0 \gset
SELECT source, status, pages, fetched, inserted, updated, unchanged, rejected, error
  FROM migrate_ext.sync_raw_api_data();
SELECT pg_current_wal_insert_lsn() AS lsn1 \gset

-- Every record is stored, except the ones PostgreSQL cannot store, which
-- are in sync_rejects with the reason and their exact text
SELECT (SELECT count(*) FROM migrate_ext.xendit_raw) AS invoices,
       (SELECT count(*) FROM migrate_ext.systemeio_raw) AS contacts;
SELECT r.source, r.record_id, r.reason,
       r.raw IN (SELECT a.rec::text FROM api_records a WHERE a.unstorable AND a.source = r.source) AS raw_is_exact
  FROM migrate_ext.sync_rejects r ORDER BY r.source;
SELECT count(*) AS api_records_missing
  FROM (SELECT rec->>'id' AS id FROM api_invoices
         WHERE rec->>'id' NOT IN (SELECT id FROM migrate_ext.xendit_raw)
        UNION ALL
        SELECT rec->>'id' FROM api_contacts
         WHERE rec->>'id' NOT IN (SELECT id FROM migrate_ext.systemeio_raw)) AS m;

-- Amounts equal the API's text to the last decimal (numeric, never a double)
SELECT count(*) AS amounts_compared,
       count(*) FILTER (WHERE x.amount::text IS DISTINCT FROM a.rec->>'amount') AS amounts_different,
       count(*) FILTER (WHERE a.rec->>'amount' ~ '\.\d\d$') AS with_two_decimals
  FROM api_invoices a JOIN migrate_ext.xendit_raw x ON x.id = a.rec->>'id'
 WHERE json_typeof(a.rec->'amount') = 'number';
SELECT count(*) FILTER (WHERE x.paid_amount::text IS DISTINCT FROM a.rec->>'paid_amount') AS paid_amounts_different
  FROM api_invoices a JOIN migrate_ext.xendit_raw x ON x.id = a.rec->>'id'
 WHERE json_typeof(a.rec->'paid_amount') = 'number';
-- a non-numeric amount is kept in api_response and left NULL in the typed column
SELECT count(*) AS non_numeric_amounts, count(x.amount) AS typed
  FROM api_invoices a JOIN migrate_ext.xendit_raw x ON x.id = a.rec->>'id'
 WHERE json_typeof(a.rec->'amount') = 'string';

-- Names with accents and emoji are intact; e-mails are stored as sent
SELECT count(*) AS contacts_compared,
       count(*) FILTER (WHERE s.first_name IS DISTINCT FROM f.first_name) AS first_names_different,
       count(*) FILTER (WHERE s.last_name IS DISTINCT FROM f.surname) AS last_names_different,
       count(*) FILTER (WHERE s.email IS DISTINCT FROM a.rec->>'email') AS emails_different,
       count(*) FILTER (WHERE s.first_name || s.last_name ~ '[^\x01-\x7f]') AS non_ascii_names
  FROM api_contacts a
  JOIN migrate_ext.systemeio_raw s ON s.id = a.rec->>'id'
  CROSS JOIN LATERAL (
      SELECT CASE json_typeof(a.rec->'fields')
               WHEN 'object' THEN a.rec->'fields'->>'first_name'
               ELSE (SELECT fl->>'value' FROM json_array_elements(a.rec->'fields') fl
                      WHERE fl->>'slug' = 'first_name' LIMIT 1) END AS first_name,
             CASE json_typeof(a.rec->'fields')
               WHEN 'object' THEN a.rec->'fields'->>'surname'
               ELSE (SELECT fl->>'value' FROM json_array_elements(a.rec->'fields') fl
                      WHERE fl->>'slug' = 'surname' LIMIT 1) END AS surname) AS f
 WHERE json_typeof(a.rec->'fields') IN ('array', 'object');
SELECT first_name, last_name FROM migrate_ext.systemeio_raw
 WHERE first_name ~ '[^\x01-\x7f]' OR last_name ~ '[^\x01-\x7f]' ORDER BY id::bigint LIMIT 6;

-- Typed columns follow the API's fields
SELECT status, count(*), count(paid_at) AS with_paid_at, count(created) AS with_created
  FROM migrate_ext.xendit_raw GROUP BY status ORDER BY status;
SELECT count(*) FILTER (WHERE 'PaidP2P' = ANY (tags)) AS paid_p2p,
       count(*) FILTER (WHERE 'Canva' = ANY (tags)) AS canva,
       count(*) FILTER (WHERE tags @> '{PaidP2P,Canva}') AS both_tags,
       count(registered_at) AS with_registered_at
  FROM migrate_ext.systemeio_raw;

-- The run is logged, one row per source
SELECT source, status, pages, fetched, inserted, updated, unchanged, rejected, error,
       finished_at >= started_at AS timed
  FROM migrate_ext.sync_runs ORDER BY run_id, source;

-- A second sync with nothing changed writes no raw row and almost no WAL
SELECT regress.raw_fingerprint('migrate_ext.xendit_raw') AS fp_x,
       regress.raw_fingerprint('migrate_ext.systemeio_raw') AS fp_s \gset
BEGIN;
SELECT source, status, inserted, updated, unchanged, rejected
  FROM migrate_ext.sync_raw_api_data();
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del
  FROM pg_stat_xact_user_tables
 WHERE schemaname = 'migrate_ext' AND relname IN ('xendit_raw', 'systemeio_raw') ORDER BY relname;
COMMIT;
SELECT pg_current_wal_insert_lsn() AS lsn2 \gset
SELECT pg_wal_lsn_diff(:'lsn2', :'lsn1') < 0.01 * pg_wal_lsn_diff(:'lsn1', :'lsn0') AS second_sync_wal_under_1_percent;
SELECT regress.raw_fingerprint('migrate_ext.xendit_raw') = :'fp_x' AS invoices_untouched,
       regress.raw_fingerprint('migrate_ext.systemeio_raw') = :'fp_s' AS contacts_untouched;

-- After the API changes 7 records of each source, the next sync updates exactly those
SELECT regress.use_emulator('/changed/7', '/changed/7');
SELECT source, status, inserted, updated, unchanged, rejected
  FROM migrate_ext.sync_raw_api_data();
SELECT (SELECT count(*) FROM migrate_ext.xendit_raw
         WHERE sync_run_id = (SELECT max(run_id) FROM migrate_ext.sync_runs)) AS invoices_rewritten,
       (SELECT count(*) FROM migrate_ext.systemeio_raw
         WHERE sync_run_id = (SELECT max(run_id) FROM migrate_ext.sync_runs)) AS contacts_rewritten;
-- and back: the same 7 change again
SELECT regress.use_emulator();
SELECT source, inserted, updated FROM migrate_ext.sync_raw_api_data();

-- One source only: the other's raw table is not touched
SELECT source, status, inserted, updated FROM migrate_ext.sync_raw_api_data('{systemeio}');
SELECT source, count(*) FROM migrate_ext.sync_runs
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.sync_runs) GROUP BY source;

-- Progress: a NOTICE every migrate_ext.progress_pages pages
SET client_min_messages = notice;
SET migrate_ext.progress_pages = 40;
SELECT source, status FROM migrate_ext.sync_raw_api_data();
RESET migrate_ext.progress_pages;
SET client_min_messages = warning;

-- Pages of 10 (the Systeme.io minimum) give the same rows
SET migrate_ext.page_size = 10;
SELECT source, status, pages, fetched, inserted, updated FROM migrate_ext.sync_raw_api_data();
RESET migrate_ext.page_size;

-- Bad arguments
SELECT * FROM migrate_ext.sync_raw_api_data(NULL);
SELECT * FROM migrate_ext.sync_raw_api_data('{}');
SELECT * FROM migrate_ext.sync_raw_api_data('{xendit,stripe}');
SELECT * FROM migrate_ext.sync_raw_api_data('{xendit,xendit}');
SELECT * FROM migrate_ext.sync_raw_api_data('{xendit,NULL}');
