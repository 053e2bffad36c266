/*-------------------------------------------------------------------------
 *
 * http_client.h
 *	  The HTTP client: one reused libcurl handle per backend, retries with
 *	  back-off, rate-limit headers, interrupts and a response size cap.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATE_HTTP_CLIENT_H
#define MIGRATE_HTTP_CLIENT_H

/* What a body check says about a 2xx response */
typedef enum HttpVerdict
{
	HTTP_ACCEPT,				/* the response is good */
	HTTP_RETRY,					/* transient: ask again after a back-off */
	HTTP_FAIL					/* permanent: give up now */
} HttpVerdict;

/* One GET request; every string is owned by the caller */
typedef struct HttpRequest
{
	const char *source;			/* API source name, for messages */
	const char *endpoint;		/* path shown in messages, never the full URL */
	const char *url;			/* full URL */
	const char *basic_user;		/* HTTP Basic user name (empty password), or
								 * NULL */
	const char *api_key;		/* value of the X-API-Key header, or NULL */
} HttpRequest;

/* A completed response; body is palloc'd and NUL-terminated */
typedef struct HttpResponse
{
	long		status;
	char	   *body;
	size_t		len;
} HttpResponse;

/* Judges a 2xx body; on HTTP_RETRY or HTTP_FAIL sets *reason (palloc'd) */
typedef HttpVerdict (*HttpBodyCheck) (const HttpResponse *resp, void *arg,
									  char **reason);

extern void HttpBegin(const HttpRequest *req);
extern void HttpComplete(const HttpRequest *req, HttpResponse *resp,
						 HttpBodyCheck check, void *arg);
extern char *HttpEscape(const char *value);

#endif							/* MIGRATE_HTTP_CLIENT_H */
