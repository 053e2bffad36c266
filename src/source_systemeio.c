/*-------------------------------------------------------------------------
 *
 * source_systemeio.c
 *	  The Systeme.io contacts API: GET /api/contacts.
 *
 * The key goes in the X-API-Key header.  A page is {"items": [...],
 * "hasMore": bool}; the next page passes the last contact's id as
 * startingAfter.  limit must be 10 to 100 (anything else is a 422).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "api_source.h"
#include "migrate_ext.h"

/* URL of the contacts page after cursor */
static char *
SystemeioPageUrl(const char *cursor)
{
	char	   *base = BaseUrlWithoutSlash(migrate_systemeio_base_url);

	if (cursor == NULL)
		return psprintf("%s/api/contacts?limit=%d", base, migrate_page_size);
	return psprintf("%s/api/contacts?limit=%d&startingAfter=%s", base,
					migrate_page_size, HttpEscape(cursor));
}

/* Systeme.io: the key travels in the X-API-Key header */
static void
SystemeioAuthenticate(HttpRequest *req, const char *api_key)
{
	req->api_key = api_key;
}

/* The API says whether another page follows */
static bool
SystemeioHasMore(const JsonPage *page)
{
	return page->has_more && page->count > 0;
}

const ApiSource systemeio_contacts_source = {
	.name = "systemeio",
	.endpoint = "/api/contacts",
	.shape = PAGE_ITEMS_HAS_MORE,
	.page_url = SystemeioPageUrl,
	.authenticate = SystemeioAuthenticate,
	.has_more = SystemeioHasMore,
};
