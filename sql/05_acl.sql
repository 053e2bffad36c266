-------------------------------------------------------------------------------
-- Privileges as data: make an object's grants exactly a given ACL.  Used to
-- close staging, to give a swapped-in table production's grants, and to
-- close backups and the schemas that hold them.
-------------------------------------------------------------------------------

-- A role name for GRANT and REVOKE (0 is PUBLIC); regrole's text is
-- already quoted where the name needs it
CREATE FUNCTION migrate_ext.grantee_name(grantee oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END;
$$;

-- Make the privileges on a table (kind TABLE, also views), a sequence, a
-- function (kind FUNCTION) or a schema exactly acl: revoke every other
-- grant first (default privileges may have added some), then grant; NULL
-- means the default.  target is SQL text naming the object, quoted.
CREATE FUNCTION migrate_ext.set_acl(kind text, target text, acl aclitem[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_acl aclitem[];
    defaults aclitem[];
    owner oid;
    g record;
BEGIN
    IF kind IN ('TABLE', 'SEQUENCE') THEN
        SELECT c.relacl, c.relowner INTO current_acl, owner FROM pg_class AS c WHERE c.oid = target::regclass;
    ELSIF kind = 'FUNCTION' THEN
        SELECT p.proacl, p.proowner INTO current_acl, owner FROM pg_proc AS p WHERE p.oid = target::regprocedure;
    ELSIF kind = 'SCHEMA' THEN
        SELECT n.nspacl, n.nspowner INTO current_acl, owner FROM pg_namespace AS n WHERE n.oid = target::regnamespace;
    ELSE
        RAISE EXCEPTION 'set_acl(): unknown object kind %', kind
              USING ERRCODE = 'invalid_parameter_value', HINT = 'Use TABLE, SEQUENCE, FUNCTION or SCHEMA.';
    END IF;
    defaults := acldefault(CASE kind WHEN 'TABLE' THEN 'r' WHEN 'SEQUENCE' THEN 's' WHEN 'FUNCTION' THEN 'f'
                                     ELSE 'n' END::"char", owner);
    current_acl := coalesce(current_acl, defaults);
    acl := coalesce(acl, defaults);
    FOR g IN SELECT DISTINCT a.grantee FROM aclexplode(current_acl) AS a WHERE a.grantee <> owner LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM %s', kind, target, migrate_ext.grantee_name(g.grantee));
    END LOOP;
    FOR g IN SELECT a.grantee, a.is_grantable, string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) AS privileges
               FROM aclexplode(acl) AS a WHERE a.grantee <> owner GROUP BY 1, 2 LOOP
        EXECUTE format('GRANT %s ON %s %s TO %s%s', g.privileges, kind, target, migrate_ext.grantee_name(g.grantee),
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END;
$$;

-- Make the privileges on one column exactly acl (NULL: none)
CREATE FUNCTION migrate_ext.set_column_acl(target regclass, col name, acl aclitem[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee
               FROM pg_attribute AS att, aclexplode(att.attacl) AS a
              WHERE att.attrelid = target AND att.attname = col LOOP
        EXECUTE format('REVOKE ALL (%I) ON TABLE %s FROM %s', col, target, migrate_ext.grantee_name(g.grantee));
    END LOOP;
    FOR g IN SELECT a.grantee, a.is_grantable, string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) AS privileges
               FROM aclexplode(acl) AS a GROUP BY 1, 2 LOOP
        EXECUTE format('GRANT %s (%I) ON TABLE %s TO %s%s', g.privileges, col, target, migrate_ext.grantee_name(g.grantee),
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END;
$$;

-- The statement that calls set_acl(), for a generated plan: every argument
-- typed, so that no other function of that name could be chosen
CREATE FUNCTION migrate_ext.set_acl_statement(kind text, target text, acl aclitem[]) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('SELECT migrate_ext.set_acl(%L::text, %L::text, %L::aclitem[])', kind, target, acl);
$$;

-- Close a table the extension made (staging): no privileges for anyone but
-- its owner on it or on the sequences its columns own, whatever default
-- privileges granted
CREATE FUNCTION migrate_ext.close_table(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seq regclass;
BEGIN
    PERFORM migrate_ext.set_acl('TABLE'::text, tbl::text, NULL::aclitem[]);
    FOR seq IN SELECT d.objid::regclass FROM pg_depend AS d JOIN pg_class AS s ON s.oid = d.objid AND s.relkind = 'S'
                WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                  AND d.refobjid = tbl AND d.deptype IN ('a', 'i') LOOP
        PERFORM migrate_ext.set_acl('SEQUENCE'::text, seq::text, NULL::aclitem[]);
    END LOOP;
END;
$$;

-------------------------------------------------------------------------------
-- Private schemas: migrate_staging and the backups.  The extension writes
-- customer data into them, so they must be its own: created by it, owned by
-- the role that runs it, usable by nobody else, with nothing else inside.
-------------------------------------------------------------------------------

-- Create a schema nobody but its owner can use
CREATE FUNCTION migrate_ext.create_private_schema(name text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE SCHEMA %I', name);
    PERFORM migrate_ext.set_acl('SCHEMA'::text, quote_ident(name), NULL::aclitem[]);
END;
$$;

-- Objects of schema name other than the given tables and what belongs to
-- them (indexes, owned sequences, statistics, row types): empty for a
-- schema the extension may use
CREATE FUNCTION migrate_ext.foreign_objects(name text, tables text[]) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ours AS (
        SELECT c.oid FROM pg_class AS c
         WHERE c.relnamespace = to_regnamespace(name) AND c.relkind = 'r' AND c.relname = ANY (tables)
    )
    SELECT string_agg(pg_describe_object(d.classid, d.objid, d.objsubid), ', ' ORDER BY d.classid, d.objid)
      FROM pg_depend AS d
     WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = to_regnamespace(name)
       AND NOT (d.classid = 'pg_class'::regclass AND d.objid IN (SELECT oid FROM ours))
       AND NOT (d.classid = 'pg_class'::regclass
                AND d.objid IN (SELECT i.indexrelid FROM pg_index AS i WHERE i.indrelid IN (SELECT oid FROM ours)))
       AND NOT (d.classid = 'pg_class'::regclass
                AND d.objid IN (SELECT s.objid FROM pg_depend AS s
                                 WHERE s.classid = 'pg_class'::regclass AND s.refclassid = 'pg_class'::regclass
                                   AND s.refobjid IN (SELECT oid FROM ours) AND s.deptype IN ('a', 'i')))
       AND NOT (d.classid = 'pg_statistic_ext'::regclass
                AND d.objid IN (SELECT x.oid FROM pg_statistic_ext AS x WHERE x.stxrelid IN (SELECT oid FROM ours)));
$$;

-- Make schema name the extension's private schema for the given tables:
-- create it when missing; otherwise refuse unless the current role owns it
-- and it holds nothing else, then close it again (nobody else may use it)
CREATE FUNCTION migrate_ext.claim_private_schema(name text, tables text[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner oid;
    others text;
BEGIN
    SELECT n.nspowner INTO owner FROM pg_namespace AS n WHERE n.nspname = name;
    IF NOT FOUND THEN
        PERFORM migrate_ext.create_private_schema(name);
        RETURN;
    END IF;
    IF owner <> current_user::regrole THEN
        RAISE EXCEPTION 'schema % is owned by %, not by %', name, owner::regrole, current_user
              USING ERRCODE = 'insufficient_privilege',
                    HINT = format('Nothing was changed. migrate_ext keeps customer data there, so only the role that runs it may own it: '
                                  'check who made it, then have it dropped (DROP SCHEMA %I;) and run again.', name);
    END IF;
    others := migrate_ext.foreign_objects(name, tables);
    IF others IS NOT NULL THEN
        RAISE EXCEPTION 'schema % holds objects migrate_ext did not put there: %', name, others
              USING ERRCODE = 'object_in_use',
                    HINT = format('Nothing was changed. migrate_ext keeps customer data in %I and replaces its tables; move or drop those objects first.', name);
    END IF;
    PERFORM migrate_ext.set_acl('SCHEMA'::text, quote_ident(name), NULL::aclitem[]);
END;
$$;

-- Make the extension's own objects private: nothing for PUBLIC or for any
-- role that default privileges named (Supabase grants a lot to anon and
-- authenticated by default, on tables, functions and schemas), the use of
-- everything for the extension's owner
CREATE FUNCTION migrate_ext.close_extension_objects(ext_owner regrole) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the owner's default privileges (less PUBLIC's), and the extension
    -- owner's: rights as aclitem letters (arwd: SELECT, INSERT, UPDATE,
    -- DELETE; rwU: SELECT, UPDATE, USAGE; X: EXECUTE; U: USAGE)
    PERFORM migrate_ext.set_acl(o.kind, o.target,
                                ARRAY(SELECT d FROM unnest(acldefault(o.acl_kind, o.owner)) AS d
                                       WHERE d::text NOT LIKE '=%')
                                || format('%s=%s/%s', ext_owner, o.rights, o.owner::regrole)::aclitem)
       FROM (SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, c.oid::regclass::text AS target,
                    c.relowner AS owner, CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char" AS acl_kind,
                    CASE c.relkind WHEN 'S' THEN 'rwU' ELSE 'arwd' END AS rights
               FROM pg_class AS c
              WHERE c.relnamespace = 'migrate_ext'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
             UNION ALL
             SELECT 'FUNCTION', p.oid::regprocedure::text, p.proowner, 'f', 'X'
               FROM pg_proc AS p WHERE p.pronamespace = 'migrate_ext'::regnamespace
             UNION ALL
             SELECT 'SCHEMA', 'migrate_ext', n.nspowner, 'n', 'U'
               FROM pg_namespace AS n WHERE n.nspname = 'migrate_ext') AS o;
END;
$$;
