-------------------------------------------------------------------------------
-- The swap plan (doc/swap-checklist.md): one plan, read from the
-- catalog before anything changes, that moves the production tables of
-- public into outgoing_to and the tables of schema incoming into public,
-- carries over everything a move leaves behind and re-points everything
-- outside the swap.  Launch runs it with incoming = migrate_staging and
-- outgoing_to = the new backup schema; rollback runs it with incoming = the
-- backup schema and outgoing_to = migrate_staging.
--
-- Every definition is read with search_path = pg_catalog, so the deparsed
-- text names public.<table>: run after the moves, it binds to the table
-- that is then in public.
-------------------------------------------------------------------------------

-- The relations the swap locks: both sides of every swapped table, tables
-- whose foreign keys into them are re-pointed, tables whose policies
-- mention them, and the views over them that are replaced
CREATE FUNCTION migrate_ext.swap_lock_set(incoming text) RETURNS regclass[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(DISTINCT r ORDER BY r)
      FROM (SELECT s.rel::regclass AS r FROM migrate_ext.swapped_relations() AS s
            UNION ALL
            SELECT format('%I.%I', incoming, t)::regclass FROM unnest(migrate_ext.swapped_tables()) AS t
            UNION ALL
            SELECT f.src FROM migrate_ext.swap_foreign_keys(true) AS f WHERE f.dst_swapped AND NOT f.src_swapped
            UNION ALL
            SELECT p.polrelid::regclass FROM migrate_ext.swap_dependents() AS d JOIN pg_policy AS p ON p.oid = d.objid
             WHERE d.catalog = 'pg_policy'::regclass AND NOT d.on_row_type
               AND p.polrelid NOT IN (SELECT s.rel FROM migrate_ext.swapped_relations() AS s)
            UNION ALL
            SELECT v.dependent::regclass FROM migrate_ext.swap_view_dependents() AS v WHERE v.relkind = 'v') AS x;
$$;

-- Where a generator's statement goes in a plan: its stage, and within a
-- table's statements of a stage, the place of its property (slot)
CREATE FUNCTION migrate_ext.swap_plan_order(stage text, slot text) RETURNS integer[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[array_position('{prepare,lock,link,detach,move_out,move_in,carry,repoint}'::text[], stage),
                 array_position('{own_fks,analyze,lock,inbound_fks,publications,move,ext_statistics,owner_grants,rls,'
                                'replica_identity,storage,sequences,column_statistics,policies,triggers,comments,views,'
                                'matviews,other_policies,functions,realtime,finish}'::text[], slot)];
$$;

-- The swap's statements, in order, read from the catalog as it is now:
-- the ordered union of the generators (sql/80).  Phase 'prepare' runs
-- before the locks (the foreign keys between the incoming tables,
-- validated; ANALYZE of the incoming tables), 'lock' takes the locks,
-- 'swap' is the work under them: the incoming tables' foreign keys to
-- other tables (validated), the moves, catalog-only carry-over and
-- re-pointing, the invariant.  Nothing is executed here.
CREATE FUNCTION migrate_ext.swap_plan(incoming text, outgoing_to text)
RETURNS TABLE (step integer, phase text, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH exclusive AS (
        SELECT migrate_ext.swap_lock_set(incoming) AS rels
    ), referenced AS (
        -- tables the new foreign keys reference are locked in SHARE ROW
        -- EXCLUSIVE mode (what adding a foreign key takes); swapped ones
        -- are locked exclusively anyway
        SELECT ARRAY(SELECT DISTINCT m.dst FROM migrate_ext.missing_foreign_keys(incoming, outgoing_to) AS m, exclusive AS e
                      WHERE NOT m.dst_swapped AND NOT m.dst = ANY (e.rels)
                        AND NOT m.dst IN (SELECT s.rel FROM migrate_ext.swapped_relations() AS s
                                          UNION ALL
                                          SELECT s.rel FROM migrate_ext.swapped_relations(incoming) AS s)
                      ORDER BY m.dst) AS rels
    ), statements AS (
        SELECT g.* FROM migrate_ext.plan_own_foreign_keys(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_inbound_foreign_keys(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_publications(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_moves(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_statistics(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_owner_grants(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_rls_policies(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_replica_identity(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_storage(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_sequences(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_triggers(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_comments(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_views(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_other_policies(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_functions(incoming, outgoing_to) AS g
        UNION ALL SELECT g.* FROM migrate_ext.plan_realtime(incoming, outgoing_to) AS g
        UNION ALL
        SELECT 'lock', NULL, 'lock', 1, format('SELECT migrate_ext.lock_for_swap(%L::regclass[], %L::regclass[])',
                                               e.rels, r.rels::regclass[])
          FROM exclusive AS e, referenced AS r
        UNION ALL
        -- PostgREST reloads its schema cache when this commits (item 29)
        SELECT 'repoint', NULL, 'finish', x.n, x.statement
          FROM (VALUES (1::bigint, 'NOTIFY pgrst, ''reload schema'''::text),
                       (2, format('SELECT migrate_ext.check_swap_invariant(%L::text)', outgoing_to))) AS x(n, statement)
    )
    SELECT (row_number() OVER (ORDER BY (migrate_ext.swap_plan_order(s.stage, s.slot))[1], s.tbl,
                                        (migrate_ext.swap_plan_order(s.stage, s.slot))[2], s.n))::integer,
           CASE WHEN s.stage IN ('prepare', 'lock') THEN s.stage ELSE 'swap' END, s.statement
      FROM statements AS s
     ORDER BY 1;
$$;

-- What depends on the swapped tables of a schema from outside them (their
-- own constraints, triggers, policies, rules and statistics do not count):
-- one description per object
CREATE FUNCTION migrate_ext.outside_dependents(schema_name text) RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT coalesce((SELECT format('%s %s', CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
                                            v.oid::regclass)
                                FROM pg_rewrite AS w JOIN pg_class AS v ON v.oid = w.ev_class
                               WHERE d.catalog = 'pg_rewrite'::regclass AND w.oid = d.objid
                                 AND w.rulename = '_RETURN' AND v.relkind IN ('v', 'm')),
                             d.object)
      FROM migrate_ext.swap_dependents(schema_name) AS d
     WHERE (d.deptype = 'n' OR d.catalog = 'pg_publication_rel'::regclass)
       AND coalesce(CASE d.catalog
                        WHEN 'pg_constraint'::regclass THEN (SELECT k.conrelid FROM pg_constraint AS k WHERE k.oid = d.objid)
                        WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger AS g WHERE g.oid = d.objid)
                        WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy AS p WHERE p.oid = d.objid)
                        WHEN 'pg_rewrite'::regclass THEN (SELECT w.ev_class FROM pg_rewrite AS w WHERE w.oid = d.objid)
                        WHEN 'pg_statistic_ext'::regclass THEN (SELECT x.stxrelid FROM pg_statistic_ext AS x WHERE x.oid = d.objid)
                        WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef AS a WHERE a.oid = d.objid)
                        WHEN 'pg_class'::regclass THEN d.objid
                    END, 0) NOT IN (SELECT s.rel FROM migrate_ext.swapped_relations(schema_name) AS s)
     ORDER BY 1;
$$;

-- Item 33: after the moves nothing outside the tables moved to
-- outgoing_to may still depend on them; raises naming every such object
CREATE FUNCTION migrate_ext.check_swap_invariant(outgoing_to text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    leftovers text;
BEGIN
    SELECT string_agg(o, '; ') INTO leftovers FROM migrate_ext.outside_dependents(outgoing_to) AS o;
    IF leftovers IS NOT NULL THEN
        RAISE EXCEPTION 'objects outside schema % still depend on its tables: %', outgoing_to, leftovers
              USING ERRCODE = 'dependent_objects_still_exist',
                    HINT = 'Nothing was changed. Re-point or drop them first (a swap does not know how to carry them: report it).';
    END IF;
END;
$$;
