-------------------------------------------------------------------------------
-- The swap's inventory: everything that depends on a swapped production
-- table, and what the swap would not know how to carry (it must refuse,
-- naming the object, before it changes anything: fail closed)
-------------------------------------------------------------------------------

-- The swapped tables as they are in a schema (public: production; a
-- backup schema or migrate_staging for the tables a swap moved there),
-- with their place in swapped_tables() and their row and array types
CREATE FUNCTION migrate_ext.swapped_relations(schema_name text DEFAULT 'public')
RETURNS TABLE (tbl text, ord integer, rel oid, reltype oid, typarray oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.relname::text, t.ord::integer, c.oid, c.reltype, ty.typarray
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, ord)
      JOIN pg_class AS c ON c.relname = t.name AND c.relnamespace = to_regnamespace(schema_name)
      JOIN pg_type AS ty ON ty.oid = c.reltype;
$$;

-- Every dependent of the swapped tables of a schema (production by
-- default), from pg_depend: on the table itself and on its row type and
-- array type (on_row_type)
CREATE FUNCTION migrate_ext.swap_dependents(schema_name text DEFAULT 'public')
RETURNS TABLE (tbl text, catalog regclass, deptype "char", object text, objid oid, objsubid integer,
               ord integer, rel oid, on_row_type boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.tbl, d.classid::regclass, d.deptype,
           pg_describe_object(d.classid, d.objid, d.objsubid), d.objid, d.objsubid,
           s.ord, s.rel, d.refclassid = 'pg_type'::regclass
      FROM migrate_ext.swapped_relations(schema_name) AS s
      JOIN pg_depend AS d
        ON (d.refclassid = 'pg_class'::regclass AND d.refobjid = s.rel)
        OR (d.refclassid = 'pg_type'::regclass AND d.refobjid IN (s.reltype, s.typarray));
$$;

-- The relations whose rewrite rules read rel (its views and materialized
-- views, or a table's rule), other than rel itself
CREATE FUNCTION migrate_ext.rewrite_dependents(rel oid)
RETURNS TABLE (dependent oid, relkind "char")
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT v.oid, v.relkind
      FROM pg_depend AS d
      JOIN pg_rewrite AS w ON w.oid = d.objid
      JOIN pg_class AS v ON v.oid = w.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = rel AND v.oid <> rel;
$$;

-- The views and materialized views over the production tables, one row
-- per production table a view reads
CREATE FUNCTION migrate_ext.swap_view_dependents()
RETURNS TABLE (tbl text, ord integer, rel oid, dependent oid, relkind "char")
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.tbl, s.ord, s.rel, v.dependent, v.relkind
      FROM migrate_ext.swapped_relations() AS s
     CROSS JOIN LATERAL migrate_ext.rewrite_dependents(s.rel) AS v
     WHERE v.relkind IN ('v', 'm');
$$;

-- Every foreign key that touches a production table: who references what,
-- with the column lists, and whether each side is a production table.
-- Foreign keys of tables in migrate_* schemas only with all_schemas.
CREATE FUNCTION migrate_ext.swap_foreign_keys(all_schemas boolean DEFAULT false)
RETURNS TABLE (conname name, src regclass, src_name name, src_swapped boolean, src_cols text[],
               dst regclass, dst_name name, dst_swapped boolean, dst_cols text[], conoid oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.conname, c.conrelid::regclass, cs.relname, ps.rel IS NOT NULL,
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY AS k(att, i)
                   JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.att ORDER BY k.i),
           c.confrelid::regclass, cd.relname, pd.rel IS NOT NULL,
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY AS k(att, i)
                   JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.att ORDER BY k.i),
           c.oid
      FROM pg_constraint AS c
      JOIN pg_class AS cs ON cs.oid = c.conrelid
      JOIN pg_class AS cd ON cd.oid = c.confrelid
      JOIN pg_namespace AS ns ON ns.oid = cs.relnamespace
      LEFT JOIN migrate_ext.swapped_relations() AS ps ON ps.rel = c.conrelid
      LEFT JOIN migrate_ext.swapped_relations() AS pd ON pd.rel = c.confrelid
     WHERE c.contype = 'f'
       AND (all_schemas OR ns.nspname NOT LIKE 'migrate\_%')
       AND (ps.rel IS NOT NULL OR pd.rel IS NOT NULL);
$$;

-- The regclass columns the swap re-points: only those of tables it knows
-- (Supabase Realtime's subscriptions).  A regclass column anywhere else is
-- left alone: updating a table the swap does not know would run its
-- triggers as the role that launches.
CREATE FUNCTION migrate_ext.known_regclass_columns() RETURNS TABLE (tbl regclass, col name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.attrelid::regclass, a.attname
      FROM pg_attribute AS a
     WHERE a.attrelid = to_regclass('realtime.subscription') AND a.attname = 'entity'
       AND a.atttypid = 'regclass'::regtype AND NOT a.attisdropped;
$$;

-- Dependents of the swapped tables that the current role could not change
-- at the swap (it must own what it replaces or re-points, and may update
-- and lock what it re-points), with their owner: a launch or rollback
-- would fail half-way on them, so they are refused before anything runs
CREATE FUNCTION migrate_ext.swap_privilege_refusals()
RETURNS TABLE (tbl text, object text, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH owned_dependents AS (
        -- views and materialized views over the table, replaced or re-created
        SELECT v.tbl, format('%s %s', CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
                             v.dependent::regclass) AS object, c.relowner AS owner
          FROM migrate_ext.swap_view_dependents() AS v JOIN pg_class AS c ON c.oid = v.dependent
        UNION ALL
        -- functions bound to the table or its row type, replaced
        SELECT d.tbl, d.object, f.proowner
          FROM migrate_ext.swap_dependents() AS d JOIN pg_proc AS f ON f.oid = d.objid
         WHERE d.catalog = 'pg_proc'::regclass
        UNION ALL
        -- other tables' policies and foreign keys, re-parsed or re-created
        SELECT d.tbl, d.object, c.relowner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_policy AS p ON p.oid = d.objid JOIN pg_class AS c ON c.oid = p.polrelid
         WHERE d.catalog = 'pg_policy'::regclass AND p.polrelid <> d.rel
        UNION ALL
        SELECT d.tbl, d.object, c.relowner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_constraint AS k ON k.oid = d.objid JOIN pg_class AS c ON c.oid = k.conrelid
         WHERE d.catalog = 'pg_constraint'::regclass AND k.contype = 'f' AND k.conrelid <> d.rel
        UNION ALL
        -- publications the table is moved out of and back into
        SELECT d.tbl, d.object, pb.pubowner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_publication_rel AS pr ON pr.oid = d.objid JOIN pg_publication AS pb ON pb.oid = pr.prpubid
         WHERE d.catalog = 'pg_publication_rel'::regclass
    )
    SELECT DISTINCT o.tbl, o.object,
           format('is owned by %s, and %s is not a member of that role, so the swap could not re-point it; '
                  'have its owner drop it before the launch and re-create it after, or run the launch as a member of %s',
                  o.owner::regrole, current_user, o.owner::regrole)
      FROM owned_dependents AS o
     WHERE NOT pg_has_role(current_user, o.owner, 'USAGE')
    UNION ALL
    SELECT s.tbl, format('column %s.%I', k.tbl, k.col),
           format('points at public.%s, and %s may not update and lock %s, so the swap could not re-point it; '
                  'grant it SELECT and UPDATE on %s for the launch', s.tbl, current_user, k.tbl, k.tbl)
      FROM migrate_ext.known_regclass_columns() AS k, migrate_ext.swapped_relations() AS s
     WHERE NOT (has_table_privilege(k.tbl, 'SELECT') AND has_table_privilege(k.tbl, 'UPDATE'))
    UNION ALL
    -- tables production's foreign keys reference: the new tables get the
    -- same foreign keys, which needs REFERENCES and a lock on them
    SELECT DISTINCT s.tbl, format('table %s', k.confrelid::regclass),
           format('is referenced by public.%s, and %s lacks REFERENCES or UPDATE on it, so the new table could not get the same foreign key; '
                  'grant both for the launch', s.tbl, current_user)
      FROM migrate_ext.swapped_relations() AS s JOIN pg_constraint AS k ON k.conrelid = s.rel AND k.contype = 'f'
     WHERE NOT pg_has_role(current_user, (SELECT r.relowner FROM pg_class AS r WHERE r.oid = k.confrelid), 'USAGE')
       AND NOT (has_table_privilege(k.confrelid, 'REFERENCES') AND has_table_privilege(k.confrelid, 'UPDATE'));
$$;

-- What the swap cannot carry, one row per object, with the reason and what
-- to do; an empty result means the swap may go ahead
CREATE FUNCTION migrate_ext.swap_refusals()
RETURNS TABLE (tbl text, object text, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- kinds of dependents the swap does not handle at all
    SELECT d.tbl, d.object,
           format('depends on public.%s through %s, which the swap does not carry; drop it before the launch and re-create it after',
                  d.tbl, d.catalog)
      FROM migrate_ext.swap_dependents() AS d
     WHERE d.catalog NOT IN ('pg_type'::regclass, 'pg_class'::regclass, 'pg_constraint'::regclass,
                             'pg_rewrite'::regclass, 'pg_trigger'::regclass, 'pg_policy'::regclass,
                             'pg_statistic_ext'::regclass, 'pg_publication_rel'::regclass,
                             'pg_proc'::regclass, 'pg_attrdef'::regclass, 'pg_inherits'::regclass)
    UNION ALL
    -- rules on the table itself (a view's own _RETURN rule is a view, handled)
    SELECT c.relname::text, format('rule %s on public.%s', r.rulename, c.relname),
           'rewrites statements on the table and would not follow the swap; drop it before the launch and re-create it after'
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel JOIN pg_rewrite AS r ON r.ev_class = c.oid
     WHERE r.rulename <> '_RETURN'
    UNION ALL
    -- partitioning and inheritance
    SELECT c.relname::text, format('table public.%s', c.relname),
           'a partitioned table cannot be swapped by renaming; migrate its partitions instead'
      FROM migrate_ext.swapped_relations() AS s JOIN pg_class AS c ON c.oid = s.rel
     WHERE c.relkind = 'p'
    UNION ALL
    SELECT c.relname::text, format('table %s', i.inhrelid::regclass),
           format('inherits from public.%s, which would then be the backup; detach it (ALTER TABLE ... NO INHERIT) first', c.relname)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel JOIN pg_inherits AS i ON i.inhparent = c.oid
    UNION ALL
    SELECT c.relname::text, format('table public.%s', c.relname),
           format('is a partition or child of %s; swap the parent instead', i.inhparent::regclass)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel JOIN pg_inherits AS i ON i.inhrelid = c.oid
    UNION ALL
    -- columns of other tables typed as the table's row (or an array of it):
    -- their values would keep the backup's type
    -- (in a table, or in a composite type)
    SELECT c.relname::text, format('%s %s.%s', CASE o.relkind WHEN 'c' THEN 'attribute' ELSE 'column' END,
                                   CASE o.relkind WHEN 'c' THEN o.reltype::regtype::text ELSE a.attrelid::regclass::text END,
                                   a.attname),
           format('is of type public.%s (the table''s row type), which stays with the backup; change the %s''s type first',
                  c.relname, CASE o.relkind WHEN 'c' THEN 'attribute' ELSE 'column' END)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel
      JOIN pg_attribute AS a ON a.atttypid IN (s.reltype, s.typarray) AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_class AS o ON o.oid = a.attrelid AND o.relkind IN ('r', 'p', 'f', 'm', 'c')
    UNION ALL
    -- a materialized view over the table is dropped and created again,
    -- which anything built on it would not survive
    SELECT DISTINCT m.tbl, format('%s %s', CASE o.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, o.dependent::regclass),
           format('is built on materialized view %s, which the swap re-creates over public.%s; drop it before the launch and re-create it after',
                  m.dependent::regclass, m.tbl)
      FROM migrate_ext.swap_view_dependents() AS m
     CROSS JOIN LATERAL migrate_ext.rewrite_dependents(m.dependent) AS o
     WHERE m.relkind = 'm'
    UNION ALL
    -- security labels are not carried
    SELECT c.relname::text, format('security label of provider %s on public.%s', l.provider, c.relname),
           'is not carried by the swap; remove it before the launch and set it again after'
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel
      JOIN pg_seclabel AS l ON l.classoid = 'pg_class'::regclass AND l.objoid = c.oid
    UNION ALL
    -- what the launching role may not change
    SELECT x.tbl, x.object, x.reason FROM migrate_ext.swap_privilege_refusals() AS x
    UNION ALL
    -- a table that belongs to an extension is the extension's to change
    SELECT c.relname::text, format('table public.%s', c.relname),
           format('belongs to extension %s', e.extname)
      FROM migrate_ext.swapped_relations() AS s
      JOIN pg_class AS c ON c.oid = s.rel
      JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
      JOIN pg_extension AS e ON e.oid = d.refobjid
    ORDER BY 1, 2;
$$;
COMMENT ON FUNCTION migrate_ext.swap_refusals() IS
    'Objects depending on the swapped production tables that a swap could not carry; the launch refuses while this returns rows';
