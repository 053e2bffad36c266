/*-------------------------------------------------------------------------
 *
 * json_page.c
 *	  jansson only: read the envelope and cursor of an API page and the
 *	  message of an API error body.
 *
 * This file must not include utils/builtins.h or fmgrprotos.h: both declare
 * a json_object() that clashes with jansson's.  jansson allocates with
 * malloc, so every root is released before anything here can raise an
 * error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "lib/stringinfo.h"

#include "json_page.h"

/* Copy a record's id as text: Xendit ids are strings, Systeme.io ids integers */
static char *
RecordIdText(json_t *record)
{
	json_t	   *id;

	if (!json_is_object(record))
		return NULL;
	id = json_object_get(record, "id");
	if (json_is_string(id))
		return pstrdup(json_string_value(id));
	if (json_is_integer(id))
		return psprintf("%" JSON_INTEGER_FORMAT, json_integer_value(id));
	return NULL;
}

/* Fill *page from the records array; returns a problem text or NULL */
static char *
ReadRecords(json_t *records, JsonPage *page)
{
	size_t		n = json_array_size(records);

	page->count = (int) n;
	page->first_id = NULL;
	page->last_id = NULL;
	if (n == 0)
		return NULL;
	page->first_id = RecordIdText(json_array_get(records, 0));
	page->last_id = RecordIdText(json_array_get(records, n - 1));
	if (page->first_id == NULL || page->last_id == NULL)
		return pstrdup("a record at the edge of the page has no \"id\", so the next page cannot be asked for");
	return NULL;
}

/* Read one page of the given shape; returns JSON_PAGE_OK or a problem */
JsonPageResult
JsonReadPage(const char *body, size_t len, PageShape shape, JsonPage *page,
			 char **problem)
{
	json_error_t err;
	json_t	   *root;
	char	   *volatile bad = NULL;
	JsonPageResult volatile result = JSON_PAGE_OK;

	memset(page, 0, sizeof(JsonPage));
	root = json_loadb(body, len, JSON_ALLOW_NUL, &err);
	if (root == NULL)
	{
		*problem = psprintf("invalid JSON at line %d, column %d: %s",
							err.line, err.column, err.text);
		return JSON_PAGE_INVALID;
	}

	PG_TRY();
	{
		if (shape == PAGE_BARE_ARRAY)
		{
			if (!json_is_array(root))
				bad = pstrdup("expected a JSON array of records");
			else
				bad = ReadRecords(root, page);
		}
		else
		{
			json_t	   *items = json_object_get(root, "items");
			json_t	   *more = json_object_get(root, "hasMore");

			if (!json_is_object(root) || !json_is_array(items))
				bad = pstrdup("expected an object with an \"items\" array");
			else if (!json_is_boolean(more))
				bad = pstrdup("expected an object with a boolean \"hasMore\"");
			else
			{
				page->has_more = json_is_true(more);
				bad = ReadRecords(items, page);
			}
		}
	}
	PG_FINALLY();
	{
		json_decref(root);
	}
	PG_END_TRY();

	if (bad != NULL)
	{
		*problem = bad;
		result = JSON_PAGE_BAD_SHAPE;
	}
	return result;
}

/* Append the string member key of obj to buf, if there is one */
static void
AppendMember(StringInfo buf, json_t *obj, const char *key, const char *before,
			 const char *after)
{
	json_t	   *v = json_object_get(obj, key);

	if (json_is_string(v) && json_string_length(v) > 0)
	{
		appendStringInfoString(buf, before);
		appendBinaryStringInfo(buf, json_string_value(v),
							   (int) Min(json_string_length(v), 500));
		appendStringInfoString(buf, after);
	}
}

/*
 * The API's own message from an error body, or NULL when the body has none.
 * Xendit sends {"error_code", "message"}; Systeme.io sends problem JSON
 * {"title", "detail", "violations"}.
 */
char *
JsonApiErrorMessage(const char *body, size_t len)
{
	json_t	   *root;
	StringInfoData buf;

	if (body == NULL || len == 0)
		return NULL;
	root = json_loadb(body, len, 0, NULL);
	if (root == NULL)
		return NULL;
	initStringInfo(&buf);
	PG_TRY();
	{
		if (json_is_object(root))
		{
			AppendMember(&buf, root, "message", "", "");
			if (buf.len == 0)
				AppendMember(&buf, root, "detail", "", "");
			if (buf.len == 0)
				AppendMember(&buf, root, "title", "", "");
			if (buf.len == 0)
				AppendMember(&buf, root, "error", "", "");
			AppendMember(&buf, root, "error_code", buf.len ? " (" : "", buf.len ? ")" : "");
		}
	}
	PG_FINALLY();
	{
		json_decref(root);
	}
	PG_END_TRY();
	if (buf.len == 0)
	{
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}
