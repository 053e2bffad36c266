/*
 * migrate_ext install script (its version is in the file name).
 *
 * Everything lives in schema migrate_ext, nothing in public (on Supabase
 * every function in public is an RPC endpoint).  Nothing is granted to
 * PUBLIC: the extension's owner (@extowner@, the role that ran CREATE
 * EXTENSION) is the intended caller.  Functions that run SQL on behalf of
 * the caller pin search_path, so a caller's search_path cannot steer them.
 *
 * The extension is trusted: this script runs as a superuser on behalf of
 * a role that may not be one.  So it resolves nothing through a schema
 * another role could have prepared: search_path is pg_catalog only while
 * it runs, every object of ours is named with its schema, and schema
 * migrate_ext must be the one CREATE EXTENSION just made (owned by the
 * installing role, empty), or the install stops before creating anything.
 */

\echo Use "CREATE EXTENSION migrate_ext" to load this file. \quit

SET LOCAL search_path = pg_catalog, pg_temp;

DO $$
DECLARE
    owner oid;
    squatters text;
BEGIN
    SELECT n.nspowner INTO owner FROM pg_catalog.pg_namespace AS n WHERE n.nspname OPERATOR(pg_catalog.=) 'migrate_ext';
    IF owner OPERATOR(pg_catalog.<>) '@extowner@'::pg_catalog.regrole THEN
        RAISE EXCEPTION 'schema migrate_ext already exists and is owned by %, not by @extowner@', owner::pg_catalog.regrole
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Nothing was installed. A schema prepared by another role could take over the install; drop it (DROP SCHEMA migrate_ext;) or have its owner drop it, then CREATE EXTENSION migrate_ext again.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ')
      INTO squatters
      FROM pg_catalog.pg_depend AS d
     WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) 'migrate_ext'::pg_catalog.regnamespace
       AND d.classid OPERATOR(pg_catalog.<>) 'pg_catalog.pg_extension'::pg_catalog.regclass;
    IF squatters IS NOT NULL THEN
        RAISE EXCEPTION 'schema migrate_ext is not empty: %', squatters
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Nothing was installed. The extension installs only into a schema of its own; drop these objects (or the schema) first.';
    END IF;
END;
$$;
