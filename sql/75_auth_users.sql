-------------------------------------------------------------------------------
-- Creating the staged new users in auth.users as Supabase Auth expects them
-- (the launch's first step)
-------------------------------------------------------------------------------

-- Insert every user of migrate_staging.auth_users that auth.users does not
-- have: '' (never NULL) tokens and e-mail-change columns, aud and role
-- authenticated, the zero instance id, the e-mail provider in
-- raw_app_meta_data, a matching auth.identities row where that table
-- exists; confirmed_at is generated and never written; email_confirmed_at
-- is the launch time when migrate_ext.new_user_rules.email_confirm says so
-- (the default), else NULL.  Existing auth users are never changed.
-- Returns the number of users created.
CREATE FUNCTION migrate_ext.create_auth_users() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    confirm boolean := coalesce((SELECT r.email_confirm FROM migrate_ext.new_user_rules AS r), true);
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

    INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                            confirmation_token, recovery_token, email_change_token_new, email_change,
                            email_change_token_current, phone_change, phone_change_token, reauthentication_token,
                            raw_app_meta_data, raw_user_meta_data, is_super_admin, is_sso_user, is_anonymous,
                            created_at, updated_at)
    SELECT '00000000-0000-0000-0000-000000000000', s.id, 'authenticated', 'authenticated', s.email, '',
           CASE WHEN confirm THEN now() END,
           '', '', '', '', '', '', '', '',
           '{"provider": "email", "providers": ["email"]}'::jsonb,
           jsonb_strip_nulls(jsonb_build_object('email', s.email, 'email_verified', confirm,
                                                'first_name', s.first_name, 'last_name', s.last_name)),
           false, false, false, s.created_at, now()
      FROM migrate_staging.auth_users AS s
     WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id);
    GET DIAGNOSTICS n = ROW_COUNT;

    IF to_regclass('auth.identities') IS NOT NULL THEN
        INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at)
        SELECT s.id::text, s.id,
               jsonb_build_object('sub', s.id::text, 'email', s.email, 'email_verified', confirm, 'phone_verified', false),
               'email', now(), now()
          FROM migrate_staging.auth_users AS s
         WHERE NOT EXISTS (SELECT 1 FROM auth.identities AS i WHERE i.provider = 'email' AND i.provider_id = s.id::text);
    END IF;
    RETURN n;
END;
$$;
