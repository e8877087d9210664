/*
 * sse.h
 *	  Incremental parser of a text/event-stream body (pure C), as Electric's
 *	  live_sse mode sends it: one `data: <json>` event per message, comments
 *	  (`: keep-alive`) in between.  Only the data of each event is kept;
 *	  fields Electric does not send (event, id, retry) are ignored.
 */
#ifndef PS_SSE_H
#define PS_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

typedef struct ps_sse
{
	ps_strbuf	line;			/* the line being read */
	ps_strbuf	data;			/* data lines of the event being read */
	bool		has_data;
	bool		after_cr;		/* a CR ended the last line: skip a following LF */
	size_t		max_event;		/* 0 = unlimited */
	long		nevents;
	long		ncomments;
	char		error[120];
} ps_sse;

/* Called with the data of each complete event; nonzero stops the feed. */
typedef int (*ps_sse_cb) (void *arg, const char *data, size_t len);

extern void ps_sse_init(ps_sse *s, size_t max_event);
extern void ps_sse_free(ps_sse *s);

/*
 * Feed the next piece of the stream.  Returns 0 when all of it was read,
 * -1 on an event over the size limit (s->error says why), or the nonzero
 * value the callback returned; *consumed says how much of the piece was
 * read then (the rest is for a later feed).
 */
extern int	ps_sse_feed(ps_sse *s, const char *p, size_t len, ps_sse_cb cb, void *arg,
						size_t *consumed);

/* Is an event half read (the stream ended inside it)? */
extern bool ps_sse_partial(const ps_sse *s);

#endif
