-- The migration as a DBA runs it from psql, against the API emulator: the
-- steps of doc/runbook.md in order.  Every command of the runbook is here,
-- marked "-- runbook" (test/check_docs.py checks that the two lists are
-- the same); everything else only shows what happened.
\pset footer off
-- no command tags (SET, CREATE EXTENSION, ...): only results, notices and errors
\set QUIET on
SET client_min_messages = warning;
-- long values wrap at 150 columns
\pset format wrapped
\pset columns 150
-- the production row counts, shown before and after each step
\set production_counts 'SELECT (SELECT count(*) FROM public.unified_profiles) AS profiles, (SELECT count(*) FROM public.transactions) AS transactions, (SELECT count(*) FROM public.transactions WHERE transaction_type = ''Canva'') AS canva_transactions, (SELECT count(*) FROM public.enrollments) AS enrollments, (SELECT count(*) FROM auth.users) AS auth_users'
\echo '== production before: contaminated (test accounts, no Canva product line, missing customers)'
:production_counts;

\echo '== runbook 0. once, before launch day: install the extension (as postgres, the owner of the tables; not a'
\echo '   superuser) and store the API keys (readable by the extension owner only)'
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
-- runbook
CREATE EXTENSION migrate_ext;
-- runbook
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
-- runbook
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');

\echo '== runbook 1. pre-flight: migration_status() (a fresh install: no sync, no staging yet), and the disk the backup will keep'
-- runbook
SELECT * FROM migrate_ext.migration_status() \gx
-- runbook
SELECT pg_size_pretty(sum(pg_total_relation_size(format('public.%I', t)::regclass))) AS backup_will_keep,
       pg_size_pretty(pg_database_size(current_database())) AS database_now
  FROM unnest(migrate_ext.swapped_tables()) AS t;

\echo '== runbook 2. final sync: page both APIs into the raw tables'
SET client_min_messages = notice;
-- runbook
SELECT * FROM migrate_ext.sync_raw_api_data();
SET client_min_messages = warning;
\echo '   what landed: invoices by status and product family'
SELECT status,
       count(*) FILTER (WHERE description ILIKE '%papers to profits%') AS p2p,
       count(*) FILTER (WHERE description ILIKE '%canva%') AS canva,
       count(*) AS all_invoices,
       sum(amount) FILTER (WHERE currency = 'PHP') AS php_amount
  FROM migrate_ext.xendit_raw GROUP BY status ORDER BY status;
\echo '   contacts by tag'
SELECT tag, count(*) FROM migrate_ext.systemeio_raw, unnest(tags) AS tag
 GROUP BY tag ORDER BY count(*) DESC, tag;
\echo '   a few contacts, names as sent (accents and emoji intact)'
SELECT id, email, first_name, last_name, tags FROM migrate_ext.systemeio_raw
 WHERE first_name ~ '[^\x01-\x7f]' ORDER BY id::bigint LIMIT 5;
\echo '   records PostgreSQL could not store, with the reason'
SELECT source, record_id, reason, left(raw, 60) AS raw FROM migrate_ext.sync_rejects ORDER BY source;

\echo '== runbook 3. validation and review: staging and the full report'
-- runbook
SELECT * FROM migrate_ext.validate_and_prepare_clean_data();
\echo '   the errors that block the launch, one line each (every issue is in migrate_ext.validation_issues)'
-- runbook
SELECT rule, source, record_id, email, detail FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error'
 ORDER BY rule, record_id;
\echo '   the DBA resolves them: test accounts and records that cannot be fixed upstream are excluded, then validates again'
\set QUIET off
-- runbook
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
-- runbook
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id,
       'cannot be fixed upstream before the launch (' || rule || ')'
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error'
   AND source IN ('xendit', 'systemeio');
\set QUIET on
-- runbook
SELECT section, item, rows, amount, CASE WHEN section = 'run' THEN detail END AS detail
  FROM migrate_ext.validate_and_prepare_clean_data()
 WHERE section IN ('run', 'staging', 'revenue', 'production');

\echo '== runbook 4. dry run: every statement the launch would run; nothing is changed'
-- runbook
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
\echo '   production before the launch'
:production_counts;

\echo '== runbook 5. launch: staging becomes production in one transaction'
SET client_min_messages = notice;
-- runbook
SELECT migrate_ext.launch_clean_production() AS launch \gset
\echo :launch
SET client_min_messages = warning;
-- the timestamp names the backup and is what rollback_migration() takes
SELECT backup_timestamp AS timestamp, migrate_ext.backup_schema(backup_timestamp) AS backup_schema
  FROM migrate_ext.migrations WHERE state = 'launched' ORDER BY backup_timestamp DESC LIMIT 1 \gset
\echo '   backup timestamp:' :timestamp '   backup schema:' :backup_schema
\echo '   production after the launch'
:production_counts;

\echo '== runbook 6. verification: every row must say ok'
-- runbook
SELECT * FROM migrate_ext.verify_production();
-- runbook
SELECT * FROM migrate_ext.migration_status() \gx
-- the demo stops here if a check failed
SELECT count(*) FILTER (WHERE NOT ok) = 0 AS verified FROM migrate_ext.verify_production() \gset
\if :verified
\else
DO $$ BEGIN RAISE EXCEPTION 'verify_production() found a problem after the launch'; END $$;
\endif

\echo '== 6b. seen from the application: a buyer reads their own data through RLS, as the Supabase Data API would'
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

\echo '== 6c. anon (a visitor without a login) can reach neither staging nor the backup'
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

\echo '== runbook 7. roll back: the backup comes back to public, the launched tables go to migrate_staging'
SET client_min_messages = notice;
-- runbook
SELECT migrate_ext.rollback_migration(:'timestamp') AS rollback \gset
\echo :rollback
SET client_min_messages = warning;
-- runbook
SELECT * FROM migrate_ext.verify_production();
\echo '   production after the rollback: the counts of before the launch (the auth users it created are kept)'
:production_counts;

\echo '== runbook 8. launch again: the launched tables were kept in migrate_staging for a retry'
SET client_min_messages = notice;
-- runbook
SELECT migrate_ext.launch_clean_production() AS launch \gset
\echo :launch
SET client_min_messages = warning;
SELECT backup_timestamp AS timestamp FROM migrate_ext.migrations WHERE state = 'launched' ORDER BY backup_timestamp DESC LIMIT 1 \gset
-- runbook
SELECT * FROM migrate_ext.verify_production();
:production_counts;

\echo '== runbook 9. the days after: reconcile production with the APIs, and schedule it nightly with pg_cron'
-- runbook
SELECT * FROM migrate_ext.reconcile();
-- runbook
SELECT migrate_ext.nightly_reconcile();
-- runbook
SELECT cron.schedule('migrate_ext-nightly', '0 3 * * *', $$SELECT migrate_ext.nightly_reconcile()$$);
SELECT jobname, schedule, command, database, username FROM cron.job;

\echo '== runbook 10. drop the backup once the new production is confirmed (afterwards no rollback)'
-- runbook
SELECT migrate_ext.drop_backup(:'timestamp');
-- runbook
SELECT * FROM migrate_ext.migration_status() \gx

\i demo/seed_expected.sql
