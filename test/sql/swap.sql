--
-- swap: launch_clean_production(), rollback_migration(), migration_status()
-- and drop_backup() on the Supabase-like fixture holding the contaminated
-- production, with staging built from the scale-1 API data set.
--
-- regress.properties() reads, for each swapped table, everything of
-- doc/swap-checklist.md that the fixture expresses (owner, grants, RLS
-- flags, policies, replica identity, publications, comments, triggers and
-- their enabled state, indexes, constraints, columns, statistics, inbound
-- foreign keys, the views, materialized view, policies and functions bound
-- to it).  It must be the same after the launch and after the rollback.
--
\getenv dataset DATASET_DIR
\getenv xendit_key XENDIT_KEY
\getenv systemeio_key SYSTEMEIO_KEY
SET client_min_messages = warning;
CREATE DATABASE regress_swap;
SELECT current_database() AS regress_db \gset
\c regress_swap
SET client_min_messages = warning;
\set production_sql :dataset/production.sql
\i test/fixture/load.psql
\set SHOW_CONTEXT never
CREATE SCHEMA regress;
GRANT USAGE, CREATE ON SCHEMA regress TO postgres;

\c regress_swap postgres
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION migrate_ext;
SELECT migrate_ext.set_api_key('xendit', :'xendit_key');
SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');
SELECT source, status FROM migrate_ext.sync_raw_api_data();

-- What a swap must carry, per swapped table (and the materialized view)
CREATE FUNCTION regress.properties() RETURNS TABLE (tbl text, item text)
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$
WITH t AS (
    SELECT c.oid, c.relname::text AS tbl, c.reltype
      FROM pg_class AS c
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relname IN ('unified_profiles', 'transactions', 'enrollments', 'course_enrollment_stats')
)
SELECT t.tbl, x.item
  FROM t, LATERAL (
    SELECT 'owner ' || c.relowner::regrole::text FROM pg_class AS c WHERE c.oid = t.oid
    UNION ALL
    SELECT 'grants ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(c.relacl) AS a), 'default')
      FROM pg_class AS c WHERE c.oid = t.oid
    UNION ALL
    SELECT format('column grants %s %s', a.attname, a.attacl) FROM pg_attribute AS a
     WHERE a.attrelid = t.oid AND a.attacl IS NOT NULL
    UNION ALL
    SELECT format('rls %s force %s replica identity %s persistence %s populated %s options %s',
                  c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.relpersistence, c.relispopulated, c.reloptions)
      FROM pg_class AS c WHERE c.oid = t.oid
    UNION ALL
    SELECT 'toast options ' || coalesce(tc.reloptions::text, '')
      FROM pg_class AS c JOIN pg_class AS tc ON tc.oid = c.reltoastrelid WHERE c.oid = t.oid
    UNION ALL
    SELECT 'replica identity index ' || ic.relname
      FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid WHERE i.indrelid = t.oid AND i.indisreplident
    UNION ALL
    SELECT format('column %s %s not null %s default %s identity %s generated %s collation %s statistics %s options %s',
                  a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                  a.attidentity, a.attgenerated, a.attcollation, a.attstattarget,
                  ARRAY(SELECT o FROM unnest(a.attoptions) AS o WHERE o NOT LIKE 'pg\_%'))
      FROM pg_attribute AS a LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('constraint %s %s valid %s', k.conname, pg_get_constraintdef(k.oid), k.convalidated)
      FROM pg_constraint AS k WHERE k.conrelid = t.oid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index AS i WHERE i.indrelid = t.oid
    UNION ALL
    SELECT format('policy %s %s permissive %s to %s using %s check %s', p.polname, p.polcmd, p.polpermissive,
                  p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
      FROM pg_policy AS p WHERE p.polrelid = t.oid
    UNION ALL
    SELECT format('trigger %s enabled %s %s', g.tgname, g.tgenabled, pg_get_triggerdef(g.oid))
      FROM pg_trigger AS g WHERE g.tgrelid = t.oid AND NOT g.tgisinternal
    UNION ALL
    SELECT 'comment ' || obj_description(t.oid, 'pg_class')
    UNION ALL
    SELECT format('comment on column %s: %s', a.attname, col_description(t.oid, a.attnum))
      FROM pg_attribute AS a WHERE a.attrelid = t.oid AND a.attnum > 0 AND col_description(t.oid, a.attnum) IS NOT NULL
    UNION ALL
    SELECT format('comment on constraint %s: %s', k.conname, obj_description(k.oid, 'pg_constraint'))
      FROM pg_constraint AS k WHERE k.conrelid = t.oid AND obj_description(k.oid, 'pg_constraint') IS NOT NULL
    UNION ALL
    SELECT format('comment on index %s: %s', ic.relname, obj_description(ic.oid, 'pg_class'))
      FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = t.oid AND obj_description(ic.oid, 'pg_class') IS NOT NULL
    UNION ALL
    SELECT format('comment on trigger %s: %s', g.tgname, obj_description(g.oid, 'pg_trigger'))
      FROM pg_trigger AS g WHERE g.tgrelid = t.oid AND obj_description(g.oid, 'pg_trigger') IS NOT NULL
    UNION ALL
    SELECT format('comment on policy %s: %s', p.polname, obj_description(p.oid, 'pg_policy'))
      FROM pg_policy AS p WHERE p.polrelid = t.oid AND obj_description(p.oid, 'pg_policy') IS NOT NULL
    UNION ALL
    SELECT format('publication %s row filter %s columns %s', p.pubname, pg_get_expr(pr.prqual, pr.prrelid), pr.prattrs)
      FROM pg_publication_rel AS pr JOIN pg_publication AS p ON p.oid = pr.prpubid WHERE pr.prrelid = t.oid
    UNION ALL
    SELECT format('owns sequence %s for column %s (%s)', d.objid::regclass, a.attname, d.deptype)
      FROM pg_depend AS d JOIN pg_class AS q ON q.oid = d.objid AND q.relkind = 'S'
      JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
       AND d.deptype IN ('a', 'i')
    UNION ALL
    SELECT 'statistics ' || pg_get_statisticsobjdef(x.oid) FROM pg_statistic_ext AS x WHERE x.stxrelid = t.oid
    UNION ALL
    SELECT format('foreign key in %s %s %s valid %s', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid), k.convalidated)
      FROM pg_constraint AS k WHERE k.contype = 'f' AND k.confrelid = t.oid AND k.conrelid <> t.oid
    UNION ALL
    SELECT DISTINCT format('read by view %s options %s', v.oid::regclass, v.reloptions)
      FROM pg_depend AS d JOIN pg_rewrite AS w ON w.oid = d.objid JOIN pg_class AS v ON v.oid = w.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid AND v.oid <> t.oid
    UNION ALL
    SELECT DISTINCT format('read by policy %s on %s', p.polname, p.polrelid::regclass)
      FROM pg_depend AS d JOIN pg_policy AS p ON p.oid = d.objid
     WHERE d.classid = 'pg_policy'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid AND p.polrelid <> t.oid
    UNION ALL
    SELECT DISTINCT format('bound function %s owner %s grants %s comment %s', f.oid::regprocedure, f.proowner::regrole,
                           (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(f.proacl) AS a),
                           obj_description(f.oid, 'pg_proc'))
      FROM pg_depend AS d JOIN pg_proc AS f ON f.oid = d.objid
     WHERE d.classid = 'pg_proc'::regclass
       AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid) OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = t.reltype))
    UNION ALL
    SELECT 'realtime subscriptions ' || count(*) FROM realtime.subscription AS s WHERE s.entity = t.oid
  ) AS x(item);
$$;

-- Sequences, which the fixture's production does not have
-- (doc/swap-checklist.md item 13): a serial column and an identity column
ALTER TABLE public.transactions ADD COLUMN legacy_number bigserial;
ALTER TABLE public.enrollments ADD COLUMN legacy_seq integer GENERATED BY DEFAULT AS IDENTITY;

-- Everything a refused launch must leave as it was
CREATE FUNCTION regress.fingerprint() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(tbl || item, ',' ORDER BY tbl, item) FROM regress.properties()),
        (SELECT count(*) FROM public.unified_profiles), (SELECT count(*) FROM public.transactions),
        (SELECT count(*) FROM public.enrollments), (SELECT count(*) FROM auth.users),
        (SELECT count(*) FROM auth.identities), (SELECT count(*) FROM migrate_ext.migrations),
        (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname LIKE 'migrate\_%'),
        (SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid::regclass::text) FROM pg_class AS c
          WHERE c.relnamespace = to_regnamespace('migrate_staging') AND c.relkind = 'r')));
$$;

\i test/fixture/error_of.psql

-- What differs from a saved copy of the properties
CREATE TABLE regress.expected_properties AS SELECT * FROM regress.properties();
CREATE FUNCTION regress.changed_properties() RETURNS TABLE (change text, tbl text, item text)
LANGUAGE sql STABLE
AS $$
    (SELECT 'lost', e.tbl, e.item FROM regress.expected_properties AS e
     EXCEPT ALL SELECT 'lost', p.tbl, p.item FROM regress.properties() AS p)
    UNION ALL
    (SELECT 'gained', p.tbl, p.item FROM regress.properties() AS p
     EXCEPT ALL SELECT 'gained', e.tbl, e.item FROM regress.expected_properties AS e)
    ORDER BY 1, 2, 3;
$$;
-- how much is compared, per table
SELECT tbl, count(*) AS properties FROM regress.expected_properties GROUP BY 1 ORDER BY 1;

-- Refusals: each one names the problem and changes nothing
CREATE TABLE regress.before AS SELECT regress.fingerprint() AS fp;
-- no staging yet
SELECT migrate_ext.launch_clean_production();
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
-- the validation found errors
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
UPDATE regress.before SET fp = regress.fingerprint();
SELECT migrate_ext.launch_clean_production();
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
-- the DBA excludes test accounts and records that cannot be fixed upstream
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id, 'regress: ' || rule
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error';
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
SELECT errors FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;
UPDATE regress.before SET fp = regress.fingerprint();
-- a staging table smaller than migrate_ext.min_staging_rows
SET migrate_ext.min_staging_rows = 5000;
SELECT migrate_ext.launch_clean_production();
RESET migrate_ext.min_staging_rows;
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
-- an unlogged staging table
ALTER TABLE migrate_staging.enrollments SET UNLOGGED;
SELECT migrate_ext.launch_clean_production();
ALTER TABLE migrate_staging.enrollments SET LOGGED;
-- production's definition changed after staging was built
ALTER TABLE public.transactions ADD COLUMN regress_note text;
SELECT migrate_ext.launch_clean_production();
ALTER TABLE public.transactions DROP COLUMN regress_note;
-- objects the swap cannot carry: a rule, a column of the row type, an inheriting table
CREATE RULE regress_keep_transactions AS ON DELETE TO public.transactions DO INSTEAD NOTHING;
CREATE TABLE regress.snapshots (taken_at timestamptz, enrollment public.enrollments);
CREATE TABLE regress.enrollments_archive () INHERITS (public.enrollments);
CREATE TYPE regress.enrollment_snapshot AS (taken_at timestamptz, e public.enrollments);
-- (and a view the DBA made over staging, which the launch would leave behind)
CREATE VIEW regress.staging_compare AS SELECT id FROM migrate_staging.transactions;
SELECT migrate_ext.launch_clean_production();
DROP RULE regress_keep_transactions ON public.transactions;
DROP TABLE regress.snapshots, regress.enrollments_archive;
DROP TYPE regress.enrollment_snapshot;
DROP VIEW regress.staging_compare;
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
-- a production table owned by another role than staging (doc/swap-checklist.md item 1;
-- postgres is a member of service_role), and that role cannot own the new one
\c regress_swap supabase_admin
ALTER TABLE public.enrollments OWNER TO service_role;
\c regress_swap postgres
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SELECT migrate_ext.launch_clean_production();
\c regress_swap supabase_admin
GRANT CREATE ON SCHEMA public TO service_role;
\c regress_swap postgres
\set SHOW_CONTEXT never
SET client_min_messages = warning;
TRUNCATE regress.expected_properties;
INSERT INTO regress.expected_properties SELECT * FROM regress.properties();
SELECT item FROM regress.expected_properties WHERE tbl = 'enrollments' AND item LIKE 'owner%';
-- a transaction that already read production: a failed lock attempt could
-- not release that lock
BEGIN;
SELECT count(*) > 0 AS read_production FROM public.transactions;
SELECT migrate_ext.launch_clean_production();
ROLLBACK;
-- a newer sync than the one staging was built from
SELECT source, status FROM migrate_ext.sync_raw_api_data();
SELECT migrate_ext.launch_clean_production();
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
SELECT errors FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;
SELECT state FROM migrate_ext.migration_status() WHERE item = 'staging';

-- The dry run prints every statement and changes nothing
UPDATE regress.before SET fp = regress.fingerprint();
SELECT migrate_ext.launch_clean_production(dry_run => true) AS plan \gset
SELECT split_part(:'plan', E'\n', 1) ~ '^-- dry run of launch \d{4}(_\d{2}){5}: nothing was changed$' AS says_dry_run,
       (SELECT count(*) FROM regexp_matches(:'plan', ';  -- (prepare|lock|swap) \d+', 'g')) > 100 AS many_statements,
       :'plan' ~ 'ALTER TABLE public\.unified_profiles SET SCHEMA migrate_backup_' AS moves_production,
       :'plan' ~ 'ALTER TABLE migrate_staging\.unified_profiles SET SCHEMA public' AS moves_staging,
       :'plan' ~ 'create_auth_users\(\);  -- 60 new auth users' AS creates_users;
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
-- the launch plan, line for line (pinned: refactoring the engine keeps it)
SELECT n, regexp_replace(line, '\d{4}(_\d{2}){5}', 'TS', 'g') AS launch_plan
  FROM regexp_split_to_table(:'plan', E'\n') WITH ORDINALITY AS x(line, n) ORDER BY n;

-- The invariant of doc/swap-checklist.md item 33 catches a naive swap: a table moved away
-- leaves its foreign keys, views, policies, functions and publications behind
BEGIN;
CREATE SCHEMA regress_naive;
ALTER TABLE public.enrollments SET SCHEMA regress_naive;
SELECT regress.error_of('SELECT migrate_ext.check_swap_invariant(''regress_naive'')');
ROLLBACK;

-- staged profiles are students exactly when they have an active enrollment,
-- as the application's trigger keeps it
SELECT count(*) AS students_wrong FROM migrate_staging.unified_profiles AS p
 WHERE p.is_student IS DISTINCT FROM EXISTS (SELECT 1 FROM migrate_staging.enrollments AS e
                                              WHERE e.user_id = p.id AND e.status = 'active');

-- What the launch will be judged against
CREATE TABLE regress.staged AS
SELECT (SELECT count(*) FROM migrate_staging.unified_profiles) AS profiles,
       (SELECT count(*) FROM migrate_staging.transactions) AS transactions,
       (SELECT count(*) FROM migrate_staging.enrollments) AS enrollments,
       (SELECT count(*) FROM migrate_staging.auth_users) AS new_users,
       (SELECT count(*) FROM auth.users) AS auth_users,
       (SELECT md5(string_agg(u::text, ',' ORDER BY u.id)) FROM auth.users AS u) AS auth_users_hash,
       (SELECT count(*) FROM public.unified_profiles) AS old_profiles;
-- a P2P buyer that production does not have yet: the application's view of them
CREATE TABLE regress.buyer AS
SELECT p.id, p.email,
       (SELECT count(*) FROM migrate_staging.transactions AS t WHERE t.user_id = p.id) AS transactions,
       (SELECT count(*) FROM migrate_staging.enrollments AS e WHERE e.user_id = p.id) AS enrollments
  FROM migrate_staging.unified_profiles AS p
 WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles AS o WHERE o.id = p.id)
   AND EXISTS (SELECT 1 FROM migrate_staging.transactions AS t WHERE t.user_id = p.id AND t.transaction_type = 'P2P')
 ORDER BY p.email LIMIT 1;
SELECT transactions > 0 AND enrollments = 1 AS buyer_found FROM regress.buyer;

-- The launch
SELECT migrate_ext.launch_clean_production() ~ '^SUCCESS: launched \d{4}(_\d{2}){5}\. Production now has' AS launched;
SELECT backup_timestamp AS ts, migrate_ext.backup_schema(backup_timestamp) AS backup_schema
  FROM migrate_ext.migrations WHERE state = 'launched' \gset
-- everything carried over or re-pointed: no property lost or gained
SELECT * FROM regress.changed_properties();
-- production is staging, the backup is the old production
SELECT (SELECT count(*) FROM public.unified_profiles) = s.profiles AS profiles,
       (SELECT count(*) FROM public.transactions) = s.transactions AS transactions,
       (SELECT count(*) FROM public.enrollments) = s.enrollments AS enrollments
  FROM regress.staged AS s;
SELECT migrate_ext.table_counts(:'backup_schema')->>'unified_profiles' = old_profiles::text AS backup_kept FROM regress.staged;
SELECT count(*) AS staging_tables_left FROM pg_class WHERE relnamespace = 'migrate_staging'::regnamespace
   AND relname IN ('unified_profiles', 'transactions', 'enrollments');
-- views, the materialized view and bound functions read the new rows
SELECT v.unified_profiles = (SELECT count(*) FROM public.unified_profiles) AND v.enrollments = (SELECT count(*) FROM public.enrollments)
       AS counts_view_reads_new_tables
  FROM public.core_table_counts_view AS v;
SELECT (SELECT sum(total_enrollments) FROM public.course_enrollment_stats) = (SELECT count(*) FROM public.enrollments)
       AS matview_populated_from_new_table;
SELECT public.count_active_enrollments(b.id) = b.enrollments AS atomic_function_reads_new_table,
       (SELECT public.full_name(p) IS NOT NULL FROM public.unified_profiles AS p WHERE p.id = b.id) AS row_type_function_works
  FROM regress.buyer AS b;
-- constraint names work as before; foreign keys of other tables hold on the new table
BEGIN;
INSERT INTO public.unified_profiles (id, email) SELECT gen_random_uuid(), email FROM regress.buyer
    ON CONFLICT ON CONSTRAINT unified_profiles_email_key DO NOTHING;
ROLLBACK;
INSERT INTO public.email_events (user_id, event_type) VALUES ('00000000-0000-0000-0000-00000000beef', 'regress');
SELECT count(*) AS foreign_keys_to_a_backup FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.confrelid
 WHERE k.contype = 'f' AND c.relnamespace = :'backup_schema'::regnamespace
   AND k.conrelid NOT IN (SELECT oid FROM pg_class WHERE relnamespace = :'backup_schema'::regnamespace);
-- an UPDATE of a published table works (its replica identity came along)
BEGIN;
UPDATE public.transactions SET payment_method = payment_method WHERE id = (SELECT min(id::text)::uuid FROM public.transactions);
ROLLBACK;
-- a new row gets a sequence value past every one issued (doc/swap-checklist.md item 13)
CREATE FUNCTION regress.new_values_are_past_old_ones() RETURNS TABLE (serial_ok boolean, identity_ok boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    old_serial bigint := (SELECT max(legacy_number) FROM public.transactions);
    old_identity bigint := (SELECT max(legacy_seq) FROM public.enrollments);
    new_serial bigint;
    new_identity bigint;
BEGIN
    IF to_regclass('migrate_staging.transactions') IS NOT NULL THEN
        old_serial := greatest(old_serial, (SELECT max(legacy_number) FROM migrate_staging.transactions));
    END IF;
    INSERT INTO public.transactions (amount, status, transaction_type) VALUES (1, 'pending', 'Other')
    RETURNING legacy_number INTO new_serial;
    INSERT INTO public.enrollments (user_id, course_id, status)
    SELECT p.id, c.id, 'pending' FROM public.unified_profiles AS p, public.courses AS c
     WHERE NOT EXISTS (SELECT 1 FROM public.enrollments AS e WHERE e.user_id = p.id AND e.course_id = c.id)
     LIMIT 1
    RETURNING legacy_seq INTO new_identity;
    serial_ok := new_serial > old_serial;
    identity_ok := new_identity > old_identity;
    RETURN NEXT;
END;
$$;
BEGIN;
SELECT * FROM regress.new_values_are_past_old_ones();
ROLLBACK;
-- nothing outside the backup depends on it (doc/swap-checklist.md item 33)
SELECT migrate_ext.check_swap_invariant(:'backup_schema');
SELECT pubname, schemaname, tablename FROM pg_publication_tables
 WHERE tablename IN ('unified_profiles', 'transactions', 'enrollments') ORDER BY 1, 2, 3;
SELECT entity FROM realtime.subscription ORDER BY 1;
-- new auth users: as Supabase Auth writes them; existing ones untouched
SELECT count(*) FILTER (WHERE u.instance_id = '00000000-0000-0000-0000-000000000000' AND u.aud = 'authenticated'
                          AND u.role = 'authenticated' AND u.confirmation_token = '' AND u.recovery_token = ''
                          AND u.email_change_token_new = '' AND u.email_change_token_current = '' AND u.email_change = ''
                          AND u.phone_change = '' AND u.phone_change_token = '' AND u.reauthentication_token = ''
                          AND u.raw_app_meta_data = '{"provider": "email", "providers": ["email"]}'
                          AND i.provider = 'email' AND i.identity_data->>'sub' = u.id::text) AS well_formed,
       count(*) AS created
  FROM auth.users AS u LEFT JOIN auth.identities AS i ON i.user_id = u.id
 WHERE u.id IN (SELECT id FROM migrate_staging.auth_users);
SELECT (SELECT count(*) FROM auth.users) = s.auth_users + s.new_users AS grew_by_staged,
       (SELECT md5(string_agg(u::text, ',' ORDER BY u.id)) FROM auth.users AS u
         WHERE u.id NOT IN (SELECT id FROM migrate_staging.auth_users)) = s.auth_users_hash AS existing_unchanged
  FROM regress.staged AS s;

-- The application, through RLS, as the new buyer signed in
SELECT id AS buyer_id, transactions AS buyer_transactions FROM regress.buyer \gset
SET ROLE authenticated;
SELECT set_config('request.jwt.claims', json_build_object('sub', :'buyer_id', 'role', 'authenticated')::text, false) IS NOT NULL AS signed_in;
SELECT count(*) = :buyer_transactions AS sees_own_transactions, bool_and(user_id = auth.uid()) AS sees_only_own
  FROM public.transactions;
SELECT c.title, e.status FROM public.enrollments AS e JOIN public.courses AS c ON c.id = e.course_id;
SELECT count(*) = :buyer_transactions AS purchase_history FROM public.user_purchase_history_view;
RESET ROLE;
RESET request.jwt.claims;
-- the backup is inert: its tables' triggers are disabled, so an update of a
-- backup row (a cascade from a live table, say) runs no application trigger
SELECT count(*) > 0 AS backup_triggers, count(*) FILTER (WHERE g.tgenabled <> 'D') AS enabled
  FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
 WHERE c.relnamespace = :'backup_schema'::regnamespace AND NOT g.tgisinternal;
BEGIN;
SELECT count(*) AS log_before FROM public.migration_log \gset
UPDATE :"backup_schema".unified_profiles SET first_name = 'x' || first_name
 WHERE id = (SELECT id FROM :"backup_schema".unified_profiles ORDER BY id LIMIT 1);
SELECT count(*) - :log_before AS written_by_backup_triggers FROM public.migration_log;
ROLLBACK;
-- staging and backups are closed to the API roles
SELECT r AS role, has_schema_privilege(r, 'migrate_staging', 'USAGE') AS staging,
       has_schema_privilege(r, :'backup_schema', 'USAGE') AS backup
  FROM unnest('{anon,authenticated}'::text[]) AS r;
-- and the backup's tables keep no grants but their owner's (a second barrier)
SELECT count(*) AS backup_grants FROM pg_class AS c, aclexplode(c.relacl) AS a
 WHERE c.relnamespace = :'backup_schema'::regnamespace AND a.grantee <> c.relowner;
SELECT count(*) AS backup_column_grants FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
 WHERE c.relnamespace = :'backup_schema'::regnamespace AND a.attacl IS NOT NULL;
SET ROLE anon;
SELECT count(*) FROM migrate_staging.auth_users;
RESET ROLE;
-- a second launch has no staging
SELECT regress.error_of('SELECT migrate_ext.launch_clean_production()');

-- Rollback: bad timestamps are refused and change nothing
UPDATE regress.before SET fp = regress.fingerprint();
SELECT migrate_ext.rollback_migration(NULL);
SELECT migrate_ext.rollback_migration('yesterday');
SELECT migrate_ext.rollback_migration('2026_11_26_15_46_01''); DROP TABLE public.transactions; --');
SELECT migrate_ext.rollback_migration('1999_01_01_00_00_00');
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
-- a payment written after the launch
INSERT INTO public.transactions (amount, status, transaction_type, contact_email, user_id)
SELECT 800, 'pending', 'P2P', email, id FROM regress.buyer;
-- the rollback plan, statement for statement (pinned like the launch plan)
SELECT step, phase, regexp_replace(statement, '\d{4}(_\d{2}){5}', 'TS', 'g') AS rollback_plan
  FROM migrate_ext.swap_plan(:'backup_schema', 'migrate_staging') ORDER BY step;
-- the rollback's dry run: the rollback plan, between what comes before and
-- after it, and nothing changed
UPDATE regress.before SET fp = regress.fingerprint();
SELECT migrate_ext.rollback_migration(:'ts', dry_run => true) AS rollback_dry_run \gset
SELECT regexp_replace(split_part(:'rollback_dry_run', E'\n', 1), '\d{4}(_\d{2}){5}', 'TS', 'g') AS first_line,
       position((SELECT string_agg(format('%s;  -- %s %s', p.statement, p.phase, p.step), E'\n' ORDER BY p.step)
                   FROM migrate_ext.swap_plan(:'backup_schema', 'migrate_staging') AS p) IN :'rollback_dry_run')
           = length(split_part(:'rollback_dry_run', E'\n', 1)) + 2 AS plan_follows,
       regexp_replace(regexp_replace(:'rollback_dry_run', '^.*check_swap_invariant[^\n]*\n', ''), '\d{4}(_\d{2}){5}', 'TS', 'g') AS last_lines;
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
SELECT regress.error_of(format('SELECT migrate_ext.rollback_migration(%L, dry_run => NULL)', :'ts'));
-- a rollback names every problem that stops it, and changes nothing
CREATE FUNCTION regress.detail_of(statement text) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN regexp_replace(detail, '\d{4}(_\d{2}){5}', 'TS', 'g');
END;
$$;
CREATE TABLE migrate_staging.unified_profiles (id uuid);
CREATE TABLE migrate_staging.enrollments (id uuid);
CREATE VIEW regress.backup_compare AS SELECT id FROM :"backup_schema".unified_profiles;
SELECT regress.error_of(format('ALTER TABLE %I.transactions RENAME TO regress_transactions', :'backup_schema'));
SELECT regress.error_of(format('SELECT migrate_ext.rollback_migration(%L)', :'ts'));
SELECT regress.detail_of(format('SELECT migrate_ext.rollback_migration(%L)', :'ts'));
SELECT regexp_replace(problem, '\d{4}(_\d{2}){5}', 'TS', 'g') AS problem, hint FROM migrate_ext.rollback_refusals(:'ts');
SELECT regress.error_of(format('ALTER TABLE %I.regress_transactions RENAME TO transactions', :'backup_schema'));
DROP TABLE migrate_staging.unified_profiles, migrate_staging.enrollments;
DROP VIEW regress.backup_compare;
SELECT regress.fingerprint() = fp AS unchanged FROM regress.before;
SELECT count(*) AS rollback_refusals FROM migrate_ext.rollback_refusals(:'ts');
SELECT regexp_replace(regexp_replace(migrate_ext.rollback_migration(:'ts'), '\d{4}(_\d{2}){5}', 'TS', 'g'),
                      'Locks held [0-9.]+ ms', 'Locks held N ms') AS rollback;
-- production is exactly what it was
SELECT * FROM regress.changed_properties();
SELECT (SELECT count(*) FROM public.unified_profiles) = s.old_profiles AS profiles_restored,
       to_regnamespace(:'backup_schema') IS NULL AS backup_schema_gone,
       (SELECT count(*) FROM migrate_staging.transactions AS t JOIN regress.buyer AS b ON t.user_id = b.id)
           = b.transactions + 1 AS late_payment_kept_in_staging,
       (SELECT count(*) FROM auth.users) = s.auth_users + s.new_users AS created_users_kept
  FROM regress.staged AS s, regress.buyer AS b;
SELECT migrate_ext.check_swap_invariant('migrate_staging');
-- sequences are past every value issued, also those of the rows written after the launch
BEGIN;
SELECT * FROM regress.new_values_are_past_old_ones();
ROLLBACK;
SELECT regress.error_of(format('SELECT migrate_ext.rollback_migration(%L)', :'ts'));
SELECT regexp_replace(item, '\d{4}(_\d{2}){5}', 'TS') AS item, state
  FROM migrate_ext.migration_status() WHERE item NOT LIKE 'last sync%' ORDER BY item;

-- A second launch of the kept staging, then its backup dropped
SELECT migrate_ext.launch_clean_production() ~ '^SUCCESS: launched' AS launched_again;
SELECT * FROM regress.changed_properties();
-- with a later launch in place, an earlier one cannot be rolled back
SELECT count(*) > 0 AS validated FROM migrate_ext.validate_and_prepare_clean_data();
SELECT backup_timestamp AS ts_earlier FROM migrate_ext.migrations WHERE state = 'launched' \gset
SELECT migrate_ext.launch_clean_production() ~ '^SUCCESS: launched' AS launched_on_top;
SELECT backup_timestamp AS ts_later FROM migrate_ext.migrations WHERE state = 'launched' AND backup_timestamp <> :'ts_earlier' \gset
SELECT regress.error_of(format('SELECT migrate_ext.rollback_migration(%L)', :'ts_earlier'));
SELECT migrate_ext.rollback_migration(:'ts_later') ~ '^SUCCESS: rolled back' AS later_rolled_back;
SELECT * FROM regress.changed_properties();
SELECT backup_timestamp AS ts2, migrate_ext.backup_schema(backup_timestamp) AS backup_schema2
  FROM migrate_ext.migrations WHERE state = 'launched' \gset
SELECT regress.error_of(format('CREATE VIEW regress.old_profiles AS SELECT id FROM %I.unified_profiles', :'backup_schema2'));
SELECT regress.error_of(format('SELECT migrate_ext.drop_backup(%L)', :'ts2'));
DROP VIEW regress.old_profiles;
-- a backup schema gone by hand (here renamed away, in a transaction undone)
-- is named in the error
BEGIN;
SELECT regress.error_of(format('ALTER SCHEMA %I RENAME TO regress_moved_backup', :'backup_schema2'));
SELECT regress.error_of(format('SELECT migrate_ext.drop_backup(%L)', :'ts2'));
ROLLBACK;
SELECT regexp_replace(migrate_ext.drop_backup(:'ts2'), '\d{4}(_\d{2}){5}', 'TS', 'g') AS dropped;
SELECT to_regnamespace(:'backup_schema2') IS NULL AS backup_schema_gone,
       (SELECT state FROM migrate_ext.migrations WHERE backup_timestamp = :'ts2') AS state;
SELECT regress.error_of(format('SELECT migrate_ext.rollback_migration(%L)', :'ts2'));
SELECT * FROM regress.changed_properties();

\c :regress_db supabase_admin
DROP DATABASE regress_swap;
