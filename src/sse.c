/*
 * sse.c
 *	  text/event-stream parsing (see sse.h), following the HTML living
 *	  standard's rules: lines end in LF, CR or CRLF; a line starting with ':'
 *	  is a comment; "data:" appends to the event's data (one leading space
 *	  dropped); an empty line dispatches the event.
 */
#include "sse.h"

#include <stdio.h>
#include <string.h>

void
ps_sse_init(ps_sse *s, size_t max_event)
{
	memset(s, 0, sizeof(*s));
	ps_strbuf_init(&s->line);
	ps_strbuf_init(&s->data);
	s->max_event = max_event;
}

void
ps_sse_free(ps_sse *s)
{
	ps_strbuf_free(&s->line);
	ps_strbuf_free(&s->data);
}

bool
ps_sse_partial(const ps_sse *s)
{
	return s->has_data || s->line.len > 0;
}

/* One complete line; returns the callback's answer for a dispatch. */
static int
line_done(ps_sse *s, ps_sse_cb cb, void *arg)
{
	const char *l = s->line.data ? s->line.data : "";
	size_t		n = s->line.len;
	int			rc = 0;

	if (n == 0)
	{
		/* dispatch: the data without its last LF */
		if (s->has_data)
		{
			size_t		dl = s->data.len;

			if (dl > 0 && s->data.data[dl - 1] == '\n')
				dl--;
			s->nevents++;
			rc = cb(arg, s->data.data ? s->data.data : "", dl);
		}
		ps_strbuf_reset(&s->data);
		s->has_data = false;
	}
	else if (l[0] == ':')
		s->ncomments++;
	else if (n >= 4 && memcmp(l, "data", 4) == 0 && (n == 4 || l[4] == ':'))
	{
		const char *v = n > 4 ? l + 5 : l + n;
		size_t		vl = n > 4 ? n - 5 : 0;

		if (vl > 0 && v[0] == ' ')
		{
			v++;
			vl--;
		}
		ps_strbuf_append(&s->data, v, vl);
		ps_strbuf_putc(&s->data, '\n');
		s->has_data = true;
	}
	/* event:, id:, retry: and unknown fields are not used here */
	ps_strbuf_reset(&s->line);
	return rc;
}

int
ps_sse_feed(ps_sse *s, const char *p, size_t len, ps_sse_cb cb, void *arg, size_t *consumed)
{
	size_t		i = 0;

	while (i < len)
	{
		const char *nl;
		size_t		run;
		int			rc;

		if (s->after_cr)
		{
			s->after_cr = false;
			if (p[i] == '\n')
			{
				i++;
				continue;
			}
		}
		/* the rest of the line, up to CR or LF */
		nl = NULL;
		for (size_t k = i; k < len; k++)
			if (p[k] == '\n' || p[k] == '\r')
			{
				nl = p + k;
				break;
			}
		run = (nl ? (size_t) (nl - p) : len) - i;
		if (s->max_event && s->line.len + s->data.len + run > s->max_event)
		{
			snprintf(s->error, sizeof(s->error), "an event is larger than %zu bytes", s->max_event);
			if (consumed)
				*consumed = i;
			return -1;
		}
		ps_strbuf_append(&s->line, p + i, run);
		i += run;
		if (nl == NULL)
			break;
		s->after_cr = (*nl == '\r');
		i++;
		rc = line_done(s, cb, arg);
		if (rc != 0)
		{
			if (consumed)
				*consumed = i;
			return rc;
		}
	}
	if (consumed)
		*consumed = i;
	return 0;
}
