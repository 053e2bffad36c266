-------------------------------------------------------------------------------
-- The swap engine (doc/swap-checklist.md): one plan, read from the
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

-- A COMMENT ON statement for obj (text such as TABLE public.x) setting
-- the comment description (NULL removes it)
CREATE FUNCTION migrate_ext.comment_statement(obj text, description text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('COMMENT ON %s IS %s', obj, quote_nullable(description));
$$;

-- The relations the swap locks: both sides of every swapped table, tables
-- whose foreign keys into them are re-pointed, tables whose policies
-- mention them, and the views over them that are replaced
CREATE FUNCTION migrate_ext.swap_lock_set(incoming text) RETURNS regclass[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH prod AS (
        SELECT c.oid FROM pg_class AS c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    )
    SELECT array_agg(DISTINCT r ORDER BY r)
      FROM (SELECT oid::regclass AS r FROM prod
            UNION ALL
            SELECT format('%I.%I', incoming, t)::regclass FROM unnest(migrate_ext.swapped_tables()) AS t
            UNION ALL
            SELECT k.conrelid::regclass FROM pg_constraint AS k
             WHERE k.contype = 'f' AND k.confrelid IN (SELECT oid FROM prod) AND k.conrelid NOT IN (SELECT oid FROM prod)
            UNION ALL
            SELECT p.polrelid::regclass FROM pg_depend AS d JOIN pg_policy AS p ON p.oid = d.objid
             WHERE d.classid = 'pg_policy'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid IN (SELECT oid FROM prod) AND p.polrelid NOT IN (SELECT oid FROM prod)
            UNION ALL
            SELECT v.oid::regclass FROM pg_depend AS d
              JOIN pg_rewrite AS w ON w.oid = d.objid
              JOIN pg_class AS v ON v.oid = w.ev_class
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid IN (SELECT oid FROM prod) AND v.relkind = 'v') AS s;
$$;

-- The swap's statements, in order, read from the catalog as it is now.
-- Phase 'prepare' runs before the locks (the foreign keys between the
-- incoming tables, validated; ANALYZE of the incoming tables), 'lock' takes
-- the locks, 'swap' is the work under them: the incoming tables' foreign
-- keys to other tables (validated), the moves, catalog-only carry-over and
-- re-pointing, the invariant.  Nothing is executed here.
CREATE FUNCTION migrate_ext.swap_plan(incoming text, outgoing_to text)
RETURNS TABLE (step integer, phase text, statement text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prepare text[] := '{}'::text[];
    late text[] := '{}'::text[];  -- after the moves, before re-pointing
    repoint text[] := '{}'::text[];
    before_move text[] := '{}'::text[];
    moves_out text[] := '{}'::text[];
    moves_in text[] := '{}'::text[];
    t text;
    prod oid;
    inc oid;
    q_prod text;                  -- public.t: production before the moves, the incoming table after
    q_inc text;                   -- incoming.t before the moves
    q_out text;                   -- outgoing_to.t after the moves
    def text;
    r record;
    s text;
    seen oid[] := '{}'::oid[];  -- views, policies and functions already planned
    foreign_keys text[] := '{}'::text[];  -- foreign keys of the incoming tables to other tables
    statements text[];
    referenced oid[] := '{}'::oid[];  -- tables the incoming tables' new foreign keys reference
    exclusive regclass[];
    found_regclass boolean;
BEGIN
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        q_prod := format('public.%I', t);
        q_inc := format('%I.%I', incoming, t);
        q_out := format('%I.%I', outgoing_to, t);
        prod := q_prod::regclass;
        inc := q_inc::regclass;

        -- foreign keys of the production table (item 16): the incoming table
        -- gets each one it lacks, pointing at the incoming side of a swapped
        -- table, added NOT VALID and validated.  Those between incoming
        -- tables lock nothing but them and are done before the locks; those
        -- to other tables (e.g. auth.users) lock the referenced table until
        -- commit, which must not last through the lock retries, so they are
        -- done under the locks and the referenced tables join the lock set
        FOR r IN SELECT k.conname, pg_get_constraintdef(k.oid) AS def, k.convalidated, k.confrelid
                   FROM pg_constraint AS k WHERE k.conrelid = prod AND k.contype = 'f' ORDER BY k.conname LOOP
            def := r.def;
            FOREACH s IN ARRAY migrate_ext.swapped_tables() LOOP
                def := replace(def, format(' REFERENCES public.%I(', s), format(' REFERENCES %I.%I(', incoming, s));
            END LOOP;
            IF EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conrelid = inc AND k.conname = r.conname
                          AND k.contype = 'f' AND pg_get_constraintdef(k.oid) = def) THEN
                CONTINUE;
            END IF;
            statements := '{}';
            IF EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conrelid = inc AND k.conname = r.conname) THEN
                statements := statements || format('ALTER TABLE %s DROP CONSTRAINT %I', q_inc, r.conname);
            END IF;
            IF r.convalidated THEN
                statements := statements || format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', q_inc, r.conname, def)
                                         || format('ALTER TABLE %s VALIDATE CONSTRAINT %I', q_inc, r.conname);
            ELSE
                statements := statements || format('ALTER TABLE %s ADD CONSTRAINT %I %s', q_inc, r.conname, def);
            END IF;
            IF r.confrelid IN (SELECT c.oid FROM pg_class AS c
                                WHERE c.relnamespace = 'public'::regnamespace
                                  AND c.relname = ANY (migrate_ext.swapped_tables())) THEN
                prepare := prepare || statements;
            ELSE
                foreign_keys := foreign_keys || statements;
                referenced := referenced || r.confrelid;
            END IF;
        END LOOP;
        -- planner statistics follow the table's OID (item 14)
        prepare := prepare || format('ANALYZE %s', q_inc);

        -- foreign keys of other tables into production (item 15): dropped
        -- before the moves, added again after them (same name and
        -- definition, so pointing at the new production) and validated
        FOR r IN SELECT k.conrelid::regclass AS child, k.conname, pg_get_constraintdef(k.oid) AS def, k.convalidated,
                        obj_description(k.oid, 'pg_constraint') AS note
                   FROM pg_constraint AS k
                  WHERE k.contype = 'f' AND k.confrelid = prod
                    AND k.conrelid NOT IN (SELECT c.oid FROM pg_class AS c
                                            WHERE c.relnamespace = 'public'::regnamespace
                                              AND c.relname = ANY (migrate_ext.swapped_tables()))
                  ORDER BY 1, 2 LOOP
            before_move := before_move || format('ALTER TABLE %s DROP CONSTRAINT %I', r.child, r.conname);
            IF r.convalidated THEN
                repoint := repoint || format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', r.child, r.conname, r.def)
                                   || format('ALTER TABLE %s VALIDATE CONSTRAINT %I', r.child, r.conname);
            ELSE
                repoint := repoint || format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.child, r.conname, r.def);
            END IF;
            IF r.note IS NOT NULL THEN
                repoint := repoint || migrate_ext.comment_statement(format('CONSTRAINT %I ON %s', r.conname, r.child), r.note);
            END IF;
        END LOOP;

        -- publication membership (item 6), with row filter and column list
        FOR r IN SELECT p.pubname, pg_get_expr(pr.prqual, pr.prrelid) AS qual,
                        (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                           FROM pg_attribute AS a WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)) AS cols
                   FROM pg_publication_rel AS pr JOIN pg_publication AS p ON p.oid = pr.prpubid
                  WHERE pr.prrelid = prod ORDER BY 1 LOOP
            before_move := before_move || format('ALTER PUBLICATION %I DROP TABLE %s', r.pubname, q_prod);
            repoint := repoint || format('ALTER PUBLICATION %I ADD TABLE %s%s%s', r.pubname, q_prod,
                                         coalesce(' (' || r.cols || ')', ''), coalesce(' WHERE (' || r.qual || ')', ''));
        END LOOP;

        -- extended statistics stay in their schema when a table moves (item 14)
        FOR r IN SELECT x.stxname FROM pg_statistic_ext AS x
                  WHERE x.stxrelid = prod AND x.stxnamespace = 'public'::regnamespace ORDER BY 1 LOOP
            before_move := before_move || format('ALTER STATISTICS public.%I SET SCHEMA %I', r.stxname, outgoing_to);
        END LOOP;
        moves_out := moves_out || format('ALTER TABLE %s SET SCHEMA %I', q_prod, outgoing_to);
        moves_in := moves_in || format('ALTER TABLE %s SET SCHEMA public', q_inc);
        FOR r IN SELECT x.stxname FROM pg_statistic_ext AS x
                  WHERE x.stxrelid = inc AND x.stxnamespace = incoming::regnamespace ORDER BY 1 LOOP
            moves_in := moves_in || format('ALTER STATISTICS %I.%I SET SCHEMA public', incoming, r.stxname);
        END LOOP;
        FOR r IN SELECT pg_get_statisticsobjdef(x.oid) AS def FROM pg_statistic_ext AS x
                  WHERE x.stxrelid = prod
                    AND NOT EXISTS (SELECT 1 FROM pg_statistic_ext AS y WHERE y.stxrelid = inc AND y.stxname = x.stxname)
                  ORDER BY x.stxname LOOP
            late := late || r.def;
        END LOOP;

        -- from here on public.t is the incoming table
        -- owner (item 1), then privileges, table and column (item 2)
        SELECT c.relowner::regrole::text AS owner, c.relacl, c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
               c.reloptions, (SELECT tc.reloptions FROM pg_class AS tc WHERE tc.oid = c.reltoastrelid) AS toast_options,
               NULL AS note
          INTO r FROM pg_class AS c WHERE c.oid = prod;
        IF (SELECT c.relowner FROM pg_class AS c WHERE c.oid = inc) <> r.owner::regrole THEN
            late := late || format('ALTER TABLE %s OWNER TO %s', q_prod, r.owner);
        END IF;
        late := late || migrate_ext.set_acl_statement('TABLE', q_prod, r.relacl);
        -- the table moved out (backup or staging) keeps no privileges but its
        -- owner's: its schema is closed too, this is a second barrier (the
        -- way back copies the privileges again)
        late := late || migrate_ext.set_acl_statement('TABLE', q_out, NULL);
        FOR s IN SELECT a.attname FROM pg_attribute AS a
                  WHERE a.attrelid = prod AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
                  ORDER BY a.attnum LOOP
            late := late || format('SELECT migrate_ext.set_column_acl(%L::regclass, %L::name, NULL::aclitem[])', q_out, s);
        END LOOP;
        FOR s IN SELECT a.attname FROM pg_attribute AS a
                  WHERE a.attnum > 0 AND NOT a.attisdropped
                    AND ((a.attrelid = prod AND a.attacl IS NOT NULL) OR (a.attrelid = inc AND a.attacl IS NOT NULL))
                  GROUP BY a.attname ORDER BY a.attname LOOP
            late := late || format('SELECT migrate_ext.set_column_acl(%L::regclass, %L::name, %L::aclitem[])', q_prod, s,
                                   (SELECT a.attacl FROM pg_attribute AS a WHERE a.attrelid = prod AND a.attname = s));
        END LOOP;
        -- row level security flags (item 3)
        late := late || format('ALTER TABLE %s %s ROW LEVEL SECURITY', q_prod,
                               CASE WHEN r.relrowsecurity THEN 'ENABLE' ELSE 'DISABLE' END)
                     || format('ALTER TABLE %s %s ROW LEVEL SECURITY', q_prod,
                               CASE WHEN r.relforcerowsecurity THEN 'FORCE' ELSE 'NO FORCE' END);
        -- replica identity (item 5): the incoming table has production's index names
        late := late || format('ALTER TABLE %s REPLICA IDENTITY %s', q_prod,
                               CASE r.relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'
                                    WHEN 'i' THEN 'USING INDEX ' || quote_ident((SELECT ic.relname FROM pg_index AS i
                                                                                 JOIN pg_class AS ic ON ic.oid = i.indexrelid
                                                                                WHERE i.indrelid = prod AND i.indisreplident))
                                    ELSE 'DEFAULT' END);
        -- storage parameters (item 7)
        IF (SELECT c.reloptions FROM pg_class AS c WHERE c.oid = inc) IS NOT NULL THEN
            late := late || format('ALTER TABLE %s RESET (%s)', q_prod,
                                   (SELECT string_agg(quote_ident(split_part(o, '=', 1)), ', ')
                                      FROM pg_class AS c, unnest(c.reloptions) AS o WHERE c.oid = inc));
        END IF;
        IF (SELECT tc.reloptions FROM pg_class AS c JOIN pg_class AS tc ON tc.oid = c.reltoastrelid WHERE c.oid = inc) IS NOT NULL THEN
            late := late || format('ALTER TABLE %s RESET (%s)', q_prod,
                                   (SELECT string_agg('toast.' || quote_ident(split_part(o, '=', 1)), ', ')
                                      FROM pg_class AS c JOIN pg_class AS tc ON tc.oid = c.reltoastrelid, unnest(tc.reloptions) AS o
                                     WHERE c.oid = inc));
        END IF;
        IF r.reloptions IS NOT NULL OR r.toast_options IS NOT NULL THEN
            late := late || format('ALTER TABLE %s SET (%s)', q_prod,
                                   (SELECT string_agg(o, ', ')
                                      FROM (SELECT quote_ident(split_part(o, '=', 1)) || ' = ' || quote_literal(substr(o, strpos(o, '=') + 1)) AS o
                                              FROM unnest(r.reloptions) AS o
                                            UNION ALL
                                            SELECT 'toast.' || quote_ident(split_part(o, '=', 1)) || ' = ' || quote_literal(substr(o, strpos(o, '=') + 1))
                                              FROM unnest(r.toast_options) AS o) AS x));
        END IF;
        -- sequences owned by production's columns (item 13).  A serial
        -- column's sequence is shared: staging's default calls it too, so it
        -- comes back to its schema, owned by the new column, and its values
        -- stay past every id ever issued.  An identity column has its own
        -- sequence on each side: the new one is set past the old one and
        -- past the column's values.
        FOR r IN SELECT a.attname, sq.relname AS seqname, sn.nspname AS seqschema, sq.relacl,
                        EXISTS (SELECT 1 FROM pg_attrdef AS ad
                                  JOIN pg_attribute AS i ON i.attrelid = ad.adrelid AND i.attnum = ad.adnum
                                  JOIN pg_depend AS dd ON dd.classid = 'pg_attrdef'::regclass AND dd.objid = ad.oid
                                                      AND dd.refclassid = 'pg_class'::regclass AND dd.refobjid = sq.oid
                                 WHERE ad.adrelid = inc AND i.attname = a.attname) AS shared,
                        (SELECT s2.relname FROM pg_depend AS d2
                           JOIN pg_class AS s2 ON s2.oid = d2.objid AND s2.relkind = 'S'
                           JOIN pg_attribute AS i ON i.attrelid = inc AND i.attnum = d2.refobjsubid
                          WHERE d2.classid = 'pg_class'::regclass AND d2.refclassid = 'pg_class'::regclass
                            AND d2.refobjid = inc AND d2.deptype = 'i' AND i.attname = a.attname) AS identity_sequence
                   FROM pg_depend AS d
                   JOIN pg_class AS sq ON sq.oid = d.objid AND sq.relkind = 'S'
                   JOIN pg_namespace AS sn ON sn.oid = sq.relnamespace
                   JOIN pg_attribute AS a ON a.attrelid = prod AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                    AND d.refobjid = prod AND d.deptype IN ('a', 'i')
                  ORDER BY a.attnum LOOP
            IF r.shared THEN
                late := late || format('ALTER SEQUENCE %I.%I OWNED BY NONE', outgoing_to, r.seqname)
                             || format('ALTER SEQUENCE %I.%I SET SCHEMA %I', outgoing_to, r.seqname, r.seqschema)
                             || format('ALTER SEQUENCE %I.%I OWNED BY %s.%I', r.seqschema, r.seqname, q_prod, r.attname);
            ELSIF r.identity_sequence IS NOT NULL THEN
                late := late || format('SELECT pg_catalog.setval(%L::regclass, greatest((SELECT last_value FROM %I.%I), (SELECT coalesce(max(%I), 0) FROM %s)))',
                                       format('public.%I', r.identity_sequence), outgoing_to, r.seqname, r.attname, q_prod);
                late := late || migrate_ext.set_acl_statement('SEQUENCE', format('public.%I', r.identity_sequence), r.relacl)
                             || migrate_ext.set_acl_statement('SEQUENCE', format('%I.%I', outgoing_to, r.seqname), NULL);
            ELSE
                RAISE EXCEPTION 'column %.% uses sequence %.%, which %.% neither shares nor replaces with an identity',
                                q_prod, r.attname, r.seqschema, r.seqname, incoming, t
                      USING ERRCODE = 'feature_not_supported',
                            HINT = 'Nothing was changed. Build the incoming table with the same column default (LIKE ... INCLUDING ALL does).';
            END IF;
        END LOOP;

        -- per-column statistics targets and options (item 12); options
        -- named pg_* are the server's own, not the user's
        FOR r IN SELECT p.attname, p.attstattarget AS want_target, i.attstattarget AS have_target,
                        ARRAY(SELECT o FROM unnest(p.attoptions) AS o WHERE o NOT LIKE 'pg\_%' ORDER BY o) AS want,
                        ARRAY(SELECT o FROM unnest(i.attoptions) AS o WHERE o NOT LIKE 'pg\_%' ORDER BY o) AS have
                   FROM pg_attribute AS p JOIN pg_attribute AS i ON i.attrelid = inc AND i.attname = p.attname
                  WHERE p.attrelid = prod AND p.attnum > 0 AND NOT p.attisdropped ORDER BY p.attnum LOOP
            -- (PostgreSQL 17 stores the default as NULL, earlier versions as -1)
            IF r.want_target IS DISTINCT FROM r.have_target THEN
                late := late || format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s', q_prod, r.attname,
                                       coalesce(r.want_target, -1));
            END IF;
            IF r.want <> r.have AND cardinality(r.have) > 0 THEN
                late := late || format('ALTER TABLE %s ALTER COLUMN %I RESET (%s)', q_prod, r.attname,
                                       (SELECT string_agg(split_part(o, '=', 1), ', ') FROM unnest(r.have) AS o));
            END IF;
            IF r.want <> r.have AND cardinality(r.want) > 0 THEN
                late := late || format('ALTER TABLE %s ALTER COLUMN %I SET (%s)', q_prod, r.attname, array_to_string(r.want, ', '));
            END IF;
        END LOOP;

        -- policies (item 4) and triggers with their enabled state (item 9):
        -- the incoming table's own are dropped, production's created
        FOR r IN SELECT p.polname FROM pg_policy AS p WHERE p.polrelid = inc ORDER BY 1 LOOP
            late := late || format('DROP POLICY %I ON %s', r.polname, q_prod);
        END LOOP;
        FOR r IN SELECT p.polname, p.polpermissive, p.polcmd,
                        (SELECT string_agg(migrate_ext.grantee_name(g), ', ' ORDER BY g) FROM unnest(p.polroles) AS g) AS roles,
                        pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check,
                        obj_description(p.oid, 'pg_policy') AS note
                   FROM pg_policy AS p WHERE p.polrelid = prod ORDER BY 1 LOOP
            late := late || format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', r.polname, q_prod,
                                   CASE WHEN r.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                                   CASE r.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                                 WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                                   r.roles, coalesce(' USING (' || r.qual || ')', ''),
                                   coalesce(' WITH CHECK (' || r.with_check || ')', ''));
            IF r.note IS NOT NULL THEN
                late := late || migrate_ext.comment_statement(format('POLICY %I ON %s', r.polname, q_prod), r.note);
            END IF;
        END LOOP;
        FOR r IN SELECT g.tgname FROM pg_trigger AS g WHERE g.tgrelid = inc AND NOT g.tgisinternal ORDER BY 1 LOOP
            late := late || format('DROP TRIGGER %I ON %s', r.tgname, q_prod);
        END LOOP;
        FOR r IN SELECT g.tgname, g.tgenabled, pg_get_triggerdef(g.oid) AS def, obj_description(g.oid, 'pg_trigger') AS note
                   FROM pg_trigger AS g WHERE g.tgrelid = prod AND NOT g.tgisinternal ORDER BY 1 LOOP
            late := late || r.def;
            IF r.tgenabled <> 'O' THEN
                late := late || format('ALTER TABLE %s %s TRIGGER %I', q_prod,
                                       CASE r.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                                                        ELSE 'ENABLE REPLICA' END, r.tgname);
            END IF;
            IF r.note IS NOT NULL THEN
                late := late || migrate_ext.comment_statement(format('TRIGGER %I ON %s', r.tgname, q_prod), r.note);
            END IF;
        END LOOP;


        -- comments (item 8): the table, its columns, constraints and indexes
        late := late || migrate_ext.comment_statement('TABLE ' || q_prod, obj_description(prod, 'pg_class'));
        FOR r IN SELECT i.attname, col_description(prod, p.attnum) AS want, col_description(inc, i.attnum) AS have
                   FROM pg_attribute AS i LEFT JOIN pg_attribute AS p ON p.attrelid = prod AND p.attname = i.attname
                  WHERE i.attrelid = inc AND i.attnum > 0 AND NOT i.attisdropped ORDER BY i.attnum LOOP
            IF r.want IS DISTINCT FROM r.have THEN
                late := late || migrate_ext.comment_statement(format('COLUMN %s.%I', q_prod, r.attname), r.want);
            END IF;
        END LOOP;
        FOR r IN SELECT i.conname, obj_description(p.oid, 'pg_constraint') AS want, obj_description(i.oid, 'pg_constraint') AS have
                   FROM pg_constraint AS i LEFT JOIN pg_constraint AS p ON p.conrelid = prod AND p.conname = i.conname
                  WHERE i.conrelid = inc ORDER BY 1 LOOP
            IF r.want IS DISTINCT FROM r.have THEN
                late := late || migrate_ext.comment_statement(format('CONSTRAINT %I ON %s', r.conname, q_prod), r.want);
            END IF;
        END LOOP;
        FOR r IN SELECT ic.relname, obj_description(pc.oid, 'pg_class') AS want, obj_description(ic.oid, 'pg_class') AS have
                   FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
                   LEFT JOIN (pg_index AS p JOIN pg_class AS pc ON pc.oid = p.indexrelid)
                          ON p.indrelid = prod AND pc.relname = ic.relname
                  WHERE i.indrelid = inc ORDER BY 1 LOOP
            IF r.want IS DISTINCT FROM r.have THEN
                late := late || migrate_ext.comment_statement(format('INDEX public.%I', r.relname), r.want);
            END IF;
        END LOOP;

        -- views over the table (item 17): replaced with the same text and
        -- options, which binds them to the new table
        FOR r IN SELECT DISTINCT v.oid, v.oid::regclass AS view, v.reloptions, pg_get_viewdef(v.oid) AS def
                   FROM pg_depend AS d
                   JOIN pg_rewrite AS w ON w.oid = d.objid
                   JOIN pg_class AS v ON v.oid = w.ev_class
                  WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                    AND d.refobjid = prod AND v.oid <> prod AND v.relkind = 'v' AND NOT v.oid = ANY (seen)
                  ORDER BY v.oid LOOP
            seen := seen || r.oid;
            repoint := repoint || format('CREATE OR REPLACE VIEW %s%s AS %s', r.view,
                                         coalesce(' WITH (' || array_to_string(r.reloptions, ', ') || ')', ''),
                                         rtrim(r.def, ';'));
        END LOOP;
        -- materialized views (item 18): dropped and created again, with
        -- their indexes, owner, privileges and comment, and populated
        FOR r IN SELECT DISTINCT v.oid, v.oid::regclass AS view, v.relowner::regrole::text AS owner, v.relacl,
                        v.reloptions, v.relispopulated, pg_get_viewdef(v.oid) AS def, obj_description(v.oid, 'pg_class') AS note
                   FROM pg_depend AS d
                   JOIN pg_rewrite AS w ON w.oid = d.objid
                   JOIN pg_class AS v ON v.oid = w.ev_class
                  WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                    AND d.refobjid = prod AND v.relkind = 'm' AND NOT v.oid = ANY (seen)
                  ORDER BY v.oid LOOP
            seen := seen || r.oid;
            repoint := repoint || format('DROP MATERIALIZED VIEW %s', r.view)
                               || format('CREATE MATERIALIZED VIEW %s%s AS %s WITH %s', r.view,
                                         coalesce(' WITH (' || array_to_string(r.reloptions, ', ') || ')', ''),
                                         rtrim(r.def, ';'), CASE WHEN r.relispopulated THEN 'DATA' ELSE 'NO DATA' END);
            FOR s IN SELECT pg_get_indexdef(i.indexrelid) FROM pg_index AS i WHERE i.indrelid = r.oid ORDER BY i.indexrelid LOOP
                repoint := repoint || s;
            END LOOP;
            repoint := repoint || format('ALTER MATERIALIZED VIEW %s OWNER TO %s', r.view, r.owner)
                               || migrate_ext.set_acl_statement('TABLE', r.view::text, r.relacl);
            IF r.note IS NOT NULL THEN
                repoint := repoint || migrate_ext.comment_statement('MATERIALIZED VIEW ' || r.view, r.note);
            END IF;
        END LOOP;

        -- policies of other tables that mention the table (item 19): re-parsed
        FOR r IN SELECT DISTINCT p.oid, p.polrelid::regclass AS tbl, p.polname, pg_get_expr(p.polqual, p.polrelid) AS qual,
                        pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
                   FROM pg_depend AS d JOIN pg_policy AS p ON p.oid = d.objid
                  WHERE d.classid = 'pg_policy'::regclass AND d.refclassid = 'pg_class'::regclass
                    AND d.refobjid = prod AND p.polrelid <> prod AND NOT p.oid = ANY (seen)
                  ORDER BY 2, 3 LOOP
            seen := seen || r.oid;
            repoint := repoint || format('ALTER POLICY %I ON %s%s%s', r.polname, r.tbl, coalesce(' USING (' || r.qual || ')', ''),
                                         coalesce(' WITH CHECK (' || r.with_check || ')', ''));
        END LOOP;

        -- functions bound to the table (item 20): a BEGIN ATOMIC body is
        -- replaced; a routine taking or returning the row type is dropped
        -- and created for the new row type, with its owner, privileges and
        -- comment
        FOR r IN SELECT DISTINCT f.oid, pg_get_functiondef(f.oid) AS def, f.proowner::regrole::text AS owner, f.proacl,
                        obj_description(f.oid, 'pg_proc') AS note,
                        format('%I.%I(%s)', n.nspname, f.proname,
                               (SELECT string_agg(format_type(a, NULL), ', ' ORDER BY i) FROM unnest(f.proargtypes::oid[]) WITH ORDINALITY AS x(a, i))) AS new_sig,
                        format('%I.%I(%s)', n.nspname, f.proname,
                               (SELECT string_agg(CASE WHEN a = c.reltype THEN format('%I.%I', outgoing_to, t)
                                                       WHEN a = ty.typarray THEN format('%I.%I[]', outgoing_to, t)
                                                       ELSE format_type(a, NULL) END, ', ' ORDER BY i)
                                  FROM unnest(f.proargtypes::oid[]) WITH ORDINALITY AS x(a, i))) AS old_sig,
                        (f.prorettype IN (c.reltype, ty.typarray)
                         OR c.reltype = ANY (coalesce(f.proallargtypes, f.proargtypes::oid[]))
                         OR ty.typarray = ANY (coalesce(f.proallargtypes, f.proargtypes::oid[]))) AS type_bound
                   FROM pg_class AS c
                   JOIN pg_type AS ty ON ty.oid = c.reltype
                   JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass
                    AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid)
                      OR (d.refclassid = 'pg_type'::regclass AND d.refobjid IN (c.reltype, ty.typarray)))
                   JOIN pg_proc AS f ON f.oid = d.objid
                   JOIN pg_namespace AS n ON n.oid = f.pronamespace
                  WHERE c.oid = prod AND NOT f.oid = ANY (seen)
                  ORDER BY f.oid LOOP
            seen := seen || r.oid;
            IF NOT r.type_bound THEN
                repoint := repoint || rtrim(r.def, E'\n');
                CONTINUE;
            END IF;
            repoint := repoint || ('DROP ROUTINE ' || r.old_sig) || rtrim(r.def, E'\n')
                               || format('ALTER ROUTINE %s OWNER TO %s', r.new_sig, r.owner)
                               || migrate_ext.set_acl_statement('FUNCTION', r.new_sig, r.proacl);
            IF r.note IS NOT NULL THEN
                repoint := repoint || migrate_ext.comment_statement('ROUTINE ' || r.new_sig, r.note);
            END IF;
        END LOOP;

        -- regclass values in the tables the swap knows (item 23,
        -- realtime.subscription); no other table is ever updated
        FOR r IN SELECT k.tbl, k.col AS attname FROM migrate_ext.known_regclass_columns() AS k ORDER BY 1, 2 LOOP
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1)', r.tbl, r.attname) INTO found_regclass USING prod;
            IF found_regclass THEN
                repoint := repoint || format('UPDATE %s SET %I = %L::regclass WHERE %I = %L::regclass',
                                             r.tbl, r.attname, q_prod, r.attname, q_out);
            END IF;
        END LOOP;
    END LOOP;

    -- PostgREST reloads its schema cache when this commits (item 29)
    repoint := repoint || 'NOTIFY pgrst, ''reload schema'''::text
                       || format('SELECT migrate_ext.check_swap_invariant(%L::text)', outgoing_to);

    -- referenced tables are locked in SHARE ROW EXCLUSIVE mode (what adding
    -- a foreign key takes); swapped ones are locked exclusively anyway
    exclusive := migrate_ext.swap_lock_set(incoming);
    referenced := ARRAY(SELECT DISTINCT x FROM unnest(referenced) AS x
                         WHERE NOT x = ANY (exclusive::oid[])
                           AND NOT x IN (SELECT c.oid FROM pg_class AS c
                                          WHERE c.relnamespace IN ('public'::regnamespace, incoming::regnamespace)
                                            AND c.relname = ANY (migrate_ext.swapped_tables()))
                         ORDER BY x);
    RETURN QUERY
        SELECT (row_number() OVER ())::integer, x.phase, x.statement
          FROM (SELECT 'prepare' AS phase, p AS statement, 1 AS part, i FROM unnest(prepare) WITH ORDINALITY AS u(p, i)
                UNION ALL
                SELECT 'lock', format('SELECT migrate_ext.lock_for_swap(%L::regclass[], %L::regclass[])',
                                      exclusive, referenced::regclass[]), 2, 1
                UNION ALL
                SELECT 'swap', p, 3, i FROM unnest(foreign_keys) WITH ORDINALITY AS u(p, i)
                UNION ALL
                SELECT 'swap', p, 4, i FROM unnest(before_move) WITH ORDINALITY AS u(p, i)
                UNION ALL
                SELECT 'swap', p, 5, i FROM unnest(moves_out) WITH ORDINALITY AS u(p, i)
                UNION ALL
                SELECT 'swap', p, 6, i FROM unnest(moves_in) WITH ORDINALITY AS u(p, i)
                UNION ALL
                SELECT 'swap', p, 7, i FROM unnest(late) WITH ORDINALITY AS u(p, i)
                UNION ALL
                SELECT 'swap', p, 8, i FROM unnest(repoint) WITH ORDINALITY AS u(p, i)
                ORDER BY part, i) AS x;
END;
$$;

-- Item 33: after the moves nothing outside the tables moved to
-- outgoing_to may still depend on them (their own constraints, triggers,
-- policies, rules and statistics may); raises naming every such object
CREATE FUNCTION migrate_ext.check_swap_invariant(outgoing_to text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    leftovers text;
BEGIN
    WITH moved AS (
        SELECT c.oid, c.reltype, ty.typarray
          FROM pg_class AS c JOIN pg_type AS ty ON ty.oid = c.reltype
         WHERE c.relnamespace = outgoing_to::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
    ), dependents AS (
        SELECT d.classid, d.objid, d.objsubid
          FROM pg_depend AS d, moved AS m
         WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = m.oid)
             OR (d.refclassid = 'pg_type'::regclass AND d.refobjid IN (m.reltype, m.typarray)))
           AND (d.deptype = 'n' OR d.classid = 'pg_publication_rel'::regclass)
    )
    SELECT string_agg(DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid), '; ')
      INTO leftovers
      FROM dependents AS d
     WHERE coalesce(CASE d.classid
                        WHEN 'pg_constraint'::regclass THEN (SELECT k.conrelid FROM pg_constraint AS k WHERE k.oid = d.objid)
                        WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger AS g WHERE g.oid = d.objid)
                        WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy AS p WHERE p.oid = d.objid)
                        WHEN 'pg_rewrite'::regclass THEN (SELECT w.ev_class FROM pg_rewrite AS w WHERE w.oid = d.objid)
                        WHEN 'pg_statistic_ext'::regclass THEN (SELECT x.stxrelid FROM pg_statistic_ext AS x WHERE x.oid = d.objid)
                        WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef AS a WHERE a.oid = d.objid)
                        WHEN 'pg_class'::regclass THEN d.objid
                    END, 0) NOT IN (SELECT oid FROM moved);
    IF leftovers IS NOT NULL THEN
        RAISE EXCEPTION 'objects outside schema % still depend on its tables: %', outgoing_to, leftovers
              USING ERRCODE = 'dependent_objects_still_exist',
                    HINT = 'Nothing was changed. Re-point or drop them first (a swap does not know how to carry them: report it).';
    END IF;
END;
$$;
