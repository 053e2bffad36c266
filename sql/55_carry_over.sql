-------------------------------------------------------------------------------
-- What staging must carry over so that nothing is lost, from the foreign
-- keys around the swapped tables (swap_foreign_keys(), sql/70)
-------------------------------------------------------------------------------

-- The e-mail of a row of a swapped table, as an SQL expression on alias p
CREATE FUNCTION migrate_ext.email_expression(tbl text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE tbl WHEN 'unified_profiles' THEN 'p.email' WHEN 'transactions' THEN 'p.contact_email'
                    ELSE 'NULL::text' END;
END;

-- Copy into staging the production rows of tbl that match condition (an
-- SQL condition on alias p) and are not there yet; list each as carried
-- over, or as an error when a staging row already holds its unique values
CREATE FUNCTION migrate_ext.carry_rows(run_id bigint, tbl text, condition text, reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format(
        'WITH wanted AS (
             SELECT p.* FROM public.%1$I AS p
              WHERE (%2$s) AND NOT EXISTS (SELECT 1 FROM migrate_staging.%1$I AS s WHERE s.id = p.id)
         ), moved AS (
             INSERT INTO migrate_staging.%1$I SELECT * FROM wanted ON CONFLICT DO NOTHING RETURNING id
         )
         INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
         SELECT $1, CASE WHEN m.id IS NULL THEN ''error'' ELSE ''info'' END,
                CASE WHEN m.id IS NULL THEN ''carry_over_conflict'' ELSE ''carried_over'' END,
                ''production'', p.id::text, %3$s,
                CASE WHEN m.id IS NULL
                     THEN %1$L || '' row kept because '' || $2 || '', but a staging row already has one of its unique values: resolve the duplicate upstream or in production''
                     ELSE %1$L || '' row kept: '' || $2 END
           FROM wanted AS p LEFT JOIN moved AS m ON m.id = p.id',
        tbl, condition, migrate_ext.email_expression(tbl))
    USING run_id, reason;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- Carry over the production rows staging must keep: (a) rows referenced
-- from tables outside the swap, (b) admins, (c) rows created after the sync
-- that staging is built from started; then what those rows reference
CREATE FUNCTION migrate_ext.carry_over(run_id bigint, sync_started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    t text;
    moved bigint;
    pass integer := 0;
BEGIN
    FOR fk IN SELECT * FROM migrate_ext.swap_foreign_keys() AS f
               WHERE f.dst_swapped AND NOT f.src_swapped ORDER BY f.dst_name, f.src_name, f.conname LOOP
        PERFORM migrate_ext.carry_rows(run_id, fk.dst_name,
            format('EXISTS (SELECT 1 FROM %s AS o WHERE (%s) = (%s))', fk.src,
                   (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.src_cols) AS c),
                   (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.dst_cols) AS c)),
            format('%s references it (%s)', fk.src, fk.conname));
    END LOOP;
    PERFORM migrate_ext.carry_rows(run_id, 'unified_profiles', 'p.is_admin', 'it belongs to an admin');
    IF sync_started IS NOT NULL THEN
        FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
            PERFORM migrate_ext.carry_rows(run_id, t,
                format('p.%I > %L::timestamptz', migrate_ext.created_column(t), sync_started),
                'it was created after the sync that staging is built from started');
        END LOOP;
    END IF;
    -- rows that staging rows reference (an enrollment's profile and
    -- transaction), until nothing more moves
    LOOP
        moved := 0;
        pass := pass + 1;
        FOR fk IN SELECT * FROM migrate_ext.swap_foreign_keys() AS f
                   WHERE f.dst_swapped AND f.src_swapped ORDER BY f.dst_name, f.src_name, f.conname LOOP
            moved := moved + migrate_ext.carry_rows(run_id, fk.dst_name,
                format('EXISTS (SELECT 1 FROM migrate_staging.%I AS o WHERE (%s) = (%s))', fk.src_name,
                       (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.src_cols) AS c),
                       (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.dst_cols) AS c)),
                format('a kept %s row references it (%s)', fk.src_name, fk.conname));
        END LOOP;
        EXIT WHEN moved = 0 OR pass >= 10;
    END LOOP;
END;
$$;

-- Report staging rows that would break a foreign key of production, and
-- rows of other tables that the swap would orphan
CREATE FUNCTION migrate_ext.check_staging_references(run_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    target text;
BEGIN
    FOR fk IN SELECT * FROM migrate_ext.swap_foreign_keys() AS f ORDER BY f.src_name, f.conname LOOP
        target := CASE WHEN fk.dst_swapped THEN format('migrate_staging.%I', fk.dst_name) ELSE fk.dst::text END;
        IF fk.src_swapped THEN
            -- a staging row must find what it references (new auth users count)
            EXECUTE format(
                'INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
                 SELECT $1, ''error'', ''foreign_key'', ''staging'', p.id::text, %s, %L
                   FROM migrate_staging.%I AS p
                  WHERE %s
                    AND NOT EXISTS (SELECT 1 FROM %s AS o WHERE (%s) = (%s))
                    %s',
                migrate_ext.email_expression(fk.src_name),
                format('%s: %s (%s) has no match in %s', fk.conname, fk.src_name,
                       array_to_string(fk.src_cols, ', '), fk.dst),
                fk.src_name,
                (SELECT string_agg('p.' || c || ' IS NOT NULL', ' AND ') FROM unnest(fk.src_cols) AS c),
                target,
                (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.dst_cols) AS c),
                (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.src_cols) AS c),
                CASE WHEN fk.dst = 'auth.users'::regclass
                     THEN format('AND NOT EXISTS (SELECT 1 FROM migrate_staging.auth_users AS n WHERE (n.id) = (%s))',
                                 (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.src_cols) AS c))
                     ELSE '' END)
            USING run_id;
        ELSE
            -- a row outside the swap must still find what it references
            EXECUTE format(
                'INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
                 SELECT $1, ''error'', ''would_orphan'', %L, (%s)::text, NULL,
                        %L
                   FROM %s AS p
                  WHERE %s
                    AND NOT EXISTS (SELECT 1 FROM %s AS o WHERE (%s) = (%s))',
                fk.src::text,
                (SELECT string_agg('p.' || c || '::text', ' || '','' || ') FROM unnest(fk.src_cols) AS c),
                format('%s (%s) references a %s row that staging does not have', fk.src, fk.conname, fk.dst_name),
                fk.src,
                (SELECT string_agg('p.' || c || ' IS NOT NULL', ' AND ') FROM unnest(fk.src_cols) AS c),
                target,
                (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.dst_cols) AS c),
                (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.src_cols) AS c))
            USING run_id;
        END IF;
    END LOOP;
END;
$$;
