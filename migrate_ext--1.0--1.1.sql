/*
 * migrate_ext upgrade script 1.0 -> 1.1 (ALTER EXTENSION migrate_ext UPDATE).
 * Written by hand for tables and data; the function part was listed by
 * scripts/function_changes.sql and reviewed.  test/sql/upgrade.sql proves
 * that 1.0 updated with it equals a fresh install of 1.1.
 */

\echo Use "ALTER EXTENSION migrate_ext UPDATE TO '1.1'" to load this file. \quit

SET LOCAL search_path = pg_catalog, pg_temp;

-------------------------------------------------------------------------------
-- Functions (listed by scripts/function_changes.sql)
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION migrate_ext.swap_refusals()
 RETURNS TABLE(tbl text, object text, reason text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
      FROM pg_rewrite AS r JOIN pg_class AS c ON c.oid = r.ev_class
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
       AND r.rulename <> '_RETURN'
    UNION ALL
    -- partitioning and inheritance
    SELECT c.relname::text, format('table public.%s', c.relname),
           'a partitioned table cannot be swapped by renaming; migrate its partitions instead'
      FROM pg_class AS c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
       AND c.relkind = 'p'
    UNION ALL
    SELECT c.relname::text, format('table %s', i.inhrelid::regclass),
           format('inherits from public.%s, which would then be the backup; detach it (ALTER TABLE ... NO INHERIT) first', c.relname)
      FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhparent
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    UNION ALL
    SELECT c.relname::text, format('table public.%s', c.relname),
           format('is a partition or child of %s; swap the parent instead', i.inhparent::regclass)
      FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    UNION ALL
    -- columns of other tables typed as the table's row (or an array of it):
    -- their values would keep the backup's type
    -- (in a table, or in a composite type)
    SELECT c.relname::text, format('%s %s.%s', CASE o.relkind WHEN 'c' THEN 'attribute' ELSE 'column' END,
                                   CASE o.relkind WHEN 'c' THEN o.reltype::regtype::text ELSE a.attrelid::regclass::text END,
                                   a.attname),
           format('is of type public.%s (the table''s row type), which stays with the backup; change the %s''s type first',
                  c.relname, CASE o.relkind WHEN 'c' THEN 'attribute' ELSE 'column' END)
      FROM pg_class AS c
      JOIN pg_type AS ty ON ty.oid = c.reltype
      JOIN pg_attribute AS a ON a.atttypid IN (c.reltype, ty.typarray) AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_class AS o ON o.oid = a.attrelid AND o.relkind IN ('r', 'p', 'f', 'm', 'c')
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    UNION ALL
    -- a materialized view over the table is dropped and created again,
    -- which anything built on it would not survive
    SELECT DISTINCT c.relname::text, format('%s %s', CASE o.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, o.oid::regclass),
           format('is built on materialized view %s, which the swap re-creates over public.%s; drop it before the launch and re-create it after',
                  m.oid::regclass, c.relname)
      FROM pg_class AS c
      JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid
      JOIN pg_rewrite AS w ON w.oid = d.objid
      JOIN pg_class AS m ON m.oid = w.ev_class AND m.relkind = 'm'
      JOIN pg_depend AS d2 ON d2.classid = 'pg_rewrite'::regclass AND d2.refclassid = 'pg_class'::regclass AND d2.refobjid = m.oid
      JOIN pg_rewrite AS w2 ON w2.oid = d2.objid
      JOIN pg_class AS o ON o.oid = w2.ev_class AND o.oid <> m.oid
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    UNION ALL
    -- security labels are not carried
    SELECT c.relname::text, format('security label of provider %s on public.%s', l.provider, c.relname),
           'is not carried by the swap; remove it before the launch and set it again after'
      FROM pg_class AS c JOIN pg_seclabel AS l ON l.classoid = 'pg_class'::regclass AND l.objoid = c.oid
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    UNION ALL
    -- what the launching role may not change
    SELECT x.tbl, x.object, x.reason FROM migrate_ext.swap_privilege_refusals() AS x
    UNION ALL
    -- a table that belongs to an extension is the extension's to change
    SELECT c.relname::text, format('table public.%s', c.relname),
           format('belongs to extension %s', e.extname)
      FROM pg_class AS c
      JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
      JOIN pg_extension AS e ON e.oid = d.refobjid
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    ORDER BY 1, 2;
$function$;


-- the extension's owner (not necessarily the role running the update) keeps
-- every privilege on the new objects, nobody else gets any
SELECT migrate_ext.close_extension_objects(e.extowner::pg_catalog.regrole)
  FROM pg_catalog.pg_extension AS e WHERE e.extname OPERATOR(pg_catalog.=) 'migrate_ext';
