/*
 * bodysplit.c
 *	  Incremental splitter of a JSON array body into messages (pure C).
 *
 * It only tracks strings and nesting to find where each element ends; the
 * element itself is validated by the message parser.
 */
#include "bodysplit.h"

#include "scan.h"

#include <stdio.h>
#include <string.h>

enum
{
	S_START,					/* nothing but whitespace seen */
	S_FIRST,					/* after '[': element or ']' */
	S_NEXT,						/* after ',': element */
	S_IN,						/* inside an element */
	S_AFTER,					/* after an element: ',' or ']' */
	S_DONE,						/* after the closing ']' */
	S_ERROR
};

static inline bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void
ps_bodysplit_init(ps_bodysplit *s, size_t max_message)
{
	s->state = S_START;
	s->depth = 0;
	s->in_string = false;
	s->escape = false;
	s->max_message = max_message;
	ps_strbuf_init(&s->partial);
	s->nmessages = 0;
	s->error[0] = '\0';
}

void
ps_bodysplit_free(ps_bodysplit *s)
{
	ps_strbuf_free(&s->partial);
}

static int
fail(ps_bodysplit *s, const char *what, char c)
{
	s->state = S_ERROR;
	if (c)
		snprintf(s->error, sizeof(s->error), "%s (found '%c' after %ld messages)",
				 what, c, s->nmessages);
	else
		snprintf(s->error, sizeof(s->error), "%s (after %ld messages)",
				 what, s->nmessages);
	return -1;
}

/*
 * A plain message callback seen as a prefix callback that never measures:
 * the splitter finds every message's end itself.
 */
typedef struct PlainCb
{
	ps_message_cb cb;
	void	   *arg;
} PlainCb;

static int
plain_prefix(void *arg, const char *data, size_t len, bool exact, size_t *used)
{
	PlainCb    *plain = arg;

	(void) used;				/* a plain callback never measures */
	if (!exact)
		return PS_SPLIT_UNSURE;
	return plain->cb(plain->arg, data, len);
}

int
ps_bodysplit_feed(ps_bodysplit *s, const char *data, size_t len,
				  ps_message_cb cb, void *arg)
{
	PlainCb		plain = {cb, arg};

	return ps_bodysplit_feed_parsing(s, data, len, plain_prefix, &plain);
}

static int
exact_message(ps_prefix_cb pcb, void *arg, const char *m, size_t n)
{
	size_t		used = n;

	return pcb(arg, m, n, true, &used);
}

int
ps_bodysplit_feed_parsing(ps_bodysplit *s, const char *data, size_t len,
						  ps_prefix_cb pcb, void *arg)
{
	size_t		i = 0;
	size_t		start = 0;		/* start of the current element in data */

	if (s->state == S_ERROR)
		return -1;

	while (i < len)
	{
		char		c = data[i];

		switch (s->state)
		{
			case S_START:
				if (is_ws(c))
					i++;
				else if (c == '[')
				{
					s->state = S_FIRST;
					i++;
				}
				else
					return fail(s, "response body is not a JSON array", c);
				break;

			case S_FIRST:
			case S_NEXT:
				if (is_ws(c))
					i++;
				else if (c == ']' && s->state == S_FIRST)
				{
					s->state = S_DONE;
					i++;
				}
				else if (c == '{')
				{
					/* let the parser find the end in one pass */
					size_t		used = 0;
					size_t		avail = len - i;
					int			rc;

					/* a longer message is the scanner's to refuse */
					if (s->max_message && avail > s->max_message)
						avail = s->max_message;
					rc = pcb(arg, data + i, avail, false, &used);
					if (rc == 0)
					{
						if (used == 0 || used > avail)
							return fail(s, "message parser overran its input", 0);
						i += used;
						s->nmessages++;
						s->state = S_AFTER;
						continue;
					}
					if (rc != PS_SPLIT_UNSURE)
					{
						/* the callback took the message, then stopped */
						s->nmessages++;
						s->state = S_AFTER;
						return rc;
					}
					/* unsure: scan to the message's end, then parse it exactly */
					s->state = S_IN;
					s->depth = 1;
					s->in_string = false;
					s->escape = false;
					start = i;
					i++;
				}
				else
					return fail(s, "expected a message object in the response array", c);
				break;

			case S_IN:
				/* scan quickly to the end of the element or of this piece */
				while (i < len)
				{
					if (s->in_string)
					{
						if (s->escape)
						{
							s->escape = false;
							i++;
							continue;
						}
						/* most bytes are string contents: skip them in words */
						i = ps_scan_quote_or_backslash(data + i, data + len) - data;
						if (i >= len)
							break;
						if (data[i] == '\\')
							s->escape = true;
						else
							s->in_string = false;
						i++;
						continue;
					}
					c = data[i];
					if (c == '"')
						s->in_string = true;
					else if (c == '{' || c == '[')
						s->depth++;
					else if (c == '}' || c == ']')
					{
						if (--s->depth == 0)
							break;
					}
					i++;
				}
				if (i == len)
					break;		/* element continues in the next piece */

				/* data[i] closes the element */
				i++;
				{
					int			rc;
					size_t		total = s->partial.len + (i - start);

					if (s->max_message && total > s->max_message)
						return fail(s, "message exceeds the maximum message size", 0);
					if (s->partial.len > 0)
					{
						ps_strbuf_append(&s->partial, data + start, i - start);
						rc = exact_message(pcb, arg, s->partial.data, s->partial.len);
						ps_strbuf_reset(&s->partial);
					}
					else
						rc = exact_message(pcb, arg, data + start, i - start);
					s->nmessages++;
					s->state = S_AFTER;
					if (rc != 0)
						return rc;
				}
				break;

			case S_AFTER:
				if (is_ws(c))
					i++;
				else if (c == ',')
				{
					s->state = S_NEXT;
					i++;
				}
				else if (c == ']')
				{
					s->state = S_DONE;
					i++;
				}
				else
					return fail(s, "expected ',' or ']' after a message", c);
				break;

			case S_DONE:
				if (is_ws(c))
					i++;
				else
					return fail(s, "unexpected data after the end of the response array", c);
				break;

			default:
				return -1;
		}
	}

	/* keep the unfinished part of an element for the next piece */
	if (s->state == S_IN)
	{
		size_t		total = s->partial.len + (len - start);

		if (s->max_message && total > s->max_message)
			return fail(s, "message exceeds the maximum message size", 0);
		ps_strbuf_append(&s->partial, data + start, len - start);
	}
	return 0;
}

int
ps_bodysplit_finish(ps_bodysplit *s)
{
	if (s->state == S_DONE || s->state == S_START)
		return 0;
	if (s->state != S_ERROR)
		fail(s, "response body ended before the end of the JSON array", 0);
	return -1;
}
