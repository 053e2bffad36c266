/*-------------------------------------------------------------------------
 *
 * sync.c
 *	  migrate_ext.sync_raw_api_data(): page every source API into its raw
 *	  table.
 *
 * Each source runs in its own subtransaction: a source that fails leaves
 * its raw table exactly as it was, is logged in sync_runs with its error,
 * and the next source still runs.  Query cancel and statement_timeout are
 * never swallowed: they end the whole call, and nothing of it remains.
 *
 * A page costs one HTTP round trip and one SQL statement (the source's
 * store function, defined in the extension script, which upserts only the
 * records whose content changed and moves records PostgreSQL cannot store
 * to sync_rejects).  The next page is requested before the current one is
 * stored, so the network and the API work while the backend inserts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "api_source.h"
#include "migrate_ext.h"

PG_FUNCTION_INFO_V1(migrate_ext_sync_raw_api_data);

/* What one source's run did, as reported in sync_runs and the result */
typedef struct SourceResult
{
	const ApiSource *src;
	bool		failed;
	int64		pages;
	int64		fetched;
	int64		inserted;
	int64		updated;
	int64		rejected;
	TimestampTz started_at;
	TimestampTz finished_at;
	char	   *error;
} SourceResult;

/* The sources, in the order a sync runs them by default */
static const ApiSource *const all_sources[] = {
	&xendit_invoices_source,
	&systemeio_contacts_source,
};

/* What CheckPage() needs: the source, and where to put what the page says */
typedef struct PageCheck
{
	const ApiSource *src;
	JsonPage   *page;
} PageCheck;

/* Body check for HttpComplete(): read the page envelope and cursor */
static HttpVerdict
CheckPage(const HttpResponse *resp, void *arg, char **reason)
{
	PageCheck  *pc = (PageCheck *) arg;

	switch (JsonReadPage(resp->body, resp->len, pc->src->shape, pc->page, reason))
	{
		case JSON_PAGE_OK:
			return HTTP_ACCEPT;
		case JSON_PAGE_INVALID:
			return HTTP_RETRY;
		case JSON_PAGE_BAD_SHAPE:
			break;
	}
	return HTTP_FAIL;
}

/* Look a source up by name, or raise an error listing the known ones */
static const ApiSource *
FindSource(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(all_sources); i++)
	{
		if (strcmp(all_sources[i]->name, name) == 0)
			return all_sources[i];
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown API source \"%s\"", name),
			 errhint("Sources are 'xendit' and 'systemeio', e.g. sync_raw_api_data('{xendit}').")));
	return NULL;				/* keep compiler quiet */
}

/* Turn the sources argument into a list of ApiSource, checking every entry */
static List *
ReadSourcesArgument(FunctionCallInfo fcinfo)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *sources = NIL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sources must not be NULL"),
				 errhint("Omit the argument to sync every source, or pass e.g. '{xendit}'.")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("sources must be a one-dimensional array"),
				 errhint("Pass e.g. '{xendit,systemeio}'.")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sources must not be empty"),
				 errhint("Omit the argument to sync every source, or pass e.g. '{xendit}'.")));
	for (i = 0; i < n; i++)
	{
		const ApiSource *src;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("sources must not contain NULL"),
					 errhint("Sources are 'xendit' and 'systemeio'.")));
		src = FindSource(TextDatumGetCString(elems[i]));
		if (list_member_ptr(sources, src))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("source \"%s\" is listed twice", src->name),
					 errhint("List each source once.")));
		sources = lappend(sources, (void *) src);
	}
	return sources;
}

/* Run one SQL statement through SPI and return its single int8 result */
static int64
SelectInt8(const char *sql)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute(sql, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not run \"%s\"", sql);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/* Show where the sync is in pg_stat_activity, and in a NOTICE now and then */
static void
ReportProgress(const SourceResult *res, bool notice)
{
	char	   *activity = psprintf("migrate_ext.sync_raw_api_data(): %s page " INT64_FORMAT ", " INT64_FORMAT " records",
									res->src->name, res->pages, res->fetched);

	pgstat_report_activity(STATE_RUNNING, activity);
	if (notice)
		ereport(NOTICE,
				(errmsg("%s: " INT64_FORMAT " pages, " INT64_FORMAT " records so far",
						res->src->name, res->pages, res->fetched)));
	pfree(activity);
}

/* Store one page through the source's store function and count the result */
static void
StorePage(SPIPlanPtr plan, const HttpResponse *resp, int64 run_id,
		  SourceResult *res)
{
	Datum		values[3];
	bool		isnull;
	TupleDesc	desc;
	HeapTuple	tup;

	values[0] = CStringGetTextDatum(res->src->name);
	values[1] = PointerGetDatum(cstring_to_text_with_len(resp->body, (int) resp->len));
	values[2] = Int64GetDatum(run_id);
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "storing a page of %s failed", res->src->name);
	desc = SPI_tuptable->tupdesc;
	tup = SPI_tuptable->vals[0];
	res->inserted += DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	res->updated += DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	res->rejected += DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	SPI_freetuptable(SPI_tuptable);
	pfree(DatumGetPointer(values[1]));
}

/* Refuse a page that starts over instead of following the cursor */
static void
CheckCursorAdvanced(const SourceResult *res, const JsonPage *page,
					const char *cursor, const char *prev_first)
{
	if (cursor == NULL || page->count == 0)
		return;
	if (strcmp(page->last_id, cursor) != 0 &&
		(prev_first == NULL || strcmp(page->first_id, prev_first) != 0))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("%s: the paging cursor did not advance at page " INT64_FORMAT " of GET %s",
					res->src->name, res->pages, res->src->endpoint),
			 errdetail("The page after record \"%s\" repeated records already received, so paging would never end.",
					   cursor),
			 res->src == &xendit_invoices_source ?
			 errhint("Check migrate_ext.xendit_cursor_param: the API may call the cursor last_invoice instead of last_invoice_id.") :
			 errhint("The API ignored the startingAfter cursor; run the sync again later.")));
}

/* Page one source into its raw table (runs inside a subtransaction) */
static void
SyncSource(SourceResult *res, int64 run_id)
{
	const ApiSource *src = res->src;
	MemoryContext srccxt = CurrentMemoryContext;
	MemoryContext pagecxt;
	HttpRequest req = {0};
	char	   *cursor = NULL;
	char	   *prev_first = NULL;
	SPIPlanPtr	plan;
	const char *sql;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT8OID};

	req.source = src->name;
	req.endpoint = src->endpoint;
	src->authenticate(&req, ReadApiKey(src->name));

	sql = "SELECT inserted, updated, rejected FROM migrate_ext.store_page($1, $2, $3)";
	plan = SPI_prepare(sql, 3, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare(\"%s\") failed: %s", sql,
			 SPI_result_code_string(SPI_result));

	pagecxt = AllocSetContextCreate(srccxt, "migrate_ext sync page",
									ALLOCSET_DEFAULT_SIZES);
	req.url = src->page_url(NULL);
	HttpBegin(&req);
	for (;;)
	{
		HttpResponse resp;
		JsonPage	page;
		PageCheck	check = {src, &page};
		bool		more;

		MemoryContextSwitchTo(pagecxt);
		HttpComplete(&req, &resp, CheckPage, &check);
		res->pages++;
		res->fetched += page.count;
		CheckCursorAdvanced(res, &page, cursor, prev_first);
		more = src->has_more(&page);

		/* ask for the next page now; store this one while it travels */
		MemoryContextSwitchTo(srccxt);
		if (more)
		{
			if (cursor)
				pfree(cursor);
			if (prev_first)
				pfree(prev_first);
			cursor = pstrdup(page.last_id);
			prev_first = pstrdup(page.first_id);
			pfree((char *) req.url);
			req.url = src->page_url(cursor);
			HttpBegin(&req);
		}

		MemoryContextSwitchTo(pagecxt);
		StorePage(plan, &resp, run_id, res);
		ReportProgress(res, migrate_progress_pages > 0 &&
					   res->pages % migrate_progress_pages == 0);
		MemoryContextSwitchTo(srccxt);
		MemoryContextReset(pagecxt);
		CHECK_FOR_INTERRUPTS();
		if (!more)
			break;
	}
	MemoryContextDelete(pagecxt);
	SPI_freeplan(plan);
}

/* Run one source in a subtransaction; a failure is recorded, not raised */
static void
SyncSourceGuarded(SourceResult *res, int64 run_id)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	res->started_at = GetCurrentTimestamp();
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		SyncSource(res, run_id);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char	   *message;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		/* cancel and statement_timeout end the whole call */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);

		/* name the source in the message, whoever raised it */
		if (strncmp(edata->message, res->src->name, strlen(res->src->name)) == 0 &&
			edata->message[strlen(res->src->name)] == ':')
			message = pstrdup(edata->message);
		else
			message = psprintf("%s: %s", res->src->name, edata->message);

		res->failed = true;
		res->inserted = res->updated = res->rejected = 0;
		if (edata->hint == NULL)
			res->error = message;
		else
			res->error = psprintf("%s%s %s", message,
								  message[strlen(message) - 1] == '.' ? "" : ".",
								  edata->hint);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("%s", message),
				 errdetail("The raw table of source %s was left as it was; the other sources still ran.",
						   res->src->name),
				 edata->hint ? errhint("%s", edata->hint) : 0));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	res->finished_at = GetCurrentTimestamp();
}

/* Seconds between two time stamps, as numeric with millisecond precision */
static Datum
SecondsBetween(TimestampTz from, TimestampTz to)
{
	char		buf[64];

	snprintf(buf, sizeof(buf), "%.3f", (double) (to - from) / USECS_PER_SEC);
	return DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/* Records received and found identical to what was stored */
static int64
Unchanged(const SourceResult *res)
{
	if (res->failed)
		return 0;
	return res->fetched - res->inserted - res->updated - res->rejected;
}

/* Record one source's run in migrate_ext.sync_runs */
static void
LogSourceRun(const SourceResult *res, int64 run_id)
{
	Datum		values[12];
	char		nulls[12];
	Oid			argtypes[12] = {INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID};

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(res->src->name);
	values[2] = TimestampTzGetDatum(res->started_at);
	values[3] = TimestampTzGetDatum(res->finished_at);
	values[4] = CStringGetTextDatum(res->failed ? "failed" : "succeeded");
	values[5] = Int64GetDatum(res->pages);
	values[6] = Int64GetDatum(res->fetched);
	values[7] = Int64GetDatum(res->inserted);
	values[8] = Int64GetDatum(res->updated);
	values[9] = Int64GetDatum(Unchanged(res));
	values[10] = Int64GetDatum(res->rejected);
	if (res->error)
		values[11] = CStringGetTextDatum(res->error);
	else
		nulls[11] = 'n';
	if (SPI_execute_with_args("INSERT INTO migrate_ext.sync_runs "
							  "(run_id, source, started_at, finished_at, status, pages, fetched, "
							  "inserted, updated, unchanged, rejected, error) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
							  12, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the sync run of %s", res->src->name);
}

/* Add one source's result row to the function's result set */
static void
EmitResultRow(ReturnSetInfo *rsinfo, const SourceResult *res)
{
	Datum		values[10];
	bool		nulls[10] = {0};

	values[0] = CStringGetTextDatum(res->src->name);
	values[1] = CStringGetTextDatum(res->failed ? "failed" : "succeeded");
	values[2] = Int64GetDatum(res->pages);
	values[3] = Int64GetDatum(res->fetched);
	values[4] = Int64GetDatum(res->inserted);
	values[5] = Int64GetDatum(res->updated);
	values[6] = Int64GetDatum(Unchanged(res));
	values[7] = Int64GetDatum(res->rejected);
	values[8] = SecondsBetween(res->started_at, res->finished_at);
	if (res->error)
		values[9] = CStringGetTextDatum(res->error);
	else
		nulls[9] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * migrate_ext.sync_raw_api_data(sources text[]): page each source API into
 * its raw table and return one row per source.
 */
Datum
migrate_ext_sync_raw_api_data(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *sources = ReadSourcesArgument(fcinfo);
	ListCell   *lc;
	int64		run_id;

	if (GetDatabaseEncoding() != PG_UTF8)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migrate_ext needs a UTF8 database"),
				 errhint("The APIs send UTF-8 text; create the database with ENCODING 'UTF8'.")));

	InitMaterializedSRF(fcinfo, 0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* one run of the extension at a time (sql/12_run_lock.sql) */
	if (SPI_execute("SELECT migrate_ext.lock_out_other_runs('sync_raw_api_data()'::pg_catalog.text)",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not take the run lock");
	run_id = SelectInt8("SELECT pg_catalog.nextval('migrate_ext.sync_runs_run_id_seq'::pg_catalog.regclass)");

	foreach(lc, sources)
	{
		SourceResult res = {0};

		res.src = (const ApiSource *) lfirst(lc);
		SyncSourceGuarded(&res, run_id);
		LogSourceRun(&res, run_id);
		EmitResultRow(rsinfo, &res);
	}

	SPI_finish();
	pgstat_report_activity(STATE_RUNNING, debug_query_string);
	return (Datum) 0;
}
