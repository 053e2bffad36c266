-------------------------------------------------------------------------------
-- The entry points: launch_clean_production(), rollback_migration(),
-- drop_backup().  One perform_swap() runs the swap engine forward (staging
-- in, production to a backup) or backward, after the same refusals.
-------------------------------------------------------------------------------

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
                -- lock_for_swap() gives back the lock_timeout it was called with
                EXECUTE step.statement INTO attempts;
                locked_at := clock_timestamp();
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

-- The SUCCESS message of a launch or rollback: counts before (production
-- as it was) and after (the incoming tables), rows written after the
-- launch (rollback), auth users created or kept, the lock hold time
CREATE FUNCTION migrate_ext.swap_message(what text, ts text, backup_schema text, before jsonb, after jsonb,
                                         late jsonb, users bigint, lock jsonb) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE what
           WHEN 'launch' THEN
               format('SUCCESS: launched %s. Production now has %s (before: %s); %s auth users created. The previous tables are in schema %s. '
                      'Locks held %s ms. Now check the application: SELECT * FROM migrate_ext.verify_production(); '
                      'To undo: SELECT migrate_ext.rollback_migration(%L);',
                      ts, migrate_ext.counts_text(after, true, ' and '), migrate_ext.counts_text(before, false),
                      users, backup_schema, lock->'lock_ms', ts)
           ELSE
               format('SUCCESS: rolled back %s. Production again has %s '
                      '(launched: %s, now in migrate_staging for a retry; %s of them created after the launch). '
                      '%s auth users created by the launch are kept. Locks held %s ms.',
                      ts, migrate_ext.counts_text(after, true, ' and '), migrate_ext.counts_text(before, false),
                      migrate_ext.counts_text(late, false, ' and '), users, lock->'lock_ms')
           END;
$$;

-- The dry run of a launch or rollback: every statement it would run, in
-- order, and nothing changed
CREATE FUNCTION migrate_ext.swap_dry_run(what text, ts text, incoming text, outgoing_to text, new_users integer) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format(E'-- dry run of %s %s: nothing was changed\n', what, ts)
        || CASE WHEN what = 'launch'
                THEN format(E'SELECT migrate_ext.create_private_schema(%L);\n', outgoing_to)
                  || format(E'SELECT migrate_ext.create_auth_users();  -- %s new auth users\n', new_users)
                WHEN to_regnamespace(outgoing_to) IS NULL
                THEN format(E'SELECT migrate_ext.create_private_schema(%L);\n', outgoing_to)
                ELSE '' END
        || (SELECT string_agg(format('%s;  -- %s %s', p.statement, p.phase, p.step), E'\n' ORDER BY p.step)
              FROM migrate_ext.swap_plan(incoming, outgoing_to) AS p)
        || CASE WHEN what = 'launch'
                THEN format(E'\nINSERT INTO migrate_ext.migrations ... VALUES (%L, ''launched'', ...);', ts)
                ELSE format(E'\nDROP SCHEMA %I;\nUPDATE migrate_ext.migrations SET state = ''rolled_back'', ... WHERE backup_timestamp = %L;',
                            incoming, ts) END;
$$;

-- A launch (what = 'launch': staging in, production to a new backup) or
-- the rollback of migration backup_timestamp (its backup in, production to
-- migrate_staging), after the same checks and refusals; dry_run returns
-- every statement instead and changes nothing
CREATE FUNCTION migrate_ext.perform_swap(what text, backup_timestamp text, dry_run boolean) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn CONSTANT text := CASE what WHEN 'launch' THEN 'launch_clean_production' ELSE 'rollback_migration' END;
    m migrate_ext.migrations;
    v_ts text;
    v_schema text;
    v_incoming text;
    v_outgoing text;
    v_new_users uuid[];
    v_users bigint;
    v_before jsonb;
    v_after jsonb;
    v_late jsonb;
    v_lock jsonb;
    v_record jsonb := '{}'::jsonb;
BEGIN
    IF what = 'rollback' THEN
        m := migrate_ext.find_migration(backup_timestamp);
    END IF;
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must be true or false, not NULL'
              USING ERRCODE = 'null_value_not_allowed',
                    HINT = format('SELECT migrate_ext.%s(%sdry_run => true); shows the plan.', fn, quote_literal(m.backup_timestamp) || ', ');
    END IF;
    PERFORM migrate_ext.check_fresh_transaction(fn || '()');
    PERFORM migrate_ext.lock_out_other_runs(fn || '()');
    PERFORM migrate_ext.check_swap_refusals(what, m.backup_timestamp);
    IF what = 'launch' THEN
        v_ts := migrate_ext.new_backup_timestamp();
        v_schema := migrate_ext.backup_schema(v_ts);
        v_incoming := 'migrate_staging';
        v_outgoing := v_schema;
        v_new_users := ARRAY(SELECT s.id FROM migrate_staging.auth_users AS s
                              WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id) ORDER BY s.id);
    ELSE
        v_ts := m.backup_timestamp;
        v_schema := migrate_ext.backup_schema(v_ts);
        v_incoming := v_schema;
        v_outgoing := 'migrate_staging';
    END IF;
    IF dry_run THEN
        RETURN migrate_ext.swap_dry_run(what, v_ts, v_incoming, v_outgoing, cardinality(v_new_users));
    END IF;

    v_before := migrate_ext.table_counts('public');
    v_after := migrate_ext.table_counts(v_incoming);
    IF what = 'launch' THEN
        PERFORM migrate_ext.create_private_schema(v_schema);
        v_users := migrate_ext.create_auth_users();
        IF v_users <> cardinality(v_new_users) THEN
            RAISE EXCEPTION 'expected to create % auth users, created %', cardinality(v_new_users), v_users
                  USING ERRCODE = 'internal_error', HINT = 'Nothing was changed. Somebody changed auth.users during the launch; try again.';
        END IF;
    ELSE
        PERFORM migrate_ext.claim_private_schema('migrate_staging', migrate_ext.staging_tables());
        -- what was written after the launch stays with the launched tables
        v_late := migrate_ext.table_counts('public', m.launched_at);
        SELECT count(*) INTO v_users FROM auth.users AS u WHERE u.id = ANY (m.created_users);
    END IF;
    IF what = 'launch' THEN
        v_record := migrate_ext.launch_record();  -- what verify_production() compares against
    END IF;
    v_lock := migrate_ext.run_swap(v_incoming, v_outgoing, what);

    IF what = 'launch' THEN
        INSERT INTO migrate_ext.migrations (backup_timestamp, state, launched_at, validation_run_id, counts, created_users)
        VALUES (v_ts, 'launched', now(), (SELECT max(v.run_id) FROM migrate_ext.validation_runs AS v),
                jsonb_build_object('production', v_after, 'backup', v_before, 'auth_users_created', v_users) || v_lock || v_record,
                v_new_users);
    ELSE
        EXECUTE format('DROP SCHEMA %I', v_schema);
        UPDATE migrate_ext.migrations AS g SET state = 'rolled_back', rolled_back_at = now(),
               counts = g.counts || jsonb_build_object('rollback', jsonb_build_object('written_after_launch', v_late) || v_lock)
         WHERE g.backup_timestamp = m.backup_timestamp;
        RAISE NOTICE 'rows created after the launch (kept in migrate_staging, not in production): %', migrate_ext.counts_text(v_late, true)
              USING HINT = 'They stay in the tables now in migrate_staging; a new launch brings them back.';
        RAISE NOTICE '% auth users created by the launch are kept', v_users
              USING HINT = format('Their ids: SELECT unnest(created_users) FROM migrate_ext.migrations WHERE backup_timestamp = %L;', m.backup_timestamp);
    END IF;
    -- after a launch, also what the backup still references (sql/87_verify.sql)
    RETURN concat_ws(' ', migrate_ext.swap_message(what, v_ts, v_schema, v_before, v_after, v_late, v_users, v_lock),
                     CASE WHEN what = 'launch' THEN migrate_ext.backup_references(v_ts) END);
END;
$$;

-- The swap: staging becomes production in one transaction, production is
-- kept in migrate_backup_<timestamp>; dry_run returns the plan instead
CREATE FUNCTION migrate_ext.launch_clean_production(dry_run boolean DEFAULT false) RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT migrate_ext.perform_swap('launch', NULL, dry_run);
$$;
COMMENT ON FUNCTION migrate_ext.launch_clean_production(boolean) IS
    'Swap staging into production in one transaction, production kept in migrate_backup_<timestamp>; dry_run => true returns every statement and changes nothing';

-- Swap a backup back into production; production goes to migrate_staging;
-- dry_run returns the plan instead
CREATE FUNCTION migrate_ext.rollback_migration(backup_timestamp text, dry_run boolean DEFAULT false) RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT migrate_ext.perform_swap('rollback', backup_timestamp, dry_run);
$$;
COMMENT ON FUNCTION migrate_ext.rollback_migration(text, boolean) IS
    'Swap the backup of a launch back into production; the launched tables go to migrate_staging, kept for a retry; dry_run => true returns every statement and changes nothing';

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
              USING ERRCODE = 'invalid_schema_name', HINT = 'Nothing was changed. It was dropped by hand.';
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
