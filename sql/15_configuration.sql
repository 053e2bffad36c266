-------------------------------------------------------------------------------
-- The configuration every part reads: which production tables the swap
-- replaces, what staging holds, the columns the rules need, and a
-- fingerprint of production's definitions
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
