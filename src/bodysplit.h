/*
 * bodysplit.h
 *	  Incremental splitter of a shape response body (a JSON array of message
 *	  objects) into one buffer per message.
 *
 * The body arrives in arbitrary pieces from libcurl; only the message being
 * read is buffered, so memory stays bounded by the largest message rather
 * than by the response (a snapshot chunk is ~10 MB, a shape can be GBs).
 */
#ifndef PS_BODYSPLIT_H
#define PS_BODYSPLIT_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

/* Called once per complete message; returns 0 to go on, nonzero to stop. */
typedef int (*ps_message_cb) (void *arg, const char *json, size_t len);

typedef struct ps_bodysplit
{
	int			state;
	int			depth;			/* nesting depth inside the current message */
	bool		in_string;
	bool		escape;
	size_t		max_message;	/* 0 = unlimited */
	ps_strbuf	partial;		/* bytes of a message split across pieces */
	long		nmessages;
	char		error[160];
} ps_bodysplit;

extern void ps_bodysplit_init(ps_bodysplit *s, size_t max_message);
extern void ps_bodysplit_free(ps_bodysplit *s);

/*
 * A faster variant for callers that parse each message anyway: at the
 * start of a message the callback gets everything up to the end of the
 * piece (exact = false) and reports the message's length in *used, or
 * returns PS_SPLIT_UNSURE when it cannot tell (the message continues in the
 * next piece, or looks malformed).  The splitter then finds the message's
 * end itself and calls again with exactly that message (exact = true),
 * where any failure is final.  Messages are thus scanned once, not twice.
 */
#define PS_SPLIT_UNSURE (-100)
typedef int (*ps_prefix_cb) (void *arg, const char *data, size_t len,
							 bool exact, size_t *used);

extern int	ps_bodysplit_feed_parsing(ps_bodysplit *s, const char *data, size_t len,
									  ps_prefix_cb cb, void *arg);

/*
 * Feed the next piece of the body.  Returns 0 on success, -1 on a syntax
 * error (s->error says why), or the nonzero value a callback returned.
 */
extern int	ps_bodysplit_feed(ps_bodysplit *s, const char *data, size_t len,
							  ps_message_cb cb, void *arg);

/*
 * The body ended: returns 0 if it was a complete array (an empty body counts
 * as "[]", as in the official client), -1 if it was truncated.
 */
extern int	ps_bodysplit_finish(ps_bodysplit *s);

#endif
