-------------------------------------------------------------------------------
-- The validation's stages, in the order validate_and_prepare_clean_data()
-- (sql/60_validate.sql) runs them.  Each builds working tables (mx_*,
-- temporary, dropped at commit) from the raw data, the rules and the
-- earlier stages' tables, and writes its issues to validation_issues;
-- the last ones build staging.
-------------------------------------------------------------------------------

-- Open a validation run: one run at a time, a configuration that can work,
-- the staging schema the extension's own, the run recorded with the sync
-- it reads; returns its id
CREATE FUNCTION migrate_ext.start_validation() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    validation_run bigint;
    v_table text;
BEGIN
    PERFORM migrate_ext.lock_out_other_runs('validate_and_prepare_clean_data()');
    PERFORM migrate_ext.check_configuration();
    PERFORM migrate_ext.claim_private_schema('migrate_staging', migrate_ext.staging_tables());
    validation_run := nextval('migrate_ext.validation_runs_run_id_seq');
    INSERT INTO migrate_ext.validation_runs (run_id, started_at, sync_run_id, sync_started_at, production_signature)
    SELECT validation_run, clock_timestamp(), s.run_id, min(s.started_at), migrate_ext.production_signature()
      FROM migrate_ext.sync_runs AS s
     WHERE s.run_id = (SELECT max(run_id) FROM migrate_ext.sync_runs WHERE status = 'succeeded')
     GROUP BY s.run_id;
    -- working tables of an earlier call in this transaction
    FOREACH v_table IN ARRAY '{mx_contact,mx_person,mx_invoice,mx_sale,mx_user,mx_prod_tx,mx_tx,mx_enroll,mx_auth}'::text[] LOOP
        IF to_regclass('pg_temp.' || v_table) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', v_table);
        END IF;
    END LOOP;
    RETURN validation_run;
END;
$$;

-- Contacts: e-mail identity, exclusions, one person per e-mail (contacts
-- merged); invalid and shared e-mails reported.  Each PRAGMA:TABLE line
-- declares the working table the next statement creates, for plpgsql_check
-- (test/sql/plpgsql_check.sql); at run time it is a constant.
CREATE FUNCTION migrate_ext.stage_contacts(validation_run bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    email_re CONSTANT text := migrate_ext.email_pattern();
BEGIN
    PERFORM 'PRAGMA:TABLE: mx_contact (id text, email text, raw_email text, email_ok boolean, excluded text, first_name text, last_name text, tags text[], registered_at timestamptz)';
    CREATE TEMP TABLE mx_contact ON COMMIT DROP AS
    SELECT c.id, lower(btrim(c.email)) AS email, c.email AS raw_email,
           coalesce(lower(btrim(c.email)) ~ email_re, false) AS email_ok,
           x.reason AS excluded, c.first_name, c.last_name, c.tags, c.registered_at
      FROM migrate_ext.systemeio_raw AS c
      LEFT JOIN LATERAL (SELECT e.reason FROM migrate_ext.exclusions AS e
                          WHERE (e.kind = 'systemeio_id' AND e.value = c.id)
                             OR (e.kind = 'email' AND lower(btrim(c.email)) LIKE e.value)
                          ORDER BY e.kind LIMIT 1) AS x ON true;

    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    CREATE TEMP TABLE mx_person ON COMMIT DROP AS
    SELECT c.email,
           array_agg(DISTINCT c.id ORDER BY c.id) AS contact_ids,
           (array_agg(c.first_name ORDER BY c.registered_at DESC NULLS LAST, c.id DESC)
               FILTER (WHERE nullif(btrim(c.first_name), '') IS NOT NULL))[1] AS first_name,
           (array_agg(c.last_name ORDER BY c.registered_at DESC NULLS LAST, c.id DESC)
               FILTER (WHERE nullif(btrim(c.last_name), '') IS NOT NULL))[1] AS last_name,
           coalesce((array_agg(DISTINCT tg.tag ORDER BY tg.tag) FILTER (WHERE tg.tag IS NOT NULL)), '{}') AS tags,
           min(c.registered_at) AS registered_at
      FROM mx_contact AS c
      LEFT JOIN LATERAL unnest(c.tags) AS tg(tag) ON true
     WHERE c.email_ok AND c.excluded IS NULL
     GROUP BY c.email;
    CREATE UNIQUE INDEX ON mx_person (email);
    ANALYZE mx_contact, mx_person;

    -- what was left out on purpose
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'info', 'excluded', 'systemeio', c.id, c.email, 'excluded: ' || c.excluded
      FROM mx_contact AS c WHERE c.excluded IS NOT NULL;

    -- contact rules
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run,
           CASE WHEN c.tags && (SELECT coalesce(array_agg(pt.tag), '{}') FROM migrate_ext.products AS pr,
                                       unnest(pr.paid_tags) AS pt(tag))
                THEN 'error' ELSE 'warning' END,
           'invalid_email', 'systemeio', c.id, c.raw_email,
           format('e-mail %L is not a valid address', c.raw_email)
      FROM mx_contact AS c WHERE c.excluded IS NULL AND NOT c.email_ok;
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'warning', 'duplicate_contact_email', 'systemeio', array_to_string(p.contact_ids, ','), p.email,
           format('%s contacts share this e-mail: merged (tags united, earliest registration, latest names)',
                  cardinality(p.contact_ids))
      FROM mx_person AS p WHERE cardinality(p.contact_ids) > 1;
END;
$$;

-- Invoices: product, status, e-mail identity, exclusions, the invoice
-- rules; an invoice with an error, excluded or unpaid is not valid
CREATE FUNCTION migrate_ext.stage_invoices(validation_run bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM 'PRAGMA:TABLE: mx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text, valid boolean)';
    CREATE TEMP TABLE mx_invoice ON COMMIT DROP AS
    SELECT f.*, true AS valid FROM migrate_ext.invoice_facts(migrate_ext.email_pattern()) AS f;

    CREATE INDEX ON mx_invoice (id);
    ANALYZE mx_invoice;

    -- what was left out on purpose
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'info', 'excluded', 'xendit', i.id, i.email, 'excluded: ' || i.excluded
      FROM mx_invoice AS i WHERE i.excluded IS NOT NULL;

    -- invoice rules
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, q.severity, q.rule, 'xendit', q.record_id, q.email, q.detail
      FROM migrate_ext.invoice_issues('pg_temp.mx_invoice') AS q;

    -- an invoice with an error is left out; so is everything excluded or unpaid
    UPDATE mx_invoice AS i SET valid = false
     WHERE i.excluded IS NOT NULL OR NOT i.paid
        OR EXISTS (SELECT 1 FROM migrate_ext.validation_issues AS q
                    WHERE q.run_id = validation_run AND q.source = 'xendit' AND q.record_id = i.id AND q.severity = 'error');
END;
$$;

-- Sales: per e-mail and product, the valid paid invoices, and manual
-- payments for paid tags without a paid invoice
CREATE FUNCTION migrate_ext.stage_sales(validation_run bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text, valid boolean)';
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    CREATE TEMP TABLE mx_sale ON COMMIT DROP AS
    SELECT i.email, i.product, min(i.paid_at) AS first_paid_at, false AS manual
      FROM mx_invoice AS i WHERE i.valid GROUP BY i.email, i.product;
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'warning', 'paid_tag_without_invoice', 'systemeio', array_to_string(pe.contact_ids, ','), pe.email,
           CASE WHEN pr.manual_price IS NOT NULL
                THEN format('tagged %s without a paid %s invoice: recorded as a manual payment of %s',
                            array_to_string(pr.paid_tags, '/'), pr.code, pr.manual_price)
                ELSE format('tagged %s without a paid %s invoice: no transaction (the product has no manual price)',
                            array_to_string(pr.paid_tags, '/'), pr.code) END
      FROM mx_person AS pe JOIN migrate_ext.products AS pr ON pe.tags && pr.paid_tags
     WHERE NOT EXISTS (SELECT 1 FROM mx_invoice AS i
                        WHERE i.paid AND i.email = pe.email AND i.product = pr.code);
    -- a manual payment only where no paid invoice of the product exists at
    -- all (one with an error or excluded still says the person paid)
    INSERT INTO mx_sale (email, product, first_paid_at, manual)
    SELECT pe.email, pr.code, pe.registered_at, true
      FROM mx_person AS pe JOIN migrate_ext.products AS pr ON pe.tags && pr.paid_tags
     WHERE pr.manual_price IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM mx_invoice AS i
                        WHERE i.paid AND i.email = pe.email AND i.product = pr.code);
END;
$$;

-- Users: existing auth users keep their ids; new buyers of a product that
-- grants a profile get a stable id
CREATE FUNCTION migrate_ext.stage_users(validation_run bigint, sync_started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    PERFORM 'PRAGMA:TABLE: mx_auth (email text, id uuid)';
    CREATE TEMP TABLE mx_auth ON COMMIT DROP AS
    SELECT lower(btrim(u.email)) AS email, (array_agg(u.id ORDER BY u.created_at NULLS LAST, u.id))[1] AS id
      FROM auth.users AS u WHERE u.email IS NOT NULL GROUP BY 1;
    CREATE UNIQUE INDEX ON mx_auth (email);
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT validation_run, 'warning', 'duplicate_auth_user', 'auth.users',
           string_agg(u.id::text, ',' ORDER BY u.created_at NULLS LAST, u.id), lower(btrim(u.email)),
           format('%s auth users share this e-mail: the profile keeps the id of the oldest; the others are left as they are',
                  count(*))
      FROM auth.users AS u
     WHERE lower(btrim(u.email)) IN (SELECT s.email FROM mx_sale AS s)
     GROUP BY lower(btrim(u.email)) HAVING count(*) > 1;

    PERFORM migrate_ext.draw_ids('user',
        ARRAY(SELECT DISTINCT s.email FROM mx_sale AS s JOIN migrate_ext.products AS pr ON pr.code = s.product
               WHERE pr.grants_profile AND NOT EXISTS (SELECT 1 FROM mx_auth AS a WHERE a.email = s.email)));
    PERFORM 'PRAGMA:TABLE: mx_user (email text, id uuid, has_auth_user boolean, first_paid_at timestamptz, created_at timestamptz)';
    CREATE TEMP TABLE mx_user ON COMMIT DROP AS
    SELECT s.email, coalesce(a.id, m.id) AS id, a.id IS NOT NULL AS has_auth_user,
           min(s.first_paid_at) AS first_paid_at,
           coalesce(least(min(pe.registered_at), min(s.first_paid_at)), sync_started) AS created_at
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product AND pr.grants_profile
      LEFT JOIN mx_person AS pe ON pe.email = s.email
      LEFT JOIN mx_auth AS a ON a.email = s.email
      LEFT JOIN migrate_ext.identity_map AS m ON m.kind = 'user' AND m.key = s.email
     GROUP BY s.email, a.id, m.id;
    CREATE UNIQUE INDEX ON mx_user (email);
END;
$$;

-- Transactions: one per valid paid invoice, one per manual payment; the
-- production transaction each one is keeps its id
CREATE FUNCTION migrate_ext.stage_transactions() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text, valid boolean)';
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    PERFORM 'PRAGMA:TABLE: mx_auth (email text, id uuid)';
    PERFORM 'PRAGMA:TABLE: mx_user (email text, id uuid, has_auth_user boolean, first_paid_at timestamptz, created_at timestamptz)';
    PERFORM migrate_ext.draw_ids('xendit_invoice', ARRAY(SELECT id FROM mx_invoice WHERE valid));
    PERFORM migrate_ext.draw_ids('manual_payment', ARRAY(SELECT product || ':' || email FROM mx_sale WHERE manual));
    -- production transactions that can be recognized: by an external id
    -- that only one of them has, or as the only manual payment of a product
    -- for an e-mail
    PERFORM 'PRAGMA:TABLE: mx_prod_tx (kind text, key text, id uuid)';
    CREATE TEMP TABLE mx_prod_tx ON COMMIT DROP AS
    SELECT 'external_id' AS kind, t.external_id AS key, min(t.id::text)::uuid AS id
      FROM public.transactions AS t WHERE t.external_id IS NOT NULL
     GROUP BY t.external_id HAVING count(*) = 1
    UNION ALL
    SELECT 'manual', t.transaction_type || ':' || lower(btrim(t.contact_email)), min(t.id::text)::uuid
      FROM public.transactions AS t WHERE t.payment_method = 'manual' AND t.contact_email IS NOT NULL
     GROUP BY t.transaction_type, lower(btrim(t.contact_email)) HAVING count(*) = 1;
    CREATE UNIQUE INDEX ON mx_prod_tx (kind, key);
    ANALYZE mx_prod_tx;

    PERFORM 'PRAGMA:TABLE: mx_tx (id uuid, source text, record_id text, email text, product text, user_id uuid, amount numeric, currency text, status text, payment_method text, transaction_type text, external_id text, paid_at timestamptz, settled_at timestamptz, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, metadata jsonb)';
    CREATE TEMP TABLE mx_tx ON COMMIT DROP AS
    SELECT coalesce(pt.id, m.id) AS id, 'xendit' AS source, i.id AS record_id, i.email, i.product,
           coalesce(a.id, u.id) AS user_id, i.amount, i.currency, i.production_status AS status,
           coalesce(i.payment_channel, i.payment_method) AS payment_method, i.transaction_type,
           i.external_id, i.paid_at,
           CASE WHEN sm.settles THEN i.updated END AS settled_at,
           i.expiry_date AS expires_at, i.created AS created_at, i.updated AS updated_at,
           jsonb_strip_nulls(jsonb_build_object('xendit_invoice_id', i.id, 'xendit_status', i.status,
                                                'description', i.description, 'payment_method', i.payment_method,
                                                'payment_channel', i.payment_channel)) AS metadata
      FROM mx_invoice AS i
      JOIN migrate_ext.identity_map AS m ON m.kind = 'xendit_invoice' AND m.key = i.id
      LEFT JOIN mx_auth AS a ON a.email = i.email
      LEFT JOIN mx_user AS u ON u.email = i.email
      LEFT JOIN mx_prod_tx AS pt ON pt.kind = 'external_id' AND pt.key = i.external_id
      LEFT JOIN migrate_ext.status_map AS sm ON sm.xendit_status = i.status
     WHERE i.valid
    UNION ALL
    SELECT coalesce(pm.id, m.id), 'systemeio', s.product || ':' || s.email, s.email, s.product,
           coalesce(a.id, u.id), pr.manual_price, (SELECT r.currency FROM migrate_ext.validation_rules AS r), 'completed',
           'manual', pr.transaction_type,
           NULL, s.first_paid_at, NULL, NULL, s.first_paid_at, s.first_paid_at,
           jsonb_build_object('manual_payment', true, 'systemeio_contact_ids', pe.contact_ids,
                              'paid_tags', pr.paid_tags)
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product
      JOIN mx_person AS pe ON pe.email = s.email
      JOIN migrate_ext.identity_map AS m ON m.kind = 'manual_payment' AND m.key = s.product || ':' || s.email
      LEFT JOIN mx_auth AS a ON a.email = s.email
      LEFT JOIN mx_user AS u ON u.email = s.email
      -- production's own record of the same manual payment keeps its id
      LEFT JOIN mx_prod_tx AS pm ON pm.kind = 'manual' AND pm.key = pr.transaction_type || ':' || s.email
     WHERE s.manual;
    CREATE UNIQUE INDEX ON mx_tx (id);
    CREATE INDEX ON mx_tx (email, product);
    ANALYZE mx_sale, mx_user, mx_tx;
END;
$$;

-- Enrollments: one per user and course of the products that grant one
CREATE FUNCTION migrate_ext.stage_enrollments(sync_started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the working tables of the earlier stages (declared for plpgsql_check)
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    PERFORM 'PRAGMA:TABLE: mx_user (email text, id uuid, has_auth_user boolean, first_paid_at timestamptz, created_at timestamptz)';
    PERFORM 'PRAGMA:TABLE: mx_tx (id uuid, source text, record_id text, email text, product text, user_id uuid, amount numeric, currency text, status text, payment_method text, transaction_type text, external_id text, paid_at timestamptz, settled_at timestamptz, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, metadata jsonb)';
    PERFORM 'PRAGMA:TABLE: mx_enroll (user_id uuid, course_id uuid, email text, transaction_id uuid, enrolled_at timestamptz, id uuid)';
    CREATE TEMP TABLE mx_enroll ON COMMIT DROP AS
    SELECT u.id AS user_id, c.id AS course_id, s.email,
           (SELECT t.id FROM mx_tx AS t WHERE t.email = s.email AND t.product = s.product
             ORDER BY t.paid_at NULLS LAST, t.id LIMIT 1) AS transaction_id,
           coalesce(s.first_paid_at, sync_started) AS enrolled_at, NULL::uuid AS id
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product AND pr.enrollment_course IS NOT NULL
      JOIN public.courses AS c ON c.title = pr.enrollment_course
      JOIN mx_user AS u ON u.email = s.email;
    PERFORM migrate_ext.draw_ids('enrollment', ARRAY(SELECT user_id || ':' || course_id FROM mx_enroll));
    UPDATE mx_enroll AS e
       SET id = coalesce((SELECT pe.id FROM public.enrollments AS pe
                           WHERE pe.user_id = e.user_id AND pe.course_id = e.course_id),
                         (SELECT m.id FROM migrate_ext.identity_map AS m
                           WHERE m.kind = 'enrollment' AND m.key = e.user_id || ':' || e.course_id));
END;
$$;

-- Staging tables with production's shape (the previous staging dropped),
-- and the table of the auth users the launch creates
CREATE FUNCTION migrate_ext.create_staging_tables() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_table text;
BEGIN
    IF to_regclass('migrate_staging.auth_users') IS NOT NULL THEN
        DROP TABLE migrate_staging.auth_users;
    END IF;
    -- the previous staging goes in one statement: after a rollback its
    -- tables reference each other
    IF EXISTS (SELECT 1 FROM unnest(migrate_ext.swapped_tables()) AS t WHERE to_regclass(format('migrate_staging.%I', t)) IS NOT NULL) THEN
        EXECUTE 'DROP TABLE ' || (SELECT string_agg(format('migrate_staging.%I', t), ', ')
                                    FROM unnest(migrate_ext.swapped_tables()) AS t
                                   WHERE to_regclass(format('migrate_staging.%I', t)) IS NOT NULL);
    END IF;
    FOREACH v_table IN ARRAY migrate_ext.swapped_tables() LOOP
        PERFORM migrate_ext.create_staging_table(v_table);
    END LOOP;
    CREATE TABLE migrate_staging.auth_users (
        id         uuid PRIMARY KEY,
        email      text NOT NULL UNIQUE,
        first_name text,
        last_name  text,
        created_at timestamptz NOT NULL
    );
    PERFORM migrate_ext.close_table('migrate_staging.auth_users'::regclass);
END;
$$;

-- Fill staging from the working tables: rows production already has are
-- production's row with the API's values laid over it, then the new rows;
-- a row that breaks a constraint is reported (insert_reporting())
CREATE FUNCTION migrate_ext.fill_staging(validation_run bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM migrate_ext.insert_reporting(validation_run, 'unified_profiles',
        'INSERT INTO migrate_staging.unified_profiles
         SELECT r.* FROM public.unified_profiles AS p
           JOIN pg_temp.mx_user AS u ON u.id = p.id
           LEFT JOIN pg_temp.mx_person AS pe ON pe.email = u.email
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''email'', u.email, ''first_name'', coalesce(pe.first_name, p.first_name),
                    ''last_name'', coalesce(pe.last_name, p.last_name), ''tags'', coalesce(pe.tags, p.tags))) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT p.id::text AS key, p.email, ''production'' AS source FROM public.unified_profiles AS p
          WHERE p.id IN (SELECT id FROM pg_temp.mx_user)');
    PERFORM migrate_ext.insert_reporting(validation_run, 'unified_profiles',
        'INSERT INTO migrate_staging.unified_profiles (id, email, first_name, last_name, tags, created_at)
         SELECT u.id, u.email, pe.first_name, pe.last_name, pe.tags, u.created_at
           FROM pg_temp.mx_user AS u LEFT JOIN pg_temp.mx_person AS pe ON pe.email = u.email
          WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = u.id)
            AND ($1::text IS NULL OR u.id::text = $1)',
        'SELECT u.id::text AS key, u.email, ''api'' AS source FROM pg_temp.mx_user AS u
          WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = u.id)');

    PERFORM migrate_ext.insert_reporting(validation_run, 'transactions',
        'INSERT INTO migrate_staging.transactions
         SELECT r.* FROM public.transactions AS p
           JOIN pg_temp.mx_tx AS t ON t.id = p.id
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''user_id'', t.user_id, ''amount'', t.amount, ''currency'', t.currency, ''status'', t.status,
                    ''payment_method'', t.payment_method, ''transaction_type'', t.transaction_type,
                    ''external_id'', t.external_id, ''paid_at'', t.paid_at, ''settled_at'', t.settled_at,
                    ''expires_at'', t.expires_at, ''contact_email'', t.email,
                    ''metadata'', coalesce(p.metadata, ''{}''::jsonb) || t.metadata)) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT t.id::text AS key, t.email, t.source FROM pg_temp.mx_tx AS t
          WHERE EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)');
    PERFORM migrate_ext.insert_reporting(validation_run, 'transactions',
        'INSERT INTO migrate_staging.transactions
                (id, user_id, amount, currency, status, payment_method, transaction_type, external_id,
                 paid_at, settled_at, expires_at, metadata, contact_email, created_at, updated_at)
         SELECT t.id, t.user_id, t.amount, t.currency, t.status, t.payment_method, t.transaction_type,
                t.external_id, t.paid_at, t.settled_at, t.expires_at, t.metadata, t.email,
                t.created_at, t.updated_at
           FROM pg_temp.mx_tx AS t
          WHERE NOT EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)
            AND ($1::text IS NULL OR t.id::text = $1)',
        'SELECT t.id::text AS key, t.email, t.source FROM pg_temp.mx_tx AS t
          WHERE NOT EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)');

    PERFORM migrate_ext.insert_reporting(validation_run, 'enrollments',
        'INSERT INTO migrate_staging.enrollments
         SELECT r.* FROM public.enrollments AS p
           JOIN pg_temp.mx_enroll AS e ON e.id = p.id
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''transaction_id'', coalesce(p.transaction_id, e.transaction_id))) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT e.id::text AS key, e.email, ''production'' AS source FROM pg_temp.mx_enroll AS e
          WHERE EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)');
    PERFORM migrate_ext.insert_reporting(validation_run, 'enrollments',
        'INSERT INTO migrate_staging.enrollments (id, user_id, course_id, transaction_id, status, enrolled_at)
         SELECT e.id, e.user_id, e.course_id, e.transaction_id, ''active'', e.enrolled_at
           FROM pg_temp.mx_enroll AS e
          WHERE NOT EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)
            AND ($1::text IS NULL OR e.id::text = $1)',
        'SELECT e.id::text AS key, e.email, ''api'' AS source FROM pg_temp.mx_enroll AS e
          WHERE NOT EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)');
END;
$$;

-- Nothing lost: production rows carried over; is_student as the
-- application keeps it; the auth users to create; references checked;
-- removals listed; the run's counts recorded
CREATE FUNCTION migrate_ext.finish_validation(validation_run bigint, sync_started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_table text;
BEGIN
    PERFORM migrate_ext.carry_over(validation_run, sync_started);
    -- is_student as the application's trigger (sync_is_student) keeps it:
    -- true exactly when the profile has an active enrollment
    UPDATE migrate_staging.unified_profiles AS s SET is_student = a.active
      FROM (SELECT p.id, EXISTS (SELECT 1 FROM migrate_staging.enrollments AS e
                                  WHERE e.user_id = p.id AND e.status = 'active') AS active
              FROM migrate_staging.unified_profiles AS p) AS a
     WHERE a.id = s.id AND s.is_student IS DISTINCT FROM a.active;

    -- new auth users: the profiles whose id no auth user has
    INSERT INTO migrate_staging.auth_users (id, email, first_name, last_name, created_at)
    SELECT s.id, s.email, s.first_name, s.last_name, s.created_at
      FROM migrate_staging.unified_profiles AS s
     WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id);

    PERFORM migrate_ext.check_staging_references(validation_run);

    -- production rows that will be gone after the launch
    FOREACH v_table IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format(
            'INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
             SELECT $1, ''info'', ''removed_at_launch'', %L, p.id::text, %s, %L
               FROM public.%I AS p
              WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.%I AS s WHERE s.id = p.id)',
            v_table, migrate_ext.email_expression(v_table),
            format('production row of %s that the API data does not produce and nothing needs', v_table),
            v_table, v_table)
        USING validation_run;
    END LOOP;

    UPDATE migrate_ext.validation_runs AS v
       SET finished_at = clock_timestamp(),
           errors = (SELECT count(*) FROM migrate_ext.validation_issues AS q WHERE q.run_id = validation_run AND q.severity = 'error'),
           warnings = (SELECT count(*) FROM migrate_ext.validation_issues AS q WHERE q.run_id = validation_run AND q.severity = 'warning')
     WHERE v.run_id = validation_run;
END;
$$;
