/*
 * strbuf.c
 *	  Growable byte buffer (pure C).
 */
#include "strbuf.h"

#include <stdio.h>
#include <string.h>

#include "ps_alloc.h"

void
ps_strbuf_init(ps_strbuf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
ps_strbuf_reset(ps_strbuf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
ps_strbuf_free(ps_strbuf *b)
{
	ps_free(b->data);
	ps_strbuf_init(b);
}

void
ps_strbuf_reserve(ps_strbuf *b, size_t extra)
{
	size_t		need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	if (b->cap == 0)
		b->cap = 64;
	while (b->cap < need)
		b->cap *= 2;
	b->data = ps_realloc(b->data, b->cap);
}

void
ps_strbuf_append(ps_strbuf *b, const char *data, size_t len)
{
	ps_strbuf_reserve(b, len);
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
ps_strbuf_puts(ps_strbuf *b, const char *s)
{
	ps_strbuf_append(b, s, strlen(s));
}

void
ps_strbuf_putc(ps_strbuf *b, char c)
{
	ps_strbuf_append(b, &c, 1);
}

void
ps_strbuf_printf(ps_strbuf *b, const char *fmt,...)
{
	for (;;)
	{
		va_list		ap;
		size_t		avail;
		int			n;

		ps_strbuf_reserve(b, 32);
		avail = b->cap - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->data + b->len, avail, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t) n < avail)
		{
			b->len += n;
			return;
		}
		ps_strbuf_reserve(b, n);
	}
}
