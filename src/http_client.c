/*-------------------------------------------------------------------------
 *
 * http_client.c
 *	  GET requests to the source APIs from inside a backend.
 *
 * One libcurl easy handle is reused for every request of the backend (its
 * connections live in one multi handle, so keep-alive works across pages and
 * sources).  A request is started with HttpBegin() and collected with
 * HttpComplete(), so that the caller can store one page while the next one
 * is on its way.  HttpComplete() waits in short polls, checking for query
 * cancel and statement_timeout between them, retries transient failures with
 * exponential back-off and jitter (honouring Retry-After and
 * Rate-Limit-Reset), and raises a clear error for permanent ones.
 *
 * Nothing here raises an error while libcurl is on the stack: callbacks only
 * record what happened.  A request left in flight by an error is thrown away
 * by the next HttpBegin().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <curl/curl.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "http_client.h"
#include "json_page.h"
#include "migrate_ext.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "migrate_ext needs libcurl 7.85.0 or later"
#endif

/* Poll interval while waiting on the network: the bound on cancel latency */
#define POLL_MS 100

/* First back-off wait; doubles on every further attempt */
#define BACKOFF_BASE_MS 500

/* The state of the one request in flight, kept for the life of the backend */
typedef struct HttpState
{
	CURLM	   *multi;
	CURL	   *easy;
	struct curl_slist *headers;
	bool		in_flight;
	char		errbuf[CURL_ERROR_SIZE];
	char	   *body;			/* malloc'd; never larger than the size cap */
	size_t		len;
	size_t		cap;
	size_t		limit;			/* size cap of the current request */
	bool		too_big;
	bool		no_memory;
	TimestampTz pause_until;	/* the API said its quota is used up */
	bool		paused;
} HttpState;

static HttpState http;

/* Outcome of one attempt, as HttpComplete() classifies it */
typedef struct Attempt
{
	HttpVerdict verdict;
	char	   *reason;			/* what went wrong, for messages */
	long		wait_ms;		/* what the server asked us to wait, or -1 */
} Attempt;

/* Milliseconds from now until t (negative if t has passed) */
static double
MsUntil(TimestampTz t)
{
	return (double) (t - GetCurrentTimestamp()) / 1000.0;
}

/* Sleep ms milliseconds, waking at once for cancel, timeout or shutdown */
static void
SleepInterruptibly(long ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		double		left = MsUntil(until);

		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) ceil(left), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	CHECK_FOR_INTERRUPTS();
}

/* libcurl write callback: append to the body, never past the size cap */
static size_t
WriteBody(char *data, size_t size, size_t nmemb, void *userdata)
{
	size_t		n = size * nmemb;

	if (http.len + n > http.limit)
	{
		http.too_big = true;
		return 0;
	}
	if (http.len + n + 1 > http.cap)
	{
		size_t		newcap = Max(http.cap * 2, 64 * 1024);
		char	   *grown;

		while (newcap < http.len + n + 1)
			newcap *= 2;
		newcap = Min(newcap, http.limit + 1);
		grown = realloc(http.body, newcap);
		if (grown == NULL)
		{
			http.no_memory = true;
			return 0;
		}
		http.body = grown;
		http.cap = newcap;
	}
	memcpy(http.body + http.len, data, n);
	http.len += n;
	return n;
}

/* Create the multi handle once per backend, checking the runtime libcurl */
static void
EnsureMulti(void)
{
	curl_version_info_data *info;

	if (http.multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl"),
				 errhint("Check that the libcurl installation on the database server is complete.")));
	info = curl_version_info(CURLVERSION_NOW);
	if (info->version_num < 0x075500)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("libcurl %s is too old for migrate_ext", info->version),
				 errhint("Install libcurl 7.85.0 or later on the database server.")));
	http.multi = curl_multi_init();
	if (http.multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
}

/* Throw away the easy handle, e.g. after a transport error or an ERROR */
static void
DropEasyHandle(void)
{
	if (http.easy == NULL)
		return;
	if (http.in_flight)
		curl_multi_remove_handle(http.multi, http.easy);
	curl_easy_cleanup(http.easy);
	http.easy = NULL;
	http.in_flight = false;
}

/* Abort with a message when a curl_easy_setopt call fails */
static void
SetOpt(CURLcode rc, const char *what)
{
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not set libcurl option %s: %s", what,
						curl_easy_strerror(rc))));
}

/* Start a GET request; the caller collects it with HttpComplete() */
void
HttpBegin(const HttpRequest *req)
{
	char	   *api_key_header = NULL;

	EnsureMulti();

	/* a request left over by an error is thrown away with its handle */
	if (http.in_flight)
		DropEasyHandle();

	/* the API said its quota is used up: wait for the window to reset */
	if (http.paused)
	{
		double		left = MsUntil(http.pause_until);

		http.paused = false;
		if (left > 0)
			SleepInterruptibly((long) ceil(left));
	}

	if (http.easy == NULL)
	{
		http.easy = curl_easy_init();
		if (http.easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
	}
	else
		curl_easy_reset(http.easy);

	if (http.headers)
	{
		curl_slist_free_all(http.headers);
		http.headers = NULL;
	}
	http.headers = curl_slist_append(NULL, "Accept: application/json");
	if (req->api_key)
	{
		api_key_header = psprintf("X-API-Key: %s", req->api_key);
		http.headers = curl_slist_append(http.headers, api_key_header);
		memset(api_key_header, 0, strlen(api_key_header));
		pfree(api_key_header);
	}
	if (http.headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building request headers")));

	http.len = 0;
	http.too_big = false;
	http.no_memory = false;
	http.limit = (size_t) migrate_max_response_bytes;
	http.errbuf[0] = '\0';

	SetOpt(curl_easy_setopt(http.easy, CURLOPT_URL, req->url), "URL");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_NOSIGNAL, 1L), "NOSIGNAL");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_PROTOCOLS_STR, "http,https"), "PROTOCOLS_STR");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_FOLLOWLOCATION, 0L), "FOLLOWLOCATION");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_ACCEPT_ENCODING, ""), "ACCEPT_ENCODING");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_SSL_VERIFYPEER, 1L), "SSL_VERIFYPEER");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_SSL_VERIFYHOST, 2L), "SSL_VERIFYHOST");
	if (migrate_ca_file && migrate_ca_file[0] != '\0')
		SetOpt(curl_easy_setopt(http.easy, CURLOPT_CAINFO, migrate_ca_file), "CAINFO");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_CONNECTTIMEOUT_MS, (long) migrate_connect_timeout_ms), "CONNECTTIMEOUT_MS");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_TIMEOUT_MS, (long) migrate_timeout_ms), "TIMEOUT_MS");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_TCP_KEEPALIVE, 1L), "TCP_KEEPALIVE");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) migrate_max_response_bytes), "MAXFILESIZE_LARGE");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_WRITEFUNCTION, WriteBody), "WRITEFUNCTION");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_ERRORBUFFER, http.errbuf), "ERRORBUFFER");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_HTTPHEADER, http.headers), "HTTPHEADER");
	SetOpt(curl_easy_setopt(http.easy, CURLOPT_USERAGENT, "migrate_ext/1.0"), "USERAGENT");
	if (req->basic_user)
	{
		SetOpt(curl_easy_setopt(http.easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC), "HTTPAUTH");
		SetOpt(curl_easy_setopt(http.easy, CURLOPT_USERNAME, req->basic_user), "USERNAME");
		SetOpt(curl_easy_setopt(http.easy, CURLOPT_PASSWORD, ""), "PASSWORD");
	}

	if (curl_multi_add_handle(http.multi, http.easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP request")));
	http.in_flight = true;

	/* send the request now, so the server works while the caller does */
	{
		int			running;

		(void) curl_multi_perform(http.multi, &running);
	}
}

/* Wait for the request in flight to finish; returns libcurl's result */
static CURLcode
WaitForTransfer(void)
{
	CURLMsg    *msg;
	int			running = 1;
	int			queued;
	CURLcode	result = CURLE_OK;
	bool		done = false;

	while (!done)
	{
		CURLMcode	mc = curl_multi_perform(http.multi, &running);

		if (mc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("libcurl failed: %s", curl_multi_strerror(mc))));
		while ((msg = curl_multi_info_read(http.multi, &queued)) != NULL)
		{
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == http.easy)
			{
				result = msg->data.result;
				done = true;
			}
		}
		if (done || running == 0)
			break;
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		(void) curl_multi_poll(http.multi, NULL, 0, POLL_MS, NULL);
		pgstat_report_wait_end();
		CHECK_FOR_INTERRUPTS();
	}
	curl_multi_remove_handle(http.multi, http.easy);
	http.in_flight = false;
	return result;
}

/* Value of a response header, or NULL (the pointer belongs to libcurl) */
static const char *
HeaderValue(const char *name)
{
	struct curl_header *h;

	if (curl_easy_header(http.easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
		return NULL;
	return h->value;
}

/* Seconds in a header as a number (fractions allowed), or -1 */
static double
HeaderSeconds(const char *name)
{
	const char *v = HeaderValue(name);
	char	   *end;
	double		d;

	if (v == NULL)
		return -1;
	d = strtod(v, &end);
	if (end == v || d < 0 || isnan(d) || isinf(d))
	{
		/* Retry-After may also be an HTTP date */
		time_t		t = curl_getdate(v, NULL);

		if (t < 0)
			return -1;
		d = difftime(t, time(NULL));
		return d < 0 ? 0 : d;
	}
	/* X-RateLimit-Refill may be a unix time stamp */
	if (d > 1000000000.0)
	{
		d -= (double) time(NULL);
		return d < 0 ? 0 : d;
	}
	return d;
}

/* How long the server asked us to wait before asking again, in ms, or -1 */
static long
ServerWaitMs(void)
{
	double		s = HeaderSeconds("Retry-After");

	if (s < 0)
		s = HeaderSeconds("Rate-Limit-Reset");
	if (s < 0)
		s = HeaderSeconds("X-RateLimit-Refill");
	if (s < 0)
		return -1;
	return (long) Min(ceil(s * 1000.0), (double) INT_MAX);
}

/* Remember to pause before the next request when the quota is used up */
static void
NoteRateLimit(void)
{
	const char *remaining = HeaderValue("Rate-Limit-Remaining");
	long		wait_ms;

	if (remaining == NULL)
		remaining = HeaderValue("X-RateLimit-Remaining");
	if (remaining == NULL || atol(remaining) > 0 || remaining[0] == '\0')
		return;
	wait_ms = ServerWaitMs();
	if (wait_ms <= 0)
		return;
	wait_ms = Min(wait_ms, (long) migrate_max_retry_wait_ms);
	http.pause_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	http.paused = true;
}

/* Is this libcurl error worth a retry (the network or the server hiccuped)? */
static bool
TransientCurlError(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_GOT_NOTHING:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_PARTIAL_FILE:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
		case CURLE_BAD_CONTENT_ENCODING:
			return true;
		default:
			return false;
	}
}

/* The setting that holds a source's base URL, for hints */
static const char *
BaseUrlSetting(const HttpRequest *req)
{
	return psprintf("migrate_ext.%s_base_url", req->source);
}

/* Raise the error for a response the API will not change its mind about */
static void
FailOnStatus(const HttpRequest *req, const HttpResponse *resp)
{
	char	   *api_msg = JsonApiErrorMessage(resp->body, resp->len);
	const char *hint;
	int			code = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;

	if (resp->status >= 300 && resp->status < 400)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("%s: HTTP %ld redirect from GET %s refused",
						req->source, resp->status, req->endpoint),
				 errdetail("migrate_ext never follows redirects, so that an API key is never sent to another host."),
				 errhint("Set %s to the API's final address.", BaseUrlSetting(req))));

	switch (resp->status)
	{
		case 401:
			code = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			hint = psprintf("Check the API key: SELECT migrate_ext.set_api_key('%s', '<key>');", req->source);
			break;
		case 403:
			code = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			hint = "The API key is valid but may not read this endpoint: give it read access in the API's dashboard.";
			break;
		case 404:
			hint = psprintf("Check %s.", BaseUrlSetting(req));
			break;
		case 400:
		case 422:
			hint = strcmp(req->source, "xendit") == 0 ?
				"The API refused the request's parameters: check migrate_ext.page_size and migrate_ext.xendit_cursor_param." :
				"The API refused the request's parameters: check migrate_ext.page_size.";
			break;
		default:
			hint = "The API refused the request; it will not be retried.";
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s: HTTP %ld from GET %s: %s",
					req->source, resp->status, req->endpoint,
					api_msg ? api_msg : "(no message from the API)"),
			 errhint("%s", hint)));
}

/* Raise the error for a libcurl failure that a retry will not fix */
static void
FailOnCurl(const HttpRequest *req, CURLcode rc)
{
	const char *what = http.errbuf[0] ? http.errbuf : curl_easy_strerror(rc);

	if (http.too_big || rc == CURLE_FILESIZE_EXCEEDED)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: response to GET %s is larger than migrate_ext.max_response_bytes (%d bytes)",
						req->source, req->endpoint, migrate_max_response_bytes),
				 errhint("Lower migrate_ext.page_size, or ask a superuser to raise migrate_ext.max_response_bytes.")));
	if (http.no_memory)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("%s: out of memory reading the response to GET %s",
						req->source, req->endpoint)));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("%s: GET %s failed: %s (curl error %d)",
					req->source, req->endpoint, what, (int) rc),
			 (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
			  rc == CURLE_SSL_CERTPROBLEM) ?
			 errhint("The server's TLS certificate could not be verified: check migrate_ext.ca_file.") :
			 errhint("Check %s.", BaseUrlSetting(req))));
}

/* Collect one attempt and classify it; raises the error if it is permanent */
static Attempt
CollectAttempt(const HttpRequest *req, HttpResponse *resp,
			   HttpBodyCheck check, void *arg)
{
	Attempt		a = {HTTP_ACCEPT, NULL, -1};
	CURLcode	rc = WaitForTransfer();

	if (rc != CURLE_OK)
	{
		if (!TransientCurlError(rc) || http.too_big)
		{
			DropEasyHandle();
			FailOnCurl(req, rc);
		}
		a.verdict = HTTP_RETRY;
		a.reason = psprintf("%s (curl error %d)",
							http.errbuf[0] ? http.errbuf : curl_easy_strerror(rc),
							(int) rc);
		DropEasyHandle();
		return a;
	}

	curl_easy_getinfo(http.easy, CURLINFO_RESPONSE_CODE, &resp->status);
	resp->body = palloc(http.len + 1);
	if (http.len > 0)
		memcpy(resp->body, http.body, http.len);
	resp->body[http.len] = '\0';
	resp->len = http.len;

	if (resp->status == 429 || resp->status == 408 || resp->status >= 500)
	{
		a.verdict = HTTP_RETRY;
		a.reason = psprintf("HTTP %ld%s", resp->status,
							resp->status == 429 ? " (rate limited)" : "");
		a.wait_ms = ServerWaitMs();
		return a;
	}
	if (resp->status < 200 || resp->status >= 300)
		FailOnStatus(req, resp);

	if (memchr(resp->body, '\0', resp->len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s: response to GET %s contains a NUL byte",
						req->source, req->endpoint),
				 errhint("The API sent binary data where JSON was expected; check %s.",
						 BaseUrlSetting(req))));
	NoteRateLimit();
	a.verdict = check ? check(resp, arg, &a.reason) : HTTP_ACCEPT;
	return a;
}

/*
 * Collect the request started by HttpBegin(), retrying transient failures.
 * Returns only with an accepted 2xx response; anything else raises an error
 * that names the source, the endpoint, the HTTP status or curl error, and
 * what to do.
 */
void
HttpComplete(const HttpRequest *req, HttpResponse *resp, HttpBodyCheck check,
			 void *arg)
{
	int			attempt;

	for (attempt = 0;; attempt++)
	{
		Attempt		a;
		long		wait_ms;

		memset(resp, 0, sizeof(HttpResponse));
		a = CollectAttempt(req, resp, check, arg);
		if (a.verdict == HTTP_ACCEPT)
			return;
		if (a.verdict == HTTP_FAIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_JSON_TEXT),
					 errmsg("%s: unexpected response to GET %s: %s",
							req->source, req->endpoint, a.reason),
					 errhint("The API's response format may have changed; check %s.",
							 BaseUrlSetting(req))));
		if (attempt >= migrate_max_retries)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("%s: GET %s still failing after %d attempts: %s",
							req->source, req->endpoint, attempt + 1, a.reason),
					 errhint("The API is unavailable or rate limiting; run the sync again later, or raise migrate_ext.max_retries or migrate_ext.timeout.")));

		if (a.wait_ms >= 0)
			wait_ms = a.wait_ms;
		else
		{
			double		base = BACKOFF_BASE_MS * pow(2.0, Min(attempt, 20));

			wait_ms = (long) (base * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
		}
		wait_ms = Min(wait_ms, (long) migrate_max_retry_wait_ms);
		ereport(NOTICE,
				(errmsg("%s: GET %s: %s; retry %d of %d in %ld ms",
						req->source, req->endpoint, a.reason, attempt + 1,
						migrate_max_retries, wait_ms)));
		if (resp->body)
			pfree(resp->body);
		SleepInterruptibly(wait_ms);
		HttpBegin(req);
	}
}

/* URL-encode a query parameter value (palloc'd) */
char *
HttpEscape(const char *value)
{
	char	   *escaped;
	char	   *copy;

	EnsureMulti();
	escaped = curl_easy_escape(NULL, value, 0);
	if (escaped == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory escaping a URL parameter")));
	copy = pstrdup(escaped);
	curl_free(escaped);
	return copy;
}
