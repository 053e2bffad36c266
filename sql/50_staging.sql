-------------------------------------------------------------------------------
-- Staging: validate_and_prepare_clean_data() builds schema migrate_staging
-- from the raw tables and the rules, and writes the validation report.
-- It reads only the raw tables, the rule tables and production; it writes
-- only staging and its own report tables.
-------------------------------------------------------------------------------

-- Refuse to build staging from a configuration that cannot work, before
-- anything is written: missing tables, columns or courses, no sync yet
CREATE FUNCTION migrate_ext.check_configuration() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t FROM unnest(migrate_ext.swapped_tables() || '{courses}'::text[]) AS t
              WHERE to_regclass(format('public.%I', t)) IS NULL LOOP
        RAISE EXCEPTION 'production table public.% is missing', r.t
              USING ERRCODE = 'undefined_table',
                    HINT = 'validate_and_prepare_clean_data() rebuilds public.unified_profiles, transactions and enrollments, and reads public.courses; run it in the application''s database.';
    END LOOP;
    IF to_regclass('auth.users') IS NULL THEN
        RAISE EXCEPTION 'table auth.users is missing'
              USING ERRCODE = 'undefined_table',
                    HINT = 'migrate_ext is built for a Supabase database, whose users live in auth.users.';
    END IF;
    FOR r IN SELECT q.tbl, q.col FROM migrate_ext.required_columns() AS q
              WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                                 WHERE a.attrelid = format('public.%I', q.tbl)::regclass
                                   AND a.attname = q.col AND NOT a.attisdropped)
              ORDER BY 1, 2 LOOP
        RAISE EXCEPTION 'production column public.%.% is missing', r.tbl, r.col
              USING ERRCODE = 'undefined_column',
                    HINT = 'The business rules write this column; restore it, or adapt the rules before migrating.';
    END LOOP;
    FOR r IN SELECT p.code, p.enrollment_course FROM migrate_ext.products AS p
              WHERE p.enrollment_course IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM public.courses AS c WHERE c.title = p.enrollment_course)
              ORDER BY 1 LOOP
        RAISE EXCEPTION 'course "%" of product % does not exist', r.enrollment_course, r.code
              USING ERRCODE = 'foreign_key_violation',
                    HINT = 'Create the course in public.courses, or fix migrate_ext.products.enrollment_course.';
    END LOOP;
    FOR r IN SELECT p.code FROM migrate_ext.products AS p
              WHERE p.enrollment_course IS NOT NULL
                AND (SELECT count(*) FROM public.courses AS c WHERE c.title = p.enrollment_course) > 1 LOOP
        RAISE EXCEPTION 'the course of product % is ambiguous: several courses have that title', r.code
              USING ERRCODE = 'cardinality_violation',
                    HINT = 'Give the courses distinct titles.';
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM migrate_ext.products WHERE description_pattern IS NULL) THEN
        RAISE EXCEPTION 'migrate_ext.products has no fallback product (one with description_pattern NULL)'
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Add one, e.g. INSERT INTO migrate_ext.products (code, transaction_type) VALUES (''Other'', ''Other'');';
    END IF;
    FOR r IN SELECT s.source FROM unnest('{xendit,systemeio}'::text[]) AS s(source)
              WHERE NOT EXISTS (SELECT 1 FROM migrate_ext.sync_runs AS sr
                                 WHERE sr.source = s.source AND sr.status = 'succeeded') LOOP
        RAISE EXCEPTION 'source % has never been synced successfully', r.source
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Run SELECT * FROM migrate_ext.sync_raw_api_data(); first.';
    END LOOP;
END;
$$;

-- Pairs of indexes of two tables with the same definition (duplicates
-- paired in creation order): the staging index and its production name
CREATE FUNCTION migrate_ext.index_pairs(prod regclass, stag regclass)
RETURNS TABLE (staging_name name, prod_name name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH indexes AS (
        SELECT i.indrelid, c.relname, i.indexrelid, i.indisunique, pg_get_indexdef(i.indexrelid) AS full_def,
               -- what precedes the definition proper: the names, quoted as
               -- pg_get_indexdef quotes them (search_path is pg_catalog only)
               format('CREATE %sINDEX %s ON ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                      quote_ident(c.relname)) AS head
          FROM pg_index AS i
          JOIN pg_class AS c ON c.oid = i.indexrelid
         WHERE i.indrelid IN (prod, stag)
    ), defs AS (
        SELECT x.indrelid, x.relname, x.indexrelid,
               CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END ||
               substr(x.full_def, length(x.head) + 1 + length(x.indrelid::regclass::text) + 1
                                  + CASE WHEN substr(x.full_def, length(x.head) + 1, 5) = 'ONLY ' THEN 5 ELSE 0 END) AS def
          FROM indexes AS x
    ), numbered AS (
        SELECT d.*, row_number() OVER (PARTITION BY d.indrelid, d.def ORDER BY d.indexrelid) AS k
          FROM defs AS d
    )
    SELECT s.relname, p.relname
      FROM numbered AS p
      JOIN numbered AS s ON s.def = p.def AND s.k = p.k AND s.indrelid = stag
     WHERE p.indrelid = prod;
$$;

-- Create migrate_staging.<tbl> with production's shape: LIKE ... INCLUDING
-- ALL, then production's index and statistics names, and no privileges for
-- anyone but the owner
CREATE FUNCTION migrate_ext.create_staging_table(tbl text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF to_regclass(format('migrate_staging.%I', tbl)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE migrate_staging.%I', tbl);
    END IF;
    EXECUTE format('CREATE TABLE migrate_staging.%I (LIKE public.%I INCLUDING ALL)', tbl, tbl);

    -- indexes: LIKE names them after their columns; give them production's
    -- names, through temporary names so that no two names ever collide
    FOR r IN SELECT * FROM migrate_ext.index_pairs(format('public.%I', tbl)::regclass,
                                                   format('migrate_staging.%I', tbl)::regclass) LOOP
        EXECUTE format('ALTER INDEX migrate_staging.%I RENAME TO %I', r.staging_name,
                       'mx_tmp_' || md5(r.staging_name));
    END LOOP;
    FOR r IN SELECT * FROM migrate_ext.index_pairs(format('public.%I', tbl)::regclass,
                                                   format('migrate_staging.%I', tbl)::regclass) LOOP
        EXECUTE format('ALTER INDEX migrate_staging.%I RENAME TO %I', r.staging_name, r.prod_name);
    END LOOP;

    -- extended statistics: same, by definition
    FOR r IN
        SELECT s.stxname AS staging_name, p.stxname AS prod_name
          FROM pg_statistic_ext AS p
          JOIN pg_statistic_ext AS s
            ON s.stxrelid = format('migrate_staging.%I', tbl)::regclass
           AND s.stxkeys = p.stxkeys AND s.stxkind = p.stxkind
         WHERE p.stxrelid = format('public.%I', tbl)::regclass
    LOOP
        EXECUTE format('ALTER STATISTICS migrate_staging.%I RENAME TO %I', r.staging_name, r.prod_name);
    END LOOP;

    -- nobody but the owner reads staging (default privileges may have granted more)
    PERFORM migrate_ext.close_table(format('migrate_staging.%I', tbl)::regclass);
END;
$$;
