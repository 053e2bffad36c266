-------------------------------------------------------------------------------
-- validate_and_prepare_clean_data(): raw -> staging, with the report
-------------------------------------------------------------------------------

-- Run an INSERT into staging; if a row breaks a constraint, insert row by
-- row and report each row that cannot go in.  insert_sql filters its rows
-- with "($1::text IS NULL OR <key> = $1)"; keys_sql lists (key, email,
-- source) of the rows it would insert.
CREATE FUNCTION migrate_ext.insert_reporting(run_id bigint, what text, insert_sql text, keys_sql text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := 0;
    m bigint;
    k_key text;
    k_email text;
    k_source text;
BEGIN
    BEGIN
        EXECUTE insert_sql USING NULL::text;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    EXCEPTION WHEN integrity_constraint_violation THEN
        n := 0;
    END;
    FOR k_key, k_email, k_source IN EXECUTE keys_sql LOOP
        BEGIN
            EXECUTE insert_sql USING k_key;
            GET DIAGNOSTICS m = ROW_COUNT;
            n := n + m;
        EXCEPTION WHEN integrity_constraint_violation THEN
            INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
            VALUES (run_id, 'error', 'constraint_violation', k_source, k_key, k_email,
                    format('%s: %s', what, SQLERRM));
        END;
    END LOOP;
    RETURN n;
END;
$$;

-- Make sure identity_map has an id for every (kind, key) in keys
CREATE FUNCTION migrate_ext.draw_ids(kind text, keys text[]) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO migrate_ext.identity_map (kind, key, id)
    SELECT kind, k, gen_random_uuid()
      FROM (SELECT DISTINCT k FROM unnest(keys) AS k WHERE k IS NOT NULL) AS d
     WHERE NOT EXISTS (SELECT 1 FROM migrate_ext.identity_map AS m WHERE m.kind = draw_ids.kind AND m.key = d.k)
    ON CONFLICT DO NOTHING;
$$;

-- What a valid e-mail address looks like (after lower(trim())): the rule
-- of migrate_ext.validation_rules
CREATE FUNCTION migrate_ext.email_pattern() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.email_pattern FROM migrate_ext.validation_rules AS r;
$$;

-- Every invoice of xendit_raw with what the rules make of it: the e-mail
-- identity, the exclusion that applies, the product, the mapped status.
-- Shared by the validation and reconcile().
CREATE FUNCTION migrate_ext.invoice_facts(email_re text)
RETURNS TABLE (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text,
               email_ok boolean, excluded text, product text, transaction_type text, fallback boolean,
               production_status text, paid boolean, known_status boolean, paid_at timestamptz,
               expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text,
               payment_channel text, description text, amount_type text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.id, i.external_id, i.status, i.amount, i.currency, i.payer_email AS raw_email,
           nullif(lower(btrim(i.payer_email)), '') AS email,
           coalesce(lower(btrim(i.payer_email)) ~ email_re, false) AS email_ok,
           x.reason AS excluded,
           p.code AS product, p.transaction_type, p.description_pattern IS NULL AS fallback,
           sm.production_status, coalesce(sm.becomes_transaction, false) AS paid,
           sm.xendit_status IS NOT NULL AS known_status,
           i.paid_at, i.expiry_date, i.created, i.updated, i.payment_method, i.payment_channel,
           i.description, jsonb_typeof(i.api_response -> 'amount') AS amount_type
      FROM migrate_ext.xendit_raw AS i
      LEFT JOIN LATERAL (SELECT e.reason FROM migrate_ext.exclusions AS e
                          WHERE (e.kind = 'xendit_id' AND e.value = i.id)
                             OR (e.kind = 'email' AND lower(btrim(i.payer_email)) LIKE e.value)
                          ORDER BY e.kind LIMIT 1) AS x ON true
      LEFT JOIN LATERAL (SELECT pr.* FROM migrate_ext.products AS pr
                          WHERE pr.description_pattern IS NULL OR i.description ILIKE pr.description_pattern
                          ORDER BY pr.description_pattern IS NULL, pr.match_order, pr.code LIMIT 1) AS p ON true
      LEFT JOIN migrate_ext.status_map AS sm ON sm.xendit_status = i.status;
$$;

-- The invoice rules: every issue of the invoices of a table with the
-- columns of invoice_facts() (error, warning), excluded ones left out.
-- Shared by the validation and reconcile().
CREATE FUNCTION migrate_ext.invoice_issues(invoices regclass)
RETURNS TABLE (severity text, rule text, record_id text, email text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (the rows come from dynamic SQL, which plpgsql_check cannot follow to
    -- the OUT columns)
    -- @plpgsql_check_options: extra_warnings = off
    -- the rules read the given table under one name
    RETURN QUERY EXECUTE replace($rules$
    SELECT v.severity, v.rule, i.id, coalesce(i.email, i.raw_email), v.detail
      FROM pg_temp.invoices AS i
     CROSS JOIN LATERAL (VALUES
        (NOT i.known_status, 'error', 'unknown_status',
         format('status %s is not in migrate_ext.status_map', coalesce(i.status, 'NULL'))),
        (i.known_status AND i.paid AND i.email IS NULL, 'error', 'paid_invoice_without_email',
         format('%s invoice of %s %s has no payer_email: fix it in Xendit or exclude it', i.status, i.currency, i.amount)),
        (i.email IS NOT NULL AND NOT i.email_ok, CASE WHEN i.paid THEN 'error' ELSE 'warning' END, 'invalid_email',
         format('payer_email %L is not a valid address%s', i.raw_email,
                CASE WHEN i.paid THEN '' ELSE ' (unpaid invoice: left out)' END)),
        (i.paid AND i.amount IS NULL, 'error', 'non_numeric_amount',
         format('amount is a JSON %s, not a number', coalesce(i.amount_type, 'absence'))),
        (i.paid AND i.amount <= 0, 'error', 'non_positive_amount', format('amount %s is not positive', i.amount)),
        (i.paid AND i.currency IS DISTINCT FROM $2, 'error', 'currency_not_php',
         format('currency %s: production records %s only', coalesce(i.currency, 'NULL'), $2)),
        (i.paid AND i.fallback, 'warning', 'no_product_match',
         format('description %L matches no product: recorded as %s', i.description, i.transaction_type))
     ) AS v(hit, severity, rule, detail)
     WHERE v.hit AND i.excluded IS NULL
    UNION ALL
    SELECT 'warning', 'test_account', i.id, i.email,
           'a paid invoice of what looks like a test account: exclude it, e.g. INSERT INTO migrate_ext.exclusions VALUES (''email'', ''%@example.com'', ''test accounts'')'
      FROM pg_temp.invoices AS i
     WHERE i.paid AND i.excluded IS NULL AND i.email ~ $1
    UNION ALL
    SELECT 'error', 'duplicate_external_id', i.id, i.email,
           format('external_id %L is shared by %s paid invoices; production keeps external_id unique', i.external_id, d.n)
      FROM pg_temp.invoices AS i
      JOIN (SELECT external_id, count(*) AS n FROM pg_temp.invoices
             WHERE paid AND excluded IS NULL AND external_id IS NOT NULL
             GROUP BY external_id HAVING count(*) > 1) AS d ON d.external_id = i.external_id
     WHERE i.paid AND i.excluded IS NULL
    $rules$, 'pg_temp.invoices', invoices::text)
    USING (SELECT r.test_account_pattern FROM migrate_ext.validation_rules AS r),
          (SELECT r.currency FROM migrate_ext.validation_rules AS r);
END;
$$;

-- Raw data -> staging, with the report: the stages of
-- sql/62_validate_stages.sql in order, then the report's rows
CREATE FUNCTION migrate_ext.validate_and_prepare_clean_data(
    OUT section text, OUT item text, OUT rows bigint, OUT amount numeric, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    validation_run CONSTANT bigint := migrate_ext.start_validation();
    -- rows newer than the sync are the application's (carried over)
    sync_started CONSTANT timestamptz := (SELECT v.sync_started_at FROM migrate_ext.validation_runs AS v
                                          WHERE v.run_id = validation_run);
BEGIN
    PERFORM migrate_ext.stage_contacts(validation_run);
    PERFORM migrate_ext.stage_invoices(validation_run);
    PERFORM migrate_ext.stage_sales(validation_run);
    PERFORM migrate_ext.stage_users(validation_run, sync_started);
    PERFORM migrate_ext.stage_transactions();
    PERFORM migrate_ext.stage_enrollments(sync_started);
    PERFORM migrate_ext.create_staging_tables();
    PERFORM migrate_ext.fill_staging(validation_run);
    PERFORM migrate_ext.finish_validation(validation_run, sync_started);
    RETURN QUERY SELECT * FROM migrate_ext.validation_report(validation_run);
END;
$$;
COMMENT ON FUNCTION migrate_ext.validate_and_prepare_clean_data() IS
    'Build schema migrate_staging from the raw API data and the rules, and report every issue (migrate_ext.validation_issues)';
