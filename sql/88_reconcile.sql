-------------------------------------------------------------------------------
-- reconcile(): after the launch, production against what the APIs say now,
-- under the validation's rules (invoice_facts(), invoice_issues()), without
-- building or touching staging; nightly_reconcile() syncs, reconciles and
-- keeps the results, for pg_cron (doc/runbook.md)
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.reconcile_settings (
    single   boolean PRIMARY KEY DEFAULT true CHECK (single),
    keep_for interval NOT NULL DEFAULT '30 days' CHECK (keep_for > interval '0')
);
COMMENT ON TABLE migrate_ext.reconcile_settings IS
    'nightly_reconcile(): keep_for is how long its runs and their results are kept (one row)';
INSERT INTO migrate_ext.reconcile_settings DEFAULT VALUES;

CREATE SEQUENCE migrate_ext.reconcile_runs_run_id_seq;

CREATE TABLE migrate_ext.reconcile_runs (
    run_id      bigint PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    sync        text NOT NULL,
    differences bigint
);
COMMENT ON TABLE migrate_ext.reconcile_runs IS
    'One row per nightly_reconcile(): when, how the sync went, how many differences';

CREATE TABLE migrate_ext.reconcile_results (
    run_id        bigint NOT NULL REFERENCES migrate_ext.reconcile_runs ON DELETE CASCADE,
    kind          text NOT NULL,
    source        text NOT NULL,
    record_id     text,
    email         text,
    production_id uuid,
    detail        text NOT NULL
);
CREATE INDEX reconcile_results_run_idx ON migrate_ext.reconcile_results (run_id, kind);
COMMENT ON TABLE migrate_ext.reconcile_results IS
    'The differences each nightly_reconcile() found, one row each (see reconcile())';
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.reconcile_runs', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.reconcile_results', '');

-- Production against the raw API data under the validation's rules, one
-- row per difference: a valid paid invoice production lacks, or has with
-- another amount; an invoice whose status maps to another status than
-- production's; a paid invoice the rules refuse; a buyer of a product with
-- a course without a profile or enrollment; a profile no API record knows.
-- Rows the launch carried over on purpose are left out.  Reads only; sync
-- first (nightly_reconcile() does).
CREATE FUNCTION migrate_ext.reconcile()
RETURNS TABLE (kind text, source text, record_id text, email text, production_id uuid, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- working tables of an earlier call in this transaction
    EXECUTE 'DROP TABLE IF EXISTS pg_temp.rx_invoice, pg_temp.rx_error';
    -- (the PRAGMA lines declare the working tables for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: rx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text)';
    CREATE TEMP TABLE rx_invoice ON COMMIT DROP AS
    SELECT f.* FROM migrate_ext.invoice_facts(migrate_ext.email_pattern()) AS f;
    PERFORM 'PRAGMA:TABLE: rx_error (record_id text, rules text)';
    CREATE TEMP TABLE rx_error ON COMMIT DROP AS
    SELECT q.record_id, string_agg(q.rule, ', ' ORDER BY q.rule) AS rules
      FROM migrate_ext.invoice_issues('pg_temp.rx_invoice') AS q WHERE q.severity = 'error' GROUP BY q.record_id;

    RETURN QUERY
    WITH inv AS (
        SELECT i.*, e.rules AS errors, i.paid AND i.excluded IS NULL AND e.rules IS NULL AS valid
          FROM pg_temp.rx_invoice AS i LEFT JOIN pg_temp.rx_error AS e ON e.record_id = i.id),
    -- rows the launch carried over on purpose are in its validation report
    -- (rule carried_over), not new differences
    carried AS (
        SELECT q.record_id FROM migrate_ext.validation_issues AS q
         WHERE q.rule = 'carried_over'
           AND q.run_id = (SELECT m.validation_run_id FROM migrate_ext.migrations AS m
                            WHERE m.state <> 'rolled_back' ORDER BY m.launched_at DESC LIMIT 1)),
    prod AS (
        SELECT t.id, t.external_id, t.amount, t.status, t.metadata->>'xendit_invoice_id' AS invoice_id
          FROM public.transactions AS t
         WHERE t.external_id IS NOT NULL AND t.id::text NOT IN (SELECT c.record_id FROM carried AS c)),
    -- a transaction is the invoice its metadata names; without that, the
    -- invoice of its external id (the paid one, else the latest, when a
    -- retry reused the external id)
    pair AS (
        SELECT i.id AS invoice, p.* FROM inv AS i JOIN prod AS p ON p.invoice_id = i.id
        UNION ALL
        SELECT i.id, p.* FROM inv AS i JOIN prod AS p ON p.invoice_id IS NULL AND p.external_id = i.external_id
         WHERE i.id = (SELECT j.id FROM inv AS j WHERE j.external_id = i.external_id
                        ORDER BY j.paid DESC, j.updated DESC NULLS LAST, j.id DESC LIMIT 1))
    SELECT 'payment_missing', 'xendit', i.id, i.email, NULL::uuid,
           format('%s invoice %s of %s %s (%s): production has no transaction with this external id',
                  i.status, i.external_id, i.currency, i.amount, i.product)
      FROM inv AS i WHERE i.valid AND NOT EXISTS (SELECT 1 FROM pair AS p WHERE p.invoice = i.id)
                          AND NOT EXISTS (SELECT 1 FROM prod AS p WHERE p.external_id = i.external_id AND p.invoice_id IS NULL)
    UNION ALL
    SELECT 'amount_differs', 'xendit', i.id, i.email, p.id,
           format('invoice %s: Xendit says %s %s, production says %s', i.external_id, i.currency, i.amount, p.amount)
      FROM inv AS i JOIN pair AS p ON p.invoice = i.id
     WHERE i.valid AND p.amount IS DISTINCT FROM i.amount
    UNION ALL
    SELECT 'status_differs', 'xendit', i.id, i.email, p.id,
           format('invoice %s: Xendit says %s (%s in production terms), production says %s',
                  i.external_id, i.status, i.production_status, p.status)
      FROM inv AS i JOIN pair AS p ON p.invoice = i.id
     WHERE i.known_status AND i.excluded IS NULL AND p.status IS DISTINCT FROM i.production_status
    UNION ALL
    SELECT 'invoice_with_error', 'xendit', i.id, i.email, NULL,
           format('%s invoice %s breaks %s: fix it in Xendit or exclude it', i.status, i.external_id, i.errors)
      FROM inv AS i WHERE i.paid AND i.excluded IS NULL AND i.errors IS NOT NULL
    UNION ALL
    SELECT CASE WHEN u.id IS NULL THEN 'buyer_without_profile' ELSE 'buyer_without_enrollment' END,
           'xendit', b.first_id, b.email, u.id,
           CASE WHEN u.id IS NULL THEN format('paid for %s: production has no profile with this e-mail', b.product)
                ELSE format('paid for %s: no enrollment in %s', b.product, b.course) END
      FROM (SELECT i.email, i.product, pr.enrollment_course AS course, min(i.id) AS first_id
              FROM inv AS i JOIN migrate_ext.products AS pr ON pr.code = i.product AND pr.enrollment_course IS NOT NULL
             WHERE i.valid GROUP BY i.email, i.product, pr.enrollment_course) AS b
      LEFT JOIN public.unified_profiles AS u ON lower(u.email) = b.email
     WHERE u.id IS NULL
        OR NOT EXISTS (SELECT 1 FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id
                        WHERE e.user_id = u.id AND c.title = b.course)
    UNION ALL
    SELECT 'profile_unknown_to_apis', 'production', NULL, p.email, p.id,
           'no Systeme.io contact and no Xendit invoice has this e-mail'
      FROM public.unified_profiles AS p
     WHERE NOT p.is_admin AND p.id::text NOT IN (SELECT c.record_id FROM carried AS c)
       AND NOT EXISTS (SELECT 1 FROM migrate_ext.systemeio_raw AS c WHERE lower(btrim(c.email)) = lower(p.email))
       AND NOT EXISTS (SELECT 1 FROM pg_temp.rx_invoice AS i WHERE i.email = lower(p.email));
    DROP TABLE pg_temp.rx_invoice, pg_temp.rx_error;
END;
$$;
COMMENT ON FUNCTION migrate_ext.reconcile() IS
    'Production against the raw API data under the validation''s rules; one row per difference; reads only (sync first)';

-- The nightly job for pg_cron: sync both APIs, reconcile, keep the results
-- in reconcile_runs and reconcile_results, drop runs older than
-- reconcile_settings.keep_for; returns a one-line summary
CREATE FUNCTION migrate_ext.nightly_reconcile() RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run bigint := nextval('migrate_ext.reconcile_runs_run_id_seq');
    v_started timestamptz := clock_timestamp();
    v_sync text;
    v_n bigint;
    v_dropped bigint;
BEGIN
    SELECT string_agg(format('%s %s%s', s.source, s.status, coalesce(' (' || s.error || ')', '')), ', ' ORDER BY s.source)
      INTO v_sync FROM migrate_ext.sync_raw_api_data() AS s;
    INSERT INTO migrate_ext.reconcile_runs (run_id, started_at, sync) VALUES (v_run, v_started, v_sync);
    INSERT INTO migrate_ext.reconcile_results (run_id, kind, source, record_id, email, production_id, detail)
    SELECT v_run, r.* FROM migrate_ext.reconcile() AS r;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE migrate_ext.reconcile_runs AS r SET finished_at = clock_timestamp(), differences = v_n WHERE r.run_id = v_run;
    DELETE FROM migrate_ext.reconcile_runs AS r
     WHERE r.started_at < v_started - (SELECT s.keep_for FROM migrate_ext.reconcile_settings AS s);
    GET DIAGNOSTICS v_dropped = ROW_COUNT;
    RETURN format('reconcile run %s: %s differences (sync: %s); %s old runs dropped. '
                  'See SELECT kind, count(*) FROM migrate_ext.reconcile_results WHERE run_id = %s GROUP BY kind;',
                  v_run, v_n, v_sync, v_dropped, v_run);
END;
$$;
COMMENT ON FUNCTION migrate_ext.nightly_reconcile() IS
    'For pg_cron: sync, reconcile(), keep the differences in reconcile_results for reconcile_settings.keep_for';
