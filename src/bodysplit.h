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
