/*
 * fuzz_common.h
 *	  Helpers shared by the libFuzzer targets of the pure C parts.
 *
 * Every invariant goes through FUZZ_CHECK, which prints what failed and
 * abort()s so that libFuzzer records the input as a crash.
 *
 * Building with -DFUZZ_SKIP_KNOWN (make SKIP_KNOWN=1) makes the targets step
 * around the findings already reported in README.md, so that long runs can
 * look for new ones; the default build checks everything.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define FUZZ_CHECK(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "\nINVARIANT VIOLATED at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fprintf(stderr, "\n"); \
		abort(); \
	} \
} while (0)

/*
 * A reference URL encoder, independent of ps_url_encode: RFC 3986
 * unreserved characters as they are, every other byte as %XX.
 */
static inline bool
fuzz_unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_' || c == '.' || c == '~';
}

static inline void
fuzz_ref_encode(ps_strbuf *b, const char *s)
{
	for (; *s; s++)
	{
		if (fuzz_unreserved((unsigned char) *s))
			ps_strbuf_putc(b, *s);
		else
			ps_strbuf_printf(b, "%%%02X", (unsigned char) *s);
	}
}

/* Independent strict UTF-8 check (RFC 3629: no overlongs, no surrogates). */
static inline bool
fuzz_utf8_valid(const char *s, size_t len, bool allow_nul)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char b = p[i];
		uint32_t	cp;
		size_t		n;

		if (b == 0 && !allow_nul)
			return false;
		if (b < 0x80)
		{
			i++;
			continue;
		}
		if ((b & 0xE0) == 0xC0)
			n = 2, cp = b & 0x1F;
		else if ((b & 0xF0) == 0xE0)
			n = 3, cp = b & 0x0F;
		else if ((b & 0xF8) == 0xF0)
			n = 4, cp = b & 0x07;
		else
			return false;
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n;
	}
	return true;
}

/* A heap copy of exactly len bytes, so that ASan sees any read past the end. */
static inline char *
fuzz_copy(const void *data, size_t len)
{
	char	   *p = malloc(len ? len : 1);

	if (p == NULL)
		abort();
	if (len)
		memcpy(p, data, len);
	return p;
}

/* NUL-terminated copy (stops at an embedded NUL, as C string APIs would). */
static inline char *
fuzz_cstr(const void *data, size_t len)
{
	char	   *p = malloc(len + 1);

	if (p == NULL)
		abort();
	if (len)
		memcpy(p, data, len);
	p[len] = '\0';
	return p;
}

static inline bool
fuzz_in(const void *p, size_t n, const void *base, size_t blen)
{
	const char *c = p;
	const char *b = base;

	return b != NULL && c >= b && n <= blen && c - b <= (ptrdiff_t) (blen - n);
}

static inline char
fuzz_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
}

static inline bool
fuzz_ieq(const char *a, size_t alen, const char *b)
{
	size_t		blen = strlen(b);

	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (fuzz_lower(a[i]) != fuzz_lower(b[i]))
			return false;
	return true;
}

#endif
