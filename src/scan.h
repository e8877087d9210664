/*
 * scan.h
 *	  Word-at-a-time search for the bytes that matter inside JSON strings.
 *
 * Shape responses are mostly string contents (keys and values), so the
 * splitter and the parser spend their time looking for the next '"' or '\'
 * (and the parser also for control characters and non-ASCII bytes, which it
 * must validate).  Testing eight bytes at a time makes that search several
 * times faster than a byte loop.  Little-endian only (x86-64, arm64).
 */
#ifndef PS_SCAN_H
#define PS_SCAN_H

#include <stdint.h>
#include <string.h>

#define PS_ONES		UINT64_C(0x0101010101010101)
#define PS_HIGHS	UINT64_C(0x8080808080808080)

/* high bit set in each byte of w that is zero (first flagged byte exact) */
static inline uint64_t
ps_zero_bytes(uint64_t w)
{
	return (w - PS_ONES) & ~w & PS_HIGHS;
}

static inline uint64_t
ps_load64(const char *p)
{
	uint64_t	w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/* First '"' or '\' at or after p, or end. */
static inline const char *
ps_scan_quote_or_backslash(const char *p, const char *end)
{
	while (end - p >= 8)
	{
		uint64_t	w = ps_load64(p);
		uint64_t	m = ps_zero_bytes(w ^ (PS_ONES * '"')) |
			ps_zero_bytes(w ^ (PS_ONES * '\\'));

		if (m)
			return p + (__builtin_ctzll(m) >> 3);
		p += 8;
	}
	while (p < end && *p != '"' && *p != '\\')
		p++;
	return p;
}

/*
 * First byte at or after p that is '"', '\', a control character (< 0x20)
 * or non-ASCII (>= 0x80), or end.
 */
static inline const char *
ps_scan_string_special(const char *p, const char *end)
{
	while (end - p >= 8)
	{
		uint64_t	w = ps_load64(p);
		uint64_t	m = ps_zero_bytes(w ^ (PS_ONES * '"')) |
			ps_zero_bytes(w ^ (PS_ONES * '\\')) |
			((w - PS_ONES * 0x20) & ~w & PS_HIGHS) |	/* < 0x20 */
			(w & PS_HIGHS);								/* >= 0x80 */

		if (m)
			return p + (__builtin_ctzll(m) >> 3);
		p += 8;
	}
	while (p < end)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
			break;
		p++;
	}
	return p;
}

/* The value of a hexadecimal digit, or -1. */
static inline int
ps_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
