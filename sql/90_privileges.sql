-------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; everything for the extension's owner
-------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA migrate_ext FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA migrate_ext FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA migrate_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA migrate_ext TO @extowner@;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA migrate_ext TO @extowner@;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA migrate_ext TO @extowner@;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA migrate_ext TO @extowner@;

-- Default privileges of the installing role (Supabase grants a lot to anon
-- and authenticated by default) must not open the extension's data: keep
-- only the owner's and @extowner@'s grants.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT 'TABLE ' || c.oid::regclass::text AS obj, a.grantee
          FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
         WHERE c.relnamespace = 'migrate_ext'::regnamespace
           AND a.grantee <> c.relowner AND a.grantee <> '@extowner@'::regrole
        UNION
        SELECT DISTINCT 'FUNCTION ' || p.oid::regprocedure::text, a.grantee
          FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
         WHERE p.pronamespace = 'migrate_ext'::regnamespace
           AND a.grantee <> p.proowner AND a.grantee <> '@extowner@'::regrole
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s', g.obj,
                                  CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(g.grantee::regrole::text) END);
    END LOOP;
END;
$$;
