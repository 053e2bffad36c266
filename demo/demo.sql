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

\echo '== 3. where things stand before the launch: migration_status()'
SELECT * FROM migrate_ext.migration_status();

\echo '== production before the launch'
SELECT (SELECT count(*) FROM public.unified_profiles) AS profiles,
       (SELECT count(*) FROM public.transactions) AS transactions,
       (SELECT count(*) FROM public.enrollments) AS enrollments,
       (SELECT count(*) FROM auth.users) AS auth_users;

\echo '== 4. launch_clean_production(dry_run => true): every statement the launch would run; nothing is changed'
\echo '   its first 15 lines:'
SELECT migrate_ext.launch_clean_production(dry_run => true) AS plan \gset
SELECT n AS line, left(l, 150) AS statement
  FROM regexp_split_to_table(:'plan', E'\n') WITH ORDINALITY AS s(l, n)
 WHERE n <= 15;
\echo '   the whole plan, by phase (prepare: before the locks; lock; swap: catalog work under the locks):'
SELECT m[1] AS phase, count(*) AS statements
  FROM regexp_matches(:'plan', ';  -- (prepare|lock|swap) \d+$', 'gn') AS m
 GROUP BY m[1] ORDER BY min(m[2]::int);
SELECT count(*) AS lines_in_plan FROM regexp_split_to_table(:'plan', E'\n');
\unset plan

\echo '== 5. launch_clean_production(): staging becomes production in one transaction'
SET client_min_messages = notice;
SELECT migrate_ext.launch_clean_production() AS launch;
SET client_min_messages = warning;
SELECT backup_timestamp AS ts, migrate_ext.backup_schema(backup_timestamp) AS backup_schema
  FROM migrate_ext.migrations WHERE state = 'launched' ORDER BY backup_timestamp DESC LIMIT 1 \gset
\echo '   backup timestamp:' :ts ' backup schema:' :backup_schema

\echo '== production after the launch (and the previous tables, kept in the backup schema)'
SELECT 'public' AS schema,
       (SELECT count(*) FROM public.unified_profiles) AS profiles,
       (SELECT count(*) FROM public.transactions) AS transactions,
       (SELECT count(*) FROM public.transactions WHERE transaction_type = 'Canva') AS canva_transactions,
       (SELECT count(*) FROM public.enrollments) AS enrollments,
       (SELECT count(*) FROM auth.users) AS auth_users
UNION ALL
SELECT :'backup_schema',
       (SELECT count(*) FROM :"backup_schema".unified_profiles),
       (SELECT count(*) FROM :"backup_schema".transactions),
       (SELECT count(*) FROM :"backup_schema".transactions WHERE transaction_type = 'Canva'),
       (SELECT count(*) FROM :"backup_schema".enrollments),
       NULL;

\echo '== 6. the application still works: a buyer reads their own data through RLS, as the Supabase Data API would'
\echo '   the demo user: a customer with a completed P2P payment and the most payments'
SELECT p.id AS demo_user, p.email AS demo_email
  FROM public.unified_profiles AS p
 WHERE EXISTS (SELECT 1 FROM public.transactions AS t
                WHERE t.user_id = p.id AND t.transaction_type = 'P2P' AND t.status = 'completed')
 ORDER BY (SELECT count(*) FROM public.transactions AS t WHERE t.user_id = p.id) DESC, p.email
 LIMIT 1 \gset
SELECT :'demo_user' AS demo_user, :'demo_email' AS email;
\echo '   what the table owner sees for that user (the expected answer)'
SELECT external_id, transaction_type, status, amount, paid_at::date AS paid_on
  FROM public.transactions WHERE user_id = :'demo_user' ORDER BY paid_at, external_id;
\echo '   now as role authenticated, with the JWT claims PostgREST sets (auth.uid() reads sub)'
SET ROLE authenticated;
SELECT set_config('request.jwt.claims', json_build_object('sub', :'demo_user', 'role', 'authenticated')::text, false) IS NOT NULL AS claims_set,
       current_user, auth.uid() = :'demo_user'::uuid AS uid_is_demo_user;
SELECT external_id, transaction_type, status, amount, paid_at::date AS paid_on
  FROM public.transactions ORDER BY paid_at, external_id;
SELECT c.title AS course, e.status, e.enrolled_at::date AS enrolled_on
  FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id ORDER BY c.title;
\echo '   visible rows as this user vs. everything in production (the table owner count is from before SET ROLE)'
SELECT 'transactions' AS "table", (SELECT count(*) FROM public.transactions) AS visible_to_user,
       (SELECT count(*) FROM public.transactions WHERE user_id IS DISTINCT FROM auth.uid()) AS others_visible
UNION ALL
SELECT 'enrollments', (SELECT count(*) FROM public.enrollments),
       (SELECT count(*) FROM public.enrollments WHERE user_id IS DISTINCT FROM auth.uid());
RESET ROLE;
RESET request.jwt.claims;
SELECT 'transactions' AS "table", (SELECT count(*) FROM public.transactions) AS rows_in_table
UNION ALL SELECT 'enrollments', (SELECT count(*) FROM public.enrollments);

\echo '== 7. anon (a visitor without a login) can reach neither staging nor the backup'
SELECT r.rolname AS role, s.schema,
       has_schema_privilege(r.rolname, s.schema, 'USAGE') AS can_use_schema
  FROM (VALUES ('anon'), ('authenticated'), ('service_role')) AS r(rolname),
       (VALUES ('migrate_staging'), (:'backup_schema')) AS s(schema)
 ORDER BY s.schema, r.rolname;
\echo '   trying it (two permission errors are expected here):'
SET ROLE anon;
\set ON_ERROR_STOP off
SELECT count(*) FROM migrate_staging.auth_users;
SELECT count(*) FROM :"backup_schema".transactions;
\set ON_ERROR_STOP on
RESET ROLE;

\echo '== 8. rollback_migration(): the backup comes back, the launched tables go to migrate_staging'
SET client_min_messages = notice;
SELECT migrate_ext.rollback_migration(:'ts') AS rollback;
SET client_min_messages = warning;

\echo '== production after the rollback: the original counts again'
SELECT (SELECT count(*) FROM public.unified_profiles) AS profiles,
       (SELECT count(*) FROM public.transactions) AS transactions,
       (SELECT count(*) FROM public.transactions WHERE transaction_type = 'Canva') AS canva_transactions,
       (SELECT count(*) FROM public.enrollments) AS enrollments,
       (SELECT count(*) FROM auth.users) AS auth_users;
SELECT * FROM migrate_ext.migration_status();

\echo '== 9. a second launch: staging was kept for the retry'
SET client_min_messages = notice;
SELECT migrate_ext.launch_clean_production() AS launch;
SET client_min_messages = warning;
SELECT (SELECT count(*) FROM public.unified_profiles) AS profiles,
       (SELECT count(*) FROM public.transactions) AS transactions,
       (SELECT count(*) FROM public.transactions WHERE transaction_type = 'Canva') AS canva_transactions,
       (SELECT count(*) FROM public.enrollments) AS enrollments,
       (SELECT count(*) FROM auth.users) AS auth_users;

\echo '== where things stand at the end: migration_status()'
SELECT * FROM migrate_ext.migration_status();
