-------------------------------------------------------------------------------
-- What stops a launch or a rollback, checked before anything changes:
-- every problem named, with what to do
-------------------------------------------------------------------------------

-- Everything that stops a launch now, with what to do; empty when the
-- launch may go ahead
CREATE FUNCTION migrate_ext.launch_refusals() RETURNS TABLE (problem text, hint text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    n bigint;
    min_rows bigint;
    run record;
    last_sync bigint;
    missing text;
    launched text;
BEGIN
    PERFORM migrate_ext.load_settings();
    min_rows := current_setting('migrate_ext.min_staging_rows')::bigint;
    SELECT string_agg(format('migrate_staging.%s', x.name), ', ') INTO missing
      FROM unnest(migrate_ext.swapped_tables() || '{auth_users}'::text[]) AS x(name)
     WHERE to_regclass(format('migrate_staging.%I', x.name)) IS NULL;
    IF missing IS NOT NULL THEN
        SELECT m.backup_timestamp INTO launched FROM migrate_ext.migrations AS m
         WHERE m.state <> 'rolled_back'
           AND m.validation_run_id = (SELECT max(v.run_id) FROM migrate_ext.validation_runs AS v);
        problem := CASE WHEN launched IS NOT NULL
                        THEN format('there is no staging: the last one was launched as migration %s', launched)
                        ELSE format('there is no staging (%s missing)', missing) END;
        hint := 'Run SELECT * FROM migrate_ext.sync_raw_api_data(); and SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); to build one.';
        RETURN NEXT;
    END IF;
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        CONTINUE WHEN to_regclass(format('migrate_staging.%I', t)) IS NULL;
        EXECUTE format('SELECT count(*) FROM migrate_staging.%I', t) INTO n;
        IF n < min_rows THEN
            problem := format('migrate_staging.%s has %s rows, fewer than migrate_ext.min_staging_rows (%s)', t, n, min_rows);
            hint := 'An empty or truncated staging table would wipe production. Re-sync and re-validate, or lower migrate_ext.min_staging_rows if this is really intended.';
            RETURN NEXT;
        END IF;
        IF (SELECT c.relpersistence FROM pg_class AS c WHERE c.oid = format('migrate_staging.%I', t)::regclass) <> 'p' THEN
            problem := format('migrate_staging.%s is not a permanent logged table', t);
            hint := 'Making it logged would rewrite it under the swap''s locks; rebuild staging with validate_and_prepare_clean_data().';
            RETURN NEXT;
        END IF;
    END LOOP;

    SELECT * INTO run FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;
    IF NOT FOUND THEN
        problem := 'staging was not built by a validation run';
        hint := 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); first.';
        RETURN NEXT;
    ELSE
        IF run.errors > 0 THEN
            problem := format('the last validation (run %s) found %s errors', run.run_id, run.errors);
            hint := format('See SELECT * FROM migrate_ext.validation_issues WHERE run_id = %s AND severity = ''error''; fix them upstream or add exclusions, then validate again.', run.run_id);
            RETURN NEXT;
        END IF;
        SELECT max(s.run_id) INTO last_sync FROM migrate_ext.sync_runs AS s WHERE s.status = 'succeeded';
        IF last_sync IS DISTINCT FROM run.sync_run_id THEN
            problem := format('staging is older than the last sync: it was built from sync run %s, and sync run %s is newer',
                              coalesce(run.sync_run_id::text, 'none'), last_sync);
            hint := 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); again.';
            RETURN NEXT;
        END IF;
        IF run.production_signature IS DISTINCT FROM migrate_ext.production_signature() THEN
            problem := 'the production tables'' definitions changed after staging was built';
            hint := 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); again, so that staging has production''s columns.';
            RETURN NEXT;
        END IF;
    END IF;

    -- the swap moves the production tables and gives their owner the new ones
    FOR run IN SELECT c.relname, c.relowner::regrole AS owner,
                      (SELECT s.relowner FROM pg_class AS s
                        WHERE s.oid = to_regclass(format('migrate_staging.%I', c.relname))) AS staging_owner
                 FROM migrate_ext.swapped_relations() AS p JOIN pg_class AS c ON c.oid = p.rel
                ORDER BY c.relname LOOP
        IF NOT pg_has_role(current_user, run.owner, 'USAGE') THEN
            problem := format('public.%s is owned by %s, and %s is not a member of that role', run.relname, run.owner, current_user);
            hint := 'Run the launch as the owner of the production tables (postgres on Supabase).';
            RETURN NEXT;
        ELSIF run.staging_owner IS DISTINCT FROM run.owner::oid AND NOT has_schema_privilege(run.owner, 'public', 'CREATE') THEN
            problem := format('public.%s is owned by %s, which cannot own the new table: it lacks CREATE on schema public', run.relname, run.owner);
            hint := format('Grant it for the launch (GRANT CREATE ON SCHEMA public TO %s;), or make postgres the table''s owner.', run.owner);
            RETURN NEXT;
        END IF;
    END LOOP;

    -- something built over staging (a comparison view, say) would be left
    -- behind by the swap, or make it fail half-way
    FOR problem IN SELECT format('%s depends on a table of migrate_staging, which the launch moves into public', o)
                     FROM migrate_ext.outside_dependents('migrate_staging') AS o LOOP
        hint := 'Drop it before the launch and create it again afterwards over public.<table>.';
        RETURN NEXT;
    END LOOP;
    missing := migrate_ext.foreign_objects('migrate_staging', migrate_ext.staging_tables());
    IF missing IS NOT NULL THEN
        problem := format('schema migrate_staging holds objects migrate_ext did not put there: %s', missing);
        hint := 'They would be left behind, or read the new tables; move or drop them, then validate again.';
        RETURN NEXT;
    END IF;

    FOR problem IN SELECT format('%s %s', r.object, r.reason) FROM migrate_ext.swap_refusals() AS r LOOP
        hint := 'The swap fails closed on what it cannot carry: change or drop what is listed, launch, then re-create it.';
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Everything that stops rolling back migration backup_timestamp now, with
-- what to do; empty when the rollback may go ahead
CREATE FUNCTION migrate_ext.rollback_refusals(backup_timestamp text) RETURNS TABLE (problem text, hint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.problem, r.hint
      FROM (SELECT 0::bigint AS i, 0 AS k,
                   format('migration %s cannot be rolled back while a later launch (%s) is in place', m.backup_timestamp,
                          string_agg(g.backup_timestamp, ', ' ORDER BY g.backup_timestamp)) AS problem,
                   'Roll back the later migrations first, newest first.' AS hint
              FROM migrate_ext.migrations AS m
              JOIN migrate_ext.migrations AS g ON g.state = 'launched' AND g.launched_at > m.launched_at
             WHERE m.backup_timestamp = rollback_refusals.backup_timestamp
             GROUP BY m.backup_timestamp
            UNION ALL
            SELECT t.i, x.k, x.problem, x.hint
              FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, i)
             CROSS JOIN LATERAL (
                   SELECT 1, format('backup table %s.%s is missing', migrate_ext.backup_schema(backup_timestamp), t.name),
                          'The backup was changed by hand; restore it from a dump.'
                    WHERE to_regclass(format('%I.%I', migrate_ext.backup_schema(backup_timestamp), t.name)) IS NULL
                   UNION ALL
                   SELECT 2, format('migrate_staging.%s exists: production cannot be moved back to staging', t.name),
                          'It was built after the launch by validate_and_prepare_clean_data(); drop it (DROP TABLE migrate_staging.unified_profiles, migrate_staging.transactions, migrate_staging.enrollments;) and roll back again.'
                    WHERE to_regclass(format('migrate_staging.%I', t.name)) IS NOT NULL) AS x(k, problem, hint)
            UNION ALL
            SELECT 8, 0, format('%s depends on a table of the backup, which the rollback moves into public', o),
                   'Drop it before the rollback and create it again afterwards over public.<table>.'
              FROM migrate_ext.outside_dependents(migrate_ext.backup_schema(backup_timestamp)) AS o
            UNION ALL
            SELECT 9, 0, format('%s %s', d.object, d.reason),
                   'The swap fails closed on what it cannot carry: change or drop what is listed, roll back, then re-create it.'
              FROM migrate_ext.swap_refusals() AS d) AS r
     ORDER BY r.i, r.k;
$$;
COMMENT ON FUNCTION migrate_ext.rollback_refusals(text) IS
    'Everything that stops rolling back a migration now; rollback_migration() refuses while this returns rows';

-- What stops a launch (backup_timestamp NULL) or the rollback of a
-- migration: launch_refusals() or rollback_refusals()
CREATE FUNCTION migrate_ext.swap_refusal_list(what text, backup_timestamp text) RETURNS TABLE (problem text, hint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.problem, r.hint FROM migrate_ext.launch_refusals() AS r WHERE what = 'launch'
    UNION ALL
    SELECT r.problem, r.hint FROM migrate_ext.rollback_refusals(backup_timestamp) AS r WHERE what = 'rollback';
$$;

-- Refuse a launch or rollback, naming every problem and changing nothing,
-- when anything stops it
CREATE FUNCTION migrate_ext.check_swap_refusals(what text, backup_timestamp text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_problems text;
    v_first_problem text;
    v_first_hint text;
BEGIN
    -- every problem in the detail, the first one in the message and hint
    SELECT string_agg('- ' || r.problem, E'\n' ORDER BY r.n), (array_agg(r.problem ORDER BY r.n))[1],
           (array_agg(r.hint ORDER BY r.n))[1]
      INTO v_problems, v_first_problem, v_first_hint
      FROM migrate_ext.swap_refusal_list(what, backup_timestamp) WITH ORDINALITY AS r(problem, hint, n);
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION '% refused: %', what, v_first_problem
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    DETAIL = format(E'Everything that stops the %s:\n', what) || v_problems,
                    HINT = 'Nothing was changed. ' || v_first_hint;
    END IF;
END;
$$;

-- Refuse to swap in a transaction that already holds locks on the swapped
-- tables: a failed lock attempt could not release them, and sessions
-- would queue behind them for the whole retry time
CREATE FUNCTION migrate_ext.check_fresh_transaction(what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held text;
BEGIN
    SELECT string_agg(DISTINCT l.relation::regclass::text, ', ') INTO held
      FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
       AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
       AND c.relname = ANY (migrate_ext.swapped_tables())
       AND (c.relnamespace IN ('public'::regnamespace, to_regnamespace('migrate_staging'))
            OR c.relnamespace IN (SELECT n.oid FROM pg_namespace AS n WHERE n.nspname LIKE 'migrate\_backup\_%'));
    IF held IS NOT NULL THEN
        RAISE EXCEPTION '% must run before anything else in its transaction touches the tables it swaps (this one holds locks on %)', what, held
              USING ERRCODE = 'active_sql_transaction',
                    HINT = 'Nothing was changed. Run it on its own, or first after BEGIN, so that a failed lock attempt holds nothing that other sessions wait for.';
    END IF;
END;
$$;
