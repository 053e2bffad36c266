-- The migration as a DBA runs it from psql, against the API emulator.
\pset footer off
-- no command tags (SET, CREATE EXTENSION, ...): only results, notices and errors
\set QUIET on
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
\set QUIET off
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id,
       'demo: cannot be fixed upstream today (' || rule || ')'
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error'
   AND source IN ('xendit', 'systemeio');
\set QUIET on
SELECT section, item, rows, amount, CASE WHEN section = 'run' THEN detail END AS detail
  FROM migrate_ext.validate_and_prepare_clean_data()
 WHERE section IN ('run', 'staging', 'revenue', 'production');

\echo '== the sync log'
SELECT run_id, source, status, pages, fetched, inserted, updated, unchanged, rejected,
       finished_at - started_at AS took
  FROM migrate_ext.sync_runs ORDER BY run_id, source;

-- from here on, long values wrap at 150 columns; migration_status() is shown one
-- field per line (\gx), the answers of launch and rollback as plain text (\gset, \echo)
\pset format wrapped
\pset columns 150
-- the production row counts, shown before and after each step
\set production_counts 'SELECT (SELECT count(*) FROM public.unified_profiles) AS profiles, (SELECT count(*) FROM public.transactions) AS transactions, (SELECT count(*) FROM public.transactions WHERE transaction_type = ''Canva'') AS canva_transactions, (SELECT count(*) FROM public.enrollments) AS enrollments, (SELECT count(*) FROM auth.users) AS auth_users'

\echo '== 3. migration_status(): where things stand before the launch'
SELECT * FROM migrate_ext.migration_status() \gx

\echo '== production before the launch'
:production_counts;

\echo '== 4. launch_clean_production(dry_run => true): every statement the launch would run; nothing is changed'
SELECT migrate_ext.launch_clean_production(dry_run => true) AS plan \gset
\echo '   the first 15 lines of the plan:'
SELECT n AS line, l AS statement
  FROM regexp_split_to_table(:'plan', E'\n') WITH ORDINALITY AS s(l, n)
 WHERE n <= 15;
\echo '   the whole plan by phase (prepare: before the locks; lock: all the locks at once, with a short lock_timeout,'
\echo '   retried; swap: under the locks, staging''s foreign keys checked, the tables moved, everything carried over and'
\echo '   re-pointed), plus 3 statements around them (backup schema, new auth users, log):'
SELECT coalesce(phase, 'total') AS phase, count(*) AS statements, min(step) AS first_step, max(step) AS last_step
  FROM (SELECT m[1] AS phase, m[2]::int AS step
          FROM regexp_matches(:'plan', ';  -- (prepare|lock|swap) (\d+)$', 'gn') AS m) AS s
 GROUP BY ROLLUP (phase) ORDER BY phase IS NULL, min(step);
\unset plan

\echo '== 5. launch_clean_production(): staging becomes production in one transaction'
SET client_min_messages = notice;
SELECT migrate_ext.launch_clean_production() AS launch \gset
\echo :launch
SET client_min_messages = warning;
-- the timestamp names the backup and is what rollback_migration() takes
SELECT backup_timestamp AS ts, migrate_ext.backup_schema(backup_timestamp) AS backup_schema
  FROM migrate_ext.migrations WHERE state = 'launched' ORDER BY backup_timestamp DESC LIMIT 1 \gset
\echo '   backup timestamp:' :ts '   backup schema:' :backup_schema
\echo

\echo '== production after the launch'
:production_counts;
\echo '   and the previous production, kept in' :backup_schema
SELECT (SELECT count(*) FROM :"backup_schema".unified_profiles) AS profiles,
       (SELECT count(*) FROM :"backup_schema".transactions) AS transactions,
       (SELECT count(*) FROM :"backup_schema".transactions WHERE transaction_type = 'Canva') AS canva_transactions,
       (SELECT count(*) FROM :"backup_schema".enrollments) AS enrollments;

\echo '== the new production tables kept production''s row level security and policies (the backup has the old ones)'
SELECT c.relname AS "table", n.nspname AS schema, c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls,
       (SELECT count(*) FROM pg_policy AS p WHERE p.polrelid = c.oid) AS policies,
       (SELECT count(*) FROM pg_trigger AS t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) AS triggers
  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('public', :'backup_schema') AND c.relkind = 'r'
   AND c.relname IN ('unified_profiles', 'transactions', 'enrollments')
 ORDER BY c.relname, n.nspname DESC;

\echo '== 6. the application still works: a buyer reads their own data through RLS, as the Supabase Data API would'
\echo '   the demo user: the customer with the most payments among those with a completed P2P payment'
SELECT p.id AS demo_user, p.email AS demo_email,
       (SELECT count(*) FROM public.transactions AS t WHERE t.user_id = p.id) AS expected_transactions,
       (SELECT count(*) FROM public.transactions) AS all_transactions,
       (SELECT count(*) FROM public.enrollments) AS all_enrollments
  FROM public.unified_profiles AS p
 WHERE EXISTS (SELECT 1 FROM public.transactions AS t
                WHERE t.user_id = p.id AND t.transaction_type = 'P2P' AND t.status = 'completed')
 ORDER BY 3 DESC, p.email
 LIMIT 1 \gset
\echo '   ' :demo_email 'with' :expected_transactions 'payments; auth id' :demo_user
\echo '   as role authenticated, with the JWT claims PostgREST sets for that user (auth.uid() reads their "sub"):'
SET ROLE authenticated;
SELECT set_config('request.jwt.claims', json_build_object('sub', :'demo_user', 'role', 'authenticated')::text, false)
       AS "request.jwt.claims";
SELECT current_user, auth.uid(), auth.role();
\echo '   their payments:'
SELECT external_id, transaction_type, status, amount, paid_at::date AS paid_on
  FROM public.transactions ORDER BY paid_at, external_id;
\echo '   their courses:'
SELECT c.title AS course, e.status, e.enrolled_at::date AS enrolled_on
  FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id ORDER BY c.title;
\echo '   rows this user can see, against the rows in the table:'
SELECT 'transactions' AS "table", count(*) AS visible_to_user,
       count(*) FILTER (WHERE user_id IS DISTINCT FROM auth.uid()) AS of_other_users, :all_transactions AS rows_in_table
  FROM public.transactions
UNION ALL
SELECT 'enrollments', count(*), count(*) FILTER (WHERE user_id IS DISTINCT FROM auth.uid()), :all_enrollments
  FROM public.enrollments;
-- the demo stops with an error if the user does not see exactly their own rows and their P2P course
SELECT (SELECT count(*) FROM public.transactions) = :expected_transactions
   AND NOT EXISTS (SELECT 1 FROM public.transactions WHERE user_id IS DISTINCT FROM auth.uid())
   AND NOT EXISTS (SELECT 1 FROM public.enrollments WHERE user_id IS DISTINCT FROM auth.uid())
   AND EXISTS (SELECT 1 FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id
                WHERE c.title = 'Papers to Profits') AS rls_ok \gset
RESET ROLE;
RESET request.jwt.claims;
\if :rls_ok
\echo '   OK: the user sees exactly their own payments and their Papers to Profits enrollment'
\else
DO $$ BEGIN RAISE EXCEPTION 'RLS check failed: the demo user does not see exactly their own rows'; END $$;
\endif

\echo '== 7. anon (a visitor without a login) can reach neither staging nor the backup'
SELECT r.rolname AS role, s.schema, has_schema_privilege(r.rolname, s.schema, 'USAGE') AS can_use_schema
  FROM (VALUES ('anon'), ('authenticated'), ('service_role')) AS r(rolname),
       (VALUES ('migrate_staging'), (:'backup_schema')) AS s(schema)
 ORDER BY s.schema DESC, r.rolname;
\echo '   trying it as anon (two "permission denied" errors are expected here):'
SET ROLE anon;
\set ON_ERROR_STOP off
SELECT count(*) FROM migrate_staging.auth_users;
SELECT count(*) FROM :"backup_schema".transactions;
\set ON_ERROR_STOP on
RESET ROLE;

\echo '== 8. rollback_migration(): the backup comes back to public, the launched tables go to migrate_staging'
SET client_min_messages = notice;
SELECT migrate_ext.rollback_migration(:'ts') AS rollback \gset
\echo :rollback
\echo
SET client_min_messages = warning;

\echo '== production after the rollback: the counts of before the launch (the auth users it created are kept)'
:production_counts;
SELECT * FROM migrate_ext.migration_status() \gx

\echo '== 9. a second launch: the launched tables were kept in migrate_staging for a retry'
SET client_min_messages = notice;
SELECT migrate_ext.launch_clean_production() AS launch \gset
\echo :launch
\echo
SET client_min_messages = warning;
:production_counts;

\echo '== 10. migration_status() at the end: the second launch is in place, its backup kept; staging was used up'
\echo '   (drop_backup(''<timestamp>'') frees the backup once the new production is confirmed; a new sync and'
\echo '   validation build a new staging)'
SELECT * FROM migrate_ext.migration_status() \gx
