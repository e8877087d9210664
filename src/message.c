/*
 * message.c
 *	  Strict parser for one Electric shape-log message (pure C).
 */
#include "message.h"

/* an arena this large is given back once messages are small again */
#define PS_MESSAGE_KEEP_BYTES (1024 * 1024)

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_alloc.h"
#include "scan.h"

#define MAX_DEPTH 64

typedef struct cursor
{
	const char *start;
	const char *p;
	const char *end;
	ps_message *m;
	/* where the header arrays start in the message's storage */
	int			tags_first;
	int			removed_first;
	int			active_first;
	int			patterns_first;
	int			txids_first;
} cursor;

static int	skip_value(cursor *c, int depth, const char **start, size_t *len);

static int
err(cursor *c, const char *what)
{
	snprintf(c->m->error, sizeof(c->m->error), "%s at byte %ld of message",
			 what, (long) (c->p - c->start));
	return -1;
}

/* valid JSON that no text value can hold: retrying will not help */
static int
unstorable(cursor *c, const char *what)
{
	c->m->error_unstorable = true;
	return err(c, what);
}

static inline void
skip_ws(cursor *c)
{
	while (c->p < c->end &&
		   (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static inline bool
expect(cursor *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == ch)
	{
		c->p++;
		return true;
	}
	return false;
}

static int
read_hex4(cursor *c, unsigned *out)
{
	unsigned	v = 0;

	if (c->end - c->p < 4)
		return err(c, "truncated \\u escape");
	for (int i = 0; i < 4; i++)
	{
		int			h = ps_hex_digit(c->p[i]);

		if (h < 0)
			return err(c, "invalid \\u escape");
		v = (v << 4) | (unsigned) h;
	}
	c->p += 4;
	*out = v;
	return 0;
}

/* Length of a valid UTF-8 sequence starting at s, or 0 if invalid. */
static size_t
utf8_len(const unsigned char *s, const unsigned char *end)
{
	unsigned char b = s[0];
	size_t		n;
	uint32_t	cp;

	if (b < 0x80)
		return 1;
	if (b >= 0xC2 && b <= 0xDF)
	{
		n = 2;
		cp = b & 0x1F;
	}
	else if (b >= 0xE0 && b <= 0xEF)
	{
		n = 3;
		cp = b & 0x0F;
	}
	else if (b >= 0xF0 && b <= 0xF4)
	{
		n = 4;
		cp = b & 0x07;
	}
	else
		return 0;
	if ((size_t) (end - s) < n)
		return 0;
	for (size_t i = 1; i < n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

static char *
put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80)
		*o++ = (char) cp;
	else if (cp < 0x800)
	{
		*o++ = (char) (0xC0 | (cp >> 6));
		*o++ = (char) (0x80 | (cp & 0x3F));
	}
	else if (cp < 0x10000)
	{
		*o++ = (char) (0xE0 | (cp >> 12));
		*o++ = (char) (0x80 | ((cp >> 6) & 0x3F));
		*o++ = (char) (0x80 | (cp & 0x3F));
	}
	else
	{
		*o++ = (char) (0xF0 | (cp >> 18));
		*o++ = (char) (0x80 | ((cp >> 12) & 0x3F));
		*o++ = (char) (0x80 | ((cp >> 6) & 0x3F));
		*o++ = (char) (0x80 | (cp & 0x3F));
	}
	return o;
}

/*
 * Parse a string at c->p (which is at the opening quote).  Without escapes
 * the result points into the input; otherwise it is decoded into the arena,
 * which was sized to the whole message and so never needs to grow.
 */
/*
 * The length of the character at p inside a string, where the scanner
 * stopped at a byte that is neither a quote nor a backslash: 0 (with the
 * error set) for a control character or invalid UTF-8.
 */
static size_t
plain_char_len(cursor *c, const char *p)
{
	size_t		n;

	if ((unsigned char) *p < 0x20)
	{
		c->p = p;
		err(c, "control character in string");
		return 0;
	}
	n = utf8_len((const unsigned char *) p, (const unsigned char *) c->end);
	if (n == 0)
	{
		c->p = p;
		err(c, "invalid UTF-8 in string");
	}
	return n;
}

static int
parse_string(cursor *c, const char **out, size_t *outlen)
{
	const char *s;
	const char *p;
	char	   *o;
	char	   *ostart;
	size_t		n;

	if (c->p >= c->end || *c->p != '"')
		return err(c, "expected a string");
	s = ++c->p;

	/* fast path: no escapes; validate non-ASCII bytes as they come */
	p = s;
	for (;;)
	{
		unsigned char b;

		p = ps_scan_string_special(p, c->end);
		if (p >= c->end)
		{
			c->p = p;
			return err(c, "unterminated string");
		}
		b = (unsigned char) *p;
		if (b == '"')
		{
			*out = s;
			*outlen = p - s;
			c->p = p + 1;
			return 0;
		}
		if (b == '\\')
			break;
		if ((n = plain_char_len(c, p)) == 0)
			return -1;
		p += n;
	}

	/* slow path: decode into the arena, copying runs between escapes */
	ostart = o = c->m->arena + c->m->arena_len;
	memcpy(o, s, p - s);
	o += p - s;
	while (p < c->end)
	{
		const char *run = p;
		unsigned char b;

		p = ps_scan_string_special(p, c->end);
		memcpy(o, run, p - run);
		o += p - run;
		if (p >= c->end)
			break;
		b = (unsigned char) *p;
		if (b == '"')
		{
			*out = ostart;
			*outlen = o - ostart;
			c->m->arena_len += (o - ostart);
			c->p = p + 1;
			return 0;
		}
		if (b == '\\')
		{
			char		e;

			if (++p >= c->end)
				break;
			e = *p++;
			switch (e)
			{
				case '"':
				case '\\':
				case '/':
					*o++ = e;
					break;
				case 'b':
					*o++ = '\b';
					break;
				case 'f':
					*o++ = '\f';
					break;
				case 'n':
					*o++ = '\n';
					break;
				case 'r':
					*o++ = '\r';
					break;
				case 't':
					*o++ = '\t';
					break;
				case 'u':
					{
						unsigned	u;

						c->p = p;
						if (read_hex4(c, &u) < 0)
							return -1;
						p = c->p;
						if (u >= 0xD800 && u <= 0xDBFF)
						{
							unsigned	lo;

							if (c->end - p < 2 || p[0] != '\\' || p[1] != 'u')
								return unstorable(c, "unpaired UTF-16 surrogate in \\u escape");
							c->p = p + 2;
							if (read_hex4(c, &lo) < 0)
								return -1;
							p = c->p;
							if (lo < 0xDC00 || lo > 0xDFFF)
								return unstorable(c, "unpaired UTF-16 surrogate in \\u escape");
							u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
						}
						else if (u >= 0xDC00 && u <= 0xDFFF)
							return unstorable(c, "unpaired UTF-16 surrogate in \\u escape");
						if (u == 0)
							return unstorable(c, "\\u0000 cannot be stored in a text value");
						o = put_utf8(o, u);
						break;
					}
				default:
					c->p = p - 1;
					return err(c, "invalid escape in string");
			}
			continue;
		}
		if ((n = plain_char_len(c, p)) == 0)
			return -1;
		memcpy(o, p, n);
		o += n;
		p += n;
	}
	c->p = p;
	return err(c, "unterminated string");
}

static int
skip_number(cursor *c)
{
	const char *p = c->p;

	if (p < c->end && *p == '-')
		p++;
	if (p >= c->end)
		return err(c, "invalid number");
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < c->end && *p >= '0' && *p <= '9')
			p++;
	else
		return err(c, "invalid number");
	if (p < c->end && *p == '.')
	{
		p++;
		if (p >= c->end || *p < '0' || *p > '9')
			return err(c, "invalid number");
		while (p < c->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < c->end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < c->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= c->end || *p < '0' || *p > '9')
			return err(c, "invalid number");
		while (p < c->end && *p >= '0' && *p <= '9')
			p++;
	}
	c->p = p;
	return 0;
}

static int
skip_literal(cursor *c, const char *lit)
{
	size_t		n = strlen(lit);

	if ((size_t) (c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
		return err(c, "invalid JSON value");
	c->p += n;
	return 0;
}

/* Validate and skip any JSON value, returning its raw text. */
static int
skip_value(cursor *c, int depth, const char **start, size_t *len)
{
	const char *s;

	skip_ws(c);
	if (c->p >= c->end)
		return err(c, "unexpected end of message");
	if (depth > MAX_DEPTH)
		return err(c, "message nested too deeply");
	s = c->p;
	switch (*c->p)
	{
		case '"':
			{
				const char *d;
				size_t		dl;
				size_t		save = c->m->arena_len;

				if (parse_string(c, &d, &dl) < 0)
					return -1;
				c->m->arena_len = save;		/* decoded copy not needed */
				break;
			}
		case '{':
			c->p++;
			if (expect(c, '}'))
				break;
			for (;;)
			{
				const char *d;
				size_t		dl;
				size_t		save = c->m->arena_len;

				skip_ws(c);
				if (parse_string(c, &d, &dl) < 0)
					return -1;
				c->m->arena_len = save;
				if (!expect(c, ':'))
					return err(c, "expected ':' in object");
				if (skip_value(c, depth + 1, &d, &dl) < 0)
					return -1;
				if (expect(c, ','))
					continue;
				if (expect(c, '}'))
					break;
				return err(c, "expected ',' or '}' in object");
			}
			break;
		case '[':
			c->p++;
			if (expect(c, ']'))
				break;
			for (;;)
			{
				const char *d;
				size_t		dl;

				if (skip_value(c, depth + 1, &d, &dl) < 0)
					return -1;
				if (expect(c, ','))
					continue;
				if (expect(c, ']'))
					break;
				return err(c, "expected ',' or ']' in array");
			}
			break;
		case 't':
			if (skip_literal(c, "true") < 0)
				return -1;
			break;
		case 'f':
			if (skip_literal(c, "false") < 0)
				return -1;
			break;
		case 'n':
			if (skip_literal(c, "null") < 0)
				return -1;
			break;
		default:
			if (skip_number(c) < 0)
				return -1;
			break;
	}
	*start = s;
	*len = c->p - s;
	return 0;
}

static bool
key_is(const char *k, size_t kl, const char *lit)
{
	size_t		n = strlen(lit);

	return kl == n && memcmp(k, lit, n) == 0;
}

static int
add_field(ps_message *m)
{
	if (m->nfields == m->fields_cap)
	{
		m->fields_cap = m->fields_cap ? m->fields_cap * 2 : 32;
		m->fields = ps_realloc(m->fields, sizeof(ps_field) * m->fields_cap);
	}
	return m->nfields++;
}

/* Parse {"col": "text"|null|other, …} into m->fields; returns first index. */
static int
parse_row(cursor *c, int *first, int *count)
{
	ps_message *m = c->m;

	skip_ws(c);
	*first = m->nfields;
	*count = 0;
	if (!expect(c, '{'))
		return err(c, "expected an object for value");
	if (expect(c, '}'))
		return 0;
	for (;;)
	{
		const char *name;
		size_t		nlen;
		int			i;
		ps_field   *f;

		skip_ws(c);
		if (parse_string(c, &name, &nlen) < 0)
			return -1;
		if (!expect(c, ':'))
			return err(c, "expected ':' in object");
		skip_ws(c);
		i = add_field(m);
		f = &m->fields[i];
		f->name = name;
		f->name_len = nlen;
		f->isnull = false;
		f->is_string = false;
		if (c->p < c->end && *c->p == '"')
		{
			if (parse_string(c, &f->data, &f->len) < 0)
				return -1;
			f->is_string = true;
		}
		else if (c->p < c->end && *c->p == 'n')
		{
			if (skip_literal(c, "null") < 0)
				return -1;
			f->isnull = true;
			f->data = NULL;
			f->len = 0;
		}
		else if (skip_value(c, 1, &f->data, &f->len) < 0)
			return -1;
		(*count)++;
		if (expect(c, ','))
			continue;
		if (expect(c, '}'))
			return 0;
		return err(c, "expected ',' or '}' in object");
	}
}

/* Grow one of the message's reusable arrays by one element. */
#define GROW(arr, n, cap, type) \
	do { \
		if ((n) == (cap)) \
		{ \
			(cap) = (cap) ? (cap) * 2 : 16; \
			(arr) = ps_realloc((arr), sizeof(type) * (cap)); \
		} \
	} while (0)

/* ["s", …] into m->strs; returns the first index and the count. */
static int
parse_str_array(cursor *c, int *first, int *count)
{
	ps_message *m = c->m;

	*first = m->nstrs;
	*count = 0;
	if (!expect(c, '['))
		return err(c, "expected an array of strings");
	if (expect(c, ']'))
		return 0;
	for (;;)
	{
		const char *s;
		size_t		len;

		skip_ws(c);
		if (parse_string(c, &s, &len) < 0)
			return -1;
		GROW(m->strs, m->nstrs, m->strs_cap, ps_str);
		m->strs[m->nstrs].s = s;
		m->strs[m->nstrs].len = len;
		m->nstrs++;
		(*count)++;
		if (expect(c, ','))
			continue;
		if (expect(c, ']'))
			return 0;
		return err(c, "expected ',' or ']' in array");
	}
}

/* [true, false, …] into m->bools */
static int
parse_bool_array(cursor *c, int *first, int *count)
{
	ps_message *m = c->m;

	*first = m->nbools;
	*count = 0;
	if (!expect(c, '['))
		return err(c, "expected an array of booleans");
	if (expect(c, ']'))
		return 0;
	for (;;)
	{
		bool		v;

		skip_ws(c);
		if (c->p < c->end && *c->p == 't')
			v = true;
		else if (c->p < c->end && *c->p == 'f')
			v = false;
		else
			return err(c, "expected a boolean");
		if (skip_literal(c, v ? "true" : "false") < 0)
			return -1;
		GROW(m->bools, m->nbools, m->bools_cap, bool);
		m->bools[m->nbools++] = v;
		(*count)++;
		if (expect(c, ','))
			continue;
		if (expect(c, ']'))
			return 0;
		return err(c, "expected ',' or ']' in array");
	}
}

/* A non-negative integer, as a number or a string of digits. */
static int
parse_uint(cursor *c, unsigned long long *out)
{
	const char *s;
	size_t		len;
	unsigned long long v = 0;

	skip_ws(c);
	if (c->p < c->end && *c->p == '"')
	{
		if (parse_string(c, &s, &len) < 0)
			return -1;
	}
	else
	{
		s = c->p;
		if (skip_number(c) < 0)
			return -1;
		len = c->p - s;
	}
	if (len == 0 || len > 20)
		return err(c, "expected an integer");
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9' || v > (ULLONG_MAX - 9) / 10)
			return err(c, "expected an integer");
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* [123, "456", …] into m->ids */
static int
parse_id_array(cursor *c, int *first, int *count)
{
	ps_message *m = c->m;

	*first = m->nids;
	*count = 0;
	if (!expect(c, '['))
		return err(c, "expected an array of transaction ids");
	if (expect(c, ']'))
		return 0;
	for (;;)
	{
		unsigned long long v;

		if (parse_uint(c, &v) < 0)
			return -1;
		GROW(m->ids, m->nids, m->ids_cap, unsigned long long);
		m->ids[m->nids++] = v;
		(*count)++;
		if (expect(c, ','))
			continue;
		if (expect(c, ']'))
			return 0;
		return err(c, "expected ',' or ']' in array");
	}
}

/* [{"pos": N, "value": "h"}, …] into m->pats */
static int
parse_patterns(cursor *c, int *first, int *count)
{
	ps_message *m = c->m;

	*first = m->npats;
	*count = 0;
	if (!expect(c, '['))
		return err(c, "expected an array of patterns");
	if (expect(c, ']'))
		return 0;
	for (;;)
	{
		ps_pattern p;
		bool		has_pos = false,
					has_value = false;

		memset(&p, 0, sizeof(p));
		if (!expect(c, '{'))
			return err(c, "expected a pattern object");
		if (!expect(c, '}'))
		{
			for (;;)
			{
				const char *k;
				size_t		kl;

				skip_ws(c);
				if (parse_string(c, &k, &kl) < 0)
					return -1;
				if (!expect(c, ':'))
					return err(c, "expected ':' in object");
				skip_ws(c);
				if (key_is(k, kl, "pos"))
				{
					unsigned long long v;

					if (parse_uint(c, &v) < 0)
						return -1;
					if (v > 100000)
						return err(c, "pattern position out of range");
					p.pos = (long) v;
					has_pos = true;
				}
				else if (key_is(k, kl, "value"))
				{
					if (parse_string(c, &p.value.s, &p.value.len) < 0)
						return -1;
					has_value = true;
				}
				else
				{
					const char *v;
					size_t		vl;

					if (skip_value(c, 1, &v, &vl) < 0)
						return -1;
				}
				if (expect(c, ','))
					continue;
				if (expect(c, '}'))
					break;
				return err(c, "expected ',' or '}' in pattern");
			}
		}
		if (!has_pos || !has_value)
			return err(c, "a pattern needs pos and value");
		GROW(m->pats, m->npats, m->pats_cap, ps_pattern);
		m->pats[m->npats++] = p;
		(*count)++;
		if (expect(c, ','))
			continue;
		if (expect(c, ']'))
			return 0;
		return err(c, "expected ',' or ']' in patterns");
	}
}

/* A scalar header (string or number) as text. */
static int
parse_scalar_text(cursor *c, const char **out, size_t *len)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == '"')
		return parse_string(c, out, len);
	if (skip_value(c, 1, out, len) < 0)
		return -1;
	if (**out == '{' || **out == '[')
		return err(c, "expected a string or number");
	if (**out == 'n')
	{
		*out = NULL;
		*len = 0;
	}
	return 0;
}

static int
parse_headers(cursor *c)
{
	ps_message *m = c->m;

	if (!expect(c, '{'))
		return err(c, "expected an object for headers");
	if (expect(c, '}'))
		return 0;
	for (;;)
	{
		const char *k;
		size_t		kl;
		const char *v;
		size_t		vl;

		skip_ws(c);
		if (parse_string(c, &k, &kl) < 0)
			return -1;
		if (!expect(c, ':'))
			return err(c, "expected ':' in object");
		skip_ws(c);
		if (key_is(k, kl, "operation"))
		{
			if (parse_string(c, &v, &vl) < 0)
				return -1;
			m->operation = v;
			m->operation_len = vl;
			if (key_is(v, vl, "insert"))
				m->op = PS_OP_INSERT;
			else if (key_is(v, vl, "update"))
				m->op = PS_OP_UPDATE;
			else if (key_is(v, vl, "delete"))
				m->op = PS_OP_DELETE;
			else
				m->op = PS_OP_NONE;
		}
		else if (key_is(k, kl, "control"))
		{
			if (parse_string(c, &v, &vl) < 0)
				return -1;
			if (key_is(v, vl, "up-to-date"))
				m->control = PS_CTL_UP_TO_DATE;
			else if (key_is(v, vl, "must-refetch"))
				m->control = PS_CTL_MUST_REFETCH;
			else if (key_is(v, vl, "snapshot-end"))
				m->control = PS_CTL_SNAPSHOT_END;
			else
				m->control = PS_CTL_OTHER;
		}
		else if (key_is(k, kl, "event"))
		{
			if (c->p < c->end && *c->p == '"')
			{
				if (parse_string(c, &v, &vl) < 0)
					return -1;
				m->event = key_is(v, vl, "move-in") ? PS_EVENT_MOVE_IN :
					key_is(v, vl, "move-out") ? PS_EVENT_MOVE_OUT : PS_EVENT_OTHER;
			}
			else
			{
				if (skip_value(c, 1, &v, &vl) < 0)
					return -1;
				m->event = PS_EVENT_OTHER;
			}
			m->kind = PS_MSG_EVENT;
		}
		else if (key_is(k, kl, "tags") && c->p < c->end && *c->p == '[')
		{
			if (parse_str_array(c, &c->tags_first, &m->ntags) < 0)
				return -1;
			m->has_tags = true;
		}
		else if (key_is(k, kl, "removed_tags") && c->p < c->end && *c->p == '[')
		{
			if (parse_str_array(c, &c->removed_first, &m->nremoved_tags) < 0)
				return -1;
		}
		else if (key_is(k, kl, "active_conditions") && c->p < c->end && *c->p == '[')
		{
			if (parse_bool_array(c, &c->active_first, &m->nactive) < 0)
				return -1;
			m->has_active = true;
		}
		else if (key_is(k, kl, "patterns") && c->p < c->end && *c->p == '[')
		{
			if (parse_patterns(c, &c->patterns_first, &m->npatterns) < 0)
				return -1;
		}
		else if (key_is(k, kl, "txids") && c->p < c->end && *c->p == '[')
		{
			if (parse_id_array(c, &c->txids_first, &m->ntxids) < 0)
				return -1;
		}
		else if (key_is(k, kl, "lsn"))
		{
			if (parse_scalar_text(c, &m->lsn, &m->lsn_len) < 0)
				return -1;
		}
		else if (key_is(k, kl, "global_last_seen_lsn"))
		{
			if (parse_scalar_text(c, &m->global_lsn, &m->global_lsn_len) < 0)
				return -1;
		}
		else if (key_is(k, kl, "op_position") && c->p < c->end &&
				 (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')))
		{
			const char *s = c->p;
			bool		neg;
			long long	v = 0;

			if (skip_number(c) < 0)
				return -1;
			/* the integer part only, within the number just skipped */
			neg = (*s == '-');
			if (neg)
				s++;
			for (; s < c->p && *s >= '0' && *s <= '9'; s++)
				v = (v > (LLONG_MAX - 9) / 10) ? LLONG_MAX : v * 10 + (*s - '0');
			m->op_position = neg ? -v : v;
			m->has_op_position = true;
		}
		else if (key_is(k, kl, "last") && c->p < c->end &&
				 (*c->p == 't' || *c->p == 'f'))
		{
			m->last = (*c->p == 't');
			if (skip_literal(c, m->last ? "true" : "false") < 0)
				return -1;
		}
		else if (key_is(k, kl, "is_move_in") && c->p < c->end &&
				 (*c->p == 't' || *c->p == 'f'))
		{
			m->is_move_in = (*c->p == 't');
			if (skip_literal(c, m->is_move_in ? "true" : "false") < 0)
				return -1;
		}
		else if (skip_value(c, 1, &v, &vl) < 0)
			return -1;

		if (expect(c, ','))
			continue;
		if (expect(c, '}'))
			return 0;
		return err(c, "expected ',' or '}' in headers");
	}
}

/* A cursor over json; the arena can hold every string of it decoded. */
static void
begin(ps_message *m, cursor *c, const char *json, size_t len)
{
	m->arena_len = 0;
	m->error[0] = '\0';
	m->error_unstorable = false;
	/* grow for this input; shrink back after a huge one */
	if (m->arena_cap < len + 1 ||
		(m->arena_cap > PS_MESSAGE_KEEP_BYTES && (len + 1) * 4 < m->arena_cap))
	{
		ps_free(m->arena);
		m->arena_cap = len + 1 < 256 ? 256 : len + 1;
		m->arena = ps_malloc(m->arena_cap);
	}
	memset(c, 0, sizeof(*c));
	c->start = c->p = json;
	c->end = json + len;
	c->m = m;
}

/*
 * A subset snapshot answer, {"metadata": {...}, "data": [...]} in any key
 * order: the spans of the two values, without building a tree of it (the
 * data can be a whole shape).  Strings are decoded only to be checked, and
 * the arena's pages are touched only by strings with escapes.
 */
int
ps_subset_answer_split(ps_message *m, const char *json, size_t len,
					   ps_str *metadata, ps_str *data)
{
	cursor		c;

	begin(m, &c, json, len);
	metadata->s = data->s = NULL;
	metadata->len = data->len = 0;
	if (!expect(&c, '{'))
		return err(&c, "expected a JSON object");
	if (!expect(&c, '}'))
	{
		for (;;)
		{
			const char *k;
			const char *v;
			size_t		kl;
			size_t		vl;

			skip_ws(&c);
			if (parse_string(&c, &k, &kl) < 0)
				return -1;
			if (!expect(&c, ':'))
				return err(&c, "expected ':' in object");
			if (skip_value(&c, 1, &v, &vl) < 0)
				return -1;
			if (key_is(k, kl, "metadata"))
			{
				metadata->s = v;
				metadata->len = vl;
			}
			else if (key_is(k, kl, "data"))
			{
				data->s = v;
				data->len = vl;
			}
			if (expect(&c, ','))
				continue;
			if (expect(&c, '}'))
				break;
			return err(&c, "expected ',' or '}' in object");
		}
	}
	skip_ws(&c);
	if (c.p != c.end)
		return err(&c, "unexpected bytes after the object");
	if (metadata->s == NULL || metadata->s[0] != '{')
		return err(&c, "no \"metadata\" object");
	if (data->s == NULL || data->s[0] != '[')
		return err(&c, "no \"data\" array");
	return 0;
}

void
ps_message_init(ps_message *m)
{
	memset(m, 0, sizeof(*m));
}

void
ps_message_free(ps_message *m)
{
	ps_free(m->arena);
	ps_free(m->fields);
	ps_free(m->strs);
	ps_free(m->bools);
	ps_free(m->pats);
	ps_free(m->ids);
	memset(m, 0, sizeof(*m));
}

static int parse(ps_message *m, const char *json, size_t len, size_t *used);

int
ps_message_parse(ps_message *m, const char *json, size_t len)
{
	return parse(m, json, len, NULL);
}

int
ps_message_parse_prefix(ps_message *m, const char *data, size_t len, size_t *used)
{
	return parse(m, data, len, used);
}

static int
parse(ps_message *m, const char *json, size_t len, size_t *used)
{
	cursor		c;
	int			vfirst = -1,
				vcount = 0,
				ofirst = -1,
				ocount = 0;
	bool		saw_headers = false;

	/* reset, keeping storage */
	m->kind = PS_MSG_UNKNOWN;
	m->op = PS_OP_NONE;
	m->control = PS_CTL_NONE;
	m->key = NULL;
	m->key_len = 0;
	m->has_value = m->has_old_value = false;
	m->value = m->old_value = NULL;
	m->nvalue = m->nold_value = 0;
	m->operation = NULL;
	m->operation_len = 0;
	m->lsn = m->global_lsn = NULL;
	m->lsn_len = m->global_lsn_len = 0;
	m->has_op_position = false;
	m->op_position = 0;
	m->last = false;
	m->is_move_in = false;
	m->has_tags = m->has_active = false;
	m->tags = m->removed_tags = NULL;
	m->ntags = m->nremoved_tags = m->nactive = m->npatterns = m->ntxids = 0;
	m->active = NULL;
	m->patterns = NULL;
	m->txids = NULL;
	m->event = PS_EVENT_NONE;
	m->nstrs = m->nbools = m->npats = m->nids = 0;
	m->nfields = 0;
	begin(m, &c, json, len);

	if (!expect(&c, '{'))
		return err(&c, "message is not a JSON object");
	if (!expect(&c, '}'))
	{
		for (;;)
		{
			const char *k;
			size_t		kl;

			skip_ws(&c);
			if (parse_string(&c, &k, &kl) < 0)
				return -1;
			if (!expect(&c, ':'))
				return err(&c, "expected ':' in object");
			skip_ws(&c);
			if (key_is(k, kl, "key"))
			{
				if (c.p < c.end && *c.p == '"')
				{
					if (parse_string(&c, &m->key, &m->key_len) < 0)
						return -1;
				}
				else
					return err(&c, "message key is not a string");
			}
			else if (key_is(k, kl, "value") && !(c.p < c.end && *c.p == 'n'))
			{
				if (parse_row(&c, &vfirst, &vcount) < 0)
					return -1;
				m->has_value = true;
			}
			else if (key_is(k, kl, "old_value") && !(c.p < c.end && *c.p == 'n'))
			{
				if (parse_row(&c, &ofirst, &ocount) < 0)
					return -1;
				m->has_old_value = true;
			}
			else if (key_is(k, kl, "headers"))
			{
				if (parse_headers(&c) < 0)
					return -1;
				saw_headers = true;
			}
			else
			{
				const char *v;
				size_t		vl;

				if (skip_value(&c, 1, &v, &vl) < 0)
					return -1;
			}
			if (expect(&c, ','))
				continue;
			if (expect(&c, '}'))
				break;
			return err(&c, "expected ',' or '}' in message");
		}
	}
	if (used)
		*used = c.p - json;
	else
	{
		skip_ws(&c);
		if (c.p != c.end)
			return err(&c, "unexpected data after message");
	}

	/* arrays may have moved while growing: set pointers only now */
	m->tags = m->ntags ? m->strs + c.tags_first : NULL;
	m->removed_tags = m->nremoved_tags ? m->strs + c.removed_first : NULL;
	m->active = m->nactive ? m->bools + c.active_first : NULL;
	m->patterns = m->npatterns ? m->pats + c.patterns_first : NULL;
	m->txids = m->ntxids ? m->ids + c.txids_first : NULL;
	if (m->has_value)
	{
		m->value = m->fields ? m->fields + vfirst : NULL;
		m->nvalue = vcount;
	}
	if (m->has_old_value)
	{
		m->old_value = m->fields ? m->fields + ofirst : NULL;
		m->nold_value = ocount;
	}

	if (!saw_headers)
		m->kind = m->key ? PS_MSG_CHANGE : PS_MSG_UNKNOWN;
	else if (m->control != PS_CTL_NONE)
		m->kind = PS_MSG_CONTROL;
	else if (m->kind == PS_MSG_EVENT)
		;
	else if (m->operation || m->key)
		m->kind = PS_MSG_CHANGE;
	return 0;
}

const ps_field *
ps_message_find(const ps_field *fields, int n, const char *name, size_t name_len)
{
	for (int i = 0; i < n; i++)
		if (fields[i].name_len == name_len &&
			memcmp(fields[i].name, name, name_len) == 0)
			return &fields[i];
	return NULL;
}
