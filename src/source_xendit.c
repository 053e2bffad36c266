/*-------------------------------------------------------------------------
 *
 * source_xendit.c
 *	  The Xendit invoices API: GET /v2/invoices.
 *
 * HTTP Basic authentication with the secret key as the user name and an
 * empty password.  A page is a bare JSON array, newest first; the next page
 * passes the last invoice's id in the cursor parameter
 * (migrate_ext.xendit_cursor_param).  There is no "has more" flag: a page
 * shorter than the limit is the last one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "api_source.h"
#include "migrate_ext.h"

/* Copy a base URL without its trailing slashes */
char *
BaseUrlWithoutSlash(const char *base)
{
	char	   *url = pstrdup(base);
	size_t		n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
	return url;
}

/* URL of the invoices page after cursor */
static char *
XenditPageUrl(const char *cursor)
{
	char	   *base = BaseUrlWithoutSlash(migrate_xendit_base_url);

	if (cursor == NULL)
		return psprintf("%s/v2/invoices?limit=%d", base, migrate_page_size);
	return psprintf("%s/v2/invoices?limit=%d&%s=%s", base, migrate_page_size,
					migrate_xendit_cursor_param, HttpEscape(cursor));
}

/* Xendit: the secret key is the Basic auth user name, the password empty */
static void
XenditAuthenticate(HttpRequest *req, const char *api_key)
{
	req->basic_user = api_key;
}

/* A full page may have a successor; a short or empty one is the last */
static bool
XenditHasMore(const JsonPage *page)
{
	return page->count > 0 && page->count >= migrate_page_size;
}

const ApiSource xendit_invoices_source = {
	.name = "xendit",
	.endpoint = "/v2/invoices",
	.shape = PAGE_BARE_ARRAY,
	.page_url = XenditPageUrl,
	.authenticate = XenditAuthenticate,
	.has_more = XenditHasMore,
};
