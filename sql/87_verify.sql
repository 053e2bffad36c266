-------------------------------------------------------------------------------
-- verify_production(): after a launch or a rollback, the checks that prove
-- the application works, as rows a DBA reads.  The launch records what it
-- compares against (launch_record()); the backup's foreign keys and how to
-- delete a row they still reference (backup_references()).
-------------------------------------------------------------------------------

-- What the application relies on, per swapped table of a schema, from the
-- catalog: RLS flags, policies, grants, triggers with their enabled state,
-- foreign keys of the table and foreign keys of other tables to it
CREATE FUNCTION migrate_ext.app_properties(schema_name text)
RETURNS TABLE (tbl text, kind text, item text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH t AS (
        SELECT c.oid, c.relname::text AS tbl FROM pg_class AS c
         WHERE c.relnamespace = to_regnamespace(schema_name) AND c.relname = ANY (migrate_ext.swapped_tables()))
    SELECT t.tbl, 'rls', format('row level security %s, forced %s', c.relrowsecurity, c.relforcerowsecurity)
      FROM t JOIN pg_class AS c ON c.oid = t.oid
    UNION ALL
    SELECT t.tbl, 'policy', format('%s: %s %s to %s using %s with check %s', p.polname, p.polcmd,
                                   CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                                   p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid),
                                   pg_get_expr(p.polwithcheck, p.polrelid))
      FROM t JOIN pg_policy AS p ON p.polrelid = t.oid
    UNION ALL
    SELECT t.tbl, 'grant', a::text
      FROM t JOIN pg_class AS c ON c.oid = t.oid CROSS JOIN LATERAL unnest(c.relacl) AS a
    UNION ALL
    SELECT t.tbl, 'grant', format('column %s: %s', a.attname, a.attacl)
      FROM t JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attacl IS NOT NULL AND NOT a.attisdropped
    UNION ALL
    SELECT t.tbl, 'trigger', format('%s (enabled %s): %s', g.tgname, g.tgenabled, pg_get_triggerdef(g.oid))
      FROM t JOIN pg_trigger AS g ON g.tgrelid = t.oid AND NOT g.tgisinternal
    UNION ALL
    SELECT t.tbl, 'foreign key', format('%s: %s', k.conname, pg_get_constraintdef(k.oid))
      FROM t JOIN pg_constraint AS k ON k.conrelid = t.oid AND k.contype = 'f'
    UNION ALL
    SELECT t.tbl, 'foreign key', format('%s of %s: %s', k.conname, k.conrelid::regclass, pg_get_constraintdef(k.oid))
      FROM t JOIN pg_constraint AS k ON k.confrelid = t.oid AND k.contype = 'f' AND k.conrelid <> t.oid;
$$;

-- Row counts of the swapped tables of a schema and completed revenue by
-- product, of the rows created before a moment (NULL: all rows), as jsonb
CREATE FUNCTION migrate_ext.production_figures(schema_name text, created_before timestamptz DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    revenue jsonb;
BEGIN
    EXECUTE format('SELECT coalesce(jsonb_object_agg(x.transaction_type, jsonb_build_object(''transactions'', x.n, ''amount'', x.amount)), ''{}'')
                      FROM (SELECT t.transaction_type, count(*) AS n, sum(t.amount) AS amount FROM %I.transactions AS t
                             WHERE t.status = ''completed'' AND ($1 IS NULL OR t.created_at IS NULL OR t.created_at < $1)
                             GROUP BY t.transaction_type) AS x', schema_name)
       INTO revenue USING created_before;
    RETURN jsonb_build_object('tables', migrate_ext.table_counts(schema_name, NULL, created_before), 'revenue', revenue);
END;
$$;

-- What a launch records, before the swap, for verify_production(): the
-- application's catalog properties, the figures of production and staging,
-- and production's data problems
CREATE FUNCTION migrate_ext.launch_record() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'properties', (SELECT coalesce(jsonb_agg(jsonb_build_array(p.tbl, p.kind, p.item) ORDER BY p.tbl, p.kind, p.item), '[]')
                         FROM migrate_ext.app_properties('public') AS p),
        'figures', jsonb_build_object('production', migrate_ext.production_figures('public'),
                                      'staging', migrate_ext.production_figures('migrate_staging')),
        'data_problems', (SELECT jsonb_object_agg(d.check_name || ' ' || d.subject, d.problems)
                            FROM migrate_ext.data_problems() AS d));
$$;

-- The catalog check: every recorded property still there, nothing else
CREATE FUNCTION migrate_ext.verify_catalog(m migrate_ext.migrations)
RETURNS TABLE (check_name text, subject text, ok boolean, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH recorded AS (
        SELECT r->>0 AS tbl, r->>1 AS kind, r->>2 AS item FROM jsonb_array_elements(m.counts->'properties') AS r),
    now_ AS (SELECT * FROM migrate_ext.app_properties('public')),
    diff AS (
        SELECT coalesce(r.tbl, n.tbl) AS tbl, coalesce(r.kind, n.kind) AS kind,
               CASE WHEN n.item IS NULL THEN 'missing ' ELSE 'not recorded at the launch ' END
               || coalesce(r.kind, n.kind) || ' ' || coalesce(r.item, n.item) AS problem
          FROM recorded AS r FULL JOIN now_ AS n USING (tbl, kind, item)
         WHERE r.item IS NULL OR n.item IS NULL)
    SELECT 'catalog: ' || k.kind, 'public.' || t.tbl, x.problems IS NULL,
           CASE WHEN m.counts->'properties' IS NULL THEN 'this launch recorded no catalog properties'
                WHEN x.problems IS NULL
                THEN format('as recorded at launch %s (%s)', m.backup_timestamp, x.recorded)
                ELSE x.problems END
      FROM unnest(migrate_ext.swapped_tables()) AS t(tbl)
     CROSS JOIN unnest('{rls,policy,grant,trigger,foreign key}'::text[]) AS k(kind)
     CROSS JOIN LATERAL (
        SELECT (SELECT count(*) FROM recorded AS r WHERE r.tbl = t.tbl AND r.kind = k.kind) AS recorded,
               (SELECT string_agg(d.problem, '; ' ORDER BY d.problem) FROM diff AS d
                 WHERE d.tbl = t.tbl AND d.kind = k.kind) AS problems) AS x
     WHERE m.counts->'properties' IS NOT NULL OR k.kind = 'rls'
     ORDER BY t.tbl, k.kind;
$$;

-- The figures check: counts and completed revenue by product of the rows
-- created before the launch equal what the launch recorded (staging's after
-- a launch, production's of before after a rollback)
CREATE FUNCTION migrate_ext.verify_figures(m migrate_ext.migrations)
RETURNS TABLE (check_name text, subject text, ok boolean, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH f AS (
        SELECT m.counts->'figures'->(CASE WHEN m.state = 'rolled_back' THEN 'production' ELSE 'staging' END) AS expected,
               migrate_ext.production_figures('public', m.launched_at) AS actual,
               CASE WHEN m.state = 'rolled_back' THEN 'production before the launch' ELSE 'staging at the launch' END AS what)
    SELECT 'rows', 'public.' || t.key, (f.actual->'tables'->t.key) = t.value,
           format('%s rows created before the launch; %s had %s', f.actual->'tables'->t.key, f.what, t.value)
      FROM f CROSS JOIN LATERAL jsonb_each(f.expected->'tables') AS t
    UNION ALL
    SELECT 'revenue', coalesce(e.key, a.key), e.value IS NOT DISTINCT FROM a.value,
           format('%s completed transactions, %s PHP; %s had %s, %s PHP',
                  coalesce(a.value->>'transactions', '0'), coalesce(a.value->>'amount', '0'), f.what,
                  coalesce(e.value->>'transactions', '0'), coalesce(e.value->>'amount', '0'))
      FROM f CROSS JOIN LATERAL (
            SELECT x.key, x.value, y.key AS akey, y.value AS avalue
              FROM jsonb_each(f.expected->'revenue') AS x FULL JOIN jsonb_each(f.actual->'revenue') AS y ON y.key = x.key
           ) AS j(key, value, akey, avalue)
      CROSS JOIN LATERAL (SELECT j.key, j.value) AS e(key, value)
      CROSS JOIN LATERAL (SELECT j.akey, j.avalue) AS a(key, value)
     WHERE f.expected IS NOT NULL;
$$;

-- The data problems of production: buyers of a product with a course
-- without a profile or an enrollment, and profiles whose is_student does
-- not follow their active enrollments; a count and a few e-mails each
CREATE FUNCTION migrate_ext.data_problems()
RETURNS TABLE (check_name text, subject text, problems bigint, examples text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH buyer AS (
        SELECT DISTINCT pr.code, t.user_id, lower(btrim(t.contact_email)) AS email, c.id AS course_id
          FROM public.transactions AS t
          JOIN migrate_ext.products AS pr ON pr.transaction_type = t.transaction_type AND pr.enrollment_course IS NOT NULL
          LEFT JOIN public.courses AS c ON c.title = pr.enrollment_course
         WHERE t.status = 'completed'),
    missing AS (
        SELECT b.code, b.email,
               NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = b.user_id) AS no_profile,
               NOT EXISTS (SELECT 1 FROM public.enrollments AS e WHERE e.user_id = b.user_id AND e.course_id = b.course_id) AS no_enrollment
          FROM buyer AS b)
    SELECT 'buyers: ' || x.what, pr.code || ' buyers', count(m.code),
           array_to_string((array_agg(coalesce(m.email, '(no e-mail)') ORDER BY m.email) FILTER (WHERE m.code IS NOT NULL))[1:5], ', ')
      FROM migrate_ext.products AS pr
     CROSS JOIN (VALUES ('a profile'), ('an enrollment')) AS x(what)
      LEFT JOIN missing AS m ON m.code = pr.code
                            AND ((x.what = 'a profile' AND m.no_profile) OR (x.what = 'an enrollment' AND m.no_enrollment))
     WHERE pr.enrollment_course IS NOT NULL
     GROUP BY pr.code, x.what
    UNION ALL
    SELECT 'is_student', 'public.unified_profiles', count(*),
           array_to_string((array_agg(p.email ORDER BY p.email))[1:5], ', ')
      FROM public.unified_profiles AS p
     WHERE p.is_student IS DISTINCT FROM EXISTS (SELECT 1 FROM public.enrollments AS e
                                                  WHERE e.user_id = p.id AND e.status = 'active');
$$;

-- The data checks: none of data_problems() after a launch; after a
-- rollback, no more than the previous production had at the launch
CREATE FUNCTION migrate_ext.verify_data(m migrate_ext.migrations)
RETURNS TABLE (check_name text, subject text, ok boolean, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.check_name, d.subject, d.problems <= x.allowed,
           CASE WHEN d.problems = 0 THEN 'none'
                ELSE format('%s: %s%s', d.problems, d.examples,
                            CASE WHEN x.allowed > 0 THEN format(' (production had %s before the launch)', x.allowed) ELSE '' END) END
      FROM migrate_ext.data_problems() AS d
     CROSS JOIN LATERAL (SELECT CASE WHEN m.state = 'rolled_back'
                                     THEN coalesce((m.counts->'data_problems'->>(d.check_name || ' ' || d.subject))::bigint, 0)
                                     ELSE 0 END AS allowed) AS x;
$$;

-- The auth check: every user a launch created is as Supabase Auth writes
-- it ('' tokens, aud and role, the e-mail provider and identity) and is
-- the only account found by its e-mail
CREATE FUNCTION migrate_ext.verify_auth_users(m migrate_ext.migrations)
RETURNS TABLE (check_name text, subject text, ok boolean, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH bad AS (
        SELECT c.id, concat_ws(', ',
               CASE WHEN u.id IS NULL THEN 'missing' END,
               CASE WHEN u.aud IS DISTINCT FROM 'authenticated' OR u.role IS DISTINCT FROM 'authenticated' THEN 'aud/role' END,
               CASE WHEN u.instance_id IS DISTINCT FROM '00000000-0000-0000-0000-000000000000' THEN 'instance_id' END,
               CASE WHEN u.id IS NOT NULL AND (u.confirmation_token IS NULL OR u.recovery_token IS NULL
                      OR u.email_change_token_new IS NULL OR u.email_change IS NULL OR u.email_change_token_current IS NULL
                      OR u.phone_change IS NULL OR u.phone_change_token IS NULL OR u.reauthentication_token IS NULL)
                    THEN 'a NULL token' END,
               CASE WHEN u.raw_app_meta_data->>'provider' IS DISTINCT FROM 'email' THEN 'provider' END,
               CASE WHEN u.email IS DISTINCT FROM lower(btrim(u.email)) THEN 'e-mail not normalized' END,
               CASE WHEN (SELECT count(*) FROM auth.users AS o WHERE lower(o.email) = lower(u.email) AND NOT o.is_sso_user) <> 1
                    THEN 'not found by e-mail exactly once' END,
               CASE WHEN to_regclass('auth.identities') IS NOT NULL AND NOT EXISTS (
                         SELECT 1 FROM auth.identities AS i WHERE i.user_id = c.id AND i.provider = 'email'
                            AND i.provider_id = c.id::text AND i.identity_data->>'email' = u.email)
                    THEN 'no e-mail identity' END) AS problems
          FROM unnest(m.created_users) AS c(id) LEFT JOIN auth.users AS u ON u.id = c.id)
    SELECT 'auth users', 'auth.users', count(*) FILTER (WHERE b.problems <> '') = 0,
           CASE WHEN count(*) FILTER (WHERE b.problems <> '') = 0
                THEN format('the %s users launch %s created are well-formed and found by e-mail', count(*), m.backup_timestamp)
                ELSE format('%s of %s users launch %s created are malformed: %s', count(*) FILTER (WHERE b.problems <> ''),
                            count(*), m.backup_timestamp,
                            string_agg(b.id || ' (' || b.problems || ')', '; ' ORDER BY b.id) FILTER (WHERE b.problems <> '')) END
      FROM bad AS b;
$$;

-- The RLS check: as role authenticated with the JWT claims PostgREST sets
-- for a customer, each swapped table with row level security shows that
-- customer exactly their own rows.  The customers: the non-admin with the
-- most payments, and the first user the launch created who has some.
CREATE FUNCTION migrate_ext.verify_customer_view(m migrate_ext.migrations)
RETURNS TABLE (check_name text, subject text, ok boolean, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_role CONSTANT text := current_setting('role');
    v_claims CONSTANT text := current_setting('request.jwt.claims', true);
    c record;
    t text;
    own bigint;
    seen bigint;
    others bigint;
BEGIN
    FOR c IN SELECT * FROM (SELECT DISTINCT ON (x.id) x.id, x.email, x.who, x.o FROM (
                 (SELECT p.id, p.email, 'customer with the most payments' AS who, 1 AS o
                    FROM public.unified_profiles AS p JOIN public.transactions AS tr ON tr.user_id = p.id
                   WHERE NOT p.is_admin GROUP BY p.id, p.email ORDER BY count(*) DESC, p.email LIMIT 1)
                 UNION ALL
                 (SELECT p.id, p.email, 'customer created by the launch', 2
                    FROM public.unified_profiles AS p
                   WHERE p.id = ANY (m.created_users) AND NOT p.is_admin
                     AND EXISTS (SELECT 1 FROM public.transactions AS tr WHERE tr.user_id = p.id)
                   ORDER BY p.email LIMIT 1)) AS x ORDER BY x.id, x.o) AS y ORDER BY y.o LOOP
        FOR t IN SELECT r.relname FROM pg_class AS r
                  WHERE r.relnamespace = 'public'::regnamespace AND r.relname = ANY (migrate_ext.swapped_tables())
                    AND r.relrowsecurity
                    AND EXISTS (SELECT 1 FROM pg_attribute AS a WHERE a.attrelid = r.oid AND a.attname = 'user_id')
                  ORDER BY r.relname LOOP
            EXECUTE format('SELECT count(*) FROM public.%I WHERE user_id = $1', t) INTO own USING c.id;
            check_name := 'customer view';
            subject := format('public.%s as %s', t, c.who);
            BEGIN
                PERFORM set_config('role', 'authenticated', true);
                PERFORM set_config('request.jwt.claims', json_build_object('sub', c.id, 'role', 'authenticated', 'email', c.email)::text, true);
                EXECUTE format('SELECT count(*), count(*) FILTER (WHERE user_id IS DISTINCT FROM $1) FROM public.%I', t)
                   INTO seen, others USING c.id;
                PERFORM set_config('role', v_role, true);
                PERFORM set_config('request.jwt.claims', coalesce(v_claims, ''), true);
                ok := seen = own AND others = 0;
                detail := format('%s (%s) sees %s rows, %s of them of other users; owns %s', c.email, c.id, seen, others, own);
            EXCEPTION WHEN OTHERS THEN
                ok := false;
                detail := format('%s (%s) cannot read it: %s', c.email, c.id, SQLERRM);
            END;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END;
$$;

-- The migration verify_production() judges: the latest one launched or
-- rolled back; an error when there is none
CREATE FUNCTION migrate_ext.latest_migration() RETURNS migrate_ext.migrations
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations;
BEGIN
    SELECT * INTO m FROM migrate_ext.migrations AS g ORDER BY g.launched_at DESC, g.backup_timestamp DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no migration was launched yet: there is nothing to verify'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Run it after SELECT migrate_ext.launch_clean_production(); or after a rollback.';
    END IF;
    RETURN m;
END;
$$;

-- After a launch (or a rollback): one row per check that proves the
-- application works; every row must say ok
CREATE FUNCTION migrate_ext.verify_production()
RETURNS TABLE (check_name text, subject text, ok boolean, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations := migrate_ext.latest_migration();
BEGIN
    check_name := 'migration';
    subject := m.backup_timestamp;
    ok := true;
    detail := format('judging production after %s %s', CASE WHEN m.state = 'rolled_back' THEN 'the rollback of' ELSE 'launch' END,
                     m.backup_timestamp);
    RETURN NEXT;
    RETURN QUERY SELECT * FROM migrate_ext.verify_catalog(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_figures(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_data(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_auth_users(m);
    RETURN QUERY SELECT * FROM migrate_ext.verify_customer_view(m);
END;
$$;
COMMENT ON FUNCTION migrate_ext.verify_production() IS
    'After a launch or a rollback: catalog as recorded, figures as staged, buyers enrolled, is_student, new auth users, and what a customer sees through RLS; one row per check';

-- The statements that delete the rows of a backup that reference a row of
-- another table (e.g. an auth user), children first, so that row can be
-- deleted while the backup exists; key is the referenced row's value
CREATE FUNCTION migrate_ext.backup_delete_statements(backup_timestamp text, referenced regclass, key text)
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH fk AS (
        SELECT k.conrelid, k.confrelid, a.attname AS col, fa.attname AS refcol, k.confdeltype
          FROM pg_constraint AS k
          JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
          JOIN pg_attribute AS fa ON fa.attrelid = k.confrelid AND fa.attnum = k.confkey[1]
         WHERE k.contype = 'f' AND cardinality(k.conkey) = 1
           AND k.conrelid IN (SELECT c.oid FROM pg_class AS c
                               WHERE c.relnamespace = to_regnamespace(migrate_ext.backup_schema(backup_timestamp)))),
    direct AS (SELECT * FROM fk WHERE fk.confrelid = referenced AND fk.confdeltype IN ('a', 'r'))
    SELECT format('DELETE FROM %s WHERE %I IN (SELECT %I FROM %s WHERE %I = %L);',
                  c.conrelid::regclass, c.col, c.refcol, d.conrelid::regclass, d.col, key)
      FROM direct AS d JOIN fk AS c ON c.confrelid = d.conrelid AND c.conrelid <> d.conrelid
    UNION ALL
    SELECT format('DELETE FROM %s WHERE %I = %L;', d.conrelid::regclass, d.col, key) FROM direct AS d
    UNION ALL
    SELECT format('DELETE FROM %s WHERE %I = %L;', referenced, (SELECT d.refcol FROM direct AS d LIMIT 1), key)
     WHERE EXISTS (SELECT 1 FROM direct);
$$;

-- For a backup in place: the tables whose rows it still references, and
-- how to delete such a row now
CREATE FUNCTION migrate_ext.backup_references(backup_timestamp text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('Backup schema %s keeps foreign keys to %s: while it exists, deleting a row they reference fails '
                  '(or, for ON DELETE SET NULL, also updates the backup). To delete such a row now, drop the backup '
                  '(SELECT migrate_ext.drop_backup(%L); the launch can then no longer be rolled back), or first delete '
                  'the backup''s rows that reference it; for an auth user: %s',
                  migrate_ext.backup_schema(backup_timestamp),
                  coalesce((SELECT string_agg(DISTINCT k.confrelid::regclass::text, ', ')
                              FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.conrelid
                              JOIN pg_class AS p ON p.oid = k.confrelid
                             WHERE k.contype = 'f'
                               AND c.relnamespace = to_regnamespace(migrate_ext.backup_schema(backup_timestamp))
                               AND p.relnamespace IS DISTINCT FROM c.relnamespace), 'no other table'),
                  backup_timestamp,
                  coalesce((SELECT string_agg(s, ' ')
                              FROM migrate_ext.backup_delete_statements(backup_timestamp, 'auth.users', '<user id>') AS s),
                           'nothing to delete first'));
$$;
