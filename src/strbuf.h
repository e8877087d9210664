/*
 * strbuf.h
 *	  Growable byte buffer for the pure C parts, which cannot use StringInfo.
 */
#ifndef PS_STRBUF_H
#define PS_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct ps_strbuf
{
	char	   *data;			/* always NUL-terminated when non-NULL */
	size_t		len;
	size_t		cap;
} ps_strbuf;

extern void ps_strbuf_init(ps_strbuf *b);
extern void ps_strbuf_reset(ps_strbuf *b);
extern void ps_strbuf_free(ps_strbuf *b);
extern void ps_strbuf_reserve(ps_strbuf *b, size_t extra);
extern void ps_strbuf_append(ps_strbuf *b, const char *data, size_t len);
extern void ps_strbuf_puts(ps_strbuf *b, const char *s);
extern void ps_strbuf_putc(ps_strbuf *b, char c);
extern void ps_strbuf_printf(ps_strbuf *b, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

#endif
