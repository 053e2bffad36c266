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

