-------------------------------------------------------------------------------
-- The validation report a DBA reads in psql
-------------------------------------------------------------------------------

-- One run's report: staging row counts, issues by severity and rule,
-- revenue by product and status in pesos, leads, and what production would
-- gain, keep and lose at launch
CREATE FUNCTION migrate_ext.validation_report(run_id bigint,
    OUT section text, OUT item text, OUT rows bigint, OUT amount numeric, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    v record;
BEGIN
    SELECT * INTO v FROM migrate_ext.validation_runs AS r WHERE r.run_id = validation_report.run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'validation run % does not exist', run_id
              USING ERRCODE = 'no_data_found', HINT = 'See migrate_ext.validation_runs.';
    END IF;

    section := 'run';
    item := 'validation run ' || v.run_id;
    rows := NULL;
    amount := NULL;
    detail := format('%s errors, %s warnings; built from sync run %s%s', v.errors, v.warnings, v.sync_run_id,
                     CASE WHEN v.errors > 0 THEN ': the launch is blocked until every error is fixed upstream or excluded'
                          ELSE ': ready to launch' END);
    RETURN NEXT;

    FOREACH t IN ARRAY migrate_ext.swapped_tables() || '{auth_users}'::text[] LOOP
        section := 'staging';
        item := 'migrate_staging.' || t;
        EXECUTE format('SELECT count(*) FROM migrate_staging.%I', t) INTO rows;
        amount := NULL;
        detail := CASE t WHEN 'auth_users' THEN 'auth users the launch will create' ELSE 'rows' END;
        RETURN NEXT;
    END LOOP;

    RETURN QUERY
    SELECT 'issues', q.severity || ': ' || q.rule, count(*), NULL::numeric,
           min(q.detail) || CASE WHEN count(*) > 1 THEN ' (and more)' ELSE '' END
      FROM migrate_ext.validation_issues AS q
     WHERE q.run_id = validation_report.run_id
     GROUP BY q.severity, q.rule
     ORDER BY CASE q.severity WHEN 'error' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END, q.rule;

    RETURN QUERY
    SELECT 'revenue', s.transaction_type || ' ' || s.status, count(*), sum(s.amount),
           'pesos; ' || count(*) FILTER (WHERE s.payment_method = 'manual') || ' manual payments'
      FROM migrate_staging.transactions AS s
     GROUP BY s.transaction_type, s.status
     ORDER BY s.transaction_type, s.status;

    RETURN QUERY
    SELECT 'leads', x.item, x.n, NULL::numeric, x.detail
      FROM (SELECT 1 AS k, 'contacts (by e-mail)' AS item, count(*) AS n,
                   'distinct e-mails in systemeio_raw' AS detail
              FROM (SELECT DISTINCT lower(btrim(email)) FROM migrate_ext.systemeio_raw) AS e
            UNION ALL
            SELECT 2, 'leads', count(*), 'contacts with no payment: not customers, kept in systemeio_raw'
              FROM (SELECT DISTINCT lower(btrim(c.email)) AS email FROM migrate_ext.systemeio_raw AS c) AS e
             WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.transactions AS s WHERE s.contact_email = e.email)
            UNION ALL
            SELECT 3, 'converted', count(*), 'contacts that paid after they registered'
              FROM (SELECT lower(btrim(c.email)) AS email, min(c.registered_at) AS registered_at
                      FROM migrate_ext.systemeio_raw AS c GROUP BY 1) AS e
             WHERE EXISTS (SELECT 1 FROM migrate_staging.transactions AS s
                            WHERE s.contact_email = e.email AND s.paid_at > e.registered_at)) AS x
     ORDER BY x.k;

    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        RETURN QUERY EXECUTE format(
            'SELECT ''production''::text, %1$L || '': '' || x.what, x.n, NULL::numeric, x.detail
               FROM (SELECT 1 AS k, ''gain'' AS what,
                            (SELECT count(*) FROM migrate_staging.%1$I AS s
                              WHERE NOT EXISTS (SELECT 1 FROM public.%1$I AS p WHERE p.id = s.id)) AS n,
                            ''rows the APIs show that production lacks'' AS detail
                     UNION ALL
                     SELECT 2, ''keep'',
                            (SELECT count(*) FROM migrate_staging.%1$I AS s
                              WHERE EXISTS (SELECT 1 FROM public.%1$I AS p WHERE p.id = s.id)),
                            ''rows production has, same id (values as the APIs say)''
                     UNION ALL
                     SELECT 3, ''lose'',
                            (SELECT count(*) FROM public.%1$I AS p
                              WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.%1$I AS s WHERE s.id = p.id)),
                            ''rows removed at launch (listed as removed_at_launch), kept in the backup'') AS x
              ORDER BY x.k', t);
    END LOOP;
END;
$$;
