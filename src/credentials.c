/*-------------------------------------------------------------------------
 *
 * credentials.c
 *	  API keys: migrate_ext.set_api_key() and reading a key for a sync.
 *
 * Keys live in migrate_ext.api_keys, which no role but the extension owner
 * can read.  They are never settings, never in sync_runs, and never in a
 * message: every error raised here hides the statement (which holds the
 * key) from the server log.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "migrate_ext.h"

PG_FUNCTION_INFO_V1(migrate_ext_set_api_key);

/* Longest key accepted; real keys are well under 200 characters */
#define MAX_KEY_LENGTH 1024

/* Is this one of the sources migrate_ext knows? */
static bool
KnownSource(const char *source)
{
	return strcmp(source, "xendit") == 0 || strcmp(source, "systemeio") == 0;
}

/* Raise an error about an API key without logging the statement */
static void
RejectKey(const char *message, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s", message),
			 errhint("%s", hint),
			 errhidestmt(true)));
}

/* Check the caller may write the key table, before the key reaches any SQL */
static void
CheckKeyTableAccess(void)
{
	Oid			nsp = get_namespace_oid("migrate_ext", false);
	Oid			rel = get_relname_relid("api_keys", nsp);

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table migrate_ext.api_keys is missing"),
				 errhint("Reinstall the extension: DROP EXTENSION migrate_ext; CREATE EXTENSION migrate_ext;"),
				 errhidestmt(true)));
	if (pg_class_aclcheck(rel, GetUserId(), ACL_INSERT | ACL_UPDATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to store API keys"),
				 errhint("Only the owner of the migrate_ext extension may store API keys."),
				 errhidestmt(true)));
}

/*
 * migrate_ext.set_api_key(source text, api_key text): store the key of one
 * API source, replacing the previous one.
 */
Datum
migrate_ext_set_api_key(PG_FUNCTION_ARGS)
{
	char	   *source;
	char	   *key;
	const unsigned char *p;
	Datum		values[2];
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	int			rc;

	if (PG_ARGISNULL(0))
		RejectKey("API source must not be NULL", "Use 'xendit' or 'systemeio'.");
	source = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!KnownSource(source))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown API source \"%s\"", source),
				 errhint("Use 'xendit' or 'systemeio'."),
				 errhidestmt(true)));
	if (PG_ARGISNULL(1))
		RejectKey("API key must not be NULL",
				  "Pass the key from the API's dashboard as the second argument.");
	key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (key[0] == '\0')
		RejectKey("API key must not be empty",
				  "Pass the key from the API's dashboard as the second argument.");
	if (strlen(key) > MAX_KEY_LENGTH)
		RejectKey("API key is too long",
				  "An API key is a single token of at most 1024 characters; check what was pasted.");
	for (p = (const unsigned char *) key; *p; p++)
	{
		if (*p <= ' ' || *p == 0x7f)
			RejectKey("API key must not contain spaces or control characters",
					  "Check that the key was pasted without surrounding spaces or line breaks.");
	}

	CheckKeyTableAccess();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(source);
	values[1] = CStringGetTextDatum(key);
	rc = SPI_execute_with_args(
							   "INSERT INTO migrate_ext.api_keys AS k (source, api_key, set_at, set_by) "
							   "VALUES ($1, $2, pg_catalog.now(), pg_catalog.current_user()) "
							   "ON CONFLICT (source) DO UPDATE SET api_key = EXCLUDED.api_key, "
							   "set_at = EXCLUDED.set_at, set_by = EXCLUDED.set_by",
							   2, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "storing the API key failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	memset(key, 0, strlen(key));
	PG_RETURN_VOID();
}

/*
 * The stored key of a source (palloc'd in the caller's context), or an
 * error that says how to store one.  The caller must be connected to SPI.
 */
char *
ReadApiKey(const char *source)
{
	Datum		values[1];
	Oid			argtypes[1] = {TEXTOID};
	int			rc;
	char	   *key = NULL;

	values[0] = CStringGetTextDatum(source);
	rc = SPI_execute_with_args("SELECT api_key FROM migrate_ext.api_keys WHERE source OPERATOR(pg_catalog.=) $1",
							   1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading the API key failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
		key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("%s: no API key is stored", source),
				 errhint("Store one first: SELECT migrate_ext.set_api_key('%s', '<key>');", source)));
	return key;
}
