/*-------------------------------------------------------------------------
 *
 * json_page.h
 *	  Reading API pages with jansson: the envelope, the cursor and the API's
 *	  own error message.  Records are never converted here: their exact text
 *	  goes to SQL for storage.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATE_JSON_PAGE_H
#define MIGRATE_JSON_PAGE_H

/* How an API wraps the records of one page */
typedef enum PageShape
{
	PAGE_BARE_ARRAY,			/* Xendit invoices: [ {...}, ... ] */
	PAGE_ITEMS_HAS_MORE			/* Systeme.io: {"items": [...], "hasMore": b} */
} PageShape;

/* What a page says about paging */
typedef struct JsonPage
{
	int			count;			/* records on the page */
	char	   *first_id;		/* id of the first record, or NULL if empty */
	char	   *last_id;		/* id of the last record, or NULL if empty */
	bool		has_more;		/* hasMore (PAGE_ITEMS_HAS_MORE only) */
} JsonPage;

/* Result of reading a page */
typedef enum JsonPageResult
{
	JSON_PAGE_OK,
	JSON_PAGE_INVALID,			/* not JSON at all: maybe a transient glitch */
	JSON_PAGE_BAD_SHAPE			/* JSON, but not the envelope the API
								 * documents */
} JsonPageResult;

extern JsonPageResult JsonReadPage(const char *body, size_t len,
								   PageShape shape, JsonPage *page,
								   char **problem);
extern char *JsonApiErrorMessage(const char *body, size_t len);

#endif							/* MIGRATE_JSON_PAGE_H */
