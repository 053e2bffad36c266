-------------------------------------------------------------------------------
-- Privileges as data: make an object's grants exactly a given ACL.  Used to
-- close staging, to give a swapped-in table production's grants, and to
-- close backups and the schemas that hold them.
-------------------------------------------------------------------------------

-- A role name for GRANT and REVOKE (0 is PUBLIC)
CREATE FUNCTION migrate_ext.grantee_name(grantee oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE quote_ident(grantee::regrole::text) END;
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
