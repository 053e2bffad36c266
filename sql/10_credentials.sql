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

