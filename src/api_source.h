/*-------------------------------------------------------------------------
 *
 * api_source.h
 *	  What the sync needs to know about one API source: its URL and paging
 *	  rule, how it authenticates, and the SQL function that stores a page.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATE_API_SOURCE_H
#define MIGRATE_API_SOURCE_H

#include "http_client.h"
#include "json_page.h"

typedef struct ApiSource
{
	const char *name;			/* as in set_api_key() and sync_runs.source */
	const char *endpoint;		/* path, for messages */
	PageShape	shape;			/* how a page wraps its records */

	/* URL of the page after cursor (NULL: the first page), palloc'd */
	char	   *(*page_url) (const char *cursor);

	/* put the API key where this API expects it */
	void		(*authenticate) (HttpRequest *req, const char *api_key);

	/* is there a page after this one? */
	bool		(*has_more) (const JsonPage *page);
} ApiSource;

extern const ApiSource xendit_invoices_source;
extern const ApiSource systemeio_contacts_source;

extern char *BaseUrlWithoutSlash(const char *base);

#endif							/* MIGRATE_API_SOURCE_H */
