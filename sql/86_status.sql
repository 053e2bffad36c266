-------------------------------------------------------------------------------
-- migration_status(): where things stand, for people
-------------------------------------------------------------------------------

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
            detail := detail || format('. Backup schema %s keeps the previous tables (%s profiles, %s transactions, %s enrollments). '
                                       'Roll back with SELECT migrate_ext.rollback_migration(%L); %s',
                                       migrate_ext.backup_schema(r.backup_timestamp),
                                       r.counts->'backup'->'unified_profiles', r.counts->'backup'->'transactions',
                                       r.counts->'backup'->'enrollments',
                                       r.backup_timestamp, migrate_ext.backup_references(r.backup_timestamp));
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
