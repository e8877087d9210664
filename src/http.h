/*
 * http.h
 *	  HTTP for the workers and sync_now: libcurl's multi interface, every
 *	  transfer of a subscription in one pool.  libcurl's sockets live in a
 *	  private epoll set ("mux") whose descriptor sits in one WaitEventSet
 *	  with the process latch and postmaster death, so SIGTERM, SIGHUP,
 *	  unsubscribe, alter_subscription and wait_for_sync are honoured at
 *	  once, even in the middle of a long-poll, for every shape at once.
 */
#ifndef PS_HTTP_H
#define PS_HTTP_H

#include "pglite_sync.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "response.h"

/* What a body callback says: go on, stop, or pause (the piece comes again). */
typedef enum PsHttpBody
{
	PS_HTTP_BODY_OK,
	PS_HTTP_BODY_STOP,
	PS_HTTP_BODY_PAUSE
} PsHttpBody;

/* Called with each piece of a 2xx body. */
typedef PsHttpBody (*PsHttpBodyCallback) (void *arg, const char *data, size_t len,
										  const PsResponse *resp);

typedef struct PsHttpPool PsHttpPool;
typedef struct PsHttpXfer PsHttpXfer;

extern PsHttpPool *ps_http_pool_create(void);
extern void ps_http_pool_destroy(PsHttpPool *pool);

extern PsHttpXfer *ps_http_xfer_create(PsHttpPool *pool, void *owner);
extern void *ps_http_xfer_owner(PsHttpXfer *x);
extern bool ps_http_xfer_busy(PsHttpXfer *x);

/*
 * Start a GET; resp is filled as it goes.  The URL's host must be allowed
 * (pglite_sync.allowed_hosts); redirects are followed to the same origin
 * only, or to an allowed host without the custom headers.
 */
extern void ps_http_start(PsHttpXfer *x, const char *url, List *header_names,
						  List *header_values, bool live, bool sse, PsHttpBodyCallback body_cb,
						  void *body_arg, PsResponse *resp);

/* The next ps_http_start of x is a POST of this JSON (kept by the transfer). */
extern void ps_http_set_body(PsHttpXfer *x, const char *body);

/* A POST of JSON in the calling backend, waited for whole (request_snapshot). */
extern void ps_http_post(const char *url, List *header_names, List *header_values,
						 const char *body, PsResponse *resp, StringInfo out);

/* Go on with a transfer its body callback paused (the callback may run at once). */
extern void ps_http_resume(PsHttpXfer *x);

/* Abandon a transfer: its response says PS_XFER_INTERRUPTED. */
extern void ps_http_abort(PsHttpXfer *x);

/*
 * Wait up to timeout_ms (-1: no limit) for transfers to complete, the
 * latch to be set, or a body callback to pause its transfer.  Completed
 * transfers are returned in done[] (their responses are final); *latch_set
 * says whether the latch woke us.
 */
extern int	ps_http_wait(PsHttpPool *pool, long timeout_ms, uint32 wait_event,
						 PsHttpXfer **done, int max, bool *latch_set);

#endif
