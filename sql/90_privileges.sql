-------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; everything for the extension's owner.
-- The install script and every upgrade script end with this call.
-------------------------------------------------------------------------------

SELECT migrate_ext.close_extension_objects('@extowner@'::pg_catalog.regrole);
