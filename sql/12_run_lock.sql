-------------------------------------------------------------------------------
-- The run lock: one sync, validation, launch or rollback at a time.  It is
-- a row lock on a table of the extension, so only roles that may update
-- that table (its owner, the extension's owner) can take it: an advisory
-- lock, which any role can take, would let anybody stop every run.
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.run_lock (
    run text PRIMARY KEY
);
COMMENT ON TABLE migrate_ext.run_lock IS
    'One row per kind of run; a running sync, validation, launch or rollback holds the row ''any'' and its own row locked';
INSERT INTO migrate_ext.run_lock VALUES
    ('any'), ('sync_raw_api_data()'), ('validate_and_prepare_clean_data()'),
    ('launch_clean_production()'), ('rollback_migration()');

-- Keep every other run out until this transaction ends; when one is
-- running, fail at once naming it.  what is the function that asks.
CREATE FUNCTION migrate_ext.lock_out_other_runs(what text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    holder text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM migrate_ext.run_lock AS l WHERE l.run = what AND l.run <> 'any') THEN
        RAISE EXCEPTION 'lock_out_other_runs(): unknown run %', what
              USING ERRCODE = 'invalid_parameter_value', HINT = 'Name one of the rows of migrate_ext.run_lock.';
    END IF;
    PERFORM 1 FROM migrate_ext.run_lock AS l WHERE l.run = 'any' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        -- the run holding the gate holds its own row too: the rows this
        -- transaction cannot lock name it
        SELECT string_agg(l.run, ', ') INTO holder FROM migrate_ext.run_lock AS l
         WHERE l.run <> 'any'
           AND l.run NOT IN (SELECT f.run FROM migrate_ext.run_lock AS f WHERE f.run <> 'any' FOR KEY SHARE SKIP LOCKED);
        RAISE EXCEPTION '% cannot start: % is running', what, coalesce('migrate_ext.' || holder, 'another run of migrate_ext')
              USING ERRCODE = 'lock_not_available',
                    HINT = 'Nothing was changed. Wait for it to finish (pg_stat_activity shows it); SELECT * FROM migrate_ext.migration_status(); shows what was done.';
    END IF;
    PERFORM 1 FROM migrate_ext.run_lock AS l WHERE l.run = what FOR UPDATE;
END;
$$;
