/*
 * http.h
 *	  HTTP GET with libcurl inside a background worker.
 *
 * libcurl's sockets live in a private epoll set ("mux") whose descriptor
 * sits in one WaitEventSet with the process latch and postmaster death, so
 * SIGTERM, SIGHUP, unsubscribe and wait_for_sync are honoured at once, even
 * in the middle of a 20-second long-poll.
 */
#ifndef PS_HTTP_H
#define PS_HTTP_H

#include "pglite_sync.h"

typedef enum PsHttpOutcome
{
	PS_HTTP_DONE,				/* a complete response (any status) */
	PS_HTTP_FAILED,				/* network error, timeout, reset, truncation */
	PS_HTTP_INTERRUPTED,		/* the interrupt callback asked to stop */
	PS_HTTP_BODY_REJECTED,		/* the body callback stopped the transfer */
	PS_HTTP_TOO_LARGE			/* over pglite_sync.max_response_size */
} PsHttpOutcome;

typedef struct PsHttpResponse
{
	PsHttpOutcome outcome;
	long		status;
	char		error[512];		/* for PS_HTTP_FAILED */

	/* electric-* headers (current names win over legacy ones) */
	bool		has_handle;
	char		handle[256];
	bool		has_offset;
	char		offset[128];
	bool		has_cursor;
	char		cursor[128];
	bool		up_to_date;
	bool		has_schema;
	int64		retry_after_ms; /* -1 when absent or invalid */
	bool		has_content_type;
	char		content_type[128];

	/* start of a non-2xx body, for error messages */
	char		error_body[512];
	size_t		error_body_len;

	size_t		body_bytes;
	double		seconds;
} PsHttpResponse;

/* Called with each piece of a 2xx body; false stops the transfer. */
typedef bool (*PsHttpBodyCallback) (void *arg, const char *data, size_t len,
									const PsHttpResponse *resp);

/* Called when the latch is set; true abandons the transfer or sleep. */
typedef bool (*PsHttpInterruptCallback) (void *arg);

typedef struct PsHttp PsHttp;

extern PsHttp *ps_http_create(void);
extern void ps_http_destroy(PsHttp *h);
extern void ps_http_set_headers(PsHttp *h, const char *const *names,
								const char *const *values, int n);
extern void ps_http_get(PsHttp *h, const char *url, bool live,
						PsHttpBodyCallback body_cb, void *body_arg,
						PsHttpInterruptCallback intr_cb, void *intr_arg,
						PsHttpResponse *resp);

/* Sleep ms on the same wait set; returns true if interrupted. */
extern bool ps_http_sleep(PsHttp *h, long ms, PsHttpInterruptCallback intr_cb,
						  void *intr_arg);

#endif
