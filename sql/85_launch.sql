-------------------------------------------------------------------------------
-- launch_clean_production(), rollback_migration(), migration_status(),
-- drop_backup() (DESIGN §5, §6): refusals, the migrations log, and the swap
-- engine run forward (staging in, production to a backup) or backward
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.migrations (
    backup_timestamp  text PRIMARY KEY CHECK (backup_timestamp ~ '^\d{4}(_\d{2}){5}$'),
    state             text NOT NULL CHECK (state IN ('launched', 'rolled_back', 'dropped')),
    launched_at       timestamptz NOT NULL,
    rolled_back_at    timestamptz,
    dropped_at        timestamptz,
    validation_run_id bigint,
    counts            jsonb NOT NULL,
    created_users     uuid[] NOT NULL DEFAULT '{}',
    launched_by       name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE migrate_ext.migrations IS
    'One row per launch: its backup schema migrate_backup_<backup_timestamp>, its state, row counts and lock time, and the auth users it created';
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.migrations', '');

-- The name of the backup schema of a migration
CREATE FUNCTION migrate_ext.backup_schema(backup_timestamp text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT 'migrate_backup_' || backup_timestamp;
END;

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
                 FROM pg_class AS c
                WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
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

    FOR problem IN SELECT format('%s %s', r.object, r.reason) FROM migrate_ext.swap_refusals() AS r LOOP
        hint := 'The swap fails closed on what it cannot carry: change or drop what is listed, launch, then re-create it.';
        RETURN NEXT;
    END LOOP;
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

-- Keep syncs, validations and other launches or rollbacks out until this
-- transaction ends (the lock validate_and_prepare_clean_data() and
-- sync_raw_api_data() take too); fail at once if one is running
CREATE FUNCTION migrate_ext.lock_out_other_runs() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(1835624306, 1) THEN
        RAISE EXCEPTION 'a sync, a validation, or another launch or rollback is running'
              USING ERRCODE = 'lock_not_available',
                    HINT = 'Nothing was changed. Wait for it to finish; SELECT * FROM migrate_ext.migration_status(); shows what was done.';
    END IF;
END;
$$;

-- Run a swap plan: prepare, lock, swap, each statement in turn; on any
-- error everything is rolled back and the error names the step and its
-- statement.  Returns the lock hold time and attempts.
CREATE FUNCTION migrate_ext.run_swap(incoming text, outgoing_to text, what text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    per_attempt text;
    caller_timeout CONSTANT text := current_setting('lock_timeout');
    step record;
    current record;
    attempts integer;
    locked_at timestamptz;
    v_state text;
    v_message text;
    v_detail text;
    v_hint text;
BEGIN
    PERFORM migrate_ext.load_settings();
    per_attempt := current_setting('migrate_ext.lock_timeout');
    BEGIN
        -- no statement of the swap may queue for a lock longer than one attempt
        PERFORM set_config('lock_timeout', per_attempt, true);
        FOR step IN SELECT * FROM migrate_ext.swap_plan(incoming, outgoing_to) ORDER BY 1 LOOP
            current := step;
            IF step.phase = 'lock' THEN
                EXECUTE step.statement INTO attempts;
                locked_at := clock_timestamp();
                PERFORM set_config('lock_timeout', per_attempt, true);
            ELSE
                EXECUTE step.statement;
            END IF;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
        IF current.phase = 'lock' THEN
            RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail, HINT = v_hint;
        END IF;
        RAISE EXCEPTION '% failed at step % (%): %', what, current.step, current.phase, v_message
              USING ERRCODE = v_state,
                    DETAIL = concat_ws(E'\n', nullif(v_detail, ''), 'Statement: ' || current.statement),
                    HINT = concat_ws(' ', 'Nothing was changed: the whole ' || what || ' was rolled back.', nullif(v_hint, ''));
    END;
    PERFORM set_config('lock_timeout', caller_timeout, true);
    RETURN jsonb_build_object('lock_attempts', attempts,
                              'lock_ms', round(extract(epoch FROM clock_timestamp() - locked_at) * 1000, 1));
END;
$$;

-- Create a schema nobody but its owner can use
CREATE FUNCTION migrate_ext.create_private_schema(name text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE SCHEMA %I', name);
    PERFORM migrate_ext.set_acl('SCHEMA', quote_ident(name), NULL);
END;
$$;

-- Row counts of the swapped tables of a schema, as jsonb
CREATE FUNCTION migrate_ext.table_counts(schema_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    n bigint;
    counts jsonb := '{}';
BEGIN
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I', schema_name, t) INTO n;
        counts := counts || jsonb_build_object(t, n);
    END LOOP;
    RETURN counts;
END;
$$;

-- The swap: staging becomes production in one transaction, production is
-- kept in migrate_backup_<timestamp>; dry_run returns the plan instead
CREATE FUNCTION migrate_ext.launch_clean_production(dry_run boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ts text;
    v_schema text;
    v_problems text;
    v_first_problem text;
    v_first_hint text;
    v_users uuid[];
    v_created bigint;
    v_before jsonb;
    v_after jsonb;
    v_lock jsonb;
    v_run bigint;
    v_record jsonb;
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must be true or false, not NULL'
              USING ERRCODE = 'null_value_not_allowed', HINT = 'SELECT migrate_ext.launch_clean_production(dry_run => true); shows the plan.';
    END IF;
    PERFORM migrate_ext.check_fresh_transaction('launch_clean_production()');
    PERFORM migrate_ext.lock_out_other_runs();

    -- every problem in the detail, the first one in the message and hint
    SELECT string_agg('- ' || r.problem, E'\n' ORDER BY r.n), (array_agg(r.problem ORDER BY r.n))[1],
           (array_agg(r.hint ORDER BY r.n))[1]
      INTO v_problems, v_first_problem, v_first_hint
      FROM migrate_ext.launch_refusals() WITH ORDINALITY AS r(problem, hint, n);
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION 'launch refused: %', v_first_problem
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    DETAIL = E'Everything that stops the launch:\n' || v_problems,
                    HINT = 'Nothing was changed. ' || v_first_hint;
    END IF;

    -- the backup's name is the launch time in UTC, one per second: a launch
    -- in the same second as an earlier one waits for the next
    LOOP
        v_ts := to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY_MM_DD_HH24_MI_SS');
        EXIT WHEN NOT EXISTS (SELECT 1 FROM migrate_ext.migrations AS m WHERE m.backup_timestamp = v_ts)
              AND to_regnamespace(migrate_ext.backup_schema(v_ts)) IS NULL;
        PERFORM pg_sleep(0.2);
    END LOOP;
    v_schema := migrate_ext.backup_schema(v_ts);
    v_users := ARRAY(SELECT s.id FROM migrate_staging.auth_users AS s
                      WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id) ORDER BY s.id);

    IF dry_run THEN
        RETURN format(E'-- dry run of launch %s: nothing was changed\n', v_ts)
            || format(E'SELECT migrate_ext.create_private_schema(%L);\n', v_schema)
            || format(E'SELECT migrate_ext.create_auth_users();  -- %s new auth users\n', cardinality(v_users))
            || (SELECT string_agg(format('%s;  -- %s %s', p.statement, p.phase, p.step), E'\n' ORDER BY p.step)
                  FROM migrate_ext.swap_plan('migrate_staging', v_schema) AS p)
            || format(E'\nINSERT INTO migrate_ext.migrations ... VALUES (%L, ''launched'', ...);', v_ts);
    END IF;

    v_before := migrate_ext.table_counts('public');
    v_after := migrate_ext.table_counts('migrate_staging');
    PERFORM migrate_ext.create_private_schema(v_schema);
    v_created := migrate_ext.create_auth_users();
    IF v_created <> cardinality(v_users) THEN
        RAISE EXCEPTION 'expected to create % auth users, created %', cardinality(v_users), v_created
              USING ERRCODE = 'internal_error', HINT = 'Nothing was changed. Somebody changed auth.users during the launch; try again.';
    END IF;
    v_record := migrate_ext.launch_record();  -- what verify_production() compares against
    v_lock := migrate_ext.run_swap('migrate_staging', v_schema, 'launch');

    SELECT max(run_id) INTO v_run FROM migrate_ext.validation_runs;
    INSERT INTO migrate_ext.migrations (backup_timestamp, state, launched_at, validation_run_id, counts, created_users)
    VALUES (v_ts, 'launched', now(), v_run,
            jsonb_build_object('production', v_after, 'backup', v_before, 'auth_users_created', v_created) || v_lock || v_record,
            v_users);
    RETURN format('SUCCESS: launched %s. Production now has %s profiles, %s transactions and %s enrollments '
                  '(before: %s, %s, %s); %s auth users created. The previous tables are in schema %s. '
                  'Locks held %s ms. Now check the application: SELECT * FROM migrate_ext.verify_production(); '
                  'To undo: SELECT migrate_ext.rollback_migration(%L); %s',
                  v_ts, v_after->'unified_profiles', v_after->'transactions', v_after->'enrollments',
                  v_before->'unified_profiles', v_before->'transactions', v_before->'enrollments',
                  v_created, v_schema, v_lock->'lock_ms', v_ts, migrate_ext.backup_references(v_ts));
END;
$$;
COMMENT ON FUNCTION migrate_ext.launch_clean_production(boolean) IS
    'Swap staging into production in one transaction, production kept in migrate_backup_<timestamp>; dry_run => true returns every statement and changes nothing';

-- Check a backup timestamp given by a caller and return its migration,
-- locked; every problem is a clear error
CREATE FUNCTION migrate_ext.find_migration(backup_timestamp text) RETURNS migrate_ext.migrations
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations;
BEGIN
    IF backup_timestamp IS NULL OR backup_timestamp !~ '^\d{4}(_\d{2}){5}$' THEN
        RAISE EXCEPTION 'malformed backup timestamp %', coalesce(quote_literal(left(backup_timestamp, 64)), 'NULL')
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Nothing was changed. Give the timestamp launch_clean_production() returned, like 2026_11_26_15_46_01; SELECT * FROM migrate_ext.migration_status(); lists them.';
    END IF;
    SELECT * INTO m FROM migrate_ext.migrations AS g WHERE g.backup_timestamp = find_migration.backup_timestamp FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no migration was launched at %', backup_timestamp
              USING ERRCODE = 'undefined_object',
                    HINT = 'Nothing was changed. SELECT * FROM migrate_ext.migration_status(); lists the launched migrations.';
    END IF;
    IF m.state = 'rolled_back' THEN
        RAISE EXCEPTION 'migration % was already rolled back at %', backup_timestamp, m.rolled_back_at
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Nothing was changed. Its tables are in migrate_staging (or were rebuilt since); launch again to retry.';
    END IF;
    IF m.state = 'dropped' THEN
        RAISE EXCEPTION 'the backup of migration % was dropped at %', backup_timestamp, m.dropped_at
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Nothing was changed. A dropped backup cannot be restored.';
    END IF;
    RETURN m;
END;
$$;

-- Swap a backup back into production; production goes to migrate_staging
CREATE FUNCTION migrate_ext.rollback_migration(backup_timestamp text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations;
    v_schema text;
    v_later text;
    v_late jsonb := '{}';
    v_before jsonb;
    v_after jsonb;
    v_lock jsonb;
    t text;
    n bigint;
    v_users bigint;
BEGIN
    m := migrate_ext.find_migration(backup_timestamp);
    PERFORM migrate_ext.check_fresh_transaction('rollback_migration()');
    PERFORM migrate_ext.lock_out_other_runs();
    SELECT string_agg(g.backup_timestamp, ', ' ORDER BY g.backup_timestamp) INTO v_later
      FROM migrate_ext.migrations AS g WHERE g.state = 'launched' AND g.launched_at > m.launched_at;
    IF v_later IS NOT NULL THEN
        RAISE EXCEPTION 'migration % cannot be rolled back while a later launch (%) is in place', m.backup_timestamp, v_later
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Nothing was changed. Roll back the later migrations first, newest first.';
    END IF;
    v_schema := migrate_ext.backup_schema(m.backup_timestamp);
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        IF to_regclass(format('%I.%I', v_schema, t)) IS NULL THEN
            RAISE EXCEPTION 'backup table %.% is missing', v_schema, t
                  USING ERRCODE = 'undefined_table',
                        HINT = 'Nothing was changed. The backup was changed by hand; restore it from a dump.';
        END IF;
        IF to_regclass(format('migrate_staging.%I', t)) IS NOT NULL THEN
            RAISE EXCEPTION 'migrate_staging.% exists: production cannot be moved back to staging', t
                  USING ERRCODE = 'duplicate_table',
                        HINT = 'Nothing was changed. It was built after the launch by validate_and_prepare_clean_data(); drop it (DROP TABLE migrate_staging.unified_profiles, migrate_staging.transactions, migrate_staging.enrollments;) and roll back again.';
        END IF;
    END LOOP;
    IF to_regnamespace('migrate_staging') IS NULL THEN
        PERFORM migrate_ext.create_private_schema('migrate_staging');
    END IF;

    -- what was written after the launch stays with the launched tables
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format('SELECT count(*) FROM public.%I WHERE %I >= $1', t, migrate_ext.created_column(t)) INTO n USING m.launched_at;
        v_late := v_late || jsonb_build_object(t, n);
    END LOOP;
    SELECT count(*) INTO v_users FROM auth.users AS u WHERE u.id = ANY (m.created_users);

    v_before := migrate_ext.table_counts('public');
    v_after := migrate_ext.table_counts(v_schema);
    v_lock := migrate_ext.run_swap(v_schema, 'migrate_staging', 'rollback');
    EXECUTE format('DROP SCHEMA %I', v_schema);

    UPDATE migrate_ext.migrations AS g SET state = 'rolled_back', rolled_back_at = now(),
           counts = g.counts || jsonb_build_object('rollback', jsonb_build_object('written_after_launch', v_late) || v_lock)
     WHERE g.backup_timestamp = m.backup_timestamp;
    RAISE NOTICE 'rows created after the launch (kept in migrate_staging, not in production): % profiles, % transactions, % enrollments',
                 v_late->'unified_profiles', v_late->'transactions', v_late->'enrollments'
          USING HINT = 'They stay in the tables now in migrate_staging; a new launch brings them back.';
    RAISE NOTICE '% auth users created by the launch are kept', v_users
          USING HINT = format('Their ids: SELECT unnest(created_users) FROM migrate_ext.migrations WHERE backup_timestamp = %L;', m.backup_timestamp);
    RETURN format('SUCCESS: rolled back %s. Production again has %s profiles, %s transactions and %s enrollments '
                  '(launched: %s, %s, %s, now in migrate_staging for a retry; %s, %s and %s of them created after the launch). '
                  '%s auth users created by the launch are kept. Locks held %s ms.',
                  m.backup_timestamp, v_after->'unified_profiles', v_after->'transactions', v_after->'enrollments',
                  v_before->'unified_profiles', v_before->'transactions', v_before->'enrollments',
                  v_late->'unified_profiles', v_late->'transactions', v_late->'enrollments', v_users, v_lock->'lock_ms');
END;
$$;
COMMENT ON FUNCTION migrate_ext.rollback_migration(text) IS
    'Swap the backup of a launch back into production; the launched tables go to migrate_staging, kept for a retry';

-- Drop one backup, never with CASCADE, once nothing outside it depends on it
CREATE FUNCTION migrate_ext.drop_backup(backup_timestamp text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations;
    v_schema text;
BEGIN
    m := migrate_ext.find_migration(backup_timestamp);
    v_schema := migrate_ext.backup_schema(m.backup_timestamp);
    IF to_regnamespace(v_schema) IS NULL THEN
        RAISE EXCEPTION 'backup schema % is missing', v_schema
              USING ERRCODE = 'undefined_schema', HINT = 'Nothing was changed. It was dropped by hand.';
    END IF;
    PERFORM migrate_ext.check_swap_invariant(v_schema);
    EXECUTE format('DROP TABLE %s',
                   (SELECT string_agg(format('%I.%I', v_schema, t), ', ') FROM unnest(migrate_ext.swapped_tables()) AS t
                     WHERE to_regclass(format('%I.%I', v_schema, t)) IS NOT NULL));
    EXECUTE format('DROP SCHEMA %I', v_schema);
    UPDATE migrate_ext.migrations AS g SET state = 'dropped', dropped_at = now() WHERE g.backup_timestamp = m.backup_timestamp;
    RETURN format('SUCCESS: dropped backup %s (schema %s). Migration %s can no longer be rolled back.',
                  m.backup_timestamp, v_schema, m.backup_timestamp);
END;
$$;
COMMENT ON FUNCTION migrate_ext.drop_backup(text) IS
    'Drop the backup schema of a launch (plain DROP, never CASCADE); afterwards that launch cannot be rolled back';

-- How long ago a moment was, for people: "12 s ago", "5 min ago", "3 days ago"
CREATE FUNCTION migrate_ext.time_ago(moment timestamptz) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN s < 120 THEN s || ' s ago'
                WHEN s < 7200 THEN s / 60 || ' min ago'
                WHEN s < 172800 THEN s / 3600 || ' h ago'
                ELSE s / 86400 || ' days ago' END
      FROM (SELECT greatest(extract(epoch FROM now() - moment), 0)::bigint AS s) AS x;
$$;

-- Where things stand: migrations and their backups, the last sync and
-- validation, and whether staging could be launched now
CREATE FUNCTION migrate_ext.migration_status() RETURNS TABLE (item text, state text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM migrate_ext.migrations ORDER BY backup_timestamp DESC LOOP
        item := 'migration ' || r.backup_timestamp;
        state := r.state;
        detail := format('launched %s by %s; production then had %s profiles, %s transactions, %s enrollments; %s auth users created',
                         migrate_ext.time_ago(r.launched_at), r.launched_by,
                         r.counts->'production'->'unified_profiles', r.counts->'production'->'transactions',
                         r.counts->'production'->'enrollments', r.counts->'auth_users_created');
        IF r.state = 'launched' THEN
            detail := detail || format('. Backup schema %s keeps the previous tables (%s profiles, %s transactions, %s enrollments). '
                                       'Roll back with SELECT migrate_ext.rollback_migration(%L); %s',
                                       migrate_ext.backup_schema(r.backup_timestamp),
                                       r.counts->'backup'->'unified_profiles', r.counts->'backup'->'transactions',
                                       r.counts->'backup'->'enrollments',
                                       r.backup_timestamp, migrate_ext.backup_references(r.backup_timestamp));
        ELSIF r.state = 'rolled_back' THEN
            detail := detail || format('; rolled back %s', migrate_ext.time_ago(r.rolled_back_at));
        ELSE
            detail := detail || format('; backup dropped %s', migrate_ext.time_ago(r.dropped_at));
        END IF;
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT DISTINCT ON (s.source) s.* FROM migrate_ext.sync_runs AS s ORDER BY s.source, s.run_id DESC LOOP
        item := 'last sync of ' || r.source;
        state := r.status;
        detail := format('run %s, %s: %s fetched, %s inserted, %s updated, %s rejected%s', r.run_id,
                         migrate_ext.time_ago(r.started_at), r.fetched, r.inserted, r.updated, r.rejected,
                         coalesce('; ' || r.error, ''));
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT * FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1 LOOP
        item := 'last validation';
        state := CASE WHEN r.errors > 0 THEN 'errors' ELSE 'ok' END;
        detail := format('run %s, %s, from sync run %s: %s errors, %s warnings', r.run_id,
                         migrate_ext.time_ago(r.started_at), r.sync_run_id, r.errors, r.warnings);
        RETURN NEXT;
    END LOOP;
    item := 'staging';
    SELECT string_agg(p.problem, '; ') INTO detail FROM migrate_ext.launch_refusals() AS p;
    state := CASE WHEN detail IS NULL THEN 'ready' ELSE 'not ready' END;
    detail := coalesce(detail, 'launch_clean_production() would go ahead');
    RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION migrate_ext.migration_status() IS
    'Backups and their state, the last sync and validation, and whether staging can be launched';
