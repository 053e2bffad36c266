-------------------------------------------------------------------------------
-- The migrations log: one row per launch, its backup schema and state;
-- finding a migration a caller names; counting the swapped tables
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

-- The backup's name: the launch time in UTC, one per second.  A launch in
-- the same second as an earlier one waits for the next second; a name
-- taken by a schema no launch made (somebody could create the next
-- seconds' names in advance) is refused after a few seconds, not waited out
CREATE FUNCTION migrate_ext.new_backup_timestamp() RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ts text;
    squatter text;
BEGIN
    FOR attempt IN 1..15 LOOP
        ts := to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY_MM_DD_HH24_MI_SS');
        SELECT format('schema %s (owned by %s)', n.nspname, n.nspowner::regrole) INTO squatter
          FROM pg_namespace AS n WHERE n.nspname = migrate_ext.backup_schema(ts);
        IF squatter IS NULL AND NOT EXISTS (SELECT 1 FROM migrate_ext.migrations AS m WHERE m.backup_timestamp = ts) THEN
            RETURN ts;
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
    RAISE EXCEPTION 'launch refused: no free backup name; the last one tried is taken by %', coalesce(squatter, 'an earlier migration')
          USING ERRCODE = 'duplicate_schema',
                HINT = 'Nothing was changed. Schemas named migrate_backup_<timestamp> are the launch''s own: drop the ones no migration made (SELECT * FROM migrate_ext.migration_status(); lists the migrations), then launch again.';
END;
$$;

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

-- Row counts of the swapped tables of a schema, as jsonb; with
-- created_since, only the rows created since then, with created_before,
-- only those created before then or at an unknown time (by their created
-- column)
CREATE FUNCTION migrate_ext.table_counts(schema_name text, created_since timestamptz DEFAULT NULL,
                                         created_before timestamptz DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    n bigint;
    counts jsonb := '{}'::jsonb;
BEGIN
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I WHERE ($1 IS NULL OR %I >= $1) AND ($2 IS NULL OR %I IS NULL OR %I < $2)',
                       schema_name, t, migrate_ext.created_column(t), migrate_ext.created_column(t), migrate_ext.created_column(t))
           INTO n USING created_since, created_before;
        counts := counts || jsonb_build_object(t, n);
    END LOOP;
    RETURN counts;
END;
$$;

-- Row counts of the swapped tables, in swapped_tables() order, for people:
-- "3 profiles, 2 transactions and 1 enrollments" with nouns and
-- last_separator ' and ', or "3, 2, 1"
CREATE FUNCTION migrate_ext.counts_text(counts jsonb, nouns boolean, last_separator text DEFAULT ', ') RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(CASE WHEN u.i = 1 THEN '' WHEN u.i = cardinality(migrate_ext.swapped_tables()) THEN last_separator ELSE ', ' END
                      || format('%s', counts->u.t)
                      || CASE WHEN nouns THEN ' ' || CASE u.t WHEN 'unified_profiles' THEN 'profiles' ELSE u.t END ELSE '' END,
                      '' ORDER BY u.i)
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS u(t, i);
$$;
