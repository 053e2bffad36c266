-------------------------------------------------------------------------------
-- The swap engine's generators (doc/swap-checklist.md): one function
-- per carried property, each reading the catalog as it is now and returning
-- its statements as (stage, tbl, slot, n, statement).  stage says when a
-- statement runs (prepare, lock, link, detach, move_out, move_in, carry,
-- repoint), tbl is the table's place in swapped_tables(), slot the
-- property, n the order within them; swap_plan() (sql/82) is their ordered
-- union.  incoming is the schema whose tables come in (migrate_staging,
-- or a backup on the way back), outgoing_to where production's go.
--
-- Every definition is read with search_path = pg_catalog, so the deparsed
-- text names public.<table>: run after the moves, it binds to the table
-- that is then in public.  q_prod (public.t) is production before the
-- moves and the incoming table after them.
-------------------------------------------------------------------------------

-- A COMMENT ON statement for obj (text such as TABLE public.x) setting
-- the comment description (NULL removes it)
CREATE FUNCTION migrate_ext.comment_statement(obj text, description text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('COMMENT ON %s IS %s', obj, quote_nullable(description));
$$;

-- Each swapped table on both sides of a swap: production and incoming
-- (both must exist), and the quoted names before and after the moves
CREATE FUNCTION migrate_ext.swap_pairs(incoming text, outgoing_to text)
RETURNS TABLE (ord integer, tbl text, prod oid, inc oid, q_prod text, q_inc text, q_out text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.ord::integer, t.name, format('public.%I', t.name)::regclass::oid,
           format('%I.%I', incoming, t.name)::regclass::oid,
           format('public.%I', t.name), format('%I.%I', incoming, t.name), format('%I.%I', outgoing_to, t.name)
      FROM unnest(migrate_ext.swapped_tables()) WITH ORDINALITY AS t(name, ord);
$$;

-- A constraint definition with its references to production tables turned
-- into references to the same tables in schema to_schema
CREATE FUNCTION migrate_ext.references_in(def text, to_schema text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY migrate_ext.swapped_tables() LOOP
        def := replace(def, format(' REFERENCES public.%I(', s), format(' REFERENCES %I.%I(', to_schema, s));
    END LOOP;
    RETURN def;
END;
$$;

-- Statements adding a foreign key (NOT VALID then validated, when the
-- original is validated), and dropping one of the same name first
CREATE FUNCTION migrate_ext.add_foreign_key_statements(target text, conname name, def text, validated boolean,
                                                       drop_first boolean DEFAULT false)
RETURNS TABLE (i integer, statement text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.i, x.statement
      FROM (VALUES (1, CASE WHEN drop_first THEN format('ALTER TABLE %s DROP CONSTRAINT %I', target, conname) END),
                   (2, format('ALTER TABLE %s ADD CONSTRAINT %I %s%s', target, conname, def,
                              CASE WHEN validated THEN ' NOT VALID' ELSE '' END)),
                   (3, CASE WHEN validated THEN format('ALTER TABLE %s VALIDATE CONSTRAINT %I', target, conname) END)) AS x(i, statement)
     WHERE x.statement IS NOT NULL;
$$;

-- Foreign keys of the production tables that the incoming tables lack
-- (item 16), pointing at the incoming side of a swapped table
CREATE FUNCTION migrate_ext.missing_foreign_keys(incoming text, outgoing_to text)
RETURNS TABLE (ord integer, q_inc text, conname name, def text, validated boolean, dst regclass, dst_swapped boolean,
               in_incoming boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.ord, p.q_inc, f.conname, x.def, k.convalidated, f.dst, f.dst_swapped, i.oid IS NOT NULL
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN migrate_ext.swap_foreign_keys(true) AS f ON f.src = p.prod
      JOIN pg_constraint AS k ON k.oid = f.conoid
     CROSS JOIN LATERAL (SELECT migrate_ext.references_in(pg_get_constraintdef(k.oid), incoming) AS def) AS x
      LEFT JOIN pg_constraint AS i ON i.conrelid = p.inc AND i.conname = f.conname
     WHERE NOT coalesce(i.contype = 'f' AND pg_get_constraintdef(i.oid) = x.def, false);
$$;

-- Item 16: the incoming table gets each foreign key it lacks, added NOT
-- VALID and validated.  Those between incoming tables lock nothing but
-- them and are done before the locks; those to other tables (e.g.
-- auth.users) lock the referenced table until commit, which must not last
-- through the lock retries, so they are done under the locks (link) and
-- the referenced tables join the lock set
CREATE FUNCTION migrate_ext.plan_own_foreign_keys(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN m.dst_swapped THEN 'prepare' ELSE 'link' END, m.ord, 'own_fks',
           row_number() OVER (ORDER BY m.ord, m.conname, s.i), s.statement
      FROM migrate_ext.missing_foreign_keys(incoming, outgoing_to) AS m
     CROSS JOIN LATERAL migrate_ext.add_foreign_key_statements(m.q_inc, m.conname, m.def, m.validated, m.in_incoming) AS s;
$$;

-- Item 15: foreign keys of other tables into production are dropped before
-- the moves and added again after them (same name and definition, so
-- pointing at the new production), validated, with their comment
CREATE FUNCTION migrate_ext.plan_inbound_foreign_keys(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 6: publication membership, with row filter and column list
CREATE FUNCTION migrate_ext.plan_publications(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- The moves themselves: production out, then the incoming tables in
CREATE FUNCTION migrate_ext.plan_moves(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'move_out', p.ord, 'move', 1::bigint, format('ALTER TABLE %s SET SCHEMA %I', p.q_prod, outgoing_to)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
    UNION ALL
    SELECT 'move_in', p.ord, 'move', 1, format('ALTER TABLE %s SET SCHEMA public', p.q_inc)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p;
$$;

-- Item 14: planner statistics follow the table's OID (the incoming tables
-- are analyzed), extended statistics stay in their schema when a table
-- moves (moved along, or created when the incoming table lacks them);
-- item 12: per-column statistics targets and options, where options named
-- pg_* are the server's own, not the user's
CREATE FUNCTION migrate_ext.plan_statistics(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Items 1 and 2: owner, then privileges, table and column; the table
-- moved out (backup or staging) keeps no privileges but its owner's: its
-- schema is closed too, this is a second barrier (the way back copies the
-- privileges again)
CREATE FUNCTION migrate_ext.plan_owner_grants(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 3: row level security flags; item 4: policies, the incoming
-- table's own dropped, production's created with their comment
CREATE FUNCTION migrate_ext.plan_rls_policies(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 5: replica identity (the incoming table has production's index names)
CREATE FUNCTION migrate_ext.plan_replica_identity(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'carry', p.ord, 'replica_identity', 1::bigint,
           format('ALTER TABLE %s REPLICA IDENTITY %s', p.q_prod,
                  CASE c.relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'
                       WHEN 'i' THEN 'USING INDEX ' || quote_ident((SELECT ic.relname FROM pg_index AS i
                                                                    JOIN pg_class AS ic ON ic.oid = i.indexrelid
                                                                   WHERE i.indrelid = p.prod AND i.indisreplident))
                       ELSE 'DEFAULT' END)
      FROM migrate_ext.swap_pairs(incoming, outgoing_to) AS p
      JOIN pg_class AS c ON c.oid = p.prod;
$$;

-- Item 7: storage parameters, the table's and its TOAST table's: the
-- incoming table's reset, production's set
CREATE FUNCTION migrate_ext.plan_storage(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 13: sequences owned by production's columns.  A serial column's
-- sequence is shared: the incoming default calls it too, so it comes back
-- to its schema, owned by the new column, and its values stay past every
-- id ever issued.  An identity column has its own sequence on each side:
-- the new one is set past the old one and past the column's values.
CREATE FUNCTION migrate_ext.plan_sequences(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 9: triggers with their enabled state and comment, the incoming
-- table's own dropped, production's created
CREATE FUNCTION migrate_ext.plan_triggers(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
            WHERE g.tgrelid = p.prod AND NOT g.tgisinternal
           UNION ALL
           -- the table moved out (backup, or staging after a rollback) is
           -- inert: a cascade from a live table must not run the
           -- application's triggers on it (they write to live tables);
           -- coming back, it gets production's triggers and states again
           SELECT 3, '', 0, format('ALTER TABLE %s DISABLE TRIGGER USER', p.q_out)
            WHERE EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = p.prod AND NOT g.tgisinternal)) AS x(i, tgname, k, statement);
$$;

-- Item 8: comments, the table's, then those of its columns, constraints
-- and indexes that differ from production's
CREATE FUNCTION migrate_ext.plan_comments(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 17: views over the production tables, replaced with the same text
-- and options, which binds them to the new tables; item 18: materialized
-- views, dropped and created again, with their indexes, owner, privileges
-- and comment, and populated.  Each under the first table it reads.
CREATE FUNCTION migrate_ext.plan_views(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 19: policies of other tables that mention a production table are
-- re-parsed, each under the first table it mentions
CREATE FUNCTION migrate_ext.plan_other_policies(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'repoint', w.ord, 'other_policies', row_number() OVER (ORDER BY w.ord, p.polrelid, p.polname),
           format('ALTER POLICY %I ON %s%s%s', p.polname, p.polrelid::regclass,
                  coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', ''),
                  coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', ''))
      FROM (SELECT d.objid, min(d.ord) AS ord
              FROM migrate_ext.swap_dependents() AS d JOIN pg_policy AS p ON p.oid = d.objid
             WHERE d.catalog = 'pg_policy'::regclass AND NOT d.on_row_type AND p.polrelid <> d.rel
             GROUP BY 1) AS w
      JOIN pg_policy AS p ON p.oid = w.objid;
$$;

-- Item 20: functions bound to a production table, each under the first
-- table it is bound to: a BEGIN ATOMIC body is replaced; a routine taking
-- or returning the row type is dropped and created for the new row type,
-- with its owner, privileges and comment
CREATE FUNCTION migrate_ext.plan_functions(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- Item 23: regclass values naming a production table in the tables the
-- swap knows (known_regclass_columns(): realtime.subscription) are set to
-- the new table; no other table is ever updated
CREATE FUNCTION migrate_ext.plan_realtime(incoming text, outgoing_to text)
RETURNS TABLE (stage text, tbl integer, slot text, n bigint, statement text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;
