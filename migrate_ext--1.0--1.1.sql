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

DROP FUNCTION migrate_ext.rollback_migration(text);
DROP FUNCTION migrate_ext.swap_dependents();
DROP FUNCTION migrate_ext.swap_foreign_keys();
DROP FUNCTION migrate_ext.table_counts(text);
CREATE OR REPLACE FUNCTION migrate_ext.swapped_relations(schema_name text DEFAULT 'public'::text)
 RETURNS TABLE(tbl text, ord integer, rel oid, reltype oid, typarray oid)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT c.relname::text, t.ord::integer, c.oid, c.reltype, ty.typarray
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, ord)
      JOIN pg_class AS c ON c.relname = t.name AND c.relnamespace = to_regnamespace(schema_name)
      JOIN pg_type AS ty ON ty.oid = c.reltype;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_dependents(schema_name text DEFAULT 'public'::text)
 RETURNS TABLE(tbl text, catalog regclass, deptype "char", object text, objid oid, objsubid integer, ord integer, rel oid, on_row_type boolean)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT s.tbl, d.classid::regclass, d.deptype,
           pg_describe_object(d.classid, d.objid, d.objsubid), d.objid, d.objsubid,
           s.ord, s.rel, d.refclassid = 'pg_type'::regclass
      FROM migrate_ext.swapped_relations(schema_name) AS s
      JOIN pg_depend AS d
        ON (d.refclassid = 'pg_class'::regclass AND d.refobjid = s.rel)
        OR (d.refclassid = 'pg_type'::regclass AND d.refobjid IN (s.reltype, s.typarray));
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.rewrite_dependents(rel oid)
 RETURNS TABLE(dependent oid, relkind "char")
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT DISTINCT v.oid, v.relkind
      FROM pg_depend AS d
      JOIN pg_rewrite AS w ON w.oid = d.objid
      JOIN pg_class AS v ON v.oid = w.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = rel AND v.oid <> rel;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_view_dependents()
 RETURNS TABLE(tbl text, ord integer, rel oid, dependent oid, relkind "char")
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT s.tbl, s.ord, s.rel, v.dependent, v.relkind
      FROM migrate_ext.swapped_relations() AS s
     CROSS JOIN LATERAL migrate_ext.rewrite_dependents(s.rel) AS v
     WHERE v.relkind IN ('v', 'm');
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_foreign_keys(all_schemas boolean DEFAULT false)
 RETURNS TABLE(conname name, src regclass, src_name name, src_swapped boolean, src_cols text[], dst regclass, dst_name name, dst_swapped boolean, dst_cols text[], conoid oid)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_privilege_refusals()
 RETURNS TABLE(tbl text, object text, reason text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

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
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_pairs(incoming text, outgoing_to text)
 RETURNS TABLE(ord integer, tbl text, prod oid, inc oid, q_prod text, q_inc text, q_out text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT t.ord::integer, t.name, format('public.%I', t.name)::regclass::oid,
           format('%I.%I', incoming, t.name)::regclass::oid,
           format('public.%I', t.name), format('%I.%I', incoming, t.name), format('%I.%I', outgoing_to, t.name)
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, ord);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.references_in(def text, to_schema text)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY migrate_ext.swapped_tables() LOOP
        def := replace(def, format(' REFERENCES public.%I(', s), format(' REFERENCES %I.%I(', to_schema, s));
    END LOOP;
    RETURN def;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.add_foreign_key_statements(target text, conname name, def text, validated boolean, drop_first boolean DEFAULT false)
 RETURNS TABLE(i integer, statement text)
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT x.i, x.statement
      FROM (VALUES (1, CASE WHEN drop_first THEN format('ALTER TABLE %s DROP CONSTRAINT %I', target, conname) END),
                   (2, format('ALTER TABLE %s ADD CONSTRAINT %I %s%s', target, conname, def,
                              CASE WHEN validated THEN ' NOT VALID' ELSE '' END)),
                   (3, CASE WHEN validated THEN format('ALTER TABLE %s VALIDATE CONSTRAINT %I', target, conname) END)) AS x(i, statement)
     WHERE x.statement IS NOT NULL;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.missing_foreign_keys(incoming text, outgoing_to text)
 RETURNS TABLE(ord integer, q_inc text, conname name, def text, validated boolean, dst regclass, dst_swapped boolean, in_incoming boolean)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT p.ord, p.q_inc, f.conname, x.def, k.convalidated, f.dst, f.dst_swapped, i.oid IS NOT NULL
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN migrate_ext.swap_foreign_keys(true) AS f ON f.src = p.prod
      JOIN pg_constraint AS k ON k.oid = f.conoid
     CROSS JOIN LATERAL (SELECT migrate_ext.references_in(pg_get_constraintdef(k.oid), incoming) AS def) AS x
      LEFT JOIN pg_constraint AS i ON i.conrelid = p.inc AND i.conname = f.conname
     WHERE NOT coalesce(i.contype = 'f' AND pg_get_constraintdef(i.oid) = x.def, false);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_own_foreign_keys(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT CASE WHEN m.dst_swapped THEN 'prepare' ELSE 'link' END, m.ord, 'own_fks',
           row_number() OVER (ORDER BY m.ord, m.conname, s.i), s.statement
      FROM migrate_ext.missing_foreign_keys(incoming, outgoing_to) AS m
     CROSS JOIN LATERAL migrate_ext.add_foreign_key_statements(m.q_inc, m.conname, m.def, m.validated, m.in_incoming) AS s;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_inbound_foreign_keys(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT x.stage, p.ord, 'inbound_fks', row_number() OVER (ORDER BY p.ord, f.src, f.conname, x.i), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN migrate_ext.swap_foreign_keys(true) AS f ON f.dst = p.prod AND NOT f.src_swapped
      JOIN pg_constraint AS k ON k.oid = f.conoid
     CROSS JOIN LATERAL (
           SELECT 'detach', 0, format('ALTER TABLE %s DROP CONSTRAINT %I', f.src, f.conname)
           UNION ALL
           SELECT 'repoint', a.i, a.statement
             FROM migrate_ext.add_foreign_key_statements(f.src::text, f.conname, pg_get_constraintdef(k.oid), k.convalidated) AS a
           UNION ALL
           SELECT 'repoint', 4, migrate_ext.comment_statement(format('CONSTRAINT %I ON %s', f.conname, f.src), d.note)
             FROM obj_description(k.oid, 'pg_constraint') AS d(note) WHERE d.note IS NOT NULL) AS x(stage, i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_publications(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT x.stage, p.ord, 'publications', row_number() OVER (ORDER BY p.ord, pb.pubname), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_publication_rel AS pr ON pr.prrelid = p.prod
      JOIN pg_publication AS pb ON pb.oid = pr.prpubid
     CROSS JOIN LATERAL (
           SELECT 'detach', format('ALTER PUBLICATION %I DROP TABLE %s', pb.pubname, p.q_prod)
           UNION ALL
           SELECT 'repoint', format('ALTER PUBLICATION %I ADD TABLE %s%s%s', pb.pubname, p.q_prod,
                                    coalesce(' (' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                                        FROM pg_attribute AS a
                                                       WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)) || ')', ''),
                                    coalesce(' WHERE (' || pg_get_expr(pr.prqual, pr.prrelid) || ')', ''))) AS x(stage, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_moves(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'move_out', p.ord, 'move', 1::bigint, format('ALTER TABLE %s SET SCHEMA %I', p.q_prod, outgoing_to)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
    UNION ALL
    SELECT 'move_in', p.ord, 'move', 1, format('ALTER TABLE %s SET SCHEMA public', p.q_inc)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_statistics(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'prepare', p.ord, 'analyze', 1::bigint, format('ANALYZE %s', p.q_inc)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
    UNION ALL
    SELECT 'detach', p.ord, 'ext_statistics', row_number() OVER (ORDER BY p.ord, x.stxname),
           format('ALTER STATISTICS public.%I SET SCHEMA %I', x.stxname, outgoing_to)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_statistic_ext AS x ON x.stxrelid = p.prod AND x.stxnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'move_in', p.ord, 'ext_statistics', row_number() OVER (ORDER BY p.ord, x.stxname),
           format('ALTER STATISTICS %I.%I SET SCHEMA public', incoming, x.stxname)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_statistic_ext AS x ON x.stxrelid = p.inc AND x.stxnamespace = incoming::regnamespace
    UNION ALL
    SELECT 'carry', p.ord, 'ext_statistics', row_number() OVER (ORDER BY p.ord, x.stxname), pg_get_statisticsobjdef(x.oid)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_statistic_ext AS x ON x.stxrelid = p.prod
     WHERE NOT EXISTS (SELECT 1 FROM pg_statistic_ext AS y WHERE y.stxrelid = p.inc AND y.stxname = x.stxname)
    UNION ALL
    SELECT 'carry', p.ord, 'column_statistics', row_number() OVER (ORDER BY p.ord, a.attnum, s.i), s.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_attribute AS a ON a.attrelid = p.prod AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_attribute AS i ON i.attrelid = p.inc AND i.attname = a.attname
     CROSS JOIN LATERAL (SELECT ARRAY(SELECT o FROM unnest(a.attoptions) AS o WHERE o NOT LIKE 'pg\_%' ORDER BY o) AS want,
                                ARRAY(SELECT o FROM unnest(i.attoptions) AS o WHERE o NOT LIKE 'pg\_%' ORDER BY o) AS have) AS o
     CROSS JOIN LATERAL (
           -- (PostgreSQL 17 stores the default as NULL, earlier versions as -1)
           SELECT 1, format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s', p.q_prod, a.attname, coalesce(a.attstattarget, -1))
            WHERE a.attstattarget IS DISTINCT FROM i.attstattarget
           UNION ALL
           SELECT 2, format('ALTER TABLE %s ALTER COLUMN %I RESET (%s)', p.q_prod, a.attname,
                            (SELECT string_agg(split_part(x, '=', 1), ', ') FROM unnest(o.have) AS x))
            WHERE o.want <> o.have AND cardinality(o.have) > 0
           UNION ALL
           SELECT 3, format('ALTER TABLE %s ALTER COLUMN %I SET (%s)', p.q_prod, a.attname, array_to_string(o.want, ', '))
            WHERE o.want <> o.have AND cardinality(o.want) > 0) AS s(i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_owner_grants(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'owner_grants', row_number() OVER (ORDER BY p.ord, x.i, x.k), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod
      JOIN pg_class AS ic ON ic.oid = p.inc
     CROSS JOIN LATERAL (
           SELECT 1, 0, format('ALTER TABLE %s OWNER TO %s', p.q_prod, c.relowner::regrole::text)
            WHERE ic.relowner <> c.relowner
           UNION ALL
           SELECT 2, 0, migrate_ext.set_acl_statement('TABLE', p.q_prod, c.relacl)
           UNION ALL
           SELECT 3, 0, migrate_ext.set_acl_statement('TABLE', p.q_out, NULL)
           UNION ALL
           SELECT 4, a.attnum, format('SELECT migrate_ext.set_column_acl(%L::regclass, %L::name, NULL::aclitem[])', p.q_out, a.attname)
             FROM pg_attribute AS a
            WHERE a.attrelid = p.prod AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
           UNION ALL
           SELECT 5, row_number() OVER (ORDER BY g.attname),
                  format('SELECT migrate_ext.set_column_acl(%L::regclass, %L::name, %L::aclitem[])', p.q_prod, g.attname,
                         (SELECT a.attacl FROM pg_attribute AS a WHERE a.attrelid = p.prod AND a.attname = g.attname))
             FROM (SELECT a.attname FROM pg_attribute AS a
                    WHERE a.attrelid IN (p.prod, p.inc) AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
                    GROUP BY a.attname) AS g) AS x(i, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_rls_policies(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'rls', x.i, x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod
     CROSS JOIN LATERAL (VALUES (1::bigint, format('ALTER TABLE %s %s ROW LEVEL SECURITY', p.q_prod,
                                                   CASE WHEN c.relrowsecurity THEN 'ENABLE' ELSE 'DISABLE' END)),
                                (2, format('ALTER TABLE %s %s ROW LEVEL SECURITY', p.q_prod,
                                           CASE WHEN c.relforcerowsecurity THEN 'FORCE' ELSE 'NO FORCE' END))) AS x(i, statement)
    UNION ALL
    SELECT 'carry', p.ord, 'policies', row_number() OVER (ORDER BY p.ord, x.i, x.polname, x.k), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
     CROSS JOIN LATERAL (
           SELECT 1, y.polname, 0, format('DROP POLICY %I ON %s', y.polname, p.q_prod)
             FROM pg_policy AS y WHERE y.polrelid = p.inc
           UNION ALL
           SELECT 2, y.polname, z.k, z.statement
             FROM pg_policy AS y
            CROSS JOIN LATERAL (
                  SELECT 1, format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', y.polname, p.q_prod,
                                   CASE WHEN y.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                                   CASE y.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                                 WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                                   (SELECT string_agg(migrate_ext.grantee_name(g), ', ' ORDER BY g) FROM unnest(y.polroles) AS g),
                                   coalesce(' USING (' || pg_get_expr(y.polqual, y.polrelid) || ')', ''),
                                   coalesce(' WITH CHECK (' || pg_get_expr(y.polwithcheck, y.polrelid) || ')', ''))
                  UNION ALL
                  SELECT 2, migrate_ext.comment_statement(format('POLICY %I ON %s', y.polname, p.q_prod), d.note)
                    FROM obj_description(y.oid, 'pg_policy') AS d(note) WHERE d.note IS NOT NULL) AS z(k, statement)
            WHERE y.polrelid = p.prod) AS x(i, polname, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_replica_identity(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'replica_identity', 1::bigint,
           format('ALTER TABLE %s REPLICA IDENTITY %s', p.q_prod,
                  CASE c.relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'
                       WHEN 'i' THEN 'USING INDEX ' || quote_ident((SELECT ic.relname FROM pg_index AS i
                                                                    JOIN pg_class AS ic ON ic.oid = i.indexrelid
                                                                   WHERE i.indrelid = p.prod AND i.indisreplident))
                       ELSE 'DEFAULT' END)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_storage(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'storage', x.i, x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod
      LEFT JOIN pg_class AS ct ON ct.oid = c.reltoastrelid
      JOIN pg_class AS i ON i.oid = p.inc
      LEFT JOIN pg_class AS it ON it.oid = i.reltoastrelid
     CROSS JOIN LATERAL (
           SELECT 1::bigint, format('ALTER TABLE %s RESET (%s)', p.q_prod,
                                    (SELECT string_agg(quote_ident(split_part(o, '=', 1)), ', ') FROM unnest(i.reloptions) AS o))
            WHERE i.reloptions IS NOT NULL
           UNION ALL
           SELECT 2, format('ALTER TABLE %s RESET (%s)', p.q_prod,
                            (SELECT string_agg('toast.' || quote_ident(split_part(o, '=', 1)), ', ') FROM unnest(it.reloptions) AS o))
            WHERE it.reloptions IS NOT NULL
           UNION ALL
           SELECT 3, format('ALTER TABLE %s SET (%s)', p.q_prod,
                            (SELECT string_agg(o, ', ')
                               FROM (SELECT quote_ident(split_part(o, '=', 1)) || ' = ' || quote_literal(substr(o, strpos(o, '=') + 1)) AS o
                                       FROM unnest(c.reloptions) AS o
                                     UNION ALL
                                     SELECT 'toast.' || quote_ident(split_part(o, '=', 1)) || ' = ' || quote_literal(substr(o, strpos(o, '=') + 1))
                                       FROM unnest(ct.reloptions) AS o) AS y))
            WHERE c.reloptions IS NOT NULL OR ct.reloptions IS NOT NULL) AS x(i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_sequences(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r record;
BEGIN
    stage := 'carry';
    slot := 'sequences';
    n := 0;
    FOR r IN SELECT p.ord, p.tbl, p.q_prod, a.attname, sq.relname AS seqname, sn.nspname AS seqschema, sq.relacl,
                    EXISTS (SELECT 1 FROM pg_attrdef AS ad
                              JOIN pg_attribute AS i ON i.attrelid = ad.adrelid AND i.attnum = ad.adnum
                              JOIN pg_depend AS dd ON dd.classid = 'pg_attrdef'::regclass AND dd.objid = ad.oid
                                                  AND dd.refclassid = 'pg_class'::regclass AND dd.refobjid = sq.oid
                             WHERE ad.adrelid = p.inc AND i.attname = a.attname) AS shared,
                    (SELECT s2.relname FROM pg_depend AS d2
                       JOIN pg_class AS s2 ON s2.oid = d2.objid AND s2.relkind = 'S'
                       JOIN pg_attribute AS i ON i.attrelid = p.inc AND i.attnum = d2.refobjsubid
                      WHERE d2.classid = 'pg_class'::regclass AND d2.refclassid = 'pg_class'::regclass
                        AND d2.refobjid = p.inc AND d2.deptype = 'i' AND i.attname = a.attname) AS identity_sequence
               FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
               JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                                  AND d.refobjid = p.prod AND d.deptype IN ('a', 'i')
               JOIN pg_class AS sq ON sq.oid = d.objid AND sq.relkind = 'S'
               JOIN pg_namespace AS sn ON sn.oid = sq.relnamespace
               JOIN pg_attribute AS a ON a.attrelid = p.prod AND a.attnum = d.refobjsubid
              ORDER BY p.ord, a.attnum LOOP
        tbl := r.ord;
        IF r.shared THEN
            RETURN QUERY SELECT stage, tbl, slot, n + x.i, x.s
                           FROM unnest(ARRAY[format('ALTER SEQUENCE %I.%I OWNED BY NONE', outgoing_to, r.seqname),
                                             format('ALTER SEQUENCE %I.%I SET SCHEMA %I', outgoing_to, r.seqname, r.seqschema),
                                             format('ALTER SEQUENCE %I.%I OWNED BY %s.%I', r.seqschema, r.seqname, r.q_prod, r.attname)])
                                WITH ORDINALITY AS x(s, i);
        ELSIF r.identity_sequence IS NOT NULL THEN
            RETURN QUERY SELECT stage, tbl, slot, n + x.i, x.s
                           FROM unnest(ARRAY[format('SELECT pg_catalog.setval(%L::regclass, greatest((SELECT last_value FROM %I.%I), (SELECT coalesce(max(%I), 0) FROM %s)))',
                                                    format('public.%I', r.identity_sequence), outgoing_to, r.seqname, r.attname, r.q_prod),
                                             migrate_ext.set_acl_statement('SEQUENCE', format('public.%I', r.identity_sequence), r.relacl),
                                             migrate_ext.set_acl_statement('SEQUENCE', format('%I.%I', outgoing_to, r.seqname), NULL)])
                                WITH ORDINALITY AS x(s, i);
        ELSE
            RAISE EXCEPTION 'column %.% uses sequence %.%, which %.% neither shares nor replaces with an identity',
                            r.q_prod, r.attname, r.seqschema, r.seqname, incoming, r.tbl
                  USING ERRCODE = 'feature_not_supported',
                        HINT = 'Nothing was changed. Build the incoming table with the same column default (LIKE ... INCLUDING ALL does).';
        END IF;
        n := n + 3;
    END LOOP;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_triggers(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'triggers', row_number() OVER (ORDER BY p.ord, x.i, x.tgname, x.k), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
     CROSS JOIN LATERAL (
           SELECT 1, g.tgname, 0, format('DROP TRIGGER %I ON %s', g.tgname, p.q_prod)
             FROM pg_trigger AS g WHERE g.tgrelid = p.inc AND NOT g.tgisinternal
           UNION ALL
           SELECT 2, g.tgname, z.k, z.statement
             FROM pg_trigger AS g
            CROSS JOIN LATERAL (
                  SELECT 1, pg_get_triggerdef(g.oid)
                  UNION ALL
                  SELECT 2, format('ALTER TABLE %s %s TRIGGER %I', p.q_prod,
                                   CASE g.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                                                    ELSE 'ENABLE REPLICA' END, g.tgname)
                   WHERE g.tgenabled <> 'O'
                  UNION ALL
                  SELECT 3, migrate_ext.comment_statement(format('TRIGGER %I ON %s', g.tgname, p.q_prod), d.note)
                    FROM obj_description(g.oid, 'pg_trigger') AS d(note) WHERE d.note IS NOT NULL) AS z(k, statement)
            WHERE g.tgrelid = p.prod AND NOT g.tgisinternal) AS x(i, tgname, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_comments(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'carry', p.ord, 'comments', row_number() OVER (ORDER BY p.ord, x.i, x.k1, x.k2), x.statement
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
     CROSS JOIN LATERAL (
           SELECT 1, 0, NULL::name, migrate_ext.comment_statement('TABLE ' || p.q_prod, obj_description(p.prod, 'pg_class'))
           UNION ALL
           SELECT 2, i.attnum, NULL, migrate_ext.comment_statement(format('COLUMN %s.%I', p.q_prod, i.attname), col_description(p.prod, a.attnum))
             FROM pg_attribute AS i LEFT JOIN pg_attribute AS a ON a.attrelid = p.prod AND a.attname = i.attname
            WHERE i.attrelid = p.inc AND i.attnum > 0 AND NOT i.attisdropped
              AND col_description(p.prod, a.attnum) IS DISTINCT FROM col_description(p.inc, i.attnum)
           UNION ALL
           SELECT 3, 0, i.conname, migrate_ext.comment_statement(format('CONSTRAINT %I ON %s', i.conname, p.q_prod),
                                                                 obj_description(k.oid, 'pg_constraint'))
             FROM pg_constraint AS i LEFT JOIN pg_constraint AS k ON k.conrelid = p.prod AND k.conname = i.conname
            WHERE i.conrelid = p.inc
              AND obj_description(k.oid, 'pg_constraint') IS DISTINCT FROM obj_description(i.oid, 'pg_constraint')
           UNION ALL
           SELECT 4, 0, ic.relname, migrate_ext.comment_statement(format('INDEX public.%I', ic.relname), obj_description(pc.oid, 'pg_class'))
             FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
             LEFT JOIN (pg_index AS pi JOIN pg_class AS pc ON pc.oid = pi.indexrelid)
                    ON pi.indrelid = p.prod AND pc.relname = ic.relname
            WHERE i.indrelid = p.inc
              AND obj_description(pc.oid, 'pg_class') IS DISTINCT FROM obj_description(ic.oid, 'pg_class')) AS x(i, k1, k2, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_views(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'repoint', w.ord, CASE v.relkind WHEN 'v' THEN 'views' ELSE 'matviews' END,
           row_number() OVER (ORDER BY w.ord, v.oid, x.i, x.k), x.statement
      FROM (SELECT d.dependent, min(d.ord) AS ord FROM migrate_ext.swap_view_dependents() AS d GROUP BY 1) AS w
      JOIN pg_class AS v ON v.oid = w.dependent
     CROSS JOIN LATERAL (SELECT v.oid::regclass AS view, pg_get_viewdef(v.oid) AS def,
                                coalesce(' WITH (' || array_to_string(v.reloptions, ', ') || ')', '') AS options) AS o
     CROSS JOIN LATERAL (
           SELECT 1, 0::bigint, format('CREATE OR REPLACE VIEW %s%s AS %s', o.view, o.options, rtrim(o.def, ';'))
            WHERE v.relkind = 'v'
           UNION ALL
           SELECT 2, 0, format('DROP MATERIALIZED VIEW %s', o.view) WHERE v.relkind = 'm'
           UNION ALL
           SELECT 3, 0, format('CREATE MATERIALIZED VIEW %s%s AS %s WITH %s', o.view, o.options, rtrim(o.def, ';'),
                               CASE WHEN v.relispopulated THEN 'DATA' ELSE 'NO DATA' END)
            WHERE v.relkind = 'm'
           UNION ALL
           SELECT 4, i.indexrelid::bigint, pg_get_indexdef(i.indexrelid) FROM pg_index AS i WHERE i.indrelid = v.oid AND v.relkind = 'm'
           UNION ALL
           SELECT 5, 0, format('ALTER MATERIALIZED VIEW %s OWNER TO %s', o.view, v.relowner::regrole::text) WHERE v.relkind = 'm'
           UNION ALL
           SELECT 6, 0, migrate_ext.set_acl_statement('TABLE', o.view::text, v.relacl) WHERE v.relkind = 'm'
           UNION ALL
           SELECT 7, 0, migrate_ext.comment_statement('MATERIALIZED VIEW ' || o.view, d.note)
             FROM obj_description(v.oid, 'pg_class') AS d(note) WHERE d.note IS NOT NULL AND v.relkind = 'm') AS x(i, k, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_other_policies(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'repoint', w.ord, 'other_policies', row_number() OVER (ORDER BY w.ord, p.polrelid, p.polname),
           format('ALTER POLICY %I ON %s%s%s', p.polname, p.polrelid::regclass,
                  coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', ''),
                  coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', ''))
      FROM (SELECT d.objid, min(d.ord) AS ord
              FROM migrate_ext.swap_dependents() AS d JOIN pg_policy AS p ON p.oid = d.objid
             WHERE d.catalog = 'pg_policy'::regclass AND NOT d.on_row_type AND p.polrelid <> d.rel
             GROUP BY 1) AS w
      JOIN pg_policy AS p ON p.oid = w.objid;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_functions(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT 'repoint', w.ord, 'functions', row_number() OVER (ORDER BY w.ord, f.oid, x.i), x.statement
      FROM (SELECT DISTINCT ON (d.objid) d.objid, d.ord, d.tbl, s.reltype, s.typarray
              FROM migrate_ext.swap_dependents() AS d JOIN migrate_ext.swapped_relations() AS s ON s.rel = d.rel
             WHERE d.catalog = 'pg_proc'::regclass
             ORDER BY d.objid, d.ord) AS w
      JOIN pg_proc AS f ON f.oid = w.objid
      JOIN pg_namespace AS ns ON ns.oid = f.pronamespace
     CROSS JOIN LATERAL (
           SELECT format('%I.%I(%s)', ns.nspname, f.proname,
                         (SELECT string_agg(format_type(a, NULL), ', ' ORDER BY i) FROM unnest(f.proargtypes::oid[]) WITH ORDINALITY AS x(a, i))) AS new_sig,
                  format('%I.%I(%s)', ns.nspname, f.proname,
                         (SELECT string_agg(CASE WHEN a = w.reltype THEN format('%I.%I', outgoing_to, w.tbl)
                                                 WHEN a = w.typarray THEN format('%I.%I[]', outgoing_to, w.tbl)
                                                 ELSE format_type(a, NULL) END, ', ' ORDER BY i)
                            FROM unnest(f.proargtypes::oid[]) WITH ORDINALITY AS x(a, i))) AS old_sig,
                  (f.prorettype IN (w.reltype, w.typarray)
                   OR w.reltype = ANY (coalesce(f.proallargtypes, f.proargtypes::oid[]))
                   OR w.typarray = ANY (coalesce(f.proallargtypes, f.proargtypes::oid[]))) AS type_bound,
                  rtrim(pg_get_functiondef(f.oid), E'\n') AS def) AS o
     CROSS JOIN LATERAL (
           SELECT 1, 'DROP ROUTINE ' || o.old_sig WHERE o.type_bound
           UNION ALL
           SELECT 2, o.def
           UNION ALL
           SELECT 3, format('ALTER ROUTINE %s OWNER TO %s', o.new_sig, f.proowner::regrole::text) WHERE o.type_bound
           UNION ALL
           SELECT 4, migrate_ext.set_acl_statement('FUNCTION', o.new_sig, f.proacl) WHERE o.type_bound
           UNION ALL
           SELECT 5, migrate_ext.comment_statement('ROUTINE ' || o.new_sig, d.note)
             FROM obj_description(f.oid, 'pg_proc') AS d(note) WHERE d.note IS NOT NULL AND o.type_bound) AS x(i, statement);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.plan_realtime(incoming text, outgoing_to text)
 RETURNS TABLE(stage text, tbl integer, slot text, n bigint, statement text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    r record;
    found_regclass boolean;
BEGIN
    stage := 'repoint';
    slot := 'realtime';
    n := 0;
    FOR r IN SELECT p.ord, p.prod, p.q_prod, p.q_out, k.tbl AS regclass_table, k.col AS attname
               FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
              CROSS JOIN migrate_ext.known_regclass_columns() AS k
              ORDER BY p.ord, 5, 6 LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1)', r.regclass_table, r.attname) INTO found_regclass USING r.prod;
        CONTINUE WHEN NOT found_regclass;
        tbl := r.ord;
        n := n + 1;
        statement := format('UPDATE %s SET %I = %L::regclass WHERE %I = %L::regclass',
                            r.regclass_table, r.attname, r.q_prod, r.attname, r.q_out);
        RETURN NEXT;
    END LOOP;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_lock_set(incoming text)
 RETURNS regclass[]
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_plan_order(stage text, slot text)
 RETURNS integer[]
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT ARRAY[array_position('{prepare,lock,link,detach,move_out,move_in,carry,repoint}'::text[], stage),
                 array_position('{own_fks,analyze,lock,inbound_fks,publications,move,ext_statistics,owner_grants,rls,'
                                'replica_identity,storage,sequences,column_statistics,policies,triggers,comments,views,'
                                'matviews,other_policies,functions,realtime,finish}'::text[], slot)];
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_plan(incoming text, outgoing_to text)
 RETURNS TABLE(step integer, phase text, statement text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.check_swap_invariant(outgoing_to text)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    leftovers text;
BEGIN
    SELECT string_agg(DISTINCT d.object, '; ')
      INTO leftovers
      FROM migrate_ext.swap_dependents(outgoing_to) AS d
     WHERE (d.deptype = 'n' OR d.catalog = 'pg_publication_rel'::regclass)
       AND coalesce(CASE d.catalog
                        WHEN 'pg_constraint'::regclass THEN (SELECT k.conrelid FROM pg_constraint AS k WHERE k.oid = d.objid)
                        WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger AS g WHERE g.oid = d.objid)
                        WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy AS p WHERE p.oid = d.objid)
                        WHEN 'pg_rewrite'::regclass THEN (SELECT w.ev_class FROM pg_rewrite AS w WHERE w.oid = d.objid)
                        WHEN 'pg_statistic_ext'::regclass THEN (SELECT x.stxrelid FROM pg_statistic_ext AS x WHERE x.oid = d.objid)
                        WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef AS a WHERE a.oid = d.objid)
                        WHEN 'pg_class'::regclass THEN d.objid
                    END, 0) NOT IN (SELECT s.rel FROM migrate_ext.swapped_relations(outgoing_to) AS s);
    IF leftovers IS NOT NULL THEN
        RAISE EXCEPTION 'objects outside schema % still depend on its tables: %', outgoing_to, leftovers
              USING ERRCODE = 'dependent_objects_still_exist',
                    HINT = 'Nothing was changed. Re-point or drop them first (a swap does not know how to carry them: report it).';
    END IF;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.launch_refusals()
 RETURNS TABLE(problem text, hint text)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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

    IF to_regnamespace('migrate_staging') IS NOT NULL THEN
        problem := 'schema migrate_staging holds objects migrate_ext did not put there: '
                   || migrate_ext.foreign_objects('migrate_staging', migrate_ext.staging_tables());
        IF problem IS NOT NULL THEN
            hint := 'They would be left behind, or read the new tables; move or drop them, then validate again.';
            RETURN NEXT;
        END IF;
    END IF;

    FOR problem IN SELECT format('%s %s', r.object, r.reason) FROM migrate_ext.swap_refusals() AS r LOOP
        hint := 'The swap fails closed on what it cannot carry: change or drop what is listed, launch, then re-create it.';
        RETURN NEXT;
    END LOOP;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.rollback_refusals(backup_timestamp text)
 RETURNS TABLE(problem text, hint text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
            SELECT 9, 0, format('%s %s', d.object, d.reason),
                   'The swap fails closed on what it cannot carry: change or drop what is listed, roll back, then re-create it.'
              FROM migrate_ext.swap_refusals() AS d) AS r
     ORDER BY r.i, r.k;
$function$;
COMMENT ON FUNCTION migrate_ext.rollback_refusals(text) IS 'Everything that stops rolling back a migration now; rollback_migration() refuses while this returns rows';

CREATE OR REPLACE FUNCTION migrate_ext.swap_refusal_list(what text, backup_timestamp text)
 RETURNS TABLE(problem text, hint text)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT r.problem, r.hint FROM migrate_ext.launch_refusals() AS r WHERE what = 'launch'
    UNION ALL
    SELECT r.problem, r.hint FROM migrate_ext.rollback_refusals(backup_timestamp) AS r WHERE what = 'rollback';
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.check_swap_refusals(what text, backup_timestamp text)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.counts_text(counts jsonb, nouns boolean, last_separator text DEFAULT ', '::text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT string_agg(CASE WHEN u.i = 1 THEN '' WHEN u.i = cardinality(migrate_ext.swapped_tables()) THEN last_separator ELSE ', ' END
                      || format('%s', counts->u.t)
                      || CASE WHEN nouns THEN ' ' || CASE u.t WHEN 'unified_profiles' THEN 'profiles' ELSE u.t END ELSE '' END,
                      '' ORDER BY u.i)
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS u(t, i);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_message(what text, ts text, backup_schema text, before jsonb, after jsonb, late jsonb, users bigint, lock jsonb)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT CASE what
           WHEN 'launch' THEN
               format('SUCCESS: launched %s. Production now has %s (before: %s); %s auth users created. The previous tables are in schema %s. '
                      'Locks held %s ms. To undo: SELECT migrate_ext.rollback_migration(%L);',
                      ts, migrate_ext.counts_text(after, true, ' and '), migrate_ext.counts_text(before, false),
                      users, backup_schema, lock->'lock_ms', ts)
           ELSE
               format('SUCCESS: rolled back %s. Production again has %s '
                      '(launched: %s, now in migrate_staging for a retry; %s of them created after the launch). '
                      '%s auth users created by the launch are kept. Locks held %s ms.',
                      ts, migrate_ext.counts_text(after, true, ' and '), migrate_ext.counts_text(before, false),
                      migrate_ext.counts_text(late, false, ' and '), users, lock->'lock_ms')
           END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.run_swap(incoming text, outgoing_to text, what text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.table_counts(schema_name text, created_since timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    t text;
    n bigint;
    counts jsonb := '{}'::jsonb;
BEGIN
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I WHERE $1 IS NULL OR %I >= $1', schema_name, t, migrate_ext.created_column(t))
           INTO n USING created_since;
        counts := counts || jsonb_build_object(t, n);
    END LOOP;
    RETURN counts;
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.swap_dry_run(what text, ts text, incoming text, outgoing_to text, new_users integer)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.perform_swap(what text, backup_timestamp text, dry_run boolean)
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
    v_lock := migrate_ext.run_swap(v_incoming, v_outgoing, what);

    IF what = 'launch' THEN
        INSERT INTO migrate_ext.migrations (backup_timestamp, state, launched_at, validation_run_id, counts, created_users)
        VALUES (v_ts, 'launched', now(), (SELECT max(v.run_id) FROM migrate_ext.validation_runs AS v),
                jsonb_build_object('production', v_after, 'backup', v_before, 'auth_users_created', v_users) || v_lock,
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
    RETURN migrate_ext.swap_message(what, v_ts, v_schema, v_before, v_after, v_late, v_users, v_lock);
END;
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.launch_clean_production(dry_run boolean DEFAULT false)
 RETURNS text
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT migrate_ext.perform_swap('launch', NULL, dry_run);
$function$;

CREATE OR REPLACE FUNCTION migrate_ext.rollback_migration(backup_timestamp text, dry_run boolean DEFAULT false)
 RETURNS text
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT migrate_ext.perform_swap('rollback', backup_timestamp, dry_run);
$function$;
COMMENT ON FUNCTION migrate_ext.rollback_migration(text,boolean) IS 'Swap the backup of a launch back into production; the launched tables go to migrate_staging, kept for a retry; dry_run => true returns every statement and changes nothing';


-- the extension's owner (not necessarily the role running the update) keeps
-- every privilege on the new objects, nobody else gets any
SELECT migrate_ext.close_extension_objects(e.extowner::pg_catalog.regrole)
  FROM pg_catalog.pg_extension AS e WHERE e.extname OPERATOR(pg_catalog.=) 'migrate_ext';
