--
-- swap_inventory: what depends on the swapped production tables, and the
-- objects a swap could not carry, which make the launch refuse (fail closed)
--
SET client_min_messages = warning;
CREATE DATABASE regress_inventory;
SELECT current_database() AS regress_db \gset
\c regress_inventory
SET client_min_messages = warning;
\i test/fixture/load.psql
\c regress_inventory postgres
SET client_min_messages = warning;
CREATE EXTENSION migrate_ext;

-- The fixture's dependents, by table and catalog
SELECT tbl, catalog, count(*) FROM migrate_ext.swap_dependents() GROUP BY 1, 2 ORDER BY 1, 2;
-- none of them stops a swap
SELECT * FROM migrate_ext.swap_refusals();

-- Objects a swap cannot carry are named, with what to do
CREATE RULE regress_keep_transactions AS ON DELETE TO public.transactions DO INSTEAD NOTHING;
CREATE TABLE public.regress_snapshots (taken_at timestamptz, enrollment public.enrollments,
                                       history public.unified_profiles[]);
CREATE TABLE public.regress_enrollments_archive () INHERITS (public.enrollments);
ALTER TABLE public.transactions ADD COLUMN regress_number serial;
CREATE VIEW public.regress_top_courses AS SELECT * FROM public.course_enrollment_stats ORDER BY total_enrollments DESC LIMIT 3;
SELECT * FROM migrate_ext.swap_refusals();

-- and once they are gone, nothing stops the swap
DROP RULE regress_keep_transactions ON public.transactions;
DROP TABLE public.regress_snapshots, public.regress_enrollments_archive;
ALTER TABLE public.transactions DROP COLUMN regress_number;
DROP VIEW public.regress_top_courses;
SELECT count(*) AS refusals FROM migrate_ext.swap_refusals();

\c :regress_db supabase_admin
DROP DATABASE regress_inventory;
