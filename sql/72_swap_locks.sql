-------------------------------------------------------------------------------
-- The swap's lock protocol (doc/swap-checklist.md item 26): every relation locked in
-- ACCESS EXCLUSIVE mode (or SHARE ROW EXCLUSIVE, for tables that new
-- foreign keys reference) in OID order, each attempt bounded by
-- migrate_ext.lock_timeout, retried migrate_ext.lock_retries times with
-- back-off and jitter.  A failed attempt releases every lock it took, so a
-- session queued behind the swap waits at most one attempt.
-------------------------------------------------------------------------------

-- Load the library, so that the migrate_ext.* settings are defined
CREATE FUNCTION migrate_ext.load_settings() RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'migrate_ext_load_settings';

-- The relations a view reads, at any depth (what locking it also locks);
-- nothing for a table
CREATE FUNCTION migrate_ext.view_relations(view_oid regclass) RETURNS TABLE (read oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE reads(rel) AS (
        SELECT d.refobjid FROM pg_rewrite AS w
          JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                             AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.ev_class
         WHERE w.ev_class = view_oid
        UNION
        SELECT d.refobjid FROM reads AS r
          JOIN pg_rewrite AS w ON w.ev_class = r.rel
          JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                             AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.ev_class
    )
    SELECT r.rel FROM reads AS r;
$$;

-- Lock relations for a swap (exclusively, and shared ones in SHARE ROW
-- EXCLUSIVE mode); returns the number of attempts it took, or raises
-- lock_not_available naming the relation and who holds it
CREATE FUNCTION migrate_ext.lock_for_swap(relations regclass[], shared regclass[] DEFAULT '{}') RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    attempts integer;
    per_attempt text;
    caller_timeout CONSTANT text := current_setting('lock_timeout');
    attempt integer := 0;
    rel record;
    waiting_for regclass;
    blocker regclass;
BEGIN
    PERFORM migrate_ext.load_settings();
    attempts := current_setting('migrate_ext.lock_retries')::integer + 1;
    per_attempt := current_setting('migrate_ext.lock_timeout');
    IF EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = ANY (relations || shared) AND c.relkind NOT IN ('r', 'p', 'v', 'f')) THEN
        RAISE EXCEPTION 'lock_for_swap() locks tables and views only'
              USING ERRCODE = 'wrong_object_type',
                    HINT = 'LOCK TABLE refuses materialized views and indexes; rebuild those after the swap.';
    END IF;
    LOOP
        attempt := attempt + 1;
        BEGIN
            PERFORM set_config('lock_timeout', per_attempt, true);
            -- tables first, then the views (locking a view locks the tables
            -- it reads, which are then already held), each in OID order
            FOR rel IN SELECT x.* FROM (SELECT r, 'ACCESS EXCLUSIVE' AS mode FROM unnest(relations) AS r
                                        UNION
                                        SELECT r, 'SHARE ROW EXCLUSIVE' FROM unnest(shared) AS r
                                         WHERE NOT r = ANY (relations)) AS x
                         JOIN pg_class AS c ON c.oid = x.r
                        ORDER BY c.relkind = 'v', x.r::oid LOOP
                waiting_for := rel.r;
                EXECUTE format('LOCK TABLE %s IN %s MODE', rel.r, rel.mode);
            END LOOP;
            PERFORM set_config('lock_timeout', caller_timeout, true);
            RETURN attempt;
        EXCEPTION WHEN lock_not_available THEN
            -- the attempt's subtransaction is gone, and every lock it took
            EXIT WHEN attempt >= attempts;
            PERFORM pg_sleep(least(0.05 * 2 ^ least(attempt, 10), 2.0) * (0.5 + random() / 2));
        END;
    END LOOP;
    -- the relation really waited on: a view's lock waits on what it reads
    SELECT l.relation::regclass INTO blocker
      FROM pg_locks AS l
     WHERE l.relation IN (SELECT waiting_for UNION ALL SELECT v.read FROM migrate_ext.view_relations(waiting_for) AS v)
       AND l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
       AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
     ORDER BY l.relation = waiting_for DESC, l.relation LIMIT 1;
    blocker := coalesce(blocker, waiting_for);
    RAISE EXCEPTION 'could not lock % for the swap: % attempts of % each timed out', blocker, attempt, per_attempt
          USING ERRCODE = 'lock_not_available',
                DETAIL = coalesce('Held by: ' || (SELECT string_agg(format('pid %s (%s, %s)', a.pid, coalesce(nullif(a.application_name, ''), a.usename), a.state), ', ' ORDER BY a.pid)
                                                  FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
                                                 WHERE l.relation = blocker AND l.granted AND l.pid <> pg_backend_pid()),
                                  'another session'),
                HINT = 'Nothing was changed. Retry when those sessions are done, or raise migrate_ext.lock_retries or migrate_ext.lock_timeout.';
END;
$$;
