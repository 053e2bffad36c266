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
-- authenticated by default, on tables, functions and schemas), everything
-- for the extension's owner
CREATE FUNCTION migrate_ext.close_extension_objects(ext_owner regrole) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    REVOKE ALL ON ALL TABLES IN SCHEMA migrate_ext FROM PUBLIC;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA migrate_ext FROM PUBLIC;
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA migrate_ext FROM PUBLIC;
    EXECUTE format('GRANT USAGE ON SCHEMA migrate_ext TO %s', ext_owner);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA migrate_ext TO %s', ext_owner);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA migrate_ext TO %s', ext_owner);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA migrate_ext TO %s', ext_owner);
    FOR g IN
        SELECT DISTINCT 'TABLE ' || c.oid::regclass::text AS obj, a.grantee
          FROM pg_class AS c, aclexplode(c.relacl) AS a
         WHERE c.relnamespace = 'migrate_ext'::regnamespace AND a.grantee NOT IN (c.relowner, ext_owner)
        UNION
        SELECT DISTINCT 'FUNCTION ' || p.oid::regprocedure::text, a.grantee
          FROM pg_proc AS p, aclexplode(p.proacl) AS a
         WHERE p.pronamespace = 'migrate_ext'::regnamespace AND a.grantee NOT IN (p.proowner, ext_owner)
        UNION
        SELECT DISTINCT 'SCHEMA migrate_ext', a.grantee
          FROM pg_namespace AS n, aclexplode(n.nspacl) AS a
         WHERE n.nspname = 'migrate_ext' AND a.grantee NOT IN (n.nspowner, ext_owner)
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', g.obj, migrate_ext.grantee_name(g.grantee));
    END LOOP;
END;
$$;
-------------------------------------------------------------------------------
-- Credentials
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.api_keys (
    source  text PRIMARY KEY CHECK (source IN ('xendit', 'systemeio')),
    api_key text NOT NULL,
    set_at  timestamptz NOT NULL,
    set_by  name NOT NULL
);
COMMENT ON TABLE migrate_ext.api_keys IS
    'API keys, readable only by the extension owner; set them with migrate_ext.set_api_key()';

CREATE FUNCTION migrate_ext.set_api_key(source text, api_key text)
RETURNS void
AS 'MODULE_PATHNAME', 'migrate_ext_set_api_key'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION migrate_ext.set_api_key(text, text) IS
    'Store the Xendit secret key (source ''xendit'') or the Systeme.io API key (source ''systemeio'')';

-------------------------------------------------------------------------------
-- The run lock: one sync, validation, launch or rollback at a time.  It is
-- a row lock on a table of the extension, so only roles that may update
-- that table (its owner, the extension's owner) can take it: an advisory
-- lock, which any role can take, would let anybody stop every run.
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.run_lock (
    run text PRIMARY KEY
);
COMMENT ON TABLE migrate_ext.run_lock IS
    'One row per kind of run; a running sync, validation, launch or rollback holds the row ''any'' and its own row locked';
INSERT INTO migrate_ext.run_lock VALUES
    ('any'), ('sync_raw_api_data()'), ('validate_and_prepare_clean_data()'),
    ('launch_clean_production()'), ('rollback_migration()');

-- Keep every other run out until this transaction ends; when one is
-- running, fail at once naming it.  what is the function that asks.
CREATE FUNCTION migrate_ext.lock_out_other_runs(what text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    holder text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM migrate_ext.run_lock AS l WHERE l.run = what AND l.run <> 'any') THEN
        RAISE EXCEPTION 'lock_out_other_runs(): unknown run %', what
              USING ERRCODE = 'invalid_parameter_value', HINT = 'Name one of the rows of migrate_ext.run_lock.';
    END IF;
    PERFORM 1 FROM migrate_ext.run_lock AS l WHERE l.run = 'any' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        -- the run holding the gate holds its own row too: the rows this
        -- transaction cannot lock name it
        SELECT string_agg(l.run, ', ') INTO holder FROM migrate_ext.run_lock AS l
         WHERE l.run <> 'any'
           AND l.run NOT IN (SELECT f.run FROM migrate_ext.run_lock AS f WHERE f.run <> 'any' FOR KEY SHARE SKIP LOCKED);
        RAISE EXCEPTION '% cannot start: % is running', what, coalesce('migrate_ext.' || holder, 'another run of migrate_ext')
              USING ERRCODE = 'lock_not_available',
                    HINT = 'Nothing was changed. Wait for it to finish (pg_stat_activity shows it); SELECT * FROM migrate_ext.migration_status(); shows what was done.';
    END IF;
    PERFORM 1 FROM migrate_ext.run_lock AS l WHERE l.run = what FOR UPDATE;
END;
$$;
-------------------------------------------------------------------------------
-- Raw API data
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.xendit_raw (
    id              text PRIMARY KEY,
    external_id     text,
    status          text,
    amount          numeric,
    paid_amount     numeric,
    currency        text,
    payer_email     text,
    description     text,
    payment_method  text,
    payment_channel text,
    paid_at         timestamptz,
    expiry_date     timestamptz,
    created         timestamptz,
    updated         timestamptz,
    api_synced_at   timestamptz NOT NULL,
    sync_run_id     bigint NOT NULL,
    api_response    jsonb NOT NULL
);
COMMENT ON TABLE migrate_ext.xendit_raw IS
    'Xendit invoices as the API sent them (api_response), with typed columns for the rules; api_synced_at is when this version was stored';

CREATE TABLE migrate_ext.systemeio_raw (
    id            text PRIMARY KEY,
    email         text,
    first_name    text,
    last_name     text,
    tags          text[] NOT NULL DEFAULT '{}',
    registered_at timestamptz,
    locale        text,
    source_url    text,
    unsubscribed  boolean,
    bounced       boolean,
    api_synced_at timestamptz NOT NULL,
    sync_run_id   bigint NOT NULL,
    api_response  jsonb NOT NULL
);
COMMENT ON TABLE migrate_ext.systemeio_raw IS
    'Systeme.io contacts as the API sent them (api_response), with typed columns for the rules; api_synced_at is when this version was stored';

CREATE SEQUENCE migrate_ext.sync_runs_run_id_seq;

CREATE TABLE migrate_ext.sync_runs (
    run_id      bigint NOT NULL,
    source      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    status      text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    pages       bigint NOT NULL,
    fetched     bigint NOT NULL,
    inserted    bigint NOT NULL,
    updated     bigint NOT NULL,
    unchanged   bigint NOT NULL,
    rejected    bigint NOT NULL,
    error       text,
    PRIMARY KEY (run_id, source)
);
COMMENT ON TABLE migrate_ext.sync_runs IS 'One row per source per sync_raw_api_data() call';

CREATE TABLE migrate_ext.sync_rejects (
    run_id      bigint NOT NULL,
    source      text NOT NULL,
    record_id   text,
    reason      text NOT NULL,
    raw         text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX sync_rejects_run_id_idx ON migrate_ext.sync_rejects (run_id, source);
COMMENT ON TABLE migrate_ext.sync_rejects IS
    'API records that could not be stored (e.g. a \u0000 in a string), with their exact text and the reason';

-------------------------------------------------------------------------------
-- pg_dump keeps the data of these tables
-------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('migrate_ext.xendit_raw', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.systemeio_raw', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.sync_rejects', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.sync_runs_run_id_seq', '');

-------------------------------------------------------------------------------
-- Typed values out of API JSON: a value of the wrong type or shape becomes
-- NULL in the typed column and stays, exact, in api_response.
-------------------------------------------------------------------------------

CREATE FUNCTION migrate_ext.json_numeric(value jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN pg_catalog.jsonb_typeof(value) = 'number' THEN value::numeric END;
END;

CREATE FUNCTION migrate_ext.json_boolean(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN pg_catalog.jsonb_typeof(value) = 'boolean' THEN value::boolean END;
END;

-- ISO 8601 with a zone (Xendit: ...Z with ms; Systeme.io: +00:00 without);
-- anything else is NULL, so the session's time zone never decides a value.
-- (LIKE, not a regular expression: this runs four times per invoice.)
CREATE FUNCTION migrate_ext.json_timestamptz(value text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN (value LIKE '____-__-__T__:__%' OR value LIKE '____-__-__ __:__%')
                 AND (value LIKE '%Z'
                      OR substr(value, length(value) - 5, 1) IN ('+', '-')
                      OR substr(value, length(value) - 4, 1) IN ('+', '-'))
                THEN value::timestamptz END;
END;

-- A Systeme.io contact field by slug: fields is [{slug, value}] (or, from
-- some clients, an object keyed by slug)
CREATE FUNCTION migrate_ext.contact_field(fields jsonb, slug text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE pg_catalog.jsonb_typeof(fields)
             WHEN 'array' THEN pg_catalog.jsonb_path_query_first(
                                   fields, '$[*] ? (@.slug == $slug).value',
                                   pg_catalog.jsonb_build_object('slug', slug)) #>> '{}'
             WHEN 'object' THEN fields ->> slug
           END;
END;

-- Tag names of a Systeme.io contact, in the API's order
CREATE FUNCTION migrate_ext.contact_tags(tags jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT COALESCE(pg_catalog.array_agg(n ORDER BY o), '{}')
      FROM (SELECT CASE pg_catalog.jsonb_typeof(t) WHEN 'string' THEN t #>> '{}' ELSE t ->> 'name' END, o
              FROM pg_catalog.jsonb_array_elements(
                       CASE WHEN pg_catalog.jsonb_typeof(tags) = 'array' THEN tags ELSE '[]'::jsonb END)
                   WITH ORDINALITY AS e(t, o)) AS x(n, o)
     WHERE n IS NOT NULL;
END;

-------------------------------------------------------------------------------
-- Storing a page: one statement per page.  Only records whose content
-- changed are written: unchanged ones are filtered out before the upsert,
-- so they are neither locked nor written.
-------------------------------------------------------------------------------

CREATE FUNCTION migrate_ext.upsert_xendit_invoices(records json, run_id bigint,
                                                   OUT n_inserted bigint, OUT n_updated bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
WITH incoming AS (
    SELECT DISTINCT ON (r.id) r.id, r.j
      FROM (SELECT e.j ->> 'id' AS id, e.j, e.n
              FROM (SELECT x.value::jsonb AS j, x.n
                      FROM json_array_elements(records) WITH ORDINALITY AS x(value, n)) AS e) AS r
     ORDER BY r.id, r.n DESC
), changed AS (
    SELECT i.id, i.j, (x.id IS NULL) AS is_new
      FROM incoming AS i
      LEFT JOIN migrate_ext.xendit_raw AS x ON x.id = i.id
     WHERE x.id IS NULL OR x.api_response IS DISTINCT FROM i.j
), written AS (
    INSERT INTO migrate_ext.xendit_raw AS t
           (id, external_id, status, amount, paid_amount, currency, payer_email, description,
            payment_method, payment_channel, paid_at, expiry_date, created, updated,
            api_synced_at, sync_run_id, api_response)
    SELECT c.id, c.j ->> 'external_id', c.j ->> 'status',
           migrate_ext.json_numeric(c.j -> 'amount'), migrate_ext.json_numeric(c.j -> 'paid_amount'),
           c.j ->> 'currency', c.j ->> 'payer_email', c.j ->> 'description',
           c.j ->> 'payment_method', c.j ->> 'payment_channel',
           migrate_ext.json_timestamptz(c.j ->> 'paid_at'), migrate_ext.json_timestamptz(c.j ->> 'expiry_date'),
           migrate_ext.json_timestamptz(c.j ->> 'created'), migrate_ext.json_timestamptz(c.j ->> 'updated'),
           now(), run_id, c.j
      FROM changed AS c
    ON CONFLICT (id) DO UPDATE
       SET external_id = EXCLUDED.external_id, status = EXCLUDED.status,
           amount = EXCLUDED.amount, paid_amount = EXCLUDED.paid_amount,
           currency = EXCLUDED.currency, payer_email = EXCLUDED.payer_email,
           description = EXCLUDED.description, payment_method = EXCLUDED.payment_method,
           payment_channel = EXCLUDED.payment_channel, paid_at = EXCLUDED.paid_at,
           expiry_date = EXCLUDED.expiry_date, created = EXCLUDED.created,
           updated = EXCLUDED.updated, api_synced_at = EXCLUDED.api_synced_at,
           sync_run_id = EXCLUDED.sync_run_id, api_response = EXCLUDED.api_response
    RETURNING 1
)
SELECT count(*) FILTER (WHERE c.is_new), count(*) FILTER (WHERE NOT c.is_new)
  FROM changed AS c;
$$;

CREATE FUNCTION migrate_ext.upsert_systemeio_contacts(records json, run_id bigint,
                                                      OUT n_inserted bigint, OUT n_updated bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
WITH incoming AS (
    SELECT DISTINCT ON (r.id) r.id, r.j
      FROM (SELECT e.j ->> 'id' AS id, e.j, e.n
              FROM (SELECT x.value::jsonb AS j, x.n
                      FROM json_array_elements(records) WITH ORDINALITY AS x(value, n)) AS e) AS r
     ORDER BY r.id, r.n DESC
), changed AS (
    SELECT i.id, i.j, (x.id IS NULL) AS is_new
      FROM incoming AS i
      LEFT JOIN migrate_ext.systemeio_raw AS x ON x.id = i.id
     WHERE x.id IS NULL OR x.api_response IS DISTINCT FROM i.j
), written AS (
    INSERT INTO migrate_ext.systemeio_raw AS t
           (id, email, first_name, last_name, tags, registered_at, locale, source_url,
            unsubscribed, bounced, api_synced_at, sync_run_id, api_response)
    SELECT c.id, c.j ->> 'email',
           migrate_ext.contact_field(c.j -> 'fields', 'first_name'),
           migrate_ext.contact_field(c.j -> 'fields', 'surname'),
           migrate_ext.contact_tags(c.j -> 'tags'),
           migrate_ext.json_timestamptz(c.j ->> 'registeredAt'),
           c.j ->> 'locale', c.j ->> 'sourceURL',
           migrate_ext.json_boolean(c.j -> 'unsubscribed'), migrate_ext.json_boolean(c.j -> 'bounced'),
           now(), run_id, c.j
      FROM changed AS c
    ON CONFLICT (id) DO UPDATE
       SET email = EXCLUDED.email, first_name = EXCLUDED.first_name,
           last_name = EXCLUDED.last_name, tags = EXCLUDED.tags,
           registered_at = EXCLUDED.registered_at, locale = EXCLUDED.locale,
           source_url = EXCLUDED.source_url, unsubscribed = EXCLUDED.unsubscribed,
           bounced = EXCLUDED.bounced, api_synced_at = EXCLUDED.api_synced_at,
           sync_run_id = EXCLUDED.sync_run_id, api_response = EXCLUDED.api_response
    RETURNING 1
)
SELECT count(*) FILTER (WHERE c.is_new), count(*) FILTER (WHERE NOT c.is_new)
  FROM changed AS c;
$$;

-- The "id" of an API record, even when another of its strings holds an
-- escape that cannot become text (json ->> decodes the whole object)
CREATE FUNCTION migrate_ext.record_id(rec json) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF json_typeof(rec) <> 'object' THEN
        RETURN NULL;
    END IF;
    RETURN rec ->> 'id';
EXCEPTION WHEN untranslatable_character THEN
    -- \u0000 is the escape jsonb and text refuse: read the id around it
    RETURN replace(rec::text, '\u0000', '\ufffd')::json ->> 'id';
END;
$$;

-- Store one page as the API sent it (Xendit: a JSON array of invoices;
-- Systeme.io: {"items": [...], "hasMore": ...}).  If any record cannot be
-- stored, the page is stored record by record and each record that fails
-- goes to sync_rejects with its exact text and the reason.
CREATE FUNCTION migrate_ext.store_page(source text, page text, run_id bigint,
                                       OUT inserted bigint, OUT updated bigint, OUT rejected bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- stands in for \u0000 while the envelope is taken apart (a Unicode
    -- noncharacter, never in real data; checked absent before use)
    nul_stand_in CONSTANT text := '\ufdd0';
    records json;
    hides_nul boolean := false;
    rec json;
    n_ins bigint;
    n_upd bigint;
BEGIN
    inserted := 0;
    updated := 0;
    rejected := 0;
    IF source NOT IN ('xendit', 'systemeio') THEN
        RAISE EXCEPTION 'unknown API source "%"', source
              USING ERRCODE = 'invalid_parameter_value', HINT = 'Sources are xendit and systemeio.';
    END IF;

    -- the records of the page; json -> decodes every string of the page, and
    -- \u0000 cannot be decoded, so such a page is opened with a stand-in
    BEGIN
        records := CASE source WHEN 'xendit' THEN page::json ELSE page::json -> 'items' END;
    EXCEPTION WHEN untranslatable_character THEN
        IF strpos(lower(page), nul_stand_in) > 0 THEN
            RAISE;
        END IF;
        records := replace(page, '\u0000', nul_stand_in)::json -> 'items';
        hides_nul := true;
    END;

    IF NOT hides_nul THEN
        BEGIN
            IF source = 'xendit' THEN
                SELECT u.n_inserted, u.n_updated INTO inserted, updated
                  FROM migrate_ext.upsert_xendit_invoices(records, run_id) AS u;
            ELSE
                SELECT u.n_inserted, u.n_updated INTO inserted, updated
                  FROM migrate_ext.upsert_systemeio_contacts(records, run_id) AS u;
            END IF;
            RETURN;
        EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
            inserted := 0;
            updated := 0;
        END;
    END IF;

    -- record by record
    FOR rec IN SELECT e FROM json_array_elements(records) AS e LOOP
        IF hides_nul THEN
            rec := replace(rec::text, nul_stand_in, '\u0000')::json;
        END IF;
        BEGIN
            IF source = 'xendit' THEN
                SELECT u.n_inserted, u.n_updated INTO n_ins, n_upd
                  FROM migrate_ext.upsert_xendit_invoices(json_build_array(rec), run_id) AS u;
            ELSE
                SELECT u.n_inserted, u.n_updated INTO n_ins, n_upd
                  FROM migrate_ext.upsert_systemeio_contacts(json_build_array(rec), run_id) AS u;
            END IF;
            inserted := inserted + n_ins;
            updated := updated + n_upd;
        EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
            INSERT INTO migrate_ext.sync_rejects (run_id, source, record_id, reason, raw)
            VALUES (run_id, source, migrate_ext.record_id(rec), SQLERRM, rec::text);
            rejected := rejected + 1;
        END;
    END LOOP;
END;
$$;

CREATE FUNCTION migrate_ext.sync_raw_api_data(sources text[] DEFAULT '{xendit,systemeio}',
    OUT source text, OUT status text, OUT pages bigint, OUT fetched bigint,
    OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT rejected bigint,
    OUT seconds numeric, OUT error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'migrate_ext_sync_raw_api_data'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION migrate_ext.sync_raw_api_data(text[]) IS
    'Page the Xendit invoices and Systeme.io contacts APIs into xendit_raw and systemeio_raw; one row per source';

-------------------------------------------------------------------------------
-- Business rules as data: products, status_map, exclusions; stable ids;
-- the validation report.  New products need rows here, not code.
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.products (
    code                text PRIMARY KEY,
    transaction_type    text NOT NULL,
    description_pattern text,
    paid_tags           text[] NOT NULL DEFAULT '{}',
    grants_profile      boolean NOT NULL DEFAULT false,
    enrollment_course   text,
    manual_price        numeric CHECK (manual_price > 0),
    match_order         integer NOT NULL DEFAULT 100,
    CHECK (enrollment_course IS NULL OR grants_profile)
);
COMMENT ON TABLE migrate_ext.products IS
    'Product catalog: an invoice whose description matches description_pattern (ILIKE, lowest match_order first; NULL pattern = fallback) is this product';
COMMENT ON COLUMN migrate_ext.products.paid_tags IS
    'Systeme.io tags that mean "paid for this product"';
COMMENT ON COLUMN migrate_ext.products.enrollment_course IS
    'Title of the course (public.courses.title) a buyer is enrolled in; NULL: no enrollment';
COMMENT ON COLUMN migrate_ext.products.manual_price IS
    'Amount of a manual payment for a paid tag without a paid invoice; NULL: such a tag is only a warning';

INSERT INTO migrate_ext.products
       (code, transaction_type, description_pattern, paid_tags, grants_profile, enrollment_course, manual_price, match_order)
VALUES ('P2P',   'P2P',   '%papers to profits%', '{PaidP2P}',   true,  'Papers to Profits', 800,  10),
       ('Canva', 'Canva', '%canva%',             '{PaidCanva}', false, NULL,                NULL, 20),
       ('Other', 'Other', NULL,                  '{}',          false, NULL,                NULL, 1000);

CREATE TABLE migrate_ext.status_map (
    xendit_status       text PRIMARY KEY,
    production_status   text NOT NULL,
    becomes_transaction boolean NOT NULL
);
COMMENT ON TABLE migrate_ext.status_map IS
    'Xendit invoice status -> production transaction status, and whether it becomes a transaction';
INSERT INTO migrate_ext.status_map VALUES
    ('PAID', 'completed', true),
    ('SETTLED', 'completed', true),
    ('EXPIRED', 'expired', false),
    ('PENDING', 'pending', false);

CREATE TABLE migrate_ext.exclusions (
    kind       text NOT NULL CHECK (kind IN ('email', 'xendit_id', 'systemeio_id')),
    value      text NOT NULL,
    reason     text NOT NULL CHECK (reason <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT current_user,
    PRIMARY KEY (kind, value)
);
COMMENT ON TABLE migrate_ext.exclusions IS
    'What a DBA decided to leave out: email (a LIKE pattern on lower(trim(email))), xendit_id or systemeio_id (one record)';

CREATE TABLE migrate_ext.identity_map (
    kind       text NOT NULL,
    key        text NOT NULL,
    id         uuid NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
COMMENT ON TABLE migrate_ext.identity_map IS
    'Ids drawn once for rows production does not have yet (kind: user by e-mail, transaction by Xendit invoice id or manual payment, enrollment by user and course), so re-runs give the same ids';

CREATE SEQUENCE migrate_ext.validation_runs_run_id_seq;

CREATE TABLE migrate_ext.validation_runs (
    run_id               bigint PRIMARY KEY,
    started_at           timestamptz NOT NULL,
    finished_at          timestamptz,
    errors               bigint NOT NULL DEFAULT 0,
    warnings             bigint NOT NULL DEFAULT 0,
    sync_run_id          bigint,
    sync_started_at      timestamptz,
    production_signature text
);
COMMENT ON TABLE migrate_ext.validation_runs IS
    'One row per validate_and_prepare_clean_data(); sync_run_id is the sync staging was built from, production_signature the production table definitions it was built for';

CREATE TABLE migrate_ext.validation_issues (
    run_id    bigint NOT NULL REFERENCES migrate_ext.validation_runs ON DELETE CASCADE,
    severity  text NOT NULL CHECK (severity IN ('error', 'warning', 'info')),
    rule      text NOT NULL,
    source    text NOT NULL,
    record_id text,
    email     text,
    detail    text NOT NULL
);
CREATE INDEX validation_issues_run_idx ON migrate_ext.validation_issues (run_id, severity, rule);
COMMENT ON TABLE migrate_ext.validation_issues IS
    'Every issue of a validation run, never truncated: error blocks the launch, warning keeps the data with a documented fallback, info lists what is carried over or removed';

-- products and status_map hold default rows that CREATE EXTENSION inserts,
-- so pg_dump does not dump them (a restore would insert them twice)
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.exclusions', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.identity_map', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.validation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.validation_issues', '');
-------------------------------------------------------------------------------
-- Staging: validate_and_prepare_clean_data() builds schema migrate_staging
-- from the raw tables and the rules, and writes the validation report.
-- It reads only the raw tables, the rule tables and production; it writes
-- only staging and its own report tables.
-------------------------------------------------------------------------------

-- The production tables the swap replaces, in dependency order
CREATE FUNCTION migrate_ext.swapped_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT '{unified_profiles,transactions,enrollments}'::text[];
END;

-- The tables of schema migrate_staging: the swapped tables and the auth
-- users the launch creates
CREATE FUNCTION migrate_ext.staging_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT migrate_ext.swapped_tables() || '{auth_users}'::text[];
END;

-- The column of a swapped table that says when a row was created
CREATE FUNCTION migrate_ext.created_column(tbl text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE tbl WHEN 'enrollments' THEN 'enrolled_at' ELSE 'created_at' END;
END;

-- The columns the rules read or write, per production table
CREATE FUNCTION migrate_ext.required_columns() RETURNS TABLE (tbl text, col text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT split_part(c, '.', 1), split_part(c, '.', 2)
      FROM unnest('{unified_profiles.id,unified_profiles.email,unified_profiles.first_name,
                    unified_profiles.last_name,unified_profiles.tags,unified_profiles.is_admin,
                    unified_profiles.is_student,unified_profiles.created_at,
                    transactions.id,transactions.user_id,transactions.amount,transactions.currency,
                    transactions.status,transactions.payment_method,transactions.transaction_type,
                    transactions.external_id,transactions.paid_at,transactions.settled_at,
                    transactions.expires_at,transactions.metadata,transactions.contact_email,
                    transactions.created_at,transactions.updated_at,
                    enrollments.id,enrollments.user_id,enrollments.course_id,enrollments.transaction_id,
                    enrollments.status,enrollments.enrolled_at}'::text[]) AS c;
END;

-- A fingerprint of the production tables' definitions (columns, types,
-- NOT NULLs, defaults): staging built for another definition is stale
CREATE FUNCTION migrate_ext.production_signature() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT md5(string_agg(format('%s.%s:%s:%s:%s', c.relname, a.attname,
                                 format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                 pg_get_expr(d.adbin, d.adrelid)),
                          ',' ORDER BY c.relname, a.attnum))
      FROM pg_class c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relname = ANY (migrate_ext.swapped_tables());
$$;

-- Refuse to build staging from a configuration that cannot work, before
-- anything is written: missing tables, columns or courses, no sync yet
CREATE FUNCTION migrate_ext.check_configuration() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t FROM unnest(migrate_ext.swapped_tables() || '{courses}'::text[]) AS t
              WHERE to_regclass(format('public.%I', t)) IS NULL LOOP
        RAISE EXCEPTION 'production table public.% is missing', r.t
              USING ERRCODE = 'undefined_table',
                    HINT = 'validate_and_prepare_clean_data() rebuilds public.unified_profiles, transactions and enrollments, and reads public.courses; run it in the application''s database.';
    END LOOP;
    IF to_regclass('auth.users') IS NULL THEN
        RAISE EXCEPTION 'table auth.users is missing'
              USING ERRCODE = 'undefined_table',
                    HINT = 'migrate_ext is built for a Supabase database, whose users live in auth.users.';
    END IF;
    FOR r IN SELECT q.tbl, q.col FROM migrate_ext.required_columns() AS q
              WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                                 WHERE a.attrelid = format('public.%I', q.tbl)::regclass
                                   AND a.attname = q.col AND NOT a.attisdropped)
              ORDER BY 1, 2 LOOP
        RAISE EXCEPTION 'production column public.%.% is missing', r.tbl, r.col
              USING ERRCODE = 'undefined_column',
                    HINT = 'The business rules write this column; restore it, or adapt the rules before migrating.';
    END LOOP;
    FOR r IN SELECT p.code, p.enrollment_course FROM migrate_ext.products AS p
              WHERE p.enrollment_course IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM public.courses AS c WHERE c.title = p.enrollment_course)
              ORDER BY 1 LOOP
        RAISE EXCEPTION 'course "%" of product % does not exist', r.enrollment_course, r.code
              USING ERRCODE = 'foreign_key_violation',
                    HINT = 'Create the course in public.courses, or fix migrate_ext.products.enrollment_course.';
    END LOOP;
    FOR r IN SELECT p.code FROM migrate_ext.products AS p
              WHERE p.enrollment_course IS NOT NULL
                AND (SELECT count(*) FROM public.courses AS c WHERE c.title = p.enrollment_course) > 1 LOOP
        RAISE EXCEPTION 'the course of product % is ambiguous: several courses have that title', r.code
              USING ERRCODE = 'cardinality_violation',
                    HINT = 'Give the courses distinct titles.';
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM migrate_ext.products WHERE description_pattern IS NULL) THEN
        RAISE EXCEPTION 'migrate_ext.products has no fallback product (one with description_pattern NULL)'
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Add one, e.g. INSERT INTO migrate_ext.products (code, transaction_type) VALUES (''Other'', ''Other'');';
    END IF;
    FOR r IN SELECT s.source FROM unnest('{xendit,systemeio}'::text[]) AS s(source)
              WHERE NOT EXISTS (SELECT 1 FROM migrate_ext.sync_runs AS sr
                                 WHERE sr.source = s.source AND sr.status = 'succeeded') LOOP
        RAISE EXCEPTION 'source % has never been synced successfully', r.source
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Run SELECT * FROM migrate_ext.sync_raw_api_data(); first.';
    END LOOP;
END;
$$;

-- Pairs of indexes of two tables with the same definition (duplicates
-- paired in creation order): the staging index and its production name
CREATE FUNCTION migrate_ext.index_pairs(prod regclass, stag regclass)
RETURNS TABLE (staging_name name, prod_name name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH indexes AS (
        SELECT i.indrelid, c.relname, i.indexrelid, i.indisunique, pg_get_indexdef(i.indexrelid) AS full_def,
               -- what precedes the definition proper: the names, quoted as
               -- pg_get_indexdef quotes them (search_path is pg_catalog only)
               format('CREATE %sINDEX %s ON ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                      quote_ident(c.relname)) AS head
          FROM pg_index AS i
          JOIN pg_class AS c ON c.oid = i.indexrelid
         WHERE i.indrelid IN (prod, stag)
    ), defs AS (
        SELECT x.indrelid, x.relname, x.indexrelid,
               CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END ||
               substr(x.full_def, length(x.head) + 1 + length(x.indrelid::regclass::text) + 1
                                  + CASE WHEN substr(x.full_def, length(x.head) + 1, 5) = 'ONLY ' THEN 5 ELSE 0 END) AS def
          FROM indexes AS x
    ), numbered AS (
        SELECT d.*, row_number() OVER (PARTITION BY d.indrelid, d.def ORDER BY d.indexrelid) AS k
          FROM defs AS d
    )
    SELECT s.relname, p.relname
      FROM numbered AS p
      JOIN numbered AS s ON s.def = p.def AND s.k = p.k AND s.indrelid = stag
     WHERE p.indrelid = prod;
$$;

-- Create migrate_staging.<tbl> with production's shape: LIKE ... INCLUDING
-- ALL, then production's index and statistics names, and no privileges for
-- anyone but the owner
CREATE FUNCTION migrate_ext.create_staging_table(tbl text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF to_regclass(format('migrate_staging.%I', tbl)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE migrate_staging.%I', tbl);
    END IF;
    EXECUTE format('CREATE TABLE migrate_staging.%I (LIKE public.%I INCLUDING ALL)', tbl, tbl);

    -- indexes: LIKE names them after their columns; give them production's
    -- names, through temporary names so that no two names ever collide
    FOR r IN SELECT * FROM migrate_ext.index_pairs(format('public.%I', tbl)::regclass,
                                                   format('migrate_staging.%I', tbl)::regclass) LOOP
        EXECUTE format('ALTER INDEX migrate_staging.%I RENAME TO %I', r.staging_name,
                       'mx_tmp_' || md5(r.staging_name));
    END LOOP;
    FOR r IN SELECT * FROM migrate_ext.index_pairs(format('public.%I', tbl)::regclass,
                                                   format('migrate_staging.%I', tbl)::regclass) LOOP
        EXECUTE format('ALTER INDEX migrate_staging.%I RENAME TO %I', r.staging_name, r.prod_name);
    END LOOP;

    -- extended statistics: same, by definition
    FOR r IN
        SELECT s.stxname AS staging_name, p.stxname AS prod_name
          FROM pg_statistic_ext AS p
          JOIN pg_statistic_ext AS s
            ON s.stxrelid = format('migrate_staging.%I', tbl)::regclass
           AND s.stxkeys = p.stxkeys AND s.stxkind = p.stxkind
         WHERE p.stxrelid = format('public.%I', tbl)::regclass
    LOOP
        EXECUTE format('ALTER STATISTICS migrate_staging.%I RENAME TO %I', r.staging_name, r.prod_name);
    END LOOP;

    -- nobody but the owner reads staging (default privileges may have granted more)
    PERFORM migrate_ext.close_table(format('migrate_staging.%I', tbl)::regclass);
END;
$$;
-------------------------------------------------------------------------------
-- Foreign keys around the swapped tables, read from the catalog, and what
-- staging must carry over so that nothing is lost
-------------------------------------------------------------------------------

-- Every foreign key that touches a swapped table: who references what,
-- with the column lists, and whether each side is a swapped table
CREATE FUNCTION migrate_ext.swap_foreign_keys()
RETURNS TABLE (conname name, src regclass, src_name name, src_swapped boolean, src_cols text[],
               dst regclass, dst_name name, dst_swapped boolean, dst_cols text[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.conname, c.conrelid::regclass, cs.relname,
           cs.relnamespace = 'public'::regnamespace AND cs.relname = ANY (migrate_ext.swapped_tables()),
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY AS k(att, i)
                   JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.att ORDER BY k.i),
           c.confrelid::regclass, cd.relname,
           cd.relnamespace = 'public'::regnamespace AND cd.relname = ANY (migrate_ext.swapped_tables()),
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY AS k(att, i)
                   JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.att ORDER BY k.i)
      FROM pg_constraint AS c
      JOIN pg_class AS cs ON cs.oid = c.conrelid
      JOIN pg_class AS cd ON cd.oid = c.confrelid
      JOIN pg_namespace AS ns ON ns.oid = cs.relnamespace
     WHERE c.contype = 'f'
       AND ns.nspname NOT LIKE 'migrate\_%'
       AND ((cs.relnamespace = 'public'::regnamespace AND cs.relname = ANY (migrate_ext.swapped_tables()))
         OR (cd.relnamespace = 'public'::regnamespace AND cd.relname = ANY (migrate_ext.swapped_tables())));
$$;

-- The e-mail of a row of a swapped table, as an SQL expression on alias p
CREATE FUNCTION migrate_ext.email_expression(tbl text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE tbl WHEN 'unified_profiles' THEN 'p.email' WHEN 'transactions' THEN 'p.contact_email'
                    ELSE 'NULL::text' END;
END;

-- Copy into staging the production rows of tbl that match condition (an
-- SQL condition on alias p) and are not there yet; list each as carried
-- over, or as an error when a staging row already holds its unique values
CREATE FUNCTION migrate_ext.carry_rows(run_id bigint, tbl text, condition text, reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format(
        'WITH wanted AS (
             SELECT p.* FROM public.%1$I AS p
              WHERE (%2$s) AND NOT EXISTS (SELECT 1 FROM migrate_staging.%1$I AS s WHERE s.id = p.id)
         ), moved AS (
             INSERT INTO migrate_staging.%1$I SELECT * FROM wanted ON CONFLICT DO NOTHING RETURNING id
         )
         INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
         SELECT $1, CASE WHEN m.id IS NULL THEN ''error'' ELSE ''info'' END,
                CASE WHEN m.id IS NULL THEN ''carry_over_conflict'' ELSE ''carried_over'' END,
                ''production'', p.id::text, %3$s,
                CASE WHEN m.id IS NULL
                     THEN %1$L || '' row kept because '' || $2 || '', but a staging row already has one of its unique values: resolve the duplicate upstream or in production''
                     ELSE %1$L || '' row kept: '' || $2 END
           FROM wanted AS p LEFT JOIN moved AS m ON m.id = p.id',
        tbl, condition, migrate_ext.email_expression(tbl))
    USING run_id, reason;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- Carry over the production rows staging must keep: (a) rows referenced
-- from tables outside the swap, (b) admins, (c) rows created after the sync
-- that staging is built from started; then what those rows reference
CREATE FUNCTION migrate_ext.carry_over(run_id bigint, sync_started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    t text;
    moved bigint;
    pass integer := 0;
BEGIN
    FOR fk IN SELECT * FROM migrate_ext.swap_foreign_keys() AS f
               WHERE f.dst_swapped AND NOT f.src_swapped ORDER BY f.dst_name, f.src_name, f.conname LOOP
        PERFORM migrate_ext.carry_rows(run_id, fk.dst_name,
            format('EXISTS (SELECT 1 FROM %s AS o WHERE (%s) = (%s))', fk.src,
                   (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.src_cols) AS c),
                   (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.dst_cols) AS c)),
            format('%s references it (%s)', fk.src, fk.conname));
    END LOOP;
    PERFORM migrate_ext.carry_rows(run_id, 'unified_profiles', 'p.is_admin', 'it belongs to an admin');
    IF sync_started IS NOT NULL THEN
        FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
            PERFORM migrate_ext.carry_rows(run_id, t,
                format('p.%I > %L::timestamptz', migrate_ext.created_column(t), sync_started),
                'it was created after the sync that staging is built from started');
        END LOOP;
    END IF;
    -- rows that staging rows reference (an enrollment's profile and
    -- transaction), until nothing more moves
    LOOP
        moved := 0;
        pass := pass + 1;
        FOR fk IN SELECT * FROM migrate_ext.swap_foreign_keys() AS f
                   WHERE f.dst_swapped AND f.src_swapped ORDER BY f.dst_name, f.src_name, f.conname LOOP
            moved := moved + migrate_ext.carry_rows(run_id, fk.dst_name,
                format('EXISTS (SELECT 1 FROM migrate_staging.%I AS o WHERE (%s) = (%s))', fk.src_name,
                       (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.src_cols) AS c),
                       (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.dst_cols) AS c)),
                format('a kept %s row references it (%s)', fk.src_name, fk.conname));
        END LOOP;
        EXIT WHEN moved = 0 OR pass >= 10;
    END LOOP;
END;
$$;

-- Report staging rows that would break a foreign key of production, and
-- rows of other tables that the swap would orphan
CREATE FUNCTION migrate_ext.check_staging_references(run_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    target text;
BEGIN
    FOR fk IN SELECT * FROM migrate_ext.swap_foreign_keys() AS f ORDER BY f.src_name, f.conname LOOP
        target := CASE WHEN fk.dst_swapped THEN format('migrate_staging.%I', fk.dst_name) ELSE fk.dst::text END;
        IF fk.src_swapped THEN
            -- a staging row must find what it references (new auth users count)
            EXECUTE format(
                'INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
                 SELECT $1, ''error'', ''foreign_key'', ''staging'', p.id::text, %s, %L
                   FROM migrate_staging.%I AS p
                  WHERE %s
                    AND NOT EXISTS (SELECT 1 FROM %s AS o WHERE (%s) = (%s))
                    %s',
                migrate_ext.email_expression(fk.src_name),
                format('%s: %s (%s) has no match in %s', fk.conname, fk.src_name,
                       array_to_string(fk.src_cols, ', '), fk.dst),
                fk.src_name,
                (SELECT string_agg('p.' || c || ' IS NOT NULL', ' AND ') FROM unnest(fk.src_cols) AS c),
                target,
                (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.dst_cols) AS c),
                (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.src_cols) AS c),
                CASE WHEN fk.dst = 'auth.users'::regclass
                     THEN format('AND NOT EXISTS (SELECT 1 FROM migrate_staging.auth_users AS n WHERE (n.id) = (%s))',
                                 (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.src_cols) AS c))
                     ELSE '' END)
            USING run_id;
        ELSE
            -- a row outside the swap must still find what it references
            EXECUTE format(
                'INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
                 SELECT $1, ''error'', ''would_orphan'', %L, (%s)::text, NULL,
                        %L
                   FROM %s AS p
                  WHERE %s
                    AND NOT EXISTS (SELECT 1 FROM %s AS o WHERE (%s) = (%s))',
                fk.src::text,
                (SELECT string_agg('p.' || c || '::text', ' || '','' || ') FROM unnest(fk.src_cols) AS c),
                format('%s (%s) references a %s row that staging does not have', fk.src, fk.conname, fk.dst_name),
                fk.src,
                (SELECT string_agg('p.' || c || ' IS NOT NULL', ' AND ') FROM unnest(fk.src_cols) AS c),
                target,
                (SELECT string_agg('o.' || c, ', ') FROM unnest(fk.dst_cols) AS c),
                (SELECT string_agg('p.' || c, ', ') FROM unnest(fk.src_cols) AS c))
            USING run_id;
        END IF;
    END LOOP;
END;
$$;
-------------------------------------------------------------------------------
-- validate_and_prepare_clean_data(): raw -> staging, with the report
-------------------------------------------------------------------------------

-- Run an INSERT into staging; if a row breaks a constraint, insert row by
-- row and report each row that cannot go in.  insert_sql filters its rows
-- with "($1::text IS NULL OR <key> = $1)"; keys_sql lists (key, email,
-- source) of the rows it would insert.
CREATE FUNCTION migrate_ext.insert_reporting(run_id bigint, what text, insert_sql text, keys_sql text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := 0;
    m bigint;
    k_key text;
    k_email text;
    k_source text;
BEGIN
    BEGIN
        EXECUTE insert_sql USING NULL::text;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    EXCEPTION WHEN integrity_constraint_violation THEN
        n := 0;
    END;
    FOR k_key, k_email, k_source IN EXECUTE keys_sql LOOP
        BEGIN
            EXECUTE insert_sql USING k_key;
            GET DIAGNOSTICS m = ROW_COUNT;
            n := n + m;
        EXCEPTION WHEN integrity_constraint_violation THEN
            INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
            VALUES (run_id, 'error', 'constraint_violation', k_source, k_key, k_email,
                    format('%s: %s', what, SQLERRM));
        END;
    END LOOP;
    RETURN n;
END;
$$;

-- Make sure identity_map has an id for every (kind, key) in keys
CREATE FUNCTION migrate_ext.draw_ids(kind text, keys text[]) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO migrate_ext.identity_map (kind, key, id)
    SELECT kind, k, gen_random_uuid()
      FROM (SELECT DISTINCT k FROM unnest(keys) AS k WHERE k IS NOT NULL) AS d
     WHERE NOT EXISTS (SELECT 1 FROM migrate_ext.identity_map AS m WHERE m.kind = draw_ids.kind AND m.key = d.k)
    ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION migrate_ext.validate_and_prepare_clean_data(
    OUT section text, OUT item text, OUT rows bigint, OUT amount numeric, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run bigint;
    v_sync_run bigint;
    v_sync_started timestamptz;
    v_email_re CONSTANT text := '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$';
    v_test_re CONSTANT text := '@(example\.(com|org|net)|test\.com)$';
    v_table text;
BEGIN
    PERFORM migrate_ext.lock_out_other_runs('validate_and_prepare_clean_data()');
    PERFORM migrate_ext.check_configuration();
    PERFORM migrate_ext.claim_private_schema('migrate_staging', migrate_ext.staging_tables());

    SELECT s.run_id, min(s.started_at) INTO v_sync_run, v_sync_started
      FROM migrate_ext.sync_runs AS s
     WHERE s.run_id = (SELECT max(run_id) FROM migrate_ext.sync_runs WHERE status = 'succeeded')
     GROUP BY s.run_id;
    v_run := nextval('migrate_ext.validation_runs_run_id_seq');
    INSERT INTO migrate_ext.validation_runs (run_id, started_at, sync_run_id, sync_started_at, production_signature)
    VALUES (v_run, clock_timestamp(), v_sync_run, v_sync_started, migrate_ext.production_signature());

    ---------------------------------------------------------------------------
    -- Contacts: e-mail identity, exclusions, merged per e-mail
    ---------------------------------------------------------------------------
    -- working tables of an earlier call in this transaction
    FOREACH v_table IN ARRAY '{mx_contact,mx_person,mx_invoice,mx_sale,mx_user,mx_prod_tx,mx_tx,mx_enroll,mx_auth}'::text[] LOOP
        IF to_regclass('pg_temp.' || v_table) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', v_table);
        END IF;
    END LOOP;
    -- Each PRAGMA:TABLE line declares the working table the next statement
    -- creates, for plpgsql_check (test/sql/plpgsql_check.sql); at run time
    -- it is a constant, and nothing needs plpgsql_check installed.
    PERFORM 'PRAGMA:TABLE: mx_contact (id text, email text, raw_email text, email_ok boolean, excluded text, first_name text, last_name text, tags text[], registered_at timestamptz)';
    CREATE TEMP TABLE mx_contact ON COMMIT DROP AS
    SELECT c.id, lower(btrim(c.email)) AS email, c.email AS raw_email,
           coalesce(lower(btrim(c.email)) ~ v_email_re, false) AS email_ok,
           x.reason AS excluded, c.first_name, c.last_name, c.tags, c.registered_at
      FROM migrate_ext.systemeio_raw AS c
      LEFT JOIN LATERAL (SELECT e.reason FROM migrate_ext.exclusions AS e
                          WHERE (e.kind = 'systemeio_id' AND e.value = c.id)
                             OR (e.kind = 'email' AND lower(btrim(c.email)) LIKE e.value)
                          ORDER BY e.kind LIMIT 1) AS x ON true;

    PERFORM 'PRAGMA:TABLE: mx_person (email text, contact_ids text[], first_name text, last_name text, tags text[], registered_at timestamptz)';
    CREATE TEMP TABLE mx_person ON COMMIT DROP AS
    SELECT c.email,
           array_agg(DISTINCT c.id ORDER BY c.id) AS contact_ids,
           (array_agg(c.first_name ORDER BY c.registered_at DESC NULLS LAST, c.id DESC)
               FILTER (WHERE nullif(btrim(c.first_name), '') IS NOT NULL))[1] AS first_name,
           (array_agg(c.last_name ORDER BY c.registered_at DESC NULLS LAST, c.id DESC)
               FILTER (WHERE nullif(btrim(c.last_name), '') IS NOT NULL))[1] AS last_name,
           coalesce((array_agg(DISTINCT tg.tag ORDER BY tg.tag) FILTER (WHERE tg.tag IS NOT NULL)), '{}') AS tags,
           min(c.registered_at) AS registered_at
      FROM mx_contact AS c
      LEFT JOIN LATERAL unnest(c.tags) AS tg(tag) ON true
     WHERE c.email_ok AND c.excluded IS NULL
     GROUP BY c.email;
    CREATE UNIQUE INDEX ON mx_person (email);
    ANALYZE mx_contact, mx_person;

    ---------------------------------------------------------------------------
    -- Invoices: product, status, e-mail identity, exclusions
    ---------------------------------------------------------------------------
    PERFORM 'PRAGMA:TABLE: mx_invoice (id text, external_id text, status text, amount numeric, currency text, raw_email text, email text, email_ok boolean, excluded text, product text, transaction_type text, fallback boolean, production_status text, paid boolean, known_status boolean, paid_at timestamptz, expiry_date timestamptz, created timestamptz, updated timestamptz, payment_method text, payment_channel text, description text, amount_type text, valid boolean)';
    CREATE TEMP TABLE mx_invoice ON COMMIT DROP AS
    SELECT i.id, i.external_id, i.status, i.amount, i.currency, i.payer_email AS raw_email,
           nullif(lower(btrim(i.payer_email)), '') AS email,
           coalesce(lower(btrim(i.payer_email)) ~ v_email_re, false) AS email_ok,
           x.reason AS excluded,
           p.code AS product, p.transaction_type, p.description_pattern IS NULL AS fallback,
           sm.production_status, coalesce(sm.becomes_transaction, false) AS paid,
           sm.xendit_status IS NOT NULL AS known_status,
           i.paid_at, i.expiry_date, i.created, i.updated, i.payment_method, i.payment_channel,
           i.description, jsonb_typeof(i.api_response -> 'amount') AS amount_type,
           true AS valid
      FROM migrate_ext.xendit_raw AS i
      LEFT JOIN LATERAL (SELECT e.reason FROM migrate_ext.exclusions AS e
                          WHERE (e.kind = 'xendit_id' AND e.value = i.id)
                             OR (e.kind = 'email' AND lower(btrim(i.payer_email)) LIKE e.value)
                          ORDER BY e.kind LIMIT 1) AS x ON true
      LEFT JOIN LATERAL (SELECT pr.* FROM migrate_ext.products AS pr
                          WHERE pr.description_pattern IS NULL OR i.description ILIKE pr.description_pattern
                          ORDER BY pr.description_pattern IS NULL, pr.match_order, pr.code LIMIT 1) AS p ON true
      LEFT JOIN migrate_ext.status_map AS sm ON sm.xendit_status = i.status;

    CREATE INDEX ON mx_invoice (id);
    ANALYZE mx_invoice;

    -- what was left out on purpose
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run, 'info', 'excluded', 'xendit', i.id, i.email, 'excluded: ' || i.excluded
      FROM mx_invoice AS i WHERE i.excluded IS NOT NULL
    UNION ALL
    SELECT v_run, 'info', 'excluded', 'systemeio', c.id, c.email, 'excluded: ' || c.excluded
      FROM mx_contact AS c WHERE c.excluded IS NOT NULL;

    -- invoice rules
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run, v.severity, v.rule, 'xendit', i.id, coalesce(i.email, i.raw_email), v.detail
      FROM mx_invoice AS i
     CROSS JOIN LATERAL (VALUES
        (NOT i.known_status, 'error', 'unknown_status',
         format('status %s is not in migrate_ext.status_map', coalesce(i.status, 'NULL'))),
        (i.known_status AND i.paid AND i.email IS NULL, 'error', 'paid_invoice_without_email',
         format('%s invoice of %s %s has no payer_email: fix it in Xendit or exclude it', i.status, i.currency, i.amount)),
        (i.email IS NOT NULL AND NOT i.email_ok, CASE WHEN i.paid THEN 'error' ELSE 'warning' END, 'invalid_email',
         format('payer_email %L is not a valid address%s', i.raw_email,
                CASE WHEN i.paid THEN '' ELSE ' (unpaid invoice: left out)' END)),
        (i.paid AND i.amount IS NULL, 'error', 'non_numeric_amount',
         format('amount is a JSON %s, not a number', coalesce(i.amount_type, 'absence'))),
        (i.paid AND i.amount <= 0, 'error', 'non_positive_amount', format('amount %s is not positive', i.amount)),
        (i.paid AND i.currency IS DISTINCT FROM 'PHP', 'error', 'currency_not_php',
         format('currency %s: production records pesos only', coalesce(i.currency, 'NULL'))),
        (i.paid AND i.fallback, 'warning', 'no_product_match',
         format('description %L matches no product: recorded as %s', i.description, i.transaction_type))
     ) AS v(hit, severity, rule, detail)
     WHERE v.hit AND i.excluded IS NULL;

    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run, 'warning', 'test_account', 'xendit', i.id, i.email,
           'a paid invoice of what looks like a test account: exclude it, e.g. INSERT INTO migrate_ext.exclusions VALUES (''email'', ''%@example.com'', ''test accounts'')'
      FROM mx_invoice AS i
     WHERE i.paid AND i.excluded IS NULL AND i.email ~ v_test_re;

    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run, 'error', 'duplicate_external_id', 'xendit', i.id, i.email,
           format('external_id %L is shared by %s paid invoices; production keeps external_id unique', i.external_id, d.n)
      FROM mx_invoice AS i
      JOIN (SELECT external_id, count(*) AS n FROM mx_invoice
             WHERE paid AND excluded IS NULL AND external_id IS NOT NULL
             GROUP BY external_id HAVING count(*) > 1) AS d ON d.external_id = i.external_id
     WHERE i.paid AND i.excluded IS NULL;

    -- an invoice with an error is left out; so is everything excluded or unpaid
    UPDATE mx_invoice AS i SET valid = false
     WHERE i.excluded IS NOT NULL OR NOT i.paid
        OR EXISTS (SELECT 1 FROM migrate_ext.validation_issues AS q
                    WHERE q.run_id = v_run AND q.source = 'xendit' AND q.record_id = i.id AND q.severity = 'error');

    -- contact rules
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run,
           CASE WHEN c.tags && (SELECT coalesce(array_agg(pt.tag), '{}') FROM migrate_ext.products AS pr,
                                       unnest(pr.paid_tags) AS pt(tag))
                THEN 'error' ELSE 'warning' END,
           'invalid_email', 'systemeio', c.id, c.raw_email,
           format('e-mail %L is not a valid address', c.raw_email)
      FROM mx_contact AS c WHERE c.excluded IS NULL AND NOT c.email_ok;
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run, 'warning', 'duplicate_contact_email', 'systemeio', array_to_string(p.contact_ids, ','), p.email,
           format('%s contacts share this e-mail: merged (tags united, earliest registration, latest names)',
                  cardinality(p.contact_ids))
      FROM mx_person AS p WHERE cardinality(p.contact_ids) > 1;

    ---------------------------------------------------------------------------
    -- Sales: paid invoices, and paid tags without a paid invoice
    ---------------------------------------------------------------------------
    PERFORM 'PRAGMA:TABLE: mx_sale (email text, product text, first_paid_at timestamptz, manual boolean)';
    CREATE TEMP TABLE mx_sale ON COMMIT DROP AS
    SELECT i.email, i.product, min(i.paid_at) AS first_paid_at, false AS manual
      FROM mx_invoice AS i WHERE i.valid GROUP BY i.email, i.product;
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run, 'warning', 'paid_tag_without_invoice', 'systemeio', array_to_string(pe.contact_ids, ','), pe.email,
           CASE WHEN pr.manual_price IS NOT NULL
                THEN format('tagged %s without a paid %s invoice: recorded as a manual payment of %s',
                            array_to_string(pr.paid_tags, '/'), pr.code, pr.manual_price)
                ELSE format('tagged %s without a paid %s invoice: no transaction (the product has no manual price)',
                            array_to_string(pr.paid_tags, '/'), pr.code) END
      FROM mx_person AS pe JOIN migrate_ext.products AS pr ON pe.tags && pr.paid_tags
     WHERE NOT EXISTS (SELECT 1 FROM mx_invoice AS i
                        WHERE i.paid AND i.email = pe.email AND i.product = pr.code);
    -- a manual payment only where no paid invoice of the product exists at
    -- all (one with an error or excluded still says the person paid)
    INSERT INTO mx_sale (email, product, first_paid_at, manual)
    SELECT pe.email, pr.code, pe.registered_at, true
      FROM mx_person AS pe JOIN migrate_ext.products AS pr ON pe.tags && pr.paid_tags
     WHERE pr.manual_price IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM mx_invoice AS i
                        WHERE i.paid AND i.email = pe.email AND i.product = pr.code);

    ---------------------------------------------------------------------------
    -- Users: existing auth users keep their ids; new ones get a stable id
    ---------------------------------------------------------------------------
    PERFORM 'PRAGMA:TABLE: mx_auth (email text, id uuid)';
    CREATE TEMP TABLE mx_auth ON COMMIT DROP AS
    SELECT lower(btrim(u.email)) AS email, (array_agg(u.id ORDER BY u.created_at NULLS LAST, u.id))[1] AS id
      FROM auth.users AS u WHERE u.email IS NOT NULL GROUP BY 1;
    CREATE UNIQUE INDEX ON mx_auth (email);
    INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
    SELECT v_run, 'warning', 'duplicate_auth_user', 'auth.users',
           string_agg(u.id::text, ',' ORDER BY u.created_at NULLS LAST, u.id), lower(btrim(u.email)),
           format('%s auth users share this e-mail: the profile keeps the id of the oldest; the others are left as they are',
                  count(*))
      FROM auth.users AS u
     WHERE lower(btrim(u.email)) IN (SELECT s.email FROM mx_sale AS s)
     GROUP BY lower(btrim(u.email)) HAVING count(*) > 1;

    PERFORM migrate_ext.draw_ids('user',
        ARRAY(SELECT DISTINCT s.email FROM mx_sale AS s JOIN migrate_ext.products AS pr ON pr.code = s.product
               WHERE pr.grants_profile AND NOT EXISTS (SELECT 1 FROM mx_auth AS a WHERE a.email = s.email)));
    PERFORM 'PRAGMA:TABLE: mx_user (email text, id uuid, has_auth_user boolean, first_paid_at timestamptz, created_at timestamptz)';
    CREATE TEMP TABLE mx_user ON COMMIT DROP AS
    SELECT s.email, coalesce(a.id, m.id) AS id, a.id IS NOT NULL AS has_auth_user,
           min(s.first_paid_at) AS first_paid_at,
           coalesce(least(min(pe.registered_at), min(s.first_paid_at)), v_sync_started) AS created_at
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product AND pr.grants_profile
      LEFT JOIN mx_person AS pe ON pe.email = s.email
      LEFT JOIN mx_auth AS a ON a.email = s.email
      LEFT JOIN migrate_ext.identity_map AS m ON m.kind = 'user' AND m.key = s.email
     GROUP BY s.email, a.id, m.id;
    CREATE UNIQUE INDEX ON mx_user (email);

    ---------------------------------------------------------------------------
    -- Transactions: one per valid paid invoice, one per manual payment
    ---------------------------------------------------------------------------
    PERFORM migrate_ext.draw_ids('xendit_invoice', ARRAY(SELECT id FROM mx_invoice WHERE valid));
    PERFORM migrate_ext.draw_ids('manual_payment', ARRAY(SELECT product || ':' || email FROM mx_sale WHERE manual));
    -- production transactions that can be recognized: by an external id
    -- that only one of them has, or as the only manual payment of a product
    -- for an e-mail
    PERFORM 'PRAGMA:TABLE: mx_prod_tx (kind text, key text, id uuid)';
    CREATE TEMP TABLE mx_prod_tx ON COMMIT DROP AS
    SELECT 'external_id' AS kind, t.external_id AS key, min(t.id::text)::uuid AS id
      FROM public.transactions AS t WHERE t.external_id IS NOT NULL
     GROUP BY t.external_id HAVING count(*) = 1
    UNION ALL
    SELECT 'manual', t.transaction_type || ':' || lower(btrim(t.contact_email)), min(t.id::text)::uuid
      FROM public.transactions AS t WHERE t.payment_method = 'manual' AND t.contact_email IS NOT NULL
     GROUP BY t.transaction_type, lower(btrim(t.contact_email)) HAVING count(*) = 1;
    CREATE UNIQUE INDEX ON mx_prod_tx (kind, key);
    ANALYZE mx_prod_tx;

    PERFORM 'PRAGMA:TABLE: mx_tx (id uuid, source text, record_id text, email text, product text, user_id uuid, amount numeric, currency text, status text, payment_method text, transaction_type text, external_id text, paid_at timestamptz, settled_at timestamptz, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, metadata jsonb)';
    CREATE TEMP TABLE mx_tx ON COMMIT DROP AS
    SELECT coalesce(pt.id, m.id) AS id, 'xendit' AS source, i.id AS record_id, i.email, i.product,
           coalesce(a.id, u.id) AS user_id, i.amount, i.currency, i.production_status AS status,
           coalesce(i.payment_channel, i.payment_method) AS payment_method, i.transaction_type,
           i.external_id, i.paid_at,
           CASE WHEN i.status = 'SETTLED' THEN i.updated END AS settled_at,
           i.expiry_date AS expires_at, i.created AS created_at, i.updated AS updated_at,
           jsonb_strip_nulls(jsonb_build_object('xendit_invoice_id', i.id, 'xendit_status', i.status,
                                                'description', i.description, 'payment_method', i.payment_method,
                                                'payment_channel', i.payment_channel)) AS metadata
      FROM mx_invoice AS i
      JOIN migrate_ext.identity_map AS m ON m.kind = 'xendit_invoice' AND m.key = i.id
      LEFT JOIN mx_auth AS a ON a.email = i.email
      LEFT JOIN mx_user AS u ON u.email = i.email
      LEFT JOIN mx_prod_tx AS pt ON pt.kind = 'external_id' AND pt.key = i.external_id
     WHERE i.valid
    UNION ALL
    SELECT coalesce(pm.id, m.id), 'systemeio', s.product || ':' || s.email, s.email, s.product,
           coalesce(a.id, u.id), pr.manual_price, 'PHP', 'completed', 'manual', pr.transaction_type,
           NULL, s.first_paid_at, NULL, NULL, s.first_paid_at, s.first_paid_at,
           jsonb_build_object('manual_payment', true, 'systemeio_contact_ids', pe.contact_ids,
                              'paid_tags', pr.paid_tags)
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product
      JOIN mx_person AS pe ON pe.email = s.email
      JOIN migrate_ext.identity_map AS m ON m.kind = 'manual_payment' AND m.key = s.product || ':' || s.email
      LEFT JOIN mx_auth AS a ON a.email = s.email
      LEFT JOIN mx_user AS u ON u.email = s.email
      -- production's own record of the same manual payment keeps its id
      LEFT JOIN mx_prod_tx AS pm ON pm.kind = 'manual' AND pm.key = pr.transaction_type || ':' || s.email
     WHERE s.manual;
    CREATE UNIQUE INDEX ON mx_tx (id);
    CREATE INDEX ON mx_tx (email, product);
    ANALYZE mx_sale, mx_user, mx_tx;

    ---------------------------------------------------------------------------
    -- Enrollments: one per user and course of products that grant one
    ---------------------------------------------------------------------------
    PERFORM 'PRAGMA:TABLE: mx_enroll (user_id uuid, course_id uuid, email text, transaction_id uuid, enrolled_at timestamptz, id uuid)';
    CREATE TEMP TABLE mx_enroll ON COMMIT DROP AS
    SELECT u.id AS user_id, c.id AS course_id, s.email,
           (SELECT t.id FROM mx_tx AS t WHERE t.email = s.email AND t.product = s.product
             ORDER BY t.paid_at NULLS LAST, t.id LIMIT 1) AS transaction_id,
           coalesce(s.first_paid_at, v_sync_started) AS enrolled_at, NULL::uuid AS id
      FROM mx_sale AS s
      JOIN migrate_ext.products AS pr ON pr.code = s.product AND pr.enrollment_course IS NOT NULL
      JOIN public.courses AS c ON c.title = pr.enrollment_course
      JOIN mx_user AS u ON u.email = s.email;
    PERFORM migrate_ext.draw_ids('enrollment', ARRAY(SELECT user_id || ':' || course_id FROM mx_enroll));
    UPDATE mx_enroll AS e
       SET id = coalesce((SELECT pe.id FROM public.enrollments AS pe
                           WHERE pe.user_id = e.user_id AND pe.course_id = e.course_id),
                         (SELECT m.id FROM migrate_ext.identity_map AS m
                           WHERE m.kind = 'enrollment' AND m.key = e.user_id || ':' || e.course_id));

    ---------------------------------------------------------------------------
    -- Staging tables with production's shape, filled
    ---------------------------------------------------------------------------
    IF to_regclass('migrate_staging.auth_users') IS NOT NULL THEN
        DROP TABLE migrate_staging.auth_users;
    END IF;
    -- the previous staging goes in one statement: after a rollback its
    -- tables reference each other
    IF EXISTS (SELECT 1 FROM unnest(migrate_ext.swapped_tables()) AS t WHERE to_regclass(format('migrate_staging.%I', t)) IS NOT NULL) THEN
        EXECUTE 'DROP TABLE ' || (SELECT string_agg(format('migrate_staging.%I', t), ', ')
                                    FROM unnest(migrate_ext.swapped_tables()) AS t
                                   WHERE to_regclass(format('migrate_staging.%I', t)) IS NOT NULL);
    END IF;
    FOREACH v_table IN ARRAY migrate_ext.swapped_tables() LOOP
        PERFORM migrate_ext.create_staging_table(v_table);
    END LOOP;
    CREATE TABLE migrate_staging.auth_users (
        id         uuid PRIMARY KEY,
        email      text NOT NULL UNIQUE,
        first_name text,
        last_name  text,
        created_at timestamptz NOT NULL
    );
    PERFORM migrate_ext.close_table('migrate_staging.auth_users'::regclass);

    -- Rows production already has: production's row (every column kept)
    -- with the values the APIs say laid over it (jsonb_populate_record), in
    -- one INSERT, so that a constraint sees the final row.  Then new rows.
    PERFORM migrate_ext.insert_reporting(v_run, 'unified_profiles',
        'INSERT INTO migrate_staging.unified_profiles
         SELECT r.* FROM public.unified_profiles AS p
           JOIN pg_temp.mx_user AS u ON u.id = p.id
           LEFT JOIN pg_temp.mx_person AS pe ON pe.email = u.email
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''email'', u.email, ''first_name'', coalesce(pe.first_name, p.first_name),
                    ''last_name'', coalesce(pe.last_name, p.last_name), ''tags'', coalesce(pe.tags, p.tags))) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT p.id::text AS key, p.email, ''production'' AS source FROM public.unified_profiles AS p
          WHERE p.id IN (SELECT id FROM pg_temp.mx_user)');
    PERFORM migrate_ext.insert_reporting(v_run, 'unified_profiles',
        'INSERT INTO migrate_staging.unified_profiles (id, email, first_name, last_name, tags, created_at)
         SELECT u.id, u.email, pe.first_name, pe.last_name, pe.tags, u.created_at
           FROM pg_temp.mx_user AS u LEFT JOIN pg_temp.mx_person AS pe ON pe.email = u.email
          WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = u.id)
            AND ($1::text IS NULL OR u.id::text = $1)',
        'SELECT u.id::text AS key, u.email, ''api'' AS source FROM pg_temp.mx_user AS u
          WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS p WHERE p.id = u.id)');

    PERFORM migrate_ext.insert_reporting(v_run, 'transactions',
        'INSERT INTO migrate_staging.transactions
         SELECT r.* FROM public.transactions AS p
           JOIN pg_temp.mx_tx AS t ON t.id = p.id
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''user_id'', t.user_id, ''amount'', t.amount, ''currency'', t.currency, ''status'', t.status,
                    ''payment_method'', t.payment_method, ''transaction_type'', t.transaction_type,
                    ''external_id'', t.external_id, ''paid_at'', t.paid_at, ''settled_at'', t.settled_at,
                    ''expires_at'', t.expires_at, ''contact_email'', t.email,
                    ''metadata'', coalesce(p.metadata, ''{}''::jsonb) || t.metadata)) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT t.id::text AS key, t.email, t.source FROM pg_temp.mx_tx AS t
          WHERE EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)');
    PERFORM migrate_ext.insert_reporting(v_run, 'transactions',
        'INSERT INTO migrate_staging.transactions
                (id, user_id, amount, currency, status, payment_method, transaction_type, external_id,
                 paid_at, settled_at, expires_at, metadata, contact_email, created_at, updated_at)
         SELECT t.id, t.user_id, t.amount, t.currency, t.status, t.payment_method, t.transaction_type,
                t.external_id, t.paid_at, t.settled_at, t.expires_at, t.metadata, t.email,
                t.created_at, t.updated_at
           FROM pg_temp.mx_tx AS t
          WHERE NOT EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)
            AND ($1::text IS NULL OR t.id::text = $1)',
        'SELECT t.id::text AS key, t.email, t.source FROM pg_temp.mx_tx AS t
          WHERE NOT EXISTS (SELECT 1 FROM public.transactions AS p WHERE p.id = t.id)');

    PERFORM migrate_ext.insert_reporting(v_run, 'enrollments',
        'INSERT INTO migrate_staging.enrollments
         SELECT r.* FROM public.enrollments AS p
           JOIN pg_temp.mx_enroll AS e ON e.id = p.id
          CROSS JOIN LATERAL jsonb_populate_record(p, jsonb_build_object(
                    ''transaction_id'', coalesce(p.transaction_id, e.transaction_id))) AS r
          WHERE ($1::text IS NULL OR p.id::text = $1)',
        'SELECT e.id::text AS key, e.email, ''production'' AS source FROM pg_temp.mx_enroll AS e
          WHERE EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)');
    PERFORM migrate_ext.insert_reporting(v_run, 'enrollments',
        'INSERT INTO migrate_staging.enrollments (id, user_id, course_id, transaction_id, status, enrolled_at)
         SELECT e.id, e.user_id, e.course_id, e.transaction_id, ''active'', e.enrolled_at
           FROM pg_temp.mx_enroll AS e
          WHERE NOT EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)
            AND ($1::text IS NULL OR e.id::text = $1)',
        'SELECT e.id::text AS key, e.email, ''api'' AS source FROM pg_temp.mx_enroll AS e
          WHERE NOT EXISTS (SELECT 1 FROM public.enrollments AS p WHERE p.id = e.id)');

    ---------------------------------------------------------------------------
    -- Nothing is lost: carry production rows over
    ---------------------------------------------------------------------------
    PERFORM migrate_ext.carry_over(v_run, v_sync_started);
    -- is_student as the application's trigger (sync_is_student) keeps it:
    -- true exactly when the profile has an active enrollment
    UPDATE migrate_staging.unified_profiles AS s SET is_student = a.active
      FROM (SELECT p.id, EXISTS (SELECT 1 FROM migrate_staging.enrollments AS e
                                  WHERE e.user_id = p.id AND e.status = 'active') AS active
              FROM migrate_staging.unified_profiles AS p) AS a
     WHERE a.id = s.id AND s.is_student IS DISTINCT FROM a.active;

    -- new auth users: the profiles whose id no auth user has
    INSERT INTO migrate_staging.auth_users (id, email, first_name, last_name, created_at)
    SELECT s.id, s.email, s.first_name, s.last_name, s.created_at
      FROM migrate_staging.unified_profiles AS s
     WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id);

    PERFORM migrate_ext.check_staging_references(v_run);

    -- production rows that will be gone after the launch
    FOREACH v_table IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format(
            'INSERT INTO migrate_ext.validation_issues (run_id, severity, rule, source, record_id, email, detail)
             SELECT $1, ''info'', ''removed_at_launch'', %L, p.id::text, %s, %L
               FROM public.%I AS p
              WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.%I AS s WHERE s.id = p.id)',
            v_table, migrate_ext.email_expression(v_table),
            format('production row of %s that the API data does not produce and nothing needs', v_table),
            v_table, v_table)
        USING v_run;
    END LOOP;

    UPDATE migrate_ext.validation_runs AS v
       SET finished_at = clock_timestamp(),
           errors = (SELECT count(*) FROM migrate_ext.validation_issues AS q WHERE q.run_id = v_run AND q.severity = 'error'),
           warnings = (SELECT count(*) FROM migrate_ext.validation_issues AS q WHERE q.run_id = v_run AND q.severity = 'warning')
     WHERE v.run_id = v_run;

    RETURN QUERY SELECT * FROM migrate_ext.validation_report(v_run);
END;
$$;
COMMENT ON FUNCTION migrate_ext.validate_and_prepare_clean_data() IS
    'Build schema migrate_staging from the raw API data and the rules, and report every issue (migrate_ext.validation_issues)';
-------------------------------------------------------------------------------
-- The validation report a DBA reads in psql
-------------------------------------------------------------------------------

-- One run's report: staging row counts, issues by severity and rule,
-- revenue by product and status in pesos, leads, and what production would
-- gain, keep and lose at launch
CREATE FUNCTION migrate_ext.validation_report(run_id bigint,
    OUT section text, OUT item text, OUT rows bigint, OUT amount numeric, OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    v record;
BEGIN
    SELECT * INTO v FROM migrate_ext.validation_runs AS r WHERE r.run_id = validation_report.run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'validation run % does not exist', run_id
              USING ERRCODE = 'no_data_found', HINT = 'See migrate_ext.validation_runs.';
    END IF;

    section := 'run';
    item := 'validation run ' || v.run_id;
    rows := NULL;
    amount := NULL;
    detail := format('%s errors, %s warnings; built from sync run %s%s', v.errors, v.warnings, v.sync_run_id,
                     CASE WHEN v.errors > 0 THEN ': the launch is blocked until every error is fixed upstream or excluded'
                          ELSE ': ready to launch' END);
    RETURN NEXT;

    FOREACH t IN ARRAY migrate_ext.swapped_tables() || '{auth_users}'::text[] LOOP
        section := 'staging';
        item := 'migrate_staging.' || t;
        EXECUTE format('SELECT count(*) FROM migrate_staging.%I', t) INTO rows;
        amount := NULL;
        detail := CASE t WHEN 'auth_users' THEN 'auth users the launch will create' ELSE 'rows' END;
        RETURN NEXT;
    END LOOP;

    RETURN QUERY
    SELECT 'issues', q.severity || ': ' || q.rule, count(*), NULL::numeric,
           min(q.detail) || CASE WHEN count(*) > 1 THEN ' (and more)' ELSE '' END
      FROM migrate_ext.validation_issues AS q
     WHERE q.run_id = validation_report.run_id
     GROUP BY q.severity, q.rule
     ORDER BY CASE q.severity WHEN 'error' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END, q.rule;

    RETURN QUERY
    SELECT 'revenue', s.transaction_type || ' ' || s.status, count(*), sum(s.amount),
           'pesos; ' || count(*) FILTER (WHERE s.payment_method = 'manual') || ' manual payments'
      FROM migrate_staging.transactions AS s
     GROUP BY s.transaction_type, s.status
     ORDER BY s.transaction_type, s.status;

    RETURN QUERY
    SELECT 'leads', x.item, x.n, NULL::numeric, x.detail
      FROM (SELECT 1 AS k, 'contacts (by e-mail)' AS item, count(*) AS n,
                   'distinct e-mails in systemeio_raw' AS detail
              FROM (SELECT DISTINCT lower(btrim(email)) FROM migrate_ext.systemeio_raw) AS e
            UNION ALL
            SELECT 2, 'leads', count(*), 'contacts with no payment: not customers, kept in systemeio_raw'
              FROM (SELECT DISTINCT lower(btrim(c.email)) AS email FROM migrate_ext.systemeio_raw AS c) AS e
             WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.transactions AS s WHERE s.contact_email = e.email)
            UNION ALL
            SELECT 3, 'converted', count(*), 'contacts that paid after they registered'
              FROM (SELECT lower(btrim(c.email)) AS email, min(c.registered_at) AS registered_at
                      FROM migrate_ext.systemeio_raw AS c GROUP BY 1) AS e
             WHERE EXISTS (SELECT 1 FROM migrate_staging.transactions AS s
                            WHERE s.contact_email = e.email AND s.paid_at > e.registered_at)) AS x
     ORDER BY x.k;

    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        RETURN QUERY EXECUTE format(
            'SELECT ''production''::text, %1$L || '': '' || x.what, x.n, NULL::numeric, x.detail
               FROM (SELECT 1 AS k, ''gain'' AS what,
                            (SELECT count(*) FROM migrate_staging.%1$I AS s
                              WHERE NOT EXISTS (SELECT 1 FROM public.%1$I AS p WHERE p.id = s.id)) AS n,
                            ''rows the APIs show that production lacks'' AS detail
                     UNION ALL
                     SELECT 2, ''keep'',
                            (SELECT count(*) FROM migrate_staging.%1$I AS s
                              WHERE EXISTS (SELECT 1 FROM public.%1$I AS p WHERE p.id = s.id)),
                            ''rows production has, same id (values as the APIs say)''
                     UNION ALL
                     SELECT 3, ''lose'',
                            (SELECT count(*) FROM public.%1$I AS p
                              WHERE NOT EXISTS (SELECT 1 FROM migrate_staging.%1$I AS s WHERE s.id = p.id)),
                            ''rows removed at launch (listed as removed_at_launch), kept in the backup'') AS x
              ORDER BY x.k', t);
    END LOOP;
END;
$$;
-------------------------------------------------------------------------------
-- The swap's inventory: everything that depends on a swapped production
-- table, and what the swap would not know how to carry (it must refuse,
-- naming the object, before it changes anything: fail closed)
-------------------------------------------------------------------------------

-- Every dependent of the swapped production tables, from pg_depend: on the
-- table itself and on its row type and array type
CREATE FUNCTION migrate_ext.swap_dependents()
RETURNS TABLE (tbl text, catalog regclass, deptype "char", object text, objid oid, objsubid integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.relname::text, d.classid::regclass, d.deptype,
           pg_describe_object(d.classid, d.objid, d.objsubid), d.objid, d.objsubid
      FROM pg_class AS c
      JOIN pg_type AS ty ON ty.oid = c.reltype
      JOIN pg_depend AS d
        ON (d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid)
        OR (d.refclassid = 'pg_type'::regclass AND d.refobjid IN (c.reltype, ty.typarray))
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relname = ANY (migrate_ext.swapped_tables());
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
        SELECT d.tbl, format('%s %s', CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, v.oid::regclass) AS object,
               v.relowner AS owner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_rewrite AS w ON w.oid = d.objid JOIN pg_class AS v ON v.oid = w.ev_class
         WHERE d.catalog = 'pg_rewrite'::regclass AND v.relkind IN ('v', 'm')
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
         WHERE d.catalog = 'pg_policy'::regclass
           AND NOT (c.relnamespace = 'public'::regnamespace AND c.relname = d.tbl)
        UNION ALL
        SELECT d.tbl, d.object, c.relowner
          FROM migrate_ext.swap_dependents() AS d
          JOIN pg_constraint AS k ON k.oid = d.objid JOIN pg_class AS c ON c.oid = k.conrelid
         WHERE d.catalog = 'pg_constraint'::regclass AND k.contype = 'f'
           AND NOT (c.relnamespace = 'public'::regnamespace AND c.relname = d.tbl)
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
    SELECT DISTINCT c.relname::text, format('column %s.%I', k.tbl, k.col),
           format('points at public.%s, and %s may not update and lock %s, so the swap could not re-point it; '
                  'grant it SELECT and UPDATE on %s for the launch', c.relname, current_user, k.tbl, k.tbl)
      FROM migrate_ext.known_regclass_columns() AS k, pg_class AS c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
       AND NOT (has_table_privilege(k.tbl, 'SELECT') AND has_table_privilege(k.tbl, 'UPDATE'))
    UNION ALL
    -- tables production's foreign keys reference: the new tables get the
    -- same foreign keys, which needs REFERENCES and a lock on them
    SELECT DISTINCT c.relname::text, format('table %s', k.confrelid::regclass),
           format('is referenced by public.%s, and %s lacks REFERENCES or UPDATE on it, so the new table could not get the same foreign key; '
                  'grant both for the launch', c.relname, current_user)
      FROM pg_class AS c JOIN pg_constraint AS k ON k.conrelid = c.oid AND k.contype = 'f'
     WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
       AND NOT pg_has_role(current_user, (SELECT r.relowner FROM pg_class AS r WHERE r.oid = k.confrelid), 'USAGE')
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
    SELECT c.relname::text, format('column %s.%s', a.attrelid::regclass, a.attname),
           format('is of type public.%s (the table''s row type), which stays with the backup; change the column''s type first', c.relname)
      FROM pg_class AS c
      JOIN pg_type AS ty ON ty.oid = c.reltype
      JOIN pg_attribute AS a ON a.atttypid IN (c.reltype, ty.typarray) AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_class AS o ON o.oid = a.attrelid AND o.relkind IN ('r', 'p', 'f', 'm')
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
$$;
COMMENT ON FUNCTION migrate_ext.swap_refusals() IS
    'Objects depending on the swapped production tables that a swap could not carry; the launch refuses while this returns rows';
-------------------------------------------------------------------------------
-- The swap's lock protocol (doc/swap-checklist.md item 26): every relation locked in
-- ACCESS EXCLUSIVE mode (or SHARE ROW EXCLUSIVE, for tables that new
-- foreign keys reference) in OID order, each attempt bounded by
-- migrate_ext.lock_timeout, retried migrate_ext.lock_retries times with
-- back-off and jitter.  A failed attempt releases every lock it took, so a
-- session queued behind the swap waits at most one attempt.
-------------------------------------------------------------------------------

-- Load the library, so that the migrate_ext.* settings are defined
CREATE FUNCTION migrate_ext.load_settings() RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'migrate_ext_load_settings';

-- Lock relations for a swap (exclusively, and shared ones in SHARE ROW
-- EXCLUSIVE mode); returns the number of attempts it took, or raises
-- lock_not_available naming the relation and who holds it
CREATE FUNCTION migrate_ext.lock_for_swap(relations regclass[], shared regclass[] DEFAULT '{}') RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    attempts integer;
    per_attempt text;
    caller_timeout CONSTANT text := current_setting('lock_timeout');
    attempt integer := 0;
    rel record;
    waiting_for regclass;
BEGIN
    PERFORM migrate_ext.load_settings();
    attempts := current_setting('migrate_ext.lock_retries')::integer + 1;
    per_attempt := current_setting('migrate_ext.lock_timeout');
    IF EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = ANY (relations || shared) AND c.relkind NOT IN ('r', 'p', 'v', 'f')) THEN
        RAISE EXCEPTION 'lock_for_swap() locks tables and views only'
              USING ERRCODE = 'wrong_object_type',
                    HINT = 'LOCK TABLE refuses materialized views and indexes; rebuild those after the swap.';
    END IF;
    LOOP
        attempt := attempt + 1;
        BEGIN
            PERFORM set_config('lock_timeout', per_attempt, true);
            FOR rel IN SELECT * FROM (SELECT r, 'ACCESS EXCLUSIVE' AS mode FROM unnest(relations) AS r
                                      UNION
                                      SELECT r, 'SHARE ROW EXCLUSIVE' FROM unnest(shared) AS r
                                       WHERE NOT r = ANY (relations)) AS x
                        ORDER BY x.r::oid LOOP
                waiting_for := rel.r;
                EXECUTE format('LOCK TABLE %s IN %s MODE', rel.r, rel.mode);
            END LOOP;
            PERFORM set_config('lock_timeout', caller_timeout, true);
            RETURN attempt;
        EXCEPTION WHEN lock_not_available THEN
            -- the attempt's subtransaction is gone, and every lock it took
            EXIT WHEN attempt >= attempts;
            PERFORM pg_sleep(least(0.05 * 2 ^ least(attempt, 10), 2.0) * (0.5 + random() / 2));
        END;
    END LOOP;
    RAISE EXCEPTION 'could not lock % for the swap: % attempts of % each timed out', waiting_for, attempt, per_attempt
          USING ERRCODE = 'lock_not_available',
                DETAIL = coalesce('Held by: ' || (SELECT string_agg(format('pid %s (%s, %s)', a.pid, coalesce(nullif(a.application_name, ''), a.usename), a.state), ', ' ORDER BY a.pid)
                                                  FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
                                                 WHERE l.relation = waiting_for AND l.granted AND l.pid <> pg_backend_pid()),
                                  'another session'),
                HINT = 'Nothing was changed. Retry when those sessions are done, or raise migrate_ext.lock_retries or migrate_ext.lock_timeout.';
END;
$$;
-------------------------------------------------------------------------------
-- Creating the staged new users in auth.users as Supabase Auth expects them
-- (the launch's first step)
-------------------------------------------------------------------------------

-- Insert every user of migrate_staging.auth_users that auth.users does not
-- have: '' (never NULL) tokens and e-mail-change columns, aud and role
-- authenticated, the zero instance id, the e-mail provider in
-- raw_app_meta_data, a matching auth.identities row where that table
-- exists; confirmed_at is generated and never written.  Existing auth users
-- are never changed.  Returns the number of users created.
CREATE FUNCTION migrate_ext.create_auth_users() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF to_regclass('migrate_staging.auth_users') IS NULL THEN
        RAISE EXCEPTION 'there is no staging: migrate_staging.auth_users is missing'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Run SELECT * FROM migrate_ext.validate_and_prepare_clean_data(); first.';
    END IF;
    IF EXISTS (SELECT 1 FROM migrate_staging.auth_users AS s
                 JOIN auth.users AS u ON lower(u.email) = lower(s.email) AND u.id <> s.id) THEN
        RAISE EXCEPTION 'an auth user with the e-mail of a staged new user already exists'
              USING ERRCODE = 'unique_violation',
                    HINT = 'Somebody signed up after the validation: run validate_and_prepare_clean_data() again.';
    END IF;

    INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
                            confirmation_token, recovery_token, email_change_token_new, email_change,
                            email_change_token_current, phone_change, phone_change_token, reauthentication_token,
                            raw_app_meta_data, raw_user_meta_data, is_super_admin, is_sso_user, is_anonymous,
                            created_at, updated_at)
    SELECT '00000000-0000-0000-0000-000000000000', s.id, 'authenticated', 'authenticated', s.email, '',
           '', '', '', '', '', '', '', '',
           '{"provider": "email", "providers": ["email"]}'::jsonb,
           jsonb_strip_nulls(jsonb_build_object('email', s.email, 'email_verified', false,
                                                'first_name', s.first_name, 'last_name', s.last_name)),
           false, false, false, s.created_at, now()
      FROM migrate_staging.auth_users AS s
     WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id);
    GET DIAGNOSTICS n = ROW_COUNT;

    IF to_regclass('auth.identities') IS NOT NULL THEN
        INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at)
        SELECT s.id::text, s.id,
               jsonb_build_object('sub', s.id::text, 'email', s.email, 'email_verified', false, 'phone_verified', false),
               'email', now(), now()
          FROM migrate_staging.auth_users AS s
         WHERE NOT EXISTS (SELECT 1 FROM auth.identities AS i WHERE i.provider = 'email' AND i.provider_id = s.id::text);
    END IF;
    RETURN n;
END;
$$;
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
-------------------------------------------------------------------------------
-- launch_clean_production(), rollback_migration(), migration_status(),
-- drop_backup(): refusals, the migrations log, and the swap
-- engine run forward (staging in, production to a backup) or backward
-------------------------------------------------------------------------------

CREATE TABLE migrate_ext.migrations (
    backup_timestamp  text PRIMARY KEY CHECK (backup_timestamp ~ '^\d{4}(_\d{2}){5}$'),
    state             text NOT NULL CHECK (state IN ('launched', 'rolled_back', 'dropped')),
    launched_at       timestamptz NOT NULL,
    rolled_back_at    timestamptz,
    dropped_at        timestamptz,
    validation_run_id bigint,
    counts            jsonb NOT NULL,
    created_users     uuid[] NOT NULL DEFAULT '{}',
    launched_by       name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE migrate_ext.migrations IS
    'One row per launch: its backup schema migrate_backup_<backup_timestamp>, its state, row counts and lock time, and the auth users it created';
SELECT pg_catalog.pg_extension_config_dump('migrate_ext.migrations', '');

-- The name of the backup schema of a migration
CREATE FUNCTION migrate_ext.backup_schema(backup_timestamp text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT 'migrate_backup_' || backup_timestamp;
END;

-- The backup's name: the launch time in UTC, one per second.  A launch in
-- the same second as an earlier one waits for the next second; a name
-- taken by a schema no launch made (somebody could create the next
-- seconds' names in advance) is refused after a few seconds, not waited out
CREATE FUNCTION migrate_ext.new_backup_timestamp() RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ts text;
    squatter text;
BEGIN
    FOR attempt IN 1..15 LOOP
        ts := to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY_MM_DD_HH24_MI_SS');
        SELECT format('schema %s (owned by %s)', n.nspname, n.nspowner::regrole) INTO squatter
          FROM pg_namespace AS n WHERE n.nspname = migrate_ext.backup_schema(ts);
        IF squatter IS NULL AND NOT EXISTS (SELECT 1 FROM migrate_ext.migrations AS m WHERE m.backup_timestamp = ts) THEN
            RETURN ts;
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
    RAISE EXCEPTION 'launch refused: no free backup name; the last one tried is taken by %', coalesce(squatter, 'an earlier migration')
          USING ERRCODE = 'duplicate_schema',
                HINT = 'Nothing was changed. Schemas named migrate_backup_<timestamp> are the launch''s own: drop the ones no migration made (SELECT * FROM migrate_ext.migration_status(); lists the migrations), then launch again.';
END;
$$;

-- Everything that stops a launch now, with what to do; empty when the
-- launch may go ahead
CREATE FUNCTION migrate_ext.launch_refusals() RETURNS TABLE (problem text, hint text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
                 FROM pg_class AS c
                WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (migrate_ext.swapped_tables())
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
$$;

-- Refuse to swap in a transaction that already holds locks on the swapped
-- tables: a failed lock attempt could not release them, and sessions
-- would queue behind them for the whole retry time
CREATE FUNCTION migrate_ext.check_fresh_transaction(what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held text;
BEGIN
    SELECT string_agg(DISTINCT l.relation::regclass::text, ', ') INTO held
      FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
       AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
       AND c.relname = ANY (migrate_ext.swapped_tables())
       AND (c.relnamespace IN ('public'::regnamespace, to_regnamespace('migrate_staging'))
            OR c.relnamespace IN (SELECT n.oid FROM pg_namespace AS n WHERE n.nspname LIKE 'migrate\_backup\_%'));
    IF held IS NOT NULL THEN
        RAISE EXCEPTION '% must run before anything else in its transaction touches the tables it swaps (this one holds locks on %)', what, held
              USING ERRCODE = 'active_sql_transaction',
                    HINT = 'Nothing was changed. Run it on its own, or first after BEGIN, so that a failed lock attempt holds nothing that other sessions wait for.';
    END IF;
END;
$$;

-- Run a swap plan: prepare, lock, swap, each statement in turn; on any
-- error everything is rolled back and the error names the step and its
-- statement.  Returns the lock hold time and attempts.
CREATE FUNCTION migrate_ext.run_swap(incoming text, outgoing_to text, what text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
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
                EXECUTE step.statement INTO attempts;
                locked_at := clock_timestamp();
                PERFORM set_config('lock_timeout', per_attempt, true);
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
$$;

-- Row counts of the swapped tables of a schema, as jsonb
CREATE FUNCTION migrate_ext.table_counts(schema_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    n bigint;
    counts jsonb := '{}'::jsonb;
BEGIN
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I', schema_name, t) INTO n;
        counts := counts || jsonb_build_object(t, n);
    END LOOP;
    RETURN counts;
END;
$$;

-- The swap: staging becomes production in one transaction, production is
-- kept in migrate_backup_<timestamp>; dry_run returns the plan instead
CREATE FUNCTION migrate_ext.launch_clean_production(dry_run boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ts text;
    v_schema text;
    v_problems text;
    v_first_problem text;
    v_first_hint text;
    v_users uuid[];
    v_created bigint;
    v_before jsonb;
    v_after jsonb;
    v_lock jsonb;
    v_run bigint;
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must be true or false, not NULL'
              USING ERRCODE = 'null_value_not_allowed', HINT = 'SELECT migrate_ext.launch_clean_production(dry_run => true); shows the plan.';
    END IF;
    PERFORM migrate_ext.check_fresh_transaction('launch_clean_production()');
    PERFORM migrate_ext.lock_out_other_runs('launch_clean_production()');

    -- every problem in the detail, the first one in the message and hint
    SELECT string_agg('- ' || r.problem, E'\n' ORDER BY r.n), (array_agg(r.problem ORDER BY r.n))[1],
           (array_agg(r.hint ORDER BY r.n))[1]
      INTO v_problems, v_first_problem, v_first_hint
      FROM migrate_ext.launch_refusals() WITH ORDINALITY AS r(problem, hint, n);
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION 'launch refused: %', v_first_problem
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    DETAIL = E'Everything that stops the launch:\n' || v_problems,
                    HINT = 'Nothing was changed. ' || v_first_hint;
    END IF;

    v_ts := migrate_ext.new_backup_timestamp();
    v_schema := migrate_ext.backup_schema(v_ts);
    v_users := ARRAY(SELECT s.id FROM migrate_staging.auth_users AS s
                      WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id) ORDER BY s.id);

    IF dry_run THEN
        RETURN format(E'-- dry run of launch %s: nothing was changed\n', v_ts)
            || format(E'SELECT migrate_ext.create_private_schema(%L);\n', v_schema)
            || format(E'SELECT migrate_ext.create_auth_users();  -- %s new auth users\n', cardinality(v_users))
            || (SELECT string_agg(format('%s;  -- %s %s', p.statement, p.phase, p.step), E'\n' ORDER BY p.step)
                  FROM migrate_ext.swap_plan('migrate_staging', v_schema) AS p)
            || format(E'\nINSERT INTO migrate_ext.migrations ... VALUES (%L, ''launched'', ...);', v_ts);
    END IF;

    v_before := migrate_ext.table_counts('public');
    v_after := migrate_ext.table_counts('migrate_staging');
    PERFORM migrate_ext.create_private_schema(v_schema);
    v_created := migrate_ext.create_auth_users();
    IF v_created <> cardinality(v_users) THEN
        RAISE EXCEPTION 'expected to create % auth users, created %', cardinality(v_users), v_created
              USING ERRCODE = 'internal_error', HINT = 'Nothing was changed. Somebody changed auth.users during the launch; try again.';
    END IF;
    v_lock := migrate_ext.run_swap('migrate_staging', v_schema, 'launch');

    SELECT max(run_id) INTO v_run FROM migrate_ext.validation_runs;
    INSERT INTO migrate_ext.migrations (backup_timestamp, state, launched_at, validation_run_id, counts, created_users)
    VALUES (v_ts, 'launched', now(), v_run,
            jsonb_build_object('production', v_after, 'backup', v_before, 'auth_users_created', v_created) || v_lock,
            v_users);
    RETURN format('SUCCESS: launched %s. Production now has %s profiles, %s transactions and %s enrollments '
                  '(before: %s, %s, %s); %s auth users created. The previous tables are in schema %s. '
                  'Locks held %s ms. To undo: SELECT migrate_ext.rollback_migration(%L);',
                  v_ts, v_after->'unified_profiles', v_after->'transactions', v_after->'enrollments',
                  v_before->'unified_profiles', v_before->'transactions', v_before->'enrollments',
                  v_created, v_schema, v_lock->'lock_ms', v_ts);
END;
$$;
COMMENT ON FUNCTION migrate_ext.launch_clean_production(boolean) IS
    'Swap staging into production in one transaction, production kept in migrate_backup_<timestamp>; dry_run => true returns every statement and changes nothing';

-- Check a backup timestamp given by a caller and return its migration,
-- locked; every problem is a clear error
CREATE FUNCTION migrate_ext.find_migration(backup_timestamp text) RETURNS migrate_ext.migrations
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations;
BEGIN
    IF backup_timestamp IS NULL OR backup_timestamp !~ '^\d{4}(_\d{2}){5}$' THEN
        RAISE EXCEPTION 'malformed backup timestamp %', coalesce(quote_literal(left(backup_timestamp, 64)), 'NULL')
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Nothing was changed. Give the timestamp launch_clean_production() returned, like 2026_11_26_15_46_01; SELECT * FROM migrate_ext.migration_status(); lists them.';
    END IF;
    SELECT * INTO m FROM migrate_ext.migrations AS g WHERE g.backup_timestamp = find_migration.backup_timestamp FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no migration was launched at %', backup_timestamp
              USING ERRCODE = 'undefined_object',
                    HINT = 'Nothing was changed. SELECT * FROM migrate_ext.migration_status(); lists the launched migrations.';
    END IF;
    IF m.state = 'rolled_back' THEN
        RAISE EXCEPTION 'migration % was already rolled back at %', backup_timestamp, m.rolled_back_at
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Nothing was changed. Its tables are in migrate_staging (or were rebuilt since); launch again to retry.';
    END IF;
    IF m.state = 'dropped' THEN
        RAISE EXCEPTION 'the backup of migration % was dropped at %', backup_timestamp, m.dropped_at
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Nothing was changed. A dropped backup cannot be restored.';
    END IF;
    RETURN m;
END;
$$;

-- Swap a backup back into production; production goes to migrate_staging
CREATE FUNCTION migrate_ext.rollback_migration(backup_timestamp text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations;
    v_schema text;
    v_later text;
    v_refused text;
    v_first_refusal text;
    v_late jsonb := '{}'::jsonb;
    v_before jsonb;
    v_after jsonb;
    v_lock jsonb;
    t text;
    n bigint;
    v_users bigint;
BEGIN
    m := migrate_ext.find_migration(backup_timestamp);
    PERFORM migrate_ext.check_fresh_transaction('rollback_migration()');
    PERFORM migrate_ext.lock_out_other_runs('rollback_migration()');
    SELECT string_agg(g.backup_timestamp, ', ' ORDER BY g.backup_timestamp) INTO v_later
      FROM migrate_ext.migrations AS g WHERE g.state = 'launched' AND g.launched_at > m.launched_at;
    IF v_later IS NOT NULL THEN
        RAISE EXCEPTION 'migration % cannot be rolled back while a later launch (%) is in place', m.backup_timestamp, v_later
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Nothing was changed. Roll back the later migrations first, newest first.';
    END IF;
    SELECT string_agg(format('- %s %s', r.object, r.reason), E'\n'), (array_agg(format('%s %s', r.object, r.reason)))[1]
      INTO v_refused, v_first_refusal
      FROM migrate_ext.swap_refusals() AS r;
    IF v_refused IS NOT NULL THEN
        RAISE EXCEPTION 'rollback refused: %', v_first_refusal
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    DETAIL = E'Everything that stops the rollback:\n' || v_refused,
                    HINT = 'Nothing was changed. Change or drop what is listed, roll back, then re-create it.';
    END IF;
    v_schema := migrate_ext.backup_schema(m.backup_timestamp);
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        IF to_regclass(format('%I.%I', v_schema, t)) IS NULL THEN
            RAISE EXCEPTION 'backup table %.% is missing', v_schema, t
                  USING ERRCODE = 'undefined_table',
                        HINT = 'Nothing was changed. The backup was changed by hand; restore it from a dump.';
        END IF;
        IF to_regclass(format('migrate_staging.%I', t)) IS NOT NULL THEN
            RAISE EXCEPTION 'migrate_staging.% exists: production cannot be moved back to staging', t
                  USING ERRCODE = 'duplicate_table',
                        HINT = 'Nothing was changed. It was built after the launch by validate_and_prepare_clean_data(); drop it (DROP TABLE migrate_staging.unified_profiles, migrate_staging.transactions, migrate_staging.enrollments;) and roll back again.';
        END IF;
    END LOOP;
    PERFORM migrate_ext.claim_private_schema('migrate_staging', migrate_ext.staging_tables());

    -- what was written after the launch stays with the launched tables
    FOREACH t IN ARRAY migrate_ext.swapped_tables() LOOP
        EXECUTE format('SELECT count(*) FROM public.%I WHERE %I >= $1', t, migrate_ext.created_column(t)) INTO n USING m.launched_at;
        v_late := v_late || jsonb_build_object(t, n);
    END LOOP;
    SELECT count(*) INTO v_users FROM auth.users AS u WHERE u.id = ANY (m.created_users);

    v_before := migrate_ext.table_counts('public');
    v_after := migrate_ext.table_counts(v_schema);
    v_lock := migrate_ext.run_swap(v_schema, 'migrate_staging', 'rollback');
    EXECUTE format('DROP SCHEMA %I', v_schema);

    UPDATE migrate_ext.migrations AS g SET state = 'rolled_back', rolled_back_at = now(),
           counts = g.counts || jsonb_build_object('rollback', jsonb_build_object('written_after_launch', v_late) || v_lock)
     WHERE g.backup_timestamp = m.backup_timestamp;
    RAISE NOTICE 'rows created after the launch (kept in migrate_staging, not in production): % profiles, % transactions, % enrollments',
                 v_late->'unified_profiles', v_late->'transactions', v_late->'enrollments'
          USING HINT = 'They stay in the tables now in migrate_staging; a new launch brings them back.';
    RAISE NOTICE '% auth users created by the launch are kept', v_users
          USING HINT = format('Their ids: SELECT unnest(created_users) FROM migrate_ext.migrations WHERE backup_timestamp = %L;', m.backup_timestamp);
    RETURN format('SUCCESS: rolled back %s. Production again has %s profiles, %s transactions and %s enrollments '
                  '(launched: %s, %s, %s, now in migrate_staging for a retry; %s, %s and %s of them created after the launch). '
                  '%s auth users created by the launch are kept. Locks held %s ms.',
                  m.backup_timestamp, v_after->'unified_profiles', v_after->'transactions', v_after->'enrollments',
                  v_before->'unified_profiles', v_before->'transactions', v_before->'enrollments',
                  v_late->'unified_profiles', v_late->'transactions', v_late->'enrollments', v_users, v_lock->'lock_ms');
END;
$$;
COMMENT ON FUNCTION migrate_ext.rollback_migration(text) IS
    'Swap the backup of a launch back into production; the launched tables go to migrate_staging, kept for a retry';

-- Drop one backup, never with CASCADE, once nothing outside it depends on it
CREATE FUNCTION migrate_ext.drop_backup(backup_timestamp text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m migrate_ext.migrations;
    v_schema text;
BEGIN
    m := migrate_ext.find_migration(backup_timestamp);
    v_schema := migrate_ext.backup_schema(m.backup_timestamp);
    IF to_regnamespace(v_schema) IS NULL THEN
        RAISE EXCEPTION 'backup schema % is missing', v_schema
              USING ERRCODE = 'invalid_schema_name', HINT = 'Nothing was changed. It was dropped by hand.';
    END IF;
    PERFORM migrate_ext.check_swap_invariant(v_schema);
    EXECUTE format('DROP TABLE %s',
                   (SELECT string_agg(format('%I.%I', v_schema, t), ', ') FROM unnest(migrate_ext.swapped_tables()) AS t
                     WHERE to_regclass(format('%I.%I', v_schema, t)) IS NOT NULL));
    EXECUTE format('DROP SCHEMA %I', v_schema);
    UPDATE migrate_ext.migrations AS g SET state = 'dropped', dropped_at = now() WHERE g.backup_timestamp = m.backup_timestamp;
    RETURN format('SUCCESS: dropped backup %s (schema %s). Migration %s can no longer be rolled back.',
                  m.backup_timestamp, v_schema, m.backup_timestamp);
END;
$$;
COMMENT ON FUNCTION migrate_ext.drop_backup(text) IS
    'Drop the backup schema of a launch (plain DROP, never CASCADE); afterwards that launch cannot be rolled back';

-- How long ago a moment was, for people: "12 s ago", "5 min ago", "3 days ago"
CREATE FUNCTION migrate_ext.time_ago(moment timestamptz) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN s < 120 THEN s || ' s ago'
                WHEN s < 7200 THEN s / 60 || ' min ago'
                WHEN s < 172800 THEN s / 3600 || ' h ago'
                ELSE s / 86400 || ' days ago' END
      FROM (SELECT greatest(extract(epoch FROM now() - moment), 0)::bigint AS s) AS x;
$$;

-- Where things stand: migrations and their backups, the last sync and
-- validation, and whether staging could be launched now
CREATE FUNCTION migrate_ext.migration_status() RETURNS TABLE (item text, state text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM migrate_ext.migrations ORDER BY backup_timestamp DESC LOOP
        item := 'migration ' || r.backup_timestamp;
        state := r.state;
        detail := format('launched %s by %s; production then had %s profiles, %s transactions, %s enrollments; %s auth users created',
                         migrate_ext.time_ago(r.launched_at), r.launched_by,
                         r.counts->'production'->'unified_profiles', r.counts->'production'->'transactions',
                         r.counts->'production'->'enrollments', r.counts->'auth_users_created');
        IF r.state = 'launched' THEN
            detail := detail || format('. Backup schema %s keeps the previous tables (%s profiles, %s transactions, %s enrollments) '
                                       'and their foreign keys to %s: while it exists, deleting a row they reference fails. '
                                       'Roll back with SELECT migrate_ext.rollback_migration(%L); or free it with SELECT migrate_ext.drop_backup(%L);',
                                       migrate_ext.backup_schema(r.backup_timestamp),
                                       r.counts->'backup'->'unified_profiles', r.counts->'backup'->'transactions',
                                       r.counts->'backup'->'enrollments',
                                       coalesce((SELECT string_agg(DISTINCT k.confrelid::regclass::text, ', ')
                                                   FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.conrelid
                                                   JOIN pg_class AS p ON p.oid = k.confrelid
                                                  WHERE k.contype = 'f'
                                                    AND c.relnamespace = to_regnamespace(migrate_ext.backup_schema(r.backup_timestamp))
                                                    AND p.relnamespace IS DISTINCT FROM c.relnamespace), 'no other table'),
                                       r.backup_timestamp, r.backup_timestamp);
        ELSIF r.state = 'rolled_back' THEN
            detail := detail || format('; rolled back %s', migrate_ext.time_ago(r.rolled_back_at));
        ELSE
            detail := detail || format('; backup dropped %s', migrate_ext.time_ago(r.dropped_at));
        END IF;
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT DISTINCT ON (s.source) s.* FROM migrate_ext.sync_runs AS s ORDER BY s.source, s.run_id DESC LOOP
        item := 'last sync of ' || r.source;
        state := r.status;
        detail := format('run %s, %s: %s fetched, %s inserted, %s updated, %s rejected%s', r.run_id,
                         migrate_ext.time_ago(r.started_at), r.fetched, r.inserted, r.updated, r.rejected,
                         coalesce('; ' || r.error, ''));
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT * FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1 LOOP
        item := 'last validation';
        state := CASE WHEN r.errors > 0 THEN 'errors' ELSE 'ok' END;
        detail := format('run %s, %s, from sync run %s: %s errors, %s warnings', r.run_id,
                         migrate_ext.time_ago(r.started_at), r.sync_run_id, r.errors, r.warnings);
        RETURN NEXT;
    END LOOP;
    item := 'staging';
    SELECT string_agg(p.problem, '; ') INTO detail FROM migrate_ext.launch_refusals() AS p;
    state := CASE WHEN detail IS NULL THEN 'ready' ELSE 'not ready' END;
    detail := coalesce(detail, 'launch_clean_production() would go ahead');
    RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION migrate_ext.migration_status() IS
    'Backups and their state, the last sync and validation, and whether staging can be launched';
-------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; everything for the extension's owner.
-- The install script and every upgrade script end with this call.
-------------------------------------------------------------------------------

SELECT migrate_ext.close_extension_objects('@extowner@'::pg_catalog.regrole);
