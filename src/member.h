/*
 * member.h
 *	  One shape's stream within a subscription: where it stands in the
 *	  shape's log, the request that comes next, and reading a response into
 *	  its spool.  It knows nothing of transports or transactions: a response
 *	  is fed in and an outcome comes out, which the run (run.c) acts on.
 */
#ifndef PS_MEMBER_H
#define PS_MEMBER_H

#include "pglite_sync.h"

#include "align.h"
#include "bodysplit.h"
#include "catalog.h"
#include "message.h"
#include "response.h"
#include "shapeopts.h"
#include "spool.h"
#include "sse.h"

typedef enum PsOutcomeKind
{
	PS_OUT_PAGE,				/* a good response; the batch goes on */
	PS_OUT_BATCH,				/* a good response ending with up-to-date */
	PS_OUT_REFETCH,				/* 409 / must-refetch: restarted from -1 */
	PS_OUT_RETRY,				/* backoff: retrying alone may fix it */
	PS_OUT_FATAL,				/* error: needs a fix elsewhere, retried at the cap */
	PS_OUT_INTERRUPTED			/* the transfer was abandoned on purpose */
} PsOutcomeKind;

typedef struct PsOutcome
{
	PsOutcomeKind kind;
	int64		retry_after_ms; /* -1: none */
	const char *message;		/* RETRY, FATAL: what everyone may see */
	const char *detail;			/* the whole story, for the owner only (or NULL) */
	long		status;			/* HTTP status, 0 when none */
} PsOutcome;

struct PsRun;

typedef struct PsMember
{
	struct PsRun *run;
	int			index;
	PsShapeDef *def;
	ps_shape	shape;
	char	   *base_url;		/* shape URL + the shape's query parameters */
	char	   *host;
	char	  **header_names;	/* static headers of the shape */
	char	  **header_values;
	int			nheaders;

	/* position in memory; the catalog has the committed one */
	char		handle[PS_HANDLE_MAX];
	char		offset[PS_OFFSET_MAX];
	char		cursor[PS_CURSOR_MAX];
	char		committed_handle[PS_HANDLE_MAX];
	char		committed_offset[PS_OFFSET_MAX];
	char		saved_offset[PS_OFFSET_MAX];	/* stored by the commit under way */
	bool		live;			/* caught up once: long-poll next */
	bool		position_dirty; /* the position moved since it was stored */
	bool		replace;		/* the next commit replaces this shape's rows */
	bool		from_start;		/* its spooled batch began at -1 (bulk load ok) */
	char		buster[32];
	int			refetches;		/* 409s without an up-to-date in between */
	int			failures;		/* consecutive failed requests */
	TimestampTz retry_at;		/* no request before this */

	/* alignment (see align.h) */
	ps_align_member align;
	uint64		sync_ticket;	/* wait_for_sync ticket of its latest up-to-date */

	PsSpool    *spool;

	/* the request in flight */
	bool		in_flight;
	bool		catch_up;		/* ask non-live next: the group waits for this shape */
	bool		auth_retried;	/* a 401 got one immediate retry with fresh headers */
	bool		request_live;
	uint64		request_ticket;
	TimestampTz request_started;
	/*
	 * When the request that brought its latest up-to-date started (with SSE,
	 * when that up-to-date arrived): writes answered without a txid before
	 * it are synced by a commit (upload.c).
	 */
	TimestampTz up_to_date_since;
	bool		request_voided; /* host-driven: a lost spool voided the request
								 * handed out; drop answers until the next one */

	/* the response being read */
	ps_bodysplit split;
	ps_message	msg;
	bool		resp_checked;
	bool		resp_up_to_date;
	bool		resp_must_refetch;
	uint64		resp_global_lsn;
	bool		resp_has_global_lsn;
	int64		resp_changes;	/* change messages parsed so far */
	size_t		resp_bytes;		/* body bytes received so far */
	uint64		resp_max_lsn;	/* alignment as it stands after this response */
	uint64		resp_open_lsn;
	PsOutcomeKind resp_fail_kind;
	char		resp_error[600];
	ErrorData  *cb_error;		/* an ERROR raised while reading the body */

	/* the open batch's part from this shape (batch_rows, batch_bytes) */
	int64		batch_rows;
	int64		batch_bytes;

	/* changes already spooled, to drop what a reconnect sends again */
	uint64		last_lsn;
	uint32		last_op;
	uint64		resp_last_lsn;	/* as it stands after this response */
	uint32		resp_last_op;

	/* live_sse: one event stream carries batch after batch */
	bool		request_sse;	/* the next request (or the one in flight) is one */
	ps_sse		sse;
	size_t		sse_skip;		/* bytes libcurl delivers again after a pause */
	bool		sse_batch;		/* an up-to-date ended a batch: the stream is paused */
	size_t		sse_counted;	/* bytes of the stream counted into batches already */
	int			sse_short;		/* streams in a row that lasted under a second */
	bool		sse_off;		/* fell back to long-polling */
} PsMember;

/* What the body of a response says to its transfer. */
typedef enum PsBodyVerdict
{
	PS_BODY_OK,					/* go on */
	PS_BODY_REJECT,				/* stop: the outcome says why */
	PS_BODY_PAUSE				/* a batch is complete: pause, deliver again later */
} PsBodyVerdict;

/* Set up from the catalog's definition (parsing the stored shape). */
extern void ps_member_init(PsMember *m, struct PsRun *run, int index, PsShapeDef *def,
						   MemoryContext cxt);
/* Take over where and how to ask from a reread definition (alter_subscription). */
extern void ps_member_reload(PsMember *m, PsShapeDef *def, MemoryContext cxt);

/* The next request: its URL, and whether it is a live one. */
extern char *ps_member_request_url(PsMember *m, bool live);

/* Reading a response: begin, the body in pieces, then the outcome. */
extern void ps_member_response_begin(PsMember *m, bool live, uint64 ticket);
extern PsBodyVerdict ps_member_response_body(PsMember *m, const char *data, size_t len,
											 const PsResponse *resp);
extern PsOutcome ps_member_response_end(PsMember *m, PsResponse *resp);

/* An event stream paused at an up-to-date: that batch's outcome (BATCH). */
extern PsOutcome ps_member_sse_batch(PsMember *m, PsResponse *resp);

/* 409 or must-refetch: drop what was spooled and restart at -1. */
extern void ps_member_refetch(PsMember *m, const char *new_handle);

/* A snapshot loaded page by page was rolled back: ask for it again from -1. */
extern void ps_member_restart(PsMember *m);
extern void ps_member_batch_discarded(PsMember *m);

/* A commit up to target: the position to store (more: changes past the
 * target stay spooled), then the bookkeeping once it committed. */
extern void ps_member_commit_position(PsMember *m, uint64 target, bool more,
									  const char **handle, const char **offset,
									  char *offset_buf, size_t buflen);
extern void ps_member_committed(PsMember *m);

#endif
