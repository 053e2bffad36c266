--
-- reconcile: production against what the APIs say now, on the production
-- the verify suite launched (database regress_launchday).
--   * nothing on a clean production;
--   * each planted difference is found: a payment missing, an amount
--     changed, a status changed, a buyer without enrollment;
--   * it reads only: production, staging and the report stay as they were;
--   * the nightly job runs through pg_cron (preloaded in the test cluster,
--     created in database postgres) and its result is in reconcile_runs and
--     reconcile_results; old runs go after reconcile_settings.keep_for.
--
\c regress_launchday postgres
\set SHOW_CONTEXT never
SET client_min_messages = warning;

-- a fingerprint of everything reconcile() must not change
CREATE FUNCTION regress.untouched() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM public.transactions AS t),
        (SELECT md5(string_agg(e::text, ',' ORDER BY e.id)) FROM public.enrollments AS e),
        (SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) FROM public.unified_profiles AS p),
        (SELECT count(*) FROM migrate_ext.validation_issues), (SELECT count(*) FROM migrate_ext.identity_map),
        (SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class AS c
          WHERE c.relnamespace = to_regnamespace('migrate_staging'))));
$$;
SELECT regress.untouched() AS before \gset

-- A clean production: no difference
SELECT * FROM migrate_ext.reconcile();
SELECT regress.untouched() = :'before' AS untouched;

-- Planted differences, one of each kind
BEGIN;
CREATE TEMP TABLE planted AS
SELECT t.id, t.external_id, row_number() OVER (ORDER BY t.external_id) AS n
  FROM public.transactions AS t
 WHERE t.transaction_type = 'Canva' AND t.status = 'completed' AND t.external_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM public.enrollments AS e WHERE e.transaction_id = t.id)
   AND NOT EXISTS (SELECT 1 FROM public.ecommerce_orders AS o WHERE o.transaction_id = t.id)
   AND NOT EXISTS (SELECT 1 FROM public.invoices AS i WHERE i.transaction_id = t.id)
 ORDER BY t.external_id LIMIT 3;
DELETE FROM public.transactions WHERE id = (SELECT id FROM planted WHERE n = 1);
UPDATE public.transactions SET amount = amount + 1 WHERE id = (SELECT id FROM planted WHERE n = 2);
UPDATE public.transactions SET status = 'pending' WHERE id = (SELECT id FROM planted WHERE n = 3);
-- (the enrollment of a buyer through a Xendit invoice, the first by external
-- id: enrollment ids drawn for new rows differ from run to run)
DELETE FROM public.enrollments
 WHERE id = (SELECT e.id FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id
               JOIN public.transactions AS t ON t.user_id = e.user_id AND t.transaction_type = 'P2P'
                AND t.status = 'completed' AND t.metadata ? 'xendit_invoice_id'
              WHERE c.title = 'Papers to Profits' ORDER BY t.external_id LIMIT 1);
SELECT r.kind, r.source, r.record_id IS NOT NULL AS has_record, r.email IS NOT NULL AS has_email,
       regexp_replace(r.detail, '\d+(\.\d+)?', 'N', 'g') AS detail
  FROM migrate_ext.reconcile() AS r ORDER BY r.kind;
-- and each one names the planted row
SELECT p.n, r.kind FROM planted AS p JOIN migrate_ext.reconcile() AS r
    ON r.production_id = p.id OR r.detail LIKE '% ' || p.external_id || ' %' ORDER BY p.n;
ROLLBACK;

-- A profile the APIs do not know
BEGIN;
INSERT INTO auth.users (id, email) VALUES ('00000000-0000-0000-0000-00000000beef', 'stranger@nowhere.ph');
INSERT INTO public.unified_profiles (id, email) VALUES ('00000000-0000-0000-0000-00000000beef', 'stranger@nowhere.ph');
SELECT kind, source, email, production_id, detail FROM migrate_ext.reconcile();
ROLLBACK;
SELECT regress.untouched() = :'before' AS untouched;

-- The nightly job, by hand: sync, reconcile, results kept
SELECT regexp_replace(migrate_ext.nightly_reconcile(), '\d+', 'N', 'g') AS nightly;
SELECT sync, differences, finished_at >= started_at AS finished FROM migrate_ext.reconcile_runs;
-- runs older than reconcile_settings.keep_for are dropped with their results
SELECT * FROM migrate_ext.reconcile_settings;
UPDATE migrate_ext.reconcile_runs SET started_at = started_at - interval '31 days';
SELECT regexp_replace(migrate_ext.nightly_reconcile(), '\d+', 'N', 'g') AS nightly;
SELECT count(*) AS runs_kept FROM migrate_ext.reconcile_runs;

-- The same job through pg_cron.  On Supabase: SELECT cron.schedule(...) in
-- the application's database (doc/runbook.md); here pg_cron lives in
-- database postgres, so the job is scheduled into regress_launchday.
-- pg_cron's schedules have a one-minute granularity: wait for the first run.
DELETE FROM migrate_ext.reconcile_runs;
-- a difference for the job to find: a payment changed after the launch
UPDATE public.transactions SET amount = amount + 1
 WHERE id = (SELECT t.id FROM public.transactions AS t
              WHERE t.transaction_type = 'Canva' AND t.status = 'completed' AND t.external_id IS NOT NULL
              ORDER BY t.external_id LIMIT 1);
\c postgres supabase_admin
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT cron.schedule_in_database('migrate_ext-nightly-regress', '* * * * *',
                                 'SELECT migrate_ext.nightly_reconcile()', 'regress_launchday', 'postgres') > 0 AS scheduled;
DO $$
BEGIN
    FOR i IN 1..150 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)
                           WHERE j.jobname = 'migrate_ext-nightly-regress' AND d.status IN ('succeeded', 'failed'));
        PERFORM pg_sleep(0.5);
    END LOOP;
END;
$$;
SELECT d.status, regexp_replace(d.return_message, '\d+', 'N', 'g') AS return_message
  FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)
 WHERE j.jobname = 'migrate_ext-nightly-regress' ORDER BY d.runid LIMIT 1;
SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'migrate_ext-nightly-regress';
\c regress_launchday postgres
SELECT sync, differences FROM migrate_ext.reconcile_runs ORDER BY run_id LIMIT 1;
SELECT r.kind, r.source, count(*) FROM migrate_ext.reconcile_results AS r
  JOIN migrate_ext.reconcile_runs AS n USING (run_id) GROUP BY 1, 2;

\c contrib_regression supabase_admin
DROP DATABASE regress_launchday WITH (FORCE);
