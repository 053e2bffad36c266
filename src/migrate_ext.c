/*-------------------------------------------------------------------------
 *
 * migrate_ext.c
 *	  Module glue: the module magic, _PG_init and the migrate_ext.* settings.
 *
 * API keys are never settings (values stored with ALTER ROLE/DATABASE SET
 * are readable by every user): see credentials.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "migrate_ext.h"

PG_MODULE_MAGIC;

char	   *migrate_xendit_base_url = NULL;
char	   *migrate_systemeio_base_url = NULL;
char	   *migrate_xendit_cursor_param = NULL;
int			migrate_page_size = 100;
int			migrate_connect_timeout_ms = 10000;
int			migrate_timeout_ms = 60000;
int			migrate_max_retries = 5;
int			migrate_max_retry_wait_ms = 60000;
int			migrate_max_response_bytes = 16 * 1024 * 1024;
char	   *migrate_ca_file = NULL;
int			migrate_progress_pages = 50;
int			migrate_lock_timeout_ms = 500;
int			migrate_lock_retries = 10;
int			migrate_min_staging_rows = 10;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(migrate_ext_load_settings);

/* Accept only an absolute http:// or https:// URL without credentials or query */
static bool
CheckBaseUrl(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *rest;

	if (url == NULL)
		return true;
	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
	{
		GUC_check_errmsg("API base URL \"%s\" must start with https:// or http://", url);
		GUC_check_errhint("For example 'https://api.xendit.co'.");
		return false;
	}
	if (*rest == '\0' || *rest == '/')
	{
		GUC_check_errmsg("API base URL \"%s\" has no host name", url);
		return false;
	}
	if (strpbrk(url, "?#@ \t\r\n") != NULL)
	{
		GUC_check_errmsg("API base URL \"%s\" must not contain a query, a fragment, credentials or white space", url);
		GUC_check_errhint("Store API keys with migrate_ext.set_api_key(), never in a URL.");
		return false;
	}
	return true;
}

/* Accept a query parameter name made of letters, digits and underscores */
static bool
CheckParamName(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;

	if (p == NULL || *p == '\0')
	{
		GUC_check_errmsg("the cursor parameter name must not be empty");
		return false;
	}
	for (; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_'))
		{
			GUC_check_errmsg("cursor parameter name \"%s\" may contain only letters, digits and underscores", *newval);
			GUC_check_errhint("The Xendit invoices API calls it last_invoice_id (older SDKs) or last_invoice (newer SDKs).");
			return false;
		}
	}
	return true;
}

/*
 * Nothing but loading the library, so that the migrate_ext.* settings exist
 * (and a value SET before the load is checked) for the SQL functions that
 * read them
 */
Datum
migrate_ext_load_settings(PG_FUNCTION_ARGS)
{
	PG_RETURN_VOID();
}

/* Define the migrate_ext.* settings when the library is loaded */
void
_PG_init(void)
{
	DefineCustomStringVariable("migrate_ext.xendit_base_url",
							   "Base URL of the Xendit API.",
							   NULL,
							   &migrate_xendit_base_url,
							   "https://api.xendit.co",
							   PGC_SUSET, 0,
							   CheckBaseUrl, NULL, NULL);
	DefineCustomStringVariable("migrate_ext.systemeio_base_url",
							   "Base URL of the Systeme.io API.",
							   NULL,
							   &migrate_systemeio_base_url,
							   "https://api.systeme.io",
							   PGC_SUSET, 0,
							   CheckBaseUrl, NULL, NULL);
	DefineCustomStringVariable("migrate_ext.xendit_cursor_param",
							   "Name of the Xendit invoices paging cursor parameter.",
							   NULL,
							   &migrate_xendit_cursor_param,
							   "last_invoice_id",
							   PGC_USERSET, 0,
							   CheckParamName, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.page_size",
							"Records asked for per API page (10 to 100).",
							NULL,
							&migrate_page_size,
							100, 10, 100,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.connect_timeout",
							"Time allowed to connect to an API.",
							NULL,
							&migrate_connect_timeout_ms,
							10000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.timeout",
							"Time allowed for one API request, connection included.",
							NULL,
							&migrate_timeout_ms,
							60000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.max_retries",
							"Retries of one API request after a transient failure.",
							NULL,
							&migrate_max_retries,
							5, 0, 100,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.max_retry_wait",
							"Longest single wait before a retry.",
							NULL,
							&migrate_max_retry_wait_ms,
							60000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.max_response_bytes",
							"Largest API response body accepted.",
							NULL,
							&migrate_max_response_bytes,
							16 * 1024 * 1024, 1024, INT_MAX,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomStringVariable("migrate_ext.ca_file",
							   "File of trusted certificate authorities for HTTPS (empty: the system's).",
							   NULL,
							   &migrate_ca_file,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.progress_pages",
							"A sync reports progress in a NOTICE every this many pages (0: never).",
							NULL,
							&migrate_progress_pages,
							50, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migrate_ext.lock_timeout",
							"How long one attempt to lock the swapped tables may wait.",
							"Sessions queued behind the swap wait at most this long per attempt.",
							&migrate_lock_timeout_ms,
							500, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.lock_retries",
							"Further attempts to lock the swapped tables after the first one times out.",
							NULL,
							&migrate_lock_retries,
							10, 0, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate_ext.min_staging_rows",
							"The launch refuses a staging table with fewer rows than this.",
							"A guard against swapping in an empty or truncated staging table.",
							&migrate_min_staging_rows,
							10, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("migrate_ext");
}
